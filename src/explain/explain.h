/*
 * explain - `relayq explain`: the retry timeline of a configuration (or of
 * one queued message) as a table, JSON or an SVG picture.  The timeline is
 * computed by qmgr_simulate(), i.e. by the scheduler's own code.
 *
 * One module for both programs: the CLI renders a configuration's timeline
 * and, when the daemon is down, a queued message's; the daemon renders a
 * queued message's timeline for the query socket ("explain ID ..."), since
 * only it knows the queue-run phase and the dead destinations.  Both parse
 * their options with explain_opts_parse() and gather a message's state with
 * explain_queued().
 *
 * All times shown are seconds after the message's arrival (create_time).
 */
#ifndef EXPLAIN_H_INCLUDED
#define EXPLAIN_H_INCLUDED

#include <stdio.h>
#include <stdint.h>
#include "util/util.h"
#include "qmgr/qmgr.h"
#include "queue/queue.h"
#include "config/config.h"
#include "control/control.h"

/* ---- options ---- */

/*
 * The options of `relayq explain [ID] [options]`, each as "--opt VALUE" or
 * "--opt=VALUE":
 *   --arrival-offset SECONDS   how long after a queue run the message
 *                              arrives (default 1: just after a run, which
 *                              gives the longest first retry wait)
 *   --attempt-duration SECONDS how long each failing attempt takes (default 0)
 *   --sender ADDRESS           '<>' or '' for the null sender (bounce_queue_lifetime)
 *   --max-attempts N           stop after N attempts (default 1000)
 *   --json                     JSON (CONTRACT.md) instead of the table
 *   --svg FILE                 also write the SVG timeline to FILE ("-": to out, instead of text)
 * SECONDS may carry a unit: s, m, h, d, w (at most 10 years).  The one word
 * that is not an option or an option's value is the queue ID.  Only --json
 * and --attempt-duration apply to a queued message.
 */
#define EXPLAIN_OPT_CONFIG_ONLY	(1u << 0)	/* an option that applies to a configuration only was given */
#define EXPLAIN_OPT_WHAT_IF	(1u << 1)	/* an option of --what-if (--at, --until, --all) was given */

#define EXPLAIN_MAX_SETS	16
#define EXPLAIN_MAX_IDS		256

typedef struct EXPLAIN_OPTS {
    const char *qid;			/* NULL: explain the configuration (the first of ids) */
    int64_t arrival_offset;
    int64_t attempt_duration;
    int     null_sender;
    int     max_attempts;		/* 0: qmgr_simulate's default */
    int     json;
    const char *svg;			/* NULL, a file name, or "-" */
    unsigned flags;			/* EXPLAIN_OPT_* */
    /* What-if (relayq only): --what-if, --set NAME=VALUE, --at, --until, --all, --compare. */
    int     what_if;			/* the queue under a changed configuration */
    int     compare;			/* a configuration: both timelines side by side */
    const char *sets[EXPLAIN_MAX_SETS];	/* "NAME=VALUE" */
    int     nsets;
    int64_t at;				/* when the change is applied (absolute; 0: now) */
    int64_t until;			/* "expires before" horizon (absolute; 0: none) */
    int     all;			/* every queued message */
    const char *ids[EXPLAIN_MAX_IDS];	/* the queue IDs named */
    int     nids;
} EXPLAIN_OPTS;

/*
 * Parse argv[0..argc-1] (the words after "explain") into o (values point
 * into argv).  Returns 0, or -1 with a one-line reason in err.
 */
int     explain_opts_parse(int argc, char *const *argv, EXPLAIN_OPTS *o, char *err, size_t errlen);

/* The query-socket request for o (o->qid set, or o->what_if): "explain ID [--json] [--attempt-duration=S]". */
void    explain_opts_request(const EXPLAIN_OPTS *o, BUF *req);

/*
 * The parameters --set may change: those of the schedule.  1 if name is one.
 */
int     explain_schedule_param(const char *name);

/*
 * The scheduler's parameters of confdir's configuration with overrides
 * (the daemon's own -o) and then o->sets applied, as a reload would read
 * them.  Returns 0, or -1 with the configuration error in err.
 */
int     explain_whatif_params(const char *confdir, char *const *overrides, int noverrides,
			              const EXPLAIN_OPTS *o, QMGR_PARAMS *p, char *err, size_t errlen);

