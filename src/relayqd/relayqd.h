/*
 * relayqd - the daemon's private header: the wiring between the modules.
 * main.c: start-up, signals, privileges, the event loop.
 * sched.c: carries out qmgr's decisions (load, deliver, defer, bounce,
 *          remove) with the queue, smtp and bounce modules, and feeds the
 *          results back.
 * admin.c: answers the control sockets (mailq, flush, hold, ...), and the
 *          maildrop pickup.
 */
#ifndef RELAYQD_H_INCLUDED
#define RELAYQD_H_INCLUDED

#include <stdio.h>
#include <event2/event.h>
#include "config/config.h"
#include "queue/queue.h"
#include "qmgr/qmgr.h"
#include "smtp/smtp.h"
#include "smtpd/smtpd.h"
#include "control/control.h"
#include "metrics/metrics.h"
#include "explain/explain.h"
#include "table/table.h"

typedef struct ACTIVE ACTIVE;			/* a message in the active set */

typedef struct RELAYQD {
    CONFIG *cf;
    char   *confdir;
    char  **overrides;
    int     noverrides;
    struct event_base *base;
    QUEUE  *queue;
    QMGR   *qmgr;
    SMTP   *smtp;
    SMTPD  *smtpd;
    CONTROL *control;
    METRICS *metrics;
    TABLE_LIST **tables;			/* every table parameter, held open (main.c) */
    int     ntables;
    struct event *qmgr_timer;
    struct event *queue_ev;
    struct event *pickup_timer;
    struct event *sig_term, *sig_int, *sig_hup;
    struct event *exit_timer;
    ACTIVE **active;				/* hash by id */
    size_t  active_size;
    int     nactive;
    int     pending_commits;			/* batches submitted, not yet answered */
    int     stopping;
    int     kick_scheduled;
    struct event *kick_ev;
    /* statistics for metrics */
    uint64_t n_sent, n_deferred, n_bounced, n_expired;
    METRICS_HIST attempt_hist;
    METRICS_LCOUNTER dest_deferred;		/* deferred recipients by destination */
} RELAYQD;

/* sched.c */
int     sched_start(RELAYQD *d);			/* load the queue into qmgr */
void    sched_kick(RELAYQD *d);				/* run qmgr soon */
void    sched_add_incoming(RELAYQD *d, const QMSG *msg);
void    sched_state(void *ctx, const QMSG *msg, SHOWQ_SCHED *out);
int     sched_idle(const RELAYQD *d);			/* nothing in flight */
int     sched_suspended(const RELAYQD *d);		/* passes whose update waits to be recorded */
void    sched_free(RELAYQD *d);			/* at exit */
void    sched_record_suspended(RELAYQD *d);		/* at exit, before queue_close */
/* Run fn(ctx) once every pass batch submitted so far has committed (at once if none is pending). */
void    sched_after_commits(RELAYQD *d, void (*fn) (void *ctx), void *ctx);
/* What an admin edit tells the scheduler (control_admin_submit). */
void    sched_edit_hooks(RELAYQD *d, CONTROL_EDIT_HOOKS *h);


/* admin.c */
int     admin_handle(void *ctx, int admin, int argc, char **argv, BUF *out);
void    admin_pickup(RELAYQD *d);
void    admin_metrics(void *ctx, BUF *out);

#endif
