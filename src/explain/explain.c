/*
 * explain.c - `relayq explain`: render the retry timeline that the real
 * scheduler produces on a simulated clock (qmgr_simulate) as a table,
 * as JSON (CONTRACT.md) or as a self-contained SVG picture.
 *
 * Every time is shown relative to the message's arrival (its create_time,
 * the base of backoff and expiry), e.g. "+29m25s".  The backoff words come
 * from qmgr_explain_backoff(), so the log and explain say the same thing.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "qmgr/qmgr.h"
#include "explain/explain.h"

#define EXPLAIN_BASE ((int64_t) 1000000000)	/* simulated arrival epoch; never shown */

/* ---------------------------------------------------------------- words */

char   *explain_duration(int64_t secs, char *buf, size_t len)
{
    int64_t s = secs < 0 ? -secs : secs;
    int64_t part[4], unit[4] = {86400, 3600, 60, 1};
    const char *name = "dhms";
    size_t  used;
    int     k, first, last;

    /* Hours up to two days (the seed's "+24h29m41s"), then days. */
    part[0] = s >= 2 * 86400 ? s / 86400 : 0;
    s -= part[0] * 86400;
    for (k = 1; k < 4; k++) {
	part[k] = s / unit[k];
	s -= part[k] * unit[k];
    }
    /* From the first non-zero unit to the last non-zero one: "15m", "1h0m5s". */
    for (first = 0; first < 3 && part[first] == 0; first++)
	 /* void */ ;
    for (last = 3; last > first && part[last] == 0; last--)
	 /* void */ ;
    snprintf(buf, len, "%s", secs < 0 ? "-" : "");
    for (k = first; k <= last; k++) {
	used = strlen(buf);
	snprintf(buf + used, len > used ? len - used : 0, "%lld%c", (long long) part[k], name[k]);
    }
    return (buf);
}

void    explain_json_string(FILE *fp, const char *s)
{
    fputc('"', fp);
    for (; s && *s; s++) {
	unsigned char c = (unsigned char) *s;

	if (c == '"' || c == '\\')
	    fprintf(fp, "\\%c", c);
	else if (c < 0x20 || c == 0x7f)
	    fprintf(fp, "\\u%04x", c);
	else
	    fputc(c, fp);
    }
    fputc('"', fp);
}

/* "+29m25s" relative to arrival. */
static char *explain_rel(const QMGR_SIM_INPUT *in, int64_t t, char *buf, size_t len)
{
    char    tmp[64];

    snprintf(buf, len, "+%s", explain_duration(t - in->arrival, tmp, sizeof(tmp)));
    return (buf);
}

static int64_t explain_offset(const QMGR_PARAMS *p, const QMGR_SIM_INPUT *in)
{
    int64_t R = p->queue_run_delay > 0 ? p->queue_run_delay : 1;
    int64_t off = (in->arrival - in->anchor) % R;

    return (off < 0 ? off + R : off);
}

/*
 * Why attempt a (taken by a queue run) came when it did: prev_end is when
 * the previous attempt ended (its backoff started then).
 */
static void explain_wait(const QMGR_PARAMS *p, const QMGR_SIM_INPUT *in,
			         const QMGR_SIM_ATTEMPT *a, int64_t prev_end,
			         char *buf, size_t len)
{
    int64_t R = p->queue_run_delay > 0 ? p->queue_run_delay : 1;
    int64_t prev_run = a->queue_run - R;
    int64_t wait = a->queue_run - a->eligible;
    char    t1[64], t2[64];

    if (a->eligible == 0 || a->queue_run == 0) {
	snprintf(buf, len, "-");
    } else if (wait < 0) {
	snprintf(buf, len, "eligible %llds after the run: taken (1s slack)", (long long) -wait);
    } else if (prev_end > 0 && prev_run >= prev_end && a->eligible - prev_run < wait) {
	snprintf(buf, len, "the run at %s was %s early",
		 explain_rel(in, prev_run, t1, sizeof(t1)),
		 explain_duration(a->eligible - prev_run, t2, sizeof(t2)));
    } else if (wait == 0) {
	snprintf(buf, len, "eligible at the run");
    } else {
	snprintf(buf, len, "waited %s for the next run", explain_duration(wait, t1, sizeof(t1)));
    }
}

