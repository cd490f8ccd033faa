/*
 * cli.h - private to the relayq command-line program (bin/relayq,
 * bin/mailq, bin/sendmail): the loaded configuration and the commands.
 */
#ifndef CLI_H_INCLUDED
#define CLI_H_INCLUDED

#include <stdio.h>

#include "config/config.h"
#include "qmgr/qmgr.h"

typedef struct CLI {
    CONFIG *cf;				/* NULL when relayq.cf failed to load */
    char    load_err[512];
    const char *confdir;
    char  **overrides;
    int     noverrides;
} CLI;

/* The commands; argv[0] is the command name.  They return the exit status. */
int     cli_config(CLI *cli, int argc, char **argv);
int     cli_mailq(CLI *cli, int argc, char **argv);
int     cli_flush(CLI *cli, int argc, char **argv);
int     cli_admin(CLI *cli, int argc, char **argv);
int     cli_qshape(CLI *cli, int argc, char **argv);
int     cli_explain(CLI *cli, int argc, char **argv);
int     cli_sendmail(CLI *cli, int argc, char **argv);
int     cli_postmap(CLI *cli, int argc, char **argv);
int     cli_top(CLI *cli, int argc, char **argv);
int     cli_import_postfix(CLI *cli, int argc, char **argv);

/* The queue without the daemon, opened as mail_owner (relayq.c). */
struct QUEUE;
struct QUEUE *cli_queue_open(CLI *cli, int mode, char *err, size_t errlen);

void    cli_fatal(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
void    cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
