/*
 * explain_whatif - `relayq explain --what-if` and `--compare`: the queue's
 * (or a configuration's) schedule today and under changed parameters.
 *
 * Everything is computed by qmgr_simulate(), the scheduler's own code on a
 * simulated clock.  A change takes effect as `relayq reload` (SIGHUP) would
 * apply it: at `at` the queue-run grid is re-anchored and dead destinations
 * are forgotten; backoffs already set stay (they are stored with each
 * message); lifetimes, warnings and every later backoff follow the new
 * values.  Before `at` a message follows today's schedule.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "explain/explain.h"
#include "log/log.h"

static void fmt_time(int64_t t, char *buf, size_t len)
{
    time_t  tt = (time_t) t;
    struct tm tm;

    if (t <= 0) {
	snprintf(buf, len, "-");
	return;
    }
    localtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

static int null_sender(const QMSG *m)
{
    return (m->sender == NULL || m->sender[0] == 0);
}

typedef EXPLAIN_GROUPS GROUPS;
#define MAX_GROUPS EXPLAIN_MAX_GROUPS
#define groups_make explain_groups_make
#define groups_free explain_groups_free

void    explain_groups_make(const QMGR_PARAMS *p, const QMSG *m, const char *const *rp, GROUPS *g)
{
    memset(g, 0, sizeof(*g));
    if (rp == NULL)
	return;
    g->of = xcalloc((size_t) (m->nrcpt > 0 ? m->nrcpt : 1), sizeof(int));
    for (int i = 0; i < m->nrcpt; i++) {
	QMGR_POLICY pol;
	char    err[256];
	int     k;

	g->of[i] = -1;
	if (m->rcpts[i].state != QRCPT_PENDING)
	    continue;
	if (rp[i] == NULL || qmgr_policy_parse(rp[i], p, &pol, err, sizeof(err)) < 0)
	    qmgr_policy_default(p, &pol);
	for (k = 0; k < g->n; k++)
	    if (memcmp(&g->pol[k], &pol, sizeof(pol)) == 0)
		break;
	if (k == g->n) {
	    if (g->n == MAX_GROUPS)
		k = 0;				/* more policies than that in one message: the first */
	    else
		g->pol[g->n++] = pol;
	}
	g->of[i] = k;
    }
}

void    explain_groups_free(GROUPS *g)
{
    free(g->of);
}

void    explain_prediction_free(EXPLAIN_PREDICTION *p)
{
    free(p->rcpt_expire);
    p->rcpt_expire = NULL;
}

/* Per recipient, from the groups' expiry times. */
static void rcpt_expiry(const GROUPS *g, const QMGR_TIMELINE *tl, const QMSG *m, EXPLAIN_PREDICTION *out)
{
    if (g->n == 0 || tl->group_expiry == NULL)
	return;
    free(out->rcpt_expire);
    out->rcpt_expire = xcalloc((size_t) (m->nrcpt > 0 ? m->nrcpt : 1), sizeof(int64_t));
    out->nrcpt = m->nrcpt;
    for (int i = 0; i < m->nrcpt; i++)
	if (g->of[i] >= 0)
	    out->rcpt_expire[i] = tl->group_expiry[g->of[i]];
}

/* The simulation of m from `now` under p, grid anchored at `anchor`. */
static int simulate_from(const QMGR_PARAMS *p, const QMSG *m, const GROUPS *g, int64_t anchor,
			         int64_t now, int attempts_done, int64_t next_eligible, int warned,
			         int64_t attempt_duration, QMGR_TIMELINE *tl)
{
    QMGR_SIM_INPUT in;

    memset(&in, 0, sizeof(in));
    if (g && g->n > 0) {
	in.policies = g->pol;
	in.npolicies = g->n;
    }
    in.anchor = anchor;
    in.arrival = m->create_time;
    in.attempt_duration = attempt_duration;
    in.null_sender = null_sender(m);
    in.attempts_done = attempts_done;
    in.now = now;
    in.next_eligible = next_eligible;
    in.warned = warned;
    return (qmgr_simulate(p, &in, tl));
}

