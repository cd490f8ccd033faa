/*
 * test_table_regexp - regexp: and pcre: tables, and a table-driven
 * comparison with Postfix's own "postmap -q": a few hundred keys (case,
 * address extensions, parent domains, substitutions, negations, if/endif)
 * looked up in the same pattern files and in a hash table by relayq and by
 * postmap; every answer must agree.  Then hostile pattern files: every
 * malformed line is refused with the file and line named.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "t.h"
#include "util/util.h"
#include "table/table.h"

static char tmpdir[256];
static char pfconf[300];
static int have_postmap;

static void write_file(const char *path, const char *text)
{
    FILE   *fp = fopen(path, "w");

    fputs(text, fp);
    fclose(fp);
}

static const char *regexp_text =
    "# relay table with substitutions\n"
    "/^([^+@]+)\\+([^@]*)@(sub\\.)?example\\.com$/    ext:$2:${1}:$(3)\n"
    "/^(postmaster|abuse)@/                          role:$1\n"
    "if /\\.example\\.org$/\n"
    "/^admin@/                                       org-admin\n"
    "!/^[a-m]/                                       org-n-to-z\n"
    "endif\n"
    "/^CASE@/i                                       exact-case\n"
    "/^([a-z]+)@([a-z]+)\\.(test|invalid)$/          $2/$1 $$literal\n"
    "/@(.+\\.)?parent\\.test$/                         parent:[$1]\n"
    "/^a(b)?c@/                                      opt=<$1>\n"
    "/^x@multi/                                      first\n"
    "  continued\n"
    "/[0-9]{3}/                                      digits\n"
    "!/@/                                            no-at\n";

/* pcre: the same rules (PCRE has no /a/!/b/), plus PCRE-only syntax. */
static const char *pcre_text =
    "/^([^+@]+)\\+([^@]*)@(sub\\.)?example\\.com$/    ext:$2:${1}:$(3)\n"
    "/^(postmaster|abuse)@/                          role:$1\n"
    "if /\\.example\\.org$/\n"
    "/^admin@/                                       org-admin\n"
    "!/^[a-m]/                                       org-n-to-z\n"
    "endif\n"
    "/^CASE@/i                                       exact-case\n"
    "/^(\\w+)@(\\w+)\\.(?:test|invalid)$/               $2/$1 $$literal\n"
    "/@(.+\\.)?parent\\.test$/                         parent:[$1]\n"
    "/^a(b)?c@/                                      opt=<$1>\n"
    "/^x@multi/                                      first\n"
    "  continued\n"
    "/\\d{3}/                                        digits\n"
    "#^ungreedy(.+)#U                                ug:$1\n"
    "!/@/                                            no-at\n";

static const char *hash_text =
    "example.com            smtp:[mx.example.com]\n"
    ".example.com           smtp:[sub.example.com]\n"
    "user@example.com       user-exact\n"
    "user+ext@example.com   user-ext\n"
    "@example.org           catch-all\n"
    "Parent.Test            parent\n"
    "sub.parent.test        sub\n"
    "postmaster             local-pm\n";

/* Build the key list: users x extensions x domains x case. */
static char **make_keys(int *n)
{
    static const char *users[] = {"user", "User", "admin", "zed", "postmaster", "abuse",
    "CASE", "case", "abc", "ac", "x", "n123"};
    static const char *exts[] = {"", "+ext", "+", "+a+b"};
    static const char *doms[] = {"example.com", "EXAMPLE.COM", "sub.example.com",
	"example.org", "a.example.org", "parent.test", "sub.parent.test",
	"deep.sub.Parent.TEST", "mail.test", "host.invalid", "multi", ""};
    char  **k = xcalloc(ARRAY_LEN(users) * ARRAY_LEN(exts) * ARRAY_LEN(doms)
			 + 3 * ARRAY_LEN(doms) + 2, sizeof(char *));
    int     c = 0;

    for (size_t u = 0; u < ARRAY_LEN(users); u++)
	for (size_t e = 0; e < ARRAY_LEN(exts); e++)
	    for (size_t d = 0; d < ARRAY_LEN(doms); d++)
		k[c++] = *doms[d] ? xasprintf("%s%s@%s", users[u], exts[e], doms[d])
		    : xasprintf("%s%s", users[u], exts[e]);
    /* Domains and parents as keys, as relay checks ask them. */
    for (size_t d = 0; d < ARRAY_LEN(doms); d++)
	if (*doms[d]) {
	    k[c++] = xstrdup(doms[d]);
	    k[c++] = xasprintf(".%s", doms[d]);
	    k[c++] = xasprintf("@%s", doms[d]);
	}
    k[c++] = xstrdup("ungreedyabc");
    *n = c;
    return (k);
}

