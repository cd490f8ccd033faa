/*
 * test_config - relayq.cf parsing, expansion, validation, -o, and
 * `relayq config` output.  Every fixture is written into a fresh mkdtemp
 * directory by the test itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "t.h"
#include "util/util.h"
#include "config/config.h"
#include "config/params.h"

static char tmpdir[64];
static char *captured;			/* stderr of the last load_cf() */

/* write_cf - put text in tmpdir/relayq.cf */

static void write_cf(const char *text)
{
    char    path[128];
    FILE   *fp;

    snprintf(path, sizeof(path), "%s/relayq.cf", tmpdir);
    if ((fp = fopen(path, "w")) == 0) {
	perror(path);
	exit(2);
    }
    fputs(text, fp);
    fclose(fp);
}

/* stderr capture around a call, so warnings can be checked */

static int cap_saved = -1;
static char cap_path[128];

static void cap_begin(void)
{
    int     fd;

    snprintf(cap_path, sizeof(cap_path), "%s/stderr.txt", tmpdir);
    fflush(stderr);
    cap_saved = dup(2);
    fd = open(cap_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
}

static void cap_end(void)
{
    FILE   *fp;
    BUF     b = BUF_INIT;
    char    chunk[512];
    size_t  n;

    fflush(stderr);
    dup2(cap_saved, 2);
    close(cap_saved);
    free(captured);
    buf_puts(&b, "");
    if ((fp = fopen(cap_path, "r")) != 0) {
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
	    buf_append(&b, chunk, n);
	fclose(fp);
    }
    captured = buf_steal(&b);
}

/* load_cf - write text (unless NULL) and load it with overrides */

static CONFIG *load_cf(const char *text, char *const *ov, int nov, char *err, size_t errlen)
{
    CONFIG *cf;

    if (text)
	write_cf(text);
    cap_begin();
    cf = config_load(tmpdir, ov, nov, 0, err, errlen);
    cap_end();
    return (cf);
}

/* Syntax and every expansion form, through config_expand(). */

static const char *expand_file =
"# a comment\n"
"a = 1\n"
"   # an indented comment\n"
"b=2\n"
"empty =\n"
"\n"
"spaced   =    x = y   \n"
"c = $a$b\n"
"d = x$c\n"
"crlf = win\r\n"
"multi = one,\n"
"  two\n"
"  # comment inside a continued line\n"
"\n"
"    three\n"
"ref = ${a?{$b}}\n";

static const struct {
    const char *expr;
    const char *want;
} expand_cases[] = {
    {"$a$b", "12"},
    {"${a}", "1"},
    {"$(a)", "1"},
    {"$$a", "$a"},
    {"$$$a", "$1"},
    {"cost: 5$", "cost: 5$"},
    {"$undefined", ""},
    {"<${undefined}>", "<>"},
    {"${a?yes}", "yes"},
    {"${empty?yes}", ""},
    {"${undefined?yes}", ""},
    {"${a:no}", ""},
    {"${empty:no}", "no"},
    {"${undefined:no}", "no"},
    {"$(empty:no)", "no"},
    {"${a?x:y}", "x:y"},
    {"${a?{x y}}", "x y"},
    {"${a:{x}}", ""},
    {"${empty:{x}}", "x"},
    {"${a?{t}:{f}}", "t"},
    {"${empty?{t}:{f}}", "f"},
    {"${undefined?{t}:{f}}", "f"},
    {"${a?{t} : {f}}", "t"},
    {"${a?${b}}", "2"},
    {"${a?{${empty:{in}}}}", "in"},
    {"${empty:${a?{$b$b}}}", "22"},
    {"$d", "x12"},
    {"$ref", "2"},
    {"$spaced", "x = y"},
    {"[$crlf]", "[win]"},
    {"$a_b", ""},			/* the name is a_b, undefined */
    {"${a}_b", "1_b"},
};

static void test_expand_forms(void)
{
    char    err[512];
    CONFIG *cf = load_cf(expand_file, 0, 0, err, sizeof(err));

    T_CHECK(cf != 0);
    if (cf == 0) {
	T_FAILF("load: %s", err);
	return;
    }
    for (size_t i = 0; i < ARRAY_LEN(expand_cases); i++) {
	char   *got = config_expand(cf, expand_cases[i].expr);

	if (strcmp(got, expand_cases[i].want) != 0)
	    T_FAILF("expand \"%s\" = \"%s\", expected \"%s\"",
		    expand_cases[i].expr, got, expand_cases[i].want);
	free(got);
    }
    /* Continuation lines (with a comment and a blank line in between). */
    char   *multi = config_expand(cf, "$multi");
    char  **v;
    int     n;

    v = str_split_list(multi, &n);
    T_EQ_INT(n, 3);
    if (n == 3) {
	T_EQ_STR(v[0], "one");
	T_EQ_STR(v[1], "two");
	T_EQ_STR(v[2], "three");
    }
    str_list_free(v);
    free(multi);
    config_free(cf);
}

/* Known parameters expand through config_str(); myhostname drives mydomain. */

static void test_known_expansion(void)
{
    char    err[512];
    CONFIG *cf;

    cf = load_cf("myhostname = mx.example.test\n", 0, 0, err, sizeof(err));
    T_CHECK(cf != 0);
    if (cf) {
	T_EQ_STR(config_str(cf, "mydomain"), "example.test");
	T_EQ_STR(config_str(cf, "myorigin"), "mx.example.test");
	T_EQ_STR(config_str(cf, "smtpd_banner"), "mx.example.test ESMTP relayq");
	T_EQ_STR(config_str(cf, "smtp_helo_name"), "mx.example.test");
	config_free(cf);
    }
    cf = load_cf("myhostname = mx.$mydomain\nmydomain = d.test\n", 0, 0, err, sizeof(err));
    T_CHECK(cf != 0);
    if (cf) {
	T_EQ_STR(config_str(cf, "myhostname"), "mx.d.test");
	config_free(cf);
    }
    /* mydomain unset: its default must not loop back through myhostname. */
    cf = load_cf("myhostname = mx.$mydomain\n", 0, 0, err, sizeof(err));
    T_CHECK(cf != 0);
    if (cf) {
	T_CHECK(strncmp(config_str(cf, "myhostname"), "mx.", 3) == 0);
	config_free(cf);
    }
    cf = load_cf("myhostname = nodots\n", 0, 0, err, sizeof(err));
    T_CHECK(cf != 0);
    if (cf) {
	T_EQ_STR(config_str(cf, "mydomain"), "localdomain");
	config_free(cf);
    }
    /* The system default is fully qualified. */
    cf = load_cf("", 0, 0, err, sizeof(err));
    T_CHECK(cf != 0);
    if (cf) {
	T_CHECK(strchr(config_str(cf, "myhostname"), '.') != 0);
	T_EQ_STR(config_str(cf, "smtpd_forbid_bare_newline_exclusions"), "127.0.0.0/8 [::1]/128");
	config_free(cf);
    }
}

/* Time values: units, and the default unit of a bare number. */

static const struct {
    const char *line;
    const char *name;
    long long want;
} time_cases[] = {
    {"maximal_queue_lifetime = 5", "maximal_queue_lifetime", 5 * 86400},
    {"bounce_queue_lifetime = 1", "bounce_queue_lifetime", 86400},
    {"queue_run_delay = 300", "queue_run_delay", 300},
    {"delay_warning_time = 4", "delay_warning_time", 4 * 3600},
    {"delay_warning_time = 0", "delay_warning_time", 0},
    {"maximal_queue_lifetime = 3m", "maximal_queue_lifetime", 180},
    {"maximal_queue_lifetime = 120s", "maximal_queue_lifetime", 120},
    {"queue_run_delay = 2h", "queue_run_delay", 7200},
    {"queue_run_delay = 1d", "queue_run_delay", 86400},
    {"maximal_backoff_time = 2w", "maximal_backoff_time", 2 * 604800},
    {"smtp_connect_timeout = 10", "smtp_connect_timeout", 10},
    {"", "maximal_backoff_time", 4000},
    {"", "minimal_backoff_time", 300},
    {"", "maximal_queue_lifetime", 432000},
    {"", "delay_warning_time", 0},
    {"", "smtp_data_done_timeout", 600},
    {"", "transport_retry_time", 60},
};

static void test_time_units(void)
{
    char    err[512];
    char    text[256];

    for (size_t i = 0; i < ARRAY_LEN(time_cases); i++) {
	snprintf(text, sizeof(text), "%s\n", time_cases[i].line);
	CONFIG *cf = load_cf(text, 0, 0, err, sizeof(err));

	if (cf == 0) {
	    T_FAILF("\"%s\": %s", time_cases[i].line, err);
	    continue;
	}
	if (config_time(cf, time_cases[i].name) != time_cases[i].want)
	    T_FAILF("\"%s\": %s = %lld, expected %lld", time_cases[i].line, time_cases[i].name,
		    config_time(cf, time_cases[i].name), time_cases[i].want);
	config_free(cf);
    }
}

/* Other types' defaults and parsed values. */

static void test_types(void)
{
    char    err[512];
    CONFIG *cf;
    char  **v;
    int     n;

    cf = load_cf("", 0, 0, err, sizeof(err));
    T_CHECK(cf != 0);
    if (cf == 0)
	return;
    T_EQ_INT(config_int(cf, "qmgr_message_active_limit"), 20000);
    T_EQ_INT(config_int(cf, "initial_destination_concurrency"), 5);
    T_EQ_INT(config_int(cf, "default_destination_recipient_limit"), 50);
    T_EQ_INT(config_size(cf, "message_size_limit"), 10240000);
    T_EQ_INT(config_size(cf, "bounce_size_limit"), 50000);
    T_EQ_INT(config_bool(cf, "smtputf8_enable"), 1);
    T_EQ_INT(config_bool(cf, "always_add_missing_headers"), 0);
    T_EQ_STR(config_str(cf, "smtpd_forbid_bare_newline"), "normalize");
    T_EQ_STR(config_str(cf, "syslog_name"), "relayq");
    T_EQ_STR(config_str(cf, "relayhost"), "");
    v = config_list(cf, "smtpd_relay_restrictions", &n);
    T_EQ_INT(n, 2);
    if (n == 2) {
	T_EQ_STR(v[0], "permit_mynetworks");
	T_EQ_STR(v[1], "defer_unauth_destination");
    }
    str_list_free(v);
    v = config_list(cf, "relay_domains", &n);
    T_EQ_INT(n, 0);
    str_list_free(v);
    T_EQ_INT(config_warnings(cf), 0);
    T_CHECK(!config_is_set(cf, "queue_run_delay"));
    config_free(cf);

    cf = load_cf("smtputf8_enable = NO\nmessage_size_limit = 0\n"
		 "smtp_tls_security_level = may\nsmtpd_forbid_bare_newline = reject\n",
		 0, 0, err, sizeof(err));
    T_CHECK(cf != 0);
    if (cf) {
	T_EQ_INT(config_bool(cf, "smtputf8_enable"), 0);
	T_EQ_INT(config_size(cf, "message_size_limit"), 0);
	T_EQ_STR(config_str(cf, "smtp_tls_security_level"), "may");
	T_CHECK(config_is_set(cf, "message_size_limit"));
	config_free(cf);
    }
}

/* Lists keep {...} groups whole. */

static void test_lists(void)
{
    char    err[512];
    CONFIG *cf;
    char  **v;
    int     n;

    cf = load_cf("transport_maps = inline:{ a.test=smtp:[h]:25, b.test=x },texthash:/etc/t\n"
		 "smtpd_listen = 127.0.0.1:25 [::1]:25,\n   127.0.0.2:2525\n",
		 0, 0, err, sizeof(err));
    T_CHECK(cf != 0);
    if (cf == 0)
	return;
    v = config_list(cf, "transport_maps", &n);
    T_EQ_INT(n, 2);
    if (n == 2) {
	T_EQ_STR(v[0], "inline:{ a.test=smtp:[h]:25, b.test=x }");
	T_EQ_STR(v[1], "texthash:/etc/t");
    }
    str_list_free(v);
    v = config_list(cf, "smtpd_listen", &n);
    T_EQ_INT(n, 3);
    if (n == 3)
	T_EQ_STR(v[2], "127.0.0.2:2525");
    str_list_free(v);
    config_free(cf);
}

/* Errors: one line naming file, line and parameter. */

static const struct {
    const char *text;
    const char *ov;			/* one -o, or NULL */
    const char *want[3];		/* substrings of err; "FILE" = the path */
} error_cases[] = {
    {"# x\n\nqueue_run_delay = 5x\n", 0,
     {"FILE, line 3: parameter queue_run_delay: bad time value \"5x\": expected a number "
      "with an optional unit s (seconds), m, h, d or w"}},
    {"queue_run_delay = 1h30m\n", 0, {"FILE, line 1: parameter queue_run_delay: bad time value"}},
    {"queue_run_delay = -5\n", 0, {"FILE, line 1: parameter queue_run_delay: bad time value"}},
    {"queue_run_delay = 0\n", 0, {"line 1: parameter queue_run_delay:", "minimum is 1s"}},
    {"maximal_queue_lifetime =\n", 0, {"line 1: parameter maximal_queue_lifetime: bad time value \"\""}},
    {"a = 1\nmessage_size_limit = 10M\n", 0,
     {"FILE, line 2: parameter message_size_limit: bad size value \"10M\""}},
    {"smtpd_recipient_limit = many\n", 0,
     {"line 1: parameter smtpd_recipient_limit: bad integer value \"many\""}},
    {"smtpd_recipient_limit = -1\n", 0, {"parameter smtpd_recipient_limit: bad integer value \"-1\""}},
    {"delay_logging_resolution_limit = 7\n", 0,
     {"parameter delay_logging_resolution_limit:", "maximum is 6"}},
    {"smtputf8_enable = maybe\n", 0,
     {"line 1: parameter smtputf8_enable: bad boolean value \"maybe\": expected yes or no"}},
    {"smtpd_forbid_bare_newline = sometimes\n", 0,
     {"parameter smtpd_forbid_bare_newline: bad value \"sometimes\"", "normalize"}},
    {"smtp_tls_security_level = danger\n", 0, {"parameter smtp_tls_security_level: bad value \"danger\""}},
    {"smtp_dns_support_level = disabled\n", 0, {"parameter smtp_dns_support_level: bad value \"disabled\""}},
    /* Validation is of the expanded value. */
    {"t = 5x\nqueue_run_delay = $t\n", 0,
     {"FILE, line 2: parameter queue_run_delay: bad time value \"5x\""}},
    /* Loops. */
    {"a = $b\nb = $a\n", 0, {"FILE, line 1: parameter a: $name expansion loop: a -> b -> a"}},
    {"x = 1\nmyorigin = $myorigin\n", 0, {"line 2: parameter myorigin:", "loop: myorigin -> myorigin"}},
    {"a = ${b?{x}}\nb = $(c)\nc = ${a:y}\n", 0, {"line 1: parameter a:", "loop: a -> b -> c -> a"}},
    {"relayhost = $x\nx = ${relayhost}\n", 0, {"line 1: parameter relayhost:", "loop"}},
    /* Syntax. */
    {"queue_run_delay 300s\n", 0, {"FILE, line 1: missing '='"}},
    {"= 300s\n", 0, {"FILE, line 1: missing parameter name"}},
    {"bad-name = 1\n", 0, {"FILE, line 1: bad parameter name"}},
    {"  queue_run_delay = 300s\n", 0, {"FILE, line 1:", "white space"}},
    {"relayhost = ${foo\n", 0, {"FILE, line 1: parameter relayhost:", "missing '}'"}},
    {"relayhost = ${foo?{a}:b}\n", 0, {"FILE, line 1: parameter relayhost:"}},
    {"relayhost = ${foo!x}\n", 0, {"FILE, line 1: parameter relayhost:"}},
    /* Overrides. */
    {"", "queue_run_delay=abc", {"-o queue_run_delay=abc: parameter queue_run_delay: bad time value \"abc\""}},
    {"", "queue_run_delay", {"-o queue_run_delay: missing '='"}},
};

static void test_errors(void)
{
    char    err[512];
    char    path[128];

    snprintf(path, sizeof(path), "%s/relayq.cf", tmpdir);
    for (size_t i = 0; i < ARRAY_LEN(error_cases); i++) {
	char   *ov[1] = {UTIL_UNCONST(error_cases[i].ov)};
	CONFIG *cf = load_cf(error_cases[i].text, ov, ov[0] ? 1 : 0, err, sizeof(err));

	if (cf != 0) {
	    T_FAILF("case %zu: \"%s\" loaded", i, error_cases[i].text);
	    config_free(cf);
	    continue;
	}
	if (strchr(err, '\n') != 0 || strstr(err, "fatal") != 0)
	    T_FAILF("case %zu: not one bare line: %s", i, err);
	for (int k = 0; k < 3 && error_cases[i].want[k]; k++) {
	    const char *w = error_cases[i].want[k];
	    char    want[512];

	    if (strncmp(w, "FILE", 4) == 0)
		snprintf(want, sizeof(want), "%s%s", path, w + 4);
	    else
		snprintf(want, sizeof(want), "%s", w);
	    if (strstr(err, want) == 0)
		T_FAILF("case %zu: error \"%s\" lacks \"%s\"", i, err, want);
	}
    }
}

/* Missing and unreadable files. */

static void test_file_errors(void)
{
    char    err[512];
    char    path[128];
    char    want[256];
    CONFIG *cf;

    snprintf(path, sizeof(path), "%s/relayq.cf", tmpdir);
    unlink(path);
    cf = config_load(tmpdir, 0, 0, 0, err, sizeof(err));
    T_CHECK(cf == 0);
    snprintf(want, sizeof(want), "open %s: %s", path, strerror(ENOENT));
    T_EQ_STR(err, want);

    cf = config_load(tmpdir, 0, 0, 1, err, sizeof(err));
    T_CHECK(cf != 0);
    if (cf) {
	T_EQ_INT(config_time(cf, "queue_run_delay"), 300);
	T_EQ_STR(config_file(cf), path);
	T_EQ_STR(config_dir(cf), tmpdir);
	config_free(cf);
    }

    /* A directory in its place cannot be read, even by root. */
    T_CHECK(mkdir(path, 0700) == 0);
    cf = config_load(tmpdir, 0, 0, 1, err, sizeof(err));
    T_CHECK(cf == 0);
    T_CHECK(strstr(err, path) != 0);
    T_CHECK(strstr(err, strerror(EISDIR)) != 0);
    rmdir(path);
}

/*
 * Names unknown to relayq and to Postfix warn and are counted, unless they
 * are used in a $name expansion (the administrator's own variables, as
 * Postfix's "unused parameter" check); they still expand.  Postfix's own
 * parameter names are not warned about.
 */

static void test_unknown(void)
{
    char    err[512];
    char    want[512];
    char   *ov[] = {"bar=1", "queue_run_delay=20s"};
    CONFIG *cf;

    cf = load_cf("# 1\n#2\nqueue_run_delay = 10s\n\n\n\nfoo = 7s\n"
		 "minimal_backoff_time = $foo\nbiff = no\nmaximal_backof_time = 1h\n", ov, 2, err, sizeof(err));
    T_CHECK(cf != 0);
    if (cf == 0)
	return;
    snprintf(want, sizeof(want),
	     "relayq: warning: %s/relayq.cf, line 10: unknown parameter \"maximal_backof_time\""
	     " (did you mean \"maximal_backoff_time\"?)\n"
	     "relayq: warning: -o bar=1: unknown parameter\n", tmpdir);
    T_EQ_STR(captured, want);
    T_EQ_INT(config_warnings(cf), 2);
    T_EQ_INT(config_time(cf, "minimal_backoff_time"), 7);
    T_CHECK(!config_known("foo"));
    T_CHECK(config_known("queue_run_delay"));
    config_free(cf);
}

/* param_index() (hashed): every name at its own row, near misses unknown. */

static void test_param_index(void)
{
    char    name[128];

    for (int i = 0; i < param_count; i++) {
	int     first = i;

	/* A duplicated name (none today) answers its first row. */
	for (int j = 0; j < i; j++)
	    if (strcmp(param_table[j].name, param_table[i].name) == 0) {
		first = j;
		break;
	    }
	if (param_index(param_table[i].name) != first)
	    T_FAILF("param_index(\"%s\") == %d, expected %d", param_table[i].name,
		    param_index(param_table[i].name), first);
	snprintf(name, sizeof(name), "%sx", param_table[i].name);
	T_EQ_INT(param_index(name), -1);
	snprintf(name, sizeof(name), "%.*s", (int) strlen(param_table[i].name) - 1, param_table[i].name);
	T_CHECK(param_index(name) == -1 || strcmp(param_table[param_index(name)].name, name) == 0);
    }
    T_EQ_INT(param_index(""), -1);
    T_EQ_INT(param_index("MYHOSTNAME"), -1);
    T_EQ_STR(param_table[param_index("myhostname")].name, "myhostname");
}

/* -o applies after the file, in order, trimmed. */

static void test_overrides(void)
{
    char    err[512];
    char   *ov[] = {"queue_run_delay=200", " relayhost =  [h.test]:2525 ", "queue_run_delay=1m",
    "maillog_file=/dev/stdout"};
    CONFIG *cf;

    cf = load_cf("queue_run_delay = 100\nrelayhost = old\n", ov, 4, err, sizeof(err));
    T_CHECK(cf != 0);
    if (cf == 0)
	return;
    T_EQ_INT(config_time(cf, "queue_run_delay"), 60);
    T_EQ_STR(config_str(cf, "relayhost"), "[h.test]:2525");
    T_EQ_STR(config_str(cf, "maillog_file"), "/dev/stdout");
    T_CHECK(config_is_set(cf, "maillog_file"));
    T_EQ_INT(config_warnings(cf), 0);
    config_free(cf);

    /* An override fixes a bad file value: it is the effective one. */
    char   *fix[] = {"queue_run_delay=5s"};

    cf = load_cf("queue_run_delay = 5x\n", fix, 1, err, sizeof(err));
    T_CHECK(cf != 0);
    if (cf) {
	T_EQ_INT(config_time(cf, "queue_run_delay"), 5);
	config_free(cf);
    }
}

/* show - config_show() into a string */

static char *show(const CONFIG *cf, int flags, char *const *names, int nnames, int *ret)
{
    char   *text = 0;
    size_t  len = 0;
    FILE   *fp = open_memstream(&text, &len);

    cap_begin();
    *ret = config_show(cf, fp, flags, names, nnames);
    cap_end();
    fclose(fp);
    return (text);
}

/* Every parameter the other modules rely on, with its default (postconf -d). */

static const char *default_lines[] = {
    "mail_name = relayq\n", "mail_version = 0.1\n",
    "smtpd_banner = $myhostname ESMTP $mail_name\n", "myorigin = $myhostname\n",
    "inet_interfaces = all\n", "compatibility_level = 3.6\n",
    "smtpd_relay_restrictions = permit_mynetworks, defer_unauth_destination\n",
    "smtpd_recipient_restrictions =\n", "relay_domains =\n", "mydestination =\n",
    "mynetworks = 127.0.0.0/8 [::1]/128\n", "transport_maps =\n", "relayhost =\n",
    "smtp_fallback_relay =\n", "dns_servers =\n", "smtpd_listen = 127.0.0.1:2525\n",
    "queue_directory = /var/spool/relayq\n", "mail_owner = relayq\n",
    "setgid_group = relayqdrop\n", "queue_run_delay = 300s\n",
    "minimal_backoff_time = 300s\n", "maximal_backoff_time = 4000s\n",
    "maximal_queue_lifetime = 5d\n", "bounce_queue_lifetime = 5d\n",
    "delay_warning_time = 0h\n", "qmgr_message_active_limit = 20000\n",
    "qmgr_message_recipient_limit = 20000\n", "initial_destination_concurrency = 5\n",
    "default_destination_concurrency_limit = 20\n",
    "default_destination_recipient_limit = 50\n",
    "default_destination_concurrency_failed_cohort_limit = 1\n",
    "transport_retry_time = 60s\n", "message_size_limit = 10240000\n",
    "header_size_limit = 102400\n", "line_length_limit = 2048\n",
    "smtpd_recipient_limit = 1000\n", "smtpd_client_connection_count_limit = 50\n",
    "relayq_smtpd_session_limit = 1000\n", "smtpd_timeout = 300s\n",
    "smtpd_forbid_bare_newline = normalize\n",
    "smtpd_forbid_bare_newline_exclusions = $mynetworks\n",
    "local_header_rewrite_clients = permit_inet_interfaces\n",
    "always_add_missing_headers = no\n", "bounce_size_limit = 50000\n",
    "notify_classes = resource, software\n", "smtp_connect_timeout = 30s\n",
    "smtp_helo_timeout = 300s\n", "smtp_mail_timeout = 300s\n", "smtp_rcpt_timeout = 300s\n",
    "smtp_data_init_timeout = 120s\n", "smtp_data_xfer_timeout = 180s\n",
    "smtp_data_done_timeout = 600s\n", "smtp_quit_timeout = 300s\n",
    "smtp_mx_address_limit = 5\n", "smtp_mx_session_limit = 2\n",
    "smtp_helo_name = $myhostname\n", "smtp_tls_security_level =\n",
    "smtpd_tls_security_level =\n", "smtpd_tls_cert_file =\n", "smtpd_tls_key_file =\n",
    "smtp_tls_CAfile =\n", "smtputf8_enable = yes\n", "maillog_file =\n",
    "syslog_name = relayq\n", "metrics_listen =\n", "smtpd_delay_reject = yes\n",
    "disable_vrfy_command = no\n", "smtpd_helo_required = no\n",
    "relayq_mx_random_seed = 0\n", "delay_logging_resolution_limit = 2\n",
    "enable_long_queue_ids = no\n", "default_destination_rate_delay = 0s\n",
};

static void test_show(void)
{
    char    err[512];
    int     ret;
    char   *out;
    CONFIG *cf;
    char   *ov[] = {"smtpd_timeout=60s"};

    cf = load_cf("queue_run_delay = 10s\nmyorigin = $mydomain\nrelayhost =\nfoo = 1\n",
		 ov, 1, err, sizeof(err));
    T_CHECK(cf != 0);
    if (cf == 0)
	return;

    /* -n: what the file and -o set, sorted, unexpanded; "name =" when empty. */
    out = show(cf, CONFIG_SHOW_NONDEFAULT, 0, 0, &ret);
    T_EQ_INT(ret, 0);
    T_EQ_STR(out, "myorigin = $mydomain\nqueue_run_delay = 10s\nrelayhost =\nsmtpd_timeout = 60s\n");
    free(out);

    /* -d: built-in defaults whatever the file says. */
    out = show(cf, CONFIG_SHOW_DEFAULTS, 0, 0, &ret);
    T_EQ_INT(ret, 0);
    for (size_t i = 0; i < ARRAY_LEN(default_lines); i++)
	if (strstr(out, default_lines[i]) == 0)
	    T_FAILF("postconf -d lacks \"%.*s\"", (int) strlen(default_lines[i]) - 1, default_lines[i]);
    T_CHECK(strstr(out, "\nmyhostname = ") != 0);
    free(out);

    /* Default mode: effective values, every parameter, sorted by name. */
    out = show(cf, 0, 0, 0, &ret);
    T_CHECK(strstr(out, "\nqueue_run_delay = 10s\n") != 0);
    T_CHECK(strstr(out, "\nmaximal_backoff_time = 4000s\n") != 0);
    T_CHECK(strstr(out, "\nsmtpd_timeout = 60s\n") != 0);
    T_CHECK(strstr(out, "\nfoo = ") == 0);
    {
	char   *prev = 0;
	int     lines = 0;

	for (char *line = strtok(out, "\n"); line; line = strtok(0, "\n")) {
	    if (prev && strcmp(prev, line) >= 0)
		T_FAILF("not sorted: \"%s\" before \"%s\"", prev, line);
	    prev = line;
	    lines++;
	}
	T_CHECK(lines >= (int) ARRAY_LEN(default_lines));
    }
    free(out);

    /* Names restrict, in the order given; an unknown one warns and fails. */
    char   *names[] = {"queue_run_delay", "nosuch", "maximal_backoff_time"};

    out = show(cf, 0, names, 3, &ret);
    T_EQ_INT(ret, 1);
    T_EQ_STR(out, "queue_run_delay = 10s\nmaximal_backoff_time = 4000s\n");
    T_EQ_STR(captured, "relayq: warning: unknown parameter: nosuch\n");
    free(out);
    out = show(cf, CONFIG_SHOW_NONDEFAULT, names, 1, &ret);
    T_EQ_INT(ret, 0);
    T_EQ_STR(out, "queue_run_delay = 10s\n");
    free(out);
    out = show(cf, CONFIG_SHOW_NONDEFAULT, names + 2, 1, &ret);
    T_EQ_STR(out, "");
    free(out);
    config_free(cf);

    /* Without a configuration: defaults. */
    out = show(0, 0, names, 1, &ret);
    T_EQ_STR(out, "queue_run_delay = 300s\n");
    free(out);
}

/* The man page names every parameter. */

static void test_man(void)
{
    char   *text = 0;
    size_t  len = 0;
    FILE   *fp = open_memstream(&text, &len);

    config_write_man(fp);
    fclose(fp);
    T_CHECK(strstr(text, ".TH RELAYQ.CF 5") != 0);
    for (size_t i = 0; i < ARRAY_LEN(default_lines); i++) {
	char    want[128];

	snprintf(want, sizeof(want), ".B %.*s\n",
		 (int) strcspn(default_lines[i], " "), default_lines[i]);
	if (strstr(text, want) == 0)
	    T_FAILF("man page lacks %s", want);
    }
    T_CHECK(strstr(text, ".B smtpd_listen\n") != 0);
    T_CHECK(strstr(text, "relayq only") != 0);

    /* The committed page must be the one the table generates (run from the top). */
    FILE   *committed = fopen("man/relayq.cf.5", "r");

    if (committed != 0) {
	BUF     b = BUF_INIT;
	char    chunk[4096];
	size_t  n;

	buf_puts(&b, "");
	while ((n = fread(chunk, 1, sizeof(chunk), committed)) > 0)
	    buf_append(&b, chunk, n);
	fclose(committed);
	if (strcmp(b.data, text) != 0)
	    T_FAILF("man/relayq.cf.5 is stale: regenerate it with make man");
	buf_free(&b);
    }
    free(text);
}

int     main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_config.XXXXXX");
    if (mkdtemp(tmpdir) == 0) {
	perror("mkdtemp");
	return (2);
    }
    T_RUN(test_expand_forms);
    T_RUN(test_known_expansion);
    T_RUN(test_time_units);
    T_RUN(test_types);
    T_RUN(test_lists);
    T_RUN(test_errors);
    T_RUN(test_file_errors);
    T_RUN(test_unknown);
    T_RUN(test_param_index);
    T_RUN(test_overrides);
    T_RUN(test_show);
    T_RUN(test_man);

    char    path[160];

    snprintf(path, sizeof(path), "%s/relayq.cf", tmpdir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/stderr.txt", tmpdir);
    unlink(path);
    rmdir(tmpdir);
    free(captured);
    return t_done();
}
