/*
 * top - relayq top's snapshot: the reply format (top_format, top_parse),
 * the screen (top_render) and the JSON (top_json).  See top.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "control/control.h"
#include "control/top.h"

const char *const top_counter_names[TOP_COUNTERS] = {"received", "delivered", "deferred", "bounced"};
const char *const top_state_names[TOP_STATES] = {"incoming", "active", "deferred", "hold"};
const int top_windows[TOP_WINDOWS] = {1, 10, 60};

/* qshape's headings: the bucket's upper bound in minutes, the last unbounded. */
static const char *const top_age_heads[QMGR_AGE_BUCKETS] = {
    "5", "10", "20", "40", "80", "160", "320", "640", "1280", "1280+"
};

#define TOP_LINES_MAX	400		/* lines parsed or drawn, whatever the terminal says */

void    top_snap_free(TOP_SNAP *s)
{
    for (int i = 0; i < s->ndest; i++) {
	free(s->dests[i].dest);
	free(s->dests[i].dsn);
	free(s->dests[i].reason);
    }
    free(s->dests);
    free(s->host);
    memset(s, 0, sizeof(*s));
}

/* ---- the daemon down: the queue itself ---- */

typedef struct TOP_WALK {
    TOP_SNAP *s;
    int64_t now;
} TOP_WALK;

static int top_walk(void *ctx, const QMSG *m)
{
    TOP_WALK *w = ctx;
    int     st;

    switch (m->state) {
    case QSTATE_INCOMING:
	st = 0;
	break;
    case QSTATE_DEFERRED:
	st = 2;
	break;
    case QSTATE_HOLD:
	st = 3;
	break;
    default:					/* corrupt: not in any view */
	return (0);
    }
    w->s->state[st]++;
    w->s->age[st][qmgr_age_bucket(w->now - m->arrival_us / 1000000)]++;
    return (0);
}

int     top_from_queue(QUEUE *q, const char *host, int64_t now, TOP_SNAP *s)
{
    TOP_WALK w = {s, now};

    memset(s, 0, sizeof(*s));
    s->host = xstrdup(host ? host : "");
    s->now = now;
    s->offline = 1;
    if (queue_walk(q, 0, top_walk, &w) < 0) {
	top_snap_free(s);
	return (-1);
    }
    return (0);
}

/* ---- the reply ---- */

/* Free text as one word: "-" when empty; bytes outside 0x21..0x7e, '%' and '-' as %XX. */
static void top_enc(BUF *out, const char *s)
{
    const unsigned char *p = (const unsigned char *) (s ? s : "");

    buf_putc(out, ' ');
    if (*p == 0) {
	buf_putc(out, '-');
	return;
    }
    for (; *p; p++) {
	if (*p <= 0x20 || *p >= 0x7f || *p == '%' || *p == '-')
	    buf_printf(out, "%%%02X", *p);
	else
	    buf_putc(out, (char) *p);
    }
}

static int top_hex(int c)
{
    if (c >= '0' && c <= '9')
	return (c - '0');
    if (c >= 'A' && c <= 'F')
	return (c - 'A' + 10);
    if (c >= 'a' && c <= 'f')
	return (c - 'a' + 10);
    return (-1);
}

/* The reverse of top_enc; NULL if malformed (or an encoded NUL). */
static char *top_dec(const char *w)
{
    size_t  n = strlen(w);
    char   *out, *o;

    if (strcmp(w, "-") == 0)
	return (xstrdup(""));
    out = o = xmalloc(n + 1);
    while (*w) {
	if (*w == '%') {
	    int     h = top_hex((unsigned char) w[1]), l = h < 0 ? -1 : top_hex((unsigned char) w[2]);

	    if (h < 0 || l < 0 || (h == 0 && l == 0)) {
		free(out);
		return (NULL);
	    }
	    *o++ = (char) (h * 16 + l);
	    w += 3;
	} else {
	    *o++ = *w++;
	}
    }
    *o = 0;
    return (out);
}

