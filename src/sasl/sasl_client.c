/*
 * sasl_client - the SMTP AUTH client: mechanism choice under Postfix's
 * smtp_sasl_security_options, the password table lookup order, and the
 * PLAIN, LOGIN, CRAM-MD5 and SCRAM-SHA-1/-256 exchanges.
 *
 * Why not Cyrus SASL (which Postfix uses): its mechanisms are run-time
 * plugins from separate packages (libsasl2-modules), so what a relay can
 * do would depend on what else is installed; its library state is global
 * and set up through callbacks and a config file; and its client for
 * these five mechanisms is mostly message formatting.  The cryptography
 * stays in OpenSSL (HMAC, PBKDF2, digests, RAND_bytes, base64): nothing
 * here is a hand-written primitive.  Secrets are wiped when freed and
 * never logged.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "util/util.h"
#include "sasl/sasl.h"

#define M_PLAIN		1
#define M_LOGIN		2
#define M_CRAM_MD5	3
#define M_SCRAM_SHA1	4
#define M_SCRAM_SHA256	5

#define SCRAM_MAX_ITER	100000		/* a hostile server must not stall the loop */

static const struct {
    const char *name;
    int     id;
    unsigned props;
} mechs[] = {				/* in order of preference */
    {"SCRAM-SHA-256", M_SCRAM_SHA256,
     SASLC_SEC_NOANONYMOUS | SASLC_SEC_NOPLAINTEXT | SASLC_SEC_NOACTIVE | SASLC_SEC_MUTUAL},
    {"SCRAM-SHA-1", M_SCRAM_SHA1,
     SASLC_SEC_NOANONYMOUS | SASLC_SEC_NOPLAINTEXT | SASLC_SEC_NOACTIVE | SASLC_SEC_MUTUAL},
    {"CRAM-MD5", M_CRAM_MD5, SASLC_SEC_NOANONYMOUS | SASLC_SEC_NOPLAINTEXT},
    {"PLAIN", M_PLAIN, SASLC_SEC_NOANONYMOUS},
    {"LOGIN", M_LOGIN, SASLC_SEC_NOANONYMOUS},
};

#define NMECH ((int) (sizeof(mechs) / sizeof(mechs[0])))

struct SASL_CLIENT {
    int     mech;
    int     step;
    char   *user;
    char   *pass;
    char   *cfirst_bare;		/* SCRAM: client-first-message-bare */
    char   *auth_message;		/* SCRAM */
    unsigned char server_sig[EVP_MAX_MD_SIZE];
    unsigned int server_sig_len;
};

/* ---- security options ------------------------------------------------ */

int     sasl_client_secopts(const char *value, unsigned *flags, char *err, size_t errlen)
{
    static const struct {
	const char *name;
	unsigned flag;
    } opts[] = {
	{"noplaintext", SASLC_SEC_NOPLAINTEXT},
	{"noactive", SASLC_SEC_NOACTIVE},
	{"nodictionary", SASLC_SEC_NODICTIONARY},
	{"forward_secrecy", SASLC_SEC_FORWARD},
	{"noanonymous", SASLC_SEC_NOANONYMOUS},
	{"mutual_auth", SASLC_SEC_MUTUAL},
    };
    char  **v = str_split_list(value, NULL);
    int     rc = 0;

    *flags = 0;
    for (int i = 0; v[i]; i++) {
	int     found = 0;

	for (int j = 0; j < (int) (sizeof(opts) / sizeof(opts[0])); j++) {
	    if (str_casecmp(v[i], opts[j].name) == 0) {
		*flags |= opts[j].flag;
		found = 1;
	    }
	}
	if (!found) {
	    snprintf(err, errlen, "unknown SASL security option \"%s\"", v[i]);
	    rc = -1;
	    break;
	}
    }
    str_list_free(v);
    return (rc);
}

/* ---- mechanism filter --------------------------------------------------- */

char   *sasl_client_mech_filter(const char *filter, const char *offered)
{
    char  **f = str_split_list(filter, NULL);
    BUF     b;
    const char *s = offered;

    if (f[0] == NULL) {
	str_list_free(f);
	return (xstrdup(offered));
    }
    buf_init(&b);
    while (*s) {
	size_t  len;

	s += strspn(s, " \t");
	if ((len = strcspn(s, " \t")) == 0)
	    break;
	char   *m = xstrndup(s, len);
	int     keep = 0;

	for (int i = 0; f[i]; i++) {
	    const char *pat = f[i];
	    int     neg = 0;

	    if (*pat == '!')
		neg = 1, pat++;
	    if (str_casecmp(pat, m) == 0 || str_casecmp(pat, "static:all") == 0) {
		keep = !neg;
		break;
	    }
	}
	if (keep)
	    buf_printf(&b, "%s%s", b.len ? " " : "", m);
	free(m);
	s += len;
    }
    str_list_free(f);
    char   *r = xstrdup(b.data ? b.data : "");

    buf_free(&b);
    return (r);
}

