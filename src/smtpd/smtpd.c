/*
 * smtpd - the SMTP server (see smtpd.h): listeners, sessions on libevent
 * bufferevents, the ESMTP dialogue, relay access control, limits,
 * smuggling-safe DATA and STARTTLS.
 *
 * Every session works on a snapshot of the configuration (SMTPD_PARAMS,
 * reference counted) so that SIGHUP never changes a dialogue midway.
 * Input is processed line by line from the bufferevent's input buffer, so
 * pipelined commands are answered in order and their replies leave in one
 * write when the input runs dry.  Nothing blocks: the message is handed to
 * the queue's writer thread and the 250 is sent from its callback only.
 *
 * Client names: no reverse DNS lookup is done.  127.0.0.1 and ::1 are
 * "localhost", every other client is "unknown", as Postfix logs a client
 * whose name does not resolve.
 */
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <openssl/ssl.h>
#include <openssl/err.h>

#include "util/util.h"
#include "log/log.h"
#include "config/config.h"
#include "queue/queue.h"
#include "cleanup/cleanup.h"
#include "milter/milter.h"
#include "smtpd/smtpd.h"
#include "smtpd/smtpd_proto.h"
#include "smtpd/smtpd_proxy.h"
#include "smtpd/smtpd_restrict.h"
#include "config/master.h"
#include "sasl/dovecot.h"
#include "table/table.h"

#define SMTPD_READ_HIGH_WATER	65536	/* cap on buffered, unprocessed input */

#define TLS_NONE	0
#define TLS_MAY		1
#define TLS_ENCRYPT	2

/* A configuration snapshot, shared by the sessions that started under it. */
typedef struct SMTPD_PARAMS {
    int     refs;
    char   *myhostname;
    char   *banner;
    long long msg_limit;
    long long queue_minfree;
    long long hdr_limit;
    long long line_limit;
    long long rcpt_limit;
    long long conn_limit;
    long long sess_limit;
    long long timeout;
    int     deadline;			/* smtpd_per_request_deadline */
    long long min_data_rate;
    long long junk_limit;
    long long soft_limit;
    long long hard_limit;
    long long error_sleep;
    int     v4_prefix, v6_prefix;
    long long hopcount_limit;
    int     disable_vrfy;
    TABLE_LIST *relay_rcpt;		/* relay_recipient_maps, or NULL: every recipient is valid */
    int     relay_rcpt_broken;		/* set, but it did not open: defer */
    int     unknown_relay_code;
    int     show_table_name;
    char   *rcpt_delim;
    int     bare_mode;
    int     helo_required;
    int     always_add;
    int     tls_level;
    char  **bare_excl;
    char  **mynetworks;
    char  **relay_domains;
    char  **relay_restr;
    char  **rcpt_restr;
    char  **rewrite_clients;
    SSL_CTX *ssl;
    MILTERS *milters;			/* smtpd_milters; NULL: none */
    char   *milter_error;		/* smtpd_milters does not parse */
    CLEANUP_CHECKS *checks;		/* header_checks ... body_checks; NULL: none */
    char   *content_filter;		/* "" or smtp:[host]:port */
    long long body_check_limit;
    CLEANUP_RW *rw;			/* address rewriting (canonical, masquerade, BCC) */
    int     rw_broken;			/* its tables or classes do not load: mail gets 451 */
    char   *milter_daemon_name;
    char   *milter_v;
    /* Per listener (master.cf -o). */
    char   *syslog_name;
    int     wrapper;			/* smtpd_tls_wrappermode */
    int     proxy;			/* smtpd_upstream_proxy_protocol = haproxy */
    long long proxy_timeout;
    char  **client_restr;
    char  **helo_restr;
    char  **sender_restr;
    /* SMTP AUTH */
    int     sasl_enable;
    char   *sasl_path;			/* resolved: absolute path or inet:host:port */
    char   *sasl_service;
    char  **sasl_secopts;
    char  **sasl_tls_secopts;
    int     tls_auth_only;
    int     broken_auth;
    int     auth_header;
    char   *sasl_local_domain;
    char  **sasl_exceptions;
    long long sasl_resp_limit;
    long long auth_rate_limit;
    long long rate_unit;
    char  **login_maps;
    TABLE_LIST *login_tl;		/* smtpd_sender_login_maps, NULL: none */
} SMTPD_PARAMS;

typedef struct SESSION SESSION;
typedef struct LISTENER LISTENER;

/* One master.cf smtpd service (or smtpd_listen): its addresses and settings. */
struct LISTENER {
    SMTPD  *s;
    char   *service;			/* "submission", "127.0.0.1:2525" */
    int     line;			/* master.cf line; 0: smtpd_listen */
    char  **opts;			/* -o name=value */
    char  **addrs;			/* bind addresses */
    SMTPD_PARAMS *p;
    long long maxproc;			/* 0: no limit */
    int     nsess;
    int     full;			/* accepting paused at maxproc */
    long long warned;			/* time of the last process-limit warning */
};

/* AUTH commands per client address in the current rate window. */
typedef struct AUTH_RATE {
    char    addr[INET6_ADDRSTRLEN];
    long long start;
    int     count;
} AUTH_RATE;

#define AUTH_RATE_MAX	4096		/* clients remembered */

struct SMTPD {
    struct event_base *base;
    QUEUE  *q;
    SMTPD_HOOKS hooks;
    char  **listen;
    struct evconnlistener **lis;
    LISTENER **lis_owner;		/* per evconnlistener */
    int     nlis;
    struct event *pause_ev;		/* accept paused after EMFILE/ENFILE */
    int    *bound;			/* smtpd_bind()'s sockets, not yet listening */
    char  **bound_name;
    LISTENER **bound_owner;
    int     nbound;
    LISTENER **lst;
    int     nlst;
    const CONFIG *cf;			/* for listeners made in smtpd_listen */
    DOVECOT **dc;			/* one per distinct smtpd_sasl_path */
    int     ndc;
    AUTH_RATE *rates;
    int     nrates;
    SESSION *sessions;
    int     nsess;
    int     shutting;
    void    (*done) (void *);
    void   *done_ctx;
    struct event *done_ev;		/* runs done() from the loop */
    SMTPD_STATS st;
};

struct SESSION {
    SMTPD  *s;
    LISTENER *l;
    SMTPD_PARAMS *p;
    struct bufferevent *bev;
    SESSION *prev, *next;
    char    addr[INET6_ADDRSTRLEN];
    char    name[16];
    char    namaddr[INET6_ADDRSTRLEN + 32];
    char    laddr[INET6_ADDRSTRLEN];
    int     proxy_wait;			/* reading the PROXY header */
    struct event *proxy_ev;		/* smtpd_upstream_proxy_timeout */
    /* SMTP AUTH */
    char   *sasl_user;
    char   *sasl_method;
    char   *sasl_sender;		/* MAIL FROM AUTH= */
    DOVECOT_REQ *auth_req;
    int     auth_state;			/* AUTH_* */
    int     auth_lost;			/* Dovecot went away during a 334 */
    int     in_mynet;
    int     bare_mode;
    int     rewrite_allowed;
    int     rw_context;			/* CLEANUP_RW_*: header rewriting for this client */
    char   *helo;
    int     esmtp;
    int     tls;
    char    last_cmd[16];
    int     errors;
    int     junk;			/* junk commands (Postfix's smtpd_junk_command_limit) */
    const char *reason;			/* why the session ends: "too many errors" */
    unsigned char bin[16];		/* the client address, for prefix grouping */
    int     bfamily;
    struct evbuffer *held;		/* a reply delayed by smtpd_error_sleep_time */
    struct event *sleep_ev;
    int     sleeping;
    struct event *deadline_ev;		/* smtpd_per_request_deadline */
    int64_t deadline_us;		/* 0: no request under way */
    int64_t deadline_ev_at;		/* when deadline_ev fires; 0: not pending */
    SMTPD_LINER lr;
    SMTPD_COUNTS counts;
    /* The transaction. */
    QMSG   *msg;
    int     rcpt_alloc;
    int     in_data;
    SMTPD_DATA dm;
    BUF     data;
    int     waiting;			/* queue commit pending */
    int     closing;			/* close once the output is written */
    int     gone;			/* connection closed; struct kept for the queue callback */
    int     logged_disconnect;
    struct event *close_ev;		/* close_check_cb */
    long long close_polls;
    /* Milters (NULL when none is configured: nothing below is used). */
    MILTER_SESS *ms;
    int     milter_wait;		/* a filter is being asked; input paused */
    char   *milter_hold;		/* quarantine reason for this message */
    int     milter_discard;		/* drop this message after 250 */
    char   *pend_addr;			/* RCPT waiting for the filters */
    SMTPD_RCPTP pend_rp;
    BUF     mbuf;			/* the cleaned message while filters see it */
    MILTER_MSG mmsg;
    int     lport, cport, family;
    char    macro_buf[512];
};

#define AUTH_IDLE	0
#define AUTH_SERVER	1		/* waiting for Dovecot */
#define AUTH_CLIENT	2		/* waiting for the client's response line */

#define SLOG(ss, fmt, ...)	log_msg_as((ss)->p->syslog_name, "smtpd", fmt, __VA_ARGS__)
#define SWARN(ss, fmt, ...)	log_warn_as((ss)->p->syslog_name, "smtpd", fmt, __VA_ARGS__)

static void session_process(SESSION *ss);
static void proxy_read(SESSION *ss);
static void session_free(SESSION *ss);
static void event_cb(struct bufferevent *bev, short what, void *ctx);
static void read_cb(struct bufferevent *bev, void *ctx);

/* Configuration snapshot */

static int tls_level(const char *v)
{
    if (v && str_casecmp(v, "may") == 0)
	return (TLS_MAY);
    if (v && str_casecmp(v, "encrypt") == 0)
	return (TLS_ENCRYPT);
    return (TLS_NONE);
}

/*
 * A snapshot of cf (main.cf, or main.cf plus a listener's -o).  NULL with
 * err on a configuration error (start-up: fatal; SIGHUP: the old one stays).
 */
static void params_unref(SMTPD_PARAMS *p);

/* Is word in receive_override_options? */
static int smtpd_override(const CONFIG *cf, const char *word)
{
    char  **l = config_list(cf, "receive_override_options", 0);
    int     found = 0;

    for (char **cp = l; *cp; cp++)
	if (str_casecmp(*cp, word) == 0)
	    found = 1;
    str_list_free(l);
    return (found);
}

