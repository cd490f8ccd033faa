/*
 * smtpd_proto - pure SMTP server protocol functions (see smtpd_proto.h).
 *
 * Everything here works on memory only, so that the unit tests and the
 * fuzzers exercise exactly the code the daemon runs.  Texts of replies are
 * those of Postfix 3.7's smtpd(8).
 */
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <errno.h>
#include <arpa/inet.h>

#include "util/util.h"
#include "queue/queue.h"
#include "smtpd/smtpd_proto.h"

int     smtpd_bare_mode(const char *value)
{
    if (value == 0 || *value == 0 || str_casecmp(value, "normalize") == 0)
	return (SMTPD_BARE_NORMALIZE);
    if (str_casecmp(value, "yes") == 0 || str_casecmp(value, "reject") == 0)
	return (SMTPD_BARE_REJECT);
    if (str_casecmp(value, "no") == 0)
	return (SMTPD_BARE_NO);
    return (-1);
}

/* Framing */

int     smtpd_line_get(SMTPD_LINER *lr, const char *buf, size_t len,
		               size_t *linelen, size_t *consumed, int *crlf)
{
    const char *lf = memchr(buf, '\n', len);
    size_t  pos;

    *linelen = 0;
    *crlf = 0;
    if (lr->skipping) {
	if (lf == 0) {
	    *consumed = len;
	    return (SMTPD_LINE_MORE);
	}
	*consumed = (size_t) (lf - buf) + 1;
	lr->skipping = 0;
	return (SMTPD_LINE_TOOLONG);
    }
    if (lf == 0) {
	/* Allow one byte for a CR whose LF has not arrived yet. */
	if (len > lr->limit + 1) {
	    lr->skipping = 1;
	    *consumed = len;
	} else {
	    *consumed = 0;
	}
	return (SMTPD_LINE_MORE);
    }
    pos = (size_t) (lf - buf);
    *consumed = pos + 1;
    if (pos > 0 && buf[pos - 1] == '\r') {
	*crlf = 1;
	pos--;
    }
    if (pos > lr->limit)
	return (SMTPD_LINE_TOOLONG);
    *linelen = pos;
    return (SMTPD_LINE_OK);
}

