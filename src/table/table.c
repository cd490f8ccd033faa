/*
 * table - opening tables by "type:name", the shared registry, parameter
 * lists, Postfix's domain and address search orders, asynchronous
 * lookups and reloads.  See table.h.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/log.h"
#include "table/table_priv.h"

static const TABLE_OPS *const table_types[] = {
    &table_ops_inline, &table_ops_texthash, &table_ops_static,
    &table_ops_hash, &table_ops_btree, &table_ops_lmdb, &table_ops_cdb,
    &table_ops_regexp, &table_ops_pcre,
    &table_ops_socketmap, &table_ops_unionmap, &table_ops_pipemap,
};

static TABLE *registry;

struct event_base *table_event_base;

static void (*table_warn_hook) (const char *msg);

void    table_set_warn(void (*fn) (const char *msg))
{
    table_warn_hook = fn;
}

/* One warning line: through the hook (the CLI), or the log. */
static void table_warn(const char *service, const char *fmt, ...) UTIL_PRINTF(2, 3);

static void table_warn(const char *service, const char *fmt, ...)
{
    va_list ap;
    char    msg[2048];

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (table_warn_hook)
	table_warn_hook(msg);
    else
	log_warn(service ? service : "master", "%s", msg);
}

void    table_set_event_base(struct event_base *base)
{
    table_event_base = base;
}

void    table_warnf(const char *fmt, ...)
{
    va_list ap;
    char    msg[2048];

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    table_warn(NULL, "%s", msg);
}

/* ---- helpers shared by the types ------------------------------------- */

void    table_set_result(TABLE *t, const char *s, size_t len, const char **val)
{
    buf_reset(&t->result);
    buf_append(&t->result, s, len);
    *val = t->result.data;
}

const char *table_fold_key(const TABLE *t, const char *key, BUF *tmp)
{
    if ((t->flags & TABLE_FLAG_FOLD) == 0)
	return (key);
    buf_reset(tmp);
    buf_puts(tmp, key);
    str_lower(tmp->data);
    return (tmp->data);
}

/* ---- one table -------------------------------------------------------- */

static void table_stat(TABLE *t, struct stat *st, int ok)
{
    if (ok) {
	t->mtime = st->st_mtim;
	t->size = st->st_size;
	t->ino = st->st_ino;
    } else {
	memset(&t->mtime, 0, sizeof(t->mtime));
	t->size = -1;
	t->ino = 0;
    }
}

/* Did the watched file change since it was loaded? */
static int table_changed(TABLE *t)
{
    struct stat st;

    if (t->watch == NULL)
	return (0);
    if (stat(t->watch, &st) < 0)
	return (t->size != -1);
    return (st.st_mtim.tv_sec != t->mtime.tv_sec || st.st_mtim.tv_nsec != t->mtime.tv_nsec
	    || st.st_size != t->size || st.st_ino != t->ino);
}

static void table_free(TABLE *t)
{
    if (t->priv && t->ops->free)
	t->ops->free(t->priv);
    free(t->spec);
    free(t->type);
    free(t->name);
    free(t->param);
    free(t->watch);
    buf_free(&t->result);
    free(t);
}

