/*
 * test_cleanup - Received:, Message-Id:, Date: and header_size_limit rules
 * of cleanup_message().  Times are fixed and TZ is UTC so dates are exact.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "t.h"
#include "util/util.h"
#include "cleanup/cleanup.h"

/* 2026-11-27 21:12:07 UTC */
#define T0_US 1795813927000000LL

static CLEANUP_INFO base_info(void)
{
    CLEANUP_INFO ci;

    memset(&ci, 0, sizeof(ci));
    ci.myhostname = "mx.example.test";
    ci.qid = "46312102006";
    ci.helo = "client.test";
    ci.client_name = "localhost";
    ci.client_addr = "127.0.0.1";
    ci.protocol = "ESMTP";
    ci.arrival_us = T0_US;
    ci.add_received = 1;
    ci.header_size_limit = 102400;
    return (ci);
}

static char *run(CLEANUP_INFO *ci, const char *in, char **msgid)
{
    BUF     out = BUF_INIT;
    char    err[128];

    if (cleanup_message(ci, in, strlen(in), &out, msgid, err, sizeof(err)) < 0) {
	buf_free(&out);
	return (0);
    }
    return (buf_steal(&out));
}

static void test_received_one_rcpt(void)
{
    CLEANUP_INFO ci = base_info();
    char   *id, *out;

    ci.single_rcpt = "r@dest.test";
    out = run(&ci, "Message-Id: <x@y>\r\nDate: whenever\r\n\r\nbody\r\n", &id);
    T_EQ_STR(out, "Received: from client.test (localhost [127.0.0.1])\r\n"
	     "\tby mx.example.test (relayq) with ESMTP id 46312102006\r\n"
	     "\tfor <r@dest.test>; Fri, 27 Nov 2026 21:12:07 +0000 (UTC)\r\n"
	     "Message-Id: <x@y>\r\nDate: whenever\r\n\r\nbody\r\n");
    T_EQ_STR(id, "<x@y>");
    free(out);
    free(id);
}

static void test_received_many_rcpts_v6_esmtps(void)
{
    CLEANUP_INFO ci = base_info();
    char   *id, *out;

    ci.client_addr = "::1";
    ci.protocol = "ESMTPS";
    ci.helo = 0;
    out = run(&ci, "Message-ID:   <a@b>  \r\nDate: d\r\n\r\n", &id);
    T_EQ_STR(out, "Received: from localhost (localhost [IPv6:::1])\r\n"
	     "\tby mx.example.test (relayq) with ESMTPS id 46312102006;\r\n"
	     "\tFri, 27 Nov 2026 21:12:07 +0000 (UTC)\r\n"
	     "Message-ID:   <a@b>  \r\nDate: d\r\n\r\n");
    T_EQ_STR(id, "<a@b>");
    free(out);
    free(id);
}

static void test_received_local(void)
{
    CLEANUP_INFO ci = base_info();
    char   *id, *out;

    ci.protocol = 0;
    ci.client_addr = 0;
    ci.helo = 0;
    ci.local_user = "1000";
    out = run(&ci, "Subject: x\r\n\r\nb\r\n", &id);
    T_CHECK(out && strncmp(out, "Received: by mx.example.test (relayq, from userid 1000)\r\n"
			   "\tid 46312102006; Fri, 27 Nov 2026 21:12:07 +0000 (UTC)\r\n"
			   "Subject: x\r\n\r\nb\r\n", 200) == 0);
    T_EQ_STR(id, "");
    free(out);
    free(id);
}

static void test_add_missing_headers(void)
{
    CLEANUP_INFO ci = base_info();
    char   *id, *out;

    ci.add_received = 0;
    ci.rewrite_allowed = 1;
    out = run(&ci, "Subject: x\r\nFrom: a@b\r\n\r\nbody\r\n", &id);
    T_EQ_STR(out, "Subject: x\r\nFrom: a@b\r\n"
	     "Message-Id: <20261127211207.46312102006@mx.example.test>\r\n"
	     "Date: Fri, 27 Nov 2026 21:12:07 +0000 (UTC)\r\n\r\nbody\r\n");
    T_EQ_STR(id, "<20261127211207.46312102006@mx.example.test>");
    free(out);
    free(id);

    /* Not allowed: nothing added, and message-id=<> is what gets logged. */
    ci.rewrite_allowed = 0;
    out = run(&ci, "Subject: x\r\n\r\nbody\r\n", &id);
    T_EQ_STR(out, "Subject: x\r\n\r\nbody\r\n");
    T_EQ_STR(id, "");
    free(out);
    free(id);

    /* Only the missing one is added; case-insensitive names. */
    ci.rewrite_allowed = 1;
    out = run(&ci, "DATE: d\r\n\r\n", &id);
    T_EQ_STR(out, "DATE: d\r\nMessage-Id: <20261127211207.46312102006@mx.example.test>\r\n\r\n");
    free(out);
    free(id);
    out = run(&ci, "message-id: <m@n>\r\n\r\n", &id);
    T_EQ_STR(out, "message-id: <m@n>\r\nDate: Fri, 27 Nov 2026 21:12:07 +0000 (UTC)\r\n\r\n");
    T_EQ_STR(id, "<m@n>");
    free(out);
    free(id);
}

