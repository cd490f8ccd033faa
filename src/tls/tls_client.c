/*
 * tls_client - the client TLS engine: one SSL_CTX per configuration,
 * per-connection SSL objects set up from a TLS_POLICY, verification after
 * the handshake, the in-memory session cache, and the log lines of
 * smtp_tls_loglevel in Postfix's words (tls_client.c, tls_verify.c,
 * tls_misc.c's tls_log_summary).
 *
 * The session cache: Postfix keeps client sessions in
 * smtp_tls_session_cache_database through tlsmgr(8).  relayq is one
 * process, so it keeps them in memory, in this context, when that
 * parameter is set (its value, a file name for Postfix, is not used), for
 * smtp_tls_session_cache_timeout; a reload or restart empties it.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <idn2.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "log/log.h"
#include "util/util.h"
#include "tls/tls.h"

#define SCACHE_MAX	1000		/* entries; the oldest goes first */

typedef struct SCACHE_ENT {
    char   *key;
    SSL_SESSION *sess;
    time_t  expires;
    struct SCACHE_ENT *next;
} SCACHE_ENT;

struct TLS_CLIENT {
    SSL_CTX *ctx;
    TLS_CLIENT_PARAMS p;		/* strings copied */
    char   *strs[24];			/* the copies, to free */
    int     nstrs;
    SCACHE_ENT *cache;			/* newest first */
    int     ncache;
};

/* Per-connection data hung on the SSL object. */
typedef struct TLS_SSLX {
    TLS_CLIENT *tc;
    char   *cache_key;			/* NULL: no caching */
    char   *namaddr;			/* "host[addr]:port" */
    char   *host;
    char   *nexthop;
    int     err;			/* first verification error */
    int     err_depth;
    char    err_issuer[256];
    int     level;			/* effective: dane falls back to encrypt */
    int     must_fail;			/* dane-only without a usable TLSA record */
} TLS_SSLX;

static int sslx_index = -1;

static void sslx_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    TLS_SSLX *x = ptr;

    if (x) {
	free(x->cache_key);
	free(x->namaddr);
	free(x->host);
	free(x->nexthop);
	free(x);
    }
}

static TLS_SSLX *sslx(SSL *ssl)
{
    return (SSL_get_ex_data(ssl, sslx_index));
}

/* ---- names ------------------------------------------------------------- */

/* An A-label form of name in buf (unchanged when ASCII or not convertible). */
static const char *asciify(const char *name, char *buf, size_t len)
{
    char   *out = NULL;

    for (const unsigned char *cp = (const unsigned char *) name; *cp; cp++) {
	if (*cp >= 0x80) {
	    if (idn2_to_ascii_8z(name, &out, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) == IDN2_OK
		|| idn2_to_ascii_8z(name, &out, IDN2_NFC_INPUT | IDN2_TRANSITIONAL) == IDN2_OK) {
		snprintf(buf, len, "%s", out);
		idn2_free(out);
		return (buf);
	    }
	    return (name);
	}
    }
    return (name);
}

int     tls_cert_match(X509 *cert, char *const *names, int nnames, const char *host,
		               const char *nexthop, char *peername, size_t peerlen)
{
    const unsigned int flags = X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS;

    for (int i = 0; i < nnames; i++) {
	const char *name = names[i];
	int     subdomain = 0;
	char    abuf[512], dbuf[520];
	char   *matched = NULL;

	if (str_casecmp(name, "nexthop") == 0) {
	    name = nexthop;
	} else if (str_casecmp(name, "dot-nexthop") == 0) {
	    name = nexthop;
	    subdomain = 1;
	} else if (str_casecmp(name, "hostname") == 0) {
	    name = host;
	} else if (*name == '.') {
	    if (*++name == 0)
		continue;			/* Postfix: ignoring invalid match name "." */
	    subdomain = 1;
	} else {
	    const unsigned char *cp = (const unsigned char *) name;

	    /* IDNA2003 full stops U+3002, U+FF0E, U+FF61 as a leading "." */
	    if (((cp[0] == 0xe3 && cp[1] == 0x80 && cp[2] == 0x82)
		 || (cp[0] == 0xef && cp[1] == 0xbc && cp[2] == 0x8e)
		 || (cp[0] == 0xef && cp[1] == 0xbd && cp[2] == 0xa1)) && name[3]) {
		name += 3;
		subdomain = 1;
	    }
	}
	if (name == NULL || *name == 0)
	    continue;
	name = asciify(name, abuf, sizeof(abuf));
	if (subdomain) {
	    /* OpenSSL: a leading "." matches any subdomain of the name. */
	    snprintf(dbuf, sizeof(dbuf), ".%s", name);
	    name = dbuf;
	}
	if (X509_check_host(cert, name, 0, flags, &matched) == 1) {
	    if (peername)
		snprintf(peername, peerlen, "%s", matched ? matched : name);
	    OPENSSL_free(matched);
	    return (1);
	}
    }
    return (0);
}

