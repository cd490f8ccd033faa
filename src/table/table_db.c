/*
 * table_db - the indexed files Postfix's postmap(1) writes, read and
 * written in the same formats:
 *
 *   hash:/p, btree:/p   Berkeley DB (libdb 5.3, as Debian's Postfix), p.db
 *   lmdb:/p             LMDB, p.lmdb (MDB_NOSUBDIR, external locks)
 *   cdb:/p              tinycdb, p.cdb
 *
 * Keys and values: postmap stores hash, btree and lmdb entries with their
 * trailing NUL byte and cdb entries without; a lookup tries both forms, as
 * Postfix's readers do, and remembers which one the file uses.
 *
 * Locking: Postfix's postmap rewrites a .db or .lmdb file in place under
 * an exclusive flock(2); a lookup takes a shared lock without waiting and
 * reports a temporary error while the file is being rebuilt, rather than
 * read half a table or block the event loop.  relayq's own builds write a
 * new file and rename(2) it into place, so readers never see half a file
 * (cdb is built that way by Postfix too).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <db.h>
#include <lmdb.h>
#include <cdb.h>

#include "table/table_priv.h"

#define NUL_TRY1	1		/* with the trailing NUL */
#define NUL_TRY0	2		/* without */

/* Look key up in both forms; get(ctx, key, klen, &val, &vlen) is 1/0/-1. */
static int try_both(int *nul, void *ctx, const char *key,
		            int (*get) (void *, const char *, size_t, const void **, size_t *),
		            const void **v, size_t *vlen)
{
    size_t  klen = strlen(key);
    int     rc;

    if (*nul & NUL_TRY1) {
	if ((rc = get(ctx, key, klen + 1, v, vlen)) != 0) {
	    if (rc > 0)
		*nul = NUL_TRY1;
	    return (rc);
	}
    }
    if (*nul & NUL_TRY0) {
	if ((rc = get(ctx, key, klen, v, vlen)) != 0) {
	    if (rc > 0)
		*nul = NUL_TRY0;
	    return (rc);
	}
    }
    return (0);
}

/* Found value: strip one trailing NUL, copy into the table's buffer. */
static void db_result(TABLE *t, const void *v, size_t vlen, const char **val)
{
    if (vlen > 0 && ((const char *) v)[vlen - 1] == 0)
	vlen--;
    table_set_result(t, v, vlen, val);
}

static int shared_lock(int fd, const char *path, char *err, size_t errlen)
{
    if (flock(fd, LOCK_SH | LOCK_NB) < 0) {
	snprintf(err, errlen, "%s: %s", path, errno == EWOULDBLOCK ?
		 "locked by another process (being rebuilt?); try again later" :
		 strerror(errno));
	return (-1);
    }
    return (0);
}

/* ---- Berkeley DB --------------------------------------------------------- */

typedef struct BDB {
    DB     *db;
    int     fd;
    int     nul;
    char   *path;
    struct stat st;			/* when opened */
} BDB;

/*
 * A file rewritten in place after we opened it (postmap without our
 * rename) must not be read through the old handle: libdb and LMDB map
 * it, and a shorter file would fault.  Checked under the shared lock.
 */
static int same_file(int fd, const struct stat *st0, const char *path, char *err, size_t errlen)
{
    struct stat st;

    if (fd < 0)
	return (0);
    if (fstat(fd, &st) < 0 || st.st_size != st0->st_size
	|| st.st_mtim.tv_sec != st0->st_mtim.tv_sec || st.st_mtim.tv_nsec != st0->st_mtim.tv_nsec) {
	snprintf(err, errlen, "%s: changed while open; it is re-opened at the next lookup", path);
	return (-1);
    }
    return (0);
}

static char bdb_errbuf[512];

static void bdb_errcall(const DB_ENV *env, const char *pfx, const char *msg)
{
    snprintf(bdb_errbuf, sizeof(bdb_errbuf), "%s", msg);
}

static void bdb_free(void *ptr)
{
    BDB    *b = ptr;

    if (b == NULL)
	return;
    if (b->db)
	b->db->close(b->db, 0);
    free(b->path);
    free(b);
}

