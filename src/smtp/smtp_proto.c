/*
 * smtp_proto.c: timers, the connection, and the SMTP dialogue.
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
#include <ifaddrs.h>

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
/* Timers and the connection                                               */
/* ---------------------------------------------------------------------- */

void sess_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    SMTP_DELIV *d = arg;
    char   *text;

    if (d->stage == ST_CONNECT) {
	text = xasprintf("connect to %s:%d: %s", d->namaddr, d->addrs[d->cur].port, strerror(ETIMEDOUT));
	log_msg("smtp", "%s", text);
	sess_fail_connect(d, text);
    } else if (d->stage == ST_QUIT || d->stage == ST_RSET) {
	sess_close(d);
	deliv_next_address(d);
	return;
    } else if (d->stage == ST_TLS) {
	text = xasprintf("Cannot start TLS: handshake failure");
	sess_fail_soft(d, "4.7.5", text, NULL);
    } else {
	text = xasprintf("conversation with %s timed out while %s", d->namaddr, d->stage_desc);
	sess_fail_soft(d, "4.4.2", text, NULL);
    }
    free(text);
}

void sess_arm(SMTP_DELIV *d, int stage, int seconds, const char *desc)
{
    struct timeval tv = {seconds > 0 ? seconds : 1, 0};

    d->stage = stage;
    d->stage_desc = desc;
    evtimer_add(d->timer, &tv);
}

void sess_close(SMTP_DELIV *d)
{
    if (d->conn_ev) {
	event_free(d->conn_ev);
	d->conn_ev = NULL;
    }
    if (d->bev) {
	bufferevent_free(d->bev);		/* closes fd (and frees SSL) */
	d->bev = NULL;
	d->fd = -1;
    }
    if (d->fd >= 0) {
	close(d->fd);
	d->fd = -1;
    }
    if (d->timer)
	evtimer_del(d->timer);
    secure_reset(d);
    d->stage = ST_NONE;
    d->connected = 0;
    d->in_body = 0;
    d->conn_gen++;
}

void sess_send(SMTP_DELIV *d, const char *fmt, ...) UTIL_PRINTF(2, 3);

void sess_send(SMTP_DELIV *d, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    evbuffer_add_vprintf(bufferevent_get_output(d->bev), fmt, ap);
    va_end(ap);
    evbuffer_add(bufferevent_get_output(d->bev), "\r\n", 2);
}

