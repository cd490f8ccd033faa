/*
 * test_table - the table layer: inline, texthash, static, unionmap,
 * pipemap; parameter lists; Postfix's domain and address search orders;
 * asynchronous lookups on local tables; reload keeping the last good
 * contents; hostile input (malformed, duplicate, missing, unreadable).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "t.h"
#include "util/util.h"
#include "log/log.h"
#include "table/table.h"
#include "config/config.h"
#include "smtp/smtp.h"
#include "smtpd/smtpd.h"
#include "smtpd/smtpd_proto.h"

static char tmpdir[256];

static char *write_file(const char *name, const char *text)
{
    char   *path = xasprintf("%s/%s", tmpdir, name);
    FILE   *fp = fopen(path, "w");

    fputs(text, fp);
    fclose(fp);
    return (path);
}

/* Look key up in spec; returns the value or "(notfound)" / "(error)". */
static const char *look(const char *spec, const char *key)
{
    static char out[600];
    char    err[512];
    const char *v;
    TABLE  *t = table_open(spec, TABLE_FLAG_FOLD, NULL, err, sizeof(err));
    int     rc;

    if (t == NULL) {
	snprintf(out, sizeof(out), "(open: %s)", err);
	return (out);
    }
    rc = table_lookup(t, key, &v, err, sizeof(err));
    snprintf(out, sizeof(out), "%s", rc == TABLE_FOUND ? v : rc == TABLE_NOTFOUND ?
	     "(notfound)" : "(error)");
    table_close(t);
    return (out);
}

static void test_inline(void)
{
    T_EQ_STR(look("inline:{ a=1, B=2 , { c = x y, z } }", "a"), "1");
    T_EQ_STR(look("inline:{ a=1, B=2 , { c = x y, z } }", "b"), "2");
    T_EQ_STR(look("inline:{ a=1, B=2 , { c = x y, z } }", "C"), "x y, z");
    T_EQ_STR(look("inline:{ a=1 }", "nope"), "(notfound)");
    T_CHECK(strstr(look("inline:{ a }", "a"), "missing '='") != NULL);
    T_CHECK(strstr(look("inline:a=b", "a"), "expected inline:{") != NULL);
    T_CHECK(strstr(look("inline:{ {a=b }", "a"), "missing '}'") != NULL);
    T_CHECK(strstr(look("inline:{ a=1, A=2 }", "a"), "duplicate") != NULL);
    T_CHECK(strstr(look("nosuch:foo", "a"), "unsupported table type \"nosuch\"") != NULL);
    T_CHECK(strstr(look("foo", "a"), "expected type:name") != NULL);
}

static void test_static(void)
{
    T_EQ_STR(look("static:relay:[mx.test]", "anything"), "relay:[mx.test]");
    T_EQ_STR(look("static:{ text with space }", "x"), "text with space");
}

static void test_texthash(void)
{
    char   *p = write_file("th", "# comment\n"
			   "Example.COM   smtp:[a.test]\n"
			   "\n"
			   "multi  first\n"
			   "  # comment inside\n"
			   "   second\n"
			   "\"quoted key\" v\n"
			   "key\\ esc w\n"
			   "alias: value\n");
    char    spec[512];

    snprintf(spec, sizeof(spec), "texthash:%s", p);
    T_EQ_STR(look(spec, "example.com"), "smtp:[a.test]");
    T_EQ_STR(look(spec, "EXAMPLE.com"), "smtp:[a.test]");
    T_EQ_STR(look(spec, "multi"), "first   second");
    T_EQ_STR(look(spec, "\"quoted key\""), "v");
    T_EQ_STR(look(spec, "key\\ esc"), "w");
    T_EQ_STR(look(spec, "alias:"), "value");
    T_EQ_STR(look(spec, "other"), "(notfound)");
    free(p);
}

