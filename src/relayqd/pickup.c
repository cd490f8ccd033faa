/*
 * pickup - messages written by sendmail into queue_directory/maildrop are
 * passed through cleanup into the queue; the maildrop file is removed only
 * after the queue has the message durably (Postfix's pickup(8)).  Anyone
 * can write a maildrop file: its addresses must pass smtpd's rules.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"
#include "log/log.h"
#include "cleanup/cleanup.h"
#include "bounce/bounce.h"
#include "smtpd/smtpd_proto.h"
#include "relayqd/relayqd.h"

typedef struct PICKUP {
    RELAYQD *d;
    char   *path;
    QMSG   *msg;
    char   *notice_of;			/* msg is the bounce of this queue ID */
} PICKUP;

static int pickup_inflight;

static void pickup_done(void *ctx, int ok)
{
    PICKUP *p = ctx;

    pickup_inflight--;
    if (ok) {
	maildrop_remove(p->path);
	if (p->notice_of)
	    log_msg("bounce", "%s: sender non-delivery notification: %s", p->notice_of, p->msg->qid);
	sched_add_incoming(p->d->sched, p->msg);
    } else {
	log_warn("pickup", "%s: queue write failed; the maildrop file is kept", p->msg->qid);
    }
    qmsg_free(p->msg);
    free(p->notice_of);
    free(p->path);
    free(p);
}

static int pickup_take(void *ctx, const char *path, const MAILDROP_MSG *md, const char **why)
{
    RELAYQD *d = ctx;
    QMSG   *m;
    CLEANUP_INFO ci;
    BUF     content = BUF_INIT;
    char   *msgid = NULL;
    char    err[256];
    char    uidbuf[16];

    if (md->nrcpt <= 0) {
	*why = "no recipients";
	return -1;
    }
    /* Anyone can write a maildrop file: its addresses pass smtpd's rules, or the file goes aside. */
    for (int i = 0; i < md->nrcpt; i++) {
	if (!smtpd_addr_valid(md->rcpts[i])) {
	    *why = "bad recipient address syntax";
	    return -1;
	}
    }
    m = xcalloc(1, sizeof(*m));
    m->state = QSTATE_INCOMING;
    m->arrival_us = time_now_us();
    m->create_time = m->arrival_us / 1000000;
    m->next_eligible = m->create_time;
    if (md->sender && md->sender[0] == 0 && md->user && md->user[0])
	m->sender = xstrdup("");
    else if (md->sender && *md->sender)
	m->sender = xstrdup(md->sender);
    else
	m->sender = xasprintf("%s@%s", md->user ? md->user : "nobody", config_str(d->cf, "myorigin"));
    if (*m->sender && !smtpd_addr_valid(m->sender)) {
	qmsg_free(m);
	*why = "bad sender address syntax";
	return -1;
    }
    m->rcpts = xcalloc((size_t) md->nrcpt, sizeof(QRCPT));
    m->nrcpt = md->nrcpt;
    for (int i = 0; i < md->nrcpt; i++)
	m->rcpts[i].addr = xstrdup(md->rcpts[i]);
    m->client_name = xstrdup("localhost");
    m->client_addr = xstrdup("127.0.0.1");
    queue_assign_id(d->queue, m);

    memset(&ci, 0, sizeof(ci));
    ci.myhostname = config_str(d->cf, "myhostname");
    ci.qid = m->qid;
    /* Postfix's "(Postfix, from userid 1000)": the number, of the file's owner (md->uid), not the claimed name. */
    snprintf(uidbuf, sizeof(uidbuf), "%u", (unsigned) md->uid);
    ci.local_user = uidbuf;
    ci.arrival_us = m->arrival_us;
    ci.rewrite_allowed = 1;
    ci.add_received = 1;
    ci.single_rcpt = md->nrcpt == 1 ? md->rcpts[0] : NULL;
    ci.header_size_limit = (size_t) config_size(d->cf, "header_size_limit");
    if (cleanup_message(&ci, md->content, md->len, &content, &msgid, err, sizeof(err)) < 0) {
	qmsg_free(m);
	buf_free(&content);
	free(msgid);
	*why = "cleanup refused the message";
	log_warn("pickup", "%s: %s", path, err);
	return -1;
    }
    log_msg("pickup", "%s: uid=%u from=<%s>", m->qid, (unsigned) md->uid, m->sender);
    log_msg("cleanup", "%s: message-id=%s", m->qid, msgid && *msgid ? msgid : "<>");
    m->message_id = msgid;
    m->size = content.len;
    m->content = buf_steal(&content);

    PICKUP *p = xcalloc(1, sizeof(*p));

    p->d = d;
    p->path = xstrdup(path);
    p->msg = m;
    long long hop_limit = config_int(d->cf, "hopcount_limit");

    if (hop_limit > 0 && ci.hops >= hop_limit) {
	/* Postfix's cleanup bounces local mail that went round too often: 5.4.0 "too many hops". */
	int    *idx = xcalloc((size_t) m->nrcpt, sizeof(int));
	QMSG   *nt;

	log_warn("cleanup", "%s: message rejected: hopcount exceeded", m->qid);
	for (int i = 0; i < m->nrcpt; i++) {
	    idx[i] = i;
	    m->rcpts[i].reason = xstrdup("too many hops");
	    snprintf(m->rcpts[i].dsn, sizeof(m->rcpts[i].dsn), "5.4.0");
	    m->rcpts[i].state = QRCPT_BOUNCED;
	    log_msg("cleanup", "%s: to=<%s>, relay=none, delay=0, delays=0/0/0/0, dsn=5.4.0, "
		    "status=bounced (too many hops)", m->qid, m->rcpts[i].addr);
	}
	nt = bounce_build(d->cf, m, idx, m->nrcpt, BOUNCE_FAILED, (int64_t) time(NULL));
	free(idx);
	if (nt == NULL) {			/* the null sender gets no notice */
	    log_msg("qmgr", "%s: removed", m->qid);
	    qmsg_free(m);
	    free(p->path);
	    free(p);
	    return 0;
	}
	queue_assign_id(d->queue, nt);
	log_msg("qmgr", "%s: removed", m->qid);
	p->notice_of = xstrdup(m->qid);
	qmsg_free(m);
	p->msg = m = nt;
    }
    QBATCH *b = queue_batch(d->queue);

    queue_batch_insert(b, m);
    pickup_inflight++;
    queue_batch_submit(b, pickup_done, p);
    return 1;					/* kept until durable: pickup_done removes it */
}