static SMTPD_PARAMS *params_load(const CONFIG *cf, char *err, size_t errlen)
{
    SMTPD_PARAMS *p = xcalloc(1, sizeof(*p));
    char    merr2[256];
    const char *cert, *key, *path, *bad;

    p->refs = 1;
    p->myhostname = xstrdup(config_str(cf, "myhostname"));
    p->banner = xstrdup(config_str(cf, "smtpd_banner"));
    p->msg_limit = config_size(cf, "message_size_limit");
    p->queue_minfree = config_size(cf, "queue_minfree");
    p->hdr_limit = config_size(cf, "header_size_limit");
    p->line_limit = config_size(cf, "line_length_limit");
    if (p->line_limit < 512)
	p->line_limit = 512;		/* RFC 5321 minimum command line */
    p->rcpt_limit = config_int(cf, "smtpd_recipient_limit");
    p->conn_limit = config_int(cf, "smtpd_client_connection_count_limit");
    p->sess_limit = config_known("relayq_smtpd_session_limit") ?
	config_int(cf, "relayq_smtpd_session_limit") : 1000;
    p->timeout = config_time(cf, "smtpd_timeout");
    p->deadline = config_bool(cf, "smtpd_per_request_deadline");
    p->min_data_rate = config_int(cf, "smtpd_min_data_rate");
    p->junk_limit = config_int(cf, "smtpd_junk_command_limit");
    p->soft_limit = config_int(cf, "smtpd_soft_error_limit");
    p->hard_limit = config_int(cf, "smtpd_hard_error_limit");
    p->error_sleep = config_time(cf, "smtpd_error_sleep_time");
    p->v4_prefix = (int) config_int(cf, "smtpd_client_ipv4_prefix_length");
    p->v6_prefix = (int) config_int(cf, "smtpd_client_ipv6_prefix_length");
    p->hopcount_limit = config_int(cf, "hopcount_limit");
    p->disable_vrfy = config_bool(cf, "disable_vrfy_command");
    p->unknown_relay_code = (int) config_int(cf, "unknown_relay_recipient_reject_code");
    p->show_table_name = config_bool(cf, "show_user_unknown_table_name");
    p->rcpt_delim = xstrdup(config_str(cf, "recipient_delimiter"));
    if (config_bool(cf, "smtpd_reject_unlisted_recipient") && *config_str(cf, "relay_recipient_maps")) {
	char    terr[512];

	/* relayqd opened it before dropping privileges: this finds the shared copy. */
	p->relay_rcpt = table_list_open("relay_recipient_maps", config_str(cf, "relay_recipient_maps"),
					TABLE_FLAG_FOLD, terr, sizeof(terr));
	if (p->relay_rcpt == NULL)
	    log_warn("smtpd", "%s: recipients in relay_domains are deferred until it opens", terr);
	p->relay_rcpt_broken = p->relay_rcpt == NULL;
    }
    p->bare_mode = smtpd_bare_mode(config_str(cf, "smtpd_forbid_bare_newline"));
    if (p->bare_mode < 0)
	p->bare_mode = SMTPD_BARE_NORMALIZE;
    p->helo_required = config_bool(cf, "smtpd_helo_required");
    p->always_add = config_bool(cf, "always_add_missing_headers");
    p->bare_excl = config_list(cf, "smtpd_forbid_bare_newline_exclusions", 0);
    p->mynetworks = config_list(cf, "mynetworks", 0);
    p->relay_domains = config_list(cf, "relay_domains", 0);
    p->relay_restr = config_list(cf, "smtpd_relay_restrictions", 0);
    p->rcpt_restr = config_list(cf, "smtpd_recipient_restrictions", 0);
    p->rewrite_clients = config_list(cf, "local_header_rewrite_clients", 0);
    {
	char    rerr[512];

	/* relayqd opened the tables before dropping privileges: these are the shared copies. */
	if ((p->rw = cleanup_rw_create(cf, rerr, sizeof(rerr))) == NULL) {
	    log_warn("smtpd", "%s; mail is refused with 451 until this is fixed", rerr);
	    p->rw_broken = 1;
	}
    }
    p->tls_level = tls_level(config_str(cf, "smtpd_tls_security_level"));
    {
	char    merr[512];

	/* receive_override_options = no_milters: a content filter's return. */
	p->milters = smtpd_override(cf, "no_milters") ? NULL
	    : milters_create(cf, "smtpd_milters", config_str(cf, "smtpd_milters"), merr, sizeof(merr));
	if (p->milters == 0 && smtpd_override(cf, "no_milters"))
	    merr[0] = 0;
	if (p->milters == 0 && merr[0]) {
	    /* As Postfix's milter8_conf_error(): mail is deferred until it is fixed. */
	    log_warn("smtpd", "%s; mail is refused with 451 until this is fixed", merr);
	    p->milter_error = xstrdup(merr);
	}
	p->milter_daemon_name = xstrdup(config_str(cf, "milter_macro_daemon_name"));
	p->milter_v = xstrdup(config_str(cf, "milter_macro_v"));
    }
    p->body_check_limit = config_size(cf, "body_checks_size_limit");
    p->content_filter = xstrdup(config_str(cf, "content_filter"));
    p->syslog_name = xstrdup(config_str(cf, "syslog_name"));
    p->wrapper = config_bool(cf, "smtpd_tls_wrappermode");
    p->proxy = strcmp(config_str(cf, "smtpd_upstream_proxy_protocol"), "haproxy") == 0;
    p->proxy_timeout = config_time(cf, "smtpd_upstream_proxy_timeout");
    p->client_restr = config_list(cf, "smtpd_client_restrictions", 0);
    p->helo_restr = config_list(cf, "smtpd_helo_restrictions", 0);
    p->sender_restr = config_list(cf, "smtpd_sender_restrictions", 0);
    p->sasl_enable = config_bool(cf, "smtpd_sasl_auth_enable");
    path = config_str(cf, "smtpd_sasl_path");
    if (*path == '/' || strncmp(path, "inet:", 5) == 0)
	p->sasl_path = xstrdup(path);
    else
	p->sasl_path = xasprintf("%s/%s", config_str(cf, "queue_directory"), path);
    p->sasl_service = xstrdup(config_str(cf, "smtpd_sasl_service"));
    p->sasl_secopts = config_list(cf, "smtpd_sasl_security_options", 0);
    p->sasl_tls_secopts = config_list(cf, "smtpd_sasl_tls_security_options", 0);
    p->tls_auth_only = config_bool(cf, "smtpd_tls_auth_only");
    p->broken_auth = config_bool(cf, "broken_sasl_auth_clients");
    p->auth_header = config_bool(cf, "smtpd_sasl_authenticated_header");
    p->sasl_local_domain = xstrdup(config_str(cf, "smtpd_sasl_local_domain"));
    p->sasl_exceptions = config_list(cf, "smtpd_sasl_exceptions_networks", 0);
    p->sasl_resp_limit = config_size(cf, "smtpd_sasl_response_limit");
    p->auth_rate_limit = config_int(cf, "smtpd_client_auth_rate_limit");
    p->rate_unit = config_time(cf, "anvil_rate_time_unit");
    p->login_maps = config_list(cf, "smtpd_sender_login_maps", 0);
    *err = 0;
    if (!smtpd_override(cf, "no_header_body_checks")
	&& (p->checks = cleanup_checks_open(cf, "", err, errlen)) == 0 && *err)
	 /* err is set */ ;
    else if (*p->content_filter && !cleanup_filter_valid(p->content_filter, merr2, sizeof(merr2)))
	snprintf(err, errlen, "content_filter = %s: %s", p->content_filter, merr2);
    else if (p->sasl_enable && strcmp(config_str(cf, "smtpd_sasl_type"), "dovecot") != 0)
	snprintf(err, errlen, "smtpd_sasl_type = %s: relayq supports only smtpd_sasl_type = dovecot "
		 "(SMTP AUTH through Dovecot's auth socket); set it with smtpd_sasl_path, or "
		 "smtpd_sasl_auth_enable = no", config_str(cf, "smtpd_sasl_type"));
    else if (p->login_maps && p->login_maps[0]
	     && (p->login_tl = table_list_open("smtpd_sender_login_maps",
					       config_str(cf, "smtpd_sender_login_maps"),
					       TABLE_FLAG_FOLD, err, errlen)) == 0)
	 /* err is set */ ;
    else if ((bad = smtpd_restrict_unknown(p->client_restr)) != 0
	     || (bad = smtpd_restrict_unknown(p->helo_restr)) != 0
	     || (bad = smtpd_restrict_unknown(p->sender_restr)) != 0
	     || (bad = smtpd_restrict_unknown(p->relay_restr)) != 0
	     || (bad = smtpd_restrict_unknown(p->rcpt_restr)) != 0)
	snprintf(err, errlen, "unsupported restriction \"%s\" in smtpd_*_restrictions", bad);
    cert = config_str(cf, "smtpd_tls_cert_file");
    key = config_str(cf, "smtpd_tls_key_file");
    if ((p->tls_level != TLS_NONE || p->wrapper) && *cert && *key) {
	p->ssl = SSL_CTX_new(TLS_server_method());
	if (p->ssl == 0
	    || SSL_CTX_use_certificate_chain_file(p->ssl, cert) != 1
	    || SSL_CTX_use_PrivateKey_file(p->ssl, key, SSL_FILETYPE_PEM) != 1
	    || SSL_CTX_check_private_key(p->ssl) != 1) {
	    log_warn("smtpd", "cannot load TLS certificate %s or key %s: STARTTLS disabled",
		     cert, key);
	    if (p->ssl)
		SSL_CTX_free(p->ssl);
	    p->ssl = 0;
	}
    }
    if (*err == 0 && p->wrapper && p->ssl == 0)
	snprintf(err, errlen, "smtpd_tls_wrappermode = yes needs a usable smtpd_tls_cert_file "
		 "and smtpd_tls_key_file");
    if (*err) {
	params_unref(p);
	return (0);
    }
    return (p);
}

static void params_unref(SMTPD_PARAMS *p)
{
    if (p == 0 || --p->refs > 0)
	return;
    free(p->myhostname);
    free(p->banner);
    str_list_free(p->bare_excl);
    str_list_free(p->mynetworks);
    str_list_free(p->relay_domains);
    if (p->relay_rcpt)
	table_list_close(p->relay_rcpt);
    free(p->rcpt_delim);
    str_list_free(p->relay_restr);
    str_list_free(p->rcpt_restr);
    str_list_free(p->rewrite_clients);
    milters_free(p->milters);
    free(p->milter_error);
    cleanup_checks_close(p->checks);
    cleanup_rw_free(p->rw);
    free(p->content_filter);
    free(p->milter_daemon_name);
    free(p->milter_v);
    free(p->syslog_name);
    str_list_free(p->client_restr);
    str_list_free(p->helo_restr);
    str_list_free(p->sender_restr);
    free(p->sasl_path);
    free(p->sasl_service);
    str_list_free(p->sasl_secopts);
    str_list_free(p->sasl_tls_secopts);
    free(p->sasl_local_domain);
    str_list_free(p->sasl_exceptions);
    str_list_free(p->login_maps);
    table_list_close(p->login_tl);
    if (p->ssl)
	SSL_CTX_free(p->ssl);
    free(p);
}

/* Replies */

static void reply(SESSION *ss, const char *fmt, ...) UTIL_PRINTF(2, 3);

static void reply(SESSION *ss, const char *fmt, ...)
{
    struct evbuffer *out;
    va_list ap;

    if (ss->bev == 0)
	return;
    out = ss->sleeping ? ss->held : bufferevent_get_output(ss->bev);
    va_start(ap, fmt);
    evbuffer_add_vprintf(out, fmt, ap);
    va_end(ap);
    evbuffer_add(out, "\r\n", 2);
}

/* Count a command as done or failed from the first digit of its reply. */
static void count(SESSION *ss, int cmd, int ok)
{
    ss->counts.total[cmd]++;
    if (ok)
	ss->counts.ok[cmd]++;
    else
	ss->errors++;
}

/*
 * Closing waits until the reply is really on its way: with TLS the filter's
 * own buffer empties at once while the record still sits in the socket
 * bufferevent below it, so both are polled.  Bounded by smtpd_timeout.
 */
static void close_check_cb(evutil_socket_t fd, short what, void *ctx)
{
    SESSION *ss = ctx;
    struct bufferevent *under;
    struct timeval tv = {0, 10000};

    if (ss->bev && ss->close_polls++ < ss->p->timeout * 100) {
	under = bufferevent_get_underlying(ss->bev);
	if (evbuffer_get_length(bufferevent_get_output(ss->bev)) > 0
	    || (under && evbuffer_get_length(bufferevent_get_output(under)) > 0)) {
	    evtimer_add(ss->close_ev, &tv);
	    return;
	}
    }
    session_free(ss);
}

/* Send what is queued, then close. */
static void session_close_after_write(SESSION *ss)
{
    struct timeval tv = {0, 0};

    ss->closing = 1;
    if (ss->bev == 0)
	return;
    /* A reply held back by the error sleep goes now: the session ends anyway. */
    if (ss->sleeping) {
	ss->sleeping = 0;
	if (ss->sleep_ev)
	    evtimer_del(ss->sleep_ev);
	evbuffer_add_buffer(bufferevent_get_output(ss->bev), ss->held);
    }
    if (ss->deadline_ev)
	evtimer_del(ss->deadline_ev);
    ss->deadline_ev_at = 0;
    bufferevent_disable(ss->bev, EV_READ);
    if (ss->close_ev == 0)
	ss->close_ev = evtimer_new(ss->s->base, close_check_cb, ss);
    evtimer_add(ss->close_ev, &tv);
}

/* Transactions */

static void txn_reset(SESSION *ss)
{
    if (ss->ms)
	milter_abort(ss->ms);
    free(ss->milter_hold);
    ss->milter_hold = 0;
    ss->milter_discard = 0;
    free(ss->sasl_sender);
    ss->sasl_sender = 0;
    qmsg_free(ss->msg);
    ss->msg = 0;
    ss->rcpt_alloc = 0;
    ss->in_data = 0;
    buf_free(&ss->data);
}

static const char *proto_name(const SESSION *ss)
{
    if (!ss->esmtp)
	return ("SMTP");
    if (ss->sasl_user)				/* RFC 3848 */
	return (ss->tls ? "ESMTPSA" : "ESMTPA");
    return (ss->tls ? "ESMTPS" : "ESMTP");
}

static int has_8bit(const char *s)
{
    for (; *s; s++)
	if ((unsigned char) *s & 0x80)
	    return (1);
    return (0);
}

/* Milters: the macros, the log lines, pausing the session while a filter answers */

static const char *milter_macro(void *ctx, const char *name)
{
    SESSION *ss = ctx;
    SMTPD_PARAMS *p = ss->p;
    const char *cp;

#define MACRO_IS(n) (strcmp(name, (n)) == 0)
    if (MACRO_IS("j"))
	return (p->myhostname);
    if (MACRO_IS("daemon_name"))
	return (p->milter_daemon_name);
    if (MACRO_IS("v"))
	return (p->milter_v);
    if (MACRO_IS("_")) {
	snprintf(ss->macro_buf, sizeof(ss->macro_buf), "%s [%s]", ss->name, ss->addr);
	return (ss->macro_buf);
    }
    if (MACRO_IS("client_addr"))
	return (ss->addr);
    if (MACRO_IS("client_name") || MACRO_IS("client_ptr"))
	return (ss->name);
    if (MACRO_IS("client_resolve"))
	return (strcmp(ss->name, "unknown") ? "OK" : "FAIL");
    if (MACRO_IS("client_port") || MACRO_IS("daemon_port")) {
	snprintf(ss->macro_buf, sizeof(ss->macro_buf), "%d",
		 MACRO_IS("client_port") ? ss->cport : ss->lport);
	return (ss->macro_buf);
    }
    if (MACRO_IS("daemon_addr"))
	return (ss->laddr);
    /* SMTP AUTH, as Postfix: the method, the login name, MAIL FROM's AUTH=. */
    if (MACRO_IS("auth_type"))
	return (ss->sasl_user ? ss->sasl_method : 0);
    if (MACRO_IS("auth_authen"))
	return (ss->sasl_user);
    if (MACRO_IS("auth_author"))
	return (ss->sasl_user ? ss->sasl_sender : 0);
    if (ss->tls && ss->bev && (MACRO_IS("tls_version") || MACRO_IS("cipher")
				|| MACRO_IS("cipher_bits"))) {
	SSL    *ssl = bufferevent_openssl_get_ssl(ss->bev);

	if (ssl == 0)
	    return (0);
	if (MACRO_IS("tls_version"))
	    return (SSL_get_version(ssl));
	if (MACRO_IS("cipher"))
	    return (SSL_get_cipher_name(ssl));
	snprintf(ss->macro_buf, sizeof(ss->macro_buf), "%d", SSL_get_cipher_bits(ssl, 0));
	return (ss->macro_buf);
    }
    /* As Postfix, the queue ID exists from the first accepted recipient on. */
    if (MACRO_IS("i"))
	return (ss->msg && ss->msg->qid[0] ? ss->msg->qid : 0);
    if (MACRO_IS("mail_addr"))
	return (ss->msg ? ss->msg->sender : 0);
    if (MACRO_IS("mail_host"))
	return (ss->msg ? ((cp = strrchr(ss->msg->sender, '@')) ? cp + 1 : "") : 0);
    if (MACRO_IS("mail_mailer") || MACRO_IS("rcpt_mailer"))
	return (ss->msg ? "smtp" : 0);
    if (MACRO_IS("rcpt_addr"))
	return (ss->pend_addr);
    if (MACRO_IS("rcpt_host"))
	return (ss->pend_addr ? ((cp = strrchr(ss->pend_addr, '@')) ? cp + 1 : "") : 0);
    return (0);
#undef MACRO_IS
}

/*
 * "NOQUEUE: milter-reject: RCPT from NAME[ADDR]: 550 5.7.1 text; from=<s>
 * to=<r> proto=ESMTP helo=<h>", as Postfix's smtpd (and, for the end of
 * the message, its cleanup, which logs the text without the reply code).
 */
static void milter_log(SESSION *ss, const char *service, const char *action,
		               const char *where, const char *text, const char *to)
{
    log_reject(service, ss->msg ? ss->msg->qid : NULL, action, where, ss->namaddr, text,
	       ss->msg ? ss->msg->sender : NULL, to, proto_name(ss), ss->helo);
}

/* Log a filter's decision; 1 when it ends the command with r->reply. */
static int milter_decided(SESSION *ss, const MILTER_RESULT *r, const char *where, const char *to)
{
    if (r->hold && ss->milter_hold == 0 && ss->msg) {
	ss->milter_hold = xstrdup(r->hold);
	milter_log(ss, "smtpd", "milter-hold", where, r->hold, to);
    }
    switch (r->action) {
    case MILTER_REJECT:
    case MILTER_SHUTDOWN:
	milter_log(ss, "smtpd", "milter-reject", where, r->reply, to);
	return (1);
    case MILTER_DISCARD:
	if (!ss->milter_discard && ss->msg)
	    milter_log(ss, "smtpd", "milter-discard", where, "milter triggers DISCARD action", to);
	ss->milter_discard = 1;
	return (0);
    default:
	return (0);
    }
}

static void milter_pause(SESSION *ss)
{
    ss->milter_wait = 1;
    if (ss->bev)
	bufferevent_disable(ss->bev, EV_READ);
}

/* After a filter answered: go on with the input that waited. */
static void milter_resume(SESSION *ss)
{
    ss->milter_wait = 0;
    if (ss->closing || ss->bev == 0)
	return;
    bufferevent_enable(ss->bev, EV_READ);
    session_process(ss);
}

/* The reply for a MILTER_SHUTDOWN, then close. */
static void milter_shutdown(SESSION *ss, const MILTER_RESULT *r)
{
    reply(ss, "%s", r->reply && strncmp(r->reply, "421", 3) == 0 ?
	  r->reply : "421 4.7.0 Server closing connection");
    session_close_after_write(ss);
}

