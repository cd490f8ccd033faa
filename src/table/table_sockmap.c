/*
 * table_sockmap - socketmap:inet:host:port:name and
 * socketmap:unix:/path:name, Postfix's (and Sendmail's) socketmap
 * protocol: the request is the netstring "name key", the reply one of
 * "OK value", "NOTFOUND ", "TEMP reason", "TIMEOUT reason", "PERM reason".
 *
 * Postfix's limits (dict_sockmap.c): 100 s to connect, send or receive, a
 * reply of at most 100000 bytes, a query of at most 10000 bytes (a longer
 * key is "not found", with a warning), an idle connection closed after
 * 10 s, a connection re-opened after 100 s; a connection that breaks
 * (the server restarted) is retried once.
 *
 * Two ways in: table_lookup() blocks (the CLI, postmap -q) and the
 * asynchronous path runs on the daemon's event loop with libevent, one
 * connection per table with the requests queued on it (the protocol is
 * one request, one reply).  Callbacks never run inside the call that
 * queued the request.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "util/util.h"
#include "table/table_priv.h"

static int sm_timeout = 100, sm_idle = 10, sm_ttl = 100;

#define SM_MAX_REPLY	100000
#define SM_MAX_QUERY	10000

void    table_set_sockmap_limits(int timeout, int idle, int ttl)
{
    sm_timeout = timeout > 0 ? timeout : 100;
    sm_idle = idle > 0 ? idle : 10;
    sm_ttl = ttl > 0 ? ttl : 100;
}

typedef struct SM_OP SM_OP;

typedef struct SM {
    TABLE  *t;
    char   *endpoint;			/* "inet:host:port" / "unix:/path" */
    char   *mapname;
    struct sockaddr_storage sa;
    socklen_t salen;
    /* blocking client */
    int     fd;
    time_t  fd_born, fd_used;
    /* event-loop client */
    struct bufferevent *bev;
    int     connected;
    int     reused;			/* bev has already served a request */
    time_t  bev_born;
    struct event *timer;		/* request/connect timeout, or idle */
    int     timer_is_idle;
    SM_OP  *head, *tail;		/* head is in flight when sent */
    int     sent;
} SM;

struct SM_OP {
    SM     *sm;
    char   *request;			/* the whole netstring */
    TABLE_SOCK_CB cb;
    void   *arg;
    int     cancelled;
    int     retried;
    SM_OP  *next;
    struct event *defer;		/* an immediate answer, delivered from the loop */
    int     status;
    char   *val, *err;
};

/* ---- parsing the name and the reply ----------------------------------- */

static void *sm_load(TABLE *t, char *err, size_t errlen)
{
    SM     *sm = xcalloc(1, sizeof(*sm));
    char   *colon = strrchr(t->name, ':');

    sm->t = t;
    sm->fd = -1;
    if (colon == NULL || colon[1] == 0) {
	snprintf(err, errlen, "%s: expected socketmap:inet:host:port:name or "
		 "socketmap:unix:/path:name", t->spec);
	free(sm);
	return (NULL);
    }
    sm->endpoint = xstrndup(t->name, colon - t->name);
    sm->mapname = xstrdup(colon + 1);
    if (strncmp(sm->endpoint, "unix:", 5) == 0) {
	struct sockaddr_un *sun = (struct sockaddr_un *) &sm->sa;

	if (strlen(sm->endpoint + 5) == 0 || strlen(sm->endpoint + 5) >= sizeof(sun->sun_path)) {
	    snprintf(err, errlen, "%s: bad socket path", t->spec);
	    goto bad;
	}
	sun->sun_family = AF_UNIX;
	strcpy(sun->sun_path, sm->endpoint + 5);
	sm->salen = sizeof(*sun);
    } else if (strncmp(sm->endpoint, "inet:", 5) == 0) {
	char   *hp = xstrdup(sm->endpoint + 5), *port = strrchr(hp, ':'), *host = hp;
	struct addrinfo hints, *res = NULL;
	int     rc;

	if (port == NULL || port[1] == 0 || port == hp) {
	    snprintf(err, errlen, "%s: expected inet:host:port", t->spec);
	    free(hp);
	    goto bad;
	}
	*port++ = 0;
	if (*host == '[' && host[strlen(host) - 1] == ']') {
	    host++;
	    host[strlen(host) - 1] = 0;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0 || res == NULL) {
	    snprintf(err, errlen, "%s: %s:%s: %s", t->spec, host, port, gai_strerror(rc));
	    free(hp);
	    goto bad;
	}
	memcpy(&sm->sa, res->ai_addr, res->ai_addrlen);
	sm->salen = res->ai_addrlen;
	freeaddrinfo(res);
	free(hp);
    } else {
	snprintf(err, errlen, "%s: endpoint must be inet:host:port or unix:/path", t->spec);
	goto bad;
    }
    return (sm);

bad:
    free(sm->endpoint);
    free(sm->mapname);
    free(sm);
    return (NULL);
}

