/*
 * params.c - the table of every relayq.cf parameter: name, type, default,
 * unit of a bare time value, limits, and a one-line description that
 * relayq.cf(5) is generated from (config_write_man()).
 *
 * Names and defaults are Postfix 3.7's at compatibility_level = 3.6, except
 * where the origin says PO_POSTFIX_DEF (relayq's own default, the Postfix one
 * in the note) or PO_RELAYQ (no Postfix equivalent).  This is the only place
 * that knows them: keep it so.
 */
#include <string.h>

#include "config/params.h"

#define P(n, t, d, desc)	{ n, t, d, 0, 0, 0, NULL, PO_POSTFIX, NULL, desc }
#define PN(n, t, d, note, desc)	{ n, t, d, 0, 0, 0, NULL, PO_POSTFIX_DEF, note, desc }
#define PR(n, t, d, desc)	{ n, t, d, 0, 0, 0, NULL, PO_RELAYQ, NULL, desc }
#define PT(n, d, u, min, desc)	{ n, PT_TIME, d, u, min, 0, NULL, PO_POSTFIX, NULL, desc }
#define PI(n, d, min, max, desc) { n, PT_INT, d, 0, min, max, NULL, PO_POSTFIX, NULL, desc }
#define PS(n, d, desc)		{ n, PT_SIZE, d, 0, 0, 0, NULL, PO_POSTFIX, NULL, desc }