/*
 * The scheduler's parameters of a configuration: one place for the daemon
 * and the CLI, so that `explain` simulates exactly what relayqd runs.
 */
void    explain_params(const CONFIG *cf, QMGR_PARAMS *p);

/* ---- a configuration ---- */

/*
 * The timeline of a configuration (o->qid is not looked at), in the format
 * o asks for.  Returns 0; -1 when these parameters cannot be simulated
 * (reason in err); 1 when the SVG file cannot be written (reason in err;
 * the text was written).
 */
int     explain_config(const QMGR_PARAMS *p, const EXPLAIN_OPTS *o, FILE *out, char *err, size_t errlen);

/* Renderers, shared with the queued-message view. */
void    explain_print_text(FILE *fp, const QMGR_PARAMS *p, const QMGR_SIM_INPUT *in,
			           const QMGR_TIMELINE *tl);
void    explain_print_json(FILE *fp, const QMGR_PARAMS *p, const QMGR_SIM_INPUT *in,
			           const QMGR_TIMELINE *tl);
void    explain_write_svg(FILE *fp, const QMGR_PARAMS *p, const QMGR_SIM_INPUT *in,
			          const QMGR_TIMELINE *tl);

/* Two timelines of the same message overlaid (--compare --svg). */
void    explain_write_svg_pair(FILE *fp, const QMGR_PARAMS *now, const QMGR_PARAMS *changed,
			               const QMGR_SIM_INPUT *in, const QMGR_TIMELINE *a,
			               const QMGR_TIMELINE *b);

/* s as a JSON string, quotes included (", \, control characters and DEL escaped; NULL as ""). */
void    explain_json_string(FILE *fp, const char *s);

/* "29m25s", "24h29m41s", "0s" (no sign); returns buf. */
char   *explain_duration(int64_t secs, char *buf, size_t len);

/*
 * `explain --set NAME=VALUE ... --compare`: the two timelines of a
 * configuration, now and changed, side by side (text or JSON), the SVG with
 * both overlaid.  Returns as explain_config().
 */
int     explain_compare(const QMGR_PARAMS *now, const QMGR_PARAMS *changed, const EXPLAIN_OPTS *o,
			        FILE *out, char *err, size_t errlen);

/* ---- what-if on the queue ---- */

/*
 * One message's future under p, the queue-run grid anchored at anchor,
 * from time now on, if every attempt fails after attempt_duration seconds.
 */
typedef struct EXPLAIN_PREDICTION {
    int     known;			/* 0: held or being delivered: no prediction */
    int64_t next_attempt;		/* start of the next attempt */
    int64_t expire_time;		/* end of the failed attempt at which it expires */
    int64_t warn_time;			/* when the delay warning goes out; 0: none */
    int     attempts_hour;		/* attempts starting in [now, now + 3600) */
    int     attempts;			/* attempts until it expires */
    int64_t *rcpt_expire;		/* with retry policies: per recipient (nrcpt), 0 if not pending */
    int     nrcpt;
} EXPLAIN_PREDICTION;

void    explain_prediction_free(EXPLAIN_PREDICTION *p);

/* A message's pending recipients grouped by retry policy (values parsed under p). */
#define EXPLAIN_MAX_GROUPS 50
typedef struct EXPLAIN_GROUPS {
    QMGR_POLICY pol[EXPLAIN_MAX_GROUPS];
    int     n;				/* 0: no policy map */
    int    *of;				/* per recipient: its group, -1 if not pending */
} EXPLAIN_GROUPS;
void    explain_groups_make(const QMGR_PARAMS *p, const QMSG *m, const char *const *rcpt_policy,
			            EXPLAIN_GROUPS *g);
void    explain_groups_free(EXPLAIN_GROUPS *g);

/*
 * The same message today and under changed parameters applied at `at` (a
 * reload: the grid re-anchored at `at`, dead destinations forgotten);
 * before `at` the message follows today's schedule.
 */
/* rcpt_policy: each recipient's relayq_retry_policy_maps value (SHOWQ_SCHED), or NULL. */
void    explain_predict(const QMGR_PARAMS *p, const QMSG *m, const char *const *rcpt_policy,
			        int64_t anchor, int64_t now, int64_t attempt_duration,
			        EXPLAIN_PREDICTION *out);
