/*
 * test_smtpd - the SMTP server: first the pure protocol functions
 * (smtpd_proto.h) table by table, then a live session: smtpd on a free
 * 127.0.0.1 port with a real queue in a mkdtemp directory, driven over a
 * socket from a client thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <event2/event.h>

#include "t.h"
#include "util/util.h"
#include "config/config.h"
#include "queue/queue.h"
#include "log/log.h"
#include "smtpd/smtpd.h"
#include "smtpd/smtpd_proto.h"

/* DATA state machine */

typedef struct {
    const char *name;
    const char *in;
    size_t  inlen;			/* 0: strlen */
    int     mode;
    int     rc;				/* expected smtpd_data_feed result */
    const char *out;			/* expected content so far */
    size_t  consumed;			/* expected bytes consumed (END/BARE_LF) */
} DATA_CASE;

#define N SMTPD_BARE_NORMALIZE
#define R SMTPD_BARE_REJECT
#define O SMTPD_BARE_NO

static const DATA_CASE data_cases[] = {
    {"proper end", "a\r\n.\r\nQUIT\r\n", 0, N, SMTPD_DATA_END, "a\r\n", 6},
    {"empty message", ".\r\n", 0, N, SMTPD_DATA_END, "", 3},
    {"dot-unstuff", "..a\r\n..\r\n.\r\n", 0, N, SMTPD_DATA_END, ".a\r\n.\r\n", 12},
    {"dot inside line", "a.b\r\n .\r\n.\r\n", 0, N, SMTPD_DATA_END, "a.b\r\n .\r\n", 12},
    /* The five smuggling sequences, in each mode. */
    {"LF.LF normalize", "a\n.\nMAIL", 0, N, SMTPD_DATA_MORE, "a\r\n\r\nMAIL", 0},
    {"LF.LF no", "a\n.\nMAIL", 0, O, SMTPD_DATA_MORE, "a\r\n\r\nMAIL", 0},
    {"LF.LF reject", "a\n.\nMAIL", 0, R, SMTPD_DATA_BARE_LF, "a", 2},
    {"CRLF.LF normalize", "a\r\n.\nMAIL", 0, N, SMTPD_DATA_MORE, "a\r\n\r\nMAIL", 0},
    {"CRLF.LF no", "a\r\n.\nMAIL", 0, O, SMTPD_DATA_MORE, "a\r\n\r\nMAIL", 0},
    {"CRLF.LF reject", "a\r\n.\nMAIL", 0, R, SMTPD_DATA_BARE_LF, "a\r\n", 5},
    {"LF.CRLF normalize", "a\n.\r\nMAIL", 0, N, SMTPD_DATA_MORE, "a\r\n\r\nMAIL", 0},
    {"LF.CRLF no", "a\n.\r\nMAIL", 0, O, SMTPD_DATA_MORE, "a\r\n\r\nMAIL", 0},
    {"LF.CRLF reject", "a\n.\r\nMAIL", 0, R, SMTPD_DATA_BARE_LF, "a", 2},
    {"CR.CR normalize", "a\r.\rMAIL", 0, N, SMTPD_DATA_MORE, "a\r.\rMAIL", 0},
    {"CR.CR no", "a\r.\rMAIL", 0, O, SMTPD_DATA_MORE, "a\r.\rMAIL", 0},
    {"CR.CR reject", "a\r.\rMAIL", 0, R, SMTPD_DATA_MORE, "a\r.\rMAIL", 0},
    {"CRLF.CRLF after smuggle", "a\n.\r\nX\r\n.\r\n", 0, N, SMTPD_DATA_END, "a\r\n\r\nX\r\n", 11},
    {"bare CR before CRLF.CRLF", "a\r\r\n.\r\n", 0, N, SMTPD_DATA_END, "a\r\r\n", 7},
    {".CR then text", "a\r\n.\rb\r\n.\r\n", 0, N, SMTPD_DATA_END, "a\r\n\rb\r\n", 11},
    {"NUL kept", "a\0b\r\n.\r\n", 8, N, SMTPD_DATA_END, "a\0b\r\n", 8},
    {"bare LF normalized", "a\nb\r\n.\r\n", 0, N, SMTPD_DATA_END, "a\r\nb\r\n", 8},
    {"8bit kept", "\xc3\xa4\r\n.\r\n", 0, N, SMTPD_DATA_END, "\xc3\xa4\r\n", 7},
};

static void run_data_case(const DATA_CASE *c, int bytewise)
{
    SMTPD_DATA d;
    BUF     out = BUF_INIT;
    size_t  len = c->inlen ? c->inlen : strlen(c->in);
    size_t  pos = 0, used;
    int     rc = SMTPD_DATA_MORE;
    size_t  outlen = c->inlen ? c->inlen : strlen(c->out);

    if (c->inlen)
	outlen = strlen(c->out) + 1 + strlen(c->out + strlen(c->out) + 1);
    smtpd_data_init(&d, c->mode, 0, &out);
    while (pos < len && rc == SMTPD_DATA_MORE) {
	size_t  n = bytewise ? 1 : len - pos;

	rc = smtpd_data_feed(&d, c->in + pos, n, &used);
	pos += used;
    }
    if (rc != c->rc || out.len != outlen || (outlen && memcmp(out.data, c->out, outlen) != 0))
	T_FAILF("%s (%s): rc %d want %d, out \"%.*s\" (%zu) want (%zu)", c->name,
		bytewise ? "bytewise" : "whole", rc, c->rc, (int) out.len,
		out.data ? out.data : "", out.len, outlen);
    if (c->rc != SMTPD_DATA_MORE && pos != c->consumed)
	T_FAILF("%s: consumed %zu want %zu", c->name, pos, c->consumed);
    buf_free(&out);
}

static void test_data_machine(void)
{
    size_t  i;

    for (i = 0; i < ARRAY_LEN(data_cases); i++) {
	run_data_case(&data_cases[i], 0);
	run_data_case(&data_cases[i], 1);
    }
}

