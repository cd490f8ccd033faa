/*
 * cleanup - what Postfix's cleanup(8) does to a message on its way into the
 * queue: prepend Received:, add a missing Message-ID:/Date: under Postfix's
 * conditions (local_header_rewrite_clients / always_add_missing_headers),
 * enforce header_size_limit, and report the message-id to log.  Used by
 * smtpd, pickup (sendmail) and bounce alike.  No network, no queue.
 */
#ifndef CLEANUP_H_INCLUDED
#define CLEANUP_H_INCLUDED

#include <stdint.h>
#include "util/util.h"

typedef struct CLEANUP_INFO {
    const char *myhostname;
    const char *qid;
    const char *helo;			/* NULL for local submission */
    const char *client_name;		/* "localhost" */
    const char *client_addr;		/* "127.0.0.1"; NULL for local */
    const char *protocol;		/* "ESMTP", "ESMTPS", "SMTP", "ESMTPSA"; NULL: local (pickup) */
    const char *single_rcpt;		/* "for <rcpt>" when exactly one recipient, else NULL */
    const char *local_user;		/* pickup: submitting user name, else NULL */
    const char *auth_user;		/* "(Authenticated sender: NAME)", or NULL */
    int64_t arrival_us;
    int     rewrite_allowed;		/* add Message-ID:/Date: when missing */
    int     add_received;		/* 0 for relayq's own notices */
    size_t  header_size_limit;
    int     hops;			/* out: Received: headers, ours included (Postfix's hop count) */
} CLEANUP_INFO;

/*
 * Append s to a header that relayq builds: every control character (a
 * bare CR or LF above all) becomes '?', so that no value can end the
 * header line and forge another one.
 */
void    cleanup_header_text(BUF *out, const char *s);

/*
 * The HELO/EHLO argument as Postfix's helo_cmd keeps it: the words joined
 * by one space, then non-printable characters, white space and <>()\";@
 * replaced with '?'.  Allocated.
 */
char   *cleanup_helo_name(const char *arg);

/*
 * in/len: the message as received (CRLF lines, dot-unstuffed, no final
 * ".").  Appends the queued form to out (CRLF lines).  *message_id gets the
 * Message-ID value to log ("<...>", or "" when none; caller frees).
 * Returns 0, or -1 with err set (e.g. header too large: Postfix truncates
 * and continues; we do the same and return 0 — -1 is for unusable input).
 */
int     cleanup_message(CLEANUP_INFO *ci, const char *in, size_t len, BUF *out,
			        char **message_id, char *err, size_t errlen);

#endif
