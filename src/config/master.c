/*
 * master.c - master.cf parsing (see master.h) and the listen addresses of
 * an inet service.
 *
 * Syntax as master(5): an entry starts in column one; lines that start
 * with white space continue it; lines whose first non-blank character is
 * '#' and blank lines are skipped, also inside an entry (Debian's
 * master.cf has comments between -o lines).  Fields are separated by white
 * space; a command argument may be "{ text with spaces }" (Postfix 3.0).
 */
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "config/master.h"

static MASTER_CF *master_read(FILE *, const char *, char *, size_t);

#define MASTER_MAX_ENTRY	(64 * 1024)	/* one logical entry */

/* Next white-space separated token of *cp, or a "{ ... }" group; NULL at end. */
static char *master_token(char **cp, int *bad)
{
    char   *s = *cp, *start;

    while (*s && isspace((unsigned char) *s))
	s++;
    if (*s == 0) {
	*cp = s;
	return (0);
    }
    if (*s == '{') {
	int     depth = 0;

	start = s;
	for (; *s; s++) {
	    if (*s == '{')
		depth++;
	    else if (*s == '}' && --depth == 0)
		break;
	}
	if (*s != '}') {
	    *bad = 1;
	    *cp = s;
	    return (0);
	}
	*s++ = 0;
	*cp = s;
	/* The text between the braces, trimmed. */
	return (str_trim(start + 1));
    }
    start = s;
    while (*s && !isspace((unsigned char) *s))
	s++;
    if (*s)
	*s++ = 0;
    *cp = s;
    return (start);
}

/* "name = value" (from -o) into "name=value"; NULL when there is no '='. */
static char *master_opt(const char *arg)
{
    const char *eq = strchr(arg, '=');
    char   *name, *res;
    const char *val;

    if (eq == 0 || eq == arg)
	return (0);
    name = xmalloc((size_t) (eq - arg) + 1);
    memcpy(name, arg, (size_t) (eq - arg));
    name[eq - arg] = 0;
    val = eq + 1;
    while (*val && isspace((unsigned char) *val))
	val++;
    res = xasprintf("%s=%s", str_trim(name), val);
    free(name);
    for (const char *cp = res; *cp != '='; cp++)
	if (!isalnum((unsigned char) *cp) && *cp != '_') {
	    free(res);
	    return (0);
	}
    return (res);
}

static int master_entry(MASTER_CF *m, char *text, int line, char *err, size_t errlen)
{
    char   *fields[8];
    char   *cp = text, *tok;
    int     bad = 0, i;
    MASTER_SERVICE *svc;

    for (i = 0; i < 8; i++) {
	if ((fields[i] = master_token(&cp, &bad)) == 0 || bad) {
	    snprintf(err, errlen, "%s, line %d: expected 8 fields (service type private "
		     "unpriv chroot wakeup maxproc command), found %d", m->path, line, i);
	    return (-1);
	}
    }
    m->svc = xrealloc(m->svc, sizeof(*m->svc) * (size_t) (m->nsvc + 1));
    svc = &m->svc[m->nsvc++];
    memset(svc, 0, sizeof(*svc));
    svc->service = xstrdup(fields[0]);
    svc->type = xstrdup(fields[1]);
    svc->command = xstrdup(fields[7]);
    svc->line = line;
    svc->opts = xcalloc(1, sizeof(char *));
    if (strcmp(fields[6], "-") == 0) {
	svc->maxproc = -1;
    } else {
	char   *end;
	long    v;

	errno = 0;
	v = strtol(fields[6], &end, 10);
	if (*end || end == fields[6] || v < 0 || v > 1000000 || errno) {
	    snprintf(err, errlen, "%s, line %d: bad maxproc field \"%s\": expected a number or \"-\"",
		     m->path, line, fields[6]);
	    return (-1);
	}
	svc->maxproc = (int) v;
    }
    while ((tok = master_token(&cp, &bad)) != 0 && !bad) {
	char   *opt;

	if (strcmp(tok, "-o") != 0) {
	    if (strncmp(tok, "-o", 2) != 0)
		continue;			/* other smtpd arguments (-v, -D, ...) */
	    tok += 2;				/* "-oname=value" */
	} else if ((tok = master_token(&cp, &bad)) == 0 || bad) {
	    if (bad)
		break;
	    snprintf(err, errlen, "%s, line %d: -o without name=value", m->path, line);
	    return (-1);
	}
	if ((opt = master_opt(tok)) == 0) {
	    snprintf(err, errlen, "%s, line %d: bad -o argument \"%s\": expected name=value",
		     m->path, line, tok);
	    return (-1);
	}
	svc->opts = xrealloc(svc->opts, sizeof(char *) * (size_t) (svc->nopts + 2));
	svc->opts[svc->nopts++] = opt;
	svc->opts[svc->nopts] = 0;
    }
    if (bad) {
	snprintf(err, errlen, "%s, line %d: '{' without a matching '}'", m->path, line);
	return (-1);
    }
    return (0);
}

