/*
 * cleanup_mime - Postfix's MIME state machine (mime_state.c) reduced to
 * what header and body checks need: which header block a header belongs
 * to, and where the body lines are.  See cleanup_mime.h.
 *
 * States, as Postfix's: PRIMARY, MULTIPART, NESTED (a header block) and
 * BODY.  A header block ends at the first line that is not a header or a
 * continuation; at an empty line the Content-Type seen in the block
 * decides what follows (message/rfc822: a NESTED header block; anything
 * else: body).  In the body, a line "--B" for a boundary B on the stack
 * (inner ones popped) starts a MULTIPART header block, "--B--" pops B.
 */
#include <string.h>
#include <stdlib.h>

#include "util/util.h"
#include "cleanup/cleanup_mime.h"

enum { ST_PRIMARY, ST_MULTIPART, ST_NESTED, ST_BODY };
enum { CT_OTHER, CT_TEXT, CT_MESSAGE, CT_MULTIPART };
enum { SUB_OTHER, SUB_RFC822, SUB_GLOBAL, SUB_DIGEST };

typedef struct BOUND {
    char   *text;
    size_t  len;
    int     def_ctype, def_stype;		/* of the parts */
} BOUND;

typedef struct MIME {
    const CLEANUP_MIME_OPTS *o;
    const CLEANUP_MIME_CB *cb;
    void   *ctx;
    int     state;
    int     ctype, stype;			/* of the current entity */
    BOUND  *stack;				/* innermost last */
    int     depth;
    size_t  body_offset;
    BUF     raw;				/* the current header, as received */
    size_t  raw_limit;
    int     raw_cut;
} MIME;

size_t  cleanup_mime_header_name(const char *str, size_t len)
{
    size_t  n = 0, i;
    int     space = 0;

    for (i = 0; i < len; i++) {
	unsigned char c = (unsigned char) str[i];

	if (c == ':')
	    return (n);
	if (c == ' ' || c == '\t') {
	    if (n == 0)
		return (0);
	    space = 1;
	    continue;
	}
	if (c == 0 || c >= 0x80 || c < 0x20 || c == 0x7f || space)
	    return (0);
	n++;
    }
    return (0);
}

int     cleanup_mime_check_class(int cls, const char *text)
{
    static const char *const mime_names[] = {
	"Content-Description", "Content-Disposition", "Content-ID",
	"Content-Transfer-Encoding", "Content-Type", "MIME-Version",
    };
    size_t  n = cleanup_mime_header_name(text, strlen(text));

    for (size_t i = 0; i < ARRAY_LEN(mime_names); i++)
	if (n == strlen(mime_names[i]) && str_ncasecmp(text, mime_names[i], n) == 0)
	    return (MIME_HDR_MULTIPART);
    return (cls);
}

/*
 * RFC 2045 tokens of one ";"-separated segment of a Content-Type value, as
 * Postfix's header_token(): comments skipped, quoted strings unquoted,
 * tspecials single tokens.  Up to 3 kept; returns the count (all of them),
 * -1 at the end of the value.
 */
#define TOK_ATOM	1
#define TOK_QSTRING	2
typedef struct TOK {
    int     type;				/* TOK_ATOM, TOK_QSTRING, or the special */
    BUF     val;
} TOK;

static int ct_tokens(const char **cpp, TOK tok[3])
{
    const char *cp = *cpp;
    int     n = 0;
    static const char specials[] = "()<>@,;:\\\"/[]?=";

    for (int i = 0; i < 3; i++)
	buf_reset(&tok[i].val);
    if (*cp == 0)
	return (-1);
    while (*cp && *cp != ';') {
	unsigned char c = (unsigned char) *cp;
	TOK    *t = n < 3 ? &tok[n] : 0;

	if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
	    cp++;
	} else if (c == '(') {
	    int     level = 0;

	    for (; *cp; cp++) {
		if (*cp == '\\' && cp[1])
		    cp++;
		else if (*cp == '(')
		    level++;
		else if (*cp == ')' && --level == 0) {
		    cp++;
		    break;
		}
	    }
	} else if (c == '"') {
	    for (cp++; *cp && *cp != '"'; cp++) {
		if (*cp == '\\' && cp[1])
		    cp++;
		if (t)
		    buf_putc(&t->val, *cp);
	    }
	    if (*cp == '"')
		cp++;
	    if (t)
		t->type = TOK_QSTRING;
	    n++;
	} else if (strchr(specials, c)) {
	    if (t)
		t->type = c;
	    cp++;
	    n++;
	} else {
	    while (*cp && !strchr(specials, *cp) && *cp != ' ' && *cp != '\t'
		   && *cp != '\n' && *cp != '\r') {
		if (t)
		    buf_putc(&t->val, *cp);
		cp++;
	    }
	    if (t)
		t->type = TOK_ATOM;
	    n++;
	}
    }
    if (*cp == ';')
	cp++;
    *cpp = cp;
    return (n);
}

