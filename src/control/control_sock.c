/*
 * control_sock - the daemon's two UNIX stream sockets and the client that
 * talks to them.
 *
 * Daemon side: a listening socket per kind (query, admin), watched by the
 * libevent loop.  Each connection reads one request line (at most
 * CONTROL_LINE_MAX bytes, with a timeout), the handler answers it, the
 * reply is written and the connection closed once the reply is flushed.
 * All sockets are non-blocking, so a slow or silent client never stalls
 * the loop.
 *
 * Client side: connect, send the line, read to EOF; the first reply line
 * says ok or error.  errno of connect() tells a stopped daemon (ENOENT,
 * ECONNREFUSED) from a permission problem (EACCES), which the CLI reports
 * differently.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "control/control.h"
#include "log/log.h"

#define CONTROL_LINE_MAX	4096	/* longest request line */
#define CONTROL_ARGV_MAX	1024	/* most words in a request */
#define CONTROL_TIMEOUT		30	/* seconds for a client to send its line */
#define CONTROL_CLIENT_TIMEOUT	600	/* seconds the CLI waits for the reply */
#define CONTROL_STREAM_HIGH	(256 * 1024)	/* a stream pauses above this much unsent output */
#define CONTROL_STREAM_LOW	(64 * 1024)	/* and goes on once the client has read down to this */
#define CONTROL_STREAM_TIMEOUT	3600	/* default: seconds a client may leave a stream unread */

#define CONTROL_QUERY_PATH	"public/query"
#define CONTROL_ADMIN_PATH	"private/admin"

typedef struct CONTROL_LISTENER {
    CONTROL *ctl;
    int     fd;
    int     admin;
    struct event *ev;
    struct event *pause_ev;		/* accept paused after EMFILE/ENFILE */
    char   *path;
} CONTROL_LISTENER;

struct CONTROL {
    struct event_base *base;
    CONTROL_HANDLER handle;
    void   *ctx;
    CONTROL_LISTENER lsn[2];
    struct CONTROL_CONN *conns;		/* open connections, freed with ctl */
    struct CONTROL_CONN *current;	/* the request being handled (control_defer) */
    uint64_t next_token;
    int     stream_timeout;		/* seconds, control_set_stream_timeout() */
    int     nstreams;			/* streams in progress */
};

typedef struct CONTROL_CONN {
    CONTROL *ctl;
    int     admin;
    struct bufferevent *bev;
    int     replied;
    int     draining;			/* request too long: wait for the client's EOF */
    int     deferred;			/* the handler answers later (control_finish) */
    uint64_t token;
    int     streaming;			/* control_stream(): the answer is written as it is made */
    int     stream_started;		/* "ok" is out */
    int     stream_paused;		/* the producer waits for more() */
    void    (*more) (void *ctx);
    void    (*gone) (void *ctx);
    void   *stream_ctx;
    struct CONTROL_CONN *prev, *next;
} CONTROL_CONN;

/* ---- daemon side ---- */

static void control_conn_free(CONTROL_CONN *cc)
{
    if (cc->streaming) {
	cc->ctl->nstreams--;
	/* Unfinished: its producer stops and frees what it holds. */
	if (!cc->replied && cc->gone) {
	    cc->replied = 1;
	    cc->gone(cc->stream_ctx);
	}
    }
    if (cc->prev)
	cc->prev->next = cc->next;
    else
	cc->ctl->conns = cc->next;
    if (cc->next)
	cc->next->prev = cc->prev;
    bufferevent_free(cc->bev);			/* closes the fd */
    free(cc);
}

/* Split on single spaces; empty words are dropped. */
static int control_split(char *line, char **argv, int max)
{
    int     argc = 0;
    char   *p = line, *w;

    while ((w = strsep(&p, " ")) != 0) {
	if (*w == 0)
	    continue;
	if (argc == max)
	    return -1;
	argv[argc++] = w;
    }
    return argc;
}

static void control_reply(CONTROL_CONN *cc, int ok, BUF *payload)
{
    struct evbuffer *out = bufferevent_get_output(cc->bev);

    if (ok) {
	evbuffer_add(out, "ok\n", 3);
	if (payload->len)
	    evbuffer_add(out, payload->data, payload->len);
    } else {
	char   *nl;

	/* The error text is one line by contract. */
	if (payload->len == 0)
	    buf_puts(payload, "request failed");
	while ((nl = memchr(payload->data, '\n', payload->len)) != 0)
	    *nl = ' ';
	evbuffer_add_printf(out, "error %s\n", payload->data);
    }
    cc->replied = 1;
    bufferevent_enable(cc->bev, EV_WRITE);
}

