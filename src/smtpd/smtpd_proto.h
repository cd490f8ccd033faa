/*
 * smtpd_proto - the pure parts of the SMTP server, private to smtpd and
 * its tests and fuzzers: command-line framing, command and address
 * parsing, ESMTP parameters, the DATA state machine (end-of-data
 * detection, dot-unstuffing, bare-newline policy), network and domain
 * matching, and relay restrictions.  No I/O, no libevent, no config.
 */
#ifndef SMTPD_PROTO_H_INCLUDED
#define SMTPD_PROTO_H_INCLUDED

#include <stddef.h>
#include "util/util.h"

/* smtpd_forbid_bare_newline (Postfix 3.9 values) */
#define SMTPD_BARE_NORMALIZE	0	/* bare LF = CRLF, never part of end-of-data */
#define SMTPD_BARE_REJECT	1	/* "yes" / "reject": 521 and disconnect */
#define SMTPD_BARE_NO		2	/* like normalize (relayq never lets LF end DATA) */
int     smtpd_bare_mode(const char *value);	/* -1 when unknown */

/*
 * Command-line framing over a byte buffer.  A line ends at LF; a CR right
 * before it is part of the terminator, any other CR is data.  A line longer
 * than limit (without its terminator) is discarded in pieces as it arrives
 * (bounded memory) and reported once its LF is seen.
 */
typedef struct SMTPD_LINER {
    size_t  limit;
    int     skipping;			/* inside an over-long line */
} SMTPD_LINER;

#define SMTPD_LINE_MORE		0	/* need more input; drop *consumed bytes */
#define SMTPD_LINE_OK		1	/* buf[0..*linelen) is a line */
#define SMTPD_LINE_TOOLONG	2	/* an over-long line ended */
int     smtpd_line_get(SMTPD_LINER *lr, const char *buf, size_t len,
		               size_t *linelen, size_t *consumed, int *crlf);

/* Split "VERB arg" in place: *verb, *arg (trailing white space removed). */
void    smtpd_cmd_split(char *line, char **verb, char **arg);

/*
 * "FROM:<a@b> SIZE=1" (kw "FROM:") or "TO:<a@b> NOTIFY=NEVER" (kw "TO:").
 * Accepts white space after the colon, a missing <> pair, quoted local
 * parts and strips an RFC 5321 source route.  *addr is allocated ("" for
 * <>), *params points into arg.
 */
#define SMTPD_PATH_OK		0
#define SMTPD_PATH_SYNTAX	(-1)	/* no keyword, no address at all */
#define SMTPD_PATH_BAD		(-2)	/* address syntax error */
int     smtpd_parse_path(const char *arg, const char *kw, char **addr, const char **params);

/*
 * A non-empty envelope address as stored (no <>, no source route), by the
 * rules smtpd applies to MAIL FROM and RCPT TO: no control characters, no
 * unquoted white space or <>(),;\, and a valid domain name or address
 * literal (no port, no stray brackets, no empty label).  For sendmail and
 * pickup, whose addresses must pass the same test.  1 when valid.
 */
int     smtpd_addr_valid(const char *addr);

/* xtext (RFC 3461) decode; -1 on bad syntax.  *out is allocated. */
int     smtpd_xtext_decode(const char *in, char **out);

/* MAIL FROM parameters. */
typedef struct SMTPD_MAILP {
    long long size;			/* SIZE=, -1 when absent */
    int     body8;			/* BODY=8BITMIME */
    int     smtputf8;
    int     ret;			/* QRET_* values */
    char   *envid;			/* decoded ENVID, allocated, or NULL */
    char   *auth;			/* AUTH= as sent (xtext), allocated, or NULL */
} SMTPD_MAILP;

/* 0, or -1 with the complete reply ("501 5.5.4 ...") in reply. */
int     smtpd_mail_params(const char *params, long long size_limit, SMTPD_MAILP *mp,
			          char *reply, size_t replylen);
void    smtpd_mailp_free(SMTPD_MAILP *mp);

