/*
 * test_control - the queue views against Postfix's captured output, the
 * offline postsuper edits on a real queue, the maildrop file format, and a
 * request/reply round trip over the control sockets in a libevent loop.
 *
 * The expected mailq texts are Postfix 3.7 captures
 * (spec/postfix-traces/T1-mailq.txt, T2-mailq.txt, T3-mailq-hold.txt),
 * copied here byte for byte; times are UTC, as on the capture host.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include <event2/event.h>

#include "t.h"
#include "control/control.h"
#include "control/qview.h"
#include "log/log.h"
#include "queue/queue.h"

static const char cap_t1[] =
    "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"
    "46312102006     395 Fri Nov 27 21:12:07  sender@sender.test\n"
    "                   (connect to 127.0.0.1[127.0.0.1]:10099: Connection refused)\n"
    "                                         rcpt@dest.test\n"
    "\n"
    "-- 0 Kbytes in 1 Request.\n"
;

static const char cap_t2[] =
    "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"
    "3347D10202E     411 Fri Nov 27 21:15:53  MAILER-DAEMON\n"
    "                   (connect to 127.0.0.1[127.0.0.1]:10099: Connection refused)\n"
    "                                         rcptC@dest.test\n"
    "\n"
    "0143F10202C     405 Fri Nov 27 21:15:47  sender@sender.test\n"
    "                   (connect to 127.0.0.1[127.0.0.1]:10099: Connection refused)\n"
    "                                         rcptA@dest.test\n"
    "\n"
    "1683610202D     405 Fri Nov 27 21:15:51  sender@sender.test\n"
    "                   (connect to 127.0.0.1[127.0.0.1]:10099: Connection refused)\n"
    "                                         rcptB@dest.test\n"
    "\n"
    "-- 1 Kbytes in 3 Requests.\n"
;

static const char cap_t3hold[] =
    "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"
    "8AC7E102039     397 Fri Nov 27 21:21:01  sender@sender.test\n"
    "                   (connect to 127.0.0.1[127.0.0.1]:10099: Connection refused)\n"
    "                                         rcpt8@dest.test\n"
    "\n"
    "836F210203A     423 Fri Nov 27 21:21:11  sender@sender.test\n"
    "(delivery temporarily suspended: connect to 127.0.0.1[127.0.0.1]:10099: Connection refused)\n"
    "                                         rcpt9@dest.test\n"
    "\n"
    "533A1102036     397 Fri Nov 27 21:21:01  sender@sender.test\n"
    "                   (connect to 127.0.0.1[127.0.0.1]:10099: Connection refused)\n"
    "                                         rcpt5@dest.test\n"
    "\n"
    "DB755102030     397 Fri Nov 27 21:21:00  sender@sender.test\n"
    "                   (connect to 127.0.0.1[127.0.0.1]:10099: Connection refused)\n"
    "                                         rcpt1@dest.test\n"
    "\n"
    "669D0102037     397 Fri Nov 27 21:21:01  sender@sender.test\n"
    "(delivery temporarily suspended: connect to 127.0.0.1[127.0.0.1]:10099: Connection refused)\n"
    "                                         rcpt6@dest.test\n"
    "\n"
    "7ACEE102038     397 Fri Nov 27 21:21:01  sender@sender.test\n"
    "(delivery temporarily suspended: connect to 127.0.0.1[127.0.0.1]:10099: Connection refused)\n"
    "                                         rcpt7@dest.test\n"
    "\n"
    "04F5E102033     397 Fri Nov 27 21:21:01  sender@sender.test\n"
    "(delivery temporarily suspended: connect to 127.0.0.1[127.0.0.1]:10099: Connection refused)\n"
    "                                         rcpt2@dest.test\n"
    "\n"
    "1FC8C102034     397 Fri Nov 27 21:21:01  sender@sender.test\n"
    "(delivery temporarily suspended: connect to 127.0.0.1[127.0.0.1]:10099: Connection refused)\n"
    "                                         rcpt3@dest.test\n"
    "\n"
    "3DAB5102035!     397 Fri Nov 27 21:21:01  sender@sender.test\n"
    "                   (connect to 127.0.0.1[127.0.0.1]:10099: Connection refused)\n"
    "                                         rcpt4@dest.test\n"
    "\n"
    "-- 3 Kbytes in 9 Requests.\n"
;

static const char cap_t1j[] =
    "{\"queue_name\": \"deferred\", \"queue_id\": \"46312102006\", \"arrival_time\": 1795813927, \"message_size\": 395, \"forced_expire\": false, \"sender\": \"sender@sender.test\", \"recipients\": [{\"address\": \"rcpt@dest.test\", \"delay_reason\": \"connect to 127.0.0.1[127.0.0.1]:10099: Connection refused\"}]}\n"
;

#define REASON_CONN "connect to 127.0.0.1[127.0.0.1]:10099: Connection refused"
#define REASON_SUSP "delivery temporarily suspended: " REASON_CONN

/* ---- fixtures ---- */

/* The scheduler parameters that mailq -j's expire_time depends on. */
static const QMGR_PARAMS *lifetimes(int64_t max, int64_t bounce)
{
    static QMGR_PARAMS p;

    memset(&p, 0, sizeof(p));
    p.maximal_queue_lifetime = max;
    p.bounce_queue_lifetime = bounce;
    return (&p);
}

static QMSG *fx_msg(const char *qid, int state, size_t size, int64_t arrival, const char *sender,
		            const char *rcpt, const char *reason)
{
    QMSG   *m = xcalloc(1, sizeof(*m));

    snprintf(m->qid, sizeof(m->qid), "%s", qid);
    m->seq = strtoull(qid + 5, 0, 16);
    m->state = state;
    m->arrival_us = arrival * 1000000;
    m->create_time = arrival;
    m->next_eligible = arrival + 300;
    m->sender = xstrdup(sender);
    m->client_name = xstrdup("localhost");
    m->client_addr = xstrdup("127.0.0.1");
    m->helo = xstrdup("localhost");
    m->size = size;
    m->content = xmalloc(size + 1);
    memset(m->content, 'x', size);
    m->content[size] = 0;
    if (size >= 2) {
	m->content[size - 2] = '\r';
	m->content[size - 1] = '\n';
    }
    m->rcpts = xcalloc(4, sizeof(QRCPT));
    m->nrcpt = 1;
    m->rcpts[0].addr = xstrdup(rcpt);
    m->rcpts[0].reason = xstrdup(reason);
    m->rcpts[0].state = QRCPT_PENDING;
    snprintf(m->rcpts[0].dsn, sizeof(m->rcpts[0].dsn), "4.4.1");
    return m;
}

static void fx_add_rcpt(QMSG *m, const char *addr, const char *reason, int state)
{
    QRCPT  *r = &m->rcpts[m->nrcpt++];

    memset(r, 0, sizeof(*r));
    r->addr = xstrdup(addr);
    r->reason = xstrdup(reason);
    r->state = state;
}

static void fx_free(QMSG **v, int n)
{
    for (int i = 0; i < n; i++)
	qmsg_free(v[i]);
}

/* ---- mailq text ---- */

