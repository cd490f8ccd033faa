/*
 * pfimport.c - Postfix main.cf/master.cf into relayq.cf/master.cf text
 * (see pfimport.h).
 *
 * Every main.cf name falls in one of four kinds, decided from the tables
 * at run time: a relayq parameter (carried, its value rewritten); one that
 * relayq knows but that means something else for it (queue_directory,
 * mail_owner, ...: not carried, and a $reference to it is replaced by the
 * Postfix value); a Postfix parameter relayq does not implement (not
 * carried, one note each); a name of the administrator's own (carried when
 * something carried refers to it, as Debian's $mua_client_restrictions).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "config/config.h"
#include "config/master.h"
#include "config/params.h"
#include "config/pfimport.h"

#define PFI_MAX_DEPTH	100			/* $name nesting */
#define PFI_MAX_VALUE	(1 << 20)		/* bytes of one rewritten value */
#define PFI_MAX_SETTINGS 10000			/* main.cf lines (Postfix has ~1000 names) */

typedef struct PFI_SET {
    char   *name;
    char   *value;
    int     line;
    int     overridden;			/* set again further down */
    int     carry;			/* goes into relayq.cf */
    int     dropped;			/* relayq.cf refused its value */
    char   *out;			/* the value written */
    int     outline;			/* its line in relayq.cf */
} PFI_SET;

typedef struct PFI_SVC {
    int     index;			/* in master->svc */
    int     carry;
    const MASTER_SERVICE *opts_from;	/* postscreen: the smtpd "pass" service */
    char  **out;			/* "name=value" written */
    int     nout;
    int     outline;			/* its first line in master.cf */
} PFI_SVC;

struct PFIMPORT {
    char   *srcdir;
    char   *mainpath;
    PFI_SET *set;
    int     nset;
    MASTER_CF *master;
    PFI_SVC *svc;
    int     nsvc;
    char  **notes;
    int     nnotes;
    BUF     relayq_cf;
    BUF     master_cf;
    int     ncarried;
    int     nlisteners;
    /* While rewriting a master.cf -o value. */
    const MASTER_SERVICE *cur_svc;
};

typedef struct PFI_STACK {
    const char *name[PFI_MAX_DEPTH];
    int     depth;
} PFI_STACK;

/*
 * relayq parameters that Postfix's main.cf sets with a meaning relayq does
 * not share: not carried; $name references to them take Postfix's value.
 */
static const struct {
    const char *name, *why;
} pfi_own[] = {
    {"queue_directory", "Postfix's queue is not relayq's: relayq keeps its own queue_directory "
     "(default /var/spool/relayq); mail still in Postfix's queue must leave through Postfix"},
    {"mail_owner", "Postfix's account: relayq runs as its own mail_owner (default relayq)"},
    {"setgid_group", "Postfix's group: relayq's sendmail uses its own setgid_group (default relayqdrop)"},
    {"mail_version", "relayq reports its own version"},
    {"smtp_tls_session_cache_database", "relayq keeps the SMTP client's TLS sessions in memory "
     "(smtp_tls_session_cache_timeout)"},
};

/* Postfix's defaults of the names main.cf refers to most (Debian's build). */
static const struct {
    const char *name, *value;
} pfi_defaults[] = {
    {"data_directory", "/var/lib/postfix"},
    {"queue_directory", "/var/spool/postfix"},
    {"daemon_directory", "/usr/lib/postfix/sbin"},
    {"command_directory", "/usr/sbin"},
    {"meta_directory", "/etc/postfix"},
    {"shlib_directory", "/usr/lib/postfix"},
    {"sample_directory", "/etc/postfix"},
    {"readme_directory", "/usr/share/doc/postfix"},
    {"html_directory", "/usr/share/doc/postfix/html"},
    {"manpage_directory", "/usr/share/man"},
    {"sendmail_path", "/usr/sbin/sendmail"},
    {"newaliases_path", "/usr/bin/newaliases"},
    {"mailq_path", "/usr/bin/mailq"},
    {"mail_owner", "postfix"},
    {"setgid_group", "postdrop"},
    {"mail_version", "3.7.11"},
    {"default_database_type", "hash"},
    {"default_cache_db_type", "btree"},
};

/* master.cf commands relayq does not run, and why. */
static const struct {
    const char *command, *why;
} pfi_commands[] = {
    {"pickup", "built into relayqd"},
    {"cleanup", "built into relayqd"},
    {"qmgr", "built into relayqd"},
    {"oqmgr", "built into relayqd"},
    {"tlsmgr", "built into relayqd"},
    {"trivial-rewrite", "built into relayqd"},
    {"bounce", "built into relayqd"},
    {"showq", "built into relayqd (relayq mailq)"},
    {"error", "built into relayqd (the error: transport)"},
    {"discard", "built into relayqd (the discard: transport)"},
    {"flush", "built into relayqd (relayq flush)"},
    {"anvil", "built into relayqd"},
    {"scache", "built into relayqd"},
    {"postlogd", "built into relayqd (maillog_file)"},
    {"proxymap", "relayq opens its tables itself"},
    {"verify", "relayq does no address verification"},
    {"local", "relayq delivers nothing locally"},
    {"virtual", "relayq delivers nothing locally"},
    {"pipe", "relayq has no pipe(8) transport: mail for it must be relayed by SMTP"},
    {"spawn", "relayq runs no spawn(8) services"},
    {"lmtp", "relayq has no LMTP client"},
    {"qmqpd", "relayq has no QMQP server"},
    {"tlsproxy", "relayq's smtpd does its own TLS"},
    {"dnsblog", "relayq has no postscreen"},
};

