/*
 * safe_file - root-time file work through directory descriptors (see
 * safe_file.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/safe_file.h"

static int owner_ok(const struct stat *st, uid_t owner)
{
    return st->st_uid == 0 || st->st_uid == geteuid() || st->st_uid == owner;
}

/* Why openat(O_NOFOLLOW) failed, in words an administrator can act on. */
static void open_err(int dfd, const char *dirpath, const char *name, int err_no,
		             char *err, size_t errlen)
{
    struct stat st;

    if ((err_no == ELOOP || err_no == ENOTDIR)
	&& fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
	snprintf(err, errlen, "%s%s%s is a symbolic link: refusing to use it", dirpath,
		 *dirpath && *name != '/' ? "/" : "", name);
    else
	snprintf(err, errlen, "open %s%s%s: %s", dirpath, *dirpath && *name != '/' ? "/" : "",
		 name, strerror(err_no));
}

static int check_owner(const struct stat *st, const char *dirpath, const char *name,
		               uid_t owner, char *err, size_t errlen)
{
    if (owner_ok(st, owner))
	return 0;
    snprintf(err, errlen, "%s%s%s is owned by uid %lu, not by root or mail_owner: refusing to use it",
	     dirpath, *dirpath && *name != '/' ? "/" : "", name, (unsigned long) st->st_uid);
    return -1;
}

int     safe_dir_open(const char *path, mode_t mode, uid_t owner, char *err, size_t errlen)
{
    struct stat st;
    int     fd;

    if (mkdir(path, mode) < 0 && errno != EEXIST) {
	snprintf(err, errlen, "cannot create directory %s: %s", path, strerror(errno));
	return -1;
    }
    if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
	open_err(AT_FDCWD, "", path, errno, err, errlen);
	return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode)) {
	snprintf(err, errlen, "%s is not a directory", path);
	close(fd);
	return -1;
    }
    if (check_owner(&st, "", path, owner, err, errlen) < 0) {
	close(fd);
	return -1;
    }
    return fd;
}

int     safe_subdir(int dfd, const char *dirpath, const char *name, uid_t uid, gid_t gid,
		            mode_t mode, char *err, size_t errlen)
{
    struct stat st;
    int     fd;

    if (mkdirat(dfd, name, 0700) < 0 && errno != EEXIST) {
	snprintf(err, errlen, "cannot create directory %s/%s: %s", dirpath, name, strerror(errno));
	return -1;
    }
    if ((fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
	open_err(dfd, dirpath, name, errno, err, errlen);
	return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode)) {
	snprintf(err, errlen, "%s/%s is not a directory", dirpath, name);
	close(fd);
	return -1;
    }
    if (check_owner(&st, dirpath, name, uid, err, errlen) < 0) {
	close(fd);
	return -1;
    }
    if (geteuid() == 0 && (st.st_uid != uid || (gid != (gid_t) -1 && st.st_gid != gid))
	&& fchown(fd, uid, gid) < 0) {
	snprintf(err, errlen, "chown %s/%s: %s", dirpath, name, strerror(errno));
	close(fd);
	return -1;
    }
    /* After fchown, which clears the set-gid bit of some file systems. */
    if ((st.st_mode & 07777) != mode || st.st_uid != uid) {
	if (fchmod(fd, mode) < 0) {
	    snprintf(err, errlen, "chmod %s/%s: %s", dirpath, name, strerror(errno));
	    close(fd);
	    return -1;
	}
    }
    close(fd);
    return 0;
}

int     safe_entry_check(int dfd, const char *dirpath, const char *name, uid_t owner,
			         char *err, size_t errlen)
{
    struct stat st;

    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
	return errno == ENOENT ? 0 : (snprintf(err, errlen, "%s/%s: %s", dirpath, name, strerror(errno)), -1);
    if (S_ISLNK(st.st_mode)) {
	snprintf(err, errlen, "%s/%s is a symbolic link: refusing to use it", dirpath, name);
	return -1;
    }
    if (check_owner(&st, dirpath, name, owner, err, errlen) < 0)
	return -1;
    if (!S_ISDIR(st.st_mode) && !S_ISSOCK(st.st_mode) && st.st_nlink > 1) {
	snprintf(err, errlen, "%s/%s has %lu hard links: refusing to use it", dirpath, name,
		 (unsigned long) st.st_nlink);
	return -1;
    }
    /* AT_SYMLINK_NOFOLLOW: the entry itself, never what a link swapped in since points to. */
    if (geteuid() == 0 && st.st_uid == 0 && owner != 0
	&& fchownat(dfd, name, owner, (gid_t) -1, AT_SYMLINK_NOFOLLOW) < 0) {
	snprintf(err, errlen, "chown %s/%s: %s", dirpath, name, strerror(errno));
	return -1;
    }
    return 0;
}

int     safe_file_open(int dfd, const char *dirpath, const char *name, uid_t owner,
		               char *err, size_t errlen)
{
    struct stat st;
    int     fd;

    if ((fd = openat(dfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0600)) < 0) {
	open_err(dfd, dirpath, name, errno, err, errlen);
	return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
	snprintf(err, errlen, "%s/%s is not a plain file with one link: refusing to use it", dirpath, name);
	close(fd);
	return -1;
    }
    if (check_owner(&st, dirpath, name, owner, err, errlen) < 0) {
	close(fd);
	return -1;
    }
    (void) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}
