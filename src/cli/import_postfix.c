/*
 * import_postfix - "relayq import-postfix [SRCDIR] [--to DESTDIR]
 * [--dry-run] [--force]": a relayq configuration directory from a Postfix
 * one.  The conversion is src/config/pfimport.c; this file does the files,
 * as root most of the time, so:
 *
 *  - source files are read with a bound (regular files only, no FIFOs or
 *    devices, at most PFI_MAX_FILE bytes for main.cf/master.cf and
 *    IMP_MAX_TABLE for a table);
 *  - a table file is copied only when its real path (symbolic links and
 *    ".." resolved) lies inside SRCDIR; any other is referenced where it
 *    is, with a note, so a main.cf cannot make root copy /etc/shadow into
 *    a directory of its choosing;
 *  - DESTDIR must not be a symbolic link nor writable by other users; it
 *    is opened once (O_NOFOLLOW) and everything is done relative to that
 *    descriptor: the files are written into a fresh private directory
 *    inside it, checked there (relayq.cf loads, every listener resolves),
 *    and only then renamed into place, relayq.cf last, so a failure leaves
 *    DESTDIR as it was;
 *  - an existing relayq.cf, master.cf or table file is replaced only with
 *    --force (rename replaces a symbolic link itself, never its target);
 *  - copied tables and the .db/.lmdb/.cdb files built from them keep the
 *    source file's mode and owner (sasl_passwd stays 0600 root).
 *
 * Exit: 0 imported (notes printed), 1 could not import or the result does
 * not pass "relayq config --check", 2 usage.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/master.h"
#include "config/pfimport.h"
#include "table/table.h"
#include "util/util.h"

#define IMP_MAX_TABLE	(256 << 20)		/* bytes of one table source */
#define IMP_STAGE_PREFIX ".import-postfix."

/* One table file to copy into DESTDIR (and maybe build). */
typedef struct IMP_TABLE {
    char   *src;			/* real path of the source file */
    char   *name;			/* file name in DESTDIR */
    int     build;			/* bitmask: 1 hash/btree (.db), 2 lmdb, 4 cdb */
    char   *btype;			/* "hash" or "btree" for .db */
    struct stat st;
} IMP_TABLE;

typedef struct IMP {
    PFIMPORT *pf;
    char   *srcdir;			/* real path */
    const char *destdir;		/* as given */
    IMP_TABLE *t;
    int     nt;
    int     dry_run;
} IMP;

static char *imp_read_st(const char *, int, struct stat *, size_t, size_t *, int, char *, size_t);

static void imp_usage(void)
{
    fprintf(stderr, "usage: relayq import-postfix [SRCDIR (default /etc/postfix)] [--to DESTDIR] "
	    "[--dry-run] [--force]\n");
    exit(2);
}

/* A whole regular file, at most max bytes; NULL with err set. */
static char *imp_read(const char *path, size_t max, size_t *len, int missing_ok,
		              char *err, size_t errlen)
{
    return (imp_read_st(path, 0, NULL, max, len, missing_ok, err, errlen));
}

/* The same, with extra open flags, and the opened file's status in *stp. */
static char *imp_read_st(const char *path, int flags, struct stat *stp, size_t max, size_t *len,
			         int missing_ok, char *err, size_t errlen)
{
    struct stat st;
    int     fd;
    char   *buf;
    size_t  got = 0;

    *err = 0;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | flags)) < 0) {
	if (!(missing_ok && errno == ENOENT))
	    snprintf(err, errlen, "open %s: %s", path, strerror(errno));
	return (NULL);
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
	snprintf(err, errlen, "%s: not a regular file", path);
	close(fd);
	return (NULL);
    }
    if ((size_t) st.st_size > max) {
	snprintf(err, errlen, "%s: %lld bytes: larger than the %zu bytes a Postfix file may have here",
		 path, (long long) st.st_size, max);
	close(fd);
	return (NULL);
    }
    buf = xmalloc((size_t) st.st_size + 1);
    for (;;) {
	ssize_t n = read(fd, buf + got, (size_t) st.st_size + 1 - got);

	if (n < 0) {
	    snprintf(err, errlen, "read %s: %s", path, strerror(errno));
	    free(buf);
	    close(fd);
	    return (NULL);
	}
	if (n == 0)
	    break;
	got += (size_t) n;
	if (got > (size_t) st.st_size) {	/* growing while we read */
	    snprintf(err, errlen, "%s: changed while being read", path);
	    free(buf);
	    close(fd);
	    return (NULL);
	}
    }
    close(fd);
    buf[got] = 0;
    *len = got;
    if (stp)
	*stp = st;
    return (buf);
}

