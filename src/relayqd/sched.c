/*
 * sched - carries out the scheduler's decisions.
 *
 * qmgr (pure) says what to do; this file does it: loads a message when it
 * becomes active, routes its recipients, hands deliveries to smtp, logs the
 * suspended deferrals, and at the end of a pass writes the outcome to the
 * queue in one batch (recipient states, next eligible time, attempt
 * history, and any notice to the sender, so that a notice is durable
 * exactly when the original is updated or removed).  Results go back to
 * qmgr; nothing here decides when to retry.
 *
 * Its state is its own (struct SCHED, opaque outside this file): the rest
 * of the daemon uses the functions of sched.h.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>

#include "util/util.h"
#include "log/log.h"
#include "bounce/bounce.h"
#include "cleanup/cleanup.h"
#include "metrics/metrics.h"
#include "explain/explain.h"
#include "relayqd/sched.h"
#include "relayqd/retry_policy.h"

typedef struct ACTIVE ACTIVE;			/* a message in the active set */
typedef struct PASS PASS;			/* the outcome of a pass, until it is recorded */

/* sched_after_commits(): run once the pass batches submitted before have committed. */
typedef struct WAITER {
    uint64_t target;			/* commits_done at which it runs */
    void    (*fn) (void *ctx);
    void   *ctx;
    struct WAITER *next;
} WAITER;

struct SCHED {
    struct event_base *base;
    const CONFIG *cf;
    QUEUE  *queue;
    SMTP   *smtp;
    QMGR   *qmgr;
    int     stopping;
    struct event *qmgr_timer;
    struct event *kick_ev;
    int     kick_scheduled;
    struct event *flush_ev;		/* flush (all) in steps */
    long    flush_left;
    ACTIVE **active;				/* hash by id */
    size_t  active_size;
    int     nactive;
    int     inflight;			/* deliveries under way */
    int     pending_commits;		/* pass batches submitted, not yet answered */
    uint64_t commits_submitted, commits_done;
    WAITER *waiters, **waiters_tail;
    struct EDIT_LATER *laters;		/* edits' next turns (edit_later) */
    PASS   *suspended;			/* passes waiting to be recorded (full disk) */
    int     nsuspended;
    const char *test_pass_fault;	/* RELAYQ_TEST_FAULT, see sched_start() */
    /* statistics for metrics */
    uint64_t n_sent, n_deferred, n_bounced, n_expired;
    uint64_t n_received;		/* messages that entered the queue (relayq top) */
    METRICS_HIST attempt_hist;
    METRICS_LCOUNTER dest_deferred;		/* deferred recipients by destination */
};

struct ACTIVE {
    QMGR_ID id;
    QMSG   *msg;				/* loaded with content */
    int64_t active_us;
    int    *bounced;			/* recipients that failed for good in this pass */
    int     nbounced;
    int    *relayed;			/* NOTIFY=SUCCESS recipients relayed to a hop without DSN */
    int     nrelayed;
    QATTEMPT *attempts;			/* this pass's attempts, for the history */
    int     nattempts;
    int     inflight;			/* deliveries under way */
    ACTIVE *next;				/* hash chain */
};

typedef struct DELIVERY {
    SCHED  *s;
    ACTIVE *a;
    uint64_t req;
    int    *rcpts;
    int     nrcpt;
    char   *dest;
} DELIVERY;

/* An action copied out of qmgr (its pointers live only until the next call). */
typedef struct ACT {
    QMGR_ACTION a;
    char   *dest, *dsn, *reason;
    int    *rcpts;
    int    *expired;
} ACT;



/* ---- the active set: a small hash by id ---- */

static ACTIVE *active_find(SCHED *s, QMGR_ID id)
{
    if (s->active_size == 0)
	return (NULL);
    for (ACTIVE *a = s->active[id % s->active_size]; a; a = a->next)
	if (a->id == id)
	    return (a);
    return (NULL);
}

static void active_insert(SCHED *s, ACTIVE *a)
{
    if (s->nactive + 1 > (int) s->active_size) {
	size_t  nsize = s->active_size ? s->active_size * 2 : 1024;
	ACTIVE **nt = xcalloc(nsize, sizeof(ACTIVE *));

	for (size_t i = 0; i < s->active_size; i++) {
	    ACTIVE *n;

	    for (ACTIVE *p = s->active[i]; p; p = n) {
		n = p->next;
		p->next = nt[p->id % nsize];
		nt[p->id % nsize] = p;
	    }
	}
	free(s->active);
	s->active = nt;
	s->active_size = nsize;
    }
    a->next = s->active[a->id % s->active_size];
    s->active[a->id % s->active_size] = a;
    s->nactive++;
}

static void active_free(SCHED *s, ACTIVE *a)
{
    ACTIVE **pp = &s->active[a->id % s->active_size];

    while (*pp && *pp != a)
	pp = &(*pp)->next;
    if (*pp) {
	*pp = a->next;
	s->nactive--;
    }
    qmsg_free(a->msg);
    free(a->bounced);
    free(a->relayed);
    qattempt_free_array(a->attempts, a->nattempts);
    free(a);
}

/* ---- helpers ---- */

static void info_from_msg(const QMSG *m, QMGR_MSGINFO *info)
{
    memset(info, 0, sizeof(*info));
    info->state = m->state == QSTATE_HOLD ? QMGR_MSG_HOLD
	: m->state == QSTATE_DEFERRED ? QMGR_MSG_DEFERRED : QMGR_MSG_INCOMING;
    info->create_time = m->create_time;
    info->arrival_time = m->arrival_us / 1000000;
    info->next_eligible = m->next_eligible;
    info->null_sender = m->sender == NULL || m->sender[0] == 0;
    info->warned = (m->flags & QFLAG_WARNED) != 0;
    info->force_expire = (m->flags & QFLAG_FORCE_EXPIRE) != 0;
}

static void set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = xstrdup(src);
}

static void attempt_copy(QATTEMPT *dst, const QATTEMPT *src)
{
    *dst = *src;
    dst->host = xstrdup(src->host);
    dst->addr = xstrdup(src->addr);
    dst->text = xstrdup(src->text);
}

