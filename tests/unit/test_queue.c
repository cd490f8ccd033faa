/*
 * test_queue - the durable queue: round trips, updates, history, walks,
 * IDs, the queue lock, group commit from many threads, crash points
 * (fork + _exit inside the writer), recovery of corrupt records, and
 * refusal of unreadable or newer databases.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "util/util.h"
#include "queue/queue.h"
#include "t.h"

static char tdir[64];

static void tmp_clean(void)
{
    static const char *const names[] = {
	"queue.db", "queue.db-wal", "queue.db-shm", "queue.db-journal", "lock", "reserve",
    };
    char    path[128];
    size_t  i;

    for (i = 0; i < ARRAY_LEN(names); i++) {
	snprintf(path, sizeof(path), "%s/%s", tdir, names[i]);
	unlink(path);
    }
    rmdir(tdir);
}

/* A fresh, not yet existing queue directory (queue_open creates it). */
static const char *tmp_dir(void)
{
    if (tdir[0])
	tmp_clean();
    snprintf(tdir, sizeof(tdir), "/tmp/test_queue.XXXXXX");
    if (mkdtemp(tdir) == 0) {
	perror("mkdtemp");
	exit(2);
    }
    rmdir(tdir);
    return tdir;
}

static char *db_path(void)
{
    return xasprintf("%s/queue.db", tdir);
}

static QUEUE *open_or_die(int mode)
{
    char    err[256];
    QUEUE  *q = queue_open(tdir, mode, err, sizeof(err));

    if (q == 0) {
	printf("\nqueue_open(%s): %s\n", tdir, err);
	exit(2);
    }
    return q;
}

/* queue_load() for tests that only want the message (NULL unless QUEUE_OK). */
static QMSG *qload(QUEUE *q, uint64_t seq, int with_content)
{
    QMSG   *m;

    queue_load(q, seq, with_content, &m, NULL, 0);
    return m;
}

static QMSG *qload_qid(QUEUE *q, const char *qid, int with_content)
{
    QMSG   *m;

    queue_load_qid(q, qid, with_content, &m, NULL, 0);
    return m;
}

static const char content_bytes[] = "From: a@b\r\nSubject: x\r\n\r\nNUL\0here\r\n.\r\n\0";

/* A message with n recipients, an ID from q, and the content above. */
static QMSG *make_msg(QUEUE *q, int nrcpt)
{
    QMSG   *m = xcalloc(1, sizeof(*m));
    int     i;

    queue_assign_id(q, m);
    m->state = QSTATE_INCOMING;
    m->flags = QFLAG_SMTPUTF8 | QFLAG_8BITMIME;
    m->arrival_us = 1700000000123456LL;
    m->create_time = 1700000001;
    m->next_eligible = 1700000900;
    m->attempts = 0;
    m->sender = xstrdup("sender@example.org");
    m->envid = xstrdup("ENV-ID+2B1");
    m->ret = QRET_HDRS;
    m->client_name = xstrdup("localhost");
    m->client_addr = xstrdup("127.0.0.1");
    m->helo = xstrdup("client.example");
    m->message_id = xstrdup("<id@example>");
    m->size = sizeof(content_bytes) - 1;
    m->content = xmalloc(m->size);
    memcpy(m->content, content_bytes, m->size);
    m->nrcpt = nrcpt;
    m->rcpts = xcalloc((size_t) nrcpt, sizeof(QRCPT));
    for (i = 0; i < nrcpt; i++) {
	m->rcpts[i].addr = xasprintf("r%d@dest.example", i);
	m->rcpts[i].orcpt = i == 0 ? xstrdup("rfc822;Orig@Dest.Example") : 0;
	m->rcpts[i].notify = i == 0 ? (QNOTIFY_SUCCESS | QNOTIFY_DELAY) : 0;
	m->rcpts[i].state = QRCPT_PENDING;
    }
    return m;
}

static int insert_sync(QUEUE *q, const QMSG *m)
{
    QBATCH *b = queue_batch(q);

    queue_batch_insert(b, m);
    return queue_batch_commit(b, NULL, 0);
}

/* Round trip of every field, content bytes included (NULs, CRLF). */
static void test_roundtrip(void)
{
    QUEUE  *q;
    QMSG   *m, *l;

    tmp_dir();
    q = open_or_die(QUEUE_OPEN_ADMIN);
    m = make_msg(q, 2);
    m->rcpts[1].reason = xstrdup("connect to x: refused");
    snprintf(m->rcpts[1].dsn, sizeof(m->rcpts[1].dsn), "4.4.1");
    m->rcpts[1].remote_mta = xstrdup("mx.dest.example");
    m->rcpts[1].diag = xstrdup("451 4.4.1 try later");
    T_EQ_INT(insert_sync(q, m), 0);
    queue_close(q);

    /* Reopened read-only: everything came from disk. */
    q = open_or_die(QUEUE_OPEN_READ);
    l = qload(q, m->seq, 1);
    T_CHECK(l != 0);
    if (l) {
	T_EQ_STR(l->qid, m->qid);
	T_EQ_INT(l->state, QSTATE_INCOMING);
	T_EQ_INT(l->flags, QFLAG_SMTPUTF8 | QFLAG_8BITMIME);
	T_EQ_INT(l->arrival_us, 1700000000123456LL);
	T_EQ_INT(l->create_time, 1700000001);
	T_EQ_INT(l->next_eligible, 1700000900);
	T_EQ_STR(l->sender, "sender@example.org");
	T_EQ_STR(l->envid, "ENV-ID+2B1");
	T_EQ_INT(l->ret, QRET_HDRS);
	T_EQ_STR(l->client_name, "localhost");
	T_EQ_STR(l->client_addr, "127.0.0.1");
	T_EQ_STR(l->helo, "client.example");
	T_EQ_STR(l->message_id, "<id@example>");
	T_EQ_INT(l->size, sizeof(content_bytes) - 1);
	T_CHECK(l->content && memcmp(l->content, content_bytes, l->size) == 0);
	T_EQ_INT(l->nrcpt, 2);
	if (l->nrcpt == 2) {
	    T_EQ_STR(l->rcpts[0].addr, "r0@dest.example");
	    T_EQ_STR(l->rcpts[0].orcpt, "rfc822;Orig@Dest.Example");
	    T_EQ_INT(l->rcpts[0].notify, QNOTIFY_SUCCESS | QNOTIFY_DELAY);
	    T_CHECK(l->rcpts[0].reason == 0);
	    T_EQ_STR(l->rcpts[0].dsn, "");
	    T_EQ_STR(l->rcpts[1].addr, "r1@dest.example");
	    T_CHECK(l->rcpts[1].orcpt == 0);
	    T_EQ_STR(l->rcpts[1].reason, "connect to x: refused");
	    T_EQ_STR(l->rcpts[1].dsn, "4.4.1");
	    T_EQ_STR(l->rcpts[1].remote_mta, "mx.dest.example");
	    T_EQ_STR(l->rcpts[1].diag, "451 4.4.1 try later");
	}
    }
    qmsg_free(l);
    /* By queue ID; without content; a wrong ID finds nothing. */
    l = qload_qid(q, m->qid, 0);
    T_CHECK(l != 0 && l->content == 0 && l->seq == m->seq);
    qmsg_free(l);
    T_CHECK(qload_qid(q, "00000FFFFF", 0) == 0);
    T_CHECK(qload_qid(q, "not-an-id", 0) == 0);
    /* READ mode cannot write. */
    T_EQ_INT(insert_sync(q, m), -1);
    queue_close(q);
    qmsg_free(m);
}

