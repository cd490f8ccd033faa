"""docs/log-lines.md lists every log line in the C sources (the extraction
is scripts/log-formats, also run by hand: scripts/log-formats --missing)."""
import importlib.machinery
import importlib.util
import os

from harness import ROOT


def load():
    path = os.path.join(ROOT, 'scripts', 'log-formats')
    loader = importlib.machinery.SourceFileLoader('log_formats', path)
    spec = importlib.util.spec_from_loader('log_formats', loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def test_every_log_format_is_catalogued(env):
    lf = load()
    found = lf.formats()
    fmts = {f[3] for f in found}
    # the extraction itself finds what it must (else this test would pass on nothing)
    for known in ('connect from %s', 'disconnect from %s%s', '%s: client=%s',
                  'daemon started -- version %s, configuration %s', '%s: removed'):
        assert known in fmts, known
    assert len(found) >= 100, len(found)
    gaps = lf.missing()
    assert not gaps, 'add to docs/log-lines.md:\n' + '\n'.join(
        '%s:%d (%s) `%s`' % (f, l, s or '-', fmt) for f, l, s, fmt, fn in gaps)


def test_extraction_finds_wrappers_and_skips_the_rest(env):
    """A macro or a printf-style function around log_*, msg_*, formats split over
    lines and with escaped quotes, and calls inside comments or strings."""
    lf = load()
    src = os.path.join(env.dir, 'src', 'x')
    os.makedirs(src)
    with open(os.path.join(src, 'x.c'), 'w') as f:
        f.write(r'''
#define XWARN(s, fmt, ...) log_warn("smtpd", "%s: " fmt, (s)->id, __VA_ARGS__)
static void x_log(X *x, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg("qmgr", fmt, ap);
    va_end(ap);
}
void f(X *x)
{
    log_msg("smtpd", "first %s, "
	    "second \"%d\" | bar", a, b);
    XWARN(x, "macro %s", y);
    x_log(x, "wrapped %d", 3);
    msg_warn("diagnostic %s", "not the format");
    /* log_msg("smtpd", "in a comment"); */
    puts("log_msg(\"smtpd\", \"in a string\")");
    snprintf(buf, sizeof(buf), "not a log line %s", z);
}
''')
    got = {(s, fmt) for _, _, s, fmt, _ in lf.formats(env.dir)}
    assert ('smtpd', 'first %s, second "%d" | bar') in got, got
    assert (None, 'macro %s') in got, got
    assert (None, 'wrapped %d') in got, got
    assert (None, 'diagnostic %s') in got, got
    texts = {fmt for _, fmt in got}
    assert not any('comment' in t or 'in a string' in t or 'not a log line' in t for t in texts), texts
    # the catalogue's table cells escape | as \|
    cat = os.path.join(env.dir, 'cat.md')
    with open(cat, 'w') as f:
        f.write('| `first %s, second "%d" \\| bar` | x |\n| `macro %s` | y |\n')
    missing = {fmt for _, _, _, fmt, _ in lf.missing(env.dir, cat)}
    assert missing == {'wrapped %d', 'diagnostic %s'}, missing
