/*
 * admin - the daemon's side of the control sockets, and pickup.
 *
 * Query socket (any local user): mailq, qshape, explain.  Admin socket
 * (setgid_group): flush, hold, release, delete, requeue, expire.  Changes go
 * to qmgr at once and to the queue through the writer thread, logged as
 * Postfix's postsuper/qmgr would log them.
 *
 * pickup: messages written by sendmail into queue_directory/maildrop are
 * passed through cleanup into the queue; the maildrop file is removed only
 * after the queue has the message durably.
 */
#include <ctype.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"
#include "log/log.h"
#include "cleanup/cleanup.h"
#include "bounce/bounce.h"
#include "relayqd/relayqd.h"
#include "smtpd/smtpd_proto.h"

/* ---- helpers ---- */

typedef struct IDLIST {
    uint64_t *seq;
    int     n;
    const char *domain;			/* flush DOMAIN: only messages with a pending recipient there */
} IDLIST;

static int collect(void *ctx, const QMSG *m)
{
    IDLIST *l = ctx;

    if (m->state == QSTATE_CORRUPT)
	return 0;
    if (l->domain) {
	int     hit = 0;

	for (int i = 0; i < m->nrcpt && !hit; i++) {
	    const char *at = strrchr(m->rcpts[i].addr, '@');

	    if (m->rcpts[i].state == QRCPT_PENDING && at && str_casecmp(at + 1, l->domain) == 0)
		hit = 1;
	}
	if (!hit)
	    return 0;
    }
    l->seq = xrealloc(l->seq, sizeof(uint64_t) * (size_t) (l->n + 1));
    l->seq[l->n++] = m->seq;
    return 0;
}

/*
 * One admin request (hold A B C, delete ALL, ...): control_admin_submit()
 * makes it, the same code as the CLI's with the daemon down; the client
 * gets its answer only once the batch is durable, so that "relayq hold ID;
 * mailq" shows the hold (postsuper is synchronous too).
 *
 * It is made once every pass batch submitted before it has committed
 * (sched_after_commits(): the writer's completion notification): a
 * requeue copies the recipients' states, which must include the last
 * pass's results, and a message that the pass removed is not found.
 */
typedef struct ADMIN_REQ {
    RELAYQD *d;
    uint64_t token;			/* control_defer() */
    int     argc;
    char  **argv;			/* argv[0] is the operation */
} ADMIN_REQ;

static void admin_answer(void *ctx, int ok, BUF *reply)
{
    ADMIN_REQ *r = ctx;

    control_finish(r->d->control, r->token, ok, reply);
    for (int i = 0; i < r->argc; i++)
	free(r->argv[i]);
    free(r->argv);
    free(r);
}

static void admin_change(void *ctx)
{
    ADMIN_REQ *r = ctx;
    RELAYQD *d = r->d;
    CONTROL_EDIT_HOOKS hooks;

    sched_edit_hooks(d, &hooks);
    control_admin_submit(d->queue, r->argv[0], r->argv + 1, r->argc - 1, (int64_t) time(NULL),
			 &hooks, admin_answer, r);
    sched_kick(d);
}

static int admin_change_when_settled(RELAYQD *d, int argc, char **argv)
{
    ADMIN_REQ *r = xcalloc(1, sizeof(*r));

    r->d = d;
    r->argc = argc;
    r->argv = xcalloc((size_t) argc, sizeof(char *));
    for (int i = 0; i < argc; i++)
	r->argv[i] = xstrdup(argv[i]);
    r->token = control_defer(d->control);
    sched_after_commits(d, admin_change, r);
    return 0;
}

/*
 * explain --what-if: the queue's schedule now and after a reload with the
 * --set values, from this daemon's state; nothing is changed.
 */
static int admin_explain_whatif(RELAYQD *d, const EXPLAIN_OPTS *o, BUF *out)
{
    QMGR_PARAMS changed;
    char    err[512];
    char   *data = NULL;
    size_t  len = 0;
    FILE   *fp;
    int     ret;

    if (explain_whatif_params(d->confdir, d->overrides, d->noverrides, o, &changed,
			      err, sizeof(err)) < 0) {
	buf_puts(out, err);
	return -1;
    }
    if ((fp = open_memstream(&data, &len)) == NULL) {
	buf_puts(out, "out of memory");
	return -1;
    }
    ret = explain_whatif(d->queue, qmgr_params(d->qmgr), &changed, o, sched_state, d,
			 qmgr_anchor(d->qmgr), (int64_t) time(NULL), fp, err, sizeof(err));
    fclose(fp);
    if (ret < 0)
	buf_puts(out, err);
    else
	buf_append(out, data, len);
    free(data);
    return ret;
}

