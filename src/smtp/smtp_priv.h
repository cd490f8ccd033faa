/*
 * smtp_priv - declarations shared by the files of the smtp module only.
 * Not a public interface.
 *
 *   smtp.c          parameters, the life cycle of a delivery, error: and
 *                   discard:, the entry points (smtp.h)
 *   smtp_route.c    destination keys and routing (transport, relayhost)
 *   smtp_resolve.c  nexthop resolution into the address list (MX, A/AAAA)
 *   smtp_proto.c    timers, the connection, the SMTP dialogue
 *   smtp_cache.c    the connection cache between deliveries
 *   smtp_secure.c   TLS (policy, STARTTLS, wrappermode, verification) and
 *                   SMTP AUTH, over the tls and sasl modules
 *   smtp_trouble.c  results, logging and failure policy (which server next,
 *                   defer or bounce), as Postfix's smtp_trouble.c
 */
#ifndef SMTP_PRIV_H_INCLUDED
#define SMTP_PRIV_H_INCLUDED

#include <stdint.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "cleanup/cleanup.h"
#include "config/config.h"
#include "dns/dns.h"
#include "smtp/smtp.h"
#include "util/util.h"
#include "tls/tls.h"
#include "sasl/sasl.h"
#include "table/table.h"

/* Parameter lookups that tolerate a name the config table lacks. */
const char *smtp_cf_str(const CONFIG *cf, const char *name, const char *dflt);
long long smtp_cf_time(const CONFIG *cf, const char *name, long long dflt);
long long smtp_cf_int(const CONFIG *cf, const char *name, long long dflt);

/* Forget cached texthash tables (smtp_create / smtp_reconfigure). */
void    smtp_maps_flush(void);

/* Parameters, shared by reference with the deliveries that started under them. */
typedef struct SMTP_PARAMS {
    int     refs;
    int     connect_tmo, helo_tmo, mail_tmo, rcpt_tmo;
    int     data_init_tmo, data_xfer_tmo, data_done_tmo, quit_tmo, starttls_tmo;
    size_t  line_limit;			/* smtp_line_length_limit; 0 = none */
    char   *helo_name;

    /* TLS and SMTP AUTH (smtp_secure.c). */
    TLS_CLIENT_PARAMS tlsp;		/* strings in strs */
    TLS_CLIENT *tls;			/* NULL: the TLS engine is unavailable */
    int     tls_wrapper;		/* smtp_tls_wrappermode */
    int     dnssec;			/* smtp_dns_support_level = dnssec */
    int     insecure_mx_policy;		/* smtp_tls_dane_insecure_mx_policy: TLS_LEV_* */
    TABLE_LIST *tls_policy;		/* smtp_tls_policy_maps, or NULL */
    int     sasl_enable;
    TABLE_LIST *sasl_passwd;		/* smtp_sasl_password_maps, or NULL */
    int     sasl_passwd_broken;		/* set but unusable: defer, never go unauthenticated */
    int     sasl_sender_dep;
    int     sasl_soft_bounce;
    char    sasl_delim[2];
    char   *rcpt_delim;			/* recipient_delimiter, for the sender lookup */
    char   *sasl_mech_filter;
    unsigned sasl_opts, sasl_tls_opts, sasl_tlsv_opts;
    char  **strs;			/* strings owned by these parameters */
    int     nstrs;
    int     mx_address_limit;
    int     mx_session_limit;
    char  **fallback;
    int     nfallback;
    int     cache_on;			/* smtp_connection_cache_on_demand */
    int     cache_time;			/* smtp_connection_cache_time_limit */
    int     reuse_limit;		/* smtp_connection_reuse_count_limit, capped */
    int     rset_tmo;
    /* Loop detection (issue 14): who relayq itself is. */
    char   *myhostname;
    struct SMTP_SELF *self;		/* every smtpd_listen address and port */
    int     nself;
    /* smtp_header_checks ... smtp_body_checks (cleanup_checks.c), or NULL */
    CLEANUP_CHECKS *checks;
    char   *checks_error;		/* set but unusable: deliveries are deferred */
    CLEANUP_GENERIC *generic;		/* smtp_generic_maps, or NULL */
    char   *generic_error;		/* set but unusable: deliveries are deferred */
    size_t  rec_limit;			/* line_length_limit: body records for the checks */
} SMTP_PARAMS;

