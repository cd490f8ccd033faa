/*
 * test_pfimport - the conversion behind `relayq import-postfix`
 * (src/config/pfimport.c): which names are carried, $name rewriting,
 * table specs, master.cf services, and hostile input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "util/util.h"
#include "config/pfimport.h"

static int has_note(PFIMPORT *p, const char *text)
{
    int     n;
    char  **notes = pfimport_notes(p, &n);

    for (int i = 0; i < n; i++)
	if (strstr(notes[i], text))
	    return (1);
    return (0);
}

static PFIMPORT *convert(const char *main_cf, const char *master_cf, char *err, size_t errlen)
{
    PFIMPORT *p = pfimport_new("/etc/pfx");

    if (pfimport_main(p, "/etc/pfx/main.cf", main_cf, strlen(main_cf), err, errlen) < 0
	|| (master_cf && pfimport_master(p, "/etc/pfx/master.cf", master_cf, strlen(master_cf),
					 err, errlen) < 0)
	|| pfimport_convert(p, NULL, NULL, err, errlen) < 0) {
	pfimport_free(p);
	return (NULL);
    }
    return (p);
}

static void test_kinds(void)
{
    char    err[512];
    PFIMPORT *p = convert("# Debian\n"
			  "smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)\n"
			  "biff = no\n"
			  "alias_maps = hash:/etc/aliases\n"
			  "queue_directory = /var/spool/postfix\n"
			  "relayhost = [smart.example]:587\n"
			  "mynetworks = 127.0.0.0/8\n"
			  "  [::1]/128\n"
			  "relayhost = [smart2.example]:587\n"
			  "my_own = 1\n", NULL, err, sizeof(err));
    const char *cf;

    T_CHECK(p != NULL);
    if (p == NULL) {
	printf("%s\n", err);
	return;
    }
    cf = pfimport_relayq_cf(p);
    T_CHECK(strstr(cf, "\nsmtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)\n") != NULL);
    T_CHECK(strstr(cf, "\nrelayhost = [smart2.example]:587\n") != NULL);
    T_CHECK(strstr(cf, "[smart.example]") == NULL);	/* the last setting wins */
    T_CHECK(strstr(cf, "\nmynetworks = 127.0.0.0/8  [::1]/128\n") != NULL);
    T_CHECK(strstr(cf, "\nbiff =") == NULL);
    T_CHECK(strstr(cf, "\nqueue_directory") == NULL);
    T_CHECK(strstr(cf, "\nmy_own") == NULL);
    T_EQ_INT(pfimport_ncarried(p), 3);
    T_CHECK(has_note(p, "not carried over: /etc/pfx/main.cf, line 3: biff: a Postfix parameter "
		     "that relayq does not implement"));
    T_CHECK(has_note(p, "line 4: alias_maps: a Postfix parameter that relayq does not implement: "
		     "unused: relayq delivers nothing locally"));
    T_CHECK(has_note(p, "line 5: queue_directory: Postfix's queue is not relayq's"));
    T_CHECK(has_note(p, "line 10: my_own: not a Postfix or relayq parameter"));
    T_CHECK(has_note(p, "no master.cf was read"));
    pfimport_free(p);
}

static void test_references(void)
{
    char    err[512];
    PFIMPORT *p = convert("smtp_tls_CApath = $config_directory/certs\n"
			  "smtpd_tls_cert_file = ${data_directory}/cert.pem\n"
			  "smtpd_tls_key_file = ${readme_directory?{/yes}:{/no}}\n"
			  "smtpd_banner = $myhostname $$5 ${html_directory:x} $(mail_name)\n"
			  "readme_directory = no\n"
			  "html_directory =\n"
			  "smtpd_client_restrictions = $site_restrictions\n"
			  "site_restrictions = permit_mynetworks, $more\n"
			  "more = reject\n"
			  "smtp_helo_name = ${queue_directory}x\n",
			  NULL, err, sizeof(err));
    const char *cf;

    T_CHECK(p != NULL);
    if (p == NULL) {
	printf("%s\n", err);
	return;
    }
    cf = pfimport_relayq_cf(p);
    T_CHECK(strstr(cf, "\nsmtp_tls_CApath = /etc/pfx/certs\n") != NULL);
    T_CHECK(strstr(cf, "\nsmtpd_tls_cert_file = /var/lib/postfix/cert.pem\n") != NULL);
    T_CHECK(strstr(cf, "\nsmtpd_tls_key_file = /yes\n") != NULL);
    T_CHECK(strstr(cf, "\nsmtpd_banner = $myhostname $$5 x $(mail_name)\n") != NULL);
    T_CHECK(strstr(cf, "\nsmtp_helo_name = /var/spool/postfixx\n") != NULL);
    /* The administrator's own names, carried because something carried uses them. */
    T_CHECK(strstr(cf, "\nsite_restrictions = permit_mynetworks, $more\n") != NULL);
    T_CHECK(strstr(cf, "\nmore = reject\n") != NULL);
    pfimport_free(p);

    /* The conditional syntax is the configuration reader's own (config_cond). */
    p = convert("smtpd_banner = ${readme_directory?{x} junk}\n", NULL, err, sizeof(err));
    T_CHECK(p == NULL);
    T_CHECK(strstr(err, "unexpected text after {...}") != NULL);
    p = convert("smtpd_banner = ${readme_directory?{x}:{y}\n", NULL, err, sizeof(err));
    T_CHECK(p == NULL);
}

