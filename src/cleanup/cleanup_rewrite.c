/*
 * cleanup_rewrite - Postfix's address rewriting in cleanup(8): canonical
 * maps (canonical_maps, sender_canonical_maps, recipient_canonical_maps
 * and their *_classes), masquerade_domains with masquerade_exceptions and
 * masquerade_classes, and the automatic BCC recipients (always_bcc,
 * sender_bcc_maps, recipient_bcc_maps).
 *
 * Envelope: cleanup_rw_envelope() rewrites a QMSG's sender and
 * recipients before the message is queued, in Postfix's order (sender:
 * sender canonical, canonical, masquerade, then its BCC; each recipient:
 * recipient canonical, canonical, masquerade, then its BCC; always_bcc
 * last).  A rewritten recipient keeps the address the client gave as its
 * original recipient (orig_to=, DSN ORCPT) when it had none.
 *
 * Headers: cleanup_rw_header() rewrites the addresses of Postfix's sender
 * headers (From, Sender, Reply-To, Errors-To, Resent-From, ...) and
 * recipient headers (To, Cc, Bcc, Resent-To, ...) with addr822's parser,
 * and writes a changed header back as Postfix does: one address per
 * line, lines joined while shorter than 70 bytes.  A header with nothing
 * rewritten stays byte for byte.
 *
 * A table lookup error or an unusable result makes the message tempfail
 * (*errs), with Postfix's warning; the SMTP client gets Postfix's "451
 * 4.3.0 Error: queue file write error".
 */
#include <string.h>
#include <stdlib.h>
#include <stdio.h>

#include "util/util.h"
#include "log/log.h"
#include "config/config.h"
#include "table/table.h"
#include "queue/queue.h"
#include "cleanup/cleanup.h"
#include "cleanup/addr822.h"

#define CLS_ENV_FROM	(1<<0)
#define CLS_ENV_RCPT	(1<<1)
#define CLS_HDR_FROM	(1<<2)
#define CLS_HDR_RCPT	(1<<3)

#define MAP_NESTING_MAX	10		/* Postfix's MAX_RECURSION */
#define TOKEN_LIMIT	10240		/* Postfix's token_limit */

struct CLEANUP_RW {
    TABLE_LIST *canon, *send_canon, *rcpt_canon;
    int     canon_cls, send_cls, rcpt_cls;
    char  **masq;			/* masquerade_domains, or NULL */
    char  **masq_exc;			/* plain names of masquerade_exceptions */
    TABLE_LIST *masq_exc_tl;		/* its type:name elements */
    int     masq_cls;
    int     hdr_maps;			/* CLS_HDR_* whose addresses a map or masquerading may change */
    TABLE_LIST *send_bcc, *rcpt_bcc;
    char   *always_bcc;
    int     propagate;			/* "canonical" in propagate_unmatched_extensions */
    char   *delim;
    char   *myorigin;
    char   *remote_domain;		/* remote_header_rewrite_domain */
    size_t  header_limit;
    char  **drop;			/* message_drop_headers */
};

static int parse_classes(const CONFIG *cf, const char *param, int allowed, int *out,
			         char *err, size_t errlen)
{
    static const struct {
	const char *name;
	int     bit;
    } names[] = {
	{"envelope_sender", CLS_ENV_FROM},
	{"envelope_recipient", CLS_ENV_RCPT},
	{"header_sender", CLS_HDR_FROM},
	{"header_recipient", CLS_HDR_RCPT},
    };
    char  **v = config_list(cf, param, 0);
    int     rc = 0;

    *out = 0;
    for (char **p = v; *p && rc == 0; p++) {
	size_t  i;

	for (i = 0; i < ARRAY_LEN(names); i++)
	    if (str_casecmp(*p, names[i].name) == 0 && (names[i].bit & allowed))
		break;
	if (i == ARRAY_LEN(names)) {
	    snprintf(err, errlen, "invalid %s value: \"%s\"", param, *p);
	    rc = -1;
	} else {
	    *out |= names[i].bit;
	}
    }
    str_list_free(v);
    return (rc);
}

