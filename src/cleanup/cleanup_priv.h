/*
 * cleanup_priv - what cleanup.c and cleanup_checks.c share; nothing outside
 * src/cleanup includes it.
 */
#ifndef CLEANUP_PRIV_H_INCLUDED
#define CLEANUP_PRIV_H_INCLUDED

#include "cleanup/cleanup.h"

#define CHK_HEADER	0
#define CHK_MIME	1
#define CHK_NESTED	2
#define CHK_BODY	3

#define CHK_KEEP	0
#define CHK_DROP	1
#define CHK_REPLACE	2

int     cleanup_checks_has(const CLEANUP_CHECKS *c, int which);

/*
 * One logical header (Postfix's text) or body record through the checks.
 * CHK_KEEP, CHK_DROP, or CHK_REPLACE with *replace (allocated); PREPEND
 * lines are appended to prepend, each ending in "\n".
 */
int     cleanup_check_header(CLEANUP_INFO *ci, int cls, const char *text,
			             char **replace, BUF *prepend);
int     cleanup_check_body(CLEANUP_INFO *ci, const char *rec, size_t len, size_t offset,
			           char **replace, BUF *prepend);

#endif
