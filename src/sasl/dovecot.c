/*
 * dovecot.c - Dovecot authentication protocol client (see dovecot.h).
 *
 * Handshake: we send "VERSION\t1\t1" and "CPID\tpid"; the server sends
 * VERSION, MECH lines, SPID, CUID, COOKIE and DONE.  A request is
 * "AUTH\tid\tmech\tservice=..\tnologin\tlip=..\trip=..[\tsecured][\tresp=..]",
 * answered by "CONT\tid\tbase64", "OK\tid\tuser=..", or
 * "FAIL\tid\treason=..\tuser=..".  As Postfix: a server that sends SPID
 * before any MECH is the auth-master socket, the wrong one.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "util/util.h"
#include "log/log.h"
#include "sasl/dovecot.h"

#define DC_DOWN		0
#define DC_HANDSHAKE	1
#define DC_UP		2

#define DC_LINE_MAX	(64 * 1024)	/* longest line accepted from the server */
#define DC_TIMEOUT	30		/* seconds without an answer while one is due */

#define DC_MECH_PLAINTEXT	(1 << 0)
#define DC_MECH_ACTIVE		(1 << 1)
#define DC_MECH_DICTIONARY	(1 << 2)
#define DC_MECH_ANONYMOUS	(1 << 3)
#define DC_MECH_FWD_SECRECY	(1 << 4)
#define DC_MECH_MUTUAL_AUTH	(1 << 5)
#define DC_MECH_PRIVATE		(1 << 6)

#define DC_REQ_QUEUED	0		/* waiting for the handshake */
#define DC_REQ_SENT	1

struct DOVECOT_REQ {
    DOVECOT *d;
    unsigned id;
    int     state;
    char   *line;			/* the AUTH line, until sent */
    char   *mech;
    int     secmask, posmask;		/* smtpd_sasl_security_options */
    DOVECOT_CB cb;
    void   *ctx;
    DOVECOT_REQ *next;
};

typedef struct DC_MECH {
    char   *name;
    int     props;
} DC_MECH;

struct DOVECOT {
    struct event_base *base;
    char   *path;
    int     state;
    struct bufferevent *bev;
    struct event *fail_ev;		/* fails the requests from the loop */
    const char *fail_reason;
    unsigned next_id;
    int     got_mech;
    DC_MECH *mechs;			/* of the last complete handshake */
    int     nmechs;
    DC_MECH *new_mechs;			/* during a handshake */
    int     new_nmechs;
    DOVECOT_REQ *reqs;
};

static const char DC_NOCONNECT[] = "Can't connect to authentication server";
static const char DC_LOST[] = "Connection lost to authentication server";

static void dc_connect(DOVECOT *d);
static int dc_secmask(char *const *secopts);
static int dc_posmask(char *const *secopts);
static void dc_disconnect(DOVECOT *d, const char *reason);

static void dc_mechs_free(DC_MECH *m, int n)
{
    for (int i = 0; i < n; i++)
	free(m[i].name);
    free(m);
}

static void dc_req_unlink(DOVECOT_REQ *r)
{
    DOVECOT_REQ **rp;

    for (rp = &r->d->reqs; *rp; rp = &(*rp)->next)
	if (*rp == r) {
	    *rp = r->next;
	    break;
	}
}

static void dc_req_free(DOVECOT_REQ *r)
{
    free(r->mech);
    free(r->line);
    free(r);
}

/* Fail every request of the list with DOVECOT_TEMP (from the loop only). */
static void dc_fail_all(DOVECOT *d, const char *reason)
{
    DOVECOT_REQ *list = d->reqs, *r;

    d->reqs = 0;
    while ((r = list) != 0) {
	list = r->next;
	r->cb(r->ctx, DOVECOT_TEMP, reason, 0);
	dc_req_free(r);
    }
}

static void dc_fail_cb(evutil_socket_t fd, short what, void *ctx)
{
    DOVECOT *d = ctx;

    dc_fail_all(d, d->fail_reason ? d->fail_reason : DC_NOCONNECT);
}

