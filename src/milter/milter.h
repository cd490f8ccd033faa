/*
 * milter - the client side of the Sendmail milter protocol, version 6, as
 * Postfix's smtpd(8) and cleanup(8) speak it to libmilter-based filters
 * (OpenDKIM, rspamd, ...).
 *
 * A MILTERS is a parsed list of filters (smtpd_milters or non_smtpd_milters)
 * with their settings: "inet:host:port", "unix:/path", or Postfix 3's
 * "{ inet:host:port, connect_timeout=10s, default_action=accept, ... }".
 * A MILTER_SESS is one SMTP session's conversation with every filter of a
 * list: each filter gets its own connection, opened at the connect event,
 * closed with QUIT when the session ends.  Everything is asynchronous on the
 * caller's libevent loop; each event ends with exactly one callback, unless
 * the session is freed first (then never).
 *
 * The filters are asked in list order; the first that gives a final answer
 * other than "continue" decides the event, as in Postfix.  A filter that
 * cannot be reached, times out or breaks the protocol gets its
 * default_action (milter_default_action): accept (skip it for the rest of
 * the session), reject, tempfail, quarantine, or shutdown (421 and
 * disconnect); the reply then persists for the rest of the session.
 *
 * At end of message, every filter sees the message as the filters before it
 * left it: header and body edits are applied to MILTER_MSG.content at once;
 * envelope edits (sender, recipients) are collected in the result for the
 * caller to apply.  The caller's own first Received: header is never shown
 * to a filter (Sendmail compatibility, as Postfix).
 */
#ifndef MILTER_H_INCLUDED
#define MILTER_H_INCLUDED

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>
#include "config/config.h"
#include "util/util.h"

typedef struct MILTERS MILTERS;
typedef struct MILTER_SESS MILTER_SESS;

/* Macro stages (milter_*_macros), also the SMFIR_SETSYMLIST stage numbers. */
#define MILTER_M_CONNECT	0
#define MILTER_M_HELO		1
#define MILTER_M_MAIL		2
#define MILTER_M_RCPT		3
#define MILTER_M_DATA		4
#define MILTER_M_EOD		5
#define MILTER_M_EOH		6
#define MILTER_M_UNKNOWN	7
#define MILTER_M_COUNT		8

/*
 * Parse list (the value of smtpd_milters or non_smtpd_milters) with the
 * milter_* parameters of cf as defaults.  NULL with err set on a syntax
 * error ("smtpd_milters: ..."); an empty list also returns NULL, with
 * err[0] == 0.
 */
MILTERS *milters_create(const CONFIG *cf, const char *param, const char *list,
			        char *err, size_t errlen);
void    milters_free(MILTERS *m);
int     milters_count(const MILTERS *m);

/* Values of macros (name without braces: "i", "j", "daemon_name", "auth_authen"); NULL: undefined. */
typedef const char *(*MILTER_MACRO_FN) (void *ctx, const char *name);

#define MILTER_CONTINUE	0		/* go on (also: accept) */
#define MILTER_REJECT	1		/* reply has a 4xx or 5xx reply */
#define MILTER_DISCARD	2		/* accept and drop the message */
#define MILTER_SHUTDOWN	3		/* reply 421 and disconnect */

typedef struct MILTER_RCPT_EDIT {
    int     add;			/* 1: add (SMFIR_ADDRCPT[_PAR]), 0: delete */
    char   *addr;			/* without <> */
    char   *args;			/* ESMTP arguments ("NOTIFY=NEVER") or NULL */
} MILTER_RCPT_EDIT;

typedef struct MILTER_RESULT {
    int     action;			/* MILTER_CONTINUE ... */
    const char *reply;			/* REJECT/SHUTDOWN: "550 5.7.1 Command rejected" */
    const char *hold;			/* non-NULL: quarantine with this reason */
    const char *milter;			/* the filter that decided, for logging */
    /* End of message only. */
    int     content_changed;
    const char *new_sender;		/* SMFIR_CHGFROM, without <>; NULL: unchanged */
    const char *new_sender_args;
    const MILTER_RCPT_EDIT *rcpt_edits;	/* in the order the filters sent them */
    int     nrcpt_edits;
} MILTER_RESULT;

