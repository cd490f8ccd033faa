/*
 * explain_msg - `relayq explain QUEUEID`.  Answered by the daemon, which
 * alone knows the queue-run phase and which destinations are dead; when it
 * is not running, the CLI answers from the queue alone (anchor unknown).
 *
 * The past comes from the queue's attempt history; the future from
 * qmgr_simulate() started at the message's current state, i.e. from the
 * scheduler's own code, assuming every further attempt fails the same way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"
#include "explain/explain.h"

static void fmt_time(int64_t t, char *buf, size_t len)
{
    time_t  tt = (time_t) t;
    struct tm tm;

    localtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

static void sim_input(const QMGR_PARAMS *p, const EXPLAIN_MSG *em, QMGR_SIM_INPUT *in)
{
    const QMSG *m = em->msg;

    memset(in, 0, sizeof(*in));
    /* Daemon down: the phase is unknown; assume a run right when the backoff ends. */
    if (em->anchor) {
	in->anchor = em->anchor;
    } else {
	int64_t e = m->next_eligible ? m->next_eligible : em->now;
	int64_t r = p->queue_run_delay > 0 ? p->queue_run_delay : 1;

	/* a grid point at e, moved back whole periods to be in the past */
	in->anchor = e > em->now ? e - r * ((e - em->now + r - 1) / r) : e;
    }
    in->arrival = m->create_time;
    in->attempt_duration = em->attempt_duration;
    in->null_sender = m->sender == NULL || m->sender[0] == 0;
    in->attempts_done = m->attempts;
    in->now = em->now;
    in->next_eligible = m->state == QSTATE_INCOMING ? em->now : m->next_eligible;
    in->warned = (m->flags & QFLAG_WARNED) != 0;
    in->held = m->state == QSTATE_HOLD;
}