static void test_data_size_limit(void)
{
    SMTPD_DATA d;
    BUF     out = BUF_INIT;
    size_t  used;
    int     i, rc = 0;
    char    chunk[1000];

    memset(chunk, 'x', sizeof(chunk) - 2);
    chunk[998] = '\r';
    chunk[999] = '\n';
    smtpd_data_init(&d, SMTPD_BARE_NORMALIZE, 5000, &out);
    for (i = 0; i < 100; i++) {
	rc = smtpd_data_feed(&d, chunk, sizeof(chunk), &used);
	T_EQ_INT(rc, SMTPD_DATA_MORE);
    }
    T_CHECK(d.overflow);
    /* Memory stays bounded: nothing is kept past the limit. */
    T_CHECK(out.cap <= 8192);
    rc = smtpd_data_feed(&d, ".\r\n", 3, &used);
    T_EQ_INT(rc, SMTPD_DATA_END);
    T_EQ_INT(d.size, 100000);
    buf_free(&out);
}

/*
 * Lines are copied a run at a time: any input, cut into any chunks, must
 * give what byte-at-a-time feeding gives (content, size, overflow, bare
 * LF, result and bytes consumed), in every mode and around the size limit.
 */
static int feed_all(int mode, size_t limit, const char *in, size_t len, size_t chunk,
		            BUF *out, SMTPD_DATA *d, size_t *pos)
{
    int     rc = SMTPD_DATA_MORE;
    size_t  used;

    smtpd_data_init(d, mode, limit, out);
    *pos = 0;
    while (*pos < len && rc == SMTPD_DATA_MORE) {
	size_t  n = len - *pos < chunk ? len - *pos : chunk;

	rc = smtpd_data_feed(d, in + *pos, n, &used);
	*pos += used;
    }
    return (rc);
}

static void test_data_runs_match_bytewise(void)
{
    static const char alpha[] = {'a', 'b', '.', '.', '\r', '\n', '\0', ' '};
    static const int modes[] = {N, R, O};
    static const size_t chunks[] = {2, 3, 7, 64, 100000};
    char    in[300];
    unsigned seed = 12345;

    for (int iter = 0; iter < 3000; iter++) {
	size_t  len = 1 + (size_t) (iter % 300);
	int     mode = modes[iter % 3];
	size_t  limit = iter % 5 == 0 ? (size_t) (iter % 97) : 0;

	for (size_t k = 0; k < len; k++) {
	    seed = seed * 1103515245u + 12345u;
	    /* Mostly text, as real mail: long runs between line ends. */
	    in[k] = (seed >> 16) % 4 ? (char) ('c' + (seed >> 20) % 20) : alpha[(seed >> 18) % sizeof(alpha)];
	}
	for (size_t c = 0; c < ARRAY_LEN(chunks); c++) {
	    SMTPD_DATA a, b;
	    BUF     oa = BUF_INIT, ob = BUF_INIT;
	    size_t  pa, pb;
	    int     ra = feed_all(mode, limit, in, len, 1, &oa, &a, &pa);
	    int     rb = feed_all(mode, limit, in, len, chunks[c], &ob, &b, &pb);

	    if (ra != rb || pa != pb || a.size != b.size || a.overflow != b.overflow
		|| a.bare_lf != b.bare_lf || oa.len != ob.len
		|| (oa.len && memcmp(oa.data, ob.data, oa.len) != 0)) {
		T_FAILF("iter %d chunk %zu mode %d: rc %d/%d consumed %zu/%zu size %zu/%zu out %zu/%zu",
			iter, chunks[c], mode, ra, rb, pa, pb, a.size, b.size, oa.len, ob.len);
		buf_free(&oa);
		buf_free(&ob);
		return;
	    }
	    buf_free(&oa);
	    buf_free(&ob);
	}
    }
}

static void test_data_long_line(void)
{
    SMTPD_DATA d;
    BUF     out = BUF_INIT;
    size_t  used;
    char   *big = xmalloc(10003);

    /* A 10000-byte line is kept whole; a dot inside it is not a line start. */
    memset(big, 'y', 10000);
    big[5000] = '.';
    memcpy(big + 10000, "\r\n", 3);
    smtpd_data_init(&d, SMTPD_BARE_NORMALIZE, 0, &out);
    T_EQ_INT(smtpd_data_feed(&d, big, 10002, &used), SMTPD_DATA_MORE);
    T_EQ_INT(smtpd_data_feed(&d, ".\r\n", 3, &used), SMTPD_DATA_END);
    T_EQ_INT(out.len, 10002);
    T_CHECK(memcmp(out.data, big, 10002) == 0);
    free(big);
    buf_free(&out);
}

/* Command framing */

static void test_line_framing(void)
{
    SMTPD_LINER lr = {16, 0};
    size_t  linelen, used;
    int     crlf;

    T_EQ_INT(smtpd_line_get(&lr, "NOOP\r\nQUIT\r\n", 12, &linelen, &used, &crlf), SMTPD_LINE_OK);
    T_EQ_INT(linelen, 4);
    T_EQ_INT(used, 6);
    T_EQ_INT(crlf, 1);
    T_EQ_INT(smtpd_line_get(&lr, "NOOP\n", 5, &linelen, &used, &crlf), SMTPD_LINE_OK);
    T_EQ_INT(crlf, 0);
    T_EQ_INT(linelen, 4);
    /* A bare CR is not a line end. */
    T_EQ_INT(smtpd_line_get(&lr, "NO\rOP", 5, &linelen, &used, &crlf), SMTPD_LINE_MORE);
    T_EQ_INT(used, 0);
    /* Partial line: wait. */
    T_EQ_INT(smtpd_line_get(&lr, "NOOP\r", 5, &linelen, &used, &crlf), SMTPD_LINE_MORE);
    T_EQ_INT(used, 0);
    /* Too long without newline: dropped in pieces, reported at the newline. */
    T_EQ_INT(smtpd_line_get(&lr, "AAAAAAAAAAAAAAAAAAAAAAAA", 24, &linelen, &used, &crlf),
	     SMTPD_LINE_MORE);
    T_EQ_INT(used, 24);
    T_CHECK(lr.skipping);
    T_EQ_INT(smtpd_line_get(&lr, "BBBB", 4, &linelen, &used, &crlf), SMTPD_LINE_MORE);
    T_EQ_INT(used, 4);
    T_EQ_INT(smtpd_line_get(&lr, "CC\r\nNOOP\r\n", 10, &linelen, &used, &crlf), SMTPD_LINE_TOOLONG);
    T_EQ_INT(used, 4);
    T_EQ_INT(lr.skipping, 0);
    /* Too long, newline in the same chunk. */
    T_EQ_INT(smtpd_line_get(&lr, "AAAAAAAAAAAAAAAAAAAA\r\n", 22, &linelen, &used, &crlf),
	     SMTPD_LINE_TOOLONG);
    T_EQ_INT(used, 22);
    /* Exactly at the limit is fine. */
    T_EQ_INT(smtpd_line_get(&lr, "AAAAAAAAAAAAAAAA\r\n", 18, &linelen, &used, &crlf), SMTPD_LINE_OK);
}

