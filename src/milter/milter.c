/*
 * milter.c - the milter protocol client on the event loop: configuration,
 * connections, option negotiation, macros, events and replies, and the
 * end-of-message edits.  See milter.h.
 *
 * Wire format (Sendmail's libmilter): every packet is a 32-bit length in
 * network byte order (command byte included), a command byte, and data.
 * The MTA sends SMFIC_* commands, the filter answers with SMFIR_* replies;
 * events the filter asked not to see are not sent, and events it asked not
 * to answer (SMFIP_NR_*) are not waited for.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "log/log.h"
#include "milter/milter.h"

/* Commands (MTA to filter). */
#define SMFIC_ABORT	'A'
#define SMFIC_BODY	'B'
#define SMFIC_CONNECT	'C'
#define SMFIC_MACRO	'D'
#define SMFIC_BODYEOB	'E'
#define SMFIC_HELO	'H'
#define SMFIC_HEADER	'L'
#define SMFIC_MAIL	'M'
#define SMFIC_EOH	'N'
#define SMFIC_OPTNEG	'O'
#define SMFIC_QUIT	'Q'
#define SMFIC_RCPT	'R'
#define SMFIC_DATA	'T'

/* Replies (filter to MTA). */
#define SMFIR_ADDRCPT	'+'
#define SMFIR_DELRCPT	'-'
#define SMFIR_ADDRCPT_PAR '2'
#define SMFIR_SHUTDOWN	'4'
#define SMFIR_ACCEPT	'a'
#define SMFIR_REPLBODY	'b'
#define SMFIR_CONTINUE	'c'
#define SMFIR_DISCARD	'd'
#define SMFIR_CHGFROM	'e'
#define SMFIR_CONN_FAIL	'f'
#define SMFIR_ADDHEADER	'h'
#define SMFIR_INSHEADER	'i'
#define SMFIR_SETSYMLIST 'l'
#define SMFIR_CHGHEADER	'm'
#define SMFIR_PROGRESS	'p'
#define SMFIR_QUARANTINE 'q'
#define SMFIR_REJECT	'r'
#define SMFIR_SKIP	's'
#define SMFIR_TEMPFAIL	't'
#define SMFIR_REPLYCODE	'y'

/* Actions the filter may take (we offer all of protocol 6). */
#define SMFIF_ADDHDRS	0x01
#define SMFIF_CHGBODY	0x02
#define SMFIF_ADDRCPT	0x04
#define SMFIF_DELRCPT	0x08
#define SMFIF_CHGHDRS	0x10
#define SMFIF_QUARANTINE 0x20
#define SMFIF_CHGFROM	0x40
#define SMFIF_ADDRCPT_PAR 0x80
#define SMFIF_SETSYMLIST 0x100
#define MILTER_ACTIONS_V6 0x1FF
#define MILTER_ACTIONS_V2 0x3F

/* Protocol steps. */
#define SMFIP_NOCONNECT	0x01
#define SMFIP_NOHELO	0x02
#define SMFIP_NOMAIL	0x04
#define SMFIP_NORCPT	0x08
#define SMFIP_NOBODY	0x10
#define SMFIP_NOHDRS	0x20
#define SMFIP_NOEOH	0x40
#define SMFIP_NR_HDR	0x80
#define SMFIP_NOUNKNOWN	0x100
#define SMFIP_NODATA	0x200
#define SMFIP_SKIP	0x400
#define SMFIP_RCPT_REJ	0x800
#define SMFIP_NR_CONN	0x1000
#define SMFIP_NR_HELO	0x2000
#define SMFIP_NR_MAIL	0x4000
#define SMFIP_NR_RCPT	0x8000
#define SMFIP_NR_DATA	0x10000
#define SMFIP_NR_UNKN	0x20000
#define SMFIP_NR_EOH	0x40000
#define SMFIP_NR_BODY	0x80000
#define SMFIP_HDR_LEADSPC 0x100000
/* What relayq offers: everything but RCPT_REJ (rejected recipients are not sent). */
#define MILTER_PROTO_V6	(SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT \
			 | SMFIP_NOBODY | SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NR_HDR \
			 | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_SKIP \
			 | SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT \
			 | SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_EOH | SMFIP_NR_BODY \
			 | SMFIP_HDR_LEADSPC)
#define MILTER_PROTO_V2	0x7F

#define MILTER_CHUNK	65535		/* body chunk */
#define MILTER_MAX_PKT	(2 * 1024 * 1024)	/* a larger packet is a protocol error */

/* Default actions. */
#define DEF_ACCEPT	0
#define DEF_REJECT	1
#define DEF_TEMPFAIL	2
#define DEF_QUARANTINE	3
#define DEF_SHUTDOWN	4

typedef struct MILTER {
    char   *name;			/* "inet:127.0.0.1:8891", for logging */
    struct sockaddr_storage sa;
    socklen_t salen;
    long long conn_timeout, cmd_timeout, msg_timeout;
    int     protocol;
    int     def_action;
    char   *macros[MILTER_M_COUNT];	/* "j {daemon_name}" as configured */
} MILTER;

struct MILTERS {
    MILTER *m;
    int     n;
};

/* Per-connection states, after Postfix's milter8. */
#define MC_CLOSED	0		/* not connected yet */
#define MC_CONNECTING	1
#define MC_NEGOTIATING	2
#define MC_READY	3		/* envelope events may be sent */
#define MC_ERROR	4		/* broken; def_reply (or none: accept) */
#define MC_ACCEPT_CON	5		/* accepted the connection: no more events */
#define MC_REJECT_CON	6		/* rejected the connection: def_reply */
#define MC_ACCEPT_MSG	7		/* accepted this message: no more message events */

typedef struct MCONN {
    MILTER_SESS *ms;
    const MILTER *m;
    struct bufferevent *bev;
    int     state;
    uint32_t actions;			/* what the filter may do */
    uint32_t pflags;			/* events it does not want, replies it does not send */
    char   *macros[MILTER_M_COUNT];	/* SMFIR_SETSYMLIST overrides */
    char   *def_reply;			/* reply for every later event; NULL: none */
} MCONN;

/* One packet of the event in progress. */
typedef struct PKT {
    BUF     data;			/* length + command + payload */
    int     cmd;
    int     reply;			/* a reply is expected */
} PKT;

struct MILTER_SESS {
    struct event_base *base;
    const MILTERS *conf;
    MILTER_MACRO_FN macro;
    void   *macro_ctx;
    MCONN  *c;
    int     n;
    int     in_msg;			/* MAIL was sent: ABORT ends the transaction */
    /* The event in progress. */
    int     busy;
    int     event;			/* SMFIC_* */
    int     cur;			/* index of the filter being asked */
    MILTER_CB cb;
    void   *cbctx;
    char  **argv;			/* envelope event arguments */
    char   *conn_name, *conn_addr;
    int     conn_port, conn_family;
    MILTER_MSG *msg;
    MILTER_HDRS *hdrs;
    PKT    *pkt;
    int     npkt, ipkt;
    int     skip_body;
    BUF     newbody;
    int     replbody;
    struct event *timer;
    struct event *done_ev;		/* runs the callback from the loop */
    /* The result. */
    MILTER_RESULT res;
    char    reply[1024];
    char   *hold;
    char   *new_sender, *new_sender_args;
    MILTER_RCPT_EDIT *edits;
    int     nedits;
};