static void fill(const QMGR_TIMELINE *tl, int64_t now, EXPLAIN_PREDICTION *out)
{
    out->known = 1;
    out->next_attempt = tl->nattempts > 0 ? tl->attempts[0].start : 0;
    out->expire_time = tl->expiry_at;
    out->warn_time = tl->warning_at;
    out->attempts = tl->nattempts;
    for (int i = 0; i < tl->nattempts; i++)
	if (tl->attempts[i].start >= now && tl->attempts[i].start < now + 3600)
	    out->attempts_hour++;
}

static int64_t eligible_of(const QMSG *m, int64_t now)
{
    return (m->state == QSTATE_INCOMING || m->next_eligible == 0 ? now : m->next_eligible);
}

void    explain_predict(const QMGR_PARAMS *p, const QMSG *m, const char *const *rcpt_policy,
			        int64_t anchor, int64_t now, int64_t attempt_duration,
			        EXPLAIN_PREDICTION *out)
{
    QMGR_TIMELINE tl;
    GROUPS  g;

    memset(out, 0, sizeof(*out));
    if (m->state == QSTATE_HOLD)
	return;
    groups_make(p, m, rcpt_policy, &g);
    if (simulate_from(p, m, &g, anchor, now, m->attempts, eligible_of(m, now),
		      (m->flags & QFLAG_WARNED) != 0, attempt_duration, &tl) == 0) {
	fill(&tl, now, out);
	rcpt_expiry(&g, &tl, m, out);
    }
    qmgr_timeline_free(&tl);
    groups_free(&g);
}

void    explain_predict_change(const QMGR_PARAMS *p_now, const QMGR_PARAMS *p_new, const QMSG *m,
				       const char *const *rcpt_policy, int64_t anchor, int64_t now,
				       int64_t at, int64_t attempt_duration, EXPLAIN_PREDICTION *out)
{
    QMGR_TIMELINE before, after;
    GROUPS  g_now, g_new;
    int64_t *gone = NULL;		/* per recipient: expired before `at` (with policies) */
    int     done = m->attempts, warned = (m->flags & QFLAG_WARNED) != 0;
    int64_t eligible = eligible_of(m, now);
    int     i, n = 0;

    memset(out, 0, sizeof(*out));
    if (m->state == QSTATE_HOLD)
	return;
    if (at < now)
	at = now;
    groups_make(p_now, m, rcpt_policy, &g_now);
    /* Up to the reload, today's schedule. */
    memset(&before, 0, sizeof(before));
    if (at > now && simulate_from(p_now, m, &g_now, anchor, now, done, eligible, warned,
				   attempt_duration, &before) == 0) {
	for (i = 0; i < before.nattempts && before.attempts[i].start < at; i++) {
	    const QMGR_SIM_ATTEMPT *a = &before.attempts[i];

	    if (a->expired) {
		/* Gone before the change: the same either way. */
		fill(&before, now, out);
		rcpt_expiry(&g_now, &before, m, out);
		qmgr_timeline_free(&before);
		groups_free(&g_now);
		return;
	    }
	    done++;
	    eligible = a->next_eligible;
	    warned |= a->warning;
	    n++;
	}
	/* Recipients whose own lifetime ended before the reload. */
	if (g_now.n > 0 && before.group_expiry) {
	    gone = xcalloc((size_t) (m->nrcpt > 0 ? m->nrcpt : 1), sizeof(int64_t));
	    for (int r = 0; r < m->nrcpt; r++)
		if (g_now.of[r] >= 0 && before.group_expiry[g_now.of[r]] > 0
		    && before.group_expiry[g_now.of[r]] < at)
		    gone[r] = before.group_expiry[g_now.of[r]];
	}
    }
    /* From the reload on: the new values, the grid anchored at `at`. */
    memset(&after, 0, sizeof(after));
    groups_make(p_new, m, rcpt_policy, &g_new);
    if (gone) {
	for (int r = 0; r < m->nrcpt; r++)
	    if (gone[r])
		g_new.of[r] = -1;
    }
    if (simulate_from(p_new, m, &g_new, at, at, done, eligible, warned, attempt_duration, &after) == 0) {
	fill(&after, now, out);
	rcpt_expiry(&g_new, &after, m, out);
	for (int r = 0; gone && out->rcpt_expire && r < m->nrcpt; r++)
	    if (gone[r])
		out->rcpt_expire[r] = gone[r];
	out->attempts += n;
	if (n > 0) {
	    /* The next attempt is still the first one under today's schedule. */
	    out->next_attempt = before.attempts[0].start;
	    for (i = 0; i < n; i++)
		if (before.attempts[i].start < now + 3600)
		    out->attempts_hour++;
	    if (before.warning_at && before.warning_at < at)
		out->warn_time = before.warning_at;
	}
    }
    qmgr_timeline_free(&before);
    qmgr_timeline_free(&after);
    groups_free(&g_now);
    groups_free(&g_new);
    free(gone);
}