typedef void (*MILTER_CB) (void *ctx, const MILTER_RESULT *r);

MILTER_SESS *milter_sess_create(struct event_base *base, const MILTERS *m,
				        MILTER_MACRO_FN macro, void *macro_ctx);
/* QUIT to every filter; a pending callback is never called. */
void    milter_sess_free(MILTER_SESS *ms);

/* family: 4, 6, or 0 (unknown/local) */
void    milter_conn_event(MILTER_SESS *ms, const char *name, const char *addr,
			          int port, int family, MILTER_CB cb, void *ctx);
void    milter_helo_event(MILTER_SESS *ms, const char *helo, MILTER_CB cb, void *ctx);
/* argv: "<sender>" then ESMTP parameters, NULL-terminated */
void    milter_mail_event(MILTER_SESS *ms, char *const *argv, MILTER_CB cb, void *ctx);
void    milter_rcpt_event(MILTER_SESS *ms, char *const *argv, MILTER_CB cb, void *ctx);
void    milter_data_event(MILTER_SESS *ms, MILTER_CB cb, void *ctx);

/*
 * The message content: headers, end of headers, body, end of message, with
 * the filters' edits.  content is the message as it will be queued (CRLF
 * lines); own_received says its first header is the caller's own Received:
 * (hidden from filters).  content is edited in place; it must stay valid
 * until the callback.
 */
typedef struct MILTER_MSG {
    BUF    *content;
    int     own_received;
} MILTER_MSG;
void    milter_message(MILTER_SESS *ms, MILTER_MSG *msg, MILTER_CB cb, void *ctx);

/* The message transaction ends without a message (RSET, HELO, a rejected DATA...). */
void    milter_abort(MILTER_SESS *ms);

/*
 * Pure parts, exposed for tests and fuzzing.
 */

/* Edits of a message held as CRLF text. */
typedef struct MILTER_HDRS MILTER_HDRS;
MILTER_HDRS *milter_hdrs_parse(const char *content, size_t len, int own_received);
int     milter_hdrs_count(const MILTER_HDRS *h);	/* including the hidden one */
/* The i-th header as a filter sees it: name and value ("\n" between folded lines). */
int     milter_hdrs_get(const MILTER_HDRS *h, int i, int leadspc, BUF *name, BUF *value);
int     milter_hdrs_hidden(const MILTER_HDRS *h, int i);
const char *milter_hdrs_body(const MILTER_HDRS *h, size_t *len);
/* SMFIR_ADDHEADER, SMFIR_INSHEADER (0-based index as sent), SMFIR_CHGHEADER (1-based instance; "" deletes). */
void    milter_hdrs_add(MILTER_HDRS *h, const char *name, const char *space, const char *value);
void    milter_hdrs_insert(MILTER_HDRS *h, long index, const char *name, const char *space,
			           const char *value);
void    milter_hdrs_change(MILTER_HDRS *h, long index, const char *name, const char *space,
			           const char *value);
/* SMFIR_REPLBODY: the new body in wire form (line ends normalised to CRLF). */
void    milter_hdrs_replace_body(MILTER_HDRS *h, const char *body, size_t len);
void    milter_hdrs_write(const MILTER_HDRS *h, BUF *out);
void    milter_hdrs_free(MILTER_HDRS *h);

/* A header name a filter may use: printable ASCII, no colon, not empty. */
int     milter_hdr_name_ok(const char *name);

/* A reply from SMFIR_REPLYCODE: "ddd d.d.d text" (lines joined by CRLF) checked and cleaned. */
int     milter_valid_reply(const char *text);

#endif
