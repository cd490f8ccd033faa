/*
 * pfimport - the logic of `relayq import-postfix`, without the files:
 * Postfix's main.cf and master.cf (text the caller read, bounded) become
 * relayq.cf and master.cf text, plus one note for everything that is not
 * carried over, with the reason.
 *
 * What is carried is decided at run time from relayq's parameter table
 * (params.c) and the generated list of Postfix 3.7's names
 * (postfix_names.c), so the importer follows the parameters relayq
 * implements.  $name references stay as text where the name stays
 * (a relayq parameter, or the administrator's own name, which is then
 * carried too); a reference to a Postfix parameter that is not carried
 * ($data_directory, $config_directory, $queue_directory, ...) is replaced
 * by its value (from main.cf, or Postfix's default).
 *
 * Lookup-table files are the caller's business: every type:name element of
 * a carried value whose type is one of Postfix's table types goes through
 * a callback, which returns what to write instead (the CLI copies the file
 * and rebuilds it) or drops the parameter with a reason.
 */
#ifndef PFIMPORT_H_INCLUDED
#define PFIMPORT_H_INCLUDED

#include <stddef.h>

typedef struct PFIMPORT PFIMPORT;

#define PFI_MAX_FILE	(4 << 20)		/* main.cf, master.cf: bytes */
#define PFI_MAX_LINE	(64 << 10)		/* one logical main.cf line */

/*
 * One type:name element (spec) of parameter param (where: "FILE, line N").
 * Returns the text to write instead (allocated; a copy of spec keeps it),
 * or NULL to drop the parameter, with the reason in *why (allocated).
 */
typedef char *(*PFI_SPEC_FN) (void *ctx, const char *where, const char *param,
			              const char *spec, char **why);

/* srcdir: Postfix's configuration directory ($config_directory). */
PFIMPORT *pfimport_new(const char *srcdir);
void    pfimport_free(PFIMPORT *p);

/*
 * main.cf and master.cf text (len bytes; path names them in messages).
 * -1 with err set on what makes the file unusable: a NUL byte, a logical
 * line longer than PFI_MAX_LINE, a file over PFI_MAX_FILE, syntax.
 */
int     pfimport_main(PFIMPORT *p, const char *path, const char *text, size_t len,
		              char *err, size_t errlen);
int     pfimport_master(PFIMPORT *p, const char *path, const char *text, size_t len,
			        char *err, size_t errlen);

/*
 * Decide and render relayq.cf (and master.cf when one was read).  fn may
 * be NULL (table specs kept as written).  -1 with err set on a $name loop
 * or a malformed ${...} in a value that is carried.
 */
int     pfimport_convert(PFIMPORT *p, PFI_SPEC_FN fn, void *ctx, char *err, size_t errlen);

/*
 * The caller found that relayq.cf line `line` does not load (why: the
 * reason): drop that setting with a note and render again.  -1 when the
 * line is no setting of ours.
 */
int     pfimport_drop_line(PFIMPORT *p, int line, const char *why);

/*
 * The same for the master.cf service whose entry starts on line `line`:
 * drop its -o setting opt, or (opt NULL) the whole listener.
 */
int     pfimport_drop_listener(PFIMPORT *p, int line, const char *opt, const char *why);

/* The main.cf line of the setting on relayq.cf line `line`; 0 if none. */
int     pfimport_source_line(const PFIMPORT *p, int line);

const char *pfimport_relayq_cf(const PFIMPORT *p);
const char *pfimport_master_cf(const PFIMPORT *p);	/* NULL: no master.cf read */
int     pfimport_ncarried(const PFIMPORT *p);		/* relayq.cf settings */
int     pfimport_nlisteners(const PFIMPORT *p);		/* master.cf services */

/*
 * The notes, in order: "not carried over: WHERE: WHAT: reason",
 * "translated: WHERE: ...", "note: ...".  pfimport_note() adds one.
 */
char  **pfimport_notes(const PFIMPORT *p, int *n);
void    pfimport_note(PFIMPORT *p, const char *fmt,...) __attribute__((format(printf, 2, 3)));

/*
 * The value with each Postfix table spec element replaced by fn's answer,
 * separators and other elements kept; {...} groups are one element.  NULL
 * when fn dropped one (*why set).  Exposed for the tests.
 */
char   *pfimport_map_specs(const char *where, const char *param, const char *value,
			           PFI_SPEC_FN fn, void *ctx, char **why);

/* Is type (before the ':') one of Postfix's lookup-table types? */
int     pfimport_table_type(const char *type, size_t len);

#endif
