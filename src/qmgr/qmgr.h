/*
 * qmgr - the scheduler, pure: no I/O, no clock reads, no logging.  Every
 * entry point takes `now` (whole seconds, as Postfix's event_time()).  The
 * daemon and the simulator behind `relayq explain` run this same code.
 *
 * Rules (../shared/spec/postfix-queue-semantics.md):
 *  R  backoff = clamp(now - create_time, minimal_backoff_time,
 *     maximal_backoff_time) (min applied last), next_eligible = now + backoff,
 *     "now" = when the pass's last result is processed.
 *  S  deferred-queue runs on a fixed grid anchor + k*queue_run_delay (anchor
 *     = qmgr_create()/qmgr_reload() time; the run at the anchor takes what is
 *     already due); a deferred message is taken by a run at time t when
 *     next_eligible <= t + 1.  Incoming mail is taken at once.  At most
 *     qmgr_message_active_limit messages are active; incoming first.
 *  D  per-destination queues (window starts at initial_destination_
 *     concurrency, max default_destination_concurrency_limit, +1/-1
 *     feedback, fail_cohorts += 1/window on a hop failure, dead at >= 1);
 *     empty live queues are destroyed; a dead destination defers its
 *     recipients without delivery ("delivery temporarily suspended: R") for
 *     minimal_backoff_time.
 *  E  after a pass with a deferred recipient: expired if forced or
 *     now >= create_time + lifetime (bounce_queue_lifetime for the null
 *     sender); else a delay warning when due (once, now >= warn_time - 1);
 *     then backoff.
 *
 * Messages are known by the queue's seq (QMGR_ID).  The scheduler keeps only
 * a few dozen bytes per deferred message (a heap by next_eligible).
 */
#ifndef QMGR_H_INCLUDED
#define QMGR_H_INCLUDED

#include <stdint.h>
#include <stddef.h>

typedef struct QMGR QMGR;
typedef uint64_t QMGR_ID;

typedef struct QMGR_PARAMS {
    int64_t queue_run_delay;
    int64_t minimal_backoff_time;
    int64_t maximal_backoff_time;
    int64_t maximal_queue_lifetime;
    int64_t bounce_queue_lifetime;	/* capped at maximal_queue_lifetime by qmgr_create */
    int64_t delay_warning_time;		/* 0 = off */
    int     qmgr_message_active_limit;
    int     initial_destination_concurrency;
    int     default_destination_concurrency_limit;
    int     default_destination_recipient_limit;
} QMGR_PARAMS;

/* What the scheduler needs to know of a message. */
#define QMGR_MSG_INCOMING 0		/* take at once */
#define QMGR_MSG_DEFERRED 1		/* take at the first run with next_eligible <= run + 1 */
#define QMGR_MSG_HOLD     2		/* never taken until released */

typedef struct QMGR_MSGINFO {
    int     state;			/* QMGR_MSG_* */
    int64_t create_time;
    int64_t arrival_time;		/* whole seconds; base of warn_time */
    int64_t next_eligible;
    int     null_sender;
    int     warned;			/* delay warning already sent */
    int     force_expire;
} QMGR_MSGINFO;

/* Actions the daemon must carry out (qmgr_run). */
#define QMGR_ACT_ACTIVATE 1		/* load msg, log "(queue active)", then qmgr_activated() */
#define QMGR_ACT_DELIVER  2		/* deliver rcpts of msg to dest, then qmgr_delivered(req) */
#define QMGR_ACT_SUSPEND  3		/* defer rcpts without delivery: dest is dead (log as "error") */
#define QMGR_ACT_DONE     4		/* the pass over msg is complete: see disposition */

#define QMGR_REMOVE  1			/* no recipient deferred: remove it */
#define QMGR_DEFER   2			/* deferred until next_eligible */
#define QMGR_EXPIRE  3			/* lifetime over (or forced): return to sender, remove */

