/*
 * log.c - Postfix-format log lines:
 *   Mmm dd hh:mm:ss HOST SYSLOG_NAME/SERVICE[PID]: TEXT
 *
 * Each line is built whole in a buffer and handed to the kernel with one
 * write(2) on an O_APPEND descriptor, so lines from threads and from other
 * processes appending to the same file never interleave, and nothing sits
 * in a stdio buffer when the process dies.  A mutex serialises the writers
 * of this process (and protects the descriptor across log_reopen()).
 *
 * With an empty maillog_file the lines go to syslog(3), facility LOG_MAIL;
 * syslog adds the time and host itself, and the ident "NAME/SERVICE" is
 * rewritten in a static buffer before each call (openlog keeps the pointer).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"

#define LOG_NAME_MAX	64
#define LOG_HOST_MAX	256

typedef enum { LOG_TO_STDERR_EARLY, LOG_TO_FD, LOG_TO_FILE, LOG_TO_SYSLOG } LOG_DEST;

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static LOG_DEST log_dest = LOG_TO_STDERR_EARLY;
static int log_fdesc = 2;
static char *log_path;
static char log_name[LOG_NAME_MAX] = "relayq";
static char log_host[LOG_HOST_MAX];
static char log_ident[LOG_NAME_MAX * 2];	/* openlog() keeps this pointer */
static __thread const char *log_name_over;	/* log_name_override() */

/* log_set_host - HOST is myhostname up to its first dot */

static void log_set_host(const char *name)
{
    char    tmp[LOG_HOST_MAX];

    if (name == 0 || *name == 0) {
	if (gethostname(tmp, sizeof(tmp)) != 0)
	    strcpy(tmp, "localhost");
	tmp[sizeof(tmp) - 1] = 0;
	name = tmp;
    }
    snprintf(log_host, sizeof(log_host), "%.*s", (int) strcspn(name, "."), name);
}

/* log_open_path - open a log file for appending */

static int log_open_path(const char *path)
{
    return (open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640));
}

int     log_open(const char *maillog_file, const char *syslog_name,
		         const char *myhostname, char *err, size_t errlen)
{
    int     fd = -1;
    LOG_DEST dest;

    if (maillog_file == 0 || *maillog_file == 0) {
	dest = LOG_TO_SYSLOG;
    } else if (strcmp(maillog_file, "/dev/stdout") == 0) {
	dest = LOG_TO_FD;
	fd = 1;
    } else if (strcmp(maillog_file, "/dev/stderr") == 0) {
	dest = LOG_TO_FD;
	fd = 2;
    } else {
	dest = LOG_TO_FILE;
	if ((fd = log_open_path(maillog_file)) < 0) {
	    if (errlen)
		snprintf(err, errlen, "open maillog_file %s: %s", maillog_file, strerror(errno));
	    return (-1);
	}
    }
    log_close();

    pthread_mutex_lock(&log_lock);
    log_dest = dest;
    log_fdesc = fd;
    free(log_path);
    log_path = (dest == LOG_TO_FILE) ? xstrdup(maillog_file) : 0;
    snprintf(log_name, sizeof(log_name), "%s", syslog_name && *syslog_name ? syslog_name : "relayq");
    log_set_host(myhostname);
    if (dest == LOG_TO_SYSLOG) {
	snprintf(log_ident, sizeof(log_ident), "%s", log_name);
	openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
    }
    pthread_mutex_unlock(&log_lock);
    return (0);
}

/* log_reopen - after log rotation, start a new file by the same name */

int     log_reopen(void)
{
    int     ret = 0;

    pthread_mutex_lock(&log_lock);
    if (log_dest == LOG_TO_FILE) {
	int     fd = log_open_path(log_path);

	if (fd < 0) {
	    ret = -1;
	} else {
	    close(log_fdesc);
	    log_fdesc = fd;
	}
    }
    pthread_mutex_unlock(&log_lock);
    return (ret);
}

void    log_close(void)
{
    pthread_mutex_lock(&log_lock);
    if (log_dest == LOG_TO_FILE)
	close(log_fdesc);
    else if (log_dest == LOG_TO_SYSLOG)
	closelog();
    free(log_path);
    log_path = 0;
    log_dest = LOG_TO_STDERR_EARLY;
    log_fdesc = 2;
    pthread_mutex_unlock(&log_lock);
}

