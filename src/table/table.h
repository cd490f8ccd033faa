/*
 * table - Postfix "type:name" lookup tables behind one interface, with
 * Postfix's key-matching rules for domains and addresses.
 *
 * Types: inline:{...}, texthash:/path, static:value, hash:/path and
 * btree:/path (Berkeley DB, the .db file postmap(1) writes), lmdb:/path
 * (.lmdb), cdb:/path (.cdb), regexp:/path and pcre:/path (pattern files,
 * also regexp:{...} / pcre:{...} inline), socketmap:inet:host:port:name and
 * socketmap:unix:/path:name (netstring protocol), unionmap:{t1, t2, ...}
 * (every table's result joined with ","), pipemap:{t1, t2, ...} (each
 * table's result is the next one's key).
 *
 * One TABLE is one opened table; a TABLE_LIST is a parameter's value, a
 * list of tables searched in order (Postfix's maps(3)).  Opening the same
 * spec twice returns the same shared TABLE (reference counted), so that
 * every parameter naming /etc/relayq/transport sees the same contents and
 * a reload re-reads it once.
 *
 * Lookups return TABLE_FOUND (1), TABLE_NOTFOUND (0) or TABLE_ERROR (-1,
 * with a text in err naming the table, and file and line where there is
 * one).  A found value points into the table (or list) and stays valid
 * until the next lookup on it or until it is closed or reloaded.
 *
 * Keys: tables opened with TABLE_FLAG_FOLD fold the query to lower case
 * (Postfix's DICT_FLAG_FOLD_FIX: every *_maps parameter; postmap without
 * -f).  Indexed files are probed with and without the trailing NUL byte
 * that Postfix's postmap stores, as Postfix does.
 *
 * Synchronous lookups work on every type; for socketmap they block (with
 * Postfix's timeouts).  Daemon code that may meet a socketmap uses the
 * *_async entry points, which run socketmap requests on the event loop
 * given to table_set_event_base() and complete local lookups before they
 * return.
 *
 * Reloading: every file table (texthash, regexp, pcre, hash, btree, lmdb,
 * cdb) is read again at the next lookup after its file's mtime, size or
 * inode changed (the file is looked at at most once a second), and
 * table_reload_all() (the daemon's SIGHUP) does the same for all of them
 * at once.  A table that
 * fails to load keeps its last good contents (one warning naming file and
 * line); a file that only root can read, opened before privileges were
 * dropped, keeps its contents with a warning that a restart is needed to
 * read it again.
 */
#ifndef TABLE_H_INCLUDED
#define TABLE_H_INCLUDED

#include <stddef.h>

struct event_base;

#define TABLE_FOUND	1
#define TABLE_NOTFOUND	0
#define TABLE_ERROR	(-1)

/* Open flags. */
#define TABLE_FLAG_FOLD	(1<<0)		/* fold query keys to lower case */
#define TABLE_FLAG_CREATE (1<<1)	/* postmap: create/truncate for writing */

/* Lookup flags. */
#define TABLE_PARTIAL	(1<<0)		/* a partial key: skip regexp/pcre
					 * (Postfix queries pattern tables
					 * with whole addresses only) */

typedef struct TABLE TABLE;
typedef struct TABLE_LIST TABLE_LIST;
typedef struct TABLE_REQ TABLE_REQ;

/* ---- one table -------------------------------------------------------- */

/*
 * Open "type:name".  NULL with err set ("table texthash:/x: open: No such
 * file or directory", "/x, line 3: ...") when it cannot be opened.  An
 * unknown type is an error.  param names the parameter in messages (may
 * be NULL).
 */
TABLE  *table_open(const char *spec, int flags, const char *param, char *err, size_t errlen);
TABLE  *table_close(TABLE *t);		/* returns NULL; NULL is fine */
int     table_type_known(const char *spec);	/* "hash:/x" yes, "example.com" no */
const char *table_spec(const TABLE *t);	/* "type:name" as opened */
const char *table_type(const TABLE *t);	/* "hash", "texthash", ... */
int     table_is_pattern(const TABLE *t);	/* regexp/pcre */
int     table_lookup(TABLE *t, const char *key, const char **val, char *err, size_t errlen);

