"""relayq's SMTP front door against real clients and raw sockets.

Every test runs the real bin/relayqd with the default next hop pointed at a
PySink (relayhost), so "accepted" is checked where it matters: the message
reaches the next hop, exactly once.  "Nothing queued" is checked with mailq
and with a canary: after the rejected session a good message is sent on the
same daemon, and the sink must receive that one message only.

Clients: swaks, curl, s-nail, smtplib (PIPELINING), Postfix's smtp-source,
and a throw-away Postfix instance using relayq as its relayhost (root only).
Only 127.0.0.1 is used; every wait is bounded.
"""
import os
import re
import shutil
import smtplib
import socket
import sqlite3
import subprocess
import time

from harness import Skip, free_port, wait_port

MSG = 'From: a@sender.test\r\nTo: b@dest.test\r\nSubject: smtpd test\r\n\r\nhello\r\n'
HOST = 'mta.relayq.test'


# ---------------------------------------------------------------- helpers

class Raw:
    """A raw SMTP client: exact bytes out, whole replies in (bounded waits)."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=timeout)
        self.buf = b''
        self.greeting = self.reply()

    def send(self, data):
        self.sock.sendall(data.encode('latin-1') if isinstance(data, str) else data)

    def _line(self):
        while b'\n' not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError('connection closed; pending %r' % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b'\n', 1)
        return line.rstrip(b'\r').decode('utf-8', 'replace')

    def reply(self):
        """One reply, multi-line replies joined with \\n."""
        lines = []
        while True:
            l = self._line()
            lines.append(l)
            if len(l) < 4 or l[3] != '-':
                return '\n'.join(lines)

    def cmd(self, line):
        self.send(line + '\r\n')
        return self.reply()

    def closed(self, timeout=5):
        """True if the server closes the connection within timeout (input discarded)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def relay_env(env, sink=None, **params):
    """A PySink and a relayqd that relays everything to it."""
    sink = sink or env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, **params)
    return sink, d


def assert_nothing_queued(env, d, sink, already=0, canary='canary@dest.test'):
    """Nothing from the failed session is or will be queued: mailq is empty,
    and a canary sent afterwards is the only new message at the sink."""
    r = env.cli(d, 'mailq')
    assert r.stdout.strip() == 'Mail queue is empty', r.stdout + r.stderr
    env.send(d.port, 'canary@sender.test', [canary],
             'Subject: canary\r\n\r\ncanary\r\n')
    msgs = sink.wait_messages(already + 1)
    time.sleep(0.5)
    msgs = list(sink.messages)
    assert len(msgs) == already + 1, [m['from'] for m in msgs]
    assert msgs[-1]['from'] == 'canary@sender.test', msgs[-1]
    d.wait_log(r'removed')
    r = env.cli(d, 'mailq')
    assert r.stdout.strip() == 'Mail queue is empty', r.stdout + r.stderr


def need(path):
    if not shutil.which(path) and not os.path.exists(path):
        raise Skip('%s not installed' % path)


def run(argv, timeout=60, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def selfsigned(env):
    need('openssl')
    cert = os.path.join(env.dir, 'cert.pem')
    key = os.path.join(env.dir, 'key.pem')
    r = run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
             '-subj', '/CN=mta.relayq.test', '-keyout', key, '-out', cert])
    assert r.returncode == 0, r.stderr
    os.chmod(key, 0o644)   # the daemon reads it after dropping root
    return cert, key


# ---------------------------------------------------------------- 1. real clients

def test_swaks(env):
    need('swaks')
    sink, d = relay_env(env)
    r = run(['swaks', '--server', '127.0.0.1:%d' % d.port, '--from', 'swaks@sender.test',
             '--to', 'r1@dest.test', '--helo', 'swaks.test', '--body', 'swaks body line',
             '--h-Subject', 'swaks test', '--timeout', '20'])
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r'(?m)^<-  250 2\.0\.0 Ok: queued as ([0-9A-F]+)$', r.stdout)
    assert m, r.stdout
    qid = m.group(1)
    msgs = sink.wait_messages(1)
    assert msgs[0]['from'] == 'swaks@sender.test' and msgs[0]['rcpts'] == ['r1@dest.test']
    body = msgs[0]['data'].decode()
    assert 'swaks body line' in body, body
    assert re.match(r'Received: from swaks\.test \(localhost \[127\.0\.0\.1\]\)\r\n'
                    r'\tby mta\.relayq\.test \(relayq\) with ESMTP id %s\r\n'
                    r'\tfor <r1@dest\.test>; ' % qid, body), body[:300]
    d.wait_log(r'%s: removed' % qid)


