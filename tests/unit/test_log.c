/*
 * test_log - the Postfix log line format, one write per line (no tearing or
 * interleaving between threads and processes), log_reopen(), and delay=
 * number formatting.
 */
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "t.h"
#include "util/util.h"
#include "log/log.h"

static char tmpdir[64];

/* slurp - a whole file as a string ("" when absent) */

static char *slurp(const char *path)
{
    BUF     b = BUF_INIT;
    char    chunk[4096];
    size_t  n;
    FILE   *fp = fopen(path, "r");

    buf_puts(&b, "");
    if (fp) {
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
	    buf_append(&b, chunk, n);
	fclose(fp);
    }
    return (buf_steal(&b));
}

/* matches - whole-string POSIX extended regex match */

static int matches(const char *re, const char *s)
{
    regex_t r;
    int     ok;

    if (regcomp(&r, re, REG_EXTENDED | REG_NOSUB) != 0) {
	printf("bad regex %s\n", re);
	return (0);
    }
    ok = regexec(&r, s, 0, 0, 0) == 0;
    regfree(&r);
    return (ok);
}

/* stamp - "Mmm dd hh:mm:ss" of t, as syslog writes it */

static void stamp(time_t t, char *out, size_t len)
{
    static const char *mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;

    localtime_r(&t, &tm);
    snprintf(out, len, "%s %2d %02d:%02d:%02d", mon[tm.tm_mon], tm.tm_mday,
	     tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void test_line_format(void)
{
    char    path[128], err[256], re[512], t0s[32], t1s[32];
    char   *text;
    time_t  t0, t1;

    snprintf(path, sizeof(path), "%s/maillog", tmpdir);
    unlink(path);
    msg_stderr(0);				/* log_warn: the log only */
    T_EQ_INT(log_open(path, "relayq", "mx.example.test", err, sizeof(err)), 0);
    T_CHECK(log_fd() > 2);
    t0 = time(0);
    log_msg("smtpd", "connect from %s[%s]", "client.test", "127.0.0.1");
    log_warn("qmgr", "bounce_queue_lifetime is capped at %ds", 60);
    log_msg("cleanup", "two\nlines\r");
    t1 = time(0);
    log_close();
    msg_stderr(1);
    text = slurp(path);

    /* Exact text after the time stamp. */
    snprintf(re, sizeof(re),
	     "^[A-Z][a-z]{2} [ 1-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-5][0-9] mx relayq/smtpd\\[%ld\\]: "
	     "connect from client\\.test\\[127\\.0\\.0\\.1\\]\n"
	     "[A-Z][a-z]{2} [ 1-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-5][0-9] mx relayq/qmgr\\[%ld\\]: "
	     "warning: bounce_queue_lifetime is capped at 60s\n"
	     "[A-Z][a-z]{2} [ 1-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-5][0-9] mx relayq/cleanup\\[%ld\\]: "
	     "two\\?lines\\?\n$", (long) getpid(), (long) getpid(), (long) getpid());
    if (!matches(re, text))
	T_FAILF("log text does not match:\n%s", text);

    /* The stamp is local time now, with the day padded as syslog does. */
    stamp(t0, t0s, sizeof(t0s));
    stamp(t1, t1s, sizeof(t1s));
    T_CHECK(strncmp(text, t0s, 15) == 0 || strncmp(text, t1s, 15) == 0);

    /* Appended, not truncated, on the next open. */
    T_EQ_INT(log_open(path, "custom", "bare", err, sizeof(err)), 0);
    log_msg("master", "daemon started");
    log_close();
    free(text);
    text = slurp(path);
    snprintf(re, sizeof(re), "^([^\n]*\n){3}[A-Z][a-z]{2} [ 1-3][0-9] [0-9:]{8} bare "
	     "custom/master\\[%ld\\]: daemon started\n$", (long) getpid());
    T_CHECK(matches(re, text));
    free(text);
    unlink(path);

    /* An unwritable path is an error naming it. */
    T_EQ_INT(log_open("/nonexistent-dir/maillog", "relayq", "h", err, sizeof(err)), -1);
    T_CHECK(strstr(err, "/nonexistent-dir/maillog") != 0);
}

/* Before log_open(): stderr, same format, host from gethostname(). */

static void test_early_stderr(void)
{
    char    path[128], re[512], host[256];
    char   *text;
    int     saved, fd;

    snprintf(path, sizeof(path), "%s/stderr", tmpdir);
    fflush(stderr);
    saved = dup(2);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
    T_EQ_INT(log_fd(), 2);
    log_msg("pickup", "hello %d", 42);
    dup2(saved, 2);
    close(saved);
    text = slurp(path);
    gethostname(host, sizeof(host));
    host[strcspn(host, ".")] = 0;
    snprintf(re, sizeof(re), "^[A-Z][a-z]{2} [ 1-3][0-9] [0-9:]{8} %s relayq/pickup\\[%ld\\]: hello 42\n$",
	     host, (long) getpid());
    if (!matches(re, text))
	T_FAILF("stderr text: %s", text);
    free(text);
    unlink(path);
}

/*
 * Diagnostics (msg_*): "PROG: tier: text" on stderr while it is on, the
 * maillog format once the log is open, once only when the log is stderr;
 * msg_fatal runs the cleanup and exits 1, msg_panic aborts.
 */

static int stderr_to(const char *path)
{
    int     saved, fd;

    fflush(stderr);
    saved = dup(2);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
    return (saved);
}

static void stderr_back(int saved)
{
    dup2(saved, 2);
    close(saved);
}

static char *cleanup_marker;

static void mark_cleanup(void)
{
    int     fd = open(cleanup_marker, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    if (fd >= 0)
	close(fd);
}

static void test_diagnostics(void)
{
    char    errpath[128], logpath[128], marker[128], err[256], re[1024];
    char   *text;
    int     saved, status;
    pid_t   pid;
    long    me = (long) getpid();

    snprintf(errpath, sizeof(errpath), "%s/diag-stderr", tmpdir);
    snprintf(logpath, sizeof(logpath), "%s/diag-maillog", tmpdir);
    snprintf(marker, sizeof(marker), "%s/diag-cleanup", tmpdir);
    unlink(logpath);

    /* No log yet, stderr on: the plain form only. */
    msg_init("relayqd", "master");
    saved = stderr_to(errpath);
    msg_info("starting %d", 1);
    msg_warn("bad\nthing");
    stderr_back(saved);
    text = slurp(errpath);
    T_EQ_STR(text, "relayqd: starting 1\nrelayqd: warning: bad?thing\n");
    free(text);

    /* Log open, stderr on: both; then stderr off (a running daemon): the log only. */
    T_EQ_INT(log_open(logpath, "relayq", "mx.example.test", err, sizeof(err)), 0);
    saved = stderr_to(errpath);
    msg_error("cannot %s", "frob");
    log_warn("qmgr", "named service");
    msg_stderr(0);
    msg_warn("%s: unknown parameter \"foo\"", "relayq.cf, line 7");
    stderr_back(saved);
    text = slurp(errpath);
    T_EQ_STR(text, "relayqd: error: cannot frob\nrelayqd: warning: named service\n");
    free(text);
    text = slurp(logpath);
    snprintf(re, sizeof(re),
	     "^[^\n]* mx relayq/master\\[%ld\\]: error: cannot frob\n"
	     "[^\n]* mx relayq/qmgr\\[%ld\\]: warning: named service\n"
	     "[^\n]* mx relayq/master\\[%ld\\]: warning: relayq.cf, line 7: unknown parameter \"foo\"\n$",
	     me, me, me);
    if (!matches(re, text))
	T_FAILF("maillog text: %s", text);
    free(text);
    log_close();

    /* The log is stderr: one line, in the log's format. */
    msg_stderr(1);
    saved = stderr_to(errpath);
    T_EQ_INT(log_open("/dev/stderr", "relayq", "mx", err, sizeof(err)), 0);
    msg_warn("once");
    log_close();
    stderr_back(saved);
    text = slurp(errpath);
    snprintf(re, sizeof(re), "^[^\n]* mx relayq/master\\[%ld\\]: warning: once\n$", me);
    if (!matches(re, text))
	T_FAILF("stderr text: %s", text);
    free(text);

    /* msg_fatal: both channels, the cleanup, exit status 1. */
    unlink(logpath);
    unlink(marker);
    cleanup_marker = marker;
    fflush(stdout);
    if ((pid = fork()) == 0) {
	saved = stderr_to(errpath);
	if (log_open(logpath, "relayq", "mx", err, sizeof(err)) < 0)
	    _exit(3);
	msg_cleanup(mark_cleanup);
	msg_fatal("cannot bind %s", "127.0.0.1:25");
    }
    T_CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 1);
    T_CHECK(access(marker, F_OK) == 0);
    text = slurp(errpath);
    T_EQ_STR(text, "relayqd: fatal: cannot bind 127.0.0.1:25\n");
    free(text);
    text = slurp(logpath);
    T_CHECK(strstr(text, "relayq/master[") && strstr(text, "]: fatal: cannot bind 127.0.0.1:25\n"));
    free(text);

    /* msg_panic: abort(), not exit. */
    fflush(stdout);
    if ((pid = fork()) == 0) {
	saved = stderr_to(errpath);
	signal(SIGABRT, SIG_DFL);
	msg_panic("impossible state %d", 7);
    }
    T_CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    text = slurp(errpath);
    T_CHECK(strncmp(text, "relayqd: panic: impossible state 7\n", 35) == 0);
    free(text);

    unlink(errpath);
    unlink(logpath);
    unlink(marker);
    msg_init("relayq", "relayq");
}

/* The delivery status and reject line formatters (log_adhoc.c). */

static void test_line_kinds(void)
{
    char    path[128], err[256];
    char   *text;
    const int64_t t0 = 1700000000LL * 1000000;
    LOG_STATS full = {t0, t0 + 1200000, t0 + 1300000, t0 + 1500000, t0 + 2500000, 0};
    LOG_STATS reused = full;
    LOG_STATS qmgr = {t0, t0 + 2000000, 0, 0, t0 + 62000000, 0};

    reused.conn_use = 3;
    snprintf(path, sizeof(path), "%s/kinds", tmpdir);
    unlink(path);
    msg_stderr(0);
    T_EQ_INT(log_open(path, "relayq", "mx", err, sizeof(err)), 0);
    /* orig_to= for every status when it differs; xtext decoded; type not shown */
    log_delivery("smtp", "QA", &(LOG_RCPT) {"b@dest.test", "rfc822;orig+2Bb@dest.test"},
		 "h[127.0.0.1]:25", &full, "2.0.0", "sent", "250 ok");
    log_delivery("smtp", "QA", &(LOG_RCPT) {"b@dest.test", "rfc822;orig@dest.test"},
		 "h[127.0.0.1]:25", &reused, "5.1.1", "bounced", "host said: 550 no");
    log_delivery("error", "QA", &(LOG_RCPT) {"b@dest.test", "orig@dest.test"},
		 "none", &qmgr, "4.4.1", "deferred", "dead");
    /* the same address (any case), absent or empty: no orig_to= */
    log_delivery("smtp", "QB", &(LOG_RCPT) {"b@dest.test", "rfc822;B@Dest.Test"},
		 "none", &qmgr, "4.4.1", "deferred", "x");
    log_delivery("smtp", "QB", &(LOG_RCPT) {"b@dest.test", NULL}, "none", &qmgr, "4.4.1", "deferred", "x");
    log_delivery("smtp", "QB", &(LOG_RCPT) {"b@dest.test", "rfc822;"}, "none", &qmgr, "4.4.1",
		 "deferred", "x");
    /* a hostile ORCPT cannot forge a second line */
    log_delivery("smtp", "QC", &(LOG_RCPT) {"b@dest.test", "rfc822;x+0Aforged: to=<y>"},
		 "none", &qmgr, "4.4.1", "deferred", "x");
    log_reject("smtpd", NULL, "reject", "RCPT", "c[127.0.0.2]", "554 5.7.1 <x@y>: Relay access denied",
	       "s@a.test", "x@y", "ESMTP", "client.test");
    log_reject("smtpd", "QD", "reject", "RCPT", "c[127.0.0.2]", "450 4.1.2 no", "", "x@y", "SMTP", NULL);
    log_reject("smtpd", "", "milter-reject", "END-OF-MESSAGE", "c[127.0.0.2]", "5.7.1 spam", NULL,
	       NULL, "ESMTP", "h");
    log_close();
    msg_stderr(1);
    text = slurp(path);
#define HAS(s) do { if (!strstr(text, s)) T_FAILF("missing %s in:\n%s", s, text); } while (0)
    HAS("]: QA: to=<b@dest.test>, orig_to=<orig+b@dest.test>, relay=h[127.0.0.1]:25, delay=2.5, "
	"delays=1.2/0.1/0.2/1, dsn=2.0.0, status=sent (250 ok)\n");
    HAS("]: QA: to=<b@dest.test>, orig_to=<orig@dest.test>, relay=h[127.0.0.1]:25, conn_use=3, "
	"delay=2.5, delays=1.2/0.1/0.2/1, dsn=5.1.1, status=bounced (host said: 550 no)\n");
    HAS("relayq/error[");
    HAS("]: QA: to=<b@dest.test>, orig_to=<orig@dest.test>, relay=none, delay=62, "
	"delays=2/60/0/0, dsn=4.4.1, status=deferred (dead)\n");
    HAS("]: QC: to=<b@dest.test>, orig_to=<x?forged: to=<y>>, relay=none,");
    HAS("]: NOQUEUE: reject: RCPT from c[127.0.0.2]: 554 5.7.1 <x@y>: Relay access denied; "
	"from=<s@a.test> to=<x@y> proto=ESMTP helo=<client.test>\n");
    HAS("]: QD: reject: RCPT from c[127.0.0.2]: 450 4.1.2 no; from=<> to=<x@y> proto=SMTP\n");
    HAS("]: NOQUEUE: milter-reject: END-OF-MESSAGE from c[127.0.0.2]: 5.7.1 spam; proto=ESMTP helo=<h>\n");
#undef HAS
    T_CHECK(strstr(text, "QB: to=<b@dest.test>, orig_to") == 0);
    T_CHECK(strstr(text, "QB: to=<b@dest.test>, relay=none") != 0);
    free(text);
    unlink(path);
}

static void test_destinations(void)
{
    char    err[256];

    T_EQ_INT(log_open("/dev/stdout", "relayq", "h.test", err, sizeof(err)), 0);
    T_EQ_INT(log_fd(), 1);
    T_EQ_INT(log_open("/dev/stderr", "relayq", "h.test", err, sizeof(err)), 0);
    T_EQ_INT(log_fd(), 2);
    T_EQ_INT(log_open("", "relayq", "h.test", err, sizeof(err)), 0);
    T_EQ_INT(log_fd(), -1);
    log_close();
    T_EQ_INT(log_fd(), 2);
}

/* log_reopen(): after the file is renamed away, lines go to a new file. */

static void test_reopen(void)
{
    char    path[128], old[128], err[256];
    char   *a, *b;

    snprintf(path, sizeof(path), "%s/maillog", tmpdir);
    snprintf(old, sizeof(old), "%s/maillog.1", tmpdir);
    unlink(path);
    T_EQ_INT(log_open(path, "relayq", "h", err, sizeof(err)), 0);
    log_msg("master", "before");
    T_EQ_INT(rename(path, old), 0);
    log_msg("master", "still old");
    T_EQ_INT(log_reopen(), 0);
    log_msg("master", "after");
    log_close();
    a = slurp(old);
    b = slurp(path);
    T_CHECK(strstr(a, ": before\n") && strstr(a, ": still old\n") && !strstr(a, "after"));
    T_CHECK(strstr(b, ": after\n") && !strstr(b, "before"));
    free(a);
    free(b);
    unlink(path);
    unlink(old);
}

/*
 * The log's file system full (/dev/full answers ENOSPC): lines are counted,
 * reported once on stderr, and once writing works again one warning says
 * how many were lost.
 */
static void test_log_full(void)
{
    char    path[128], errpath[128], err[256];
    char   *a, *e;
    int     saved = dup(2), fd;
    uint64_t before = log_write_errors();

    snprintf(path, sizeof(path), "%s/maillog", tmpdir);
    snprintf(errpath, sizeof(errpath), "%s/stderr", tmpdir);
    unlink(path);
    fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    T_CHECK(fd >= 0 && saved >= 0);
    dup2(fd, 2);
    close(fd);
    T_EQ_INT(log_open("/dev/full", "relayq", "h", err, sizeof(err)), 0);
    log_msg("qmgr", "lost one");
    log_warn("qmgr", "lost two");
    log_msg("qmgr", "lost three");
    T_EQ_INT(log_write_errors() - before, 3);
    T_EQ_INT(log_open(path, "relayq", "h", err, sizeof(err)), 0);
    log_msg("qmgr", "back");
    log_msg("qmgr", "again");
    log_close();
    dup2(saved, 2);
    close(saved);
    T_EQ_INT(log_write_errors() - before, 3);
    a = slurp(path);
    e = slurp(errpath);
    T_CHECK(matches("qmgr\\[[0-9]+\\]: back\n[^\n]*relayq/qmgr\\[[0-9]+\\]: warning: 3 log lines were lost: "
		    "No space left on device\n[^\n]*: again\n$", a));
    T_CHECK(!strstr(a, "lost one"));
    /* One report on stderr, not one per lost line. */
    T_CHECK(strstr(e, "cannot write the log: No space left on device") != 0);
    T_CHECK(strstr(e, "cannot write the log") != 0
	    && strstr(strstr(e, "cannot write the log") + 1, "cannot write the log") == 0);
    free(a);
    free(e);
    unlink(path);
    unlink(errpath);
}

/* Many threads in two processes: every line whole, none lost. */

#define ATOM_THREADS	4
#define ATOM_LINES	3000
#define ATOM_PAD	300

static void *atom_writer(void *arg)
{
    int     id = (int) (long) arg;
    char    pad[ATOM_PAD + 1];

    memset(pad, 'a' + id, ATOM_PAD);
    pad[ATOM_PAD] = 0;
    for (int i = 0; i < ATOM_LINES; i++)
	log_msg("smtp", "T%d line %d %s end", id, i, pad);
    return (0);
}

static void atom_run(int base)
{
    pthread_t th[ATOM_THREADS];

    for (long t = 0; t < ATOM_THREADS; t++)
	pthread_create(&th[t], 0, atom_writer, (void *) (base + t));
    for (int t = 0; t < ATOM_THREADS; t++)
	pthread_join(th[t], 0);
}

static void test_atomic_lines(void)
{
    char    path[128], err[256];
    char   *text;
    pid_t   child;
    int     status = -1;
    int     lines = 0, bad = 0;
    int     count[2 * ATOM_THREADS] = {0};

    snprintf(path, sizeof(path), "%s/maillog", tmpdir);
    unlink(path);
    T_EQ_INT(log_open(path, "relayq", "h", err, sizeof(err)), 0);
    fflush(stdout);
    if ((child = fork()) == 0) {
	atom_run(ATOM_THREADS);
	_exit(0);
    }
    atom_run(0);
    waitpid(child, &status, 0);
    T_EQ_INT(status, 0);
    log_close();

    text = slurp(path);
    for (char *line = text, *nl; *line; line = nl + 1) {
	int     id = -1, n = -1, off = 0;
	char   *body;

	if ((nl = strchr(line, '\n')) == 0) {
	    bad++;
	    break;
	}
	*nl = 0;
	lines++;
	body = strstr(line, "]: T");
	if (body == 0 || sscanf(body, "]: T%d line %d %n", &id, &n, &off) != 2
	    || id < 0 || id >= 2 * ATOM_THREADS || strlen(body + off) != ATOM_PAD + 4
	    || strspn(body + off, (char[]) {(char) ('a' + id), 0}) != ATOM_PAD
	    || strcmp(body + off + ATOM_PAD, " end") != 0) {
	    if (bad++ < 3)
		T_FAILF("torn line: %.80s", line);
	    continue;
	}
	count[id]++;
    }
    T_EQ_INT(bad, 0);
    T_EQ_INT(lines, 2 * ATOM_THREADS * ATOM_LINES);
    for (int t = 0; t < 2 * ATOM_THREADS; t++)
	T_EQ_INT(count[t], ATOM_LINES);
    free(text);
    unlink(path);
}

/* The PID in the prefix is remembered, but a forked child logs its own. */

static void test_pid_after_fork(void)
{
    char    path[128], err[256], want[128];
    char   *text;
    pid_t   child;
    int     status = -1;

    snprintf(path, sizeof(path), "%s/maillog", tmpdir);
    unlink(path);
    T_EQ_INT(log_open(path, "relayq", "h", err, sizeof(err)), 0);
    log_msg("smtpd", "parent first");
    fflush(stdout);
    if ((child = fork()) == 0) {
	log_msg("smtpd", "child");
	_exit(0);
    }
    waitpid(child, &status, 0);
    T_EQ_INT(status, 0);
    log_msg("smtpd", "parent again");
    log_close();
    text = slurp(path);
    snprintf(want, sizeof(want), " h relayq/smtpd[%ld]: parent first\n", (long) getpid());
    T_CHECK(strstr(text, want) != 0);
    snprintf(want, sizeof(want), " h relayq/smtpd[%ld]: child\n", (long) child);
    T_CHECK(strstr(text, want) != 0);
    snprintf(want, sizeof(want), " h relayq/smtpd[%ld]: parent again\n", (long) getpid());
    T_CHECK(strstr(text, want) != 0);
    free(text);
    unlink(path);
}

/* delay= formatting (spec L6). */

static const struct {
    double  sec;
    const char *want;
} delay_cases[] = {
    {0, "0"}, {-1, "0"}, {0.004, "0"}, {0.0049, "0"}, {0.005, "0.01"},
    {0.01, "0.01"}, {0.02, "0.02"}, {0.1, "0.1"}, {0.10, "0.1"}, {0.123, "0.12"},
    {0.125, "0.13"}, {0.5, "0.5"}, {0.994, "0.99"}, {0.995, "1"}, {0.999, "1"},
    {1, "1"}, {1.04, "1"}, {1.05, "1.1"}, {6.2, "6.2"}, {6, "6"}, {6.04, "6"},
    {9.94, "9.9"}, {9.96, "10"}, {10, "10"}, {17, "17"}, {17.4, "17"}, {17.5, "18"},
    {145, "145"}, {1781, "1781"}, {1781.49, "1781"}, {1765, "1765"},
};

/* log_format_delay() against the printf formulation it replaced. */
static void check_delay(double sec)
{
    char    out[32], want[32];
    long long u, h, t;

    if (!(sec > 0))
	sec = 0;
    if (sec > 1e15)
	sec = 1e15;
    u = llround(sec * 1e6);
    h = (u + 5000) / 10000;
    t = (u + 50000) / 100000;
    if (u < 1000000 && (h >= 100 || h == 0))
	snprintf(want, sizeof(want), "%d", h != 0);
    else if (u < 1000000 && h % 10 == 0)
	snprintf(want, sizeof(want), "0.%lld", h / 10);
    else if (u < 1000000)
	snprintf(want, sizeof(want), "0.%02lld", h);
    else if (u < 10000000 && t % 10 == 0)
	snprintf(want, sizeof(want), "%lld", t / 10);
    else if (u < 10000000)
	snprintf(want, sizeof(want), "%lld.%lld", t / 10, t % 10);
    else
	snprintf(want, sizeof(want), "%lld", (u + 500000) / 1000000);
    log_format_delay(sec, out);
    if (strcmp(out, want) != 0)
	T_FAILF("delay %g = \"%s\", expected \"%s\"", sec, out, want);
}

static void test_format_delay(void)
{
    char    out[32];

    for (size_t i = 0; i < ARRAY_LEN(delay_cases); i++) {
	log_format_delay(delay_cases[i].sec, out);
	if (strcmp(out, delay_cases[i].want) != 0)
	    T_FAILF("delay %g = \"%s\", expected \"%s\"", delay_cases[i].sec, out, delay_cases[i].want);
    }
    T_CHECK(log_format_delay(3.0, out) == out);
    {
	/* Written without printf: the same text as the printf formulation, over a sweep. */
	for (long long us = 0; us < 30000000; us = us * 11 / 10 + 37)
	    check_delay((double) us / 1e6);
	check_delay(1e9);
	check_delay(123456789.4);
    }
}

int     main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_log.XXXXXX");
    if (mkdtemp(tmpdir) == 0) {
	perror("mkdtemp");
	return (2);
    }
    T_RUN(test_early_stderr);
    T_RUN(test_line_format);
    T_RUN(test_destinations);
    T_RUN(test_diagnostics);
    T_RUN(test_line_kinds);
    T_RUN(test_reopen);
    T_RUN(test_log_full);
    T_RUN(test_atomic_lines);
    T_RUN(test_pid_after_fork);
    T_RUN(test_format_delay);
    rmdir(tmpdir);
    return t_done();
}
