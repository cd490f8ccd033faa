/*
 * test_explain.c - `relayq explain` for a configuration: the table, the
 * JSON of CONTRACT.md and the SVG, for the seed (spec §13) and trace T2.
 *
 * The SVG is checked here for one mark per attempt and for well-formedness
 * with a small tag-balance checker; full XML parsing is left to an
 * integration test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "explain/explain.h"

#define EXPLAIN_T0 ((int64_t) 1795813927)

static QMGR_PARAMS seed_params(void)
{
    QMGR_PARAMS p;

    memset(&p, 0, sizeof(p));
    p.queue_run_delay = 900;
    p.minimal_backoff_time = 900;
    p.maximal_backoff_time = 3600;
    p.maximal_queue_lifetime = 86400;
    p.bounce_queue_lifetime = 86400;
    p.qmgr_message_active_limit = 20000;
    p.initial_destination_concurrency = 5;
    p.default_destination_concurrency_limit = 20;
    p.default_destination_recipient_limit = 50;
    return (p);
}

/* Run `relayq explain ARGS` and return what it printed (caller frees). */
static char *run_explain(const QMGR_PARAMS *p, int *status, const char *a1, const char *a2,
			         const char *a3, const char *a4, const char *a5, const char *a6)
{
    char   *argv[8] = {(char *) "explain", (char *) a1, (char *) a2, (char *) a3,
    (char *) a4, (char *) a5, (char *) a6, 0};
    int     argc = 1;
    char   *buf = 0;
    size_t  len = 0;
    FILE   *fp = open_memstream(&buf, &len);
    EXPLAIN_OPTS o;
    char    err[256];

    while (argc < 7 && argv[argc])
	argc++;
    *status = explain_opts_parse(argc - 1, argv + 1, &o, err, sizeof(err)) < 0 ? 2
	: explain_config(p, &o, fp, err, sizeof(err));
    if (*status < 0)
	*status = 2;
    fclose(fp);
    return (buf);
}

static int count(const char *hay, const char *needle)
{
    int     n = 0;

    while ((hay = strstr(hay, needle)) != 0) {
	n++;
	hay += strlen(needle);
    }
    return (n);
}

/*
 * Well-formedness, minus entities and DTDs: every start tag is closed in
 * order, attribute values are quoted, no stray '<' or '&' in text.
 */
static int xml_balanced(const char *s)
{
    char    stack[64][32];
    int     depth = 0, roots = 0;

    while (*s) {
	if (*s == '&') {
	    if (strncmp(s, "&lt;", 4) && strncmp(s, "&gt;", 4) && strncmp(s, "&amp;", 5)
		&& strncmp(s, "&quot;", 6))
		return (0);
	    s++;
	    continue;
	}
	if (*s != '<') {
	    s++;
	    continue;
	}
	if (strncmp(s, "<?", 2) == 0) {
	    if ((s = strstr(s, "?>")) == 0)
		return (0);
	    s += 2;
	    continue;
	}
	if (strncmp(s, "<!--", 4) == 0) {
	    if ((s = strstr(s, "-->")) == 0)
		return (0);
	    s += 3;
	    continue;
	}
	if (s[1] == '/') {
	    size_t  n = strcspn(s + 2, ">");

	    if (depth == 0 || strlen(stack[depth - 1]) != n || strncmp(stack[depth - 1], s + 2, n))
		return (0);
	    depth--;
	    s += 2 + n + 1;
	    continue;
	} else {
	    size_t  n = strcspn(s + 1, " \t\n/>");
	    const char *p = s + 1 + n;
	    int     self = 0;

	    if (n == 0 || n >= sizeof(stack[0]))
		return (0);
	    /* Attributes: name="value" with no '<' inside values. */
	    while (*p && *p != '>') {
		if (*p == '"') {
		    const char *e = strchr(p + 1, '"');

		    if (e == 0 || memchr(p + 1, '<', (size_t) (e - p - 1)))
			return (0);
		    p = e + 1;
		    continue;
		}
		if (*p == '/' && p[1] == '>')
		    self = 1;
		p++;
	    }
	    if (*p != '>')
		return (0);
	    if (!self) {
		if (depth == 64)
		    return (0);
		if (depth == 0)
		    roots++;
		memcpy(stack[depth], s + 1, n);
		stack[depth][n] = 0;
		depth++;
	    } else if (depth == 0) {
		roots++;
	    }
	    s = p + 1;
	}
    }
    return (depth == 0 && roots == 1);
}

