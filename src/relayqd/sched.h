/*
 * sched - the daemon's scheduler glue: carries out qmgr's decisions (load,
 * route, deliver, defer, bounce, remove) with the queue, smtp and bounce
 * modules, and feeds the results back.  Its state (qmgr, the active set,
 * the pass batches in flight, the counters) is its own; the rest of the
 * daemon talks to it through these functions only.
 */
#ifndef SCHED_H_INCLUDED
#define SCHED_H_INCLUDED

#include <event2/event.h>
#include "config/config.h"
#include "queue/queue.h"
#include "qmgr/qmgr.h"
#include "smtp/smtp.h"
#include "control/control.h"
#include "util/util.h"

typedef struct SCHED SCHED;

/* The scheduler's parameters come from cf (explain_params). */
SCHED  *sched_create(struct event_base *base, const CONFIG *cf, QUEUE *queue, SMTP *smtp);
int     sched_start(SCHED *s);			/* load the queue into qmgr, log what was loaded, run */
void    sched_reconfigure(SCHED *s, const CONFIG *cf);	/* SIGHUP; cf stays valid until the next call */
void    sched_stop(SCHED *s);			/* SIGTERM: activate nothing new */
int     sched_idle(const SCHED *s);		/* nothing in flight, nothing to commit */
int     sched_suspended(const SCHED *s);	/* passes whose update waits to be recorded (full disk) */
void    sched_record_suspended(SCHED *s);	/* at exit, before queue_close */
void    sched_run_later(SCHED *s);		/* at exit, before queue_close: edits still waiting for a turn end */
void    sched_free(SCHED *s);			/* at exit */

void    sched_kick(SCHED *s);			/* run qmgr soon */
void    sched_add_incoming(SCHED *s, const QMSG *msg);	/* a new message is durable */

/* flush: every deferred message (n < 0; dead destinations forgotten), or the n of ids, is due now. */
void    sched_flush(SCHED *s, const uint64_t *ids, int n);

/* For mailq and explain (a SHOWQ_SCHED_FN, ctx = s): what only the running daemon knows. */
void    sched_state(void *ctx, const QMSG *msg, SHOWQ_SCHED *out);
const QMGR_PARAMS *sched_params(const SCHED *s);
int64_t sched_anchor(const SCHED *s);		/* a queue-run time (explain) */

/* Admin edits (control_admin_submit): run fn(ctx) once every pass batch submitted so far has committed. */
void    sched_after_commits(SCHED *s, void (*fn) (void *ctx), void *ctx);
void    sched_edit_hooks(SCHED *s, CONTROL_EDIT_HOOKS *h);

/*
 * relayq top: the counters received (messages that entered the queue),
 * delivered, deferred, bounced (recipients); the scheduler's snapshot
 * (qmgr_top, qmgr_top_dests: no walk of the messages).  The pointers in
 * dests are valid until the scheduler runs again.
 */
void    sched_counters(const SCHED *s, uint64_t out[4]);
int     sched_top(const SCHED *s, int64_t now, QMGR_TOP *t, QMGR_TOP_DEST *dests, int max);

/* The scheduler's metric families (queue by state, deliveries, expiries, attempt durations, dead destinations). */
void    sched_metrics(const SCHED *s, BUF *out);

#endif
