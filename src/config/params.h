/*
 * params.h - private to the config module: the one table of relayq.cf
 * parameters (params.c).  Other modules use config.h only.
 */
#ifndef PARAMS_H_INCLUDED
#define PARAMS_H_INCLUDED

typedef enum {
    PT_STR,					/* free text (maybe with choices) */
    PT_LIST,				/* commas and/or white space */
    PT_TIME,				/* number + optional s m h d w */
    PT_SIZE,				/* bytes, plain number */
    PT_INT,					/* plain non-negative number */
    PT_BOOL,				/* yes / no */
} PARAM_TYPE;

/* Where a parameter comes from, for relayq.cf(5). */
typedef enum {
    PO_POSTFIX,				/* Postfix name and default */
    PO_POSTFIX_DEF,			/* Postfix name, relayq's own default */
    PO_RELAYQ,				/* relayq only */
} PARAM_ORIGIN;

/* Defaults that are computed from the host, not written in the table. */
#define PARAM_DEF_MYHOSTNAME	"\001myhostname"
#define PARAM_DEF_MYDOMAIN	"\001mydomain"

typedef struct PARAM {
    const char *name;
    PARAM_TYPE type;
    const char *defval;			/* may hold $name references */
    char    unit;			/* PT_TIME: unit of a bare number */
    long long min;			/* PT_INT/SIZE/TIME (seconds) */
    long long max;			/* 0: no maximum */
    const char *choices;		/* PT_STR: space-separated, NULL: any */
    PARAM_ORIGIN origin;
    const char *note;			/* origin detail, e.g. the Postfix default */
    const char *desc;			/* one line, for the man page */
} PARAM;

extern const PARAM param_table[];
extern const int param_count;

int     param_index(const char *name);	/* -1 when unknown */

/* Postfix 3.7's parameter names (postfix_names.c, generated from postconf -d). */
int     postfix_param_known(const char *name);
const char *const *postfix_param_names(int *n);

#endif
