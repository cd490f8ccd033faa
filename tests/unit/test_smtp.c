/*
 * test_smtp - the SMTP client: routing tables (every map form, lookup
 * order, relayhost forms, error:/discard:), reply parsing, then real
 * deliveries on loopback: smtp-sink (accepting, and rejecting at chosen
 * stages), a scripted server (SIZE, dot-stuffing), a socket that never
 * answers, a closed port, dnsmasq MX records, the fallback relay and
 * shutdown.  Results and log lines are checked word for word.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "t.h"
#include "util/util.h"
#include "config/config.h"
#include "log/log.h"
#include "queue/queue.h"
#include "smtp/smtp.h"

static char tmpdir[256];
static char logpath[300];
static struct event_base *base;

/* ---- helpers ---------------------------------------------------------- */

static CONFIG *mkcf(const char *first, ...)
{
    char   *ov[32];
    int     n = 0;
    va_list ap;
    char    err[512];
    CONFIG *cf;

    va_start(ap, first);
    for (const char *o = first; o && n < 32; o = va_arg(ap, const char *))
	ov[n++] = (char *) o;
    va_end(ap);
    cf = config_load(tmpdir, ov, n, 1, err, sizeof(err));
    if (cf == NULL)
	printf("\n    config_load: %s\n", err);
    return (cf);
}

static int free_port(int type, const char *addr)
{
    int     fd = socket(AF_INET, type, 0);
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    inet_pton(AF_INET, addr, &sin.sin_addr);
    bind(fd, (struct sockaddr *) &sin, sizeof(sin));
    getsockname(fd, (struct sockaddr *) &sin, &len);
    close(fd);
    return (ntohs(sin.sin_port));
}

static int listen_on(const char *addr, int *port)
{
    int     fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);

    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    inet_pton(AF_INET, addr, &sin.sin_addr);
    bind(fd, (struct sockaddr *) &sin, sizeof(sin));
    listen(fd, 16);
    getsockname(fd, (struct sockaddr *) &sin, &len);
    *port = ntohs(sin.sin_port);
    return (fd);
}

static pid_t spawn(char *const argv[])
{
    pid_t   pid = fork();

    if (pid == 0) {
	int     null = open("/dev/null", O_RDWR);

	dup2(null, 0);
	dup2(null, 1);
	dup2(null, 2);
	execv(argv[0], argv);
	_exit(127);
    }
    return (pid);
}

static void reap(pid_t pid)
{
    if (pid > 0) {
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
    }
}

static int wait_port(const char *addr, int port)
{
    for (int i = 0; i < 300; i++) {
	int     fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	inet_pton(AF_INET, addr, &sin.sin_addr);
	if (connect(fd, (struct sockaddr *) &sin, sizeof(sin)) == 0) {
	    close(fd);
	    return (0);
	}
	close(fd);
	usleep(10000);
    }
    return (-1);
}

/* smtp-sink on addr:port with extra options; waits until it listens. */
static pid_t sink_start(const char *addr, int port, const char *opt1, const char *opt2)
{
    char    ep[64];
    char   *argv[12];
    int     n = 0;
    pid_t   pid;

    if (access("/usr/sbin/smtp-sink", X_OK) != 0)
	return (-1);
    snprintf(ep, sizeof(ep), "%s:%d", addr, port);
    argv[n++] = "/usr/sbin/smtp-sink";
    if (geteuid() == 0) {
	argv[n++] = "-u";
	argv[n++] = "nobody";
    }
    if (opt1)
	argv[n++] = (char *) opt1;
    if (opt2)
	argv[n++] = (char *) opt2;
    argv[n++] = ep;
    argv[n++] = "10";
    argv[n] = NULL;
    pid = spawn(argv);
    if (wait_port(addr, port) < 0) {
	reap(pid);
	return (-1);
    }
    return (pid);
}

static char *log_read(void)
{
    FILE   *fp = fopen(logpath, "r");
    BUF     b = BUF_INIT;
    char    chunk[4096];
    size_t  n;

    buf_puts(&b, "");
    if (fp) {
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
	    buf_append(&b, chunk, n);
	fclose(fp);
    }
    return (buf_steal(&b));
}

static void log_clear(void)
{
    truncate(logpath, 0);
}

static int log_has(const char *needle)
{
    char   *all = log_read();
    int     found = strstr(all, needle) != NULL;

    if (!found)
	printf("\n    log lacks: %s\n    log: %s", needle, all);
    free(all);
    return (found);
}

/* A message with CRLF content and up to 4 recipients. */
static QMSG *mkmsg(const char *content, const char *r1, const char *r2)
{
    QMSG   *m = xcalloc(1, sizeof(*m));

    snprintf(m->qid, sizeof(m->qid), "4A5B6C7D8E");
    m->arrival_us = time_now_us() - 1500000;
    m->sender = xstrdup("sender@sender.test");
    m->content = xstrdup(content);
    m->size = strlen(content);
    m->rcpts = xcalloc(2, sizeof(QRCPT));
    m->rcpts[m->nrcpt++].addr = xstrdup(r1);
    if (r2)
	m->rcpts[m->nrcpt++].addr = xstrdup(r2);
    return (m);
}

static void freemsg(QMSG *m)
{
    for (int i = 0; i < m->nrcpt; i++)
	free(m->rcpts[i].addr);
    free(m->rcpts);
    free(m->sender);
    free(m->content);
    free(m);
}

/* What done() reported, copied. */
typedef struct RES {
    int     called;
    int     nrcpt;
    int     status[4];
    char    dsn[4][12];
    char    text[4][512];
    int     hop_failed;
    char    hop_reason[512];
    char    att_host[256];
    int     att_port;
    int64_t att_start, att_end;
} RES;

static void done_cb(void *ctx, const SMTP_RESULT *r)
{
    RES    *res = ctx;

    res->called++;
    res->nrcpt = r->nrcpt;
    for (int i = 0; i < r->nrcpt && i < 4; i++) {
	res->status[r->rcpts[i].index] = r->rcpts[i].status;
	snprintf(res->dsn[r->rcpts[i].index], 12, "%s", r->rcpts[i].dsn);
	snprintf(res->text[r->rcpts[i].index], 512, "%s", r->rcpts[i].text ? r->rcpts[i].text : "");
    }
    res->hop_failed = r->hop_failed;
    snprintf(res->hop_reason, sizeof(res->hop_reason), "%s", r->hop_reason ? r->hop_reason : "");
    snprintf(res->att_host, sizeof(res->att_host), "%s", r->attempt.host ? r->attempt.host : "");
    res->att_port = r->attempt.port;
    res->att_start = r->attempt.start_us;
    res->att_end = r->attempt.end_us;
}

/* Deliver msg's recipients to dest and run the loop until done() (at most secs). */
static void deliver(SMTP *s, QMSG *m, const char *dest, RES *res, int secs)
{
    int     idx[4] = {0, 1, 2, 3};
    SMTP_REQUEST req = {m, idx, m->nrcpt, dest, time_now_us() - 500000};
    int64_t deadline = time_mono_us() + secs * 1000000LL;

    memset(res, 0, sizeof(*res));
    smtp_deliver(s, &req, done_cb, res);
    T_EQ_INT(res->called, 0);			/* never from inside smtp_deliver */
    while (!res->called && time_mono_us() < deadline)
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(1000);
    T_EQ_INT(res->called, 1);
}