/* ---- the queue ---- */

/* A page's daemon state, joined in on the loop (explain_whatif_join). */
typedef struct WHATIF_JOIN {
    int     active;
    char  **policy;			/* nrcpt values (NULL where none), or NULL */
    int     npolicy;
} WHATIF_JOIN;

struct EXPLAIN_WHATIF {
    QMGR_PARAMS p_now, p_new;		/* copies: a reload meanwhile changes nothing */
    int     json;
    int64_t attempt_duration, until;
    int64_t anchor, now, at;
    int     count;
    int     earlier, later, same, active, held;
    int     expire_now, expire_new;		/* before --until */
    long    hour_now, hour_new;
    WHATIF_JOIN *join;			/* the page joined, until explain_whatif_page() */
    int     njoin;
};

static void json_pair(FILE *fp, const char *name, int known_a, int64_t a, int known_b, int64_t b)
{
    fprintf(fp, ", \"%s\": {\"now\": ", name);
    if (known_a && a > 0)
	fprintf(fp, "%lld", (long long) a);
    else
	fputs("null", fp);
    fputs(", \"what_if\": ", fp);
    if (known_b && b > 0)
	fprintf(fp, "%lld", (long long) b);
    else
	fputs("null", fp);
    fputc('}', fp);
}

/* "+5m" / "-1h2m" / "same" */
static const char *change(int64_t a, int64_t b, char *buf, size_t len)
{
    char    d[32];

    if (a == b)
	return ("same");
    snprintf(buf, len, "%s%s", b < a ? "-" : "+", explain_duration(b < a ? a - b : b - a, d, sizeof(d)));
    return (buf);
}

void    explain_whatif_msg(EXPLAIN_WHATIF *w, const QMSG *m, int active,
			           const char *const *rcpt_policy, FILE *out)
{
    EXPLAIN_PREDICTION a, b;

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    if (!active) {
	explain_predict(&w->p_now, m, rcpt_policy, w->anchor, w->now, w->attempt_duration, &a);
	explain_predict_change(&w->p_now, &w->p_new, m, rcpt_policy, w->anchor, w->now, w->at,
			       w->attempt_duration, &b);
    }
    w->active += active;
    w->held += m->state == QSTATE_HOLD;
    if (a.known && b.known) {
	if (b.next_attempt < a.next_attempt)
	    w->earlier++;
	else if (b.next_attempt > a.next_attempt)
	    w->later++;
	else
	    w->same++;
	if (w->until) {
	    w->expire_now += a.expire_time > 0 && a.expire_time < w->until;
	    w->expire_new += b.expire_time > 0 && b.expire_time < w->until;
	}
	w->hour_now += a.attempts_hour;
	w->hour_new += b.attempts_hour;
    }
    if (w->json) {
	fprintf(out, "%s{\"queue_id\": ", w->count ? ",\n " : "");
	explain_json_string(out, m->qid);
	fprintf(out, ", \"state\": \"%s\"", active ? "active" : queue_state_name(m->state));
	json_pair(out, "next_attempt_time", a.known, a.next_attempt, b.known, b.next_attempt);
	json_pair(out, "expire_time", a.known, a.expire_time, b.known, b.expire_time);
	json_pair(out, "warn_time", a.known, a.warn_time, b.known, b.warn_time);
	if (a.rcpt_expire || b.rcpt_expire) {
	    /* Recipients under their own retry policies: each one's expiry. */
	    int     first = 1;

	    fputs(", \"recipients\": [", out);
	    for (int i = 0; i < m->nrcpt; i++) {
		int64_t ea = a.rcpt_expire && i < a.nrcpt ? a.rcpt_expire[i] : 0;
		int64_t eb = b.rcpt_expire && i < b.nrcpt ? b.rcpt_expire[i] : 0;

		if (m->rcpts[i].state != QRCPT_PENDING)
		    continue;
		fputs(first ? "{\"address\": " : ", {\"address\": ", out);
		first = 0;
		explain_json_string(out, m->rcpts[i].addr);
		json_pair(out, "expire_time", ea > 0, ea, eb > 0, eb);
		fputc('}', out);
	    }
	    fputc(']', out);
	}
	fputc('}', out);
    } else {
	char    t1[32], t2[32], t3[32], t4[32], c1[40], c2[40];

	if (w->count == 0)
	    fprintf(out, "%-12s %-19s    %-19s %-8s  %-19s    %-19s %s\n", "QUEUE ID",
		    "NEXT ATTEMPT NOW", "WHAT-IF", "", "EXPIRES NOW", "WHAT-IF", "");
	if (!a.known) {
	    fprintf(out, "%-12s %s\n", m->qid, active ? "being delivered right now" :
		    m->state == QSTATE_HOLD ? "on hold: not tried until released" :
		    "no prediction");
	} else {
	    fmt_time(a.next_attempt, t1, sizeof(t1));
	    fmt_time(b.next_attempt, t2, sizeof(t2));
	    fmt_time(a.expire_time, t3, sizeof(t3));
	    fmt_time(b.expire_time, t4, sizeof(t4));
	    fprintf(out, "%-12s %-19s -> %-19s %-8s  %-19s -> %-19s %s\n", m->qid, t1, t2,
		    change(a.next_attempt, b.next_attempt, c1, sizeof(c1)), t3, t4,
		    change(a.expire_time, b.expire_time, c2, sizeof(c2)));
	}
    }
    w->count++;
    explain_prediction_free(&a);
    explain_prediction_free(&b);
}