/* buf_put_int: what %lld prints, at the edges too (mailq -j writes its numbers with it). */
static void test_buf_put_int(void)
{
    long long v[] = {0, 1, -1, 9, 10, 1795814227, -1795814227, LLONG_MAX, LLONG_MIN};
    char    want[32];

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
	BUF     b = BUF_INIT;

	buf_puts(&b, "x=");
	buf_put_int(&b, v[i]);
	snprintf(want, sizeof(want), "x=%lld", v[i]);
	T_CHECK(strcmp(b.data, want) == 0);
	T_CHECK(b.len == strlen(want));
	buf_free(&b);
    }
}

/* JSON strings: runs copied whole, every escape at a run's edge or alone. */
static void test_json_string_runs(void)
{
    BUF     b = BUF_INIT;

    showq_json_string(&b, "");
    T_CHECK(strcmp(b.data, "\"\"") == 0);
    buf_reset(&b);
    showq_json_string(&b, "\"a\\b\x7f\x01\"\"plain\t");
    T_CHECK(strcmp(b.data, "\"\\\"a\\\\b\\u007f\\u0001\\\"\\\"plain\\t\"") == 0);
    buf_reset(&b);
    showq_json_string(&b, "caf\xc3\xa9 <user@example.com>");
    T_CHECK(strcmp(b.data, "\"caf\xc3\xa9 <user@example.com>\"") == 0);
    buf_free(&b);
}

static void test_showq_t1_capture(void)
{
    QMSG   *m = fx_msg("46312102006", QSTATE_DEFERRED, 395, 1795813927, "sender@sender.test",
		           "rcpt@dest.test", REASON_CONN);
    BUF     out = BUF_INIT;

    showq_text_msgs((const QMSG *const *) &m, 1, 0, 0, &out);
    T_EQ_STR(out.data, cap_t1);
    buf_free(&out);
    qmsg_free(m);
}

static void test_showq_t2_null_sender_plural(void)
{
    QMSG   *v[3];
    BUF     out = BUF_INIT;

    v[0] = fx_msg("3347D10202E", QSTATE_DEFERRED, 411, 1795814153, "", "rcptC@dest.test", REASON_CONN);
    v[1] = fx_msg("0143F10202C", QSTATE_DEFERRED, 405, 1795814147, "sender@sender.test", "rcptA@dest.test", REASON_CONN);
    v[2] = fx_msg("1683610202D", QSTATE_DEFERRED, 405, 1795814151, "sender@sender.test", "rcptB@dest.test", REASON_CONN);
    showq_text_msgs((const QMSG *const *) v, 3, 0, 0, &out);
    T_EQ_STR(out.data, cap_t2);
    buf_free(&out);
    fx_free(v, 3);
}

static void test_showq_t3_hold_long_reason(void)
{
    static const struct {
	const char *qid;
	int     size;
	int64_t t;
	const char *rcpt;
	const char *reason;
	int     hold;
    } rows[] = {
	{"8AC7E102039", 397, 1795814461, "rcpt8@dest.test", REASON_CONN, 0},
	{"836F210203A", 423, 1795814471, "rcpt9@dest.test", REASON_SUSP, 0},
	{"533A1102036", 397, 1795814461, "rcpt5@dest.test", REASON_CONN, 0},
	{"DB755102030", 397, 1795814460, "rcpt1@dest.test", REASON_CONN, 0},
	{"669D0102037", 397, 1795814461, "rcpt6@dest.test", REASON_SUSP, 0},
	{"7ACEE102038", 397, 1795814461, "rcpt7@dest.test", REASON_SUSP, 0},
	{"04F5E102033", 397, 1795814461, "rcpt2@dest.test", REASON_SUSP, 0},
	{"1FC8C102034", 397, 1795814461, "rcpt3@dest.test", REASON_SUSP, 0},
	{"3DAB5102035", 397, 1795814461, "rcpt4@dest.test", REASON_CONN, 1},
    };
    QMSG   *v[ARRAY_LEN(rows)];
    BUF     out = BUF_INIT;

    for (size_t i = 0; i < ARRAY_LEN(rows); i++)
	v[i] = fx_msg(rows[i].qid, rows[i].hold ? QSTATE_HOLD : QSTATE_DEFERRED, rows[i].size,
		      rows[i].t, "sender@sender.test", rows[i].rcpt, rows[i].reason);
    showq_text_msgs((const QMSG *const *) v, ARRAY_LEN(rows), 0, 0, &out);
    T_EQ_STR(out.data, cap_t3hold);
    buf_free(&out);
    fx_free(v, ARRAY_LEN(rows));
}

static void fake_sched(void *ctx, const QMSG *msg, SHOWQ_SCHED *out)
{
    (void) ctx;
    if (strcmp(msg->qid, "AAAAA000001") == 0) {
	out->active = 1;
	out->next_attempt = 0;
	out->destination_dead = 0;
    } else {
	out->next_attempt = 1795815000;
	out->destination_dead = 1;
    }
}

static void test_showq_flags_reasons(void)
{
    QMSG   *v[2];
    BUF     out = BUF_INIT;
    const char *want =
	"-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"
	"AAAAA000001*    2048 Fri Nov 27 21:12:07  s@x.test\n"
	"                                         a@x.test\n"
	"\n"
	"BBBBB000002#     100 Fri Nov 27 21:12:07  s@x.test\n"
	"                                                                        (busy)\n"
	"                                         b@x.test\n"
	"                                                          (reason unavailable)\n"
	"                                         d@x.test\n"
	"\n"
	"-- 2 Kbytes in 2 Requests.\n";

    v[0] = fx_msg("AAAAA000001", QSTATE_DEFERRED, 2048, 1795813927, "s@x.test", "a@x.test", "");
    v[1] = fx_msg("BBBBB000002", QSTATE_DEFERRED, 100, 1795813927, "s@x.test", "b@x.test", "busy");
    v[1]->flags |= QFLAG_FORCE_EXPIRE;
    fx_add_rcpt(v[1], "c@x.test", "done already", QRCPT_DONE);
    fx_add_rcpt(v[1], "d@x.test", 0, QRCPT_PENDING);
    showq_text_msgs((const QMSG *const *) v, 2, fake_sched, 0, &out);
    T_EQ_STR(out.data, want);

    /* JSON: daemon fields, orig_address, escaping, omitted empty reason. */
    buf_reset(&out);
    free(v[0]->rcpts[0].reason);
    v[0]->rcpts[0].reason = xstrdup("say \"hi\"\\\n\x01");
    v[0]->rcpts[0].orcpt = xstrdup("rfc822;Orig@X.test");
    v[1]->sender[0] = 0;
    showq_json_msgs((const QMSG *const *) v, 2, fake_sched, 0, lifetimes(5 * 86400, 86400), &out);
    T_EQ_STR(out.data,
	     "{\"queue_name\": \"active\", \"queue_id\": \"AAAAA000001\", \"arrival_time\": 1795813927, "
	     "\"message_size\": 2048, \"forced_expire\": false, \"sender\": \"s@x.test\", \"recipients\": "
	     "[{\"address\": \"a@x.test\", \"orig_address\": \"Orig@X.test\", \"delay_reason\": "
	     "\"say \\\"hi\\\"\\\\\\n\\u0001\"}], \"attempts\": 0, \"next_eligible_time\": 1795814227, "
	     "\"next_attempt_time\": null, \"expire_time\": 1796245927, \"destination_dead\": false}\n"
	     "{\"queue_name\": \"deferred\", \"queue_id\": \"BBBBB000002\", \"arrival_time\": 1795813927, "
	     "\"message_size\": 100, \"forced_expire\": true, \"sender\": \"MAILER-DAEMON\", \"recipients\": "
	     "[{\"address\": \"b@x.test\", \"delay_reason\": \"busy\"}, {\"address\": \"d@x.test\"}], "
	     "\"attempts\": 0, \"next_eligible_time\": 1795814227, \"next_attempt_time\": 1795815000, "
	     "\"expire_time\": 1795900327, \"destination_dead\": true}\n");

    /* bounce_queue_lifetime above maximal_queue_lifetime is capped (issue 13). */
    buf_reset(&out);
    showq_json_msgs((const QMSG *const *) v, 2, fake_sched, 0, lifetimes(5 * 86400, 10 * 86400), &out);
    T_CHECK(strstr(out.data, "\"expire_time\": 1796245927, \"destination_dead\": false}") != 0);
    T_CHECK(strstr(out.data, "\"expire_time\": 1796245927, \"destination_dead\": true}") != 0);
    buf_free(&out);
    fx_free(v, 2);
}