def test_curl(env):
    need('curl')
    sink, d = relay_env(env)
    f = os.path.join(env.dir, 'mail.txt')
    with open(f, 'w') as fh:
        # CRLF: curl dot-stuffs only after CRLF (a bare LF then "." would be
        # sent unstuffed and, as in Postfix, lose its dot).
        fh.write('From: c@sender.test\r\nTo: r@dest.test\r\nSubject: curl\r\n\r\n'
                 'curl body\r\n.leading dot\r\n..two dots\r\n')
    r = run(['curl', '-sS', '--max-time', '20', 'smtp://127.0.0.1:%d' % d.port,
             '--mail-from', 'c@sender.test', '--mail-rcpt', 'r1@dest.test',
             '--mail-rcpt', 'r2@dest.test', '-T', f])
    assert r.returncode == 0, r.stdout + r.stderr
    msgs = sink.wait_messages(1)
    assert msgs[0]['from'] == 'c@sender.test'
    assert sorted(msgs[0]['rcpts']) == ['r1@dest.test', 'r2@dest.test']
    body = msgs[0]['data']
    # curl dot-stuffs; relayq must undo the stuffing, exactly once.
    assert b'\r\n\r\ncurl body\r\n.leading dot\r\n..two dots\r\n' in body, body


def test_snail(env):
    need('s-nail')
    sink, d = relay_env(env)
    home = os.path.join(env.dir, 'home')
    os.makedirs(home)
    e = dict(os.environ, HOME=home, MAILRC='/dev/null')
    r = run(['s-nail', '-n', '-S', 'v15-compat', '-S', 'mta=smtp://127.0.0.1:%d' % d.port,
             '-S', 'smtp-auth=none',
             '-S', 'from=nail@sender.test', '-S', 'sendwait', '-s', 'nail subject', 'rn@dest.test'],
            input='s-nail body\n', env=e)
    assert r.returncode == 0, r.stdout + r.stderr
    msgs = sink.wait_messages(1)
    assert msgs[0]['from'] == 'nail@sender.test' and msgs[0]['rcpts'] == ['rn@dest.test']
    body = msgs[0]['data'].decode()
    assert 'Subject: nail subject\r\n' in body and 's-nail body' in body, body


def test_smtplib_pipelining(env):
    sink, d = relay_env(env)
    with smtplib.SMTP('127.0.0.1', d.port, local_hostname='py.test', timeout=20) as s:
        code, resp = s.ehlo()
        assert code == 250 and s.has_extn('pipelining'), resp
        assert s.has_extn('size') and s.esmtp_features['size'] == '10240000'
        for ext in ('8bitmime', 'dsn', 'enhancedstatuscodes', 'smtputf8'):
            assert s.has_extn(ext), (ext, resp)
        # Raw pipelined batch: MAIL + 3 RCPT + DATA in one write.
        s.send(b'MAIL FROM:<p@sender.test>\r\nRCPT TO:<a@dest.test>\r\n'
               b'RCPT TO:<b@dest.test>\r\nRCPT TO:<c@dest.test>\r\nDATA\r\n')
        replies = [s.getreply() for _ in range(5)]
        assert [c for c, _ in replies] == [250, 250, 250, 250, 354], replies
        assert replies[0][1] == b'2.1.0 Ok' and replies[1][1] == b'2.1.5 Ok', replies
        s.send(b'Subject: pipelined\r\n\r\nbody\r\n.\r\n')
        code, resp = s.getreply()
        assert code == 250 and resp.startswith(b'2.0.0 Ok: queued as '), resp
        # A second transaction on the same connection, with smtplib's own API.
        s.sendmail('q@sender.test', ['d@dest.test', 'e@dest.test'], MSG)
    msgs = sink.wait_messages(2)
    byfrom = {m['from']: m for m in msgs}
    assert sorted(byfrom['p@sender.test']['rcpts']) == ['a@dest.test', 'b@dest.test', 'c@dest.test']
    assert sorted(byfrom['q@sender.test']['rcpts']) == ['d@dest.test', 'e@dest.test']
    d.wait_log(r'disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=2 rcpt=5 data=2 quit=1 commands=11')