static void print_params(FILE *fp, const QMGR_PARAMS *a, const QMGR_PARAMS *b)
{
#define SHOW(f) if (a->f != b->f) fprintf(fp, "  %s = %llds (now %llds)\n", #f, \
		(long long) b->f, (long long) a->f)
    SHOW(queue_run_delay);
    SHOW(minimal_backoff_time);
    SHOW(maximal_backoff_time);
    SHOW(maximal_queue_lifetime);
    SHOW(bounce_queue_lifetime);
    SHOW(delay_warning_time);
#undef SHOW
}

EXPLAIN_WHATIF *explain_whatif_begin(const QMGR_PARAMS *p_now, const QMGR_PARAMS *p_new,
				             const EXPLAIN_OPTS *o, int64_t anchor, int64_t now, FILE *out)
{
    EXPLAIN_WHATIF *w = xcalloc(1, sizeof(*w));
    char    t1[32];

    w->p_now = *p_now;
    w->p_new = *p_new;
    w->json = o->json;
    w->attempt_duration = o->attempt_duration;
    w->until = o->until;
    w->anchor = anchor;
    w->now = now;
    w->at = o->at > now ? o->at : now;
    if (!w->json) {
	fmt_time(w->at, t1, sizeof(t1));
	fprintf(out, "What if at %s (a reload: queue runs re-anchored, dead destinations forgotten):\n", t1);
	print_params(out, p_now, p_new);
	if (memcmp(p_now, p_new, sizeof(*p_now)) == 0)
	    fprintf(out, "  (no parameter changes: the effect of a reload alone)\n");
	fputc('\n', out);
    } else {
	fputc('[', out);
    }
    return (w);
}

static void whatif_join_free(EXPLAIN_WHATIF *w)
{
    for (int i = 0; i < w->njoin; i++) {
	for (int k = 0; k < w->join[i].npolicy; k++)
	    free(w->join[i].policy[k]);
	free(w->join[i].policy);
    }
    free(w->join);
    w->join = NULL;
    w->njoin = 0;
}