static void test_cmd_split(void)
{
    char    l1[] = "mail FROM:<a@b>  SIZE=10  ";
    char    l2[] = "QUIT";
    char   *verb, *arg;

    smtpd_cmd_split(l1, &verb, &arg);
    T_EQ_STR(verb, "mail");
    T_EQ_STR(arg, "FROM:<a@b>  SIZE=10");
    smtpd_cmd_split(l2, &verb, &arg);
    T_EQ_STR(verb, "QUIT");
    T_EQ_STR(arg, "");
}

/* Addresses */

typedef struct {
    const char *arg;
    const char *kw;
    int     rc;
    const char *addr;
    const char *params;
} PATH_CASE;

static const PATH_CASE path_cases[] = {
    {"FROM:<>", "FROM:", SMTPD_PATH_OK, "", ""},
    {"FROM:<a@b>", "FROM:", SMTPD_PATH_OK, "a@b", ""},
    {"from:<a@b>", "FROM:", SMTPD_PATH_OK, "a@b", ""},
    {"FROM: <a@b> SIZE=5", "FROM:", SMTPD_PATH_OK, "a@b", "SIZE=5"},
    {"FROM:a@b", "FROM:", SMTPD_PATH_OK, "a@b", ""},
    {"FROM:a@b BODY=8BITMIME", "FROM:", SMTPD_PATH_OK, "a@b", "BODY=8BITMIME"},
    {"FROM:<\"john doe\"@b>", "FROM:", SMTPD_PATH_OK, "\"john doe\"@b", ""},
    {"FROM:<\"a>b\"@c>", "FROM:", SMTPD_PATH_OK, "\"a>b\"@c", ""},
    {"FROM:<\"a\\\"b\"@c>", "FROM:", SMTPD_PATH_OK, "\"a\\\"b\"@c", ""},
    {"TO:<@r1,@r2:u@d>", "TO:", SMTPD_PATH_OK, "u@d", ""},
    {"TO:<@r1:u@d> NOTIFY=NEVER", "TO:", SMTPD_PATH_OK, "u@d", "NOTIFY=NEVER"},
    {"TO:<postmaster>", "TO:", SMTPD_PATH_OK, "postmaster", ""},
    {"FROM", "FROM:", SMTPD_PATH_SYNTAX, 0, 0},
    {"FROM:", "FROM:", SMTPD_PATH_SYNTAX, 0, 0},
    {"FROM <a@b>", "FROM:", SMTPD_PATH_SYNTAX, 0, 0},
    {"TO:<a@b>", "FROM:", SMTPD_PATH_SYNTAX, 0, 0},
    {"FROM:<a@b", "FROM:", SMTPD_PATH_BAD, 0, 0},
    {"FROM:<a@b>x", "FROM:", SMTPD_PATH_BAD, 0, 0},
    {"FROM:<a b@c>", "FROM:", SMTPD_PATH_BAD, 0, 0},
    {"FROM:<a<b@c>", "FROM:", SMTPD_PATH_BAD, 0, 0},
    {"FROM:<\"unterminated@c>", "FROM:", SMTPD_PATH_BAD, 0, 0},
    {"TO:<@r1u@d>", "TO:", SMTPD_PATH_BAD, 0, 0},
    {"TO:<a\tb@c>", "TO:", SMTPD_PATH_BAD, 0, 0},
    {"TO:<a\x01@c>", "TO:", SMTPD_PATH_BAD, 0, 0},
    /* Issue 14: the domain must be a host name or an address literal, never a port. */
    {"FROM:<x@[127.0.0.1]:2525>", "FROM:", SMTPD_PATH_BAD, 0, 0},
    {"TO:<a@host.test:25>", "TO:", SMTPD_PATH_BAD, 0, 0},
    {"TO:<a@b..c>", "TO:", SMTPD_PATH_BAD, 0, 0},
    {"TO:<a@>", "TO:", SMTPD_PATH_BAD, 0, 0},
    {"TO:<a@.b>", "TO:", SMTPD_PATH_BAD, 0, 0},
    {"TO:<a@b.>", "TO:", SMTPD_PATH_BAD, 0, 0},
    {"TO:<a@-b.c>", "TO:", SMTPD_PATH_BAD, 0, 0},
    {"TO:<a@b-.c>", "TO:", SMTPD_PATH_BAD, 0, 0},
    {"TO:<a@[1.2.3]>", "TO:", SMTPD_PATH_BAD, 0, 0},
    {"TO:<a@[1.2.3.4]x>", "TO:", SMTPD_PATH_BAD, 0, 0},
    {"TO:<a@[[1.2.3.4]]>", "TO:", SMTPD_PATH_BAD, 0, 0},
    {"TO:<a@1.2.3.4>", "TO:", SMTPD_PATH_BAD, 0, 0},
    {"TO:<a@b@c>", "TO:", SMTPD_PATH_OK, "a@b@c", ""},
    {"TO:<a@x/y.test>", "TO:", SMTPD_PATH_BAD, 0, 0},
    {"TO:<a@[127.0.0.1]>", "TO:", SMTPD_PATH_OK, "a@[127.0.0.1]", ""},
    {"TO:<a@[IPv6:::1]>", "TO:", SMTPD_PATH_OK, "a@[IPv6:::1]", ""},
    {"TO:<a@[IPv6:1.2.3.4]>", "TO:", SMTPD_PATH_BAD, 0, 0},
    {"TO:<\"a@b:1\"@c.test>", "TO:", SMTPD_PATH_OK, "\"a@b:1\"@c.test", ""},
    {"TO:<a@under_score.test>", "TO:", SMTPD_PATH_OK, "a@under_score.test", ""},
    {"TO:<a@b.123>", "TO:", SMTPD_PATH_BAD, 0, 0},
    {"TO:<a@123.test>", "TO:", SMTPD_PATH_OK, "a@123.test", ""},
};

