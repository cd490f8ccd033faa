/*
 * smtp_cache.c: the connection cache (idle sessions between deliveries).
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
/* The connection cache                                                    */
/* ---------------------------------------------------------------------- */

/*
 * Like Postfix's smtp_connection_cache_on_demand, inside the process: a
 * session whose transaction ended cleanly is parked instead of closed, and
 * the next delivery to the same server address and port (under the same
 * parameters, hence the same TLS requirement) starts with MAIL FROM.  An
 * idle session is closed with QUIT after smtp_connection_cache_time_limit,
 * at a reload, at shutdown, and at smtp_free().  If the server speaks or
 * hangs up while the session is idle, it is dropped at once.
 */

void conn_free(SMTP_CONN *c)
{
    SMTP   *s = c->s;

    if (c->prev)
	c->prev->next = c->next;
    else if (s->conns == c)
	s->conns = c->next;
    if (c->next)
	c->next->prev = c->prev;
    if (!c->closing)
	s->nidle--;
    if (c->timer)
	event_free(c->timer);
    if (c->bev)
	bufferevent_free(c->bev);		/* closes the socket (and frees SSL) */
    params_release(c->p);
    free(c);
}

/*
 * Idle: the server spoke first (most likely "421 timeout") and is going
 * away.  Closing: this is the reply to QUIT.  Either way the session ends.
 */
static void conn_readcb(struct bufferevent *bev, void *arg)
{
    conn_free((SMTP_CONN *) arg);
}

static void conn_eventcb(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
	conn_free((SMTP_CONN *) arg);
}

/* Say QUIT, then wait a little for the reply or the end. */
static void conn_quit(SMTP_CONN *c)
{
    struct timeval tv = {SMTP_CACHE_QUIT_TMO, 0};

    c->closing = 1;
    c->s->nidle--;
    evbuffer_add(bufferevent_get_output(c->bev), "QUIT\r\n", 6);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    evtimer_add(c->timer, &tv);
}

/*
 * QUIT without the event loop (smtp_free(), after the loop stopped): one
 * non-blocking write of the command (through TLS when the session has it),
 * best effort.  A bufferevent keeps the front of its output buffer frozen
 * so that only it drains it; the session ends here, so thaw it and write.
 */
void conn_quit_now(SMTP_CONN *c)
{
    struct bufferevent *under = bufferevent_get_underlying(c->bev);
    SSL    *ssl = bufferevent_openssl_get_ssl(c->bev);
    struct evbuffer *out;

    if (ssl != NULL && under != NULL) {
	if (SSL_write(ssl, "QUIT\r\n", 6) <= 0) {
	    ERR_clear_error();
	    return;
	}
	out = bufferevent_get_output(under);
	evbuffer_unfreeze(out, 1);
	evbuffer_write(out, bufferevent_getfd(under));
    } else {
	out = bufferevent_get_output(c->bev);
	evbuffer_add(out, "QUIT\r\n", 6);
	evbuffer_unfreeze(out, 1);
	evbuffer_write(out, bufferevent_getfd(c->bev));
    }
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    SMTP_CONN *c = arg;

    if (c->closing)
	conn_free(c);
    else
	conn_quit(c);				/* smtp_connection_cache_time_limit */
}

/* Close every idle cached session with QUIT (reload, shutdown). */
void cache_close_idle(SMTP *s)
{
    SMTP_CONN *c, *next;

    for (c = s->conns; c != NULL; c = next) {
	next = c->next;
	if (!c->closing)
	    conn_quit(c);
    }
}

/* May this session, its transaction over, serve another delivery? */
int sess_cacheable(SMTP_DELIV *d)
{
    SMTP   *s = d->s;

    /* A session logged in for one sender must not carry another's mail. */
    if (d->sasl_done && d->p->sasl_sender_dep)
	return (0);
    return (d->p->cache_on && !s->shutdown && d->p == s->p && !d->no_reuse
	    && d->bev != NULL && d->conn_use < d->p->reuse_limit
	    && s->nidle < SMTP_CACHE_MAX_IDLE
	    && time_mono_us() - d->conn_born_us < SMTP_CACHE_MAX_AGE_US
    /* Anything unread now would be taken for the next reply. */
	    && evbuffer_get_length(bufferevent_get_input(d->bev)) == 0);
}