void    top_format(const TOP_SNAP *s, BUF *out)
{
    buf_printf(out, "relayq-top %d\nhost", TOP_VERSION);
    top_enc(out, s->host);
    buf_printf(out, "\ntime %lld %lld\n", (long long) s->now, (long long) s->started);
    for (int c = 0; c < TOP_COUNTERS; c++)
	buf_printf(out, "counter %s %llu %.3f %.3f %.3f\n", top_counter_names[c],
		   (unsigned long long) s->total[c], s->rate[c][0], s->rate[c][1], s->rate[c][2]);
    for (int st = 0; st < TOP_STATES; st++) {
	buf_printf(out, "state %s %u\nage %s", top_state_names[st], s->state[st], top_state_names[st]);
	for (int b = 0; b < QMGR_AGE_BUCKETS; b++)
	    buf_printf(out, " %u", s->age[st][b]);
	buf_putc(out, '\n');
    }
    buf_printf(out, "dead %d\ndests %u %u\nruns %lld %lld %lld\n", s->ndead, s->ndests, s->deferred_known,
	       (long long) s->next_run, (long long) s->next_due, (long long) s->queue_run_delay);
    for (int i = 0; i < s->ndest; i++) {
	const TOP_DEST *d = &s->dests[i];

	buf_printf(out, "dest %u %d %lld", d->deferred, d->dead ? 1 : 0, (long long) d->dead_until);
	top_enc(out, d->dsn);
	top_enc(out, d->dest);
	top_enc(out, d->reason);
	buf_putc(out, '\n');
    }
    buf_puts(out, "end\n");
}

static int top_num(const char *w, long long lo, long long hi, long long *v)
{
    char   *end;

    if (w == NULL || *w == 0)
	return (-1);
    errno = 0;
    *v = strtoll(w, &end, 10);
    return (errno || *end || *v < lo || *v > hi) ? -1 : 0;
}

static int top_unum(const char *w, uint64_t *v)
{
    char   *end;

    if (w == NULL || *w < '0' || *w > '9')
	return (-1);
    errno = 0;
    *v = strtoull(w, &end, 10);
    return (errno || *end) ? -1 : 0;
}

static int top_rate(const char *w, double *v)
{
    char   *end;

    if (w == NULL || *w == 0)
	return (-1);
    *v = strtod(w, &end);
    return (*end || !(*v >= 0 && *v < 1e12)) ? -1 : 0;
}

static int top_index(const char *w, const char *const *names, int n)
{
    for (int i = 0; w && i < n; i++)
	if (strcmp(w, names[i]) == 0)
	    return (i);
    return (-1);
}

#define TOP_WORDS 16