def test_smtp_source_50(env):
    need('/usr/sbin/smtp-source')
    sink, d = relay_env(env)
    r = run(['/usr/sbin/smtp-source', '-s', '5', '-m', '50', '-f', 's@x', '-t', 'r@dest.test',
             '127.0.0.1:%d' % d.port], timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    msgs = sink.wait_messages(50, timeout=60)
    time.sleep(1)
    assert len(sink.messages) == 50, len(sink.messages)
    assert all(m['from'] == 's@x' and m['rcpts'] == ['r@dest.test'] for m in msgs)
    d.wait_log(r': removed', count=50, timeout=30)


# ---------------------------------------------------------------- 2. Postfix -> relayq

def test_postfix_relays_through_relayq(env):
    if os.geteuid() != 0:
        raise Skip('a throw-away Postfix instance needs root')
    need('/usr/sbin/postfix')
    sink, d = relay_env(env)
    pdir = os.path.join(env.dir, 'pf')
    conf = os.path.join(pdir, 'etc')
    os.makedirs(conf)
    shutil.copy('/etc/postfix/master.cf', conf)
    for f in ('dynamicmaps.cf',):
        if os.path.exists('/etc/postfix/' + f):
            shutil.copy('/etc/postfix/' + f, conf)
    open(os.path.join(conf, 'main.cf'), 'w').close()
    os.makedirs(os.path.join(pdir, 'spool'))          # root-owned, as postfix wants
    os.makedirs(os.path.join(pdir, 'data'))
    shutil.chown(os.path.join(pdir, 'data'), 'postfix')
    pport = free_port()
    pfmaillog = os.path.join(pdir, 'maillog')
    settings = {
        'compatibility_level': '3.6',
        'queue_directory': os.path.join(pdir, 'spool'),
        'data_directory': os.path.join(pdir, 'data'),
        'inet_interfaces': '127.0.0.1',
        'inet_protocols': 'ipv4',
        'myhostname': 'pf.test',
        'mydestination': '',
        'mynetworks': '127.0.0.0/8',
        'relayhost': '[127.0.0.1]:%d' % d.port,
        'maillog_file': pfmaillog,
        'smtp_dns_support_level': 'disabled',
        'disable_dns_lookups': 'yes',
        'smtpd_client_restrictions': '',
        'smtp_tls_security_level': 'none',
        'alias_maps': '', 'alias_database': '',
        'local_transport': 'error:no local delivery',
        'queue_run_delay': '2s', 'minimal_backoff_time': '2s', 'maximal_backoff_time': '4s',
        'master_service_disable': '',
    }
    args = ['postconf', '-c', conf, '-e'] + ['%s=%s' % kv for kv in settings.items()]
    r = run(args)
    assert r.returncode == 0, r.stderr
    # No chroot: the spool is a bare temporary directory.
    r = run(['postconf', '-c', conf, '-F', '*/*/chroot = n'])
    assert r.returncode == 0, r.stderr
    # smtpd on a free port instead of 25; postlog for maillog_file.
    with open(os.path.join(conf, 'master.cf')) as fh:
        master = fh.read()
    master = re.sub(r'(?m)^smtp\s+inet\s.*$', '127.0.0.1:%d inet n - n - - smtpd' % pport, master)
    if not re.search(r'(?m)^postlog\s', master):
        master += '\npostlog unix-dgram n - n - 1 postlogd\n'
    with open(os.path.join(conf, 'master.cf'), 'w') as fh:
        fh.write(master)
    penv = dict(os.environ, MAIL_CONFIG=conf)
    r = run(['postfix', '-c', conf, 'check'], env=penv)
    if r.returncode != 0:
        raise Skip('postfix check failed: %s' % (r.stdout + r.stderr)[-400:])
    r = run(['postfix', '-c', conf, 'start'], env=penv)
    try:
        if r.returncode != 0:
            raise Skip('postfix start failed: %s' % (r.stdout + r.stderr)[-400:])
        wait_port(pport, timeout=20)
        with smtplib.SMTP('127.0.0.1', pport, timeout=20) as s:
            s.sendmail('pf@sender.test', ['pfr@dest.test'],
                       'From: pf@sender.test\r\nSubject: via postfix\r\n\r\nthrough postfix\r\n')
        msgs = sink.wait_messages(1, timeout=45)
        m = msgs[0]
        assert m['from'] == 'pf@sender.test' and m['rcpts'] == ['pfr@dest.test'], m
        body = m['data'].decode()
        assert 'through postfix' in body
        # relayq's Received: names Postfix's HELO; Postfix's own is below it.
        assert body.startswith('Received: from pf.test (localhost [127.0.0.1])\r\n'
                               '\tby mta.relayq.test (relayq) with ESMTP id '), body[:300]
        assert 'by pf.test (Postfix)' in body, body[:600]
        # Postfix logs relayq's reply.
        deadline = time.time() + 20
        while time.time() < deadline:
            pflog = open(pfmaillog, errors='replace').read() if os.path.exists(pfmaillog) else ''
            if re.search(r'relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*status=sent \(250 2\.0\.0 Ok: queued as [0-9A-F]+\)'
                         % d.port, pflog):
                break
            time.sleep(0.2)
        else:
            raise AssertionError('postfix log has no status=sent via relayq:\n' + pflog[-3000:])
        d.wait_log(r'connect from localhost\[127\.0\.0\.1\]')
    finally:
        run(['postfix', '-c', conf, 'stop'], env=penv)
        # master exits within a second or two; do not leave it behind.
        pidf = os.path.join(pdir, 'spool', 'pid', 'master.pid')
        deadline = time.time() + 10
        while os.path.exists(pidf) and time.time() < deadline:
            time.sleep(0.2)


# ---------------------------------------------------------------- 3. STARTTLS

def swaks_tls():
    need('swaks')
    r = run(['swaks', '--support'])
    if '=== TLS supported' not in r.stdout + r.stderr:
        raise Skip('swaks has no TLS support (Debian package libnet-ssleay-perl missing)')


def tls_send(port, helo, sender, rcpt):
    """smtplib through STARTTLS (certificate not verified: self-signed)."""
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP('127.0.0.1', port, local_hostname=helo, timeout=20) as s:
        s.ehlo()
        assert s.has_extn('starttls'), s.esmtp_features
        code, resp = s.starttls(context=ctx)
        assert (code, resp) == (220, b'2.0.0 Ready to start TLS'), (code, resp)
        s.ehlo()
        # RFC 3207: not offered again once TLS is active.
        assert not s.has_extn('starttls'), s.esmtp_features
        assert s.has_extn('pipelining') and s.has_extn('dsn')
        s.sendmail(sender, [rcpt], MSG)


def test_starttls_may(env):
    cert, key = selfsigned(env)
    sink, d = relay_env(env, smtpd_tls_cert_file=cert, smtpd_tls_key_file=key,
                        smtpd_tls_security_level='may')
    c = Raw(d.port)
    assert '250-STARTTLS' in c.cmd('EHLO x.test').split('\n')
    # Plain text is still allowed at "may".
    assert c.cmd('MAIL FROM:<plain@sender.test>') == '250 2.1.0 Ok'
    c.cmd('QUIT')
    c.close()
    tls_send(d.port, 'tls.test', 't@sender.test', 'tr@dest.test')
    msgs = sink.wait_messages(1)
    body = msgs[0]['data'].decode()
    assert re.match(r'Received: from tls\.test \(localhost \[127\.0\.0\.1\]\)\r\n'
                    r'\tby mta\.relayq\.test \(relayq\) with ESMTPS id ', body), body[:300]


def test_starttls_swaks(env):
    swaks_tls()
    cert, key = selfsigned(env)
    sink, d = relay_env(env, smtpd_tls_cert_file=cert, smtpd_tls_key_file=key,
                        smtpd_tls_security_level='may')
    r = run(['swaks', '--server', '127.0.0.1:%d' % d.port, '--tls', '--from', 't@sender.test',
             '--to', 'tr@dest.test', '--helo', 'tls.test', '--timeout', '20'])
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r'(?m)^<-  220 2\.0\.0 Ready to start TLS$', r.stdout), r.stdout
    assert re.search(r'(?m)^=== TLS started with cipher ', r.stdout), r.stdout
    assert re.search(r'(?m)^<~  250 2\.0\.0 Ok: queued as [0-9A-F]+$', r.stdout), r.stdout
    after = r.stdout.split('Ready to start TLS', 1)[1].split('MAIL FROM', 1)[0]
    assert 'STARTTLS' not in after, after
    msgs = sink.wait_messages(1)
    body = msgs[0]['data'].decode()
    assert re.match(r'Received: from tls\.test \(localhost \[127\.0\.0\.1\]\)\r\n'
                    r'\tby mta\.relayq\.test \(relayq\) with ESMTPS id ', body), body[:300]


