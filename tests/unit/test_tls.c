/*
 * test_tls - the tls module: levels, policy table entries and their
 * lookup order, protocol lists, certificate name matching (wildcards,
 * match= lists, IDN) and fingerprints, on certificates made here.
 */
#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "t.h"
#include "log/log.h"
#include "tls/tls.h"

static EVP_PKEY *tkey;

/* A certificate with subject CN cn and DNS SANs sans ("a,b"; NULL: none). */
static X509 *make_cert(const char *cn, const char *sans)
{
    X509   *x = X509_new();
    X509_NAME *n = X509_NAME_new();

    if (tkey == NULL)
	tkey = EVP_EC_gen("P-256");
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *) cn, -1, -1, 0);
    X509_set_subject_name(x, n);
    X509_set_issuer_name(x, n);
    X509_NAME_free(n);
    X509_set_pubkey(x, tkey);
    if (sans) {
	char    buf[512];
	X509V3_CTX v3;
	X509_EXTENSION *ext;

	snprintf(buf, sizeof(buf), "%s", sans);
	BUF     b;

	buf_init(&b);
	for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ","))
	    buf_printf(&b, "%sDNS:%s", b.len ? "," : "", tok);
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, b.data);
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	buf_free(&b);
    }
    X509_sign(x, tkey, EVP_sha256());
    return x;
}

static int match1(X509 *c, const char *list, const char *host, const char *nexthop)
{
    char  **v = str_split_list(list, NULL);
    int     n = 0, r;

    while (v[n])
	n++;
    r = tls_cert_match(c, v, n, host, nexthop, NULL, 0);
    str_list_free(v);
    return r;
}

static void test_levels(void)
{
    T_EQ_INT(tls_level_lookup(""), TLS_LEV_NONE);
    T_EQ_INT(tls_level_lookup("none"), TLS_LEV_NONE);
    T_EQ_INT(tls_level_lookup("may"), TLS_LEV_MAY);
    T_EQ_INT(tls_level_lookup("encrypt"), TLS_LEV_ENCRYPT);
    T_EQ_INT(tls_level_lookup("fingerprint"), TLS_LEV_FPRINT);
    T_EQ_INT(tls_level_lookup("verify"), TLS_LEV_VERIFY);
    T_EQ_INT(tls_level_lookup("SECURE"), TLS_LEV_SECURE);
    T_EQ_INT(tls_level_lookup("dane-only"), TLS_LEV_DANE_ONLY);
    T_EQ_INT(tls_level_lookup("secure "), TLS_LEV_INVALID);
    T_EQ_INT(tls_level_lookup("optional"), TLS_LEV_INVALID);
    T_CHECK(TLS_MUST_MATCH(TLS_LEV_FPRINT) && !TLS_MUST_MATCH(TLS_LEV_ENCRYPT));
    T_CHECK(TLS_REQUIRED(TLS_LEV_ENCRYPT) && !TLS_REQUIRED(TLS_LEV_MAY));
}