/* One of relayq's own listeners: an address (or a wildcard) and a port. */
typedef struct SMTP_SELF {
    int     family;			/* AF_INET, AF_INET6 */
    unsigned char bin[16];
    int     wildcard;			/* 0.0.0.0 or :: */
    int     port;
} SMTP_SELF;

/* Is addr:port one of relayq's own listeners? (smtp_proto.c) */
int     smtp_is_self(const SMTP_PARAMS *p, const char *addr, int port);
void    smtp_self_load(SMTP_PARAMS *p, const CONFIG *cf);
void    smtp_self_free(SMTP_PARAMS *p);

/*
 * relayq's own bounds on the connection cache: Postfix's reuse count limit
 * 0 means "no limit", but one session should not live for ever; nor should
 * a burst to many servers leave an unbounded number of idle sockets.  The
 * time bound is Postfix's smtp_connection_reuse_time_limit default.
 */
#define SMTP_CACHE_MAX_USES	100
#define SMTP_CACHE_MAX_IDLE	100
#define SMTP_CACHE_MAX_AGE_US	(300 * 1000000LL)
#define SMTP_CACHE_QUIT_TMO	10

typedef struct SMTP_DELIV SMTP_DELIV;
typedef struct SMTP_CONN SMTP_CONN;

struct SMTP {
    struct event_base *base;
    SMTP_PARAMS *p;
    DNS    *dns;
    char   *dns_servers;
    DNS   **old_dns;			/* replaced by a reload, still answering */
    int     nold_dns;
    SMTP_DELIV *delivs;
    int     shutdown;
    uint64_t rng;
    SMTP_CONN *conns;			/* cached sessions: idle, or closing */
    int     nidle;
};

/* One candidate server address. */
typedef struct SMTP_ADDR {
    char    host[256];
    char    addr[64];
    int     family;
    int     port;
    char    dest[256];			/* the next hop as written, for TLS policy and SASL */
    int     secure;			/* DNSSEC: the address RRset was authenticated */
    char    cname[256];			/* DNSSEC: host after its CNAMEs, or "" */
    int     mx_secure;			/* -1: no MX lookup; 0/1: the MX RRset insecure/secure */
} SMTP_ADDR;

/*
 * A cached session between two deliveries: the connection (TLS or not, as
 * its parameters wanted), what EHLO announced, and how often it served.
 * Idle, it is looked up by server address and port under the same
 * parameters (so the same TLS requirement and HELO name); closing, it has
 * sent QUIT and waits for the reply or the end.
 */
struct SMTP_CONN {
    SMTP   *s;
    SMTP_CONN *prev, *next;
    SMTP_PARAMS *p;
    struct bufferevent *bev;
    struct event *timer;
    char    addr[64];
    int     port;
    int     tls_on;
    char    dest[256];			/* the next hop it was opened for */
    int     f_pipelining, f_dsn, f_smtputf8, f_starttls, f_8bitmime, f_size;
    long long size_limit;
    int     uses;			/* transactions done on it */
    int64_t born_us;
    int     closing;
};

/* Recipient progress within this attempt. */
#define R_PENDING  0
#define R_FINAL    1

/* Commands whose replies are awaited, in order. */
#define CMD_MAIL     1
#define CMD_RCPT     2
#define CMD_DATA     3
#define CMD_DOT      4
#define CMD_DOT_NONE 5			/* "." after DATA was accepted with no recipients */
#define CMD_QUIT     6

/* Session stages before the mail transaction. */
#define ST_NONE      0
#define ST_CONNECT   1
#define ST_GREETING  2
#define ST_EHLO      3
#define ST_HELO      4
#define ST_STARTTLS  5
#define ST_TLS       6
#define ST_XACT      7			/* MAIL/RCPT/DATA/body/. */
#define ST_QUIT      8
#define ST_RSET      9			/* after a rejected transaction, before caching */
#define ST_AUTH      10			/* SMTP AUTH exchange */

typedef struct SMTP_CMD {
    int     type;
    int     ri;				/* recipient slot for CMD_RCPT */
} SMTP_CMD;