static void control_handle_line(CONTROL_CONN *cc, char *line)
{
    char   *argv[CONTROL_ARGV_MAX];
    int     argc, ret;
    BUF     out = BUF_INIT;

    argc = control_split(line, argv, CONTROL_ARGV_MAX);
    if (argc <= 0) {
	buf_puts(&out, argc < 0 ? "too many words in request" : "empty request");
	control_reply(cc, 0, &out);
    } else {
	cc->ctl->current = cc;
	ret = cc->ctl->handle(cc->ctl->ctx, cc->admin, argc, argv, &out);
	cc->ctl->current = 0;
	if (!cc->deferred)
	    control_reply(cc, ret == 0, &out);
    }
    buf_free(&out);
}

static void control_read_cb(struct bufferevent *bev, void *arg)
{
    CONTROL_CONN *cc = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t  len;
    char   *line;

    if (cc->replied || cc->deferred) {
	/* One request per connection; after "request too long": discard the rest until the client's EOF, so closing does not reset the reply. */
	evbuffer_drain(in, evbuffer_get_length(in));
	return;
    }
    line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
    if (line == 0) {
	if (evbuffer_get_length(in) > CONTROL_LINE_MAX) {
	    BUF     err = BUF_INIT;

	    buf_puts(&err, "request too long");
	    control_reply(cc, 0, &err);
	    buf_free(&err);
	    cc->draining = 1;
	    evbuffer_drain(in, evbuffer_get_length(in));
	}
	return;
    }
    if (len > CONTROL_LINE_MAX) {
	BUF     err = BUF_INIT;

	buf_puts(&err, "request too long");
	control_reply(cc, 0, &err);
	buf_free(&err);
	cc->draining = 1;
    } else {
	if (len > 0 && line[len - 1] == '\r')
	    line[len - 1] = 0;
	control_handle_line(cc, line);
    }
    free(line);
}

static void control_write_cb(struct bufferevent *bev, void *arg)
{
    CONTROL_CONN *cc = arg;

    /* A stream's client has read enough (the low watermark): produce again. */
    if (cc->streaming && !cc->replied) {
	if (cc->stream_paused) {
	    cc->stream_paused = 0;
	    cc->more(cc->stream_ctx);
	}
	return;
    }
    if (cc->replied && !cc->draining && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
	control_conn_free(cc);
}

static void control_event_cb(struct bufferevent *bev, short what, void *arg)
{
    CONTROL_CONN *cc = arg;

    /*
     * The client's EOF after its request is normal (it shuts down its side
     * once the line is sent): keep going until the reply is flushed.
     * Otherwise (EOF before a full line, error, timeout) give up.
     */
    if ((what & BEV_EVENT_EOF) && cc->replied
	&& evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
	bufferevent_disable(bev, EV_READ);
	return;
    }
    /* Same while the handler has yet to answer (control_finish). */
    if ((what & BEV_EVENT_EOF) && cc->deferred && !cc->replied) {
	bufferevent_disable(bev, EV_READ);
	return;
    }
    control_conn_free(cc);
}

static void control_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    CONTROL_LISTENER *l = arg;

    event_add(l->ev, 0);
}

static void control_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    CONTROL_LISTENER *l = arg;
    CONTROL *ctl = l->ctl;
    CONTROL_CONN *cc;
    struct timeval tv = {CONTROL_TIMEOUT, 0};
    int     fd, n;

    (void) what;
    /* Take what is pending now, but do not starve the rest of the loop. */
    for (n = 0; n < 64; n++) {
	fd = accept4(lfd, 0, 0, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)) {
	    /* The socket stays readable: stop watching it for a second, or the loop spins. */
	    struct timeval one = {1, 0};

	    log_warn("master", "accept %s: %s: not accepting new connections for 1 second",
		     l->path, strerror(errno));
	    event_del(l->ev);
	    if (l->pause_ev == 0)
		l->pause_ev = evtimer_new(ctl->base, control_resume_cb, l);
	    evtimer_add(l->pause_ev, &one);
	    return;
	}
	if (fd < 0)
	    return;				/* EAGAIN, or a transient error */
	cc = xcalloc(1, sizeof(*cc));
	cc->ctl = ctl;
	cc->admin = l->admin;
	cc->token = ++ctl->next_token;
	cc->bev = bufferevent_socket_new(ctl->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (cc->bev == 0) {
	    close(fd);
	    free(cc);
	    continue;
	}
	cc->next = ctl->conns;
	if (ctl->conns)
	    ctl->conns->prev = cc;
	ctl->conns = cc;
	bufferevent_setcb(cc->bev, control_read_cb, control_write_cb, control_event_cb, cc);
	bufferevent_setwatermark(cc->bev, EV_READ, 0, CONTROL_LINE_MAX * 2);
	bufferevent_set_timeouts(cc->bev, &tv, &tv);
	bufferevent_enable(cc->bev, EV_READ);
    }
}

