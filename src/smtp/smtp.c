/*
 * smtp - the SMTP client: one delivery request (a message and some of its
 * recipients, all for one destination key) at a time per SMTP_DELIV, many
 * in parallel on one event loop.
 *
 * A delivery: parse the destination key (smtp:NEXTHOP, error:TEXT,
 * discard:TEXT); for smtp, resolve the nexthop (MX unless bracketed, then
 * A/AAAA) into an address list; try the addresses in order until every
 * recipient has a final result for this attempt or the list (and then
 * smtp_fallback_relay, after temporary failures only) is used up.
 * Recipients still pending at the end are deferred with the last reason.
 *
 * Each recipient's result is logged when it becomes known, as Postfix's
 * log_adhoc() does: "QID: to=<r>, relay=..., delay=, delays=a/b/c/d,
 * dsn=, status= (text)".  done() runs from a zero timer, never from
 * inside smtp_deliver().
 *
 * A session whose transaction ended cleanly is parked in a per-SMTP cache
 * of idle sessions (keyed by server address and port under the same
 * parameters) and reused by the next delivery to that server, as Postfix's
 * smtp_connection_cache_on_demand; see "The connection cache" below.
 *
 * Texts follow Postfix's smtp(8): "connect to H[A]:P: Connection refused",
 * "host H[A] refused to talk to me: REPLY", "host H[A] said: REPLY (in
 * reply to RCPT TO command)", "lost connection with H[A] while sending
 * message body", "conversation with H[A] timed out while ...".
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

#define TLS_NONE    0
#define TLS_MAY     1
#define TLS_ENCRYPT 2

/* Parameters, shared by reference with the deliveries that started under them. */
typedef struct SMTP_PARAMS {
    int     refs;
    int     connect_tmo, helo_tmo, mail_tmo, rcpt_tmo;
    int     data_init_tmo, data_xfer_tmo, data_done_tmo, quit_tmo, starttls_tmo;
    size_t  line_limit;			/* smtp_line_length_limit; 0 = none */
    char   *helo_name;
    int     tls_level;
    int     mx_address_limit;
    int     mx_session_limit;
    char  **fallback;
    int     nfallback;
    int     cache_on;			/* smtp_connection_cache_on_demand */
    int     cache_time;			/* smtp_connection_cache_time_limit */
    int     reuse_limit;		/* smtp_connection_reuse_count_limit, capped */
    int     rset_tmo;
} SMTP_PARAMS;

/*
 * relayq's own bounds on the connection cache: Postfix's reuse count limit
 * 0 means "no limit", but one session should not live for ever; nor should
 * a burst to many servers leave an unbounded number of idle sockets.  The
 * time bound is Postfix's smtp_connection_reuse_time_limit default.
 */
#define SMTP_CACHE_MAX_USES	100
#define SMTP_CACHE_MAX_IDLE	100
#define SMTP_CACHE_MAX_AGE_US	(300 * 1000000LL)
#define SMTP_CACHE_QUIT_TMO	10

typedef struct SMTP_DELIV SMTP_DELIV;
typedef struct SMTP_CONN SMTP_CONN;

struct SMTP {
    struct event_base *base;
    SMTP_PARAMS *p;
    DNS    *dns;
    char   *dns_servers;
    DNS   **old_dns;			/* replaced by a reload, still answering */
    int     nold_dns;
    SSL_CTX *ssl_ctx;
    SMTP_DELIV *delivs;
    int     shutdown;
    uint64_t rng;
    SMTP_CONN *conns;			/* cached sessions: idle, or closing */
    int     nidle;
};

/* One candidate server address. */
typedef struct SMTP_ADDR {
    char    host[256];
    char    addr[64];
    int     family;
    int     port;
} SMTP_ADDR;

/*
 * A cached session between two deliveries: the connection (TLS or not, as
 * its parameters wanted), what EHLO announced, and how often it served.
 * Idle, it is looked up by server address and port under the same
 * parameters (so the same TLS requirement and HELO name); closing, it has
 * sent QUIT and waits for the reply or the end.
 */
struct SMTP_CONN {
    SMTP   *s;
    SMTP_CONN *prev, *next;
    SMTP_PARAMS *p;
    struct bufferevent *bev;
    struct event *timer;
    char    addr[64];
    int     port;
    int     tls_on;
    int     f_pipelining, f_dsn, f_smtputf8, f_starttls, f_8bitmime, f_size;
    long long size_limit;
    int     uses;			/* transactions done on it */
    int64_t born_us;
    int     closing;
};

/* Recipient progress within this attempt. */
#define R_PENDING  0
#define R_FINAL    1

/* Commands whose replies are awaited, in order. */
#define CMD_MAIL     1
#define CMD_RCPT     2
#define CMD_DATA     3
#define CMD_DOT      4
#define CMD_DOT_NONE 5			/* "." after DATA was accepted with no recipients */
#define CMD_QUIT     6

/* Session stages before the mail transaction. */
#define ST_NONE      0
#define ST_CONNECT   1
#define ST_GREETING  2
#define ST_EHLO      3
#define ST_HELO      4
#define ST_STARTTLS  5
#define ST_TLS       6
#define ST_XACT      7			/* MAIL/RCPT/DATA/body/. */
#define ST_QUIT      8
#define ST_RSET      9			/* after a rejected transaction, before caching */

typedef struct SMTP_CMD {
    int     type;
    int     ri;				/* recipient slot for CMD_RCPT */
} SMTP_CMD;

struct SMTP_DELIV {
    SMTP   *s;
    SMTP_PARAMS *p;
    SMTP_DELIV *prev, *next;
    const QMSG *msg;
    int    *rcpts;			/* message recipient indices */
    int     nrcpt;
    int    *rstate;			/* R_* per slot */
    int    *accepted;			/* RCPT accepted in this session */
    char   *dest;
    int64_t active_us, handoff_us, setup_us, end_us;
    SMTP_DONE done;
    void   *ctx;
    SMTP_RESULT res;
    const char *service;		/* smtp, error, discard */

