/*
 * dns - MX and address lookups through c-ares, driven by libevent.
 *
 * c-ares tells us which sockets it wants watched (ARES_OPT_SOCK_STATE_CB);
 * each gets one persistent libevent event.  One timer follows
 * ares_timeout() so retransmissions and timeouts happen without any
 * blocking call.  Results are copied and handed to the caller from a
 * zero-delay timer, so a callback never runs inside dns_mx()/dns_addr()
 * even when c-ares answers at once (bad name, cache).
 *
 * Status mapping: NXDOMAIN and "no data" are DNS_NOTFOUND (permanent);
 * SERVFAIL, REFUSED, timeouts and the rest are DNS_TEMPFAIL.  An MX RRset
 * with a root exchange anywhere in it is DNS_NULLMX (RFC 7505; Postfix's
 * dns_get_answer() also turns one such record into a null MX for the whole
 * RRset), and no record of it is handed out: the root is no host to look up.
 *
 * DNSSEC (DNS_FLAG_DNSSEC, and every TLSA lookup): c-ares 1.18 can neither
 * set the AD/DO bits nor parse TLSA, so the query is built by dns_wire.c,
 * sent with ares_send() (c-ares still does the retries, the server list
 * and the TCP retry of a truncated answer), and the raw answer parsed by
 * dns_wire.c, which reports the AD bit.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <ares.h>
#include <arpa/nameser.h>
#include <event2/event.h>

#include "util/util.h"
#include "dns/dns.h"
#include "dns/dns_wire.h"

typedef struct DNS_SOCK {
    ares_socket_t fd;
    struct event *ev;
    short   what;
    struct DNS_SOCK *next;
} DNS_SOCK;

typedef struct DNS_REQ DNS_REQ;

struct DNS {
    struct event_base *base;
    ares_channel channel;
    struct event *timer;
    DNS_SOCK *socks;
    DNS_REQ *reqs;			/* outstanding requests */
    int     freeing;
};

#define DNS_KIND_MX   1
#define DNS_KIND_ADDR 2
#define DNS_KIND_TLSA 3
#define DNS_KIND_CNAME 4

struct DNS_REQ {
    DNS    *dns;
    int     kind;
    int     pending;			/* ares queries not yet answered */
    int     status[2];			/* per query (A, AAAA) */
    void    (*mx_cb) (void *, int, const DNS_MX *, int);
    void    (*addr_cb) (void *, int, const DNS_ADDR *, int);
    void    (*tlsa_cb) (void *, int, int, const DNS_TLSA *, int);
    void    (*cname_cb) (void *, int, int);
    void   *ctx;
    char   *name;			/* the name asked (DNSSEC queries) */
    int     secure;			/* TLSA, CNAME: the answer had AD */
    int     nullmx;			/* MX: a record with the root as exchange */
    int     nbad;			/* MX: records skipped as malformed */
    DNS_MX *mx;
    DNS_ADDR *addr;
    DNS_TLSA *tlsa;
    unsigned char *tlsa_data;		/* the records' data, one block */
    int     n;
    int     cap;
    struct event *deliver;		/* zero timer that runs the callback */
    DNS_REQ *prev, *next;
};

static void dns_timer_update(DNS *d);

static void dns_sock_cb(evutil_socket_t fd, short what, void *arg)
{
    DNS    *d = arg;

    ares_process_fd(d->channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
		    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    dns_timer_update(d);
}

static void dns_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    DNS    *d = arg;

    ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    dns_timer_update(d);
}

/* Re-arm the timer for c-ares' next retransmission or timeout. */
static void dns_timer_update(DNS *d)
{
    struct timeval max = {5, 0}, tv, *tvp;

    if (d->freeing || d->timer == NULL)
	return;
    if (d->reqs == NULL) {
	evtimer_del(d->timer);
	return;
    }
    tvp = ares_timeout(d->channel, &max, &tv);
    evtimer_add(d->timer, tvp);
}

/* c-ares: watch (or stop watching) a socket. */
static void dns_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    DNS    *d = data;
    DNS_SOCK **pp, *s;
    short   what = (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);

    for (pp = &d->socks; (s = *pp) != NULL; pp = &s->next)
	if (s->fd == fd)
	    break;
    if (what == 0) {
	if (s) {
	    event_free(s->ev);
	    *pp = s->next;
	    free(s);
	}
	return;
    }
    if (s == NULL) {
	s = xcalloc(1, sizeof(*s));
	s->fd = fd;
	s->next = d->socks;
	d->socks = s;
    } else if (s->what == what) {
	return;
    } else {
	event_free(s->ev);
    }
    s->what = what;
    s->ev = event_new(d->base, fd, what | EV_PERSIST, dns_sock_cb, d);
    event_add(s->ev, NULL);
}

