/*
 * test_milter - the pure parts of the milter client: the message as a list
 * of headers and a body, the filters' header and body edits with Postfix's
 * indexing rules, and the checks of a filter's reply text.  Hostile input
 * from a filter (CR/LF in names and values, absurd indexes) must never
 * produce a broken header.
 */
#include "milter/milter.h"
#include "t.h"

static const char MSG[] =
    "Received: from a (b [1.2.3.4])\r\n\tby mx; Tue, 1 Dec 2026\r\n"
    "From: a@example.test\r\n"
    "Subject: hello\r\n world\r\n"
    "X-A: 1\r\n"
    "X-A: 2\r\n"
    "\r\n"
    "Body line 1\r\nBody line 2\r\n";

static char *edit(void (*fn)(MILTER_HDRS *h))
{
    MILTER_HDRS *h = milter_hdrs_parse(MSG, sizeof(MSG) - 1, 1);
    BUF     out = BUF_INIT;

    fn(h);
    milter_hdrs_write(h, &out);
    milter_hdrs_free(h);
    return (buf_steal(&out));
}

static void none(MILTER_HDRS *h)
{
}

static void test_roundtrip_is_exact(void)
{
    char   *s = edit(none);

    T_EQ_STR(s, MSG);
    free(s);
}

static void test_headers_as_a_filter_sees_them(void)
{
    MILTER_HDRS *h = milter_hdrs_parse(MSG, sizeof(MSG) - 1, 1);
    BUF     n = BUF_INIT, v = BUF_INIT;
    size_t  blen;

    T_EQ_INT(milter_hdrs_count(h), 5);
    T_CHECK(milter_hdrs_hidden(h, 0));
    T_CHECK(!milter_hdrs_hidden(h, 1));
    milter_hdrs_get(h, 2, 0, &n, &v);
    T_EQ_STR(n.data, "Subject");
    /* folded lines joined by a newline, the first space eaten (Sendmail) */
    T_EQ_STR(v.data, "hello\n world");
    milter_hdrs_get(h, 2, 1, &n, &v);
    T_EQ_STR(v.data, " hello\n world");
    T_EQ_STR(milter_hdrs_body(h, &blen), "Body line 1\r\nBody line 2\r\n");
    buf_free(&n);
    buf_free(&v);
    milter_hdrs_free(h);
}

static void add(MILTER_HDRS *h)
{
    milter_hdrs_add(h, "X-New", " ", "v");
}

static void ins0(MILTER_HDRS *h)
{
    milter_hdrs_insert(h, 0, "DKIM-Signature", " ", "v=1; a=rsa-sha256;\n\tb=abc");
}

static void ins_far(MILTER_HDRS *h)
{
    milter_hdrs_insert(h, 1000000, "X-Far", " ", "end");
}

static void chg2(MILTER_HDRS *h)
{
    milter_hdrs_change(h, 2, "x-a", " ", "two");
}

static void del1(MILTER_HDRS *h)
{
    milter_hdrs_change(h, 1, "X-A", " ", "");
}

static void chg_missing(MILTER_HDRS *h)
{
    milter_hdrs_change(h, 5, "X-Missing", " ", "added");
    milter_hdrs_change(h, 1, "X-Gone", " ", "");
}

static void chg_received(MILTER_HDRS *h)
{
    /* our own Received: is not counted: instance 1 does not exist */
    milter_hdrs_change(h, 1, "Received", " ", "");
}

static void hostile(MILTER_HDRS *h)
{
    milter_hdrs_add(h, "X-Evil\r\nBcc", " ", "a\rb\nInjected: yes\r\n");
}

static void body(MILTER_HDRS *h)
{
    milter_hdrs_replace_body(h, "new\nbody\r\nno end", 16);
}

