"""Submission: master.cf listeners, SMTP AUTH through a real Dovecot, sender
login checks, the PROXY protocol behind a real HAProxy.

Dovecot runs as a throw-away instance in the test's directory (its own
base_dir, a passwd-file written here, only its auth-client socket; no
protocol listeners).  Clients: swaks --auth, s-nail smtp-auth, msmtp,
Python smtplib, a throw-away Postfix relaying with smtp_sasl_auth_enable.
fail2ban-regex with the stock postfix[mode=auth] filter counts the failures.
Only 127.0.0.1 and ::1 are used; every wait is bounded.
"""
import base64
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import time

from harness import Skip, free_port, wait_port

USERS = {'alice': 'Alice-pw-7391', 'bob': 'Bob-pw-2864'}
MSG = 'From: a@sender.test\r\nSubject: submission\r\n\r\nsubmitted body\r\n'


def need(path):
    if not shutil.which(path) and not os.path.exists(path):
        raise Skip('%s not installed' % path)


def run(argv, timeout=60, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def selfsigned(env):
    need('openssl')
    cert = os.path.join(env.dir, 'cert.pem')
    key = os.path.join(env.dir, 'key.pem')
    if not os.path.exists(cert):
        r = run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
                 '-subj', '/CN=mta.relayq.test', '-keyout', key, '-out', cert])
        assert r.returncode == 0, r.stderr
        os.chmod(key, 0o644)
    return cert, key


