/*
 * fuzz_table - libFuzzer target for the table parsers an administrator's
 * file (or a hostile one) goes through: texthash (postmap's source
 * format), regexp and pcre pattern files, and inline:/static:/unionmap:/
 * pipemap: specs; every table that loads is then queried with keys cut
 * from the input.  Checks: no crash or sanitizer report; a load either
 * succeeds or names an error.
 *
 * FUZZ_SOURCES: src/table/table.c src/table/table_text.c src/table/table_regexp.c src/table/table_db.c src/table/table_sockmap.c src/log/log.c src/util/util.c -ldb-5.3 -llmdb -lcdb -lpcre2-8 -levent
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"
#include "table/table.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void quiet(const char *msg)
{
}

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *types[] = {"texthash", "regexp", "pcre"};
    char    spec[128], err[1024];
    const char *v;
    TABLE  *t;
    int     mode;

    if (size < 1)
	return (0);
    if (path[0] == 0) {
	int     fd;

	snprintf(path, sizeof(path), "/tmp/fuzz_table.XXXXXX");
	if ((fd = mkstemp(path)) < 0)
	    abort();
	close(fd);
	table_set_warn(quiet);
    }
    mode = data[0] % 4;
    data++, size--;
    if (mode < 3) {
	FILE   *fp = fopen(path, "w");

	fwrite(data, 1, size, fp);
	fclose(fp);
	snprintf(spec, sizeof(spec), "%s:%s", types[mode], path);
	t = table_open(spec, TABLE_FLAG_FOLD, "fuzz", err, sizeof(err));
    } else {
	char   *s = xstrndup((const char *) data, size);

	t = table_open(s, TABLE_FLAG_FOLD, "fuzz", err, sizeof(err));
	free(s);
    }
    if (t == NULL) {
	if (err[0] == 0)
	    abort();				/* a refusal must say why */
	return (0);
    }
    /* Keys: the input's lines, and a few fixed ones. */
    {
	char   *copy = xstrndup((const char *) data, size), *line, *save = NULL;
	int     n = 0;

	for (line = strtok_r(copy, "\n", &save); line && n < 16; line = strtok_r(NULL, "\n", &save), n++)
	    (void) table_lookup(t, line, &v, err, sizeof(err));
	free(copy);
	(void) table_lookup(t, "user+ext@example.com", &v, err, sizeof(err));
	(void) table_lookup(t, "", &v, err, sizeof(err));
    }
    table_close(t);
    return (0);
}
