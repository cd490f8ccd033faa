/*
 * dns_wire - DNS messages on the wire, without I/O: a query builder that
 * can ask for DNSSEC (the AD bit in the header and an EDNS0 OPT record
 * with the DO bit), and a bounds-checked parser of the answers relayq
 * needs (MX, A, AAAA, TLSA) that reports the header's AD bit.
 *
 * Debian 12's c-ares (1.18) neither sets AD/DO nor parses TLSA; relayq
 * trusts the AD bit of its (local, validating) resolver as Postfix does
 * with smtp_dns_support_level = dnssec.  Everything here is pure: the
 * parser reads only [msg, msg + len) and never trusts a count, a length
 * or a compression pointer it has not checked.
 */
#ifndef DNS_WIRE_H_INCLUDED
#define DNS_WIRE_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#define DNS_T_A		1
#define DNS_T_CNAME	5
#define DNS_T_MX	15
#define DNS_T_AAAA	28
#define DNS_T_OPT	41
#define DNS_T_RRSIG	46
#define DNS_T_TLSA	52

#define DNS_RCODE_NOERROR  0
#define DNS_RCODE_SERVFAIL 2
#define DNS_RCODE_NXDOMAIN 3

#define DNS_WIRE_NAME_MAX  256		/* text form, with the NUL */
#define DNS_WIRE_RR_MAX    64		/* records kept per answer */
#define DNS_WIRE_UDP_SIZE  1232		/* EDNS0 payload size we announce */

/*
 * Build a query for name (text form, a trailing dot optional) and type
 * into buf: RD set; with dnssec, AD set and an EDNS0 OPT record with DO.
 * Returns the length, or -1 for a bad name (empty label, label over 63,
 * name over 255 octets on the wire, a backslash or a NUL) or a short buf.
 */
int     dns_wire_query(unsigned char *buf, size_t cap, uint16_t id, const char *name,
		               int type, int dnssec);

/* One record of the requested type, rdata as on the wire. */
typedef struct DNS_WIRE_RR {
    int     type;
    uint32_t ttl;
    size_t  off;			/* rdata offset in the message */
    size_t  len;			/* rdata length */
} DNS_WIRE_RR;

/* What one answer says. */
typedef struct DNS_WIRE_ANSWER {
    int     rcode;			/* header RCODE */
    int     ad;				/* header AD bit */
    int     tc;				/* truncated */
    char    rname[DNS_WIRE_NAME_MAX];	/* qname after the CNAMEs of the answer */
    int     ncname;			/* CNAMEs followed */
    DNS_WIRE_RR rr[DNS_WIRE_RR_MAX];	/* records of qtype owned by rname */
    int     nrr;
} DNS_WIRE_ANSWER;

/*
 * Parse a response to a query for qname/qtype: the header, the question
 * (skipped, after checking it is one well-formed entry), the answer
 * section (CNAME chains followed from qname, RRSIG and other types
 * ignored, records of qtype owned by the end of the chain kept).  Returns
 * 0, or -1 for a malformed message (out is then unspecified).
 */
int     dns_wire_parse(const unsigned char *msg, size_t len, const char *qname, int qtype,
		               DNS_WIRE_ANSWER *out);

/*
 * Expand the (possibly compressed) name at msg[off] into text form
 * ("mx.example.com", "." for the root) and set *next to the offset just
 * after it.  0, or -1 when malformed (out of bounds, a pointer loop, a
 * label type other than 0 and 3, over 255 octets, or a byte that has no
 * place in a host name: only letters, digits, '-' and '_' are kept).
 */
int     dns_wire_name(const unsigned char *msg, size_t len, size_t off, char *out,
		              size_t outlen, size_t *next);

/*
 * Decoders of one record's rdata; 0 or -1 when malformed (rdata shorter
 * than its fields, a name that runs past the rdata or ends before it).
 * dns_wire_mx: a null MX (RFC 7505) has the exchange "."; it is returned
 * as such, whatever the preference, for the caller to act on.
 */
int     dns_wire_mx(const unsigned char *msg, size_t len, const DNS_WIRE_RR *rr, int *pref,
		            char *host, size_t hostlen);
int     dns_wire_tlsa(const unsigned char *msg, const DNS_WIRE_RR *rr, uint8_t *usage,
		              uint8_t *selector, uint8_t *mtype, const unsigned char **data,
		              size_t *dlen);

#endif
