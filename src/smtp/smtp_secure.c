/*
 * smtp_secure - TLS and SMTP AUTH in the SMTP client, in the order and
 * words of Postfix 3.7's smtp_proto.c / smtp_sasl_proto.c /
 * smtp_sasl_glue.c:
 *
 *   connect -> [wrappermode: TLS] -> greeting -> EHLO -> STARTTLS as the
 *   policy wants -> TLS -> verification -> EHLO -> AUTH when the server
 *   offers it and smtp_sasl_password_maps has credentials -> MAIL FROM.
 *
 * Every failure defers what is pending at this server (and goes on to the
 * next one) with Postfix's text; nothing is ever sent in the clear when
 * the policy requires TLS.  Passwords are never logged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>

#include "util/util.h"
#include "log/log.h"
#include "smtp/smtp.h"
#include "smtp/smtp_priv.h"

/* ---------------------------------------------------------------------- */
/* Parameters                                                              */
/* ---------------------------------------------------------------------- */

static const char *keep(SMTP_PARAMS *p, const char *s)
{
    p->strs = xrealloc(p->strs, (size_t) (p->nstrs + 1) * sizeof(char *));
    return (p->strs[p->nstrs++] = xstrdup(s ? s : ""));
}

static unsigned secopts(const CONFIG *cf, const char *name, const char *dflt)
{
    unsigned f = 0;
    char    err[256];

    if (sasl_client_secopts(smtp_cf_str(cf, name, dflt), &f, err, sizeof(err)) < 0) {
	log_warn("smtp", "%s: %s; using noplaintext, noanonymous", name, err);
	f = SASLC_SEC_NOPLAINTEXT | SASLC_SEC_NOANONYMOUS;
    }
    return (f);
}

static TABLE_LIST *open_maps(const CONFIG *cf, const char *name)
{
    const char *v = smtp_cf_str(cf, name, "");
    TABLE_LIST *l;
    char    err[512];

    if (*v == 0)
	return (NULL);
    if ((l = table_list_open(name, v, TABLE_FLAG_FOLD, err, sizeof(err))) == NULL)
	log_warn("smtp", "%s: %s", name, err);
    return (l);
}