/* Make the request netstring; NULL when the key is too long. */
static char *sm_request(SM *sm, const char *key)
{
    size_t  len;

    if (strlen(key) > SM_MAX_QUERY)
	return (NULL);
    len = strlen(sm->mapname) + 1 + strlen(key);
    return (xasprintf("%zu:%s %s,", len, sm->mapname, key));
}

/*
 * Is a whole netstring at buf[0..len)?  1 yes (*payload, *plen, *used),
 * 0 need more, -1 malformed (err).
 */
static int netstring_parse(const char *buf, size_t len, const char **payload, size_t *plen,
			           size_t *used, char *err, size_t errlen)
{
    size_t  n = 0, i;

    for (i = 0; i < len && buf[i] != ':'; i++) {
	if (buf[i] < '0' || buf[i] > '9' || i >= 7) {
	    snprintf(err, errlen, "malformed netstring (bad length)");
	    return (-1);
	}
	n = n * 10 + (buf[i] - '0');
    }
    if (i == len)
	return (0);
    if (i == 0) {
	snprintf(err, errlen, "malformed netstring (no length)");
	return (-1);
    }
    if (n > SM_MAX_REPLY) {
	snprintf(err, errlen, "reply too large (%zu bytes)", n);
	return (-1);
    }
    if (len < i + 1 + n + 1)
	return (0);
    if (buf[i + 1 + n] != ',') {
	snprintf(err, errlen, "malformed netstring (no ',')");
	return (-1);
    }
    *payload = buf + i + 1;
    *plen = n;
    *used = i + 1 + n + 1;
    return (1);
}

/* Interpret a reply payload: status, value or error text. */
static int sm_reply(SM *sm, const char *p, size_t plen, BUF *val, char *err, size_t errlen)
{
    const char *sp = memchr(p, ' ', plen);
    size_t  wlen = sp ? (size_t) (sp - p) : plen;
    const char *rest = sp ? sp + 1 : p + plen;
    size_t  rlen = p + plen - rest;
    const char *class;

    if (memchr(p, 0, plen)) {
	snprintf(err, errlen, "%s: socketmap server %s: reply contains a NUL byte",
		 sm->t->spec, sm->endpoint);
	return (TABLE_ERROR);
    }
    if (wlen == 2 && memcmp(p, "OK", 2) == 0) {
	buf_reset(val);
	buf_append(val, rest, rlen);
	return (TABLE_FOUND);
    }
    if (wlen == 8 && memcmp(p, "NOTFOUND", 8) == 0)
	return (TABLE_NOTFOUND);
    if (wlen == 4 && memcmp(p, "TEMP", 4) == 0)
	class = "temporary";
    else if (wlen == 7 && memcmp(p, "TIMEOUT", 7) == 0)
	class = "timeout";
    else if (wlen == 4 && memcmp(p, "PERM", 4) == 0)
	class = "permanent";
    else
	class = "unknown";
    while (rlen > 0 && *rest == ' ')
	rest++, rlen--;
    snprintf(err, errlen, "%s: socketmap server %s %s error%s%.*s", sm->t->spec,
	     sm->endpoint, class, rlen ? ": " : "", (int) (rlen > 200 ? 200 : rlen), rest);
    for (char *c = err; *c; c++)
	if ((unsigned char) *c < 32 || (unsigned char) *c > 126)
	    *c = '?';
    return (TABLE_ERROR);
}

/* ---- the blocking client ---------------------------------------------- */

static void sm_sync_close(SM *sm)
{
    if (sm->fd >= 0)
	close(sm->fd);
    sm->fd = -1;
}

static int wait_fd(int fd, short ev, time_t deadline)
{
    struct pollfd p = {fd, ev, 0};
    int     rc;

    for (;;) {
	time_t  left = deadline - time_sec();

	if (left <= 0) {
	    errno = ETIMEDOUT;
	    return (-1);
	}
	if ((rc = poll(&p, 1, (int) left * 1000)) > 0)
	    return (0);
	if (rc == 0) {
	    errno = ETIMEDOUT;
	    return (-1);
	}
	if (errno != EINTR)
	    return (-1);
    }
}

