/*
 * queue.c - relayq's durable queue on SQLite (WAL, synchronous=FULL).
 *
 * Two connections per QUEUE: the "writer" connection (DAEMON/ADMIN mode),
 * used by the writer thread and by synchronous commits and recovery, always
 * under q->wlock; and the "reader" connection, used by loads and walks on
 * the caller's thread, under q->rlock (recursive, so a walk callback may
 * load).  Readers never see uncommitted data and never block the writer.
 *
 * Group commit: queue_batch_submit() appends the (deep-copied) batch to
 * q->pending; the writer thread takes everything that is waiting (up to
 * QUEUE_GROUP_MAX) and runs it in one BEGIN IMMEDIATE ... COMMIT, each batch
 * in its own SAVEPOINT so that one failing batch is rolled back alone.
 * After COMMIT the batches move to q->done and the eventfd is written;
 * queue_dispatch() on the event loop's thread runs the callbacks.  A
 * callback with ok=1 therefore runs only after the fsync of COMMIT.
 *
 * See docs/queue-format.md for the schema and the guarantees.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <sqlite3.h>

#include "util/util.h"
#include "log/log.h"
#include "queue/queue.h"

#define QUEUE_SCHEMA_VERSION	2	/* PRAGMA user_version we write */
#define QUEUE_GROUP_MAX		256	/* batches per transaction, at most */
#define QUEUE_BUSY_MS		10000	/* busy_timeout for every connection */
#define QUEUE_BLOB_CHUNK	65536	/* streaming unit for checksums */
#define QUEUE_RESERVE_MARGIN	(1024 * 1024)	/* free space left after re-creating the reserve */
#define QUEUE_RESERVE_RETRY_US	1000000	/* re-create the reserve at most once a second */

/* Prepared statements, cached per connection (prepared at first use). */
enum {
    S_BEGIN, S_COMMIT, S_ROLLBACK, S_SAVEPOINT, S_RELEASE, S_ROLLBACK_TO,
    S_INS_MSG, S_INS_RCPT, S_INS_CONTENT, S_HWM,
    S_UPD_MSG, S_UPD_RCPT, S_SET_STATE, S_SET_FLAGS,
    S_EXISTS, S_ATT_NEXT, S_ATT_INS, S_ATT_TRIM,
    S_DEL_MSG, S_DEL_RCPT, S_DEL_CONTENT, S_DEL_ATT,
    S_LOAD_MSG, S_LOAD_RCPTS, S_LOAD_CONTENT, S_WALK_STATE, S_HISTORY,
    S_BEGIN_READ, S_PAGE,
    S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SAVEPOINT] = "SAVEPOINT batch",
    [S_RELEASE] = "RELEASE batch",
    [S_ROLLBACK_TO] = "ROLLBACK TO batch",
    [S_INS_MSG] = "INSERT INTO msg(seq, qid, state, flags, arrival_us, create_time,"
    " next_eligible, attempts, sender, envid, ret, client_name, client_addr,"
    " helo, message_id, size, nrcpt, filter) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [S_INS_RCPT] = "INSERT INTO rcpt(seq, idx, addr, orcpt, notify, state, reason,"
    " dsn, remote_mta, diag) VALUES(?,?,?,?,?,?,?,?,?,?)",
    [S_INS_CONTENT] = "INSERT INTO content(seq, size, checksum, data) VALUES(?,?,?,?)",
    [S_HWM] = "UPDATE meta SET value = max(CAST(value AS INTEGER), ?)"
    " WHERE key = 'seq_hwm'",
    [S_UPD_MSG] = "UPDATE msg SET state=?, flags=?, next_eligible=?, attempts=?,"
    " create_time=? WHERE seq=?",
    [S_UPD_RCPT] = "UPDATE rcpt SET state=?, reason=?, dsn=?, remote_mta=?, diag=?"
    " WHERE seq=? AND idx=?",
    [S_SET_STATE] = "UPDATE msg SET state=? WHERE seq=?",
    [S_SET_FLAGS] = "UPDATE msg SET flags=(flags | ?) WHERE seq=?",
    [S_EXISTS] = "SELECT 1 FROM msg WHERE seq=?",
    [S_ATT_NEXT] = "SELECT coalesce(max(n), 0) + 1 FROM attempt WHERE seq=?",
    [S_ATT_INS] = "INSERT INTO attempt(seq, n, start_us, end_us, host, addr, port,"
    " dsn, text) VALUES(?,?,?,?,?,?,?,?,?)",
    [S_ATT_TRIM] = "DELETE FROM attempt WHERE seq=? AND n<=?",
    [S_DEL_MSG] = "DELETE FROM msg WHERE seq=?",
    [S_DEL_RCPT] = "DELETE FROM rcpt WHERE seq=?",
    [S_DEL_CONTENT] = "DELETE FROM content WHERE seq=?",
    [S_DEL_ATT] = "DELETE FROM attempt WHERE seq=?",
    [S_LOAD_MSG] = "SELECT seq, qid, state, flags, arrival_us, create_time,"
    " next_eligible, attempts, sender, envid, ret, client_name, client_addr,"
    " helo, message_id, size, nrcpt, filter FROM msg WHERE seq=?",
    [S_LOAD_RCPTS] = "SELECT addr, orcpt, notify, state, reason, dsn, remote_mta,"
    " diag FROM rcpt WHERE seq=? ORDER BY idx",
    [S_LOAD_CONTENT] = "SELECT size, checksum, data FROM content WHERE seq=?",
    [S_WALK_STATE] = "SELECT seq, qid, state, flags, arrival_us, create_time,"
    " next_eligible, attempts, sender, envid, ret, client_name, client_addr,"
    " helo, message_id, size, nrcpt, filter FROM msg WHERE state=? ORDER BY seq",
    [S_HISTORY] = "SELECT start_us, end_us, host, addr, port, dsn, text"
    " FROM attempt WHERE seq=? ORDER BY n",
    [S_BEGIN_READ] = "BEGIN",
    [S_PAGE] = "SELECT seq, qid, state, flags, arrival_us, create_time,"
    " next_eligible, attempts, sender, envid, ret, client_name, client_addr,"
    " helo, message_id, size, nrcpt, filter FROM msg WHERE state=? AND seq>? AND seq<=?"
    " ORDER BY seq LIMIT ?",
};

typedef struct QDB {
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT];
} QDB;

/* One write inside a batch. */
#define QOP_INSERT	1
#define QOP_UPDATE	2
#define QOP_ATTEMPT	3
#define QOP_DELETE	4
#define QOP_SET_STATE	5
#define QOP_SET_FLAGS	6

typedef struct QOP {
    int     type;
    uint64_t seq;
    QMSG   *msg;			/* INSERT, UPDATE */
    QATTEMPT att;			/* ATTEMPT (deep copy) */
    uint64_t sum;			/* INSERT: content checksum */
    int     value;			/* SET_STATE, SET_FLAGS */
} QOP;

struct QBATCH {
    QUEUE  *q;
    QOP    *ops;
    int     nops;
    int     cap;
    QUEUE_CB cb;
    void   *ctx;
    int     ok;
    char    why[200];			/* when !ok: the store's reason */
    int64_t submit_us;
    struct QBATCH *next;
};

/* Fault injection steps. */
#define QFAULT_NONE		0
#define QFAULT_BEFORE_COMMIT	1
#define QFAULT_AFTER_COMMIT	2
#define QFAULT_FAIL_BATCH	3
#define QFAULT_FULL_COMMIT	4	/* the next commit finds the disk full */

struct QUEUE {
    char   *dir;
    char   *path;			/* dir/queue.db */
    int     mode;
    int     lock_fd;
    int     notify_fd;			/* eventfd */
    QDB     w;				/* writer connection (not in READ mode) */
    QDB     r;				/* reader connection */
    pthread_mutex_t wlock;		/* owns q->w */
    pthread_mutex_t rlock;		/* owns q->r (recursive) */
    _Atomic uint64_t next_seq;
    atomic_int fault;
    int     verify_content;		/* recovery: checksum every content */

    /* Writer thread and its lists, under q->lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t writer;
    int     writer_running;
    int     stopping;
    QBATCH *pending_head, *pending_tail;
    QBATCH *done_head, *done_tail;
    QUEUE_STATS stats;

    /*
     * The reserve file (queue_directory/reserve): space held back for the
     * queue's own bookkeeping, under q->lock.  Released (truncated to 0)
     * when a commit fails because the disk is full; re-created when there
     * is room again.
     */
    int     reserve_fd;
    int64_t reserve_size;			/* wanted; 0 = none */
    int     reserve_held;
    int64_t reserve_try_us;			/* last attempt to re-create it */
    uint64_t full_errors;			/* transactions that met a full disk */
    uint64_t reserve_releases;
    int64_t space_goal;			/* free bytes wanted beyond the reserve */
    int     incremental_vacuum;		/* auto_vacuum=INCREMENTAL (stores made by this version) */
    _Atomic int64_t vacuum_try_us;
    int     maintain;			/* wake the writer for space_give_back() */
    int64_t page_size;
    _Atomic int64_t wal_debt;		/* WAL bytes not yet copied into the database file */
};

/* Utilities. */

static void set_err(char *err, size_t errlen, const char *fmt,...) UTIL_PRINTF(3, 4);

static void set_err(char *err, size_t errlen, const char *fmt,...)
{
    va_list ap;

    if (err == 0 || errlen == 0)
	return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* A failed commit step: its reason, for the callback of each of the n batches in v. */
static void batch_why(QBATCH **v, int n, const char *what, sqlite3 *db)
{
    int     i;

    for (i = 0; i < n; i++)
	snprintf(v[i]->why, sizeof(v[i]->why), "%s: %s", what, db ? sqlite3_errmsg(db) : "error");
}

/* 64-bit FNV-1a, incremental. */
#define FNV_INIT	UINT64_C(0xcbf29ce484222325)

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;

    while (len-- > 0) {
	h ^= *p++;
	h *= UINT64_C(0x100000001b3);
    }
    return (h);
}

uint64_t queue_checksum(const void *data, size_t len)
{
    return (fnv1a(FNV_INIT, data, len));
}

const char *queue_state_name(int state)
{
    static const char *const names[] = {
	"incoming", "active", "deferred", "hold", "corrupt",
    };

    if (state < 0 || state >= (int) ARRAY_LEN(names))
	return ("unknown");
    return (names[state]);
}

const char *queue_status_name(int status)
{
    static const char *const names[] = {
	"ok", "gone", "corrupt", "temporary",
    };

    if (status < 0 || status >= (int) ARRAY_LEN(names))
	return ("unknown");
    return (names[status]);
}

/* Statement cache. */

static sqlite3_stmt *qdb_stmt(QDB *d, int which)
{
    if (d->st[which] == 0) {
	if (sqlite3_prepare_v3(d->db, stmt_sql[which], -1,
			       SQLITE_PREPARE_PERSISTENT, &d->st[which], 0)
	    != SQLITE_OK)
	    return (0);
    } else {
	sqlite3_reset(d->st[which]);
	sqlite3_clear_bindings(d->st[which]);
    }
    return (d->st[which]);
}