static void test_parse_path(void)
{
    size_t  i;

    for (i = 0; i < ARRAY_LEN(path_cases); i++) {
	const PATH_CASE *c = &path_cases[i];
	char   *addr = 0;
	const char *params = 0;
	int     rc = smtpd_parse_path(c->arg, c->kw, &addr, &params);

	if (rc != c->rc)
	    T_FAILF("\"%s\": rc %d want %d", c->arg, rc, c->rc);
	else if (rc == SMTPD_PATH_OK
		 && (strcmp(addr, c->addr) != 0 || strcmp(params, c->params) != 0))
	    T_FAILF("\"%s\": addr \"%s\" params \"%s\"", c->arg, addr, params);
	free(addr);
    }
}

static void test_xtext(void)
{
    char   *o;

    T_EQ_INT(smtpd_xtext_decode("abc+2Bd+3D", &o), 0);
    T_EQ_STR(o, "abc+d=");
    free(o);
    T_EQ_INT(smtpd_xtext_decode("a+2", &o), -1);
    T_EQ_INT(smtpd_xtext_decode("a+ZZ", &o), -1);
    T_EQ_INT(smtpd_xtext_decode("a=b", &o), -1);
    T_EQ_INT(smtpd_xtext_decode("a b", &o), -1);
}

/* Parameters */

typedef struct {
    const char *params;
    int     ok;
    const char *reply;			/* expected reply when !ok */
} PARAM_CASE;

static const PARAM_CASE mail_cases[] = {
    {"", 1, 0},
    {"SIZE=1000", 1, 0},
    {"size=10240000", 1, 0},
    {"SIZE=10240001", 0, "552 5.3.4 Message size exceeds fixed limit"},
    {"SIZE=abc", 0, "501 5.5.4 Bad message size syntax"},
    {"SIZE=-1", 0, "501 5.5.4 Bad message size syntax"},
    {"SIZE=99999999999999999999999", 0, "501 5.5.4 Bad message size syntax"},
    {"BODY=8BITMIME", 1, 0},
    {"body=7bit", 1, 0},
    {"BODY=BINARYMIME", 0, "555 5.5.4 Unsupported option: BODY=BINARYMIME"},
    {"SMTPUTF8", 1, 0},
    {"RET=FULL", 1, 0},
    {"RET=hdrs", 1, 0},
    {"RET=NONE", 0, "501 5.5.4 Bad RET parameter syntax"},
    {"RET=FULL RET=HDRS", 0, "501 5.5.4 Bad RET parameter syntax"},
    {"ENVID=abc+2B1", 1, 0},
    {"ENVID=a+Z1", 0, "501 5.5.4 Bad ENVID parameter syntax"},
    {"ENVID=a ENVID=b", 0, "501 5.5.4 Bad ENVID parameter syntax"},
    {"ENVID=", 0, "501 5.5.4 Bad ENVID parameter syntax"},
    {"FOO=bar", 0, "555 5.5.4 Unsupported option: FOO=bar"},
    {"XAUTH=<>", 0, "555 5.5.4 Unsupported option: XAUTH=<>"},
    {"AUTH=<> AUTH=bob", 0, "503 5.5.4 Error: multiple AUTH= options"},
};

static void test_mail_params(void)
{
    size_t  i;
    SMTPD_MAILP mp;
    char    reply[256];

    for (i = 0; i < ARRAY_LEN(mail_cases); i++) {
	const PARAM_CASE *c = &mail_cases[i];
	int     rc = smtpd_mail_params(c->params, 10240000, &mp, reply, sizeof(reply));

	if ((rc == 0) != c->ok)
	    T_FAILF("\"%s\": rc %d", c->params, rc);
	else if (!c->ok && strcmp(reply, c->reply) != 0)
	    T_FAILF("\"%s\": reply \"%s\"", c->params, reply);
	if (rc == 0)
	    smtpd_mailp_free(&mp);
    }
    T_EQ_INT(smtpd_mail_params("SIZE=12 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x+2By",
			       0, &mp, reply, sizeof(reply)), 0);
    T_EQ_INT(mp.size, 12);
    T_EQ_INT(mp.body8, 1);
    T_EQ_INT(mp.smtputf8, 1);
    T_EQ_INT(mp.ret, QRET_HDRS);
    T_EQ_STR(mp.envid, "x+y");
    smtpd_mailp_free(&mp);
    /* No limit: any size. */
    T_EQ_INT(smtpd_mail_params("SIZE=99999999999", 0, &mp, reply, sizeof(reply)), 0);
}

