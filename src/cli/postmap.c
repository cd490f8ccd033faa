/*
 * postmap - "relayq postmap", Postfix's postmap(1) for relayq's tables:
 *
 *   relayq postmap [-f] [-i] type:file...     build file.db/.lmdb/.cdb from file
 *   relayq postmap [-f] -q KEY type:file...   print the first value found
 *   relayq postmap [-f] -q - type:file...     keys on stdin: "key<TAB>value"
 *   relayq postmap -s type:file               every entry: "key<TAB>value"
 *
 * -f keeps the case of keys (by default they are folded to lower case, in
 * the file and in queries, as postmap does); -i adds entries read from
 * standard input to an existing table.  A name without "type:" is hash:.
 * Exit status as postmap's: 0 found / built, 1 not found or error.
 * Files written here are read by Postfix's postmap and daemons, and files
 * postmap wrote are read here (docs/tables.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "table/table.h"
#include "cli/cli.h"

static void postmap_warn(const char *msg)
{
    cli_warn("%s", msg);
}

static int print_entry(void *ctx, const char *key, const char *val)
{
    printf("%s\t%s\n", key, val);
    return (0);
}

/* "file" alone is hash:file, as postmap's default_database_type. */
static char *full_spec(const char *arg)
{
    const char *colon = strchr(arg, ':');

    if (colon == NULL || colon == arg || arg[0] == '/')
	return (xasprintf("hash:%s", arg));
    return (xstrdup(arg));
}

static TABLE *open_or_die(const char *spec, int flags)
{
    char    err[1024];
    TABLE  *t;

    if ((t = table_open(spec, flags, NULL, err, sizeof(err))) == NULL)
	cli_fatal(1, "%s", err);
    return (t);
}

int     cli_postmap(CLI *cli, int argc, char **argv)
{
    const char *query = NULL;
    int     fold = 1, seq = 0, update = 0, i, found = 0;
    char    err[1024];
    char  **specs;
    int     nspecs;

    table_set_warn(postmap_warn);
    for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
	const char *o = argv[i] + 1;
	int     query_taken = 0;

	if (strcmp(argv[i], "--") == 0) {
	    i++;
	    break;
	}
	for (; *o; o++) {
	    if (query_taken)
		break;
	    switch (*o) {
	    case 'f':
		fold = 0;
		break;
	    case 'i':
		update = 1;
		break;
	    case 's':
		seq = 1;
		break;
	    case 'q':
		if (o[1]) {
		    query = o + 1;
		} else if (i + 1 < argc) {
		    query = argv[++i];
		} else {
		    cli_fatal(2, "postmap: option -q needs a key");
		}
		query_taken = 1;	/* the rest of this word was the key */
		break;
	    default:
		cli_fatal(2, "postmap: unknown option -%c "
			  "(usage: relayq postmap [-f] [-i] [-q KEY] [-s] type:file...)", *o);
	    }
	}
    }
    if ((query != NULL) + seq + update > 1)
	cli_fatal(2, "postmap: specify only one of -i -q or -s");
    if (i >= argc)
	cli_fatal(2, "usage: relayq postmap [-f] [-i] [-q KEY] [-s] type:file...");
    nspecs = argc - i;
    specs = xcalloc(nspecs, sizeof(char *));
    for (int k = 0; k < nspecs; k++)
	specs[k] = full_spec(argv[i + k]);

    if (query != NULL && strcmp(query, "-") != 0) {
	for (int k = 0; k < nspecs && !found; k++) {
	    TABLE  *t = open_or_die(specs[k], fold ? TABLE_FLAG_FOLD : 0);
	    const char *v;
	    int     rc = table_lookup(t, query, &v, err, sizeof(err));

	    if (rc == TABLE_ERROR)
		cli_fatal(1, "query error: %s", err);
	    if (rc == TABLE_FOUND) {
		printf("%s\n", v);
		found = 1;
	    }
	    table_close(t);
	}
    } else if (query != NULL) {
	TABLE **t = xcalloc(nspecs, sizeof(TABLE *));
	char   *line = NULL;
	size_t  cap = 0;
	ssize_t got;

	for (int k = 0; k < nspecs; k++)
	    t[k] = open_or_die(specs[k], fold ? TABLE_FLAG_FOLD : 0);
	while ((got = getline(&line, &cap, stdin)) >= 0) {
	    while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
		line[--got] = 0;
	    for (int k = 0; k < nspecs; k++) {
		const char *v;
		int     rc = table_lookup(t[k], line, &v, err, sizeof(err));

		if (rc == TABLE_ERROR)
		    cli_fatal(1, "query error: %s", err);
		if (rc == TABLE_FOUND) {
		    printf("%s\t%s\n", line, v);
		    found = 1;
		    break;
		}
	    }
	}
	free(line);
	for (int k = 0; k < nspecs; k++)
	    table_close(t[k]);
	free(t);
    } else if (seq) {
	TABLE  *t = open_or_die(specs[0], fold ? TABLE_FLAG_FOLD : 0);

	if (table_dump(t, print_entry, NULL, err, sizeof(err)) < 0)
	    cli_fatal(1, "%s", err);
	table_close(t);
	found = 1;
    } else {
	for (int k = 0; k < nspecs; k++)
	    if (table_build(specs[k], update ? "-" : NULL,
			    (fold ? TABLE_BUILD_FOLD : 0) | (update ? TABLE_BUILD_UPDATE : 0),
			    postmap_warn, err, sizeof(err)) < 0)
		cli_fatal(1, "%s", err);
	found = 1;
    }
    fflush(stdout);
    for (int k = 0; k < nspecs; k++)
	free(specs[k]);
    free(specs);
    return (found ? 0 : 1);
}