typedef struct SMTPD_RCPTP {
    int     notify;			/* QNOTIFY_* bits */
    char   *orcpt;			/* "rfc822;a@b" as given, allocated, or NULL */
} SMTPD_RCPTP;
int     smtpd_rcpt_params(const char *params, SMTPD_RCPTP *rp, char *reply, size_t replylen);
void    smtpd_rcptp_free(SMTPD_RCPTP *rp);

/*
 * The DATA state machine: bytes in, message content out (CRLF lines,
 * dot-unstuffed, without the final "."), one byte at a time so that packet
 * boundaries never matter.  Only <CR><LF>.<CR><LF> ends DATA (the CRLF
 * before the dot may be the one that ended the DATA command).  A bare LF
 * ends a line (stored as CRLF) unless the mode is REJECT.  Lines of any
 * length are kept whole.  Past size_limit the content is counted but no
 * longer stored (out is emptied), so memory stays bounded.
 */
typedef struct SMTPD_DATA {
    int     st;				/* private */
    int     prev_crlf;			/* private */
    int     mode;			/* SMTPD_BARE_* */
    size_t  size_limit;			/* 0: none */
    size_t  size;			/* content bytes so far (CRLF form) */
    int     overflow;			/* size_limit exceeded */
    int     bare_lf;			/* a bare LF was seen */
    BUF    *out;
} SMTPD_DATA;

#define SMTPD_DATA_MORE		0
#define SMTPD_DATA_END		1
#define SMTPD_DATA_BARE_LF	(-1)	/* mode REJECT and a bare LF arrived */
void    smtpd_data_init(SMTPD_DATA *d, int mode, size_t size_limit, BUF *out);
int     smtpd_data_feed(SMTPD_DATA *d, const char *buf, size_t len, size_t *consumed);

/* Networks: "127.0.0.0/8", "[::1]/128", "10.1.2.3", "[::1]". */
int     smtpd_net_match(const char *addr, char *const *nets);
/*
 * Domains: "example.com" matches itself and its subdomains, ".example.com"
 * its subdomains, "type:name" when the table has the domain or a parent
 * domain.  1 match, 0 none, -1 table lookup error (logged).
 */
int     smtpd_domain_match(const char *domain, char *const *domains);

/* How a "type:name" element is looked up: 1 match, 0 none, -1 error. */
extern int (*smtpd_domain_table_fn) (const char *spec, const char *domain);

/*
 * smtpd_relay_restrictions for one recipient.  Returns 0 (permit),
 * SMTPD_RELAY_DENIED when reject/defer_unauth_destination refused it
 * ("554 5.7.1 <r>: Relay access denied", 454 for defer), or -1 for any
 * other refusal (a table lookup failure, reject, defer, an unknown name);
 * the reply is in reply.  The code, not the reply's text, tells relay
 * refusals apart (the rejects_relay counter).
 */
#define SMTPD_RELAY_DENIED	(-2)
int     smtpd_relay_check(char *const *restrictions, int client_in_mynetworks,
			          const char *rcpt, char *const *relay_domains,
			          char *reply, size_t replylen);

/* Command counters for the "disconnect from" line, Postfix's order. */
#define SMTPD_C_HELO	0
#define SMTPD_C_EHLO	1
#define SMTPD_C_STARTTLS 2
#define SMTPD_C_AUTH	3
#define SMTPD_C_MAIL	4
#define SMTPD_C_RCPT	5
#define SMTPD_C_DATA	6
#define SMTPD_C_RSET	7
#define SMTPD_C_NOOP	8
#define SMTPD_C_VRFY	9
#define SMTPD_C_ETRN	10
#define SMTPD_C_QUIT	11
#define SMTPD_C_UNKNOWN	12
#define SMTPD_C_COUNT	13
typedef struct SMTPD_COUNTS {
    int     ok[SMTPD_C_COUNT];
    int     total[SMTPD_C_COUNT];
} SMTPD_COUNTS;
/* Appends " ehlo=1 mail=1 rcpt=0/1 commands=2/3" to b. */
void    smtpd_counts_format(const SMTPD_COUNTS *c, BUF *b);

#endif
