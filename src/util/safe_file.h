/*
 * safe_file - file work that may run as root inside a directory that a
 * less privileged user (mail_owner) can write: Postfix's safe_open(3) as
 * a rule.  Every operation goes through a directory descriptor, never
 * follows a symbolic link in the last component (O_NOFOLLOW,
 * AT_SYMLINK_NOFOLLOW), and checks type and owner with fstat() on the
 * descriptor it then changes (fchown/fchmod), so that a name swapped by
 * the other user between check and use cannot redirect the change.
 *
 * "owner" arguments: the only uid besides the caller's own (and root's)
 * that may own the object.
 */
#ifndef SAFE_FILE_H_INCLUDED
#define SAFE_FILE_H_INCLUDED

#include <stddef.h>
#include <sys/types.h>

/*
 * Open a directory by absolute path, creating it (mode) when missing.  The
 * last component must not be a symbolic link; the directory must belong to
 * root, the caller or owner.  Returns an O_DIRECTORY descriptor or -1 with
 * err set ("... is a symbolic link", "... is owned by uid N").
 */
int     safe_dir_open(const char *path, mode_t mode, uid_t owner, char *err, size_t errlen);

/*
 * Subdirectory name of dfd (dirpath is for messages): created when
 * missing, never through a link, then given to uid:gid (when running as
 * root; gid (gid_t) -1 leaves the group) with exactly mode.
 */
int     safe_subdir(int dfd, const char *dirpath, const char *name, uid_t uid, gid_t gid,
		            mode_t mode, char *err, size_t errlen);

/*
 * An entry of dfd that may or may not exist: 0 when absent or when it is
 * not a link and belongs to root, the caller or owner; -1 with err set
 * otherwise.  Running as root, an entry of root's is given to owner.
 */
int     safe_entry_check(int dfd, const char *dirpath, const char *name, uid_t owner,
			         char *err, size_t errlen);

/*
 * Open (creating 0600 when missing) a regular file of dfd for writing:
 * no link, exactly one hard link, owned by root, the caller or owner.
 */
int     safe_file_open(int dfd, const char *dirpath, const char *name, uid_t owner,
		               char *err, size_t errlen);

#endif
