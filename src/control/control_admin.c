/*
 * control_admin - postsuper's queue edits (delete, hold, release, requeue,
 * expire): the one implementation, used by the daemon's admin socket and
 * by the CLI on the queue directly while the daemon is down (then it holds
 * the queue lock, QUEUE_OPEN_ADMIN, so nothing else writes the queue).
 *
 * All changes of one request go in one batch, made of narrow updates
 * (state, flags), so that an edit never writes back a row it read earlier;
 * nothing is logged before that batch has committed, so the log never
 * claims a change the queue does not have.  Wording of the log lines and
 * summaries is postsuper's (spec section 6 and L10): "ID: placed on hold",
 * "Placed on hold: 1 message".  What the daemon adds (its scheduler is
 * told at once; a message being delivered is not changed) comes through
 * CONTROL_EDIT_HOOKS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/control.h"
#include "log/log.h"

typedef struct ADMIN_OP {
    const char *name;
    int     op;				/* CONTROL_OP_* */
    const char *done;			/* per message, logged */
    const char *summary;		/* "Placed on hold: N message(s)" */
} ADMIN_OP;

static const ADMIN_OP admin_ops[] = {
    {"delete", CONTROL_OP_DELETE, "removed", "Deleted"},
    {"hold", CONTROL_OP_HOLD, "placed on hold", "Placed on hold"},
    {"release", CONTROL_OP_RELEASE, "released from hold", "Released from hold"},
    {"requeue", CONTROL_OP_REQUEUE, "requeued", "Requeued"},
    {"expire", CONTROL_OP_EXPIRE, "marked for forced expiry", "Marked for expiry"},
};

int     control_op(const char *name)
{
    for (size_t k = 0; k < ARRAY_LEN(admin_ops); k++)
	if (strcmp(admin_ops[k].name, name) == 0)
	    return (admin_ops[k].op);
    return (-1);
}

/*
 * One request.  It is carried out in slices of at most ADMIN_SLICE
 * messages, each its own batch (ADMIN_SLICE_REQUEUE for requeue, which
 * loads each message's content): the next slice is read and submitted
 * once the previous one has committed, so an edit of a whole queue never
 * holds the event loop (nor the writer) for long, and its memory is one
 * slice.  Each slice is logged once it has committed; the summary comes
 * at the end.
 */
#define ADMIN_SLICE		500
#define ADMIN_SLICE_REQUEUE	64
#define ADMIN_SCAN_MAX		(2 * ADMIN_SLICE)	/* messages looked at per turn when none changes */

typedef struct ADMIN_SEL {
    uint64_t *seqs;
    int     n, cap;
} ADMIN_SEL;

typedef struct EDIT {
    QUEUE  *q;
    const ADMIN_OP *ao;
    CONTROL_EDIT_HOOKS h;
    int64_t now;
    QBATCH *b;				/* this slice's */
    BUF     out;			/* per-ID problems, then the summary */
    char  (*qids)[16];			/* this slice: the messages changed */
    char  (*newqids)[16];		/* requeue: their new IDs */
    QMSG  **copies;			/* requeue: the new messages */
    int     n;				/* changed in this slice */
    int     total;			/* changed in the slices committed */
    int     slice;			/* messages per slice */
    int     all;			/* ALL: the rest comes from cur */
    QCURSOR cur;
    ADMIN_SEL sel;			/* IDs: the rest is sel.seqs[next..] */
    int     next;
    int     failed;			/* a commit failed: no more slices */
    int     stopped;			/* the daemon is stopping: no more slices */
    CONTROL_EDIT_DONE done;
    void   *done_ctx;
} EDIT;

static void admin_sel_add(ADMIN_SEL *s, uint64_t seq)
{
    int     i;

    for (i = 0; i < s->n; i++)
	if (s->seqs[i] == seq)
	    return;				/* same ID twice on the command line */
    if (s->n == s->cap) {
	s->cap = s->cap ? 2 * s->cap : 64;
	s->seqs = xrealloc(s->seqs, s->cap * sizeof(*s->seqs));
    }
    s->seqs[s->n++] = seq;
}

/*
 * Does op change msg?  postsuper skips what is already in the target
 * state.  A corrupt message can only be deleted (and only by its ID: ALL
 * does not select it).
 */