TABLE  *table_open(const char *spec, int flags, const char *param, char *err, size_t errlen)
{
    const char *colon;
    const TABLE_OPS *ops = NULL;
    TABLE  *t;
    struct stat st;
    size_t  tlen;

    while (isspace((unsigned char) *spec))
	spec++;
    flags &= TABLE_FLAG_FOLD;
    if ((colon = strchr(spec, ':')) == NULL || colon == spec) {
	snprintf(err, errlen, "%s%stable \"%s\": expected type:name",
		 param ? param : "", param ? ": " : "", spec);
	return (NULL);
    }
    tlen = colon - spec;
    for (size_t i = 0; i < ARRAY_LEN(table_types); i++)
	if (strlen(table_types[i]->type) == tlen
	    && str_ncasecmp(table_types[i]->type, spec, tlen) == 0)
	    ops = table_types[i];
    if (ops == NULL) {
	snprintf(err, errlen, "%s%sunsupported table type \"%.*s\" in \"%s\" (relayq reads "
		 "inline, texthash, static, hash, btree, lmdb, cdb, regexp, pcre, "
		 "socketmap, unionmap, pipemap)", param ? param : "", param ? ": " : "",
		 (int) tlen, spec, spec);
	return (NULL);
    }
    /* Shared: the same spec with the same flags is one table. */
    if ((ops->flags & TABLE_OPS_SINGLETON) == 0)
	for (t = registry; t; t = t->next)
	    if (t->flags == flags && strcmp(t->spec, spec) == 0) {
		t->refs++;
		return (t);
	    }
    t = xcalloc(1, sizeof(*t));
    t->ops = ops;
    t->spec = xstrdup(spec);
    t->type = xstrndup(spec, tlen);
    str_lower(t->type);
    t->name = xstrdup(colon + 1);
    t->param = xstrdup(param);
    t->flags = flags;
    t->refs = 1;
    buf_init(&t->result);
    if (ops->flags & TABLE_OPS_FILE) {
	if (ops->flags & TABLE_OPS_INDEXED)
	    t->watch = xasprintf("%s.%s", t->name,
				 strcmp(t->type, "lmdb") == 0 ? "lmdb" :
				 strcmp(t->type, "cdb") == 0 ? "cdb" : "db");
	else
	    t->watch = xstrdup(t->name);
    }
    /* Stat before loading: a change during the load is seen next time. */
    if (t->watch)
	table_stat(t, &st, stat(t->watch, &st) == 0);
    t->load_euid = geteuid();
    t->last_check = time_mono_us();
    if ((t->priv = ops->load(t, err, errlen)) == NULL) {
	table_free(t);
	return (NULL);
    }
    /* As Postfix: an indexed file older than its source is used, with a warning. */
    if (ops->flags & TABLE_OPS_INDEXED) {
	struct stat src;

	if (stat(t->name, &src) == 0 && t->size >= 0 && src.st_mtime > t->mtime.tv_sec)
	    table_warn(NULL, "database %s is older than source file %s", t->watch, t->name);
    }
    if ((ops->flags & TABLE_OPS_SINGLETON) == 0) {
	t->next = registry;
	registry = t;
    }
    return (t);
}

int     table_type_known(const char *spec)
{
    const char *colon = strchr(spec, ':');

    for (size_t i = 0; colon && i < ARRAY_LEN(table_types); i++)
	if (strlen(table_types[i]->type) == (size_t) (colon - spec)
	    && str_ncasecmp(table_types[i]->type, spec, colon - spec) == 0)
	    return (1);
    return (0);
}

TABLE  *table_close(TABLE *t)
{
    TABLE **pp;

    if (t == NULL || --t->refs > 0)
	return (NULL);
    for (pp = &registry; *pp; pp = &(*pp)->next)
	if (*pp == t) {
	    *pp = t->next;
	    break;
	}
    table_free(t);
    return (NULL);
}

const char *table_spec(const TABLE *t)
{
    return (t->spec);
}

const char *table_type(const TABLE *t)
{
    return (t->type);
}

int     table_is_pattern(const TABLE *t)
{
    return ((t->ops->flags & TABLE_OPS_PATTERN) != 0);
}

int     table_is_async(const TABLE *t)
{
    return ((t->ops->flags & TABLE_OPS_ASYNC) != 0);
}

/*
 * Re-read t when its file changed.  Failure keeps the old contents; the
 * warning is logged (service) or returned (err) when asked.
 */
static int table_refresh(TABLE *t, const char *service)
{
    char    err[1024];
    void   *priv;
    struct stat st;
    int     saved_errno;

    if (!table_changed(t))
	return (0);
    table_stat(t, &st, stat(t->watch, &st) == 0);
    errno = 0;
    if ((priv = t->ops->load(t, err, sizeof(err))) == NULL) {
	saved_errno = errno;
	if (saved_errno == EACCES && t->load_euid == 0 && geteuid() != 0)
	    table_warn(service, "%s%s%s: cannot read it again without privileges: "
		     "keeping the contents read at start; restart relayqd to read it again",
		     t->param ? t->param : "", t->param ? ": " : "", t->spec);
	else
	    table_warn(service, "%s%s%s; keeping the last good contents",
		     t->param ? t->param : "", t->param ? ": " : "", err);
	return (-1);
    }
    if (t->priv && t->ops->free)
	t->ops->free(t->priv);
    t->priv = priv;
    return (0);
}

