/*
 * test_qmgr.c - the scheduler against Postfix's traces (spec §13, §14) on a
 * virtual clock, to the second; dead destinations (T3); admin commands;
 * limits; memory at 1,000,000 deferred messages.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <time.h>
#include <malloc.h>

#include "t.h"
#include "util/util.h"
#include "qmgr/qmgr.h"

#define DEST     "smtp:[127.0.0.1]:10099"
#define REFUSED  "connect to 127.0.0.1[127.0.0.1]:10099: Connection refused"
#define SUSPENDED "delivery temporarily suspended: " REFUSED

/* 2026-11-27 hh:mm:ss UTC as epoch seconds (the trace day). */
static int64_t T(int hh, int mm, int ss)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    tm.tm_year = 2026 - 1900;
    tm.tm_mon = 10;
    tm.tm_mday = 27;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    return ((int64_t) timegm(&tm));
}

static QMGR_PARAMS params(int64_t R, int64_t bmin, int64_t bmax, int64_t life)
{
    QMGR_PARAMS p;

    memset(&p, 0, sizeof(p));
    p.queue_run_delay = R;
    p.minimal_backoff_time = bmin;
    p.maximal_backoff_time = bmax;
    p.maximal_queue_lifetime = life;
    p.bounce_queue_lifetime = life;
    p.delay_warning_time = 0;
    p.qmgr_message_active_limit = 20000;
    p.initial_destination_concurrency = 5;
    p.default_destination_concurrency_limit = 20;
    p.default_destination_recipient_limit = 50;
    return (p);
}

/* ------------------------------------------------------------------ driver */

/*
 * A daemon on a virtual clock: every message has one recipient to DEST;
 * the hop refuses every connection (hop failure 4.4.1) after `c` seconds,
 * or accepts when hop_ok.  In sequential mode each DELIVER is answered
 * before the scheduler is asked for the next action (Postfix's fast
 * "Connection refused" replies in T3).
 */
#define NMSG 16
typedef struct REC {
    int64_t starts[64];
    int     n;
    int64_t warn_at;
    int64_t expire_at;
    int     forced;
    int     removed;
    int     suspended;
    int64_t last_eligible;
} REC;

typedef struct DRV {
    QMGR   *q;
    int64_t c;
    int     sequential;
    int     hop_ok;
    int     no_answer;			/* leave deliveries outstanding */
    struct {
	uint64_t req;
	int64_t end;
    }       out[64];
    int     nout;
    REC     rec[NMSG];
    int     ndeliver, nsuspend, nactivate;
    char    reason[256], dsn[16];
    int64_t t;
} DRV;

static void drv_answer(DRV *d, uint64_t req, int64_t t)
{
    if (d->hop_ok)
	qmgr_delivered(d->q, req, 0, NULL, NULL, t);
    else
	qmgr_delivered(d->q, req, 1, "4.4.1", REFUSED, t);
}

static void drv_step(DRV *d, int64_t t)
{
    QMGR_ACTION acts[8];
    int     n, k, i, max = d->sequential ? 1 : 8;
    int     rcpt0 = 0;
    const char *dest = DEST;

    d->t = t;
again:
    for (i = 0; i < d->nout;) {
	if (d->out[i].end <= t) {
	    uint64_t req = d->out[i].req;

	    d->out[i] = d->out[--d->nout];
	    drv_answer(d, req, t);
	} else {
	    i++;
	}
    }
    do {
	n = qmgr_run(d->q, t, acts, max);
	for (k = 0; k < n; k++) {
	    QMGR_ACTION *a = acts + k;
	    REC    *r = a->id < NMSG ? d->rec + a->id : d->rec;

	    switch (a->type) {
	    case QMGR_ACT_ACTIVATE:
		d->nactivate++;
		qmgr_activated(d->q, a->id, &rcpt0, &dest, 1, t);
		break;
	    case QMGR_ACT_DELIVER:
		d->ndeliver++;
		if (r->n < 64)
		    r->starts[r->n++] = t;
		if (d->no_answer) {
		} else if (d->sequential && d->c == 0) {
		    drv_answer(d, a->req, t);
		} else {
		    d->out[d->nout].req = a->req;
		    d->out[d->nout].end = t + d->c;
		    d->nout++;
		}
		break;
	    case QMGR_ACT_SUSPEND:
		d->nsuspend++;
		r->suspended++;
		snprintf(d->reason, sizeof(d->reason), "%s", a->reason);
		snprintf(d->dsn, sizeof(d->dsn), "%s", a->dsn);
		break;
	    case QMGR_ACT_DONE:
		if (a->disposition == QMGR_DEFER) {
		    if (a->warn)
			r->warn_at = t;
		    r->last_eligible = a->next_eligible;
		} else if (a->disposition == QMGR_EXPIRE) {
		    r->expire_at = t;
		    r->forced = a->forced;
		} else {
		    r->removed = 1;
		}
		break;
	    }
	}
    } while (n == max || qmgr_next_wakeup(d->q, t) <= t);
    /* Attempts of zero duration are answered in the same second. */
    for (i = 0; i < d->nout; i++)
	if (d->out[i].end <= t)
	    goto again;
}

/* Run the virtual clock from d->t up to and including `until`. */
static void drv_until(DRV *d, int64_t until)
{
    int64_t t = d->t;

    for (;;) {
	int64_t next;
	int     i;

	drv_step(d, t);
	next = qmgr_next_wakeup(d->q, t);
	for (i = 0; i < d->nout; i++)
	    if (d->out[i].end < next)
		next = d->out[i].end;
	if (next > until || next == INT64_MAX)
	    break;
	if (next <= t)
	    next = t + 1;
	t = next;
    }
    d->t = until;
}

static void drv_init(DRV *d, const QMGR_PARAMS *p, int64_t start)
{
    memset(d, 0, sizeof(*d));
    d->q = qmgr_create(p, start);
    d->t = start;
}

static void add_msg(DRV *d, QMGR_ID id, int state, int64_t create, int64_t arrival,
		            int64_t next_eligible, int null_sender)
{
    QMGR_MSGINFO mi;

    memset(&mi, 0, sizeof(mi));
    mi.state = state;
    mi.create_time = create;
    mi.arrival_time = arrival;
    mi.next_eligible = next_eligible;
    mi.null_sender = null_sender;
    qmgr_add(d->q, id, &mi, d->t);
}

/* --------------------------------------------------------- simulations */

static QMGR_SIM_INPUT sim_input(int64_t anchor, int64_t arrival, int64_t c)
{
    QMGR_SIM_INPUT in;

    memset(&in, 0, sizeof(in));
    in.anchor = anchor;
    in.arrival = arrival;
    in.attempt_duration = c;
    return (in);
}

static void check_starts(const QMGR_TIMELINE *tl, const int64_t *want, int n)
{
    int     i;

    T_EQ_INT(tl->nattempts, n);
    for (i = 0; i < n && i < tl->nattempts; i++) {
	if (tl->attempts[i].start != want[i])
	    T_FAILF("attempt %d starts at %lld, expected %lld (%+lld)", i + 1,
		    (long long) tl->attempts[i].start, (long long) want[i],
		    (long long) (tl->attempts[i].start - want[i]));
	T_EQ_INT(tl->attempts[i].n, i + 1);
    }
}

