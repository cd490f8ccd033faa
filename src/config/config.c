/*
 * config.c - relayq.cf: parsing in Postfix main.cf syntax (postconf(5)),
 * -o overrides, $name expansion, validation of every value against the
 * parameter table (params.c), lookups, and `relayq config` output.
 *
 * Everything that can go wrong goes wrong in config_load(): syntax, $name
 * loops, malformed values.  After it, a CONFIG is read-only (all values are
 * expanded and parsed once), so lookups cannot fail and may be made from any
 * thread.  Names that are not in the table are kept as user-defined
 * parameters: they warn, but $name may refer to them, as in Postfix.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"
#include "config/config.h"
#include "config/params.h"
#include "log/log.h"

#define CONFIG_FILE_NAME	"relayq.cf"
#define CONFIG_MAX_DEPTH	100	/* $name nesting; deeper is a loop */

/* One "name = value" from the file or from -o, in the order seen. */
typedef struct SETTING {
    char   *name;
    char   *value;
    char   *where;			/* "FILE, line N" or "-o name=value" */
    int     index;			/* param_table index, -1: user-defined */
    int     overridden;			/* a later setting of the same name */
} SETTING;

struct CONFIG {
    char   *dir;
    char   *path;
    SETTING *set;			/* in order of appearance */
    int     nset;
    int    *known;			/* per table index: 1 + index in set, 0: unset */
    char  **dflt;			/* per table index: effective default */
    char  **expanded;			/* per table index: expanded value */
    long long *num;			/* per table index: parsed number */
    int     warnings;			/* names unknown to relayq and Postfix */
    int     npostfix;			/* Postfix parameters relayq does not implement */
    int     quiet;			/* config_derive: the caller reports unknown names */
};

#define CONFIG_EXPAND_MAX	(1 << 20)	/* bytes of one expanded value */

/* The names being expanded, outermost first, to detect $name loops. */
typedef struct XSTACK {
    const char *name[CONFIG_MAX_DEPTH];
    int     depth;
} XSTACK;

static int cfg_expand(const CONFIG *cf, const char *s, size_t len,
		              BUF *out, XSTACK *st, BUF *why);

/* cfg_system_hostname - gethostname(), made fully-qualified as Postfix does */

static const char *cfg_system_hostname(void)
{
    static char name[256 + 16];

    if (name[0] == 0) {
	char    host[256];

	if (gethostname(host, sizeof(host)) != 0 || host[0] == 0)
	    strcpy(host, "localhost");
	host[sizeof(host) - 1] = 0;
	snprintf(name, sizeof(name), "%s%s", host,
		 strchr(host, '.') ? "" : ".localdomain");
	str_lower(name);
    }
    return (name);
}

/* cfg_domain_of - mydomain's default: the host name minus its first label */

static char *cfg_domain_of(const char *host)
{
    const char *dot = strchr(host, '.');

    return (xstrdup(dot && dot[1] ? dot + 1 : "localdomain"));
}

/* cfg_table_default - a parameter's built-in default on this host */

static char *cfg_table_default(int i)
{
    const char *d = param_table[i].defval;

    if (strcmp(d, PARAM_DEF_MYHOSTNAME) == 0)
	return (xstrdup(cfg_system_hostname()));
    if (strcmp(d, PARAM_DEF_MYDOMAIN) == 0)
	return (cfg_domain_of(cfg_system_hostname()));
    return (xstrdup(d));
}

/* cfg_find_setting - the effective setting of any name, or NULL */

static const SETTING *cfg_find_setting(const CONFIG *cf, const char *name, size_t len)
{
    for (int i = cf->nset - 1; i >= 0; i--)
	if (strncmp(cf->set[i].name, name, len) == 0 && cf->set[i].name[len] == 0)
	    return (&cf->set[i]);
    return (NULL);
}

/*
 * cfg_expand_name - append the expanded value of parameter NAME to out.
 * Undefined names expand to nothing (as in Postfix).
 */
static int cfg_expand_name(const CONFIG *cf, const char *name, size_t len,
			           BUF *out, XSTACK *st, BUF *why)
{
    const SETTING *s = cfg_find_setting(cf, name, len);
    const char *raw;
    const char *key;
    int     idx;

    if (s != 0) {
	raw = s->value;
	key = s->name;
    } else {
	char   *tmp = xstrndup(name, len);

	idx = param_index(tmp);
	free(tmp);
	if (idx < 0)
	    return (0);
	raw = cf->dflt[idx];
	key = param_table[idx].name;
    }

    /*
     * Same name already being expanded: a loop.  Describe it from where it
     * starts, "a -> b -> a", which is what the user has to untangle.
     */
    for (int i = 0; i < st->depth; i++) {
	if (strcmp(st->name[i], key) == 0) {
	    buf_reset(why);
	    buf_puts(why, "$name expansion loop: ");
	    for (int j = i; j < st->depth; j++)
		buf_printf(why, "%s -> ", st->name[j]);
	    buf_puts(why, key);
	    return (-1);
	}
    }
    if (st->depth >= CONFIG_MAX_DEPTH) {
	buf_reset(why);
	buf_printf(why, "$name expansion nested deeper than %d levels", CONFIG_MAX_DEPTH);
	return (-1);
    }
    st->name[st->depth++] = key;
    int     ret = cfg_expand(cf, raw, strlen(raw), out, st, why);

    st->depth--;
    return (ret);
}

/* config_match - index of the bracket that closes the one at s[open], or -1 */

