/*
 * explain_stub - stands in for cmd_explain_config() while src/cli/explain.c
 * is not in the tree.  It is a weak symbol: once the real function is
 * linked, the linker takes that one and this file does nothing.
 */
#include <stdio.h>

#include "cli/cli.h"

__attribute__((weak))
int     cmd_explain_config(const QMGR_PARAMS *p, int argc, char **argv, FILE *out)
{
    (void) p;
    (void) argc;
    (void) argv;
    (void) out;
    fprintf(stderr, "relayq: fatal: explain for a configuration is not built into this binary\n");
    return 1;
}
