/*
 * maildrop - local submission files (sendmail -> daemon), Postfix's
 * maildrop/ directory in relayq's own small format.
 *
 * Directory: queue_directory/maildrop, mode 1733 (world-writable, sticky,
 * not listable), so any local user can submit without a set-gid helper,
 * cannot read or remove other users' files, and cannot even learn their
 * names.  Files are created 0644 so that the daemon (mail_owner) can read
 * them; the sticky directory lets only the daemon (the directory owner)
 * and the author remove them.
 *
 * File format, version 1 (every header line ends in LF, no CR, no NUL):
 *   relayq-maildrop 1
 *   time SECONDS              when it was written
 *   uid N                     the submitting user (informational: the
 *   user NAME                  daemon trusts the file owner instead)
 *   sender ADDRESS            empty for <>
 *   rcpt ADDRESS              one line per recipient, at least one
 *   content LENGTH            then exactly LENGTH bytes of message (CRLF)
 *   end NRCPT LENGTH          trailer repeating the counts
 * Anything else (short file, extra bytes, bad numbers, counts that do not
 * match) is malformed and the file goes to maildrop/corrupt/.
 *
 * Durability: written as maildrop/tmp.XXXXXX, fsync, renamed to its final
 * name (hex microseconds.pid.random: name order is submission order), and
 * the directory fsynced; the daemon never sees a partial file.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "control/control.h"
#include "log/log.h"
#include "util/safe_file.h"

#define MAILDROP_MAGIC		"relayq-maildrop 1"
#define MAILDROP_LINE_MAX	4096
#define MAILDROP_FILE_MAX	((off_t) 1 << 30)	/* 1 GiB sanity bound */
#define MAILDROP_ENVELOPE_MAX	((size_t) 1 << 20)	/* sender, recipient lines */
#define MAILDROP_SCAN_NAMES	10000	/* names listed per scan */
#define MAILDROP_TMP_MAX_AGE	86400	/* a crashed sendmail's tmp file */

static int maildrop_mkdir(const char *path, mode_t mode, char *err, size_t errlen)
{
    struct stat st;

    if (mkdir(path, mode) < 0 && errno != EEXIST) {
	snprintf(err, errlen, "create %s: %s", path, strerror(errno));
	return (-1);
    }
    if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
	snprintf(err, errlen, "%s: not a directory", path);
	return (-1);
    }
    /* mkdir() honours the umask; the mode is part of the security design. */
    if ((st.st_mode & 07777) != mode && chmod(path, mode) < 0) {
	snprintf(err, errlen, "chmod %s: %s", path, strerror(errno));
	return (-1);
    }
    return (0);
}

int     maildrop_init(const char *queue_dir, char *err, size_t errlen)
{
    char   *md = xasprintf("%s/maildrop", queue_dir);
    char   *co = xasprintf("%s/maildrop/corrupt", queue_dir);
    int     ret;

    ret = maildrop_mkdir(md, 01733, err, errlen) == 0
	&& maildrop_mkdir(co, 0700, err, errlen) == 0 ? 0 : -1;
    free(md);
    free(co);
    return (ret);
}

int     maildrop_prepare(const char *queue_dir, uid_t owner, char *err, size_t errlen)
{
    int     fd, ret;

    /* The queue directory must exist already: an installation or the daemon makes it. */
    if ((fd = open(queue_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
	snprintf(err, errlen, "queue directory %s: %s", queue_dir,
		 errno == ELOOP ? "is a symbolic link" : strerror(errno));
	return (-1);
    }
    ret = safe_subdir(fd, queue_dir, "maildrop", owner, (gid_t) -1, 01733, err, errlen);
    close(fd);
    return (ret);
}

/* A header value must stay on its line. */
static int maildrop_clean(const char *s)
{
    return (s && strpbrk(s, "\r\n") == 0 && strlen(s) < MAILDROP_LINE_MAX - 16);
}

static int maildrop_write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
	ssize_t n = write(fd, p, len);

	if (n < 0) {
	    if (errno == EINTR)
		continue;
	    return (-1);
	}
	p += n;
	len -= (size_t) n;
    }
    return (0);
}