long    config_match(const char *s, size_t len, size_t open)
{
    char    o = s[open];
    char    c = (o == '{') ? '}' : ')';
    int     depth = 0;

    for (size_t i = open; i < len; i++) {
	if (s[i] == o)
	    depth++;
	else if (s[i] == c && --depth == 0)
	    return ((long) i);
    }
    return (-1);
}

/*
 * config_cond - split the conditional part of ${name?...} or ${name:...};
 * s[n] is the '?' or ':'.  "?{a}:{b}", "?{a}", "?a", ":{b}", ":b".
 */
int     config_cond(const char *s, size_t len, size_t n, CONFIG_COND *c)
{
    size_t  p = n + 1;

    c->then_text = c->else_text = 0;
    c->then_len = c->else_len = 0;
    while (p < len && isspace((unsigned char) s[p]))
	p++;
    if (p < len && s[p] == '{') {
	long    e = config_match(s, len, p);

	if (e < 0)
	    return (CONFIG_COND_UNBALANCED);
	c->then_text = s + p + 1;
	c->then_len = (size_t) e - p - 1;
	p = (size_t) e + 1;
	while (p < len && isspace((unsigned char) s[p]))
	    p++;
	if (p < len && s[n] == '?' && s[p] == ':') {
	    p++;
	    while (p < len && isspace((unsigned char) s[p]))
		p++;
	    if (p >= len || s[p] != '{' || (e = config_match(s, len, p)) < 0)
		return (CONFIG_COND_UNBALANCED);
	    c->else_text = s + p + 1;
	    c->else_len = (size_t) e - p - 1;
	    p = (size_t) e + 1;
	    while (p < len && isspace((unsigned char) s[p]))
		p++;
	}
	if (p != len)
	    return (CONFIG_COND_TRAILING);
    } else {
	c->then_text = s + n + 1;
	c->then_len = len - n - 1;
    }
    if (s[n] == ':') {			/* ${name:x} is ${name?{}:{x}} */
	c->else_text = c->then_text;
	c->else_len = c->then_len;
	c->then_text = 0;
	c->then_len = 0;
    }
    return (CONFIG_COND_OK);
}

/*
 * cfg_expand_braced - the inside of ${...} or $(...): "name", "name?value",
 * "name:value", "name?{value}", "name:{value}", "name?{a}:{b}".
 */
static int cfg_expand_braced(const CONFIG *cf, const char *s, size_t len,
			             BUF *out, XSTACK *st, BUF *why)
{
    size_t  n = 0;
    const char *a = 0, *b = 0;		/* "then" and "else" text */
    size_t  alen = 0, blen = 0;

    while (n < len && (isalnum((unsigned char) s[n]) || s[n] == '_'))
	n++;
    if (n == 0) {
	buf_reset(why);
	buf_printf(why, "bad parameter name in \"${%.*s}\"", (int) len, s);
	return (-1);
    }
    if (n == len)
	return (cfg_expand_name(cf, s, n, out, st, why));
    if (s[n] != '?' && s[n] != ':') {
	buf_reset(why);
	buf_printf(why, "unexpected '%c' after parameter name in \"${%.*s}\"",
		   s[n], (int) len, s);
	return (-1);
    }

    /* The text: plain up to the end, or {text} with an optional :{else}. */
    CONFIG_COND c;

    switch (config_cond(s, len, n, &c)) {
    case CONFIG_COND_UNBALANCED:
	goto unbalanced;
    case CONFIG_COND_TRAILING:
	buf_reset(why);
	buf_printf(why, "unexpected text after {...} in \"${%.*s}\"", (int) len, s);
	return (-1);
    }
    a = c.then_text;
    alen = c.then_len;
    b = c.else_text;
    blen = c.else_len;

    /* Whether the parameter is empty is decided on its expanded value. */
    BUF     val = BUF_INIT;
    int     ret = cfg_expand_name(cf, s, n, &val, st, why);
    int     empty = (val.len == 0);

    buf_free(&val);
    if (ret < 0)
	return (-1);
    if (!empty && a)
	return (cfg_expand(cf, a, alen, out, st, why));
    if (empty && b)
	return (cfg_expand(cf, b, blen, out, st, why));
    return (0);

unbalanced:
    buf_reset(why);
    buf_printf(why, "unbalanced {} in \"${%.*s}\"", (int) len, s);
    return (-1);
}

/* cfg_expand - append s[0..len) to out with $name references expanded */

static int cfg_expand(const CONFIG *cf, const char *s, size_t len,
		              BUF *out, XSTACK *st, BUF *why)
{
    size_t  i = 0;

    while (i < len) {
	size_t  start = i;

	/* a = $b$b$b, b = $c$c$c, ...: without a cap, a few lines fill the memory. */
	if (out->len > CONFIG_EXPAND_MAX) {
	    buf_reset(why);
	    buf_printf(why, "the expanded value is larger than %d bytes", CONFIG_EXPAND_MAX);
	    return (-1);
	}

	while (i < len && s[i] != '$')
	    i++;
	buf_append(out, s + start, i - start);
	if (i >= len)
	    break;
	i++;					/* skip '$' */
	if (i >= len) {				/* trailing '$': literal */
	    buf_putc(out, '$');
	} else if (s[i] == '$') {		/* $$ */
	    buf_putc(out, '$');
	    i++;
	} else if (s[i] == '{' || s[i] == '(') {
	    long    e = config_match(s, len, i);

	    if (e < 0) {
		buf_reset(why);
		buf_printf(why, "missing '%c' in \"%.*s\"", s[i] == '{' ? '}' : ')',
			   (int) len, s);
		return (-1);
	    }
	    if (cfg_expand_braced(cf, s + i + 1, (size_t) e - i - 1, out, st, why) < 0)
		return (-1);
	    i = (size_t) e + 1;
	} else if (isalnum((unsigned char) s[i]) || s[i] == '_') {
	    size_t  n = i;

	    while (n < len && (isalnum((unsigned char) s[n]) || s[n] == '_'))
		n++;
	    if (cfg_expand_name(cf, s + i, n - i, out, st, why) < 0)
		return (-1);
	    i = n;
	} else {				/* "$ " etc.: literal */
	    buf_putc(out, '$');
	}
    }
    if (out->len > CONFIG_EXPAND_MAX) {
	buf_reset(why);
	buf_printf(why, "the expanded value is larger than %d bytes", CONFIG_EXPAND_MAX);
	return (-1);
    }
    return (0);
}