/* ---- routing ---------------------------------------------------------- */

static void test_route_table(void)
{
    char    th[400];
    FILE   *fp;

    snprintf(th, sizeof(th), "%s/transport", tmpdir);
    fp = fopen(th, "w");
    fprintf(fp, "# comment\n"
	    "user@file.test   smtp:[10.9.9.9]:2526\n"
	    "file.test        smtp:file-relay.test\n"
	    ".sub.file.test   error:5.1.2 no such subdomain\n"
	    "cont.test\n"
	    "  smtp:[127.0.0.1]:2600\n");
    fclose(fp);

    char    tm[900];

    snprintf(tm, sizeof(tm), "transport_maps=inline:{ a@inl.test=smtp:[127.0.0.1]:10099, "
	     "inl.test=smtp:inl-mx.test:2525, .parent.test=smtp:[parent.relay], "
	     "Upper.Test=smtp:[127.0.0.9], { err.test = error:mailbox gone away }, "
	     "disc.test=discard:, { disc2.test=discard:silently dropped }, empty.test=smtp:, "
	     "v6.test=smtp:[::1]:2525, bare.test=smtp:bare-host.test } texthash:%s", th);
    CONFIG *cf = mkcf(tm, "relayhost=[192.0.2.1]:587", NULL);
    CONFIG *cf_star = mkcf("transport_maps=inline:{ *=smtp:[127.0.0.1]:9999, x.test=error:nope }", NULL);
    CONFIG *cf_none = mkcf(NULL);
    CONFIG *cf_rh1 = mkcf("relayhost=relay.example", NULL);
    CONFIG *cf_rh2 = mkcf("relayhost=[::1]:2525", NULL);
    CONFIG *cf_rh3 = mkcf("relayhost=relay.example:2525", NULL);

    static const struct {
	int     cfi;
	const char *rcpt;
	int     transport;
	const char *nexthop;
	const char *key;
    }       t[] = {
	{0, "a@inl.test", SMTP_TR_SMTP, "[127.0.0.1]:10099", "smtp:[127.0.0.1]:10099"},
	{0, "A@INL.test", SMTP_TR_SMTP, "[127.0.0.1]:10099", "smtp:[127.0.0.1]:10099"},
	{0, "b@inl.test", SMTP_TR_SMTP, "inl-mx.test:2525", "smtp:inl-mx.test:2525"},
	/* domain entries do not match subdomains; ".parent" entries do */
	{0, "c@sub.inl.test", SMTP_TR_SMTP, "[192.0.2.1]:587", "smtp:[192.0.2.1]:587"},
	{0, "c@x.parent.test", SMTP_TR_SMTP, "[parent.relay]", "smtp:[parent.relay]"},
	{0, "c@y.x.parent.test", SMTP_TR_SMTP, "[parent.relay]", "smtp:[parent.relay]"},
	{0, "c@parent.test", SMTP_TR_SMTP, "[192.0.2.1]:587", "smtp:[192.0.2.1]:587"},
	{0, "c@upper.test", SMTP_TR_SMTP, "[127.0.0.9]", "smtp:[127.0.0.9]"},
	{0, "c@err.test", SMTP_TR_ERROR, "mailbox gone away", "error:mailbox gone away"},
	{0, "c@disc.test", SMTP_TR_DISCARD, "", "discard:"},
	{0, "c@disc2.test", SMTP_TR_DISCARD, "silently dropped", "discard:silently dropped"},
	/* empty nexthop: relayhost */
	{0, "c@empty.test", SMTP_TR_SMTP, "[192.0.2.1]:587", "smtp:[192.0.2.1]:587"},
	{0, "c@v6.test", SMTP_TR_SMTP, "[::1]:2525", "smtp:[::1]:2525"},
	{0, "c@bare.test", SMTP_TR_SMTP, "bare-host.test", "smtp:bare-host.test"},
	/* texthash: full address before domain, continuation lines */
	{0, "user@file.test", SMTP_TR_SMTP, "[10.9.9.9]:2526", "smtp:[10.9.9.9]:2526"},
	{0, "other@file.test", SMTP_TR_SMTP, "file-relay.test", "smtp:file-relay.test"},
	{0, "x@a.sub.file.test", SMTP_TR_ERROR, "5.1.2 no such subdomain", "error:5.1.2 no such subdomain"},
	{0, "x@cont.test", SMTP_TR_SMTP, "[127.0.0.1]:2600", "smtp:[127.0.0.1]:2600"},
	/* no entry: relayhost */
	{0, "z@elsewhere.test", SMTP_TR_SMTP, "[192.0.2.1]:587", "smtp:[192.0.2.1]:587"},
	/* "*" comes last */
	{1, "q@x.test", SMTP_TR_ERROR, "nope", "error:nope"},
	{1, "q@y.test", SMTP_TR_SMTP, "[127.0.0.1]:9999", "smtp:[127.0.0.1]:9999"},
	/* no maps, no relayhost: the recipient domain */
	{2, "q@Dest.Test", SMTP_TR_SMTP, "dest.test", "smtp:dest.test"},
	{3, "q@dest.test", SMTP_TR_SMTP, "relay.example", "smtp:relay.example"},
	{4, "q@dest.test", SMTP_TR_SMTP, "[::1]:2525", "smtp:[::1]:2525"},
	{5, "q@dest.test", SMTP_TR_SMTP, "relay.example:2525", "smtp:relay.example:2525"},
    };
    CONFIG *cfs[] = {cf, cf_star, cf_none, cf_rh1, cf_rh2, cf_rh3};

    T_CHECK(cf && cf_star && cf_none && cf_rh1 && cf_rh2 && cf_rh3);
    if (!(cf && cf_star && cf_none && cf_rh1 && cf_rh2 && cf_rh3))
	return;
    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
	SMTP_ROUTE r;
	char    err[256] = "";

	if (smtp_route(cfs[t[i].cfi], t[i].rcpt, &r, err, sizeof(err)) != 0) {
	    T_FAILF("route %s: %s", t[i].rcpt, err);
	    continue;
	}
	if (r.transport != t[i].transport || strcmp(r.nexthop, t[i].nexthop) || strcmp(r.key, t[i].key))
	    T_FAILF("route %s: transport %d nexthop \"%s\" key \"%s\", expected %d \"%s\" \"%s\"",
		    t[i].rcpt, r.transport, r.nexthop, r.key, t[i].transport, t[i].nexthop, t[i].key);
    }

    /* A changed texthash file is reread (cache keyed by mtime and size). */
    {
	SMTP_ROUTE r;
	char    err[256];
	struct timespec ts[2] = {{0, UTIME_NOW}, {time(NULL) + 5, 0}};

	fp = fopen(th, "w");
	fprintf(fp, "file.test smtp:[127.0.0.1]:3333\n");
	fclose(fp);
	utimensat(AT_FDCWD, th, ts, 0);
	if (smtp_route(cf, "other@file.test", &r, err, sizeof(err)) != 0)
	    T_FAILF("reread: %s", err);
	T_EQ_STR(r.key, "smtp:[127.0.0.1]:3333");
    }
    for (size_t i = 0; i < ARRAY_LEN(cfs); i++)
	config_free(cfs[i]);
}