static void test_loops_and_hostile(void)
{
    char    err[512];
    PFIMPORT *p;
    char   *big;

    p = convert("data_directory = $meta_directory\nmeta_directory = $data_directory\n"
		"smtpd_banner = $data_directory\n", NULL, err, sizeof(err));
    T_CHECK(p == NULL);
    T_CHECK(strstr(err, "line 3: parameter smtpd_banner: $name expansion loop: "
		   "data_directory -> meta_directory -> data_directory") != NULL);
    /* A loop nothing carried reaches is no error (Postfix would not see it either). */
    p = convert("a = $b\nb = $a\nmyhostname = x.example\n", NULL, err, sizeof(err));
    T_CHECK(p != NULL);
    pfimport_free(p);
    /* a = $b$b$b..., b = $c$c$c...: bounded. */
    p = convert("data_directory = $meta_directory$meta_directory$meta_directory$meta_directory\n"
		"meta_directory = $html_directory$html_directory$html_directory$html_directory\n"
		"html_directory = $shlib_directory$shlib_directory$shlib_directory$shlib_directory\n"
		"shlib_directory = $manpage_directory$manpage_directory$manpage_directory\n"
		"manpage_directory = $sample_directory$sample_directory$sample_directory\n"
		"sample_directory = $readme_directory$readme_directory$readme_directory\n"
		"readme_directory = $command_directory$command_directory$command_directory\n"
		"command_directory = $daemon_directory$daemon_directory$daemon_directory\n"
		"daemon_directory = $sendmail_path$sendmail_path$sendmail_path$sendmail_path\n"
		"sendmail_path = $mailq_path$mailq_path$mailq_path$mailq_path$mailq_path\n"
		"mailq_path = xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
		"smtpd_banner = $data_directory\n", NULL, err, sizeof(err));
    T_CHECK(p == NULL);
    T_CHECK(strstr(err, "larger than") != NULL);

    p = pfimport_new("/etc/pfx");
    T_EQ_INT(pfimport_main(p, "m", "a = b\nc = d\0e\n", 13, err, sizeof(err)), -1);
    T_CHECK(strstr(err, "m, line 2: a NUL byte") != NULL);
    T_EQ_INT(pfimport_main(p, "m", "  a = b\n", 8, err, sizeof(err)), -1);
    T_CHECK(strstr(err, "m, line 1: text starts with white space") != NULL);
    T_EQ_INT(pfimport_main(p, "m", "a b\n", 4, err, sizeof(err)), -1);
    T_CHECK(strstr(err, "m, line 1: missing '='") != NULL);
    T_EQ_INT(pfimport_main(p, "m", "a-b = c\n", 8, err, sizeof(err)), -1);
    T_CHECK(strstr(err, "bad parameter name") != NULL);
    big = xmalloc(1 << 20);
    memcpy(big, "myhostname = ", 13);
    memset(big + 13, 'a', (1 << 20) - 14);
    big[(1 << 20) - 1] = '\n';
    T_EQ_INT(pfimport_main(p, "m", big, 1 << 20, err, sizeof(err)), -1);
    T_CHECK(strstr(err, "m, line 1: a logical line longer than 65536 bytes") != NULL);
    /* The same through continuation lines. */
    for (size_t i = 13; i + 100 < (1 << 20); i += 100)
	big[i] = '\n', big[i + 1] = ' ';
    T_EQ_INT(pfimport_main(p, "m", big, 1 << 20, err, sizeof(err)), -1);
    T_CHECK(strstr(err, "m, line 1: a logical line longer than 65536 bytes") != NULL);
    free(big);
    T_EQ_INT(pfimport_main(p, "m", "x", (size_t) PFI_MAX_FILE + 1, err, sizeof(err)), -1);
    T_CHECK(strstr(err, "larger than") != NULL);
    pfimport_free(p);
}