static void test_update_and_delete(void)
{
    QUEUE  *q;
    QMSG   *m, *l;
    QBATCH *b;

    tmp_dir();
    q = open_or_die(QUEUE_OPEN_ADMIN);
    m = make_msg(q, 2);
    T_EQ_INT(insert_sync(q, m), 0);

    m->state = QSTATE_DEFERRED;
    m->flags |= QFLAG_WARNED;
    m->attempts = 3;
    m->next_eligible = 1700009999;
    m->rcpts[0].state = QRCPT_DONE;
    snprintf(m->rcpts[0].dsn, sizeof(m->rcpts[0].dsn), "2.0.0");
    m->rcpts[0].remote_mta = xstrdup("mx1.example");
    m->rcpts[0].diag = xstrdup("250 2.0.0 ok");
    m->rcpts[1].state = QRCPT_BOUNCED;
    m->rcpts[1].reason = xstrdup("host said: 550 no such user");
    snprintf(m->rcpts[1].dsn, sizeof(m->rcpts[1].dsn), "5.1.1");
    b = queue_batch(q);
    queue_batch_update(b, m);
    T_EQ_INT(queue_batch_commit(b, NULL, 0), 0);

    l = qload(q, m->seq, 0);
    T_CHECK(l != 0);
    if (l) {
	T_EQ_INT(l->state, QSTATE_DEFERRED);
	T_EQ_INT(l->flags & QFLAG_WARNED, QFLAG_WARNED);
	T_EQ_INT(l->attempts, 3);
	T_EQ_INT(l->next_eligible, 1700009999);
	T_EQ_INT(l->rcpts[0].state, QRCPT_DONE);
	T_EQ_STR(l->rcpts[0].dsn, "2.0.0");
	T_EQ_STR(l->rcpts[0].remote_mta, "mx1.example");
	T_EQ_STR(l->rcpts[0].diag, "250 2.0.0 ok");
	T_EQ_INT(l->rcpts[1].state, QRCPT_BOUNCED);
	T_EQ_STR(l->rcpts[1].reason, "host said: 550 no such user");
	T_EQ_STR(l->rcpts[1].dsn, "5.1.1");
    }
    qmsg_free(l);

    /* A batch is all-or-nothing: a good update plus an attempt on a
     * message that does not exist leaves the good update undone. */
    m->attempts = 4;
    b = queue_batch(q);
    queue_batch_update(b, m);
    {
	QATTEMPT a = {0};

	a.text = "x";
	queue_batch_attempt(b, m->seq + 1000, &a);
    }
    T_EQ_INT(queue_batch_commit(b, NULL, 0), -1);
    l = qload(q, m->seq, 0);
    T_CHECK(l && l->attempts == 3);
    qmsg_free(l);

    b = queue_batch(q);
    queue_batch_delete(b, m->seq);
    T_EQ_INT(queue_batch_commit(b, NULL, 0), 0);
    T_CHECK(qload(q, m->seq, 1) == 0);
    T_CHECK(qload_qid(q, m->qid, 0) == 0);
    queue_close(q);
    qmsg_free(m);
}

/* Admin edits: only the state, or flags OR-ed in; the rest of the row as the last writer left it. */
static void test_narrow_updates(void)
{
    QUEUE  *q;
    QMSG   *m, *l;
    QBATCH *b;

    tmp_dir();
    q = open_or_die(QUEUE_OPEN_ADMIN);
    m = make_msg(q, 2);
    T_EQ_INT(insert_sync(q, m), 0);

    /* A pass wrote its outcome after the admin read the row... */
    m->state = QSTATE_DEFERRED;
    m->attempts = 2;
    m->next_eligible = 1700005555;
    m->rcpts[1].reason = xstrdup("connect to x: Connection refused");
    b = queue_batch(q);
    queue_batch_update(b, m);
    T_EQ_INT(queue_batch_commit(b, NULL, 0), 0);

    /* ... and the admin's hold and expire change nothing else. */
    b = queue_batch(q);
    queue_batch_set_state(b, m->seq, QSTATE_HOLD);
    queue_batch_set_flags(b, m->seq, QFLAG_FORCE_EXPIRE);
    T_EQ_INT(queue_batch_commit(b, NULL, 0), 0);
    l = qload(q, m->seq, 0);
    T_CHECK(l != 0);
    if (l) {
	T_EQ_INT(l->state, QSTATE_HOLD);
	T_EQ_INT(l->flags, QFLAG_SMTPUTF8 | QFLAG_8BITMIME | QFLAG_FORCE_EXPIRE);
	T_EQ_INT(l->attempts, 2);
	T_EQ_INT(l->next_eligible, 1700005555);
	T_EQ_STR(l->rcpts[1].reason, "connect to x: Connection refused");
    }
    qmsg_free(l);

    /* A message that is gone fails the whole batch (nothing else applied). */
    b = queue_batch(q);
    queue_batch_set_state(b, m->seq, QSTATE_DEFERRED);
    queue_batch_set_state(b, m->seq + 1000, QSTATE_HOLD);
    T_EQ_INT(queue_batch_commit(b, NULL, 0), -1);
    b = queue_batch(q);
    queue_batch_set_flags(b, m->seq + 1000, QFLAG_FORCE_EXPIRE);
    T_EQ_INT(queue_batch_commit(b, NULL, 0), -1);
    l = qload(q, m->seq, 0);
    T_CHECK(l && l->state == QSTATE_HOLD);
    qmsg_free(l);
    queue_close(q);
    qmsg_free(m);
}

static void test_history_trim(void)
{
    QUEUE  *q;
    QMSG   *m;
    QATTEMPT *h;
    int     i, n;

    tmp_dir();
    q = open_or_die(QUEUE_OPEN_ADMIN);
    m = make_msg(q, 1);
    T_EQ_INT(insert_sync(q, m), 0);
    for (i = 0; i < 40; i++) {
	QBATCH *b = queue_batch(q);
	QATTEMPT a = {0};
	char    text[64];

	a.start_us = 1000000 * (int64_t) i;
	a.end_us = a.start_us + 500;
	a.host = i % 2 ? "mx.example" : 0;
	a.addr = "192.0.2.1";
	a.port = 25;
	snprintf(a.dsn, sizeof(a.dsn), "4.4.%d", i % 10);
	snprintf(text, sizeof(text), "attempt %d", i);
	a.text = text;
	queue_batch_attempt(b, m->seq, &a);
	T_EQ_INT(queue_batch_commit(b, NULL, 0), 0);
    }
    queue_close(q);
    q = open_or_die(QUEUE_OPEN_READ);
    n = queue_history(q, m->seq, &h);
    T_EQ_INT(n, QUEUE_HISTORY_MAX);
    if (n == QUEUE_HISTORY_MAX) {
	/* Oldest first: the 32 most recent are attempts 8..39. */
	T_EQ_INT(h[0].start_us, 8000000);
	T_EQ_STR(h[0].text, "attempt 8");
	T_CHECK(h[0].host == 0);
	T_EQ_STR(h[31].text, "attempt 39");
	T_EQ_STR(h[31].host, "mx.example");
	T_EQ_STR(h[31].addr, "192.0.2.1");
	T_EQ_INT(h[31].port, 25);
	T_EQ_INT(h[31].end_us, 39000500);
	T_EQ_STR(h[31].dsn, "4.4.9");
    }
    qattempt_free_array(h, n);
    queue_close(q);
    qmsg_free(m);
}