/* ---- fingerprints ------------------------------------------------------ */

int     tls_fingerprint(X509 *cert, int pkey, const char *digest, char *out, size_t outlen)
{
    const EVP_MD *md = EVP_get_digestbyname(digest);
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    size_t  o = 0;

    if (md == NULL || outlen < 4)
	return (-1);
    if (pkey) {
	unsigned char *der = NULL;
	int     n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);

	if (n <= 0 || !EVP_Digest(der, (size_t) n, d, &dlen, md, NULL)) {
	    OPENSSL_free(der);
	    return (-1);
	}
	OPENSSL_free(der);
    } else if (!X509_digest(cert, md, d, &dlen))
	return (-1);
    for (unsigned int i = 0; i < dlen && o + 4 <= outlen; i++)
	o += (size_t) snprintf(out + o, outlen - o, "%s%02X", i ? ":" : "", d[i]);
    return (0);
}

/* Compare hex strings ignoring colons and case. */
static int hex_equal(const char *a, const char *b)
{
    for (;;) {
	while (*a == ':')
	    a++;
	while (*b == ':')
	    b++;
	if (*a == 0 || *b == 0)
	    return (*a == *b);
	if (tolower((unsigned char) *a) != tolower((unsigned char) *b))
	    return (0);
	a++, b++;
    }
}

int     tls_fingerprint_match(X509 *cert, const char *digest, char *const *fprints, int n)
{
    char    cfp[EVP_MAX_MD_SIZE * 3 + 1], pfp[EVP_MAX_MD_SIZE * 3 + 1];

    if (tls_fingerprint(cert, 0, digest, cfp, sizeof(cfp)) < 0
	|| tls_fingerprint(cert, 1, digest, pfp, sizeof(pfp)) < 0)
	return (0);
    for (int i = 0; i < n; i++)
	if (hex_equal(fprints[i], cfp) || hex_equal(fprints[i], pfp))
	    return (1);
    return (0);
}

/* ---- the session cache ----------------------------------------------- */

static void scache_drop(TLS_CLIENT *tc, SCACHE_ENT **pp)
{
    SCACHE_ENT *e = *pp;

    *pp = e->next;
    SSL_SESSION_free(e->sess);
    free(e->key);
    free(e);
    tc->ncache--;
}

static void scache_expire(TLS_CLIENT *tc, time_t now)
{
    for (SCACHE_ENT **pp = &tc->cache; *pp;) {
	if ((*pp)->expires <= now)
	    scache_drop(tc, pp);
	else
	    pp = &(*pp)->next;
    }
}