static void *bdb_load(TABLE *t, char *err, size_t errlen)
{
    BDB    *b = xcalloc(1, sizeof(*b));
    DBTYPE  type = strcmp(t->type, "btree") == 0 ? DB_BTREE : DB_HASH;
    int     rc;

    b->path = xasprintf("%s.db", t->name);
    b->nul = NUL_TRY1 | NUL_TRY0;
    /* Check first: libdb would create a missing file's directory entry messages. */
    if (access(b->path, R_OK) < 0) {
	snprintf(err, errlen, "%s: open database %s: %s", t->spec, b->path, strerror(errno));
	bdb_free(b);
	return (NULL);
    }
    if ((rc = db_create(&b->db, NULL, 0)) != 0) {
	snprintf(err, errlen, "%s: db_create: %s", t->spec, db_strerror(rc));
	b->db = NULL;
	bdb_free(b);
	return (NULL);
    }
    b->db->set_errcall(b->db, bdb_errcall);
    bdb_errbuf[0] = 0;
    if ((rc = b->db->open(b->db, NULL, b->path, NULL, type, DB_RDONLY, 0)) != 0) {
	snprintf(err, errlen, "%s: open database %s: %s%s%s", t->spec, b->path,
		 rc > 0 ? strerror(rc) : db_strerror(rc),
		 bdb_errbuf[0] ? ": " : "", bdb_errbuf);
	if (rc > 0)
	    errno = rc;
	bdb_free(b);
	return (NULL);
    }
    if (b->db->fd(b->db, &b->fd) != 0 || fstat(b->fd, &b->st) < 0)
	b->fd = -1;

    /* A truncated file: the meta page counts more pages than the file has. */
    {
	void   *sp = NULL;
	u_int32_t pages = 0, psize = 0;

	if (b->db->stat(b->db, NULL, &sp, DB_FAST_STAT) == 0 && sp) {
	    if (type == DB_BTREE) {
		pages = ((DB_BTREE_STAT *) sp)->bt_pagecnt;
		psize = ((DB_BTREE_STAT *) sp)->bt_pagesize;
	    } else {
		pages = ((DB_HASH_STAT *) sp)->hash_pagecnt;
		psize = ((DB_HASH_STAT *) sp)->hash_pagesize;
	    }
	    free(sp);
	}
	if (b->fd >= 0 && (off_t) pages * psize > b->st.st_size) {
	    snprintf(err, errlen, "%s: open database %s: truncated file (%u pages of %u bytes, "
		     "%lld bytes)", t->spec, b->path, pages, psize, (long long) b->st.st_size);
	    bdb_free(b);
	    return (NULL);
	}
    }
    return (b);
}

static DBT bdb_val;

static int bdb_get(void *ctx, const char *key, size_t klen, const void **v, size_t *vlen)
{
    BDB    *b = ctx;
    DBT     k;
    int     rc;

    memset(&k, 0, sizeof(k));
    memset(&bdb_val, 0, sizeof(bdb_val));
    k.data = UTIL_UNCONST(key);
    k.size = (u_int32_t) klen;
    if ((rc = b->db->get(b->db, NULL, &k, &bdb_val, 0)) == 0) {
	*v = bdb_val.data;
	*vlen = bdb_val.size;
	return (1);
    }
    if (rc == DB_NOTFOUND || rc == DB_KEYEMPTY)
	return (0);
    errno = rc;
    return (-1);
}

static int bdb_lookup(TABLE *t, void *priv, const char *key, const char **val,
		              char *err, size_t errlen)
{
    BDB    *b = priv;
    BUF     tmp = BUF_INIT;
    const void *v;
    size_t  vlen;
    int     rc;

    if (b->fd >= 0 && shared_lock(b->fd, b->path, err, errlen) < 0)
	return (TABLE_ERROR);
    if (same_file(b->fd, &b->st, b->path, err, errlen) < 0) {
	(void) flock(b->fd, LOCK_UN);
	return (TABLE_ERROR);
    }
    bdb_errbuf[0] = 0;
    rc = try_both(&b->nul, b, table_fold_key(t, key, &tmp), bdb_get, &v, &vlen);
    if (rc > 0)
	db_result(t, v, vlen, val);
    else if (rc < 0)
	snprintf(err, errlen, "%s: read database %s: %s%s%s", t->spec, b->path,
		 errno > 0 ? strerror(errno) : db_strerror(errno),
		 bdb_errbuf[0] ? ": " : "", bdb_errbuf);
    if (b->fd >= 0)
	(void) flock(b->fd, LOCK_UN);
    buf_free(&tmp);
    return (rc > 0 ? TABLE_FOUND : rc == 0 ? TABLE_NOTFOUND : TABLE_ERROR);
}