static void test_policy_parse(void)
{
    TLS_POLICY p;
    char    w[512];

    memset(&p, 0, sizeof(p));
    T_EQ_INT(tls_policy_parse("secure match=.example.com:example.org protocols=>=TLSv1.2 "
			      "ciphers=high exclude=3DES servername=hostname", "t", &p, w, sizeof(w)), 0);
    T_EQ_INT(p.level, TLS_LEV_SECURE);
    T_EQ_INT(p.nmatch, 2);
    T_EQ_STR(p.match[0], ".example.com");
    T_EQ_STR(p.match[1], "example.org");
    T_EQ_STR(p.protocols, ">=TLSv1.2");
    T_EQ_STR(p.grade, "high");
    T_EQ_STR(p.exclude, "3DES");
    T_EQ_STR(p.servername, "hostname");
    tls_policy_free(&p);

    /* fingerprints are separated by "|" */
    T_EQ_INT(tls_policy_parse("fingerprint match=AA:BB|CC:DD match=EE", "t", &p, w, sizeof(w)), 0);
    T_EQ_INT(p.nmatch, 3);
    T_EQ_STR(p.match[1], "CC:DD");
    tls_policy_free(&p);

    /* errors, in Postfix's words */
    T_EQ_INT(tls_policy_parse("", "tbl, next-hop destination \"x\"", &p, w, sizeof(w)), -1);
    T_EQ_STR(w, "tbl, next-hop destination \"x\": invalid empty policy");
    tls_policy_free(&p);
    T_EQ_INT(tls_policy_parse("sekure", "t", &p, w, sizeof(w)), -1);
    T_EQ_STR(w, "t: invalid security level \"sekure\"");
    tls_policy_free(&p);
    T_EQ_INT(tls_policy_parse("encrypt match=x.example", "t", &p, w, sizeof(w)), -1);
    T_EQ_STR(w, "t: attribute \"match\" invalid at security level \"encrypt\"");
    tls_policy_free(&p);
    T_EQ_INT(tls_policy_parse("secure ciphers=high ciphers=medium", "t", &p, w, sizeof(w)), -1);
    T_EQ_STR(w, "t: attribute \"ciphers\" is specified multiple times");
    tls_policy_free(&p);
    T_EQ_INT(tls_policy_parse("secure foo=bar", "t", &p, w, sizeof(w)), -1);
    T_EQ_STR(w, "t: invalid attribute name: \"foo\"");
    tls_policy_free(&p);
    T_EQ_INT(tls_policy_parse("secure match", "t", &p, w, sizeof(w)), -1);
    tls_policy_free(&p);
    T_EQ_INT(tls_policy_parse("secure servername=bad/name", "t", &p, w, sizeof(w)), -1);
    T_EQ_STR(w, "t: \"servername=bad/name\" specifies an invalid hostname");
    tls_policy_free(&p);
    T_EQ_INT(tls_policy_parse("verify match=", "t", &p, w, sizeof(w)), -1);
    tls_policy_free(&p);
    /* attributes with TLS off are ignored (with a warning), not an error */
    T_EQ_INT(tls_policy_parse("none match=x", "t", &p, w, sizeof(w)), 0);
    T_EQ_INT(p.level, TLS_LEV_NONE);
    tls_policy_free(&p);
}

/* A fake policy table that records the keys it was asked. */
static char asked[1024];
static const char *const *table;

static int fake_lookup(void *ctx, const char *key, const char **val, char *err, size_t errlen)
{
    snprintf(asked + strlen(asked), sizeof(asked) - strlen(asked), "%s%s", *asked ? " " : "", key);
    if (strcmp(key, "error.example") == 0) {
	snprintf(err, errlen, "socketmap timeout");
	return -1;
    }
    for (int i = 0; table[i]; i += 2) {
	if (strcmp(table[i], key) == 0) {
	    *val = table[i + 1];
	    return 1;
	}
    }
    return 0;
}

static TLS_CLIENT_PARAMS defaults(void)
{
    TLS_CLIENT_PARAMS p = {
	.level = "may", .CAfile = "", .CApath = "", .cert_file = "", .key_file = "",
	.protocols = ">=TLSv1", .mand_protocols = ">=TLSv1.2", .ciphers = "medium",
	.mand_ciphers = "medium", .exclude = "", .mand_exclude = "",
	.high_clist = "aNULL:-aNULL:HIGH:@STRENGTH",
	.medium_clist = "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH", .null_clist = "eNULL:!aNULL",
	.fpt_digest = "sha256", .verify_match = "hostname", .secure_match = "nexthop, dot-nexthop",
	.fpt_match = "", .servername = "", .scache_db = "", .scache_timeout = 3600,
    };
    return p;
}

