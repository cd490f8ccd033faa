/*
 * test_bounce - delivery status notifications: structure, every DSN field,
 * wrapping, NOTIFY/RET/bounce_size_limit rules, CRLF, and (when python3 is
 * installed) a real MIME parser's view of the notices.
 *
 * The fixtures follow the Postfix traces in spec/postfix-traces (T1 expiry,
 * T2 delay warning, T4 remote reply); tests/unit/fixtures/bounce holds the
 * expected T1 notice and the Python checker.  Times are printed in UTC
 * (TZ is set in main()).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include "t.h"
#include "util/util.h"
#include "config/config.h"
#include "queue/queue.h"
#include "bounce/bounce.h"

/* Fri, 27 Nov 2026 21:15:24 UTC, when T1's notice was sent. */
#define T1_NOW		1795814124LL
/* Fri, 27 Nov 2026 21:12:07 UTC, T1's arrival. */
#define T1_ARRIVAL	1795813927LL

#define T1_CONTENT \
    "Received: from client.sem.test (localhost [127.0.0.1])\r\n" \
    "\tby mta.sem.test (relayq) with ESMTP id 46312102006\r\n" \
    "\tfor <rcpt@dest.test>; Fri, 27 Nov 2026 21:12:07 +0000 (UTC)\r\n" \
    "Date: Fri, 27 Nov 2026 21:12:07 +0000\r\n" \
    "To: rcpt@dest.test\r\n" \
    "From: sender@sender.test\r\n" \
    "Subject: T1 retry trace\r\n" \
    "Message-Id: <20261127211207.006254@vm>\r\n" \
    "\r\n" \
    "T1 body\r\n"

#define T1_HEADERS_ONLY \
    "Return-Path: <sender@sender.test>\r\n" \
    "Received: from client.sem.test (localhost [127.0.0.1])\r\n" \
    "\tby mta.sem.test (relayq) with ESMTP id 46312102006\r\n" \
    "\tfor <rcpt@dest.test>; Fri, 27 Nov 2026 21:12:07 +0000 (UTC)\r\n" \
    "Date: Fri, 27 Nov 2026 21:12:07 +0000\r\n" \
    "To: rcpt@dest.test\r\n" \
    "From: sender@sender.test\r\n" \
    "Subject: T1 retry trace\r\n" \
    "Message-Id: <20261127211207.006254@vm>\r\n"

#define FIXDIR_FROM(file) fixdir_of(file)

/* ---------------------------------------------------------------- helpers */

static char fixdir_buf[1024];

/* The fixture folder next to this source file (tests run from the root). */
static const char *fixdir_of(const char *file)
{
    const char *slash = strrchr(file, '/');

    snprintf(fixdir_buf, sizeof(fixdir_buf), "%.*s/fixtures/bounce",
	     slash ? (int) (slash - file) : 1, slash ? file : ".");
    return fixdir_buf;
}

static CONFIG *cf_make(const char *size_limit, const char *lifetime, const char *warn)
{
    char    o1[64], o2[64], o3[64];
    char   *ov[4];
    char    err[256];
    CONFIG *cf;

    snprintf(o1, sizeof(o1), "bounce_size_limit=%s", size_limit);
    snprintf(o2, sizeof(o2), "maximal_queue_lifetime=%s", lifetime);
    snprintf(o3, sizeof(o3), "delay_warning_time=%s", warn);
    ov[0] = "myhostname=mta.sem.test";
    ov[1] = o1;
    ov[2] = o2;
    ov[3] = o3;
    cf = config_load("/nonexistent/relayq-test-bounce", ov, 4, 1, err, sizeof(err));
    if (cf == NULL) {
	fprintf(stderr, "config_load: %s\n", err);
	exit(2);
    }
    return cf;
}

/* A fixture recipient. */
typedef struct {
    const char *addr;
    const char *orcpt;
    int     notify;
    const char *dsn;
    const char *reason;
    const char *remote_mta;
    const char *diag;
} RCPT_FIX;

static QMSG *msg_make(const char *qid, const char *sender, const char *content,
		              const RCPT_FIX *r, int n)
{
    QMSG   *m = xcalloc(1, sizeof(*m));
    int     i;

    snprintf(m->qid, sizeof(m->qid), "%s", qid);
    m->state = QSTATE_ACTIVE;
    m->arrival_us = T1_ARRIVAL * 1000000 + 123456;
    m->create_time = T1_ARRIVAL;
    m->sender = xstrdup(sender);
    m->content = xstrdup(content);
    m->size = strlen(content);
    m->rcpts = xcalloc((size_t) n, sizeof(*m->rcpts));
    m->nrcpt = n;
    for (i = 0; i < n; i++) {
	m->rcpts[i].addr = xstrdup(r[i].addr);
	m->rcpts[i].orcpt = xstrdup(r[i].orcpt);
	m->rcpts[i].notify = r[i].notify;
	snprintf(m->rcpts[i].dsn, sizeof(m->rcpts[i].dsn), "%s", r[i].dsn ? r[i].dsn : "");
	m->rcpts[i].reason = xstrdup(r[i].reason);
	m->rcpts[i].remote_mta = xstrdup(r[i].remote_mta);
	m->rcpts[i].diag = xstrdup(r[i].diag);
    }
    return m;
}

/*
 * Free a message field by field (what qmsg_free() does), so that this test
 * does not depend on the queue module's implementation.
 */
static void msg_free(QMSG *m)
{
    int     i;

    if (m == NULL)
	return;
    for (i = 0; i < m->nrcpt; i++) {
	free(m->rcpts[i].addr);
	free(m->rcpts[i].orcpt);
	free(m->rcpts[i].reason);
	free(m->rcpts[i].remote_mta);
	free(m->rcpts[i].diag);
    }
    free(m->rcpts);
    free(m->sender);
    free(m->envid);
    free(m->client_name);
    free(m->client_addr);
    free(m->helo);
    free(m->message_id);
    free(m->content);
    free(m);
}

static QMSG *build_all(const CONFIG *cf, const QMSG *m, int kind)
{
    int     idx[8];
    int     i;

    for (i = 0; i < m->nrcpt && i < 8; i++)
	idx[i] = i;
    return bounce_build(cf, m, idx, i, kind, T1_NOW);
}