def test_starttls_encrypt(env):
    cert, key = selfsigned(env)
    sink, d = relay_env(env, smtpd_tls_cert_file=cert, smtpd_tls_key_file=key,
                        smtpd_tls_security_level='encrypt')
    c = Raw(d.port)
    assert '250-STARTTLS' in c.cmd('EHLO x.test').split('\n')
    assert c.cmd('MAIL FROM:<a@sender.test>') == '530 5.7.0 Must issue a STARTTLS command first'
    assert c.cmd('RCPT TO:<b@dest.test>') == '530 5.7.0 Must issue a STARTTLS command first'
    assert c.cmd('DATA') == '530 5.7.0 Must issue a STARTTLS command first'
    assert c.cmd('NOOP') == '250 2.0.0 Ok'
    assert c.cmd('QUIT') == '221 2.0.0 Bye'
    c.close()
    # Through STARTTLS the same transaction is accepted.
    tls_send(d.port, 'tls.test', 't@sender.test', 'tr@dest.test')
    msgs = sink.wait_messages(1)
    assert 'with ESMTPS id' in msgs[0]['data'].decode()
    assert len(msgs) == 1 and msgs[0]['from'] == 't@sender.test'


def test_starttls_discards_pipelined_plaintext(env):
    """Commands pipelined after STARTTLS in the clear must not be executed
    inside the TLS session (the CVE-2011-0411 class of injection)."""
    import ssl
    cert, key = selfsigned(env)
    sink, d = relay_env(env, smtpd_tls_cert_file=cert, smtpd_tls_key_file=key,
                        smtpd_tls_security_level='may')
    c = Raw(d.port)
    c.cmd('EHLO x.test')
    c.send('STARTTLS\r\nMAIL FROM:<injected@x.test>\r\nRCPT TO:<victim@dest.test>\r\n')
    assert c.reply() == '220 2.0.0 Ready to start TLS'
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c.sock = ctx.wrap_socket(c.sock)
    c.buf = b''
    assert c.cmd('EHLO x.test').startswith('250-mta.relayq.test')
    # The injected MAIL was dropped: there is no transaction.
    assert c.cmd('RCPT TO:<b@dest.test>') == '503 5.5.1 Error: need MAIL command'
    assert c.cmd('MAIL FROM:<real@x.test>') == '250 2.1.0 Ok'
    assert c.cmd('RCPT TO:<b@dest.test>') == '250 2.1.5 Ok'
    assert c.cmd('DATA').startswith('354')
    c.send(MSG + '.\r\n')
    assert c.reply().startswith('250 2.0.0 Ok: queued as')
    assert c.cmd('QUIT') == '221 2.0.0 Bye'
    msgs = sink.wait_messages(1)
    assert msgs[0]['from'] == 'real@x.test' and msgs[0]['rcpts'] == ['b@dest.test'], msgs[0]
    d.wait_log(r'disconnect from localhost\[127\.0\.0\.1\] ehlo=2 starttls=1 mail=1 rcpt=1/2 '
               r'data=1 quit=1 commands=7/8')


