/*
 * qmgr_sim.c - the retry timeline behind `relayq explain`.
 *
 * No second copy of the rules: this file only drives the real scheduler
 * (qmgr.c, through its public interface) on a virtual clock, the way the
 * daemon does, with a next hop that fails every attempt after
 * attempt_duration seconds with a hop-level failure (connection refused).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "qmgr/qmgr.h"

#define SIM_ID    ((QMGR_ID) 1)
#define SIM_DEST  "smtp:[next-hop]"
#define SIM_DSN   "4.4.1"
#define SIM_WHY   "connect to next-hop[192.0.2.1]:25: Connection refused"

static QMGR_SIM_ATTEMPT *sim_new_attempt(QMGR_TIMELINE *out, int *cap)
{
    QMGR_SIM_ATTEMPT *a;

    if (out->nattempts == *cap) {
	*cap = *cap ? 2 * *cap : 32;
	out->attempts = xrealloc(out->attempts, (size_t) *cap * sizeof(*out->attempts));
    }
    a = out->attempts + out->nattempts++;
    memset(a, 0, sizeof(*a));
    return (a);
}

/*
 * Returns 0 with the timeline, 1 if the message is on hold (no timeline:
 * nothing happens until it is released), -1 on bad input.
 */
int     qmgr_simulate(const QMGR_PARAMS *p, const QMGR_SIM_INPUT *in, QMGR_TIMELINE *out)
{
    QMGR   *q;
    QMGR_MSGINFO info;
    QMGR_ACTION acts[16];
    QMGR_SIM_ATTEMPT *cur = 0;
    int     cap = 0, max_attempts = in->max_attempts > 0 ? in->max_attempts : 1000;
    int     from_run = 0, done = 0, n, k, rcpt0 = 0;
    const char *dest = SIM_DEST;
    int64_t t, start, prev_eligible = 0;
    uint64_t req = 0;
    int64_t req_end = INT64_MAX;
    /* Recipient groups under their own policies (in->npolicies > 0). */
    int     ng = in->npolicies > 0 ? (in->npolicies < 50 ? in->npolicies : 50) : 0;
    int     gr[50], gp[50], galive[50], nalive = ng, reqr[50], nreqr = 0;
    const char *gdest[50];

    memset(out, 0, sizeof(*out));
    q = qmgr_create(p, in->anchor);
    out->lifetime = qmgr_lifetime(qmgr_params(q), in->null_sender);
    if (ng > 0) {
	out->group_expiry = xcalloc((size_t) ng, sizeof(int64_t));
	for (k = 0; k < ng; k++) {
	    gp[k] = qmgr_policy(q, &in->policies[k]);
	    galive[k] = 1;
	    gdest[k] = dest;
	}
    }
    if (in->held) {
	qmgr_free(q);
	return (1);
    }

    /* A configuration: the message arrives. A queued message: from now. */
    memset(&info, 0, sizeof(info));
    info.create_time = info.arrival_time = in->arrival;
    info.null_sender = in->null_sender;
    info.warned = in->warned;
    if (in->attempts_done > 0 || in->now > 0) {
	start = in->now > 0 ? in->now : in->arrival;
	if (in->next_eligible > 0) {
	    info.state = QMGR_MSG_DEFERRED;
	    info.next_eligible = in->next_eligible;
	    prev_eligible = in->next_eligible;
	    from_run = 1;
	} else {
	    info.state = QMGR_MSG_INCOMING;
	}
    } else {
	start = in->arrival;
	info.state = QMGR_MSG_INCOMING;
    }
    if (start < in->anchor) {
	qmgr_free(q);
	return (-1);
    }

    /* Runs before the start have happened already (and took nothing). */
    if (start > in->anchor)
	(void) qmgr_run(q, start - 1, acts, 16);
    qmgr_add(q, SIM_ID, &info, start);

    t = start;
    while (!done) {
	/* The hop answers first, then the scheduler runs in the same second. */
	if (req != 0 && req_end <= t) {
	    if (ng > 0)
		qmgr_delivered_rcpts(q, req, reqr, nreqr, SIM_DSN, SIM_WHY, t);
	    else
		qmgr_delivered(q, req, 1, SIM_DSN, SIM_WHY, t);
	    req = 0;
	    req_end = INT64_MAX;
	}
	do {
	    n = qmgr_run(q, t, acts, 16);
	    for (k = 0; k < n && !done; k++) {
		QMGR_ACTION *a = acts + k;

		switch (a->type) {
		case QMGR_ACT_ACTIVATE:
		    if (out->nattempts >= max_attempts) {
			done = 1;
			break;
		    }
		    cur = sim_new_attempt(out, &cap);
		    cur->n = in->attempts_done + out->nattempts;
		    cur->start = t;
		    cur->eligible = from_run ? prev_eligible : 0;
		    /* Deferred mail is only activated by a run: the grid point at or before t. */
		    cur->queue_run = from_run ? qmgr_anchor(q) + (t - qmgr_anchor(q))
			/ qmgr_params(q)->queue_run_delay * qmgr_params(q)->queue_run_delay : 0;
		    if (ng > 0) {
			int     na = 0, pa[50];

			for (int g = 0; g < ng; g++)
			    if (galive[g]) {
				gr[na] = g;
				pa[na++] = gp[g];
			    }
			qmgr_activated_policies(q, a->id, gr, gdest, pa, na, t);
		    } else {
			qmgr_activated(q, a->id, &rcpt0, &dest, 1, t);
		    }
		    break;
		case QMGR_ACT_DELIVER:
		    if (cur)
			cur->start = t;
		    req = a->req;
		    req_end = t + (in->attempt_duration > 0 ? in->attempt_duration : 0);
		    nreqr = a->nrcpt < 50 ? a->nrcpt : 50;
		    memcpy(reqr, a->rcpts, (size_t) nreqr * sizeof(int));
		    break;
		case QMGR_ACT_SUSPEND:
		    /* Not expected with one message; counts as a failed attempt. */
		    break;
		case QMGR_ACT_DONE:
		    if (cur == 0)
			break;
		    cur->end = t;
		    if (a->disposition == QMGR_DEFER) {
			for (int e = 0; e < a->nexpired; e++) {
			    int     g = a->expired[e];

			    if (g >= 0 && g < ng && galive[g]) {
				galive[g] = 0;
				nalive--;
				out->group_expiry[g] = t;
			    }
			}
			cur->backoff = a->backoff;
			cur->next_eligible = a->next_eligible;
			cur->warning = a->warn;
			if (a->warn)
			    out->warning_at = t;
			prev_eligible = a->next_eligible;
			from_run = 1;
		    } else {
			cur->expired = a->disposition == QMGR_EXPIRE;
			if (cur->expired)
			    out->expiry_at = t;
			for (int g = 0; g < ng; g++)
			    if (galive[g] && cur->expired)
				out->group_expiry[g] = t;
			done = 1;
		    }
		    break;
		}
	    }
	} while (!done && (n == 16 || qmgr_next_wakeup(q, t) <= t));
	if (done)
	    break;
	if (req != 0 && req_end <= t)
	    continue;				/* an attempt of zero duration */
	{
	    int64_t next = qmgr_next_wakeup(q, t);

	    if (req_end < next)
		next = req_end;
	    if (next == INT64_MAX || next <= t) {
		/* Nothing will ever happen again: should not be reachable. */
		break;
	    }
	    t = next;
	}
    }
    qmgr_free(q);
    return (0);
}

void    qmgr_timeline_free(QMGR_TIMELINE *t)
{
    if (t == 0)
	return;
    free(t->attempts);
    free(t->group_expiry);
    t->attempts = 0;
    t->group_expiry = 0;
    t->nattempts = 0;
}
