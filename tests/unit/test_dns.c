/*
 * test_dns - MX and address lookups against dnsmasq on a loopback port
 * (never the system resolver): MX records sorted by preference, A and
 * AAAA, address literals, NXDOMAIN and "no data" as DNS_NOTFOUND, a
 * resolver that does not answer as DNS_TEMPFAIL, callbacks never run
 * inside the call, a malformed dns_servers value, and RFC 7505 null MX
 * (alone, beside a real MX, with a non-zero preference) as DNS_NULLMX and
 * malformed MX rdata as DNS_TEMPFAIL, through c-ares and our own parser.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "t.h"
#include "util/util.h"
#include "dns/dns.h"

static struct event_base *base;
static int dns_port;

typedef struct ANS {
    int     called;
    int     status;
    int     n;
    DNS_MX  mx[8];
    DNS_ADDR addr[8];
} ANS;

static void mx_cb(void *ctx, int status, const DNS_MX *mx, int n)
{
    ANS    *a = ctx;

    a->called++;
    a->status = status;
    a->n = n;
    for (int i = 0; i < n && i < 8; i++)
	a->mx[i] = mx[i];
}

static void addr_cb(void *ctx, int status, const DNS_ADDR *ad, int n)
{
    ANS    *a = ctx;

    a->called++;
    a->status = status;
    a->n = n;
    for (int i = 0; i < n && i < 8; i++)
	a->addr[i] = ad[i];
}

static void wait_for(ANS *a, int secs)
{
    int64_t deadline = time_mono_us() + secs * 1000000LL;

    while (!a->called && time_mono_us() < deadline)
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(1000);
}

static DNS *mkdns(int port)
{
    char    servers[64], err[256];
    DNS    *d;

    snprintf(servers, sizeof(servers), "127.0.0.1:%d", port);
    d = dns_create(base, servers, err, sizeof(err));
    if (d == NULL)
	printf("\n    dns_create: %s\n", err);
    return (d);
}

static void test_mx(void)
{
    DNS    *d = mkdns(dns_port);
    ANS     a;

    T_CHECK(d != NULL);
    if (d == NULL)
	return;
    memset(&a, 0, sizeof(a));
    dns_mx(d, "dest.test", mx_cb, &a);
    T_EQ_INT(a.called, 0);			/* never inside the call */
    wait_for(&a, 10);
    T_EQ_INT(a.called, 1);
    T_EQ_INT(a.status, DNS_OK);
    T_EQ_INT(a.n, 2);
    T_EQ_STR(a.mx[0].host, "mx1.dest.test");
    T_EQ_INT(a.mx[0].pref, 10);
    T_EQ_STR(a.mx[1].host, "mx2.dest.test");
    T_EQ_INT(a.mx[1].pref, 20);

    /* A name with an address but no MX: no data. */
    memset(&a, 0, sizeof(a));
    dns_mx(d, "mx1.dest.test", mx_cb, &a);
    wait_for(&a, 10);
    T_EQ_INT(a.status, DNS_NOTFOUND);

    /* NXDOMAIN. */
    memset(&a, 0, sizeof(a));
    dns_mx(d, "nonexistent.test", mx_cb, &a);
    wait_for(&a, 10);
    T_EQ_INT(a.called, 1);
    T_EQ_INT(a.status, DNS_NOTFOUND);
    dns_free(d);
}

