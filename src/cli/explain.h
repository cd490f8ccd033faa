/*
 * explain - `relayq explain`: the retry timeline of a configuration (or of
 * one queued message) as a table, JSON or an SVG picture.  The timeline is
 * computed by qmgr_simulate(), i.e. by the scheduler's own code.
 *
 * All times shown are seconds after the message's arrival (create_time).
 */
#ifndef EXPLAIN_H_INCLUDED
#define EXPLAIN_H_INCLUDED

#include <stdio.h>
#include <stdint.h>
#include "qmgr/qmgr.h"
#include "queue/queue.h"
#include "config/config.h"

/*
 * `relayq explain [options]` for the configuration p.  argv[0] is the
 * command name ("explain"); options:
 *   --arrival-offset SECONDS   how long after a queue run the message
 *                              arrives (default 1: just after a run, which
 *                              gives the longest first retry wait)
 *   --attempt-duration SECONDS how long each failing attempt takes (default 0)
 *   --sender ADDRESS           '<>' or '' for the null sender (bounce_queue_lifetime)
 *   --max-attempts N           stop after N attempts (default 1000)
 *   --json                     JSON (CONTRACT.md) instead of the table
 *   --svg FILE                 also write the SVG timeline to FILE ("-": to out, instead of text)
 * SECONDS may carry a unit: s, m, h, d, w.  Returns the exit status
 * (0; 1 if the SVG file cannot be written; 2 for a usage error, on stderr).
 */
int     cmd_explain_config(const QMGR_PARAMS *p, int argc, char **argv, FILE *out);

/* Renderers, shared with `relayq explain QUEUEID`. */
void    explain_print_text(FILE *fp, const QMGR_PARAMS *p, const QMGR_SIM_INPUT *in,
			           const QMGR_TIMELINE *tl);
void    explain_print_json(FILE *fp, const QMGR_PARAMS *p, const QMGR_SIM_INPUT *in,
			           const QMGR_TIMELINE *tl);
void    explain_write_svg(FILE *fp, const QMGR_PARAMS *p, const QMGR_SIM_INPUT *in,
			          const QMGR_TIMELINE *tl);

/* "29m25s", "24h29m41s", "0s" (no sign); returns buf. */
char   *explain_duration(int64_t secs, char *buf, size_t len);

/*
 * `relayq explain QUEUEID` (explain_msg.c): the past from the queue's attempt
 * history, the future from qmgr_simulate().  The daemon fills in what only
 * it knows (active, next_attempt, dead destinations, the queue-run anchor);
 * without a daemon the CLI passes anchor = 0 and the text says so.
 */
typedef struct EXPLAIN_MSG {
    QMSG   *msg;
    QATTEMPT *history;
    int     nhistory;
    int     active;
    int64_t next_attempt;
    int     destination_dead;
    int64_t dead_until;
    int64_t anchor;
    int64_t now;
    int64_t attempt_duration;
    char   *buf_data;
    size_t  buf_len;
} EXPLAIN_MSG;
void    explain_message(FILE *fp, const QMGR_PARAMS *p, const EXPLAIN_MSG *em, int json);

/*
 * The scheduler's parameters of a configuration: one place for the daemon
 * and the CLI, so that `explain` simulates exactly what relayqd runs.
 * (bounce_queue_lifetime is capped by qmgr itself.)
 */
void    explain_params(const CONFIG *cf, QMGR_PARAMS *p);

#endif
