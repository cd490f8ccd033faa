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
#include "milter/milter.h"
#include "relayqd/relayqd.h"

typedef struct PICKUP {
    RELAYQD *d;
    char   *path;
    QMSG   *msg;
    char   *notice_of;			/* msg is the bounce of this queue ID */
    /* non_smtpd_milters */
    MILTER_SESS *ms;
    int     stage, rcpt;
    BUF     content;
    MILTER_MSG mm;
    char   *macro_rcpt;
    char    macro_buf[64];
} PICKUP;

static int pickup_inflight;
static time_t pickup_pause_until;	/* a filter said "try again later", or a rewriting lookup failed */

#define PICKUP_RW_RETRY	10		/* seconds before a file whose rewriting failed is tried again */

static void pickup_queue(PICKUP *p);

static void pickup_done(void *ctx, int ok, const char *why)
{
    PICKUP *p = ctx;

    pickup_inflight--;
    if (ok) {
	maildrop_remove(p->path);
	if (p->notice_of)
	    log_msg("bounce", "%s: sender non-delivery notification: %s", p->notice_of, p->msg->qid);
	sched_add_incoming(p->d->sched, p->msg);
    } else {
	log_warn("pickup", "%s: queue write failed (%s); the maildrop file is kept", p->msg->qid, why);
    }
    qmsg_free(p->msg);
    free(p->notice_of);
    free(p->path);
    free(p);
}

/* ---- non_smtpd_milters: the events Postfix's cleanup sends for local mail ---- */

static MILTERS *pk_milters;
static char *pk_milters_spec;
static const CONFIG *pk_milters_cf;

/* The filters for mail from sendmail(1) under the current configuration. */
static MILTERS *pickup_milters(RELAYQD *d)
{
    const char *spec = config_known("non_smtpd_milters") ? config_str(d->cf, "non_smtpd_milters") : "";
    char    err[512];

    if (pk_milters_cf == d->cf && pk_milters_spec && strcmp(pk_milters_spec, spec) == 0)
	return (pk_milters);
    milters_free(pk_milters);
    free(pk_milters_spec);
    pk_milters_spec = xstrdup(spec);
    pk_milters_cf = d->cf;
    pk_milters = milters_create(d->cf, "non_smtpd_milters", spec, err, sizeof(err));
    if (pk_milters == NULL && err[0])
	log_warn("pickup", "%s; maildrop files wait until this is fixed", err);
    return (pk_milters);
}

static CLEANUP_RW *pk_rw;
static const CONFIG *pk_rw_cf;
static int pk_rw_broken;

/* Address rewriting for mail from sendmail(1) under the current configuration. */
static CLEANUP_RW *pickup_rw(RELAYQD *d, int *broken)
{
    char    err[512];

    if (pk_rw_cf != d->cf) {
	cleanup_rw_free(pk_rw);
	pk_rw_cf = d->cf;
	pk_rw = cleanup_rw_create(d->cf, err, sizeof(err));
	if ((pk_rw_broken = pk_rw == NULL) != 0)
	    log_warn("pickup", "%s; maildrop files wait until this is fixed", err);
    }
    *broken = pk_rw_broken;
    return (pk_rw);
}

static int pickup_milters_broken(RELAYQD *d)
{
    const char *spec = config_known("non_smtpd_milters") ? config_str(d->cf, "non_smtpd_milters") : "";

    return (*spec && pickup_milters(d) == NULL);
}

/* header_checks ... body_checks for mail from sendmail(1), per configuration. */
static CLEANUP_CHECKS *pk_checks;
static const CONFIG *pk_checks_cf;
static int pk_checks_broken;

static CLEANUP_CHECKS *pickup_checks(RELAYQD *d)
{
    char    err[512];

    if (pk_checks_cf == d->cf)
	return (pk_checks);
    pk_checks = cleanup_checks_close(pk_checks);
    pk_checks_cf = d->cf;
    pk_checks = cleanup_checks_open(d->cf, "", err, sizeof(err));
    pk_checks_broken = pk_checks == NULL && err[0];
    if (pk_checks_broken)
	log_warn("pickup", "%s; maildrop files wait until this is fixed", err);
    return (pk_checks);
}