static int bdb_dump(TABLE *t, void *priv, int (*cb) (void *, const char *, const char *),
		            void *ctx, char *err, size_t errlen)
{
    BDB    *b = priv;
    DBC    *cur;
    DBT     k, v;
    int     rc;
    BUF     kb = BUF_INIT, vb = BUF_INIT;

    if ((rc = b->db->cursor(b->db, NULL, &cur, 0)) != 0) {
	snprintf(err, errlen, "%s: cursor: %s", t->spec, db_strerror(rc));
	return (-1);
    }
    memset(&k, 0, sizeof(k));
    memset(&v, 0, sizeof(v));
    while ((rc = cur->get(cur, &k, &v, DB_NEXT)) == 0) {
	buf_reset(&kb);
	buf_reset(&vb);
	buf_append(&kb, k.data, k.size && ((char *) k.data)[k.size - 1] == 0 ? k.size - 1 : k.size);
	buf_append(&vb, v.data, v.size && ((char *) v.data)[v.size - 1] == 0 ? v.size - 1 : v.size);
	if (cb(ctx, kb.data, vb.data) != 0)
	    break;
    }
    cur->close(cur);
    buf_free(&kb);
    buf_free(&vb);
    if (rc != 0 && rc != DB_NOTFOUND) {
	snprintf(err, errlen, "%s: read database %s: %s", t->spec, b->path, db_strerror(rc));
	return (-1);
    }
    return (0);
}

const TABLE_OPS table_ops_hash = {
    "hash", bdb_load, bdb_lookup, bdb_free, TABLE_OPS_FILE | TABLE_OPS_INDEXED, bdb_dump, NULL,
};

const TABLE_OPS table_ops_btree = {
    "btree", bdb_load, bdb_lookup, bdb_free, TABLE_OPS_FILE | TABLE_OPS_INDEXED, bdb_dump, NULL,
};

/* ---- LMDB ------------------------------------------------------------- */

typedef struct LDB {
    MDB_env *env;
    MDB_dbi dbi;
    int     fd;
    int     nul;
    char   *path;
    struct stat st;
} LDB;

static void ldb_free(void *ptr)
{
    LDB    *l = ptr;

    if (l == NULL)
	return;
    if (l->env)
	mdb_env_close(l->env);
    free(l->path);
    free(l);
}

static void *ldb_load(TABLE *t, char *err, size_t errlen)
{
    LDB    *l = xcalloc(1, sizeof(*l));
    MDB_txn *txn;
    int     rc;

    l->path = xasprintf("%s.lmdb", t->name);
    l->nul = NUL_TRY1 | NUL_TRY0;
    if (access(l->path, R_OK) < 0) {
	snprintf(err, errlen, "%s: open database %s: %s", t->spec, l->path, strerror(errno));
	ldb_free(l);
	return (NULL);
    }
    if ((rc = mdb_env_create(&l->env)) != 0
	|| (rc = mdb_env_open(l->env, l->path, MDB_NOSUBDIR | MDB_NOLOCK | MDB_RDONLY, 0644)) != 0
	|| (rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn)) != 0) {
	snprintf(err, errlen, "%s: open database %s: %s", t->spec, l->path, mdb_strerror(rc));
	if (rc > 0)
	    errno = rc;
	ldb_free(l);
	return (NULL);
    }
    if ((rc = mdb_dbi_open(txn, NULL, 0, &l->dbi)) != 0) {
	mdb_txn_abort(txn);
	snprintf(err, errlen, "%s: open database %s: %s", t->spec, l->path, mdb_strerror(rc));
	ldb_free(l);
	return (NULL);
    }
    mdb_txn_commit(txn);
    if (mdb_env_get_fd(l->env, &l->fd) != 0 || fstat(l->fd, &l->st) < 0)
	l->fd = -1;

    /* LMDB maps the file: pages past its end would fault (SIGBUS). */
    {
	MDB_envinfo info;
	MDB_stat ms;

	if (l->fd < 0 || mdb_env_info(l->env, &info) != 0 || mdb_env_stat(l->env, &ms) != 0
	    || (off_t) (info.me_last_pgno + 1) * ms.ms_psize > l->st.st_size) {
	    snprintf(err, errlen, "%s: open database %s: truncated file", t->spec, l->path);
	    ldb_free(l);
	    return (NULL);
	}
    }
    return (l);
}