int     log_fd(void)
{
    int     fd;

    pthread_mutex_lock(&log_lock);
    fd = (log_dest == LOG_TO_SYSLOG) ? -1 : log_fdesc;
    pthread_mutex_unlock(&log_lock);
    return (fd);
}

/*
 * Lines that could not be written (a full log file system): counted for
 * the metrics; the first failure of a run is reported once on stderr, and
 * when writing works again one warning line says how many were lost.
 */
static uint64_t log_errors;			/* under log_lock */
static uint64_t log_lost;			/* lost since the last good write */
static int log_lost_errno;

uint64_t log_write_errors(void)
{
    uint64_t n;

    pthread_mutex_lock(&log_lock);
    n = log_errors;
    pthread_mutex_unlock(&log_lock);
    return (n);
}

/* log_write_all - one write(2); a short write continues the same buffer */

static int log_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
	ssize_t n = write(fd, buf, len);

	if (n < 0) {
	    if (errno == EINTR)
		continue;
	    return (-1);
	}
	buf += n;
	len -= (size_t) n;
    }
    return (0);
}

/* log_emit - format and write one line; prefix is "" or "warning: " */

static const char *log_name_global(void)
{
    return (log_name);
}

const char *log_name_override(const char *name)
{
    const char *old = log_name_over;

    log_name_over = name;
    return (old);
}

static void log_emit(int prio, const char *service, const char *prefix,
		             const char *fmt, va_list ap) UTIL_PRINTF(4, 0);

/*
 * The line's prefix is built without printf: its time changes once a
 * second (formatted again only then) and the PID only in a child after
 * fork(). Both under log_lock.
 */
static time_t log_stamp_sec = -1;
static char log_stamp[32];			/* "Mmm dd hh:mm:ss " */
static size_t log_stamp_len;
static char log_pid[24];			/* "[PID]: "; "" after fork() */
static size_t log_pid_len;
static pthread_once_t log_atfork_once = PTHREAD_ONCE_INIT;

static void log_atfork_child(void)
{
    log_pid[0] = 0;
    log_pid_len = 0;
}

static void log_atfork_register(void)
{
    pthread_atfork(NULL, NULL, log_atfork_child);
}

static void log_prefix(BUF *line, time_t now, const char *lname, const char *service)
{
    static const char months[12][4] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    };
    struct tm tm;

    if (now != log_stamp_sec) {
	localtime_r(&now, &tm);
	log_stamp_len = (size_t) snprintf(log_stamp, sizeof(log_stamp), "%s %2d %02d:%02d:%02d ",
					  months[tm.tm_mon], tm.tm_mday, tm.tm_hour,
					  tm.tm_min, tm.tm_sec);
	log_stamp_sec = now;
    }
    if (log_pid_len == 0) {
	pthread_once(&log_atfork_once, log_atfork_register);
	log_pid_len = (size_t) snprintf(log_pid, sizeof(log_pid), "[%ld]: ", (long) getpid());
    }
    buf_append(line, log_stamp, log_stamp_len);
    buf_puts(line, log_host);
    buf_putc(line, ' ');
    buf_puts(line, lname);
    buf_putc(line, '/');
    buf_puts(line, service);
    buf_append(line, log_pid, log_pid_len);
}