static const char *pickup_macro(void *ctx, const char *name)
{
    PICKUP *p = ctx;
    RELAYQD *d = p->d;

    if (strcmp(name, "j") == 0)
	return (config_str(d->cf, "myhostname"));
    if (strcmp(name, "daemon_name") == 0)
	return (config_str(d->cf, "milter_macro_daemon_name"));
    if (strcmp(name, "v") == 0)
	return (config_str(d->cf, "milter_macro_v"));
    if (strcmp(name, "_") == 0)
	return ("localhost [127.0.0.1]");
    if (strcmp(name, "client_addr") == 0 || strcmp(name, "daemon_addr") == 0)
	return ("127.0.0.1");
    if (strcmp(name, "client_name") == 0 || strcmp(name, "client_ptr") == 0)
	return ("localhost");
    if (strcmp(name, "i") == 0)
	return (p->stage >= 4 ? p->msg->qid : NULL);
    if (strcmp(name, "mail_addr") == 0)
	return (p->stage >= 2 ? p->msg->sender : NULL);
    if (strcmp(name, "mail_mailer") == 0 || strcmp(name, "rcpt_mailer") == 0)
	return ("smtp");
    if (strcmp(name, "rcpt_addr") == 0)
	return (p->macro_rcpt);
    return (NULL);
}

/*
 * A filter refused the message (or a recipient): as Postfix's cleanup does
 * with local mail, the recipients are returned to the sender.
 */
static void pickup_bounce_rcpts(PICKUP *p, const int *idx, int n, const char *reply)
{
    const char *text = strlen(reply) > 4 ? reply + 4 : reply;
    char    dsn[12] = "5.7.1";		/* the size of QRCPT.dsn */

    if (reply[4] >= '2' && reply[4] <= '5' && reply[5] == '.') {
	size_t  k = strcspn(reply + 4, " ");

	snprintf(dsn, sizeof(dsn), "%.*s", (int) (k < sizeof(dsn) ? k : sizeof(dsn) - 1), reply + 4);
	text = reply + 4 + k + (reply[4 + k] == ' ');
    }
    for (int k = 0; k < n; k++) {
	QRCPT  *r = &p->msg->rcpts[idx[k]];

	free(r->reason);
	r->reason = xstrdup(text);
	snprintf(r->dsn, sizeof(r->dsn), "%s", dsn);
	r->state = QRCPT_BOUNCED;
	log_msg("cleanup", "%s: to=<%s>, relay=none, delay=0, delays=0/0/0/0, dsn=%s, "
		"status=bounced (%s)", p->msg->qid, r->addr, dsn, text);
    }
}

static void pickup_milter_end(PICKUP *p)
{
    milter_sess_free(p->ms);
    p->ms = NULL;
    /* Every way out of the filters passes here (the sanitizer pass saw it lost on reject and tempfail). */
    free(p->macro_rcpt);
    p->macro_rcpt = NULL;
}

/* Give the file back: it stays in the maildrop and is taken again later. */
static void pickup_milter_tempfail(PICKUP *p, const char *where, const char *reply)
{
    log_warn("pickup", "%s: milter-reject: %s from localhost[127.0.0.1]: %s; the maildrop file "
	     "is kept and tried again in a minute", p->msg->qid, where, reply);
    pickup_pause_until = time_sec() + 60;
    pickup_milter_end(p);
    pickup_inflight--;
    qmsg_free(p->msg);
    buf_free(&p->content);
    free(p->path);
    free(p);
}

static void pickup_milter_step(PICKUP *p);