class Dovecot:
    """A throw-away Dovecot: auth service only, passwd-file, socket in dir."""

    def __init__(self, env, sock=None):
        need('/usr/sbin/dovecot')
        if os.geteuid() != 0:
            raise Skip('a throw-away Dovecot instance needs root')
        self.env = env
        self.dir = os.path.join(env.dir, 'dc%d' % len([p for p in env.procs]))
        os.makedirs(os.path.join(self.dir, 'run'), exist_ok=True)
        os.makedirs(os.path.join(self.dir, 'state'), exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.sock = sock or os.path.join(self.dir, 'auth')
        self.passwd = os.path.join(self.dir, 'passwd')
        with open(self.passwd, 'w') as f:
            for u, p in USERS.items():
                f.write('%s:{PLAIN}%s\n' % (u, p))
        os.chmod(self.passwd, 0o644)
        self.conf = os.path.join(self.dir, 'dovecot.conf')
        with open(self.conf, 'w') as f:
            f.write('''base_dir = %(d)s/run
state_dir = %(d)s/state
instance_name = rq%(n)s
log_path = %(d)s/dovecot.log
protocols =
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %(pw)s
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}
service auth {
  unix_listener %(sock)s {
    mode = 0666
  }
}
service anvil {
  chroot =
}
''' % {'d': self.dir, 'n': os.path.basename(env.dir)[-6:] + str(len(env.procs)), 'pw': self.passwd,
               'sock': self.sock})
        self.proc = None

    def start(self):
        self.proc = self.env.spawn(['/usr/sbin/dovecot', '-F', '-c', self.conf])
        deadline = time.time() + 20
        while time.time() < deadline:
            if os.path.exists(self.sock):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        log = open(os.path.join(self.dir, 'dovecot.log')).read() if os.path.exists(
            os.path.join(self.dir, 'dovecot.log')) else ''
        raise AssertionError('dovecot did not start: ' + log[-2000:])

    def children(self):
        """The processes this instance's master started (auth, log, ...)."""
        kids = []
        for pid in os.listdir('/proc'):
            if pid.isdigit():
                try:
                    with open('/proc/%s/stat' % pid) as f:
                        st = f.read()
                except OSError:
                    continue
                if int(st.rsplit(')', 1)[1].split()[1]) == self.proc.pid:
                    kids.append(int(pid))
        return kids

    def stop(self):
        """Down at once, as after a crash: the auth process is killed too,
        so a connection in use breaks now, not when Dovecot gets to it."""
        if self.proc and self.proc.poll() is None:
            for pid in self.children():
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
            self.proc.terminate()
            self.proc.wait(15)
        deadline = time.time() + 10
        while os.path.exists(self.sock) and time.time() < deadline:
            time.sleep(0.1)
        if os.path.exists(self.sock):
            os.unlink(self.sock)


def submission_env(env, dc, master_extra='', **params):
    """relayqd with a plain port (mynetworks) and a submission port from
    master.cf: AUTH through dc, relaying only for logged-in clients."""
    sink = env.pysink()
    plain, sub = free_port(), free_port()
    p = dict(relayhost='[127.0.0.1]:%d' % sink.port, smtpd_listen='127.0.0.1:%d' % sub,
             smtpd_sasl_type='dovecot', smtpd_sasl_path=dc.sock if dc else '/nonexistent/auth',
             mynetworks='127.0.0.2/32', syslog_name='postfix')
    p.update(params)
    d = env.relayqd(start=False, **p)
    with open(os.path.join(d.confdir, 'master.cf'), 'w') as f:
        f.write('127.0.0.1:%d inet n - n - - smtpd\n' % plain)
        f.write('127.0.0.1:%d inet n - n - - smtpd\n'
                '  -o syslog_name=postfix/submission\n'
                '  -o smtpd_sasl_auth_enable=yes\n'
                '  -o smtpd_client_restrictions=\n'
                '  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n' % sub)
        f.write(master_extra)
        f.write('pickup    unix  n       -       y       60      1       pickup\n'
                'qmgr      unix  n       -       n       300     1       qmgr\n')
    d.start()
    d.sub_port = sub
    d.plain_port = plain
    return sink, d


def plain_b64(user, pw):
    return base64.b64encode(('\0%s\0%s' % (user, pw)).encode()).decode()


def auth_send(port, user, pw, sender='a@sender.test', rcpt='r@dest.test', mech='PLAIN'):
    with smtplib.SMTP('127.0.0.1', port, local_hostname='py.test', timeout=30) as s:
        s.ehlo()
        if mech == 'PLAIN':
            code, resp = s.docmd('AUTH', 'PLAIN ' + plain_b64(user, pw))
        else:
            code, resp = s.docmd('AUTH', 'LOGIN')
            assert code == 334 and resp == b'VXNlcm5hbWU6', (code, resp)
            code, resp = s.docmd(base64.b64encode(user.encode()).decode())
            assert code == 334, (code, resp)
            code, resp = s.docmd(base64.b64encode(pw.encode()).decode())
        if code != 235:
            return code, resp
        s.sendmail(sender, [rcpt], MSG)
        return code, resp


def no_password_in(text):
    for pw in USERS.values():
        assert pw not in text, 'a password in the log'
        for u in USERS:
            assert plain_b64(u, pw) not in text, 'a base64 password in the log'
    assert 'wrong-pass' not in text


# ---------------------------------------------------------------- listeners

def test_master_cf_listeners_and_overrides(env):
    sink = env.pysink()
    a, b = free_port(), free_port()
    d = env.relayqd(start=False, relayhost='[127.0.0.1]:%d' % sink.port,
                    smtpd_listen='127.0.0.1:%d' % a, mua_client_restrictions='reject')
    with open(os.path.join(d.confdir, 'master.cf'), 'w') as f:
        f.write('# listeners\n127.0.0.1:%d inet n - n - - smtpd\n' % a)
        f.write('127.0.0.1:%d inet n - n - 1 smtpd\n'
                '# a comment inside the entry\n'
                '  -o syslog_name=postfix/submission\n'
                '  -o smtpd_client_restrictions=$mua_client_restrictions\n'
                '  -o smtpd_reject_unlisted_recipient=no\n'
                '  -o some_future_parameter=1\n' % b)
        f.write('pickup unix n - y 60 1 pickup\ncleanup unix n - y - 0 cleanup\n'
                'maildrop  unix  -       n       n       -       -       pipe\n'
                '  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}\n')
    d.start()
    wait_port(b)
    env.send(a, 's@sender.test', ['r@dest.test'], MSG)
    sink.wait_messages(1)
    # the -o restriction (from a main.cf-only parameter) applies on b only
    with smtplib.SMTP('127.0.0.1', b, timeout=20) as s:
        s.ehlo('c.test')
        s.mail('s@sender.test')
        code, resp = s.rcpt('r@dest.test')
        assert code == 554 and resp == b'5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied', resp
    log = d.wait_log(r'postfix/submission/smtpd\[\d+\]: NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: '
                     r'554 5\.7\.1 <localhost\[127\.0\.0\.1\]>: Client host rejected')
    d.wait_log(r'relayq/smtpd\[\d+\]: connect from localhost')
    text = d.log()
    assert re.search(r'relayq/master\[\d+\]: .*master\.cf: listeners come from this file; smtpd_listen is ignored', text)
    assert re.search(r'master\.cf: services not run by relayq, ignored: pickup, cleanup, maildrop$', text, re.M), text
    assert re.search(r'master\.cf, line 3: -o some_future_parameter: not a relayq parameter, ignored', text), text
    # (wait_port's probe already filled maxproc 1 once)
    assert [l for l in text.splitlines() if 'warning' in l and 'process limit' not in l] == [], text
    # a main.cf-only name used by a master.cf -o line is no unknown parameter
    assert 'warning' not in d.stderr_text(), d.stderr_text()
    # maxproc 1: a second client waits until the first is gone
    s1 = socket.create_connection(('127.0.0.1', b), timeout=10)
    assert s1.recv(512).startswith(b'220')
    s2 = socket.create_connection(('127.0.0.1', b), timeout=10)
    s2.settimeout(1.5)
    try:
        early = s2.recv(512)
    except socket.timeout:
        early = b''
    assert early == b'', early
    d.wait_log(r'relayq/master\[\d+\]: warning: service "127\.0\.0\.1:%d" has reached its process limit "1"' % b)
    s1.sendall(b'QUIT\r\n')
    s1.close()
    s2.settimeout(15)
    assert s2.recv(512).startswith(b'220')
    s2.close()


def test_debian_master_cf_dist_loads(env):
    """Debian's master.cf with the submission and submissions blocks
    uncommented: only informational lines; both ports work with AUTH."""
    dist = '/usr/share/postfix/master.cf.dist'
    if not os.path.exists(dist):
        raise Skip('%s not installed (Debian package postfix)' % dist)
    dc = Dovecot(env).start()
    cert, key = selfsigned(env)
    sink = env.pysink()
    p25, p587, p465 = free_port(), free_port(), free_port()
    d = env.relayqd(start=False, relayhost='[127.0.0.1]:%d' % sink.port,
                    smtpd_listen='127.0.0.1:%d' % p587, inet_interfaces='127.0.0.1',
                    known_tcp_ports='smtp=%d, submission=%d, submissions=%d' % (p25, p587, p465),
                    smtpd_tls_cert_file=cert, smtpd_tls_key_file=key, smtpd_tls_security_level='may',
                    smtpd_sasl_type='dovecot', smtpd_sasl_path=dc.sock, mynetworks='127.0.0.2/32',
                    syslog_name='postfix')
    text = open(dist).read()
    text = re.sub(r'(?m)^#(submissions?\s+inet\s)', r'\1', text)
    text = re.sub(r'(?m)^#(  -o )', r'\1', text)
    with open(os.path.join(d.confdir, 'master.cf'), 'w') as f:
        f.write(text)
    d.start()
    wait_port(p465)
    wait_port(p25)
    log = d.log()
    assert 'warning' not in log and 'warning' not in d.stderr_text(), log + d.stderr_text()
    assert re.search(r'services not run by relayq, ignored: pickup, cleanup, qmgr, tlsmgr, rewrite, bounce', log), log
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # submission: STARTTLS required (encrypt), AUTH, relay
    with smtplib.SMTP('127.0.0.1', p587, timeout=30) as s:
        s.ehlo('c.test')
        assert not s.has_extn('auth')           # smtpd_tls_auth_only=yes
        code, resp = s.mail('a@sender.test')
        assert code == 530 and b'Must issue a STARTTLS command first' in resp, resp
        s.starttls(context=ctx)
        s.ehlo('c.test')
        assert 'PLAIN' in s.esmtp_features.get('auth', ''), s.esmtp_features
        s.login('alice', USERS['alice'])
        s.sendmail('alice@sender.test', ['r1@dest.test'], MSG)
    # submissions: implicit TLS
    with smtplib.SMTP_SSL('127.0.0.1', p465, timeout=30, context=ctx) as s:
        s.ehlo('c.test')
        s.login('bob', USERS['bob'])
        s.sendmail('bob@sender.test', ['r2@dest.test'], MSG)
    msgs = sink.wait_messages(2)
    assert sorted(m['rcpts'][0] for m in msgs) == ['r1@dest.test', 'r2@dest.test']
    d.wait_log(r'postfix/submission/smtpd\[\d+\]: [0-9A-F]+: client=localhost\[127\.0\.0\.1\], '
               r'sasl_method=PLAIN, sasl_username=alice$')
    d.wait_log(r'postfix/submissions/smtpd\[\d+\]: [0-9A-F]+: client=localhost\[127\.0\.0\.1\], '
               r'sasl_method=PLAIN, sasl_username=bob$')
    # port "smtp" (25): no AUTH, no relay for strangers
    with smtplib.SMTP('127.0.0.1', p25, timeout=20) as s:
        s.ehlo('c.test')
        assert not s.has_extn('auth')
    no_password_in(d.log())


def test_cyrus_is_a_clear_error(env):
    d = env.relayqd(start=False, smtpd_sasl_auth_enable='yes')
    d.start(wait=False)
    d.proc.wait(20)
    assert d.proc.returncode != 0
    err = d.stderr_text()
    assert 'smtpd_sasl_type = cyrus: relayq supports only smtpd_sasl_type = dovecot' in err, err


# ---------------------------------------------------------------- AUTH with clients

def test_auth_clients_and_failures(env):
    dc = Dovecot(env).start()
    sink, d = submission_env(env, dc, smtpd_sasl_authenticated_header='yes')
    port = d.sub_port
    # unauthenticated: relaying refused
    with smtplib.SMTP('127.0.0.1', port, timeout=20) as s:
        s.ehlo('c.test')
        assert s.esmtp_features.get('auth', '').split() == ['PLAIN', 'LOGIN'], s.esmtp_features
        s.mail('x@sender.test')
        code, resp = s.rcpt('r@dest.test')
        assert code == 554 and b'Recipient address rejected: Access denied' in resp, resp
    # smtplib, PLAIN and LOGIN
    assert auth_send(port, 'alice', USERS['alice'], rcpt='py@dest.test')[0] == 235
    assert auth_send(port, 'bob', USERS['bob'], rcpt='pylogin@dest.test', mech='LOGIN')[0] == 235
    n = 2
    # swaks --auth
    if shutil.which('swaks'):
        r = run(['swaks', '--server', '127.0.0.1:%d' % port, '--from', 'sw@sender.test', '--to', 'sw@dest.test',
                 '--auth', 'PLAIN', '--auth-user', 'alice', '--auth-password', USERS['alice'], '--timeout', '20'])
        assert r.returncode == 0 and '235 2.7.0 Authentication successful' in r.stdout, r.stdout + r.stderr
        n += 1
        r = run(['swaks', '--server', '127.0.0.1:%d' % port, '--from', 'sw@sender.test', '--to', 'sw@dest.test',
                 '--auth', 'LOGIN', '--auth-user', 'alice', '--auth-password', 'wrong-pass', '--timeout', '20'])
        assert r.returncode != 0 and '535 5.7.8 Error: authentication failed:' in r.stdout, r.stdout
    # s-nail smtp-auth
    if shutil.which('s-nail'):
        home = os.path.join(env.dir, 'home')
        os.makedirs(home, exist_ok=True)
        e = dict(os.environ, HOME=home, MAILRC='/dev/null')
        r = run(['s-nail', '-n', '-S', 'v15-compat', '-S', 'mta=smtp://bob:%s@127.0.0.1:%d' % (USERS['bob'], port),
                 '-S', 'smtp-auth=plain', '-S', 'from=nail@sender.test', '-S', 'sendwait',
                 '-s', 'nail auth', 'sn@dest.test'], input='s-nail body\n', env=e)
        assert r.returncode == 0, r.stdout + r.stderr
        n += 1
    # msmtp
    if shutil.which('msmtp'):
        pwfile = os.path.join(env.dir, 'msmtp-pw')
        r = run(['msmtp', '--host=127.0.0.1', '--port=%d' % port, '--auth=plain', '--user=alice',
                 '--passwordeval=echo %s' % USERS['alice'], '--tls=off', '--from=ms@sender.test',
                 'ms@dest.test'], input='Subject: msmtp\n\nmsmtp body\n')
        assert r.returncode == 0, r.stdout + r.stderr
        n += 1
        r = run(['msmtp', '--host=127.0.0.1', '--port=%d' % port, '--auth=login', '--user=bob',
                 '--passwordeval=echo wrong-pass', '--tls=off', '--from=ms@sender.test',
                 'ms@dest.test'], input='Subject: msmtp\n\nmsmtp body\n')
        assert r.returncode != 0
        del pwfile
    msgs = sink.wait_messages(n, timeout=30)
    body = [m for m in msgs if m['rcpts'] == ['py@dest.test']][0]['data'].decode()
    assert re.match(r'Received: from py\.test \(localhost \[127\.0\.0\.1\]\)\r\n'
                    r'\t\(Authenticated sender: alice\)\r\n'
                    r'\tby mta\.relayq\.test \(relayq\) with ESMTPA id ', body), body[:300]
    # wrong passwords, logged as Postfix 3.7 logs them
    code, resp = auth_send(port, 'alice', 'wrong-pass')
    assert code == 535 and resp.startswith(b'5.7.8 Error: authentication failed:'), resp
    code, resp = auth_send(port, 'nosuchuser', 'wrong-pass', mech='LOGIN')
    assert code == 535, resp
    fails = d.wait_log(r'postfix/submission/smtpd\[\d+\]: warning: localhost\[127\.0\.0\.1\]: '
                       r'SASL (PLAIN|LOGIN) authentication failed: .*, sasl_username=', count=3)
    d.wait_log(r'client=localhost\[127\.0\.0\.1\], sasl_method=LOGIN, sasl_username=bob$')
    d.wait_log(r'disconnect from localhost\[127\.0\.0\.1\] ehlo=1 auth=0/1 quit=1 commands=2/3')
    text = d.log()
    no_password_in(text)
    nfail = len(re.findall(r'SASL \w+ authentication failed', text))
    # fail2ban's stock filter counts every one of them
    if shutil.which('fail2ban-regex'):
        r = run(['fail2ban-regex', d.logfile, 'postfix[mode=auth]'], timeout=120)
        m = re.search(r'Failregex: (\d+) total', r.stdout)
        assert m and int(m.group(1)) == nfail, r.stdout[-2000:]


def test_auth_protocol_edges(env):
    dc = Dovecot(env).start()
    sink, d = submission_env(env, dc, smtpd_client_auth_rate_limit='6')
    port = d.sub_port
    with smtplib.SMTP('127.0.0.1', port, timeout=20) as s:
        s.ehlo('c.test')
        assert s.docmd('AUTH', 'CRAM-MD5')[0] == 535
        code, resp = s.docmd('AUTH', 'PLAIN not*base64')
        assert code == 535 and b'Invalid base64 data in initial response' in resp, resp
        code, resp = s.docmd('AUTH', 'LOGIN')
        assert code == 334
        code, resp = s.docmd('*')
        assert code == 501 and resp == b'5.7.0 Authentication aborted', resp
        code, resp = s.docmd('AUTH', 'PLAIN')
        assert code == 334 and resp == b'', (code, resp)
        code, resp = s.docmd(plain_b64('alice', USERS['alice']))
        assert code == 235, resp
        assert s.docmd('AUTH', 'PLAIN x')[0] == 503            # already authenticated
        # AUTH= on MAIL and the client= line
        assert s.docmd('MAIL FROM:<alice@sender.test> AUTH=alice+40sender.test')[0] == 250
        assert s.docmd('RCPT TO:<r@dest.test>')[0] == 250
        assert s.docmd('AUTH', 'PLAIN x')[0] == 503             # transaction in progress
        s.docmd('RSET')
    d.wait_log(r'client=localhost\[127\.0\.0\.1\], sasl_method=PLAIN, sasl_username=alice, '
               r'sasl_sender=alice\+40sender\.test$')
    # the rate limit: the 7th AUTH in a minute from this address
    with smtplib.SMTP('127.0.0.1', port, timeout=20) as s:
        s.ehlo('c.test')
        code, resp = s.docmd('AUTH', 'PLAIN ' + plain_b64('alice', USERS['alice']))
        assert code == 450 and resp == b'4.7.1 Error: too many AUTH commands from 127.0.0.1', (code, resp)
    d.wait_log(r'warning: AUTH command rate limit exceeded: 7 from localhost\[127\.0\.0\.1\] for service')
    # a password sent as a command is never logged
    c = socket.create_connection(('127.0.0.1', port), timeout=20)
    f = c.makefile('rb')
    f.readline()
    c.sendall(('EHLO c.test\r\n%s\r\n%s\r\n' % (USERS['bob'], plain_b64('bob', USERS['bob']))).encode())
    while not f.readline().startswith(b'250 '):
        pass
    assert f.readline().startswith(b'500 5.5.2') and f.readline().startswith(b'500 5.5.2')
    f.close()
    c.close()
    d.wait_log(r'lost connection after UNKNOWN from localhost')
    no_password_in(d.log())


def test_auth_dovecot_down_then_back(env):
    dc = Dovecot(env)                 # configured, not started
    sink, d = submission_env(env, dc)
    port = d.sub_port
    with smtplib.SMTP('127.0.0.1', port, timeout=20) as s:
        s.ehlo('c.test')
        assert 'PLAIN' in s.esmtp_features.get('auth', '')
        code, resp = s.docmd('AUTH', 'PLAIN ' + plain_b64('alice', USERS['alice']))
        assert code == 454 and resp == b"4.7.0 Temporary authentication failure: Can't connect to authentication server", resp
        assert s.docmd('NOOP')[0] == 250                       # the session goes on
    d.wait_log(r"warning: SASL: Connect to Dovecot auth socket '.*' failed: No such file or directory")
    # Dovecot comes up: AUTH works, no restart of relayqd
    dc.start()
    assert auth_send(port, 'alice', USERS['alice'])[0] == 235
    sink.wait_messages(1)
    # lost mid-exchange
    with smtplib.SMTP('127.0.0.1', port, timeout=30) as s:
        s.ehlo('c.test')
        code, resp = s.docmd('AUTH', 'LOGIN')
        assert code == 334
        dc.stop()
        code, resp = s.docmd(base64.b64encode(b'alice').decode())
        assert code == 454 and resp == b'4.7.0 Temporary authentication failure: Connection lost to authentication server', resp
    # and back again
    dc.start()
    assert auth_send(port, 'bob', USERS['bob'], rcpt='again@dest.test')[0] == 235
    sink.wait_messages(2)
    assert d.proc.poll() is None


def test_sender_login_maps(env):
    dc = Dovecot(env).start()
    sink, d = submission_env(
        env, dc, smtpd_sender_login_maps='inline:{ alice@sender.test=alice, { @shared.test = alice bob } }',
        smtpd_sender_restrictions='reject_sender_login_mismatch')
    port = d.sub_port
    assert auth_send(port, 'alice', USERS['alice'], sender='alice@sender.test')[0] == 235
    assert auth_send(port, 'bob', USERS['bob'], sender='team@shared.test', rcpt='t@dest.test')[0] == 235
    sink.wait_messages(2)
    with smtplib.SMTP('127.0.0.1', port, timeout=20) as s:
        s.ehlo('c.test')
        s.login('bob', USERS['bob'])
        s.mail('alice@sender.test')
        code, resp = s.rcpt('r@dest.test')
        assert code == 553 and resp == b'5.7.1 <alice@sender.test>: Sender address rejected: not owned by user bob', resp
    with smtplib.SMTP('127.0.0.1', d.plain_port, timeout=20) as s:
        s.ehlo('c.test')
        s.mail('alice@sender.test')
        code, resp = s.rcpt('r@dest.test')
        assert code == 553 and resp == b'5.7.1 <alice@sender.test>: Sender address rejected: not logged in', resp
    d.wait_log(r'NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 553 5\.7\.1 <alice@sender\.test>: '
               r'Sender address rejected: not owned by user bob; from=<alice@sender\.test> to=<r@dest\.test> '
               r'proto=ESMTPA helo=<c\.test>')


# ---------------------------------------------------------------- PROXY protocol

def v2_header(src, sport, dst, dport):
    import ipaddress
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    fam = 0x11 if a.version == 4 else 0x21
    body = a.packed + b.packed + sport.to_bytes(2, 'big') + dport.to_bytes(2, 'big')
    return (b'\r\n\r\n\x00\r\nQUIT\n' + bytes([0x21, fam]) + len(body).to_bytes(2, 'big') + body)


def test_proxy_hand_made(env):
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, smtpd_upstream_proxy_protocol='haproxy',
                    smtpd_upstream_proxy_timeout='2s', mynetworks='192.0.2.0/24')

    def session(header, helo=True):
        s = socket.create_connection(('127.0.0.1', d.port), timeout=15)
        s.sendall(header)
        f = s.makefile('rb')
        g = f.readline()
        return s, f, g

    # v1 from a client in mynetworks: relays
    s, f, g = session(b'PROXY TCP4 192.0.2.10 127.0.0.1 40001 25\r\n')
    assert g.startswith(b'220 '), g
    s.sendall(b'EHLO c.test\r\n')
    while not f.readline().startswith(b'250 '):
        pass
    s.sendall(b'MAIL FROM:<p@sender.test>\r\nRCPT TO:<r@dest.test>\r\n')
    assert f.readline().startswith(b'250')
    assert f.readline().startswith(b'250'), 'relaying for 192.0.2.10 (mynetworks)'
    s.close()
    d.wait_log(r'connect from unknown\[192\.0\.2\.10\]')
    # v2 from an outsider: the relay check sees the real address
    s, f, g = session(v2_header('2001:db8::5', 40002, '::1', 25) + b'EHLO c.test\r\n')
    assert g.startswith(b'220 '), g
    while not f.readline().startswith(b'250 '):
        pass
    s.sendall(b'MAIL FROM:<p@sender.test>\r\nRCPT TO:<r@dest.test>\r\n')
    assert f.readline().startswith(b'250')
    assert f.readline().startswith(b'454 4.7.1 <r@dest.test>: Relay access denied')
    s.close()
    d.wait_log(r'NOQUEUE: reject: RCPT from unknown\[2001:db8::5\]: 454 4\.7\.1')
    # malformed headers: closed before any greeting, one warning each
    bad = [b'PROXY UNKNOWN\r\n', b'PROXY TCP4 1.2.3.4 5.6.7.8 99999 25\r\n', b'EHLO x\r\n',
           b'PROXY TCP4 1.2.3.4\x00 5.6.7.8 1 25\r\n', b'P' * 300,
           b'\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x04abcd', b'\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c' + b'x' * 12]
    for h in bad:
        s, f, g = session(h)
        assert g == b'', (h, g)
        s.close()
    d.wait_log(r'warning: haproxy read: ', count=len(bad))
    # no header at all: timeout
    s = socket.create_connection(('127.0.0.1', d.port), timeout=15)
    s.settimeout(15)
    assert s.recv(100) == b''
    s.close()
    d.wait_log(r'warning: haproxy read: timeout error')
    log = d.log()
    assert 'connect from localhost[127.0.0.1]' not in log, log


