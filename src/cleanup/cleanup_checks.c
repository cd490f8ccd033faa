/*
 * cleanup_checks - header_checks, mime_header_checks, nested_header_checks
 * and body_checks as Postfix's cleanup applies them (cleanup_message.c,
 * cleanup_act()), and the smtp_*_checks subset the SMTP client applies
 * (header_body_checks.c).  The message structure comes from cleanup_mime.c;
 * cleanup.c calls cleanup_check_header() and cleanup_check_body() for each
 * logical header and body record.
 *
 * Actions and their texts are Postfix's: REJECT [text] (dsn_prepend
 * "5.7.1", or "message content rejected"; a 4.x.x text defers), WARN,
 * INFO, FILTER transport:destination, PASS, DISCARD, HOLD, PREPEND text,
 * REPLACE text, REDIRECT user@domain, BCC user@domain, STRIP, IGNORE,
 * DUNNO, OK; anything else is a warning and the line stays.  REJECT,
 * DISCARD, PASS and REDIRECT end the checks for this message (and its
 * milters), as Postfix's CLEANUP_FLAG_FILTER_ALL.
 */
#include <string.h>
#include <stdlib.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>

#include "util/util.h"
#include "log/log.h"
#include "config/config.h"
#include "table/table.h"
#include "cleanup/cleanup.h"
#include "cleanup/cleanup_mime.h"
#include "cleanup/cleanup_priv.h"

struct CLEANUP_CHECKS {
    TABLE_LIST *t[4];			/* CHK_HEADER ... CHK_BODY */
    char   *param[4];
    int     smtp;			/* the SMTP client's subset */
};

static const char *const chk_names[4] = {
    "header_checks", "mime_header_checks", "nested_header_checks", "body_checks",
};

/* A FILTER result in a pattern table: relayq has only smtp: for it. */
typedef struct FILTER_CHECK {
    const char *param;
    char   *err;
    size_t  errlen;
} FILTER_CHECK;

static int filter_check_cb(void *ctx, const char *where, int lineno, const char *result)
{
    FILTER_CHECK *fc = ctx;
    const char *text;
    char    why[160];

    if (cleanup_act_parse(result, &text) != CLEANUP_ACT_FILTER || *text == 0
	|| strchr(text, '$') != 0 || cleanup_filter_valid(text, why, sizeof(why)))
	return (0);
    snprintf(fc->err, fc->errlen, "%s: %s, line %d: FILTER %s: %s", fc->param, where, lineno,
	     text, why);
    return (-1);
}

CLEANUP_CHECKS *cleanup_checks_open(const CONFIG *cf, const char *prefix,
				            char *err, size_t errlen)
{
    CLEANUP_CHECKS *c = xcalloc(1, sizeof(*c));
    int     any = 0;

    *err = 0;
    c->smtp = *prefix != 0;
    for (int i = 0; i < 4; i++) {
	char   *name = xasprintf("%s%s", prefix, chk_names[i]);
	const char *v = config_known(name) ? config_str(cf, name) : "";

	c->param[i] = name;
	if (*v == 0)
	    continue;
	/* Postfix opens these without case folding: patterns decide. */
	if ((c->t[i] = table_list_open(name, v, 0, err, errlen)) == NULL) {
	    cleanup_checks_close(c);
	    return (NULL);
	}
	if (!c->smtp) {
	    FILTER_CHECK fc = {name, err, errlen};

	    if (table_list_results(c->t[i], filter_check_cb, &fc) != 0) {
		cleanup_checks_close(c);
		return (NULL);
	    }
	}
	any = 1;
    }
    if (!any)
	return (cleanup_checks_close(c));
    return (c);
}

CLEANUP_CHECKS *cleanup_checks_close(CLEANUP_CHECKS *c)
{
    if (c == 0)
	return (0);
    for (int i = 0; i < 4; i++) {
	table_list_close(c->t[i]);
	free(c->param[i]);
    }
    free(c);
    return (0);
}

int     cleanup_checks_need_body(const CLEANUP_CHECKS *c)
{
    return (c && (c->t[CHK_MIME] || c->t[CHK_NESTED] || c->t[CHK_BODY]));
}

int     cleanup_checks_has(const CLEANUP_CHECKS *c, int which)
{
    return (c && c->t[which] != 0);
}