MASTER_CF *master_load(const char *path, char *err, size_t errlen)
{
    MASTER_CF *m;
    FILE   *fp;

    *err = 0;
    if ((fp = fopen(path, "r")) == 0) {
	if (errno != ENOENT)
	    snprintf(err, errlen, "open %s: %s", path, strerror(errno));
	return (0);
    }
    m = master_read(fp, path, err, errlen);
    fclose(fp);
    return (m);
}

MASTER_CF *master_parse(const char *path, const char *text, size_t len, char *err, size_t errlen)
{
    MASTER_CF *m;
    FILE   *fp;

    *err = 0;
    if (len == 0)
	text = "\n", len = 1;			/* fmemopen() refuses an empty buffer */
    if ((fp = fmemopen((void *) (uintptr_t) text, len, "r")) == 0) {
	snprintf(err, errlen, "%s: %s", path, strerror(errno));
	return (0);
    }
    m = master_read(fp, path, err, errlen);
    fclose(fp);
    if (m == 0 && *err == 0)
	snprintf(err, errlen, "%s: read error", path);
    return (m);
}

static MASTER_CF *master_read(FILE *fp, const char *path, char *err, size_t errlen)
{
    MASTER_CF *m;
    char   *line = 0;
    size_t  cap = 0;
    ssize_t got;
    BUF     entry = BUF_INIT;
    int     lineno = 0, start = 0, ret = 0;

    m = xcalloc(1, sizeof(*m));
    m->path = xstrdup(path);
    for (;;) {
	const char *cp;

	got = getline(&line, &cap, fp);
	if (got >= 0) {
	    lineno++;
	    while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
		line[--got] = 0;
	    for (cp = line; *cp && isspace((unsigned char) *cp); cp++)
		 /* void */ ;
	    if (*cp == 0 || *cp == '#')
		continue;
	    if (isspace((unsigned char) line[0])) {
		if (start == 0) {
		    snprintf(err, errlen, "%s, line %d: text starts with white space but "
			     "continues no service entry", path, lineno);
		    ret = -1;
		    break;
		}
		if (entry.len + (size_t) got > MASTER_MAX_ENTRY) {
		    snprintf(err, errlen, "%s, line %d: entry longer than %d bytes",
			     path, start, MASTER_MAX_ENTRY);
		    ret = -1;
		    break;
		}
		buf_putc(&entry, ' ');
		buf_puts(&entry, line);
		continue;
	    }
	}
	if (start && master_entry(m, entry.data, start, err, errlen) < 0) {
	    ret = -1;
	    break;
	}
	start = 0;
	if (got < 0)
	    break;
	buf_reset(&entry);
	buf_puts(&entry, line);
	start = lineno;
    }
    if (ret == 0 && ferror(fp)) {
	snprintf(err, errlen, "read %s: %s", path, strerror(errno));
	ret = -1;
    }
    free(line);
    buf_free(&entry);
    if (ret < 0) {
	master_free(m);
	return (0);
    }
    return (m);
}

void    master_free(MASTER_CF *m)
{
    if (m == 0)
	return;
    for (int i = 0; i < m->nsvc; i++) {
	free(m->svc[i].service);
	free(m->svc[i].type);
	free(m->svc[i].command);
	str_list_free(m->svc[i].opts);
    }
    free(m->svc);
    free(m->path);
    free(m);
}

int     master_is_smtpd(const MASTER_SERVICE *svc)
{
    const char *slash = strrchr(svc->command, '/');

    return (strcmp(svc->type, "inet") == 0
	    && strcmp(slash ? slash + 1 : svc->command, "smtpd") == 0);
}

