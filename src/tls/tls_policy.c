/*
 * tls_policy - security levels, smtp_tls_policy_maps entries and the
 * per-destination policy, in the order and words of Postfix 3.7's
 * smtp_tls_policy.c (policy_create, tls_policy_lookup_one,
 * set_cipher_grade).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "log/log.h"
#include "util/util.h"
#include "tls/tls.h"

static const char *const level_names[] = {
    "none", "may", "encrypt", "fingerprint", "verify", "secure", "dane", "dane-only",
};

int     tls_level_lookup(const char *name)
{
    if (name == NULL || *name == 0)
	return (TLS_LEV_NONE);
    for (int i = 0; i < (int) (sizeof(level_names) / sizeof(level_names[0])); i++)
	if (str_casecmp(name, level_names[i]) == 0)
	    return (i);
    return (TLS_LEV_INVALID);
}

const char *tls_level_name(int level)
{
    if (level >= 0 && level < (int) (sizeof(level_names) / sizeof(level_names[0])))
	return (level_names[level]);
    return (level == TLS_LEV_NOTFOUND ? "notfound" : "invalid");
}

/* Split on any of seps, skipping empty pieces; appended to *v / *n. */
static void split_append(char ***v, int *n, const char *s, const char *seps)
{
    while (s && *s) {
	size_t  skip = strspn(s, seps);

	s += skip;
	if (*s == 0)
	    break;
	size_t  len = strcspn(s, seps);

	*v = xrealloc(*v, sizeof(char *) * (size_t) (*n + 2));
	(*v)[(*n)++] = xstrndup(s, len);
	(*v)[*n] = NULL;
	s += len;
    }
}

void    tls_policy_free(TLS_POLICY *p)
{
    for (int i = 0; i < p->ntlsa; i++)
	free(p->tlsa[i].data);
    free(p->tlsa);
    free(p->dane_base);
    free(p->protocols);
    free(p->grade);
    free(p->exclude);
    free(p->servername);
    for (int i = 0; i < p->nmatch; i++)
	free(p->match[i]);
    free(p->match);
    memset(p, 0, sizeof(*p));
}

/* A host name as Postfix's valid_hostname() would take it (ASCII or UTF-8 labels). */
static int valid_name(const char *s)
{
    size_t  len = strlen(s), label = 0;

    if (len == 0 || len > 255)
	return (0);
    for (const unsigned char *cp = (const unsigned char *) s; *cp; cp++) {
	if (*cp == '.') {
	    if (label == 0)
		return (0);
	    label = 0;
	} else if (isalnum(*cp) || *cp == '-' || *cp == '_' || *cp >= 0x80) {
	    if (++label > 63)
		return (0);
	} else
	    return (0);
    }
    return (label > 0 || s[len - 1] == '.');
}

#define WARN(...) do { snprintf(warn, warnlen, __VA_ARGS__); goto bad; } while (0)

