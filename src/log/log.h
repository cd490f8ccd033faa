/*
 * log - log lines in Postfix's format:
 *   Mmm dd hh:mm:ss HOST SYSLOG_NAME/SERVICE[PID]: TEXT
 * HOST is myhostname up to its first dot; whole seconds, local time.
 * Destination (maillog_file): a path (appended), /dev/stdout, /dev/stderr,
 * or empty for syslog(3), facility LOG_MAIL.  Each line is one write(2), so
 * lines never interleave or tear, and nothing is buffered in the process.
 */
#ifndef LOG_H_INCLUDED
#define LOG_H_INCLUDED

#include <stdarg.h>
#include <stdint.h>
#include "util/util.h"

int     log_open(const char *maillog_file, const char *syslog_name,
		         const char *myhostname, char *err, size_t errlen);
int     log_reopen(void);			/* SIGHUP: log rotation */
void    log_close(void);
int     log_fd(void);				/* -1 for syslog; for fchown */

/*
 * Log lines: the mail system's record ("QID: to=<...>, status=sent ..."),
 * to the maillog only.  SERVICE is the Postfix process name: master smtpd
 * cleanup qmgr smtp error bounce pickup postsuper.  Before log_open() they
 * go to stderr in the same format.
 */
void    log_msg(const char *service, const char *fmt, ...) UTIL_PRINTF(2, 3);
void    log_vmsg(const char *service, const char *fmt, va_list ap) UTIL_PRINTF(2, 0);

/*
 * Diagnostics, Postfix's msg(3) tiers: about the program itself, not about
 * mail.  Each goes to every channel that is on:
 *   stderr      "PROGNAME: warning: TEXT", while msg_stderr() is on (the
 *               default; relayqd turns it off once it runs, so that what a
 *               SIGHUP reload says reaches the maillog, not a stderr nobody
 *               reads);
 *   the maillog "NAME/SERVICE[PID]: warning: TEXT", once log_open() has
 *               succeeded (with stderr off and no log open yet: to stderr
 *               in the maillog format, as log_msg).
 * When the maillog is stderr itself the line is written once.
 *
 *   msg_info   information ("PROG: TEXT")
 *   msg_warn   "warning: " - something is wrong, the program carries on
 *   msg_error  "error: " - a failed operation; the program carries on
 *   msg_fatal  "fatal: " - runs the msg_cleanup() function, exit(1)
 *   msg_panic  "panic: " - a bug (an impossible state): abort()
 *
 * msg_* use the service given to msg_init() ("master" in relayqd);
 * log_warn() and msg_vdiag() name the service (the daemon hosts several
 * Postfix services in one process).
 */
typedef enum {
    MSG_INFO, MSG_WARN, MSG_ERROR, MSG_FATAL, MSG_PANIC,
} MSG_LEVEL;

void    msg_init(const char *progname, const char *service);
void    msg_stderr(int on);
void    msg_cleanup(void (*fn) (void));
void    msg_info(const char *fmt, ...) UTIL_PRINTF(1, 2);
void    msg_warn(const char *fmt, ...) UTIL_PRINTF(1, 2);
void    msg_error(const char *fmt, ...) UTIL_PRINTF(1, 2);
void    msg_fatal(const char *fmt, ...) UTIL_PRINTF(1, 2) __attribute__((noreturn));
void    msg_panic(const char *fmt, ...) UTIL_PRINTF(1, 2) __attribute__((noreturn));
void    msg_vdiag(MSG_LEVEL level, const char *service, const char *fmt, va_list ap) UTIL_PRINTF(3, 0);

/* msg_warn for a named service ("relayq/qmgr[1]: warning: ...") */
void    log_warn(const char *service, const char *fmt, ...) UTIL_PRINTF(2, 3);

/*
 * The same with another SYSLOG_NAME (a master.cf -o syslog_name); NULL: the
 * global one.  log_name_override() sets it for every line this thread logs
 * until it is set back (it returns the previous value), for the formatters
 * below (log_reject).
 */
const char *log_name_override(const char *name);
void    log_msg_as(const char *name, const char *service, const char *fmt, ...) UTIL_PRINTF(3, 4);
void    log_warn_as(const char *name, const char *service, const char *fmt, ...) UTIL_PRINTF(3, 4);

/*
 * Postfix's delay formatting (format_tv.c, delay_logging_resolution_limit 2):
 * < 1 s: up to 2 decimals, trailing zeros dropped, "0" below 0.005;
 * 1..10 s: 1 decimal ("6" when it is 0); >= 10 s: integer.  Half up.
 * Writes into out (at least 32 bytes) and returns it.
 */
char   *log_format_delay(double seconds, char *out);

/* Lines that could not be written to maillog_file (e.g. its file system is full). */
uint64_t log_write_errors(void);

/*
 * One formatter per kind of Postfix mail log line (log_adhoc.c); a new
 * kind of line gets its function here, not a format string at the caller.
 */

/* A recipient as the delivery line shows it. */
typedef struct LOG_RCPT {
    const char *address;			/* to=<...> */
    const char *orcpt;				/* original recipient, "type;addr" or "addr"; may be NULL */
} LOG_RCPT;

/* Postfix's MSG_STATS: microsecond time stamps, 0 = did not happen. */
typedef struct LOG_STATS {
    int64_t arrival_us;				/* the message entered the queue */
    int64_t active_us;				/* the queue manager took it (this pass) */
    int64_t handoff_us;				/* a delivery agent took it */
    int64_t setup_us;				/* the connection was ready */
    int64_t done_us;				/* the result is known; 0 = now */
    int     conn_use;			/* transactions on the session, this one included */
} LOG_STATS;

/* "QID: to=<R>, orig_to=<O>, relay=..., conn_use=N, delay=, delays=a/b/c/d, dsn=, status=S (TEXT)" */
void    log_delivery(const char *service, const char *qid, const LOG_RCPT *rcpt,
		             const char *relay, const LOG_STATS *stats, const char *dsn,
		             const char *status, const char *text);

/*
 * "QID|NOQUEUE: ACTION: STAGE from CLIENT: REPLY; from=<S> to=<R> proto=P helo=<H>"
 * ACTION: reject, milter-reject, ...; qid NULL or "": NOQUEUE; from, to, helo NULL: left out.
 */
void    log_reject(const char *service, const char *qid, const char *action,
		           const char *stage, const char *client, const char *reply,
		           const char *from, const char *to, const char *proto,
		           const char *helo);

/*
 * Header/body checks in cleanup (Postfix's cleanup_act_log), service
 * "cleanup":
 *   "QID: ACTION: WHERE CONTENT from ORIGIN;[ from=<S>][ to=<R>][ proto=P][ helo=<H>][: TEXT]"
 * ACTION: reject, discard, hold, warning, info, filter, pass, prepend,
 * replace, redirect, bcc, strip; WHERE: header or body; CONTENT: the
 * header or body line, first 200 bytes; ORIGIN: NAME[ADDR] or local.
 */
void    log_content_action(const char *qid, const char *action, const char *where,
			           const char *content, const char *origin, const char *from,
			           const char *to, const char *proto, const char *helo,
			           const char *text);

/* The SMTP client's (smtp_hbc_logger), service "smtp": "QID: ACTION: WHERE CONTENT[: TEXT]" */
void    log_smtp_content_action(const char *qid, const char *action, const char *where,
				        const char *content, const char *text);

#endif
