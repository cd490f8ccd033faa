/*
 * qmgr.c - the scheduler: deferred index, queue-run grid, active set,
 * per-destination concurrency and dead-destination cache, end-of-pass
 * decisions (expiry, delay warning, backoff).
 *
 * Pure logic: no I/O, no clock, no logging.  The caller passes `now` in
 * whole seconds to every entry point and carries out the actions that
 * qmgr_run() returns.  Rule labels (R, S, D, E) refer to
 * shared/spec/postfix-queue-semantics.md.
 *
 * Memory: a deferred message is one 48-byte QMSG slot in a growable array,
 * one 4-byte hash bucket share and one 4-byte heap entry.  Everything else
 * (delivery requests, destinations) exists only while a message is active.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "qmgr/qmgr.h"

#define NIL UINT32_MAX

/* Message states inside the scheduler. */
#define M_FREE      0
#define M_DEFERRED  1			/* in the heap, waiting for a queue run */
#define M_HOLD      2
#define M_READY_IN  3			/* ready, incoming FIFO */
#define M_READY_DEF 4			/* ready, taken by a run: deferred FIFO */
#define M_LOADING   5			/* ACTIVATE issued, waiting for qmgr_activated() */
#define M_ACTIVE    6

#define F_NULL_SENDER 0x01
#define F_WARNED      0x02
#define F_FORCE       0x04
#define F_DEFERRED    0x08		/* a recipient was deferred in this pass */
#define F_POLICY      0x10		/* active with per-recipient policies: m->a is its QPASS */

typedef struct QMSG {
    QMGR_ID id;
    int64_t create_time;
    int64_t arrival_time;
    int64_t next_eligible;
    uint32_t hnext;			/* hash chain, or free list */
    uint32_t a;				/* heap position, or FIFO prev */
    uint32_t b;				/* FIFO next, or pending requests when active */
    uint8_t state;
    uint8_t flags;
} QMSG;

typedef struct QFIFO {
    uint32_t head, tail, count;
} QFIFO;

typedef struct QREQ QREQ;
typedef struct QDEST QDEST;

struct QREQ {
    uint64_t id;
    uint32_t msg;
    QDEST  *dest;
    int     nrcpt;
    int    *rcpts;
    int    *pols;			/* each recipient's policy, or NULL */
    QREQ   *next;			/* todo list */
};

/* The deferred recipients of one pass, with their policies (F_POLICY only). */
typedef struct QPASS {
    int    *rcpt, *pol;
    int     n, cap;
    uint32_t next_free;
} QPASS;

struct QDEST {
    char   *key;
    int     window;
    int     busy;
    int     ntodo;
    double  fail_cohorts;
    int     dead;
    int64_t dead_until;
    char   *dsn;			/* hop status that made it dead */
    char   *reason;			/* "delivery temporarily suspended: ..." */
    QREQ   *todo_head, *todo_tail;
    QDEST  *hnext;
    QDEST  *rprev, *rnext;		/* ring of destinations with todo entries */
    int     in_ring;
    QDEST  *dprev, *dnext;		/* list of dead destinations */
    unsigned stamp, seq;		/* grouping in qmgr_activated() */
};

/*
 * The destinations of each message's last pass, so that mailq and explain
 * can ask whether one of them is dead without routing the recipients
 * again.  Names are interned (a relay sends most mail to few next hops);
 * only messages that had a pass since the start have an entry.
 */
typedef struct QDNAME {
    char   *key;
    uint32_t refs;
    uint32_t ndeferred;			/* deferred messages whose last pass deferred a recipient here */
    struct QDNAME *hnext;
} QDNAME;

typedef struct QMDEST {
    QMGR_ID id;
    struct QMDEST *hnext;
    int     n;
    QDNAME *names[];			/* then n flags: a recipient there was deferred (QMDEST_FLAGS) */
} QMDEST;

#define QMDEST_FLAGS(e)	((uint8_t *) ((e)->names + (e)->n))

/*
 * relayq top: messages by state (incoming, active, deferred, hold: the
 * QMGR_COUNTS order) and minute of arrival, kept as messages change state
 * (qmgr_set_state), so that the age table costs the number of distinct
 * minutes, not the number of messages.  Sorted by minute.
 */
typedef struct QAGE {
    int64_t minute;
    uint32_t n[4];
} QAGE;

typedef struct QPEND {
    QMGR_ACTION act;
    void   *own1, *own2;		/* memory the action points to */
} QPEND;

struct QMGR {
    QMGR_PARAMS p;
    int64_t anchor;
    int64_t next_run;			/* next grid point not yet run */

    /* Messages: slot array, hash id -> slot, heap, FIFOs. */
    QMSG   *msgs;
    uint32_t msg_cap, msg_used, free_head;
    uint32_t *buckets;
    uint32_t nbuckets, count;
    uint32_t *heap;
    uint32_t heap_n, heap_cap;
    QFIFO   fin, fdef;
    int     prefer_def;			/* alternate feeding when both have work */
    int     nactive, nhold;

    /* Destinations. */
    QDEST **dbuckets;
    uint32_t ndbuckets, ndest;
    QDEST  *ring_head, *ring_tail;
    int     ring_n;
    QDEST  *dead_head;
    int     ndead;
    unsigned stamp;

    /* The destinations of each message's last pass (qmgr_msg_state). */
    QDNAME **nbuckets_tab;
    uint32_t nnbuckets, nnames;
    QMDEST **mdbuckets;
    uint32_t nmdbuckets, nmdest;
    size_t  mdest_bytes;
    uint32_t ndeferred_known;		/* deferred messages with a flagged destination */

    /* relayq top's age table (QAGE). */
    QAGE   *ages;
    uint32_t nages, ages_cap;

    /* Delivery requests by id: slot | generation << 32. */
    QREQ  **reqs;
    uint32_t *req_gen;
    uint32_t req_cap, req_used;
    uint32_t *req_free;
    uint32_t req_nfree;

    /* Retry policies (0: the configuration's own), and per-pass records. */
    QMGR_POLICY *pol;
    int     npol;
    QPASS  *passes;
    uint32_t npasses, pass_free;

    /* Actions not yet returned, and memory of returned ones. */
    QPEND  *pend;
    size_t  pend_head, pend_n, pend_cap;
    void  **garbage;
    size_t  garbage_n, garbage_cap;

    /* qmgr_oldest_create_time(): the minimum, while oldest_valid. */
    int64_t oldest_ct;
    int     oldest_valid;
};

/* ----------------------------------------------------------------- params */

int64_t qmgr_lifetime(const QMGR_PARAMS *p, int null_sender)
{
    if (null_sender && p->bounce_queue_lifetime < p->maximal_queue_lifetime)
	return (p->bounce_queue_lifetime);
    return (p->maximal_queue_lifetime);
}

void    qmgr_policy_default(const QMGR_PARAMS *p, QMGR_POLICY *out)
{
    memset(out, 0, sizeof(*out));
    out->minimal_backoff_time = p->minimal_backoff_time;
    out->maximal_backoff_time = p->maximal_backoff_time;
    out->maximal_queue_lifetime = p->maximal_queue_lifetime;
    out->bounce_queue_lifetime = p->bounce_queue_lifetime;
    out->delay_warning_time = p->delay_warning_time;
}

int64_t qmgr_policy_lifetime(const QMGR_POLICY *pol, int null_sender)
{
    if (null_sender && pol->bounce_queue_lifetime < pol->maximal_queue_lifetime)
	return (pol->bounce_queue_lifetime);
    return (pol->maximal_queue_lifetime);
}

static void qmgr_policy_zero(QMGR *q)
{
    if (q->npol == 0) {
	q->pol = xcalloc(1, sizeof(*q->pol));
	q->npol = 1;
    }
    qmgr_policy_default(&q->p, &q->pol[0]);
}

int     qmgr_policy(QMGR *q, const QMGR_POLICY *pol)
{
    int     k;

    for (k = 0; k < q->npol; k++)
	if (memcmp(&q->pol[k], pol, sizeof(*pol)) == 0)
	    return (k);
    q->pol = xrealloc(q->pol, (size_t) (q->npol + 1) * sizeof(*q->pol));
    q->pol[q->npol] = *pol;
    return (q->npol++);
}

static void qmgr_fix_params(QMGR_PARAMS *p)
{
    /* bounce_queue_lifetime is capped at maximal_queue_lifetime (qmgr_post_init). */
    if (p->bounce_queue_lifetime > p->maximal_queue_lifetime)
	p->bounce_queue_lifetime = p->maximal_queue_lifetime;
    if (p->queue_run_delay < 1)
	p->queue_run_delay = 1;
    if (p->minimal_backoff_time < 0)
	p->minimal_backoff_time = 0;
    if (p->maximal_backoff_time < 0)
	p->maximal_backoff_time = 0;
    if (p->qmgr_message_active_limit < 1)
	p->qmgr_message_active_limit = 1;
    if (p->initial_destination_concurrency < 1)
	p->initial_destination_concurrency = 1;
    if (p->default_destination_concurrency_limit < 1)
	p->default_destination_concurrency_limit = 1;
    if (p->default_destination_recipient_limit < 1)
	p->default_destination_recipient_limit = 1;
}

const QMGR_PARAMS *qmgr_params(const QMGR *q)
{
    return (&q->p);
}