/* ---- tables ---- */

/* A file name in DESTDIR for src, unique among the tables and our own files. */
static char *imp_table_name(IMP *im, const char *src)
{
    char   *base = xstrdup(strrchr(src, '/') ? strrchr(src, '/') + 1 : src);
    char   *name;

    /* The name goes into relayq.cf: nothing there may end the line or split the list. */
    for (char *cp = base; *cp; cp++)
	if (!isalnum((unsigned char) *cp) && !strchr("._+-", *cp))
	    *cp = '_';
    name = xstrdup(base);

    for (int n = 2;; n++) {
	int     clash = strcmp(name, "relayq.cf") == 0 || strcmp(name, "master.cf") == 0
	    || name[0] == '.';

	for (int i = 0; i < im->nt && !clash; i++)
	    clash = strcmp(im->t[i].name, name) == 0;
	if (!clash) {
	    free(base);
	    return (name);
	}
	free(name);
	name = xasprintf("%s%s.%d", base[0] == '.' ? "_" : "", base, n);
    }
}

static char *imp_spec(void *ctx, const char *where, const char *param, const char *spec, char **why);

/* unionmap:{...}, pipemap:{...}: the tables inside. */
static char *imp_nested(IMP *im, const char *where, const char *param, const char *type,
			        const char *rest, char **why)
{
    size_t  rl = strlen(rest);
    char   *inner, *mapped, *res;

    if (rl < 2 || rest[0] != '{' || rest[rl - 1] != '}')
	return (xasprintf("%s:%s", type, rest));
    inner = xstrndup(rest + 1, rl - 2);
    mapped = pfimport_map_specs(where, param, inner, imp_spec, im, why);
    free(inner);
    if (mapped == NULL)
	return (NULL);
    res = xasprintf("%s:{%s}", type, mapped);
    free(mapped);
    return (res);
}

/*
 * One type:name of a carried value: indexed and pattern files inside
 * SRCDIR are copied (and rebuilt), everything else stays as written.
 */
