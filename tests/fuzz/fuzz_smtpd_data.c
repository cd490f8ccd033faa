/*
 * fuzz_smtpd_data - libFuzzer target for the DATA state machine.  The input
 * is fed once whole and once in pseudo-random chunks, in each bare-newline
 * mode; the results must agree (packet boundaries never matter), the end
 * must be a real <CR><LF>.<CR><LF>, and the content, dot-stuffed again as
 * the SMTP client relays it, must parse back to itself (no smuggling on
 * the next hop).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "smtpd/smtpd_proto.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int feed(const uint8_t *data, size_t size, int mode, int chunked, BUF *out, size_t *endpos)
{
    SMTPD_DATA d;
    size_t  pos = 0, used;
    int     rc = SMTPD_DATA_MORE;
    unsigned seed = (unsigned) size;

    smtpd_data_init(&d, mode, 0, out);
    while (pos < size && rc == SMTPD_DATA_MORE) {
	size_t  n = size - pos;

	if (chunked) {
	    seed = seed * 1103515245 + 12345;
	    n = 1 + (seed >> 16) % 7;
	    if (n > size - pos)
		n = size - pos;
	}
	rc = smtpd_data_feed(&d, (const char *) data + pos, n, &used);
	if (used > n)
	    abort();
	pos += used;
    }
    *endpos = pos;
    return (rc);
}

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int     mode;

    for (mode = 0; mode < 3; mode++) {
	BUF     a = BUF_INIT, b = BUF_INIT;
	size_t  ea, eb;
	int     ra = feed(data, size, mode, 0, &a, &ea);
	int     rb = feed(data, size, mode, 1, &b, &eb);

	if (ra != rb || ea != eb || a.len != b.len || (a.len && memcmp(a.data, b.data, a.len)))
	    abort();
	if (ra == SMTPD_DATA_END) {
	    /* The terminator is CR LF . CR LF, or ". CR LF" at the very start. */
	    if (ea < 3 || memcmp(data + ea - 3, ".\r\n", 3) != 0)
		abort();
	    if (ea > 3 && (ea < 5 || memcmp(data + ea - 5, "\r\n", 2) != 0))
		abort();
	}
	/*
	 * Round trip: the stored content, dot-stuffed again as the SMTP
	 * client will send it, plus the terminator, must come back
	 * unchanged and end exactly at the terminator.
	 */
	if (mode != SMTPD_BARE_REJECT && (a.len == 0 || (a.len >= 2
			&& memcmp(a.data + a.len - 2, "\r\n", 2) == 0))) {
	    BUF     st = BUF_INIT, back = BUF_INIT;
	    size_t  i, eback;
	    int     bol = 1;

	    for (i = 0; i < a.len; i++) {
		if (bol && a.data[i] == '.')
		    buf_putc(&st, '.');
		buf_putc(&st, a.data[i]);
		bol = (a.data[i] == '\n');
	    }
	    buf_append(&st, ".\r\n", 3);
	    if (feed((const uint8_t *) st.data, st.len, SMTPD_BARE_REJECT, 1, &back, &eback)
		!= SMTPD_DATA_END || eback != st.len || back.len != a.len
		|| (a.len && memcmp(back.data, a.data, a.len) != 0))
		abort();
	    buf_free(&st);
	    buf_free(&back);
	}
	buf_free(&a);
	buf_free(&b);
    }
    return (0);
}