/* cfg_parse_number - digits only, no sign, no overflow */

static int cfg_parse_number(const char *s, size_t len, long long *val)
{
    long long v = 0;

    if (len == 0)
	return (-1);
    for (size_t i = 0; i < len; i++) {
	if (!isdigit((unsigned char) s[i]))
	    return (-1);
	if (v > (LLONG_MAX - 9) / 10)
	    return (-1);
	v = v * 10 + (s[i] - '0');
    }
    *val = v;
    return (0);
}

/* cfg_time_scale - seconds per unit, 0 for an unknown unit */

static long long cfg_time_scale(char unit)
{
    switch (unit) {
    case 's':
	return (1);
    case 'm':
	return (60);
    case 'h':
	return (3600);
    case 'd':
	return (86400);
    case 'w':
	return (604800);
    default:
	return (0);
    }
}

/*
 * cfg_check - validate an expanded value against its parameter's type; the
 * parsed number goes in *num.  On error, why says what is accepted.
 */
static int cfg_check(const PARAM *p, const char *v, long long *num, BUF *why)
{
    size_t  len = strlen(v);
    long long n = 0;

    buf_reset(why);
    switch (p->type) {
    case PT_TIME:{
	    long long scale = cfg_time_scale(p->unit);

	    if (len > 0 && isalpha((unsigned char) v[len - 1])) {
		scale = cfg_time_scale(v[len - 1]);
		len--;
	    }
	    if (scale == 0 || cfg_parse_number(v, len, &n) < 0 || n > LLONG_MAX / scale) {
		buf_printf(why, "bad time value \"%s\": expected a number with an "
			   "optional unit s (seconds), m, h, d or w", v);
		return (-1);
	    }
	    n *= scale;
	    if (n < p->min) {
		buf_printf(why, "bad time value \"%s\": the minimum is %llds", v, p->min);
		return (-1);
	    }
	    break;
	}
    case PT_SIZE:
	if (cfg_parse_number(v, len, &n) < 0) {
	    buf_printf(why, "bad size value \"%s\": expected a number of bytes", v);
	    return (-1);
	}
	break;
    case PT_INT:
	if (cfg_parse_number(v, len, &n) < 0) {
	    buf_printf(why, "bad integer value \"%s\": expected a whole number", v);
	    return (-1);
	}
	if (n < p->min) {
	    buf_printf(why, "bad integer value \"%s\": the minimum is %lld", v, p->min);
	    return (-1);
	}
	if (p->max && n > p->max) {
	    buf_printf(why, "bad integer value \"%s\": the maximum is %lld", v, p->max);
	    return (-1);
	}
	break;
    case PT_BOOL:
	if (str_casecmp(v, "yes") == 0) {
	    n = 1;
	} else if (str_casecmp(v, "no") == 0) {
	    n = 0;
	} else {
	    buf_printf(why, "bad boolean value \"%s\": expected yes or no", v);
	    return (-1);
	}
	break;
    case PT_STR:
	if (p->choices && !(*v == 0 && *p->defval == 0)) {
	    char  **c = str_split_list(p->choices, 0);
	    int     ok = 0;

	    for (char **cp = c; *cp; cp++)
		if (str_casecmp(*cp, v) == 0)
		    ok = 1;
	    str_list_free(c);
	    if (!ok) {
		buf_printf(why, "bad value \"%s\": expected one of: %s%s", v,
			   *p->defval ? "" : "(empty), ", p->choices);
		return (-1);
	    }
	}
	break;
    case PT_LIST:
	break;
    }
    *num = n;
    return (0);
}

/* cfg_add - record one setting (file or -o); unknown names warn */

static void cfg_add(CONFIG *cf, const char *name, const char *value, char *where)
{
    int     idx = param_index(name);
    SETTING *s;

    /* Unknown names are sorted out once the whole file is read (cfg_classify). */
    for (int i = 0; i < cf->nset; i++)
	if (strcmp(cf->set[i].name, name) == 0)
	    cf->set[i].overridden = 1;
    cf->set = xrealloc(cf->set, sizeof(*cf->set) * (size_t) (cf->nset + 1));
    s = &cf->set[cf->nset++];
    s->name = xstrdup(name);
    s->value = xstrdup(value);
    s->where = where;
    s->index = idx;
    s->overridden = 0;
    if (idx >= 0)
	cf->known[idx] = cf->nset;
}

/*
 * cfg_split - "name = value" (a logical line or an -o argument) into its
 * two trimmed halves, in place.  Returns an error text or NULL.
 */
static const char *cfg_split(char *line, char **name, char **value)
{
    char   *eq = strchr(line, '=');
    char   *n;

    if (eq == 0)
	return ("missing '=' after parameter name");
    *eq = 0;
    n = str_trim(line);
    if (*n == 0)
	return ("missing parameter name before '='");
    for (char *cp = n; *cp; cp++)
	if (!isalnum((unsigned char) *cp) && *cp != '_')
	    return ("bad parameter name: expected letters, digits and '_'");
    *name = n;
    *value = str_trim(eq + 1);
    return (0);
}