/* §14 T1: 10s/40s/run 10s/lifetime 3m, qmgr start 21:11:54, create 21:12:07. */
static void test_trace_t1(void)
{
    QMGR_PARAMS p = params(10, 10, 40, 180);
    QMGR_SIM_INPUT in = sim_input(T(21, 11, 54), T(21, 12, 7), 0);
    QMGR_TIMELINE tl;
    int64_t want[] = {T(21, 12, 7), T(21, 12, 24), T(21, 12, 44), T(21, 13, 24),
	T(21, 14, 4), T(21, 14, 44), T(21, 15, 24)};
    int64_t mtime[] = {T(21, 12, 17), T(21, 12, 41), T(21, 13, 21), T(21, 14, 4),
	T(21, 14, 44), T(21, 15, 24)};
    int     i;

    T_EQ_INT(qmgr_simulate(&p, &in, &tl), 0);
    check_starts(&tl, want, 7);
    for (i = 0; i < 6 && i < tl.nattempts; i++)
	T_EQ_INT(tl.attempts[i].next_eligible, mtime[i]);
    T_EQ_INT(tl.attempts[1].queue_run, T(21, 12, 24));
    T_EQ_INT(tl.attempts[1].eligible, T(21, 12, 17));
    T_CHECK(tl.nattempts == 7 && tl.attempts[6].expired);
    T_EQ_INT(tl.expiry_at, T(21, 15, 24));
    T_EQ_INT(tl.warning_at, 0);
    qmgr_timeline_free(&tl);
}

/*
 * §14 T2: three messages in one scheduler (they share the destination and
 * the 21:16:12 run), R=7 from 21:15:44, 20s/60s, lifetime 4m, bounce 2m,
 * delay warning 1m from arrival.
 */
static void test_trace_t2(void)
{
    QMGR_PARAMS p = params(7, 20, 60, 240);
    DRV     d;
    static const int offa[] = {0, 24, 52, 108, 171, 234, 297};
    static const int offb[] = {0, 21, 42, 84, 147, 210, 273};
    static const int offc[] = {0, 19, 40, 82, 145};
    int64_t ca = T(21, 15, 48), cb = T(21, 15, 51), cc = T(21, 15, 53);
    int     i;

    p.bounce_queue_lifetime = 120;
    p.delay_warning_time = 60;
    drv_init(&d, &p, T(21, 15, 44));
    drv_until(&d, ca);
    add_msg(&d, 1, QMGR_MSG_INCOMING, ca, T(21, 15, 47), 0, 0);
    drv_until(&d, cb);
    add_msg(&d, 2, QMGR_MSG_INCOMING, cb, T(21, 15, 51), 0, 0);
    drv_until(&d, cc);
    add_msg(&d, 3, QMGR_MSG_INCOMING, cc, T(21, 15, 53), 0, 1);
    drv_until(&d, T(21, 30, 0));

    T_EQ_INT(d.rec[1].n, 7);
    for (i = 0; i < 7 && i < d.rec[1].n; i++)
	T_EQ_INT(d.rec[1].starts[i] - ca, offa[i]);
    T_EQ_INT(d.rec[2].n, 7);
    for (i = 0; i < 7 && i < d.rec[2].n; i++)
	T_EQ_INT(d.rec[2].starts[i] - cb, offb[i]);
    T_EQ_INT(d.rec[3].n, 5);
    for (i = 0; i < 5 && i < d.rec[3].n; i++)
	T_EQ_INT(d.rec[3].starts[i] - cc, offc[i]);
    /* Warnings at the end of the failed attempts at 17:36 and 17:15; none for <>. */
    T_EQ_INT(d.rec[1].warn_at, T(21, 17, 36));
    T_EQ_INT(d.rec[2].warn_at, T(21, 17, 15));
    T_EQ_INT(d.rec[3].warn_at, 0);
    T_EQ_INT(d.rec[1].expire_at, T(21, 20, 45));
    T_EQ_INT(d.rec[2].expire_at, T(21, 20, 24));
    T_EQ_INT(d.rec[3].expire_at, T(21, 18, 18));
    /* Three hop failures in one queue (0.78 cohorts): never dead, no suspend. */
    T_EQ_INT(d.nsuspend, 0);
    T_EQ_INT(qmgr_dead_count(d.q), 0);
    qmgr_free(d.q);
}

/* T2 message C alone through qmgr_simulate: the null sender's lifetime. */
static void test_trace_t2_sim_null_sender(void)
{
    QMGR_PARAMS p = params(7, 20, 60, 240);
    QMGR_SIM_INPUT in = sim_input(T(21, 15, 44), T(21, 15, 53), 0);
    QMGR_TIMELINE tl;
    int64_t c = T(21, 15, 53);
    int64_t want[] = {c, c + 19, c + 40, c + 82, c + 145};

    p.bounce_queue_lifetime = 120;
    p.delay_warning_time = 60;
    in.null_sender = 1;
    T_EQ_INT(qmgr_simulate(&p, &in, &tl), 0);
    check_starts(&tl, want, 5);
    T_EQ_INT(tl.lifetime, 120);
    T_EQ_INT(tl.warning_at, 0);
    T_EQ_INT(tl.expiry_at, c + 145);
    /* The 21:16:12 run takes mtime 21:16:13 (+1 s slack). */
    T_EQ_INT(tl.attempts[0].next_eligible, T(21, 16, 13));
    T_EQ_INT(tl.attempts[1].queue_run, T(21, 16, 12));
    qmgr_timeline_free(&tl);
}

/* §14 T4: 3 s attempts, 10s/40s/10s, lifetime 150s, start 21:22:07, create 21:22:12. */
static void test_trace_t4(void)
{
    QMGR_PARAMS p = params(10, 10, 40, 150);
    QMGR_SIM_INPUT in = sim_input(T(21, 22, 7), T(21, 22, 12), 3);
    QMGR_TIMELINE tl;
    int64_t want[] = {T(21, 22, 12), T(21, 22, 27), T(21, 22, 47), T(21, 23, 27),
	T(21, 24, 17), T(21, 25, 7)};
    int64_t mtime[] = {T(21, 22, 25), T(21, 22, 48), T(21, 23, 28), T(21, 24, 10),
	T(21, 25, 0)};
    int64_t backoff[] = {10, 18, 38, 40, 40};
    int     i;

    T_EQ_INT(qmgr_simulate(&p, &in, &tl), 0);
    check_starts(&tl, want, 6);
    for (i = 0; i < 5 && i < tl.nattempts; i++) {
	T_EQ_INT(tl.attempts[i].end, want[i] + 3);
	T_EQ_INT(tl.attempts[i].backoff, backoff[i]);
	T_EQ_INT(tl.attempts[i].next_eligible, mtime[i]);
    }
    T_EQ_INT(tl.expiry_at, T(21, 25, 10));
    qmgr_timeline_free(&tl);
}