def test_proxy_real_haproxy(env):
    need('/usr/sbin/haproxy')
    if not socket.has_ipv6:
        raise Skip('no IPv6')
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, smtpd_upstream_proxy_protocol='haproxy',
                    mynetworks='127.0.0.0/8')
    hp1, hp2 = free_port(), free_port()
    cfg = os.path.join(env.dir, 'haproxy.cfg')
    with open(cfg, 'w') as f:
        f.write('''global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend v1
    bind [::1]:%d
    default_backend relayq_v1
frontend v2
    bind [::1]:%d
    default_backend relayq_v2
backend relayq_v1
    server r 127.0.0.1:%d send-proxy
backend relayq_v2
    server r 127.0.0.1:%d send-proxy-v2
''' % (hp1, hp2, d.port, d.port))
    r = run(['/usr/sbin/haproxy', '-c', '-f', cfg])
    assert r.returncode == 0, r.stdout + r.stderr
    env.spawn(['/usr/sbin/haproxy', '-db', '-f', cfg])
    wait_port(hp1, host='::1')
    wait_port(hp2, host='::1')
    for port in (hp1, hp2):
        with smtplib.SMTP('::1', port, timeout=20) as s:
            s.ehlo('c.test')
            s.mail('h@sender.test')
            code, resp = s.rcpt('r@dest.test')
            # ::1 is not in mynetworks (127.0.0.0/8): HAProxy's own address does not count
            assert code == 454 and b'Relay access denied' in resp, resp
    d.wait_log(r'connect from localhost\[::1\]', count=2)
    d.wait_log(r'NOQUEUE: reject: RCPT from localhost\[::1\]: 454 4\.7\.1 <r@dest\.test>: Relay access denied', count=2)
    assert 'connect from localhost[127.0.0.1]' not in d.log()


