/*
 * relayqd - the relay daemon.
 *
 *   relayqd [-c CONFDIR] [-o name=value]...
 *
 * Runs in the foreground.  Start-up order: configuration, log, the queue
 * directory set up through descriptors (queue_dir_prepare: no link
 * followed, docs/security.md), the listeners bound and the tables opened
 * (what needs root), then, when started as root, it becomes mail_owner;
 * only then the queue (lock, database, recovery) and the sockets, and the
 * SMTP port listens last.
 * SIGTERM/SIGINT: stop accepting, let what is in flight finish or be
 * abandoned safely, exit 0.  SIGHUP: reload the configuration (a bad file
 * is reported and the old one kept) and reopen the log.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "util/util.h"
#include "log/log.h"
#include "util/safe_file.h"
#include "relayqd/relayqd.h"
#include "explain/explain.h"
#include "relayqd/retry_policy.h"
#include "cleanup/cleanup.h"

#define RELAYQ_VERSION "0.1"

static void usage(void)
{
    fprintf(stderr, "usage: relayqd [-c CONFDIR] [-o name=value]...\n");
    exit(1);
}

/* mkdir -p of the queue directory's parents (the queue makes the directory itself). */
static int mkdir_parents(const char *path, char *err, size_t errlen)
{
    char   *p = xstrdup(path);

    for (char *s = p + 1; *s; s++) {
	if (*s != '/')
	    continue;
	*s = 0;
	if (mkdir(p, 0755) == 0) {
	    /* traversable by mail_owner whatever the umask */
	    (void) chmod(p, 0755);
	} else if (errno != EEXIST) {
	    snprintf(err, errlen, "cannot create directory %s: %s", p, strerror(errno));
	    free(p);
	    return (-1);
	}
	*s = '/';
    }
    free(p);
    return (0);
}

/* ---- privileges ---- */

/*
 * The queue directory as root (Postfix's safe_open(3) as the model, see
 * docs/security.md): the directory is opened without following a link
 * and every change inside it goes through that descriptor.  A queue path
 * that is a symbolic link, or that belongs to anyone but root and
 * mail_owner, stops the start with one line.  The queue itself (lock,
 * database, sockets) is opened only after becoming mail_owner.
 */