/* cfg_read_file - parse relayq.cf into settings */

static int cfg_read_file(CONFIG *cf, FILE *fp, BUF *err)
{
    char   *line = 0;
    size_t  cap = 0;
    ssize_t got;
    int     lineno = 0;
    BUF     logical = BUF_INIT;
    int     start = 0;			/* first line of the logical line */
    int     ret = 0;

    for (;;) {
	got = getline(&line, &cap, fp);
	if (got >= 0) {
	    lineno++;
	    while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
		line[--got] = 0;

	    /* Comments and blank lines vanish, even inside a logical line. */
	    const char *cp = line;

	    while (*cp && isspace((unsigned char) *cp))
		cp++;
	    if (*cp == 0 || *cp == '#')
		continue;
	    if (isspace((unsigned char) line[0])) {
		if (start == 0) {
		    buf_printf(err, "%s, line %d: text starts with white space but "
			       "continues no \"name = value\" line", cf->path, lineno);
		    ret = -1;
		    break;
		}
		buf_puts(&logical, line);
		continue;
	    }
	}

	/* A new logical line starts (or the file ends): finish the last. */
	if (start) {
	    char   *name, *value;
	    const char *bad = cfg_split(logical.data, &name, &value);

	    if (bad) {
		buf_printf(err, "%s, line %d: %s", cf->path, start, bad);
		ret = -1;
		break;
	    }
	    cfg_add(cf, name, value, xasprintf("%s, line %d", cf->path, start));
	    start = 0;
	}
	if (got < 0)
	    break;
	buf_reset(&logical);
	buf_puts(&logical, line);
	start = lineno;
    }
    if (ret == 0 && ferror(fp)) {
	buf_printf(err, "read %s: %s", cf->path, strerror(errno));
	ret = -1;
    }
    free(line);
    buf_free(&logical);
    return (ret);
}

/* cfg_finish - defaults, loop check, expansion and validation of all */

static int cfg_finish(CONFIG *cf, BUF *err)
{
    BUF     out = BUF_INIT;
    BUF     why = BUF_INIT;
    XSTACK  st;
    int     ret = -1;
    int     dom = param_index("mydomain");
    int     host = param_index("myhostname");

    for (int i = 0; i < param_count; i++)
	cf->dflt[i] = cfg_table_default(i);

    /*
     * mydomain's default follows the configured myhostname.  Expand
     * myhostname against the host-derived mydomain first, because
     * "myhostname = mx.$mydomain" must not become a loop.
     */
    if (cf->known[dom] == 0 && cf->known[host] != 0) {
	st.depth = 0;
	if (cfg_expand_name(cf, "myhostname", strlen("myhostname"), &out, &st, &why) == 0) {
	    free(cf->dflt[dom]);
	    cf->dflt[dom] = cfg_domain_of(out.data ? out.data : "");
	}
	buf_reset(&out);
    }

    /* What the user wrote, in order, so the first bad line is reported. */
    for (int i = 0; i < cf->nset; i++) {
	const SETTING *s = &cf->set[i];

	if (s->overridden)
	    continue;
	st.depth = 0;
	buf_reset(&out);
	if (cfg_expand_name(cf, s->name, strlen(s->name), &out, &st, &why) < 0
	    || (s->index >= 0 && cfg_check(&param_table[s->index], out.data ? out.data : "",
					   &cf->num[s->index], &why) < 0)) {
	    buf_printf(err, "%s: parameter %s: %s", s->where, s->name, why.data);
	    goto done;
	}
    }

    /* Then every parameter, defaults included, for the lookup cache. */
    for (int i = 0; i < param_count; i++) {
	const PARAM *p = &param_table[i];

	st.depth = 0;
	buf_reset(&out);
	if (cfg_expand_name(cf, p->name, strlen(p->name), &out, &st, &why) < 0
	    || cfg_check(p, out.data ? out.data : "", &cf->num[i], &why) < 0) {
	    buf_printf(err, "%s: parameter %s: %s",
		       cf->known[i] ? cf->set[cf->known[i] - 1].where : "default value", p->name, why.data);
	    goto done;
	}
	cf->expanded[i] = xstrdup(out.data ? out.data : "");
    }
    ret = 0;

done:
    buf_free(&out);
    buf_free(&why);
    return (ret);
}

/* The edit distance of two short names (Levenshtein), capped at 9. */
static int cfg_distance(const char *a, const char *b)
{
    int     la = (int) strlen(a), lb = (int) strlen(b), d[64][64];

    if (la > 63 || lb > 63 || abs(la - lb) > 8)
	return (9);
    for (int i = 0; i <= la; i++)
	d[i][0] = i;
    for (int j = 0; j <= lb; j++)
	d[0][j] = j;
    for (int i = 1; i <= la; i++)
	for (int j = 1; j <= lb; j++) {
	    int     c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);

	    if (d[i - 1][j] + 1 < c)
		c = d[i - 1][j] + 1;
	    if (d[i][j - 1] + 1 < c)
		c = d[i][j - 1] + 1;
	    d[i][j] = c;
	}
    return (d[la][lb] > 9 ? 9 : d[la][lb]);
}

