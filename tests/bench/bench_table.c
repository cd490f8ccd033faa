/*
 * bench_table - the cost of one lookup per table type: a 20,000-entry
 * table (texthash, and hash, btree, lmdb, cdb built by table_build), two
 * 51-rule pattern tables, an inline table; 200,000 lookups each, a third
 * of which find their key.  Run it under flock /work/coord/bench.lock
 * (make bench-table) when the machine is shared.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"
#include "table/table.h"

static double now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec + t.tv_nsec / 1e9);
}

int     main(void)
{
    char    dir[] = "/tmp/bench_table.XXXXXX", path[128], spec[160], err[512], key[64];
    const char *types[] = {"texthash", "hash", "btree", "lmdb", "cdb", "regexp", "pcre", "inline"};
    const char *v;
    FILE   *fp;

    if (mkdtemp(dir) == NULL)
	return (1);
    snprintf(path, sizeof(path), "%s/src", dir);
    fp = fopen(path, "w");
    for (int i = 0; i < 20000; i++)
	fprintf(fp, "key%d.example.com value%d\n", i, i);
    fclose(fp);
    snprintf(path, sizeof(path), "%s/re", dir);
    fp = fopen(path, "w");
    for (int i = 1; i <= 50; i++)
	fprintf(fp, "/^user%d@/ r%d\n", i, i);
    fprintf(fp, "/^key([0-9]+)\\./ found$1\n");
    fclose(fp);
    for (size_t s = 0; s < ARRAY_LEN(types); s++) {
	TABLE  *t;
	int     n = 200000, found = 0;
	double  t0;

	if (strcmp(types[s], "inline") == 0)
	    snprintf(spec, sizeof(spec), "inline:{ key3.example.com=x }");
	else
	    snprintf(spec, sizeof(spec), "%s:%s/%s", types[s], dir,
		     strcmp(types[s], "regexp") == 0 || strcmp(types[s], "pcre") == 0 ? "re" : "src");
	/* hash and btree share src.db: build each just before its run. */
	if (strcmp(types[s], "hash") == 0 || strcmp(types[s], "btree") == 0
	    || strcmp(types[s], "lmdb") == 0 || strcmp(types[s], "cdb") == 0)
	    if (table_build(spec, NULL, TABLE_BUILD_FOLD, NULL, err, sizeof(err)) < 0) {
		printf("%s: %s\n", spec, err);
		continue;
	    }
	if ((t = table_open(spec, TABLE_FLAG_FOLD, NULL, err, sizeof(err))) == NULL) {
	    printf("%s: %s\n", spec, err);
	    continue;
	}
	t0 = now();
	for (int i = 0; i < n; i++) {
	    snprintf(key, sizeof(key), "key%d.example.com", i % 20000 * 3);
	    found += table_lookup(t, key, &v, err, sizeof(err)) == TABLE_FOUND;
	}
	printf("%-9s %7.2f us/lookup (%d of %d found)\n", types[s], (now() - t0) / n * 1e6, found, n);
	table_close(t);
    }
    snprintf(path, sizeof(path), "rm -rf %s", dir);
    return (system(path) != 0);
}