/*
 * The maildrop directory for writing, through a descriptor: not a link,
 * a directory of mode 1733 (sendmail may run as root: a directory that
 * mail_owner swapped for a link to another one must not receive its file).
 * Returns the descriptor, or MAILDROP_CREATE (it cannot be opened: errno
 * says why) or MAILDROP_TEMP (a link, not a directory, the wrong mode).
 */
static int maildrop_dir_open(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    int     dfd;

    if ((dfd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
	if (errno == ENOTDIR || errno == ELOOP) {
	    snprintf(err, errlen, "%s is a symbolic link or not a directory: refusing to use it", dir);
	    return (MAILDROP_TEMP);
	}
	snprintf(err, errlen, "create file in %s: %s", dir, strerror(errno));
	return (MAILDROP_CREATE);
    }
    if (fstat(dfd, &st) < 0 || (st.st_mode & 07777) != 01733) {
	snprintf(err, errlen, "%s has mode %04o, expected 1733: refusing to use it", dir,
		 (unsigned) (st.st_mode & 07777));
	close(dfd);
	return (MAILDROP_TEMP);
    }
    return (dfd);
}

int     maildrop_write(const char *queue_dir, const MAILDROP_MSG *m, char *err, size_t errlen)
{
    char   *dir = xasprintf("%s/maildrop", queue_dir);
    char    tmp[64] = "";
    char    final[96];
    BUF     hdr = BUF_INIT;
    int     fd = -1, dfd = -1, sfd = -1, i, ret = -1, tries;
    unsigned rnd;

    ret = MAILDROP_DATA;
    if (!maildrop_clean(m->sender) || !maildrop_clean(m->user ? m->user : "")) {
	snprintf(err, errlen, "sender or user name contains a line break or is too long");
	goto out;
    }
    if (m->nrcpt < 1) {
	snprintf(err, errlen, "no recipients");
	goto out;
    }
    for (i = 0; i < m->nrcpt; i++) {
	if (!maildrop_clean(m->rcpts[i]) || *m->rcpts[i] == 0) {
	    snprintf(err, errlen, "bad recipient address");
	    goto out;
	}
    }
    if ((dfd = maildrop_dir_open(dir, err, errlen)) < 0) {
	ret = dfd;
	goto out;
    }
    ret = MAILDROP_TEMP;
    /* A new name of our own: O_EXCL and O_NOFOLLOW, never an existing file or a link. */
    for (tries = 0; fd < 0 && tries < 100; tries++) {
	if (getentropy(&rnd, sizeof(rnd)) < 0)
	    rnd = (unsigned) time_mono_us() ^ (unsigned) tries;
	snprintf(tmp, sizeof(tmp), "tmp.%ld.%08x", (long) getpid(), rnd);
	fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 && errno != EEXIST)
	    break;
    }
    if (fd < 0) {
	/* A full disk or quota is temporary, as Postfix's postdrop failing for want of space. */
	if (errno != ENOSPC && errno != EDQUOT)
	    ret = MAILDROP_CREATE;
	snprintf(err, errlen, "create file in %s: %s", dir, strerror(errno));
	*tmp = 0;
	goto out;
    }
    if (fchmod(fd, 0644) < 0) {
	snprintf(err, errlen, "chmod %s/%s: %s", dir, tmp, strerror(errno));
	goto out;
    }
    buf_printf(&hdr, "%s\ntime %lld\nuid %lu\nuser %s\nsender %s\n", MAILDROP_MAGIC,
	       (long long) time_sec(), (unsigned long) m->uid, m->user ? m->user : "", m->sender);
    for (i = 0; i < m->nrcpt; i++)
	buf_printf(&hdr, "rcpt %s\n", m->rcpts[i]);
    buf_printf(&hdr, "content %zu\n", m->len);
    if (maildrop_write_all(fd, hdr.data, hdr.len) < 0
	|| maildrop_write_all(fd, m->content, m->len) < 0) {
	snprintf(err, errlen, "write %s/%s: %s", dir, tmp, strerror(errno));
	goto out;
    }
    buf_reset(&hdr);
    buf_printf(&hdr, "end %d %zu\n", m->nrcpt, m->len);
    if (maildrop_write_all(fd, hdr.data, hdr.len) < 0 || fsync(fd) < 0) {
	snprintf(err, errlen, "write %s/%s: %s", dir, tmp, strerror(errno));
	goto out;
    }
    if (close(fd) < 0) {
	fd = -1;
	snprintf(err, errlen, "close %s/%s: %s", dir, tmp, strerror(errno));
	goto out;
    }
    fd = -1;
    if (getentropy(&rnd, sizeof(rnd)) < 0)
	rnd = (unsigned) time_mono_us();
    snprintf(final, sizeof(final), "%016llx.%ld.%08x", (unsigned long long) time_now_us(),
	     (long) getpid(), rnd);
    if (renameat(dfd, tmp, dfd, final) < 0) {
	snprintf(err, errlen, "rename %s/%s: %s", dir, tmp, strerror(errno));
	goto out;
    }
    *tmp = 0;					/* renamed: nothing to clean up */
    /* Make the rename itself durable. */
    if ((sfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || fsync(sfd) < 0) {
	/* Not listable (1733) for an ordinary user: O_RDONLY may be refused. */
	if (errno != EACCES) {
	    snprintf(err, errlen, "fsync %s: %s", dir, strerror(errno));
	    goto out;
	}
	sync();
    }
    ret = 0;
out:
    if (fd >= 0)
	close(fd);
    if (ret < 0 && *tmp && dfd >= 0)
	(void) unlinkat(dfd, tmp, 0);
    if (sfd >= 0)
	close(sfd);
    if (dfd >= 0)
	close(dfd);
    buf_free(&hdr);
    free(dir);
    return (ret);
}

/* ---- reading ---- */

typedef struct MAILDROP_PARSE {
    MAILDROP_MSG msg;
    char  **rcpts;
    int     nrcpt, cap;
} MAILDROP_PARSE;

/* Next header line in [*pp, end): NUL-terminated in place; NULL when bad. */
static char *maildrop_line(char **pp, char *end)
{
    char   *p = *pp, *nl;

    if (p >= end || (nl = memchr(p, '\n', (size_t) (end - p))) == 0)
	return (0);
    if (nl - p > MAILDROP_LINE_MAX || memchr(p, '\r', (size_t) (nl - p)) || memchr(p, 0, (size_t) (nl - p)))
	return (0);
    *nl = 0;
    *pp = nl + 1;
    return (p);
}

static int maildrop_number(const char *s, unsigned long long *val)
{
    char   *end;

    if (*s < '0' || *s > '9')
	return (-1);
    errno = 0;
    *val = strtoull(s, &end, 10);
    return ((*end || errno) ? -1 : 0);
}

/* Parse data (len bytes, writable); 0 or -1 with a reason. */
static int maildrop_parse(char *data, size_t len, MAILDROP_PARSE *mp, const char **why)
{
    char   *p = data, *end = data + len, *line, *sp;
    unsigned long long n, clen, ercpt;

    memset(mp, 0, sizeof(*mp));
#define NEXT(kw) ((line = maildrop_line(&p, end)) != 0 && strncmp(line, kw " ", sizeof(kw)) == 0 \
		  ? line + sizeof(kw) : 0)
    if ((line = maildrop_line(&p, end)) == 0 || strcmp(line, MAILDROP_MAGIC) != 0) {
	*why = "not a relayq maildrop file, or an unknown version";
	return (-1);
    }
    if ((line = NEXT("time")) == 0 || maildrop_number(line, &n) < 0
	|| (line = NEXT("uid")) == 0 || maildrop_number(line, &n) < 0) {
	*why = "bad time or uid line";
	return (-1);
    }
    mp->msg.uid = (uid_t) n;
    if ((mp->msg.user = NEXT("user")) == 0 || (mp->msg.sender = NEXT("sender")) == 0) {
	*why = "bad user or sender line";
	return (-1);
    }
    for (;;) {
	if ((line = maildrop_line(&p, end)) == 0) {
	    *why = "truncated header";
	    return (-1);
	}
	if (strncmp(line, "rcpt ", 5) == 0 && line[5]) {
	    if (mp->nrcpt == mp->cap) {
		mp->cap = mp->cap ? 2 * mp->cap : 8;
		mp->rcpts = xrealloc(mp->rcpts, mp->cap * sizeof(char *));
	    }
	    mp->rcpts[mp->nrcpt++] = line + 5;
	    continue;
	}
	if (strncmp(line, "content ", 8) == 0 && maildrop_number(line + 8, &clen) == 0)
	    break;
	*why = "bad recipient or content line";
	return (-1);
    }
    if (mp->nrcpt == 0) {
	*why = "no recipients";
	return (-1);
    }
    if (clen > (unsigned long long) (end - p)) {
	*why = "content shorter than announced";
	return (-1);
    }
    mp->msg.content = p;
    mp->msg.len = (size_t) clen;
    p += clen;
    if ((line = maildrop_line(&p, end)) == 0 || strncmp(line, "end ", 4) != 0
	|| (sp = strchr(line + 4, ' ')) == 0) {
	*why = "missing end line";
	return (-1);
    }
    *sp = 0;
    if (maildrop_number(line + 4, &ercpt) < 0 || maildrop_number(sp + 1, &n) < 0
	|| ercpt != (unsigned long long) mp->nrcpt || n != clen) {
	*why = "end line does not match the recipients or the content length";
	return (-1);
    }
    if (p != end) {
	*why = "data after the end line";
	return (-1);
    }
#undef NEXT
    mp->msg.rcpts = mp->rcpts;
    mp->msg.nrcpt = mp->nrcpt;
    return (0);
}