static void test_duration_words(void)
{
    static const struct {
	int64_t s;
	const char *want;
    } cases[] = {
	{0, "0s"}, {16, "16s"}, {900, "15m"}, {1765, "29m25s"}, {3605, "1h0m5s"},
	{7165, "1h59m25s"}, {86400, "24h"}, {88181, "24h29m41s"}, {5 * 86400 + 61, "5d0h1m1s"},
    };
    char    buf[64];
    size_t  i;

    for (i = 0; i < ARRAY_LEN(cases); i++)
	T_EQ_STR(explain_duration(cases[i].s, buf, sizeof(buf)), cases[i].want);
}

static void test_seed_json(void)
{
    QMGR_PARAMS p = seed_params();
    int     st;
    char   *out = run_explain(&p, &st, "--arrival-offset", "35", "--attempt-duration", "16",
			      "--json", 0);

    T_EQ_INT(st, 0);
    T_CHECK(strncmp(out, "{\"parameters\": {\"queue_run_delay\": 900,", 39) == 0);
    T_CHECK(strstr(out, "{\"n\": 1, \"at\": 0, \"ends\": 16, \"backoff\": 900, \"next_eligible\": 916, "
		   "\"eligible\": null, \"queue_run\": null") != 0);
    T_CHECK(strstr(out, "{\"n\": 2, \"at\": 1765, \"ends\": 1781, \"backoff\": 1781, "
		   "\"next_eligible\": 3562, \"eligible\": 916, \"queue_run\": 1765") != 0);
    T_CHECK(strstr(out, "{\"n\": 3, \"at\": 3565,") != 0);
    T_CHECK(strstr(out, "{\"n\": 4, \"at\": 7165,") != 0);
    T_CHECK(strstr(out, "{\"n\": 5, \"at\": 11665,") != 0);
    T_CHECK(strstr(out, "{\"n\": 22, \"at\": 88165, \"ends\": 88181, \"backoff\": null") != 0);
    T_EQ_INT(count(out, "{\"n\": "), 22);
    T_CHECK(strstr(out, "\"delay_warning\": null") != 0);
    T_CHECK(strstr(out, "\"expiry\": {\"at\": 88181, \"attempt\": 22, \"lifetime\": 86400, "
		   "\"status\": \"returned to sender\"}") != 0);
    T_CHECK(strstr(out, "\"arrival_offset\": 35, \"attempt_duration\": 16") != 0);
    free(out);
}

static void test_seed_text(void)
{
    QMGR_PARAMS p = seed_params();
    int     st;
    char   *out = run_explain(&p, &st, "--arrival-offset=35", "--attempt-duration=16s", 0, 0, 0, 0);

    T_EQ_INT(st, 0);
    T_CHECK(strstr(out, "+29m25s") != 0);
    T_CHECK(strstr(out, "backoff 900s (age 16s raised to minimal_backoff_time)") != 0);
    T_CHECK(strstr(out, "the run at +14m25s was 51s early") != 0);
    T_CHECK(strstr(out, "backoff 3600s (age 7181s capped at maximal_backoff_time)") != 0);
    T_CHECK(strstr(out, "the run at +2h59m25s was 16s early") != 0);
    T_CHECK(strstr(out, "Expires at attempt 22, +24h29m41s: returned to sender") != 0);
    free(out);
}

/* Default: arrival 1 s after a run, attempts of 0 s: first retry at one run delay. */
static void test_defaults_and_null_sender(void)
{
    QMGR_PARAMS p = seed_params();
    int     st;
    char   *out;

    p.bounce_queue_lifetime = 3 * 86400;		/* capped at 1d */
    out = run_explain(&p, &st, "--sender", "<>", "--json", 0, 0, 0);
    T_EQ_INT(st, 0);
    T_CHECK(strstr(out, "\"arrival_offset\": 1, \"attempt_duration\": 0, \"null_sender\": true") != 0);
    T_CHECK(strstr(out, "{\"n\": 2, \"at\": 899,") != 0);
    T_CHECK(strstr(out, "\"lifetime\": 86400, \"status\": \"dropped\"") != 0);
    free(out);
    out = run_explain(&p, &st, "--sender", "", 0, 0, 0, 0);
    T_CHECK(strstr(out, ": dropped, no notice to <>") != 0);
    free(out);
}