static void test_texthash_hostile(void)
{
    char    spec[512], err[512];
    char   *p;
    TABLE  *t;

    /* Missing file. */
    snprintf(spec, sizeof(spec), "texthash:%s/missing", tmpdir);
    t = table_open(spec, TABLE_FLAG_FOLD, "transport_maps", err, sizeof(err));
    T_CHECK(t == NULL);
    T_CHECK(strstr(err, "missing: No such file or directory") != NULL);

    /* Key without value: names file and line. */
    p = write_file("bad1", "a b\n\nlonely\n");
    snprintf(spec, sizeof(spec), "texthash:%s", p);
    T_CHECK(table_open(spec, TABLE_FLAG_FOLD, NULL, err, sizeof(err)) == NULL);
    T_CHECK(strstr(err, "bad1, line 3: expected format: key whitespace value") != NULL);
    free(p);

    /* A logical line starting with white space. */
    p = write_file("bad2", "  a b\n");
    snprintf(spec, sizeof(spec), "texthash:%s", p);
    T_CHECK(table_open(spec, TABLE_FLAG_FOLD, NULL, err, sizeof(err)) == NULL);
    T_CHECK(strstr(err, "logical line must not start with whitespace") != NULL);
    free(p);

    /* Duplicate key (after folding). */
    p = write_file("bad3", "a 1\nA 2\n");
    snprintf(spec, sizeof(spec), "texthash:%s", p);
    T_CHECK(table_open(spec, TABLE_FLAG_FOLD, NULL, err, sizeof(err)) == NULL);
    T_CHECK(strstr(err, "bad3, line 2: duplicate entry: \"a\"") != NULL);
    free(p);

    /* Unbalanced quote. */
    p = write_file("bad4", "\"a b\n");
    snprintf(spec, sizeof(spec), "texthash:%s", p);
    T_CHECK(table_open(spec, TABLE_FLAG_FOLD, NULL, err, sizeof(err)) == NULL);
    T_CHECK(strstr(err, "line 1: unbalanced '\"'") != NULL);
    free(p);

    /* Without folding, case matters. */
    p = write_file("case", "MiXed v\n");
    snprintf(spec, sizeof(spec), "texthash:%s", p);
    t = table_open(spec, 0, NULL, err, sizeof(err));
    {
	const char *v;

	T_EQ_INT(table_lookup(t, "mixed", &v, err, sizeof(err)), TABLE_NOTFOUND);
	T_EQ_INT(table_lookup(t, "MiXed", &v, err, sizeof(err)), TABLE_FOUND);
    }
    table_close(t);
    free(p);
}

static void test_shared_and_reload(void)
{
    char   *p = write_file("reload", "a 1\n");
    char    spec[512], err[512];
    const char *v;
    TABLE  *t1, *t2;
    struct timespec ts[2];

    snprintf(spec, sizeof(spec), "texthash:%s", p);
    t1 = table_open(spec, TABLE_FLAG_FOLD, "transport_maps", err, sizeof(err));
    t2 = table_open(spec, TABLE_FLAG_FOLD, "relay_domains", err, sizeof(err));
    T_CHECK(t1 != NULL && t1 == t2);

    /* A change is read at reload. */
    free(write_file("reload", "a 2\nb 3\n"));
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec += 5;
    ts[1] = ts[0];
    utimensat(AT_FDCWD, p, ts, 0);
    T_EQ_INT(table_reload_all("master"), 0);
    T_EQ_INT(table_lookup(t1, "a", &v, err, sizeof(err)), TABLE_FOUND);
    T_EQ_STR(v, "2");

    /* A bad file keeps the last good contents, with a warning. */
    free(write_file("reload", "a 4\nbroken\n"));
    ts[0].tv_sec += 5;
    ts[1] = ts[0];
    utimensat(AT_FDCWD, p, ts, 0);
    T_EQ_INT(table_reload_all("master"), 1);
    T_EQ_INT(table_lookup(t1, "a", &v, err, sizeof(err)), TABLE_FOUND);
    T_EQ_STR(v, "2");
    T_EQ_INT(table_lookup(t1, "b", &v, err, sizeof(err)), TABLE_FOUND);
    {
	char    logpath[300], line[2048];
	FILE   *fp;
	int     seen = 0;

	snprintf(logpath, sizeof(logpath), "%s/log", tmpdir);
	fp = fopen(logpath, "r");
	while (fp && fgets(line, sizeof(line), fp))
	    if (strstr(line, "warning: transport_maps: ") && strstr(line, "reload, line 2: "
		"expected format: key whitespace value; keeping the last good contents"))
		seen++;
	if (fp)
	    fclose(fp);
	T_EQ_INT(seen, 1);
    }
    /* Nothing changed: nothing re-read, no new warning. */
    T_EQ_INT(table_reload_all("master"), 0);
    table_close(t2);
    table_close(t1);
    free(p);
}

static TABLE_LIST *list(const char *param, const char *value)
{
    char    err[512];
    TABLE_LIST *l = table_list_open(param, value, TABLE_FLAG_FOLD, err, sizeof(err));

    if (l == NULL)
	printf("\n    table_list_open: %s\n", err);
    return (l);
}

