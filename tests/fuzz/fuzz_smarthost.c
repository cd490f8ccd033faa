/*
 * fuzz_smarthost - libFuzzer target for what a hostile next hop or a bad
 * table entry feeds the smarthost client: SASL server challenges (for each
 * mechanism, in sequence, after a start from an EHLO AUTH list cut from
 * the input), the mechanism filter, smtp_tls_policy_maps values and
 * protocol lists.  Checks: no crash or sanitizer report; every step either
 * answers or names an error.
 *
 * FUZZ_SOURCES: src/sasl/sasl_client.c src/tls/tls_policy.c src/log/log.c src/util/util.c -lssl -lcrypto
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "sasl/sasl.h"
#include "tls/tls.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const mechs[] = {"SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"};
    char   *in = xstrndup((const char *) data, size);
    char   *lines[8];
    int     n = 0;

    /* Lines of the input: [0] an AUTH list / policy value, the rest challenges. */
    for (char *s = in, *nl; n < 8 && s; s = nl ? nl + 1 : NULL) {
	nl = strchr(s, '\n');
	if (nl)
	    *nl = 0;
	lines[n++] = s;
    }
    if (n == 0) {
	free(in);
	return 0;
    }
    char   *kept = sasl_client_mech_filter(lines[0], lines[0]);

    free(kept);
    for (int m = 0; m < 5; m++) {
	const char *mech;
	char   *initial = NULL, *resp = NULL, err[256];
	SASL_CLIENT *c = sasl_client_start(mechs[m], 0, "user,=x", "pass\001word", &mech,
					   &initial, err, sizeof(err));

	if (c == NULL)
	    abort();			/* every mechanism is usable without options */
	free(initial);
	for (int i = 1; i < n; i++) {
	    if (sasl_client_step(c, lines[i], &resp, err, sizeof(err)) < 0) {
		if (err[0] == 0)
		    abort();
		break;
	    }
	    free(resp);
	    resp = NULL;
	}
	sasl_client_free(c);
    }

    TLS_POLICY p;
    char    warn[1024];
    int     lo, hi;
    long    holes;

    memset(&p, 0, sizeof(p));
    if (tls_policy_parse(lines[0], "fuzz", &p, warn, sizeof(warn)) < 0 && warn[0] == 0)
	abort();
    tls_policy_free(&p);
    (void) tls_protocol_range(lines[0], &lo, &hi, &holes);
    (void) tls_level_lookup(lines[0]);
    free(in);
    return 0;
}