/* Apply an "addr[:port]" list ("127.0.0.1:5353, [::1]:53"). */
static int dns_set_servers(DNS *d, const char *servers, char *err, size_t errlen)
{
    char  **list;
    int     n = 0, rc;
    BUF     csv = BUF_INIT;

    list = str_split_list(servers, &n);
    for (int i = 0; i < n; i++) {
	if (i)
	    buf_putc(&csv, ',');
	buf_puts(&csv, list[i]);
    }
    str_list_free(list);
    if (n == 0) {
	buf_free(&csv);
	return (0);
    }
    rc = ares_set_servers_ports_csv(d->channel, csv.data);
    if (rc != ARES_SUCCESS) {
	snprintf(err, errlen, "dns_servers: bad value \"%s\": %s", servers, ares_strerror(rc));
	buf_free(&csv);
	return (-1);
    }
    buf_free(&csv);
    return (0);
}

DNS    *dns_create(struct event_base *base, const char *servers, char *err, size_t errlen)
{
    static int lib_ready;
    struct ares_options opt;
    DNS    *d;
    int     rc;

    if (!lib_ready) {
	if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
	    snprintf(err, errlen, "c-ares initialization failed: %s", ares_strerror(rc));
	    return (NULL);
	}
	lib_ready = 1;
    }
    d = xcalloc(1, sizeof(*d));
    d->base = base;
    memset(&opt, 0, sizeof(opt));
    opt.sock_state_cb = dns_sock_state;
    opt.sock_state_cb_data = d;
    opt.timeout = 2000;				/* ms per try */
    opt.tries = 3;
    rc = ares_init_options(&d->channel, &opt,
			   ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) {
	snprintf(err, errlen, "DNS resolver initialization failed: %s", ares_strerror(rc));
	free(d);
	return (NULL);
    }
    if (servers && *servers && dns_set_servers(d, servers, err, errlen) < 0) {
	ares_destroy(d->channel);
	free(d);
	return (NULL);
    }
    d->timer = evtimer_new(base, dns_timer_cb, d);
    return (d);
}

static void dns_req_unlink(DNS_REQ *r)
{
    DNS    *d = r->dns;

    if (r->prev)
	r->prev->next = r->next;
    else
	d->reqs = r->next;
    if (r->next)
	r->next->prev = r->prev;
}

static void dns_req_free(DNS_REQ *r)
{
    if (r->deliver)
	event_free(r->deliver);
    free(r->mx);
    free(r->addr);
    free(r->tlsa);
    free(r->tlsa_data);
    free(r->name);
    free(r);
}

void    dns_free(DNS *d)
{
    DNS_REQ *r, *next;

    if (d == NULL)
	return;
    d->freeing = 1;

    /* Outstanding queries end with ARES_EDESTRUCTION; nobody is told. */
    ares_destroy(d->channel);
    for (r = d->reqs; r; r = next) {
	next = r->next;
	dns_req_free(r);
    }
    while (d->socks) {
	DNS_SOCK *s = d->socks;

	d->socks = s->next;
	event_free(s->ev);
	free(s);
    }
    event_free(d->timer);
    free(d);
}

/* Zero timer: hand the copied result to the caller. */
static void dns_deliver_cb(evutil_socket_t fd, short what, void *arg)
{
    DNS_REQ *r = arg;
    int     status;

    /* Unlinked first: the callback may even dns_free() the resolver. */
    dns_req_unlink(r);
    dns_timer_update(r->dns);
    if (r->kind == DNS_KIND_MX && r->nullmx) {
	status = DNS_NULLMX;
	r->n = 0;
    } else if (r->n > 0) {
	status = DNS_OK;
    } else if (r->kind == DNS_KIND_MX && r->nbad > 0) {
	status = DNS_TEMPFAIL;			/* Postfix: DNS_RETRY */
    } else if (r->status[0] == DNS_TEMPFAIL || (r->kind == DNS_KIND_ADDR && r->status[1] == DNS_TEMPFAIL)) {
	status = DNS_TEMPFAIL;
    } else {
	status = DNS_NOTFOUND;
    }
    if (r->kind == DNS_KIND_MX)
	r->mx_cb(r->ctx, status, r->mx, r->n);
    else if (r->kind == DNS_KIND_TLSA)
	r->tlsa_cb(r->ctx, status, r->secure, r->tlsa, r->n);
    else if (r->kind == DNS_KIND_CNAME)
	r->cname_cb(r->ctx, status, r->secure);
    else
	r->addr_cb(r->ctx, status, r->addr, r->n);
    dns_req_free(r);
}

