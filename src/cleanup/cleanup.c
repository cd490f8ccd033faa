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
 *   - after the header checks, rewrite the addresses of sender and
 *     recipient headers (cleanup_rewrite.c: canonical maps, masquerading)
 *     and leave out the message_drop_headers, when ci->rw is set;
 *   - everything else is copied byte for byte.
 */
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "util/util.h"
#include "log/log.h"
#include "queue/queue.h"
#include "cleanup/cleanup.h"
#include "cleanup/cleanup_mime.h"
#include "cleanup/cleanup_priv.h"

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

/* The unfolded, trimmed value of a header text ("Name: value\n\tmore"). */
static char *header_value(const char *text)
{
    BUF     v = BUF_INIT;
    const char *cp = strchr(text, ':');
    char   *s, *t;

    for (cp = cp ? cp + 1 : ""; *cp; cp++)
	if (*cp != '\r' && *cp != '\n')
	    buf_putc(&v, *cp == '\t' ? ' ' : *cp);
    buf_puts(&v, "");
    s = buf_steal(&v);
    t = str_trim(s);
    if (t != s)
	memmove(s, t, strlen(t) + 1);
    return (s);
}

/* Postfix's header_opts HDR_OPT_RR: the Resent-* headers that make a message "resent". */
static int resent_header(const char *name, size_t len)
{
    static const char *const rr[] = {
	"Resent-Bcc", "Resent-Cc", "Resent-Date", "Resent-From", "Resent-Message-Id",
	"Resent-Reply-To", "Resent-Sender", "Resent-To",
    };

    for (size_t i = 0; i < ARRAY_LEN(rr); i++)
	if (strlen(rr[i]) == len && str_ncasecmp(name, rr[i], len) == 0)
	    return (1);
    return (0);
}

/* What one message's pass through the classifier needs. */
typedef struct CTX {
    CLEANUP_INFO *ci;
    BUF    *out;
    int64_t when_us;
    size_t  limit;			/* header_size_limit */
    int     need_body;			/* mime/nested/body checks: see the body */
    int     seen_msgid, seen_date;
    int     resent, seen_rmsgid, seen_rdate;	/* Resent-* headers */
    char   *msgid;
} CTX;

/*
 * A header that a check wrote (REPLACE, PREPEND): its lines end in CRLF,
 * a line break not followed by white space gets a tab (the text cannot
 * forge a header line), and it is cut at header_size_limit like any
 * header.
 */
static void put_header_text(CTX *c, const char *text)
{
    BUF     h = BUF_INIT;

    for (const char *cp = text; *cp; cp++) {
	if (*cp == '\r')
	    continue;
	if (*cp == '\n') {
	    buf_puts(&h, "\r\n");
	    if (cp[1] != ' ' && cp[1] != '\t')
		buf_putc(&h, '\t');
	    continue;
	}
	buf_putc(&h, *cp);
    }
    if (h.len + 2 > c->limit) {
	const char *colon = h.data ? memchr(h.data, ':', h.len) : 0;
	size_t  keep = c->limit > 2 ? c->limit - 2 : 0;

	/* Never through the name: the cut text stays a header. */
	if (colon && (size_t) (colon - h.data) + 1 > keep)
	    keep = (size_t) (colon - h.data) + 1;
	log_warn("cleanup", "%s: a header written by a header check is longer than "
		 "header_size_limit (%zu bytes): the excess is discarded", c->ci->qid, c->limit);
	h.len = keep < h.len ? keep : h.len;
    }
    buf_append(c->out, h.data ? h.data : "", h.len);
    buf_puts(c->out, "\r\n");
    buf_free(&h);
}

static void put_prepends(CTX *c, BUF *pre, int header)
{
    char   *line = pre->data;

    while (line && *line) {
	char   *nl = strchr(line, '\n');

	*nl = 0;
	if (header) {
	    put_header_text(c, line);
	} else {
	    for (char *cp = line; *cp; cp++)
		buf_putc(c->out, *cp == '\r' ? ' ' : *cp);
	    buf_puts(c->out, "\r\n");
	}
	line = nl + 1;
    }
}