/* Value of a top-level header, unfolded (static buffer). */
static const char *hdr(const char *content, const char *name)
{
    static char val[2048];
    size_t  nlen = strlen(name);
    const char *p = content;

    while (*p && !(p[0] == '\r' && p[1] == '\n')) {
	const char *eol = strstr(p, "\r\n");

	if (eol == NULL)
	    break;
	if (strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
	    size_t  n = 0;
	    const char *s = p + nlen + 1;

	    while (*s == ' ')
		s++;
	    for (;;) {
		while (s < eol && n < sizeof(val) - 1)
		    val[n++] = *s++;
		if (eol[2] == ' ' || eol[2] == '\t') {
		    s = eol + 2;
		    eol = strstr(s, "\r\n");
		    if (eol == NULL)
			break;
		    continue;
		}
		break;
	    }
	    val[n] = 0;
	    return val;
	}
	p = eol + 2;
    }
    return NULL;
}

/* The boundary, from the top-level Content-Type (static buffer). */
static const char *boundary_of(const char *content)
{
    static char b[256];
    const char *ct = hdr(content, "Content-Type");
    const char *s, *e;

    if (ct == NULL || (s = strstr(ct, "boundary=\"")) == NULL)
	return "";
    s += strlen("boundary=\"");
    if ((e = strchr(s, '"')) == NULL)
	return "";
    snprintf(b, sizeof(b), "%.*s", (int) (e - s), s);
    return b;
}

/*
 * Part n (1-based) of the notice: the text between the delimiter line
 * "--B" and the CRLF before the next delimiter (caller frees), or NULL.
 */
static char *part_of(const char *content, int n)
{
    char    delim[300];
    const char *p, *q;
    int     i;

    snprintf(delim, sizeof(delim), "\r\n--%s", boundary_of(content));
    p = content;
    for (i = 0; i < n; i++) {
	if ((p = strstr(p, delim)) == NULL)
	    return NULL;
	p += strlen(delim);
	if (strncmp(p, "--", 2) == 0)
	    return NULL;			/* the closing delimiter */
	if (strncmp(p, "\r\n", 2) != 0)
	    return NULL;
	p += 2;
    }
    if ((q = strstr(p, delim)) == NULL)
	return NULL;
    return xstrndup(p, (size_t) (q - p));
}

/* Number of parts, and whether the closing delimiter ends the message. */
static int parts_count(const char *content, int *closed)
{
    char    delim[300];
    const char *p = content;
    int     n = 0;

    snprintf(delim, sizeof(delim), "\r\n--%s", boundary_of(content));
    *closed = 0;
    while ((p = strstr(p, delim)) != NULL) {
	p += strlen(delim);
	if (strcmp(p, "--\r\n") == 0) {
	    *closed = 1;
	    break;
	}
	if (strncmp(p, "\r\n", 2) == 0)
	    n++;
    }
    return n;
}

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t  n = strlen(s), m = strlen(suffix);

    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Does s contain the exact line (CRLF-terminated)? */
static int has_line(const char *s, const char *line)
{
    char   *want = xasprintf("\r\n%s\r\n", line);
    int     found;

    found = strstr(s, want) != NULL || (strncmp(s, line, strlen(line)) == 0
		    && strncmp(s + strlen(line), "\r\n", 2) == 0);
    free(want);
    return found;
}

static int count_str(const char *s, const char *what)
{
    int     n = 0;

    while ((s = strstr(s, what)) != NULL) {
	n++;
	s += strlen(what);
    }
    return n;
}

/* 1 when every CR is followed by LF and every LF follows a CR. */
static int crlf_only(const char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
	if (s[i] == '\r' && (i + 1 >= len || s[i + 1] != '\n'))
	    return 0;
	if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
	    return 0;
    }
    return 1;
}

/* Longest line, in characters without CRLF. */
static size_t longest_line(const char *s)
{
    size_t  max = 0;

    while (*s) {
	const char *eol = strstr(s, "\r\n");
	size_t  n = eol ? (size_t) (eol - s) : strlen(s);

	if (n > max)
	    max = n;
	s += n + (eol ? 2 : 0);
    }
    return max;
}

static char *read_file_all(const char *path)
{
    FILE   *fp = fopen(path, "rb");
    BUF     b = BUF_INIT;
    char    chunk[4096];
    size_t  n;

    if (fp == NULL)
	return NULL;
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
	buf_append(&b, chunk, n);
    fclose(fp);
    return buf_steal(&b);
}

/* ------------------------------------------------------------------ tests */

static const RCPT_FIX t1_rcpt[] = {
    {"rcpt@dest.test", "rfc822;rcpt@dest.test", 0, "4.4.1",
	"connect to 127.0.0.1[127.0.0.1]:10099: Connection refused", NULL, NULL},
};