/* §13: the seed, 900/900/3600/1d, runs at hh:10:02 etc., arrival 00:10:37, c = 16. */
static void test_seed_timeline(void)
{
    QMGR_PARAMS p = params(900, 900, 3600, 86400);
    int64_t day = T(0, 0, 0) + 86400;		/* 2026-11-28 00:00:00 */
    int64_t arrival = day + 10 * 60 + 37;
    QMGR_SIM_INPUT in = sim_input(day + 10 * 60 + 2, arrival, 16);
    QMGR_TIMELINE tl;
    int     i;

    T_EQ_INT(qmgr_simulate(&p, &in, &tl), 0);
    T_EQ_INT(tl.nattempts, 22);
    if (tl.nattempts == 22) {
	T_EQ_INT(tl.attempts[0].start, arrival);
	T_EQ_INT(tl.attempts[0].backoff, 900);
	T_EQ_INT(tl.attempts[0].next_eligible, day + 25 * 60 + 53);
	T_EQ_INT(tl.attempts[1].start, day + 40 * 60 + 2);	/* 00:40:02 */
	T_EQ_INT(tl.attempts[1].start - arrival, 1765);
	T_EQ_INT(tl.attempts[1].backoff, 1781);
	T_EQ_INT(tl.attempts[2].start, day + 3600 + 10 * 60 + 2);	/* 01:10:02 */
	T_EQ_INT(tl.attempts[2].backoff, 3581);
	T_EQ_INT(tl.attempts[3].start, day + 2 * 3600 + 10 * 60 + 2);	/* 02:10:02 */
	T_EQ_INT(tl.attempts[4].start, day + 3 * 3600 + 25 * 60 + 2);	/* 03:25:02 */
	for (i = 4; i < 22; i++)
	    T_EQ_INT(tl.attempts[i].start - tl.attempts[i - 1].start, i == 4 ? 4500 : 4500);
	for (i = 3; i < 21; i++)
	    T_EQ_INT(tl.attempts[i].backoff, 3600);
	T_EQ_INT(tl.attempts[20].end - arrival, 83681);	/* attempt 21: still deferred */
	T_CHECK(!tl.attempts[20].expired);
	T_EQ_INT(tl.attempts[21].start, day + 86400 + 40 * 60 + 2);	/* next day 00:40:02 */
	T_EQ_INT(tl.attempts[21].end - arrival, 88181);
	T_CHECK(tl.attempts[21].expired);
	T_EQ_INT(tl.expiry_at - arrival, 88181);
    }
    qmgr_timeline_free(&tl);
}

/* The +1 s exception: phi + c <= 1 gives a first retry at one queue_run_delay. */
static void test_first_retry_phase(void)
{
    QMGR_PARAMS p = params(900, 900, 3600, 86400);
    static const struct {
	int64_t phi, c, want;
    } cases[] = {
	{0, 0, 900}, {1, 0, 899}, {0, 1, 900}, {2, 0, 1798}, {35, 16, 1765}, {899, 0, 901},
    };
    size_t  i;

    for (i = 0; i < ARRAY_LEN(cases); i++) {
	QMGR_SIM_INPUT in = sim_input(100000, 100000 + cases[i].phi, cases[i].c);
	QMGR_TIMELINE tl;

	in.max_attempts = 2;
	T_EQ_INT(qmgr_simulate(&p, &in, &tl), 0);
	T_EQ_INT(tl.nattempts, 2);
	if (tl.nattempts == 2 && tl.attempts[1].start - in.arrival != cases[i].want)
	    T_FAILF("phi %lld c %lld: retry after %lld, expected %lld", (long long) cases[i].phi,
		    (long long) cases[i].c, (long long) (tl.attempts[1].start - in.arrival),
		    (long long) cases[i].want);
	qmgr_timeline_free(&tl);
    }
}

/* ---------------------------------------------------- dead destinations */

/*
 * §14 T3: params 30s/60s/10s; qmgr (re)started 21:21:04; 8 messages deferred
 * with mtime create+30; postqueue -f at 21:21:07.
 */
static void t3_setup(DRV *d, QMGR_PARAMS *p)
{
    int     k;

    *p = params(10, 30, 60, 600);
    drv_init(d, p, T(21, 21, 4));
    d->sequential = 1;
    for (k = 1; k <= 8; k++)
	add_msg(d, (QMGR_ID) k, QMGR_MSG_DEFERRED, T(21, 21, 1), T(21, 21, 1), T(21, 21, 31), 0);
    drv_until(d, T(21, 21, 6));
}

static void test_trace_t3_dead_destination(void)
{
    QMGR_PARAMS p;
    DRV     d;
    int64_t until = 0;
    int     k;

    t3_setup(&d, &p);
    /* The start-up run skipped them all: mtimes still in the future. */
    T_EQ_INT(d.ndeliver, 0);
    T_EQ_INT(d.nactivate, 0);

    drv_until(&d, T(21, 21, 7));
    qmgr_flush(d.q, T(21, 21, 7));
    drv_until(&d, T(21, 21, 7));
    T_EQ_INT(d.nactivate, 8);
    T_EQ_INT(d.ndeliver, 4);			/* 1/5 + 1/4 + 1/3 + 1/2 >= 1 */
    T_EQ_INT(d.nsuspend, 4);
    T_EQ_STR(d.reason, SUSPENDED);
    T_EQ_STR(d.dsn, "4.4.1");
    T_CHECK(qmgr_dest_dead(d.q, DEST, &until));
    T_EQ_INT(until, T(21, 21, 37));
    for (k = 1; k <= 8; k++)
	T_EQ_INT(d.rec[k].last_eligible, T(21, 21, 37));
    /* mailq/explain: qmgr knows each message's destinations from its pass. */
    {
	QMGR_MSGSTATE st;

	for (k = 1; k <= 8; k++) {
	    qmgr_msg_state(d.q, (QMGR_ID) k, &st);
	    T_CHECK(st.known && st.destination_dead);
	    T_EQ_INT(st.dead_until, T(21, 21, 37));
	}
	/* A message not tried since the start: its destinations are not known. */
	add_msg(&d, 12, QMGR_MSG_DEFERRED, T(21, 21, 1), T(21, 21, 1), T(21, 30, 0), 0);
	qmgr_msg_state(d.q, 12, &st);
	T_CHECK(st.known && !st.destination_dead);
	qmgr_remove(d.q, 12);
    }

    /* Message 9, 4 s later: suspended at once, no delivery. */
    drv_until(&d, T(21, 21, 11));
    add_msg(&d, 9, QMGR_MSG_INCOMING, T(21, 21, 11), T(21, 21, 11), 0, 0);
    drv_until(&d, T(21, 21, 11));
    T_EQ_INT(d.ndeliver, 4);
    T_EQ_INT(d.nsuspend, 5);
    T_EQ_INT(d.rec[9].suspended, 1);
    T_EQ_INT(d.rec[9].n, 0);
    T_EQ_INT(d.rec[9].last_eligible, T(21, 21, 41));

    /* hold + release keeps the time (postsuper -h / -H). */
    {
	QMGR_MSGSTATE st;

	T_EQ_INT(qmgr_hold(d.q, 4), 0);
	qmgr_msg_state(d.q, 4, &st);
	T_EQ_INT(st.state, QMGR_MSG_HOLD);
	T_EQ_INT(qmgr_release(d.q, 4, T(21, 21, 14)), 0);
	qmgr_msg_state(d.q, 4, &st);
	T_EQ_INT(st.state, QMGR_MSG_DEFERRED);
	T_EQ_INT(st.next_eligible, T(21, 21, 37));
	T_EQ_INT(st.next_attempt, T(21, 21, 44));
    }

    /* After minimal_backoff_time the destination is live again (and empty: gone). */
    drv_until(&d, T(21, 21, 36));
    T_CHECK(qmgr_dest_dead(d.q, DEST, NULL));
    drv_until(&d, T(21, 21, 37));
    T_CHECK(!qmgr_dest_dead(d.q, DEST, NULL));
    T_EQ_INT(qmgr_dead_count(d.q), 0);
    {
	QMGR_MSGSTATE st;

	qmgr_msg_state(d.q, 1, &st);
	T_CHECK(st.known && !st.destination_dead && st.dead_until == 0);
    }

    /* The 21:21:44 run takes all 9: again 4 connects, then 5 suspended. */
    drv_until(&d, T(21, 21, 43));
    T_EQ_INT(d.ndeliver, 4);
    drv_until(&d, T(21, 21, 44));
    T_EQ_INT(d.ndeliver, 8);
    T_EQ_INT(d.nsuspend, 10);
    qmgr_free(d.q);
}