/* Configuration */

static int def_action(const char *v)
{
    if (str_casecmp(v, "accept") == 0)
	return (DEF_ACCEPT);
    if (str_casecmp(v, "reject") == 0)
	return (DEF_REJECT);
    if (str_casecmp(v, "tempfail") == 0)
	return (DEF_TEMPFAIL);
    if (str_casecmp(v, "quarantine") == 0)
	return (DEF_QUARANTINE);
    if (str_casecmp(v, "shutdown") == 0)
	return (DEF_SHUTDOWN);
    return (-1);
}

static long long parse_time(const char *v)
{
    char   *end;
    long long n;

    errno = 0;
    n = strtoll(v, &end, 10);
    if (errno || end == v || n < 0)
	return (-1);
    switch (*end) {
    case 0:
    case 's':
	break;
    case 'm':
	n *= 60;
	break;
    case 'h':
	n *= 3600;
	break;
    case 'd':
	n *= 86400;
	break;
    case 'w':
	n *= 604800;
	break;
    default:
	return (-1);
    }
    if (*end && end[1])
	return (-1);
    return (n);
}

/* "inet:host:port", "inet:[v6]:port", "unix:/path" */
static int endpoint(MILTER *m, const char *spec, const char *qdir, char *err, size_t errlen)
{
    if (strncmp(spec, "unix:", 5) == 0) {
	struct sockaddr_un *un = (struct sockaddr_un *) &m->sa;
	const char *path = spec + 5;
	int     len;

	un->sun_family = AF_UNIX;
	if (*path == '/' || qdir == 0 || *qdir == 0)
	    len = snprintf(un->sun_path, sizeof(un->sun_path), "%s", path);
	else
	    len = snprintf(un->sun_path, sizeof(un->sun_path), "%s/%s", qdir, path);
	if (*path == 0 || len < 0 || (size_t) len >= sizeof(un->sun_path)) {
	    snprintf(err, errlen, "bad UNIX-domain socket path in \"%s\"", spec);
	    return (-1);
	}
	m->salen = sizeof(*un);
	return (0);
    }
    if (strncmp(spec, "inet:", 5) == 0) {
	char    host[256];
	const char *hp = spec + 5, *port;
	struct addrinfo hints, *ai = 0;
	size_t  hlen;
	int     rc;

	if (*hp == '[') {
	    const char *rb = strchr(hp, ']');

	    if (rb == 0 || rb[1] != ':') {
		snprintf(err, errlen, "bad address in \"%s\"", spec);
		return (-1);
	    }
	    hlen = (size_t) (rb - hp - 1);
	    hp++;
	    port = rb + 2;
	} else {
	    const char *colon = strrchr(hp, ':');

	    if (colon == 0) {
		snprintf(err, errlen, "need inet:host:port instead of \"%s\"", spec);
		return (-1);
	    }
	    hlen = (size_t) (colon - hp);
	    port = colon + 1;
	}
	if (hlen == 0 || hlen >= sizeof(host) || *port == 0 || strspn(port, "0123456789") != strlen(port)
	    || atoi(port) < 1 || atoi(port) > 65535) {
	    snprintf(err, errlen, "need inet:host:port instead of \"%s\"", spec);
	    return (-1);
	}
	memcpy(host, hp, hlen);
	host[hlen] = 0;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0) {
	    /* A name: resolved once, when the configuration is loaded. */
	    hints.ai_flags = AI_NUMERICSERV;
	    rc = getaddrinfo(host, port, &hints, &ai);
	}
	if (rc != 0 || ai == 0) {
	    snprintf(err, errlen, "cannot resolve \"%s\": %s", spec, gai_strerror(rc));
	    return (-1);
	}
	memcpy(&m->sa, ai->ai_addr, ai->ai_addrlen);
	m->salen = ai->ai_addrlen;
	freeaddrinfo(ai);
	return (0);
    }
    snprintf(err, errlen, "Milter service needs transport:endpoint instead of \"%s\"", spec);
    return (-1);
}

static const char *const macro_params[MILTER_M_COUNT] = {
    "milter_connect_macros", "milter_helo_macros", "milter_mail_macros",
    "milter_rcpt_macros", "milter_data_macros", "milter_end_of_data_macros",
    "milter_end_of_header_macros", "milter_unknown_command_macros",
};

/* One list element: "inet:..." or "{ inet:..., name=value, ... }". */
static int milter_parse(MILTER *m, const CONFIG *cf, const char *elem, char *err, size_t errlen)
{
    char  **parts = 0, *inner = 0;
    int     i, n = 0, rc = -1;
    char    e[300];

    m->conn_timeout = config_time(cf, "milter_connect_timeout");
    m->cmd_timeout = config_time(cf, "milter_command_timeout");
    m->msg_timeout = config_time(cf, "milter_content_timeout");
    m->protocol = (int) config_int(cf, "milter_protocol");
    m->def_action = def_action(config_str(cf, "milter_default_action"));
    for (i = 0; i < MILTER_M_COUNT; i++)
	m->macros[i] = xstrdup(config_str(cf, macro_params[i]));
    if (elem[0] == '{') {
	size_t  len = strlen(elem);

	if (len < 2 || elem[len - 1] != '}') {
	    snprintf(err, errlen, "missing '}' in \"%s\"", elem);
	    return (-1);
	}
	inner = xstrndup(elem + 1, len - 2);
	parts = str_split_list(inner, &n);
	if (n == 0) {
	    snprintf(err, errlen, "empty milter setting \"%s\"", elem);
	    goto out;
	}
    } else {
	parts = str_split_list(elem, &n);
    }
    m->name = xstrdup(parts[0]);
    if (endpoint(m, parts[0], config_str(cf, "queue_directory"), e, sizeof(e)) < 0) {
	snprintf(err, errlen, "%s", e);
	goto out;
    }
    for (i = 1; i < n; i++) {
	char   *eq = strchr(parts[i], '=');
	long long t;

	if (eq == 0) {
	    snprintf(err, errlen, "missing '=' in \"%s\" (milter %s)", parts[i], m->name);
	    goto out;
	}
	*eq++ = 0;
	if (strcmp(parts[i], "connect_timeout") == 0 || strcmp(parts[i], "command_timeout") == 0
	    || strcmp(parts[i], "content_timeout") == 0) {
	    if ((t = parse_time(eq)) <= 0) {
		snprintf(err, errlen, "bad %s value \"%s\" (milter %s)", parts[i], eq, m->name);
		goto out;
	    }
	    if (parts[i][1] == 'o' && parts[i][2] == 'n' && parts[i][3] == 'n')
		m->conn_timeout = t;
	    else if (parts[i][2] == 'm')
		m->cmd_timeout = t;
	    else
		m->msg_timeout = t;
	} else if (strcmp(parts[i], "default_action") == 0) {
	    if ((m->def_action = def_action(eq)) < 0) {
		snprintf(err, errlen, "bad default_action value \"%s\" (milter %s): "
			 "use accept, reject, tempfail, quarantine or shutdown", eq, m->name);
		goto out;
	    }
	} else if (strcmp(parts[i], "protocol") == 0) {
	    m->protocol = atoi(eq);
	    if (m->protocol < 2 || m->protocol > 6) {
		snprintf(err, errlen, "bad protocol value \"%s\" (milter %s)", eq, m->name);
		goto out;
	    }
	} else {
	    snprintf(err, errlen, "unknown milter setting \"%s\" (milter %s)", parts[i], m->name);
	    goto out;
	}
    }
    if (m->def_action < 0) {
	snprintf(err, errlen, "bad milter_default_action value \"%s\": "
		 "use accept, reject, tempfail, quarantine or shutdown",
		 config_str(cf, "milter_default_action"));
	goto out;
    }
    rc = 0;
out:
    str_list_free(parts);
    free(inner);
    return (rc);
}