/* T1: expiry of a message whose next hop refused connections. */
static void test_t1_expired_structure(void)
{
    CONFIG *cf = cf_make("50000", "5d", "0h");
    QMSG   *m = msg_make("46312102006", "sender@sender.test", T1_CONTENT, t1_rcpt, 1);
    QMSG   *n = build_all(cf, m, BOUNCE_FAILED);
    char   *p1, *p2, *p3;
    int     closed;

    T_CHECK(n != NULL);
    if (n == NULL)
	goto out;

    /* Envelope and queue fields. */
    T_EQ_STR(n->sender, "");
    T_EQ_INT(n->nrcpt, 1);
    T_EQ_STR(n->rcpts[0].addr, "sender@sender.test");
    T_EQ_STR(n->rcpts[0].orcpt, "rfc822;sender@sender.test");
    T_EQ_INT(n->rcpts[0].notify, 0);
    T_EQ_INT(n->rcpts[0].state, QRCPT_PENDING);
    T_EQ_INT(n->state, QSTATE_INCOMING);
    T_CHECK(n->flags & QFLAG_BOUNCE);
    T_EQ_INT(n->create_time, T1_NOW);
    T_EQ_INT(n->arrival_us, T1_NOW * 1000000);
    T_EQ_INT(n->size, strlen(n->content));
    T_EQ_STR(n->qid, "");
    T_CHECK(n->envid == NULL);
    T_EQ_INT(n->ret, QRET_NONE);

    /* Top-level header. */
    T_CHECK(hdr(n->content, "Received") == NULL);
    T_EQ_STR(hdr(n->content, "Date"), "Fri, 27 Nov 2026 21:15:24 +0000 (UTC)");
    T_EQ_STR(hdr(n->content, "From"), "Mail Delivery System <MAILER-DAEMON@mta.sem.test>");
    T_EQ_STR(hdr(n->content, "Subject"), "Undelivered Mail Returned to Sender");
    T_EQ_STR(hdr(n->content, "To"), "sender@sender.test");
    T_EQ_STR(hdr(n->content, "Auto-Submitted"), "auto-replied");
    T_EQ_STR(hdr(n->content, "MIME-Version"), "1.0");
    T_CHECK(strstr(n->content, "Content-Type: multipart/report; report-type=delivery-status;\r\n"
		   "\tboundary=\"46312102006.1795814124/mta.sem.test\"\r\n") != NULL);
    T_EQ_STR(boundary_of(n->content), "46312102006.1795814124/mta.sem.test");
    T_CHECK(strncmp(hdr(n->content, "Message-Id"), "<20261127211524.46312102006.", 28) == 0);
    T_EQ_STR(hdr(n->content, "Message-Id"), n->message_id);
    T_CHECK(strstr(n->message_id, "@mta.sem.test>") != NULL);

    /* Three parts and the closing delimiter at the very end. */
    T_EQ_INT(parts_count(n->content, &closed), 3);
    T_CHECK(closed);
    T_CHECK(strstr(n->content, "\r\n--46312102006.1795814124/mta.sem.test--\r\n") != NULL);

    p1 = part_of(n->content, 1);
    p2 = part_of(n->content, 2);
    p3 = part_of(n->content, 3);
    T_CHECK(p1 && p2 && p3);
    if (p1 && p2 && p3) {
	T_CHECK(starts_with(p1, "Content-Description: Notification\r\n"
			    "Content-Type: text/plain; charset=us-ascii\r\n\r\n"));
	T_CHECK(has_line(p1, "<rcpt@dest.test>: connect to 127.0.0.1[127.0.0.1]:10099: Connection refused"));
	T_CHECK(strstr(p1, "mta.sem.test") != NULL);

	T_CHECK(strcmp(p2,
		       "Content-Description: Delivery report\r\n"
		       "Content-Type: message/delivery-status\r\n"
		       "\r\n"
		       "Reporting-MTA: dns; mta.sem.test\r\n"
		       "X-Relayq-Queue-ID: 46312102006\r\n"
		       "X-Relayq-Sender: rfc822; sender@sender.test\r\n"
		       "Arrival-Date: Fri, 27 Nov 2026 21:12:07 +0000 (UTC)\r\n"
		       "\r\n"
		       "Final-Recipient: rfc822; rcpt@dest.test\r\n"
		       "Original-Recipient: rfc822;rcpt@dest.test\r\n"
		       "Action: failed\r\n"
		       "Status: 4.4.1\r\n"
		       "Diagnostic-Code: X-Relayq; connect to 127.0.0.1[127.0.0.1]:10099: Connection\r\n"
		       "    refused\r\n") == 0);
	if (strstr(p2, "Original-Recipient") == NULL || strstr(p2, "    refused") == NULL)
	    T_FAILF("part 2 was:\n%s", p2);

	T_CHECK(strcmp(p3, "Content-Description: Undelivered Message\r\n"
		       "Content-Type: message/rfc822\r\n"
		       "\r\n"
		       "Return-Path: <sender@sender.test>\r\n" T1_CONTENT) == 0);
    }
    T_CHECK(crlf_only(n->content, strlen(n->content)));
    free(p1);
    free(p2);
    free(p3);
out:
    msg_free(n);
    msg_free(m);
    config_free(cf);
}

/* The whole T1 notice against the reviewed copy in the fixtures. */
static void test_t1_expired_golden(void)
{
    CONFIG *cf = cf_make("50000", "5d", "0h");
    QMSG   *m = msg_make("46312102006", "sender@sender.test", T1_CONTENT, t1_rcpt, 1);
    QMSG   *n = build_all(cf, m, BOUNCE_FAILED);
    char    path[1200];
    char   *want, *got, *mid;

    snprintf(path, sizeof(path), "%s/t1-expired.eml", FIXDIR_FROM(__FILE__));
    want = read_file_all(path);
    T_CHECK(want != NULL);
    T_CHECK(n != NULL);
    if (want && n) {
	/* The Message-Id's counter depends on test order: normalise it. */
	got = xstrdup(n->content);
	if ((mid = strstr(got, "Message-Id: <20261127211524.46312102006.")) != NULL) {
	    char   *at = strchr(mid, '@');

	    if (at)
		memmove(mid + 40, at, strlen(at) + 1);
	}
	if (strcmp(got, want) != 0)
	    T_FAILF("notice differs from %s; got:\n%s", path, got);
	free(got);
    }
    free(want);
    msg_free(n);
    msg_free(m);
    config_free(cf);
}

/* T4: the next hop replied; its reply is the Diagnostic-Code. */
static void test_t4_remote_reply(void)
{
    static const RCPT_FIX r[] = {
	{"slow@dest.test", "rfc822;slow@dest.test", 0, "4.3.2",
	    "host 127.0.0.1[127.0.0.1] refused to talk to me: 421 4.3.2 slow421 test peer: service not available",
	    "127.0.0.1", "421 4.3.2 slow421 test peer: service not available"},
    };
    CONFIG *cf = cf_make("50000", "5d", "0h");
    QMSG   *m = msg_make("DA99C10203B", "sender@sender.test", T1_CONTENT, r, 1);
    QMSG   *n = build_all(cf, m, BOUNCE_FAILED);
    char   *p1 = n ? part_of(n->content, 1) : NULL;
    char   *p2 = n ? part_of(n->content, 2) : NULL;

    T_CHECK(p1 && p2);
    if (p1 && p2) {
	/* Wrapped exactly where Postfix wrapped it in the T4 trace. */
	T_CHECK(strstr(p1, "\r\n<slow@dest.test>: host 127.0.0.1[127.0.0.1] refused to talk to me: 421 4.3.2\r\n"
		       "    slow421 test peer: service not available\r\n") != NULL);
	T_CHECK(strstr(p2, "\r\nStatus: 4.3.2\r\n"
		       "Remote-MTA: dns; 127.0.0.1\r\n"
		       "Diagnostic-Code: smtp; 421 4.3.2 slow421 test peer: service not available\r\n") != NULL);
	T_CHECK(strstr(p2, "X-Relayq;") == NULL);
	T_EQ_STR(hdr(n->content, "Subject"), "Undelivered Mail Returned to Sender");
    }
    free(p1);
    free(p2);
    msg_free(n);
    msg_free(m);
    config_free(cf);
}

/* Three recipients: ORCPT or not, remote reply or not, long reply; ENVID. */
static const RCPT_FIX three[] = {
    {"a@dest.test", "rfc822;A@Dest.Test", 0, "5.1.1",
	"host mx.dest.test[192.0.2.1] said: 550 5.1.1 <a@dest.test>: Recipient address rejected: User unknown in virtual mailbox table (in reply to RCPT TO command)",
	"mx.dest.test",
    "550 5.1.1 <a@dest.test>: Recipient address rejected: User unknown in virtual mailbox table"},
    {"b@other.test", NULL, QNOTIFY_FAILURE, "5.4.4",
    "Host or domain name not found. Name service error for name=other.test type=MX: Host not found", NULL, NULL},
    {"c@dest.test", NULL, QNOTIFY_FAILURE | QNOTIFY_DELAY, "5.7.1",
	"host mx.dest.test[192.0.2.1] said: 554 5.7.1 rejected (in reply to end of DATA command)",
    "mx.dest.test", "554 5.7.1 rejected"},
};

