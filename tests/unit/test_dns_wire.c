/*
 * test_dns_wire - the DNS query builder and the answer parser that DANE
 * rests on: the AD/DO bits, names (compression, loops, forward pointers,
 * bad bytes, lengths), CNAME chains, RRSIG and foreign owners ignored,
 * TLSA and MX rdata, and every truncation of a good answer.
 */
#include <stdint.h>

#include "t.h"
#include "dns/dns_wire.h"

/* A message under construction. */
typedef struct MSG {
    unsigned char b[2048];
    size_t  n;
} MSG;

static void put(MSG *m, const void *p, size_t n)
{
    memcpy(m->b + m->n, p, n);
    m->n += n;
}

static void put8(MSG *m, unsigned v)
{
    m->b[m->n++] = (unsigned char) v;
}

static void put16(MSG *m, unsigned v)
{
    put8(m, v >> 8);
    put8(m, v & 0xff);
}

static void put32(MSG *m, uint32_t v)
{
    put16(m, v >> 16);
    put16(m, v & 0xffff);
}

static void name(MSG *m, const char *s)
{
    while (*s) {
	const char *dot = strchr(s, '.');
	size_t  l = dot ? (size_t) (dot - s) : strlen(s);

	put8(m, (unsigned) l);
	put(m, s, l);
	s += l + (dot ? 1 : 0);
    }
    put8(m, 0);
}

static void ptr(MSG *m, size_t off)
{
    put16(m, 0xC000 | (unsigned) off);
}

/* Header and question; flags3: the fourth header byte (AD, RCODE). */
static void head(MSG *m, unsigned flags3, unsigned an, const char *q, unsigned qtype)
{
    m->n = 0;
    put16(m, 0x4242);
    put8(m, 0x81);				/* QR RD */
    put8(m, 0x80 | flags3);			/* RA ... */
    put16(m, 1);
    put16(m, an);
    put16(m, 0);
    put16(m, 0);
    name(m, q);
    put16(m, qtype);
    put16(m, 1);
}

/* A record's fixed part; the caller appends rdlen bytes. */
static void rr_fixed(MSG *m, unsigned type, unsigned rdlen)
{
    put16(m, type);
    put16(m, 1);
    put32(m, 300);
    put16(m, rdlen);
}

static const unsigned char hash[32] = {
    0x85, 0x50, 0xe2, 0xd1, 0xed, 0xab, 0x3a, 0x78, 0xf0, 0x50, 0xc2, 0xf8, 0xd1, 0x4a, 0x00, 0xbe,
    0x96, 0x84, 0x4c, 0x66, 0x31, 0xf1, 0x4b, 0xc1, 0xb8, 0x1e, 0x68, 0xc9, 0x04, 0x2d, 0x8a, 0x7d,
};

static void tlsa_rr(MSG *m, unsigned u, unsigned s, unsigned mt)
{
    rr_fixed(m, DNS_T_TLSA, 3 + sizeof(hash));
    put8(m, u);
    put8(m, s);
    put8(m, mt);
    put(m, hash, sizeof(hash));
}

