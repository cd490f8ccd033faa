/*
 * qview - walks of the queue that never block the event loop.
 *
 * One reader thread per daemon, with its own read-only SQLite connection
 * (queue_reader_open), reads the queue a page at a time (queue_reader_page:
 * one short read transaction per page, paging by key, so no snapshot pins
 * the WAL) and hands each page to the event loop, where the walk's owner
 * uses it (formats it, joins in what only the daemon knows, writes it to a
 * client) and either asks for the next page at once or pauses until its
 * client has read enough.  A walk holds one page at a time: its memory
 * does not grow with the queue.  Several walks share the thread, a page
 * each in turn.
 *
 * Usage (everything on the loop's thread):
 *
 *   static int page(void *ctx, QMSG *const *msgs, int n)
 *   {   ... use msgs[0..n-1] (freed when page returns) ...
 *       return 0;          next page now
 *       return 1;          pause: call qview_walk_resume(w) later
 *   }
 *   static void done(void *ctx, int ok, const char *why)
 *                                         the end (ok = 0: a read error, the
 *                                         text in why); the walk is freed
 *                                         after it returns
 *
 *   QCURSOR c;  queue_cursor_init(&c);    (c.only_state, c.max_seq if wanted)
 *   QVIEW_WALK *w = qview_walk(v, &c, with_rcpts, 256, page, done, ctx);
 *   ...  qview_walk_cancel(w);            any time before done (also from
 *                                         page): no callback after it
 *
 * Work on the thread (a view that costs more than formatting, such as
 * explain --what-if's simulations): after qview_walk(), and before the
 * loop runs again,
 *
 *   qview_walk_own(w, obj, obj_free);    obj is the walk's: freed with
 *                                         it however it ends (after done,
 *                                         on cancel, at qview_free)
 *   qview_walk_work(w, work, after);
 *
 * then page() may return QVIEW_WORK: the page goes back to the thread,
 * which calls work(obj, msgs, n) (touching only obj and the page), and
 * then after(ctx, msgs, n) runs on the loop and returns as page() does.
 * page() joins in what only the loop knows and keeps it in obj; after()
 * writes what work() made.  Between page() and after() the walk is the
 * thread's: obj is not the loop's to touch, and a cancel frees it when
 * the thread is done with it.  Pacing counts work() as the page's reading.
 *
 * The daemon creates one QVIEW after opening the queue; at exit it calls
 * qview_stop() before queue_close() (the thread ends, pending walks get no
 * more callbacks) and qview_free() once nothing will cancel a walk any
 * more.
 */
#ifndef QVIEW_H_INCLUDED
#define QVIEW_H_INCLUDED

#include <event2/event.h>
#include "queue/queue.h"

typedef struct QVIEW QVIEW;
typedef struct QVIEW_WALK QVIEW_WALK;

typedef int (*QVIEW_PAGE_FN) (void *ctx, QMSG *const *msgs, int n);
typedef void (*QVIEW_DONE_FN) (void *ctx, int ok, const char *why);
typedef int (*QVIEW_BUSY_FN) (void *ctx);
typedef void (*QVIEW_WORK_FN) (void *obj, QMSG *const *msgs, int n);

#define QVIEW_WORK	2		/* page(): work() on this page first (qview_walk_work) */

#define QVIEW_PAGE_MAX	1024		/* largest page a walk may ask for */

QVIEW  *qview_create(struct event_base *base, QUEUE *q, char *err, size_t errlen);
void    qview_stop(QVIEW *v);
void    qview_free(QVIEW *v);

QVIEW_WALK *qview_walk(QVIEW *v, const QCURSOR *start, int with_rcpts, int page_max,
		               QVIEW_PAGE_FN page, QVIEW_DONE_FN done, void *ctx);
/*
 * Work on messages the caller already has (n <= QVIEW_PAGE_MAX; the walk
 * takes them and obj): work(obj, msgs, n) on the thread, after() on the
 * loop, then done(ctx, 1, "").  NULL (the view is stopped): the caller
 * keeps both.
 */
QVIEW_WALK *qview_walk_given(QVIEW *v, QMSG **msgs, int n, void *obj, void (*obj_free) (void *obj),
			             QVIEW_WORK_FN work, QVIEW_PAGE_FN after, QVIEW_DONE_FN done,
			             void *ctx);
void    qview_walk_own(QVIEW_WALK *w, void *obj, void (*obj_free) (void *obj));
void    qview_walk_work(QVIEW_WALK *w, QVIEW_WORK_FN work, QVIEW_PAGE_FN after);
void    qview_walk_resume(QVIEW_WALK *w);
void    qview_walk_cancel(QVIEW_WALK *w);

/* Walks started and pages read since the start (tests, metrics). */
void    qview_counts(const QVIEW *v, unsigned long *walks, unsigned long *pages, int *live);
/* Pages that went through work() on the thread. */
unsigned long qview_worked(const QVIEW *v);

/*
 * Pacing: while busy(ctx) says the relay is working, each walk takes at
 * most share percent of a CPU (its pages' reading and use, measured), by
 * pausing between pages; 100 (the default) never pauses.  The pages that
 * were followed by a pause and the pauses' total, since the start.
 */
void    qview_set_pacing(QVIEW *v, int share, QVIEW_BUSY_FN busy, void *ctx);
void    qview_pacing(const QVIEW *v, unsigned long *paced, double *seconds);

#endif
