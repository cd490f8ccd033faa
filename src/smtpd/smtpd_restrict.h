/*
 * smtpd_restrict - smtpd_client/helo/sender/relay/recipient_restrictions
 * evaluation with SMTP AUTH in the picture: permit_mynetworks,
 * permit_sasl_authenticated, reject, permit, defer, reject/defer_unauth_
 * destination and the reject_*sender_login_mismatch checks.  Pure: the
 * caller passes what the session knows and a lookup of the owners of a
 * sender address (smtpd_sender_login_maps).
 */
#ifndef SMTPD_RESTRICT_H_INCLUDED
#define SMTPD_RESTRICT_H_INCLUDED

#include <stddef.h>

#define SMTPD_STAGE_CLIENT	0
#define SMTPD_STAGE_HELO	1
#define SMTPD_STAGE_SENDER	2
#define SMTPD_STAGE_RCPT	3	/* relay and recipient restrictions */

typedef struct SMTPD_RCTX {
    int     stage;
    int     in_mynet;
    const char *sasl_user;		/* NULL: not authenticated */
    const char *namaddr;		/* "name[addr]" */
    const char *helo;			/* may be NULL */
    const char *sender;			/* MAIL FROM ("" for <>) */
    const char *rcpt;			/* RCPT TO */
    char  *const *relay_domains;
    /*
     * The owners of a sender address from smtpd_sender_login_maps:
     * allocated "user1, user2" or NULL when no entry (or no maps).
     */
    char   *(*owners) (void *ctx, const char *sender);
    void   *ctx;
} SMTPD_RCTX;

/*
 * Evaluate one list.  1: a permit action stopped the list; 0: the end was
 * reached; -1: rejected, with the complete reply in reply (e.g. "553 5.7.1
 * <a@b>: Sender address rejected: not owned by user bob"), or
 * SMTPD_RELAY_DENIED (smtpd_proto.h, also < 0) when the rejection is
 * reject/defer_unauth_destination's "Relay access denied".  An unknown
 * restriction name gives "451 4.3.5 Server configuration error".
 */
int     smtpd_restrict(char *const *list, const SMTPD_RCTX *c, char *reply, size_t replylen);

/* The first name in list that smtpd_restrict does not know, or NULL. */
const char *smtpd_restrict_unknown(char *const *list);

#endif
