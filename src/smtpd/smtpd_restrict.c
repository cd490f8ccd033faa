/*
 * smtpd_restrict.c - restriction lists (see smtpd_restrict.h), with
 * Postfix's reply texts:
 *   554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied
 *   554 5.7.1 <helo>: Helo command rejected: Access denied
 *   554 5.7.1 <a@b>: Sender address rejected: Access denied
 *   554 5.7.1 <a@b>: Recipient address rejected: Access denied
 *   553 5.7.1 <a@b>: Sender address rejected: not owned by user NAME
 *   553 5.7.1 <a@b>: Sender address rejected: not logged in
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>

#include "util/util.h"
#include "smtpd/smtpd_proto.h"
#include "smtpd/smtpd_restrict.h"

static const char *const known[] = {
    "permit_mynetworks", "permit_sasl_authenticated", "permit", "reject", "defer",
    "reject_unauth_destination", "defer_unauth_destination",
    "reject_sender_login_mismatch", "reject_authenticated_sender_login_mismatch",
    "reject_known_sender_login_mismatch", "reject_unauthenticated_sender_login_mismatch",
    0,
};

const char *smtpd_restrict_unknown(char *const *list)
{
    for (; list && *list; list++) {
	int     i;

	for (i = 0; known[i]; i++)
	    if (strcmp(*list, known[i]) == 0)
		break;
	if (known[i] == 0)
	    return (*list);
    }
    return (0);
}

/* Is user in the "a, b c" owner list (case-insensitive, as Postfix)? */
static int owned_by(const char *owners, const char *user)
{
    const char *cp = owners;
    size_t  ul = strlen(user);

    while (*cp) {
	const char *start;

	while (*cp && (isspace((unsigned char) *cp) || *cp == ','))
	    cp++;
	start = cp;
	while (*cp && !isspace((unsigned char) *cp) && *cp != ',')
	    cp++;
	if ((size_t) (cp - start) == ul && ul > 0 && strncasecmp(start, user, ul) == 0)
	    return (1);
    }
    return (0);
}

static void what(const SMTPD_RCTX *c, const char **obj, const char **label)
{
    switch (c->stage) {
    case SMTPD_STAGE_CLIENT:
	*obj = c->namaddr;
	*label = "Client host rejected";
	break;
    case SMTPD_STAGE_HELO:
	*obj = c->helo ? c->helo : "";
	*label = "Helo command rejected";
	break;
    case SMTPD_STAGE_SENDER:
	*obj = c->sender ? c->sender : "";
	*label = "Sender address rejected";
	break;
    default:
	*obj = c->rcpt ? c->rcpt : "";
	*label = "Recipient address rejected";
	break;
    }
}

/*
 * reject_*_sender_login_mismatch.  auth: check authenticated clients
 * (owner list must name the login); unauth: an owned address needs a
 * login.  0 pass, -1 reject.
 */
#define LC_AUTH		1	/* authenticated: the login must own the address */
#define LC_UNAUTH	2	/* unauthenticated: an owned address needs a login */
#define LC_KNOWN	4	/* only addresses with an entry are checked */

static int login_check(const SMTPD_RCTX *c, int how, char *reply, size_t len)
{
    char   *owners;
    const char *sender = c->sender;

    if (sender == 0 || *sender == 0 || c->owners == 0)
	return (0);
    owners = c->owners(c->ctx, sender);
    if (c->sasl_user && (how & LC_AUTH)) {
	if ((owners == 0 && !(how & LC_KNOWN)) || (owners && !owned_by(owners, c->sasl_user))) {
	    snprintf(reply, len, "553 5.7.1 <%s>: Sender address rejected: not owned by user %s",
		     sender, c->sasl_user);
	    free(owners);
	    return (-1);
	}
    } else if (c->sasl_user == 0 && (how & LC_UNAUTH) && owners) {
	snprintf(reply, len, "553 5.7.1 <%s>: Sender address rejected: not logged in", sender);
	free(owners);
	return (-1);
    }
    free(owners);
    return (0);
}

int     smtpd_restrict(char *const *list, const SMTPD_RCTX *c, char *reply, size_t len)
{
    const char *obj, *label;

    what(c, &obj, &label);
    for (; list && *list; list++) {
	const char *r = *list;

	if (strcmp(r, "permit_mynetworks") == 0) {
	    if (c->in_mynet)
		return (1);
	} else if (strcmp(r, "permit_sasl_authenticated") == 0) {
	    if (c->sasl_user)
		return (1);
	} else if (strcmp(r, "permit") == 0) {
	    return (1);
	} else if (strcmp(r, "reject") == 0) {
	    snprintf(reply, len, "554 5.7.1 <%s>: %s: Access denied", obj, label);
	    return (-1);
	} else if (strcmp(r, "defer") == 0) {
	    snprintf(reply, len, "450 4.7.1 <%s>: %s: Access denied", obj, label);
	    return (-1);
	} else if (strcmp(r, "reject_unauth_destination") == 0
		   || strcmp(r, "defer_unauth_destination") == 0) {
	    char    tmp[1024];
	    char   *one[2] = {UTIL_UNCONST(r), 0};
	    int     rc;

	    /* Meaningful for a recipient only, as in Postfix. */
	    if (c->stage == SMTPD_STAGE_RCPT
		&& (rc = smtpd_relay_check(one, 0, c->rcpt, c->relay_domains, tmp, sizeof(tmp))) < 0) {
		snprintf(reply, len, "%s", tmp);
		return (rc);
	    }
	} else if (strcmp(r, "reject_sender_login_mismatch") == 0) {
	    if (login_check(c, LC_AUTH | LC_UNAUTH, reply, len) < 0)
		return (-1);
	} else if (strcmp(r, "reject_known_sender_login_mismatch") == 0) {
	    if (login_check(c, LC_AUTH | LC_UNAUTH | LC_KNOWN, reply, len) < 0)
		return (-1);
	} else if (strcmp(r, "reject_authenticated_sender_login_mismatch") == 0) {
	    if (login_check(c, LC_AUTH, reply, len) < 0)
		return (-1);
	} else if (strcmp(r, "reject_unauthenticated_sender_login_mismatch") == 0) {
	    if (login_check(c, LC_UNAUTH, reply, len) < 0)
		return (-1);
	} else {
	    snprintf(reply, len, "451 4.3.5 Server configuration error");
	    return (-1);
	}
    }
    return (0);
}