/* relayq top: counts by state and age, deferred messages by destination, kept without a walk. */
static void test_top_counters(void)
{
    QMGR_PARAMS p;
    DRV     d;
    QMGR_TOP t;
    QMGR_TOP_DEST td[4];
    int     n;

    t3_setup(&d, &p);
    T_EQ_INT(qmgr_top_check(d.q), 0);
    drv_until(&d, T(21, 21, 7));
    qmgr_flush(d.q, T(21, 21, 7));
    drv_until(&d, T(21, 21, 7));
    T_EQ_INT(qmgr_top_check(d.q), 0);
    qmgr_top(d.q, T(21, 21, 7), &t);
    T_EQ_INT(t.counts.deferred, 8);
    T_EQ_INT(t.deferred_known, 8);
    T_EQ_INT(t.ndead, 1);
    n = qmgr_top_dests(d.q, td, 4);
    T_EQ_INT(n, 1);
    T_EQ_STR(td[0].dest, DEST);
    T_EQ_INT(td[0].deferred, 8);
    T_EQ_INT(td[0].dead, 1);
    T_EQ_INT(td[0].dead_until, T(21, 21, 37));
    T_EQ_STR(td[0].reason, SUSPENDED);
    T_EQ_STR(td[0].dsn, "4.4.1");
    /* Hold takes one out of the destination's count; release puts it back. */
    T_EQ_INT(qmgr_hold(d.q, 3), 0);
    T_EQ_INT(qmgr_top_dests(d.q, td, 4), 1);
    T_EQ_INT(td[0].deferred, 7);
    qmgr_top(d.q, T(21, 21, 7), &t);
    T_EQ_INT(t.counts.hold, 1);
    T_EQ_INT(t.counts.deferred, 7);
    T_EQ_INT(qmgr_top_check(d.q), 0);
    T_EQ_INT(qmgr_release(d.q, 3, T(21, 21, 8)), 0);
    qmgr_top_dests(d.q, td, 4);
    T_EQ_INT(td[0].deferred, 8);
    /* A message loaded from the queue (not tried since the start) has no known destination. */
    add_msg(&d, 12, QMGR_MSG_DEFERRED, T(21, 21, 1), T(21, 21, 1), T(21, 30, 0), 0);
    qmgr_top(d.q, T(21, 21, 8), &t);
    T_EQ_INT(t.counts.deferred, 9);
    T_EQ_INT(t.deferred_known, 8);
    T_EQ_INT(qmgr_top_check(d.q), 0);
    qmgr_remove(d.q, 12);
    /* The next run with the hop back: everything delivered, nothing left to count. */
    d.hop_ok = 1;
    drv_until(&d, T(21, 21, 44));
    T_EQ_INT(qmgr_top_check(d.q), 0);
    qmgr_top(d.q, T(21, 21, 44), &t);
    T_EQ_INT(t.counts.deferred + t.counts.active + t.counts.incoming + t.counts.hold, 0);
    T_EQ_INT(t.deferred_known, 0);
    T_EQ_INT(qmgr_top_dests(d.q, td, 4), 0);
    for (int b = 0; b < QMGR_AGE_BUCKETS; b++)
	T_EQ_INT(t.age[2][b], 0);
    qmgr_free(d.q);
}

static void test_top_ages(void)
{
    QMGR_PARAMS p = params(300, 300, 4000, 5 * 86400);
    DRV     d;
    QMGR_TOP t;
    int64_t now = 1000000;

    /* qshape's buckets: < 5 min, then doubling up to 1280 min, then 1280+. */
    T_EQ_INT(qmgr_age_bucket(-5), 0);
    T_EQ_INT(qmgr_age_bucket(299), 0);
    T_EQ_INT(qmgr_age_bucket(300), 1);
    T_EQ_INT(qmgr_age_bucket(599), 1);
    T_EQ_INT(qmgr_age_bucket(600), 2);
    T_EQ_INT(qmgr_age_bucket(1199), 2);
    T_EQ_INT(qmgr_age_bucket(1200), 3);
    T_EQ_INT(qmgr_age_bucket(640 * 60 - 1), 7);
    T_EQ_INT(qmgr_age_bucket(640 * 60), 8);
    T_EQ_INT(qmgr_age_bucket(1280 * 60 - 1), 8);
    T_EQ_INT(qmgr_age_bucket(1280 * 60), 9);
    T_EQ_INT(qmgr_age_bucket(100 * 86400), 9);

    drv_init(&d, &p, now);
    add_msg(&d, 1, QMGR_MSG_INCOMING, now, now, 0, 0);			/* age 0 */
    add_msg(&d, 2, QMGR_MSG_DEFERRED, now - 400, now - 400, now + 900, 0);	/* 6 min */
    add_msg(&d, 3, QMGR_MSG_DEFERRED, now - 7200, now - 7200, now + 900, 0);	/* 120 min: 80..160 */
    add_msg(&d, 4, QMGR_MSG_HOLD, now - 3 * 86400, now - 3 * 86400, 0, 0);	/* 1280+ */
    add_msg(&d, 5, QMGR_MSG_DEFERRED, now - 7190, now - 7190, now + 900, 0);	/* same minute as 3 or the next */
    T_EQ_INT(qmgr_top_check(d.q), 0);
    qmgr_top(d.q, now, &t);
    T_EQ_INT(t.age[0][0], 1);
    T_EQ_INT(t.age[2][1], 1);
    T_EQ_INT(t.age[2][5], 2);
    T_EQ_INT(t.age[3][9], 1);
    T_EQ_INT(t.next_due, now + 900);			/* R = 300 from the anchor */
    /* An hour later the same messages are older: nothing to update meanwhile. */
    qmgr_top(d.q, now + 3600, &t);
    T_EQ_INT(t.age[0][4], 1);				/* 60 min: 40..80 */
    T_EQ_INT(t.age[2][4], 1);
    T_EQ_INT(t.age[2][6], 2);				/* 180 min: 160..320 */
    /* State changes move the counts; removals drop them. */
    T_EQ_INT(qmgr_release(d.q, 4, now), 0);
    qmgr_remove(d.q, 2);
    qmgr_flush_ids(d.q, (const QMGR_ID[]) {3}, 1, now);
    T_EQ_INT(qmgr_top_check(d.q), 0);
    qmgr_top(d.q, now, &t);
    T_EQ_INT(t.counts.incoming, 2);
    T_EQ_INT(t.age[0][5], 1);
    T_EQ_INT(t.age[2][9], 1);
    T_EQ_INT(t.age[2][5], 1);
    T_EQ_INT(t.age[2][1], 0);
    T_EQ_INT(t.age[3][9], 0);
    qmgr_free(d.q);
}

