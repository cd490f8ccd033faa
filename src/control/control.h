/*
 * control - how the CLI talks to the daemon, and the queue views both of
 * them print.
 *
 * Two UNIX stream sockets under queue_directory, as Postfix has showq and
 * postsuper:
 *   public/query   mode 0666: mailq, explain-state, qshape (any local user)
 *   private/admin  mode 0660, group setgid_group: flush, hold, release,
 *                  delete, requeue, expire
 * A request is one line of words separated by single spaces ("hold ABC123\n",
 * "mailq json\n"); the reply is "ok\n" or "error TEXT\n" followed by the
 * payload, and the daemon closes the connection after it.
 *
 * The views (mailq text and JSON, qshape) are computed here from the queue,
 * by the daemon for the sockets, or by the CLI itself when the daemon is
 * down (reading the queue directly).  What only the running daemon knows
 * (active, next attempt, dead destination) comes through a callback.
 *
 * Local submission (sendmail): a message is written durably into
 * queue_directory/maildrop as one file; the daemon picks it up (pickup).
 */
#ifndef CONTROL_H_INCLUDED
#define CONTROL_H_INCLUDED

#include <stdint.h>
#include <sys/types.h>
#include <event2/event.h>
#include "util/util.h"
#include "queue/queue.h"
#include "qmgr/qmgr.h"

/* ---- daemon side ---- */
typedef struct CONTROL CONTROL;

/*
 * handle() answers one request: argv[0] is the command.  It appends the
 * payload to out and returns 0 ("ok"), or returns -1 with a one-line error
 * text in out (sent as "error TEXT").  admin: the request came through the
 * admin socket (commands that change the queue are refused otherwise).
 */
typedef int (*CONTROL_HANDLER) (void *ctx, int admin, int argc, char **argv, BUF *out);

/* Creates public/ and private/ under queue_dir, binds both sockets (gid: group for the admin socket, -1 = keep). */
CONTROL *control_create(struct event_base *base, const char *queue_dir, int gid,
			        CONTROL_HANDLER handle, void *ctx, char *err, size_t errlen);
void    control_free(CONTROL *c);

/*
 * A handler that can only answer once something completes (a queue
 * commit: "hold ID" must not be answered before the hold is in the queue,
 * or a mailq right after it shows the old state) calls control_defer()
 * while it handles the request, then returns 0; its out is not sent.  It
 * answers later with control_finish(c, token, ok, out).  If the client
 * went away meanwhile, control_finish() does nothing.
 */
uint64_t control_defer(CONTROL *c);
void    control_finish(CONTROL *c, uint64_t token, int ok, BUF *out);

/*
 * A streamed answer, for a view of the whole queue: the reply is written
 * while it is made, and the producer pauses while the client does not
 * read.  While it handles the request, the handler calls control_stream()
 * instead of control_defer() and returns 0 (NULL: too many streams, text
 * in err; answer with -1).  Then, on the loop:
 *
 *   control_stream_write(s, data, len)   appends ("ok" goes out first);
 *       returns 1 once the client's buffer is full: produce nothing more
 *       until more(ctx) is called; 0: go on
 *   control_stream_end(s, ok, text)      the end; s is gone after it.
 *       ok = 0 before anything was written: "error TEXT"; after: the
 *       connection is reset, so the client sees an error, not a short
 *       answer that looks complete
 *
 * gone(ctx): the client went away, or left the stream unread for the
 * stream timeout (control_set_stream_timeout, default 3600 s); s is
 * freed: no call with it afterwards, not even end.  Neither more nor gone
 * is called after end.  At most CONTROL_STREAMS_MAX streams at once.
 */
typedef struct CONTROL_CONN CONTROL_STREAM;
#define CONTROL_STREAMS_MAX	32
CONTROL_STREAM *control_stream(CONTROL *c, void (*more) (void *ctx), void (*gone) (void *ctx),
			               void *ctx, BUF *err);
int     control_stream_write(CONTROL_STREAM *s, const void *data, size_t len);
void    control_stream_end(CONTROL_STREAM *s, int ok, const char *text);
void    control_set_stream_timeout(CONTROL *c, int seconds);

/* ---- client side ---- */
#define CONTROL_OK        0
#define CONTROL_ERROR     1			/* the daemon answered "error TEXT": text in err */
#define CONTROL_DOWN      2			/* no daemon listening */
#define CONTROL_DENIED    3			/* permission denied on the socket */
int     control_call(const char *queue_dir, int admin, const char *request, BUF *out,
		             char *err, size_t errlen);
/*
 * The same, with the payload handed to out() as it arrives instead of
 * kept (mailq of a large queue); out returns 0, or -1 to give up (errno
 * says why).  An answer cut short is CONTROL_ERROR after the part already
 * handed over.
 */
