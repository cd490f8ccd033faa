/*
 * relayq - the command-line interface: `relayq [-c CONFDIR] [-o name=value]
 * ... COMMAND [ARGS]`, and, by the name it is called under, `mailq` and
 * `sendmail` (symbolic links to the same binary).
 *
 * Queries go through the daemon's public socket and changes through its
 * admin socket (src/control).  When the daemon is down, the CLI works on
 * the queue itself: it reads it (mailq, qshape) or, for the postsuper
 * commands, takes the queue lock and edits it; flush needs the daemon.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "explain/explain.h"
#include "control/control.h"
#include "log/log.h"
#include "queue/queue.h"
#include "smtp/smtp.h"
#include "util/util.h"

#define EX_USAGE_STATUS 64
#define REQUEST_MAX	3500			/* under the daemon's 4096-byte line limit */

void    cli_fatal(int status, const char *fmt, ...)
{
    va_list ap;

    fputs("relayq: fatal: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(status);
}

void    cli_warn(const char *fmt, ...)
{
    va_list ap;

    fputs("relayq: warning: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void usage(void)
{
    fprintf(stderr,
	    "usage: relayq [-c CONFDIR] [-o name=value]... COMMAND [ARGS]\n"
	    "commands:\n"
	    "  mailq [-j]                     list the queue\n"
	    "  flush [DOMAIN]                 attempt deferred mail now\n"
	    "  delete|hold|release|requeue|expire ID...|ALL|-\n"
	    "  qshape [deferred|active|incoming|hold] [-s]\n"
	    "  top [--once|--json] [-d SECONDS] [-n N]  live view of the queue\n"
	    "  explain [ID] [options]         retry timeline\n"
	    "  config [-n] [-d] [--check] [NAME...]\n"
	    "  postmap [-f] [-i] [-q KEY] [-s] type:file...\n"
	    "  import-postfix [SRCDIR] [--to DESTDIR] [--dry-run] [--force]\n"
	    "  check                          = config --check\n"
	    "  send [sendmail options] [RCPT...]\n");
    exit(EX_USAGE_STATUS);
}

static const CONFIG *cli_cf(CLI *cli)
{
    if (cli->cf == 0)
	cli_fatal(1, "%s", cli->load_err);
    return cli->cf;
}

static const char *cli_qdir(CLI *cli)
{
    return config_str(cli_cf(cli), "queue_directory");
}

/* Print a daemon payload or a local result as is. */
static void cli_print(FILE *fp, const BUF *b)
{
    if (b->len)
	fwrite(b->data, 1, b->len, fp);
    fflush(fp);
}

/* Each line on stderr with the program prefix, as postsuper reports. */
static void cli_report(const BUF *b)
{
    const char *p = b->data ? b->data : "", *nl;

    while (*p) {
	nl = strchr(p, '\n');
	fprintf(stderr, "relayq: %.*s\n", nl ? (int) (nl - p) : (int) strlen(p), p);
	if (nl == 0)
	    break;
	p = nl + 1;
    }
}

/*
 * The queue without the daemon.  Run as root, the CLI first becomes
 * mail_owner for good: the database, its -wal and -shm and the lock are
 * then opened with no more rights than the daemon has, so nothing that
 * mail_owner planted in the queue directory can lead root anywhere.
 */
QUEUE  *cli_queue_open(CLI *cli, int mode, char *err, size_t errlen)
{
    const char *owner = config_str(cli_cf(cli), "mail_owner");
    struct passwd *pw;

    if (geteuid() == 0) {
	if ((pw = getpwnam(owner)) == 0 || pw->pw_uid == 0)
	    cli_fatal(1, "mail_owner %s: no such user, or root", owner);
	if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
	    cli_fatal(1, "cannot become mail_owner %s: %s", owner, strerror(errno));
    }
    return queue_open(cli_qdir(cli), mode, err, errlen);
}

/*
 * Whether this user may write the queue (its directory and database), to
 * tell "permission denied" from other reasons queue_open() gave, by asking
 * the kernel rather than reading the message.
 */
static int cli_may_write_queue(CLI *cli)
{
    const char *qdir = cli_qdir(cli);
    char   *db = xasprintf("%s/queue.db", qdir);
    int     ok = faccessat(AT_FDCWD, qdir, W_OK | X_OK, AT_EACCESS) == 0
    && (faccessat(AT_FDCWD, db, R_OK | W_OK, AT_EACCESS) == 0 || errno == ENOENT);

    free(db);
    return (ok);
}

static void cli_denied(CLI *cli, const char *err)
{
    cli_fatal(1, "permission denied: you are not in group %s (%s)",
	      config_str(cli_cf(cli), "setgid_group"), err);
}

static int cli_open_log(CLI *cli)
{
    const CONFIG *cf = cli_cf(cli);
    char    err[256];

    if (log_open(config_str(cf, "maillog_file"), config_str(cf, "syslog_name"),
		 config_str(cf, "myhostname"), err, sizeof(err)) < 0) {
	cli_warn("%s", err);
	return -1;
    }
    return 0;
}

/* ---- config / check ---- */

static int cli_check_dir(const char *path, const char *what, int must_exist, mode_t bad_bits, int *problems)
{
    struct stat st;

    if (stat(path, &st) < 0) {
	if (must_exist || errno != ENOENT) {
	    fprintf(stderr, "relayq: error: %s %s: %s\n", what, path, strerror(errno));
	    (*problems)++;
	}
	return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
	fprintf(stderr, "relayq: error: %s %s is not a directory\n", what, path);
	(*problems)++;
	return -1;
    }
    if (st.st_mode & bad_bits) {
	fprintf(stderr, "relayq: error: %s %s has mode %04o: it must not be writable by other users\n",
		what, path, (unsigned) (st.st_mode & 07777));
	(*problems)++;
    }
    return 0;
}

static int cli_check(CLI *cli)
{
    const CONFIG *cf;
    const char *qdir, *owner, *group;
    struct passwd *pw;
    struct group *gr;
    struct stat st;
    int     problems = 0;
    char   *p;

    if (cli->cf == 0) {
	fprintf(stderr, "relayq: error: %s\n", cli->load_err);
	return 1;
    }
    cf = cli->cf;
    /* Postfix parameters relayq does not implement are information; unknown names are errors. */
    config_report_postfix(cf, stdout);
    if (config_warnings(cf) > 0) {
	fprintf(stderr, "relayq: error: %d unknown parameter name%s in %s (see the warnings above)\n",
		config_warnings(cf), config_warnings(cf) == 1 ? "" : "s", config_file(cf));
	problems++;
    }
    qdir = config_str(cf, "queue_directory");
    owner = config_str(cf, "mail_owner");
    group = config_str(cf, "setgid_group");
    if ((pw = getpwnam(owner)) == 0) {
	fprintf(stderr, "relayq: error: mail_owner %s: no such user (scripts/deps --users creates it)\n", owner);
	problems++;
    }
    if ((gr = getgrnam(group)) == 0) {
	fprintf(stderr, "relayq: error: setgid_group %s: no such group\n", group);
	problems++;
    }
    if (cli_check_dir(qdir, "queue_directory", 1, S_IWOTH, &problems) == 0) {
	if (stat(qdir, &st) == 0 && pw && st.st_uid != pw->pw_uid && pw->pw_uid != 0)
	    fprintf(stderr, "relayq: warning: queue_directory %s is owned by uid %lu, not by mail_owner %s"
		    " (the daemon takes it over when started as root)\n",
		    qdir, (unsigned long) st.st_uid, owner);
	p = xasprintf("%s/queue.db", qdir);
	if (stat(p, &st) == 0 && (st.st_mode & (S_IWGRP | S_IWOTH))) {
	    fprintf(stderr, "relayq: error: %s has mode %04o: only mail_owner may write the queue\n",
		    p, (unsigned) (st.st_mode & 07777));
	    problems++;
	}
	free(p);
	p = xasprintf("%s/private", qdir);
	cli_check_dir(p, "directory", 0, S_IWOTH | S_IWGRP, &problems);
	free(p);
	p = xasprintf("%s/maildrop", qdir);
	if (stat(p, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) != 01733) {
	    fprintf(stderr, "relayq: error: %s has mode %04o, expected 1733\n", p, (unsigned) (st.st_mode & 07777));
	    problems++;
	}
	free(p);
    }
    problems += smtp_check(cf, stderr);
    if (problems == 0)
	printf("relayq: configuration %s and queue directory %s: OK\n", config_file(cf), qdir);
    return problems ? 1 : 0;
}

int     cli_config(CLI *cli, int argc, char **argv)
{
    int     flags = 0, check = 0, i;
    char  **names;
    int     nnames = 0;

    if (strcmp(argv[0], "check") == 0)
	check = 1;
    names = xcalloc(argc + 1, sizeof(char *));
    for (i = 1; i < argc; i++) {
	if (strcmp(argv[i], "-n") == 0)
	    flags |= CONFIG_SHOW_NONDEFAULT;
	else if (strcmp(argv[i], "-d") == 0)
	    flags |= CONFIG_SHOW_DEFAULTS;
	else if (strcmp(argv[i], "--check") == 0)
	    check = 1;
	else if (argv[i][0] == '-')
	    usage();
	else
	    names[nnames++] = argv[i];
    }
    if (check) {
	free(names);
	return cli_check(cli);
    }
    i = config_show(cli_cf(cli), stdout, flags, names, nnames);
    free(names);
    return i;
}

/*
 * Ask the daemon on the query socket: its answer is printed and 1 is
 * returned.  When it is down, or the socket is not ours to use, say so as
 * postqueue does and return 0 with *q open for reading: the caller answers
 * from the queue itself with the same code.  An error answer is fatal.
 */
static int cli_stdout(void *ctx, const char *data, size_t len)
{
    return fwrite(data, 1, len, stdout) == len ? 0 : -1;
}

static int cli_ask(CLI *cli, const char *request, QUEUE **q)
{
    char    err[512];
    int     ret;

    /* Printed as it comes: the daemon streams a large queue's views. */
    ret = control_call_stream(cli_qdir(cli), 0, request, cli_stdout, NULL, err, sizeof(err));
    if (ret == CONTROL_OK) {
	if (fflush(stdout) != 0)
	    cli_fatal(1, "write: %s", strerror(errno));
	return 1;
    }
    if (ret == CONTROL_ERROR) {
	fflush(stdout);
	cli_fatal(1, "%s", err);
    }
    fprintf(stderr, "relayq: warning: Mail system is down -- accessing queue directly\n");
    if ((*q = cli_queue_open(cli, QUEUE_OPEN_READ, err, sizeof(err))) == 0)
	cli_fatal(1, "cannot read the queue: %s", err);
    return 0;
}

/* ---- mailq ---- */

int     cli_mailq(CLI *cli, int argc, char **argv)
{
    const char *qdir = cli_qdir(cli);
    int     json = 0, i, ret;
    BUF     out = BUF_INIT;
    QUEUE  *q;

    for (i = 1; i < argc; i++) {
	if (strcmp(argv[i], "-j") == 0)
	    json = 1;
	else
	    usage();
    }
    if (cli_ask(cli, json ? "mailq json" : "mailq text", &q))
	return 0;
    if (json) {
	QMGR_PARAMS p;

	explain_params(cli_cf(cli), &p);
	ret = showq_json(q, 0, 0, &p, &out);
    } else {
	ret = showq_text(q, 0, 0, &out);
    }
    queue_close(q);
    if (ret < 0)
	cli_fatal(1, "error reading the queue in %s", qdir);
    cli_print(stdout, &out);
    buf_free(&out);
    return 0;
}

/* ---- flush ---- */

int     cli_flush(CLI *cli, int argc, char **argv)
{
    char    err[512];
    char   *req;
    BUF     out = BUF_INIT;
    int     ret;

    if (argc > 2 || (argc == 2 && (argv[1][0] == '-' || strchr(argv[1], ' '))))
	usage();
    req = argc == 2 ? xasprintf("flush %s", argv[1]) : xstrdup("flush");
    ret = control_call(cli_qdir(cli), 1, req, &out, err, sizeof(err));
    free(req);
    if (ret == CONTROL_DOWN)
	cli_fatal(1, "the mail system is not running");
    if (ret == CONTROL_DENIED)
	cli_denied(cli, err);
    if (ret != CONTROL_OK)
	cli_fatal(1, "%s", err);
    cli_print(stdout, &out);
    buf_free(&out);
    return 0;
}

/* ---- delete / hold / release / requeue / expire ---- */

/* Queue IDs are hex or "ALL"; anything else would be a different request. */
static int cli_valid_id(const char *s)
{
    const char *p;

    if (strcmp(s, "ALL") == 0)
	return 1;
    if (*s == 0 || strlen(s) > 15)
	return 0;
    for (p = s; *p; p++)
	if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
	    return 0;
    return 1;
}

static void cli_add_id(char ***ids, int *n, int *cap, const char *id)
{
    if (!cli_valid_id(id))
	cli_fatal(1, "invalid queue ID: \"%s\"", id);
    if (*n == *cap) {
	*cap = *cap ? 2 * *cap : 16;
	*ids = xrealloc(*ids, *cap * sizeof(char *));
    }
    (*ids)[(*n)++] = xstrdup(id);
}

int     cli_admin(CLI *cli, int argc, char **argv)
{
    const char *op = argv[0];
    const char *qdir = cli_qdir(cli);
    char  **ids = 0;
    int     nids = 0, cap = 0, i, start, ret = CONTROL_OK;
    char    err[512], line[256];
    BUF     out = BUF_INIT, req = BUF_INIT;
    QUEUE  *q;

    if (argc < 2)
	usage();
    for (i = 1; i < argc; i++) {
	if (strcmp(argv[i], "-") == 0) {
	    while (fgets(line, sizeof(line), stdin)) {
		char   *s = str_trim(line);

		if (*s)
		    cli_add_id(&ids, &nids, &cap, s);
	    }
	} else {
	    cli_add_id(&ids, &nids, &cap, argv[i]);
	}
    }
    if (nids == 0) {
	fprintf(stderr, "relayq: no queue IDs given\n");
	return 0;
    }
    /* Through the daemon, in requests that fit its line limit. */
    for (start = 0; start < nids && ret == CONTROL_OK;) {
	buf_reset(&req);
	buf_puts(&req, op);
	for (i = start; i < nids && (i == start || req.len + strlen(ids[i]) + 1 < REQUEST_MAX); i++)
	    buf_printf(&req, " %s", ids[i]);
	buf_reset(&out);
	ret = control_call(qdir, 1, req.data, &out, err, sizeof(err));
	if (ret == CONTROL_OK)
	    cli_report(&out);
	start = i;
    }
    if (ret == CONTROL_DENIED)
	cli_denied(cli, err);
    if (ret == CONTROL_ERROR)
	cli_fatal(1, "%s", err);
    if (ret == CONTROL_DOWN) {
	/* No daemon: edit the queue under its lock, as postsuper does. */
	if ((q = cli_queue_open(cli, QUEUE_OPEN_ADMIN, err, sizeof(err))) == 0) {
	    if (!cli_may_write_queue(cli))
		cli_fatal(1, "permission denied: %s (run as root or mail_owner)", err);
	    cli_fatal(1, "%s", err);
	}
	cli_open_log(cli);
	buf_reset(&out);
	i = control_admin_offline(q, op, ids, nids, (int64_t) time_sec(), &out);
	queue_close(q);
	cli_report(&out);
	if (i < 0)
	    ret = CONTROL_ERROR;
	else
	    ret = CONTROL_OK;
    }
    for (i = 0; i < nids; i++)
	free(ids[i]);
    free(ids);
    buf_free(&out);
    buf_free(&req);
    return ret == CONTROL_OK ? 0 : 1;
}

/* ---- qshape ---- */

int     cli_qshape(CLI *cli, int argc, char **argv)
{
    const char *name = 0;
    int     by_sender = 0, i, ret;
    char   *req;
    BUF     out = BUF_INIT;
    QUEUE  *q;

    for (i = 1; i < argc; i++) {
	if (strcmp(argv[i], "-s") == 0)
	    by_sender = 1;
	else if (name == 0 && (strcmp(argv[i], "deferred") == 0 || strcmp(argv[i], "active") == 0
			       || strcmp(argv[i], "incoming") == 0 || strcmp(argv[i], "hold") == 0))
	    name = argv[i];
	else
	    usage();
    }
    req = xasprintf("qshape%s%s%s", name ? " " : "", name ? name : "", by_sender ? " -s" : "");
    ret = cli_ask(cli, req, &q);
    free(req);
    if (ret)
	return 0;
    /* Same top-N as the daemon's answer (src/relayqd/admin.c). */
    ret = qshape_text(q, name, by_sender, (int64_t) time_sec(), 10, &out);
    queue_close(q);
    if (ret < 0)
	cli_fatal(1, "error reading the queue");
    cli_print(stdout, &out);
    buf_free(&out);
    return 0;
}

/* ---- explain ---- */

static int explain_usage(const char *why)
{
    fprintf(stderr, "relayq: explain: %s\n"
	    "usage: relayq explain [--arrival-offset SECONDS] [--attempt-duration SECONDS]\n"
	    "                      [--sender ADDRESS] [--max-attempts N] [--json] [--svg FILE]\n"
	    "       relayq explain QUEUEID [--attempt-duration SECONDS] [--json]\n"
	    "       relayq explain --set NAME=VALUE... --compare [configuration options]\n"
	    "       relayq explain --what-if --set NAME=VALUE... [--at TIME] [--until TIME]\n"
	    "                      [QUEUEID... | --all] [--json] [--attempt-duration SECONDS]\n",
	    why);
    return (2);
}

/*
 * explain QUEUEID: the daemon answers "explain ID [options]" on the query
 * socket, since only it knows the queue-run phase and dead destinations;
 * this prints its payload.  When it is down, the same code runs here on
 * the queue alone (no daemon state: the text says so).
 */
static int cli_explain_id(CLI *cli, const EXPLAIN_OPTS *o)
{
    BUF     req = BUF_INIT;
    char    err[512];
    QUEUE  *q;
    QMGR_PARAMS p;
    int     ret;

    if (!cli_valid_id(o->qid) || strcmp(o->qid, "ALL") == 0)
	cli_fatal(1, "invalid queue ID: \"%s\"", o->qid);
    explain_opts_request(o, &req);
    ret = cli_ask(cli, req.data, &q);
    buf_free(&req);
    if (ret)
	return 0;
    explain_params(cli_cf(cli), &p);
    ret = explain_queued(q, &p, o, NULL, NULL, 0, (int64_t) time_sec(), stdout, err, sizeof(err));
    queue_close(q);
    if (ret < 0)
	cli_fatal(1, "%s", err);
    return 0;
}

/*
 * explain --what-if: only the running daemon knows the queue-run phase, what
 * is being delivered and which destinations are dead, so it answers; the
 * changed parameters are those of its configuration with the --set values,
 * as a reload would read them.
 */
static int cli_explain_whatif(CLI *cli, const EXPLAIN_OPTS *o)
{
    BUF     req = BUF_INIT;
    char    err[512];
    QMGR_PARAMS p;
    int     ret;

    /* A bad --set value is reported here, with the file's own wording. */
    if (explain_whatif_params(cli->confdir, cli->overrides, cli->noverrides, o, &p,
			      err, sizeof(err)) < 0)
	cli_fatal(1, "%s", err);
    explain_opts_request(o, &req);
    /* Printed as it comes: the daemon streams --all a page at a time. */
    ret = control_call_stream(cli_qdir(cli), 0, req.data, cli_stdout, NULL, err, sizeof(err));
    buf_free(&req);
    if (ret == CONTROL_DOWN)
	cli_fatal(1, "the mail system is not running: --what-if needs relayqd's queue-run phase "
		  "and state (start it, or use \"explain --set ... --compare\" for a configuration)");
    if (fflush(stdout) != 0)
	cli_fatal(1, "write: %s", strerror(errno));
    if (ret != CONTROL_OK)
	cli_fatal(1, "%s", err);
    return 0;
}

int     cli_explain(CLI *cli, int argc, char **argv)
{
    EXPLAIN_OPTS o;
    QMGR_PARAMS p;
    char    err[256];
    int     ret;

    if (explain_opts_parse(argc - 1, argv + 1, &o, err, sizeof(err)) < 0)
	return explain_usage(err);
    for (int i = 0; i < o.nids; i++)
	if (!cli_valid_id(o.ids[i]) || strcmp(o.ids[i], "ALL") == 0)
	    return explain_usage("unexpected argument");
    if (o.what_if)
	return cli_explain_whatif(cli, &o);
    if (o.qid)
	return cli_explain_id(cli, &o);
    explain_params(cli_cf(cli), &p);
    if (o.compare) {
	QMGR_PARAMS changed;

	if (explain_whatif_params(cli->confdir, cli->overrides, cli->noverrides, &o, &changed,
				  err, sizeof(err)) < 0)
	    cli_fatal(1, "%s", err);
	ret = explain_compare(&p, &changed, &o, stdout, err, sizeof(err));
    } else {
	ret = explain_config(&p, &o, stdout, err, sizeof(err));
    }
    if (ret < 0)
	return explain_usage(err);
    if (ret > 0)
	fprintf(stderr, "relayq: explain: %s\n", err);
    return ret;
}

/* ---- main ---- */

static const struct {
    const char *name;
    int     (*fn) (CLI *, int, char **);
} commands[] = {
    {"config", cli_config},
    {"check", cli_config},
    {"mailq", cli_mailq},
    {"flush", cli_flush},
    {"delete", cli_admin},
    {"hold", cli_admin},
    {"release", cli_admin},
    {"requeue", cli_admin},
    {"expire", cli_admin},
    {"qshape", cli_qshape},
    {"top", cli_top},
    {"postmap", cli_postmap},
    {"import-postfix", cli_import_postfix},
    {"explain", cli_explain},
    {"send", cli_sendmail},
    {"sendmail", cli_sendmail},
};

static void cli_load(CLI *cli)
{
    const char *env;

    /*
     * mailq and sendmail take no -c (Postfix's take MAIL_CONFIG from the
     * environment instead): RELAYQ_CONFIG_DIR names the configuration
     * directory when no -c/-C was given.  The CLI is not set-uid, so the
     * environment is the invoking user's own business.
     */
    if (cli->confdir == 0 && (env = getenv("RELAYQ_CONFIG_DIR")) != 0 && *env)
	cli->confdir = env;
    cli->cf = config_load(cli->confdir, cli->overrides, cli->noverrides, 1,
			  cli->load_err, sizeof(cli->load_err));
}

int     main(int argc, char **argv)
{
    CLI     cli;
    char   *base = xstrdup(argv[0]);
    const char *prog = basename(base);
    int     i, ret;
    size_t  k;

    memset(&cli, 0, sizeof(cli));
    /* relayq, mailq and sendmail all speak as "relayq:" on stderr; postsuper in the log. */
    msg_init("relayq", "postsuper");
    cli.overrides = xcalloc(argc + 1, sizeof(char *));

    /* mailq and sendmail: the binary's name is the command. */
    if (strcmp(prog, "mailq") == 0 || strcmp(prog, "relayq-mailq") == 0) {
	int     n = 1;

	/* mailq -C DIR, as Postfix's (check_mailq -d passes it); other words stay for cli_mailq. */
	for (i = 1; i < argc; i++) {
	    if (strcmp(argv[i], "-C") == 0 && i + 1 < argc)
		cli.confdir = argv[++i];
	    else
		argv[n++] = argv[i];
	}
	argv[n] = 0;
	cli_load(&cli);
	argv[0] = "mailq";
	ret = cli_mailq(&cli, n, argv);
	goto done;
    }
    if (strcmp(prog, "sendmail") == 0 || strcmp(prog, "relayq-sendmail") == 0) {
	/* sendmail -C DIR is Postfix's -c. */
	for (i = 1; i + 1 < argc; i++)
	    if (strcmp(argv[i], "-C") == 0)
		cli.confdir = argv[i + 1];
	cli_load(&cli);
	argv[0] = "sendmail";
	ret = cli_sendmail(&cli, argc, argv);
	goto done;
    }
    for (i = 1; i < argc; i++) {
	if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
	    cli.confdir = argv[++i];
	} else if (strncmp(argv[i], "-c", 2) == 0 && argv[i][2]) {
	    cli.confdir = argv[i] + 2;
	} else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
	    if (strchr(argv[i + 1], '=') == 0)
		cli_fatal(EX_USAGE_STATUS, "-o %s: expected name=value", argv[i + 1]);
	    cli.overrides[cli.noverrides++] = argv[++i];
	} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
	    usage();
	} else if (argv[i][0] == '-') {
	    fprintf(stderr, "relayq: unknown option %s\n", argv[i]);
	    usage();
	} else {
	    break;
	}
    }
    if (i >= argc)
	usage();
    cli_load(&cli);
    for (k = 0; k < ARRAY_LEN(commands); k++)
	if (strcmp(commands[k].name, argv[i]) == 0)
	    break;
    if (k == ARRAY_LEN(commands)) {
	fprintf(stderr, "relayq: unknown command: %s\n", argv[i]);
	usage();
    }
    ret = commands[k].fn(&cli, argc - i, argv + i);
done:
    if (cli.cf)
	config_free(cli.cf);
    free(cli.overrides);
    free(base);
    return ret;
}
