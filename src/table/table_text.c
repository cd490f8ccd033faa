/*
 * table_text - the tables held in memory: inline:{...}, texthash:/path,
 * static:value, and the combinations unionmap:{...} and pipemap:{...};
 * and postmap(1)'s source-file reader shared with table_build().
 *
 * Where Postfix only warns about a malformed texthash line and skips it,
 * relayq refuses the table (a clear error at start, the last good
 * contents kept on reload): a routing table with a silently missing line
 * is worse than one that is refused.  Duplicate keys are an error, as in
 * Postfix's texthash.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "table/table_priv.h"

/* ---- postmap's source format ----------------------------------------- */

/*
 * Read one logical line as Postfix's readllines(): skip comment and blank
 * lines, join lines that start with white space to the previous one.
 * Returns 0 at EOF; *first gets the line number where it started.
 */
static int read_logical(FILE *fp, BUF *b, int *lineno, int *first,
			        void (*warn) (void *, const char *, int), void *ctx, const char *path)
{
    int     ch, next;
    size_t  start;

    buf_reset(b);
    for (;;) {
	start = b->len;
	while ((ch = getc(fp)) != EOF && ch != '\n')
	    buf_putc(b, ch);
	if (ch == '\n' || b->len > start)
	    *lineno += 1;
	/* A '\r' before '\n' is kept, as Postfix does; so is a NUL byte. */
	{
	    size_t  i = start;

	    while (i < b->len && isspace((unsigned char) b->data[i]))
		i++;
	    if (i == b->len || b->data[i] == '#') {
		b->len = start;
		if (b->data)
		    b->data[start] = 0;
	    }
	}
	if (start == 0)
	    *first = *lineno;
	if (ch == EOF)
	    break;
	if (b->len > 0) {
	    if ((next = getc(fp)) != EOF)
		ungetc(next, fp);
	    if (next != '#' && (next == EOF || !isspace(next)))
		break;
	}
    }
    if (b->len > 0 && isspace((unsigned char) b->data[0])) {
	if (warn) {
	    char    msg[512];

	    snprintf(msg, sizeof(msg), "%s: logical line must not start with whitespace: "
		     "\"%.30s%s\"", path, b->data, b->len > 30 ? "..." : "");
	    warn(ctx, msg, 1);
	}
	return (read_logical(fp, b, lineno, first, warn, ctx, path));
    }
    return (b->len > 0);
}

typedef struct SRC_CTX {
    const char *path;
    TABLE_SRC_CB cb;
    void   *ctx;
    void    (*warn) (void *ctx, const char *msg, int skipped);
} SRC_CTX;

static int source_line(void *ptr, char *line, size_t len, int first);

int     table_read_lines(const char *path, TABLE_LINE_CB cb, void *ctx,
			         void (*warn) (void *ctx, const char *msg, int skipped),
			         char *err, size_t errlen)
{
    FILE   *fp;
    BUF     b = BUF_INIT;
    int     lineno = 0, first = 0, rc = 0;
    void   *wctx = ctx;

    if (strcmp(path, "-") == 0)
	fp = stdin;
    else if ((fp = fopen(path, "r")) == NULL) {
	snprintf(err, errlen, "open %s: %s", path, strerror(errno));
	return (-1);
    }
    /* postmap's reader hands its own context to warn. */
    if (cb == source_line)
	wctx = ((SRC_CTX *) ctx)->ctx;
    while (read_logical(fp, &b, &lineno, &first, warn, wctx, path))
	if ((rc = cb(ctx, b.data, b.len, first)) < 0)
	    break;
    if (rc == 0 && ferror(fp)) {
	snprintf(err, errlen, "read %s: %s", path, strerror(errno));
	rc = -1;
    }
    buf_free(&b);
    if (fp != stdin)
	fclose(fp);
    return (rc);
}