void    secure_params_load(SMTP_PARAMS *p, const CONFIG *cf)
{
    TLS_CLIENT_PARAMS *t = &p->tlsp;
    char    err[1024];
    int     needs_tls;

#define S(field, name, dflt) (t->field = keep(p, smtp_cf_str(cf, name, dflt)))
    S(level, "smtp_tls_security_level", "");
    S(CAfile, "smtp_tls_CAfile", "");
    S(CApath, "smtp_tls_CApath", "");
    S(cert_file, "smtp_tls_cert_file", "");
    S(key_file, "smtp_tls_key_file", "");
    S(protocols, "smtp_tls_protocols", ">=TLSv1");
    S(mand_protocols, "smtp_tls_mandatory_protocols", ">=TLSv1");
    S(ciphers, "smtp_tls_ciphers", "medium");
    S(mand_ciphers, "smtp_tls_mandatory_ciphers", "medium");
    S(exclude, "smtp_tls_exclude_ciphers", "");
    S(mand_exclude, "smtp_tls_mandatory_exclude_ciphers", "");
    S(high_clist, "tls_high_cipherlist", "aNULL:-aNULL:HIGH:@STRENGTH");
    S(medium_clist, "tls_medium_cipherlist", "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH");
    S(null_clist, "tls_null_cipherlist", "eNULL:!aNULL");
    S(fpt_digest, "smtp_tls_fingerprint_digest", "sha256");
    S(verify_match, "smtp_tls_verify_cert_match", "hostname");
    S(secure_match, "smtp_tls_secure_cert_match", "nexthop, dot-nexthop");
    S(fpt_match, "smtp_tls_fingerprint_cert_match", "");
    S(servername, "smtp_tls_servername", "");
    S(scache_db, "smtp_tls_session_cache_database", "");
#undef S
    t->append_default_CA = cf && config_known("tls_append_default_CA")
	? config_bool(cf, "tls_append_default_CA") : 0;
    t->loglevel = (int) smtp_cf_int(cf, "smtp_tls_loglevel", 0);
    t->scache_timeout = (int) smtp_cf_time(cf, "smtp_tls_session_cache_timeout", 3600);
    p->tls_wrapper = cf && config_known("smtp_tls_wrappermode")
	? config_bool(cf, "smtp_tls_wrappermode") : 0;
    p->tls_policy = open_maps(cf, "smtp_tls_policy_maps");
    p->dnssec = str_casecmp(smtp_cf_str(cf, "smtp_dns_support_level", ""), "dnssec") == 0;
    {
	const char *v = smtp_cf_str(cf, "smtp_tls_dane_insecure_mx_policy", "");

	/* Postfix 3.6+: dane when the global level is dane, else may. */
	p->insecure_mx_policy = *v ? tls_level_lookup(v)
	    : tls_level_lookup(t->level) == TLS_LEV_DANE ? TLS_LEV_DANE : TLS_LEV_MAY;
	if (p->insecure_mx_policy != TLS_LEV_MAY && p->insecure_mx_policy != TLS_LEV_ENCRYPT
	    && p->insecure_mx_policy != TLS_LEV_DANE) {
	    log_warn("smtp", "invalid smtp_tls_dane_insecure_mx_policy: \"%s\"; using \"may\"", v);
	    p->insecure_mx_policy = TLS_LEV_MAY;
	}
    }

    /* The engine is built when some destination may use TLS. */
    needs_tls = tls_level_lookup(t->level) != TLS_LEV_NONE || p->tls_policy || p->tls_wrapper;
    if (needs_tls && (p->tls = tls_client_create(t, err, sizeof(err))) == NULL)
	log_warn("smtp", "TLS engine unavailable: %s", err);

    p->sasl_enable = cf && config_known("smtp_sasl_auth_enable")
	? config_bool(cf, "smtp_sasl_auth_enable") : 0;
    p->sasl_sender_dep = cf && config_known("smtp_sender_dependent_authentication")
	? config_bool(cf, "smtp_sender_dependent_authentication") : 0;
    p->sasl_soft_bounce = cf && config_known("smtp_sasl_auth_soft_bounce")
	? config_bool(cf, "smtp_sasl_auth_soft_bounce") : 1;
    p->sasl_delim[0] = *smtp_cf_str(cf, "smtp_sasl_password_result_delimiter", ":");
    p->sasl_delim[1] = 0;
    p->sasl_mech_filter = UTIL_UNCONST(keep(p, smtp_cf_str(cf, "smtp_sasl_mechanism_filter", "")));
    p->rcpt_delim = UTIL_UNCONST(keep(p, smtp_cf_str(cf, "recipient_delimiter", "")));
    p->sasl_opts = secopts(cf, "smtp_sasl_security_options", "noplaintext, noanonymous");
    p->sasl_tls_opts = secopts(cf, "smtp_sasl_tls_security_options", "noplaintext, noanonymous");
    p->sasl_tlsv_opts = secopts(cf, "smtp_sasl_tls_verified_security_options",
				"noplaintext, noanonymous");
    if (p->sasl_enable) {
	if (*smtp_cf_str(cf, "smtp_sasl_password_maps", "") == 0)
	    log_warn("smtp", "smtp_sasl_auth_enable = yes, but smtp_sasl_password_maps is empty:"
		     " no server gets a password");
	p->sasl_passwd = open_maps(cf, "smtp_sasl_password_maps");
	p->sasl_passwd_broken = p->sasl_passwd == NULL
	    && *smtp_cf_str(cf, "smtp_sasl_password_maps", "") != 0;
    }
}

void    secure_params_free(SMTP_PARAMS *p)
{
    tls_client_free(p->tls);
    table_list_close(p->tls_policy);
    table_list_close(p->sasl_passwd);
    for (int i = 0; i < p->nstrs; i++)
	free(p->strs[i]);
    free(p->strs);
}

/* ---------------------------------------------------------------------- */
/* TLS                                                                     */
/* ---------------------------------------------------------------------- */

static int policy_lookup(void *ctx, const char *key, const char **val, char *err, size_t errlen)
{
    return (table_list_find((TABLE_LIST *) ctx, key, 0, val, err, errlen));
}

/*
 * A socketmap (postfix-mta-sts-resolver) in smtp_tls_policy_maps: the
 * keys Postfix would try are looked up on the event loop, in order, up to
 * the first that is found or fails; secure_policy() then reads those
 * answers.  An answer lasts for the delivery's next hop.
 */
static int policy_cached(void *ctx, const char *key, const char **val, char *err, size_t errlen)
{
    SMTP_DELIV *d = ctx;

    for (int i = 0; d->pol_keys && d->pol_keys[i] && i <= d->pol_i; i++) {
	if (strcmp(d->pol_keys[i], key) != 0)
	    continue;
	if (i < d->pol_i)
	    return (TABLE_NOTFOUND);
	if (d->pol_st == TABLE_FOUND)
	    *val = d->pol_val;
	else if (d->pol_st == TABLE_ERROR)
	    snprintf(err, errlen, "%s", d->pol_err);
	return (d->pol_st);
    }
    return (TABLE_NOTFOUND);
}