static void test_addr(void)
{
    DNS    *d = mkdns(dns_port);
    ANS     a;

    T_CHECK(d != NULL);
    if (d == NULL)
	return;
    memset(&a, 0, sizeof(a));
    dns_addr(d, "mx1.dest.test", addr_cb, &a);
    wait_for(&a, 10);
    T_EQ_INT(a.status, DNS_OK);
    T_EQ_INT(a.n, 1);
    T_EQ_STR(a.addr[0].addr, "127.0.0.2");
    T_EQ_INT(a.addr[0].family, AF_INET);

    memset(&a, 0, sizeof(a));
    dns_addr(d, "v6.test", addr_cb, &a);
    wait_for(&a, 10);
    T_EQ_INT(a.status, DNS_OK);
    T_EQ_INT(a.n, 1);
    T_EQ_STR(a.addr[0].addr, "::1");
    T_EQ_INT(a.addr[0].family, AF_INET6);

    /* Literals answer without a query, but still from the loop. */
    memset(&a, 0, sizeof(a));
    dns_addr(d, "127.0.0.5", addr_cb, &a);
    T_EQ_INT(a.called, 0);
    wait_for(&a, 2);
    T_EQ_INT(a.status, DNS_OK);
    T_EQ_STR(a.addr[0].addr, "127.0.0.5");

    memset(&a, 0, sizeof(a));
    dns_addr(d, "nonexistent.test", addr_cb, &a);
    wait_for(&a, 10);
    T_EQ_INT(a.status, DNS_NOTFOUND);
    T_EQ_INT(a.n, 0);
    dns_free(d);
}

static void test_tempfail(void)
{
    int     fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    DNS    *d;
    ANS     a;
    int64_t t0;

    /* A UDP socket that is bound but never answers: c-ares times out. */
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    bind(fd, (struct sockaddr *) &sin, sizeof(sin));
    getsockname(fd, (struct sockaddr *) &sin, &len);
    d = mkdns(ntohs(sin.sin_port));
    T_CHECK(d != NULL);
    if (d == NULL)
	return;
    memset(&a, 0, sizeof(a));
    t0 = time_mono_us();
    dns_mx(d, "dest.test", mx_cb, &a);
    wait_for(&a, 60);
    T_EQ_INT(a.called, 1);
    T_EQ_INT(a.status, DNS_TEMPFAIL);
    T_CHECK(time_mono_us() - t0 > 1000000);	/* it did wait for the retries */
    dns_free(d);
    close(fd);
}

typedef struct TANS {
    int     called, status, secure, n;
    DNS_TLSA t[4];
    unsigned char data[4][64];
} TANS;

static void tlsa_cb(void *ctx, int status, int secure, const DNS_TLSA *t, int n)
{
    TANS   *a = ctx;

    a->called++;
    a->status = status;
    a->secure = secure;
    a->n = n;
    for (int i = 0; i < n && i < 4; i++) {
	a->t[i] = t[i];
	if (t[i].data && t[i].dlen <= 64)
	    memcpy(a->data[i], t[i].data, t[i].dlen);
    }
}

static void tlsa_wait(TANS *a, int secs)
{
    int64_t deadline = time_mono_us() + secs * 1000000LL;

    while (!a->called && time_mono_us() < deadline)
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(1000);
}

typedef struct CANS {
    int     called, status, secure;
} CANS;

static void cname_cb(void *ctx, int status, int secure)
{
    CANS   *c = ctx;

    c->called++;
    c->status = status;
    c->secure = secure;
}

static void cname_wait(CANS *c, int secs)
{
    int64_t deadline = time_mono_us() + secs * 1000000LL;

    while (!c->called && time_mono_us() < deadline)
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(1000);
}

/*
 * The DNSSEC path: our own queries and parser over ares_send().  dnsmasq
 * does not validate, so nothing is secure; the records come through.
 */