static int scache_new_cb(SSL *ssl, SSL_SESSION *sess)
{
    TLS_SSLX *x = sslx(ssl);
    TLS_CLIENT *tc;
    SCACHE_ENT *e;
    time_t  now = time_sec();
    long    life;

    if (x == NULL || x->cache_key == NULL || !SSL_SESSION_is_resumable(sess))
	return (0);
    tc = x->tc;
    scache_expire(tc, now);
    for (SCACHE_ENT **pp = &tc->cache; *pp; pp = &(*pp)->next) {
	if (strcmp((*pp)->key, x->cache_key) == 0) {
	    scache_drop(tc, pp);
	    break;
	}
    }
    if (tc->ncache >= SCACHE_MAX) {
	SCACHE_ENT **pp = &tc->cache;

	while ((*pp)->next)
	    pp = &(*pp)->next;
	scache_drop(tc, pp);
    }
    life = SSL_SESSION_get_timeout(sess);
    if (tc->p.scache_timeout < life)
	life = tc->p.scache_timeout;
    /*
     * Keep a copy: OpenSSL marks the connection's own session object not
     * resumable when the connection is freed without a TLS shutdown (an
     * SMTP session ends with QUIT, not close_notify).
     */
    SSL_SESSION *copy = SSL_SESSION_dup(sess);

    if (copy == NULL)
	return (0);
    e = xcalloc(1, sizeof(*e));
    e->key = xstrdup(x->cache_key);
    e->sess = copy;
    e->expires = now + life;
    e->next = tc->cache;
    tc->cache = e;
    tc->ncache++;
    if (tc->p.loglevel >= 2)
	log_msg("smtp", "save session %s to memory cache", x->cache_key);
    return (0);					/* OpenSSL keeps its reference */
}

int     tls_scache_count(const TLS_CLIENT *tc)
{
    return (tc->ncache);
}

/* ---- verification ------------------------------------------------------ */

static int verify_cb(int ok, X509_STORE_CTX *sctx)
{
    SSL    *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    TLS_SSLX *x = ssl ? sslx(ssl) : NULL;

    if (!ok && x && x->err == X509_V_OK) {
	X509   *cert = X509_STORE_CTX_get_current_cert(sctx);

	x->err = X509_STORE_CTX_get_error(sctx);
	x->err_depth = X509_STORE_CTX_get_error_depth(sctx);
	if (cert)
	    X509_NAME_oneline(X509_get_issuer_name(cert), x->err_issuer, sizeof(x->err_issuer));
	else
	    snprintf(x->err_issuer, sizeof(x->err_issuer), "<unknown>");
    }
    return (1);					/* decide after the handshake */
}

/* Postfix's tls_log_verify_error() lines. */
static void log_verify_error(TLS_SSLX *x, int err)
{
    const char *purpose = x->err_depth > 0 ? "CA" : "server";

    switch (err) {
    case X509_V_ERR_CERT_UNTRUSTED:
	log_msg("smtp", "certificate verification failed for %s: not trusted by local or TLSA policy",
		x->namaddr);
	break;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	log_msg("smtp", "certificate verification failed for %s: self-signed certificate", x->namaddr);
	break;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	log_msg("smtp", "certificate verification failed for %s: untrusted issuer %s",
		x->namaddr, x->err_issuer);
	break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
	log_msg("smtp", "%s certificate verification failed for %s: certificate not yet valid",
		purpose, x->namaddr);
	break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
	log_msg("smtp", "%s certificate verification failed for %s: certificate has expired",
		purpose, x->namaddr);
	break;
    case X509_V_ERR_INVALID_PURPOSE:
	log_msg("smtp", "certificate verification failed for %s: not designated for use as a %s certificate",
		x->namaddr, purpose);
	break;
    default:
	log_msg("smtp", "%s certificate verification failed for %s: num=%d:%s",
		purpose, x->namaddr, err, X509_verify_cert_error_string(err));
	break;
    }
}

/* ---- the context ----------------------------------------------------- */

static const char *keep(TLS_CLIENT *tc, const char *s)
{
    char   *c = xstrdup(s ? s : "");

    if (tc->nstrs < (int) (sizeof(tc->strs) / sizeof(tc->strs[0])))
	tc->strs[tc->nstrs++] = c;
    return (c);
}

static void ssl_errors(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char    buf[256];

    if (e)
	ERR_error_string_n(e, buf, sizeof(buf));
    else
	snprintf(buf, sizeof(buf), "unknown error");
    snprintf(err, errlen, "%s: %s", what, buf);
    ERR_clear_error();
}