int     cleanup_filter_valid(const char *filter, char *err, size_t errlen)
{
    const char *nh;

    if (str_ncasecmp(filter, "smtp:", 5) != 0) {
	snprintf(err, errlen, "relayq delivers to an after-queue content filter only over SMTP: "
		 "use smtp:[host]:port");
	return (0);
    }
    nh = filter + 5;
    if (*nh == 0 || strspn(nh, " \t") == strlen(nh) || strpbrk(nh, " \t,")) {
	snprintf(err, errlen, "need smtp:[host]:port");
	return (0);
    }
    return (1);
}

CLEANUP_ACT cleanup_act_parse(const char *value, const char **text)
{
    static const struct {
	const char *name;
	CLEANUP_ACT act;
    }       acts[] = {
	{"REJECT", CLEANUP_ACT_REJECT}, {"DISCARD", CLEANUP_ACT_DISCARD},
	{"HOLD", CLEANUP_ACT_HOLD}, {"IGNORE", CLEANUP_ACT_IGNORE},
	{"REPLACE", CLEANUP_ACT_REPLACE}, {"PREPEND", CLEANUP_ACT_PREPEND},
	{"WARN", CLEANUP_ACT_WARN}, {"INFO", CLEANUP_ACT_INFO},
	{"REDIRECT", CLEANUP_ACT_REDIRECT}, {"BCC", CLEANUP_ACT_BCC},
	{"STRIP", CLEANUP_ACT_STRIP}, {"PASS", CLEANUP_ACT_PASS},
	{"FILTER", CLEANUP_ACT_FILTER}, {"DUNNO", CLEANUP_ACT_DUNNO},
	{"OK", CLEANUP_ACT_DUNNO},
    };
    size_t  n = strcspn(value, " \t");
    const char *t = value + n;

    while (*t == ' ' || *t == '\t')
	t++;
    *text = t;
    for (size_t i = 0; i < ARRAY_LEN(acts); i++)
	if (strlen(acts[i].name) == n && str_ncasecmp(value, acts[i].name, n) == 0)
	    return (acts[i].act);
    return (CLEANUP_ACT_UNKNOWN);
}

/* Postfix's dsn_valid(): the length of a leading "D.DDD.DDD" status, or 0. */
static size_t dsn_valid(const char *t)
{
    const char *cp = t;
    size_t  l;

    if ((cp[0] != '2' && cp[0] != '4' && cp[0] != '5') || cp[1] != '.')
	return (0);
    cp += 2;
    if ((l = strspn(cp, "0123456789")) < 1 || l > 3 || cp[l] != '.')
	return (0);
    cp += l + 1;
    if ((l = strspn(cp, "0123456789")) < 1 || l > 3 || (cp[l] != 0 && !isspace((unsigned char) cp[l])))
	return (0);
    return ((size_t) (cp - t) + l);
}

char   *cleanup_dsn_prepend(const char *def, const char *text)
{
    size_t  n;

    while (isspace((unsigned char) *text))
	text++;
    if ((n = dsn_valid(text)) > 0) {
	const char *rest = text + n;

	while (isspace((unsigned char) *rest))
	    rest++;
	return (xasprintf("%.*s %s", (int) n, text, rest));
    }
    return (xasprintf("%s %s", def, text));
}

/* Postfix's is_header(): "Name: ..." */
static int is_header(const char *s)
{
    return (cleanup_mime_header_name(s, strlen(s)) > 0);
}

static void act_log(CLEANUP_INFO *ci, const char *action, const char *where,
		            const char *content, const char *text)
{
    char   *origin;

    if (ci->checks->smtp) {
	log_smtp_content_action(ci->qid, action, where, content, text);
	return;
    }
    origin = ci->client_addr && ci->protocol
	? xasprintf("%s[%s]", ci->client_name ? ci->client_name : "unknown", ci->client_addr)
	: xstrdup("local");
    log_content_action(ci->qid, action, where, content, origin, ci->sender, ci->last_rcpt,
		       ci->protocol, ci->helo, text);
    free(origin);
}

static void act_warn(CLEANUP_INFO *ci, const char *fmt, ...) UTIL_PRINTF(2, 3);