static void cb_header(void *ctx, int cls, const char *text, const char *raw, size_t rawlen)
{
    CTX    *c = ctx;
    CLEANUP_INFO *ci = c->ci;
    BUF     pre = BUF_INIT;
    char   *rep = 0;
    const char *eff = text;
    size_t  nl;
    int     r;

    /* Postfix's hop count: every Received: header, before any check drops one. */
    if (cls == MIME_HDR_PRIMARY && str_ncasecmp(text, "Received:", 9) == 0)
	ci->hops++;
    r = cleanup_check_header(ci, cls, text, &rep, &pre);
    put_prepends(c, &pre, 1);
    buf_free(&pre);
    if (r == CHK_DROP)
	return;
    if (cls != MIME_HDR_PRIMARY || (ci->rw == NULL && ci->generic == NULL)) {
	if (r == CHK_REPLACE)
	    put_header_text(c, rep);
	else
	    buf_append(c->out, raw, rawlen);
    } else {
	/*
	 * As Postfix's cleanup_header_callback: after the header check,
	 * address headers are rewritten (cleanup_rewrite.c) and the
	 * message_drop_headers are left out.
	 */
	BUF     h = BUF_INIT;
	BUF    *save = c->out;

	if (r == CHK_REPLACE) {
	    c->out = &h;
	    put_header_text(c, rep);
	    c->out = save;
	} else {
	    buf_append(&h, raw, rawlen);
	}
	nl = cleanup_mime_header_name(h.data ? h.data : "", h.len);
	if (nl > 0 && ci->generic) {
	    /* The SMTP client's pass: smtp_generic_maps after smtp_header_checks, as Postfix. */
	    cleanup_generic_header(ci->generic, ci->qid, &h, nl, &ci->rw_errs);
	    buf_append(c->out, h.data, h.len);
	} else if (nl > 0 && cleanup_rw_drop(ci->rw, h.data, nl) == 0) {
	    cleanup_rw_header(ci->rw, ci->qid, ci->rw_context, &h, nl, &ci->rw_errs);
	    buf_append(c->out, h.data, h.len);
	} else if (nl == 0) {
	    buf_append(c->out, h.data ? h.data : "", h.len);
	}
	buf_free(&h);
    }
    if (r == CHK_REPLACE)
	eff = rep;
    if (cls == MIME_HDR_PRIMARY) {
	nl = cleanup_mime_header_name(eff, strlen(eff));
	if (nl == 10 && str_ncasecmp(eff, "Message-Id", 10) == 0) {
	    if (!c->seen_msgid)
		c->msgid = header_value(eff);
	    c->seen_msgid = 1;
	} else if (nl == 4 && str_ncasecmp(eff, "Date", 4) == 0) {
	    c->seen_date = 1;
	} else if (nl == 17 && str_ncasecmp(eff, "Resent-Message-Id", 17) == 0) {
	    c->seen_rmsgid = 1;
	} else if (nl == 11 && str_ncasecmp(eff, "Resent-Date", 11) == 0) {
	    c->seen_rdate = 1;
	}
	if (resent_header(eff, nl))
	    c->resent = 1;
    }
    free(rep);
}

static int cb_header_end(void *ctx)
{
    CTX    *c = ctx;
    CLEANUP_INFO *ci = c->ci;

    if (ci->rewrite_allowed) {
	/* Postfix: a message with Resent-* headers gets Resent-Message-Id:/Resent-Date: instead. */
	if (c->resent ? !c->seen_rmsgid : !c->seen_msgid) {
	    time_t  t = (time_t) (c->when_us / 1000000);
	    struct tm lt;
	    char    stamp[32];
	    char   *id;

	    localtime_r(&t, &lt);
	    strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &lt);
	    id = xasprintf("<%s.%s@%s>", stamp, ci->qid, ci->myhostname);
	    buf_puts(c->out, c->resent ? "Resent-Message-Id: " : "Message-Id: ");
	    cleanup_header_text(c->out, id);
	    buf_puts(c->out, "\r\n");
	    if (c->resent) {
		log_msg("cleanup", "%s: resent-message-id=%s", ci->qid, id);
		free(id);
		c->seen_rmsgid = 1;
	    } else {
		c->msgid = id;
		c->seen_msgid = 1;
	    }
	}
	if (c->resent ? !c->seen_rdate : !c->seen_date) {
	    buf_puts(c->out, c->resent ? "Resent-Date: " : "Date: ");
	    cleanup_date(c->out, c->when_us);
	    buf_puts(c->out, "\r\n");
	    if (c->resent)
		c->seen_rdate = 1;
	    else
		c->seen_date = 1;
	}
    }
    /* Without checks that look at the body, it is copied as it is. */
    return (!c->need_body);
}