int     table_lookup(TABLE *t, const char *key, const char **val, char *err, size_t errlen)
{
    *val = NULL;
    /*
     * A changed file (a postmap rebuild, an edited texthash) is read again
     * at the first lookup after the change is seen; the file is looked at
     * at most once a second (a stat(2) per lookup would cost more than
     * most lookups).
     */
    if (t->watch) {
	int64_t now = time_mono_us();

	if (now - t->last_check >= 1000000) {
	    t->last_check = now;
	    (void) table_refresh(t, NULL);
	}
    }
    return (t->ops->lookup(t, t->priv, key, val, err, errlen));
}

int     table_dump(TABLE *t, int (*cb) (void *ctx, const char *key, const char *val),
		           void *ctx, char *err, size_t errlen)
{
    if (t->ops->dump == NULL) {
	snprintf(err, errlen, "%s: table type \"%s\" cannot be listed (postmap -s reads "
		 "hash, btree, lmdb and cdb)", t->spec, t->type);
	return (-1);
    }
    return (t->ops->dump(t, t->priv, cb, ctx, err, errlen));
}

int     table_reload_all(const char *service)
{
    int     failed = 0;

    for (TABLE *t = registry; t; t = t->next) {
	if (t->watch && table_refresh(t, service) < 0)
	    failed++;
	t->last_check = time_mono_us();
    }
    return (failed);
}

/* ---- the string hash table ------------------------------------------- */

typedef struct HT_ENT {
    char   *key;
    char   *val;
    struct HT_ENT *next;
} HT_ENT;

struct TABLE_HT {
    HT_ENT **slot;
    size_t  size;
    size_t  count;
};

static size_t ht_hash(const char *s)
{
    size_t  h = 2166136261u;

    for (; *s; s++)
	h = (h ^ (unsigned char) *s) * 16777619u;
    return (h);
}

TABLE_HT *table_ht_create(void)
{
    TABLE_HT *h = xcalloc(1, sizeof(*h));

    h->size = 64;
    h->slot = xcalloc(h->size, sizeof(*h->slot));
    return (h);
}

const char *table_ht_get(const TABLE_HT *h, const char *key)
{
    for (HT_ENT *e = h->slot[ht_hash(key) & (h->size - 1)]; e; e = e->next)
	if (strcmp(e->key, key) == 0)
	    return (e->val);
    return (NULL);
}

int     table_ht_add(TABLE_HT *h, const char *key, const char *val)
{
    HT_ENT *e;
    size_t  i;

    if (table_ht_get(h, key) != NULL)
	return (0);
    if (h->count >= h->size) {
	HT_ENT **old = h->slot;
	size_t  osize = h->size;

	h->size *= 2;
	h->slot = xcalloc(h->size, sizeof(*h->slot));
	for (i = 0; i < osize; i++)
	    while ((e = old[i]) != NULL) {
		old[i] = e->next;
		e->next = h->slot[ht_hash(e->key) & (h->size - 1)];
		h->slot[ht_hash(e->key) & (h->size - 1)] = e;
	    }
	free(old);
    }
    e = xmalloc(sizeof(*e));
    e->key = xstrdup(key);
    e->val = xstrdup(val);
    i = ht_hash(key) & (h->size - 1);
    e->next = h->slot[i];
    h->slot[i] = e;
    h->count++;
    return (1);
}

void    table_ht_free(void *ptr)
{
    TABLE_HT *h = ptr;
    HT_ENT *e;

    if (h == NULL)
	return;
    for (size_t i = 0; i < h->size; i++)
	while ((e = h->slot[i]) != NULL) {
	    h->slot[i] = e->next;
	    free(e->key);
	    free(e->val);
	    free(e);
	}
    free(h->slot);
    free(h);
}

/* ---- lists ------------------------------------------------------------ */

struct TABLE_LIST {
    char   *param;
    TABLE **tables;
    int     n;
    BUF     result;
};

/* table_list_results(): the rule's line, with the table's name. */
static int table_results_cb(void *ctx, int lineno, const char *result)
{
    struct {
	int     (*cb) (void *, const char *, int, const char *);
	void   *ctx;
	const char *where;
    }      *w = ctx;

    return (w->cb(w->ctx, w->where, lineno, result));
}

TABLE_LIST *table_list_open(const char *param, const char *value, int flags,
			            char *err, size_t errlen)
{
    TABLE_LIST *l = xcalloc(1, sizeof(*l));
    char  **specs;
    int     n;

    l->param = xstrdup(param ? param : "table");
    buf_init(&l->result);
    specs = str_split_list(value ? value : "", &n);
    l->tables = xcalloc(n + 1, sizeof(TABLE *));
    for (int i = 0; i < n; i++) {
	if ((l->tables[i] = table_open(specs[i], flags, param, err, errlen)) == NULL) {
	    str_list_free(specs);
	    return (table_list_close(l));
	}
	l->n++;
    }
    str_list_free(specs);
    return (l);
}