/* A table parameter, or NULL when empty.  socketmap is refused (lookups here are synchronous). */
static int open_maps(const CONFIG *cf, const char *param, TABLE_LIST **out, char *err, size_t errlen)
{
    const char *v = config_str(cf, param);

    *out = NULL;
    if (*v == 0)
	return (0);
    if ((*out = table_list_open(param, v, TABLE_FLAG_FOLD, err, errlen)) == NULL)
	return (-1);
    if (table_list_has_async(*out)) {
	snprintf(err, errlen, "%s: socketmap tables are not supported here", param);
	*out = table_list_close(*out);
	return (-1);
    }
    return (0);
}

void    cleanup_rw_free(CLEANUP_RW *rw)
{
    if (rw == NULL)
	return;
    table_list_close(rw->canon);
    table_list_close(rw->send_canon);
    table_list_close(rw->rcpt_canon);
    table_list_close(rw->masq_exc_tl);
    table_list_close(rw->send_bcc);
    table_list_close(rw->rcpt_bcc);
    str_list_free(rw->masq);
    str_list_free(rw->masq_exc);
    str_list_free(rw->drop);
    free(rw->always_bcc);
    free(rw->delim);
    free(rw->myorigin);
    free(rw->remote_domain);
    free(rw);
}

CLEANUP_RW *cleanup_rw_create(const CONFIG *cf, char *err, size_t errlen)
{
    CLEANUP_RW *rw = xcalloc(1, sizeof(*rw));
    char  **v;
    BUF     exc = BUF_INIT;

    if (open_maps(cf, "canonical_maps", &rw->canon, err, errlen) < 0
	|| open_maps(cf, "sender_canonical_maps", &rw->send_canon, err, errlen) < 0
	|| open_maps(cf, "recipient_canonical_maps", &rw->rcpt_canon, err, errlen) < 0
	|| open_maps(cf, "sender_bcc_maps", &rw->send_bcc, err, errlen) < 0
	|| open_maps(cf, "recipient_bcc_maps", &rw->rcpt_bcc, err, errlen) < 0
	|| parse_classes(cf, "canonical_classes", CLS_ENV_FROM | CLS_ENV_RCPT | CLS_HDR_FROM
			 | CLS_HDR_RCPT, &rw->canon_cls, err, errlen) < 0
	|| parse_classes(cf, "sender_canonical_classes", CLS_ENV_FROM | CLS_HDR_FROM,
			 &rw->send_cls, err, errlen) < 0
	|| parse_classes(cf, "recipient_canonical_classes", CLS_ENV_RCPT | CLS_HDR_RCPT,
			 &rw->rcpt_cls, err, errlen) < 0
	|| parse_classes(cf, "masquerade_classes", CLS_ENV_FROM | CLS_ENV_RCPT | CLS_HDR_FROM
			 | CLS_HDR_RCPT, &rw->masq_cls, err, errlen) < 0) {
	cleanup_rw_free(rw);
	return (NULL);
    }
    if (*config_str(cf, "masquerade_domains"))
	rw->masq = config_list(cf, "masquerade_domains", 0);
    /* masquerade_exceptions: names, or tables keyed by the localpart. */
    v = config_list(cf, "masquerade_exceptions", 0);
    {
	int     n = 0;

	for (char **p = v; *p; p++)
	    n++;
	rw->masq_exc = xcalloc((size_t) n + 1, sizeof(char *));
	n = 0;
	for (char **p = v; *p; p++) {
	    if (table_type_known(*p)) {
		buf_puts(&exc, exc.len ? ", " : "");
		buf_puts(&exc, *p);
	    } else {
		rw->masq_exc[n++] = xstrdup(*p);
	    }
	}
    }
    str_list_free(v);
    if (exc.len) {
	buf_puts(&exc, "");
	rw->masq_exc_tl = table_list_open("masquerade_exceptions", exc.data, TABLE_FLAG_FOLD,
					  err, errlen);
	buf_free(&exc);
	if (rw->masq_exc_tl == NULL) {
	    cleanup_rw_free(rw);
	    return (NULL);
	}
    }
    rw->always_bcc = xstrdup(config_str(cf, "always_bcc"));
    v = config_list(cf, "propagate_unmatched_extensions", 0);
    for (char **p = v; *p; p++)
	if (str_casecmp(*p, "canonical") == 0)
	    rw->propagate = 1;
    str_list_free(v);
    rw->delim = xstrdup(config_str(cf, "recipient_delimiter"));
    rw->myorigin = xstrdup(config_str(cf, "myorigin"));
    rw->remote_domain = xstrdup(config_str(cf, "remote_header_rewrite_domain"));
    rw->header_limit = (size_t) config_size(cf, "header_size_limit");
    rw->drop = config_list(cf, "message_drop_headers", 0);
    /* As rewrite_one(): which header classes have anything besides qualifying to do. */
    for (int cls = CLS_HDR_FROM; cls <= CLS_HDR_RCPT; cls <<= 1) {
	TABLE_LIST *own = cls == CLS_HDR_FROM ? rw->send_canon : rw->rcpt_canon;
	int     own_cls = cls == CLS_HDR_FROM ? rw->send_cls : rw->rcpt_cls;

	if ((own && (own_cls & cls)) || (rw->canon && (rw->canon_cls & cls))
	    || (rw->masq && (rw->masq_cls & cls)))
	    rw->hdr_maps |= cls;
    }
    return (rw);
}