static void pickup_milter_cb(void *ctx, const MILTER_RESULT *r)
{
    PICKUP *p = ctx;
    static const char *const where[] = {"CONNECT", "HELO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE"};
    const char *w = where[p->stage < 5 ? p->stage : 5];

    if (r->hold && !(p->msg->state == QSTATE_HOLD)) {
	p->msg->state = QSTATE_HOLD;
	log_msg("cleanup", "%s: milter-hold: %s from localhost[127.0.0.1]: %s; from=<%s>",
		p->msg->qid, w, r->hold, p->msg->sender);
    }
    if (r->action == MILTER_DISCARD) {
	log_msg("cleanup", "%s: milter-discard: %s from localhost[127.0.0.1]: milter triggers "
		"DISCARD action; from=<%s>", p->msg->qid, w, p->msg->sender);
	pickup_milter_end(p);
	maildrop_remove(p->path);
	log_msg("qmgr", "%s: removed", p->msg->qid);
	pickup_inflight--;
	qmsg_free(p->msg);
	buf_free(&p->content);
	free(p->path);
	free(p);
	return;
    }
    if (r->action == MILTER_REJECT || r->action == MILTER_SHUTDOWN) {
	if (r->reply[0] == '4' || r->action == MILTER_SHUTDOWN) {
	    pickup_milter_tempfail(p, w, r->reply);
	    return;
	}
	log_msg("cleanup", "%s: milter-reject: %s from localhost[127.0.0.1]: %s; from=<%s>",
		p->msg->qid, w, r->reply + 4, p->msg->sender);
	if (p->stage == 3) {
	    /* This recipient only. */
	    pickup_bounce_rcpts(p, &p->rcpt, 1, r->reply);
	} else {
	    int    *idx = xcalloc((size_t) p->msg->nrcpt, sizeof(int));
	    int     n = 0;

	    for (int i = 0; i < p->msg->nrcpt; i++)
		if (p->msg->rcpts[i].state == QRCPT_PENDING)
		    idx[n++] = i;
	    pickup_bounce_rcpts(p, idx, n, r->reply);
	    free(idx);
	    p->stage = 6;			/* nothing more to ask */
	}
    } else if (p->stage == 5) {
	QMSG   *m = p->msg;

	/* The filters' edits: content, then the envelope. */
	if (r->new_sender) {
	    log_msg("cleanup", "%s: milter-change-sender: from=<%s> to <%s>", m->qid, m->sender,
		    r->new_sender);
	    free(m->sender);
	    m->sender = xstrdup(r->new_sender);
	}
	for (int k = 0; k < r->nrcpt_edits; k++) {
	    const MILTER_RCPT_EDIT *e = &r->rcpt_edits[k];

	    if (!e->add) {
		for (int i = 0; i < m->nrcpt; i++)
		    if (m->rcpts[i].state == QRCPT_PENDING && str_casecmp(m->rcpts[i].addr, e->addr) == 0)
			m->rcpts[i].state = QRCPT_DONE;	/* dropped by the filter */
	    } else if (smtpd_addr_valid(e->addr)) {
		m->rcpts = xrealloc(m->rcpts, (size_t) (m->nrcpt + 1) * sizeof(QRCPT));
		memset(&m->rcpts[m->nrcpt], 0, sizeof(QRCPT));
		m->rcpts[m->nrcpt].addr = xstrdup(e->addr);
		m->rcpts[m->nrcpt].state = QRCPT_PENDING;
		m->nrcpt++;
	    }
	}
    }
    p->stage++;
    if (p->stage == 3) {
	p->rcpt = 0;
    } else if (p->stage == 4 && p->rcpt + 1 < p->msg->nrcpt) {
	p->rcpt++;
	p->stage = 3;
    }
    pickup_milter_step(p);
}