struct SMTP_DELIV {
    SMTP   *s;
    SMTP_PARAMS *p;
    SMTP_DELIV *prev, *next;
    const QMSG *msg;
    int    *rcpts;			/* message recipient indices */
    int     nrcpt;
    int    *rstate;			/* R_* per slot */
    int    *accepted;			/* RCPT accepted in this session */
    char   *dest;
    int64_t active_us, handoff_us, setup_us, end_us;
    SMTP_DONE done;
    void   *ctx;
    SMTP_RESULT res;
    const char *service;		/* smtp, error, discard */

    /* Resolution. */
    char  **resolve;			/* nexthops still to resolve */
    int     nresolve, iresolve;
    int     resolve_limit;		/* address limit for this batch (0 = none) */
    DNS_MX *mx;
    int     nmx, imx;
    int     mx_port;
    int     mx_secure;			/* of the batch being resolved: as SMTP_ADDR */
    int     batch_start;		/* addrs index where this nexthop's batch began */
    int     dns_busy;
    int     fallback_used;
    SMTP_ADDR *addrs;
    int     naddr, caddr, cur;		/* cur: index of the address in use */
    int     primary_end;		/* addrs[0..primary_end) are primary */
    int     sessions;			/* sessions that completed the handshake */

    /* Last failure, for recipients left pending at the end. */
    char    last_dsn[12];
    char   *last_reason;
    char   *last_relay;
    char   *last_mta;
    char   *last_diag;

    /* Connection. */
    int     fd;
    struct event *conn_ev;
    struct bufferevent *bev;
    struct event *timer;
    struct event *done_ev;
    int     stage;
    const char *stage_desc;
    int     connected;
    char    namaddr[340];		/* "host[addr]" */
    char    relay[360];			/* "host[addr]:port" */
    int     f_pipelining, f_dsn, f_smtputf8, f_starttls, f_8bitmime, f_size;
    long long size_limit;
    int     tls_on;
    TLS_POLICY tls_pol;			/* for the address in use */
    /* smtp_tls_policy_maps with a socketmap: looked up on the loop first */
    TABLE_REQ *pol_req;			/* the lookup in flight */
    char  **pol_keys;			/* keys tried, in order (tls_policy_keys) */
    char   *pol_dest;			/* the next hop they belong to */
    int     pol_i;			/* the key that answered */
    int     pol_st;			/* its TABLE_* status */
    char   *pol_val;			/* its value (found) */
    char    pol_err[256];		/* its error text */
    int     pol_ready;			/* answers complete for pol_dest */
    int     pol_starting;		/* inside secure_policy_fetch() */
    /* DANE: the TLSA lookup for the server in use, on the loop first */
    char   *dane_name;			/* _PORT._tcp.HOST asked */
    char   *dane_skip;			/* _PORT._tcp.CNAME that had no secure TLSA */
    char   *dane_cn_host;		/* a server whose own CNAME record was asked */
    int     dane_cn_st;			/* TLS_CNAME_* of it */
    char    dane_cn_why[300];
    int     dane_ready;			/* its answer is below */
    int     dane_st;			/* TLS_TLSA_* */
    int     dane_secure;
    TLS_TLSA *dane_tlsa;
    size_t *dane_rdlen;
    int     dane_n;
    char    dane_why[300];
    int     tls_wrapped;		/* smtp_tls_wrappermode: TLS before the greeting */
    int     tls_matched;		/* the server certificate was verified */
    int     f_auth;			/* EHLO offered AUTH */
    char   *auth_mechs;			/* its mechanisms, filtered */
    SASL_CLIENT *sasl;
    char   *sasl_pending;		/* an initial response sent after the first 334 */
    int     sasl_steps;
    int     sasl_done;			/* logged in (session not reusable with sender-dependent auth) */
    BUF     reply;			/* lines of the reply being read, joined by spaces */
    int     reply_lines;
    SMTP_CMD *cmdq;
    int     cmd_head, cmd_tail, cmd_cap;
    int     next_rcpt;			/* non-pipelined: next slot to send RCPT for */
    int     naccepted;
    int     mail_failed;
    size_t  body_off;
    int     body_bol;
    size_t  body_col;			/* characters sent on the current line */
    int     in_body;			/* streaming the content */
    BUF     filtered;			/* the content after smtp_*_checks */
    char   *g_sender;			/* smtp_generic_maps: MAIL FROM address, or NULL: as queued */
    char  **g_rcpt;			/* per slot: RCPT TO address, or NULL: as queued */
    int     filtered_done;
    unsigned conn_gen;			/* bumped by sess_close() */
    int     conn_use;			/* transactions on this session, this one included */
    int64_t conn_born_us;
    int     reused;			/* the session came from the cache */
    int     xact_replies;		/* replies received in this transaction */
    int     no_reuse;			/* the server said 421: do not cache */
    int     skip_cache;			/* a cached session was dead: connect afresh */
    int     reached;			/* index of the last address that answered, or -1 */
    int     finished;
};