/* One line; 0, or -1 (malformed). *end set on the "end" line. */
static int top_parse_line(char *line, TOP_SNAP *s, int *end)
{
    char   *w[TOP_WORDS], *p = line;
    int     n = 0, i;
    long long v;

    while (n < TOP_WORDS && (w[n] = strsep(&p, " ")) != NULL)
	n++;
    for (i = n; i < TOP_WORDS; i++)
	w[i] = NULL;
    if (strcmp(w[0], "end") == 0) {
	*end = 1;
	return (n == 1 ? 0 : -1);
    }
    if (strcmp(w[0], "host") == 0) {
	if (n != 2 || s->host)
	    return (-1);
	return (s->host = top_dec(w[1])) ? 0 : -1;
    }
    if (strcmp(w[0], "time") == 0) {
	if (n != 3 || top_num(w[1], 0, INT64_MAX, &v) < 0)
	    return (-1);
	s->now = v;
	if (top_num(w[2], 0, INT64_MAX, &v) < 0)
	    return (-1);
	s->started = v;
	return (0);
    }
    if (strcmp(w[0], "counter") == 0) {
	int     c = top_index(w[1], top_counter_names, TOP_COUNTERS);

	if (n != 6 || c < 0 || top_unum(w[2], &s->total[c]) < 0)
	    return (-1);
	for (i = 0; i < TOP_WINDOWS; i++)
	    if (top_rate(w[3 + i], &s->rate[c][i]) < 0)
		return (-1);
	return (0);
    }
    if (strcmp(w[0], "state") == 0) {
	int     st = top_index(w[1], top_state_names, TOP_STATES);

	if (n != 3 || st < 0 || top_num(w[2], 0, UINT32_MAX, &v) < 0)
	    return (-1);
	s->state[st] = (uint32_t) v;
	return (0);
    }
    if (strcmp(w[0], "age") == 0) {
	int     st = top_index(w[1], top_state_names, TOP_STATES);

	if (n != 2 + QMGR_AGE_BUCKETS || st < 0)
	    return (-1);
	for (i = 0; i < QMGR_AGE_BUCKETS; i++) {
	    if (top_num(w[2 + i], 0, UINT32_MAX, &v) < 0)
		return (-1);
	    s->age[st][i] = (uint32_t) v;
	}
	return (0);
    }
    if (strcmp(w[0], "dead") == 0) {
	if (n != 2 || top_num(w[1], 0, INT32_MAX, &v) < 0)
	    return (-1);
	s->ndead = (int) v;
	return (0);
    }
    if (strcmp(w[0], "dests") == 0) {
	if (n != 3 || top_num(w[1], 0, UINT32_MAX, &v) < 0)
	    return (-1);
	s->ndests = (uint32_t) v;
	if (top_num(w[2], 0, UINT32_MAX, &v) < 0)
	    return (-1);
	s->deferred_known = (uint32_t) v;
	return (0);
    }
    if (strcmp(w[0], "runs") == 0) {
	if (n != 4 || top_num(w[1], 0, INT64_MAX, &v) < 0)
	    return (-1);
	s->next_run = v;
	if (top_num(w[2], 0, INT64_MAX, &v) < 0)
	    return (-1);
	s->next_due = v;
	if (top_num(w[3], 0, INT64_MAX, &v) < 0)
	    return (-1);
	s->queue_run_delay = v;
	return (0);
    }
    if (strcmp(w[0], "dest") == 0) {
	TOP_DEST d;

	if (n != 7 || s->ndest >= TOP_DESTS_MAX)
	    return (-1);
	memset(&d, 0, sizeof(d));
	if (top_num(w[1], 0, UINT32_MAX, &v) < 0)
	    return (-1);
	d.deferred = (uint32_t) v;
	if (top_num(w[2], 0, 1, &v) < 0)
	    return (-1);
	d.dead = (int) v;
	if (top_num(w[3], 0, INT64_MAX, &v) < 0)
	    return (-1);
	d.dead_until = v;
	d.dsn = top_dec(w[4]);
	d.dest = top_dec(w[5]);
	d.reason = top_dec(w[6]);
	if (!d.dsn || !d.dest || !d.reason) {
	    free(d.dsn);
	    free(d.dest);
	    free(d.reason);
	    return (-1);
	}
	s->dests = xrealloc(s->dests, sizeof(TOP_DEST) * (size_t) (s->ndest + 1));
	s->dests[s->ndest++] = d;
	return (0);
    }
    return (0);					/* a later version's line */
}

int     top_parse(const char *text, size_t len, TOP_SNAP *s, char *err, size_t errlen)
{
    char   *copy = xmalloc(len + 1), *p, *line;
    int     lineno = 0, end = 0, ret = 0;

    memset(s, 0, sizeof(*s));
    memcpy(copy, text, len);
    copy[len] = 0;
    p = copy;
    if (memchr(copy, 0, len) != NULL) {
	snprintf(err, errlen, "malformed top reply: NUL byte");
	free(copy);
	return (-1);
    }
    while (!end && (line = strsep(&p, "\n")) != NULL) {
	if (*line == 0 && p == NULL)
	    break;				/* after the last newline */
	lineno++;
	if (lineno == 1) {
	    long long v;

	    if (strncmp(line, "relayq-top ", 11) != 0 || top_num(line + 11, 1, 1000, &v) < 0) {
		snprintf(err, errlen, "not a top reply (is relayqd older than this relayq?)");
		ret = -1;
		break;
	    }
	    if (v != TOP_VERSION) {
		snprintf(err, errlen, "top reply version %lld, this relayq reads version %d", v, TOP_VERSION);
		ret = -1;
		break;
	    }
	    continue;
	}
	if (lineno > TOP_LINES_MAX || top_parse_line(line, s, &end) < 0) {
	    snprintf(err, errlen, "malformed top reply, line %d", lineno);
	    ret = -1;
	    break;
	}
    }
    if (ret == 0 && !end) {
	snprintf(err, errlen, "truncated top reply");
	ret = -1;
    }
    if (ret == 0 && s->host == NULL)
	s->host = xstrdup("");
    free(copy);
    if (ret < 0)
	top_snap_free(s);
    return (ret);
}