/* Time out only while an answer is due, never an idle connection. */
static void dc_timeouts(DOVECOT *d)
{
    struct timeval tv = {DC_TIMEOUT, 0};

    if (d->bev == 0)
	return;
    if (d->state == DC_HANDSHAKE || d->reqs)
	bufferevent_set_timeouts(d->bev, &tv, 0);
    else
	bufferevent_set_timeouts(d->bev, 0, 0);
}

static int dc_req_allowed(DOVECOT *d, const DOVECOT_REQ *r)
{
    for (int i = 0; i < d->nmechs; i++)
	if (str_casecmp(d->mechs[i].name, r->mech) == 0)
	    return ((d->mechs[i].props & r->secmask) == 0
		    && (d->mechs[i].props & r->posmask) == r->posmask);
    return (0);
}

/*
 * Send the queued requests.  After a handshake (may_fail), a request for a
 * mechanism Dovecot did not announce fails here: Dovecot would drop the
 * whole connection for it.
 */
static void dc_send_queued(DOVECOT *d, int may_fail)
{
    struct evbuffer *out = bufferevent_get_output(d->bev);
    DOVECOT_REQ *r, *next;

    for (r = d->reqs; r; r = next) {
	next = r->next;
	if (r->state != DC_REQ_QUEUED)
	    continue;
	if (may_fail && !dc_req_allowed(d, r)) {
	    char   *why = xasprintf("Invalid authentication mechanism: '%s'", r->mech);

	    dc_req_unlink(r);
	    r->cb(r->ctx, DOVECOT_FAIL, why, 0);
	    free(why);
	    dc_req_free(r);
	    if (d->bev == 0)
		return;
	    continue;
	}
	evbuffer_add(out, r->line, strlen(r->line));
	/* The line may hold the initial response: do not keep it around. */
	memset(r->line, 0, strlen(r->line));
	free(r->line);
	r->line = 0;
	r->state = DC_REQ_SENT;
    }
    dc_timeouts(d);
}

static int dc_prop(const char *s)
{
    static const struct {
	const char *name;
	int     bit;
    } props[] = {
	{"plaintext", DC_MECH_PLAINTEXT}, {"active", DC_MECH_ACTIVE},
	{"dictionary", DC_MECH_DICTIONARY}, {"anonymous", DC_MECH_ANONYMOUS},
	{"forward-secrecy", DC_MECH_FWD_SECRECY}, {"mutual-auth", DC_MECH_MUTUAL_AUTH},
	{"private", DC_MECH_PRIVATE},
    };

    for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++)
	if (str_casecmp(s, props[i].name) == 0)
	    return (props[i].bit);
    return (0);
}

/* Printable, no TAB: safe in a log line and in the SMTP dialogue. */
static char *dc_printable(const char *s)
{
    char   *c = xstrdup(s);

    for (char *cp = c; *cp; cp++)
	if ((unsigned char) *cp < 0x20 || *cp == 0x7f)
	    *cp = '?';
    return (c);
}

static DOVECOT_REQ *dc_find(DOVECOT *d, const char *idstr)
{
    char   *end;
    unsigned long id = strtoul(idstr, &end, 10);

    if (*idstr == 0 || *end)
	return (0);
    for (DOVECOT_REQ *r = d->reqs; r; r = r->next)
	if (r->id == id && r->state == DC_REQ_SENT)
	    return (r);
    return (0);
}

