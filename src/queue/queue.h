/*
 * queue - the durable queue: SQLite in WAL mode (synchronous=FULL), one
 * writer thread with group commit, queue IDs, states, per-recipient state,
 * attempt history, recovery at start, the queue lock.  It never decides
 * when to deliver (that is qmgr).
 *
 * The daemon opens the queue with QUEUE_OPEN_DAEMON: that takes the queue
 * lock (queue_directory/lock) for the life of the QUEUE and starts the
 * writer thread.  Writes are batches (QBATCH), all-or-nothing; the writer
 * thread commits many batches in one transaction and then reports each
 * batch's result through the notify fd: the event loop watches
 * queue_notify_fd() and calls queue_dispatch(), which runs the callbacks on
 * the loop's thread.  A callback with ok=1 means the batch is durable.
 *
 * The CLI opens with QUEUE_OPEN_READ (never blocks the daemon; WAL readers)
 * or QUEUE_OPEN_ADMIN (takes the queue lock, fails if the daemon holds it;
 * batches then commit synchronously with queue_batch_commit()).
 */
#ifndef QUEUE_H_INCLUDED
#define QUEUE_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct QUEUE QUEUE;
typedef struct QBATCH QBATCH;

/* Message states, as Postfix's queue directories. */
#define QSTATE_INCOMING	0
#define QSTATE_ACTIVE	1
#define QSTATE_DEFERRED	2
#define QSTATE_HOLD	3
#define QSTATE_CORRUPT	4
const char *queue_state_name(int state);	/* "incoming", ... */

/* Recipient states. */
#define QRCPT_PENDING	0		/* not yet final */
#define QRCPT_DONE	1		/* delivered (or discarded) */
#define QRCPT_BOUNCED	2		/* failed; its bounce is queued (or none is due) */

/* DSN NOTIFY bits (RFC 3461); 0 = not given. */
#define QNOTIFY_NEVER	(1<<0)
#define QNOTIFY_SUCCESS	(1<<1)
#define QNOTIFY_FAILURE	(1<<2)
#define QNOTIFY_DELAY	(1<<3)

/* DSN RET */
#define QRET_NONE	0
#define QRET_FULL	1
#define QRET_HDRS	2

/* Message flags */
#define QFLAG_WARNED		(1<<0)	/* delay warning sent */
#define QFLAG_FORCE_EXPIRE	(1<<1)	/* relayq expire / postsuper -e */
#define QFLAG_SMTPUTF8		(1<<2)	/* needs SMTPUTF8 */
#define QFLAG_8BITMIME		(1<<3)
#define QFLAG_BOUNCE		(1<<4)	/* a notice relayq generated */

typedef struct QRCPT {
    char   *addr;			/* envelope recipient, no <> */
    char   *orcpt;			/* ORCPT as given ("rfc822;a@b"), or NULL */
    int     notify;			/* QNOTIFY_* bits */
    int     state;			/* QRCPT_* */
    char   *reason;			/* last delay/failure reason (mailq), or NULL */
    char    dsn[12];			/* last DSN status, "4.4.1" */
    char   *remote_mta;		/* host that answered (for the DSN), or NULL */
    char   *diag;			/* its reply ("550 5.1.1 ..."), or NULL */
} QRCPT;

typedef struct QMSG {
    uint64_t seq;			/* store key, also in the queue ID */
    char    qid[16];			/* Postfix short form: hex, 10-12 chars */
    int     state;			/* QSTATE_* */
    int     flags;			/* QFLAG_* */
    int64_t arrival_us;		/* MAIL FROM time, microseconds */
    int64_t create_time;		/* first accepted RCPT, whole seconds */
    int64_t next_eligible;		/* end of backoff, whole seconds */
    int     attempts;			/* delivery attempts so far */
    char   *sender;			/* "" for <> */
    char   *envid;			/* ENVID or NULL */
    int     ret;			/* QRET_* */
    char   *client_name;		/* "localhost" */
    char   *client_addr;		/* "127.0.0.1" */
    char   *helo;
    char   *message_id;		/* as logged by cleanup, or NULL */
    char   *filter;			/* after-queue content filter "smtp:[host]:port", or NULL */
    size_t  size;			/* content size in bytes */
    char   *content;			/* full message (CRLF lines, not dot-stuffed), or NULL when not loaded */
    QRCPT  *rcpts;
    int     nrcpt;
} QMSG;