/* Ask the filters for the next event: connect, HELO, MAIL, each RCPT, DATA, the message. */
static void pickup_milter_step(PICKUP *p)
{
    char   *argv[2] = {NULL, NULL};

    while (p->stage == 3 && p->rcpt < p->msg->nrcpt
	   && p->msg->rcpts[p->rcpt].state != QRCPT_PENDING)
	p->rcpt++;
    if (p->stage == 3 && p->rcpt >= p->msg->nrcpt)
	p->stage = 4;
    if (p->stage == 4 || p->stage == 5) {
	int     any = 0;

	for (int i = 0; i < p->msg->nrcpt; i++)
	    any |= p->msg->rcpts[i].state == QRCPT_PENDING;
	if (!any)
	    p->stage = 6;			/* every recipient was refused */
    }
    switch (p->stage) {
    case 0:
	milter_conn_event(p->ms, "localhost", "127.0.0.1", 0, 4, pickup_milter_cb, p);
	return;
    case 1:
	milter_helo_event(p->ms, "localhost", pickup_milter_cb, p);
	return;
    case 2:
	argv[0] = xasprintf("<%s>", p->msg->sender);
	milter_mail_event(p->ms, argv, pickup_milter_cb, p);
	free(argv[0]);
	return;
    case 3:
	free(p->macro_rcpt);
	p->macro_rcpt = xstrdup(p->msg->rcpts[p->rcpt].addr);
	argv[0] = xasprintf("<%s>", p->msg->rcpts[p->rcpt].addr);
	milter_rcpt_event(p->ms, argv, pickup_milter_cb, p);
	free(argv[0]);
	return;
    case 4:
	milter_data_event(p->ms, pickup_milter_cb, p);
	return;
    case 5:
	p->mm.content = &p->content;
	p->mm.own_received = 1;
	milter_message(p->ms, &p->mm, pickup_milter_cb, p);
	return;
    default:
	break;
    }
    /* Done: what the filters left goes to the queue. */
    pickup_milter_end(p);
    free(p->macro_rcpt);
    p->macro_rcpt = NULL;
    free(p->msg->content);
    p->msg->size = p->content.len;
    p->msg->content = buf_steal(&p->content);
    pickup_queue(p);
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
    CLEANUP_RW *rw;
    int     rw_broken, crc;
    char   *single_rcpt;

    if (md->nrcpt <= 0) {
	*why = "no recipients";
	return (-1);
    }
    /* Anyone can write a maildrop file: its addresses pass smtpd's rules, or the file goes aside. */
    for (int i = 0; i < md->nrcpt; i++) {
	if (!smtpd_addr_valid(md->rcpts[i])) {
	    *why = "bad recipient address syntax";
	    return (-1);
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
	return (-1);
    }
    m->rcpts = xcalloc((size_t) md->nrcpt, sizeof(QRCPT));
    m->nrcpt = md->nrcpt;
    for (int i = 0; i < md->nrcpt; i++)
	m->rcpts[i].addr = xstrdup(md->rcpts[i]);
    m->client_name = xstrdup("localhost");
    m->client_addr = xstrdup("127.0.0.1");
    queue_assign_id(d->queue, m);
    rw = pickup_rw(d, &rw_broken);
    single_rcpt = md->nrcpt == 1 ? xstrdup(md->rcpts[0]) : NULL;
    if (rw_broken || cleanup_rw_envelope(rw, m) < 0) {
	/* A table lookup failed (logged): the file stays in the maildrop; try again in a while. */
	free(single_rcpt);
	qmsg_free(m);
	pickup_pause_until = time_sec() + PICKUP_RW_RETRY;
	return (1);
    }

    memset(&ci, 0, sizeof(ci));
    ci.myhostname = config_str(d->cf, "myhostname");
    ci.qid = m->qid;
    /* Postfix's "(Postfix, from userid 1000)": the number, of the file's owner (md->uid), not the claimed name. */
    snprintf(uidbuf, sizeof(uidbuf), "%u", (unsigned) md->uid);
    ci.local_user = uidbuf;
    ci.arrival_us = m->arrival_us;
    ci.rewrite_allowed = 1;
    ci.add_received = 1;
    ci.single_rcpt = single_rcpt;
    ci.header_size_limit = (size_t) config_size(d->cf, "header_size_limit");
    ci.checks = pickup_checks(d);
    ci.body_limit = config_size(d->cf, "body_checks_size_limit");
    ci.line_limit = (size_t) config_size(d->cf, "line_length_limit");
    ci.sender = m->sender;
    ci.last_rcpt = m->rcpts[m->nrcpt - 1].addr;
    ci.rw = rw;
    ci.rw_context = CLEANUP_RW_LOCAL;
    crc = cleanup_message(&ci, md->content, md->len, &content, &msgid, err, sizeof(err));
    free(single_rcpt);
    if (crc < 0) {
	qmsg_free(m);
	buf_free(&content);
	free(msgid);
	cleanup_info_free(&ci);
	*why = "cleanup refused the message";
	log_warn("pickup", "%s: %s", path, err);
	return (-1);
    }
    log_msg("pickup", "%s: uid=%u from=<%s>", m->qid, (unsigned) md->uid, m->sender);
    if (ci.lookup_error || ci.rw_errs || (ci.reason && ci.defer)) {
	/* As Postfix's pickup: the file stays in the maildrop and is tried again later. */
	qmsg_free(m);
	buf_free(&content);
	free(msgid);
	pickup_pause_until = time_sec() + (ci.rw_errs ? PICKUP_RW_RETRY : 60);
	cleanup_info_free(&ci);
	return (1);
    }
    if (ci.discard) {
	qmsg_free(m);
	buf_free(&content);
	free(msgid);
	cleanup_info_free(&ci);
	return (0);				/* gone, as Postfix's DISCARD */
    }
    if (ci.hold)
	m->state = QSTATE_HOLD;
    cleanup_envelope_edits(&ci, m);
    {
	/* The after-queue content filter: a FILTER action, else content_filter. */
	const char *flt = ci.filter ? ci.filter : config_str(d->cf, "content_filter");
	char    ferr[256];

	if (*flt && !cleanup_filter_valid(flt, ferr, sizeof(ferr))) {
	    log_warn("cleanup", "%s: FILTER %s: %s; the maildrop file is kept", m->qid, flt, ferr);
	    qmsg_free(m);
	    buf_free(&content);
	    free(msgid);
	    cleanup_info_free(&ci);
	    pickup_pause_until = time_sec() + 60;
	    return 1;
	}
	if (*flt)
	    m->filter = xstrdup(flt);
    }
    log_msg("cleanup", "%s: message-id=%s", m->qid, msgid && *msgid ? msgid : "<>");
    m->message_id = msgid;
    m->size = content.len;
    m->content = buf_steal(&content);

    PICKUP *p = xcalloc(1, sizeof(*p));

    p->d = d;
    p->path = xstrdup(path);
    p->msg = m;
    long long hop_limit = config_int(d->cf, "hopcount_limit");

    int     hops_over = hop_limit > 0 && ci.hops >= hop_limit;
    char   *rej = ci.reason ? xstrdup(ci.reason) : NULL;
    int     no_milters = ci.no_milters;

    cleanup_info_free(&ci);
    if (!hops_over && !rej && !no_milters && pickup_milters(d) != NULL) {
	/* non_smtpd_milters: the filters see it first; the queue gets it after them. */
	buf_init(&p->content);
	buf_append(&p->content, m->content, m->size);
	p->ms = milter_sess_create(d->base, pickup_milters(d), pickup_macro, p);
	pickup_inflight++;
	pickup_milter_step(p);
	return (1);
    }
    if (hops_over || rej) {
	/*
	 * Postfix's cleanup bounces local mail that went round too often
	 * (5.4.0 "too many hops") or that a check rejected (its text).
	 */
	int    *idx = xcalloc((size_t) m->nrcpt, sizeof(int));
	QMSG   *nt;
	char    bdsn[12] = "5.4.0";
	const char *btext = "too many hops";

	if (hops_over) {
	    log_warn("cleanup", "%s: message rejected: hopcount exceeded", m->qid);
	} else {
	    size_t  n = strcspn(rej, " ");

	    snprintf(bdsn, sizeof(bdsn), "%.*s", (int) (n < 11 ? n : 11), rej);
	    btext = rej[n] ? rej + n + 1 : rej;
	}
	for (int i = 0; i < m->nrcpt; i++) {
	    idx[i] = i;
	    m->rcpts[i].reason = xstrdup(btext);
	    snprintf(m->rcpts[i].dsn, sizeof(m->rcpts[i].dsn), "%s", bdsn);
	    m->rcpts[i].state = QRCPT_BOUNCED;
	    log_delivery("cleanup", m->qid, &(LOG_RCPT) {m->rcpts[i].addr, m->rcpts[i].orcpt}, "none",
			 &(LOG_STATS) {.arrival_us = m->arrival_us, .active_us = m->arrival_us},
			 bdsn, "bounced", btext);
	}
	free(rej);
	rej = NULL;
	nt = bounce_build(d->cf, m, idx, m->nrcpt, BOUNCE_FAILED, (int64_t) time_sec());
	free(idx);
	if (nt == NULL) {			/* the null sender gets no notice */
	    log_msg("qmgr", "%s: removed", m->qid);
	    qmsg_free(m);
	    free(p->path);
	    free(p);
	    return (0);
	}
	queue_assign_id(d->queue, nt);
	log_msg("qmgr", "%s: removed", m->qid);
	p->notice_of = xstrdup(m->qid);
	qmsg_free(m);
	p->msg = m = nt;
    }
    pickup_inflight++;
    pickup_queue(p);
    return (1);					/* kept until durable: pickup_done removes it */
}

/* Into the queue, with a notice to the sender for recipients refused on the way (filters). */
static void pickup_queue(PICKUP *p)
{
    RELAYQD *d = p->d;
    QMSG   *m = p->msg;
    QBATCH *b = queue_batch(d->queue);
    int    *idx = xcalloc((size_t) (m->nrcpt > 0 ? m->nrcpt : 1), sizeof(int));
    int     nb = 0, npending = 0;

    for (int i = 0; i < m->nrcpt; i++) {
	if (m->rcpts[i].state == QRCPT_BOUNCED && p->notice_of == NULL)
	    idx[nb++] = i;
	if (m->rcpts[i].state == QRCPT_PENDING)
	    npending++;
    }
    if (nb > 0) {
	QMSG   *nt = bounce_build(d->cf, m, idx, nb, BOUNCE_FAILED, (int64_t) time_sec());

	if (nt != NULL) {
	    queue_assign_id(d->queue, nt);
	    if (npending == 0) {
		/* Nothing left to deliver: the notice replaces the message. */
		log_msg("qmgr", "%s: removed", m->qid);
		p->notice_of = xstrdup(m->qid);
		qmsg_free(m);
		p->msg = m = nt;
	    } else {
		log_msg("bounce", "%s: sender non-delivery notification: %s", m->qid, nt->qid);
		queue_batch_insert(b, nt);
		qmsg_free(nt);
	    }
	} else if (npending == 0) {
	    log_msg("qmgr", "%s: removed", m->qid);
	    queue_batch_abort(b);
	    maildrop_remove(p->path);
	    pickup_inflight--;
	    free(idx);
	    qmsg_free(m);
	    free(p->notice_of);
	    free(p->path);
	    free(p);
	    return;
	}
    }
    free(idx);
    queue_batch_insert(b, m);
    queue_batch_submit(b, pickup_done, p);
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
	return (0);
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
    return (waiting);
}

void    pickup_scan(RELAYQD *d)
{
    if (pickup_inflight > 0 || d->stopping || pickup_space_wait(d))
	return;
    if (time_sec() < pickup_pause_until || pickup_milters_broken(d))
	return;
    (void) pickup_checks(d);
    if (pk_checks_broken)
	return;
    {
	int     rw_broken;

	(void) pickup_rw(d, &rw_broken);
	if (rw_broken)
	    return;
    }
    long long max = config_size(d->cf, "message_size_limit");

    maildrop_scan(config_str(d->cf, "queue_directory"), max > 0 ? (size_t) max : 0, pickup_take, d);
}