static int maildrop_name_cmp(const void *a, const void *b)
{
    return (strcmp(*(char *const *) a, *(char *const *) b));
}

/* Read a whole regular file (no symlinks) into memory. */
static char *maildrop_slurp(int dfd, const char *name, size_t max_size, size_t *len, uid_t *owner,
			            const char **why)
{
    struct stat st;
    char   *data;
    size_t  got = 0;
    int     fd;

    if ((fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)) < 0) {
	*why = strerror(errno);
	return (0);
    }
    /* One link only: a hard link to another user's file would make pickup take it for theirs. */
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
	*why = "not a regular file with one link";
	close(fd);
	return (0);
    }
    if (st.st_size > MAILDROP_FILE_MAX || (max_size > 0 && (size_t) st.st_size > max_size)) {
	*why = "message file too big";
	close(fd);
	return (0);
    }
    data = xmalloc((size_t) st.st_size + 1);
    while (got < (size_t) st.st_size) {
	ssize_t n = read(fd, data + got, (size_t) st.st_size - got);

	if (n < 0 && errno == EINTR)
	    continue;
	if (n <= 0)
	    break;
	got += (size_t) n;
    }
    close(fd);
    data[got] = 0;
    *len = got;
    *owner = st.st_uid;
    return (data);
}

static void maildrop_corrupt(const char *queue_dir, const char *name, const char *why)
{
    char   *from = xasprintf("%s/maildrop/%s", queue_dir, name);
    char   *to = xasprintf("%s/maildrop/corrupt/%s", queue_dir, name);

    if (rename(from, to) < 0) {
	log_warn("pickup", "maildrop file %s: %s; cannot move it to corrupt: %s",
		 name, why, strerror(errno));
	(void) unlink(from);
    } else {
	log_warn("pickup", "maildrop file %s: %s; moved to maildrop/corrupt", name, why);
    }
    free(from);
    free(to);
}

