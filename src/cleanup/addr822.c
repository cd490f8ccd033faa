/*
 * addr822 - RFC 822 address lists, parsed and written back with the rules
 * of Postfix's tok822 module (see addr822.h).  The parser reads tokens left
 * to right, then groups them into addresses from right to left: a "<...>"
 * route, a "name: ... ;" group, or a run of words separated by operators,
 * with a comma inserted where two addresses touch without one.  Written
 * independently from the behaviour Postfix documents and shows.
 */
#include <ctype.h>
#include <string.h>
#include <stdlib.h>

#include "util/util.h"
#include "log/log.h"
#include "cleanup/addr822.h"

#define IS_WSP(c)	((c) == ' ' || (c) == '\t' || (c) == '\r' || (c) == '\n')

/* Operator characters: RFC 822 specials plus Postfix's "|%!". */
static const char op_chars[] = "|%!()<>@,;:\\\".[]";

static int is_op_char(int c)
{
    return (c != 0 && strchr(op_chars, c) != NULL);
}

/* A character of an atom that never makes it a quoted string: not WSP, CTL, space or operator. */
static int is_plain_atom_char(int c)
{
    return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
	    || (c != 0 && strchr("#$&'*+-/=?^_`{}~", c) != NULL));
}

static A822 *tok_new(int type)
{
    A822   *t = xcalloc(1, sizeof(*t));

    t->type = type;
    return (t);
}

void    addr822_free(A822 *t)
{
    while (t) {
	A822   *next = t->next;

	addr822_free(t->head);
	free(t->text);
	free(t);
	t = next;
    }
}

/* Insert the chain starting at t2 after t1; returns the chain's last token. */
static A822 *chain_after(A822 *t1, A822 *t2)
{
    A822   *old = t1->next;

    t1->next = t2;
    t2->prev = t1;
    for (t2->owner = t1->owner; t2->next; t2 = t2->next)
	t2->next->owner = t1->owner;
    t2->next = old;
    if (old)
	old->prev = t2;
    return (t2);
}

/* Insert the single token t2 before t1. */
static void tok_before(A822 *t1, A822 *t2)
{
    A822   *p = t1->prev;

    if (p)
	p->next = t2;
    t2->prev = p;
    t2->owner = t1->owner;
    t2->next = t1;
    t1->prev = t2;
}

/* Unlink t; returns what was before it. */
static A822 *tok_unlink(A822 *t)
{
    A822   *p = t->prev, *n = t->next;

    if (p)
	p->next = n;
    if (n)
	n->prev = p;
    t->prev = t->next = NULL;
    return (p);
}

static void cut_before(A822 *t)
{
    if (t->prev) {
	t->prev->next = NULL;
	t->prev = NULL;
    }
}

/*
 * Make the tokens strictly between left and right the children of a new
 * ADDR token; with comma set, a ',' goes between left and it.  Returns left.
 */
static A822 *make_group(A822 *left, A822 *right, int comma)
{
    A822   *first, *g, *c;

    if (left == right || (first = left->next) == right)
	return (left);
    cut_before(right);
    cut_before(first);
    g = tok_new(A822_ADDR);
    g->head = first;
    for (c = first; c; c = c->next) {
	c->owner = g;
	g->tail = c;
    }
    chain_after(left, g);
    chain_after(g, right);
    if (comma)
	chain_after(left, tok_new(','));
    return (left);
}

/* Text of a quoted string or literal up to the closing quote; backslash quotes one byte. */
static const char *collect(BUF *b, const char *s, int end)
{
    while (*s) {
	int     c = (unsigned char) *s;

	if (c == '\\') {
	    if (s[1] == 0) {
		s++;
		break;
	    }
	    c = (unsigned char) *++s;
	} else if (c == end) {
	    s++;
	    break;
	}
	buf_putc(b, IS_WSP(c) ? ' ' : (char) c);
	s++;
    }
    return (s);
}