static int sm_sync_connect(SM *sm)
{
    time_t  deadline = time_sec() + sm_timeout;
    int     fd, soerr = 0;
    socklen_t sl = sizeof(soerr);

    if ((fd = socket(sm->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
	return (-1);
    if (connect(fd, (struct sockaddr *) &sm->sa, sm->salen) < 0) {
	if (errno != EINPROGRESS || wait_fd(fd, POLLOUT, deadline) < 0
	    || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
	    if (soerr)
		errno = soerr;
	    soerr = errno;
	    close(fd);
	    errno = soerr;
	    return (-1);
	}
    }
    sm->fd = fd;
    sm->fd_born = time_sec();
    return (0);
}

/* One request and reply on the blocking connection. 1 ok, 0 EOF, -1 error. */
static int sm_sync_xfer(SM *sm, const char *req, BUF *in, const char **p, size_t *plen,
			        char *err, size_t errlen)
{
    time_t  deadline = time_sec() + sm_timeout;
    size_t  off = 0, len = strlen(req), used;
    ssize_t n;
    char    chunk[4096];
    int     rc;

    while (off < len) {
	if ((n = send(sm->fd, req + off, len - off, MSG_NOSIGNAL)) > 0) {
	    off += n;
	} else if (n < 0 && errno == EAGAIN) {
	    if (wait_fd(sm->fd, POLLOUT, deadline) < 0)
		goto io_err;
	} else if (n < 0 && errno == EINTR) {
	    continue;
	} else {
	    return (0);
	}
    }
    buf_reset(in);
    for (;;) {
	if ((rc = netstring_parse(in->data ? in->data : "", in->len, p, plen, &used, chunk,
				  sizeof(chunk))) > 0)
	    return (1);
	if (rc < 0) {
	    snprintf(err, errlen, "%s: socketmap server %s: %s", sm->t->spec, sm->endpoint, chunk);
	    return (-1);
	}
	if ((n = recv(sm->fd, chunk, sizeof(chunk), 0)) > 0) {
	    buf_append(in, chunk, n);
	} else if (n == 0) {
	    if (in->len == 0)
		return (0);
	    snprintf(err, errlen, "%s: socketmap server %s: connection closed in the middle "
		     "of a reply", sm->t->spec, sm->endpoint);
	    return (-1);
	} else if (errno == EAGAIN) {
	    if (wait_fd(sm->fd, POLLIN, deadline) < 0)
		goto io_err;
	} else if (errno != EINTR) {
	    if (errno == ECONNRESET && in->len == 0)
		return (0);
	    goto io_err;
	}
    }

io_err:
    snprintf(err, errlen, "%s: socketmap server %s: %s", sm->t->spec, sm->endpoint,
	     errno == ETIMEDOUT ? "timeout" : strerror(errno));
    return (-1);
}

static int sm_lookup(TABLE *t, void *priv, const char *key, const char **val,
		             char *err, size_t errlen)
{
    SM     *sm = priv;
    BUF     in = BUF_INIT, v = BUF_INIT;
    char   *req;
    const char *p;
    size_t  plen;
    int     rc = TABLE_ERROR, tries;
    time_t  now = time_sec();

    /* Keys go out as given: Postfix does not fold socketmap queries either. */
    if ((req = sm_request(sm, key)) == NULL) {
	table_warnf("table %s query too large: '%.100s', returning 'not found'", t->spec, key);
	return (TABLE_NOTFOUND);
    }
    if (sm->fd >= 0 && (now - sm->fd_used >= sm_idle || now - sm->fd_born >= sm_ttl))
	sm_sync_close(sm);
    for (tries = 0; tries < 2; tries++) {
	int     fresh = sm->fd < 0, x;

	if (sm->fd < 0 && sm_sync_connect(sm) < 0) {
	    snprintf(err, errlen, "%s: connect to socketmap server %s: %s", t->spec,
		     sm->endpoint, errno == ETIMEDOUT ? "timeout" : strerror(errno));
	    break;
	}
	if ((x = sm_sync_xfer(sm, req, &in, &p, &plen, err, errlen)) > 0) {
	    if ((rc = sm_reply(sm, p, plen, &v, err, errlen)) == TABLE_FOUND)
		table_set_result(t, v.data ? v.data : "", v.len, val);
	    sm->fd_used = time_sec();
	    break;
	}
	sm_sync_close(sm);
	if (x < 0)
	    break;
	/* EOF: retry once on a reused connection (the server restarted). */
	if (fresh) {
	    snprintf(err, errlen, "%s: socketmap server %s closed the connection", t->spec,
		     sm->endpoint);
	    break;
	}
    }
    free(req);
    buf_free(&in);
    buf_free(&v);
    return (rc);
}

/* ---- the event-loop client -------------------------------------------- */

static void sm_send_next(SM *sm);
static void sm_bev_close(SM *sm);

static void op_free(SM_OP *op)
{
    if (op->defer)
	event_free(op->defer);
    free(op->request);
    free(op->val);
    free(op->err);
    free(op);
}

/* Deliver op's result and free it. */
static void op_done(SM_OP *op, int status, const char *val, const char *err)
{
    if (!op->cancelled)
	op->cb(status, val, err, op->arg);
    op_free(op);
}

static void sm_arm(SM *sm, int seconds, int idle)
{
    struct timeval tv = {seconds, 0};

    evtimer_add(sm->timer, &tv);
    sm->timer_is_idle = idle;
}

/* Fail the request in flight (and with it only that one); go on with the rest. */
static void sm_fail_head(SM *sm, const char *err)
{
    SM_OP  *op = sm->head;

    sm_bev_close(sm);
    if (op == NULL)
	return;
    sm->head = op->next;
    if (sm->head == NULL)
	sm->tail = NULL;
    op_done(op, TABLE_ERROR, NULL, err);
    sm_send_next(sm);
}

static void sm_read_cb(struct bufferevent *bev, void *arg)
{
    SM     *sm = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t  len = evbuffer_get_length(in), plen, used;
    const char *p;
    char    err[1024], why[256];
    int     rc;
    BUF     v = BUF_INIT;
    SM_OP  *op;

    if (!sm->sent) {
	snprintf(err, sizeof(err), "%s: socketmap server %s sent data without a request",
		 sm->t->spec, sm->endpoint);
	table_warnf("%s", err);
	sm_bev_close(sm);
	sm_send_next(sm);
	return;
    }
    rc = netstring_parse((const char *) evbuffer_pullup(in, len), len, &p, &plen, &used,
			 why, sizeof(why));
    if (rc == 0)
	return;
    if (rc < 0) {
	snprintf(err, sizeof(err), "%s: socketmap server %s: %s", sm->t->spec, sm->endpoint, why);
	sm_fail_head(sm, err);
	return;
    }
    rc = sm_reply(sm, p, plen, &v, err, sizeof(err));
    evbuffer_drain(in, used);
    op = sm->head;
    sm->head = op->next;
    if (sm->head == NULL)
	sm->tail = NULL;
    sm->sent = 0;
    sm->reused = 1;
    evtimer_del(sm->timer);
    op_done(op, rc, rc == TABLE_FOUND ? (v.data ? v.data : "") : NULL,
	    rc == TABLE_ERROR ? err : NULL);
    buf_free(&v);
    if (evbuffer_get_length(in) > 0) {
	snprintf(err, sizeof(err), "%s: socketmap server %s sent more than one reply",
		 sm->t->spec, sm->endpoint);
	table_warnf("%s", err);
	sm_bev_close(sm);
    }
    sm_send_next(sm);
}

static void sm_event_cb(struct bufferevent *bev, short what, void *arg)
{
    SM     *sm = arg;
    char    err[1024];

    if (what & BEV_EVENT_CONNECTED) {
	sm->connected = 1;
	sm_send_next(sm);
	return;
    }
    /* EOF on a reused connection before any reply: retry once. */
    if ((what & BEV_EVENT_EOF) && sm->head && sm->sent && sm->reused && !sm->head->retried
	&& evbuffer_get_length(bufferevent_get_input(bev)) == 0) {
	sm->head->retried = 1;
	sm_bev_close(sm);
	sm_send_next(sm);
	return;
    }
    if (sm->head == NULL || (!sm->sent && sm->connected)) {
	sm_bev_close(sm);			/* idle connection went away */
	return;
    }
    snprintf(err, sizeof(err), "%s: %s socketmap server %s: %s", sm->t->spec,
	     sm->connected ? "lookup at" : "connect to", sm->endpoint,
	     (what & BEV_EVENT_EOF) ? "connection closed" :
	     evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    sm_fail_head(sm, err);
}

static void sm_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    SM     *sm = arg;
    char    err[1024];

    if (sm->timer_is_idle) {
	sm_bev_close(sm);
	return;
    }
    snprintf(err, sizeof(err), "%s: socketmap server %s: timeout after %d s", sm->t->spec,
	     sm->endpoint, sm_timeout);
    sm_fail_head(sm, err);
}

static void sm_bev_close(SM *sm)
{
    if (sm->bev)
	bufferevent_free(sm->bev);
    sm->bev = NULL;
    sm->connected = 0;
    sm->reused = 0;
    sm->sent = 0;
    if (sm->timer)
	evtimer_del(sm->timer);
}

/* Start the next queued request: connect first when needed. */
static void sm_send_next(SM *sm)
{
    time_t  now = time_sec();

    while (sm->head && sm->head->cancelled && !sm->sent) {
	SM_OP  *op = sm->head;

	sm->head = op->next;
	if (sm->head == NULL)
	    sm->tail = NULL;
	op_free(op);
    }
    if (sm->sent)
	return;
    if (sm->head == NULL) {
	if (sm->bev && sm->connected)
	    sm_arm(sm, sm_idle, 1);
	return;
    }
    if (sm->bev && sm->connected && now - sm->bev_born >= sm_ttl)
	sm_bev_close(sm);
    if (sm->bev == NULL) {
	if (sm->timer == NULL)
	    sm->timer = evtimer_new(table_event_base, sm_timer_cb, sm);
	sm->bev = bufferevent_socket_new(table_event_base, -1, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(sm->bev, sm_read_cb, NULL, sm_event_cb, sm);
	bufferevent_enable(sm->bev, EV_READ | EV_WRITE);
	sm->bev_born = now;
	sm_arm(sm, sm_timeout, 0);
	if (bufferevent_socket_connect(sm->bev, (struct sockaddr *) &sm->sa, (int) sm->salen) < 0) {
	    char    err[1024];

	    snprintf(err, sizeof(err), "%s: connect to socketmap server %s: %s", sm->t->spec,
		     sm->endpoint, strerror(errno));
	    sm_fail_head(sm, err);
	}
	return;
    }
    if (!sm->connected)
	return;
    bufferevent_write(sm->bev, sm->head->request, strlen(sm->head->request));
    sm->sent = 1;
    sm_arm(sm, sm_timeout, 0);
}

static void op_deferred(evutil_socket_t fd, short what, void *arg)
{
    SM_OP  *op = arg;

    op_done(op, op->status, op->val, op->err);
}

void   *table_sockmap_async(TABLE *t, const char *key, TABLE_SOCK_CB cb, void *arg)
{
    SM     *sm = t->priv;
    SM_OP  *op = xcalloc(1, sizeof(*op));

    op->sm = sm;
    op->cb = cb;
    op->arg = arg;
    if ((op->request = sm_request(sm, key)) == NULL) {
	struct timeval zero = {0, 0};

	table_warnf("table %s query too large: '%.100s', returning 'not found'", t->spec, key);
	op->status = TABLE_NOTFOUND;
	op->defer = evtimer_new(table_event_base, op_deferred, op);
	evtimer_add(op->defer, &zero);
	return (op);
    }
    if (sm->tail)
	sm->tail->next = op;
    else
	sm->head = op;
    sm->tail = op;
    if (sm->bev && sm->connected && !sm->sent)
	evtimer_del(sm->timer);
    sm_send_next(sm);
    return (op);
}

void    table_sockmap_cancel(void *ptr)
{
    SM_OP  *op = ptr;
    SM     *sm;

    if (op == NULL)
	return;
    if (op->defer) {
	op_free(op);
	return;
    }
    sm = op->sm;
    op->cancelled = 1;
    /* Not in flight: unlink and free now; in flight: its reply is dropped. */
    if (!(sm->sent && sm->head == op)) {
	SM_OP **pp, *prev = NULL;

	for (pp = &sm->head; *pp; prev = *pp, pp = &(*pp)->next)
	    if (*pp == op) {
		*pp = op->next;
		if (sm->tail == op)
		    sm->tail = prev;
		break;
	    }
	op_free(op);
    }
}

static void sm_free(void *priv)
{
    SM     *sm = priv;
    SM_OP  *op;

    if (sm == NULL)
	return;
    sm_sync_close(sm);
    sm_bev_close(sm);
    if (sm->timer)
	event_free(sm->timer);
    while ((op = sm->head) != NULL) {
	sm->head = op->next;
	op_free(op);
    }
    free(sm->endpoint);
    free(sm->mapname);
    free(sm);
}

const TABLE_OPS table_ops_socketmap = {
    "socketmap", sm_load, sm_lookup, sm_free, TABLE_OPS_ASYNC, NULL, NULL,
};
