/*
 * top - the daemon's side of relayq top: samples the delivery counters
 * once a second (rates over 1, 10 and 60 seconds) and answers "top [N]"
 * on the query socket with the scheduler's snapshot (sched_top).
 *
 * Nothing here walks the queue: the counts by state and age and the
 * deferred messages by destination are the scheduler's counters, kept up
 * to date as messages change state (docs/architecture.md, "relayq top").
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"
#include "control/top.h"
#include "relayqd/relayqd.h"

#define TOP_RING	64		/* one sample a second: more than the longest window */

typedef struct TOP_SAMPLE {
    int64_t us;				/* monotonic */
    uint64_t c[TOP_COUNTERS];
} TOP_SAMPLE;

struct TOPSTAT {
    RELAYQD *d;
    struct event *timer;
    int64_t started;
    TOP_SAMPLE ring[TOP_RING];
    int     head, n;
};

static void top_sample(TOPSTAT *t)
{
    TOP_SAMPLE *sm = &t->ring[t->head];

    sm->us = time_mono_us();
    sched_counters(t->d->sched, sm->c);
    t->head = (t->head + 1) % TOP_RING;
    if (t->n < TOP_RING)
	t->n++;
}

static void top_tick(evutil_socket_t fd, short what, void *ctx)
{
    top_sample(ctx);
}

TOPSTAT *top_create(RELAYQD *d)
{
    TOPSTAT *t = xcalloc(1, sizeof(*t));
    struct timeval one = {1, 0};

    t->d = d;
    t->started = (int64_t) time_sec();
    t->timer = event_new(d->base, -1, EV_PERSIST, top_tick, t);
    event_add(t->timer, &one);
    top_sample(t);
    return (t);
}

void    top_free(TOPSTAT *t)
{
    if (t == NULL)
	return;
    event_free(t->timer);
    free(t);
}

/* Per second over about the last `window` seconds: from the sample nearest that far back. */
static void top_rates(const TOPSTAT *t, const uint64_t *cur, int64_t now_us, int window, double *out)
{
    const TOP_SAMPLE *use = NULL;

    for (int k = 1; k <= t->n; k++) {
	const TOP_SAMPLE *sm = &t->ring[(t->head - k + TOP_RING) % TOP_RING];

	use = sm;				/* the oldest if none is old enough */
	if (now_us - sm->us >= (int64_t) window * 1000000 - 500000)
	    break;
    }
    for (int c = 0; c < TOP_COUNTERS; c++) {
	double  el = use ? (double) (now_us - use->us) / 1e6 : 0;

	out[c] = el >= 0.2 && cur[c] >= use->c[c] ? (double) (cur[c] - use->c[c]) / el : 0;
    }
}

/* "top [N]": N destinations (default 20, at most TOP_DESTS_MAX). */
int     top_answer(RELAYQD *d, int argc, char **argv, BUF *out)
{
    TOPSTAT *t = d->top;
    TOP_SNAP s;
    QMGR_TOP qt;
    QMGR_TOP_DEST qd[TOP_DESTS_MAX];
    uint64_t cur[TOP_COUNTERS];
    double  r[TOP_COUNTERS];
    int64_t now_us = time_mono_us();
    int     max = 20, n;

    if (argc == 2) {
	char   *end;
	long    v = strtol(argv[1], &end, 10);

	max = *end || end == argv[1] || v < 1 || v > TOP_DESTS_MAX ? -1 : (int) v;
    }
    if (argc > 2 || max < 0) {
	buf_printf(out, "usage: top [N], N from 1 to %d", TOP_DESTS_MAX);
	return (-1);
    }
    memset(&s, 0, sizeof(s));
    s.host = xstrdup(config_str(d->cf, "myhostname"));
    s.now = (int64_t) time_sec();
    s.started = t->started;
    sched_counters(d->sched, cur);
    for (int c = 0; c < TOP_COUNTERS; c++)
	s.total[c] = cur[c];
    for (int w = 0; w < TOP_WINDOWS; w++) {
	top_rates(t, cur, now_us, top_windows[w], r);
	for (int c = 0; c < TOP_COUNTERS; c++)
	    s.rate[c][w] = r[c];
    }
    n = sched_top(d->sched, s.now, &qt, qd, max);
    s.state[0] = (uint32_t) qt.counts.incoming;
    s.state[1] = (uint32_t) qt.counts.active;
    s.state[2] = (uint32_t) qt.counts.deferred;
    s.state[3] = (uint32_t) qt.counts.hold;
    memcpy(s.age, qt.age, sizeof(s.age));
    s.ndead = qt.ndead;
    s.ndests = qt.ndests;
    s.deferred_known = qt.deferred_known;
    s.next_run = qt.next_run;
    s.next_due = qt.next_due;
    s.queue_run_delay = sched_params(d->sched)->queue_run_delay;
    s.dests = xcalloc((size_t) (n > 0 ? n : 1), sizeof(TOP_DEST));
    for (int i = 0; i < n; i++) {
	s.dests[i].dest = xstrdup(qd[i].dest);
	s.dests[i].deferred = qd[i].deferred;
	s.dests[i].dead = qd[i].dead;
	s.dests[i].dead_until = qd[i].dead_until;
	s.dests[i].dsn = xstrdup(qd[i].dsn ? qd[i].dsn : "");
	s.dests[i].reason = xstrdup(qd[i].reason ? qd[i].reason : "");
    }
    s.ndest = n;
    top_format(&s, out);
    top_snap_free(&s);
    return (0);
}
