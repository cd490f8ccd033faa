/*
 * dns_wire - build DNS queries and parse answers (see dns_wire.h).
 *
 * The parser walks the message once per section with an offset that is
 * checked against len before every read.  Compression pointers must point
 * backwards (strictly before the name that uses them), which also bounds
 * a chain of pointers; the expanded name is limited to 255 octets.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "dns/dns_wire.h"

#define HDR_LEN 12

static unsigned get16(const unsigned char *p)
{
    return ((unsigned) p[0] << 8 | p[1]);
}

static uint32_t get32(const unsigned char *p)
{
    return ((uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3]);
}

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char) (v >> 8);
    p[1] = (unsigned char) v;
}

int     dns_wire_query(unsigned char *buf, size_t cap, uint16_t id, const char *name,
		               int type, int dnssec)
{
    size_t  pos = HDR_LEN, nlen = strlen(name);
    const char *s = name, *dot;

    if (nlen > 0 && name[nlen - 1] == '.')
	nlen--;
    if (nlen == 0 || nlen > 253 || cap < HDR_LEN + nlen + 2 + 4 + 11)
	return (-1);
    memset(buf, 0, HDR_LEN);
    put16(buf, id);
    buf[2] = 0x01;				/* RD */
    buf[3] = dnssec ? 0x20 : 0;			/* AD: we understand it */
    put16(buf + 4, 1);				/* QDCOUNT */
    put16(buf + 10, 1);				/* ARCOUNT: the OPT record */
    while (s < name + nlen) {
	size_t  llen;

	dot = memchr(s, '.', (size_t) (name + nlen - s));
	llen = dot ? (size_t) (dot - s) : (size_t) (name + nlen - s);
	if (llen == 0 || llen > 63 || memchr(s, '\\', llen) != NULL)
	    return (-1);
	buf[pos++] = (unsigned char) llen;
	memcpy(buf + pos, s, llen);
	pos += llen;
	s += llen + (dot ? 1 : 0);
	if (dot && s == name + nlen)
	    return (-1);			/* "a..": empty label */
    }
    buf[pos++] = 0;
    put16(buf + pos, (unsigned) type);
    put16(buf + pos + 2, 1);			/* IN */
    pos += 4;

    /* EDNS0 (RFC 6891): root owner, OPT, payload size, DO in the flags. */
    buf[pos++] = 0;
    put16(buf + pos, DNS_T_OPT);
    put16(buf + pos + 2, DNS_WIRE_UDP_SIZE);
    buf[pos + 4] = 0;				/* extended RCODE */
    buf[pos + 5] = 0;				/* version */
    buf[pos + 6] = dnssec ? 0x80 : 0;		/* DO */
    buf[pos + 7] = 0;
    put16(buf + pos + 8, 0);			/* RDLEN */
    pos += 10;
    return ((int) pos);
}

int     dns_wire_name(const unsigned char *msg, size_t len, size_t off, char *out,
		              size_t outlen, size_t *next)
{
    size_t  pos = off, o = 0, wire = 1, floor = off;
    int     jumped = 0;

    if (outlen < 2)
	return (-1);
    for (;;) {
	unsigned l;

	if (pos >= len)
	    return (-1);
	l = msg[pos];
	if ((l & 0xC0) == 0xC0) {
	    size_t  ptr;

	    if (pos + 1 >= len)
		return (-1);
	    ptr = (size_t) (l & 0x3F) << 8 | msg[pos + 1];
	    /* Backwards only: no loops, and a bounded number of jumps. */
	    if (ptr >= floor)
		return (-1);
	    if (!jumped)
		*next = pos + 2;
	    jumped = 1;
	    floor = ptr;
	    pos = ptr;
	    continue;
	}
	if (l & 0xC0)
	    return (-1);			/* 0x40, 0x80: obsolete label types */
	if (l == 0) {
	    if (!jumped)
		*next = pos + 1;
	    break;
	}
	if (pos + 1 + l > len || (wire += l + 1) > 255)
	    return (-1);
	if (o + l + 2 > outlen)
	    return (-1);
	if (o > 0)
	    out[o++] = '.';
	for (unsigned i = 0; i < l; i++) {
	    unsigned char c = msg[pos + 1 + i];

	    if (!isalnum(c) && c != '-' && c != '_')
		return (-1);
	    out[o++] = (char) c;
	}
	pos += 1 + l;
    }
    if (o == 0)
	out[o++] = '.';
    out[o] = 0;
    return (0);
}