static int source_line(void *ptr, char *line, size_t len, int first)
{
    SRC_CTX *sc = ptr;
    char   *key = line, *value;
    int     in_quotes = 0;
    char    msg[1024];

    if (memchr(line, 0, len)) {
	snprintf(msg, sizeof(msg), "%s, line %d: text after null byte may be ignored",
		 sc->path, first);
	if (sc->warn)
	    sc->warn(sc->ctx, msg, 0);
    }
    for (value = key; *value; value++) {
	if (*value == '\\') {
	    if (*++value == 0)
		break;
	} else if (isspace((unsigned char) *value)) {
	    if (!in_quotes)
		break;
	} else if (*value == '"') {
	    in_quotes = !in_quotes;
	}
    }
    if (in_quotes) {
	snprintf(msg, sizeof(msg), "%s, line %d: unbalanced '\"' in '%s' -- ignoring this line",
		 sc->path, first, line);
	if (sc->warn)
	    sc->warn(sc->ctx, msg, 1);
	return (0);
    }
    if (*value)
	*value++ = 0;
    while (isspace((unsigned char) *value))
	value++;
    {
	char   *e = value + strlen(value);

	while (e > value && isspace((unsigned char) e[-1]))
	    *--e = 0;
    }
    if (*key == 0 || *value == 0) {
	snprintf(msg, sizeof(msg), "%s, line %d: expected format: key whitespace value",
		 sc->path, first);
	if (sc->warn)
	    sc->warn(sc->ctx, msg, 1);
	return (0);
    }
    if (key[strlen(key) - 1] == ':') {
	snprintf(msg, sizeof(msg), "%s, line %d: record is in \"key: value\" format; "
		 "is this an alias file?", sc->path, first);
	if (sc->warn)
	    sc->warn(sc->ctx, msg, 0);
    }
    return (sc->cb(sc->ctx, key, value, first));
}

int     table_read_source(const char *path, TABLE_SRC_CB cb, void *ctx,
			          void (*warn) (void *ctx, const char *msg, int skipped),
			          char *err, size_t errlen)
{
    SRC_CTX sc = {path, cb, ctx, warn};

    return (table_read_lines(path, source_line, &sc, warn, err, errlen));
}

/* ---- texthash --------------------------------------------------------- */

typedef struct THASH_CTX {
    TABLE  *t;
    TABLE_HT *h;
    char   *err;
    size_t  errlen;
    int     bad;
} THASH_CTX;

static void thash_warn(void *ptr, const char *msg, int skipped)
{
    THASH_CTX *c = ptr;

    if (!skipped)
	return;

    if (!c->bad)
	snprintf(c->err, c->errlen, "%s", msg);
    c->bad = 1;
}

static int thash_add(void *ptr, const char *key, const char *val, int lineno)
{
    THASH_CTX *c = ptr;
    char   *k = xstrdup(key);

    if (c->t->flags & TABLE_FLAG_FOLD)
	str_lower(k);
    if (!table_ht_add(c->h, k, val)) {
	snprintf(c->err, c->errlen, "%s, line %d: duplicate entry: \"%s\"", c->t->name, lineno, k);
	c->bad = 1;
    }
    free(k);
    return (c->bad ? -1 : 0);
}

static void *thash_load(TABLE *t, char *err, size_t errlen)
{
    THASH_CTX c = {t, table_ht_create(), err, errlen, 0};

    if (table_read_source(t->name, thash_add, &c, thash_warn, err, errlen) < 0 || c.bad) {
	table_ht_free(c.h);
	return (NULL);
    }
    return (c.h);
}

static int ht_lookup(TABLE *t, void *priv, const char *key, const char **val,
		             char *err, size_t errlen)
{
    BUF     tmp = BUF_INIT;
    const char *v = table_ht_get(priv, table_fold_key(t, key, &tmp));

    buf_free(&tmp);
    if (v == NULL)
	return (TABLE_NOTFOUND);
    *val = v;
    return (TABLE_FOUND);
}

const TABLE_OPS table_ops_texthash = {
    "texthash", thash_load, ht_lookup, table_ht_free, TABLE_OPS_FILE, NULL, NULL,
};

/* ---- inline ----------------------------------------------------------- */

static void span_trim(const char **s, size_t *len)
{
    while (*len > 0 && isspace((unsigned char) **s))
	(*s)++, (*len)--;
    while (*len > 0 && isspace((unsigned char) (*s)[*len - 1]))
	(*len)--;
}

/*
 * The body of "{ ... }" in spec: *body and *len, braces and surrounding
 * white space removed.  -1 when spec is not braced.
 */