/* Run a statement that returns no rows; 0 or -1. */
static int qdb_run(QDB *d, int which)
{
    sqlite3_stmt *st = qdb_stmt(d, which);
    int     rc;

    if (st == 0)
	return (-1);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    return ((rc == SQLITE_DONE || rc == SQLITE_ROW) ? 0 : -1);
}

static void qdb_close(QDB *d)
{
    int     i;

    for (i = 0; i < S_COUNT; i++)
	if (d->st[i])
	    sqlite3_finalize(d->st[i]);
    if (d->db)
	sqlite3_close(d->db);
    memset(d, 0, sizeof(*d));
}

static void bind_str(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
	sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
	sqlite3_bind_null(st, i);
}

static char *col_str(sqlite3_stmt *st, int i)
{
    const unsigned char *s;

    if (sqlite3_column_type(st, i) == SQLITE_NULL)
	return (0);
    s = sqlite3_column_text(st, i);
    return (xstrdup(s ? (const char *) s : ""));
}

static void col_dsn(sqlite3_stmt *st, int i, char *dst, size_t len)
{
    const unsigned char *s = sqlite3_column_text(st, i);

    snprintf(dst, len, "%s", s ? (const char *) s : "");
}

/* Simple exec with one integer result (PRAGMA user_version etc.). */
static int db_int(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *st;
    int     rc;

    if (sqlite3_prepare_v2(db, sql, -1, &st, 0) != SQLITE_OK)
	return (-1);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
	if (out)
	    *out = sqlite3_column_int64(st, 0);
	rc = SQLITE_DONE;
    }
    sqlite3_finalize(st);
    return (rc == SQLITE_DONE ? 0 : -1);
}

/* Schema and migrations. */

/*
 * Each migration takes the schema from version (index) to (index + 1).
 * Migrations run in order, each in its own transaction together with the
 * user_version update, so a crash leaves the database at a whole version.
 * To add v2: append its SQL here and raise QUEUE_SCHEMA_VERSION.
 */
static const char *const queue_migrations[QUEUE_SCHEMA_VERSION] = {
    /* 0 -> 1 */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value);"
    "CREATE TABLE msg("
    " seq INTEGER PRIMARY KEY,"
    " qid TEXT NOT NULL,"
    " state INTEGER NOT NULL,"
    " flags INTEGER NOT NULL DEFAULT 0,"
    " arrival_us INTEGER NOT NULL,"
    " create_time INTEGER NOT NULL,"
    " next_eligible INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " sender TEXT NOT NULL,"
    " envid TEXT,"
    " ret INTEGER NOT NULL DEFAULT 0,"
    " client_name TEXT,"
    " client_addr TEXT,"
    " helo TEXT,"
    " message_id TEXT,"
    " size INTEGER NOT NULL,"
    " nrcpt INTEGER NOT NULL);"
    "CREATE INDEX msg_state ON msg(state, seq);"
    "CREATE TABLE rcpt("
    " seq INTEGER NOT NULL,"
    " idx INTEGER NOT NULL,"
    " addr TEXT NOT NULL,"
    " orcpt TEXT,"
    " notify INTEGER NOT NULL DEFAULT 0,"
    " state INTEGER NOT NULL DEFAULT 0,"
    " reason TEXT,"
    " dsn TEXT,"
    " remote_mta TEXT,"
    " diag TEXT,"
    " PRIMARY KEY(seq, idx)) WITHOUT ROWID;"
    "CREATE TABLE content("
    " seq INTEGER PRIMARY KEY,"
    " size INTEGER NOT NULL,"
    " checksum INTEGER NOT NULL,"
    " data BLOB NOT NULL);"
    "CREATE TABLE attempt("
    " seq INTEGER NOT NULL,"
    " n INTEGER NOT NULL,"
    " start_us INTEGER NOT NULL,"
    " end_us INTEGER NOT NULL,"
    " host TEXT,"
    " addr TEXT,"
    " port INTEGER NOT NULL DEFAULT 0,"
    " dsn TEXT,"
    " text TEXT,"
    " PRIMARY KEY(seq, n)) WITHOUT ROWID;"
    "INSERT INTO meta(key, value) VALUES('created', CAST(strftime('%s','now') AS INTEGER));"
    "INSERT INTO meta(key, value) VALUES('seq_hwm', 0);",
    /* 1 -> 2: the after-queue content filter (content_filter, FILTER) */
    "ALTER TABLE msg ADD COLUMN filter TEXT;",
};

static int queue_migrate(sqlite3 *db, int64_t from, char *err, size_t errlen)
{
    int64_t v;
    char   *msg = 0;
    char    sql[256];

    for (v = from; v < QUEUE_SCHEMA_VERSION; v++) {
	snprintf(sql, sizeof(sql),
		 "PRAGMA user_version = %" PRId64 ";"
		 "INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', %" PRId64 ");",
		 v + 1, v + 1);
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, &msg) != SQLITE_OK
	    || sqlite3_exec(db, queue_migrations[v], 0, 0, &msg) != SQLITE_OK
	    || sqlite3_exec(db, sql, 0, 0, &msg) != SQLITE_OK
	    || sqlite3_exec(db, "COMMIT", 0, 0, &msg) != SQLITE_OK) {
	    set_err(err, errlen, "queue schema migration to version %" PRId64 " failed: %s",
		    v + 1, msg ? msg : sqlite3_errmsg(db));
	    sqlite3_free(msg);
	    sqlite3_exec(db, "ROLLBACK", 0, 0, 0);
	    return (-1);
	}
    }
    return (0);
}

/* The queue lock. */

static int queue_lock(QUEUE *q, char *err, size_t errlen)
{
    char   *path = xasprintf("%s/lock", q->dir);
    char    buf[32];
    ssize_t n;
    int     fd;

    fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
	set_err(err, errlen, "cannot open queue lock %s: %s", path, strerror(errno));
	free(path);
	return (-1);
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
	int     saved = errno;

	if (saved == EWOULDBLOCK) {
	    n = pread(fd, buf, sizeof(buf) - 1, 0);
	    buf[n > 0 ? n : 0] = 0;
	    set_err(err, errlen, "queue directory %s is locked by a running relayqd (pid %ld)",
		    q->dir, strtol(buf, 0, 10));
	} else {
	    set_err(err, errlen, "cannot lock %s: %s", path, strerror(saved));
	}
	close(fd);
	free(path);
	return (-1);
    }
    /* The pid is informational (for the message above), the flock is the lock. */
    n = snprintf(buf, sizeof(buf), "%ld\n", (long) getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t) n, 0) != n) {
	set_err(err, errlen, "cannot write queue lock %s: %s", path, strerror(errno));
	close(fd);
	free(path);
	return (-1);
    }
    free(path);
    q->lock_fd = fd;
    return (0);
}

/*
 * Tests: a full disk on demand.  queue_test_full(n) makes the queues opened
 * afterwards use a VFS that passes every call to the default one, except
 * that once n more writes have been done every write fails with
 * SQLITE_FULL (what SQLite makes of ENOSPC) until queue_test_full(-1).
 */
typedef struct FFILE {
    sqlite3_file base;
    sqlite3_file *real;			/* the default VFS's file, right after this */
} FFILE;

static sqlite3_vfs fault_vfs;
static sqlite3_vfs *fault_real;
static sqlite3_io_methods fault_io;
static atomic_long fault_budget = -1;
static atomic_int fault_vfs_on;

#define FREAL(f) (((FFILE *) (f))->real)

static int ff_close(sqlite3_file *f)
{
    int     rc = FREAL(f)->pMethods ? FREAL(f)->pMethods->xClose(FREAL(f)) : SQLITE_OK;

    return (rc);
}

static int ff_read(sqlite3_file *f, void *b, int n, sqlite3_int64 off)
{
    return (FREAL(f)->pMethods->xRead(FREAL(f), b, n, off));
}

static int ff_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 off)
{
    long    left = atomic_load(&fault_budget);

    while (left >= 0) {
	if (left == 0)
	    return (SQLITE_FULL);
	if (atomic_compare_exchange_weak(&fault_budget, &left, left - 1))
	    break;
    }
    return (FREAL(f)->pMethods->xWrite(FREAL(f), b, n, off));
}

static int ff_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return (FREAL(f)->pMethods->xTruncate(FREAL(f), size));
}

static int ff_sync(sqlite3_file *f, int flags)
{
    return (FREAL(f)->pMethods->xSync(FREAL(f), flags));
}

static int ff_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return (FREAL(f)->pMethods->xFileSize(FREAL(f), size));
}

static int ff_lock(sqlite3_file *f, int l)
{
    return (FREAL(f)->pMethods->xLock(FREAL(f), l));
}

static int ff_unlock(sqlite3_file *f, int l)
{
    return (FREAL(f)->pMethods->xUnlock(FREAL(f), l));
}

static int ff_check(sqlite3_file *f, int *out)
{
    return (FREAL(f)->pMethods->xCheckReservedLock(FREAL(f), out));
}

static int ff_fcntl(sqlite3_file *f, int op, void *arg)
{
    return (FREAL(f)->pMethods->xFileControl(FREAL(f), op, arg));
}

static int ff_sector(sqlite3_file *f)
{
    return (FREAL(f)->pMethods->xSectorSize(FREAL(f)));
}

static int ff_dev(sqlite3_file *f)
{
    return (FREAL(f)->pMethods->xDeviceCharacteristics(FREAL(f)));
}

static int ff_shm_map(sqlite3_file *f, int pg, int sz, int ext, void volatile **pp)
{
    return (FREAL(f)->pMethods->xShmMap(FREAL(f), pg, sz, ext, pp));
}

static int ff_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    return (FREAL(f)->pMethods->xShmLock(FREAL(f), off, n, flags));
}

static void ff_shm_barrier(sqlite3_file *f)
{
    FREAL(f)->pMethods->xShmBarrier(FREAL(f));
}

static int ff_shm_unmap(sqlite3_file *f, int del)
{
    return (FREAL(f)->pMethods->xShmUnmap(FREAL(f), del));
}

static int ff_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    *pp = 0;					/* no memory mapping: every read is a read */
    return (SQLITE_OK);
}

static int ff_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return (SQLITE_OK);
}

static int ff_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out)
{
    FFILE  *ff = (FFILE *) f;
    int     rc;

    ff->real = (sqlite3_file *) (ff + 1);
    ff->base.pMethods = 0;
    rc = fault_real->xOpen(fault_real, name, ff->real, flags, out);
    if (rc == SQLITE_OK && ff->real->pMethods)
	ff->base.pMethods = &fault_io;
    return (rc);
}

static void fault_vfs_init(void)
{
    static const sqlite3_io_methods io = {
	3, ff_close, ff_read, ff_write, ff_truncate, ff_sync, ff_size, ff_lock, ff_unlock,
	ff_check, ff_fcntl, ff_sector, ff_dev, ff_shm_map, ff_shm_lock, ff_shm_barrier,
	ff_shm_unmap, ff_fetch, ff_unfetch,
    };

    fault_real = sqlite3_vfs_find(0);
    fault_vfs = *fault_real;
    fault_vfs.szOsFile = (int) sizeof(FFILE) + fault_real->szOsFile;
    fault_vfs.zName = "relayq-test-full";
    fault_vfs.xOpen = ff_open;
    fault_vfs.pNext = 0;
    fault_io = io;
    sqlite3_vfs_register(&fault_vfs, 0);
}

