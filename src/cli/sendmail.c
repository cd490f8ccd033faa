/*
 * sendmail - sendmail(1)-compatible local submission: bin/sendmail and
 * `relayq send`.  Reads the message on stdin, turns it into CRLF lines,
 * and writes it into the maildrop (control/maildrop.c), which works
 * whether or not the daemon runs; the daemon picks it up.
 *
 * Options as Postfix's sendmail(1): -t, -f sender (-r too), -F fullname,
 * -i / -oi, -bp (mailq), -q (flush), -bm (the default), -bs (refused:
 * not implemented), -C confdir; other -oX, -v, -N, -R, -B, -X are
 * accepted and ignored.  Exit status per sysexits(3).
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "control/control.h"
#include "util/util.h"
#include "smtpd/smtpd_proto.h"

#define EX_OK_		0
#define EX_USAGE_	64
#define EX_DATAERR_	65
#define EX_NOINPUT_	66
#define EX_NOUSER_	67
#define EX_UNAVAILABLE_	69
#define EX_SOFTWARE_	70
#define EX_CANTCREAT_	73
#define EX_TEMPFAIL_	75

typedef struct ADDRS {
    char  **v;
    int     n, cap;
} ADDRS;

static void addrs_add(ADDRS *a, const char *s, size_t len)
{
    while (len > 0 && (*s == ' ' || *s == '\t')) {
	s++;
	len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r' || s[len - 1] == '\n'))
	len--;
    if (len == 0)
	return;
    if (a->n == a->cap) {
	a->cap = a->cap ? 2 * a->cap : 8;
	a->v = xrealloc(a->v, a->cap * sizeof(char *));
    }
    a->v[a->n++] = xstrndup(s, len);
}

/*
 * Addresses of a To:/Cc:/Bcc: value: comma-separated; "Name <a@b>" gives
 * a@b; (comments) and quoted strings are skipped; groups "g: a, b;" work.
 */
static void addrs_parse(ADDRS *a, const char *v)
{
    const char *p = v, *start = v, *lt = 0, *gt = 0;
    int     depth = 0, quoted = 0;
    BUF     plain = BUF_INIT;

    for (;; p++) {
	char    c = *p;

	if (quoted) {
	    if (c == '\\' && p[1])
		p++;
	    else if (c == '"')
		quoted = 0;
	    else if (c == 0)
		break;
	    continue;
	}
	if (depth) {
	    if (c == '(')
		depth++;
	    else if (c == ')')
		depth--;
	    else if (c == 0)
		break;
	    continue;
	}
	if (c == '"') {
	    quoted = 1;
	} else if (c == '(') {
	    depth = 1;
	} else if (c == '<') {
	    lt = p;
	} else if (c == '>' && lt) {
	    gt = p;
	} else if (c == ':' && !lt) {
	    buf_reset(&plain);			/* group name */
	    start = p + 1;
	} else if (c == ',' || c == ';' || c == 0) {
	    if (lt && gt)
		addrs_add(a, lt + 1, (size_t) (gt - lt - 1));
	    else if (plain.len)
		addrs_add(a, plain.data, plain.len);
	    buf_reset(&plain);
	    lt = gt = 0;
	    start = p + 1;
	    if (c == 0)
		break;
	    continue;
	}
	if (!lt && c != '(' && c != '"' && c != ' ' && c != '\t' && c != '\r' && c != '\n')
	    buf_putc(&plain, c);
    }
    (void) start;
    buf_free(&plain);
}

/* user -> user@myorigin; "" stays "" (the null sender). */
static char *qualify(const CONFIG *cf, const char *addr)
{
    if (*addr == 0 || strchr(addr, '@'))
	return (xstrdup(addr));
    return (xasprintf("%s@%s", addr, config_str(cf, "myorigin")));
}

/* Strip <> around -f's argument; "<>" is the null sender. */
static char *bare_addr(const char *s)
{
    size_t  len = strlen(s);

    if (len >= 2 && s[0] == '<' && s[len - 1] == '>')
	return (xstrndup(s + 1, len - 2));
    return (xstrdup(s));
}

/*
 * Read stdin into CRLF lines.  Without -i a line with a single "." ends
 * the message (and is not part of it).  Returns -1 as soon as the message
 * is larger than limit (0: none): memory stays bounded.
 */
static int read_message(BUF *msg, int dot_ends, long long limit)
{
    char   *line = 0;
    size_t  cap = 0;
    ssize_t n;

    while ((n = getline(&line, &cap, stdin)) > 0) {
	size_t  len = (size_t) n;

	if (line[len - 1] == '\n')
	    len--;
	if (len > 0 && line[len - 1] == '\r')
	    len--;
	if (dot_ends && len == 1 && line[0] == '.')
	    break;
	buf_append(msg, line, len);
	buf_puts(msg, "\r\n");
	if (limit > 0 && (long long) msg->len > limit) {
	    free(line);
	    return (-1);
	}
    }
    free(line);
    return (0);
}