int     tls_policy_parse(const char *value, const char *where, TLS_POLICY *p,
			         char *warn, size_t warnlen)
{
    char  **tok = NULL;
    int     ntok = 0;

    split_append(&tok, &ntok, value, ", \t\r\n");
    if (ntok == 0)
	WARN("%s: invalid empty policy", where);
    p->level = tls_level_lookup(tok[0]);
    if (p->level == TLS_LEV_INVALID)
	WARN("%s: invalid security level \"%s\"", where, tok[0]);
    if (p->level < TLS_LEV_MAY) {
	for (int i = 1; i < ntok; i++)
	    log_warn("smtp", "%s: ignoring attribute \"%s\" with TLS disabled", where, tok[i]);
	str_list_free(tok);
	return (0);
    }
    for (int i = 1; i < ntok; i++) {
	char   *eq = strchr(tok[i], '=');
	const char *name, *val;

	if (eq == NULL)
	    WARN("%s: malformed attribute/value pair \"%s\": missing '=' after attribute name",
		 where, tok[i]);
	*eq = 0;
	name = tok[i];
	val = eq + 1;
	if (*name == 0)
	    WARN("%s: malformed attribute/value pair \"=%s\": missing attribute name", where, val);
	if (str_casecmp(name, "ciphers") == 0) {
	    if (*val == 0)
		WARN("%s: attribute \"%s\" has empty value", where, name);
	    if (p->grade)
		WARN("%s: attribute \"%s\" is specified multiple times", where, name);
	    p->grade = xstrdup(val);
	} else if (str_casecmp(name, "protocols") == 0) {
	    if (p->protocols)
		WARN("%s: attribute \"%s\" is specified multiple times", where, name);
	    p->protocols = xstrdup(val);
	} else if (str_casecmp(name, "servername") == 0) {
	    if (p->servername)
		WARN("%s: attribute \"%s\" is specified multiple times", where, name);
	    if (!valid_name(val))
		WARN("%s: \"%s=%s\" specifies an invalid hostname", where, name, val);
	    p->servername = xstrdup(val);
	} else if (str_casecmp(name, "match") == 0) {
	    if (*val == 0)
		WARN("%s: attribute \"%s\" has empty value", where, name);
	    if (p->level == TLS_LEV_FPRINT)
		split_append(&p->match, &p->nmatch, val, "|");
	    else if (p->level == TLS_LEV_VERIFY || p->level == TLS_LEV_SECURE)
		split_append(&p->match, &p->nmatch, val, ":");
	    else
		WARN("%s: attribute \"%s\" invalid at security level \"%s\"", where, name,
		     tls_level_name(p->level));
	} else if (str_casecmp(name, "exclude") == 0) {
	    if (p->exclude)
		WARN("%s: attribute \"%s\" is specified multiple times", where, name);
	    p->exclude = xstrdup(val);
	} else if (str_casecmp(name, "connection_reuse") == 0) {
	    if (str_casecmp(val, "yes") != 0 && str_casecmp(val, "no") != 0)
		WARN("%s: attribute \"%s\" has bad value: \"%s\"", where, name, val);
	    /* relayq reuses TLS sessions as it reuses plain ones. */
	} else
	    WARN("%s: invalid attribute name: \"%s\"", where, name);
    }
    str_list_free(tok);
    return (0);

bad:
    str_list_free(tok);
    return (-1);
}

#undef WARN

static void mark_invalid(TLS_POLICY *p, const char *dsn, const char *why)
{
    p->level = TLS_LEV_INVALID;
    snprintf(p->dsn, sizeof(p->dsn), "%s", dsn);
    snprintf(p->why, sizeof(p->why), "%s", why);
}

/* A plain domain name (no brackets, no port): parents are looked up too. */
static int plain_domain(const char *dest)
{
    return (valid_name(dest));
}

/* One lookup: 1 found (policy parsed into out or marked invalid), 0 not found. */
static int lookup_one(TLS_LOOKUP_FN lookup, void *ctx, const char *title, const char *key,
		              TLS_POLICY *out)
{
    const char *val;
    char    err[512], where[1024], warn[1400];
    int     st;

    st = lookup(ctx, key, &val, err, sizeof(err));
    snprintf(where, sizeof(where), "%s, next-hop destination \"%s\"", title, key);
    if (st < 0) {
	/* Postfix 3.7: a lookup error makes the policy invalid (4.7.5). */
	log_warn("smtp", "%s: policy table lookup error%s%s", where, *err ? ": " : "", err);
	mark_invalid(out, "4.7.5", "client TLS configuration problem");
	return (1);
    }
    if (st == 0)
	return (0);
    if (tls_policy_parse(val, where, out, warn, sizeof(warn)) < 0) {
	log_warn("smtp", "%s", warn);
	mark_invalid(out, "4.7.5", "client TLS configuration problem");
    }
    return (1);
}