static void kick_cb(evutil_socket_t fd, short what, void *ctx);
static void timer_cb(evutil_socket_t fd, short what, void *ctx);

/* ---- loading the queue at start ---- */

static int load_one(void *ctx, const QMSG *m)
{
    SCHED  *s = ctx;
    QMGR_MSGINFO info;

    if (m->state == QSTATE_CORRUPT)
	return (0);
    info_from_msg(m, &info);
    qmgr_add(s->qmgr, m->seq, &info, (int64_t) time_sec());
    return (0);
}

/*
 * Tests only: RELAYQ_TEST_FAULT arms a queue fault (queue_test_fault) for
 * the batch of the first pass that ends: "fail-pass" makes it fail,
 * "crash-before-pass" / "crash-after-pass" kill the process just before /
 * just after its COMMIT (the writer thread _exit()s), so that the tests can
 * restart the daemon at every step of deliver, defer and bounce.
 */

int     sched_start(SCHED *s)
{
    const char *fault = getenv("RELAYQ_TEST_FAULT");
    int64_t t0 = time_mono_us();
    QMGR_COUNTS qc;
    int     ret;

    if (fault && strcmp(fault, "fail-pass") == 0)
	s->test_pass_fault = "fail-batch";
    else if (fault && strcmp(fault, "crash-before-pass") == 0)
	s->test_pass_fault = "before-commit";
    else if (fault && strcmp(fault, "crash-after-pass") == 0)
	s->test_pass_fault = "after-commit";
    if ((ret = queue_walk(s->queue, 0, load_one, s)) < 0)
	log_warn("qmgr", "could not read the whole queue at start");
    /* For operators and bench/scale-deferred: how long the schedule took to rebuild. */
    qmgr_counts(s->qmgr, &qc);
    log_msg("qmgr", "queue loaded: %d messages in %.2f s, scheduler memory %zu bytes",
	    qc.incoming + qc.active + qc.deferred + qc.hold,
	    (double) (time_mono_us() - t0) / 1e6, qmgr_memory(s->qmgr));
    sched_kick(s);
    return (ret);
}

SCHED *sched_create(struct event_base *base, const CONFIG *cf, QUEUE *queue, SMTP *smtp)
{
    SCHED  *s = xcalloc(1, sizeof(*s));
    QMGR_PARAMS p;

    s->base = base;
    s->cf = cf;
    s->queue = queue;
    s->smtp = smtp;
    s->waiters_tail = &s->waiters;
    explain_params(cf, &p);
    if (p.bounce_queue_lifetime > p.maximal_queue_lifetime)
	log_warn("qmgr", "bounce_queue_lifetime is larger than maximal_queue_lifetime - using %llds",
		 (long long) p.maximal_queue_lifetime);
    s->qmgr = qmgr_create(&p, (int64_t) time_sec());
    s->kick_ev = event_new(base, -1, 0, kick_cb, s);
    s->qmgr_timer = evtimer_new(base, timer_cb, s);
    return (s);
}

void    sched_reconfigure(SCHED *s, const CONFIG *cf)
{
    QMGR_PARAMS p;

    explain_params(cf, &p);
    s->cf = cf;
    qmgr_reload(s->qmgr, &p, (int64_t) time_sec());
    sched_kick(s);
}

void    sched_stop(SCHED *s)
{
    s->stopping = 1;
}

/*
 * flush (all) in steps of SCHED_FLUSH_STEP messages per turn of the loop:
 * taking a million messages out of qmgr's heap at once held the loop for
 * half a second.  At most as many as were deferred at the request, so
 * mail deferred again meanwhile is not taken round and round.  Deliveries
 * start with the first step.
 */
#define SCHED_FLUSH_STEP 10000

static void flush_step_cb(evutil_socket_t fd, short what, void *ctx)
{
    SCHED  *s = ctx;
    uint32_t step = s->flush_left < SCHED_FLUSH_STEP ? (uint32_t) s->flush_left : SCHED_FLUSH_STEP;
    uint32_t left = qmgr_flush_some(s->qmgr, (int64_t) time_sec(), step);

    s->flush_left -= step;
    if (left > 0 && s->flush_left > 0) {
	struct timeval zero = {0, 0};

	event_add(s->flush_ev, &zero);
    } else {
	s->flush_left = 0;
    }
    sched_kick(s);
}

void    sched_flush(SCHED *s, const uint64_t *ids, int n)
{
    int64_t now = (int64_t) time_sec();
    QMGR_COUNTS c;

    if (n >= 0) {
	qmgr_flush_ids(s->qmgr, (const QMGR_ID *) ids, n, now);
	sched_kick(s);
	return;
    }
    qmgr_flush_start(s->qmgr);
    qmgr_counts(s->qmgr, &c);
    s->flush_left = c.deferred;
    if (s->flush_ev == NULL)
	s->flush_ev = event_new(s->base, -1, 0, flush_step_cb, s);
    flush_step_cb(-1, 0, s);
}

const QMGR_PARAMS *sched_params(const SCHED *s)
{
    return (qmgr_params(s->qmgr));
}

int64_t sched_anchor(const SCHED *s)
{
    return (qmgr_anchor(s->qmgr));
}

static void sched_add(SCHED *s, const QMSG *msg);

void    sched_add_incoming(SCHED *s, const QMSG *msg)
{
    s->n_received++;
    sched_add(s, msg);
}

static void sched_add(SCHED *s, const QMSG *msg)
{
    QMGR_MSGINFO info;

    info_from_msg(msg, &info);
    /* A message held on arrival (a milter's quarantine) waits for release. */
    info.state = msg->state == QSTATE_HOLD ? QMGR_MSG_HOLD : QMGR_MSG_INCOMING;
    qmgr_add(s->qmgr, msg->seq, &info, (int64_t) time_sec());
    sched_kick(s);
}

/* ---- ACTIVATE ---- */