static void test_policy_resolve(void)
{
    static const char *const tbl[] = {
	"[mail.example.net]:587", "encrypt protocols=>=TLSv1.3",
	".example.com", "secure match=.example.com",
	"bad.example", "secure bogus=1",
	"dane.example", "dane",
	NULL,
    };
    TLS_CLIENT_PARAMS pp = defaults();
    TLS_POLICY p;

    table = tbl;
    /* an explicit next hop: one exact lookup */
    asked[0] = 0;
    tls_policy_resolve(&pp, fake_lookup, NULL, "texthash:/t", "[mail.example.net]:587", &p);
    T_EQ_STR(asked, "[mail.example.net]:587");
    T_EQ_INT(p.level, TLS_LEV_ENCRYPT);
    T_EQ_STR(p.protocols, ">=TLSv1.3");
    T_EQ_STR(p.grade, "medium");
    T_EQ_STR(p.exclude, "eNULL");
    tls_policy_free(&p);

    /* a domain: itself, then each parent as .parent */
    asked[0] = 0;
    tls_policy_resolve(&pp, fake_lookup, NULL, "t", "mx.sub.Example.com", &p);
    T_EQ_STR(asked, "mx.sub.example.com .sub.example.com .example.com");
    T_EQ_INT(p.level, TLS_LEV_SECURE);
    T_EQ_INT(p.nmatch, 1);
    T_EQ_STR(p.match[0], ".example.com");
    T_EQ_STR(p.protocols, ">=TLSv1.2");	/* mandatory protocols */
    T_EQ_STR(p.exclude, "aNULL");
    tls_policy_free(&p);

    /* the parent rule does not make example.com match ".example.com" */
    asked[0] = 0;
    tls_policy_resolve(&pp, fake_lookup, NULL, "t", "example.com", &p);
    T_EQ_STR(asked, "example.com .com");
    T_EQ_INT(p.level, TLS_LEV_MAY);	/* the global level */
    T_EQ_STR(p.protocols, ">=TLSv1");
    tls_policy_free(&p);

    /* secure from main.cf gets smtp_tls_secure_cert_match */
    pp.level = "secure";
    tls_policy_resolve(&pp, NULL, NULL, "t", "example.org", &p);
    T_EQ_INT(p.nmatch, 2);
    T_EQ_STR(p.match[0], "nexthop");
    T_EQ_STR(p.match[1], "dot-nexthop");
    tls_policy_free(&p);
    pp.level = "verify";
    tls_policy_resolve(&pp, NULL, NULL, "t", "example.org", &p);
    T_EQ_INT(p.nmatch, 1);
    T_EQ_STR(p.match[0], "hostname");
    tls_policy_free(&p);

    /* a bad entry, a lookup error, dane, fingerprint without fingerprints */
    tls_policy_resolve(&pp, fake_lookup, NULL, "t", "bad.example", &p);
    T_EQ_INT(p.level, TLS_LEV_INVALID);
    T_EQ_STR(p.dsn, "4.7.5");
    T_EQ_STR(p.why, "client TLS configuration problem");
    tls_policy_free(&p);
    tls_policy_resolve(&pp, fake_lookup, NULL, "t", "error.example", &p);
    T_EQ_INT(p.level, TLS_LEV_INVALID);
    T_EQ_STR(p.dsn, "4.7.5");		/* Postfix 3.7: MARK_INVALID */
    T_EQ_STR(p.why, "client TLS configuration problem");
    tls_policy_free(&p);
    {
	char  **k = tls_policy_keys("Mail.Example.COM");

	T_EQ_STR(k[0], "mail.example.com");
	T_EQ_STR(k[1], ".example.com");
	T_EQ_STR(k[2], ".com");
	T_CHECK(k[3] == NULL);
	str_list_free(k);
	k = tls_policy_keys("[Mail.Example.com]:587");
	T_EQ_STR(k[0], "[Mail.Example.com]:587");
	T_CHECK(k[1] == NULL);
	str_list_free(k);
    }
    tls_policy_resolve(&pp, fake_lookup, NULL, "t", "dane.example", &p);
    T_EQ_INT(p.level, TLS_LEV_DANE);
    T_EQ_INT(p.dane_pending, 1);		/* tls_policy_dane() finishes it */
    T_CHECK(p.protocols == NULL);
    tls_policy_free(&p);
    pp.level = "fingerprint";
    tls_policy_resolve(&pp, NULL, NULL, "t", "example.org", &p);
    T_EQ_INT(p.level, TLS_LEV_INVALID);
    tls_policy_free(&p);
    pp.fpt_match = "AA:BB, CC:DD";
    tls_policy_resolve(&pp, NULL, NULL, "t", "example.org", &p);
    T_EQ_INT(p.level, TLS_LEV_FPRINT);
    T_EQ_INT(p.nmatch, 2);
    tls_policy_free(&p);
    pp.level = "bogus";
    tls_policy_resolve(&pp, NULL, NULL, "t", "example.org", &p);
    T_EQ_INT(p.level, TLS_LEV_INVALID);
    tls_policy_free(&p);
}