TABLE_LIST *table_list_close(TABLE_LIST *l)
{
    if (l == NULL)
	return (NULL);
    for (int i = 0; i < l->n; i++)
	table_close(l->tables[i]);
    free(l->tables);
    free(l->param);
    buf_free(&l->result);
    free(l);
    return (NULL);
}

int     table_list_results(TABLE_LIST *l,
			           int (*cb) (void *ctx, const char *where, int lineno, const char *result),
			           void *ctx)
{
    int     rc = 0;

    for (int i = 0; l && rc == 0 && i < l->n; i++) {
	TABLE  *t = l->tables[i];
	struct {
	    int     (*cb) (void *, const char *, int, const char *);
	    void   *ctx;
	    const char *where;
	}       w = {cb, ctx, t->name[0] == '{' ? t->spec : t->name};

	if (t->ops->results == 0 || t->priv == 0)
	    continue;
	rc = t->ops->results(t, t->priv, table_results_cb, &w);
    }
    return (rc);
}

int     table_list_count(const TABLE_LIST *l)
{
    return (l ? l->n : 0);
}

int     table_list_has_async(const TABLE_LIST *l)
{
    for (int i = 0; l && i < l->n; i++)
	if (table_is_async(l->tables[i]) || strstr(l->tables[i]->spec, "socketmap:") != NULL)
	    return (1);
    return (0);
}

const char *table_list_param(const TABLE_LIST *l)
{
    return (l->param);
}

/* Copy a member's value into the list's own buffer. */
static const char *list_keep(TABLE_LIST *l, const char *v)
{
    buf_reset(&l->result);
    buf_puts(&l->result, v);
    return (l->result.data);
}

int     table_list_find(TABLE_LIST *l, const char *key, int flags, const char **val,
			        char *err, size_t errlen)
{
    const char *v;
    int     rc;

    *val = NULL;
    if (l == NULL)
	return (TABLE_NOTFOUND);
    for (int i = 0; i < l->n; i++) {
	if ((flags & TABLE_PARTIAL) && table_is_pattern(l->tables[i]))
	    continue;
	if ((rc = table_lookup(l->tables[i], key, &v, err, errlen)) == TABLE_FOUND) {
	    *val = list_keep(l, v);
	    return (TABLE_FOUND);
	}
	if (rc == TABLE_ERROR)
	    return (TABLE_ERROR);
    }
    return (TABLE_NOTFOUND);
}

int     table_pdms(const char *pdms_value, const char *param)
{
    char  **v = str_split_list(pdms_value, NULL);
    int     found = 0;

    for (char **p = v; *p && !found; p++)
	found = (str_casecmp(*p, param) == 0);
    str_list_free(v);
    return (found);
}

/* ---- search plans: the keys to try, in order ------------------------- */

typedef struct PROBE {
    char   *key;
    int     flags;			/* TABLE_PARTIAL */
    int     ext_ix;			/* index into plan->exts, or -1 */
} PROBE;

typedef struct PLAN {
    PROBE  *probe;
    int     n;
    char   *ext;			/* the stripped extension, "+foo" */
} PLAN;

static void plan_add(PLAN *p, const char *key, size_t len, int flags, int uses_ext)
{
    p->probe = xrealloc(p->probe, (p->n + 1) * sizeof(PROBE));
    p->probe[p->n].key = xstrndup(key, len);
    p->probe[p->n].flags = flags;
    p->probe[p->n].ext_ix = uses_ext;
    p->n++;
}

static void plan_free(PLAN *p)
{
    for (int i = 0; i < p->n; i++)
	free(p->probe[i].key);
    free(p->probe);
    free(p->ext);
    memset(p, 0, sizeof(*p));
}