/* ---- the screen ---- */

typedef struct TOP_SCREEN {
    BUF    *out;
    int     width, height;		/* height 0: no limit */
    int     lines;
    int     reserve;			/* lines kept for the status line */
} TOP_SCREEN;

static int top_room(const TOP_SCREEN *sc)
{
    return (sc->height <= 0 || sc->lines < sc->height - sc->reserve);
}

/* One line, made printable, cut at width characters (UTF-8 sequences count as one). */
static void top_line(TOP_SCREEN *sc, const char *text)
{
    char   *pr = str_printable(text);
    const unsigned char *p = (const unsigned char *) pr;
    int     cols = 0;

    while (*p && cols < sc->width) {
	const unsigned char *start = p++;

	while ((*p & 0xc0) == 0x80)
	    p++;
	buf_append(sc->out, start, (size_t) (p - start));
	cols++;
    }
    /* No trailing blanks: a plain-text screen compares line by line. */
    while (sc->out->len > 0 && sc->out->data[sc->out->len - 1] == ' ')
	sc->out->len--;
    buf_putc(sc->out, '\n');
    sc->lines++;
    free(pr);
}

static void top_linef(TOP_SCREEN *sc, const char *fmt, ...) UTIL_PRINTF(2, 3);

static void top_linef(TOP_SCREEN *sc, const char *fmt, ...)
{
    va_list ap;
    char   *s = NULL;

    if (!top_room(sc))
	return;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
	s = NULL;
    va_end(ap);
    top_line(sc, s ? s : "");
    free(s);
}

static void top_clock(int64_t t, char *buf, size_t len)
{
    time_t  tt = (time_t) t;
    struct tm tm;

    if (t <= 0 || localtime_r(&tt, &tm) == NULL)
	snprintf(buf, len, "-");
    else
	strftime(buf, len, "%H:%M:%S", &tm);
}

static void top_dur(int64_t s, char *buf, size_t len)
{
    if (s < 0)
	s = 0;
    if (s < 60)
	snprintf(buf, len, "%llds", (long long) s);
    else if (s < 3600)
	snprintf(buf, len, "%lldm%02llds", (long long) (s / 60), (long long) (s % 60));
    else if (s < 86400)
	snprintf(buf, len, "%lldh%02lldm", (long long) (s / 3600), (long long) (s % 3600 / 60));
    else
	snprintf(buf, len, "%lldd%02lldh", (long long) (s / 86400), (long long) (s % 86400 / 3600));
}

static void top_rate_str(double r, char *buf, size_t len)
{
    if (r < 10)
	snprintf(buf, len, "%.2f", r);
    else if (r < 1000)
	snprintf(buf, len, "%.1f", r);
    else
	snprintf(buf, len, "%.0f", r);
}

int     top_dest_rows(int height)
{
    int     n = height - 19;

    if (height <= 0)
	return (20);
    return (n < 1 ? 1 : n > TOP_DESTS_MAX ? TOP_DESTS_MAX : n);
}

