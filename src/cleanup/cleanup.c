/*
 * cleanup - what Postfix's cleanup(8) does to a message on its way into
 * the queue (see cleanup.h):
 *
 *   - prepend Received: in Postfix's layout (smtpd.c/cleanup: "from HELO
 *     (NAME [ADDR])", "by HOST (relayq) with PROTO id QID", "for <rcpt>"
 *     only with exactly one recipient; pickup's "(relayq, from userid N)");
 *   - when rewriting is allowed, add a missing Message-Id: (Postfix's
 *     "<YYYYMMDDhhmmss.QID@myhostname>") and then a missing Date:, at the
 *     end of the header section, as Postfix does;
 *   - cap each logical header at header_size_limit bytes (the excess is
 *     discarded, as Postfix does);
 *   - insert the empty line between header and body when the sender
 *     omitted it (the first body line is not a header);
 *   - everything else is copied byte for byte.
 */
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "util/util.h"
#include "cleanup/cleanup.h"

/* RFC 5322 date as Postfix's mail_date(): "Thu,  7 Nov 2026 21:12:07 +0100 (CET)". */
static void cleanup_date(BUF *b, int64_t when_us)
{
    time_t  t = (time_t) (when_us / 1000000);
    struct tm lt, gt;
    char    tmp[64];
    long    off;
    int     sign = '+';

    localtime_r(&t, &lt);
    gmtime_r(&t, &gt);
    off = (long) (lt.tm_hour - gt.tm_hour) * 60 + (lt.tm_min - gt.tm_min);
    if (lt.tm_year != gt.tm_year)
	off += (lt.tm_year > gt.tm_year) ? 24 * 60 : -24 * 60;
    else if (lt.tm_yday != gt.tm_yday)
	off += (lt.tm_yday > gt.tm_yday) ? 24 * 60 : -24 * 60;
    if (off < 0) {
	sign = '-';
	off = -off;
    }
    strftime(tmp, sizeof(tmp), "%a, %e %b %Y %H:%M:%S ", &lt);
    buf_puts(b, tmp);
    buf_printf(b, "%c%02ld%02ld", sign, off / 60, off % 60);
    strftime(tmp, sizeof(tmp), " (%Z)", &lt);
    buf_puts(b, tmp);
}

void    cleanup_header_text(BUF *out, const char *s)
{
    for (; s && *s; s++)
	buf_putc(out, (unsigned char) *s < 0x20 || *s == 0x7f ? '?' : *s);
}

char   *cleanup_helo_name(const char *arg)
{
    BUF     b = BUF_INIT;
    const unsigned char *cp = (const unsigned char *) arg;
    int     space = 0;

    while (*cp == ' ' || *cp == '\t')
	cp++;
    for (; *cp; cp++) {
	if (*cp == ' ' || *cp == '\t') {
	    space = 1;
	    continue;
	}
	if (space)
	    buf_putc(&b, '?');			/* the joining space, neutered */
	space = 0;
	buf_putc(&b, *cp < 0x21 || *cp >= 0x7f || strchr("<>()\\\";@", *cp) ? '?' : (char) *cp);
    }
    buf_puts(&b, "");
    return buf_steal(&b);
}

/* Every value below is something a client or a user chose: cleanup_header_text() it. */
static void cleanup_received(const CLEANUP_INFO *ci, BUF *out, int64_t when_us)
{
    if (ci->protocol == 0 || ci->client_addr == 0) {
	/* Local submission (pickup). */
	buf_puts(out, "Received: by ");
	cleanup_header_text(out, ci->myhostname);
	buf_puts(out, " (relayq");
	if (ci->local_user) {
	    buf_puts(out, ", from userid ");
	    cleanup_header_text(out, ci->local_user);
	}
	buf_puts(out, ")\r\n\tid ");
	cleanup_header_text(out, ci->qid);
	buf_puts(out, "; ");
    } else {
	const char *name = ci->client_name ? ci->client_name : "unknown";

	buf_puts(out, "Received: from ");
	cleanup_header_text(out, ci->helo && *ci->helo ? ci->helo : name);
	buf_puts(out, " (");
	cleanup_header_text(out, name);
	buf_puts(out, strchr(ci->client_addr, ':') ? " [IPv6:" : " [");
	cleanup_header_text(out, ci->client_addr);
	buf_puts(out, "])\r\n");
	if (ci->auth_user) {
	    buf_puts(out, "\t(Authenticated sender: ");
	    /* A comment: no parentheses, backslashes or controls from the name. */
	    for (const char *cp = ci->auth_user; *cp; cp++)
		buf_putc(out, (*cp == '(' || *cp == ')' || *cp == '\\'
			       || (unsigned char) *cp < 0x20 || *cp == 0x7f) ? '?' : *cp);
	    buf_puts(out, ")\r\n");
	}
	buf_puts(out, "\tby ");
	cleanup_header_text(out, ci->myhostname);
	buf_puts(out, " (relayq) with ");
	cleanup_header_text(out, ci->protocol);
	buf_puts(out, " id ");
	cleanup_header_text(out, ci->qid);
	if (ci->single_rcpt) {
	    buf_puts(out, "\r\n\tfor <");
	    cleanup_header_text(out, ci->single_rcpt);
	    buf_puts(out, ">; ");
	} else {
	    buf_puts(out, ";\r\n\t");
	}
    }
    cleanup_date(out, when_us);
    buf_puts(out, "\r\n");
}