/* postmap -q - over all keys: key -> value (NULL when not found). */
static char **postmap_answers(const char *spec, char **keys, int n)
{
    char   *in = xasprintf("%s/keys", tmpdir), *out = xasprintf("%s/answers", tmpdir);
    char   *cmd, line[2048];
    FILE   *fp = fopen(in, "w");
    char  **ans = xcalloc(n, sizeof(char *));

    for (int i = 0; i < n; i++)
	fprintf(fp, "%s\n", keys[i]);
    fclose(fp);
    unlink(out);
    cmd = xasprintf("postmap -c %s -q - '%s' < %s > %s 2>/dev/null", pfconf, spec, in, out);
    if (system(cmd) < 0)
	T_FAILF("%s", cmd);
    fp = fopen(out, "r");
    /* Answers come in key order; keys may repeat after folding, match in order. */
    {
	int     next = 0;

	while (fp && fgets(line, sizeof(line), fp)) {
	    char   *tab = strchr(line, '\t');

	    line[strcspn(line, "\n")] = 0;
	    if (tab == NULL)
		continue;
	    *tab = 0;
	    for (int i = next; i < n; i++)
		if (strcmp(keys[i], line) == 0) {
		    ans[i] = xstrdup(tab + 1);
		    next = i + 1;
		    break;
		}
	}
    }
    if (fp)
	fclose(fp);
    free(cmd);
    free(in);
    free(out);
    return (ans);
}

static int compared, agreed, found_both;

static void compare(const char *spec, int flags)
{
    int     n;
    char  **keys = make_keys(&n), **ans;
    char    err[512];
    TABLE  *t = table_open(spec, flags, NULL, err, sizeof(err));

    if (t == NULL) {
	T_FAILF("open %s: %s", spec, err);
	return;
    }
    ans = postmap_answers(spec, keys, n);
    for (int i = 0; i < n; i++) {
	const char *v;
	int     rc = table_lookup(t, keys[i], &v, err, sizeof(err));
	const char *mine = rc == TABLE_FOUND ? v : NULL;

	compared++;
	if ((mine == NULL && ans[i] == NULL) || (mine && ans[i] && strcmp(mine, ans[i]) == 0)) {
	    agreed++;
	    found_both += mine != NULL;
	} else {
	    T_FAILF("%s [%s]: relayq \"%s\", postmap \"%s\"", spec, keys[i],
		    mine ? mine : "(not found)", ans[i] ? ans[i] : "(not found)");
	}
	free(ans[i]);
	free(keys[i]);
    }
    free(ans);
    free(keys);
    table_close(t);
}

static void test_compare_with_postmap(void)
{
    char   *re = xasprintf("%s/table.regexp", tmpdir), *pc = xasprintf("%s/table.pcre", tmpdir);
    char   *h = xasprintf("%s/table.hash", tmpdir), spec[512], err[512];

    if (!have_postmap) {
	printf("(skipped: postmap not usable) ");
	return;
    }
    write_file(re, regexp_text);
    write_file(pc, pcre_text);
    write_file(h, hash_text);
    snprintf(spec, sizeof(spec), "regexp:%s", re);
    compare(spec, TABLE_FLAG_FOLD);
    snprintf(spec, sizeof(spec), "pcre:%s", pc);
    compare(spec, TABLE_FLAG_FOLD);
    /* A hash table built by relayq, asked by both (postmap folds the query too). */
    snprintf(spec, sizeof(spec), "hash:%s", h);
    T_EQ_INT(table_build(spec, NULL, TABLE_BUILD_FOLD, NULL, err, sizeof(err)), 0);
    compare(spec, TABLE_FLAG_FOLD);
    /* The same through texthash (no index: both read the text). */
    snprintf(spec, sizeof(spec), "texthash:%s", h);
    compare(spec, TABLE_FLAG_FOLD);
    /* Inline patterns. */
    compare("pcre:{ {/^(\\w+)\\+(\\w+)@/ $2.$1}, {!/example/ not-example} }", TABLE_FLAG_FOLD);
    printf("(%d lookups compared with postmap -q, %d agree, %d found by both) ",
	   compared, agreed, found_both);
    T_CHECK(compared >= 1000);
    T_EQ_INT(agreed, compared);
    T_CHECK(found_both > 200);
    free(re);
    free(pc);
    free(h);
}