/* explain ID [options]: the timeline of one queued message, with the daemon's state. */
static int admin_explain(RELAYQD *d, int argc, char **argv, BUF *out)
{
    EXPLAIN_OPTS o;
    char    err[256];
    char   *data = NULL;
    size_t  len = 0;
    FILE   *fp;
    int     ret;

    ret = explain_opts_parse(argc - 1, argv + 1, &o, err, sizeof(err));
    if (ret == 0 && o.what_if)
	return admin_explain_whatif(d, &o, out);
    if (ret == 0 && o.qid == NULL) {
	snprintf(err, sizeof(err), "no queue ID");
	ret = -1;
    }
    if (ret < 0) {
	buf_printf(out, "%s; usage: explain QUEUEID [--json] [--attempt-duration S]", err);
	return -1;
    }
    if ((fp = open_memstream(&data, &len)) == NULL) {
	buf_puts(out, "out of memory");
	return -1;
    }
    ret = explain_queued(d->queue, qmgr_params(d->qmgr), &o, sched_state, d, qmgr_anchor(d->qmgr),
			 (int64_t) time(NULL), fp, err, sizeof(err));
    fclose(fp);
    if (ret < 0)
	buf_puts(out, err);
    else
	buf_append(out, data, len);
    free(data);
    return ret;
}

int     admin_handle(void *ctx, int admin, int argc, char **argv, BUF *out)
{
    RELAYQD *d = ctx;
    const char *cmd = argc > 0 ? argv[0] : "";

    if (strcmp(cmd, "mailq") == 0) {
	if (argc > 1 && strcmp(argv[1], "json") == 0)
	    return showq_json(d->queue, sched_state, d, qmgr_params(d->qmgr), out) < 0 ? -1 : 0;
	return showq_text(d->queue, sched_state, d, out) < 0 ? -1 : 0;
    }
    if (strcmp(cmd, "qshape") == 0) {
	const char *name = NULL;
	int     by_sender = 0;

	for (int i = 1; i < argc; i++) {
	    if (strcmp(argv[i], "-s") == 0)
		by_sender = 1;
	    else
		name = argv[i];
	}
	return qshape_text(d->queue, name, by_sender, (int64_t) time(NULL), 10, out) < 0 ? -1 : 0;
    }
    if (strcmp(cmd, "explain") == 0)
	return admin_explain(d, argc, argv, out);
    if (strcmp(cmd, "ping") == 0) {
	buf_puts(out, "pong\n");
	return 0;
    }

    /* Everything below changes the queue. */
    if (strcmp(cmd, "flush") == 0 || strcmp(cmd, "hold") == 0 || strcmp(cmd, "release") == 0
	|| strcmp(cmd, "delete") == 0 || strcmp(cmd, "requeue") == 0 || strcmp(cmd, "expire") == 0) {
	if (!admin) {
	    buf_printf(out, "%s: permission denied: use the admin socket", cmd);
	    return -1;
	}
    } else {
	buf_printf(out, "unknown request: %s", cmd);
	return -1;
    }
    if (strcmp(cmd, "flush") == 0) {
	int64_t now = (int64_t) time(NULL);

	if (argc > 1) {
	    IDLIST  l = {NULL, 0, argv[1]};

	    queue_walk(d->queue, 1, collect, &l);
	    qmgr_flush_ids(d->qmgr, (QMGR_ID *) l.seq, l.n, now);
	    buf_printf(out, "Flushing %d message%s for %s\n", l.n, l.n == 1 ? "" : "s", argv[1]);
	    free(l.seq);
	} else {
	    qmgr_flush(d->qmgr, now);
	}
	sched_kick(d);
	return 0;
    }
    if (argc < 2) {
	buf_printf(out, "usage: %s ID...|ALL", cmd);
	return -1;
    }
    return admin_change_when_settled(d, argc, argv);
}

