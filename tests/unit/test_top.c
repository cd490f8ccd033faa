/*
 * test_top - relayq top's snapshot: the reply format read back exactly,
 * hostile strings (escape sequences, control characters, newlines, bad
 * UTF-8) framed on the wire and printable on the screen, malformed and
 * truncated replies refused, the screen cut to any terminal size.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "t.h"
#include "control/top.h"

#define EVIL_DEST "smtp:[evil\033[2J\033]0;owned\007.test]:25\r\nend"
#define EVIL_WHY  "delivery temporarily suspended: 421 \033[31mred\033[0m \xc2\x9b" "6n \xff\xfe bye%41-"

static void snap_fill(TOP_SNAP *s, int ndest)
{
    memset(s, 0, sizeof(*s));
    s->host = xstrdup("mta.relayq.test");
    s->now = 1800000000;
    s->started = s->now - 3725;
    for (int c = 0; c < TOP_COUNTERS; c++) {
	s->total[c] = 1000u * (unsigned) (c + 1);
	for (int w = 0; w < TOP_WINDOWS; w++)
	    s->rate[c][w] = 1.5 * (c + 1) + w;
    }
    s->state[0] = 1;
    s->state[1] = 2;
    s->state[2] = 300;
    s->state[3] = 4;
    s->age[2][0] = 250;
    s->age[2][9] = 50;
    s->age[0][0] = 1;
    s->age[1][0] = 2;
    s->age[3][3] = 4;
    s->ndead = 1;
    s->ndests = 7;
    s->deferred_known = 290;
    s->next_run = s->now + 120;
    s->next_due = s->now + 420;
    s->queue_run_delay = 300;
    s->dests = xcalloc((size_t) ndest, sizeof(TOP_DEST));
    s->ndest = ndest;
    for (int i = 0; i < ndest; i++) {
	s->dests[i].dest = i == 0 ? xstrdup(EVIL_DEST) : xasprintf("smtp:dest%d.test", i);
	s->dests[i].deferred = (uint32_t) (290 - i);
	s->dests[i].dead = i == 0;
	s->dests[i].dead_until = i == 0 ? s->now + 90 : 0;
	s->dests[i].dsn = xstrdup(i == 0 ? "4.4.1" : "");
	s->dests[i].reason = xstrdup(i == 0 ? EVIL_WHY : "");
    }
}

static void test_round_trip(void)
{
    TOP_SNAP a, b;
    BUF     wire = BUF_INIT;
    char    err[256];

    snap_fill(&a, 3);
    top_format(&a, &wire);
    /* The framing holds: no raw control character or 8-bit byte on the wire. */
    for (size_t i = 0; i < wire.len; i++)
	T_CHECK(wire.data[i] == '\n' || (wire.data[i] >= 0x20 && wire.data[i] < 0x7f));
    T_EQ_INT(top_parse(wire.data, wire.len, &b, err, sizeof(err)), 0);
    T_EQ_STR(b.host, "mta.relayq.test");
    T_EQ_INT(b.now, a.now);
    T_EQ_INT(b.started, a.started);
    T_EQ_INT(b.total[3], 4000);
    T_CHECK(b.rate[2][1] > 5.49 && b.rate[2][1] < 5.51);
    T_EQ_INT(b.state[2], 300);
    T_EQ_INT(b.age[2][9], 50);
    T_EQ_INT(b.age[3][3], 4);
    T_EQ_INT(b.ndead, 1);
    T_EQ_INT(b.ndests, 7);
    T_EQ_INT(b.deferred_known, 290);
    T_EQ_INT(b.next_due, a.next_due);
    T_EQ_INT(b.ndest, 3);
    T_EQ_STR(b.dests[0].dest, EVIL_DEST);
    T_EQ_STR(b.dests[0].reason, EVIL_WHY);
    T_EQ_STR(b.dests[0].dsn, "4.4.1");
    T_EQ_INT(b.dests[0].dead, 1);
    T_EQ_STR(b.dests[1].reason, "");
    T_EQ_INT(b.dests[2].deferred, 288);
    top_snap_free(&a);
    top_snap_free(&b);
    buf_free(&wire);
}