/* argv for SMFIC_MAIL/RCPT: "<addr>" then the ESMTP parameters. */
static char **milter_args(const char *addr, const char *params)
{
    char  **v;
    int     n = 1;
    const char *cp = params ? params : "";

    v = xcalloc(strlen(cp) / 2 + 3, sizeof(char *));
    v[0] = xasprintf("<%s>", addr);
    while (*cp) {
	size_t  len;

	while (*cp == ' ' || *cp == '\t')
	    cp++;
	if ((len = strcspn(cp, " \t")) == 0)
	    break;
	v[n++] = xstrndup(cp, len);
	cp += len;
    }
    return (v);
}

static void helo_reply(SESSION *ss);

static void milter_helo_cb(void *ctx, const MILTER_RESULT *r)
{
    SESSION *ss = ctx;

    /* Sendmail compatibility (Postfix): a rejected HELO still gets 250; the reply persists. */
    if (r->action == MILTER_REJECT || r->action == MILTER_SHUTDOWN)
	milter_log(ss, "smtpd", "milter-reject", ss->esmtp ? "EHLO" : "HELO", r->reply, 0);
    if (r->action == MILTER_SHUTDOWN) {
	milter_shutdown(ss, r);
	return;
    }
    helo_reply(ss);
    milter_resume(ss);
}

/* SMTP AUTH */

static DOVECOT *session_dovecot(SESSION *ss)
{
    SMTPD  *s = ss->s;

    for (int i = 0; i < s->ndc; i++)
	if (strcmp(dovecot_path(s->dc[i]), ss->p->sasl_path) == 0)
	    return (s->dc[i]);
    s->dc = xrealloc(s->dc, sizeof(*s->dc) * (size_t) (s->ndc + 1));
    return (s->dc[s->ndc++] = dovecot_create(s->base, ss->p->sasl_path));
}

static int auth_offered(const SESSION *ss)
{
    const SMTPD_PARAMS *p = ss->p;

    return (p->sasl_enable && (!p->tls_auth_only || ss->tls)
	    && !smtpd_net_match(ss->addr, p->sasl_exceptions));
}

/* Postfix's anvil: AUTH commands per client address per time unit. */
static int auth_rate_exceeded(SESSION *ss, int *rate)
{
    SMTPD  *s = ss->s;
    long long now = time_now_us() / 1000000;
    AUTH_RATE *r = 0;
    int     i, oldest = 0;

    for (i = 0; i < s->nrates; i++) {
	if (now - s->rates[i].start >= ss->p->rate_unit) {
	    s->rates[i] = s->rates[--s->nrates];	/* expired */
	    i--;
	    continue;
	}
	if (strcmp(s->rates[i].addr, ss->addr) == 0)
	    r = &s->rates[i];
	else if (s->rates[i].start < s->rates[oldest].start)
	    oldest = i;
    }
    if (r == 0) {
	if (s->nrates >= AUTH_RATE_MAX)
	    r = &s->rates[oldest];
	else {
	    s->rates = xrealloc(s->rates, sizeof(*s->rates) * (size_t) (s->nrates + 1));
	    r = &s->rates[s->nrates++];
	}
	snprintf(r->addr, sizeof(r->addr), "%s", ss->addr);
	r->start = now;
	r->count = 0;
    }
    *rate = ++r->count;
    return (ss->p->auth_rate_limit > 0 && r->count > ss->p->auth_rate_limit);
}

static void auth_finish(SESSION *ss)
{
    ss->auth_req = 0;
    ss->auth_state = AUTH_IDLE;
    free(ss->sasl_method);
    if (ss->sasl_user == 0)
	ss->sasl_method = 0;
}

/* Reply to a Dovecot answer (or a failure found here). */
static void auth_result(SESSION *ss, int status, const char *text, const char *user)
{
    if (status == DOVECOT_MORE) {
	reply(ss, "334 %s", text);
	ss->auth_state = AUTH_CLIENT;
    } else if (status == DOVECOT_OK) {
	char   *method = ss->sasl_method;

	ss->sasl_method = 0;
	auth_finish(ss);
	ss->sasl_method = method;
	if (*ss->p->sasl_local_domain && strchr(user, '@') == 0)
	    ss->sasl_user = xasprintf("%s@%s", user, ss->p->sasl_local_domain);
	else
	    ss->sasl_user = xstrdup(user);
	reply(ss, "235 2.7.0 Authentication successful");
	count(ss, SMTPD_C_AUTH, 1);
    } else {
	const char *reason = *text ? text : "(reason unavailable)";

	SWARN(ss, "%s: SASL %.100s authentication failed: %s, sasl_username=%.100s",
	      ss->namaddr, ss->sasl_method, reason, user ? user : "(unavailable)");
	if (status == DOVECOT_TEMP)
	    reply(ss, "454 4.7.0 Temporary authentication failure: %s", reason);
	else
	    reply(ss, "535 5.7.8 Error: authentication failed: %s", reason);
	auth_finish(ss);
	count(ss, SMTPD_C_AUTH, 0);
    }
}

static void auth_cb(void *ctx, int status, const char *text, const char *user)
{
    SESSION *ss = ctx;

    if (status == DOVECOT_TEMP && ss->auth_state == AUTH_CLIENT) {
	/* Lost while the client owes a response: answer that response. */
	ss->auth_req = 0;
	ss->auth_lost = 1;
	return;
    }
    auth_result(ss, status, text, user);
    if (ss->bev && !ss->closing && ss->auth_state != AUTH_SERVER) {
	bufferevent_enable(ss->bev, EV_READ);
	session_process(ss);
    }
}

/* A response line to a 334 challenge. */
static void auth_response(SESSION *ss, const char *line)
{
    if (ss->auth_lost && strcmp(line, "*") != 0) {
	ss->auth_lost = 0;
	auth_result(ss, DOVECOT_TEMP, "Connection lost to authentication server", 0);
	return;
    }
    ss->auth_lost = 0;
    if (strcmp(line, "*") == 0) {
	SWARN(ss, "%s: SASL %s authentication aborted", ss->namaddr, ss->sasl_method);
	dovecot_cancel(ss->auth_req);
	auth_finish(ss);
	reply(ss, "501 5.7.0 Authentication aborted");
	count(ss, SMTPD_C_AUTH, 0);
	return;
    }
    if (!dovecot_valid_base64(line)) {
	const char *reason = "Invalid base64 data in continued response";

	SWARN(ss, "%s: SASL %.100s authentication failed: %s, sasl_username=(unavailable)",
	      ss->namaddr, ss->sasl_method, reason);
	dovecot_cancel(ss->auth_req);
	auth_finish(ss);
	reply(ss, "535 5.7.8 Error: authentication failed: %s", reason);
	count(ss, SMTPD_C_AUTH, 0);
	return;
    }
    ss->auth_state = AUTH_SERVER;
    dovecot_cont(ss->auth_req, line);
}

static void cmd_auth(SESSION *ss, char *arg)
{
    SMTPD_PARAMS *p = ss->p;
    char   *mech, *resp, *extra;
    char   *const *secopts = ss->tls ? p->sasl_tls_secopts : p->sasl_secopts;
    DOVECOT *dc;
    BUF     known = BUF_INIT;
    int     rate;

    if (p->helo_required && ss->helo == 0) {
	reply(ss, "503 5.5.1 Error: send HELO/EHLO first");
	goto fail;
    }
    if (!p->sasl_enable || smtpd_net_match(ss->addr, p->sasl_exceptions)) {
	reply(ss, "503 5.5.1 Error: authentication not enabled");
	goto fail;
    }
    if (p->auth_rate_limit > 0 && auth_rate_exceeded(ss, &rate)) {
	SWARN(ss, "AUTH command rate limit exceeded: %d from %s for service %s",
	      rate, ss->namaddr, ss->l ? ss->l->service : "smtp");
	reply(ss, "450 4.7.1 Error: too many AUTH commands from %s", ss->addr);
	goto fail;
    }
    if (ss->msg) {
	reply(ss, "503 5.5.1 Error: MAIL transaction in progress");
	goto fail;
    }
    if (p->tls_auth_only && !ss->tls) {
	reply(ss, "504 5.5.4 Encryption required for requested authentication mechanism");
	goto fail;
    }
    if (ss->sasl_user) {
	reply(ss, "503 5.5.1 Error: already authenticated");
	goto fail;
    }
    mech = arg;
    resp = 0;
    for (extra = arg; *extra && *extra != ' ' && *extra != '\t'; extra++)
	 /* void */ ;
    if (*extra) {
	*extra++ = 0;
	while (*extra == ' ' || *extra == '\t')
	    extra++;
	resp = extra;
	while (*extra && *extra != ' ' && *extra != '\t')
	    extra++;
	if (*extra)
	    mech = 0;				/* three or more words */
	else if (*resp == 0)
	    resp = 0;
    }
    if (mech == 0 || *mech == 0) {
	reply(ss, "501 5.5.4 Syntax: AUTH mechanism");
	goto fail;
    }
    dc = session_dovecot(ss);
    ss->sasl_method = xstrdup(mech);
    for (char *cp = ss->sasl_method; *cp; cp++)
	if ((unsigned char) *cp < 0x20 || (unsigned char) *cp >= 0x7f)
	    *cp = '?';
    /* Mechanisms as announced; before the first handshake, let Dovecot judge. */
    if (dovecot_mechs(dc, secopts, &known) == 0 && !dovecot_mech_allowed(dc, mech, secopts)) {
	char   *why = xasprintf("Invalid authentication mechanism: '%s'", ss->sasl_method);

	auth_result(ss, DOVECOT_FAIL, why, 0);
	free(why);
	buf_free(&known);
	return;
    }
    buf_free(&known);
    if (resp && !dovecot_valid_base64(resp)) {
	auth_result(ss, DOVECOT_FAIL, "Invalid base64 data in initial response", 0);
	return;
    }
    ss->auth_state = AUTH_SERVER;
    ss->auth_req = dovecot_auth(dc, ss->sasl_method, resp, p->sasl_service,
				*ss->laddr ? ss->laddr : "127.0.0.1", ss->addr, ss->tls,
				secopts, auth_cb, ss);
    return;

fail:
    count(ss, SMTPD_C_AUTH, 0);
}

/*
 * smtpd_sender_login_maps: the owners of a sender address, with Postfix's
 * address search order (user@domain, then @domain; relayq has no local
 * domains).  A table error counts as no entry, with a warning.  Lookups
 * are synchronous: a socketmap: table here would block the loop.
 */
static char *login_owners(void *ctx, const char *sender)
{
    TABLE_LIST *tl = ctx;
    TABLE_ADDR_OPTS o = {TABLE_ADDR_FULL | TABLE_ADDR_NOEXT | TABLE_ADDR_AT_DOMAIN, 0, 0, 0, 0};
    const char *val;
    char    err[256];
    int     rc;

    rc = table_find_addr(tl, sender, &o, &val, 0, err, sizeof(err));
    if (rc == TABLE_ERROR)
	log_warn("smtpd", "smtpd_sender_login_maps: %s", err);
    return (rc == TABLE_FOUND ? xstrdup(val) : 0);
}

static void login_maps_bind(SESSION *ss, SMTPD_RCTX *c)
{
    if (ss->p->login_tl) {
	c->owners = login_owners;
	c->ctx = ss->p->login_tl;
    }
}

/* Commands */

