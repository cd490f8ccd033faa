"""relayq as a service: install tree, systemd unit, signals, crash safety,
privilege drop, metrics, log tools."""
import concurrent.futures
import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import time
import urllib.request

from harness import ROOT, BIN, Skip, free_port

MSG = 'From: a@sender.test\r\nSubject: svc\r\n\r\nbody\r\n'


def test_install_into_destdir(env):
    dest = os.path.join(env.dir, 'root')
    r = subprocess.run(['make', '-C', ROOT, 'install', 'PREFIX=/usr/local', 'DESTDIR=' + dest],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for f in ['usr/local/sbin/relayqd', 'usr/local/bin/relayq', 'usr/local/share/man/man8/relayqd.8',
              'usr/local/share/man/man1/relayq.1', 'usr/local/share/man/man5/relayq.cf.5',
              'usr/local/etc/relayq/relayq.cf.example', 'usr/local/lib/systemd/system/relayq.service']:
        assert os.path.exists(os.path.join(dest, f)), f
    assert os.access(os.path.join(dest, 'usr/local/sbin/relayqd'), os.X_OK)
    # never another MTA's sendmail/mailq
    for f in ['usr/sbin/sendmail', 'usr/bin/mailq', 'usr/local/sbin/sendmail', 'usr/local/bin/mailq']:
        assert not os.path.lexists(os.path.join(dest, f)), f
    unit = open(os.path.join(dest, 'usr/local/lib/systemd/system/relayq.service')).read()
    assert 'ExecStart=/usr/local/sbin/relayqd -c /usr/local/etc/relayq' in unit
    assert 'NoNewPrivileges=yes' in unit
    # man pages render
    for page in ['man8/relayqd.8', 'man1/relayq.1', 'man5/relayq.cf.5']:
        r = subprocess.run(['man', '-l', '-Tutf8', os.path.join(dest, 'usr/local/share/man', page)],
                           capture_output=True, text=True, env=dict(os.environ, MANPAGER='cat', MANWIDTH='80'))
        if r.returncode != 0 and 'not found' in r.stderr:
            raise Skip('man not installed')
        assert r.returncode == 0 and len(r.stdout) > 200, page + r.stderr
    if shutil.which('systemd-analyze') is None:
        raise Skip('systemd-analyze not installed')
    # Verified (not started) on a copy whose paths point into DESTDIR, with
    # the installed man pages on MANPATH for its Documentation= lines.
    copy = os.path.join(env.dir, 'relayq.service')
    with open(copy, 'w') as f:
        f.write(unit.replace('/usr/local/sbin/relayqd', os.path.join(dest, 'usr/local/sbin/relayqd')))
    r = subprocess.run(['systemd-analyze', 'verify', copy], capture_output=True, text=True,
                       env=dict(os.environ, MANPATH=os.path.join(dest, 'usr/local/share/man') + ':'))
    assert r.returncode == 0, r.stdout + r.stderr


def test_sigterm_and_kill9_lose_nothing(env):
    """Every message that got 250 is delivered, after a SIGTERM and after a kill -9 under load."""
    port = free_port()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % port, queue_run_delay='1s',
                    minimal_backoff_time='1s', maximal_backoff_time='2s')
    accepted = []

    def client(i):
        got = []
        for k in range(15):
            try:
                got.append(env.send(d.port, 's@sender.test', ['r%d-%d@dest.test' % (i, k)], MSG))
            except (OSError, smtplib.SMTPException, AssertionError):
                break
        return got

    with concurrent.futures.ThreadPoolExecutor(10) as ex:
        futs = [ex.submit(client, i) for i in range(10)]
        time.sleep(0.4)
        d.proc.send_signal(signal.SIGKILL)
        for f in futs:
            accepted += [q for q in f.result() if q]
    d.proc.wait()
    assert accepted, 'nothing was accepted before the kill'
    d.start()
    with concurrent.futures.ThreadPoolExecutor(10) as ex:
        futs = [ex.submit(client, i) for i in range(10, 20)]
        time.sleep(0.3)
        d.proc.send_signal(signal.SIGTERM)
        for f in futs:
            accepted += [q for q in f.result() if q]
    assert d.proc.wait(30) == 0, d.stderr_text()
    sink = env.pysink(port=port)
    d.start()
    sink.wait_messages(len(accepted), timeout=60)
    got = {m['rcpts'][0] for m in sink.messages}
    assert len(got) >= len(accepted)
    for qid in accepted:
        d.wait_log(r'%s: to=<.*status=sent' % qid, timeout=30)