/* Postfix's dane_init() and tls_dane_resolve() decisions, for one server. */
static int dane_case(const char *level, const TLS_DANE_DNS *in, TLS_POLICY *p)
{
    TLS_CLIENT_PARAMS pp = defaults();

    pp.level = level;
    tls_policy_resolve(&pp, NULL, NULL, "t", "example.org", p);
    T_EQ_INT(p->dane_pending, 1);
    return (tls_policy_dane(&pp, "example.org", in, p));
}

static void test_policy_dane(void)
{
    static unsigned char h[32] = {1, 2, 3};
    static unsigned char big[70];
    TLS_TLSA recs[5] = {
	{3, 1, 1, h, 32},			/* DANE-EE */
	{1, 1, 1, h, 32},			/* PKIX-EE: not for SMTP */
	{0, 0, 1, h, 32},			/* PKIX-TA: not for SMTP */
	{2, 0, 255, h, 32},			/* private-use matching type */
	{2, 0, 1, big, 70},			/* DANE-TA, long data */
    };
    size_t  rdlen[5] = {35, 35, 35, 35, 73};
    TLS_DANE_DNS in = {
	.dnssec = 1, .mx = 1, .addr_secure = 1, .host = "mx.example.org", .port = 25,
	.tlsa_status = TLS_TLSA_UNKNOWN,
    };
    TLS_POLICY p;
    char    text[200];

    /* secure MX and address: look the TLSA records up */
    T_EQ_INT(dane_case("dane", &in, &p), 1);
    tls_policy_free(&p);
    in.mx = -1;					/* no MX ([host], or the domain's own address) */
    T_EQ_INT(dane_case("dane-only", &in, &p), 1);
    tls_policy_free(&p);

    /* found and secure: usable records kept, the base domain is the match name */
    in.tlsa_status = TLS_TLSA_FOUND;
    in.tlsa_secure = 1;
    in.tlsa = recs;
    in.tlsa_rdlen = rdlen;
    in.ntlsa = 5;
    T_EQ_INT(dane_case("dane", &in, &p), 0);
    T_EQ_INT(p.level, TLS_LEV_DANE);
    T_EQ_INT(p.dane_pending, 0);
    T_EQ_INT(p.ntlsa, 2);
    T_EQ_INT(p.tlsa[0].usage, 3);
    T_EQ_INT(p.tlsa[1].usage, 2);
    T_EQ_INT(p.tlsa[1].len, 70);
    T_EQ_STR(p.dane_base, "mx.example.org");
    T_EQ_INT(p.nmatch, 1);			/* no MX lookup: the host only */
    T_EQ_STR(p.match[0], "mx.example.org");
    tls_policy_free(&p);
    in.mx = 1;
    in.nexthop = "example.org";
    T_EQ_INT(dane_case("dane", &in, &p), 0);
    T_EQ_INT(p.nmatch, 2);			/* through MX: the domain too (DANE-TA) */
    T_EQ_STR(p.match[0], "mx.example.org");
    T_EQ_STR(p.match[1], "example.org");
    in.mx = -1;
    T_EQ_STR(p.protocols, ">=TLSv1.2");	/* mandatory TLS settings */
    T_EQ_STR(p.exclude, "aNULL");
    tls_tlsa_text(&p.tlsa[1], text, sizeof(text));
    T_EQ_STR(text, "2 0 1 0000000000000000000000000000000000000000000000000000000000000000..."
	     "0000000000000000000000000000000000000000000000000000000000000000");
    tls_tlsa_text(&p.tlsa[0], text, sizeof(text));
    T_CHECK(strncmp(text, "3 1 1 010203000000", 18) == 0);
    tls_policy_free(&p);

    /* records found at a CNAME's target: it is the base domain and the match name */
    in.mx = 1;
    in.tlsa_base = "target.example.net";
    T_EQ_INT(dane_case("dane", &in, &p), 0);
    T_EQ_STR(p.dane_base, "target.example.net");
    T_EQ_INT(p.nmatch, 2);
    T_EQ_STR(p.match[0], "target.example.net");
    T_EQ_STR(p.match[1], "example.org");
    tls_policy_free(&p);
    in.mx = -1;
    in.tlsa_base = NULL;

    /* only PKIX usages (and a truncated record): unusable; dane -> encrypt */
    in.tlsa = recs + 1;
    in.tlsa_rdlen = rdlen + 1;
    in.ntlsa = 3;
    rdlen[2] = 3;
    T_EQ_INT(dane_case("dane", &in, &p), 0);
    T_EQ_INT(p.level, TLS_LEV_ENCRYPT);
    T_EQ_INT(p.ntlsa, 0);
    T_EQ_STR(p.exclude, "eNULL");
    tls_policy_free(&p);
    T_EQ_INT(dane_case("dane-only", &in, &p), 0);
    T_EQ_INT(p.level, TLS_LEV_INVALID);
    T_EQ_STR(p.why, "TLSA records unusable");
    tls_policy_free(&p);

    /* records without the AD bit count for nothing: no TLSA records */
    in.tlsa = recs;
    in.tlsa_rdlen = rdlen;
    in.ntlsa = 5;
    in.tlsa_secure = 0;
    T_EQ_INT(dane_case("dane", &in, &p), 0);
    T_EQ_INT(p.level, TLS_LEV_MAY);
    T_EQ_INT(p.ntlsa, 0);
    T_EQ_STR(p.protocols, ">=TLSv1");	/* opportunistic TLS settings */
    tls_policy_free(&p);
    T_EQ_INT(dane_case("dane-only", &in, &p), 0);
    T_EQ_INT(p.level, TLS_LEV_INVALID);
    T_EQ_STR(p.dsn, "4.7.5");
    T_EQ_STR(p.why, "no TLSA records found");
    tls_policy_free(&p);

    /* a lookup error defers, even at "dane" */
    in.tlsa_status = TLS_TLSA_ERROR;
    in.tlsa_why = "Name service error for name=_25._tcp.mx.example.org type=TLSA: Host not found, try again";
    T_EQ_INT(dane_case("dane", &in, &p), 0);
    T_EQ_INT(p.level, TLS_LEV_INVALID);
    T_EQ_STR(p.why, "TLSA lookup error for mx.example.org:25");
    tls_policy_free(&p);

    /*
     * An insecure MX RRset with smtp_tls_dane_insecure_mx_policy = dane:
     * the MX host's TLSA records still count, but only for "Trusted";
     * encrypt: TLS required, not verified; dane-only: never.
     */
    in.mx = 0;
    in.insecure_mx_policy = TLS_LEV_DANE;
    in.tlsa_status = TLS_TLSA_FOUND;
    in.tlsa_secure = 1;
    T_EQ_INT(dane_case("dane", &in, &p), 0);
    T_EQ_INT(p.level, TLS_LEV_DANE);
    T_EQ_INT(p.dane_half, 1);
    T_EQ_INT(p.ntlsa, 2);
    tls_policy_free(&p);
    in.insecure_mx_policy = TLS_LEV_ENCRYPT;
    T_EQ_INT(dane_case("dane", &in, &p), 0);
    T_EQ_INT(p.level, TLS_LEV_ENCRYPT);
    tls_policy_free(&p);
    T_EQ_INT(dane_case("dane-only", &in, &p), 0);
    T_EQ_STR(p.why, "non DNSSEC destination");
    tls_policy_free(&p);
    in.mx = 1;
    T_EQ_INT(dane_case("dane", &in, &p), 0);
    T_EQ_INT(p.dane_half, 0);			/* a secure MX: "Verified" */
    tls_policy_free(&p);
    in.insecure_mx_policy = TLS_LEV_MAY;

    /* an insecure MX RRset (policy may) or address: no TLSA lookup at all */
    in.tlsa_status = TLS_TLSA_UNKNOWN;
    in.mx = 0;
    T_EQ_INT(dane_case("dane", &in, &p), 0);
    T_EQ_INT(p.level, TLS_LEV_MAY);
    tls_policy_free(&p);
    T_EQ_INT(dane_case("dane-only", &in, &p), 0);
    T_EQ_STR(p.why, "non DNSSEC destination");
    tls_policy_free(&p);
    in.mx = 1;
    in.addr_secure = 0;
    T_EQ_INT(dane_case("dane-only", &in, &p), 0);
    T_EQ_STR(p.why, "no TLSA records found");
    tls_policy_free(&p);

    /*
     * The insecure address was reached through the host's CNAME: first
     * ask whether that CNAME is signed (2); signed: its TLSA records (1);
     * unsigned: none; that lookup failing: deferred, as a TLSA error.
     */
    in.cname_status = TLS_CNAME_UNKNOWN;
    T_EQ_INT(dane_case("dane-only", &in, &p), 2);
    tls_policy_free(&p);
    in.mx = 0;					/* an insecure MX ends it first */
    T_EQ_INT(dane_case("dane-only", &in, &p), 0);
    T_EQ_STR(p.why, "non DNSSEC destination");
    tls_policy_free(&p);
    in.mx = 1;
    in.cname_status = TLS_CNAME_SECURE;
    T_EQ_INT(dane_case("dane-only", &in, &p), 1);
    tls_policy_free(&p);
    in.cname_status = TLS_CNAME_INSECURE;
    T_EQ_INT(dane_case("dane-only", &in, &p), 0);
    T_EQ_STR(p.why, "no TLSA records found");
    tls_policy_free(&p);
    in.cname_status = TLS_CNAME_ERROR;
    in.cname_why = "no longer a CNAME";
    T_EQ_INT(dane_case("dane", &in, &p), 0);
    T_EQ_INT(p.level, TLS_LEV_INVALID);
    T_EQ_STR(p.dsn, "4.7.5");
    T_EQ_STR(p.why, "TLSA lookup error for mx.example.org:25");
    tls_policy_free(&p);
    in.cname_status = TLS_CNAME_NONE;

    /* DNSSEC lookups off: the administrator's problem */
    in.addr_secure = 1;
    in.dnssec = 0;
    T_EQ_INT(dane_case("dane", &in, &p), 0);
    T_EQ_INT(p.level, TLS_LEV_MAY);
    tls_policy_free(&p);
    T_EQ_INT(dane_case("dane-only", &in, &p), 0);
    T_EQ_INT(p.level, TLS_LEV_INVALID);
    T_EQ_STR(p.why, "client TLS configuration problem");
    tls_policy_free(&p);

    /* not a DANE level: nothing to do */
    {
	TLS_CLIENT_PARAMS pp = defaults();

	tls_policy_resolve(&pp, NULL, NULL, "t", "example.org", &p);
	T_EQ_INT(tls_policy_dane(&pp, "example.org", &in, &p), 0);
	T_EQ_INT(p.level, TLS_LEV_MAY);
	tls_policy_free(&p);
    }
}