static void cmd_helo(SESSION *ss, const char *arg, int esmtp)
{

    if (*arg == 0) {
	reply(ss, "501 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
	count(ss, esmtp ? SMTPD_C_EHLO : SMTPD_C_HELO, 0);
	return;
    }
    txn_reset(ss);
    free(ss->helo);
    /* Postfix's helo_cmd: it goes into Received: and every log line, so nothing can hide in it. */
    ss->helo = cleanup_helo_name(arg);
    ss->esmtp = esmtp;
    count(ss, esmtp ? SMTPD_C_EHLO : SMTPD_C_HELO, 1);
    if (ss->ms) {
	milter_pause(ss);
	milter_helo_event(ss->ms, arg, milter_helo_cb, ss);
	return;
    }
    helo_reply(ss);
}

static void helo_reply(SESSION *ss)
{
    SMTPD_PARAMS *p = ss->p;

    if (!ss->esmtp) {
	reply(ss, "250 %s", p->myhostname);
	return;
    }
    reply(ss, "250-%s", p->myhostname);
    reply(ss, "250-PIPELINING");
    if (p->msg_limit > 0)
	reply(ss, "250-SIZE %lld", p->msg_limit);
    else
	reply(ss, "250-SIZE");
    if (!p->disable_vrfy)
	reply(ss, "250-VRFY");
    if (p->ssl && !ss->tls)
	reply(ss, "250-STARTTLS");
    if (auth_offered(ss)) {
	BUF     m = BUF_INIT;

	if (dovecot_mechs(session_dovecot(ss), ss->tls ? p->sasl_tls_secopts : p->sasl_secopts, &m) < 0)
	    buf_puts(&m, "PLAIN LOGIN");	/* Dovecot not reached yet: its usual set */
	if (m.len) {
	    reply(ss, "250-AUTH %s", m.data);
	    if (p->broken_auth)
		reply(ss, "250-AUTH=%s", m.data);
	}
	buf_free(&m);
    }
    reply(ss, "250-ENHANCEDSTATUSCODES");
    reply(ss, "250-8BITMIME");
    reply(ss, "250-DSN");
    reply(ss, "250 SMTPUTF8");
}

static int need_tls(SESSION *ss)
{
    if (ss->p->tls_level == TLS_ENCRYPT && !ss->tls) {
	reply(ss, "530 5.7.0 Must issue a STARTTLS command first");
	return (1);
    }
    return (0);
}

static void milter_mail_cb(void *ctx, const MILTER_RESULT *r)
{
    SESSION *ss = ctx;

    if (milter_decided(ss, r, "MAIL", 0)) {
	count(ss, SMTPD_C_MAIL, 0);
	txn_reset(ss);
	if (r->action == MILTER_SHUTDOWN) {
	    milter_shutdown(ss, r);
	    return;
	}
	reply(ss, "%s", r->reply);
    } else {
	reply(ss, "250 2.1.0 Ok");
	count(ss, SMTPD_C_MAIL, 1);
    }
    milter_resume(ss);
}

/*
 * Postfix's smtpd_check_queue: new mail is refused at MAIL FROM before the
 * queue file system is full, so that a message that was accepted can
 * always be written, and the queue's bookkeeping keeps its reserve.
 */
static int queue_space_refused(SESSION *ss)
{
    QUEUE_SPACE sp;
    int     why;

    if (ss->s->q == 0 || queue_space(ss->s->q, &sp) < 0)
	return (0);				/* cannot tell: the queue will say */
    why = queue_space_refuse(&sp, ss->p->queue_minfree, ss->p->msg_limit);
    if (why == QUEUE_SPACE_OK)
	return (0);
    ss->s->st.rejects_other++;
    {
	const char *old = log_name_override(ss->p->syslog_name);

	log_reject("smtpd", NULL, "reject", "MAIL", ss->namaddr, "452 4.3.1 Insufficient system storage",
		   NULL, NULL, proto_name(ss), ss->helo);
	log_name_override(old);
    }
    if (why == QUEUE_SPACE_LOW)
	log_warn("smtpd", "not enough free space in mail queue: %llu bytes < 1.5*message_size_limit",
		 (unsigned long long) (sp.free_bytes > sp.wal_debt ? sp.free_bytes - sp.wal_debt : 0));
    else
	log_warn("smtpd", "queue file system was full and its reserve is in use: %llu bytes free;"
		 " new mail is refused until the reserve of %lld bytes can be re-created",
		 (unsigned long long) sp.free_bytes, (long long) sp.reserve_size);
    reply(ss, "452 4.3.1 Insufficient system storage");
    return (1);
}

static void cmd_mail(SESSION *ss, const char *arg)
{
    SMTPD_PARAMS *p = ss->p;
    char    rbuf[512];
    char   *addr;
    const char *params;
    SMTPD_MAILP mp;
    int     rc;

    if (need_tls(ss))
	goto fail;
    if (p->helo_required && ss->helo == 0) {
	reply(ss, "503 5.5.1 Error: send HELO/EHLO first");
	goto fail;
    }
    if (ss->msg) {
	reply(ss, "503 5.5.1 Error: nested MAIL command");
	goto fail;
    }
    rc = smtpd_parse_path(arg, "FROM:", &addr, &params);
    if (rc == SMTPD_PATH_SYNTAX) {
	reply(ss, "501 5.5.4 Syntax: MAIL FROM:<address>");
	goto fail;
    }
    if (rc != SMTPD_PATH_OK) {
	reply(ss, "501 5.1.7 Bad sender address syntax");
	goto fail;
    }
    if (smtpd_mail_params(params, p->msg_limit, &mp, rbuf, sizeof(rbuf)) < 0) {
	free(addr);
	if (rbuf[0] == '5' && rbuf[1] == '5' && rbuf[2] == '2')
	    ss->s->st.rejects_size++;
	reply(ss, "%s", rbuf);
	goto fail;
    }
    if (has_8bit(addr) && !mp.smtputf8) {
	free(addr);
	smtpd_mailp_free(&mp);
	reply(ss, "553 5.6.7 Must declare SMTPUTF8 to send unicode address");
	goto fail;
    }
    if (queue_space_refused(ss)) {
	free(addr);
	smtpd_mailp_free(&mp);
	goto fail;
    }
    ss->msg = xcalloc(1, sizeof(*ss->msg));
    ss->msg->state = QSTATE_INCOMING;
    ss->msg->sender = addr;
    ss->msg->arrival_us = time_now_us();
    ss->msg->envid = mp.envid;
    free(ss->sasl_sender);
    ss->sasl_sender = 0;
    if (mp.auth && strcmp(mp.auth, "<>") != 0)
	ss->sasl_sender = mp.auth;
    else
	free(mp.auth);
    ss->msg->ret = mp.ret;
    if (mp.body8)
	ss->msg->flags |= QFLAG_8BITMIME;
    if (mp.smtputf8)
	ss->msg->flags |= QFLAG_SMTPUTF8;
    if (ss->p->milter_error) {
	reply(ss, "451 4.3.5 Server configuration problem - try again later");
	txn_reset(ss);
	goto fail;
    }
    if (ss->ms) {
	char  **argv = milter_args(addr, params);

	milter_pause(ss);
	milter_mail_event(ss->ms, argv, milter_mail_cb, ss);
	str_list_free(argv);
	return;
    }
    reply(ss, "250 2.1.0 Ok");
    count(ss, SMTPD_C_MAIL, 1);
    return;

fail:
    count(ss, SMTPD_C_MAIL, 0);
}

static void rcpt_accept(SESSION *ss, char *addr, SMTPD_RCPTP *rp);
static void milter_rcpt_cb(void *ctx, const MILTER_RESULT *r);
/*
 * Every restriction list at RCPT TO (smtpd_delay_reject = yes): client,
 * helo, sender, relay, recipient.  0 accept, -1 or SMTPD_RELAY_DENIED with
 * the reply in rbuf.
 */
static int restrictions(SESSION *ss, const char *rcpt, char *rbuf, size_t len)
{
    SMTPD_PARAMS *p = ss->p;
    SMTPD_RCTX c;
    char  **lists[5];

    memset(&c, 0, sizeof(c));
    c.in_mynet = ss->in_mynet;
    c.sasl_user = ss->sasl_user;
    c.namaddr = ss->namaddr;
    c.helo = ss->helo;
    c.sender = ss->msg->sender;
    c.rcpt = rcpt;
    c.relay_domains = p->relay_domains;
    login_maps_bind(ss, &c);
    lists[0] = p->client_restr;
    lists[1] = p->helo_restr;
    lists[2] = p->sender_restr;
    lists[3] = p->relay_restr;
    lists[4] = p->rcpt_restr;
    for (int i = 0; i < 5; i++) {
	int     rc;

	c.stage = i < 3 ? i : SMTPD_STAGE_RCPT;
	if ((rc = smtpd_restrict(lists[i], &c, rbuf, len)) < 0)
	    return (rc);			/* -1, or SMTPD_RELAY_DENIED */
    }
    return (0);
}

/* Postfix's reject line for RCPT, by the log module's formatter. */
static void rcpt_reject_log(SESSION *ss, const char *addr, const char *rbuf)
{
    const char *old = log_name_override(ss->p->syslog_name);

    log_reject("smtpd", ss->msg->nrcpt ? ss->msg->qid : NULL, "reject", "RCPT", ss->namaddr, rbuf,
	       ss->msg->sender, addr, proto_name(ss), ss->helo);
    log_name_override(old);
}

/*
 * relay_recipient_maps (smtpd_reject_unlisted_recipient): a recipient in
 * relay_domains must be listed, or every 5xx of the next hop would turn
 * into a bounce to a possibly forged sender (backscatter).  0 accept, -1
 * with the reply in rbuf.
 */
static int relay_rcpt_check(SESSION *ss, const char *addr, char *rbuf, size_t len)
{
    SMTPD_PARAMS *p = ss->p;
    const char *at = strrchr(addr, '@'), *val;
    char    err[512];
    TABLE_ADDR_OPTS o = {TABLE_ADDR_DEFAULT, 0, p->rcpt_delim, NULL, NULL};
    int     rc;

    if ((p->relay_rcpt == NULL && !p->relay_rcpt_broken) || at == NULL)
	return (0);
    if ((rc = smtpd_domain_match(at + 1, p->relay_domains)) == 0)
	return (0);
    if (rc < 0 || p->relay_rcpt_broken
	|| (rc = table_find_addr(p->relay_rcpt, addr, &o, &val, NULL, err, sizeof(err))) == TABLE_ERROR) {
	if (rc == TABLE_ERROR)
	    log_warn("smtpd", "%s", err);
	snprintf(rbuf, len, "451 4.3.0 <%s>: Temporary lookup failure", addr);
	return (-1);
    }
    if (rc == TABLE_FOUND)
	return (0);
    snprintf(rbuf, len, "%d %d.1.1 <%s>: Recipient address rejected: User unknown%s",
	     p->unknown_relay_code, p->unknown_relay_code / 100, addr,
	     p->show_table_name ? " in relay recipient table" : "");
    return (-1);
}

static void cmd_rcpt(SESSION *ss, const char *arg)
{
    SMTPD_PARAMS *p = ss->p;
    char    rbuf[1024];
    char   *addr;
    const char *params;
    SMTPD_RCPTP rp;
    int     rc;

    if (need_tls(ss))
	goto fail;
    if (ss->msg == 0) {
	reply(ss, "503 5.5.1 Error: need MAIL command");
	goto fail;
    }
    rc = smtpd_parse_path(arg, "TO:", &addr, &params);
    if (rc == SMTPD_PATH_SYNTAX) {
	reply(ss, "501 5.5.4 Syntax: RCPT TO:<address>");
	goto fail;
    }
    if (rc != SMTPD_PATH_OK || *addr == 0) {
	free(addr);
	reply(ss, "501 5.1.3 Bad recipient address syntax");
	goto fail;
    }
    if (smtpd_rcpt_params(params, &rp, rbuf, sizeof(rbuf)) < 0) {
	free(addr);
	reply(ss, "%s", rbuf);
	goto fail;
    }
    if (has_8bit(addr) && !(ss->msg->flags & QFLAG_SMTPUTF8)) {
	free(addr);
	smtpd_rcptp_free(&rp);
	reply(ss, "553 5.6.7 Must declare SMTPUTF8 to send unicode address");
	goto fail;
    }
    if (p->rcpt_limit > 0 && ss->msg->nrcpt >= p->rcpt_limit) {
	free(addr);
	smtpd_rcptp_free(&rp);
	reply(ss, "452 4.5.3 Error: too many recipients");
	goto fail;
    }
    if ((rc = restrictions(ss, addr, rbuf, sizeof(rbuf))) < 0) {
	if (rc == SMTPD_RELAY_DENIED)
	    ss->s->st.rejects_relay++;
	else
	    ss->s->st.rejects_other++;
	rcpt_reject_log(ss, addr, rbuf);
	free(addr);
	smtpd_rcptp_free(&rp);
	reply(ss, "%s", rbuf);
	goto fail;
    }
    if (relay_rcpt_check(ss, addr, rbuf, sizeof(rbuf)) < 0) {
	ss->s->st.rejects_other++;
	rcpt_reject_log(ss, addr, rbuf);
	free(addr);
	smtpd_rcptp_free(&rp);
	reply(ss, "%s", rbuf);
	goto fail;
    }
    if (ss->ms) {
	char  **argv = milter_args(addr, params);

	ss->pend_addr = addr;
	ss->pend_rp = rp;
	milter_pause(ss);
	milter_rcpt_event(ss->ms, argv, milter_rcpt_cb, ss);
	str_list_free(argv);
	return;
    }
    rcpt_accept(ss, addr, &rp);
    return;

fail:
    count(ss, SMTPD_C_RCPT, 0);
}

/* A recipient passed every check: it joins the message. */
static void rcpt_accept(SESSION *ss, char *addr, SMTPD_RCPTP *rp)
{
    QRCPT  *r;

    if (ss->msg->nrcpt == 0) {
	/* Postfix opens the queue file here (smtpd_delay_open_until_valid_rcpt). */
	queue_assign_id(ss->s->q, ss->msg);
	ss->msg->create_time = time_now_us() / 1000000;
	if (ss->sasl_user)
	    SLOG(ss, "%s: client=%s, sasl_method=%s, sasl_username=%s%s%s", ss->msg->qid,
		 ss->namaddr, ss->sasl_method, ss->sasl_user,
		 ss->sasl_sender ? ", sasl_sender=" : "", ss->sasl_sender ? ss->sasl_sender : "");
	else if (ss->sasl_sender)
	    SLOG(ss, "%s: client=%s, sasl_sender=%s", ss->msg->qid, ss->namaddr, ss->sasl_sender);
	else
	    SLOG(ss, "%s: client=%s", ss->msg->qid, ss->namaddr);
    }
    if (ss->msg->nrcpt >= ss->rcpt_alloc) {
	ss->rcpt_alloc = ss->rcpt_alloc ? 2 * ss->rcpt_alloc : 4;
	ss->msg->rcpts = xrealloc(ss->msg->rcpts, ss->rcpt_alloc * sizeof(QRCPT));
    }
    r = &ss->msg->rcpts[ss->msg->nrcpt++];
    memset(r, 0, sizeof(*r));
    r->addr = addr;
    r->orcpt = rp->orcpt;
    r->notify = rp->notify;
    r->state = QRCPT_PENDING;
    reply(ss, "250 2.1.5 Ok");
    count(ss, SMTPD_C_RCPT, 1);
}

static void milter_rcpt_cb(void *ctx, const MILTER_RESULT *r)
{
    SESSION *ss = ctx;
    char   *addr = ss->pend_addr;

    ss->pend_addr = 0;
    if (milter_decided(ss, r, "RCPT", addr)) {
	free(addr);
	smtpd_rcptp_free(&ss->pend_rp);
	count(ss, SMTPD_C_RCPT, 0);
	if (r->action == MILTER_SHUTDOWN) {
	    milter_shutdown(ss, r);
	    return;
	}
	reply(ss, "%s", r->reply);
    } else {
	rcpt_accept(ss, addr, &ss->pend_rp);
    }
    milter_resume(ss);
}

static void data_start(SESSION *ss)
{
    buf_init(&ss->data);
    smtpd_data_init(&ss->dm, ss->bare_mode, (size_t) ss->p->msg_limit, &ss->data);
    ss->in_data = 1;
    reply(ss, "354 End data with <CR><LF>.<CR><LF>");
    /* The data command is counted when the message is accepted or not. */
}

static void milter_data_cb(void *ctx, const MILTER_RESULT *r)
{
    SESSION *ss = ctx;

    if (milter_decided(ss, r, "DATA", ss->msg->nrcpt == 1 ? ss->msg->rcpts[0].addr : 0)) {
	count(ss, SMTPD_C_DATA, 0);
	if (r->action == MILTER_SHUTDOWN) {
	    milter_shutdown(ss, r);
	    return;
	}
	reply(ss, "%s", r->reply);
    } else {
	data_start(ss);
    }
    milter_resume(ss);
}

static void cmd_data(SESSION *ss, const char *arg)
{
    if (*arg) {
	reply(ss, "501 5.5.4 Syntax: DATA");
	goto fail;
    }
    if (need_tls(ss))
	goto fail;
    if (ss->msg == 0) {
	reply(ss, "503 5.5.1 Error: need RCPT command");
	goto fail;
    }
    if (ss->msg->nrcpt == 0) {
	reply(ss, "554 5.5.1 Error: no valid recipients");
	goto fail;
    }
    if (ss->ms) {
	milter_pause(ss);
	milter_data_event(ss->ms, milter_data_cb, ss);
	return;
    }
    data_start(ss);
    return;

fail:
    count(ss, SMTPD_C_DATA, 0);
}

static void queued_cb(void *ctx, int ok, const char *why)
{
    SESSION *ss = ctx;
    SMTPD  *s = ss->s;
    QMSG   *msg = ss->msg;

    ss->waiting = 0;
    ss->msg = 0;
    ss->rcpt_alloc = 0;
    free(ss->milter_hold);
    ss->milter_hold = 0;
    ss->milter_discard = 0;
    if (ok) {
	s->st.messages++;
	reply(ss, "250 2.0.0 Ok: queued as %s", msg->qid);
	count(ss, SMTPD_C_DATA, 1);
	/* Postfix: the error and junk counts are "without delivering mail". */
	ss->errors = 0;
	ss->junk = 0;
	if (s->hooks.queued)
	    s->hooks.queued(s->hooks.ctx, msg);
    } else {
	reply(ss, "451 4.3.0 Error: queue file write error");
	count(ss, SMTPD_C_DATA, 0);
    }
    qmsg_free(msg);
    if (ss->gone) {
	session_free(ss);
	return;
    }
    if (!ss->closing) {
	bufferevent_enable(ss->bev, EV_READ);
	session_process(ss);
    }
}

/* Is the client in local_header_rewrite_clients? */
static int local_rewrite_client(const SESSION *ss, const char *local_addr)
{
    char  *const *cp;

    for (cp = ss->p->rewrite_clients; cp && *cp; cp++) {
	if (strcmp(*cp, "permit_inet_interfaces") == 0) {
	    if (strcmp(ss->addr, local_addr) == 0 || strcmp(ss->addr, "::1") == 0
		|| strncmp(ss->addr, "127.", 4) == 0)
		return (1);
	} else if (strcmp(*cp, "permit_mynetworks") == 0) {
	    if (ss->in_mynet)
		return (1);
	} else if (strcmp(*cp, "static:all") == 0 || strcmp(*cp, "permit") == 0) {
	    return (1);
	}
    }
    return (0);
}

static void data_queue(SESSION *ss, BUF *out);

/* Envelope edits from the filters: sender, then recipients in order. */
static void milter_envelope(SESSION *ss, const MILTER_RESULT *r)
{
    QMSG   *msg = ss->msg;
    int     i, j;

    if (r->new_sender) {
	log_msg("cleanup", "%s: milter-change-sender: from=<%s> to <%s>", msg->qid,
		msg->sender, r->new_sender);
	free(msg->sender);
	msg->sender = xstrdup(r->new_sender);
    }
    for (i = 0; i < r->nrcpt_edits; i++) {
	const MILTER_RCPT_EDIT *e = &r->rcpt_edits[i];

	if (!e->add) {
	    for (j = 0; j < msg->nrcpt; j++) {
		if (str_casecmp(msg->rcpts[j].addr, e->addr) != 0)
		    continue;
		free(msg->rcpts[j].addr);
		free(msg->rcpts[j].orcpt);
		memmove(msg->rcpts + j, msg->rcpts + j + 1, (size_t) (msg->nrcpt - j - 1) * sizeof(QRCPT));
		msg->nrcpt--;
		j--;
	    }
	} else {
	    SMTPD_RCPTP rp;
	    char    rbuf[256];
	    QRCPT  *nr;

	    memset(&rp, 0, sizeof(rp));
	    if (e->args && smtpd_rcpt_params(e->args, &rp, rbuf, sizeof(rbuf)) < 0) {
		log_warn("cleanup", "%s: ignoring bad ESMTP parameter \"%s\" from a milter",
			 msg->qid, e->args);
		memset(&rp, 0, sizeof(rp));
	    }
	    if (msg->nrcpt >= ss->rcpt_alloc) {
		ss->rcpt_alloc = msg->nrcpt + 4;
		msg->rcpts = xrealloc(msg->rcpts, (size_t) ss->rcpt_alloc * sizeof(QRCPT));
	    }
	    nr = &msg->rcpts[msg->nrcpt++];
	    memset(nr, 0, sizeof(*nr));
	    nr->addr = xstrdup(e->addr);
	    nr->orcpt = rp.orcpt;
	    nr->notify = rp.notify;
	    nr->state = QRCPT_PENDING;
	}
    }
}

static void milter_eom_cb(void *ctx, const MILTER_RESULT *r)
{
    SESSION *ss = ctx;
    BUF     out = ss->mbuf;
    const char *to = ss->msg->nrcpt ? ss->msg->rcpts[0].addr : 0;

    buf_init(&ss->mbuf);
    ss->milter_wait = 0;
    if (r->hold && ss->milter_hold == 0) {
	ss->milter_hold = xstrdup(r->hold);
	milter_log(ss, "cleanup", "milter-hold", "END-OF-MESSAGE", r->hold, to);
    }
    if (r->action == MILTER_REJECT || r->action == MILTER_SHUTDOWN) {
	milter_log(ss, "cleanup", "milter-reject", "END-OF-MESSAGE",
		   strlen(r->reply) > 4 ? r->reply + 4 : r->reply, to);
	buf_free(&out);
	count(ss, SMTPD_C_DATA, 0);
	txn_reset(ss);
	if (r->action == MILTER_SHUTDOWN) {
	    milter_shutdown(ss, r);
	    return;
	}
	reply(ss, "%s", r->reply);
	milter_resume(ss);
	return;
    }
    if (r->action == MILTER_DISCARD) {
	milter_log(ss, "cleanup", "milter-discard", "END-OF-MESSAGE",
		   "milter triggers DISCARD action", to);
	ss->milter_discard = 1;
    } else {
	milter_envelope(ss, r);
	if (ss->msg->nrcpt == 0) {
	    log_msg("cleanup", "%s: milter removed every recipient: message discarded", ss->msg->qid);
	    ss->milter_discard = 1;
	}
    }
    data_queue(ss, &out);
    if (!ss->waiting)
	milter_resume(ss);
}

/* End of DATA: cleanup, then hand to the queue. */
static void data_done(SESSION *ss)
{
    SMTPD_PARAMS *p = ss->p;
    QMSG   *msg = ss->msg;
    CLEANUP_INFO ci;
    BUF     out = BUF_INIT;
    char   *msgid = 0, *single_rcpt;
    char    err[256];

    ss->in_data = 0;
    if (ss->dm.overflow) {
	ss->s->st.rejects_size++;
	reply(ss, "552 5.3.4 Message size exceeds fixed limit");
	count(ss, SMTPD_C_DATA, 0);
	txn_reset(ss);
	return;
    }
    /* Received: names the recipient as the client gave it, before rewriting. */
    single_rcpt = msg->nrcpt == 1 ? xstrdup(msg->rcpts[0].addr) : 0;
    if (p->rw_broken || cleanup_rw_envelope(p->rw, msg) < 0) {
	/* Postfix's cleanup: a map lookup problem is a queue file write error for the client. */
	free(single_rcpt);
	reply(ss, "451 4.3.0 Error: queue file write error");
	count(ss, SMTPD_C_DATA, 0);
	txn_reset(ss);
	return;
    }
    memset(&ci, 0, sizeof(ci));
    ci.myhostname = p->myhostname;
    ci.qid = msg->qid;
    ci.helo = ss->helo;
    ci.client_name = ss->name;
    ci.client_addr = ss->addr;
    ci.protocol = proto_name(ss);
    ci.single_rcpt = single_rcpt;
    ci.rw = p->rw;
    ci.rw_context = ss->rw_context;
    ci.arrival_us = msg->arrival_us;
    ci.rewrite_allowed = ss->rewrite_allowed;
    ci.auth_user = p->auth_header ? ss->sasl_user : 0;
    ci.add_received = 1;
    ci.header_size_limit = (size_t) p->hdr_limit;
    ci.checks = p->checks;
    ci.body_limit = p->body_check_limit;
    ci.line_limit = (size_t) p->line_limit;
    ci.sender = msg->sender;
    ci.last_rcpt = msg->nrcpt ? msg->rcpts[msg->nrcpt - 1].addr : 0;
    if (cleanup_message(&ci, ss->data.data ? ss->data.data : "", ss->data.len, &out,
			&msgid, err, sizeof(err)) < 0) {
	free(single_rcpt);
	log_warn("cleanup", "%s: %s", msg->qid, err);
	buf_free(&out);
	free(msgid);
	cleanup_info_free(&ci);
	reply(ss, "451 4.3.0 Error: queue file write error");
	count(ss, SMTPD_C_DATA, 0);
	txn_reset(ss);
	return;
    }
    free(single_rcpt);
    buf_free(&ss->data);
    /* Postfix's order of the cleanup errors: defer, hop count, reject, table trouble. */
    if ((ci.reason && ci.defer) || (p->hopcount_limit > 0 && ci.hops >= p->hopcount_limit)
	|| ci.reason || ci.lookup_error || ci.rw_errs) {
	if (ci.reason && ci.defer)
	    reply(ss, "451 %s", ci.reason);
	else if (p->hopcount_limit > 0 && ci.hops >= p->hopcount_limit) {
	    /* Postfix's cleanup: the Received: headers, ours included, reach hopcount_limit. */
	    log_warn("cleanup", "%s: message rejected: hopcount exceeded", msg->qid);
	    reply(ss, "554 5.4.0 Error: too many hops");
	} else if (ci.reason)
	    reply(ss, "550 %s", ci.reason);
	else
	    reply(ss, "451 4.3.0 Error: queue file write error");
	buf_free(&out);
	free(msgid);
	cleanup_info_free(&ci);
	count(ss, SMTPD_C_DATA, 0);
	txn_reset(ss);
	return;
    }
    /* The after-queue content filter: a FILTER action, else content_filter. */
    if (ci.filter || *p->content_filter) {
	const char *flt = ci.filter ? ci.filter : p->content_filter;
	char    ferr[256];

	if (!cleanup_filter_valid(flt, ferr, sizeof(ferr))) {
	    log_warn("cleanup", "%s: FILTER %s: %s; message deferred", msg->qid, flt, ferr);
	    reply(ss, "451 4.3.5 Server configuration error");
	    buf_free(&out);
	    free(msgid);
	    cleanup_info_free(&ci);
	    count(ss, SMTPD_C_DATA, 0);
	    txn_reset(ss);
	    return;
	}
	msg->filter = xstrdup(flt);
    }
    log_msg("cleanup", "%s: message-id=%s", msg->qid, *msgid ? msgid : "<>");
    msg->message_id = msgid;
    msg->client_name = xstrdup(ss->name);
    msg->client_addr = xstrdup(ss->addr);
    msg->helo = xstrdup(ss->helo);
    msg->state = ci.hold ? QSTATE_HOLD : QSTATE_INCOMING;
    if (ci.discard)
	ss->milter_discard = 1;		/* the same outcome: 250, nothing queued */
    cleanup_envelope_edits(&ci, msg);
    if (ci.nbcc > 0)
	ss->rcpt_alloc = msg->nrcpt;	/* reallocated to exactly that */
    /*
     * The milter stage comes after header/body checks, as in Postfix's
     * cleanup; REJECT, DISCARD, PASS and REDIRECT skip it.
     */
    if (ss->ms && !ss->milter_discard && !ci.no_milters) {
	/* Header and body checks are done; the filters see the message as it will be queued. */
	ss->mbuf = out;
	ss->mmsg.content = &ss->mbuf;
	ss->mmsg.own_received = 1;
	milter_pause(ss);
	cleanup_info_free(&ci);
	milter_message(ss->ms, &ss->mmsg, milter_eom_cb, ss);
	return;
    }
    cleanup_info_free(&ci);
    data_queue(ss, &out);
}

/* The cleaned (and filtered) message goes to the queue; 250 when it is durable. */
static void data_queue(SESSION *ss, BUF *out)
{
    QMSG   *msg = ss->msg;
    QBATCH *b;

    if (ss->milter_discard) {
	/* As Postfix: the client is told the message was queued. */
	buf_free(out);
	reply(ss, "250 2.0.0 Ok: queued as %s", msg->qid);
	count(ss, SMTPD_C_DATA, 1);
	txn_reset(ss);
	return;
    }
    if (ss->milter_hold)
	msg->state = QSTATE_HOLD;
    msg->size = out->len;
    msg->content = buf_steal(out);
    b = queue_batch(ss->s->q);
    queue_batch_insert(b, msg);
    ss->waiting = 1;
    bufferevent_disable(ss->bev, EV_READ);
    queue_batch_submit(b, queued_cb, ss);
}

/* STARTTLS: reply, discard pipelined plaintext (RFC 3207), wrap the socket. */
static void cmd_starttls(SESSION *ss, const char *arg)
{
    struct bufferevent *tbev;
    SSL    *ssl;
    struct evbuffer *in = bufferevent_get_input(ss->bev);
    struct timeval tv;

    if (*arg) {
	reply(ss, "501 5.5.4 Syntax: STARTTLS");
	count(ss, SMTPD_C_STARTTLS, 0);
	return;
    }
    if (ss->tls) {
	reply(ss, "554 5.5.1 Error: TLS already active");
	count(ss, SMTPD_C_STARTTLS, 0);
	return;
    }
    if (ss->p->ssl == 0) {
	reply(ss, "502 5.5.1 Error: command not implemented");
	count(ss, SMTPD_C_STARTTLS, 0);
	return;
    }
    reply(ss, "220 2.0.0 Ready to start TLS");
    count(ss, SMTPD_C_STARTTLS, 1);
    /* Anything the client sent after STARTTLS in the clear is dropped. */
    evbuffer_drain(in, evbuffer_get_length(in));
    if ((ssl = SSL_new(ss->p->ssl)) == 0) {
	reply(ss, "454 4.7.0 TLS not available due to local problem");
	return;
    }
    /* The 220 is already in the plain output buffer, ahead of the handshake. */
    tbev = bufferevent_openssl_filter_new(ss->s->base, ss->bev, ssl,
					  BUFFEREVENT_SSL_ACCEPTING,
					  BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (tbev == 0) {
	SSL_free(ssl);
	session_close_after_write(ss);
	return;
    }
    ss->bev = tbev;
    ss->tls = 1;
    /* RFC 3207: forget everything learned before TLS. */
    txn_reset(ss);
    free(ss->helo);
    ss->helo = 0;
    ss->esmtp = 0;
    bufferevent_setcb(tbev, read_cb, 0, event_cb, ss);
    bufferevent_setwatermark(tbev, EV_READ, 0, SMTPD_READ_HIGH_WATER);
    tv.tv_sec = ss->p->timeout;
    tv.tv_usec = 0;
    bufferevent_set_timeouts(tbev, &tv, &tv);
    bufferevent_enable(tbev, EV_READ | EV_WRITE);
}

/* smtpd_timeout: as a per-read timeout, or as the deadline of a request. */
static void session_timeout(SESSION *ss)
{
    ss->s->st.timeouts++;
    SLOG(ss, "timeout after %s from %s", ss->last_cmd, ss->namaddr);
    reply(ss, "421 4.4.2 %s Error: timeout exceeded", ss->p->myhostname);
    /* As a mid-DATA disconnect: the DATA command counts as failed (data=0/1). */
    if (ss->in_data)
	count(ss, SMTPD_C_DATA, 0);
    txn_reset(ss);
    session_close_after_write(ss);
}

static void deadline_cb(evutil_socket_t fd, short what, void *ctx);

static void deadline_timer(SESSION *ss, int64_t at, int64_t now)
{
    struct timeval tv;

    if (ss->deadline_ev == 0)
	ss->deadline_ev = evtimer_new(ss->s->base, deadline_cb, ss);
    tv.tv_sec = (time_t) ((at - now) / 1000000);
    tv.tv_usec = (suseconds_t) ((at - now) % 1000000);
    evtimer_add(ss->deadline_ev, &tv);
    ss->deadline_ev_at = at;
}

static void deadline_cb(evutil_socket_t fd, short what, void *ctx)
{
    SESSION *ss = ctx;
    int64_t now;

    ss->deadline_ev_at = 0;
    if (ss->deadline_us == 0)
	return;					/* no request under way */
    if (ss->deadline_us > (now = time_mono_us())) {
	deadline_timer(ss, ss->deadline_us, now);	/* the deadline moved on */
	return;
    }
    if (!ss->closing && !ss->waiting && !ss->milter_wait && ss->bev)
	session_timeout(ss);
}

/*
 * smtpd_per_request_deadline: a command line must arrive whole within
 * smtpd_timeout of the moment the server waits for it, however the bytes
 * trickle in; DATA gets smtpd_timeout plus 1/smtpd_min_data_rate seconds
 * per byte received, never more than smtpd_timeout ahead.
 */
static void deadline_arm(SESSION *ss, int64_t at)
{
    int64_t now;

    if (!ss->p->deadline || ss->closing || ss->bev == 0)
	return;
    now = time_mono_us();
    if (at > now + ss->p->timeout * 1000000)
	at = now + ss->p->timeout * 1000000;
    ss->deadline_us = at;
    /*
     * The timer is moved only to an earlier time: a request's deadline is
     * almost always later than the one before, and deadline_cb() waits for
     * the rest. No event_del()/event_add() per command or DATA chunk.
     */
    if (ss->deadline_ev_at == 0 || at < ss->deadline_ev_at)
	deadline_timer(ss, at, now);
}

/* The request is complete: a pending timer finds no deadline and stops. */
static void deadline_clear(SESSION *ss)
{
    ss->deadline_us = 0;
}

/* The error sleep is over: the held reply goes out, input is read again. */
static void sleep_cb(evutil_socket_t fd, short what, void *ctx)
{
    SESSION *ss = ctx;

    ss->sleeping = 0;
    if (ss->bev == 0)
	return;
    evbuffer_add_buffer(bufferevent_get_output(ss->bev), ss->held);
    if (!ss->closing && !ss->waiting) {
	bufferevent_enable(ss->bev, EV_READ);
	session_process(ss);
    }
}

static int is_junk(const char *verb)
{
    static const char *const junk[] = {"HELO", "EHLO", "RSET", "NOOP", "VRFY", "ETRN"};

    for (size_t i = 0; i < ARRAY_LEN(junk); i++)
	if (str_casecmp(verb, junk[i]) == 0)
	    return (1);
    return (0);
}

static void session_command_1(SESSION *ss, char *line, size_t len, int crlf);

/*
 * One command under Postfix's error rules: junk commands past
 * smtpd_junk_command_limit count as errors; past smtpd_soft_error_limit
 * each reply waits smtpd_error_sleep_time (a timer: other sessions go
 * on); at smtpd_hard_error_limit the session ends with 421.
 */
static void session_command(SESSION *ss, char *line, size_t len, int crlf)
{
    SMTPD_PARAMS *p = ss->p;
    char    verb[16];
    size_t  vl = 0;

    while (vl < len && vl < sizeof(verb) - 1 && line[vl] != ' ' && line[vl] != '\t' && line[vl] != 0) {
	verb[vl] = line[vl];
	vl++;
    }
    verb[vl] = 0;
    if (is_junk(verb) && ss->junk++ > p->junk_limit)
	ss->errors++;
    ss->sleeping = p->error_sleep > 0 && str_casecmp(verb, "STARTTLS") != 0;
    session_command_1(ss, line, len, crlf);
    if (!ss->closing && ss->errors >= p->hard_limit) {
	ss->reason = "too many errors";
	reply(ss, "421 4.7.0 %s Error: too many errors", p->myhostname);
	session_close_after_write(ss);
    }
    if (!ss->sleeping)
	return;
    if (ss->errors >= p->soft_limit && !ss->closing && ss->bev) {
	struct timeval tv = {(time_t) p->error_sleep, 0};

	if (ss->sleep_ev == 0)
	    ss->sleep_ev = evtimer_new(ss->s->base, sleep_cb, ss);
	bufferevent_disable(ss->bev, EV_READ);
	evtimer_add(ss->sleep_ev, &tv);
	return;
    }
    ss->sleeping = 0;
    if (ss->bev)
	evbuffer_add_buffer(bufferevent_get_output(ss->bev), ss->held);
}

static void session_command_1(SESSION *ss, char *line, size_t len, int crlf)
{
    char   *verb, *arg;

    if (!crlf && ss->bare_mode == SMTPD_BARE_REJECT) {
	reply(ss, "521 5.5.2 %s Error: bare <LF> received", ss->p->myhostname);
	SLOG(ss, "disconnect: bare <LF> received from %s", ss->namaddr);
	session_close_after_write(ss);
	return;
    }
    if (memchr(line, 0, len) != 0) {
	reply(ss, "500 5.5.2 Error: bad syntax");
	count(ss, SMTPD_C_UNKNOWN, 0);
	return;
    }
    smtpd_cmd_split(line, &verb, &arg);
    if (*verb == 0) {
	reply(ss, "500 5.5.2 Error: bad syntax");
	ss->errors++;
	return;
    }
    snprintf(ss->last_cmd, sizeof(ss->last_cmd), "%s", verb);
    for (char *cp = ss->last_cmd; *cp; cp++)
	if (*cp >= 'a' && *cp <= 'z')
	    *cp -= 'a' - 'A';
    {
	/* As Postfix: an unknown verb is logged as UNKNOWN (it may be a password). */
	static const char *const verbs[] = {
	    "EHLO", "HELO", "MAIL", "RCPT", "DATA", "STARTTLS", "AUTH", "RSET", "NOOP",
	    "VRFY", "QUIT", "ETRN", "BDAT", "XCLIENT", "XFORWARD", "HELP", "EXPN", 0,
	};
	int     k;

	for (k = 0; verbs[k] && strcmp(verbs[k], ss->last_cmd) != 0; k++)
	     /* void */ ;
	if (verbs[k] == 0)
	    snprintf(ss->last_cmd, sizeof(ss->last_cmd), "UNKNOWN");
    }

    /* Shutdown: a transaction in progress may finish; nothing new starts. */
    if (ss->s->shutting && ss->msg == 0) {
	reply(ss, "421 4.3.2 Service shutting down");
	session_close_after_write(ss);
	return;
    }
    if (str_casecmp(verb, "EHLO") == 0)
	cmd_helo(ss, arg, 1);
    else if (str_casecmp(verb, "HELO") == 0)
	cmd_helo(ss, arg, 0);
    else if (str_casecmp(verb, "MAIL") == 0)
	cmd_mail(ss, arg);
    else if (str_casecmp(verb, "RCPT") == 0)
	cmd_rcpt(ss, arg);
    else if (str_casecmp(verb, "DATA") == 0)
	cmd_data(ss, arg);
    else if (str_casecmp(verb, "STARTTLS") == 0)
	cmd_starttls(ss, arg);
    else if (str_casecmp(verb, "AUTH") == 0)
	cmd_auth(ss, arg);
    else if (str_casecmp(verb, "RSET") == 0) {
	if (*arg) {
	    reply(ss, "501 5.5.4 Syntax: RSET");
	    count(ss, SMTPD_C_RSET, 0);
	} else {
	    txn_reset(ss);
	    reply(ss, "250 2.0.0 Ok");
	    count(ss, SMTPD_C_RSET, 1);
	}
    } else if (str_casecmp(verb, "NOOP") == 0) {
	reply(ss, "250 2.0.0 Ok");
	count(ss, SMTPD_C_NOOP, 1);
    } else if (str_casecmp(verb, "VRFY") == 0) {
	if (need_tls(ss)) {
	    count(ss, SMTPD_C_VRFY, 0);
	} else if (ss->p->disable_vrfy) {
	    reply(ss, "502 5.5.1 VRFY command is disabled");
	    count(ss, SMTPD_C_VRFY, 0);
	} else if (*arg == 0) {
	    reply(ss, "501 5.5.4 Syntax: VRFY address");
	    count(ss, SMTPD_C_VRFY, 0);
	} else {
	    reply(ss, "252 2.0.0 %s", arg);
	    count(ss, SMTPD_C_VRFY, 1);
	}
    } else if (str_casecmp(verb, "QUIT") == 0) {
	reply(ss, "221 2.0.0 Bye");
	count(ss, SMTPD_C_QUIT, 1);
	session_close_after_write(ss);
	return;
    } else {
	/* As Postfix: "... after UNKNOWN from ...", never the client's word. */
	snprintf(ss->last_cmd, sizeof(ss->last_cmd), "UNKNOWN");
	reply(ss, "500 5.5.2 Error: command not recognized");
	count(ss, SMTPD_C_UNKNOWN, 0);
    }
}

/* Work through the input buffer: DATA content or command lines. */
static void session_process(SESSION *ss)
{
    while (ss->bev && !ss->closing && !ss->waiting && !ss->milter_wait && !ss->sleeping
	   && ss->auth_state != AUTH_SERVER && !ss->proxy_wait) {
	struct evbuffer *in = bufferevent_get_input(ss->bev);
	size_t  n = evbuffer_get_length(in);

	if (n == 0)
	    break;
	if (ss->auth_state == AUTH_CLIENT) {
	    size_t  len;
	    char   *line;

	    if (n > (size_t) ss->p->sasl_resp_limit + 2
		&& evbuffer_search_eol(in, 0, 0, EVBUFFER_EOL_CRLF).pos < 0) {
		/* Not logged: it may be a password. */
		evbuffer_drain(in, n);
		dovecot_cancel(ss->auth_req);
		auth_finish(ss);
		reply(ss, "500 5.5.6 SASL response limit exceeded");
		count(ss, SMTPD_C_AUTH, 0);
		continue;
	    }
	    if ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) == 0)
		break;
	    if (len > (size_t) ss->p->sasl_resp_limit) {
		dovecot_cancel(ss->auth_req);
		auth_finish(ss);
		reply(ss, "500 5.5.6 SASL response limit exceeded");
		count(ss, SMTPD_C_AUTH, 0);
	    } else {
		auth_response(ss, line);
	    }
	    memset(line, 0, len);
	    free(line);
	    continue;
	}
	if (ss->in_data) {
	    struct evbuffer_iovec v;
	    size_t  used;
	    int     rc;

	    if (evbuffer_peek(in, -1, 0, &v, 1) < 1)
		break;
	    rc = smtpd_data_feed(&ss->dm, v.iov_base, v.iov_len, &used);
	    evbuffer_drain(in, used);
	    if (ss->p->deadline && ss->p->min_data_rate > 0 && ss->deadline_us)
		deadline_arm(ss, ss->deadline_us + (int64_t) used * 1000000 / ss->p->min_data_rate);
	    if (rc == SMTPD_DATA_END) {
		deadline_clear(ss);
		data_done(ss);
	    } else if (rc == SMTPD_DATA_BARE_LF) {
		reply(ss, "521 5.5.2 %s Error: bare <LF> received", ss->p->myhostname);
		SLOG(ss, "disconnect: bare <LF> received from %s", ss->namaddr);
		count(ss, SMTPD_C_DATA, 0);
		txn_reset(ss);
		session_close_after_write(ss);
	    }
	} else {
	    size_t  want = n < (size_t) ss->lr.limit + 2 ? n : (size_t) ss->lr.limit + 2;
	    unsigned char *p = evbuffer_pullup(in, (ev_ssize_t) want);
	    size_t  linelen, used;
	    int     crlf, rc;

	    rc = smtpd_line_get(&ss->lr, (const char *) p, want, &linelen, &used, &crlf);
	    if (rc == SMTPD_LINE_OK) {
		char   *line = xmalloc(linelen + 1);

		/* A copy with its real length: a NUL inside is a syntax error. */
		memcpy(line, p, linelen);
		line[linelen] = 0;
		evbuffer_drain(in, used);
		deadline_clear(ss);		/* a whole request: the next one gets its own */
		session_command(ss, line, linelen, crlf);
		free(line);
	    } else if (rc == SMTPD_LINE_TOOLONG) {
		evbuffer_drain(in, used);
		reply(ss, "500 5.5.0 Error: line too long");
		count(ss, SMTPD_C_UNKNOWN, 0);
	    } else {
		evbuffer_drain(in, used);
		if (used == 0)
		    break;			/* wait for the rest of the line */
	    }
	}
    }
    /* Waiting for the client: the request's deadline runs (it is not restarted by each byte). */
    if (ss->bev && !ss->closing && !ss->waiting && !ss->milter_wait && !ss->sleeping && ss->deadline_us == 0)
	deadline_arm(ss, time_mono_us() + ss->p->timeout * 1000000);
}