static const char *comment(BUF *b, const char *s)
{
    int     depth = 1;

    buf_putc(b, '(');
    while (*s) {
	int     c = (unsigned char) *s++;

	buf_putc(b, (char) c);
	if (c == '(') {
	    depth++;
	} else if (c == ')') {
	    if (--depth == 0)
		break;
	} else if (c == '\\') {
	    if (*s == 0)
		break;
	    buf_putc(b, *s++);
	}
    }
    return (s);
}

/* Tokens of s, left to right; *tailp gets the last one. */
static A822 *scan(const char *s, A822 **tailp, int limit)
{
    A822   *head = NULL, *tail = NULL, *t;
    int     n = 0;

    while (*s) {
	int     c = (unsigned char) *s;
	BUF     b = BUF_INIT;

	if (IS_WSP(c)) {
	    s++;
	    continue;
	}
	if (c == '(') {
	    t = tok_new(A822_COMMENT);
	    s = comment(&b, s + 1);
	} else if (c == '[') {
	    t = tok_new(A822_DOMLIT);
	    s = collect(&b, s + 1, ']');
	} else if (c == '"') {
	    t = tok_new(A822_QSTRING);
	    s = collect(&b, s + 1, '"');
	} else if (c != '\\' && is_op_char(c)) {
	    t = tok_new(c);
	    s++;
	} else {
	    t = tok_new(A822_ATOM);
	    while (*s) {
		c = (unsigned char) *s;
		if (c == '\\') {
		    if (s[1] == 0) {
			s++;
			break;
		    }
		    c = (unsigned char) *++s;
		} else if (IS_WSP(c) || is_op_char(c)) {
		    break;
		}
		buf_putc(&b, IS_WSP(c) ? ' ' : (char) c);
		s++;
	    }
	    /* An atom that holds what an atom cannot is a quoted string. */
	    for (size_t i = 0; i < b.len; i++) {
		unsigned char ch = (unsigned char) b.data[i];

		if (ch == ' ' || ch < 0x20 || ch == 0x7f || is_op_char(ch)) {
		    t->type = A822_QSTRING;
		    break;
		}
	    }
	}
	buf_puts(&b, "");
	t->text = buf_steal(&b);
	if (head == NULL)
	    head = tail = t;
	else
	    tail = chain_after(tail, t);
	if (limit > 0 && ++n >= limit)
	    break;
    }
    if (tailp)
	*tailp = tail;
    return (head);
}

#define IS_WORD(t) ((t)->type == A822_ATOM || (t)->type == A822_QSTRING || (t)->type == A822_DOMLIT)
#define ST_WORD		1		/* a word may start an address here */
#define ST_GROUP	2		/* inside "name: ... ;" */

A822   *addr822_parse(const char *value, int token_limit)
{
    A822   *first, *last, *start, *end, *right, *t, *res;
    int     st = ST_WORD;

    if ((first = scan(value, &last, token_limit)) == NULL)
	return (NULL);
    start = tok_new(0);
    end = tok_new(0);
    start->next = first;
    first->prev = start;
    last->next = end;
    end->prev = last;

    right = end;
    t = end->prev;
    while (t->type != 0) {
	if (t->type == A822_COMMENT) {
	    /* Comments move out of the way, to the right of what they were in. */
	    A822   *p = tok_unlink(t);

	    tok_before(right, t);
	    right = t;
	    t = p;
	    continue;
	}
	if (t->type == ';') {
	    right = make_group(t, right, ',');
	    st = ST_GROUP | ST_WORD;
	} else if (t->type == ':' && (st & ST_GROUP)) {
	    t->type = A822_STARTGRP;
	    make_group(t, right, 0);
	    while (t->type && t->type != ',')
		t = t->prev;
	    right = t;
	    continue;
	} else if (t->type == '>') {
	    right = make_group(t, right, ',');
	    while (t->type && t->type != '<') {
		if (t->type == A822_COMMENT) {
		    A822   *p = tok_unlink(t);

		    tok_before(right, t);
		    right = t;
		    t = p;
		    continue;
		}
		t = t->prev;
	    }
	    make_group(t, right, 0);
	    while (t->type && (t->type > 0xff || strchr(">;,:", t->type) == NULL))
		t = t->prev;
	    right = t;
	    st |= ST_WORD;
	    continue;
	} else if (IS_WORD(t)) {
	    if ((st & ST_WORD) == 0)
		right = make_group(t, right, ',')->next;
	    st &= ~ST_WORD;
	} else if (t->type == ',') {
	    right = make_group(t, right, 0);
	    st |= ST_WORD;
	} else {
	    st |= ST_WORD;
	}
	t = t->prev;
    }
    make_group(t, right, 0);

    res = start->next != end ? start->next : NULL;
    cut_before(start->next);
    cut_before(end);
    free(start);
    free(end);
    if (res)
	res->prev = NULL;
    return (res);
}