/* Forget the TLSA answer kept for the server in use. */
static void dane_forget(SMTP_DELIV *d)
{
    for (int i = 0; i < d->dane_n; i++)
	free(d->dane_tlsa[i].data);
    free(d->dane_tlsa);
    free(d->dane_rdlen);
    free(d->dane_name);
    d->dane_tlsa = NULL;
    d->dane_rdlen = NULL;
    d->dane_name = NULL;
    d->dane_n = 0;
    d->dane_ready = 0;
}

/* The TLSA records of the server in use were looked up: try the connection again. */
static void dane_answer(void *ctx, int status, int secure, const DNS_TLSA *t, int n)
{
    SMTP_DELIV *d = ctx;

    d->dns_busy = 0;
    d->dane_ready = 1;
    d->dane_secure = secure;
    d->dane_st = status == DNS_OK ? TLS_TLSA_FOUND : status == DNS_NOTFOUND ? TLS_TLSA_NOTFOUND
	: TLS_TLSA_ERROR;
    if (status == DNS_TEMPFAIL)
	snprintf(d->dane_why, sizeof(d->dane_why), "Host or domain name not found. Name service error"
		 " for name=%s type=TLSA: Host not found, try again", d->dane_name);
    if (status == DNS_OK && n > 0) {
	d->dane_tlsa = xcalloc((size_t) n, sizeof(*d->dane_tlsa));
	d->dane_rdlen = xcalloc((size_t) n, sizeof(*d->dane_rdlen));
	for (int i = 0; i < n; i++) {
	    d->dane_tlsa[i].usage = t[i].usage;
	    d->dane_tlsa[i].selector = t[i].selector;
	    d->dane_tlsa[i].mtype = t[i].mtype;
	    d->dane_tlsa[i].len = t[i].data ? t[i].dlen : 0;
	    d->dane_tlsa[i].data = xmalloc(d->dane_tlsa[i].len + 1);
	    if (t[i].data)
		memcpy(d->dane_tlsa[i].data, t[i].data, t[i].dlen);
	    d->dane_rdlen[i] = t[i].rdlen;
	}
	d->dane_n = n;
    }
    sess_connect(d);
}

/* The server's own CNAME record was looked up: try the connection again. */
static void dane_cname_answer(void *ctx, int status, int secure)
{
    SMTP_DELIV *d = ctx;

    d->dns_busy = 0;
    if (status == DNS_OK) {
	d->dane_cn_st = secure ? TLS_CNAME_SECURE : TLS_CNAME_INSECURE;
    } else {
	d->dane_cn_st = TLS_CNAME_ERROR;
	if (status == DNS_NOTFOUND)
	    snprintf(d->dane_cn_why, sizeof(d->dane_cn_why), "no longer a CNAME");
	else
	    snprintf(d->dane_cn_why, sizeof(d->dane_cn_why), "Host or domain name not found. "
		     "Name service error for name=%s type=CNAME: Host not found, try again",
		     d->dane_cn_host);
    }
    sess_connect(d);
}

/*
 * dane/dane-only: Postfix's dane_init() over what resolution said about
 * the server, and its TLSA records, looked up on the loop (the answer is
 * kept for this server's _PORT._tcp.HOST while the delivery lasts).
 * 0 done (the policy is final), 1 looking up.
 *
 * RFC 7672 section 2.2.2, as Postfix's tls_dane_resolve(): when the
 * server's name led through CNAMEs to a secure address, the TLSA records
 * are first looked up at the end of that chain, and the base domain is
 * that name; only when there are no (secure) records there, at the
 * server's own name.  A failed lookup at the CNAME's target stays a
 * failure.  When the chain led to an insecure address, the server's own
 * name counts only when its CNAME record is signed (qname_secure()).
 */