/* The closest relayq or Postfix parameter name, or NULL when none is close. */
static const char *cfg_suggest(const char *name)
{
    const char *best = NULL;
    int     bd = 3, n;
    const char *const *pf = postfix_param_names(&n);

    for (int i = 0; i < param_count; i++) {
	int     dd = cfg_distance(name, param_table[i].name);

	if (dd < bd) {
	    bd = dd;
	    best = param_table[i].name;
	}
    }
    for (int i = 0; i < n; i++) {
	int     dd = cfg_distance(name, pf[i]);

	if (dd < bd) {
	    bd = dd;
	    best = pf[i];
	}
    }
    return (best);
}

/* Is $name, ${name...} or $(name...) used in text? */
static int cfg_referenced(const char *text, const char *name)
{
    size_t  n = strlen(name);

    for (const char *cp = text; (cp = strchr(cp, '$')) != NULL; cp++) {
	const char *q = cp + 1;

	if (*q == '{' || *q == '(')
	    q++;
	if (strncmp(q, name, n) == 0 && !(isalnum((unsigned char) q[n]) || q[n] == '_'))
	    return (1);
    }
    return (0);
}

/*
 * Three kinds of names: relayq's parameters; Postfix parameters relayq does
 * not implement (counted, told by `relayq config --check`); names unknown
 * to both (a warning with a suggestion).  A name set only to be used in
 * $name expansions (main.cf or master.cf) is the administrator's own.
 */
static void cfg_classify(CONFIG *cf)
{
    char   *master = NULL;
    char   *mpath = xasprintf("%s/master.cf", cf->dir);
    FILE   *fp = fopen(mpath, "r");

    if (fp) {
	size_t  cap = 0;
	ssize_t len = getdelim(&master, &cap, 0, fp);

	if (len < 0) {
	    free(master);
	    master = NULL;
	}
	fclose(fp);
    }
    free(mpath);
    for (int i = 0; i < cf->nset; i++) {
	const SETTING *s = &cf->set[i];
	const char *hint;
	int     used = 0;

	if (s->index >= 0 || s->overridden)
	    continue;
	if (postfix_param_known(s->name)) {
	    cf->npostfix++;
	    continue;
	}
	for (int k = 0; k < cf->nset && !used; k++)
	    used = cfg_referenced(cf->set[k].value, s->name);
	if (used || (master && cfg_referenced(master, s->name)))
	    continue;
	hint = cfg_suggest(s->name);
	if (strncmp(s->where, "-o ", 3) == 0)
	    msg_warn("%s: unknown parameter%s%s%s", s->where, hint ? " (did you mean \"" : "",
		     hint ? hint : "", hint ? "\"?)" : "");
	else
	    msg_warn("%s: unknown parameter \"%s\"%s%s%s", s->where, s->name,
		     hint ? " (did you mean \"" : "", hint ? hint : "", hint ? "\"?)" : "");
	cf->warnings++;
    }
    free(master);
}

/* Debian's myorigin = /etc/mailname: a path names the file that holds the name. */
static int cfg_myorigin_file(CONFIG *cf, BUF *why)
{
    int     i = param_index("myorigin");
    FILE   *fp;
    char    line[256];

    if (i < 0 || cf->expanded[i] == NULL || cf->expanded[i][0] != '/')
	return (0);
    line[0] = 0;
    if ((fp = fopen(cf->expanded[i], "r")) != NULL) {
	if (fgets(line, sizeof(line), fp) == NULL)
	    line[0] = 0;
	fclose(fp);
    }
    line[strcspn(line, " \t\r\n")] = 0;
    if (line[0] == 0) {
	/* No name there (no such file, or empty): the host's own name, and say so. */
	msg_warn("%s: myorigin: cannot read a name from %s%s%s; using $myhostname",
		 cf->known[i] ? cf->set[cf->known[i] - 1].where : "default value", cf->expanded[i],
		 fp ? "" : ": ", fp ? "" : strerror(errno));
	snprintf(line, sizeof(line), "%s", cf->expanded[param_index("myhostname")] ?
		 cf->expanded[param_index("myhostname")] : "localhost");
    }
    free(cf->expanded[i]);
    cf->expanded[i] = xstrdup(line);
    return (0);
}

/* What a Postfix parameter that relayq does not implement means for a relay, when it matters. */
static const struct {
    const char *name, *word;
} postfix_words[] = {
    {"alias_maps", "unused: relayq delivers nothing locally"},
    {"alias_database", "unused: relayq delivers nothing locally"},
    {"local_recipient_maps", "unused: relayq delivers nothing locally"},
    {"mailbox_command", "unused: relayq delivers nothing locally"},
    {"mailbox_size_limit", "unused: relayq delivers nothing locally"},
    {"home_mailbox", "unused: relayq delivers nothing locally"},
    {"virtual_alias_maps", "relayq does no virtual alias expansion"},
    {"recipient_delimiter", "relayq's tables strip no extension without it"},
};

const char *config_postfix_note(const char *name)
{
    for (size_t k = 0; k < ARRAY_LEN(postfix_words); k++)
	if (strcmp(postfix_words[k].name, name) == 0)
	    return (postfix_words[k].word);
    return (NULL);
}

/* The Postfix parameters of cf that relayq does not implement, each with a word when it matters. */
int     config_report_postfix(const CONFIG *cf, FILE *fp)
{
    for (int i = 0; i < cf->nset; i++) {
	const SETTING *s = &cf->set[i];
	const char *w;

	if (s->index >= 0 || s->overridden || !postfix_param_known(s->name))
	    continue;
	w = config_postfix_note(s->name);
	fprintf(fp, "relayq: info: %s: %s is a Postfix parameter that relayq does not implement%s%s\n",
		s->where, s->name, w ? ": " : "", w ? w : "");
    }
    return (cf->npostfix);
}

/* config_load - read relayq.cf, apply -o, validate everything */

