/*
 * bounce - build RFC 3464 delivery status notifications as queue messages.
 *
 * Three kinds, as Postfix's bounce(8) sends them:
 *
 *   BOUNCE_FAILED   non-delivery: a 5xx reply, or the message expired (the
 *                   recipients keep their last 4.x.x status then);
 *   BOUNCE_DELAYED  delay warning (delay_warning_time);
 *   BOUNCE_RELAYED  "relayed" success notice for NOTIFY=SUCCESS recipients
 *                   handed to a next hop that does not speak DSN.
 *
 * The structure follows Postfix's notices (spec §12, traces T1/T2/T4):
 * multipart/report with a text part, a message/delivery-status part and
 * the returned message (message/rfc822) or its headers
 * (text/rfc822-headers).  The human-readable words are relayq's own, and
 * the non-standard delivery-status fields are named X-Relayq-* (Postfix:
 * X-Postfix-*).  See docs/bounces.md.
 *
 * The module is pure: no I/O, no queue access.  The caller gives the new
 * message a queue ID, passes it through cleanup (which may add Received:)
 * and queues it.  The only state is a counter that keeps Message-Ids unique
 * when several notices about one message are built in the same second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"
#include "bounce/bounce.h"

/* Postfix wraps notice lines at 79 columns, continuing with 4 spaces. */
#define BOUNCE_WRAP_WIDTH	79
#define BOUNCE_WRAP_INDENT	4

#define CRLF "\r\n"

static unsigned bounce_msgid_counter;

/* bounce_date - RFC 2822 date in local time, as Postfix's mail_date() */

static void bounce_date(BUF *b, int64_t when)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t  t = (time_t) when;
    struct tm tm;
    long    off;
    int     sign = '+';

    /*
     * Day and month names are spelled out here rather than by strftime(),
     * whose %a/%b follow the locale; mail dates are always English.
     */
    if (localtime_r(&t, &tm) == NULL) {
	buf_puts(b, "Thu, 01 Jan 1970 00:00:00 +0000 (UTC)");
	return;
    }
    off = tm.tm_gmtoff;
    if (off < 0) {
	sign = '-';
	off = -off;
    }
    buf_printf(b, "%s, %02d %s %d %02d:%02d:%02d %c%02ld%02ld",
	       days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
	       tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
	       sign, off / 3600, (off % 3600) / 60);
    if (tm.tm_zone && *tm.tm_zone)
	buf_printf(b, " (%s)", tm.tm_zone);
}

/*
 * bounce_clean - copy text without control characters.  Reasons and
 * replies come from remote servers; a CR or LF in them would break the
 * notice's header and MIME structure.
 */

static char *bounce_clean(const char *text)
{
    char   *s = xstrdup(text ? text : "");
    unsigned char *p;

    for (p = (unsigned char *) s; *p; p++)
	if (*p < 0x20 || *p == 0x7f)
	    *p = ' ';
    return s;
}

/* bounce_wrap - append "prefix text" wrapped, CRLF-terminated lines */

