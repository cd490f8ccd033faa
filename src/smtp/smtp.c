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
 * smtp_connection_cache_on_demand; see smtp_cache.c.
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

/* ---------------------------------------------------------------------- */
/* Parameters                                                              */
/* ---------------------------------------------------------------------- */

static SMTP_PARAMS *params_load(const CONFIG *cf)
{
    SMTP_PARAMS *p = xcalloc(1, sizeof(*p));

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
    secure_params_load(p, cf);
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
    p->myhostname = xstrdup(smtp_cf_str(cf, "myhostname", ""));
    smtp_self_load(p, cf);
    p->rec_limit = (size_t) smtp_cf_int(cf, "line_length_limit", 2048);
    if (cf) {
	char    err[512];

	/* relayqd opened these tables at start: this finds the shared copies. */
	p->checks = cleanup_checks_open(cf, "smtp_", err, sizeof(err));
	if (p->checks == 0 && err[0]) {
	    log_warn("smtp", "%s; deliveries are deferred until this is fixed", err);
	    p->checks_error = xstrdup(err);
	}
	p->generic = cleanup_generic_create(cf, err, sizeof(err));
	if (p->generic == 0 && err[0]) {
	    log_warn("smtp", "%s; deliveries are deferred until this is fixed", err);
	    p->generic_error = xstrdup(err);
	}
    }
    return (p);
}

void params_release(SMTP_PARAMS *p)
{
    if (--p->refs > 0)
	return;
    free(p->helo_name);
    free(p->myhostname);
    cleanup_checks_close(p->checks);
    free(p->checks_error);
    cleanup_generic_free(p->generic);
    free(p->generic_error);
    smtp_self_free(p);
    secure_params_free(p);
    if (p->fallback)
	str_list_free(p->fallback);
    free(p);
}

/* Deterministic (seeded) or random shuffle source: splitmix64. */
uint64_t smtp_rand(SMTP *s)
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

static void smtp_config(SMTP *s, const CONFIG *cf)
{
    const char *servers = smtp_cf_str(cf, "dns_servers", "");
    char    err[256];

    SMTP_PARAMS *np = params_load(cf);	/* first: tables still open are shared */

    if (s->p)
	params_release(s->p);
    s->p = np;
    smtp_seed(s, cf);
    smtp_maps_flush();
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
/* Delivery life cycle                                                     */
/* ---------------------------------------------------------------------- */

static void deliv_free(SMTP_DELIV *d)
{
    sess_close(d);
    secure_policy_forget(d);
    tls_policy_free(&d->tls_pol);
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
    buf_free(&d->filtered);
    free(d->g_sender);
    if (d->g_rcpt) {
	for (int i = 0; i < d->nrcpt; i++)
	    free(d->g_rcpt[i]);
	free(d->g_rcpt);
    }
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
void deliv_finish(SMTP_DELIV *d)
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
    if (s->p)
	params_release(s->p);
    free(s->dns_servers);
    free(s);
}

