/*
 * test_sasl_client - the SMTP AUTH client: security options and mechanism
 * choice, the mechanism filter, the password lookup order, and each
 * mechanism's messages (SCRAM checked against a server computed here with
 * OpenSSL, and against RFC 7677's example).
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "t.h"
#include "util/util.h"
#include "sasl/sasl.h"

static char *b64(const char *s, size_t len)
{
    char   *out = malloc(4 * ((len + 2) / 3) + 1);

    EVP_EncodeBlock((unsigned char *) out, (const unsigned char *) s, (int) len);
    return out;
}

static char *unb64(const char *s, size_t *len)
{
    size_t  l = strlen(s);
    unsigned char *out = malloc(l + 1);
    int     n = EVP_DecodeBlock(out, (const unsigned char *) s, (int) l);

    if (l && s[l - 1] == '=')
	n--;
    if (l > 1 && s[l - 2] == '=')
	n--;
    out[n] = 0;
    *len = (size_t) n;
    return (char *) out;
}

static unsigned opts(const char *v)
{
    unsigned f = 0;
    char    err[128];

    T_EQ_INT(sasl_client_secopts(v, &f, err, sizeof(err)), 0);
    return f;
}

static const char *pick(const char *offered, const char *secopts)
{
    static char name[160];
    const char *mech = NULL;
    char   *init = NULL, err[128];
    SASL_CLIENT *c = sasl_client_start(offered, opts(secopts), "u", "p", &mech, &init, err, sizeof(err));

    if (c == NULL)
	snprintf(name, sizeof(name), "(%s)", err);
    else
	snprintf(name, sizeof(name), "%s", mech);
    free(init);
    sasl_client_free(c);
    return name;
}

static void test_security_options(void)
{
    unsigned f;
    char    err[128];

    /* Postfix's default refuses PLAIN and LOGIN, even over TLS */
    T_EQ_STR(pick("PLAIN LOGIN", "noplaintext, noanonymous"), "(no mechanism available)");
    T_EQ_STR(pick("PLAIN LOGIN", "noanonymous"), "PLAIN");
    T_EQ_STR(pick("LOGIN", "noanonymous"), "LOGIN");
    T_EQ_STR(pick("login plain", ""), "PLAIN");
    T_EQ_STR(pick("PLAIN LOGIN CRAM-MD5", "noplaintext, noanonymous"), "CRAM-MD5");
    T_EQ_STR(pick("PLAIN CRAM-MD5 SCRAM-SHA-256", "noplaintext"), "SCRAM-SHA-256");
    T_EQ_STR(pick("CRAM-MD5 SCRAM-SHA-1", "mutual_auth"), "SCRAM-SHA-1");
    T_EQ_STR(pick("CRAM-MD5", "mutual_auth"), "(no mechanism available)");
    T_EQ_STR(pick("GSSAPI NTLM", ""), "(no mechanism available)");
    T_EQ_STR(pick("", ""), "(no mechanism available)");
    T_EQ_STR(pick("PLAINX XPLAIN", ""), "(no mechanism available)");
    T_EQ_INT(sasl_client_secopts("noplaintext, bogus", &f, err, sizeof(err)), -1);
    T_EQ_STR(err, "unknown SASL security option \"bogus\"");
}

static void test_mech_filter(void)
{
    char   *r;

    T_EQ_STR(r = sasl_client_mech_filter("", "PLAIN LOGIN"), "PLAIN LOGIN");
    free(r);
    T_EQ_STR(r = sasl_client_mech_filter("plain", "PLAIN LOGIN CRAM-MD5"), "PLAIN");
    free(r);
    T_EQ_STR(r = sasl_client_mech_filter("!login, static:all", "PLAIN LOGIN CRAM-MD5"), "PLAIN CRAM-MD5");
    free(r);
    T_EQ_STR(r = sasl_client_mech_filter("cram-md5", "PLAIN LOGIN"), "");
    free(r);
}

/* A fake password table. */
static char asked[512];

static int fake_lookup(void *ctx, const char *key, int is_addr, const char **val, char *err,
		               size_t errlen)
{
    const char *const *tbl = ctx;

    snprintf(asked + strlen(asked), sizeof(asked) - strlen(asked), "%s%s%s", *asked ? " " : "",
	     is_addr ? "addr:" : "", key);
    if (strcmp(key, "broken.example") == 0) {
	snprintf(err, errlen, "table gone");
	return -1;
    }
    for (int i = 0; tbl[i]; i += 2) {
	if (strcmp(tbl[i], key) == 0) {
	    *val = tbl[i + 1];
	    return 1;
	}
    }
    return 0;
}