/* ---- password lookup ------------------------------------------------- */

void    sasl_client_wipe(char *secret)
{
    if (secret) {
	OPENSSL_cleanse(secret, strlen(secret));
	free(secret);
    }
}

int     sasl_client_passwd_lookup(SASLC_LOOKUP_FN lookup, void *ctx, int sender_dependent,
				          const char *sender, const char *host, const char *dest,
				          const char *delim, char **user, char **pass,
				          char *err, size_t errlen)
{
    const char *val = NULL;
    int     st = 0;

    *user = *pass = NULL;
    if (sender_dependent && sender && *sender)
	st = lookup(ctx, sender, 1, &val, err, errlen);
    if (st == 0 && host && *host)
	st = lookup(ctx, host, 0, &val, err, errlen);
    if (st == 0 && dest && *dest)
	st = lookup(ctx, dest, 0, &val, err, errlen);
    if (st <= 0)
	return (st);

    /* Historically, the delimiter may appear in the password. */
    const char *sep = (delim && *delim) ? strchr(val, *delim) : NULL;

    if (sep) {
	*user = xstrndup(val, (size_t) (sep - val));
	*pass = xstrdup(sep + 1);
    } else {
	*user = xstrdup(val);
	*pass = xstrdup("");
    }
    return (1);
}

/* ---- base64 (OpenSSL) ---------------------------------------------- */

static char *b64_encode(const unsigned char *data, size_t len)
{
    char   *out = xmalloc(4 * ((len + 2) / 3) + 1);

    EVP_EncodeBlock((unsigned char *) out, data, (int) len);
    return (out);
}

/* Decoded bytes (malloc'ed, NUL-terminated) and their count; NULL when invalid. */
static unsigned char *b64_decode(const char *in, size_t *outlen)
{
    size_t  len = strlen(in);
    unsigned char *out;
    int     n;

    while (len > 0 && isspace((unsigned char) in[len - 1]))
	len--;
    if (len % 4 != 0)
	return (NULL);
    out = xmalloc(len / 4 * 3 + 1);
    if (len == 0) {
	*outlen = 0;
	out[0] = 0;
	return (out);
    }
    if ((n = EVP_DecodeBlock(out, (const unsigned char *) in, (int) len)) < 0) {
	free(out);
	return (NULL);
    }
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    if (in[len - 1] == '=')
	n--;
    if (in[len - 2] == '=')
	n--;
    out[n] = 0;
    *outlen = (size_t) n;
    return (out);
}

/* ---- the mechanisms -------------------------------------------------- */

static char *plain_response(const SASL_CLIENT *c)
{
    size_t  ul = strlen(c->user), pl = strlen(c->pass);
    unsigned char *raw = xmalloc(ul + pl + 2);
    char   *out;

    /* authzid empty, authcid, password (RFC 4616). */
    raw[0] = 0;
    memcpy(raw + 1, c->user, ul);
    raw[1 + ul] = 0;
    memcpy(raw + 2 + ul, c->pass, pl);
    out = b64_encode(raw, ul + pl + 2);
    OPENSSL_cleanse(raw, ul + pl + 2);
    free(raw);
    return (out);
}

static char *scram_escape(const char *s)
{
    BUF     b;

    buf_init(&b);
    for (; *s; s++) {
	if (*s == '=')
	    buf_puts(&b, "=3D");
	else if (*s == ',')
	    buf_puts(&b, "=2C");
	else
	    buf_putc(&b, *s);
    }
    char   *r = xstrdup(b.data ? b.data : "");

    buf_free(&b);
    return (r);
}

static char *scram_first(SASL_CLIENT *c)
{
    unsigned char nonce[18];
    char   *n64, *user, *msg, *out;

    if (RAND_bytes(nonce, sizeof(nonce)) != 1)
	return (NULL);
    n64 = b64_encode(nonce, sizeof(nonce));
    user = scram_escape(c->user);
    c->cfirst_bare = xasprintf("n=%s,r=%s", user, n64);
    msg = xasprintf("n,,%s", c->cfirst_bare);
    out = b64_encode((unsigned char *) msg, strlen(msg));
    free(n64);
    free(user);
    free(msg);
    return (out);
}

