/*
 * admin - the daemon's side of the control sockets.
 *
 * Query socket (any local user): mailq, qshape, explain, top.  Admin socket
 * (setgid_group): flush, hold, release, delete, requeue, expire.  The views
 * and the edits are the control and explain modules' code, the same as the
 * CLI runs with the daemon down; what only the daemon knows comes from the
 * scheduler glue (sched.h).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"
#include "log/log.h"
#include "explain/explain.h"
#include "control/qview.h"
#include "relayqd/relayqd.h"

/* ---- helpers ---- */

/*
 * Requests that read the queue (mailq, qshape, explain) or change it (hold
 * A B C, delete ALL, ...) run once every pass batch submitted before them
 * has committed (sched_after_commits(), from the writer's completion
 * notification): what the log already says (deferred, delivered) is then
 * what they see, a requeue copies the recipients' states as the last pass
 * left them, and a message that the pass removed is not found.  The
 * client is answered then (control_defer()).
 *
 * An edit is made by control_admin_submit(), the same code as the CLI's
 * with the daemon down; its answer comes once its batch is durable, so
 * that "relayq hold ID; mailq" shows the hold (postsuper is synchronous
 * too).
 */
typedef int (*ADMIN_VIEW) (RELAYQD *d, int argc, char **argv, BUF *out);

typedef struct ADMIN_REQ {
    RELAYQD *d;
    uint64_t token;			/* control_defer() */
    int     argc;
    char  **argv;			/* argv[0] is the request */
    ADMIN_VIEW view;			/* NULL: an edit */
} ADMIN_REQ;

static void admin_answer(void *ctx, int ok, BUF *reply)
{
    ADMIN_REQ *r = ctx;

    if (r->view == NULL)
	r->d->admin_busy--;
    control_finish(r->d->control, r->token, ok, reply);
    for (int i = 0; i < r->argc; i++)
	free(r->argv[i]);
    free(r->argv);
    free(r);
}

static void admin_settled(void *ctx)
{
    ADMIN_REQ *r = ctx;
    RELAYQD *d = r->d;
    CONTROL_EDIT_HOOKS hooks;
    BUF     out = BUF_INIT;

    if (r->view) {
	int     ok = r->view(d, r->argc, r->argv, &out) == 0;

	admin_answer(r, ok, &out);
	buf_free(&out);
	return;
    }
    sched_edit_hooks(d->sched, &hooks);
    control_admin_submit(d->queue, r->argv[0], r->argv + 1, r->argc - 1, (int64_t) time_sec(),
			 &hooks, admin_answer, r);
    sched_kick(d->sched);
}

static int admin_when_settled(RELAYQD *d, int argc, char **argv, ADMIN_VIEW view)
{
    ADMIN_REQ *r = xcalloc(1, sizeof(*r));

    r->d = d;
    r->argc = argc;
    r->argv = xcalloc((size_t) argc, sizeof(char *));
    for (int i = 0; i < argc; i++)
	r->argv[i] = xstrdup(argv[i]);
    r->view = view;
    if (view == NULL)
	d->admin_busy++;			/* an edit: the daemon's exit waits for it (admin_idle) */
    r->token = control_defer(d->control);
    sched_after_commits(d->sched, admin_settled, r);
    return 0;
}

/*
 * mailq, mailq json, qshape: streamed.  The queue is read a page at a time
 * by the view thread (qview.h), off the event loop; each page comes back
 * to the loop, where what only the scheduler knows (active, next attempt,
 * dead destination: sched_state) is joined in and the page is formatted
 * and written to the client (control_stream).  The walk pauses while the
 * client's buffer is full, so a view holds one page and at most
 * CONTROL_STREAM_HIGH bytes of output whatever the queue's size.
 */
#define ADMIN_VIEW_PAGE	256		/* messages per page */
#define ADMIN_WHATIF_PAGE 64		/* explain --what-if: ~100 us to 0.5 ms of the thread a message */

/*
 * explain --what-if --all: the walk's own object (qview_walk_own), the
 * only thing the view thread touches besides the page: the predictions
 * and the page's lines are made there (explain_whatif_page), since three
 * simulations a message would hold the loop for 25 to 130 ms a page.
 */