# ---------------------------------------------------------------- Postfix on both sides

class Postfix:
    """A throw-away Postfix instance (root only), as test_smtpd's."""

    def __init__(self, env, name, settings, smtpd_lines=''):
        if os.geteuid() != 0:
            raise Skip('a throw-away Postfix instance needs root')
        need('/usr/sbin/postfix')
        self.dir = os.path.join(env.dir, name)
        self.conf = os.path.join(self.dir, 'etc')
        os.makedirs(self.conf)
        shutil.copy('/etc/postfix/master.cf', self.conf)
        if os.path.exists('/etc/postfix/dynamicmaps.cf'):
            shutil.copy('/etc/postfix/dynamicmaps.cf', self.conf)
        open(os.path.join(self.conf, 'main.cf'), 'w').close()
        os.makedirs(os.path.join(self.dir, 'spool'))
        os.makedirs(os.path.join(self.dir, 'data'))
        shutil.chown(os.path.join(self.dir, 'data'), 'postfix')
        self.port = free_port()
        self.maillog = os.path.join(self.dir, 'maillog')
        s = {
            'compatibility_level': '3.6',
            'queue_directory': os.path.join(self.dir, 'spool'),
            'data_directory': os.path.join(self.dir, 'data'),
            'inet_interfaces': '127.0.0.1', 'inet_protocols': 'ipv4',
            'myhostname': '%s.test' % name, 'mydestination': '', 'mynetworks': '127.0.0.0/8',
            'maillog_file': self.maillog,
            'smtp_dns_support_level': 'disabled', 'disable_dns_lookups': 'yes',
            'smtp_tls_security_level': 'none', 'alias_maps': '', 'alias_database': '',
            'local_transport': 'error:no local delivery',
            'queue_run_delay': '2s', 'minimal_backoff_time': '2s', 'maximal_backoff_time': '4s',
            'master_service_disable': '',
        }
        s.update(settings)
        r = run(['postconf', '-c', self.conf, '-e'] + ['%s=%s' % kv for kv in s.items()])
        assert r.returncode == 0, r.stderr
        r = run(['postconf', '-c', self.conf, '-F', '*/*/chroot = n'])
        assert r.returncode == 0, r.stderr
        with open(os.path.join(self.conf, 'master.cf')) as fh:
            master = fh.read()
        master = re.sub(r'(?m)^smtp\s+inet\s.*$',
                        '127.0.0.1:%d inet n - n - - smtpd%s' % (self.port, smtpd_lines), master)
        if not re.search(r'(?m)^postlog\s', master):
            master += '\npostlog unix-dgram n - n - 1 postlogd\n'
        with open(os.path.join(self.conf, 'master.cf'), 'w') as fh:
            fh.write(master)
        self.penv = dict(os.environ, MAIL_CONFIG=self.conf)

    def start(self):
        r = run(['postfix', '-c', self.conf, 'check'], env=self.penv)
        if r.returncode != 0:
            raise Skip('postfix check failed: %s' % (r.stdout + r.stderr)[-400:])
        r = run(['postfix', '-c', self.conf, 'start'], env=self.penv)
        if r.returncode != 0:
            raise Skip('postfix start failed: %s' % (r.stdout + r.stderr)[-400:])
        wait_port(self.port, timeout=20)
        return self

    def stop(self):
        run(['postfix', '-c', self.conf, 'stop'], env=self.penv)
        pidf = os.path.join(self.dir, 'spool', 'pid', 'master.pid')
        deadline = time.time() + 10
        while os.path.exists(pidf) and time.time() < deadline:
            time.sleep(0.2)

    def log(self):
        return open(self.maillog, errors='replace').read() if os.path.exists(self.maillog) else ''


