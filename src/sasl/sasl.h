/*
 * sasl - SMTP authentication.  Two halves that share no code:
 *
 *   the SMTP AUTH client (sasl_client.c), used by smtp to log in to the
 *   next hop as Postfix's smtp(8) with smtp_sasl_auth_enable;
 *
 *   the server side (a Dovecot auth-protocol client), in its own section.
 *
 * No I/O here: the caller sends and receives the SMTP lines.
 */
#ifndef SASL_H_INCLUDED
#define SASL_H_INCLUDED

#include <stddef.h>

/* ==== SMTP AUTH client (sasl_client.c) =============================== */

/*
 * Mechanisms: SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, PLAIN, LOGIN, tried in
 * that order of preference among those the server offers.  The
 * cryptography (HMAC, PBKDF2, SHA, MD5, random nonces, base64) is
 * OpenSSL's; only the mechanisms' message formats are written here.
 *
 * Security properties as Cyrus SASL defines them for each mechanism, so
 * that smtp_sasl_security_options means what it means in Postfix:
 *   PLAIN, LOGIN      noanonymous
 *   CRAM-MD5          noanonymous, noplaintext
 *   SCRAM-*           noanonymous, noplaintext, noactive, mutual_auth
 * A mechanism is usable when it has every property the options ask for.
 */
#define SASLC_SEC_NOPLAINTEXT	(1<<0)
#define SASLC_SEC_NOACTIVE	(1<<1)
#define SASLC_SEC_NODICTIONARY	(1<<2)
#define SASLC_SEC_FORWARD	(1<<3)
#define SASLC_SEC_NOANONYMOUS	(1<<4)
#define SASLC_SEC_CRED		(1<<5)
#define SASLC_SEC_MUTUAL	(1<<6)

/*
 * smtp_sasl_security_options ("noplaintext, noanonymous"; "" allows
 * all) to SASLC_SEC_* flags.  0, or -1 with err naming the bad word.
 */
int     sasl_client_secopts(const char *value, unsigned *flags, char *err, size_t errlen);

/*
 * The AUTH mechanisms of an EHLO reply ("PLAIN LOGIN CRAM-MD5") filtered
 * by smtp_sasl_mechanism_filter (a list of names, "!name" excludes; empty
 * keeps all), as Postfix's sasl_mech_filter().  Returns a malloc'ed
 * space-separated list, "" when none is left.
 */
char   *sasl_client_mech_filter(const char *filter, const char *offered);

/*
 * smtp_sasl_password_maps lookups in Postfix's order
 * (smtp_sasl_passwd_lookup): with sender_dependent and a non-empty sender,
 * the sender address (the table's address rules: the address, then
 * "@domain"); then host (the remote server's name); then dest (the next
 * hop as written, "[mail.isp.example]:587").  The lookup callback gets
 * is_addr = 1 for the sender.  The value is "user:password", split at the
 * first delim character (smtp_sasl_password_result_delimiter).  1 found
 * (*user, *pass malloc'ed: free with sasl_client_wipe()), 0 none, -1
 * lookup error (err set).
 */
typedef int (*SASLC_LOOKUP_FN) (void *ctx, const char *key, int is_addr, const char **val,
				        char *err, size_t errlen);
int     sasl_client_passwd_lookup(SASLC_LOOKUP_FN lookup, void *ctx, int sender_dependent,
				          const char *sender, const char *host, const char *dest,
				          const char *delim, char **user, char **pass,
				          char *err, size_t errlen);

/* Overwrite a secret with zeros and free it (NULL is fine). */
void    sasl_client_wipe(char *secret);

typedef struct SASL_CLIENT SASL_CLIENT;

/*
 * Pick the first usable mechanism of mechs (space-separated) and start
 * it.  *mech gets its name; *initial a base64 initial response (malloc'ed)
 * or NULL when the mechanism waits for the server's first challenge.
 * NULL with err "no mechanism available" when none is usable under
 * secflags (Cyrus SASL's words, which Postfix logs).
 */
SASL_CLIENT *sasl_client_start(const char *mechs, unsigned secflags, const char *user,
			               const char *pass, const char **mech, char **initial,
			               char *err, size_t errlen);

/*
 * One server challenge (the base64 text after "334 ") to the next
 * response (base64, malloc'ed; may be "").  0, or -1 with err (a bad
 * challenge, a server signature that does not verify).
 */
int     sasl_client_step(SASL_CLIENT *c, const char *challenge, char **resp,
			         char *err, size_t errlen);

/* Free; the password and derived keys are wiped first. */
void    sasl_client_free(SASL_CLIENT *c);

#endif