/* One entry of the attempt history (the 32 most recent are kept). */
typedef struct QATTEMPT {
    int64_t start_us;
    int64_t end_us;
    char   *host;			/* next hop name, or NULL when none was reached */
    char   *addr;			/* its address */
    int     port;
    char    dsn[12];
    char   *text;			/* the reply or connection error */
} QATTEMPT;

#define QUEUE_HISTORY_MAX 32

/* Opening */
#define QUEUE_OPEN_DAEMON 1
#define QUEUE_OPEN_READ   2
#define QUEUE_OPEN_ADMIN  3

/*
 * Open (and create, for DAEMON/ADMIN) queue_directory/queue.db.  Returns
 * NULL with one line in err: directory unusable, lock held by a running
 * daemon ("queue directory DIR is locked by a running relayqd (pid N)"),
 * database unreadable or corrupt (PRAGMA quick_check in DAEMON/ADMIN mode),
 * or a schema newer than this program; the file is then left untouched.
 */
QUEUE  *queue_open(const char *dir, int mode, char *err, size_t errlen);
void    queue_close(QUEUE *q);		/* waits for the writer to finish */

/* Give msg a fresh seq and qid (the daemon, at the first accepted RCPT). */
void    queue_assign_id(QUEUE *q, QMSG *msg);

/*
 * Recovery at daemon start (call once after open): active -> incoming;
 * records that fail validation -> corrupt, each reported through warn().
 * Returns the number of messages moved to corrupt, or -1 on a store error
 * (its text in err).
 */
int     queue_recover(QUEUE *q, void (*warn)(void *ctx, const char *qid, const char *why), void *ctx,
		              char *err, size_t errlen);

/*
 * Walk every message (no content, recipients only if with_rcpts), in
 * queue-state order (active, incoming, deferred, hold, corrupt) and then by
 * seq.  fn returns 0 to go on, non-zero to stop.  Returns -1 on error.
 */
int     queue_walk(QUEUE *q, int with_rcpts, int (*fn)(void *ctx, const QMSG *msg), void *ctx);

/*
 * What a read or a write of the queue came to.  The text for a log line,
 * when there is any, goes into the caller's buffer (why, whylen; NULL, 0
 * when not wanted): nothing is kept in the QUEUE for later, as the writer
 * thread and the loop's thread would share it.
 */
#define QUEUE_OK	0
#define QUEUE_GONE	1		/* no such message (deleted, or never queued) */
#define QUEUE_CORRUPT	2		/* its content is missing or fails its length or checksum */
#define QUEUE_TEMP	3		/* the store cannot be read now (busy, I/O error): try later */
const char *queue_status_name(int status);	/* "ok", "gone", "corrupt", "temporary" */

/*
 * Load one message by seq or by qid; with_content loads the content too.
 * Returns a QUEUE_* status; *out is the message when QUEUE_OK, else NULL.
 * A qid that is not a queue ID, or names another message with the same
 * seq, is QUEUE_GONE.  QUEUE_CORRUPT only with with_content.
 */
int     queue_load(QUEUE *q, uint64_t seq, int with_content, QMSG **out, char *why, size_t whylen);
int     queue_load_qid(QUEUE *q, const char *qid, int with_content, QMSG **out,
		               char *why, size_t whylen);

