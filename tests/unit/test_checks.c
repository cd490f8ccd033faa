/*
 * test_checks - the MIME classifier (cleanup_mime.c), the action parser and
 * header/body checks in cleanup_message() with inline regexp tables.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "util/util.h"
#include "config/config.h"
#include "cleanup/cleanup.h"
#include "cleanup/cleanup_mime.h"

/* ---- the classifier: a transcript of its callbacks ---- */

static int stop_at_end;

static void t_header(void *ctx, int cls, const char *text, const char *raw, size_t rawlen)
{
    buf_printf(ctx, "%s|%s\n", cls == MIME_HDR_PRIMARY ? "MAIN" : cls == MIME_HDR_NESTED ? "NEST" : "MULT", text);
}

static int t_header_end(void *ctx)
{
    buf_puts(ctx, "END\n");
    return (stop_at_end);
}

static void t_body(void *ctx, const char *rec, size_t len, size_t offset, const char *eol, size_t eollen)
{
    buf_printf(ctx, "BODY %zu%s|%.*s\n", offset, eol ? "" : "+", (int) len, rec);
}

static char *classify(const char *in, size_t line_limit)
{
    static const CLEANUP_MIME_CB cb = {t_header, t_header_end, t_body};
    CLEANUP_MIME_OPTS o = {0, line_limit, 0};
    BUF     b = BUF_INIT;

    cleanup_mime_run(in, strlen(in), &o, &cb, &b);
    buf_puts(&b, "");
    return (buf_steal(&b));
}

static void test_mime_structure(void)
{
    char   *t = classify("Subject: a\r\n\tfolded\r\nContent-Type: multipart/mixed;\r\n boundary=\"XX\"\r\n"
			 "\r\npreamble\r\n--XX\r\nContent-Type: text/plain\r\nX-Part: 1\r\n\r\nhello\r\n"
			 "--XX\r\nContent-Type: message/rfc822\r\n\r\nFrom: inner\r\nSubject: nested\r\n\r\n"
			 "inner body\r\n--XX--\r\nepilogue\r\n", 0);

    T_EQ_STR(t, "MAIN|Subject: a\n\tfolded\n"
	     "MAIN|Content-Type: multipart/mixed;\n boundary=\"XX\"\n"
	     "END\n"
	     "BODY 0|\nBODY 1|preamble\nBODY 10|--XX\n"
	     "MULT|Content-Type: text/plain\nMULT|X-Part: 1\n"
	     "BODY 0|\nBODY 1|hello\nBODY 7|--XX\n"
	     "MULT|Content-Type: message/rfc822\nBODY 0|\n"
	     "NEST|From: inner\nNEST|Subject: nested\n"
	     "BODY 0|\nBODY 1|inner body\nBODY 12|--XX--\nBODY 19|epilogue\n");
    free(t);
}

static void test_mime_edges(void)
{
    char   *t;

    /* A text line ends the primary header: an empty record is inserted. */
    t = classify("Subject: x\nnot a header\nmore\n", 0);
    T_EQ_STR(t, "MAIN|Subject: x\nEND\nBODY 0|\nBODY 1|not a header\nBODY 14|more\n");
    free(t);
    /* Obsolete "Name :" is a header, written "Name:". */
    t = classify("Subject : x\r\n\r\n", 0);
    T_EQ_STR(t, "MAIN|Subject: x\nEND\nBODY 0|\n");
    free(t);
    /* Long body lines are records of line_limit bytes. */
    t = classify("\r\n0123456789\r\n", 4);
    T_EQ_STR(t, "END\nBODY 0|\nBODY 1+|0123\nBODY 6+|4567\nBODY 11|89\n");
    free(t);
    /* multipart/digest parts are messages. */
    t = classify("Content-Type: multipart/digest; boundary=b\n\n--b\n\nSubject: d\n\nx\n--b--\n", 0);
    T_EQ_STR(t, "MAIN|Content-Type: multipart/digest; boundary=b\nEND\nBODY 0|\nBODY 1|--b\n"
	     "BODY 0|\nNEST|Subject: d\nBODY 0|\nBODY 1|x\nBODY 3|--b--\n");
    free(t);
    /* No body, no final newline. */
    t = classify("Subject: x", 0);
    T_EQ_STR(t, "MAIN|Subject: x\nEND\n");
    free(t);
    /* Stopping at the end of the primary header. */
    stop_at_end = 1;
    t = classify("A: b\r\n\r\nbody\r\n", 0);
    T_EQ_STR(t, "MAIN|A: b\nEND\n");
    free(t);
    stop_at_end = 0;
    T_EQ_INT(cleanup_mime_check_class(MIME_HDR_PRIMARY, "content-type: text/plain"), MIME_HDR_MULTIPART);
    T_EQ_INT(cleanup_mime_check_class(MIME_HDR_NESTED, "Subject: x"), MIME_HDR_NESTED);
}