static void test_passwd_lookup(void)
{
    static const char *const tbl[] = {
	"[mail.isp.example]:587", "relay:s3cr:et",
	"smtp.isp.example", "byhost:pw",
	"alice@example.com", "alice:apw",
	NULL,
    };
    char   *u, *p, err[128];

    /* without sender_dependent: host, then the next hop as written */
    asked[0] = 0;
    T_EQ_INT(sasl_client_passwd_lookup(fake_lookup, (void *) tbl, 0, "alice@example.com",
				       "mail.isp.example", "[mail.isp.example]:587", ":",
				       &u, &p, err, sizeof(err)), 1);
    T_EQ_STR(asked, "mail.isp.example [mail.isp.example]:587");
    T_EQ_STR(u, "relay");
    T_EQ_STR(p, "s3cr:et");			/* split at the first delimiter */
    sasl_client_wipe(u);
    sasl_client_wipe(p);

    /* the host name wins over the next hop */
    asked[0] = 0;
    T_EQ_INT(sasl_client_passwd_lookup(fake_lookup, (void *) tbl, 0, "", "smtp.isp.example",
				       "isp.example", ":", &u, &p, err, sizeof(err)), 1);
    T_EQ_STR(asked, "smtp.isp.example");
    T_EQ_STR(u, "byhost");
    sasl_client_wipe(u);
    sasl_client_wipe(p);

    /* sender-dependent: the sender first */
    asked[0] = 0;
    T_EQ_INT(sasl_client_passwd_lookup(fake_lookup, (void *) tbl, 1, "alice@example.com",
				       "smtp.isp.example", "x", ":", &u, &p, err, sizeof(err)), 1);
    T_EQ_STR(asked, "addr:alice@example.com");
    T_EQ_STR(u, "alice");
    sasl_client_wipe(u);
    sasl_client_wipe(p);
    /* ... but not for the null sender */
    asked[0] = 0;
    T_EQ_INT(sasl_client_passwd_lookup(fake_lookup, (void *) tbl, 1, "", "h.example",
				       "x", ":", &u, &p, err, sizeof(err)), 0);
    T_EQ_STR(asked, "h.example x");

    /* another delimiter; a value without one is a user with an empty password */
    T_EQ_INT(sasl_client_passwd_lookup(fake_lookup, (void *) tbl, 0, "", "", "[mail.isp.example]:587",
				       "s", &u, &p, err, sizeof(err)), 1);
    T_EQ_STR(u, "relay:");
    T_EQ_STR(p, "3cr:et");
    sasl_client_wipe(u);
    sasl_client_wipe(p);
    T_EQ_INT(sasl_client_passwd_lookup(fake_lookup, (void *) tbl, 0, "", "", "smtp.isp.example",
				       "#", &u, &p, err, sizeof(err)), 1);
    T_EQ_STR(u, "byhost:pw");
    T_EQ_STR(p, "");
    sasl_client_wipe(u);
    sasl_client_wipe(p);

    /* a lookup error stops the search */
    asked[0] = 0;
    T_EQ_INT(sasl_client_passwd_lookup(fake_lookup, (void *) tbl, 0, "", "broken.example",
				       "smtp.isp.example", ":", &u, &p, err, sizeof(err)), -1);
    T_EQ_STR(asked, "broken.example");
    T_EQ_STR(err, "table gone");
    T_CHECK(u == NULL && p == NULL);
}

static void test_plain_login(void)
{
    const char *mech;
    char   *init, *resp, err[128];
    size_t  len;
    char   *raw;
    SASL_CLIENT *c;

    c = sasl_client_start("PLAIN", 0, "user@example", "pa ss", &mech, &init, err, sizeof(err));
    T_CHECK(c != NULL);
    raw = unb64(init, &len);
    T_EQ_INT(len, 1 + 12 + 1 + 5);
    T_CHECK(memcmp(raw, "\0user@example\0pa ss", len) == 0);
    free(raw);
    free(init);
    sasl_client_free(c);

    c = sasl_client_start("LOGIN", 0, "user", "pw", &mech, &init, err, sizeof(err));
    T_CHECK(init == NULL);
    T_EQ_INT(sasl_client_step(c, "VXNlcm5hbWU6", &resp, err, sizeof(err)), 0);
    T_EQ_STR(resp, "dXNlcg==");
    free(resp);
    T_EQ_INT(sasl_client_step(c, "UGFzc3dvcmQ6", &resp, err, sizeof(err)), 0);
    T_EQ_STR(resp, "cHc=");
    free(resp);
    /* hostile: not base64 */
    T_EQ_INT(sasl_client_step(c, "!!!", &resp, err, sizeof(err)), -1);
    sasl_client_free(c);
}

static void test_cram_md5(void)
{
    const char *mech;
    char   *init, *resp, err[128];
    SASL_CLIENT *c;
    char   *ch = b64("<1896.697170952@postoffice.reston.mci.net>", 42);
    size_t  len;
    char   *raw;

    /* RFC 2195's example */
    c = sasl_client_start("CRAM-MD5", 0, "tim", "tanstaaftanstaaf", &mech, &init, err, sizeof(err));
    T_CHECK(init == NULL);
    T_EQ_INT(sasl_client_step(c, ch, &resp, err, sizeof(err)), 0);
    raw = unb64(resp, &len);
    T_EQ_STR(raw, "tim b913a602c7eda7a495b4e6e7334d3890");
    free(raw);
    free(resp);
    /* a second challenge is a protocol error */
    T_EQ_INT(sasl_client_step(c, ch, &resp, err, sizeof(err)), -1);
    sasl_client_free(c);
    free(ch);
}