typedef struct QMGR_ACTION {
    int     type;
    QMGR_ID id;
    /* DELIVER / SUSPEND */
    uint64_t req;			/* DELIVER: pass back to qmgr_delivered() */
    const char *dest;			/* destination key (owned by qmgr; valid until the next qmgr call) */
    const int *rcpts;			/* recipient indices into the message (owned by qmgr, same lifetime) */
    int     nrcpt;
    const char *dsn;			/* SUSPEND: the hop's DSN code, "4.4.1" */
    const char *reason;		/* SUSPEND: "delivery temporarily suspended: ..." */
    /* DONE */
    int     disposition;		/* QMGR_REMOVE / QMGR_DEFER / QMGR_EXPIRE */
    const int *expired;			/* DEFER: recipients whose own lifetime ended (policies) */
    int     nexpired;
    int     forced;			/* EXPIRE: force-expired */
    int     warn;			/* DEFER: send the delay warning now */
    int64_t backoff;			/* DEFER */
    int64_t next_eligible;		/* DEFER */
    int64_t next_run;			/* DEFER: the queue run that will take it (if nothing changes) */
} QMGR_ACTION;

QMGR   *qmgr_create(const QMGR_PARAMS *p, int64_t now);
void    qmgr_free(QMGR *q);
/* SIGHUP: new parameters, grid re-anchored at now, dead destinations forgotten. */
void    qmgr_reload(QMGR *q, const QMGR_PARAMS *p, int64_t now);
const QMGR_PARAMS *qmgr_params(const QMGR *q);

/*
 * How long a message may stay in the queue after its create_time: the
 * one place for the rule, used by the scheduler, explain and mailq -j.
 * maximal_queue_lifetime; for the null sender bounce_queue_lifetime,
 * capped at maximal_queue_lifetime (Postfix's qmgr does the same).
 */
int64_t qmgr_lifetime(const QMGR_PARAMS *p, int null_sender);

/*
 * Per-destination retry policy (relayq_retry_policy_maps): a recipient's own
 * backoff limits, lifetimes and delay warning.  The rule for a message whose
 * deferred recipients have different policies: it is eligible again at the
 * earliest time any of their policies allows (each backoff is the message's
 * age clamped by that policy); each recipient expires at its own lifetime
 * (DONE with QMGR_DEFER lists them in `expired`; QMGR_EXPIRE when none is
 * left); the delay warning goes out when the first of their warning times
 * comes.  Without policies (policy 0 everywhere) nothing changes.
 */
typedef struct QMGR_POLICY {
    int64_t minimal_backoff_time;
    int64_t maximal_backoff_time;
    int64_t maximal_queue_lifetime;
    int64_t bounce_queue_lifetime;	/* capped at maximal_queue_lifetime */
    int64_t delay_warning_time;		/* 0 = off */
} QMGR_POLICY;

/* The configuration's own values as a policy. */
void    qmgr_policy_default(const QMGR_PARAMS *p, QMGR_POLICY *out);
/* An id for a policy (0 is the configuration's own); the same values give the same id. */
int     qmgr_policy(QMGR *q, const QMGR_POLICY *pol);
int64_t qmgr_policy_lifetime(const QMGR_POLICY *pol, int null_sender);
/*
 * A relayq_retry_policy_maps value ("minimal_backoff_time=60s,
 * maximal_queue_lifetime=6h"); unnamed values from defaults.  0, or -1
 * with a reason in err.
 */
int     qmgr_policy_parse(const char *value, const QMGR_PARAMS *defaults, QMGR_POLICY *out,
			          char *err, size_t errlen);

/* Messages */
void    qmgr_add(QMGR *q, QMGR_ID id, const QMGR_MSGINFO *info, int64_t now);
void    qmgr_remove(QMGR *q, QMGR_ID id);	/* deleted by an admin (not while active) */
int     qmgr_hold(QMGR *q, QMGR_ID id);		/* 0, or -1 if unknown/active */
int     qmgr_release(QMGR *q, QMGR_ID id, int64_t now);	/* next_eligible kept */
int     qmgr_force_expire(QMGR *q, QMGR_ID id);
int     qmgr_is_active(const QMGR *q, QMGR_ID id);

/* flush: forget dead destinations; every deferred message (or just ids) is due now. */
void    qmgr_flush(QMGR *q, int64_t now);
/*
 * The same in steps (a daemon with a million deferred messages): start
 * forgets the dead destinations, each step makes at most max of the
 * deferred messages ready (those due first first) and returns how many
 * are still deferred.
 */
void    qmgr_flush_start(QMGR *q);
uint32_t qmgr_flush_some(QMGR *q, int64_t now, uint32_t max);
void    qmgr_flush_ids(QMGR *q, const QMGR_ID *ids, int n, int64_t now);