/*
 * -t: recipients from To:, Cc:, Bcc: (continuation lines included), and
 * the Bcc: header removed.  Also notes whether From: is present.
 */
static void scan_headers(BUF *msg, int extract, ADDRS *rcpts, int *has_from)
{
    BUF     out = BUF_INIT, field = BUF_INIT;
    char   *p = msg->data, *end = msg->data + msg->len;
    int     drop = 0, collect = 0, in_hdr = 1;

    *has_from = 0;
    while (p < end) {
	char   *eol = memchr(p, '\n', (size_t) (end - p));
	size_t  len = eol ? (size_t) (eol - p + 1) : (size_t) (end - p);

	if (in_hdr && (len <= 2 && (*p == '\r' || *p == '\n'))) {
	    in_hdr = 0;
	} else if (in_hdr && (*p == ' ' || *p == '\t')) {
	    /* continuation of the previous field */
	    if (collect)
		buf_append(&field, p, len);
	    if (drop) {
		p += len;
		continue;
	    }
	} else if (in_hdr) {
	    const char *colon = memchr(p, ':', len);

	    if (collect && field.len)
		addrs_parse(rcpts, field.data);
	    buf_reset(&field);
	    drop = collect = 0;
	    if (colon == 0) {
		in_hdr = 0;			/* not a header: the body starts here */
	    } else {
		size_t  nlen = (size_t) (colon - p);

		if (nlen == 4 && str_ncasecmp(p, "From", 4) == 0)
		    *has_from = 1;
		if (extract && ((nlen == 2 && (str_ncasecmp(p, "To", 2) == 0 || str_ncasecmp(p, "Cc", 2) == 0))
				|| (nlen == 3 && str_ncasecmp(p, "Bcc", 3) == 0))) {
		    collect = 1;
		    buf_append(&field, colon + 1, len - nlen - 1);
		    drop = (nlen == 3);
		}
		if (drop) {
		    p += len;
		    continue;
		}
	    }
	}
	if (!in_hdr && collect) {
	    if (field.len)
		addrs_parse(rcpts, field.data);
	    buf_reset(&field);
	    collect = 0;
	}
	buf_append(&out, p, len);
	p += len;
    }
    if (collect && field.len)
	addrs_parse(rcpts, field.data);
    buf_free(&field);
    buf_free(msg);
    *msg = out;
    if (msg->data == 0)
	buf_puts(msg, "");
}