static void test_showq_empty(void)
{
    BUF     out = BUF_INIT;

    showq_text_msgs(0, 0, 0, 0, &out);
    T_EQ_STR(out.data, "Mail queue is empty\n");
    buf_reset(&out);
    showq_json_msgs(0, 0, 0, 0, lifetimes(1, 1), &out);
    T_EQ_INT(out.len, 0);
    buf_free(&out);
}

static void test_showq_json_t1_prefix(void)
{
    QMSG   *m = fx_msg("46312102006", QSTATE_DEFERRED, 395, 1795813927, "sender@sender.test",
		           "rcpt@dest.test", REASON_CONN);
    BUF     out = BUF_INIT;
    size_t  plen = strlen(cap_t1j) - 2;	/* Postfix's object without "}\n" */

    showq_json_msgs((const QMSG *const *) &m, 1, 0, 0, lifetimes(432000, 432000), &out);
    T_CHECK(out.len > plen && memcmp(out.data, cap_t1j, plen) == 0);
    T_CHECK(strstr(out.data, "\"next_attempt_time\": null") != 0);
    T_CHECK(strstr(out.data, "\"destination_dead\": null}\n") != 0);
    buf_free(&out);
    qmsg_free(m);
}

/* ---- qshape ---- */

static void test_qshape_buckets(void)
{
    int64_t now = 1795813927;
    QMSG   *v[4];
    BUF     out = BUF_INIT;

    /* ages: 1 min (bucket 5), 7 min (10), 30 min (40), 2 days (1280+) */
    v[0] = fx_msg("AAAAA000001", QSTATE_DEFERRED, 10, now - 60, "s@a.test", "x@Dest.test", "");
    fx_add_rcpt(v[0], "y@other.test", "", QRCPT_PENDING);
    fx_add_rcpt(v[0], "z@gone.test", "", QRCPT_DONE);
    v[1] = fx_msg("AAAAA000002", QSTATE_DEFERRED, 10, now - 7 * 60, "s@a.test", "x@dest.test", "");
    v[2] = fx_msg("AAAAA000003", QSTATE_DEFERRED, 10, now - 30 * 60, "", "x@dest.test", "");
    v[3] = fx_msg("AAAAA000004", QSTATE_HOLD, 10, now - 2 * 86400, "s@a.test", "x@dest.test", "");
    qshape_text_msgs((const QMSG *const *) v, 4, "deferred", 0, now, 0, &out);
    T_EQ_STR(out.data,
	     "                                         T  5 10 20 40 80 160 320 640 1280 1280+\n"
	     "                                  TOTAL  4  2  1  0  1  0   0   0   0    0     0\n"
	     "                              dest.test  3  1  1  0  1  0   0   0   0    0     0\n"
	     "                             other.test  1  1  0  0  0  0   0   0   0    0     0\n");
    buf_reset(&out);
    qshape_text_msgs((const QMSG *const *) v, 4, 0, 1, now, 0, &out);
    T_EQ_STR(out.data,
	     "                                         T  5 10 20 40 80 160 320 640 1280 1280+\n"
	     "                                  TOTAL  4  1  1  0  1  0   0   0   0    0     1\n"
	     "                                 a.test  3  1  1  0  0  0   0   0   0    0     1\n"
	     "                          MAILER-DAEMON  1  0  0  0  1  0   0   0   0    0     0\n");
    buf_free(&out);
    fx_free(v, 4);
}

/* ---- real queue ---- */

static char *mktmp(void)
{
    char    tmpl[] = "/tmp/test_control.XXXXXX";
    char   *d = mkdtemp(tmpl);

    return d ? xstrdup(d) : 0;
}

static void rm_rf(const char *path)
{
    char   *cmd = xasprintf("rm -rf '%s'", path);

    if (system(cmd) != 0)
	fprintf(stderr, "cannot remove %s\n", path);
    free(cmd);
}

static char *slurp(const char *path)
{
    FILE   *fp = fopen(path, "r");
    BUF     b = BUF_INIT;
    char    chunk[4096];
    size_t  n;

    if (fp == 0)
	return xstrdup("");
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
	buf_append(&b, chunk, n);
    fclose(fp);
    buf_putc(&b, 0);
    return buf_steal(&b);
}

