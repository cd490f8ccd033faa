/*
 * smtp_route - pure routing of one recipient, in Postfix's order:
 *
 *  1. transport_maps, as transport(5): the full address, then the domain,
 *     then each parent as ".parent" (".example.com" matches
 *     sub.example.com), then "*".  For each key every map is searched in
 *     the order listed.  Map types: inline:{ k=v, { k = v w } } and
 *     texthash:/path ("key value" lines, # comments, indented lines
 *     continue the previous one).  Keys are case-insensitive.
 *  2. relayhost.
 *  3. the recipient domain (MX, then A/AAAA, at delivery time).
 *
 * A transport_maps value is "transport:nexthop"; an empty nexthop for smtp
 * falls through to steps 2 and 3.  Transports: smtp (and relay, its Postfix
 * twin), error:TEXT, discard[:TEXT].  No DNS here: the smtp client looks
 * the nexthop up when it delivers.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/util.h"
#include "smtp/smtp.h"
#include "smtp/smtp_priv.h"

/* Parameter lookups: a name the config table lacks gets our default. */
const char *smtp_cf_str(const CONFIG *cf, const char *name, const char *dflt)
{
    return (cf && config_known(name) ? config_str(cf, name) : dflt);
}

long long smtp_cf_time(const CONFIG *cf, const char *name, long long dflt)
{
    return (cf && config_known(name) ? config_time(cf, name) : dflt);
}

long long smtp_cf_int(const CONFIG *cf, const char *name, long long dflt)
{
    return (cf && config_known(name) ? config_int(cf, name) : dflt);
}

/*
 * A parsed table: parallel key/value vectors, keys folded to lower case.
 * Tables are small (a relay's routing), so lookups are linear.
 */
typedef struct SMTP_MAP {
    char  **keys;
    char  **vals;
    int     n;
    int     cap;
} SMTP_MAP;

static void map_add(SMTP_MAP *m, const char *key, size_t klen, const char *val, size_t vlen)
{
    if (m->n == m->cap) {
	m->cap = m->cap ? 2 * m->cap : 8;
	m->keys = xrealloc(m->keys, m->cap * sizeof(char *));
	m->vals = xrealloc(m->vals, m->cap * sizeof(char *));
    }
    m->keys[m->n] = xstrndup(key, klen);
    str_lower(m->keys[m->n]);
    m->vals[m->n] = xstrndup(val, vlen);
    m->n++;
}

static void map_free(SMTP_MAP *m)
{
    for (int i = 0; i < m->n; i++) {
	free(m->keys[i]);
	free(m->vals[i]);
    }
    free(m->keys);
    free(m->vals);
    free(m);
}

static const char *map_get(const SMTP_MAP *m, const char *key)
{
    /* The first entry wins, as with Postfix's duplicate-key warning. */
    for (int i = 0; i < m->n; i++)
	if (strcmp(m->keys[i], key) == 0)
	    return (m->vals[i]);
    return (NULL);
}

/* Trim white space at both ends of [*s, *s + *len). */
static void span_trim(const char **s, size_t *len)
{
    while (*len > 0 && isspace((unsigned char) **s))
	(*s)++, (*len)--;
    while (*len > 0 && isspace((unsigned char) (*s)[*len - 1]))
	(*len)--;
}

/* One "key = value" element of an inline table. */
static int inline_element(SMTP_MAP *m, const char *s, size_t len, const char *spec,
			          char *err, size_t errlen)
{
    const char *eq = memchr(s, '=', len);
    const char *k = s, *v;
    size_t  klen, vlen;

    if (eq == NULL) {
	snprintf(err, errlen, "transport_maps: inline table: missing '=' in \"%.*s\" "
		 "(protect white space with { key = value })", (int) len, s);
	return (-1);
    }
    klen = eq - s;
    v = eq + 1;
    vlen = len - klen - 1;
    span_trim(&k, &klen);
    span_trim(&v, &vlen);
    if (klen == 0) {
	snprintf(err, errlen, "transport_maps: inline table: empty key");
	return (-1);
    }
    map_add(m, k, klen, v, vlen);
    return (0);
}

/*
 * inline:{ key=value, { key = value with spaces } } - elements separated
 * by commas and/or white space; braces protect white space and commas.
 */