    /* Resolution. */
    char  **resolve;			/* nexthops still to resolve */
    int     nresolve, iresolve;
    int     resolve_limit;		/* address limit for this batch (0 = none) */
    DNS_MX *mx;
    int     nmx, imx;
    int     mx_port;
    int     batch_start;		/* addrs index where this nexthop's batch began */
    int     dns_busy;
    int     fallback_used;
    SMTP_ADDR *addrs;
    int     naddr, caddr, cur;		/* cur: index of the address in use */
    int     primary_end;		/* addrs[0..primary_end) are primary */
    int     sessions;			/* sessions that completed the handshake */

    /* Last failure, for recipients left pending at the end. */
    char    last_dsn[12];
    char   *last_reason;
    char   *last_relay;
    char   *last_mta;
    char   *last_diag;

    /* Connection. */
    int     fd;
    struct event *conn_ev;
    struct bufferevent *bev;
    struct event *timer;
    struct event *done_ev;
    int     stage;
    const char *stage_desc;
    int     connected;
    char    namaddr[340];		/* "host[addr]" */
    char    relay[360];			/* "host[addr]:port" */
    int     f_pipelining, f_dsn, f_smtputf8, f_starttls, f_8bitmime, f_size;
    long long size_limit;
    int     tls_on;
    BUF     reply;			/* lines of the reply being read, joined by spaces */
    int     reply_lines;
    SMTP_CMD *cmdq;
    int     cmd_head, cmd_tail, cmd_cap;
    int     next_rcpt;			/* non-pipelined: next slot to send RCPT for */
    int     naccepted;
    int     mail_failed;
    size_t  body_off;
    int     body_bol;
    size_t  body_col;			/* characters sent on the current line */
    int     in_body;			/* streaming the content */
    unsigned conn_gen;			/* bumped by sess_close() */
    int     conn_use;			/* transactions on this session, this one included */
    int64_t conn_born_us;
    int     reused;			/* the session came from the cache */
    int     xact_replies;		/* replies received in this transaction */
    int     no_reuse;			/* the server said 421: do not cache */
    int     skip_cache;			/* a cached session was dead: connect afresh */
    int     reached;			/* index of the last address that answered, or -1 */
    int     finished;
};

static void deliv_next_address(SMTP_DELIV *d);
static void deliv_resolve_next(SMTP_DELIV *d);
static void deliv_finish(SMTP_DELIV *d);
static void sess_close(SMTP_DELIV *d);
static void sess_fail_connect(SMTP_DELIV *d, const char *text);
static void sess_readcb(struct bufferevent *bev, void *arg);
static void sess_writecb(struct bufferevent *bev, void *arg);
static void sess_eventcb(struct bufferevent *bev, short what, void *arg);
static void sess_connect(SMTP_DELIV *d);
static void xact_start(SMTP_DELIV *d);
static void send_quit(SMTP_DELIV *d);
static void cache_close_idle(SMTP *s);
static int cache_take(SMTP_DELIV *d);

/* ---------------------------------------------------------------------- */
/* Parameters                                                              */
/* ---------------------------------------------------------------------- */

static SMTP_PARAMS *params_load(const CONFIG *cf)
{
    SMTP_PARAMS *p = xcalloc(1, sizeof(*p));
    const char *lvl;

    p->refs = 1;
    p->connect_tmo = (int) smtp_cf_time(cf, "smtp_connect_timeout", 30);
    p->helo_tmo = (int) smtp_cf_time(cf, "smtp_helo_timeout", 300);
    p->mail_tmo = (int) smtp_cf_time(cf, "smtp_mail_timeout", 300);
    p->rcpt_tmo = (int) smtp_cf_time(cf, "smtp_rcpt_timeout", 300);
    p->data_init_tmo = (int) smtp_cf_time(cf, "smtp_data_init_timeout", 120);
    p->data_xfer_tmo = (int) smtp_cf_time(cf, "smtp_data_xfer_timeout", 180);
    p->data_done_tmo = (int) smtp_cf_time(cf, "smtp_data_done_timeout", 600);
    p->quit_tmo = (int) smtp_cf_time(cf, "smtp_quit_timeout", 300);
    p->starttls_tmo = (int) smtp_cf_time(cf, "smtp_starttls_timeout", 300);
    p->helo_name = xstrdup(smtp_cf_str(cf, "smtp_helo_name",
				       smtp_cf_str(cf, "myhostname", "localhost")));
    if (*p->helo_name == 0) {
	free(p->helo_name);
	p->helo_name = xstrdup("localhost");
    }
    lvl = smtp_cf_str(cf, "smtp_tls_security_level", "");
    p->tls_level = strcmp(lvl, "may") == 0 ? TLS_MAY
	: (strcmp(lvl, "encrypt") == 0 || strcmp(lvl, "verify") == 0
	   || strcmp(lvl, "secure") == 0) ? TLS_ENCRYPT : TLS_NONE;
    p->line_limit = (size_t) smtp_cf_int(cf, "smtp_line_length_limit", 998);
    p->mx_address_limit = (int) smtp_cf_int(cf, "smtp_mx_address_limit", 5);
    p->mx_session_limit = (int) smtp_cf_int(cf, "smtp_mx_session_limit", 2);
    if (cf && config_known("smtp_fallback_relay"))
	p->fallback = config_list(cf, "smtp_fallback_relay", &p->nfallback);
    p->cache_on = cf && config_known("smtp_connection_cache_on_demand")
	? config_bool(cf, "smtp_connection_cache_on_demand") : 1;
    p->cache_time = (int) smtp_cf_time(cf, "smtp_connection_cache_time_limit", 2);
    p->reuse_limit = (int) smtp_cf_int(cf, "smtp_connection_reuse_count_limit", 0);
    if (p->reuse_limit <= 0 || p->reuse_limit > SMTP_CACHE_MAX_USES)
	p->reuse_limit = SMTP_CACHE_MAX_USES;
    p->rset_tmo = (int) smtp_cf_time(cf, "smtp_rset_timeout", 20);
    return (p);
}