/* The value of attribute "a=" in a SCRAM message (malloc'ed), or NULL. */
static char *scram_attr(const char *msg, char a)
{
    for (const char *s = msg; s && *s; s = strchr(s, ',') ? strchr(s, ',') + 1 : NULL) {
	if (s[0] == a && s[1] == '=') {
	    size_t  len = strcspn(s + 2, ",");

	    return (xstrndup(s + 2, len));
	}
    }
    return (NULL);
}

static int scram_final(SASL_CLIENT *c, const char *sfirst, char **resp, char *err, size_t errlen)
{
    const EVP_MD *md = c->mech == M_SCRAM_SHA256 ? EVP_sha256() : EVP_sha1();
    int     mdlen = EVP_MD_get_size(md);
    char   *nonce = scram_attr(sfirst, 'r'), *salt64 = scram_attr(sfirst, 's');
    char   *iter = scram_attr(sfirst, 'i');
    unsigned char *salt = NULL, salted[EVP_MAX_MD_SIZE], ckey[EVP_MAX_MD_SIZE];
    unsigned char skey[EVP_MAX_MD_SIZE], stored[EVP_MAX_MD_SIZE], csig[EVP_MAX_MD_SIZE];
    unsigned char proof[EVP_MAX_MD_SIZE];
    unsigned int len;
    size_t  saltlen = 0;
    long    iters;
    char   *without = NULL, *p64 = NULL, *final = NULL, *cnonce;
    int     rc = -1;

    cnonce = scram_attr(c->cfirst_bare, 'r');
    if (!nonce || !salt64 || !iter || !cnonce || strncmp(nonce, cnonce, strlen(cnonce)) != 0
	|| strlen(nonce) <= strlen(cnonce) || (salt = b64_decode(salt64, &saltlen)) == NULL) {
	snprintf(err, errlen, "malformed SCRAM server-first-message");
	goto out;
    }
    iters = strtol(iter, NULL, 10);
    if (iters < 1 || iters > SCRAM_MAX_ITER) {
	snprintf(err, errlen, "SCRAM iteration count %s out of range", iter);
	goto out;
    }
    if (!PKCS5_PBKDF2_HMAC(c->pass, (int) strlen(c->pass), salt, (int) saltlen, (int) iters,
			   md, mdlen, salted)
	|| !HMAC(md, salted, mdlen, (const unsigned char *) "Client Key", 10, ckey, &len)
	|| !HMAC(md, salted, mdlen, (const unsigned char *) "Server Key", 10, skey, &len)
	|| !EVP_Digest(ckey, (size_t) mdlen, stored, &len, md, NULL)) {
	snprintf(err, errlen, "SCRAM computation failed");
	goto out;
    }
    without = xasprintf("c=biws,r=%s", nonce);
    c->auth_message = xasprintf("%s,%s,%s", c->cfirst_bare, sfirst, without);
    if (!HMAC(md, stored, mdlen, (unsigned char *) c->auth_message, strlen(c->auth_message),
	      csig, &len)
	|| !HMAC(md, skey, mdlen, (unsigned char *) c->auth_message, strlen(c->auth_message),
		 c->server_sig, &c->server_sig_len)) {
	snprintf(err, errlen, "SCRAM computation failed");
	goto out;
    }
    for (int i = 0; i < mdlen; i++)
	proof[i] = ckey[i] ^ csig[i];
    p64 = b64_encode(proof, (size_t) mdlen);
    final = xasprintf("%s,p=%s", without, p64);
    *resp = b64_encode((unsigned char *) final, strlen(final));
    rc = 0;

out:
    OPENSSL_cleanse(salted, sizeof(salted));
    OPENSSL_cleanse(ckey, sizeof(ckey));
    OPENSSL_cleanse(skey, sizeof(skey));
    OPENSSL_cleanse(stored, sizeof(stored));
    free(nonce);
    free(salt64);
    free(iter);
    free(cnonce);
    free(salt);
    free(without);
    free(p64);
    free(final);
    return (rc);
}

static int scram_verify(SASL_CLIENT *c, const char *sfinal, char *err, size_t errlen)
{
    char   *e = scram_attr(sfinal, 'e'), *v = scram_attr(sfinal, 'v');
    unsigned char *sig = NULL;
    size_t  siglen = 0;
    int     rc = -1;

    if (e)
	snprintf(err, errlen, "SCRAM server error: %.100s", e);
    else if (!v || (sig = b64_decode(v, &siglen)) == NULL || siglen != c->server_sig_len
	     || CRYPTO_memcmp(sig, c->server_sig, siglen) != 0)
	snprintf(err, errlen, "SCRAM server signature does not verify");
    else
	rc = 0;
    free(e);
    free(v);
    free(sig);
    return (rc);
}