static void commit_submitted(SCHED *s)
{
    s->pending_commits++;
    s->commits_submitted++;
}

/* A pass batch has committed (or failed): run the waiters it was the last one for. */
static void commit_answered(SCHED *s)
{
    s->pending_commits--;
    s->commits_done++;
    while (s->waiters && s->waiters->target <= s->commits_done) {
	WAITER *w = s->waiters;

	if ((s->waiters = w->next) == NULL)
	    s->waiters_tail = &s->waiters;
	w->fn(w->ctx);
	free(w);
    }
}

void    sched_after_commits(SCHED *s, void (*fn) (void *ctx), void *ctx)
{
    WAITER *w;

    if (s->commits_done == s->commits_submitted) {
	fn(ctx);
	return;
    }
    w = xcalloc(1, sizeof(*w));
    w->target = s->commits_submitted;
    w->fn = fn;
    w->ctx = ctx;
    *s->waiters_tail = w;
    s->waiters_tail = &w->next;
}

static void corrupt_committed(void *ctx, int ok, const char *why)
{
    SCHED  *s = ctx;

    commit_answered(s);
    if (!ok)
	log_warn("qmgr", "cannot move a corrupt message to the corrupt state: %s", why);
}

/*
 * The message was taken for delivery but could not be loaded.  Its
 * content fails its length or checksum (or is missing): it goes to the
 * corrupt state, as queue_recover() would do at start, with one warning,
 * so that it is neither delivered damaged, nor retried for ever, nor left
 * in mailq as if it were waiting.  A read error of the store itself is no
 * verdict on the message: it is retried after the minimal backoff.  A
 * message whose record is gone (deleted) is simply forgotten.
 */
static void activate_failed(SCHED *s, QMGR_ID id, int status, const char *why, int64_t now)
{
    char    why2[256];
    QMSG   *m;

    qmgr_remove(s->qmgr, id);			/* leaves the active set */
    if (queue_load(s->queue, id, 0, &m, why2, sizeof(why2)) != QUEUE_OK) {
	log_warn("qmgr", "message with queue sequence %llu could not be read; skipped: %s",
		 (unsigned long long) id, status == QUEUE_GONE ? why2 : why);
	return;
    }
    if (status == QUEUE_CORRUPT) {
	QBATCH *b = queue_batch(s->queue);

	log_warn("qmgr", "%s: corrupt queue record moved to the corrupt state: %s", m->qid, why);
	m->state = QSTATE_CORRUPT;
	queue_batch_update(b, m);
	commit_submitted(s);
	queue_batch_submit(b, corrupt_committed, s);
    } else {
	QMGR_MSGINFO info;

	log_warn("qmgr", "%s: could not be read (%s); will be retried", m->qid, why);
	info_from_msg(m, &info);
	info.state = QMGR_MSG_DEFERRED;
	info.next_eligible = now + qmgr_params(s->qmgr)->minimal_backoff_time;
	qmgr_add(s->qmgr, id, &info, now);
    }
    qmsg_free(m);
}

static void do_activate(SCHED *s, QMGR_ID id, int64_t now)
{
    char    lwhy[256];
    QMSG   *m;
    int     status = queue_load(s->queue, id, 1, &m, lwhy, sizeof(lwhy));

    if (status != QUEUE_OK) {
	activate_failed(s, id, status, lwhy, now);
	return;
    }
    ACTIVE *a = xcalloc(1, sizeof(*a));

    a->id = id;
    a->msg = m;
    a->active_us = time_now_us();
    active_insert(s, a);
    log_msg("qmgr", "%s: from=<%s>, size=%zu, nrcpt=%d (queue active)",
	    m->qid, m->sender ? m->sender : "", m->size, m->nrcpt);

    int    *idx = xcalloc((size_t) m->nrcpt, sizeof(int));
    char  **keys = xcalloc((size_t) m->nrcpt, sizeof(char *));
    int    *pols = retry_policy_enabled(s->cf) ? xcalloc((size_t) m->nrcpt, sizeof(int)) : NULL;
    int     n = 0;

    for (int i = 0; i < m->nrcpt; i++) {
	SMTP_ROUTE r;
	char    err[256];

	if (m->rcpts[i].state != QRCPT_PENDING)
	    continue;
	idx[n] = i;
	if (m->filter && *m->filter) {
	    /* content_filter / FILTER: every recipient goes to the filter. */
	    keys[n] = xasprintf("smtp:%s", m->filter + 5);
	} else if (smtp_route_from(s->cf, m->sender, m->rcpts[i].addr, &r, err, sizeof(err)) < 0) {
	    log_warn("qmgr", "%s: %s", m->qid, err);
	    keys[n] = xasprintf("defer:%s", err);
	} else {
	    keys[n] = xstrdup(r.key);
	}
	if (pols) {
	    /* relayq_retry_policy_maps: the recipient's own schedule (0: the configuration's). */
	    char    vbuf[512];
	    const char *v = retry_policy_value(s->cf, m->rcpts[i].addr, vbuf, sizeof(vbuf));
	    QMGR_POLICY pol;
	    char    why[256];

	    if (v && qmgr_policy_parse(v, qmgr_params(s->qmgr), &pol, why, sizeof(why)) == 0)
		pols[n] = qmgr_policy(s->qmgr, &pol);
	    else if (v)
		log_warn("qmgr", "%s: relayq_retry_policy_maps value for <%s>: %s; the configuration's "
			 "schedule applies", m->qid, m->rcpts[i].addr, why);
	}
	n++;
    }
    qmgr_activated_policies(s->qmgr, id, idx, (const char *const *) keys, pols, n, now);
    for (int i = 0; i < n; i++)
	free(keys[i]);
    free(keys);
    free(idx);
    free(pols);
}

/* ---- DELIVER ---- */

