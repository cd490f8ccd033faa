/*
 * dovecot - a client of Dovecot's authentication protocol (auth-client
 * socket, protocol 1.x), for the SMTP server's AUTH command.  One
 * connection is shared by every session; requests are multiplexed by id
 * and everything runs on the event loop.  The connection is made when
 * first needed and again after it is lost, so a restarted Dovecot is used
 * without restarting relayqd.
 *
 * Nothing here logs a client response (base64 credentials).
 */
#ifndef DOVECOT_H_INCLUDED
#define DOVECOT_H_INCLUDED

#include <event2/event.h>
#include "util/util.h"

typedef struct DOVECOT DOVECOT;
typedef struct DOVECOT_REQ DOVECOT_REQ;

/* Callback status; the request is finished except after DOVECOT_MORE. */
#define DOVECOT_OK	0	/* text: the user name Dovecot returned */
#define DOVECOT_MORE	1	/* text: the base64 challenge for "334 " */
#define DOVECOT_FAIL	(-1)	/* text: the reason ("" when none); user: NULL or the name */
#define DOVECOT_TEMP	(-2)	/* text: "Can't connect to authentication server" or
				 * "Connection lost to authentication server" */
typedef void (*DOVECOT_CB) (void *ctx, int status, const char *text, const char *user);

/*
 * path: a UNIX socket path, or "inet:host:port" (numeric host or
 * localhost).  Nothing is connected until needed.
 */
DOVECOT *dovecot_create(struct event_base *base, const char *path);
void    dovecot_free(DOVECOT *d);			/* pending callbacks are dropped */
const char *dovecot_path(const DOVECOT *d);

/*
 * The mechanisms Dovecot announced (private ones left out), minus those
 * the smtpd_sasl_security_options list excludes, space separated, into
 * out.  0 when known; -1 when no handshake has completed yet (a connection
 * is then started, so that the next call knows).
 */
int     dovecot_mechs(DOVECOT *d, char *const *secopts, BUF *out);

/* Security options (noanonymous, noplaintext, ...) allow mech? */
int     dovecot_mech_allowed(DOVECOT *d, const char *mech, char *const *secopts);

/*
 * Start an authentication.  resp: the AUTH command's initial response
 * (base64, "=" for empty) or NULL.  lip/rip: local and remote address.
 * secopts: smtpd_sasl_security_options; a mechanism they exclude, or one
 * Dovecot does not announce, fails with "Invalid authentication mechanism".
 * The callback is never called from inside dovecot_auth or dovecot_cont.
 */
DOVECOT_REQ *dovecot_auth(DOVECOT *d, const char *mech, const char *resp,
			          const char *service, const char *lip, const char *rip,
			          int secured, char *const *secopts, DOVECOT_CB cb, void *ctx);
/* The client's answer to a DOVECOT_MORE challenge (base64). */
void    dovecot_cont(DOVECOT_REQ *r, const char *resp);
/* The session is gone: no callback will come. */
void    dovecot_cancel(DOVECOT_REQ *r);

/* Is s plain base64 (Postfix's check before anything is sent)? */
int     dovecot_valid_base64(const char *s);

#endif