typedef struct LDB_GET {
    LDB    *l;
    MDB_txn *txn;
} LDB_GET;

static int ldb_get(void *ctx, const char *key, size_t klen, const void **v, size_t *vlen)
{
    LDB_GET *g = ctx;
    MDB_val k = {klen, UTIL_UNCONST(key)}, d;
    int     rc;

    if ((rc = mdb_get(g->txn, g->l->dbi, &k, &d)) == 0) {
	*v = d.mv_data;
	*vlen = d.mv_size;
	return (1);
    }
    if (rc == MDB_NOTFOUND)
	return (0);
    errno = rc;
    return (-1);
}

static int ldb_lookup(TABLE *t, void *priv, const char *key, const char **val,
		              char *err, size_t errlen)
{
    LDB    *l = priv;
    LDB_GET g = {l, NULL};
    BUF     tmp = BUF_INIT;
    const void *v;
    size_t  vlen;
    int     rc;

    if (l->fd >= 0 && shared_lock(l->fd, l->path, err, errlen) < 0)
	return (TABLE_ERROR);
    if (same_file(l->fd, &l->st, l->path, err, errlen) < 0) {
	(void) flock(l->fd, LOCK_UN);
	return (TABLE_ERROR);
    }
    if ((rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &g.txn)) != 0) {
	snprintf(err, errlen, "%s: read database %s: %s", t->spec, l->path, mdb_strerror(rc));
	rc = -1;
    } else {
	if ((rc = try_both(&l->nul, &g, table_fold_key(t, key, &tmp), ldb_get, &v, &vlen)) > 0)
	    db_result(t, v, vlen, val);
	else if (rc < 0)
	    snprintf(err, errlen, "%s: read database %s: %s", t->spec, l->path,
		     mdb_strerror(errno));
	mdb_txn_abort(g.txn);
    }
    if (l->fd >= 0)
	(void) flock(l->fd, LOCK_UN);
    buf_free(&tmp);
    return (rc > 0 ? TABLE_FOUND : rc == 0 ? TABLE_NOTFOUND : TABLE_ERROR);
}

static int ldb_dump(TABLE *t, void *priv, int (*cb) (void *, const char *, const char *),
		            void *ctx, char *err, size_t errlen)
{
    LDB    *l = priv;
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    BUF     kb = BUF_INIT, vb = BUF_INIT;
    int     rc;

    if ((rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn)) != 0
	|| (rc = mdb_cursor_open(txn, l->dbi, &cur)) != 0) {
	snprintf(err, errlen, "%s: %s", t->spec, mdb_strerror(rc));
	return (-1);
    }
    while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
	buf_reset(&kb);
	buf_reset(&vb);
	buf_append(&kb, k.mv_data, k.mv_size && ((char *) k.mv_data)[k.mv_size - 1] == 0 ?
		   k.mv_size - 1 : k.mv_size);
	buf_append(&vb, v.mv_data, v.mv_size && ((char *) v.mv_data)[v.mv_size - 1] == 0 ?
		   v.mv_size - 1 : v.mv_size);
	if (cb(ctx, kb.data, vb.data) != 0)
	    break;
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    buf_free(&kb);
    buf_free(&vb);
    if (rc != 0 && rc != MDB_NOTFOUND) {
	snprintf(err, errlen, "%s: %s", t->spec, mdb_strerror(rc));
	return (-1);
    }
    return (0);
}

const TABLE_OPS table_ops_lmdb = {
    "lmdb", ldb_load, ldb_lookup, ldb_free, TABLE_OPS_FILE | TABLE_OPS_INDEXED, ldb_dump, NULL,
};

/* ---- cdb -------------------------------------------------------------- */

typedef struct CDB {
    struct cdb cdb;
    int     fd;
    int     nul;
    char   *path;
} CDB;

static void cdb_table_free(void *ptr)
{
    CDB    *c = ptr;

    if (c == NULL)
	return;
    if (c->fd >= 0) {
	cdb_free(&c->cdb);
	close(c->fd);
    }
    free(c->path);
    free(c);
}