static char *swap_spec(void *ctx, const char *where, const char *param, const char *spec, char **why)
{
    (*(int *) ctx)++;
    if (strncmp(spec, "ldap:", 5) == 0) {
	*why = xstrdup("no ldap");
	return (NULL);
    }
    return (xasprintf("NEW<%s>", spec));
}

static void test_specs(void)
{
    int     calls = 0;
    char   *why = NULL;
    char   *v = pfimport_map_specs("w", "smtpd_client_restrictions",
				   "permit_mynetworks,  check_client_access hash:/a,\n"
				   "reject_rbl_client zen.example, unionmap:{hash:/b, texthash:/c} "
				   "[1.2.3.4]:25 inet:127.0.0.1:1",
				   swap_spec, &calls, &why);

    T_EQ_STR(v, "permit_mynetworks,  check_client_access NEW<hash:/a>,\n"
	     "reject_rbl_client zen.example, NEW<unionmap:{hash:/b, texthash:/c}> [1.2.3.4]:25 "
	     "inet:127.0.0.1:1");
    T_EQ_INT(calls, 2);
    free(v);
    v = pfimport_map_specs("w", "x_maps", "hash:/a ldap:/etc/x.cf", swap_spec, &calls, &why);
    T_CHECK(v == NULL);
    T_EQ_STR(why, "no ldap");
    free(why);
    T_CHECK(pfimport_table_type("hash", 4));
    T_CHECK(pfimport_table_type("cidr", 4));
    T_CHECK(!pfimport_table_type("smtp", 4));
    T_CHECK(!pfimport_table_type("inet", 4));
}

static const char master_cf[] =
    "smtp      inet  n       -       y       -       1       postscreen\n"
    "smtpd     pass  -       -       y       -       -       smtpd\n"
    "  -o smtpd_tls_security_level=may\n"
    "submission inet n       -       y       -       -       smtpd\n"
    "  -o syslog_name=postfix/$service_name\n"
    "  -o smtpd_tls_security_level=encrypt\n"
    "  -o smtpd_client_restrictions=$mua_client_restrictions\n"
    "  -o smtpd_sasl_type=dovecot\n"
    "  -o address_verify_map=\n"
    "  -o my_thing=1\n"
    "  -o { smtpd_recipient_restrictions = permit_sasl_authenticated, reject }\n"
    "pickup    unix  n       -       y       60      1       pickup\n"
    "relay     unix  -       -       n       -       -       smtp\n"
    "  -o smtp_fallback_relay=\n"
    "maildrop  unix  -       n       n       -       -       pipe\n"
    "  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}\n";

static void test_master(void)
{
    char    err[512];
    PFIMPORT *p = convert("mua_client_restrictions = permit_sasl_authenticated, reject\n",
			  master_cf, err, sizeof(err));
    const char *m, *cf;

    T_CHECK(p != NULL);
    if (p == NULL) {
	printf("%s\n", err);
	return;
    }
    m = pfimport_master_cf(p);
    cf = pfimport_relayq_cf(p);
    T_EQ_INT(pfimport_nlisteners(p), 2);
    T_CHECK(strstr(m, "\nsmtp        inet  n       -       -       -       1       smtpd\n"
		   "  -o smtpd_tls_security_level=may\n") != NULL);
    T_CHECK(strstr(m, "\nsubmission  inet  n       -       -       -       -       smtpd\n"
		   "  -o syslog_name=relayq/submission\n"
		   "  -o smtpd_tls_security_level=encrypt\n"
		   "  -o smtpd_client_restrictions=$mua_client_restrictions\n") != NULL);
    T_CHECK(strstr(m, "  -o { smtpd_recipient_restrictions=permit_sasl_authenticated, reject }\n") != NULL);
    T_CHECK(strstr(m, "my_thing") == NULL);
    T_CHECK(strstr(m, "address_verify_map") == NULL);
    T_CHECK(strstr(m, "pickup") == NULL);
    T_CHECK(strstr(cf, "\nmua_client_restrictions = permit_sasl_authenticated, reject\n") != NULL);
    T_CHECK(has_note(p, "translated: /etc/pfx/master.cf, line 1: smtp (inet, postscreen): relayq has no postscreen"));
    T_CHECK(has_note(p, "-o syslog_name=postfix/submission becomes relayq/submission"));
    T_CHECK(has_note(p, "line 4: service submission: -o address_verify_map: a Postfix parameter"));
    T_CHECK(has_note(p, "line 4: service submission: -o my_thing: not a Postfix or relayq parameter"));
    T_CHECK(has_note(p, "line 12: pickup (unix, pickup): built into relayqd"));
    T_CHECK(has_note(p, "line 13: relay (unix, smtp): relayq has one SMTP client"));
    T_CHECK(has_note(p, "line 15: maildrop (unix, pipe): relayq has no pipe(8) transport"));

    /* What the caller found relayq refuses: one -o, then a whole listener (lines of the output). */
    T_EQ_INT(pfimport_drop_listener(p, 7, "smtpd_tls_security_level", "nope"), 0);
    m = pfimport_master_cf(p);
    T_CHECK(strstr(m, "encrypt") == NULL && strstr(m, "$mua_client_restrictions") != NULL);
    T_CHECK(has_note(p, "line 4: service submission: -o smtpd_tls_security_level: relayq does not accept "
		     "the value: nope"));
    T_EQ_INT(pfimport_drop_listener(p, 7, "smtpd_tls_security_level", "again"), -1);
    T_EQ_INT(pfimport_drop_listener(p, 5, NULL, "no address"), 0);
    T_EQ_INT(pfimport_nlisteners(p), 1);
    T_CHECK(has_note(p, "line 1: service smtp: no address"));
    T_EQ_INT(pfimport_drop_listener(p, 99, NULL, "x"), -1);
    pfimport_free(p);
}

