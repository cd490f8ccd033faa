/*
 * showq - the queue views: Postfix's mailq text, postqueue -j JSON lines
 * with relayq's scheduling fields, and qshape's age table.
 *
 * Each view walks the queue once (queue_walk) and formats message by
 * message, so a large queue costs one message of memory, not all of them.
 * The per-message formatters are also reachable on plain QMSG arrays
 * (showq_text_msgs() etc.), which is what the unit tests and a daemon with
 * its own snapshot use.
 *
 * Layout facts (spec/postfix-queue-semantics.md section 10): the ID column
 * is %-11s with the status flag appended (so a flagged 11-character ID
 * pushes the row right, as Postfix does); reasons end in column 78; the
 * recipient starts in column 42; a blank line between messages only.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "control/control.h"

/* ---- shared helpers ---- */

/* Queue name as the user sees it: the daemon knows better what is active. */
static const char *showq_queue_name(const QMSG *msg, const SHOWQ_SCHED *sc)
{
    if (sc && sc->active)
	return "active";
    return queue_state_name(msg->state);
}

static int showq_visible(const QMSG *msg)
{
    return msg->state != QSTATE_CORRUPT;
}

static void showq_get_sched(SHOWQ_SCHED_FN fn, void *ctx, const QMSG *msg, SHOWQ_SCHED *sc)
{
    sc->active = (msg->state == QSTATE_ACTIVE);
    sc->next_attempt = 0;
    sc->destination_dead = -1;
    sc->dead_until = 0;
    sc->rcpt_policy = NULL;
    if (fn)
	fn(ctx, msg, sc);
}

/* ---- mailq text ---- */

typedef struct SHOWQ_TEXT {
    BUF    *out;
    SHOWQ_SCHED_FN sched;
    void   *ctx;
    unsigned long count;
    unsigned long long bytes;
} SHOWQ_TEXT;

/* Addresses and reasons are chosen by clients and remote servers: str_printable() each. */
static void showq_text_reason(BUF *out, const char *raw)
{
    char   *reason = str_printable(raw);
    int     pad = 76 - (int) strlen(reason);

    if (pad < 0)
	pad = 0;
    buf_printf(out, "%*s(%s)\n", pad, "", reason);
    free(reason);
}

static void showq_text_one(SHOWQ_TEXT *st, const QMSG *msg)
{
    SHOWQ_SCHED sc;
    char    idbuf[32];
    char    when[32];
    time_t  t = (time_t) (msg->arrival_us / 1000000);
    struct tm tm;
    const char *prev = "";
    int     pass, i;
    char    flag = 0;

    if (!showq_visible(msg))
	return;
    showq_get_sched(st->sched, st->ctx, msg, &sc);
    if (sc.active)
	flag = '*';
    else if (msg->state == QSTATE_HOLD)
	flag = '!';
    else if (msg->flags & QFLAG_FORCE_EXPIRE)
	flag = '#';
    if (flag)
	snprintf(idbuf, sizeof(idbuf), "%s%c", msg->qid, flag);
    else
	snprintf(idbuf, sizeof(idbuf), "%s", msg->qid);

    /* asctime() is "Fri Nov 27 21:12:07 2026\n"; Postfix keeps 20 chars. */
    if (localtime_r(&t, &tm) == 0 || strftime(when, sizeof(when), "%a %b %e %H:%M:%S %Y", &tm) == 0)
	snprintf(when, sizeof(when), "%s", "???");

    if (st->count > 0)
	buf_putc(st->out, '\n');
    char   *sender = str_printable(msg->sender && *msg->sender ? msg->sender : "MAILER-DAEMON");

    buf_printf(st->out, "%-11s %7ld %20.20s %s\n", idbuf, (long) msg->size, when, sender);
    free(sender);

    /*
     * Recipients with a reason first (Postfix lists those from the defer
     * log first), then the others; pending ones only.
     */
    for (pass = 0; pass < 2; pass++) {
	for (i = 0; i < msg->nrcpt; i++) {
	    const QRCPT *r = &msg->rcpts[i];
	    const char *reason = r->reason ? r->reason : "";

	    if (r->state != QRCPT_PENDING)
		continue;
	    if ((pass == 0) != (*reason != 0))
		continue;
	    if (strcmp(reason, prev) != 0) {
		showq_text_reason(st->out, *reason ? reason : "reason unavailable");
		prev = reason;
	    }
	    char   *addr = str_printable(r->addr);

	    buf_printf(st->out, "%-11s %7s %-20s %s\n", "", "", "", addr);
	    free(addr);
	}
    }
    st->count++;
    st->bytes += msg->size;
}