/*
 * Paging: the same order as queue_walk, a page at a time, each page in its
 * own short read transaction, so that a walk over a large queue never holds
 * one snapshot (which would keep the WAL from being checkpointed) and the
 * caller can stop between pages.  Pages do not share a snapshot: a message
 * that changes state between two pages may be seen twice or not at all,
 * as with a walk of Postfix's queue directories.
 *
 *   QCURSOR c;  QMSG *page[256];  int n;
 *   queue_cursor_init(&c);	(optionally c.only_state, c.skip_state, c.max_seq)
 *   while ((n = queue_page(q, &c, 1, page, 256, why, sizeof(why))) > 0)
 *       ... use page[0..n-1], then qmsg_free() each ...
 *   n < 0: a read error (the text in why)
 *
 * A page holds at most max messages, and stops early once it has
 * QUEUE_PAGE_RCPTS recipients (with at least one message).  0 means the
 * walk is over.  queue_page() uses the caller's thread and the QUEUE's
 * reader connection; another thread opens its own QREADER (a read-only
 * connection) and pages with queue_reader_page(); a QREADER is used by
 * one thread at a time.
 */
#define QUEUE_PAGE_RCPTS 4096
typedef struct QCURSOR {
    int     state_idx;			/* position in the walk order */
    uint64_t after_seq;			/* last seq returned in that state */
    uint64_t max_seq;			/* 0, or only messages with seq <= max_seq */
    int     only_state;			/* -1, or only this QSTATE_* */
    int     skip_state;			/* -1, or not this QSTATE_* */
} QCURSOR;
void    queue_cursor_init(QCURSOR *c);
int     queue_cursor_done(const QCURSOR *c);
int     queue_page(QUEUE *q, QCURSOR *c, int with_rcpts, QMSG **msgs, int max, char *why, size_t whylen);
/* The highest seq assigned so far (a walk's max_seq: what is there now, not what comes later). */
uint64_t queue_last_seq(QUEUE *q);

typedef struct QREADER QREADER;
QREADER *queue_reader_open(QUEUE *q, char *err, size_t errlen);
int     queue_reader_page(QREADER *r, QCURSOR *c, int with_rcpts, QMSG **msgs, int max,
			          char *why, size_t whylen);
void    queue_reader_close(QREADER *r);


int     queue_history(QUEUE *q, uint64_t seq, QATTEMPT **out);	/* returns count, oldest first */

void    qmsg_free(QMSG *msg);
QMSG   *qmsg_dup(const QMSG *msg);		/* deep copy (content too) */
void    qattempt_free_array(QATTEMPT *a, int n);

/* Writes: batches, all-or-nothing. */
QBATCH *queue_batch(QUEUE *q);
void    queue_batch_insert(QBATCH *b, const QMSG *msg);	/* msg->content required */
void    queue_batch_update(QBATCH *b, const QMSG *msg);	/* state, flags, next_eligible, attempts, create_time, rcpts' state/reason/dsn/remote_mta/diag */
void    queue_batch_attempt(QBATCH *b, uint64_t seq, const QATTEMPT *a);	/* append history */
void    queue_batch_delete(QBATCH *b, uint64_t seq);
/*
 * Narrow updates for admin edits: only the state, or only some flags
 * (OR-ed in), so that an edit never writes back a row it read earlier.
 * The batch fails if the message is gone.
 */
void    queue_batch_set_state(QBATCH *b, uint64_t seq, int state);
void    queue_batch_set_flags(QBATCH *b, uint64_t seq, int flags);
void    queue_batch_abort(QBATCH *b);

/*
 * Daemon: hand to the writer thread; cb(ctx, ok, why) runs from
 * queue_dispatch().  why is "" when ok, else the store's reason, for a log
 * line ("batch failed: ...", "COMMIT: database or disk is full").
 */
typedef void (*QUEUE_CB) (void *ctx, int ok, const char *why);
void    queue_batch_submit(QBATCH *b, QUEUE_CB cb, void *ctx);

/* Admin/CLI (or tests): commit now, on this thread. Returns 0, or -1 with the reason in why. */
int     queue_batch_commit(QBATCH *b, char *why, size_t whylen);

int     queue_notify_fd(QUEUE *q);
void    queue_dispatch(QUEUE *q);