int     cli_sendmail(CLI *cli, int argc, char **argv)
{
    int     extract = 0, dot_ends = 1, i, ret;
    const char *from = 0, *fullname = 0;
    ADDRS   rcpts = {0, 0, 0};
    BUF     msg = BUF_INIT;
    char    err[512];
    struct passwd *pw = getpwuid(getuid());
    const char *user = pw ? pw->pw_name : "nobody";
    MAILDROP_MSG m;
    char   *sender;
    char  **qrcpts;
    int     has_from = 0;

    for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
	const char *o = argv[i];

	if (strcmp(o, "--") == 0) {
	    i++;
	    break;
	}
	if (strcmp(o, "-t") == 0) {
	    extract = 1;
	} else if (strcmp(o, "-i") == 0 || strcmp(o, "-oi") == 0) {
	    dot_ends = 0;
	} else if (strncmp(o, "-f", 2) == 0 || strncmp(o, "-r", 2) == 0) {
	    if (o[2])
		from = o + 2;
	    else if (i + 1 < argc)
		from = argv[++i];
	    else
		cli_fatal(EX_USAGE_, "%s needs an address", o);
	} else if (strncmp(o, "-F", 2) == 0) {
	    if (o[2])
		fullname = o + 2;
	    else if (i + 1 < argc)
		fullname = argv[++i];
	    else
		cli_fatal(EX_USAGE_, "-F needs a name");
	} else if (strcmp(o, "-C") == 0 || strcmp(o, "-N") == 0 || strcmp(o, "-R") == 0
		   || strcmp(o, "-B") == 0 || strcmp(o, "-X") == 0 || strcmp(o, "-V") == 0
		   || strcmp(o, "-O") == 0) {
	    i++;				/* takes a value; ignored (-C handled earlier) */
	} else if (strcmp(o, "-bp") == 0) {
	    char   *av[] = {"mailq", 0};

	    return (cli_mailq(cli, 1, av));
	} else if (strncmp(o, "-q", 2) == 0) {
	    char   *av[] = {"flush", 0};

	    return (cli_flush(cli, 1, av));
	} else if (strcmp(o, "-bs") == 0) {
	    cli_fatal(EX_SOFTWARE_, "-bs (SMTP on standard input) is not implemented; "
		      "connect to the daemon's SMTP port instead");
	} else if (strcmp(o, "-bm") == 0 || strcmp(o, "-v") == 0 || strncmp(o, "-o", 2) == 0
		   || strncmp(o, "-N", 2) == 0 || strncmp(o, "-B", 2) == 0 || strncmp(o, "-R", 2) == 0
		   || strncmp(o, "-V", 2) == 0 || strncmp(o, "-C", 2) == 0) {
	    /* accepted, no effect here */
	} else if (strncmp(o, "-b", 2) == 0) {
	    cli_fatal(EX_USAGE_, "unsupported mode %s", o);
	} else {
	    cli_fatal(EX_USAGE_, "unknown option %s", o);
	}
    }
    if (cli->cf == 0)
	cli_fatal(EX_TEMPFAIL_, "%s", cli->load_err);
    for (; i < argc; i++)
	addrs_parse(&rcpts, argv[i]);
    if (!extract && rcpts.n == 0)
	cli_fatal(EX_USAGE_, "no recipients specified (give them as arguments, or use -t)");

    {
	char   *bare = bare_addr(from ? from : user);

	sender = qualify(cli->cf, bare);
	free(bare);
    }
    /* Postfix's postdrop: "sendmail: fatal: SENDER(UID): message file too big", EX_UNAVAILABLE. */
    if (read_message(&msg, dot_ends, config_size(cli->cf, "message_size_limit")) < 0)
	cli_fatal(EX_UNAVAILABLE_, "%s(%ld): message file too big", sender, (long) getuid());
    if (ferror(stdin))
	cli_fatal(EX_NOINPUT_, "error reading the message: %s", strerror(errno));
    scan_headers(&msg, extract, &rcpts, &has_from);
    if (rcpts.n == 0)
	cli_fatal(EX_USAGE_, "no recipient addresses found in message header");
    /* The address rules of smtpd: nothing can ride along into the next hop's MAIL or RCPT. */
    if (*sender && !smtpd_addr_valid(sender))
	cli_fatal(EX_DATAERR_, "bad sender address syntax: %s", sender);
    if (fullname && !has_from) {
	/* -F: a From: header when the message has none (sendmail(1)). */
	BUF     nm = BUF_INIT;

	if (*sender)
	    buf_printf(&nm, "From: %s <%s>\r\n", fullname, sender);
	else
	    buf_printf(&nm, "From: %s <MAILER-DAEMON>\r\n", fullname);
	buf_append(&nm, msg.data, msg.len);
	buf_free(&msg);
	msg = nm;
    }
    qrcpts = xcalloc(rcpts.n + 1, sizeof(char *));
    for (i = 0; i < rcpts.n; i++) {
	qrcpts[i] = qualify(cli->cf, rcpts.v[i]);
	if (!smtpd_addr_valid(qrcpts[i]))
	    cli_fatal(EX_DATAERR_, "bad recipient address syntax: %s", qrcpts[i]);
    }

    memset(&m, 0, sizeof(m));
    m.sender = sender;
    m.rcpts = qrcpts;
    m.nrcpt = rcpts.n;
    m.uid = getuid();
    m.user = user;
    m.content = msg.data ? msg.data : "";
    m.len = msg.len;
    ret = maildrop_write(config_str(cli->cf, "queue_directory"), &m, err, sizeof(err));
    if (ret < 0 && errno == ENOENT) {
	/* No daemon has run yet: create the maildrop if we may (root, mail_owner). */
	char    ierr[256];

	struct passwd *owner = getpwnam(config_str(cli->cf, "mail_owner"));

	if (maildrop_prepare(config_str(cli->cf, "queue_directory"), owner ? owner->pw_uid : geteuid(),
			     ierr, sizeof(ierr)) == 0) {
	    ret = maildrop_write(config_str(cli->cf, "queue_directory"), &m, err, sizeof(err));
	}
    }
    if (ret < 0) {
	fprintf(stderr, "relayq: fatal: cannot submit the message: %s\n", err);
	ret = ret == MAILDROP_CREATE ? EX_CANTCREAT_ : ret == MAILDROP_DATA ? EX_DATAERR_ : EX_TEMPFAIL_;
    } else {
	ret = EX_OK_;
    }
    for (i = 0; i < rcpts.n; i++) {
	free(qrcpts[i]);
	free(rcpts.v[i]);
    }
    free(qrcpts);
    free(rcpts.v);
    free(sender);
    buf_free(&msg);
    return (ret);
}