void    smtpd_cmd_split(char *line, char **verb, char **arg)
{
    char   *cp = line;
    char   *end;

    while (*cp == ' ' || *cp == '\t')
	cp++;
    *verb = cp;
    while (*cp && *cp != ' ' && *cp != '\t')
	cp++;
    if (*cp)
	*cp++ = 0;
    while (*cp == ' ' || *cp == '\t')
	cp++;
    end = cp + strlen(cp);
    while (end > cp && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
	*--end = 0;
    *arg = cp;
}

/* Addresses */

/*
 * The domain of an address: a host name (Postfix's valid_hostname(): labels
 * of letters, digits, '-' and '_', or UTF-8 bytes, 1-63 long, not beginning
 * or ending with '-', at most 255 in all, no empty label, not numeric at
 * the top) or an address literal ([1.2.3.4], [IPv6:...]).  Anything else,
 * "[127.0.0.1]:2525" or "host:25" among them, is refused: a port never
 * comes from an address.
 */
static int smtpd_domain_ok(const char *a, size_t len)
{
    const char *at = 0, *d;
    size_t  dlen, i, label = 0;
    int     quoted = 0, numeric = 1;
    char    lit[INET6_ADDRSTRLEN + 8];
    unsigned char buf[sizeof(struct in6_addr)];

    for (i = 0; i < len; i++) {
	if (quoted && a[i] == '\\') {
	    i++;
	    continue;
	}
	if (a[i] == '"')
	    quoted = !quoted;
	else if (!quoted && a[i] == '@')
	    at = a + i;
    }
    if (at == 0)
	return (1);				/* "postmaster": no domain at all */
    d = at + 1;
    dlen = (size_t) (a + len - d);
    if (dlen == 0 || dlen > 255)
	return (0);
    if (d[0] == '[') {
	if (d[dlen - 1] != ']' || dlen - 2 >= sizeof(lit))
	    return (0);
	memcpy(lit, d + 1, dlen - 2);
	lit[dlen - 2] = 0;
	if (str_ncasecmp(lit, "IPv6:", 5) == 0)
	    return (inet_pton(AF_INET6, lit + 5, buf) == 1);
	return (inet_pton(AF_INET, lit, buf) == 1);
    }
    for (i = 0; i <= dlen; i++) {
	unsigned char c = i < dlen ? (unsigned char) d[i] : '.';

	if (c == '.') {
	    if (label == 0 || label > 63 || d[i - 1] == '-')
		return (0);
	    if (i < dlen)
		numeric = 1;
	    label = 0;
	    continue;
	}
	if (!(isalnum(c) || c == '-' || c == '_' || c >= 0x80))
	    return (0);
	if (c == '-' && label == 0)
	    return (0);
	if (!isdigit(c))
	    numeric = 0;
	label++;
    }
    return (!numeric);
}

/* Check an address (between the brackets, source route removed). */
static int smtpd_addr_ok(const char *a, size_t len)
{
    int     quoted = 0;
    size_t  i;

    for (i = 0; i < len; i++) {
	unsigned char c = (unsigned char) a[i];

	if (c < 0x20 || c == 0x7f)
	    return (0);
	if (quoted) {
	    if (c == '\\') {
		if (++i >= len)
		    return (0);
	    } else if (c == '"') {
		quoted = 0;
	    }
	    continue;
	}
	if (c == '"')
	    quoted = 1;
	else if (c == ' ' || c == '<' || c == '>' || c == '(' || c == ')'
		 || c == ',' || c == ';' || c == '\\')
	    return (0);
    }
    return (quoted == 0 && smtpd_domain_ok(a, len));
}

int     smtpd_addr_valid(const char *addr)
{
    return (*addr && smtpd_addr_ok(addr, strlen(addr)));
}

int     smtpd_parse_path(const char *arg, const char *kw, char **addr, const char **params)
{
    size_t  kwlen = strlen(kw);
    const char *cp;
    const char *start;
    const char *end;

    *addr = 0;
    *params = "";
    if (str_ncasecmp(arg, kw, kwlen) != 0)
	return (SMTPD_PATH_SYNTAX);
    cp = arg + kwlen;
    while (*cp == ' ' || *cp == '\t')
	cp++;
    if (*cp == 0)
	return (SMTPD_PATH_SYNTAX);
    if (*cp == '<') {
	int     quoted = 0;

	start = ++cp;
	for (; *cp; cp++) {
	    if (quoted && *cp == '\\' && cp[1]) {
		cp++;
		continue;
	    }
	    if (*cp == '"')
		quoted = !quoted;
	    else if (!quoted && *cp == '>')
		break;
	}
	if (*cp != '>')
	    return (SMTPD_PATH_BAD);
	end = cp++;
	if (*cp != 0 && *cp != ' ' && *cp != '\t')
	    return (SMTPD_PATH_BAD);
    } else {
	start = cp;
	while (*cp && *cp != ' ' && *cp != '\t')
	    cp++;
	end = cp;
    }
    while (*cp == ' ' || *cp == '\t')
	cp++;
    *params = cp;

    /* Source route "@a,@b:user@c": keep only what follows the colon. */
    if (start < end && *start == '@') {
	const char *colon = memchr(start, ':', (size_t) (end - start));

	if (colon == 0)
	    return (SMTPD_PATH_BAD);
	start = colon + 1;
	if (start == end)
	    return (SMTPD_PATH_BAD);
    }
    if (!smtpd_addr_ok(start, (size_t) (end - start)))
	return (SMTPD_PATH_BAD);
    *addr = xstrndup(start, (size_t) (end - start));
    return (SMTPD_PATH_OK);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
	return (c - '0');
    if (c >= 'A' && c <= 'F')
	return (c - 'A' + 10);
    if (c >= 'a' && c <= 'f')
	return (c - 'a' + 10);
    return (-1);
}

int     smtpd_xtext_decode(const char *in, char **out)
{
    BUF     b = BUF_INIT;
    const unsigned char *cp;

    *out = 0;
    for (cp = (const unsigned char *) in; *cp; cp++) {
	if (*cp == '+') {
	    int     h1 = cp[1] ? hexval(cp[1]) : -1;
	    int     h2 = h1 >= 0 && cp[2] ? hexval(cp[2]) : -1;

	    if (h1 < 0 || h2 < 0 || h1 * 16 + h2 == 0) {
		buf_free(&b);
		return (-1);
	    }
	    buf_putc(&b, h1 * 16 + h2);
	    cp += 2;
	} else if (*cp < 33 || *cp > 126 || *cp == '=') {
	    buf_free(&b);
	    return (-1);
	} else {
	    buf_putc(&b, *cp);
	}
    }
    if (b.data == 0)
	buf_puts(&b, "");
    *out = buf_steal(&b);
    return (0);
}

/* Return the next white-space separated word of *cpp (in a copy). */
static char *next_word(const char **cpp)
{
    const char *cp = *cpp;
    const char *start;

    while (*cp == ' ' || *cp == '\t')
	cp++;
    if (*cp == 0) {
	*cpp = cp;
	return (0);
    }
    start = cp;
    while (*cp && *cp != ' ' && *cp != '\t')
	cp++;
    *cpp = cp;
    return (xstrndup(start, (size_t) (cp - start)));
}

static int all_printable(const char *s)
{
    for (; *s; s++)
	if ((unsigned char) *s < 0x20 || (unsigned char) *s > 0x7e)
	    return (0);
    return (1);
}

int     smtpd_mail_params(const char *params, long long size_limit, SMTPD_MAILP *mp,
			          char *reply, size_t replylen)
{
    char   *w;

    memset(mp, 0, sizeof(*mp));
    mp->size = -1;
    while ((w = next_word(&params)) != 0) {
	int     bad = 0;

	if (str_has_prefix_ci(w, "SIZE=")) {
	    const char *v = w + 5;
	    char   *end;
	    long long n;

	    errno = 0;
	    n = (*v >= '0' && *v <= '9') ? strtoll(v, &end, 10) : -1;
	    if (n < 0 || errno || *end) {
		snprintf(reply, replylen, "501 5.5.4 Bad message size syntax");
		bad = 1;
	    } else if (size_limit > 0 && n > size_limit) {
		snprintf(reply, replylen, "552 5.3.4 Message size exceeds fixed limit");
		bad = 1;
	    } else {
		mp->size = n;
	    }
	} else if (str_casecmp(w, "BODY=8BITMIME") == 0) {
	    mp->body8 = 1;
	} else if (str_casecmp(w, "BODY=7BIT") == 0) {
	    mp->body8 = 0;
	} else if (str_casecmp(w, "SMTPUTF8") == 0) {
	    mp->smtputf8 = 1;
	} else if (str_has_prefix_ci(w, "RET=")) {
	    if (mp->ret == 0 && str_casecmp(w + 4, "FULL") == 0)
		mp->ret = QRET_FULL;
	    else if (mp->ret == 0 && str_casecmp(w + 4, "HDRS") == 0)
		mp->ret = QRET_HDRS;
	    else {
		snprintf(reply, replylen, "501 5.5.4 Bad RET parameter syntax");
		bad = 1;
	    }
	} else if (str_has_prefix_ci(w, "ENVID=")) {
	    char   *dec;

	    if (mp->envid || smtpd_xtext_decode(w + 6, &dec) < 0 || *dec == 0
		|| !all_printable(dec)) {
		if (mp->envid == 0 && dec)
		    free(dec);
		snprintf(reply, replylen, "501 5.5.4 Bad ENVID parameter syntax");
		bad = 1;
	    } else {
		mp->envid = dec;
	    }
	} else if (str_has_prefix_ci(w, "AUTH=")) {
	    /* RFC 4954: kept as sent (xtext) for the log, as Postfix. */
	    if (mp->auth) {
		snprintf(reply, replylen, "503 5.5.4 Error: multiple AUTH= options");
		bad = 1;
	    } else {
		mp->auth = xstrdup(w + 5);
		for (char *cp = mp->auth; *cp; cp++)
		    if ((unsigned char) *cp < 0x21 || (unsigned char) *cp > 0x7e)
			*cp = '?';
	    }
	} else {
	    snprintf(reply, replylen, "555 5.5.4 Unsupported option: %s", w);
	    bad = 1;
	}
	free(w);
	if (bad) {
	    smtpd_mailp_free(mp);
	    return (-1);
	}
    }
    return (0);
}

void    smtpd_mailp_free(SMTPD_MAILP *mp)
{
    free(mp->envid);
    mp->envid = 0;
    free(mp->auth);
    mp->auth = 0;
}

static int parse_notify(const char *v)
{
    int     bits = 0;
    char  **list;
    int     n, i;

    if (*v == 0 || v[strlen(v) - 1] == ',' || *v == ',' || strstr(v, ",,"))
	return (-1);
    list = str_split_list(v, &n);
    for (i = 0; i < n; i++) {
	int     bit;

	if (str_casecmp(list[i], "NEVER") == 0)
	    bit = QNOTIFY_NEVER;
	else if (str_casecmp(list[i], "SUCCESS") == 0)
	    bit = QNOTIFY_SUCCESS;
	else if (str_casecmp(list[i], "FAILURE") == 0)
	    bit = QNOTIFY_FAILURE;
	else if (str_casecmp(list[i], "DELAY") == 0)
	    bit = QNOTIFY_DELAY;
	else
	    bit = -1;
	if (bit < 0 || (bits & bit)) {
	    bits = -1;
	    break;
	}
	bits |= bit;
    }
    str_list_free(list);
    if (bits > 0 && (bits & QNOTIFY_NEVER) && bits != QNOTIFY_NEVER)
	bits = -1;
    return (bits <= 0 ? -1 : bits);
}

int     smtpd_rcpt_params(const char *params, SMTPD_RCPTP *rp, char *reply, size_t replylen)
{
    char   *w;

    memset(rp, 0, sizeof(*rp));
    while ((w = next_word(&params)) != 0) {
	int     bad = 0;

	if (str_has_prefix_ci(w, "NOTIFY=")) {
	    int     bits = rp->notify ? -1 : parse_notify(w + 7);

	    if (bits < 0) {
		snprintf(reply, replylen, "501 5.5.4 Error: Bad NOTIFY parameter syntax");
		bad = 1;
	    } else {
		rp->notify = bits;
	    }
	} else if (str_has_prefix_ci(w, "ORCPT=")) {
	    const char *v = w + 6;
	    const char *semi = strchr(v, ';');
	    const char *cp;
	    char   *dec = 0;

	    bad = (rp->orcpt != 0 || semi == 0 || semi == v);
	    for (cp = v; !bad && cp < semi; cp++)
		if (!isalnum((unsigned char) *cp) && *cp != '-')
		    bad = 1;
	    if (!bad && (smtpd_xtext_decode(semi + 1, &dec) < 0 || *dec == 0))
		bad = 1;
	    free(dec);
	    if (bad)
		snprintf(reply, replylen, "501 5.5.4 Error: Bad ORCPT parameter syntax");
	    else
		rp->orcpt = xstrdup(v);
	} else {
	    snprintf(reply, replylen, "555 5.5.4 Unsupported option: %s", w);
	    bad = 1;
	}
	free(w);
	if (bad) {
	    smtpd_rcptp_free(rp);
	    return (-1);
	}
    }
    return (0);
}

void    smtpd_rcptp_free(SMTPD_RCPTP *rp)
{
    free(rp->orcpt);
    rp->orcpt = 0;
}

/* DATA */

#define D_BOL		0		/* at the start of a line */
#define D_MID		1		/* inside a line */
#define D_CR		2		/* inside a line, a CR was the last byte */
#define D_DOT		3		/* a "." at the start of a line */
#define D_DOTCR		4		/* ".\r" at the start of a line */
#define D_DONE		5

void    smtpd_data_init(SMTPD_DATA *d, int mode, size_t size_limit, BUF *out)
{
    memset(d, 0, sizeof(*d));
    d->st = D_BOL;
    /* The DATA command line ended with CRLF (or was normalized to it). */
    d->prev_crlf = 1;
    d->mode = mode;
    d->size_limit = size_limit;
    d->out = out;
}

static void data_put(SMTPD_DATA *d, const char *p, size_t n)
{
    d->size += n;
    if (d->overflow)
	return;
    if (d->size_limit > 0 && d->size > d->size_limit) {
	d->overflow = 1;
	buf_free(d->out);
	return;
    }
    buf_append(d->out, p, n);
}

int     smtpd_data_feed(SMTPD_DATA *d, const char *buf, size_t len, size_t *consumed)
{
    size_t  i;

    for (i = 0; i < len; i++) {
	int     c = (unsigned char) buf[i];

	switch (d->st) {
	case D_BOL:
	    if (c == '.') {
		d->st = D_DOT;
		break;
	    }
	    /* FALLTHROUGH */
	case D_MID:
    mid:
	    if (c == '\r') {
		d->st = D_CR;
	    } else if (c == '\n') {
		/* Bare LF: a line end, but never part of end-of-data. */
		d->bare_lf = 1;
		if (d->mode == SMTPD_BARE_REJECT) {
		    *consumed = i + 1;
		    return (SMTPD_DATA_BARE_LF);
		}
		data_put(d, "\r\n", 2);
		d->prev_crlf = 0;
		d->st = D_BOL;
	    } else {
		/* The rest of the line up to CR or LF, in one piece (memchr: no byte loop). */
		const char *end = buf + len, *cr, *lf;

		if ((cr = memchr(buf + i, '\r', len - i)) != NULL)
		    end = cr;
		if ((lf = memchr(buf + i, '\n', (size_t) (end - (buf + i)))) != NULL)
		    end = lf;
		data_put(d, buf + i, (size_t) (end - (buf + i)));
		d->st = D_MID;
		i = (size_t) (end - buf) - 1;
	    }
	    break;
	case D_CR:
	    if (c == '\n') {
		data_put(d, "\r\n", 2);
		d->prev_crlf = 1;
		d->st = D_BOL;
	    } else {
		/* A bare CR is data. */
		data_put(d, "\r", 1);
		d->st = D_MID;
		goto mid;
	    }
	    break;
	case D_DOT:
	    if (c == '\r') {
		d->st = D_DOTCR;
	    } else {
		/* Dot-unstuffing: drop the leading dot, keep the rest. */
		d->st = D_MID;
		goto mid;
	    }
	    break;
	case D_DOTCR:
	    if (c == '\n' && d->prev_crlf) {
		d->st = D_DONE;
		*consumed = i + 1;
		return (SMTPD_DATA_END);
	    }
	    if (c == '\n') {
		/* "." after a bare-LF line: an (unstuffed) empty line. */
		data_put(d, "\r\n", 2);
		d->prev_crlf = 1;
		d->st = D_BOL;
	    } else {
		data_put(d, "\r", 1);
		d->st = D_MID;
		goto mid;
	    }
	    break;
	default:
	    *consumed = i;
	    return (SMTPD_DATA_END);
	}
    }
    *consumed = len;
    return (SMTPD_DATA_MORE);
}

/* Networks and domains */

static int parse_addr(const char *s, unsigned char *bytes, int *family)
{
    char    tmp[INET6_ADDRSTRLEN + 2];
    size_t  n = strlen(s);

    if (n >= sizeof(tmp))
	return (-1);
    memcpy(tmp, s, n + 1);
    if (n >= 2 && tmp[0] == '[' && tmp[n - 1] == ']') {
	tmp[n - 1] = 0;
	memmove(tmp, tmp + 1, n - 1);
    }
    if (inet_pton(AF_INET, tmp, bytes) == 1) {
	*family = AF_INET;
	return (0);
    }
    if (inet_pton(AF_INET6, tmp, bytes) == 1) {
	/* An IPv4-mapped client address matches IPv4 networks. */
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (memcmp(bytes, mapped, 12) == 0) {
	    memmove(bytes, bytes + 12, 4);
	    *family = AF_INET;
	} else {
	    *family = AF_INET6;
	}
	return (0);
    }
    return (-1);
}

int     smtpd_net_match(const char *addr, char *const *nets)
{
    unsigned char a[16], n[16];
    int     af, nf;

    if (addr == 0 || nets == 0 || parse_addr(addr, a, &af) < 0)
	return (0);
    for (; *nets; nets++) {
	char    tmp[80];
	char   *slash;
	int     bits, maxbits, i;

	if (strlen(*nets) >= sizeof(tmp))
	    continue;
	strcpy(tmp, *nets);
	if ((slash = strrchr(tmp, '/')) != 0)
	    *slash++ = 0;
	if (parse_addr(tmp, n, &nf) < 0 || nf != af)
	    continue;
	maxbits = af == AF_INET ? 32 : 128;
	if (slash) {
	    char   *end;
	    long    v = strtol(slash, &end, 10);

	    if (*slash == 0 || *end || v < 0 || v > maxbits)
		continue;
	    bits = (int) v;
	} else {
	    bits = maxbits;
	}
	for (i = 0; i < bits / 8; i++)
	    if (a[i] != n[i])
		break;
	if (i < bits / 8)
	    continue;
	if (bits % 8) {
	    unsigned char mask = (unsigned char) (0xff << (8 - bits % 8));

	    if ((a[i] & mask) != (n[i] & mask))
		continue;
	}
	return (1);
    }
    return (0);
}

int     (*smtpd_domain_table_fn) (const char *spec, const char *domain);

int     smtpd_domain_match(const char *domain, char *const *domains)
{
    size_t  dl;

    if (domain == 0 || domains == 0)
	return (0);
    dl = strlen(domain);
    while (dl > 0 && domain[dl - 1] == '.')
	dl--;
    if (dl == 0)
	return (0);
    for (; *domains; domains++) {
	const char *e = *domains;
	size_t  el;
	int     sub_only = 0;

	if (*e == '.') {
	    sub_only = 1;
	    e++;
	}
	el = strlen(e);
	while (el > 0 && e[el - 1] == '.')
	    el--;
	/*
	 * type:name: a lookup table (smtpd.c points the hook at the table
	 * layer; without it such an element matches nothing).
	 */
	if (!sub_only && strchr(e, ':') && e[0] != '[') {
	    int     rc = smtpd_domain_table_fn ? smtpd_domain_table_fn(e, domain) : 0;

	    if (rc != 0)
		return (rc);
	    continue;
	}
	if (el == 0 || strchr(e, '/') || strchr(e, ':'))
	    continue;
	if (!sub_only && dl == el && str_ncasecmp(domain, e, el) == 0)
	    return (1);
	if (dl > el && domain[dl - el - 1] == '.'
	    && str_ncasecmp(domain + dl - el, e, el) == 0)
	    return (1);
    }
    return (0);
}

/* Is rcpt a destination this relay may accept from anyone? 1 yes, 0 no, -1 lookup error. */
static int rcpt_authorized(const char *rcpt, char *const *relay_domains)
{
    const char *at = strrchr(rcpt, '@');
    const char *cp;

    if (at == 0)
	return (0);
    /* No sender-specified routing through us (allow_untrusted_routing = no). */
    for (cp = rcpt; cp < at; cp++)
	if (*cp == '%' || *cp == '!' || *cp == '@')
	    return (0);
    return (smtpd_domain_match(at + 1, relay_domains));
}

int     smtpd_relay_check(char *const *restrictions, int client_in_mynetworks,
			          const char *rcpt, char *const *relay_domains,
			          char *reply, size_t replylen)
{
    for (; restrictions && *restrictions; restrictions++) {
	const char *r = *restrictions;

	if (strcmp(r, "permit_mynetworks") == 0) {
	    if (client_in_mynetworks)
		return (0);
	} else if (strcmp(r, "reject_unauth_destination") == 0
		   || strcmp(r, "defer_unauth_destination") == 0) {
	    int     ok = rcpt_authorized(rcpt, relay_domains);

	    if (ok < 0) {
		snprintf(reply, replylen, "451 4.3.0 <%s>: Temporary lookup failure", rcpt);
		return (-1);
	    }
	    if (!ok) {
		snprintf(reply, replylen, "%s <%s>: Relay access denied",
			 r[0] == 'r' ? "554 5.7.1" : "454 4.7.1", rcpt);
		return (SMTPD_RELAY_DENIED);
	    }
	} else if (strcmp(r, "permit") == 0) {
	    return (0);
	} else if (strcmp(r, "reject") == 0) {
	    snprintf(reply, replylen,
		     "554 5.7.1 <%s>: Recipient address rejected: Access denied", rcpt);
	    return (-1);
	} else if (strcmp(r, "defer") == 0) {
	    snprintf(reply, replylen,
		     "450 4.7.1 <%s>: Recipient address rejected: Access denied", rcpt);
	    return (-1);
	} else {
	    snprintf(reply, replylen, "451 4.3.5 Server configuration error");
	    return (-1);
	}
    }
    return (0);
}

/* " name=N", or " name=N/M" when they differ or with slash, as "%d" writes them, without printf. */
static void put_count(BUF *b, const char *name, int ok, int total, int slash)
{
    char    num[2][16];
    int     v[2] = {ok, total};

    for (int k = 0; k < 2; k++) {
	char   *p = num[k] + sizeof(num[k]);
	unsigned long u = v[k] < 0 ? 0UL - (unsigned long) v[k] : (unsigned long) v[k];

	*--p = 0;
	do
	    *--p = (char) ('0' + u % 10);
	while ((u /= 10) != 0);
	if (v[k] < 0)
	    *--p = '-';
	memmove(num[k], p, (size_t) (num[k] + sizeof(num[k]) - p));
    }
    buf_putc(b, ' ');
    buf_puts(b, name);
    buf_putc(b, '=');
    buf_puts(b, num[0]);
    if (ok != total || slash) {
	buf_putc(b, '/');
	buf_puts(b, num[1]);
    }
}

void    smtpd_counts_format(const SMTPD_COUNTS *c, BUF *b)
{
    static const char *names[SMTPD_C_COUNT] = {
	"helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "rset", "noop",
	"vrfy", "etrn", "quit", "unknown",
    };
    int     ok = 0, total = 0, i;

    for (i = 0; i < SMTPD_C_COUNT; i++) {
	if (c->total[i] == 0)
	    continue;
	ok += c->ok[i];
	total += c->total[i];
	put_count(b, names[i], c->ok[i], c->total[i], 0);
    }
    /* A session without a single command: Postfix writes "commands=0/0". */
    put_count(b, "commands", ok, total, total == 0);
}
