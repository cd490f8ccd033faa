/*
 * top - `relayq top`: a live view of the daemon during an outage (or any
 * day), refreshed every second; `relayq top --once` prints one screen as
 * plain text, `--json` one snapshot as JSON.
 *
 * The daemon answers "top N" on the public query socket (any local user,
 * as mailq) from counters it keeps (src/relayqd/top.c); the screen is
 * src/control/top.c's, every string from the daemon made printable there.
 * With the daemon down, --once and --json read the queue itself, as mailq
 * does, for the counts by state and age (the rest is only the daemon's).
 *
 * The live view puts the terminal in non-canonical mode without echo
 * (termios) on the alternate screen, and puts everything back on exit,
 * `q`, SIGINT, SIGTERM, SIGHUP and SIGQUIT.  It talks to the socket
 * itself, with poll() on the socket and the keyboard, so that a daemon
 * that stops answering never keeps `q` from working.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "control/control.h"
#include "control/top.h"
#include "queue/queue.h"
#include "util/util.h"

#define TOP_QUERY_PATH	"public/query"	/* control.h */
#define TOP_REPLY_MAX	(1 << 20)	/* a snapshot is a few kilobytes */
#define TOP_TIMEOUT_MS	5000		/* the daemon answers at once, or is in trouble */
#define TOP_COLS_MAX	1000		/* whatever the terminal claims */
#define TOP_ROWS_MAX	400

static void top_usage(void)
{
    fprintf(stderr, "usage: relayq top [--once | --json] [-d SECONDS] [-n DESTINATIONS]\n");
    exit(64);
}

/* ---- the terminal ---- */

static struct termios top_saved;
static int top_tty_on;			/* the terminal is ours to restore */
static int top_fetch_down;		/* the last fetch found no daemon listening */
static volatile sig_atomic_t top_quit_sig, top_winch;

static void top_write(const char *p, size_t len)
{
    while (len > 0) {
	ssize_t n = write(STDOUT_FILENO, p, len);

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
	    continue;
	if (n <= 0)
	    return;
	p += n;
	len -= (size_t) n;
    }
}

static void top_restore(void)
{
    static const char leave[] = "\033[?25h\033[?1049l";

    if (!top_tty_on)
	return;
    top_tty_on = 0;
    top_write(leave, sizeof(leave) - 1);
    (void) tcsetattr(STDIN_FILENO, TCSAFLUSH, &top_saved);
}

static void top_on_signal(int sig)
{
    if (sig == SIGWINCH)
	top_winch = 1;
    else
	top_quit_sig = sig;
}

static int top_tty_enter(void)
{
    static const char enter[] = "\033[?1049h\033[?25l\033[H\033[2J";
    struct termios raw;
    struct sigaction sa;
    int     sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH};

    if (tcgetattr(STDIN_FILENO, &top_saved) < 0)
	return (-1);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = top_on_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: poll() returns with EINTR and the loop sees the flag. */
    for (size_t i = 0; i < ARRAY_LEN(sigs); i++)
	sigaction(sigs[i], &sa, NULL);
    raw = top_saved;
    raw.c_lflag &= (tcflag_t) ~(ICANON | ECHO);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    /* ^Z would leave the shell with a terminal in this mode. */
    raw.c_cc[VSUSP] = _POSIX_VDISABLE;
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) < 0)
	return (-1);
    top_tty_on = 1;
    atexit(top_restore);
    top_write(enter, sizeof(enter) - 1);
    return (0);
}

static void top_winsize(int *cols, int *rows)
{
    struct winsize ws;

    *cols = 80;
    *rows = 24;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
	*cols = ws.ws_col;
	*rows = ws.ws_row;
    }
    if (*cols > TOP_COLS_MAX)
	*cols = TOP_COLS_MAX;
    if (*rows > TOP_ROWS_MAX)
	*rows = TOP_ROWS_MAX;
}

/* ---- the daemon ---- */

/*
 * Ask for a snapshot: 0 with the reply's payload in out, or -1 with err.
 * *key gets a key pressed meanwhile (live view; key may be NULL).
 */
