/*
 * master - the subset of Postfix's master.cf that relayqd reads: service
 * lines (service type private unpriv chroot wakeup maxproc command args)
 * with "-o name=value" (and "-o { name = value }") arguments.  Only inet
 * services whose command is smtpd become listeners; every other line is
 * kept so the caller can say it is ignored.  Knows no other module.
 */
#ifndef MASTER_H_INCLUDED
#define MASTER_H_INCLUDED

typedef struct MASTER_SERVICE {
    char   *service;			/* as written: smtp, 127.0.0.1:2525, [::1]:25 */
    char   *type;			/* inet unix unix-dgram fifo pass */
    char   *command;			/* first word of the command: smtpd, pickup, ... */
    int     maxproc;			/* -1 when "-" */
    char  **opts;			/* "name=value" from -o, in order, NULL-terminated */
    int     nopts;
    int     line;			/* first line of the entry */
} MASTER_SERVICE;

typedef struct MASTER_CF {
    char   *path;
    MASTER_SERVICE *svc;
    int     nsvc;
} MASTER_CF;

/*
 * Parse path.  NULL with *err == 0 when the file does not exist; NULL with
 * a message "FILE, line N: what is wrong" on a syntax error.
 */
MASTER_CF *master_load(const char *path, char *err, size_t errlen);

/* The same, from text already read (len bytes, no NUL inside); path names it in errors. */
MASTER_CF *master_parse(const char *path, const char *text, size_t len, char *err, size_t errlen);
void    master_free(MASTER_CF *m);

/* An smtpd listener: inet type and command smtpd. */
int     master_is_smtpd(const MASTER_SERVICE *svc);

/*
 * A port name or number: digits, then known_tcp_ports ("name=port" items,
 * "smtps=submissions=465" chains allowed), then /etc/services.  -1 unknown.
 */
int     master_port(const char *name, char *const *known_tcp_ports);

/*
 * The bind addresses ("host:port" / "[v6]:port", allocated, NULL-terminated)
 * of an inet service: host:port as written, or a bare port on every
 * inet_interfaces address ("all": 0.0.0.0 and [::] as inet_protocols allows,
 * "loopback-only": 127.0.0.1 and [::1]).  NULL with err when not resolvable.
 */
char  **master_listen_addrs(const MASTER_SERVICE *svc, char *const *known_tcp_ports,
			            char *const *inet_interfaces, char *const *inet_protocols,
			            char *err, size_t errlen);

#endif