static SMTP_MAP *map_parse_inline(const char *spec, char *err, size_t errlen)
{
    const char *cp = spec + strlen("inline:");
    const char *end;
    SMTP_MAP *m = xcalloc(1, sizeof(*m));

    while (isspace((unsigned char) *cp))
	cp++;
    end = cp + strlen(cp);
    while (end > cp && isspace((unsigned char) end[-1]))
	end--;
    if (*cp != '{' || end == cp || end[-1] != '}') {
	snprintf(err, errlen, "transport_maps: %s: expected inline:{ key=value, ... }", spec);
	map_free(m);
	return (NULL);
    }
    cp++, end--;
    while (cp < end) {
	const char *start;

	if (isspace((unsigned char) *cp) || *cp == ',') {
	    cp++;
	    continue;
	}
	if (*cp == '{') {
	    start = ++cp;
	    while (cp < end && *cp != '}')
		cp++;
	    if (cp >= end) {
		snprintf(err, errlen, "transport_maps: %s: missing '}'", spec);
		map_free(m);
		return (NULL);
	    }
	    if (inline_element(m, start, cp - start, spec, err, errlen) < 0) {
		map_free(m);
		return (NULL);
	    }
	    cp++;
	    continue;
	}
	start = cp;
	while (cp < end && !isspace((unsigned char) *cp) && *cp != ',')
	    cp++;
	if (inline_element(m, start, cp - start, spec, err, errlen) < 0) {
	    map_free(m);
	    return (NULL);
	}
    }
    return (m);
}

/* texthash:/path - "key value" lines as postmap(1) reads them. */
static SMTP_MAP *map_read_texthash(const char *path, char *err, size_t errlen)
{
    FILE   *fp;
    SMTP_MAP *m;
    BUF     logical = BUF_INIT;
    char   *line = NULL;
    size_t  cap = 0;
    ssize_t got;
    int     lineno = 0, start_line = 0, bad = 0;

    if ((fp = fopen(path, "r")) == NULL) {
	snprintf(err, errlen, "transport_maps: open texthash:%s: %s", path, strerror(errno));
	return (NULL);
    }
    m = xcalloc(1, sizeof(*m));

    /*
     * Collect logical lines (an indented line continues the previous one),
     * then split each at the first white space into key and value.
     */
    for (;;) {
	got = getline(&line, &cap, fp);
	if (got >= 0)
	    lineno++;
	if (got >= 0) {
	    while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
		line[--got] = 0;
	    char   *t = line;

	    while (isspace((unsigned char) *t))
		t++;
	    if (*t == '#' || *t == 0)
		continue;
	    if (isspace((unsigned char) line[0]) && logical.len > 0) {
		buf_putc(&logical, ' ');
		buf_puts(&logical, t);
		continue;
	    }
	}
	if (logical.len > 0) {
	    const char *k = logical.data, *v;
	    size_t  klen = 0, vlen;

	    while (k[klen] && !isspace((unsigned char) k[klen]))
		klen++;
	    v = k + klen;
	    vlen = strlen(v);
	    span_trim(&v, &vlen);
	    if (vlen == 0) {
		snprintf(err, errlen, "transport_maps: %s, line %d: expected format: key whitespace value",
			 path, start_line);
		bad = 1;
		break;
	    }
	    map_add(m, k, klen, v, vlen);
	    buf_reset(&logical);
	}
	if (got < 0)
	    break;
	if (isspace((unsigned char) line[0])) {
	    snprintf(err, errlen, "transport_maps: %s, line %d: continuation line without a key",
		     path, lineno);
	    bad = 1;
	    break;
	}
	buf_puts(&logical, line);
	start_line = lineno;
    }
    free(line);
    buf_free(&logical);
    fclose(fp);
    if (bad) {
	map_free(m);
	return (NULL);
    }
    return (m);
}

/*
 * A small cache of texthash tables keyed by path, size and mtime, so that
 * routing every recipient does not reread the file.  smtp_create() and
 * smtp_reconfigure() flush it, as a Postfix reload rereads tables.
 */
#define MAP_CACHE_MAX 16

static struct map_cache {
    char   *path;
    struct timespec mtime;
    off_t   size;
    SMTP_MAP *map;
} map_cache[MAP_CACHE_MAX];

void    smtp_maps_flush(void)
{
    for (int i = 0; i < MAP_CACHE_MAX; i++) {
	free(map_cache[i].path);
	if (map_cache[i].map)
	    map_free(map_cache[i].map);
	memset(&map_cache[i], 0, sizeof(map_cache[i]));
    }
}