static int secure_dane(SMTP_DELIV *d)
{
    const SMTP_ADDR *a = &d->addrs[d->cur];
    TLS_DANE_DNS in;
    char   *name, domain[256];
    const char *base = a->host;
    int     port, mx;

    memset(&in, 0, sizeof(in));
    if (smtp_nexthop_parse(a->dest, domain, sizeof(domain), &port, &mx) < 0)
	domain[0] = 0;
    in.nexthop = domain;
    in.dnssec = d->p->dnssec;
    in.insecure_mx_policy = d->p->insecure_mx_policy;
    in.mx = a->mx_secure;
    in.addr_secure = a->secure;
    in.host = a->host;
    in.port = a->port;
    in.tlsa_status = TLS_TLSA_UNKNOWN;
    name = xasprintf("_%d._tcp.%s", a->port, a->host);
    if (a->secure && a->cname[0]) {
	char   *target = xasprintf("_%d._tcp.%s", a->port, a->cname);

	if (d->dane_skip && str_casecmp(d->dane_skip, target) == 0) {
	    free(target);			/* nothing there: the host's own name */
	} else {
	    free(name);
	    name = target;
	    base = a->cname;
	}
    }
    in.tlsa_base = base;
    if (!a->secure && a->cname[0]) {
	in.cname_status = TLS_CNAME_UNKNOWN;
	if (d->dane_cn_host && str_casecmp(d->dane_cn_host, a->host) == 0) {
	    in.cname_status = d->dane_cn_st;
	    in.cname_why = d->dane_cn_why;
	}
    }
    if (d->dane_name && d->dane_ready && str_casecmp(d->dane_name, name) == 0) {
	if (base != a->host && (d->dane_st == TLS_TLSA_NOTFOUND
				|| (d->dane_st == TLS_TLSA_FOUND && !d->dane_secure))) {
	    free(d->dane_skip);
	    d->dane_skip = name;
	    return (secure_dane(d));
	}
	in.tlsa_status = d->dane_st;
	in.tlsa_secure = d->dane_secure;
	in.tlsa_why = d->dane_why;
	in.tlsa = d->dane_tlsa;
	in.tlsa_rdlen = d->dane_rdlen;
	in.ntlsa = d->dane_n;
    }
    switch (tls_policy_dane(&d->p->tlsp, a->dest, &in, &d->tls_pol)) {
    case 0:
	free(name);
	return (0);
    case 2:
	/* Is the host's own CNAME record signed? */
	free(name);
	free(d->dane_cn_host);
	d->dane_cn_host = xstrdup(a->host);
	if (d->s->dns == NULL) {
	    d->dane_cn_st = TLS_CNAME_ERROR;
	    snprintf(d->dane_cn_why, sizeof(d->dane_cn_why), "no DNS resolver");
	    return (secure_dane(d));
	}
	d->dane_cn_st = TLS_CNAME_UNKNOWN;
	d->dns_busy = 1;
	dns_cname(d->s->dns, a->host, dane_cname_answer, d);
	return (1);
    }
    dane_forget(d);
    d->dane_name = name;
    if (d->s->dns == NULL) {
	d->dane_ready = 1;
	d->dane_st = TLS_TLSA_ERROR;
	snprintf(d->dane_why, sizeof(d->dane_why), "no DNS resolver");
	return (secure_dane(d));
    }
    d->dns_busy = 1;
    dns_tlsa(d->s->dns, name, dane_answer, d);
    return (1);
}

void    secure_policy_forget(SMTP_DELIV *d)
{
    if (d->pol_req)
	table_cancel(d->pol_req);
    d->pol_req = NULL;
    if (d->pol_keys)
	str_list_free(d->pol_keys);
    d->pol_keys = NULL;
    free(d->pol_dest);
    d->pol_dest = NULL;
    free(d->pol_val);
    d->pol_val = NULL;
    d->pol_ready = 0;
    dane_forget(d);
    free(d->dane_skip);
    d->dane_skip = NULL;
    free(d->dane_cn_host);
    d->dane_cn_host = NULL;
}

static void policy_next(SMTP_DELIV *d);

static void policy_answer(int st, const char *val, const char *err, void *arg)
{
    SMTP_DELIV *d = arg;

    d->pol_req = NULL;
    if (st == TABLE_NOTFOUND && d->pol_keys[d->pol_i + 1]) {
	d->pol_i++;
	policy_next(d);
	return;
    }
    d->pol_st = st;
    if (st == TABLE_FOUND)
	d->pol_val = xstrdup(val ? val : "");
    else if (st == TABLE_ERROR)
	snprintf(d->pol_err, sizeof(d->pol_err), "%s", err ? err : "");
    d->pol_ready = 1;
    if (!d->pol_starting)
	sess_connect(d);
}

static void policy_next(SMTP_DELIV *d)
{
    d->pol_req = table_list_find_async(d->p->tls_policy, d->pol_keys[d->pol_i], 0,
				       policy_answer, d);
}

