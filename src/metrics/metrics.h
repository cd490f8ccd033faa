/*
 * metrics - Prometheus text exposition on metrics_listen (GET /metrics),
 * served from the event loop (libevent's evhttp).  The daemon fills the
 * page through a callback with the helpers below.
 */
#ifndef METRICS_H_INCLUDED
#define METRICS_H_INCLUDED

#include <stdint.h>
#include <event2/event.h>
#include "util/util.h"

typedef struct METRICS METRICS;
typedef void (*METRICS_FILL) (void *ctx, BUF *out);

/* listen: "host:port" or "[v6]:port".  NULL with err on a bad address or a busy port. */
METRICS *metrics_create(struct event_base *base, const char *listen, METRICS_FILL fill, void *ctx,
			        char *err, size_t errlen);
void    metrics_free(METRICS *m);

/* "# HELP" and "# TYPE" lines of a family (type: counter, gauge, histogram). */
void    metrics_family(BUF *out, const char *name, const char *type, const char *help);
/* One sample: labels is "" or 'state="deferred"' (without braces). */
void    metrics_sample(BUF *out, const char *name, const char *labels, double value);

/* A fixed-bucket histogram (seconds). */
#define METRICS_HIST_BUCKETS 12
typedef struct METRICS_HIST {
    uint64_t count[METRICS_HIST_BUCKETS + 1];	/* last: +Inf */
    uint64_t total;
    double  sum;
} METRICS_HIST;
void    metrics_hist_observe(METRICS_HIST *h, double seconds);
void    metrics_hist_write(BUF *out, const char *name, const char *help, const METRICS_HIST *h);

/* A label value in exposition format: backslash, double quote and newline escaped. */
void    metrics_label_escape(BUF *out, const char *value);

/*
 * Counters by one label (a destination): at most METRICS_LC_MAX distinct
 * values, later ones are counted under "other", so hostile or numerous
 * recipient domains cannot grow the page without bound.
 */
#define METRICS_LC_MAX 200
typedef struct METRICS_LCOUNTER {
    char   *value[METRICS_LC_MAX];
    uint64_t count[METRICS_LC_MAX];
    int     n;
    uint64_t other;
} METRICS_LCOUNTER;
void    metrics_lc_add(METRICS_LCOUNTER *c, const char *value, uint64_t n);
void    metrics_lc_write(BUF *out, const char *name, const char *label, const char *help,
			         const METRICS_LCOUNTER *c);
void    metrics_lc_free(METRICS_LCOUNTER *c);

#endif
