"""Issue 14: relayq in front of the internet and among local users.

Each test plays the attacker: an outsider on the SMTP port (a client bound
to 127.0.0.2, outside mynetworks), a local user, or a compromised
mail_owner planting links in the queue directory.  docs/security.md lists
which test shows which defence.
"""
import os
import pwd
import re
import socket
import subprocess
import time

import harness
from harness import BIN, free_port

MSG = 'Subject: t\r\n\r\nhello\r\n'


def mail_owner():
    if os.geteuid() != 0:
        raise harness.Skip('needs root (the daemon must start as root and drop to mail_owner)')
    try:
        return pwd.getpwnam('relayq')
    except KeyError:
        raise harness.Skip('no relayq user (scripts/deps creates it)')


def as_owner(cmd):
    """Run a shell command as mail_owner: what a compromised daemon could do."""
    r = subprocess.run(['setpriv', '--reuid=relayq', '--regid=relayq', '--init-groups', 'sh', '-c', cmd],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    return r


def root_file(env, name, text='secret\n'):
    p = os.path.join(env.dir, name)
    with open(p, 'w') as f:
        f.write(text)
    os.chmod(p, 0o600)
    return p


def start_fails(d):
    r = subprocess.run([os.path.join(BIN, 'relayqd'), '-c', d.confdir], capture_output=True, text=True, timeout=30)
    return r


# ---- 2. root and the queue directory ----

def test_root_start_refuses_planted_links(env):
    mail_owner()
    for name in ('lock', 'queue.db', 'queue.db-wal', 'maildrop', 'private'):
        d = env.relayqd()
        d.stop()
        target = root_file(env, 'target-' + name)
        tdir = os.path.join(env.dir, 'targetdir-' + name)
        os.mkdir(tdir, 0o700)
        link_to = tdir if name in ('maildrop', 'private') else target
        as_owner('cd %s && rm -rf %s && ln -s %s %s' % (d.queue_dir, name, link_to, name))
        r = start_fails(d)
        assert r.returncode == 1, (name, r)
        assert re.search(r'relayqd: fatal: .*/%s is a symbolic link: refusing to use it' % re.escape(name), r.stderr), (name, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        st = os.stat(target)
        assert st.st_uid == 0 and open(target).read() == 'secret\n', name
        assert os.stat(tdir).st_uid == 0 and os.listdir(tdir) == [], name


def test_root_start_refuses_foreign_owner_and_hard_links(env):
    mail_owner()
    d = env.relayqd()
    d.stop()
    # a file of another user's in the queue directory
    os.unlink(os.path.join(d.queue_dir, 'lock'))
    with open(os.path.join(d.queue_dir, 'lock'), 'w'):
        pass
    os.chown(os.path.join(d.queue_dir, 'lock'), 65534, 65534)
    r = start_fails(d)
    assert r.returncode == 1 and 'lock is owned by uid 65534, not by root or mail_owner' in r.stderr, r
    os.unlink(os.path.join(d.queue_dir, 'lock'))
    # a hard link to a root file (protected_hardlinks off, or a file mail_owner could read)
    target = root_file(env, 'hard-target')
    os.chmod(target, 0o644)
    os.link(target, os.path.join(d.queue_dir, 'lock'))
    r = start_fails(d)
    assert r.returncode == 1 and 'hard links' in r.stderr, r
    assert open(target).read() == 'secret\n'


def test_root_sendmail_does_not_follow_a_maildrop_link(env):
    mail_owner()
    d = env.relayqd()
    d.stop()
    tdir = os.path.join(env.dir, 'cron.d')
    os.mkdir(tdir, 0o755)
    os.chmod(tdir, 0o1733)
    as_owner('cd %s && rm -rf maildrop && ln -s %s maildrop' % (d.queue_dir, tdir))
    r = env.cli(d, '-f', 'root@x.test', 'a@dest.test', input='* * * * * root id\n', prog='sendmail')
    assert r.returncode != 0 and 'symbolic link' in r.stderr, r
    assert os.listdir(tdir) == [], os.listdir(tdir)


def test_root_cli_offline_drops_to_mail_owner(env):
    mail_owner()
    d = env.relayqd()
    d.stop()
    target = root_file(env, 'shadow')
    as_owner('cd %s && rm -f lock && ln -s %s lock' % (d.queue_dir, target))
    r = env.cli(d, 'hold', 'ALL')
    assert r.returncode != 0, r
    st = os.stat(target)
    assert st.st_uid == 0 and open(target).read() == 'secret\n'
    # an ordinary offline command still works, as mail_owner
    os.unlink(os.path.join(d.queue_dir, 'lock'))
    r = env.cli(d, 'hold', 'ALL')
    assert r.returncode == 0, r
    assert os.stat(os.path.join(d.queue_dir, 'queue.db')).st_uid == pwd.getpwnam('relayq').pw_uid


# ---- outsiders: a client bound to 127.0.0.2, outside mynetworks ----

OUTSIDE = dict(mynetworks='127.0.0.1/32', relay_domains='dest.test')


def raw(port, src='127.0.0.2'):
    c = socket.socket()
    c.bind((src, 0))
    c.settimeout(30)
    c.connect(('127.0.0.1', port))
    f = c.makefile('rb')
    f.readline()
    return c, f


def reply(f):
    lines = []
    while True:
        l = f.readline().decode('utf-8', 'replace')
        if not l:
            return ''.join(lines)
        lines.append(l)
        if len(l) < 4 or l[3] != '-':
            return ''.join(lines)


# ---- 1. mail loops: address syntax ----

def test_address_with_a_port_or_bad_domain_is_refused(env):
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, **OUTSIDE)
    c, f = raw(d.port)
    c.sendall(b'EHLO outsider.test\r\n')
    reply(f)
    for a in ('x@[127.0.0.1]:%d' % d.port, 'x@host.test:25', 'x@[127.0.0.1', 'x@a..b', 'x@', 'x@1.2.3.4'):
        c.sendall(b'MAIL FROM:<%s>\r\n' % a.encode())
        assert reply(f) == '501 5.1.7 Bad sender address syntax\r\n', a
    c.sendall(b'MAIL FROM:<ok@sender.test>\r\n')
    assert reply(f).startswith('250 ')
    for a in ('r@[127.0.0.1]:%d' % d.port, 'r@dest.test:2525', 'r@[127.0.0.1]]', 'r@dest..test'):
        c.sendall(b'RCPT TO:<%s>\r\n' % a.encode())
        assert reply(f) == '501 5.1.3 Bad recipient address syntax\r\n', a
    c.sendall(b'RCPT TO:<r@dest.test>\r\n')
    assert reply(f).startswith('250 ')
    c.sendall(b'RCPT TO:<r@[127.0.0.1]>\r\n')       # valid, but not ours to relay for an outsider
    assert reply(f).startswith('454 4.7.1 <r@[127.0.0.1]>: Relay access denied')
    c.sendall(b'QUIT\r\n')
    c.close()


# ---- 4. local submission ----

def test_sendmail_enforces_message_size_limit(env):
    d = env.relayqd(message_size_limit=2000)
    md = os.path.join(d.queue_dir, 'maildrop')
    r = env.cli(d, '-f', 'big@sender.test', 'x@dest.test', input='Subject: big\n\n' + 'y' * 80 * 100 + '\n',
                prog='sendmail', user='65534')
    assert r.returncode == 69, r
    assert r.stderr.strip().endswith('fatal: big@sender.test(65534): message file too big'), r.stderr
    assert [f for f in os.listdir(md) if f != 'corrupt'] == []
    r = env.cli(d, '-f', 'small@sender.test', 'x@dest.test', input='Subject: small\n\nok\n', prog='sendmail')
    assert r.returncode == 0, r


def test_sendmail_refuses_smuggled_address_parameters(env):
    d = env.relayqd()
    for rcpt in ('x@dest.test NOTIFY=SUCCESS', 'x@dest.test>NOTIFY=SUCCESS',
                 '\x1b[2Jx@dest.test'):
        r = env.cli(d, '-f', 'a@sender.test', rcpt, input='Subject: s\n\nx\n', prog='sendmail', user='65534')
        assert r.returncode == 65 and 'bad recipient address syntax' in r.stderr, (rcpt, r)
    r = env.cli(d, '-f', 'a@sender.test> NOTIFY=SUCCESS', 'x@dest.test', input='x\n', prog='sendmail')
    assert r.returncode == 65 and 'bad sender address syntax' in r.stderr, r


def write_maildrop(d, name, sender, rcpts, content='Subject: m\r\n\r\nx\r\n', user='65534'):
    lines = ['relayq-maildrop 1', 'time 1', 'uid 0', 'user nobody', 'sender ' + sender]
    lines += ['rcpt ' + r for r in rcpts]
    lines.append('content %d' % len(content))
    data = ('\n'.join(lines) + '\n' + content + 'end %d %d\n' % (len(rcpts), len(content))).encode()
    path = os.path.join(d.queue_dir, 'maildrop', name)
    script = 'import sys; open(sys.argv[1], "xb").write(sys.stdin.buffer.read())'
    r = subprocess.run(['setpriv', '--reuid=%s' % user, '--regid=%s' % user, '--init-groups', '/usr/bin/python3',
                        '-c', script, path], input=data, capture_output=True, timeout=30)
    assert r.returncode == 0, r


def test_pickup_checks_what_a_local_user_writes_into_the_maildrop(env):
    sink = env.pysink()
    d = env.relayqd(start=False, relayhost='[127.0.0.1]:%d' % sink.port, message_size_limit=5000)
    os.makedirs(os.path.join(d.queue_dir, 'maildrop'))
    os.chmod(d.queue_dir, 0o755)
    os.chmod(os.path.join(d.queue_dir, 'maildrop'), 0o1733)
    write_maildrop(d, '01smuggle', 'a@sender.test', ['x@dest.test> NOTIFY=SUCCESS ORCPT=rfc822;spy@evil.test'])
    write_maildrop(d, '02escape', 'a@sender.test', ['\x1b]0;owned\x07x@dest.test'])
    write_maildrop(d, '03sender', 'a@sender.test> NOTIFY=SUCCESS', ['x@dest.test'])
    write_maildrop(d, '04big', 'a@sender.test', ['x@dest.test'], content='Subject: b\r\n\r\n' + 'z' * (2 << 20))
    write_maildrop(d, '05good', 'good@sender.test', ['x@dest.test'])
    # a hard link to another user's (here root's) file would pass for that user's submission
    write_maildrop(d, 'rootfile', 'root@sender.test', ['x@dest.test'], user='0')
    os.rename(os.path.join(d.queue_dir, 'maildrop', 'rootfile'), os.path.join(env.dir, 'rootfile'))
    os.link(os.path.join(env.dir, 'rootfile'), os.path.join(d.queue_dir, 'maildrop', '06hardlink'))
    d.start()
    d.wait_log(r'to=<x@dest\.test>.*status=sent')
    for name, why in (('01smuggle', 'bad recipient address syntax'), ('02escape', 'bad recipient address syntax'),
                      ('03sender', 'bad sender address syntax'), ('04big', 'message file too big'),
                      ('06hardlink', 'not a regular file with one link')):
        d.wait_log(r'maildrop file %s: %s; moved to maildrop/corrupt' % (name, why))
    time.sleep(3)   # three more pickup scans: nothing is retried
    assert len(re.findall(r'maildrop file 0\d', d.log())) == 5, d.log()
    m = sink.wait_messages(1)
    assert len(sink.messages) == 1 and m[0]['from'] == 'good@sender.test', sink.messages
    assert m[0]['rcpt_args'] == [''], m
    corrupt = os.path.join(d.queue_dir, 'maildrop', 'corrupt')
    assert sorted(os.listdir(corrupt)) == ['01smuggle', '02escape', '03sender', '04big', '06hardlink']


# ---- 4. what a client writes into headers ----

def test_helo_cannot_forge_header_lines(env):
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, **OUTSIDE)
    c, f = raw(d.port)
    c.sendall(b'EHLO evil\rX-Forged: yes  <a@b>;("q")\r\n')
    assert reply(f).startswith('250')
    c.sendall(b'MAIL FROM:<a@sender.test>\r\nRCPT TO:<x@dest.test>\r\nDATA\r\n')
    assert reply(f).startswith('250') and reply(f).startswith('250') and reply(f).startswith('354')
    c.sendall(b'Subject: s\r\n\r\nbody\r\n.\r\n')
    assert reply(f).startswith('250')
    c.close()
    data = sink.wait_messages(1)[0]['data']
    head = data.split(b'\r\n\r\n', 1)[0]
    assert b'\r' not in head.replace(b'\r\n', b''), head
    assert not re.search(rb'^X-Forged', head, re.M), head
    assert head.startswith(b'Received: from evil?X-Forged:?yes??a?b????q?? (unknown [127.0.0.2])'), head
    assert re.search(r'helo=<evil\?X-Forged:\?yes\?\?a\?b\?\?\?\?q\?\?>', d.log()) or 'reject' not in d.log()