uint64_t control_defer(CONTROL *ctl)
{
    CONTROL_CONN *cc = ctl->current;

    if (cc == 0)
	return 0;
    cc->deferred = 1;
    return cc->token;
}

void    control_set_stream_timeout(CONTROL *ctl, int seconds)
{
    ctl->stream_timeout = seconds > 0 ? seconds : CONTROL_STREAM_TIMEOUT;
}

CONTROL_STREAM *control_stream(CONTROL *ctl, void (*more) (void *ctx), void (*gone) (void *ctx),
			               void *ctx, BUF *err)
{
    CONTROL_CONN *cc = ctl->current;
    struct timeval tv = {ctl->stream_timeout, 0};

    if (cc == 0) {
	buf_puts(err, "internal error: no request");
	return 0;
    }
    /* Each stream holds up to CONTROL_STREAM_HIGH bytes and a page of the queue. */
    if (ctl->nstreams >= CONTROL_STREAMS_MAX) {
	buf_printf(err, "too many queue views in progress (%d); try again later", ctl->nstreams);
	return 0;
    }
    ctl->nstreams++;
    cc->deferred = 1;
    cc->streaming = 1;
    cc->more = more;
    cc->gone = gone;
    cc->stream_ctx = ctx;
    /* No more input is expected; a client that stops reading is dropped after the timeout. */
    bufferevent_set_timeouts(cc->bev, 0, &tv);
    bufferevent_setwatermark(cc->bev, EV_WRITE, CONTROL_STREAM_LOW, 0);
    return cc;
}

int     control_stream_write(CONTROL_STREAM *cc, const void *data, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(cc->bev);

    if (!cc->stream_started) {
	evbuffer_add(out, "ok\n", 3);
	cc->stream_started = 1;
    }
    if (len)
	evbuffer_add(out, data, len);
    bufferevent_enable(cc->bev, EV_WRITE);
    if (evbuffer_get_length(out) > CONTROL_STREAM_HIGH) {
	cc->stream_paused = 1;
	return 1;
    }
    return 0;
}

void    control_stream_end(CONTROL_STREAM *cc, int ok, const char *text)
{
    BUF     b = BUF_INIT;

    if (ok || !cc->stream_started) {
	if (ok && !cc->stream_started)
	    control_stream_write(cc, "", 0);
	if (ok) {
	    cc->replied = 1;
	    bufferevent_enable(cc->bev, EV_WRITE);
	} else {
	    buf_puts(&b, text && *text ? text : "request failed");
	    control_reply(cc, 0, &b);
	    buf_free(&b);
	}
	/* Everything already sent: no write callback will come to close it. */
	if (evbuffer_get_length(bufferevent_get_output(cc->bev)) == 0 && !cc->draining)
	    control_conn_free(cc);
	return;
    }

    /*
     * Part of the answer is out: reset the connection, so that the client
     * gets an error instead of a short answer that looks complete.
     */
    struct linger lg = {1, 0};

    (void) setsockopt(bufferevent_getfd(cc->bev), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    cc->replied = 1;
    control_conn_free(cc);
}

void    control_finish(CONTROL *ctl, uint64_t token, int ok, BUF *out)
{
    CONTROL_CONN *cc;

    /* Look the connection up: the client may have gone (and it been freed) meanwhile. */
    for (cc = ctl->conns; cc; cc = cc->next)
	if (cc->token == token && cc->deferred && !cc->replied)
	    break;
    if (cc == 0)
	return;
    control_reply(cc, ok, out);
}

static int control_mkdir(const char *path, mode_t mode, int gid, char *err, size_t errlen)
{
    struct stat st;

    if (mkdir(path, mode) < 0 && errno != EEXIST) {
	snprintf(err, errlen, "create directory %s: %s", path, strerror(errno));
	return -1;
    }
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
	snprintf(err, errlen, "%s: not a directory", path);
	return -1;
    }
    /* relayqd gave it the group as root; mail_owner need not be a member of it. */
    if (gid >= 0 && st.st_gid != (gid_t) gid && chown(path, (uid_t) -1, (gid_t) gid) < 0) {
	snprintf(err, errlen, "chown %s: %s", path, strerror(errno));
	return -1;
    }
    if ((st.st_mode & 07777) != mode && chmod(path, mode) < 0) {
	snprintf(err, errlen, "chmod %s: %s", path, strerror(errno));
	return -1;
    }
    return 0;
}

