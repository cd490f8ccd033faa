/*
 * milter_edit.c - a message held as CRLF text, split into its header lines
 * and body, so that the filters' edits (add, insert, change and delete
 * header, replace body) can be applied in the order they arrive, and the
 * next filter sees the result.  Pure: no I/O.
 *
 * Indexing follows Postfix's cleanup_milter.c: insert positions count every
 * header of the message as delivered (our own Received: included); change
 * and delete count the instances of a name in the message as received (our
 * own Received: not included).  Header text from a filter is made safe:
 * no bare CR or LF, every continuation line starts with white space.
 */
#include <stdlib.h>
#include <string.h>

#include "milter/milter.h"

typedef struct HDR {
    char   *text;			/* "Name: value\r\n" with folded lines */
    size_t  len;			/* may hold NUL bytes: a length, not a C string */
} HDR;

struct MILTER_HDRS {
    HDR    *hdr;
    int     n, cap;
    int     own_received;		/* hdr[0] is ours, hidden from filters */
    int     sep;			/* the blank line after the headers was there */
    BUF     body;
};

static void hdrs_put(MILTER_HDRS *h, int at, char *text, size_t len)
{
    if (h->n == h->cap) {
	h->cap = h->cap ? 2 * h->cap : 16;
	h->hdr = xrealloc(h->hdr, h->cap * sizeof(*h->hdr));
    }
    memmove(h->hdr + at + 1, h->hdr + at, (h->n - at) * sizeof(*h->hdr));
    h->hdr[at].text = text;
    h->hdr[at].len = len;
    h->n++;
}

/* Does the line start a header ("Name:" with printable name characters)? */
static int is_header_start(const char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
	unsigned char c = (unsigned char) p[i];

	if (c == ':')
	    return (i > 0);
	if (c == ' ' || c == '\t') {
	    /* "Name :" is a header (RFC 822 allowed it); "a b:" is not. */
	    while (i < len && (p[i] == ' ' || p[i] == '\t'))
		i++;
	    return (i < len && p[i] == ':' && i > 0 && p[0] != ' ' && p[0] != '\t');
	}
	if (c < 33 || c > 126)
	    return (0);
    }
    return (0);
}

MILTER_HDRS *milter_hdrs_parse(const char *content, size_t len, int own_received)
{
    MILTER_HDRS *h = xcalloc(1, sizeof(*h));
    const char *p = content, *end = content + len;

    buf_init(&h->body);
    while (p < end) {
	const char *eol = memchr(p, '\n', (size_t) (end - p));
	size_t  linelen = eol ? (size_t) (eol - p) + 1 : (size_t) (end - p);
	size_t  textlen = linelen;

	while (textlen > 0 && (p[textlen - 1] == '\n' || p[textlen - 1] == '\r'))
	    textlen--;
	if (textlen == 0) {			/* the blank line */
	    h->sep = 1;
	    p += linelen;
	    break;
	}
	if ((p[0] == ' ' || p[0] == '\t') && h->n > 0) {
	    HDR    *prev = &h->hdr[h->n - 1];

	    prev->text = xrealloc(prev->text, prev->len + textlen + 3);
	    memcpy(prev->text + prev->len, p, textlen);
	    memcpy(prev->text + prev->len + textlen, "\r\n", 3);
	    prev->len += textlen + 2;
	} else if (is_header_start(p, textlen)) {
	    char   *t = xmalloc(textlen + 3);

	    memcpy(t, p, textlen);
	    memcpy(t + textlen, "\r\n", 3);
	    hdrs_put(h, h->n, t, textlen + 2);
	} else {
	    break;				/* body without a blank line */
	}
	p += linelen;
    }
    buf_append(&h->body, p, (size_t) (end - p));
    h->own_received = own_received && h->n > 0
	&& str_ncasecmp(h->hdr[0].text, "Received:", 9) == 0;
    return (h);
}

int     milter_hdrs_count(const MILTER_HDRS *h)
{
    return (h->n);
}

int     milter_hdrs_hidden(const MILTER_HDRS *h, int i)
{
    return (i == 0 && h->own_received);
}

const char *milter_hdrs_body(const MILTER_HDRS *h, size_t *len)
{
    *len = h->body.len;
    return (h->body.data ? h->body.data : "");
}

int     milter_hdrs_get(const MILTER_HDRS *h, int i, int leadspc, BUF *name, BUF *value)
{
    const char *t, *colon, *cp, *end;
    size_t  nlen;

    if (i < 0 || i >= h->n)
	return (-1);
    t = h->hdr[i].text;
    end = t + h->hdr[i].len;
    colon = strchr(t, ':');		/* before any NUL: see is_header_start() */
    nlen = (size_t) (colon - t);
    while (nlen > 0 && (t[nlen - 1] == ' ' || t[nlen - 1] == '\t'))
	nlen--;
    buf_reset(name);
    buf_append(name, t, nlen);
    cp = colon + 1;
    /* Sendmail eats one space (not a tab) after the colon. */
    if (!leadspc && *cp == ' ')
	cp++;
    buf_reset(value);
    for (; cp < end && *cp; cp++) {
	if (cp[0] == '\r' && cp + 1 < end && cp[1] == '\n')
	    continue;
	buf_putc(value, *cp);
    }
    /* Drop the final line end. */
    if (value->len > 0 && value->data[value->len - 1] == '\n')
	value->data[--value->len] = 0;
    return (0);
}