static void test_list(void)
{
    TABLE_LIST *l = list("transport_maps", "inline:{a=1}, inline:{ a=2, b=3 }");
    const char *v;
    char    err[512];

    T_EQ_INT(table_list_count(l), 2);
    T_EQ_INT(table_list_find(l, "a", 0, &v, err, sizeof(err)), TABLE_FOUND);
    T_EQ_STR(v, "1");
    T_EQ_INT(table_list_find(l, "B", 0, &v, err, sizeof(err)), TABLE_FOUND);
    T_EQ_STR(v, "3");
    T_EQ_INT(table_list_find(l, "c", 0, &v, err, sizeof(err)), TABLE_NOTFOUND);
    table_list_close(l);

    l = list("x", "");
    T_EQ_INT(table_list_count(l), 0);
    T_EQ_INT(table_list_find(l, "a", 0, &v, err, sizeof(err)), TABLE_NOTFOUND);
    table_list_close(l);

    T_CHECK(table_list_open("x", "inline:{a=1}, bogus:x", 0, err, sizeof(err)) == NULL);
    T_CHECK(strstr(err, "x: unsupported table type \"bogus\"") != NULL);
}

static void test_domain(void)
{
    TABLE_LIST *l = list("transport_maps",
			 "inline:{ example.com=exact, .example.com=dotsub, org=tld }");
    const char *v;
    char    err[512];

    T_EQ_INT(table_find_domain(l, "example.com", TABLE_DOM_DOTPARENT, &v, err, sizeof(err)), 1);
    T_EQ_STR(v, "exact");
    T_EQ_INT(table_find_domain(l, "a.b.EXAMPLE.com.", TABLE_DOM_DOTPARENT, &v, err, sizeof(err)), 1);
    T_EQ_STR(v, "dotsub");
    T_EQ_INT(table_find_domain(l, "a.b.example.com", TABLE_DOM_PARENT, &v, err, sizeof(err)), 1);
    T_EQ_STR(v, "exact");
    T_EQ_INT(table_find_domain(l, "x.org", TABLE_DOM_DOTPARENT, &v, err, sizeof(err)), 0);
    T_EQ_INT(table_find_domain(l, "x.org", TABLE_DOM_PARENT, &v, err, sizeof(err)), 1);
    T_EQ_STR(v, "tld");
    T_EQ_INT(table_find_domain(l, "a.example.com", 0, &v, err, sizeof(err)), 0);
    T_EQ_INT(table_find_domain(l, "", TABLE_DOM_PARENT, &v, err, sizeof(err)), 0);
    T_EQ_INT(table_find_domain(l, ".", TABLE_DOM_PARENT, &v, err, sizeof(err)), 0);
    table_list_close(l);

    T_CHECK(table_pdms("debug_peer_list,fast_flush_domains mynetworks relay_domains",
		       "relay_domains"));
    T_CHECK(!table_pdms("debug_peer_list,smtpd_access_maps", "transport_maps"));
}

static int local_is_example(const char *domain, void *ctx)
{
    return (str_casecmp(domain, "local.test") == 0);
}

static const char *addr(TABLE_LIST *l, const char *a, int strategy, char **ext)
{
    static char out[256];
    TABLE_ADDR_OPTS o = {strategy, TABLE_DOM_PARENT, "+-", local_is_example, NULL};
    const char *v;
    char    err[256];
    int     rc = table_find_addr(l, a, &o, &v, ext, err, sizeof(err));

    snprintf(out, sizeof(out), "%s", rc == 1 ? v : rc == 0 ? "(notfound)" : err);
    return (out);
}