/* The domain, then its parents (see table_find_domain). */
static void plan_domain(PLAN *p, const char *domain, int flags, int first_partial)
{
    size_t  len = strlen(domain);
    const char *name, *end;

    while (len > 0 && domain[len - 1] == '.')
	len--;
    if (len == 0)
	return;
    end = domain + len;
    plan_add(p, domain, len, first_partial ? TABLE_PARTIAL : 0, -1);
    for (name = domain; (flags & (TABLE_DOM_PARENT | TABLE_DOM_DOTPARENT));) {
	const char *dot = memchr(name + 1, '.', end - name - 1);

	if (dot == NULL || dot + 1 >= end)
	    break;
	if (flags & TABLE_DOM_DOTPARENT)
	    plan_add(p, dot, end - dot, TABLE_PARTIAL, -1);
	else
	    plan_add(p, dot + 1, end - dot - 1, TABLE_PARTIAL, -1);
	name = dot + 1;
    }
}

/*
 * Postfix's split_addr(): where the extension of localpart starts (at
 * the delimiter), or NULL when it must not be split.
 */
static const char *split_localpart(const char *lp, size_t lplen, const char *delim)
{
    size_t  n;
    char    tmp[1024];

    if (delim == NULL || *delim == 0 || lplen >= sizeof(tmp))
	return (NULL);
    memcpy(tmp, lp, lplen);
    tmp[lplen] = 0;
    if (str_casecmp(tmp, "postmaster") == 0 || str_casecmp(tmp, "mailer-daemon") == 0
	|| str_casecmp(tmp, "double-bounce") == 0)
	return (NULL);
    if (strchr(delim, '-') && (str_ncasecmp(tmp, "owner-", 6) == 0
			       || (lplen > 8 && str_casecmp(tmp + lplen - 8, "-request") == 0)))
	return (NULL);
    n = strcspn(tmp, delim);
    if (n == 0 || n == lplen)
	return (NULL);
    return (lp + n);
}

static void plan_addr(PLAN *p, const char *addr, const TABLE_ADDR_OPTS *o)
{
    const char *at = strrchr(addr, '@');
    size_t  lplen = at ? (size_t) (at - addr) : strlen(addr);
    const char *ext = split_localpart(addr, lplen, o->delimiter);
    size_t  extlen = ext ? (size_t) (addr + lplen - ext) : 0;
    BUF     b = BUF_INIT;

    if (ext)
	p->ext = xstrndup(ext, extlen);
    if (o->strategy & TABLE_ADDR_FULL)
	plan_add(p, addr, strlen(addr), 0, -1);
    if (ext && (o->strategy & TABLE_ADDR_NOEXT)) {
	buf_append(&b, addr, ext - addr);
	if (at)
	    buf_puts(&b, at);
	plan_add(p, b.data, b.len, TABLE_PARTIAL, 1);
    }
    if (at && (o->strategy & TABLE_ADDR_LOCALPART) && o->is_local
	&& o->is_local(at + 1, o->ctx)) {
	plan_add(p, addr, lplen, TABLE_PARTIAL, -1);
	if (ext && (o->strategy & TABLE_ADDR_NOEXT))
	    plan_add(p, addr, ext - addr, TABLE_PARTIAL, 1);
    }
    if (at && (o->strategy & TABLE_ADDR_AT_DOMAIN))
	plan_add(p, at, strlen(at), TABLE_PARTIAL, -1);
    if (at && (o->strategy & TABLE_ADDR_DOMAIN))
	plan_domain(p, at + 1, o->dom_flags, 1);
    buf_free(&b);
}

/* Run a plan synchronously. */
static int plan_run(TABLE_LIST *l, PLAN *p, const char **val, char **extp,
		            char *err, size_t errlen)
{
    int     rc = TABLE_NOTFOUND;

    if (extp)
	*extp = NULL;
    *val = NULL;
    for (int i = 0; i < p->n; i++) {
	if ((rc = table_list_find(l, p->probe[i].key, p->probe[i].flags, val, err, errlen))
	    == TABLE_FOUND) {
	    if (extp && p->probe[i].ext_ix >= 0)
		*extp = xstrdup(p->ext);
	    break;
	}
	if (rc == TABLE_ERROR)
	    break;
    }
    return (rc);
}

int     table_find_domain(TABLE_LIST *l, const char *domain, int flags, const char **val,
			          char *err, size_t errlen)
{
    PLAN    p = {0};
    int     rc;

    plan_domain(&p, domain, flags, 0);
    rc = plan_run(l, &p, val, NULL, err, errlen);
    plan_free(&p);
    return (rc);
}

int     table_find_addr(TABLE_LIST *l, const char *addr, const TABLE_ADDR_OPTS *opts,
			        const char **val, char **extp, char *err, size_t errlen)
{
    PLAN    p = {0};
    int     rc;

    plan_addr(&p, addr, opts);
    rc = plan_run(l, &p, val, extp, err, errlen);
    plan_free(&p);
    return (rc);
}