/* Postfix's lookup-table types (postconf -m and the client types). */
static const char *const pfi_table_types[] = {
    "btree", "cdb", "cidr", "dbm", "environ", "fail", "hash", "inline", "internal",
    "ldap", "lmdb", "memcache", "mongodb", "mysql", "netinfo", "nis", "nisplus", "pcre",
    "pgsql", "pipemap", "proxy", "randmap", "regexp", "sdbm", "socketmap", "sqlite",
    "static", "tcp", "texthash", "unionmap", "unix",
};

static int pfi_rewrite(PFIMPORT *p, const char *s, size_t len, BUF *out,
		               PFI_STACK *st, int nested, BUF *why);

int     pfimport_table_type(const char *type, size_t len)
{
    for (size_t i = 0; i < ARRAY_LEN(pfi_table_types); i++)
	if (strlen(pfi_table_types[i]) == len && strncmp(pfi_table_types[i], type, len) == 0)
	    return (1);
    return (0);
}

static const char *pfi_own_why(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(pfi_own); i++)
	if (strcmp(pfi_own[i].name, name) == 0)
	    return (pfi_own[i].why);
    return (NULL);
}

/* A $name reference to this name stays as text in what relayq reads. */
static int pfi_kept(const char *name)
{
    if (pfi_own_why(name))
	return (0);
    if (param_index(name) >= 0)
	return (1);
    return (!postfix_param_known(name));	/* the administrator's own, or nothing */
}

PFIMPORT *pfimport_new(const char *srcdir)
{
    PFIMPORT *p = xcalloc(1, sizeof(*p));

    p->srcdir = xstrdup(srcdir);
    return (p);
}

void    pfimport_free(PFIMPORT *p)
{
    if (p == NULL)
	return;
    for (int i = 0; i < p->nset; i++) {
	free(p->set[i].name);
	free(p->set[i].value);
	free(p->set[i].out);
    }
    for (int i = 0; i < p->nsvc; i++)
	str_list_free(p->svc[i].out);
    for (int i = 0; i < p->nnotes; i++)
	free(p->notes[i]);
    free(p->notes);
    free(p->set);
    free(p->svc);
    master_free(p->master);
    buf_free(&p->relayq_cf);
    buf_free(&p->master_cf);
    free(p->mainpath);
    free(p->srcdir);
    free(p);
}

void    pfimport_note(PFIMPORT *p, const char *fmt,...)
{
    BUF     b = BUF_INIT;
    va_list ap;

    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    /* One line each, here and as a comment in relayq.cf, whatever a file name holds. */
    for (size_t i = 0; i < b.len; i++)
	if ((unsigned char) b.data[i] < 0x20 || b.data[i] == 0x7f)
	    b.data[i] = '?';
    p->notes = xrealloc(p->notes, sizeof(char *) * (size_t) (p->nnotes + 1));
    p->notes[p->nnotes++] = buf_steal(&b);
}

char  **pfimport_notes(const PFIMPORT *p, int *n)
{
    *n = p->nnotes;
    return (p->notes);
}

const char *pfimport_relayq_cf(const PFIMPORT *p)
{
    return (p->relayq_cf.data ? p->relayq_cf.data : "");
}

const char *pfimport_master_cf(const PFIMPORT *p)
{
    return (p->master ? (p->master_cf.data ? p->master_cf.data : "") : NULL);
}

int     pfimport_ncarried(const PFIMPORT *p)
{
    return (p->ncarried);
}

int     pfimport_nlisteners(const PFIMPORT *p)
{
    return (p->nlisteners);
}

/* No NUL byte, not too big: the text may then be handled as a C string. */
static int pfi_text_ok(const char *path, const char *text, size_t len, char *err, size_t errlen)
{
    const char *nul;

    if (len > PFI_MAX_FILE) {
	snprintf(err, errlen, "%s: larger than %d bytes: not a Postfix configuration file", path,
		 PFI_MAX_FILE);
	return (-1);
    }
    if ((nul = memchr(text, 0, len)) != NULL) {
	int     line = 1;

	for (const char *cp = text; cp < nul; cp++)
	    line += (*cp == '\n');
	snprintf(err, errlen, "%s, line %d: a NUL byte: not a text file", path, line);
	return (-1);
    }
    return (0);
}

/* ---- main.cf ---- */