/* Compare two text names, ignoring case and one trailing dot. */
static int same_name(const char *a, const char *b)
{
    size_t  la = strlen(a), lb = strlen(b);

    if (la > 1 && a[la - 1] == '.')
	la--;
    if (lb > 1 && b[lb - 1] == '.')
	lb--;
    return (la == lb && strncasecmp(a, b, la) == 0);
}

/* Skip one name without expanding it. */
static int skip_name(const unsigned char *msg, size_t len, size_t *pos)
{
    char    tmp[DNS_WIRE_NAME_MAX];

    return (dns_wire_name(msg, len, *pos, tmp, sizeof(tmp), pos));
}

int     dns_wire_parse(const unsigned char *msg, size_t len, const char *qname, int qtype,
		               DNS_WIRE_ANSWER *out)
{
    unsigned qd, an;
    size_t  pos = HDR_LEN, ans;
    char    owner[DNS_WIRE_NAME_MAX];
    int     changed;

    memset(out, 0, sizeof(*out));
    if (len < HDR_LEN || !(msg[2] & 0x80))	/* QR: a response */
	return (-1);
    out->tc = (msg[2] & 0x02) != 0;
    out->ad = (msg[3] & 0x20) != 0;
    out->rcode = msg[3] & 0x0F;
    qd = get16(msg + 4);
    an = get16(msg + 6);
    if (qd != 1)
	return (-1);
    if (skip_name(msg, len, &pos) < 0 || pos + 4 > len)
	return (-1);
    pos += 4;
    ans = pos;
    if (strlen(qname) >= sizeof(out->rname))
	return (-1);
    snprintf(out->rname, sizeof(out->rname), "%s", qname);

    /*
     * First pass: check every record's framing and follow CNAMEs from
     * qname, in any order, at most 8 of them.
     */
    do {
	changed = 0;
	pos = ans;
	for (unsigned i = 0; i < an; i++) {
	    unsigned type, rdlen;
	    char    target[DNS_WIRE_NAME_MAX];
	    size_t  tnext;

	    if (dns_wire_name(msg, len, pos, owner, sizeof(owner), &pos) < 0 || pos + 10 > len)
		return (-1);
	    type = get16(msg + pos);
	    rdlen = get16(msg + pos + 8);
	    pos += 10;
	    if (pos + rdlen > len)
		return (-1);
	    if (type == DNS_T_CNAME && qtype != DNS_T_CNAME && same_name(owner, out->rname)) {
		if (dns_wire_name(msg, len, pos, target, sizeof(target), &tnext) < 0
		    || tnext != pos + rdlen)
		    return (-1);
		if (++out->ncname > 8)
		    return (-1);
		snprintf(out->rname, sizeof(out->rname), "%s", target);
		changed = 1;
	    }
	    pos += rdlen;
	}
    } while (changed);

    /* Second pass: the records of qtype that the end of the chain owns. */
    pos = ans;
    for (unsigned i = 0; i < an; i++) {
	unsigned type, rdlen;

	if (dns_wire_name(msg, len, pos, owner, sizeof(owner), &pos) < 0)
	    return (-1);
	type = get16(msg + pos);
	rdlen = get16(msg + pos + 8);
	if (type == (unsigned) qtype && get16(msg + pos + 2) == 1 && same_name(owner, out->rname)
	    && out->nrr < DNS_WIRE_RR_MAX) {
	    DNS_WIRE_RR *rr = &out->rr[out->nrr++];

	    rr->type = (int) type;
	    rr->ttl = get32(msg + pos + 4);
	    rr->off = pos + 10;
	    rr->len = rdlen;
	}
	pos += 10 + rdlen;
    }
    return (0);
}

int     dns_wire_mx(const unsigned char *msg, size_t len, const DNS_WIRE_RR *rr, int *pref,
		            char *host, size_t hostlen)
{
    size_t  next;

    if (rr->len < 3 || rr->off + rr->len > len)
	return (-1);
    *pref = (int) get16(msg + rr->off);
    if (dns_wire_name(msg, len, rr->off + 2, host, hostlen, &next) < 0
	|| next != rr->off + rr->len)
	return (-1);
    return (0);
}

int     dns_wire_tlsa(const unsigned char *msg, const DNS_WIRE_RR *rr, uint8_t *usage,
		              uint8_t *selector, uint8_t *mtype, const unsigned char **data,
		              size_t *dlen)
{
    if (rr->len < 3)
	return (-1);
    *usage = msg[rr->off];
    *selector = msg[rr->off + 1];
    *mtype = msg[rr->off + 2];
    *data = msg + rr->off + 3;
    *dlen = rr->len - 3;
    return (0);
}