static void test_many_services(void)
{
    BUF     b = BUF_INIT;
    char    err[512];
    PFIMPORT *p;

    for (int i = 0; i < 10000; i++)
	buf_printf(&b, "127.0.0.%d:%d inet n - y - - smtpd\n  -o smtpd_tls_security_level=may\n"
		   "x%d unix - - n - - pipe\n", i % 250 + 1, 1025 + i, i);
    p = pfimport_new("/etc/pfx");
    T_EQ_INT(pfimport_main(p, "main.cf", "", 0, err, sizeof(err)), 0);
    T_EQ_INT(pfimport_master(p, "master.cf", b.data, b.len, err, sizeof(err)), 0);
    T_EQ_INT(pfimport_convert(p, NULL, NULL, err, sizeof(err)), 0);
    T_EQ_INT(pfimport_nlisteners(p), 10000);
    pfimport_free(p);
    buf_free(&b);
}

/* a1 = $a2, a2 = $a3, ...: a long chain of the administrator's names, in the worst order. */
static void test_chains_and_counts(void)
{
    BUF     b = BUF_INIT;
    char    err[512];
    PFIMPORT *p;

    buf_puts(&b, "smtpd_banner = $a1\n");
    for (int i = 1; i < 5000; i++)
	buf_printf(&b, "a%d = $a%d\n", i, i + 1);
    buf_puts(&b, "a5000 = end\n");
    p = pfimport_new("/etc/pfx");
    T_EQ_INT(pfimport_main(p, "main.cf", b.data, b.len, err, sizeof(err)), 0);
    T_EQ_INT(pfimport_convert(p, NULL, NULL, err, sizeof(err)), 0);
    T_EQ_INT(pfimport_ncarried(p), 5001);
    T_CHECK(strstr(pfimport_relayq_cf(p), "\na5000 = end\n") != NULL);
    pfimport_free(p);
    buf_reset(&b);
    for (int i = 0; i < 10001; i++)
	buf_printf(&b, "x%d = 1\n", i);
    p = pfimport_new("/etc/pfx");
    T_EQ_INT(pfimport_main(p, "main.cf", b.data, b.len, err, sizeof(err)), -1);
    T_CHECK(strstr(err, "main.cf, line 10001: more than 10000 parameter settings") != NULL);
    pfimport_free(p);
    buf_free(&b);
}

/* A file name cannot end a relayq.cf comment line. */
static void test_notes_one_line(void)
{
    PFIMPORT *p = pfimport_new("/etc/pfx");
    int     n;

    pfimport_note(p, "note: %s", "a\nrelayhost = [evil]\r");
    T_EQ_STR(pfimport_notes(p, &n)[0], "note: a?relayhost = [evil]?");
    pfimport_free(p);
}

int     main(void)
{
    T_RUN(test_chains_and_counts);
    T_RUN(test_notes_one_line);
    T_RUN(test_kinds);
    T_RUN(test_references);
    T_RUN(test_loops_and_hostile);
    T_RUN(test_specs);
    T_RUN(test_master);
    T_RUN(test_many_services);
    return (t_done());
}