static void params_release(SMTP_PARAMS *p)
{
    if (--p->refs > 0)
	return;
    free(p->helo_name);
    if (p->fallback)
	str_list_free(p->fallback);
    free(p);
}

/* Deterministic (seeded) or random shuffle source: splitmix64. */
static uint64_t smtp_rand(SMTP *s)
{
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ULL);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return (z ^ (z >> 31));
}

static void smtp_seed(SMTP *s, const CONFIG *cf)
{
    long long seed = smtp_cf_int(cf, "relayq_mx_random_seed", 0);

    s->rng = seed ? (uint64_t) seed : (uint64_t) time_mono_us() ^ ((uint64_t) getpid() << 32);
}

static SSL_CTX *smtp_ssl_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL)
	return (NULL);

    /* may/encrypt: no peer verification, as Postfix at these levels. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
    return (ctx);
}

static void smtp_config(SMTP *s, const CONFIG *cf)
{
    const char *servers = smtp_cf_str(cf, "dns_servers", "");
    char    err[256];

    if (s->p)
	params_release(s->p);
    s->p = params_load(cf);
    smtp_seed(s, cf);
    smtp_maps_flush();
    if (s->p->tls_level != TLS_NONE && s->ssl_ctx == NULL)
	s->ssl_ctx = smtp_ssl_ctx();
    if (s->dns == NULL || s->dns_servers == NULL || strcmp(s->dns_servers, servers) != 0) {
	if (s->dns) {
	    /* In-flight lookups still answer into the old resolver. */
	    s->old_dns = xrealloc(s->old_dns, (s->nold_dns + 1) * sizeof(DNS *));
	    s->old_dns[s->nold_dns++] = s->dns;
	}
	free(s->dns_servers);
	s->dns_servers = xstrdup(servers);
	if ((s->dns = dns_create(s->base, servers, err, sizeof(err))) == NULL)
	    log_warn("smtp", "%s", err);
    }
}

SMTP   *smtp_create(struct event_base *base, const CONFIG *cf)
{
    SMTP   *s = xcalloc(1, sizeof(*s));

    s->base = base;
    smtp_config(s, cf);
    return (s);
}

void    smtp_reconfigure(SMTP *s, const CONFIG *cf)
{
    cache_close_idle(s);			/* made under the old parameters */
    smtp_config(s, cf);
}

/* ---------------------------------------------------------------------- */
/* Results and logging                                                     */
/* ---------------------------------------------------------------------- */

static const char *status_word(int status)
{
    return (status == SMTP_SENT ? "sent" : status == SMTP_BOUNCED ? "bounced" : "deferred");
}

/* Log one recipient's delivery line (Postfix log_adhoc). */
static void deliv_log(SMTP_DELIV *d, int slot, const char *relay)
{
    const SMTP_RCPT_RESULT *r = &d->res.rcpts[slot];
    const QRCPT *qr = &d->msg->rcpts[d->rcpts[slot]];
    int64_t now = time_now_us();
    int64_t arrival = d->msg->arrival_us;
    int64_t a, b, c, dd;
    char    sd[32], sa[32], sb[32], sc[32], sdd[32];
    char    use[32] = "";

    /* Postfix: ", conn_use=N" from the second delivery over one session on. */
    if (d->connected && relay == d->relay && d->conn_use > 1)
	snprintf(use, sizeof(use), ", conn_use=%d", d->conn_use);
    a = d->active_us - arrival;
    b = d->handoff_us - d->active_us;
    if (d->setup_us) {
	c = d->setup_us - d->handoff_us;
	dd = now - d->setup_us;
    } else {
	c = 0;
	dd = now - d->handoff_us;
    }
#define NN(x) ((x) < 0 ? 0 : (x))
    log_msg(d->service, "%s: to=<%s>, relay=%s%s, delay=%s, delays=%s/%s/%s/%s, dsn=%s, status=%s (%s)",
	    d->msg->qid, qr->addr, relay, use,
	    log_format_delay(NN(now - arrival) / 1e6, sd),
	    log_format_delay(NN(a) / 1e6, sa), log_format_delay(NN(b) / 1e6, sb),
	    log_format_delay(NN(c) / 1e6, sc), log_format_delay(NN(dd) / 1e6, sdd),
	    r->dsn, status_word(r->status), r->text);
#undef NN
}

/* Give a recipient slot its final result for this attempt, and log it. */
static void rcpt_final(SMTP_DELIV *d, int slot, int status, const char *dsn, const char *text,
		               const char *relay, const char *mta, const char *diag)
{
    SMTP_RCPT_RESULT *r = &d->res.rcpts[slot];

    if (d->rstate[slot] == R_FINAL)
	return;
    d->rstate[slot] = R_FINAL;
    r->status = status;
    snprintf(r->dsn, sizeof(r->dsn), "%s", dsn);
    r->text = xstrdup(text);
    r->remote_mta = xstrdup(mta);
    r->diag = xstrdup(diag);
    deliv_log(d, slot, relay);
}

static int rcpts_pending(const SMTP_DELIV *d)
{
    int     n = 0;

    for (int i = 0; i < d->nrcpt; i++)
	if (d->rstate[i] == R_PENDING)
	    n++;
    return (n);
}

/* Remember the reason the remaining recipients will be deferred with. */
static void deliv_set_last(SMTP_DELIV *d, const char *dsn, const char *text,
			           const char *relay, const char *mta, const char *diag)
{
    snprintf(d->last_dsn, sizeof(d->last_dsn), "%s", dsn);
    free(d->last_reason);
    free(d->last_relay);
    free(d->last_mta);
    free(d->last_diag);
    d->last_reason = xstrdup(text);
    d->last_relay = xstrdup(relay);
    d->last_mta = xstrdup(mta);
    d->last_diag = xstrdup(diag);
}

/* ---------------------------------------------------------------------- */
/* Delivery life cycle                                                     */
/* ---------------------------------------------------------------------- */