void    queue_test_full(long writes)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, fault_vfs_init);
    atomic_store(&fault_vfs_on, 1);
    atomic_store(&fault_budget, writes);
}

/*
 * The WAL's debt: committed pages still only in the WAL, which the next
 * checkpoint will write into the database file (growing it, if no free
 * page takes them).  smtpd counts it as used space, so that new mail never
 * takes the room a checkpoint needs.  This hook replaces SQLite's automatic
 * checkpoint and does the same (PASSIVE at 1000 pages), measuring as it goes.
 */
#define QUEUE_CKPT_PAGES	1000

static int queue_wal_hook(void *ctx, sqlite3 *db, const char *name, int nframes)
{
    QUEUE  *q = ctx;
    int     nlog = nframes, nckpt = 0;

    if (nframes >= QUEUE_CKPT_PAGES
	&& sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, &nlog, &nckpt) != SQLITE_OK)
	nlog = nframes, nckpt = 0;
    atomic_store(&q->wal_debt, (int64_t) (nlog > nckpt ? nlog - nckpt : 0) * q->page_size);
    return (SQLITE_OK);
}

/* Opening. */

static int qdb_open(QDB *d, const char *path, int flags)
{
    memset(d, 0, sizeof(*d));
    if (sqlite3_open_v2(path, &d->db, flags | SQLITE_OPEN_NOMUTEX,
			atomic_load(&fault_vfs_on) ? "relayq-test-full" : 0) != SQLITE_OK)
	return (-1);
    sqlite3_busy_timeout(d->db, QUEUE_BUSY_MS);
    sqlite3_extended_result_codes(d->db, 0);
    return (0);
}

/*
 * Inspect an existing database without writing to it: a file SQLite
 * cannot read, reports corrupt, or that has a newer schema is refused
 * before anything (journal mode, migration) writes to it.
 */
static int queue_check_db(QUEUE *q, sqlite3 *db, int64_t *version, int deep,
			          char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int     rc;

    if (db_int(db, "PRAGMA user_version", version) < 0) {
	struct statvfs sv;

	if (statvfs(q->dir, &sv) == 0 && (uint64_t) sv.f_bavail * sv.f_frsize < QUEUE_RESERVE_MARGIN)
	    set_err(err, errlen, "queue database %s cannot be opened (%s): the queue file system"
		    " is full (%llu bytes free); free some space", q->path, sqlite3_errmsg(db),
		    (unsigned long long) sv.f_bavail * sv.f_frsize);
	else
	    set_err(err, errlen, "queue database %s is unreadable or corrupt (%s); not touching it",
		    q->path, sqlite3_errmsg(db));
	return (-1);
    }
    if (*version > QUEUE_SCHEMA_VERSION) {
	set_err(err, errlen, "queue database %s has schema version %" PRId64
		", newer than this relayq supports (%d); refusing to open it",
		q->path, *version, QUEUE_SCHEMA_VERSION);
	return (-1);
    }
    if (!deep)
	return (0);
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, 0) != SQLITE_OK) {
	set_err(err, errlen, "queue database %s is corrupt (%s); not touching it",
		q->path, sqlite3_errmsg(db));
	return (-1);
    }
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW
	|| strcmp((const char *) sqlite3_column_text(st, 0), "ok") != 0) {
	set_err(err, errlen, "queue database %s is corrupt (quick_check: %s); not touching it",
		q->path, rc == SQLITE_ROW ? (const char *) sqlite3_column_text(st, 0)
		: sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return (-1);
    }
    sqlite3_finalize(st);
    return (0);
}

static void *queue_writer_main(void *arg);

/* At open on a full file system: truncate an existing reserve.  1 if it gave space back. */
static int reserve_give_back_at_open(QUEUE *q)
{
    struct statvfs sv;
    struct stat sb;
    char   *path = xasprintf("%s/reserve", q->dir);
    int     fd, ok = 0;

    if (statvfs(q->dir, &sv) == 0 && (uint64_t) sv.f_bavail * sv.f_frsize < QUEUE_RESERVE_MARGIN
	&& (fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) >= 0) {
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_blocks > 0 && ftruncate(fd, 0) == 0) {
	    q->reserve_releases++;
	    q->full_errors++;
	    ok = 1;
	}
	close(fd);
    }
    free(path);
    return (ok);
}

QUEUE  *queue_open(const char *dir, int mode, char *err, size_t errlen)
{
    QUEUE  *q;
    struct stat sb;
    int64_t version = 0, maxseq = 0, hwm = 0, autovac = 0;
    int     retried = 0;
    pthread_mutexattr_t ma;
    int     existed;

    if (mode != QUEUE_OPEN_DAEMON && mode != QUEUE_OPEN_READ && mode != QUEUE_OPEN_ADMIN) {
	set_err(err, errlen, "queue_open: bad mode %d", mode);
	return (0);
    }
    if (dir == 0 || *dir == 0) {
	set_err(err, errlen, "queue_directory is empty");
	return (0);
    }
    q = xcalloc(1, sizeof(*q));
    q->dir = xstrdup(dir);
    q->path = xasprintf("%s/queue.db", dir);
    q->mode = mode;
    q->lock_fd = -1;
    q->notify_fd = -1;
    q->reserve_fd = -1;
    q->verify_content = 1;
    atomic_init(&q->next_seq, 1);
    atomic_init(&q->fault, QFAULT_NONE);
    pthread_mutex_init(&q->wlock, 0);
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&q->rlock, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_mutex_init(&q->lock, 0);
    pthread_cond_init(&q->cond, 0);

    if (mode != QUEUE_OPEN_READ) {
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
	    set_err(err, errlen, "cannot create queue directory %s: %s", dir, strerror(errno));
	    goto fail;
	}
	if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
	    set_err(err, errlen, "queue directory %s is not a directory", dir);
	    goto fail;
	}
	if (queue_lock(q, err, errlen) < 0)
	    goto fail;
    }
    existed = (stat(q->path, &sb) == 0 && sb.st_size > 0);
    if (mode == QUEUE_OPEN_READ && stat(q->path, &sb) < 0) {
	set_err(err, errlen, "queue database %s: %s", q->path, strerror(errno));
	goto fail;
    }

    if (mode != QUEUE_OPEN_READ) {
retry_open:
	if (qdb_open(&q->w, q->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) < 0) {
	    set_err(err, errlen, "cannot open queue database %s: %s", q->path,
		    q->w.db ? sqlite3_errmsg(q->w.db) : "out of memory");
	    goto fail;
	}
	if (existed && queue_check_db(q, q->w.db, &version, 1, err, errlen) < 0) {
	    /*
	     * A WAL store cannot even be opened without room for its -shm
	     * and -wal files: on a full disk, give the reserve back once.
	     */
	    if (!retried && reserve_give_back_at_open(q)) {
		retried = 1;
		qdb_close(&q->w);
		goto retry_open;
	    }
	    goto fail;
	}
	/* A new store can give freed pages back to the file system (a full disk). */
	if (!existed && db_int(q->w.db, "PRAGMA auto_vacuum=INCREMENTAL", 0) < 0) {
	    set_err(err, errlen, "cannot set auto_vacuum on %s: %s", q->path, sqlite3_errmsg(q->w.db));
	    goto fail;
	}
	/*
	 * secure_delete=FAST: removing a message must not write its whole
	 * content again (zeros) into the WAL, as Debian's default (ON) does:
	 * 16 KB instead of 1 MB of WAL for a 1 MB message, which is what
	 * lets a removal succeed on a full disk.
	 */
	if (db_int(q->w.db, "PRAGMA journal_mode=WAL", 0) < 0
	    || db_int(q->w.db, "PRAGMA synchronous=FULL", 0) < 0
	    || db_int(q->w.db, "PRAGMA secure_delete=FAST", 0) < 0) {
	    set_err(err, errlen, "cannot set WAL mode on %s: %s", q->path,
		    sqlite3_errmsg(q->w.db));
	    goto fail;
	}
	if (version < QUEUE_SCHEMA_VERSION
	    && queue_migrate(q->w.db, version, err, errlen) < 0)
	    goto fail;
	if (db_int(q->w.db, "SELECT coalesce(max(seq), 0) FROM msg", &maxseq) < 0
	    || db_int(q->w.db, "SELECT coalesce(max(CAST(value AS INTEGER)), 0)"
		      " FROM meta WHERE key='seq_hwm'", &hwm) < 0) {
	    set_err(err, errlen, "cannot read queue database %s: %s", q->path,
		    sqlite3_errmsg(q->w.db));
	    goto fail;
	}
	atomic_store(&q->next_seq, (uint64_t) (maxseq > hwm ? maxseq : hwm) + 1);
	if (db_int(q->w.db, "PRAGMA auto_vacuum", &autovac) == 0)
	    q->incremental_vacuum = autovac == 2;
	if (db_int(q->w.db, "PRAGMA page_size", &q->page_size) < 0 || q->page_size <= 0)
	    q->page_size = 4096;
	sqlite3_wal_hook(q->w.db, queue_wal_hook, q);
    }

    /*
     * The reader connection.  READ mode opens read-write without CREATE
     * (WAL readers need the -shm), falling back to read-only for a user
     * who may not write the directory.
     */
    if (qdb_open(&q->r, q->path, SQLITE_OPEN_READWRITE) < 0) {
	qdb_close(&q->r);
	if (qdb_open(&q->r, q->path, SQLITE_OPEN_READONLY) < 0) {
	    set_err(err, errlen, "cannot open queue database %s: %s", q->path,
		    q->r.db ? sqlite3_errmsg(q->r.db) : "out of memory");
	    goto fail;
	}
    }
    if (mode == QUEUE_OPEN_READ) {
	/* A reader without the lock must not checkpoint when it closes. */
	sqlite3_db_config(q->r.db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *) 0);
	if (queue_check_db(q, q->r.db, &version, 0, err, errlen) < 0)
	    goto fail;
	if (version < QUEUE_SCHEMA_VERSION) {
	    set_err(err, errlen, "queue database %s has schema version %" PRId64
		    " (this relayq uses %d); start relayqd once to upgrade it",
		    q->path, version, QUEUE_SCHEMA_VERSION);
	    goto fail;
	}
	if (db_int(q->r.db, "SELECT coalesce(max(seq), 0) FROM msg", &maxseq) < 0) {
	    set_err(err, errlen, "cannot read queue database %s: %s", q->path,
		    sqlite3_errmsg(q->r.db));
	    goto fail;
	}
	atomic_store(&q->next_seq, (uint64_t) maxseq + 1);
    }

    q->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->notify_fd < 0) {
	set_err(err, errlen, "eventfd: %s", strerror(errno));
	goto fail;
    }
    if (mode == QUEUE_OPEN_DAEMON) {
	if (pthread_create(&q->writer, 0, queue_writer_main, q) != 0) {
	    set_err(err, errlen, "cannot start the queue writer thread");
	    goto fail;
	}
	q->writer_running = 1;
    }
    return (q);

fail:
    queue_close(q);
    return (0);
}

static void qbatch_free(QBATCH *b);

