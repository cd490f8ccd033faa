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

#include <stdint.h>
#include "util/util.h"

int     log_open(const char *maillog_file, const char *syslog_name,
		         const char *myhostname, char *err, size_t errlen);
int     log_reopen(void);			/* SIGHUP: log rotation */
void    log_close(void);
int     log_fd(void);				/* -1 for syslog; for fchown */

/* SERVICE is the Postfix process name: master smtpd cleanup qmgr smtp error bounce pickup postsuper */
void    log_msg(const char *service, const char *fmt, ...) UTIL_PRINTF(2, 3);
void    log_vmsg(const char *service, const char *fmt, va_list ap);

/* warning: / fatal: prefixed lines ("relayq/smtpd[1]: warning: ...") */
void    log_warn(const char *service, const char *fmt, ...) UTIL_PRINTF(2, 3);

/*
 * Postfix's delay formatting (format_tv.c, delay_logging_resolution_limit 2):
 * < 1 s: up to 2 decimals, trailing zeros dropped, "0" below 0.005;
 * 1..10 s: 1 decimal ("6" when it is 0); >= 10 s: integer.  Half up.
 * Writes into out (at least 32 bytes) and returns it.
 */
char   *log_format_delay(double seconds, char *out);

/* Lines that could not be written to maillog_file (e.g. its file system is full). */
uint64_t log_write_errors(void);

#endif