/* Deliveries dispatched all at once (no answer in between): the window (5) goes out. */
static void test_dead_destination_concurrent(void)
{
    QMGR_PARAMS p;
    DRV     d;

    t3_setup(&d, &p);
    d.sequential = 0;
    d.c = 1;
    drv_until(&d, T(21, 21, 7));
    qmgr_flush(d.q, T(21, 21, 7));
    drv_until(&d, T(21, 21, 7));
    T_EQ_INT(d.ndeliver, 5);
    T_EQ_INT(d.nsuspend, 0);
    drv_until(&d, T(21, 21, 8));
    T_EQ_INT(d.ndeliver, 5);
    T_EQ_INT(d.nsuspend, 3);
    T_CHECK(qmgr_dest_dead(d.q, DEST, NULL));
    qmgr_free(d.q);
}

/* flush in steps: the ones due first go first, the counts add up, a step past the end is harmless. */
static void test_flush_steps(void)
{
    QMGR_PARAMS p;
    DRV     d;
    QMGR_COUNTS c;
    QMGR_MSGSTATE st;

    p = params(10, 30, 60, 600);
    drv_init(&d, &p, 1000);
    for (int i = 0; i < 5; i++)
	add_msg(&d, 100 + i, QMGR_MSG_DEFERRED, 900, 900, 5000 - 100 * i, 0);
    qmgr_counts(d.q, &c);
    T_EQ_INT(c.deferred, 5);
    qmgr_flush_start(d.q);
    T_EQ_INT(qmgr_flush_some(d.q, 1000, 2), 3);
    /* 104 and 103 were due first (4600, 4700): ready now; 100 (5000) still waits. */
    qmgr_msg_state(d.q, 104, &st);
    T_EQ_INT(st.next_eligible, 1000);
    qmgr_msg_state(d.q, 103, &st);
    T_EQ_INT(st.next_eligible, 1000);
    qmgr_msg_state(d.q, 100, &st);
    T_EQ_INT(st.next_eligible, 5000);
    T_EQ_INT(qmgr_flush_some(d.q, 1000, 2), 1);
    T_EQ_INT(qmgr_flush_some(d.q, 1000, 2), 0);
    T_EQ_INT(qmgr_flush_some(d.q, 1000, 2), 0);
    qmgr_msg_state(d.q, 100, &st);
    T_EQ_INT(st.next_eligible, 1000);
    qmgr_free(d.q);
}

/* What the metrics page reads: the oldest create_time, and each destination's dead flag. */
static void dest_walk_cb(void *ctx, const char *dest, int dead)
{
    int    *seen = ctx;

    if (strcmp(dest, DEST) == 0)
	*seen = dead ? 2 : 1;
}

static void test_metrics_queries(void)
{
    QMGR_PARAMS p;
    DRV     d;
    int     seen = 0;

    t3_setup(&d, &p);
    T_EQ_INT(qmgr_oldest_create_time(d.q), T(21, 21, 1));
    {
	int64_t oldest = T(21, 21, 1);

	add_msg(&d, 20, QMGR_MSG_HOLD, oldest - 100, oldest - 100, 0, 0);
	T_EQ_INT(qmgr_oldest_create_time(d.q), oldest - 100);
	qmgr_remove(d.q, 20);
	T_EQ_INT(qmgr_oldest_create_time(d.q), oldest);
	/* Kept between calls: a newer one, or one that is not the oldest leaving, changes nothing. */
	add_msg(&d, 21, QMGR_MSG_HOLD, oldest + 100, oldest + 100, 0, 0);
	T_EQ_INT(qmgr_oldest_create_time(d.q), oldest);
	add_msg(&d, 22, QMGR_MSG_HOLD, oldest - 50, oldest - 50, 0, 0);
	T_EQ_INT(qmgr_oldest_create_time(d.q), oldest - 50);
	qmgr_remove(d.q, 21);
	T_EQ_INT(qmgr_oldest_create_time(d.q), oldest - 50);
	qmgr_remove(d.q, 22);
	T_EQ_INT(qmgr_oldest_create_time(d.q), oldest);
    }
    qmgr_dest_walk(d.q, dest_walk_cb, &seen);
    T_EQ_INT(seen, 0);				/* no work queued yet: no destination */
    drv_until(&d, T(21, 21, 7));
    qmgr_flush(d.q, T(21, 21, 7));
    drv_until(&d, T(21, 21, 7));
    qmgr_dest_walk(d.q, dest_walk_cb, &seen);
    T_EQ_INT(seen, 2);				/* dead */
    qmgr_free(d.q);

    d.q = qmgr_create(&p, 1000);
    T_EQ_INT(qmgr_oldest_create_time(d.q), 0);
    d.t = 1000;
    add_msg(&d, 30, QMGR_MSG_HOLD, 900, 900, 0, 0);	/* the first into an empty one */
    T_EQ_INT(qmgr_oldest_create_time(d.q), 900);
    qmgr_remove(d.q, 30);
    T_EQ_INT(qmgr_oldest_create_time(d.q), 0);
    qmgr_free(d.q);
}

static void test_flush_revives(void)
{
    QMGR_PARAMS p;
    DRV     d;

    t3_setup(&d, &p);
    drv_until(&d, T(21, 21, 7));
    qmgr_flush(d.q, T(21, 21, 7));
    drv_until(&d, T(21, 21, 7));
    T_CHECK(qmgr_dest_dead(d.q, DEST, NULL));
    /* postqueue -f at :10: dead state forgotten, all 8 tried again now. */
    drv_until(&d, T(21, 21, 10));
    qmgr_flush(d.q, T(21, 21, 10));
    T_CHECK(!qmgr_dest_dead(d.q, DEST, NULL));
    drv_until(&d, T(21, 21, 10));
    T_EQ_INT(d.nactivate, 16);
    T_EQ_INT(d.ndeliver, 8);
    T_EQ_INT(d.rec[1].last_eligible, T(21, 21, 40));
    qmgr_free(d.q);
}

/* T1/T2: one message at a time never makes a destination dead. */
static void test_single_message_never_dead(void)
{
    QMGR_PARAMS p = params(10, 10, 40, 100000);
    DRV     d;

    drv_init(&d, &p, 1000);
    d.sequential = 1;
    add_msg(&d, 1, QMGR_MSG_INCOMING, 1000, 1000, 0, 0);
    drv_until(&d, 5000);
    T_CHECK(d.ndeliver > 20);
    T_EQ_INT(d.nsuspend, 0);
    T_EQ_INT(qmgr_dead_count(d.q), 0);
    qmgr_free(d.q);
}