static void act_warn(CLEANUP_INFO *ci, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    msg_vdiag(MSG_WARN, ci->checks->smtp ? "smtp" : "cleanup", fmt, ap);
    va_end(ap);
}

/*
 * Apply one action.  Returns CHK_KEEP, CHK_DROP or CHK_REPLACE (*replace
 * set, allocated); PREPEND text goes to prepend (one line, no line end).
 */
static int act(CLEANUP_INFO *ci, const char *where, const char *content, const char *value,
	               const char *param, char **replace, BUF *prepend)
{
    const char *text;
    CLEANUP_ACT a = cleanup_act_parse(value, &text);
    int     header = strcmp(where, "header") == 0;

    if (ci->checks->smtp) {
	/* Postfix's smtp: WARN INFO REPLACE PREPEND STRIP IGNORE DUNNO OK. */
	switch (a) {
	case CLEANUP_ACT_WARN:
	case CLEANUP_ACT_INFO:
	case CLEANUP_ACT_REPLACE:
	case CLEANUP_ACT_PREPEND:
	case CLEANUP_ACT_STRIP:
	case CLEANUP_ACT_IGNORE:
	case CLEANUP_ACT_DUNNO:
	    break;
	default:
	    log_warn("smtp", "unsupported command in %s map: %s", param, value);
	    return (CHK_KEEP);
	}
    }
    switch (a) {
    case CLEANUP_ACT_REJECT:
	free(ci->reason);
	if (*text) {
	    ci->reason = cleanup_dsn_prepend("5.7.1", text);
	    if (*ci->reason != '4' && *ci->reason != '5') {
		log_warn("cleanup", "bad DSN action in %s -- need 4.x.x or 5.x.x", text);
		*ci->reason = '4';
	    }
	} else {
	    ci->reason = xstrdup("5.7.1 message content rejected");
	}
	ci->defer = *ci->reason == '4';
	ci->checks_off = 1;
	ci->no_milters = 1;
	act_log(ci, "reject", where, content, ci->reason);
	return (CHK_KEEP);
    case CLEANUP_ACT_WARN:
	act_log(ci, "warning", where, content, text);
	return (CHK_KEEP);
    case CLEANUP_ACT_INFO:
	act_log(ci, "info", where, content, text);
	return (CHK_KEEP);
    case CLEANUP_ACT_FILTER:
	if (*text == 0) {
	    act_warn(ci, "missing FILTER command argument in %s map", param);
	} else if (strchr(text, ':') == 0) {
	    act_warn(ci, "bad FILTER command %s in %s -- need transport:destination", text, param);
	} else {
	    free(ci->filter);
	    ci->filter = xstrdup(text);
	    act_log(ci, "filter", where, content, text);
	}
	return (CHK_KEEP);
    case CLEANUP_ACT_PASS:
	act_log(ci, "pass", where, content, text);
	ci->checks_off = 1;
	ci->no_milters = 1;
	return (CHK_KEEP);
    case CLEANUP_ACT_DISCARD:
	act_log(ci, "discard", where, content, text);
	ci->discard = 1;
	ci->checks_off = 1;
	ci->no_milters = 1;
	return (CHK_KEEP);
    case CLEANUP_ACT_HOLD:
	if (!ci->hold && !ci->discard) {
	    act_log(ci, "hold", where, content, text);
	    ci->hold = 1;
	}
	return (CHK_KEEP);
    case CLEANUP_ACT_PREPEND:
	if (*text == 0) {
	    act_warn(ci, "PREPEND action without text in %s map", param);
	} else if (header && !is_header(text)) {
	    act_warn(ci, "bad PREPEND header text \"%s\" in %s map -- "
		     "need \"headername: headervalue\"", text, param);
	} else {
	    act_log(ci, "prepend", where, content, text);
	    buf_puts(prepend, text);
	    buf_putc(prepend, '\n');
	}
	return (CHK_KEEP);
    case CLEANUP_ACT_REPLACE:
	if (*text == 0) {
	    act_warn(ci, "REPLACE action without text in %s map", param);
	    return (CHK_KEEP);
	}
	if (header && !is_header(text)) {
	    act_warn(ci, "bad REPLACE header text \"%s\" in %s map -- "
		     "need \"headername: headervalue\"", text, param);
	    return (CHK_KEEP);
	}
	act_log(ci, "replace", where, content, text);
	*replace = xstrdup(text);
	return (CHK_REPLACE);
    case CLEANUP_ACT_REDIRECT:
	if (strchr(text, '@') == 0) {
	    act_warn(ci, "bad REDIRECT target \"%s\" in %s map -- need user@domain", text, param);
	} else {
	    free(ci->redirect);
	    ci->redirect = xstrdup(text);
	    act_log(ci, "redirect", where, content, text);
	    ci->checks_off = 1;
	    ci->no_milters = 1;
	}
	return (CHK_KEEP);
    case CLEANUP_ACT_BCC:
	if (strchr(text, '@') == 0) {
	    act_warn(ci, "bad BCC address \"%s\" in %s map -- need user@domain", text, param);
	} else {
	    ci->bcc = xrealloc(ci->bcc, (size_t) (ci->nbcc + 2) * sizeof(char *));
	    ci->bcc[ci->nbcc++] = xstrdup(text);
	    ci->bcc[ci->nbcc] = 0;
	    act_log(ci, "bcc", where, content, text);
	}
	return (CHK_KEEP);
    case CLEANUP_ACT_STRIP:
	act_log(ci, "strip", where, content, text);
	return (CHK_DROP);
    case CLEANUP_ACT_IGNORE:
	return (CHK_DROP);			/* not logged, as Postfix */
    case CLEANUP_ACT_DUNNO:
	return (CHK_KEEP);
    case CLEANUP_ACT_UNKNOWN:
    default:
	act_warn(ci, "unknown command in %s map: %s", param, value);
	return (CHK_KEEP);
    }
}