const PARAM param_table[] = {
    /* Identity. */
    P("myhostname", PT_STR, PARAM_DEF_MYHOSTNAME,
      "the fully-qualified host name (default: the system host name, plus \".localdomain\" when it has no dot)"),
    P("mydomain", PT_STR, PARAM_DEF_MYDOMAIN,
      "the domain name (default: $myhostname minus its first label, or \"localdomain\")"),
    P("myorigin", PT_STR, "$myhostname",
      "the domain of locally submitted mail"),
    PN("mail_name", PT_STR, "relayq", "Postfix: Postfix",
       "the mail system name, in the SMTP greeting and in bounces"),
    PN("mail_version", PT_STR, "0.1", "Postfix: its version",
       "the software version"),
    P("smtpd_banner", PT_STR, "$myhostname ESMTP $mail_name",
      "the text after 220 in the SMTP greeting"),
    PN("compatibility_level", PT_STR, "3.6", "Postfix: 0 when unset",
       "the Postfix compatibility level whose defaults relayq follows"),
    PN("syslog_name", PT_STR, "relayq", "Postfix: postfix",
       "the name before /SERVICE in every log line"),
    P("maillog_file", PT_STR, "",
      "log destination: a file, /dev/stdout, /dev/stderr, or empty for syslog(3)"),

    /* Where mail goes. */
    PR("smtpd_listen", PT_LIST, "127.0.0.1:2525",
       "addresses the SMTP server listens on: host:port or [v6addr]:port"),
    P("inet_interfaces", PT_LIST, "all",
      "accepted for compatibility; relayq listens on smtpd_listen"),
    P("inet_protocols", PT_LIST, "all",
      "accepted for compatibility; relayq listens on smtpd_listen"),
    PN("mydestination", PT_LIST, "", "Postfix: $myhostname, localhost.$mydomain, localhost",
       "local domains; relayq has no local delivery and relays everything"),
    PN("mynetworks", PT_LIST, "127.0.0.0/8 [::1]/128", "Postfix: derived from mynetworks_style",
       "trusted client networks (CIDR list)"),
    P("relay_domains", PT_LIST, "",
      "destination domains relayed for any client"),
    P("smtpd_relay_restrictions", PT_LIST, "permit_mynetworks, defer_unauth_destination",
      "relay access restrictions applied at RCPT TO"),
    P("smtpd_recipient_restrictions", PT_LIST, "",
      "recipient restrictions applied at RCPT TO after the relay restrictions"),
    P("relayhost", PT_STR, "",
      "the next hop for all mail, e.g. [host]:port; empty: MX lookup"),
    P("transport_maps", PT_LIST, "",
      "next hop per destination: inline:{...} or texthash:/path"),
    P("smtp_fallback_relay", PT_LIST, "",
      "hosts tried when the normal next hop is unreachable"),
    PR("dns_servers", PT_LIST, "",
       "DNS servers addr[:port]; empty: the system resolver"),

    /* Queue and ownership. */
    PN("queue_directory", PT_STR, "/var/spool/relayq", "Postfix: /var/spool/postfix",
       "holds the SQLite queue, the queue lock and the sockets"),
    PN("mail_owner", PT_STR, "relayq", "Postfix: postfix",
       "the user the daemon runs as after binding"),
    PN("setgid_group", PT_STR, "relayqdrop", "Postfix: postdrop",
       "the group for local submission and admin commands"),
    P("hash_queue_names", PT_LIST, "deferred, defer",
      "accepted for compatibility; the queue is one SQLite file"),
    PI("hash_queue_depth", "1", 1, 16,
       "accepted for compatibility; the queue is one SQLite file"),
    P("enable_long_queue_ids", PT_BOOL, "no",
      "accepted for compatibility; relayq always uses short queue IDs"),

    /* Scheduling (spec section 1). */
    PT("queue_run_delay", "300s", 's', 1,
       "period of the deferred-queue scans"),
    PT("minimal_backoff_time", "300s", 's', 1,
       "least time a deferred message waits; dead-destination hold time"),
    PT("maximal_backoff_time", "4000s", 's', 1,
       "most time a deferred message waits between attempts"),
    PT("maximal_queue_lifetime", "5d", 'd', 0,
       "how long a message is retried before it is returned to the sender"),
    PT("bounce_queue_lifetime", "5d", 'd', 0,
       "the same for bounces (null sender); the scheduler caps it at maximal_queue_lifetime"),
    PT("delay_warning_time", "0h", 'h', 0,
       "when the sender is told that mail is delayed; 0: never"),
    PI("qmgr_message_active_limit", "20000", 1, 0,
       "most messages in the active queue"),
    PI("qmgr_message_recipient_limit", "20000", 1, 0,
       "most in-memory recipients"),
    PI("initial_destination_concurrency", "5", 1, 0,
       "initial number of parallel deliveries to one destination"),
    PI("default_destination_concurrency_limit", "20", 0, 0,
       "most parallel deliveries to one destination"),
    PI("default_destination_recipient_limit", "50", 0, 0,
       "most recipients per delivery request"),
    PI("default_destination_concurrency_failed_cohort_limit", "1", 0, 0,
       "failed connection cohorts before a destination is declared dead"),
    P("default_destination_concurrency_positive_feedback", PT_STR, "1",
      "concurrency window increment after a successful delivery"),
    P("default_destination_concurrency_negative_feedback", PT_STR, "1",
      "concurrency window decrement after a failed connection"),
    PT("default_destination_rate_delay", "0s", 's', 0,
       "pause between deliveries to one destination; 0: none"),
    PT("transport_retry_time", "60s", 's', 1,
       "how long a broken transport is avoided"),
    PI("delay_logging_resolution_limit", "2", 0, 6,
       "most decimals in delay= and delays= log fields"),
    P("notify_classes", PT_LIST, "resource, software",
      "problems reported to the postmaster"),
    PR("relayq_mx_random_seed", PT_INT, "0",
       "seed for the shuffling of equal-preference MX hosts; 0: random (for tests)"),

    /* SMTP server. */
    PS("message_size_limit", "10240000",
       "largest message accepted, in bytes"),
    PS("header_size_limit", "102400",
       "largest message header kept, in bytes"),
    PS("line_length_limit", "2048",
       "longer lines are split, in bytes"),
    PS("bounce_size_limit", "50000",
       "most of the original message returned in a bounce, in bytes"),
    PI("smtpd_recipient_limit", "1000", 1, 0,
       "most recipients per message"),
    PI("smtpd_client_connection_count_limit", "50", 0, 0,
       "most simultaneous sessions from one client; 0: no limit"),
    { "relayq_smtpd_session_limit", PT_INT, "1000", 0, 1, 0, NULL, PO_RELAYQ, NULL,
      "most simultaneous SMTP server sessions in all (Postfix: the process limit)" },
    PT("smtpd_timeout", "300s", 's', 1,
       "how long the SMTP server waits for a client command or data"),
    { "smtpd_forbid_bare_newline", PT_STR, "normalize", 0, 0, 0, "no normalize yes reject",
      PO_POSTFIX_DEF, "Postfix 3.9's values and default; absent in 3.7",
      "what to do with a bare LF in SMTP: no, normalize (= yes) or reject" },
    P("smtpd_forbid_bare_newline_exclusions", PT_LIST, "$mynetworks",
      "clients to which smtpd_forbid_bare_newline does not apply"),
    P("smtpd_delay_reject", PT_BOOL, "yes",
      "apply restrictions at RCPT TO even when they concern the client or HELO"),
    P("disable_vrfy_command", PT_BOOL, "no",
      "reject VRFY"),
    P("smtpd_helo_required", PT_BOOL, "no",
      "require HELO or EHLO before MAIL FROM"),
    P("smtputf8_enable", PT_BOOL, "yes",
      "announce and accept SMTPUTF8"),
    { "smtpd_tls_security_level", PT_STR, "", 0, 0, 0, "none may encrypt",
      PO_POSTFIX, NULL, "SMTP server TLS: empty or none, may, encrypt" },
    P("smtpd_tls_cert_file", PT_STR, "",
      "PEM certificate chain of the SMTP server"),
    P("smtpd_tls_key_file", PT_STR, "",
      "PEM private key of the SMTP server"),

    /* Cleanup. */
    P("local_header_rewrite_clients", PT_LIST, "permit_inet_interfaces",
      "clients whose mail gets missing Message-ID: and Date: headers"),
    P("always_add_missing_headers", PT_BOOL, "no",
      "add missing headers to mail from every client"),

    /* SMTP client. */
    PT("smtp_connect_timeout", "30s", 's', 0,
       "TCP connection timeout of the SMTP client"),
    PT("smtp_helo_timeout", "300s", 's', 1,
       "timeout for the greeting and the EHLO/HELO reply"),
    PT("smtp_mail_timeout", "300s", 's', 1,
       "timeout for the MAIL FROM reply"),
    PT("smtp_rcpt_timeout", "300s", 's', 1,
       "timeout for the RCPT TO reply"),
    PT("smtp_data_init_timeout", "120s", 's', 1,
       "timeout for the DATA reply"),
    PT("smtp_data_xfer_timeout", "180s", 's', 1,
       "timeout for sending the message content"),
    PT("smtp_data_done_timeout", "600s", 's', 1,
       "timeout for the reply to the final dot"),
    PT("smtp_quit_timeout", "300s", 's', 1,
       "timeout for the QUIT reply"),
    P("smtp_connection_cache_on_demand", PT_BOOL, "yes",
      "keep an SMTP session open after a delivery and reuse it for the next one to the same server"),
    PT("smtp_connection_cache_time_limit", "2s", 's', 1,
       "how long a cached SMTP session may stay idle before it is closed"),
    PI("smtp_connection_reuse_count_limit", "0", 0, 0,
       "most deliveries over one cached SMTP session; 0: no limit (relayq still stops at 100)"),
    PI("smtp_line_length_limit", "998", 0, 0,
       "longest line sent over SMTP; longer ones are folded with <CR><LF><SPACE>; 0: no limit"),
    PI("smtp_mx_address_limit", "5", 0, 0,
       "most MX addresses tried per delivery; 0: no limit"),
    PI("smtp_mx_session_limit", "2", 0, 0,
       "most SMTP sessions per delivery; 0: no limit"),
    P("smtp_helo_name", PT_STR, "$myhostname",
      "the name sent in EHLO/HELO"),
    { "smtp_tls_security_level", PT_STR, "", 0, 0, 0, "none may encrypt",
      PO_POSTFIX, NULL, "SMTP client TLS: empty or none, may, encrypt" },
    P("smtp_tls_CAfile", PT_STR, "",
      "PEM CA certificates for verifying servers"),

    /* Observability. */
    PR("metrics_listen", PT_STR, "",
       "host:port of the Prometheus /metrics listener; empty: off"),
};

const int param_count = (int) (sizeof(param_table) / sizeof(param_table[0]));

int     param_index(const char *name)
{
    for (int i = 0; i < param_count; i++)
	if (strcmp(param_table[i].name, name) == 0)
	    return i;
    return -1;
}