static void test_three_recipients(void)
{
    CONFIG *cf = cf_make("50000", "5d", "0h");
    QMSG   *m = msg_make("1A2B3C4D5E", "sender@sender.test", T1_CONTENT, three, 3);
    QMSG   *n;
    char   *p1 = NULL, *p2 = NULL;
    const char *a, *b, *c;

    m->envid = xstrdup("QQ314159");
    n = build_all(cf, m, BOUNCE_FAILED);
    T_CHECK(n != NULL);
    if (n == NULL)
	goto out;
    p1 = part_of(n->content, 1);
    p2 = part_of(n->content, 2);
    T_CHECK(p1 && p2);
    if (!p1 || !p2)
	goto out;

    /* Text: each recipient with its reason, wrapped, in the given order. */
    a = strstr(p1, "\r\n<a@dest.test>: host mx.dest.test[192.0.2.1] said: 550 5.1.1 <a@dest.test>:\r\n"
	       "    Recipient address rejected: User unknown in virtual mailbox table (in reply\r\n"
	       "    to RCPT TO command)\r\n");
    b = strstr(p1, "\r\n<b@other.test>: Host or domain name not found. Name service error for\r\n"
	       "    name=other.test type=MX: Host not found\r\n");
    c = strstr(p1, "\r\n<c@dest.test>: host mx.dest.test[192.0.2.1] said: 554 5.7.1 rejected (in reply\r\n"
	       "    to end of DATA command)\r\n");
    T_CHECK(a && b && c);
    T_CHECK(a < b && b < c);

    /* Report: per-message fields, then three groups. */
    T_CHECK(strstr(p2, "\r\nReporting-MTA: dns; mta.sem.test\r\n"
		   "X-Relayq-Queue-ID: 1A2B3C4D5E\r\n"
		   "X-Relayq-Sender: rfc822; sender@sender.test\r\n"
		   "Arrival-Date: Fri, 27 Nov 2026 21:12:07 +0000 (UTC)\r\n"
		   "Original-Envelope-Id: QQ314159\r\n\r\n") != NULL);
    T_EQ_INT(count_str(p2, "Final-Recipient: "), 3);
    T_EQ_INT(count_str(p2, "Action: failed\r\n"), 3);
    T_EQ_INT(count_str(p2, "Original-Recipient: "), 1);
    T_CHECK(strstr(p2, "\r\n\r\nFinal-Recipient: rfc822; a@dest.test\r\n"
		   "Original-Recipient: rfc822;A@Dest.Test\r\n"
		   "Action: failed\r\n"
		   "Status: 5.1.1\r\n"
		   "Remote-MTA: dns; mx.dest.test\r\n"
		   "Diagnostic-Code: smtp; 550 5.1.1 <a@dest.test>: Recipient address rejected:\r\n"
		   "    User unknown in virtual mailbox table\r\n") != NULL);
    T_CHECK(strstr(p2, "\r\n\r\nFinal-Recipient: rfc822; b@other.test\r\n"
		   "Action: failed\r\n"
		   "Status: 5.4.4\r\n"
		   "Diagnostic-Code: X-Relayq; Host or domain name not found. Name service error\r\n"
		   "    for name=other.test type=MX: Host not found\r\n") != NULL);
    T_CHECK(strstr(p2, "\r\n\r\nFinal-Recipient: rfc822; c@dest.test\r\n"
		   "Action: failed\r\n"
		   "Status: 5.7.1\r\n"
		   "Remote-MTA: dns; mx.dest.test\r\n"
		   "Diagnostic-Code: smtp; 554 5.7.1 rejected\r\n") != NULL);
    T_CHECK(longest_line(p2) <= 79);
    T_CHECK(longest_line(p1) <= 79);
out:
    free(p1);
    free(p2);
    msg_free(n);
    msg_free(m);
    config_free(cf);
}

/* Only the listed recipients, each once; bad indices are ignored. */
static void test_recipient_subset(void)
{
    CONFIG *cf = cf_make("50000", "5d", "0h");
    QMSG   *m = msg_make("1A2B3C4D5E", "sender@sender.test", T1_CONTENT, three, 3);
    int     idx[] = {2, -1, 0, 7, 2};
    QMSG   *n = bounce_build(cf, m, idx, 5, BOUNCE_FAILED, T1_NOW);
    char   *p2 = n ? part_of(n->content, 2) : NULL;

    T_CHECK(p2 != NULL);
    if (p2) {
	const char *c = strstr(p2, "Final-Recipient: rfc822; c@dest.test\r\n");
	const char *a = strstr(p2, "Final-Recipient: rfc822; a@dest.test\r\n");

	T_EQ_INT(count_str(p2, "Final-Recipient: "), 2);
	T_CHECK(strstr(p2, "b@other.test") == NULL);
	T_CHECK(c && a && c < a);		/* the caller's order */
	T_CHECK(strstr(n->content, "<b@other.test>") == NULL);
    }
    free(p2);
    msg_free(n);
    msg_free(m);
    config_free(cf);
}

