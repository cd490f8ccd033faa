/*
 * retry_policy - relayq_retry_policy_maps in the daemon (see retry_policy.c).
 */
#ifndef RETRY_POLICY_H_INCLUDED
#define RETRY_POLICY_H_INCLUDED

#include <stddef.h>
#include "config/config.h"
#include "qmgr/qmgr.h"

/* A policy map is configured (and opened). */
int     retry_policy_enabled(const CONFIG *cf);
/* rcpt's policy value, copied into buf; NULL: none (the configuration's schedule). */
const char *retry_policy_value(const CONFIG *cf, const char *rcpt, char *buf, size_t len);
/* Every value of cf's policy tables parses; -1 with "relayq_retry_policy_maps: FILE, line N: KEY: why". */
int     retry_policy_check(const CONFIG *cf, const QMGR_PARAMS *p, char *err, size_t errlen);

#endif