static void dns_req_finish_one(DNS_REQ *r)
{
    struct timeval zero = {0, 0};

    if (--r->pending > 0)
	return;
    r->deliver = evtimer_new(r->dns->base, dns_deliver_cb, r);
    evtimer_add(r->deliver, &zero);
}

static int dns_map_status(int status)
{
    switch (status) {
    case ARES_SUCCESS:
	return (DNS_OK);
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
	return (DNS_NOTFOUND);
    default:
	return (DNS_TEMPFAIL);
    }
}

static int mx_compare(const void *a, const void *b)
{
    return (((const DNS_MX *) a)->pref - ((const DNS_MX *) b)->pref);
}

static void dns_mx_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    DNS_REQ *r = arg;
    struct ares_mx_reply *mx = NULL, *m;

    if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED)
	return;
    r->status[0] = dns_map_status(status);
    if (status == ARES_SUCCESS) {
	int     rc = ares_parse_mx_reply(abuf, alen, &mx);

	if (rc != ARES_SUCCESS) {
	    r->status[0] = dns_map_status(rc == ARES_ENODATA ? rc : ARES_EBADRESP);
	} else {
	    for (m = mx; m; m = m->next) {
		/* c-ares expands the root to "". */
		if (m->host[0] == 0 || strcmp(m->host, ".") == 0) {
		    r->nullmx = 1;
		    continue;
		}
		if (r->n == r->cap) {
		    r->cap = r->cap ? 2 * r->cap : 4;
		    r->mx = xrealloc(r->mx, r->cap * sizeof(*r->mx));
		}
		snprintf(r->mx[r->n].host, sizeof(r->mx[r->n].host), "%s", m->host);
		r->mx[r->n].pref = m->priority;
		r->mx[r->n].secure = 0;
		r->n++;
	    }
	    ares_free_data(mx);
	    if (r->n > 0)
		qsort(r->mx, r->n, sizeof(*r->mx), mx_compare);
	    else if (!r->nullmx)
		r->status[0] = DNS_NOTFOUND;
	}
    }
    dns_req_finish_one(r);
}

static void dns_addr_push(DNS_REQ *r, int family, const void *bin)
{
    if (r->n == r->cap) {
	r->cap = r->cap ? 2 * r->cap : 4;
	r->addr = xrealloc(r->addr, r->cap * sizeof(*r->addr));
    }
    r->addr[r->n].family = family;
    r->addr[r->n].secure = 0;
    r->addr[r->n].cname[0] = 0;
    inet_ntop(family, bin, r->addr[r->n].addr, sizeof(r->addr[r->n].addr));
    r->n++;
}

/* ---- DNSSEC-aware queries: our own wire format over ares_send() ------ */

/* The status of a raw answer; *ans parsed when it says DNS_OK. */
static int dns_raw_status(int status, const unsigned char *abuf, int alen, const char *name,
			          int type, DNS_WIRE_ANSWER *ans)
{
    if (status != ARES_SUCCESS)
	return (dns_map_status(status));
    if (abuf == NULL || alen <= 0 || dns_wire_parse(abuf, (size_t) alen, name, type, ans) < 0)
	return (DNS_TEMPFAIL);			/* malformed or unexpected reply */
    if (ans->rcode == DNS_RCODE_NXDOMAIN)
	return (DNS_NOTFOUND);
    if (ans->rcode != DNS_RCODE_NOERROR)
	return (DNS_TEMPFAIL);
    return (ans->nrr > 0 ? DNS_OK : DNS_NOTFOUND);
}

typedef struct DNS_RAW {
    DNS_REQ *r;
    int     type;
    int     slot;			/* status[] index */
} DNS_RAW;