static void test_query(void)
{
    unsigned char b[512];
    int     n = dns_wire_query(b, sizeof(b), 0x1234, "_25._tcp.mx.example.", DNS_T_TLSA, 1);
    static const unsigned char qn[] = "\003_25\004_tcp\002mx\007example";

    T_EQ_INT(n, 12 + (int) sizeof(qn) + 4 + 11);
    T_EQ_INT(b[0], 0x12);
    T_EQ_INT(b[1], 0x34);
    T_EQ_INT(b[2], 0x01);			/* RD only */
    T_EQ_INT(b[3], 0x20);			/* AD */
    T_EQ_INT(b[5], 1);				/* QDCOUNT */
    T_EQ_INT(b[11], 1);				/* ARCOUNT */
    T_CHECK(memcmp(b + 12, qn, sizeof(qn)) == 0);	/* with the root label */
    T_EQ_INT(b[12 + sizeof(qn) + 1], DNS_T_TLSA);
    T_EQ_INT(b[12 + sizeof(qn) + 3], 1);	/* IN */
    T_EQ_INT(b[n - 11], 0);			/* OPT owner: root */
    T_EQ_INT(b[n - 9], DNS_T_OPT);
    T_EQ_INT((b[n - 8] << 8) | b[n - 7], DNS_WIRE_UDP_SIZE);
    T_EQ_INT(b[n - 4], 0x80);			/* DO */

    /* without DNSSEC: no AD, no DO, same name with or without the dot */
    n = dns_wire_query(b, sizeof(b), 7, "_25._tcp.mx.example", DNS_T_MX, 0);
    T_EQ_INT(b[3], 0);
    T_EQ_INT(b[n - 4], 0);
    T_CHECK(memcmp(b + 12, qn, sizeof(qn)) == 0);

    /* names that are not names, and a buffer too short */
    T_EQ_INT(dns_wire_query(b, sizeof(b), 1, "", DNS_T_A, 1), -1);
    T_EQ_INT(dns_wire_query(b, sizeof(b), 1, ".", DNS_T_A, 1), -1);
    T_EQ_INT(dns_wire_query(b, sizeof(b), 1, "a..b", DNS_T_A, 1), -1);
    T_EQ_INT(dns_wire_query(b, sizeof(b), 1, ".a", DNS_T_A, 1), -1);
    T_EQ_INT(dns_wire_query(b, sizeof(b), 1, "a..", DNS_T_A, 1), -1);
    T_EQ_INT(dns_wire_query(b, sizeof(b), 1, "a\\.b", DNS_T_A, 1), -1);
    T_EQ_INT(dns_wire_query(b, 20, 1, "mx.example", DNS_T_A, 1), -1);

    char    label[70], longname[300];

    memset(label, 'a', 64);
    label[64] = 0;
    T_EQ_INT(dns_wire_query(b, sizeof(b), 1, label, DNS_T_A, 1), -1);
    label[63] = 0;
    T_CHECK(dns_wire_query(b, sizeof(b), 1, label, DNS_T_A, 1) > 0);
    snprintf(longname, sizeof(longname), "%s.%s.%s.%s", label, label, label, label);
    T_EQ_INT(dns_wire_query(b, sizeof(b), 1, longname, DNS_T_A, 1), -1);	/* 255 octets */
    longname[strlen(longname) - 2] = 0;
    T_CHECK(dns_wire_query(b, sizeof(b), 1, longname, DNS_T_A, 1) > 0);	/* 253 characters */
}

static void test_tlsa_answer(void)
{
    MSG     m;
    DNS_WIRE_ANSWER a;
    uint8_t u, s, t;
    const unsigned char *data;
    size_t  dlen;

    /* two TLSA records (owner: a pointer to the question), an RRSIG, AD */
    head(&m, 0x20, 3, "_25._tcp.mx.example", DNS_T_TLSA);
    ptr(&m, 12);
    tlsa_rr(&m, 3, 1, 1);
    ptr(&m, 12);
    tlsa_rr(&m, 2, 0, 1);
    ptr(&m, 12);
    rr_fixed(&m, DNS_T_RRSIG, 20);
    put16(&m, DNS_T_TLSA);
    for (int i = 0; i < 18; i++)
	put8(&m, i);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "_25._tcp.mx.example", DNS_T_TLSA, &a), 0);
    T_EQ_INT(a.ad, 1);
    T_EQ_INT(a.rcode, 0);
    T_EQ_INT(a.nrr, 2);
    T_EQ_STR(a.rname, "_25._tcp.mx.example");
    T_EQ_INT(dns_wire_tlsa(m.b, &a.rr[0], &u, &s, &t, &data, &dlen), 0);
    T_EQ_INT(u, 3);
    T_EQ_INT(s, 1);
    T_EQ_INT(t, 1);
    T_EQ_INT(dlen, 32);
    T_CHECK(memcmp(data, hash, 32) == 0);
    T_EQ_INT(dns_wire_tlsa(m.b, &a.rr[1], &u, &s, &t, &data, &dlen), 0);
    T_EQ_INT(u, 2);
    T_EQ_INT(a.rr[0].ttl, 300);

    /* the same without AD; the name in another case and with a dot */
    m.b[3] &= (unsigned char) ~0x20;
    T_EQ_INT(dns_wire_parse(m.b, m.n, "_25._TCP.MX.example.", DNS_T_TLSA, &a), 0);
    T_EQ_INT(a.ad, 0);
    T_EQ_INT(a.nrr, 2);

    /* every truncation of the good answer: malformed, never a read beyond */
    for (size_t cut = 0; cut < m.n; cut++) {
	unsigned char *copy = malloc(cut ? cut : 1);

	memcpy(copy, m.b, cut);
	T_EQ_INT(dns_wire_parse(copy, cut, "_25._tcp.mx.example", DNS_T_TLSA, &a), -1);
	free(copy);
    }

    /* a record owned by another name is not an answer */
    head(&m, 0x20, 1, "_25._tcp.mx.example", DNS_T_TLSA);
    name(&m, "_25._tcp.evil.example");
    tlsa_rr(&m, 3, 1, 1);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "_25._tcp.mx.example", DNS_T_TLSA, &a), 0);
    T_EQ_INT(a.nrr, 0);

    /* a short TLSA rdata is kept (the caller warns) but cannot be decoded */
    head(&m, 0x20, 1, "_25._tcp.mx.example", DNS_T_TLSA);
    ptr(&m, 12);
    rr_fixed(&m, DNS_T_TLSA, 2);
    put16(&m, 0x0301);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "_25._tcp.mx.example", DNS_T_TLSA, &a), 0);
    T_EQ_INT(a.nrr, 1);
    T_EQ_INT(dns_wire_tlsa(m.b, &a.rr[0], &u, &s, &t, &data, &dlen), -1);
}