/* T2 message A (R = 7, 20s..60s, lifetime 4m, warning 1m; arrival 4 s after a run). */
static void test_t2_warning_json(void)
{
    QMGR_PARAMS p = seed_params();
    int     st;
    char   *out;

    p.queue_run_delay = 7;
    p.minimal_backoff_time = 20;
    p.maximal_backoff_time = 60;
    p.maximal_queue_lifetime = 240;
    p.bounce_queue_lifetime = 120;
    p.delay_warning_time = 60;
    out = run_explain(&p, &st, "--arrival-offset", "4", "--json", 0, 0, 0);
    T_EQ_INT(st, 0);
    T_CHECK(strstr(out, "\"delay_warning\": {\"at\": 108, \"attempt\": 4") != 0);
    T_CHECK(strstr(out, "\"expiry\": {\"at\": 297, \"attempt\": 7,") != 0);
    T_CHECK(strstr(out, "{\"n\": 2, \"at\": 24,") != 0);
    T_CHECK(strstr(out, "{\"n\": 3, \"at\": 52,") != 0);
    free(out);
}

static void test_svg(void)
{
    QMGR_PARAMS p = seed_params();
    int     st;
    char   *out = run_explain(&p, &st, "--arrival-offset", "35", "--attempt-duration", "16",
			      "--svg", "-");

    T_EQ_INT(st, 0);
    T_CHECK(strstr(out, "<svg ") != 0);
    T_EQ_INT(count(out, "class=\"attempt\""), 22);
    T_EQ_INT(count(out, "class=\"expiry\""), 1);
    T_CHECK(count(out, "class=\"backoff\"") == 21);
    T_CHECK(count(out, "class=\"run\"") > 20);
    T_CHECK(xml_balanced(out));
    free(out);

    /* The checker itself rejects what it should. */
    T_CHECK(!xml_balanced("<svg><g></svg></g>"));
    T_CHECK(!xml_balanced("<svg><text>a < b</text></svg>"));
    T_CHECK(xml_balanced("<?xml version=\"1.0\"?>\n<svg><g a=\"1\"/><text>a &lt; b</text></svg>"));
}

static void test_usage_errors(void)
{
    QMGR_PARAMS p = seed_params();
    int     st;
    char   *out;

    out = run_explain(&p, &st, "--frobnicate", 0, 0, 0, 0, 0);
    T_EQ_INT(st, 2);
    free(out);
    out = run_explain(&p, &st, "--attempt-duration", "16x", 0, 0, 0, 0);
    T_EQ_INT(st, 2);
    free(out);
    out = run_explain(&p, &st, "--max-attempts", 0, 0, 0, 0, 0);
    T_EQ_INT(st, 2);
    free(out);
    out = run_explain(&p, &st, "--max-attempts", "3", "--json", 0, 0, 0);
    T_EQ_INT(st, 0);
    T_EQ_INT(count(out, "{\"n\": "), 3);
    T_CHECK(strstr(out, "\"status\": \"not reached\"") != 0);
    free(out);
}