char   *table_propagate_ext(const char *result, const char *ext)
{
    const char *at;

    if (ext == NULL || *ext == 0)
	return (xstrdup(result));
    if ((at = strrchr(result, '@')) == NULL)
	return (xasprintf("%s%s", result, ext));
    return (xasprintf("%.*s%s%s", (int) (at - result), result, ext, at));
}

/* ---- asynchronous lookups ------------------------------------------- */

struct TABLE_REQ {
    TABLE_LIST *l;
    PLAN    plan;
    int     probe;			/* current probe */
    int     table;			/* current table in the list */
    TABLE_CB cb;
    void   *arg;
    void   *op;				/* socketmap operation in flight */
    int     in_start;			/* still inside the starting call */
    int     done;
};

static void req_step(TABLE_REQ *r);

static void req_finish(TABLE_REQ *r, int status, const char *val, const char *err)
{
    r->done = 1;
    r->cb(status, val, err, r->arg);
}

static void req_sock_done(int status, const char *val, const char *err, void *arg)
{
    TABLE_REQ *r = arg;

    r->op = NULL;
    if (status == TABLE_FOUND) {
	req_finish(r, status, val, NULL);
    } else if (status == TABLE_ERROR) {
	req_finish(r, status, NULL, err);
    } else {
	r->table++;
	req_step(r);
    }
    if (!r->in_start && r->done) {
	plan_free(&r->plan);
	free(r);
    }
}

/* Walk probes x tables until one finds, fails, or goes asynchronous. */
static void req_step(TABLE_REQ *r)
{
    char    err[1024];
    const char *v;
    int     rc;

    for (; r->probe < r->plan.n; r->probe++, r->table = 0) {
	PROBE  *pb = &r->plan.probe[r->probe];

	for (; r->table < r->l->n; r->table++) {
	    TABLE  *t = r->l->tables[r->table];

	    if ((pb->flags & TABLE_PARTIAL) && table_is_pattern(t))
		continue;
	    if (table_is_async(t) && table_event_base) {
		r->op = table_sockmap_async(t, pb->key, req_sock_done, r);
		return;
	    }
	    if ((rc = table_lookup(t, pb->key, &v, err, sizeof(err))) == TABLE_FOUND) {
		req_finish(r, rc, v, NULL);
		return;
	    }
	    if (rc == TABLE_ERROR) {
		req_finish(r, rc, NULL, err);
		return;
	    }
	}
    }
    req_finish(r, TABLE_NOTFOUND, NULL, NULL);
}

static TABLE_REQ *req_start(TABLE_LIST *l, PLAN *plan, TABLE_CB cb, void *arg)
{
    TABLE_REQ *r = xcalloc(1, sizeof(*r));

    r->l = l;
    r->plan = *plan;
    r->cb = cb;
    r->arg = arg;
    r->in_start = 1;
    if (l == NULL || l->n == 0)
	req_finish(r, TABLE_NOTFOUND, NULL, NULL);
    else
	req_step(r);
    r->in_start = 0;
    if (r->done) {
	plan_free(&r->plan);
	free(r);
	return (NULL);
    }
    return (r);
}

TABLE_REQ *table_list_find_async(TABLE_LIST *l, const char *key, int flags,
				         TABLE_CB cb, void *arg)
{
    PLAN    p = {0};

    plan_add(&p, key, strlen(key), flags, -1);
    return (req_start(l, &p, cb, arg));
}

TABLE_REQ *table_find_domain_async(TABLE_LIST *l, const char *domain, int flags,
				           TABLE_CB cb, void *arg)
{
    PLAN    p = {0};

    plan_domain(&p, domain, flags, 0);
    return (req_start(l, &p, cb, arg));
}

TABLE_REQ *table_find_addr_async(TABLE_LIST *l, const char *addr,
				         const TABLE_ADDR_OPTS *opts, TABLE_CB cb, void *arg)
{
    PLAN    p = {0};

    plan_addr(&p, addr, opts);
    return (req_start(l, &p, cb, arg));
}

void    table_cancel(TABLE_REQ *r)
{
    if (r == NULL)
	return;
    if (r->op)
	table_sockmap_cancel(r->op);
    plan_free(&r->plan);
    free(r);
}
