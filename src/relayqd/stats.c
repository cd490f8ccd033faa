/*
 * stats - fills the metrics endpoint (metrics_listen): the scheduler's
 * families (sched_metrics), smtpd's and the queue store's.
 */
#include <stdio.h>

#include "log/log.h"
#include "relayqd/relayqd.h"

void    stats_metrics(void *ctx, BUF *out)
{
    RELAYQD *d = ctx;
    SMTPD_STATS ss;
    QUEUE_STATS qs;
    char    lbl[64];

    sched_metrics(d->sched, out);
    smtpd_stats(d->smtpd, &ss);
    metrics_family(out, "relayq_smtpd_connections_total", "counter", "SMTP sessions accepted.");
    metrics_sample(out, "relayq_smtpd_connections_total", "", (double) ss.connections);
    metrics_family(out, "relayq_smtpd_sessions", "gauge", "SMTP sessions in progress.");
    metrics_sample(out, "relayq_smtpd_sessions", "", smtpd_sessions(d->smtpd));
    metrics_family(out, "relayq_smtpd_messages_total", "counter", "Messages accepted (250 after DATA).");
    metrics_sample(out, "relayq_smtpd_messages_total", "", (double) ss.messages);
    metrics_family(out, "relayq_smtpd_rejects_total", "counter", "SMTP commands rejected, by reason.");
    snprintf(lbl, sizeof(lbl), "reason=\"relay\"");
    metrics_sample(out, "relayq_smtpd_rejects_total", lbl, (double) ss.rejects_relay);
    metrics_sample(out, "relayq_smtpd_rejects_total", "reason=\"size\"", (double) ss.rejects_size);
    metrics_sample(out, "relayq_smtpd_rejects_total", "reason=\"timeout\"", (double) ss.timeouts);
    metrics_sample(out, "relayq_smtpd_rejects_total", "reason=\"other\"", (double) ss.rejects_other);

    QUEUE_SPACE sp;
    int     space_ok = queue_space(d->queue, &sp) == 0;

    metrics_family(out, "relayq_queue_filesystem_free_bytes", "gauge",
		   "Free space of the queue file system (available to unprivileged users), in bytes.");
    if (space_ok)
	metrics_sample(out, "relayq_queue_filesystem_free_bytes", "", (double) sp.free_bytes);
    metrics_family(out, "relayq_queue_wal_pending_bytes", "gauge",
		   "Committed bytes still only in the WAL, that the next checkpoint writes into the database"
		   " file; the 452 4.3.1 rule counts them as used.");
    if (space_ok)
	metrics_sample(out, "relayq_queue_wal_pending_bytes", "", (double) sp.wal_debt);
    metrics_family(out, "relayq_queue_space_refusing", "gauge",
		   "1 while new mail is refused with 452 4.3.1 for want of queue space (queue_minfree,"
		   " 1.5 x message_size_limit, or the reserve in use), else 0.");
    metrics_sample(out, "relayq_queue_space_refusing", "",
		   space_ok && queue_space_refuse(&sp, config_size(d->cf, "queue_minfree"),
						  config_size(d->cf, "message_size_limit")) != QUEUE_SPACE_OK);
    double  minfree = (double) config_size(d->cf, "queue_minfree");
    double  sizeguard = 1.5 * (double) config_size(d->cf, "message_size_limit");

    metrics_family(out, "relayq_queue_space_guard_bytes", "gauge",
		   "Free space below which new mail is refused: queue_minfree or 1.5 x message_size_limit,"
		   " the larger.");
    metrics_sample(out, "relayq_queue_space_guard_bytes", "", minfree > sizeguard ? minfree : sizeguard);
    metrics_family(out, "relayq_queue_reserve_held", "gauge",
		   "1 while the queue's reserve file holds its space, 0 while it is given back after a full disk.");
    metrics_sample(out, "relayq_queue_reserve_held", "", sp.reserve_held);
    metrics_family(out, "relayq_queue_reserve_releases_total", "counter",
		   "Times the reserve was given back to let the queue record its bookkeeping on a full disk.");
    metrics_sample(out, "relayq_queue_reserve_releases_total", "", (double) sp.reserve_releases);
    metrics_family(out, "relayq_queue_full_errors_total", "counter",
		   "Queue transactions that failed because the disk was full.");
    metrics_sample(out, "relayq_queue_full_errors_total", "", (double) sp.full_errors);
    metrics_family(out, "relayq_queue_updates_suspended", "gauge",
		   "Messages whose delivery outcome is not yet recorded; their delivery waits until it is.");
    metrics_sample(out, "relayq_queue_updates_suspended", "", sched_suspended(d->sched));

    unsigned long walks, pages, paced;
    double  paced_s;
    int     live;

    qview_counts(d->view, &walks, &pages, &live);
    qview_pacing(d->view, &paced, &paced_s);
    metrics_family(out, "relayq_queue_views_total", "counter",
		   "Queue views (mailq, qshape, explain --what-if, flush DOMAIN) started.");
    metrics_sample(out, "relayq_queue_views_total", "", (double) walks);
    metrics_family(out, "relayq_queue_views", "gauge", "Queue views in progress.");
    metrics_sample(out, "relayq_queue_views", "", live);
    metrics_family(out, "relayq_queue_view_pages_total", "counter",
		   "Pages of up to 256 messages read by the queue views' thread.");
    metrics_sample(out, "relayq_queue_view_pages_total", "", (double) pages);
    metrics_family(out, "relayq_queue_view_work_pages_total", "counter",
		   "Pages worked on by the queue views' thread after the loop joined its state in"
		   " (explain --what-if --all's predictions).");
    metrics_sample(out, "relayq_queue_view_work_pages_total", "", (double) qview_worked(d->view));
    metrics_family(out, "relayq_queue_view_paced_seconds_total", "counter",
		   "Time queue views waited between pages so that relaying came first"
		   " (relayq_queue_view_cpu_share), in seconds.");
    metrics_sample(out, "relayq_queue_view_paced_seconds_total", "", paced_s);

    metrics_family(out, "relayq_log_write_errors_total", "counter",
		   "Log lines that could not be written (maillog_file's file system full, ...).");
    metrics_sample(out, "relayq_log_write_errors_total", "", (double) log_write_errors());


    queue_stats(d->queue, &qs);
    metrics_family(out, "relayq_queue_commits_total", "counter", "Queue store transactions committed.");
    metrics_sample(out, "relayq_queue_commits_total", "", (double) qs.transactions);
    metrics_family(out, "relayq_queue_batches_total", "counter", "Write batches committed (several per transaction with group commit).");
    metrics_sample(out, "relayq_queue_batches_total", "", (double) qs.batches);
    metrics_family(out, "relayq_queue_commit_seconds_total", "counter", "Time spent committing, in seconds.");
    metrics_sample(out, "relayq_queue_commit_seconds_total", "", (double) qs.commit_us_total / 1e6);
    metrics_family(out, "relayq_queue_commit_seconds_max", "gauge", "Longest commit so far, in seconds.");
    metrics_sample(out, "relayq_queue_commit_seconds_max", "", (double) qs.commit_us_max / 1e6);
}