int64_t qmgr_anchor(const QMGR *q)
{
    return (q->anchor);
}

/* ------------------------------------------------------------------ grid */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t d = a / b;

    if ((a % b != 0) && ((a < 0) != (b < 0)))
	d--;
    return (d);
}

int64_t qmgr_run_at_or_after(const QMGR *q, int64_t t)
{
    int64_t R = q->p.queue_run_delay;

    if (t <= q->anchor)
	return (q->anchor);
    return (q->anchor + floor_div(t - q->anchor + R - 1, R) * R);
}

/* S5: the first run S with S >= t_fail and S + 1 >= eligible. */
int64_t qmgr_run_for(const QMGR *q, int64_t t_fail, int64_t eligible)
{
    int64_t t = t_fail;

    if (eligible - 1 > t)
	t = eligible - 1;
    return (qmgr_run_at_or_after(q, t));
}

/* The grid point at or before t (t >= anchor). */
static int64_t qmgr_run_at_or_before(const QMGR *q, int64_t t)
{
    return (q->anchor + floor_div(t - q->anchor, q->p.queue_run_delay) * q->p.queue_run_delay);
}

/*
 * Runs are skipped while they have nothing to take (qmgr_next_wakeup), so
 * next_run may lie in the past when a message is put into the deferred
 * index.  If the run due at the latest grid point L <= now would have taken
 * nothing, it counts as done (before this event), so that the new message
 * waits for the next grid point like any other.
 */
static void qmgr_catch_up(QMGR *q, int64_t now)
{
    int64_t L;

    if (q->next_run > now)
	return;
    L = qmgr_run_at_or_before(q, now);
    if (q->heap_n > 0 && q->msgs[q->heap[0]].next_eligible <= L + 1)
	return;					/* a real run is pending */
    q->next_run = L + q->p.queue_run_delay;
}

/* ------------------------------------------------------ actions, garbage */

static QMGR_ACTION *qmgr_pend_new(QMGR *q, int type, QMGR_ID id)
{
    QPEND  *pe;

    if (q->pend_head == q->pend_n) {
	q->pend_head = q->pend_n = 0;
    }
    if (q->pend_n == q->pend_cap) {
	q->pend_cap = q->pend_cap ? 2 * q->pend_cap : 64;
	q->pend = xrealloc(q->pend, q->pend_cap * sizeof(*q->pend));
    }
    pe = q->pend + q->pend_n++;
    memset(pe, 0, sizeof(*pe));
    pe->act.type = type;
    pe->act.id = id;
    return (&pe->act);
}

static void qmgr_pend_own(QMGR *q, void *p1, void *p2)
{
    QPEND  *pe = q->pend + q->pend_n - 1;

    pe->own1 = p1;
    pe->own2 = p2;
}

static void qmgr_garbage_add(QMGR *q, void *ptr)
{
    if (ptr == 0)
	return;
    if (q->garbage_n == q->garbage_cap) {
	q->garbage_cap = q->garbage_cap ? 2 * q->garbage_cap : 64;
	q->garbage = xrealloc(q->garbage, q->garbage_cap * sizeof(*q->garbage));
    }
    q->garbage[q->garbage_n++] = ptr;
}

static void qmgr_garbage_free(QMGR *q)
{
    size_t  i;

    for (i = 0; i < q->garbage_n; i++)
	free(q->garbage[i]);
    q->garbage_n = 0;
}

/* ---------------------------------------------------------- message hash */

static uint32_t qmgr_id_hash(QMGR_ID id)
{
    uint64_t x = id;

    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return ((uint32_t) x);
}

static uint32_t qmgr_find(const QMGR *q, QMGR_ID id)
{
    uint32_t i;

    if (q->nbuckets == 0)
	return (NIL);
    for (i = q->buckets[qmgr_id_hash(id) & (q->nbuckets - 1)]; i != NIL; i = q->msgs[i].hnext)
	if (q->msgs[i].id == id)
	    return (i);
    return (NIL);
}

static void qmgr_hash_grow(QMGR *q)
{
    uint32_t nb = q->nbuckets ? 2 * q->nbuckets : 1024;
    uint32_t i;

    free(q->buckets);
    q->buckets = xmalloc((size_t) nb * sizeof(*q->buckets));
    for (i = 0; i < nb; i++)
	q->buckets[i] = NIL;
    q->nbuckets = nb;
    for (i = 0; i < q->msg_used; i++) {
	if (q->msgs[i].state != M_FREE) {
	    uint32_t h = qmgr_id_hash(q->msgs[i].id) & (nb - 1);

	    q->msgs[i].hnext = q->buckets[h];
	    q->buckets[h] = i;
	}
    }
}

static uint32_t qmgr_slot_alloc(QMGR *q, QMGR_ID id)
{
    uint32_t i, h;

    if (q->count + 1 > q->nbuckets)
	qmgr_hash_grow(q);
    if (q->free_head != NIL) {
	i = q->free_head;
	q->free_head = q->msgs[i].hnext;
    } else {
	if (q->msg_used == q->msg_cap) {
	    q->msg_cap = q->msg_cap ? 2 * q->msg_cap : 1024;
	    q->msgs = xrealloc(q->msgs, (size_t) q->msg_cap * sizeof(*q->msgs));
	}
	i = q->msg_used++;
    }
    memset(q->msgs + i, 0, sizeof(q->msgs[i]));
    q->msgs[i].id = id;
    q->msgs[i].a = q->msgs[i].b = NIL;
    h = qmgr_id_hash(id) & (q->nbuckets - 1);
    q->msgs[i].hnext = q->buckets[h];
    q->buckets[h] = i;
    q->count++;
    return (i);
}

/* The slot must already be out of the heap and the FIFOs. */
static void qmgr_mdest_forget(QMGR *q, QMGR_ID id);

static void qmgr_set_state(QMGR *q, uint32_t i, uint8_t st);

static void qmgr_slot_free(QMGR *q, uint32_t i)
{
    uint32_t *pp = q->buckets + (qmgr_id_hash(q->msgs[i].id) & (q->nbuckets - 1));

    /* The oldest message leaves: the next qmgr_oldest_create_time() looks again. */
    if (q->oldest_valid && q->msgs[i].create_time == q->oldest_ct)
	q->oldest_valid = 0;
    qmgr_set_state(q, i, M_FREE);
    qmgr_mdest_forget(q, q->msgs[i].id);
    while (*pp != i)
	pp = &q->msgs[*pp].hnext;
    *pp = q->msgs[i].hnext;
    q->msgs[i].hnext = q->free_head;
    q->free_head = i;
    q->count--;
}

/* ------------------------------------------------- deferred index (heap) */

static int qmgr_heap_less(const QMGR *q, uint32_t x, uint32_t y)
{
    if (q->msgs[x].next_eligible != q->msgs[y].next_eligible)
	return (q->msgs[x].next_eligible < q->msgs[y].next_eligible);
    return (x < y);
}

static void qmgr_heap_set(QMGR *q, uint32_t pos, uint32_t i)
{
    q->heap[pos] = i;
    q->msgs[i].a = pos;
}

static void qmgr_heap_up(QMGR *q, uint32_t pos)
{
    uint32_t i = q->heap[pos];

    while (pos > 0) {
	uint32_t parent = (pos - 1) / 2;

	if (!qmgr_heap_less(q, i, q->heap[parent]))
	    break;
	qmgr_heap_set(q, pos, q->heap[parent]);
	pos = parent;
    }
    qmgr_heap_set(q, pos, i);
}

static void qmgr_heap_down(QMGR *q, uint32_t pos)
{
    uint32_t i = q->heap[pos];

    for (;;) {
	uint32_t c = 2 * pos + 1;

	if (c >= q->heap_n)
	    break;
	if (c + 1 < q->heap_n && qmgr_heap_less(q, q->heap[c + 1], q->heap[c]))
	    c++;
	if (!qmgr_heap_less(q, q->heap[c], i))
	    break;
	qmgr_heap_set(q, pos, q->heap[c]);
	pos = c;
    }
    qmgr_heap_set(q, pos, i);
}

static void qmgr_heap_push(QMGR *q, uint32_t i)
{
    if (q->heap_n == q->heap_cap) {
	q->heap_cap = q->heap_cap ? 2 * q->heap_cap : 1024;
	q->heap = xrealloc(q->heap, (size_t) q->heap_cap * sizeof(*q->heap));
    }
    qmgr_set_state(q, i, M_DEFERRED);
    qmgr_heap_set(q, q->heap_n++, i);
    qmgr_heap_up(q, q->heap_n - 1);
}

static void qmgr_heap_delete(QMGR *q, uint32_t i)
{
    uint32_t pos = q->msgs[i].a;
    uint32_t last = q->heap[--q->heap_n];

    q->msgs[i].a = NIL;
    if (pos == q->heap_n)
	return;
    qmgr_heap_set(q, pos, last);
    qmgr_heap_up(q, pos);
    qmgr_heap_down(q, q->msgs[last].a);
}

/* ------------------------------------------------------------ ready FIFOs */

static void qmgr_fifo_push(QMGR *q, QFIFO *f, uint32_t i)
{
    q->msgs[i].a = f->tail;
    q->msgs[i].b = NIL;
    if (f->tail != NIL)
	q->msgs[f->tail].b = i;
    else
	f->head = i;
    f->tail = i;
    f->count++;
}

