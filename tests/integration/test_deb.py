"""The Debian packages: `make deb` builds relayq and relayq-mta with Debian's
tools, lintian finds no error, relayq installs beside Postfix, runs from the
installed paths, and `dpkg -r` / `dpkg --purge` leave nothing behind.
relayq-mta is checked without installing it (that would remove Postfix).

Runs as root only, one at a time on a machine (a lock file), and never
touches a relayq package that was installed before it started."""
import fcntl
import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import time

from harness import ROOT, Skip, free_port

LOCK = os.path.join('/run/lock' if os.path.isdir('/run/lock') else '/tmp', 'relayq-deb-test.lock')
MSG = 'From: a@sender.test\r\nSubject: deb\r\n\r\nbody\r\n'
# Where a package's files could stay behind; scanned for names with "relayq".
# dpkg-buildpackage, install, run and purge, then a walk of SCAN before and
# after: on a loaded 2-core machine this took over the default 180 s.
TIMEOUT = 600

SCAN = ['/etc', '/usr', '/lib', '/var/spool', '/var/log', '/var/lib/systemd', '/var/lib/dpkg/info', '/run/systemd']


def run(argv, check=True, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError('%s exited %d:\n%s%s' % (' '.join(argv), r.returncode, r.stdout, r.stderr))
    return r


def dpkg(*args, check=True):
    """dpkg, waiting (bounded) while another dpkg or apt holds the lock."""
    deadline = time.time() + 600
    while True:
        r = run(['dpkg'] + list(args), check=False)
        if 'lock' in r.stderr and 'locked' in r.stderr and time.time() < deadline:
            time.sleep(2)
            continue
        if check and r.returncode != 0:
            raise AssertionError('dpkg %s exited %d:\n%s%s' % (' '.join(args), r.returncode, r.stdout, r.stderr))
        return r


def status(pkg):
    r = run(['dpkg-query', '-W', '-f=${Status}', pkg], check=False)
    return r.stdout.strip() if r.returncode == 0 else 'not-installed'


def relayq_paths():
    found = set()
    for top in SCAN:
        for dirpath, dirnames, filenames in os.walk(top):
            for n in dirnames + filenames:
                if 'relayq' in n:
                    found.add(os.path.join(dirpath, n))
    return found


def test_build_depends_match_scripts_deps(env):
    """Every -dev package of scripts/deps' BUILD list is a Build-Depends of
    debian/control (a library added to one must be added to the other)."""
    with open(os.path.join(ROOT, 'scripts', 'deps')) as f:
        m = re.search(r'^BUILD="([^"]*)"', f.read(), re.M)
    with open(os.path.join(ROOT, 'debian', 'control')) as f:
        control = f.read()
    bd = re.search(r'^Build-Depends:(.*?)^\S', control, re.M | re.S).group(1)
    declared = {re.split(r'[\s(]', p.strip())[0] for p in bd.split(',') if p.strip()}
    missing = [p for p in m.group(1).split() if p.endswith('-dev') and p not in declared
               and not p.startswith('libclang')]
    assert not missing, 'add to debian/control Build-Depends: %s' % missing


def build(env):
    for prog in ('dpkg-buildpackage', 'lintian', 'dh'):
        if shutil.which(prog) is None:
            raise Skip('%s not installed' % prog)
    out = os.path.join(env.dir, 'out')
    os.makedirs(out)
    r = run(['make', '-C', ROOT, 'deb', 'DEB_DIR=' + os.path.join(env.dir, 'deb'), 'DEB_OUT=' + out],
            check=False, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    debs = {}
    for n in os.listdir(out):
        m = re.match(r'(relayq(?:-mta)?)_[^_]+_(amd64|all|[a-z0-9]+)\.deb$', n)
        if m:
            debs[m.group(1)] = os.path.join(out, n)
    assert set(debs) == {'relayq', 'relayq-mta'}, os.listdir(out)
    changes = [os.path.join(env.dir, 'deb', n) for n in os.listdir(os.path.join(env.dir, 'deb'))
               if n.endswith('.changes')]
    assert len(changes) == 1, changes
    return debs, changes[0]


def check_mta_package(deb):
    fields = {f: run(['dpkg-deb', '-f', deb, f]).stdout.strip() for f in ('Provides', 'Conflicts', 'Replaces', 'Depends')}
    for f in ('Provides', 'Conflicts', 'Replaces'):
        assert fields[f] == 'mail-transport-agent', fields
    assert fields['Depends'].startswith('relayq '), fields
    listing = run(['dpkg-deb', '-c', deb]).stdout
    links = dict(re.findall(r'\./(\S+) -> (\S+)', listing))
    assert links.get('usr/sbin/sendmail') == '../bin/relayq', links
    assert links.get('usr/bin/mailq') == 'relayq', links
    # Installing it for real would remove Postfix (the test suite needs it):
    # dpkg --dry-run shows the conflict, apt's simulation the replacement.
    r = dpkg('--dry-run', '-i', deb, check=False)
    if status('postfix').startswith('install ok'):
        assert r.returncode != 0, r.stdout + r.stderr
        assert re.search(r'relayq-mta conflicts with mail-transport-agent', r.stderr), r.stderr
        assert 'postfix provides mail-transport-agent' in r.stderr, r.stderr
        s = run(['apt-get', '-s', '-q', '-o', 'Debug::NoLocking=1', 'install', deb], check=False)
        assert s.returncode == 0, s.stdout + s.stderr
        assert re.search(r'^Remv postfix ', s.stdout, re.M), s.stdout
        assert re.search(r'^Inst relayq-mta ', s.stdout, re.M), s.stdout
    else:
        assert r.returncode == 0, r.stdout + r.stderr


def test_deb_build_install_run_purge(env):
    import harness
    if harness.SANITIZE:
        raise Skip('builds its own package from the sources: nothing for the sanitizer pass to check')
    if os.geteuid() != 0:
        raise Skip('installs a package: needs root')
    lock = open(LOCK, 'w')
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        if status('relayq') != 'not-installed' or status('relayq-mta') != 'not-installed':
            raise Skip('a relayq package is already installed here (%s); not touching it' % status('relayq'))
        debs, changes = build(env)
        r = run(['lintian', '--tag-display-limit', '0', changes], check=False, timeout=600)
        errors = [l for l in r.stdout.splitlines() if l.startswith('E:')]
        assert not errors and r.returncode in (0, 2), r.stdout + r.stderr
        assert run(['dpkg-deb', '-f', debs['relayq'], 'Provides']).stdout.strip() == ''
        conffiles = run(['dpkg-deb', '-I', debs['relayq'], 'conffiles']).stdout.split()
        assert '/etc/relayq/relayq.cf' in conffiles, conffiles

        before = relayq_paths()
        had_user = [n for n in ('relayq',) if _exists(pwd.getpwnam, n)]
        try:
            _installed_package(env, debs)
        finally:
            dpkg('--purge', 'relayq-mta', 'relayq', check=False)
        assert status('relayq') == 'not-installed'
        left = relayq_paths() - before
        assert not left, 'left behind after purge: %s' % sorted(left)
        # kept on purge (see debian/relayq.postrm)
        assert _exists(pwd.getpwnam, 'relayq') and _exists(grp.getgrnam, 'relayqdrop'), had_user
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def _exists(fn, name):
    try:
        fn(name)
        return True
    except KeyError:
        return False


def _installed_package(env, debs):
    dpkg('-i', debs['relayq'])
    assert status('relayq') == 'install ok installed'
    # beside Postfix: its sendmail and mailq are untouched
    for f in ('/usr/sbin/sendmail', '/usr/bin/mailq'):
        assert 'relayq' not in os.path.realpath(f), os.path.realpath(f)
    for f in ('/usr/sbin/relayqd', '/usr/bin/relayq', '/usr/bin/relayq-mailq', '/usr/bin/relayq-sendmail',
              '/etc/relayq/relayq.cf', '/lib/systemd/system/relayq.service', '/etc/logrotate.d/relayq',
              '/usr/share/man/man8/relayqd.8.gz', '/usr/share/man/man5/relayq.cf.5.gz'):
        assert os.path.lexists(f), f
    # user, group, spool made by postinst
    pw = pwd.getpwnam('relayq')
    grp.getgrnam('relayqdrop')
    st = os.stat('/var/spool/relayq')
    assert st.st_uid == pw.pw_uid and (st.st_mode & 0o777) == 0o755, (st.st_uid, oct(st.st_mode))
    # the unit is enabled; without a running systemd it is not started
    assert os.path.islink('/etc/systemd/system/multi-user.target.wants/relayq.service')
    if not os.path.isdir('/run/systemd/system'):
        assert not os.path.exists('/var/log/relayq.log'), 'relayqd was started at install'
    else:
        run(['systemctl', 'stop', 'relayq.service'], check=False)
    r = run(['/usr/bin/relayq', 'check'], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run(['logrotate', '-d', '/etc/logrotate.d/relayq'], check=False)
    assert r.returncode == 0, r.stdout + r.stderr

    # relayqd by hand from the installed paths: the packaged relayq.cf with a
    # loopback port and a sink as next hop; the packaged spool and log file.
    sink = env.pysink()
    conf = os.path.join(env.dir, 'etc-relayq')
    os.makedirs(conf)
    port = free_port()
    with open('/etc/relayq/relayq.cf') as f:
        cf = f.read()
    with open(os.path.join(conf, 'relayq.cf'), 'w') as f:
        f.write(cf + '\nsmtpd_listen = 127.0.0.1:%d\nrelayhost = [127.0.0.1]:%d\n'
                'myhostname = deb.relayq.test\ndns_servers = 127.0.0.1:1\n' % (port, sink.port))
    p = env.spawn(['/usr/sbin/relayqd', '-c', conf])
    try:
        deadline = time.time() + 20
        while 'daemon started' not in _read('/var/log/relayq.log'):
            assert p.poll() is None and time.time() < deadline, _read('/var/log/relayq.log')
            time.sleep(0.1)
        env.send(port, 'a@sender.test', ['b@dest.test'], MSG)
        # a local user's sendmail through the installed maildrop
        r = run(['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups',
                 '/usr/bin/relayq-sendmail', '-C', conf, '-f', 'n@sender.test', 'c@dest.test'],
                input=MSG, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        msgs = sink.wait_messages(2, timeout=30)
        assert sorted(m['rcpts'][0] for m in msgs) == ['b@dest.test', 'c@dest.test'], msgs
        deadline = time.time() + 20
        while len(re.findall(r'status=sent', _read('/var/log/relayq.log'))) < 2:
            assert time.time() < deadline, _read('/var/log/relayq.log')
            time.sleep(0.1)
        r = run(['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups',
                 '/usr/bin/relayq-mailq', '-C', conf], check=False)
        assert r.returncode == 0 and 'Mail queue is empty' in r.stdout, r.stdout + r.stderr
        st = os.stat('/var/spool/relayq/queue.db')
        assert st.st_uid == pwd.getpwnam('relayq').pw_uid
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    assert p.returncode == 0, p.returncode

    check_mta_package(debs['relayq-mta'])

    # remove: programs gone, configuration, queue and log kept
    dpkg('-r', 'relayq')
    assert status('relayq') == 'deinstall ok config-files'
    assert not os.path.exists('/usr/sbin/relayqd')
    assert os.path.exists('/etc/relayq/relayq.cf')
    assert os.path.exists('/var/spool/relayq/queue.db')
    # purge: everything (checked by the caller against a listing taken before)
    dpkg('--purge', 'relayq')
    for f in ('/etc/relayq', '/var/spool/relayq', '/var/log/relayq.log',
              '/etc/systemd/system/multi-user.target.wants/relayq.service'):
        assert not os.path.lexists(f), f


def _read(path):
    try:
        with open(path, errors='replace') as f:
            return f.read()
    except OSError:
        return ''