/* ----------------------------------------------------------------- text */

#define COLS 7

void    explain_print_text(FILE *fp, const QMGR_PARAMS *p, const QMGR_SIM_INPUT *in,
			           const QMGR_TIMELINE *tl)
{
    static const char *head[COLS] = {"#", "attempt", "ends", "backoff that led to it",
	"eligible", "queue run", "why then"};
    char ***cells;
    size_t  width[COLS];
    int     i, c, rows = tl->nattempts + 1;
    char    b1[64], b2[64];
    int64_t lifetime = qmgr_lifetime(p, in->null_sender);
    int64_t R = p->queue_run_delay > 0 ? p->queue_run_delay : 1;

    fprintf(fp, "Retry timeline of a message whose next hop fails every attempt\n\n");
    fprintf(fp, "  queue_run_delay        = %llds (deferred mail is looked at every %s, on a fixed grid)\n",
	    (long long) R, explain_duration(R, b1, sizeof(b1)));
    fprintf(fp, "  minimal_backoff_time   = %llds\n", (long long) p->minimal_backoff_time);
    fprintf(fp, "  maximal_backoff_time   = %llds\n", (long long) p->maximal_backoff_time);
    if (in->null_sender)
	fprintf(fp, "  bounce_queue_lifetime  = %llds (%s; the sender is <>)\n",
		(long long) lifetime, explain_duration(lifetime, b1, sizeof(b1)));
    else
	fprintf(fp, "  maximal_queue_lifetime = %llds (%s)\n",
		(long long) lifetime, explain_duration(lifetime, b1, sizeof(b1)));
    if (p->delay_warning_time > 0 && !in->null_sender)
	fprintf(fp, "  delay_warning_time     = %llds (%s)\n", (long long) p->delay_warning_time,
		explain_duration(p->delay_warning_time, b1, sizeof(b1)));
    else
	fprintf(fp, "  delay_warning_time     = %s\n",
		in->null_sender ? "(never for the null sender)" : "0 (off)");
    if (in->now > 0)
	fprintf(fp, "  now is %s after arrival; %d attempt%s made so far; queue runs at +%s + k*%llds\n",
		explain_duration(in->now - in->arrival, b1, sizeof(b1)), in->attempts_done,
		in->attempts_done == 1 ? "" : "s",
		explain_duration(explain_offset(p, in) ? R - explain_offset(p, in) : 0, b2, sizeof(b2)),
		(long long) R);
    else
	fprintf(fp, "  the message arrives %llds after a queue run; each attempt takes %llds\n",
		(long long) explain_offset(p, in), (long long) in->attempt_duration);
    fprintf(fp, "  times are after arrival\n\n");

    /* Cells first, so that the columns line up. */
    cells = xcalloc((size_t) rows, sizeof(*cells));
    for (i = 0; i < rows; i++)
	cells[i] = xcalloc(COLS, sizeof(char *));
    for (c = 0; c < COLS; c++)
	cells[0][c] = xstrdup(head[c]);
    for (i = 0; i < tl->nattempts; i++) {
	const QMGR_SIM_ATTEMPT *a = tl->attempts + i;
	const QMGR_SIM_ATTEMPT *prev = i > 0 ? a - 1 : 0;
	char    why[160], bo[200];
	char  **row = cells[i + 1];

	row[0] = xasprintf("%d", a->n);
	row[1] = xstrdup(explain_rel(in, a->start, b1, sizeof(b1)));
	row[2] = xstrdup(explain_rel(in, a->end, b1, sizeof(b1)));
	if (prev && in->npolicies > 0) {
	    /* Recipients under their own policies: the earliest of theirs decided. */
	    row[3] = xasprintf("backoff %llds (the earliest of the recipients' retry policies)",
			       (long long) prev->backoff);
	} else if (prev) {
	    qmgr_explain_backoff(p, prev->end - in->arrival, bo, sizeof(bo));
	    row[3] = xstrdup(bo);
	} else if (a->eligible == 0) {
	    row[3] = xstrdup("(new mail is tried at once)");
	} else {
	    row[3] = xstrdup("(set by an earlier attempt)");
	}
	row[4] = xstrdup(a->eligible ? explain_rel(in, a->eligible, b1, sizeof(b1)) : "-");
	row[5] = xstrdup(a->queue_run ? explain_rel(in, a->queue_run, b1, sizeof(b1)) : "-");
	explain_wait(p, in, a, prev ? prev->end : 0, why, sizeof(why));
	row[6] = xstrdup(why);
    }
    for (c = 0; c < COLS; c++) {
	width[c] = 0;
	for (i = 0; i < rows; i++)
	    if (strlen(cells[i][c]) > width[c])
		width[c] = strlen(cells[i][c]);
    }
    for (i = 0; i < rows; i++) {
	fprintf(fp, "  %*s", (int) width[0], cells[i][0]);
	for (c = 1; c < COLS; c++) {
	    if (c == COLS - 1)
		fprintf(fp, "  %s", cells[i][c]);
	    else
		fprintf(fp, "  %-*s", (int) width[c], cells[i][c]);
	}
	fputc('\n', fp);
	for (c = 0; c < COLS; c++)
	    free(cells[i][c]);
	free(cells[i]);
    }
    free(cells);
    fputc('\n', fp);

    /* Delay warning. */
    if (tl->warning_at) {
	for (i = 0; i < tl->nattempts && !tl->attempts[i].warning; i++)
	     /* void */ ;
	fprintf(fp, "Delay warning: due at %s (delay_warning_time after arrival); sent at the end "
		"of attempt %d, %s\n", explain_rel(in, in->arrival + p->delay_warning_time, b1, sizeof(b1)),
		i < tl->nattempts ? tl->attempts[i].n : 0, explain_rel(in, tl->warning_at, b2, sizeof(b2)));
    } else if (in->warned) {
	fprintf(fp, "Delay warning: already sent\n");
    } else {
	fprintf(fp, "Delay warning: none%s\n", in->null_sender ? " (never for the null sender)"
		: p->delay_warning_time > 0 ? " (the message expires first)"
		: " (delay_warning_time = 0)");
    }

    /* Expiry: only tested after a failed attempt. */
    fprintf(fp, "Lifetime %s ends at %s; expiry is only tested at the end of a failed attempt.\n",
	    explain_duration(lifetime, b1, sizeof(b1)),
	    explain_rel(in, in->arrival + lifetime, b2, sizeof(b2)));
    if (tl->expiry_at && tl->nattempts > 0) {
	fprintf(fp, "Expires at attempt %d, %s: %s\n", tl->attempts[tl->nattempts - 1].n,
		explain_rel(in, tl->expiry_at, b1, sizeof(b1)),
		in->null_sender ? "dropped, no notice to <>" : "returned to sender");
	fprintf(fp, "%d attempt%s in all: the first and %d retr%s.\n",
		tl->attempts[tl->nattempts - 1].n, tl->attempts[tl->nattempts - 1].n == 1 ? "" : "s",
		tl->attempts[tl->nattempts - 1].n - 1,
		tl->attempts[tl->nattempts - 1].n - 1 == 1 ? "y" : "ies");
    } else {
	fprintf(fp, "No expiry within %d attempts.\n", tl->nattempts);
    }
}