static void *cdb_load(TABLE *t, char *err, size_t errlen)
{
    CDB    *c = xcalloc(1, sizeof(*c));
    struct stat st;

    c->path = xasprintf("%s.cdb", t->name);
    c->nul = NUL_TRY1 | NUL_TRY0;
    if ((c->fd = open(c->path, O_RDONLY | O_CLOEXEC)) < 0) {
	snprintf(err, errlen, "%s: open database %s: %s", t->spec, c->path, strerror(errno));
	cdb_table_free(c);
	return (NULL);
    }
    /* tinycdb maps the file; a file shorter than the 2048-byte header is not a cdb. */
    if (fstat(c->fd, &st) < 0 || st.st_size < 2048 || cdb_init(&c->cdb, c->fd) < 0) {
	snprintf(err, errlen, "%s: open database %s: %s", t->spec, c->path,
		 st.st_size < 2048 ? "not a cdb file (too short)" : strerror(errno));
	close(c->fd);
	c->fd = -1;
	cdb_table_free(c);
	return (NULL);
    }
    return (c);
}

static int cdb_get1(void *ctx, const char *key, size_t klen, const void **v, size_t *vlen)
{
    CDB    *c = ctx;
    int     rc = cdb_find(&c->cdb, key, (unsigned) klen);

    if (rc > 0) {
	if ((*v = cdb_get(&c->cdb, cdb_datalen(&c->cdb), cdb_datapos(&c->cdb))) == NULL) {
	    errno = EPROTO;
	    return (-1);
	}
	*vlen = cdb_datalen(&c->cdb);
	return (1);
    }
    if (rc < 0)
	errno = errno ? errno : EPROTO;
    return (rc);
}

static int cdb_lookup(TABLE *t, void *priv, const char *key, const char **val,
		              char *err, size_t errlen)
{
    CDB    *c = priv;
    BUF     tmp = BUF_INIT;
    const void *v;
    size_t  vlen;
    int     rc;

    rc = try_both(&c->nul, c, table_fold_key(t, key, &tmp), cdb_get1, &v, &vlen);
    if (rc > 0)
	db_result(t, v, vlen, val);
    else if (rc < 0)
	snprintf(err, errlen, "%s: read database %s: %s", t->spec, c->path,
		 errno == EPROTO ? "corrupt cdb file" : strerror(errno));
    buf_free(&tmp);
    return (rc > 0 ? TABLE_FOUND : rc == 0 ? TABLE_NOTFOUND : TABLE_ERROR);
}

static int cdb_dump(TABLE *t, void *priv, int (*cb) (void *, const char *, const char *),
		            void *ctx, char *err, size_t errlen)
{
    CDB    *c = priv;
    unsigned pos;
    int     rc;
    BUF     kb = BUF_INIT, vb = BUF_INIT;

    cdb_seqinit(&pos, &c->cdb);
    while ((rc = cdb_seqnext(&pos, &c->cdb)) > 0) {
	const char *k = cdb_getkey(&c->cdb), *v = cdb_getdata(&c->cdb);
	unsigned kl = cdb_keylen(&c->cdb), vl = cdb_datalen(&c->cdb);

	if (k == NULL || v == NULL) {
	    rc = -1;
	    break;
	}
	buf_reset(&kb);
	buf_reset(&vb);
	buf_append(&kb, k, kl && k[kl - 1] == 0 ? kl - 1 : kl);
	buf_append(&vb, v, vl && v[vl - 1] == 0 ? vl - 1 : vl);
	if (cb(ctx, kb.data, vb.data) != 0)
	    break;
    }
    buf_free(&kb);
    buf_free(&vb);
    if (rc < 0) {
	snprintf(err, errlen, "%s: read database %s: corrupt cdb file", t->spec, c->path);
	return (-1);
    }
    return (0);
}

const TABLE_OPS table_ops_cdb = {
    "cdb", cdb_load, cdb_lookup, cdb_table_free, TABLE_OPS_FILE | TABLE_OPS_INDEXED, cdb_dump, NULL,
};

/* ---- building (postmap) ------------------------------------------------ */

typedef struct BUILD {
    const char *type;
    const char *spec;
    int     flags;
    void    (*warn) (const char *);
    char   *err;
    size_t  errlen;
    int     failed;
    /* one of: */
    DB     *db;
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    struct cdb_make cm;
    int     fd;
    int     map_full;
} BUILD;

static void build_warnf(BUILD *b, const char *fmt, const char *a, int line, const char *k)
{
    char    msg[1024];

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(msg, sizeof(msg), fmt, a, line, k);	/* a fixed text of this file */
#pragma GCC diagnostic pop
    if (b->warn)
	b->warn(msg);
}