static void test_protocols(void)
{
    int     lo, hi;
    long    holes;

    T_EQ_INT(tls_protocol_range(">=TLSv1", &lo, &hi, &holes), 0);
    T_EQ_INT(lo, TLS1_VERSION);
    T_EQ_INT(hi, TLS1_3_VERSION);
    T_EQ_INT(tls_protocol_range("!SSLv2, !SSLv3", &lo, &hi, &holes), 0);
    T_EQ_INT(lo, TLS1_VERSION);
    T_EQ_INT(tls_protocol_range(">=TLSv1.2", &lo, &hi, &holes), 0);
    T_EQ_INT(lo, TLS1_2_VERSION);
    T_EQ_INT(tls_protocol_range("TLSv1.2:TLSv1.3", &lo, &hi, &holes), 0);
    T_EQ_INT(lo, TLS1_2_VERSION);
    T_EQ_INT(hi, TLS1_3_VERSION);
    T_EQ_INT(tls_protocol_range("<=TLSv1.2", &lo, &hi, &holes), 0);
    T_EQ_INT(hi, TLS1_2_VERSION);
    T_EQ_INT(tls_protocol_range("!SSLv3 !TLSv1.1", &lo, &hi, &holes), 0);
    T_EQ_INT(lo, TLS1_VERSION);
    T_CHECK(holes & SSL_OP_NO_TLSv1_1);
    T_EQ_INT(tls_protocol_range("TLSv9", &lo, &hi, &holes), -1);
    T_EQ_INT(tls_protocol_range(">=TLSv1.3 <=TLSv1.2", &lo, &hi, &holes), -1);
}