static void delivery_done(void *ctx, const SMTP_RESULT *res)
{
    DELIVERY *dl = ctx;
    SCHED  *s = dl->s;
    ACTIVE *a = dl->a;
    QMSG   *m = a->msg;
    int     ndeferred = 0;
    int    *deferred = xcalloc((size_t) res->nrcpt + 1, sizeof(int));

    for (int i = 0; i < res->nrcpt; i++) {
	const SMTP_RCPT_RESULT *r = &res->rcpts[i];
	QRCPT  *rc;

	if (r->index < 0 || r->index >= m->nrcpt)
	    continue;
	rc = &m->rcpts[r->index];
	snprintf(rc->dsn, sizeof(rc->dsn), "%s", r->dsn);
	set_str(&rc->remote_mta, r->remote_mta);
	set_str(&rc->diag, r->diag);
	switch (r->status) {
	case SMTP_SENT:
	    rc->state = QRCPT_DONE;
	    set_str(&rc->reason, NULL);
	    s->n_sent++;
	    /* The next hop cannot report success: say "relayed" ourselves, as Postfix. */
	    if (r->no_dsn && (rc->notify & QNOTIFY_SUCCESS)) {
		set_str(&rc->reason, r->text);
		a->relayed = xrealloc(a->relayed, sizeof(int) * (size_t) (a->nrelayed + 1));
		a->relayed[a->nrelayed++] = r->index;
	    }
	    break;
	case SMTP_BOUNCED:
	    set_str(&rc->reason, r->text);
	    a->bounced = xrealloc(a->bounced, sizeof(int) * (size_t) (a->nbounced + 1));
	    a->bounced[a->nbounced++] = r->index;
	    s->n_bounced++;
	    break;
	default:
	    set_str(&rc->reason, r->text);
	    deferred[ndeferred++] = r->index;
	    s->n_deferred++;
	    metrics_lc_add(&s->dest_deferred, dl->dest, 1);
	    break;
	}
    }
    if (res->attempt.end_us > res->attempt.start_us)
	metrics_hist_observe(&s->attempt_hist, (double) (res->attempt.end_us - res->attempt.start_us) / 1e6);
    a->attempts = xrealloc(a->attempts, sizeof(QATTEMPT) * (size_t) (a->nattempts + 1));
    attempt_copy(&a->attempts[a->nattempts++], &res->attempt);
    a->inflight--;
    s->inflight--;
    qmgr_delivered_rcpts(s->qmgr, dl->req, deferred, ndeferred,
			 res->hop_failed ? res->hop_dsn : NULL,
			 res->hop_failed ? res->hop_reason : NULL, (int64_t) time_sec());
    free(deferred);
    free(dl->rcpts);
    free(dl->dest);
    free(dl);
    sched_kick(s);
}

/* A recipient whose route could not be looked up: deferred without delivery. */
static void deliver_config_error(SCHED *s, ACTIVE *a, const ACT *act)
{
    QMSG   *m = a->msg;
    const char *text = act->dest + strlen("defer:");
    LOG_STATS st = {.arrival_us = m->arrival_us, .active_us = a->active_us};

    for (int i = 0; i < act->a.nrcpt; i++) {
	QRCPT  *rc = &m->rcpts[act->rcpts[i]];

	snprintf(rc->dsn, sizeof(rc->dsn), "4.3.0");
	set_str(&rc->reason, text);
	log_delivery("error", m->qid, &(LOG_RCPT) {rc->addr, rc->orcpt}, "none", &st, "4.3.0",
		     "deferred", text);
    }
    qmgr_delivered(s->qmgr, act->a.req, act->a.nrcpt, NULL, NULL, (int64_t) time_sec());
}

static void do_deliver(SCHED *s, const ACT *act)
{
    ACTIVE *a = active_find(s, act->a.id);

    if (a == NULL) {
	log_warn("qmgr", "delivery request for unknown message %llu", (unsigned long long) act->a.id);
	qmgr_delivered(s->qmgr, act->a.req, act->a.nrcpt, NULL, NULL, (int64_t) time_sec());
	return;
    }
    if (strncmp(act->dest, "defer:", 6) == 0) {
	deliver_config_error(s, a, act);
	return;
    }
    DELIVERY *dl = xcalloc(1, sizeof(*dl));

    dl->s = s;
    dl->a = a;
    dl->req = act->a.req;
    dl->nrcpt = act->a.nrcpt;
    dl->rcpts = xmalloc(sizeof(int) * (size_t) (dl->nrcpt ? dl->nrcpt : 1));
    memcpy(dl->rcpts, act->rcpts, sizeof(int) * (size_t) dl->nrcpt);
    dl->dest = xstrdup(act->dest);
    a->inflight++;
    s->inflight++;

    SMTP_REQUEST req;

    memset(&req, 0, sizeof(req));
    req.msg = a->msg;
    req.rcpts = dl->rcpts;
    req.nrcpt = dl->nrcpt;
    req.dest = dl->dest;
    req.active_us = a->active_us;
    smtp_deliver(s->smtp, &req, delivery_done, dl);
}

/* ---- SUSPEND: the destination is dead; defer without connecting ---- */

static void do_suspend(SCHED *s, const ACT *act)
{
    ACTIVE *a = active_find(s, act->a.id);

    if (a == NULL)
	return;
    QMSG   *m = a->msg;
    LOG_STATS st = {.arrival_us = m->arrival_us, .active_us = a->active_us, .done_us = time_now_us()};

    for (int i = 0; i < act->a.nrcpt; i++) {
	QRCPT  *rc = &m->rcpts[act->rcpts[i]];

	snprintf(rc->dsn, sizeof(rc->dsn), "%s", act->dsn ? act->dsn : "4.4.1");
	set_str(&rc->reason, act->reason);
	s->n_deferred++;
	metrics_lc_add(&s->dest_deferred, act->dest, 1);
	log_delivery("error", m->qid, &(LOG_RCPT) {rc->addr, rc->orcpt}, "none", &st, rc->dsn,
		     "deferred", act->reason);
    }
}

/* ---- DONE: the end of a pass ---- */

/*
 * The outcome of a pass, kept until it is recorded.  When its batch
 * cannot be committed (a full disk), the message is NOT given back to
 * qmgr: it was delivered, bounced or deferred, and delivering it again
 * because the record failed would duplicate it at every retry.  The same
 * batch (same notices, same queue IDs) is submitted again with a growing
 * delay until it commits; meanwhile the message waits, suspended.
 */
