/*
 * util - small building blocks shared by every module: memory that never
 * returns NULL, a growable byte buffer, string helpers, clocks.
 *
 * Memory functions either succeed or do not return: out of memory is fatal
 * (one line on stderr, abort), as in Postfix's mymalloc(3), so callers carry
 * no error paths for it.
 */
#ifndef UTIL_H_INCLUDED
#define UTIL_H_INCLUDED

#include <stddef.h>
#include <time.h>
#include <stdint.h>
#include <stdarg.h>

#define UTIL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* For an API that takes a non-const pointer it only reads through (-Wcast-qual clean). */
#define UTIL_UNCONST(p) ((void *) (uintptr_t) (const void *) (p))

void   *xmalloc(size_t len);
void   *xcalloc(size_t n, size_t len);
void   *xrealloc(void *ptr, size_t len);
char   *xstrdup(const char *s);			/* xstrdup(NULL) == NULL */
char   *xstrndup(const char *s, size_t len);
char   *xasprintf(const char *fmt, ...) UTIL_PRINTF(1, 2);

/* BUF - growable byte buffer; data is always NUL-terminated after len. */
typedef struct BUF {
    char   *data;
    size_t  len;
    size_t  cap;
} BUF;

#define BUF_INIT { NULL, 0, 0 }
void    buf_init(BUF *b);
void    buf_free(BUF *b);
void    buf_reset(BUF *b);
void    buf_reserve(BUF *b, size_t extra);
void    buf_append(BUF *b, const void *data, size_t len);
void    buf_puts(BUF *b, const char *s);
void    buf_putc(BUF *b, int c);
void    buf_put_int(BUF *b, long long v);	/* decimal, as %lld */
void    buf_printf(BUF *b, const char *fmt, ...) UTIL_PRINTF(2, 3);
void    buf_vprintf(BUF *b, const char *fmt, va_list ap) UTIL_PRINTF(2, 0);
char   *buf_steal(BUF *b);			/* returns data, leaves b empty */

/* Strings. */
int     str_casecmp(const char *a, const char *b);
int     str_ncasecmp(const char *a, const char *b, size_t n);
int     str_has_prefix_ci(const char *s, const char *prefix);
char   *str_trim(char *s);			/* in place; returns s advanced */
void    str_lower(char *s);

/*
 * Lists as Postfix writes them: separated by commas and/or white space.
 * A {...} group is kept whole ("inline:{ a=b, c=d }" is one element).
 * Returns a NULL-terminated vector; *n gets the count (n may be NULL).
 */
char  **str_split_list(const char *s, int *n);
void    str_list_free(char **list);

/*
 * s for a terminal, as Postfix's printable(): control characters (C0, DEL,
 * C1) and bytes that are not valid UTF-8 become '?'.  Allocated; "" for
 * NULL.  For every text view of data someone else chose (mailq, qshape,
 * explain): no escape sequence reaches the administrator's terminal.
 */
char   *str_printable(const char *s);

/* Clocks. */
time_t  time_sec(void);				/* CLOCK_REALTIME seconds (not time(): see util.c) */
int64_t time_now_us(void);			/* CLOCK_REALTIME, microseconds */
int64_t time_mono_us(void);			/* CLOCK_MONOTONIC, microseconds */

#endif