# ---------------------------------------------------------------- 4. relay control

def test_relay_access_denied(env):
    sink, d = relay_env(env, mynetworks='127.0.0.2/32', relay_domains='ok.test')
    c = Raw(d.port)
    c.cmd('EHLO outside.test')
    assert c.cmd('MAIL FROM:<s@sender.test>').startswith('250')
    assert c.cmd('RCPT TO:<x@y.test>') == '454 4.7.1 <x@y.test>: Relay access denied'
    assert c.cmd('RCPT TO:<z@ok.test>') == '250 2.1.5 Ok'
    assert c.cmd('RCPT TO:<z@sub.ok.test>') == '250 2.1.5 Ok'
    assert c.cmd('DATA').startswith('354')
    c.send('Subject: relay\r\n\r\nrelay\r\n.\r\n')
    assert c.reply().startswith('250 2.0.0 Ok: queued as ')
    c.cmd('QUIT')
    c.close()
    d.wait_log(r'NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 454 4\.7\.1 <x@y\.test>: '
               r'Relay access denied; from=<s@sender\.test> to=<x@y\.test> proto=ESMTP helo=<outside\.test>$')
    msgs = sink.wait_messages(1)
    assert sorted(msgs[0]['rcpts']) == ['z@ok.test', 'z@sub.ok.test'], msgs[0]


def test_relay_reject_unauth_destination(env):
    sink, d = relay_env(env, mynetworks='127.0.0.2/32', relay_domains='ok.test',
                        smtpd_relay_restrictions='permit_mynetworks, reject_unauth_destination')
    c = Raw(d.port)
    c.cmd('HELO outside.test')
    assert c.cmd('MAIL FROM:<s@sender.test>').startswith('250')
    assert c.cmd('RCPT TO:<x@y.test>') == '554 5.7.1 <x@y.test>: Relay access denied'
    assert c.cmd('RCPT TO:<a%b@ok.test>').startswith('554 5.7.1')
    assert c.cmd('DATA') == '554 5.5.1 Error: no valid recipients'
    c.cmd('QUIT')
    d.wait_log(r'NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 554 5\.7\.1 <x@y\.test>: '
               r'Relay access denied; from=<s@sender\.test> to=<x@y\.test> proto=SMTP helo=<outside\.test>')
    assert_nothing_queued(env, d, sink, canary='canary@ok.test')


# ---------------------------------------------------------------- 5. limits

def test_size_param_too_big(env):
    sink, d = relay_env(env, message_size_limit=10000)
    c = Raw(d.port)
    assert '250-SIZE 10000' in c.cmd('EHLO x.test')
    assert c.cmd('MAIL FROM:<a@sender.test> SIZE=10001') == '552 5.3.4 Message size exceeds fixed limit'
    assert c.cmd('MAIL FROM:<a@sender.test> SIZE=10000').startswith('250')
    c.cmd('QUIT')


def test_data_too_big(env):
    sink, d = relay_env(env, message_size_limit=10000)
    c = Raw(d.port)
    c.cmd('EHLO x.test')
    assert c.cmd('MAIL FROM:<a@sender.test>').startswith('250')
    assert c.cmd('RCPT TO:<b@dest.test>').startswith('250')
    assert c.cmd('DATA').startswith('354')
    c.send('Subject: big\r\n\r\n' + ('x' * 70 + '\r\n') * 300 + '.\r\n')
    assert c.reply() == '552 5.3.4 Message size exceeds fixed limit'
    # The session goes on.
    assert c.cmd('NOOP') == '250 2.0.0 Ok'
    c.cmd('QUIT')
    c.close()
    assert_nothing_queued(env, d, sink)


def test_recipient_limit(env):
    sink, d = relay_env(env, smtpd_recipient_limit=3)
    c = Raw(d.port)
    c.cmd('EHLO x.test')
    c.cmd('MAIL FROM:<a@sender.test>')
    for i in range(3):
        assert c.cmd('RCPT TO:<r%d@dest.test>' % i) == '250 2.1.5 Ok'
    assert c.cmd('RCPT TO:<r3@dest.test>') == '452 4.5.3 Error: too many recipients'
    assert c.cmd('DATA').startswith('354')
    c.send('Subject: limit\r\n\r\nx\r\n.\r\n')
    assert c.reply().startswith('250 2.0.0 Ok: queued as')
    c.cmd('QUIT')
    msgs = sink.wait_messages(1)
    assert sorted(msgs[0]['rcpts']) == ['r0@dest.test', 'r1@dest.test', 'r2@dest.test']