static void test_real_queue_and_admin(void)
{
    char   *dir = mktmp();
    char    err[256];
    QUEUE  *q;
    QBATCH *b;
    QMSG   *m1, *m2, *gone;
    BUF     out = BUF_INIT;
    char   *logpath, *log, *ids[1];

    T_CHECK(dir != 0);
    if (dir == 0)
	return;
    logpath = xasprintf("%s/maillog", dir);
    T_EQ_INT(log_open(logpath, "relayq", "mta.example", err, sizeof(err)), 0);
    q = queue_open(dir, QUEUE_OPEN_ADMIN, err, sizeof(err));
    T_CHECK(q != 0);
    if (q == 0) {
	fprintf(stderr, "queue_open: %s\n", err);
	goto out;
    }
    m1 = fx_msg("46312102006", QSTATE_DEFERRED, 395, 1795813927, "sender@sender.test", "rcpt@dest.test", REASON_CONN);
    m2 = fx_msg("3DAB5102035", QSTATE_HOLD, 397, 1795814461, "sender@sender.test", "rcpt4@dest.test", REASON_CONN);
    b = queue_batch(q);
    queue_batch_insert(b, m1);
    queue_batch_insert(b, m2);
    T_EQ_INT(queue_batch_commit(b, NULL, 0), 0);

    /* Walk order: deferred before hold. */
    showq_text(q, 0, 0, &out);
    T_EQ_STR(out.data,
	     "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"
	     "46312102006     395 Fri Nov 27 21:12:07  sender@sender.test\n"
	     "                   (connect to 127.0.0.1[127.0.0.1]:10099: Connection refused)\n"
	     "                                         rcpt@dest.test\n"
	     "\n"
	     "3DAB5102035!     397 Fri Nov 27 21:21:01  sender@sender.test\n"
	     "                   (connect to 127.0.0.1[127.0.0.1]:10099: Connection refused)\n"
	     "                                         rcpt4@dest.test\n"
	     "\n"
	     "-- 0 Kbytes in 2 Requests.\n");
    buf_reset(&out);
    showq_json(q, 0, 0, lifetimes(432000, 432000), &out);
    T_CHECK(strstr(out.data, "{\"queue_name\": \"hold\", \"queue_id\": \"3DAB5102035\"") != 0);

    /* hold: one changed, the held one untouched; logged as postsuper. */
    buf_reset(&out);
    ids[0] = "ALL";
    T_EQ_INT(control_admin_offline(q, "hold", ids, 1, 1795820000, &out), 1);
    T_EQ_STR(out.data, "Placed on hold: 1 message\n");
    log = slurp(logpath);
    T_CHECK(strstr(log, "relayq/postsuper[") != 0 && strstr(log, "]: 46312102006: placed on hold\n") != 0);
    T_CHECK(strstr(log, "]: Placed on hold: 1 message\n") != 0);
    free(log);

    buf_reset(&out);
    T_EQ_INT(control_admin_offline(q, "release", ids, 1, 1795820000, &out), 2);
    T_EQ_STR(out.data, "Released from hold: 2 messages\n");

    /* requeue: new ID, arrival kept, create_time reset, reasons gone. */
    buf_reset(&out);
    ids[0] = "46312102006";
    T_EQ_INT(control_admin_offline(q, "requeue", ids, 1, 1795820000, &out), 1);
    T_CHECK(queue_load_qid(q, "46312102006", 0, &gone, NULL, 0) == QUEUE_GONE && gone == NULL);
    buf_reset(&out);
    showq_json(q, 0, 0, lifetimes(432000, 432000), &out);
    T_CHECK(strstr(out.data, "\"queue_name\": \"incoming\"") != 0);
    T_CHECK(strstr(out.data, "\"arrival_time\": 1795813927, \"message_size\": 395") != 0);
    T_CHECK(strstr(out.data, "\"expire_time\": 1796252000") != 0);
    T_CHECK(strstr(out.data, "\"recipients\": [{\"address\": \"rcpt@dest.test\"}]") != 0);

    buf_reset(&out);
    ids[0] = "3DAB5102035";
    T_EQ_INT(control_admin_offline(q, "expire", ids, 1, 1795820000, &out), 1);
    buf_reset(&out);
    showq_text(q, 0, 0, &out);
    T_CHECK(strstr(out.data, "3DAB5102035#") != 0);

    buf_reset(&out);
    ids[0] = "NOSUCH00001";
    T_EQ_INT(control_admin_offline(q, "delete", ids, 1, 1795820000, &out), 0);
    T_EQ_STR(out.data, "NOSUCH00001: no such message\nDeleted: 0 messages\n");
    buf_reset(&out);
    ids[0] = "ALL";
    T_EQ_INT(control_admin_offline(q, "delete", ids, 1, 1795820000, &out), 2);
    buf_reset(&out);
    showq_text(q, 0, 0, &out);
    T_EQ_STR(out.data, "Mail queue is empty\n");
    queue_close(q);
    qmsg_free(m1);
    qmsg_free(m2);
out:
    log_close();
    buf_free(&out);
    free(logpath);
    rm_rf(dir);
    free(dir);
}

/*
 * Edits of ALL in slices (500 messages, 64 for requeue): every message is
 * changed once, logged once, with one summary; a requeue of ALL does not
 * requeue its own copies (ALL is what was there when it started).
 */
static int count_lines(const char *text, const char *needle)
{
    int     n = 0;

    for (const char *p = text; (p = strstr(p, needle)) != 0; p += strlen(needle))
	n++;
    return n;
}

static void test_admin_slices(void)
{
    char   *dir = mktmp(), err[256], qid[16];
    char   *logpath, *log, *ids[1] = {"ALL"};
    QUEUE  *q;
    QBATCH *b;
    BUF     out = BUF_INIT;
    int     i, n = 1203;

    T_CHECK(dir != 0);
    if (dir == 0)
	return;
    logpath = xasprintf("%s/maillog", dir);
    T_EQ_INT(log_open(logpath, "relayq", "mta.example", err, sizeof(err)), 0);
    q = queue_open(dir, QUEUE_OPEN_ADMIN, err, sizeof(err));
    T_CHECK(q != 0);
    if (q == 0)
	goto out;
    b = queue_batch(q);
    for (i = 0; i < n; i++) {
	QMSG   *m;

	snprintf(qid, sizeof(qid), "46312%06X", 0x200000 + i);
	m = fx_msg(qid, i == 7 ? QSTATE_HOLD : QSTATE_DEFERRED, 300, 1795813927 + i, "s@sender.test",
		   "r@dest.test", REASON_CONN);
	queue_batch_insert(b, m);
	qmsg_free(m);
    }
    T_EQ_INT(queue_batch_commit(b, NULL, 0), 0);

    T_EQ_INT(control_admin_offline(q, "hold", ids, 1, 1795820000, &out), n - 1);
    T_EQ_STR(out.data, "Placed on hold: 1202 messages\n");
    log = slurp(logpath);
    T_EQ_INT(count_lines(log, ": placed on hold\n"), n - 1);
    T_EQ_INT(count_lines(log, "]: Placed on hold: 1202 messages\n"), 1);
    T_EQ_INT(count_lines(log, "]: Placed on hold: "), 1);
    free(log);

    buf_reset(&out);
    T_EQ_INT(control_admin_offline(q, "release", ids, 1, 1795820000, &out), n);
    T_EQ_STR(out.data, "Released from hold: 1203 messages\n");

    /* 1203 copies, not more: the copies (new seqs) are not in ALL. */
    buf_reset(&out);
    T_EQ_INT(control_admin_offline(q, "requeue", ids, 1, 1795820000, &out), n);
    T_EQ_STR(out.data, "Requeued: 1203 messages\n");
    log = slurp(logpath);
    T_EQ_INT(count_lines(log, ": requeued as "), n);
    free(log);
    buf_reset(&out);
    showq_text(q, 0, 0, &out);
    T_CHECK(strstr(out.data, "-- 352 Kbytes in 1203 Requests.\n") != 0);
    T_EQ_INT(count_lines(out.data, "r@dest.test\n"), n);

    buf_reset(&out);
    T_EQ_INT(control_admin_offline(q, "delete", ids, 1, 1795820000, &out), n);
    buf_reset(&out);
    showq_text(q, 0, 0, &out);
    T_EQ_STR(out.data, "Mail queue is empty\n");
    queue_close(q);
out:
    log_close();
    buf_free(&out);
    free(logpath);
    rm_rf(dir);
    free(dir);
}

/* ---- maildrop ---- */

