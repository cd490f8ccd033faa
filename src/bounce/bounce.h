/*
 * bounce - RFC 3464 delivery status notifications: non-delivery (5xx or
 * expiry), delay warnings, and "relayed" success notices.  Pure: builds the
 * notice as a QMSG (sender <>, one recipient: the original sender, content
 * already passed through cleanup) for the caller to queue.
 */
#ifndef BOUNCE_H_INCLUDED
#define BOUNCE_H_INCLUDED

#include <stdint.h>
#include "config/config.h"
#include "queue/queue.h"

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

#endif