static void test_addr(void)
{
    TABLE_LIST *l = list("virtual_alias_maps", "inline:{ user+ext@a.test=full, "
			 "user@a.test=noext, @a.test=atdomain, joe=localpart, "
			 "b.test=domain, owner-list@a.test=owner }");
    char   *ext = NULL;

    T_EQ_STR(addr(l, "user+ext@a.test", TABLE_ADDR_DEFAULT, &ext), "full");
    T_CHECK(ext == NULL);
    T_EQ_STR(addr(l, "User+Other@A.test", TABLE_ADDR_DEFAULT, &ext), "noext");
    T_EQ_STR(ext, "+Other");
    free(ext);
    T_EQ_STR(addr(l, "user-x@a.test", TABLE_ADDR_DEFAULT, &ext), "noext");
    T_EQ_STR(ext, "-x");
    free(ext);
    T_EQ_STR(addr(l, "user+ext@a.test", TABLE_ADDR_NOEXT | TABLE_ADDR_AT_DOMAIN, &ext), "noext");
    free(ext);
    T_EQ_STR(addr(l, "other@a.test", TABLE_ADDR_DEFAULT, &ext), "atdomain");
    T_CHECK(ext == NULL);
    /* owner-* and *-request are not split when "-" is a delimiter. */
    T_EQ_STR(addr(l, "owner-list@a.test", TABLE_ADDR_DEFAULT, &ext), "owner");
    T_EQ_STR(addr(l, "owner-x@a.test", TABLE_ADDR_DEFAULT, &ext), "atdomain");
    T_CHECK(ext == NULL);
    /* An empty localpart is not split off ("+x@a.test"). */
    T_EQ_STR(addr(l, "+user@a.test", TABLE_ADDR_FULL | TABLE_ADDR_NOEXT, &ext), "(notfound)");
    /* user alone only for a local domain. */
    T_EQ_STR(addr(l, "joe@local.test", TABLE_ADDR_DEFAULT, &ext), "localpart");
    T_EQ_STR(addr(l, "joe+x@local.test", TABLE_ADDR_DEFAULT, &ext), "localpart");
    T_EQ_STR(ext, "+x");
    free(ext);
    T_EQ_STR(addr(l, "joe@remote.test", TABLE_ADDR_DEFAULT, &ext), "(notfound)");
    /* domain, and its parents. */
    T_EQ_STR(addr(l, "x@b.test", TABLE_ADDR_DEFAULT, &ext), "(notfound)");
    T_EQ_STR(addr(l, "x@sub.b.test", TABLE_ADDR_DEFAULT | TABLE_ADDR_DOMAIN, &ext), "domain");
    table_list_close(l);

    {
	char   *r = table_propagate_ext("dest@b.test", "+foo");

	T_EQ_STR(r, "dest+foo@b.test");
	free(r);
	r = table_propagate_ext("dest", "+foo");
	T_EQ_STR(r, "dest+foo");
	free(r);
	r = table_propagate_ext("dest@b.test", NULL);
	T_EQ_STR(r, "dest@b.test");
	free(r);
    }
}

static void test_union_pipe(void)
{
    T_EQ_STR(look("unionmap:{ inline:{a=1}, static:2, inline:{b=3} }", "a"), "1,2");
    T_EQ_STR(look("unionmap:{ inline:{a=1}, inline:{b=3} }", "c"), "(notfound)");
    T_EQ_STR(look("pipemap:{ inline:{a=b}, inline:{b=final} }", "A"), "final");
    T_EQ_STR(look("pipemap:{ inline:{a=b}, inline:{c=final} }", "a"), "(notfound)");
    T_CHECK(strstr(look("pipemap:{ inline:{a=b} }", "a"), "at least two") != NULL);
    T_CHECK(strstr(look("unionmap:{ inline:{a=b}, nosuch:x }", "a"), "nosuch") != NULL);
}

static int cb_status;
static char cb_val[256];

static void cb(int status, const char *val, const char *err, void *arg)
{
    cb_status = status;
    snprintf(cb_val, sizeof(cb_val), "%s", val ? val : err ? err : "");
    (*(int *) arg)++;
}

static void test_async_local(void)
{
    TABLE_LIST *l = list("transport_maps", "inline:{ .b.test=dot, x@a.test=addr }");
    TABLE_ADDR_OPTS o = {TABLE_ADDR_DEFAULT, 0, "+", NULL, NULL};
    int     calls = 0;

    T_CHECK(table_find_domain_async(l, "c.b.test", TABLE_DOM_DOTPARENT, cb, &calls) == NULL);
    T_EQ_INT(calls, 1);
    T_EQ_INT(cb_status, TABLE_FOUND);
    T_EQ_STR(cb_val, "dot");
    T_CHECK(table_find_addr_async(l, "x+y@a.test", &o, cb, &calls) == NULL);
    T_EQ_INT(calls, 2);
    T_EQ_STR(cb_val, "addr");
    T_CHECK(table_list_find_async(l, "zz", 0, cb, &calls) == NULL);
    T_EQ_INT(calls, 3);
    T_EQ_INT(cb_status, TABLE_NOTFOUND);
    table_list_close(l);
}

