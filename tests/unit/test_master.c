/*
 * test_master - master.cf parsing (src/config/master.c): Debian's file,
 * continuation lines with comments inside, -o forms, port names, listen
 * addresses, and the errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "t.h"
#include "util/util.h"
#include "config/master.h"

static char tmpdir[] = "/tmp/rq-master-XXXXXX";

static MASTER_CF *load_text(const char *text, char *err, size_t errlen)
{
    char   *path = xasprintf("%s/master.cf", tmpdir);
    FILE   *fp = fopen(path, "w");
    MASTER_CF *m;

    fputs(text, fp);
    fclose(fp);
    m = master_load(path, err, errlen);
    free(path);
    return (m);
}

static const char debian_like[] =
    "# comment\n"
    "smtp      inet  n       -       y       -       -       smtpd\n"
    "#628       inet  n       -       y       -       -       qmqpd\n"
    "submission inet n       -       y       -       -       smtpd\n"
    "  -o syslog_name=postfix/submission\n"
    "  -o smtpd_tls_security_level=encrypt\n"
    "#     Instead of specifying complex smtpd_<xxx>_restrictions here,\n"
    "  -o smtpd_client_restrictions=\n"
    "  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject\n"
    "submissions     inet  n       -       y       -       20       smtpd\n"
    "  -o { smtpd_sender_restrictions = permit_sasl_authenticated, reject }\n"
    "  -o smtpd_tls_wrappermode=yes\n"
    "127.0.0.1:10025 inet n - n - - /usr/lib/postfix/sbin/smtpd -v -osyslog_name=x\n"
    "pickup    unix  n       -       y       60      1       pickup\n"
    "maildrop  unix  -       n       n       -       -       pipe\n"
    "  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}\n";

static void test_parse(void)
{
    char    err[512];
    MASTER_CF *m = load_text(debian_like, err, sizeof(err));

    T_CHECK(m != 0);
    if (m == 0) {
	printf("%s\n", err);
	return;
    }
    T_EQ_INT(m->nsvc, 6);
    T_EQ_STR(m->svc[0].service, "smtp");
    T_CHECK(master_is_smtpd(&m->svc[0]));
    T_EQ_INT(m->svc[0].maxproc, -1);
    T_EQ_STR(m->svc[1].service, "submission");
    T_EQ_INT(m->svc[1].line, 4);
    T_EQ_INT(m->svc[1].nopts, 4);
    T_EQ_STR(m->svc[1].opts[0], "syslog_name=postfix/submission");
    T_EQ_STR(m->svc[1].opts[2], "smtpd_client_restrictions=");
    T_EQ_STR(m->svc[1].opts[3], "smtpd_recipient_restrictions=permit_sasl_authenticated,reject");
    T_EQ_INT(m->svc[2].maxproc, 20);
    T_EQ_STR(m->svc[2].opts[0], "smtpd_sender_restrictions=permit_sasl_authenticated, reject");
    T_CHECK(master_is_smtpd(&m->svc[3]));	/* a path to smtpd */
    T_EQ_INT(m->svc[3].nopts, 1);
    T_EQ_STR(m->svc[3].opts[0], "syslog_name=x");
    T_CHECK(!master_is_smtpd(&m->svc[4]));
    T_CHECK(!master_is_smtpd(&m->svc[5]));
    T_EQ_INT(m->svc[5].nopts, 0);		/* pipe's flags= are no -o */
    master_free(m);
}

