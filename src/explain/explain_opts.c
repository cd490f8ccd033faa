/*
 * explain_opts - the options of `relayq explain`, parsed the same way by
 * the CLI, by the daemon's query socket ("explain ID ...") and by the
 * offline path: "--opt VALUE" and "--opt=VALUE", times with a unit.
 * The query socket is open to every local user, so every value is checked
 * and bounded here.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "explain/explain.h"

#define EXPLAIN_MAX_SECONDS	(10LL * 365 * 86400)
#define EXPLAIN_MAX_ATTEMPTS	100000

typedef struct EXPLAIN_OPTION {
    const char *name;
    int     takes_value;
    unsigned flags;
} EXPLAIN_OPTION;

static const EXPLAIN_OPTION explain_options[] = {
    {"--json", 0, 0},
    {"--attempt-duration", 1, 0},
    {"--arrival-offset", 1, EXPLAIN_OPT_CONFIG_ONLY},
    {"--sender", 1, EXPLAIN_OPT_CONFIG_ONLY},
    {"--max-attempts", 1, EXPLAIN_OPT_CONFIG_ONLY},
    {"--svg", 1, EXPLAIN_OPT_CONFIG_ONLY},
};

/* A count, or seconds with an optional unit s, m, h, d, w; at most max. */
static int explain_number(const char *s, int64_t max, int units, int64_t *out)
{
    char   *end;
    long long v;
    int64_t mult = 1;

    if (*s < '0' || *s > '9')
	return (-1);				/* no sign, no blanks */
    errno = 0;
    v = strtoll(s, &end, 10);
    if (end == s || errno != 0)
	return (-1);
    if (*end) {
	const char *unit = units ? strchr("smhdw", *end) : NULL;
	static const int64_t mults[] = {1, 60, 3600, 86400, 7 * 86400};

	if (unit == NULL || *end == 0 || end[1] != 0)
	    return (-1);
	mult = mults[unit - "smhdw"];
    }
    if (v > max / mult)
	return (-1);
    *out = (int64_t) v *mult;
    return (0);
}

int     explain_opts_parse(int argc, char *const *argv, EXPLAIN_OPTS *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    o->arrival_offset = 1;

    for (int i = 0; i < argc; i++) {
	const char *arg = argv[i], *val = NULL, *eq;
	const EXPLAIN_OPTION *opt = NULL;
	size_t  namelen;
	int64_t v;

	if (strncmp(arg, "--", 2) != 0) {
	    if (o->qid != NULL || *arg == 0 || *arg == '-') {
		snprintf(err, errlen, "unexpected argument: %.64s", arg);
		return (-1);
	    }
	    o->qid = arg;
	    continue;
	}
	eq = strchr(arg, '=');
	namelen = eq ? (size_t) (eq - arg) : strlen(arg);
	for (size_t k = 0; k < ARRAY_LEN(explain_options); k++)
	    if (strlen(explain_options[k].name) == namelen
		&& strncmp(explain_options[k].name, arg, namelen) == 0)
		opt = &explain_options[k];
	if (opt == NULL) {
	    snprintf(err, errlen, "unknown option: %.*s", (int) (namelen > 64 ? 64 : namelen), arg);
	    return (-1);
	}
	o->flags |= opt->flags;
	if (!opt->takes_value) {
	    if (eq) {
		snprintf(err, errlen, "%s takes no value", opt->name);
		return (-1);
	    }
	    o->json = 1;
	    continue;
	}
	if (eq) {
	    val = eq + 1;
	} else if (i + 1 < argc) {
	    val = argv[++i];
	} else {
	    snprintf(err, errlen, "%s needs a value", opt->name);
	    return (-1);
	}
	if (strcmp(opt->name, "--sender") == 0) {
	    o->null_sender = (*val == 0 || strcmp(val, "<>") == 0);
	} else if (strcmp(opt->name, "--svg") == 0) {
	    if (*val == 0) {
		snprintf(err, errlen, "--svg needs a file name");
		return (-1);
	    }
	    o->svg = val;
	} else if (strcmp(opt->name, "--max-attempts") == 0) {
	    if (explain_number(val, EXPLAIN_MAX_ATTEMPTS, 0, &v) < 0 || v < 1) {
		snprintf(err, errlen, "bad --max-attempts: %.64s (1 to %d)", val, EXPLAIN_MAX_ATTEMPTS);
		return (-1);
	    }
	    o->max_attempts = (int) v;
	} else {
	    if (explain_number(val, EXPLAIN_MAX_SECONDS, 1, &v) < 0) {
		snprintf(err, errlen, "bad time value for %s: %.64s", opt->name, val);
		return (-1);
	    }
	    if (strcmp(opt->name, "--arrival-offset") == 0)
		o->arrival_offset = v;
	    else
		o->attempt_duration = v;
	}
    }
    if (o->qid && (o->flags & EXPLAIN_OPT_CONFIG_ONLY)) {
	snprintf(err, errlen, "a queued message takes only --json and --attempt-duration");
	return (-1);
    }
    return (0);
}

void    explain_opts_request(const EXPLAIN_OPTS *o, BUF *req)
{
    buf_printf(req, "explain %s", o->qid);
    if (o->json)
	buf_puts(req, " --json");
    if (o->attempt_duration)
	buf_printf(req, " --attempt-duration=%lld", (long long) o->attempt_duration);
}

void    explain_params(const CONFIG *cf, QMGR_PARAMS *p)
{
    memset(p, 0, sizeof(*p));
    p->queue_run_delay = config_time(cf, "queue_run_delay");
    p->minimal_backoff_time = config_time(cf, "minimal_backoff_time");
    p->maximal_backoff_time = config_time(cf, "maximal_backoff_time");
    p->maximal_queue_lifetime = config_time(cf, "maximal_queue_lifetime");
    p->bounce_queue_lifetime = config_time(cf, "bounce_queue_lifetime");
    p->delay_warning_time = config_time(cf, "delay_warning_time");
    p->qmgr_message_active_limit = (int) config_int(cf, "qmgr_message_active_limit");
    p->initial_destination_concurrency = (int) config_int(cf, "initial_destination_concurrency");
    p->default_destination_concurrency_limit = (int) config_int(cf, "default_destination_concurrency_limit");
    p->default_destination_recipient_limit = (int) config_int(cf, "default_destination_recipient_limit");
}