/* One reply line (tab-separated fields, line modified). */
static void dc_reply(DOVECOT *d, char *line)
{
    char   *f[64];
    int     n = 0;
    char   *cp = line;
    DOVECOT_REQ *r;

    while (n < 64) {
	f[n++] = cp;
	if ((cp = strchr(cp, '\t')) == 0)
	    break;
	*cp++ = 0;
    }
    if (d->state == DC_HANDSHAKE) {
	if (strcmp(f[0], "VERSION") == 0) {
	    if (n < 3 || strcmp(f[1], "1") != 0) {
		log_warn("smtpd", "SASL: Protocol version mismatch (%s vs. 1)", n > 1 ? f[1] : "?");
		dc_disconnect(d, DC_NOCONNECT);
	    }
	} else if (strcmp(f[0], "MECH") == 0 && n >= 2) {
	    int     props = 0;

	    d->got_mech = 1;
	    for (int i = 2; i < n; i++)
		props |= dc_prop(f[i]);
	    if (props & DC_MECH_PRIVATE)
		return;
	    d->new_mechs = xrealloc(d->new_mechs, sizeof(DC_MECH) * (size_t) (d->new_nmechs + 1));
	    d->new_mechs[d->new_nmechs].name = dc_printable(f[1]);
	    d->new_mechs[d->new_nmechs++].props = props;
	} else if (strcmp(f[0], "SPID") == 0 && !d->got_mech) {
	    log_warn("smtpd", "SASL: Connected to wrong auth socket (auth-master instead of auth-client)");
	    dc_disconnect(d, DC_NOCONNECT);
	} else if (strcmp(f[0], "DONE") == 0) {
	    dc_mechs_free(d->mechs, d->nmechs);
	    d->mechs = d->new_mechs;
	    d->nmechs = d->new_nmechs;
	    d->new_mechs = 0;
	    d->new_nmechs = 0;
	    d->state = DC_UP;
	    dc_send_queued(d, 1);
	}
	return;
    }
    if (n < 2 || (r = dc_find(d, f[1])) == 0)
	return;					/* unknown command or request: ignored */
    if (strcmp(f[0], "CONT") == 0) {
	if (n < 3) {
	    log_warn("smtpd", "missing Dovecot server CONT reply field");
	    dc_req_unlink(r);
	    r->cb(r->ctx, DOVECOT_FAIL, "Authentication backend error", 0);
	    dc_req_free(r);
	} else {
	    char   *ch = dc_printable(f[2]);

	    r->cb(r->ctx, DOVECOT_MORE, ch, 0);	/* r stays */
	    free(ch);
	}
    } else if (strcmp(f[0], "OK") == 0 || strcmp(f[0], "FAIL") == 0) {
	int     ok = f[0][0] == 'O';
	char   *user = 0, *reason = 0;

	for (int i = 2; i < n; i++) {
	    if (strncmp(f[i], "user=", 5) == 0) {
		free(user);
		user = dc_printable(f[i] + 5);
	    } else if (strncmp(f[i], "reason=", 7) == 0 && !ok) {
		free(reason);
		reason = dc_printable(f[i] + 7);
	    }
	}
	dc_req_unlink(r);
	if (ok && user == 0) {
	    log_warn("smtpd", "missing Dovecot server OK username field");
	    r->cb(r->ctx, DOVECOT_FAIL, "Authentication backend error", 0);
	} else if (ok) {
	    r->cb(r->ctx, DOVECOT_OK, user, user);
	} else {
	    r->cb(r->ctx, DOVECOT_FAIL, reason ? reason : "", user);
	}
	free(user);
	free(reason);
	dc_req_free(r);
    }
    dc_timeouts(d);
}

static void dc_read_cb(struct bufferevent *bev, void *ctx)
{
    DOVECOT *d = ctx;
    struct evbuffer *in = bufferevent_get_input(bev);
    char   *line;
    size_t  len;

    while (d->bev == bev && (line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != 0) {
	dc_reply(d, line);
	free(line);
    }
    if (d->bev == bev && evbuffer_get_length(in) > DC_LINE_MAX) {
	log_warn("smtpd", "SASL: Protocol error: line longer than %d bytes from %s",
		 DC_LINE_MAX, d->path);
	dc_disconnect(d, d->state == DC_UP ? DC_LOST : DC_NOCONNECT);
    }
}

static void dc_event_cb(struct bufferevent *bev, short what, void *ctx)
{
    DOVECOT *d = ctx;

    if (what & BEV_EVENT_CONNECTED) {
	char    hello[64];

	snprintf(hello, sizeof(hello), "VERSION\t1\t1\nCPID\t%ld\n", (long) getpid());
	bufferevent_write(bev, hello, strlen(hello));
	return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
	if (d->state == DC_UP && d->reqs == 0) {
	    bufferevent_enable(bev, EV_READ);
	    return;
	}
	log_warn("smtpd", "SASL: timeout waiting for the Dovecot auth server %s", d->path);
    } else if (d->state == DC_HANDSHAKE) {
	log_warn("smtpd", "SASL: Connect to Dovecot auth socket '%s' failed: %s", d->path,
		 (what & BEV_EVENT_ERROR) ? evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR())
		 : "connection closed during the handshake");
    }
    dc_disconnect(d, d->state == DC_UP ? DC_LOST : DC_NOCONNECT);
}