int     cleanup_rw_remote_domain(const CLEANUP_RW *rw)
{
    return (rw && *rw->remote_domain);
}

/* ---- one address (external form: the localpart quoted as needed) ------ */

/* Is the address domain-less?  (An "@" inside quotes does not count.) */
static const char *last_bare_at(const char *a)
{
    const char *at = NULL;
    int     inq = 0;

    for (; *a; a++) {
	if (*a == '\\' && a[1]) {
	    a++;
	    continue;
	}
	if (*a == '"')
	    inq = !inq;
	else if (*a == '@' && !inq)
	    at = a;
    }
    return (at);
}

/*
 * The part of Postfix's trivial-rewrite that header addresses meet: the
 * empty address stays; a trailing dot leaves the domain; an address
 * without a domain gets "@domain" (myorigin for local mail,
 * remote_header_rewrite_domain for remote mail).  Allocated.
 */
static char *qualify(const char *ext, const char *domain)
{
    const char *at;
    size_t  len = strlen(ext);

    if (*ext == 0 || strcmp(ext, "\"\"") == 0)
	return (xstrdup(ext));
    if ((at = last_bare_at(ext)) != NULL) {
	if (len > 1 && ext[len - 1] == '.' && (size_t) (at - ext) < len - 2)
	    return (xasprintf("%.*s", (int) len - 1, ext));
	return (xstrdup(ext));
    }
    if (domain == NULL || *domain == 0)
	return (xstrdup(ext));
    return (xasprintf("%s@%s", ext, domain));
}

/*
 * Postfix's mail_addr_map for one-to-one maps: the first address of the
 * result; "@domain" keeps the localpart; the unmatched extension comes
 * back when propagated; a result without a domain gets @myorigin.  NULL
 * with *bad set when the result holds no address.
 */