static int queue_dir_prepare(RELAYQD *d, char *err, size_t errlen)
{
    const char *qdir = config_str(d->cf, "queue_directory");
    struct group *gr = getgrnam(config_str(d->cf, "setgid_group"));
    const char *entries[] = {"queue.db", "queue.db-wal", "queue.db-shm", "lock", "reserve"};
    uid_t   uid = geteuid();
    gid_t   gid = getegid();
    struct passwd *pw;
    int     fd, lfd, ret = -1;

    if (uid == 0) {
	const char *owner = config_str(d->cf, "mail_owner");

	if ((pw = getpwnam(owner)) == NULL) {
	    snprintf(err, errlen, "mail_owner user \"%s\" does not exist; create it with: "
		     "useradd --system --no-create-home --shell /usr/sbin/nologin %s", owner, owner);
	    return (-1);
	}
	if (pw->pw_uid == 0) {
	    snprintf(err, errlen, "mail_owner must not be root");
	    return (-1);
	}
	uid = pw->pw_uid;
	gid = pw->pw_gid;
    }
    if ((fd = safe_dir_open(qdir, 0700, uid, err, errlen)) < 0)
	return (-1);
    /* Traversable by local users for the public socket and the maildrop (as /var/spool/postfix). */
    if ((geteuid() == 0 && fchown(fd, uid, gid) < 0) || fchmod(fd, 0755) < 0) {
	snprintf(err, errlen, "chown/chmod %s: %s", qdir, strerror(errno));
	goto out;
    }
    for (size_t i = 0; i < ARRAY_LEN(entries); i++)
	if (safe_entry_check(fd, qdir, entries[i], uid, err, errlen) < 0)
	    goto out;
    if (safe_subdir(fd, qdir, "public", uid, (gid_t) -1, 0755, err, errlen) < 0
	|| safe_subdir(fd, qdir, "private", uid, gr ? gr->gr_gid : (gid_t) -1,
		       gr ? 02710 : 0700, err, errlen) < 0
	|| safe_subdir(fd, qdir, "maildrop", uid, (gid_t) -1, 01733, err, errlen) < 0)
	goto out;
    /* Is another relayqd using this queue?  Asked here so that its port does not answer first. */
    if ((lfd = safe_file_open(fd, qdir, "lock", uid, err, errlen)) < 0)
	goto out;
    if (geteuid() == 0 && fchown(lfd, uid, gid) < 0) {
	snprintf(err, errlen, "chown %s/lock: %s", qdir, strerror(errno));
	close(lfd);
	goto out;
    }
    if (flock(lfd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
	char    buf[32];
	ssize_t n = pread(lfd, buf, sizeof(buf) - 1, 0);

	buf[n > 0 ? n : 0] = 0;
	snprintf(err, errlen, "queue directory %s is locked by a running relayqd (pid %ld)",
		 qdir, strtol(buf, 0, 10));
	close(lfd);
	goto out;
    }
    close(lfd);					/* the queue takes the lock for good */
    ret = 0;
out:
    close(fd);
    return (ret);
}

/* Started as root: become mail_owner for good.  Started as anyone else: stay. */
static int drop_privileges(RELAYQD *d, char *err, size_t errlen)
{
    const char *owner = config_str(d->cf, "mail_owner");
    const char *qdir = config_str(d->cf, "queue_directory");
    struct passwd *pw;

    if (geteuid() != 0)
	return (0);
    if ((pw = getpwnam(owner)) == NULL || pw->pw_uid == 0) {
	snprintf(err, errlen, "mail_owner user \"%s\" is unusable", owner);
	return (-1);
    }
    if (log_fd() > 2 && fchown(log_fd(), pw->pw_uid, pw->pw_gid) < 0)
	log_warn("master", "chown of the log file: %s", strerror(errno));
    if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
	snprintf(err, errlen, "cannot become user %s: %s", owner, strerror(errno));
	return (-1);
    }
    if (setuid(0) == 0) {
	snprintf(err, errlen, "still root after dropping privileges");
	return (-1);
    }
    if (access(qdir, R_OK | W_OK | X_OK) < 0) {
	snprintf(err, errlen, "queue_directory %s is not usable by mail_owner %s: %s "
		 "(every directory above it must be searchable by that user)", qdir, owner, strerror(errno));
	return (-1);
    }
    return (0);
}

/* ---- descriptors ---- */

#define RELAYQD_OUTGOING_FDS	1000	/* outgoing SMTP sessions (and their DNS) */
#define RELAYQD_OTHER_FDS	256	/* queue, log, control, metrics, tables */

/*
 * Raise the soft RLIMIT_NOFILE to cover relayq_smtpd_session_limit plus
 * outgoing sessions and files (never above the hard limit: systemd's
 * LimitNOFILE sets that).  Say so when it cannot: accept() would fail with
 * EMFILE before the session limit is reached.
 */
static void raise_nofile(RELAYQD *d)
{
    struct rlimit rl;
    long long sessions = config_int(d->cf, "relayq_smtpd_session_limit");
    rlim_t  need = (rlim_t) sessions + RELAYQD_OUTGOING_FDS + RELAYQD_OTHER_FDS;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
	return;
    if (rl.rlim_cur < need) {
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
	(void) setrlimit(RLIMIT_NOFILE, &rl);
	(void) getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < need)
	log_warn("master", "open file limit %llu cannot cover relayq_smtpd_session_limit=%lld"
		 " plus %d outgoing sessions and %d files (%llu needed): raise LimitNOFILE"
		 " or lower relayq_smtpd_session_limit", (unsigned long long) rl.rlim_cur,
		 sessions, RELAYQD_OUTGOING_FDS, RELAYQD_OTHER_FDS, (unsigned long long) need);
}

