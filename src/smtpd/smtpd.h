/*
 * smtpd - the SMTP server: listeners, sessions (libevent bufferevents),
 * the ESMTP protocol, relay access control, limits, smuggling-safe DATA,
 * STARTTLS.  A message is handed to the queue and "250 2.0.0 Ok: queued as
 * ID" is sent only after the queue reports it durable.
 */
#ifndef SMTPD_H_INCLUDED
#define SMTPD_H_INCLUDED

#include <event2/event.h>
#include "config/config.h"
#include "queue/queue.h"

typedef struct SMTPD SMTPD;

typedef struct SMTPD_HOOKS {
    /* A message is durable in the queue (state incoming); msg is owned by smtpd. */
    void    (*queued) (void *ctx, const QMSG *msg);
    void   *ctx;
} SMTPD_HOOKS;

SMTPD  *smtpd_create(struct event_base *base, const CONFIG *cf, QUEUE *q, const SMTPD_HOOKS *hooks);
/* The queue, when it is opened after the listeners (relayqd binds as root, opens the queue as mail_owner). */
void    smtpd_set_queue(SMTPD *s, QUEUE *q);
/* Bind every smtpd_listen address (before dropping root). -1 with err: "bind 127.0.0.1:2525: Address already in use". */
int     smtpd_bind(SMTPD *s, char *err, size_t errlen);
/*
 * Start listening (binding first if smtpd_bind was not called): relayqd
 * binds as root but listens only once the queue and the sockets are ready,
 * so that a client that connects finds the whole daemon.
 */
int     smtpd_listen(SMTPD *s, char *err, size_t errlen);
/* New configuration (SIGHUP); sessions in progress keep theirs. */
void    smtpd_reconfigure(SMTPD *s, const CONFIG *cf);

/* relay_domains "type:name" elements (set as smtpd_domain_table_fn): 1, 0, -1. */
int     smtpd_domain_table(const char *spec, const char *domain);
/* Stop accepting; sessions get 421 at their next command; cb when all are gone. */
void    smtpd_shutdown(SMTPD *s, void (*done)(void *ctx), void *ctx);
int     smtpd_sessions(const SMTPD *s);
/* The port listener idx is bound to (smtpd_listen may say port 0), or -1. */
int     smtpd_bound_port(const SMTPD *s, int idx);
/* Call after shutdown's done (no session may wait for the queue then). */
void    smtpd_free(SMTPD *s);

/* Counters for metrics. */
typedef struct SMTPD_STATS {
    uint64_t connections, messages, rejects_relay, rejects_size, rejects_other, timeouts;
} SMTPD_STATS;
void    smtpd_stats(const SMTPD *s, SMTPD_STATS *st);

#endif