int     secure_policy_fetch(SMTP_DELIV *d)
{
    const SMTP_ADDR *a = &d->addrs[d->cur];

    if (d->p->tls_policy == NULL || !table_list_has_async(d->p->tls_policy))
	return (1);
    if (d->pol_dest && strcmp(d->pol_dest, a->dest) == 0) {
	if (d->pol_ready)
	    return (1);
	if (d->pol_req)
	    return (0);
    }
    secure_policy_forget(d);
    d->pol_dest = xstrdup(a->dest);
    d->pol_keys = tls_policy_keys(a->dest);
    d->pol_i = 0;
    d->pol_st = TABLE_NOTFOUND;
    d->pol_err[0] = 0;
    d->pol_starting = 1;
    policy_next(d);
    d->pol_starting = 0;
    return (d->pol_ready);
}

/* The TLS policy for the address in use; a bad one fails the address. */
int     secure_policy(SMTP_DELIV *d)
{
    const SMTP_ADDR *a = &d->addrs[d->cur];
    TABLE_LIST *l = d->p->tls_policy;

    tls_policy_free(&d->tls_pol);
    if (l && d->pol_ready && d->pol_dest && strcmp(d->pol_dest, a->dest) == 0)
	tls_policy_resolve(&d->p->tlsp, policy_cached, d, table_list_param(l), a->dest,
			   &d->tls_pol);
    else
	tls_policy_resolve(&d->p->tlsp, l ? policy_lookup : NULL, l,
			   l ? table_list_param(l) : "smtp_tls_policy_maps", a->dest,
			   &d->tls_pol);
    if (d->tls_pol.dane_pending && secure_dane(d) != 0)
	return (1);
    if (d->tls_pol.level == TLS_LEV_INVALID) {
	sess_fail_soft(d, d->tls_pol.dsn, d->tls_pol.why, NULL);
	return (-1);
    }
    if (d->p->tls_wrapper && d->tls_pol.level < TLS_LEV_ENCRYPT) {
	log_warn("smtp", "smtp_tls_wrappermode requires \"smtp_tls_security_level = encrypt\" (or stronger)");
	sess_fail_soft(d, "4.7.5", "client TLS configuration problem", NULL);
	return (-1);
    }
    if (d->p->tls_wrapper && d->p->tls == NULL) {
	sess_fail_soft(d, "4.7.5", "TLS is required, but our TLS engine is unavailable", NULL);
	return (-1);
    }
    return (0);
}