/* ---- signals ---- */

static void exit_check(evutil_socket_t fd, short what, void *ctx)
{
    RELAYQD *d = ctx;
    static int ticks;

    ticks++;
    if ((sched_idle(d->sched) && smtpd_sessions(d->smtpd) == 0 && admin_idle(d)) || ticks > 200)
	event_base_loopbreak(d->base);
}

static int smtpd_stopped;

static void on_smtpd_stopped(void *ctx)
{
    smtpd_stopped = 1;
}

static void on_term(evutil_socket_t sig, short what, void *ctx)
{
    RELAYQD *d = ctx;
    struct timeval tv = {0, 100000};

    if (d->stopping)
	return;
    d->stopping = 1;
    sched_stop(d->sched);
    log_msg("master", "terminating on signal %d", (int) sig);
    smtpd_shutdown(d->smtpd, on_smtpd_stopped, d);
    smtp_shutdown(d->smtp);
    d->exit_timer = event_new(d->base, -1, EV_PERSIST, exit_check, d);
    event_add(d->exit_timer, &tv);
}

/*
 * The queue's reserve for its own bookkeeping on a full disk:
 * relayq_queue_reserve_size, or by default room for a WAL checkpoint
 * (SQLite's 1000 pages of 4 KiB) plus two of the largest messages.
 */
static void reserve_apply(RELAYQD *d)
{
    long long size = config_size(d->cf, "relayq_queue_reserve_size");
    long long limit = config_size(d->cf, "message_size_limit");

    if (size <= 0)
	size = 4LL * 1024 * 1024 + 2 * (limit > 0 ? limit : 10240000LL);
    long long minfree = config_size(d->cf, "queue_minfree");
    long long want = (long long) (1.5 * (double) (limit > 0 ? limit : 0));

    queue_set_reserve(d->queue, size, minfree > want ? minfree : want);
}

/*
 * Every parameter that takes lookup tables.  relayqd opens them all at
 * start, before it drops privileges (a table only root may read is read
 * then and kept), holds them open so that every module's lookups share
 * one copy, and re-reads changed files on SIGHUP.  Parameters this build
 * does not know are skipped.
 */
static const char *table_params[] = {
    "transport_maps", "relay_domains", "relay_recipient_maps",
    "smtp_sasl_password_maps", "smtp_tls_policy_maps", "sender_dependent_relayhost_maps",
    "smtpd_sender_login_maps", "sender_bcc_maps", "recipient_bcc_maps", "masquerade_exceptions",
    "canonical_maps", "sender_canonical_maps", "recipient_canonical_maps",
    "smtp_generic_maps", "virtual_alias_maps", "header_checks", "body_checks",
    "smtp_header_checks", "mime_header_checks", "nested_header_checks",
    "smtp_mime_header_checks", "smtp_nested_header_checks", "smtp_body_checks",
    "smtpd_client_restrictions_maps", "relayq_retry_policy_maps",
};

/* Address rewriting's settings (*_classes values, socketmap refused) load, or err. */
static int rewrite_check(const CONFIG *cf, char *err, size_t errlen)
{
    CLEANUP_RW *rw = cleanup_rw_create(cf, err, errlen);

    cleanup_rw_free(rw);
    return (rw ? 0 : -1);
}

