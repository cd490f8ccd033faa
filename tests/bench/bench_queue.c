/*
 * bench_queue - durable commit throughput of the queue.
 *
 *   bench_queue [N [SECONDS [THREADS [SIZE]]]]     defaults 20000 60 20 2048
 *
 * THREADS producers each behave like an SMTP session: build a message
 * (SIZE bytes, one recipient), queue_batch_submit() it, and wait for its
 * callback (the "250") before the next one.  The main thread is the event
 * loop: it polls queue_notify_fd() and calls queue_dispatch().  The queue
 * lives in a fresh directory under /var/tmp (the real disk, not tmpfs)
 * and is removed at the end.  The run stops after N messages or SECONDS.
 *
 * Prints durable messages/s, transactions, the average batch (messages per
 * transaction) and p50/p99 of the submit-to-callback latency.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"
#include "log/log.h"
#include "queue/queue.h"

typedef struct PRODUCER {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int     answered;
    int     ok;
} PRODUCER;

static QUEUE *queue;
static int total, nthreads, msg_size;
static int64_t deadline_us;
static atomic_int claimed, committed, failed, running, nlat;
static int64_t *lat_us;			/* one per answered message */

static void producer_cb(void *ctx, int ok, const char *why)
{
    PRODUCER *p = ctx;

    pthread_mutex_lock(&p->lock);
    p->answered = 1;
    p->ok = ok;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static void *producer_main(void *arg)
{
    PRODUCER self;
    QRCPT   rcpt;
    QMSG    msg;
    char   *content = xmalloc((size_t) msg_size);
    int     i, n;

    (void) arg;
    pthread_mutex_init(&self.lock, 0);
    pthread_cond_init(&self.cond, 0);
    for (i = 0; i < msg_size; i++)
	content[i] = (i % 78 == 76) ? '\r' : (i % 78 == 77) ? '\n' : (char) ('a' + i % 26);

    while ((n = atomic_fetch_add(&claimed, 1)) < total && time_mono_us() < deadline_us) {
	QBATCH *b;
	int64_t t0;

	memset(&msg, 0, sizeof(msg));
	memset(&rcpt, 0, sizeof(rcpt));
	queue_assign_id(queue, &msg);
	msg.state = QSTATE_INCOMING;
	msg.arrival_us = time_now_us();
	msg.create_time = msg.arrival_us / 1000000;
	msg.sender = "bench@source.example";
	msg.client_name = "localhost";
	msg.client_addr = "127.0.0.1";
	msg.helo = "localhost";
	msg.size = (size_t) msg_size;
	msg.content = content;
	rcpt.addr = "sink@dest.example";
	msg.rcpts = &rcpt;
	msg.nrcpt = 1;

	t0 = time_mono_us();
	b = queue_batch(queue);
	queue_batch_insert(b, &msg);
	self.answered = 0;
	queue_batch_submit(b, producer_cb, &self);
	pthread_mutex_lock(&self.lock);
	while (!self.answered)
	    pthread_cond_wait(&self.cond, &self.lock);
	pthread_mutex_unlock(&self.lock);
	lat_us[atomic_fetch_add(&nlat, 1)] = time_mono_us() - t0;
	atomic_fetch_add(self.ok ? &committed : &failed, 1);
    }
    pthread_mutex_destroy(&self.lock);
    pthread_cond_destroy(&self.cond);
    free(content);
    atomic_fetch_sub(&running, 1);
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

    return (x > y) - (x < y);
}

int     main(int argc, char **argv)
{
    char    dir[] = "/var/tmp/bench_queue.XXXXXX";
    char    err[256], cmd[128];
    pthread_t *th;
    QUEUE_STATS st;
    int64_t t0, t1, seconds;
    int     i, done;

    total = argc > 1 ? atoi(argv[1]) : 20000;
    seconds = argc > 2 ? atoi(argv[2]) : 60;
    nthreads = argc > 3 ? atoi(argv[3]) : 20;
    msg_size = argc > 4 ? atoi(argv[4]) : 2048;
    if (total <= 0 || seconds <= 0 || nthreads <= 0 || msg_size <= 0)
	msg_fatal("usage: bench_queue [N [SECONDS [THREADS [SIZE]]]]");
    if (mkdtemp(dir) == 0)
	msg_fatal("mkdtemp %s failed", dir);
    if ((queue = queue_open(dir, QUEUE_OPEN_DAEMON, err, sizeof(err))) == 0)
	msg_fatal("%s", err);
    lat_us = xcalloc((size_t) total, sizeof(*lat_us));
    th = xcalloc((size_t) nthreads, sizeof(*th));

    t0 = time_mono_us();
    deadline_us = t0 + seconds * 1000000;
    atomic_store(&running, nthreads);
    for (i = 0; i < nthreads; i++)
	pthread_create(&th[i], 0, producer_main, 0);

    /* The event loop: dispatch until every producer has finished. */
    while (atomic_load(&running) > 0) {
	struct pollfd pfd = {queue_notify_fd(queue), POLLIN, 0};

	if (poll(&pfd, 1, 50) > 0)
	    queue_dispatch(queue);
    }
    for (i = 0; i < nthreads; i++)
	pthread_join(th[i], 0);
    t1 = time_mono_us();
    queue_stats(queue, &st);
    queue_close(queue);

    done = atomic_load(&committed);
    {
	int     nl = atomic_load(&nlat);
	double  secs = (double) (t1 - t0) / 1e6;

	qsort(lat_us, (size_t) nl, sizeof(*lat_us), cmp_i64);
	printf("bench_queue: %d producers, %d-byte messages, 1 recipient, synchronous=FULL, WAL, dir %s\n",
	       nthreads, msg_size, dir);
	printf("durable messages: %d (failed %d) in %.2f s = %.0f msg/s\n",
	       done, atomic_load(&failed), secs, done / secs);
	printf("transactions: %llu, average batch: %.1f messages/transaction\n",
	       (unsigned long long) st.transactions,
	       st.transactions ? (double) st.batches / (double) st.transactions : 0.0);
	printf("transaction time: avg %.0f us, max %llu us\n",
	       st.transactions ? (double) st.commit_us_total / (double) st.transactions : 0.0,
	       (unsigned long long) st.commit_us_max);
	if (nl > 0)
	    printf("commit latency (submit -> callback): p50 %.2f ms, p99 %.2f ms\n",
		   lat_us[nl / 2] / 1000.0, lat_us[(nl * 99) / 100 < nl ? (nl * 99) / 100 : nl - 1] / 1000.0);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
	fprintf(stderr, "bench_queue: could not remove %s\n", dir);
    free(lat_us);
    free(th);
    return atomic_load(&failed) ? 1 : 0;
}