static void qmgr_fifo_unlink(QMGR *q, QFIFO *f, uint32_t i)
{
    uint32_t prev = q->msgs[i].a, next = q->msgs[i].b;

    if (prev != NIL)
	q->msgs[prev].b = next;
    else
	f->head = next;
    if (next != NIL)
	q->msgs[next].a = prev;
    else
	f->tail = prev;
    f->count--;
    q->msgs[i].a = q->msgs[i].b = NIL;
}

/* Take a message out of whatever waiting structure holds it. */
static void qmgr_detach(QMGR *q, uint32_t i)
{
    switch (q->msgs[i].state) {
    case M_DEFERRED:
	qmgr_heap_delete(q, i);
	break;
    case M_READY_IN:
	qmgr_fifo_unlink(q, &q->fin, i);
	break;
    case M_READY_DEF:
	qmgr_fifo_unlink(q, &q->fdef, i);
	break;
    case M_HOLD:
	q->nhold--;
	break;
    }
}

/* --------------------------------------------------------- destinations */

static uint32_t qmgr_str_hash(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++)
	h = (h ^ (unsigned char) *s) * 16777619u;
    return (h);
}

static QDEST *qmgr_dest_find(const QMGR *q, const char *key)
{
    QDEST  *d;

    if (q->ndbuckets == 0)
	return (0);
    for (d = q->dbuckets[qmgr_str_hash(key) & (q->ndbuckets - 1)]; d; d = d->hnext)
	if (strcmp(d->key, key) == 0)
	    return (d);
    return (0);
}

static QDEST *qmgr_dest_create(QMGR *q, const char *key)
{
    QDEST  *d;
    uint32_t h;

    if (q->ndest + 1 > q->ndbuckets) {
	uint32_t nb = q->ndbuckets ? 2 * q->ndbuckets : 64, k;
	QDEST **nbk = xcalloc(nb, sizeof(*nbk));

	for (k = 0; k < q->ndbuckets; k++) {
	    while ((d = q->dbuckets[k]) != 0) {
		q->dbuckets[k] = d->hnext;
		h = qmgr_str_hash(d->key) & (nb - 1);
		d->hnext = nbk[h];
		nbk[h] = d;
	    }
	}
	free(q->dbuckets);
	q->dbuckets = nbk;
	q->ndbuckets = nb;
    }
    d = xcalloc(1, sizeof(*d));
    d->key = xstrdup(key);
    d->window = q->p.initial_destination_concurrency;
    h = qmgr_str_hash(key) & (q->ndbuckets - 1);
    d->hnext = q->dbuckets[h];
    q->dbuckets[h] = d;
    q->ndest++;
    return (d);
}

/* Grow a power-of-two chained hash table when it holds more than its size. */
#define QMGR_REHASH(type, tab, nb, count, hashof) do { \
	if ((count) + 1 > (nb)) { \
	    uint32_t nnb = (nb) ? 2 * (nb) : 64, k_; \
	    type  **nt = xcalloc(nnb, sizeof(*nt)), *e_; \
	    for (k_ = 0; k_ < (nb); k_++) \
		while ((e_ = (tab)[k_]) != 0) { \
		    (tab)[k_] = e_->hnext; \
		    e_->hnext = nt[(hashof(e_)) & (nnb - 1)]; \
		    nt[(hashof(e_)) & (nnb - 1)] = e_; \
		} \
	    free(tab); \
	    (tab) = nt; \
	    (nb) = nnb; \
	} \
    } while (0)

#define QDNAME_HASH(e)	qmgr_str_hash((e)->key)
#define QMDEST_HASH(e)	qmgr_id_hash((e)->id)

static QDNAME *qmgr_name_get(QMGR *q, const char *key)
{
    QDNAME *n;
    uint32_t h;

    if (q->nnbuckets)
	for (n = q->nbuckets_tab[qmgr_str_hash(key) & (q->nnbuckets - 1)]; n; n = n->hnext)
	    if (strcmp(n->key, key) == 0) {
		n->refs++;
		return (n);
	    }
    QMGR_REHASH(QDNAME, q->nbuckets_tab, q->nnbuckets, q->nnames, QDNAME_HASH);
    n = xcalloc(1, sizeof(*n));
    n->key = xstrdup(key);
    n->refs = 1;
    h = qmgr_str_hash(key) & (q->nnbuckets - 1);
    n->hnext = q->nbuckets_tab[h];
    q->nbuckets_tab[h] = n;
    q->nnames++;
    q->mdest_bytes += sizeof(*n) + strlen(key) + 1;
    return (n);
}

static void qmgr_name_put(QMGR *q, QDNAME *n)
{
    QDNAME **pp;

    if (--n->refs > 0)
	return;
    for (pp = &q->nbuckets_tab[qmgr_str_hash(n->key) & (q->nnbuckets - 1)]; *pp != n; pp = &(*pp)->hnext)
	 /* void */ ;
    *pp = n->hnext;
    q->nnames--;
    q->mdest_bytes -= sizeof(*n) + strlen(n->key) + 1;
    free(n->key);
    free(n);
}

static QMDEST **qmgr_mdest_slot(const QMGR *q, QMGR_ID id)
{
    QMDEST **pp;

    if (q->nmdbuckets == 0)
	return (0);
    for (pp = &q->mdbuckets[qmgr_id_hash(id) & (q->nmdbuckets - 1)]; *pp; pp = &(*pp)->hnext)
	if ((*pp)->id == id)
	    return (pp);
    return (0);
}

static void qmgr_mdest_forget(QMGR *q, QMGR_ID id)
{
    QMDEST **pp = qmgr_mdest_slot(q, id), *e;

    if (pp == 0)
	return;
    e = *pp;
    *pp = e->hnext;
    for (int k = 0; k < e->n; k++)
	qmgr_name_put(q, e->names[k]);
    q->nmdest--;
    q->mdest_bytes -= sizeof(*e) + (size_t) e->n * sizeof(e->names[0]);
    free(e);
}

/* The distinct destinations of a pass; replaces those of the last one. */
static void qmgr_mdest_set(QMGR *q, QMGR_ID id, const char *const *dests, int n)
{
    QMDEST *e;
    uint32_t h;
    int     k, j, m = 0;

    qmgr_mdest_forget(q, id);
    if (n <= 0)
	return;
    e = xcalloc(1, sizeof(*e) + (size_t) n * (sizeof(e->names[0]) + 1));
    e->id = id;
    for (k = 0; k < n; k++) {
	for (j = 0; j < k && strcmp(dests[j], dests[k]) != 0; j++)
	     /* void */ ;
	if (j == k)
	    e->names[m++] = qmgr_name_get(q, dests[k]);
    }
    e->n = m;
    QMGR_REHASH(QMDEST, q->mdbuckets, q->nmdbuckets, q->nmdest, QMDEST_HASH);
    h = qmgr_id_hash(id) & (q->nmdbuckets - 1);
    e->hnext = q->mdbuckets[h];
    q->mdbuckets[h] = e;
    q->nmdest++;
    q->mdest_bytes += sizeof(*e) + (size_t) m * (sizeof(e->names[0]) + 1);
}

/* A recipient of message id's pass to dest was deferred (or suspended): flag the name. */
static void qmgr_mdest_mark(QMGR *q, QMGR_ID id, const char *dest)
{
    QMDEST **pp = qmgr_mdest_slot(q, id);

    if (pp == 0)
	return;
    for (int k = 0; k < (*pp)->n; k++)
	if (strcmp((*pp)->names[k]->key, dest) == 0)
	    QMDEST_FLAGS(*pp)[k] = 1;
}

/* The message enters (+1) or leaves (-1) the deferred state: its flagged names count it. */
static void qmgr_mdest_count(QMGR *q, QMGR_ID id, int delta)
{
    QMDEST **pp = qmgr_mdest_slot(q, id);
    int     any = 0;

    if (pp == 0)
	return;
    for (int k = 0; k < (*pp)->n; k++)
	if (QMDEST_FLAGS(*pp)[k]) {
	    (*pp)->names[k]->ndeferred += (uint32_t) delta;
	    any = 1;
	}
    if (any)
	q->ndeferred_known += (uint32_t) delta;
}

/* ------------------------------------------------ relayq top's age table */

/* The state as relayq top and qmgr_counts() see it: 0 incoming, 1 active, 2 deferred, 3 hold. */
static int qmgr_pub_state(uint8_t st)
{
    switch (st) {
    case M_READY_IN:
	return (0);
    case M_LOADING:
    case M_ACTIVE:
	return (1);
    case M_DEFERRED:
    case M_READY_DEF:
	return (2);
    case M_HOLD:
	return (3);
    default:
	return (-1);
    }
}