char  **tls_policy_keys(const char *dest)
{
    char  **keys = NULL;
    int     n = 0;

    keys = xrealloc(keys, sizeof(char *) * 2);
    keys[n++] = xstrdup(dest);
    keys[n] = NULL;
    if (plain_domain(dest)) {
	const char *key;

	str_lower(keys[0]);
	for (key = strchr(keys[0] + 1, '.'); key; key = strchr(key + 1, '.')) {
	    keys = xrealloc(keys, sizeof(char *) * (size_t) (n + 2));
	    keys[n++] = xstrdup(key);
	    keys[n] = NULL;
	}
    }
    return (keys);
}

static void policy_finish(const TLS_CLIENT_PARAMS *pp, TLS_POLICY *out, const char *dest);

void    tls_policy_resolve(const TLS_CLIENT_PARAMS *pp, TLS_LOOKUP_FN lookup, void *ctx,
			           const char *title, const char *dest, TLS_POLICY *out)
{
    TLS_POLICY site;
    int     found = 0;

    memset(out, 0, sizeof(*out));
    memset(&site, 0, sizeof(site));
    out->level = tls_level_lookup(pp->level);
    if (out->level == TLS_LEV_INVALID) {
	log_warn("smtp", "invalid smtp_tls_security_level value \"%s\"", pp->level);
	mark_invalid(out, "4.7.5", "client TLS configuration problem");
	return;
    }

    /*
     * The policy table: dest exactly when it names an explicit next hop
     * ("[host]:port", "host:port"), else the domain and then each parent
     * domain as ".parent".
     */
    if (lookup) {
	if (!plain_domain(dest)) {
	    found = lookup_one(lookup, ctx, title, dest, &site);
	} else {
	    char   *lower = xstrdup(dest);
	    const char *key = lower;

	    str_lower(lower);
	    while (!(found = lookup_one(lookup, ctx, title, key, &site))
		   && (key = strchr(key + 1, '.')) != NULL)
		 /* next parent, ".example.com" */ ;
	    free(lower);
	}
    }
    if (found) {
	if (site.level == TLS_LEV_INVALID) {
	    snprintf(out->why, sizeof(out->why), "%s", site.why);
	    snprintf(out->dsn, sizeof(out->dsn), "%s", site.dsn);
	    out->level = TLS_LEV_INVALID;
	    tls_policy_free(&site);
	    return;
	}
	out->level = site.level;
	out->protocols = site.protocols;
	out->grade = site.grade;
	out->exclude = site.exclude;
	out->servername = site.servername;
	out->match = site.match;
	out->nmatch = site.nmatch;
    }

    /* DANE needs the DNS first: tls_policy_dane() finishes the policy. */
    if (TLS_DANE_BASED(out->level)) {
	out->dane_pending = 1;
	return;
    }
    policy_finish(pp, out, dest);
}

/* Unset attributes from main.cf, for the (final) level. */
static void policy_finish(const TLS_CLIENT_PARAMS *pp, TLS_POLICY *out, const char *dest)
{
    const char *also_exclude = "", *mand_exclude = "";

    if (out->level == TLS_LEV_NONE)
	return;

    /* Unset attributes come from main.cf. */
    if (out->protocols == NULL)
	out->protocols = xstrdup(out->level == TLS_LEV_MAY ? pp->protocols : pp->mand_protocols);
    if (out->servername == NULL) {
	if (*pp->servername && strcmp(pp->servername, "hostname") != 0
	    && strcmp(pp->servername, "nexthop") != 0 && !valid_name(pp->servername)) {
	    log_warn("smtp", "\"smtp_tls_servername = %s\" specifies an invalid hostname",
		     pp->servername);
	    mark_invalid(out, "4.7.5", "client TLS configuration problem");
	    return;
	}
	out->servername = xstrdup(pp->servername);
    }
    switch (out->level) {
    case TLS_LEV_MAY:
	if (out->grade == NULL)
	    out->grade = xstrdup(pp->ciphers);
	break;
    case TLS_LEV_ENCRYPT:
	if (out->grade == NULL)
	    out->grade = xstrdup(pp->mand_ciphers);
	mand_exclude = pp->mand_exclude;
	also_exclude = "eNULL";
	break;
    default:
	if (out->grade == NULL)
	    out->grade = xstrdup(pp->mand_ciphers);
	mand_exclude = pp->mand_exclude;
	also_exclude = "aNULL";
	break;
    }
    if (out->exclude == NULL) {
	BUF     b;

	buf_init(&b);
	if (*pp->exclude)
	    buf_printf(&b, "%s", pp->exclude);
	if (*mand_exclude)
	    buf_printf(&b, "%s%s", b.len ? " " : "", mand_exclude);
	out->exclude = xstrdup(b.data ? b.data : "");
	buf_free(&b);
    }
    if (*also_exclude) {
	char   *x = xasprintf("%s%s%s", out->exclude, *out->exclude ? " " : "", also_exclude);

	free(out->exclude);
	out->exclude = x;
    }
    if (out->level == TLS_LEV_FPRINT && out->nmatch == 0) {
	split_append(&out->match, &out->nmatch, pp->fpt_match, ", \t\r\n");
	if (out->nmatch == 0) {
	    log_warn("smtp", "nexthop domain %s: configured at fingerprint security level,"
		     " but with no fingerprints to match.", dest);
	    mark_invalid(out, "4.7.5", "client TLS configuration problem");
	    return;
	}
    }
    if ((out->level == TLS_LEV_VERIFY || out->level == TLS_LEV_SECURE) && out->nmatch == 0)
	split_append(&out->match, &out->nmatch,
		     out->level == TLS_LEV_VERIFY ? pp->verify_match : pp->secure_match,
		     ", \t\r\n:");
}