void    queue_close(QUEUE *q)
{
    QBATCH *b;

    if (q == 0)
	return;
    if (q->writer_running) {
	pthread_mutex_lock(&q->lock);
	q->stopping = 1;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
	pthread_join(q->writer, 0);
	q->writer_running = 0;
    }
    /* Report what was committed (or failed) but not yet dispatched. */
    if (q->notify_fd >= 0)
	queue_dispatch(q);
    while ((b = q->pending_head) != 0) {	/* only if the writer never ran */
	q->pending_head = b->next;
	if (b->cb)
	    b->cb(b->ctx, 0, "the queue was closed before the batch was written");
	qbatch_free(b);
    }
    qdb_close(&q->r);
    qdb_close(&q->w);
    if (q->notify_fd >= 0)
	close(q->notify_fd);
    if (q->lock_fd >= 0)
	close(q->lock_fd);
    if (q->reserve_fd >= 0)
	close(q->reserve_fd);
    pthread_mutex_destroy(&q->wlock);
    pthread_mutex_destroy(&q->rlock);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    free(q->dir);
    free(q->path);
    free(q);
}

/* IDs. */

void    queue_assign_id(QUEUE *q, QMSG *msg)
{
    uint64_t seq = atomic_fetch_add(&q->next_seq, 1);
    int64_t now = time_now_us();

    msg->seq = seq;
    /* 5 hex digits of the microseconds (< 0xF4240), then the seq. */
    snprintf(msg->qid, sizeof(msg->qid), "%05X%05" PRIX64,
	     (unsigned) (now % 1000000), seq);
}

/* The seq from a queue ID: everything after the 5 microsecond digits. */
static int qid_to_seq(const char *qid, uint64_t *seq)
{
    size_t  len = qid ? strlen(qid) : 0;
    size_t  i;
    uint64_t v = 0;

    if (len < 10 || len > 15)
	return (-1);
    for (i = 0; i < len; i++) {
	int     c = qid[i];

	if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')))
	    return (-1);
	if (i >= 5)
	    v = v * 16 + (uint64_t) (c <= '9' ? c - '0' : c - 'A' + 10);
    }
    *seq = v;
    return (0);
}

/* Messages in memory. */

static void qrcpt_free_fields(QRCPT *r)
{
    free(r->addr);
    free(r->orcpt);
    free(r->reason);
    free(r->remote_mta);
    free(r->diag);
}

void    qmsg_free(QMSG *msg)
{
    int     i;

    if (msg == 0)
	return;
    free(msg->sender);
    free(msg->envid);
    free(msg->client_name);
    free(msg->client_addr);
    free(msg->helo);
    free(msg->message_id);
    free(msg->filter);
    free(msg->content);
    for (i = 0; i < msg->nrcpt; i++)
	qrcpt_free_fields(&msg->rcpts[i]);
    free(msg->rcpts);
    free(msg);
}

static QMSG *qmsg_copy(const QMSG *src, int with_content)
{
    QMSG   *m = xmalloc(sizeof(*m));
    int     i;

    *m = *src;
    m->sender = xstrdup(src->sender);
    m->envid = xstrdup(src->envid);
    m->client_name = xstrdup(src->client_name);
    m->client_addr = xstrdup(src->client_addr);
    m->helo = xstrdup(src->helo);
    m->message_id = xstrdup(src->message_id);
    m->filter = xstrdup(src->filter);
    m->content = 0;
    if (with_content && src->content) {
	m->content = xmalloc(src->size + 1);
	memcpy(m->content, src->content, src->size);
	m->content[src->size] = 0;
    }
    m->rcpts = 0;
    if (src->nrcpt > 0) {
	m->rcpts = xcalloc((size_t) src->nrcpt, sizeof(QRCPT));
	for (i = 0; i < src->nrcpt; i++) {
	    const QRCPT *s = &src->rcpts[i];
	    QRCPT  *d = &m->rcpts[i];

	    *d = *s;
	    d->addr = xstrdup(s->addr);
	    d->orcpt = xstrdup(s->orcpt);
	    d->reason = xstrdup(s->reason);
	    d->remote_mta = xstrdup(s->remote_mta);
	    d->diag = xstrdup(s->diag);
	}
    } else {
	m->nrcpt = 0;
    }
    return (m);
}

QMSG   *qmsg_dup(const QMSG *msg)
{
    return (msg ? qmsg_copy(msg, 1) : 0);
}

void    qattempt_free_array(QATTEMPT *a, int n)
{
    int     i;

    if (a == 0)
	return;
    for (i = 0; i < n; i++) {
	free(a[i].host);
	free(a[i].addr);
	free(a[i].text);
    }
    free(a);
}

/* Batches. */

QBATCH *queue_batch(QUEUE *q)
{
    QBATCH *b = xcalloc(1, sizeof(*b));

    b->q = q;
    return (b);
}

static QOP *qbatch_add(QBATCH *b, int type, uint64_t seq)
{
    QOP    *op;

    if (b->nops == b->cap) {
	b->cap = b->cap ? b->cap * 2 : 4;
	b->ops = xrealloc(b->ops, (size_t) b->cap * sizeof(QOP));
    }
    op = &b->ops[b->nops++];
    memset(op, 0, sizeof(*op));
    op->type = type;
    op->seq = seq;
    return (op);
}

static void qbatch_free(QBATCH *b)
{
    int     i;

    for (i = 0; i < b->nops; i++) {
	qmsg_free(b->ops[i].msg);
	free(b->ops[i].att.host);
	free(b->ops[i].att.addr);
	free(b->ops[i].att.text);
    }
    free(b->ops);
    free(b);
}

void    queue_batch_insert(QBATCH *b, const QMSG *msg)
{
    QOP    *op = qbatch_add(b, QOP_INSERT, msg->seq);

    op->msg = qmsg_copy(msg, 1);
    /* On the caller's thread: keeps the writer thread's work short. */
    if (msg->content)
	op->sum = queue_checksum(msg->content, msg->size);
}

void    queue_batch_update(QBATCH *b, const QMSG *msg)
{
    qbatch_add(b, QOP_UPDATE, msg->seq)->msg = qmsg_copy(msg, 0);
}

void    queue_batch_attempt(QBATCH *b, uint64_t seq, const QATTEMPT *a)
{
    QOP    *op = qbatch_add(b, QOP_ATTEMPT, seq);

    op->att = *a;
    op->att.host = xstrdup(a->host);
    op->att.addr = xstrdup(a->addr);
    op->att.text = xstrdup(a->text);
}

void    queue_batch_delete(QBATCH *b, uint64_t seq)
{
    qbatch_add(b, QOP_DELETE, seq);
}

void    queue_batch_set_state(QBATCH *b, uint64_t seq, int state)
{
    qbatch_add(b, QOP_SET_STATE, seq)->value = state;
}

void    queue_batch_set_flags(QBATCH *b, uint64_t seq, int flags)
{
    qbatch_add(b, QOP_SET_FLAGS, seq)->value = flags;
}

void    queue_batch_abort(QBATCH *b)
{
    if (b)
	qbatch_free(b);
}

/* Applying a batch (writer connection, inside a transaction). */

static int step_done(sqlite3_stmt *st)
{
    int     rc = sqlite3_step(st);

    sqlite3_reset(st);
    return (rc == SQLITE_DONE ? 0 : -1);
}

static int apply_insert(QDB *d, const QMSG *m, uint64_t sum)
{
    sqlite3_stmt *st;
    int     i;

    if (m->content == 0 || m->nrcpt <= 0 || m->seq == 0 || m->qid[0] == 0)
	return (-1);
    if ((st = qdb_stmt(d, S_INS_MSG)) == 0)
	return (-1);
    sqlite3_bind_int64(st, 1, (sqlite3_int64) m->seq);
    sqlite3_bind_text(st, 2, m->qid, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, m->state);
    sqlite3_bind_int(st, 4, m->flags);
    sqlite3_bind_int64(st, 5, m->arrival_us);
    sqlite3_bind_int64(st, 6, m->create_time);
    sqlite3_bind_int64(st, 7, m->next_eligible);
    sqlite3_bind_int(st, 8, m->attempts);
    bind_str(st, 9, m->sender ? m->sender : "");
    bind_str(st, 10, m->envid);
    sqlite3_bind_int(st, 11, m->ret);
    bind_str(st, 12, m->client_name);
    bind_str(st, 13, m->client_addr);
    bind_str(st, 14, m->helo);
    bind_str(st, 15, m->message_id);
    sqlite3_bind_int64(st, 16, (sqlite3_int64) m->size);
    sqlite3_bind_int(st, 17, m->nrcpt);
    bind_str(st, 18, m->filter);
    if (step_done(st) < 0)
	return (-1);
    for (i = 0; i < m->nrcpt; i++) {
	const QRCPT *r = &m->rcpts[i];

	if (r->addr == 0 || (st = qdb_stmt(d, S_INS_RCPT)) == 0)
	    return (-1);
	sqlite3_bind_int64(st, 1, (sqlite3_int64) m->seq);
	sqlite3_bind_int(st, 2, i);
	bind_str(st, 3, r->addr);
	bind_str(st, 4, r->orcpt);
	sqlite3_bind_int(st, 5, r->notify);
	sqlite3_bind_int(st, 6, r->state);
	bind_str(st, 7, r->reason);
	bind_str(st, 8, r->dsn[0] ? r->dsn : 0);
	bind_str(st, 9, r->remote_mta);
	bind_str(st, 10, r->diag);
	if (step_done(st) < 0)
	    return (-1);
    }
    if ((st = qdb_stmt(d, S_INS_CONTENT)) == 0)
	return (-1);
    sqlite3_bind_int64(st, 1, (sqlite3_int64) m->seq);
    sqlite3_bind_int64(st, 2, (sqlite3_int64) m->size);
    sqlite3_bind_int64(st, 3, (sqlite3_int64) sum);
    sqlite3_bind_blob64(st, 4, m->content, m->size, SQLITE_STATIC);
    return (step_done(st));
}

static int msg_exists(QDB *d, uint64_t seq)
{
    sqlite3_stmt *st = qdb_stmt(d, S_EXISTS);
    int     rc;

    if (st == 0)
	return (-1);
    sqlite3_bind_int64(st, 1, (sqlite3_int64) seq);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    return (rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1);
}

static int apply_update(QDB *d, const QMSG *m)
{
    sqlite3_stmt *st;
    int     i;

    if ((st = qdb_stmt(d, S_UPD_MSG)) == 0)
	return (-1);
    sqlite3_bind_int(st, 1, m->state);
    sqlite3_bind_int(st, 2, m->flags);
    sqlite3_bind_int64(st, 3, m->next_eligible);
    sqlite3_bind_int(st, 4, m->attempts);
    sqlite3_bind_int64(st, 5, m->create_time);
    sqlite3_bind_int64(st, 6, (sqlite3_int64) m->seq);
    if (step_done(st) < 0 || sqlite3_changes(d->db) != 1)
	return (-1);				/* gone: the batch fails */
    for (i = 0; i < m->nrcpt; i++) {
	const QRCPT *r = &m->rcpts[i];

	if ((st = qdb_stmt(d, S_UPD_RCPT)) == 0)
	    return (-1);
	sqlite3_bind_int(st, 1, r->state);
	bind_str(st, 2, r->reason);
	bind_str(st, 3, r->dsn[0] ? r->dsn : 0);
	bind_str(st, 4, r->remote_mta);
	bind_str(st, 5, r->diag);
	sqlite3_bind_int64(st, 6, (sqlite3_int64) m->seq);
	sqlite3_bind_int(st, 7, i);
	if (step_done(st) < 0 || sqlite3_changes(d->db) != 1)
	    return (-1);
    }
    return (0);
}