static char *imp_spec(void *ctx, const char *where, const char *param, const char *spec, char **why)
{
    IMP    *im = ctx;
    const char *colon = strchr(spec, ':');
    char   *type = xstrndup(spec, (size_t) (colon - spec));
    const char *rest = colon + 1;
    int     indexed = 0, file = 0, k;
    char    real[PATH_MAX];
    char   *res = NULL;
    struct stat st;
    size_t  sl = strlen(im->srcdir);

    str_lower(type);
    if (strcmp(type, "proxy") == 0) {
	/* proxymap(8) only brokers access: relayq opens the table itself. */
	pfimport_note(im->pf, "translated: %s: %s: %s becomes %s (relayq has no proxymap)",
		      where, param, spec, rest);
	free(type);
	if (strchr(rest, ':') && pfimport_table_type(rest, (size_t) (strchr(rest, ':') - rest)))
	    return (imp_spec(ctx, where, param, rest, why));
	return (xstrdup(rest));
    }
    if (strcmp(type, "unionmap") == 0 || strcmp(type, "pipemap") == 0) {
	res = imp_nested(im, where, param, type, rest, why);
	free(type);
	return (res);
    }
    if (!table_type_known(spec)) {
	*why = xasprintf("%s uses a %s: table, which relayq does not support", spec, type);
	free(type);
	return (NULL);
    }
    indexed = strcmp(type, "hash") == 0 || strcmp(type, "btree") == 0
	|| strcmp(type, "lmdb") == 0 || strcmp(type, "cdb") == 0;
    file = indexed || ((strcmp(type, "regexp") == 0 || strcmp(type, "pcre") == 0
			|| strcmp(type, "texthash") == 0) && rest[0] != '{');
    if (!file) {				/* inline, static, socketmap, regexp:{...} */
	free(type);
	return (xstrdup(spec));
    }
    if (strchr(rest, '$') || rest[0] != '/') {
	pfimport_note(im->pf, "note: %s: %s: %s: not an absolute file name: referenced as written, "
		      "not copied", where, param, spec);
	free(type);
	return (xstrdup(spec));
    }
    if (realpath(rest, real) == NULL) {
	/* No source: an indexed table may still exist as Postfix built it. */
	pfimport_note(im->pf, "note: %s: %s: %s: %s: referenced as written, not copied",
		      where, param, spec, strerror(errno));
	free(type);
	return (xstrdup(spec));
    }
    if (strncmp(real, im->srcdir, sl) != 0 || real[sl] != '/') {
	pfimport_note(im->pf, "note: %s: %s: %s is outside %s: referenced in place (relayq reads "
		      "Postfix's table files), not copied", where, param, spec, im->srcdir);
	free(type);
	return (xstrdup(spec));
    }
    if (stat(real, &st) < 0 || !S_ISREG(st.st_mode)) {
	*why = xasprintf("%s is not a regular file", spec);
	free(type);
	return (NULL);
    }
    if (st.st_nlink != 1) {
	/* A hard link may be a file from anywhere on the file system. */
	pfimport_note(im->pf, "note: %s: %s: %s has %lu hard links: referenced in place, not copied",
		      where, param, spec, (unsigned long) st.st_nlink);
	free(type);
	return (xstrdup(spec));
    }
    for (k = 0; k < im->nt; k++)
	if (strcmp(im->t[k].src, real) == 0)
	    break;
    if (k == im->nt) {
	im->t = xrealloc(im->t, sizeof(*im->t) * (size_t) (im->nt + 1));
	memset(&im->t[k], 0, sizeof(im->t[k]));
	im->t[k].src = xstrdup(real);
	im->t[k].name = imp_table_name(im, real);
	im->t[k].st = st;
	im->nt++;
    }
    if (strcmp(type, "hash") == 0 || strcmp(type, "btree") == 0) {
	if (im->t[k].btype && strcmp(im->t[k].btype, type) != 0) {
	    *why = xasprintf("%s: the same file is also used as %s:, and both build %s.db",
			     spec, im->t[k].btype, rest);
	    free(type);
	    return (NULL);
	}
	im->t[k].build |= 1;
	free(im->t[k].btype);
	im->t[k].btype = xstrdup(type);
    } else if (strcmp(type, "lmdb") == 0) {
	im->t[k].build |= 2;
    } else if (strcmp(type, "cdb") == 0) {
	im->t[k].build |= 4;
    }
    res = xasprintf("%s:%s/%s", type, im->destdir, im->t[k].name);
    free(type);
    return (res);
}