/* Nesting past the limit: nothing is pushed, nothing breaks, memory bounded. */
static void test_mime_nesting(void)
{
    BUF     in = BUF_INIT;
    char   *t;

    for (int i = 0; i < 300; i++)
	buf_printf(&in, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i);
    buf_puts(&in, "\r\nend\r\n");
    t = classify(in.data, 0);
    T_CHECK(strstr(t, "BODY 1|end\n") != NULL || strstr(t, "|end\n") != NULL);
    free(t);
    buf_free(&in);
}

/* ---- actions ---- */

static void test_act_parse(void)
{
    const char *text;

    T_EQ_INT(cleanup_act_parse("REJECT  no thanks", &text), CLEANUP_ACT_REJECT);
    T_EQ_STR(text, "no thanks");
    T_EQ_INT(cleanup_act_parse("reject", &text), CLEANUP_ACT_REJECT);
    T_EQ_STR(text, "");
    T_EQ_INT(cleanup_act_parse("OK", &text), CLEANUP_ACT_DUNNO);
    T_EQ_INT(cleanup_act_parse("REJECTED x", &text), CLEANUP_ACT_UNKNOWN);
    T_EQ_INT(cleanup_act_parse("FILTER\tsmtp:[127.0.0.1]:10025", &text), CLEANUP_ACT_FILTER);
    T_EQ_STR(text, "smtp:[127.0.0.1]:10025");
    {
	char   *r = cleanup_dsn_prepend("5.7.1", "4.7.0 later");

	T_EQ_STR(r, "4.7.0 later");
	free(r);
	r = cleanup_dsn_prepend("5.7.1", "go away");
	T_EQ_STR(r, "5.7.1 go away");
	free(r);
	r = cleanup_dsn_prepend("5.7.1", "5.7.1234 x");
	T_EQ_STR(r, "5.7.1 5.7.1234 x");
	free(r);
    }
}

/* ---- cleanup_message with checks ---- */

static CONFIG *cf_with(const char *hc, const char *bc)
{
    char    err[512];
    char   *ov[3];
    CONFIG *cf;

    ov[0] = xasprintf("header_checks=%s", hc);
    ov[1] = xasprintf("body_checks=%s", bc);
    ov[2] = xstrdup("maillog_file=/dev/null");
    cf = config_load("/nonexistent/relayq-test-checks", ov, 3, 1, err, sizeof(err));
    T_CHECK(cf != NULL);
    for (int i = 0; i < 3; i++)
	free(ov[i]);
    return (cf);
}

static char *run_checks(CONFIG *cf, const char *in, CLEANUP_INFO *ci)
{
    BUF     out = BUF_INIT;
    char    err[512];
    char   *msgid = 0;

    memset(ci, 0, sizeof(*ci));
    ci->myhostname = "mx.example.test";
    ci->qid = "4ABCDEF";
    ci->header_size_limit = 200;
    ci->line_limit = 2048;
    ci->sender = "s@example.test";
    ci->last_rcpt = "r@example.test";
    ci->checks = cleanup_checks_open(cf, "", err, sizeof(err));
    T_CHECK(ci->checks != NULL);
    T_EQ_INT(cleanup_message(ci, in, strlen(in), &out, &msgid, err, sizeof(err)), 0);
    free(msgid);
    ci->checks = cleanup_checks_close(ci->checks);
    return (buf_steal(&out));
}

