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
#include <time.h>

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
    {"--what-if", 0, 0},
    {"--compare", 0, EXPLAIN_OPT_CONFIG_ONLY},
    {"--set", 1, 0},
    {"--at", 1, EXPLAIN_OPT_WHAT_IF},
    {"--until", 1, EXPLAIN_OPT_WHAT_IF},
    {"--all", 0, EXPLAIN_OPT_WHAT_IF},
};

static int explain_number(const char *s, int64_t max, int units, int64_t *out);

/* The parameters a what-if may change. */
static const char *const schedule_params[] = {
    "queue_run_delay", "minimal_backoff_time", "maximal_backoff_time",
    "maximal_queue_lifetime", "bounce_queue_lifetime", "delay_warning_time",
};

int     explain_schedule_param(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(schedule_params); i++)
	if (strcmp(schedule_params[i], name) == 0)
	    return (1);
    return (0);
}

/*
 * A point in time: "now", "+DURATION" (from now), Unix seconds, or
 * "YYYY-MM-DDTHH:MM[:SS]" in local time ("Z" at the end: UTC).
 */
static int explain_when(const char *s, int64_t *out)
{
    time_t  now = time_sec();
    struct tm tm;
    char   *end;
    int64_t v;

    if (strcmp(s, "now") == 0) {
	*out = (int64_t) now;
	return (0);
    }
    if (*s == '+') {
	if (explain_number(s + 1, EXPLAIN_MAX_SECONDS, 1, &v) < 0)
	    return (-1);
	*out = (int64_t) now + v;
	return (0);
    }
    if (strchr(s, '-') == NULL) {
	if (explain_number(s, INT64_C(1) << 40, 0, &v) < 0)
	    return (-1);
	*out = v;
	return (0);
    }
    memset(&tm, 0, sizeof(tm));
    if ((end = strptime(s, "%Y-%m-%dT%H:%M", &tm)) == NULL)
	return (-1);
    if (*end == ':' && (end = strptime(end, ":%S", &tm)) == NULL)
	return (-1);
    if (strcmp(end, "Z") == 0) {
	*out = (int64_t) timegm(&tm);
    } else if (*end == 0) {
	tm.tm_isdst = -1;
	*out = (int64_t) mktime(&tm);
    } else {
	return (-1);
    }
    return (0);
}

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
	    if (*arg == 0 || *arg == '-') {
		snprintf(err, errlen, "unexpected argument: %.64s", arg);
		return (-1);
	    }
	    if (o->nids >= EXPLAIN_MAX_IDS) {
		snprintf(err, errlen, "too many queue IDs (at most %d; use --all)", EXPLAIN_MAX_IDS);
		return (-1);
	    }
	    if (o->qid == NULL)
		o->qid = arg;
	    o->ids[o->nids++] = arg;
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
	    if (strcmp(opt->name, "--json") == 0)
		o->json = 1;
	    else if (strcmp(opt->name, "--what-if") == 0)
		o->what_if = 1;
	    else if (strcmp(opt->name, "--compare") == 0)
		o->compare = 1;
	    else
		o->all = 1;
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
	} else if (strcmp(opt->name, "--set") == 0) {
	    const char *eqv = strchr(val, '=');
	    char    name[64];

	    if (eqv == NULL || eqv == val || (size_t) (eqv - val) >= sizeof(name)) {
		snprintf(err, errlen, "--set needs NAME=VALUE: %.64s", val);
		return (-1);
	    }
	    snprintf(name, sizeof(name), "%.*s", (int) (eqv - val), val);
	    if (!explain_schedule_param(name)) {
		snprintf(err, errlen, "--set %s: not a parameter of the retry schedule "
			 "(queue_run_delay, minimal_backoff_time, maximal_backoff_time, "
			 "maximal_queue_lifetime, bounce_queue_lifetime, delay_warning_time)", name);
		return (-1);
	    }
	    if (o->nsets >= EXPLAIN_MAX_SETS) {
		snprintf(err, errlen, "too many --set options (at most %d)", EXPLAIN_MAX_SETS);
		return (-1);
	    }
	    o->sets[o->nsets++] = val;
	} else if (strcmp(opt->name, "--at") == 0 || strcmp(opt->name, "--until") == 0) {
	    if (explain_when(val, &v) < 0) {
		snprintf(err, errlen, "bad time for %s: %.64s (now, +DURATION, Unix seconds, "
			 "or YYYY-MM-DDTHH:MM[:SS][Z])", opt->name, val);
		return (-1);
	    }
	    if (opt->name[2] == 'a')
		o->at = v;
	    else
		o->until = v;
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
    if (o->what_if) {
	if (o->flags & EXPLAIN_OPT_CONFIG_ONLY) {
		snprintf(err, errlen, "--what-if takes --set, --at, --until, --all, queue IDs, "
			 "--json and --attempt-duration");
	    return (-1);
	}
	if (o->nids == 0 && !o->all) {
	    snprintf(err, errlen, "--what-if needs queue IDs or --all");
	    return (-1);
	}
	if (o->nids > 0 && o->all) {
	    snprintf(err, errlen, "--what-if takes queue IDs or --all, not both");
	    return (-1);
	}
	return (0);
    }
    if (o->flags & EXPLAIN_OPT_WHAT_IF) {
	snprintf(err, errlen, "--at, --until and --all go with --what-if");
	return (-1);
    }
    if (o->nids > 1) {
	snprintf(err, errlen, "unexpected argument: %.64s", o->ids[1]);
	return (-1);
    }
    if (o->compare && o->nsets == 0) {
	snprintf(err, errlen, "--compare needs at least one --set NAME=VALUE");
	return (-1);
    }
    if (o->nsets > 0 && !o->compare) {
	snprintf(err, errlen, "--set goes with --what-if or --compare");
	return (-1);
    }
    if (o->qid && (o->flags & EXPLAIN_OPT_CONFIG_ONLY)) {
	snprintf(err, errlen, "a queued message takes only --json and --attempt-duration");
	return (-1);
    }
    return (0);
}

void    explain_opts_request(const EXPLAIN_OPTS *o, BUF *req)
{
    if (o->what_if) {
	/* Times go as absolute seconds: both sides then mean the same instant. */
	buf_puts(req, "explain --what-if");
	for (int i = 0; i < o->nsets; i++)
	    buf_printf(req, " --set=%s", o->sets[i]);
	if (o->at)
	    buf_printf(req, " --at=%lld", (long long) o->at);
	if (o->until)
	    buf_printf(req, " --until=%lld", (long long) o->until);
	if (o->all)
	    buf_puts(req, " --all");
	for (int i = 0; i < o->nids; i++)
	    buf_printf(req, " %s", o->ids[i]);
    } else {
	buf_printf(req, "explain %s", o->qid);
    }
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

int     explain_whatif_params(const char *confdir, char *const *overrides, int noverrides,
			              const EXPLAIN_OPTS *o, QMGR_PARAMS *p, char *err, size_t errlen)
{
    char  **ov = xcalloc((size_t) (noverrides + o->nsets + 1), sizeof(char *));
    CONFIG *cf;
    int     i;

    for (i = 0; i < noverrides; i++)
	ov[i] = overrides[i];
    for (i = 0; i < o->nsets; i++)
	ov[noverrides + i] = UTIL_UNCONST(o->sets[i]);
    cf = config_load(confdir, ov, noverrides + o->nsets, 1, err, errlen);
    free(ov);
    if (cf == NULL)
	return (-1);
    explain_params(cf, p);
    config_free(cf);
    return (0);
}