static void test_cert_match(void)
{
    X509   *wild = make_cert("ignored.example", "*.example.com,example.com");
    X509   *plain = make_cert("mx.example.net", NULL);	/* CN only */
    X509   *partial = make_cert("x", "f*o.example.org");
    X509   *idn = make_cert("x", "xn--bcher-kva.example,*.xn--mnchen-3ya.example");
    char    peer[256];
    char   *one[] = {(char *) "hostname"};

    /* wildcards cover one label */
    T_EQ_INT(match1(wild, "hostname", "mx.example.com", "example.com"), 1);
    T_EQ_INT(match1(wild, "hostname", "a.b.example.com", "example.com"), 0);
    T_EQ_INT(match1(wild, "hostname", "mx.example.org", "example.org"), 0);
    T_EQ_INT(match1(wild, "nexthop", "mx.example.org", "example.com"), 1);
    T_EQ_INT(match1(wild, "nexthop, dot-nexthop", "h", "sub.example.com"), 1);
    /* a match= list: first hit wins; ".domain" is any subdomain */
    T_EQ_INT(match1(wild, "mail.example.org .example.com", "x", "y"), 1);
    {
	TLS_POLICY p;
	char    w[256];

	memset(&p, 0, sizeof(p));
	T_EQ_INT(tls_policy_parse("secure match=mail.example.org:.example.com", "t", &p, w, sizeof(w)), 0);
	T_EQ_INT(tls_cert_match(wild, p.match, p.nmatch, "x", "y", NULL, 0), 1);
	T_EQ_INT(tls_cert_match(wild, p.match, 1, "x", "y", NULL, 0), 0);
	tls_policy_free(&p);
    }
    T_EQ_INT(match1(wild, ".com", "x", "y"), 1);
    T_EQ_INT(match1(wild, ".", "x", "y"), 0);
    T_EQ_INT(match1(wild, "example.org", "mx.example.com", "y"), 0);
    /* the CN counts only without DNS SANs */
    T_EQ_INT(match1(plain, "hostname", "mx.example.net", "x"), 1);
    T_EQ_INT(match1(wild, "ignored.example", "x", "y"), 0);
    /* no partial-label wildcards (RFC 6125) */
    T_EQ_INT(match1(partial, "foo.example.org", "x", "y"), 0);
    /* IDN: U-labels are converted to A-labels */
    T_EQ_INT(match1(idn, "b\xc3\xbc" "cher.example", "x", "y"), 1);
    T_EQ_INT(match1(idn, "hostname", "mx.m\xc3\xbcnchen.example", "y"), 1);
    T_EQ_INT(match1(idn, "hostname", "mx.muenchen.example", "y"), 0);
    T_EQ_INT(match1(idn, "\xe3\x80\x82" "m\xc3\xbc" "nchen.example", "x", "y"), 1);
    /* the matched name is reported */
    T_EQ_INT(tls_cert_match(wild, one, 1, "MX.example.com", "x", peer, sizeof(peer)), 1);
    T_EQ_STR(peer, "*.example.com");
    X509_free(wild);
    X509_free(plain);
    X509_free(partial);
    X509_free(idn);
}