/* ----------------------------------------------------------- admin, limits */

static void test_active_limit(void)
{
    QMGR_PARAMS p = params(10, 10, 40, 1000);
    DRV     d;
    QMGR_COUNTS c;
    int     k;

    p.qmgr_message_active_limit = 2;
    drv_init(&d, &p, 1000);
    d.no_answer = 1;
    for (k = 1; k <= 5; k++)
	add_msg(&d, (QMGR_ID) k, QMGR_MSG_INCOMING, 1000, 1000, 0, 0);
    drv_until(&d, 1000);
    T_EQ_INT(d.nactivate, 2);
    qmgr_counts(d.q, &c);
    T_EQ_INT(c.active, 2);
    T_EQ_INT(c.incoming, 3);
    /* Nothing more while the active set is full, whatever the clock says. */
    drv_until(&d, 2000);
    T_EQ_INT(d.nactivate, 2);
    T_EQ_INT(qmgr_hold(d.q, 1), -1);		/* active: cannot be held */
    T_CHECK(qmgr_is_active(d.q, 1));
    T_CHECK(!qmgr_is_active(d.q, 3));
    qmgr_free(d.q);
}

static void test_active_limit_release(void)
{
    QMGR_PARAMS p = params(10, 10, 40, 1000);
    DRV     d;
    int     k;

    p.qmgr_message_active_limit = 2;
    drv_init(&d, &p, 1000);
    d.c = 5;
    for (k = 1; k <= 5; k++)
	add_msg(&d, (QMGR_ID) k, QMGR_MSG_INCOMING, 1000, 1000, 0, 0);
    drv_until(&d, 1004);
    T_EQ_INT(d.nactivate, 2);
    drv_until(&d, 1005);
    T_EQ_INT(d.nactivate, 4);
    drv_until(&d, 1010);
    T_EQ_INT(d.nactivate, 5);
    /* Every message got its first attempt at once when its turn came. */
    T_EQ_INT(d.rec[5].starts[0], 1010);
    qmgr_free(d.q);
}

static void test_hold_release_keeps_time(void)
{
    QMGR_PARAMS p = params(100, 100, 400, 100000);
    DRV     d;
    QMGR_MSGSTATE st;

    drv_init(&d, &p, 0);
    add_msg(&d, 1, QMGR_MSG_DEFERRED, 10, 10, 250, 0);
    T_EQ_INT(qmgr_hold(d.q, 1), 0);
    drv_until(&d, 1000);
    T_EQ_INT(d.nactivate, 0);			/* held: never taken, never expires */
    drv_until(&d, 1010);
    T_EQ_INT(qmgr_release(d.q, 1, 1010), 0);
    qmgr_msg_state(d.q, 1, &st);
    T_EQ_INT(st.next_eligible, 250);
    T_EQ_INT(st.next_attempt, 1100);		/* next run after release (due already) */
    drv_until(&d, 1100);
    T_EQ_INT(d.rec[1].n, 1);
    T_EQ_INT(d.rec[1].starts[0], 1100);
    T_EQ_INT(qmgr_hold(d.q, 99), -1);
    T_EQ_INT(qmgr_release(d.q, 99, 0), -1);
    qmgr_free(d.q);
}

static void test_force_expire(void)
{
    QMGR_PARAMS p = params(100, 100, 400, 100000);
    DRV     d;

    drv_init(&d, &p, 0);
    add_msg(&d, 1, QMGR_MSG_DEFERRED, 10, 10, 250, 0);
    T_EQ_INT(qmgr_force_expire(d.q, 1), 0);
    T_EQ_INT(qmgr_force_expire(d.q, 2), -1);
    drv_until(&d, 299);
    T_EQ_INT(d.rec[1].expire_at, 0);		/* not before its next pass */
    drv_until(&d, 300);
    T_EQ_INT(d.rec[1].n, 1);
    T_EQ_INT(d.rec[1].expire_at, 300);
    T_EQ_INT(d.rec[1].forced, 1);
    qmgr_free(d.q);
}

static void test_bounce_lifetime_capped(void)
{
    QMGR_PARAMS p = params(100, 100, 400, 1000);
    QMGR   *q;
    QMGR_SIM_INPUT in = sim_input(0, 0, 0);
    QMGR_TIMELINE tl;

    p.bounce_queue_lifetime = 5000;
    q = qmgr_create(&p, 0);
    T_EQ_INT(qmgr_params(q)->bounce_queue_lifetime, 1000);
    qmgr_free(q);
    in.null_sender = 1;
    T_EQ_INT(qmgr_simulate(&p, &in, &tl), 0);
    T_EQ_INT(tl.lifetime, 1000);
    T_CHECK(tl.expiry_at >= 1000 && tl.expiry_at < 1500);
    qmgr_timeline_free(&tl);
}

static void test_min_backoff_wins(void)
{
    QMGR_PARAMS p = params(100, 500, 200, 100000);
    QMGR_SIM_INPUT in = sim_input(0, 0, 0);
    QMGR_TIMELINE tl;
    char    buf[200];
    int     i;

    in.max_attempts = 6;
    T_EQ_INT(qmgr_simulate(&p, &in, &tl), 0);
    for (i = 0; i < tl.nattempts; i++)
	T_EQ_INT(tl.attempts[i].backoff, 500);
    qmgr_timeline_free(&tl);
    qmgr_explain_backoff(&p, 1000, buf, sizeof(buf));
    T_CHECK(strstr(buf, "backoff 500s") != NULL);
    T_CHECK(strstr(buf, "capped at maximal_backoff_time") != NULL);
    T_CHECK(strstr(buf, "raised to minimal_backoff_time") != NULL);
}

static void test_explain_backoff_words(void)
{
    QMGR_PARAMS p = params(900, 900, 3600, 86400);
    char    buf[200];

    qmgr_explain_backoff(&p, 16, buf, sizeof(buf));
    T_EQ_STR(buf, "backoff 900s (age 16s raised to minimal_backoff_time)");
    qmgr_explain_backoff(&p, 1781, buf, sizeof(buf));
    T_EQ_STR(buf, "backoff 1781s (age 1781s)");
    qmgr_explain_backoff(&p, 7181, buf, sizeof(buf));
    T_EQ_STR(buf, "backoff 3600s (age 7181s capped at maximal_backoff_time)");
}

static void test_zero_lifetime(void)
{
    QMGR_PARAMS p = params(300, 300, 4000, 0);
    QMGR_SIM_INPUT in = sim_input(0, 50, 2);
    QMGR_TIMELINE tl;

    T_EQ_INT(qmgr_simulate(&p, &in, &tl), 0);
    T_EQ_INT(tl.nattempts, 1);
    T_CHECK(tl.nattempts == 1 && tl.attempts[0].expired);
    T_EQ_INT(tl.expiry_at, 52);
    qmgr_timeline_free(&tl);
}

