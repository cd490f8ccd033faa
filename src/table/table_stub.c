/*
 * table_stub - table types not built yet: opening one is a clear error.
 */
#include <stdio.h>

#include "table/table_priv.h"

static void *stub_load(TABLE *t, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: table type \"%s\" is not supported yet", t->spec, t->type);
    return (NULL);
}

static int stub_lookup(TABLE *t, void *priv, const char *key, const char **val,
		               char *err, size_t errlen)
{
    return (TABLE_ERROR);
}

const TABLE_OPS table_ops_socketmap = {"socketmap", stub_load, stub_lookup, NULL, 0, NULL};

void   *table_sockmap_async(TABLE *t, const char *key, TABLE_SOCK_CB cb, void *arg)
{
    cb(TABLE_ERROR, NULL, "socketmap is not supported yet", arg);
    return (NULL);
}

void    table_sockmap_cancel(void *op)
{
}