static void qmgr_age_add(QMGR *q, int64_t arrival, int st, int delta)
{
    int64_t minute = floor_div(arrival, 60);
    uint32_t lo = 0, hi = q->nages;

    /* Most changes concern the newest minute. */
    if (q->nages > 0 && q->ages[q->nages - 1].minute == minute) {
	lo = q->nages - 1;
    } else {
	while (lo < hi) {
	    uint32_t mid = lo + (hi - lo) / 2;

	    if (q->ages[mid].minute < minute)
		lo = mid + 1;
	    else
		hi = mid;
	}
    }
    if (lo == q->nages || q->ages[lo].minute != minute) {
	if (delta < 0)
	    return;				/* not counted: cannot happen */
	if (q->nages == q->ages_cap) {
	    q->ages_cap = q->ages_cap ? 2 * q->ages_cap : 64;
	    q->ages = xrealloc(q->ages, (size_t) q->ages_cap * sizeof(*q->ages));
	}
	memmove(q->ages + lo + 1, q->ages + lo, (size_t) (q->nages - lo) * sizeof(*q->ages));
	memset(q->ages + lo, 0, sizeof(*q->ages));
	q->ages[lo].minute = minute;
	q->nages++;
    }
    q->ages[lo].n[st] += (uint32_t) delta;
    if (q->ages[lo].n[0] == 0 && q->ages[lo].n[1] == 0 && q->ages[lo].n[2] == 0 && q->ages[lo].n[3] == 0) {
	memmove(q->ages + lo, q->ages + lo + 1, (size_t) (q->nages - lo - 1) * sizeof(*q->ages));
	q->nages--;
    }
}

/* Every change of a message's state goes through here (M_FREE from qmgr_slot_alloc excepted). */
static void qmgr_set_state(QMGR *q, uint32_t i, uint8_t st)
{
    QMSG   *m = q->msgs + i;
    int     from = qmgr_pub_state(m->state), to = qmgr_pub_state(st);

    if (from != to) {
	if (from >= 0)
	    qmgr_age_add(q, m->arrival_time, from, -1);
	if (to >= 0)
	    qmgr_age_add(q, m->arrival_time, to, 1);
	if (from == 2)
	    qmgr_mdest_count(q, m->id, -1);
	if (to == 2)
	    qmgr_mdest_count(q, m->id, 1);
    }
    m->state = st;
}

static void qmgr_ring_add(QMGR *q, QDEST *d)
{
    if (d->in_ring)
	return;
    d->rnext = 0;
    d->rprev = q->ring_tail;
    if (q->ring_tail)
	q->ring_tail->rnext = d;
    else
	q->ring_head = d;
    q->ring_tail = d;
    d->in_ring = 1;
    q->ring_n++;
}

static void qmgr_ring_del(QMGR *q, QDEST *d)
{
    if (!d->in_ring)
	return;
    if (d->rprev)
	d->rprev->rnext = d->rnext;
    else
	q->ring_head = d->rnext;
    if (d->rnext)
	d->rnext->rprev = d->rprev;
    else
	q->ring_tail = d->rprev;
    d->rprev = d->rnext = 0;
    d->in_ring = 0;
    q->ring_n--;
}

static void qmgr_dead_unlink(QMGR *q, QDEST *d)
{
    if (d->dprev)
	d->dprev->dnext = d->dnext;
    else
	q->dead_head = d->dnext;
    if (d->dnext)
	d->dnext->dprev = d->dprev;
    d->dprev = d->dnext = 0;
    q->ndead--;
}

static void qmgr_dest_destroy(QMGR *q, QDEST *d)
{
    QDEST **pp = q->dbuckets + (qmgr_str_hash(d->key) & (q->ndbuckets - 1));

    while (*pp != d)
	pp = &(*pp)->hnext;
    *pp = d->hnext;
    qmgr_ring_del(q, d);
    if (d->dead)
	qmgr_dead_unlink(q, d);
    q->ndest--;
    free(d->key);
    free(d->dsn);
    free(d->reason);
    free(d);
}

/* D1: an empty live destination does not survive (its counters go with it). */
static void qmgr_dest_gc(QMGR *q, QDEST *d)
{
    if (!d->dead && d->busy == 0 && d->ntodo == 0)
	qmgr_dest_destroy(q, d);
}

/*
 * D4 timer expiry, flush, reload, or a success: back from the almost grave.
 * The caller disposes of the destination if it is now empty (qmgr_dest_gc).
 */
static void qmgr_dest_revive(QMGR *q, QDEST *d)
{
    if (!d->dead)
	return;
    qmgr_dead_unlink(q, d);
    d->dead = 0;
    d->dead_until = 0;
    free(d->dsn);
    free(d->reason);
    d->dsn = d->reason = 0;
    d->window = d->busy > q->p.initial_destination_concurrency ?
	d->busy : q->p.initial_destination_concurrency;
    d->fail_cohorts = 0;
    if (d->ntodo > 0)
	qmgr_ring_add(q, d);
}

static void qmgr_forget_dead(QMGR *q)
{
    QDEST  *d;

    while ((d = q->dead_head) != 0) {
	qmgr_dest_revive(q, d);
	qmgr_dest_gc(q, d);
    }
}

/* ------------------------------------------------------ delivery requests */

static QREQ *qmgr_req_new(QMGR *q, uint32_t msg, QDEST *d, const int *rcpts, int n,
			          int *pols)
{
    QREQ   *r = xcalloc(1, sizeof(*r));
    uint32_t slot;

    if (q->req_nfree > 0) {
	slot = q->req_free[--q->req_nfree];
    } else {
	if (q->req_used == q->req_cap) {
	    q->req_cap = q->req_cap ? 2 * q->req_cap : 64;
	    q->reqs = xrealloc(q->reqs, (size_t) q->req_cap * sizeof(*q->reqs));
	    q->req_gen = xrealloc(q->req_gen, (size_t) q->req_cap * sizeof(*q->req_gen));
	    q->req_free = xrealloc(q->req_free, (size_t) q->req_cap * sizeof(*q->req_free));
	}
	slot = q->req_used++;
	q->req_gen[slot] = 0;
    }
    q->req_gen[slot]++;
    q->reqs[slot] = r;
    r->id = ((uint64_t) q->req_gen[slot] << 32) | slot;
    r->msg = msg;
    r->dest = d;
    r->nrcpt = n;
    r->rcpts = xmalloc((size_t) (n > 0 ? n : 1) * sizeof(int));
    memcpy(r->rcpts, rcpts, (size_t) n * sizeof(int));
    r->pols = pols;			/* taken over */
    return (r);
}

static QREQ *qmgr_req_find(const QMGR *q, uint64_t id)
{
    uint32_t slot = (uint32_t) (id & 0xffffffffu);

    if (slot >= q->req_used || q->reqs[slot] == 0 || q->reqs[slot]->id != id)
	return (0);
    return (q->reqs[slot]);
}

/* Release the request id; the caller decides what happens to its memory. */
static void qmgr_req_release(QMGR *q, QREQ *r)
{
    uint32_t slot = (uint32_t) (r->id & 0xffffffffu);

    q->reqs[slot] = 0;
    q->req_free[q->req_nfree++] = slot;
}

/* ------------------------------------------------------- end of a pass */

/* R2: clamp the age; the minimum is applied last, so it wins over the maximum. */
static int64_t qmgr_backoff(int64_t minimal, int64_t maximal, int64_t create_time, int64_t now)
{
    int64_t backoff = now - create_time;

    if (backoff > maximal)
	backoff = maximal;
    if (backoff < minimal || create_time == 0)
	backoff = minimal;
    return (backoff);
}

/* E1: past its lifetime, or forced (relayq expire). */
static int qmgr_msg_expired(const QMSG *m, int64_t lifetime, int64_t now)
{
    return ((m->flags & F_FORCE) || now >= m->create_time + lifetime);
}

/* E2: a delay warning is due after warn_time seconds (0: never). */
static int qmgr_warn_due(const QMSG *m, int64_t warn_time, int64_t now)
{
    return (warn_time > 0 && now >= m->arrival_time + warn_time - 1);
}

/*
 * E3-E5, R2: the message stays, deferred for backoff seconds, with a delay
 * warning if one is due and none was sent (never for a null sender); it
 * goes back into the heap for its next run.
 */
static void qmgr_msg_defer(QMGR *q, uint32_t i, QMGR_ACTION *a, int64_t backoff, int warn_due,
			           int64_t now)
{
    QMSG   *m = q->msgs + i;

    a->disposition = QMGR_DEFER;
    if (warn_due && !(m->flags & (F_NULL_SENDER | F_WARNED))) {
	a->warn = 1;
	m->flags |= F_WARNED;
    }
    a->backoff = backoff;
    m->next_eligible = now + a->backoff;
    a->next_eligible = m->next_eligible;
    a->next_run = qmgr_run_for(q, now, m->next_eligible);
    if (a->next_run < q->next_run)
	a->next_run = q->next_run;
    m->flags &= ~F_DEFERRED;
    m->b = NIL;
    qmgr_catch_up(q, now);
    qmgr_heap_push(q, i);
}

/* E1: the message expires (it is bounced, or removed when forced and due). */
static void qmgr_msg_expire(QMGR *q, uint32_t i, QMGR_ACTION *a)
{
    a->disposition = QMGR_EXPIRE;
    a->forced = (q->msgs[i].flags & F_FORCE) != 0;
    qmgr_slot_free(q, i);
}

/* ------------------------------------------------ per-recipient policies */

static uint32_t qmgr_pass_new(QMGR *q)
{
    uint32_t k;

    if (q->pass_free != 0) {
	k = q->pass_free - 1;
	q->pass_free = q->passes[k].next_free;
    } else {
	q->passes = xrealloc(q->passes, (size_t) (q->npasses + 1) * sizeof(*q->passes));
	k = q->npasses++;
    }
    memset(&q->passes[k], 0, sizeof(q->passes[k]));
    return (k);
}