static int pfi_add(PFIMPORT *p, char *logical, int line, char *err, size_t errlen)
{
    char   *eq = strchr(logical, '='), *name, *value;
    PFI_SET *s;

    if (eq == NULL) {
	snprintf(err, errlen, "%s, line %d: missing '=' after parameter name", p->mainpath, line);
	return (-1);
    }
    *eq = 0;
    name = str_trim(logical);
    value = str_trim(eq + 1);
    if (*name == 0) {
	snprintf(err, errlen, "%s, line %d: missing parameter name before '='", p->mainpath, line);
	return (-1);
    }
    for (char *cp = name; *cp; cp++)
	if (!isalnum((unsigned char) *cp) && *cp != '_') {
	    snprintf(err, errlen, "%s, line %d: bad parameter name: expected letters, digits and '_'",
		     p->mainpath, line);
	    return (-1);
	}
    if (p->nset >= PFI_MAX_SETTINGS) {
	snprintf(err, errlen, "%s, line %d: more than %d parameter settings: not a Postfix main.cf",
		 p->mainpath, line, PFI_MAX_SETTINGS);
	return (-1);
    }
    for (int i = 0; i < p->nset; i++)
	if (strcmp(p->set[i].name, name) == 0)
	    p->set[i].overridden = 1;
    p->set = xrealloc(p->set, sizeof(*p->set) * (size_t) (p->nset + 1));
    s = &p->set[p->nset++];
    memset(s, 0, sizeof(*s));
    s->name = xstrdup(name);
    s->value = xstrdup(value);
    s->line = line;
    return (0);
}

int     pfimport_main(PFIMPORT *p, const char *path, const char *text, size_t len,
		              char *err, size_t errlen)
{
    BUF     logical = BUF_INIT;
    size_t  pos = 0;
    int     lineno = 0, start = 0, ret = 0;

    free(p->mainpath);
    p->mainpath = xstrdup(path);
    if (pfi_text_ok(path, text, len, err, errlen) < 0)
	return (-1);
    for (;;) {
	const char *line = text + pos, *nl, *cp;
	size_t  ll;
	int     eof = (pos >= len);

	if (!eof) {
	    nl = memchr(line, '\n', len - pos);
	    ll = nl ? (size_t) (nl - line) : len - pos;
	    pos += ll + (nl != NULL);
	    lineno++;
	    while (ll > 0 && line[ll - 1] == '\r')
		ll--;
	    for (cp = line; cp < line + ll && isspace((unsigned char) *cp); cp++)
		 /* void */ ;
	    if (cp == line + ll || *cp == '#')
		continue;
	    if (isspace((unsigned char) line[0])) {
		if (start == 0) {
		    snprintf(err, errlen, "%s, line %d: text starts with white space but "
			     "continues no \"name = value\" line", path, lineno);
		    ret = -1;
		    break;
		}
		if (logical.len + ll > PFI_MAX_LINE) {
		    snprintf(err, errlen, "%s, line %d: a logical line longer than %d bytes",
			     path, start, PFI_MAX_LINE);
		    ret = -1;
		    break;
		}
		buf_append(&logical, line, ll);
		continue;
	    }
	}
	if (start && pfi_add(p, logical.data, start, err, errlen) < 0) {
	    ret = -1;
	    break;
	}
	start = 0;
	if (eof)
	    break;
	if (ll > PFI_MAX_LINE) {
	    snprintf(err, errlen, "%s, line %d: a logical line longer than %d bytes",
		     path, lineno, PFI_MAX_LINE);
	    ret = -1;
	    break;
	}
	buf_reset(&logical);
	buf_append(&logical, line, ll);
	start = lineno;
    }
    buf_free(&logical);
    return (ret);
}

/* ---- master.cf ---- */

int     pfimport_master(PFIMPORT *p, const char *path, const char *text, size_t len,
			        char *err, size_t errlen)
{
    if (pfi_text_ok(path, text, len, err, errlen) < 0)
	return (-1);
    master_free(p->master);
    if ((p->master = master_parse(path, text, len, err, errlen)) == NULL)
	return (-1);
    return (0);
}

/* ---- $name rewriting ---- */

static PFI_SET *pfi_find_set(PFIMPORT *p, const char *name, size_t len)
{
    for (int i = p->nset - 1; i >= 0; i--)
	if (strncmp(p->set[i].name, name, len) == 0 && p->set[i].name[len] == 0)
	    return (&p->set[i]);
    return (NULL);
}

static const PFI_SET *pfi_find(const PFIMPORT *p, const char *name, size_t len)
{
    for (int i = p->nset - 1; i >= 0; i--)
	if (strncmp(p->set[i].name, name, len) == 0 && p->set[i].name[len] == 0)
	    return (&p->set[i]);
    return (NULL);
}