/*
 * While smtpd refuses new mail for want of space, pickup waits too: the
 * maildrop file is durable where it is, and taking it would use the room
 * the queue keeps for its bookkeeping.  One warning when it starts waiting.
 */
static int pickup_space_wait(RELAYQD *d)
{
    static int waiting;
    QUEUE_SPACE sp;
    int     why;

    if (queue_space(d->queue, &sp) < 0)
	return 0;
    why = queue_space_refuse(&sp, config_size(d->cf, "queue_minfree"),
			     config_size(d->cf, "message_size_limit"));
    if (why != QUEUE_SPACE_OK && !waiting)
	log_warn("pickup", "not enough free space in mail queue: %llu bytes%s; maildrop files wait",
		 (unsigned long long) (sp.free_bytes > sp.wal_debt ? sp.free_bytes - sp.wal_debt : 0),
		 why == QUEUE_SPACE_LOW ? " < 1.5*message_size_limit" : ", reserve in use");
    else if (why == QUEUE_SPACE_OK && waiting)
	log_msg("pickup", "free space in mail queue: %llu bytes; taking maildrop files again",
		(unsigned long long) sp.free_bytes);
    waiting = why != QUEUE_SPACE_OK;
    return waiting;
}

void    pickup_scan(RELAYQD *d)
{
    if (pickup_inflight > 0 || d->stopping || pickup_space_wait(d))
	return;
    long long max = config_size(d->cf, "message_size_limit");

    maildrop_scan(config_str(d->cf, "queue_directory"), max > 0 ? (size_t) max : 0, pickup_take, d);
}
