/*
 * smtp_route - pure routing of one recipient, in Postfix's order:
 *
 *  1. transport_maps, as transport(5): the full address, the address
 *     without its extension, then the domain, then each parent as
 *     ".parent" (".example.com" matches sub.example.com), then "*".  For
 *     each key every table is searched in the order listed.  Any table
 *     type of the table layer (src/table) except socketmap; keys are
 *     case-insensitive.
 *  2. relayhost.
 *  3. the recipient domain (MX, then A/AAAA, at delivery time).
 *
 * A transport_maps value is "transport:nexthop"; an empty nexthop for smtp
 * falls through to steps 2 and 3.  Transports: smtp (and relay, its Postfix
 * twin), error:TEXT, discard[:TEXT].  No DNS here: the smtp client looks
 * the nexthop up when it delivers.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/util.h"
#include "table/table.h"
#include "smtp/smtp.h"
#include "smtp/smtp_priv.h"
#include "smtpd/smtpd_proto.h"

/* Parameter lookups: a name the config table lacks gets our default. */
const char *smtp_cf_str(const CONFIG *cf, const char *name, const char *dflt)
{
    return (cf && config_known(name) ? config_str(cf, name) : dflt);
}

long long smtp_cf_time(const CONFIG *cf, const char *name, long long dflt)
{
    return (cf && config_known(name) ? config_time(cf, name) : dflt);
}

long long smtp_cf_int(const CONFIG *cf, const char *name, long long dflt)
{
    return (cf && config_known(name) ? config_int(cf, name) : dflt);
}

/*
 * transport_maps, opened through the table layer and kept open while the
 * parameter's value stays the same (relayqd holds every table parameter
 * open as well, so the tables are shared and re-read once on change).
 */
static TABLE_LIST *tm_list;
static char *tm_value;

/* sender_dependent_relayhost_maps, opened once per value (table layer). */
static TABLE_LIST *sdrh_list;
static char *sdrh_value;

void    smtp_maps_flush(void)
{
    tm_list = table_list_close(tm_list);
    free(tm_value);
    tm_value = NULL;
    sdrh_list = table_list_close(sdrh_list);
    free(sdrh_value);
    sdrh_value = NULL;
}

static TABLE_LIST *transport_tables(const CONFIG *cf, char *err, size_t errlen)
{
    const char *value = smtp_cf_str(cf, "transport_maps", "");
    TABLE_LIST *l;

    if (tm_list && strcmp(tm_value, value) == 0)
	return (tm_list);
    if ((l = table_list_open("transport_maps", value, TABLE_FLAG_FOLD, err, errlen)) == NULL)
	return (NULL);
    smtp_maps_flush();
    tm_list = l;
    tm_value = xstrdup(value);
    return (tm_list);
}

int     smtp_route_check(const CONFIG *cf, char *err, size_t errlen)
{
    TABLE_LIST *l = transport_tables(cf, err, errlen);

    if (l == NULL)
	return (-1);
    if (table_list_has_async(l)) {
	snprintf(err, errlen, "transport_maps: socketmap tables are not supported here yet "
		 "(routing is synchronous); use them in smtp_tls_policy_maps");
	return (-1);
    }
    return (0);
}

/*
 * The transport_maps entry for rcpt, in transport(5)'s order: the address,
 * the address without its extension (recipient_delimiter), the domain,
 * its parents (".parent" keys, or "parent" keys when transport_maps is in
 * parent_domain_matches_subdomains), then "*".  Pattern tables see the
 * whole address only.  1 found, 0 not, -1 error.
 */
static int transport_lookup(const CONFIG *cf, const char *rcpt, const char *domain,
			            char *val, size_t vallen, char *err, size_t errlen)
{
    TABLE_LIST *l;
    TABLE_ADDR_OPTS o = {TABLE_ADDR_FULL | TABLE_ADDR_NOEXT, 0,
    smtp_cf_str(cf, "recipient_delimiter", ""), NULL, NULL};
    const char *v = NULL;
    int     found, dflags;

    if (!config_known("transport_maps"))
	return (0);
    if ((l = transport_tables(cf, err, errlen)) == NULL)
	return (-1);
    if (table_list_count(l) == 0)
	return (0);
    dflags = table_pdms(smtp_cf_str(cf, "parent_domain_matches_subdomains", ""),
			"transport_maps") ? TABLE_DOM_PARENT : TABLE_DOM_DOTPARENT;
    if ((found = table_find_addr(l, rcpt, &o, &v, NULL, err, errlen)) == 0 && *domain) {
	/* The domain as a partial key: patterns saw the whole address already. */
	if ((found = table_list_find(l, domain, TABLE_PARTIAL, &v, err, errlen)) == 0) {
	    for (const char *d = strchr(domain, '.'); found == 0 && d && d[1]; d = strchr(d + 1, '.'))
		found = table_list_find(l, dflags == TABLE_DOM_DOTPARENT ? d : d + 1,
					TABLE_PARTIAL, &v, err, errlen);
	}
    }
    if (found == 0)
	found = table_list_find(l, "*", TABLE_PARTIAL, &v, err, errlen);
    if (found > 0)
	snprintf(val, vallen, "%s", v);
    return (found);
}

