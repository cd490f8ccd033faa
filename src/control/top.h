/*
 * top - relayq top's snapshot: what the daemon answers to "top [N]" on the
 * query socket, how the CLI reads it back, and the screen both the live
 * view and `relayq top --once` print.
 *
 * The daemon fills a TOP_SNAP from counters it keeps up to date (qmgr_top,
 * the delivery counters sampled each second): nothing here walks the
 * queue.  The reply is line-based text (top_format / top_parse): one
 * "key values" line per item, free text last and percent-encoded, so that
 * a destination name or a reason with spaces, newlines or escape
 * sequences cannot break the framing; the CLI makes them printable
 * (str_printable) before they reach a terminal.
 */
#ifndef TOP_H_INCLUDED
#define TOP_H_INCLUDED

#include <stdint.h>
#include "util/util.h"
#include "qmgr/qmgr.h"
#include "queue/queue.h"

#define TOP_VERSION	1
#define TOP_COUNTERS	4		/* received, delivered, deferred, bounced */
#define TOP_WINDOWS	3		/* rates over the last 1, 10 and 60 seconds */
#define TOP_DESTS_MAX	100		/* destinations in one snapshot */
#define TOP_STATES	4		/* incoming, active, deferred, hold */

extern const char *const top_counter_names[TOP_COUNTERS];
extern const char *const top_state_names[TOP_STATES];
extern const int top_windows[TOP_WINDOWS];

typedef struct TOP_DEST {
    char   *dest;			/* transport:nexthop */
    uint32_t deferred;			/* deferred messages whose last pass deferred a recipient there */
    int     dead;
    int64_t dead_until;
    char   *dsn;			/* when dead: the hop's status and the reason */
    char   *reason;
} TOP_DEST;

typedef struct TOP_SNAP {
    char   *host;			/* myhostname */
    int64_t now;			/* the daemon's clock */
    int64_t started;			/* when relayqd started */
    uint64_t total[TOP_COUNTERS];	/* since the start */
    double  rate[TOP_COUNTERS][TOP_WINDOWS];	/* per second */
    uint32_t state[TOP_STATES];
    uint32_t age[TOP_STATES][QMGR_AGE_BUCKETS];
    int     ndead;
    uint32_t ndests;			/* destinations of the last passes */
    uint32_t deferred_known;		/* deferred messages with a known destination */
    int64_t next_run;			/* next queue run (grid point) */
    int64_t next_due;			/* the run that takes the first deferred message; 0: none */
    int64_t queue_run_delay;
    TOP_DEST *dests;
    int     ndest;
    int     offline;			/* read from the queue, relayqd not running (top_from_queue) */
} TOP_SNAP;

void    top_snap_free(TOP_SNAP *s);		/* its members; s itself is the caller's */

/*
 * The CLI with the daemon down: the counts by state and age read from the
 * queue itself (one walk, exact ages); rates, dead destinations and queue
 * runs are unknown.  0, or -1 if the queue could not be read.
 */
int     top_from_queue(QUEUE *q, const char *host, int64_t now, TOP_SNAP *s);

/* The daemon's reply; top_parse() reads it back (0, or -1 with err). */
void    top_format(const TOP_SNAP *s, BUF *out);
int     top_parse(const char *text, size_t len, TOP_SNAP *s, char *err, size_t errlen);

/*
 * The screen: at most width columns (counted in characters after
 * str_printable) and height lines (0: no limit), every string from the
 * daemon made printable.  status: a line shown last (NULL: none).
 * Clock times are local, as mailq's.
 */
void    top_render(const TOP_SNAP *s, int width, int height, const char *status, BUF *out);
void    top_json(const TOP_SNAP *s, BUF *out);
/* How many destinations fit on a screen of height lines. */
int     top_dest_rows(int height);

#endif