TLS_CLIENT *tls_client_create(const TLS_CLIENT_PARAMS *p, char *err, size_t errlen)
{
    TLS_CLIENT *tc = xcalloc(1, sizeof(*tc));
    SSL_CTX *ctx;

    if (sslx_index < 0)
	sslx_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, sslx_free);
    tc->p = *p;
    tc->p.level = keep(tc, p->level);
    tc->p.CAfile = keep(tc, p->CAfile);
    tc->p.CApath = keep(tc, p->CApath);
    tc->p.cert_file = keep(tc, p->cert_file);
    tc->p.key_file = keep(tc, p->key_file);
    tc->p.protocols = keep(tc, p->protocols);
    tc->p.mand_protocols = keep(tc, p->mand_protocols);
    tc->p.ciphers = keep(tc, p->ciphers);
    tc->p.mand_ciphers = keep(tc, p->mand_ciphers);
    tc->p.exclude = keep(tc, p->exclude);
    tc->p.mand_exclude = keep(tc, p->mand_exclude);
    tc->p.high_clist = keep(tc, p->high_clist);
    tc->p.medium_clist = keep(tc, p->medium_clist);
    tc->p.null_clist = keep(tc, p->null_clist);
    tc->p.fpt_digest = keep(tc, p->fpt_digest);
    tc->p.verify_match = keep(tc, p->verify_match);
    tc->p.secure_match = keep(tc, p->secure_match);
    tc->p.fpt_match = keep(tc, p->fpt_match);
    tc->p.servername = keep(tc, p->servername);
    tc->p.scache_db = keep(tc, p->scache_db);

    if (EVP_get_digestbyname(tc->p.fpt_digest) == NULL) {
	snprintf(err, errlen, "smtp_tls_fingerprint_digest: unsupported digest \"%s\"",
		 tc->p.fpt_digest);
	tls_client_free(tc);
	return (NULL);
    }
    if ((ctx = tc->ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
	ssl_errors(err, errlen, "cannot create the client TLS context");
	tls_client_free(tc);
	return (NULL);
    }
    /* A prerequisite of DANE, no commitment to it (Postfix does the same). */
    if (SSL_CTX_dane_enable(ctx) <= 0) {
	ssl_errors(err, errlen, "OpenSSL DANE initialization failed");
	tls_client_free(tc);
	return (NULL);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
    SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
    if (*tc->p.CAfile || *tc->p.CApath) {
	if (!SSL_CTX_load_verify_locations(ctx, *tc->p.CAfile ? tc->p.CAfile : NULL,
					   *tc->p.CApath ? tc->p.CApath : NULL)) {
	    char    what[1200];

	    snprintf(what, sizeof(what), "cannot load Certification Authority data, CAfile=\"%s\", CApath=\"%s\"",
		     tc->p.CAfile, tc->p.CApath);
	    ssl_errors(err, errlen, what);
	    tls_client_free(tc);
	    return (NULL);
	}
    }
    if (tc->p.append_default_CA && !SSL_CTX_set_default_verify_paths(ctx)) {
	ssl_errors(err, errlen, "cannot load the default Certification Authorities");
	tls_client_free(tc);
	return (NULL);
    }
    if (*tc->p.cert_file) {
	const char *key = *tc->p.key_file ? tc->p.key_file : tc->p.cert_file;

	if (SSL_CTX_use_certificate_chain_file(ctx, tc->p.cert_file) != 1
	    || SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1
	    || SSL_CTX_check_private_key(ctx) != 1) {
	    char    what[1200];

	    snprintf(what, sizeof(what), "cannot load client certificate %s and key %s",
		     tc->p.cert_file, key);
	    ssl_errors(err, errlen, what);
	    tls_client_free(tc);
	    return (NULL);
	}
    }
    if (*tc->p.scache_db) {
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, scache_new_cb);
    } else
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return (tc);
}

void    tls_client_free(TLS_CLIENT *tc)
{
    if (tc == NULL)
	return;
    while (tc->cache)
	scache_drop(tc, &tc->cache);
    if (tc->ctx)
	SSL_CTX_free(tc->ctx);
    for (int i = 0; i < tc->nstrs; i++)
	free(tc->strs[i]);
    free(tc);
}

const TLS_CLIENT_PARAMS *tls_client_params(const TLS_CLIENT *tc)
{
    return (&tc->p);
}