/* What goes back as part 3: RET, bounce_size_limit, kind. */
static void test_part3_kind(void)
{
    static const struct {
	const char *name;
	const char *size_limit;
	int     ret;
	int     kind;
	int     full;
    }       cases[] = {
	{"default RET, small", "50000", QRET_NONE, BOUNCE_FAILED, 1},
	{"RET=FULL, small", "50000", QRET_FULL, BOUNCE_FAILED, 1},
	{"RET=HDRS", "50000", QRET_HDRS, BOUNCE_FAILED, 0},
	{"size == limit", "", QRET_NONE, BOUNCE_FAILED, 1},
	{"size > limit", "-1", QRET_NONE, BOUNCE_FAILED, 0},
	{"RET=FULL, size > limit", "-1", QRET_FULL, BOUNCE_FAILED, 0},
	/* Issue 14: the headers alone are capped too, at the last whole line. */
	{"headers > limit", "100", QRET_NONE, BOUNCE_FAILED, 2},
	{"delay warning", "50000", QRET_FULL, BOUNCE_DELAYED, 0},
	{"relayed notice", "50000", QRET_FULL, BOUNCE_RELAYED, 0},
    };
    static const RCPT_FIX r[] = {
	{"rcpt@dest.test", NULL, QNOTIFY_SUCCESS | QNOTIFY_FAILURE | QNOTIFY_DELAY, "5.1.1",
	"said no", NULL, NULL},
    };
    size_t  i;
    char    exact[32], less[32];

    snprintf(exact, sizeof(exact), "%zu", strlen(T1_CONTENT));
    snprintf(less, sizeof(less), "%zu", strlen(T1_CONTENT) - 1);
    for (i = 0; i < ARRAY_LEN(cases); i++) {
	CONFIG *cf = cf_make(cases[i].size_limit[0] == 0 ? exact : strcmp(cases[i].size_limit, "-1") == 0 ? less
			     : cases[i].size_limit, "5d", "0h");
	QMSG   *m = msg_make("46312102006", "sender@sender.test", T1_CONTENT, r, 1);
	QMSG   *n;
	char   *p3;

	m->ret = cases[i].ret;
	n = build_all(cf, m, cases[i].kind);
	p3 = n ? part_of(n->content, 3) : NULL;
	if (p3 == NULL) {
	    T_FAILF("%s: no part 3", cases[i].name);
	} else if (cases[i].full == 2) {
	    if (strcmp(p3, "Content-Description: Undelivered Message Headers\r\n"
		       "Content-Type: text/rfc822-headers\r\n\r\n"
		       "Return-Path: <sender@sender.test>\r\n"
		       "Received: from client.sem.test (localhost [127.0.0.1])\r\n") != 0)
		T_FAILF("%s: part 3 is not the capped headers:\n%s", cases[i].name, p3);
	} else if (cases[i].full) {
	    if (strcmp(p3, "Content-Description: Undelivered Message\r\n"
		       "Content-Type: message/rfc822\r\n\r\n"
		       "Return-Path: <sender@sender.test>\r\n" T1_CONTENT) != 0)
		T_FAILF("%s: part 3 is not the whole message:\n%s", cases[i].name, p3);
	} else {
	    if (strcmp(p3, "Content-Description: Undelivered Message Headers\r\n"
		       "Content-Type: text/rfc822-headers\r\n\r\n" T1_HEADERS_ONLY) != 0)
		T_FAILF("%s: part 3 is not the headers:\n%s", cases[i].name, p3);
	}
	free(p3);
	msg_free(n);
	msg_free(m);
	config_free(cf);
    }
}

/* T2: delay warning. */
static void test_delay_warning(void)
{
    static const RCPT_FIX r[] = {
	{"rcptA@dest.test", "rfc822;rcptA@dest.test", 0, "4.4.1",
	"connect to 127.0.0.1[127.0.0.1]:10099: Connection refused", NULL, NULL},
    };
    CONFIG *cf = cf_make("50000", "4m", "7h");
    QMSG   *m = msg_make("0143F10202C", "sender@sender.test", T1_CONTENT, r, 1);
    QMSG   *n = build_all(cf, m, BOUNCE_DELAYED);
    char   *p1 = n ? part_of(n->content, 1) : NULL;
    char   *p2 = n ? part_of(n->content, 2) : NULL;
    char   *p3 = n ? part_of(n->content, 3) : NULL;

    T_CHECK(p1 && p2 && p3);
    if (p1 && p2 && p3) {
	T_EQ_STR(hdr(n->content, "Subject"), "Delayed Mail (still being retried)");
	T_CHECK(strstr(p1, "7 hour(s)") != NULL);
	/* Retried until arrival + maximal_queue_lifetime (21:12:07 + 4m). */
	T_CHECK(strstr(p1, "Fri, 27 Nov 2026 21:16:07 +0000 (UTC)") != NULL);
	T_CHECK(has_line(p1, "<rcptA@dest.test>: connect to 127.0.0.1[127.0.0.1]:10099: Connection refused"));
	T_CHECK(strstr(p2, "\r\n\r\nFinal-Recipient: rfc822; rcptA@dest.test\r\n"
		       "Original-Recipient: rfc822;rcptA@dest.test\r\n"
		       "Action: delayed\r\n"
		       "Status: 4.4.1\r\n"
		       "Diagnostic-Code: X-Relayq; connect to 127.0.0.1[127.0.0.1]:10099: Connection\r\n"
		       "    refused\r\n"
		       "Will-Retry-Until: Fri, 27 Nov 2026 21:16:07 +0000 (UTC)\r\n") != NULL);
	T_CHECK(starts_with(p3, "Content-Description: Undelivered Message Headers\r\n"
			    "Content-Type: text/rfc822-headers\r\n\r\n"));
	T_CHECK(strstr(p3, "T1 body") == NULL);
    }
    free(p1);
    free(p2);
    free(p3);
    msg_free(n);
    msg_free(m);
    config_free(cf);

    /* Hours by integer division, as Postfix: 90 minutes is "1 hour(s)". */
    cf = cf_make("50000", "5d", "90m");
    m = msg_make("0143F10202C", "sender@sender.test", T1_CONTENT, r, 1);
    n = build_all(cf, m, BOUNCE_DELAYED);
    p1 = n ? part_of(n->content, 1) : NULL;
    T_CHECK(p1 && strstr(p1, " 1 hour(s)") != NULL);
    /* 5 days after Fri 21:12:07. */
    T_CHECK(p1 && strstr(p1, "Wed, 02 Dec 2026 21:12:07 +0000 (UTC)") != NULL);
    free(p1);
    msg_free(n);
    msg_free(m);
    config_free(cf);
}

