/*
 * table_priv - what the table types share inside src/table.  Not for
 * other modules: they use table.h.
 */
#ifndef TABLE_PRIV_H_INCLUDED
#define TABLE_PRIV_H_INCLUDED

#include <sys/types.h>
#include <time.h>

#include "util/util.h"
#include "table/table.h"

/*
 * One table type.  load() builds the contents (priv) from t->name and
 * returns NULL with err set on failure, so a reload can keep the old
 * contents; lookup() reads them.  path() gives the file whose change
 * triggers a reload (NULL: none).
 */
typedef struct TABLE_OPS {
    const char *type;
    void   *(*load) (TABLE *t, char *err, size_t errlen);
    int     (*lookup) (TABLE *t, void *priv, const char *key, const char **val,
		               char *err, size_t errlen);
    void    (*free) (void *priv);
    int     flags;
    /* Optional: every entry, as postmap -s (NULL: not supported). */
    int     (*dump) (TABLE *t, void *priv, int (*cb) (void *, const char *, const char *),
		             void *ctx, char *err, size_t errlen);
    /* Optional: every result a pattern table can return, with its line. */
    int     (*results) (TABLE *t, void *priv, int (*cb) (void *, int, const char *), void *ctx);
} TABLE_OPS;

#define TABLE_OPS_PATTERN	(1<<0)	/* regexp, pcre */
#define TABLE_OPS_FILE		(1<<1)	/* name is a source file: reload on change */
#define TABLE_OPS_INDEXED	(1<<2)	/* the file is name + suffix; check mtime at lookup */
#define TABLE_OPS_ASYNC		(1<<3)	/* socketmap: has lookup_async */
#define TABLE_OPS_SINGLETON	(1<<4)	/* never shared (no registry) */

struct TABLE {
    const TABLE_OPS *ops;
    char   *spec;			/* "type:name" */
    char   *type;
    char   *name;			/* after "type:" */
    char   *param;			/* for messages; may be NULL */
    char   *watch;			/* file whose mtime/size/inode we watch */
    int     flags;			/* TABLE_FLAG_* */
    int     refs;
    void   *priv;
    BUF     result;			/* storage for a found value */
    struct timespec mtime;
    off_t   size;
    ino_t   ino;
    int64_t last_check;			/* monotonic us: file last looked at */
    uid_t   load_euid;
    TABLE  *next;			/* registry */
};

/* The type table (table.c) and the types. */
extern const TABLE_OPS table_ops_inline, table_ops_texthash, table_ops_static;
extern const TABLE_OPS table_ops_hash, table_ops_btree, table_ops_lmdb, table_ops_cdb;
extern const TABLE_OPS table_ops_regexp, table_ops_pcre;
extern const TABLE_OPS table_ops_socketmap, table_ops_unionmap, table_ops_pipemap;

/* Set t->result to [s, s+len) and point *val at it. */
void    table_set_result(TABLE *t, const char *s, size_t len, const char **val);

/* Fold key into a buffer when t has TABLE_FLAG_FOLD; returns the key to use. */
const char *table_fold_key(const TABLE *t, const char *key, BUF *tmp);

/*
 * postmap(1)'s source format, shared by texthash and table_build: logical
 * lines (an indented line continues the previous one; # comment and blank
 * lines are skipped), key up to the first unquoted white space, value
 * trimmed.  Malformed lines are reported through warn (name, line, text;
 * skipped = 1) and skipped, as postmap does; advisories have skipped = 0.  cb returns 0 to go on, -1 to stop.
 */
typedef int (*TABLE_SRC_CB) (void *ctx, const char *key, const char *val, int lineno);
int     table_read_source(const char *path, TABLE_SRC_CB cb, void *ctx,
			          void (*warn) (void *ctx, const char *msg, int skipped),
			          char *err, size_t errlen);

/* The same logical lines, whole (regexp, pcre). */
typedef int (*TABLE_LINE_CB) (void *ctx, char *line, size_t len, int lineno);
int     table_read_lines(const char *path, TABLE_LINE_CB cb, void *ctx,
			         void (*warn) (void *ctx, const char *msg, int skipped),
			         char *err, size_t errlen);

/* Split the body of name = "{ a, { b c }, d }" into elements. */
int     table_split_braced(TABLE *t, int (*cb) (void *, const char *, size_t), void *ctx,
			           char *err, size_t errlen);

/* A warning through table_set_warn's hook or the log. */
void    table_warnf(const char *fmt, ...) UTIL_PRINTF(1, 2);

/* A string hash table (texthash, inline): first entry for a key wins. */
typedef struct TABLE_HT TABLE_HT;
TABLE_HT *table_ht_create(void);
int     table_ht_add(TABLE_HT *h, const char *key, const char *val);	/* 0 dup */
const char *table_ht_get(const TABLE_HT *h, const char *key);
void    table_ht_free(void *h);

/* Socketmap (table_sockmap.c). */
typedef void (*TABLE_SOCK_CB) (int status, const char *val, const char *err, void *arg);
void   *table_sockmap_async(TABLE *t, const char *key, TABLE_SOCK_CB cb, void *arg);
void    table_sockmap_cancel(void *op);
extern struct event_base *table_event_base;

/* unionmap / pipemap members (table.c). */
int     table_is_async(const TABLE *t);

#endif