static char *map_result(const char *myorigin, const char *param, const char *qid,
			        const char *key_int, const char *val, const char *ext,
			        int propagate, int *bad)
{
    char   *expanded = NULL, *res = NULL;
    A822   *list, **addrs;
    int     n;

    *bad = 0;
    if (*val == '@') {
	const char *at = strrchr(key_int, '@');
	size_t  llen = at ? (size_t) (at - key_int) : strlen(key_int);
	char   *lp;

	if (ext && strlen(ext) <= llen)
	    llen -= strlen(ext);
	lp = xasprintf("%.*s%s", (int) llen, key_int, val);
	expanded = addr822_quote_local(lp);
	free(lp);
	val = expanded;
    }
    if (*val == 0 || strcmp(val, "<>") == 0)
	val = "\"\"";
    list = addr822_parse(val, 0);
    addrs = addr822_addrs(list, &n);
    if (n == 0) {
	log_warn("cleanup", "%s lookup of %s returns non-address result \"%s\"", param, key_int, val);
	*bad = 1;
    } else {
	char   *one = addr822_addr_text(addrs[0]);
	char   *canon = qualify(one, myorigin);
	char   *in = addr822_unquote_local(canon);
	char   *withext = table_propagate_ext(in, propagate ? ext : NULL);

	if (n > 1 && qid)
	    log_warn("cleanup", "%s: multi-valued %s entry for %s", qid, param, key_int);
	else if (n > 1)
	    log_warn("smtp", "multi-valued %s result for %s", param, key_int);
	res = addr822_quote_local(withext);
	free(one);
	free(canon);
	free(in);
	free(withext);
    }
    free(addrs);
    addr822_free(list);
    free(expanded);
    return (res);
}

/*
 * Postfix's cleanup_map11: look the address up again until it maps to
 * itself, at most 10 times.  *addr (external form) is replaced.  Returns
 * whether it changed.
 */
static int map11(CLEANUP_RW *rw, TABLE_LIST *l, const char *qid, char **addr, int *errs)
{
    const char *param = table_list_param(l);
    TABLE_ADDR_OPTS o = {TABLE_ADDR_DEFAULT, 0, rw->delim, NULL, NULL};
    int     changed = 0;

    for (int count = 0; count < MAP_NESTING_MAX; count++) {
	char   *key = addr822_unquote_local(*addr);
	const char *val;
	char   *ext = NULL, *res;
	char    err[512];
	int     rc, bad, self;

	rc = table_find_addr(l, key, &o, &val, &ext, err, sizeof(err));
	if (rc == TABLE_NOTFOUND) {
	    free(key);
	    free(ext);
	    return (changed);
	}
	if (rc == TABLE_ERROR || (res = map_result(rw->myorigin, param, qid, key, val, ext,
						   rw->propagate, &bad)) == NULL) {
	    if (rc == TABLE_ERROR)
		log_warn("cleanup", "%s", err);
	    log_warn("cleanup", "%s: %s map lookup problem for %s -- "
		     "message not accepted, try again later", qid, param, *addr);
	    *errs = 1;
	    free(key);
	    free(ext);
	    return (changed);
	}
	changed |= strcmp(res, *addr) != 0;
	self = str_casecmp(res, *addr) == 0;
	free(*addr);
	*addr = res;
	free(key);
	free(ext);
	if (self)
	    return (changed);
    }
    log_warn("cleanup", "%s: unreasonable %s map nesting for %s -- "
	     "message not accepted, try again later", qid, table_list_param(l), *addr);
    return (changed);
}