/* One parser for the CLI, the daemon and the offline path (issue 13). */
static void test_whatif_opts(void)
{
    char   *w[] = {"--what-if", "--set", "maximal_backoff_time=10m", "--set=queue_run_delay=60s",
	"--at=1800000000", "--until", "1800003600", "ABC123", "DEF456", "--json"};
    char    err[256];
    EXPLAIN_OPTS a, b;
    BUF     req = BUF_INIT;
    char  **argv;
    int     argc = 0;

    T_EQ_INT(explain_opts_parse(10, w, &a, err, sizeof(err)), 0);
    T_CHECK(a.what_if && a.json);
    T_EQ_INT(a.nsets, 2);
    T_EQ_STR(a.sets[1], "queue_run_delay=60s");
    T_EQ_INT(a.at, 1800000000);
    T_EQ_INT(a.until, 1800003600);
    T_EQ_INT(a.nids, 2);
    T_EQ_STR(a.ids[1], "DEF456");
    /* The request the CLI sends parses back to the same options. */
    explain_opts_request(&a, &req);
    T_EQ_STR(req.data, "explain --what-if --set=maximal_backoff_time=10m --set=queue_run_delay=60s "
	     "--at=1800000000 --until=1800003600 ABC123 DEF456 --json");
    argv = str_split_list(req.data, &argc);
    T_EQ_INT(explain_opts_parse(argc - 1, argv + 1, &b, err, sizeof(err)), 0);
    T_EQ_INT(b.at, a.at);
    T_EQ_INT(b.nsets, 2);
    T_EQ_INT(b.nids, 2);
    str_list_free(argv);
    buf_free(&req);
    {
	static char *bad[][3] = {
	    {"--what-if", 0, 0},			/* no IDs, no --all */
	    {"--what-if", "--all", "ABC123"},		/* both */
	    {"--what-if", "--set=mail_owner=root", "--all"},
	    {"--what-if", "--set=maximal_backoff_time", "--all"},
	    {"--what-if", "--set==1", "--all"},
	    {"--what-if", "--at=tomorrow", "--all"},
	    {"--what-if", "--at=+-5", "--all"},
	    {"--what-if", "--svg=x", "--all"},
	    {"--all", 0, 0},				/* without --what-if */
	    {"--at=now", 0, 0},
	    {"--set=maximal_backoff_time=1h", 0, 0},	/* needs --what-if or --compare */
	    {"--compare", 0, 0},			/* needs --set */
	    {"--compare", "--set=queue_run_delay=1s", "ABC123"},
	};

	for (size_t k = 0; k < ARRAY_LEN(bad); k++) {
	    char   *args[3] = {bad[k][0], bad[k][1], bad[k][2]};
	    int     n = bad[k][2] ? 3 : bad[k][1] ? 2 : 1;

	    err[0] = 0;
	    if (explain_opts_parse(n, args, &a, err, sizeof(err)) != -1)
		T_FAILF("accepted: %s %s %s", args[0], args[1] ? args[1] : "", args[2] ? args[2] : "");
	    T_CHECK(err[0] != 0);
	}
    }
}

static void test_opts_parse(void)
{
    char   *two[] = {"ABC123", "--attempt-duration", "5m", "--json"};
    char   *one[] = {"--attempt-duration=5m", "ABC123", "--json"};
    char   *cfg[] = {"--arrival-offset=1h", "--sender", "<>", "--max-attempts=7", "--svg=-"};
    char    err[256];
    EXPLAIN_OPTS a, b;
    BUF     req = BUF_INIT;

    T_EQ_INT(explain_opts_parse(4, two, &a, err, sizeof(err)), 0);
    T_EQ_INT(explain_opts_parse(3, one, &b, err, sizeof(err)), 0);
    T_EQ_STR(a.qid, "ABC123");
    T_EQ_STR(b.qid, "ABC123");
    T_EQ_INT(a.attempt_duration, 300);		/* 5m is 300 seconds, not 5 */
    T_EQ_INT(b.attempt_duration, 300);
    T_CHECK(a.json && b.json);
    T_EQ_INT(a.arrival_offset, 1);		/* the default */

    /* The request the CLI sends parses back to the same options. */
    explain_opts_request(&a, &req);
    T_EQ_STR(req.data, "explain ABC123 --json --attempt-duration=300");
    buf_free(&req);

    T_EQ_INT(explain_opts_parse(5, cfg, &a, err, sizeof(err)), 0);
    T_CHECK(a.qid == 0);
    T_EQ_INT(a.arrival_offset, 3600);
    T_CHECK(a.null_sender);
    T_EQ_INT(a.max_attempts, 7);
    T_EQ_STR(a.svg, "-");
    T_CHECK(a.flags & EXPLAIN_OPT_CONFIG_ONLY);

    /* Hostile or wrong values: each is refused with a reason. */
    {
	static char *bad[][2] = {
	    {"--attempt-duration=-5", 0}, {"--attempt-duration=+5", 0},
	    {"--attempt-duration= 5", 0}, {"--attempt-duration=", 0},
	    {"--attempt-duration=5mm", 0}, {"--attempt-duration=5x", 0},
	    {"--attempt-duration=99999999999999999999", 0},
	    {"--attempt-duration=9223372036854775807w", 0},
	    {"--attempt-duration=3651d", 0}, {"--max-attempts=0", 0},
	    {"--max-attempts=5m", 0}, {"--max-attempts=100001", 0},
	    {"--json=yes", 0}, {"--jsonx", 0}, {"--svg=", 0},
	    {"--attempt-duration", 0}, {"ABC123", "DEF456"}, {"ABC123", "--sender=<>"},
	    {"ABC123", "--svg=x.svg"}, {"-x", 0}, {"", 0},
	};

	for (size_t k = 0; k < ARRAY_LEN(bad); k++) {
	    char   *argv[2] = {bad[k][0], bad[k][1]};

	    err[0] = 0;
	    T_EQ_INT(explain_opts_parse(bad[k][1] ? 2 : 1, argv, &a, err, sizeof(err)), -1);
	    T_CHECK(err[0] != 0);
	}
    }
    {
	char   *edge[] = {"--attempt-duration=3650d"};

	T_EQ_INT(explain_opts_parse(1, edge, &a, err, sizeof(err)), 0);
	T_EQ_INT(a.attempt_duration, 3650LL * 86400);
    }
}