typedef struct ADMIN_WHATIF {
    EXPLAIN_WHATIF *wi;
    BUF     lines;			/* the page's, made by the thread */
} ADMIN_WHATIF;

static void admin_whatif_free(void *obj)
{
    ADMIN_WHATIF *aw = obj;

    explain_whatif_free(aw->wi);
    buf_free(&aw->lines);
    free(aw);
}

typedef struct ADMIN_STREAM {
    RELAYQD *d;
    CONTROL_STREAM *cs;			/* NULL once the client is gone */
    SHOWQ_STREAM *ss;			/* mailq, qshape; or */
    ADMIN_WHATIF *aw;			/* explain --what-if: the walk's once started */
    QVIEW_WALK *w;			/* the walk, once started */
    int     with_rcpts;
    char  **ids;			/* explain --what-if ID...: those, not a walk */
    int     nids;
    BUF     out;
} ADMIN_STREAM;

static void admin_stream_free(ADMIN_STREAM *as)
{
    showq_stream_free(as->ss);
    if (as->aw && as->w == NULL)
	admin_whatif_free(as->aw);		/* never handed to a walk */
    for (int i = 0; i < as->nids; i++)
	free(as->ids[i]);
    free(as->ids);
    buf_free(&as->out);
    free(as);
}

static int admin_stream_page(void *ctx, QMSG *const *msgs, int n)
{
    ADMIN_STREAM *as = ctx;
    int     full;

    for (int i = 0; i < n; i++)
	showq_stream_msg(as->ss, msgs[i], &as->out);
    if (as->out.len == 0)
	return 0;
    full = control_stream_write(as->cs, as->out.data, as->out.len);
    buf_reset(&as->out);
    return full;
}

/* explain --what-if, on the loop: join in the daemon's state; the thread does the rest. */
static int admin_whatif_page(void *ctx, QMSG *const *msgs, int n)
{
    ADMIN_STREAM *as = ctx;

    explain_whatif_join(as->aw->wi, msgs, n, sched_state, as->d->sched);
    return (QVIEW_WORK);
}

/* On the view thread. */
static void admin_whatif_work(void *obj, QMSG *const *msgs, int n)
{
    ADMIN_WHATIF *aw = obj;

    explain_whatif_page(aw->wi, msgs, n, &aw->lines);
}

/* Back on the loop: the page's lines to the client. */
static int admin_whatif_after(void *ctx, QMSG *const *msgs, int n)
{
    ADMIN_STREAM *as = ctx;
    int     full;

    if (as->aw->lines.len == 0)
	return (0);
    full = control_stream_write(as->cs, as->aw->lines.data, as->aw->lines.len);
    buf_reset(&as->aw->lines);
    return (full);
}

static void admin_stream_done(void *ctx, int ok, const char *why)
{
    ADMIN_STREAM *as = ctx;

    if (ok) {
	if (as->aw) {
	    char   *data = NULL;
	    size_t  len = 0;
	    FILE   *fp = open_memstream(&data, &len);

	    if (fp == NULL)
		msg_fatal("open_memstream: out of memory");
	    /* The header, when no page came (an empty queue). */
	    buf_append(&as->out, as->aw->lines.data, as->aw->lines.len);
	    explain_whatif_end(as->aw->wi, fp);
	    fclose(fp);
	    buf_append(&as->out, data, len);
	    free(data);
	} else {
	    showq_stream_end(as->ss, &as->out);
	}
	control_stream_write(as->cs, as->out.data, as->out.len);
    } else {
	log_warn("showq", "queue view failed: %s", why);
    }
    control_stream_end(as->cs, ok, "error reading the queue");
    as->w = NULL;				/* qview frees it (and aw) after this returns */
    as->aw = NULL;
    admin_stream_free(as);
}

/* The client has read enough: the next page. */
static void admin_stream_more(void *ctx)
{
    ADMIN_STREAM *as = ctx;

    qview_walk_resume(as->w);
}

/* The client went away (or stopped reading for ipc_timeout). */
static void admin_stream_gone(void *ctx)
{
    ADMIN_STREAM *as = ctx;

    as->cs = NULL;
    if (as->w) {
	qview_walk_cancel(as->w);
	admin_stream_free(as);
    }
    /* else the walk has not started yet: admin_stream_start() frees it */
}