/* Copy a table into the staging directory with the source's mode and owner. */
static int imp_copy(int sfd, const char *stage, const IMP_TABLE *t, char *err, size_t errlen)
{
    char   *data;
    size_t  len = 0, off = 0;
    int     fd;

    struct stat st;

    /*
     * The file vetted in imp_spec(), not one swapped in since: no link in
     * the last component, and the same inode (a directory on the way that
     * became a link leads to another one).
     */
    if ((data = imp_read_st(t->src, O_NOFOLLOW, &st, IMP_MAX_TABLE, &len, 0, err, errlen)) == NULL)
	return (-1);
    if (st.st_dev != t->st.st_dev || st.st_ino != t->st.st_ino || st.st_nlink != 1) {
	snprintf(err, errlen, "%s changed while being imported: refusing to copy it", t->src);
	free(data);
	return (-1);
    }
    if ((fd = openat(sfd, t->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
	snprintf(err, errlen, "create %s/%s: %s", stage, t->name, strerror(errno));
	free(data);
	return (-1);
    }
    while (off < len) {
	ssize_t n = write(fd, data + off, len - off);

	if (n < 0) {
	    snprintf(err, errlen, "write %s/%s: %s", stage, t->name, strerror(errno));
	    free(data);
	    close(fd);
	    return (-1);
	}
	off += (size_t) n;
    }
    free(data);
    if ((geteuid() == 0 && fchown(fd, t->st.st_uid, t->st.st_gid) < 0)
	|| fchmod(fd, t->st.st_mode & 0777) < 0 || fsync(fd) < 0) {
	snprintf(err, errlen, "%s/%s: %s", stage, t->name, strerror(errno));
	close(fd);
	return (-1);
    }
    close(fd);
    return (0);
}

static void imp_build_warn(const char *msg)
{
    cli_warn("import-postfix: %s", msg);
}

/* Give a built index file the source's mode and owner. */
static int imp_own(int sfd, const char *stage, const char *name, const struct stat *st,
		           char *err, size_t errlen)
{
    int     fd = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0 || (geteuid() == 0 && fchown(fd, st->st_uid, st->st_gid) < 0)
	|| fchmod(fd, st->st_mode & 0777) < 0 || fsync(fd) < 0) {
	snprintf(err, errlen, "%s/%s: %s", stage, name, strerror(errno));
	if (fd >= 0)
	    close(fd);
	return (-1);
    }
    close(fd);
    return (0);
}

/* ---- writing ---- */

static int imp_write(int sfd, const char *stage, const char *name, const char *text,
		             char *err, size_t errlen)
{
    int     fd;
    size_t  len = strlen(text), off = 0;

    (void) unlinkat(sfd, name, 0);
    if ((fd = openat(sfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644)) < 0) {
	snprintf(err, errlen, "create %s/%s: %s", stage, name, strerror(errno));
	return (-1);
    }
    while (off < len) {
	ssize_t n = write(fd, text + off, len - off);

	if (n < 0) {
	    snprintf(err, errlen, "write %s/%s: %s", stage, name, strerror(errno));
	    close(fd);
	    return (-1);
	}
	off += (size_t) n;
    }
    if (fchmod(fd, 0644) < 0 || fsync(fd) < 0) {
	snprintf(err, errlen, "%s/%s: %s", stage, name, strerror(errno));
	close(fd);
	return (-1);
    }
    close(fd);
    return (0);
}

/* Remove the staging directory and what is in it (plain files only). */
static void imp_unstage(int dfd, int sfd, const char *sname)
{
    DIR    *d;
    struct dirent *e;
    int     fd2;

    if (sfd >= 0 && (fd2 = dup(sfd)) >= 0 && (d = fdopendir(fd2)) != NULL) {
	while ((e = readdir(d)) != NULL)
	    if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
		(void) unlinkat(sfd, e->d_name, 0);
	closedir(d);
    }
    if (sfd >= 0)
	close(sfd);
    if (sname)
	(void) unlinkat(dfd, sname, AT_REMOVEDIR);
}

/* "FILE, line N: ..." from config_load: N, when FILE is ours. */
static int imp_err_line(const char *err, const char *file)
{
    size_t  fl = strlen(file);

    if (strncmp(err, file, fl) != 0 || strncmp(err + fl, ", line ", 7) != 0)
	return (-1);
    return (atoi(err + fl + 7));
}

/*
 * Load the staged relayq.cf as relayqd would; a value relayq refuses drops
 * that setting (with a note) and the file is written again.  Loops and
 * other errors that are not one setting's stop the import.
 */
static CONFIG *imp_validate(IMP *im, int sfd, const char *stage, char *err, size_t errlen)
{
    char    why[1024];
    char   *file = xasprintf("%s/relayq.cf", stage);
    CONFIG *cf = NULL;

    for (int round = 0; round < 10000; round++) {
	const char *mc = pfimport_master_cf(im->pf);
	int     line;

	if (imp_write(sfd, stage, "relayq.cf", pfimport_relayq_cf(im->pf), err, errlen) < 0
	    || (mc && imp_write(sfd, stage, "master.cf", mc, err, errlen) < 0))
	    break;
	if ((cf = config_load(stage, NULL, 0, 0, why, sizeof(why))) != NULL)
	    break;
	/* "STAGE/relayq.cf, line N: parameter NAME: why" */
	line = imp_err_line(why, file);
	{
	    const char *rest = line > 0 ? strchr(why + strlen(file) + 7, ':') : NULL;
	    int     src = line > 0 ? pfimport_source_line(im->pf, line) : 0;

	    rest = rest ? rest + 2 : why;
	    if (strncmp(rest, "parameter ", 10) == 0 && strstr(rest, ": "))
		rest = strstr(rest, ": ") + 2;
	    if (src == 0 || strstr(why, "expansion loop") || strstr(why, "nested deeper")
		|| strstr(why, "larger than") || pfimport_drop_line(im->pf, line, rest) < 0) {
		if (src)
		    snprintf(err, errlen, "%s/main.cf, line %d: %s", im->srcdir, src, rest);
		else
		    snprintf(err, errlen, "the converted relayq.cf does not load: %s", why);
		break;
	    }
	}
    }
    free(file);
    if (cf && config_warnings(cf) > 0) {
	snprintf(err, errlen, "the converted relayq.cf has unknown parameter names (see the warnings above)");
	config_free(cf);
	cf = NULL;
    }
    return (cf);
}

/*
 * Every listener of the staged master.cf resolves, with its -o settings,
 * as relayqd will.  An -o value relayq refuses drops that setting, an
 * address that does not resolve drops the listener (with a note each);
 * then both files are written again.
 */
static int imp_check_listeners(IMP *im, const CONFIG *cf, int sfd, const char *stage,
			               char *err, size_t errlen)
{
    char   *path = xasprintf("%s/master.cf", stage);
    char  **known = config_list(cf, "known_tcp_ports", 0);
    char  **ifaces = config_list(cf, "inet_interfaces", 0);
    char  **protos = config_list(cf, "inet_protocols", 0);
    int     ret = -1;

    for (int round = 0; round < 100000; round++) {
	char    why[1024], where[256];
	MASTER_CF *m = master_load(path, why, sizeof(why));
	int     bad = 0;

	if (m == NULL) {
	    snprintf(err, errlen, "the converted master.cf does not load: %s", *why ? why : "missing");
	    break;
	}
	for (int i = 0; i < m->nsvc && !bad; i++) {
	    char  **addrs;
	    CONFIG *d;
	    const char *opt, *cp;
	    char   *name;

	    if ((addrs = master_listen_addrs(&m->svc[i], known, ifaces, protos, why, sizeof(why))) == NULL) {
		cp = strstr(why, ": ");
		if (pfimport_drop_listener(im->pf, m->svc[i].line, NULL, cp ? cp + 2 : why) < 0) {
		    snprintf(err, errlen, "the converted master.cf: %s", why);
		    bad = -1;
		} else {
		    bad = 1;
		}
		break;
	    }
	    str_list_free(addrs);
	    snprintf(where, sizeof(where), "master.cf, line %d", m->svc[i].line);
	    if ((d = config_derive(cf, m->svc[i].opts, m->svc[i].nopts, where, why, sizeof(why))) != NULL) {
		config_free(d);
		continue;
	    }
	    /* "master.cf, line N: -o name=value: parameter NAME: why" */
	    opt = strstr(why, ": parameter ");
	    name = opt ? xstrndup(opt + 12, strcspn(opt + 12, ":")) : NULL;
	    cp = opt ? strstr(opt + 12, ": ") : NULL;
	    if (name == NULL || pfimport_drop_listener(im->pf, m->svc[i].line, name, cp ? cp + 2 : why) < 0) {
		snprintf(err, errlen, "the converted master.cf: %s", why);
		bad = -1;
	    } else {
		bad = 1;
	    }
	    free(name);
	}
	master_free(m);
	if (bad < 0)
	    break;
	if (bad == 0) {
	    ret = 0;
	    break;
	}
	if (imp_write(sfd, stage, "relayq.cf", pfimport_relayq_cf(im->pf), err, errlen) < 0
	    || imp_write(sfd, stage, "master.cf", pfimport_master_cf(im->pf), err, errlen) < 0)
	    break;
    }
    str_list_free(known);
    str_list_free(ifaces);
    str_list_free(protos);
    free(path);
    return (ret);
}

/* Is name in DESTDIR already, and may it be replaced? */
static int imp_target(int dfd, const char *destdir, const char *name, int force,
		              char *err, size_t errlen)
{
    struct stat st;

    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
	return (0);
    if (!force) {
	snprintf(err, errlen, "%s/%s exists: use --force to replace it", destdir, name);
	return (-1);
    }
    if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
	snprintf(err, errlen, "%s/%s exists and is not a file: refusing to replace it", destdir, name);
	return (-1);
    }
    return (0);
}

