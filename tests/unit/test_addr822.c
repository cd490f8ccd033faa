/*
 * test_addr822 - header address lists parsed and written back as Postfix's
 * tok822 does.  The expected texts are what Postfix 3.7 wrote for the same
 * input in tests/integration/test_rewrite.py.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "util/util.h"
#include "cleanup/addr822.h"

/* Parse value, replace every address equal to from by to, write back (one line). */
static char *rewrite(const char *value, const char *from, const char *to, int *naddr)
{
    A822   *list = addr822_parse(value, 10240);
    int     n;
    A822  **v = addr822_addrs(list, &n);
    BUF     b = BUF_INIT;

    for (int i = 0; i < n; i++) {
	char   *a = addr822_addr_text(v[i]);

	if (strcmp(a, from) == 0)
	    addr822_addr_set(v[i], to);
	free(a);
    }
    addr822_header_text(&b, list, NULL);
    for (size_t i = 0; i < b.len; i++)
	if (b.data[i] == '\n')
	    b.data[i] = '|';
    if (naddr)
	*naddr = n;
    free(v);
    addr822_free(list);
    return (buf_steal(&b));
}

static void test_forms(void)
{
    char   *s;
    int     n;

    s = rewrite(" Root <root@host17.internal>", "root@host17.internal", "alerts@example.com", &n);
    T_EQ_STR(s, "Root <alerts@example.com>");
    T_EQ_INT(n, 1);
    free(s);
    s = rewrite(" friends: a@old.example, b@other.test;, c@old.example (Comment)", "a@old.example",
		"a@new.example", &n);
    T_EQ_STR(s, "friends: a@new.example,|b@other.test;,|c@old.example (Comment)");
    T_EQ_INT(n, 3);
    free(s);
    s = rewrite(" \"z\" <z@rcpt-pcre.test> (the z)", "z@rcpt-pcre.test", "pcre-z@example.net", &n);
    T_EQ_STR(s, "\"z\" <pcre-z@example.net>(the z)");
    free(s);
    s = rewrite(" (comment first) root@host17.internal", "x", "y", &n);
    T_EQ_STR(s, "root@host17.internal (comment first)");
    free(s);
    s = rewrite(" undisclosed-recipients:;", "x", "y", &n);
    T_EQ_STR(s, "undisclosed-recipients: ;");	/* Postfix: a space after the group colon */
    T_EQ_INT(n, 0);
    free(s);
    s = rewrite(" \"john doe\"@old.example", "\"john doe\"@old.example", "\"john doe\"@new.example", &n);
    T_EQ_STR(s, "\"john doe\"@new.example");
    free(s);
    s = rewrite(" =?UTF-8?B?w4lyaWM=?= <a@b>", "a@b", "c@d", &n);
    T_EQ_STR(s, "=?UTF-8?B?w4lyaWM=?= <c@d>");
    free(s);
}

static void test_quote(void)
{
    char   *q = addr822_quote_local("john doe@example.com");
    char   *u = addr822_unquote_local(q);

    T_EQ_STR(q, "\"john doe\"@example.com");
    T_EQ_STR(u, "john doe@example.com");
    free(q);
    free(u);
    q = addr822_quote_local("plain.name@example.com");
    T_EQ_STR(q, "plain.name@example.com");
    free(q);
    q = addr822_quote_local("a\"b@x");
    T_EQ_STR(q, "\"a\\\"b\"@x");
    free(q);
    u = addr822_unquote_local("\"a@b\"@x");
    T_EQ_STR(u, "a@b@x");
    free(u);
}

/* More than 250 bytes of name around one address: only "<address>" stays. */
static void test_strip(void)
{
    char    name[400], val[600], *s;

    memset(name, 'n', 300);
    name[300] = 0;
    snprintf(val, sizeof(val), " %s <a@b>, c@d", name);
    s = rewrite(val, "c@d", "e@f", NULL);
    T_EQ_STR(s, "<a@b>,|e@f");
    free(s);
}

/* Whatever the input, parsing and writing back terminate without a fault (ASan). */
static void test_hostile(void)
{
    static const char *bad[] = {
	"", " ", "\"unbalanced", "\\", "a\\", "((((((((deep", ")))", "<<<>>>", "<", ">", ";;;:::,,,",
	"[unclosed", "@", "@@@", "a@", "@b", "<>", "\"\"", "g: ;", ":", "a b c <d> e f <g>",
	"\r\n\t", "a@b\r\n c@d", "\x01\x7f\xff",
    };

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
	char   *s = rewrite(bad[i], "d", "x@y", NULL);

	T_CHECK(s != NULL);
	free(s);
    }
    {
	/* A token limit: a 100000-address header is cut, not fully parsed. */
	BUF     b = BUF_INIT;
	A822   *list;
	int     n;
	A822  **v;

	for (int i = 0; i < 100000; i++)
	    buf_printf(&b, "%su%d@example.com", i ? ", " : "", i);
	list = addr822_parse(b.data, 10240);
	v = addr822_addrs(list, &n);
	T_CHECK(n > 0 && n <= 10240 / 3 + 1);
	free(v);
	addr822_free(list);
	buf_free(&b);
    }
}

int     main(void)
{
    T_RUN(test_forms);
    T_RUN(test_quote);
    T_RUN(test_strip);
    T_RUN(test_hostile);
    return (t_done());
}