static void deliv_free(SMTP_DELIV *d)
{
    sess_close(d);
    if (d->timer)
	event_free(d->timer);
    if (d->done_ev)
	event_free(d->done_ev);
    for (int i = 0; i < d->nrcpt; i++) {
	free(d->res.rcpts[i].text);
	free(d->res.rcpts[i].remote_mta);
	free(d->res.rcpts[i].diag);
    }
    free(d->res.rcpts);
    free(d->res.hop_reason);
    free(d->res.attempt.host);
    free(d->res.attempt.addr);
    free(d->res.attempt.text);
    free(d->rcpts);
    free(d->rstate);
    free(d->accepted);
    free(d->dest);
    free(d->addrs);
    free(d->mx);
    if (d->resolve)
	str_list_free(d->resolve);
    free(d->last_reason);
    free(d->last_relay);
    free(d->last_mta);
    free(d->last_diag);
    free(d->cmdq);
    buf_free(&d->reply);
    params_release(d->p);
    free(d);
}

static void deliv_unlink(SMTP_DELIV *d)
{
    if (d->prev)
	d->prev->next = d->next;
    else if (d->s->delivs == d)
	d->s->delivs = d->next;
    if (d->next)
	d->next->prev = d->prev;
    d->prev = d->next = NULL;
}

/* Zero timer: report and forget. */
static void deliv_done_cb(evutil_socket_t fd, short what, void *arg)
{
    SMTP_DELIV *d = arg;

    deliv_unlink(d);
    d->done(d->ctx, &d->res);
    deliv_free(d);
}

/*
 * End of the attempt: defer whatever is still pending with the last
 * reason, fill in the attempt record, and schedule done().
 */
static void deliv_finish(SMTP_DELIV *d)
{
    struct timeval zero = {0, 0};
    const char *text = NULL, *dsn = NULL;

    if (d->finished)
	return;
    d->finished = 1;
    sess_close(d);
    if (d->timer)
	evtimer_del(d->timer);
    for (int i = 0; i < d->nrcpt; i++)
	if (d->rstate[i] == R_PENDING)
	    rcpt_final(d, i, SMTP_DEFERRED, d->last_dsn[0] ? d->last_dsn : "4.3.0",
		       d->last_reason ? d->last_reason : "unknown mail transport error",
		       d->last_relay ? d->last_relay : "none", d->last_mta, d->last_diag);
    d->end_us = time_now_us();

    /* The attempt's summary: the hop failure, else the first non-success. */
    if (d->res.hop_failed) {
	text = d->res.hop_reason;
	dsn = d->res.hop_dsn;
    }
    for (int i = 0; text == NULL && i < d->nrcpt; i++)
	if (d->res.rcpts[i].status != SMTP_SENT) {
	    text = d->res.rcpts[i].text;
	    dsn = d->res.rcpts[i].dsn;
	}
    if (text == NULL && d->nrcpt > 0) {
	text = d->res.rcpts[0].text;
	dsn = d->res.rcpts[0].dsn;
    }
    if (d->reached >= 0 && d->reached < d->naddr) {
	d->res.attempt.host = xstrdup(d->addrs[d->reached].host);
	d->res.attempt.addr = xstrdup(d->addrs[d->reached].addr);
	d->res.attempt.port = d->addrs[d->reached].port;
    }
    d->res.attempt.start_us = d->handoff_us;
    d->res.attempt.end_us = d->end_us;
    d->res.attempt.text = xstrdup(text ? text : "");
    snprintf(d->res.attempt.dsn, sizeof(d->res.attempt.dsn), "%s", dsn ? dsn : "");
    d->done_ev = evtimer_new(d->s->base, deliv_done_cb, d);
    evtimer_add(d->done_ev, &zero);
}

/* The address in use is the last one this attempt may try. */
static int deliv_final_server(const SMTP_DELIV *d)
{
    int     more = d->cur + 1 < d->naddr;

    if (!d->fallback_used) {
	if (d->p->mx_session_limit > 0 && d->sessions >= d->p->mx_session_limit)
	    more = 0;
	return (!more && d->p->nfallback == 0);
    }
    return (!more);
}

/*
 * A soft failure of the whole session (connect, greeting, HELO, lost
 * connection, timeout).  At the final server it defers what is pending and
 * blames the hop (spec D2); elsewhere it is logged and the next server
 * gets the recipients.
 */
static void sess_fail_soft_how(SMTP_DELIV *d, const char *dsn, const char *text,
			               const char *diag, int log_nonfinal)
{
    const char *relay = d->connected ? d->relay : "none";
    const char *mta = d->connected ? d->addrs[d->cur].host : NULL;

    if (d->stage != ST_XACT && d->stage != ST_QUIT)
	d->setup_us = time_now_us();		/* failed during set-up: d = 0 */
    deliv_set_last(d, dsn, text, relay, mta, diag);
    if (deliv_final_server(d)) {
	d->res.hop_failed = 1;
	snprintf(d->res.hop_dsn, sizeof(d->res.hop_dsn), "%s", dsn);
	free(d->res.hop_reason);
	d->res.hop_reason = xstrdup(text);
    } else if (log_nonfinal && rcpts_pending(d)) {
	log_msg("smtp", "%s: %s", d->msg->qid, text);
    }
    sess_close(d);
    deliv_next_address(d);
}

static void sess_fail_soft(SMTP_DELIV *d, const char *dsn, const char *text, const char *diag)
{
    sess_fail_soft_how(d, dsn, text, diag, 1);
}

/* Connect failures: only the bare "connect to" line, already logged. */
static void sess_fail_connect(SMTP_DELIV *d, const char *text)
{
    sess_fail_soft_how(d, "4.4.1", text, NULL, 0);
}

/* A hard failure of the whole session: bounce what is pending. */
static void sess_fail_hard(SMTP_DELIV *d, const char *dsn, const char *text, const char *diag)
{
    if (d->stage != ST_XACT && d->stage != ST_QUIT)
	d->setup_us = time_now_us();
    for (int i = 0; i < d->nrcpt; i++)
	if (d->rstate[i] == R_PENDING)
	    rcpt_final(d, i, SMTP_BOUNCED, dsn, text, d->connected ? d->relay : "none",
		       d->connected ? d->addrs[d->cur].host : NULL, diag);
    sess_close(d);
    deliv_finish(d);
}