struct PASS {
    SCHED  *s;
    char    qid[16];
    char   *sender;
    QMGR_ID id;
    int     disposition;
    int     forced;
    QMSG   *msg;				/* the updated message (DEFER) */
    QATTEMPT *attempts;			/* this pass's attempts (DEFER) */
    int     nattempts;
    QMSG  **notices;
    const char **notice_kind;
    int     nnotices;
    int     retries;			/* failed commits so far */
    struct event *retry_ev;
    PASS   *next;				/* s->suspended */
};


int     sched_suspended(const SCHED *s)
{
    return (s->nsuspended);
}

/* Build a notice, give it an ID, run it through cleanup, keep it for the batch. */
static void add_notice(SCHED *s, PASS *p, const QMSG *orig,
		               const int *rcpts, int n, int kind, const char *what, int64_t now)
{
    QMSG   *nt = bounce_build(s->cf, orig, rcpts, n, kind, now);

    if (nt == NULL)
	return;
    queue_assign_id(s->queue, nt);
    /* The notice's own Received: line is left out, as relayq's own message. */
    if (nt->message_id)
	log_msg("cleanup", "%s: message-id=%s", nt->qid, nt->message_id);
    p->notices = xrealloc(p->notices, sizeof(QMSG *) * (size_t) (p->nnotices + 1));
    p->notice_kind = xrealloc(p->notice_kind, sizeof(char *) * (size_t) (p->nnotices + 1));
    p->notices[p->nnotices] = nt;
    p->notice_kind[p->nnotices] = what;
    p->nnotices++;
}

/* The pass's one batch: its notices, and the update or the removal. */
static QBATCH *pass_batch(SCHED *s, const PASS *p)
{
    QBATCH *b = queue_batch(s->queue);

    for (int i = 0; i < p->nnotices; i++)
	queue_batch_insert(b, p->notices[i]);
    if (p->disposition == QMGR_DEFER) {
	queue_batch_update(b, p->msg);
	for (int i = 0; i < p->nattempts; i++)
	    queue_batch_attempt(b, p->msg->seq, &p->attempts[i]);
    } else {
	queue_batch_delete(b, p->id);
    }
    return (b);
}

static void pass_free(PASS *p)
{
    if (p->retry_ev)
	event_free(p->retry_ev);
    for (int i = 0; i < p->nnotices; i++)
	qmsg_free(p->notices[i]);
    free(p->notices);
    free(p->notice_kind);
    qmsg_free(p->msg);
    qattempt_free_array(p->attempts, p->nattempts);
    free(p->sender);
    free(p);
}

static void pass_unlink(SCHED *s, PASS *p)
{
    for (PASS **pp = &s->suspended; *pp; pp = &(*pp)->next)
	if (*pp == p) {
	    *pp = p->next;
	    s->nsuspended--;
	    break;
	}
}

static void pass_committed(void *ctx, int ok, const char *why);

static void pass_retry_cb(evutil_socket_t fd, short what, void *ctx)
{
    PASS   *p = ctx;
    SCHED  *s = p->s;

    pass_unlink(s, p);
    commit_submitted(s);
    queue_batch_submit(pass_batch(s, p), pass_committed, p);
}

/* The update failed: suspend the message (it stays out of qmgr) and retry the same batch. */
static void pass_suspend(SCHED *s, PASS *p, const char *why)
{
    int     delay = p->retries < 5 ? 1 << p->retries : 30;	/* 1 2 4 8 16 30 30 ... s */
    struct timeval tv = {delay, 0};

    if (p->disposition == QMGR_DEFER) {
	QMSG   *m;

	/* Removed meanwhile (relayq delete)?  A store that cannot be read now is no answer. */
	if (queue_load(s->queue, p->id, 0, &m, NULL, 0) == QUEUE_GONE) {
	    log_warn("qmgr", "%s: queue update failed and the message is gone; nothing to record", p->qid);
	    pass_free(p);
	    return;
	}
	qmsg_free(m);
    }
    /* qmgr still holds a deferred message: it must not take it again before this is recorded. */
    if (p->disposition == QMGR_DEFER && s->qmgr)
	qmgr_remove(s->qmgr, p->id);
    if (p->retries++ == 0)
	log_warn("qmgr", "%s: queue update failed (%s); delivery of this message is suspended"
		 " until the update is recorded, which is retried", p->qid, why);
    if (p->retry_ev == NULL)
	p->retry_ev = evtimer_new(s->base, pass_retry_cb, p);
    evtimer_add(p->retry_ev, &tv);
    p->next = s->suspended;
    s->suspended = p;
    s->nsuspended++;
}

static void pass_committed(void *ctx, int ok, const char *why)
{
    PASS   *p = ctx;
    SCHED  *s = p->s;

    commit_answered(s);
    if (ok) {
	if (p->retries > 0)
	    log_msg("qmgr", "%s: queue update recorded after %d failed attempt%s; delivery resumes",
		    p->qid, p->retries, p->retries == 1 ? "" : "s");
	for (int i = 0; i < p->nnotices; i++) {
	    log_msg("bounce", "%s: %s: %s", p->qid, p->notice_kind[i], p->notices[i]->qid);
	    sched_add_incoming(s, p->notices[i]);
	}
	if (p->disposition != QMGR_DEFER)
	    log_msg("qmgr", "%s: removed", p->qid);
	else if (s->qmgr && !s->stopping && p->retries > 0) {
	    QMGR_MSGINFO info;

	    /* qmgr forgot it while it was suspended: give it back, deferred. */
	    info_from_msg(p->msg, &info);
	    qmgr_add(s->qmgr, p->id, &info, (int64_t) time_sec());
	}
    } else if (!s->stopping) {
	pass_suspend(s, p, why);
	sched_kick(s);
	return;
    } else {
	log_warn("qmgr", "%s: queue update failed (%s) while stopping; the message stays queued"
		 " as it was and may be delivered again", p->qid, why);
    }
    pass_free(p);
    sched_kick(s);
}

