/*
 * table_regexp - regexp: (POSIX regular expressions, the same regcomp(3)
 * Postfix uses) and pcre: (PCRE2) pattern tables, in Postfix's file syntax
 * (regexp_table(5), pcre_table(5)):
 *
 *   /pattern/flags result          first matching rule wins
 *   !/pattern/flags result         matches when the pattern does not
 *   /pat1/!/pat2/ result           regexp only: pat1 matches, pat2 does not
 *   if /pattern/flags  ...  endif  rules inside apply only when it matches
 *
 * Any non-alphanumeric character may delimit a pattern; flags toggle
 * Postfix's defaults: regexp i (case-insensitive, on), x (extended, on),
 * m (newline); pcre i (caseless, on), s (dotall, on), m, x, A, E, U, X.
 * In the result $1..$99, ${n} and $(n) insert matched text (an empty or
 * unmatched group inserts nothing); $$ is a dollar sign.  Comments, blank
 * lines and continuation lines as in every Postfix table file.  Inline:
 * regexp:{ {/a/ x}, {/b/ y} }.
 *
 * Pattern tables are queried with whole keys only (TABLE_PARTIAL skips
 * them), and keys are not folded: case is the patterns' business.
 *
 * Where Postfix warns and skips a broken rule, relayq refuses the table:
 * a clear error naming file and line (fatal at start, last good contents
 * kept on reload), since a silently missing rule changes routing or
 * access decisions.  What Postfix accepts with a warning (a rule without
 * result text, extra text after if/endif) is accepted here too, with the
 * same warning.
 */
#include <ctype.h>
#include <stdarg.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "table/table_priv.h"

enum {
    OP_MATCH, OP_IF, OP_ENDIF,
};

typedef struct PAT {
    int     match;			/* 1: must match; 0: must not */
    int     set;
    regex_t re;				/* regexp */
    pcre2_code *pc;			/* pcre */
    pcre2_match_data *md;
} PAT;

typedef struct SEG {
    char   *text;			/* literal, or NULL for a group */
    int     group;
} SEG;

typedef struct RULE {
    int     op;
    int     lineno;
    PAT     p1, p2;
    SEG    *seg;
    int     nseg;
    int     max_sub;
    int     endif;			/* OP_IF: index of its ENDIF, -1 none */
} RULE;

typedef struct RX {
    int     pcre;
    RULE   *rule;
    int     n;
    int     cap;
    int     nesting;
    int    *stack;			/* open IF rule indexes */
    regmatch_t pm[100];
    /* loading */
    TABLE  *t;
    char   *err;
    size_t  errlen;
    int     bad;
    const char *where;			/* file name or spec */
} RX;

static void pat_free(RX *x, PAT *p)
{
    if (!p->set)
	return;
    if (x->pcre) {
	pcre2_match_data_free(p->md);
	pcre2_code_free(p->pc);
    } else {
	regfree(&p->re);
    }
    p->set = 0;
}

static void rx_free(void *ptr)
{
    RX     *x = ptr;

    if (x == NULL)
	return;
    for (int i = 0; i < x->n; i++) {
	pat_free(x, &x->rule[i].p1);
	pat_free(x, &x->rule[i].p2);
	for (int k = 0; k < x->rule[i].nseg; k++)
	    free(x->rule[i].seg[k].text);
	free(x->rule[i].seg);
    }
    free(x->rule);
    free(x->stack);
    free(x);
}

/* One load error: the first one is kept and stops the load. */
static int rx_fail(RX *x, int lineno, const char *fmt, ...) UTIL_PRINTF(3, 4);

static int rx_fail(RX *x, int lineno, const char *fmt, ...)
{
    char    msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!x->bad)
	snprintf(x->err, x->errlen, "%s map %s, line %d: %s", x->pcre ? "pcre" : "regexp",
		 x->where, lineno, msg);
    x->bad = 1;
    return (-1);
}