static int control_listen(CONTROL *ctl, CONTROL_LISTENER *l, const char *queue_dir,
			          const char *rel, int admin, mode_t mode, int gid,
			          char *err, size_t errlen)
{
    struct sockaddr_un sun;
    int     fd;

    l->ctl = ctl;
    l->admin = admin;
    l->fd = -1;
    l->path = xasprintf("%s/%s", queue_dir, rel);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(l->path) >= sizeof(sun.sun_path)) {
	snprintf(err, errlen, "socket path too long: %s", l->path);
	return -1;
    }
    strcpy(sun.sun_path, l->path);
    /* A socket left by a daemon that died is in the way; we hold the queue lock. */
    (void) unlink(l->path);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
	snprintf(err, errlen, "socket: %s", strerror(errno));
	return -1;
    }
    l->fd = fd;
    if (bind(fd, (struct sockaddr *) &sun, sizeof(sun)) < 0) {
	snprintf(err, errlen, "bind %s: %s", l->path, strerror(errno));
	return -1;
    }
    struct stat st;

    /* In the set-gid private/ the socket has the group already. */
    if (gid >= 0 && (stat(l->path, &st) < 0 || st.st_gid != (gid_t) gid)
	&& chown(l->path, (uid_t) -1, (gid_t) gid) < 0) {
	snprintf(err, errlen, "chown %s: %s", l->path, strerror(errno));
	return -1;
    }
    if (chmod(l->path, mode) < 0) {
	snprintf(err, errlen, "chmod %s: %s", l->path, strerror(errno));
	return -1;
    }
    if (listen(fd, 64) < 0) {
	snprintf(err, errlen, "listen %s: %s", l->path, strerror(errno));
	return -1;
    }
    l->ev = event_new(ctl->base, fd, EV_READ | EV_PERSIST, control_accept_cb, l);
    if (l->ev == 0 || event_add(l->ev, 0) < 0) {
	snprintf(err, errlen, "event_add %s failed", l->path);
	return -1;
    }
    return 0;
}

CONTROL *control_create(struct event_base *base, const char *queue_dir, int gid,
			        CONTROL_HANDLER handle, void *ctx, char *err, size_t errlen)
{
    CONTROL *ctl = xcalloc(1, sizeof(*ctl));
    char   *pub = xasprintf("%s/public", queue_dir);
    char   *priv = xasprintf("%s/private", queue_dir);
    int     ok;

    ctl->base = base;
    ctl->handle = handle;
    ctl->ctx = ctx;
    ctl->lsn[0].fd = ctl->lsn[1].fd = -1;
    ctl->stream_timeout = CONTROL_STREAM_TIMEOUT;

    /*
     * public/ is open to every local user (mailq works for anyone, as with
     * Postfix's showq); private/ only lets setgid_group in, and the admin
     * socket itself is 0660 of that group.
     */
    ok = control_mkdir(pub, 0755, -1, err, errlen) == 0
	&& control_mkdir(priv, gid >= 0 ? 02710 : 0700, gid, err, errlen) == 0
	&& control_listen(ctl, &ctl->lsn[0], queue_dir, CONTROL_QUERY_PATH, 0, 0666, -1, err, errlen) == 0
	&& control_listen(ctl, &ctl->lsn[1], queue_dir, CONTROL_ADMIN_PATH, 1, gid >= 0 ? 0660 : 0600, gid, err, errlen) == 0;
    free(pub);
    free(priv);
    if (!ok) {
	control_free(ctl);
	return 0;
    }
    return ctl;
}

void    control_free(CONTROL *ctl)
{
    int     i;

    if (ctl == 0)
	return;
    for (i = 0; i < 2; i++) {
	CONTROL_LISTENER *l = &ctl->lsn[i];

	if (l->ev)
	    event_free(l->ev);
	if (l->pause_ev)
	    event_free(l->pause_ev);
	if (l->fd >= 0) {
	    close(l->fd);
	    if (l->path)
		(void) unlink(l->path);
	}
	free(l->path);
    }
    while (ctl->conns)
	control_conn_free(ctl->conns);
    free(ctl);
}

/* ---- client side ---- */

static int control_write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
	ssize_t n = write(fd, p, len);

	if (n < 0) {
	    if (errno == EINTR)
		continue;
	    return -1;
	}
	p += n;
	len -= (size_t) n;
    }
    return 0;
}

#define CONTROL_HEAD_MAX	8192	/* longest first line ("ok" or "error TEXT") */