/*
 * The plain lists of addr822_plain_qualified().  With only atoms, ".",
 * "@", "<", ">" and "," (no quotes, comments, literals, ":" or ";"),
 * addr822_parse() groups a comma-separated element "local@domain"
 * (no space inside) into one address of those tokens, and an element
 * "phrase <local@domain>" into one address of the tokens between the
 * angle brackets, the phrase words staying outside any address.  Each
 * character is at most one token, so len <= token_limit reads them all.
 */
#define PLAIN_SKIP_WSP(p, e) \
    while ((p) < (e) && (*(p) == ' ' || *(p) == '\t' || *(p) == '\n' || *(p) == '\r')) (p)++

/* "atom(.atom)*@atom(.atom)*" at *pp; CRs skipped; *pp moves past it. */
static int plain_addr_spec(const char **pp, const char *e)
{
    const char *p = *pp;
    int     ats = 0, atom = 0;		/* atom: the last token was an atom */

    for (; p < e; p++) {
	int     c = (unsigned char) *p;

	if (c == '\r')
	    continue;
	if (is_plain_atom_char(c)) {
	    atom = 1;
	} else if (c == '.' || c == '@') {
	    if (!atom || (c == '@' && ats++))
		return (0);
	    atom = 0;
	} else {
	    break;
	}
    }
    *pp = p;
    return (atom && ats == 1);
}

int     addr822_plain_qualified(const char *value, size_t len, int token_limit)
{
    const char *p = value, *e = value + len;

    if (token_limit > 0 && len > (size_t) token_limit)
	return (0);
    for (;;) {
	PLAIN_SKIP_WSP(p, e);
	if (p < e && *p == '<') {
	    p++;
	} else {
	    const char *s = p;

	    /* Either the address itself, or the phrase before "<". */
	    if (plain_addr_spec(&p, e)) {
		PLAIN_SKIP_WSP(p, e);
		if (p == e)
		    return (1);
		if (*p++ != ',')
		    return (0);
		continue;
	    }
	    for (p = s; p < e; p++) {
		int     c = (unsigned char) *p;

		if (c != '.' && c != ' ' && c != '\t' && c != '\n' && c != '\r'
		    && !is_plain_atom_char(c))
		    break;
	    }
	    if (p == s || p == e || *p++ != '<')
		return (0);
	}
	if (!plain_addr_spec(&p, e) || p == e || *p++ != '>')
	    return (0);
	PLAIN_SKIP_WSP(p, e);
	if (p == e)
	    return (1);
	if (*p++ != ',')
	    return (0);
    }
}

#undef PLAIN_SKIP_WSP

A822  **addr822_addrs(A822 *list, int *count)
{
    int     n = 0;
    A822  **v;

    for (A822 *t = list; t; t = t->next)
	n += t->type == A822_ADDR;
    v = xcalloc((size_t) n + 1, sizeof(*v));
    n = 0;
    for (A822 *t = list; t; t = t->next)
	if (t->type == A822_ADDR)
	    v[n++] = t;
    if (count)
	*count = n;
    return (v);
}

