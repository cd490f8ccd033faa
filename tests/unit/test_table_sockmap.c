/*
 * test_table_sockmap - socketmap: against a small server on loopback and
 * on a UNIX socket: answers, not found, TEMP, a server that hangs (the
 * timeout, shortened for the test), a bad netstring, a reply too large, a
 * connection closed without a reply, a refused connection, a server
 * restart (retried once); then the asynchronous path on a libevent loop:
 * mixed with inline tables, the domain search order, the timeout, a
 * cancelled request, and recovery after each error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "t.h"
#include "util/util.h"
#include "table/table.h"

static char tmpdir[64];
static int port;			/* of the last listener made */
static int srv_port;			/* the server's */
static char unix_path[100];
static pid_t srv_tcp, srv_unix;

/* ---- the test server ---------------------------------------------------- */

static void serve_conn(int c)
{
    char    buf[70000];
    size_t  len = 0;
    ssize_t n;

    for (;;) {
	char   *colon;
	size_t  need;

	if ((n = read(c, buf + len, sizeof(buf) - 1 - len)) <= 0)
	    return;
	len += n;
	buf[len] = 0;
	while ((colon = memchr(buf, ':', len)) != NULL) {
	    char   *req, *key, reply[512];
	    size_t  rlen = (size_t) atoi(buf);

	    need = (colon - buf) + 1 + rlen + 1;
	    if (len < need)
		break;
	    req = colon + 1;
	    req[rlen] = 0;
	    key = strchr(req, ' ');
	    key = key ? key + 1 : req;
	    if (strcmp(key, "hang") == 0) {
		sleep(8);
		return;
	    } else if (strcmp(key, "close") == 0) {
		return;
	    } else if (strcmp(key, "bad") == 0) {
		snprintf(reply, sizeof(reply), "xx:garbage");
	    } else if (strcmp(key, "big") == 0) {
		snprintf(reply, sizeof(reply), "200000:");
	    } else if (strcmp(key, "temp") == 0) {
		snprintf(reply, sizeof(reply), "14:TEMP try later,");
	    } else if (strcmp(key, "perm") == 0) {
		snprintf(reply, sizeof(reply), "17:PERM \x01no such map,");
	    } else if (key[0] == 'k' || strncmp(key, ".k", 2) == 0) {
		char    body[400];

		snprintf(body, sizeof(body), "OK %.*s=%s", (int) (key - req - 1), req, key);
		snprintf(reply, sizeof(reply), "%zu:%s,", strlen(body), body);
	    } else {
		snprintf(reply, sizeof(reply), "9:NOTFOUND ,");
	    }
	    if (write(c, reply, strlen(reply)) < 0)
		return;
	    memmove(buf, buf + need, len - need);
	    len -= need;
	}
    }
}

static pid_t start_server(int lfd)
{
    pid_t   pid = fork();

    if (pid == 0) {
	int     devnull = open("/dev/null", O_WRONLY);

	/* Own process group (stop() kills it whole); off the test's stdout. */
	setpgid(0, 0);
	dup2(devnull, 1);
	dup2(devnull, 2);
	signal(SIGCHLD, SIG_IGN);
	for (;;) {
	    int     c = accept(lfd, NULL, NULL);

	    if (c < 0)
		continue;
	    if (fork() == 0) {
		close(lfd);
		serve_conn(c);
		_exit(0);
	    }
	    close(c);
	}
    }
    close(lfd);
    return (pid);
}

static int tcp_listener(int want_port)
{
    int     fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);

    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(want_port);
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    if (bind(fd, (struct sockaddr *) &sin, sizeof(sin)) < 0 || listen(fd, 16) < 0)
	return (-1);
    getsockname(fd, (struct sockaddr *) &sin, &sl);
    port = ntohs(sin.sin_port);
    return (fd);
}

static void stop(pid_t pid)
{
    if (pid > 0) {
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
    }
}

static char warned[512];

static void catch_warn(const char *msg)
{
    snprintf(warned, sizeof(warned), "%s", msg);
}

/* ---- synchronous ------------------------------------------------------- */

static char spec_tcp[128], spec_unix[400];

static int q(const char *spec, const char *key, char *out, size_t outlen)
{
    static TABLE *t;
    static char last[400];
    char    err[512];
    const char *v;
    int     rc;

    if (t == NULL || strcmp(last, spec) != 0) {
	table_close(t);
	snprintf(last, sizeof(last), "%s", spec);
	if ((t = table_open(spec, TABLE_FLAG_FOLD, NULL, err, sizeof(err))) == NULL) {
	    snprintf(out, outlen, "(open) %s", err);
	    return (TABLE_ERROR);
	}
    }
    rc = table_lookup(t, key, &v, err, sizeof(err));
    snprintf(out, outlen, "%s", rc == TABLE_FOUND ? v : rc == TABLE_ERROR ? err : "");
    return (rc);
}

