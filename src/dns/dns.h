/*
 * dns - MX and address lookups through c-ares on the event loop (never
 * blocking it).  dns_servers (relayq's own) overrides resolv.conf:
 * "127.0.0.1:5353" style list.
 */
#ifndef DNS_H_INCLUDED
#define DNS_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

typedef struct DNS DNS;

#define DNS_OK       0
#define DNS_NOTFOUND 1			/* NXDOMAIN / no data: permanent */
#define DNS_TEMPFAIL 2			/* try again */
#define DNS_NULLMX   3			/* MX only: a null MX, RFC 7505 (permanent) */

/* Lookup flags. */
#define DNS_FLAG_DNSSEC 1		/* ask with AD/DO, report the AD bit */

typedef struct DNS_MX {
    char    host[256];
    int     pref;
    int     secure;			/* DNS_FLAG_DNSSEC: the RRset was authenticated */
} DNS_MX;

typedef struct DNS_ADDR {
    int     family;			/* AF_INET / AF_INET6 */
    char    addr[64];			/* text form */
    int     secure;			/* DNS_FLAG_DNSSEC: its RRset was authenticated */
    char    cname[256];			/* DNS_FLAG_DNSSEC: the name after the answer's
					 * CNAMEs, when there were any; else "" */
} DNS_ADDR;

/* One TLSA record (RFC 6698); data is NULL when the rdata is under 3 octets. */
typedef struct DNS_TLSA {
    uint8_t usage, selector, mtype;
    const unsigned char *data;
    size_t  dlen;			/* data length (rdata length - 3) */
    size_t  rdlen;			/* the whole rdata's length */
} DNS_TLSA;

DNS    *dns_create(struct event_base *base, const char *servers, char *err, size_t errlen);
void    dns_free(DNS *d);

/*
 * cb runs from the event loop; status DNS_*; arrays valid during cb only.
 * dns_mx: an MX RRset with a record whose exchange is the root (".") is a
 * null MX, whatever its preference and the other records (as Postfix):
 * DNS_NULLMX, no records.  A malformed MX answer is DNS_TEMPFAIL; with
 * DNS_FLAG_DNSSEC (our own parser) a malformed record is skipped, and
 * DNS_TEMPFAIL comes only when no good record is left (Postfix: DNS_RETRY).
 */
void    dns_mx(DNS *d, const char *domain,
	               void (*cb) (void *ctx, int status, const DNS_MX *mx, int n), void *ctx);
void    dns_addr(DNS *d, const char *host,
	                 void (*cb) (void *ctx, int status, const DNS_ADDR *a, int n), void *ctx);

/*
 * The same with flags: DNS_FLAG_DNSSEC asks the resolver (relayq trusts
 * its AD bit, as Postfix: run a local validating resolver) and fills the
 * secure fields.  Without it, the answers are those of dns_mx/dns_addr.
 */
void    dns_mx_ex(DNS *d, const char *domain, int flags,
	              void (*cb) (void *ctx, int status, const DNS_MX *mx, int n), void *ctx);
void    dns_addr_ex(DNS *d, const char *host, int flags,
	              void (*cb) (void *ctx, int status, const DNS_ADDR *a, int n), void *ctx);

/*
 * TLSA records of name ("_25._tcp.mx.example.com"), always asked with
 * DNSSEC; secure: the answer had the AD bit.  DNS_NOTFOUND for NXDOMAIN
 * and no data; DNS_TEMPFAIL for SERVFAIL, timeouts, a malformed answer.
 */
void    dns_tlsa(DNS *d, const char *name,
	                 void (*cb) (void *ctx, int status, int secure, const DNS_TLSA *t, int n),
		         void *ctx);

/*
 * The CNAME record of name, always asked with DNSSEC (Postfix's
 * qname_secure(): is a host's own CNAME signed?).  DNS_OK when name owns
 * one, secure: the answer had the AD bit; DNS_NOTFOUND when it owns none.
 */
void    dns_cname(DNS *d, const char *name,
		          void (*cb) (void *ctx, int status, int secure), void *ctx);

#endif
