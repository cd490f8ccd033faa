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

/* The slow path's answer: the value without CRs, parsed; every address has a domain, none ends in "."? */
static int slow_qualified(const char *v, size_t len, int *naddr)
{
    BUF     b = BUF_INIT;
    A822   *list;
    A822  **a;
    int     n, ok = 1;

    for (size_t i = 0; i < len; i++)
	if (v[i] != '\r')
	    buf_putc(&b, v[i]);
    buf_puts(&b, "");
    list = addr822_parse(b.data, 10240);
    a = addr822_addrs(list, &n);
    for (int i = 0; i < n; i++) {
	char   *t = addr822_addr_text(a[i]);
	size_t  tl = strlen(t);

	/* No quotes in a plain list: an "@" anywhere is an unquoted one. */
	if (strchr(t, '@') == NULL || tl == 0 || t[tl - 1] == '.')
	    ok = 0;
	free(t);
    }
    free(a);
    addr822_free(list);
    buf_free(&b);
    *naddr = n;
    return (ok);
}

static unsigned long long rnd_state = 0x9e3779b97f4a7c15ULL;

static unsigned rnd(unsigned n)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return ((unsigned) (rnd_state % n));
}

/* The fast check that lets a header with nothing to rewrite skip the parse. */
static void test_plain_qualified(void)
{
    static const char *yes[] = {
	" <bench-sender@source.bench.example>", "a@b.c", " Root <root@host17.internal>",
	" =?UTF-8?B?w4lyaWM=?= <a@b>", " a@b, C D <e@f.g>,\r\n\th@i\r\n", "J. Smith <j@x>",
	"<a@b>", " x\r@y", " a@b ,c@d ", "a+tag@b-c.d_e",
    };
    static const char *no[] = {
	"", " ", "user", "a@b.", "<a@b.>", "a b@c", "a@b c@d", "\"x\" <a@b>", "a@b (c)",
	"g: a@b;", "a@[1.2.3.4]", "<>", "a@b,", ",a@b", "a@b,,c@d", "a@@b", ".a@b", "a.@b",
	"a@b@c", "x <a@b> y", "<a@b", "x y", "\xc3\xa9 <a@b>", "a|b@c", "a%b@c", "a!b@c",
	"a\\b@c", "<a@b>>", "x <y <a@b>", "a@b <c@d>", "@b", "a@", "<@b:a@c>", "a..b@c",
	"x <a@b.c.>", "x.<a>",
    };
    static const char *piece[] = {
	"a", "bc", "x.y", "@", ".", " ", "<", ">", ",", "\r", "\n", "\t", "=?", "u@d.e", "<u@d>",
	"N <u@v.w>", ", ", "u@d.e", "<u@d>", "N <u@v.w>", ", ",
    };
    static const char *hostile[] = {
	"\"", "(", ")", ":", ";", "[", "]", "\\", "|", "%", "!", "\xc3\xa9", "\x01",
    };
    int     n, accepted = 0;

    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
	T_CHECK(addr822_plain_qualified(yes[i], strlen(yes[i]), 10240));
	T_CHECK(slow_qualified(yes[i], strlen(yes[i]), &n));
    }
    for (size_t i = 0; i < ARRAY_LEN(no); i++)
	T_CHECK(!addr822_plain_qualified(no[i], strlen(no[i]), 10240));
    T_CHECK(!addr822_plain_qualified("a@b\0c", 5, 10240));	/* the parse stops at a NUL */
    {
	/* Past the token limit the parse is cut: no fast answer. */
	BUF     b = BUF_INIT;

	for (int i = 0; i < 2000; i++)
	    buf_printf(&b, "%su%d@example.com", i ? ", " : "", i);
	T_CHECK(addr822_plain_qualified(b.data, b.len, 0));
	T_CHECK(!addr822_plain_qualified(b.data, b.len, 10240));
	buf_free(&b);
    }

    /*
     * Differential: random values made of plain and hostile pieces.  Each
     * one the fast check accepts, the parser splits into one qualified
     * address per comma-separated element.
     */
    for (int i = 0; i < 30000; i++) {
	BUF     b = BUF_INIT;
	unsigned np = 1 + rnd(8);
	int     elems = 1;

	for (unsigned j = 0; j < np; j++)
	    buf_puts(&b, rnd(16) ? piece[rnd(ARRAY_LEN(piece))] : hostile[rnd(ARRAY_LEN(hostile))]);
	if (addr822_plain_qualified(b.data, b.len, 10240)) {
	    int     ok = slow_qualified(b.data, b.len, &n);

	    accepted++;
	    for (size_t k = 0; k < b.len; k++)
		elems += b.data[k] == ',';
	    if (!ok || n != elems)
		T_FAILF("plain check accepted \"%s\": %d addresses for %d elements, qualified %d",
			b.data, n, elems, ok);
	}
	buf_free(&b);
    }
    T_CHECK(accepted > 1000);			/* not vacuous */
}

int     main(void)
{
    T_RUN(test_forms);
    T_RUN(test_quote);
    T_RUN(test_strip);
    T_RUN(test_hostile);
    T_RUN(test_plain_qualified);
    return (t_done());
}