def test_timeout(env):
    sink, d = relay_env(env, smtpd_timeout='2s')
    c = Raw(d.port)
    c.cmd('EHLO x.test')
    c.cmd('MAIL FROM:<a@sender.test>')
    t0 = time.time()
    c.sock.settimeout(10)
    assert c.reply() == '421 4.4.2 mta.relayq.test Error: timeout exceeded'
    assert 1.5 <= time.time() - t0 < 6, time.time() - t0
    assert c.closed()
    d.wait_log(r'timeout after MAIL from localhost\[127\.0\.0\.1\]$')
    d.wait_log(r'disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=1 commands=2$')
    # Also in the middle of DATA.
    c = Raw(d.port)
    c.cmd('EHLO x.test')
    c.cmd('MAIL FROM:<a@sender.test>')
    c.cmd('RCPT TO:<b@dest.test>')
    assert c.cmd('DATA').startswith('354')
    c.send('Subject: half\r\n\r\nhalf a mess')
    c.sock.settimeout(10)
    assert c.reply() == '421 4.4.2 mta.relayq.test Error: timeout exceeded'
    d.wait_log(r'timeout after DATA( \(\d+ bytes\))? from localhost\[127\.0\.0\.1\]$')
    # As in Postfix, the interrupted DATA counts as a failed command.
    d.wait_log(r'disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=1 data=0/1 commands=3/4$')
    assert_nothing_queued(env, d, sink)


def test_connection_count_limit(env):
    sink, d = relay_env(env, smtpd_client_connection_count_limit=2)
    a, b = Raw(d.port), Raw(d.port)
    assert a.greeting.startswith('220 ') and b.greeting.startswith('220 ')
    c = Raw(d.port)
    assert c.greeting == '421 4.7.0 mta.relayq.test Error: too many connections from 127.0.0.1', c.greeting
    assert c.closed()
    d.wait_log(r'warning: Connection concurrency limit exceeded: 3 from localhost\[127\.0\.0\.1\] for service smtp')
    # The first two still work; after one leaves, a new one gets in.
    assert a.cmd('NOOP') == '250 2.0.0 Ok'
    assert a.cmd('QUIT') == '221 2.0.0 Bye'
    a.close()
    d.wait_log(r'disconnect from localhost\[127\.0\.0\.1\] quit=1 commands=1|'
               r'disconnect from localhost\[127\.0\.0\.1\] noop=1 quit=1 commands=2')
    e = Raw(d.port)
    assert e.greeting.startswith('220 '), e.greeting
    assert b.cmd('NOOP') == '250 2.0.0 Ok'


def test_long_line_without_newline(env):
    sink, d = relay_env(env)
    c = Raw(d.port)
    c.cmd('EHLO x.test')
    c.send('MAIL FROM:<' + 'a' * 65536)
    time.sleep(0.3)
    c.send('@sender.test>\r\n')
    assert c.reply() == '500 5.5.0 Error: line too long'
    # The session goes on, and the daemon is alive for others.
    assert c.cmd('NOOP') == '250 2.0.0 Ok'
    c.close()
    env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    sink.wait_messages(1)


def test_long_line_in_data_kept_whole(env):
    """A 100 KB body line sent in pieces is stored whole (not cut at
    line_length_limit); the next hop sees all of it."""
    sink, d = relay_env(env)
    c = Raw(d.port)
    c.cmd('EHLO x.test')
    c.cmd('MAIL FROM:<a@sender.test>')
    c.cmd('RCPT TO:<b@dest.test>')
    assert c.cmd('DATA').startswith('354')
    c.send('Subject: long\r\n\r\nstart:')
    for i in range(10):
        c.send('%d' % i + 'y' * 9999)
        time.sleep(0.02)
    c.send('\r\nend\r\n.\r\n')
    assert c.reply().startswith('250 2.0.0 Ok: queued as')
    c.cmd('QUIT')
    data = sink.wait_messages(1)[0]['data']
    # relayq folds lines over 998 bytes with CRLF SPACE on the way out
    # (smtp_line_length_limit, as Postfix); unfolded, nothing is missing.
    flat = data.replace(b'\r\n ', b'').replace(b'\r\n', b'')
    want = b'start:' + b''.join(b'%d' % i + b'y' * 9999 for i in range(10)) + b'end'
    assert want in flat, len(data)


def test_nul_and_invalid_utf8_no_crash(env):
    sink, d = relay_env(env)
    c = Raw(d.port)
    c.cmd('EHLO x.test')
    assert c.cmd('NO\0OP') == '500 5.5.2 Error: bad syntax'
    assert c.cmd('MAIL FROM:<a\0b@sender.test>')[0] == '5'
    assert c.cmd('MAIL FROM:<\xff\xfe@sender.test>')[0] == '5'
    assert c.cmd('\xc3\x28\xa0\xa1') .startswith('500')
    assert c.cmd('MAIL FROM:<a@sender.test>').startswith('250')
    assert c.cmd('RCPT TO:<b@dest.test>').startswith('250')
    assert c.cmd('DATA').startswith('354')
    body = b'Subject: bin\r\n\r\nnul:\0:end\r\nbad utf8: \xc3\x28 \xff\xfe\r\n'
    c.send(body + b'.\r\n')
    assert c.reply().startswith('250 2.0.0 Ok: queued as')
    c.cmd('QUIT')
    msgs = sink.wait_messages(1)
    assert b'nul:\0:end\r\nbad utf8: \xc3\x28 \xff\xfe\r\n' in msgs[0]['data']
    # Still alive.
    env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    sink.wait_messages(2)