static void test_cname_chain(void)
{
    MSG     m;
    DNS_WIRE_ANSWER a;
    size_t  target;

    /* qname -> alias.example (CNAME after the TLSA in the message) */
    head(&m, 0x20, 2, "_25._tcp.mx.example", DNS_T_TLSA);
    target = m.n;
    name(&m, "_25._tcp.alias.example");
    tlsa_rr(&m, 3, 1, 1);
    ptr(&m, 12);
    rr_fixed(&m, DNS_T_CNAME, 2);
    ptr(&m, target);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "_25._tcp.mx.example", DNS_T_TLSA, &a), 0);
    T_EQ_STR(a.rname, "_25._tcp.alias.example");
    T_EQ_INT(a.ncname, 1);
    T_EQ_INT(a.nrr, 1);

    /* a CNAME loop ends as malformed, not as a hang */
    head(&m, 0, 2, "a.example", DNS_T_A);
    ptr(&m, 12);
    rr_fixed(&m, DNS_T_CNAME, 11);
    target = m.n;
    name(&m, "b.example");
    m.b[target - 1] = 11;			/* rdlen: the name just written */
    ptr(&m, target);
    rr_fixed(&m, DNS_T_CNAME, 2);
    ptr(&m, 12);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "a.example", DNS_T_A, &a), -1);

    /* CNAME rdata longer than its name */
    head(&m, 0, 1, "a.example", DNS_T_A);
    ptr(&m, 12);
    rr_fixed(&m, DNS_T_CNAME, 4);
    ptr(&m, 12);
    put16(&m, 0);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "a.example", DNS_T_A, &a), -1);
}