static void test_delivered_removes(void)
{
    QMGR_PARAMS p = params(100, 100, 400, 100000);
    DRV     d;
    QMGR_MSGSTATE st;

    drv_init(&d, &p, 0);
    d.hop_ok = 1;
    add_msg(&d, 1, QMGR_MSG_INCOMING, 5, 5, 0, 0);
    drv_until(&d, 10);
    T_EQ_INT(d.rec[1].removed, 1);
    qmgr_msg_state(d.q, 1, &st);
    T_EQ_INT(st.known, 0);
    qmgr_free(d.q);
}

/* Recipients are split per destination and in chunks of the recipient limit. */
static void test_recipient_chunks(void)
{
    QMGR_PARAMS p = params(100, 100, 400, 100000);
    QMGR   *q;
    QMGR_ACTION a[16];
    int     rcpts[7] = {0, 1, 2, 3, 4, 5, 6};
    const char *dests[7] = {"a", "b", "a", "a", "b", "a", "a"};
    QMGR_MSGINFO mi;
    int     n, k, total = 0, nd = 0;

    p.default_destination_recipient_limit = 2;
    q = qmgr_create(&p, 0);
    memset(&mi, 0, sizeof(mi));
    mi.state = QMGR_MSG_INCOMING;
    qmgr_add(q, 1, &mi, 0);
    n = qmgr_run(q, 0, a, 16);
    T_EQ_INT(n, 1);
    qmgr_activated(q, 1, rcpts, dests, 7, 0);
    n = qmgr_run(q, 0, a, 16);
    for (k = 0; k < n; k++) {
	T_EQ_INT(a[k].type, QMGR_ACT_DELIVER);
	T_CHECK(a[k].nrcpt <= 2);
	total += a[k].nrcpt;
	nd++;
    }
    T_EQ_INT(total, 7);
    T_EQ_INT(nd, 4);				/* a: 2+2+1, b: 2 */
    for (k = 0; k < n; k++)
	qmgr_delivered(q, a[k].req, k == 0, NULL, NULL, 1);
    n = qmgr_run(q, 1, a, 16);
    T_EQ_INT(n, 1);
    T_EQ_INT(a[0].type, QMGR_ACT_DONE);
    T_EQ_INT(a[0].disposition, QMGR_DEFER);
    qmgr_free(q);
}

/* ------------------------------------------------------------ scale */