static int apply_attempt(QDB *d, uint64_t seq, const QATTEMPT *a)
{
    sqlite3_stmt *st;
    int64_t n;

    if (msg_exists(d, seq) != 1)
	return (-1);
    if ((st = qdb_stmt(d, S_ATT_NEXT)) == 0)
	return (-1);
    sqlite3_bind_int64(st, 1, (sqlite3_int64) seq);
    if (sqlite3_step(st) != SQLITE_ROW) {
	sqlite3_reset(st);
	return (-1);
    }
    n = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if ((st = qdb_stmt(d, S_ATT_INS)) == 0)
	return (-1);
    sqlite3_bind_int64(st, 1, (sqlite3_int64) seq);
    sqlite3_bind_int64(st, 2, n);
    sqlite3_bind_int64(st, 3, a->start_us);
    sqlite3_bind_int64(st, 4, a->end_us);
    bind_str(st, 5, a->host);
    bind_str(st, 6, a->addr);
    sqlite3_bind_int(st, 7, a->port);
    bind_str(st, 8, a->dsn[0] ? a->dsn : 0);
    bind_str(st, 9, a->text);
    if (step_done(st) < 0)
	return (-1);
    if ((st = qdb_stmt(d, S_ATT_TRIM)) == 0)
	return (-1);
    sqlite3_bind_int64(st, 1, (sqlite3_int64) seq);
    sqlite3_bind_int64(st, 2, n - QUEUE_HISTORY_MAX);
    return (step_done(st));
}

/* One column of a message that must still be there. */
static int apply_set(QDB *d, int which, uint64_t seq, int value)
{
    sqlite3_stmt *st;

    if ((st = qdb_stmt(d, which)) == 0)
	return (-1);
    sqlite3_bind_int(st, 1, value);
    sqlite3_bind_int64(st, 2, (sqlite3_int64) seq);
    if (step_done(st) < 0 || sqlite3_changes(d->db) != 1)
	return (-1);
    return (0);
}

/* Deleting a message that is already gone is not an error (idempotent). */
static int apply_delete(QDB *d, uint64_t seq)
{
    static const int which[] = {S_DEL_MSG, S_DEL_RCPT, S_DEL_CONTENT, S_DEL_ATT};
    sqlite3_stmt *st;
    size_t  i;

    for (i = 0; i < ARRAY_LEN(which); i++) {
	if ((st = qdb_stmt(d, which[i])) == 0)
	    return (-1);
	sqlite3_bind_int64(st, 1, (sqlite3_int64) seq);
	if (step_done(st) < 0)
	    return (-1);
    }
    return (0);
}

static int apply_batch(QUEUE *q, QBATCH *b)
{
    int     i, rc = 0;
    int     expect = QFAULT_FAIL_BATCH;

    if (atomic_compare_exchange_strong(&q->fault, &expect, QFAULT_NONE))
	return (-1);
    for (i = 0; rc == 0 && i < b->nops; i++) {
	QOP    *op = &b->ops[i];

	switch (op->type) {
	case QOP_INSERT:
	    rc = apply_insert(&q->w, op->msg, op->sum);
	    break;
	case QOP_UPDATE:
	    rc = apply_update(&q->w, op->msg);
	    break;
	case QOP_ATTEMPT:
	    rc = apply_attempt(&q->w, op->seq, &op->att);
	    break;
	case QOP_DELETE:
	    rc = apply_delete(&q->w, op->seq);
	    break;
	case QOP_SET_STATE:
	    rc = apply_set(&q->w, S_SET_STATE, op->seq, op->value);
	    break;
	case QOP_SET_FLAGS:
	    rc = apply_set(&q->w, S_SET_FLAGS, op->seq, op->value);
	    break;
	default:
	    rc = -1;
	}
    }
    return (rc);
}

/* SQLite says the disk (or the file size limit) is full. */
#define IS_FULL(db) (sqlite3_errcode(db) == SQLITE_FULL)

/*
 * Commit n batches in one transaction; sets each b->ok and, when a write
 * failed because the disk is full, *full.  Caller holds q->wlock.
 * Returns the number of batches that committed.
 */
static int commit_group_once(QUEUE *q, QBATCH **v, int n, int *full)
{
    int64_t t0 = time_mono_us(), dt;
    int     i, good = 0;

    for (i = 0; i < n; i++) {
	v[i]->ok = 0;
	v[i]->why[0] = 0;
    }
    if (atomic_load(&q->fault) == QFAULT_FULL_COMMIT) {
	batch_why(v, n, "COMMIT", 0);
	*full = 1;
	return (0);
    }
    if (qdb_run(&q->w, S_BEGIN) < 0) {
	*full |= IS_FULL(q->w.db);
	batch_why(v, n, "BEGIN", q->w.db);
	return (0);
    }
    for (i = 0; i < n; i++) {
	if (qdb_run(&q->w, S_SAVEPOINT) < 0) {
	    *full |= IS_FULL(q->w.db);
	    break;
	}
	if (apply_batch(q, v[i]) == 0) {
	    if (qdb_run(&q->w, S_RELEASE) < 0) {
		*full |= IS_FULL(q->w.db);
		break;
	    }
	    v[i]->ok = 1;
	} else {
	    *full |= IS_FULL(q->w.db);
	    batch_why(&v[i], 1, "batch failed", q->w.db);
	    if (qdb_run(&q->w, S_ROLLBACK_TO) < 0 || qdb_run(&q->w, S_RELEASE) < 0)
		break;
	}
    }
    /*
     * The high-water mark keeps seqs monotonic after the newest messages
     * are deleted; raised once per transaction, inside it.
     */
    if (i == n) {
	uint64_t hwm = 0;
	int     j, k;
	sqlite3_stmt *st;

	for (j = 0; j < n; j++)
	    for (k = 0; v[j]->ok && k < v[j]->nops; k++)
		if (v[j]->ops[k].type == QOP_INSERT && v[j]->ops[k].seq > hwm)
		    hwm = v[j]->ops[k].seq;
	if (hwm > 0) {
	    if ((st = qdb_stmt(&q->w, S_HWM)) == 0)
		i = -1;
	    else {
		sqlite3_bind_int64(st, 1, (sqlite3_int64) hwm);
		if (step_done(st) < 0) {
		    *full |= IS_FULL(q->w.db);
		    i = -1;
		}
	    }
	}
    }
    if (i != n) {				/* savepoint or meta update failed */
	batch_why(v, n, "SAVEPOINT or meta update", q->w.db);
	qdb_run(&q->w, S_ROLLBACK);
	for (i = 0; i < n; i++)
	    v[i]->ok = 0;
	return (0);
    }
    if (atomic_load(&q->fault) == QFAULT_BEFORE_COMMIT)
	_exit(9);
    if (qdb_run(&q->w, S_COMMIT) < 0) {
	*full |= IS_FULL(q->w.db);
	batch_why(v, n, "COMMIT", q->w.db);
	qdb_run(&q->w, S_ROLLBACK);
	for (i = 0; i < n; i++)
	    v[i]->ok = 0;
	return (0);
    }
    if (atomic_load(&q->fault) == QFAULT_AFTER_COMMIT)
	_exit(9);
    for (i = 0; i < n; i++)
	good += v[i]->ok;
    dt = time_mono_us() - t0;
    pthread_mutex_lock(&q->lock);
    q->stats.transactions++;
    q->stats.batches += (uint64_t) n;
    q->stats.commit_us_total += (uint64_t) dt;
    if ((uint64_t) dt > q->stats.commit_us_max)
	q->stats.commit_us_max = (uint64_t) dt;
    pthread_mutex_unlock(&q->lock);
    return (good);
}

/*
 * Checkpoint and truncate the WAL, which gives its space back to the file
 * system.  A reader's snapshot (mailq, sqlite3 -readonly) can prevent it:
 * wait for readers only briefly, as the writer thread must go on.
 */
static void checkpoint_truncate(QUEUE *q)
{
    int     nlog = 0, nckpt = 0;

    sqlite3_busy_timeout(q->w.db, 100);
    int     rc = sqlite3_wal_checkpoint_v2(q->w.db, 0, SQLITE_CHECKPOINT_TRUNCATE, &nlog, &nckpt);

    if (rc == SQLITE_OK || rc == SQLITE_BUSY)
	atomic_store(&q->wal_debt, (int64_t) (nlog > nckpt ? nlog - nckpt : 0) * q->page_size);
    sqlite3_busy_timeout(q->w.db, QUEUE_BUSY_MS);
}

/*
 * New mail: a batch of inserts only, none of them a notice relayq made.
 * Everything else is the queue's bookkeeping (a pass's outcome with its
 * notices, an administrator's change), which may use the reserve.
 */
static int batch_is_new_mail(const QBATCH *b)
{
    int     i;

    for (i = 0; i < b->nops; i++)
	if (b->ops[i].type != QOP_INSERT || (b->ops[i].msg->flags & QFLAG_BOUNCE))
	    return (0);
    return (b->nops > 0);
}

/* The reserve file. Caller holds q->lock. */
static void reserve_release_locked(QUEUE *q)
{
    if (q->reserve_fd >= 0 && ftruncate(q->reserve_fd, 0) < 0) {
	/* Nothing more to give back. */
    }
    if (q->reserve_held)
	q->reserve_releases++;
    q->reserve_held = 0;
    q->reserve_try_us = time_mono_us();
}

/* Allocate the reserve file's blocks if the file system has the room. */
static void reserve_make_locked(QUEUE *q, int force)
{
    struct statvfs sv;
    struct stat sb;
    int64_t now = time_mono_us();
    char   *path;

    if (q->reserve_size <= 0 || q->reserve_held)
	return;
    if (!force && now - q->reserve_try_us < QUEUE_RESERVE_RETRY_US)
	return;
    q->reserve_try_us = now;
    if (q->reserve_fd < 0) {
	path = xasprintf("%s/reserve", q->dir);
	q->reserve_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	free(path);
	if (q->reserve_fd < 0)
	    return;
    }
    if (fstat(q->reserve_fd, &sb) == 0 && S_ISREG(sb.st_mode)
	&& (int64_t) sb.st_blocks * 512 >= q->reserve_size) {
	if (sb.st_size > q->reserve_size && ftruncate(q->reserve_fd, q->reserve_size) < 0) {
	    /* A larger reserve than asked for still does its job. */
	}
	q->reserve_held = 1;
	return;
    }
    /* Leave the file system a margin beyond the reserve itself. */
    if (fstatvfs(q->reserve_fd, &sv) < 0
	|| (uint64_t) sv.f_bavail * sv.f_frsize
	< (uint64_t) q->reserve_size + QUEUE_RESERVE_MARGIN)
	return;
    if (posix_fallocate(q->reserve_fd, 0, q->reserve_size) != 0) {
	if (ftruncate(q->reserve_fd, 0) < 0) {
	    /* as above */
	}
	return;
    }
    q->reserve_held = 1;
}