static void explain_text(FILE *fp, const QMGR_PARAMS *p, const EXPLAIN_MSG *em)
{
    const QMSG *m = em->msg;
    char    t1[64], t2[64], d1[32];
    int64_t lifetime = qmgr_lifetime(p, m->sender == NULL || m->sender[0] == 0);

    /* Addresses and reply texts were chosen by others: str_printable() each (no terminal escapes). */
    char   *sender = str_printable(m->sender);

    fmt_time(m->arrival_us / 1000000, t1, sizeof(t1));
    fprintf(fp, "Queue ID %s from <%s>, arrived %s, %d recipient(s), %zu bytes\n",
	    m->qid, sender, t1, m->nrcpt, m->size);
    free(sender);
    for (int i = 0; i < m->nrcpt; i++) {
	const QRCPT *r = &m->rcpts[i];
	char   *addr = str_printable(r->addr), *reason = str_printable(r->reason);

	fprintf(fp, "  <%s>: %s%s%s%s\n", addr,
		r->state == QRCPT_DONE ? "delivered" : r->state == QRCPT_BOUNCED ? "bounced" : "pending",
		r->reason ? " (" : "", reason, r->reason ? ")" : "");
	free(addr);
	free(reason);
    }
    fprintf(fp, "\nPast attempts (%d in all; the queue keeps the last %d):\n", m->attempts, QUEUE_HISTORY_MAX);
    if (em->nhistory == 0)
	fprintf(fp, "  none yet\n");
    for (int i = 0; i < em->nhistory; i++) {
	const QATTEMPT *a = &em->history[i];

	fmt_time(a->start_us / 1000000, t1, sizeof(t1));
	char    hop[512];

	if (a->host && a->addr)
	    snprintf(hop, sizeof(hop), "%s[%s]:%d", a->host, a->addr, a->port);
	else
	    snprintf(hop, sizeof(hop), "no connection");
	char   *phop = str_printable(hop), *text = str_printable(a->text);

	fprintf(fp, "  %s  +%-10s %s: %s (%s)\n", t1,
		explain_duration(a->start_us / 1000000 - m->create_time, d1, sizeof(d1)),
		phop, text, a->dsn);
	free(phop);
	free(text);
    }
    fprintf(fp, "\nNow (%s):\n", (fmt_time(em->now, t1, sizeof(t1)), t1));
    if (em->anchor == 0)
	fprintf(fp, "  the mail system is not running: the queue-run phase and dead destinations are unknown;\n"
		"  the timeline below assumes a queue run right when the backoff ends\n");
    if (em->active) {
	fprintf(fp, "  being delivered right now\n");
    } else if (m->state == QSTATE_HOLD) {
	fprintf(fp, "  on hold: it is not tried until released (relayq release %s)\n", m->qid);
    } else {
	fmt_time(m->next_eligible, t1, sizeof(t1));
	fmt_time(em->next_attempt, t2, sizeof(t2));
	if (m->state == QSTATE_DEFERRED && em->next_attempt > 0)
	    fprintf(fp, "  backoff ends %s; the queue run at %s takes it (runs every %llds)\n",
		    t1, t2, (long long) p->queue_run_delay);
	else if (m->state == QSTATE_DEFERRED)
	    fprintf(fp, "  backoff ends %s; the first queue run after that takes it\n", t1);
	else
	    fprintf(fp, "  waiting for its first attempt\n");
    }
    if (em->destination_dead) {
	fmt_time(em->dead_until, t1, sizeof(t1));
	fprintf(fp, "  its destination is dead until %s: recipients are deferred without a connection\n", t1);
    }
    if (m->flags & QFLAG_FORCE_EXPIRE)
	fprintf(fp, "  marked for expiry: it is returned to the sender at its next attempt\n");
    fmt_time(m->create_time + lifetime, t1, sizeof(t1));
    fprintf(fp, "  lifetime ends %s (%s after creation); it expires at the first failed attempt after that\n",
	    t1, explain_duration(lifetime, d1, sizeof(d1)));
    if (em->rcpt_policy) {
	for (int i = 0; i < m->nrcpt; i++) {
	    QMGR_POLICY pol;
	    char    err[256];
	    int64_t l;

	    if (m->rcpts[i].state != QRCPT_PENDING || em->rcpt_policy[i] == NULL
		|| qmgr_policy_parse(em->rcpt_policy[i], p, &pol, err, sizeof(err)) < 0)
		continue;
	    l = qmgr_policy_lifetime(&pol, m->sender == NULL || m->sender[0] == 0);
	    fmt_time(m->create_time + l, t1, sizeof(t1));
	    char    shown[256];
	    size_t  k = 0;

	    /* The value as one line (a table entry may span several). */
	    for (const char *cp = em->rcpt_policy[i]; *cp && k + 1 < sizeof(shown); cp++)
		if (!((*cp == ' ' || *cp == '\t') && k > 0 && shown[k - 1] == ' '))
		    shown[k++] = (*cp == '\t' || (unsigned char) *cp < 32) ? ' ' : *cp;
	    shown[k] = 0;
	    fprintf(fp, "  <%s>: retry policy \"%s\": backoff %llds..%llds, lifetime ends %s (%s)\n",
		    m->rcpts[i].addr, shown, (long long) pol.minimal_backoff_time,
		    (long long) pol.maximal_backoff_time, t1, explain_duration(l, d1, sizeof(d1)));
	}
    }
    fputc('\n', fp);
}

