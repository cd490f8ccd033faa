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

struct CONFIG;

/*
 * Content checks (cleanup_checks.c): the tables of header_checks,
 * mime_header_checks, nested_header_checks and body_checks (prefix "") or
 * of smtp_header_checks ... smtp_body_checks (prefix "smtp_"), opened from
 * a configuration.  NULL with *err == 0 when none is set; NULL with err
 * set when a table cannot be opened.
 */
typedef struct CLEANUP_CHECKS CLEANUP_CHECKS;

CLEANUP_CHECKS *cleanup_checks_open(const struct CONFIG *cf, const char *prefix,
				            char *err, size_t errlen);
CLEANUP_CHECKS *cleanup_checks_close(CLEANUP_CHECKS *c);	/* returns NULL */
int     cleanup_checks_need_body(const CLEANUP_CHECKS *c);	/* mime/nested/body tables */

/* Postfix's actions; the text after the action word is the optional text. */
typedef enum CLEANUP_ACT {
    CLEANUP_ACT_UNKNOWN, CLEANUP_ACT_REJECT, CLEANUP_ACT_DISCARD, CLEANUP_ACT_HOLD,
    CLEANUP_ACT_IGNORE, CLEANUP_ACT_REPLACE, CLEANUP_ACT_PREPEND, CLEANUP_ACT_WARN,
    CLEANUP_ACT_INFO, CLEANUP_ACT_REDIRECT, CLEANUP_ACT_BCC, CLEANUP_ACT_STRIP,
    CLEANUP_ACT_PASS, CLEANUP_ACT_FILTER, CLEANUP_ACT_DUNNO,
} CLEANUP_ACT;

/*
 * An after-queue content filter relayq can deliver to (content_filter, a
 * FILTER action): "smtp:" and a next hop ("[127.0.0.1]:10025").  1 yes;
 * 0 no, with a reason in err.
 */
int     cleanup_filter_valid(const char *filter, char *err, size_t errlen);

/* "REJECT  text" -> CLEANUP_ACT_REJECT, *text "text" (a case-insensitive word). */
CLEANUP_ACT cleanup_act_parse(const char *value, const char **text);

/*
 * Postfix's dsn_prepend(): "X.Y.Z text" when text starts with a status,
 * else "def text".  Allocated.
 */
char   *cleanup_dsn_prepend(const char *def, const char *text);

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

    /* Content checks: NULL for none.  The rest is for their log lines. */
    CLEANUP_CHECKS *checks;
    long long body_limit;		/* body_checks_size_limit */
    size_t  line_limit;			/* line_length_limit: body records */
    const char *sender;			/* from=<> ("" for the null sender) */
    const char *last_rcpt;		/* to=<>: the last recipient, as Postfix's */

    /*
     * Out (cleanup_info_free() releases them): what the checks decided.
     * reason: REJECT's "5.7.1 text" (smtpd replies "550 " reason), or a
     * "4.x.x text" (defer: "451 " reason); lookup_error: a table failed
     * (Postfix's "451 4.3.0 Error: queue file write error").
     */
    char   *reason;
    int     defer;			/* reason is a 4xx */
    int     lookup_error;
    int     discard;
    int     hold;
    int     no_milters;			/* REJECT, DISCARD, PASS, REDIRECT: no milter stage */
    char   *redirect;			/* REDIRECT address */
    char  **bcc;			/* BCC addresses, NULL-terminated, or NULL */
    int     nbcc;
    char   *filter;			/* FILTER transport:destination */
    int     checks_off;			/* internal: no more checks for this message */
    struct CLEANUP_RW *rw;		/* address rewriting, or NULL */
    struct CLEANUP_GENERIC *generic;	/* smtp_generic_maps (the SMTP client's pass), or NULL */
    int     rw_context;			/* CLEANUP_RW_*: whose headers are rewritten */
    int     rw_errs;			/* out: a lookup failed: tempfail the message */
} CLEANUP_INFO;

void    cleanup_info_free(CLEANUP_INFO *ci);

/*
 * The checks' envelope edits on the message about to be queued: REDIRECT
 * (the first recipient goes to the address, the original kept as ORCPT,
 * the others dropped, as Postfix's queue manager does) and BCC (added
 * recipients).  msg->rcpts may be reallocated to exactly msg->nrcpt.
 */
struct QMSG;
void    cleanup_envelope_edits(const CLEANUP_INFO *ci, struct QMSG *msg);

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

/*
 * Address rewriting (cleanup_rewrite.c): canonical maps, masquerading,
 * automatic BCC, as Postfix's cleanup.  Created from a configuration
 * (NULL with err set when a table does not open or a *_classes value is
 * wrong); the tables are the shared copies relayqd holds open.
 */
typedef struct CLEANUP_RW CLEANUP_RW;
struct CONFIG;
struct QMSG;

/* Header rewriting context: Postfix's local/remote rewriting contexts. */
#define CLEANUP_RW_NONE		0	/* remote client, no remote_header_rewrite_domain */
#define CLEANUP_RW_LOCAL	1	/* local_header_rewrite_clients: qualify with myorigin */
#define CLEANUP_RW_REMOTE	2	/* others: qualify with remote_header_rewrite_domain */

CLEANUP_RW *cleanup_rw_create(const struct CONFIG *cf, char *err, size_t errlen);
void    cleanup_rw_free(CLEANUP_RW *rw);
int     cleanup_rw_remote_domain(const CLEANUP_RW *rw);	/* remote_header_rewrite_domain set? */

/*
 * Rewrite the envelope of m (sender, recipients; BCC recipients added).
 * 0, or -1 when a lookup failed (logged): the message must be refused
 * with a temporary error.
 */
int     cleanup_rw_envelope(CLEANUP_RW *rw, struct QMSG *m);

/*
 * Rewrite one logical header (CRLF lines, name namelen bytes) in place
 * when it is an address header; 1 when it changed.  *errs set on a lookup
 * failure.
 */
/*
 * smtp_generic_maps, as Postfix's SMTP client applies them to what it
 * sends (cleanup_rewrite.c): NULL when the parameter is empty (err[0] ==
 * 0) or its tables do not open (err set).  cleanup_generic_addr() returns
 * the new address (internal form, allocated) or NULL when the address is
 * not in the maps; *errs is set on a lookup error (logged).
 * cleanup_message() rewrites the primary address headers when
 * CLEANUP_INFO.generic is set.
 */
typedef struct CLEANUP_GENERIC CLEANUP_GENERIC;
CLEANUP_GENERIC *cleanup_generic_create(const struct CONFIG *cf, char *err, size_t errlen);
void    cleanup_generic_free(CLEANUP_GENERIC *g);
char   *cleanup_generic_addr(CLEANUP_GENERIC *g, const char *qid, const char *addr, int *errs);
int     cleanup_generic_header(CLEANUP_GENERIC *g, const char *qid, BUF *hdr, size_t namelen,
			               int *errs);

/* Is this header in message_drop_headers (Postfix removes Bcc:, Return-Path: ...)? */
int     cleanup_rw_drop(const CLEANUP_RW *rw, const char *name, size_t namelen);

int     cleanup_rw_header(CLEANUP_RW *rw, const char *qid, int context, BUF *hdr,
			          size_t namelen, int *errs);

#endif