static void milter_free_one(MILTER *m)
{
    int     i;

    free(m->name);
    for (i = 0; i < MILTER_M_COUNT; i++)
	free(m->macros[i]);
}

MILTERS *milters_create(const CONFIG *cf, const char *param, const char *list,
			        char *err, size_t errlen)
{
    MILTERS *ms;
    char  **elems;
    int     i, n;
    char    e[400];

    err[0] = 0;
    elems = str_split_list(list ? list : "", &n);
    if (n == 0) {
	str_list_free(elems);
	return (0);
    }
    ms = xcalloc(1, sizeof(*ms));
    ms->m = xcalloc((size_t) n, sizeof(MILTER));
    for (i = 0; i < n; i++) {
	ms->n = i + 1;
	if (milter_parse(&ms->m[i], cf, elems[i], e, sizeof(e)) < 0) {
	    snprintf(err, errlen, "%s: %s", param, e);
	    milters_free(ms);
	    str_list_free(elems);
	    return (0);
	}
    }
    str_list_free(elems);
    return (ms);
}

void    milters_free(MILTERS *ms)
{
    int     i;

    if (ms == 0)
	return;
    for (i = 0; i < ms->n; i++)
	milter_free_one(&ms->m[i]);
    free(ms->m);
    free(ms);
}

int     milters_count(const MILTERS *ms)
{
    return (ms ? ms->n : 0);
}

/* Packets */

static void pkt_begin(BUF *b, int cmd)
{
    buf_reset(b);
    buf_append(b, "\0\0\0\0", 4);
    buf_putc(b, cmd);
}

static void pkt_str(BUF *b, const char *s)
{
    buf_append(b, s, strlen(s) + 1);
}

static void pkt_u32(BUF *b, uint32_t v)
{
    uint32_t n = htonl(v);

    buf_append(b, &n, 4);
}

static void pkt_end(BUF *b)
{
    uint32_t n = htonl((uint32_t) (b->len - 4));

    memcpy(b->data, &n, 4);
}

static const char *cmd_name(int cmd)
{
    switch (cmd) {
    case SMFIC_CONNECT:
	return ("SMFIC_CONNECT");
    case SMFIC_HELO:
	return ("SMFIC_HELO");
    case SMFIC_MAIL:
	return ("SMFIC_MAIL");
    case SMFIC_RCPT:
	return ("SMFIC_RCPT");
    case SMFIC_DATA:
	return ("SMFIC_DATA");
    case SMFIC_HEADER:
	return ("SMFIC_HEADER");
    case SMFIC_EOH:
	return ("SMFIC_EOH");
    case SMFIC_BODY:
	return ("SMFIC_BODY");
    case SMFIC_BODYEOB:
	return ("SMFIC_BODYEOB");
    case SMFIC_OPTNEG:
	return ("SMFIC_OPTNEG");
    default:
	return ("(unknown MTA event)");
    }
}

static const char *service(const MILTER_SESS *ms)
{
    return (ms->event == SMFIC_BODYEOB ? "cleanup" : "smtpd");
}

/* Macros of a stage as a SMFIC_MACRO packet; 0 when none has a value. */
static int macro_packet(MILTER_SESS *ms, MCONN *mc, int stage, int cmd, BUF *b)
{
    const char *list = mc->macros[stage] ? mc->macros[stage] : mc->m->macros[stage];
    char  **names;
    int     i, n, any = 0;

    names = str_split_list(list, &n);
    pkt_begin(b, SMFIC_MACRO);
    buf_putc(b, cmd);
    for (i = 0; i < n; i++) {
	char    bare[128];
	const char *nm = names[i], *val;
	size_t  len = strlen(nm);

	if (len >= 2 && nm[0] == '{' && nm[len - 1] == '}')
	    snprintf(bare, sizeof(bare), "%.*s", (int) (len - 2), nm + 1);
	else
	    snprintf(bare, sizeof(bare), "%s", nm);
	if ((val = ms->macro(ms->macro_ctx, bare)) == 0)
	    continue;
	pkt_str(b, nm);
	pkt_str(b, val);
	any = 1;
    }
    pkt_end(b);
    str_list_free(names);
    return (any);
}

/* Sessions */

MILTER_SESS *milter_sess_create(struct event_base *base, const MILTERS *conf,
				        MILTER_MACRO_FN macro, void *macro_ctx)
{
    MILTER_SESS *ms = xcalloc(1, sizeof(*ms));
    int     i;

    ms->base = base;
    ms->conf = conf;
    ms->macro = macro;
    ms->macro_ctx = macro_ctx;
    ms->n = conf->n;
    ms->c = xcalloc((size_t) ms->n, sizeof(MCONN));
    for (i = 0; i < ms->n; i++) {
	ms->c[i].ms = ms;
	ms->c[i].m = &conf->m[i];
    }
    buf_init(&ms->newbody);
    return (ms);
}

static void pkts_free(MILTER_SESS *ms)
{
    int     i;

    for (i = 0; i < ms->npkt; i++)
	buf_free(&ms->pkt[i].data);
    free(ms->pkt);
    ms->pkt = 0;
    ms->npkt = ms->ipkt = 0;
}

static void result_reset(MILTER_SESS *ms)
{
    int     i;

    free(ms->hold);
    free(ms->new_sender);
    free(ms->new_sender_args);
    for (i = 0; i < ms->nedits; i++) {
	free(ms->edits[i].addr);
	free(ms->edits[i].args);
    }
    free(ms->edits);
    ms->hold = ms->new_sender = ms->new_sender_args = 0;
    ms->edits = 0;
    ms->nedits = 0;
    memset(&ms->res, 0, sizeof(ms->res));
    ms->reply[0] = 0;
}