#define NON_OP(t) ((t)->type == A822_ATOM || (t)->type == A822_QSTRING \
		   || (t)->type == A822_COMMENT || (t)->type == A822_DOMLIT \
		   || (t)->type == A822_ADDR)

/* Does a space follow t when written out? */
static int space_after(const A822 *t)
{
    if (t == NULL || t->next == NULL || t->owner != NULL)
	return (0);
    if (t->type == ',' || t->type == A822_STARTGRP || t->next->type == '<')
	return (1);
    return (NON_OP(t) && NON_OP(t->next));
}

/* Internal form: strings without their quotes. */
static void internal_text(BUF *b, const A822 *list)
{
    for (const A822 *t = list; t; t = t->next) {
	switch (t->type) {
	case A822_ADDR:
	    internal_text(b, t->head);
	    break;
	case A822_COMMENT:
	case A822_ATOM:
	case A822_QSTRING:
	    buf_puts(b, t->text);
	    break;
	case A822_DOMLIT:
	    buf_putc(b, '[');
	    buf_puts(b, t->text);
	    buf_putc(b, ']');
	    break;
	case A822_STARTGRP:
	    buf_putc(b, ':');
	    break;
	default:
	    buf_putc(b, (char) t->type);
	}
	if (space_after(t))
	    buf_putc(b, ' ');
    }
}

static void quoted_copy(BUF *b, const char *s, const char *special)
{
    for (; *s; s++) {
	if (strchr(special, *s))
	    buf_putc(b, '\\');
	buf_putc(b, *s);
    }
}

/* Can the localpart [s, e) go without quotes? */
static int dot_string(const char *s, const char *e)
{
    const char *p;

    if (s == e || *s == 0 || *s == '.')
	return (0);
    for (p = s; p < e && *p; p++) {
	unsigned char c = (unsigned char) *p;

	if (c == '.' && p + 1 < e && p[1] == '.')
	    return (0);
	if (c == ' ' || c < 0x20 || c == 0x7f || strchr("()<>@,;:\\\"[]", c))
	    return (0);
    }
    return (p[-1] != '.');
}

static void quote_local(BUF *b, const char *addr)
{
    const char *s = addr, *e, *colon;

    if (addr[0] == '@' && (colon = strchr(addr, ':')) != NULL)
	s = colon + 1;			/* a source route stays as it is */
    if ((e = strrchr(s, '@')) == NULL)
	e = s + strlen(s);
    if (dot_string(s, e)) {
	buf_puts(b, addr);
	return;
    }
    buf_append(b, addr, (size_t) (s - addr));
    buf_putc(b, '"');
    for (const char *p = s; p < e && *p; p++) {
	if (*p == '"' || *p == '\\' || *p == '\r')
	    buf_putc(b, '\\');
	buf_putc(b, *p);
    }
    buf_putc(b, '"');
    buf_puts(b, e);
}

char   *addr822_quote_local(const char *addr)
{
    BUF     b = BUF_INIT;

    quote_local(&b, addr);
    buf_puts(&b, "");
    return (buf_steal(&b));
}

char   *addr822_unquote_local(const char *addr)
{
    BUF     b = BUF_INIT;
    const char *s = addr, *colon, *p, *bare_at = NULL;
    size_t  at_pos = 0;
    int     inq = 0;

    if (addr[0] == '@' && (colon = strchr(addr, ':')) != NULL) {
	s = colon + 1;
	buf_append(&b, addr, (size_t) (s - addr));
    }
    for (p = s; *p; p++) {
	if (*p == '"') {
	    inq = !inq;
	    continue;
	}
	if (*p == '@' && !inq) {
	    at_pos = b.len;
	    bare_at = p;
	} else if (*p == '\\') {
	    if (p[1] == 0)
		continue;
	    p++;
	}
	buf_putc(&b, *p);
    }
    if (bare_at) {
	/* The domain as written, after the last unquoted "@". */
	b.len = at_pos;
	buf_puts(&b, bare_at);
    }
    buf_puts(&b, "");
    return (buf_steal(&b));
}