/*
 * bounce_queue_lifetime = 10d above maximal_queue_lifetime = 5d: a
 * null-sender message's lifetime is 5d everywhere in explain (issue 13:
 * the message view said 10d, the table 5d).
 */
static void test_message_lifetime_capped(void)
{
    QMGR_PARAMS p = seed_params();
    QMSG    m;
    QRCPT   r;
    EXPLAIN_MSG em;
    char   *buf = 0;
    size_t  len = 0;
    FILE   *fp;

    p.maximal_queue_lifetime = 5 * 86400;
    p.bounce_queue_lifetime = 10 * 86400;
    memset(&m, 0, sizeof(m));
    memset(&r, 0, sizeof(r));
    snprintf(m.qid, sizeof(m.qid), "ABC123");
    m.sender = (char *) "";
    m.state = QSTATE_DEFERRED;
    m.create_time = EXPLAIN_T0;
    m.arrival_us = (int64_t) EXPLAIN_T0 * 1000000;
    m.next_eligible = EXPLAIN_T0 + 900;
    m.attempts = 1;
    r.addr = (char *) "rcpt@dest.test";
    r.state = QRCPT_PENDING;
    m.rcpts = &r;
    m.nrcpt = 1;
    memset(&em, 0, sizeof(em));
    em.msg = &m;
    em.now = EXPLAIN_T0 + 60;

    fp = open_memstream(&buf, &len);
    explain_message(fp, &p, &em, 0);
    fclose(fp);
    T_CHECK(strstr(buf, "(5d after creation)") != 0);
    T_CHECK(strstr(buf, "10d") == 0);
    T_CHECK(strstr(buf, "bounce_queue_lifetime  = 432000s (5d; the sender is <>)") != 0);
    free(buf);

    buf = 0;
    fp = open_memstream(&buf, &len);
    explain_message(fp, &p, &em, 1);
    fclose(fp);
    T_CHECK(strstr(buf, "\"bounce_queue_lifetime\": 432000") != 0);
    T_CHECK(strstr(buf, "\"lifetime\": 432000") != 0);
    T_CHECK(strstr(buf, "864000") == 0);
    free(buf);

    /* An ordinary sender: maximal_queue_lifetime. */
    m.sender = (char *) "a@sender.test";
    buf = 0;
    fp = open_memstream(&buf, &len);
    explain_message(fp, &p, &em, 0);
    fclose(fp);
    T_CHECK(strstr(buf, "(5d after creation)") != 0);
    free(buf);
}

int     main(void)
{
    T_RUN(test_duration_words);
    T_RUN(test_seed_json);
    T_RUN(test_seed_text);
    T_RUN(test_defaults_and_null_sender);
    T_RUN(test_t2_warning_json);
    T_RUN(test_svg);
    T_RUN(test_usage_errors);
    T_RUN(test_opts_parse);
    T_RUN(test_whatif_opts);
    T_RUN(test_message_lifetime_capped);
    return (t_done());
}