/* Postfix's cleanup_masquerade_external. */
static int masquerade(CLEANUP_RW *rw, const char *qid, char **addr, int *errs)
{
    const char *at = strrchr(*addr, '@');
    size_t  name_len;
    char   *domain;
    int     changed = 0;

    if (at == NULL)
	return (0);
    name_len = (size_t) (at - *addr);
    if (rw->masq_exc[0] || rw->masq_exc_tl) {
	char   *name = xasprintf("%.*s", (int) name_len, *addr);
	int     excluded = 0;

	for (char **p = rw->masq_exc; *p && !excluded; p++)
	    excluded = str_casecmp(*p, name) == 0;
	if (!excluded && rw->masq_exc_tl) {
	    const char *val;
	    char    err[512];
	    int     rc = table_list_find(rw->masq_exc_tl, name, 0, &val, err, sizeof(err));

	    if (rc == TABLE_ERROR) {
		log_msg("cleanup", "%s: %s map lookup problem -- "
			 "message not accepted, try again later", qid, "masquerade_exceptions");
		*errs = 1;
	    }
	    excluded = rc == TABLE_FOUND;
	}
	free(name);
	if (excluded)
	    return (0);
    }
    domain = xstrdup(at + 1);
    str_lower(domain);
    for (char **p = rw->masq; *p; p++) {
	const char *m = *p;
	int     truncate = 1;
	size_t  mlen, dlen = strlen(domain);
	char   *lm;

	for (; *m == '!'; m++)
	    truncate = !truncate;
	if ((mlen = strlen(m)) == 0)
	    continue;
	lm = xstrdup(m);
	str_lower(lm);
	if (mlen == dlen) {
	    int     same = strcmp(lm, domain) == 0;

	    free(lm);
	    if (same)
		break;
	} else if (mlen < dlen) {
	    const char *parent = domain + dlen - mlen;

	    if (parent[-1] == '.' && strcmp(lm, parent) == 0) {
		if (truncate) {
		    char   *n = xasprintf("%.*s@%s", (int) name_len, *addr, lm);

		    free(*addr);
		    *addr = n;
		    changed = 1;
		}
		free(lm);
		break;
	    }
	    free(lm);
	} else {
	    free(lm);
	}
    }
    free(domain);
    return (changed);
}

/* Canonical maps and masquerading for one address of class cls (external form). */
static int rewrite_one(CLEANUP_RW *rw, const char *qid, int from, int cls, char **addr, int *errs)
{
    TABLE_LIST *own = from ? rw->send_canon : rw->rcpt_canon;
    int     own_cls = from ? rw->send_cls : rw->rcpt_cls;
    int     changed = 0;

    if (own && (own_cls & cls))
	changed |= map11(rw, own, qid, addr, errs);
    if (rw->canon && (rw->canon_cls & cls))
	changed |= map11(rw, rw->canon, qid, addr, errs);
    if (rw->masq && (rw->masq_cls & cls))
	changed |= masquerade(rw, qid, addr, errs);
    return (changed);
}

/* An envelope address (internal form): rewritten copy. */
static char *rewrite_envelope_addr(CLEANUP_RW *rw, const char *qid, int from,
				           const char *addr, int *errs)
{
    char   *ext = addr822_quote_local(addr), *res;

    rewrite_one(rw, qid, from, from ? CLS_ENV_FROM : CLS_ENV_RCPT, &ext, errs);
    res = addr822_unquote_local(ext);
    free(ext);
    return (res);
}

/* ---- envelope ---------------------------------------------------------- */

static void add_bcc(CLEANUP_RW *rw, QMSG *m, const char *bcc, int *errs)
{
    char   *in = addr822_unquote_local(bcc), *q, *addr;

    /* BCC addresses are local: qualified in the local context, then as any recipient. */
    q = addr822_quote_local(in);
    free(in);
    in = qualify(q, rw->myorigin);
    free(q);
    q = addr822_unquote_local(in);
    free(in);
    addr = rewrite_envelope_addr(rw, m->qid, 0, q, errs);
    free(q);
    for (int i = 0; i < m->nrcpt; i++)
	if (strcmp(m->rcpts[i].addr, addr) == 0 && m->rcpts[i].notify == QNOTIFY_NEVER
	    && m->rcpts[i].orcpt == NULL) {
	    free(addr);				/* the same BCC twice */
	    return;
	}
    m->rcpts = xrealloc(m->rcpts, ((size_t) m->nrcpt + 1) * sizeof(QRCPT));
    memset(&m->rcpts[m->nrcpt], 0, sizeof(QRCPT));
    m->rcpts[m->nrcpt].addr = addr;
    m->rcpts[m->nrcpt].notify = QNOTIFY_NEVER;	/* Postfix: no DSN for a BCC */
    m->nrcpt++;
}