typedef struct TAKEN {
    int     n;
    char    sender[64];
    char    rcpt2[64];
    char    content[64];
    int     nrcpt;
    uid_t   uid;
    int     refuse;
} TAKEN;

static int take_cb(void *ctx, const char *path, const MAILDROP_MSG *m, const char **why)
{
    TAKEN  *t = ctx;

    (void) path;
    *why = "refused by the test";
    t->n++;
    snprintf(t->sender, sizeof(t->sender), "%s", m->sender);
    snprintf(t->rcpt2, sizeof(t->rcpt2), "%s", m->nrcpt > 1 ? m->rcpts[1] : "");
    snprintf(t->content, sizeof(t->content), "%.*s", (int) m->len, m->content);
    t->nrcpt = m->nrcpt;
    t->uid = m->uid;
    return t->refuse;
}

static int count_files(const char *dir)
{
    DIR    *dp = opendir(dir);
    struct dirent *de;
    int     n = 0;

    if (dp == 0)
	return -1;
    while ((de = readdir(dp)) != 0)
	if (de->d_name[0] != '.' && strcmp(de->d_name, "corrupt") != 0)
	    n++;
    closedir(dp);
    return n;
}

static void test_maildrop_round_trip(void)
{
    char   *dir = mktmp();
    char    err[256];
    char   *rcpts[] = {"a@x.test", "b@y.test"};
    const char *body = "Subject: hi\r\n\r\nend\n\r\n";	/* a bare LF inside is kept as is */
    MAILDROP_MSG m = {"", rcpts, 2, 1234, "joe", body, strlen(body)};
    TAKEN   t;
    struct stat st;
    char   *md;

    if (dir == 0)
	return;
    md = xasprintf("%s/maildrop", dir);
    T_EQ_INT(maildrop_init(dir, err, sizeof(err)), 0);
    T_CHECK(stat(md, &st) == 0 && (st.st_mode & 07777) == 01733);
    T_EQ_INT(maildrop_write(dir, &m, err, sizeof(err)), 0);
    T_EQ_INT(count_files(md), 1);

    memset(&t, 0, sizeof(t));
    t.refuse = 1;				/* kept when take() refuses */
    T_EQ_INT(maildrop_scan(dir, 0, take_cb, &t), 0);
    T_EQ_INT(t.n, 1);
    T_EQ_INT(count_files(md), 1);

    memset(&t, 0, sizeof(t));
    T_EQ_INT(maildrop_scan(dir, 0, take_cb, &t), 1);
    T_EQ_INT(t.n, 1);
    T_EQ_STR(t.sender, "");
    T_EQ_STR(t.rcpt2, "b@y.test");
    T_EQ_STR(t.content, body);
    T_EQ_INT(t.nrcpt, 2);
    T_EQ_INT(t.uid, getuid());			/* the file owner, not the uid line */
    T_EQ_INT(count_files(md), 0);

    /* A line break in an address would smuggle a header line. */
    rcpts[0] = "a@x.test\nrcpt evil@z";
    T_EQ_INT(maildrop_write(dir, &m, err, sizeof(err)), MAILDROP_DATA);
    T_EQ_STR(err, "bad recipient address");
    T_EQ_INT(count_files(md), 0);
    rcpts[0] = "a@x.test";
    m.user = "joe\nuid 0";
    T_EQ_INT(maildrop_write(dir, &m, err, sizeof(err)), MAILDROP_DATA);
    m.user = "joe";
    m.nrcpt = 0;
    T_EQ_INT(maildrop_write(dir, &m, err, sizeof(err)), MAILDROP_DATA);
    m.nrcpt = 2;
    /* A maildrop of the wrong mode is refused (TEMP). */
    T_EQ_INT(chmod(md, 0777), 0);
    T_EQ_INT(maildrop_write(dir, &m, err, sizeof(err)), MAILDROP_TEMP);
    T_CHECK(strstr(err, "has mode 0777, expected 1733") != 0);
    /* One that cannot be reached (as nobody when root): CREATE. */
    {
	pid_t   pid;
	int     status = 0;

	T_EQ_INT(chmod(dir, 0700), 0);
	T_EQ_INT(chmod(md, 01733), 0);
	if ((pid = fork()) == 0) {
	    if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
		_exit(2);
	    _exit(maildrop_write(dir, &m, err, sizeof(err)) == MAILDROP_CREATE
		  && strncmp(err, "create file in ", 15) == 0 ? 0 : 1);
	}
	T_CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	T_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    /* No maildrop at all: errno ENOENT (sendmail then creates it if it may). */
    {
	char   *nodir = xasprintf("%s/none", dir);

	errno = 0;
	T_EQ_INT(maildrop_write(nodir, &m, err, sizeof(err)), MAILDROP_CREATE);
	T_EQ_INT(errno, ENOENT);
	free(nodir);
    }
    T_EQ_INT(count_files(md), 0);
    free(md);
    rm_rf(dir);
    free(dir);
}

static void write_file(const char *path, const char *data)
{
    FILE   *fp = fopen(path, "w");

    if (fp) {
	fputs(data, fp);
	fclose(fp);
    }
}

static void test_maildrop_corrupt(void)
{
    static const char *bad[] = {
	"garbage\n",
	"relayq-maildrop 2\ntime 1\nuid 0\nuser x\nsender \nrcpt a@b\ncontent 2\nhiend 1 2\n",
	"relayq-maildrop 1\ntime 1\nuid 0\nuser x\nsender \nrcpt a@b\ncontent 5\nhi\nend 1 2\n",
	"relayq-maildrop 1\ntime 1\nuid 0\nuser x\nsender \ncontent 2\nhiend 0 2\n",
	"relayq-maildrop 1\ntime 1\nuid 0\nuser x\nsender \nrcpt a@b\ncontent 2\nhiend 2 2\n",
	"relayq-maildrop 1\ntime 1\nuid 0\nuser x\nsender \nrcpt a@b\ncontent 2\nhiend 1 2\nX",
    };
    const char *good = "relayq-maildrop 1\ntime 1\nuid 0\nuser x\nsender s@t\nrcpt a@b\ncontent 2\nhiend 1 2\n";
    char   *dir = mktmp(), *md, *co, err[256];
    TAKEN   t;

    if (dir == 0)
	return;
    T_EQ_INT(maildrop_init(dir, err, sizeof(err)), 0);
    md = xasprintf("%s/maildrop", dir);
    co = xasprintf("%s/maildrop/corrupt", dir);
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
	char   *p = xasprintf("%s/bad%zu", md, i);

	write_file(p, bad[i]);
	free(p);
    }
    {
	char   *p = xasprintf("%s/good", md);

	write_file(p, good);
	free(p);
    }
    memset(&t, 0, sizeof(t));
    T_EQ_INT(maildrop_scan(dir, 0, take_cb, &t), 1);
    T_EQ_INT(t.n, 1);
    T_EQ_STR(t.sender, "s@t");
    T_EQ_STR(t.content, "hi");
    T_EQ_INT(count_files(md), 0);
    T_EQ_INT(count_files(co), (int) ARRAY_LEN(bad));

    /* Refused by take() (bad address...): moved aside once, never retried. */
    {
	char   *p = xasprintf("%s/big", md);

	write_file(p, good);
	free(p);
	p = xasprintf("%s/refused", md);
	write_file(p, good);
	free(p);
    }
    memset(&t, 0, sizeof(t));
    t.refuse = -1;
    T_EQ_INT(maildrop_scan(dir, 0, take_cb, &t), 0);
    T_EQ_INT(t.n, 2);
    T_EQ_INT(count_files(md), 0);
    T_EQ_INT(count_files(co), (int) ARRAY_LEN(bad) + 2);
    free(md);
    free(co);
    rm_rf(dir);
    free(dir);
}