/* NOTIFY=SUCCESS to a hop without DSN: "relayed" notice. */
static void test_relayed(void)
{
    static const RCPT_FIX r[] = {
	{"ok@dest.test", "rfc822;ok@dest.test", QNOTIFY_SUCCESS, "2.0.0",
	    "delivered via mx.dest.test[192.0.2.1]:25: 250 2.0.0 Ok: queued as 4F2",
	"mx.dest.test", "250 2.0.0 Ok: queued as 4F2"},
	{"quiet@dest.test", NULL, 0, "2.0.0", "delivered", "mx.dest.test", "250 ok"},
	{"odd@dest.test", NULL, QNOTIFY_SUCCESS | QNOTIFY_FAILURE, "", NULL, NULL, NULL},
    };
    CONFIG *cf = cf_make("50000", "5d", "0h");
    QMSG   *m = msg_make("ABCDEF0123", "sender@sender.test", T1_CONTENT, r, 3);
    QMSG   *n = build_all(cf, m, BOUNCE_RELAYED);
    char   *p2 = n ? part_of(n->content, 2) : NULL;
    char   *p3 = n ? part_of(n->content, 3) : NULL;

    T_CHECK(p2 && p3);
    if (p2 && p3) {
	T_EQ_STR(hdr(n->content, "Subject"), "Successful Mail Delivery Report");
	T_EQ_INT(count_str(p2, "Final-Recipient: "), 2);	/* not quiet@ */
	T_CHECK(strstr(p2, "quiet@dest.test") == NULL);
	T_CHECK(strstr(p2, "\r\n\r\nFinal-Recipient: rfc822; ok@dest.test\r\n"
		       "Original-Recipient: rfc822;ok@dest.test\r\n"
		       "Action: relayed\r\n"
		       "Status: 2.0.0\r\n"
		       "Remote-MTA: dns; mx.dest.test\r\n"
		       "Diagnostic-Code: smtp; 250 2.0.0 Ok: queued as 4F2\r\n") != NULL);
	/* No status recorded: 2.0.0; no reason: no Diagnostic-Code. */
	T_CHECK(ends_with(p2, "\r\n\r\nFinal-Recipient: rfc822; odd@dest.test\r\n"
			  "Action: relayed\r\n"
			  "Status: 2.0.0\r\n"));
	T_CHECK(strstr(p3, "Content-Type: text/rfc822-headers\r\n") != NULL);
    }
    free(p2);
    free(p3);
    msg_free(n);
    msg_free(m);
    config_free(cf);
}

/* Which NOTIFY values get which notice. */
static void test_notify_rules(void)
{
    static const struct {
	int     notify;
	int     failed, delayed, relayed;
    }       cases[] = {
	{0, 1, 1, 0},				/* not given: FAILURE,DELAY */
	{QNOTIFY_NEVER, 0, 0, 0},
	{QNOTIFY_FAILURE, 1, 0, 0},
	{QNOTIFY_DELAY, 0, 1, 0},
	{QNOTIFY_SUCCESS, 0, 0, 1},
	{QNOTIFY_SUCCESS | QNOTIFY_DELAY, 0, 1, 1},
	{QNOTIFY_FAILURE | QNOTIFY_DELAY | QNOTIFY_SUCCESS, 1, 1, 1},
	{QNOTIFY_NEVER | QNOTIFY_FAILURE, 0, 0, 0},	/* NEVER wins */
    };
    CONFIG *cf = cf_make("50000", "5d", "4h");
    size_t  i;

    for (i = 0; i < ARRAY_LEN(cases); i++) {
	RCPT_FIX r[] = {{"x@dest.test", NULL, cases[i].notify, "4.4.1", "down", NULL, NULL}};
	QMSG   *m = msg_make("46312102006", "sender@sender.test", T1_CONTENT, r, 1);
	QMSG   *f = build_all(cf, m, BOUNCE_FAILED);
	QMSG   *d = build_all(cf, m, BOUNCE_DELAYED);
	QMSG   *s = build_all(cf, m, BOUNCE_RELAYED);

	if ((f != NULL) != cases[i].failed || (d != NULL) != cases[i].delayed
	    || (s != NULL) != cases[i].relayed)
	    T_FAILF("notify 0x%x: failed/delayed/relayed = %d/%d/%d, expected %d/%d/%d",
		    cases[i].notify, f != NULL, d != NULL, s != NULL,
		    cases[i].failed, cases[i].delayed, cases[i].relayed);
	msg_free(f);
	msg_free(d);
	msg_free(s);
	msg_free(m);
    }

    /* Mixed: only the recipients that asked are in the notice. */
    {
	RCPT_FIX r[] = {
	    {"never@dest.test", NULL, QNOTIFY_NEVER, "5.0.0", "no", NULL, NULL},
	    {"yes@dest.test", NULL, QNOTIFY_FAILURE, "5.0.0", "no", NULL, NULL},
	    {"succ@dest.test", NULL, QNOTIFY_SUCCESS, "5.0.0", "no", NULL, NULL},
	};
	QMSG   *m = msg_make("46312102006", "sender@sender.test", T1_CONTENT, r, 3);
	QMSG   *n = build_all(cf, m, BOUNCE_FAILED);

	T_CHECK(n != NULL);
	if (n) {
	    T_EQ_INT(count_str(n->content, "Final-Recipient: "), 1);
	    T_CHECK(strstr(n->content, "Final-Recipient: rfc822; yes@dest.test\r\n") != NULL);
	    T_CHECK(strstr(n->content, "never@dest.test") == NULL);
	    T_CHECK(strstr(n->content, "succ@dest.test") == NULL);
	}
	msg_free(n);
	msg_free(m);
    }
    config_free(cf);
}

/* Never bounce a bounce; nothing to report gives no notice. */
static void test_no_notice(void)
{
    CONFIG *cf = cf_make("50000", "5d", "4h");
    QMSG   *m = msg_make("46312102006", "", T1_CONTENT, t1_rcpt, 1);
    int     idx[] = {0};

    T_CHECK(bounce_build(cf, m, idx, 1, BOUNCE_FAILED, T1_NOW) == NULL);
    T_CHECK(bounce_build(cf, m, idx, 1, BOUNCE_DELAYED, T1_NOW) == NULL);
    msg_free(m);

    m = msg_make("46312102006", "sender@sender.test", T1_CONTENT, t1_rcpt, 1);
    T_CHECK(bounce_build(cf, m, idx, 0, BOUNCE_FAILED, T1_NOW) == NULL);
    T_CHECK(bounce_build(cf, m, NULL, 1, BOUNCE_FAILED, T1_NOW) == NULL);
    idx[0] = 5;
    T_CHECK(bounce_build(cf, m, idx, 1, BOUNCE_FAILED, T1_NOW) == NULL);
    idx[0] = 0;
    T_CHECK(bounce_build(cf, m, idx, 1, 0, T1_NOW) == NULL);
    msg_free(m);
    config_free(cf);
}