typedef int (*CONTROL_OUT_FN) (void *ctx, const char *data, size_t len);
int     control_call_stream(const char *queue_dir, int admin, const char *request,
			            CONTROL_OUT_FN out, void *ctx, char *err, size_t errlen);

/* ---- views ---- */
typedef struct SHOWQ_SCHED {
    int     active;			/* being delivered now */
    int64_t next_attempt;		/* the queue run that will take it; 0 = unknown */
    int     destination_dead;		/* -1 = unknown (daemon down) */
    int64_t dead_until;			/* when destination_dead: until when (explain) */
    /*
     * Per recipient (msg->nrcpt entries): its relayq_retry_policy_maps value,
     * NULL where none applies; the whole array NULL without a policy map.
     * Owned by the callback's owner, valid until its next call.
     */
    const char *const *rcpt_policy;
} SHOWQ_SCHED;
typedef void (*SHOWQ_SCHED_FN) (void *ctx, const QMSG *msg, SHOWQ_SCHED *out);

/* Postfix's mailq layout; sched may be NULL (daemon down). */
int     showq_text(QUEUE *q, SHOWQ_SCHED_FN sched, void *ctx, BUF *out);
/* postqueue -j lines plus relayq's fields (CONTRACT.md); expire_time from p (qmgr_lifetime). */
int     showq_json(QUEUE *q, SHOWQ_SCHED_FN sched, void *ctx, const QMGR_PARAMS *p, BUF *out);
/* Postfix's qshape table: queue_name "deferred"/"active"/"incoming"/"hold" (NULL: all), by_sender (-s), now, top N rows. */
int     qshape_text(QUEUE *q, const char *queue_name, int by_sender, int64_t now, int top, BUF *out);

/*
 * The same views over an array of messages (tests, or a caller with its
 * own snapshot); the queue-walking functions above use the same code.
 */
int     showq_text_msgs(const QMSG *const *msgs, int n, SHOWQ_SCHED_FN sched, void *ctx, BUF *out);
int     showq_json_msgs(const QMSG *const *msgs, int n, SHOWQ_SCHED_FN sched, void *ctx,
			        const QMGR_PARAMS *p, BUF *out);
int     qshape_text_msgs(const QMSG *const *msgs, int n, const char *queue_name, int by_sender,
			         int64_t now, int top, BUF *out);
/*
 * The same views one message at a time, for a caller that reads the queue
 * itself (the daemon, a page at a time: qview.h).  Each message's text is
 * appended to out (mailq, mailq -j; qshape only counts), then the end
 * (mailq's totals or "Mail queue is empty", qshape's table).  The output
 * is byte for byte that of the functions above for the same messages.
 * Memory: constant for mailq and mailq -j; qshape keeps one row per
 * domain (or sender domain).
 */
typedef struct SHOWQ_STREAM SHOWQ_STREAM;
#define SHOWQ_VIEW_TEXT		1
#define SHOWQ_VIEW_JSON		2
#define SHOWQ_VIEW_QSHAPE	3
SHOWQ_STREAM *showq_stream_text(SHOWQ_SCHED_FN sched, void *ctx);
SHOWQ_STREAM *showq_stream_json(SHOWQ_SCHED_FN sched, void *ctx, const QMGR_PARAMS *p);
SHOWQ_STREAM *showq_stream_qshape(const char *queue_name, int by_sender, int64_t now, int top);
void    showq_stream_msg(SHOWQ_STREAM *s, const QMSG *msg, BUF *out);
void    showq_stream_end(SHOWQ_STREAM *s, BUF *out);
void    showq_stream_free(SHOWQ_STREAM *s);

/* s as a JSON string, quotes included (", \, control characters escaped). */
void    showq_json_string(BUF *out, const char *s);

/*
 * postsuper's queue edits, one implementation for the daemon's admin
 * socket and the CLI with the daemon down.  op is "delete", "hold",
 * "release", "requeue" or "expire"; ids are queue IDs or the single word
 * "ALL" (which skips corrupt messages; a corrupt message can only be
 * deleted).  The changes go in batches of narrow updates (the state or a
 * flag, never a row read earlier), a slice of at most 500 messages each
 * (64 for requeue), one slice after the other's commit, so that an edit
 * of a large queue never holds the daemon's loop; ALL means what is in
 * the queue when the request starts.  Each change is logged after its
 * slice's commit as postsuper logs it ("ID: placed on hold"), then the
 * summary ("Placed on hold: 1 message"), which is also appended to the
 * reply with the per-ID problems ("ID: no such message").  If a slice
 * fails, the slices before it stay done (the summary counts them and the
 * reply says the rest was not changed).
 */
#define CONTROL_OP_DELETE	1
#define CONTROL_OP_HOLD		2
#define CONTROL_OP_RELEASE	3
#define CONTROL_OP_REQUEUE	4
#define CONTROL_OP_EXPIRE	5
int     control_op(const char *name);		/* CONTROL_OP_*, or -1 */

