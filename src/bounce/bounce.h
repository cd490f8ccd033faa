/*
 * bounce - RFC 3464 delivery status notifications: non-delivery (5xx or
 * expiry), delay warnings, and "relayed" success notices.  Pure: builds the
 * notice as a QMSG (sender <>, one recipient: the original sender with
 * ORCPT=rfc822;sender, state incoming, QFLAG_BOUNCE, no queue ID yet) for
 * the caller to queue.  The content has no Received: header: the caller
 * assigns the queue ID and passes the content through cleanup.  Format and
 * rules: docs/bounces.md.
 */
#ifndef BOUNCE_H_INCLUDED
#define BOUNCE_H_INCLUDED

#include <stdint.h>
#include "config/config.h"
#include "queue/queue.h"
#include "util/util.h"

#define BOUNCE_FAILED  1
#define BOUNCE_DELAYED 2
#define BOUNCE_RELAYED 3

/*
 * orig: the message (with content); rcpts: indices of the recipients the
 * notice is about (their reason/dsn/remote_mta/diag fields are used).
 * Returns NULL when no notice is due: null sender, or every recipient has
 * NOTIFY without the matching class.  now: whole seconds.
 */
QMSG   *bounce_build(const CONFIG *cf, const QMSG *orig, const int *rcpts, int nrcpt,
		             int kind, int64_t now);

/*
 * Append "prefix" + text as CRLF lines of at most 79 characters, continued
 * with 4 spaces (Postfix's wrapping of notice lines); a word longer than a
 * line is kept whole, and the prefix is never split.  Control characters
 * in text become spaces.  Returns the number of lines appended.
 */
int     bounce_wrap(BUF *out, const char *prefix, const char *text);

#endif