/*
 * Commit n batches.  When the disk is full, the new mail among them fails
 * (smtpd answers 451, the client retries later) and the bookkeeping is
 * tried once more with the reserve given back to the file system and the
 * WAL checkpointed and truncated (which returns the WAL's own space too):
 * a delivery, deferral, bounce or removal must not fail for want of the
 * space that new mail took.
 */
static int queue_commit_group(QUEUE *q, QBATCH **v, int n)
{
    QBATCH *retry[QUEUE_GROUP_MAX];
    int     full = 0, good, i, m = 0;

    good = commit_group_once(q, v, n, &full);
    if (!full)
	return (good);
    for (i = 0; i < n; i++)
	if (!v[i]->ok && !batch_is_new_mail(v[i]) && m < QUEUE_GROUP_MAX)
	    retry[m++] = v[i];
    pthread_mutex_lock(&q->lock);
    q->full_errors++;
    reserve_release_locked(q);
    pthread_mutex_unlock(&q->lock);
    if (atomic_load(&q->fault) == QFAULT_FULL_COMMIT)
	atomic_store(&q->fault, QFAULT_NONE);	/* the reserve helped */
    checkpoint_truncate(q);
    if (m == 0)
	return (good);
    full = 0;
    return (good + commit_group_once(q, retry, m, &full));
}

/*
 * SQLite keeps the pages of deleted messages for reuse; the file system
 * does not see them as free.  When the file system is short (the reserve
 * is given back, or less is free than smtpd needs to accept mail) and the
 * store has free pages, give them back (incremental vacuum, then a
 * truncating checkpoint), so that the reserve can be re-created and mail
 * accepted again once the queue has drained.  Caller holds q->wlock.
 */
/* Incremental vacuum, then a truncating checkpoint: the file system gets the pages back. */
static int vacuum_step(QUEUE *q)
{
    int     rc = sqlite3_exec(q->w.db, "PRAGMA incremental_vacuum", 0, 0, 0);

    if (rc == SQLITE_FULL) {
	/* A WAL that could not be reset: checkpoint it, then try again. */
	checkpoint_truncate(q);
	rc = sqlite3_exec(q->w.db, "PRAGMA incremental_vacuum", 0, 0, 0);
    }
    if (rc == SQLITE_OK)
	checkpoint_truncate(q);
    return (rc);
}

static void space_give_back(QUEUE *q)
{
    struct statvfs sv;
    int64_t freelist = 0, now = time_mono_us();
    int     short_of_space;

    if (!q->incremental_vacuum || q->reserve_size <= 0
	|| now - q->vacuum_try_us < QUEUE_RESERVE_RETRY_US)
	return;
    q->vacuum_try_us = now;
    if (statvfs(q->dir, &sv) < 0)
	return;
    pthread_mutex_lock(&q->lock);
    short_of_space = !q->reserve_held
	|| (int64_t) ((uint64_t) sv.f_bavail * sv.f_frsize) < q->space_goal + QUEUE_RESERVE_MARGIN;
    pthread_mutex_unlock(&q->lock);
    if (!short_of_space)
	return;
    if (db_int(q->w.db, "PRAGMA freelist_count", &freelist) < 0 || freelist == 0) {
	checkpoint_truncate(q);			/* the WAL's space, at least */
	return;
    }
    if (vacuum_step(q) == SQLITE_FULL
	&& (uint64_t) sv.f_bavail * sv.f_frsize < QUEUE_RESERVE_MARGIN) {
	/*
	 * The disk is full and the vacuum itself cannot grow the WAL: without
	 * the reserve, nothing would ever give the free pages back.
	 */
	pthread_mutex_lock(&q->lock);
	q->full_errors++;
	reserve_release_locked(q);
	pthread_mutex_unlock(&q->lock);
	vacuum_step(q);
    }
}

/* Completed batches go to the done list; the eventfd wakes the loop. */
static void queue_complete(QUEUE *q, QBATCH **v, int n)
{
    uint64_t one = 1;
    int     i;

    pthread_mutex_lock(&q->lock);
    for (i = 0; i < n; i++) {
	v[i]->next = 0;
	if (q->done_tail)
	    q->done_tail->next = v[i];
	else
	    q->done_head = v[i];
	q->done_tail = v[i];
    }
    pthread_mutex_unlock(&q->lock);
    /* EAGAIN means the counter is already non-zero: the loop will wake. */
    if (write(q->notify_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
	/* Nothing sensible to do; dispatch still drains on the next wakeup. */
    }
}

static void *queue_writer_main(void *arg)
{
    QUEUE  *q = arg;
    QBATCH *v[QUEUE_GROUP_MAX];
    int     n;

    for (;;) {
	pthread_mutex_lock(&q->lock);
	while (q->pending_head == 0 && !q->stopping && !q->maintain)
	    pthread_cond_wait(&q->cond, &q->lock);
	if (q->pending_head == 0 && q->stopping) {
	    pthread_mutex_unlock(&q->lock);
	    break;
	}
	if (q->pending_head == 0) {		/* asked by queue_space(): space is short */
	    q->maintain = 0;
	    pthread_mutex_unlock(&q->lock);
	    pthread_mutex_lock(&q->wlock);
	    space_give_back(q);
	    pthread_mutex_unlock(&q->wlock);
	    continue;
	}
	for (n = 0; n < QUEUE_GROUP_MAX && q->pending_head; n++) {
	    v[n] = q->pending_head;
	    q->pending_head = v[n]->next;
	}
	if (q->pending_head == 0)
	    q->pending_tail = 0;
	pthread_mutex_unlock(&q->lock);

	pthread_mutex_lock(&q->wlock);
	queue_commit_group(q, v, n);
	pthread_mutex_unlock(&q->wlock);
	queue_complete(q, v, n);
	pthread_mutex_lock(&q->wlock);
	space_give_back(q);
	pthread_mutex_unlock(&q->wlock);
	pthread_mutex_lock(&q->lock);
	reserve_make_locked(q, 0);
	pthread_mutex_unlock(&q->lock);
    }
    return (0);
}

void    queue_batch_submit(QBATCH *b, QUEUE_CB cb, void *ctx)
{
    QUEUE  *q = b->q;

    b->cb = cb;
    b->ctx = ctx;
    b->next = 0;
    b->submit_us = time_mono_us();
    if (q->mode == QUEUE_OPEN_DAEMON) {
	pthread_mutex_lock(&q->lock);
	if (q->pending_tail)
	    q->pending_tail->next = b;
	else
	    q->pending_head = b;
	q->pending_tail = b;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
	return;
    }
    /* ADMIN: commit now; READ: cannot write.  Callbacks still via dispatch. */
    b->ok = 0;
    snprintf(b->why, sizeof(b->why), "the queue is open read-only");
    if (q->mode == QUEUE_OPEN_ADMIN) {
	pthread_mutex_lock(&q->wlock);
	queue_commit_group(q, &b, 1);
	pthread_mutex_unlock(&q->wlock);
    }
    queue_complete(q, &b, 1);
}

int     queue_batch_commit(QBATCH *b, char *why, size_t whylen)
{
    QUEUE  *q = b->q;
    int     ok;

    set_err(why, whylen, "%s", "");
    if (q->mode == QUEUE_OPEN_READ) {
	set_err(why, whylen, "the queue is open read-only");
	qbatch_free(b);
	return (-1);
    }

    /*
     * In DAEMON mode this runs on the caller's thread but under the same
     * lock as the writer thread, so it is serialized with group commits.
     */
    pthread_mutex_lock(&q->wlock);
    queue_commit_group(q, &b, 1);
    pthread_mutex_unlock(&q->wlock);
    ok = b->ok;
    if (!ok)
	set_err(why, whylen, "%s", b->why);
    qbatch_free(b);
    return (ok ? 0 : -1);
}

int     queue_notify_fd(QUEUE *q)
{
    return (q->notify_fd);
}

void    queue_dispatch(QUEUE *q)
{
    uint64_t cnt;
    QBATCH *b, *next;

    if (read(q->notify_fd, &cnt, sizeof(cnt)) < 0) {
	/* EAGAIN: nothing signalled, but drain the list anyway. */
    }
    pthread_mutex_lock(&q->lock);
    b = q->done_head;
    q->done_head = q->done_tail = 0;
    pthread_mutex_unlock(&q->lock);
    for (; b; b = next) {
	next = b->next;
	if (b->cb)
	    b->cb(b->ctx, b->ok, b->ok ? "" : b->why);
	qbatch_free(b);
    }
}

void    queue_set_reserve(QUEUE *q, int64_t bytes, int64_t min_free)
{
    pthread_mutex_lock(&q->lock);
    q->reserve_size = bytes > 0 ? bytes : 0;
    q->space_goal = min_free > 0 ? min_free : 0;
    if (q->reserve_size == 0) {
	reserve_release_locked(q);
	q->reserve_releases = 0;
    } else {
	q->reserve_held = 0;			/* checked again: size may differ */
	reserve_make_locked(q, 1);
    }
    pthread_mutex_unlock(&q->lock);
}

int     queue_space(QUEUE *q, QUEUE_SPACE *out)
{
    struct statvfs sv;
    int     rc = statvfs(q->dir, &sv);

    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&q->lock);
    if (q->mode != QUEUE_OPEN_READ)
	reserve_make_locked(q, 0);
    /* Short of space: the writer may give the store's free pages back. */
    if (q->writer_running && q->incremental_vacuum && q->reserve_size > 0 && rc == 0
	&& (!q->reserve_held || (int64_t) ((uint64_t) sv.f_bavail * sv.f_frsize)
	    < q->space_goal + QUEUE_RESERVE_MARGIN)
	&& time_mono_us() - q->vacuum_try_us >= QUEUE_RESERVE_RETRY_US) {
	q->maintain = 1;
	pthread_cond_signal(&q->cond);
    }
    out->reserve_size = q->reserve_size;
    out->reserve_held = q->reserve_size > 0 ? q->reserve_held : 1;
    out->full_errors = q->full_errors;
    out->reserve_releases = q->reserve_releases;
    pthread_mutex_unlock(&q->lock);
    if (rc < 0)
	return (-1);
    out->free_bytes = (uint64_t) sv.f_bavail * sv.f_frsize;
    out->wal_debt = (uint64_t) atomic_load(&q->wal_debt);
    out->block_size = sv.f_frsize ? sv.f_frsize : 1;
    out->free_blocks = sv.f_bavail;
    return (0);
}

int     queue_space_refuse(const QUEUE_SPACE *sp, long long minfree, long long msg_limit)
{
    double  bs = sp->block_size ? (double) sp->block_size : 1.0;
    double  blocks = (double) sp->free_blocks - (double) sp->wal_debt / bs;

    /* In blocks, as Postfix compares them. */
    if ((minfree > 0 && (double) minfree / bs >= blocks)
	|| (double) (msg_limit > 0 ? msg_limit : 0) / bs >= blocks / 1.5)
	return (QUEUE_SPACE_LOW);
    if (!sp->reserve_held)
	return (QUEUE_SPACE_RESERVE);
    return (QUEUE_SPACE_OK);
}