/* Wrap the connection in TLS: after STARTTLS, or at once (wrappermode). */
void    secure_tls_start(SMTP_DELIV *d, int wrapped)
{
    const SMTP_ADDR *a = &d->addrs[d->cur];
    struct bufferevent *tb;
    char    nexthop[256], err[256];
    int     port, mx;
    SSL    *ssl;

    if (smtp_nexthop_parse(a->dest, nexthop, sizeof(nexthop), &port, &mx) < 0)
	snprintf(nexthop, sizeof(nexthop), "%s", a->host);
    d->tls_wrapped = wrapped;
    ssl = d->p->tls ? tls_client_ssl(d->p->tls, &d->tls_pol, nexthop, a->host, a->addr, a->port,
				     err, sizeof(err)) : NULL;
    if (ssl == NULL) {
	sess_fail_soft(d, "4.7.5", "Cannot start TLS: handshake failure", NULL);
	return;
    }
    tb = bufferevent_openssl_filter_new(d->s->base, d->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
					BEV_OPT_CLOSE_ON_FREE);
    if (tb == NULL) {
	SSL_free(ssl);
	sess_fail_soft(d, "4.7.5", "Cannot start TLS: handshake failure", NULL);
	return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(tb, 1);
    d->bev = tb;
    bufferevent_setcb(d->bev, sess_readcb, sess_writecb, sess_eventcb, d);
    bufferevent_enable(d->bev, EV_READ | EV_WRITE);
    sess_arm(d, ST_TLS, d->p->starttls_tmo, "performing the TLS handshake");
}

/* The handshake completed: verify as the policy says, then go on. */
void    secure_tls_done(SMTP_DELIV *d)
{
    SSL    *ssl = bufferevent_openssl_get_ssl(d->bev);
    TLS_PEER peer;

    if (ssl == NULL || !tls_client_post(d->p->tls, ssl, &d->tls_pol, &peer)) {
	sess_fail_soft(d, "4.7.5", "Server certificate not verified", NULL);
	return;
    }
    d->tls_on = 1;
    d->tls_matched = peer.matched;
    if (d->tls_wrapped) {
	sess_arm(d, ST_GREETING, d->p->helo_tmo, "receiving the initial server greeting");
	return;
    }
    send_ehlo(d);
}

/* STARTTLS was answered. */
void    secure_starttls_reply(SMTP_DELIV *d, int code, const char *reply)
{
    char    dsn[12];
    char   *text;

    if (code == 220) {
	secure_tls_start(d, 0);
	return;
    }
    if (!TLS_REQUIRED(d->tls_pol.level)) {
	/* may: go on in plaintext, as Postfix. */
	secure_after_ehlo(d);
	return;
    }
    smtp_reply_dsn(reply, dsn);
    text = xasprintf("TLS is required, but host %s refused to start TLS: %s", d->namaddr, reply);
    if (code / 100 == 5)
	sess_fail_hard(d, dsn, text, reply);
    else
	sess_fail_soft(d, dsn, text, reply);
    free(text);
}

/* ---------------------------------------------------------------------- */
/* SMTP AUTH                                                               */
/* ---------------------------------------------------------------------- */

/* One EHLO line: "AUTH PLAIN LOGIN" or the old "AUTH=PLAIN LOGIN". */
void    secure_ehlo_auth(SMTP_DELIV *d, const char *kw)
{
    char   *mechs;

    if (!d->p->sasl_enable || str_ncasecmp(kw, "AUTH", 4) != 0
	|| (kw[4] != 0 && kw[4] != ' ' && kw[4] != '='))
	return;
    mechs = sasl_client_mech_filter(d->p->sasl_mech_filter, kw[4] ? kw + 5 : "");
    if (d->auth_mechs == NULL) {
	if (*mechs == 0)
	    log_warn("smtp", kw[4] && kw[5] ? "%s offered no supported AUTH mechanisms: '%s'"
		     : "%s offered null AUTH mechanism list%s", d->relay, kw[4] ? kw + 5 : "");
	d->auth_mechs = mechs;
    } else if (*mechs && strlen(d->auth_mechs) < 2048) {
	/* Several lists: concatenate them, as Postfix. */
	char   *both = xasprintf("%s%s%s", d->auth_mechs, *d->auth_mechs ? " " : "", mechs);

	free(d->auth_mechs);
	free(mechs);
	d->auth_mechs = both;
    } else
	free(mechs);
    d->f_auth = 1;
}

static int passwd_lookup(void *ctx, const char *key, int is_addr, const char **val,
			         char *err, size_t errlen)
{
    SMTP_PARAMS *p = ctx;

    if (is_addr) {
	TABLE_ADDR_OPTS o;

	memset(&o, 0, sizeof(o));
	o.strategy = TABLE_ADDR_FULL | TABLE_ADDR_NOEXT | TABLE_ADDR_AT_DOMAIN;
	o.delimiter = p->rcpt_delim;
	return (table_find_addr(p->sasl_passwd, key, &o, val, NULL, err, errlen));
    }
    return (table_list_find(p->sasl_passwd, key, 0, val, err, errlen));
}

static void auth_fail(SMTP_DELIV *d, const char *dsn, const char *fmt, const char *arg)
{
    /* fmt is one of this file's fixed texts with two %s */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    char   *text = xasprintf(fmt, d->namaddr, arg);

#pragma GCC diagnostic pop

    sess_fail_soft(d, dsn, text, NULL);
    free(text);
}

/* EHLO is done and TLS is settled: STARTTLS first, then AUTH, then mail. */
void    secure_after_ehlo(SMTP_DELIV *d)
{
    const SMTP_ADDR *a = &d->addrs[d->cur];
    char   *user = NULL, *pass = NULL, *initial = NULL;
    const char *mech;
    char    err[512];
    unsigned opts;
    int     st;

    if (!d->tls_on && d->stage == ST_EHLO) {
	if (TLS_REQUIRED(d->tls_pol.level)) {
	    char   *text;

	    if (!d->f_starttls) {
		text = xasprintf("TLS is required, but was not offered by host %s", d->namaddr);
		sess_fail_soft(d, "4.7.4", text, NULL);
		free(text);
		return;
	    }
	    if (d->p->tls == NULL) {
		sess_fail_soft(d, "4.7.5", "TLS is required, but our TLS engine is unavailable", NULL);
		return;
	    }
	}
	if (d->f_starttls && d->tls_pol.level >= TLS_LEV_MAY && d->p->tls) {
	    sess_send(d, "STARTTLS");
	    sess_arm(d, ST_STARTTLS, d->p->helo_tmo, "sending STARTTLS");
	    return;
	}
    }
    if (!d->p->sasl_enable || !d->f_auth) {
	setup_done(d);
	return;
    }

    if (d->p->sasl_passwd_broken) {
	sess_fail_soft(d, "4.3.0", "smtp_sasl_password_maps lookup error", NULL);
	return;
    }
    /* Skip AUTH without credentials for this server: strangers talk. */
    if (d->p->sasl_passwd == NULL) {
	setup_done(d);
	return;
    }
    st = sasl_client_passwd_lookup(passwd_lookup, d->p, d->p->sasl_sender_dep,
				   d->msg->sender, a->host, a->dest, d->p->sasl_delim,
				   &user, &pass, err, sizeof(err));
    if (st < 0) {
	log_warn("smtp", "%s: %s lookup error: %s", d->msg->qid,
		 table_list_param(d->p->sasl_passwd), err);
	sess_fail_soft(d, "4.3.0", "smtp_sasl_password_maps lookup error", NULL);
	return;
    }
    if (st == 0) {
	setup_done(d);
	return;
    }
    if (d->auth_mechs == NULL || *d->auth_mechs == 0) {
	sasl_client_wipe(user);
	sasl_client_wipe(pass);
	auth_fail(d, "4.7.0", "SASL authentication failed: server %s offered no compatible "
		  "authentication mechanisms for this type of connection security%s", "");
	return;
    }
    opts = !d->tls_on ? d->p->sasl_opts : d->tls_matched ? d->p->sasl_tlsv_opts : d->p->sasl_tls_opts;
    d->sasl = sasl_client_start(d->auth_mechs, opts, user, pass, &mech, &initial, err, sizeof(err));
    sasl_client_wipe(user);
    sasl_client_wipe(pass);
    if (d->sasl == NULL) {
	auth_fail(d, "4.7.0", "SASL authentication failed; cannot authenticate to server %s: %s", err);
	return;
    }
    d->sasl_steps = 0;
    /* RFC 4954: the initial response only when the command fits 512 octets. */
    if (initial && *initial && strlen(mech) + strlen(initial) + 8 <= 512) {
	sess_send(d, "AUTH %s %s", mech, initial);
	sasl_client_wipe(initial);
    } else {
	sess_send(d, "AUTH %s", mech);
	d->sasl_pending = initial;
    }
    sess_arm(d, ST_AUTH, d->p->helo_tmo, "performing the SASL authentication");
}

void    secure_auth_reply(SMTP_DELIV *d, int code, const char *reply)
{
    char    dsn[12], err[256];
    char   *resp = NULL, *text;

    if (code == 334) {
	const char *ch = reply + (strlen(reply) > 4 ? 4 : strlen(reply));

	if (++d->sasl_steps > 100) {
	    auth_fail(d, "4.3.0", "SASL authentication failed; authentication protocol loop with server %s%s", "");
	    return;
	}
	if (d->sasl_pending) {
	    /* A deferred initial response: the challenge must be empty. */
	    if (*ch) {
		auth_fail(d, "4.7.0", "SASL authentication failed; non-empty initial challenge from server %s%s", "");
		return;
	    }
	    sess_send(d, "%s", d->sasl_pending);
	    sasl_client_wipe(d->sasl_pending);
	    d->sasl_pending = NULL;
	} else if (sasl_client_step(d->sasl, ch, &resp, err, sizeof(err)) < 0) {
	    sess_send(d, "*");			/* cancel the exchange (RFC 4954) */
	    auth_fail(d, "4.7.0", "SASL authentication failed; cannot authenticate to server %s: %s", err);
	    return;
	} else {
	    sess_send(d, "%s", resp);
	    sasl_client_wipe(resp);
	}
	sess_arm(d, ST_AUTH, d->p->helo_tmo, "performing the SASL authentication");
	return;
    }
    sasl_client_free(d->sasl);
    d->sasl = NULL;
    sasl_client_wipe(d->sasl_pending);
    d->sasl_pending = NULL;
    if (code / 100 == 2) {
	d->sasl_done = 1;
	setup_done(d);
	return;
    }
    smtp_reply_dsn(reply, dsn);
    if (d->p->sasl_soft_bounce && dsn[0] == '5')
	dsn[0] = '4';
    text = xasprintf("SASL authentication failed; server %s said: %s", d->namaddr, reply);
    if (dsn[0] == '5')
	sess_fail_hard(d, dsn, text, reply);
    else
	sess_fail_soft(d, dsn, text, reply);
    free(text);
}

/* A session ends: forget its TLS and AUTH state. */
void    secure_reset(SMTP_DELIV *d)
{
    sasl_client_free(d->sasl);
    d->sasl = NULL;
    sasl_client_wipe(d->sasl_pending);
    d->sasl_pending = NULL;
    free(d->auth_mechs);
    d->auth_mechs = NULL;
    d->f_auth = 0;
    d->tls_wrapped = 0;
    d->tls_matched = 0;
    d->sasl_done = 0;
}

/* ---------------------------------------------------------------------- */
/* relayq check                                                            */
/* ---------------------------------------------------------------------- */

/* A file-based password table others may read: name it. */
static void check_table_mode(FILE *fp, const char *spec)
{
    static const char *const suffix[] = {"", ".db", ".lmdb", ".cdb", NULL};
    const char *colon = strchr(spec, ':');
    struct stat st;

    if (colon == NULL || colon[1] != '/')
	return;
    for (int i = 0; suffix[i]; i++) {
	char   *path = xasprintf("%s%s", colon + 1, suffix[i]);

	if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & (S_IROTH | S_IWOTH)))
	    fprintf(fp, "relayq: warning: smtp_sasl_password_maps: %s has mode %04o: other users can"
		    " read the passwords (chmod 600, owned by root: relayqd reads it at start)\n",
		    path, (unsigned) (st.st_mode & 07777));
	free(path);
    }
}