/* Functions one file of the client calls in another. */

/* smtp.c */
void    params_release(SMTP_PARAMS *p);
uint64_t smtp_rand(SMTP *s);
void    deliv_finish(SMTP_DELIV *d);

/* smtp_resolve.c */
void    deliv_resolve_next(SMTP_DELIV *d);

/* smtp_proto.c */
void    sess_timeout_cb(evutil_socket_t fd, short what, void *arg);
void    sess_arm(SMTP_DELIV *d, int stage, int seconds, const char *desc);
void    sess_close(SMTP_DELIV *d);
void    sess_send(SMTP_DELIV *d, const char *fmt, ...) UTIL_PRINTF(2, 3);
void    sess_connect(SMTP_DELIV *d);
void    send_quit(SMTP_DELIV *d);
void    xact_start(SMTP_DELIV *d);
void    sess_writecb(struct bufferevent *bev, void *arg);
void    sess_readcb(struct bufferevent *bev, void *arg);
void    sess_eventcb(struct bufferevent *bev, short what, void *arg);

/* smtp_cache.c */
void    conn_free(SMTP_CONN *c);
void    conn_quit_now(SMTP_CONN *c);
void    cache_close_idle(SMTP *s);
int     sess_cacheable(SMTP_DELIV *d);
void    sess_cache(SMTP_DELIV *d);
int     cache_take(SMTP_DELIV *d);
int     sess_stale(SMTP_DELIV *d);
void    xact_end(SMTP_DELIV *d, int need_rset);

/* smtp_proto.c (continued) */
void    setup_done(SMTP_DELIV *d);
void    send_ehlo(SMTP_DELIV *d);

/* smtp_secure.c: TLS and SMTP AUTH */
void    secure_params_load(SMTP_PARAMS *p, const CONFIG *cf);
void    secure_params_free(SMTP_PARAMS *p);
int     secure_policy_fetch(SMTP_DELIV *d);	/* 1 ready; 0 lookup on the loop, then sess_connect() */
void    secure_policy_forget(SMTP_DELIV *d);	/* cancel and free the above */
int     secure_policy(SMTP_DELIV *d);	/* 0; 1: TLSA lookup on the loop, then sess_connect(); -1 after failing the address */
void    secure_tls_start(SMTP_DELIV *d, int wrapped);
void    secure_tls_done(SMTP_DELIV *d);
void    secure_after_ehlo(SMTP_DELIV *d);
void    secure_starttls_reply(SMTP_DELIV *d, int code, const char *reply);
void    secure_auth_reply(SMTP_DELIV *d, int code, const char *reply);
void    secure_ehlo_auth(SMTP_DELIV *d, const char *kw);
void    secure_reset(SMTP_DELIV *d);		/* a session ends */

/* smtp_trouble.c */
void    rcpt_final(SMTP_DELIV *d, int slot, int status, const char *dsn,
		           const char *text, const char *relay, const char *mta,
		           const char *diag);
void    deliv_set_last(SMTP_DELIV *d, const char *dsn, const char *text,
		               const char *relay, const char *mta, const char *diag);
void    sess_fail_soft(SMTP_DELIV *d, const char *dsn, const char *text,
		               const char *diag);
void    sess_fail_connect(SMTP_DELIV *d, const char *text);
void    sess_fail_hard(SMTP_DELIV *d, const char *dsn, const char *text,
		               const char *diag);
void    rcpt_fail(SMTP_DELIV *d, int slot, const char *dsn, const char *text,
		          const char *diag);
void    deliv_next_address(SMTP_DELIV *d);

#endif