static const PARAM_CASE rcpt_cases[] = {
    {"", 1, 0},
    {"NOTIFY=NEVER", 1, 0},
    {"NOTIFY=SUCCESS,FAILURE,DELAY", 1, 0},
    {"notify=delay", 1, 0},
    {"NOTIFY=NEVER,SUCCESS", 0, "501 5.5.4 Error: Bad NOTIFY parameter syntax"},
    {"NOTIFY=SUCCESS,SUCCESS", 0, "501 5.5.4 Error: Bad NOTIFY parameter syntax"},
    {"NOTIFY=SOMETIMES", 0, "501 5.5.4 Error: Bad NOTIFY parameter syntax"},
    {"NOTIFY=", 0, "501 5.5.4 Error: Bad NOTIFY parameter syntax"},
    {"NOTIFY=SUCCESS,,DELAY", 0, "501 5.5.4 Error: Bad NOTIFY parameter syntax"},
    {"ORCPT=rfc822;a@b", 1, 0},
    {"ORCPT=rfc822;a+2Bb@c", 1, 0},
    {"ORCPT=a@b", 0, "501 5.5.4 Error: Bad ORCPT parameter syntax"},
    {"ORCPT=rfc822;", 0, "501 5.5.4 Error: Bad ORCPT parameter syntax"},
    {"ORCPT=rfc822;a+X", 0, "501 5.5.4 Error: Bad ORCPT parameter syntax"},
    {"ORCPT=rfc822;a ORCPT=rfc822;b", 0, "501 5.5.4 Error: Bad ORCPT parameter syntax"},
    {"XYZ", 0, "555 5.5.4 Unsupported option: XYZ"},
};

static void test_rcpt_params(void)
{
    size_t  i;
    SMTPD_RCPTP rp;
    char    reply[256];

    for (i = 0; i < ARRAY_LEN(rcpt_cases); i++) {
	const PARAM_CASE *c = &rcpt_cases[i];
	int     rc = smtpd_rcpt_params(c->params, &rp, reply, sizeof(reply));

	if ((rc == 0) != c->ok)
	    T_FAILF("\"%s\": rc %d", c->params, rc);
	else if (!c->ok && strcmp(reply, c->reply) != 0)
	    T_FAILF("\"%s\": reply \"%s\"", c->params, reply);
	if (rc == 0)
	    smtpd_rcptp_free(&rp);
    }
    T_EQ_INT(smtpd_rcpt_params("NOTIFY=SUCCESS,DELAY ORCPT=rfc822;x@y", &rp, reply, sizeof(reply)), 0);
    T_EQ_INT(rp.notify, QNOTIFY_SUCCESS | QNOTIFY_DELAY);
    T_EQ_STR(rp.orcpt, "rfc822;x@y");
    smtpd_rcptp_free(&rp);
}

/* Networks, domains, relay restrictions */

static void test_net_match(void)
{
    char   *nets[] = {"127.0.0.0/8", "[::1]/128", "10.1.2.3", "192.168.0.0/23", "[2001:db8::]/32", 0};
    char   *none[] = {0};

    T_CHECK(smtpd_net_match("127.0.0.1", nets));
    T_CHECK(smtpd_net_match("127.255.1.1", nets));
    T_CHECK(smtpd_net_match("::1", nets));
    T_CHECK(smtpd_net_match("::ffff:127.0.0.1", nets));
    T_CHECK(smtpd_net_match("10.1.2.3", nets));
    T_CHECK(!smtpd_net_match("10.1.2.4", nets));
    T_CHECK(smtpd_net_match("192.168.1.200", nets));
    T_CHECK(!smtpd_net_match("192.168.2.1", nets));
    T_CHECK(smtpd_net_match("2001:db8:1::5", nets));
    T_CHECK(!smtpd_net_match("2001:db9::1", nets));
    T_CHECK(!smtpd_net_match("::2", nets));
    T_CHECK(!smtpd_net_match("128.0.0.1", nets));
    T_CHECK(!smtpd_net_match("127.0.0.1", none));
}

static void test_domain_match(void)
{
    char   *d[] = {"example.com", ".sub.test", 0};

    T_CHECK(smtpd_domain_match("example.com", d));
    T_CHECK(smtpd_domain_match("EXAMPLE.COM.", d));
    T_CHECK(smtpd_domain_match("a.b.example.com", d));
    T_CHECK(!smtpd_domain_match("badexample.com", d));
    T_CHECK(!smtpd_domain_match("example.org", d));
    T_CHECK(!smtpd_domain_match("sub.test", d));
    T_CHECK(smtpd_domain_match("x.sub.test", d));
}

typedef struct {
    const char *restr;
    int     mynet;
    const char *rcpt;
    const char *reply;			/* NULL: permitted */
} RELAY_CASE;

static const RELAY_CASE relay_cases[] = {
    {"permit_mynetworks, defer_unauth_destination", 1, "a@far.test", 0},
    {"permit_mynetworks, defer_unauth_destination", 0, "a@far.test",
    "454 4.7.1 <a@far.test>: Relay access denied"},
    {"permit_mynetworks, defer_unauth_destination", 0, "a@relay.test", 0},
    {"permit_mynetworks, defer_unauth_destination", 0, "a@x.relay.test", 0},
    {"permit_mynetworks, defer_unauth_destination", 0, "a%b@relay.test",
    "454 4.7.1 <a%b@relay.test>: Relay access denied"},
    {"permit_mynetworks, reject_unauth_destination", 0, "a@far.test",
    "554 5.7.1 <a@far.test>: Relay access denied"},
    {"reject_unauth_destination", 1, "a@far.test", "554 5.7.1 <a@far.test>: Relay access denied"},
    {"permit", 0, "a@far.test", 0},
    {"reject", 1, "a@relay.test", "554 5.7.1 <a@relay.test>: Recipient address rejected: Access denied"},
    {"defer", 1, "a@relay.test", "450 4.7.1 <a@relay.test>: Recipient address rejected: Access denied"},
    {"", 0, "a@far.test", 0},
    {"bogus_restriction", 0, "a@far.test", "451 4.3.5 Server configuration error"},
    {"defer_unauth_destination", 0, "postmaster", "454 4.7.1 <postmaster>: Relay access denied"},
};

static void test_relay_check(void)
{
    char   *rd[] = {"relay.test", 0};
    size_t  i;

    for (i = 0; i < ARRAY_LEN(relay_cases); i++) {
	const RELAY_CASE *c = &relay_cases[i];
	char  **r = str_split_list(c->restr, 0);
	char    reply[256] = "";
	int     rc = smtpd_relay_check(r, c->mynet, c->rcpt, rd, reply, sizeof(reply));

	if (c->reply == 0 && rc != 0)
	    T_FAILF("%s/%s: rejected: %s", c->restr, c->rcpt, reply);
	else if (c->reply && (rc == 0 || strcmp(reply, c->reply) != 0))
	    T_FAILF("%s/%s: rc %d reply \"%s\"", c->restr, c->rcpt, rc, reply);
	str_list_free(r);
    }
}