static void read_cb(struct bufferevent *bev, void *ctx)
{
    SESSION *ss = ctx;

    if (ss->proxy_wait)
	proxy_read(ss);
    else
	session_process(ss);
}

static void event_cb(struct bufferevent *bev, short what, void *ctx)
{
    SESSION *ss = ctx;

    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && !ss->closing) {
	session_timeout(ss);
	return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
	if (ss->proxy_wait) {
	    SWARN(ss, "haproxy read: %s", "EOF");
	    ss->logged_disconnect = 1;
	} else if (!ss->closing)
	    SLOG(ss, "lost connection after %s from %s", ss->last_cmd, ss->namaddr);
	session_free(ss);
    }
}

static void done_cb(evutil_socket_t fd, short what, void *ctx)
{
    SMTPD  *s = ctx;
    void    (*done) (void *) = s->done;

    s->done = 0;
    if (done)
	done(s->done_ctx);
}

static void check_done(SMTPD *s)
{
    if (s->shutting && s->nsess == 0 && s->done) {
	struct timeval tv = {0, 0};

	evtimer_add(s->done_ev, &tv);
    }
}

/* Close the connection; the struct lives on while the queue has it. */
static void session_free(SESSION *ss)
{
    SMTPD  *s = ss->s;

    if (ss->in_data) {
	/* Mid-DATA disconnect: nothing is queued. */
	count(ss, SMTPD_C_DATA, 0);
	ss->in_data = 0;
    }
    if (!ss->logged_disconnect) {
	BUF     b = BUF_INIT;

	if (ss->reason)
	    SLOG(ss, "%s after %s from %s", ss->reason, ss->last_cmd, ss->namaddr);
	smtpd_counts_format(&ss->counts, &b);
	SLOG(ss, "disconnect from %s%s", ss->namaddr, b.data ? b.data : "");
	buf_free(&b);
	ss->logged_disconnect = 1;
    }
    if (ss->bev) {
	bufferevent_free(ss->bev);
	ss->bev = 0;
    }
    if (ss->close_ev) {
	event_free(ss->close_ev);
	ss->close_ev = 0;
    }
    if (ss->sleep_ev) {
	event_free(ss->sleep_ev);
	ss->sleep_ev = 0;
    }
    ss->sleeping = 0;
    if (ss->deadline_ev) {
	event_free(ss->deadline_ev);
	ss->deadline_ev = 0;
	ss->deadline_ev_at = 0;
    }
    if (ss->proxy_ev) {
	event_free(ss->proxy_ev);
	ss->proxy_ev = 0;
    }
    if (ss->auth_req) {
	dovecot_cancel(ss->auth_req);
	ss->auth_req = 0;
	ss->auth_state = AUTH_IDLE;
    }
    ss->gone = 1;
    if (ss->ms) {
	/* No filter callback comes after this. */
	milter_sess_free(ss->ms);
	ss->ms = 0;
	ss->milter_wait = 0;
	buf_free(&ss->mbuf);
    }
    if (ss->pend_addr) {
	free(ss->pend_addr);
	ss->pend_addr = 0;
	smtpd_rcptp_free(&ss->pend_rp);
    }
    if (ss->waiting)
	return;				/* queued_cb frees */
    txn_reset(ss);
    if (ss->prev)
	ss->prev->next = ss->next;
    else
	s->sessions = ss->next;
    if (ss->next)
	ss->next->prev = ss->prev;
    s->nsess--;
    if (ss->l) {
	ss->l->nsess--;
	if (ss->l->full && !s->shutting) {
	    ss->l->full = 0;
	    for (int i = 0; i < s->nlis; i++)
		if (s->lis_owner[i] == ss->l)
		    evconnlistener_enable(s->lis[i]);
	}
    }
    free(ss->helo);
    if (ss->held)
	evbuffer_free(ss->held);
    free(ss->sasl_user);
    free(ss->sasl_method);
    free(ss->sasl_sender);
    params_unref(ss->p);
    free(ss);
    check_done(s);
}