static void test_names(void)
{
    MSG     m;
    DNS_WIRE_ANSWER a;
    char    out[DNS_WIRE_NAME_MAX];
    size_t  next;

    /* a pointer to itself, and a forward pointer */
    head(&m, 0, 1, "a.example", DNS_T_A);
    ptr(&m, m.n);
    rr_fixed(&m, DNS_T_A, 4);
    put32(&m, 0x7f000001);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "a.example", DNS_T_A, &a), -1);
    head(&m, 0, 1, "a.example", DNS_T_A);
    ptr(&m, m.n + 2);
    rr_fixed(&m, DNS_T_A, 4);
    put32(&m, 0x7f000001);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "a.example", DNS_T_A, &a), -1);

    /* a byte that has no place in a host name, an obsolete label type */
    head(&m, 0, 1, "a.example", DNS_T_A);
    put8(&m, 3);
    put(&m, "a/b", 3);
    put8(&m, 0);
    rr_fixed(&m, DNS_T_A, 4);
    put32(&m, 0x7f000001);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "a.example", DNS_T_A, &a), -1);
    m.n = 0;
    put8(&m, 0x41);
    put8(&m, 0);
    T_EQ_INT(dns_wire_name(m.b, m.n, 0, out, sizeof(out), &next), -1);

    /* the root, a name of 255 octets is too long, an output buffer too short */
    m.n = 0;
    put8(&m, 0);
    T_EQ_INT(dns_wire_name(m.b, m.n, 0, out, sizeof(out), &next), 0);
    T_EQ_STR(out, ".");
    T_EQ_INT(next, 1);
    m.n = 0;
    for (int i = 0; i < 4; i++) {
	put8(&m, 63);
	for (int j = 0; j < 63; j++)
	    put8(&m, 'a');
    }
    put8(&m, 0);
    T_EQ_INT(dns_wire_name(m.b, m.n, 0, out, sizeof(out), &next), -1);
    m.n = 0;
    name(&m, "mx.example");
    T_EQ_INT(dns_wire_name(m.b, m.n, 0, out, 5, &next), -1);
    T_EQ_INT(dns_wire_name(m.b, m.n, 0, out, sizeof(out), &next), 0);
    T_EQ_STR(out, "mx.example");
    T_EQ_INT(next, m.n);

    /* not a response; two questions; a record running past the end */
    head(&m, 0, 0, "a.example", DNS_T_A);
    m.b[2] = 0x01;
    T_EQ_INT(dns_wire_parse(m.b, m.n, "a.example", DNS_T_A, &a), -1);
    head(&m, 0, 0, "a.example", DNS_T_A);
    m.b[5] = 2;
    T_EQ_INT(dns_wire_parse(m.b, m.n, "a.example", DNS_T_A, &a), -1);
    head(&m, 0, 1, "a.example", DNS_T_A);
    ptr(&m, 12);
    rr_fixed(&m, DNS_T_A, 400);
    put32(&m, 0x7f000001);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "a.example", DNS_T_A, &a), -1);

    /* an answer count larger than the message */
    head(&m, 0, 40, "a.example", DNS_T_A);
    ptr(&m, 12);
    rr_fixed(&m, DNS_T_A, 4);
    put32(&m, 0x7f000001);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "a.example", DNS_T_A, &a), -1);
}

static void test_rcodes_and_mx(void)
{
    MSG     m;
    DNS_WIRE_ANSWER a;
    char    host[DNS_WIRE_NAME_MAX];
    int     pref;

    head(&m, 0x20 | DNS_RCODE_NXDOMAIN, 0, "nx.example", DNS_T_MX);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "nx.example", DNS_T_MX, &a), 0);
    T_EQ_INT(a.rcode, DNS_RCODE_NXDOMAIN);
    T_EQ_INT(a.ad, 1);
    T_EQ_INT(a.nrr, 0);
    head(&m, DNS_RCODE_SERVFAIL, 0, "bogus.example", DNS_T_MX);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "bogus.example", DNS_T_MX, &a), 0);
    T_EQ_INT(a.rcode, DNS_RCODE_SERVFAIL);

    /* MX with a compressed exchange name; a truncated flag is reported */
    head(&m, 0x20, 1, "example", DNS_T_MX);
    ptr(&m, 12);
    rr_fixed(&m, DNS_T_MX, 2 + 3 + 2);
    put16(&m, 10);
    put8(&m, 2);
    put(&m, "mx", 2);
    ptr(&m, 12);
    m.b[2] |= 0x02;
    T_EQ_INT(dns_wire_parse(m.b, m.n, "example", DNS_T_MX, &a), 0);
    T_EQ_INT(a.tc, 1);
    T_EQ_INT(a.nrr, 1);
    T_EQ_INT(dns_wire_mx(m.b, m.n, &a.rr[0], &pref, host, sizeof(host)), 0);
    T_EQ_INT(pref, 10);
    T_EQ_STR(host, "mx.example");
    /* rdata length that does not end with the name */
    m.b[m.n - 8] = 8;
    put8(&m, 0);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "example", DNS_T_MX, &a), 0);
    T_EQ_INT(dns_wire_mx(m.b, m.n, &a.rr[0], &pref, host, sizeof(host)), -1);
}

/* One MX record owned by the question's name (a pointer to it) with raw rdata. */
static void mx_raw(MSG *m, const void *rdata, size_t rdlen)
{
    ptr(m, 12);
    rr_fixed(m, DNS_T_MX, (unsigned) rdlen);
    put(m, rdata, rdlen);
}

/*
 * RFC 7505 null MX: the exchange is the root, which the decoder reports
 * as "." (dns.c turns it into DNS_NULLMX), whatever the preference, even
 * through a compression pointer; and the hostile shapes of MX rdata.
 */