/* The value of a name that is not kept, rewritten, appended to out. */
static int pfi_resolve(PFIMPORT *p, const char *name, size_t len, BUF *out,
		               PFI_STACK *st, BUF *why)
{
    const char *raw = NULL;
    char   *key = xstrndup(name, len);
    int     ret;

    /* An -o of the same service comes first, as in Postfix. */
    for (int i = 0; p->cur_svc && i < p->cur_svc->nopts; i++) {
	const char *o = p->cur_svc->opts[i];

	if (strncmp(o, key, len) == 0 && o[len] == '=')
	    raw = o + len + 1;
    }
    if (raw == NULL) {
	const PFI_SET *s = pfi_find(p, name, len);

	if (s)
	    raw = s->value;
    }
    if (raw == NULL && strcmp(key, "config_directory") == 0)
	raw = p->srcdir;
    if (raw == NULL && strcmp(key, "service_name") == 0 && p->cur_svc)
	raw = p->cur_svc->service;
    for (size_t i = 0; raw == NULL && i < ARRAY_LEN(pfi_defaults); i++)
	if (strcmp(pfi_defaults[i].name, key) == 0)
	    raw = pfi_defaults[i].value;
    if (raw == NULL) {				/* unknown default: empty */
	free(key);
	return (0);
    }
    for (int i = 0; i < st->depth; i++) {
	if (strcmp(st->name[i], key) == 0) {
	    buf_reset(why);
	    buf_puts(why, "$name expansion loop: ");
	    for (int j = i; j < st->depth; j++)
		buf_printf(why, "%s -> ", st->name[j]);
	    buf_puts(why, key);
	    free(key);
	    return (-1);
	}
    }
    if (st->depth >= PFI_MAX_DEPTH) {
	buf_reset(why);
	buf_printf(why, "$name expansion nested deeper than %d levels", PFI_MAX_DEPTH);
	free(key);
	return (-1);
    }
    st->name[st->depth++] = key;
    ret = pfi_rewrite(p, raw, strlen(raw), out, st, 1, why);
    st->depth--;
    free(key);
    return (ret);
}

/* The inside of ${...} or $(...) (b is '{' or '('). */
static int pfi_braced(PFIMPORT *p, const char *s, size_t len, char b, BUF *out,
		              PFI_STACK *st, BUF *why)
{
    size_t  n = 0;
    const char *a, *e;
    size_t  alen, elen;
    CONFIG_COND c;

    while (n < len && (isalnum((unsigned char) s[n]) || s[n] == '_'))
	n++;
    if (n == 0 || (n < len && s[n] != '?' && s[n] != ':')) {
	buf_reset(why);
	buf_printf(why, "bad parameter reference \"$%c%.*s%c\"", b, (int) len, s, b == '{' ? '}' : ')');
	return (-1);
    }
    {
	char   *name = xstrndup(s, n);
	int     kept = pfi_kept(name);

	free(name);
	if (kept) {
	    buf_printf(out, "$%c%.*s", b, (int) n, s);
	    if (n < len) {
		buf_putc(out, s[n]);
		if (pfi_rewrite(p, s + n + 1, len - n - 1, out, st, 1, why) < 0)
		    return (-1);
	    }
	    buf_putc(out, b == '{' ? '}' : ')');
	    return (0);
	}
    }
    if (n == len)
	return (pfi_resolve(p, s, n, out, st, why));

    /* A Postfix-only name in a conditional: decided here, on its value. */
    switch (config_cond(s, len, n, &c)) {
    case CONFIG_COND_UNBALANCED:
	goto unbalanced;
    case CONFIG_COND_TRAILING:
	buf_reset(why);
	buf_printf(why, "unexpected text after {...} in \"$%c%.*s%c\"", b, (int) len, s,
		   b == '{' ? '}' : ')');
	return (-1);
    }
    a = c.then_text;
    alen = c.then_len;
    e = c.else_text;
    elen = c.else_len;
    {
	BUF     val = BUF_INIT;
	int     ret = pfi_resolve(p, s, n, &val, st, why), empty = (val.len == 0);

	buf_free(&val);
	if (ret < 0)
	    return (-1);
	if (!empty && a)
	    return (pfi_rewrite(p, a, alen, out, st, 1, why));
	if (empty && e)
	    return (pfi_rewrite(p, e, elen, out, st, 1, why));
	return (0);
    }

unbalanced:
    buf_reset(why);
    buf_printf(why, "unbalanced {} in \"$%c%.*s%c\"", b, (int) len, s, b == '{' ? '}' : ')');
    return (-1);
}

/*
 * s with every reference to a name that is not kept replaced by its value;
 * references to kept names stay ("${name}" inside a replaced value, so
 * that the text after it cannot extend the name).
 */
static int pfi_rewrite(PFIMPORT *p, const char *s, size_t len, BUF *out,
		               PFI_STACK *st, int nested, BUF *why)
{
    size_t  i = 0;

    while (i < len) {
	size_t  start = i;

	if (out->len > PFI_MAX_VALUE) {
	    buf_reset(why);
	    buf_printf(why, "the value grows larger than %d bytes", PFI_MAX_VALUE);
	    return (-1);
	}
	while (i < len && s[i] != '$')
	    i++;
	buf_append(out, s + start, i - start);
	if (i >= len)
	    break;
	i++;
	if (i >= len) {
	    buf_putc(out, '$');
	} else if (s[i] == '$') {
	    buf_puts(out, "$$");
	    i++;
	} else if (s[i] == '{' || s[i] == '(') {
	    long    e = config_match(s, len, i);

	    if (e < 0) {
		buf_reset(why);
		buf_printf(why, "missing '%c' in \"%.*s\"", s[i] == '{' ? '}' : ')', (int) len, s);
		return (-1);
	    }
	    if (pfi_braced(p, s + i + 1, (size_t) e - i - 1, s[i], out, st, why) < 0)
		return (-1);
	    i = (size_t) e + 1;
	} else if (isalnum((unsigned char) s[i]) || s[i] == '_') {
	    size_t  n = i;
	    char   *name;

	    while (n < len && (isalnum((unsigned char) s[n]) || s[n] == '_'))
		n++;
	    name = xstrndup(s + i, n - i);
	    if (pfi_kept(name)) {
		buf_printf(out, nested ? "${%s}" : "$%s", name);
	    } else if (pfi_resolve(p, s + i, n - i, out, st, why) < 0) {
		free(name);
		return (-1);
	    }
	    free(name);
	    i = n;
	} else {
	    buf_putc(out, '$');
	}
    }
    if (out->len > PFI_MAX_VALUE) {
	buf_reset(why);
	buf_printf(why, "the value grows larger than %d bytes", PFI_MAX_VALUE);
	return (-1);
    }
    return (0);
}

