/*
 * smtpd_proxy - the PROXY protocol header that HAProxy puts before the
 * SMTP stream (smtpd_upstream_proxy_protocol = haproxy), versions 1 (text)
 * and 2 (binary).  Pure: bytes in, addresses out; no I/O.
 */
#ifndef SMTPD_PROXY_H_INCLUDED
#define SMTPD_PROXY_H_INCLUDED

#include <stddef.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#define SMTPD_PROXY_V1_MAX	107	/* longest v1 line, CRLF included */
#define SMTPD_PROXY_V2_MAX	(16 + 1024)	/* header + addresses + TLVs we accept */

typedef struct SMTPD_PROXY {
    int     local;			/* v2 LOCAL (health check): use the socket's addresses */
    char    client_addr[INET6_ADDRSTRLEN];
    int     client_port;
    char    server_addr[INET6_ADDRSTRLEN];
    int     server_port;
} SMTPD_PROXY;

#define SMTPD_PROXY_MORE	0	/* a valid beginning: wait for more bytes */
#define SMTPD_PROXY_BAD		(-1)	/* why says what (Postfix's words) */

/*
 * Parse the header at the start of buf.  Returns its length (> 0) and
 * fills *px, SMTPD_PROXY_MORE, or SMTPD_PROXY_BAD.  v1 "UNKNOWN" is
 * refused as Postfix does (it would sidestep address-based access control).
 * IPv4-mapped IPv6 addresses come out as IPv4.
 */
int     smtpd_proxy_parse(const unsigned char *buf, size_t len, SMTPD_PROXY *px,
			          const char **why);

#endif
