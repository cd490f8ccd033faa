/*
 * util - memory, buffers, strings, clocks.  See util.h.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util/util.h"

static void __attribute__((noreturn)) out_of_memory(size_t len)
{
    /* Below the log module: stderr only, under the name the program was run by. */
    fprintf(stderr, "%s: fatal: out of memory allocating %zu bytes\n",
	    program_invocation_short_name, len);
    abort();
}

void   *xmalloc(size_t len)
{
    void   *p = malloc(len ? len : 1);

    if (p == NULL)
	out_of_memory(len);
    return p;
}

void   *xcalloc(size_t n, size_t len)
{
    void   *p = calloc(n ? n : 1, len ? len : 1);

    if (p == NULL)
	out_of_memory(n * len);
    return p;
}

void   *xrealloc(void *ptr, size_t len)
{
    void   *p = realloc(ptr, len ? len : 1);

    if (p == NULL)
	out_of_memory(len);
    return p;
}

char   *xstrdup(const char *s)
{
    return s ? xstrndup(s, strlen(s)) : NULL;
}

char   *xstrndup(const char *s, size_t len)
{
    char   *p = xmalloc(len + 1);

    memcpy(p, s, len);
    p[len] = 0;
    return p;
}

char   *xasprintf(const char *fmt, ...)
{
    BUF     b = BUF_INIT;
    va_list ap;

    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    return buf_steal(&b);
}

void    buf_init(BUF *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void    buf_free(BUF *b)
{
    free(b->data);
    buf_init(b);
}

void    buf_reset(BUF *b)
{
    b->len = 0;
    if (b->data)
	b->data[0] = 0;
}

void    buf_reserve(BUF *b, size_t extra)
{
    size_t  need = b->len + extra + 1;

    if (need <= b->cap)
	return;
    size_t  cap = b->cap ? b->cap : 64;

    while (cap < need)
	cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void    buf_append(BUF *b, const void *data, size_t len)
{
    buf_reserve(b, len);
    if (len)
	memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
}

void    buf_puts(BUF *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void    buf_putc(BUF *b, int c)
{
    char    ch = (char) c;

    buf_append(b, &ch, 1);
}

void    buf_put_int(BUF *b, long long v)
{
    char    tmp[24], *p = tmp + sizeof(tmp);
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long) v : (unsigned long long) v;

    do {
	*--p = (char) ('0' + u % 10);
	u /= 10;
    } while (u);
    if (v < 0)
	*--p = '-';
    buf_append(b, p, (size_t) (tmp + sizeof(tmp) - p));
}

void    buf_vprintf(BUF *b, const char *fmt, va_list ap)
{
    va_list ap2;
    int     n;

    va_copy(ap2, ap);
    buf_reserve(b, 128);
    n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap2);
    va_end(ap2);
    if (n < 0)
	return;
    if ((size_t) n >= b->cap - b->len) {
	buf_reserve(b, (size_t) n);
	vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    }
    b->len += (size_t) n;
}

void    buf_printf(BUF *b, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

char   *buf_steal(BUF *b)
{
    char   *p;

    if (b->data == NULL)
	return xstrdup("");
    p = b->data;
    buf_init(b);
    return p;
}

int     str_casecmp(const char *a, const char *b)
{
    return strcasecmp(a, b);
}

int     str_ncasecmp(const char *a, const char *b, size_t n)
{
    return strncasecmp(a, b, n);
}

int     str_has_prefix_ci(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

char   *str_trim(char *s)
{
    char   *e;

    while (*s && isspace((unsigned char) *s))
	s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char) e[-1]))
	*--e = 0;
    return s;
}

void    str_lower(char *s)
{
    for (; *s; s++)
	*s = (char) tolower((unsigned char) *s);
}

char  **str_split_list(const char *s, int *np)
{
    char  **v = xmalloc(sizeof(char *));
    int     n = 0;

    v[0] = NULL;
    while (s && *s) {
	while (*s && (*s == ',' || isspace((unsigned char) *s)))
	    s++;
	if (!*s)
	    break;
	const char *start = s;

	int     depth = 0;

	while (*s && (depth > 0 || (*s != ',' && !isspace((unsigned char) *s)))) {
	    if (*s == '{')
		depth++;
	    else if (*s == '}' && depth > 0)
		depth--;
	    s++;
	}
	v = xrealloc(v, sizeof(char *) * (size_t) (n + 2));
	v[n++] = xstrndup(start, (size_t) (s - start));
	v[n] = NULL;
    }
    if (np)
	*np = n;
    return v;
}

void    str_list_free(char **list)
{
    if (list == NULL)
	return;
    for (char **p = list; *p; p++)
	free(*p);
    free(list);
}

/*
 * The time in seconds from the same clock as time_now_us(): glibc's
 * time() reads the kernel's coarse clock, which can still say the last
 * second for a few milliseconds after gettimeofday() has moved on, so a
 * message could be deferred "before" it was created.
 */
time_t  time_sec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (ts.tv_sec);
}

int64_t time_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t time_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

char   *str_printable(const char *s)
{
    const unsigned char *p = (const unsigned char *) (s ? s : "");
    char   *out = xmalloc(strlen((const char *) p) + 1), *o = out;

    while (*p) {
	size_t  n = 0, i;
	unsigned cp;

	if (*p < 0x20 || *p == 0x7f) {
	    *o++ = '?';
	    p++;
	    continue;
	}
	if (*p < 0x80) {
	    *o++ = (char) *p++;
	    continue;
	}
	if ((*p & 0xe0) == 0xc0)
	    n = 1, cp = *p & 0x1f;
	else if ((*p & 0xf0) == 0xe0)
	    n = 2, cp = *p & 0x0f;
	else if ((*p & 0xf8) == 0xf0)
	    n = 3, cp = *p & 0x07;
	else
	    cp = 0;
	for (i = 1; n && i <= n; i++) {
	    if ((p[i] & 0xc0) != 0x80)
		break;
	    cp = (cp << 6) | (p[i] & 0x3f);
	}
	/* Not UTF-8, overlong, a surrogate, or a C1 control (U+0080..U+009F). */
	if (n == 0 || i <= n || cp < 0xa0 || (n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff))
	    || (cp >= 0xd800 && cp <= 0xdfff)) {
	    *o++ = '?';
	    p++;
	    continue;
	}
	memcpy(o, p, n + 1);
	o += n + 1;
	p += n + 1;
    }
    *o = 0;
    return out;
}