static int master_number(const char *s)
{
    long    v = 0;

    if (*s == 0)
	return (-1);
    for (; *s; s++) {
	if (!isdigit((unsigned char) *s))
	    return (-1);
	v = v * 10 + (*s - '0');
	if (v > 65535)
	    return (-1);
    }
    return ((int) v);
}

int     master_port(const char *name, char *const *known)
{
    struct servent *se;
    int     n;

    if ((n = master_number(name)) >= 0)
	return (n);
    /* "smtps=submissions=465": every name before the last '=' maps to it. */
    for (; known && *known; known++) {
	const char *item = *known, *last = strrchr(item, '=');
	const char *cp = item;
	size_t  nl = strlen(name);

	if (last == 0 || (n = master_number(last + 1)) < 0)
	    continue;
	while (cp < last) {
	    const char *eq = strchr(cp, '=');

	    if ((size_t) (eq - cp) == nl && strncmp(cp, name, nl) == 0)
		return (n);
	    cp = eq + 1;
	}
    }
    if ((se = getservbyname(name, "tcp")) != 0)
	return (ntohs((unsigned short) se->s_port));
    return (-1);
}

static void master_add(char ***list, int *n, char *s)
{
    *list = xrealloc(*list, sizeof(char *) * (size_t) (*n + 2));
    (*list)[(*n)++] = s;
    (*list)[*n] = 0;
}

static int master_proto(char *const *protos, const char *want)
{
    if (protos == 0 || protos[0] == 0)
	return (1);
    for (; *protos; protos++)
	if (strcmp(*protos, "all") == 0 || strcmp(*protos, want) == 0)
	    return (1);
    return (0);
}

char  **master_listen_addrs(const MASTER_SERVICE *svc, char *const *known,
			            char *const *ifaces, char *const *protos,
			            char *err, size_t errlen)
{
    char  **out = 0;
    int     n = 0, port;
    const char *svcname = svc->service;
    const char *colon = strrchr(svcname, ':');
    const char *rb = strrchr(svcname, ']');

    if (colon && (rb == 0 || rb < colon)) {
	/* host:port as written ("[::1]:2525" keeps its brackets). */
	if ((port = master_port(colon + 1, known)) < 0) {
	    snprintf(err, errlen, "%s, line %d: unknown service \"%s\": not a port number, "
		     "not in known_tcp_ports or /etc/services", "master.cf", svc->line, colon + 1);
	    return (0);
	}
	if (colon == svcname) {
	    snprintf(err, errlen, "master.cf, line %d: empty host in \"%s\"", svc->line, svcname);
	    return (0);
	}
	master_add(&out, &n, xasprintf("%.*s:%d", (int) (colon - svcname), svcname, port));
	return (out);
    }
    if ((port = master_port(svcname, known)) < 0) {
	snprintf(err, errlen, "master.cf, line %d: unknown service \"%s\": not a port number, "
		 "not in known_tcp_ports or /etc/services", svc->line, svcname);
	return (0);
    }
    for (; ifaces && *ifaces; ifaces++) {
	const char *a = *ifaces;

	if (strcmp(a, "all") == 0) {
	    if (master_proto(protos, "ipv4"))
		master_add(&out, &n, xasprintf("0.0.0.0:%d", port));
	    if (master_proto(protos, "ipv6"))
		master_add(&out, &n, xasprintf("[::]:%d", port));
	} else if (strcmp(a, "loopback-only") == 0) {
	    if (master_proto(protos, "ipv4"))
		master_add(&out, &n, xasprintf("127.0.0.1:%d", port));
	    if (master_proto(protos, "ipv6"))
		master_add(&out, &n, xasprintf("[::1]:%d", port));
	} else if (strchr(a, ':')) {
	    size_t  l = strlen(a);

	    if (a[0] == '[' && a[l - 1] == ']')
		master_add(&out, &n, xasprintf("%s:%d", a, port));
	    else
		master_add(&out, &n, xasprintf("[%s]:%d", a, port));
	} else {
	    master_add(&out, &n, xasprintf("%s:%d", a, port));
	}
    }
    if (n == 0) {
	snprintf(err, errlen, "master.cf, line %d: service %s: inet_interfaces gives no address",
		 svc->line, svcname);
	return (0);
    }
    return (out);
}