static void log_emit(int prio, const char *service, const char *prefix,
		             const char *fmt, va_list ap)
{
    BUF     line = BUF_INIT;
    size_t  text;
    time_t  now = time_sec();
    int     saved_errno = errno;
    const char *lname = log_name_over ? log_name_over : log_name_global();

    buf_reserve(&line, 512);			/* one allocation for most lines */
    pthread_mutex_lock(&log_lock);
    if (log_host[0] == 0)
	log_set_host(0);
    if (log_dest != LOG_TO_SYSLOG)
	log_prefix(&line, now, lname, service);
    text = line.len;
    buf_puts(&line, prefix);
    errno = saved_errno;			/* for %m */
    buf_vprintf(&line, fmt, ap);

    /* One record per line: control characters would forge or break lines. */
    for (size_t i = text; i < line.len; i++)
	if (((unsigned char) line.data[i] < 0x20 && line.data[i] != '\t') || line.data[i] == 0x7f)
	    line.data[i] = '?';

    if (log_dest == LOG_TO_SYSLOG) {
	snprintf(log_ident, sizeof(log_ident), "%s/%s", lname, service);
	syslog(prio, "%s", line.data);
    } else {
	buf_putc(&line, '\n');
	if (log_write_all(log_fdesc, line.data, line.len) < 0) {
	    if (log_lost++ == 0 && log_errors == 0) {
		char    msg[160];
		int     n = snprintf(msg, sizeof(msg), "%s/%s: warning: cannot write the log: %s;"
				     " lines are lost (counted in relayq_log_write_errors_total)\n",
				     lname, service, strerror(errno));

		if (write(2, msg, (size_t) n) < 0) {
		    /* nowhere left to complain */
		}
	    }
	    if (log_lost == 1)
		log_lost_errno = errno;
	    log_errors++;
	} else if (log_lost > 0) {
	    BUF     note = BUF_INIT;

	    buf_append(&note, line.data, text);	/* the same time, host and service */
	    buf_printf(&note, "warning: %llu log lines were lost: %s\n",
		       (unsigned long long) log_lost, strerror(log_lost_errno));
	    if (log_write_all(log_fdesc, note.data, note.len) == 0)
		log_lost = 0;
	    buf_free(&note);
	}
    }
    pthread_mutex_unlock(&log_lock);
    buf_free(&line);
}

void    log_vmsg(const char *service, const char *fmt, va_list ap)
{
    log_emit(LOG_INFO, service, "", fmt, ap);
}

void    log_msg(const char *service, const char *fmt,...)
{
    va_list ap;

    va_start(ap, fmt);
    log_emit(LOG_INFO, service, "", fmt, ap);
    va_end(ap);
}

/* Diagnostics: msg(3) tiers, to stderr and/or the maillog (see log.h). */

static char msg_prog[LOG_NAME_MAX] = "relayq";
static char msg_service[LOG_NAME_MAX] = "relayq";
static int msg_on_stderr = 1;
static void (*msg_cleanup_fn) (void);

void    msg_init(const char *progname, const char *service)
{
    pthread_mutex_lock(&log_lock);
    snprintf(msg_prog, sizeof(msg_prog), "%s", progname);
    snprintf(msg_service, sizeof(msg_service), "%s", service);
    pthread_mutex_unlock(&log_lock);
}

void    msg_stderr(int on)
{
    pthread_mutex_lock(&log_lock);
    msg_on_stderr = on;
    pthread_mutex_unlock(&log_lock);
}

void    msg_cleanup(void (*fn) (void))
{
    msg_cleanup_fn = fn;
}

/* msg_stderr_line - "PROG: tag: text" on stderr, one write(2) */

static void msg_stderr_line(const char *prog, const char *tag, const char *fmt, va_list ap) UTIL_PRINTF(3, 0);

static void msg_stderr_line(const char *prog, const char *tag, const char *fmt, va_list ap)
{
    BUF     line = BUF_INIT;
    size_t  text;

    buf_printf(&line, "%s: ", prog);
    text = line.len;
    buf_puts(&line, tag);
    buf_vprintf(&line, fmt, ap);
    for (size_t i = text; i < line.len; i++)
	if ((unsigned char) line.data[i] < 0x20 && line.data[i] != '\t')
	    line.data[i] = '?';
    buf_putc(&line, '\n');
    log_write_all(2, line.data, line.len);
    buf_free(&line);
}

void    msg_vdiag(MSG_LEVEL level, const char *service, const char *fmt, va_list ap)
{
    static const char *const tags[] = {"", "warning: ", "error: ", "fatal: ", "panic: "};
    static const int prios[] = {LOG_INFO, LOG_WARNING, LOG_ERR, LOG_CRIT, LOG_CRIT};
    int     saved_errno = errno;		/* for %m in both copies */
    char    prog[LOG_NAME_MAX];
    int     to_stderr, to_log;
    va_list ap2;

    pthread_mutex_lock(&log_lock);
    snprintf(prog, sizeof(prog), "%s", msg_prog);
    to_stderr = msg_on_stderr && !(log_dest == LOG_TO_FD && log_fdesc == 2);
    to_log = log_dest != LOG_TO_STDERR_EARLY || !to_stderr;
    if (service == 0)
	service = msg_service;			/* written only by msg_init, at start */
    pthread_mutex_unlock(&log_lock);

    if (to_stderr) {
	va_copy(ap2, ap);
	errno = saved_errno;
	msg_stderr_line(prog, tags[level], fmt, ap2);
	va_end(ap2);
    }
    if (to_log) {
	va_copy(ap2, ap);
	errno = saved_errno;
	log_emit(prios[level], service, tags[level], fmt, ap2);
	va_end(ap2);
    }
    if (level == MSG_FATAL) {
	void    (*fn) (void) = msg_cleanup_fn;

	msg_cleanup_fn = 0;			/* a fatal error inside it must not loop */
	if (fn)
	    fn();
	exit(1);
    }
    if (level == MSG_PANIC)
	abort();
    errno = saved_errno;
}

