/*
 * smtp_priv - declarations shared by the files of the smtp module only
 * (routing in smtp_route.c, sessions in smtp.c).  Not a public interface.
 */
#ifndef SMTP_PRIV_H_INCLUDED
#define SMTP_PRIV_H_INCLUDED

#include "config/config.h"

/* Parameter lookups that tolerate a name the config table lacks. */
const char *smtp_cf_str(const CONFIG *cf, const char *name, const char *dflt);
long long smtp_cf_time(const CONFIG *cf, const char *name, long long dflt);
long long smtp_cf_int(const CONFIG *cf, const char *name, long long dflt);

/* Forget cached texthash tables (smtp_create / smtp_reconfigure). */
void    smtp_maps_flush(void);

#endif