static int parse_str(const char *text, char *err, size_t errlen)
{
    TOP_SNAP s;
    int     r = top_parse(text, strlen(text), &s, err, errlen);

    if (r == 0)
	top_snap_free(&s);
    return r;
}

static void test_parse_refuses(void)
{
    char    err[256];

    T_EQ_INT(parse_str("relayq-top 1\nend\n", err, sizeof(err)), 0);
    T_EQ_INT(parse_str("relayq-top 1\nfuture 1 2 3\nend\n", err, sizeof(err)), 0);	/* a later line */
    T_EQ_INT(parse_str("relayq-top 1\n", err, sizeof(err)), -1);
    T_CHECK(strstr(err, "truncated") != NULL);
    T_EQ_INT(parse_str("relayq-top 2\nend\n", err, sizeof(err)), -1);
    T_CHECK(strstr(err, "version 2") != NULL);
    T_EQ_INT(parse_str("pong\n", err, sizeof(err)), -1);
    T_EQ_INT(parse_str("relayq-top 1\nstate incoming -1\nend\n", err, sizeof(err)), -1);
    T_EQ_INT(parse_str("relayq-top 1\nstate incoming 99999999999\nend\n", err, sizeof(err)), -1);
    T_EQ_INT(parse_str("relayq-top 1\nstate nosuch 1\nend\n", err, sizeof(err)), -1);
    T_EQ_INT(parse_str("relayq-top 1\nage deferred 1 2 3\nend\n", err, sizeof(err)), -1);
    T_EQ_INT(parse_str("relayq-top 1\ncounter received 1 nan 0 0\nend\n", err, sizeof(err)), -1);
    T_EQ_INT(parse_str("relayq-top 1\ncounter received 1 -1 0 0\nend\n", err, sizeof(err)), -1);
    T_EQ_INT(parse_str("relayq-top 1\ndest 1 0 0 - a%0 -\nend\n", err, sizeof(err)), -1);
    T_EQ_INT(parse_str("relayq-top 1\ndest 1 0 0 - a%00b -\nend\n", err, sizeof(err)), -1);
    T_EQ_INT(parse_str("relayq-top 1\ndest 1 2 0 - a -\nend\n", err, sizeof(err)), -1);
    T_EQ_INT(parse_str("relayq-top 1\ndest 1 0 0 - a - extra\nend\n", err, sizeof(err)), -1);
    T_EQ_INT(parse_str("relayq-top 1\nend extra\n", err, sizeof(err)), -1);
    {
	/* More destinations than a snapshot holds. */
	BUF     b = BUF_INIT;

	buf_puts(&b, "relayq-top 1\n");
	for (int i = 0; i <= TOP_DESTS_MAX; i++)
	    buf_printf(&b, "dest 1 0 0 - d%d -\n", i);
	buf_puts(&b, "end\n");
	T_EQ_INT(parse_str(b.data, err, sizeof(err)), -1);
	buf_free(&b);
    }
    {
	const char nul[] = "relayq-top 1\nhost a\0b\nend\n";
	TOP_SNAP s;

	T_EQ_INT(top_parse(nul, sizeof(nul) - 1, &s, err, sizeof(err)), -1);
    }
}

/* Nothing but printable characters and newlines; no line wider than width. */
static void check_screen(const BUF *b, int width, int height)
{
    int     lines = 0, cols = 0;

    for (size_t i = 0; i < b->len; i++) {
	unsigned char c = (unsigned char) b->data[i];

	if (c == '\n') {
	    lines++;
	    cols = 0;
	    continue;
	}
	if (c < 0x20 || c == 0x7f)
	    T_FAILF("control character 0x%02x at %zu", c, i);
	/* C1 controls (CSI is U+009B) must not pass as UTF-8 either. */
	if (c == 0xc2 && i + 1 < b->len && (unsigned char) b->data[i + 1] < 0xa0)
	    T_FAILF("C1 control at %zu", i);
	if ((c & 0xc0) != 0x80)
	    cols++;
	if (cols > width)
	    T_FAILF("line %d wider than %d", lines + 1, width);
    }
    if (height > 0 && lines > height)
	T_FAILF("%d lines, at most %d expected", lines, height);
}

