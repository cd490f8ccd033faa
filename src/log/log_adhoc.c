/*
 * log_adhoc - one formatter per kind of Postfix mail log line, so that a
 * line kind has one spelling whichever module reports it (Postfix's
 * log_adhoc.c for delivery status, smtpd_check's reject lines).
 *
 * Delivery status:
 *   QID: to=<R>[, orig_to=<O>], relay=R[, conn_use=N], delay=D,
 *       delays=a/b/c/d, dsn=X.Y.Z, status=S (TEXT)
 * orig_to= whenever the original recipient (the ORCPT address, xtext
 * decoded) differs case-insensitively from the recipient, for every status.  delays=: a before the active
 * queue, b in the active queue until the delivery agent took it, c
 * connection set-up (DNS, connect, greeting, EHLO, TLS), d transmission;
 * as log_adhoc.c: no hand-off means b runs to the end and c = d = 0, no
 * set-up time means c = 0.
 *
 * Reject (Postfix's smtpd log_whatsup; ACTION reject, milter-reject, ...):
 *   QID|NOQUEUE: ACTION: STAGE from CLIENT: REPLY;[ from=<S>][ to=<R>] proto=P[ helo=<H>]
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "log/log.h"

/*
 * log_orig_addr - the original address (an ORCPT value "type;xtext", or a
 * bare address) decoded into buf, or NULL when absent or the same as the
 * recipient.  A malformed +XX escape is shown as it is.
 */
static const char *log_orig_addr(const char *orcpt, const char *to, char *buf, size_t len)
{
    const char *o;
    size_t  n = 0;

    if (orcpt == 0 || *orcpt == 0)
	return (0);
    o = strchr(orcpt, ';');
    o = o ? o + 1 : orcpt;
    for (; *o && n + 1 < len; o++) {
	unsigned hi, lo;

	if (o[0] == '+' && isxdigit((unsigned char) o[1]) && isxdigit((unsigned char) o[2])
	    && sscanf(o + 1, "%1x%1x", &hi, &lo) == 2) {
	    buf[n++] = (char) (hi * 16 + lo);
	    o += 2;
	} else {
	    buf[n++] = *o;
	}
    }
    buf[n] = 0;
    if (n == 0 || str_casecmp(buf, to ? to : "") == 0)
	return (0);
    return (buf);
}

static int64_t nonneg(int64_t us)
{
    return (us < 0 ? 0 : us);
}

void    log_delivery(const char *service, const char *qid, const LOG_RCPT *rcpt,
		             const char *relay, const LOG_STATS *st, const char *dsn,
		             const char *status, const char *text)
{
    int64_t now = st->done_us ? st->done_us : time_now_us();
    int64_t active = st->active_us ? st->active_us : st->arrival_us;
    int64_t a, b, c, d;
    char    sdelay[32], sa[32], sb[32], sc[32], sd[32];
    char    use[32] = "";
    char    obuf[1024];
    const char *orig = log_orig_addr(rcpt->orcpt, rcpt->address, obuf, sizeof(obuf));

    a = active - st->arrival_us;
    if (st->handoff_us == 0) {
	b = now - active;
	c = d = 0;
    } else {
	b = st->handoff_us - active;
	if (st->setup_us) {
	    c = st->setup_us - st->handoff_us;
	    d = now - st->setup_us;
	} else {
	    c = 0;
	    d = now - st->handoff_us;
	}
    }
    if (st->conn_use > 1)
	snprintf(use, sizeof(use), ", conn_use=%d", st->conn_use);
    log_msg(service, "%s: to=<%s>%s%s%s, relay=%s%s, delay=%s, delays=%s/%s/%s/%s, dsn=%s, status=%s (%s)",
	    qid, rcpt->address, orig ? ", orig_to=<" : "", orig ? orig : "", orig ? ">" : "",
	    relay, use,
	    log_format_delay((double) nonneg(now - st->arrival_us) / 1e6, sdelay),
	    log_format_delay((double) nonneg(a) / 1e6, sa),
	    log_format_delay((double) nonneg(b) / 1e6, sb),
	    log_format_delay((double) nonneg(c) / 1e6, sc),
	    log_format_delay((double) nonneg(d) / 1e6, sd),
	    dsn, status, text ? text : "");
}

void    log_reject(const char *service, const char *qid, const char *action,
		           const char *stage, const char *client, const char *reply,
		           const char *from, const char *to, const char *proto,
		           const char *helo)
{
    log_msg(service, "%s: %s: %s from %s: %s;%s%s%s%s%s%s proto=%s%s%s%s",
	    qid && *qid ? qid : "NOQUEUE", action, stage, client, reply,
	    from ? " from=<" : "", from ? from : "", from ? ">" : "",
	    to ? " to=<" : "", to ? to : "", to ? ">" : "", proto,
	    helo ? " helo=<" : "", helo ? helo : "", helo ? ">" : "");
}

void    log_content_action(const char *qid, const char *action, const char *where,
			           const char *content, const char *origin, const char *from,
			           const char *to, const char *proto, const char *helo,
			           const char *text)
{
    char    shown[201];
    size_t  i;

    /* As Postfix's printable(): the folded header's line breaks and tabs show as '?'. */
    for (i = 0; i < sizeof(shown) - 1 && content[i]; i++)
	shown[i] = (unsigned char) content[i] < 0x20 || content[i] == 0x7f ? '?' : content[i];
    shown[i] = 0;
    log_msg("cleanup", "%s: %s: %s %s from %s;%s%s%s%s%s%s%s%s%s%s%s%s%s",
	    qid, action, where, shown, origin ? origin : "unknown",
	    from ? " from=<" : "", from ? from : "", from ? ">" : "",
	    to ? " to=<" : "", to ? to : "", to ? ">" : "",
	    proto ? " proto=" : "", proto ? proto : "",
	    helo ? " helo=<" : "", helo ? helo : "", helo ? ">" : "",
	    text && *text ? ": " : "", text && *text ? text : "");
}

void    log_smtp_content_action(const char *qid, const char *action, const char *where,
				        const char *content, const char *text)
{
    char    shown[201];
    size_t  i;

    for (i = 0; i < sizeof(shown) - 1 && content[i]; i++)
	shown[i] = (unsigned char) content[i] < 0x20 || content[i] == 0x7f ? '?' : content[i];
    shown[i] = 0;
    if (text && *text)
	log_msg("smtp", "%s: %s: %s %s: %s", qid, action, where, shown, text);
    else
	log_msg("smtp", "%s: %s: %s %s", qid, action, where, shown);
}
