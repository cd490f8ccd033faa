/*
 * smtpd_proxy.c - PROXY protocol v1 and v2 headers (see smtpd_proxy.h).
 *
 * v1: "PROXY TCP4|TCP6 client server cport sport\r\n", at most 107 bytes.
 * v2: the 12-byte signature, version/command, family/transport, a 16-bit
 * length, then the addresses and TLVs (TLVs are skipped).  Every field is
 * checked: a bad header closes the connection before any SMTP is spoken.
 */
#include <string.h>
#include <stdio.h>

#include "smtpd/smtpd_proxy.h"

static const unsigned char v2sig[12] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
};

/* A decimal port without sign or leading zeros, 0..65535. */
static int proxy_port(const char *s, size_t n)
{
    long    v = 0;

    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
	return (-1);
    for (size_t i = 0; i < n; i++) {
	if (s[i] < '0' || s[i] > '9')
	    return (-1);
	v = v * 10 + (s[i] - '0');
    }
    return (v > 65535 ? -1 : (int) v);
}

/* An address of the family, normalised (v4-mapped v6 -> v4). */
static int proxy_addr(int family, const char *s, size_t n, char *out)
{
    char    tmp[INET6_ADDRSTRLEN + 1];
    unsigned char bin[16];

    if (n == 0 || n >= sizeof(tmp) || memchr(s, 0, n) != 0)
	return (-1);
    memcpy(tmp, s, n);
    tmp[n] = 0;
    if (inet_pton(family, tmp, bin) != 1)
	return (-1);
    if (family == AF_INET6 && IN6_IS_ADDR_V4MAPPED((struct in6_addr *) bin))
	inet_ntop(AF_INET, bin + 12, out, INET6_ADDRSTRLEN);
    else
	inet_ntop(family, bin, out, INET6_ADDRSTRLEN);
    return (0);
}

static int proxy_v1(const char *buf, size_t len, SMTPD_PROXY *px, const char **why)
{
    const char *end = memchr(buf, '\n', len < SMTPD_PROXY_V1_MAX ? len : SMTPD_PROXY_V1_MAX);
    const char *f[6];
    size_t  fl[6];
    const char *cp;
    int     n = 0, family;

    if (end == 0) {
	if (len < SMTPD_PROXY_V1_MAX && memchr(buf, 0, len) == 0)
	    return (SMTPD_PROXY_MORE);
	*why = "missing protocol header terminator";
	return (SMTPD_PROXY_BAD);
    }
    if (end == buf || end[-1] != '\r') {
	*why = "missing protocol header terminator";
	return (SMTPD_PROXY_BAD);
    }
    /* Exactly six fields separated by single spaces. */
    cp = buf;
    while (cp < end - 1 && n < 6) {
	const char *sp = memchr(cp, ' ', (size_t) (end - 1 - cp));

	f[n] = cp;
	fl[n] = sp ? (size_t) (sp - cp) : (size_t) (end - 1 - cp);
	n++;
	cp = sp ? sp + 1 : end - 1;
    }
    if (n < 1 || fl[0] != 5 || memcmp(f[0], "PROXY", 5) != 0) {
	*why = "bad or missing protocol header";
	return (SMTPD_PROXY_BAD);
    }
    if (n < 2 || fl[1] != 4 || (memcmp(f[1], "TCP4", 4) != 0 && memcmp(f[1], "TCP6", 4) != 0)) {
	*why = "bad or missing protocol type";
	return (SMTPD_PROXY_BAD);
    }
    family = f[1][3] == '4' ? AF_INET : AF_INET6;
    if (n < 3 || proxy_addr(family, f[2], fl[2], px->client_addr) < 0) {
	*why = "bad or missing client address";
	return (SMTPD_PROXY_BAD);
    }
    if (n < 4 || proxy_addr(family, f[3], fl[3], px->server_addr) < 0) {
	*why = "bad or missing server address";
	return (SMTPD_PROXY_BAD);
    }
    if (n < 5 || (px->client_port = proxy_port(f[4], fl[4])) < 0) {
	*why = "bad or missing client port";
	return (SMTPD_PROXY_BAD);
    }
    if (n < 6 || (px->server_port = proxy_port(f[5], fl[5])) < 0 || cp != end - 1) {
	*why = "bad or missing server port";
	return (SMTPD_PROXY_BAD);
    }
    return ((int) (end + 1 - buf));
}

