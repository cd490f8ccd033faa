/*
 * control_admin - postsuper's queue edits (delete, hold, release, requeue,
 * expire), made by the CLI on the queue directly while the daemon is down.
 *
 * The caller holds the queue lock (QUEUE_OPEN_ADMIN), so nothing else
 * writes the queue meanwhile; all changes go in one batch, committed
 * before anything is logged, so the log never claims a change the queue
 * does not have.  Wording of the log lines and summaries is postsuper's
 * (spec section 6 and L10): "ID: placed on hold", "Placed on hold: 1
 * message".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/control.h"
#include "log/log.h"

typedef struct ADMIN_OP {
    const char *name;
    const char *done;			/* per message, logged */
    const char *summary;		/* "Placed on hold: N message(s)" */
} ADMIN_OP;

static const ADMIN_OP admin_ops[] = {
    {"delete", "removed", "Deleted"},
    {"hold", "placed on hold", "Placed on hold"},
    {"release", "released from hold", "Released from hold"},
    {"requeue", "requeued", "Requeued"},
    {"expire", "marked for forced expiry", "Marked for expiry"},
};

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
    return 0;
}

/* Does op change msg?  (postsuper skips what is already in the target state.) */
static int admin_applies(const char *op, const QMSG *msg)
{
    if (msg->state == QSTATE_CORRUPT)
	return 0;
    if (strcmp(op, "hold") == 0)
	return msg->state != QSTATE_HOLD;
    if (strcmp(op, "release") == 0)
	return msg->state == QSTATE_HOLD;
    if (strcmp(op, "expire") == 0)
	return (msg->flags & QFLAG_FORCE_EXPIRE) == 0;
    return 1;
}

/* Apply op to msg (loaded with content for requeue) in batch b. */
static void admin_apply(QUEUE *q, QBATCH *b, const char *op, QMSG *msg, int64_t now, char *newqid, size_t len)
{
    int     i;

    if (strcmp(op, "delete") == 0) {
	queue_batch_delete(b, msg->seq);
    } else if (strcmp(op, "hold") == 0) {
	msg->state = QSTATE_HOLD;
	queue_batch_update(b, msg);
    } else if (strcmp(op, "release") == 0) {
	/* Postfix moves hold -> deferred; next_eligible (mtime) is kept. */
	msg->state = QSTATE_DEFERRED;
	queue_batch_update(b, msg);
    } else if (strcmp(op, "expire") == 0) {
	msg->flags |= QFLAG_FORCE_EXPIRE;
	queue_batch_update(b, msg);
    } else if (strcmp(op, "requeue") == 0) {
	/*
	 * postsuper -r: a new queue file with a new ID; arrival time kept,
	 * create_time reset (so backoff and lifetime start over), the defer
	 * log (our reasons) gone, delay warning due again.  The attempt
	 * history belongs to the old ID, so the count starts over as well.
	 */
	QMSG   *nm = qmsg_dup(msg);
	uint64_t old = msg->seq;

	queue_assign_id(q, nm);
	nm->state = QSTATE_INCOMING;
	nm->create_time = now;
	nm->next_eligible = now;
	nm->attempts = 0;
	nm->flags &= ~QFLAG_WARNED;
	for (i = 0; i < nm->nrcpt; i++) {
	    if (nm->rcpts[i].state != QRCPT_PENDING)
		continue;
	    free(nm->rcpts[i].reason);
	    nm->rcpts[i].reason = 0;
	}
	queue_batch_insert(b, nm);
	queue_batch_delete(b, old);
	snprintf(newqid, len, "%s", nm->qid);
	qmsg_free(nm);
    }
}

int     control_admin_offline(QUEUE *q, const char *op, char *const *ids, int n, int64_t now, BUF *out)
{
    const ADMIN_OP *ao = 0;
    ADMIN_SEL sel = {0, 0, 0};
    QBATCH *b;
    QMSG  **done;
    char  (*newqids)[16];
    int     ndone = 0, i, all = 0;
    size_t  k;

    for (k = 0; k < ARRAY_LEN(admin_ops); k++)
	if (strcmp(admin_ops[k].name, op) == 0)
	    ao = &admin_ops[k];
    if (ao == 0) {
	buf_printf(out, "unknown operation: %s\n", op);
	return -1;
    }
    for (i = 0; i < n; i++)
	if (strcmp(ids[i], "ALL") == 0)
	    all = 1;
    if (all) {
	if (queue_walk(q, 0, admin_walk_all, &sel) < 0) {
	    buf_puts(out, "cannot read the queue\n");
	    free(sel.seqs);
	    return -1;
	}
    } else {
	for (i = 0; i < n; i++) {
	    QMSG   *m = queue_load_qid(q, ids[i], 0);

	    if (m == 0) {
		/* postsuper is silent about missing files; a typo deserves a word. */
		buf_printf(out, "%s: no such message\n", ids[i]);
		continue;
	    }
	    admin_sel_add(&sel, m->seq);
	    qmsg_free(m);
	}
    }
    done = xcalloc(sel.n ? sel.n : 1, sizeof(*done));
    newqids = xcalloc(sel.n ? sel.n : 1, sizeof(*newqids));
    b = queue_batch(q);
    for (i = 0; i < sel.n; i++) {
	QMSG   *m = queue_load(q, sel.seqs[i], strcmp(op, "requeue") == 0);

	if (m == 0)
	    continue;
	if (!admin_applies(op, m)) {
	    qmsg_free(m);
	    continue;
	}
	admin_apply(q, b, op, m, now, newqids[ndone], sizeof(newqids[ndone]));
	done[ndone++] = m;
    }
    if (ndone > 0) {
	if (queue_batch_commit(b) < 0) {
	    buf_puts(out, "queue update failed; nothing was changed\n");
	    ndone = -1;
	}
    } else {
	queue_batch_abort(b);
    }
    /* Worded as the daemon's admin socket words them (src/relayqd/admin.c). */
    for (i = 0; i < (ndone > 0 ? ndone : 0); i++) {
	if (strcmp(op, "requeue") == 0)
	    log_msg("postsuper", "%s: requeued as %s", done[i]->qid, newqids[i]);
	else
	    log_msg("postsuper", "%s: %s", done[i]->qid, ao->done);
    }
    if (ndone >= 0) {
	if (ndone > 0)
	    log_msg("postsuper", "%s: %d message%s", ao->summary, ndone, ndone == 1 ? "" : "s");
	buf_printf(out, "%s: %d message%s\n", ao->summary, ndone, ndone == 1 ? "" : "s");
    }
    for (i = 0; i < sel.n; i++)
	if (done[i])
	    qmsg_free(done[i]);
    free(done);
    free(newqids);
    free(sel.seqs);
    return ndone;
}
