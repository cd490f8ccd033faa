/*
 * test_submission - the pure parts of submission support: PROXY protocol
 * headers (v1, v2, hostile input: every truncation and random mutations
 * of valid headers, bounded), restriction lists with SMTP AUTH and the
 * sender-login checks, and the base64 check before anything reaches
 * Dovecot.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "util/util.h"
#include "smtpd/smtpd_proto.h"
#include "smtpd/smtpd_proxy.h"
#include "smtpd/smtpd_restrict.h"
#include "sasl/dovecot.h"

static void test_proxy_v1(void)
{
    static const struct {
	const char *in;
	int     rc;				/* >0: length expected */
	const char *client;
	int     cport;
	const char *why;
    } cases[] = {
	{"PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n", 44, "192.0.2.1", 56324, 0},
	{"PROXY TCP6 ::1 ::1 40000 587\r\nEHLO x\r\n", 30, "::1", 40000, 0},
	{"PROXY TCP6 ::ffff:192.0.2.7 ::1 1 2\r\n", 37, "192.0.2.7", 1, 0},
	{"PROXY TCP4 192.0.2.1 198.51.100.2 56324", SMTPD_PROXY_MORE, 0, 0, 0},
	{"PROX", SMTPD_PROXY_MORE, 0, 0, 0},
	{"PROXY UNKNOWN\r\n", SMTPD_PROXY_BAD, 0, 0, "bad or missing protocol type"},
	{"PROXY TCP4 ::1 ::1 1 2\r\n", SMTPD_PROXY_BAD, 0, 0, "bad or missing client address"},
	{"PROXY TCP6 192.0.2.1 ::1 1 2\r\n", SMTPD_PROXY_BAD, 0, 0, "bad or missing client address"},
	{"PROXY TCP4 192.0.2.1 x 1 2\r\n", SMTPD_PROXY_BAD, 0, 0, "bad or missing server address"},
	{"PROXY TCP4 192.0.2.1 192.0.2.2 65536 2\r\n", SMTPD_PROXY_BAD, 0, 0, "bad or missing client port"},
	{"PROXY TCP4 192.0.2.1 192.0.2.2 01 2\r\n", SMTPD_PROXY_BAD, 0, 0, "bad or missing client port"},
	{"PROXY TCP4 192.0.2.1 192.0.2.2 -1 2\r\n", SMTPD_PROXY_BAD, 0, 0, "bad or missing client port"},
	{"PROXY TCP4 192.0.2.1 192.0.2.2 1 2 3\r\n", SMTPD_PROXY_BAD, 0, 0, "bad or missing server port"},
	{"PROXY TCP4 192.0.2.1 192.0.2.2 1\r\n", SMTPD_PROXY_BAD, 0, 0, "bad or missing server port"},
	{"PROXY TCP4  192.0.2.1 192.0.2.2 1 2\r\n", SMTPD_PROXY_BAD, 0, 0, "bad or missing client address"},
	{"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n", SMTPD_PROXY_BAD, 0, 0, "missing protocol header terminator"},
	{"PROXY tcp4 192.0.2.1 192.0.2.2 1 2\r\n", SMTPD_PROXY_BAD, 0, 0, "bad or missing protocol type"},
	{"EHLO client\r\n", SMTPD_PROXY_BAD, 0, 0, "unrecognized protocol header"},
	{"PROXYTCP4\r\n", SMTPD_PROXY_BAD, 0, 0, "bad or missing protocol header"},
    };
    SMTPD_PROXY px;
    const char *why;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
	int     rc = smtpd_proxy_parse((const unsigned char *) cases[i].in, strlen(cases[i].in), &px, &why);

	if (rc != cases[i].rc) {
	    T_FAILF("\"%s\": rc %d, expected %d (%s)", cases[i].in, rc, cases[i].rc, why);
	    continue;
	}
	if (cases[i].client && (strcmp(px.client_addr, cases[i].client) != 0 || px.client_port != cases[i].cport))
	    T_FAILF("\"%s\": client %s:%d", cases[i].in, px.client_addr, px.client_port);
	if (cases[i].why && strcmp(why, cases[i].why) != 0)
	    T_FAILF("\"%s\": why \"%s\"", cases[i].in, why);
    }
    /* A NUL inside an address (strlen would stop there; the parser must not). */
    {
	static const char nul[] = "PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n";

	T_EQ_INT(smtpd_proxy_parse((const unsigned char *) nul, sizeof(nul) - 1, &px, &why), SMTPD_PROXY_BAD);
	T_EQ_STR(why, "bad or missing client address");
    }
    /* 107 bytes without a newline: too long, never "more". */
    {
	char    big[200];

	memset(big, '1', sizeof(big));
	memcpy(big, "PROXY TCP4 ", 11);
	T_EQ_INT(smtpd_proxy_parse((unsigned char *) big, sizeof(big), &px, &why), SMTPD_PROXY_BAD);
	T_EQ_INT(smtpd_proxy_parse((unsigned char *) big, 106, &px, &why), SMTPD_PROXY_MORE);
	T_EQ_INT(smtpd_proxy_parse((unsigned char *) big, 107, &px, &why), SMTPD_PROXY_BAD);
    }
}