/* "name:" SPACE value with CRLF line ends and white space before every continuation. */
static char *hdr_text(const char *name, const char *space, const char *value, size_t *len)
{
    BUF     b = BUF_INIT;
    const char *cp;

    /* Only what RFC 5322 allows in a field name (milter.c refuses the rest first). */
    for (cp = name; *cp; cp++)
	if ((unsigned char) *cp > 32 && (unsigned char) *cp < 127 && *cp != ':')
	    buf_putc(&b, *cp);
    if (b.len == 0)
	buf_puts(&b, "X-Invalid-Header-Name");
    buf_putc(&b, ':');
    buf_puts(&b, space);
    for (cp = value; *cp; cp++) {
	if (*cp == '\r')
	    continue;
	if (*cp == '\n') {
	    if (cp[1] == 0)
		break;
	    buf_puts(&b, "\r\n");
	    if (cp[1] != ' ' && cp[1] != '\t')
		buf_putc(&b, '\t');
	    continue;
	}
	buf_putc(&b, *cp);
    }
    buf_puts(&b, "\r\n");
    *len = b.len;
    return (buf_steal(&b));
}

void    milter_hdrs_add(MILTER_HDRS *h, const char *name, const char *space, const char *value)
{
    size_t  len;
    char   *t = hdr_text(name, space, value, &len);

    hdrs_put(h, h->n, t, len);
}

void    milter_hdrs_insert(MILTER_HDRS *h, long index, const char *name, const char *space,
			           const char *value)
{
    if (index < 0)
	index = 0;
    if (index > h->n)
	index = h->n;
    {
	size_t  len;
	char   *t = hdr_text(name, space, value, &len);

	hdrs_put(h, (int) index, t, len);
    }
}

static int name_is(const char *hdr, const char *name)
{
    size_t  n = strlen(name);
    const char *cp;

    if (str_ncasecmp(hdr, name, n) != 0)
	return (0);
    for (cp = hdr + n; *cp == ' ' || *cp == '\t'; cp++)
	 /* void */ ;
    return (*cp == ':');
}

void    milter_hdrs_change(MILTER_HDRS *h, long index, const char *name, const char *space,
			           const char *value)
{
    int     i, seen = 0;

    if (index < 1)
	index = 1;
    for (i = h->own_received ? 1 : 0; i < h->n; i++) {
	if (!name_is(h->hdr[i].text, name) || ++seen != index)
	    continue;
	free(h->hdr[i].text);
	if (*value == 0) {
	    memmove(h->hdr + i, h->hdr + i + 1, (h->n - i - 1) * sizeof(*h->hdr));
	    h->n--;
	} else {
	    h->hdr[i].text = hdr_text(name, space, value, &h->hdr[i].len);
	}
	return;
    }
    /* No such instance: a change appends (as Postfix), a delete does nothing. */
    if (*value)
	milter_hdrs_add(h, name, space, value);
}

void    milter_hdrs_replace_body(MILTER_HDRS *h, const char *body, size_t len)
{
    size_t  i;

    buf_reset(&h->body);
    for (i = 0; i < len; i++) {
	if (body[i] == '\r' && i + 1 < len && body[i + 1] == '\n')
	    continue;
	if (body[i] == '\n')
	    buf_puts(&h->body, "\r\n");
	else
	    buf_putc(&h->body, body[i]);
    }
    /* The content always ends with a line end. */
    if (h->body.len > 0 && h->body.data[h->body.len - 1] != '\n')
	buf_puts(&h->body, "\r\n");
    h->sep = 1;
}

void    milter_hdrs_write(const MILTER_HDRS *h, BUF *out)
{
    int     i;

    for (i = 0; i < h->n; i++)
	buf_append(out, h->hdr[i].text, h->hdr[i].len);
    /* The blank line; also where it was missing, so the body stays the body. */
    if (h->sep || (h->n > 0 && h->body.len > 0))
	buf_puts(out, "\r\n");
    buf_append(out, h->body.data ? h->body.data : "", h->body.len);
}

void    milter_hdrs_free(MILTER_HDRS *h)
{
    int     i;

    if (h == 0)
	return;
    for (i = 0; i < h->n; i++)
	free(h->hdr[i].text);
    free(h->hdr);
    buf_free(&h->body);
    free(h);
}

int     milter_hdr_name_ok(const char *name)
{
    const char *cp;

    for (cp = name; *cp; cp++)
	if ((unsigned char) *cp <= 32 || (unsigned char) *cp >= 127 || *cp == ':')
	    return (0);
    return (cp > name);
}

/* "ddd d.d.d text" per line, 4xx or 5xx, lines joined by CRLF; % doubled as Sendmail's. */
int     milter_valid_reply(const char *text)
{
    const char *cp = text;

    if (!(cp[0] == '4' || cp[0] == '5'))
	return (0);
    for (;;) {
	if (!(cp[0] == text[0] && cp[1] >= '0' && cp[1] <= '9' && cp[2] >= '0' && cp[2] <= '9'))
	    return (0);
	if (strncmp(cp, text, 3) != 0)
	    return (0);
	if (cp[3] != ' ' && cp[3] != '-' && cp[3] != 0)
	    return (0);
	cp += 3;
	while (*cp && *cp != '\r' && *cp != '\n') {
	    if ((unsigned char) *cp < 32 && *cp != '\t')
		return (0);
	    cp++;
	}
	if (*cp == 0)
	    return (1);
	if (cp[0] != '\r' || cp[1] != '\n')
	    return (0);
	cp += 2;			/* a line must follow: "550 a\r\n" is not a reply */
    }
}