static void do_done(SCHED *s, const ACT *act, int64_t now)
{
    ACTIVE *a = active_find(s, act->a.id);

    if (a == NULL)
	return;
    QMSG   *m = a->msg;
    PASS   *p = xcalloc(1, sizeof(*p));

    p->s = s;
    p->id = a->id;
    snprintf(p->qid, sizeof(p->qid), "%s", m->qid);
    p->sender = xstrdup(m->sender ? m->sender : "");
    p->disposition = act->a.disposition;

    /* E3.1: a notice for the recipients that failed for good in this pass. */
    if (a->nbounced > 0) {
	add_notice(s, p, m, a->bounced, a->nbounced, BOUNCE_FAILED,
		   "sender non-delivery notification", now);
	for (int i = 0; i < a->nbounced; i++)
	    m->rcpts[a->bounced[i]].state = QRCPT_BOUNCED;
    }
    if (a->nrelayed > 0)
	add_notice(s, p, m, a->relayed, a->nrelayed, BOUNCE_RELAYED,
		   "sender delivery status notification", now);
    /* Recipients whose own retry policy's lifetime is over: returned now, the rest stay. */
    if (act->a.disposition == QMGR_DEFER && act->a.nexpired > 0) {
	int    *exp = xcalloc((size_t) act->a.nexpired, sizeof(int));
	int     nexp = 0;

	for (int k = 0; k < act->a.nexpired; k++) {
	    int     r = act->expired[k];

	    if (r < 0 || r >= m->nrcpt || m->rcpts[r].state != QRCPT_PENDING)
		continue;
	    log_msg("qmgr", "%s: to=<%s>, status=expired, returned to sender "
		    "(relayq_retry_policy_maps lifetime)", m->qid, m->rcpts[r].addr);
	    exp[nexp++] = r;
	}
	if (nexp > 0) {
	    add_notice(s, p, m, exp, nexp, BOUNCE_FAILED, "sender non-delivery notification", now);
	    for (int k = 0; k < nexp; k++)
		m->rcpts[exp[k]].state = QRCPT_BOUNCED;
	    s->n_expired++;
	}
	free(exp);
    }
    int    *pending = xcalloc((size_t) m->nrcpt + 1, sizeof(int));
    int     npending = 0;

    for (int i = 0; i < m->nrcpt; i++)
	if (m->rcpts[i].state == QRCPT_PENDING)
	    pending[npending++] = i;

    switch (act->a.disposition) {
    case QMGR_REMOVE:
	break;
    case QMGR_EXPIRE:
	log_msg("qmgr", "%s: from=<%s>, status=%s, returned to sender",
		m->qid, m->sender ? m->sender : "", act->a.forced ? "force-expired" : "expired");
	s->n_expired++;
	if (npending > 0)
	    add_notice(s, p, m, pending, npending, BOUNCE_FAILED,
		       "sender non-delivery notification", now);
	break;
    default:					/* QMGR_DEFER */
	if (act->a.warn && npending > 0) {
	    add_notice(s, p, m, pending, npending, BOUNCE_DELAYED,
		       "sender delay notification", now);
	}
	if (act->a.warn)
	    m->flags |= QFLAG_WARNED;
	m->state = QSTATE_DEFERRED;
	m->next_eligible = act->a.next_eligible;
	m->attempts++;
	break;
    }
    /* The pass keeps what its batch needs, for as long as it is not recorded. */
    p->msg = a->msg;
    a->msg = NULL;
    p->attempts = a->attempts;
    p->nattempts = a->nattempts;
    a->attempts = NULL;
    a->nattempts = 0;
    free(pending);
    if (s->test_pass_fault) {
	queue_test_fault(s->queue, s->test_pass_fault);
	s->test_pass_fault = NULL;
    }
    commit_submitted(s);
    queue_batch_submit(pass_batch(s, p), pass_committed, p);
    active_free(s, a);
}

/* ---- the run loop ---- */

static void act_copy(ACT *dst, const QMGR_ACTION *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->a = *src;
    dst->dest = xstrdup(src->dest);
    dst->dsn = xstrdup(src->dsn);
    dst->reason = xstrdup(src->reason);
    if (src->nrcpt > 0 && src->rcpts) {
	dst->rcpts = xmalloc(sizeof(int) * (size_t) src->nrcpt);
	memcpy(dst->rcpts, src->rcpts, sizeof(int) * (size_t) src->nrcpt);
    }
    if (src->nexpired > 0 && src->expired) {
	dst->expired = xmalloc(sizeof(int) * (size_t) src->nexpired);
	memcpy(dst->expired, src->expired, sizeof(int) * (size_t) src->nexpired);
    }
    dst->a.expired = NULL;
}

static void act_free(ACT *a)
{
    free(a->dest);
    free(a->dsn);
    free(a->reason);
    free(a->rcpts);
    free(a->expired);
}

#define ACT_BATCH 64
#define ACT_TURN 256				/* actions per turn of the loop, at most */

static void sched_arm(SCHED *s, int64_t now)
{
    int64_t wake = qmgr_next_wakeup(s->qmgr, now);

    if (wake == INT64_MAX) {
	evtimer_del(s->qmgr_timer);
	return;
    }
    int64_t us = wake * 1000000 - time_now_us();

    if (us < 0)
	us = 0;
    struct timeval tv = {(time_t) (us / 1000000), (suseconds_t) (us % 1000000)};

    evtimer_add(s->qmgr_timer, &tv);
}