int     smtp_nexthop_parse(const char *nexthop, char *host, size_t hostlen, int *port, int *mx)
{
    const char *cp = nexthop, *hend, *colon;
    size_t  len;

    *port = 25;
    *mx = 1;
    if (*cp == '[') {
	if ((hend = strchr(cp, ']')) == NULL)
	    return (-1);
	*mx = 0;
	cp++;
	len = hend - cp;
	colon = hend[1] == ':' ? hend + 1 : NULL;
	if (hend[1] != 0 && colon == NULL)
	    return (-1);
    } else {
	colon = strrchr(cp, ':');
	/* An unbracketed IPv6 address cannot carry a port. */
	if (colon && strchr(cp, ':') != colon)
	    colon = NULL;
	len = colon ? (size_t) (colon - cp) : strlen(cp);
    }
    if (len == 0 || len >= hostlen)
	return (-1);
    memcpy(host, cp, len);
    host[len] = 0;
    if (colon) {
	char   *end;
	long    p;

	if (strcmp(colon + 1, "smtp") == 0) {
	    p = 25;
	} else {
	    errno = 0;
	    p = strtol(colon + 1, &end, 10);
	    if (colon[1] == 0 || *end != 0 || errno || p <= 0 || p > 65535)
		return (-1);
	}
	*port = (int) p;
    }
    return (0);
}

/* The domain of rcpt (after the last @), or myorigin without one. */
static void rcpt_domain(const CONFIG *cf, const char *rcpt, char *out, size_t outlen)
{
    const char *at = strrchr(rcpt, '@');

    snprintf(out, outlen, "%s", at ? at + 1 : smtp_cf_str(cf, "myorigin", ""));
    str_lower(out);
}

/*
 * sender_dependent_relayhost_maps: the sender address, then without its
 * extension (recipient_delimiter), then "@domain" (Postfix's
 * mail_addr_find); the null sender as "<>"
 * (empty_address_relayhost_maps_lookup_key).  1 found (copied
 * into out), 0 not, -1 error.
 */
static int sender_relayhost(const CONFIG *cf, const char *sender, char *out, size_t outlen,
			            char *err, size_t errlen)
{
    const char *v = smtp_cf_str(cf, "sender_dependent_relayhost_maps", "");
    const char *val;
    TABLE_ADDR_OPTS o;
    int     st;

    if (*v == 0 || sender == NULL)
	return (0);
    if (sdrh_list == NULL || sdrh_value == NULL || strcmp(sdrh_value, v) != 0) {
	sdrh_list = table_list_close(sdrh_list);
	free(sdrh_value);
	sdrh_value = xstrdup(v);
	if ((sdrh_list = table_list_open("sender_dependent_relayhost_maps", v, TABLE_FLAG_FOLD,
					 err, errlen)) == NULL)
	    return (-1);
    }
    memset(&o, 0, sizeof(o));
    o.strategy = TABLE_ADDR_FULL | TABLE_ADDR_NOEXT | TABLE_ADDR_AT_DOMAIN;
    o.delimiter = smtp_cf_str(cf, "recipient_delimiter", "");
    if (*sender == 0)
	st = table_list_find(sdrh_list, "<>", 0, &val, err, errlen);
    else
	st = table_find_addr(sdrh_list, sender, &o, &val, NULL, err, errlen);
    if (st > 0) {
	while (*val == ' ' || *val == '\t')
	    val++;
	snprintf(out, outlen, "%s", val);
	/* a list of relays: Postfix takes them all; relayq the first */
	out[strcspn(out, " \t,")] = 0;
    }
    return (st);
}

int     smtp_route(const CONFIG *cf, const char *rcpt, SMTP_ROUTE *out, char *err, size_t errlen)
{
    return (smtp_route_from(cf, NULL, rcpt, out, err, errlen));
}