/* sender_dependent_relayhost_maps: sender, @domain, "<>" for the null sender; transport_maps win. */
static void test_route_sender_relayhost(void)
{
    CONFIG *cf = mkcf("relayhost=[default.test]:25",
		      "sender_dependent_relayhost_maps=inline:{ alice@a.test=[alice.test]:587, "
		      "@b.test=[b-relay.test]:465, <>=[bounces.test] }",
		      "transport_maps=inline:{ special.test=smtp:[special-hop.test] }", NULL);
    static const struct {
	const char *sender, *rcpt, *nexthop;
    } t[] = {
	{"alice@a.test", "x@dest.test", "[alice.test]:587"},
	{"Alice@A.test", "x@dest.test", "[alice.test]:587"},
	{"alice+tag@a.test", "x@dest.test", "[default.test]:25"},	/* recipient_delimiter is empty */
	{"bob@a.test", "x@dest.test", "[default.test]:25"},
	{"carol@b.test", "x@dest.test", "[b-relay.test]:465"},
	{"carol@sub.b.test", "x@dest.test", "[default.test]:25"},
	{"", "x@dest.test", "[bounces.test]"},
	{NULL, "x@dest.test", "[default.test]:25"},
	{"alice@a.test", "y@special.test", "[special-hop.test]"},
    };
    SMTP_ROUTE r;
    char    err[256];

    T_CHECK(cf != NULL);
    if (cf == NULL)
	return;
    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
	if (smtp_route_from(cf, t[i].sender, t[i].rcpt, &r, err, sizeof(err)) != 0)
	    T_FAILF("%s: %s", t[i].sender ? t[i].sender : "(none)", err);
	else if (strcmp(r.nexthop, t[i].nexthop) != 0)
	    T_FAILF("sender %s: nexthop %s, expected %s", t[i].sender ? t[i].sender : "(none)",
		    r.nexthop, t[i].nexthop);
    }
    config_free(cf);
}

static void test_route_errors(void)
{
    static const char *bad[] = {
	"transport_maps=hash:/etc/postfix/transport",
	"transport_maps=inline:{ a.test }",
	"transport_maps=inline:{ a.test=local:x }",
	"transport_maps=texthash:/nonexistent/file",
    };

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
	CONFIG *cf = mkcf(bad[i], NULL);
	SMTP_ROUTE r;
	char    err[256] = "";

	T_CHECK(cf != NULL);
	if (cf == NULL)
	    continue;
	if (smtp_route(cf, "x@a.test", &r, err, sizeof(err)) != -1 || err[0] == 0)
	    T_FAILF("%s: expected an error", bad[i]);
	config_free(cf);
    }
}

static void test_nexthop_parse(void)
{
    static const struct {
	const char *in;
	int     rc;
	const char *host;
	int     port, mx;
    }       t[] = {
	{"[127.0.0.1]:10099", 0, "127.0.0.1", 10099, 0},
	{"[mail.test]", 0, "mail.test", 25, 0},
	{"mail.test", 0, "mail.test", 25, 1},
	{"mail.test:2525", 0, "mail.test", 2525, 1},
	{"[::1]:2525", 0, "::1", 2525, 0},
	{"[2001:db8::1]", 0, "2001:db8::1", 25, 0},
	{"mail.test:smtp", 0, "mail.test", 25, 1},
	{"[127.0.0.1", -1, "", 0, 0},
	{"[127.0.0.1]x", -1, "", 0, 0},
	{"mail.test:99999", -1, "", 0, 0},
	{"mail.test:", -1, "", 0, 0},
	{"", -1, "", 0, 0},
    };

    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
	char    host[256] = "";
	int     port = 0, mx = -1;
	int     rc = smtp_nexthop_parse(t[i].in, host, sizeof(host), &port, &mx);

	if (rc != t[i].rc || (rc == 0 && (strcmp(host, t[i].host) || port != t[i].port || mx != t[i].mx)))
	    T_FAILF("\"%s\": rc %d host \"%s\" port %d mx %d", t[i].in, rc, host, port, mx);
    }
}

static void test_reply_dsn(void)
{
    static const struct {
	const char *reply, *dsn;
    }       t[] = {
	{"450 4.2.0 Mailbox busy", "4.2.0"},
	{"550-5.1.1 first line 550 5.1.1 second", "5.1.1"},
	{"250 2.0.0 Ok: queued as ABC", "2.0.0"},
	{"550 no such user", "5.0.0"},
	{"421 service not available", "4.0.0"},
	{"250 Ok", "2.0.0"},
	{"554 4.1.1 mismatched class", "5.0.0"},
	{"552 5.3.4 Message too big", "5.3.4"},
	{"451 4.3.0", "4.3.0"},
	{"450 4.2.0000 too long", "4.0.0"},
    };

    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
	char    dsn[12];

	smtp_reply_dsn(t[i].reply, dsn);
	if (strcmp(dsn, t[i].dsn) != 0)
	    T_FAILF("\"%s\": %s, expected %s", t[i].reply, dsn, t[i].dsn);
    }
}

/* ---- deliveries ------------------------------------------------------- */

static const char *body = "Subject: test\r\n\r\nhello\r\n";

static void test_deliver_sink(void)
{
    int     port = free_port(SOCK_STREAM, "127.0.0.1");
    pid_t   sink = sink_start("127.0.0.1", port, NULL, NULL);
    pid_t   sink_np;
    int     port2 = free_port(SOCK_STREAM, "127.0.0.1");
    CONFIG *cf = mkcf(NULL);
    SMTP   *s;
    QMSG   *m = mkmsg(body, "a@dest.test", "b@dest.test");
    RES     res;
    char    dest[64], want[256];

    T_CHECK(sink > 0 && cf != NULL);
    if (sink <= 0 || cf == NULL)
	return;
    s = smtp_create(base, cf);
    log_clear();
    snprintf(dest, sizeof(dest), "smtp:[127.0.0.1]:%d", port);
    deliver(s, m, dest, &res, 10);
    T_EQ_INT(res.status[0], SMTP_SENT);
    T_EQ_INT(res.status[1], SMTP_SENT);
    T_EQ_STR(res.dsn[0], "2.0.0");
    T_CHECK(strncmp(res.text[0], "250 2.0.0 Ok", 12) == 0);
    T_EQ_INT(res.hop_failed, 0);
    T_EQ_STR(res.att_host, "127.0.0.1");
    T_EQ_INT(res.att_port, port);
    T_CHECK(res.att_end >= res.att_start && res.att_start > 0);
    snprintf(want, sizeof(want), "relayq/smtp[%d]: 4A5B6C7D8E: to=<a@dest.test>, relay=127.0.0.1[127.0.0.1]:%d, delay=",
	     (int) getpid(), port);
    T_CHECK(log_has(want));
    T_CHECK(log_has(", delays=1/0.5/"));
    T_CHECK(log_has(", dsn=2.0.0, status=sent (250 2.0.0 Ok"));
    T_CHECK(log_has("to=<b@dest.test>"));

    /* Without PIPELINING: one command at a time, same result. */
    sink_np = sink_start("127.0.0.1", port2, "-p", NULL);
    snprintf(dest, sizeof(dest), "smtp:[127.0.0.1]:%d", port2);
    deliver(s, m, dest, &res, 10);
    T_EQ_INT(res.status[0], SMTP_SENT);
    T_EQ_INT(res.status[1], SMTP_SENT);

    /* SMTPUTF8 needed but not offered by smtp-sink. */
    m->flags |= QFLAG_SMTPUTF8;
    log_clear();
    deliver(s, m, dest, &res, 10);
    T_EQ_INT(res.status[0], SMTP_BOUNCED);
    T_EQ_STR(res.dsn[0], "5.6.7");
    T_EQ_STR(res.text[0], "SMTPUTF8 is required, but was not offered by host 127.0.0.1[127.0.0.1]");
    T_CHECK(log_has("status=bounced (SMTPUTF8 is required, but was not offered by host 127.0.0.1[127.0.0.1])"));
    smtp_free(s);
    reap(sink);
    reap(sink_np);
    freemsg(m);
    config_free(cf);
}

