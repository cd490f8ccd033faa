/*
 * mkman - write relayq.cf(5) from the parameter table (make man).
 * tests/unit/test_config.c fails when man/relayq.cf.5 is not this output.
 */
#include <stdio.h>

#include "config/config.h"

int     main(void)
{
    config_write_man(stdout);
    return (fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1);
}