def test_disconnect_in_data(env):
    sink, d = relay_env(env)
    c = Raw(d.port)
    c.cmd('EHLO x.test')
    c.cmd('MAIL FROM:<a@sender.test>')
    c.cmd('RCPT TO:<b@dest.test>')
    assert c.cmd('DATA').startswith('354')
    c.send('Subject: cut\r\n\r\nhalf a message\r\n')
    time.sleep(0.2)
    c.close()
    d.wait_log(r'lost connection after DATA( \(\d+ bytes\))? from localhost\[127\.0\.0\.1\]$')
    d.wait_log(r'disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=1 data=0/1 commands=3/4')
    assert_nothing_queued(env, d, sink)


def test_rcpt_before_mail(env):
    sink, d = relay_env(env)
    c = Raw(d.port)
    c.cmd('EHLO x.test')
    assert c.cmd('RCPT TO:<b@dest.test>') == '503 5.5.1 Error: need MAIL command'
    c.cmd('QUIT')


# ---------------------------------------------------------------- 6. smuggling

SMUGGLE = ['\n.\n', '\r\n.\n', '\n.\r\n', '\r.\r']


def smuggle_session(d, seq):
    c = Raw(d.port)
    c.cmd('EHLO smuggler.test')
    assert c.cmd('MAIL FROM:<real@sender.test>').startswith('250')
    assert c.cmd('RCPT TO:<real@dest.test>').startswith('250')
    assert c.cmd('DATA').startswith('354')
    c.send('Subject: smuggle\r\n\r\nbefore' + seq +
           'MAIL FROM:<evil@x>\r\nRCPT TO:<victim@dest.test>\r\nDATA\r\n'
           'Subject: smuggled\r\n\r\nevil\r\n.\r\n')
    return c


def check_smuggle_accepted(env, mode):
    sink, d = relay_env(env, smtpd_forbid_bare_newline=mode,
                        smtpd_forbid_bare_newline_exclusions='')
    for i, seq in enumerate(SMUGGLE):
        c = smuggle_session(d, seq)
        r = c.reply()
        assert r.startswith('250 2.0.0 Ok: queued as'), (seq, r)
        assert c.cmd('QUIT') == '221 2.0.0 Bye', seq
        c.close()
        msgs = sink.wait_messages(i + 1)
        time.sleep(0.5)
        assert len(sink.messages) == i + 1, (seq, [m['from'] for m in sink.messages])
        m = sink.messages[i]
        assert m['from'] == 'real@sender.test' and m['rcpts'] == ['real@dest.test'], (seq, m)
        assert b'MAIL FROM:<evil@x>' in m['data'] and b'evil' in m['data'], (seq, m['data'])
    assert not any(m['from'] == 'evil@x' for m in sink.messages)
    assert 'evil@x' not in ''.join(l for l in d.log().splitlines() if 'from=<' in l)


def test_smuggling_normalize(env):
    check_smuggle_accepted(env, 'normalize')


def test_smuggling_no(env):
    check_smuggle_accepted(env, 'no')


def check_smuggle_rejected(env, mode):
    sink, d = relay_env(env, smtpd_forbid_bare_newline=mode,
                        smtpd_forbid_bare_newline_exclusions='')
    for seq in SMUGGLE:
        c = smuggle_session(d, seq)
        if '\n' in seq.replace('\r\n', ''):
            r = c.reply()
            assert r == '521 5.5.2 mta.relayq.test Error: bare <LF> received', (seq, r)
            assert c.closed(), seq
        else:
            # <CR>.<CR> holds no bare LF: nothing to reject, and it does not
            # end DATA either; the smuggled commands stay in the one message.
            r = c.reply()
            assert r.startswith('250 2.0.0 Ok: queued as'), (seq, r)
            c.cmd('QUIT')
            msgs = sink.wait_messages(1)
            assert len(msgs) == 1 and msgs[0]['from'] == 'real@sender.test'
            assert b'MAIL FROM:<evil@x>' in msgs[0]['data']
        c.close()
    d.wait_log(r'removed')
    time.sleep(0.5)
    assert len(sink.messages) == 1, [m['from'] for m in sink.messages]
    assert_nothing_queued(env, d, sink, already=1)


def test_smuggling_yes(env):
    check_smuggle_rejected(env, 'yes')


def test_smuggling_reject(env):
    check_smuggle_rejected(env, 'reject')


# ---------------------------------------------------------------- 7. protocol replies