static void find_bcc(CLEANUP_RW *rw, QMSG *m, TABLE_LIST *l, const char *addr, int *errs)
{
    TABLE_ADDR_OPTS o = {TABLE_ADDR_DEFAULT, 0, rw->delim, NULL, NULL};
    const char *val;
    char    err[512];
    int     rc;

    if (l == NULL || *addr == 0)
	return;
    rc = table_find_addr(l, addr, &o, &val, NULL, err, sizeof(err));
    if (rc == TABLE_FOUND) {
	char   *copy = xstrdup(val);

	add_bcc(rw, m, copy, errs);
	free(copy);
    } else if (rc == TABLE_ERROR) {
	log_warn("cleanup", "%s", err);
	log_warn("cleanup", "%s: %s map lookup problem -- message not accepted, try again later",
		 m->qid, table_list_param(l));
	*errs = 1;
    }
}

/* "rfc822;ADDR" with ADDR in xtext (RFC 3461 4.2), as an ORCPT is kept and sent. */
static char *orcpt_of(const char *addr)
{
    BUF     b = BUF_INIT;

    buf_puts(&b, "rfc822;");
    for (const unsigned char *cp = (const unsigned char *) addr; *cp; cp++) {
	if (*cp < '!' || *cp > '~' || *cp == '+' || *cp == '=')
	    buf_printf(&b, "+%02X", *cp);
	else
	    buf_putc(&b, (char) *cp);
    }
    return (buf_steal(&b));
}

int     cleanup_rw_envelope(CLEANUP_RW *rw, QMSG *m)
{
    int     errs = 0, n;
    char   *s;

    if (rw == NULL)
	return (0);
    if (*m->sender) {
	s = rewrite_envelope_addr(rw, m->qid, 1, m->sender, &errs);
	free(m->sender);
	m->sender = s;
    }
    find_bcc(rw, m, rw->send_bcc, m->sender, &errs);
    n = m->nrcpt;
    for (int i = 0; i < n; i++) {
	QRCPT  *r = &m->rcpts[i];

	s = rewrite_envelope_addr(rw, m->qid, 0, r->addr, &errs);
	if (strcmp(s, r->addr) != 0) {
	    /* The original recipient, for orig_to= and the DSN, as the client gave it. */
	    if (r->orcpt == NULL)
		r->orcpt = orcpt_of(r->addr);
	    free(r->addr);
	    r->addr = s;
	} else {
	    free(s);
	}
	find_bcc(rw, m, rw->rcpt_bcc, m->rcpts[i].addr, &errs);
    }
    if (*rw->always_bcc && m->nrcpt > 0)
	add_bcc(rw, m, rw->always_bcc, &errs);
    return (errs ? -1 : 0);
}

/* ---- headers ----------------------------------------------------------- */

int     cleanup_rw_drop(const CLEANUP_RW *rw, const char *name, size_t namelen)
{
    for (char **p = rw->drop; p && *p; p++)
	if (strlen(*p) == namelen && str_ncasecmp(*p, name, namelen) == 0)
	    return (1);
    return (0);
}

/* Postfix's header_opts: which headers hold sender or recipient addresses. */
static int header_class(const char *name, size_t len)
{
    static const char *const from[] = {
	"Disposition-Notification-To", "Errors-To", "From", "Mail-Followup-To", "Reply-To",
	"Resent-From", "Resent-Sender", "Return-Path", "Return-Receipt-To", "Sender",
    };
    static const char *const rcpt[] = {
	"Apparently-To", "Bcc", "Cc", "Resent-Bcc", "Resent-Cc", "Resent-Reply-To",
	"Resent-To", "To",
    };

    for (size_t i = 0; i < ARRAY_LEN(from); i++)
	if (strlen(from[i]) == len && str_ncasecmp(name, from[i], len) == 0)
	    return (CLS_HDR_FROM);
    for (size_t i = 0; i < ARRAY_LEN(rcpt); i++)
	if (strlen(rcpt[i]) == len && str_ncasecmp(name, rcpt[i], len) == 0)
	    return (CLS_HDR_RCPT);
    return (0);
}