static void conn_close(MCONN *mc)
{
    if (mc->bev) {
	bufferevent_free(mc->bev);
	mc->bev = 0;
    }
}

void    milter_sess_free(MILTER_SESS *ms)
{
    int     i, j;

    if (ms == 0)
	return;
    for (i = 0; i < ms->n; i++) {
	MCONN  *mc = &ms->c[i];

	if (mc->bev && mc->state >= MC_READY && mc->state != MC_ERROR) {
	    /* QUIT: best effort, without waiting. */
	    char    q[5] = {0, 0, 0, 1, SMFIC_QUIT};
	    int     fd = (int) bufferevent_getfd(mc->bev);

	    if (fd >= 0 && evbuffer_get_length(bufferevent_get_output(mc->bev)) == 0)
		(void) send(fd, q, sizeof(q), MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	conn_close(mc);
	for (j = 0; j < MILTER_M_COUNT; j++)
	    free(mc->macros[j]);
	free(mc->def_reply);
    }
    free(ms->c);
    if (ms->timer)
	event_free(ms->timer);
    if (ms->done_ev)
	event_free(ms->done_ev);
    pkts_free(ms);
    milter_hdrs_free(ms->hdrs);
    str_list_free(ms->argv);
    free(ms->conn_name);
    free(ms->conn_addr);
    buf_free(&ms->newbody);
    result_reset(ms);
    free(ms);
}

/* The event's outcome */

static void done_cb(evutil_socket_t fd, short what, void *ctx)
{
    MILTER_SESS *ms = ctx;
    MILTER_CB cb = ms->cb;

    ms->cb = 0;
    if (ms->hdrs) {
	/* The edited content goes back to the caller. */
	if (ms->res.content_changed) {
	    buf_reset(ms->msg->content);
	    milter_hdrs_write(ms->hdrs, ms->msg->content);
	}
	milter_hdrs_free(ms->hdrs);
	ms->hdrs = 0;
    }
    ms->msg = 0;
    pkts_free(ms);
    if (ms->res.action == MILTER_REJECT || ms->res.action == MILTER_SHUTDOWN)
	ms->res.reply = ms->reply;
    ms->res.hold = ms->hold;
    ms->res.new_sender = ms->new_sender;
    ms->res.new_sender_args = ms->new_sender_args;
    ms->res.rcpt_edits = ms->edits;
    ms->res.nrcpt_edits = ms->nedits;
    if (cb)
	cb(ms->cbctx, &ms->res);
}

static void finish(MILTER_SESS *ms)
{
    ms->busy = 0;			/* nothing more is read for this event */
    if (ms->timer)
	evtimer_del(ms->timer);
    if (ms->done_ev == 0)
	ms->done_ev = evtimer_new(ms->base, done_cb, ms);
    event_active(ms->done_ev, EV_TIMEOUT, 1);
}

/* A reply decides the event: "4..", "5..", "421 ..." (shutdown), "H..." (hold), "D" (discard). */
static void decide(MILTER_SESS *ms, MCONN *mc, const char *reply)
{
    ms->res.milter = mc->m->name;
    if (reply[0] == 'H') {
	/* Quarantine is not final: record it and go on. */
	if (ms->hold == 0)
	    ms->hold = xstrdup(reply[1] ? reply + 1 : "milter triggers HOLD action");
	return;
    }
    if (reply[0] == 'D') {
	ms->res.action = MILTER_DISCARD;
    } else if (strncmp(reply, "421", 3) == 0 || reply[0] == 'S') {
	ms->res.action = MILTER_SHUTDOWN;
	snprintf(ms->reply, sizeof(ms->reply), "%s",
		 reply[0] == 'S' ? "421 4.7.0 Server closing connection" : reply);
    } else {
	ms->res.action = MILTER_REJECT;
	snprintf(ms->reply, sizeof(ms->reply), "%s", reply);
    }
}

/* The filter broke: Postfix's milter8_comm_error(); returns the reply to use, or NULL. */
static const char *conn_error(MCONN *mc)
{
    conn_close(mc);
    mc->state = MC_ERROR;
    free(mc->def_reply);
    mc->def_reply = 0;
    switch (mc->m->def_action) {
    case DEF_ACCEPT:
	return (0);
    case DEF_REJECT:
	mc->def_reply = xstrdup("550 5.5.0 Service unavailable");
	break;
    case DEF_SHUTDOWN:
	mc->def_reply = xstrdup("421 4.7.1 Service unavailable - try again later");
	break;
    case DEF_QUARANTINE:
	mc->def_reply = xstrdup("Hdefault_action");
	break;
    default:
	mc->def_reply = xstrdup("451 4.7.1 Service unavailable - try again later");
	break;
    }
    return (mc->def_reply);
}

static void next_milter(MILTER_SESS *ms);

/* This filter failed during the event: its default action, then the next filter. */
static void fail_current(MILTER_SESS *ms)
{
    MCONN  *mc = &ms->c[ms->cur];
    const char *r;

    if (ms->timer)
	evtimer_del(ms->timer);
    if ((r = conn_error(mc)) != 0) {
	decide(ms, mc, r);
	if (ms->res.action != MILTER_CONTINUE) {
	    finish(ms);
	    return;
	}
    }
    ms->cur++;
    next_milter(ms);
}

static void arm_timer(MILTER_SESS *ms, long long secs)
{
    struct timeval tv = {(time_t) secs, 0};

    evtimer_add(ms->timer, &tv);
}

static long long event_timeout(const MILTER_SESS *ms, const MCONN *mc)
{
    switch (ms->event) {
    case SMFIC_HEADER:
    case SMFIC_EOH:
    case SMFIC_BODY:
    case SMFIC_BODYEOB:
	return (mc->m->msg_timeout);
    default:
	return (mc->m->cmd_timeout);
    }
}

/*
 * Build the packets of the current event for filter mc: the macros, the
 * event (or, for a message, every header, EOH, body chunk and EOB), each
 * marked with whether a reply comes.  Events the filter does not want are
 * left out.
 */
static void add_pkt(MILTER_SESS *ms, BUF *b, int cmd, int reply)
{
    PKT    *p;

    ms->pkt = xrealloc(ms->pkt, (size_t) (ms->npkt + 1) * sizeof(PKT));
    p = &ms->pkt[ms->npkt++];
    p->data = *b;
    p->cmd = cmd;
    p->reply = reply;
    buf_init(b);
}

static void add_event(MILTER_SESS *ms, MCONN *mc, int stage, int cmd, BUF *payload,
		              uint32_t no, uint32_t nr)
{
    BUF     b = BUF_INIT;

    if (mc->pflags & no) {
	buf_free(payload);
	return;
    }
    if (stage >= 0 && macro_packet(ms, mc, stage, cmd, &b))
	add_pkt(ms, &b, SMFIC_MACRO, 0);
    buf_free(&b);
    add_pkt(ms, payload, cmd, (mc->pflags & nr) == 0);
}

static void build_packets(MILTER_SESS *ms, MCONN *mc)
{
    BUF     b = BUF_INIT;
    char  *const *ap;

    pkts_free(ms);
    switch (ms->event) {
    case SMFIC_CONNECT:
	pkt_begin(&b, SMFIC_CONNECT);
	pkt_str(&b, ms->conn_name);
	if (ms->conn_family == 4 || ms->conn_family == 6) {
	    buf_putc(&b, ms->conn_family == 4 ? '4' : '6');
	    buf_putc(&b, (ms->conn_port >> 8) & 0xff);
	    buf_putc(&b, ms->conn_port & 0xff);
	    pkt_str(&b, ms->conn_addr);
	} else {
	    buf_putc(&b, 'U');
	}
	pkt_end(&b);
	add_event(ms, mc, MILTER_M_CONNECT, SMFIC_CONNECT, &b, SMFIP_NOCONNECT, SMFIP_NR_CONN);
	break;
    case SMFIC_HELO:
	pkt_begin(&b, SMFIC_HELO);
	pkt_str(&b, ms->argv[0]);
	pkt_end(&b);
	add_event(ms, mc, MILTER_M_HELO, SMFIC_HELO, &b, SMFIP_NOHELO, SMFIP_NR_HELO);
	break;
    case SMFIC_MAIL:
    case SMFIC_RCPT:
	pkt_begin(&b, ms->event);
	for (ap = ms->argv; *ap; ap++)
	    pkt_str(&b, *ap);
	pkt_end(&b);
	if (ms->event == SMFIC_MAIL)
	    add_event(ms, mc, MILTER_M_MAIL, SMFIC_MAIL, &b, SMFIP_NOMAIL, SMFIP_NR_MAIL);
	else
	    add_event(ms, mc, MILTER_M_RCPT, SMFIC_RCPT, &b, SMFIP_NORCPT, SMFIP_NR_RCPT);
	break;
    case SMFIC_DATA:
	pkt_begin(&b, SMFIC_DATA);
	pkt_end(&b);
	add_event(ms, mc, MILTER_M_DATA, SMFIC_DATA, &b, SMFIP_NODATA, SMFIP_NR_DATA);
	break;
    case SMFIC_BODYEOB:{
	    int     leadspc = (mc->pflags & SMFIP_HDR_LEADSPC) != 0;
	    int     i, nh = milter_hdrs_count(ms->hdrs);
	    BUF     name = BUF_INIT, value = BUF_INIT;
	    const char *body;
	    size_t  blen, off;

	    for (i = 0; i < nh; i++) {
		if (milter_hdrs_hidden(ms->hdrs, i))
		    continue;
		milter_hdrs_get(ms->hdrs, i, leadspc, &name, &value);
		pkt_begin(&b, SMFIC_HEADER);
		pkt_str(&b, name.data ? name.data : "");
		pkt_str(&b, value.data ? value.data : "");
		pkt_end(&b);
		add_event(ms, mc, MILTER_M_EOH, SMFIC_HEADER, &b, SMFIP_NOHDRS, SMFIP_NR_HDR);
	    }
	    buf_free(&name);
	    buf_free(&value);
	    pkt_begin(&b, SMFIC_EOH);
	    pkt_end(&b);
	    add_event(ms, mc, MILTER_M_EOH, SMFIC_EOH, &b, SMFIP_NOEOH, SMFIP_NR_EOH);
	    body = milter_hdrs_body(ms->hdrs, &blen);
	    for (off = 0; off < blen; off += MILTER_CHUNK) {
		size_t  n = blen - off < MILTER_CHUNK ? blen - off : MILTER_CHUNK;

		pkt_begin(&b, SMFIC_BODY);
		buf_append(&b, body + off, n);
		pkt_end(&b);
		add_event(ms, mc, MILTER_M_EOD, SMFIC_BODY, &b, SMFIP_NOBODY, SMFIP_NR_BODY);
	    }
	    pkt_begin(&b, SMFIC_BODYEOB);
	    pkt_end(&b);
	    add_event(ms, mc, MILTER_M_EOD, SMFIC_BODYEOB, &b, 0, 0);
	    break;
	}
    }
    buf_free(&b);
}

/* Send packets until one that wants a reply; 1 when waiting, 0 when all sent. */
static int send_packets(MILTER_SESS *ms, MCONN *mc)
{
    struct evbuffer *out = bufferevent_get_output(mc->bev);

    while (ms->ipkt < ms->npkt) {
	PKT    *p = &ms->pkt[ms->ipkt++];

	if (ms->skip_body && p->cmd == SMFIC_BODY)
	    continue;
	evbuffer_add(out, p->data.data, p->data.len);
	if (p->reply) {
	    arm_timer(ms, event_timeout(ms, mc));
	    return (1);
	}
    }
    return (0);
}

static void start_milter(MILTER_SESS *ms);

/* Ask the filters from ms->cur on. */
static void next_milter(MILTER_SESS *ms)
{
    for (; ms->cur < ms->n; ms->cur++) {
	MCONN  *mc = &ms->c[ms->cur];
	int     msg_event = ms->event != SMFIC_CONNECT && ms->event != SMFIC_HELO;

	if (mc->state == MC_ERROR || mc->state == MC_REJECT_CON) {
	    if (mc->def_reply && ms->event != SMFIC_CONNECT) {
		decide(ms, mc, mc->def_reply);
		if (ms->res.action != MILTER_CONTINUE) {
		    finish(ms);
		    return;
		}
	    }
	    continue;
	}
	if (mc->state == MC_ACCEPT_CON)
	    continue;
	if (mc->state == MC_ACCEPT_MSG && msg_event)
	    continue;
	if (mc->state == MC_CLOSED && ms->event != SMFIC_CONNECT)
	    continue;
	start_milter(ms);
	return;
    }
    finish(ms);
}

/* Read buffer handling */

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return (ntohl(v));
}

/* A NUL-terminated string at *p within end; NULL if there is none. */
static const char *get_str(const char **p, const char *end)
{
    const char *s = *p;
    const char *nul = memchr(s, 0, (size_t) (end - s));

    if (nul == 0)
	return (0);
    *p = nul + 1;
    return (s);
}

static void handle_optneg(MILTER_SESS *ms, MCONN *mc, const char *data, size_t len);
static int handle_reply(MILTER_SESS *ms, MCONN *mc, int cmd, const char *data, size_t len);

static void read_cb(struct bufferevent *bev, void *ctx)
{
    MCONN  *mc = ctx;
    MILTER_SESS *ms = mc->ms;
    struct evbuffer *in = bufferevent_get_input(bev);

    while (mc->bev && ms->busy && &ms->c[ms->cur] == mc) {
	unsigned char hdr[5];
	uint32_t len;
	char   *data;
	int     rc;

	if (evbuffer_get_length(in) < 5)
	    return;
	evbuffer_copyout(in, hdr, 5);
	len = get_u32(hdr);
	if (len < 1) {
	    log_warn(service(ms), "milter %s: bad packet length: %ld", mc->m->name, (long) len);
	    fail_current(ms);
	    return;
	}
	if (len > MILTER_MAX_PKT) {
	    log_warn(service(ms), "milter %s: unreasonable packet length: %ld > %ld",
		     mc->m->name, (long) len, (long) MILTER_MAX_PKT);
	    fail_current(ms);
	    return;
	}
	if (evbuffer_get_length(in) < 4 + (size_t) len)
	    return;
	evbuffer_drain(in, 5);
	data = xmalloc(len);
	evbuffer_remove(in, data, len - 1);
	data[len - 1] = 0;
	if (mc->state == MC_NEGOTIATING) {
	    if (hdr[4] != SMFIC_OPTNEG) {
		log_warn(service(ms), "milter %s: unexpected reply \"%c\" in initial handshake",
			 mc->m->name, hdr[4]);
		free(data);
		fail_current(ms);
		return;
	    }
	    handle_optneg(ms, mc, data, len - 1);
	    free(data);
	    return;
	}
	rc = handle_reply(ms, mc, hdr[4], data, len - 1);
	free(data);
	if (rc <= 0)
	    return;			/* decided or failed; or the next filter runs */
    }
}

static void event_cb(struct bufferevent *bev, short what, void *ctx)
{
    MCONN  *mc = ctx;
    MILTER_SESS *ms = mc->ms;

    if (what & BEV_EVENT_CONNECTED) {
	BUF     b = BUF_INIT;
	int     v6 = mc->m->protocol >= 6;

	/* Option negotiation: everything we can do; the filter picks. */
	mc->state = MC_NEGOTIATING;
	pkt_begin(&b, SMFIC_OPTNEG);
	pkt_u32(&b, (uint32_t) mc->m->protocol);
	pkt_u32(&b, v6 ? MILTER_ACTIONS_V6 : MILTER_ACTIONS_V2);
	pkt_u32(&b, v6 ? MILTER_PROTO_V6 : MILTER_PROTO_V2);
	pkt_end(&b);
	bufferevent_write(bev, b.data, b.len);
	buf_free(&b);
	return;
    }
    if (!ms->busy || &ms->c[ms->cur] != mc) {
	/* Not being asked: the filter went away between events. */
	log_warn(service(ms), "milter %s: connection closed by the filter between events",
		 mc->m->name);
	(void) conn_error(mc);
	return;
    }
    if (mc->state == MC_CONNECTING) {
	int     err = EVUTIL_SOCKET_ERROR();

	log_warn(service(ms), "connect to Milter service %s: %s", mc->m->name,
		 err ? strerror(err) : "Connection refused");
    } else if (mc->state == MC_NEGOTIATING) {
	log_warn(service(ms), "milter %s: read error in initial handshake", mc->m->name);
    } else {
	log_warn(service(ms), "milter %s: can't read %s reply packet header: %s",
		 mc->m->name, cmd_name(ms->event),
		 (what & BEV_EVENT_EOF) ? "Unexpected EOF" : strerror(EVUTIL_SOCKET_ERROR()));
    }
    fail_current(ms);
}

static void timer_cb(evutil_socket_t fd, short what, void *ctx)
{
    MILTER_SESS *ms = ctx;
    MCONN  *mc;

    if (!ms->busy || ms->cur >= ms->n)
	return;
    mc = &ms->c[ms->cur];
    if (mc->state == MC_CONNECTING)
	log_warn(service(ms), "connect to Milter service %s: Connection timed out", mc->m->name);
    else if (mc->state == MC_NEGOTIATING)
	log_warn(service(ms), "milter %s: read error in initial handshake", mc->m->name);
    else
	log_warn(service(ms), "milter %s: can't read %s reply packet header: Connection timed out",
		 mc->m->name, cmd_name(ms->event));
    fail_current(ms);
}

/* Send this event to filter ms->cur (connecting first when needed). */
static void start_milter(MILTER_SESS *ms)
{
    MCONN  *mc = &ms->c[ms->cur];

    if (ms->timer == 0)
	ms->timer = evtimer_new(ms->base, timer_cb, ms);
    if (mc->state == MC_CLOSED) {
	mc->bev = bufferevent_socket_new(ms->base, -1, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(mc->bev, read_cb, 0, event_cb, mc);
	bufferevent_enable(mc->bev, EV_READ | EV_WRITE);
	mc->state = MC_CONNECTING;
	arm_timer(ms, mc->m->conn_timeout);
	if (bufferevent_socket_connect(mc->bev, UTIL_UNCONST(&mc->m->sa),
				       (int) mc->m->salen) < 0) {
	    log_warn(service(ms), "connect to Milter service %s: %s", mc->m->name,
		     strerror(errno ? errno : ECONNREFUSED));
	    fail_current(ms);
	}
	return;
    }
    ms->skip_body = 0;
    ms->replbody = 0;
    buf_reset(&ms->newbody);
    /* Nothing may come before we ask: whatever did is not a reply. */
    {
	struct evbuffer *in = bufferevent_get_input(mc->bev);

	evbuffer_drain(in, evbuffer_get_length(in));
    }
    build_packets(ms, mc);
    if (send_packets(ms, mc))
	return;
    /* Nothing to wait for from this filter. */
    if (ms->event == SMFIC_CONNECT)
	mc->state = MC_READY;
    ms->cur++;
    next_milter(ms);
}

static void handle_optneg(MILTER_SESS *ms, MCONN *mc, const char *data, size_t len)
{
    uint32_t version, actions, pflags;
    int     mine = mc->m->protocol;
    uint32_t my_actions = mine >= 6 ? MILTER_ACTIONS_V6 : MILTER_ACTIONS_V2;
    uint32_t my_proto = mine >= 6 ? MILTER_PROTO_V6 : MILTER_PROTO_V2;
    const char *p, *end = data + len;

    if (ms->timer)
	evtimer_del(ms->timer);
    if (len < 12) {
	log_warn(service(ms), "milter %s: read error in initial handshake", mc->m->name);
	fail_current(ms);
	return;
    }
    version = get_u32((const unsigned char *) data);
    actions = get_u32((const unsigned char *) data + 4);
    pflags = get_u32((const unsigned char *) data + 8);
    if (version < 2 || version > 6) {
	log_warn(service(ms), "milter %s: protocol version %u conflict with MTA version %d",
		 mc->m->name, version, mine);
	fail_current(ms);
	return;
    }
    if ((actions & ~my_actions) != 0) {
	log_warn(service(ms), "milter %s: request mask 0x%x conflict with MTA request mask 0x%x",
		 mc->m->name, actions, my_actions);
	fail_current(ms);
	return;
    }
    /* Steps we do not know are treated as not asked for (as libmilter's MTA side does). */
    mc->actions = actions;
    mc->pflags = pflags & my_proto;
    /* SMFIR_SETSYMLIST data: (stage, "macro list") pairs. */
    for (p = data + 12; p + 4 < end;) {
	uint32_t stage = get_u32((const unsigned char *) p);
	const char *list;

	p += 4;
	if ((list = get_str(&p, end)) == 0)
	    break;
	if (stage < MILTER_M_COUNT && (mc->actions & SMFIF_SETSYMLIST)) {
	    free(mc->macros[stage]);
	    mc->macros[stage] = xstrdup(list);
	}
    }
    mc->state = MC_READY;
    /* Now the event that needed the connection. */
    start_milter(ms);
}

static void add_edit(MILTER_SESS *ms, int add, const char *addr, const char *args)
{
    MILTER_RCPT_EDIT *e;
    size_t  len = strlen(addr);

    ms->edits = xrealloc(ms->edits, (size_t) (ms->nedits + 1) * sizeof(*ms->edits));
    e = &ms->edits[ms->nedits++];
    e->add = add;
    /* "<a@b>" or "a@b" */
    if (len >= 2 && addr[0] == '<' && addr[len - 1] == '>')
	e->addr = xstrndup(addr + 1, len - 2);
    else
	e->addr = xstrdup(addr);
    e->args = args && *args ? xstrdup(args) : 0;
}

/* The reply text of SMFIR_REPLYCODE: '%%' -> '%', a lone '%' dropped (as Postfix). */
static void clean_percent(char *s)
{
    char   *r = s, *w = s;

    while (*r) {
	if (*r == '%') {
	    r++;
	    if (*r == '%')
		*w++ = *r++;
	    continue;
	}
	*w++ = *r++;
    }
    *w = 0;
}

/*
 * One reply packet.  Returns 1 to keep reading this filter, 0 when the
 * event moved on (next filter, or finished), -1 after a failure (handled).
 */
static int handle_reply(MILTER_SESS *ms, MCONN *mc, int cmd, const char *data, size_t len)
{
    const char *p = data, *end = data + len;
    int     eob = ms->event == SMFIC_BODYEOB;
    int     last = ms->ipkt > 0 ? ms->pkt[ms->ipkt - 1].cmd : ms->event;
    const char *s1, *s2;
    char    rbuf[1024];

    switch (cmd) {
    case SMFIR_PROGRESS:
	arm_timer(ms, event_timeout(ms, mc));
	return (1);
    case SMFIR_CONTINUE:
	break;
    case SMFIR_ACCEPT:
	if (ms->event == SMFIC_CONNECT || ms->event == SMFIC_HELO)
	    mc->state = MC_ACCEPT_CON;
	else
	    mc->state = MC_ACCEPT_MSG;
	goto next;
    case SMFIR_DISCARD:
	if (ms->event == SMFIC_CONNECT || ms->event == SMFIC_HELO) {
	    log_warn(service(ms), "milter %s: DISCARD action is not allowed for connect or helo",
		     mc->m->name);
	    goto next;
	}
	mc->state = MC_ACCEPT_MSG;
	decide(ms, mc, "D");
	goto done;
    case SMFIR_REJECT:
    case SMFIR_TEMPFAIL:
    case SMFIR_SHUTDOWN:
    case SMFIR_REPLYCODE:
	if (cmd == SMFIR_REJECT)
	    snprintf(rbuf, sizeof(rbuf), "550 5.7.1 Command rejected");
	else if (cmd == SMFIR_TEMPFAIL)
	    snprintf(rbuf, sizeof(rbuf), "451 4.7.1 Service unavailable - try again later");
	else if (cmd == SMFIR_SHUTDOWN)
	    snprintf(rbuf, sizeof(rbuf), "S");
	else {
	    if ((s1 = get_str(&p, end)) == 0 || !milter_valid_reply(s1)) {
		log_warn(service(ms), "milter %s: malformed reply: %.100s", mc->m->name, data);
		fail_current(ms);
		return (-1);
	    }
	    snprintf(rbuf, sizeof(rbuf), "%s", s1);
	    clean_percent(rbuf);
	}
	if (ms->event == SMFIC_CONNECT) {
	    /* The reply persists for the session. */
	    mc->state = MC_REJECT_CON;
	    free(mc->def_reply);
	    mc->def_reply = xstrdup(rbuf);
	}
	decide(ms, mc, rbuf);
	goto done;
    case SMFIR_QUARANTINE:
	if ((s1 = get_str(&p, end)) == 0)
	    s1 = "";
	snprintf(rbuf, sizeof(rbuf), "H%.100s", s1);
	decide(ms, mc, rbuf);
	return (1);
    case SMFIR_SKIP:
	if (last == SMFIC_BODY) {
	    ms->skip_body = 1;
	    break;
	}
	goto unexpected;
    case SMFIR_ADDHEADER:
    case SMFIR_INSHEADER:
    case SMFIR_CHGHEADER:{
	    uint32_t index = 0;
	    int     need = cmd == SMFIR_ADDHEADER ? SMFIF_ADDHDRS : SMFIF_CHGHDRS;
	    const char *space = (mc->pflags & SMFIP_HDR_LEADSPC) ? "" : " ";

	    if (!eob)
		goto unexpected;
	    if (cmd == SMFIR_INSHEADER)
		need = SMFIF_ADDHDRS;
	    if (cmd != SMFIR_ADDHEADER) {
		if (end - p < 4)
		    goto malformed;
		index = get_u32((const unsigned char *) p);
		p += 4;
	    }
	    if ((s1 = get_str(&p, end)) == 0 || (s2 = get_str(&p, end)) == 0)
		goto malformed;
	    if ((mc->actions & need) == 0)
		goto not_negotiated;
	    if (*s1 == 0) {
		log_warn(service(ms), "milter %s: null change header name", mc->m->name);
		fail_current(ms);
		return (-1);
	    }
	    if (!milter_hdr_name_ok(s1)) {
		log_warn(service(ms), "milter %s: ignoring header edit with a bad header name",
			 mc->m->name);
		return (1);
	    }
	    if (cmd == SMFIR_ADDHEADER)
		milter_hdrs_add(ms->hdrs, s1, space, s2);
	    else if (cmd == SMFIR_INSHEADER)
		milter_hdrs_insert(ms->hdrs, (long) index, s1, space, s2);
	    else
		milter_hdrs_change(ms->hdrs, index == 0 ? 1 : (long) index, s1, space, s2);
	    ms->res.content_changed = 1;
	    return (1);
	}
    case SMFIR_REPLBODY:
	if (!eob)
	    goto unexpected;
	if ((mc->actions & SMFIF_CHGBODY) == 0)
	    goto not_negotiated;
	if (!ms->replbody) {
	    ms->replbody = 1;
	    buf_reset(&ms->newbody);
	}
	buf_append(&ms->newbody, data, len);
	return (1);
    case SMFIR_CHGFROM:
	if (!eob)
	    goto unexpected;
	if ((s1 = get_str(&p, end)) == 0)
	    goto malformed;
	s2 = p < end ? get_str(&p, end) : "";
	if (s2 == 0)
	    goto malformed;
	if ((mc->actions & SMFIF_CHGFROM) == 0)
	    goto not_negotiated;
	free(ms->new_sender);
	free(ms->new_sender_args);
	{
	    size_t  l = strlen(s1);

	    ms->new_sender = (l >= 2 && s1[0] == '<' && s1[l - 1] == '>') ?
		xstrndup(s1 + 1, l - 2) : xstrdup(s1);
	}
	ms->new_sender_args = *s2 ? xstrdup(s2) : 0;
	return (1);
    case SMFIR_ADDRCPT:
    case SMFIR_ADDRCPT_PAR:
    case SMFIR_DELRCPT:
	if (!eob)
	    goto unexpected;
	if ((s1 = get_str(&p, end)) == 0)
	    goto malformed;
	s2 = cmd == SMFIR_ADDRCPT_PAR && p < end ? get_str(&p, end) : "";
	if (s2 == 0)
	    goto malformed;
	if ((mc->actions & (cmd == SMFIR_DELRCPT ? SMFIF_DELRCPT :
			    cmd == SMFIR_ADDRCPT ? SMFIF_ADDRCPT : SMFIF_ADDRCPT_PAR)) == 0)
	    goto not_negotiated;
	if (cmd != SMFIR_DELRCPT && (*s1 == 0 || strcmp(s1, "<>") == 0)) {
	    log_warn(service(ms), "milter %s: ignoring attempt to add null recipient", mc->m->name);
	    return (1);
	}
	add_edit(ms, cmd != SMFIR_DELRCPT, s1, s2);
	return (1);
    default:
	goto unexpected;
    }

    /* SMFIR_CONTINUE (or SKIP): the next packet, or the next filter. */
    if (len != 0 && cmd == SMFIR_CONTINUE)
	goto malformed;
    if (ms->timer)
	evtimer_del(ms->timer);
    if (send_packets(ms, mc))
	return (1);
    if (ms->event == SMFIC_CONNECT)
	mc->state = MC_READY;

next:
    if (ms->timer)
	evtimer_del(ms->timer);
    if (eob && ms->replbody) {
	milter_hdrs_replace_body(ms->hdrs, ms->newbody.data ? ms->newbody.data : "",
				 ms->newbody.len);
	ms->res.content_changed = 1;
    }
    ms->cur++;
    next_milter(ms);
    return (0);

done:
    if (ms->timer)
	evtimer_del(ms->timer);
    finish(ms);
    return (0);

malformed:
    log_warn(service(ms), "milter %s: malformed reply %c after event %s",
	     mc->m->name, cmd, cmd_name(last));
    fail_current(ms);
    return (-1);

not_negotiated:
    log_warn(service(ms), "milter %s: action %c was not negotiated; ignored", mc->m->name, cmd);
    return (1);

unexpected:
    log_warn(service(ms), "milter %s: unexpected filter response %c after event %s",
	     mc->m->name, cmd, cmd_name(last));
    fail_current(ms);
    return (-1);
}

/* Events */

static void start(MILTER_SESS *ms, int event, MILTER_CB cb, void *ctx)
{
    if (ms->busy)
	log_warn("smtpd", "milter: event %s while another is in progress", cmd_name(event));
    result_reset(ms);
    ms->busy = 1;
    ms->event = event;
    ms->cb = cb;
    ms->cbctx = ctx;
    ms->cur = 0;
    next_milter(ms);
}

static char **argv_copy(char *const *argv)
{
    int     n, i;
    char  **v;

    for (n = 0; argv[n]; n++)
	 /* void */ ;
    v = xcalloc((size_t) n + 1, sizeof(char *));
    for (i = 0; i < n; i++)
	v[i] = xstrdup(argv[i]);
    return (v);
}

void    milter_conn_event(MILTER_SESS *ms, const char *name, const char *addr,
			          int port, int family, MILTER_CB cb, void *ctx)
{
    free(ms->conn_name);
    free(ms->conn_addr);
    ms->conn_name = xstrdup(name);
    ms->conn_addr = xstrdup(addr);
    ms->conn_port = port;
    ms->conn_family = family;
    start(ms, SMFIC_CONNECT, cb, ctx);
}

void    milter_helo_event(MILTER_SESS *ms, const char *helo, MILTER_CB cb, void *ctx)
{
    char   *v[2] = {UTIL_UNCONST(helo), 0};

    str_list_free(ms->argv);
    ms->argv = argv_copy(v);
    start(ms, SMFIC_HELO, cb, ctx);
}

void    milter_mail_event(MILTER_SESS *ms, char *const *argv, MILTER_CB cb, void *ctx)
{
    int     i;

    str_list_free(ms->argv);
    ms->argv = argv_copy(argv);
    ms->in_msg = 1;
    /* A new message: filters that accepted the last one are asked again. */
    for (i = 0; i < ms->n; i++)
	if (ms->c[i].state == MC_ACCEPT_MSG)
	    ms->c[i].state = MC_READY;
    start(ms, SMFIC_MAIL, cb, ctx);
}

void    milter_rcpt_event(MILTER_SESS *ms, char *const *argv, MILTER_CB cb, void *ctx)
{
    str_list_free(ms->argv);
    ms->argv = argv_copy(argv);
    start(ms, SMFIC_RCPT, cb, ctx);
}

void    milter_data_event(MILTER_SESS *ms, MILTER_CB cb, void *ctx)
{
    start(ms, SMFIC_DATA, cb, ctx);
}

void    milter_message(MILTER_SESS *ms, MILTER_MSG *msg, MILTER_CB cb, void *ctx)
{
    milter_hdrs_free(ms->hdrs);
    ms->msg = msg;
    ms->hdrs = milter_hdrs_parse(msg->content->data ? msg->content->data : "",
				 msg->content->len, msg->own_received);
    ms->in_msg = 0;			/* after EOB, no ABORT is needed */
    start(ms, SMFIC_BODYEOB, cb, ctx);
}

void    milter_abort(MILTER_SESS *ms)
{
    int     i;
    static const char a[5] = {0, 0, 0, 1, SMFIC_ABORT};

    if (ms == 0 || !ms->in_msg || ms->busy)
	return;
    ms->in_msg = 0;
    for (i = 0; i < ms->n; i++) {
	MCONN  *mc = &ms->c[i];

	if (mc->bev && (mc->state == MC_READY || mc->state == MC_ACCEPT_MSG)) {
	    bufferevent_write(mc->bev, a, sizeof(a));
	    mc->state = MC_READY;
	}
    }
}