static void test_dnssec_path(void)
{
    DNS    *d = mkdns(dns_port);
    ANS     a;
    TANS    t;

    T_CHECK(d != NULL);
    if (d == NULL)
	return;
    memset(&t, 0, sizeof(t));
    dns_tlsa(d, "_25._tcp.mx1.dest.test", tlsa_cb, &t);
    T_EQ_INT(t.called, 0);			/* never inside the call */
    tlsa_wait(&t, 10);
    T_EQ_INT(t.called, 1);
    T_EQ_INT(t.status, DNS_OK);
    T_EQ_INT(t.secure, 0);
    T_EQ_INT(t.n, 1);
    T_EQ_INT(t.t[0].usage, 3);
    T_EQ_INT(t.t[0].selector, 1);
    T_EQ_INT(t.t[0].mtype, 1);
    T_EQ_INT(t.t[0].dlen, 4);
    T_CHECK(memcmp(t.data[0], "\xde\xad\xbe\xef", 4) == 0);

    memset(&t, 0, sizeof(t));
    dns_tlsa(d, "_25._tcp.mx2.dest.test", tlsa_cb, &t);
    tlsa_wait(&t, 10);
    T_EQ_INT(t.status, DNS_NOTFOUND);
    memset(&t, 0, sizeof(t));
    dns_tlsa(d, "bad..name", tlsa_cb, &t);
    tlsa_wait(&t, 10);
    T_EQ_INT(t.called, 1);
    T_EQ_INT(t.status, DNS_NOTFOUND);

    memset(&a, 0, sizeof(a));
    dns_mx_ex(d, "dest.test", DNS_FLAG_DNSSEC, mx_cb, &a);
    wait_for(&a, 10);
    T_EQ_INT(a.status, DNS_OK);
    T_EQ_INT(a.n, 2);
    T_EQ_STR(a.mx[0].host, "mx1.dest.test");
    T_EQ_INT(a.mx[0].pref, 10);
    T_EQ_INT(a.mx[0].secure, 0);
    memset(&a, 0, sizeof(a));
    dns_addr_ex(d, "v6.test", DNS_FLAG_DNSSEC, addr_cb, &a);
    wait_for(&a, 10);
    T_EQ_INT(a.status, DNS_OK);
    T_EQ_INT(a.n, 1);
    T_EQ_STR(a.addr[0].addr, "::1");
    T_EQ_STR(a.addr[0].cname, "");
    /* an alias: the CNAME's target is reported (DANE looks there first) */
    memset(&a, 0, sizeof(a));
    dns_addr_ex(d, "alias.test", DNS_FLAG_DNSSEC, addr_cb, &a);
    wait_for(&a, 10);
    T_EQ_INT(a.status, DNS_OK);
    T_EQ_INT(a.n, 1);
    T_EQ_STR(a.addr[0].addr, "127.0.0.2");
    T_EQ_STR(a.addr[0].cname, "mx1.dest.test");
    {
	CANS    c;

	/* the alias's own CNAME record; a name that owns none; NXDOMAIN */
	memset(&c, 0, sizeof(c));
	dns_cname(d, "alias.test", cname_cb, &c);
	T_EQ_INT(c.called, 0);
	cname_wait(&c, 10);
	T_EQ_INT(c.called, 1);
	T_EQ_INT(c.status, DNS_OK);
	T_EQ_INT(c.secure, 0);			/* dnsmasq does not validate */
	memset(&c, 0, sizeof(c));
	dns_cname(d, "mx1.dest.test", cname_cb, &c);
	cname_wait(&c, 10);
	T_EQ_INT(c.status, DNS_NOTFOUND);
	memset(&c, 0, sizeof(c));
	dns_cname(d, "nonexistent.test", cname_cb, &c);
	cname_wait(&c, 10);
	T_EQ_INT(c.status, DNS_NOTFOUND);
    }
    memset(&a, 0, sizeof(a));
    dns_addr_ex(d, "nonexistent.test", DNS_FLAG_DNSSEC, addr_cb, &a);
    wait_for(&a, 10);
    T_EQ_INT(a.status, DNS_NOTFOUND);
    dns_free(d);
}

/* The status, records and first host of an MX lookup of name. */
static ANS mx_lookup(DNS *d, const char *name, int flags)
{
    ANS     a;

    memset(&a, 0, sizeof(a));
    dns_mx_ex(d, name, flags, mx_cb, &a);
    wait_for(&a, 10);
    T_EQ_INT(a.called, 1);
    return (a);
}