static void rx_warn(RX *x, int lineno, const char *msg, const char *a)
{
    char    m[512];

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(m, sizeof(m), msg, a);	/* a fixed text of this file */
#pragma GCC diagnostic pop
    table_warnf("%s map %s, line %d: %s", x->pcre ? "pcre" : "regexp", x->where, lineno, m);
}

/*
 * Parse "[!...]<d>pattern<d>flags" at *pp (modified in place) and compile
 * it.  want_subs: the result uses $n.
 */
static int get_pat(RX *x, int lineno, char **pp, PAT *pat, int max_sub, int *nsub)
{
    char   *p = *pp, delim, *re;
    int     options;

    pat->match = 1;
    for (;; p++) {
	if (*p == '!')
	    pat->match = !pat->match;
	else if (!isspace((unsigned char) *p))
	    break;
    }
    if (*p == 0)
	return (rx_fail(x, lineno, "no regexp"));
    delim = *p++;
    re = p;
    while (*p) {
	if (*p == '\\') {
	    if (p[1])
		p++;
	    else
		break;
	} else if (*p == delim) {
	    break;
	}
	p++;
    }
    if (*p == 0)
	return (rx_fail(x, lineno, "no closing regexp delimiter \"%c\"", delim));
    *p++ = 0;
    if (x->pcre) {
	int     errcode;
	PCRE2_SIZE erroff;
	uint32_t cc;

	options = PCRE2_CASELESS | PCRE2_DOTALL;
	for (; *p && !isspace((unsigned char) *p); p++) {
	    switch (*p) {
	    case 'i':
		options ^= PCRE2_CASELESS;
		break;
	    case 'm':
		options ^= PCRE2_MULTILINE;
		break;
	    case 's':
		options ^= PCRE2_DOTALL;
		break;
	    case 'x':
		options ^= PCRE2_EXTENDED;
		break;
	    case 'A':
		options ^= PCRE2_ANCHORED;
		break;
	    case 'E':
		options ^= PCRE2_DOLLAR_ENDONLY;
		break;
	    case 'U':
		options ^= PCRE2_UNGREEDY;
		break;
	    case 'X':
		break;				/* obsolete in PCRE2, as Postfix */
	    default:
		return (rx_fail(x, lineno, "unknown regexp option \"%c\"", *p));
	    }
	}
	if ((pat->pc = pcre2_compile((PCRE2_SPTR) re, PCRE2_ZERO_TERMINATED, options,
				     &errcode, &erroff, NULL)) == NULL) {
	    PCRE2_UCHAR ebuf[256];

	    pcre2_get_error_message(errcode, ebuf, sizeof(ebuf));
	    return (rx_fail(x, lineno, "error in regex at offset %lu: %s",
			    (unsigned long) erroff, (const char *) ebuf));
	}
	pat->md = pcre2_match_data_create_from_pattern(pat->pc, NULL);
	pat->set = 1;
	pcre2_pattern_info(pat->pc, PCRE2_INFO_CAPTURECOUNT, &cc);
	*nsub = (int) cc;
    } else {
	int     rc;

	options = REG_EXTENDED | REG_ICASE;
	for (; *p && !isspace((unsigned char) *p) && *p != '!'; p++) {
	    switch (*p) {
	    case 'i':
		options ^= REG_ICASE;
		break;
	    case 'm':
		options ^= REG_NEWLINE;
		break;
	    case 'x':
		options ^= REG_EXTENDED;
		break;
	    default:
		return (rx_fail(x, lineno, "unknown regexp option \"%c\"", *p));
	    }
	}
	if ((rc = regcomp(&pat->re, re, options)) != 0) {
	    char    ebuf[256];

	    regerror(rc, &pat->re, ebuf, sizeof(ebuf));
	    regfree(&pat->re);
	    return (rx_fail(x, lineno, "%s", ebuf));
	}
	pat->set = 1;
	*nsub = (int) pat->re.re_nsub;
    }
    *pp = p;
    return (0);
}