/* ----------------------------------------------------------------- JSON */

static void json_rel(FILE *fp, const QMGR_SIM_INPUT *in, int64_t t)
{
    if (t == 0)
	fputs("null", fp);
    else
	fprintf(fp, "%lld", (long long) (t - in->arrival));
}

void    explain_print_json(FILE *fp, const QMGR_PARAMS *p, const QMGR_SIM_INPUT *in,
			           const QMGR_TIMELINE *tl)
{
    int     i, warn_n = 0;

    fprintf(fp, "{\"parameters\": {\"queue_run_delay\": %lld, \"minimal_backoff_time\": %lld, "
	    "\"maximal_backoff_time\": %lld, \"maximal_queue_lifetime\": %lld, "
	    "\"bounce_queue_lifetime\": %lld, \"delay_warning_time\": %lld, "
	    "\"lifetime\": %lld, \"arrival_offset\": %lld, \"attempt_duration\": %lld, "
	    "\"null_sender\": %s",
	    (long long) p->queue_run_delay, (long long) p->minimal_backoff_time,
	    (long long) p->maximal_backoff_time, (long long) p->maximal_queue_lifetime,
	    (long long) qmgr_lifetime(p, 1),
	    (long long) p->delay_warning_time, (long long) qmgr_lifetime(p, in->null_sender),
	    (long long) explain_offset(p, in), (long long) in->attempt_duration,
	    in->null_sender ? "true" : "false");
    if (in->now > 0)
	fprintf(fp, ", \"now\": %lld, \"attempts_done\": %d", (long long) (in->now - in->arrival),
		in->attempts_done);
    fputs("}, \"attempts\": [", fp);
    for (i = 0; i < tl->nattempts; i++) {
	const QMGR_SIM_ATTEMPT *a = tl->attempts + i;

	if (a->warning)
	    warn_n = a->n;
	fprintf(fp, "%s{\"n\": %d, \"at\": %lld, \"ends\": %lld, \"backoff\": ", i ? ", " : "",
		a->n, (long long) (a->start - in->arrival), (long long) (a->end - in->arrival));
	if (a->expired)
	    fputs("null, \"next_eligible\": null", fp);
	else
	    fprintf(fp, "%lld, \"next_eligible\": %lld", (long long) a->backoff,
		    (long long) (a->next_eligible - in->arrival));
	fputs(", \"eligible\": ", fp);
	json_rel(fp, in, a->eligible);
	fputs(", \"queue_run\": ", fp);
	json_rel(fp, in, a->queue_run);
	fprintf(fp, ", \"warning\": %s, \"expired\": %s}", a->warning ? "true" : "false",
		a->expired ? "true" : "false");
    }
    fputs("], \"delay_warning\": ", fp);
    if (tl->warning_at)
	fprintf(fp, "{\"at\": %lld, \"attempt\": %d, \"due\": %lld}",
		(long long) (tl->warning_at - in->arrival), warn_n, (long long) p->delay_warning_time);
    else
	fputs("null", fp);
    fputs(", \"expiry\": ", fp);
    if (tl->expiry_at && tl->nattempts > 0)
	fprintf(fp, "{\"at\": %lld, \"attempt\": %d, \"lifetime\": %lld, \"status\": \"%s\"}",
		(long long) (tl->expiry_at - in->arrival), tl->attempts[tl->nattempts - 1].n,
		(long long) qmgr_lifetime(p, in->null_sender),
		in->null_sender ? "dropped" : "returned to sender");
    else
	fprintf(fp, "{\"at\": null, \"attempt\": null, \"lifetime\": %lld, \"status\": \"not reached\"}",
		(long long) qmgr_lifetime(p, in->null_sender));
    fputs("}\n", fp);
}