int     maildrop_scan(const char *queue_dir, size_t max_size,
		              int (*take)(void *ctx, const char *path, const MAILDROP_MSG *m, const char **why),
		              void *ctx)
{
    size_t  budget = MAILDROP_SCAN_BYTES;
    int     rc;

    char   *dir = xasprintf("%s/maildrop", queue_dir);
    char    err[256];
    char  **names = 0;
    int     nnames = 0, cap = 0, i, taken = 0, dfd;
    DIR    *dp;
    struct dirent *de;

    if (maildrop_init(queue_dir, err, sizeof(err)) < 0) {
	log_warn("pickup", "%s", err);
	free(dir);
	return (-1);
    }
    if ((dp = opendir(dir)) == 0) {
	log_warn("pickup", "open %s: %s", dir, strerror(errno));
	free(dir);
	return (-1);
    }
    dfd = dirfd(dp);
    while ((de = readdir(dp)) != 0) {
	if (de->d_name[0] == '.' || strcmp(de->d_name, "corrupt") == 0)
	    continue;
	if (strncmp(de->d_name, "tmp.", 4) == 0) {
	    struct stat st;

	    /* Left by a sendmail that died while writing. */
	    if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0
		&& st.st_mtime < time_sec() - MAILDROP_TMP_MAX_AGE)
		(void) unlinkat(dfd, de->d_name, 0);
	    continue;
	}
	if (nnames >= MAILDROP_SCAN_NAMES)
	    break;				/* the rest at a later scan */
	if (nnames == cap) {
	    cap = cap ? 2 * cap : 32;
	    names = xrealloc(names, cap * sizeof(char *));
	}
	names[nnames++] = xstrdup(de->d_name);
    }
    if (nnames > 0)				/* qsort(NULL, 0) is undefined (UBSan) */
	qsort(names, nnames, sizeof(char *), maildrop_name_cmp);
    for (i = 0; i < nnames && i < MAILDROP_SCAN_FILES && budget > 0; i++) {
	MAILDROP_PARSE mp;
	const char *why = 0;
	size_t  len;
	uid_t   owner;
	char   *data, *path;

	/* The envelope lines of a file of max_size bytes of content need room too. */
	if ((data = maildrop_slurp(dfd, names[i], max_size ? max_size + MAILDROP_ENVELOPE_MAX : 0,
				   &len, &owner, &why)) == 0) {
	    if (why && strcmp(why, strerror(ENOENT)) != 0)
		maildrop_corrupt(queue_dir, names[i], why);
	    continue;
	}
	if (maildrop_parse(data, len, &mp, &why) < 0) {
	    maildrop_corrupt(queue_dir, names[i], why);
	} else {
	    /* The file owner is who submitted it; the uid line can be forged. */
	    mp.msg.uid = owner;
	    path = xasprintf("%s/%s", dir, names[i]);
	    why = "rejected";
	    if ((rc = take(ctx, path, &mp.msg, &why)) == 0) {
		(void) unlink(path);
		taken++;
	    } else if (rc < 0) {
		maildrop_corrupt(queue_dir, names[i], why);
	    }
	    free(path);
	}
	free(mp.rcpts);
	free(data);
	budget = len >= budget ? 0 : budget - len;
    }
    for (i = 0; i < nnames; i++)
	free(names[i]);
    free(names);
    closedir(dp);
    free(dir);
    return (taken);
}

int     maildrop_remove(const char *path)
{
    return (unlink(path) < 0 && errno != ENOENT ? -1 : 0);
}
