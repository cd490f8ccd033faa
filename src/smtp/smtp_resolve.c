/*
 * smtp_resolve.c: resolution of nexthops into the address list.
 * See smtp.c for the overview and smtp_priv.h for the layout.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "util/util.h"
#include "log/log.h"
#include "dns/dns.h"
#include "smtp/smtp.h"
#include "smtp/smtp_priv.h"

/* ---------------------------------------------------------------------- */
/* Resolution                                                              */
/* ---------------------------------------------------------------------- */

static void addr_push(SMTP_DELIV *d, const char *host, const DNS_ADDR *a, int port)
{
    if (d->naddr == d->caddr) {
	d->caddr = d->caddr ? 2 * d->caddr : 8;
	d->addrs = xrealloc(d->addrs, d->caddr * sizeof(*d->addrs));
    }
    snprintf(d->addrs[d->naddr].host, sizeof(d->addrs[d->naddr].host), "%s", host);
    snprintf(d->addrs[d->naddr].addr, sizeof(d->addrs[d->naddr].addr), "%s", a->addr);
    d->addrs[d->naddr].family = a->family;
    d->addrs[d->naddr].port = port;
    d->addrs[d->naddr].secure = a->secure;
    snprintf(d->addrs[d->naddr].cname, sizeof(d->addrs[d->naddr].cname), "%s",
	     str_casecmp(a->cname, host) == 0 ? "" : a->cname);
    d->addrs[d->naddr].mx_secure = d->mx_secure;
    snprintf(d->addrs[d->naddr].dest, sizeof(d->addrs[d->naddr].dest), "%s",
	     d->resolve && d->iresolve > 0 ? d->resolve[d->iresolve - 1] : host);
    d->naddr++;
}

/* A name service failure, worded as Postfix's dns_strerror() path. */
static void deliv_dns_fail(SMTP_DELIV *d, const char *name, const char *type, int status)
{
    char   *text = xasprintf("Host or domain name not found. Name service error for name=%s type=%s: %s",
			     name, type, status == DNS_TEMPFAIL ? "Host not found, try again" : "Host not found");

    deliv_set_last(d, status == DNS_TEMPFAIL ? "4.4.3" : "5.4.4", text, "none", NULL, NULL);
    free(text);
}

/* All addresses of one nexthop are known: start connecting, or go on resolving. */
static void deliv_batch_done(SMTP_DELIV *d)
{
    if (d->iresolve < d->nresolve) {
	deliv_resolve_next(d);
	return;
    }
    if (!d->fallback_used)
	d->primary_end = d->naddr;
    if (d->cur + 1 < d->naddr) {
	/* Resolution errors of some MX hosts are moot once others resolve. */
	d->cur++;
	sess_connect(d);
	return;
    }

    /*
     * Nothing to connect to.  A hard name service error of the primary
     * bounces; a soft one defers and may still go to the fallback relay.
     */
    if (d->last_dsn[0] == '5' && !d->fallback_used) {
	for (int i = 0; i < d->nrcpt; i++)
	    if (d->rstate[i] == R_PENDING)
		rcpt_final(d, i, SMTP_BOUNCED, d->last_dsn, d->last_reason, "none", NULL, NULL);
	deliv_finish(d);
	return;
    }
    if (!d->fallback_used && d->p->nfallback > 0) {
	d->cur = d->naddr - 1;
	deliv_next_address(d);
	return;
    }
    if (d->last_dsn[0] == '4' && !d->fallback_used) {
	d->res.hop_failed = 1;
	snprintf(d->res.hop_dsn, sizeof(d->res.hop_dsn), "%s", d->last_dsn);
	free(d->res.hop_reason);
	d->res.hop_reason = xstrdup(d->last_reason);
    }
    deliv_finish(d);
}

static int addr_limit_reached(const SMTP_DELIV *d)
{
    return (d->resolve_limit > 0 && d->naddr - d->batch_start >= d->resolve_limit);
}

static void deliv_mx_addr_cb(void *ctx, int status, const DNS_ADDR *a, int n);

/* Resolve the next MX host of the current batch, or end the batch. */
static void deliv_mx_host_next(SMTP_DELIV *d)
{
    if (d->imx >= d->nmx || addr_limit_reached(d)) {
	deliv_batch_done(d);
	return;
    }
    d->dns_busy = 1;
    /*
     * Postfix: the MX hosts' addresses with DNSSEC when the MX RRset was
     * secure, or when smtp_tls_dane_insecure_mx_policy may still use their
     * TLSA records.
     */
    dns_addr_ex(d->s->dns, d->mx[d->imx].host, d->p->dnssec
		&& (d->mx_secure == 1 || d->p->insecure_mx_policy > TLS_LEV_MAY) ? DNS_FLAG_DNSSEC : 0,
		deliv_mx_addr_cb, d);
}