static void test_counts_format(void)
{
    SMTPD_COUNTS c;
    BUF     b = BUF_INIT;

    memset(&c, 0, sizeof(c));
    c.ok[SMTPD_C_EHLO] = c.total[SMTPD_C_EHLO] = 1;
    c.ok[SMTPD_C_MAIL] = c.total[SMTPD_C_MAIL] = 1;
    c.ok[SMTPD_C_RCPT] = c.total[SMTPD_C_RCPT] = 1;
    c.ok[SMTPD_C_DATA] = c.total[SMTPD_C_DATA] = 1;
    c.ok[SMTPD_C_QUIT] = c.total[SMTPD_C_QUIT] = 1;
    smtpd_counts_format(&c, &b);
    T_EQ_STR(b.data, " ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5");
    buf_reset(&b);
    c.total[SMTPD_C_RCPT] = 2;
    c.total[SMTPD_C_UNKNOWN] = 1;
    smtpd_counts_format(&c, &b);
    T_EQ_STR(b.data, " ehlo=1 mail=1 rcpt=1/2 data=1 quit=1 unknown=0/1 commands=5/7");
    buf_free(&b);
    memset(&c, 0, sizeof(c));
    smtpd_counts_format(&c, &b);
    T_EQ_STR(b.data, " commands=0/0");		/* as Postfix, for a client that said nothing */
    buf_free(&b);
    {
	/* Numbers written without printf: the same text as "%d" for every width. */
	static const int v[] = {0, 1, 9, 10, 99, 100, 4096, 99999, 1000000, 1000000000};
	BUF     want = BUF_INIT;

	for (size_t i = 0; i < ARRAY_LEN(v); i++) {
	    memset(&c, 0, sizeof(c));
	    c.ok[SMTPD_C_RCPT] = v[i];
	    c.total[SMTPD_C_RCPT] = v[i] + (int) (i % 3);
	    c.ok[SMTPD_C_QUIT] = c.total[SMTPD_C_QUIT] = v[i] / 2;
	    smtpd_counts_format(&c, &b);
	    if (c.total[SMTPD_C_RCPT])
		buf_printf(&want, c.ok[SMTPD_C_RCPT] == c.total[SMTPD_C_RCPT] ? " rcpt=%d" : " rcpt=%d/%d",
			   c.ok[SMTPD_C_RCPT], c.total[SMTPD_C_RCPT]);
	    if (c.total[SMTPD_C_QUIT])
		buf_printf(&want, " quit=%d", c.ok[SMTPD_C_QUIT]);
	    {
		int     ok = c.ok[SMTPD_C_RCPT] + c.ok[SMTPD_C_QUIT];
		int     total = c.total[SMTPD_C_RCPT] + c.total[SMTPD_C_QUIT];

		if (ok == total && total > 0)
		    buf_printf(&want, " commands=%d", ok);
		else
		    buf_printf(&want, " commands=%d/%d", ok, total);
	    }
	    T_EQ_STR(b.data, want.data);
	    buf_free(&b);
	    buf_free(&want);
	}
	memset(&c, 0, sizeof(c));
	c.ok[SMTPD_C_MAIL] = c.total[SMTPD_C_MAIL] = 2147483647;
	smtpd_counts_format(&c, &b);
	T_EQ_STR(b.data, " mail=2147483647 commands=2147483647");
	buf_free(&b);
    }
}

static void test_bare_mode(void)
{
    T_EQ_INT(smtpd_bare_mode("normalize"), SMTPD_BARE_NORMALIZE);
    T_EQ_INT(smtpd_bare_mode("yes"), SMTPD_BARE_REJECT);
    T_EQ_INT(smtpd_bare_mode("reject"), SMTPD_BARE_REJECT);
    T_EQ_INT(smtpd_bare_mode("no"), SMTPD_BARE_NO);
    T_EQ_INT(smtpd_bare_mode("maybe"), -1);
}

/*
 * Live sessions.  The event loop runs on the main thread; each scenario
 * is a client thread that talks to smtpd and records what it received.
 */

static atomic_int live_client_done;
static int live_port;
static int live_queued;
static char live_dir[64];

typedef struct {
    const char *send;			/* sent in one write */
    int     replies;			/* number of complete replies to wait for */
} STEP;

typedef struct {
    const STEP *steps;
    BUF     got;			/* everything received */
    int     closed;			/* server closed the connection at the end */
    int     timedout;
} SCRIPT;

/* Read until n complete replies (last line "NNN ") have arrived. */
static int read_replies(int fd, BUF *got, int n)
{
    char    buf[4096];

    for (;;) {
	const char *line = got->data;
	int     finals = 0;
	ssize_t r;

	while (line && *line) {
	    const char *e = strstr(line, "\r\n");

	    if (e == 0)
		break;
	    if (e - line >= 4 && line[3] == ' ')
		finals++;
	    line = e + 2;
	}
	if (finals >= n)
	    return (0);
	if ((r = read(fd, buf, sizeof(buf))) <= 0)
	    return (-1);
	buf_append(got, buf, (size_t) r);
    }
}

static void *client_thread(void *arg)
{
    SCRIPT *sc = arg;
    struct sockaddr_in sin;
    int     fd = socket(AF_INET, SOCK_STREAM, 0);
    int     want = 1, i;
    char    c;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short) live_port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval rto = {5, 0};

    /* A hung server fails the test instead of hanging it. */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rto, sizeof(rto));
    if (connect(fd, (struct sockaddr *) &sin, sizeof(sin)) < 0)
	goto out;
    if (read_replies(fd, &sc->got, want) < 0)
	goto out;
    for (i = 0; sc->steps[i].send; i++) {
	if (write(fd, sc->steps[i].send, strlen(sc->steps[i].send)) < 0)
	    break;
	want += sc->steps[i].replies;
	if (read_replies(fd, &sc->got, want) < 0) {
	    sc->timedout = 1;
	    break;
	}
    }
    sc->closed = (read(fd, &c, 1) == 0);