static void test_sync(void)
{
    char    out[1024];
    time_t  t0;

    T_EQ_INT(q(spec_tcp, "kAbc", out, sizeof(out)), TABLE_FOUND);
    T_EQ_STR(out, "mymap=kAbc");			/* not folded, as Postfix */
    T_EQ_INT(q(spec_tcp, "nothing", out, sizeof(out)), TABLE_NOTFOUND);
    T_EQ_INT(q(spec_tcp, "temp", out, sizeof(out)), TABLE_ERROR);
    T_CHECK(strstr(out, "socketmap server inet:127.0.0.1:") && strstr(out, "temporary error: try later"));
    T_EQ_INT(q(spec_tcp, "perm", out, sizeof(out)), TABLE_ERROR);
    T_CHECK(strstr(out, "permanent error: ?no such map") != NULL);
    T_EQ_INT(q(spec_tcp, "bad", out, sizeof(out)), TABLE_ERROR);
    T_CHECK(strstr(out, "malformed netstring") != NULL);
    T_EQ_INT(q(spec_tcp, "big", out, sizeof(out)), TABLE_ERROR);
    T_CHECK(strstr(out, "reply too large") != NULL);
    T_EQ_INT(q(spec_tcp, "kagain", out, sizeof(out)), TABLE_FOUND);
    T_EQ_INT(q(spec_tcp, "close", out, sizeof(out)), TABLE_ERROR);
    T_CHECK(strstr(out, "closed the connection") != NULL);
    t0 = time(NULL);
    T_EQ_INT(q(spec_tcp, "hang", out, sizeof(out)), TABLE_ERROR);
    T_CHECK(strstr(out, "timeout") != NULL);
    T_CHECK(time(NULL) - t0 >= 1 && time(NULL) - t0 <= 10);
    T_EQ_INT(q(spec_tcp, "kafter", out, sizeof(out)), TABLE_FOUND);
    /* Over a UNIX socket. */
    T_EQ_INT(q(spec_unix, "kunix", out, sizeof(out)), TABLE_FOUND);
    T_EQ_STR(out, "umap=kunix");
    /* A key longer than Postfix's 10000-byte query limit is not found. */
    {
	char   *longkey = xmalloc(10002);

	memset(longkey, 'k', 10001);
	longkey[10001] = 0;
	T_EQ_INT(q(spec_tcp, longkey, out, sizeof(out)), TABLE_NOTFOUND);
	T_CHECK(strstr(warned, "query too large") != NULL);
	free(longkey);
    }
    /* Nobody listening. */
    {
	char    s[128];
	int     fd = tcp_listener(0), dead = port;

	close(fd);
	snprintf(s, sizeof(s), "socketmap:inet:127.0.0.1:%d:x", dead);
	T_EQ_INT(q(s, "k", out, sizeof(out)), TABLE_ERROR);
	T_CHECK(strstr(out, "Connection refused") != NULL);
    }
    /* Bad specs. */
    T_EQ_INT(q("socketmap:inet:127.0.0.1", "k", out, sizeof(out)), TABLE_ERROR);
    T_CHECK(strstr(out, "inet:host:port") != NULL);
    T_EQ_INT(q("socketmap:tcp:1.2.3.4:5:x", "k", out, sizeof(out)), TABLE_ERROR);
    T_CHECK(strstr(out, "inet:host:port or unix:/path") != NULL);
}

static void test_restart(void)
{
    char    out[512], s[128];
    int     p0;

    snprintf(s, sizeof(s), "%s", spec_tcp);
    T_EQ_INT(q(s, "kone", out, sizeof(out)), TABLE_FOUND);
    /* The server restarts on the same port: the reused connection breaks, one retry. */
    p0 = srv_port;
    stop(srv_tcp);
    srv_tcp = start_server(tcp_listener(p0));
    T_EQ_INT(port, p0);
    T_EQ_INT(q(s, "ktwo", out, sizeof(out)), TABLE_FOUND);
    T_EQ_STR(out, "mymap=ktwo");
}

/* ---- asynchronous ------------------------------------------------------ */

static struct event_base *base;
static int done_status, done_calls;
static char done_val[512];

static void cb(int status, const char *val, const char *err, void *arg)
{
    done_status = status;
    snprintf(done_val, sizeof(done_val), "%s", val ? val : err ? err : "");
    done_calls++;
}

/* Run the loop until the callback has run (at most secs seconds). */
static void wait_cb(int calls, int secs)
{
    time_t  t0 = time(NULL);

    while (done_calls < calls && time(NULL) - t0 < secs)
	event_base_loop(base, EVLOOP_ONCE);
}