#define TOK_IS(t, s) ((t).type == TOK_ATOM && str_casecmp((t).val.data ? (t).val.data : "", (s)) == 0)

static void content_type(MIME *m, const char *text)
{
    const char *cp = strchr(text, ':');
    TOK     tok[3];
    int     n;

    if (cp == 0)
	return;
    cp++;
    memset(tok, 0, sizeof(tok));
    if ((n = ct_tokens(&cp, tok)) > 0) {
	if (TOK_IS(tok[0], "text")) {
	    m->ctype = CT_TEXT;
	    m->stype = SUB_OTHER;
	} else if (TOK_IS(tok[0], "message")) {
	    m->ctype = CT_MESSAGE;
	    m->stype = SUB_OTHER;
	    if (n >= 3 && tok[1].type == '/') {
		if (TOK_IS(tok[2], "rfc822"))
		    m->stype = SUB_RFC822;
		else if (TOK_IS(tok[2], "global"))
		    m->stype = SUB_GLOBAL;
	    }
	} else if (TOK_IS(tok[0], "multipart")) {
	    int     digest = n >= 3 && tok[1].type == '/' && TOK_IS(tok[2], "digest");

	    m->ctype = CT_MULTIPART;
	    /* Every boundary= parameter is pushed, as Postfix does. */
	    while ((n = ct_tokens(&cp, tok)) >= 0) {
		if (n >= 3 && TOK_IS(tok[0], "boundary") && tok[1].type == '=') {
		    BOUND  *b;

		    if (m->depth >= m->o->nesting_limit)
			continue;		/* Postfix: "MIME nesting exceeds safety limit" */
		    m->stack = xrealloc(m->stack, (size_t) (m->depth + 1) * sizeof(BOUND));
		    b = &m->stack[m->depth++];
		    b->text = xstrdup(tok[2].val.data ? tok[2].val.data : "");
		    b->len = strlen(b->text);
		    b->def_ctype = digest ? CT_MESSAGE : CT_TEXT;
		    b->def_stype = digest ? SUB_RFC822 : SUB_OTHER;
		}
	    }
	} else {
	    m->ctype = CT_OTHER;
	}
    }
    for (int i = 0; i < 3; i++)
	buf_free(&tok[i].val);
}

static void set_state(MIME *m, int state, int ctype, int stype)
{
    m->state = state;
    m->ctype = ctype;
    m->stype = stype;
}

/* The saved header goes out: classify, report. */
static void header_flush(MIME *m)
{
    BUF     text = BUF_INIT;
    const char *p, *end;
    size_t  nl;
    int     cls;

    if (m->raw.len == 0)
	return;
    p = m->raw.data;
    end = m->raw.data + m->raw.len;
    /* Postfix's text: the name, ":" and the rest; lines joined by "\n". */
    nl = cleanup_mime_header_name(p, m->raw.len);
    buf_append(&text, p, nl);
    p += nl;
    while (p < end && (*p == ' ' || *p == '\t'))
	p++;
    while (p < end) {
	const char *lf = memchr(p, '\n', (size_t) (end - p));
	const char *e = lf ? lf : end;
	size_t  l = (size_t) (e - p);

	if (l > 0 && p[l - 1] == '\r')
	    l--;
	buf_append(&text, p, l);
	p = lf ? lf + 1 : end;
	if (p < end)
	    buf_putc(&text, '\n');
    }
    buf_puts(&text, "");
    if (str_ncasecmp(text.data, "Content-Type", 12) == 0 && text.data[12] == ':')
	content_type(m, text.data);
    cls = m->state == ST_PRIMARY ? MIME_HDR_PRIMARY
	: m->state == ST_NESTED ? MIME_HDR_NESTED : MIME_HDR_MULTIPART;
    if (m->cb->header)
	m->cb->header(m->ctx, cls, text.data, m->raw.data, m->raw.len);
    buf_free(&text);
    buf_reset(&m->raw);
    m->raw_cut = 0;
}

static void header_add(MIME *m, const char *line, size_t llen, int has_eol)
{
    size_t  limit = m->raw_limit;

    if (m->raw_cut)
	return;
    if (m->raw.len == 0) {
	/* A cut never goes through the name: the text stays a header. */
	const char *colon = memchr(line, ':', llen);

	if (colon && (size_t) (colon - line) + 1 > limit)
	    limit = (size_t) (colon - line) + 1;
    }
    if (m->raw.len + llen > limit) {
	buf_append(&m->raw, line, limit > m->raw.len ? limit - m->raw.len : 0);
	if (m->raw.len == 0 || m->raw.data[m->raw.len - 1] != '\n')
	    buf_puts(&m->raw, "\r\n");
	m->raw_cut = 1;
    } else {
	buf_append(&m->raw, line, llen);
	if (!has_eol)
	    buf_puts(&m->raw, "\r\n");
    }
}