static void build_srcwarn(void *ctx, const char *msg, int skipped)
{
    BUILD  *b = ctx;

    if (b->warn)
	b->warn(msg);
}

static int build_add(void *ctx, const char *key, const char *val, int lineno)
{
    BUILD  *b = ctx;
    char   *k = xstrdup(key);
    size_t  klen, vlen = strlen(val);
    int     nul = strcmp(b->type, "cdb") != 0;	/* as Postfix's postmap */
    int     rc = 0, dup = 0;

    if (b->flags & TABLE_BUILD_FOLD)
	str_lower(k);
    klen = strlen(k) + nul;
    if (b->db) {
	DBT     dk, dv;

	memset(&dk, 0, sizeof(dk));
	memset(&dv, 0, sizeof(dv));
	dk.data = k;
	dk.size = (u_int32_t) klen;
	dv.data = UTIL_UNCONST(val);
	dv.size = (u_int32_t) (vlen + nul);
	if ((rc = b->db->put(b->db, NULL, &dk, &dv, DB_NOOVERWRITE)) == DB_KEYEXIST)
	    dup = 1, rc = 0;
	else if (rc != 0)
	    snprintf(b->err, b->errlen, "%s: write error: %s", b->spec, db_strerror(rc));
    } else if (b->env) {
	MDB_val mk = {klen, k}, mv = {vlen + nul, UTIL_UNCONST(val)};

	if ((rc = mdb_put(b->txn, b->dbi, &mk, &mv, MDB_NOOVERWRITE)) == MDB_KEYEXIST)
	    dup = 1, rc = 0;
	else if (rc == MDB_MAP_FULL)
	    b->map_full = 1;
	else if (rc != 0)
	    snprintf(b->err, b->errlen, "%s: write error: %s", b->spec, mdb_strerror(rc));
    } else {
	if ((rc = cdb_make_put(&b->cm, k, (unsigned) klen, val, (unsigned) vlen, CDB_PUT_INSERT)) > 0)
	    dup = 1, rc = 0;
	else if (rc < 0)
	    snprintf(b->err, b->errlen, "%s: write error: %s", b->spec, strerror(errno));
    }
    if (dup)
	build_warnf(b, "%s, line %d: duplicate entry: \"%s\"", b->spec, lineno, k);
    free(k);
    if (rc != 0)
	b->failed = 1;
    return (rc != 0 ? -1 : 0);
}