static void qmgr_pass_free(QMGR *q, uint32_t k)
{
    free(q->passes[k].rcpt);
    free(q->passes[k].pol);
    memset(&q->passes[k], 0, sizeof(q->passes[k]));
    q->passes[k].next_free = q->pass_free;
    q->pass_free = k + 1;
}

/* Recipient r (policy pol) of message i was deferred in this pass. */
static void qmgr_pass_defer(QMGR *q, uint32_t i, int r, int pol)
{
    QPASS  *ps;

    if (!(q->msgs[i].flags & F_POLICY))
	return;
    ps = &q->passes[q->msgs[i].a];
    for (int k = 0; k < ps->n; k++)
	if (ps->rcpt[k] == r)
	    return;
    if (ps->n == ps->cap) {
	ps->cap = ps->cap ? 2 * ps->cap : 8;
	ps->rcpt = xrealloc(ps->rcpt, (size_t) ps->cap * sizeof(int));
	ps->pol = xrealloc(ps->pol, (size_t) ps->cap * sizeof(int));
    }
    ps->rcpt[ps->n] = r;
    ps->pol[ps->n++] = pol;
}

/* Every recipient of a request was deferred. */
static void qmgr_pass_defer_all(QMGR *q, uint32_t i, const int *rcpts, const int *pols, int n)
{
    for (int k = 0; k < n; k++)
	qmgr_pass_defer(q, i, rcpts[k], pols ? pols[k] : 0);
}

/*
 * The end of a pass with per-recipient policies: recipients past their own
 * lifetime expire; if none is left the message does; the rest decide the
 * backoff (the earliest) and the delay warning.
 */
static void qmgr_msg_done_policies(QMGR *q, uint32_t i, QMGR_ACTION *a, int64_t now)
{
    QMSG   *m = q->msgs + i;
    QPASS  *ps = &q->passes[m->a];
    int     null = (m->flags & F_NULL_SENDER) != 0, left = 0, warn = 0;
    int64_t best = -1;
    int    *exp = xmalloc((size_t) (ps->n > 0 ? ps->n : 1) * sizeof(int));
    int     nexp = 0;

    for (int k = 0; k < ps->n; k++) {
	const QMGR_POLICY *pol = &q->pol[ps->pol[k] < q->npol ? ps->pol[k] : 0];
	int64_t b;

	if (qmgr_msg_expired(m, qmgr_policy_lifetime(pol, null), now)) {
	    exp[nexp++] = ps->rcpt[k];
	    continue;
	}
	left++;
	b = qmgr_backoff(pol->minimal_backoff_time, pol->maximal_backoff_time, m->create_time, now);
	if (best < 0 || b < best)
	    best = b;
	warn |= qmgr_warn_due(m, pol->delay_warning_time, now);
    }
    qmgr_pass_free(q, m->a);
    m->flags &= ~F_POLICY;
    if (left == 0) {
	free(exp);
	qmgr_msg_expire(q, i, a);
	return;
    }
    if (nexp > 0) {
	a->expired = exp;
	a->nexpired = nexp;
	qmgr_pend_own(q, exp, 0);
    } else {
	free(exp);
    }
    qmgr_msg_defer(q, i, a, best, warn, now);
}

/* R1, E1-E5, R2: all requests of the pass are done. */
static void qmgr_msg_done(QMGR *q, uint32_t i, int64_t now)
{
    QMSG   *m = q->msgs + i;
    QMGR_ACTION *a = qmgr_pend_new(q, QMGR_ACT_DONE, m->id);

    q->nactive--;
    if (!(m->flags & F_DEFERRED)) {		/* every recipient is final */
	if (m->flags & F_POLICY) {
	    qmgr_pass_free(q, m->a);
	    m->flags &= ~F_POLICY;
	}
	a->disposition = QMGR_REMOVE;
	qmgr_slot_free(q, i);
	return;
    }
    if (m->flags & F_POLICY) {
	qmgr_msg_done_policies(q, i, a, now);
	return;
    }
    if (qmgr_msg_expired(m, qmgr_lifetime(&q->p, (m->flags & F_NULL_SENDER) != 0), now)) {
	qmgr_msg_expire(q, i, a);
	return;
    }
    qmgr_msg_defer(q, i, a, qmgr_backoff(q->p.minimal_backoff_time, q->p.maximal_backoff_time,
					 m->create_time, now),
		   qmgr_warn_due(m, q->p.delay_warning_time, now), now);
}

/* One request's recipients are deferred (or suspended): account for it. */
static void qmgr_msg_req_done(QMGR *q, uint32_t i, int deferred, int64_t now)
{
    QMSG   *m = q->msgs + i;

    if (deferred)
	m->flags |= F_DEFERRED;
    if (m->b > 0)
	m->b--;
    if (m->b == 0)
	qmgr_msg_done(q, i, now);
}

/* D4: defer rcpts without delivery.  Takes over (frees) rcpts. */
static void qmgr_emit_suspend(QMGR *q, QDEST *d, QMGR_ID id, int *rcpts, int n)
{
    QMGR_ACTION *a = qmgr_pend_new(q, QMGR_ACT_SUSPEND, id);
    size_t  rlen = (size_t) n * sizeof(int);
    size_t  dlen = strlen(d->dsn) + 1, rslen = strlen(d->reason) + 1;
    size_t  klen = strlen(d->key) + 1;
    char   *buf;

    qmgr_mdest_mark(q, id, d->key);
    /* One block that lives until the action has been returned and passed. */
    buf = xmalloc(rlen + dlen + rslen + klen);
    memcpy(buf, rcpts, rlen);
    memcpy(buf + rlen, d->dsn, dlen);
    memcpy(buf + rlen + dlen, d->reason, rslen);
    memcpy(buf + rlen + dlen + rslen, d->key, klen);
    free(rcpts);
    a->rcpts = (const int *) (void *) buf;
    a->nrcpt = n;
    a->dsn = buf + rlen;
    a->reason = buf + rlen + dlen;
    a->dest = buf + rlen + dlen + rslen;
    qmgr_pend_own(q, buf, 0);
}

/*
 * D3/D4: a hop failure.  fail_cohorts += 1/window; dead at >= 1 (the
 * failed-cohort limit): window 0, every todo entry is suspended now, and new
 * recipients are suspended until the timer runs out.
 */
static void qmgr_dest_throttle(QMGR *q, QDEST *d, const char *dsn, const char *reason,
			               int64_t now)
{
    QREQ   *r;

    if (d->dead)
	return;
    d->fail_cohorts += 1.0 / (double) (d->window > 0 ? d->window : 1);
    if (d->fail_cohorts < 1.0) {
	if (d->window > 1)
	    d->window--;
	return;
    }
    d->dead = 1;
    d->window = 0;
    d->dead_until = now + q->p.minimal_backoff_time;
    d->dsn = xstrdup(dsn ? dsn : "4.0.0");
    d->reason = xasprintf("delivery temporarily suspended: %s", reason ? reason : "unknown");
    d->dprev = 0;
    d->dnext = q->dead_head;
    if (q->dead_head)
	q->dead_head->dprev = d;
    q->dead_head = d;
    q->ndead++;
    qmgr_ring_del(q, d);
    while ((r = d->todo_head) != 0) {
	d->todo_head = r->next;
	d->ntodo--;
	qmgr_req_release(q, r);
	qmgr_pass_defer_all(q, r->msg, r->rcpts, r->pols, r->nrcpt);
	free(r->pols);
	/* The SUSPEND action goes out before the DONE it may cause. */
	qmgr_emit_suspend(q, d, q->msgs[r->msg].id, r->rcpts, r->nrcpt);
	qmgr_msg_req_done(q, r->msg, 1, now);
	free(r);
    }
    d->todo_tail = 0;
}

/* D3: success, or a failure that does not blame the hop. */
static void qmgr_dest_unthrottle(QMGR *q, QDEST *d)
{
    if (d->dead) {
	qmgr_dest_revive(q, d);
	return;
    }
    if (d->window < d->busy + q->p.initial_destination_concurrency)
	d->window++;
    if (d->window > q->p.default_destination_concurrency_limit)
	d->window = q->p.default_destination_concurrency_limit;
    d->fail_cohorts = 0;
}

/* ----------------------------------------------------------- life cycle */

QMGR   *qmgr_create(const QMGR_PARAMS *p, int64_t now)
{
    QMGR   *q = xcalloc(1, sizeof(*q));

    q->p = *p;
    qmgr_fix_params(&q->p);
    q->anchor = now;
    q->next_run = now;
    q->free_head = NIL;
    q->fin.head = q->fin.tail = NIL;
    q->fdef.head = q->fdef.tail = NIL;
    qmgr_policy_zero(q);
    return (q);
}