# ---- 1. hop count ----

def received(n):
    return ''.join('Received: from hop%d.test (hop%d.test [192.0.2.%d])\r\n\tby x; Mon, 1 Jan 2024 00:00:00 +0000\r\n'
                   % (i, i, i % 250 + 1) for i in range(n))


def test_hopcount_limit_at_end_of_data(env):
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port)
    # 48 Received: + ours = 49: accepted; 49 + ours = 50 = hopcount_limit: refused, as Postfix
    env.send(d.port, 'a@sender.test', ['x@dest.test'], received(48) + 'Subject: ok\r\n\r\nx\r\n')
    import smtplib
    with smtplib.SMTP('127.0.0.1', d.port, timeout=30) as s:
        s.ehlo('client.test')
        s.mail('a@sender.test')
        s.rcpt('x@dest.test')
        code, text = s.data((received(49) + 'Subject: loop\r\n\r\nx\r\n').encode())
    assert (code, text) == (554, b'5.4.0 Error: too many hops'), (code, text)
    d.wait_log(r'warning: [0-9A-F]+: message rejected: hopcount exceeded')
    assert len(sink.wait_messages(1)) == 1
    time.sleep(1)
    assert len(sink.messages) == 1


def test_hopcount_limit_for_local_submission_bounces(env):
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, hopcount_limit=5)
    text = received(4).replace('\r\n', '\n') + 'Subject: looped\n\nx\n'
    r = env.cli(d, '-f', 'owner@sender.test', 'x@dest.test', input=text, prog='sendmail')
    assert r.returncode == 0, r
    d.wait_log(r'to=<x@dest\.test>, relay=none, .*dsn=5\.4\.0, status=bounced \(too many hops\)')
    m = sink.wait_messages(1)[0]
    assert m['from'] == '' and m['rcpts'] == ['owner@sender.test'], m
    assert b'Status: 5.4.0' in m['data'] and b'too many hops' in m['data'], m['data']
    time.sleep(1)
    assert len(sink.messages) == 1