static void test_null_mx(void)
{
    DNS    *d = mkdns(dns_port);

    T_CHECK(d != NULL);
    if (d == NULL)
	return;
    for (int flags = 0; flags <= DNS_FLAG_DNSSEC; flags += DNS_FLAG_DNSSEC) {
	ANS     a;

	a = mx_lookup(d, "null.test", flags);
	T_EQ_INT(a.status, DNS_NULLMX);
	T_EQ_INT(a.n, 0);
	/* one null MX among real ones makes the whole RRset a null MX (Postfix) */
	a = mx_lookup(d, "mixed.test", flags);
	T_EQ_INT(a.status, DNS_NULLMX);
	T_EQ_INT(a.n, 0);
	a = mx_lookup(d, "pref5.test", flags);
	T_EQ_INT(a.status, DNS_NULLMX);
	/* rdata of one octet; a name that does not end inside its rdata */
	a = mx_lookup(d, "short.test", flags);
	T_EQ_INT(a.status, DNS_TEMPFAIL);
	T_EQ_INT(a.n, 0);
	a = mx_lookup(d, "runaway.test", flags);
	T_EQ_INT(a.status, DNS_TEMPFAIL);
	/*
	 * A good MX beside a malformed one: c-ares rejects the whole
	 * answer; our parser skips the bad record, as Postfix does.
	 */
	a = mx_lookup(d, "halfbad.test", flags);
	if (flags) {
	    T_EQ_INT(a.status, DNS_OK);
	    T_EQ_INT(a.n, 1);
	    T_EQ_STR(a.mx[0].host, "mx1.dest.test");
	} else {
	    T_EQ_INT(a.status, DNS_TEMPFAIL);
	}
	/* a normal domain is unchanged */
	a = mx_lookup(d, "dest.test", flags);
	T_EQ_INT(a.status, DNS_OK);
	T_EQ_INT(a.n, 2);
	T_EQ_STR(a.mx[0].host, "mx1.dest.test");
    }
    dns_free(d);
}

static void test_bad_servers(void)
{
    char    err[256] = "";
    DNS    *d = dns_create(base, "not an address!", err, sizeof(err));

    T_CHECK(d == NULL);
    T_CHECK(strstr(err, "dns_servers") != NULL);
    dns_free(d);

    /* Freeing with a query outstanding: no callback afterwards. */
    {
	ANS     a;

	d = mkdns(dns_port);
	memset(&a, 0, sizeof(a));
	dns_mx(d, "dest.test", mx_cb, &a);
	dns_free(d);
	for (int i = 0; i < 20; i++)
	    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	T_EQ_INT(a.called, 0);
    }
}

int     main(void)
{
    char    a_port[32];
    pid_t   pid;
    int     fd;
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);

    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    if (access("/usr/sbin/dnsmasq", X_OK) != 0) {
	printf("dnsmasq not installed: only the tests without a server\n");
	T_RUN(test_tempfail);
	return (t_done());
    }
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    bind(fd, (struct sockaddr *) &sin, sizeof(sin));
    getsockname(fd, (struct sockaddr *) &sin, &len);
    dns_port = ntohs(sin.sin_port);
    close(fd);
    snprintf(a_port, sizeof(a_port), "--port=%d", dns_port);
    if ((pid = fork()) == 0) {
	int     null = open("/dev/null", O_RDWR);

	dup2(null, 1);
	dup2(null, 2);
	execl("/usr/sbin/dnsmasq", "dnsmasq", "--no-daemon", a_port, "--listen-address=127.0.0.1",
	      "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
	      "--user=root", "--local=/test/", "--mx-host=dest.test,mx2.dest.test,20",
	      "--mx-host=dest.test,mx1.dest.test,10", "--host-record=mx1.dest.test,127.0.0.2",
	      "--host-record=mx2.dest.test,127.0.0.3", "--host-record=v6.test,::1",
	      "--dns-rr=_25._tcp.mx1.dest.test,52,030101deadbeef",
	      "--dns-rr=null.test,15,000000", "--host-record=null.test,127.0.0.4",
	      "--dns-rr=mixed.test,15,000a026d7804646573740474657374" "00",
	      "--dns-rr=mixed.test,15,000000", "--dns-rr=pref5.test,15,000500",
	      "--dns-rr=short.test,15,00", "--dns-rr=runaway.test,15,0000026d78",
	      "--dns-rr=halfbad.test,15,00", "--cname=alias.test,mx1.dest.test", "--mx-host=halfbad.test,mx1.dest.test,10",
	      (char *) 0);
	_exit(127);
    }
    usleep(300000);
    T_RUN(test_mx);
    T_RUN(test_addr);
    T_RUN(test_tempfail);
    T_RUN(test_dnssec_path);
    T_RUN(test_null_mx);
    T_RUN(test_bad_servers);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    event_base_free(base);
    return (t_done());
}
