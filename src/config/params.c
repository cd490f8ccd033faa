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
#include <pthread.h>
#include <stdint.h>
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
       "addresses the SMTP server listens on: host:port or [v6addr]:port; ignored when master.cf exists"),
    P("inet_interfaces", PT_LIST, "all",
      "addresses of master.cf listeners written as a bare port or name"),
    P("inet_protocols", PT_LIST, "all",
      "ipv4, ipv6 or all: which of inet_interfaces = all binds"),
    PN("mydestination", PT_LIST, "", "Postfix: $myhostname, localhost.$mydomain, localhost",
       "local domains; relayq has no local delivery and relays everything"),
    PN("mynetworks", PT_LIST, "127.0.0.0/8 [::1]/128", "Postfix: derived from mynetworks_style",
       "trusted client networks (CIDR list)"),
    P("relay_domains", PT_LIST, "",
      "destination domains relayed for any client: domain names (a name also matches its "
      "subdomains, .name only its subdomains) and lookup tables type:name (the domain or a "
      "parent domain as key)"),
    P("parent_domain_matches_subdomains", PT_LIST,
      "debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,"
      "qmqpd_authorized_clients,relay_domains,smtpd_access_maps",
      "parameters whose lookup tables match subdomains with a parent domain key (example.com); "
      "the others need .example.com keys"),
    P("recipient_delimiter", PT_STR, "",
      "separators of address extensions (user+ext): address lookups try user+ext@domain, then "
      "user@domain"),
    P("smtpd_relay_restrictions", PT_LIST, "permit_mynetworks, defer_unauth_destination",
      "relay access restrictions applied at RCPT TO"),
    P("smtpd_recipient_restrictions", PT_LIST, "",
      "recipient restrictions applied at RCPT TO after the relay restrictions"),
    P("relayhost", PT_STR, "",
      "the next hop for all mail, e.g. [host]:port; empty: MX lookup"),
    P("transport_maps", PT_LIST, "",
      "lookup tables: next hop per recipient address or domain, in transport(5)'s order "
      "(any table type but socketmap)"),
    P("smtp_fallback_relay", PT_LIST, "",
      "hosts tried when the normal next hop is unreachable"),
    PR("dns_servers", PT_LIST, "",
       "DNS servers addr[:port]; empty: the system resolver"),

    /* Queue and ownership. */
    PN("queue_directory", PT_STR, "/var/spool/relayq", "Postfix: /var/spool/postfix",
       "holds the SQLite queue, the queue lock and the sockets"),
    PS("queue_minfree", "0",
       "new mail is refused (452 4.3.1) while the queue file system has less free space, in bytes; 1.5 x message_size_limit is always required"),
    PR("relayq_queue_reserve_size", PT_SIZE, "0",
       "space held back in queue_directory/reserve for the queue's own bookkeeping on a full disk, in bytes; 0: 4 MiB + 2 x message_size_limit"),
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
    PT("ipc_timeout", "3600s", 's', 1,
       "how long a queue view (mailq, qshape) waits for a client that does not read its answer"),
    { "relayq_queue_view_cpu_share", PT_INT, "5", 0, 1, 100, NULL, PO_RELAYQ, NULL,
      "while mail is being received or delivered, the percent of one CPU each queue view (mailq, qshape, explain --what-if, flush DOMAIN) may use; 100: no limit" },
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
    PR("relayq_retry_policy_maps", PT_STR, "",
       "per-destination retry policy: a table keyed by recipient domain (then parent domains as "
       "\".parent\"), values name=value pairs of minimal_backoff_time, maximal_backoff_time, "
       "maximal_queue_lifetime, bounce_queue_lifetime, delay_warning_time"),
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
    { "smtpd_per_request_deadline", PT_BOOL, "yes", 0, 0, 0, NULL, PO_POSTFIX_DEF,
      "Postfix 3.7: ${stress?{yes}:{no}}; relayq is one process for every session, so always on",
      "smtpd_timeout limits a whole command or DATA, not each read, and DATA must keep smtpd_min_data_rate" },
    PI("smtpd_min_data_rate", "500", 1, 0,
       "with the deadline on, each byte of DATA buys 1/rate seconds more (bytes/s)"),
    PI("smtpd_junk_command_limit", "100", 1, 0,
       "most NOOP, VRFY, ETRN, RSET in one session before it counts as an error each"),
    PI("smtpd_soft_error_limit", "10", 1, 0,
       "errors in a session before each reply waits smtpd_error_sleep_time"),
    PI("smtpd_hard_error_limit", "20", 1, 0,
       "errors in a session before it is closed (421 too many errors)"),
    PT("smtpd_error_sleep_time", "1s", 's', 0,
       "delay of each reply once smtpd_soft_error_limit is passed (a timer, never a sleep)"),
    PI("smtpd_client_ipv4_prefix_length", "32", 0, 32,
       "clients in one IPv4 network of this prefix length share smtpd_client_connection_count_limit"),
    PI("smtpd_client_ipv6_prefix_length", "84", 0, 128,
       "clients in one IPv6 network of this prefix length share smtpd_client_connection_count_limit"),
    PI("hopcount_limit", "50", 1, 0,
       "most Received: headers (relayq's own included); more: 554 5.4.0 Error: too many hops"),
    P("relay_recipient_maps", PT_LIST, "",
      "lookup tables of the valid recipients in relay_domains; empty: every recipient is valid"),
    P("smtpd_reject_unlisted_recipient", PT_BOOL, "yes",
      "reject a recipient in relay_domains that relay_recipient_maps does not list"),
    PI("unknown_relay_recipient_reject_code", "550", 400, 599,
       "reply code for a recipient that relay_recipient_maps does not list"),
    P("show_user_unknown_table_name", PT_BOOL, "yes",
      "name the table (\"relay recipient table\") in the User unknown reply"),
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

    /* Listeners (master.cf), submission and SMTP AUTH. */
    P("known_tcp_ports", PT_LIST, "lmtp=24, smtp=25, smtps=submissions=465, submission=587",
      "port numbers of master.cf service names, before /etc/services"),
    PI("default_process_limit", "100", 0, 0,
       "sessions of a master.cf listener whose maxproc is \"-\""),
    P("smtpd_tls_wrappermode", PT_BOOL, "no",
      "TLS from the first byte (port 465, \"submissions\"), usually set with -o in master.cf"),
    P("smtpd_client_restrictions", PT_LIST, "",
      "restrictions applied at the connection (evaluated at RCPT TO with smtpd_delay_reject)"),
    P("smtpd_helo_restrictions", PT_LIST, "",
      "restrictions applied to the HELO/EHLO name (evaluated at RCPT TO with smtpd_delay_reject)"),
    P("smtpd_sender_restrictions", PT_LIST, "",
      "restrictions applied to the MAIL FROM address (evaluated at RCPT TO with smtpd_delay_reject)"),
    { "smtpd_upstream_proxy_protocol", PT_STR, "", 0, 0, 0, "haproxy",
      PO_POSTFIX, NULL, "empty, or haproxy: every connection starts with a PROXY v1 or v2 header" },
    PT("smtpd_upstream_proxy_timeout", "5s", 's', 1,
       "time to wait for the PROXY header"),
    P("smtpd_sasl_auth_enable", PT_BOOL, "no",
      "offer and accept SMTP AUTH"),
    { "smtpd_sasl_type", PT_STR, "cyrus", 0, 0, 0, "cyrus dovecot",
      PO_POSTFIX, NULL, "SASL back end; relayq implements dovecot only" },
    P("smtpd_sasl_path", PT_STR, "smtpd",
      "Dovecot auth socket: a path (relative to queue_directory) or inet:host:port"),
    P("smtpd_sasl_service", PT_STR, "smtp",
      "the service name given to Dovecot"),
    P("smtpd_sasl_security_options", PT_LIST, "noanonymous",
      "mechanisms to hide: noanonymous, noplaintext, ..."),
    P("smtpd_sasl_tls_security_options", PT_LIST, "$smtpd_sasl_security_options",
      "smtpd_sasl_security_options for TLS sessions"),
    P("smtpd_tls_auth_only", PT_BOOL, "no",
      "offer AUTH only after STARTTLS (or on a wrapper-mode port)"),
    P("broken_sasl_auth_clients", PT_BOOL, "no",
      "also announce AUTH=MECH ... for old Outlook clients"),
    P("smtpd_sasl_authenticated_header", PT_BOOL, "no",
      "put the login name in the Received: header"),
    P("smtpd_sasl_local_domain", PT_STR, "",
      "realm appended to login names without one"),
    P("smtpd_sasl_exceptions_networks", PT_LIST, "",
      "clients to which AUTH is not announced"),
    PS("smtpd_sasl_response_limit", "12288",
       "longest AUTH response line"),
    P("smtpd_sender_login_maps", PT_LIST, "",
      "tables: sender address -> login names that may use it"),
    PI("smtpd_client_auth_rate_limit", "0", 0, 0,
       "AUTH commands per client per anvil_rate_time_unit; 0: no limit"),
    PT("anvil_rate_time_unit", "60s", 's', 1,
       "the time unit of the client rate limits"),

    /* Cleanup. */
    P("local_header_rewrite_clients", PT_LIST, "permit_inet_interfaces",
      "clients whose mail gets missing Message-ID: and Date: headers"),
    P("always_add_missing_headers", PT_BOOL, "no",
      "add missing headers to mail from every client"),

    /* Address rewriting in cleanup (docs/rewriting.md). */
    P("canonical_maps", PT_LIST, "",
      "tables: address -> address, for sender and recipient addresses (canonical(5))"),
    P("sender_canonical_maps", PT_LIST, "",
      "tables: address -> address, for sender addresses, before canonical_maps"),
    P("recipient_canonical_maps", PT_LIST, "",
      "tables: address -> address, for recipient addresses, before canonical_maps"),
    P("canonical_classes", PT_LIST, "envelope_sender, envelope_recipient, header_sender, header_recipient",
      "which addresses canonical_maps rewrites"),
    P("sender_canonical_classes", PT_LIST, "envelope_sender, header_sender",
      "which addresses sender_canonical_maps rewrites"),
    P("recipient_canonical_classes", PT_LIST, "envelope_recipient, header_recipient",
      "which addresses recipient_canonical_maps rewrites"),
    P("propagate_unmatched_extensions", PT_LIST, "canonical, virtual",
      "lookups whose result gets the address extension back when only the address without it matched"),
    P("masquerade_domains", PT_LIST, "",
      "domains that hide their subdomains: user@host.example.com becomes user@example.com; "
      "!name exempts a domain"),
    P("masquerade_exceptions", PT_LIST, "",
      "user names (or tables) whose addresses are not masqueraded"),
    P("masquerade_classes", PT_LIST, "envelope_sender, header_sender, header_recipient",
      "which addresses masquerade_domains rewrites"),
    P("remote_header_rewrite_domain", PT_STR, "",
      "rewrite the headers of mail from clients outside local_header_rewrite_clients, "
      "qualifying bare names with this domain; empty: leave those headers alone"),
    P("message_drop_headers", PT_LIST, "bcc, content-length, resent-bcc, return-path",
      "headers removed from every message in cleanup (mail from SMTP and sendmail(1))"),
    P("smtp_generic_maps", PT_LIST, "",
      "tables: address -> address, applied by the SMTP client to the envelope and the address "
      "headers it sends (generic(5)); the queued message is not changed"),
    P("always_bcc", PT_STR, "",
      "an address that gets a blind copy of every message"),
    P("sender_bcc_maps", PT_LIST, "",
      "tables: sender address -> address that gets a blind copy"),
    P("recipient_bcc_maps", PT_LIST, "",
      "tables: recipient address -> address that gets a blind copy"),

    /* Milters (Sendmail milter protocol). */
    P("smtpd_milters", PT_STR, "",
      "mail filters for mail from SMTP: inet:host:port, unix:/path, or { endpoint, name=value ... }"),
    P("non_smtpd_milters", PT_STR, "",
      "mail filters for mail from sendmail(1)"),
    P("internal_mail_filter_classes", PT_LIST, "",
      "relayq's own mail that is filtered too: bounce, notify (empty: none)"),
    PI("milter_protocol", "6", 2, 6,
       "the milter protocol version relayq offers"),
    { "milter_default_action", PT_STR, "tempfail", 0, 0, 0,
      "accept reject tempfail quarantine shutdown",
      PO_POSTFIX, NULL, "what to do when a filter is down, times out or breaks the protocol" },
    PT("milter_connect_timeout", "30s", 's', 1,
       "timeout for connecting to a filter and negotiating"),
    PT("milter_command_timeout", "30s", 's', 1,
       "timeout for a filter's reply to a connect, HELO, MAIL, RCPT or DATA event"),
    PT("milter_content_timeout", "300s", 's', 1,
       "timeout for a filter's reply to message content"),
    P("milter_connect_macros", PT_STR, "j {daemon_name} {daemon_addr} v _",
      "macros sent to filters at connect"),
    P("milter_helo_macros", PT_STR, "{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}",
      "macros sent to filters at HELO/EHLO"),
    P("milter_mail_macros", PT_STR,
      "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}",
      "macros sent to filters at MAIL FROM"),
    P("milter_rcpt_macros", PT_STR, "i {rcpt_addr} {rcpt_host} {rcpt_mailer}",
      "macros sent to filters at RCPT TO"),
    P("milter_data_macros", PT_STR, "i",
      "macros sent to filters at DATA"),
    P("milter_end_of_header_macros", PT_STR, "i",
      "macros sent to filters at the end of the headers"),
    P("milter_end_of_data_macros", PT_STR, "i",
      "macros sent to filters at the end of the message"),
    P("milter_unknown_command_macros", PT_STR, "",
      "macros sent to filters with an unknown command"),
    P("milter_macro_daemon_name", PT_STR, "$myhostname",
      "the {daemon_name} macro"),
    P("milter_macro_v", PT_STR, "$mail_name $mail_version",
      "the {v} macro"),

    /* Content checks (docs/rewriting.md). */
    P("header_checks", PT_STR, "",
      "tables that check each logical header of the message (regexp:, pcre:, ...): REJECT, DISCARD, HOLD, "
      "IGNORE, REPLACE, PREPEND, WARN, INFO, REDIRECT, BCC, STRIP, PASS, FILTER, DUNNO"),
    P("mime_header_checks", PT_STR, "$header_checks",
      "tables that check MIME headers (Content-*, MIME-Version) and the headers of body parts"),
    P("nested_header_checks", PT_STR, "$header_checks",
      "tables that check the headers of attached messages (message/rfc822)"),
    P("body_checks", PT_STR, "",
      "tables that check each body line (in records of line_length_limit bytes)"),
    PS("body_checks_size_limit", "51200",
       "body_checks look at this many bytes of each body part (0: all)"),
    PI("mime_nesting_limit", "100", 1, 0,
       "most multipart levels open at once that the checks follow"),
    P("content_filter", PT_STR, "",
      "after-queue content filter for every message received: smtp:[host]:port (relayq delivers to it "
      "over SMTP; it sends the mail back to a listener with -o content_filter=)"),
    P("receive_override_options", PT_LIST, "",
      "no_header_body_checks, no_milters: turn these off for mail a listener receives (a content filter's return)"),
    P("smtp_header_checks", PT_STR, "",
      "tables the SMTP client applies to headers on the way out (WARN, INFO, REPLACE, PREPEND, STRIP, IGNORE, DUNNO)"),
    P("smtp_mime_header_checks", PT_STR, "",
      "the SMTP client's checks of MIME headers"),
    P("smtp_nested_header_checks", PT_STR, "",
      "the SMTP client's checks of attached messages' headers"),
    P("smtp_body_checks", PT_STR, "",
      "the SMTP client's checks of body lines"),

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
    PT("smtp_starttls_timeout", "300s", 's', 1,
       "timeout for the STARTTLS reply and the TLS handshake that follows"),
    PT("smtp_rset_timeout", "20s", 's', 1,
       "timeout for the RSET reply before a session is kept for reuse"),
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
    { "smtp_tls_security_level", PT_STR, "", 0, 0, 0, "none may encrypt fingerprint verify secure dane dane-only",
      PO_POSTFIX, NULL, "SMTP client TLS: empty or none, may, encrypt, fingerprint, verify, secure, "
      "dane (TLSA records from DNSSEC-signed zones when there are any, else may), dane-only (TLSA records required)" },
    { "smtp_dns_support_level", PT_STR, "", 0, 0, 0, "enabled dnssec", PO_POSTFIX, NULL,
      "DNS in the SMTP client: empty or enabled, or dnssec (MX, A/AAAA and TLSA lookups ask for DNSSEC "
      "and trust the AD bit of the resolver in dns_servers, which must be a local validating one); "
      "disabled is not supported" },
    { "smtp_tls_dane_insecure_mx_policy", PT_STR, "", 0, 0, 0, "may encrypt dane", PO_POSTFIX_DEF,
      "Postfix: ${{$smtp_tls_security_level} == {dane} ? {dane} : {may}}, the same in effect",
      "DANE when the MX RRset is not signed but the MX host's TLSA records are: may (ignore them), "
      "encrypt (TLS required, not verified) or dane (verified, logged as Trusted); empty: dane when "
      "smtp_tls_security_level = dane, else may" },
    P("smtp_tls_CAfile", PT_STR, "",
      "PEM file of CA certificates trusted for verifying servers"),
    P("smtp_tls_CApath", PT_STR, "",
      "directory of CA certificates (hashed names, as c_rehash makes) trusted for verifying servers"),
    P("tls_append_default_CA", PT_BOOL, "no",
      "also trust the system's default CAs (OpenSSL's default paths)"),
    P("smtp_tls_cert_file", PT_STR, "",
      "PEM client certificate (and chain) offered to servers that ask for one"),
    P("smtp_tls_key_file", PT_STR, "$smtp_tls_cert_file",
      "PEM private key of smtp_tls_cert_file"),
    P("smtp_tls_protocols", PT_STR, ">=TLSv1",
      "TLS protocols used at security level may (\">=TLSv1.2\", \"!SSLv2, !SSLv3\")"),
    P("smtp_tls_mandatory_protocols", PT_STR, ">=TLSv1",
      "TLS protocols used at levels encrypt and above"),
    P("smtp_tls_ciphers", PT_STR, "medium",
      "cipher grade at security level may: high, medium, null"),
    P("smtp_tls_mandatory_ciphers", PT_STR, "medium",
      "cipher grade at levels encrypt and above"),
    P("smtp_tls_exclude_ciphers", PT_LIST, "",
      "ciphers or cipher types excluded at every level"),
    P("smtp_tls_mandatory_exclude_ciphers", PT_LIST, "",
      "ciphers or cipher types excluded at levels encrypt and above"),
    P("tls_high_cipherlist", PT_STR, "aNULL:-aNULL:HIGH:@STRENGTH",
      "OpenSSL cipher list of the grade high"),
    P("tls_medium_cipherlist", PT_STR, "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH",
      "OpenSSL cipher list of the grade medium"),
    P("tls_null_cipherlist", PT_STR, "eNULL:!aNULL",
      "OpenSSL cipher list of the grade null"),
    P("smtp_tls_fingerprint_digest", PT_STR, "sha256",
      "digest of certificate and public-key fingerprints at level fingerprint"),
    P("smtp_tls_fingerprint_cert_match", PT_LIST, "",
      "fingerprints accepted at level fingerprint (certificate or public key)"),
    P("smtp_tls_verify_cert_match", PT_LIST, "hostname",
      "names a server certificate must match at level verify"),
    P("smtp_tls_secure_cert_match", PT_LIST, "nexthop, dot-nexthop",
      "names a server certificate must match at level secure"),
    P("smtp_tls_servername", PT_STR, "",
      "SNI name sent: empty (none), hostname, nexthop, or a name"),
    P("smtp_tls_wrappermode", PT_BOOL, "no",
      "TLS from the first byte (SMTPS, port 465) instead of STARTTLS; needs level encrypt or above"),
    PN("smtp_tls_session_cache_database", PT_STR, "", "Postfix: a tlsmgr(8) database file",
       "when set, TLS sessions are cached and resumed; relayq keeps them in memory and ignores the file name"),
    PT("smtp_tls_session_cache_timeout", "3600s", 's', 0,
       "how long a cached TLS session may be resumed"),
    PI("smtp_tls_loglevel", "0", 0, 4,
       "TLS logging: 0 failures only, 1 one summary line per session, 2 certificate and cache details"),
    P("smtp_tls_policy_maps", PT_LIST, "",
      "per-destination TLS policy tables, keyed by next hop as Postfix keys them"),

    /* SMTP client authentication. */
    P("smtp_sasl_auth_enable", PT_BOOL, "no",
      "log in to servers that offer AUTH when smtp_sasl_password_maps has credentials for them"),
    P("smtp_sasl_password_maps", PT_LIST, "",
      "tables of user:password per sender, server host name or next hop"),
    P("smtp_sender_dependent_authentication", PT_BOOL, "no",
      "look up the sender address first in smtp_sasl_password_maps"),
    P("smtp_sasl_mechanism_filter", PT_LIST, "",
      "AUTH mechanisms offered by servers that may be used (empty: all)"),
    P("smtp_sasl_password_result_delimiter", PT_STR, ":",
      "the character between user name and password in smtp_sasl_password_maps results"),
    P("smtp_sasl_auth_soft_bounce", PT_BOOL, "yes",
      "a 5xx reply to AUTH defers (turned into 4xx) instead of bouncing"),
    P("smtp_sasl_security_options", PT_LIST, "noplaintext, noanonymous",
      "AUTH mechanism properties required without TLS"),
    P("smtp_sasl_tls_security_options", PT_LIST, "$smtp_sasl_security_options",
      "AUTH mechanism properties required over unverified TLS"),
    P("smtp_sasl_tls_verified_security_options", PT_LIST, "$smtp_sasl_tls_security_options",
      "AUTH mechanism properties required over verified TLS"),
    P("sender_dependent_relayhost_maps", PT_LIST, "",
      "tables of relayhost per sender address or @domain, instead of relayhost"),

    /* Observability. */
    PR("metrics_listen", PT_STR, "",
       "host:port of the Prometheus /metrics listener; empty: off"),
};