int     smtp_check(const CONFIG *cf, FILE *fp)
{
    SMTP_PARAMS p;
    char    err[1024];
    int     errors = 0, level;
    char  **maps;

    memset(&p, 0, sizeof(p));
    secure_params_load(&p, cf);
    level = tls_level_lookup(p.tlsp.level);
    if ((level != TLS_LEV_NONE || p.tls_policy || p.tls_wrapper) && p.tls == NULL) {
	TLS_CLIENT *tc = tls_client_create(&p.tlsp, err, sizeof(err));

	if (tc == NULL) {
	    fprintf(fp, "relayq: error: SMTP client TLS: %s\n", err);
	    errors++;
	}
	tls_client_free(tc);
    }
    if (TLS_DANE_BASED(level) && !p.dnssec)
	fprintf(fp, "relayq: warning: smtp_tls_security_level = %s, but smtp_dns_support_level is not"
		" dnssec: DANE cannot apply (\"dane\" delivers as \"may\", \"dane-only\" defers);"
		" set smtp_dns_support_level = dnssec with a local validating resolver in dns_servers\n",
		p.tlsp.level);
    if (TLS_MUST_MATCH(level) && level != TLS_LEV_FPRINT && !TLS_DANE_BASED(level)
	&& !*p.tlsp.CAfile && !*p.tlsp.CApath
	&& !p.tlsp.append_default_CA)
	fprintf(fp, "relayq: warning: smtp_tls_security_level = %s, but neither smtp_tls_CAfile nor"
		" smtp_tls_CApath is set and tls_append_default_CA = no: no server can be verified"
		" (smtp_tls_CApath = /etc/ssl/certs trusts the system's CAs)\n", p.tlsp.level);
    if (p.tls_wrapper && level < TLS_LEV_ENCRYPT && p.tls_policy == NULL)
	fprintf(fp, "relayq: warning: smtp_tls_wrappermode requires \"smtp_tls_security_level ="
		" encrypt\" (or stronger): deliveries defer\n");
    if (p.sasl_enable) {
	maps = str_split_list(smtp_cf_str(cf, "smtp_sasl_password_maps", ""), NULL);
	for (int i = 0; maps[i]; i++)
	    check_table_mode(fp, maps[i]);
	str_list_free(maps);
	if (p.sasl_passwd_broken) {
	    fprintf(fp, "relayq: error: smtp_sasl_password_maps cannot be opened (see the warning above)\n");
	    errors++;
	}
	if (!TLS_REQUIRED(level) && p.tls_policy == NULL)
	    fprintf(fp, "relayq: warning: smtp_sasl_auth_enable = yes with smtp_tls_security_level = %s:"
		    " a password can go to a server without TLS (use encrypt or stronger, or"
		    " smtp_tls_policy_maps)\n", *p.tlsp.level ? p.tlsp.level : "none");
	if (!p.sasl_passwd_broken && p.sasl_passwd == NULL)
	    fprintf(fp, "relayq: warning: smtp_sasl_auth_enable = yes, but smtp_sasl_password_maps"
		    " is empty\n");
    }
    secure_params_free(&p);
    return (errors);
}