void    queue_stats(QUEUE *q, QUEUE_STATS *st)
{
    pthread_mutex_lock(&q->lock);
    *st = q->stats;
    pthread_mutex_unlock(&q->lock);
}

void    queue_test_fault(QUEUE *q, const char *step)
{
    int     f = QFAULT_NONE;

    if (step == 0 || *step == 0)
	f = QFAULT_NONE;
    else if (strcmp(step, "before-commit") == 0)
	f = QFAULT_BEFORE_COMMIT;
    else if (strcmp(step, "after-commit") == 0)
	f = QFAULT_AFTER_COMMIT;
    else if (strcmp(step, "fail-batch") == 0)
	f = QFAULT_FAIL_BATCH;
    else if (strcmp(step, "full-commit") == 0)
	f = QFAULT_FULL_COMMIT;
    else
	msg_panic("queue_test_fault: unknown step \"%s\"", step);
    atomic_store(&q->fault, f);
}

/* Reading (reader connection). */

static QMSG *row_to_msg(sqlite3_stmt *st)
{
    QMSG   *m = xcalloc(1, sizeof(*m));
    const unsigned char *qid;

    m->seq = (uint64_t) sqlite3_column_int64(st, 0);
    qid = sqlite3_column_text(st, 1);
    snprintf(m->qid, sizeof(m->qid), "%s", qid ? (const char *) qid : "");
    m->state = sqlite3_column_int(st, 2);
    m->flags = sqlite3_column_int(st, 3);
    m->arrival_us = sqlite3_column_int64(st, 4);
    m->create_time = sqlite3_column_int64(st, 5);
    m->next_eligible = sqlite3_column_int64(st, 6);
    m->attempts = sqlite3_column_int(st, 7);
    m->sender = col_str(st, 8);
    if (m->sender == 0)
	m->sender = xstrdup("");
    m->envid = col_str(st, 9);
    m->ret = sqlite3_column_int(st, 10);
    m->client_name = col_str(st, 11);
    m->client_addr = col_str(st, 12);
    m->helo = col_str(st, 13);
    m->message_id = col_str(st, 14);
    m->size = (size_t) sqlite3_column_int64(st, 15);
    m->filter = col_str(st, 17);
    return (m);
}

/* Returns SQLITE_DONE, or the SQLite error. */
static int load_rcpts(QDB *d, QMSG *m)
{
    sqlite3_stmt *st = qdb_stmt(d, S_LOAD_RCPTS);
    int     rc, cap = 0;

    if (st == 0)
	return (SQLITE_ERROR);
    sqlite3_bind_int64(st, 1, (sqlite3_int64) m->seq);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
	QRCPT  *r;

	if (m->nrcpt == cap) {
	    cap = cap ? cap * 2 : 4;
	    m->rcpts = xrealloc(m->rcpts, (size_t) cap * sizeof(QRCPT));
	}
	r = &m->rcpts[m->nrcpt++];
	memset(r, 0, sizeof(*r));
	r->addr = col_str(st, 0);
	if (r->addr == 0)
	    r->addr = xstrdup("");
	r->orcpt = col_str(st, 1);
	r->notify = sqlite3_column_int(st, 2);
	r->state = sqlite3_column_int(st, 3);
	r->reason = col_str(st, 4);
	col_dsn(st, 5, r->dsn, sizeof(r->dsn));
	r->remote_mta = col_str(st, 6);
	r->diag = col_str(st, 7);
    }
    sqlite3_reset(st);
    return (rc);
}

/*
 * What a failed read of the store means for the message: the store busy
 * or unreadable is no verdict on it (QUEUE_TEMP); SQLite finding the
 * record itself damaged is (QUEUE_CORRUPT).
 */
static int read_status(int rc)
{
    return (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB ? QUEUE_CORRUPT : QUEUE_TEMP);
}

static int load_content(QUEUE *q, QMSG *m, char *why, size_t whylen)
{
    sqlite3_stmt *st = qdb_stmt(&q->r, S_LOAD_CONTENT);
    const void *data;
    int64_t size;
    uint64_t sum;
    int     len, rc;

    if (st == 0) {
	set_err(why, whylen, "%s: cannot read the content: %s", m->qid, sqlite3_errmsg(q->r.db));
	return (QUEUE_TEMP);
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64) m->seq);
    if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
	if (rc == SQLITE_DONE)
	    set_err(why, whylen, "%s: no content", m->qid);
	else
	    set_err(why, whylen, "%s: cannot read the content: %s", m->qid,
		    sqlite3_errmsg(q->r.db));
	sqlite3_reset(st);
	return (rc == SQLITE_DONE ? QUEUE_CORRUPT : read_status(rc));
    }
    size = sqlite3_column_int64(st, 0);
    sum = (uint64_t) sqlite3_column_int64(st, 1);
    data = sqlite3_column_blob(st, 2);
    len = sqlite3_column_bytes(st, 2);
    if (size != len || (size_t) len != m->size
	|| queue_checksum(data, (size_t) len) != sum) {
	sqlite3_reset(st);
	set_err(why, whylen, "%s: content length or checksum mismatch", m->qid);
	return (QUEUE_CORRUPT);
    }
    m->content = xmalloc((size_t) len + 1);
    if (len > 0)
	memcpy(m->content, data, (size_t) len);
    m->content[len] = 0;
    sqlite3_reset(st);
    return (QUEUE_OK);
}

int     queue_load(QUEUE *q, uint64_t seq, int with_content, QMSG **out, char *why, size_t whylen)
{
    sqlite3_stmt *st;
    QMSG   *m = 0;
    int     rc, status = QUEUE_TEMP;

    *out = 0;
    set_err(why, whylen, "%s", "");
    pthread_mutex_lock(&q->rlock);
    if ((st = qdb_stmt(&q->r, S_LOAD_MSG)) == 0) {
	set_err(why, whylen, "cannot read the queue: %s", sqlite3_errmsg(q->r.db));
	goto out;
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64) seq);
    if ((rc = sqlite3_step(st)) == SQLITE_ROW)
	m = row_to_msg(st);
    else if (rc == SQLITE_DONE)
	set_err(why, whylen, "no such message");
    else
	set_err(why, whylen, "cannot read the message: %s", sqlite3_errmsg(q->r.db));
    sqlite3_reset(st);
    if (m == 0) {
	status = rc == SQLITE_DONE ? QUEUE_GONE : read_status(rc);
	goto out;
    }
    if ((rc = load_rcpts(&q->r, m)) != SQLITE_DONE) {
	set_err(why, whylen, "%s: cannot read the recipients: %s", m->qid, sqlite3_errmsg(q->r.db));
	status = read_status(rc);
	goto out;
    }
    if (with_content && (status = load_content(q, m, why, whylen)) != QUEUE_OK)
	goto out;
    status = QUEUE_OK;
    *out = m;
    m = 0;
out:
    pthread_mutex_unlock(&q->rlock);
    qmsg_free(m);
    return (status);
}

int     queue_load_qid(QUEUE *q, const char *qid, int with_content, QMSG **out,
		               char *why, size_t whylen)
{
    uint64_t seq;
    int     status;

    *out = 0;
    if (qid_to_seq(qid, &seq) < 0) {
	set_err(why, whylen, "no such message");
	return (QUEUE_GONE);
    }
    status = queue_load(q, seq, with_content, out, why, whylen);
    if (status == QUEUE_OK && strcmp((*out)->qid, qid) != 0) {	/* same seq, other microseconds */
	qmsg_free(*out);
	*out = 0;
	set_err(why, whylen, "no such message");
	status = QUEUE_GONE;
    }
    return (status);
}

int     queue_history(QUEUE *q, uint64_t seq, QATTEMPT **out)
{
    sqlite3_stmt *st;
    QATTEMPT *a = 0;
    int     n = 0, cap = 0, rc;

    *out = 0;
    pthread_mutex_lock(&q->rlock);
    if ((st = qdb_stmt(&q->r, S_HISTORY)) == 0) {
	pthread_mutex_unlock(&q->rlock);
	return (-1);
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64) seq);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
	QATTEMPT *e;

	if (n == cap) {
	    cap = cap ? cap * 2 : 8;
	    a = xrealloc(a, (size_t) cap * sizeof(*a));
	}
	e = &a[n++];
	memset(e, 0, sizeof(*e));
	e->start_us = sqlite3_column_int64(st, 0);
	e->end_us = sqlite3_column_int64(st, 1);
	e->host = col_str(st, 2);
	e->addr = col_str(st, 3);
	e->port = sqlite3_column_int(st, 4);
	col_dsn(st, 5, e->dsn, sizeof(e->dsn));
	e->text = col_str(st, 6);
    }
    sqlite3_reset(st);
    pthread_mutex_unlock(&q->rlock);
    if (rc != SQLITE_DONE) {
	qattempt_free_array(a, n);
	return (-1);
    }
    *out = a;
    return (n);
}

int     queue_walk(QUEUE *q, int with_rcpts, int (*fn) (void *ctx, const QMSG *msg), void *ctx)
{
    static const int order[] = {
	QSTATE_ACTIVE, QSTATE_INCOMING, QSTATE_DEFERRED, QSTATE_HOLD, QSTATE_CORRUPT,
    };
    sqlite3_stmt *st;
    size_t  i;
    int     rc = 0, src, stop = 0;
    QMSG   *m;

    pthread_mutex_lock(&q->rlock);
    /* One read transaction: the five state scans see one snapshot. */
    if (qdb_run(&q->r, S_BEGIN_READ) < 0) {
	pthread_mutex_unlock(&q->rlock);
	return (-1);
    }
    for (i = 0; i < ARRAY_LEN(order) && !stop && rc == 0; i++) {
	/* Not the cached statement: fn() may call queue_load() meanwhile. */
	if (sqlite3_prepare_v2(q->r.db, stmt_sql[S_WALK_STATE], -1, &st, 0) != SQLITE_OK) {
	    rc = -1;
	    break;
	}
	sqlite3_bind_int(st, 1, order[i]);
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
	    m = row_to_msg(st);
	    if (with_rcpts && load_rcpts(&q->r, m) != SQLITE_DONE) {
		qmsg_free(m);
		rc = -1;
		break;
	    }
	    stop = fn(ctx, m);
	    qmsg_free(m);
	    if (stop)
		break;
	}
	if (rc == 0 && !stop && src != SQLITE_DONE)
	    rc = -1;
	sqlite3_finalize(st);
    }
    sqlite3_exec(q->r.db, "COMMIT", 0, 0, 0);
    pthread_mutex_unlock(&q->rlock);
    return (rc);
}

/* Recovery. */

typedef struct QBAD {
    uint64_t seq;
    char    qid[16];
    char    why[128];
} QBAD;

/* Stream the blob through FNV-1a without holding it in memory. */
static int content_checksum(sqlite3 *db, uint64_t seq, int64_t len, char *buf,
			            uint64_t *sum)
{
    sqlite3_blob *blob;
    int64_t off;
    uint64_t h = FNV_INIT;

    if (sqlite3_blob_open(db, "main", "content", "data", (sqlite3_int64) seq, 0, &blob)
	!= SQLITE_OK)
	return (-1);
    for (off = 0; off < len; off += QUEUE_BLOB_CHUNK) {
	int     n = (int) (len - off < QUEUE_BLOB_CHUNK ? len - off : QUEUE_BLOB_CHUNK);

	if (sqlite3_blob_read(blob, buf, n, (int) off) != SQLITE_OK) {
	    sqlite3_blob_close(blob);
	    return (-1);
	}
	h = fnv1a(h, buf, (size_t) n);
    }
    sqlite3_blob_close(blob);
    *sum = h;
    return (0);
}