/* What the daemon adds to an edit; every member may be NULL. */
typedef struct CONTROL_EDIT_HOOKS {
    /* msg is being delivered: it is not changed (except by expire, which takes effect when the pass ends) */
    int     (*busy) (void *ctx, const QMSG *msg);
    /* op on msg is in the batch: the scheduler takes it at once, so that it starts nothing meanwhile */
    void    (*changed) (void *ctx, int op, const QMSG *msg, int64_t now);
    /* after the commit: the new message of a requeue, to be scheduled */
    void    (*requeued) (void *ctx, const QMSG *copy);
    /* run fn(arg) on a later turn of the loop (a long edit lets the rest run); NULL: at once */
    void    (*later) (void *ctx, void (*fn) (void *arg), void *arg);
    /*
     * non-zero once the daemon is stopping: the edit ends before its next
     * slice (the slices committed stay; the reply says the rest was not
     * changed), so that nothing of it is left when the daemon exits
     */
    int     (*stopping) (void *ctx);
    void   *ctx;
} CONTROL_EDIT_HOOKS;

/*
 * The CLI with the daemon down: the caller opened q with QUEUE_OPEN_ADMIN
 * (it holds the queue lock); commits before it returns.  Returns the number
 * of messages changed, or -1 (text in out).
 */
int     control_admin_offline(QUEUE *q, const char *op, char *const *ids, int n, int64_t now, BUF *out);

/*
 * The daemon: the batch goes to the writer thread; done(ctx, ok, reply)
 * runs once it has committed (or at once when nothing changes), so that
 * "relayq hold ID; mailq" shows the hold, as postsuper is synchronous.
 */
typedef void (*CONTROL_EDIT_DONE) (void *ctx, int ok, BUF *reply);
int     control_admin_submit(QUEUE *q, const char *op, char *const *ids, int n, int64_t now,
			             const CONTROL_EDIT_HOOKS *h, CONTROL_EDIT_DONE done, void *ctx);

/* ---- maildrop (sendmail submission) ---- */
/*
 * Write one message into queue_directory/maildrop durably (write, fsync,
 * rename into place, fsync the directory).  Returns 0, or -1 with err.
 */
typedef struct MAILDROP_MSG {
    const char *sender;			/* "" for <> */
    char  *const *rcpts;
    int     nrcpt;
    uid_t   uid;			/* submitting user */
    const char *user;			/* user name */
    const char *content;		/* message text, CRLF lines */
    size_t  len;
} MAILDROP_MSG;
/* Create queue_directory/maildrop (mode 1733) and maildrop/corrupt (0700) if missing: the daemon, at start. */
int     maildrop_init(const char *queue_dir, char *err, size_t errlen);
/*
 * sendmail before the daemon ever ran: create the maildrop (1733, owned by
 * owner) safely even as root (no link followed, see util/safe_file.h).
 */
int     maildrop_prepare(const char *queue_dir, uid_t owner, char *err, size_t errlen);
/*
 * sendmail: write one message into the maildrop.  Returns 0, or a status
 * with the reason in err (sendmail's exit code follows the status, never
 * the text): MAILDROP_CREATE (the maildrop cannot be opened, errno ENOENT
 * when there is none yet, or no file may be created in it), MAILDROP_TEMP
 * (the maildrop is a link or has the wrong mode; a write, rename or fsync
 * failed; the disk or quota is full: try later), MAILDROP_DATA
 * (the message cannot be written as given: no recipients, a line break in
 * an address or the user name).
 */
#define MAILDROP_TEMP	(-1)
#define MAILDROP_CREATE	(-2)
#define MAILDROP_DATA	(-3)
int     maildrop_write(const char *queue_dir, const MAILDROP_MSG *m, char *err, size_t errlen);

/*
 * Daemon: read complete files in maildrop (oldest first), at most
 * MAILDROP_SCAN_FILES files or MAILDROP_SCAN_BYTES bytes per call (the
 * rest waits for the next call: the event loop is never held long); for
 * each, take() gets the parsed message.  take() returns 0: the file is
 * removed (the message is durable in the queue); 1: kept (a caller that
 * commits asynchronously remembers path and calls maildrop_remove(path)
 * once the message is durable); -1 with *why: the file is bad and is moved
 * aside to maildrop/corrupt/ once, with a warning, as is a malformed file
 * or one larger than max_size bytes (0: no limit).  m->uid is the file's
 * owner (not the uid line of the file); m and path are valid only during
 * take().  Returns the number of files removed, or -1.  The file format is
 * described in maildrop.c and docs/cli.md.
 */
#define MAILDROP_SCAN_FILES	200
#define MAILDROP_SCAN_BYTES	((size_t) 64 << 20)
int     maildrop_scan(const char *queue_dir, size_t max_size,
		              int (*take)(void *ctx, const char *path, const MAILDROP_MSG *m, const char **why),
		              void *ctx);
int     maildrop_remove(const char *path);

#endif