/* The OpenSSL cipher list of a grade with exclusions, as tls_set_ciphers(). */
static char *cipher_list(const TLS_CLIENT *tc, const char *grade, const char *exclude)
{
    const char *base;
    BUF     b;

    if (str_casecmp(grade, "high") == 0)
	base = tc->p.high_clist;
    else if (str_casecmp(grade, "medium") == 0 || str_casecmp(grade, "low") == 0
	     || str_casecmp(grade, "export") == 0)
	base = tc->p.medium_clist;
    else if (str_casecmp(grade, "null") == 0)
	base = tc->p.null_clist;
    else
	return (NULL);
    buf_init(&b);
    buf_puts(&b, base);
    for (const char *s = exclude; s && *s;) {
	size_t  len;

	s += strspn(s, ", :\t");
	if ((len = strcspn(s, ", :\t")) == 0)
	    break;
	buf_printf(&b, ":!%.*s", (int) len, s);
	s += len;
    }
    char   *r = xstrdup(b.data ? b.data : "");

    buf_free(&b);
    return (r);
}

SSL    *tls_client_ssl(TLS_CLIENT *tc, const TLS_POLICY *pol, const char *nexthop,
		               const char *host, const char *addr, int port,
		               char *err, size_t errlen)
{
    SSL    *ssl;
    TLS_SSLX *x;
    int     min, max;
    long    holes;
    char   *clist;
    const char *sni = NULL;
    char    abuf[512];

    if (tls_protocol_range(pol->protocols ? pol->protocols : "", &min, &max, &holes) < 0) {
	log_warn("smtp", "Invalid TLS protocol list \"%s\": aborting TLS session",
		 pol->protocols ? pol->protocols : "");
	snprintf(err, errlen, "Invalid TLS protocol list");
	return (NULL);
    }
    if ((clist = cipher_list(tc, pol->grade ? pol->grade : "medium", pol->exclude)) == NULL) {
	log_warn("smtp", "invalid TLS cipher grade \"%s\"", pol->grade);
	snprintf(err, errlen, "invalid TLS cipher grade");
	return (NULL);
    }
    if ((ssl = SSL_new(tc->ctx)) == NULL) {
	free(clist);
	ssl_errors(err, errlen, "SSL_new");
	return (NULL);
    }
    x = xcalloc(1, sizeof(*x));
    x->tc = tc;
    x->namaddr = xasprintf("%s[%s]:%d", host, addr, port);
    x->host = xstrdup(host);
    x->nexthop = xstrdup(nexthop);
    x->err = X509_V_OK;
    x->level = pol->level;
    SSL_set_ex_data(ssl, sslx_index, x);
    if (tc->p.loglevel >= 2)
	log_msg("smtp", "setting up TLS connection to %s", x->namaddr);
    if (SSL_set_cipher_list(ssl, clist) != 1) {
	log_warn("smtp", "invalid cipher list: \"%s\"", clist);
	snprintf(err, errlen, "invalid TLS cipher list");
	free(clist);
	SSL_free(ssl);
	ERR_clear_error();
	return (NULL);
    }
    if (tc->p.loglevel >= 2)
	log_msg("smtp", "%s: TLS cipher list \"%s\"", x->namaddr, clist);
    SSL_set_min_proto_version(ssl, min);
    SSL_set_max_proto_version(ssl, max);
    if (holes)
	SSL_set_options(ssl, (uint64_t) holes);

    /*
     * DANE: OpenSSL checks the chain against the TLSA records (and the
     * names, for DANE-TA(2); RFC 7672 wants none for DANE-EE(3)); the SNI
     * name is the TLSA base domain.  Records OpenSSL cannot use are
     * skipped; none at all: "dane" falls back to unauthenticated TLS,
     * "dane-only" must fail.
     */
    if (TLS_DANE_BASED(pol->level) && pol->ntlsa > 0 && pol->dane_base) {
	int     usable = 0;

	if (SSL_dane_enable(ssl, pol->dane_base) <= 0) {
	    log_warn("smtp", "%s: error enabling DANE-based certificate validation", x->namaddr);
	    snprintf(err, errlen, "error enabling DANE-based certificate validation");
	    free(clist);
	    SSL_free(ssl);
	    ERR_clear_error();
	    return (NULL);
	}
	SSL_dane_set_flags(ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	for (int i = 0; i < pol->nmatch; i++)
	    if (str_casecmp(pol->match[i], pol->dane_base) != 0 && !SSL_add1_host(ssl, pol->match[i]))
		log_warn("smtp", "%s: error loading match name: \"%s\"", x->namaddr, pol->match[i]);
	for (int i = 0; i < pol->ntlsa; i++) {
	    const TLS_TLSA *t = &pol->tlsa[i];
	    int     ret = SSL_dane_tlsa_add(ssl, t->usage, t->selector, t->mtype, t->data, t->len);
	    char    text[200];

	    tls_tlsa_text(t, text, sizeof(text));
	    if (ret > 0) {
		usable++;
	    } else if (ret == 0) {
		log_warn("smtp", "%s: unusable TLSA RR: %s", x->namaddr, text);
	    } else {
		log_warn("smtp", "%s: error loading trust settings: %s", x->namaddr, text);
		ERR_clear_error();
		snprintf(err, errlen, "error loading trust settings");
		free(clist);
		SSL_free(ssl);
		return (NULL);
	    }
	}
	ERR_clear_error();
	if (usable == 0 && pol->level == TLS_LEV_DANE) {
	    log_warn("smtp", "%s: all TLSA records unusable, fallback to unauthenticated TLS",
		     x->namaddr);
	    x->level = TLS_LEV_ENCRYPT;
	} else if (usable == 0) {
	    log_warn("smtp", "%s: all TLSA records unusable", x->namaddr);
	    x->must_fail = 1;
	}
	sni = pol->dane_base;
	if (!SSL_set_tlsext_host_name(ssl, UTIL_UNCONST(sni))) {
	    log_warn("smtp", "%s: error setting SNI hostname to: %s", x->namaddr, sni);
	    ERR_clear_error();
	    sni = NULL;
	} else if (tc->p.loglevel >= 2)
	    log_msg("smtp", "%s: SNI hostname: %s", x->namaddr, sni);
    }

    /* A DANE level that tls_policy_dane() did not settle can verify nothing. */
    else if (TLS_DANE_BASED(pol->level)) {
	x->must_fail = 1;
    }

    /* SNI: smtp_tls_servername or servername=, as Postfix (none by default). */
    else if (pol->servername && *pol->servername) {
	if (strcmp(pol->servername, "hostname") == 0)
	    sni = host;
	else if (strcmp(pol->servername, "nexthop") == 0)
	    sni = nexthop;
	else
	    sni = pol->servername;
	sni = asciify(sni, abuf, sizeof(abuf));
	if (!SSL_set_tlsext_host_name(ssl, UTIL_UNCONST(sni))) {
	    log_warn("smtp", "%s: error setting SNI hostname to: %s", x->namaddr, sni);
	    ERR_clear_error();
	    sni = NULL;
	} else if (tc->p.loglevel >= 2)
	    log_msg("smtp", "%s: SNI hostname: %s", x->namaddr, sni);
    }

    /*
     * The session cache: the key names everything that shapes the session.
     * Not with DANE: a resumed session would skip the TLSA check.
     */
    if (*tc->p.scache_db && !TLS_DANE_BASED(pol->level)) {
	x->cache_key = xasprintf("%s&%s&%d&%s&%s&%s&%s", host, addr, port, sni ? sni : "",
				 pol->protocols ? pol->protocols : "", clist,
				 tls_level_name(pol->level));
	scache_expire(tc, time_sec());
	for (SCACHE_ENT *e = tc->cache; e; e = e->next) {
	    SSL_SESSION *copy;

	    if (strcmp(e->key, x->cache_key) == 0 && (copy = SSL_SESSION_dup(e->sess)) != NULL) {
		SSL_set_session(ssl, copy);	/* the SSL holds its own reference */
		SSL_SESSION_free(copy);
		if (tc->p.loglevel >= 2)
		    log_msg("smtp", "reloaded session %s from memory cache", x->cache_key);
		break;
	    }
	}
    }
    free(clist);
    return (ssl);
}

/* The loglevel-1 summary, as tls_log_summary(). */
static void log_summary(TLS_SSLX *x, SSL *ssl, const TLS_PEER *peer, int secured)
{
    BUF     b;
    EVP_PKEY *k = NULL;
    X509   *cert;
    int     nid;

    buf_init(&b);
    buf_printf(&b, "%s TLS connection %s to %s: %s with cipher %s (%d/%d bits)",
	       !SSL_get0_peer_certificate(ssl) ? "Anonymous"
	       : secured ? "Verified" : peer->trusted ? "Trusted" : "Untrusted",
	       peer->reused ? "reused" : "established", x->namaddr, peer->protocol,
	       peer->cipher, peer->usebits, peer->algbits);
    if (SSL_get_peer_tmp_key(ssl, &k) && k) {
	char    group[80];
	size_t  glen = 0;

	switch (EVP_PKEY_get_base_id(k)) {
	case EVP_PKEY_DH:
	    buf_printf(&b, " key-exchange DHE (%d bits)", EVP_PKEY_get_bits(k));
	    break;
	case EVP_PKEY_EC:
	    if (EVP_PKEY_get_group_name(k, group, sizeof(group), &glen))
		buf_printf(&b, " key-exchange ECDHE (%s)", group);
	    else
		buf_printf(&b, " key-exchange ECDHE");
	    break;
	default:
	    buf_printf(&b, " key-exchange %s", EVP_PKEY_get0_type_name(k));
	    break;
	}
	EVP_PKEY_free(k);
    }
    if ((cert = SSL_get0_peer_certificate(ssl)) != NULL) {
	EVP_PKEY *pk = X509_get0_pubkey(cert);
	const char *signame = NULL;

	if (SSL_get_peer_signature_type_nid(ssl, &nid)) {
	    switch (nid) {
	    case EVP_PKEY_RSA:
		signame = "RSA";
		break;
	    case EVP_PKEY_RSA_PSS:
		signame = "RSA-PSS";
		break;
	    case EVP_PKEY_EC:
		signame = "ECDSA";
		break;
	    case EVP_PKEY_ED25519:
		signame = "ED25519";
		break;
	    case EVP_PKEY_ED448:
		signame = "ED448";
		break;
	    default:
		signame = OBJ_nid2sn(nid);
		break;
	    }
	}
	if (signame && pk) {
	    char    group[80];
	    size_t  glen = 0;

	    buf_printf(&b, " server-signature %s", signame);
	    if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC
		&& EVP_PKEY_get_group_name(pk, group, sizeof(group), &glen))
		buf_printf(&b, " (%s)", group);
	    else if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_ED25519
		     && EVP_PKEY_get_base_id(pk) != EVP_PKEY_ED448)
		buf_printf(&b, " (%d bits)", EVP_PKEY_get_bits(pk));
	    if (SSL_get_peer_signature_nid(ssl, &nid) && nid != NID_undef)
		buf_printf(&b, " server-digest %s", OBJ_nid2sn(nid));
	}
    }
    log_msg("smtp", "%s", b.data);
    buf_free(&b);
}

