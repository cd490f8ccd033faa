/*
 * config - relayq.cf in Postfix main.cf syntax (postconf(5)), the table of
 * parameters (name, type, default, unit), $name expansion, -o overrides, and
 * the output of `relayq config`.  Knows no other module.
 *
 * Values are expanded lazily and recursively on lookup: $name, ${name},
 * $(name), ${name?value}, ${name:value}, ${name?{value}}, ${name:{value}},
 * ${name?{a}:{b}}.  A $name loop is detected at load time and is an error.
 * Time values take s m h d w; a bare number takes the parameter's default
 * unit.  Sizes and integers are plain numbers.
 */
#ifndef CONFIG_H_INCLUDED
#define CONFIG_H_INCLUDED

#include <stdio.h>

typedef struct CONFIG CONFIG;

#define CONFIG_DEFAULT_DIR "/etc/relayq"

/*
 * Load CONFDIR/relayq.cf (confdir NULL: CONFIG_DEFAULT_DIR), then apply the
 * "name=value" overrides in order.  A missing relayq.cf is not an error only
 * when allow_missing is set (the CLI on a host without a configuration).
 * Every value is checked against its type here, so later lookups cannot
 * fail.  On error returns NULL and puts one line in err, without prefix or
 * newline: "FILE, line N: parameter NAME: what is wrong and what is
 * accepted" (or "-o name=value: ..." for an override); the caller writes it
 * as "relayq: fatal: %s\n" (or logs it, on reload).  Unknown parameter
 * names are warnings, written to stderr as "relayq: warning: FILE, line N:
 * unknown parameter "NAME"" (or "relayq: warning: -o name=value: unknown
 * parameter") and counted
 * (config_warnings()); they may still be used in $name, as in Postfix.
 */
CONFIG *config_load(const char *confdir, char *const *overrides, int noverrides,
		            int allow_missing, char *err, size_t errlen);
void    config_free(CONFIG *cf);

/*
 * A copy of base with more "name=value" overrides applied after its own
 * (a master.cf service's -o list); where ("master.cf, line 12") prefixes
 * errors.  Unknown names are not warned about on stderr (the caller says
 * what it ignores) and $name references to them expand as usual.
 */
CONFIG *config_derive(const CONFIG *base, char *const *overrides, int noverrides,
		              const char *where, char *err, size_t errlen);

/*
 * Lookups.  name must be a known parameter (else: fatal, a programming
 * error), and of the matching type: config_int and config_size take int and
 * size parameters alike; config_str and config_list take any.  A CONFIG is
 * read-only after config_load(), so lookups are safe from any thread.
 */
const char *config_str(const CONFIG *cf, const char *name);	/* expanded */
long long config_time(const CONFIG *cf, const char *name);	/* seconds */
long long config_int(const CONFIG *cf, const char *name);
long long config_size(const CONFIG *cf, const char *name);	/* bytes */
int     config_bool(const CONFIG *cf, const char *name);	/* yes/no */
char  **config_list(const CONFIG *cf, const char *name, int *n);	/* free with str_list_free() */

/*
 * Expand $name references of an arbitrary string against cf (caller frees).
 * A syntax error in value is a warning on stderr, and value comes back as is.
 */
char   *config_expand(const CONFIG *cf, const char *value);

int     config_known(const char *name);		/* 1 if name is in the table */
int     config_is_set(const CONFIG *cf, const char *name);	/* set in file or -o */
int     config_warnings(const CONFIG *cf);	/* unknown-parameter warnings */
/*
 * `relayq config --check`: one "info:" line for each Postfix parameter that
 * relayq does not implement (a word when it matters for a relay); returns
 * their number.  Names unknown to both were warned about at load.
 */
int     config_report_postfix(const CONFIG *cf, FILE *fp);

/* A word on a Postfix parameter relayq does not implement, when it matters for a relay; else NULL. */
const char *config_postfix_note(const char *name);
const char *config_file(const CONFIG *cf);	/* path of relayq.cf */
const char *config_dir(const CONFIG *cf);

/* relayq config: flags */
#define CONFIG_SHOW_NONDEFAULT	(1<<0)		/* -n: only what the file or -o sets */
#define CONFIG_SHOW_DEFAULTS	(1<<1)		/* -d: built-in defaults */

/*
 * Print "name = value" lines like postconf(1) (unexpanded values, sorted by
 * name).  names/nnames restrict the output; an unknown name is reported on
 * stderr and makes the return value 1.  cf may be NULL: then the built-in
 * defaults are shown.
 */
int     config_show(const CONFIG *cf, FILE *fp, int flags, char *const *names, int nnames);

/* relayq.cf(5) in roff, generated from the parameter table. */
void    config_write_man(FILE *fp);

/*
 * The $name syntax, shared by the configuration reader and import-postfix:
 * config_match() gives the index of the bracket closing the one at
 * s[open] ('{' or '('), or -1; config_cond() splits the conditional part of
 * ${name?...}/${name:...} (s[n] is the '?' or ':') into the text used when
 * the parameter is set and the text used when it is empty (either may be
 * NULL), as Postfix's mac_expand reads "?{a}:{b}", "?{a}", "?a", ":{b}", ":b".
 */
typedef struct CONFIG_COND {
    const char *then_text;
    size_t  then_len;
    const char *else_text;
    size_t  else_len;
} CONFIG_COND;

#define CONFIG_COND_OK		0
#define CONFIG_COND_UNBALANCED	(-1)	/* a { without its } */
#define CONFIG_COND_TRAILING	(-2)	/* text after the last {...} */

long    config_match(const char *s, size_t len, size_t open);
int     config_cond(const char *s, size_t len, size_t n, CONFIG_COND *c);

#endif