/* ------------------------------------------------------------------ SVG */

#define SVG_W    1200
#define SVG_H    330
#define SVG_X0   60
#define SVG_X1   1160
#define SVG_AXIS 220

/*
 * A square-root time scale: the first retries (minutes apart) stay apart,
 * and a day or a week of regular retries still fits.
 */
/* The document's head: XML declaration, the svg element, its style sheet, a white page. */
static void svg_open(FILE *fp, const char *style)
{
    fprintf(fp, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(fp, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
	    "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n",
	    SVG_W, SVG_H, SVG_W, SVG_H);
    fprintf(fp, "<style>%s</style>\n", style);
    fprintf(fp, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", SVG_W, SVG_H);
}

static double svg_x(int64_t rel, int64_t span);

/*
 * Labelled ticks on an axis at height y for the times in labels (up to
 * span), none closer than 48 px to the one before (the first to last).
 */
static void svg_time_labels(FILE *fp, const int64_t *labels, size_t n, int64_t span, int y,
			            double last)
{
    char    buf[64];
    double  x;

    for (size_t k = 0; k < n && labels[k] <= span; k++) {
	x = svg_x(labels[k], span);
	if (x - last < 48.0)
	    continue;
	last = x;
	fprintf(fp, "<line class=\"axis\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>"
		"<text class=\"label\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
		x, y, x, y + 10, x, y + 22, explain_duration(labels[k], buf, sizeof(buf)));
    }
}

static double svg_x(int64_t rel, int64_t span)
{
    if (rel <= 0 || span <= 0)
	return (SVG_X0);
    return (SVG_X0 + (SVG_X1 - SVG_X0) * sqrt((double) rel) / sqrt((double) span));
}

/* One row of the overlay: attempts as marks at height y, the expiry as a line. */
static void svg_row(FILE *fp, const QMGR_SIM_INPUT *in, const QMGR_TIMELINE *tl, int64_t span,
		            int y, const char *cls, const char *label)
{
    char    b1[64];
    double  x;

    fprintf(fp, "<text class=\"label\" x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n",
	    SVG_X0 - 6, y + 4, label);
    for (int i = 0; i < tl->nattempts; i++) {
	const QMGR_SIM_ATTEMPT *a = tl->attempts + i;

	x = svg_x(a->start - in->arrival, span);
	fprintf(fp, "<circle class=\"%s\" cx=\"%.1f\" cy=\"%d\" r=\"5\"><title>%s attempt %d at %s"
		"</title></circle>\n", cls, x, y, label, a->n,
		explain_rel(in, a->start, b1, sizeof(b1)));
    }
    if (tl->expiry_at) {
	x = svg_x(tl->expiry_at - in->arrival, span);
	fprintf(fp, "<line class=\"%s-exp\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>"
		"<text class=\"label\" x=\"%.1f\" y=\"%d\" text-anchor=\"end\">%s expires %s </text>\n",
		cls, x, y - 14, x, y + 14, x, y - 18, label,
		explain_rel(in, tl->expiry_at, b1, sizeof(b1)));
    }
}

void    explain_write_svg_pair(FILE *fp, const QMGR_PARAMS *p, const QMGR_PARAMS *q,
			               const QMGR_SIM_INPUT *in, const QMGR_TIMELINE *a,
			               const QMGR_TIMELINE *b)
{
    int64_t span = 60;
    char    b1[64], b2[64];
    static const int64_t labels[] = {60, 300, 900, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600,
	12 * 3600, 86400, 2 * 86400, 3 * 86400, 5 * 86400, 7 * 86400, 14 * 86400, 28 * 86400};

    if (a->nattempts > 0 && a->attempts[a->nattempts - 1].end - in->arrival > span)
	span = a->attempts[a->nattempts - 1].end - in->arrival;
    if (b->nattempts > 0 && b->attempts[b->nattempts - 1].end - in->arrival > span)
	span = b->attempts[b->nattempts - 1].end - in->arrival;
    span += span / 50 + 1;
    svg_open(fp, ".now{fill:#c0392b;stroke:#000}.whatif{fill:#2e86c1;stroke:#000}"
	     ".now-exp{stroke:#c0392b;stroke-width:3}.whatif-exp{stroke:#2e86c1;stroke-width:3}"
	     ".axis{stroke:#000}.label{fill:#000}");
    fprintf(fp, "<text x=\"%d\" y=\"24\" font-size=\"15\">Retry timelines: now (lifetime %s, "
	    "backoff %llds..%llds, runs every %llds) and what-if (lifetime %s, backoff %llds..%llds, "
	    "runs every %llds)</text>\n", SVG_X0,
	    explain_duration(qmgr_lifetime(p, in->null_sender), b1, sizeof(b1)),
	    (long long) p->minimal_backoff_time, (long long) p->maximal_backoff_time,
	    (long long) p->queue_run_delay,
	    explain_duration(qmgr_lifetime(q, in->null_sender), b2, sizeof(b2)),
	    (long long) q->minimal_backoff_time, (long long) q->maximal_backoff_time,
	    (long long) q->queue_run_delay);
    fprintf(fp, "<text x=\"%d\" y=\"42\" fill=\"#555\">time after arrival (square-root scale)</text>\n",
	    SVG_X0);
    fprintf(fp, "<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>\n",
	    SVG_X0, SVG_AXIS + 40, SVG_X1, SVG_AXIS + 40);
    svg_time_labels(fp, labels, ARRAY_LEN(labels), span, SVG_AXIS + 40, SVG_X0 - 100);
    svg_row(fp, in, a, span, 130, "now", "now");
    svg_row(fp, in, b, span, 210, "whatif", "what-if");
    fprintf(fp, "</svg>\n");
}

void    explain_write_svg(FILE *fp, const QMGR_PARAMS *p, const QMGR_SIM_INPUT *in,
			          const QMGR_TIMELINE *tl)
{
    static const int64_t labels[] = {60, 300, 900, 1800, 3600, 2 * 3600, 3 * 3600, 4 * 3600,
	6 * 3600, 8 * 3600, 12 * 3600, 16 * 3600, 86400, 36 * 3600, 2 * 86400, 3 * 86400,
	4 * 86400, 5 * 86400, 7 * 86400, 10 * 86400, 14 * 86400, 21 * 86400, 28 * 86400};
    int64_t R = p->queue_run_delay > 0 ? p->queue_run_delay : 1;
    int64_t lifetime = qmgr_lifetime(p, in->null_sender), span = 60, run;
    int64_t start = in->now > in->arrival ? in->now : in->arrival;
    double  last = -100.0, x;
    char    b1[64], b2[64];
    int     i;

    if (tl->nattempts > 0)
	span = tl->attempts[tl->nattempts - 1].end - in->arrival;
    if (lifetime > span)
	span = lifetime;
    span += span / 50 + 1;

    svg_open(fp, ".run{stroke:#999;stroke-width:1}.attempt{fill:#c0392b;stroke:#000}"
	     ".backoff{fill:#f5b041;opacity:0.8}.wait{fill:#85c1e9;opacity:0.9}"
	     ".expiry{stroke:#000;stroke-width:3}.lifetime{stroke:#555;stroke-dasharray:4 3}"
	     ".warning{fill:#8e44ad}.axis{stroke:#000}.label{fill:#000}");
    fprintf(fp, "<text x=\"%d\" y=\"24\" font-size=\"15\">Retry timeline: queue_run_delay %llds, "
	    "backoff %llds..%llds, lifetime %s, attempts take %llds%s</text>\n", SVG_X0,
	    (long long) R, (long long) p->minimal_backoff_time, (long long) p->maximal_backoff_time,
	    explain_duration(lifetime, b1, sizeof(b1)), (long long) in->attempt_duration,
	    in->null_sender ? ", sender &lt;&gt;" : "");
    fprintf(fp, "<text x=\"%d\" y=\"42\" fill=\"#555\">time after arrival (square-root scale); "
	    "ticks: queue runs</text>\n", SVG_X0);

    /* Axis and queue-run ticks (thinned where closer than 3 px). */
    fprintf(fp, "<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>\n",
	    SVG_X0, SVG_AXIS, SVG_X1, SVG_AXIS);
    fprintf(fp, "<g class=\"runs\">\n");
    run = in->anchor + ((in->arrival - in->anchor) / R + 1) * R;
    for (; run - in->arrival <= span; run += R) {
	x = svg_x(run - in->arrival, span);
	if (x - last < 3.0)
	    continue;
	last = x;
	fprintf(fp, "<line class=\"run\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>\n",
		x, SVG_AXIS - 6, x, SVG_AXIS + 6);
    }
    fprintf(fp, "</g>\n");
    fprintf(fp, "<text class=\"label\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">0</text>\n",
	    SVG_X0, SVG_AXIS + 22);
    svg_time_labels(fp, labels, ARRAY_LEN(labels), span, SVG_AXIS, SVG_X0);

    /* Backoff windows (end of attempt -> eligible) and the wait for a run. */
    for (i = 0; i < tl->nattempts; i++) {
	const QMGR_SIM_ATTEMPT *a = tl->attempts + i;
	const QMGR_SIM_ATTEMPT *next = i + 1 < tl->nattempts ? a + 1 : 0;
	double  x0 = svg_x(a->end - in->arrival, span), x1;

	if (a->expired)
	    continue;
	x1 = svg_x(a->next_eligible - in->arrival, span);
	fprintf(fp, "<rect class=\"backoff\" x=\"%.1f\" y=\"150\" width=\"%.1f\" height=\"14\">"
		"<title>%s</title></rect>\n", x0, x1 - x0 > 0.5 ? x1 - x0 : 0.5,
		(qmgr_explain_backoff(p, a->end - in->arrival, b2, sizeof(b2)), b2));
	if (next && next->queue_run > a->next_eligible) {
	    double  x2 = svg_x(next->queue_run - in->arrival, span);

	    fprintf(fp, "<rect class=\"wait\" x=\"%.1f\" y=\"150\" width=\"%.1f\" height=\"14\">"
		    "<title>waiting %llds for the queue run at %s</title></rect>\n", x1,
		    x2 - x1 > 0.5 ? x2 - x1 : 0.5,
		    (long long) (next->queue_run - a->next_eligible),
		    explain_rel(in, next->queue_run, b1, sizeof(b1)));
	}
    }

    /* Nominal end of lifetime, expiry, warning. */
    x = svg_x(lifetime, span);
    fprintf(fp, "<line class=\"lifetime\" x1=\"%.1f\" y1=\"60\" x2=\"%.1f\" y2=\"%d\"/>"
	    "<text class=\"label\" x=\"%.1f\" y=\"72\" text-anchor=\"end\">lifetime %s </text>\n",
	    x, x, SVG_AXIS, x, explain_duration(lifetime, b1, sizeof(b1)));
    if (tl->expiry_at) {
	x = svg_x(tl->expiry_at - in->arrival, span);
	fprintf(fp, "<line class=\"expiry\" x1=\"%.1f\" y1=\"80\" x2=\"%.1f\" y2=\"%d\"/>"
		"<text class=\"label\" x=\"%.1f\" y=\"92\" text-anchor=\"end\">expires %s: %s </text>\n",
		x, x, SVG_AXIS, x, explain_rel(in, tl->expiry_at, b1, sizeof(b1)),
		in->null_sender ? "dropped" : "returned to sender");
    }
    if (tl->warning_at) {
	x = svg_x(tl->warning_at - in->arrival, span);
	fprintf(fp, "<path class=\"warning\" d=\"M %.1f 128 l -6 -10 l 12 0 z\">"
		"<title>delay warning sent at %s</title></path>\n",
		x, explain_rel(in, tl->warning_at, b1, sizeof(b1)));
    }
    if (start > in->arrival) {
	x = svg_x(start - in->arrival, span);
	fprintf(fp, "<line class=\"lifetime\" x1=\"%.1f\" y1=\"110\" x2=\"%.1f\" y2=\"%d\"/>"
		"<text class=\"label\" x=\"%.1f\" y=\"106\" text-anchor=\"middle\">now</text>\n",
		x, x, SVG_AXIS, x);
    }

    /* Attempts: one mark each, numbered where there is room. */
    last = -100.0;
    for (i = 0; i < tl->nattempts; i++) {
	const QMGR_SIM_ATTEMPT *a = tl->attempts + i;

	x = svg_x(a->start - in->arrival, span);
	fprintf(fp, "<circle class=\"attempt\" cx=\"%.1f\" cy=\"190\" r=\"5\"><title>attempt %d at %s",
		x, a->n, explain_rel(in, a->start, b1, sizeof(b1)));
	fprintf(fp, ", ends %s%s</title></circle>\n", explain_rel(in, a->end, b2, sizeof(b2)),
		a->expired ? ": expired" : "");
	if (x - last >= 16.0) {
	    fprintf(fp, "<text class=\"label\" x=\"%.1f\" y=\"178\" text-anchor=\"middle\" "
		    "font-size=\"10\">%d</text>\n", x, a->n);
	    last = x;
	}
    }

    /* Legend. */
    fprintf(fp, "<g font-size=\"11\">"
	    "<circle cx=\"%d\" cy=\"290\" r=\"5\" fill=\"#c0392b\" stroke=\"#000\"/>"
	    "<text x=\"%d\" y=\"294\">attempt (number above)</text>"
	    "<rect x=\"%d\" y=\"284\" width=\"20\" height=\"12\" fill=\"#f5b041\"/>"
	    "<text x=\"%d\" y=\"294\">backoff after a failed attempt</text>"
	    "<rect x=\"%d\" y=\"284\" width=\"20\" height=\"12\" fill=\"#85c1e9\"/>"
	    "<text x=\"%d\" y=\"294\">eligible, waiting for the next queue run</text>"
	    "<line x1=\"%d\" y1=\"282\" x2=\"%d\" y2=\"298\" stroke=\"#000\" stroke-width=\"3\"/>"
	    "<text x=\"%d\" y=\"294\">expiry</text>"
	    "<path d=\"M %d 296 l -6 -10 l 12 0 z\" fill=\"#8e44ad\"/>"
	    "<text x=\"%d\" y=\"294\">delay warning</text></g>\n",
	    SVG_X0, SVG_X0 + 10, SVG_X0 + 170, SVG_X0 + 195, SVG_X0 + 390, SVG_X0 + 415,
	    SVG_X0 + 670, SVG_X0 + 670, SVG_X0 + 680, SVG_X0 + 760, SVG_X0 + 772);
    fprintf(fp, "</svg>\n");
}

/* -------------------------------------------------------------- command */

int     explain_config(const QMGR_PARAMS *p, const EXPLAIN_OPTS *o, FILE *out, char *err, size_t errlen)
{
    QMGR_SIM_INPUT in;
    QMGR_TIMELINE tl;
    int     status = 0;

    memset(&in, 0, sizeof(in));
    in.arrival = EXPLAIN_BASE;
    in.anchor = EXPLAIN_BASE - o->arrival_offset;
    in.attempt_duration = o->attempt_duration;
    in.null_sender = o->null_sender;
    in.max_attempts = o->max_attempts;
    if (qmgr_simulate(p, &in, &tl) != 0) {
	snprintf(err, errlen, "cannot simulate these parameters");
	return (-1);
    }

    if (o->svg && strcmp(o->svg, "-") == 0) {
	explain_write_svg(out, p, &in, &tl);
    } else {
	if (o->json)
	    explain_print_json(out, p, &in, &tl);
	else
	    explain_print_text(out, p, &in, &tl);
	if (o->svg) {
	    FILE   *fp = fopen(o->svg, "w");

	    if (fp == 0) {
		snprintf(err, errlen, "cannot write %s: %s", o->svg, strerror(errno));
		status = 1;
	    } else {
		explain_write_svg(fp, p, &in, &tl);
		if (fclose(fp) != 0) {
		    snprintf(err, errlen, "cannot write %s: %s", o->svg, strerror(errno));
		    status = 1;
		}
	    }
	}
    }
    qmgr_timeline_free(&tl);
    return (status);
}