void    qmgr_free(QMGR *q)
{
    uint32_t k;
    size_t  i;

    if (q == 0)
	return;
    for (k = 0; k < q->req_used; k++) {
	if (q->reqs[k]) {
	    free(q->reqs[k]->rcpts);
	    free(q->reqs[k]->pols);
	    free(q->reqs[k]);
	}
    }
    /* Todo requests are in reqs[] as well; nothing else owns them. */
    for (k = 0; k < q->ndbuckets; k++) {
	QDEST  *d, *next;

	for (d = q->dbuckets[k]; d; d = next) {
	    next = d->hnext;
	    free(d->key);
	    free(d->dsn);
	    free(d->reason);
	    free(d);
	}
    }
    for (i = q->pend_head; i < q->pend_n; i++) {
	free(q->pend[i].own1);
	free(q->pend[i].own2);
    }
    qmgr_garbage_free(q);
    for (k = 0; k < q->npasses; k++) {
	free(q->passes[k].rcpt);
	free(q->passes[k].pol);
    }
    free(q->passes);
    free(q->pol);
    free(q->garbage);
    free(q->pend);
    free(q->reqs);
    free(q->req_gen);
    free(q->req_free);
    free(q->dbuckets);
    for (k = 0; k < q->nmdbuckets; k++) {
	QMDEST *e, *next;

	for (e = q->mdbuckets[k]; e; e = next) {
	    next = e->hnext;
	    free(e);
	}
    }
    for (k = 0; k < q->nnbuckets; k++) {
	QDNAME *n, *next;

	for (n = q->nbuckets_tab[k]; n; n = next) {
	    next = n->hnext;
	    free(n->key);
	    free(n);
	}
    }
    free(q->mdbuckets);
    free(q->nbuckets_tab);
    free(q->ages);
    free(q->msgs);
    free(q->buckets);
    free(q->heap);
    free(q);
}

void    qmgr_reload(QMGR *q, const QMGR_PARAMS *p, int64_t now)
{
    q->p = *p;
    qmgr_fix_params(&q->p);
    q->anchor = now;
    q->next_run = now;
    qmgr_policy_zero(q);
    qmgr_forget_dead(q);
}

/* -------------------------------------------------------------- messages */

void    qmgr_add(QMGR *q, QMGR_ID id, const QMGR_MSGINFO *info, int64_t now)
{
    uint32_t i = qmgr_find(q, id);
    QMSG   *m;

    if (i != NIL) {
	if (q->msgs[i].state == M_LOADING || q->msgs[i].state == M_ACTIVE)
	    return;				/* caller bug: keep the active copy */
	qmgr_detach(q, i);
	qmgr_slot_free(q, i);
    }
    i = qmgr_slot_alloc(q, id);
    m = q->msgs + i;
    m->create_time = info->create_time;
    if (q->oldest_valid && (q->oldest_ct == 0 || m->create_time < q->oldest_ct))
	q->oldest_ct = m->create_time;
    m->arrival_time = info->arrival_time;
    m->next_eligible = info->next_eligible;
    m->flags = (info->null_sender ? F_NULL_SENDER : 0) | (info->warned ? F_WARNED : 0)
	| (info->force_expire ? F_FORCE : 0);
    switch (info->state) {
    case QMGR_MSG_INCOMING:
	qmgr_set_state(q, i, M_READY_IN);
	if (m->next_eligible == 0)
	    m->next_eligible = now;
	qmgr_fifo_push(q, &q->fin, i);
	break;
    case QMGR_MSG_HOLD:
	qmgr_set_state(q, i, M_HOLD);
	q->nhold++;
	break;
    default:
	qmgr_catch_up(q, now);
	qmgr_heap_push(q, i);
	break;
    }
}

void    qmgr_remove(QMGR *q, QMGR_ID id)
{
    uint32_t i = qmgr_find(q, id);

    if (i == NIL)
	return;
    if (q->msgs[i].state == M_ACTIVE)
	return;				/* not while active */
    if (q->msgs[i].state == M_LOADING) {
	/* The message could not be loaded after ACTIVATE. */
	q->nactive--;
    } else {
	qmgr_detach(q, i);
    }
    qmgr_slot_free(q, i);
}

int     qmgr_hold(QMGR *q, QMGR_ID id)
{
    uint32_t i = qmgr_find(q, id);

    if (i == NIL || q->msgs[i].state == M_ACTIVE || q->msgs[i].state == M_LOADING)
	return (-1);
    if (q->msgs[i].state == M_HOLD)
	return (0);
    qmgr_detach(q, i);
    qmgr_set_state(q, i, M_HOLD);
    q->nhold++;
    return (0);
}

/* postsuper -H: back to deferred with the time it had (T3). */
int     qmgr_release(QMGR *q, QMGR_ID id, int64_t now)
{
    uint32_t i = qmgr_find(q, id);

    if (i == NIL || q->msgs[i].state != M_HOLD)
	return (-1);
    q->nhold--;
    qmgr_catch_up(q, now);
    qmgr_heap_push(q, i);
    return (0);
}

int     qmgr_force_expire(QMGR *q, QMGR_ID id)
{
    uint32_t i = qmgr_find(q, id);

    if (i == NIL)
	return (-1);
    q->msgs[i].flags |= F_FORCE;
    return (0);
}

int     qmgr_is_active(const QMGR *q, QMGR_ID id)
{
    uint32_t i = qmgr_find(q, id);

    return (i != NIL && (q->msgs[i].state == M_ACTIVE || q->msgs[i].state == M_LOADING));
}

/* postqueue -f: forget dead destinations, scan everything ignoring times. */
void    qmgr_flush_start(QMGR *q)
{
    qmgr_forget_dead(q);
}

/* The max deferred messages due first become ready now; returns how many are left. */
uint32_t qmgr_flush_some(QMGR *q, int64_t now, uint32_t max)
{
    for (uint32_t k = 0; k < max && q->heap_n > 0; k++) {
	uint32_t i = q->heap[0];

	qmgr_heap_delete(q, i);
	qmgr_set_state(q, i, M_READY_DEF);
	q->msgs[i].next_eligible = now;
	qmgr_fifo_push(q, &q->fdef, i);
    }
    return (q->heap_n);
}

void    qmgr_flush(QMGR *q, int64_t now)
{
    qmgr_flush_start(q);
    (void) qmgr_flush_some(q, now, UINT32_MAX);
}

/* postqueue -s / -i: time set to now, moved to incoming. */
void    qmgr_flush_ids(QMGR *q, const QMGR_ID *ids, int n, int64_t now)
{
    int     k;

    qmgr_forget_dead(q);
    for (k = 0; k < n; k++) {
	uint32_t i = qmgr_find(q, ids[k]);

	if (i == NIL || (q->msgs[i].state != M_DEFERRED && q->msgs[i].state != M_READY_DEF))
	    continue;
	qmgr_detach(q, i);
	qmgr_set_state(q, i, M_READY_IN);
	q->msgs[i].next_eligible = now;
	qmgr_fifo_push(q, &q->fin, i);
    }
}

/* ------------------------------------------------------------ activation */

typedef struct QGROUP {
    unsigned seq;
    int     pos;
    QDEST  *dest;
} QGROUP;

static int qmgr_group_cmp(const void *x, const void *y)
{
    const QGROUP *a = x, *b = y;

    if (a->seq != b->seq)
	return (a->seq < b->seq ? -1 : 1);
    return (a->pos < b->pos ? -1 : a->pos > b->pos);
}

void    qmgr_activated(QMGR *q, QMGR_ID id, const int *rcpts, const char *const *dests,
		               int nrcpt, int64_t now)
{
    qmgr_activated_policies(q, id, rcpts, dests, NULL, nrcpt, now);
}

void    qmgr_activated_policies(QMGR *q, QMGR_ID id, const int *rcpts, const char *const *dests,
				        const int *policies, int nrcpt, int64_t now)
{
    uint32_t i = qmgr_find(q, id);
    QGROUP *g;
    int     k, start, limit = q->p.default_destination_recipient_limit;
    unsigned nseq = 0;

    if (i == NIL || q->msgs[i].state != M_LOADING)
	return;
    qmgr_set_state(q, i, M_ACTIVE);
    q->msgs[i].flags &= ~(F_DEFERRED | F_POLICY);
    q->msgs[i].b = 0;
    qmgr_mdest_set(q, id, dests, nrcpt);
    if (policies) {
	/* Only when some recipient has a policy of its own: else the plain rules. */
	for (k = 0; k < nrcpt; k++)
	    if (policies[k] != 0)
		break;
	if (k == nrcpt)
	    policies = NULL;
    }
    if (policies && nrcpt > 0) {
	q->msgs[i].flags |= F_POLICY;
	q->msgs[i].a = qmgr_pass_new(q);
    }
    if (nrcpt <= 0) {
	/* Nothing to deliver.  A forced expiry with nothing sent still expires. */
	if (q->msgs[i].flags & F_FORCE)
	    q->msgs[i].flags |= F_DEFERRED;
	qmgr_msg_done(q, i, now);
	return;
    }

    /* Group recipients by destination, in order of first appearance. */
    q->stamp++;
    g = xmalloc((size_t) nrcpt * sizeof(*g));
    for (k = 0; k < nrcpt; k++) {
	QDEST  *d = qmgr_dest_find(q, dests[k]);

	if (d == 0)
	    d = qmgr_dest_create(q, dests[k]);
	if (d->stamp != q->stamp) {
	    d->stamp = q->stamp;
	    d->seq = nseq++;
	}
	g[k].seq = d->seq;
	g[k].pos = k;
	g[k].dest = d;
    }
    qsort(g, (size_t) nrcpt, sizeof(*g), qmgr_group_cmp);

    /*
     * A guard count keeps a suspended chunk from completing the message
     * before its other requests exist.
     */
    q->msgs[i].b = 1;
    for (start = 0; start < nrcpt;) {
	QDEST  *d = g[start].dest;
	int     end = start, n;
	int    *chunk, *polchunk;

	while (end < nrcpt && g[end].dest == d && end - start < limit)
	    end++;
	n = end - start;
	chunk = xmalloc((size_t) n * sizeof(int));
	polchunk = policies ? xmalloc((size_t) n * sizeof(int)) : NULL;
	for (k = 0; k < n; k++) {
	    chunk[k] = rcpts[g[start + k].pos];
	    if (polchunk)
		polchunk[k] = policies[g[start + k].pos];
	}
	if (d->dead) {
	    /* D4: a dead destination defers new recipients at once. */
	    qmgr_pass_defer_all(q, i, chunk, polchunk, n);
	    free(polchunk);
	    qmgr_emit_suspend(q, d, id, chunk, n);
	    q->msgs[i].flags |= F_DEFERRED;
	} else {
	    QREQ   *r = qmgr_req_new(q, i, d, chunk, n, polchunk);

	    free(chunk);
	    if (d->todo_tail)
		d->todo_tail->next = r;
	    else
		d->todo_head = r;
	    d->todo_tail = r;
	    d->ntodo++;
	    q->msgs[i].b++;
	    qmgr_ring_add(q, d);
	}
	start = end;
    }
    free(g);
    qmgr_msg_req_done(q, i, 0, now);		/* drop the guard */
}