typedef struct WALKED {
    char    qids[16][16];
    int     states[16];
    int     nrcpt[16];
    int     n;
} WALKED;

static int walk_fn(void *ctx, const QMSG *m)
{
    WALKED *w = ctx;

    if (w->n < 16) {
	snprintf(w->qids[w->n], 16, "%s", m->qid);
	w->states[w->n] = m->state;
	w->nrcpt[w->n] = m->nrcpt;
	if (m->content != 0)
	    w->nrcpt[w->n] = -1;		/* walks must never carry content */
    }
    w->n++;
    return 0;
}

static void test_walk_order(void)
{
    static const int states[] = {
	QSTATE_CORRUPT, QSTATE_HOLD, QSTATE_DEFERRED, QSTATE_INCOMING,
	QSTATE_ACTIVE, QSTATE_DEFERRED, QSTATE_ACTIVE, QSTATE_INCOMING,
    };
    static const int expect[] = {4, 6, 3, 7, 2, 5, 1, 0};	/* indexes */
    QMSG   *m[ARRAY_LEN(states)];
    QUEUE  *q;
    WALKED  w;
    size_t  i;

    tmp_dir();
    q = open_or_die(QUEUE_OPEN_ADMIN);
    for (i = 0; i < ARRAY_LEN(states); i++) {
	m[i] = make_msg(q, 2);
	m[i]->state = states[i];
	T_EQ_INT(insert_sync(q, m[i]), 0);
    }
    memset(&w, 0, sizeof(w));
    T_EQ_INT(queue_walk(q, 1, walk_fn, &w), 0);
    T_EQ_INT(w.n, ARRAY_LEN(states));
    for (i = 0; i < ARRAY_LEN(expect) && i < (size_t) w.n; i++) {
	T_EQ_STR(w.qids[i], m[expect[i]]->qid);
	T_EQ_INT(w.nrcpt[i], 2);
    }
    memset(&w, 0, sizeof(w));
    T_EQ_INT(queue_walk(q, 0, walk_fn, &w), 0);
    T_EQ_INT(w.nrcpt[0], 0);
    queue_close(q);
    for (i = 0; i < ARRAY_LEN(states); i++)
	qmsg_free(m[i]);
}

/*
 * Paging: the same order as queue_walk, whatever the page size, through
 * the QUEUE's reader and through a QREADER; only_state and max_seq; and no
 * read transaction is left open between pages (a TRUNCATE checkpoint,
 * which waits for every reader, succeeds between two pages).
 */
static void test_pages(void)
{
    static const int states[] = {
	QSTATE_CORRUPT, QSTATE_HOLD, QSTATE_DEFERRED, QSTATE_INCOMING,
	QSTATE_ACTIVE, QSTATE_DEFERRED, QSTATE_ACTIVE, QSTATE_INCOMING,
    };
    static const int expect[] = {4, 6, 3, 7, 2, 5, 1, 0};	/* indexes, as test_walk_order */
    QMSG   *m[ARRAY_LEN(states)], *page[3];
    QUEUE  *q;
    QREADER *r;
    QCURSOR c;
    char    err[256];
    int     n, k, got, size, use_reader;
    size_t  i;

    tmp_dir();
    q = open_or_die(QUEUE_OPEN_ADMIN);
    for (i = 0; i < ARRAY_LEN(states); i++) {
	m[i] = make_msg(q, 2);
	m[i]->state = states[i];
	if (i == 4)
	    m[i]->filter = xstrdup("smtp:[127.0.0.1]:10025");
	T_EQ_INT(insert_sync(q, m[i]), 0);
    }
    r = queue_reader_open(q, err, sizeof(err));
    T_CHECK(r != 0);
    for (use_reader = 0; use_reader < 2; use_reader++) {
	for (size = 1; size <= 3; size++) {
	    queue_cursor_init(&c);
	    got = 0;
	    while ((n = use_reader ? queue_reader_page(r, &c, 1, page, size, 0, 0) : queue_page(q, &c, 1, page, size, 0, 0)) > 0) {
		T_CHECK(n <= size);
		for (k = 0; k < n; k++) {
		    if (got < (int) ARRAY_LEN(expect)) {
			T_EQ_STR(page[k]->qid, m[expect[got]]->qid);
			/* every column, the content filter (schema 2) too */
			T_EQ_STR(page[k]->filter ? page[k]->filter : "-",
				 m[expect[got]]->filter ? m[expect[got]]->filter : "-");
		    }
		    T_EQ_INT(page[k]->nrcpt, 2);
		    T_CHECK(page[k]->content == 0);
		    got++;
		    qmsg_free(page[k]);
		}
	    }
	    T_EQ_INT(n, 0);
	    T_EQ_INT(got, ARRAY_LEN(states));
	    T_CHECK(queue_cursor_done(&c));
	    /* The end stays the end. */
	    T_EQ_INT(queue_page(q, &c, 1, page, size, 0, 0), 0);
	}
    }

    /* Only the deferred ones, without recipients. */
    queue_cursor_init(&c);
    c.only_state = QSTATE_DEFERRED;
    T_EQ_INT(queue_page(q, &c, 0, page, 3, 0, 0), 2);
    T_EQ_STR(page[0]->qid, m[2]->qid);
    T_EQ_STR(page[1]->qid, m[5]->qid);
    T_EQ_INT(page[0]->nrcpt, 0);
    qmsg_free(page[0]);
    qmsg_free(page[1]);
    T_EQ_INT(queue_page(q, &c, 0, page, 3, 0, 0), 0);

    /* Every state but deferred. */
    queue_cursor_init(&c);
    c.skip_state = QSTATE_DEFERRED;
    got = 0;
    while ((n = queue_page(q, &c, 0, page, 3, 0, 0)) > 0)
	for (k = 0; k < n; k++, got++) {
	    T_CHECK(page[k]->state != QSTATE_DEFERRED);
	    qmsg_free(page[k]);
	}
    T_EQ_INT(got, (int) ARRAY_LEN(states) - 2);

    /* max_seq: what was there, not what came after. */
    T_EQ_INT((long long) queue_last_seq(q), (long long) m[ARRAY_LEN(states) - 1]->seq);
    queue_cursor_init(&c);
    c.max_seq = m[3]->seq;			/* messages 0..3: corrupt, hold, deferred, incoming */
    got = 0;
    while ((n = queue_page(q, &c, 0, page, 3, 0, 0)) > 0)
	for (k = 0; k < n; k++, got++) {
	    T_CHECK(page[k]->seq <= m[3]->seq);
	    qmsg_free(page[k]);
	}
    T_EQ_INT(got, 4);

    /* Between two pages nothing holds a snapshot: a TRUNCATE checkpoint gets through. */
    {
	sqlite3 *db;
	char   *path = db_path();
	int     nlog = -1, nckpt = -1;

	T_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 10);
	queue_cursor_init(&c);
	T_EQ_INT(queue_reader_page(r, &c, 1, page, 1, 0, 0), 1);
	qmsg_free(page[0]);
	T_EQ_INT(sqlite3_exec(db, "UPDATE msg SET flags = flags", 0, 0, 0), SQLITE_OK);
	T_EQ_INT(sqlite3_wal_checkpoint_v2(db, 0, SQLITE_CHECKPOINT_TRUNCATE, &nlog, &nckpt), SQLITE_OK);
	T_EQ_INT(nlog, 0);
	T_EQ_INT(queue_reader_page(r, &c, 1, page, 1, 0, 0), 1);
	qmsg_free(page[0]);
	sqlite3_close(db);
	free(path);
    }
    queue_reader_close(r);
    queue_close(q);
    for (i = 0; i < ARRAY_LEN(states); i++)
	qmsg_free(m[i]);
}

