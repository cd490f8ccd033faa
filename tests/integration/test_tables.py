"""Lookup tables in the daemon: transport_maps and relay_domains from files
built by Postfix's own postmap, relayq postmap read by postmap -q, reloads
that keep the last good table, a clear error at start, and a table only
root may read (kept across SIGHUP, with a warning)."""
import os
import pwd
import re
import shutil
import smtplib
import subprocess
import time

from harness import BIN, Skip

MSG = 'From: a@sender.test\r\nTo: b@dest.test\r\nSubject: tables\r\n\r\nhello\r\n'


def pfconf(env):
    d = os.path.join(env.dir, 'pfconf')
    if not os.path.isdir(d):
        os.makedirs(d)
        with open(os.path.join(d, 'main.cf'), 'w') as f:
            f.write('compatibility_level = 3.6\n')
    return d


def postfix_postmap(env, *args):
    if shutil.which('postmap') is None:
        raise Skip('postmap (package postfix) is not installed')
    return subprocess.run(['postmap', '-c', pfconf(env)] + list(args),
                          capture_output=True, text=True, timeout=60)


def write(path, text, mode=0o644):
    with open(path, 'w') as f:
        f.write(text)
    os.chmod(path, mode)


def rcpt_reply(port, rcpt):
    with smtplib.SMTP('127.0.0.1', port, local_hostname='client.test', timeout=30) as s:
        s.ehlo('client.test')
        s.mail('a@sender.test')
        return s.rcpt(rcpt)