static void sched_run(SCHED *s)
{
    QMGR_ACTION acts[ACT_BATCH];
    ACT     copy[ACT_BATCH];
    int64_t now = (int64_t) time_sec();
    int     n, rounds = 0;

    s->kick_scheduled = 0;
    do {
	/*
	 * At most ACT_TURN actions per turn of the loop: after a flush of a
	 * large queue qmgr has thousands of activations ready (each loads its
	 * message), and SMTP sessions must not wait for all of them.  The rest
	 * runs at the next turn.
	 */
	if (rounds++ == ACT_TURN / ACT_BATCH) {
	    sched_kick(s);
	    break;
	}
	n = qmgr_run(s->qmgr, now, acts, ACT_BATCH);
	for (int i = 0; i < n; i++)
	    act_copy(&copy[i], &acts[i]);
	for (int i = 0; i < n; i++) {
	    switch (copy[i].a.type) {
	    case QMGR_ACT_ACTIVATE:
		/* Stopping: start nothing new; the message stays as it is on disk. */
		if (!s->stopping)
		    do_activate(s, copy[i].a.id, now);
		break;
	    case QMGR_ACT_DELIVER:

		/*
		 * Even when stopping: smtp refuses it at once (deferred,
		 * "delivery aborted by mail system shutdown"), so that the
		 * pass ends and its batch records the recipients that already
		 * got a 250.  Skipping it would leave the pass open, nothing
		 * would be written, and they would all go out again.
		 */
		do_deliver(s, &copy[i]);
		break;
	    case QMGR_ACT_SUSPEND:
		do_suspend(s, &copy[i]);
		break;
	    case QMGR_ACT_DONE:
		do_done(s, &copy[i], now);
		break;
	    }
	    act_free(&copy[i]);
	}
    } while (n == ACT_BATCH);
    sched_arm(s, now);
}

static void kick_cb(evutil_socket_t fd, short what, void *ctx)
{
    sched_run(ctx);
}

static void timer_cb(evutil_socket_t fd, short what, void *ctx)
{
    sched_run(ctx);
}

void    sched_kick(SCHED *s)
{
    if (!s->kick_scheduled) {
	struct timeval zero = {0, 0};

	s->kick_scheduled = 1;
	event_add(s->kick_ev, &zero);
    }
}

/* At exit: the scheduler's events, what is still in the active set, qmgr. */
void    sched_free(SCHED *s)
{
    if (s == NULL)
	return;
    event_free(s->kick_ev);
    event_free(s->qmgr_timer);
    if (s->flush_ev)
	event_free(s->flush_ev);
    for (size_t i = 0; i < s->active_size; i++)
	while (s->active[i])
	    active_free(s, s->active[i]);
    free(s->active);
    while (s->suspended) {
	PASS   *p = s->suspended;

	s->suspended = p->next;
	s->nsuspended--;
	pass_free(p);
    }
    while (s->waiters) {
	WAITER *w = s->waiters;

	s->waiters = w->next;
	free(w);
    }
    metrics_lc_free(&s->dest_deferred);
    qmgr_free(s->qmgr);
    free(s);
}

/* At exit, before the queue closes: outcomes still not recorded get one last try. */
void    sched_record_suspended(SCHED *s)
{
    while (s->suspended) {
	PASS   *p = s->suspended;

	char    why[256];

	s->suspended = p->next;
	s->nsuspended--;
	if (queue_batch_commit(pass_batch(s, p), why, sizeof(why)) == 0)
	    log_msg("qmgr", "%s: queue update recorded at shutdown", p->qid);
	else
	    log_warn("qmgr", "%s: queue update still failing at shutdown (%s); the message may be"
		     " delivered again after the restart", p->qid, why);
	pass_free(p);
    }
}

int     sched_idle(const SCHED *s)
{
    return (s->inflight == 0 && s->pending_commits == 0);
}

/* For mailq and explain: what only the running daemon knows, from qmgr. */
void    sched_state(void *ctx, const QMSG *msg, SHOWQ_SCHED *out)
{
    SCHED  *s = ctx;
    QMGR_MSGSTATE st;

    qmgr_msg_state(s->qmgr, msg->seq, &st);
    out->active = st.known && st.active;
    out->next_attempt = st.known ? st.next_attempt : 0;
    out->destination_dead = st.known ? st.destination_dead : 0;
    out->dead_until = st.known ? st.dead_until : 0;
    if (retry_policy_enabled(s->cf)) {
	/* Each recipient's policy value, kept until the next call. */
	static char **vals;
	static int nvals;
	char    vbuf[512];

	for (int i = 0; i < nvals; i++)
	    free(vals[i]);
	free(vals);
	nvals = msg->nrcpt;
	vals = xcalloc((size_t) (nvals > 0 ? nvals : 1), sizeof(char *));
	for (int i = 0; i < msg->nrcpt; i++)
	    vals[i] = xstrdup(retry_policy_value(s->cf, msg->rcpts[i].addr, vbuf, sizeof(vbuf)));
	out->rcpt_policy = (const char *const *) vals;
    }
}

/* ---- admin edits (control_admin_submit): the scheduler's side ---- */

static int edit_busy(void *ctx, const QMSG *msg)
{
    SCHED  *s = ctx;

    return (qmgr_is_active(s->qmgr, msg->seq));
}

static void edit_changed(void *ctx, int op, const QMSG *msg, int64_t now)
{
    SCHED  *s = ctx;

    switch (op) {
    case CONTROL_OP_HOLD:
	qmgr_hold(s->qmgr, msg->seq);
	break;
    case CONTROL_OP_RELEASE:
	qmgr_release(s->qmgr, msg->seq, now);
	break;
    case CONTROL_OP_EXPIRE:
	qmgr_force_expire(s->qmgr, msg->seq);
	break;
    default:					/* delete, requeue (the copy comes back through edit_requeued) */
	qmgr_remove(s->qmgr, msg->seq);
	break;
    }
}

static void edit_requeued(void *ctx, const QMSG *copy)
{
    sched_add(ctx, copy);			/* not new mail: not counted as received */
}

/*
 * A long edit (hold ALL) goes on at the next turn of the loop.  The
 * pending turns are kept (s->laters), so that at exit sched_run_later()
 * can still run them: the edit sees the daemon stopping and ends, its
 * client answered and its memory freed, instead of being dropped with
 * the loop's events.
 */