/* ---- DANE ------------------------------------------------------------ */

/* Whose fault a DANE fallback is (Postfix's dane_incompat()). */
#define NONDANE_CONFIG	0		/* the administrator's */
#define NONDANE_DEST	1		/* the destination's: no DANE there */
#define DANE_CANTAUTH	2		/* the destination's: DANE, but nothing usable */

/* fmt is one of this file's fixed texts */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void dane_incompat(TLS_POLICY *pol, int errtype, const char *fmt, const char *a1,
			          const char *a2)
{
    char    text[sizeof(pol->why)];

    snprintf(text, sizeof(text), fmt, a1, a2);
    if (pol->level == TLS_LEV_DANE) {
	pol->level = errtype == DANE_CANTAUTH ? TLS_LEV_ENCRYPT : TLS_LEV_MAY;
	if (errtype == NONDANE_CONFIG)
	    log_warn("smtp", "%s", text);
    } else if (errtype == NONDANE_CONFIG) {
	log_warn("smtp", "%s", text);
	mark_invalid(pol, "4.7.5", "client TLS configuration problem");
    } else {
	mark_invalid(pol, "4.7.5", text);
    }
}

#pragma GCC diagnostic pop

void    tls_tlsa_text(const TLS_TLSA *t, char *out, size_t outlen)
{
    size_t  n = t->len > 64 ? 32 : t->len, o;

    o = (size_t) snprintf(out, outlen, "%u %u %u ", t->usage, t->selector, t->mtype);
    for (size_t i = 0; i < n && o + 3 <= outlen; i++)
	o += (size_t) snprintf(out + o, outlen - o, "%02X", t->data[i]);
    if (t->len > 64) {
	o += (size_t) snprintf(out + o, o < outlen ? outlen - o : 0, "...");
	for (size_t i = t->len - 32; i < t->len && o + 3 <= outlen; i++)
	    o += (size_t) snprintf(out + o, outlen - o, "%02X", t->data[i]);
    } else if (t->len == 0 && o < outlen)
	snprintf(out + o, outlen - o, "...");
}

/* A TLSA record in Postfix's tlsa_carp() form: "NAME what: u s m HEX[...HEX]". */
static void tlsa_carp(const char *name, const char *what, const TLS_TLSA *t)
{
    char    text[200];

    tls_tlsa_text(t, text, sizeof(text));
    log_warn("smtp", "%s %s: %s", name, what, text);
}