static void body_out(MIME *m, const char *rec, size_t len, const char *eol, size_t eollen)
{
    if (m->cb->body)
	m->cb->body(m->ctx, rec, len, m->body_offset, eol, eollen);
    m->body_offset += len + 1;
}

static void bound_pop(MIME *m)
{
    if (m->depth > 0)
	free(m->stack[--m->depth].text);
}

/* One body line (text without its end; eol its end). */
static void body_line(MIME *m, const char *text, size_t tlen, const char *eol, size_t eollen)
{
    size_t  limit = m->o->line_limit;
    size_t  off = 0;

    if (m->depth > 0 && tlen > 2 && text[0] == '-' && text[1] == '-') {
	for (int i = m->depth - 1; i >= 0; i--) {
	    BOUND  *b = &m->stack[i];

	    if (tlen >= 2 + b->len && memcmp(text + 2, b->text, b->len) == 0) {
		int     close = tlen >= 4 + b->len && memcmp(text + 2 + b->len, "--", 2) == 0;
		int     dct = b->def_ctype, dst = b->def_stype;

		while (m->depth - 1 > i)
		    bound_pop(m);
		if (close) {
		    bound_pop(m);
		    set_state(m, ST_BODY, CT_OTHER, SUB_OTHER);
		} else {
		    set_state(m, ST_MULTIPART, dct, dst);
		}
		break;
	    }
	}
    }
    /* Records of at most line_limit bytes; only the last one has the line end. */
    do {
	size_t  n = tlen - off;

	if (limit > 0 && n > limit) {
	    body_out(m, text + off, limit, 0, 0);
	    off += limit;
	    continue;
	}
	body_out(m, text + off, n, eol, eollen);
	off = tlen;
    } while (off < tlen);
}

size_t  cleanup_mime_run(const char *in, size_t len, const CLEANUP_MIME_OPTS *opts,
			         const CLEANUP_MIME_CB *cb, void *ctx)
{
    CLEANUP_MIME_OPTS o = *opts;
    MIME    m;
    size_t  pos = 0;
    int     primary_done = 0;

    if (o.header_limit == 0)
	o.header_limit = 102400;
    if (o.nesting_limit <= 0)
	o.nesting_limit = 100;
    memset(&m, 0, sizeof(m));
    m.o = &o;
    m.cb = cb;
    m.ctx = ctx;
    m.raw_limit = o.header_limit;
    set_state(&m, ST_PRIMARY, CT_TEXT, SUB_OTHER);

    while (pos < len) {
	const char *line = in + pos;
	const char *lf = memchr(line, '\n', len - pos);
	size_t  llen = lf ? (size_t) (lf - line) + 1 : len - pos;
	size_t  tlen = llen;
	const char *eol;

	if (lf) {
	    tlen--;
	    if (tlen > 0 && line[tlen - 1] == '\r')
		tlen--;
	}
	eol = line + tlen;

	if (m.state != ST_BODY) {
	    if (m.raw.len > 0 && (line[0] == ' ' || line[0] == '\t')) {
		header_add(&m, line, llen, lf != 0);
		pos += llen;
		continue;
	    }
	    header_flush(&m);
	    if (cleanup_mime_header_name(line, tlen) > 0) {
		header_add(&m, line, llen, lf != 0);
		pos += llen;
		continue;
	    }
	    /* The header block ends here. */
	    if (m.state == ST_PRIMARY) {
		primary_done = 1;
		if (cb->header_end && cb->header_end(ctx)) {
		    while (m.depth > 0)
			bound_pop(&m);
		    free(m.stack);
		    buf_free(&m.raw);
		    return (pos);
		}
	    }
	    if (tlen == 0) {
		m.body_offset = 0;
		if (m.ctype == CT_MESSAGE && (m.stype == SUB_RFC822 || m.stype == SUB_GLOBAL))
		    set_state(&m, ST_NESTED, CT_TEXT, SUB_OTHER);
		else if (m.ctype == CT_MULTIPART)
		    set_state(&m, ST_BODY, CT_OTHER, SUB_OTHER);
		else
		    m.state = ST_BODY;
		/* The empty line is a body record (in NESTED state, as Postfix). */
		body_out(&m, line, 0, eol, llen - tlen);
		pos += llen;
		continue;
	    }
	    if (m.state == ST_PRIMARY)
		body_out(&m, "", 0, "\r\n", 2);	/* the missing empty line */
	    m.state = ST_BODY;
	}
	body_line(&m, line, tlen, eol, llen - tlen);
	pos += llen;
    }
    header_flush(&m);
    if (!primary_done && cb->header_end)
	(void) cb->header_end(ctx);
    while (m.depth > 0)
	bound_pop(&m);
    free(m.stack);
    buf_free(&m.raw);
    return (len);
}