/*
 * explain --what-if ID...: the messages named (at most EXPLAIN_MAX_IDS) are
 * loaded and joined here, their predictions made on the view thread as
 * --all's pages are.  Returns -1 once the client has been answered with
 * an error (and as freed).
 */
static int admin_whatif_ids(ADMIN_STREAM *as)
{
    QMSG   *msgs[EXPLAIN_MAX_IDS] = {0};
    char    why[256], err[512];
    int     n;

    for (n = 0; n < as->nids && n < EXPLAIN_MAX_IDS; n++) {
	int     status = queue_load_qid(as->d->queue, as->ids[n], 0, &msgs[n], why, sizeof(why));

	if (status != QUEUE_OK) {
	    if (status == QUEUE_GONE)
		snprintf(err, sizeof(err), "%s: no such message in the queue", as->ids[n]);
	    else
		snprintf(err, sizeof(err), "%s: cannot read the queue: %s", as->ids[n], why);
	    while (n > 0)
		qmsg_free(msgs[--n]);
	    control_stream_end(as->cs, 0, err);
	    admin_stream_free(as);
	    return -1;
	}
    }
    explain_whatif_join(as->aw->wi, msgs, n, sched_state, as->d->sched);
    as->w = qview_walk_given(as->d->view, msgs, n, as->aw, admin_whatif_free, admin_whatif_work,
			     admin_whatif_after, admin_stream_done, as);
    if (as->w == NULL) {
	while (n > 0)
	    qmsg_free(msgs[--n]);
	control_stream_end(as->cs, 0, "the queue cannot be read now");
	admin_stream_free(as);
	return -1;
    }
    return 0;
}

/* Once the pass batches submitted before the request have committed. */
static void admin_stream_start(void *ctx)
{
    ADMIN_STREAM *as = ctx;
    QCURSOR c;

    if (as->cs == NULL) {
	admin_stream_free(as);
	return;
    }
    queue_cursor_init(&c);
    if (as->aw && as->ids) {
	if (admin_whatif_ids(as) < 0)
	    return;				/* answered */
    } else if (as->aw) {
	as->w = qview_walk(as->d->view, &c, 1, ADMIN_WHATIF_PAGE, admin_whatif_page,
			   admin_stream_done, as);
	if (as->w) {
	    qview_walk_own(as->w, as->aw, admin_whatif_free);
	    qview_walk_work(as->w, admin_whatif_work, admin_whatif_after);
	}
    } else {
	as->w = qview_walk(as->d->view, &c, as->with_rcpts, ADMIN_VIEW_PAGE, admin_stream_page,
			   admin_stream_done, as);
    }
    if (as->w == NULL) {
	control_stream_end(as->cs, 0, "the queue cannot be read now");
	admin_stream_free(as);
    }
}

static int admin_stream(RELAYQD *d, SHOWQ_STREAM *ss, ADMIN_WHATIF *aw, char **ids, int nids,
			        int with_rcpts, BUF *out)
{
    ADMIN_STREAM *as = xcalloc(1, sizeof(*as));

    as->d = d;
    as->ss = ss;
    as->aw = aw;
    as->ids = ids;
    as->nids = ids ? nids : 0;
    as->with_rcpts = with_rcpts;
    buf_init(&as->out);
    if ((as->cs = control_stream(d->control, admin_stream_more, admin_stream_gone, as, out)) == NULL) {
	admin_stream_free(as);
	return -1;
    }
    sched_after_commits(d->sched, admin_stream_start, as);
    return 0;
}

static int admin_mailq(RELAYQD *d, int argc, char **argv, BUF *out)
{
    if (argc > 1 && strcmp(argv[1], "json") == 0)
	return admin_stream(d, showq_stream_json(sched_state, d->sched, sched_params(d->sched)), NULL, NULL, 0, 1, out);
    return admin_stream(d, showq_stream_text(sched_state, d->sched), NULL, NULL, 0, 1, out);
}