const int param_count = (int) (sizeof(param_table) / sizeof(param_table[0]));

/*
 * param_index() is on the per-message path (every config_str() and
 * config_known() asks it), so the names are hashed once (FNV-1a, open
 * addressing) instead of being compared one by one with strcmp().
 */
#define PARAM_HASH_SIZE	1024		/* a power of two, over twice the table */

_Static_assert(sizeof(param_table) / sizeof(param_table[0]) < PARAM_HASH_SIZE / 2,
	       "PARAM_HASH_SIZE too small for param_table");

static short param_hash[PARAM_HASH_SIZE];	/* table index + 1; 0: empty */
static pthread_once_t param_hash_once = PTHREAD_ONCE_INIT;

static uint32_t param_hash_name(const char *name)
{
    uint32_t h = 2166136261u;

    while (*name)
	h = (h ^ (unsigned char) *name++) * 16777619u;
    return (h);
}

static void param_hash_build(void)
{
    for (int i = 0; i < param_count; i++) {
	uint32_t h = param_hash_name(param_table[i].name) & (PARAM_HASH_SIZE - 1);

	while (param_hash[h] != 0) {
	    /* A name twice in the table: the first entry wins, as before. */
	    if (strcmp(param_table[param_hash[h] - 1].name, param_table[i].name) == 0)
		break;
	    h = (h + 1) & (PARAM_HASH_SIZE - 1);
	}
	if (param_hash[h] == 0)
	    param_hash[h] = (short) (i + 1);
    }
}

int     param_index(const char *name)
{
    uint32_t h;

    pthread_once(&param_hash_once, param_hash_build);
    for (h = param_hash_name(name) & (PARAM_HASH_SIZE - 1); param_hash[h] != 0;
	 h = (h + 1) & (PARAM_HASH_SIZE - 1))
	if (strcmp(param_table[param_hash[h] - 1].name, name) == 0)
	    return (param_hash[h] - 1);
    return (-1);
}
