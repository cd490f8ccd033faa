/*
 * qview - the reader thread of the queue views (see qview.h).
 *
 * A walk is always in exactly one place: with the loop (being given a page,
 * or paused), on the thread's todo list, being read by the thread, or on
 * the ready list waiting for the loop.  The two lists are under v->lock;
 * everything else about a walk belongs to the loop, except its cursor,
 * page and own object, which belong to whoever holds the walk (the thread
 * only while it is reading, or working on a page for qview_walk_work).  The thread tells the loop through an eventfd.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "control/qview.h"
#include "util/util.h"
#include "log/log.h"

#define QVIEW_NICE	10		/* the thread's nice value */
#define QVIEW_PACE_MAX_US 2000000	/* longest pause between two pages */
#define QVIEW_WINDOW_US	250000		/* the relay's CPU use: measured over this */
#define QVIEW_BUSY_PCT	20		/* busy: the rest of the daemon uses this much of a CPU */

#define W_LOOP		0		/* the loop has it */
#define W_TODO		1
#define W_READING	2
#define W_READY		3

struct QVIEW_WALK {
    QVIEW  *v;
    int     where;			/* W_*, under v->lock */
    int     cancelled;			/* the owner is gone: free when it comes back */
    int     in_cb;			/* page() or done() is running */
    int     working;			/* the page is kept for work() (qview_walk_work) */
    QCURSOR cur;
    int     with_rcpts;
    int     page_max;
    QMSG  **msgs;			/* page_max slots */
    int     n;				/* the page read: messages, 0 = end, -1 = error */
    int64_t read_ns;			/* the thread's CPU time for it (reading, or work()) */
    int64_t carry_us;			/* the page's reading and page(), before work() */
    int64_t not_before;			/* pacing: the next page not before (mono us) */
    struct event *pace;			/* pacing: the timer until then */
    char    why[256];			/* the read error */
    QVIEW_PAGE_FN page;
    QVIEW_DONE_FN done;
    void   *ctx;
    QVIEW_WORK_FN work;			/* on the thread, when page() says QVIEW_WORK */
    QVIEW_PAGE_FN after;		/* on the loop, after work() */
    void   *obj;			/* the walk's own object: work()'s, freed with the walk */
    void    (*obj_free) (void *obj);
    QVIEW_WALK *qnext;			/* todo or ready list */
    QVIEW_WALK *prev, *next;		/* every walk (loop only) */
};

struct QVIEW {
    struct event_base *base;
    QUEUE  *q;
    QREADER *r;
    int     notify_fd;
    struct event *ev;
    pthread_t thread;
    int     running;
    int     stopped;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int     stopping;			/* under lock */
    QVIEW_WALK *todo, *todo_tail;	/* under lock */
    QVIEW_WALK *ready, *ready_tail;	/* under lock */
    QVIEW_WALK *all;			/* loop only */
    unsigned long nwalks, npages, nworked;
    int     live;
    int     share;			/* pacing: percent of a CPU while busy */
    QVIEW_BUSY_FN busy;
    void   *busy_ctx;
    unsigned long npaced;		/* pages followed by a pause */
    int64_t paced_us;			/* the pauses' total */
    int64_t own_us;			/* the views' CPU: reading and page(), all pages */
    int64_t win_start;			/* the current window: when, */
    int64_t win_proc;			/* the process's CPU time then, */
    int64_t win_own;			/* and own_us then */
    int     others_busy;		/* the last window's verdict */
};

static void qview_push(QVIEW_WALK **head, QVIEW_WALK **tail, QVIEW_WALK *w)
{
    w->qnext = 0;
    if (*tail)
	(*tail)->qnext = w;
    else
	*head = w;
    *tail = w;
}

static void qview_unlink_list(QVIEW_WALK **head, QVIEW_WALK **tail, QVIEW_WALK *w)
{
    QVIEW_WALK **pp, *prev = 0;

    for (pp = head; *pp; prev = *pp, pp = &(*pp)->qnext) {
	if (*pp == w) {
	    *pp = w->qnext;
	    if (*tail == w)
		*tail = prev;
	    w->qnext = 0;
	    return;
	}
    }
}