static int braced(const char *spec, const char **body, size_t *len)
{
    const char *cp = spec, *end;

    while (isspace((unsigned char) *cp))
	cp++;
    end = cp + strlen(cp);
    while (end > cp && isspace((unsigned char) end[-1]))
	end--;
    if (*cp != '{' || end - cp < 2 || end[-1] != '}')
	return (-1);
    *body = cp + 1;
    *len = end - cp - 2;
    return (0);
}

/*
 * Split a braced body into elements: separated by commas and/or white
 * space; a {...} element may hold both.  cb gets each element.
 */
static int split_elements(const char *cp, size_t len,
		            int (*cb) (void *, const char *, size_t), void *ctx,
			          const char *spec, char *err, size_t errlen)
{
    const char *end = cp + len, *start;

    while (cp < end) {
	if (isspace((unsigned char) *cp) || *cp == ',') {
	    cp++;
	    continue;
	}
	if (*cp == '{') {
	    int     depth = 1;

	    start = ++cp;
	    while (cp < end && depth > 0) {
		if (*cp == '{')
		    depth++;
		else if (*cp == '}')
		    depth--;
		cp++;
	    }
	    if (depth > 0) {
		snprintf(err, errlen, "%s: missing '}'", spec);
		return (-1);
	    }
	    if (cb(ctx, start, cp - 1 - start) < 0)
		return (-1);
	    continue;
	}
	start = cp;
	{
	    int     depth = 0;

	    while (cp < end && (depth > 0 || (!isspace((unsigned char) *cp) && *cp != ','))) {
		if (*cp == '{')
		    depth++;
		else if (*cp == '}' && depth > 0)
		    depth--;
		cp++;
	    }
	}
	if (cb(ctx, start, cp - start) < 0)
	    return (-1);
    }
    return (0);
}

typedef struct INLINE_CTX {
    TABLE  *t;
    TABLE_HT *h;
    char   *err;
    size_t  errlen;
} INLINE_CTX;

static int inline_element(void *ptr, const char *s, size_t len)
{
    INLINE_CTX *c = ptr;
    const char *eq = memchr(s, '=', len);
    const char *k = s, *v;
    size_t  klen, vlen;
    char   *key, *val;
    int     ok;

    if (eq == NULL) {
	snprintf(c->err, c->errlen, "%s: missing '=' in \"%.*s\" "
		 "(protect white space with { key = value })", c->t->spec, (int) len, s);
	return (-1);
    }
    klen = eq - s;
    v = eq + 1;
    vlen = len - klen - 1;
    span_trim(&k, &klen);
    span_trim(&v, &vlen);
    if (klen == 0) {
	snprintf(c->err, c->errlen, "%s: empty key", c->t->spec);
	return (-1);
    }
    key = xstrndup(k, klen);
    val = xstrndup(v, vlen);
    if (c->t->flags & TABLE_FLAG_FOLD)
	str_lower(key);
    ok = table_ht_add(c->h, key, val);
    if (!ok)
	snprintf(c->err, c->errlen, "%s: duplicate key \"%s\"", c->t->spec, key);
    free(key);
    free(val);
    return (ok ? 0 : -1);
}

static void *inline_load(TABLE *t, char *err, size_t errlen)
{
    const char *body;
    size_t  len;
    INLINE_CTX c = {t, NULL, err, errlen};

    if (braced(t->name, &body, &len) < 0) {
	snprintf(err, errlen, "%s: expected inline:{ key=value, ... }", t->spec);
	return (NULL);
    }
    c.h = table_ht_create();
    if (split_elements(body, len, inline_element, &c, t->spec, err, errlen) < 0) {
	table_ht_free(c.h);
	return (NULL);
    }
    return (c.h);
}

const TABLE_OPS table_ops_inline = {
    "inline", inline_load, ht_lookup, table_ht_free, 0, NULL, NULL,
};

/* ---- static ----------------------------------------------------------- */

static void *static_load(TABLE *t, char *err, size_t errlen)
{
    const char *body;
    size_t  len;

    if (braced(t->name, &body, &len) == 0) {
	span_trim(&body, &len);
	return (xstrndup(body, len));
    }
    return (xstrdup(t->name));
}

static int static_lookup(TABLE *t, void *priv, const char *key, const char **val,
			         char *err, size_t errlen)
{
    *val = priv;
    return (TABLE_FOUND);
}