/*
 * SCRAM-SHA-256 against a server computed here; the last step gets the
 * right server signature, or a wrong one, or a huge iteration count.
 */
static int scram_run(int mode, char *err, size_t errlen)
{
    const char *mech;
    char   *init = NULL, *resp = NULL;
    SASL_CLIENT *c;
    size_t  len;
    const char *salt = "salt-0123456789";
    unsigned char sp[32], ck[32], sk[32], stk[32], cs[32], ss[32], proof[32];
    unsigned int l;
    int     rc;

    c = sasl_client_start("PLAIN SCRAM-SHA-256", 0, "us=er,x", "pencil", &mech, &init, err, errlen);
    T_EQ_STR(mech, "SCRAM-SHA-256");
    char   *cfirst = unb64(init, &len);

    T_CHECK(strncmp(cfirst, "n,,n=us=3Der=2Cx,r=", 19) == 0);
    const char *cnonce = cfirst + 19;
    char   *salt64 = b64(salt, strlen(salt));
    char   *sfirst = xasprintf("r=%sSRVNONCE,s=%s,i=%s", cnonce, salt64, mode == 2 ? "100000000" : "4096");
    char   *sfirst64 = b64(sfirst, strlen(sfirst));

    rc = sasl_client_step(c, sfirst64, &resp, err, errlen);
    if (rc == 0) {
	char   *cfinal = unb64(resp, &len);
	char   *without = xasprintf("c=biws,r=%sSRVNONCE", cnonce);
	char   *am = xasprintf("%s,%s,%s", cfirst + 3, sfirst, without);

	free(resp);
	T_CHECK(strncmp(cfinal, without, strlen(without)) == 0);
	PKCS5_PBKDF2_HMAC("pencil", 6, (const unsigned char *) salt, (int) strlen(salt), 4096,
			  EVP_sha256(), 32, sp);
	HMAC(EVP_sha256(), sp, 32, (const unsigned char *) "Client Key", 10, ck, &l);
	HMAC(EVP_sha256(), sp, 32, (const unsigned char *) "Server Key", 10, sk, &l);
	EVP_Digest(ck, 32, stk, &l, EVP_sha256(), NULL);
	HMAC(EVP_sha256(), stk, 32, (unsigned char *) am, strlen(am), cs, &l);
	HMAC(EVP_sha256(), sk, 32, (unsigned char *) am, strlen(am), ss, &l);
	for (int i = 0; i < 32; i++)
	    proof[i] = ck[i] ^ cs[i];
	char   *p64 = b64((char *) proof, 32);

	/* the client proved it knows the password */
	T_EQ_STR(cfinal + strlen(without) + 3, p64);
	if (mode == 1)
	    ss[0] ^= 1;
	char   *s64 = b64((char *) ss, 32);
	char   *sfinal = xasprintf("v=%s", s64);
	char   *sfinal64 = b64(sfinal, strlen(sfinal));

	resp = NULL;
	rc = sasl_client_step(c, sfinal64, &resp, err, errlen);
	if (rc == 0)
	    T_EQ_STR(resp, "");
	free(resp);
	free(cfinal);
	free(without);
	free(am);
	free(p64);
	free(s64);
	free(sfinal);
	free(sfinal64);
    }
    sasl_client_free(c);
    free(init);
    free(cfirst);
    free(salt64);
    free(sfirst);
    free(sfirst64);
    return rc;
}

static void test_scram(void)
{
    char    err[128];
    const char *mech;
    char   *init, *resp;
    SASL_CLIENT *c;

    T_EQ_INT(scram_run(0, err, sizeof(err)), 0);
    T_EQ_INT(scram_run(1, err, sizeof(err)), -1);
    T_EQ_STR(err, "SCRAM server signature does not verify");
    T_EQ_INT(scram_run(2, err, sizeof(err)), -1);
    T_EQ_STR(err, "SCRAM iteration count 100000000 out of range");

    /* hostile server-first message: a nonce that is not ours */
    c = sasl_client_start("SCRAM-SHA-1", 0, "u", "p", &mech, &init, err, sizeof(err));
    free(init);
    char   *evil = b64("r=othernonce,s=c2FsdA==,i=4096", 30);

    T_EQ_INT(sasl_client_step(c, evil, &resp, err, sizeof(err)), -1);
    T_EQ_STR(err, "malformed SCRAM server-first-message");
    sasl_client_free(c);
    free(evil);
}

int main(void)
{
    T_RUN(test_security_options);
    T_RUN(test_mech_filter);
    T_RUN(test_passwd_lookup);
    T_RUN(test_plain_login);
    T_RUN(test_cram_md5);
    T_RUN(test_scram);
    return t_done();
}