static int proxy_v2(const unsigned char *buf, size_t len, SMTPD_PROXY *px, const char **why)
{
    size_t  alen, total;
    const unsigned char *a = buf + 16;

    if (len < 16)
	return (SMTPD_PROXY_MORE);
    if ((buf[12] & 0xF0) != 0x20) {
	*why = "unrecognized protocol version";
	return (SMTPD_PROXY_BAD);
    }
    alen = ((size_t) buf[14] << 8) | buf[15];
    total = 16 + alen;
    if (total > SMTPD_PROXY_V2_MAX) {
	*why = "protocol header too long";
	return (SMTPD_PROXY_BAD);
    }
    if (len < total)
	return (SMTPD_PROXY_MORE);
    switch (buf[12] & 0x0F) {
    case 0x00:					/* LOCAL */
	px->local = 1;
	return ((int) total);
    case 0x01:					/* PROXY */
	break;
    default:
	*why = "bad command in proxy header";
	return (SMTPD_PROXY_BAD);
    }
    switch (buf[13]) {
    case 0x11:					/* TCP over IPv4 */
	if (alen < 12) {
	    *why = "short address field";
	    return (SMTPD_PROXY_BAD);
	}
	inet_ntop(AF_INET, a, px->client_addr, sizeof(px->client_addr));
	inet_ntop(AF_INET, a + 4, px->server_addr, sizeof(px->server_addr));
	px->client_port = (a[8] << 8) | a[9];
	px->server_port = (a[10] << 8) | a[11];
	break;
    case 0x21:					/* TCP over IPv6 */
	if (alen < 36) {
	    *why = "short address field";
	    return (SMTPD_PROXY_BAD);
	}
	if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *) a))
	    inet_ntop(AF_INET, a + 12, px->client_addr, sizeof(px->client_addr));
	else
	    inet_ntop(AF_INET6, a, px->client_addr, sizeof(px->client_addr));
	if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *) (a + 16)))
	    inet_ntop(AF_INET, a + 28, px->server_addr, sizeof(px->server_addr));
	else
	    inet_ntop(AF_INET6, a + 16, px->server_addr, sizeof(px->server_addr));
	px->client_port = (a[32] << 8) | a[33];
	px->server_port = (a[34] << 8) | a[35];
	break;
    default:
	*why = "unsupported network protocol";
	return (SMTPD_PROXY_BAD);
    }
    return ((int) total);
}

int     smtpd_proxy_parse(const unsigned char *buf, size_t len, SMTPD_PROXY *px,
			          const char **why)
{
    memset(px, 0, sizeof(*px));
    *why = "";
    if (len == 0)
	return (SMTPD_PROXY_MORE);
    if (buf[0] == v2sig[0]) {
	size_t  n = len < sizeof(v2sig) ? len : sizeof(v2sig);

	if (memcmp(buf, v2sig, n) != 0) {
	    *why = "unrecognized protocol header";
	    return (SMTPD_PROXY_BAD);
	}
	if (len < sizeof(v2sig))
	    return (SMTPD_PROXY_MORE);
	return (proxy_v2(buf, len, px, why));
    }
    if (buf[0] == 'P') {
	size_t  n = len < 6 ? len : 6;

	if (memcmp(buf, "PROXY ", n) != 0) {
	    *why = "bad or missing protocol header";
	    return (SMTPD_PROXY_BAD);
	}
	return (proxy_v1((const char *) buf, len, px, why));
    }
    *why = "unrecognized protocol header";
    return (SMTPD_PROXY_BAD);
}