/* bounce_wrap(): widths, long words, prefix kept whole, control chars. */
static void test_wrap(void)
{
    static const struct {
	const char *prefix;
	const char *text;
	const char *want;
	int     lines;
    }       cases[] = {
	{"A: ", "short", "A: short\r\n", 1},
	{"", "", "\r\n", 1},
	/* 79 characters fit on one line, 80 do not. */
	{"P: ", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy",
	    "P: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n", 1},
	{"P: ", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy",
	    "P: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n    yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n", 2},
	/* A word longer than a line stays whole. */
	{"Diagnostic-Code: smtp; ",
	    "550 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa b",
	    "Diagnostic-Code: smtp; 550\r\n"
	    "    aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
	    "    b\r\n", 3},
	/* The prefix is never split, even when the first word is long. */
	{"Remote-MTA: dns; ",
	    "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh.test",
	    "Remote-MTA: dns;\r\n"
	    "    hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh.test\r\n", 2},
	/* CR, LF and TAB from a remote reply become spaces. */
	{"D: ", "550 a\r\n550 b\tc", "D: 550 a  550 b c\r\n", 1},
    };
    size_t  i;

    for (i = 0; i < ARRAY_LEN(cases); i++) {
	BUF     b = BUF_INIT;
	int     n = bounce_wrap(&b, cases[i].prefix, cases[i].text);

	if (b.data == NULL || strcmp(b.data, cases[i].want) != 0 || n != cases[i].lines)
	    T_FAILF("case %zu: got %d lines \"%s\", expected %d \"%s\"", i, n,
		    b.data ? b.data : "", cases[i].lines, cases[i].want);
	buf_free(&b);
    }

    /* A long text: every line within 79, rejoined it is the text again. */
    {
	const char *text = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "
	"tempor incididunt ut labore et dolore magna aliqua ut enim ad minim veniam quis "
	"nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat duis "
	"aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat";
	BUF     b = BUF_INIT;
	BUF     j = BUF_INIT;
	const char *p;
	int     n = bounce_wrap(&b, "X: ", text);

	T_CHECK(n >= 4);
	T_CHECK(longest_line(b.data) <= 79);
	for (p = b.data; *p;) {
	    const char *eol = strstr(p, "\r\n");

	    if (p != b.data) {
		T_CHECK(strncmp(p, "    ", 4) == 0 && p[4] != ' ');
		buf_putc(&j, ' ');
		p += 4;
	    }
	    buf_append(&j, p, (size_t) (eol - p));
	    p = eol + 2;
	}
	T_CHECK(j.data && strncmp(j.data, "X: ", 3) == 0 && strcmp(j.data + 3, text) == 0);
	buf_free(&b);
	buf_free(&j);
    }
}

/* The original's bare LF/CR and a missing final newline do not leak. */
static void test_crlf_everywhere(void)
{
    CONFIG *cf = cf_make("50000", "5d", "3h");
    QMSG   *m = msg_make("46312102006", "sender@sender.test",
			 "Subject: bare\nFrom: a@b\r\n\r\nline one\nline two\rline three", t1_rcpt, 1);
    int     kinds[] = {BOUNCE_FAILED, BOUNCE_DELAYED};
    size_t  i;

    m->rcpts[0].notify = QNOTIFY_FAILURE | QNOTIFY_DELAY | QNOTIFY_SUCCESS;
    for (i = 0; i < ARRAY_LEN(kinds); i++) {
	QMSG   *n = build_all(cf, m, kinds[i]);
	char   *p3 = n ? part_of(n->content, 3) : NULL;

	T_CHECK(n && crlf_only(n->content, n->size));
	T_CHECK(p3 != NULL);
	if (p3 && kinds[i] == BOUNCE_FAILED)
	    T_CHECK(strstr(p3, "\r\n\r\nReturn-Path: <sender@sender.test>\r\nSubject: bare\r\n"
			   "From: a@b\r\n\r\nline one\r\nline two\r\nline three\r\n") != NULL);
	if (p3 && kinds[i] == BOUNCE_DELAYED)
	    T_CHECK(ends_with(p3, "\r\n\r\nReturn-Path: <sender@sender.test>\r\nSubject: bare\r\n"
			      "From: a@b\r\n"));
	free(p3);
	msg_free(n);
    }
    msg_free(m);
    config_free(cf);
}

/* Message-Ids differ for notices built in the same second. */
static void test_unique_message_id(void)
{
    CONFIG *cf = cf_make("50000", "5d", "3h");
    QMSG   *m = msg_make("46312102006", "sender@sender.test", T1_CONTENT, t1_rcpt, 1);
    QMSG   *a = build_all(cf, m, BOUNCE_DELAYED);
    QMSG   *b = build_all(cf, m, BOUNCE_FAILED);

    T_CHECK(a && b);
    if (a && b) {
	T_CHECK(strcmp(a->message_id, b->message_id) != 0);
	T_CHECK(a->message_id[0] == '<' && a->message_id[strlen(a->message_id) - 1] == '>');
    }
    msg_free(a);
    msg_free(b);
    msg_free(m);
    config_free(cf);
}

/* A returned message that contains the boundary gets another boundary. */
static void test_boundary_collision(void)
{
    CONFIG *cf = cf_make("50000", "5d", "3h");
    QMSG   *m = msg_make("46312102006", "sender@sender.test",
			 "Subject: tricky\r\n\r\n--46312102006.1795814124/mta.sem.test--\r\n",
			 t1_rcpt, 1);
    QMSG   *n = build_all(cf, m, BOUNCE_FAILED);
    int     closed;

    T_CHECK(n != NULL);
    if (n) {
	const char *b = boundary_of(n->content);

	T_CHECK(strcmp(b, "46312102006.1795814124/mta.sem.test") != 0);
	T_CHECK(strncmp(b, "46312102006.1795814124", 22) == 0);
	T_EQ_INT(parts_count(n->content, &closed), 3);
	T_CHECK(closed);
    }
    msg_free(n);
    msg_free(m);
    config_free(cf);
}

/* Flags: 8-bit text in the notice needs 8BITMIME; SMTPUTF8 is carried. */
static void test_flags_and_no_content(void)
{
    CONFIG *cf = cf_make("50000", "5d", "3h");
    QMSG   *m = msg_make("46312102006", "sender@sender.test",
			 "Subject: caf\xc3\xa9\r\n\r\nbody\r\n", t1_rcpt, 1);
    QMSG   *n = build_all(cf, m, BOUNCE_FAILED);
    int     closed;

    T_CHECK(n && (n->flags & QFLAG_8BITMIME) && !(n->flags & QFLAG_SMTPUTF8));
    msg_free(n);
    m->flags |= QFLAG_SMTPUTF8;
    n = build_all(cf, m, BOUNCE_FAILED);
    T_CHECK(n && (n->flags & QFLAG_SMTPUTF8));
    msg_free(n);
    msg_free(m);

    m = msg_make("46312102006", "sender@sender.test", T1_CONTENT, t1_rcpt, 1);
    n = build_all(cf, m, BOUNCE_FAILED);
    T_CHECK(n && n->flags == QFLAG_BOUNCE);
    msg_free(n);

    /* Content not loaded: the report goes without part 3 (RFC 3462). */
    free(m->content);
    m->content = NULL;
    n = build_all(cf, m, BOUNCE_FAILED);
    T_CHECK(n != NULL);
    if (n) {
	T_EQ_INT(parts_count(n->content, &closed), 2);
	T_CHECK(closed);
	T_CHECK(strstr(n->content, "Return-Path:") == NULL);
    }
    msg_free(n);
    msg_free(m);
    config_free(cf);
}