/* ---- sockets ---- */

static int handler(void *ctx, int admin, int argc, char **argv, BUF *out)
{
    (void) ctx;
    if (strcmp(argv[0], "echo") == 0) {
	buf_printf(out, "admin=%d argc=%d", admin, argc);
	for (int i = 1; i < argc; i++)
	    buf_printf(out, " [%s]", argv[i]);
	buf_putc(out, '\n');
	return 0;
    }
    buf_printf(out, "unknown request: %s\nsecond line", argv[0]);
    return -1;
}

typedef struct CLIENT {
    const char *dir;
    int     wake;				/* pipe to stop the loop */
    int     r1, r2, r3, r4;
    BUF     out1, out2;
    char    err3[256], err4[256];
} CLIENT;

static void *client_thread(void *arg)
{
    CLIENT *c = arg;
    char    err[256];
    char   *big = xmalloc(10000);

    c->r1 = control_call(c->dir, 0, "echo a  b", &c->out1, err, sizeof(err));
    c->r2 = control_call(c->dir, 1, "echo x\n", &c->out2, err, sizeof(err));
    c->r3 = control_call(c->dir, 0, "nope", &c->out2, c->err3, sizeof(c->err3));
    memset(big, 'a', 9999);
    big[9999] = 0;
    c->r4 = control_call(c->dir, 0, big, &c->out2, c->err4, sizeof(c->err4));
    free(big);
    if (write(c->wake, "x", 1) != 1)
	abort();
    return 0;
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void) fd;
    (void) what;
    event_base_loopbreak(arg);
}

static void test_control_socket_round_trip(void)
{
    char   *dir = mktmp(), err[256];
    struct event_base *base = event_base_new();
    CONTROL *ctl;
    CLIENT  c;
    pthread_t th;
    int     p[2];
    struct event *ev;
    struct stat st;
    char   *path;
    BUF     out = BUF_INIT;

    if (dir == 0 || pipe(p) < 0)
	return;
    /* Nobody listening yet: the daemon is down. */
    T_EQ_INT(control_call(dir, 0, "echo", &out, err, sizeof(err)), CONTROL_DOWN);
    ctl = control_create(base, dir, -1, handler, 0, err, sizeof(err));
    T_CHECK(ctl != 0);
    if (ctl == 0)
	goto out;
    path = xasprintf("%s/public/query", dir);
    T_CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0666);
    free(path);
    memset(&c, 0, sizeof(c));
    c.dir = dir;
    c.wake = p[1];
    ev = event_new(base, p[0], EV_READ, stop_cb, base);
    event_add(ev, 0);
    pthread_create(&th, 0, client_thread, &c);
    event_base_dispatch(base);
    pthread_join(th, 0);
    T_EQ_INT(c.r1, CONTROL_OK);
    T_EQ_STR(c.out1.data, "admin=0 argc=3 [a] [b]\n");
    T_EQ_INT(c.r2, CONTROL_OK);
    T_EQ_STR(c.out2.data, "admin=1 argc=2 [x]\n");
    T_EQ_INT(c.r3, CONTROL_ERROR);
    T_EQ_STR(c.err3, "unknown request: nope second line");
    T_EQ_INT(c.r4, CONTROL_ERROR);
    T_EQ_STR(c.err4, "request too long");
    buf_free(&c.out1);
    buf_free(&c.out2);
    event_free(ev);
    control_free(ctl);
    /* Sockets are gone with the daemon. */
    T_EQ_INT(control_call(dir, 0, "echo", &out, err, sizeof(err)), CONTROL_DOWN);
out:
    close(p[0]);
    close(p[1]);
    event_base_free(base);
    buf_free(&out);
    rm_rf(dir);
    free(dir);
}

/*
 * qview: a walk in pages of 7 on the reader thread, paused after every
 * other page and resumed from a timer, gives byte for byte showq_text()'s
 * output (one snapshot, one walk); a walk cancelled from its page
 * callback, and one cancelled before its first page, get no callback
 * after that; qview_stop then qview_free with a walk still paused.
 */
typedef struct QV_T {
    struct event_base *base;
    QVIEW_WALK *w;
    SHOWQ_STREAM *ss;
    BUF     out;
    int     pages, paused, done, ok, cancel_at, msgs, stay_paused;
    struct event *resume;
} QV_T;

static void qv_resume(evutil_socket_t fd, short what, void *ctx)
{
    QV_T   *t = ctx;

    qview_walk_resume(t->w);
}

static int qv_page(void *ctx, QMSG *const *msgs, int n)
{
    QV_T   *t = ctx;
    struct timeval zero = {0, 0};

    t->pages++;
    t->msgs += n;
    for (int i = 0; i < n; i++)
	showq_stream_msg(t->ss, msgs[i], &t->out);
    if (t->cancel_at && t->pages == t->cancel_at) {
	struct timeval half = {0, 300000};

	qview_walk_cancel(t->w);
	event_base_loopexit(t->base, &half);
	return 0;
    }
    if (t->pages % 2) {
	t->paused++;
	if (!t->stay_paused)
	    evtimer_add(t->resume, &zero);
	return 1;
    }
    return 0;
}

static void qv_done(void *ctx, int ok, const char *why)
{
    QV_T   *t = ctx;

    t->done++;
    t->ok = ok;
    showq_stream_end(t->ss, &t->out);
    event_base_loopbreak(t->base);
}