static void test_fingerprint(void)
{
    X509   *c = make_cert("fp.example", "fp.example");
    char    cfp[200], pfp[200], lower[200];
    char   *list[3];

    T_EQ_INT(tls_fingerprint(c, 0, "sha256", cfp, sizeof(cfp)), 0);
    T_EQ_INT(tls_fingerprint(c, 1, "sha256", pfp, sizeof(pfp)), 0);
    T_EQ_INT(strlen(cfp), 32 * 3 - 1);
    T_CHECK(strcmp(cfp, pfp) != 0);
    T_EQ_INT(tls_fingerprint(c, 0, "nosuchdigest", cfp, sizeof(cfp)), -1);
    tls_fingerprint(c, 0, "sha256", cfp, sizeof(cfp));
    list[0] = (char *) "00:11";
    list[1] = cfp;
    T_EQ_INT(tls_fingerprint_match(c, "sha256", list, 2), 1);
    T_EQ_INT(tls_fingerprint_match(c, "sha256", list, 1), 0);
    /* lower case, no colons; and the public key's fingerprint */
    size_t  o = 0;

    for (const char *s = cfp; *s; s++)
	if (*s != ':')
	    lower[o++] = (char) tolower((unsigned char) *s);
    lower[o] = 0;
    list[0] = lower;
    T_EQ_INT(tls_fingerprint_match(c, "sha256", list, 1), 1);
    list[0] = pfp;
    T_EQ_INT(tls_fingerprint_match(c, "sha256", list, 1), 1);
    /* a prefix is not a match */
    cfp[20] = 0;
    list[0] = cfp;
    T_EQ_INT(tls_fingerprint_match(c, "sha256", list, 1), 0);
    X509_free(c);
}