void    top_render(const TOP_SNAP *s, int width, int height, const char *status, BUF *out)
{
    TOP_SCREEN sc = {out, width < 10 ? 10 : width, height < 0 ? 0 : height, 0, status ? 1 : 0};
    char    now[16], a[32], b[32], c[32], d[32];
    uint32_t total = 0;
    BUF     row = BUF_INIT;

    if (sc.height > TOP_LINES_MAX)
	sc.height = TOP_LINES_MAX;
    top_clock(s->now, now, sizeof(now));
    top_dur(s->now - s->started, a, sizeof(a));
    {
	char   *host = str_printable(s->host);

	if (s->offline)
	    top_linef(&sc, "relayq top - %s - %s - relayqd is not running: the queue read directly", host, now);
	else
	    top_linef(&sc, "relayq top - %s - %s - up %s", host, now, a);
	free(host);
    }
    top_linef(&sc, "%s", "");
    if (s->offline)
	top_linef(&sc, "per second: unknown (relayqd is not running)");
    else
	top_linef(&sc, "%-16s %9s %9s %9s %12s", "per second", "1s", "10s", "60s", "total");
    for (int k = 0; k < TOP_COUNTERS && !s->offline; k++) {
	top_rate_str(s->rate[k][0], a, sizeof(a));
	top_rate_str(s->rate[k][1], b, sizeof(b));
	top_rate_str(s->rate[k][2], c, sizeof(c));
	top_linef(&sc, "%-16s %9s %9s %9s %12llu  %s", top_counter_names[k], a, b, c,
		  (unsigned long long) s->total[k], k == 0 ? "messages" : "recipients");
    }
    top_linef(&sc, "%s", "");
    for (int st = 0; st < TOP_STATES; st++)
	total += s->state[st];
    top_linef(&sc, "queue: %u message%s: %u incoming, %u active, %u deferred, %u hold", total,
	      total == 1 ? "" : "s", s->state[0], s->state[1], s->state[2], s->state[3]);

    /* The age table, qshape's columns: T (all), then the buckets; widths from the numbers. */
    {
	int     w[QMGR_AGE_BUCKETS + 1];
	uint32_t rowt[TOP_STATES];
	char    num[16];

	for (int st = 0; st < TOP_STATES; st++) {
	    rowt[st] = 0;
	    for (int k = 0; k < QMGR_AGE_BUCKETS; k++)
		rowt[st] += s->age[st][k];
	}
	w[0] = 2;
	for (int st = 0; st < TOP_STATES; st++) {
	    int     l = snprintf(num, sizeof(num), "%u", rowt[st]);

	    if (l + 1 > w[0])
		w[0] = l + 1;
	}
	for (int k = 0; k < QMGR_AGE_BUCKETS; k++) {
	    w[k + 1] = (int) strlen(top_age_heads[k]) + 1;
	    for (int st = 0; st < TOP_STATES; st++) {
		int     l = snprintf(num, sizeof(num), "%u", s->age[st][k]);

		if (l + 1 > w[k + 1])
		    w[k + 1] = l + 1;
	    }
	}
	buf_reset(&row);
	buf_printf(&row, "%-10s%*s", "age (min)", w[0], "T");
	for (int k = 0; k < QMGR_AGE_BUCKETS; k++)
	    buf_printf(&row, "%*s", w[k + 1], top_age_heads[k]);
	top_linef(&sc, "%s", row.data);
	for (int st = 0; st < TOP_STATES; st++) {
	    buf_reset(&row);
	    buf_printf(&row, "%-10s%*u", top_state_names[st], w[0], rowt[st]);
	    for (int k = 0; k < QMGR_AGE_BUCKETS; k++)
		buf_printf(&row, "%*u", w[k + 1], s->age[st][k]);
	    top_linef(&sc, "%s", row.data);
	}
    }
    top_linef(&sc, "%s", "");

    if (s->offline) {
	top_linef(&sc, "queue runs, dead destinations, deferred mail by destination: unknown"
		  " (relayqd is not running)");
	goto status;
    }
    /* Queue runs. */
    top_clock(s->next_run, a, sizeof(a));
    top_dur(s->next_run - s->now, b, sizeof(b));
    if (s->next_due > 0) {
	top_clock(s->next_due, c, sizeof(c));
	top_dur(s->next_due - s->now, d, sizeof(d));
	top_linef(&sc, "next queue run %s (in %s); first deferred mail due at the run of %s (in %s)",
		  a, b, c, d);
    } else {
	top_linef(&sc, "next queue run %s (in %s); no deferred mail waiting", a, b);
    }

    /* Destinations. */
    top_linef(&sc, "dead destinations: %d; deferred mail by destination (%u destination%s known):",
	      s->ndead, s->ndests, s->ndests == 1 ? "" : "s");
    if (s->ndest == 0)
	top_linef(&sc, "  (none)");
    else
	top_linef(&sc, "%10s  %s", "deferred", "destination");
    for (int i = 0; i < s->ndest && top_room(&sc); i++) {
	const TOP_DEST *e = &s->dests[i];
	char   *name = str_printable(e->dest);

	if (e->dead) {
	    top_clock(e->dead_until, a, sizeof(a));
	    top_dur(e->dead_until - s->now, b, sizeof(b));
	    top_linef(&sc, "%10u  %s  DEAD until %s (%s)", e->deferred, name, a, b);
	    if (top_room(&sc)) {
		char   *dsn = str_printable(e->dsn), *why = str_printable(e->reason);

		top_linef(&sc, "%12s%s %s", "", dsn, why);
		free(dsn);
		free(why);
	    }
	} else {
	    top_linef(&sc, "%10u  %s", e->deferred, name);
	}
	free(name);
    }
    if (s->state[2] > s->deferred_known)
	top_linef(&sc, "%10u  (not tried since relayqd started: destination not known yet)",
		  s->state[2] - s->deferred_known);
status:
    if (status) {
	/* Last, below whatever fitted. */
	sc.reserve = 0;
	top_linef(&sc, "%s", status);
    }
    buf_free(&row);
}