def test_postfix_relays_with_smtp_sasl_auth(env):
    """Postfix as a client: smtp_sasl_auth_enable, relayq's submission port as relayhost."""
    dc = Dovecot(env).start()
    sink, d = submission_env(env, dc)
    pf = Postfix(env, 'pfc', {
        'relayhost': '[127.0.0.1]:%d' % d.sub_port,
        'smtp_sasl_auth_enable': 'yes',
        'smtp_sasl_password_maps': 'inline:{ [127.0.0.1]:%d=alice:%s }' % (d.sub_port, USERS['alice']),
        'smtp_sasl_security_options': 'noanonymous',
        'smtp_sasl_mechanism_filter': 'plain, login',
    })
    pf.start()
    try:
        with smtplib.SMTP('127.0.0.1', pf.port, timeout=20) as s:
            s.sendmail('pf@sender.test', ['pfr@dest.test'], 'Subject: via postfix sasl\r\n\r\nthrough postfix\r\n')
        msgs = sink.wait_messages(1, timeout=45)
        assert msgs[0]['from'] == 'pf@sender.test' and msgs[0]['rcpts'] == ['pfr@dest.test'], msgs[0]
        d.wait_log(r'postfix/submission/smtpd\[\d+\]: [0-9A-F]+: client=localhost\[127\.0\.0\.1\], '
                   r'sasl_method=(PLAIN|LOGIN), sasl_username=alice$')
    finally:
        pf.stop()
    no_password_in(d.log())