# ---- 4. VRFY ----

def test_disable_vrfy_command(env):
    d = env.relayqd(disable_vrfy_command='yes')
    c, f = raw(d.port, '127.0.0.1')
    c.sendall(b'EHLO client.test\r\n')
    assert 'VRFY' not in reply(f)
    c.sendall(b'VRFY postmaster\r\n')
    assert reply(f) == '502 5.5.1 VRFY command is disabled\r\n'
    c.close()


# ---- 3. error limits, deadlines, client grouping ----

def test_error_limits_and_error_sleep(env):
    d = env.relayqd(smtpd_soft_error_limit=3, smtpd_hard_error_limit=6, smtpd_error_sleep_time='1s', **OUTSIDE)
    c, f = raw(d.port)
    times = []
    for i in range(6):
        t0 = time.time()
        c.sendall(b'BOGUS %d\r\n' % i)
        assert reply(f).startswith('500 5.5.2'), i
        times.append(time.time() - t0)
    assert max(times[:2]) < 0.5, times          # below the soft limit: no delay
    assert min(times[2:5]) >= 0.9, times        # from the soft limit on: smtpd_error_sleep_time each
    # the hard limit: 421, the session ends, Postfix's log line
    assert reply(f) == '421 4.7.0 mta.relayq.test Error: too many errors\r\n'
    assert f.readline() == b''
    # Postfix names an unrecognized command UNKNOWN here, never the client's word
    d.wait_log(r'smtpd\[\d+\]: too many errors after UNKNOWN from unknown\[127\.0\.0\.2\]')
    # the sleep is a timer: another client is served at once meanwhile
    c, f = raw(d.port)
    for i in range(3):
        c.sendall(b'BOGUS\r\n')
        reply(f)
    c.sendall(b'BOGUS\r\n')                      # this reply sleeps one second...
    t0 = time.time()
    c2, f2 = raw(d.port, '127.0.0.1')
    c2.sendall(b'NOOP\r\n')
    assert reply(f2).startswith('250') and time.time() - t0 < 0.5   # ... the other session does not
    c.close()
    c2.close()