/* ---- a parameter's list of tables ----------------------------------- */

/*
 * Open every table of a parameter value ("hash:/a, inline:{b=c}" in
 * Postfix list syntax).  An empty value is an empty list (every lookup
 * returns TABLE_NOTFOUND).  NULL with err set when any table fails.
 */
TABLE_LIST *table_list_open(const char *param, const char *value, int flags,
			            char *err, size_t errlen);
TABLE_LIST *table_list_close(TABLE_LIST *l);	/* returns NULL */
int     table_list_count(const TABLE_LIST *l);

/*
 * Every result the list's regexp and pcre tables can return, as written
 * ($n groups as ${n}), with the table's name and the rule's line, for a
 * check at open time (a FILTER to a transport relayq does not have).
 * Other types are skipped.  Stops at and returns cb's first non-zero.
 */
int     table_list_results(TABLE_LIST *l,
			           int (*cb) (void *ctx, const char *where, int lineno, const char *result),
			           void *ctx);
int     table_list_has_async(const TABLE_LIST *l);	/* a socketmap, at any depth */
const char *table_list_param(const TABLE_LIST *l);

/* First table that has key, in order.  flags: TABLE_PARTIAL. */
int     table_list_find(TABLE_LIST *l, const char *key, int flags, const char **val,
			        char *err, size_t errlen);

/*
 * Domain maps (transport_maps, relay_domains, smtp_tls_policy_maps...).
 * Tries the domain, then its parents:
 *   TABLE_DOM_PARENT: "example.com" also matches sub.example.com
 *     (the parameter is in parent_domain_matches_subdomains);
 *   TABLE_DOM_DOTPARENT: ".example.com" matches sub.example.com
 *     (the parameter is not in that list);
 * A trailing dot on the domain is ignored.  Parents are partial keys.
 * *matched gets the key that matched when matched is not NULL (buffer of
 * at least matchedlen bytes).
 */
#define TABLE_DOM_PARENT	(1<<0)
#define TABLE_DOM_DOTPARENT	(1<<1)
int     table_find_domain(TABLE_LIST *l, const char *domain, int flags, const char **val,
			          char *err, size_t errlen);

/* Is param named in a parent_domain_matches_subdomains value? */
int     table_pdms(const char *pdms_value, const char *param);

/*
 * Address maps, Postfix's mail_addr_find(3) search order for
 * user+ext@domain with recipient_delimiter "+":
 *   TABLE_ADDR_FULL     user+ext@domain            (whole key: patterns too)
 *   TABLE_ADDR_NOEXT    user@domain                (extension stripped)
 *   TABLE_ADDR_LOCALPART user+ext, then user       (only when is_local(domain))
 *   TABLE_ADDR_AT_DOMAIN @domain
 *   TABLE_ADDR_DOMAIN   domain (then parents per TABLE_DOM_* in dom_flags)
 * TABLE_ADDR_DEFAULT is FULL|NOEXT|LOCALPART|AT_DOMAIN (virtual, canonical,
 * relay_recipient_maps, smtpd_sender_login_maps).  Keys are not split for
 * postmaster, MAILER-DAEMON, owner-*, *-request, nor when the localpart
 * would be empty (Postfix's split_addr).  *extp, when not NULL, gets the
 * unmatched extension ("+ext", malloc'ed; NULL when none) when the match
 * needed the stripped form.
 */
#define TABLE_ADDR_FULL		(1<<0)
#define TABLE_ADDR_NOEXT	(1<<1)
#define TABLE_ADDR_LOCALPART	(1<<2)
#define TABLE_ADDR_AT_DOMAIN	(1<<3)
#define TABLE_ADDR_DOMAIN	(1<<4)
#define TABLE_ADDR_DEFAULT	(TABLE_ADDR_FULL | TABLE_ADDR_NOEXT \
				 | TABLE_ADDR_LOCALPART | TABLE_ADDR_AT_DOMAIN)