static void test_deliver_rejects(void)
{
    static const struct {
	const char *opt1, *opt2;
	int     status;
	const char *dsn;
	const char *text;		/* %s = namaddr */
	int     hop_failed;
    }       t[] = {
	{"-r", "RCPT", SMTP_DEFERRED, "4.3.0",
	"host 127.0.0.1[127.0.0.1] said: 450 4.3.0 Error: command failed (in reply to RCPT TO command)", 0},
	{"-f", "RCPT", SMTP_BOUNCED, "5.3.0",
	"host 127.0.0.1[127.0.0.1] said: 500 5.3.0 Error: command failed (in reply to RCPT TO command)", 0},
	{"-r", "MAIL", SMTP_DEFERRED, "4.3.0",
	"host 127.0.0.1[127.0.0.1] said: 450 4.3.0 Error: command failed (in reply to MAIL FROM command)", 0},
	{"-f", ".", SMTP_BOUNCED, "5.3.0",
	"host 127.0.0.1[127.0.0.1] said: 500 5.3.0 Error: command failed (in reply to end of DATA command)", 0},
	{"-r", "DATA", SMTP_DEFERRED, "4.3.0",
	"host 127.0.0.1[127.0.0.1] said: 450 4.3.0 Error: command failed (in reply to DATA command)", 0},
	{"-Q", "CONNECT", SMTP_DEFERRED, "4.0.0",
	"host 127.0.0.1[127.0.0.1] refused to talk to me: 421 4.0.0 Server closing connection", 1},
	{"-q", ".", SMTP_DEFERRED, "4.4.2",
	"lost connection with 127.0.0.1[127.0.0.1] while sending end of data -- message may be sent more than once", 1},
	{"-q", "EHLO", SMTP_DEFERRED, "4.4.2",
	"lost connection with 127.0.0.1[127.0.0.1] while performing the EHLO handshake", 1},
	/* The handshake refused: a 5xx greeting is soft; a 5xx EHLO falls back to HELO. */
	{"-f", "CONNECT", SMTP_DEFERRED, "4.3.0",
	"host 127.0.0.1[127.0.0.1] refused to talk to me: 500 5.3.0 Error: command failed", 1},
	{"-r", "EHLO", SMTP_DEFERRED, "4.3.0",
	"host 127.0.0.1[127.0.0.1] refused to talk to me: 450 4.3.0 Error: command failed", 1},
	{"-f", "EHLO,HELO", SMTP_BOUNCED, "5.3.0",
	"host 127.0.0.1[127.0.0.1] refused to talk to me: 500 5.3.0 Error: command failed", 0},
	{"-r", "EHLO,HELO", SMTP_DEFERRED, "4.3.0",
	"host 127.0.0.1[127.0.0.1] refused to talk to me: 450 4.3.0 Error: command failed", 1},
    };
    CONFIG *cf = mkcf(NULL);
    SMTP   *s = smtp_create(base, cf);
    QMSG   *m = mkmsg(body, "a@dest.test", NULL);

    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
	int     port = free_port(SOCK_STREAM, "127.0.0.1");
	pid_t   sink = sink_start("127.0.0.1", port, t[i].opt1, t[i].opt2);
	char    dest[64], want[700];
	RES     res;

	if (sink <= 0) {
	    T_FAILF("smtp-sink did not start");
	    continue;
	}
	log_clear();
	snprintf(dest, sizeof(dest), "smtp:[127.0.0.1]:%d", port);
	deliver(s, m, dest, &res, 10);
	if (res.status[0] != t[i].status || strcmp(res.dsn[0], t[i].dsn) != 0
	    || strncmp(res.text[0], t[i].text, strlen(t[i].text)) != 0
	    || res.hop_failed != t[i].hop_failed)
	    T_FAILF("%s %s: status %d dsn %s hop %d text \"%s\"", t[i].opt1, t[i].opt2,
		    res.status[0], res.dsn[0], res.hop_failed, res.text[0]);
	snprintf(want, sizeof(want), "relay=127.0.0.1[127.0.0.1]:%d, delay=", port);
	T_CHECK(log_has(want));
	snprintf(want, sizeof(want), "dsn=%s, status=%s (%s", t[i].dsn,
		 t[i].status == SMTP_BOUNCED ? "bounced" : "deferred", t[i].text);
	T_CHECK(log_has(want));
	reap(sink);
    }
    /* EHLO refused with a 5xx, HELO accepted: delivered. */
    {
	int     port = free_port(SOCK_STREAM, "127.0.0.1");
	pid_t   sink = sink_start("127.0.0.1", port, "-f", "EHLO");
	char    dest[64];
	RES     res;

	T_CHECK(sink > 0);
	snprintf(dest, sizeof(dest), "smtp:[127.0.0.1]:%d", port);
	deliver(s, m, dest, &res, 10);
	T_EQ_INT(res.status[0], SMTP_SENT);
	reap(sink);
    }
    smtp_free(s);
    freemsg(m);
    config_free(cf);
}

static void test_refused_and_timeouts(void)
{
    int     closed = free_port(SOCK_STREAM, "127.0.0.1");
    int     lport;
    int     lfd = listen_on("127.0.0.1", &lport);	/* accepts (backlog), never answers */
    CONFIG *cf = mkcf("smtp_helo_timeout=1", NULL);
    SMTP   *s = smtp_create(base, cf);
    QMSG   *m = mkmsg(body, "rcpt@dest.test", NULL);
    RES     res;
    char    dest[64], want[300];

    log_clear();
    snprintf(dest, sizeof(dest), "smtp:[127.0.0.1]:%d", closed);
    deliver(s, m, dest, &res, 10);
    snprintf(want, sizeof(want), "connect to 127.0.0.1[127.0.0.1]:%d: Connection refused", closed);
    T_EQ_INT(res.status[0], SMTP_DEFERRED);
    T_EQ_STR(res.dsn[0], "4.4.1");
    T_EQ_STR(res.text[0], want);
    T_EQ_INT(res.hop_failed, 1);
    T_EQ_STR(res.hop_reason, want);
    T_EQ_STR(res.att_host, "");			/* nothing was reached */
    {
	char    bare[400], line[700];

	snprintf(bare, sizeof(bare), "relayq/smtp[%d]: %s\n", (int) getpid(), want);
	T_CHECK(log_has(bare));
	snprintf(line, sizeof(line), "4A5B6C7D8E: to=<rcpt@dest.test>, relay=none, delay=1.5, "
		 "delays=1/0.5/0/0, dsn=4.4.1, status=deferred (%s)", want);
	T_CHECK(log_has(line));
    }

    log_clear();
    snprintf(dest, sizeof(dest), "smtp:[127.0.0.1]:%d", lport);
    deliver(s, m, dest, &res, 10);
    T_EQ_INT(res.status[0], SMTP_DEFERRED);
    T_EQ_STR(res.dsn[0], "4.4.2");
    T_EQ_STR(res.text[0], "conversation with 127.0.0.1[127.0.0.1] timed out while receiving the initial server greeting");
    T_EQ_INT(res.hop_failed, 1);
    snprintf(want, sizeof(want), "relay=127.0.0.1[127.0.0.1]:%d, delay=", lport);
    T_CHECK(log_has(want));

    /* Shutdown abandons a delivery in progress, reporting it deferred. */
    {
	int     idx[1] = {0};
	SMTP_REQUEST req = {m, idx, 1, dest, time_now_us()};

	memset(&res, 0, sizeof(res));
	smtp_deliver(s, &req, done_cb, &res);
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	smtp_shutdown(s);
	T_EQ_INT(res.called, 1);
	T_EQ_INT(res.status[0], SMTP_DEFERRED);
	T_EQ_STR(res.dsn[0], "4.3.0");
	T_EQ_STR(res.text[0], "delivery aborted by mail system shutdown");
	T_EQ_INT(res.hop_failed, 0);
    }
    close(lfd);
    smtp_free(s);
    freemsg(m);
    config_free(cf);
}