typedef struct EDIT_LATER {
    SCHED  *s;
    struct event *ev;
    void    (*fn) (void *arg);
    void   *arg;
    struct EDIT_LATER *prev, *next;
} EDIT_LATER;

static void edit_later_run(EDIT_LATER *l)
{
    SCHED  *s = l->s;
    void    (*fn) (void *arg) = l->fn;
    void   *arg = l->arg;

    if (l->prev)
	l->prev->next = l->next;
    else
	s->laters = l->next;
    if (l->next)
	l->next->prev = l->prev;
    event_free(l->ev);
    free(l);
    fn(arg);
}

static void edit_later_cb(evutil_socket_t fd, short what, void *ctx)
{
    edit_later_run(ctx);
}

static void edit_later(void *ctx, void (*fn) (void *arg), void *arg)
{
    SCHED  *s = ctx;
    EDIT_LATER *l = xcalloc(1, sizeof(*l));
    struct timeval zero = {0, 0};

    l->s = s;
    l->fn = fn;
    l->arg = arg;
    l->ev = event_new(s->base, -1, 0, edit_later_cb, l);
    if (l->ev == NULL || event_add(l->ev, &zero) < 0) {
	if (l->ev)
	    event_free(l->ev);
	free(l);
	fn(arg);
	return;
    }
    if ((l->next = s->laters) != NULL)
	s->laters->prev = l;
    s->laters = l;
}

void    sched_run_later(SCHED *s)
{
    s->stopping = 1;
    while (s->laters)
	edit_later_run(s->laters);
}

static int edit_stopping(void *ctx)
{
    SCHED  *s = ctx;

    return (s->stopping);
}

void    sched_edit_hooks(SCHED *s, CONTROL_EDIT_HOOKS *h)
{
    h->busy = edit_busy;
    h->changed = edit_changed;
    h->requeued = edit_requeued;
    h->later = edit_later;
    h->stopping = edit_stopping;
    h->ctx = s;
}

/* ---- metrics ---- */

typedef struct DEST_WALK {
    BUF    *out;
    int     dead;				/* this pass: dead ones, or the others */
    int     n;
} DEST_WALK;

/* relayq_destination_dead: every destination the scheduler knows, dead ones first, at most METRICS_LC_MAX. */
static void metrics_dest(void *ctx, const char *dest, int dead)
{
    DEST_WALK *w = ctx;

    if ((dead != 0) != w->dead || w->n >= METRICS_LC_MAX)
	return;
    buf_printf(w->out, "relayq_destination_dead{destination=\"");
    metrics_label_escape(w->out, dest);
    buf_printf(w->out, "\"} %d\n", dead ? 1 : 0);
    w->n++;
}

void    sched_metrics(const SCHED *s, BUF *out)
{
    QMGR_COUNTS c;

    qmgr_counts(s->qmgr, &c);
    metrics_family(out, "relayq_queue_messages", "gauge", "Messages in the queue by state.");
    metrics_sample(out, "relayq_queue_messages", "state=\"incoming\"", c.incoming);
    metrics_sample(out, "relayq_queue_messages", "state=\"active\"", c.active);
    metrics_sample(out, "relayq_queue_messages", "state=\"deferred\"", c.deferred);
    metrics_sample(out, "relayq_queue_messages", "state=\"hold\"", c.hold);

    metrics_family(out, "relayq_deliveries_total", "counter", "Recipient delivery results by status.");
    metrics_sample(out, "relayq_deliveries_total", "status=\"sent\"", (double) s->n_sent);
    metrics_sample(out, "relayq_deliveries_total", "status=\"deferred\"", (double) s->n_deferred);
    metrics_sample(out, "relayq_deliveries_total", "status=\"bounced\"", (double) s->n_bounced);
    metrics_family(out, "relayq_messages_expired_total", "counter", "Messages returned to the sender because their lifetime ran out.");
    metrics_sample(out, "relayq_messages_expired_total", "", (double) s->n_expired);

    metrics_hist_write(out, "relayq_delivery_attempt_duration_seconds",
		       "Duration of delivery attempts (connection to final reply).", &s->attempt_hist);

    metrics_family(out, "relayq_dead_destinations", "gauge", "Destinations currently suspended as dead.");
    metrics_sample(out, "relayq_dead_destinations", "", qmgr_dead_count(s->qmgr));
    DEST_WALK w = {out, 1, 0};

    metrics_family(out, "relayq_destination_dead", "gauge",
		   "1 while the destination is suspended as dead, 0 while it has mail and is not.");
    qmgr_dest_walk(s->qmgr, metrics_dest, &w);
    w.dead = 0;
    qmgr_dest_walk(s->qmgr, metrics_dest, &w);
    metrics_lc_write(out, "relayq_destination_deferrals_total", "destination",
		     "Recipients deferred, by destination (transport:nexthop).", &s->dest_deferred);

    int64_t oldest = qmgr_oldest_create_time(s->qmgr), now = (int64_t) time_sec();

    metrics_family(out, "relayq_queue_oldest_message_age_seconds", "gauge",
		   "Age of the oldest message in the queue (any state), 0 if the queue is empty.");
    metrics_sample(out, "relayq_queue_oldest_message_age_seconds", "",
		   oldest > 0 && now > oldest ? (double) (now - oldest) : 0);
    metrics_family(out, "relayq_maximal_queue_lifetime_seconds", "gauge",
		   "maximal_queue_lifetime: a message older than this is returned to its sender.");
    metrics_sample(out, "relayq_maximal_queue_lifetime_seconds", "",
		   (double) qmgr_params(s->qmgr)->maximal_queue_lifetime);
}

/* ---- relayq top ---- */

void    sched_counters(const SCHED *s, uint64_t out[4])
{
    out[0] = s->n_received;
    out[1] = s->n_sent;
    out[2] = s->n_deferred;
    out[3] = s->n_bounced;
}

int     sched_top(const SCHED *s, int64_t now, QMGR_TOP *t, QMGR_TOP_DEST *dests, int max)
{
    qmgr_top(s->qmgr, now, t);
    return (qmgr_top_dests(s->qmgr, dests, max));
}