static void dns_raw_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    DNS_RAW *q = arg;
    DNS_REQ *r = q->r;
    DNS_WIRE_ANSWER *ans;
    int     st;

    if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) {
	free(q);
	return;
    }
    ans = xmalloc(sizeof(*ans));
    st = dns_raw_status(status, abuf, alen, r->name, q->type, ans);
    r->status[q->slot] = st;
    if (st == DNS_OK) {
	const unsigned char *m = abuf;
	size_t  mlen = (size_t) alen;

	for (int i = 0; i < ans->nrr; i++) {
	    const DNS_WIRE_RR *rr = &ans->rr[i];

	    switch (q->type) {
	    case DNS_T_MX:{
		    DNS_MX mx;

		    memset(&mx, 0, sizeof(mx));
		    if (dns_wire_mx(m, mlen, rr, &mx.pref, mx.host, sizeof(mx.host)) < 0) {
			r->nbad++;
			continue;
		    }
		    if (strcmp(mx.host, ".") == 0) {
			r->nullmx = 1;
			continue;
		    }
		    mx.secure = ans->ad;
		    if (r->n == r->cap) {
			r->cap = r->cap ? 2 * r->cap : 4;
			r->mx = xrealloc(r->mx, r->cap * sizeof(*r->mx));
		    }
		    r->mx[r->n++] = mx;
		    break;
		}
	    case DNS_T_A:
	    case DNS_T_AAAA:
		if (rr->len != (q->type == DNS_T_A ? 4u : 16u))
		    continue;
		dns_addr_push(r, q->type == DNS_T_A ? AF_INET : AF_INET6, m + rr->off);
		r->addr[r->n - 1].secure = ans->ad;
		if (ans->ncname > 0)
		    snprintf(r->addr[r->n - 1].cname, sizeof(r->addr[r->n - 1].cname), "%s",
			     ans->rname);
		break;
	    case DNS_T_CNAME:
		r->n++;				/* only whether there is one */
		r->secure = ans->ad;
		break;
	    case DNS_T_TLSA:{
		    DNS_TLSA *t;

		    if (r->n == r->cap) {
			r->cap = r->cap ? 2 * r->cap : 4;
			r->tlsa = xrealloc(r->tlsa, r->cap * sizeof(*r->tlsa));
		    }
		    t = &r->tlsa[r->n++];
		    memset(t, 0, sizeof(*t));
		    t->rdlen = rr->len;
		    if (dns_wire_tlsa(m, rr, &t->usage, &t->selector, &t->mtype, &t->data,
				      &t->dlen) < 0)
			t->data = NULL;
		    break;
		}
	    }
	}
	if (q->type == DNS_T_TLSA) {
	    size_t  total = 0, off = 0;

	    /* The data outlive abuf: one block, pointers fixed up. */
	    r->secure = ans->ad;
	    for (int i = 0; i < r->n; i++)
		total += r->tlsa[i].data ? r->tlsa[i].dlen : 0;
	    r->tlsa_data = xmalloc(total + 1);
	    for (int i = 0; i < r->n; i++) {
		if (r->tlsa[i].data == NULL)
		    continue;
		memcpy(r->tlsa_data + off, r->tlsa[i].data, r->tlsa[i].dlen);
		r->tlsa[i].data = r->tlsa_data + off;
		off += r->tlsa[i].dlen;
	    }
	}
	if (q->type == DNS_T_MX) {
	    if (r->n > 0)
		qsort(r->mx, r->n, sizeof(*r->mx), mx_compare);
	    else if (!r->nullmx && r->nbad == 0)
		r->status[q->slot] = DNS_NOTFOUND;
	}
    }
    free(ans);
    free(q);
    dns_req_finish_one(r);
}

/* Send one query of ours; a name we cannot even encode fails as c-ares would. */
static void dns_raw_send(DNS_REQ *r, int type, int slot, int dnssec)
{
    unsigned char buf[512];
    int     len;
    DNS_RAW *q;

    len = dns_wire_query(buf, sizeof(buf), 0, r->name, type, dnssec);
    if (len < 0) {
	r->status[slot] = DNS_NOTFOUND;		/* ARES_EBADNAME: not a name */
	dns_req_finish_one(r);
	return;
    }
    q = xcalloc(1, sizeof(*q));
    q->r = r;
    q->type = type;
    q->slot = slot;
    ares_send(r->dns->channel, buf, len, dns_raw_answer, q);
}

static void dns_a_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    DNS_REQ *r = arg;
    struct ares_addrttl a[32];
    int     na = 32;

    if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED)
	return;
    r->status[0] = dns_map_status(status);
    if (status == ARES_SUCCESS) {
	int     rc = ares_parse_a_reply(abuf, alen, NULL, a, &na);

	if (rc != ARES_SUCCESS)
	    r->status[0] = dns_map_status(rc == ARES_ENODATA ? rc : ARES_EBADRESP);
	else
	    for (int i = 0; i < na; i++)
		dns_addr_push(r, AF_INET, &a[i].ipaddr);
    }
    dns_req_finish_one(r);
}