/* "Matched DANE ... at depth N: u s m HEX" (Postfix's tls_dane_log()). */
static void log_dane_match(TLS_SSLX *x, SSL *ssl)
{
    X509   *mcert = NULL;
    EVP_PKEY *mspki = NULL;
    int     depth = SSL_get0_dane_authority(ssl, &mcert, &mspki);
    uint8_t u = 0, s = 0, m = 0;
    const unsigned char *data = NULL;
    size_t  dlen = 0;
    TLS_TLSA t;
    char    text[200];

    if (depth < 0)
	return;
    (void) SSL_get0_dane_tlsa(ssl, &u, &s, &m, &data, &dlen);
    t.usage = u;
    t.selector = s;
    t.mtype = m;
    t.data = UTIL_UNCONST(data);
    t.len = data ? dlen : 0;
    tls_tlsa_text(&t, text, sizeof(text));
    log_msg("smtp", "%s: Matched DANE %s at depth %d: %s", x->namaddr,
	    mspki ? "TA public key verified certificate" : depth ? "TA certificate" : "EE certificate",
	    depth, text);
}

static void cn_of(X509_NAME *n, char *out, size_t len)
{
    out[0] = 0;
    if (n && X509_NAME_get_text_by_NID(n, NID_commonName, out, (int) len) < 0)
	out[0] = 0;
    for (char *cp = out; *cp; cp++)
	if (!isprint((unsigned char) *cp))
	    *cp = '?';
}