def test_tables_built_by_postfix_postmap(env):
    sink = env.pysink()
    tdir = os.path.join(env.dir, 'tables')
    os.makedirs(tdir)
    os.chmod(tdir, 0o755)
    transport = os.path.join(tdir, 'transport')
    relay = os.path.join(tdir, 'relay')
    write(transport, 'Routed.Test   smtp:[127.0.0.1]:%d\n'
                     'vip@other.test smtp:[127.0.0.1]:%d\n' % (sink.port, sink.port))
    write(relay, 'allowed.test OK\nrouted.test OK\nother.test OK\n')
    for t in ('hash:' + transport, 'lmdb:' + relay):
        r = postfix_postmap(env, t)
        assert r.returncode == 0, r.stderr
    # The client is not in mynetworks: relay_domains decides.
    d = env.relayqd(mynetworks='10.255.0.0/16', transport_maps='hash:' + transport,
                    relay_domains='example.invalid, lmdb:' + relay, recipient_delimiter='+')
    code, resp = rcpt_reply(d.port, 'x@sub.allowed.test')      # a parent domain key
    assert code == 250, (code, resp)
    code, resp = rcpt_reply(d.port, 'x@elsewhere.test')
    assert code == 454 and b'Relay access denied' in resp, (code, resp)
    # transport_maps: the domain, and the address without its extension.
    qid = env.send(d.port, 'a@sender.test', ['b@routed.test', 'vip+tag@other.test'], MSG)
    msgs = sink.wait_messages(1)
    assert sorted(msgs[0]['rcpts']) == ['b@routed.test', 'vip+tag@other.test'], msgs
    d.wait_log(r'%s: removed' % qid)

    # A table written by relayq postmap answers Postfix's postmap -q.
    write(transport + '2', 'mine.test smtp:[192.0.2.7]:2525\n')
    r = subprocess.run([os.path.join(BIN, 'relayq'), 'postmap', 'cdb:' + transport + '2'],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = postfix_postmap(env, '-q', 'MINE.test', 'cdb:' + transport + '2')
    assert r.returncode == 0 and r.stdout == 'smtp:[192.0.2.7]:2525\n', (r.returncode, r.stdout, r.stderr)
    r = postfix_postmap(env, '-q', 'nope.test', 'cdb:' + transport + '2')
    assert r.returncode == 1, r.stdout
    r = subprocess.run([os.path.join(BIN, 'relayq'), 'postmap', '-q', 'nope.test',
                        'cdb:' + transport + '2'], capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout == '', (r.returncode, r.stdout)

    # -i adds to a table Postfix built; -q - answers key<TAB>value for the keys found.
    relayq = os.path.join(BIN, 'relayq')
    r = subprocess.run([relayq, 'postmap', '-i', 'hash:' + transport], input='Added.Test smtp:[192.0.2.9]\n',
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = postfix_postmap(env, '-q', 'added.test', 'hash:' + transport)
    assert r.stdout == 'smtp:[192.0.2.9]\n', (r.stdout, r.stderr)
    r = subprocess.run([relayq, 'postmap', '-q', '-', 'hash:' + transport],
                       input='routed.test\nmissing.test\nADDED.TEST\n', capture_output=True, text=True)
    assert r.returncode == 0
    assert r.stdout == 'routed.test\tsmtp:[127.0.0.1]:%d\nADDED.TEST\tsmtp:[192.0.2.9]\n' % sink.port, r.stdout


def test_tables_reload_keeps_last_good(env):
    a = env.pysink()
    b = env.pysink()
    tdir = os.path.join(env.dir, 'tables')
    os.makedirs(tdir)
    os.chmod(tdir, 0o755)
    transport = os.path.join(tdir, 'transport')
    write(transport, 'routed.test smtp:[127.0.0.1]:%d\n' % a.port)
    d = env.relayqd(transport_maps='texthash:' + transport)
    env.send(d.port, 'a@sender.test', ['x@routed.test'], MSG)
    a.wait_messages(1)
    # A broken edit: one warning naming file and line, the last good table stays.
    write(transport, 'routed.test smtp:[127.0.0.1]:%d\nbroken-line-without-value\n' % b.port)
    d.hup()
    d.wait_log(r'warning: transport_maps: %s, line 2: expected format: key whitespace value; '
               r'keeping the last good contents' % re.escape(transport))
    env.send(d.port, 'a@sender.test', ['y@routed.test'], MSG)
    a.wait_messages(2)
    time.sleep(0.5)
    assert len(b.wait_messages(0)) == 0
    assert len(re.findall(r'keeping the last good contents', d.log())) == 1, d.log()
    assert d.proc.poll() is None
    # Fixed: the new contents are used.
    write(transport, 'routed.test smtp:[127.0.0.1]:%d\n' % b.port)
    d.hup()
    d.wait_log(r'reload -- version', count=2)
    env.send(d.port, 'a@sender.test', ['z@routed.test'], MSG)
    b.wait_messages(1)


def test_tables_bad_at_start_is_fatal(env):
    missing = os.path.join(env.dir, 'no-such-transport')
    d = env.relayqd(start=False, transport_maps='hash:' + missing)
    d.start(wait=False)
    assert d.proc.wait(timeout=20) == 1
    err = d.stderr_text()
    assert 'relayqd: fatal: ' in err and 'open database %s.db: No such file or directory' % missing in err, err

    regexp = os.path.join(env.dir, 'bad.regexp')
    write(regexp, '/ok/ OK\n/unclosed OK\n')
    d = env.relayqd(start=False, relay_domains='regexp:' + regexp)
    d.start(wait=False)
    assert d.proc.wait(timeout=20) == 1
    err = d.stderr_text()
    assert 'regexp map %s, line 2: no closing regexp delimiter "/"' % regexp in err, err

    d = env.relayqd(start=False, transport_maps='socketmap:inet:127.0.0.1:9:x')
    d.start(wait=False)
    assert d.proc.wait(timeout=20) == 1
    assert 'socketmap tables are not supported here yet' in d.stderr_text()


def test_tables_root_only_file_kept_across_hup(env):
    if os.geteuid() != 0:
        raise Skip('needs root (relayqd reads the table as root, then runs as mail_owner)')
    try:
        pwd.getpwnam('relayq')
    except KeyError:
        raise Skip('no relayq user (scripts/deps --users)')
    a = env.pysink()
    b = env.pysink()
    tdir = os.path.join(env.dir, 'secret')
    os.makedirs(tdir)
    os.chmod(tdir, 0o755)
    transport = os.path.join(tdir, 'transport')
    write(transport, 'routed.test smtp:[127.0.0.1]:%d\n' % a.port, mode=0o600)
    d = env.relayqd(transport_maps='texthash:' + transport, mail_owner='relayq')
    env.send(d.port, 'a@sender.test', ['x@routed.test'], MSG)
    a.wait_messages(1)
    write(transport, 'routed.test smtp:[127.0.0.1]:%d\n' % b.port, mode=0o600)
    d.hup()
    d.wait_log(r'warning: transport_maps: texthash:%s: cannot read it again without privileges: '
               r'keeping the contents read at start; restart relayqd to read it again'
               % re.escape(transport))
    env.send(d.port, 'a@sender.test', ['y@routed.test'], MSG)
    a.wait_messages(2)
    assert d.proc.poll() is None


def test_tables_postfix_rebuild_while_running(env):
    """Postfix's postmap rewrites the .db file in place under its lock while
    relayqd has it open: relayqd re-opens it (within a second) and routes by
    the new contents, without a SIGHUP."""
    a = env.pysink()
    b = env.pysink()
    tdir = os.path.join(env.dir, 'tables')
    os.makedirs(tdir)
    os.chmod(tdir, 0o755)
    transport = os.path.join(tdir, 'transport')
    write(transport, 'routed.test smtp:[127.0.0.1]:%d\n' % a.port)
    r = postfix_postmap(env, 'hash:' + transport)
    assert r.returncode == 0, r.stderr
    d = env.relayqd(transport_maps='hash:' + transport)
    env.send(d.port, 'a@sender.test', ['x@routed.test'], MSG)
    a.wait_messages(1)
    write(transport, 'routed.test smtp:[127.0.0.1]:%d\n' % b.port)
    r = postfix_postmap(env, 'hash:' + transport)
    assert r.returncode == 0, r.stderr
    time.sleep(1.2)
    env.send(d.port, 'a@sender.test', ['y@routed.test'], MSG)
    b.wait_messages(1)
    assert len(a.wait_messages(1)) == 1
    assert 'reload' not in d.log()