static void test_qview(void)
{
    char   *dir = mktmp(), err[256], qid[16];
    struct event_base *base = event_base_new();
    struct timeval limit = {10, 0};
    QUEUE  *q;
    QVIEW  *v;
    QCURSOR c;
    QV_T    t;
    struct event *resume;
    BUF     want = BUF_INIT;
    QBATCH *b;
    int     i;

    T_CHECK(dir != 0);
    if (dir == 0)
	return;
    q = queue_open(dir, QUEUE_OPEN_ADMIN, err, sizeof(err));
    T_CHECK(q != 0);
    if (q == 0)
	goto out;
    b = queue_batch(q);
    for (i = 0; i < 50; i++) {
	QMSG   *m;

	snprintf(qid, sizeof(qid), "46312%06X", 0x102006 + i);
	m = fx_msg(qid, i % 5 == 0 ? QSTATE_HOLD : QSTATE_DEFERRED, 300 + (size_t) i, 1795813927 + i,
		   "sender@sender.test", i % 3 ? "rcpt@dest.test" : "other@else.test", REASON_CONN);
	queue_batch_insert(b, m);
	qmsg_free(m);
    }
    T_EQ_INT(queue_batch_commit(b, NULL, 0), 0);
    T_EQ_INT(showq_text(q, 0, 0, &want), 0);
    v = qview_create(base, q, err, sizeof(err));
    T_CHECK(v != 0);
    if (v == 0)
	goto close;

    memset(&t, 0, sizeof(t));
    t.base = base;
    t.ss = showq_stream_text(0, 0);
    resume = evtimer_new(base, qv_resume, &t);
    t.resume = resume;
    queue_cursor_init(&c);
    t.w = qview_walk(v, &c, 1, 7, qv_page, qv_done, &t);
    event_base_loopexit(base, &limit);
    event_base_dispatch(base);
    T_EQ_INT(t.done, 1);
    T_EQ_INT(t.ok, 1);
    T_EQ_INT(t.msgs, 50);
    T_EQ_INT(t.pages, 8);
    T_EQ_INT(t.paused, 4);
    T_EQ_STR(t.out.data, want.data);
    showq_stream_free(t.ss);
    buf_free(&t.out);

    /* Cancelled from its third page: no more pages, no done. */
    memset(&t, 0, sizeof(t));
    t.base = base;
    t.resume = resume;
    t.ss = showq_stream_text(0, 0);
    t.cancel_at = 3;
    t.w = qview_walk(v, &c, 1, 5, qv_page, qv_done, &t);
    T_EQ_INT(queue_cursor_done(&c), 0);	/* the caller's cursor is copied, not advanced */
    queue_cursor_init(&c);
    qview_walk_cancel(t.w);
    t.w = qview_walk(v, &c, 1, 5, qv_page, qv_done, &t);
    event_base_loopexit(base, &limit);
    event_base_dispatch(base);
    T_EQ_INT(t.pages, 3);
    T_EQ_INT(t.done, 0);
    showq_stream_free(t.ss);
    buf_free(&t.out);

    /* A walk left paused when the daemon stops is freed with the view. */
    memset(&t, 0, sizeof(t));
    t.base = base;
    t.ss = showq_stream_text(0, 0);
    t.stay_paused = 1;
    t.resume = resume;
    t.w = qview_walk(v, &c, 1, 5, qv_page, qv_done, &t);
    {
	struct timeval soon = {0, 300000};

	event_base_loopexit(base, &soon);
	event_base_dispatch(base);
    }
    evtimer_del(resume);
    event_free(resume);
    T_EQ_INT(t.pages, 1);
    qview_stop(v);
    qview_walk_cancel(t.w);
    qview_free(v);
    showq_stream_free(t.ss);
    buf_free(&t.out);
close:
    queue_close(q);
out:
    buf_free(&want);
    event_base_free(base);
    rm_rf(dir);
    free(dir);
}

/* Issue 14: text views show what others chose without terminal escapes (Postfix's printable()). */
static void test_printable(void)
{
    static const struct {
	const char *in, *out;
    } cases[] = {
	{"plain@example.test", "plain@example.test"},
	{"\x1b]0;owned\x07x@y", "?]0;owned?x@y"},
	{"a\rb\nc\td\x7f", "a?b?c?d?"},
	{"j\xc3\xb6rg@\xe4\xbe\x8b.test", "j\xc3\xb6rg@\xe4\xbe\x8b.test"},	/* UTF-8 stays */
	{"csi\xc2\x9b" "2J", "csi??2J"},				/* U+009B: C1 control */
	{"bad\x9b" "2J\xff", "bad?2J?"},					/* not UTF-8 */
	{"over\xc0\xafx", "over??x"},
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
	char   *o = str_printable(cases[i].in);

	if (strcmp(o, cases[i].out) != 0)
	    T_FAILF("case %zu: \"%s\"", i, o);
	free(o);
    }
}

/*
 * qview work phase: page() joins on the loop and returns QVIEW_WORK, the
 * page goes back to the thread (work() sees what page() joined, on
 * another thread), after() gets the same page on the loop; the walk's own
 * object is freed exactly once with the walk, whether it ends, is
 * cancelled while the thread works on a page, or is left when the view
 * stops.
 */
typedef struct QW_OBJ {
    uint64_t joined[16];		/* page(): the seqs, on the loop */
    int     njoined;
    uint64_t sum;			/* work(): on the thread */
    int     mismatch, on_loop, worked;
    pthread_t loop;
    struct QW_TOT *tot;
} QW_OBJ;

typedef struct QW_TOT {			/* of the objects freed */
    int     freed, on_loop, mismatch, worked;
} QW_TOT;

typedef struct QW_T {
    struct event_base *base;
    QVIEW_WALK *w;
    QW_OBJ *obj;
    int     pages, afters, done, ok, cancel_at;
} QW_T;

static void qw_obj_free(void *o)
{
    QW_OBJ *obj = o;

    obj->tot->freed++;
    obj->tot->on_loop += obj->on_loop;
    obj->tot->mismatch += obj->mismatch;
    obj->tot->worked += obj->worked;
    free(obj);
}

static int qw_page(void *ctx, QMSG *const *msgs, int n)
{
    QW_T   *t = ctx;

    t->pages++;
    t->obj->njoined = n;
    for (int i = 0; i < n; i++)
	t->obj->joined[i] = msgs[i]->seq;
    return (QVIEW_WORK);
}

static int qw_in_work;				/* the thread is in a slow work() */

static void qw_work(void *o, QMSG *const *msgs, int n)
{
    QW_OBJ *obj = o;

    if (pthread_equal(pthread_self(), obj->loop))
	obj->on_loop++;
    if (n != obj->njoined)
	obj->mismatch++;
    for (int i = 0; i < n; i++) {
	if (i < obj->njoined && msgs[i]->seq != obj->joined[i])
	    obj->mismatch++;
	obj->sum += msgs[i]->seq;
    }
    obj->worked++;
    if (obj->worked == 1) {
	__atomic_store_n(&qw_in_work, 1, __ATOMIC_SEQ_CST);
	usleep(300000);				/* a slow page: a cancel comes meanwhile */
    }
}

static int qw_after(void *ctx, QMSG *const *msgs, int n)
{
    QW_T   *t = ctx;

    t->afters++;
    if (t->cancel_at && t->afters == t->cancel_at)
	qview_walk_cancel(t->w);
    return (0);
}

static void qw_done(void *ctx, int ok, const char *why)
{
    QW_T   *t = ctx;

    t->done++;
    t->ok = ok;
    event_base_loopbreak(t->base);
}

/* Run the loop until *flag (atomic when the thread sets it) is non-zero, 10 s at most. */
static void qw_run_until(struct event_base *base, int *flag)
{
    for (int i = 0; i < 10000 && !__atomic_load_n(flag, __ATOMIC_SEQ_CST); i++) {
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	usleep(1000);
    }
}