static void test_client_create(void)
{
    TLS_CLIENT_PARAMS pp = defaults();
    char    err[512];
    TLS_CLIENT *tc;

    pp.CAfile = "/nonexistent/ca.pem";
    T_CHECK((tc = tls_client_create(&pp, err, sizeof(err))) == NULL);
    T_CHECK(strstr(err, "cannot load Certification Authority data") != NULL);
    pp.CAfile = "";
    pp.fpt_digest = "nosuch";
    T_CHECK((tc = tls_client_create(&pp, err, sizeof(err))) == NULL);
    pp.fpt_digest = "sha256";
    T_CHECK((tc = tls_client_create(&pp, err, sizeof(err))) != NULL);
    if (tc) {
	TLS_POLICY p;
	SSL    *ssl;

	memset(&p, 0, sizeof(p));
	p.level = TLS_LEV_SECURE;
	p.protocols = (char *) "TLSv7";
	T_CHECK(tls_client_ssl(tc, &p, "n", "h", "127.0.0.1", 25, err, sizeof(err)) == NULL);
	p.protocols = (char *) ">=TLSv1.2";
	p.grade = (char *) "bogus";
	T_CHECK(tls_client_ssl(tc, &p, "n", "h", "127.0.0.1", 25, err, sizeof(err)) == NULL);
	p.grade = (char *) "high";
	p.servername = (char *) "nexthop";
	ssl = tls_client_ssl(tc, &p, "n.example", "h", "127.0.0.1", 25, err, sizeof(err));
	T_CHECK(ssl != NULL);
	if (ssl) {
	    T_EQ_STR(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name), "n.example");
	    SSL_free(ssl);
	}

	/* DANE: SNI is the TLSA base domain, whatever servername says */
	static unsigned char h[32];
	TLS_TLSA t[2] = {{3, 1, 1, h, 32}, {3, 1, 9, h, 32}};

	p.level = TLS_LEV_DANE;
	p.tlsa = t;
	p.ntlsa = 2;
	p.dane_base = (char *) "mx.dane.example";
	ssl = tls_client_ssl(tc, &p, "n.example", "mx.dane.example", "127.0.0.1", 25, err, sizeof(err));
	T_CHECK(ssl != NULL);
	if (ssl) {
	    T_EQ_STR(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name), "mx.dane.example");
	    SSL_free(ssl);
	}
	/* only records OpenSSL cannot use (matching type 9): still a session, set to fail */
	p.tlsa = t + 1;
	p.ntlsa = 1;
	p.level = TLS_LEV_DANE_ONLY;
	ssl = tls_client_ssl(tc, &p, "n.example", "mx.dane.example", "127.0.0.1", 25, err, sizeof(err));
	T_CHECK(ssl != NULL);
	SSL_free(ssl);
	p.tlsa = NULL;
	p.ntlsa = 0;
	p.dane_base = NULL;
	tls_client_free(tc);
    }
}

int main(void)
{
    char    err[256];

    log_open("/dev/null", "test", "test", err, sizeof(err));
    T_RUN(test_levels);
    T_RUN(test_policy_parse);
    T_RUN(test_policy_resolve);
    T_RUN(test_policy_dane);
    T_RUN(test_protocols);
    T_RUN(test_cert_match);
    T_RUN(test_fingerprint);
    T_RUN(test_client_create);
    EVP_PKEY_free(tkey);
    return t_done();
}