/* A page stops early once it has QUEUE_PAGE_RCPTS recipients, and the rest follows. */
static void test_page_rcpt_cap(void)
{
    QUEUE  *q;
    QMSG   *m, *page[8];
    QCURSOR c;
    int     i, n, got = 0, pages = 0;
    int     per = QUEUE_PAGE_RCPTS / 2 + 1;

    tmp_dir();
    q = open_or_die(QUEUE_OPEN_ADMIN);
    for (i = 0; i < 4; i++) {
	m = make_msg(q, per);
	T_EQ_INT(insert_sync(q, m), 0);
	qmsg_free(m);
    }
    queue_cursor_init(&c);
    while ((n = queue_page(q, &c, 1, page, 8, 0, 0)) > 0) {
	T_EQ_INT(n, 2);				/* 2 x per >= QUEUE_PAGE_RCPTS */
	for (i = 0; i < n; i++) {
	    T_EQ_INT(page[i]->nrcpt, per);
	    qmsg_free(page[i]);
	}
	got += n;
	pages++;
    }
    T_EQ_INT(got, 4);
    T_EQ_INT(pages, 2);
    queue_close(q);
}

static int qid_ok(const char *qid)
{
    size_t  len = strlen(qid), i;

    if (len < 10 || len > 12)
	return 0;
    for (i = 0; i < len; i++)
	if (!((qid[i] >= '0' && qid[i] <= '9') || (qid[i] >= 'A' && qid[i] <= 'F')))
	    return 0;
    return 1;
}

static void test_ids(void)
{
    QUEUE  *q;
    QMSG   *m[3];
    QMSG    x;
    uint64_t seen[300];
    int     n = 0, i, j, dup = 0;

    tmp_dir();
    q = open_or_die(QUEUE_OPEN_ADMIN);
    for (i = 0; i < 100; i++) {
	memset(&x, 0, sizeof(x));
	queue_assign_id(q, &x);
	T_CHECK(qid_ok(x.qid));
	seen[n++] = x.seq;
    }
    for (i = 0; i < 3; i++) {
	m[i] = make_msg(q, 1);
	T_EQ_INT(insert_sync(q, m[i]), 0);
	seen[n++] = m[i]->seq;
    }
    queue_close(q);

    /* After a restart, and after deleting the newest, seqs keep growing. */
    q = open_or_die(QUEUE_OPEN_ADMIN);
    {
	QBATCH *b = queue_batch(q);

	queue_batch_delete(b, m[2]->seq);
	T_EQ_INT(queue_batch_commit(b, NULL, 0), 0);
    }
    queue_close(q);
    q = open_or_die(QUEUE_OPEN_ADMIN);
    for (i = 0; i < 100; i++) {
	memset(&x, 0, sizeof(x));
	queue_assign_id(q, &x);
	T_CHECK(qid_ok(x.qid));
	T_CHECK(x.seq > m[2]->seq);
	seen[n++] = x.seq;
    }
    for (i = 0; i < n; i++)
	for (j = i + 1; j < n; j++)
	    dup += seen[i] == seen[j];
    T_EQ_INT(dup, 0);
    queue_close(q);
    for (i = 0; i < 3; i++)
	qmsg_free(m[i]);
}

static void test_lock(void)
{
    QUEUE  *q, *q2, *r;
    char    err[256], want[256];
    struct stat sb;

    tmp_dir();
    q = open_or_die(QUEUE_OPEN_DAEMON);
    T_CHECK(stat(tdir, &sb) == 0 && (sb.st_mode & 0777) == 0700);
    err[0] = 0;
    q2 = queue_open(tdir, QUEUE_OPEN_DAEMON, err, sizeof(err));
    T_CHECK(q2 == 0);
    snprintf(want, sizeof(want), "queue directory %s is locked by a running relayqd (pid %ld)",
	     tdir, (long) getpid());
    T_EQ_STR(err, want);
    q2 = queue_open(tdir, QUEUE_OPEN_ADMIN, err, sizeof(err));
    T_CHECK(q2 == 0);
    T_EQ_STR(err, want);

    r = queue_open(tdir, QUEUE_OPEN_READ, err, sizeof(err));
    T_CHECK(r != 0);
    if (r) {
	QMSG   *m = make_msg(q, 1);
	QMSG   *l;

	/* The daemon writes while a reader is open; the reader sees it. */
	T_EQ_INT(insert_sync(q, m), 0);
	l = qload(r, m->seq, 1);
	T_CHECK(l != 0 && l->size == m->size);
	qmsg_free(l);
	qmsg_free(m);
	queue_close(r);
    }
    queue_close(q);
    q2 = queue_open(tdir, QUEUE_OPEN_ADMIN, err, sizeof(err));
    T_CHECK(q2 != 0);
    queue_close(q2);
}

/* Group commit: 20 threads submit concurrently; this thread dispatches. */
#define GC_THREADS	20
#define GC_PER_THREAD	50

typedef struct GC {
    QUEUE  *q;
    atomic_int done;
    atomic_int good;
    uint64_t seqs[GC_THREADS * GC_PER_THREAD];
} GC;

static GC gc;

static void gc_cb(void *ctx, int ok, const char *why)
{
    atomic_fetch_add(&gc.done, 1);
    if (ok)
	atomic_fetch_add(&gc.good, 1);
}

static void *gc_thread(void *arg)
{
    int     t = (int) (intptr_t) arg, i;

    for (i = 0; i < GC_PER_THREAD; i++) {
	QMSG   *m = make_msg(gc.q, 1);
	QBATCH *b = queue_batch(gc.q);

	queue_batch_insert(b, m);
	gc.seqs[t * GC_PER_THREAD + i] = m->seq;
	qmsg_free(m);			/* the batch has its own copy */
	queue_batch_submit(b, gc_cb, 0);
    }
    return 0;
}

static void test_group_commit(void)
{
    pthread_t th[GC_THREADS];
    QUEUE_STATS st;
    int     i, missing = 0;
    int64_t deadline;

    tmp_dir();
    memset(&gc, 0, sizeof(gc));
    gc.q = open_or_die(QUEUE_OPEN_DAEMON);
    for (i = 0; i < GC_THREADS; i++)
	pthread_create(&th[i], 0, gc_thread, (void *) (intptr_t) i);
    deadline = time_mono_us() + 60 * 1000000LL;
    while (atomic_load(&gc.done) < GC_THREADS * GC_PER_THREAD && time_mono_us() < deadline) {
	struct pollfd pfd = {queue_notify_fd(gc.q), POLLIN, 0};

	if (poll(&pfd, 1, 100) > 0)
	    queue_dispatch(gc.q);
    }
    for (i = 0; i < GC_THREADS; i++)
	pthread_join(th[i], 0);
    T_EQ_INT(atomic_load(&gc.done), GC_THREADS * GC_PER_THREAD);
    T_EQ_INT(atomic_load(&gc.good), GC_THREADS * GC_PER_THREAD);
    queue_stats(gc.q, &st);
    T_EQ_INT(st.batches, GC_THREADS * GC_PER_THREAD);
    T_CHECK(st.transactions > 0 && st.transactions < st.batches);
    queue_close(gc.q);

    gc.q = open_or_die(QUEUE_OPEN_READ);
    for (i = 0; i < GC_THREADS * GC_PER_THREAD; i++) {
	QMSG   *l = qload(gc.q, gc.seqs[i], 1);

	missing += (l == 0);
	qmsg_free(l);
    }
    T_EQ_INT(missing, 0);
    queue_close(gc.q);
}

