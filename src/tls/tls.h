/*
 * tls - the client side of TLS as Postfix 3.7's smtp(8) does it: security
 * levels, per-destination policy (smtp_tls_policy_maps syntax), one
 * OpenSSL context per configuration, certificate verification and name
 * matching, fingerprints, an in-memory session cache, and the TLS log
 * lines ("Verified TLS connection established to ...").
 *
 * Verification: OpenSSL checks the chain against smtp_tls_CAfile /
 * smtp_tls_CApath (and the system store only with tls_append_default_CA);
 * the handshake always completes, and tls_client_post() then decides, as
 * Postfix does, whether the peer is Trusted (chain ok), Verified (chain ok
 * and a match name from the policy is in the certificate, or a
 * fingerprint matched) or Untrusted.  Name matching is OpenSSL's
 * X509_check_host() with partial wildcards off (RFC 6125); a ".domain"
 * pattern matches any subdomain; U-label (IDN) names are converted to
 * A-labels (libidn2) before matching, as Postfix does.
 *
 * Nothing here does socket I/O: the smtp client owns the connection and
 * hands the SSL object to bufferevent_openssl.
 */
#ifndef TLS_H_INCLUDED
#define TLS_H_INCLUDED

#include <stddef.h>
#include <openssl/ssl.h>

/* Security levels, in Postfix's order (tls_level.c). */
#define TLS_LEV_INVALID		(-2)	/* policy error: defer */
#define TLS_LEV_NOTFOUND	(-1)	/* no policy entry */
#define TLS_LEV_NONE		0
#define TLS_LEV_MAY		1
#define TLS_LEV_ENCRYPT		2
#define TLS_LEV_FPRINT		3
#define TLS_LEV_VERIFY		4
#define TLS_LEV_SECURE		5
#define TLS_LEV_DANE		6	/* opportunistic DANE (RFC 7672) */
#define TLS_LEV_DANE_ONLY	7	/* mandatory DANE */

#define TLS_DANE_BASED(l)	((l) == TLS_LEV_DANE || (l) == TLS_LEV_DANE_ONLY)

#define TLS_REQUIRED(l)		((l) >= TLS_LEV_ENCRYPT)
#define TLS_MUST_MATCH(l)	((l) >= TLS_LEV_FPRINT)

/* "none", "may", ... -> TLS_LEV_*; "" is none; unknown: TLS_LEV_INVALID. */
int     tls_level_lookup(const char *name);
const char *tls_level_name(int level);

/*
 * The client's parameters, as strings straight from the configuration
 * (Postfix names in the comments).  Filled by the caller.
 */
typedef struct TLS_CLIENT_PARAMS {
    const char *level;			/* smtp_tls_security_level */
    const char *CAfile;			/* smtp_tls_CAfile */
    const char *CApath;			/* smtp_tls_CApath */
    int     append_default_CA;		/* tls_append_default_CA */
    const char *cert_file;		/* smtp_tls_cert_file (client cert) */
    const char *key_file;		/* smtp_tls_key_file */
    const char *protocols;		/* smtp_tls_protocols (level may) */
    const char *mand_protocols;		/* smtp_tls_mandatory_protocols */
    const char *ciphers;		/* smtp_tls_ciphers (level may) */
    const char *mand_ciphers;		/* smtp_tls_mandatory_ciphers */
    const char *exclude;		/* smtp_tls_exclude_ciphers */
    const char *mand_exclude;		/* smtp_tls_mandatory_exclude_ciphers */
    const char *high_clist;		/* tls_high_cipherlist */
    const char *medium_clist;		/* tls_medium_cipherlist */
    const char *null_clist;		/* tls_null_cipherlist */
    const char *fpt_digest;		/* smtp_tls_fingerprint_digest */
    const char *verify_match;		/* smtp_tls_verify_cert_match */
    const char *secure_match;		/* smtp_tls_secure_cert_match */
    const char *fpt_match;		/* smtp_tls_fingerprint_cert_match */
    const char *servername;		/* smtp_tls_servername */
    int     loglevel;			/* smtp_tls_loglevel */
    const char *scache_db;		/* smtp_tls_session_cache_database */
    int     scache_timeout;		/* smtp_tls_session_cache_timeout, s */
} TLS_CLIENT_PARAMS;

/* One DNSSEC-validated TLSA record (RFC 6698) that DANE uses. */
typedef struct TLS_TLSA {
    unsigned char usage, selector, mtype;
    unsigned char *data;
    size_t  len;
} TLS_TLSA;

/*
 * The policy for one next hop: the global level and settings, overridden
 * by an smtp_tls_policy_maps entry.  Strings are owned (tls_policy_free).
 */