/* -------------------------------------------------------------- results */

void    qmgr_delivered(QMGR *q, uint64_t req, int ndeferred,
		               const char *hop_dsn, const char *hop_reason, int64_t now)
{
    QREQ   *r = qmgr_req_find(q, req);

    /* Without the names of the deferred, every recipient of the request counts. */
    if (r && ndeferred > 0)
	qmgr_pass_defer_all(q, r->msg, r->rcpts, r->pols, r->nrcpt);
    qmgr_delivered_rcpts(q, req, NULL, ndeferred, hop_dsn, hop_reason, now);
}

void    qmgr_delivered_rcpts(QMGR *q, uint64_t req, const int *deferred, int ndeferred,
			             const char *hop_dsn, const char *hop_reason, int64_t now)
{
    QREQ   *r = qmgr_req_find(q, req);
    QDEST  *d;

    if (r == 0)
	return;
    for (int k = 0; deferred && k < ndeferred; k++) {
	int     pol = 0;

	for (int j = 0; j < r->nrcpt; j++)
	    if (r->rcpts[j] == deferred[k])
		pol = r->pols ? r->pols[j] : 0;
	qmgr_pass_defer(q, r->msg, deferred[k], pol);
    }
    d = r->dest;
    if (ndeferred > 0)
	qmgr_mdest_mark(q, q->msgs[r->msg].id, d->key);
    qmgr_req_release(q, r);
    d->busy--;
    if (hop_reason || hop_dsn)
	qmgr_dest_throttle(q, d, hop_dsn, hop_reason, now);
    else
	qmgr_dest_unthrottle(q, d);
    qmgr_msg_req_done(q, r->msg, ndeferred > 0, now);
    free(r->rcpts);
    free(r->pols);
    free(r);
    qmgr_dest_gc(q, d);
}

/* ------------------------------------------------------------- the loop */

/* S2-S4: the run at grid point L takes every deferred message due by L + 1. */
static void qmgr_queue_run(QMGR *q, int64_t L)
{
    while (q->heap_n > 0 && q->msgs[q->heap[0]].next_eligible <= L + 1) {
	uint32_t i = q->heap[0];

	qmgr_heap_delete(q, i);
	qmgr_set_state(q, i, M_READY_DEF);
	qmgr_fifo_push(q, &q->fdef, i);
    }
}

static void qmgr_timers(QMGR *q, int64_t now)
{
    QDEST  *d, *next;

    for (d = q->dead_head; d; d = next) {
	next = d->dnext;
	if (d->dead_until <= now) {
	    qmgr_dest_revive(q, d);
	    qmgr_dest_gc(q, d);
	}
    }

    /*
     * The grid is fixed: a late call performs the run of the latest grid
     * point, with that point's eligibility test, and the next run is the
     * next grid point (no drift).  This also makes skipping idle runs (see
     * qmgr_next_wakeup) exact.
     */
    if (now >= q->next_run) {
	int64_t L = qmgr_run_at_or_before(q, now);

	qmgr_queue_run(q, L);
	q->next_run = L + q->p.queue_run_delay;
    }
}

static int qmgr_can_feed(const QMGR *q)
{
    return (q->nactive < q->p.qmgr_message_active_limit
	    && (q->fin.count > 0 || q->fdef.count > 0));
}

static int qmgr_can_dispatch(const QMGR *q)
{
    const QDEST *d;

    for (d = q->ring_head; d; d = d->rnext)
	if (d->busy < d->window && d->ntodo > 0)
	    return (1);
    return (0);
}

int     qmgr_run(QMGR *q, int64_t now, QMGR_ACTION *out, int max)
{
    int     n = 0, idle;

    qmgr_garbage_free(q);
    qmgr_timers(q, now);

    /* Results first: SUSPEND and DONE actions from earlier calls. */
    while (n < max && q->pend_head < q->pend_n) {
	QPEND  *pe = q->pend + q->pend_head++;

	out[n++] = pe->act;
	qmgr_garbage_add(q, pe->own1);
	qmgr_garbage_add(q, pe->own2);
    }

    /* S6/S7: feed the active set, incoming first, alternating when both have work. */
    while (n < max && qmgr_can_feed(q)) {
	QFIFO  *f;
	uint32_t i;

	if (q->fin.count > 0 && (q->fdef.count == 0 || !q->prefer_def)) {
	    f = &q->fin;
	    q->prefer_def = 1;
	} else {
	    f = &q->fdef;
	    q->prefer_def = 0;
	}
	i = f->head;
	qmgr_fifo_unlink(q, f, i);
	qmgr_set_state(q, i, M_LOADING);
	q->nactive++;
	memset(out + n, 0, sizeof(out[n]));
	out[n].type = QMGR_ACT_ACTIVATE;
	out[n].id = q->msgs[i].id;
	n++;
    }

    /*
     * Dispatch deliveries round-robin over destinations, while their window
     * allows.  Requests are created lazily, so a caller that answers each
     * DELIVER before asking for the next sees the window shrink in between.
     */
    idle = 0;
    while (n < max && q->ring_n > 0 && idle < q->ring_n) {
	QDEST  *d = q->ring_head;

	qmgr_ring_del(q, d);
	if (d->busy < d->window && d->ntodo > 0) {
	    QREQ   *r = d->todo_head;

	    d->todo_head = r->next;
	    if (d->todo_head == 0)
		d->todo_tail = 0;
	    r->next = 0;
	    d->ntodo--;
	    d->busy++;
	    memset(out + n, 0, sizeof(out[n]));
	    out[n].type = QMGR_ACT_DELIVER;
	    out[n].id = q->msgs[r->msg].id;
	    out[n].req = r->id;
	    out[n].dest = d->key;
	    out[n].rcpts = r->rcpts;
	    out[n].nrcpt = r->nrcpt;
	    n++;
	    idle = 0;
	} else {
	    idle++;
	}
	if (d->ntodo > 0)
	    qmgr_ring_add(q, d);
    }
    return (n);
}

int64_t qmgr_next_wakeup(const QMGR *q, int64_t now)
{
    int64_t t = INT64_MAX;
    const QDEST *d;

    if (q->pend_head < q->pend_n || qmgr_can_feed(q) || qmgr_can_dispatch(q))
	return (now);
    for (d = q->dead_head; d; d = d->dnext)
	if (d->dead_until < t)
	    t = d->dead_until;
    if (q->heap_n > 0) {
	/* The run that will take the earliest message; idle runs are skipped. */
	int64_t run = qmgr_run_at_or_after(q, q->msgs[q->heap[0]].next_eligible - 1);

	if (run < q->next_run)
	    run = q->next_run;
	if (run < t)
	    t = run;
    }
    if (t < now)
	t = now;
    return (t);
}

/* --------------------------------------------------------------- queries */

void    qmgr_msg_state(const QMGR *q, QMGR_ID id, QMGR_MSGSTATE *st)
{
    uint32_t i = qmgr_find(q, id);
    const QMSG *m;
    QMDEST **pp;

    memset(st, 0, sizeof(*st));
    if (i == NIL)
	return;
    m = q->msgs + i;
    st->known = 1;
    st->next_eligible = m->next_eligible;
    switch (m->state) {
    case M_LOADING:
    case M_ACTIVE:
	st->active = 1;
	st->state = QMGR_MSG_INCOMING;
	break;
    case M_HOLD:
	st->state = QMGR_MSG_HOLD;
	break;
    case M_READY_IN:
	st->state = QMGR_MSG_INCOMING;
	st->next_attempt = m->next_eligible;
	break;
    case M_READY_DEF:
	st->state = QMGR_MSG_DEFERRED;
	st->next_attempt = qmgr_run_at_or_before(q, q->next_run - 1);
	break;
    default:
	st->state = QMGR_MSG_DEFERRED;
	st->next_attempt = qmgr_run_at_or_after(q, m->next_eligible - 1);
	if (st->next_attempt < q->next_run)
	    st->next_attempt = q->next_run;
	break;
    }
    /* Its destinations as of its last pass: is one of them dead now? */
    if ((pp = qmgr_mdest_slot(q, id)) != 0) {
	for (int k = 0; k < (*pp)->n; k++) {
	    const QDEST *d = qmgr_dest_find(q, (*pp)->names[k]->key);

	    if (d && d->dead) {
		st->destination_dead = 1;
		if (d->dead_until > st->dead_until)
		    st->dead_until = d->dead_until;
	    }
	}
    }
}