/* The files this import writes, in the order they go into place (relayq.cf last). */
static char **imp_outputs(const IMP *im)
{
    char  **out = xcalloc((size_t) im->nt * 4 + 3, sizeof(char *));
    int     n = 0;

    for (int i = 0; i < im->nt; i++) {
	out[n++] = xstrdup(im->t[i].name);
	if (im->t[i].build & 1)
	    out[n++] = xasprintf("%s.db", im->t[i].name);
	if (im->t[i].build & 2)
	    out[n++] = xasprintf("%s.lmdb", im->t[i].name);
	if (im->t[i].build & 4)
	    out[n++] = xasprintf("%s.cdb", im->t[i].name);
    }
    if (pfimport_master_cf(im->pf))
	out[n++] = xstrdup("master.cf");
    out[n++] = xstrdup("relayq.cf");
    return (out);
}

/* DESTDIR: created when missing; never a symbolic link, never writable by others. */
static int imp_destdir(const char *destdir, int create, int *created, char *err, size_t errlen)
{
    struct stat st;
    int     fd;

    if (lstat(destdir, &st) < 0) {
	if (errno != ENOENT || !create) {
	    if (errno == ENOENT)
		return (-2);
	    snprintf(err, errlen, "%s: %s", destdir, strerror(errno));
	    return (-1);
	}
	if (mkdir(destdir, 0755) < 0 && errno != EEXIST) {
	    snprintf(err, errlen, "cannot create %s: %s", destdir, strerror(errno));
	    return (-1);
	}
	*created = 1;
    }
    if ((fd = open(destdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
	if (errno == ELOOP || (lstat(destdir, &st) == 0 && S_ISLNK(st.st_mode)))
	    snprintf(err, errlen, "%s is a symbolic link: refusing to write through it", destdir);
	else
	    snprintf(err, errlen, "open %s: %s", destdir, strerror(errno));
	return (-1);
    }
    if (fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode)) {
	snprintf(err, errlen, "%s is not a directory", destdir);
	close(fd);
	return (-1);
    }
    if (st.st_mode & S_IWOTH) {
	snprintf(err, errlen, "%s has mode %04o: a configuration directory must not be writable "
		 "by other users", destdir, (unsigned) (st.st_mode & 07777));
	close(fd);
	return (-1);
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
	snprintf(err, errlen, "%s is owned by uid %lu, not by root or you: refusing to write there",
		 destdir, (unsigned long) st.st_uid);
	close(fd);
	return (-1);
    }
    return (fd);
}

/* A fresh private directory inside dfd; its name in *name. */
static int imp_stage(int dfd, const char *destdir, char **name, char *err, size_t errlen)
{
    unsigned long r = (unsigned long) getpid() ^ (unsigned long) time_sec() * 2654435761UL;

    for (int tries = 0; tries < 100; tries++) {
	char   *n = xasprintf(IMP_STAGE_PREFIX "%lu.%lx", (unsigned long) getpid(),
			      (r + (unsigned long) tries * 7919UL) & 0xffffffUL);
	int     fd;

	if (mkdirat(dfd, n, 0700) < 0) {
	    free(n);
	    if (errno == EEXIST)
		continue;
	    snprintf(err, errlen, "cannot create a directory in %s: %s", destdir, strerror(errno));
	    return (-1);
	}
	if ((fd = openat(dfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
	    snprintf(err, errlen, "open %s/%s: %s", destdir, n, strerror(errno));
	    (void) unlinkat(dfd, n, AT_REMOVEDIR);
	    free(n);
	    return (-1);
	}
	*name = n;
	return (fd);
    }
    snprintf(err, errlen, "cannot create a private directory in %s", destdir);
    return (-1);
}

static void imp_free(IMP *im)
{
    for (int i = 0; i < im->nt; i++) {
	free(im->t[i].src);
	free(im->t[i].name);
	free(im->t[i].btype);
    }
    free(im->t);
    free(im->srcdir);
    pfimport_free(im->pf);
}

int     cli_import_postfix(CLI *cli, int argc, char **argv)
{
    const char *src = "/etc/postfix", *dest = NULL;
    int     force = 0, dry = 0, nsrc = 0, dfd = -1, sfd = -1, ret = 1, created = 0, moved = 0;
    char    err[2048], real[PATH_MAX], dreal[PATH_MAX], fdpath[PATH_MAX + 32];
    char   *text = NULL, *path = NULL, *sname = NULL, *stage = NULL;
    char  **outs = NULL;
    size_t  len = 0;
    IMP     im;
    CONFIG *cf = NULL;
    char  **notes;
    int     nnotes;

    memset(&im, 0, sizeof(im));
    for (int i = 1; i < argc; i++) {
	if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
	    dest = argv[++i];
	else if (strncmp(argv[i], "--to=", 5) == 0)
	    dest = argv[i] + 5;
	else if (strcmp(argv[i], "--dry-run") == 0 || strcmp(argv[i], "-n") == 0)
	    dry = 1;
	else if (strcmp(argv[i], "--force") == 0 || strcmp(argv[i], "-f") == 0)
	    force = 1;
	else if (argv[i][0] == '-' || nsrc++)
	    imp_usage();
	else
	    src = argv[i];
    }
    if (dest == NULL)
	dest = cli->cf ? config_dir(cli->cf) : cli->confdir ? cli->confdir : CONFIG_DEFAULT_DIR;
    if (*dest == 0)
	imp_usage();
    if (realpath(src, real) == NULL) {
	fprintf(stderr, "relayq: import-postfix: %s: %s\n", src, strerror(errno));
	return (1);
    }
    im.srcdir = xstrdup(real);
    im.destdir = dest;
    im.dry_run = dry;
    if (realpath(dest, dreal) != NULL && strcmp(dreal, real) == 0) {
	fprintf(stderr, "relayq: import-postfix: %s is the Postfix directory itself: "
		"write somewhere else (--to)\n", dest);
	goto out;
    }
    im.pf = pfimport_new(im.srcdir);

    /* Read and convert: nothing is written before all of it succeeded. */
    path = xasprintf("%s/main.cf", im.srcdir);
    if ((text = imp_read(path, PFI_MAX_FILE, &len, 0, err, sizeof(err))) == NULL
	|| pfimport_main(im.pf, path, text, len, err, sizeof(err)) < 0)
	goto fail;
    free(text);
    free(path);
    path = xasprintf("%s/master.cf", im.srcdir);
    text = imp_read(path, PFI_MAX_FILE, &len, 1, err, sizeof(err));
    if (text == NULL && *err)
	goto fail;
    if (text && pfimport_master(im.pf, path, text, len, err, sizeof(err)) < 0)
	goto fail;
    if (pfimport_convert(im.pf, imp_spec, &im, err, sizeof(err)) < 0)
	goto fail;

    /* Where it goes. */
    if ((dfd = imp_destdir(dest, !dry, &created, err, sizeof(err))) == -1)
	goto fail;
    outs = imp_outputs(&im);
    for (int i = 0; dfd >= 0 && outs[i]; i++) {
	if (imp_target(dfd, dest, outs[i], force, err, sizeof(err)) < 0) {
	    if (!dry || force)
		goto fail;
	    /* A dry run says what the real one will need. */
	    pfimport_note(im.pf, "note: %s (the import itself will stop there)", err);
	}
    }
    if (dry || dfd < 0) {
	char    tmpl[] = "/tmp/relayq-import.XXXXXX";

	if (mkdtemp(tmpl) == NULL) {
	    snprintf(err, sizeof(err), "mkdtemp: %s", strerror(errno));
	    goto fail;
	}
	stage = xstrdup(tmpl);
	if ((sfd = open(stage, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
	    snprintf(err, sizeof(err), "open %s: %s", stage, strerror(errno));
	    rmdir(stage);
	    goto fail;
	}
    } else {
	if ((sfd = imp_stage(dfd, dest, &sname, err, sizeof(err))) < 0)
	    goto fail;
	stage = xasprintf("%s/%s", dest, sname);
    }

    snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", sfd);
    if (access(fdpath, F_OK) < 0)
	snprintf(fdpath, sizeof(fdpath), "%s", stage);
    /* Tables (not for a dry run), then relayq.cf and master.cf, checked in the staging directory. */
    for (int i = 0; !dry && i < im.nt; i++) {
	IMP_TABLE *t = &im.t[i];
	static const char *types[] = {"hash", "lmdb", "cdb"};
	static const char *exts[] = {"db", "lmdb", "cdb"};

	if (imp_copy(sfd, stage, t, err, sizeof(err)) < 0)
	    goto fail;
	for (int b = 0; b < 3; b++) {
	    char   *spec, *ext;
	    mode_t  old;
	    int     r;

	    if (!(t->build & (1 << b)))
		continue;
	    /* Through the descriptor: a rename of the staging directory cannot redirect the build. */
	    spec = xasprintf("%s:%s/%s", b == 0 && t->btype ? t->btype : types[b], fdpath, t->name);
	    ext = xasprintf("%s.%s", t->name, exts[b]);
	    old = umask(077);			/* a secret table is never readable, even briefly */
	    r = table_build(spec, NULL, TABLE_BUILD_FOLD, imp_build_warn, err, sizeof(err));
	    umask(old);
	    free(spec);
	    if (r < 0 || imp_own(sfd, stage, ext, &t->st, err, sizeof(err)) < 0) {
		free(ext);
		goto fail;
	    }
	    free(ext);
	}
    }
    if ((cf = imp_validate(&im, sfd, stage, err, sizeof(err))) == NULL)
	goto fail;
    if (pfimport_master_cf(im.pf) && imp_check_listeners(&im, cf, sfd, stage, err, sizeof(err)) < 0)
	goto fail;
    config_free(cf);
    cf = NULL;

    notes = pfimport_notes(im.pf, &nnotes);
    if (dry) {
	printf("relayq: import-postfix: dry run: nothing written to %s\n", dest);
	printf("==> %s/relayq.cf <==\n%s", dest, pfimport_relayq_cf(im.pf));
	if (pfimport_master_cf(im.pf))
	    printf("==> %s/master.cf <==\n%s", dest, pfimport_master_cf(im.pf));
	for (int i = 0; i < im.nt; i++)
	    printf("relayq: import-postfix: would copy %s to %s/%s%s\n", im.t[i].src, dest, im.t[i].name,
		   im.t[i].build ? " and rebuild it" : "");
	for (int i = 0; i < nnotes; i++)
	    printf("relayq: import-postfix: %s\n", notes[i]);
	ret = 0;
	goto out;
    }

    /* Into place: tables, master.cf, relayq.cf last. */
    for (int i = 0; outs[i]; i++) {
	if (renameat(sfd, outs[i], dfd, outs[i]) < 0) {
	    snprintf(err, sizeof(err), "rename %s/%s to %s/%s: %s", stage, outs[i], dest, outs[i],
		     strerror(errno));
	    goto fail;
	}
	moved++;
    }
    (void) fsync(dfd);
    for (int i = 0; i < im.nt; i++)
	printf("relayq: import-postfix: copied %s to %s/%s%s\n", im.t[i].src, dest, im.t[i].name,
	       im.t[i].build ? " and rebuilt it" : "");
    for (int i = 0; i < nnotes; i++)
	printf("relayq: import-postfix: %s\n", notes[i]);
    printf("relayq: import-postfix: wrote %s/relayq.cf (%d parameters)", dest, pfimport_ncarried(im.pf));
    if (pfimport_master_cf(im.pf))
	printf(" and %s/master.cf (%d listener%s)", dest, pfimport_nlisteners(im.pf),
	       pfimport_nlisteners(im.pf) == 1 ? "" : "s");
    printf(" from %s\n", im.srcdir);
    fflush(stdout);

    /* The check relayqd's operator would run, with this command's -o settings. */
    {
	CLI     c = *cli;
	char   *cargv[] = {"config", "--check", NULL};

	c.confdir = dest;
	c.cf = config_load(dest, cli->overrides, cli->noverrides, 0, c.load_err, sizeof(c.load_err));
	ret = cli_config(&c, 2, cargv);
	if (c.cf)
	    config_free(c.cf);
	fflush(stdout);
	if (ret != 0)
	    fprintf(stderr, "relayq: import-postfix: written, but relayq config --check found the "
		    "problems above\n");
    }
    goto out;

fail:
    fprintf(stderr, "relayq: import-postfix: %s\n", err);
    if (moved)
	fprintf(stderr, "relayq: import-postfix: %s is incomplete: run the import again\n", dest);
    else
	fprintf(stderr, "relayq: import-postfix: nothing was written%s%s\n", dry ? "" : " to ",
		dry ? "" : dest);
    ret = 1;
out:
    if (cf)
	config_free(cf);
    if (sfd >= 0 || sname)
	imp_unstage(dfd, sfd, sname);
    else if (stage && dry)
	(void) rmdir(stage);
    if (dry && stage && sfd >= 0)
	(void) rmdir(stage);
    if (dfd >= 0)
	close(dfd);
    if (ret != 0 && created && !moved)
	(void) rmdir(dest);			/* ours, and empty again */
    str_list_free(outs);
    free(stage);
    free(sname);
    free(text);
    free(path);
    imp_free(&im);
    return (ret);
}