def login_script(port):
    """The same logins against any server: 2 wrong passwords (PLAIN, LOGIN),
    one good login, one aborted LOGIN.  (Dovecot's auth penalty doubles its
    delay per failure from one address, and Postfix gives up on Dovecot
    after 10 s: more failures would make Postfix's side time out.)"""
    results = []
    for user, pw, mech in (('alice', 'wrong-pass', 'PLAIN'), ('bob', 'wrong-pass', 'LOGIN'),
                           ('alice', USERS['alice'], 'PLAIN')):
        with smtplib.SMTP('127.0.0.1', port, local_hostname='py.test', timeout=30) as s:
            s.ehlo()
            if mech == 'PLAIN':
                results.append(s.docmd('AUTH', 'PLAIN ' + plain_b64(user, pw))[0])
            else:
                s.docmd('AUTH', 'LOGIN')
                s.docmd(base64.b64encode(user.encode()).decode())
                results.append(s.docmd(base64.b64encode(pw.encode()).decode())[0])
    with smtplib.SMTP('127.0.0.1', port, local_hostname='py.test', timeout=30) as s:
        s.ehlo()
        s.docmd('AUTH', 'LOGIN')
        results.append(s.docmd('*')[0])
    return results


def f2b_count(logfile):
    r = run(['fail2ban-regex', logfile, 'postfix[mode=auth]'], timeout=120)
    m = re.search(r'Failregex: (\d+) total', r.stdout)
    assert m, r.stdout[-2000:] + r.stderr[-1000:]
    return int(m.group(1))


