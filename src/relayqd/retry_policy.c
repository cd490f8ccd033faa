/*
 * retry_policy.c - relayq_retry_policy_maps in the daemon: which retry
 * policy a recipient has (its domain, then parent domains, as transport_maps
 * looks them up), and the check of every value when the configuration is
 * loaded, so that a malformed one is an error naming its file and line.
 * The rules themselves are the scheduler's (qmgr_policy_parse(), qmgr).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "log/log.h"
#include "config/config.h"
#include "table/table.h"
#include "qmgr/qmgr.h"
#include "relayqd/retry_policy.h"

static TABLE_LIST *rp_list;
static char *rp_spec;

/* The open list for cf's value (shared with the daemon's own copy; reopened when it changes). */
static TABLE_LIST *rp_open(const CONFIG *cf)
{
    const char *spec = config_known("relayq_retry_policy_maps") ?
	config_str(cf, "relayq_retry_policy_maps") : "";
    char    err[512];

    if (*spec == 0) {
	rp_list = table_list_close(rp_list);
	free(rp_spec);
	rp_spec = NULL;
	return (NULL);
    }
    if (rp_list && rp_spec && strcmp(rp_spec, spec) == 0)
	return (rp_list);
    rp_list = table_list_close(rp_list);
    free(rp_spec);
    rp_spec = xstrdup(spec);
    if ((rp_list = table_list_open("relayq_retry_policy_maps", spec, TABLE_FLAG_FOLD,
				   err, sizeof(err))) == NULL)
	log_warn("qmgr", "%s; retry policies are not applied", err);
    return (rp_list);
}

int     retry_policy_enabled(const CONFIG *cf)
{
    return (rp_open(cf) != NULL);
}

const char *retry_policy_value(const CONFIG *cf, const char *rcpt, char *buf, size_t len)
{
    TABLE_LIST *l = rp_open(cf);
    const char *at, *val;
    char    err[512];
    int     rc;

    if (l == NULL || (at = strrchr(rcpt, '@')) == NULL || at[1] == 0)
	return (NULL);
    rc = table_find_domain(l, at + 1, table_pdms(config_str(cf, "parent_domain_matches_subdomains"),
						 "relayq_retry_policy_maps") ?
			   TABLE_DOM_PARENT : TABLE_DOM_DOTPARENT, &val, err, sizeof(err));
    if (rc == TABLE_ERROR) {
	log_warn("qmgr", "relayq_retry_policy_maps: %s; the configuration's schedule applies", err);
	return (NULL);
    }
    if (rc != TABLE_FOUND)
	return (NULL);
    snprintf(buf, len, "%s", val);
    return (buf);
}

/* ---- checking every value ---- */

typedef struct CHECK {
    const QMGR_PARAMS *p;
    const char *where;
    char   *err;
    size_t  errlen;
    int     bad;
} CHECK;

static int check_value(CHECK *c, const char *key, const char *val, int line)
{
    QMGR_POLICY pol;
    char    why[300];

    if (qmgr_policy_parse(val, c->p, &pol, why, sizeof(why)) == 0)
	return (0);
    if (line > 0)
	snprintf(c->err, c->errlen, "relayq_retry_policy_maps: %s, line %d: %s: %s",
		 c->where, line, key, why);
    else
	snprintf(c->err, c->errlen, "relayq_retry_policy_maps: %s: %s: %s", c->where, key, why);
    c->bad = 1;
    return (-1);
}

/* A source file in postmap's format: "key value" lines, indented lines continue. */
static int check_source(CHECK *c, const char *path)
{
    FILE   *fp = fopen(path, "r");
    char   *line = NULL, *key = NULL;
    size_t  cap = 0;
    BUF     val = BUF_INIT;
    int     n = 0, start = 0, rc = 0;

    if (fp == NULL)
	return (0);				/* the table layer reports that */
    for (;;) {
	ssize_t len = getline(&line, &cap, fp);
	char   *cp;

	if (len >= 0) {
	    n++;
	    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		line[--len] = 0;
	}
	if (len >= 0 && (line[0] == ' ' || line[0] == '\t') && key) {
	    buf_putc(&val, ' ');
	    buf_puts(&val, line);
	    continue;
	}
	if (key) {
	    if (check_value(c, key, val.data ? val.data : "", start) < 0) {
		rc = -1;
		break;
	    }
	    free(key);
	    key = NULL;
	}
	if (len < 0)
	    break;
	for (cp = line; *cp == ' ' || *cp == '\t'; cp++)
	     /* void */ ;
	if (*cp == 0 || *cp == '#')
	    continue;
	key = xstrndup(cp, strcspn(cp, " \t"));
	cp += strlen(key);
	while (*cp == ' ' || *cp == '\t')
	    cp++;
	buf_reset(&val);
	buf_puts(&val, cp);
	start = n;
    }
    free(key);
    free(line);
    buf_free(&val);
    fclose(fp);
    return (rc);
}

static int check_dump(void *ctx, const char *key, const char *val)
{
    return (check_value(ctx, key, val, 0) < 0 ? 1 : 0);
}

int     retry_policy_check(const CONFIG *cf, const QMGR_PARAMS *p, char *err, size_t errlen)
{
    char  **elems;
    int     rc = 0;

    if (!config_known("relayq_retry_policy_maps"))
	return (0);
    elems = config_list(cf, "relayq_retry_policy_maps", 0);
    for (char **e = elems; *e && rc == 0; e++) {
	CHECK   c = {p, *e, err, errlen, 0};
	const char *colon = strchr(*e, ':');

	if (colon == NULL)
	    continue;
	if (strncmp(*e, "texthash:", 9) == 0) {
	    rc = check_source(&c, colon + 1);
	} else if (strncmp(*e, "inline:", 7) == 0) {
	    /* inline:{ key=value, { key = value with spaces } }: the text itself */
	    const char *lb = strchr(*e, '{'), *rb = strrchr(*e, '}');
	    char  **items;
	    int     ni;

	    if (lb && rb && rb > lb) {
		char   *inner = xstrndup(lb + 1, (size_t) (rb - lb - 1));

		items = str_split_list(inner, &ni);
		for (int k = 0; k < ni && !c.bad; k++) {
		    char   *it = items[k], *eq;

		    if (*it == '{') {
			it++;
			it[strcspn(it, "}")] = 0;
		    }
		    if ((eq = strchr(it, '=')) == NULL)
			continue;
		    *eq = 0;
		    (void) check_value(&c, str_trim(it), str_trim(eq + 1), 0);
		}
		str_list_free(items);
		free(inner);
	    }
	    rc = c.bad ? -1 : 0;
	} else {
	    /* hash, btree, lmdb, cdb: every stored entry (the source's line when there is one). */
	    TABLE  *t = table_open(*e, TABLE_FLAG_FOLD, "relayq_retry_policy_maps", err, errlen);
	    char    why[256];

	    if (t == NULL) {
		rc = -1;
		break;
	    }
	    /* regexp, pcre, socketmap cannot be listed: their values are checked at each lookup */
	    (void) table_dump(t, check_dump, &c, why, sizeof(why));
	    table_close(t);
	    rc = c.bad ? -1 : 0;
	}
    }
    str_list_free(elems);
    return (rc);
}