static void test_headers_and_body_edge_cases(void)
{
    CLEANUP_INFO ci = base_info();
    char   *id, *out;

    ci.add_received = 0;
    ci.rewrite_allowed = 1;
    /* Folded Message-Id: logged unfolded. */
    out = run(&ci, "Date: d\r\nMessage-Id:\r\n <folded@x>\r\n\r\nb\r\n", &id);
    T_EQ_STR(id, "<folded@x>");
    T_EQ_STR(out, "Date: d\r\nMessage-Id:\r\n <folded@x>\r\n\r\nb\r\n");
    free(out);
    free(id);
    /* No header at all: headers go before the body's first line. */
    out = run(&ci, "\r\nbody only\r\n", &id);
    T_CHECK(out && strncmp(out, "Message-Id: <", 13) == 0 && strstr(out, "(UTC)\r\n\r\nbody only\r\n"));
    free(out);
    free(id);
    /* A Message-Id: in the body is not a header. */
    out = run(&ci, "Date: d\r\n\r\nMessage-Id: <body@x>\r\n", &id);
    T_CHECK(strstr(out, "Message-Id: <2026") != 0);
    free(out);
    free(id);
    /* Header section ended by a text line: the empty line is inserted. */
    out = run(&ci, "Date: d\r\nMessage-Id: <a@b>\r\nhello\r\n", &id);
    T_EQ_STR(out, "Date: d\r\nMessage-Id: <a@b>\r\n\r\nhello\r\n");
    free(out);
    free(id);
    /* Body bytes are kept exactly (bare CR, NUL-free 8-bit, long lines). */
    out = run(&ci, "Date: d\r\nMessage-Id: <a@b>\r\n\r\na\rb\r\n\xc3\xa4\r\n", &id);
    T_EQ_STR(out, "Date: d\r\nMessage-Id: <a@b>\r\n\r\na\rb\r\n\xc3\xa4\r\n");
    free(out);
    free(id);
}

static void test_header_size_limit(void)
{
    CLEANUP_INFO ci = base_info();
    BUF     in = BUF_INIT;
    char   *id, *out;
    int     i;

    ci.add_received = 0;
    ci.header_size_limit = 100;
    buf_puts(&in, "Subject: ");
    for (i = 0; i < 30; i++)
	buf_puts(&in, "word word\r\n ");
    buf_puts(&in, "end\r\nDate: d\r\nMessage-Id: <a@b>\r\n\r\nbody\r\n");
    out = run(&ci, in.data, &id);
    T_CHECK(out != 0);
    if (out) {
	char   *date = strstr(out, "\r\nDate: d\r\n");

	/* The over-long Subject: is cut to the limit, the rest survives. */
	T_CHECK(date != 0);
	if (date)
	    T_CHECK((size_t) (date - out) + 2 <= 102);
	T_CHECK(strstr(out, "\r\n\r\nbody\r\n") != 0);
	T_EQ_STR(id, "<a@b>");
    }
    free(out);
    free(id);
    buf_free(&in);
}

/* Issue 14: nothing a client chooses can end a header line relayq builds. */
static void test_no_forged_header_lines(void)
{
    CLEANUP_INFO ci = base_info();
    char   *id, *out, *helo;

    helo = cleanup_helo_name("evil\rX-Forged: yes  two\tthree <a@b>;(\"q\")\x1b");
    T_EQ_STR(helo, "evil?X-Forged:?yes?two?three??a?b????q???");
    free(helo);
    helo = cleanup_helo_name("  host.example\xc3\xa9 ");
    T_EQ_STR(helo, "host.example??");
    free(helo);
    /* Even if a caller passes raw values, no CR or LF gets into Received:. */
    ci.helo = "a\rX-Forged: 1";
    ci.single_rcpt = "r@x\nX-Also: 2";
    out = run(&ci, "Subject: s\r\n\r\nb\r\n", &id);
    T_CHECK(out != 0);
    if (out) {
	T_CHECK(strstr(out, "from a?X-Forged: 1 (localhost") != 0);
	T_CHECK(strstr(out, "for <r@x?X-Also: 2>") != 0);
	T_CHECK(strstr(out, "\rX-") == 0 && strstr(out, "\nX-") == 0);
    }
    free(out);
    free(id);
}

/* Postfix's hop count: every Received: header, ours included. */
static void test_hop_count(void)
{
    CLEANUP_INFO ci = base_info();
    char   *id, *out;

    out = run(&ci, "Received: from a\r\nreceived: from b\r\n\tcontinued\r\nX-Received: no\r\n\r\n"
	      "Received: in the body\r\n", &id);
    T_EQ_INT(ci.hops, 3);
    free(out);
    free(id);
    ci.add_received = 0;
    out = run(&ci, "Subject: x\r\n\r\n", &id);
    T_EQ_INT(ci.hops, 0);
    free(out);
    free(id);
}

int     main(void)
{
    setenv("TZ", "UTC", 1);
    tzset();
    T_RUN(test_received_one_rcpt);
    T_RUN(test_received_many_rcpts_v6_esmtps);
    T_RUN(test_received_local);
    T_RUN(test_add_missing_headers);
    T_RUN(test_headers_and_body_edge_cases);
    T_RUN(test_header_size_limit);
    T_RUN(test_no_forged_header_lines);
    T_RUN(test_hop_count);
    return (t_done());
}