/* Failure of one recipient slot (or of the message for it). */
static void rcpt_fail(SMTP_DELIV *d, int slot, const char *dsn, const char *text, const char *diag)
{
    if (dsn[0] == '5') {
	rcpt_final(d, slot, SMTP_BOUNCED, dsn, text, d->relay, d->addrs[d->cur].host, diag);
    } else if (deliv_final_server(d)) {
	rcpt_final(d, slot, SMTP_DEFERRED, dsn, text, d->relay, d->addrs[d->cur].host, diag);
    } else {
	/* A backup server may do better: keep it pending, remember why. */
	deliv_set_last(d, dsn, text, d->relay, d->addrs[d->cur].host, diag);
    }
}

/* ---------------------------------------------------------------------- */
/* Timers and the connection                                               */
/* ---------------------------------------------------------------------- */

static void sess_timeout_cb(evutil_socket_t fd, short what, void *arg)
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

static void sess_arm(SMTP_DELIV *d, int stage, int seconds, const char *desc)
{
    struct timeval tv = {seconds > 0 ? seconds : 1, 0};

    d->stage = stage;
    d->stage_desc = desc;
    evtimer_add(d->timer, &tv);
}

static void sess_close(SMTP_DELIV *d)
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
    d->stage = ST_NONE;
    d->connected = 0;
    d->in_body = 0;
    d->conn_gen++;
}

static void sess_send(SMTP_DELIV *d, const char *fmt, ...) UTIL_PRINTF(2, 3);

