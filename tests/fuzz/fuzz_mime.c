/*
 * fuzz_mime - libFuzzer target for the MIME classifier that header and body
 * checks run on (src/cleanup/cleanup_mime.c): any bytes as a message, with a
 * small header limit, record length and nesting limit taken from the input.
 * Checks: no crash or sanitizer report; every header text starts with a
 * header name and colon; no body record is longer than the record limit;
 * the end of the primary header is reported exactly once.
 *
 * FUZZ_SOURCES: src/cleanup/cleanup_mime.c src/util/util.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup/cleanup_mime.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    size_t  line_limit;
    int     ends;
} FZ;

static void fz_header(void *ctx, int cls, const char *text, const char *raw, size_t rawlen)
{
    size_t  n = cleanup_mime_header_name(text, strlen(text));

    if (n == 0 || text[n] != ':' || cls < MIME_HDR_PRIMARY || cls > MIME_HDR_NESTED || rawlen == 0)
	abort();
}

static int fz_header_end(void *ctx)
{
    ((FZ *) ctx)->ends++;
    return (0);
}

static void fz_body(void *ctx, const char *rec, size_t len, size_t offset, const char *eol, size_t eollen)
{
    FZ     *f = ctx;

    if (f->line_limit && len > f->line_limit)
	abort();
}

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const CLEANUP_MIME_CB cb = {fz_header, fz_header_end, fz_body};
    CLEANUP_MIME_OPTS o;
    FZ      f = {0, 0};

    if (size < 3)
	return (0);
    o.header_limit = 16 + data[0] * 4;
    o.line_limit = data[1] % 2 ? 0 : 8 + data[1];
    o.nesting_limit = 1 + data[2] % 8;
    f.line_limit = o.line_limit;
    cleanup_mime_run((const char *) data + 3, size - 3, &o, &cb, &f);
    if (f.ends != 1)
	abort();
    return (0);
}
