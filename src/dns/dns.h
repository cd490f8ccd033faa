/*
 * dns - MX and address lookups through c-ares on the event loop (never
 * blocking it).  dns_servers (relayq's own) overrides resolv.conf:
 * "127.0.0.1:5353" style list.
 */
#ifndef DNS_H_INCLUDED
#define DNS_H_INCLUDED

#include <event2/event.h>

typedef struct DNS DNS;

#define DNS_OK       0
#define DNS_NOTFOUND 1			/* NXDOMAIN / no data: permanent */
#define DNS_TEMPFAIL 2			/* try again */

typedef struct DNS_MX {
    char    host[256];
    int     pref;
} DNS_MX;

typedef struct DNS_ADDR {
    int     family;			/* AF_INET / AF_INET6 */
    char    addr[64];			/* text form */
} DNS_ADDR;

DNS    *dns_create(struct event_base *base, const char *servers, char *err, size_t errlen);
void    dns_free(DNS *d);

/* cb runs from the event loop; status DNS_*; arrays valid during cb only. */
void    dns_mx(DNS *d, const char *domain,
	               void (*cb) (void *ctx, int status, const DNS_MX *mx, int n), void *ctx);
void    dns_addr(DNS *d, const char *host,
	                 void (*cb) (void *ctx, int status, const DNS_ADDR *a, int n), void *ctx);

#endif