def test_sighup_reload(env):
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port)
    env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    sink.wait_messages(1)
    # a bad configuration is reported and the old one kept
    with open(os.path.join(d.confdir, 'relayq.cf'), 'a') as f:
        f.write('queue_run_delay = 5x\n')
    d.hup()
    d.wait_log(r'reload failed, keeping the old configuration: .*queue_run_delay')
    env.send(d.port, 'a@sender.test', ['c@dest.test'], MSG)
    sink.wait_messages(2)
    # a good one takes effect
    sink2 = env.pysink()
    d.params.pop('queue_run_delay', None)
    d.write_config(relayhost='[127.0.0.1]:%d' % sink2.port)
    d.hup()
    d.wait_log(r'master\[\d+\]: reload -- version')
    env.send(d.port, 'a@sender.test', ['e@dest.test'], MSG)
    sink2.wait_messages(1)
    assert d.proc.poll() is None


def test_privilege_drop_when_started_as_root(env):
    if os.geteuid() != 0:
        raise Skip('needs root')
    try:
        pw = pwd.getpwnam('relayq')
    except KeyError:
        raise Skip('no relayq user (scripts/deps creates it)')
    os.chmod(env.dir, 0o755)
    d = env.relayqd()
    status = open('/proc/%d/status' % d.proc.pid).read()
    uids = re.search(r'^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)', status, re.M).groups()
    assert all(int(u) == pw.pw_uid for u in uids), uids
    st = os.stat(d.queue_dir)
    assert st.st_uid == pw.pw_uid
    db = os.path.join(d.queue_dir, 'queue.db')
    assert os.stat(db).st_uid == pw.pw_uid
    assert os.stat(db).st_mode & 0o077 == 0, oct(os.stat(db).st_mode)