/* The callers moved onto the layer: relay_domains and transport_maps. */
static void test_relay_domains_tables(void)
{
    char   *p = write_file("relay", "allowed.test OK\n");
    char    spec[512], reply[256];
    char   *domains[3];

    snprintf(spec, sizeof(spec), "texthash:%s", p);
    smtpd_domain_table_fn = smtpd_domain_table;
    domains[0] = "literal.test";
    domains[1] = spec;
    domains[2] = NULL;
    T_EQ_INT(smtpd_domain_match("literal.test", domains), 1);
    T_EQ_INT(smtpd_domain_match("allowed.test", domains), 1);
    T_EQ_INT(smtpd_domain_match("a.b.ALLOWED.test.", domains), 1);
    T_EQ_INT(smtpd_domain_match("notallowed.test", domains), 0);
    {
	char   *restr[] = {"permit_mynetworks", "reject_unauth_destination", NULL};

	T_EQ_INT(smtpd_relay_check(restr, 0, "x@sub.allowed.test", domains, reply, sizeof(reply)), 0);
	T_EQ_INT(smtpd_relay_check(restr, 0, "x@other.test", domains, reply, sizeof(reply)),
		 SMTPD_RELAY_DENIED);
	T_EQ_STR(reply, "554 5.7.1 <x@other.test>: Relay access denied");
	/* A table that cannot be read: a temporary failure, not a relay. */
	domains[1] = "texthash:/nonexistent/relay";
	T_EQ_INT(smtpd_relay_check(restr, 0, "x@allowed.test", domains, reply, sizeof(reply)), -1);
	T_EQ_STR(reply, "451 4.3.0 <x@allowed.test>: Temporary lookup failure");
    }
    free(p);
}

static void test_transport_tables(void)
{
    char   *p = write_file("transport", "vip@x.test smtp:[127.0.0.1]:2001\n"
			   "x.test smtp:[127.0.0.1]:2002\n");
    char    spec[600], err[512];
    char   *ov[3];
    CONFIG *cf;
    SMTP_ROUTE r;

    snprintf(spec, sizeof(spec), "hash:%s", p);
    T_EQ_INT(table_build(spec, NULL, TABLE_BUILD_FOLD, NULL, err, sizeof(err)), 0);
    snprintf(spec, sizeof(spec), "transport_maps=regexp:{ {/^boss@/ smtp:[127.0.0.1]:2003} }, hash:%s", p);
    ov[0] = spec;
    ov[1] = "recipient_delimiter=+";
    cf = config_load(tmpdir, ov, 2, 1, err, sizeof(err));
    T_CHECK(cf != NULL);
    if (cf == NULL)
	return;
    T_EQ_INT(smtp_route(cf, "VIP+tag@x.test", &r, err, sizeof(err)), 0);
    T_EQ_STR(r.key, "smtp:[127.0.0.1]:2001");
    T_EQ_INT(smtp_route(cf, "other@x.test", &r, err, sizeof(err)), 0);
    T_EQ_STR(r.key, "smtp:[127.0.0.1]:2002");
    T_EQ_INT(smtp_route(cf, "boss@y.test", &r, err, sizeof(err)), 0);
    T_EQ_STR(r.key, "smtp:[127.0.0.1]:2003");
    T_EQ_INT(smtp_route_check(cf, err, sizeof(err)), 0);
    config_free(cf);
    ov[0] = "transport_maps=socketmap:inet:127.0.0.1:9:x";
    cf = config_load(tmpdir, ov, 1, 1, err, sizeof(err));
    T_EQ_INT(smtp_route_check(cf, err, sizeof(err)), -1);
    T_CHECK(strstr(err, "socketmap tables are not supported here yet") != NULL);
    config_free(cf);
    free(p);
}

int     main(void)
{
    char    err[256], logpath[300];

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_table.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
	return (1);
    snprintf(logpath, sizeof(logpath), "%s/log", tmpdir);
    log_open(logpath, "relayq", "test.example", err, sizeof(err));
    T_RUN(test_inline);
    T_RUN(test_static);
    T_RUN(test_texthash);
    T_RUN(test_texthash_hostile);
    T_RUN(test_shared_and_reload);
    T_RUN(test_list);
    T_RUN(test_domain);
    T_RUN(test_addr);
    T_RUN(test_union_pipe);
    T_RUN(test_async_local);
    T_RUN(test_relay_domains_tables);
    T_RUN(test_transport_tables);
    {
	char    cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
	    printf("cleanup failed\n");
    }
    return (t_done());
}