/* ---- pickup ---- */

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
	sched_add_incoming(p->d, p->msg);
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
		 (unsigned long long) sp.free_bytes,
		 why == QUEUE_SPACE_LOW ? " < 1.5*message_size_limit" : ", reserve in use");
    else if (why == QUEUE_SPACE_OK && waiting)
	log_msg("pickup", "free space in mail queue: %llu bytes; taking maildrop files again",
		(unsigned long long) sp.free_bytes);
    waiting = why != QUEUE_SPACE_OK;
    return waiting;
}

void    admin_pickup(RELAYQD *d)
{
    if (pickup_inflight > 0 || d->stopping || pickup_space_wait(d))
	return;
    long long max = config_size(d->cf, "message_size_limit");

    maildrop_scan(config_str(d->cf, "queue_directory"), max > 0 ? (size_t) max : 0, pickup_take, d);
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

void    admin_metrics(void *ctx, BUF *out)
{
    RELAYQD *d = ctx;
    QMGR_COUNTS c;
    SMTPD_STATS ss;
    QUEUE_STATS qs;
    char    lbl[64];

    qmgr_counts(d->qmgr, &c);
    metrics_family(out, "relayq_queue_messages", "gauge", "Messages in the queue by state.");
    metrics_sample(out, "relayq_queue_messages", "state=\"incoming\"", c.incoming);
    metrics_sample(out, "relayq_queue_messages", "state=\"active\"", c.active);
    metrics_sample(out, "relayq_queue_messages", "state=\"deferred\"", c.deferred);
    metrics_sample(out, "relayq_queue_messages", "state=\"hold\"", c.hold);

    metrics_family(out, "relayq_deliveries_total", "counter", "Recipient delivery results by status.");
    metrics_sample(out, "relayq_deliveries_total", "status=\"sent\"", (double) d->n_sent);
    metrics_sample(out, "relayq_deliveries_total", "status=\"deferred\"", (double) d->n_deferred);
    metrics_sample(out, "relayq_deliveries_total", "status=\"bounced\"", (double) d->n_bounced);
    metrics_family(out, "relayq_messages_expired_total", "counter", "Messages returned to the sender because their lifetime ran out.");
    metrics_sample(out, "relayq_messages_expired_total", "", (double) d->n_expired);

    smtpd_stats(d->smtpd, &ss);
    metrics_family(out, "relayq_smtpd_connections_total", "counter", "SMTP sessions accepted.");
    metrics_sample(out, "relayq_smtpd_connections_total", "", (double) ss.connections);
    metrics_family(out, "relayq_smtpd_sessions", "gauge", "SMTP sessions in progress.");
    metrics_sample(out, "relayq_smtpd_sessions", "", smtpd_sessions(d->smtpd));
    metrics_family(out, "relayq_smtpd_messages_total", "counter", "Messages accepted (250 after DATA).");
    metrics_sample(out, "relayq_smtpd_messages_total", "", (double) ss.messages);
    metrics_family(out, "relayq_smtpd_rejects_total", "counter", "SMTP commands rejected, by reason.");
    snprintf(lbl, sizeof(lbl), "reason=\"relay\"");
    metrics_sample(out, "relayq_smtpd_rejects_total", lbl, (double) ss.rejects_relay);
    metrics_sample(out, "relayq_smtpd_rejects_total", "reason=\"size\"", (double) ss.rejects_size);
    metrics_sample(out, "relayq_smtpd_rejects_total", "reason=\"timeout\"", (double) ss.timeouts);
    metrics_sample(out, "relayq_smtpd_rejects_total", "reason=\"other\"", (double) ss.rejects_other);

    metrics_hist_write(out, "relayq_delivery_attempt_duration_seconds",
		       "Duration of delivery attempts (connection to final reply).", &d->attempt_hist);

    metrics_family(out, "relayq_dead_destinations", "gauge", "Destinations currently suspended as dead.");
    metrics_sample(out, "relayq_dead_destinations", "", qmgr_dead_count(d->qmgr));
    DEST_WALK w = {out, 1, 0};

    metrics_family(out, "relayq_destination_dead", "gauge",
		   "1 while the destination is suspended as dead, 0 while it has mail and is not.");
    qmgr_dest_walk(d->qmgr, metrics_dest, &w);
    w.dead = 0;
    qmgr_dest_walk(d->qmgr, metrics_dest, &w);
    metrics_lc_write(out, "relayq_destination_deferrals_total", "destination",
		     "Recipients deferred, by destination (transport:nexthop).", &d->dest_deferred);

    int64_t oldest = qmgr_oldest_create_time(d->qmgr), now = (int64_t) time(NULL);

    metrics_family(out, "relayq_queue_oldest_message_age_seconds", "gauge",
		   "Age of the oldest message in the queue (any state), 0 if the queue is empty.");
    metrics_sample(out, "relayq_queue_oldest_message_age_seconds", "",
		   oldest > 0 && now > oldest ? (double) (now - oldest) : 0);
    metrics_family(out, "relayq_maximal_queue_lifetime_seconds", "gauge",
		   "maximal_queue_lifetime: a message older than this is returned to its sender.");
    metrics_sample(out, "relayq_maximal_queue_lifetime_seconds", "",
		   (double) qmgr_params(d->qmgr)->maximal_queue_lifetime);

    QUEUE_SPACE sp;
    int     space_ok = queue_space(d->queue, &sp) == 0;

    metrics_family(out, "relayq_queue_filesystem_free_bytes", "gauge",
		   "Free space of the queue file system (available to unprivileged users), in bytes.");
    if (space_ok)
	metrics_sample(out, "relayq_queue_filesystem_free_bytes", "", (double) sp.free_bytes);
    metrics_family(out, "relayq_queue_space_refusing", "gauge",
		   "1 while new mail is refused with 452 4.3.1 for want of queue space (queue_minfree,"
		   " 1.5 x message_size_limit, or the reserve in use), else 0.");
    metrics_sample(out, "relayq_queue_space_refusing", "",
		   space_ok && queue_space_refuse(&sp, config_size(d->cf, "queue_minfree"),
						  config_size(d->cf, "message_size_limit")) != QUEUE_SPACE_OK);
    double  minfree = (double) config_size(d->cf, "queue_minfree");
    double  sizeguard = 1.5 * (double) config_size(d->cf, "message_size_limit");

    metrics_family(out, "relayq_queue_space_guard_bytes", "gauge",
		   "Free space below which new mail is refused: queue_minfree or 1.5 x message_size_limit,"
		   " the larger.");
    metrics_sample(out, "relayq_queue_space_guard_bytes", "", minfree > sizeguard ? minfree : sizeguard);
    metrics_family(out, "relayq_queue_reserve_held", "gauge",
		   "1 while the queue's reserve file holds its space, 0 while it is given back after a full disk.");
    metrics_sample(out, "relayq_queue_reserve_held", "", sp.reserve_held);
    metrics_family(out, "relayq_queue_reserve_releases_total", "counter",
		   "Times the reserve was given back to let the queue record its bookkeeping on a full disk.");
    metrics_sample(out, "relayq_queue_reserve_releases_total", "", (double) sp.reserve_releases);
    metrics_family(out, "relayq_queue_full_errors_total", "counter",
		   "Queue transactions that failed because the disk was full.");
    metrics_sample(out, "relayq_queue_full_errors_total", "", (double) sp.full_errors);
    metrics_family(out, "relayq_queue_updates_suspended", "gauge",
		   "Messages whose delivery outcome is not yet recorded; their delivery waits until it is.");
    metrics_sample(out, "relayq_queue_updates_suspended", "", sched_suspended(d));

    metrics_family(out, "relayq_log_write_errors_total", "counter",
		   "Log lines that could not be written (maillog_file's file system full, ...).");
    metrics_sample(out, "relayq_log_write_errors_total", "", (double) log_write_errors());

    queue_stats(d->queue, &qs);
    metrics_family(out, "relayq_queue_commits_total", "counter", "Queue store transactions committed.");
    metrics_sample(out, "relayq_queue_commits_total", "", (double) qs.transactions);
    metrics_family(out, "relayq_queue_batches_total", "counter", "Write batches committed (several per transaction with group commit).");
    metrics_sample(out, "relayq_queue_batches_total", "", (double) qs.batches);
    metrics_family(out, "relayq_queue_commit_seconds_total", "counter", "Time spent committing, in seconds.");
    metrics_sample(out, "relayq_queue_commit_seconds_total", "", (double) qs.commit_us_total / 1e6);
    metrics_family(out, "relayq_queue_commit_seconds_max", "gauge", "Longest commit so far, in seconds.");
    metrics_sample(out, "relayq_queue_commit_seconds_max", "", (double) qs.commit_us_max / 1e6);
}
