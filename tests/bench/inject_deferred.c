/*
 * inject_deferred - fill a queue directory with deferred messages, for the
 * scale test (bench/scale-deferred).
 *
 *   inject_deferred DIR N [SIZE [BATCH [DELAY]]]   defaults - - 300 10000 3600
 *
 * Opens DIR with queue_open(QUEUE_OPEN_ADMIN) (so it fails if a relayqd
 * holds the queue), and inserts N one-recipient messages of SIZE content
 * bytes in state QSTATE_DEFERRED with next_eligible = now + DELAY and one
 * attempt already made, BATCH messages per queue_batch_commit() (one
 * durable transaction each).  This is the queue module's own write path,
 * so the store is exactly what the daemon would have written; only the
 * attempt history is left out.
 *
 * Prints one line: messages, seconds, messages/s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"
#include "queue/queue.h"

static void usage(void)
{
    fprintf(stderr, "usage: inject_deferred DIR N [SIZE [BATCH [DELAY]]]\n");
    exit(2);
}

/* A small but well-formed message: headers, blank line, body; CRLF lines. */
static char *make_content(size_t size)
{
    static const char head[] =
	"From: bench@source.example\r\n"
	"To: user@sink.example\r\n"
	"Subject: deferred scale test\r\n"
	"Message-ID: <scale@source.example>\r\n"
	"\r\n";
    char   *c = xmalloc(size + 1);
    size_t  hl = sizeof(head) - 1;
    size_t  i;

    if (size < hl + 2) {
	fprintf(stderr, "inject_deferred: SIZE must be at least %zu\n", hl + 2);
	exit(2);
    }
    memcpy(c, head, hl);
    for (i = hl; i < size; i++)
	c[i] = (char) ('a' + (i % 26));
    /* Body lines of at most 78 characters, the last one ending in CRLF. */
    for (i = hl + 76; i + 1 < size; i += 78) {
	c[i] = '\r';
	c[i + 1] = '\n';
    }
    c[size - 2] = '\r';
    c[size - 1] = '\n';
    c[size] = 0;
    return c;
}

int     main(int argc, char **argv)
{
    char    err[512];
    QUEUE  *q;
    long    n, size = 300, batch = 10000, delay = 3600;
    long    done = 0;

    if (argc < 3 || argc > 6)
	usage();
    n = atol(argv[2]);
    if (argc > 3)
	size = atol(argv[3]);
    if (argc > 4)
	batch = atol(argv[4]);
    if (argc > 5)
	delay = atol(argv[5]);
    if (n <= 0 || size <= 0 || batch <= 0 || delay < 0)
	usage();
    if ((q = queue_open(argv[1], QUEUE_OPEN_ADMIN, err, sizeof(err))) == NULL) {
	fprintf(stderr, "inject_deferred: %s\n", err);
	return 1;
    }
    char   *content = make_content((size_t) size);
    int64_t t0 = time_mono_us();
    int64_t now_us = time_now_us();
    int64_t now = now_us / 1000000;

    while (done < n) {
	QBATCH *b = queue_batch(q);
	long    k;

	for (k = 0; k < batch && done < n; k++, done++) {
	    QMSG    msg;
	    QRCPT   rcpt;

	    memset(&msg, 0, sizeof(msg));
	    memset(&rcpt, 0, sizeof(rcpt));
	    queue_assign_id(q, &msg);
	    msg.state = QSTATE_DEFERRED;
	    msg.arrival_us = now_us;
	    msg.create_time = now;
	    msg.next_eligible = now + delay;
	    msg.attempts = 1;
	    msg.sender = "bench@source.example";
	    msg.client_name = "localhost";
	    msg.client_addr = "127.0.0.1";
	    msg.helo = "localhost";
	    msg.size = (size_t) size;
	    msg.content = content;
	    rcpt.addr = "user@sink.example";
	    rcpt.state = QRCPT_PENDING;
	    rcpt.reason = "connect to 127.0.0.1[127.0.0.1]:20098: Connection refused";
	    snprintf(rcpt.dsn, sizeof(rcpt.dsn), "4.4.1");
	    msg.rcpts = &rcpt;
	    msg.nrcpt = 1;
	    queue_batch_insert(b, &msg);
	}
	if (queue_batch_commit(b, err, sizeof(err)) < 0) {
	    fprintf(stderr, "inject_deferred: commit failed after %ld messages: %s\n",
		    done, err);
	    queue_close(q);
	    return 1;
	}
    }
    double  secs = (double) (time_mono_us() - t0) / 1e6;

    queue_close(q);
    free(content);
    printf("injected %ld deferred messages of %ld bytes in %.1f s (%.0f msg/s), next_eligible now+%lds\n",
	   n, size, secs, secs > 0 ? (double) n / secs : 0.0, delay);
    return 0;
}