int     tls_policy_dane(const TLS_CLIENT_PARAMS *pp, const char *dest, const TLS_DANE_DNS *dns,
			        TLS_POLICY *pol)
{
    char    qname[300], port[16];
    const char *base = dns->tlsa_base ? dns->tlsa_base : dns->host;

    if (!pol->dane_pending)
	return (0);
    snprintf(port, sizeof(port), "%d", dns->port);
    snprintf(qname, sizeof(qname), "_%d._tcp.%s", dns->port, base);
    if (!dns->dnssec) {
	dane_incompat(pol, NONDANE_CONFIG, "%s: %s configured with dnssec lookups disabled",
		      dest, tls_level_name(pol->level));
    } else if (dns->mx == 0 && (pol->level == TLS_LEV_DANE_ONLY
				    || dns->insecure_mx_policy <= TLS_LEV_MAY)) {
	/* An insecure MX RRset: its hosts' TLSA records prove nothing. */
	dane_incompat(pol, NONDANE_DEST, "non DNSSEC destination", "", "");
    } else if (!dns->addr_secure && dns->cname_status == TLS_CNAME_UNKNOWN) {
	return (2);
    } else if (!dns->addr_secure && dns->cname_status == TLS_CNAME_ERROR) {
	char    why[sizeof(pol->why)];

	/* Postfix's qname_secure() failed: tls_dane_resolve() fails. */
	log_warn("smtp", "DNSSEC status lookup error for %s: %s", dns->host,
		 dns->cname_why ? dns->cname_why : "");
	snprintf(why, sizeof(why), "TLSA lookup error for %s:%d", dns->host, dns->port);
	mark_invalid(pol, "4.7.5", why);
    } else if (!dns->addr_secure && dns->cname_status != TLS_CNAME_SECURE) {
	/*
	 * Hosts in unsigned zones: no TLSA lookup (Postfix, no forced
	 * lookups), unless a signed CNAME of the host's led there.
	 */
	dane_incompat(pol, NONDANE_DEST, "no TLSA records found", "", "");
    } else if (dns->tlsa_status == TLS_TLSA_UNKNOWN) {
	return (1);
    } else if (dns->tlsa_status == TLS_TLSA_ERROR) {
	char    why[sizeof(pol->why)];

	log_warn("smtp", "DANE TLSA lookup problem: %s", dns->tlsa_why ? dns->tlsa_why : "");
	snprintf(why, sizeof(why), "TLSA lookup error for %s:%d", dns->host, dns->port);
	mark_invalid(pol, "4.7.5", why);
    } else if (dns->tlsa_status == TLS_TLSA_NOTFOUND || !dns->tlsa_secure) {
	dane_incompat(pol, NONDANE_DEST, "no TLSA records found", "", "");
    } else {
	for (int i = 0; i < dns->ntlsa; i++) {
	    const TLS_TLSA *t = &dns->tlsa[i];

	    if (dns->tlsa_rdlen[i] <= 3) {
		log_warn("smtp", "%s: truncated TLSA RR length == %u", qname,
			 (unsigned) dns->tlsa_rdlen[i]);
		continue;
	    }
	    /* DANE-TA(2) and DANE-EE(3) only: PKIX-TA(0)/PKIX-EE(1) do not apply to SMTP. */
	    if (t->usage != 2 && t->usage != 3) {
		tlsa_carp(qname, "unsupported TLSA certificate usage", t);
		continue;
	    }
	    if (t->mtype == 255) {
		tlsa_carp(qname, "reserved private-use matching type", t);
		continue;
	    }
	    pol->tlsa = xrealloc(pol->tlsa, sizeof(*pol->tlsa) * (size_t) (pol->ntlsa + 1));
	    pol->tlsa[pol->ntlsa] = *t;
	    pol->tlsa[pol->ntlsa].data = xmalloc(t->len);
	    memcpy(pol->tlsa[pol->ntlsa].data, t->data, t->len);
	    pol->ntlsa++;
	}
	if (pol->ntlsa == 0) {
	    dane_incompat(pol, DANE_CANTAUTH, "TLSA records unusable", "", "");
	} else if (dns->mx == 0 && dns->insecure_mx_policy == TLS_LEV_ENCRYPT) {
	    dane_incompat(pol, DANE_CANTAUTH, "Verification not possible, MX RRset is insecure", "", "");
	} else {
	    /* An insecure MX (smtp_tls_dane_insecure_mx_policy = dane): required, but only "Trusted". */
	    pol->dane_half = dns->mx == 0;
	    /*
	     * With DANE, the names to match are not configurable: the base
	     * domain, and the next-hop domain when it was found through MX
	     * (for DANE-TA(2); DANE-EE(3) checks no name).
	     */
	    pol->dane_base = xstrdup(base);
	    for (int i = 0; i < pol->nmatch; i++)
		free(pol->match[i]);
	    free(pol->match);
	    pol->match = NULL;
	    pol->nmatch = 0;
	    split_append(&pol->match, &pol->nmatch, base, " ");
	    if (dns->mx >= 0 && dns->nexthop && *dns->nexthop && str_casecmp(dns->nexthop, base) != 0)
		split_append(&pol->match, &pol->nmatch, dns->nexthop, " ");
	}
    }
    pol->dane_pending = 0;
    if (pol->level != TLS_LEV_INVALID)
	policy_finish(pp, pol, dest);
    return (0);
}