int     qmgr_dest_dead(const QMGR *q, const char *dest, int64_t *until)
{
    const QDEST *d = qmgr_dest_find(q, dest);

    if (d == 0 || !d->dead)
	return (0);
    if (until)
	*until = d->dead_until;
    return (1);
}

int     qmgr_dead_count(const QMGR *q)
{
    return (q->ndead);
}

int64_t qmgr_oldest_create_time(QMGR *q)
{
    int64_t oldest = 0;
    uint32_t i;

    /*
     * Kept up to date as messages come (qmgr_add) and looked for again
     * only after the oldest one has left (qmgr_slot_free): a scrape of
     * /metrics during an outage, when the queue is large and its oldest
     * message stays, does not scan a million slots on the loop.
     */
    if (q->oldest_valid)
	return (q->oldest_ct);
    for (i = 0; i < q->msg_used; i++)
	if (q->msgs[i].state != M_FREE && (oldest == 0 || q->msgs[i].create_time < oldest))
	    oldest = q->msgs[i].create_time;
    q->oldest_ct = oldest;
    q->oldest_valid = 1;
    return (oldest);
}

void    qmgr_dest_walk(const QMGR *q, QMGR_DEST_FN fn, void *ctx)
{
    uint32_t k;
    QDEST  *d;

    for (k = 0; k < q->ndbuckets; k++)
	for (d = q->dbuckets[k]; d; d = d->hnext)
	    fn(ctx, d->key, d->dead);
}

void    qmgr_counts(const QMGR *q, QMGR_COUNTS *c)
{
    c->incoming = (int) q->fin.count;
    c->active = q->nactive;
    c->deferred = (int) (q->heap_n + q->fdef.count);
    c->hold = q->nhold;
}

size_t  qmgr_memory(const QMGR *q)
{
    size_t  sum = sizeof(*q);

    sum += (size_t) q->msg_cap * sizeof(*q->msgs);
    sum += (size_t) q->nbuckets * sizeof(*q->buckets);
    sum += (size_t) q->heap_cap * sizeof(*q->heap);
    sum += (size_t) q->req_cap * (sizeof(*q->reqs) + sizeof(*q->req_gen) + sizeof(*q->req_free));
    sum += (size_t) q->ndbuckets * sizeof(*q->dbuckets);
    sum += (size_t) q->ndest * sizeof(QDEST);
    sum += (size_t) (q->nmdbuckets + q->nnbuckets) * sizeof(void *) + q->mdest_bytes;
    sum += q->pend_cap * sizeof(*q->pend) + q->garbage_cap * sizeof(*q->garbage);
    sum += (size_t) q->ages_cap * sizeof(*q->ages);
    return (sum);
}

/* ---------------------------------------------------------------- words */

void    qmgr_explain_backoff(const QMGR_PARAMS *p, int64_t age, char *out, size_t len)
{
    int64_t b = age;
    int     capped = 0, raised = 0;

    if (b > p->maximal_backoff_time) {
	b = p->maximal_backoff_time;
	capped = 1;
    }
    if (b < p->minimal_backoff_time) {
	b = p->minimal_backoff_time;
	raised = 1;
    }
    if (capped && raised)
	snprintf(out, len, "backoff %llds (age %llds capped at maximal_backoff_time %llds, "
		 "then raised to minimal_backoff_time, which wins)",
		 (long long) b, (long long) age, (long long) p->maximal_backoff_time);
    else if (capped)
	snprintf(out, len, "backoff %llds (age %llds capped at maximal_backoff_time)",
		 (long long) b, (long long) age);
    else if (raised)
	snprintf(out, len, "backoff %llds (age %llds raised to minimal_backoff_time)",
		 (long long) b, (long long) age);
    else
	snprintf(out, len, "backoff %llds (age %llds)", (long long) b, (long long) age);
}

/* ------------------------------------------------------------ relayq top */

/* qshape's buckets (showq.c): [0, 5 min), then doubling, the last unbounded. */
int     qmgr_age_bucket(int64_t age_s)
{
    int64_t k = age_s / (60 * 5);
    int     b = 1;

    if (age_s < 300)
	return (0);
    while (k >= 2 && b < QMGR_AGE_BUCKETS - 1) {
	k >>= 1;
	b++;
    }
    return (b);
}

void    qmgr_top(const QMGR *q, int64_t now, QMGR_TOP *out)
{
    memset(out, 0, sizeof(*out));
    qmgr_counts(q, &out->counts);
    for (uint32_t k = 0; k < q->nages; k++) {
	/* Counted by the minute of arrival: as if it arrived at the minute's start. */
	int     b = qmgr_age_bucket(now - q->ages[k].minute * 60);

	for (int st = 0; st < 4; st++)
	    out->age[st][b] += q->ages[k].n[st];
    }
    out->ndead = q->ndead;
    out->ndests = q->nnames;
    out->deferred_known = q->ndeferred_known;
    out->next_run = q->next_run > now ? q->next_run : qmgr_run_at_or_after(q, now);
    if (q->fdef.count > 0) {
	out->next_due = now;
    } else if (q->heap_n > 0) {
	out->next_due = qmgr_run_at_or_after(q, q->msgs[q->heap[0]].next_eligible - 1);
	if (out->next_due < q->next_run)
	    out->next_due = q->next_run;
    }
}

static int qmgr_top_before(const QMGR_TOP_DEST *a, const QMGR_TOP_DEST *b)
{
    if (a->deferred != b->deferred)
	return (a->deferred > b->deferred);
    if (a->dead != b->dead)
	return (a->dead > b->dead);
    return (strcmp(a->dest, b->dest) < 0);
}

/* Keep out[0..*n) sorted, at most max: insert e where it belongs. */
static void qmgr_top_insert(QMGR_TOP_DEST *out, int *n, int max, const QMGR_TOP_DEST *e)
{
    int     k = *n;

    if (k == max && !qmgr_top_before(e, &out[k - 1]))
	return;
    if (k == max)
	k--;
    else
	(*n)++;
    while (k > 0 && qmgr_top_before(e, &out[k - 1])) {
	out[k] = out[k - 1];
	k--;
    }
    out[k] = *e;
}

static void qmgr_top_fill(const QMGR *q, const char *key, uint32_t ndeferred, QMGR_TOP_DEST *e)
{
    const QDEST *d = qmgr_dest_find(q, key);

    memset(e, 0, sizeof(*e));
    e->dest = key;
    e->deferred = ndeferred;
    if (d && d->dead) {
	e->dead = 1;
	e->dead_until = d->dead_until;
	e->dsn = d->dsn;
	e->reason = d->reason;
    }
}

int     qmgr_top_dests(const QMGR *q, QMGR_TOP_DEST *out, int max)
{
    int     n = 0;
    QMGR_TOP_DEST e;

    if (max <= 0)
	return (0);
    /* The distinct destinations of the last passes: a few for a relay, not one per message. */
    for (uint32_t k = 0; k < q->nnbuckets; k++)
	for (const QDNAME *nm = q->nbuckets_tab[k]; nm; nm = nm->hnext)
	    if (nm->ndeferred > 0) {
		qmgr_top_fill(q, nm->key, nm->ndeferred, &e);
		qmgr_top_insert(out, &n, max, &e);
	    }
    /* Dead destinations with nothing deferred yet (their messages are still in a pass). */
    for (const QDEST *d = q->dead_head; d; d = d->dnext) {
	int     seen = 0;

	for (int k = 0; k < n && !seen; k++)
	    seen = strcmp(out[k].dest, d->key) == 0;
	if (!seen) {
	    qmgr_top_fill(q, d->key, 0, &e);
	    qmgr_top_insert(out, &n, max, &e);
	}
    }
    return (n);
}

int     qmgr_top_check(const QMGR *q)
{
    uint32_t age[4] = {0, 0, 0, 0}, known = 0;
    QMGR_COUNTS c;

    for (uint32_t k = 0; k < q->nages; k++)
	for (int st = 0; st < 4; st++)
	    age[st] += q->ages[k].n[st];
    qmgr_counts(q, &c);
    if (age[0] != (uint32_t) c.incoming || age[1] != (uint32_t) c.active
	|| age[2] != (uint32_t) c.deferred || age[3] != (uint32_t) c.hold)
	return (-1);
    for (uint32_t i = 0; i < q->msg_used; i++) {
	QMDEST **pp;
	int     any = 0;

	if (qmgr_pub_state(q->msgs[i].state) != 2 || (pp = qmgr_mdest_slot(q, q->msgs[i].id)) == 0)
	    continue;
	for (int k = 0; k < (*pp)->n; k++)
	    any |= QMDEST_FLAGS(*pp)[k];
	known += any != 0;
    }
    if (known != q->ndeferred_known)
	return (-2);
    for (uint32_t k = 0; k < q->nages; k++)
	if ((k > 0 && q->ages[k - 1].minute >= q->ages[k].minute)
	    || (q->ages[k].n[0] | q->ages[k].n[1] | q->ages[k].n[2] | q->ages[k].n[3]) == 0)
	    return (-3);
    return (0);
}