#define MSG_FN(name, level) \
void    name(const char *fmt,...) \
{ \
    va_list ap; \
\
    va_start(ap, fmt); \
    msg_vdiag(level, 0, fmt, ap); \
    va_end(ap); \
}

MSG_FN(msg_info, MSG_INFO)
MSG_FN(msg_warn, MSG_WARN)
MSG_FN(msg_error, MSG_ERROR)
#undef MSG_FN

void    msg_fatal(const char *fmt,...)
{
    va_list ap;

    va_start(ap, fmt);
    msg_vdiag(MSG_FATAL, 0, fmt, ap);
    va_end(ap);
    exit(1);					/* not reached */
}

void    msg_panic(const char *fmt,...)
{
    va_list ap;

    va_start(ap, fmt);
    msg_vdiag(MSG_PANIC, 0, fmt, ap);
    va_end(ap);
    abort();					/* not reached */
}

void    log_warn(const char *service, const char *fmt,...)
{
    va_list ap;

    va_start(ap, fmt);
    msg_vdiag(MSG_WARN, service, fmt, ap);
    va_end(ap);
}

/*
 * log_format_delay - Postfix's delay= numbers: two significant digits, at
 * most two decimals, trailing zeros dropped, rounded half up.  The work is
 * done in whole microseconds so that 0.005 is not lost to binary fractions.
 */
/* v in decimal at p, as "%lld" writes it; returns the end. */
static char *put_digits(char *p, long long v)
{
    char    tmp[24], *t = tmp + sizeof(tmp);
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long) v : (unsigned long long) v;

    do
	*--t = (char) ('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
	*--t = '-';
    memcpy(p, t, (size_t) (tmp + sizeof(tmp) - t));
    return (p + (tmp + sizeof(tmp) - t));
}

char   *log_format_delay(double seconds, char *out)
{
    long long us;
    char   *p = out;

    if (!(seconds > 0))				/* also NaN */
	seconds = 0;
    if (seconds > 1e15)
	seconds = 1e15;
    us = llround(seconds * 1e6);

    /* Without printf: this runs four times for every delivery. */
    if (us < 1000000) {				/* hundredths */
	long long h = (us + 5000) / 10000;

	if (h >= 100 || h == 0) {
	    *p++ = h ? '1' : '0';
	} else if (h < 0) {			/* llround() overflowed: what "0.%lld" wrote */
	    *p++ = '0';
	    *p++ = '.';
	    p = put_digits(p, h % 10 == 0 ? h / 10 : h);
	} else {
	    *p++ = '0';
	    *p++ = '.';
	    *p++ = (char) ('0' + h / 10);
	    if (h % 10)
		*p++ = (char) ('0' + h % 10);
	}
    } else if (us < 10000000) {			/* tenths */
	long long t = (us + 50000) / 100000;

	p = put_digits(p, t / 10);
	if (t % 10) {
	    *p++ = '.';
	    *p++ = (char) ('0' + t % 10);
	}
    } else {
	p = put_digits(p, (us + 500000) / 1000000);
    }
    *p = 0;
    return (out);
}

void    log_msg_as(const char *name, const char *service, const char *fmt,...)
{
    const char *old = log_name_override(name);
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(service, fmt, ap);
    va_end(ap);
    log_name_override(old);
}

void    log_warn_as(const char *name, const char *service, const char *fmt,...)
{
    const char *old = log_name_override(name);
    va_list ap;

    va_start(ap, fmt);
    msg_vdiag(MSG_WARN, service, fmt, ap);
    va_end(ap);
    log_name_override(old);
}