static const char *load_err(const char *type, const char *text)
{
    static char err[1024];
    char   *p = xasprintf("%s/bad.%s", tmpdir, type), spec[512];
    TABLE  *t;

    write_file(p, text);
    snprintf(spec, sizeof(spec), "%s:%s", type, p);
    free(p);
    if ((t = table_open(spec, 0, "header_checks", err, sizeof(err))) != NULL) {
	table_close(t);
	return ("(loaded)");
    }
    return (err);
}

static char warned[1024];

static void catch_warn(const char *msg)
{
    snprintf(warned, sizeof(warned), "%s", msg);
}

static void test_hostile_patterns(void)
{
    static const struct {
	const char *type, *text, *want;
    } cases[] = {
	{"regexp", "/ok/ x\n/unclosed x\n", "bad.regexp, line 2: no closing regexp delimiter \"/\""},
	{"regexp", "/ok/ x\n/a(/ y\n", "bad.regexp, line 2: "},
	{"regexp", "/a/q y\n", "line 1: unknown regexp option \"q\""},
	{"regexp", "/(a)/ $2\n", "line 1: out of range replacement index \"2\""},
	{"regexp", "/(a)/ $x\n", "line 1: non-numeric replacement index \"x\""},
	{"regexp", "/(a)/ ${1\n", "line 1: truncated macro reference"},
	{"regexp", "!/(a)/ $1\n", "line 1: $number found in negative match"},
	{"regexp", "if /a/\n/b/ c\n", "line 1: IF has no matching ENDIF"},
	{"regexp", "/b/ c\nendif\n", "line 2: ENDIF without matching IF"},
	{"regexp", "hello world\n", "line 1: unrecognized request"},
	{"regexp", "  /a/ b\n", "logical line must not start with whitespace"},
	{"pcre", "/a(/ x\n", "bad.pcre, line 1: error in regex at offset"},
	{"pcre", "/a/!/b/ x\n", "line 1: unknown regexp option \"!\""},
	{"pcre", "/(a)/ $2\n", "line 1: out of range replacement index \"2\""},
	{"pcre", "\n\n/x/Z y\n", "bad.pcre, line 3: unknown regexp option \"Z\""},
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
	const char *e = load_err(cases[i].type, cases[i].text);

	if (strstr(e, cases[i].want) == NULL)
	    T_FAILF("%s \"%s\": got \"%s\", expected \"%s\"", cases[i].type, cases[i].text, e,
		    cases[i].want);
    }
    /* Missing file. */
    T_CHECK(strstr(load_err("regexp", ""), "(loaded)") != NULL);
    {
	char    err[512];

	T_CHECK(table_open("pcre:/nonexistent/x.pcre", 0, NULL, err, sizeof(err)) == NULL);
	T_CHECK(strstr(err, "/nonexistent/x.pcre: No such file or directory") != NULL);
    }
    /* Accepted with a warning, as Postfix: a rule without a result. */
    table_set_warn(catch_warn);
    T_EQ_STR(load_err("regexp", "/a/\n"), "(loaded)");
    T_CHECK(strstr(warned, "bad.regexp, line 1: no replacement text: using empty string") != NULL);
    table_set_warn(NULL);
}

static void test_partial_skips_patterns(void)
{
    char    err[512];
    const char *v;
    TABLE_LIST *l = table_list_open("x", "regexp:{ {/./ any} }", 0, err, sizeof(err));

    T_EQ_INT(table_list_find(l, "a@b", 0, &v, err, sizeof(err)), TABLE_FOUND);
    T_EQ_INT(table_list_find(l, "@b", TABLE_PARTIAL, &v, err, sizeof(err)), TABLE_NOTFOUND);
    table_list_close(l);
}

int     main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_table_re.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
	return (1);
    snprintf(pfconf, sizeof(pfconf), "%s/pf", tmpdir);
    mkdir(pfconf, 0755);
    {
	char   *m = xasprintf("%s/main.cf", pfconf), *cmd;

	write_file(m, "compatibility_level = 3.6\n");
	free(m);
	cmd = xasprintf("postmap -c %s -q x 'pcre:{{/x/ y}}' >/dev/null 2>&1", pfconf);
	have_postmap = system(cmd) == 0;
	free(cmd);
    }
    T_RUN(test_compare_with_postmap);
    table_set_warn(catch_warn);
    T_RUN(test_hostile_patterns);
    T_RUN(test_partial_skips_patterns);
    {
	char    cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
	    printf("cleanup failed\n");
    }
    return (t_done());
}