static const SMTP_MAP *map_texthash(const char *path, char *err, size_t errlen)
{
    struct stat st;
    int     slot = -1;
    SMTP_MAP *m;

    if (stat(path, &st) < 0) {
	snprintf(err, errlen, "transport_maps: texthash:%s: %s", path, strerror(errno));
	return (NULL);
    }
    for (int i = 0; i < MAP_CACHE_MAX; i++) {
	if (map_cache[i].path && strcmp(map_cache[i].path, path) == 0) {
	    if (map_cache[i].size == st.st_size
		&& map_cache[i].mtime.tv_sec == st.st_mtim.tv_sec
		&& map_cache[i].mtime.tv_nsec == st.st_mtim.tv_nsec)
		return (map_cache[i].map);
	    slot = i;
	    break;
	}
	if (slot < 0 && map_cache[i].path == NULL)
	    slot = i;
    }
    if ((m = map_read_texthash(path, err, errlen)) == NULL)
	return (NULL);
    if (slot < 0)
	slot = 0;				/* full: evict the first */
    free(map_cache[slot].path);
    if (map_cache[slot].map)
	map_free(map_cache[slot].map);
    map_cache[slot].path = xstrdup(path);
    map_cache[slot].mtime = st.st_mtim;
    map_cache[slot].size = st.st_size;
    map_cache[slot].map = m;
    return (m);
}

/* Look key up in every table, in order. 1 found, 0 not, -1 error. */
static int maps_find(char **specs, int nspecs, const char *key, const char **val,
		             SMTP_MAP **inl, char *err, size_t errlen)
{
    for (int i = 0; i < nspecs; i++) {
	const SMTP_MAP *m;

	if (str_has_prefix_ci(specs[i], "inline:")) {
	    if (inl[i] == NULL && (inl[i] = map_parse_inline(specs[i], err, errlen)) == NULL)
		return (-1);
	    m = inl[i];
	} else if (str_has_prefix_ci(specs[i], "texthash:")) {
	    if ((m = map_texthash(specs[i] + strlen("texthash:"), err, errlen)) == NULL)
		return (-1);
	} else {
	    snprintf(err, errlen, "transport_maps: unsupported map type \"%s\" "
		     "(relayq supports inline: and texthash:)", specs[i]);
	    return (-1);
	}
	if ((*val = map_get(m, key)) != NULL)
	    return (1);
    }
    return (0);
}

/* Find the transport_maps entry for rcpt (lower-cased). 1 found, 0 not, -1 error. */
static int transport_lookup(const CONFIG *cf, const char *rcpt, const char *domain,
			            char *val, size_t vallen, char *err, size_t errlen)
{
    char  **specs;
    int     nspecs = 0, found = 0;
    SMTP_MAP **inl;
    const char *v = NULL;

    if (!config_known("transport_maps"))
	return (0);
    specs = config_list(cf, "transport_maps", &nspecs);
    if (nspecs == 0) {
	str_list_free(specs);
	return (0);
    }
    inl = xcalloc(nspecs, sizeof(*inl));

    /* Full address, domain, .parent domains, then "*". */
    if ((found = maps_find(specs, nspecs, rcpt, &v, inl, err, errlen)) == 0 && *domain) {
	found = maps_find(specs, nspecs, domain, &v, inl, err, errlen);
	for (const char *dot = strchr(domain, '.'); found == 0 && dot; dot = strchr(dot + 1, '.'))
	    found = maps_find(specs, nspecs, dot, &v, inl, err, errlen);
    }
    if (found == 0)
	found = maps_find(specs, nspecs, "*", &v, inl, err, errlen);
    if (found > 0)
	snprintf(val, vallen, "%s", v);
    for (int i = 0; i < nspecs; i++)
	if (inl[i])
	    map_free(inl[i]);
    free(inl);
    str_list_free(specs);
    return (found);
}

int     smtp_nexthop_parse(const char *nexthop, char *host, size_t hostlen, int *port, int *mx)
{
    const char *cp = nexthop, *hend, *colon;
    size_t  len;

    *port = 25;
    *mx = 1;
    if (*cp == '[') {
	if ((hend = strchr(cp, ']')) == NULL)
	    return (-1);
	*mx = 0;
	cp++;
	len = hend - cp;
	colon = hend[1] == ':' ? hend + 1 : NULL;
	if (hend[1] != 0 && colon == NULL)
	    return (-1);
    } else {
	colon = strrchr(cp, ':');
	/* An unbracketed IPv6 address cannot carry a port. */
	if (colon && strchr(cp, ':') != colon)
	    colon = NULL;
	len = colon ? (size_t) (colon - cp) : strlen(cp);
    }
    if (len == 0 || len >= hostlen)
	return (-1);
    memcpy(host, cp, len);
    host[len] = 0;
    if (colon) {
	char   *end;
	long    p;

	if (strcmp(colon + 1, "smtp") == 0) {
	    p = 25;
	} else {
	    errno = 0;
	    p = strtol(colon + 1, &end, 10);
	    if (colon[1] == 0 || *end != 0 || errno || p <= 0 || p > 65535)
		return (-1);
	}
	*port = (int) p;
    }
    return (0);
}

