/*
 * test_table_db - the indexed tables against Postfix's own postmap(1):
 * for hash, btree, lmdb and cdb, a table built by relayq is read by
 * "postmap -q" and "postmap -s", and a table built by postmap is read by
 * relayq, key by key (case, continuation lines, duplicates, quoting).
 * Hostile files: missing, not a database, truncated (at and off page
 * boundaries), random bytes, a hash file opened as btree; an indexed file
 * older than its source; a file rebuilt while open is re-opened.
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
#include "table/table.h"

static char tmpdir[256];
static char pfconf[300];
static int have_postmap;

static const char *types[] = {"hash", "btree", "lmdb", "cdb"};

static char *path_of(const char *name)
{
    return (xasprintf("%s/%s", tmpdir, name));
}

static void write_file(const char *path, const char *text)
{
    FILE   *fp = fopen(path, "w");

    fputs(text, fp);
    fclose(fp);
}

/* Run a shell command; its stdout (trimmed of the final newline) in out. */
static int run(char *out, size_t outlen, const char *fmt, ...)
{
    char    cmd[4096];
    va_list ap;
    FILE   *fp;
    size_t  n = 0;
    int     status;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if ((fp = popen(cmd, "r")) == NULL)
	return (-1);
    if (out) {
	n = fread(out, 1, outlen - 1, fp);
	out[n] = 0;
	while (n > 0 && out[n - 1] == '\n')
	    out[--n] = 0;
    } else {
	char    sink[4096];

	while (fread(sink, 1, sizeof(sink), fp) > 0)
	    ;
    }
    status = pclose(fp);
    return (WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

static const char *source_text =
    "# a comment\n"
    "Example.COM        smtp:[mx.example.com]:587\n"
    "user@Example.com   OK\n"
    "multi              first\n"
    "   continued\n"
    "\n"
    "@sub.example.org   reject text with  spaces\n"
    "dup                one\n"
    "dup                two\n"
    "\"quoted key\"       q\n"
    "MixedCase          mc\n";

/* key (as queried) -> expected value or NULL */
static const char *expect[][2] = {
    {"example.com", "smtp:[mx.example.com]:587"},
    {"EXAMPLE.COM", "smtp:[mx.example.com]:587"},
    {"user@example.com", "OK"},
    {"multi", "first   continued"},
    {"@sub.example.org", "reject text with  spaces"},
    {"dup", "one"},
    {"\"quoted key\"", "q"},
    {"mixedcase", "mc"},
    {"absent", NULL},
    {"example", NULL},
    {"", NULL},
};

static void lookup_all(const char *spec, const char *who)
{
    char    err[512];
    TABLE  *t = table_open(spec, TABLE_FLAG_FOLD, NULL, err, sizeof(err));

    if (t == NULL) {
	T_FAILF("%s: open %s: %s", who, spec, err);
	return;
    }
    for (size_t i = 0; i < ARRAY_LEN(expect); i++) {
	const char *v;
	int     rc = table_lookup(t, expect[i][0], &v, err, sizeof(err));

	if (expect[i][1] == NULL) {
	    if (rc != TABLE_NOTFOUND)
		T_FAILF("%s %s: \"%s\" found (%d)", who, spec, expect[i][0], rc);
	} else if (rc != TABLE_FOUND || strcmp(v, expect[i][1]) != 0) {
	    T_FAILF("%s %s: \"%s\" -> %d \"%s\", expected \"%s\"", who, spec, expect[i][0], rc,
		    rc == TABLE_FOUND ? v : err, expect[i][1]);
	}
    }
    table_close(t);
}

static void quiet(const char *msg)
{
}

static int dump_cb(void *ctx, const char *key, const char *val)
{
    fprintf(ctx, "%s\t%s\n", key, val);
    return (0);
}

/* relayq's listing (postmap -s) of spec, sorted as sort(1) does. */
static void dump_sorted(const char *spec, char *out, size_t outlen)
{
    char   *p = xasprintf("%s/dump", tmpdir), err[512];
    FILE   *fp = fopen(p, "w");
    TABLE  *t = table_open(spec, TABLE_FLAG_FOLD, NULL, err, sizeof(err));

    if (t == NULL || table_dump(t, dump_cb, fp, err, sizeof(err)) < 0)
	T_FAILF("dump %s: %s", spec, err);
    table_close(t);
    fclose(fp);
    run(out, outlen, "sort %s", p);
    free(p);
}

/* postmap built it, relayq reads it. */
static void test_postfix_to_relayq(void)
{
    char    spec[512], out[4096];

    if (!have_postmap) {
	printf("(skipped: no postmap) ");
	return;
    }
    for (size_t i = 0; i < ARRAY_LEN(types); i++) {
	char   *p = xasprintf("%s/pf_%s", tmpdir, types[i]);

	write_file(p, source_text);
	T_EQ_INT(run(NULL, 0, "postmap -c %s %s:%s 2>/dev/null", pfconf, types[i], p), 0);
	snprintf(spec, sizeof(spec), "%s:%s", types[i], p);
	lookup_all(spec, "relayq reads postmap's");
	/* -s listing: relayq's of postmap's file equals postmap's own (not cdb: postmap cannot). */
	if (strcmp(types[i], "cdb") != 0) {
	    char    mine[4096];

	    run(out, sizeof(out), "postmap -c %s -s %s | sort", pfconf, spec);
	    dump_sorted(spec, mine, sizeof(mine));
	    T_CHECK(strlen(out) > 50);
	    T_EQ_STR(mine, out);
	}
	free(p);
    }
}

/* relayq built it, postmap reads it. */
static void test_relayq_to_postfix(void)
{
    char    spec[512], err[512], out[4096];

    for (size_t i = 0; i < ARRAY_LEN(types); i++) {
	char   *p = xasprintf("%s/rq_%s", tmpdir, types[i]);

	write_file(p, source_text);
	snprintf(spec, sizeof(spec), "%s:%s", types[i], p);
	T_EQ_INT(table_build(spec, NULL, TABLE_BUILD_FOLD, quiet, err, sizeof(err)), 0);
	lookup_all(spec, "relayq reads relayq's");
	if (have_postmap) {
	    for (size_t k = 0; k < ARRAY_LEN(expect); k++) {
		int     rc;

		if (expect[k][0][0] == 0)
		    continue;
		rc = run(out, sizeof(out), "postmap -c %s -q '%s' %s 2>&1", pfconf, expect[k][0], spec);
		if (expect[k][1] == NULL) {
		    if (rc != 1)
			T_FAILF("postmap -q '%s' %s: %d \"%s\", expected not found",
				expect[k][0], spec, rc, out);
		} else if (rc != 0 || strcmp(out, expect[k][1]) != 0) {
		    T_FAILF("postmap -q '%s' %s: %d \"%s\", expected \"%s\"",
			    expect[k][0], spec, rc, out, expect[k][1]);
		}
	    }
	}
	free(p);
    }
}

/* -f: keys keep their case, in the file and in the query. */
static void test_nofold(void)
{
    char    spec[512], err[512], out[256];
    char   *p = path_of("nofold");
    TABLE  *t;
    const char *v;

    write_file(p, "MiXed v\n");
    snprintf(spec, sizeof(spec), "hash:%s", p);
    T_EQ_INT(table_build(spec, NULL, 0, quiet, err, sizeof(err)), 0);
    t = table_open(spec, 0, NULL, err, sizeof(err));
    T_EQ_INT(table_lookup(t, "MiXed", &v, err, sizeof(err)), TABLE_FOUND);
    T_EQ_INT(table_lookup(t, "mixed", &v, err, sizeof(err)), TABLE_NOTFOUND);
    table_close(t);
    if (have_postmap) {
	T_EQ_INT(run(out, sizeof(out), "postmap -c %s -f -q MiXed %s", pfconf, spec), 0);
	T_EQ_STR(out, "v");
    }
    free(p);
}

static const char *open_err(const char *spec)
{
    static char err[1024];
    TABLE  *t = table_open(spec, TABLE_FLAG_FOLD, NULL, err, sizeof(err));

    if (t) {
	table_close(t);
	return ("(opened)");
    }
    return (err);
}

static void test_hostile(void)
{
    char    spec[512], err[512];
    char   *p = path_of("big"), *q;
    BUF     b = BUF_INIT;

    for (int i = 0; i < 3000; i++)
	buf_printf(&b, "key%d value%d\n", i, i);
    write_file(p, b.data);
    buf_free(&b);

    /* Missing. */
    snprintf(spec, sizeof(spec), "hash:%s/none", tmpdir);
    T_CHECK(strstr(open_err(spec), "none.db: No such file or directory") != NULL);

    /* Not a database. */
    q = path_of("junk.db");
    write_file(q, "this is not a Berkeley DB file\n");
    free(q);
    snprintf(spec, sizeof(spec), "hash:%s/junk", tmpdir);
    T_CHECK(strstr(open_err(spec), "open database") != NULL);
    snprintf(spec, sizeof(spec), "lmdb:%s/junk", tmpdir);
    q = path_of("junk.lmdb");
    write_file(q, "this is not an LMDB file either, and it is short\n");
    free(q);
    T_CHECK(strstr(open_err(spec), "open database") != NULL);
    q = path_of("junk.cdb");
    write_file(q, "short\n");
    free(q);
    snprintf(spec, sizeof(spec), "cdb:%s/junk", tmpdir);
    T_CHECK(strstr(open_err(spec), "not a cdb file") != NULL);

    /* Truncated, at page boundaries and off them, for every type. */
    for (size_t i = 0; i < ARRAY_LEN(types); i++) {
	const char *sfx = strcmp(types[i], "lmdb") == 0 ? "lmdb" :
	    strcmp(types[i], "cdb") == 0 ? "cdb" : "db";
	static const long cuts[] = {100, 2100, 4096, 8192, 12288, 16384, 20000};

	snprintf(spec, sizeof(spec), "%s:%s", types[i], p);
	T_EQ_INT(table_build(spec, NULL, TABLE_BUILD_FOLD, quiet, err, sizeof(err)), 0);
	for (size_t c = 0; c < ARRAY_LEN(cuts); c++) {
	    char    cmd[1024];
	    TABLE  *t;
	    int     rc, errors = 0;

	    snprintf(cmd, sizeof(cmd), "head -c %ld %s.%s > %s/cut.%s", cuts[c], p, sfx, tmpdir, sfx);
	    T_EQ_INT(system(cmd), 0);
	    snprintf(spec, sizeof(spec), "%s:%s/cut", types[i], tmpdir);
	    /* Either refused at open, or every lookup answers (no crash). */
	    if ((t = table_open(spec, TABLE_FLAG_FOLD, NULL, err, sizeof(err))) == NULL) {
		T_CHECK(strstr(err, "cut.") != NULL);
		continue;
	    }
	    for (int k = 0; k < 3000; k += 7) {
		char    key[32];
		const char *v;

		snprintf(key, sizeof(key), "key%d", k);
		if ((rc = table_lookup(t, key, &v, err, sizeof(err))) == TABLE_ERROR)
		    errors++;
	    }
	    table_close(t);
	    if (strcmp(types[i], "cdb") == 0 && cuts[c] > 2048)
		T_CHECK(errors > 0);
	}
    }

    /* A hash file opened as btree. */
    snprintf(spec, sizeof(spec), "hash:%s", p);
    T_EQ_INT(table_build(spec, NULL, TABLE_BUILD_FOLD, quiet, err, sizeof(err)), 0);
    snprintf(spec, sizeof(spec), "btree:%s", p);
    T_CHECK(strstr(open_err(spec), "open database") != NULL);

    /* Random bytes. */
    for (size_t i = 0; i < ARRAY_LEN(types); i++) {
	const char *sfx = strcmp(types[i], "lmdb") == 0 ? "lmdb" :
	    strcmp(types[i], "cdb") == 0 ? "cdb" : "db";
	char    cmd[512];
	TABLE  *t;

	snprintf(cmd, sizeof(cmd), "head -c 16384 /dev/urandom > %s/rnd.%s", tmpdir, sfx);
	T_EQ_INT(system(cmd), 0);
	snprintf(spec, sizeof(spec), "%s:%s/rnd", types[i], tmpdir);
	if ((t = table_open(spec, TABLE_FLAG_FOLD, NULL, err, sizeof(err))) != NULL) {
	    const char *v;

	    for (int k = 0; k < 200; k++) {
		char    key[32];

		snprintf(key, sizeof(key), "k%d", k);
		(void) table_lookup(t, key, &v, err, sizeof(err));
	    }
	    table_close(t);
	}
    }
    free(p);
}

static char warned[1024];

static void catch_warn(const char *msg)
{
    snprintf(warned, sizeof(warned), "%s", msg);
}

static void test_rebuild_and_age(void)
{
    char    spec[512], err[512];
    TABLE  *t[ARRAY_LEN(types)];
    const char *v;
    struct timespec ts[2];

    table_set_warn(catch_warn);
    /* Open each type, then rebuild every file while they are open. */
    for (size_t i = 0; i < ARRAY_LEN(types); i++) {
	char   *p = xasprintf("%s/live_%s", tmpdir, types[i]);

	write_file(p, "k old\n");
	snprintf(spec, sizeof(spec), "%s:%s", types[i], p);
	T_EQ_INT(table_build(spec, NULL, TABLE_BUILD_FOLD, quiet, err, sizeof(err)), 0);
	t[i] = table_open(spec, TABLE_FLAG_FOLD, NULL, err, sizeof(err));
	T_CHECK(t[i] != NULL);
	if (t[i] == NULL)
	    return;
	T_EQ_INT(table_lookup(t[i], "k", &v, err, sizeof(err)), TABLE_FOUND);
	T_EQ_STR(v, "old");
	write_file(p, "k new\n");
	T_EQ_INT(table_build(spec, NULL, TABLE_BUILD_FOLD, quiet, err, sizeof(err)), 0);
	free(p);
    }
    /* Files are looked at at most once a second: then the next lookup sees the new file. */
    usleep(1100000);
    for (size_t i = 0; i < ARRAY_LEN(types); i++) {
	T_EQ_INT(table_lookup(t[i], "k", &v, err, sizeof(err)), TABLE_FOUND);
	T_EQ_STR(v, "new");
	table_close(t[i]);
    }
    /* Source newer than the database: used, with a warning. */
    for (size_t i = 0; i < ARRAY_LEN(types); i++) {
	char   *p = xasprintf("%s/live_%s", tmpdir, types[i]);
	TABLE  *u;

	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[0].tv_sec += 10;
	ts[1] = ts[0];
	utimensat(AT_FDCWD, p, ts, 0);
	warned[0] = 0;
	snprintf(spec, sizeof(spec), "%s:%s", types[i], p);
	u = table_open(spec, TABLE_FLAG_FOLD, NULL, err, sizeof(err));
	T_CHECK(u != NULL);
	T_CHECK(strstr(warned, "is older than source file") != NULL);
	table_close(u);
	free(p);
    }
    table_set_warn(NULL);
}

int     main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_table_db.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
	return (1);
    snprintf(pfconf, sizeof(pfconf), "%s/pf", tmpdir);
    mkdir(pfconf, 0755);
    {
	char   *m = xasprintf("%s/main.cf", pfconf);

	write_file(m, "compatibility_level = 3.6\n");
	free(m);
    }
    have_postmap = run(NULL, 0, "postmap -c %s -q x inline:{x=y} 2>/dev/null", pfconf) == 0;
    T_RUN(test_postfix_to_relayq);
    T_RUN(test_relayq_to_postfix);
    T_RUN(test_nofold);
    T_RUN(test_hostile);
    T_RUN(test_rebuild_and_age);
    {
	char    cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
	    printf("cleanup failed\n");
    }
    return (t_done());
}