/*
 * A scripted server for one session: EHLO answer as given, everything
 * accepted; what arrives between DATA and "." is written to dump.
 */
static pid_t fake_server(int lfd, const char *ehlo, const char *dump)
{
    pid_t   pid = fork();

    if (pid != 0)
	return (pid);
    int     fd = accept(lfd, NULL, NULL);
    FILE   *in = fdopen(fd, "r");
    FILE   *out = fdopen(dup(fd), "w");
    FILE   *dfp = fopen(dump, "w");
    char    line[4096];
    int     data = 0;

    fprintf(out, "220 fake ESMTP\r\n");
    fflush(out);
    while (fgets(line, sizeof(line), in)) {
	if (data) {
	    fputs(line, dfp);
	    if (strcmp(line, ".\r\n") == 0) {
		data = 0;
		fprintf(out, "250 2.0.0 Ok: queued as FAKE1\r\n");
	    }
	} else if (str_has_prefix_ci(line, "EHLO")) {
	    fputs(ehlo, out);
	} else if (str_has_prefix_ci(line, "MAIL") || str_has_prefix_ci(line, "RCPT")) {
	    fputs(line, dfp);
	    fprintf(out, "250 2.1.0 Ok\r\n");
	} else if (str_has_prefix_ci(line, "DATA")) {
	    fprintf(out, "354 go ahead\r\n");
	    data = 1;
	} else if (str_has_prefix_ci(line, "QUIT")) {
	    fprintf(out, "221 2.0.0 Bye\r\n");
	    fflush(out);
	    break;
	} else {
	    fprintf(out, "502 5.5.2 what\r\n");
	}
	fflush(out);
    }
    fclose(dfp);
    _exit(0);
}

static char *slurp(const char *path)
{
    FILE   *fp = fopen(path, "r");
    BUF     b = BUF_INIT;
    char    chunk[4096];
    size_t  n;

    buf_puts(&b, "");
    if (fp) {
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
	    buf_append(&b, chunk, n);
	fclose(fp);
    }
    return (buf_steal(&b));
}

static void test_dot_stuffing_dsn_size(void)
{
    int     port;
    int     lfd = listen_on("127.0.0.1", &port);
    char    dump[400], dest[64];
    /* fake_server() takes one session and ends at QUIT: no caching here. */
    CONFIG *cf = mkcf("smtp_connection_cache_on_demand=no", NULL);
    SMTP   *s = smtp_create(base, cf);
    QMSG   *m = mkmsg("Subject: dots\r\n\r\n.leading dot\r\n..two\r\nmid.dle\r\n.\r\nno final newline", "x@dest.test", NULL);
    RES     res;
    pid_t   pid;
    char   *got;

    snprintf(dump, sizeof(dump), "%s/dump", tmpdir);
    snprintf(dest, sizeof(dest), "smtp:[127.0.0.1]:%d", port);
    m->rcpts[0].notify = QNOTIFY_SUCCESS | QNOTIFY_FAILURE;
    m->rcpts[0].orcpt = xstrdup("rfc822;x@dest.test");
    m->envid = xstrdup("ENV+1=x");		/* stored decoded, sent as xtext */
    m->ret = QRET_HDRS;
    pid = fake_server(lfd, "250-fake\r\n250-PIPELINING\r\n250-DSN\r\n250 SIZE 100000\r\n", dump);
    deliver(s, m, dest, &res, 10);
    waitpid(pid, NULL, 0);
    T_EQ_INT(res.status[0], SMTP_SENT);
    T_EQ_STR(res.text[0], "250 2.0.0 Ok: queued as FAKE1");
    got = slurp(dump);
    T_EQ_STR(got, "MAIL FROM:<sender@sender.test> SIZE=66 RET=HDRS ENVID=ENV+2B1+3Dx\r\n"
	     "RCPT TO:<x@dest.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@dest.test\r\n"
	     "Subject: dots\r\n\r\n..leading dot\r\n...two\r\nmid.dle\r\n..\r\nno final newline\r\n.\r\n");
    free(got);

    /* Without DSN the parameters are left out; SIZE over the limit bounces. */
    pid = fake_server(lfd, "250-fake\r\n250 SIZE 20\r\n", dump);
    log_clear();
    deliver(s, m, dest, &res, 10);
    waitpid(pid, NULL, 0);
    T_EQ_INT(res.status[0], SMTP_BOUNCED);
    T_EQ_STR(res.dsn[0], "5.3.4");
    T_EQ_STR(res.text[0], "message size 66 exceeds size limit 20 of server 127.0.0.1[127.0.0.1]");
    got = slurp(dump);
    T_EQ_STR(got, "");				/* no MAIL FROM was sent */
    free(got);
    close(lfd);
    free(m->rcpts[0].orcpt);
    m->rcpts[0].orcpt = NULL;
    free(m->envid);
    smtp_free(s);
    freemsg(m);
    config_free(cf);
}

static void test_error_discard(void)
{
    CONFIG *cf = mkcf(NULL);
    SMTP   *s = smtp_create(base, cf);
    QMSG   *m = mkmsg(body, "a@err.test", "b@err.test");
    RES     res;

    log_clear();
    deliver(s, m, "error:5.1.1 mailbox unavailable", &res, 5);
    T_EQ_INT(res.status[0], SMTP_BOUNCED);
    T_EQ_INT(res.status[1], SMTP_BOUNCED);
    T_EQ_STR(res.dsn[0], "5.1.1");
    T_EQ_STR(res.text[1], "mailbox unavailable");
    T_CHECK(log_has("relayq/error["));
    T_CHECK(log_has("4A5B6C7D8E: to=<a@err.test>, relay=none, delay=1.5, delays=1/0.5/0/0, dsn=5.1.1, status=bounced (mailbox unavailable)"));

    deliver(s, m, "error:no such domain here", &res, 5);
    T_EQ_STR(res.dsn[0], "5.0.0");
    T_EQ_STR(res.text[0], "no such domain here");

    log_clear();
    deliver(s, m, "discard:", &res, 5);
    T_EQ_INT(res.status[0], SMTP_SENT);
    T_EQ_STR(res.dsn[0], "2.0.0");
    T_CHECK(log_has("relayq/discard["));
    T_CHECK(log_has("to=<a@err.test>, relay=none, delay=1.5, delays=1/0.5/0/0, dsn=2.0.0, status=sent (err.test)"));
    deliver(s, m, "discard:dropped by policy", &res, 5);
    T_EQ_STR(res.text[1], "dropped by policy");
    smtp_free(s);
    freemsg(m);
    config_free(cf);
}