/*
 * A real MIME parser: write notices to files and let Python's email
 * package read them (tests/unit/fixtures/bounce/check_dsn.py prints a
 * summary of what it parsed, which must match what the notice says).
 */
static int run_checker(const char *script, const char *eml, char *out, size_t outlen)
{
    char   *cmd = xasprintf("python3 '%s' '%s' 2>&1", script, eml);
    FILE   *fp = popen(cmd, "r");
    size_t  n = 0;
    int     st;

    free(cmd);
    out[0] = 0;
    if (fp == NULL)
	return -1;
    n = fread(out, 1, outlen - 1, fp);
    out[n] = 0;
    st = pclose(fp);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_python_parses(void)
{
    static const struct {
	const char *name;
	int     kind;
	int     ret;
	const char *want;
    }       cases[] = {
	{"failed", BOUNCE_FAILED, QRET_NONE,
	    "type=multipart/report report-type=delivery-status parts=3\n"
	    "part1=text/plain part2=message/delivery-status part3=message/rfc822\n"
	    "reporting-mta=dns; mta.sem.test queue-id=1A2B3C4D5E envid=QQ314159\n"
	    "rcpt=rfc822; a@dest.test|rfc822;A@Dest.Test|failed|5.1.1|dns; mx.dest.test|smtp; 550 5.1.1 <a@dest.test>: Recipient address rejected: User unknown in virtual mailbox table|-\n"
	    "rcpt=rfc822; b@other.test|-|failed|5.4.4|-|X-Relayq; Host or domain name not found. Name service error for name=other.test type=MX: Host not found|-\n"
	    "rcpt=rfc822; c@dest.test|-|failed|5.7.1|dns; mx.dest.test|smtp; 554 5.7.1 rejected|-\n"
	"returned-subject=T1 retry trace\n"},
	{"failed-hdrs", BOUNCE_FAILED, QRET_HDRS,
	    "type=multipart/report report-type=delivery-status parts=3\n"
	    "part1=text/plain part2=message/delivery-status part3=text/rfc822-headers\n"
	    "reporting-mta=dns; mta.sem.test queue-id=1A2B3C4D5E envid=QQ314159\n"
	    "rcpt=rfc822; a@dest.test|rfc822;A@Dest.Test|failed|5.1.1|dns; mx.dest.test|smtp; 550 5.1.1 <a@dest.test>: Recipient address rejected: User unknown in virtual mailbox table|-\n"
	    "rcpt=rfc822; b@other.test|-|failed|5.4.4|-|X-Relayq; Host or domain name not found. Name service error for name=other.test type=MX: Host not found|-\n"
	    "rcpt=rfc822; c@dest.test|-|failed|5.7.1|dns; mx.dest.test|smtp; 554 5.7.1 rejected|-\n"
	"returned-subject=T1 retry trace\n"},
	{"delayed", BOUNCE_DELAYED, QRET_NONE,
	    "type=multipart/report report-type=delivery-status parts=3\n"
	    "part1=text/plain part2=message/delivery-status part3=text/rfc822-headers\n"
	    "reporting-mta=dns; mta.sem.test queue-id=1A2B3C4D5E envid=QQ314159\n"
	    "rcpt=rfc822; a@dest.test|rfc822;A@Dest.Test|delayed|5.1.1|dns; mx.dest.test|smtp; 550 5.1.1 <a@dest.test>: Recipient address rejected: User unknown in virtual mailbox table|Wed, 02 Dec 2026 21:12:07 +0000 (UTC)\n"
	    "rcpt=rfc822; c@dest.test|-|delayed|5.7.1|dns; mx.dest.test|smtp; 554 5.7.1 rejected|Wed, 02 Dec 2026 21:12:07 +0000 (UTC)\n"
	"returned-subject=T1 retry trace\n"},
    };
    char    script[1200], dir[] = "/tmp/test_bounce.XXXXXX";
    char    out[8192];
    size_t  i;

    if (system("python3 -c 'import email' >/dev/null 2>&1") != 0) {
	printf("(python3 not available: skipped) ");
	return;
    }
    snprintf(script, sizeof(script), "%s/check_dsn.py", FIXDIR_FROM(__FILE__));
    T_CHECK(access(script, R_OK) == 0);
    T_CHECK(mkdtemp(dir) != NULL);
    for (i = 0; i < ARRAY_LEN(cases); i++) {
	CONFIG *cf = cf_make("50000", "5d", "3h");
	QMSG   *m = msg_make("1A2B3C4D5E", "sender@sender.test", T1_CONTENT, three, 3);
	QMSG   *n;
	char   *eml;
	FILE   *fp;
	int     rc;

	m->envid = xstrdup("QQ314159");
	m->ret = cases[i].ret;
	n = build_all(cf, m, cases[i].kind);
	T_CHECK(n != NULL);
	if (n) {
	    eml = xasprintf("%s/%s.eml", dir, cases[i].name);
	    fp = fopen(eml, "wb");
	    T_CHECK(fp != NULL);
	    if (fp) {
		fwrite(n->content, 1, n->size, fp);
		fclose(fp);
		rc = run_checker(script, eml, out, sizeof(out));
		if (rc != 0 || strcmp(out, cases[i].want) != 0)
		    T_FAILF("%s: checker exit %d, said:\n%s\nexpected:\n%s", cases[i].name, rc,
			    out, cases[i].want);
		unlink(eml);
	    }
	    free(eml);
	}
	msg_free(n);
	msg_free(m);
	config_free(cf);
    }
    rmdir(dir);
}

int     main(void)
{
    setenv("TZ", "UTC", 1);
    tzset();

    T_RUN(test_t1_expired_structure);
    T_RUN(test_t1_expired_golden);
    T_RUN(test_t4_remote_reply);
    T_RUN(test_three_recipients);
    T_RUN(test_recipient_subset);
    T_RUN(test_part3_kind);
    T_RUN(test_delay_warning);
    T_RUN(test_relayed);
    T_RUN(test_notify_rules);
    T_RUN(test_no_notice);
    T_RUN(test_wrap);
    T_RUN(test_crlf_everywhere);
    T_RUN(test_unique_message_id);
    T_RUN(test_boundary_collision);
    T_RUN(test_flags_and_no_content);
    T_RUN(test_python_parses);
    return t_done();
}