static void *qview_main(void *arg)
{
    QVIEW  *v = arg;
    QVIEW_WALK *w;
    uint64_t one = 1;
    struct timespec t0, t1;

    /*
     * A view is background work: when the CPU is short, relaying comes
     * first (Linux: a thread has its own nice value).  The loop's share of
     * a view (the join and the formatting) is not affected.
     */
    (void) setpriority(PRIO_PROCESS, (id_t) gettid(), QVIEW_NICE);
    pthread_mutex_lock(&v->lock);
    while (!v->stopping) {
	if ((w = v->todo) == 0) {
	    pthread_cond_wait(&v->cond, &v->lock);
	    continue;
	}
	if ((v->todo = w->qnext) == 0)
	    v->todo_tail = 0;
	w->where = W_READING;
	pthread_mutex_unlock(&v->lock);

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
	if (w->working)
	    w->work(w->obj, w->msgs, w->n);
	else
	    w->n = queue_reader_page(v->r, &w->cur, w->with_rcpts, w->msgs, w->page_max,
				     w->why, sizeof(w->why));
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
	w->read_ns = (int64_t) (t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec);

	pthread_mutex_lock(&v->lock);
	w->where = W_READY;
	qview_push(&v->ready, &v->ready_tail, w);
	if (write(v->notify_fd, &one, sizeof(one)) < 0) {
	    /* EAGAIN: the counter is already non-zero; the loop will look. */
	}
    }
    pthread_mutex_unlock(&v->lock);
    return 0;
}

static void qview_free_page(QVIEW_WALK *w)
{
    for (int i = 0; i < w->n; i++)
	qmsg_free(w->msgs[i]);
    w->n = 0;
}

static void qview_walk_free(QVIEW_WALK *w)
{
    QVIEW  *v = w->v;

    qview_free_page(w);
    if (w->prev)
	w->prev->next = w->next;
    else
	v->all = w->next;
    if (w->next)
	w->next->prev = w->prev;
    v->live--;
    if (w->pace)
	event_free(w->pace);
    if (w->obj_free)
	w->obj_free(w->obj);
    free(w->msgs);
    free(w);
}

static void qview_enqueue(QVIEW_WALK *w)
{
    QVIEW  *v = w->v;

    pthread_mutex_lock(&v->lock);
    w->where = W_TODO;
    qview_push(&v->todo, &v->todo_tail, w);
    pthread_cond_signal(&v->cond);
    pthread_mutex_unlock(&v->lock);
}

static void qview_paced(evutil_socket_t fd, short what, void *arg)
{
    QVIEW_WALK *w = arg;

    (void) fd;
    (void) what;
    if (!w->v->stopped)
	qview_enqueue(w);
}

/* The next page now, or once the walk's pause is over. */
static void qview_next(QVIEW_WALK *w)
{
    int64_t wait = w->not_before - time_mono_us();

    if (wait <= 0) {
	qview_enqueue(w);
	return;
    }
    if (w->pace == 0)
	w->pace = evtimer_new(w->v->base, qview_paced, w);
    struct timeval tv = {.tv_sec = wait / 1000000,.tv_usec = wait % 1000000};

    evtimer_add(w->pace, &tv);
}

