/*
 * fuzz_tlsa - libFuzzer target for what a hostile or broken resolver can
 * answer relayq's DNSSEC queries (TLSA, MX, A): the bytes are a DNS
 * message parsed for each type, every kept record decoded, names expanded
 * at every offset; and the bytes as a name for the query builder.
 * Checks: no crash or sanitizer report; a kept record lies inside the
 * message; the query builder's output is a well-formed query.
 *
 * FUZZ_SOURCES: src/dns/dns_wire.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dns_wire.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct {
	const char *name;
	int     type;
    } q[] = {
	{"_25._tcp.mx.example", DNS_T_TLSA}, {"example", DNS_T_MX}, {"mx.example", DNS_T_A},
    };
    DNS_WIRE_ANSWER a;
    char    out[DNS_WIRE_NAME_MAX];
    size_t  next;

    for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
	if (dns_wire_parse(data, size, q[i].name, q[i].type, &a) < 0)
	    continue;
	for (int r = 0; r < a.nrr; r++) {
	    uint8_t u, s, m;
	    const unsigned char *d;
	    size_t  dl;
	    int     pref;

	    if (a.rr[r].off + a.rr[r].len > size)
		abort();
	    if (dns_wire_tlsa(data, &a.rr[r], &u, &s, &m, &d, &dl) == 0 && d + dl > data + size)
		abort();
	    (void) dns_wire_mx(data, size, &a.rr[r], &pref, out, sizeof(out));
	}
    }
    for (size_t off = 0; off < size && off < 64; off++)
	if (dns_wire_name(data, size, off, out, sizeof(out), &next) == 0
	    && (next > size || strlen(out) > 253))
	    abort();

    /* The bytes as a name to ask for. */
    char   *name = malloc(size + 1);
    unsigned char buf[512];
    int     n;

    memcpy(name, data, size);
    name[size] = 0;
    n = dns_wire_query(buf, sizeof(buf), 1, name, DNS_T_TLSA, 1);
    if (n > 0 && (n > (int) sizeof(buf) || buf[5] != 1 || buf[n - 4] != 0x80))
	abort();
    free(name);
    return 0;
}
