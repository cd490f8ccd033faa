/*
 * fuzz_smtpd_cmd - libFuzzer target for the smtpd command side: line
 * framing over arbitrary chunks, command splitting, MAIL/RCPT path and
 * parameter parsing, xtext, relay checks.  Nothing may crash, leak or read
 * out of bounds, and framing must never consume more than it was given.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "smtpd/smtpd_proto.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    SMTPD_LINER lr = {64, 0};
    size_t  pos = 0;
    char   *nets[] = {"127.0.0.0/8", "[::1]/128", 0};
    char   *domains[] = {"relay.test", 0};
    char   *restr[] = {"permit_mynetworks", "defer_unauth_destination", 0};

    while (pos < size) {
	/* The first byte of each round picks a chunk size: packet boundaries vary. */
	size_t  chunk = 1 + data[pos] % 97;
	size_t  linelen, used;
	int     crlf, rc;

	if (chunk > size - pos)
	    chunk = size - pos;
	rc = smtpd_line_get(&lr, (const char *) data + pos, chunk, &linelen, &used, &crlf);
	if (used > chunk)
	    abort();
	if (rc == SMTPD_LINE_OK) {
	    char   *line = xstrndup((const char *) data + pos, linelen);
	    char   *verb, *arg, *addr;
	    const char *params;
	    char    reply[512];

	    if (linelen > lr.limit)
		abort();
	    smtpd_cmd_split(line, &verb, &arg);
	    if (smtpd_parse_path(arg, "FROM:", &addr, &params) == SMTPD_PATH_OK) {
		SMTPD_MAILP mp;

		if (smtpd_mail_params(params, 1000, &mp, reply, sizeof(reply)) == 0)
		    smtpd_mailp_free(&mp);
		free(addr);
	    }
	    if (smtpd_parse_path(arg, "TO:", &addr, &params) == SMTPD_PATH_OK) {
		SMTPD_RCPTP rp;

		if (smtpd_rcpt_params(params, &rp, reply, sizeof(reply)) == 0)
		    smtpd_rcptp_free(&rp);
		(void) smtpd_relay_check(restr, 0, addr, domains, reply, sizeof(reply));
		free(addr);
	    }
	    (void) smtpd_net_match(arg, nets);
	    (void) smtpd_domain_match(arg, domains);
	    free(line);
	}
	if (used == 0)
	    used = chunk;			/* the daemon would wait for more */
	pos += used;
    }
    return (0);
}