out:
    close(fd);
    atomic_store(&live_client_done, 1);
    return (0);
}

static void poll_cb(evutil_socket_t fd, short what, void *ctx)
{
    if (atomic_load(&live_client_done))
	event_base_loopbreak((struct event_base *) ctx);
}

static void notify_cb(evutil_socket_t fd, short what, void *ctx)
{
    queue_dispatch((QUEUE *) ctx);
}

static void queued_hook(void *ctx, const QMSG *msg)
{
    live_queued++;
}

static struct event_base *live_base;
static SMTPD *live_smtpd;
static QUEUE *live_q;
static CONFIG *live_cf;

static int live_setup(char *const *overrides, int n)
{
    char    err[512];
    SMTPD_HOOKS hooks = {queued_hook, 0};
    char   *qdir;

    snprintf(live_dir, sizeof(live_dir), "/tmp/test_smtpd.XXXXXX");
    if (mkdtemp(live_dir) == 0)
	return (-1);
    live_cf = config_load(live_dir, overrides, n, 1, err, sizeof(err));
    if (live_cf == 0) {
	printf("config: %s\n", err);
	return (-1);
    }
    qdir = xasprintf("%s/q", live_dir);
    mkdir(qdir, 0700);
    live_q = queue_open(qdir, QUEUE_OPEN_DAEMON, err, sizeof(err));
    free(qdir);
    if (live_q == 0) {
	printf("queue: %s\n", err);
	return (-1);
    }
    live_base = event_base_new();
    live_smtpd = smtpd_create(live_base, live_cf, live_q, &hooks);
    if (smtpd_listen(live_smtpd, err, sizeof(err)) < 0) {
	printf("listen: %s\n", err);
	return (-1);
    }
    live_port = smtpd_bound_port(live_smtpd, 0);
    return (0);
}

static void live_teardown(void)
{
    char    cmd[128];

    smtpd_free(live_smtpd);
    queue_close(live_q);
    event_base_free(live_base);
    config_free(live_cf);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", live_dir);
    if (system(cmd) != 0)
	printf("cannot remove %s\n", live_dir);
}

static void live_run(SCRIPT *sc)
{
    pthread_t t;
    struct event *poll, *nev;
    struct timeval tv = {0, 5000};

    buf_init(&sc->got);
    atomic_store(&live_client_done, 0);
    poll = event_new(live_base, -1, EV_PERSIST, poll_cb, live_base);
    nev = event_new(live_base, queue_notify_fd(live_q), EV_READ | EV_PERSIST, notify_cb, live_q);
    event_add(poll, &tv);
    event_add(nev, 0);
    pthread_create(&t, 0, client_thread, sc);
    event_base_dispatch(live_base);
    pthread_join(t, 0);
    /* Let the server finish logging/closing. */
    event_base_loop(live_base, EVLOOP_NONBLOCK);
    event_free(poll);
    event_free(nev);
}

static int contains(const BUF *b, const char *s)
{
    return (b->data && strstr(b->data, s) != 0);
}

static char live_log[128];

