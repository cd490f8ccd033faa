/*
 * relayqd - the daemon's private header: the wiring between the modules.
 * main.c:   start-up, signals, privileges, the event loop.
 * sched.c:  the scheduler glue (sched.h): carries out qmgr's decisions with
 *           the queue, smtp and bounce modules, and feeds the results back.
 * admin.c:  answers the control sockets (mailq, explain, flush, hold, ...).
 * pickup.c: the maildrop pickup (sendmail's messages into the queue).
 * stats.c:  fills the metrics endpoint.
 * top.c:    relayq top: samples the delivery counters, answers "top".
 */
#ifndef RELAYQD_H_INCLUDED
#define RELAYQD_H_INCLUDED

#include <stdio.h>
#include <event2/event.h>
#include "config/config.h"
#include "queue/queue.h"
#include "smtp/smtp.h"
#include "smtpd/smtpd.h"
#include "control/control.h"
#include "control/qview.h"
#include "metrics/metrics.h"
#include "table/table.h"
#include "relayqd/sched.h"

typedef struct TOPSTAT TOPSTAT;

typedef struct RELAYQD {
    CONFIG *cf;
    char   *confdir;
    char  **overrides;
    int     noverrides;
    struct event_base *base;
    QUEUE  *queue;
    SCHED  *sched;
    SMTP   *smtp;
    SMTPD  *smtpd;
    CONTROL *control;
    QVIEW  *view;				/* the queue views' reader thread (control/qview.h) */
    METRICS *metrics;
    TOPSTAT *top;				/* relayq top's sampler (top.c) */
    TABLE_LIST **tables;			/* every table parameter, held open (main.c) */
    int     ntables;
    struct event *queue_ev;
    struct event *pickup_timer;
    struct event *sig_term, *sig_int, *sig_hup;
    struct event *exit_timer;
    int     stopping;
    int     admin_busy;			/* edits and flushes in progress (admin.c) */
} RELAYQD;

/* admin.c: the control sockets' handler (a CONTROL_HANDLER, ctx = RELAYQD) */
int     admin_handle(void *ctx, int admin, int argc, char **argv, BUF *out);
/* No edit or flush DOMAIN in progress: the daemon may exit (a stopping daemon lets them end first). */
int     admin_idle(const RELAYQD *d);

/* pickup.c */
void    pickup_scan(RELAYQD *d);

/* stats.c: the metrics endpoint's filler (ctx = RELAYQD) */
void    stats_metrics(void *ctx, BUF *out);

/* top.c: relayq top (started after the scheduler; "top [N]" on the query socket) */
TOPSTAT *top_create(RELAYQD *d);
void    top_free(TOPSTAT *t);
int     top_answer(RELAYQD *d, int argc, char **argv, BUF *out);

#endif
