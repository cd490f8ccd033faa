/*
 * smtp - the SMTP client: routing (transport_maps, relayhost, MX, A/AAAA,
 * smtp_fallback_relay), connections, delivery, per-recipient results worded
 * as Postfix words them, and the hop status the scheduler's dead-
 * destination rule needs.  It never retries by itself: it reports, qmgr
 * decides.  It logs the delivery lines ("ID: to=<...>, relay=..., delay=...,
 * delays=a/b/c/d, dsn=..., status=...") as service smtp (or error/discard).
 */
#ifndef SMTP_H_INCLUDED
#define SMTP_H_INCLUDED

#include <stdio.h>

#include <event2/event.h>
#include "config/config.h"
#include "queue/queue.h"

typedef struct SMTP SMTP;

/* Routing (pure: no DNS yet). */
#define SMTP_TR_SMTP    1
#define SMTP_TR_ERROR   2
#define SMTP_TR_DISCARD 3

typedef struct SMTP_ROUTE {
    int     transport;			/* SMTP_TR_* */
    char    nexthop[512];		/* "[127.0.0.1]:10099", "example.com", or error/discard text */
    char    key[520];			/* destination key for qmgr: "smtp:[127.0.0.1]:10099" */
} SMTP_ROUTE;

/*
 * Route one recipient address with cf's transport_maps and relayhost, in
 * Postfix's order: transport_maps (full address, domain, .parent domains,
 * "*"), then relayhost, then the recipient domain.  0, or -1 with err (bad
 * map, unknown transport).  texthash tables are cached by path and mtime.
 */
int     smtp_route(const CONFIG *cf, const char *rcpt, SMTP_ROUTE *out, char *err, size_t errlen);

/*
 * Open cf's transport_maps now (relayqd: at start before dropping
 * privileges, and before accepting a reloaded configuration): -1 with
 * err naming the table, file and line when one cannot be used.
 */
int     smtp_route_check(const CONFIG *cf, char *err, size_t errlen);

/*
 * The same with the sender for sender_dependent_relayhost_maps, which
 * takes the place of relayhost for the senders it lists (transport_maps
 * still win).  smtp_route() is this with no sender.
 */
int     smtp_route_from(const CONFIG *cf, const char *sender, const char *rcpt, SMTP_ROUTE *out,
			        char *err, size_t errlen);

/*
 * Split an SMTP nexthop: "[host]:port", "[host]", "host:port", "host",
 * "[v6addr]:port".  *mx is 0 for the bracketed forms (no MX lookup).  The
 * port is 25 when none is given.  0, or -1 when malformed.
 */
int     smtp_nexthop_parse(const char *nexthop, char *host, size_t hostlen, int *port, int *mx);

/*
 * The enhanced status code of an SMTP reply ("450 4.2.0 text" -> "4.2.0");
 * without one, derived from the reply code as Postfix does (X.0.0).
 */
void    smtp_reply_dsn(const char *reply, char dsn[12]);

/*
 * relayq check: the SMTP client's TLS and SASL settings.  Warnings and
 * errors go to fp ("relayq: warning: ..."); returns the number of errors.
 */
int     smtp_check(const CONFIG *cf, FILE *fp);

SMTP   *smtp_create(struct event_base *base, const CONFIG *cf);
void    smtp_reconfigure(SMTP *s, const CONFIG *cf);
void    smtp_free(SMTP *s);

/* Result of one delivery request. */
#define SMTP_SENT     1
#define SMTP_DEFERRED 2
#define SMTP_BOUNCED  3

typedef struct SMTP_RCPT_RESULT {
    int     index;			/* recipient index in the message */
    int     status;			/* SMTP_SENT / SMTP_DEFERRED / SMTP_BOUNCED */
    char    dsn[12];
    char   *text;			/* "connect to ...: Connection refused", "250 2.0.0 Ok: queued as X" */
    char   *remote_mta;		/* host that replied, or NULL */
    char   *diag;			/* its reply text for Diagnostic-Code, or NULL */
    int     no_dsn;			/* sent to a next hop that does not offer DSN (NOTIFY not passed on) */
} SMTP_RCPT_RESULT;

typedef struct SMTP_RESULT {
    SMTP_RCPT_RESULT *rcpts;
    int     nrcpt;
    int     hop_failed;		/* failure blames the next hop itself (spec D2) */
    char    hop_dsn[12];
    char   *hop_reason;
    QATTEMPT attempt;			/* for the queue's attempt history */
} SMTP_RESULT;

typedef struct SMTP_REQUEST {
    const QMSG *msg;			/* with content; valid until done() */
    const int *rcpts;			/* indices of the recipients to deliver */
    int     nrcpt;
    const char *dest;			/* qmgr's destination key (from smtp_route) */
    int64_t active_us;			/* when the message became active (delays= b) */
} SMTP_REQUEST;

typedef void (*SMTP_DONE) (void *ctx, const SMTP_RESULT *res);

/* Start a delivery; done() is called exactly once, from the event loop (never from inside smtp_deliver). */
void    smtp_deliver(SMTP *s, const SMTP_REQUEST *req, SMTP_DONE done, void *ctx);

/*
 * Stop: abandon deliveries in progress.  Each one's done() is called before
 * smtp_shutdown() returns, with its unfinished recipients deferred (4.3.0
 * "delivery aborted by mail system shutdown"); new requests are then
 * refused the same way.  smtp_free() drops deliveries without calling done().
 * Both close the idle cached sessions (smtp_connection_cache_on_demand)
 * with QUIT; smtp_reconfigure() does too.
 */
void    smtp_shutdown(SMTP *s);

#endif