/* ---- protocols ------------------------------------------------------ */

static const struct {
    const char *name;
    int     version;
    long    no_op;
} protos[] = {
    {"SSLv3", SSL3_VERSION, SSL_OP_NO_SSLv3},
    {"TLSv1", TLS1_VERSION, SSL_OP_NO_TLSv1},
    {"TLSv1.1", TLS1_1_VERSION, SSL_OP_NO_TLSv1_1},
    {"TLSv1.2", TLS1_2_VERSION, SSL_OP_NO_TLSv1_2},
    {"TLSv1.3", TLS1_3_VERSION, SSL_OP_NO_TLSv1_3},
};

#define NPROTO ((int) (sizeof(protos) / sizeof(protos[0])))

static int proto_index(const char *name)
{
    for (int i = 0; i < NPROTO; i++)
	if (str_casecmp(name, protos[i].name) == 0)
	    return (i);
    return (str_casecmp(name, "SSLv2") == 0 ? -2 : -1);
}

int     tls_protocol_range(const char *list, int *min, int *max, long *holes)
{
    char  **tok = NULL;
    int     ntok = 0, include = 0, ok = 1;
    int     on[NPROTO], incl[NPROTO];

    split_append(&tok, &ntok, list, ", :\t\r\n");
    for (int i = 0; i < NPROTO; i++)
	on[i] = 1, incl[i] = 0;
    for (int t = 0; t < ntok && ok; t++) {
	const char *s = tok[t];
	int     idx;

	if (strncmp(s, ">=", 2) == 0 || strncmp(s, "<=", 2) == 0) {
	    if ((idx = proto_index(s + 2)) < 0) {
		ok = idx == -2 && s[0] == '>';	/* ">=SSLv2" is everything */
		continue;
	    }
	    for (int i = 0; i < NPROTO; i++)
		if (s[0] == '>' ? i < idx : i > idx)
		    on[i] = 0;
	} else if (s[0] == '!') {
	    if ((idx = proto_index(s + 1)) >= 0)
		on[idx] = 0;
	    else if (idx == -1)
		ok = 0;
	} else {
	    if ((idx = proto_index(s)) >= 0)
		incl[idx] = include = 1;
	    else if (idx == -1)
		ok = 0;
	}
    }
    str_list_free(tok);
    if (!ok)
	return (-1);
    int     lo = -1, hi = -1;

    *holes = 0;
    for (int i = 0; i < NPROTO; i++) {
	if (include && !incl[i])
	    on[i] = 0;
	if (on[i]) {
	    if (lo < 0)
		lo = i;
	    hi = i;
	}
    }
    if (lo < 0)
	return (-1);
    for (int i = lo; i <= hi; i++)
	if (!on[i])
	    *holes |= protos[i].no_op;
    *min = protos[lo].version;
    *max = protos[hi].version;
    return (0);
}