static void test_million_deferred(void)
{
    QMGR_PARAMS p = params(300, 300, 4000, 5 * 86400);
    QMGR   *q;
    QMGR_MSGINFO mi;
    QMGR_ACTION a[8];
    uint32_t k, N = 1000000;
    size_t  own;
    struct timespec t0, t1;
    int     n;

#if !defined(__SANITIZE_ADDRESS__)
    struct mallinfo2 m0 = mallinfo2(), m1;

#endif
    q = qmgr_create(&p, 0);
    memset(&mi, 0, sizeof(mi));
    mi.state = QMGR_MSG_DEFERRED;
    for (k = 0; k < N; k++) {
	mi.create_time = mi.arrival_time = 1000 + k % 5000;
	mi.next_eligible = 100000 + (int64_t) ((k * 2654435761u) % 400000u);
	qmgr_add(q, 0x1000000000ULL + k, &mi, 0);
    }
    own = qmgr_memory(q);
    printf("\n    qmgr_memory: %zu bytes per deferred message", own / N);
    T_CHECK(own / N <= 256);
#if !defined(__SANITIZE_ADDRESS__)
    m1 = mallinfo2();
    printf("; malloc in use: %zu bytes per message",
	   (size_t) ((m1.uordblks + m1.hblkhd) - (m0.uordblks + m0.hblkhd)) / N);
    T_CHECK(((m1.uordblks + m1.hblkhd) - (m0.uordblks + m0.hblkhd)) / N <= 256);
#endif
    /* A run with nothing due: the heap top says so at once. */
    n = qmgr_run(q, 0, a, 8);
    T_EQ_INT(n, 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    n = qmgr_run(q, 300, a, 8);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    T_EQ_INT(n, 0);
    printf("; idle run: %.1f us\n%-50s", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e3, "");
    /* The earliest is 100000 (k = 0): the run at 100200 is the first to take it. */
    T_EQ_INT(qmgr_next_wakeup(q, 300), 100200);
    {
	QMGR_COUNTS c;

	qmgr_counts(q, &c);
	T_EQ_INT(c.deferred, (int) N);
    }
    /* relayq top's snapshot: counters, no walk of the million. */
    {
	QMGR_TOP t;
	QMGR_TOP_DEST td[20];

	clock_gettime(CLOCK_MONOTONIC, &t0);
	qmgr_top(q, 10000, &t);
	qmgr_top_dests(q, td, 20);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("    relayq top snapshot: %.1f us\n%-50s",
	       ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e3, "");
	T_EQ_INT(t.age[2][4] + t.age[2][5], N);	/* ages 4001..9000 s: 66..150 min */
	T_EQ_INT(qmgr_top_check(q), 0);
    }
    /* The run at 100200 takes exactly the messages due by 100201. */
    {
	int     taken = 0, due = 0;

	for (k = 0; k < N; k++)
	    due += 100000 + (int64_t) ((k * 2654435761u) % 400000u) <= 100201;
	p.qmgr_message_active_limit = 20000;
	n = qmgr_run(q, 99900, a, 8);
	T_EQ_INT(n, 0);
	do {
	    n = qmgr_run(q, 100200, a, 8);
	    taken += n;
	} while (n == 8);
	T_EQ_INT(taken, due);
	T_CHECK(due > 100);
    }
    qmgr_free(q);
}

/* ------------------------------------------------- per-recipient policies */

static QMGR_POLICY pol(int64_t bmin, int64_t bmax, int64_t life, int64_t warn)
{
    QMGR_POLICY p;

    memset(&p, 0, sizeof(p));
    p.minimal_backoff_time = bmin;
    p.maximal_backoff_time = bmax;
    p.maximal_queue_lifetime = life;
    p.bounce_queue_lifetime = life;
    p.delay_warning_time = warn;
    return (p);
}

/* Run one message with two recipients (two policies) until its DONE. */
static int one_pass(QMGR *q, int64_t t, const int *pols, QMGR_ACTION *done)
{
    QMGR_ACTION acts[16];
    static const char *dests[2] = {DEST, DEST};
    int     rc[2] = {0, 1}, n, k, got = 0;

    n = qmgr_run(q, t, acts, 16);
    for (k = 0; k < n; k++) {
	if (acts[k].type == QMGR_ACT_ACTIVATE)
	    qmgr_activated_policies(q, acts[k].id, rc, dests, pols, 2, t);
    }
    n = qmgr_run(q, t, acts, 16);
    for (k = 0; k < n; k++)
	if (acts[k].type == QMGR_ACT_DELIVER)
	    qmgr_delivered_rcpts(q, acts[k].req, acts[k].rcpts, acts[k].nrcpt, 0, 0, t);
    n = qmgr_run(q, t, acts, 16);
    for (k = 0; k < n; k++)
	if (acts[k].type == QMGR_ACT_DONE) {
	    *done = acts[k];
	    got = 1;
	}
    return (got);
}

static void test_policies_earliest_backoff_own_expiry(void)
{
    QMGR_PARAMS p = params(60, 300, 4000, 5 * 86400);
    QMGR   *q = qmgr_create(&p, 1000);
    QMGR_POLICY fast = pol(60, 600, 3600, 0);
    QMGR_MSGINFO info;
    QMGR_ACTION d;
    int     pols[2];

    pols[0] = 0;
    pols[1] = qmgr_policy(q, &fast);
    T_EQ_INT(pols[1], 1);
    T_EQ_INT(qmgr_policy(q, &fast), 1);		/* the same values, the same id */
    memset(&info, 0, sizeof(info));
    info.state = QMGR_MSG_INCOMING;
    info.create_time = info.arrival_time = 1000;
    qmgr_add(q, 42, &info, 1000);
    /* The first failure: the default policy says 300 s, the fast one 60 s: the earliest wins. */
    T_CHECK(one_pass(q, 1000, pols, &d));
    T_EQ_INT(d.disposition, QMGR_DEFER);
    T_EQ_INT(d.backoff, 60);
    T_EQ_INT(d.nexpired, 0);
    /* An hour later the fast recipient's lifetime is over: it alone expires. */
    qmgr_flush(q, 1000 + 3600);
    T_CHECK(one_pass(q, 1000 + 3600, pols, &d));
    T_EQ_INT(d.disposition, QMGR_DEFER);
    T_EQ_INT(d.nexpired, 1);
    T_EQ_INT(d.expired[0], 1);
    /* The rest follows the default policy: age 3600 s clamped to 4000 s = 3600 s. */
    T_EQ_INT(d.backoff, 3600);
    qmgr_free(q);
}

static void test_policies_none_is_postfix_exact(void)
{
    QMGR_PARAMS p = params(60, 300, 4000, 5 * 86400);
    QMGR   *q = qmgr_create(&p, 1000);
    QMGR_MSGINFO info;
    QMGR_ACTION d;
    int     pols[2] = {0, 0};

    memset(&info, 0, sizeof(info));
    info.state = QMGR_MSG_INCOMING;
    info.create_time = info.arrival_time = 1000;
    qmgr_add(q, 7, &info, 1000);
    T_CHECK(one_pass(q, 1000, pols, &d));
    T_EQ_INT(d.backoff, 300);
    T_EQ_INT(d.nexpired, 0);
    qmgr_free(q);
}

static void test_policies_simulated(void)
{
    QMGR_PARAMS p = params(60, 300, 4000, 5 * 86400);
    QMGR_POLICY pp[2];
    QMGR_SIM_INPUT in;
    QMGR_TIMELINE tl;

    qmgr_policy_default(&p, &pp[0]);
    pp[1] = pol(60, 120, 1800, 0);
    memset(&in, 0, sizeof(in));
    in.anchor = 0;
    in.arrival = 1;
    in.policies = pp;
    in.npolicies = 2;
    T_EQ_INT(qmgr_simulate(&p, &in, &tl), 0);
    /* The fast group expires at its 30-minute lifetime, the other at 5 days. */
    T_CHECK(tl.group_expiry[1] >= 1 + 1800 && tl.group_expiry[1] < 1 + 1800 + 180);
    T_CHECK(tl.group_expiry[0] >= 1 + 5 * 86400);
    T_EQ_INT(tl.expiry_at, tl.group_expiry[0]);
    /* While both are there, attempts come every 2 minutes (the fast policy's), then every 4000 s. */
    T_EQ_INT(tl.attempts[3].start - tl.attempts[2].start, 120);
    T_CHECK(tl.attempts[tl.nattempts - 1].start - tl.attempts[tl.nattempts - 2].start >= 4000);
    qmgr_timeline_free(&tl);
}

static void test_policy_parse(void)
{
    QMGR_PARAMS p = params(300, 300, 4000, 5 * 86400);
    QMGR_POLICY pp;
    char    err[256];

    T_EQ_INT(qmgr_policy_parse("minimal_backoff_time=60s, maximal_backoff_time=10m, "
			       "maximal_queue_lifetime=6h", &p, &pp, err, sizeof(err)), 0);
    T_EQ_INT(pp.minimal_backoff_time, 60);
    T_EQ_INT(pp.maximal_backoff_time, 600);
    T_EQ_INT(pp.maximal_queue_lifetime, 6 * 3600);
    T_EQ_INT(pp.bounce_queue_lifetime, 6 * 3600);	/* capped, as the configuration's */
    T_EQ_INT(pp.delay_warning_time, 0);
    /* bare numbers take the parameter's own unit */
    T_EQ_INT(qmgr_policy_parse("maximal_queue_lifetime=2 delay_warning_time=4", &p, &pp, err,
			       sizeof(err)), 0);
    T_EQ_INT(pp.maximal_queue_lifetime, 2 * 86400);
    T_EQ_INT(pp.delay_warning_time, 4 * 3600);
    T_EQ_INT(pp.minimal_backoff_time, 300);		/* unnamed: the configuration's */
    T_EQ_INT(qmgr_policy_parse("", &p, &pp, err, sizeof(err)), 0);
    {
	static const char *bad[] = {
	    "minimal_backoff_time", "minimal_backoff_time=", "minimal_backoff_time=-5",
	    "minimal_backoff_time=5x", "minimal_backoff_time=5mm", "queue_run_delay=5s",
	    "mail_owner=root", "=5", "minimal_backoff_time=0", "maximal_backoff_time=99999999999999999999",
	    "maximal_queue_lifetime=9223372036854775807w", "minimal_backoff_time=1s;rm",
	};

	for (size_t k = 0; k < ARRAY_LEN(bad); k++) {
	    err[0] = 0;
	    if (qmgr_policy_parse(bad[k], &p, &pp, err, sizeof(err)) != -1)
		T_FAILF("accepted: %s", bad[k]);
	    T_CHECK(err[0] != 0);
	}
    }
}

int     main(void)
{
    T_RUN(test_trace_t1);
    T_RUN(test_trace_t2);
    T_RUN(test_trace_t2_sim_null_sender);
    T_RUN(test_trace_t4);
    T_RUN(test_seed_timeline);
    T_RUN(test_first_retry_phase);
    T_RUN(test_trace_t3_dead_destination);
    T_RUN(test_dead_destination_concurrent);
    T_RUN(test_flush_revives);
    T_RUN(test_single_message_never_dead);
    T_RUN(test_active_limit);
    T_RUN(test_active_limit_release);
    T_RUN(test_hold_release_keeps_time);
    T_RUN(test_force_expire);
    T_RUN(test_bounce_lifetime_capped);
    T_RUN(test_min_backoff_wins);
    T_RUN(test_explain_backoff_words);
    T_RUN(test_zero_lifetime);
    T_RUN(test_delivered_removes);
    T_RUN(test_recipient_chunks);
    T_RUN(test_policies_earliest_backoff_own_expiry);
    T_RUN(test_policies_none_is_postfix_exact);
    T_RUN(test_policies_simulated);
    T_RUN(test_policy_parse);
    T_RUN(test_top_counters);
    T_RUN(test_top_ages);
    T_RUN(test_million_deferred);
    T_RUN(test_metrics_queries);
    T_RUN(test_flush_steps);
    return (t_done());
}