/* Open cf's tables (type:name elements of the parameters above). */
static int tables_open(const CONFIG *cf, TABLE_LIST ***out, int *nout, char *err, size_t errlen)
{
    TABLE_LIST **v = xcalloc(ARRAY_LEN(table_params), sizeof(TABLE_LIST *));
    int     n = 0;

    for (size_t i = 0; i < ARRAY_LEN(table_params); i++) {
	char  **elems;
	BUF     specs = BUF_INIT;

	if (!config_known(table_params[i]))
	    continue;
	elems = config_list(cf, table_params[i], 0);
	for (char **e = elems; *e; e++)
	    if ((strcmp(table_params[i], "relay_domains") != 0
		 && strcmp(table_params[i], "masquerade_exceptions") != 0) || strchr(*e, ':')) {
		buf_puts(&specs, specs.len ? ", " : "");
		buf_puts(&specs, *e);
	    }
	str_list_free(elems);
	if (specs.len == 0) {
	    buf_free(&specs);
	    continue;
	}
	if ((v[n] = table_list_open(table_params[i], specs.data, TABLE_FLAG_FOLD, err, errlen)) == NULL) {
	    buf_free(&specs);
	    while (n > 0)
		table_list_close(v[--n]);
	    free(v);
	    return (-1);
	}
	n++;
	buf_free(&specs);
    }
    {
	QMGR_PARAMS qp;

	explain_params(cf, &qp);
	if (retry_policy_check(cf, &qp, err, errlen) < 0) {
	    while (n > 0)
		table_list_close(v[--n]);
	    free(v);
	    return (-1);
	}
    }
    if (smtp_route_check(cf, err, errlen) < 0) {
	while (n > 0)
	    table_list_close(v[--n]);
	free(v);
	return (-1);
    }
    *out = v;
    *nout = n;
    return (0);
}

static void tables_close(TABLE_LIST **v, int n)
{
    for (int i = 0; i < n; i++)
	table_list_close(v[i]);
    free(v);
}

/* Parameters that take effect only at restart. */
static const char *restart_params[] = {"smtpd_listen", "queue_directory", "mail_owner", "metrics_listen"};

/* Queue views are paced while this is true (qview_set_pacing). */
static int relay_busy(void *ctx)
{
    RELAYQD *d = ctx;

    return (!sched_idle(d->sched) || smtpd_sessions(d->smtpd) > 0);
}

static void on_hup(evutil_socket_t sig, short what, void *ctx)
{
    RELAYQD *d = ctx;
    char    err[512];
    CONFIG *ncf = config_load(d->confdir, d->overrides, d->noverrides, 0, err, sizeof(err));

    TABLE_LIST **ntables = NULL;
    int     nntables = 0;

    log_reopen();
    if (ncf == NULL) {
	log_warn("master", "reload failed, keeping the old configuration: %s", err);
	return;
    }
    /* Changed table files first, then the new configuration's tables (shared when unchanged). */
    table_reload_all("master");
    if (tables_open(ncf, &ntables, &nntables, err, sizeof(err)) < 0) {
	log_warn("master", "reload failed, keeping the old configuration: %s", err);
	smtp_route_check(d->cf, err, sizeof(err));
	config_free(ncf);
	return;
    }
    if (rewrite_check(ncf, err, sizeof(err)) < 0) {
	log_warn("master", "reload failed, keeping the old configuration: %s", err);
	tables_close(ntables, nntables);
	config_free(ncf);
	return;
    }
    tables_close(d->tables, d->ntables);
    d->tables = ntables;
    d->ntables = nntables;
    for (size_t i = 0; i < ARRAY_LEN(restart_params); i++)
	if (strcmp(config_str(ncf, restart_params[i]), config_str(d->cf, restart_params[i])) != 0)
	    log_warn("master", "%s changed: it takes effect only after a restart", restart_params[i]);

    smtpd_reconfigure(d->smtpd, ncf);
    smtp_reconfigure(d->smtp, ncf);
    sched_reconfigure(d->sched, ncf);
    control_set_stream_timeout(d->control, (int) config_time(ncf, "ipc_timeout"));
    qview_set_pacing(d->view, (int) config_int(ncf, "relayq_queue_view_cpu_share"), relay_busy, d);
    /* Modules keep pointers into the configuration until reconfigured: free the old one only now. */
    config_free(d->cf);
    d->cf = ncf;
    reserve_apply(d);
    log_msg("master", "reload -- version %s, configuration %s", RELAYQ_VERSION, config_dir(d->cf));
}

/* ---- glue ---- */