/* Postfix's mac_parse over the result: literals, $n, ${n}, $(n), $$. */
static int parse_result(RX *x, int lineno, const char *s, RULE *r)
{
    BUF     lit = BUF_INIT;
    const char *vp = s;

    while (*vp) {
	if (*vp != '$') {
	    buf_putc(&lit, *vp++);
	} else if (vp[1] == '$') {
	    buf_putc(&lit, '$');
	    vp += 2;
	} else {
	    char    name[64];
	    size_t  nlen;
	    const char *ep;

	    vp++;
	    if (*vp == '{' || *vp == '(') {
		char    open = *vp, close = *vp == '{' ? '}' : ')';
		int     level = 1;

		vp++;
		for (ep = vp; level > 0; ep++) {
		    if (*ep == 0) {
			buf_free(&lit);
			return (rx_fail(x, lineno, "truncated macro reference: \"%s\"", s));
		    }
		    if (*ep == open)
			level++;
		    if (*ep == close)
			level--;
		}
		nlen = ep - vp - 1;
	    } else {
		for (ep = vp; isalnum((unsigned char) *ep) || *ep == '_'; ep++)
		    ;
		nlen = ep - vp;
	    }
	    if (nlen == 0 || nlen >= sizeof(name)) {
		buf_free(&lit);
		return (rx_fail(x, lineno, "bad replacement syntax: \"%s\"", s));
	    }
	    memcpy(name, vp, nlen);
	    name[nlen] = 0;
	    vp = ep;
	    for (size_t i = 0; i < nlen; i++)
		if (!isdigit((unsigned char) name[i])) {
		    buf_free(&lit);
		    return (rx_fail(x, lineno, "non-numeric replacement index \"%s\"", name));
		}
	    if (atoi(name) < 1 || atoi(name) > 99) {
		buf_free(&lit);
		return (rx_fail(x, lineno, "out of range replacement index \"%s\"", name));
	    }
	    if (lit.len) {
		r->seg = xrealloc(r->seg, (r->nseg + 1) * sizeof(SEG));
		r->seg[r->nseg].text = buf_steal(&lit);
		r->seg[r->nseg++].group = 0;
	    }
	    r->seg = xrealloc(r->seg, (r->nseg + 1) * sizeof(SEG));
	    r->seg[r->nseg].text = NULL;
	    r->seg[r->nseg++].group = atoi(name);
	    if (atoi(name) > r->max_sub)
		r->max_sub = atoi(name);
	}
    }
    if (lit.len || r->nseg == 0) {
	r->seg = xrealloc(r->seg, (r->nseg + 1) * sizeof(SEG));
	r->seg[r->nseg].text = lit.data ? buf_steal(&lit) : xstrdup("");
	r->seg[r->nseg++].group = 0;
    }
    buf_free(&lit);
    return (0);
}

static RULE *new_rule(RX *x, int op, int lineno)
{
    RULE   *r;

    if (x->n == x->cap) {
	x->cap = x->cap ? 2 * x->cap : 16;
	x->rule = xrealloc(x->rule, x->cap * sizeof(RULE));
    }
    r = &x->rule[x->n];
    memset(r, 0, sizeof(*r));
    r->op = op;
    r->lineno = lineno;
    r->endif = -1;
    return (r);
}