static int admin_applies(int op, const QMSG *msg)
{
    if (msg->state == QSTATE_CORRUPT)
	return (op == CONTROL_OP_DELETE);
    if (op == CONTROL_OP_HOLD)
	return (msg->state != QSTATE_HOLD);
    if (op == CONTROL_OP_RELEASE)
	return (msg->state == QSTATE_HOLD);
    if (op == CONTROL_OP_EXPIRE)
	return ((msg->flags & QFLAG_FORCE_EXPIRE) == 0);
    return (1);
}

/* Add op on msg (loaded with content for requeue) to the batch. */
static void admin_apply(EDIT *e, QMSG *msg, int64_t now)
{
    int     i = e->n;

    snprintf(e->qids[i], sizeof(e->qids[i]), "%s", msg->qid);
    switch (e->ao->op) {
    case CONTROL_OP_DELETE:
	queue_batch_delete(e->b, msg->seq);
	break;
    case CONTROL_OP_HOLD:
	queue_batch_set_state(e->b, msg->seq, QSTATE_HOLD);
	break;
    case CONTROL_OP_RELEASE:
	/* Postfix moves hold -> deferred; next_eligible (mtime) is kept. */
	queue_batch_set_state(e->b, msg->seq, QSTATE_DEFERRED);
	break;
    case CONTROL_OP_EXPIRE:
	queue_batch_set_flags(e->b, msg->seq, QFLAG_FORCE_EXPIRE);
	break;
    case CONTROL_OP_REQUEUE:{
	    /*
	     * postsuper -r: a new queue file with a new ID; arrival time
	     * kept, create_time reset (so backoff and lifetime start over),
	     * the defer log (our reasons) gone, delay warning due again.  The
	     * attempt history belongs to the old ID, so the count starts over
	     * as well.
	     */
	    QMSG   *nm = qmsg_dup(msg);

	    queue_assign_id(e->q, nm);
	    nm->state = QSTATE_INCOMING;
	    nm->create_time = now;
	    nm->next_eligible = now;
	    nm->attempts = 0;
	    nm->flags &= ~QFLAG_WARNED;
	    for (int k = 0; k < nm->nrcpt; k++) {
		if (nm->rcpts[k].state != QRCPT_PENDING)
		    continue;
		free(nm->rcpts[k].reason);
		nm->rcpts[k].reason = 0;
	    }
	    queue_batch_insert(e->b, nm);
	    queue_batch_delete(e->b, msg->seq);
	    snprintf(e->newqids[i], sizeof(e->newqids[i]), "%s", nm->qid);
	    e->copies[i] = nm;
	    break;
	}
    }
    e->n++;
    if (e->h.changed)
	e->h.changed(e->h.ctx, e->ao->op, msg, now);
}

/* Parse the request and select the messages.  Returns NULL (text in out) for a bad request. */
static EDIT *edit_prepare(QUEUE *q, const char *op, char *const *ids, int n, int64_t now,
			          const CONTROL_EDIT_HOOKS *h, BUF *out)
{
    EDIT   *e;
    int     i;
    int     opnum = control_op(op);

    if (opnum < 0) {
	buf_printf(out, "unknown operation: %s\n", op);
	return (NULL);
    }
    e = xcalloc(1, sizeof(*e));
    e->q = q;
    e->now = now;
    for (size_t k = 0; k < ARRAY_LEN(admin_ops); k++)
	if (admin_ops[k].op == opnum)
	    e->ao = &admin_ops[k];
    if (h)
	e->h = *h;
    e->slice = opnum == CONTROL_OP_REQUEUE ? ADMIN_SLICE_REQUEUE : ADMIN_SLICE;
    for (i = 0; i < n; i++)
	if (strcmp(ids[i], "ALL") == 0)
	    e->all = 1;
    if (e->all) {
	/* What is in the queue now: a requeue's copies, or mail arriving meanwhile, are not taken. */
	queue_cursor_init(&e->cur);
	e->cur.max_seq = queue_last_seq(q);
	if (opnum == CONTROL_OP_RELEASE)
	    e->cur.only_state = QSTATE_HOLD;
	else if (opnum == CONTROL_OP_HOLD)
	    e->cur.skip_state = QSTATE_HOLD;	/* nothing there to change; 1M just held need no second look */
    } else {
	for (i = 0; i < n; i++) {
	    QMSG   *m;
	    char    why[256];
	    int     status = queue_load_qid(q, ids[i], 0, &m, why, sizeof(why));

	    if (status != QUEUE_OK) {
		/* postsuper is silent about missing files; a typo deserves a word. */
		if (status == QUEUE_GONE)
		    buf_printf(&e->out, "%s: no such message\n", ids[i]);
		else
		    buf_printf(&e->out, "%s: cannot be read (%s); not changed\n", ids[i], why);
		continue;
	    }
	    admin_sel_add(&e->sel, m->seq);
	    qmsg_free(m);
	}
    }
    e->qids = xcalloc((size_t) e->slice, sizeof(*e->qids));
    e->newqids = xcalloc((size_t) e->slice, sizeof(*e->newqids));
    e->copies = xcalloc((size_t) e->slice, sizeof(*e->copies));
    return (e);
}