/* fail-batch: the failing batch reports ok=0 and leaves no trace. */
static int fb_ok[3];
static char fb_why[3][200];

static void fb_cb(void *ctx, int ok, const char *why)
{
    fb_ok[(intptr_t) ctx] = ok ? 1 : -1;
    snprintf(fb_why[(intptr_t) ctx], sizeof(fb_why[0]), "%s", why);
}

static void test_fail_batch(void)
{
    QUEUE  *q;
    QMSG   *m[3];
    int     i;
    int64_t deadline;

    tmp_dir();
    q = open_or_die(QUEUE_OPEN_DAEMON);
    memset(fb_ok, 0, sizeof(fb_ok));
    for (i = 0; i < 3; i++)
	m[i] = make_msg(q, 1);
    queue_test_fault(q, "fail-batch");
    for (i = 0; i < 3; i++) {
	QBATCH *b = queue_batch(q);

	queue_batch_insert(b, m[i]);
	queue_batch_submit(b, fb_cb, (void *) (intptr_t) i);
    }
    deadline = time_mono_us() + 10 * 1000000LL;
    while ((!fb_ok[0] || !fb_ok[1] || !fb_ok[2]) && time_mono_us() < deadline) {
	struct pollfd pfd = {queue_notify_fd(q), POLLIN, 0};

	if (poll(&pfd, 1, 100) > 0)
	    queue_dispatch(q);
    }
    T_EQ_INT(fb_ok[0], -1);
    T_EQ_INT(fb_ok[1], 1);
    T_EQ_INT(fb_ok[2], 1);
    /* The failed batch's own reason reaches its callback; the others get "". */
    T_CHECK(strncmp(fb_why[0], "batch failed: ", 14) == 0);
    T_EQ_STR(fb_why[1], "");
    T_EQ_STR(fb_why[2], "");
    T_CHECK(qload(q, m[0]->seq, 0) == 0);
    for (i = 1; i < 3; i++) {
	QMSG   *l = qload(q, m[i]->seq, 1);

	T_CHECK(l != 0);
	qmsg_free(l);
    }
    queue_close(q);
    for (i = 0; i < 3; i++)
	qmsg_free(m[i]);
}

/*
 * Crash points: a child opens the queue as the daemon, submits one batch
 * with the fault armed, and dies inside the writer thread.  The parent
 * reopens and looks.
 */