/* One logical line (trailing white space already trimmed). */
static int rx_line(void *ptr, char *line, size_t len, int lineno)
{
    RX     *x = ptr;
    char   *p = line, *e = line + strlen(line);
    int     nsub = 0, nsub2 = 0;

    while (e > p && isspace((unsigned char) e[-1]))
	*--e = 0;
    if (*p == 0)
	return (0);
    if (!isalnum((unsigned char) *p)) {
	RULE   *r = new_rule(x, OP_MATCH, lineno);

	x->n++;
	if (get_pat(x, lineno, &p, &r->p1, 1, &nsub) < 0)
	    return (-1);
	if (!x->pcre && *p == '!' && get_pat(x, lineno, &p, &r->p2, 0, &nsub2) < 0)
	    return (-1);
	while (isspace((unsigned char) *p))
	    p++;
	if (*p == 0)
	    rx_warn(x, lineno, "no replacement text: using empty string%s", "");
	if (parse_result(x, lineno, p, r) < 0)
	    return (-1);
	if (r->max_sub > 0 && r->p1.match == 0)
	    return (rx_fail(x, lineno, "$number found in negative match replacement text"));
	if (r->max_sub > nsub)
	    return (rx_fail(x, lineno, "out of range replacement index \"%d\"", r->max_sub));
	return (0);
    }
    if (str_ncasecmp(p, "if", 2) == 0 && !isalnum((unsigned char) p[2])) {
	RULE   *r = new_rule(x, OP_IF, lineno);

	x->n++;
	p += 2;
	while (isspace((unsigned char) *p))
	    p++;
	if (get_pat(x, lineno, &p, &r->p1, 0, &nsub) < 0)
	    return (-1);
	while (isspace((unsigned char) *p))
	    p++;
	if (*p)
	    rx_warn(x, lineno, "ignoring extra text after IF statement: \"%s\"", p);
	x->stack = xrealloc(x->stack, (x->nesting + 1) * sizeof(int));
	x->stack[x->nesting++] = x->n - 1;
	return (0);
    }
    if (str_ncasecmp(p, "endif", 5) == 0 && !isalnum((unsigned char) p[5])) {
	if (x->nesting == 0)
	    return (rx_fail(x, lineno, "ENDIF without matching IF"));
	p += 5;
	while (isspace((unsigned char) *p))
	    p++;
	if (*p)
	    rx_warn(x, lineno, "ignoring extra text after ENDIF%s", "");
	new_rule(x, OP_ENDIF, lineno);
	x->n++;
	x->rule[x->stack[--x->nesting]].endif = x->n - 1;
	return (0);
    }
    return (rx_fail(x, lineno, "unrecognized request: \"%.40s\"", p));
}

static void rx_srcwarn(void *ctx, const char *msg, int skipped)
{
    RX     *x = ctx;

    if (skipped) {
	if (!x->bad)
	    snprintf(x->err, x->errlen, "%s", msg);
	x->bad = 1;
    } else {
	table_warnf("%s", msg);
    }
}

static int rx_element(void *ctx, const char *s, size_t len)
{
    RX     *x = ctx;
    char   *line = xstrndup(s, len);
    int     rc = rx_line(x, line, len, 1);

    free(line);
    return (rc);
}

static void *rx_load(TABLE *t, char *err, size_t errlen)
{
    RX     *x = xcalloc(1, sizeof(*x));
    int     rc;

    x->pcre = strcmp(t->type, "pcre") == 0;
    x->t = t;
    x->err = err;
    x->errlen = errlen;
    {
	const char *n = t->name;

	while (isspace((unsigned char) *n))
	    n++;
	if (*n == '{') {
	    x->where = t->spec;
	    rc = table_split_braced(t, rx_element, x, err, errlen);
	} else {
	    x->where = t->name;
	    rc = table_read_lines(t->name, rx_line, x, rx_srcwarn, err, errlen);
	}
    }
    if (rc == 0 && !x->bad && x->nesting > 0)
	rx_fail(x, x->rule[x->stack[x->nesting - 1]].lineno, "IF has no matching ENDIF");
    if (rc < 0 || x->bad) {
	rx_free(x);
	return (NULL);
    }
    return (x);
}