/* One message of a slice (m is the caller's): changed if it applies and is not being delivered. */
static void edit_msg(EDIT *e, QMSG *m)
{
    int     opnum = e->ao->op;

    if (!admin_applies(opnum, m))
	return;
    /* Being delivered: only expire applies (it takes effect when the pass ends). */
    if (opnum != CONTROL_OP_EXPIRE && e->h.busy && e->h.busy(e->h.ctx, m)) {
	buf_printf(&e->out, "%s: is being delivered; not changed, try again\n", m->qid);
	return;
    }
    admin_apply(e, m, e->now);
}

/* The same by seq: loaded (with its content for requeue). */
static void edit_seq(EDIT *e, uint64_t seq)
{
    QMSG   *m;
    char    why[256];
    int     status = queue_load(e->q, seq, e->ao->op == CONTROL_OP_REQUEUE, &m, why, sizeof(why));

    if (status == QUEUE_GONE)			/* removed meanwhile: nothing to change */
	return;
    if (status != QUEUE_OK) {
	buf_printf(&e->out, "%s; not changed\n", why);	/* corrupt (requeue), or unreadable */
	return;
    }
    edit_msg(e, m);
    qmsg_free(m);
}

/*
 * Build the next slice into a new batch.  Returns the number of messages
 * looked at (0: nothing is left); e->n of them are in the batch.
 */
static int edit_slice(EDIT *e)
{
    QMSG   *page[ADMIN_SLICE];
    char    why[256];
    int     looked = 0, k, got;

    e->b = queue_batch(e->q);
    e->n = 0;
    if (!e->all) {
	for (; e->next < e->sel.n && looked < e->slice; e->next++, looked++)
	    edit_seq(e, e->sel.seqs[e->next]);
	return (looked);
    }
    got = queue_page(e->q, &e->cur, 0, page, e->slice, why, sizeof(why));
    if (got < 0) {
	buf_printf(&e->out, "%s; the rest of the queue was not changed\n", why);
	e->cur.state_idx = 99;			/* give up: queue_cursor_done() */
	return (0);
    }
    for (k = 0; k < got; k++) {
	/* ALL does not select a corrupt message (it can only be deleted by its ID). */
	if (page[k]->state == QSTATE_CORRUPT)
	    ;
	else if (e->ao->op == CONTROL_OP_REQUEUE)
	    edit_seq(e, page[k]->seq);		/* the copy needs the content */
	else
	    edit_msg(e, page[k]);
	qmsg_free(page[k]);
    }
    return (got);
}

/* A slice has committed (ok) or failed: log it, schedule the copies. */
static void edit_slice_done(EDIT *e, int ok, const char *why)
{
    const ADMIN_OP *ao = e->ao;
    int     i;

    if (!ok) {
	log_warn("postsuper", "queue update failed: %s", why);
	e->failed = 1;
    }
    for (i = 0; i < e->n; i++) {
	if (ok) {
	    if (ao->op == CONTROL_OP_REQUEUE)
		log_msg("postsuper", "%s: requeued as %s", e->qids[i], e->newqids[i]);
	    else
		log_msg("postsuper", "%s: %s", e->qids[i], ao->done);
	    if (e->copies[i] && e->h.requeued)
		e->h.requeued(e->h.ctx, e->copies[i]);
	}
	qmsg_free(e->copies[i]);
	e->copies[i] = NULL;
    }
    if (ok)
	e->total += e->n;
    e->n = 0;
}