/* Accepting */

static void sockaddr_str(const struct sockaddr *sa, char *out, size_t len)
{
    if (sa->sa_family == AF_INET6) {
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *) sa;

	if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
	    inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], out, (socklen_t) len);
	else
	    inet_ntop(AF_INET6, &s6->sin6_addr, out, (socklen_t) len);
    } else if (sa->sa_family == AF_INET) {
	inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, out, (socklen_t) len);
    } else {
	snprintf(out, len, "unknown");
    }
}

static int sockaddr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET6)
	return (ntohs(((const struct sockaddr_in6 *) sa)->sin6_port));
    if (sa->sa_family == AF_INET)
	return (ntohs(((const struct sockaddr_in *) sa)->sin_port));
    return (0);
}

/*
 * The filters' verdict on the connection (Postfix): 5xx gives "554 ... not
 * accepting connections", 421 closes, anything else the normal greeting;
 * a rejection persists and answers MAIL FROM and later commands.
 */
static void milter_conn_cb(void *ctx, const MILTER_RESULT *r)
{
    SESSION *ss = ctx;

    if (r->action == MILTER_REJECT || r->action == MILTER_SHUTDOWN)
	milter_log(ss, "smtpd", "milter-reject", "CONNECT", r->reply, 0);
    if (r->action == MILTER_SHUTDOWN || (r->reply && strncmp(r->reply, "421", 3) == 0)) {
	reply(ss, "421 %s Service unavailable - try again later", ss->p->myhostname);
	session_close_after_write(ss);
	return;
    }
    if (r->action == MILTER_REJECT && r->reply[0] == '5')
	reply(ss, "554 %s ESMTP not accepting connections", ss->p->myhostname);
    else
	reply(ss, "220 %s", ss->p->banner);
    milter_resume(ss);
}

