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

#endif