/*
 * After QMGR_ACT_ACTIVATE: the message's pending recipients and where each
 * goes.  rcpts[i] is the recipient's index in the message, dests[i] its
 * destination key ("smtp:[127.0.0.1]:10099"); one key per (transport,
 * nexthop).  nrcpt == 0 completes the pass at once (QMGR_REMOVE).
 * If the message could not be loaded, call qmgr_remove() instead.
 */
void    qmgr_activated(QMGR *q, QMGR_ID id, const int *rcpts, const char *const *dests,
		               int nrcpt, int64_t now);
/* The same, with each recipient's policy id (qmgr_policy()); policies may be NULL. */
void    qmgr_activated_policies(QMGR *q, QMGR_ID id, const int *rcpts, const char *const *dests,
				        const int *policies, int nrcpt, int64_t now);

/*
 * The result of a DELIVER request: how many of its recipients were deferred
 * (the others were delivered or bounced), and, when the failure blames the
 * next hop itself (spec D2), its DSN and reason (else NULL).
 */
void    qmgr_delivered(QMGR *q, uint64_t req, int ndeferred,
		               const char *hop_dsn, const char *hop_reason, int64_t now);
/* The same, naming the deferred recipients (indices into the message). */
void    qmgr_delivered_rcpts(QMGR *q, uint64_t req, const int *deferred, int ndeferred,
			             const char *hop_dsn, const char *hop_reason, int64_t now);

/*
 * Advance to now: runs due queue runs and dead-destination timers, feeds
 * the active set, dispatches deliveries.  Fills at most max actions and
 * returns their number; call again while it returns max.  Pointers in the
 * actions stay valid until the next call into qmgr.
 */
int     qmgr_run(QMGR *q, int64_t now, QMGR_ACTION *out, int max);

/* When qmgr_run() next has something to do (absolute seconds), or INT64_MAX. */
int64_t qmgr_next_wakeup(const QMGR *q, int64_t now);

/* The queue-run grid: first run at or after t. */
int64_t qmgr_run_at_or_after(const QMGR *q, int64_t t);
/* The run that takes a message eligible at `eligible` whose attempt ended at t_fail (S5). */
int64_t qmgr_run_for(const QMGR *q, int64_t t_fail, int64_t eligible);

/* Query (mailq -j, explain ID, metrics). */
typedef struct QMGR_MSGSTATE {
    int     known;
    int     active;
    int     state;			/* QMGR_MSG_* when not active */
    int64_t next_eligible;
    int64_t next_attempt;		/* queue run that will take it; 0 if unknown/held */
    int     destination_dead;		/* one of the destinations of its last pass is dead */
    int64_t dead_until;			/* then: the latest end of their dead state */
} QMGR_MSGSTATE;
void    qmgr_msg_state(const QMGR *q, QMGR_ID id, QMGR_MSGSTATE *st);
int     qmgr_dest_dead(const QMGR *q, const char *dest, int64_t *until);
int     qmgr_dead_count(const QMGR *q);
/*
 * The oldest create_time of the messages it knows (any state), or 0 if
 * none.  Kept as messages come; a scan of the slots only after the oldest
 * one left.
 */
int64_t qmgr_oldest_create_time(QMGR *q);
/* Every destination it knows now (with work queued or dead), in no order. */
typedef void (*QMGR_DEST_FN) (void *ctx, const char *dest, int dead);
void    qmgr_dest_walk(const QMGR *q, QMGR_DEST_FN fn, void *ctx);
int64_t qmgr_anchor(const QMGR *q);
/* Bytes the scheduler holds (its own accounting of its arrays). */
size_t  qmgr_memory(const QMGR *q);

typedef struct QMGR_COUNTS {
    int     incoming, active, deferred, hold;
} QMGR_COUNTS;
void    qmgr_counts(const QMGR *q, QMGR_COUNTS *c);

/*
 * relayq top: what the scheduler keeps up to date as messages change
 * state, so that a snapshot never walks the messages.  The age table
 * counts messages by state and qshape's age buckets (< 5 minutes, then
 * doubling; the last, 1280+, unbounded), by the minute of arrival (a
 * message counts as if it arrived at its minute's start).  A deferred
 * message counts for each destination to which a recipient was deferred
 * in its last pass; one not tried since the start (loaded from the queue)
 * counts for none.
 */