static int64_t qview_cpu_us(clockid_t clock)
{
    struct timespec ts;

    if (clock_gettime(clock, &ts) < 0)
	return (0);
    return ((int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

/*
 * Is the relay busy?  The owner's busy() says whether anything is going
 * on at all (SMTP sessions, deliveries); then the daemon's CPU time, less
 * the views' own, over the last window must reach QVIEW_BUSY_PCT of a CPU,
 * so that idle connections or a trickle of mail do not slow the views.
 * A window older than two is stale (no view ran): a new one starts, and
 * until it is complete the views run at full speed.
 */
static int qview_relay_busy(QVIEW *v, int64_t now)
{
    int64_t span = now - v->win_start, proc, others;

    if (v->busy == 0 || !v->busy(v->busy_ctx))
	return (0);
    if (span >= QVIEW_WINDOW_US) {
	proc = qview_cpu_us(CLOCK_PROCESS_CPUTIME_ID);
	others = (proc - v->win_proc) - (v->own_us - v->win_own);
	v->others_busy = span <= 2 * QVIEW_WINDOW_US
	    && others * 100 >= span * QVIEW_BUSY_PCT;
	v->win_start = now;
	v->win_proc = proc;
	v->win_own = v->own_us;
    }
    return (v->others_busy);
}

/*
 * Pacing: while the relay is busy, a walk's pages (the thread's reading,
 * the owner's formatting) may take v->share percent of a CPU; after a page
 * that cost c, the next waits c * (100 - share) / share.  An idle relay
 * gets its views at full speed.
 */
static void qview_pace(QVIEW_WALK *w, int64_t loop_us, int64_t now)
{
    QVIEW  *v = w->v;
    int64_t cost, pause;

    w->not_before = 0;
    cost = w->read_ns / 1000 + loop_us + w->carry_us;
    w->carry_us = 0;
    v->own_us += cost;
    if (v->share >= 100 || !qview_relay_busy(v, now))
	return;
    pause = cost * (100 - v->share) / v->share;
    if (pause > QVIEW_PACE_MAX_US)
	pause = QVIEW_PACE_MAX_US;
    if (pause <= 0)
	return;
    w->not_before = now + pause;
    v->npaced++;
    v->paced_us += pause;
}

static void qview_notify(evutil_socket_t fd, short what, void *arg)
{
    QVIEW  *v = arg;
    QVIEW_WALK *w, *next;
    uint64_t cnt;
    int     more;
    int64_t t0, t1;

    (void) fd;
    (void) what;
    if (read(v->notify_fd, &cnt, sizeof(cnt)) < 0) {
	/* EAGAIN: look at the list anyway */
    }
    pthread_mutex_lock(&v->lock);
    w = v->ready;
    v->ready = v->ready_tail = 0;
    for (next = w; next; next = next->qnext)
	next->where = W_LOOP;
    pthread_mutex_unlock(&v->lock);

    for (; w; w = next) {
	next = w->qnext;
	w->qnext = 0;
	if (w->cancelled) {
	    qview_walk_free(w);
	    continue;
	}
	if (w->working) {
	    /* work() is done with the page: the loop's last look at it. */
	    w->working = 0;
	    v->nworked++;
	    w->in_cb = 1;
	    t0 = qview_cpu_us(CLOCK_THREAD_CPUTIME_ID);
	    more = w->after(w->ctx, w->msgs, w->n);
	} else if (w->n <= 0) {
	    w->in_cb = 1;
	    w->done(w->ctx, w->n == 0, w->n == 0 ? "" : w->why);
	    qview_walk_free(w);
	    continue;
	} else {
	    v->npages++;
	    w->in_cb = 1;
	    t0 = qview_cpu_us(CLOCK_THREAD_CPUTIME_ID);
	    more = w->page(w->ctx, w->msgs, w->n);
	    if (more == QVIEW_WORK && w->work && !w->cancelled) {
		/* The page goes back to the thread; pacing counts it once work() is done. */
		t1 = qview_cpu_us(CLOCK_THREAD_CPUTIME_ID);
		w->in_cb = 0;
		w->working = 1;
		w->carry_us = w->read_ns / 1000 + (t1 - t0);
		qview_enqueue(w);
		continue;
	    }
	}
	qview_free_page(w);
	t1 = qview_cpu_us(CLOCK_THREAD_CPUTIME_ID);
	w->in_cb = 0;
	if (w->cancelled) {
	    qview_walk_free(w);
	    continue;
	}
	qview_pace(w, t1 - t0, time_mono_us());
	if (more == 0)
	    qview_next(w);
	/* else paused until qview_walk_resume() */
    }
}

QVIEW  *qview_create(struct event_base *base, QUEUE *q, char *err, size_t errlen)
{
    QVIEW  *v = xcalloc(1, sizeof(*v));

    v->base = base;
    v->q = q;
    v->notify_fd = -1;
    v->share = 100;
    pthread_mutex_init(&v->lock, 0);
    pthread_cond_init(&v->cond, 0);
    if ((v->r = queue_reader_open(q, err, errlen)) == 0)
	goto fail;
    if ((v->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
	snprintf(err, errlen, "eventfd: %s", strerror(errno));
	goto fail;
    }
    v->ev = event_new(base, v->notify_fd, EV_READ | EV_PERSIST, qview_notify, v);
    if (v->ev == 0 || event_add(v->ev, 0) < 0) {
	snprintf(err, errlen, "qview: event_add failed");
	goto fail;
    }
    if (pthread_create(&v->thread, 0, qview_main, v) != 0) {
	snprintf(err, errlen, "cannot start the queue view thread");
	goto fail;
    }
    v->running = 1;
    return v;

fail:
    qview_stop(v);
    qview_free(v);
    return 0;
}

void    qview_stop(QVIEW *v)
{
    if (v == 0 || v->stopped)
	return;
    if (v->running) {
	pthread_mutex_lock(&v->lock);
	v->stopping = 1;
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->lock);
	pthread_join(v->thread, 0);
	v->running = 0;
    }
    v->stopped = 1;
    if (v->ev) {
	event_free(v->ev);
	v->ev = 0;
    }
    queue_reader_close(v->r);
    v->r = 0;
}

void    qview_free(QVIEW *v)
{
    if (v == 0)
	return;
    qview_stop(v);
    while (v->all)
	qview_walk_free(v->all);
    if (v->notify_fd >= 0)
	close(v->notify_fd);
    pthread_mutex_destroy(&v->lock);
    pthread_cond_destroy(&v->cond);
    free(v);
}

static QVIEW_WALK *qview_walk_new(QVIEW *v, const QCURSOR *start, int with_rcpts, int page_max,
				           QVIEW_PAGE_FN page, QVIEW_DONE_FN done, void *ctx)
{
    QVIEW_WALK *w;

    if (page_max < 1)
	page_max = 1;
    if (page_max > QVIEW_PAGE_MAX)
	page_max = QVIEW_PAGE_MAX;
    w = xcalloc(1, sizeof(*w));
    w->v = v;
    w->cur = *start;
    w->with_rcpts = with_rcpts;
    w->page_max = page_max;
    w->msgs = xcalloc((size_t) page_max, sizeof(QMSG *));
    w->page = page;
    w->done = done;
    w->ctx = ctx;
    w->next = v->all;
    if (v->all)
	v->all->prev = w;
    v->all = w;
    v->live++;
    v->nwalks++;
    return w;
}

QVIEW_WALK *qview_walk(QVIEW *v, const QCURSOR *start, int with_rcpts, int page_max,
		               QVIEW_PAGE_FN page, QVIEW_DONE_FN done, void *ctx)
{
    QVIEW_WALK *w;

    if (v == 0 || v->stopped)
	return 0;
    w = qview_walk_new(v, start, with_rcpts, page_max, page, done, ctx);
    qview_enqueue(w);
    return w;
}

QVIEW_WALK *qview_walk_given(QVIEW *v, QMSG **msgs, int n, void *obj, void (*obj_free) (void *obj),
			             QVIEW_WORK_FN work, QVIEW_PAGE_FN after, QVIEW_DONE_FN done,
			             void *ctx)
{
    QVIEW_WALK *w;
    QCURSOR c;

    if (v == 0 || v->stopped || n < 0 || n > QVIEW_PAGE_MAX)
	return 0;
    queue_cursor_init(&c);
    c.state_idx = 1 << 20;			/* nothing to read after the page given */
    w = qview_walk_new(v, &c, 0, n, 0, done, ctx);
    memcpy(w->msgs, msgs, (size_t) n * sizeof(*msgs));
    w->n = n;
    qview_walk_own(w, obj, obj_free);
    qview_walk_work(w, work, after);
    w->working = 1;
    qview_enqueue(w);
    return w;
}

void    qview_walk_work(QVIEW_WALK *w, QVIEW_WORK_FN work, QVIEW_PAGE_FN after)
{
    w->work = work;
    w->after = after;
}

void    qview_walk_own(QVIEW_WALK *w, void *obj, void (*obj_free) (void *obj))
{
    w->obj = obj;
    w->obj_free = obj_free;
}

void    qview_walk_resume(QVIEW_WALK *w)
{
    /* Only a paused walk (with the loop, not in a callback) goes back to the thread. */
    if (w == 0 || w->cancelled || w->in_cb || w->where != W_LOOP || w->v->stopped)
	return;
    if (w->pace && evtimer_pending(w->pace, 0))
	return;					/* already on its way */
    qview_next(w);
}

void    qview_walk_cancel(QVIEW_WALK *w)
{
    QVIEW  *v;

    if (w == 0 || w->cancelled)
	return;
    v = w->v;
    w->cancelled = 1;
    if (w->in_cb)
	return;					/* freed when the callback returns */
    pthread_mutex_lock(&v->lock);
    if (w->where == W_READING || (w->where == W_READY && !v->stopped)) {
	pthread_mutex_unlock(&v->lock);
	return;					/* freed when it comes back to the loop */
    }
    if (w->where == W_TODO)
	qview_unlink_list(&v->todo, &v->todo_tail, w);
    else if (w->where == W_READY)
	qview_unlink_list(&v->ready, &v->ready_tail, w);
    pthread_mutex_unlock(&v->lock);
    qview_walk_free(w);
}

void    qview_counts(const QVIEW *v, unsigned long *walks, unsigned long *pages, int *live)
{
    *walks = v->nwalks;
    *pages = v->npages;
    *live = v->live;
}

unsigned long qview_worked(const QVIEW *v)
{
    return (v->nworked);
}

void    qview_set_pacing(QVIEW *v, int share, QVIEW_BUSY_FN busy, void *ctx)
{
    v->share = share < 1 ? 1 : share > 100 ? 100 : share;
    v->busy = busy;
    v->busy_ctx = ctx;
}

void    qview_pacing(const QVIEW *v, unsigned long *paced, double *seconds)
{
    *paced = v->npaced;
    *seconds = (double) v->paced_us / 1e6;
}