CONFIG *config_load(const char *confdir, char *const *overrides, int noverrides,
		            int allow_missing, char *err, size_t errlen)
{
    CONFIG *cf = xcalloc(1, sizeof(*cf));
    BUF     why = BUF_INIT;
    FILE   *fp;

    cf->dir = xstrdup(confdir ? confdir : CONFIG_DEFAULT_DIR);
    cf->path = xasprintf("%s/%s", cf->dir, CONFIG_FILE_NAME);
    cf->known = xcalloc((size_t) param_count, sizeof(*cf->known));
    cf->dflt = xcalloc((size_t) param_count, sizeof(*cf->dflt));
    cf->expanded = xcalloc((size_t) param_count, sizeof(*cf->expanded));
    cf->num = xcalloc((size_t) param_count, sizeof(*cf->num));

    if ((fp = fopen(cf->path, "r")) != 0) {
	int     r = cfg_read_file(cf, fp, &why);

	fclose(fp);
	if (r < 0)
	    goto fail;
    } else if (!(errno == ENOENT && allow_missing)) {
	buf_printf(&why, "open %s: %s", cf->path, strerror(errno));
	goto fail;
    }
    for (int i = 0; i < noverrides; i++) {
	char   *copy = xstrdup(overrides[i]);
	char   *name, *value;
	const char *bad = cfg_split(copy, &name, &value);

	if (bad) {
	    buf_printf(&why, "-o %s: %s", overrides[i], bad);
	    free(copy);
	    goto fail;
	}
	cfg_add(cf, name, value, xasprintf("-o %s", overrides[i]));
	free(copy);
    }
    if (cfg_finish(cf, &why) < 0 || cfg_myorigin_file(cf, &why) < 0)
	goto fail;
    cfg_classify(cf);
    buf_free(&why);
    if (errlen)
	*err = 0;
    return (cf);

fail:
    if (errlen)
	snprintf(err, errlen, "%s", why.data ? why.data : "error");
    buf_free(&why);
    config_free(cf);
    return (0);
}

/* config_derive - base's settings plus more overrides (master.cf -o) */

CONFIG *config_derive(const CONFIG *base, char *const *overrides, int noverrides,
		              const char *where, char *err, size_t errlen)
{
    CONFIG *cf = xcalloc(1, sizeof(*cf));
    BUF     why = BUF_INIT;

    cf->dir = xstrdup(base->dir);
    cf->path = xstrdup(base->path);
    cf->known = xcalloc((size_t) param_count, sizeof(*cf->known));
    cf->dflt = xcalloc((size_t) param_count, sizeof(*cf->dflt));
    cf->expanded = xcalloc((size_t) param_count, sizeof(*cf->expanded));
    cf->num = xcalloc((size_t) param_count, sizeof(*cf->num));
    cf->quiet = 1;
    for (int i = 0; i < base->nset; i++)
	cfg_add(cf, base->set[i].name, base->set[i].value, xstrdup(base->set[i].where));
    cf->warnings = 0;
    for (int i = 0; i < noverrides; i++) {
	char   *copy = xstrdup(overrides[i]);
	char   *name, *value;
	const char *bad = cfg_split(copy, &name, &value);

	if (bad) {
	    buf_printf(&why, "%s: -o %s: %s", where, overrides[i], bad);
	    free(copy);
	    goto fail;
	}
	cfg_add(cf, name, value, xasprintf("%s: -o %s", where, overrides[i]));
	free(copy);
    }
    if (cfg_finish(cf, &why) < 0)
	goto fail;
    buf_free(&why);
    if (errlen)
	*err = 0;
    return (cf);

fail:
    if (errlen)
	snprintf(err, errlen, "%s", why.data ? why.data : "error");
    buf_free(&why);
    config_free(cf);
    return (0);
}

void    config_free(CONFIG *cf)
{
    if (cf == 0)
	return;
    for (int i = 0; i < cf->nset; i++) {
	free(cf->set[i].name);
	free(cf->set[i].value);
	free(cf->set[i].where);
    }
    for (int i = 0; i < param_count; i++) {
	free(cf->dflt[i]);
	free(cf->expanded[i]);
    }
    free(cf->set);
    free(cf->known);
    free(cf->dflt);
    free(cf->expanded);
    free(cf->num);
    free(cf->path);
    free(cf->dir);
    free(cf);
}

/* cfg_need - table index of a parameter a caller asks for, or fatal */

static int cfg_need(const CONFIG *cf, const char *name, const char *func)
{
    int     i = param_index(name);

    if (i < 0)
	msg_panic("%s: unknown parameter \"%s\"", func, name);
    if (cf == 0 || cf->expanded[i] == 0)
	msg_panic("%s: no configuration loaded", func);
    return (i);
}

const char *config_str(const CONFIG *cf, const char *name)
{
    return (cf->expanded[cfg_need(cf, name, "config_str")]);
}

long long config_time(const CONFIG *cf, const char *name)
{
    int     i = cfg_need(cf, name, "config_time");

    if (param_table[i].type != PT_TIME)
	msg_panic("config_time: parameter %s is not a time", name);
    return (cf->num[i]);
}

long long config_int(const CONFIG *cf, const char *name)
{
    int     i = cfg_need(cf, name, "config_int");

    if (param_table[i].type != PT_INT && param_table[i].type != PT_SIZE)
	msg_panic("config_int: parameter %s is not a number", name);
    return (cf->num[i]);
}

long long config_size(const CONFIG *cf, const char *name)
{
    int     i = cfg_need(cf, name, "config_size");

    if (param_table[i].type != PT_SIZE && param_table[i].type != PT_INT)
	msg_panic("config_size: parameter %s is not a size", name);
    return (cf->num[i]);
}