/*
 * Postfix's cleanup_fold_header and cleanup_out_header: join the
 * one-address lines while the line stays under 70 bytes, indent
 * continuation lines with a tab, cut at header_size_limit.
 */
static void fold_out(BUF *out, char *text, size_t limit)
{
    char   *start = text, *line, *next, *end;

    for (line = text; line; line = next) {
	end = line + strcspn(line, "\n");
	if (line > start) {
	    if (end - start < 70)
		line[-1] = ' ';
	    else
		start = line;
	}
	next = *end ? end + 1 : NULL;
    }
    start = text;
    for (line = text; line; line = next) {
	size_t  llen;

	next = strchr(line, '\n');
	if (next)
	    *next++ = 0;
	llen = strlen(line);
	if (limit && (size_t) (line - start) + llen > limit) {
	    if ((double) (line - start) > 0.9 * (double) limit)
		break;
	    line[limit - (size_t) (line - start)] = 0;
	    next = NULL;
	}
	if (line != start && *line != ' ' && *line != '\t')
	    buf_putc(out, '\t');
	buf_puts(out, line);
	buf_puts(out, "\r\n");
    }
}

/*
 * The address header hdr (its name namelen bytes) with each address
 * through one(), which returns whether it changed the address; a changed
 * header is written back folded, cut at limit (0: no limit).  Returns
 * whether it changed.
 */
static int rewrite_header(BUF *hdr, size_t namelen, size_t limit,
			          int (*one) (void *ctx, A822 *addr), void *ctx)
{
    BUF     val = BUF_INIT, text = BUF_INIT;
    A822   *list, **addrs;
    int     n, changed = 0;

    /* The value as Postfix holds it: lines joined by "\n", no CR, no final newline. */
    for (size_t i = namelen + 1; i < hdr->len; i++)
	if (hdr->data[i] != '\r')
	    buf_putc(&val, hdr->data[i]);
    while (val.len && val.data[val.len - 1] == '\n')
	val.len--;
    buf_puts(&val, "");
    list = addr822_parse(val.data, TOKEN_LIMIT);
    addrs = addr822_addrs(list, &n);
    for (int i = 0; i < n; i++)
	changed |= one(ctx, addrs[i]);
    if (changed) {
	buf_append(&text, hdr->data, namelen);
	buf_puts(&text, ": ");
	addr822_header_text(&text, list, NULL);
	buf_reset(hdr);
	fold_out(hdr, text.data, limit);
    }
    free(addrs);
    addr822_free(list);
    buf_free(&val);
    buf_free(&text);
    return (changed);
}

typedef struct {
    CLEANUP_RW *rw;
    const char *qid;
    const char *domain;
    int     cls;
    int    *errs;
} RW_HEADER;

/* One address of a header: qualified, then canonical maps and masquerading. */
static int rw_header_addr(void *ctx, A822 *addr)
{
    RW_HEADER *h = ctx;
    char   *a = addr822_addr_text(addr);
    char   *q = qualify(a, h->domain);
    int     c = strcmp(q, a) != 0;

    free(a);
    c |= rewrite_one(h->rw, h->qid, h->cls == CLS_HDR_FROM, h->cls, &q, h->errs);
    if (c)
	addr822_addr_set(addr, q);
    free(q);
    return (c);
}

int     cleanup_rw_header(CLEANUP_RW *rw, const char *qid, int context, BUF *hdr,
			          size_t namelen, int *errs)
{
    RW_HEADER h;
    int     cls;

    if (rw == NULL || context == CLEANUP_RW_NONE || hdr->len <= namelen
	|| (cls = header_class(hdr->data, namelen)) == 0)
	return (0);

    /*
     * With no map and no masquerading for this class, only qualifying can
     * change an address: a header whose addresses all have a domain stays
     * as it is, so the common one is not parsed at all.
     */
    if ((rw->hdr_maps & cls) == 0
	&& addr822_plain_qualified(hdr->data + namelen + 1, hdr->len - namelen - 1, TOKEN_LIMIT))
	return (0);
    h.rw = rw;
    h.qid = qid;
    h.domain = context == CLEANUP_RW_LOCAL ? rw->myorigin : rw->remote_domain;
    h.cls = cls;
    h.errs = errs;
    return (rewrite_header(hdr, namelen, rw->header_limit, rw_header_addr, &h));
}