def test_fail2ban_counts_like_postfix(env):
    """The same login script against Postfix (smtpd_sasl_type = dovecot, the
    same Dovecot) and relayq: fail2ban-regex counts the same failures."""
    need('fail2ban-regex')
    dc = Dovecot(env).start()               # one each: the penalty is per Dovecot
    dc2 = Dovecot(env).start()
    sink, d = submission_env(env, dc2)
    pf = Postfix(env, 'pfs', {
        'smtpd_sasl_auth_enable': 'yes', 'smtpd_sasl_type': 'dovecot', 'smtpd_sasl_path': dc.sock,
        'smtpd_client_restrictions': '',
    })
    pf.start()
    try:
        pres = login_script(pf.port)
        time.sleep(1)
    finally:
        pf.stop()
    rres = login_script(d.sub_port)
    assert rres == pres == [535, 535, 235, 501], (rres, pres)
    d.wait_log(r'SASL LOGIN authentication aborted')
    pcount, rcount = f2b_count(pf.maillog), f2b_count(d.logfile)
    print('fail2ban-regex postfix[mode=auth]: Postfix %d, relayq %d' % (pcount, rcount))
    with open(os.path.join(env.dir, '..', 'rq-f2b-counts.txt'), 'w') as f:
        f.write('postfix %d relayq %d\n' % (pcount, rcount))
    assert pcount == rcount == 2, (pcount, rcount, pf.log()[-3000:])
    # the failure lines are the same but for the process name
    pl = sorted(re.sub(r'^.*?: warning: ', '', l) for l in pf.log().splitlines() if 'authentication failed' in l)
    rl = sorted(re.sub(r'^.*?: warning: ', '', l) for l in d.log().splitlines() if 'authentication failed' in l)
    assert pl == rl, (pl, rl)