/* The domain of rcpt (after the last @), or myorigin without one. */
static void rcpt_domain(const CONFIG *cf, const char *rcpt, char *out, size_t outlen)
{
    const char *at = strrchr(rcpt, '@');

    snprintf(out, outlen, "%s", at ? at + 1 : smtp_cf_str(cf, "myorigin", ""));
    str_lower(out);
}

int     smtp_route(const CONFIG *cf, const char *rcpt, SMTP_ROUTE *out, char *err, size_t errlen)
{
    char    addr[1024], domain[512], val[1024];
    const char *relayhost;
    const char *nexthop = "";
    char    host[512];
    int     port, mx, found;

    memset(out, 0, sizeof(*out));
    snprintf(addr, sizeof(addr), "%s", rcpt);
    str_lower(addr);
    rcpt_domain(cf, addr, domain, sizeof(domain));

    if ((found = transport_lookup(cf, addr, domain, val, sizeof(val), err, errlen)) < 0)
	return (-1);
    if (found) {
	char   *colon = strchr(val, ':');
	char   *tr = val;

	if (colon) {
	    *colon = 0;
	    nexthop = colon + 1;
	}
	tr = str_trim(tr);
	if (*tr == 0 || strcmp(tr, "smtp") == 0 || strcmp(tr, "relay") == 0) {
	    out->transport = SMTP_TR_SMTP;
	} else if (strcmp(tr, "error") == 0) {
	    out->transport = SMTP_TR_ERROR;
	    snprintf(out->nexthop, sizeof(out->nexthop), "%s", nexthop);
	    snprintf(out->key, sizeof(out->key), "error:%s", nexthop);
	    return (0);
	} else if (strcmp(tr, "discard") == 0) {
	    out->transport = SMTP_TR_DISCARD;
	    snprintf(out->nexthop, sizeof(out->nexthop), "%s", nexthop);
	    snprintf(out->key, sizeof(out->key), "discard:%s", nexthop);
	    return (0);
	} else {
	    snprintf(err, errlen, "transport_maps: unsupported transport \"%s\" for %s "
		     "(relayq supports smtp, relay, error, discard)", tr, rcpt);
	    return (-1);
	}
    }
    out->transport = SMTP_TR_SMTP;
    if (*nexthop == 0) {
	relayhost = smtp_cf_str(cf, "relayhost", "");
	while (*relayhost == ' ' || *relayhost == '\t')
	    relayhost++;
	nexthop = *relayhost ? relayhost : domain;
    }
    if (*nexthop == 0) {
	snprintf(err, errlen, "no next hop for recipient %s", rcpt);
	return (-1);
    }
    if (smtp_nexthop_parse(nexthop, host, sizeof(host), &port, &mx) < 0) {
	snprintf(err, errlen, "malformed next hop \"%s\" for recipient %s", nexthop, rcpt);
	return (-1);
    }
    snprintf(out->nexthop, sizeof(out->nexthop), "%s", nexthop);
    snprintf(out->key, sizeof(out->key), "smtp:%s", nexthop);
    return (0);
}

void    smtp_reply_dsn(const char *reply, char dsn[12])
{
    const char *cp = reply;
    int     i, parts = 0, digits = 0;

    /* "NNN X.Y.Z" or "NNN-X.Y.Z": class, subject (1-3), detail (1-3). */
    if (strlen(reply) >= 4 && isdigit((unsigned char) reply[0]))
	cp = reply + 4;
    for (i = 0; cp[i] && i < 11; i++) {
	if (isdigit((unsigned char) cp[i])) {
	    if (++digits > 3)
		break;
	} else if (cp[i] == '.' && digits > 0 && parts < 2) {
	    parts++;
	    digits = 0;
	} else {
	    break;
	}
    }
    if (parts == 2 && digits > 0 && (cp[i] == 0 || cp[i] == ' ')
	&& (cp[0] == '2' || cp[0] == '4' || cp[0] == '5') && cp[1] == '.'
	&& cp[0] == reply[0]) {
	memcpy(dsn, cp, i);
	dsn[i] = 0;
	return;
    }
    snprintf(dsn, 12, "%c.0.0", (reply[0] == '2' || reply[0] == '4') ? reply[0] : '5');
}