/* ---- smtp_generic_maps: the SMTP client's rewriting on the way out ------ */

struct CLEANUP_GENERIC {
    TABLE_LIST *maps;
    int     propagate;			/* "generic" in propagate_unmatched_extensions */
    char   *delim;
    char   *myorigin;
};

CLEANUP_GENERIC *cleanup_generic_create(const struct CONFIG *cf, char *err, size_t errlen)
{
    CLEANUP_GENERIC *g;
    TABLE_LIST *l;
    char  **v;

    err[0] = 0;
    if (open_maps(cf, "smtp_generic_maps", &l, err, errlen) < 0 || l == NULL)
	return (NULL);
    g = xcalloc(1, sizeof(*g));
    g->maps = l;
    v = config_list(cf, "propagate_unmatched_extensions", 0);
    for (char **p = v; *p; p++)
	if (str_casecmp(*p, "generic") == 0)
	    g->propagate = 1;
    str_list_free(v);
    g->delim = xstrdup(config_str(cf, "recipient_delimiter"));
    g->myorigin = xstrdup(config_str(cf, "myorigin"));
    return (g);
}

void    cleanup_generic_free(CLEANUP_GENERIC *g)
{
    if (g == NULL)
	return;
    table_list_close(g->maps);
    free(g->delim);
    free(g->myorigin);
    free(g);
}

/*
 * Postfix's smtp_map11_internal: one lookup, no recursion; found means
 * rewritten, even to the same address.  Internal form in and out.
 */
char   *cleanup_generic_addr(CLEANUP_GENERIC *g, const char *qid, const char *addr, int *errs)
{
    TABLE_ADDR_OPTS o = {TABLE_ADDR_DEFAULT, 0, g->delim, NULL, NULL};
    const char *val;
    char   *ext = NULL, *res = NULL, *in;
    char    err[512];
    int     rc, bad = 0;

    rc = table_find_addr(g->maps, addr, &o, &val, &ext, err, sizeof(err));
    if (rc == TABLE_FOUND)
	res = map_result(g->myorigin, "smtp_generic_maps", NULL, addr, val, ext, g->propagate, &bad);
    free(ext);
    if (rc == TABLE_ERROR || bad) {
	if (rc == TABLE_ERROR)
	    log_warn("smtp", "%s", err);
	log_warn("smtp", "%s: smtp_generic_maps map lookup problem for %s", qid, addr);
	*errs = 1;
	return (NULL);
    }
    if (res == NULL)
	return (NULL);
    in = addr822_unquote_local(res);
    free(res);
    return (in);
}

typedef struct {
    CLEANUP_GENERIC *g;
    const char *qid;
    int    *errs;
} GENERIC_HEADER;

/* One address of a header through smtp_generic_maps. */
static int generic_header_addr(void *ctx, A822 *addr)
{
    GENERIC_HEADER *h = ctx;
    char   *in = addr822_addr_internal(addr);
    char   *res = cleanup_generic_addr(h->g, h->qid, in, h->errs);

    free(in);
    if (res == NULL)
	return (0);
    in = addr822_quote_local(res);
    addr822_addr_set(addr, in);
    free(in);
    free(res);
    return (1);
}

int     cleanup_generic_header(CLEANUP_GENERIC *g, const char *qid, BUF *hdr, size_t namelen,
			               int *errs)
{
    GENERIC_HEADER h = {g, qid, errs};

    if (g == NULL || hdr->len <= namelen || header_class(hdr->data, namelen) == 0)
	return (0);
    return (rewrite_header(hdr, namelen, 0, generic_header_addr, &h));
}