/* ---- table specs ---- */

#define PFI_SEP(c)	((c) == ',' || isspace((unsigned char) (c)))

char   *pfimport_map_specs(const char *where, const char *param, const char *value,
			           PFI_SPEC_FN fn, void *ctx, char **why)
{
    BUF     out = BUF_INIT;
    const char *cp = value;

    buf_puts(&out, "");
    while (*cp) {
	const char *tok = cp, *colon;
	size_t  tl;

	if (PFI_SEP(*cp)) {
	    buf_putc(&out, *cp++);
	    continue;
	}
	/* One element: up to a separator outside {...}. */
	{
	    int     depth = 0;

	    while (*cp && (depth > 0 || !PFI_SEP(*cp))) {
		if (*cp == '{')
		    depth++;
		else if (*cp == '}' && depth > 0)
		    depth--;
		cp++;
	    }
	}
	tl = (size_t) (cp - tok);
	colon = memchr(tok, ':', tl);
	if (fn && colon && pfimport_table_type(tok, (size_t) (colon - tok))) {
	    char   *spec = xstrndup(tok, tl);
	    char   *rep = fn(ctx, where, param, spec, why);

	    free(spec);
	    if (rep == NULL) {
		buf_free(&out);
		return (NULL);
	    }
	    buf_puts(&out, rep);
	    free(rep);
	} else {
	    buf_append(&out, tok, tl);
	}
    }
    return (buf_steal(&out));
}

/* Parameters whose type:name elements are not lookup tables. */
static int pfi_no_tables(const char *param)
{
    size_t  n = strlen(param);

    return ((n >= 7 && strcmp(param + n - 7, "milters") == 0)
	    || (n >= 9 && strcmp(param + n - 9, "transport") == 0)
	    || (n >= 14 && strcmp(param + n - 14, "cache_database") == 0)
	    || strcmp(param, "content_filter") == 0 || strcmp(param, "relayhost") == 0
	    || strcmp(param, "smtp_fallback_relay") == 0);
}

/*
 * A carried value, rewritten: references, then table specs.  NULL with
 * *drop set (a reason) when the table callback refused it; NULL with why
 * set on an error.
 */
static char *pfi_value(PFIMPORT *p, const char *where, const char *name, const char *value,
		               PFI_SPEC_FN fn, void *ctx, char **drop, BUF *why)
{
    BUF     out = BUF_INIT;
    PFI_STACK st;
    char   *res;

    st.depth = 1;
    st.name[0] = name;
    *drop = NULL;
    buf_puts(&out, "");
    if (pfi_rewrite(p, value, strlen(value), &out, &st, 0, why) < 0) {
	buf_free(&out);
	return (NULL);
    }
    if (pfi_no_tables(name)) {
	res = buf_steal(&out);
    } else {
	res = pfimport_map_specs(where, name, out.data, fn, ctx, drop);
	buf_free(&out);
    }
    return (res);
}

/*
 * The administrator's own names that text refers to and that are not
 * carried yet: marked carried and pushed on work (their values are
 * rewritten and scanned in turn).
 */
static void pfi_use(PFIMPORT *p, const char *text, const char **work, int *nwork)
{
    for (const char *cp = text; (cp = strchr(cp, '$')) != NULL;) {
	const char *q = cp + 1, *e;
	PFI_SET *s;

	if (*q == '$') {
	    cp += 2;
	    continue;
	}
	if (*q == '{' || *q == '(')
	    q++;
	for (e = q; isalnum((unsigned char) *e) || *e == '_'; e++)
	     /* void */ ;
	cp = e > q ? e : q;
	if (e == q || (s = pfi_find_set(p, q, (size_t) (e - q))) == NULL || s->carry)
	    continue;
	if (param_index(s->name) >= 0 || postfix_param_known(s->name))
	    continue;
	s->carry = 1;
	work[(*nwork)++] = s->name;
    }
}

/* ---- deciding ---- */

static const char *pfi_base(const char *command)
{
    const char *slash = strrchr(command, '/');

    return (slash ? slash + 1 : command);
}