def test_missing_mail_owner_is_a_clear_error(env):
    if os.geteuid() != 0:
        raise Skip('needs root')
    d = env.relayqd(start=False, mail_owner='no-such-user-relayq')
    r = subprocess.run([os.path.join(BIN, 'relayqd'), '-c', d.confdir], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1
    assert 'no-such-user-relayq' in r.stderr and 'useradd' in r.stderr, r.stderr


def test_metrics_and_promtool(env):
    sink = env.pysink()
    mport = free_port()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, metrics_listen='127.0.0.1:%d' % mport)
    for i in range(5):
        env.send(d.port, 'a@sender.test', ['m%d@dest.test' % i], MSG)
    sink.wait_messages(5)
    d.wait_log(r'status=sent', count=5)
    text = urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mport, timeout=10).read().decode()
    sent = re.search(r'^relayq_deliveries_total\{status="sent"\} (\d+)', text, re.M)
    assert sent and int(sent.group(1)) == 5, text
    acc = re.search(r'^relayq_smtpd_messages_total (\d+)', text, re.M)
    assert acc and int(acc.group(1)) == 5
    assert re.search(r'^relayq_queue_messages\{state="deferred"\} 0', text, re.M)
    if shutil.which('promtool') is None:
        raise Skip('promtool not installed')
    r = subprocess.run(['promtool', 'check', 'metrics'], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_pflogsumm_counts(env):
    if shutil.which('pflogsumm') is None:
        raise Skip('pflogsumm not installed')

    def rcpt(addr):
        return '550 5.1.1 no such user' if addr.startswith('bad') else '250 2.1.5 Ok'
    sink = env.pysink(replies={'rcpt': rcpt})
    dead = free_port()
    d = env.relayqd(syslog_name='postfix', mynetworks='127.0.0.2/32',
                    relay_domains='dest.test fail.test',
                    transport_maps='inline:{ fail.test=smtp:[127.0.0.1]:%d }' % dead,
                    relayhost='[127.0.0.1]:%d' % sink.port)
    for i in range(3):
        env.send(d.port, 'a@sender.test', ['ok%d@dest.test' % i], MSG)
    env.send(d.port, 'a@sender.test', ['bad@dest.test'], MSG)
    env.send(d.port, 'a@sender.test', ['x@fail.test'], MSG)
    try:
        env.send(d.port, 'a@sender.test', ['x@elsewhere.test'], MSG)
    except AssertionError:
        pass
    d.wait_log(r'status=bounced')
    d.wait_log(r'status=deferred')
    # 3 deliveries and the non-delivery notice for bad@dest.test to a@sender.test
    d.wait_log(r'sender non-delivery notification')
    d.wait_log(r'status=sent', count=4)
    r = subprocess.run(['pflogsumm', d.logfile], capture_output=True, text=True)
    out = r.stdout

    def count(label):
        m = re.search(r'^\s*(\d+)\s+%s\b' % label, out, re.M)
        return int(m.group(1)) if m else None
    assert count('received') == 5, out[:1500]
    assert count('delivered') == 4, out[:1500]
    assert count('deferred') == 1, out[:1500]
    assert count('bounced') == 1, out[:1500]
    assert count('rejected') == 1, out[:1500]


def test_sighup_under_load_drops_nothing(env):
    """Reloads while 5 clients send: no session is dropped, every accepted message is delivered."""
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port)
    errors = []

    def client(i):
        got = []
        with smtplib.SMTP('127.0.0.1', d.port, timeout=30) as s:
            s.ehlo('client.test')
            for k in range(20):
                try:
                    s.sendmail('s@sender.test', ['h%d-%d@dest.test' % (i, k)], MSG)
                    got.append(k)
                except smtplib.SMTPException as e:
                    errors.append(repr(e))
                time.sleep(0.01)
        return got

    with concurrent.futures.ThreadPoolExecutor(5) as ex:
        futs = [ex.submit(client, i) for i in range(5)]
        for _ in range(3):
            time.sleep(0.1)
            d.hup()
        sent = sum(len(f.result()) for f in futs)
    assert errors == [], errors
    assert sent == 100
    sink.wait_messages(100, timeout=30)
    assert len(re.findall(r'reload -- version', d.log())) == 3
    # (the harness's readiness probe shows as "lost connection after CONNECT")
    assert not re.search(r'lost connection after (?!CONNECT)', d.log()), d.log()


def test_reload_warnings_reach_the_maillog(env):
    """A configuration warning on SIGHUP goes to the maillog under the
    daemon's name, not to the stderr nobody reads once it runs."""
    d = env.relayqd()
    with open(os.path.join(d.confdir, 'relayq.cf'), 'a') as f:
        f.write('no_such_parameter_xyz = 1\n')
    d.hup()
    d.wait_log(r'master\[\d+\]: reload -- version')
    d.wait_log(r'relayq/master\[\d+\]: warning: .*relayq\.cf, line \d+: '
               r'unknown parameter "no_such_parameter_xyz"')
    assert 'no_such_parameter_xyz' not in d.stderr_text(), d.stderr_text()
    assert d.proc.poll() is None


def test_startup_fatal_names_relayqd_on_stderr_and_in_the_log(env):
    """A start-up failure after the log is open: "relayqd: fatal: ..." on
    stderr and "fatal: ..." in the maillog, exit status 1, and the queue
    lock released (a second start with a free port works)."""
    busy = socket.socket()
    busy.bind(('127.0.0.1', 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        # metrics_listen: a failure main() used to report on stderr only
        d = env.relayqd(start=False, metrics_listen='127.0.0.1:%d' % port)
        d.start(wait=False)
        rc = d.proc.wait(20)
        assert rc == 1, rc
        err = d.stderr_text()
        assert re.search(r'^relayqd: fatal: .*127\.0\.0\.1:%d' % port, err, re.M), err
        assert 'relayq: fatal' not in err, err
        assert re.search(r'relayq/master\[\d+\]: fatal: .*127\.0\.0\.1:%d' % port, d.log()), d.log()
    finally:
        busy.close()
    d.write_config(metrics_listen='127.0.0.1:%d' % free_port())
    d.start()
    assert d.proc.poll() is None