static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static size_t v2(unsigned char *out, int cmd, int fam, const unsigned char *addr, size_t alen)
{
    memcpy(out, sig, 12);
    out[12] = (unsigned char) (0x20 | cmd);
    out[13] = (unsigned char) fam;
    out[14] = (unsigned char) (alen >> 8);
    out[15] = (unsigned char) alen;
    memcpy(out + 16, addr, alen);
    return (16 + alen);
}

static void test_proxy_v2(void)
{
    unsigned char h[2048];
    unsigned char a4[12] = {192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0, 25};
    unsigned char a6[36 + 8];
    SMTPD_PROXY px;
    const char *why;
    size_t  n;

    n = v2(h, 1, 0x11, a4, sizeof(a4));
    T_EQ_INT(smtpd_proxy_parse(h, n, &px, &why), 28);
    T_EQ_STR(px.client_addr, "192.0.2.1");
    T_EQ_INT(px.client_port, 56324);
    T_EQ_STR(px.server_addr, "198.51.100.2");
    T_EQ_INT(px.server_port, 25);
    for (size_t k = 0; k < n; k++)			/* every truncation waits */
	T_EQ_INT(smtpd_proxy_parse(h, k, &px, &why), SMTPD_PROXY_MORE);

    memset(a6, 0, sizeof(a6));
    a6[15] = 1;					/* ::1 */
    a6[31] = 1;
    a6[32] = 0x9c;
    a6[33] = 0x40;
    a6[35] = 25;
    memset(a6 + 36, 0xAA, 8);			/* a TLV we skip */
    n = v2(h, 1, 0x21, a6, sizeof(a6));
    T_EQ_INT(smtpd_proxy_parse(h, n, &px, &why), 16 + 44);
    T_EQ_STR(px.client_addr, "::1");
    T_EQ_INT(px.client_port, 40000);

    n = v2(h, 0, 0x00, a4, 0);			/* LOCAL: a health check */
    T_EQ_INT(smtpd_proxy_parse(h, n, &px, &why), 16);
    T_CHECK(px.local);

    n = v2(h, 1, 0x11, a4, 8);
    T_EQ_INT(smtpd_proxy_parse(h, n, &px, &why), SMTPD_PROXY_BAD);
    T_EQ_STR(why, "short address field");
    n = v2(h, 1, 0x12, a4, 12);			/* UDP */
    T_EQ_INT(smtpd_proxy_parse(h, n, &px, &why), SMTPD_PROXY_BAD);
    T_EQ_STR(why, "unsupported network protocol");
    n = v2(h, 2, 0x11, a4, 12);
    T_EQ_INT(smtpd_proxy_parse(h, n, &px, &why), SMTPD_PROXY_BAD);
    T_EQ_STR(why, "bad command in proxy header");
    n = v2(h, 1, 0x11, a4, 12);
    h[12] = 0x11;				/* version 1 in a v2 header */
    T_EQ_INT(smtpd_proxy_parse(h, n, &px, &why), SMTPD_PROXY_BAD);
    T_EQ_STR(why, "unrecognized protocol version");
    n = v2(h, 1, 0x11, a4, 12);
    h[14] = 0xff;				/* 65k of "addresses" */
    T_EQ_INT(smtpd_proxy_parse(h, n, &px, &why), SMTPD_PROXY_BAD);
    T_EQ_STR(why, "protocol header too long");
    n = v2(h, 1, 0x11, a4, 12);
    h[5] = 'X';
    T_EQ_INT(smtpd_proxy_parse(h, n, &px, &why), SMTPD_PROXY_BAD);
    T_EQ_STR(why, "unrecognized protocol header");
}

/*
 * Hostile input: random mutations of valid v1 and v2 headers and random
 * bytes.  The result must be consistent: a length within the input, or
 * MORE only for a short input, and printable addresses.  Bounded: 200000
 * inputs with a fixed seed (repeatable).
 */