/* Park the session, then go on with this delivery (usually: its end). */
void sess_cache(SMTP_DELIV *d)
{
    SMTP   *s = d->s;
    SMTP_CONN *c = xcalloc(1, sizeof(*c));
    const SMTP_ADDR *a = &d->addrs[d->cur];
    struct timeval tv = {d->p->cache_time > 0 ? d->p->cache_time : 1, 0};

    c->s = s;
    c->p = d->p;
    c->p->refs++;
    c->bev = d->bev;
    d->bev = NULL;
    d->fd = -1;
    snprintf(c->addr, sizeof(c->addr), "%s", a->addr);
    c->port = a->port;
    c->tls_on = d->tls_on;
    snprintf(c->dest, sizeof(c->dest), "%s", a->dest);
    c->f_pipelining = d->f_pipelining;
    c->f_dsn = d->f_dsn;
    c->f_smtputf8 = d->f_smtputf8;
    c->f_starttls = d->f_starttls;
    c->f_8bitmime = d->f_8bitmime;
    c->f_size = d->f_size;
    c->size_limit = d->size_limit;
    c->uses = d->conn_use;
    c->born_us = d->conn_born_us;
    c->timer = evtimer_new(s->base, conn_timer_cb, c);
    bufferevent_setcb(c->bev, conn_readcb, NULL, conn_eventcb, c);
    bufferevent_enable(c->bev, EV_READ);
    evtimer_add(c->timer, &tv);
    c->next = s->conns;
    if (s->conns)
	s->conns->prev = c;
    s->conns = c;
    s->nidle++;
    sess_close(d);
    deliv_next_address(d);
}

/*
 * Take an idle session to addrs[cur] and start the transaction on it: no
 * connect, greeting, EHLO or TLS, so delays= c is about 0.  The newest
 * session first: it is the least likely to have been timed out by the
 * server.  0 when there is none.
 */
int cache_take(SMTP_DELIV *d)
{
    SMTP   *s = d->s;
    const SMTP_ADDR *a = &d->addrs[d->cur];
    SMTP_CONN *c;

    if (d->skip_cache || !d->p->cache_on)
	return (0);
    for (c = s->conns; c != NULL; c = c->next)
	if (!c->closing && c->p == d->p && c->port == a->port && strcmp(c->addr, a->addr) == 0
	    && strcmp(c->dest, a->dest) == 0)	/* same TLS policy and credentials */
	    break;
    if (c == NULL)
	return (0);
    d->bev = c->bev;
    c->bev = NULL;
    d->fd = -1;					/* the bufferevent owns the socket */
    d->tls_on = c->tls_on;
    d->f_pipelining = c->f_pipelining;
    d->f_dsn = c->f_dsn;
    d->f_smtputf8 = c->f_smtputf8;
    d->f_starttls = c->f_starttls;
    d->f_8bitmime = c->f_8bitmime;
    d->f_size = c->f_size;
    d->size_limit = c->size_limit;
    d->conn_use = c->uses;
    d->conn_born_us = c->born_us;
    d->reused = 1;
    d->no_reuse = 0;
    conn_free(c);
    snprintf(d->namaddr, sizeof(d->namaddr), "%s[%s]", a->host, a->addr);
    snprintf(d->relay, sizeof(d->relay), "%s:%d", d->namaddr, a->port);
    d->connected = 1;
    d->reached = d->cur;
    buf_reset(&d->reply);
    d->reply_lines = 0;
    bufferevent_setcb(d->bev, sess_readcb, sess_writecb, sess_eventcb, d);
    bufferevent_enable(d->bev, EV_READ | EV_WRITE);
    xact_start(d);
    return (1);
}

/*
 * A cached session that turns out dead before the server answered anything
 * in this transaction (end of file, or 421 to the first command): not a
 * failure of the delivery.  Connect to the same address afresh, quietly.
 */
int sess_stale(SMTP_DELIV *d)
{
    if (!d->reused || d->xact_replies > 0 || d->stage != ST_XACT)
	return (0);
    sess_close(d);
    d->reused = 0;
    d->skip_cache = 1;
    d->sessions--;
    d->setup_us = 0;
    sess_connect(d);
    return (1);
}

/*
 * The transaction is over and the session is fine: park it for the next
 * delivery (after RSET when the transaction was cut short before the end
 * of DATA), or end it with QUIT.
 */
void xact_end(SMTP_DELIV *d, int need_rset)
{
    if (!sess_cacheable(d)) {
	send_quit(d);
	return;
    }
    if (need_rset) {
	sess_send(d, "RSET");
	d->cmd_head = d->cmd_tail = 0;
	sess_arm(d, ST_RSET, d->p->rset_tmo, "sending RSET");
	return;
    }
    sess_cache(d);
}