static void deliv_mx_addr_cb(void *ctx, int status, const DNS_ADDR *a, int n)
{
    SMTP_DELIV *d = ctx;
    const char *host = d->mx[d->imx].host;

    d->dns_busy = 0;
    if (status != DNS_OK) {
	deliv_dns_fail(d, host, "A", status);
    } else {
	for (int i = 0; i < n && !addr_limit_reached(d); i++)
	    addr_push(d, host, &a[i], d->mx_port);
    }
    d->imx++;
    deliv_mx_host_next(d);
}

/* Equal preferences in random order (Postfix: dns_rr_shuffle per preference). */
static void mx_shuffle(SMTP *s, DNS_MX *mx, int n)
{
    for (int lo = 0; lo < n;) {
	int     hi = lo + 1;

	while (hi < n && mx[hi].pref == mx[lo].pref)
	    hi++;
	for (int i = hi - 1; i > lo; i--) {
	    int     j = lo + (int) (smtp_rand(s) % (uint64_t) (i - lo + 1));
	    DNS_MX t = mx[i];

	    mx[i] = mx[j];
	    mx[j] = t;
	}
	lo = hi;
    }
}

static void deliv_host_addr_cb(void *ctx, int status, const DNS_ADDR *a, int n);

/* A lookup for the next hop being resolved has answered: its host name, and its port. */
static int deliv_dns_answered(SMTP_DELIV *d, char *host, size_t hostlen)
{
    int     port, want_mx;

    d->dns_busy = 0;
    smtp_nexthop_parse(d->resolve[d->iresolve - 1], host, hostlen, &port, &want_mx);
    return (port);
}

static void deliv_mx_cb(void *ctx, int status, const DNS_MX *mx, int n)
{
    SMTP_DELIV *d = ctx;
    char    host[256];

    deliv_dns_answered(d, host, sizeof(host));
    if (status == DNS_OK) {
	free(d->mx);
	d->mx = xmalloc(n * sizeof(*mx));
	memcpy(d->mx, mx, n * sizeof(*mx));
	d->nmx = n;
	d->imx = 0;
	d->mx_secure = d->p->dnssec ? mx[0].secure : 0;
	mx_shuffle(d->s, d->mx, n);
	deliv_mx_host_next(d);
    } else if (status == DNS_NOTFOUND) {
	/* No MX: the domain's own addresses. */
	d->dns_busy = 1;
	d->mx_secure = -1;
	dns_addr_ex(d->s->dns, host, d->p->dnssec ? DNS_FLAG_DNSSEC : 0, deliv_host_addr_cb, d);
    } else if (status == DNS_NULLMX) {
	/*
	 * RFC 7505: the domain accepts no mail.  Postfix's smtp_domain_addr()
	 * words and codes it so, and looks up no address.
	 */
	char   *text = xasprintf("Domain %s does not accept mail (nullMX)", host);

	deliv_set_last(d, "5.1.0", text, "none", NULL, NULL);
	free(text);
	deliv_batch_done(d);
    } else {
	deliv_dns_fail(d, host, "MX", status);
	deliv_batch_done(d);
    }
}

static void deliv_host_addr_cb(void *ctx, int status, const DNS_ADDR *a, int n)
{
    SMTP_DELIV *d = ctx;
    char    host[256];
    int     port = deliv_dns_answered(d, host, sizeof(host));

    if (status != DNS_OK) {
	deliv_dns_fail(d, host, "A", status);
    } else {
	for (int i = 0; i < n && !addr_limit_reached(d); i++)
	    addr_push(d, host, &a[i], port);
    }
    deliv_batch_done(d);
}

/* Resolve d->resolve[d->iresolve] into addresses. */
void deliv_resolve_next(SMTP_DELIV *d)
{
    const char *name = d->resolve[d->iresolve++];
    char    host[256];
    int     port, want_mx;
    unsigned char bin[16];

    d->batch_start = d->naddr;
    d->mx_secure = -1;
    if (smtp_nexthop_parse(name, host, sizeof(host), &port, &want_mx) < 0) {
	char   *text = xasprintf("malformed next hop \"%s\"", name);

	log_warn("smtp", "%s", text);
	deliv_set_last(d, "4.3.5", text, "none", NULL, NULL);
	free(text);
	deliv_batch_done(d);
	return;
    }

    /* Address literals need no lookup. */
    if (inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1) {
	DNS_ADDR a;

	a.family = strchr(host, ':') ? AF_INET6 : AF_INET;
	a.secure = 0;
	a.cname[0] = 0;
	snprintf(a.addr, sizeof(a.addr), "%.63s", host);
	addr_push(d, host, &a, port);
	deliv_batch_done(d);
	return;
    }
    if (d->s->dns == NULL) {
	deliv_dns_fail(d, host, want_mx ? "MX" : "A", DNS_TEMPFAIL);
	deliv_batch_done(d);
	return;
    }
    d->mx_port = port;
    d->dns_busy = 1;
    if (want_mx)
	dns_mx_ex(d->s->dns, host, d->p->dnssec ? DNS_FLAG_DNSSEC : 0, deliv_mx_cb, d);
    else
	dns_addr_ex(d->s->dns, host, d->p->dnssec ? DNS_FLAG_DNSSEC : 0, deliv_host_addr_cb, d);
}