int     table_build(const char *spec, const char *source, int flags,
		            void (*warn) (const char *msg), char *err, size_t errlen)
{
    const char *colon = strchr(spec, ':');
    char   *type, *path, *out, *tmp;
    BUILD   b;
    int     rc = -1, update = (flags & TABLE_BUILD_UPDATE) != 0;
    struct stat st;
    size_t  mapsize = 16 << 20;

    if (colon == NULL) {
	type = xstrdup("hash");
	path = xstrdup(spec);
    } else {
	type = xstrndup(spec, colon - spec);
	path = xstrdup(colon + 1);
    }
    str_lower(type);
    if (strcmp(type, "hash") && strcmp(type, "btree") && strcmp(type, "lmdb") && strcmp(type, "cdb")) {
	snprintf(err, errlen, "%s: cannot build a table of type \"%s\" (postmap builds hash, "
		 "btree, lmdb and cdb)", spec, type);
	free(type);
	free(path);
	return (-1);
    }
    if (update && strcmp(type, "cdb") == 0) {
	snprintf(err, errlen, "%s: cdb tables cannot be updated in place; rebuild instead", spec);
	free(type);
	free(path);
	return (-1);
    }
    if (source == NULL)
	source = path;
    out = xasprintf("%s.%s", path, strcmp(type, "hash") == 0 || strcmp(type, "btree") == 0 ?
		    "db" : type);
    tmp = update ? xstrdup(out) : xasprintf("%s.tmp.%ld", out, (long) getpid());
    if (stat(source, &st) == 0 && strcmp(source, "-") != 0)
	mapsize = (size_t) st.st_size * 8 > mapsize ? (size_t) st.st_size * 8 : mapsize;

again:
    memset(&b, 0, sizeof(b));
    b.type = type;
    b.spec = spec;
    b.flags = flags;
    b.warn = warn;
    b.err = err;
    b.errlen = errlen;
    b.fd = -1;
    if (!update)
	unlink(tmp);
    if (strcmp(type, "cdb") == 0) {
	if ((b.fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0
	    || cdb_make_start(&b.cm, b.fd) < 0) {
	    snprintf(err, errlen, "%s: create %s: %s", spec, tmp, strerror(errno));
	    goto out;
	}
    } else if (strcmp(type, "lmdb") == 0) {
	int     lrc;

	if ((lrc = mdb_env_create(&b.env)) != 0
	    || (lrc = mdb_env_set_mapsize(b.env, mapsize)) != 0
	    || (lrc = mdb_env_open(b.env, tmp, MDB_NOSUBDIR | MDB_NOLOCK, 0644)) != 0
	    || (lrc = mdb_txn_begin(b.env, NULL, 0, &b.txn)) != 0
	    || (lrc = mdb_dbi_open(b.txn, NULL, 0, &b.dbi)) != 0) {
	    snprintf(err, errlen, "%s: create %s: %s", spec, tmp, mdb_strerror(lrc));
	    goto out;
	}
	if (mdb_env_get_fd(b.env, &b.fd) == 0 && update && flock(b.fd, LOCK_EX | LOCK_NB) < 0) {
	    snprintf(err, errlen, "%s: lock %s: %s", spec, tmp, strerror(errno));
	    b.fd = -1;
	    goto out;
	}
	b.fd = -1;
    } else {
	int     drc;

	if ((drc = db_create(&b.db, NULL, 0)) != 0
	    || (drc = b.db->open(b.db, NULL, tmp, NULL,
				 strcmp(type, "btree") == 0 ? DB_BTREE : DB_HASH,
				 DB_CREATE | (update ? 0 : DB_EXCL), 0644)) != 0) {
	    snprintf(err, errlen, "%s: create %s: %s", spec, tmp,
		     drc > 0 ? strerror(drc) : db_strerror(drc));
	    goto out;
	}
    }
    if (table_read_source(source, build_add, &b, build_srcwarn, err, errlen) < 0 || b.failed)
	goto out;
    if (b.map_full) {
	mdb_txn_abort(b.txn);
	b.txn = NULL;
	mdb_env_close(b.env);
	b.env = NULL;
	if (update || strcmp(source, "-") == 0) {
	    snprintf(err, errlen, "%s: database is full", spec);
	    goto out;
	}
	mapsize *= 4;
	goto again;
    }
    /* Commit, flush, then put the new file in place. */
    if (b.db) {
	int     drc = b.db->close(b.db, 0);

	b.db = NULL;
	if (drc != 0) {
	    snprintf(err, errlen, "%s: close %s: %s", spec, tmp, db_strerror(drc));
	    goto out;
	}
    } else if (b.env) {
	int     lrc = mdb_txn_commit(b.txn);

	b.txn = NULL;
	if (lrc == 0)
	    lrc = mdb_env_sync(b.env, 1);
	mdb_env_close(b.env);
	b.env = NULL;
	if (lrc != 0) {
	    snprintf(err, errlen, "%s: commit %s: %s", spec, tmp, mdb_strerror(lrc));
	    goto out;
	}
    } else {
	if (cdb_make_finish(&b.cm) < 0 || fsync(b.fd) < 0) {
	    snprintf(err, errlen, "%s: write %s: %s", spec, tmp, strerror(errno));
	    goto out;
	}
    }
    /* As postmap run by root: the table belongs to the source file's owner. */
    if (geteuid() == 0 && strcmp(source, "-") != 0 && stat(source, &st) == 0)
	if (chown(tmp, st.st_uid, st.st_gid) < 0) {
	    snprintf(err, errlen, "%s: chown %s: %s", spec, tmp, strerror(errno));
	    goto out;
	}
    if (!update && rename(tmp, out) < 0) {
	snprintf(err, errlen, "%s: rename %s to %s: %s", spec, tmp, out, strerror(errno));
	goto out;
    }
    rc = 0;

out:
    if (b.db)
	b.db->close(b.db, 0);
    if (b.txn)
	mdb_txn_abort(b.txn);
    if (b.env)
	mdb_env_close(b.env);
    if (b.fd >= 0)
	close(b.fd);
    if (rc < 0 && !update)
	unlink(tmp);
    free(tmp);
    free(out);
    free(type);
    free(path);
    return (rc);
}