typedef struct TLS_POLICY {
    int     level;			/* TLS_LEV_*, TLS_LEV_INVALID on error */
    char   *protocols;			/* effective protocol list */
    char   *grade;			/* cipher grade: high medium null ... */
    char   *exclude;			/* exclusions, ":"/","-separated */
    char   *servername;			/* SNI: "", "hostname", "nexthop", a name */
    char  **match;			/* match names, or fingerprints */
    int     nmatch;
    char    why[256];			/* level invalid: Postfix's reason text */
    char    dsn[12];			/* and its status: 4.7.5 or 4.3.0 */
    int     dane_pending;		/* dane/dane-only: tls_policy_dane() finishes it */
    TLS_TLSA *tlsa;			/* dane/dane-only: the usable records */
    int     ntlsa;
    char   *dane_base;			/* their base domain: SNI and the match name */
    int     dane_half;			/* found through an insecure MX: "Trusted", never "Verified" */
    int     site_set;			/* which settings the table entry gave */
} TLS_POLICY;

/*
 * A policy table lookup: exact key (Postfix maps_find).  Returns 1 found
 * (*val valid until the next call), 0 not found, -1 error (err set).
 */
typedef int (*TLS_LOOKUP_FN) (void *ctx, const char *key, const char **val,
			              char *err, size_t errlen);

/*
 * Resolve the policy for a delivery to dest (the next hop as written:
 * "[mail.example.net]:587", "example.com") as Postfix's policy_create():
 * smtp_tls_policy_maps is searched with dest exactly when it is not a
 * plain domain name, else with dest and then each parent as ".parent";
 * an entry replaces the global level, and unset attributes come from the
 * parameters.  lookup may be NULL (no table).  Every problem is logged
 * as a warning (service "smtp") in Postfix's words and gives level
 * TLS_LEV_INVALID with why/dsn set ("client TLS configuration problem").
 * Always fills out; release with tls_policy_free().
 */
void    tls_policy_resolve(const TLS_CLIENT_PARAMS *params, TLS_LOOKUP_FN lookup, void *ctx,
			           const char *table_title, const char *dest,
			           TLS_POLICY *out);
void    tls_policy_free(TLS_POLICY *p);

/*
 * DANE (levels dane and dane-only: out->dane_pending after
 * tls_policy_resolve) as Postfix's dane_init() and tls_dane_resolve(),
 * for one server: what the DNS said about its MX RRset and its address,
 * and the TLSA lookup at _PORT._tcp.HOST.  The caller asks twice: first
 * with tlsa_status TLS_TLSA_UNKNOWN; when the answer is 1, it looks the
 * TLSA records up (DNSSEC) and asks again with the result.  A host whose
 * CNAMEs led to an insecure address (cname_status TLS_CNAME_UNKNOWN): the
 * answer 2 asks for its own CNAME record's security (Postfix's
 * qname_secure()); when signed, its TLSA records count.  Returns 0
 * when the policy is final: dane/dane-only with usable records, or the
 * level Postfix falls back to (may, encrypt), or TLS_LEV_INVALID with
 * why/dsn ("TLSA lookup error for HOST:PORT", "no TLSA records found",
 * ...).  Warnings are Postfix's.
 */
#define TLS_TLSA_UNKNOWN	(-1)	/* not looked up yet */
#define TLS_TLSA_FOUND		0
#define TLS_TLSA_NOTFOUND	1
#define TLS_TLSA_ERROR		2

#define TLS_CNAME_NONE		0	/* not a CNAME, or its address is secure */
#define TLS_CNAME_UNKNOWN	1	/* not looked up yet */
#define TLS_CNAME_SECURE	2	/* the host's CNAME record is signed */
#define TLS_CNAME_INSECURE	3
#define TLS_CNAME_ERROR		4

typedef struct TLS_DANE_DNS {
    int     dnssec;			/* smtp_dns_support_level = dnssec */
    int     insecure_mx_policy;		/* smtp_tls_dane_insecure_mx_policy: may, encrypt, dane */
    int     mx;				/* -1: no MX lookup; 0: MX RRset insecure; 1: secure */
    int     addr_secure;		/* the server's address RRset was secure */
    const char *host;			/* the server's name */
    const char *tlsa_base;		/* the TLSA base domain: host or, found through
					 * secure CNAMEs, their target; NULL: host */
    int     cname_status;		/* TLS_CNAME_*: the host is a CNAME to an
					 * insecure address */
    const char *cname_why;		/* TLS_CNAME_ERROR: why */
    const char *nexthop;		/* with an MX lookup: the domain, also a match name */
    int     port;
    int     tlsa_status;		/* TLS_TLSA_* */
    int     tlsa_secure;		/* the TLSA answer had the AD bit */
    const char *tlsa_why;		/* TLS_TLSA_ERROR: the lookup's error text */
    const TLS_TLSA *tlsa;		/* TLS_TLSA_FOUND: the records as found */
    const size_t *tlsa_rdlen;		/* their rdata lengths (under 3: truncated) */
    int     ntlsa;
} TLS_DANE_DNS;