void    explain_message(FILE *fp, const QMGR_PARAMS *p, const EXPLAIN_MSG *em, int json)
{
    QMGR_SIM_INPUT in;
    QMGR_TIMELINE tl;
    const QMSG *m = em->msg;
    int     have_tl;
    EXPLAIN_GROUPS groups;

    sim_input(p, em, &in);
    explain_groups_make(p, m, em->rcpt_policy, &groups);
    if (groups.n > 0) {
	in.policies = groups.pol;
	in.npolicies = groups.n;
    }
    memset(&tl, 0, sizeof(tl));
    have_tl = !in.held && !em->active && qmgr_simulate(p, &in, &tl) == 0;

    if (!json) {
	explain_text(fp, p, em);
	if (have_tl) {
	    fprintf(fp, "If every further attempt fails:\n");
	    explain_print_text(fp, p, &in, &tl);
	    for (int i = 0; groups.n > 0 && tl.group_expiry && i < m->nrcpt; i++) {
		char    d2[32];

		if (groups.of[i] < 0 || tl.group_expiry[groups.of[i]] == 0)
		    continue;
		fprintf(fp, "  <%s> is returned at +%s (its own lifetime, or the message's)\n",
			m->rcpts[i].addr, explain_duration(tl.group_expiry[groups.of[i]] - m->create_time,
							   d2, sizeof(d2)));
	    }
	}
	qmgr_timeline_free(&tl);
	explain_groups_free(&groups);
	return;
    }
    fprintf(fp, "{\"queue_id\": ");
    explain_json_string(fp, m->qid);
    fprintf(fp, ", \"sender\": ");
    explain_json_string(fp, m->sender);
    fprintf(fp, ", \"arrival_time\": %lld, \"create_time\": %lld, \"attempts\": %d",
	    (long long) (m->arrival_us / 1000000), (long long) m->create_time, m->attempts);
    fprintf(fp, ", \"state\": \"%s\"", em->active ? "active" : queue_state_name(m->state));
    fprintf(fp, ", \"next_eligible_time\": %lld", (long long) m->next_eligible);
    if (em->next_attempt > 0 && !em->active)
	fprintf(fp, ", \"next_attempt_time\": %lld", (long long) em->next_attempt);
    else
	fprintf(fp, ", \"next_attempt_time\": null");
    fprintf(fp, ", \"destination_dead\": %s", em->destination_dead ? "true" : "false");
    fprintf(fp, ", \"history\": [");
    for (int i = 0; i < em->nhistory; i++) {
	const QATTEMPT *a = &em->history[i];

	fprintf(fp, "%s{\"start\": %.6f, \"end\": %.6f, \"host\": ", i ? ", " : "",
		(double) a->start_us / 1e6, (double) a->end_us / 1e6);
	if (a->host)
	    explain_json_string(fp, a->host);
	else
	    fputs("null", fp);
	fprintf(fp, ", \"addr\": ");
	if (a->addr)
	    explain_json_string(fp, a->addr);
	else
	    fputs("null", fp);
	fprintf(fp, ", \"port\": %d, \"dsn\": ", a->port);
	explain_json_string(fp, a->dsn);
	fprintf(fp, ", \"text\": ");
	explain_json_string(fp, a->text);
	fputc('}', fp);
    }
    fprintf(fp, "], \"timeline\": ");
    if (have_tl)
	explain_print_json(fp, p, &in, &tl);
    else
	fputs("null", fp);
    fprintf(fp, "}\n");
    qmgr_timeline_free(&tl);
    explain_groups_free(&groups);
}

int     explain_queued(QUEUE *q, const QMGR_PARAMS *p, const EXPLAIN_OPTS *o,
		               SHOWQ_SCHED_FN sched, void *ctx, int64_t anchor, int64_t now,
		               FILE *out, char *err, size_t errlen)
{
    EXPLAIN_MSG em;
    SHOWQ_SCHED sc;
    QMSG   *m;
    int     nhist;
    char    why[256];

    switch (queue_load_qid(q, o->qid, 0, &m, why, sizeof(why))) {
    case QUEUE_OK:
	break;
    case QUEUE_GONE:
	snprintf(err, errlen, "%s: no such message in the queue", o->qid);
	return (-1);
    default:
	snprintf(err, errlen, "%s: cannot read the queue: %s", o->qid, why);
	return (-1);
    }
    memset(&em, 0, sizeof(em));
    em.msg = m;
    nhist = queue_history(q, m->seq, &em.history);
    em.nhistory = nhist < 0 ? 0 : nhist;
    if (sched) {
	memset(&sc, 0, sizeof(sc));
	sched(ctx, m, &sc);
	em.active = sc.active;
	em.next_attempt = sc.next_attempt;
	em.destination_dead = sc.destination_dead > 0;
	em.dead_until = sc.dead_until;
	em.rcpt_policy = sc.rcpt_policy;
    }
    em.anchor = anchor;
    em.now = now;
    em.attempt_duration = o->attempt_duration;
    explain_message(out, p, &em, o->json);
    qattempt_free_array(em.history, em.nhistory);
    qmsg_free(m);
    return (0);
}