/*
 * Postfix 3.8's client grouping for smtpd_client_connection_count_limit:
 * addresses in one smtpd_client_ipv4_prefix_length /
 * smtpd_client_ipv6_prefix_length network count as one client.
 */
static int same_network(const SESSION *a, const SESSION *b, const SMTPD_PARAMS *p)
{
    int     bits, bytes;

    if (a->bfamily != b->bfamily || a->bfamily == 0)
	return (a->bfamily == 0 && b->bfamily == 0 && strcmp(a->addr, b->addr) == 0);
    bits = a->bfamily == AF_INET ? p->v4_prefix : p->v6_prefix;
    bytes = bits / 8;
    if (memcmp(a->bin, b->bin, (size_t) bytes) != 0)
	return (0);
    if (bits % 8) {
	unsigned char mask = (unsigned char) (0xff << (8 - bits % 8));

	return ((a->bin[bytes] & mask) == (b->bin[bytes] & mask));
    }
    return (1);
}

/* Switch the session to TLS (wrapper mode: before the greeting). */
static int session_tls_wrap(SESSION *ss)
{
    struct bufferevent *tbev;
    SSL    *ssl;
    struct timeval tv;

    if ((ssl = SSL_new(ss->p->ssl)) == 0)
	return (-1);
    tbev = bufferevent_openssl_filter_new(ss->s->base, ss->bev, ssl,
					  BUFFEREVENT_SSL_ACCEPTING,
					  BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (tbev == 0) {
	SSL_free(ssl);
	return (-1);
    }
    ss->bev = tbev;
    ss->tls = 1;
    bufferevent_setcb(tbev, read_cb, 0, event_cb, ss);
    bufferevent_setwatermark(tbev, EV_READ, 0, SMTPD_READ_HIGH_WATER);
    tv.tv_sec = ss->p->timeout;
    tv.tv_usec = 0;
    bufferevent_set_timeouts(tbev, &tv, &tv);
    bufferevent_enable(tbev, EV_READ | EV_WRITE);
    /* A ClientHello that came with the PROXY header is already buffered below. */
    if (evbuffer_get_length(bufferevent_get_input(bufferevent_get_underlying(tbev))) > 0)
	bufferevent_trigger(bufferevent_get_underlying(tbev), EV_READ, BEV_TRIG_DEFER_CALLBACKS);
    return (0);
}

static void session_set_client(SESSION *ss, const char *addr)
{
    SMTPD_PARAMS *p = ss->p;

    snprintf(ss->addr, sizeof(ss->addr), "%s", addr);
    ss->bfamily = 0;
    if (inet_pton(AF_INET, ss->addr, ss->bin) == 1)
	ss->bfamily = AF_INET;
    else if (inet_pton(AF_INET6, ss->addr, ss->bin) == 1)
	ss->bfamily = AF_INET6;
    snprintf(ss->name, sizeof(ss->name), "%s",
	     strcmp(ss->addr, "127.0.0.1") == 0 || strcmp(ss->addr, "::1") == 0 ?
	     "localhost" : "unknown");
    snprintf(ss->namaddr, sizeof(ss->namaddr), "%s[%s]", ss->name, ss->addr);
    ss->family = strchr(ss->addr, ':') ? 6 : 4;
    ss->in_mynet = smtpd_net_match(ss->addr, p->mynetworks);
    ss->bare_mode = smtpd_net_match(ss->addr, p->bare_excl) ? SMTPD_BARE_NO : p->bare_mode;
    /*
     * Postfix: local clients' headers are rewritten with myorigin, others'
     * only with remote_header_rewrite_domain; missing Message-Id:, Date:
     * (or their Resent- forms) are added in either rewriting context, or
     * always with always_add_missing_headers.
     */
    ss->rw_context = local_rewrite_client(ss, ss->laddr) ? CLEANUP_RW_LOCAL
	: cleanup_rw_remote_domain(ss->p->rw) ? CLEANUP_RW_REMOTE : CLEANUP_RW_NONE;
    ss->rewrite_allowed = ss->p->always_add || ss->rw_context != CLEANUP_RW_NONE;
}

/* The client is known (socket or PROXY header): limits, greeting. */
static void session_start(SESSION *ss)
{
    SMTPD  *s = ss->s;
    SMTPD_PARAMS *p = ss->p;
    SESSION *o;
    int     same = 0;

    for (o = s->sessions; o; o = o->next)
	if (o != ss && !o->gone && !o->proxy_wait && same_network(o, ss, p))
	    same++;
    SLOG(ss, "connect from %s", ss->namaddr);
    if (p->conn_limit > 0 && same >= p->conn_limit) {
	SWARN(ss, "Connection concurrency limit exceeded: %d from %s for service %s",
	      same + 1, ss->namaddr, ss->l ? ss->l->service : "smtp");
	s->st.rejects_other++;
	reply(ss, "421 4.7.0 %s Error: too many connections from %s", p->myhostname, ss->addr);
	session_close_after_write(ss);
	return;
    }
    if (p->sess_limit > 0 && s->nsess > p->sess_limit) {
	s->st.rejects_other++;
	reply(ss, "421 4.3.2 %s Service unavailable - try again later", p->myhostname);
	session_close_after_write(ss);
	return;
    }
    if (p->wrapper && session_tls_wrap(ss) < 0) {
	SWARN(ss, "cannot start TLS (wrapper mode) for %s", ss->namaddr);
	session_free(ss);
	return;
    }
    if (p->milters) {
	ss->ms = milter_sess_create(s->base, p->milters, milter_macro, ss);
	milter_pause(ss);
	bufferevent_enable(ss->bev, EV_WRITE);
	milter_conn_event(ss->ms, ss->name, ss->addr, ss->cport, ss->family, milter_conn_cb, ss);
	return;
    }
    reply(ss, "220 %s", p->banner);
    bufferevent_enable(ss->bev, EV_READ | EV_WRITE);
    deadline_arm(ss, time_mono_us() + p->timeout * 1000000);
}

/* smtpd_upstream_proxy_protocol = haproxy: the header, before any SMTP. */
static void proxy_read(SESSION *ss)
{
    struct evbuffer *in = bufferevent_get_input(ss->bev);
    size_t  n = evbuffer_get_length(in);
    size_t  want = n < SMTPD_PROXY_V2_MAX ? n : SMTPD_PROXY_V2_MAX;
    unsigned char *data = evbuffer_pullup(in, (ev_ssize_t) want);
    SMTPD_PROXY px;
    const char *why;
    int     rc;

    rc = smtpd_proxy_parse(data, want, &px, &why);
    if (rc == SMTPD_PROXY_MORE && want < SMTPD_PROXY_V2_MAX)
	return;
    if (rc <= 0) {
	BUF     esc = BUF_INIT;

	for (size_t i = 0; i < want && i < SMTPD_PROXY_V1_MAX; i++) {
	    if (data[i] >= 0x20 && data[i] < 0x7f && data[i] != '\\')
		buf_putc(&esc, (char) data[i]);
	    else
		buf_printf(&esc, "\\%03o", data[i]);
	}
	SWARN(ss, "haproxy read: %s: %s", rc == 0 ? "protocol header too long" : why,
	      esc.data ? esc.data : "");
	buf_free(&esc);
	ss->logged_disconnect = 1;		/* no SMTP session took place */
	session_free(ss);
	return;
    }
    evbuffer_drain(in, (size_t) rc);
    ss->proxy_wait = 0;
    event_free(ss->proxy_ev);
    ss->proxy_ev = 0;
    if (!px.local) {
	snprintf(ss->laddr, sizeof(ss->laddr), "%s", px.server_addr);
	ss->lport = px.server_port;
	ss->cport = px.client_port;
	session_set_client(ss, px.client_addr);
    }
    ss->lr.limit = (size_t) ss->p->line_limit;
    session_start(ss);
    /* SMTP bytes after the header (a pipelining client) wait for the greeting. */
    if (ss->bev && !ss->closing && !ss->tls && evbuffer_get_length(in) > 0)
	session_process(ss);
}

static void proxy_timeout_cb(evutil_socket_t fd, short what, void *ctx)
{
    SESSION *ss = ctx;

    SWARN(ss, "haproxy read: %s", "timeout error");
    ss->logged_disconnect = 1;
    session_free(ss);
}

static void accept_cb(struct evconnlistener *el, evutil_socket_t fd,
		              struct sockaddr *sa, int salen, void *ctx)
{
    LISTENER *l = ctx;
    SMTPD  *s = l->s;
    SMTPD_PARAMS *p = l->p;
    SESSION *ss;
    struct sockaddr_storage local;
    socklen_t llen = sizeof(local);
    char    addr[INET6_ADDRSTRLEN];
    struct timeval tv;

    if (s->shutting) {
	evutil_closesocket(fd);
	return;
    }
    ss = xcalloc(1, sizeof(*ss));
    ss->s = s;
    ss->l = l;
    ss->p = p;
    p->refs++;
    if (getsockname(fd, (struct sockaddr *) &local, &llen) == 0) {
	sockaddr_str((struct sockaddr *) &local, ss->laddr, sizeof(ss->laddr));
	ss->lport = sockaddr_port((struct sockaddr *) &local);
    }
    ss->cport = sockaddr_port(sa);
    sockaddr_str(sa, addr, sizeof(addr));
    session_set_client(ss, addr);
    snprintf(ss->last_cmd, sizeof(ss->last_cmd), "CONNECT");
    ss->lr.limit = (size_t) p->line_limit;
    buf_init(&ss->data);
    ss->held = evbuffer_new();

    evutil_make_socket_nonblocking(fd);
    ss->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (ss->bev == 0) {
	evutil_closesocket(fd);
	params_unref(p);
	evbuffer_free(ss->held);
	free(ss);
	return;
    }
    ss->next = s->sessions;
    if (s->sessions)
	s->sessions->prev = ss;
    s->sessions = ss;
    s->nsess++;
    s->st.connections++;
    /* master.cf maxproc: stop accepting on this service until one ends. */
    if (++l->nsess >= l->maxproc && l->maxproc > 0 && !l->full) {
	l->full = 1;
	if (time_now_us() / 1000000 - l->warned >= 60) {
	    l->warned = time_now_us() / 1000000;
	    log_warn("master", "service \"%s\" has reached its process limit "
		     "\"%lld\": new clients may experience noticeable delays",
		     l->service, l->maxproc);
	}
	for (int i = 0; i < s->nlis; i++)
	    if (s->lis_owner[i] == l)
		evconnlistener_disable(s->lis[i]);
    }

    bufferevent_setcb(ss->bev, read_cb, 0, event_cb, ss);
    bufferevent_setwatermark(ss->bev, EV_READ, 0, SMTPD_READ_HIGH_WATER);
    tv.tv_sec = p->timeout;
    tv.tv_usec = 0;
    bufferevent_set_timeouts(ss->bev, &tv, &tv);
    if (p->proxy) {
	ss->proxy_wait = 1;
	ss->proxy_ev = evtimer_new(s->base, proxy_timeout_cb, ss);
	tv.tv_sec = p->proxy_timeout;
	evtimer_add(ss->proxy_ev, &tv);
	bufferevent_enable(ss->bev, EV_READ | EV_WRITE);
	return;
    }
    session_start(ss);
}

/* Public interface */

/*
 * A "type:name" element of relay_domains: the domain, then its parents
 * (relay_domains is in parent_domain_matches_subdomains by default).
 * relayqd holds these tables open, so this finds the shared copy.
 */
int     smtpd_domain_table(const char *spec, const char *domain)
{
    char    err[512];
    const char *v;
    TABLE_LIST *l = table_list_open("relay_domains", spec, TABLE_FLAG_FOLD, err, sizeof(err));
    int     rc = l ? table_find_domain(l, domain, TABLE_DOM_PARENT, &v, err, sizeof(err))
	: TABLE_ERROR;

    table_list_close(l);
    if (rc == TABLE_ERROR)
	log_warn("smtpd", "%s", err);
    return (rc);
}

SMTPD  *smtpd_create(struct event_base *base, const CONFIG *cf, QUEUE *q, const SMTPD_HOOKS *hooks)
{
    SMTPD  *s = xcalloc(1, sizeof(*s));

    smtpd_domain_table_fn = smtpd_domain_table;

    s->base = base;
    s->q = q;
    if (hooks)
	s->hooks = *hooks;
    s->cf = cf;
    s->listen = config_list(cf, "smtpd_listen", 0);
    s->done_ev = evtimer_new(base, done_cb, s);
    return (s);
}

void    smtpd_set_queue(SMTPD *s, QUEUE *q)
{
    s->q = q;
}

static void listener_free(LISTENER *l)
{
    free(l->service);
    str_list_free(l->opts);
    str_list_free(l->addrs);
    params_unref(l->p);
    free(l);
}

/* The settings of one master.cf service: main.cf plus its -o list. */
static SMTPD_PARAMS *listener_params(const CONFIG *cf, const MASTER_SERVICE *svc,
				             const char *path, long long *maxproc,
				             int report, char *err, size_t errlen)
{
    char    where[256], why[512];
    CONFIG *dcf;
    SMTPD_PARAMS *p;

    snprintf(where, sizeof(where), "%s, line %d", path, svc->line);
    if ((dcf = config_derive(cf, svc->opts, svc->nopts, where, why, sizeof(why))) == 0) {
	snprintf(err, errlen, "%s", why);
	return (0);
    }
    for (int i = 0; report && i < svc->nopts; i++) {
	size_t  nl = strcspn(svc->opts[i], "=");
	char   *name = xmalloc(nl + 1);

	memcpy(name, svc->opts[i], nl);
	name[nl] = 0;
	if (!config_known(name))
	    log_msg("master", "%s: -o %s: not a relayq parameter, ignored", where, name);
	free(name);
    }
    if ((p = params_load(dcf, why, sizeof(why))) == 0)
	snprintf(err, errlen, "%s: service %s: %s", where, svc->service, why);
    if (maxproc)
	*maxproc = svc->maxproc >= 0 ? svc->maxproc : config_int(dcf, "default_process_limit");
    config_free(dcf);
    return (p);
}

/* Listeners from CONFDIR/master.cf, or the one of smtpd_listen. */
static int listeners_load(SMTPD *s, char *err, size_t errlen)
{
    const CONFIG *cf = s->cf;
    char   *path = xasprintf("%s/master.cf", config_dir(cf));
    char    why[512];
    MASTER_CF *m = master_load(path, why, sizeof(why));
    LISTENER *l;
    int     ret = -1;

    if (m == 0 && *why) {
	snprintf(err, errlen, "%s", why);
	goto done;
    }
    if (m == 0) {
	l = xcalloc(1, sizeof(*l));
	l->s = s;
	l->service = xstrdup("smtp");
	l->opts = xcalloc(1, sizeof(char *));
	l->addrs = config_list(cf, "smtpd_listen", 0);
	if ((l->p = params_load(cf, why, sizeof(why))) == 0) {
	    snprintf(err, errlen, "%s", why);
	    listener_free(l);
	    goto done;
	}
	s->lst = xrealloc(s->lst, sizeof(*s->lst) * (size_t) (s->nlst + 1));
	s->lst[s->nlst++] = l;
	ret = 0;
	goto done;
    }
    log_msg("master", "%s: listeners come from this file; smtpd_listen is ignored", path);
    {
	BUF     ign = BUF_INIT;
	int     nign = 0;
	char  **known = config_list(cf, "known_tcp_ports", 0);
	char  **ifaces = config_list(cf, "inet_interfaces", 0);
	char  **protos = config_list(cf, "inet_protocols", 0);

	for (int i = 0; i < m->nsvc; i++) {
	    MASTER_SERVICE *svc = &m->svc[i];

	    if (!master_is_smtpd(svc)) {
		buf_printf(&ign, "%s%s", nign++ ? ", " : "", svc->service);
		continue;
	    }
	    l = xcalloc(1, sizeof(*l));
	    l->s = s;
	    l->service = xstrdup(svc->service);
	    l->line = svc->line;
	    l->opts = str_split_list("", 0);
	    for (int k = 0; k < svc->nopts; k++) {
		l->opts = xrealloc(l->opts, sizeof(char *) * (size_t) (k + 2));
		l->opts[k] = xstrdup(svc->opts[k]);
		l->opts[k + 1] = 0;
	    }
	    s->lst = xrealloc(s->lst, sizeof(*s->lst) * (size_t) (s->nlst + 1));
	    s->lst[s->nlst++] = l;
	    if ((l->addrs = master_listen_addrs(svc, known, ifaces, protos, why, sizeof(why))) == 0) {
		snprintf(err, errlen, "%s", why);
		break;
	    }
	    if ((l->p = listener_params(cf, svc, path, &l->maxproc, 1, err, errlen)) == 0)
		break;
	}
	if (nign)
	    log_msg("master", "%s: services not run by relayq, ignored: %s", path, ign.data);
	buf_free(&ign);
	str_list_free(known);
	str_list_free(ifaces);
	str_list_free(protos);
	if (s->nlst > 0 && s->lst[s->nlst - 1]->p == 0)
	    goto done;
    }
    if (s->nlst == 0) {
	snprintf(err, errlen, "%s: no \"inet\" service with command \"smtpd\": nothing to listen on", path);
	goto done;
    }
    ret = 0;

done:
    master_free(m);
    free(path);
    return (ret);
}

/* "host:port" or "[v6]:port" (port 0: any free port). */
static int listen_addr(const char *spec, struct sockaddr_storage *ss, int *sslen)
{
    char    host[INET6_ADDRSTRLEN + 2];
    const char *colon;
    const char *hs = spec;
    size_t  hl;
    char   *end;
    long    port;

    if (*spec == '[') {
	const char *rb = strchr(spec, ']');

	if (rb == 0 || rb[1] != ':')
	    return (-1);
	hs = spec + 1;
	hl = (size_t) (rb - hs);
	colon = rb + 1;
    } else {
	if ((colon = strrchr(spec, ':')) == 0)
	    return (-1);
	hl = (size_t) (colon - spec);
    }
    if (hl >= sizeof(host))
	return (-1);
    memcpy(host, hs, hl);
    host[hl] = 0;
    port = strtol(colon + 1, &end, 10);
    if (colon[1] == 0 || *end || port < 0 || port > 65535)
	return (-1);
    if (inet_pton(AF_INET, host, &((struct sockaddr_in *) ss)->sin_addr) == 1) {
	((struct sockaddr_in *) ss)->sin_family = AF_INET;
	((struct sockaddr_in *) ss)->sin_port = htons((unsigned short) port);
	*sslen = sizeof(struct sockaddr_in);
	return (0);
    }
    if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *) ss)->sin6_addr) == 1) {
	((struct sockaddr_in6 *) ss)->sin6_family = AF_INET6;
	((struct sockaddr_in6 *) ss)->sin6_port = htons((unsigned short) port);
	*sslen = sizeof(struct sockaddr_in6);
	return (0);
    }
    return (-1);
}