static const char *pfi_command_why(const MASTER_SERVICE *svc)
{
    const char *c = pfi_base(svc->command);

    if (strcmp(c, "smtp") == 0) {
	if (strcmp(svc->type, "unix") == 0 && svc->nopts == 0)
	    return ("built into relayqd (its SMTP client)");
	return ("relayq has one SMTP client, configured in relayq.cf: this transport's -o "
		"settings are not carried over");
    }
    if (strcmp(c, "smtpd") == 0)
	return ("relayq's smtpd listens on inet services only");
    for (size_t i = 0; i < ARRAY_LEN(pfi_commands); i++)
	if (strcmp(pfi_commands[i].command, c) == 0)
	    return (pfi_commands[i].why);
    return ("relayq does not run this service");
}

/* Which master.cf services become relayq listeners. */
static void pfi_plan_master(PFIMPORT *p)
{
    const MASTER_SERVICE *pass = NULL;

    if (p->master == NULL)
	return;
    for (int i = 0; i < p->master->nsvc; i++) {
	const MASTER_SERVICE *s = &p->master->svc[i];

	if (strcmp(s->type, "pass") == 0 && strcmp(pfi_base(s->command), "smtpd") == 0 && pass == NULL)
	    pass = s;
    }
    p->svc = xcalloc((size_t) p->master->nsvc + 1, sizeof(*p->svc));
    p->nsvc = p->master->nsvc;
    for (int i = 0; i < p->master->nsvc; i++) {
	const MASTER_SERVICE *s = &p->master->svc[i];
	PFI_SVC *v = &p->svc[i];

	v->index = i;
	v->opts_from = s;
	if (master_is_smtpd(s)) {
	    v->carry = 1;
	} else if (strcmp(s->type, "inet") == 0 && strcmp(pfi_base(s->command), "postscreen") == 0) {
	    v->carry = 1;
	    if (pass)
		v->opts_from = pass;
	    pfimport_note(p, "translated: %s, line %d: %s (inet, postscreen): relayq has no postscreen: "
			  "its smtpd listens here directly%s", p->master->path, s->line, s->service,
			  pass ? ", with the -o settings of the smtpd \"pass\" service" : "");
	} else if (strcmp(s->type, "pass") == 0 && strcmp(pfi_base(s->command), "smtpd") == 0) {
	    pfimport_note(p, "not carried over: %s, line %d: %s (pass, smtpd): relayq has no postscreen "
			  "to hand connections over: the inet service listens with smtpd itself",
			  p->master->path, s->line, s->service);
	} else {
	    pfimport_note(p, "not carried over: %s, line %d: %s (%s, %s): %s", p->master->path, s->line,
			  s->service, s->type, pfi_base(s->command), pfi_command_why(s));
	}
    }
}

/* The -o list of a carried service, rewritten. */
static int pfi_convert_service(PFIMPORT *p, PFI_SVC *v, PFI_SPEC_FN fn, void *ctx,
			               char *err, size_t errlen)
{
    const MASTER_SERVICE *s = &p->master->svc[v->index];
    const MASTER_SERVICE *o = v->opts_from;
    const PFI_SET *main_syslog = pfi_find(p, "syslog_name", strlen("syslog_name"));
    char    where[512];
    BUF     why = BUF_INIT;

    snprintf(where, sizeof(where), "%s, line %d", p->master->path, s->line);
    v->out = xcalloc(1, sizeof(char *));
    p->cur_svc = o;
    for (int k = 0; k < o->nopts; k++) {
	size_t  nl = strcspn(o->opts[k], "=");
	char   *name = xstrndup(o->opts[k], nl);
	const char *val = o->opts[k] + nl + (o->opts[k][nl] == '=');
	const char *own = pfi_own_why(name);
	char   *drop = NULL, *nv;

	if (own || (param_index(name) < 0 && postfix_param_known(name))) {
	    const char *w = own ? own : config_postfix_note(name);

	    pfimport_note(p, "not carried over: %s: service %s: -o %s: %s%s%s", where, s->service, name,
			  own ? "" : "a Postfix parameter that relayq does not implement",
			  w && !own ? ": " : "", w ? w : "");
	    free(name);
	    continue;
	}
	if (param_index(name) < 0) {
	    pfimport_note(p, "not carried over: %s: service %s: -o %s: not a Postfix or relayq parameter",
			  where, s->service, name);
	    free(name);
	    continue;
	}
	if ((nv = pfi_value(p, where, name, val, fn, ctx, &drop, &why)) == NULL) {
	    if (drop == NULL) {
		snprintf(err, errlen, "%s: service %s: -o %s: %s", where, s->service, name, why.data);
		free(name);
		buf_free(&why);
		p->cur_svc = NULL;
		return (-1);
	    }
	    pfimport_note(p, "not carried over: %s: service %s: -o %s: %s", where, s->service, name, drop);
	    free(drop);
	    free(name);
	    continue;
	}
	/* Postfix's syslog_name is "postfix": "postfix/submission" means "$syslog_name/submission". */
	if (strcmp(name, "syslog_name") == 0 && main_syslog == NULL
	    && strncmp(nv, "postfix", 7) == 0 && (nv[7] == 0 || nv[7] == '/')) {
	    char   *t = xasprintf("relayq%s", nv + 7);

	    pfimport_note(p, "translated: %s: service %s: -o syslog_name=%s becomes %s (relayq's "
			  "syslog_name is relayq)", where, s->service, nv, t);
	    free(nv);
	    nv = t;
	}
	v->out = xrealloc(v->out, sizeof(char *) * (size_t) (v->nout + 2));
	v->out[v->nout++] = xasprintf("%s=%s", name, nv);
	v->out[v->nout] = NULL;
	free(nv);
	free(name);
    }
    p->cur_svc = NULL;
    buf_free(&why);
    return (0);
}

