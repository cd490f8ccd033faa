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

/* One request: what it changes, until the batch has committed. */
typedef struct EDIT {
    QUEUE  *q;
    const ADMIN_OP *ao;
    CONTROL_EDIT_HOOKS h;
    QBATCH *b;
    BUF     out;			/* per-ID problems, then the summary */
    char  (*qids)[16];			/* the messages changed */
    char  (*newqids)[16];		/* requeue: their new IDs */
    QMSG  **copies;			/* requeue: the new messages */
    int     n;
    CONTROL_EDIT_DONE done;
    void   *done_ctx;
} EDIT;

typedef struct ADMIN_SEL {
    uint64_t *seqs;
    int     n, cap;
} ADMIN_SEL;

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

static int admin_walk_all(void *ctx, const QMSG *msg)
{
    if (msg->state != QSTATE_CORRUPT)
	admin_sel_add(ctx, msg->seq);
    return (0);
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

/* Select the messages and build the batch.  Returns NULL (text in out) for a bad request. */
static EDIT *edit_prepare(QUEUE *q, const char *op, char *const *ids, int n, int64_t now,
			          const CONTROL_EDIT_HOOKS *h, BUF *out)
{
    ADMIN_SEL sel = {0, 0, 0};
    EDIT   *e;
    int     i, all = 0;
    int     opnum = control_op(op);

    if (opnum < 0) {
	buf_printf(out, "unknown operation: %s\n", op);
	return (NULL);
    }
    for (i = 0; i < n; i++)
	if (strcmp(ids[i], "ALL") == 0)
	    all = 1;
    e = xcalloc(1, sizeof(*e));
    e->q = q;
    for (size_t k = 0; k < ARRAY_LEN(admin_ops); k++)
	if (admin_ops[k].op == opnum)
	    e->ao = &admin_ops[k];
    if (h)
	e->h = *h;
    if (all) {
	if (queue_walk(q, 0, admin_walk_all, &sel) < 0) {
	    buf_puts(out, "cannot read the queue\n");
	    free(sel.seqs);
	    free(e);
	    return (NULL);
	}
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
	    admin_sel_add(&sel, m->seq);
	    qmsg_free(m);
	}
    }
    e->qids = xcalloc(sel.n ? sel.n : 1, sizeof(*e->qids));
    e->newqids = xcalloc(sel.n ? sel.n : 1, sizeof(*e->newqids));
    e->copies = xcalloc(sel.n ? sel.n : 1, sizeof(*e->copies));
    e->b = queue_batch(q);
    for (i = 0; i < sel.n; i++) {
	QMSG   *m;
	char    why[256];
	int     status = queue_load(q, sel.seqs[i], opnum == CONTROL_OP_REQUEUE, &m, why, sizeof(why));

	if (status == QUEUE_GONE)		/* removed meanwhile: nothing to change */
	    continue;
	if (status != QUEUE_OK) {
	    buf_printf(&e->out, "%s; not changed\n", why);	/* corrupt (requeue), or unreadable */
	    continue;
	}
	if (!admin_applies(opnum, m)) {
	    qmsg_free(m);
	    continue;
	}
	/* Being delivered: only expire applies (it takes effect when the pass ends). */
	if (opnum != CONTROL_OP_EXPIRE && e->h.busy && e->h.busy(e->h.ctx, m)) {
	    buf_printf(&e->out, "%s: is being delivered; not changed, try again\n", m->qid);
	    qmsg_free(m);
	    continue;
	}
	admin_apply(e, m, now);
	qmsg_free(m);
    }
    free(sel.seqs);
    return (e);
}

/* After the commit (or with nothing to commit): log, schedule the copies, answer.  Returns the count or -1. */
static int edit_finish(EDIT *e, int ok, const char *why, BUF *out)
{
    const ADMIN_OP *ao = e->ao;
    int     i, ret = ok ? e->n : -1;

    if (!ok) {
	log_warn("postsuper", "queue update failed: %s", why);
	buf_reset(&e->out);
	buf_puts(&e->out, "queue update failed; nothing was changed");
    } else {
	for (i = 0; i < e->n; i++) {
	    if (ao->op == CONTROL_OP_REQUEUE)
		log_msg("postsuper", "%s: requeued as %s", e->qids[i], e->newqids[i]);
	    else
		log_msg("postsuper", "%s: %s", e->qids[i], ao->done);
	    if (e->copies[i] && e->h.requeued)
		e->h.requeued(e->h.ctx, e->copies[i]);
	}
	if (e->n > 0)
	    log_msg("postsuper", "%s: %d message%s", ao->summary, e->n, e->n == 1 ? "" : "s");
	buf_printf(&e->out, "%s: %d message%s\n", ao->summary, e->n, e->n == 1 ? "" : "s");
    }
    if (out)
	buf_append(out, e->out.data, e->out.len);
    if (e->done)
	e->done(e->done_ctx, ok, &e->out);
    for (i = 0; i < e->n; i++)
	qmsg_free(e->copies[i]);
    free(e->copies);
    free(e->qids);
    free(e->newqids);
    buf_free(&e->out);
    free(e);
    return (ret);
}

int     control_admin_offline(QUEUE *q, const char *op, char *const *ids, int n, int64_t now, BUF *out)
{
    EDIT   *e = edit_prepare(q, op, ids, n, now, NULL, out);
    char    why[256] = "";
    int     ok = 1;

    if (e == NULL)
	return (-1);
    if (e->n > 0)
	ok = queue_batch_commit(e->b, why, sizeof(why)) == 0;
    else
	queue_batch_abort(e->b);
    e->b = NULL;
    return (edit_finish(e, ok, why, out));
}

static void edit_committed(void *ctx, int ok, const char *why)
{
    edit_finish(ctx, ok, why, NULL);
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
    if (e->n == 0) {
	queue_batch_abort(e->b);
	e->b = NULL;
	edit_finish(e, 1, "", NULL);
	return (0);
    }
    queue_batch_submit(e->b, edit_committed, e);
    return (0);
}