static void test_fallback_relay(void)
{
    int     closed = free_port(SOCK_STREAM, "127.0.0.1");
    int     port = free_port(SOCK_STREAM, "127.0.0.1");
    pid_t   sink = sink_start("127.0.0.1", port, NULL, NULL);
    char    fb[80], dest[64], want[200];
    CONFIG *cf;
    SMTP   *s;
    QMSG   *m = mkmsg(body, "a@dest.test", NULL);
    RES     res;

    snprintf(fb, sizeof(fb), "smtp_fallback_relay=[127.0.0.1]:%d", port);
    cf = mkcf(fb, NULL);
    T_CHECK(sink > 0 && cf);
    if (sink <= 0 || !cf)
	return;
    s = smtp_create(base, cf);
    log_clear();
    snprintf(dest, sizeof(dest), "smtp:[127.0.0.1]:%d", closed);
    deliver(s, m, dest, &res, 10);
    T_EQ_INT(res.status[0], SMTP_SENT);
    T_EQ_INT(res.hop_failed, 0);
    snprintf(want, sizeof(want), "connect to 127.0.0.1[127.0.0.1]:%d: Connection refused", closed);
    T_CHECK(log_has(want));
    snprintf(want, sizeof(want), "relay=127.0.0.1[127.0.0.1]:%d, ", port);
    T_CHECK(log_has(want));
    smtp_free(s);
    reap(sink);
    freemsg(m);
    config_free(cf);
}

/*
 * Wait (up to 20 s) until a DNS server answers on 127.0.0.1:port: a fixed
 * sleep after starting dnsmasq is not enough on a loaded machine, and a
 * resolver that times out turns the first lookup into a deferral.
 */
static int wait_dns(int port)
{
    static const unsigned char q[] = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
	4, 'n', 'o', 'm', 'x', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1};
    struct sockaddr_in sin;
    unsigned char ans[512];
    time_t  deadline = time(NULL) + 20;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t) port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    while (time(NULL) < deadline) {
	int     fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	ssize_t n = -1;

	if (fd < 0)
	    return (-1);
	if (connect(fd, (struct sockaddr *) &sin, sizeof(sin)) == 0
	    && send(fd, q, sizeof(q), 0) == (ssize_t) sizeof(q) && poll(&pfd, 1, 250) == 1)
	    n = recv(fd, ans, sizeof(ans), 0);
	close(fd);
	if (n >= 12 && ans[0] == 0x12 && ans[1] == 0x34)
	    return (0);
	usleep(50000);
    }
    return (-1);
}

/* dnsmasq with MX records: mx1 (pref 10) refuses, mx2 (pref 20) accepts. */
static void test_mx_dnsmasq(void)
{
    int     dport = free_port(SOCK_DGRAM, "127.0.0.1");
    int     port = free_port(SOCK_STREAM, "127.0.0.3");
    char    a_port[32], servers[64], dest[64], want[300];
    pid_t   dns, sink;
    CONFIG *cf;
    SMTP   *s;
    QMSG   *m = mkmsg(body, "a@dest.test", NULL);
    RES     res;

    if (access("/usr/sbin/dnsmasq", X_OK) != 0) {
	printf("(skipped: no dnsmasq) ");
	freemsg(m);
	return;
    }
    snprintf(a_port, sizeof(a_port), "--port=%d", dport);
    char   *argv[] = {"/usr/sbin/dnsmasq", "--no-daemon", a_port, "--listen-address=127.0.0.1",
	"--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--user=root",
	"--local=/test/", "--mx-host=dest.test,mx1.dest.test,10",
	"--mx-host=dest.test,mx2.dest.test,20", "--host-record=mx1.dest.test,127.0.0.2",
	"--host-record=mx2.dest.test,127.0.0.3", "--host-record=nomx.test,127.0.0.3", NULL};

    dns = spawn(argv);
    sink = sink_start("127.0.0.3", port, NULL, NULL);
    snprintf(servers, sizeof(servers), "dns_servers=127.0.0.1:%d", dport);
    cf = mkcf(servers, "relayq_mx_random_seed=7", NULL);
    T_CHECK(sink > 0 && cf);
    if (sink <= 0 || !cf)
	goto out;
    T_CHECK(wait_dns(dport) == 0);
    s = smtp_create(base, cf);
    log_clear();
    snprintf(dest, sizeof(dest), "smtp:dest.test:%d", port);
    deliver(s, m, dest, &res, 15);
    T_EQ_INT(res.status[0], SMTP_SENT);
    snprintf(want, sizeof(want), "connect to mx1.dest.test[127.0.0.2]:%d: Connection refused", port);
    T_CHECK(log_has(want));
    snprintf(want, sizeof(want), "relay=mx2.dest.test[127.0.0.3]:%d, ", port);
    T_CHECK(log_has(want));
    T_EQ_STR(res.att_host, "mx2.dest.test");

    /* No MX: the domain's own address. */
    snprintf(dest, sizeof(dest), "smtp:nomx.test:%d", port);
    deliver(s, m, dest, &res, 15);
    T_EQ_INT(res.status[0], SMTP_SENT);

    /* A domain that does not exist bounces. */
    log_clear();
    deliver(s, m, "smtp:nx.test", &res, 15);
    T_EQ_INT(res.status[0], SMTP_BOUNCED);
    T_EQ_STR(res.dsn[0], "5.4.4");
    T_EQ_STR(res.text[0], "Host or domain name not found. Name service error for name=nx.test type=A: Host not found");
    T_EQ_INT(res.hop_failed, 0);
    smtp_free(s);

    /* A resolver that does not answer: deferred, try again. */
    {
	int     dead = free_port(SOCK_DGRAM, "127.0.0.1");
	CONFIG *cf2;

	snprintf(servers, sizeof(servers), "dns_servers=127.0.0.1:%d", dead);
	cf2 = mkcf(servers, NULL);
	s = smtp_create(base, cf2);
	deliver(s, m, "smtp:dest.test", &res, 30);
	T_EQ_INT(res.status[0], SMTP_DEFERRED);
	T_EQ_STR(res.dsn[0], "4.4.3");
	T_EQ_STR(res.text[0], "Host or domain name not found. Name service error for name=dest.test type=MX: Host not found, try again");
	smtp_free(s);
	config_free(cf2);
    }
out:
    reap(sink);
    reap(dns);
    freemsg(m);
    config_free(cf);
}

/* ---- the connection cache ---------------------------------------------- */

#define SRV_CLOSE_IDLE 1			/* close a session idle for 300 ms after a transaction */
#define SRV_421_REUSE  2			/* answer a second MAIL on one session with 421 and close */

