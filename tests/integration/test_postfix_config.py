"""A Postfix configuration that loads: Debian's stock main.cf files and an
"Internet Site" main.cf pass `relayq config --check` (Postfix parameters
relayq does not implement are information, not errors), relayqd runs on
one, and a name unknown to both is an error with a suggestion."""
import os
import subprocess

from harness import Skip

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, '..', 'fixtures', 'debian-internet-site', 'relayq.cf')


def confdir(env, name, text):
    d = os.path.join(env.dir, name)
    os.makedirs(d)
    with open(os.path.join(d, 'relayq.cf'), 'w') as f:
        f.write(text)
    return d


def run_cli(env, d, *args):
    import harness
    q = os.path.join(env.dir, 'spool-' + os.path.basename(d))
    os.makedirs(q, exist_ok=True)
    return subprocess.run([os.path.join(harness.BIN, 'relayq'), '-c', d, '-o', 'queue_directory=' + q] + list(args),
                          capture_output=True, text=True, timeout=60)


def test_debian_stock_main_cf_loads(env):
    parts = ['/usr/share/postfix/main.cf.debian', '/usr/share/postfix/main.cf.tls']
    if not all(os.path.exists(p) for p in parts):
        raise Skip("Debian's postfix package is not installed")
    text = ''.join(open(p).read() for p in parts)
    d = confdir(env, 'debian', text)
    r = run_cli(env, d, 'config', '--check')
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ('biff', 'append_dot_mydomain', 'readme_directory'):
        assert '%s is a Postfix parameter that relayq does not implement' % name in r.stdout, r.stdout
    assert 'unknown parameter' not in r.stderr, r.stderr


def test_internet_site_main_cf_runs(env):
    text = open(FIXTURE).read()
    d = confdir(env, 'site', text)
    r = run_cli(env, d, 'config', '--check')
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'alias_maps is a Postfix parameter that relayq does not implement: unused: relayq delivers nothing locally' in r.stdout
    # /etc/mailname (Debian's myorigin): a path names the file with the name
    mailname = os.path.join(env.dir, 'mailname')
    with open(mailname, 'w') as f:
        f.write('origin.example.test\n')
    sink = env.pysink()
    dm = env.relayqd(start=False, relayhost='[127.0.0.1]:%d' % sink.port)
    with open(os.path.join(dm.confdir, 'relayq.cf'), 'w') as f:
        f.write(text.replace('myorigin = /etc/mailname', 'myorigin = ' + mailname))
        for k, v in dm.params.items():
            f.write('%s = %s\n' % (k, v))
    dm.start()
    r = env.cli(dm, '-f', 'root', 'ops@dest.test', input='Subject: from cron\n\nhello\n', prog='sendmail')
    assert r.returncode == 0, r.stderr
    m = sink.wait_messages(1)[0]
    assert m['from'] == 'root@origin.example.test', m
    assert 'unknown parameter' not in dm.stderr_text()


def test_unknown_names_are_errors_with_a_suggestion(env):
    d = confdir(env, 'typo', 'myhostnme = mx.example.test\nbiff = no\n'
                             'mua_client_restrictions = permit_sasl_authenticated, reject\n')
    with open(os.path.join(d, 'master.cf'), 'w') as f:
        f.write('submission inet n - y - - smtpd\n  -o smtpd_client_restrictions=$mua_client_restrictions\n')
    r = run_cli(env, d, 'config', '--check')
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'unknown parameter "myhostnme" (did you mean "myhostname"?)' in r.stderr, r.stderr
    # a Postfix name is information; a name used in a $expansion is the administrator's own
    assert 'biff is a Postfix parameter' in r.stdout
    assert 'mua_client_restrictions' not in r.stderr, r.stderr
    assert '1 unknown parameter name' in r.stderr