typedef struct TABLE_ADDR_OPTS {
    int     strategy;			/* TABLE_ADDR_* */
    int     dom_flags;			/* TABLE_DOM_* for TABLE_ADDR_DOMAIN */
    const char *delimiter;		/* recipient_delimiter; NULL or "" none */
    int     (*is_local) (const char *domain, void *ctx);	/* NULL: none local */
    void   *ctx;
} TABLE_ADDR_OPTS;

int     table_find_addr(TABLE_LIST *l, const char *addr, const TABLE_ADDR_OPTS *opts,
			        const char **val, char **extp, char *err, size_t errlen);

/*
 * propagate_unmatched_extensions: result with ext inserted before the "@"
 * of the result address (or appended when it has none), as Postfix does
 * for canonical and virtual results.  Returns a malloc'ed string.
 */
char   *table_propagate_ext(const char *result, const char *ext);

/* ---- asynchronous lookups (socketmap on the event loop) ------------- */

/*
 * With an event base set, socketmap lookups made through the *_async
 * functions run on that loop, with Postfix's timeouts (connect and
 * request 100 s, idle connection closed after 10 s, connection
 * re-opened after 100 s).  The callback gets status, value (valid during
 * the call only) and an error text; it may run before the call returns.
 * The returned request (NULL when it already completed) can be cancelled
 * with table_cancel() until the callback has run: then it never runs.
 * The list must stay open while a request is in flight.  The async
 * address lookup does not report the stripped extension.
 */
void    table_set_event_base(struct event_base *base);

typedef void (*TABLE_CB) (int status, const char *val, const char *err, void *arg);

TABLE_REQ *table_list_find_async(TABLE_LIST *l, const char *key, int flags,
				         TABLE_CB cb, void *arg);
TABLE_REQ *table_find_domain_async(TABLE_LIST *l, const char *domain, int flags,
				           TABLE_CB cb, void *arg);
TABLE_REQ *table_find_addr_async(TABLE_LIST *l, const char *addr,
				         const TABLE_ADDR_OPTS *opts, TABLE_CB cb, void *arg);
void    table_cancel(TABLE_REQ *req);

/* Socketmap limits in seconds (Postfix's: 100, 10, 100); tests shorten them. */
void    table_set_sockmap_limits(int timeout, int idle, int ttl);

/* ---- reloading ------------------------------------------------------ */

/*
 * SIGHUP: re-read every open file table whose file changed.  Failures
 * keep the last good contents and log one warning each (log_warn with
 * service).  Returns the number of tables that failed.
 */
int     table_reload_all(const char *service);

/*
 * Where warnings go (reload failures, an indexed file older than its
 * source): by default log_warn() with service "master" (or the one given
 * to table_reload_all); the CLI sends them to stderr.
 */
void    table_set_warn(void (*fn) (const char *msg));

/* ---- building (postmap) ---------------------------------------------- */

/*
 * Build "type:file" (hash, btree, lmdb, cdb) from source (postmap's input
 * format; "-" is standard input; NULL is file itself) into file.db / .lmdb / .cdb in Postfix's
 * format: keys lower-cased when fold is set (postmap without -f), key and
 * value stored with their trailing NUL as Postfix does.  Malformed lines
 * and duplicate keys are skipped with a warning through warn(), as
 * postmap does.  0 ok, -1 error with err set.
 */
#define TABLE_BUILD_FOLD	(1<<0)	/* lower-case keys (postmap without -f) */
#define TABLE_BUILD_UPDATE	(1<<1)	/* postmap -i: add to the existing file */
int     table_build(const char *spec, const char *source, int flags,
		            void (*warn) (const char *msg), char *err, size_t errlen);

/*
 * postmap -s: every entry of an indexed table (hash, btree, lmdb, cdb), as
 * stored (without the trailing NUL).  cb returns 0 to go on.  0 ok, -1
 * error (err set; also for types that cannot be listed).
 */
int     table_dump(TABLE *t, int (*cb) (void *ctx, const char *key, const char *val),
		           void *ctx, char *err, size_t errlen);

#endif