/*
 * A scripted server for the cache tests, in a child: takes nconn sessions
 * one after another and writes a transcript to dump: "connect", each
 * command's verb (the final dot as "."), and how the session ended ("idle
 * close", "421 close"; QUIT ends it too).  "RCPT TO:<bad...>" gets 550.
 */
static pid_t cache_server(int lfd, int mode, int nconn, const char *dump)
{
    pid_t   pid = fork();

    if (pid != 0)
	return (pid);
    alarm(20);
    FILE   *dfp = fopen(dump, "w");

    setvbuf(dfp, NULL, _IOLBF, 0);
    for (int n = 0; n < nconn; n++) {
	int     fd = accept(lfd, NULL, NULL);
	FILE   *in = fdopen(fd, "r");
	FILE   *out = fdopen(dup(fd), "w");
	char    line[4096];
	int     data = 0, mails = 0, rcpts = 0, xact_done = 0;

	fprintf(dfp, "connect\n");
	fprintf(out, "220 fake ESMTP\r\n");
	fflush(out);
	for (;;) {
	    if ((mode & SRV_CLOSE_IDLE) && xact_done) {
		struct pollfd pfd = {fileno(in), POLLIN, 0};

		xact_done = 0;
		if (poll(&pfd, 1, 300) == 0) {
		    fprintf(dfp, "idle close\n");
		    break;
		}
	    }
	    if (fgets(line, sizeof(line), in) == NULL) {
		fprintf(dfp, "eof\n");
		break;
	    }
	    if (data) {
		if (strcmp(line, ".\r\n") == 0) {
		    data = 0;
		    xact_done = 1;
		    fprintf(dfp, ".\n");
		    fprintf(out, "250 2.0.0 Ok: queued as FAKE%d\r\n", n + 1);
		    fflush(out);
		}
		continue;
	    }
	    fprintf(dfp, "%.4s\n", line);
	    if (str_has_prefix_ci(line, "EHLO")) {
		fputs("250-fake\r\n250-PIPELINING\r\n250 8BITMIME\r\n", out);
	    } else if (str_has_prefix_ci(line, "MAIL")) {
		rcpts = 0;
		if ((mode & SRV_421_REUSE) && mails++ > 0) {
		    fprintf(out, "421 4.4.2 fake: idle too long\r\n");
		    fprintf(dfp, "421 close\n");
		    break;
		}
		fprintf(out, "250 2.1.0 Ok\r\n");
	    } else if (str_has_prefix_ci(line, "RCPT")) {
		if (str_has_prefix_ci(line, "RCPT TO:<bad")) {
		    fprintf(out, "550 5.1.1 no such user\r\n");
		} else {
		    fprintf(out, "250 2.1.5 Ok\r\n");
		    rcpts++;
		}
	    } else if (str_has_prefix_ci(line, "DATA")) {
		if (rcpts == 0) {
		    fprintf(out, "554 5.5.1 Error: no valid recipients\r\n");
		} else {
		    fprintf(out, "354 go ahead\r\n");
		    data = 1;
		}
	    } else if (str_has_prefix_ci(line, "RSET")) {
		fprintf(out, "250 2.0.0 Ok\r\n");
	    } else if (str_has_prefix_ci(line, "QUIT")) {
		fprintf(out, "221 2.0.0 Bye\r\n");
		break;
	    } else {
		fprintf(out, "502 5.5.2 what\r\n");
	    }
	    fflush(out);
	}
	fclose(out);
	fclose(in);
    }
    fclose(dfp);
    _exit(0);
}

/* Run the event loop for up to secs, until dump contains want. */
static int loop_until_dump(const char *dump, const char *want, int secs)
{
    int64_t deadline = time_mono_us() + secs * 1000000LL;
    int     found = 0;

    while (!found && time_mono_us() < deadline) {
	char   *got;

	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	usleep(2000);
	got = slurp(dump);
	found = strstr(got, want) != NULL;
	free(got);
    }
    return (found);
}

#define XACT "MAIL\nRCPT\nDATA\n.\n"

/* The c of the first "delays=a/b/c/d" in text. */
static const char *delays_c(const char *text)
{
    static char c[32];
    const char *p = strstr(text, "delays=");
    int     slash = 0;
    size_t  n = 0;

    c[0] = 0;
    if (p == NULL)
	return (c);
    for (p += 7; *p && *p != ',' && slash < 3; p++) {
	if (*p == '/')
	    slash++;
	else if (slash == 2 && n < sizeof(c) - 1)
	    c[n++] = *p;
    }
    c[n] = 0;
    return (c);
}

static void test_cache_reuse(void)
{
    int     port;
    int     lfd = listen_on("127.0.0.1", &port);
    char    dump[400], dest[64], want[256];
    CONFIG *cf = mkcf(NULL);
    SMTP   *s = smtp_create(base, cf);
    QMSG   *m = mkmsg(body, "a@dest.test", NULL);
    QMSG   *bad = mkmsg(body, "bad@dest.test", NULL);
    RES     res;
    pid_t   pid;
    char   *got;

    snprintf(dump, sizeof(dump), "%s/cache1", tmpdir);
    snprintf(dest, sizeof(dest), "smtp:[127.0.0.1]:%d", port);
    pid = cache_server(lfd, 0, 1, dump);

    /* Two deliveries back to back: one connection, the second says conn_use=2. */
    log_clear();
    deliver(s, m, dest, &res, 10);
    T_EQ_INT(res.status[0], SMTP_SENT);
    T_EQ_STR(res.text[0], "250 2.0.0 Ok: queued as FAKE1");
    T_CHECK(log_has("to=<a@dest.test>, relay=127.0.0.1[127.0.0.1]:"));
    got = log_read();
    T_CHECK(strstr(got, "conn_use=") == NULL);
    free(got);
    log_clear();
    deliver(s, m, dest, &res, 10);
    T_EQ_INT(res.status[0], SMTP_SENT);
    T_EQ_STR(res.text[0], "250 2.0.0 Ok: queued as FAKE1");
    snprintf(want, sizeof(want), "to=<a@dest.test>, relay=127.0.0.1[127.0.0.1]:%d, conn_use=2, delay=", port);
    T_CHECK(log_has(want));
    got = log_read();
    T_EQ_STR(delays_c(got), "0");		/* no set-up */
    free(got);

    /* A rejected recipient: RSET, and the session serves a third time. */
    log_clear();
    deliver(s, bad, dest, &res, 10);
    T_EQ_INT(res.status[0], SMTP_BOUNCED);
    T_CHECK(log_has("to=<bad@dest.test>, relay=127.0.0.1[127.0.0.1]:"));
    T_CHECK(log_has(", conn_use=3, "));
    deliver(s, m, dest, &res, 10);
    T_EQ_INT(res.status[0], SMTP_SENT);
    T_CHECK(log_has(", conn_use=4, "));
    got = slurp(dump);
    T_EQ_STR(got, "connect\nEHLO\n" XACT XACT "MAIL\nRCPT\nDATA\nRSET\n" XACT);
    free(got);

    /* smtp_free() says QUIT to the cached session. */
    smtp_free(s);
    waitpid(pid, NULL, 0);
    got = slurp(dump);
    T_EQ_STR(got, "connect\nEHLO\n" XACT XACT "MAIL\nRCPT\nDATA\nRSET\n" XACT "QUIT\n");
    free(got);
    close(lfd);
    freemsg(m);
    freemsg(bad);
    config_free(cf);
}