static void test_proxy_fuzz(void)
{
    unsigned char base[2][64], in[256];
    size_t  blen[2];
    unsigned char a4[12] = {10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2};
    unsigned seed = 12345;
    SMTPD_PROXY px;
    const char *why;
    int     bad = 0;

    memcpy(base[0], "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n", 44);
    blen[0] = 44;
    blen[1] = v2(base[1], 1, 0x11, a4, 12);
    for (int it = 0; it < 200000 && bad < 5; it++) {
	size_t  n;
	int     rc;

	seed = seed * 1103515245 + 12345;
	if (it % 10 == 9) {
	    n = (seed >> 8) % sizeof(in);
	    for (size_t k = 0; k < n; k++) {
		seed = seed * 1103515245 + 12345;
		in[k] = (unsigned char) (seed >> 16);
	    }
	} else {
	    int     b = it & 1;
	    int     flips = 1 + (int) ((seed >> 12) % 4);

	    n = blen[b];
	    memcpy(in, base[b], n);
	    for (int f = 0; f < flips; f++) {
		seed = seed * 1103515245 + 12345;
		in[(seed >> 8) % n] = (unsigned char) (seed >> 20);
	    }
	    seed = seed * 1103515245 + 12345;
	    if ((seed >> 10) % 3 == 0)
		n = (seed >> 14) % (n + 1);	/* truncated too */
	}
	rc = smtpd_proxy_parse(in, n, &px, &why);
	if (rc > (int) n || (rc == SMTPD_PROXY_MORE && n >= SMTPD_PROXY_V2_MAX)
	    || (rc < 0 && (why == 0 || *why == 0))) {
	    T_FAILF("iteration %d: rc %d for %zu bytes", it, rc, n);
	    bad++;
	}
	if (rc > 0 && !px.local) {
	    for (const char *cp = px.client_addr; *cp; cp++)
		if (!(*cp == ':' || *cp == '.' || (*cp >= '0' && *cp <= '9') || (*cp >= 'a' && *cp <= 'f'))) {
		    T_FAILF("iteration %d: address \"%s\"", it, px.client_addr);
		    bad++;
		    break;
		}
	    if (px.client_port < 0 || px.client_port > 65535)
		bad++;
	}
    }
}

static char *owners(void *ctx, const char *sender)
{
    if (strcmp(sender, "bob@example.test") == 0)
	return (xstrdup("bob, Robert"));
    if (strcmp(sender, "shared@example.test") == 0)
	return (xstrdup("alice bob"));
    return (0);
}

static int restrict1(const char *list, int stage, const char *user, const char *sender,
		             char *reply)
{
    char  **l = str_split_list(list, 0);
    SMTPD_RCTX c;
    int     rc;

    memset(&c, 0, sizeof(c));
    c.stage = stage;
    c.sasl_user = user;
    c.namaddr = "unknown[192.0.2.9]";
    c.helo = "client.test";
    c.sender = sender;
    c.rcpt = "rcpt@dest.test";
    c.owners = owners;
    *reply = 0;
    rc = smtpd_restrict(l, &c, reply, 512);
    str_list_free(l);
    return (rc);
}