def test_protocol_replies(env):
    sink, d = relay_env(env)
    c = Raw(d.port)
    assert c.greeting == '220 mta.relayq.test ESMTP relayq', c.greeting
    assert c.cmd('FOO bar') == '500 5.5.2 Error: command not recognized'
    assert c.cmd('HELP') == '500 5.5.2 Error: command not recognized'
    ehlo = c.cmd('EHLO client.test').split('\n')
    assert ehlo[0] == '250-mta.relayq.test', ehlo
    assert 'STARTTLS' not in ' '.join(ehlo)   # no certificate configured
    assert c.cmd('MAIL TO:<a@sender.test>') == '501 5.5.4 Syntax: MAIL FROM:<address>'
    assert c.cmd('MAIL') == '501 5.5.4 Syntax: MAIL FROM:<address>'
    assert c.cmd('DATA') == '503 5.5.1 Error: need RCPT command'
    assert c.cmd('MAIL FROM:<a@sender.test>') == '250 2.1.0 Ok'
    assert c.cmd('MAIL FROM:<a@sender.test>') == '503 5.5.1 Error: nested MAIL command'
    assert c.cmd('DATA') == '554 5.5.1 Error: no valid recipients'
    assert c.cmd('VRFY someone') == '252 2.0.0 someone'
    assert c.cmd('NOOP') == '250 2.0.0 Ok'
    assert c.cmd('RSET') == '250 2.0.0 Ok'
    assert c.cmd('RCPT TO:<b@dest.test>') == '503 5.5.1 Error: need MAIL command'
    assert c.cmd('QUIT') == '221 2.0.0 Bye'
    assert c.closed()
    d.wait_log(r'disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=1/4 rcpt=0/1 data=0/2 '
               r'rset=1 noop=1 vrfy=1 quit=1 unknown=0/2 commands=6/14$')


def test_disconnect_counts(env):
    sink, d = relay_env(env)
    c = Raw(d.port)
    c.cmd('EHLO client.test')
    c.cmd('MAIL FROM:<a@sender.test>')
    c.cmd('RCPT TO:<b@dest.test>')
    c.cmd('DATA')
    c.send(MSG + '.\r\n')
    qid = re.search(r'queued as ([0-9A-F]+)', c.reply()).group(1)
    assert c.cmd('QUIT') == '221 2.0.0 Bye'
    d.wait_log(r'smtpd\[\d+\]: disconnect from localhost\[127\.0\.0\.1\] '
               r'ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5$')
    d.wait_log(r'smtpd\[\d+\]: %s: client=localhost\[127\.0\.0\.1\]$' % qid)
    sink.wait_messages(1)


def test_dsn_parameters_stored_and_passed_on(env):
    port = free_port()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % port, queue_run_delay='2s',
                    minimal_backoff_time='2s', maximal_backoff_time='2s')
    c = Raw(d.port)
    c.cmd('EHLO client.test')
    assert c.cmd('MAIL FROM:<a@sender.test> RET=HDRS ENVID=env+2Bid.1') == '250 2.1.0 Ok'
    assert c.cmd('RCPT TO:<b@dest.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;orig+2Bb@dest.test') == '250 2.1.5 Ok'
    assert c.cmd('RCPT TO:<c@dest.test> NOTIFY=NEVER') == '250 2.1.5 Ok'
    assert c.cmd('RCPT TO:<e@dest.test>') == '250 2.1.5 Ok'
    c.cmd('DATA')
    c.send(MSG + '.\r\n')
    qid = re.search(r'queued as ([0-9A-F]+)', c.reply()).group(1)
    c.cmd('QUIT')
    d.wait_log(r'%s: to=<b@dest\.test>, .*status=deferred' % qid)
    db = sqlite3.connect('file:%s?mode=ro' % os.path.join(d.queue_dir, 'queue.db'), uri=True)
    try:
        row = db.execute('SELECT envid, ret, sender FROM msg WHERE qid = ?', (qid,)).fetchone()
        assert row == ('env+id.1', 2, 'a@sender.test'), row
        rc = db.execute('SELECT r.addr, r.orcpt, r.notify FROM rcpt r JOIN msg m ON m.seq = r.seq '
                        'WHERE m.qid = ? ORDER BY r.idx', (qid,)).fetchall()
    finally:
        db.close()
    assert rc == [('b@dest.test', 'rfc822;orig+2Bb@dest.test', 2 | 8),
                  ('c@dest.test', None, 1),
                  ('e@dest.test', None, 0)], rc
    # The next hop comes back, offers DSN: the parameters go on.
    sink = env.pysink(port=port)
    env.cli(d, 'flush', check=True)
    msgs = sink.wait_messages(1, timeout=20)
    m = msgs[0]
    margs = m['mail_args'].split()
    assert 'RET=HDRS' in margs, margs
    args = dict(zip(m['rcpts'], m['rcpt_args']))
    assert sorted(args['b@dest.test'].split()) == ['NOTIFY=SUCCESS,DELAY', 'ORCPT=rfc822;orig+2Bb@dest.test'], args
    assert args['c@dest.test'].split() == ['NOTIFY=NEVER'], args
    assert args['e@dest.test'] == '', args
    # ENVID goes on xtext-encoded, as it came in ("+" is "+2B").
    assert 'ENVID=env+2Bid.1' in margs, margs