static void test_header_actions(void)
{
    CONFIG *cf = cf_with("regexp:{ {/^Subject: strip/ STRIP}, {/^Subject: ignore/ IGNORE},"
			 "{/^Subject: (repl.*)/ REPLACE X-Subject: $$1}, {/^Subject: pre/ PREPEND X-Pre: yes},"
			 "{/^X-Long:/ REPLACE X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa},"
			 "{/^Subject: hold/ HOLD}, {/^Subject: bcc/ BCC b@example.test},"
			 "{/^Subject: redir/ REDIRECT x@example.test}, {/^Subject: bad/ BOGUS}, "
			 "{/^X-Reject:/ REJECT 4.7.0 later}, {/^X-Content-Type:/ WARN}, {/^Content-Type:/ INFO mime} }",
			 "regexp:{ {/^drop me$/ STRIP}, {/^secret (.*)/ REPLACE censored $$1}, {/^discard$/ DISCARD} }");
    CLEANUP_INFO ci;
    char   *out;

    out = run_checks(cf, "Subject: strip\r\nSubject: ignore\r\nSubject: repl\r\n ace\r\nSubject: pre\r\n"
		     "X-Long: x\r\n\r\ndrop me\r\nsecret stuff\r\nkeep\r\n", &ci);
    {
	BUF     exp = BUF_INIT;

	/* The REPLACE text is cut at header_size_limit (200): 198 bytes and CRLF. */
	buf_puts(&exp, "X-Subject: repl\r\n ace\r\nX-Pre: yes\r\nSubject: pre\r\nX-Long: ");
	for (int k = 0; k < 190; k++)
	    buf_putc(&exp, 'a');
	buf_puts(&exp, "\r\n\r\ncensored stuff\r\nkeep\r\n");
	T_EQ_STR(out, exp.data);
	buf_free(&exp);
    }
    T_EQ_INT(ci.discard + ci.hold + ci.lookup_error, 0);
    T_CHECK(ci.reason == NULL);
    cleanup_info_free(&ci);

    out = (free(out), run_checks(cf, "Subject: hold\r\nSubject: bcc\r\nSubject: bad\r\nSubject: redir\r\n"
				 "X-Reject: y\r\n\r\ndiscard\r\n", &ci));
    T_EQ_INT(ci.hold, 1);
    T_EQ_INT(ci.nbcc, 1);
    T_EQ_STR(ci.bcc[0], "b@example.test");
    T_EQ_STR(ci.redirect, "x@example.test");
    /* REDIRECT ends the checks: no REJECT, no DISCARD after it. */
    T_CHECK(ci.reason == NULL);
    T_EQ_INT(ci.discard, 0);
    T_EQ_INT(ci.no_milters, 1);
    cleanup_info_free(&ci);
    free(out);

    out = run_checks(cf, "X-Reject: y\r\n\r\nbody\r\n", &ci);
    T_EQ_STR(ci.reason, "4.7.0 later");
    T_EQ_INT(ci.defer, 1);
    cleanup_info_free(&ci);
    free(out);

    out = run_checks(cf, "A: b\r\n\r\ndiscard\r\n", &ci);
    T_EQ_INT(ci.discard, 1);
    cleanup_info_free(&ci);
    free(out);
    config_free(cf);
}

/* Bodies are copied byte for byte when no check changes them. */
static void test_body_passthrough(void)
{
    CONFIG *cf = cf_with("", "regexp:{ {/^never-matches-this$/ REJECT} }");
    CLEANUP_INFO ci;
    const char *in = "A: b\r\n\r\nline1\nline2\r\n\r\nlast without newline";
    char   *out = run_checks(cf, in, &ci);

    T_EQ_STR(out, in);
    cleanup_info_free(&ci);
    free(out);
    config_free(cf);
}

static void test_filter_valid(void)
{
    char    err[256];

    T_EQ_INT(cleanup_filter_valid("smtp:[127.0.0.1]:10025", err, sizeof(err)), 1);
    T_EQ_INT(cleanup_filter_valid("SMTP:filter.example", err, sizeof(err)), 1);
    T_EQ_INT(cleanup_filter_valid("amavis:[127.0.0.1]:10024", err, sizeof(err)), 0);
    T_CHECK(strstr(err, "only over SMTP") != NULL);
    T_EQ_INT(cleanup_filter_valid("smtp:", err, sizeof(err)), 0);
    T_EQ_INT(cleanup_filter_valid("smtp:a b", err, sizeof(err)), 0);
}

/* A FILTER to another transport in a pattern table: refused at open, naming the line. */
static void test_filter_checked_at_open(void)
{
    CONFIG *cf = cf_with("regexp:{ {/^a/ WARN}, {/^b/ FILTER smtp:[127.0.0.1]:25}, {/^(c)/ FILTER $$1}, {/^d/ FILTER scan:x} }", "");
    char    err[512];
    CLEANUP_CHECKS *c = cleanup_checks_open(cf, "", err, sizeof(err));

    T_CHECK(c == NULL);
    T_CHECK(strstr(err, "header_checks: ") == err);
    /* An inline table is all on line 1 (tests/integration/test_checks.py: a file). */
    T_CHECK(strstr(err, ", line 1: FILTER scan:x: relayq delivers") != NULL);
    config_free(cf);
}

int     main(void)
{
    T_RUN(test_filter_valid);
    T_RUN(test_filter_checked_at_open);
    T_RUN(test_mime_structure);
    T_RUN(test_mime_edges);
    T_RUN(test_mime_nesting);
    T_RUN(test_act_parse);
    T_RUN(test_header_actions);
    T_RUN(test_body_passthrough);
    return (t_done());
}