SASL_CLIENT *sasl_client_start(const char *offered, unsigned secflags, const char *user,
			               const char *pass, const char **mech, char **initial,
			               char *err, size_t errlen)
{
    int     pick = -1;
    SASL_CLIENT *c;

    for (int i = 0; i < NMECH && pick < 0; i++) {
	if ((mechs[i].props & secflags) != secflags)
	    continue;
	for (const char *s = offered; *s;) {
	    size_t  len;

	    s += strspn(s, " \t");
	    if ((len = strcspn(s, " \t")) == 0)
		break;
	    if (len == strlen(mechs[i].name) && str_ncasecmp(s, mechs[i].name, len) == 0) {
		pick = i;
		break;
	    }
	    s += len;
	}
    }
    if (pick < 0) {
	snprintf(err, errlen, "no mechanism available");
	return (NULL);
    }
    c = xcalloc(1, sizeof(*c));
    c->mech = mechs[pick].id;
    c->user = xstrdup(user);
    c->pass = xstrdup(pass);
    *mech = mechs[pick].name;
    *initial = NULL;
    switch (c->mech) {
    case M_PLAIN:
	*initial = plain_response(c);
	break;
    case M_SCRAM_SHA1:
    case M_SCRAM_SHA256:
	if ((*initial = scram_first(c)) == NULL) {
	    snprintf(err, errlen, "cannot make a SCRAM nonce");
	    sasl_client_free(c);
	    return (NULL);
	}
	break;
    default:					/* LOGIN, CRAM-MD5: the server speaks first */
	break;
    }
    return (c);
}

int     sasl_client_step(SASL_CLIENT *c, const char *challenge, char **resp,
			         char *err, size_t errlen)
{
    size_t  len;
    unsigned char *ch = b64_decode(challenge, &len);
    int     rc = 0;

    *resp = NULL;
    if (ch == NULL) {
	snprintf(err, errlen, "malformed base64 challenge from server");
	return (-1);
    }
    c->step++;
    switch (c->mech) {
    case M_PLAIN:
	/* An empty challenge: the server wants the initial response now. */
	*resp = len == 0 && c->step == 1 ? plain_response(c) : xstrdup("");
	break;
    case M_LOGIN:
	/* "Username:" then "Password:" (the prompts' words are not checked). */
	if (c->step == 1)
	    *resp = b64_encode((unsigned char *) c->user, strlen(c->user));
	else if (c->step == 2)
	    *resp = b64_encode((unsigned char *) c->pass, strlen(c->pass));
	else
	    *resp = xstrdup("");
	break;
    case M_CRAM_MD5:{
	    unsigned char mac[EVP_MAX_MD_SIZE];
	    unsigned int maclen = 0;
	    BUF     b;

	    if (c->step != 1 || len == 0
		|| !HMAC(EVP_md5(), c->pass, (int) strlen(c->pass), ch, len, mac, &maclen)) {
		snprintf(err, errlen, "unexpected CRAM-MD5 challenge");
		rc = -1;
		break;
	    }
	    buf_init(&b);
	    buf_printf(&b, "%s ", c->user);
	    for (unsigned int i = 0; i < maclen; i++)
		buf_printf(&b, "%02x", mac[i]);
	    *resp = b64_encode((unsigned char *) b.data, b.len);
	    OPENSSL_cleanse(b.data, b.len);
	    buf_free(&b);
	    OPENSSL_cleanse(mac, sizeof(mac));
	    break;
	}
    case M_SCRAM_SHA1:
    case M_SCRAM_SHA256:
	if (c->step == 1) {
	    rc = scram_final(c, (char *) ch, resp, err, errlen);
	} else if (c->step == 2) {
	    if ((rc = scram_verify(c, (char *) ch, err, errlen)) == 0)
		*resp = xstrdup("");
	} else {
	    snprintf(err, errlen, "unexpected SCRAM challenge");
	    rc = -1;
	}
	break;
    }
    OPENSSL_cleanse(ch, len);
    free(ch);
    return (rc);
}

void    sasl_client_free(SASL_CLIENT *c)
{
    if (c == NULL)
	return;
    sasl_client_wipe(c->user);
    sasl_client_wipe(c->pass);
    free(c->cfirst_bare);
    free(c->auth_message);
    OPENSSL_cleanse(c->server_sig, sizeof(c->server_sig));
    free(c);
}