void    queue_set_verify(QUEUE *q, int verify_checksums)
{
    q->verify_content = verify_checksums;
}

int     queue_recover(QUEUE *q, void (*warn) (void *ctx, const char *qid, const char *why), void *ctx,
		              char *err, size_t errlen)
{
    sqlite3_stmt *st = 0;
    sqlite3 *db = q->w.db;
    QBAD   *bad = 0;
    int     nbad = 0, cap = 0, rc, i, result = -1;
    int64_t now_s = time_now_us() / 1000000;
    char   *buf;

    set_err(err, errlen, "%s", "");
    if (q->mode == QUEUE_OPEN_READ) {
	set_err(err, errlen, "the queue is open read-only");
	return (-1);
    }
    buf = xmalloc(QUEUE_BLOB_CHUNK);
    pthread_mutex_lock(&q->wlock);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0) != SQLITE_OK) {
	set_err(err, errlen, "%s", sqlite3_errmsg(db));
	goto out;
    }
    if (sqlite3_exec(db, "UPDATE msg SET state = 0 WHERE state = 1", 0, 0, 0) != SQLITE_OK)
	goto rollback;

    /*
     * One row per message; length(data) is answered from the record
     * header, so this scan does not read content.  Checksums are streamed
     * per row.
     */
    if (sqlite3_prepare_v2(db,
			   "SELECT m.seq, m.qid, m.state, m.nrcpt, m.size, m.arrival_us,"
			   " m.create_time, c.size, c.checksum, length(c.data),"
			   " (SELECT count(*) FROM rcpt r WHERE r.seq = m.seq),"
			   " c.seq IS NOT NULL"
			   " FROM msg m LEFT JOIN content c ON c.seq = m.seq"
			   " WHERE m.state != 4 ORDER BY m.seq", -1, &st, 0) != SQLITE_OK)
	goto rollback;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
	uint64_t seq = (uint64_t) sqlite3_column_int64(st, 0);
	const unsigned char *qid = sqlite3_column_text(st, 1);
	int     state = sqlite3_column_int(st, 2);
	int64_t nrcpt = sqlite3_column_int64(st, 3);
	int64_t size = sqlite3_column_int64(st, 4);
	int64_t arrival_us = sqlite3_column_int64(st, 5);
	int64_t ctime = sqlite3_column_int64(st, 6);
	int64_t csize = sqlite3_column_int64(st, 7);
	uint64_t csum = (uint64_t) sqlite3_column_int64(st, 8);
	int64_t blen = sqlite3_column_int64(st, 9);
	int64_t nrows = sqlite3_column_int64(st, 10);
	int     has_content = sqlite3_column_int(st, 11);
	char    why[128];
	uint64_t sum;

	why[0] = 0;
	if (state < QSTATE_INCOMING || state > QSTATE_HOLD)
	    snprintf(why, sizeof(why), "unknown state %d", state);
	else if (nrows <= 0)
	    snprintf(why, sizeof(why), "no recipients");
	else if (nrows != nrcpt)
	    snprintf(why, sizeof(why), "recipient count %" PRId64 " != %" PRId64,
		     nrows, nrcpt);
	else if (!has_content)
	    snprintf(why, sizeof(why), "content missing");
	else if (csize != size || blen != size)
	    snprintf(why, sizeof(why), "content length %" PRId64 " != size %" PRId64,
		     blen, size);
	else if (arrival_us <= 0 || ctime <= 0 || ctime > now_s + 86400
		 || arrival_us / 1000000 > now_s + 86400)
	    snprintf(why, sizeof(why), "insane times (arrival %" PRId64 " us, created %" PRId64 ")",
		     arrival_us, ctime);
	else if (q->verify_content) {
	    if (content_checksum(db, seq, blen, buf, &sum) < 0)
		snprintf(why, sizeof(why), "content unreadable: %s", sqlite3_errmsg(db));
	    else if (sum != csum)
		snprintf(why, sizeof(why), "content checksum mismatch");
	}
	if (why[0]) {
	    if (nbad == cap) {
		cap = cap ? cap * 2 : 16;
		bad = xrealloc(bad, (size_t) cap * sizeof(*bad));
	    }
	    bad[nbad].seq = seq;
	    snprintf(bad[nbad].qid, sizeof(bad[nbad].qid), "%s", qid ? (const char *) qid : "?");
	    snprintf(bad[nbad].why, sizeof(bad[nbad].why), "%s", why);
	    nbad++;
	}
    }
    sqlite3_finalize(st);
    st = 0;
    if (rc != SQLITE_DONE)
	goto rollback;

    /* Updated after the scan: never modify a table while stepping over it. */
    if (sqlite3_prepare_v2(db, "UPDATE msg SET state = 4 WHERE seq = ?", -1, &st, 0) != SQLITE_OK)
	goto rollback;
    for (i = 0; i < nbad; i++) {
	sqlite3_bind_int64(st, 1, (sqlite3_int64) bad[i].seq);
	if (step_done(st) < 0)
	    goto rollback;
    }
    sqlite3_finalize(st);
    st = 0;
    if (sqlite3_exec(db, "COMMIT", 0, 0, 0) != SQLITE_OK)
	goto rollback;
    result = nbad;
    goto out;

rollback:
    set_err(err, errlen, "%s", sqlite3_errmsg(db));
    if (st)
	sqlite3_finalize(st);
    sqlite3_exec(db, "ROLLBACK", 0, 0, 0);
out:
    pthread_mutex_unlock(&q->wlock);
    /* Warn only once the moves are durable (and outside the lock). */
    if (result >= 0 && warn)
	for (i = 0; i < nbad; i++)
	    warn(ctx, bad[i].qid, bad[i].why);
    free(bad);
    free(buf);
    return (result);
}

/* Paging (queue_page, QREADER). */

/* queue_walk's order. */
static const int page_order[] = {
    QSTATE_ACTIVE, QSTATE_INCOMING, QSTATE_DEFERRED, QSTATE_HOLD, QSTATE_CORRUPT,
};

void    queue_cursor_init(QCURSOR *c)
{
    memset(c, 0, sizeof(*c));
    c->only_state = -1;
    c->skip_state = -1;
}

int     queue_cursor_done(const QCURSOR *c)
{
    return (c->state_idx >= (int) ARRAY_LEN(page_order));
}

/*
 * One page in one read transaction: the statement is stepped and the
 * recipients loaded (another cached statement) while it is, as queue_walk
 * does; COMMIT ends the snapshot before returning.
 */
static int page_read(QDB *d, QCURSOR *c, int with_rcpts, QMSG **msgs, int max, char *why, size_t whylen)
{
    sqlite3_stmt *st;
    int     n = 0, nrcpt = 0, rc = SQLITE_DONE;

    set_err(why, whylen, "%s", "");
    if (max <= 0 || queue_cursor_done(c))
	return (0);
    if (qdb_run(d, S_BEGIN_READ) < 0) {
	set_err(why, whylen, "cannot read the queue: %s", sqlite3_errmsg(d->db));
	return (-1);
    }
    while (!queue_cursor_done(c) && n < max && nrcpt < QUEUE_PAGE_RCPTS) {
	int     state = page_order[c->state_idx];

	if ((c->only_state >= 0 && state != c->only_state) || state == c->skip_state) {
	    c->state_idx++;
	    c->after_seq = 0;
	    continue;
	}
	if ((st = qdb_stmt(d, S_PAGE)) == 0) {
	    rc = SQLITE_ERROR;
	    break;
	}
	sqlite3_bind_int(st, 1, state);
	sqlite3_bind_int64(st, 2, (sqlite3_int64) c->after_seq);
	sqlite3_bind_int64(st, 3, c->max_seq ? (sqlite3_int64) c->max_seq : INT64_MAX);
	sqlite3_bind_int(st, 4, max - n);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
	    QMSG   *m = row_to_msg(st);

	    if (with_rcpts && load_rcpts(d, m) < 0) {
		qmsg_free(m);
		rc = SQLITE_ERROR;
		break;
	    }
	    msgs[n++] = m;
	    c->after_seq = m->seq;
	    nrcpt += m->nrcpt;
	    if (nrcpt >= QUEUE_PAGE_RCPTS) {
		rc = SQLITE_ROW;		/* the page is full: this state may have more */
		break;
	    }
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
	    break;
	/* Fewer rows than asked for: this state is done. */
	if (rc == SQLITE_DONE && n < max) {
	    c->state_idx++;
	    c->after_seq = 0;
	}
	rc = SQLITE_DONE;
    }
    if (rc != SQLITE_DONE) {
	set_err(why, whylen, "cannot read the queue: %s", sqlite3_errmsg(d->db));
	sqlite3_exec(d->db, "ROLLBACK", 0, 0, 0);
	while (n > 0)
	    qmsg_free(msgs[--n]);
	return (-1);
    }
    sqlite3_exec(d->db, "COMMIT", 0, 0, 0);
    return (n);
}

int     queue_page(QUEUE *q, QCURSOR *c, int with_rcpts, QMSG **msgs, int max, char *why, size_t whylen)
{
    int     n;

    pthread_mutex_lock(&q->rlock);
    n = page_read(&q->r, c, with_rcpts, msgs, max, why, whylen);
    pthread_mutex_unlock(&q->rlock);
    return (n);
}

uint64_t queue_last_seq(QUEUE *q)
{
    uint64_t last = atomic_load(&q->next_seq) - 1;
    int64_t max = 0;

    /* Also what another writer stored (the store's largest key: one index lookup). */
    pthread_mutex_lock(&q->rlock);
    if (db_int(q->r.db, "SELECT coalesce(max(seq), 0) FROM msg", &max) == 0 && (uint64_t) max > last)
	last = (uint64_t) max;
    pthread_mutex_unlock(&q->rlock);
    return (last);
}

struct QREADER {
    QUEUE  *q;
    QDB     d;
};

QREADER *queue_reader_open(QUEUE *q, char *err, size_t errlen)
{
    QREADER *r = xcalloc(1, sizeof(*r));

    r->q = q;
    if (qdb_open(&r->d, q->path, SQLITE_OPEN_READONLY) < 0) {
	set_err(err, errlen, "cannot open queue database %s: %s", q->path,
		r->d.db ? sqlite3_errmsg(r->d.db) : "out of memory");
	queue_reader_close(r);
	return (0);
    }
    /* Only the daemon's writer checkpoints. */
    sqlite3_db_config(r->d.db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *) 0);
    return (r);
}

int     queue_reader_page(QREADER *r, QCURSOR *c, int with_rcpts, QMSG **msgs, int max,
			          char *why, size_t whylen)
{
    return (page_read(&r->d, c, with_rcpts, msgs, max, why, whylen));
}

void    queue_reader_close(QREADER *r)
{
    if (r == 0)
	return;
    qdb_close(&r->d);
    free(r);
}