static void cb_body(void *ctx, const char *rec, size_t len, size_t offset,
		            const char *eol, size_t eollen)
{
    CTX    *c = ctx;
    BUF     pre = BUF_INIT;
    char   *rep = 0;
    int     r = cleanup_check_body(c->ci, rec, len, offset, &rep, &pre);

    put_prepends(c, &pre, 0);
    buf_free(&pre);
    if (r == CHK_DROP)
	return;
    if (r == CHK_REPLACE) {
	for (char *cp = rep; *cp; cp++)
	    buf_putc(c->out, *cp == '\r' || *cp == '\n' ? ' ' : *cp);
	free(rep);
    } else {
	buf_append(c->out, rec, len);
    }
    if (eol)
	buf_append(c->out, eol, eollen);
}

int     cleanup_message(CLEANUP_INFO *ci, const char *in, size_t len, BUF *out,
			        char **message_id, char *err, size_t errlen)
{
    static const CLEANUP_MIME_CB cb = {cb_header, cb_header_end, cb_body};
    CLEANUP_MIME_OPTS mo;
    CTX     c;
    size_t  pos;

    if (ci->myhostname == 0 || ci->qid == 0) {
	snprintf(err, errlen, "cleanup: myhostname and queue ID are required");
	return (-1);
    }
    memset(&c, 0, sizeof(c));
    c.ci = ci;
    c.out = out;
    c.when_us = ci->arrival_us ? ci->arrival_us : time_now_us();
    c.limit = ci->header_size_limit ? ci->header_size_limit : (size_t) 102400;
    c.need_body = cleanup_checks_need_body(ci->checks);
    ci->hops = 0;
    ci->rw_errs = 0;
    if (ci->add_received) {
	cleanup_received(ci, out, c.when_us);
	ci->hops++;
    }
    memset(&mo, 0, sizeof(mo));
    mo.header_limit = c.limit;
    mo.line_limit = ci->line_limit;
    pos = cleanup_mime_run(in, len, &mo, &cb, &c);

    /*
     * The body, byte for byte, when no check reads it.  When the header
     * section ended on a text line instead of an empty line, one empty
     * line is inserted: otherwise that text would read as part of the
     * (added) headers.  (The classifier does the same when it runs over
     * the body.)
     */
    if (pos < len) {
	if (in[pos] != '\n' && !(in[pos] == '\r' && pos + 1 < len && in[pos + 1] == '\n'))
	    buf_puts(out, "\r\n");
	buf_append(out, in + pos, len - pos);
    }
    if (out->data == 0)
	buf_puts(out, "");
    *message_id = c.msgid ? c.msgid : xstrdup("");
    return (0);
}

void    cleanup_envelope_edits(const CLEANUP_INFO *ci, QMSG *msg)
{
    /*
     * REDIRECT, as Postfix's queue manager: the first recipient goes to the
     * redirect address (the original kept as ORCPT, so the delivery shows
     * orig_to=), the others are dropped.
     */
    if (ci->redirect && msg->nrcpt > 0) {
	QRCPT  *r = &msg->rcpts[0];

	if (r->orcpt == 0)
	    r->orcpt = xasprintf("rfc822;%s", r->addr);
	free(r->addr);
	r->addr = xstrdup(ci->redirect);
	for (int i = 1; i < msg->nrcpt; i++) {
	    free(msg->rcpts[i].addr);
	    free(msg->rcpts[i].orcpt);
	}
	msg->nrcpt = 1;
    }
    if (ci->nbcc > 0) {
	msg->rcpts = xrealloc(msg->rcpts, (size_t) (msg->nrcpt + ci->nbcc) * sizeof(QRCPT));
	for (int i = 0; i < ci->nbcc; i++) {
	    QRCPT  *r = &msg->rcpts[msg->nrcpt++];

	    memset(r, 0, sizeof(*r));
	    r->addr = xstrdup(ci->bcc[i]);
	    r->notify = QNOTIFY_NEVER;		/* as Postfix's BCC recipients */
	    r->state = QRCPT_PENDING;
	}
    }
}