static void on_queued(void *ctx, const QMSG *msg)
{
    RELAYQD *d = ctx;

    sched_add_incoming(d->sched, msg);
}

static void on_queue_notify(evutil_socket_t fd, short what, void *ctx)
{
    RELAYQD *d = ctx;

    queue_dispatch(d->queue);
}

static void on_pickup(evutil_socket_t fd, short what, void *ctx)
{
    pickup_scan(ctx);
}

static void recover_warn(void *ctx, const char *qid, const char *why)
{
    log_warn("qmgr", "%s: corrupt queue record moved to the corrupt state: %s", qid, why);
}

/*
 * A fatal error during start-up (msg_fatal: "relayqd: fatal: ..." on
 * stderr, and in the maillog once it is open) lets the queue's writer
 * finish and releases the queue lock before exit.
 */
static QUEUE *startup_queue;

static void startup_cleanup(void)
{
    if (startup_queue)
	queue_close(startup_queue);
}

/*
 * Descriptors 0-2 closed by whoever started us would be reused by the
 * first files and sockets opened, and a diagnostic written to "stderr"
 * would land in one of them: point them at /dev/null first.
 */
static void std_fds_open(void)
{
    for (int fd = 0; fd <= 2; fd++) {
	if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
	    int     nfd = open("/dev/null", O_RDWR);

	    if (nfd >= 0 && nfd != fd) {
		dup2(nfd, fd);
		close(nfd);
	    }
	}
    }
}

