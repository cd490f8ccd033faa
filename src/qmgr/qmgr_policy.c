/*
 * qmgr_policy.c - the value of a relayq_retry_policy_maps entry:
 *
 *     minimal_backoff_time=60s, maximal_backoff_time=10m, maximal_queue_lifetime=6h
 *
 * name=value pairs separated by commas and/or white space; the names are the
 * five parameters of a retry policy; a time takes s m h d w, and a bare
 * number the parameter's own unit (seconds; days for the lifetimes; hours
 * for delay_warning_time), as in relayq.cf.  Unnamed values come from the
 * configuration.  Pure: a string in, a QMGR_POLICY out.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qmgr/qmgr.h"

static const struct {
    const char *name;
    char    unit;
    size_t  off;
} policy_names[] = {
    {"minimal_backoff_time", 's', offsetof(QMGR_POLICY, minimal_backoff_time)},
    {"maximal_backoff_time", 's', offsetof(QMGR_POLICY, maximal_backoff_time)},
    {"maximal_queue_lifetime", 'd', offsetof(QMGR_POLICY, maximal_queue_lifetime)},
    {"bounce_queue_lifetime", 'd', offsetof(QMGR_POLICY, bounce_queue_lifetime)},
    {"delay_warning_time", 'h', offsetof(QMGR_POLICY, delay_warning_time)},
};

#define POLICY_MAX_SECONDS (100LL * 365 * 86400)

static int policy_time(const char *s, size_t len, char unit, int64_t *out)
{
    static const char units[] = "smhdw";
    static const int64_t mult[] = {1, 60, 3600, 86400, 7 * 86400};
    int64_t v = 0;
    size_t  i = 0;
    const char *u;

    if (len == 0 || s[0] < '0' || s[0] > '9')
	return (-1);
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
	v = v * 10 + (s[i] - '0');
	if (v > POLICY_MAX_SECONDS)
	    return (-1);
    }
    if (i == len)
	u = strchr(units, unit);
    else if (i + 1 == len && s[i] != 0 && (u = strchr(units, s[i])) != NULL)
	 /* void */ ;
    else
	return (-1);
    if (v > POLICY_MAX_SECONDS / mult[u - units])
	return (-1);
    *out = v * mult[u - units];
    return (0);
}

int     qmgr_policy_parse(const char *value, const QMGR_PARAMS *defaults, QMGR_POLICY *out,
			          char *err, size_t errlen)
{
    const char *cp = value;

    qmgr_policy_default(defaults, out);
    for (;;) {
	const char *name, *eq, *val;
	size_t  nlen, vlen, k;
	int64_t t;

	while (*cp == ' ' || *cp == '\t' || *cp == ',' || *cp == '\n' || *cp == '\r')
	    cp++;
	if (*cp == 0)
	    break;
	name = cp;
	nlen = strcspn(cp, "= \t,");
	eq = cp + nlen;
	if (*eq != '=') {
	    snprintf(err, errlen, "\"%.*s\": expected name=value", (int) (nlen > 64 ? 64 : nlen), name);
	    return (-1);
	}
	val = eq + 1;
	vlen = strcspn(val, " \t,\r\n");
	for (k = 0; k < sizeof(policy_names) / sizeof(policy_names[0]); k++)
	    if (strlen(policy_names[k].name) == nlen && strncmp(policy_names[k].name, name, nlen) == 0)
		break;
	if (k == sizeof(policy_names) / sizeof(policy_names[0])) {
	    snprintf(err, errlen, "\"%.*s\" is not a retry policy parameter (minimal_backoff_time, "
		     "maximal_backoff_time, maximal_queue_lifetime, bounce_queue_lifetime, "
		     "delay_warning_time)", (int) (nlen > 64 ? 64 : nlen), name);
	    return (-1);
	}
	if (policy_time(val, vlen, policy_names[k].unit, &t) < 0) {
	    snprintf(err, errlen, "%s: bad time value \"%.*s\": a number with an optional unit "
		     "s, m, h, d or w", policy_names[k].name, (int) (vlen > 64 ? 64 : vlen), val);
	    return (-1);
	}
	*(int64_t *) (void *) ((char *) out + policy_names[k].off) = t;
	cp = val + vlen;
    }
    /* As the configuration's own: the lifetime of bounces never exceeds the other. */
    if (out->minimal_backoff_time < 1 || out->maximal_backoff_time < 1) {
	snprintf(err, errlen, "backoff times must be at least 1s");
	return (-1);
    }
    if (out->bounce_queue_lifetime > out->maximal_queue_lifetime)
	out->bounce_queue_lifetime = out->maximal_queue_lifetime;
    return (0);
}