int     config_bool(const CONFIG *cf, const char *name)
{
    int     i = cfg_need(cf, name, "config_bool");

    if (param_table[i].type != PT_BOOL)
	msg_panic("config_bool: parameter %s is not yes/no", name);
    return ((int) cf->num[i]);
}

char  **config_list(const CONFIG *cf, const char *name, int *n)
{
    return (str_split_list(cf->expanded[cfg_need(cf, name, "config_list")], n));
}

char   *config_expand(const CONFIG *cf, const char *value)
{
    BUF     out = BUF_INIT;
    BUF     why = BUF_INIT;
    XSTACK  st;

    st.depth = 0;
    if (cfg_expand(cf, value, strlen(value), &out, &st, &why) < 0) {
	msg_warn("expanding \"%s\": %s", value, why.data);
	buf_reset(&out);
	buf_puts(&out, value);
    }
    buf_free(&why);
    if (out.data == 0)
	return (xstrdup(""));
    return (buf_steal(&out));
}

int     config_known(const char *name)
{
    return (param_index(name) >= 0);
}

int     config_is_set(const CONFIG *cf, const char *name)
{
    int     i = param_index(name);

    return (cf && i >= 0 && cf->known[i] != 0);
}

int     config_warnings(const CONFIG *cf)
{
    return (cf ? cf->warnings : 0);
}

const char *config_file(const CONFIG *cf)
{
    return (cf->path);
}

const char *config_dir(const CONFIG *cf)
{
    return (cf->dir);
}

/* cfg_name_cmp - qsort by parameter name */

static int cfg_name_cmp(const void *a, const void *b)
{
    return (strcmp(param_table[*(const int *) a].name, param_table[*(const int *) b].name));
}

/* cfg_show_one - one "name = value" line, if flags want one */

/*
 * A password table written into relayq.cf (inline:{...}, static:...) holds
 * secrets: postconf prints them, relayq does not.  File tables are shown.
 */
static char *cfg_hide_secrets(const char *name, const char *v)
{
    size_t  nl = strlen(name);
    char  **l;
    BUF     b = BUF_INIT;

    if (nl < 14 || strcmp(name + nl - 14, "_password_maps") != 0
	|| (strstr(v, "inline:") == 0 && strstr(v, "static:") == 0))
	return (0);
    l = str_split_list(v, 0);
    buf_puts(&b, "");
    for (int k = 0; l[k]; k++) {
	if (strncmp(l[k], "inline:", 7) == 0 || strncmp(l[k], "static:", 7) == 0)
	    buf_printf(&b, "%s%.7s{(hidden)}", k ? ", " : "", l[k]);
	else
	    buf_printf(&b, "%s%s", k ? ", " : "", l[k]);
    }
    str_list_free(l);
    return (buf_steal(&b));
}

static void cfg_show_one(const CONFIG *cf, FILE *fp, int flags, int i)
{
    const char *v;
    char   *own = 0;

    if (flags & CONFIG_SHOW_DEFAULTS) {
	v = own = cfg_table_default(i);
    } else if (cf && cf->known[i]) {
	v = cf->set[cf->known[i] - 1].value;
    } else if (flags & CONFIG_SHOW_NONDEFAULT) {
	return;
    } else {
	v = cf ? cf->dflt[i] : (own = cfg_table_default(i));
    }
    char   *hidden = cfg_hide_secrets(param_table[i].name, v);

    if (hidden)
	v = hidden;
    /* postconf writes "name =" for an empty value, with no trailing space. */
    fprintf(fp, "%s =%s%s\n", param_table[i].name, *v ? " " : "", v);
    free(hidden);
    free(own);
}

/* config_show - postconf, postconf -n, postconf -d */

int     config_show(const CONFIG *cf, FILE *fp, int flags, char *const *names, int nnames)
{
    int     ret = 0;

    if (nnames > 0) {
	for (int k = 0; k < nnames; k++) {
	    int     i = param_index(names[k]);

	    if (i < 0) {
		msg_warn("unknown parameter: %s", names[k]);
		ret = 1;
		continue;
	    }
	    cfg_show_one(cf, fp, flags, i);
	}
	return (ret);
    }

    int    *order = xmalloc(sizeof(int) * (size_t) param_count);

    for (int i = 0; i < param_count; i++)
	order[i] = i;
    qsort(order, (size_t) param_count, sizeof(int), cfg_name_cmp);
    for (int k = 0; k < param_count; k++)
	cfg_show_one(cf, fp, flags, order[k]);
    free(order);
    return (ret);
}

/* cfg_man_text - roff-safe text: backslashes doubled, leading dot guarded */

static void cfg_man_text(FILE *fp, const char *s)
{
    if (*s == '.' || *s == '\'')
	fputs("\\&", fp);
    for (; *s; s++) {
	if (*s == '\\')
	    fputs("\\e", fp);
	else if (*s == '-')
	    fputs("\\-", fp);
	else
	    fputc(*s, fp);
    }
}

/* config_write_man - relayq.cf(5), generated from the parameter table */