static int pfi_any_listener(const PFIMPORT *p)
{
    for (int i = 0; i < p->nsvc; i++)
	if (p->svc[i].carry)
	    return (1);
    return (0);
}

/* relayq.cf and master.cf from the decisions. */
static void pfi_render(PFIMPORT *p)
{
    int     line;

    buf_reset(&p->relayq_cf);
    buf_puts(&p->relayq_cf, "# relayq.cf written by \"relayq import-postfix\" from ");
    for (const char *cp = p->mainpath; *cp; cp++)
	buf_putc(&p->relayq_cf, (unsigned char) *cp < 0x20 ? '?' : *cp);
    buf_puts(&p->relayq_cf, ".\n# What was not carried over is listed at the end of this file.\n\n");
    line = 4;
    p->ncarried = 0;
    for (int i = 0; i < p->nset; i++) {
	PFI_SET *s = &p->set[i];

	if (!s->carry || s->dropped)
	    continue;
	buf_printf(&p->relayq_cf, "%s =%s%s\n", s->name, *s->out ? " " : "", s->out);
	s->outline = line++;
	p->ncarried++;
    }
    if (p->nnotes)
	buf_puts(&p->relayq_cf, "\n");
    for (int i = 0; i < p->nnotes; i++)
	buf_printf(&p->relayq_cf, "# %s\n", p->notes[i]);

    buf_reset(&p->master_cf);
    p->nlisteners = 0;
    if (p->master == NULL)
	return;
    buf_puts(&p->master_cf, "# master.cf written by \"relayq import-postfix\" from ");
    for (const char *cp = p->master->path; *cp; cp++)
	buf_putc(&p->master_cf, (unsigned char) *cp < 0x20 ? '?' : *cp);
    buf_puts(&p->master_cf, ":\n# the SMTP listeners.  relayq reads the service name, the type (inet), maxproc,\n"
	     "# the command (smtpd) and the -o settings.\n"
	     "# service   type  private unpriv  chroot  wakeup  maxproc command\n");
    line = 5;
    for (int i = 0; i < p->nsvc; i++) {
	PFI_SVC *v = &p->svc[i];
	const MASTER_SERVICE *s = &p->master->svc[v->index];
	char    maxproc[32];

	if (!v->carry)
	    continue;
	if (s->maxproc < 0)
	    snprintf(maxproc, sizeof(maxproc), "-");
	else
	    snprintf(maxproc, sizeof(maxproc), "%d", s->maxproc);
	buf_printf(&p->master_cf, "%-11s inet  n       -       -       -       %-7s smtpd\n",
		   s->service, maxproc);
	v->outline = line++;
	for (int k = 0; k < v->nout; k++) {
	    const char *o = v->out[k];

	    if (strpbrk(o, " \t") || strchr(o, '{') || strchr(o, '}'))
		buf_printf(&p->master_cf, "  -o { %s }\n", o);
	    else
		buf_printf(&p->master_cf, "  -o %s\n", o);
	    line++;
	}
	p->nlisteners++;
    }
}