int     tls_policy_dane(const TLS_CLIENT_PARAMS *params, const char *dest,
			        const TLS_DANE_DNS *dns, TLS_POLICY *pol);

/* "u s m HEX" of a TLSA record, as Postfix logs one (64 octets: head...tail). */
void    tls_tlsa_text(const TLS_TLSA *t, char *out, size_t outlen);

/*
 * The smtp_tls_policy_maps keys tls_policy_resolve() tries for dest, in
 * order (dest exactly, or the lower-cased domain and then each parent as
 * ".parent"): a NULL-terminated list to free with str_list_free().  For
 * callers that look the keys up ahead of time (asynchronously).
 */
char  **tls_policy_keys(const char *dest);

/*
 * Parse one policy table value ("secure match=.example.com
 * protocols=>=TLSv1.2") into p (which must be zeroed).  where names the
 * entry for messages ("hash:/etc/relayq/tls_policy, next-hop destination
 * \"example.com\"").  0 ok; -1 with warn set to Postfix's warning text.
 */
int     tls_policy_parse(const char *value, const char *where, TLS_POLICY *p,
			         char *warn, size_t warnlen);

/*
 * Protocol list ("!SSLv2, !SSLv3", ">=TLSv1.2", "TLSv1.2 TLSv1.3") to the
 * OpenSSL minimum and maximum version and the SSL_OP_NO_* holes.  0 ok,
 * -1 for an unknown name.
 */
int     tls_protocol_range(const char *list, int *min, int *max, long *holes);

/*
 * Certificate name matching for verify/secure.  names: the match list
 * ("hostname", "nexthop", "dot-nexthop", "example.com", ".example.com");
 * host: the server's name; nexthop: the next-hop domain.  Returns 1 and
 * copies the matched certificate name into peername (may be NULL) when
 * one matches, else 0.
 */
int     tls_cert_match(X509 *cert, char *const *names, int nnames, const char *host,
		               const char *nexthop, char *peername, size_t peerlen);

/*
 * Fingerprint of the certificate ("cert") or of its public key ("pkey")
 * with digest (sha256, sha1, md5...), as "AB:CD:...".  0 ok, -1 unknown
 * digest.
 */
int     tls_fingerprint(X509 *cert, int pkey, const char *digest, char *out, size_t outlen);

/* Does one of the fingerprints (colons optional, any case) match cert? */
int     tls_fingerprint_match(X509 *cert, const char *digest, char *const *fprints, int n);

/* ---- the client context and one session -------------------------- */

typedef struct TLS_CLIENT TLS_CLIENT;

/*
 * Build the context: trust store, client certificate, session cache.
 * NULL with err set ("cannot load CAfile /x: ...") on failure.
 */
TLS_CLIENT *tls_client_create(const TLS_CLIENT_PARAMS *params, char *err, size_t errlen);
void    tls_client_free(TLS_CLIENT *tc);
const TLS_CLIENT_PARAMS *tls_client_params(const TLS_CLIENT *tc);

/* The peer as seen after the handshake. */
typedef struct TLS_PEER {
    int     trusted;			/* chain verified */
    int     matched;			/* name or fingerprint matched */
    int     reused;			/* session resumed from the cache */
    char    protocol[16];		/* "TLSv1.3" */
    char    cipher[64];			/* "TLS_AES_256_GCM_SHA384" */
    int     usebits, algbits;
    char    peer_cn[256];		/* subject CN of the certificate */
    char    issuer_cn[256];
} TLS_PEER;

/*
 * A new SSL object for one connection with this policy: protocols,
 * ciphers, SNI, and a cached session to resume.  host is the server's
 * name, nexthop the next-hop domain, namaddrport "host[addr]:port" for
 * log lines.  NULL with err set when the policy's settings are unusable.
 */
SSL    *tls_client_ssl(TLS_CLIENT *tc, const TLS_POLICY *pol, const char *nexthop,
		               const char *host, const char *addr, int port,
		               char *err, size_t errlen);

/*
 * After a completed handshake: verification per the policy's level, the
 * log lines of smtp_tls_loglevel, and peer info.  Returns 1 when the
 * policy is satisfied, 0 when the level requires a match that failed
 * (the caller defers with 4.7.5 "Server certificate not verified").
 */
int     tls_client_post(TLS_CLIENT *tc, SSL *ssl, const TLS_POLICY *pol, TLS_PEER *peer);

/* Session cache statistics (tests): entries held. */
int     tls_scache_count(const TLS_CLIENT *tc);

#endif
