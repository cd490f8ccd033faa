/*
 * smtp_trouble.c: results and failure policy (as Postfix's smtp_trouble.c).
 * See smtp.c for the overview and smtp_priv.h for the layout.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "util/util.h"
#include "log/log.h"
#include "dns/dns.h"
#include "smtp/smtp.h"
#include "smtp/smtp_priv.h"

/* ---------------------------------------------------------------------- */
/* Results and logging                                                     */
/* ---------------------------------------------------------------------- */

static const char *status_word(int status)
{
    return (status == SMTP_SENT ? "sent" : status == SMTP_BOUNCED ? "bounced" : "deferred");
}

/* Log one recipient's delivery line (Postfix log_adhoc). */
static void deliv_log(SMTP_DELIV *d, int slot, const char *relay)
{
    const SMTP_RCPT_RESULT *r = &d->res.rcpts[slot];
    const QRCPT *qr = &d->msg->rcpts[d->rcpts[slot]];
    LOG_RCPT rcpt = {qr->addr, qr->orcpt};
    LOG_STATS st = {
	.arrival_us = d->msg->arrival_us,
	.active_us = d->active_us,
	.handoff_us = d->handoff_us,
	.setup_us = d->setup_us,
	/* Postfix: ", conn_use=N" from the second delivery over one session on. */
	.conn_use = (d->connected && relay == d->relay) ? d->conn_use : 0,
    };

    log_delivery(d->service, d->msg->qid, &rcpt, relay, &st, r->dsn, status_word(r->status), r->text);
}

/* Give a recipient slot its final result for this attempt, and log it. */
void rcpt_final(SMTP_DELIV *d, int slot, int status, const char *dsn, const char *text,
		               const char *relay, const char *mta, const char *diag)
{
    SMTP_RCPT_RESULT *r = &d->res.rcpts[slot];

    if (d->rstate[slot] == R_FINAL)
	return;
    d->rstate[slot] = R_FINAL;
    r->status = status;
    snprintf(r->dsn, sizeof(r->dsn), "%s", dsn);
    r->text = xstrdup(text);
    r->remote_mta = xstrdup(mta);
    r->diag = xstrdup(diag);
    deliv_log(d, slot, relay);
}

static int rcpts_pending(const SMTP_DELIV *d)
{
    int     n = 0;

    for (int i = 0; i < d->nrcpt; i++)
	if (d->rstate[i] == R_PENDING)
	    n++;
    return (n);
}

/* Remember the reason the remaining recipients will be deferred with. */
void deliv_set_last(SMTP_DELIV *d, const char *dsn, const char *text,
			           const char *relay, const char *mta, const char *diag)
{
    snprintf(d->last_dsn, sizeof(d->last_dsn), "%s", dsn);
    free(d->last_reason);
    free(d->last_relay);
    free(d->last_mta);
    free(d->last_diag);
    d->last_reason = xstrdup(text);
    d->last_relay = xstrdup(relay);
    d->last_mta = xstrdup(mta);
    d->last_diag = xstrdup(diag);
}

/* The address in use is the last one this attempt may try. */
static int deliv_final_server(const SMTP_DELIV *d)
{
    int     more = d->cur + 1 < d->naddr;

    if (!d->fallback_used) {
	if (d->p->mx_session_limit > 0 && d->sessions >= d->p->mx_session_limit)
	    more = 0;
	return (!more && d->p->nfallback == 0);
    }
    return (!more);
}

/*
 * A soft failure of the whole session (connect, greeting, HELO, lost
 * connection, timeout).  At the final server it defers what is pending and
 * blames the hop (spec D2); elsewhere it is logged and the next server
 * gets the recipients.
 */
static void sess_fail_soft_how(SMTP_DELIV *d, const char *dsn, const char *text,
			               const char *diag, int log_nonfinal)
{
    const char *relay = d->connected ? d->relay : "none";
    const char *mta = d->connected ? d->addrs[d->cur].host : NULL;

    if (d->stage != ST_XACT && d->stage != ST_QUIT)
	d->setup_us = time_now_us();		/* failed during set-up: d = 0 */
    deliv_set_last(d, dsn, text, relay, mta, diag);
    if (deliv_final_server(d)) {
	d->res.hop_failed = 1;
	snprintf(d->res.hop_dsn, sizeof(d->res.hop_dsn), "%s", dsn);
	free(d->res.hop_reason);
	d->res.hop_reason = xstrdup(text);
    } else if (log_nonfinal && rcpts_pending(d)) {
	log_msg("smtp", "%s: %s", d->msg->qid, text);
    }
    sess_close(d);
    deliv_next_address(d);
}

void sess_fail_soft(SMTP_DELIV *d, const char *dsn, const char *text, const char *diag)
{
    sess_fail_soft_how(d, dsn, text, diag, 1);
}

/* Connect failures: only the bare "connect to" line, already logged. */
void sess_fail_connect(SMTP_DELIV *d, const char *text)
{
    sess_fail_soft_how(d, "4.4.1", text, NULL, 0);
}

/* A hard failure of the whole session: bounce what is pending. */
void sess_fail_hard(SMTP_DELIV *d, const char *dsn, const char *text, const char *diag)
{
    if (d->stage != ST_XACT && d->stage != ST_QUIT)
	d->setup_us = time_now_us();
    for (int i = 0; i < d->nrcpt; i++)
	if (d->rstate[i] == R_PENDING)
	    rcpt_final(d, i, SMTP_BOUNCED, dsn, text, d->connected ? d->relay : "none",
		       d->connected ? d->addrs[d->cur].host : NULL, diag);
    sess_close(d);
    deliv_finish(d);
}

/* Failure of one recipient slot (or of the message for it). */
void rcpt_fail(SMTP_DELIV *d, int slot, const char *dsn, const char *text, const char *diag)
{
    if (dsn[0] == '5') {
	rcpt_final(d, slot, SMTP_BOUNCED, dsn, text, d->relay, d->addrs[d->cur].host, diag);
    } else if (deliv_final_server(d)) {
	rcpt_final(d, slot, SMTP_DEFERRED, dsn, text, d->relay, d->addrs[d->cur].host, diag);
    } else {
	/* A backup server may do better: keep it pending, remember why. */
	deliv_set_last(d, dsn, text, d->relay, d->addrs[d->cur].host, diag);
    }
}

/*
 * Move on: the next address, else the fallback relays (after temporary
 * failures only), else the end of the attempt.
 */
void deliv_next_address(SMTP_DELIV *d)
{
    if (rcpts_pending(d) == 0) {
	deliv_finish(d);
	return;
    }
    if (d->cur + 1 < d->naddr
	&& !(!d->fallback_used && d->p->mx_session_limit > 0
	     && d->sessions >= d->p->mx_session_limit)) {
	d->cur++;
	sess_connect(d);
	return;
    }
    if (!d->fallback_used && d->p->nfallback > 0) {
	d->fallback_used = 1;
	d->res.hop_failed = 0;
	if (d->resolve)
	    str_list_free(d->resolve);
	d->resolve = xcalloc(d->p->nfallback + 1, sizeof(char *));
	for (int i = 0; i < d->p->nfallback; i++)
	    d->resolve[i] = xstrdup(d->p->fallback[i]);
	d->nresolve = d->p->nfallback;
	d->iresolve = 0;
	d->resolve_limit = 0;
	d->cur = d->naddr - 1;
	deliv_resolve_next(d);
	return;
    }
    deliv_finish(d);
}