void    explain_predict_change(const QMGR_PARAMS *p_now, const QMGR_PARAMS *p_new, const QMSG *m,
				       const char *const *rcpt_policy, int64_t anchor, int64_t now,
				       int64_t at, int64_t attempt_duration, EXPLAIN_PREDICTION *out);

/*
 * `explain --what-if`: every queued message (o->all) or those named, one
 * line each (or a JSON array) and a summary.  sched/ctx/anchor as for
 * explain_queued(); they must come from the running daemon.  Returns 0, or
 * -1 with a reason in err.  This runs on the caller's thread; the daemon
 * answers with the pieces below instead, a page at a time, the
 * predictions made on its view thread.
 */
int     explain_whatif(QUEUE *q, const QMGR_PARAMS *p_now, const QMGR_PARAMS *p_new,
		               const EXPLAIN_OPTS *o, SHOWQ_SCHED_FN sched, void *ctx,
		               int64_t anchor, int64_t now, FILE *out, char *err, size_t errlen);

/*
 * The same in pieces, for a walk of the queue that is not one loop:
 *
 *   w = explain_whatif_begin(p_now, p_new, o, anchor, now, out);   the header
 *   per page of messages (queue_page order):
 *       explain_whatif_join(w, msgs, n, sched, ctx);   what only the daemon
 *                    knows (being delivered, retry policy values), copied;
 *                    on the daemon's loop
 *       explain_whatif_page(w, msgs, n, buf);   the predictions (the costly
 *                    part: three simulations a message) and their lines,
 *                    appended to buf; on any one thread at a time
 *   explain_whatif_end(w, out);   the summary (or the JSON array's end)
 *   explain_whatif_free(w);
 *
 * w keeps copies of the parameters and options it needs (not o itself),
 * the counts for the summary and one page's join: its memory does not
 * grow with the queue.  explain_whatif_msg() is one message with its
 * daemon state given.
 */
typedef struct EXPLAIN_WHATIF EXPLAIN_WHATIF;
EXPLAIN_WHATIF *explain_whatif_begin(const QMGR_PARAMS *p_now, const QMGR_PARAMS *p_new,
				             const EXPLAIN_OPTS *o, int64_t anchor, int64_t now, FILE *out);
void    explain_whatif_join(EXPLAIN_WHATIF *w, QMSG *const *msgs, int n,
			            SHOWQ_SCHED_FN sched, void *ctx);
void    explain_whatif_page(EXPLAIN_WHATIF *w, QMSG *const *msgs, int n, BUF *out);
void    explain_whatif_msg(EXPLAIN_WHATIF *w, const QMSG *m, int active,
			           const char *const *rcpt_policy, FILE *out);
void    explain_whatif_end(EXPLAIN_WHATIF *w, FILE *out);
void    explain_whatif_free(EXPLAIN_WHATIF *w);

/* ---- a queued message ---- */

/*
 * `explain ID` (o->qid): the past from the queue's attempt history, the
 * future from qmgr_simulate() started at the message's current state.
 * What only the running daemon knows comes from sched (the same callback
 * as mailq's: active, next attempt, dead destination) and anchor (a
 * queue-run time, qmgr_anchor()); with the daemon down, sched is NULL and
 * anchor 0, and the text says that those are unknown.  p: the scheduler's
 * parameters.  Returns 0, or -1 with a one-line reason in err.
 */
int     explain_queued(QUEUE *q, const QMGR_PARAMS *p, const EXPLAIN_OPTS *o,
		               SHOWQ_SCHED_FN sched, void *ctx, int64_t anchor, int64_t now,
		               FILE *out, char *err, size_t errlen);

/* What explain_queued() renders, for a caller with its own snapshot (tests). */
typedef struct EXPLAIN_MSG {
    QMSG   *msg;
    QATTEMPT *history;
    int     nhistory;
    int     active;
    int64_t next_attempt;
    int     destination_dead;
    int64_t dead_until;
    int64_t anchor;			/* 0: unknown (daemon down) */
    int64_t now;
    int64_t attempt_duration;
    const char *const *rcpt_policy;	/* per recipient retry policy values, or NULL */
} EXPLAIN_MSG;
void    explain_message(FILE *fp, const QMGR_PARAMS *p, const EXPLAIN_MSG *em, int json);

#endif