def test_junk_command_limit(env):
    d = env.relayqd(smtpd_junk_command_limit=3, smtpd_hard_error_limit=3, smtpd_soft_error_limit=10)
    c, f = raw(d.port, '127.0.0.1')
    got = []
    for i in range(10):
        c.sendall(b'NOOP\r\n')
        r = reply(f)
        got.append(r[:3])
        if r.startswith('421'):
            break
    # Postfix: junk commands past the limit count as errors: the 5th, 6th, 7th NOOP, then 421
    assert got == ['250'] * 7 + ['421'], got


def test_slow_client_cannot_hold_a_session(env):
    d = env.relayqd(smtpd_timeout='3s', **OUTSIDE)
    c, f = raw(d.port)
    t0 = time.time()
    closed = None
    c.settimeout(0.2)
    for ch in b'EHLO ' + b'x' * 60:
        try:
            c.sendall(bytes([ch]))
        except OSError:
            closed = time.time() - t0
            break
        time.sleep(0.3)
        if time.time() - t0 > 9:
            break
        try:
            data = c.recv(4096)
            if data:
                assert b'421 4.4.2 mta.relayq.test Error: timeout exceeded' in data, data
                closed = time.time() - t0
                break
        except socket.timeout:
            pass
    assert closed is not None and closed < 6, closed
    d.wait_log(r'timeout after CONNECT from unknown\[127\.0\.0\.2\]')