static void sess_send(SMTP_DELIV *d, const char *fmt, ...)
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
static void sess_connect(SMTP_DELIV *d)
{
    const SMTP_ADDR *a = &d->addrs[d->cur];
    struct sockaddr_storage ss;
    socklen_t sslen;
    char   *text;

    if (cache_take(d))
	return;
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
    snprintf(d->namaddr, sizeof(d->namaddr), "%s[%s]", a->host, a->addr);
    snprintf(d->relay, sizeof(d->relay), "%s:%d", d->namaddr, a->port);
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

static void conn_free(SMTP_CONN *c)
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
static void conn_quit_now(SMTP_CONN *c)
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
static void cache_close_idle(SMTP *s)
{
    SMTP_CONN *c, *next;

    for (c = s->conns; c != NULL; c = next) {
	next = c->next;
	if (!c->closing)
	    conn_quit(c);
    }
}

/* May this session, its transaction over, serve another delivery? */
static int sess_cacheable(SMTP_DELIV *d)
{
    SMTP   *s = d->s;

    return (d->p->cache_on && !s->shutdown && d->p == s->p && !d->no_reuse
	    && d->bev != NULL && d->conn_use < d->p->reuse_limit
	    && s->nidle < SMTP_CACHE_MAX_IDLE
	    && time_mono_us() - d->conn_born_us < SMTP_CACHE_MAX_AGE_US
    /* Anything unread now would be taken for the next reply. */
	    && evbuffer_get_length(bufferevent_get_input(d->bev)) == 0);
}

/* Park the session, then go on with this delivery (usually: its end). */
static void sess_cache(SMTP_DELIV *d)
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
static int cache_take(SMTP_DELIV *d)
{
    SMTP   *s = d->s;
    const SMTP_ADDR *a = &d->addrs[d->cur];
    SMTP_CONN *c;

    if (d->skip_cache || !d->p->cache_on)
	return (0);
    for (c = s->conns; c != NULL; c = c->next)
	if (!c->closing && c->p == d->p && c->port == a->port && strcmp(c->addr, a->addr) == 0)
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
static int sess_stale(SMTP_DELIV *d)
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
static void xact_end(SMTP_DELIV *d, int need_rset)
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

/*
 * Move on: the next address, else the fallback relays (after temporary
 * failures only), else the end of the attempt.
 */
static void deliv_next_address(SMTP_DELIV *d)
{
    if (rcpts_pending(d) == 0) {
	deliv_finish(d);
	return;
    }
    if (d->cur + 1 < d->naddr
	&& !(!d->fallback_used && d->p->mx_session_limit > 0
	     && d->sessions >= d->p->mx_session_limit)) {
	d->cur++;
	sess_connect(d);
	return;
    }
    if (!d->fallback_used && d->p->nfallback > 0) {
	d->fallback_used = 1;
	d->res.hop_failed = 0;
	if (d->resolve)
	    str_list_free(d->resolve);
	d->resolve = xcalloc(d->p->nfallback + 1, sizeof(char *));
	for (int i = 0; i < d->p->nfallback; i++)
	    d->resolve[i] = xstrdup(d->p->fallback[i]);
	d->nresolve = d->p->nfallback;
	d->iresolve = 0;
	d->resolve_limit = 0;
	d->cur = d->naddr - 1;
	deliv_resolve_next(d);
	return;
    }
    deliv_finish(d);
}

/* ---------------------------------------------------------------------- */
/* Resolution                                                              */
/* ---------------------------------------------------------------------- */

static void addr_push(SMTP_DELIV *d, const char *host, const DNS_ADDR *a, int port)
{
    if (d->naddr == d->caddr) {
	d->caddr = d->caddr ? 2 * d->caddr : 8;
	d->addrs = xrealloc(d->addrs, d->caddr * sizeof(*d->addrs));
    }
    snprintf(d->addrs[d->naddr].host, sizeof(d->addrs[d->naddr].host), "%s", host);
    snprintf(d->addrs[d->naddr].addr, sizeof(d->addrs[d->naddr].addr), "%s", a->addr);
    d->addrs[d->naddr].family = a->family;
    d->addrs[d->naddr].port = port;
    d->naddr++;
}

/* A name service failure, worded as Postfix's dns_strerror() path. */
static void deliv_dns_fail(SMTP_DELIV *d, const char *name, const char *type, int status)
{
    char   *text = xasprintf("Host or domain name not found. Name service error for name=%s type=%s: %s",
			     name, type, status == DNS_TEMPFAIL ? "Host not found, try again" : "Host not found");

    deliv_set_last(d, status == DNS_TEMPFAIL ? "4.4.3" : "5.4.4", text, "none", NULL, NULL);
    free(text);
}

/* All addresses of one nexthop are known: start connecting, or go on resolving. */
static void deliv_batch_done(SMTP_DELIV *d)
{
    if (d->iresolve < d->nresolve) {
	deliv_resolve_next(d);
	return;
    }
    if (!d->fallback_used)
	d->primary_end = d->naddr;
    if (d->cur + 1 < d->naddr) {
	/* Resolution errors of some MX hosts are moot once others resolve. */
	d->cur++;
	sess_connect(d);
	return;
    }

    /*
     * Nothing to connect to.  A hard name service error of the primary
     * bounces; a soft one defers and may still go to the fallback relay.
     */
    if (d->last_dsn[0] == '5' && !d->fallback_used) {
	for (int i = 0; i < d->nrcpt; i++)
	    if (d->rstate[i] == R_PENDING)
		rcpt_final(d, i, SMTP_BOUNCED, d->last_dsn, d->last_reason, "none", NULL, NULL);
	deliv_finish(d);
	return;
    }
    if (!d->fallback_used && d->p->nfallback > 0) {
	d->cur = d->naddr - 1;
	deliv_next_address(d);
	return;
    }
    if (d->last_dsn[0] == '4' && !d->fallback_used) {
	d->res.hop_failed = 1;
	snprintf(d->res.hop_dsn, sizeof(d->res.hop_dsn), "%s", d->last_dsn);
	free(d->res.hop_reason);
	d->res.hop_reason = xstrdup(d->last_reason);
    }
    deliv_finish(d);
}

static int addr_limit_reached(const SMTP_DELIV *d)
{
    return (d->resolve_limit > 0 && d->naddr - d->batch_start >= d->resolve_limit);
}

static void deliv_mx_addr_cb(void *ctx, int status, const DNS_ADDR *a, int n);

/* Resolve the next MX host of the current batch, or end the batch. */
static void deliv_mx_host_next(SMTP_DELIV *d)
{
    if (d->imx >= d->nmx || addr_limit_reached(d)) {
	deliv_batch_done(d);
	return;
    }
    d->dns_busy = 1;
    dns_addr(d->s->dns, d->mx[d->imx].host, deliv_mx_addr_cb, d);
}

static void deliv_mx_addr_cb(void *ctx, int status, const DNS_ADDR *a, int n)
{
    SMTP_DELIV *d = ctx;
    const char *host = d->mx[d->imx].host;

    d->dns_busy = 0;
    if (status != DNS_OK) {
	deliv_dns_fail(d, host, "A", status);
    } else {
	for (int i = 0; i < n && !addr_limit_reached(d); i++)
	    addr_push(d, host, &a[i], d->mx_port);
    }
    d->imx++;
    deliv_mx_host_next(d);
}

/* Equal preferences in random order (Postfix: dns_rr_shuffle per preference). */
static void mx_shuffle(SMTP *s, DNS_MX *mx, int n)
{
    for (int lo = 0; lo < n;) {
	int     hi = lo + 1;

	while (hi < n && mx[hi].pref == mx[lo].pref)
	    hi++;
	for (int i = hi - 1; i > lo; i--) {
	    int     j = lo + (int) (smtp_rand(s) % (uint64_t) (i - lo + 1));
	    DNS_MX t = mx[i];

	    mx[i] = mx[j];
	    mx[j] = t;
	}
	lo = hi;
    }
}

static void deliv_host_addr_cb(void *ctx, int status, const DNS_ADDR *a, int n);

static void deliv_mx_cb(void *ctx, int status, const DNS_MX *mx, int n)
{
    SMTP_DELIV *d = ctx;
    const char *name = d->resolve[d->iresolve - 1];
    char    host[256];
    int     port, want_mx;

    d->dns_busy = 0;
    smtp_nexthop_parse(name, host, sizeof(host), &port, &want_mx);
    if (status == DNS_OK) {
	free(d->mx);
	d->mx = xmalloc(n * sizeof(*mx));
	memcpy(d->mx, mx, n * sizeof(*mx));
	d->nmx = n;
	d->imx = 0;
	mx_shuffle(d->s, d->mx, n);
	deliv_mx_host_next(d);
    } else if (status == DNS_NOTFOUND) {
	/* No MX: the domain's own addresses. */
	d->dns_busy = 1;
	dns_addr(d->s->dns, host, deliv_host_addr_cb, d);
    } else {
	deliv_dns_fail(d, host, "MX", status);
	deliv_batch_done(d);
    }
}

static void deliv_host_addr_cb(void *ctx, int status, const DNS_ADDR *a, int n)
{
    SMTP_DELIV *d = ctx;
    const char *name = d->resolve[d->iresolve - 1];
    char    host[256];
    int     port, want_mx;

    d->dns_busy = 0;
    smtp_nexthop_parse(name, host, sizeof(host), &port, &want_mx);
    if (status != DNS_OK) {
	deliv_dns_fail(d, host, "A", status);
    } else {
	for (int i = 0; i < n && !addr_limit_reached(d); i++)
	    addr_push(d, host, &a[i], port);
    }
    deliv_batch_done(d);
}

/* Resolve d->resolve[d->iresolve] into addresses. */
static void deliv_resolve_next(SMTP_DELIV *d)
{
    const char *name = d->resolve[d->iresolve++];
    char    host[256];
    int     port, want_mx;
    unsigned char bin[16];

    d->batch_start = d->naddr;
    if (smtp_nexthop_parse(name, host, sizeof(host), &port, &want_mx) < 0) {
	char   *text = xasprintf("malformed next hop \"%s\"", name);

	log_warn("smtp", "%s", text);
	deliv_set_last(d, "4.3.5", text, "none", NULL, NULL);
	free(text);
	deliv_batch_done(d);
	return;
    }

    /* Address literals need no lookup. */
    if (inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1) {
	DNS_ADDR a;

	a.family = strchr(host, ':') ? AF_INET6 : AF_INET;
	snprintf(a.addr, sizeof(a.addr), "%.63s", host);
	addr_push(d, host, &a, port);
	deliv_batch_done(d);
	return;
    }
    if (d->s->dns == NULL) {
	deliv_dns_fail(d, host, want_mx ? "MX" : "A", DNS_TEMPFAIL);
	deliv_batch_done(d);
	return;
    }
    d->mx_port = port;
    d->dns_busy = 1;
    if (want_mx)
	dns_mx(d->s->dns, host, deliv_mx_cb, d);
    else
	dns_addr(d->s->dns, host, deliv_host_addr_cb, d);
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

    buf_printf(&b, "RCPT TO:<%s>", r->addr);
    if (d->f_dsn) {
	notify_param(&b, r->notify);
	if (r->orcpt && *r->orcpt)
	    buf_printf(&b, " ORCPT=%s", r->orcpt);
    }
    sess_send(d, "%s", b.data);
    buf_free(&b);
    cmd_push(d, CMD_RCPT, slot);
}

static void send_quit(SMTP_DELIV *d)
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

/* Set-up done: checks that need the EHLO features, then MAIL FROM. */
static void xact_start(SMTP_DELIV *d)
{
    const QMSG *m = d->msg;
    BUF     b = BUF_INIT;
    char   *text;

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
    if (d->f_size && d->size_limit > 0 && (long long) m->size > d->size_limit) {
	text = xasprintf("message size %zu exceeds size limit %lld of server %s",
			 m->size, d->size_limit, d->namaddr);
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
    buf_printf(&b, "MAIL FROM:<%s>", m->sender);
    if (d->f_size)
	buf_printf(&b, " SIZE=%zu", m->size);
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

/* Stream the body with dot-stuffing, keeping at most ~64 KiB queued. */
static void body_pump(SMTP_DELIV *d)
{
    struct evbuffer *out = bufferevent_get_output(d->bev);
    const char *c = d->msg->content ? d->msg->content : "";
    size_t  size = d->msg->content ? d->msg->size : 0;
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

static void sess_writecb(struct bufferevent *bev, void *arg)
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

static void tls_start(SMTP_DELIV *d)
{
    SSL    *ssl = d->s->ssl_ctx ? SSL_new(d->s->ssl_ctx) : NULL;
    struct bufferevent *tb;

    if (ssl == NULL) {
	sess_fail_soft(d, "4.7.5", "Cannot start TLS: handshake failure", NULL);
	return;
    }
    SSL_set_tlsext_host_name(ssl, d->addrs[d->cur].host);
    tb = bufferevent_openssl_filter_new(d->s->base, d->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
					BEV_OPT_CLOSE_ON_FREE);
    if (tb == NULL) {
	SSL_free(ssl);
	sess_fail_soft(d, "4.7.5", "Cannot start TLS: handshake failure", NULL);
	return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(tb, 1);
    d->bev = tb;
    bufferevent_setcb(d->bev, sess_readcb, sess_writecb, sess_eventcb, d);
    bufferevent_enable(d->bev, EV_READ | EV_WRITE);
    sess_arm(d, ST_TLS, d->p->starttls_tmo, "performing the TLS handshake");
}

static void send_ehlo(SMTP_DELIV *d)
{
    d->f_pipelining = d->f_dsn = d->f_smtputf8 = d->f_starttls = d->f_8bitmime = d->f_size = 0;
    d->size_limit = 0;
    sess_send(d, "EHLO %s", d->p->helo_name);
    sess_arm(d, ST_EHLO, d->p->helo_tmo, "performing the EHLO handshake");
}

/* The handshake is complete (EHLO/HELO, and TLS when wanted). */
static void setup_done(SMTP_DELIV *d)
{
    char   *text;

    if (d->p->tls_level == TLS_ENCRYPT && !d->tls_on) {
	text = xasprintf("TLS is required, but was not offered by host %s", d->namaddr);
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
}

/* A complete reply arrived. */
static void sess_reply(SMTP_DELIV *d, int code, const char *reply)
{
    char    dsn[12];
    char   *text;

    switch (d->stage) {
    case ST_GREETING:
	if (code / 100 == 2) {
	    send_ehlo(d);
	    return;
	}
	/* smtp_skip_5xx_greeting: a 5xx greeting is a reason to try elsewhere. */
	smtp_reply_dsn(reply, dsn);
	dsn[0] = '4';
	text = xasprintf("host %s refused to talk to me: %s", d->namaddr, reply);
	sess_fail_soft(d, dsn, text, reply);
	free(text);
	return;
    case ST_EHLO:
	if (code / 100 == 2) {
	    if (!d->tls_on && d->f_starttls && d->p->tls_level != TLS_NONE && d->s->ssl_ctx) {
		sess_send(d, "STARTTLS");
		sess_arm(d, ST_STARTTLS, d->p->helo_tmo, "sending STARTTLS");
		return;
	    }
	    setup_done(d);
	    return;
	}
	if (code / 100 == 5) {
	    sess_send(d, "HELO %s", d->p->helo_name);
	    sess_arm(d, ST_HELO, d->p->helo_tmo, "performing the HELO handshake");
	    return;
	}
	/* FALLTHROUGH */
    case ST_HELO:
	if (code / 100 == 2) {
	    setup_done(d);
	    return;
	}
	smtp_reply_dsn(reply, dsn);
	text = xasprintf("host %s refused to talk to me: %s", d->namaddr, reply);
	if (code / 100 == 5)
	    sess_fail_hard(d, dsn, text, reply);
	else
	    sess_fail_soft(d, dsn, text, reply);
	free(text);
	return;
    case ST_STARTTLS:
	if (code == 220) {
	    tls_start(d);
	    return;
	}
	/* may: go on in plaintext; encrypt: setup_done() refuses. */
	setup_done(d);
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

static void sess_readcb(struct bufferevent *bev, void *arg)
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
	line = buf_steal(&d->reply);
	d->reply_lines = 0;
	sess_reply(d, code, line ? line : "");
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

static void sess_eventcb(struct bufferevent *bev, short what, void *arg)
{
    SMTP_DELIV *d = arg;
    char   *text;

    if (what & BEV_EVENT_CONNECTED) {
	if (d->stage == ST_TLS) {
	    d->tls_on = 1;
	    send_ehlo(d);
	}
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

/* ---------------------------------------------------------------------- */
/* error: and discard:                                                      */
/* ---------------------------------------------------------------------- */

static void deliv_error(SMTP_DELIV *d, const char *text)
{
    char    dsn[12];
    const char *cp = text;

    /* "error:5.1.1 text": the reason may start with its status code. */
    snprintf(dsn, sizeof(dsn), "5.0.0");
    if ((cp[0] == '4' || cp[0] == '5') && cp[1] == '.') {
	char    tmp[600];
	size_t  l;

	snprintf(tmp, sizeof(tmp), "%c00 %s", cp[0], cp);
	smtp_reply_dsn(tmp, dsn);
	l = strlen(dsn);
	if (strncmp(cp, dsn, l) == 0 && (cp[l] == 0 || cp[l] == ' ')) {
	    cp += l;
	    while (*cp == ' ')
		cp++;
	} else {
	    snprintf(dsn, sizeof(dsn), "5.0.0");
	}
	dsn[0] = '5';				/* error(8) always bounces */
    }
    d->service = "error";
    for (int i = 0; i < d->nrcpt; i++)
	rcpt_final(d, i, SMTP_BOUNCED, dsn, *cp ? cp : "unknown reason", "none", NULL, NULL);
    deliv_finish(d);
}

static void deliv_discard(SMTP_DELIV *d, const char *text)
{
    d->service = "discard";
    for (int i = 0; i < d->nrcpt; i++) {
	const char *addr = d->msg->rcpts[d->rcpts[i]].addr;
	const char *at = strrchr(addr, '@');

	/* An empty reason: Postfix's nexthop, i.e. the recipient domain. */
	rcpt_final(d, i, SMTP_SENT, "2.0.0", *text ? text : at ? at + 1 : addr, "none", NULL, NULL);
    }
    deliv_finish(d);
}

/* ---------------------------------------------------------------------- */
/* Entry points                                                            */
/* ---------------------------------------------------------------------- */

#define SHUTDOWN_TEXT "delivery aborted by mail system shutdown"

void    smtp_deliver(SMTP *s, const SMTP_REQUEST *req, SMTP_DONE done, void *ctx)
{
    SMTP_DELIV *d = xcalloc(1, sizeof(*d));
    const char *dest = req->dest ? req->dest : "";

    d->s = s;
    d->p = s->p;
    d->p->refs++;
    d->msg = req->msg;
    d->nrcpt = req->nrcpt;
    d->rcpts = xmalloc((req->nrcpt + 1) * sizeof(int));
    memcpy(d->rcpts, req->rcpts, req->nrcpt * sizeof(int));
    d->rstate = xcalloc(req->nrcpt + 1, sizeof(int));
    d->accepted = xcalloc(req->nrcpt + 1, sizeof(int));
    d->res.rcpts = xcalloc(req->nrcpt + 1, sizeof(SMTP_RCPT_RESULT));
    d->res.nrcpt = req->nrcpt;
    for (int i = 0; i < req->nrcpt; i++) {
	d->res.rcpts[i].index = req->rcpts[i];
	d->res.rcpts[i].status = SMTP_DEFERRED;
    }
    d->dest = xstrdup(dest);
    d->active_us = req->active_us;
    d->handoff_us = time_now_us();
    d->done = done;
    d->ctx = ctx;
    d->service = "smtp";
    d->fd = -1;
    d->cur = -1;
    d->reached = -1;
    d->timer = evtimer_new(s->base, sess_timeout_cb, d);
    d->next = s->delivs;
    if (s->delivs)
	s->delivs->prev = d;
    s->delivs = d;

    if (s->shutdown) {
	deliv_set_last(d, "4.3.0", SHUTDOWN_TEXT, "none", NULL, NULL);
	deliv_finish(d);
	return;
    }
    if (strncmp(dest, "error:", 6) == 0) {
	deliv_error(d, dest + 6);
	return;
    }
    if (strncmp(dest, "discard:", 8) == 0) {
	deliv_discard(d, dest + 8);
	return;
    }
    if (strncmp(dest, "smtp:", 5) == 0)
	dest += 5;
    d->resolve = xcalloc(2, sizeof(char *));
    d->resolve[0] = xstrdup(dest);
    d->nresolve = 1;
    d->resolve_limit = d->p->mx_address_limit;
    deliv_resolve_next(d);
}

void    smtp_shutdown(SMTP *s)
{
    SMTP_DELIV *d;

    s->shutdown = 1;
    cache_close_idle(s);

    /* Drop the resolvers first: no lookup may answer into a freed delivery. */
    if (s->dns) {
	dns_free(s->dns);
	s->dns = NULL;
    }
    for (int i = 0; i < s->nold_dns; i++)
	dns_free(s->old_dns[i]);
    s->nold_dns = 0;
    while ((d = s->delivs) != NULL) {
	if (!d->finished) {
	    deliv_set_last(d, "4.3.0", SHUTDOWN_TEXT, "none", NULL, NULL);
	    d->res.hop_failed = 0;
	    deliv_finish(d);
	}
	deliv_unlink(d);
	d->done(d->ctx, &d->res);
	deliv_free(d);
    }
}

void    smtp_free(SMTP *s)
{
    SMTP_DELIV *d;

    if (s == NULL)
	return;
    if (s->dns)
	dns_free(s->dns);
    for (int i = 0; i < s->nold_dns; i++)
	dns_free(s->old_dns[i]);
    free(s->old_dns);
    while ((d = s->delivs) != NULL) {
	deliv_unlink(d);
	deliv_free(d);
    }
    while (s->conns != NULL) {
	if (!s->conns->closing)
	    conn_quit_now(s->conns);
	conn_free(s->conns);
    }
    if (s->ssl_ctx)
	SSL_CTX_free(s->ssl_ctx);
    if (s->p)
	params_release(s->p);
    free(s->dns_servers);
    free(s);
}