#define QMGR_AGE_BUCKETS 10
typedef struct QMGR_TOP {
    QMGR_COUNTS counts;
    uint32_t age[4][QMGR_AGE_BUCKETS];	/* [incoming, active, deferred, hold][bucket] */
    int     ndead;			/* dead destinations */
    uint32_t ndests;			/* destinations of the messages' last passes */
    uint32_t deferred_known;		/* deferred messages with a known destination */
    int64_t next_run;			/* the next queue-run grid point */
    int64_t next_due;			/* the run that takes the first deferred message; 0: none */
} QMGR_TOP;
void    qmgr_top(const QMGR *q, int64_t now, QMGR_TOP *out);
int     qmgr_age_bucket(int64_t age_s);		/* 0 .. QMGR_AGE_BUCKETS-1 */

/* A destination: its deferred messages, and whether it is dead, until when and why. */
typedef struct QMGR_TOP_DEST {
    const char *dest;			/* pointers valid until the next qmgr call */
    uint32_t deferred;
    int     dead;
    int64_t dead_until;
    const char *dsn, *reason;
} QMGR_TOP_DEST;
/*
 * The max destinations with the most deferred messages, then dead ones
 * with none; sorted by deferred messages (most first), dead first, name.
 * Costs the number of distinct destinations, not of messages.
 */
int     qmgr_top_dests(const QMGR *q, QMGR_TOP_DEST *out, int max);
/* Tests: the counters against a recount; 0 when they agree. */
int     qmgr_top_check(const QMGR *q);

/*
 * The retry timeline, computed by running this code on a simulated clock:
 * a message to a next hop that fails every attempt after attempt_duration
 * seconds (a hop failure each time).
 */
typedef struct QMGR_SIM_INPUT {
    int64_t anchor;			/* time of the queue run grid's anchor */
    int64_t arrival;			/* message arrival = create_time */
    int64_t attempt_duration;
    int     null_sender;
    /* For a queued message (explain ID); zero for a configuration: */
    int     attempts_done;		/* attempts already made */
    int64_t now;			/* time of the question */
    int64_t next_eligible;		/* its current next_eligible (deferred) */
    int     warned;
    int     held;
    int     max_attempts;		/* safety bound; 0 = 1000 */
    /* Recipients under different policies: one group each (0 groups: one, policy 0). */
    const QMGR_POLICY *policies;
    int     npolicies;
} QMGR_SIM_INPUT;

typedef struct QMGR_SIM_ATTEMPT {
    int     n;				/* 1-based attempt number */
    int64_t start;			/* absolute */
    int64_t end;
    int64_t queue_run;			/* the run that took it up (0 for the first, incoming) */
    int64_t eligible;			/* end of the backoff that preceded it (0 for the first) */
    int64_t backoff;			/* backoff set after it (0 if it expired) */
    int64_t next_eligible;		/* end + backoff */
    int     warning;			/* delay warning sent at its end */
    int     expired;			/* expired at its end */
} QMGR_SIM_ATTEMPT;

typedef struct QMGR_TIMELINE {
    QMGR_SIM_ATTEMPT *attempts;
    int     nattempts;
    int64_t warning_at;			/* 0 = none */
    int64_t expiry_at;			/* end of the expiring attempt */
    int64_t lifetime;			/* the lifetime that applied */
    int64_t *group_expiry;		/* with policies: when each group expired (0: did not) */
} QMGR_TIMELINE;

/*
 * Returns 0 with the timeline; 1 if in->held (no timeline: nothing happens
 * until release); -1 if the start lies before in->anchor.  A queued message
 * (in->now > 0) starts deferred at in->next_eligible, or as incoming when
 * that is 0; queue_run/eligible are 0 for an attempt of incoming mail.
 */
int     qmgr_simulate(const QMGR_PARAMS *p, const QMGR_SIM_INPUT *in, QMGR_TIMELINE *out);
void    qmgr_timeline_free(QMGR_TIMELINE *t);

/* Words shared by the log and explain: "backoff 900s (age 16s raised to minimal_backoff_time)" */
void    qmgr_explain_backoff(const QMGR_PARAMS *p, int64_t age, char *out, size_t len);

#endif