static void test_restrict(void)
{
    char    r[512];

    T_EQ_INT(restrict1("", SMTPD_STAGE_CLIENT, 0, "", r), 0);
    T_EQ_INT(restrict1("permit_sasl_authenticated, reject", SMTPD_STAGE_RCPT, "bob", "x@y", r), 1);
    T_EQ_INT(restrict1("permit_sasl_authenticated, reject", SMTPD_STAGE_RCPT, 0, "x@y", r), -1);
    T_EQ_STR(r, "554 5.7.1 <rcpt@dest.test>: Recipient address rejected: Access denied");
    T_EQ_INT(restrict1("permit_mynetworks, reject", SMTPD_STAGE_CLIENT, 0, "", r), -1);
    T_EQ_STR(r, "554 5.7.1 <unknown[192.0.2.9]>: Client host rejected: Access denied");
    T_EQ_INT(restrict1("defer", SMTPD_STAGE_HELO, 0, "", r), -1);
    T_EQ_STR(r, "450 4.7.1 <client.test>: Helo command rejected: Access denied");
    T_EQ_INT(restrict1("reject", SMTPD_STAGE_SENDER, 0, "a@b.test", r), -1);
    T_EQ_STR(r, "554 5.7.1 <a@b.test>: Sender address rejected: Access denied");
    T_EQ_INT(restrict1("permit", SMTPD_STAGE_SENDER, 0, "a@b.test", r), 1);
    T_EQ_INT(restrict1("frobnicate", SMTPD_STAGE_SENDER, 0, "a@b.test", r), -1);
    T_EQ_STR(r, "451 4.3.5 Server configuration error");
    /* A relay refusal says so by its code (the rejects_relay counter), not only its text. */
    T_EQ_INT(restrict1("permit_mynetworks, reject_unauth_destination", SMTPD_STAGE_RCPT, 0, "a@b.test", r),
	     SMTPD_RELAY_DENIED);
    T_EQ_STR(r, "554 5.7.1 <rcpt@dest.test>: Relay access denied");
    T_EQ_INT(restrict1("defer_unauth_destination", SMTPD_STAGE_RCPT, 0, "a@b.test", r), SMTPD_RELAY_DENIED);
    T_EQ_STR(r, "454 4.7.1 <rcpt@dest.test>: Relay access denied");
    T_EQ_INT(restrict1("reject_unauth_destination", SMTPD_STAGE_SENDER, 0, "a@b.test", r), 0);

    /* reject_sender_login_mismatch */
    T_EQ_INT(restrict1("reject_sender_login_mismatch", SMTPD_STAGE_SENDER, "bob", "bob@example.test", r), 0);
    T_EQ_INT(restrict1("reject_sender_login_mismatch", SMTPD_STAGE_SENDER, "robert", "bob@example.test", r), 0);
    T_EQ_INT(restrict1("reject_sender_login_mismatch", SMTPD_STAGE_SENDER, "alice", "bob@example.test", r), -1);
    T_EQ_STR(r, "553 5.7.1 <bob@example.test>: Sender address rejected: not owned by user alice");
    T_EQ_INT(restrict1("reject_sender_login_mismatch", SMTPD_STAGE_SENDER, "alice", "nobody@example.test", r), -1);
    T_EQ_STR(r, "553 5.7.1 <nobody@example.test>: Sender address rejected: not owned by user alice");
    T_EQ_INT(restrict1("reject_sender_login_mismatch", SMTPD_STAGE_SENDER, 0, "bob@example.test", r), -1);
    T_EQ_STR(r, "553 5.7.1 <bob@example.test>: Sender address rejected: not logged in");
    T_EQ_INT(restrict1("reject_sender_login_mismatch", SMTPD_STAGE_SENDER, 0, "nobody@example.test", r), 0);
    T_EQ_INT(restrict1("reject_sender_login_mismatch", SMTPD_STAGE_SENDER, "alice", "", r), 0);
    /* the authenticated / unauthenticated / known variants */
    T_EQ_INT(restrict1("reject_authenticated_sender_login_mismatch", SMTPD_STAGE_SENDER, 0, "bob@example.test", r), 0);
    T_EQ_INT(restrict1("reject_authenticated_sender_login_mismatch", SMTPD_STAGE_SENDER, "alice", "bob@example.test", r), -1);
    T_EQ_INT(restrict1("reject_unauthenticated_sender_login_mismatch", SMTPD_STAGE_SENDER, "alice", "bob@example.test", r), 0);
    T_EQ_INT(restrict1("reject_unauthenticated_sender_login_mismatch", SMTPD_STAGE_SENDER, 0, "bob@example.test", r), -1);
    T_EQ_INT(restrict1("reject_known_sender_login_mismatch", SMTPD_STAGE_SENDER, "alice", "nobody@example.test", r), 0);
    T_EQ_INT(restrict1("reject_known_sender_login_mismatch", SMTPD_STAGE_SENDER, "alice", "bob@example.test", r), -1);
    T_EQ_INT(restrict1("reject_sender_login_mismatch", SMTPD_STAGE_SENDER, "bob", "shared@example.test", r), 0);
    T_CHECK(smtpd_restrict_unknown(0) == 0);
}

static void test_base64(void)
{
    T_CHECK(dovecot_valid_base64("AGJvYgBzZWNyZXQ="));
    T_CHECK(dovecot_valid_base64("="));
    T_CHECK(!dovecot_valid_base64("AGJv YgBz"));
    T_CHECK(!dovecot_valid_base64("a\tb"));
    T_CHECK(!dovecot_valid_base64("\xc3\xa9"));
}

int     main(void)
{
    T_RUN(test_proxy_v1);
    T_RUN(test_proxy_v2);
    T_RUN(test_proxy_fuzz);
    T_RUN(test_restrict);
    T_RUN(test_base64);
    return (t_done());
}