static void test_live_session(void)
{
    char   *ov[] = {"smtpd_listen=127.0.0.1:0", "myhostname=mx.example.test",
	"relay_domains=relay.test", "smtpd_recipient_limit=3", "line_length_limit=600",
    "message_size_limit=20000", live_log};
    static const STEP steps[] = {
	{"EHLO client.test\r\n", 1},
	{"MAIL FROM:<s@x.test> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<a@far.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@far.test\r\n"
	    "RCPT TO:<b@relay.test>\r\nDATA\r\n", 4},
	{"Subject: hi\r\n\r\nbody\r\n..dot\r\nsmuggle\n.\nMAIL FROM:<evil@x>\r\n.\r\n", 1},
	{"mail from:<>\r\nrcpt to:<x@y.test>\r\nrcpt to:<>\r\nrset\r\n", 4},
	{"MAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\nRCPT TO:<1@t>\r\nRCPT TO:<2@t>\r\nRCPT TO:<3@t>\r\nRCPT TO:<4@t>\r\n", 6},
	{"DATA\r\n", 1},
	{"x\r\n.\r\n", 1},
	{"HELP\r\nVRFY <a@b>\r\nNOOP\r\nDATA\r\n", 4},
	{"RCPT TO:<a@b>\r\n", 1},
	{"XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
	    "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
	    "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
	    "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
	    "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
	    "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
	    "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
	    "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\r\n", 1},
	{"MAIL FROM:<big@x> SIZE=30000\r\n", 1},
	{"QUIT\r\n", 1},
	{0, 0},
    };
    SCRIPT  sc = {steps, BUF_INIT, 0, 0};
    char    errbuf[256];
    FILE   *fp;
    BUF     logtxt = BUF_INIT;
    char    line[4096];
    QMSG   *m;
    char    qid[32];
    const char *cp;

    snprintf(live_log, sizeof(live_log), "maillog_file=/tmp/test_smtpd_log.%d", (int) getpid());
    if (live_setup(ov, (int) ARRAY_LEN(ov)) < 0) {
	printf("skipped ");
	return;
    }
    if (log_open(live_log + strlen("maillog_file="), "relayq", "mx.example.test",
		 errbuf, sizeof(errbuf)) < 0)
	T_FAILF("log_open: %s", errbuf);
    live_run(&sc);

    T_CHECK(contains(&sc.got, "220 mx.example.test ESMTP"));
    T_CHECK(contains(&sc.got, "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 20000\r\n250-VRFY\r\n"
		     "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 SMTPUTF8\r\n"));
    T_CHECK(contains(&sc.got, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"));
    T_CHECK(contains(&sc.got, "250 2.0.0 Ok: queued as "));
    T_CHECK(contains(&sc.got, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n501 5.1.3 Bad recipient address syntax\r\n250 2.0.0 Ok\r\n"));
    T_CHECK(contains(&sc.got, "503 5.5.1 Error: nested MAIL command\r\n"));
    T_CHECK(contains(&sc.got, "452 4.5.3 Error: too many recipients\r\n"));
    T_CHECK(contains(&sc.got, "500 5.5.2 Error: command not recognized\r\n252 2.0.0 <a@b>\r\n250 2.0.0 Ok\r\n503 5.5.1 Error: need RCPT command\r\n"));
    T_CHECK(contains(&sc.got, "503 5.5.1 Error: need MAIL command\r\n"));
    T_CHECK(contains(&sc.got, "500 5.5.0 Error: line too long\r\n"));
    T_CHECK(contains(&sc.got, "552 5.3.4 Message size exceeds fixed limit\r\n"));
    T_CHECK(contains(&sc.got, "221 2.0.0 Bye\r\n"));
    T_CHECK(sc.closed);
    T_EQ_INT(live_queued, 2);

    /* The queue has the first message, byte for byte apart from the added headers. */
    qid[0] = 0;
    if ((cp = strstr(sc.got.data, "queued as ")) != 0)
	sscanf(cp + 10, "%31[0-9A-Za-z]", qid);
    queue_load_qid(live_q, qid, 1, &m, NULL, 0);
    T_CHECK(m != 0);
    if (m) {
	T_EQ_STR(m->sender, "s@x.test");
	T_EQ_INT(m->nrcpt, 2);
	if (m->nrcpt == 2) {
	    T_EQ_STR(m->rcpts[0].addr, "a@far.test");
	    T_EQ_INT(m->rcpts[0].notify, QNOTIFY_SUCCESS | QNOTIFY_FAILURE);
	    T_EQ_STR(m->rcpts[0].orcpt, "rfc822;a@far.test");
	    T_EQ_STR(m->rcpts[1].addr, "b@relay.test");
	}
	T_CHECK(m->flags & QFLAG_8BITMIME);
	T_CHECK(m->content && strstr(m->content, "Received: from client.test (localhost [127.0.0.1])\r\n"
				      "\tby mx.example.test (relayq) with ESMTP id "));
	T_CHECK(m->content && strstr(m->content, "Subject: hi\r\nMessage-Id: <"));
	T_CHECK(m->content && strstr(m->content, "\r\n\r\nbody\r\n.dot\r\nsmuggle\r\n\r\nMAIL FROM:<evil@x>\r\n")
		&& m->content[strlen(m->content) - 1] == '\n');
	T_CHECK(m->create_time > 0 && m->arrival_us > 0);
	T_EQ_STR(m->helo, "client.test");
	T_EQ_STR(m->client_addr, "127.0.0.1");
	qmsg_free(m);
    }
    /* The log. */
    log_close();
    if ((fp = fopen(live_log + strlen("maillog_file="), "r")) != 0) {
	while (fgets(line, sizeof(line), fp))
	    buf_puts(&logtxt, line);
	fclose(fp);
    }
    T_CHECK(contains(&logtxt, "relayq/smtpd["));
    T_CHECK(contains(&logtxt, ": connect from localhost[127.0.0.1]"));
    T_CHECK(contains(&logtxt, ": client=localhost[127.0.0.1]"));
    T_CHECK(contains(&logtxt, "relayq/cleanup["));
    T_CHECK(contains(&logtxt, ": message-id=<"));
    T_CHECK(contains(&logtxt, "disconnect from localhost[127.0.0.1] ehlo=1 mail=3/5 rcpt=6/9 data=2/3 rset=1 noop=1 vrfy=1 quit=1 unknown=0/2 commands=16/24"));
    if (t_cur_failed)
	printf("\n--- log:\n%s--- replies:\n%s", logtxt.data ? logtxt.data : "", sc.got.data ? sc.got.data : "");
    buf_free(&logtxt);
    buf_free(&sc.got);
    unlink(live_log + strlen("maillog_file="));
    live_teardown();
}

/* Relay denied for a client outside mynetworks (mynetworks made empty). */
static void test_live_relay_denied(void)
{
    char   *ov[] = {"smtpd_listen=127.0.0.1:0", "myhostname=mx.example.test",
    "mynetworks=10.0.0.0/8", "relay_domains=relay.test", "smtpd_forbid_bare_newline=reject"};
    static const STEP steps[] = {
	{"HELO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<r@far.test>\r\nRCPT TO:<r@sub.relay.test>\r\n", 4},
	{"NOOP\n", 1},
	{0, 0},
    };
    SCRIPT  sc = {steps, BUF_INIT, 0, 0};

    char    errbuf[256];

    live_queued = 0;
    if (live_setup(ov, (int) ARRAY_LEN(ov)) < 0) {
	printf("skipped ");
	return;
    }
    if (log_open("/dev/null", "relayq", "mx.example.test", errbuf, sizeof(errbuf)) < 0)
	T_FAILF("log_open: %s", errbuf);
    live_run(&sc);
    T_CHECK(contains(&sc.got, "250 mx.example.test\r\n250 2.1.0 Ok\r\n"
		     "454 4.7.1 <r@far.test>: Relay access denied\r\n250 2.1.5 Ok\r\n"));
    T_CHECK(contains(&sc.got, "521 5.5.2 mx.example.test Error: bare <LF> received\r\n"));
    T_CHECK(sc.closed);
    T_EQ_INT(live_queued, 0);
    log_close();
    buf_free(&sc.got);
    live_teardown();
}

int     main(void)
{
    T_RUN(test_data_machine);
    T_RUN(test_data_size_limit);
    T_RUN(test_data_long_line);
    T_RUN(test_data_runs_match_bytewise);
    T_RUN(test_line_framing);
    T_RUN(test_cmd_split);
    T_RUN(test_parse_path);
    T_RUN(test_xtext);
    T_RUN(test_mail_params);
    T_RUN(test_rcpt_params);
    T_RUN(test_net_match);
    T_RUN(test_domain_match);
    T_RUN(test_relay_check);
    T_RUN(test_counts_format);
    T_RUN(test_bare_mode);
    T_RUN(test_live_session);
    T_RUN(test_live_relay_denied);
    return (t_done());
}