static void sess_connected(SMTP_DELIV *d)
{
    d->connected = 1;
    d->reached = d->cur;
    d->bev = bufferevent_socket_new(d->s->base, d->fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(d->bev, sess_readcb, sess_writecb, sess_eventcb, d);
    bufferevent_enable(d->bev, EV_READ | EV_WRITE);
    d->f_pipelining = d->f_dsn = d->f_smtputf8 = d->f_starttls = d->f_8bitmime = d->f_size = 0;
    d->size_limit = 0;
    d->tls_on = 0;
    d->conn_use = 0;
    d->conn_born_us = time_mono_us();
    d->reused = 0;
    d->no_reuse = 0;
    buf_reset(&d->reply);
    d->reply_lines = 0;
    if (d->p->tls_wrapper) {
	/* smtp_tls_wrappermode: TLS first, the greeting comes through it. */
	secure_tls_start(d, 1);
	return;
    }
    sess_arm(d, ST_GREETING, d->p->helo_tmo, "receiving the initial server greeting");
}

static void sess_connect_cb(evutil_socket_t fd, short what, void *arg)
{
    SMTP_DELIV *d = arg;
    int     err = 0;
    socklen_t len = sizeof(err);
    char   *text;

    event_free(d->conn_ev);
    d->conn_ev = NULL;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
	err = errno;
    if (err == 0) {
	sess_connected(d);
	return;
    }
    text = xasprintf("connect to %s:%d: %s", d->namaddr, d->addrs[d->cur].port, strerror(err));
    log_msg("smtp", "%s", text);		/* Postfix: a bare line per failed address */
    sess_fail_connect(d, text);
    free(text);
}

/* Try addrs[d->cur]. */
/* ---------------------------------------------------------------------- */
/* Mail loops                                                               */
/* ---------------------------------------------------------------------- */

/*
 * relayq's own listeners, from smtpd_listen: "host:port" or "[v6]:port".
 * Address and port are compared together, never the address alone (every
 * loopback next hop in the tests shares 127.0.0.1 with relayq).  Postfix
 * checks only port 25; relayq's default listener is 2525, so every port.
 */
void    smtp_self_load(SMTP_PARAMS *p, const CONFIG *cf)
{
    int     n = 0;
    char  **list = cf && config_known("smtpd_listen") ? config_list(cf, "smtpd_listen", &n) : NULL;

    p->self = xcalloc((size_t) n + 1, sizeof(*p->self));
    for (int i = 0; i < n; i++) {
	char    host[INET6_ADDRSTRLEN + 2];
	const char *spec = list[i], *colon;
	SMTP_SELF *me = &p->self[p->nself];

	if (*spec == '[') {
	    const char *rb = strchr(spec, ']');

	    if (rb == NULL || rb[1] != ':' || (size_t) (rb - spec - 1) >= sizeof(host))
		continue;
	    snprintf(host, sizeof(host), "%.*s", (int) (rb - spec - 1), spec + 1);
	    colon = rb + 1;
	} else {
	    if ((colon = strrchr(spec, ':')) == NULL || (size_t) (colon - spec) >= sizeof(host))
		continue;
	    snprintf(host, sizeof(host), "%.*s", (int) (colon - spec), spec);
	}
	me->port = atoi(colon + 1);
	if (inet_pton(AF_INET, host, me->bin) == 1)
	    me->family = AF_INET;
	else if (inet_pton(AF_INET6, host, me->bin) == 1)
	    me->family = AF_INET6;
	else
	    continue;
	me->wildcard = me->family == AF_INET ? memcmp(me->bin, "\0\0\0\0", 4) == 0
	    : memcmp(me->bin, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16) == 0;
	p->nself++;
    }
    if (list)
	str_list_free(list);
}

void    smtp_self_free(SMTP_PARAMS *p)
{
    free(p->self);
}

/* A wildcard listener answers on every address of this host. */
static int local_address(int family, const unsigned char *bin)
{
    struct ifaddrs *ifa, *i;
    int     found = 0;

    if (family == AF_INET && bin[0] == 127)
	return (1);
    if (family == AF_INET6 && memcmp(bin, &in6addr_loopback, 16) == 0)
	return (1);
    if (getifaddrs(&ifa) < 0)
	return (0);
    for (i = ifa; i && !found; i = i->ifa_next) {
	if (i->ifa_addr == NULL || i->ifa_addr->sa_family != family)
	    continue;
	if (family == AF_INET)
	    found = memcmp(&((struct sockaddr_in *) i->ifa_addr)->sin_addr, bin, 4) == 0;
	else
	    found = memcmp(&((struct sockaddr_in6 *) i->ifa_addr)->sin6_addr, bin, 16) == 0;
    }
    freeifaddrs(ifa);
    return (found);
}

int     smtp_is_self(const SMTP_PARAMS *p, const char *addr, int port)
{
    unsigned char bin[16];
    int     family;

    if (inet_pton(AF_INET, addr, bin) == 1)
	family = AF_INET;
    else if (inet_pton(AF_INET6, addr, bin) == 1)
	family = AF_INET6;
    else
	return (0);
    for (int i = 0; i < p->nself; i++) {
	const SMTP_SELF *me = &p->self[i];

	if (me->port != port || me->family != family)
	    continue;
	if (me->wildcard ? local_address(family, bin) : memcmp(me->bin, bin, family == AF_INET ? 4 : 16) == 0)
	    return (1);
    }
    return (0);
}

/*
 * "mail for DEST loops back to myself": 5.4.6 when the server is the first
 * choice (Postfix: when relayq is the best MX), else 4.4.6 and the next
 * server, as a soft failure.
 */
static void sess_loop(SMTP_DELIV *d)
{
    const char *dest = d->addrs[d->cur].dest[0] ? d->addrs[d->cur].dest : d->dest;
    char   *text = xasprintf("mail for %s loops back to myself", dest ? dest : d->namaddr);

    if (d->cur == 0 && !d->fallback_used)
	sess_fail_hard(d, "5.4.6", text, NULL);
    else
	sess_fail_soft(d, "4.4.6", text, NULL);
    free(text);
}

/* The first word of a reply after its code: the server's name in 220 and 250. */
static int reply_names(const char *reply, const char *name)
{
    size_t  n = strlen(name);

    if (strlen(reply) < 4 || n == 0)
	return (0);
    reply += 4;
    return (str_ncasecmp(reply, name, n) == 0 && (reply[n] == 0 || reply[n] == ' '));
}

void sess_connect(SMTP_DELIV *d)
{
    const SMTP_ADDR *a = &d->addrs[d->cur];
    struct sockaddr_storage ss;
    socklen_t sslen;
    char   *text;

    if (cache_take(d))
	return;
    snprintf(d->namaddr, sizeof(d->namaddr), "%s[%s]", a->host, a->addr);
    snprintf(d->relay, sizeof(d->relay), "%s:%d", d->namaddr, a->port);
    /* Never connect to relayq's own listener: that is a loop, whatever the next hop says. */
    if (smtp_is_self(d->p, a->addr, a->port)) {
	sess_loop(d);
	return;
    }
    if (!secure_policy_fetch(d))
	return;				/* sess_connect() again when it is answered */
    if (secure_policy(d) != 0)
	return;				/* failed, or sess_connect() again after the TLSA lookup */
    memset(&ss, 0, sizeof(ss));
    if (a->family == AF_INET6) {
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &ss;

	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(a->port);
	inet_pton(AF_INET6, a->addr, &sin6->sin6_addr);
	sslen = sizeof(*sin6);
    } else {
	struct sockaddr_in *sin = (struct sockaddr_in *) &ss;

	sin->sin_family = AF_INET;
	sin->sin_port = htons(a->port);
	inet_pton(AF_INET, a->addr, &sin->sin_addr);
	sslen = sizeof(*sin);
    }
    d->stage = ST_CONNECT;
    d->fd = socket(a->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (d->fd < 0 || (connect(d->fd, (struct sockaddr *) &ss, sslen) < 0 && errno != EINPROGRESS)) {
	text = xasprintf("connect to %s:%d: %s", d->namaddr, a->port, strerror(errno));
	log_msg("smtp", "%s", text);
	sess_fail_connect(d, text);
	free(text);
	return;
    }
    /*
     * Our writes are already whole (evbuffers): Nagle would only hold back
     * the last small segment of a message (".", QUIT, a pipelined MAIL)
     * until the peer's delayed ACK, 40 ms a message on a reused session.
     */
    int     one = 1;

    (void) setsockopt(d->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    d->conn_ev = event_new(d->s->base, d->fd, EV_WRITE, sess_connect_cb, d);
    event_add(d->conn_ev, NULL);
    sess_arm(d, ST_CONNECT, d->p->connect_tmo, "connecting");
}

/* ---------------------------------------------------------------------- */
/* The SMTP dialogue                                                        */
/* ---------------------------------------------------------------------- */

static void cmd_push(SMTP_DELIV *d, int type, int ri)
{
    if (d->cmd_tail == d->cmd_cap) {
	d->cmd_cap = d->cmd_cap ? 2 * d->cmd_cap : d->nrcpt + 8;
	d->cmdq = xrealloc(d->cmdq, d->cmd_cap * sizeof(*d->cmdq));
    }
    d->cmdq[d->cmd_tail].type = type;
    d->cmdq[d->cmd_tail].ri = ri;
    d->cmd_tail++;
}

/* "NOTIFY=SUCCESS,FAILURE" */
static void notify_param(BUF *b, int notify)
{
    const char *sep = "";

    if (notify == 0)
	return;
    buf_puts(b, " NOTIFY=");
    if (notify & QNOTIFY_NEVER) {
	buf_puts(b, "NEVER");
	return;
    }
    if (notify & QNOTIFY_SUCCESS)
	buf_puts(b, "SUCCESS"), sep = ",";
    if (notify & QNOTIFY_FAILURE)
	buf_printf(b, "%sFAILURE", sep), sep = ",";
    if (notify & QNOTIFY_DELAY)
	buf_printf(b, "%sDELAY", sep);
}

static void send_rcpt(SMTP_DELIV *d, int slot)
{
    const QRCPT *r = &d->msg->rcpts[d->rcpts[slot]];
    BUF     b = BUF_INIT;

    buf_printf(&b, "RCPT TO:<%s>", d->g_rcpt && d->g_rcpt[slot] ? d->g_rcpt[slot] : r->addr);
    if (d->f_dsn) {
	notify_param(&b, r->notify);
	if (r->orcpt && *r->orcpt)
	    buf_printf(&b, " ORCPT=%s", r->orcpt);
    }
    sess_send(d, "%s", b.data);
    buf_free(&b);
    cmd_push(d, CMD_RCPT, slot);
}

void send_quit(SMTP_DELIV *d)
{
    sess_send(d, "QUIT");
    d->cmd_head = d->cmd_tail = 0;
    cmd_push(d, CMD_QUIT, -1);
    sess_arm(d, ST_QUIT, d->p->quit_tmo, "sending QUIT");
}

static int next_pending_slot(const SMTP_DELIV *d, int from)
{
    for (int i = from; i < d->nrcpt; i++)
	if (d->rstate[i] == R_PENDING)
	    return (i);
    return (-1);
}

static const char *out_content(const SMTP_DELIV *d, size_t *size);
static int smtp_checks(SMTP_DELIV *d);

/* What a delivery says when smtp_generic_maps cannot be read (Postfix's smtp(8) dies: its qmgr says this). */
#define SMTP_GENERIC_TROUBLE "unknown mail transport error"

/* Set-up done: checks that need the EHLO features, then MAIL FROM. */
void xact_start(SMTP_DELIV *d)
{
    const QMSG *m = d->msg;
    BUF     b = BUF_INIT;
    char   *text;
    size_t  msize;
    int     rc;

    d->setup_us = time_now_us();
    d->sessions++;
    d->conn_use++;
    d->xact_replies = 0;
    if ((m->flags & QFLAG_SMTPUTF8) && !d->f_smtputf8) {
	text = xasprintf("SMTPUTF8 is required, but was not offered by host %s", d->namaddr);
	d->stage = ST_XACT;
	for (int i = 0; i < d->nrcpt; i++)
	    if (d->rstate[i] == R_PENDING)
		rcpt_final(d, i, SMTP_BOUNCED, "5.6.7", text, d->relay, d->addrs[d->cur].host, NULL);
	free(text);
	xact_end(d, 0);				/* nothing was sent */
	return;
    }
    if ((rc = smtp_checks(d)) < 0) {
	d->stage = ST_XACT;
	for (int i = 0; i < d->nrcpt; i++)
	    if (d->rstate[i] == R_PENDING)
		rcpt_final(d, i, SMTP_DEFERRED, "4.3.0", rc == -2 ? SMTP_GENERIC_TROUBLE
			   : "smtp header or body checks lookup error",
			   d->relay, d->addrs[d->cur].host, NULL);
	xact_end(d, 0);				/* nothing was sent */
	return;
    }
    (void) out_content(d, &msize);
    if (d->f_size && d->size_limit > 0 && (long long) msize > d->size_limit) {
	text = xasprintf("message size %zu exceeds size limit %lld of server %s",
			 msize, d->size_limit, d->namaddr);
	d->stage = ST_XACT;
	for (int i = 0; i < d->nrcpt; i++)
	    if (d->rstate[i] == R_PENDING)
		rcpt_final(d, i, SMTP_BOUNCED, "5.3.4", text, d->relay, d->addrs[d->cur].host, NULL);
	free(text);
	xact_end(d, 0);
	return;
    }
    d->cmd_head = d->cmd_tail = 0;
    d->naccepted = 0;
    d->mail_failed = 0;
    memset(d->accepted, 0, d->nrcpt * sizeof(int));
    buf_printf(&b, "MAIL FROM:<%s>", d->g_sender ? d->g_sender : m->sender);
    if (d->f_size)
	buf_printf(&b, " SIZE=%zu", msize);
    if ((m->flags & QFLAG_8BITMIME) && d->f_8bitmime)
	buf_puts(&b, " BODY=8BITMIME");
    if ((m->flags & QFLAG_SMTPUTF8) && d->f_smtputf8)
	buf_puts(&b, " SMTPUTF8");
    if (d->f_dsn) {
	if (m->ret == QRET_FULL)
	    buf_puts(&b, " RET=FULL");
	else if (m->ret == QRET_HDRS)
	    buf_puts(&b, " RET=HDRS");
	if (m->envid && *m->envid) {
	    /* Stored decoded; on the wire it is xtext (RFC 3461 4.4). */
	    buf_puts(&b, " ENVID=");
	    for (const unsigned char *cp = (const unsigned char *) m->envid; *cp; cp++) {
		if (*cp < '!' || *cp > '~' || *cp == '+' || *cp == '=')
		    buf_printf(&b, "+%02X", *cp);
		else
		    buf_putc(&b, (char) *cp);
	    }
	}
    }
    sess_send(d, "%s", b.data);
    buf_free(&b);
    cmd_push(d, CMD_MAIL, -1);
    if (d->f_pipelining) {
	/* MAIL, every RCPT and DATA in one write (RFC 2920). */
	for (int i = 0; i < d->nrcpt; i++)
	    if (d->rstate[i] == R_PENDING)
		send_rcpt(d, i);
	sess_send(d, "DATA");
	cmd_push(d, CMD_DATA, -1);
    }
    sess_arm(d, ST_XACT, d->p->mail_tmo, "sending MAIL FROM");
}

/* The content as it goes out: after smtp_*_checks when they are set. */
static const char *out_content(const SMTP_DELIV *d, size_t *size)
{
    if (d->filtered_done) {
	*size = d->filtered.len;
	return (d->filtered.data ? d->filtered.data : "");
    }
    *size = d->msg->content ? d->msg->size : 0;
    return (d->msg->content ? d->msg->content : "");
}

/*
 * smtp_header_checks, smtp_mime_header_checks, smtp_nested_header_checks,
 * smtp_body_checks: once per delivery, before MAIL FROM (the SIZE= is the
 * filtered size).  -1 on a table error (Postfix defers the message).
 */
static int smtp_checks(SMTP_DELIV *d)
{
    CLEANUP_INFO ci;
    char    err[256];
    char   *msgid = 0;
    int     rc = 0, gerrs = 0;

    if (d->filtered_done || (d->p->checks == 0 && d->p->checks_error == 0
			     && d->p->generic == 0 && d->p->generic_error == 0))
	return (0);
    if (d->p->checks_error) {
	log_warn("smtp", "%s: smtp header checks lookup error", d->msg->qid);
	return (-1);
    }
    if (d->p->generic_error) {
	log_warn("smtp", "%s: smtp_generic_maps: %s", d->msg->qid, d->p->generic_error);
	return (-2);
    }
    /* smtp_generic_maps: the envelope as it is sent (Postfix's smtp_map11_internal). */
    if (d->p->generic && d->g_rcpt == NULL) {
	if (*d->msg->sender)
	    d->g_sender = cleanup_generic_addr(d->p->generic, d->msg->qid, d->msg->sender, &gerrs);
	d->g_rcpt = xcalloc((size_t) d->nrcpt + 1, sizeof(char *));
	for (int i = 0; i < d->nrcpt && !gerrs; i++)
	    d->g_rcpt[i] = cleanup_generic_addr(d->p->generic, d->msg->qid,
						d->msg->rcpts[d->rcpts[i]].addr, &gerrs);
    }
    memset(&ci, 0, sizeof(ci));
    ci.myhostname = d->p->myhostname;
    ci.qid = d->msg->qid;
    ci.checks = d->p->checks;
    ci.generic = d->p->generic;
    ci.line_limit = d->p->rec_limit;
    buf_reset(&d->filtered);
    if (gerrs == 0 && cleanup_message(&ci, d->msg->content ? d->msg->content : "",
				      d->msg->content ? d->msg->size : 0, &d->filtered, &msgid,
				      err, sizeof(err)) < 0)
	rc = -1;
    if (ci.lookup_error)
	rc = -1;
    if (gerrs || ci.rw_errs)
	rc = -2;
    free(msgid);
    cleanup_info_free(&ci);
    if (rc < 0 && d->g_rcpt) {
	/* Looked up again at the next attempt. */
	free(d->g_sender);
	d->g_sender = NULL;
	for (int i = 0; i < d->nrcpt; i++)
	    free(d->g_rcpt[i]);
	free(d->g_rcpt);
	d->g_rcpt = NULL;
    }
    d->filtered_done = rc == 0;
    return (rc);
}

/* Stream the body with dot-stuffing, keeping at most ~64 KiB queued. */
static void body_pump(SMTP_DELIV *d)
{
    struct evbuffer *out = bufferevent_get_output(d->bev);
    size_t  size;
    const char *c = out_content(d, &size);
    struct timeval tv = {d->p->data_xfer_tmo > 0 ? d->p->data_xfer_tmo : 1, 0};

    while (d->body_off < size && evbuffer_get_length(out) < 65536) {
	const char *p = c + d->body_off;
	size_t  left = size - d->body_off;
	size_t  chunk = left < 16384 ? left : 16384;
	const char *nl;
	size_t  n;

	if (d->body_bol && *p == '.') {
	    evbuffer_add(out, ".", 1);
	    d->body_col = 1;
	}
	d->body_bol = 0;
	nl = memchr(p, '\n', chunk);
	n = nl ? (size_t) (nl - p) + 1 : chunk;

	/*
	 * RFC 5321 allows 998 characters a line.  A longer line is folded as
	 * Postfix folds it (smtp_line_length_limit): <CR><LF><SPACE> after
	 * the limit, which keeps MIME structure intact.
	 */
	if (d->p->line_limit > 0) {
	    size_t  text = n;

	    if (nl) {
		text = n - 1;
		if (text > 0 && p[text - 1] == '\r')
		    text--;
	    }
	    if (d->body_col + text > d->p->line_limit) {
		size_t  take = d->p->line_limit > d->body_col ? d->p->line_limit - d->body_col : 0;

		evbuffer_add(out, p, take);
		evbuffer_add(out, "\r\n ", 3);
		d->body_off += take;
		d->body_col = 1;
		continue;
	    }
	}
	evbuffer_add(out, p, n);
	d->body_off += n;
	d->body_bol = nl != NULL;
	d->body_col = nl ? 0 : d->body_col + n;
    }
    if (d->body_off < size) {
	evtimer_add(d->timer, &tv);
	return;
    }
    /* End of data; a last line without CRLF gets one first. */
    if (size > 0 && !(size >= 2 && c[size - 2] == '\r' && c[size - 1] == '\n'))
	evbuffer_add(out, "\r\n", 2);
    evbuffer_add(out, ".\r\n", 3);
    cmd_push(d, CMD_DOT, -1);
    d->in_body = 0;
    sess_arm(d, ST_XACT, d->p->data_done_tmo,
	     "sending end of data -- message may be sent more than once");
}

void sess_writecb(struct bufferevent *bev, void *arg)
{
    SMTP_DELIV *d = arg;

    if (d->in_body)
	body_pump(d);
}

/* The reply to a command of the mail transaction. */
static void xact_reply(SMTP_DELIV *d, int code, const char *reply)
{
    SMTP_CMD cmd;
    char    dsn[12];
    char   *text;

    if (d->cmd_head == d->cmd_tail)
	return;					/* unexpected: ignore */
    if (code == 421) {
	if (sess_stale(d))
	    return;
	d->no_reuse = 1;			/* the server is closing the session */
    }
    d->xact_replies++;
    cmd = d->cmdq[d->cmd_head++];
    smtp_reply_dsn(reply, dsn);

    switch (cmd.type) {
    case CMD_MAIL:
	if (code / 100 == 2) {
	    if (!d->f_pipelining) {
		d->next_rcpt = next_pending_slot(d, 0);
		send_rcpt(d, d->next_rcpt);
	    }
	    sess_arm(d, ST_XACT, d->p->rcpt_tmo, "sending RCPT TO");
	    return;
	}
	d->mail_failed = 1;
	text = xasprintf("host %s said: %s (in reply to MAIL FROM command)", d->namaddr, reply);
	for (int i = 0; i < d->nrcpt; i++)
	    if (d->rstate[i] == R_PENDING)
		rcpt_fail(d, i, dsn, text, reply);
	free(text);
	if (!d->f_pipelining)
	    xact_end(d, 1);
	return;
    case CMD_RCPT:
	if (d->mail_failed)
	    return;
	if (code / 100 == 2) {
	    d->accepted[cmd.ri] = 1;
	    d->naccepted++;
	} else {
	    text = xasprintf("host %s said: %s (in reply to RCPT TO command)", d->namaddr, reply);
	    rcpt_fail(d, cmd.ri, dsn, text, reply);
	    free(text);
	}
	if (!d->f_pipelining) {
	    int     next = next_pending_slot(d, cmd.ri + 1);

	    if (next >= 0) {
		send_rcpt(d, next);
	    } else if (d->naccepted > 0) {
		sess_send(d, "DATA");
		cmd_push(d, CMD_DATA, -1);
		sess_arm(d, ST_XACT, d->p->data_init_tmo, "sending DATA command");
	    } else {
		xact_end(d, 1);
	    }
	} else if (d->cmdq[d->cmd_head].type == CMD_DATA) {
	    sess_arm(d, ST_XACT, d->p->data_init_tmo, "sending DATA command");
	}
	return;
    case CMD_DATA:
	if (code == 354 && (d->mail_failed || d->naccepted == 0)) {
	    /* Pipelined DATA accepted without recipients: end it empty. */
	    sess_send(d, ".");
	    cmd_push(d, CMD_DOT_NONE, -1);
	    return;
	}
	if (d->mail_failed || d->naccepted == 0) {
	    xact_end(d, 1);
	    return;
	}
	if (code == 354) {
	    d->body_off = 0;
	    d->body_bol = 1;
	    d->body_col = 0;
	    d->in_body = 1;
	    sess_arm(d, ST_XACT, d->p->data_xfer_tmo, "sending message body");
	    body_pump(d);
	    return;
	}
	text = xasprintf("host %s said: %s (in reply to DATA command)", d->namaddr, reply);
	for (int i = 0; i < d->nrcpt; i++)
	    if (d->accepted[i])
		rcpt_fail(d, i, dsn, text, reply);
	free(text);
	xact_end(d, 1);
	return;
    case CMD_DOT:
	if (code / 100 == 2) {
	    for (int i = 0; i < d->nrcpt; i++)
		if (d->accepted[i])
		{
		    d->res.rcpts[i].no_dsn = !d->f_dsn;
		    rcpt_final(d, i, SMTP_SENT, dsn, reply, d->relay, d->addrs[d->cur].host, reply);
		}
	} else {
	    text = xasprintf("host %s said: %s (in reply to end of DATA command)", d->namaddr, reply);
	    for (int i = 0; i < d->nrcpt; i++)
		if (d->accepted[i])
		    rcpt_fail(d, i, dsn, text, reply);
	    free(text);
	}
	xact_end(d, 0);				/* the end of DATA ends the transaction */
	return;
    case CMD_DOT_NONE:
	xact_end(d, 0);
	return;
    }
}

void send_ehlo(SMTP_DELIV *d)
{
    free(d->auth_mechs);			/* EHLO after STARTTLS: features anew */
    d->auth_mechs = NULL;
    d->f_auth = 0;
    d->f_pipelining = d->f_dsn = d->f_smtputf8 = d->f_starttls = d->f_8bitmime = d->f_size = 0;
    d->size_limit = 0;
    sess_send(d, "EHLO %s", d->p->helo_name);
    sess_arm(d, ST_EHLO, d->p->helo_tmo, "performing the EHLO handshake");
}

/* The handshake is complete (EHLO/HELO, and TLS when wanted). */
void setup_done(SMTP_DELIV *d)
{
    /* Never mail in the clear when the policy requires TLS. */
    if (TLS_REQUIRED(d->tls_pol.level) && !d->tls_on) {
	char   *text = xasprintf("TLS is required, but was not offered by host %s", d->namaddr);

	sess_fail_soft(d, "4.7.4", text, NULL);
	free(text);
	return;
    }
    xact_start(d);
}

/* One EHLO keyword line. */
static void ehlo_feature(SMTP_DELIV *d, const char *kw)
{
    if (str_ncasecmp(kw, "PIPELINING", 10) == 0 && (kw[10] == 0 || kw[10] == ' '))
	d->f_pipelining = 1;
    else if (str_ncasecmp(kw, "DSN", 3) == 0 && (kw[3] == 0 || kw[3] == ' '))
	d->f_dsn = 1;
    else if (str_ncasecmp(kw, "SMTPUTF8", 8) == 0 && (kw[8] == 0 || kw[8] == ' '))
	d->f_smtputf8 = 1;
    else if (str_ncasecmp(kw, "STARTTLS", 8) == 0 && (kw[8] == 0 || kw[8] == ' '))
	d->f_starttls = 1;
    else if (str_ncasecmp(kw, "8BITMIME", 8) == 0 && (kw[8] == 0 || kw[8] == ' '))
	d->f_8bitmime = 1;
    else if (str_ncasecmp(kw, "SIZE", 4) == 0 && (kw[4] == 0 || kw[4] == ' ')) {
	d->f_size = 1;
	d->size_limit = kw[4] ? strtoll(kw + 5, NULL, 10) : 0;
    }
    else
	secure_ehlo_auth(d, kw);
}

/*
 * The greeting, EHLO or HELO was refused: Postfix's "refused to talk to
 * me".  soft: a temporary failure whatever the code (a 5xx greeting).
 */
static void sess_refused(SMTP_DELIV *d, int code, const char *reply, int soft)
{
    char    dsn[12];
    char   *text;

    smtp_reply_dsn(reply, dsn);
    if (soft)
	dsn[0] = '4';
    text = xasprintf("host %s refused to talk to me: %s", d->namaddr, reply);
    if (code / 100 == 5 && !soft)
	sess_fail_hard(d, dsn, text, reply);
    else
	sess_fail_soft(d, dsn, text, reply);
    free(text);
}

/* A complete reply arrived. */
static void sess_reply(SMTP_DELIV *d, int code, const char *reply)
{
    switch (d->stage) {
    case ST_GREETING:
	if (code / 100 == 2) {
	    /* Postfix: only a warning; the EHLO reply decides. */
	    if (reply_names(reply, d->p->myhostname))
		log_warn("smtp", "host %s greeted me with my own hostname %s", d->namaddr, d->p->myhostname);
	    send_ehlo(d);
	    return;
	}
	/* smtp_skip_5xx_greeting: a 5xx greeting is a reason to try elsewhere. */
	sess_refused(d, code, reply, 1);
	return;
    case ST_EHLO:
    case ST_HELO:
	if (code / 100 == 2) {
	    if (reply_names(reply, d->p->myhostname))
		sess_loop(d);
	    else
		secure_after_ehlo(d);
	    return;
	}
	if (d->stage == ST_EHLO && code / 100 == 5) {
	    sess_send(d, "HELO %s", d->p->helo_name);
	    sess_arm(d, ST_HELO, d->p->helo_tmo, "performing the HELO handshake");
	    return;
	}
	sess_refused(d, code, reply, 0);
	return;
    case ST_STARTTLS:
	secure_starttls_reply(d, code, reply);
	return;
    case ST_AUTH:
	secure_auth_reply(d, code, reply);
	return;
    case ST_XACT:
	xact_reply(d, code, reply);
	return;
    case ST_RSET:
	if (code / 100 == 2 && sess_cacheable(d))
	    sess_cache(d);
	else if (code == 421) {
	    sess_close(d);
	    deliv_next_address(d);
	} else
	    send_quit(d);
	return;
    case ST_QUIT:
	sess_close(d);
	deliv_next_address(d);
	return;
    default:
	return;
    }
}

void sess_readcb(struct bufferevent *bev, void *arg)
{
    SMTP_DELIV *d = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    unsigned gen = d->conn_gen;
    char   *line;
    size_t  len;

    /* A reply may end this connection (and start another): check gen. */
    while (d->conn_gen == gen && (line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
	int     last = !(len >= 4 && line[3] == '-');
	int     code;

	if (d->stage == ST_EHLO && d->reply_lines > 0 && len >= 4)
	    ehlo_feature(d, line + 4);
	if (d->reply.len < 4096) {
	    if (d->reply_lines++ > 0)
		buf_putc(&d->reply, ' ');
	    buf_append(&d->reply, line, len);
	}
	free(line);
	if (!last)
	    continue;
	code = (d->reply.len >= 3 && isdigit((unsigned char) d->reply.data[0])
		&& isdigit((unsigned char) d->reply.data[1])
		&& isdigit((unsigned char) d->reply.data[2]))
	    ? atoi(d->reply.data) : 0;
	/*
	 * Censor the reply as Postfix's smtp_chat does: the text goes to
	 * the log, the queue, bounces and mailq, and no next hop may put an
	 * escape sequence in front of the administrator.
	 */
	line = buf_steal(&d->reply);
	{
	    char   *safe = str_printable(line ? line : "");

	    free(line);
	    line = safe;
	}
	d->reply_lines = 0;
	sess_reply(d, code, line);
	free(line);
	if (d->finished)
	    return;
    }

    /* A "line" longer than any server sends: protect ourselves. */
    if (d->conn_gen == gen && evbuffer_get_length(in) > 65536) {
	char   *text = xasprintf("lost connection with %s while %s", d->namaddr,
				 d->stage_desc ? d->stage_desc : "receiving a reply");

	sess_fail_soft(d, "4.4.2", text, NULL);
	free(text);
    }
}

void sess_eventcb(struct bufferevent *bev, short what, void *arg)
{
    SMTP_DELIV *d = arg;
    char   *text;

    if (what & BEV_EVENT_CONNECTED) {
	if (d->stage == ST_TLS)
	    secure_tls_done(d);
	return;
    }
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
	return;
    if (d->stage == ST_XACT && sess_stale(d))
	return;
    if (d->stage == ST_QUIT || d->stage == ST_RSET) {
	sess_close(d);
	deliv_next_address(d);
	return;
    }
    if (d->stage == ST_TLS) {
	sess_fail_soft(d, "4.7.5", "Cannot start TLS: handshake failure", NULL);
	return;
    }
    text = xasprintf("lost connection with %s while %s", d->namaddr,
		     d->stage_desc ? d->stage_desc : "receiving a reply");
    sess_fail_soft(d, "4.4.2", text, NULL);
    free(text);
}