static int crash_child(const char *step, uint64_t *seq)
{
    int     pfd[2], status;
    pid_t   pid;
    ssize_t n;

    if (pipe(pfd) < 0)
	return -1;
    fflush(stdout);
    if ((pid = fork()) == 0) {
	QUEUE  *q;
	QMSG   *m;
	QBATCH *b;

	close(pfd[0]);
	q = open_or_die(QUEUE_OPEN_DAEMON);
	m = make_msg(q, 1);
	if (write(pfd[1], &m->seq, sizeof(m->seq)) != sizeof(m->seq))
	    _exit(3);
	queue_test_fault(q, step);
	b = queue_batch(q);
	queue_batch_insert(b, m);
	queue_batch_submit(b, 0, 0);
	sleep(10);				/* the writer thread _exit()s first */
	_exit(4);
    }
    close(pfd[1]);
    n = read(pfd[0], seq, sizeof(*seq));
    close(pfd[0]);
    if (waitpid(pid, &status, 0) != pid || n != sizeof(*seq))
	return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/*
 * A full disk at every write of every kind of commit: the store is the old
 * state exactly (nothing half-written), the same batch committed again once
 * there is room gives the new state exactly once (a notice inserted once),
 * and the store passes quick_check when reopened.
 */
enum { FS_INSERT, FS_DELIVER, FS_DEFER, FS_BOUNCE, FS_EXPIRE, FS_COUNT };
static const char *const fs_name[FS_COUNT] = {"insert", "deliver", "defer", "bounce", "expire"};

static int fs_count_cb(void *ctx, const QMSG *m)
{
    (*(int *) ctx)++;
    return 0;
}

static int fs_count(QUEUE *q)
{
    int     n = 0;

    queue_walk(q, 0, fs_count_cb, &n);
    return n;
}

static QBATCH *fs_batch(QUEUE *q, int kind, QMSG *m, QMSG *notice)
{
    QBATCH *b = queue_batch(q);
    QATTEMPT a = {1700000002000000LL, 1700000003000000LL, "mx.dest.example", "192.0.2.1",
	25, "4.4.1", "connect: Connection refused"};

    switch (kind) {
    case FS_INSERT:
	queue_batch_insert(b, m);
	break;
    case FS_DELIVER:
	queue_batch_delete(b, m->seq);
	break;
    case FS_DEFER:
	m->state = QSTATE_DEFERRED;
	m->attempts = 1;
	m->next_eligible = 1700000999;
	free(m->rcpts[0].reason);
	m->rcpts[0].reason = xstrdup("connect: Connection refused");
	snprintf(m->rcpts[0].dsn, sizeof(m->rcpts[0].dsn), "4.4.1");
	queue_batch_update(b, m);
	queue_batch_attempt(b, m->seq, &a);
	break;
    case FS_BOUNCE:
	queue_batch_insert(b, notice);
	m->rcpts[0].state = QRCPT_BOUNCED;
	m->state = QSTATE_DEFERRED;
	queue_batch_update(b, m);
	break;
    case FS_EXPIRE:
	queue_batch_insert(b, notice);
	queue_batch_delete(b, m->seq);
	break;
    }
    return b;
}

/* Returns 1 if the store holds the new state of `kind`, 0 if the old one, -1 if neither. */
static int fs_state(QUEUE *q, int kind, uint64_t seq, uint64_t nseq)
{
    QMSG   *l = qload(q, seq, 1);
    QMSG   *n = nseq ? qload(q, nseq, 1) : 0;
    QATTEMPT *h = 0;
    int     nh = l ? queue_history(q, seq, &h) : 0, total = fs_count(q), r = -1;

    switch (kind) {
    case FS_INSERT:
	r = l && total == 1 ? 1 : !l && total == 0 ? 0 : -1;
	break;
    case FS_DELIVER:
	r = !l && total == 0 ? 1 : l && total == 1 && l->state == QSTATE_INCOMING ? 0 : -1;
	break;
    case FS_DEFER:
	if (l && total == 1 && l->state == QSTATE_DEFERRED && l->attempts == 1 && nh == 1
	    && l->rcpts[0].reason && strcmp(l->rcpts[0].dsn, "4.4.1") == 0)
	    r = 1;
	else if (l && total == 1 && l->state == QSTATE_INCOMING && l->attempts == 0 && nh == 0
		 && l->rcpts[0].reason == 0)
	    r = 0;
	break;
    case FS_BOUNCE:
	if (l && n && total == 2 && l->rcpts[0].state == QRCPT_BOUNCED && n->size > 0)
	    r = 1;
	else if (l && !n && total == 1 && l->rcpts[0].state == QRCPT_PENDING)
	    r = 0;
	break;
    case FS_EXPIRE:
	r = !l && n && total == 1 ? 1 : l && !n && total == 1 ? 0 : -1;
	break;
    }
    qattempt_free_array(h, nh);
    qmsg_free(l);
    qmsg_free(n);
    return r;
}

static void test_full_disk_every_write(void)
{
    int     kind, k, failures[FS_COUNT] = {0};

    for (kind = 0; kind < FS_COUNT; kind++) {
	for (k = 0; k < 2000; k++) {
	    QUEUE  *q;
	    QMSG   *m, *notice = 0;
	    uint64_t nseq = 0;
	    int     rc, st;

	    tmp_dir();
	    queue_test_full(-1);
	    q = open_or_die(QUEUE_OPEN_ADMIN);
	    m = make_msg(q, 2);
	    if (kind != FS_INSERT)
		T_EQ_INT(insert_sync(q, m), 0);
	    if (kind == FS_BOUNCE || kind == FS_EXPIRE) {
		notice = make_msg(q, 1);
		notice->flags = QFLAG_BOUNCE;
		free(notice->sender);
		notice->sender = xstrdup("");
		nseq = notice->seq;
	    }
	    queue_test_full(k);			/* the disk fills after k more writes */
	    rc = queue_batch_commit(fs_batch(q, kind, m, notice), NULL, 0);
	    queue_test_full(-1);
	    st = fs_state(q, kind, m->seq, nseq);
	    if (rc == 0) {
		if (st != 1)
		    T_FAILF("%s: committed after %d writes but the store is not the new state", fs_name[kind], k);
	    } else {
		failures[kind]++;
		if (st != 0)
		    T_FAILF("%s: full after %d writes: the store is not the old state (%d)", fs_name[kind], k, st);
		/* Room again: the same batch commits, once (the message as stored, for an update). */
		uint64_t seq = m->seq;

		qmsg_free(m);
		m = qload(q, seq, 1);
		if (m == 0)			/* FS_INSERT: the client sends it again */
		    m = make_msg(q, 2);
		char    why[256];

		if (queue_batch_commit(fs_batch(q, kind, m, notice), why, sizeof(why)) != 0)
		    T_FAILF("%s: full after %d writes, then room again: the retry failed: %s",
			    fs_name[kind], k, why);
		if (kind != FS_INSERT && fs_state(q, kind, m->seq, nseq) != 1)
		    T_FAILF("%s: full after %d writes, then retried: not the new state", fs_name[kind], k);
	    }
	    queue_close(q);
	    q = open_or_die(QUEUE_OPEN_ADMIN);	/* quick_check at open */
	    if (kind != FS_INSERT && fs_state(q, kind, m->seq, nseq) != 1)
		T_FAILF("%s: after reopening (k=%d): not the new state", fs_name[kind], k);
	    queue_close(q);
	    qmsg_free(m);
	    qmsg_free(notice);
	    if (rc == 0)
		break;
	}
	T_CHECK(failures[kind] > 0);
    }
    printf("\n    full disk at write k: %d/%d/%d/%d/%d failing points (insert/deliver/defer/bounce/expire), every one rolled back whole  ",
	   failures[0], failures[1], failures[2], failures[3], failures[4]);
}

/*
 * The reserve: a group that meets a full disk fails its new mail, gives the
 * reserve back and records the bookkeeping; the reserve comes back when
 * there is room.
 */
static int rs_ok[2];

static void rs_cb(void *ctx, int ok, const char *why)
{
    rs_ok[(intptr_t) ctx] = ok ? 1 : -1;
}

static void test_reserve(void)
{
    QUEUE  *q;
    QMSG   *old, *fresh;
    QUEUE_SPACE sp;
    QBATCH *b;
    struct stat sb;
    char   *path;
    int64_t deadline;

    tmp_dir();
    q = open_or_die(QUEUE_OPEN_DAEMON);
    queue_set_reserve(q, 1 << 20, 0);
    path = xasprintf("%s/reserve", tdir);
    T_CHECK(stat(path, &sb) == 0 && sb.st_size == 1 << 20 && sb.st_blocks * 512 >= 1 << 20);
    T_EQ_INT(queue_space(q, &sp), 0);
    T_EQ_INT(sp.reserve_held, 1);
    old = make_msg(q, 1);
    fresh = make_msg(q, 1);
    T_EQ_INT(insert_sync(q, old), 0);

    queue_test_fault(q, "full-commit");
    rs_ok[0] = rs_ok[1] = 0;
    b = queue_batch(q);
    queue_batch_insert(b, fresh);		/* new mail */
    queue_batch_submit(b, rs_cb, (void *) (intptr_t) 0);
    b = queue_batch(q);
    queue_batch_delete(b, old->seq);		/* a delivery's record */
    queue_batch_submit(b, rs_cb, (void *) (intptr_t) 1);
    deadline = time_mono_us() + 10 * 1000000LL;
    while ((!rs_ok[0] || !rs_ok[1]) && time_mono_us() < deadline) {
	struct pollfd pfd = {queue_notify_fd(q), POLLIN, 0};

	if (poll(&pfd, 1, 100) > 0)
	    queue_dispatch(q);
    }
    T_EQ_INT(rs_ok[0], -1);			/* smtpd says 451 */
    T_EQ_INT(rs_ok[1], 1);			/* recorded: not delivered again */
    T_CHECK(qload(q, old->seq, 0) == 0);
    T_CHECK(qload(q, fresh->seq, 0) == 0);
    T_EQ_INT(queue_space(q, &sp), 0);
    T_EQ_INT(sp.full_errors, 1);
    T_EQ_INT(sp.reserve_releases, 1);
    T_EQ_INT(sp.reserve_held, 0);
    T_CHECK(stat(path, &sb) == 0 && sb.st_size == 0);
    /* While it is given back, new mail is refused (reason 2); then it is made again. */
    T_EQ_INT(queue_space_refuse(&sp, 0, 0), QUEUE_SPACE_RESERVE);
    deadline = time_mono_us() + 5 * 1000000LL;
    while (queue_space(q, &sp) == 0 && !sp.reserve_held && time_mono_us() < deadline)
	usleep(100000);
    T_EQ_INT(sp.reserve_held, 1);
    T_CHECK(stat(path, &sb) == 0 && sb.st_size == 1 << 20);
    queue_close(q);
    qmsg_free(old);
    qmsg_free(fresh);
    free(path);
}

/* Postfix's rule, in blocks: refuse below queue_minfree, or below 1.5 x message_size_limit. */
static void test_space_rule(void)
{
    QUEUE_SPACE sp = {0};

    sp.block_size = 4096;
    sp.reserve_held = 1;
    sp.free_blocks = 1000;			/* 4,096,000 bytes */
    sp.free_bytes = 4096000;
    T_EQ_INT(queue_space_refuse(&sp, 0, 10240000), QUEUE_SPACE_LOW);
    T_EQ_INT(queue_space_refuse(&sp, 0, 2000000), QUEUE_SPACE_OK);	/* 3 MB needed */
    T_EQ_INT(queue_space_refuse(&sp, 0, 2800000), QUEUE_SPACE_LOW);	/* 4.2 MB needed */
    T_EQ_INT(queue_space_refuse(&sp, 4096000, 0), QUEUE_SPACE_LOW);	/* minfree >= free */
    T_EQ_INT(queue_space_refuse(&sp, 4000000, 0), QUEUE_SPACE_OK);
    T_EQ_INT(queue_space_refuse(&sp, 0, 0), QUEUE_SPACE_OK);		/* no size limit */
    sp.wal_debt = 1500000;			/* the next checkpoint's pages count as used */
    T_EQ_INT(queue_space_refuse(&sp, 0, 2000000), QUEUE_SPACE_LOW);
    T_EQ_INT(queue_space_refuse(&sp, 0, 1000000), QUEUE_SPACE_OK);
    sp.wal_debt = 0;
    sp.free_blocks = 0;
    T_EQ_INT(queue_space_refuse(&sp, 0, 0), QUEUE_SPACE_LOW);
    sp.free_blocks = 1000;
    sp.reserve_held = 0;
    T_EQ_INT(queue_space_refuse(&sp, 0, 0), QUEUE_SPACE_RESERVE);
}

static void test_crash_points(void)
{
    QUEUE  *q;
    QMSG   *l;
    uint64_t seq_before = 0, seq_after = 0, seq_new;
    QMSG    x;
    char    err[256];

    tmp_dir();
    T_EQ_INT(crash_child("before-commit", &seq_before), 9);
    q = queue_open(tdir, QUEUE_OPEN_DAEMON, err, sizeof(err));
    T_CHECK(q != 0);				/* the dead child's lock is gone */
    if (q == 0)
	return;
    T_CHECK(qload(q, seq_before, 0) == 0);
    queue_close(q);

    T_EQ_INT(crash_child("after-commit", &seq_after), 9);
    q = open_or_die(QUEUE_OPEN_DAEMON);
    l = qload(q, seq_after, 1);
    T_CHECK(l != 0 && l->size == sizeof(content_bytes) - 1);
    qmsg_free(l);
    memset(&x, 0, sizeof(x));
    queue_assign_id(q, &x);
    seq_new = x.seq;
    T_CHECK(seq_new > seq_after);
    queue_close(q);
}

/* Corrupt records: recovery moves them aside, warns once, keeps the rest. */
typedef struct WARNED {
    char    text[8][160];
    int     n;
} WARNED;

static void warn_fn(void *ctx, const char *qid, const char *why)
{
    WARNED *w = ctx;

    if (w->n < 8)
	snprintf(w->text[w->n], sizeof(w->text[0]), "%s: %s", qid, why);
    w->n++;
}

static int sql_exec(const char *sql)
{
    sqlite3 *db;
    char   *path = db_path();
    int     rc;

    rc = sqlite3_open(path, &db);
    if (rc == SQLITE_OK)
	rc = sqlite3_exec(db, sql, 0, 0, 0);
    sqlite3_close(db);
    free(path);
    return rc == SQLITE_OK ? 0 : -1;
}

static void test_recover(void)
{
    QUEUE  *q;
    QMSG   *m[4], *l;
    WARNED  w;
    char    sql[256], want[160];
    int     i;

    tmp_dir();
    q = open_or_die(QUEUE_OPEN_ADMIN);
    for (i = 0; i < 4; i++) {
	m[i] = make_msg(q, 2);
	m[i]->state = i == 3 ? QSTATE_ACTIVE : QSTATE_DEFERRED;
	T_EQ_INT(insert_sync(q, m[i]), 0);
    }
    queue_close(q);
    /* Damage #1's content checksum and #2's recipients behind its back. */
    snprintf(sql, sizeof(sql), "UPDATE content SET checksum = checksum + 1 WHERE seq = %llu;"
	     "DELETE FROM rcpt WHERE seq = %llu;",
	     (unsigned long long) m[1]->seq, (unsigned long long) m[2]->seq);
    T_EQ_INT(sql_exec(sql), 0);

    q = open_or_die(QUEUE_OPEN_DAEMON);
    memset(&w, 0, sizeof(w));
    T_EQ_INT(queue_recover(q, warn_fn, &w, NULL, 0), 2);
    T_EQ_INT(w.n, 2);
    snprintf(want, sizeof(want), "%s: content checksum mismatch", m[1]->qid);
    T_EQ_STR(w.text[0], want);
    snprintf(want, sizeof(want), "%s: no recipients", m[2]->qid);
    T_EQ_STR(w.text[1], want);
    /* The damaged content is not handed out. */
    T_CHECK(qload(q, m[1]->seq, 1) == 0);
    for (i = 0; i < 4; i++) {
	static const int want_state[] = {
	    QSTATE_DEFERRED, QSTATE_CORRUPT, QSTATE_CORRUPT, QSTATE_INCOMING,
	};

	l = qload(q, m[i]->seq, 0);
	T_CHECK(l != 0);
	if (l)
	    T_EQ_INT(l->state, want_state[i]);
	qmsg_free(l);
    }
    l = qload(q, m[0]->seq, 1);
    T_CHECK(l && memcmp(l->content, content_bytes, l->size) == 0);
    qmsg_free(l);
    queue_close(q);

    /* A second recovery warns about nothing new. */
    q = open_or_die(QUEUE_OPEN_DAEMON);
    memset(&w, 0, sizeof(w));
    T_EQ_INT(queue_recover(q, warn_fn, &w, NULL, 0), 0);
    T_EQ_INT(w.n, 0);
    queue_close(q);
    for (i = 0; i < 4; i++)
	qmsg_free(m[i]);
}

/*
 * What each kind of failed read says: QUEUE_GONE for a message that is
 * not there, QUEUE_CORRUPT only for the message's own content (wrong
 * checksum, no content row), QUEUE_TEMP when the store cannot be read,
 * each with its text in the caller's buffer and nothing kept in the QUEUE.
 */
static void test_load_status(void)
{
    QUEUE  *q;
    QMSG   *m[3], *l;
    QBATCH *b;
    char    sql[256], why[256], want[160];
    int     i;

    tmp_dir();
    q = open_or_die(QUEUE_OPEN_ADMIN);
    for (i = 0; i < 3; i++) {
	m[i] = make_msg(q, 1);
	T_EQ_INT(insert_sync(q, m[i]), 0);
    }

    /* OK: the message, and an empty reason. */
    snprintf(why, sizeof(why), "stale");
    T_EQ_INT(queue_load(q, m[0]->seq, 1, &l, why, sizeof(why)), QUEUE_OK);
    T_CHECK(l != 0 && l->size == m[0]->size);
    T_EQ_STR(why, "");
    qmsg_free(l);
    T_EQ_INT(queue_load_qid(q, m[0]->qid, 0, &l, NULL, 0), QUEUE_OK);
    T_CHECK(l != 0 && strcmp(l->qid, m[0]->qid) == 0);
    qmsg_free(l);

    /* GONE: never queued, not a queue ID, deleted. */
    T_EQ_INT(queue_load(q, m[2]->seq + 1000, 0, &l, why, sizeof(why)), QUEUE_GONE);
    T_CHECK(l == 0);
    T_EQ_STR(why, "no such message");
    T_EQ_INT(queue_load_qid(q, "not-an-id", 0, &l, why, sizeof(why)), QUEUE_GONE);
    T_CHECK(l == 0);
    T_EQ_INT(queue_load_qid(q, "00000FFFFF", 1, &l, NULL, 0), QUEUE_GONE);
    b = queue_batch(q);
    queue_batch_delete(b, m[2]->seq);
    T_EQ_INT(queue_batch_commit(b, why, sizeof(why)), 0);
    T_EQ_STR(why, "");
    T_EQ_INT(queue_load(q, m[2]->seq, 1, &l, why, sizeof(why)), QUEUE_GONE);
    T_EQ_INT(queue_load_qid(q, m[2]->qid, 1, &l, why, sizeof(why)), QUEUE_GONE);
    T_EQ_STR(why, "no such message");

    /* A write to a message that is gone fails with the store's reason. */
    b = queue_batch(q);
    queue_batch_set_state(b, m[2]->seq, QSTATE_HOLD);
    T_EQ_INT(queue_batch_commit(b, why, sizeof(why)), -1);
    T_CHECK(strncmp(why, "batch failed: ", 14) == 0);
    queue_close(q);

    /* CORRUPT: a content that fails its checksum, a content row that is missing. */
    snprintf(sql, sizeof(sql), "UPDATE content SET checksum = checksum + 1 WHERE seq = %llu;"
	     "DELETE FROM content WHERE seq = %llu;",
	     (unsigned long long) m[0]->seq, (unsigned long long) m[1]->seq);
    T_EQ_INT(sql_exec(sql), 0);
    q = open_or_die(QUEUE_OPEN_READ);
    T_EQ_INT(queue_load(q, m[0]->seq, 1, &l, why, sizeof(why)), QUEUE_CORRUPT);
    T_CHECK(l == 0);
    snprintf(want, sizeof(want), "%s: content length or checksum mismatch", m[0]->qid);
    T_EQ_STR(why, want);
    T_EQ_INT(queue_load_qid(q, m[1]->qid, 1, &l, why, sizeof(why)), QUEUE_CORRUPT);
    snprintf(want, sizeof(want), "%s: no content", m[1]->qid);
    T_EQ_STR(why, want);
    /* Without its content the envelope still loads (mailq, the scheduler's verdict). */
    T_EQ_INT(queue_load(q, m[0]->seq, 0, &l, why, sizeof(why)), QUEUE_OK);
    T_CHECK(l != 0 && l->nrcpt == 1);
    qmsg_free(l);
    queue_close(q);

    /* TEMP: the store itself cannot be read; no verdict on the message. */
    T_EQ_INT(sql_exec("ALTER TABLE content RENAME TO content_elsewhere"), 0);
    q = open_or_die(QUEUE_OPEN_READ);
    T_EQ_INT(queue_load(q, m[0]->seq, 1, &l, why, sizeof(why)), QUEUE_TEMP);
    T_CHECK(l == 0);
    T_CHECK(strstr(why, "no such table") != 0);
    T_EQ_INT(queue_load(q, m[0]->seq, 0, &l, NULL, 0), QUEUE_OK);
    qmsg_free(l);
    /* A queue opened read-only cannot write, and says so. */
    b = queue_batch(q);
    queue_batch_delete(b, m[0]->seq);
    T_EQ_INT(queue_batch_commit(b, why, sizeof(why)), -1);
    T_EQ_STR(why, "the queue is open read-only");
    T_EQ_INT(queue_recover(q, NULL, NULL, why, sizeof(why)), -1);
    T_EQ_STR(why, "the queue is open read-only");
    queue_close(q);

    T_EQ_STR(queue_status_name(QUEUE_OK), "ok");
    T_EQ_STR(queue_status_name(QUEUE_GONE), "gone");
    T_EQ_STR(queue_status_name(QUEUE_CORRUPT), "corrupt");
    T_EQ_STR(queue_status_name(QUEUE_TEMP), "temporary");
    T_EQ_STR(queue_status_name(99), "unknown");
    for (i = 0; i < 3; i++)
	qmsg_free(m[i]);
}

/* Read a whole file (for "untouched" comparisons). */
static char *slurp(const char *path, size_t *len)
{
    FILE   *fp = fopen(path, "rb");
    char   *data;
    long    n;

    if (fp == 0)
	return 0;
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    data = xmalloc((size_t) n + 1);
    *len = fread(data, 1, (size_t) n, fp);
    fclose(fp);
    return data;
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE   *fp = fopen(path, "wb");

    if (fp == 0 || fwrite(data, 1, len, fp) != len) {
	perror(path);
	exit(2);
    }
    fclose(fp);
}

/* Open must fail with a message containing what; the file stays as it was. */
static void expect_refused(int mode, const char *what)
{
    char   *path = db_path();
    char   *before, *after;
    size_t  blen = 0, alen = 0;
    char    err[256];
    QUEUE  *q;

    before = slurp(path, &blen);
    err[0] = 0;
    q = queue_open(tdir, mode, err, sizeof(err));
    T_CHECK(q == 0);
    if (q)
	queue_close(q);
    T_CHECK(strstr(err, what) != 0);
    if (strstr(err, what) == 0)
	printf("\n    got: %s\n", err);
    T_CHECK(strstr(err, path) != 0);
    after = slurp(path, &alen);
    T_CHECK(before && after && alen == blen && memcmp(before, after, blen) == 0);
    free(before);
    free(after);
    free(path);
}

static void test_refuse_garbage(void)
{
    char   *path, *data;
    size_t  i, len;
    QUEUE  *q;

    tmp_dir();
    mkdir(tdir, 0700);
    path = db_path();
    data = xmalloc(8192);
    for (i = 0; i < 8192; i++)
	data[i] = (char) (i * 7 + 3);
    write_file(path, data, 8192);
    free(data);
    expect_refused(QUEUE_OPEN_DAEMON, "not touching it");
    expect_refused(QUEUE_OPEN_READ, "not touching it");

    /* A real queue, cut in the middle. */
    free(path);
    tmp_dir();
    path = db_path();
    q = open_or_die(QUEUE_OPEN_ADMIN);
    for (i = 0; i < 30; i++) {
	QMSG   *m = make_msg(q, 1);

	free(m->content);
	m->size = 5000;
	m->content = xcalloc(1, m->size);
	T_EQ_INT(insert_sync(q, m), 0);
	qmsg_free(m);
    }
    queue_close(q);				/* checkpoints: all in queue.db */
    data = slurp(path, &len);
    T_CHECK(data != 0 && len > 60000);
    if (data) {
	write_file(path, data, len / 2);
	free(data);
	expect_refused(QUEUE_OPEN_DAEMON, "corrupt");
    }
    free(path);
}

static void test_refuse_newer(void)
{
    QUEUE  *q;

    tmp_dir();
    q = open_or_die(QUEUE_OPEN_ADMIN);
    queue_close(q);
    T_EQ_INT(sql_exec("PRAGMA user_version = 999"), 0);
    expect_refused(QUEUE_OPEN_DAEMON, "schema version 999, newer");
    expect_refused(QUEUE_OPEN_READ, "schema version 999, newer");
}

int     main(void)
{
    T_RUN(test_roundtrip);
    T_RUN(test_update_and_delete);
    T_RUN(test_narrow_updates);
    T_RUN(test_history_trim);
    T_RUN(test_walk_order);
    T_RUN(test_pages);
    T_RUN(test_page_rcpt_cap);
    T_RUN(test_ids);
    T_RUN(test_lock);
    T_RUN(test_group_commit);
    T_RUN(test_fail_batch);
    T_RUN(test_crash_points);
    T_RUN(test_full_disk_every_write);
    T_RUN(test_reserve);
    T_RUN(test_space_rule);
    T_RUN(test_recover);
    T_RUN(test_load_status);
    T_RUN(test_refuse_garbage);
    T_RUN(test_refuse_newer);
    if (tdir[0])
	tmp_clean();
    return t_done();
}
