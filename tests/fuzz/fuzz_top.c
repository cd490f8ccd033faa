/*
 * fuzz_top - libFuzzer target for relayq top's reply parser (what the CLI
 * reads from the query socket) and the screen and JSON made from whatever
 * it accepts.  Checks: no crash or sanitizer report; an accepted reply
 * formats back to one that parses; the screen holds no control character.
 *
 * FUZZ_SOURCES: src/control/top.c src/control/showq.c src/queue/queue.c src/qmgr/qmgr.c src/qmgr/qmgr_policy.c src/util/util.c src/log/log.c -lsqlite3 -lm -lpthread -levent
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/top.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    TOP_SNAP s, again;
    BUF     b = BUF_INIT;
    char    err[256];
    int     w = size > 0 ? data[0] : 80, h = size > 1 ? data[1] : 24;

    if (top_parse((const char *) data, size, &s, err, sizeof(err)) < 0)
	return (0);
    top_render(&s, w, h % 3 == 0 ? 0 : h, "status", &b);
    for (size_t i = 0; i < b.len; i++)
	if ((unsigned char) b.data[i] < 0x20 && b.data[i] != '\n')
	    abort();
    buf_reset(&b);
    top_json(&s, &b);
    buf_reset(&b);
    top_format(&s, &b);
    if (top_parse(b.data, b.len, &again, err, sizeof(err)) < 0)
	abort();
    top_snap_free(&again);
    top_snap_free(&s);
    buf_free(&b);
    return (0);
}
