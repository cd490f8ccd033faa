/* metrics: label escaping and the bounded per-label counters. */
#include <string.h>
#include "t.h"
#include "metrics/metrics.h"

static void test_label_escape(void)
{
    BUF     b;

    memset(&b, 0, sizeof(b));
    metrics_label_escape(&b, "smtp:[a\"b\\c\nd]:25");
    T_EQ_STR(b.data, "smtp:[a\\\"b\\\\c\\nd]:25");
    buf_free(&b);
}

static void test_lc_bounded(void)
{
    METRICS_LCOUNTER c;
    BUF     b;
    char    v[32];
    int     i;

    memset(&c, 0, sizeof(c));
    memset(&b, 0, sizeof(b));
    for (i = 0; i < METRICS_LC_MAX + 50; i++) {
	snprintf(v, sizeof(v), "smtp:d%d.test", i);
	metrics_lc_add(&c, v, 1);
    }
    metrics_lc_add(&c, "smtp:d0.test", 2);
    metrics_lc_add(&c, "smtp:\"evil\".test", 1);
    T_EQ_INT(c.n, METRICS_LC_MAX);
    T_EQ_INT(c.other, 51);
    metrics_lc_write(&b, "x_total", "destination", "help", &c);
    T_CHECK(strstr(b.data, "\nx_total{destination=\"smtp:d0.test\"} 3\n") != NULL);
    T_CHECK(strstr(b.data, "\nx_total{destination=\"other\"} 51\n") != NULL);
    T_CHECK(strstr(b.data, "evil") == NULL);
    T_CHECK(strstr(b.data, "# TYPE x_total counter\n") != NULL);
    metrics_lc_free(&c);
    buf_free(&b);
}

int     main(void)
{
    T_RUN(test_label_escape);
    T_RUN(test_lc_bounded);
    return t_done();
}