def test_slow_data_is_cut_by_min_data_rate(env):
    d = env.relayqd(smtpd_timeout='3s', relay_domains='dest.test', mynetworks='127.0.0.1/32')
    c, f = raw(d.port)
    c.sendall(b'EHLO client.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<x@dest.test>\r\nDATA\r\n')
    for _ in range(4):
        reply(f)
    c.settimeout(0.3)
    t0 = time.time()
    data = b''
    while time.time() - t0 < 9:
        try:
            c.sendall(b'x')
        except OSError:
            break
        try:
            data = c.recv(4096)
            if data:
                break
        except socket.timeout:
            pass
    assert b'421 4.4.2 mta.relayq.test Error: timeout exceeded' in data, data
    assert time.time() - t0 < 6
    d.wait_log(r'timeout after DATA from unknown\[127\.0\.0\.2\]')


def test_connection_limit_groups_a_network(env):
    d = env.relayqd(smtpd_client_connection_count_limit=2, smtpd_client_ipv4_prefix_length=24)
    a, fa = raw(d.port, '127.0.0.2')
    b, fb = raw(d.port, '127.0.0.3')
    c = socket.socket()
    c.bind(('127.0.0.4', 0))
    c.settimeout(10)
    c.connect(('127.0.0.1', d.port))
    g = c.makefile('rb').readline()
    assert g.startswith(b'421 4.7.0 mta.relayq.test Error: too many connections from 127.0.0.4'), g
    # another /24 is another client
    e = socket.socket()
    e.bind(('127.0.1.2', 0))
    e.settimeout(10)
    e.connect(('127.0.0.1', d.port))
    assert e.makefile('rb').readline().startswith(b'220 '), 'other network refused'
    for s in (a, b, c, e):
        s.close()