/* Bind every listener address (before dropping root); listeners from master.cf or smtpd_listen. */
int     smtpd_bind(SMTPD *s, char *err, size_t errlen)
{
    if (s->nlst == 0 && listeners_load(s, err, errlen) < 0)
	return (-1);
    for (int li = 0; li < s->nlst; li++) {
	LISTENER *ls = s->lst[li];

	for (char **cp = ls->addrs; cp && *cp; cp++) {
	    struct sockaddr_storage ss;
	    int     sslen = sizeof(ss);
	    int     fd, on = 1;

	    memset(&ss, 0, sizeof(ss));
	    if (listen_addr(*cp, &ss, &sslen) < 0) {
		if (ls->line)
		    snprintf(err, errlen, "master.cf, line %d: service %s: bad address \"%s\": "
			     "expected host:port or [v6]:port with a numeric host",
			     ls->line, ls->service, *cp);
		else
		    snprintf(err, errlen, "smtpd_listen: bad address \"%s\": expected host:port or [v6]:port", *cp);
		return (-1);
	    }
	    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	    if (fd < 0) {
		snprintf(err, errlen, "socket %s: %s", *cp, strerror(errno));
		return (-1);
	    }
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	    if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
	    if (bind(fd, (struct sockaddr *) &ss, (socklen_t) sslen) < 0) {
		snprintf(err, errlen, "bind %s: %s", *cp, strerror(errno));
		close(fd);
		return (-1);
	    }
	    s->bound = xrealloc(s->bound, (size_t) (s->nbound + 1) * sizeof(*s->bound));
	    s->bound_name = xrealloc(s->bound_name, (size_t) (s->nbound + 1) * sizeof(*s->bound_name));
	    s->bound_owner = xrealloc(s->bound_owner, (size_t) (s->nbound + 1) * sizeof(*s->bound_owner));
	    s->bound[s->nbound] = fd;
	    s->bound_owner[s->nbound] = ls;
	    s->bound_name[s->nbound++] = *cp;
	}
    }
    return (0);
}

/* One second after a failed accept(): take connections again. */
static void accept_resume_cb(evutil_socket_t fd, short what, void *ctx)
{
    SMTPD  *s = ctx;

    for (int i = 0; i < s->nlis; i++)
	if (!s->lis_owner[i]->full)		/* a service at its maxproc stays paused */
	    evconnlistener_enable(s->lis[i]);
}

/*
 * accept() failed for a reason other than a client that went away: out of
 * descriptors (EMFILE, ENFILE) or memory.  libevent would retry at once and
 * spin; stop accepting for a second instead, with one warning per pause.
 */
static void accept_error_cb(struct evconnlistener *l, void *ctx)
{
    SMTPD  *s = ((LISTENER *) ctx)->s;	/* the listener's accept_cb context */
    int     err = EVUTIL_SOCKET_ERROR();
    struct timeval tv = {1, 0};

    for (int i = 0; i < s->nlis; i++)
	evconnlistener_disable(s->lis[i]);
    if (s->pause_ev == 0)
	s->pause_ev = evtimer_new(s->base, accept_resume_cb, s);
    evtimer_add(s->pause_ev, &tv);
    log_warn("smtpd", "accept: %s: not accepting new connections for 1 second", strerror(err));
}

int     smtpd_listen(SMTPD *s, char *err, size_t errlen)
{
    int     i;

    if (s->nbound == 0 && s->nlis == 0 && smtpd_bind(s, err, errlen) < 0)
	return (-1);
    for (i = 0; i < s->nbound; i++) {
	struct evconnlistener *l;

	l = evconnlistener_new(s->base, accept_cb, s->bound_owner[i], LEV_OPT_CLOSE_ON_FREE, -1, s->bound[i]);
	if (l == 0) {
	    snprintf(err, errlen, "listen %s: %s", s->bound_name[i], strerror(errno));
	    return (-1);
	}
	s->bound[i] = -1;
	evconnlistener_set_error_cb(l, accept_error_cb);
	s->lis = xrealloc(s->lis, (size_t) (s->nlis + 1) * sizeof(*s->lis));
	s->lis_owner = xrealloc(s->lis_owner, (size_t) (s->nlis + 1) * sizeof(*s->lis_owner));
	s->lis_owner[s->nlis] = s->bound_owner[i];
	s->lis[s->nlis++] = l;
    }
    free(s->bound);
    free(s->bound_name);
    free(s->bound_owner);
    s->bound = 0;
    s->bound_name = 0;
    s->bound_owner = 0;
    s->nbound = 0;
    return (0);
}

int     smtpd_bound_port(const SMTPD *s, int idx)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (idx < 0 || idx >= s->nlis
	|| getsockname(evconnlistener_get_fd(s->lis[idx]), (struct sockaddr *) &ss, &len) < 0)
	return (-1);
    if (ss.ss_family == AF_INET6)
	return (ntohs(((struct sockaddr_in6 *) &ss)->sin6_port));
    return (ntohs(((struct sockaddr_in *) &ss)->sin_port));
}

/*
 * SIGHUP: every listener gets new settings from relayq.cf and its master.cf
 * -o list (re-read); addresses need a restart.  A listener whose new
 * settings are wrong keeps its old ones, with a warning.
 */
void    smtpd_reconfigure(SMTPD *s, const CONFIG *cf)
{
    char   *path = xasprintf("%s/master.cf", config_dir(cf));
    char    why[512];
    MASTER_CF *m = master_load(path, why, sizeof(why));

    s->cf = cf;
    if (m == 0 && *why)
	log_warn("master", "%s; listener settings unchanged", why);
    for (int li = 0; li < s->nlst; li++) {
	LISTENER *l = s->lst[li];
	SMTPD_PARAMS *np = 0;
	MASTER_SERVICE *svc = 0;
	long long maxproc = l->maxproc;

	for (int i = 0; m && l->line && i < m->nsvc; i++)
	    if (master_is_smtpd(&m->svc[i]) && strcmp(m->svc[i].service, l->service) == 0)
		svc = &m->svc[i];
	if (l->line == 0)
	    np = params_load(cf, why, sizeof(why));
	else if (svc)
	    np = listener_params(cf, svc, path, &maxproc, 0, why, sizeof(why));
	else if (m || *why == 0) {
	    MASTER_SERVICE old;

	    memset(&old, 0, sizeof(old));
	    old.service = l->service;
	    old.line = l->line;
	    old.opts = l->opts;
	    while (old.opts[old.nopts])
		old.nopts++;
	    old.maxproc = (int) l->maxproc;
	    np = listener_params(cf, &old, path, 0, 0, why, sizeof(why));
	}
	if (np == 0) {
	    log_warn("master", "%s; service %s keeps its settings", why, l->service);
	    continue;
	}
	if (svc) {
	    str_list_free(l->opts);
	    l->opts = xcalloc((size_t) svc->nopts + 1, sizeof(char *));
	    for (int k = 0; k < svc->nopts; k++)
		l->opts[k] = xstrdup(svc->opts[k]);
	    l->maxproc = maxproc;
	}
	params_unref(l->p);
	l->p = np;
    }
    master_free(m);
    free(path);
}

void    smtpd_shutdown(SMTPD *s, void (*done) (void *ctx), void *ctx)
{
    int     i;

    s->shutting = 1;
    s->done = done;
    s->done_ctx = ctx;
    for (i = 0; i < s->nlis; i++)
	evconnlistener_free(s->lis[i]);
    free(s->lis);
    free(s->lis_owner);
    s->lis = 0;
    s->lis_owner = 0;
    s->nlis = 0;
    if (s->pause_ev)
	evtimer_del(s->pause_ev);
    check_done(s);
}

int     smtpd_sessions(const SMTPD *s)
{
    return (s->nsess);
}

void    smtpd_stats(const SMTPD *s, SMTPD_STATS *st)
{
    *st = s->st;
}

void    smtpd_free(SMTPD *s)
{
    int     i;

    if (s == 0)
	return;
    s->done = 0;
    while (s->sessions) {
	SESSION *ss = s->sessions;

	/* A pending queue callback would find freed memory: abandon it. */
	ss->waiting = 0;
	ss->closing = 1;
	session_free(ss);
    }
    for (i = 0; i < s->nlis; i++)
	evconnlistener_free(s->lis[i]);
    free(s->lis);
    for (i = 0; i < s->nbound; i++)
	if (s->bound[i] >= 0)
	    close(s->bound[i]);
    if (s->pause_ev)
	event_free(s->pause_ev);
    free(s->bound);
    free(s->bound_name);
    free(s->bound_owner);
    free(s->lis_owner);
    for (i = 0; i < s->nlst; i++)
	listener_free(s->lst[i]);
    free(s->lst);
    for (i = 0; i < s->ndc; i++)
	dovecot_free(s->dc[i]);
    free(s->dc);
    free(s->rates);
    str_list_free(s->listen);
    event_free(s->done_ev);
    free(s);
}