const TABLE_OPS table_ops_static = {
    "static", static_load, static_lookup, free, 0, NULL, NULL,
};

/* ---- unionmap and pipemap ------------------------------------------- */

typedef struct COMBO {
    TABLE **member;
    int     n;
} COMBO;

typedef struct COMBO_CTX {
    TABLE  *t;
    COMBO  *c;
    char   *err;
    size_t  errlen;
} COMBO_CTX;

static int combo_element(void *ptr, const char *s, size_t len)
{
    COMBO_CTX *x = ptr;
    char   *spec = xstrndup(s, len);
    TABLE  *m = table_open(spec, x->t->flags, x->t->param, x->err, x->errlen);

    free(spec);
    if (m == NULL)
	return (-1);
    x->c->member = xrealloc(x->c->member, (x->c->n + 1) * sizeof(TABLE *));
    x->c->member[x->c->n++] = m;
    return (0);
}

static void combo_free(void *ptr)
{
    COMBO  *c = ptr;

    for (int i = 0; i < c->n; i++)
	table_close(c->member[i]);
    free(c->member);
    free(c);
}

static void *combo_load(TABLE *t, char *err, size_t errlen)
{
    const char *body;
    size_t  len;
    COMBO  *c = xcalloc(1, sizeof(*c));
    COMBO_CTX x = {t, c, err, errlen};

    if (braced(t->name, &body, &len) < 0) {
	snprintf(err, errlen, "%s: expected %s:{ type:name, ... }", t->spec, t->type);
	free(c);
	return (NULL);
    }
    if (split_elements(body, len, combo_element, &x, t->spec, err, errlen) < 0) {
	combo_free(c);
	return (NULL);
    }
    if (c->n == 0 || (strcmp(t->type, "pipemap") == 0 && c->n < 2)) {
	snprintf(err, errlen, "%s: needs %s table", t->spec,
		 strcmp(t->type, "pipemap") == 0 ? "at least two" : "at least one");
	combo_free(c);
	return (NULL);
    }
    return (c);
}

static int union_lookup(TABLE *t, void *priv, const char *key, const char **val,
			        char *err, size_t errlen)
{
    COMBO  *c = priv;
    BUF     out = BUF_INIT;
    const char *v;
    int     rc, found = 0;

    for (int i = 0; i < c->n; i++) {
	if ((rc = table_lookup(c->member[i], key, &v, err, errlen)) == TABLE_ERROR) {
	    buf_free(&out);
	    return (TABLE_ERROR);
	}
	if (rc == TABLE_FOUND) {
	    if (found++)
		buf_putc(&out, ',');
	    buf_puts(&out, v);
	}
    }
    if (found)
	table_set_result(t, out.data, out.len, val);
    buf_free(&out);
    return (found ? TABLE_FOUND : TABLE_NOTFOUND);
}

static int pipe_lookup(TABLE *t, void *priv, const char *key, const char **val,
		               char *err, size_t errlen)
{
    COMBO  *c = priv;
    BUF     cur = BUF_INIT;
    const char *v = NULL;
    int     rc = TABLE_NOTFOUND;

    buf_puts(&cur, key);
    for (int i = 0; i < c->n; i++) {
	if ((rc = table_lookup(c->member[i], cur.data, &v, err, errlen)) != TABLE_FOUND)
	    break;
	buf_reset(&cur);
	buf_puts(&cur, v);
    }
    if (rc == TABLE_FOUND)
	table_set_result(t, cur.data, cur.len, val);
    buf_free(&cur);
    return (rc);
}

const TABLE_OPS table_ops_unionmap = {
    "unionmap", combo_load, union_lookup, combo_free, 0, NULL, NULL,
};

const TABLE_OPS table_ops_pipemap = {
    "pipemap", combo_load, pipe_lookup, combo_free, 0, NULL, NULL,
};

int     table_split_braced(TABLE *t, int (*cb) (void *, const char *, size_t), void *ctx,
			           char *err, size_t errlen)
{
    const char *body;
    size_t  len;

    if (braced(t->name, &body, &len) < 0) {
	snprintf(err, errlen, "%s: expected %s:{ ... }", t->spec, t->type);
	return (-1);
    }
    return (split_elements(body, len, cb, ctx, t->spec, err, errlen));
}