def cpu_seconds(pid):
    f = open('/proc/%d/stat' % pid).read().rsplit(')', 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK')


def test_descriptor_exhaustion_pauses_accept(env):
    d = env.relayqd(start=False, smtpd_client_connection_count_limit=0, **OUTSIDE)
    d.stderr = open(os.path.join(d.confdir, 'stderr.txt'), 'ab')
    d.proc = subprocess.Popen(['prlimit', '--nofile=48:48', os.path.join(BIN, 'relayqd'), '-c', d.confdir],
                              stdout=d.stderr, stderr=d.stderr)
    harness.wait_port(d.port)
    d.wait_log(r'warning: open file limit 48 cannot cover relayq_smtpd_session_limit=1000')
    socks = []
    try:
        for i in range(80):                  # more than the daemon has descriptors for
            s = socket.socket()
            s.bind(('127.0.0.2', 0))
            s.settimeout(5)
            s.connect(('127.0.0.1', d.port))
            socks.append(s)
        d.wait_log(r'smtpd\[\d+\]: warning: accept: Too many open files: not accepting new connections for 1 second')
        # a local user's mailq meanwhile: the control socket must not spin either
        q = subprocess.Popen([os.path.join(BIN, 'relayq'), '-c', d.confdir, 'mailq'],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        c0 = cpu_seconds(d.proc.pid)
        time.sleep(4)
        used = cpu_seconds(d.proc.pid) - c0
        q.kill()
        q.wait()
        assert used < 1.0, 'relayqd used %.2fs of CPU in 4s with its descriptors exhausted' % used
        warnings = len(re.findall(r'not accepting new connections', d.log()))
        assert 1 <= warnings <= 20, warnings          # one per pause, not millions
        assert os.path.getsize(os.path.join(d.confdir, 'stderr.txt')) < 10000
    finally:
        for s in socks:
            s.close()
    # descriptors back: it accepts again
    time.sleep(1.5)
    c, f = raw(d.port)
    c.sendall(b'QUIT\r\n')
    assert reply(f).startswith('221')
    c.close()


def test_expanded_value_is_capped(env):
    d = env.relayqd(start=False)
    names = ['relayq_x%d' % i for i in range(9)]
    more = {names[i]: ' '.join(['$' + names[i + 1]] * 6) for i in range(8)}
    more[names[8]] = 'x' * 10
    more['smtpd_banner'] = '$' + names[0]       # 6^8 x 11 bytes: 18 MB if nothing stops it
    d.write_config(**more)
    r = env.cli(d, 'config', '--check')
    assert r.returncode == 1, r
    assert re.search(r'parameter relayq_x0: the expanded value is larger than 1048576 bytes', r.stderr), r.stderr
    r = start_fails(d)
    assert r.returncode == 1 and 'the expanded value is larger than 1048576 bytes' in r.stderr, r



def test_text_views_escape_control_characters(env):
    evil = '450 4.2.0 \x1b]0;owned\x07\x1b[2J try later'
    sink = env.pysink(replies={'rcpt': evil})
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, queue_run_delay='300s')
    qid = env.send(d.port, 'a@sender.test', ['x@dest.test'], MSG)
    d.wait_log(r'%s: to=<x@dest\.test>.*status=deferred' % qid)
    deadline = time.time() + 10
    while True:
        out = env.cli(d, 'mailq').stdout
        if 'owned' in out or time.time() > deadline:
            break
        time.sleep(0.1)
    assert 'owned' in out and '\x1b' not in out and '\x07' not in out, repr(out)
    assert '?]0;owned??[2J try later' in out, repr(out)
    r = env.cli(d, 'explain', qid)
    assert r.returncode == 0 and 'owned' in r.stdout, r
    assert '\x1b' not in r.stdout and '\x07' not in r.stdout, repr(r.stdout)


# ---- 1. loops ----

def test_direct_loop_ends_at_the_first_hop(env):
    port = free_port()
    d = env.relayqd(smtpd_listen='127.0.0.1:%d' % port, relayhost='[127.0.0.1]:%d' % port,
                    queue_run_delay='1s', minimal_backoff_time='1s', maximal_backoff_time='2s')
    qid = env.send(d.port, 'owner@sender.test', ['x@dest.test'], MSG)
    d.wait_log(r'%s: to=<x@dest\.test>, relay=none, .*dsn=5\.4\.6, status=bounced '
               r'\(mail for \[127\.0\.0\.1\]:%d loops back to myself\)' % (qid, port))
    d.wait_log(r'%s: sender non-delivery notification: ' % qid)
    # the notice goes the same way and ends the same way, without a notice of its own
    d.wait_log(r'to=<owner@sender\.test>, relay=none, .*dsn=5\.4\.6, status=bounced')
    time.sleep(3)
    log = d.log()
    assert len(re.findall(r'smtpd\[\d+\]: [0-9A-F]+: client=', log)) == 1, log   # only our own client's
    assert len(re.findall(r'sender non-delivery notification', log)) == 1, log
    assert env.cli(d, 'mailq').stdout.strip() == 'Mail queue is empty'


def test_transport_back_to_myself_loops_too(env):
    port = free_port()
    d = env.relayqd(smtpd_listen='127.0.0.1:%d' % port,
                    transport_maps='inline:{ dest.test=smtp:[127.0.0.1]:%d }' % port)
    qid = env.send(d.port, '', ['x@dest.test'], MSG)
    d.wait_log(r'%s: to=<x@dest\.test>, .*dsn=5\.4\.6, status=bounced \(mail for .* loops back to myself\)' % qid)
    time.sleep(2)
    assert len(re.findall(r'smtpd\[\d+\]: [0-9A-F]+: client=', d.log())) == 1, d.log()
    assert 'sender non-delivery notification' not in d.log()     # none for the null sender


def test_loop_detected_by_ehlo_name_greeting_only_warns(env):
    # a server that says our name in EHLO: a loop
    looper = env.pysink(replies={'ehlo': '250-mta.relayq.test\r\n250 PIPELINING'})
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % looper.port)
    qid = env.send(d.port, 'owner@sender.test', ['x@dest.test'], MSG)
    d.wait_log(r'%s: to=<x@dest\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*dsn=5\.4\.6, status=bounced '
               r'\(mail for \[127\.0\.0\.1\]:%d loops back to myself\)' % (qid, looper.port, looper.port))
    assert looper.messages == []
    # our name in the 220 greeting only: a warning, and the mail goes
    greeter = env.pysink(replies={'greeting': '220 mta.relayq.test ESMTP'})
    d2 = env.relayqd(relayhost='[127.0.0.1]:%d' % greeter.port)
    env.send(d2.port, 'a@sender.test', ['y@dest.test'], MSG)
    greeter.wait_messages(1)
    d2.wait_log(r'smtp\[\d+\]: warning: host 127\.0\.0\.1\[127\.0\.0\.1\] greeted me with my own hostname mta\.relayq\.test')