static void strip(BUF *b, size_t start, const A822 *addr, int *stripped);

/* External form of a chain: strings quoted again. */
static void external_text(BUF *b, const A822 *list, int header, int *stripped)
{
    size_t  start = b->len, addr_len = 0;
    const A822 *addr = NULL;

#define NONADDR_MAX 250
#define ENFORCE() do { \
	if (header && addr && b->len - addr_len > start + NONADDR_MAX) \
	    strip(b, start, addr, stripped); \
    } while (0)
#define RESET() do { start = b->len; addr = NULL; addr_len = 0; } while (0)

    for (const A822 *t = list; t; t = t->next) {
	switch (t->type) {
	case ',':
	    ENFORCE();
	    buf_putc(b, ',');
	    buf_putc(b, header ? '\n' : ' ');
	    RESET();
	    continue;
	case A822_ADDR:{
		BUF     in = BUF_INIT;
		size_t  before = b->len;

		addr = t;
		internal_text(&in, t->head);
		buf_puts(&in, "");
		quote_local(b, in.data);
		addr_len = b->len - before;
		buf_free(&in);
		break;
	    }
	case A822_ATOM:
	case A822_COMMENT:
	    buf_puts(b, t->text);
	    break;
	case A822_QSTRING:
	    buf_putc(b, '"');
	    quoted_copy(b, t->text, "\"\\\r\n");
	    buf_putc(b, '"');
	    break;
	case A822_DOMLIT:
	    buf_putc(b, '[');
	    quoted_copy(b, t->text, "\\\r\n");
	    buf_putc(b, ']');
	    break;
	case A822_STARTGRP:
	    buf_putc(b, ':');
	    break;
	case '<':
	    if (t->next && t->next->type == '>') {
		addr = t;
		addr_len = 0;
	    }
	    buf_putc(b, '<');
	    break;
	default:
	    buf_putc(b, (char) t->type);
	}
	if (space_after(t))
	    buf_putc(b, ' ');
    }
    ENFORCE();
#undef ENFORCE
#undef RESET
}

/* Too much text around one address: keep "<address>" only (Postfix, after CERT CA-2003-07). */
static void strip(BUF *b, size_t start, const A822 *addr, int *stripped)
{
    BUF     in = BUF_INIT;

    char   *shown;

    buf_puts(b, "");
    shown = str_printable(b->data + start);
    log_warn("cleanup", "stripping too many comments from address: %.100s...", shown);
    free(shown);
    b->len = start;
    buf_putc(b, '<');
    if (addr->head) {
	internal_text(&in, addr->head);
	buf_puts(&in, "");
	quote_local(b, in.data);
	buf_free(&in);
    }
    buf_putc(b, '>');
    if (stripped)
	*stripped = 1;
}

void    addr822_header_text(BUF *out, A822 *list, int *stripped)
{
    external_text(out, list, 1, stripped);
    buf_puts(out, "");
}

char   *addr822_addr_text(const A822 *addr)
{
    BUF     b = BUF_INIT;

    external_text(&b, addr->head, 0, NULL);
    buf_puts(&b, "");
    return (buf_steal(&b));
}

char   *addr822_addr_internal(const A822 *addr)
{
    BUF     b = BUF_INIT;

    internal_text(&b, addr->head);
    buf_puts(&b, "");
    return (buf_steal(&b));
}

void    addr822_addr_set(A822 *addr, const char *text)
{
    addr822_free(addr->head);
    /* As Postfix: the new tokens are a plain chain (no owner). */
    addr->head = scan(text, &addr->tail, 0);
    if (addr->head == NULL)
	addr->tail = NULL;
}