static int top_fetch(const char *qdir, int ndest, BUF *out, int *key, char *err, size_t errlen)
{
    struct sockaddr_un sun;
    char    req[32], chunk[8192];
    char   *path = xasprintf("%s/%s", qdir, TOP_QUERY_PATH);
    int64_t deadline = time_mono_us() + (int64_t) TOP_TIMEOUT_MS * 1000;
    BUF     reply = BUF_INIT;
    int     fd, ret = -1, len;
    char   *nl;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun.sun_path)) {
	snprintf(err, errlen, "socket path too long: %s", path);
	free(path);
	return (-1);
    }
    strcpy(sun.sun_path, path);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
	snprintf(err, errlen, "socket: %s", strerror(errno));
	free(path);
	return (-1);
    }
    if (connect(fd, (struct sockaddr *) &sun, sizeof(sun)) < 0) {
	int     e = errno;

	top_fetch_down = e == ENOENT || e == ECONNREFUSED || e == ENOTDIR;
	if (top_fetch_down)
	    snprintf(err, errlen, "the mail system is not running (connect %s: %s)", path, strerror(e));
	else
	    snprintf(err, errlen, "connect %s: %s", path, strerror(e));
	free(path);
	close(fd);
	return (-1);
    }
    free(path);
    top_fetch_down = 0;
    len = snprintf(req, sizeof(req), "top %d\n", ndest);
    /* The line is tiny: it fits the socket buffer, the write does not block. */
    if (write(fd, req, (size_t) len) != len) {
	snprintf(err, errlen, "write request: %s", strerror(errno));
	close(fd);
	return (-1);
    }
    (void) shutdown(fd, SHUT_WR);
    (void) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    for (;;) {
	struct pollfd pf[2] = {{fd, POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
	int64_t left = (deadline - time_mono_us()) / 1000;
	ssize_t n;

	if (left <= 0) {
	    snprintf(err, errlen, "relayqd did not answer within %d seconds", TOP_TIMEOUT_MS / 1000);
	    break;
	}
	if (poll(pf, key ? 2 : 1, (int) left) < 0) {
	    if (errno == EINTR && !top_quit_sig)
		continue;
	    snprintf(err, errlen, "interrupted");
	    break;
	}
	if (key && (pf[1].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) {
	    char    c;
	    ssize_t r = read(STDIN_FILENO, &c, 1);

	    /* q, or the terminal went away */
	    if ((r == 1 && (c == 'q' || c == 'Q')) || (r <= 0 && !(pf[1].revents & POLLIN))) {
		*key = 'q';
		snprintf(err, errlen, "interrupted");
		break;
	    }
	}
	if (!(pf[0].revents & (POLLIN | POLLHUP | POLLERR)))
	    continue;
	n = read(fd, chunk, sizeof(chunk));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
	    continue;
	if (n < 0) {
	    snprintf(err, errlen, "read reply: %s", strerror(errno));
	    break;
	}
	if (n == 0) {
	    /* The whole reply: "ok\n" and the snapshot, or "error TEXT\n". */
	    if (reply.len == 0 || (nl = memchr(reply.data, '\n', reply.len)) == NULL) {
		snprintf(err, errlen, "relayqd closed the connection without a reply");
	    } else if (nl - reply.data == 2 && memcmp(reply.data, "ok", 2) == 0) {
		buf_append(out, nl + 1, reply.len - (size_t) (nl + 1 - reply.data));
		ret = 0;
	    } else if (strncmp(reply.data, "error ", 6) == 0) {
		char   *text;

		*nl = 0;
		text = str_printable(reply.data + 6);
		snprintf(err, errlen, "%s", text);
		free(text);
	    } else {
		snprintf(err, errlen, "malformed reply");
	    }
	    break;
	}
	if (reply.len + (size_t) n > TOP_REPLY_MAX) {
	    snprintf(err, errlen, "reply too long");
	    break;
	}
	buf_append(&reply, chunk, (size_t) n);
    }
    close(fd);
    buf_free(&reply);
    return (ret);
}

static int top_get(const char *qdir, int ndest, TOP_SNAP *s, int *key, char *err, size_t errlen)
{
    BUF     out = BUF_INIT;
    int     ret = top_fetch(qdir, ndest, &out, key, err, errlen);

    if (ret == 0)
	ret = top_parse(out.data ? out.data : "", out.len, s, err, errlen);
    buf_free(&out);
    return (ret);
}

/* ---- the live view ---- */

/* The screen with each line cleared to its end, and below the last. */
static void top_draw(const BUF *screen)
{
    BUF     o = BUF_INIT;
    const char *p = screen->data ? screen->data : "", *nl;

    buf_puts(&o, "\033[H");
    while ((nl = strchr(p, '\n')) != NULL) {
	buf_append(&o, p, (size_t) (nl - p));
	buf_puts(&o, "\033[K");
	p = nl + 1;
	if (*p)
	    buf_puts(&o, "\r\n");
    }
    buf_puts(&o, "\033[J");
    top_write(o.data, o.len);
    buf_free(&o);
}

static int top_live(const char *qdir, int delay_ms, int ndest_opt)
{
    TOP_SNAP snap;
    int     have = 0, cols, rows;
    char    err[512], status[640], clock[16];

    memset(&snap, 0, sizeof(snap));
    if (top_tty_enter() < 0) {
	cli_warn("cannot set up the terminal: %s", strerror(errno));
	return (1);
    }
    while (!top_quit_sig) {
	TOP_SNAP next;
	BUF     screen = BUF_INIT;
	int     key = 0, ndest;
	int64_t start = time_mono_us();
	time_t  now = time_sec();
	struct tm tm;

	top_winsize(&cols, &rows);
	top_winch = 0;
	ndest = ndest_opt > 0 ? ndest_opt : top_dest_rows(rows);
	if (top_get(qdir, ndest, &next, &key, err, sizeof(err)) == 0) {
	    if (have)
		top_snap_free(&snap);
	    snap = next;
	    have = 1;
	    snprintf(status, sizeof(status), "q: quit");
	} else {
	    if (key == 'q' || top_quit_sig)
		break;
	    strftime(clock, sizeof(clock), "%H:%M:%S", localtime_r(&now, &tm));
	    snprintf(status, sizeof(status), "%s: %s; retrying (q: quit)", clock, err);
	}
	if (have) {
	    top_render(&snap, cols, rows, status, &screen);
	} else {
	    char   *pr = str_printable(status);

	    buf_printf(&screen, "relayq top\n\n%s\n", pr);
	    free(pr);
	}
	top_draw(&screen);
	buf_free(&screen);

	/* Wait for the next refresh, a key, a resize or a signal. */
	for (;;) {
	    int64_t left = delay_ms - (time_mono_us() - start) / 1000;
	    struct pollfd pf = {STDIN_FILENO, POLLIN, 0};
	    char    c;

	    if (left <= 0 || top_quit_sig || top_winch)
		break;
	    if (poll(&pf, 1, (int) left) < 0)
		continue;			/* EINTR: the flags say why */
	    if ((pf.revents & POLLIN) && read(STDIN_FILENO, &c, 1) == 1) {
		if (c == 'q' || c == 'Q') {
		    top_quit_sig = -1;
		    break;
		}
		if (c == ' ' || c == 'r' || c == '\f')
		    break;			/* refresh now */
	    } else if (pf.revents & (POLLHUP | POLLERR | POLLNVAL)) {
		top_quit_sig = -1;		/* the terminal went away */
		break;
	    }
	}
    }
    if (have)
	top_snap_free(&snap);
    top_restore();
    if (top_quit_sig > 0 && top_quit_sig != SIGINT) {
	/* Killed: die of the same signal, the terminal put back first. */
	signal(top_quit_sig, SIG_DFL);
	raise(top_quit_sig);
    }
    return (0);
}

/* ---- the command ---- */

int     cli_top(CLI *cli, int argc, char **argv)
{
    int     once = 0, json = 0, delay_ms = 1000, ndest = 0;
    const char *qdir;
    char    err[512];

    for (int i = 1; i < argc; i++) {
	if (strcmp(argv[i], "--once") == 0) {
	    once = 1;
	} else if (strcmp(argv[i], "--json") == 0) {
	    json = 1;
	} else if (strcmp(argv[i], "-d") == 0 && i + 1 < argc) {
	    double  d = atof(argv[++i]);

	    if (!(d >= 0.2 && d <= 3600))
		cli_fatal(64, "-d %s: the delay is from 0.2 to 3600 seconds", argv[i]);
	    delay_ms = (int) (d * 1000);
	} else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
	    ndest = atoi(argv[++i]);
	    if (ndest < 1 || ndest > TOP_DESTS_MAX)
		cli_fatal(64, "-n %s: from 1 to %d destinations", argv[i], TOP_DESTS_MAX);
	} else {
	    top_usage();
	}
    }
    if (cli->cf == NULL)
	cli_fatal(1, "%s", cli->load_err);
    qdir = config_str(cli->cf, "queue_directory");
    if (!once && !json && isatty(STDOUT_FILENO) && isatty(STDIN_FILENO))
	return (top_live(qdir, delay_ms, ndest));

    TOP_SNAP s;
    BUF     out = BUF_INIT;

    if (top_get(qdir, ndest > 0 ? ndest : 20, &s, NULL, err, sizeof(err)) < 0) {
	QUEUE  *q;
	int     ret;

	if (top_fetch_down == 0)
	    cli_fatal(1, "%s", err);
	/* As mailq: say so, and read the queue itself for what it can tell. */
	fprintf(stderr, "relayq: warning: Mail system is down -- accessing queue directly\n");
	if ((q = cli_queue_open(cli, QUEUE_OPEN_READ, err, sizeof(err))) == NULL)
	    cli_fatal(1, "cannot read the queue: %s", err);
	ret = top_from_queue(q, config_str(cli->cf, "myhostname"), (int64_t) time_sec(), &s);
	queue_close(q);
	if (ret < 0)
	    cli_fatal(1, "error reading the queue in %s", qdir);
    }
    if (json) {
	top_json(&s, &out);
    } else {
	int     cols = 4096, rows = 0;

	/* On a terminal, one screen of it; for a script, everything, lines uncut. */
	if (isatty(STDOUT_FILENO))
	    top_winsize(&cols, &rows);
	top_render(&s, cols, rows, NULL, &out);
    }
    fwrite(out.data, 1, out.len, stdout);
    fflush(stdout);
    buf_free(&out);
    top_snap_free(&s);
    return (ferror(stdout) ? 1 : 0);
}