void    top_json(const TOP_SNAP *s, BUF *out)
{
    buf_printf(out, "{\"version\": %d, \"daemon_running\": %s, \"host\": ", TOP_VERSION,
	       s->offline ? "false" : "true");
    showq_json_string(out, s->host ? s->host : "");
    buf_printf(out, ", \"time\": %lld, \"started\": ", (long long) s->now);
    if (s->offline) {
	buf_puts(out, "null, \"counters\": null");
    } else {
	buf_printf(out, "%lld, \"counters\": {", (long long) s->started);
	for (int k = 0; k < TOP_COUNTERS; k++)
	    buf_printf(out, "%s\"%s\": {\"total\": %llu, \"rate_1s\": %.3f, \"rate_10s\": %.3f, \"rate_60s\": %.3f}",
		       k ? ", " : "", top_counter_names[k], (unsigned long long) s->total[k],
		       s->rate[k][0], s->rate[k][1], s->rate[k][2]);
	buf_putc(out, '}');
    }
    buf_puts(out, ", \"queue\": {");
    for (int st = 0; st < TOP_STATES; st++)
	buf_printf(out, "%s\"%s\": %u", st ? ", " : "", top_state_names[st], s->state[st]);
    buf_puts(out, "}, \"age_buckets\": [");
    for (int k = 0; k < QMGR_AGE_BUCKETS; k++)
	buf_printf(out, "%s\"%s\"", k ? ", " : "", top_age_heads[k]);
    buf_puts(out, "], \"age\": {");
    for (int st = 0; st < TOP_STATES; st++) {
	buf_printf(out, "%s\"%s\": [", st ? ", " : "", top_state_names[st]);
	for (int k = 0; k < QMGR_AGE_BUCKETS; k++)
	    buf_printf(out, "%s%u", k ? ", " : "", s->age[st][k]);
	buf_putc(out, ']');
    }
    buf_putc(out, '}');
    if (s->offline) {
	/* Only the running daemon knows these. */
	buf_puts(out, ", \"next_queue_run\": null, \"next_deferred_run\": null, \"queue_run_delay\": null,"
		 " \"dead_destinations\": null, \"destinations_known\": null,"
		 " \"deferred_destination_unknown\": null, \"destinations\": null}\n");
	return;
    }
    buf_printf(out, ", \"next_queue_run\": %lld, \"next_deferred_run\": ", (long long) s->next_run);
    if (s->next_due > 0)
	buf_printf(out, "%lld", (long long) s->next_due);
    else
	buf_puts(out, "null");
    buf_printf(out, ", \"queue_run_delay\": %lld, \"dead_destinations\": %d, \"destinations_known\": %u,"
	       " \"deferred_destination_unknown\": %u, \"destinations\": [",
	       (long long) s->queue_run_delay, s->ndead, s->ndests,
	       s->state[2] > s->deferred_known ? s->state[2] - s->deferred_known : 0);
    for (int i = 0; i < s->ndest; i++) {
	const TOP_DEST *e = &s->dests[i];

	buf_puts(out, i ? ", {\"destination\": " : "{\"destination\": ");
	showq_json_string(out, e->dest);
	buf_printf(out, ", \"deferred\": %u, \"dead\": %s", e->deferred, e->dead ? "true" : "false");
	if (e->dead) {
	    buf_printf(out, ", \"dead_until\": %lld, \"dsn\": ", (long long) e->dead_until);
	    showq_json_string(out, e->dsn);
	    buf_puts(out, ", \"reason\": ");
	    showq_json_string(out, e->reason);
	}
	buf_putc(out, '}');
    }
    buf_puts(out, "]}\n");
}