void    explain_whatif_join(EXPLAIN_WHATIF *w, QMSG *const *msgs, int n,
			            SHOWQ_SCHED_FN sched, void *ctx)
{
    whatif_join_free(w);
    w->join = xcalloc((size_t) (n > 0 ? n : 1), sizeof(*w->join));
    w->njoin = n;
    for (int i = 0; i < n && sched; i++) {
	SHOWQ_SCHED sc;

	memset(&sc, 0, sizeof(sc));
	sched(ctx, msgs[i], &sc);
	w->join[i].active = sc.active;
	if (sc.rcpt_policy && msgs[i]->nrcpt > 0) {
	    w->join[i].npolicy = msgs[i]->nrcpt;
	    w->join[i].policy = xcalloc((size_t) msgs[i]->nrcpt, sizeof(char *));
	    for (int k = 0; k < msgs[i]->nrcpt; k++)
		if (sc.rcpt_policy[k])
		    w->join[i].policy[k] = xstrdup(sc.rcpt_policy[k]);
	}
    }
}

void    explain_whatif_page(EXPLAIN_WHATIF *w, QMSG *const *msgs, int n, BUF *out)
{
    char   *data = NULL;
    size_t  len = 0;
    FILE   *fp = open_memstream(&data, &len);

    if (fp == NULL)
	msg_fatal("open_memstream: out of memory");
    for (int i = 0; i < n; i++) {
	const WHATIF_JOIN *j = i < w->njoin ? &w->join[i] : NULL;

	explain_whatif_msg(w, msgs[i], j ? j->active : 0,
			   j ? (const char *const *) j->policy : NULL, fp);
    }
    if (fclose(fp) != 0)
	msg_fatal("open_memstream: out of memory");
    buf_append(out, data, len);
    free(data);
    whatif_join_free(w);
}

void    explain_whatif_end(EXPLAIN_WHATIF *w, FILE *out)
{
    char    t1[32];

    if (w->json) {
	fputs("]\n", out);
	return;
    }
    if (w->count == 0)
	fprintf(out, "Mail queue is empty\n");
    fprintf(out, "\n%d message(s): %d tried earlier, %d later, %d at the same time",
	    w->count, w->earlier, w->later, w->same);
    if (w->active)
	fprintf(out, ", %d being delivered", w->active);
    if (w->held)
	fprintf(out, ", %d on hold", w->held);
    fprintf(out, ".\n");
    if (w->until) {
	fmt_time(w->until, t1, sizeof(t1));
	fprintf(out, "Expire before %s: %d now, %d with the change.\n", t1, w->expire_now, w->expire_new);
    }
    fprintf(out, "Attempts in the next hour (if every attempt fails): %ld now, %ld with the change.\n",
	    w->hour_now, w->hour_new);
}

void    explain_whatif_free(EXPLAIN_WHATIF *w)
{
    if (w == NULL)
	return;
    whatif_join_free(w);
    free(w);
}

int     explain_whatif(QUEUE *q, const QMGR_PARAMS *p_now, const QMGR_PARAMS *p_new,
		               const EXPLAIN_OPTS *o, SHOWQ_SCHED_FN sched, void *ctx,
		               int64_t anchor, int64_t now, FILE *out, char *err, size_t errlen)
{
    EXPLAIN_WHATIF *w = explain_whatif_begin(p_now, p_new, o, anchor, now, out);
    QCURSOR c;
    QMSG   *page[256];
    QMSG   *one[1];
    char    why[256];
    int     n;
    BUF     lines = BUF_INIT;

    if (o->all) {
	/* The same pages, order and join as the daemon's walk (admin.c), on this thread. */
	queue_cursor_init(&c);
	while ((n = queue_page(q, &c, 1, page, 256, why, sizeof(why))) > 0) {
	    explain_whatif_join(w, page, n, sched, ctx);
	    explain_whatif_page(w, page, n, &lines);
	    fwrite(lines.data, 1, lines.len, out);
	    buf_reset(&lines);
	    for (int i = 0; i < n; i++)
		qmsg_free(page[i]);
	}
	buf_free(&lines);
	if (n < 0) {
	    explain_whatif_free(w);
	    snprintf(err, errlen, "cannot read the queue: %s", why);
	    return (-1);
	}
    } else {
	for (int i = 0; i < o->nids; i++) {
	    int     status = queue_load_qid(q, o->ids[i], 0, &one[0], why, sizeof(why));

	    if (status != QUEUE_OK) {
		if (o->json)
		    fputs("]\n", out);
		if (status == QUEUE_GONE)
		    snprintf(err, errlen, "%s: no such message in the queue", o->ids[i]);
		else
		    snprintf(err, errlen, "%s: cannot read the queue: %s", o->ids[i], why);
		explain_whatif_free(w);
		buf_free(&lines);
		return (-1);
	    }
	    explain_whatif_join(w, one, 1, sched, ctx);
	    explain_whatif_page(w, one, 1, &lines);
	    fwrite(lines.data, 1, lines.len, out);
	    buf_reset(&lines);
	    qmsg_free(one[0]);
	}
	buf_free(&lines);
    }
    explain_whatif_end(w, out);
    explain_whatif_free(w);
    return (0);
}