def test_indirect_loop_is_ended_by_hopcount_limit(env):
    pa, pb = free_port(), free_port()
    a = env.relayqd(smtpd_listen='127.0.0.1:%d' % pa, myhostname='a.relayq.test', relayhost='[127.0.0.1]:%d' % pb)
    b = env.relayqd(smtpd_listen='127.0.0.1:%d' % pb, myhostname='b.relayq.test', relayhost='[127.0.0.1]:%d' % pa)
    env.send(a.port, 'owner@sender.test', ['x@dest.test'], MSG)
    deadline = time.time() + 60
    while 'hopcount exceeded' not in a.log() + b.log():
        assert time.time() < deadline, a.log()[-3000:]
        time.sleep(0.2)
    # the sender's notice goes round too, until the hop count ends it; then all is quiet
    def receptions():
        return sum(len(re.findall(r'smtpd\[\d+\]: [0-9A-F]+: client=', x.log())) for x in (a, b))
    n = -1
    deadline = time.time() + 60
    while n != receptions():
        n = receptions()
        assert time.time() < deadline
        time.sleep(3)
    assert n <= 2 * 50 + 2, n
    both = a.log() + b.log()
    assert len(re.findall(r'hopcount exceeded', both)) == 2, both[-3000:]   # the message, then its notice
    assert len(re.findall(r'sender non-delivery notification', both)) == 1