int     bounce_wrap(BUF *out, const char *prefix, const char *text)
{
    BUF     whole = BUF_INIT;
    char   *clean;
    const char *s;
    size_t  len, min_break, avail, i, brk;
    int     lines = 0;
    int     first = 1;

    clean = bounce_clean(text);
    buf_puts(&whole, prefix ? prefix : "");
    buf_puts(&whole, clean);
    free(clean);

    /*
     * Never break inside the prefix (a field name or "<rcpt>:"): the first
     * allowed break is the prefix's own trailing space.
     */
    min_break = prefix ? strlen(prefix) : 0;
    if (min_break > 0 && prefix[min_break - 1] == ' ')
	min_break--;

    s = whole.data ? whole.data : "";
    for (;;) {
	len = strlen(s);
	avail = first ? BOUNCE_WRAP_WIDTH : BOUNCE_WRAP_WIDTH - BOUNCE_WRAP_INDENT;
	if (len <= avail)
	    break;

	/*
	 * Break at the last space that keeps the line within the width; a
	 * word longer than the line is kept whole (break at the first space
	 * after it), as Postfix's line_wrap() does.
	 */
	brk = 0;
	for (i = avail; i > 0 && i >= min_break; i--) {
	    if (s[i] == ' ') {
		brk = i;
		break;
	    }
	}
	if (brk == 0) {
	    const char *sp = strchr(s + (avail > min_break ? avail : min_break), ' ');

	    if (sp == NULL)
		break;
	    brk = (size_t) (sp - s);
	}
	/* Emit s[0..brk) without trailing blanks, then skip the blanks. */
	i = brk;
	while (i > 0 && s[i - 1] == ' ')
	    i--;
	if (!first)
	    buf_printf(out, "%*s", BOUNCE_WRAP_INDENT, "");
	buf_append(out, s, i);
	buf_puts(out, CRLF);
	lines++;
	s += brk;
	while (*s == ' ')
	    s++;
	first = 0;
	min_break = 0;
	if (*s == 0)
	    break;
    }
    if (*s || lines == 0) {
	if (!first)
	    buf_printf(out, "%*s", BOUNCE_WRAP_INDENT, "");
	buf_puts(out, s);
	buf_puts(out, CRLF);
	lines++;
    }
    buf_free(&whole);
    return lines;
}

/* bounce_wanted - does this recipient's NOTIFY ask for this kind? */

static int bounce_wanted(const QRCPT *rcpt, int kind)
{
    int     bit;

    if (rcpt->notify & QNOTIFY_NEVER)
	return 0;
    switch (kind) {
    case BOUNCE_FAILED:
	bit = QNOTIFY_FAILURE;
	break;
    case BOUNCE_DELAYED:
	bit = QNOTIFY_DELAY;
	break;
    case BOUNCE_RELAYED:
	bit = QNOTIFY_SUCCESS;
	break;
    default:
	return 0;
    }

    /*
     * No NOTIFY given: Postfix's default is FAILURE and DELAY (it does send
     * delay warnings then), never SUCCESS.
     */
    if (rcpt->notify == 0)
	return kind != BOUNCE_RELAYED;
    return (rcpt->notify & bit) != 0;
}

/* bounce_status - the Status: value for one recipient */

static const char *bounce_status(const QRCPT *rcpt, int kind)
{
    const char *d = rcpt->dsn;
    int     ok = (d[0] == '2' || d[0] == '4' || d[0] == '5') && d[1] == '.'
    && memchr(d, 0, sizeof(rcpt->dsn)) != NULL;

    switch (kind) {
    case BOUNCE_RELAYED:
	return ok && d[0] == '2' ? d : "2.0.0";
    case BOUNCE_DELAYED:
	return ok ? d : "4.0.0";
    default:
	/* On expiry the last temporary status (4.x.x) stays, as Postfix. */
	return ok ? d : "5.0.0";
    }
}

/* bounce_reason - the human-readable reason for one recipient */

static const char *bounce_reason(const QRCPT *rcpt, int kind)
{
    if (rcpt->reason && *rcpt->reason)
	return rcpt->reason;
    if (rcpt->diag && *rcpt->diag)
	return rcpt->diag;
    switch (kind) {
    case BOUNCE_RELAYED:
	return "relayed to a server that does not report delivery status";
    case BOUNCE_DELAYED:
	return "delivery temporarily failed";
    default:
	return "delivery failed";
    }
}

/* bounce_header_len - length of the header block (up to the empty line) */