static void showq_text_end(SHOWQ_TEXT *st)
{
    if (st->count == 0) {
	buf_puts(st->out, "Mail queue is empty\n");
	return;
    }
    buf_printf(st->out, "\n-- %lu Kbytes in %lu Request%s.\n",
	       (unsigned long) (st->bytes / 1024), st->count, st->count == 1 ? "" : "s");
}

static void showq_text_begin(SHOWQ_TEXT *st, SHOWQ_SCHED_FN sched, void *ctx, BUF *out)
{
    memset(st, 0, sizeof(*st));
    st->out = out;
    st->sched = sched;
    st->ctx = ctx;
}

static int showq_text_walk(void *ctx, const QMSG *msg)
{
    SHOWQ_TEXT *st = ctx;

    /* The header goes out only once there is a message to show. */
    if (st->count == 0 && showq_visible(msg))
	buf_puts(st->out, "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
    showq_text_one(st, msg);
    return 0;
}

int     showq_text(QUEUE *q, SHOWQ_SCHED_FN sched, void *ctx, BUF *out)
{
    SHOWQ_TEXT st;

    showq_text_begin(&st, sched, ctx, out);
    if (queue_walk(q, 1, showq_text_walk, &st) < 0)
	return -1;
    showq_text_end(&st);
    return 0;
}

int     showq_text_msgs(const QMSG *const *msgs, int n, SHOWQ_SCHED_FN sched, void *ctx, BUF *out)
{
    SHOWQ_TEXT st;
    int     i;

    showq_text_begin(&st, sched, ctx, out);
    for (i = 0; i < n; i++)
	showq_text_walk(&st, msgs[i]);
    showq_text_end(&st);
    return 0;
}

/* ---- JSON ---- */

/* JSON string with quotes; UTF-8 passes through, controls as \uXXXX. */
void    showq_json_string(BUF *out, const char *s)
{
    const unsigned char *p, *run;

    buf_putc(out, '"');
    for (p = (const unsigned char *) s; *p; p++) {
	/* Most of a string needs no escape: copy it a run at a time. */
	for (run = p; *p >= 0x20 && *p != 0x7f && *p != '"' && *p != '\\'; p++)
	     /* void */ ;
	if (p > run)
	    buf_append(out, run, (size_t) (p - run));
	if (*p == 0)
	    break;
	switch (*p) {
	case '"':
	    buf_puts(out, "\\\"");
	    break;
	case '\\':
	    buf_puts(out, "\\\\");
	    break;
	case '\n':
	    buf_puts(out, "\\n");
	    break;
	case '\r':
	    buf_puts(out, "\\r");
	    break;
	case '\t':
	    buf_puts(out, "\\t");
	    break;
	case '\b':
	    buf_puts(out, "\\b");
	    break;
	case '\f':
	    buf_puts(out, "\\f");
	    break;
	default:
	    if (*p < 0x20 || *p == 0x7f)
		buf_printf(out, "\\u%04x", *p);
	    else
		buf_putc(out, *p);
	}
    }
    buf_putc(out, '"');
}

typedef struct SHOWQ_JSON {
    BUF    *out;
    SHOWQ_SCHED_FN sched;
    void   *ctx;
    const QMGR_PARAMS *params;
} SHOWQ_JSON;

/* ORCPT "rfc822;a@b" -> "a@b"; other address types are shown whole. */
static const char *showq_orcpt_addr(const char *orcpt)
{
    if (orcpt && str_ncasecmp(orcpt, "rfc822;", 7) == 0)
	return orcpt + 7;
    return orcpt;
}

/* A recipient's lifetime: its retry policy's, or the configuration's. */
static int64_t showq_rcpt_lifetime(const QMGR_PARAMS *p, const SHOWQ_SCHED *sc, const QMSG *msg, int i)
{
    int     null = !(msg->sender && *msg->sender);
    QMGR_POLICY pol;
    char    err[256];

    if (sc->rcpt_policy && sc->rcpt_policy[i]
	&& qmgr_policy_parse(sc->rcpt_policy[i], p, &pol, err, sizeof(err)) == 0)
	return (qmgr_policy_lifetime(&pol, null));
    return (qmgr_lifetime(p, null));
}

/* The message's: until its last pending recipient expires. */
static int64_t showq_msg_lifetime(const QMGR_PARAMS *p, const SHOWQ_SCHED *sc, const QMSG *msg)
{
    int64_t life = -1;

    if (sc->rcpt_policy == NULL)
	return (qmgr_lifetime(p, !(msg->sender && *msg->sender)));
    for (int i = 0; i < msg->nrcpt; i++) {
	int64_t l;

	if (msg->rcpts[i].state != QRCPT_PENDING)
	    continue;
	l = showq_rcpt_lifetime(p, sc, msg, i);
	if (l > life)
	    life = l;
    }
    return (life >= 0 ? life : qmgr_lifetime(p, !(msg->sender && *msg->sender)));
}

static int showq_json_walk(void *ctx, const QMSG *msg)
{
    SHOWQ_JSON *sj = ctx;
    BUF    *out = sj->out;
    SHOWQ_SCHED sc;
    int     i, first = 1;

    if (!showq_visible(msg))
	return 0;
    showq_get_sched(sj->sched, sj->ctx, msg, &sc);
    buf_puts(out, "{\"queue_name\": ");
    showq_json_string(out, showq_queue_name(msg, &sc));
    buf_puts(out, ", \"queue_id\": ");
    showq_json_string(out, msg->qid);
    buf_puts(out, ", \"arrival_time\": ");
    buf_put_int(out, (long long) (msg->arrival_us / 1000000));
    buf_puts(out, ", \"message_size\": ");
    buf_put_int(out, (long long) msg->size);
    buf_puts(out, (msg->flags & QFLAG_FORCE_EXPIRE) ? ", \"forced_expire\": true, \"sender\": "
	     : ", \"forced_expire\": false, \"sender\": ");
    showq_json_string(out, msg->sender && *msg->sender ? msg->sender : "MAILER-DAEMON");
    buf_puts(out, ", \"recipients\": [");
    for (i = 0; i < msg->nrcpt; i++) {
	const QRCPT *r = &msg->rcpts[i];
	const char *orig = showq_orcpt_addr(r->orcpt);

	if (r->state != QRCPT_PENDING)
	    continue;
	buf_puts(out, first ? "{\"address\": " : ", {\"address\": ");
	first = 0;
	showq_json_string(out, r->addr);
	if (orig && *orig && strcmp(orig, r->addr) != 0) {
	    buf_puts(out, ", \"orig_address\": ");
	    showq_json_string(out, orig);
	}
	if (r->reason && *r->reason) {
	    buf_puts(out, ", \"delay_reason\": ");
	    showq_json_string(out, r->reason);
	}
	if (sc.rcpt_policy && sc.rcpt_policy[i]) {
	    int64_t e = msg->create_time + showq_rcpt_lifetime(sj->params, &sc, msg, i);

	    buf_puts(out, ", \"expire_time\": ");
	    buf_put_int(out, (long long) e);
	}
	buf_putc(out, '}');
    }
    buf_puts(out, "], \"attempts\": ");
    buf_put_int(out, msg->attempts);
    buf_puts(out, ", \"next_eligible_time\": ");
    buf_put_int(out, (long long) msg->next_eligible);
    buf_puts(out, ", \"next_attempt_time\": ");
    if (sc.next_attempt > 0)
	buf_put_int(out, (long long) sc.next_attempt);
    else
	buf_puts(out, "null");
    buf_puts(out, ", \"expire_time\": ");
    buf_put_int(out, (long long) (msg->create_time + showq_msg_lifetime(sj->params, &sc, msg)));
    buf_puts(out, sc.destination_dead < 0 ? ", \"destination_dead\": null}\n"
	     : sc.destination_dead ? ", \"destination_dead\": true}\n" : ", \"destination_dead\": false}\n");
    return 0;
}

int     showq_json(QUEUE *q, SHOWQ_SCHED_FN sched, void *ctx, const QMGR_PARAMS *p, BUF *out)
{
    SHOWQ_JSON sj = {out, sched, ctx, p};

    return queue_walk(q, 1, showq_json_walk, &sj) < 0 ? -1 : 0;
}

int     showq_json_msgs(const QMSG *const *msgs, int n, SHOWQ_SCHED_FN sched, void *ctx,
			        const QMGR_PARAMS *p, BUF *out)
{
    SHOWQ_JSON sj = {out, sched, ctx, p};
    int     i;

    for (i = 0; i < n; i++)
	showq_json_walk(&sj, msgs[i]);
    return 0;
}

/* ---- qshape ---- */

#define QSHAPE_BUCKETS	10		/* age buckets after the total */
#define QSHAPE_TICK	5		/* minutes, first bucket */
#define QSHAPE_WIDTH	80		/* terminal width */
#define QSHAPE_DWIDTH	18		/* minimum domain column */

typedef struct QSHAPE_ROW {
    char   *domain;
    long    count[QSHAPE_BUCKETS + 1];	/* [0] total */
} QSHAPE_ROW;

typedef struct QSHAPE {
    const char *queue_name;
    int     by_sender;
    int64_t now;
    QSHAPE_ROW total;
    QSHAPE_ROW *rows;
    int     nrows, cap;
    int    *hash;				/* row index + 1 by domain, open addressing; 0 = empty */
    int     hcap;				/* a power of two, at least 2 x cap */
} QSHAPE;

static unsigned qshape_hash(const char *s)
{
    unsigned h = 2166136261u;

    for (; *s; s++)
	h = (h ^ (unsigned char) *s) * 16777619u;
    return h;
}

/* The slot of domain d: its row's, or the empty one where it goes. */
static int *qshape_slot(QSHAPE *qs, const char *d)
{
    unsigned mask = (unsigned) qs->hcap - 1, i = qshape_hash(d) & mask;

    while (qs->hash[i] && strcmp(qs->rows[qs->hash[i] - 1].domain, d) != 0)
	i = (i + 1) & mask;
    return &qs->hash[i];
}

static void qshape_rehash(QSHAPE *qs)
{
    qs->hcap = qs->hcap ? qs->hcap * 2 : 64;
    free(qs->hash);
    qs->hash = xcalloc((size_t) qs->hcap, sizeof(int));
    for (int i = 0; i < qs->nrows; i++)
	*qshape_slot(qs, qs->rows[i].domain) = i + 1;
}

/* qshape.pl: bucket 1 is [0, tick), then doubling; the last has no limit. */
static int qshape_bucket(int64_t age_s)
{
    double  m = (double) age_s / (60.0 * QSHAPE_TICK);
    int     b;

    if (m < 1)
	return 1;
    b = 2 + (int) floor(log(m) / log(2.0));
    return b < QSHAPE_BUCKETS ? b : QSHAPE_BUCKETS;
}

/* Lower-cased domain of an address, as qshape.pl trims it. */
static char *qshape_domain(const char *addr)
{
    const char *at;
    char   *d, *s, *w;
    size_t  len;

    if (addr == 0 || *addr == 0)
	return xstrdup("MAILER-DAEMON");
    at = strrchr(addr, '@');
    d = xstrdup(at ? at + 1 : addr);
    str_lower(d);
    /* collapse ".." and strip one leading and one trailing dot */
    for (s = w = d; *s; s++) {
	if (*s == '.' && s[1] == '.')
	    continue;
	*w++ = *s;
    }
    *w = 0;
    len = strlen(d);
    if (len > 1 && d[len - 1] == '.')
	d[--len] = 0;
    if (len > 1 && d[0] == '.')
	memmove(d, d + 1, len);
    return d;
}

static void qshape_count(QSHAPE *qs, const char *addr, int bucket)
{
    char   *d = qshape_domain(addr);
    int     i;

    int    *slot;

    qs->total.count[0]++;
    qs->total.count[bucket]++;
    if (2 * (qs->nrows + 1) > qs->hcap)
	qshape_rehash(qs);
    slot = qshape_slot(qs, d);
    if (*slot == 0) {
	i = qs->nrows;
	if (qs->nrows == qs->cap) {
	    qs->cap = qs->cap ? qs->cap * 2 : 16;
	    qs->rows = xrealloc(qs->rows, qs->cap * sizeof(*qs->rows));
	}
	memset(&qs->rows[i], 0, sizeof(qs->rows[i]));
	qs->rows[i].domain = d;
	qs->nrows++;
	*slot = i + 1;
    } else {
	i = *slot - 1;
	free(d);
    }
    qs->rows[i].count[0]++;
    qs->rows[i].count[bucket]++;
}

static int qshape_walk(void *ctx, const QMSG *msg)
{
    QSHAPE *qs = ctx;
    int     bucket, i;

    if (msg->state == QSTATE_CORRUPT)
	return 0;
    if (qs->queue_name && strcmp(qs->queue_name, queue_state_name(msg->state)) != 0)
	return 0;
    bucket = qshape_bucket(qs->now - msg->arrival_us / 1000000);
    if (qs->by_sender) {
	qshape_count(qs, msg->sender, bucket);
    } else {
	for (i = 0; i < msg->nrcpt; i++)
	    if (msg->rcpts[i].state == QRCPT_PENDING)
		qshape_count(qs, msg->rcpts[i].addr, bucket);
    }
    return 0;
}

static int qshape_cmp(const void *a, const void *b)
{
    const QSHAPE_ROW *x = a, *y = b;
    size_t  lx = strlen(x->domain), ly = strlen(y->domain);

    if (x->count[0] != y->count[0])
	return x->count[0] > y->count[0] ? -1 : 1;
    if (lx != ly)
	return lx < ly ? -1 : 1;
    return strcmp(x->domain, y->domain);
}

static void qshape_line(BUF *out, int dw, const int *widths, const char *raw, char cells[][24])
{
    char   *domain = str_printable(raw);
    size_t  len = strlen(domain);
    int     i;

    if ((int) len > dw) {
	/* too long: keep the tail, as qshape.pl */
	if (domain[0] == '.')
	    buf_printf(out, ".+%s", domain + len - (dw - 2));
	else
	    buf_printf(out, "+%s", domain + len - (dw - 1));
    } else {
	buf_printf(out, "%*s", dw, domain);
    }
    for (i = 0; i <= QSHAPE_BUCKETS; i++)
	buf_printf(out, "%*s", widths[i], cells[i]);
    buf_putc(out, '\n');
    free(domain);
}

static void qshape_row_cells(const QSHAPE_ROW *r, char cells[][24])
{
    int     i;

    for (i = 0; i <= QSHAPE_BUCKETS; i++)
	snprintf(cells[i], 24, "%ld", r->count[i]);
}

static void qshape_print(QSHAPE *qs, int top, BUF *out)
{
    char    heads[QSHAPE_BUCKETS + 1][24];
    char    cells[QSHAPE_BUCKETS + 1][24];
    int     widths[QSHAPE_BUCKETS + 1];
    int     dw = QSHAPE_WIDTH, i, t = 0;

    /* Column widths follow the TOTAL row and the headings. */
    for (i = 0; i <= QSHAPE_BUCKETS; i++) {
	int     l;

	if (i == 0)
	    snprintf(heads[i], 24, "T");
	else if (i < QSHAPE_BUCKETS)
	    snprintf(heads[i], 24, "%d", t);
	else
	    snprintf(heads[i], 24, "%d+", t);
	snprintf(cells[i], 24, "%ld", qs->total.count[i]);
	l = (int) strlen(cells[i]);
	if ((int) strlen(heads[i]) >= l)
	    l = (int) strlen(heads[i]);
	l = l > 2 ? l + 1 : 3;
	widths[i] = l;
	dw -= l;
	if (i + 1 < QSHAPE_BUCKETS)
	    t += t ? t : QSHAPE_TICK;
    }
    if (dw < QSHAPE_DWIDTH)
	dw = QSHAPE_DWIDTH;
    qshape_line(out, dw, widths, "", heads);
    qshape_row_cells(&qs->total, cells);
    qshape_line(out, dw, widths, "TOTAL", cells);
    qsort(qs->rows, qs->nrows, sizeof(*qs->rows), qshape_cmp);
    for (i = 0; i < qs->nrows && (top <= 0 || i < top); i++) {
	qshape_row_cells(&qs->rows[i], cells);
	qshape_line(out, dw, widths, qs->rows[i].domain, cells);
    }
}

static void qshape_free(QSHAPE *qs)
{
    int     i;

    for (i = 0; i < qs->nrows; i++)
	free(qs->rows[i].domain);
    free(qs->rows);
    free(qs->hash);
}

int     qshape_text(QUEUE *q, const char *queue_name, int by_sender, int64_t now, int top, BUF *out)
{
    QSHAPE  qs;
    int     ret = 0;

    memset(&qs, 0, sizeof(qs));
    qs.queue_name = queue_name;
    qs.by_sender = by_sender;
    qs.now = now;
    if (queue_walk(q, 1, qshape_walk, &qs) < 0)
	ret = -1;
    else
	qshape_print(&qs, top, out);
    qshape_free(&qs);
    return ret;
}

int     qshape_text_msgs(const QMSG *const *msgs, int n, const char *queue_name, int by_sender,
			         int64_t now, int top, BUF *out)
{
    QSHAPE  qs;
    int     i;

    memset(&qs, 0, sizeof(qs));
    qs.queue_name = queue_name;
    qs.by_sender = by_sender;
    qs.now = now;
    for (i = 0; i < n; i++)
	qshape_walk(&qs, msgs[i]);
    qshape_print(&qs, top, out);
    qshape_free(&qs);
    return 0;
}

/* ---- one message at a time (the daemon's pages) ---- */

struct SHOWQ_STREAM {
    int     kind;
    SHOWQ_TEXT text;
    SHOWQ_JSON json;
    QSHAPE  qshape;
    char   *queue_name;
    int     top;
};

SHOWQ_STREAM *showq_stream_text(SHOWQ_SCHED_FN sched, void *ctx)
{
    SHOWQ_STREAM *s = xcalloc(1, sizeof(*s));

    s->kind = SHOWQ_VIEW_TEXT;
    showq_text_begin(&s->text, sched, ctx, NULL);
    return s;
}

SHOWQ_STREAM *showq_stream_json(SHOWQ_SCHED_FN sched, void *ctx, const QMGR_PARAMS *p)
{
    SHOWQ_STREAM *s = xcalloc(1, sizeof(*s));

    s->kind = SHOWQ_VIEW_JSON;
    s->json.sched = sched;
    s->json.ctx = ctx;
    s->json.params = p;
    return s;
}

SHOWQ_STREAM *showq_stream_qshape(const char *queue_name, int by_sender, int64_t now, int top)
{
    SHOWQ_STREAM *s = xcalloc(1, sizeof(*s));

    s->kind = SHOWQ_VIEW_QSHAPE;
    s->queue_name = queue_name ? xstrdup(queue_name) : NULL;
    s->qshape.queue_name = s->queue_name;
    s->qshape.by_sender = by_sender;
    s->qshape.now = now;
    s->top = top;
    return s;
}

void    showq_stream_msg(SHOWQ_STREAM *s, const QMSG *msg, BUF *out)
{
    switch (s->kind) {
    case SHOWQ_VIEW_TEXT:
	s->text.out = out;
	showq_text_walk(&s->text, msg);
	break;
    case SHOWQ_VIEW_JSON:
	s->json.out = out;
	showq_json_walk(&s->json, msg);
	break;
    default:
	qshape_walk(&s->qshape, msg);
	break;
    }
}

void    showq_stream_end(SHOWQ_STREAM *s, BUF *out)
{
    switch (s->kind) {
    case SHOWQ_VIEW_TEXT:
	s->text.out = out;
	showq_text_end(&s->text);
	break;
    case SHOWQ_VIEW_JSON:
	break;
    default:
	qshape_print(&s->qshape, s->top, out);
	break;
    }
}

void    showq_stream_free(SHOWQ_STREAM *s)
{
    if (s == NULL)
	return;
    if (s->kind == SHOWQ_VIEW_QSHAPE)
	qshape_free(&s->qshape);
    free(s->queue_name);
    free(s);
}