/* Is line[0..len) the start of a header field ("Name:")? */
static size_t header_name_len(const char *line, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
	unsigned char c = (unsigned char) line[i];

	if (c == ':')
	    return (i > 0 ? i : 0);
	if (c < 33 || c > 126)
	    return (0);
    }
    return (0);
}

/* The unfolded, trimmed value of a logical header (after "Name:"). */
static char *header_value(const char *h, size_t len, size_t namelen)
{
    BUF     v = BUF_INIT;
    size_t  i;
    char   *s, *t;

    for (i = namelen + 1; i < len; i++)
	if (h[i] != '\r' && h[i] != '\n')
	    buf_putc(&v, h[i] == '\t' ? ' ' : h[i]);
    buf_puts(&v, "");
    s = buf_steal(&v);
    t = str_trim(s);
    if (t != s)
	memmove(s, t, strlen(t) + 1);
    return (s);
}

int     cleanup_message(CLEANUP_INFO *ci, const char *in, size_t len, BUF *out,
			        char **message_id, char *err, size_t errlen)
{
    int64_t when_us = ci->arrival_us ? ci->arrival_us : time_now_us();
    BUF     hdr = BUF_INIT;		/* the current logical header */
    size_t  hdr_namelen = 0;
    int     hdr_trunc = 0;
    int     seen_msgid = 0, seen_date = 0;
    char   *msgid = 0;
    size_t  pos = 0;
    size_t  limit = ci->header_size_limit ? ci->header_size_limit : (size_t) 102400;

    if (ci->myhostname == 0 || ci->qid == 0) {
	snprintf(err, errlen, "cleanup: myhostname and queue ID are required");
	return (-1);
    }
    ci->hops = 0;
    if (ci->add_received) {
	cleanup_received(ci, out, when_us);
	ci->hops++;
    }

#define FLUSH_HEADER() do { \
	if (hdr.len) { \
	    if (str_ncasecmp(hdr.data, "Message-Id", 10) == 0 && hdr_namelen == 10) { \
		if (!seen_msgid) msgid = header_value(hdr.data, hdr.len, hdr_namelen); \
		seen_msgid = 1; \
	    } else if (hdr_namelen == 4 && str_ncasecmp(hdr.data, "Date", 4) == 0) \
		seen_date = 1; \
	    buf_append(out, hdr.data, hdr.len); \
	    buf_reset(&hdr); \
	} } while (0)

    /* Header section: logical headers until the first line that is not one. */
    while (pos < len) {
	const char *line = in + pos;
	const char *lf = memchr(line, '\n', len - pos);
	size_t  llen = lf ? (size_t) (lf - line) + 1 : len - pos;
	size_t  nl;

	if ((line[0] == ' ' || line[0] == '\t') && hdr.len) {
	    /* Continuation line. */
	} else if ((nl = header_name_len(line, llen)) > 0) {
	    FLUSH_HEADER();
	    /* Postfix's hop count: every Received: header. */
	    if (nl == 8 && str_ncasecmp(line, "Received", 8) == 0)
		ci->hops++;
	    hdr_namelen = nl;
	    hdr_trunc = 0;
	} else {
	    break;				/* empty line or body text */
	}
	if (!hdr_trunc) {
	    if (hdr.len + llen > limit) {
		/* Postfix: the excess of an over-long header is discarded. */
		buf_append(&hdr, line, limit > hdr.len ? limit - hdr.len : 0);
		if (hdr.len == 0 || hdr.data[hdr.len - 1] != '\n')
		    buf_puts(&hdr, "\r\n");
		hdr_trunc = 1;
	    } else {
		buf_append(&hdr, line, llen);
		/* A header at the very end without a newline gets one. */
		if (lf == 0)
		    buf_puts(&hdr, "\r\n");
	    }
	}
	pos += llen;
    }
    FLUSH_HEADER();
    buf_free(&hdr);

    if (ci->rewrite_allowed) {
	if (!seen_msgid) {
	    time_t  t = (time_t) (when_us / 1000000);
	    struct tm lt;
	    char    stamp[32];

	    localtime_r(&t, &lt);
	    strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &lt);
	    msgid = xasprintf("<%s.%s@%s>", stamp, ci->qid, ci->myhostname);
	    buf_puts(out, "Message-Id: ");
	    cleanup_header_text(out, msgid);
	    buf_puts(out, "\r\n");
	}
	if (!seen_date) {
	    buf_puts(out, "Date: ");
	    cleanup_date(out, when_us);
	    buf_puts(out, "\r\n");
	}
    }
    /*
     * The body, byte for byte.  When the header section ended on a text
     * line instead of an empty line, one empty line is inserted: otherwise
     * that text would read as part of the (added) headers.
     */
    if (pos < len) {
	if (in[pos] != '\n' && !(in[pos] == '\r' && pos + 1 < len && in[pos + 1] == '\n'))
	    buf_puts(out, "\r\n");
	buf_append(out, in + pos, len - pos);
    }
    if (out->data == 0)
	buf_puts(out, "");
    *message_id = msgid ? msgid : xstrdup("");
    return (0);
}