/* Close; requests in flight fail (deferred to the loop: never re-entrant). */
static void dc_disconnect(DOVECOT *d, const char *reason)
{
    struct timeval tv = {0, 0};

    if (d->bev) {
	bufferevent_free(d->bev);
	d->bev = 0;
    }
    d->state = DC_DOWN;
    dc_mechs_free(d->new_mechs, d->new_nmechs);
    d->new_mechs = 0;
    d->new_nmechs = 0;
    if (d->reqs) {
	d->fail_reason = reason;
	evtimer_add(d->fail_ev, &tv);
    }
}

static int dc_sockaddr(const char *path, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (strncmp(path, "inet:", 5) == 0) {
	const char *hp = path + 5, *colon = strrchr(hp, ':');
	char    host[256];
	struct addrinfo hints, *res = 0;
	size_t  hl;

	if (colon == 0 || colon == hp)
	    return (-1);
	hl = (size_t) (colon - hp);
	if (*hp == '[' && colon[-1] == ']') {
	    hp++;
	    hl -= 2;
	}
	if (hl >= sizeof(host))
	    return (-1);
	memcpy(host, hp, hl);
	host[hl] = 0;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = strcmp(host, "localhost") == 0 ? 0 : AI_NUMERICHOST;
	if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || res == 0)
	    return (-1);
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return (0);
    } else {
	struct sockaddr_un *su = (struct sockaddr_un *) ss;

	if (strlen(path) >= sizeof(su->sun_path))
	    return (-1);
	su->sun_family = AF_UNIX;
	strcpy(su->sun_path, path);
	*len = sizeof(*su);
	return (0);
    }
}