int     pfimport_convert(PFIMPORT *p, PFI_SPEC_FN fn, void *ctx, char *err, size_t errlen)
{
    BUF     why = BUF_INIT;

    if (p->mainpath == NULL)
	p->mainpath = xasprintf("%s/main.cf", p->srcdir);

    /* relayq's parameters; Postfix's are notes. */
    for (int i = 0; i < p->nset; i++) {
	PFI_SET *s = &p->set[i];
	const char *own = pfi_own_why(s->name);
	char    where[512];
	char   *drop = NULL;

	if (s->overridden)
	    continue;
	snprintf(where, sizeof(where), "%s, line %d", p->mainpath, s->line);
	if (own) {
	    pfimport_note(p, "not carried over: %s: %s: %s", where, s->name, own);
	} else if (param_index(s->name) < 0 && postfix_param_known(s->name)) {
	    const char *w = config_postfix_note(s->name);

	    if (strcmp(s->name, "mynetworks_style") == 0)
		w = "relayq does not derive mynetworks: set mynetworks (relayq's default: "
		    "127.0.0.0/8 [::1]/128)";
	    pfimport_note(p, "not carried over: %s: %s: a Postfix parameter that relayq does not "
			  "implement%s%s", where, s->name, w ? ": " : "", w ? w : "");
	} else if (param_index(s->name) >= 0) {
	    if ((s->out = pfi_value(p, where, s->name, s->value, fn, ctx, &drop, &why)) == NULL) {
		if (drop == NULL) {
		    snprintf(err, errlen, "%s: parameter %s: %s", where, s->name, why.data);
		    goto fail;
		}
		pfimport_note(p, "not carried over: %s: %s: %s", where, s->name, drop);
		free(drop);
		continue;
	    }
	    s->carry = 1;
	    if (strcmp(s->name, "mydestination") == 0 && *s->out)
		pfimport_note(p, "note: %s: mydestination: carried over, but relayq delivers nothing "
			      "locally: it treats these domains like any other (from outside, only relay_domains are "
			      "accepted)", where);
	}
    }

    /* Listeners. */
    pfi_plan_master(p);
    for (int i = 0; i < p->nsvc; i++)
	if (p->svc[i].carry && pfi_convert_service(p, &p->svc[i], fn, ctx, err, errlen) < 0)
	    goto fail;

    /*
     * The administrator's own names that something carried refers to, and
     * what those refer to: a work list of texts, each scanned once, so a
     * long chain costs one pass.
     */
    {
	const char **work = xcalloc((size_t) p->nset + 1, sizeof(char *));
	int     nwork = 0;

	for (int i = 0; i < p->nset; i++)
	    if (p->set[i].carry && param_index(p->set[i].name) >= 0)
		pfi_use(p, p->set[i].out, work, &nwork);
	for (int k = 0; k < p->nsvc; k++)
	    for (int j = 0; j < p->svc[k].nout; j++)
		pfi_use(p, p->svc[k].out[j], work, &nwork);
	while (nwork > 0) {
	    const char *wname = work[--nwork];
	    PFI_SET *s = pfi_find_set(p, wname, strlen(wname));
	    char    where[512];
	    char   *drop = NULL;

	    snprintf(where, sizeof(where), "%s, line %d", p->mainpath, s->line);
	    if ((s->out = pfi_value(p, where, s->name, s->value, fn, ctx, &drop, &why)) == NULL) {
		if (drop == NULL) {
		    snprintf(err, errlen, "%s: parameter %s: %s", where, s->name, why.data);
		    free(work);
		    goto fail;
		}
		pfimport_note(p, "not carried over: %s: %s: %s", where, s->name, drop);
		free(drop);
		s->out = xstrdup("");
	    }
	    pfi_use(p, s->out, work, &nwork);
	}
	free(work);
    }
    for (int i = 0; i < p->nset; i++) {
	const PFI_SET *s = &p->set[i];

	if (!s->overridden && !s->carry && param_index(s->name) < 0 && !postfix_param_known(s->name))
	    pfimport_note(p, "not carried over: %s, line %d: %s: not a Postfix or relayq parameter, "
			  "and nothing carried over refers to it", p->mainpath, s->line, s->name);
    }
    if (p->master == NULL)
	pfimport_note(p, "note: no master.cf was read: relayq listens on smtpd_listen "
		      "(default 127.0.0.1:2525)");
    else if (!pfi_any_listener(p))
	pfimport_note(p, "note: %s has no smtpd inet service: the written master.cf has no listener, "
		      "and relayqd will not start until it has one", p->master->path);
    pfi_render(p);
    buf_free(&why);
    return (0);

fail:
    buf_free(&why);
    return (-1);
}

int     pfimport_drop_line(PFIMPORT *p, int line, const char *why)
{
    for (int i = 0; i < p->nset; i++) {
	PFI_SET *s = &p->set[i];

	if (s->carry && !s->dropped && s->outline == line) {
	    s->dropped = 1;
	    pfimport_note(p, "not carried over: %s, line %d: %s: relayq does not accept the value: %s",
			  p->mainpath, s->line, s->name, why);
	    pfi_render(p);
	    return (0);
	}
    }
    return (-1);
}

int     pfimport_source_line(const PFIMPORT *p, int line)
{
    for (int i = 0; i < p->nset; i++)
	if (p->set[i].carry && !p->set[i].dropped && p->set[i].outline == line)
	    return (p->set[i].line);
    return (0);
}

int     pfimport_drop_listener(PFIMPORT *p, int line, const char *opt, const char *why)
{
    for (int i = 0; i < p->nsvc; i++) {
	PFI_SVC *v = &p->svc[i];
	const MASTER_SERVICE *s;
	size_t  ol = opt ? strlen(opt) : 0;

	if (!v->carry || v->outline != line)
	    continue;
	s = &p->master->svc[v->index];
	if (opt == NULL) {
	    v->carry = 0;
	    pfimport_note(p, "not carried over: %s, line %d: service %s: %s", p->master->path, s->line,
			  s->service, why);
	    pfi_render(p);
	    return (0);
	}
	for (int k = 0; k < v->nout; k++) {
	    if (strncmp(v->out[k], opt, ol) == 0 && v->out[k][ol] == '=') {
		free(v->out[k]);
		memmove(v->out + k, v->out + k + 1, sizeof(char *) * (size_t) (v->nout - k));
		v->nout--;
		pfimport_note(p, "not carried over: %s, line %d: service %s: -o %s: relayq does not "
			      "accept the value: %s", p->master->path, s->line, s->service, opt, why);
		pfi_render(p);
		return (0);
	    }
	}
	return (-1);
    }
    return (-1);
}