/* ---- two configurations ---- */

int     explain_compare(const QMGR_PARAMS *now, const QMGR_PARAMS *changed, const EXPLAIN_OPTS *o,
			        FILE *out, char *err, size_t errlen)
{
    QMGR_SIM_INPUT in;
    QMGR_TIMELINE a, b;
    int     i, n, ret = 0;
    char    d1[32], d2[32], d3[32], d4[32];

    memset(&in, 0, sizeof(in));
    in.anchor = 0;
    in.arrival = o->arrival_offset;
    in.attempt_duration = o->attempt_duration;
    in.null_sender = o->null_sender;
    in.max_attempts = o->max_attempts;
    if (qmgr_simulate(now, &in, &a) != 0) {
	snprintf(err, errlen, "these parameters cannot be simulated");
	return (-1);
    }
    if (qmgr_simulate(changed, &in, &b) != 0) {
	qmgr_timeline_free(&a);
	snprintf(err, errlen, "the changed parameters cannot be simulated");
	return (-1);
    }
    if (o->json) {
	fputs("{\"now\": ", out);
	explain_print_json(out, now, &in, &a);
	fputs(", \"what_if\": ", out);
	explain_print_json(out, changed, &in, &b);
	fputs("}\n", out);
    } else if (o->svg == NULL || strcmp(o->svg, "-") != 0) {
	fprintf(out, "Changed:\n");
	print_params(out, now, changed);
	fprintf(out, "\n%-4s  %-12s %-12s   %-12s %-12s\n", "#", "NOW starts", "backoff",
		"WHAT-IF starts", "backoff");
	n = a.nattempts > b.nattempts ? a.nattempts : b.nattempts;
	for (i = 0; i < n; i++) {
	    const QMGR_SIM_ATTEMPT *x = i < a.nattempts ? &a.attempts[i] : NULL;
	    const QMGR_SIM_ATTEMPT *y = i < b.nattempts ? &b.attempts[i] : NULL;

	    fprintf(out, "%-4d  %-12s %-12s   %-12s %-12s\n", i + 1,
		    x ? explain_duration(x->start - in.arrival, d1, sizeof(d1)) : "",
		    x ? (x->expired ? "expired" : explain_duration(x->backoff, d2, sizeof(d2))) : "",
		    y ? explain_duration(y->start - in.arrival, d3, sizeof(d3)) : "",
		    y ? (y->expired ? "expired" : explain_duration(y->backoff, d4, sizeof(d4))) : "");
	}
	fprintf(out, "\nattempts: %d now, %d with the change; expiry after %s now, %s with the change\n",
		a.nattempts, b.nattempts,
		explain_duration(a.expiry_at - in.arrival, d1, sizeof(d1)),
		explain_duration(b.expiry_at - in.arrival, d2, sizeof(d2)));
	if (a.warning_at || b.warning_at)
	    fprintf(out, "delay warning after %s now, %s with the change\n",
		    a.warning_at ? explain_duration(a.warning_at - in.arrival, d1, sizeof(d1)) : "never",
		    b.warning_at ? explain_duration(b.warning_at - in.arrival, d2, sizeof(d2)) : "never");
    }
    if (o->svg) {
	FILE   *fp = strcmp(o->svg, "-") == 0 ? out : fopen(o->svg, "w");

	if (fp == NULL) {
	    snprintf(err, errlen, "cannot write %s", o->svg);
	    ret = 1;
	} else {
	    explain_write_svg_pair(fp, now, changed, &in, &a, &b);
	    if (fp != out && fclose(fp) != 0) {
		snprintf(err, errlen, "cannot write %s", o->svg);
		ret = 1;
	    }
	}
    }
    qmgr_timeline_free(&a);
    qmgr_timeline_free(&b);
    return (ret);
}