static int admin_qshape(RELAYQD *d, int argc, char **argv, BUF *out)
{
    const char *name = NULL;
    int     by_sender = 0;

    for (int i = 1; i < argc; i++) {
	if (strcmp(argv[i], "-s") == 0)
	    by_sender = 1;
	else
	    name = argv[i];
    }
    return admin_stream(d, showq_stream_qshape(name, by_sender, (int64_t) time_sec(), 10), NULL,
			NULL, 0, !by_sender, out);
}

/*
 * explain --what-if: the queue's schedule now and after a reload with the
 * --set values, from this daemon's state; nothing is changed.
 */
static int admin_explain_whatif(RELAYQD *d, const EXPLAIN_OPTS *o, FILE *fp, char *err, size_t errlen)
{
    QMGR_PARAMS changed;

    if (explain_whatif_params(d->confdir, d->overrides, d->noverrides, o, &changed, err, errlen) < 0)
	return -1;
    return explain_whatif(d->queue, sched_params(d->sched), &changed, o, sched_state, d->sched,
			  sched_anchor(d->sched), (int64_t) time_sec(), fp, err, errlen);
}

/*
 * explain --what-if (--all, or queue IDs): streamed from the view thread,
 * as mailq is (the header now, a page's lines as the thread has made
 * them, the summary at the end), so that neither the walk nor the
 * simulations hold the loop and the answer is never kept whole.  Before
 * the walk starts, the pass batches submitted before the request commit
 * (admin_stream_start).
 */
static int admin_explain_whatif_stream(RELAYQD *d, const EXPLAIN_OPTS *o, BUF *out)
{
    QMGR_PARAMS changed;
    ADMIN_WHATIF *aw;
    char  **ids = NULL;
    char    err[512];
    char   *data = NULL;
    size_t  len = 0;
    FILE   *fp;

    if (explain_whatif_params(d->confdir, d->overrides, d->noverrides, o, &changed, err, sizeof(err)) < 0) {
	buf_puts(out, err);
	return -1;
    }
    if ((fp = open_memstream(&data, &len)) == NULL) {
	buf_puts(out, "out of memory");
	return -1;
    }
    aw = xcalloc(1, sizeof(*aw));
    buf_init(&aw->lines);
    aw->wi = explain_whatif_begin(sched_params(d->sched), &changed, o, sched_anchor(d->sched),
				  (int64_t) time_sec(), fp);
    fclose(fp);
    buf_append(&aw->lines, data, len);		/* the header goes out with the first page */
    free(data);
    if (!o->all) {
	ids = xcalloc((size_t) (o->nids > 0 ? o->nids : 1), sizeof(char *));
	for (int i = 0; i < o->nids; i++)
	    ids[i] = xstrdup(o->ids[i]);
    }
    return admin_stream(d, NULL, aw, ids, o->nids, 1, out);
}