# ---- 4. backscatter ----

def test_relay_recipient_maps_rejects_unknown_users(env):
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, mynetworks='127.0.0.1/32', relay_domains='dest.test',
                    relay_recipient_maps='inline:{ known@dest.test=ok, @open.dest.test=ok }', recipient_delimiter='+')
    c, f = raw(d.port)
    c.sendall(b'EHLO outsider.test\r\nMAIL FROM:<forged@victim.test>\r\n')
    reply(f), reply(f)
    c.sendall(b'RCPT TO:<unknown@dest.test>\r\n')
    assert reply(f) == ('550 5.1.1 <unknown@dest.test>: Recipient address rejected: '
                        'User unknown in relay recipient table\r\n')
    for ok in ('known@dest.test', 'known+ext@dest.test', 'anyone@open.dest.test'):
        c.sendall(b'RCPT TO:<%s>\r\n' % ok.encode())
        assert reply(f).startswith('250'), ok
    c.close()
    d.wait_log(r'NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.2\]: 550 5\.1\.1 <unknown@dest\.test>: Recipient '
               r'address rejected: User unknown in relay recipient table; from=<forged@victim\.test> '
               r'to=<unknown@dest\.test> proto=ESMTP helo=<outsider\.test>')
    # Postfix's knobs: the code, and whether the table is named
    d2 = env.relayqd(mynetworks='127.0.0.1/32', relay_domains='dest.test', relay_recipient_maps='inline:{ k@dest.test=ok }',
                     unknown_relay_recipient_reject_code=450, show_user_unknown_table_name='no')
    c, f = raw(d2.port)
    c.sendall(b'EHLO outsider.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<u@dest.test>\r\n')
    reply(f), reply(f)
    assert reply(f) == '450 4.1.1 <u@dest.test>: Recipient address rejected: User unknown\r\n'
    c.close()
    d3 = env.relayqd(mynetworks='127.0.0.1/32', relay_domains='dest.test', relay_recipient_maps='inline:{ k@dest.test=ok }',
                     smtpd_reject_unlisted_recipient='no')
    c, f = raw(d3.port)
    c.sendall(b'EHLO outsider.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<u@dest.test>\r\n')
    reply(f), reply(f)
    assert reply(f).startswith('250')
    c.close()