static void test_render_hostile(void)
{
    TOP_SNAP s;
    BUF     b = BUF_INIT;

    setenv("TZ", "UTC", 1);
    tzset();
    snap_fill(&s, 3);
    top_render(&s, 4096, 0, NULL, &b);
    check_screen(&b, 4096, 0);
    T_CHECK(strstr(b.data, "smtp:[evil?[2J?]0;owned?.test]:25??end") != NULL);
    T_CHECK(strstr(b.data, "DEAD until 08:01:30 (1m30s)") != NULL);
    T_CHECK(strstr(b.data, "4.4.1 delivery temporarily suspended: 421 ?[31mred?[0m ??6n ?? bye%41-") != NULL);
    T_CHECK(strstr(b.data, "queue: 307 messages: 1 incoming, 2 active, 300 deferred, 4 hold") != NULL);
    T_CHECK(strstr(b.data, "deferred   300 250  0  0  0  0   0   0   0    0    50") != NULL);
    T_CHECK(strstr(b.data, "next queue run 08:02:00 (in 2m00s)") != NULL);
    T_CHECK(strstr(b.data, "up 1h02m") != NULL);
    T_CHECK(strstr(b.data, "        10  (not tried since relayqd started") != NULL);
    buf_free(&b);

    /* Any terminal: tiny, narrow, huge (the view clamps what it asks for). */
    int     sizes[][2] = {{1, 1}, {10, 3}, {40, 12}, {80, 24}, {1000, 400}, {65535, 65535}, {-5, -5}};

    for (size_t k = 0; k < ARRAY_LEN(sizes); k++) {
	int     w = sizes[k][0] < 10 ? 10 : sizes[k][0];
	int     h = sizes[k][1] < 0 ? 0 : sizes[k][1] > 400 ? 400 : sizes[k][1];

	buf_reset(&b);
	top_render(&s, sizes[k][0], sizes[k][1], "q: quit", &b);
	check_screen(&b, w, h);
	if (h > 1)
	    T_CHECK(strstr(b.data, "q: quit\n") != NULL);	/* the status line always shows */
    }
    buf_free(&b);
    top_snap_free(&s);
}

static void test_json(void)
{
    TOP_SNAP s;
    BUF     b = BUF_INIT;

    snap_fill(&s, 2);
    top_json(&s, &b);
    for (size_t i = 0; i < b.len - 1; i++)
	T_CHECK((unsigned char) b.data[i] >= 0x20);
    T_CHECK(strstr(b.data, "\"destination\": \"smtp:[evil\\u001b[2J\\u001b]0;owned\\u0007.test]:25\\r\\nend\"") != NULL);
    T_CHECK(strstr(b.data, "\"queue\": {\"incoming\": 1, \"active\": 2, \"deferred\": 300, \"hold\": 4}") != NULL);
    T_CHECK(strstr(b.data, "\"deferred_destination_unknown\": 10") != NULL);
    T_CHECK(strstr(b.data, "\"dead\": false}") != NULL);
    buf_free(&b);
    top_snap_free(&s);
}

/* The daemon down (top_from_queue's snapshot): only what the queue itself says. */
static void test_offline(void)
{
    TOP_SNAP s;
    BUF     b = BUF_INIT;

    snap_fill(&s, 0);
    s.offline = 1;
    top_render(&s, 200, 0, NULL, &b);
    check_screen(&b, 200, 0);
    T_CHECK(strstr(b.data, "relayqd is not running: the queue read directly") != NULL);
    T_CHECK(strstr(b.data, "per second: unknown (relayqd is not running)") != NULL);
    T_CHECK(strstr(b.data, "received") == NULL);
    T_CHECK(strstr(b.data, "next queue run") == NULL);
    T_CHECK(strstr(b.data, "queue: 307 messages") != NULL);
    buf_reset(&b);
    top_json(&s, &b);
    T_CHECK(strstr(b.data, "\"daemon_running\": false") != NULL);
    T_CHECK(strstr(b.data, "\"counters\": null") != NULL);
    T_CHECK(strstr(b.data, "\"destinations\": null}") != NULL);
    buf_free(&b);
    top_snap_free(&s);
}

int     main(void)
{
    T_RUN(test_round_trip);
    T_RUN(test_parse_refuses);
    T_RUN(test_render_hostile);
    T_RUN(test_json);
    T_RUN(test_offline);
    return t_done();
}