/* The end: the summary, the answer.  Returns the count or -1. */
static int edit_finish(EDIT *e, BUF *out)
{
    const ADMIN_OP *ao = e->ao;
    int     ok = !e->failed && !e->stopped, ret = ok ? e->total : -1;

    if (e->total > 0)
	log_msg("postsuper", "%s: %d message%s", ao->summary, e->total, e->total == 1 ? "" : "s");
    if (e->failed && e->total == 0) {
	buf_reset(&e->out);
	buf_puts(&e->out, "queue update failed; nothing was changed");
    } else {
	buf_printf(&e->out, "%s: %d message%s\n", ao->summary, e->total, e->total == 1 ? "" : "s");
	if (e->failed)
	    buf_puts(&e->out, "queue update failed; the rest was not changed");
	else if (e->stopped)
	    buf_puts(&e->out, "the mail system is stopping; the rest was not changed");
    }
    if (out)
	buf_append(out, e->out.data, e->out.len);
    if (e->done)
	e->done(e->done_ctx, ok, &e->out);
    free(e->copies);
    free(e->qids);
    free(e->newqids);
    free(e->sel.seqs);
    buf_free(&e->out);
    free(e);
    return (ret);
}

int     control_admin_offline(QUEUE *q, const char *op, char *const *ids, int n, int64_t now, BUF *out)
{
    EDIT   *e = edit_prepare(q, op, ids, n, now, NULL, out);
    char    why[256] = "";
    int     looked;

    if (e == NULL)
	return (-1);
    while (!e->failed && (looked = edit_slice(e)) > 0) {
	if (e->n > 0) {
	    int     ok = queue_batch_commit(e->b, why, sizeof(why)) == 0;

	    e->b = NULL;
	    edit_slice_done(e, ok, why);
	} else {
	    queue_batch_abort(e->b);
	    e->b = NULL;
	}
    }
    if (e->b) {
	queue_batch_abort(e->b);
	e->b = NULL;
    }
    return (edit_finish(e, out));
}

static void edit_next(void *ctx);

static void edit_committed(void *ctx, int ok, const char *why)
{
    EDIT   *e = ctx;

    edit_slice_done(e, ok, why);
    if (e->failed)
	edit_finish(e, NULL);
    else
	edit_next(e);
}

/*
 * The daemon: the next slice goes to the writer; the one after it is
 * built from the commit's callback.  A turn that changes nothing (hold ALL
 * where most are held already) looks at ADMIN_SCAN_MAX messages at most,
 * then lets the loop run (h.later) before it goes on.
 */
static void edit_next(void *ctx)
{
    EDIT   *e = ctx;
    int     looked, scanned = 0;

    for (;;) {
	if (e->h.stopping && e->h.stopping(e->h.ctx)) {
	    e->stopped = 1;
	    edit_finish(e, NULL);
	    return;
	}
	looked = edit_slice(e);
	if (e->n > 0) {
	    queue_batch_submit(e->b, edit_committed, e);
	    e->b = NULL;
	    return;
	}
	queue_batch_abort(e->b);
	e->b = NULL;
	if (looked == 0) {
	    edit_finish(e, NULL);
	    return;
	}
	scanned += looked;
	if (scanned >= ADMIN_SCAN_MAX && e->h.later) {
	    e->h.later(e->h.ctx, edit_next, e);
	    return;
	}
    }
}

int     control_admin_submit(QUEUE *q, const char *op, char *const *ids, int n, int64_t now,
			             const CONTROL_EDIT_HOOKS *h, CONTROL_EDIT_DONE done, void *ctx)
{
    BUF     err = BUF_INIT;
    EDIT   *e = edit_prepare(q, op, ids, n, now, h, &err);

    if (e == NULL) {
	done(ctx, 0, &err);
	buf_free(&err);
	return (-1);
    }
    buf_free(&err);
    e->done = done;
    e->done_ctx = ctx;
    edit_next(e);
    return (0);
}
