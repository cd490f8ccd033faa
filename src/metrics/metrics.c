/*
 * metrics - Prometheus text format (version 0.0.4) over HTTP.  See metrics.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/http.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/event.h>
#include <event2/util.h>

#include "log/log.h"

#include "metrics/metrics.h"

struct METRICS {
    struct evhttp *http;
    struct evconnlistener *lis;
    struct event *pause_ev;
    METRICS_FILL fill;
    void   *ctx;
};

static const double hist_bounds[METRICS_HIST_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
};

static void metrics_request(struct evhttp_request *req, void *arg)
{
    METRICS *m = arg;
    const char *uri = evhttp_request_get_uri(req);

    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
	evhttp_send_error(req, 405, "Method Not Allowed");
	return;
    }
    if (uri == NULL || (strcmp(uri, "/metrics") != 0 && strncmp(uri, "/metrics?", 9) != 0)) {
	evhttp_send_error(req, HTTP_NOTFOUND, "Not Found");
	return;
    }
    BUF     b = BUF_INIT;

    m->fill(m->ctx, &b);
    struct evbuffer *body = evbuffer_new();

    evbuffer_add(body, b.data ? b.data : "", b.len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
		      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, HTTP_OK, "OK", body);
    evbuffer_free(body);
    buf_free(&b);
}

static void metrics_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    METRICS *m = arg;

    evconnlistener_enable(m->lis);
}

/*
 * As smtpd: out of descriptors, pause a second instead of spinning.  The
 * listener's argument is evhttp's own, so the one metrics listener is kept
 * here.
 */
static METRICS *metrics_paused;

static void metrics_accept_error(struct evconnlistener *l, void *arg)
{
    METRICS *m = metrics_paused;
    struct timeval one = {1, 0};

    if (m == NULL)
	return;
    log_warn("master", "metrics accept: %s: not accepting new connections for 1 second",
	     strerror(EVUTIL_SOCKET_ERROR()));
    evconnlistener_disable(l);
    evtimer_add(m->pause_ev, &one);
}

METRICS *metrics_create(struct event_base *base, const char *listen, METRICS_FILL fill, void *ctx,
			        char *err, size_t errlen)
{
    char    host[256];
    const char *colon = strrchr(listen, ':');
    int     port;

    if (colon == NULL || colon == listen || (port = atoi(colon + 1)) <= 0 || port > 65535) {
	snprintf(err, errlen, "metrics_listen: bad address \"%s\": expected host:port", listen);
	return NULL;
    }
    snprintf(host, sizeof(host), "%.*s", (int) (colon - listen), listen);
    if (host[0] == '[') {
	memmove(host, host + 1, strlen(host));
	char   *e = strchr(host, ']');

	if (e)
	    *e = 0;
    }
    METRICS *m = xcalloc(1, sizeof(*m));

    m->fill = fill;
    m->ctx = ctx;
    m->http = evhttp_new(base);
    struct evhttp_bound_socket *bs = m->http ? evhttp_bind_socket_with_handle(m->http, host, (unsigned short) port) : NULL;

    if (bs == NULL) {
	snprintf(err, errlen, "metrics_listen: cannot listen on %s", listen);
	if (m->http)
	    evhttp_free(m->http);
	free(m);
	return NULL;
    }
    m->lis = evhttp_bound_socket_get_listener(bs);
    m->pause_ev = evtimer_new(base, metrics_resume_cb, m);
    metrics_paused = m;
    evconnlistener_set_error_cb(m->lis, metrics_accept_error);
    evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET);
    evhttp_set_gencb(m->http, metrics_request, m);
    return m;
}

void    metrics_free(METRICS *m)
{
    if (m == NULL)
	return;
    if (m->pause_ev)
	event_free(m->pause_ev);
    if (metrics_paused == m)
	metrics_paused = NULL;
    evhttp_free(m->http);
    free(m);
}

void    metrics_family(BUF *out, const char *name, const char *type, const char *help)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void    metrics_sample(BUF *out, const char *name, const char *labels, double value)
{
    if (labels && *labels)
	buf_printf(out, "%s{%s} %.17g\n", name, labels, value);
    else
	buf_printf(out, "%s %.17g\n", name, value);
}

void    metrics_hist_observe(METRICS_HIST *h, double seconds)
{
    int     i;

    for (i = 0; i < METRICS_HIST_BUCKETS && seconds > hist_bounds[i]; i++)
	 /* void */ ;
    h->count[i]++;
    h->total++;
    h->sum += seconds;
}

void    metrics_hist_write(BUF *out, const char *name, const char *help, const METRICS_HIST *h)
{
    uint64_t cum = 0;
    char    label[64];
    char    n[128];

    metrics_family(out, name, "histogram", help);
    snprintf(n, sizeof(n), "%s_bucket", name);
    for (int i = 0; i < METRICS_HIST_BUCKETS; i++) {
	cum += h->count[i];
	snprintf(label, sizeof(label), "le=\"%g\"", hist_bounds[i]);
	metrics_sample(out, n, label, (double) cum);
    }
    cum += h->count[METRICS_HIST_BUCKETS];
    metrics_sample(out, n, "le=\"+Inf\"", (double) cum);
    snprintf(n, sizeof(n), "%s_sum", name);
    metrics_sample(out, n, "", h->sum);
    snprintf(n, sizeof(n), "%s_count", name);
    metrics_sample(out, n, "", (double) h->total);
}

void    metrics_label_escape(BUF *out, const char *value)
{
    const char *p;

    for (p = value; *p; p++) {
	if (*p == '\\')
	    buf_append(out, "\\\\", 2);
	else if (*p == '"')
	    buf_append(out, "\\\"", 2);
	else if (*p == '\n')
	    buf_append(out, "\\n", 2);
	else
	    buf_append(out, p, 1);
    }
}

void    metrics_lc_add(METRICS_LCOUNTER *c, const char *value, uint64_t n)
{
    int     i;

    for (i = 0; i < c->n; i++) {
	if (strcmp(c->value[i], value) == 0) {
	    c->count[i] += n;
	    return;
	}
    }
    if (c->n < METRICS_LC_MAX) {
	c->value[c->n] = xstrdup(value);
	c->count[c->n++] = n;
    } else {
	c->other += n;
    }
}

void    metrics_lc_write(BUF *out, const char *name, const char *label, const char *help,
			         const METRICS_LCOUNTER *c)
{
    int     i;

    metrics_family(out, name, "counter", help);
    for (i = 0; i < c->n; i++) {
	buf_printf(out, "%s{%s=\"", name, label);
	metrics_label_escape(out, c->value[i]);
	buf_printf(out, "\"} %.17g\n", (double) c->count[i]);
    }
    if (c->other)
	buf_printf(out, "%s{%s=\"other\"} %.17g\n", name, label, (double) c->other);
}

void    metrics_lc_free(METRICS_LCOUNTER *c)
{
    int     i;

    for (i = 0; i < c->n; i++)
	free(c->value[i]);
    c->n = 0;
    c->other = 0;
}