static void test_async(void)
{
    char    err[512], value[700];
    TABLE_LIST *l;
    TABLE_REQ *r;
    int     calls = 0;

    snprintf(value, sizeof(value), "inline:{ x=inl }, %s", spec_tcp);
    l = table_list_open("smtp_tls_policy_maps", value, TABLE_FLAG_FOLD, err, sizeof(err));
    T_CHECK(l != NULL);
    if (l == NULL)
	return;
    table_set_event_base(base);

    /* A local answer completes inside the call. */
    r = table_list_find_async(l, "x", 0, cb, NULL);
    T_CHECK(r == NULL);
    T_EQ_INT(done_calls, ++calls);
    T_EQ_STR(done_val, "inl");

    /* The socketmap answers later, on the loop. */
    r = table_list_find_async(l, "kasync", 0, cb, NULL);
    T_CHECK(r != NULL);
    T_EQ_INT(done_calls, calls);
    wait_cb(++calls, 10);
    T_EQ_INT(done_calls, calls);
    T_EQ_INT(done_status, TABLE_FOUND);
    T_EQ_STR(done_val, "mymap=kasync");

    /* Domain order: a.b.kz, .b.kz, .kz - the third one matches. */
    r = table_find_domain_async(l, "a.b.kz", TABLE_DOM_DOTPARENT, cb, NULL);
    wait_cb(++calls, 10);
    T_EQ_INT(done_status, TABLE_FOUND);
    T_EQ_STR(done_val, "mymap=.kz");

    r = table_list_find_async(l, "nothing", 0, cb, NULL);
    wait_cb(++calls, 10);
    T_EQ_INT(done_status, TABLE_NOTFOUND);

    /* A bad netstring fails that request; the next one reconnects. */
    r = table_list_find_async(l, "bad", 0, cb, NULL);
    wait_cb(++calls, 10);
    T_EQ_INT(done_status, TABLE_ERROR);
    T_CHECK(strstr(done_val, "malformed netstring") != NULL);
    r = table_list_find_async(l, "kok", 0, cb, NULL);
    wait_cb(++calls, 10);
    T_EQ_INT(done_status, TABLE_FOUND);

    /* A hanging server: the timeout, then the queued request behind it is served. */
    {
	time_t  t0 = time(NULL);

	r = table_list_find_async(l, "hang", 0, cb, NULL);
	wait_cb(++calls, 15);
	T_EQ_INT(done_status, TABLE_ERROR);
	T_CHECK(strstr(done_val, "timeout") != NULL);
	T_CHECK(time(NULL) - t0 >= 1);
    }

    /* Cancelled while in flight: the callback never runs. */
    r = table_list_find_async(l, "hang", 0, cb, NULL);
    T_CHECK(r != NULL);
    table_cancel(r);
    r = table_list_find_async(l, "klater", 0, cb, NULL);
    wait_cb(++calls, 15);
    T_EQ_INT(done_calls, calls);
    T_EQ_INT(done_status, TABLE_FOUND);
    T_EQ_STR(done_val, "mymap=klater");

    /* Connection refused, asynchronously. */
    {
	char    s[128];
	int     fd = tcp_listener(0), dead = port;
	TABLE_LIST *l2;

	close(fd);
	snprintf(s, sizeof(s), "socketmap:inet:127.0.0.1:%d:x", dead);
	l2 = table_list_open("p", s, 0, err, sizeof(err));
	r = table_list_find_async(l2, "k", 0, cb, NULL);
	wait_cb(++calls, 10);
	T_EQ_INT(done_status, TABLE_ERROR);
	T_CHECK(strstr(done_val, "connect to socketmap server") != NULL);
	table_list_close(l2);
    }
    table_list_close(l);
    table_set_event_base(NULL);
}

int     main(void)
{
    int     ufd;
    struct sockaddr_un sun;

    signal(SIGPIPE, SIG_IGN);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_table_sm.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
	return (1);
    table_set_sockmap_limits(2, 10, 100);
    srv_tcp = start_server(tcp_listener(0));
    srv_port = port;
    snprintf(spec_tcp, sizeof(spec_tcp), "socketmap:inet:127.0.0.1:%d:mymap", port);
    snprintf(unix_path, sizeof(unix_path), "%s/sock", tmpdir);
    ufd = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", unix_path);
    bind(ufd, (struct sockaddr *) &sun, sizeof(sun));
    listen(ufd, 8);
    srv_unix = start_server(ufd);
    snprintf(spec_unix, sizeof(spec_unix), "socketmap:unix:%s:umap", unix_path);
    base = event_base_new();
    table_set_warn(catch_warn);

    T_RUN(test_sync);
    T_RUN(test_restart);
    T_RUN(test_async);

    stop(srv_tcp);
    stop(srv_unix);
    event_base_free(base);
    {
	char    cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
	    printf("cleanup failed\n");
    }
    return (t_done());
}