/* explain ID [options]: from the daemon's state. */
static int admin_explain(RELAYQD *d, int argc, char **argv, BUF *out)
{
    EXPLAIN_OPTS o;
    char    err[512];
    char   *data = NULL;
    size_t  len = 0;
    FILE   *fp;
    int     ret;

    ret = explain_opts_parse(argc - 1, argv + 1, &o, err, sizeof(err));
    if (ret == 0 && o.qid == NULL && !o.what_if) {
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
    if (o.what_if)
	ret = admin_explain_whatif(d, &o, fp, err, sizeof(err));
    else
	ret = explain_queued(d->queue, sched_params(d->sched), &o, sched_state, d->sched,
			     sched_anchor(d->sched), (int64_t) time_sec(), fp, err, sizeof(err));
    fclose(fp);
    if (ret < 0)
	buf_puts(out, err);
    else
	buf_append(out, data, len);
    free(data);
    return ret;
}

/*
 * flush DOMAIN: the messages with a pending recipient in DOMAIN, found by
 * a walk on the view thread; each page's are flushed as it comes (the
 * scheduler starts on them at once), the answer counts them at the end.
 * The walk owns the request (qview_walk_own): whichever way it ends, even
 * with the daemon stopping in the middle, it is freed with the walk.
 */
typedef struct ADMIN_FLUSH {
    RELAYQD *d;
    uint64_t token;			/* control_defer() */
    char   *domain;
    int     n;
    QVIEW_WALK *w;
} ADMIN_FLUSH;

static void admin_flush_free(void *obj)
{
    ADMIN_FLUSH *f = obj;

    f->d->admin_busy--;
    free(f->domain);
    free(f);
}

static void admin_flush_answer(ADMIN_FLUSH *f, int ok, const char *why)
{
    BUF     out = BUF_INIT;

    if (ok) {
	buf_printf(&out, "Flushing %d message%s for %s\n", f->n, f->n == 1 ? "" : "s", f->domain);
    } else {
	buf_printf(&out, "flush %s: %s (%d message%s flushed)", f->domain, why, f->n, f->n == 1 ? "" : "s");
    }
    control_finish(f->d->control, f->token, ok, &out);
    buf_free(&out);
}

static int admin_flush_page(void *ctx, QMSG *const *msgs, int n)
{
    ADMIN_FLUSH *f = ctx;
    uint64_t seqs[ADMIN_VIEW_PAGE];
    int     k = 0;

    if (f->d->stopping) {
	/* The rest is not looked at: the daemon exits once this walk is gone. */
	admin_flush_answer(f, 0, "the mail system is stopping");
	qview_walk_cancel(f->w);
	return 0;
    }
    for (int i = 0; i < n && k < ADMIN_VIEW_PAGE; i++) {
	const QMSG *m = msgs[i];

	if (m->state == QSTATE_CORRUPT)
	    continue;
	for (int j = 0; j < m->nrcpt; j++) {
	    const char *at = strrchr(m->rcpts[j].addr, '@');

	    if (m->rcpts[j].state == QRCPT_PENDING && at && str_casecmp(at + 1, f->domain) == 0) {
		seqs[k++] = m->seq;
		break;
	    }
	}
    }
    if (k > 0)
	sched_flush(f->d->sched, seqs, k);
    f->n += k;
    return 0;
}

static void admin_flush_done(void *ctx, int ok, const char *why)
{
    ADMIN_FLUSH *f = ctx;

    if (!ok)
	log_warn("showq", "queue view failed: %s", why);
    admin_flush_answer(f, ok, "the queue could not be read");
    /* qview frees f with the walk */
}

static int admin_flush_domain(RELAYQD *d, const char *domain, BUF *out)
{
    ADMIN_FLUSH *f = xcalloc(1, sizeof(*f));
    QCURSOR c;

    f->d = d;
    f->domain = xstrdup(domain);
    queue_cursor_init(&c);
    if ((f->w = qview_walk(d->view, &c, 1, ADMIN_VIEW_PAGE, admin_flush_page, admin_flush_done, f)) == NULL) {
	buf_puts(out, "the queue cannot be read now");
	free(f->domain);
	free(f);
	return -1;
    }
    d->admin_busy++;
    qview_walk_own(f->w, f, admin_flush_free);
    f->token = control_defer(d->control);
    return 0;
}

int     admin_idle(const RELAYQD *d)
{
    return (d->admin_busy == 0);
}

int     admin_handle(void *ctx, int admin, int argc, char **argv, BUF *out)
{
    RELAYQD *d = ctx;
    const char *cmd = argc > 0 ? argv[0] : "";

    if (strcmp(cmd, "mailq") == 0)
	return admin_mailq(d, argc, argv, out);
    if (strcmp(cmd, "qshape") == 0)
	return admin_qshape(d, argc, argv, out);
    if (strcmp(cmd, "explain") == 0) {
	EXPLAIN_OPTS o;
	char    err[512];

	if (explain_opts_parse(argc - 1, argv + 1, &o, err, sizeof(err)) == 0 && o.what_if
	    && (o.all || o.nids > 0))
	    return admin_explain_whatif_stream(d, &o, out);
	return admin_when_settled(d, argc, argv, admin_explain);
    }
    if (strcmp(cmd, "top") == 0)
	return top_answer(d, argc, argv, out);	/* counters only: answered at once (top.c) */
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
	if (argc > 1)
	    return admin_flush_domain(d, argv[1], out);
	sched_flush(d->sched, NULL, -1);
	return 0;
    }
    if (argc < 2) {
	buf_printf(out, "usage: %s ID...|ALL", cmd);
	return -1;
    }
    return admin_when_settled(d, argc, argv, NULL);
}