int     smtp_route_from(const CONFIG *cf, const char *sender, const char *rcpt, SMTP_ROUTE *out,
			        char *err, size_t errlen)
{
    char    sdrh[512];
    char    addr[1024], domain[512], val[1024];
    const char *relayhost;
    const char *nexthop = "";
    char    host[512];
    int     port, mx, found;

    memset(out, 0, sizeof(*out));
    snprintf(addr, sizeof(addr), "%s", rcpt);
    str_lower(addr);
    rcpt_domain(cf, addr, domain, sizeof(domain));

    if ((found = transport_lookup(cf, addr, domain, val, sizeof(val), err, errlen)) < 0)
	return (-1);
    if (found) {
	char   *colon = strchr(val, ':');
	char   *tr = val;

	if (colon) {
	    *colon = 0;
	    nexthop = colon + 1;
	}
	tr = str_trim(tr);
	if (*tr == 0 || strcmp(tr, "smtp") == 0 || strcmp(tr, "relay") == 0) {
	    out->transport = SMTP_TR_SMTP;
	} else if (strcmp(tr, "error") == 0) {
	    out->transport = SMTP_TR_ERROR;
	    snprintf(out->nexthop, sizeof(out->nexthop), "%s", nexthop);
	    snprintf(out->key, sizeof(out->key), "error:%s", nexthop);
	    return (0);
	} else if (strcmp(tr, "discard") == 0) {
	    out->transport = SMTP_TR_DISCARD;
	    snprintf(out->nexthop, sizeof(out->nexthop), "%s", nexthop);
	    snprintf(out->key, sizeof(out->key), "discard:%s", nexthop);
	    return (0);
	} else {
	    snprintf(err, errlen, "transport_maps: unsupported transport \"%s\" for %s "
		     "(relayq supports smtp, relay, error, discard)", tr, rcpt);
	    return (-1);
	}
    }
    out->transport = SMTP_TR_SMTP;
    if (*nexthop == 0) {
	switch (sender_relayhost(cf, sender, sdrh, sizeof(sdrh), err, errlen)) {
	case -1:
	    return (-1);
	case 1:
	    nexthop = sdrh;
	    break;
	}
    }
    if (*nexthop == 0) {
	relayhost = smtp_cf_str(cf, "relayhost", "");
	while (*relayhost == ' ' || *relayhost == '\t')
	    relayhost++;
	nexthop = *relayhost ? relayhost : domain;
	/*
	 * A port never comes from an address: "x@[127.0.0.1]:2525" (already
	 * in the queue, or let in some other way) would make relayq connect to
	 * any host and port, itself included.  Such a domain bounces.
	 */
	if (nexthop == domain) {
	    char    probe[600];

	    snprintf(probe, sizeof(probe), "x@%s", domain);
	    if (!smtpd_addr_valid(probe)) {
		out->transport = SMTP_TR_ERROR;
		snprintf(out->nexthop, sizeof(out->nexthop), "5.1.2 bad destination domain syntax");
		snprintf(out->key, sizeof(out->key), "error:%s", out->nexthop);
		return (0);
	    }
	}
    }
    if (*nexthop == 0) {
	snprintf(err, errlen, "no next hop for recipient %s", rcpt);
	return (-1);
    }
    if (smtp_nexthop_parse(nexthop, host, sizeof(host), &port, &mx) < 0) {
	snprintf(err, errlen, "malformed next hop \"%s\" for recipient %s", nexthop, rcpt);
	return (-1);
    }
    snprintf(out->nexthop, sizeof(out->nexthop), "%s", nexthop);
    snprintf(out->key, sizeof(out->key), "smtp:%s", nexthop);
    return (0);
}

void    smtp_reply_dsn(const char *reply, char dsn[12])
{
    const char *cp = reply;
    int     i, parts = 0, digits = 0;

    /* "NNN X.Y.Z" or "NNN-X.Y.Z": class, subject (1-3), detail (1-3). */
    if (strlen(reply) >= 4 && isdigit((unsigned char) reply[0]))
	cp = reply + 4;
    for (i = 0; cp[i] && i < 11; i++) {
	if (isdigit((unsigned char) cp[i])) {
	    if (++digits > 3)
		break;
	} else if (cp[i] == '.' && digits > 0 && parts < 2) {
	    parts++;
	    digits = 0;
	} else {
	    break;
	}
    }
    if (parts == 2 && digits > 0 && (cp[i] == 0 || cp[i] == ' ')
	&& (cp[0] == '2' || cp[0] == '4' || cp[0] == '5') && cp[1] == '.'
	&& cp[0] == reply[0]) {
	memcpy(dsn, cp, i);
	dsn[i] = 0;
	return;
    }
    snprintf(dsn, 12, "%c.0.0", (reply[0] == '2' || reply[0] == '4') ? reply[0] : '5');
}