static size_t bounce_header_len(const char *p, size_t len)
{
    size_t  i = 0;

    while (i < len) {
	if (p[i] == '\n' || (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n'))
	    return i;				/* an empty line starts here */
	while (i < len && p[i] != '\n')
	    i++;
	if (i < len)
	    i++;
    }
    return len;
}

/*
 * bounce_copy_lines - append text with every line ending made CRLF.  The
 * queue stores CRLF lines, but a stray bare CR or LF must not leak into
 * the notice; the last line is terminated if it was not.
 */

static void bounce_copy_lines(BUF *out, const char *p, size_t len)
{
    size_t  i, start = 0;

    for (i = 0; i < len; i++) {
	if (p[i] == '\r' || p[i] == '\n') {
	    buf_append(out, p + start, i - start);
	    buf_puts(out, CRLF);
	    if (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n')
		i++;
	    start = i + 1;
	}
    }
    if (start < len) {
	buf_append(out, p + start, len - start);
	buf_puts(out, CRLF);
    }
}

/* bounce_text - part 1: the explanation in relayq's own words */

static void bounce_text(BUF *b, const CONFIG *cf, const char *host, const QMSG *orig,
			        const int *want, int nwant, int kind, int full,
			        int64_t retry_until)
{
    int     n;

    buf_printf(b, "This is the relayq mail server at %s." CRLF CRLF, host);
    switch (kind) {
    case BOUNCE_DELAYED:{
	    long long hours = config_time(cf, "delay_warning_time") / 3600;

	    buf_puts(b, "*** This is only a warning: there is no need to send your message again. ***" CRLF CRLF);
	    buf_printf(b, "Your message has waited for more than %lld hour(s) without reaching" CRLF
		       "the recipients listed below.  Delivery will be attempted again" CRLF
		       "until ", hours);
	    bounce_date(b, retry_until);
	    buf_puts(b, "." CRLF
		     "If it has not succeeded by then, the message will be returned to" CRLF
		     "you with a separate notice." CRLF CRLF);
	    break;
	}
    case BOUNCE_RELAYED:
	buf_puts(b, "You asked to be told when your message was delivered.  It was passed" CRLF
		 "on to the recipients' mail servers listed below, which do not send" CRLF
		 "delivery confirmations themselves, so this is the last report you" CRLF
		 "will receive about these recipients." CRLF CRLF);
	break;
    default:
	buf_puts(b, "Your message could not be delivered to the recipients listed below," CRLF
		 "and relayq has stopped trying.  The reason for each recipient is given" CRLF
		 "after its address." CRLF CRLF);
	buf_puts(b, full ? "Your message is attached to this report." CRLF CRLF :
		 "The headers of your message are attached to this report." CRLF CRLF);
	break;
    }
    buf_puts(b, "If you need help, write to the postmaster of this site and include" CRLF
	     "this report." CRLF CRLF);

    for (n = 0; n < nwant; n++) {
	const QRCPT *r = orig->rcpts + want[n];
	char   *prefix = xasprintf("<%s>: ", r->addr ? r->addr : "");
	char   *clean = bounce_clean(prefix);

	bounce_wrap(b, clean, bounce_reason(r, kind));
	buf_puts(b, CRLF);
	free(clean);
	free(prefix);
    }
}

/* bounce_report - part 2: the message/delivery-status fields */

static void bounce_report(BUF *b, const char *host, const QMSG *orig,
			          const int *want, int nwant, int kind,
			          int64_t arrival, int64_t retry_until)
{
    static const char *const actions[] = {"", "failed", "delayed", "relayed"};
    char   *s;
    int     n;

    /* Per-message fields. */
    bounce_wrap(b, "Reporting-MTA: dns; ", host);
    bounce_wrap(b, "X-Relayq-Queue-ID: ", orig->qid);
    bounce_wrap(b, "X-Relayq-Sender: rfc822; ", orig->sender);
    buf_puts(b, "Arrival-Date: ");
    bounce_date(b, arrival);
    buf_puts(b, CRLF);
    if (orig->envid && *orig->envid)
	bounce_wrap(b, "Original-Envelope-Id: ", orig->envid);

    /* Per-recipient fields, each group after an empty line. */
    for (n = 0; n < nwant; n++) {
	const QRCPT *r = orig->rcpts + want[n];

	buf_puts(b, CRLF);
	bounce_wrap(b, "Final-Recipient: rfc822; ", r->addr);
	if (r->orcpt && *r->orcpt) {
	    /* Stored as given ("rfc822;addr"), printed as given, as Postfix. */
	    s = bounce_clean(r->orcpt);
	    buf_printf(b, "Original-Recipient: %s" CRLF, s);
	    free(s);
	}
	buf_printf(b, "Action: %s" CRLF, actions[kind]);
	buf_printf(b, "Status: %s" CRLF, bounce_status(r, kind));
	if (r->remote_mta && *r->remote_mta)
	    bounce_wrap(b, "Remote-MTA: dns; ", r->remote_mta);
	if (r->diag && *r->diag)
	    bounce_wrap(b, "Diagnostic-Code: smtp; ", r->diag);
	else if (r->reason && *r->reason)
	    bounce_wrap(b, "Diagnostic-Code: X-Relayq; ", r->reason);
	if (kind == BOUNCE_DELAYED) {
	    buf_puts(b, "Will-Retry-Until: ");
	    bounce_date(b, retry_until);
	    buf_puts(b, CRLF);
	}
    }
}

/* bounce_build - build the notice, or NULL when none is due */

QMSG   *bounce_build(const CONFIG *cf, const QMSG *orig, const int *rcpts, int nrcpt,
		             int kind, int64_t now)
{
    static const char *const subjects[] = {
	"",
	"Undelivered Mail Returned to Sender",
	"Delayed Mail (still being retried)",
	"Successful Mail Delivery Report",
    };
    const char *host;
    const char *origid;
    const char *content;
    size_t  clen, hlen, i;
    int    *want;
    int     nwant = 0;
    int     n, k, full, suffix;
    int64_t arrival, retry_until;
    long long size_limit;
    char   *sender;
    char   *boundary;
    char    stamp[32];
    struct tm tm;
    time_t  t;
    BUF     b = BUF_INIT;
    QMSG   *msg;

    /* Never notify the null sender: that is how bounce loops start. */
    if (orig == NULL || orig->sender == NULL || *orig->sender == 0)
	return NULL;
    if (kind != BOUNCE_FAILED && kind != BOUNCE_DELAYED && kind != BOUNCE_RELAYED)
	return NULL;
    if (rcpts == NULL || nrcpt <= 0)
	return NULL;

    /* The recipients the notice is about: valid indices whose NOTIFY asks. */
    want = xcalloc((size_t) nrcpt, sizeof(*want));
    for (n = 0; n < nrcpt; n++) {
	if (rcpts[n] < 0 || rcpts[n] >= orig->nrcpt)
	    continue;
	for (k = 0; k < nwant && want[k] != rcpts[n]; k++)
	     /* void */ ;
	if (k < nwant)
	    continue;				/* listed twice */
	if (bounce_wanted(orig->rcpts + rcpts[n], kind))
	    want[nwant++] = rcpts[n];
    }
    if (nwant == 0) {
	free(want);
	return NULL;
    }

    host = config_str(cf, "myhostname");
    size_limit = config_size(cf, "bounce_size_limit");
    origid = orig->qid[0] ? orig->qid : "NOQUEUE";
    arrival = orig->arrival_us > 0 ? orig->arrival_us / 1000000 : orig->create_time;
    retry_until = arrival + config_time(cf, "maximal_queue_lifetime");
    sender = bounce_clean(orig->sender);

    content = orig->content ? orig->content : "";
    clen = strlen(content);
    if (orig->content && orig->size > 0 && orig->size < clen)
	clen = orig->size;
    hlen = bounce_header_len(content, clen);

    /*
     * The whole message goes back only with a non-delivery notice, when
     * the sender did not ask for headers only, and when it fits
     * bounce_size_limit.  Delay warnings and success notices carry headers.
     */
    full = kind == BOUNCE_FAILED && orig->ret != QRET_HDRS
	&& (long long) clen <= size_limit;
    /* Headers only are capped too: at the last whole line within bounce_size_limit. */
    if (!full && size_limit > 0 && (long long) hlen > size_limit) {
	size_t  cut = (size_t) size_limit;

	while (cut > 0 && content[cut - 1] != '\n')
	    cut--;
	hlen = cut;
    }

    /*
     * Boundary as Postfix: ORIGID.EPOCH/myhostname.  Make sure the returned
     * text does not happen to contain it.
     */
    boundary = xasprintf("%s.%lld/%s", origid, (long long) now, host);
    for (suffix = 1; memmem(content, full ? clen : hlen, boundary, strlen(boundary)); suffix++) {
	free(boundary);
	boundary = xasprintf("%s.%lld.%d/%s", origid, (long long) now, suffix, host);
    }

    /* Message-Id: unique even for several notices about one message. */
    t = (time_t) now;
    if (gmtime_r(&t, &tm) == NULL || strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm) == 0)
	snprintf(stamp, sizeof(stamp), "%lld", (long long) now);

    msg = xcalloc(1, sizeof(*msg));
    msg->message_id = xasprintf("<%s.%s.%u@%s>", stamp, origid, ++bounce_msgid_counter, host);

    /* Top-level header, in Postfix's order. */
    buf_puts(&b, "Date: ");
    bounce_date(&b, now);
    buf_puts(&b, CRLF);
    buf_printf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>" CRLF, host);
    buf_printf(&b, "Subject: %s" CRLF, subjects[kind]);
    buf_printf(&b, "To: %s" CRLF, sender);
    buf_puts(&b, "Auto-Submitted: auto-replied" CRLF);
    buf_puts(&b, "MIME-Version: 1.0" CRLF);
    buf_printf(&b, "Content-Type: multipart/report; report-type=delivery-status;" CRLF
	       "\tboundary=\"%s\"" CRLF, boundary);
    buf_printf(&b, "Message-Id: %s" CRLF, msg->message_id);
    buf_puts(&b, CRLF "This is a MIME-encapsulated message." CRLF CRLF);

    /* Part 1: explanation. */
    buf_printf(&b, "--%s" CRLF, boundary);
    buf_puts(&b, "Content-Description: Notification" CRLF
	     "Content-Type: text/plain; charset=us-ascii" CRLF CRLF);
    bounce_text(&b, cf, host, orig, want, nwant, kind, full, retry_until);

    /* Part 2: machine-readable report. */
    buf_printf(&b, "--%s" CRLF, boundary);
    buf_puts(&b, "Content-Description: Delivery report" CRLF
	     "Content-Type: message/delivery-status" CRLF CRLF);
    bounce_report(&b, host, orig, want, nwant, kind, arrival, retry_until);
    buf_puts(&b, CRLF);

    /*
     * Part 3: the message or its headers, with Return-Path: on top as
     * Postfix does.  Without content (not loaded) the part is left out,
     * which RFC 3462 allows.
     */
    if (orig->content) {
	buf_printf(&b, "--%s" CRLF, boundary);
	if (full)
	    buf_puts(&b, "Content-Description: Undelivered Message" CRLF
		     "Content-Type: message/rfc822" CRLF CRLF);
	else
	    buf_puts(&b, "Content-Description: Undelivered Message Headers" CRLF
		     "Content-Type: text/rfc822-headers" CRLF CRLF);
	buf_printf(&b, "Return-Path: <%s>" CRLF, sender);
	bounce_copy_lines(&b, content, full ? clen : hlen);
	buf_puts(&b, CRLF);
    }
    buf_printf(&b, "--%s--" CRLF, boundary);

    /* The envelope: from <>, to the original sender. */
    msg->state = QSTATE_INCOMING;
    msg->flags = QFLAG_BOUNCE | (orig->flags & QFLAG_SMTPUTF8);
    for (i = 0; i < b.len; i++)
	if ((unsigned char) b.data[i] & 0x80) {
	    msg->flags |= QFLAG_8BITMIME;
	    break;
	}
    msg->arrival_us = now * 1000000;
    msg->create_time = now;
    msg->sender = xstrdup("");
    msg->ret = QRET_NONE;
    msg->size = b.len;
    msg->content = buf_steal(&b);
    msg->nrcpt = 1;
    msg->rcpts = xcalloc(1, sizeof(*msg->rcpts));
    msg->rcpts[0].addr = xstrdup(orig->sender);
    msg->rcpts[0].orcpt = xasprintf("rfc822;%s", orig->sender);
    msg->rcpts[0].state = QRCPT_PENDING;

    free(boundary);
    free(sender);
    free(want);
    return msg;
}