/* Statistics for metrics: commits, batches, and commit latency. */
typedef struct QUEUE_STATS {
    uint64_t transactions;
    uint64_t batches;
    uint64_t commit_us_total;
    uint64_t commit_us_max;
} QUEUE_STATS;
void    queue_stats(QUEUE *q, QUEUE_STATS *st);

/*
 * A full disk (docs/queue-format.md, "A full disk").  The daemon keeps a
 * reserve file, queue_directory/reserve, of the given size (0: none): when
 * a commit fails because the disk is full, the new mail in it fails and
 * the queue's own bookkeeping (anything but a batch of inserts of new
 * mail) is retried once with the reserve given back to the file system
 * and the WAL checkpointed and truncated.  The reserve is re-created when
 * the file system has the room again; until then queue_space() says
 * reserve_held = 0 and smtpd refuses new mail.  While the file system
 * has less than min_free free (smtpd's threshold) or the reserve is given
 * back, the writer returns the store's free pages to the file system
 * (incremental vacuum: stores created by this version).
 */
void    queue_set_reserve(QUEUE *q, int64_t bytes, int64_t min_free);

typedef struct QUEUE_SPACE {
    uint64_t free_bytes;		/* available to unprivileged users (f_bavail) */
    uint64_t free_blocks;
    uint64_t block_size;
    uint64_t wal_debt;			/* bytes the next checkpoint may add to the database file */
    int64_t reserve_size;		/* 0: no reserve */
    int     reserve_held;		/* 1 also when there is no reserve */
    uint64_t full_errors;		/* transactions that met a full disk */
    uint64_t reserve_releases;		/* times the reserve was given back */
} QUEUE_SPACE;

/* statvfs(queue_directory) and the reserve; -1 (reserve fields set) if statvfs fails. */
int     queue_space(QUEUE *q, QUEUE_SPACE *out);

/*
 * Postfix's rule (smtpd_check_queue): new mail is refused while the free
 * space is below queue_minfree or below 1.5 x message_size_limit; relayq
 * counts the WAL's debt as used, and also refuses mail while the reserve
 * is given back.  Returns 0 (accept),
 * 1 (too little free space) or 2 (the reserve is in use).
 */
#define QUEUE_SPACE_OK		0
#define QUEUE_SPACE_LOW		1
#define QUEUE_SPACE_RESERVE	2
int     queue_space_refuse(const QUEUE_SPACE *sp, long long minfree, long long msg_limit);

/*
 * Fault injection for tests: "before-commit" (the committing thread
 * _exit(9)s just before COMMIT), "after-commit" (just after COMMIT, before
 * any callback), "fail-batch" (the next batch fails alone, ok=0),
 * "full-commit" (commits find the disk full until the reserve has been
 * released once), or NULL to clear.
 */
void    queue_test_fault(QUEUE *q, const char *step);

/*
 * Tests: a full disk.  Queues opened after the first call use a VFS in
 * which, once `writes` more writes have succeeded, every write fails with
 * SQLITE_FULL (ENOSPC); -1: writes succeed again.
 */
void    queue_test_full(long writes);

/* Additions (queue module) */

/*
 * Recovery verifies each content's checksum (streamed, one row at a time)
 * unless this is set to 0; lengths are always verified.
 */
void    queue_set_verify(QUEUE *q, int verify_checksums);

/* The content checksum: 64-bit FNV-1a. */
uint64_t queue_checksum(const void *data, size_t len);

/*
 * Notes: queue_batch_submit() and queue_batch_commit() consume the batch.
 * queue_batch_commit() also works in DAEMON mode (serialized with the
 * writer thread).  queue_close() runs the callbacks of batches that
 * completed but were not yet dispatched.  Deleting a message that is gone
 * succeeds; updating it, or adding an attempt to it, fails the batch.
 * queue_load() of a content whose length or checksum does not match
 * returns QUEUE_CORRUPT.
 */

#endif