static void dns_aaaa_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    DNS_REQ *r = arg;
    struct ares_addr6ttl a[32];
    int     na = 32;

    if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED)
	return;
    r->status[1] = dns_map_status(status);
    if (status == ARES_SUCCESS) {
	int     rc = ares_parse_aaaa_reply(abuf, alen, NULL, a, &na);

	if (rc != ARES_SUCCESS)
	    r->status[1] = dns_map_status(rc == ARES_ENODATA ? rc : ARES_EBADRESP);
	else
	    for (int i = 0; i < na; i++)
		dns_addr_push(r, AF_INET6, &a[i].ip6addr);
    }
    dns_req_finish_one(r);
}

static DNS_REQ *dns_req_new(DNS *d, int kind, void *ctx)
{
    DNS_REQ *r = xcalloc(1, sizeof(*r));

    r->dns = d;
    r->kind = kind;
    r->ctx = ctx;
    r->next = d->reqs;
    if (d->reqs)
	d->reqs->prev = r;
    d->reqs = r;
    return (r);
}

void    dns_mx(DNS *d, const char *domain,
	               void (*cb) (void *ctx, int status, const DNS_MX *mx, int n), void *ctx)
{
    dns_mx_ex(d, domain, 0, cb, ctx);
}

void    dns_mx_ex(DNS *d, const char *domain, int flags,
	              void (*cb) (void *ctx, int status, const DNS_MX *mx, int n), void *ctx)
{
    DNS_REQ *r = dns_req_new(d, DNS_KIND_MX, ctx);

    r->mx_cb = cb;
    r->pending = 1;
    if (flags & DNS_FLAG_DNSSEC) {
	r->name = xstrdup(domain);
	dns_raw_send(r, DNS_T_MX, 0, 1);
    } else
	ares_query(d->channel, domain, ns_c_in, ns_t_mx, dns_mx_answer, r);
    dns_timer_update(d);
}

void    dns_tlsa(DNS *d, const char *name,
	                 void (*cb) (void *ctx, int status, int secure, const DNS_TLSA *t, int n),
		         void *ctx)
{
    DNS_REQ *r = dns_req_new(d, DNS_KIND_TLSA, ctx);

    r->tlsa_cb = cb;
    r->pending = 1;
    r->name = xstrdup(name);
    dns_raw_send(r, DNS_T_TLSA, 0, 1);
    dns_timer_update(d);
}

void    dns_cname(DNS *d, const char *name,
		          void (*cb) (void *ctx, int status, int secure), void *ctx)
{
    DNS_REQ *r = dns_req_new(d, DNS_KIND_CNAME, ctx);

    r->cname_cb = cb;
    r->pending = 1;
    r->name = xstrdup(name);
    dns_raw_send(r, DNS_T_CNAME, 0, 1);
    dns_timer_update(d);
}

void    dns_addr(DNS *d, const char *host,
	                 void (*cb) (void *ctx, int status, const DNS_ADDR *a, int n), void *ctx)
{
    dns_addr_ex(d, host, 0, cb, ctx);
}

void    dns_addr_ex(DNS *d, const char *host, int flags,
	              void (*cb) (void *ctx, int status, const DNS_ADDR *a, int n), void *ctx)
{
    DNS_REQ *r = dns_req_new(d, DNS_KIND_ADDR, ctx);
    unsigned char bin[16];

    r->addr_cb = cb;

    /* An address literal needs no lookup, but is still answered later. */
    if (inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1) {
	dns_addr_push(r, strchr(host, ':') ? AF_INET6 : AF_INET, bin);
	r->pending = 1;
	dns_req_finish_one(r);
	return;
    }
    r->pending = 2;
    if (flags & DNS_FLAG_DNSSEC) {
	r->name = xstrdup(host);
	dns_raw_send(r, DNS_T_A, 0, 1);
	dns_raw_send(r, DNS_T_AAAA, 1, 1);
    } else {
	ares_query(d->channel, host, ns_c_in, ns_t_a, dns_a_answer, r);
	ares_query(d->channel, host, ns_c_in, ns_t_aaaa, dns_aaaa_answer, r);
    }
    dns_timer_update(d);
}