/* Does the pattern decide "true" for key?  Engine errors count as false, as Postfix. */
static int pat_true(RX *x, PAT *p, const char *key, size_t klen, int nsub, int lineno,
		            const char *where)
{
    int     rc;

    if (x->pcre) {
	rc = pcre2_match(p->pc, (PCRE2_SPTR) key, klen, 0, 0, p->md, NULL);
	if (rc >= 0)
	    return (p->match);
	if (rc == PCRE2_ERROR_NOMATCH)
	    return (!p->match);
	{
	    PCRE2_UCHAR ebuf[256];

	    pcre2_get_error_message(rc, ebuf, sizeof(ebuf));
	    table_warnf("pcre map %s, line %d: %s", where, lineno, (char *) ebuf);
	}
	return (0);
    }
    rc = regexec(&p->re, key, nsub > 0 ? (size_t) nsub + 1 : 0, nsub > 0 ? x->pm : NULL, 0);
    if (rc == 0)
	return (p->match);
    if (rc == REG_NOMATCH)
	return (!p->match);
    {
	char    ebuf[256];

	regerror(rc, &p->re, ebuf, sizeof(ebuf));
	table_warnf("regexp map %s, line %d: %s", where, lineno, ebuf);
    }
    return (0);
}

static int rx_lookup(TABLE *t, void *priv, const char *key, const char **val,
		             char *err, size_t errlen)
{
    RX     *x = priv;
    size_t  klen = strlen(key);
    const char *where = t->name[0] == '{' ? t->spec : t->name;

    for (int i = 0; i < x->n; i++) {
	RULE   *r = &x->rule[i];

	switch (r->op) {
	case OP_MATCH:
	    if (!pat_true(x, &r->p1, key, klen, r->max_sub, r->lineno, where))
		continue;
	    if (r->p2.set && !pat_true(x, &r->p2, key, klen, 0, r->lineno, where))
		continue;
	    {
		BUF     out = BUF_INIT;
		PCRE2_SIZE *ov = x->pcre ? pcre2_get_ovector_pointer(r->p1.md) : NULL;
		uint32_t npairs = x->pcre ? pcre2_get_ovector_count(r->p1.md) : 0;

		for (int k = 0; k < r->nseg; k++) {
		    int     g = r->seg[k].group;

		    if (r->seg[k].text) {
			buf_puts(&out, r->seg[k].text);
		    } else if (x->pcre) {
			if ((uint32_t) g < npairs && ov[2 * g] != PCRE2_UNSET
			    && ov[2 * g + 1] > ov[2 * g])
			    buf_append(&out, key + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
		    } else if (x->pm[g].rm_so >= 0 && x->pm[g].rm_eo > x->pm[g].rm_so) {
			buf_append(&out, key + x->pm[g].rm_so, x->pm[g].rm_eo - x->pm[g].rm_so);
		    }
		}
		table_set_result(t, out.data ? out.data : "", out.len, val);
		buf_free(&out);
	    }
	    return (TABLE_FOUND);
	case OP_IF:
	    if (pat_true(x, &r->p1, key, klen, 0, r->lineno, where))
		continue;
	    if (r->endif < 0)
		return (TABLE_NOTFOUND);
	    i = r->endif;
	    continue;
	case OP_ENDIF:
	    continue;
	}
    }
    return (TABLE_NOTFOUND);
}

/* Every rule's result as written ($n for a group), with its line number. */
static int rx_results(TABLE *t, void *priv, int (*cb) (void *, int, const char *), void *ctx)
{
    RX     *x = priv;
    int     rc = 0;

    for (int i = 0; x && rc == 0 && i < x->n; i++) {
	RULE   *r = &x->rule[i];
	BUF     b = BUF_INIT;

	if (r->op != OP_MATCH)
	    continue;
	for (int k = 0; k < r->nseg; k++) {
	    if (r->seg[k].text)
		buf_puts(&b, r->seg[k].text);
	    else
		buf_printf(&b, "${%d}", r->seg[k].group);
	}
	buf_puts(&b, "");
	rc = cb(ctx, r->lineno, b.data);
	buf_free(&b);
    }
    return (rc);
}

const TABLE_OPS table_ops_regexp = {
    "regexp", rx_load, rx_lookup, rx_free, TABLE_OPS_PATTERN | TABLE_OPS_FILE, NULL, rx_results,
};

const TABLE_OPS table_ops_pcre = {
    "pcre", rx_load, rx_lookup, rx_free, TABLE_OPS_PATTERN | TABLE_OPS_FILE, NULL, rx_results,
};