static int lookup(CLEANUP_INFO *ci, int which, const char *where, const char *key,
		          char **replace, BUF *prepend)
{
    CLEANUP_CHECKS *c = ci->checks;
    const char *val;
    char    err[512];
    int     rc = table_list_find(c->t[which], key, 0, &val, err, sizeof(err));

    if (rc == TABLE_FOUND) {
	char   *v = xstrdup(val);		/* the table's buffer is reused */
	int     r = act(ci, where, key, v, c->param[which], replace, prepend);

	free(v);
	return (r);
    }
    if (rc == TABLE_ERROR) {
	if (c->smtp) {
	    log_warn("smtp", "%s: smtp %s lookup error", ci->qid,
		     which == CHK_BODY ? "body checks" : "header checks");
	} else {
	    log_warn("cleanup", "%s: %s map lookup problem -- "
		     "message not accepted, try again later", ci->qid, c->param[which]);
	    log_warn("cleanup", "%s", err);
	}
	ci->lookup_error = 1;
	ci->checks_off = 1;
    }
    return (CHK_KEEP);
}

int     cleanup_check_header(CLEANUP_INFO *ci, int cls, const char *text,
			             char **replace, BUF *prepend)
{
    int     which;

    if (ci->checks == 0 || ci->checks_off)
	return (CHK_KEEP);
    cls = cleanup_mime_check_class(cls, text);
    which = cls == MIME_HDR_PRIMARY ? CHK_HEADER : cls == MIME_HDR_NESTED ? CHK_NESTED : CHK_MIME;
    if (ci->checks->t[which] == 0)
	return (CHK_KEEP);
    return (lookup(ci, which, "header", text, replace, prepend));
}

int     cleanup_check_body(CLEANUP_INFO *ci, const char *rec, size_t len, size_t offset,
			           char **replace, BUF *prepend)
{
    char   *key;
    int     r;

    if (ci->checks == 0 || ci->checks_off || ci->checks->t[CHK_BODY] == 0)
	return (CHK_KEEP);
    if (!ci->checks->smtp && ci->body_limit > 0 && offset >= (size_t) ci->body_limit)
	return (CHK_KEEP);
    key = xstrndup(rec, len);
    r = lookup(ci, CHK_BODY, "body", key, replace, prepend);
    free(key);
    return (r);
}

void    cleanup_info_free(CLEANUP_INFO *ci)
{
    free(ci->reason);
    free(ci->redirect);
    free(ci->filter);
    for (int i = 0; i < ci->nbcc; i++)
	free(ci->bcc[i]);
    free(ci->bcc);
    ci->reason = ci->redirect = ci->filter = 0;
    ci->bcc = 0;
    ci->nbcc = 0;
}