static void test_edits_follow_postfix_indexing(void)
{
    char   *s;

    s = edit(add);
    T_CHECK(strstr(s, "X-A: 2\r\nX-New: v\r\n\r\nBody") != 0);
    free(s);
    s = edit(ins0);
    T_CHECK(strncmp(s, "DKIM-Signature: v=1; a=rsa-sha256;\r\n\tb=abc\r\nReceived: ", 53) == 0);
    free(s);
    s = edit(ins_far);
    T_CHECK(strstr(s, "X-A: 2\r\nX-Far: end\r\n\r\n") != 0);
    free(s);
    s = edit(chg2);
    T_CHECK(strstr(s, "X-A: 1\r\nx-a: two\r\n\r\n") != 0);
    free(s);
    s = edit(del1);
    T_CHECK(strstr(s, "X-A: 1") == 0 && strstr(s, "X-A: 2\r\n\r\n") != 0);
    free(s);
    s = edit(chg_missing);
    T_CHECK(strstr(s, "X-Missing: added\r\n\r\n") != 0);
    free(s);
    s = edit(chg_received);
    T_EQ_STR(s, MSG);
    free(s);
}

static void test_hostile_header_text_stays_one_header(void)
{
    char   *s = edit(hostile);

    /* no CR or LF from the name; every line of the value is a continuation */
    T_CHECK(strstr(s, "X-EvilBcc: ab\r\n\tInjected: yes\r\n\r\n") != 0);
    T_CHECK(strstr(s, "\r\nInjected") == 0);
    free(s);
}

static void test_body_replacement_normalises_line_ends(void)
{
    char   *s = edit(body);

    T_CHECK(strstr(s, "X-A: 2\r\n\r\nnew\r\nbody\r\nno end\r\n") != 0);
    free(s);
}

static void test_odd_messages(void)
{
    static const char *in[] = {
	"", "\r\n", "no header line\r\nat all\r\n", "X: y", "X: y\r\n", ":\r\n",
	" leading space\r\n\r\nb\r\n", "X: a\r\n\r\n\r\n",
    };

    for (size_t i = 0; i < ARRAY_LEN(in); i++) {
	MILTER_HDRS *h = milter_hdrs_parse(in[i], strlen(in[i]), 1);
	BUF     out = BUF_INIT;

	milter_hdrs_write(h, &out);
	/* nothing is lost or invented */
	T_EQ_INT(out.len, strlen(in[i]) + (strcmp(in[i], "X: y") == 0 ? 2 : 0));
	T_CHECK(strcmp(in[i], "X: y") == 0 || memcmp(out.data ? out.data : "", in[i], out.len) == 0);
	buf_free(&out);
	milter_hdrs_free(h);
    }
}

static void test_nul_in_a_header_loses_nothing(void)
{
    static const char in[] = "X: a\0b\r\nY: c\r\n\r\nbody\0\r\n";
    MILTER_HDRS *h = milter_hdrs_parse(in, sizeof(in) - 1, 0);
    BUF     out = BUF_INIT;

    T_EQ_INT(milter_hdrs_count(h), 2);
    milter_hdrs_add(h, "Z", " ", "d");
    milter_hdrs_write(h, &out);
    T_EQ_INT(out.len, sizeof(in) - 1 + 6);
    T_CHECK(memcmp(out.data, "X: a\0b\r\nY: c\r\nZ: d\r\n\r\nbody\0\r\n", out.len) == 0);
    buf_free(&out);
    milter_hdrs_free(h);
}

static void test_reply_codes(void)
{
    T_CHECK(milter_valid_reply("550 5.7.1 no thanks"));
    T_CHECK(milter_valid_reply("451 4.7.1"));
    T_CHECK(milter_valid_reply("550-5.7.1 first\r\n550 5.7.1 second"));
    T_CHECK(!milter_valid_reply("250 2.0.0 ok"));
    T_CHECK(!milter_valid_reply("999 not a reply"));
    T_CHECK(!milter_valid_reply("55"));
    T_CHECK(!milter_valid_reply("550-a\r\n451 b"));
    T_CHECK(!milter_valid_reply("550 a\nInjected"));
    T_CHECK(!milter_valid_reply("550 a\r\n"));
    T_CHECK(!milter_valid_reply("550 bell\a"));
}

int     main(void)
{
    T_RUN(test_roundtrip_is_exact);
    T_RUN(test_headers_as_a_filter_sees_them);
    T_RUN(test_edits_follow_postfix_indexing);
    T_RUN(test_hostile_header_text_stays_one_header);
    T_RUN(test_body_replacement_normalises_line_ends);
    T_RUN(test_odd_messages);
    T_RUN(test_nul_in_a_header_loses_nothing);
    T_RUN(test_reply_codes);
    return (t_done());
}