static void test_null_mx(void)
{
    MSG     m;
    DNS_WIRE_ANSWER a;
    char    host[DNS_WIRE_NAME_MAX];
    int     pref;
    size_t  good;

    /* 0 . */
    head(&m, 0, 1, "null.example", DNS_T_MX);
    mx_raw(&m, "\0\0\0", 3);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "null.example", DNS_T_MX, &a), 0);
    T_EQ_INT(a.nrr, 1);
    pref = -1;
    T_EQ_INT(dns_wire_mx(m.b, m.n, &a.rr[0], &pref, host, sizeof(host)), 0);
    T_EQ_INT(pref, 0);
    T_EQ_STR(host, ".");

    /* 5 . : a root exchange with a non-zero preference is still the root */
    head(&m, 0, 1, "null.example", DNS_T_MX);
    mx_raw(&m, "\0\5\0", 3);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "null.example", DNS_T_MX, &a), 0);
    T_EQ_INT(dns_wire_mx(m.b, m.n, &a.rr[0], &pref, host, sizeof(host)), 0);
    T_EQ_INT(pref, 5);
    T_EQ_STR(host, ".");

    /* 65535 . as a pointer to the root label ending the question (offset 12 + 13) */
    head(&m, 0, 1, "null.example", DNS_T_MX);
    mx_raw(&m, "\377\377\300\031", 4);
    T_EQ_INT(m.b[12 + 13], 0);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "null.example", DNS_T_MX, &a), 0);
    T_EQ_INT(dns_wire_mx(m.b, m.n, &a.rr[0], &pref, host, sizeof(host)), 0);
    T_EQ_INT(pref, 65535);
    T_EQ_STR(host, ".");

    /* a null MX beside a real one: both decoded, in order */
    head(&m, 0, 2, "mixed.example", DNS_T_MX);
    mx_raw(&m, "\0\12\2mx\7example\0", 14);
    mx_raw(&m, "\0\0\0", 3);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "mixed.example", DNS_T_MX, &a), 0);
    T_EQ_INT(a.nrr, 2);
    T_EQ_INT(dns_wire_mx(m.b, m.n, &a.rr[0], &pref, host, sizeof(host)), 0);
    T_EQ_STR(host, "mx.example");
    T_EQ_INT(pref, 10);
    T_EQ_INT(dns_wire_mx(m.b, m.n, &a.rr[1], &pref, host, sizeof(host)), 0);
    T_EQ_STR(host, ".");

    /* truncated rdata: no exchange at all, half a preference, nothing */
    for (size_t len = 0; len < 3; len++) {
	head(&m, 0, 1, "null.example", DNS_T_MX);
	mx_raw(&m, "\0\0", len);
	T_EQ_INT(dns_wire_parse(m.b, m.n, "null.example", DNS_T_MX, &a), 0);
	T_EQ_INT(a.nrr, 1);
	T_EQ_INT(dns_wire_mx(m.b, m.n, &a.rr[0], &pref, host, sizeof(host)), -1);
    }

    /* the root, then a stray byte inside the rdata */
    head(&m, 0, 1, "null.example", DNS_T_MX);
    mx_raw(&m, "\0\0\0\377", 4);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "null.example", DNS_T_MX, &a), 0);
    T_EQ_INT(dns_wire_mx(m.b, m.n, &a.rr[0], &pref, host, sizeof(host)), -1);

    /* an exchange whose labels run past the rdata (its root lies beyond) */
    head(&m, 0, 1, "null.example", DNS_T_MX);
    mx_raw(&m, "\0\0\2mx", 5);
    put8(&m, 0);
    T_EQ_INT(dns_wire_parse(m.b, m.n, "null.example", DNS_T_MX, &a), 0);
    T_EQ_INT(dns_wire_mx(m.b, m.n, &a.rr[0], &pref, host, sizeof(host)), -1);

    /* the message cut anywhere inside a null MX record: malformed */
    head(&m, 0, 1, "null.example", DNS_T_MX);
    good = m.n;
    mx_raw(&m, "\0\0\0", 3);
    for (size_t cut = good; cut < m.n; cut++)
	T_EQ_INT(dns_wire_parse(m.b, cut, "null.example", DNS_T_MX, &a), -1);
}

int     main(void)
{
    T_RUN(test_query);
    T_RUN(test_tlsa_answer);
    T_RUN(test_cname_chain);
    T_RUN(test_names);
    T_RUN(test_rcodes_and_mx);
    T_RUN(test_null_mx);
    return t_done();
}