static void test_errors(void)
{
    static const struct {
	const char *text;
	const char *err;
    } cases[] = {
	{"smtp inet n - y - - \n", "line 1: expected 8 fields"},
	{"  -o a=b\n", "line 1: text starts with white space"},
	{"smtp inet n - y - x smtpd\n", "bad maxproc field \"x\""},
	{"smtp inet n - y - - smtpd -o\n", "-o without name=value"},
	{"smtp inet n - y - - smtpd -o novalue\n", "bad -o argument \"novalue\""},
	{"smtp inet n - y - - smtpd -o { a=b\n", "'{' without a matching '}'"},
	{"smtp inet n - y - - smtpd -o bad-name=1\n", "bad -o argument"},
    };
    char    err[512];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
	MASTER_CF *m = load_text(cases[i].text, err, sizeof(err));

	if (m != 0 || strstr(err, cases[i].err) == 0)
	    T_FAILF("case %zu: got \"%s\", expected \"%s\"", i, m ? "(loaded)" : err, cases[i].err);
	master_free(m);
    }
    T_CHECK(master_load("/nonexistent/master.cf", err, sizeof(err)) == 0);
    T_EQ_STR(err, "");
}

static void test_ports(void)
{
    char   *known[] = {"lmtp=24", "smtp=25", "smtps=submissions=465", "submission=587", 0};
    char   *mine[] = {"submission=10587", 0};

    T_EQ_INT(master_port("submission", known), 587);
    T_EQ_INT(master_port("submissions", known), 465);
    T_EQ_INT(master_port("smtps", known), 465);
    T_EQ_INT(master_port("smtp", known), 25);
    T_EQ_INT(master_port("submission", mine), 10587);
    T_EQ_INT(master_port("2525", known), 2525);
    T_EQ_INT(master_port("65536", known), -1);
    T_EQ_INT(master_port("no-such-service-xyz", known), -1);
    T_EQ_INT(master_port("ssh", 0), 22);		/* /etc/services */
}

static void test_addrs(void)
{
    MASTER_SERVICE svc;
    char   *known[] = {"submission=10587", 0};
    char   *all[] = {"all", 0}, *lo[] = {"127.0.0.1", "::1", 0}, *v4[] = {"ipv4", 0};
    char   *lonly[] = {"loopback-only", 0};
    char    err[256];
    char  **a;

    memset(&svc, 0, sizeof(svc));
    svc.service = "submission";
    svc.line = 3;
    a = master_listen_addrs(&svc, known, all, 0, err, sizeof(err));
    T_CHECK(a && a[0] && a[1] && !a[2]);
    if (a) {
	T_EQ_STR(a[0], "0.0.0.0:10587");
	T_EQ_STR(a[1], "[::]:10587");
    }
    str_list_free(a);
    a = master_listen_addrs(&svc, known, all, v4, err, sizeof(err));
    T_CHECK(a && a[0] && !a[1]);
    str_list_free(a);
    a = master_listen_addrs(&svc, known, lo, 0, err, sizeof(err));
    T_CHECK(a && a[0] && a[1] && !a[2]);
    if (a) {
	T_EQ_STR(a[0], "127.0.0.1:10587");
	T_EQ_STR(a[1], "[::1]:10587");
    }
    str_list_free(a);
    a = master_listen_addrs(&svc, known, lonly, 0, err, sizeof(err));
    T_CHECK(a && a[1] && !a[2]);
    str_list_free(a);
    svc.service = "[::1]:submission";
    a = master_listen_addrs(&svc, known, all, 0, err, sizeof(err));
    T_CHECK(a && a[0] && !a[1]);
    if (a)
	T_EQ_STR(a[0], "[::1]:10587");
    str_list_free(a);
    svc.service = "127.0.0.1:nosuchport";
    a = master_listen_addrs(&svc, known, all, 0, err, sizeof(err));
    T_CHECK(a == 0 && strstr(err, "line 3: unknown service \"nosuchport\""));
}

int     main(void)
{
    if (mkdtemp(tmpdir) == 0)
	return (1);
    T_RUN(test_parse);
    T_RUN(test_errors);
    T_RUN(test_ports);
    T_RUN(test_addrs);
    {
	char   *cmd = xasprintf("rm -rf %s", tmpdir);

	if (system(cmd) != 0)
	    perror("rm");
	free(cmd);
    }
    return (t_done());
}