static void dc_connect(DOVECOT *d)
{
    struct sockaddr_storage ss;
    socklen_t len;

    if (d->state != DC_DOWN)
	return;
    d->got_mech = 0;
    if (dc_sockaddr(d->path, &ss, &len) < 0) {
	log_warn("smtpd", "SASL: bad Dovecot auth socket address '%s'", d->path);
	dc_disconnect(d, DC_NOCONNECT);
	return;
    }
    d->bev = bufferevent_socket_new(d->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (d->bev == 0) {
	dc_disconnect(d, DC_NOCONNECT);
	return;
    }
    bufferevent_setcb(d->bev, dc_read_cb, 0, dc_event_cb, d);
    d->state = DC_HANDSHAKE;
    dc_timeouts(d);
    bufferevent_enable(d->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(d->bev, (struct sockaddr *) &ss, (int) len) < 0) {
	log_warn("smtpd", "SASL: Connect to Dovecot auth socket '%s' failed: %s",
		 d->path, strerror(errno));
	dc_disconnect(d, DC_NOCONNECT);
    }
}

DOVECOT *dovecot_create(struct event_base *base, const char *path)
{
    DOVECOT *d = xcalloc(1, sizeof(*d));

    d->base = base;
    d->path = xstrdup(path);
    d->fail_ev = evtimer_new(base, dc_fail_cb, d);
    return (d);
}

const char *dovecot_path(const DOVECOT *d)
{
    return (d->path);
}

void    dovecot_free(DOVECOT *d)
{
    DOVECOT_REQ *r;

    if (d == 0)
	return;
    while ((r = d->reqs) != 0) {
	d->reqs = r->next;
	dc_req_free(r);
    }
    if (d->bev)
	bufferevent_free(d->bev);
    event_free(d->fail_ev);
    dc_mechs_free(d->mechs, d->nmechs);
    dc_mechs_free(d->new_mechs, d->new_nmechs);
    free(d->path);
    free(d);
}

static int dc_secmask(char *const *secopts)
{
    int     mask = 0;

    for (; secopts && *secopts; secopts++) {
	if (strcmp(*secopts, "noplaintext") == 0)
	    mask |= DC_MECH_PLAINTEXT;
	else if (strcmp(*secopts, "noactive") == 0)
	    mask |= DC_MECH_ACTIVE;
	else if (strcmp(*secopts, "nodictionary") == 0)
	    mask |= DC_MECH_DICTIONARY;
	else if (strcmp(*secopts, "noanonymous") == 0)
	    mask |= DC_MECH_ANONYMOUS;
    }
    return (mask);
}

static int dc_posmask(char *const *secopts)
{
    int     mask = 0;

    for (; secopts && *secopts; secopts++) {
	if (strcmp(*secopts, "forward_secrecy") == 0)
	    mask |= DC_MECH_FWD_SECRECY;
	else if (strcmp(*secopts, "mutual_auth") == 0)
	    mask |= DC_MECH_MUTUAL_AUTH;
    }
    return (mask);
}

static int dc_allowed(const DC_MECH *m, char *const *secopts)
{
    int     pos = dc_posmask(secopts);

    return ((m->props & dc_secmask(secopts)) == 0 && (m->props & pos) == pos);
}

int     dovecot_mechs(DOVECOT *d, char *const *secopts, BUF *out)
{
    int     n = 0;

    if (d->mechs == 0 && d->nmechs == 0) {
	dc_connect(d);
	return (-1);
    }
    for (int i = 0; i < d->nmechs; i++) {
	if (!dc_allowed(&d->mechs[i], secopts))
	    continue;
	if (n++)
	    buf_putc(out, ' ');
	buf_puts(out, d->mechs[i].name);
    }
    return (0);
}

int     dovecot_mech_allowed(DOVECOT *d, const char *mech, char *const *secopts)
{
    for (int i = 0; i < d->nmechs; i++)
	if (str_casecmp(d->mechs[i].name, mech) == 0)
	    return (dc_allowed(&d->mechs[i], secopts));
    return (0);
}

int     dovecot_valid_base64(const char *s)
{
    for (; *s; s++)
	if (!isascii((unsigned char) *s)
	    || !(isalnum((unsigned char) *s) || *s == '+' || *s == '/' || *s == '='))
	    return (0);
    return (1);
}

/* No TAB or newline may reach the protocol from a client. */
static int dc_clean(const char *s)
{
    for (; *s; s++)
	if ((unsigned char) *s < 0x20 || *s == 0x7f)
	    return (0);
    return (1);
}

DOVECOT_REQ *dovecot_auth(DOVECOT *d, const char *mech, const char *resp,
			          const char *service, const char *lip, const char *rip,
			          int secured, char *const *secopts, DOVECOT_CB cb, void *ctx)
{
    DOVECOT_REQ *r = xcalloc(1, sizeof(*r)), **rp;
    BUF     b = BUF_INIT;

    r->mech = xstrdup(mech);
    r->secmask = dc_secmask(secopts);
    r->posmask = dc_posmask(secopts);
    r->d = d;
    r->id = ++d->next_id;
    r->cb = cb;
    r->ctx = ctx;
    r->state = DC_REQ_QUEUED;
    buf_printf(&b, "AUTH\t%u\t%s\tservice=%s\tnologin\tlip=%s\trip=%s%s",
	       r->id, dc_clean(mech) ? mech : "?", service, lip, rip, secured ? "\tsecured" : "");
    if (resp)
	buf_printf(&b, "\tresp=%s", dc_clean(resp) ? resp : "");
    buf_putc(&b, '\n');
    r->line = buf_steal(&b);
    for (rp = &d->reqs; *rp; rp = &(*rp)->next)
	 /* void */ ;
    *rp = r;
    if (d->state == DC_UP)
	dc_send_queued(d, 0);
    else
	dc_connect(d);
    return (r);
}

void    dovecot_cont(DOVECOT_REQ *r, const char *resp)
{
    DOVECOT *d = r->d;

    if (d->state != DC_UP || d->bev == 0) {
	struct timeval tv = {0, 0};

	d->fail_reason = DC_LOST;
	evtimer_add(d->fail_ev, &tv);
	return;
    }
    evbuffer_add_printf(bufferevent_get_output(d->bev), "CONT\t%u\t%s\n", r->id,
			dc_clean(resp) ? resp : "");
    dc_timeouts(d);
}

void    dovecot_cancel(DOVECOT_REQ *r)
{
    DOVECOT *d;

    if (r == 0)
	return;
    d = r->d;
    dc_req_unlink(r);
    dc_req_free(r);
    dc_timeouts(d);
}