int     main(int argc, char **argv)
{
    RELAYQD d;
    char    err[1024];
    int     ch;

    memset(&d, 0, sizeof(d));
    std_fds_open();
    msg_init("relayqd", "master");
    msg_cleanup(startup_cleanup);
    d.overrides = xcalloc((size_t) argc + 1, sizeof(char *));
    while ((ch = getopt(argc, argv, "c:o:")) != -1) {
	switch (ch) {
	case 'c':
	    d.confdir = optarg;
	    break;
	case 'o':
	    d.overrides[d.noverrides++] = optarg;
	    break;
	default:
	    usage();
	}
    }
    if (optind != argc)
	usage();
    signal(SIGPIPE, SIG_IGN);
    /* The queue database and what the daemon creates are not for other users. */
    umask(077);

    if ((d.cf = config_load(d.confdir, d.overrides, d.noverrides, 0, err, sizeof(err))) == NULL)
	msg_fatal("%s", err);
    if (log_open(config_str(d.cf, "maillog_file"), config_str(d.cf, "syslog_name"),
		 config_str(d.cf, "myhostname"), err, sizeof(err)) < 0)
	msg_fatal("%s", err);
    raise_nofile(&d);
    evthread_use_pthreads();
    if ((d.base = event_base_new()) == NULL)
	msg_fatal("cannot create the event loop");

    /*
     * As root only what needs root: the queue directory's own set-up
     * (through descriptors, see queue_dir_prepare), the listeners; then
     * mail_owner opens the queue and makes the sockets in it.
     */
    const char *qdir = config_str(d.cf, "queue_directory");

    if (mkdir_parents(qdir, err, sizeof(err)) < 0 || queue_dir_prepare(&d, err, sizeof(err)) < 0)
	msg_fatal("%s", err);
    SMTPD_HOOKS hooks = {on_queued, &d};

    d.smtpd = smtpd_create(d.base, d.cf, NULL, &hooks);
    if (smtpd_bind(d.smtpd, err, sizeof(err)) < 0)
	msg_fatal("%s", err);
    const char *mlisten = config_str(d.cf, "metrics_listen");

    if (mlisten && *mlisten
	&& (d.metrics = metrics_create(d.base, mlisten, stats_metrics, &d, err, sizeof(err))) == NULL)
	msg_fatal("%s", err);
    table_set_event_base(d.base);
    if (tables_open(d.cf, &d.tables, &d.ntables, err, sizeof(err)) < 0)
	msg_fatal("%s", err);
    if (rewrite_check(d.cf, err, sizeof(err)) < 0)
	msg_fatal("%s", err);
    /* Before dropping root: a root-only smtp_sasl_password_maps file is read now. */
    d.smtp = smtp_create(d.base, d.cf);
    if (drop_privileges(&d, err, sizeof(err)) < 0)
	msg_fatal("%s", err);
    if ((d.queue = queue_open(qdir, QUEUE_OPEN_DAEMON, err, sizeof(err))) == NULL)
	msg_fatal("%s", err);
    startup_queue = d.queue;			/* from here on a fatal error closes it */
    smtpd_set_queue(d.smtpd, d.queue);
    reserve_apply(&d);
    struct group *gr = getgrnam(config_str(d.cf, "setgid_group"));

    d.control = control_create(d.base, qdir, gr ? (int) gr->gr_gid : -1, admin_handle, &d, err, sizeof(err));
    if (d.control == NULL)
	msg_fatal("%s", err);
    control_set_stream_timeout(d.control, (int) config_time(d.cf, "ipc_timeout"));
    if ((d.view = qview_create(d.base, d.queue, err, sizeof(err))) == NULL)
	msg_fatal("%s", err);
    if (queue_recover(d.queue, recover_warn, &d, err, sizeof(err)) < 0)
	msg_fatal("queue recovery failed in %s: %s", qdir, err);
    d.sched = sched_create(d.base, d.cf, d.queue, d.smtp);
    d.top = top_create(&d);
    qview_set_pacing(d.view, (int) config_int(d.cf, "relayq_queue_view_cpu_share"), relay_busy, &d);

    d.queue_ev = event_new(d.base, queue_notify_fd(d.queue), EV_READ | EV_PERSIST, on_queue_notify, &d);
    event_add(d.queue_ev, NULL);
    d.sig_term = evsignal_new(d.base, SIGTERM, on_term, &d);
    d.sig_int = evsignal_new(d.base, SIGINT, on_term, &d);
    d.sig_hup = evsignal_new(d.base, SIGHUP, on_hup, &d);
    event_add(d.sig_term, NULL);
    event_add(d.sig_int, NULL);
    event_add(d.sig_hup, NULL);
    d.pickup_timer = event_new(d.base, -1, EV_PERSIST, on_pickup, &d);
    struct timeval one = {1, 0};

    event_add(d.pickup_timer, &one);

    log_msg("master", "daemon started -- version %s, configuration %s", RELAYQ_VERSION,
	    config_dir(d.cf));
    sched_start(d.sched);
    pickup_scan(&d);
    /* Last: a client that can connect finds the queue, the sockets and the schedule ready. */
    if (smtpd_listen(d.smtpd, err, sizeof(err)) < 0)
	msg_fatal("%s", err);

    /*
     * Running: from now on diagnostics (a reload's configuration warnings
     * included) go to the maillog only, and a fatal error no longer closes
     * the queue from whatever thread or callback it happens in.
     */
    msg_cleanup(NULL);
    msg_stderr(0);
    event_base_dispatch(d.base);

    /* Stopped: let the writer finish what was submitted, then close. */
    sched_run_later(d.sched);
    sched_record_suspended(d.sched);
    qview_stop(d.view);
    queue_close(d.queue);
    log_msg("master", "daemon stopped");
    smtp_free(d.smtp);
    tables_close(d.tables, d.ntables);
    if (smtpd_stopped)				/* else sessions may still hold it; the process ends anyway */
	smtpd_free(d.smtpd);
    control_free(d.control);
    qview_free(d.view);
    metrics_free(d.metrics);
    top_free(d.top);
    sched_free(d.sched);
    struct event *evs[] = {d.queue_ev, d.sig_term, d.sig_int, d.sig_hup, d.pickup_timer, d.exit_timer};

    for (size_t i = 0; i < ARRAY_LEN(evs); i++)
	if (evs[i])
	    event_free(evs[i]);
    event_base_free(d.base);
    log_close();
    config_free(d.cf);
    free(d.overrides);
    return (0);
}