static void test_qview_work(void)
{
    char   *dir = mktmp(), err[256], qid[16];
    struct event_base *base = event_base_new();
    struct timeval limit = {10, 0};
    QUEUE  *q;
    QVIEW  *v;
    QCURSOR c;
    QW_T    t;
    QBATCH *b;
    int     i;
    QW_TOT  tot;
    unsigned long walks, pages;
    int     live;

    T_CHECK(dir != 0);
    if (dir == 0)
	return;
    q = queue_open(dir, QUEUE_OPEN_ADMIN, err, sizeof(err));
    T_CHECK(q != 0);
    if (q == 0)
	goto out;
    b = queue_batch(q);
    for (i = 0; i < 50; i++) {
	QMSG   *m;

	snprintf(qid, sizeof(qid), "46312%06X", 0x102006 + i);
	m = fx_msg(qid, QSTATE_DEFERRED, 300, 1795813927 + i, "sender@sender.test", "rcpt@dest.test", REASON_CONN);
	queue_batch_insert(b, m);
	qmsg_free(m);
    }
    T_EQ_INT(queue_batch_commit(b, NULL, 0), 0);
    memset(&tot, 0, sizeof(tot));
    v = qview_create(base, q, err, sizeof(err));
    T_CHECK(v != 0);
    if (v == 0)
	goto close;

    /* The whole walk: 50 messages in pages of 16, each worked on by the thread. */
    memset(&t, 0, sizeof(t));
    t.base = base;
    t.obj = xcalloc(1, sizeof(*t.obj));
    t.obj->loop = pthread_self();
    t.obj->tot = &tot;
    queue_cursor_init(&c);
    t.w = qview_walk(v, &c, 1, 16, qw_page, qw_done, &t);
    qview_walk_own(t.w, t.obj, qw_obj_free);
    qview_walk_work(t.w, qw_work, qw_after);
    event_base_loopexit(base, &limit);
    event_base_dispatch(base);
    T_EQ_INT(t.done, 1);
    T_EQ_INT(t.ok, 1);
    T_EQ_INT(t.pages, 4);
    T_EQ_INT(t.afters, 4);
    T_EQ_INT(tot.freed, 1);				/* after done */
    T_EQ_INT(tot.worked, 4);
    T_EQ_INT(tot.on_loop, 0);			/* work() ran on the thread */
    T_EQ_INT(tot.mismatch, 0);			/* with the page page() joined */
    T_EQ_INT((long) qview_worked(v), 4);
    qview_counts(v, &walks, &pages, &live);
    T_EQ_INT(live, 0);

    /* Cancelled from its second after(): no more callbacks. */
    memset(&t, 0, sizeof(t));
    t.base = base;
    t.obj = xcalloc(1, sizeof(*t.obj));
    t.obj->loop = pthread_self();
    t.obj->tot = &tot;
    t.cancel_at = 2;				/* cancelled from its second after() */
    queue_cursor_init(&c);
    t.w = qview_walk(v, &c, 1, 16, qw_page, qw_done, &t);
    qview_walk_own(t.w, t.obj, qw_obj_free);
    qview_walk_work(t.w, qw_work, qw_after);
    {
	struct timeval soon = {0, 500000};

	event_base_loopexit(base, &soon);
	event_base_dispatch(base);
    }
    T_EQ_INT(t.afters, 2);
    T_EQ_INT(t.done, 0);
    T_EQ_INT(tot.freed, 2);

    /* Cancelled while the thread works on its first page (100 ms): freed once, when it is back. */
    memset(&t, 0, sizeof(t));
    t.base = base;
    t.obj = xcalloc(1, sizeof(*t.obj));
    t.obj->loop = pthread_self();
    t.obj->tot = &tot;
    queue_cursor_init(&c);
    t.w = qview_walk(v, &c, 1, 16, qw_page, qw_done, &t);
    qview_walk_own(t.w, t.obj, qw_obj_free);
    qview_walk_work(t.w, qw_work, qw_after);
    {
	struct timeval soon = {0, 600000};

	qw_in_work = 0;
	qw_run_until(base, &qw_in_work);	/* page() done, work() sleeping */
	T_EQ_INT(t.pages, 1);
	qview_walk_cancel(t.w);
	T_EQ_INT(tot.freed, 2);			/* not yet: the thread has it */
	event_base_loopexit(base, &soon);
	event_base_dispatch(base);
    }
    T_EQ_INT(t.afters, 0);
    T_EQ_INT(tot.freed, 3);

    /* Messages the caller has (qview_walk_given): worked on by the thread, then after(), then done. */
    {
	QMSG   *given[3];
	QCURSOR c3;
	int     got;

	queue_cursor_init(&c3);
	got = queue_page(q, &c3, 1, given, 3, err, sizeof(err));
	T_EQ_INT(got, 3);
	memset(&t, 0, sizeof(t));
	t.base = base;
	t.obj = xcalloc(1, sizeof(*t.obj));
	t.obj->loop = pthread_self();
	t.obj->tot = &tot;
	t.obj->njoined = 3;
	for (i = 0; i < 3; i++)
	    t.obj->joined[i] = given[i]->seq;
	t.w = qview_walk_given(v, given, 3, t.obj, qw_obj_free, qw_work, qw_after, qw_done, &t);
	T_CHECK(t.w != 0);
	event_base_loopexit(base, &limit);
	event_base_dispatch(base);
	T_EQ_INT(t.pages, 0);			/* no page() for what the caller gave */
	T_EQ_INT(t.afters, 1);
	T_EQ_INT(t.done, 1);
	T_EQ_INT(t.ok, 1);
	T_EQ_INT(tot.freed, 4);
	T_EQ_INT(tot.on_loop, 0);
	T_EQ_INT(tot.mismatch, 0);
    }

    /* Left in the middle when the view stops: freed by qview_free. */
    memset(&t, 0, sizeof(t));
    t.base = base;
    t.obj = xcalloc(1, sizeof(*t.obj));
    t.obj->loop = pthread_self();
    t.obj->tot = &tot;
    queue_cursor_init(&c);
    t.w = qview_walk(v, &c, 1, 16, qw_page, qw_done, &t);
    qview_walk_own(t.w, t.obj, qw_obj_free);
    qview_walk_work(t.w, qw_work, qw_after);
    qw_run_until(base, &t.pages);		/* page() done: the page is the thread's */
    qview_stop(v);
    T_EQ_INT(tot.freed, 4);
    qview_free(v);
    T_EQ_INT(tot.freed, 5);
    T_EQ_INT(tot.on_loop, 0);
    T_EQ_INT(tot.mismatch, 0);
close:
    queue_close(q);
out:
    event_base_free(base);
    rm_rf(dir);
    free(dir);
}

int     main(void)
{
    T_RUN(test_printable);
    T_RUN(test_buf_put_int);
    T_RUN(test_json_string_runs);
    setenv("TZ", "UTC", 1);
    tzset();
    T_RUN(test_showq_t1_capture);
    T_RUN(test_showq_t2_null_sender_plural);
    T_RUN(test_showq_t3_hold_long_reason);
    T_RUN(test_showq_flags_reasons);
    T_RUN(test_showq_empty);
    T_RUN(test_showq_json_t1_prefix);
    T_RUN(test_qshape_buckets);
    T_RUN(test_real_queue_and_admin);
    T_RUN(test_admin_slices);
    T_RUN(test_maildrop_round_trip);
    T_RUN(test_maildrop_corrupt);
    T_RUN(test_control_socket_round_trip);
    T_RUN(test_qview);
    T_RUN(test_qview_work);
    return t_done();
}
