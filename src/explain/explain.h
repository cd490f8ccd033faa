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

typedef struct EXPLAIN_OPTS {
    const char *qid;			/* NULL: explain the configuration */
    int64_t arrival_offset;
    int64_t attempt_duration;
    int     null_sender;
    int     max_attempts;		/* 0: qmgr_simulate's default */
    int     json;
    const char *svg;			/* NULL, a file name, or "-" */
    unsigned flags;			/* EXPLAIN_OPT_* */
} EXPLAIN_OPTS;

/*
 * Parse argv[0..argc-1] (the words after "explain") into o (values point
 * into argv).  Returns 0, or -1 with a one-line reason in err.
 */
int     explain_opts_parse(int argc, char *const *argv, EXPLAIN_OPTS *o, char *err, size_t errlen);

/* The query-socket request for o (o->qid set): "explain ID [--json] [--attempt-duration=S]". */
void    explain_opts_request(const EXPLAIN_OPTS *o, BUF *req);

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

/* "29m25s", "24h29m41s", "0s" (no sign); returns buf. */
char   *explain_duration(int64_t secs, char *buf, size_t len);

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
} EXPLAIN_MSG;
void    explain_message(FILE *fp, const QMGR_PARAMS *p, const EXPLAIN_MSG *em, int json);

#endif