int     tls_client_post(TLS_CLIENT *tc, SSL *ssl, const TLS_POLICY *pol, TLS_PEER *peer)
{
    TLS_SSLX *x = sslx(ssl);
    X509   *cert = SSL_get0_peer_certificate(ssl);
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    long    vr = SSL_get_verify_result(ssl);
    int     secured = 0;
    int     level = x->level;
    char    peername[512] = "";

    memset(peer, 0, sizeof(*peer));
    peer->reused = SSL_session_reused(ssl);
    snprintf(peer->protocol, sizeof(peer->protocol), "%s", SSL_get_version(ssl));
    snprintf(peer->cipher, sizeof(peer->cipher), "%s", c ? SSL_CIPHER_get_name(c) : "unknown");
    peer->usebits = c ? SSL_CIPHER_get_bits(c, &peer->algbits) : 0;
    if (cert) {
	cn_of(X509_get_subject_name(cert), peer->peer_cn, sizeof(peer->peer_cn));
	cn_of(X509_get_issuer_name(cert), peer->issuer_cn, sizeof(peer->issuer_cn));
	peer->trusted = (vr == X509_V_OK);
	if (level == TLS_LEV_FPRINT) {
	    peer->matched = tls_fingerprint_match(cert, tc->p.fpt_digest, pol->match, pol->nmatch);
	    secured = peer->matched;
	} else if (TLS_DANE_BASED(level)) {
	    /* OpenSSL verified the chain against the TLSA records, and the names. */
	    peer->matched = peer->trusted && !x->must_fail;
	    secured = peer->matched && !pol->dane_half;
	    if (peer->matched && tc->p.loglevel >= 2)
		log_dane_match(x, ssl);
	} else if (peer->trusted && (pol->level == TLS_LEV_VERIFY || pol->level == TLS_LEV_SECURE)) {
	    peer->matched = tls_cert_match(cert, pol->match, pol->nmatch, x->host, x->nexthop,
					   peername, sizeof(peername));
	    secured = peer->matched;
	}
	if (tc->p.loglevel >= 2) {
	    char    cfp[EVP_MAX_MD_SIZE * 3 + 1] = "", pfp[EVP_MAX_MD_SIZE * 3 + 1] = "";

	    tls_fingerprint(cert, 0, tc->p.fpt_digest, cfp, sizeof(cfp));
	    tls_fingerprint(cert, 1, tc->p.fpt_digest, pfp, sizeof(pfp));
	    log_msg("smtp", "%s: subject_CN=%s, issuer_CN=%s, fingerprint=%s, pkey_fingerprint=%s",
		    x->namaddr, peer->peer_cn, peer->issuer_cn, cfp, pfp);
	    if (*peername)
		log_msg("smtp", "%s: matched peername: %s", x->namaddr, peername);
	}
    }

    /* When a match is required, say why there is none (Postfix: always). */
    if (TLS_MUST_MATCH(level) && !peer->matched) {
	if (peer->reused)
	    log_msg("smtp", "%s: re-using session with untrusted certificate, look for details earlier in the log",
		    x->namaddr);
	else if (cert == NULL)
	    log_msg("smtp", "server certificate verification failed for %s: num=%d:%s", x->namaddr,
		    X509_V_ERR_UNSPECIFIED, "no certificate presented");
	else if (level == TLS_LEV_FPRINT)
	    log_msg("smtp", "server certificate verification failed for %s: num=%d:%s", x->namaddr,
		    X509_V_ERR_CERT_UNTRUSTED, "certificate not trusted");
	else if (!peer->trusted)
	    log_verify_error(x, x->err != X509_V_OK ? x->err : (int) vr);
	else
	    log_msg("smtp", "server certificate verification failed for %s: num=%d:%s", x->namaddr,
		    X509_V_ERR_HOSTNAME_MISMATCH, "hostname mismatch");
    }
    if (tc->p.loglevel >= 1)
	log_summary(x, ssl, peer, secured);
    return (!TLS_MUST_MATCH(level) || peer->matched);
}