int     control_call_stream(const char *queue_dir, int admin, const char *request,
			            CONTROL_OUT_FN out, void *ctx, char *err, size_t errlen)
{
    struct sockaddr_un sun;
    struct timeval tv = {CONTROL_CLIENT_TIMEOUT, 0};
    char   *path = xasprintf("%s/%s", queue_dir, admin ? CONTROL_ADMIN_PATH : CONTROL_QUERY_PATH);
    BUF     head = BUF_INIT;
    char    chunk[65536];
    char   *nl;
    ssize_t n;
    int     fd, ret = -1, ok = 0;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun.sun_path)) {
	snprintf(err, errlen, "socket path too long: %s", path);
	free(path);
	return CONTROL_ERROR;
    }
    strcpy(sun.sun_path, path);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
	snprintf(err, errlen, "socket: %s", strerror(errno));
	free(path);
	return CONTROL_ERROR;
    }
    if (connect(fd, (struct sockaddr *) &sun, sizeof(sun)) < 0) {
	int     e = errno;

	snprintf(err, errlen, "connect %s: %s", path, strerror(e));
	free(path);
	close(fd);
	if (e == ENOENT || e == ECONNREFUSED || e == ENOTDIR)
	    return CONTROL_DOWN;
	if (e == EACCES || e == EPERM)
	    return CONTROL_DENIED;
	return CONTROL_ERROR;
    }
    free(path);
    (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (control_write_all(fd, request, strlen(request)) < 0
	|| ((strlen(request) == 0 || request[strlen(request) - 1] != '\n')
	    && control_write_all(fd, "\n", 1) < 0)) {
	snprintf(err, errlen, "write request: %s", strerror(errno));
	close(fd);
	return CONTROL_ERROR;
    }
    /* One request per connection: say so, the daemon may wait for it. */
    (void) shutdown(fd, SHUT_WR);

    /*
     * The first line says ok or error; after "ok" the payload is handed to
     * out() as it arrives (a streamed view can be larger than memory).  An
     * answer cut short (the daemon resets the connection when a view fails
     * halfway) is an error, after what was already handed over.
     */
    for (;;) {
	n = read(fd, chunk, sizeof(chunk));
	if (n < 0 && errno == EINTR)
	    continue;
	if (n < 0) {
	    snprintf(err, errlen, "read reply: %s%s", errno == EAGAIN ? "timed out" : strerror(errno),
		     ok ? " (the answer is incomplete)" : "");
	    ret = CONTROL_ERROR;
	    break;
	}
	if (n == 0) {
	    if (!ok) {
		snprintf(err, errlen, "connection closed without a reply");
		ret = CONTROL_ERROR;
	    } else {
		ret = CONTROL_OK;
	    }
	    break;
	}
	if (ok) {
	    if (out(ctx, chunk, (size_t) n) < 0) {
		snprintf(err, errlen, "write: %s", strerror(errno));
		ret = CONTROL_ERROR;
		break;
	    }
	    continue;
	}
	buf_append(&head, chunk, (size_t) n);
	if ((nl = memchr(head.data, '\n', head.len)) == 0) {
	    if (head.len > CONTROL_HEAD_MAX) {
		snprintf(err, errlen, "malformed reply");
		ret = CONTROL_ERROR;
		break;
	    }
	    continue;
	}
	if (nl - head.data == 2 && memcmp(head.data, "ok", 2) == 0) {
	    size_t  rest = head.len - (size_t) (nl + 1 - head.data);

	    ok = 1;
	    if (rest && out(ctx, nl + 1, rest) < 0) {
		snprintf(err, errlen, "write: %s", strerror(errno));
		ret = CONTROL_ERROR;
		break;
	    }
	    continue;
	}
	if (strncmp(head.data, "error ", 6) == 0)
	    snprintf(err, errlen, "%.*s", (int) (nl - head.data - 6), head.data + 6);
	else
	    snprintf(err, errlen, "malformed reply");
	ret = CONTROL_ERROR;
	break;
    }
    close(fd);
    buf_free(&head);
    return ret;
}

static int control_to_buf(void *ctx, const char *data, size_t len)
{
    buf_append(ctx, data, len);
    return 0;
}

int     control_call(const char *queue_dir, int admin, const char *request, BUF *out,
		             char *err, size_t errlen)
{
    BUF     reply = BUF_INIT;
    int     ret = control_call_stream(queue_dir, admin, request, control_to_buf, &reply, err, errlen);

    if (ret == CONTROL_OK && reply.len)
	buf_append(out, reply.data, reply.len);
    buf_free(&reply);
    return ret;
}