/* The server closed the cached session: the next delivery connects afresh, no failure shown. */
static void test_cache_dead_session(void)
{
    static const int modes[] = {SRV_CLOSE_IDLE, SRV_421_REUSE};
    static const char *wants[] = {
	"connect\nEHLO\n" XACT "idle close\nconnect\nEHLO\n" XACT,
	"connect\nEHLO\n" XACT "MAIL\n421 close\nconnect\nEHLO\n" XACT,
    };

    for (int i = 0; i < 2; i++) {
	int     port;
	int     lfd = listen_on("127.0.0.1", &port);
	char    dump[400], dest[64], want[256];
	CONFIG *cf = mkcf(NULL);
	SMTP   *s = smtp_create(base, cf);
	QMSG   *m = mkmsg(body, "a@dest.test", NULL);
	RES     res;
	pid_t   pid;
	char   *got;

	snprintf(dump, sizeof(dump), "%s/cache2", tmpdir);
	snprintf(dest, sizeof(dest), "smtp:[127.0.0.1]:%d", port);
	pid = cache_server(lfd, modes[i], 2, dump);
	deliver(s, m, dest, &res, 10);
	T_EQ_INT(res.status[0], SMTP_SENT);
	if (modes[i] == SRV_CLOSE_IDLE)
	    usleep(700000);			/* the server gives up on the idle session */
	log_clear();
	deliver(s, m, dest, &res, 10);
	T_EQ_INT(res.status[0], SMTP_SENT);
	T_EQ_STR(res.text[0], "250 2.0.0 Ok: queued as FAKE2");
	T_EQ_INT(res.hop_failed, 0);
	snprintf(want, sizeof(want), "to=<a@dest.test>, relay=127.0.0.1[127.0.0.1]:%d, delay=", port);
	T_CHECK(log_has(want));			/* a new session: no conn_use */
	got = log_read();
	T_CHECK(strstr(got, "lost connection") == NULL && strstr(got, "idle too long") == NULL
		&& strstr(got, "deferred") == NULL);
	free(got);
	got = slurp(dump);
	T_CHECK(strncmp(got, wants[i], strlen(wants[i])) == 0);
	if (strncmp(got, wants[i], strlen(wants[i])) != 0)
	    printf("\n    transcript: %s\n", got);
	free(got);
	smtp_free(s);
	waitpid(pid, NULL, 0);
	close(lfd);
	freemsg(m);
	config_free(cf);
    }
}

/* smtp_connection_cache_time_limit: the idle session gets QUIT; then a new one. */
static void test_cache_limits(void)
{
    int     port;
    int     lfd = listen_on("127.0.0.1", &port);
    char    dump[400], dest[64];
    CONFIG *cf = mkcf("smtp_connection_cache_time_limit=1s", NULL);
    SMTP   *s = smtp_create(base, cf);
    QMSG   *m = mkmsg(body, "a@dest.test", NULL);
    RES     res;
    pid_t   pid;
    char   *got;
    int64_t t0;

    snprintf(dump, sizeof(dump), "%s/cache3", tmpdir);
    snprintf(dest, sizeof(dest), "smtp:[127.0.0.1]:%d", port);
    pid = cache_server(lfd, 0, 2, dump);
    deliver(s, m, dest, &res, 10);
    T_EQ_INT(res.status[0], SMTP_SENT);
    t0 = time_mono_us();
    T_CHECK(loop_until_dump(dump, "QUIT", 4));
    T_CHECK(time_mono_us() - t0 > 800000);	/* not before the limit */
    log_clear();
    deliver(s, m, dest, &res, 10);
    T_EQ_INT(res.status[0], SMTP_SENT);
    got = log_read();
    T_CHECK(strstr(got, "conn_use=") == NULL);
    free(got);
    smtp_free(s);
    waitpid(pid, NULL, 0);
    got = slurp(dump);
    T_EQ_STR(got, "connect\nEHLO\n" XACT "QUIT\nconnect\nEHLO\n" XACT "QUIT\n");
    free(got);
    config_free(cf);

    /* smtp_connection_reuse_count_limit=2: QUIT after the second delivery. */
    cf = mkcf("smtp_connection_reuse_count_limit=2", NULL);
    s = smtp_create(base, cf);
    pid = cache_server(lfd, 0, 2, dump);
    for (int i = 0; i < 3; i++) {
	deliver(s, m, dest, &res, 10);
	T_EQ_INT(res.status[0], SMTP_SENT);
    }
    T_CHECK(loop_until_dump(dump, "connect\nEHLO\n" XACT XACT "QUIT\nconnect\nEHLO\n" XACT, 3));
    smtp_free(s);
    waitpid(pid, NULL, 0);
    config_free(cf);

    /* smtp_connection_cache_on_demand=no: QUIT after every delivery. */
    cf = mkcf("smtp_connection_cache_on_demand=no", NULL);
    s = smtp_create(base, cf);
    pid = cache_server(lfd, 0, 2, dump);
    for (int i = 0; i < 2; i++) {
	deliver(s, m, dest, &res, 10);
	T_EQ_INT(res.status[0], SMTP_SENT);
    }
    T_CHECK(loop_until_dump(dump, "connect\nEHLO\n" XACT "QUIT\nconnect\nEHLO\n" XACT "QUIT\n", 3));
    smtp_free(s);
    waitpid(pid, NULL, 0);
    config_free(cf);

    /* smtp_shutdown() closes the idle session with QUIT through the loop. */
    cf = mkcf(NULL);
    s = smtp_create(base, cf);
    pid = cache_server(lfd, 0, 1, dump);
    deliver(s, m, dest, &res, 10);
    T_EQ_INT(res.status[0], SMTP_SENT);
    smtp_shutdown(s);
    T_CHECK(loop_until_dump(dump, "connect\nEHLO\n" XACT "QUIT\n", 3));
    smtp_free(s);
    waitpid(pid, NULL, 0);
    config_free(cf);
    close(lfd);
    freemsg(m);
}

int     main(void)
{
    char    err[256];

    signal(SIGPIPE, SIG_IGN);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_smtp.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
	return (1);
    snprintf(logpath, sizeof(logpath), "%s/maillog", tmpdir);
    if (log_open(logpath, "relayq", "mta.test", err, sizeof(err)) < 0) {
	printf("log_open: %s\n", err);
	return (1);
    }
    base = event_base_new();
    T_RUN(test_route_table);
    T_RUN(test_route_errors);
    T_RUN(test_route_sender_relayhost);
    T_RUN(test_nexthop_parse);
    T_RUN(test_reply_dsn);
    T_RUN(test_error_discard);
    T_RUN(test_deliver_sink);
    T_RUN(test_deliver_rejects);
    T_RUN(test_refused_and_timeouts);
    T_RUN(test_dot_stuffing_dsn_size);
    T_RUN(test_fallback_relay);
    T_RUN(test_mx_dnsmasq);
    T_RUN(test_cache_reuse);
    T_RUN(test_cache_dead_session);
    T_RUN(test_cache_limits);
    event_base_free(base);
    log_close();
    {
	char    cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
	    printf("could not remove %s\n", tmpdir);
    }
    return (t_done());
}