void    config_write_man(FILE *fp)
{
    static const char *type_name[] = {
	[PT_STR] = "string", [PT_LIST] = "list", [PT_TIME] = "time",
	[PT_SIZE] = "size", [PT_INT] = "integer", [PT_BOOL] = "boolean",
    };
    int    *order = xmalloc(sizeof(int) * (size_t) param_count);

    fputs(".\\\" Generated by config_write_man() from src/config/params.c; do not edit.\n"
	  ".TH RELAYQ.CF 5 \"\" \"relayq\" \"File Formats\"\n"
	  ".SH NAME\n"
	  "relayq.cf \\- relayq configuration parameters\n"
	  ".SH SYNOPSIS\n"
	  ".B /etc/relayq/relayq.cf\n"
	  ".SH DESCRIPTION\n"
	  "The syntax is that of Postfix's\n.BR main.cf ,\ndescribed in\n.BR postconf (5):\n"
	  ".IP \\(bu 2\n"
	  "Each parameter is set as\n.IR \"name = value\" .\n"
	  "White space around the = and at the ends of the line is ignored.\n"
	  ".IP \\(bu 2\n"
	  "A line whose first non\\-white\\-space character is # is a comment;\n"
	  "blank lines are ignored.\n"
	  ".IP \\(bu 2\n"
	  "A line that starts with white space continues the previous one.\n"
	  ".IP \\(bu 2\n"
	  "Values may refer to other parameters as $name, ${name} or $(name),\n"
	  "expanded when they are used.\n"
	  "${name?value} and ${name?{value}} give value when $name is not empty;\n"
	  "${name:value} and ${name:{value}} give value when it is empty or undefined;\n"
	  "${name?{a}:{b}} gives a or b.\n"
	  "$$ is a literal $.\n"
	  "An undefined $name is empty.\n"
	  "A $name loop (a = $b, b = $a) is an error.\n"
	  ".IP \\(bu 2\n"
	  "Lists are separated by commas and/or white space; a {...} group is one element.\n"
	  ".IP \\(bu 2\n"
	  "Time values are a number with an optional unit:\n"
	  "s (seconds), m (minutes), h (hours), d (days) or w (weeks).\n"
	  "A bare number takes the parameter's default unit, shown below.\n"
	  "Sizes are bytes.  Booleans are yes or no.\n"
	  ".PP\n"
	  "Command\\-line\n.B \\-o\n.I name=value\n"
	  "options override the file.\n"
	  "An unknown parameter name is a warning naming the file and line;\n"
	  "a malformed value is an error that stops the program.\n"
	  "Defaults are those of Postfix 3.7 at compatibility_level = 3.6\n"
	  "unless the entry says otherwise.\n"
	  ".SH LOOKUP TABLES\n"
	  "Parameters whose entry says\n.I lookup tables\n"
	  "(transport_maps, the type:name elements of relay_domains, and every\n"
	  ".I *_maps\n"
	  "parameter) take Postfix's\n.IR type : name\n"
	  "tables, searched in the order listed:\n"
	  "inline:{key=value, ...}, texthash:/file, static:value,\n"
	  "hash:/file and btree:/file (file.db), lmdb:/file (file.lmdb), cdb:/file (file.cdb)\n"
	  "built by\n.B relayq postmap\nor Postfix's\n.BR postmap (1),\n"
	  "regexp:/file and pcre:/file pattern tables,\n"
	  "socketmap:inet:host:port:name and socketmap:unix:/path:name,\n"
	  "unionmap:{...} and pipemap:{...}.\n"
	  "Keys are looked up as Postfix does for that parameter\n"
	  "(addresses, domains and parent domains, address extensions);\n"
	  "a table file that changed is read again within a second, at its next lookup,\n"
	  "and on SIGHUP.\n"
	  "See docs/tables.md.\n"
	  ".SH PARAMETERS\n", fp);

    for (int i = 0; i < param_count; i++)
	order[i] = i;
    qsort(order, (size_t) param_count, sizeof(int), cfg_name_cmp);
    for (int k = 0; k < param_count; k++) {
	const PARAM *p = &param_table[order[k]];
	const char *d = p->defval;

	fprintf(fp, ".TP\n.B %s\n", p->name);
	cfg_man_text(fp, p->desc);
	fputs(".\n.br\n", fp);
	fprintf(fp, "Type: %s", type_name[p->type]);
	if (p->type == PT_TIME)
	    fprintf(fp, " (a bare number is in %s)",
		    p->unit == 's' ? "seconds" : p->unit == 'm' ? "minutes" :
		    p->unit == 'h' ? "hours" : p->unit == 'd' ? "days" : "weeks");
	if (p->choices)
	    fprintf(fp, "; one of: %s", p->choices);
	fputs(".\n.br\nDefault: ", fp);
	if (strcmp(d, PARAM_DEF_MYHOSTNAME) == 0)
	    fputs("the system host name", fp);
	else if (strcmp(d, PARAM_DEF_MYDOMAIN) == 0)
	    fputs("$myhostname minus its first label", fp);
	else if (*d == 0)
	    fputs("empty", fp);
	else {
	    fputs("\\fB", fp);
	    cfg_man_text(fp, d);
	    fputs("\\fR", fp);
	}
	fputs(".\n.br\n", fp);
	switch (p->origin) {
	case PO_POSTFIX:
	    fputs("Postfix: the same parameter.\n", fp);
	    break;
	case PO_POSTFIX_DEF:
	    fputs("Postfix: the same parameter; relayq's default differs (", fp);
	    cfg_man_text(fp, p->note);
	    fputs(").\n", fp);
	    break;
	case PO_RELAYQ:
	    fputs("relayq only.\n", fp);
	    break;
	}
    }
    free(order);
    fputs(".SH FILES\n"
	  ".TP\n.B /etc/relayq/relayq.cf\n"
	  "the configuration file (another directory with \\-c).\n"
	  ".SH \"SEE ALSO\"\n"
	  ".BR relayqd (8),\n.BR relayq (1),\n.BR postconf (5)\n", fp);
}
