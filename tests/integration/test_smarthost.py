"""Smarthost relaying: SMTP AUTH to the next hop over verified TLS.

The smarthost is a throw-away Postfix on loopback (myhostname smarthost.test)
with a certificate from a CA made here, STARTTLS on one port and
smtpd_tls_wrappermode on another, and SASL through Dovecot's auth socket
with a passwd-file made here; it relays what it accepts to a PySink.  Names
resolve through dnsmasq on a loopback port.  A second implementation,
aiosmtpd (Debian python3-aiosmtpd, run with /usr/bin/python3), is the peer
in the last tests, so that the client is not tuned to one server.

Every failure mode must defer, show its reason in mailq, and deliver
nothing.
"""
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Skip, free_port, wait_port  # noqa: E402
from test_delivery import dnsmasq  # noqa: E402

MSG = 'From: a@sender.test\r\nSubject: smarthost\r\n\r\nhello through the smarthost\r\n'
PASSWORD = 'S3cret pw+/=x'


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def need(path):
    if not os.path.exists(path):
        raise Skip('%s not installed' % path)


def make_pki(env):
    """A test CA with a certificate for smarthost.test, and a second CA."""
    d = os.path.join(env.dir, 'pki')
    os.makedirs(d)
    p = lambda n: os.path.join(d, n)  # noqa: E731
    for ca in ('ca', 'otherca'):
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
                        '-subj', '/CN=relayq test %s' % ca, '-keyout', p(ca + '.key'), '-out', p(ca + '.pem'),
                        '-addext', 'basicConstraints=critical,CA:TRUE',
                        '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
                       check=True, capture_output=True)
    subprocess.run(['openssl', 'req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=smarthost.test',
                    '-keyout', p('srv.key'), '-out', p('srv.csr')], check=True, capture_output=True)
    with open(p('ext'), 'w') as f:
        f.write('subjectAltName=DNS:smarthost.test\nextendedKeyUsage=serverAuth\n')
    subprocess.run(['openssl', 'x509', '-req', '-in', p('srv.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'),
                    '-CAcreateserial', '-days', '2', '-extfile', p('ext'), '-out', p('srv.pem')],
                   check=True, capture_output=True)
    os.chmod(p('srv.key'), 0o644)
    return {n: p(n) for n in ('ca.pem', 'otherca.pem', 'srv.pem', 'srv.key', 'ca.key')}


def leaf(pki, name):
    """Another server certificate from the test CA; returns (cert, key)."""
    d = os.path.dirname(pki['ca.pem'])
    p = lambda n: os.path.join(d, n)  # noqa: E731
    subprocess.run(['openssl', 'req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=' + name,
                    '-keyout', p(name + '.key'), '-out', p(name + '.csr')], check=True, capture_output=True)
    with open(p(name + '.ext'), 'w') as f:
        f.write('subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' % name)
    subprocess.run(['openssl', 'x509', '-req', '-in', p(name + '.csr'), '-CA', pki['ca.pem'],
                    '-CAkey', pki['ca.key'], '-CAcreateserial', '-days', '2', '-extfile', p(name + '.ext'),
                    '-out', p(name + '.pem')], check=True, capture_output=True)
    return p(name + '.pem'), p(name + '.key')


def start_dovecot(env, users, mechs='plain login'):
    need('/usr/sbin/dovecot')
    d = os.path.join(env.dir, 'dovecot')
    for sub in ('run', 'state'):
        os.makedirs(os.path.join(d, sub))
    with open(os.path.join(d, 'passwd'), 'w') as f:
        for u, pw in users.items():
            f.write('%s:{PLAIN}%s\n' % (u, pw))
    sock = os.path.join(d, 'auth')
    conf = os.path.join(d, 'dovecot.conf')
    with open(conf, 'w') as f:
        f.write('''base_dir = %(d)s/run
state_dir = %(d)s/state
protocols =
log_path = %(d)s/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = %(mechs)s
passdb {
  driver = passwd-file
  args = scheme=PLAIN %(d)s/passwd
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
''' % {'d': d, 'sock': sock, 'mechs': mechs})
    env.spawn(['/usr/sbin/dovecot', '-F', '-c', conf])
    deadline = time.time() + 10
    while not os.path.exists(sock):
        if time.time() > deadline:
            raise AssertionError('dovecot auth socket did not appear')
        time.sleep(0.1)
    return sock


class Smarthost:
    """A throw-away Postfix: STARTTLS submission port, wrappermode port, SASL via Dovecot."""

    def __init__(self, env, pki, final_port, auth_sock):
        if os.geteuid() != 0:
            raise Skip('a throw-away Postfix instance needs root')
        need('/usr/sbin/postfix')
        self.env = env
        pdir = os.path.join(env.dir, 'pf')
        conf = os.path.join(pdir, 'etc')
        os.makedirs(conf)
        shutil.copy('/etc/postfix/master.cf', conf)
        if os.path.exists('/etc/postfix/dynamicmaps.cf'):
            shutil.copy('/etc/postfix/dynamicmaps.cf', conf)
        open(os.path.join(conf, 'main.cf'), 'w').close()
        os.makedirs(os.path.join(pdir, 'spool'))
        os.makedirs(os.path.join(pdir, 'data'))
        shutil.chown(os.path.join(pdir, 'data'), 'postfix')
        self.port = free_port()
        self.wport = free_port()
        self.maillog = os.path.join(pdir, 'maillog')
        settings = {
            'compatibility_level': '3.6',
            'queue_directory': os.path.join(pdir, 'spool'),
            'data_directory': os.path.join(pdir, 'data'),
            'inet_interfaces': '127.0.0.1', 'inet_protocols': 'ipv4',
            'myhostname': 'smarthost.test', 'mydestination': '',
            'mynetworks': '127.0.0.2/32',           # relayq (127.0.0.1) must log in
            'relayhost': '[127.0.0.1]:%d' % final_port,
            'maillog_file': self.maillog,
            'smtp_dns_support_level': 'disabled', 'disable_dns_lookups': 'yes',
            'smtpd_tls_cert_file': pki['srv.pem'], 'smtpd_tls_key_file': pki['srv.key'],
            'smtpd_tls_security_level': 'may', 'smtpd_tls_auth_only': 'yes',
            'smtpd_tls_session_cache_database': 'btree:${data_directory}/smtpd_scache',
            'smtpd_tls_loglevel': '1',
            'smtpd_sasl_auth_enable': 'yes', 'smtpd_sasl_type': 'dovecot',
            'smtpd_sasl_path': auth_sock,
            'smtpd_relay_restrictions': 'permit_sasl_authenticated, reject_unauth_destination',
            'smtpd_client_restrictions': '',
            'smtp_tls_security_level': 'none',
            'alias_maps': '', 'alias_database': '', 'local_transport': 'error:no local delivery',
            'queue_run_delay': '2s', 'minimal_backoff_time': '2s', 'maximal_backoff_time': '4s',
            'master_service_disable': '',
        }
        r = run(['postconf', '-c', conf, '-e'] + ['%s=%s' % kv for kv in settings.items()])
        assert r.returncode == 0, r.stderr
        r = run(['postconf', '-c', conf, '-F', '*/*/chroot = n'])
        assert r.returncode == 0, r.stderr
        with open(os.path.join(conf, 'master.cf')) as fh:
            master = fh.read()
        master = re.sub(r'(?m)^smtp\s+inet\s.*$',
                        '127.0.0.1:%d inet n - n - - smtpd\n'
                        '127.0.0.1:%d inet n - n - - smtpd -o smtpd_tls_wrappermode=yes'
                        ' -o smtpd_tls_security_level=encrypt' % (self.port, self.wport), master)
        if not re.search(r'(?m)^postlog\s', master):
            master += '\npostlog unix-dgram n - n - 1 postlogd\n'
        with open(os.path.join(conf, 'master.cf'), 'w') as fh:
            fh.write(master)
        self.conf = conf
        self.penv = dict(os.environ, MAIL_CONFIG=conf)
        r = run(['postfix', '-c', conf, 'check'], env=self.penv)
        if r.returncode != 0:
            raise Skip('postfix check failed: %s' % (r.stdout + r.stderr)[-400:])
        r = run(['postfix', '-c', conf, 'start'], env=self.penv)
        if r.returncode != 0:
            raise Skip('postfix start failed: %s' % (r.stdout + r.stderr)[-400:])
        env.stops = getattr(env, 'stops', [])
        wait_port(self.port, timeout=20)
        wait_port(self.wport, timeout=20)

    def log(self):
        return open(self.maillog, errors='replace').read() if os.path.exists(self.maillog) else ''

    def wait_log(self, pattern, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(pattern, self.log())
            if m:
                return m
            time.sleep(0.2)
        raise AssertionError('smarthost log lacks %r:\n%s' % (pattern, self.log()[-3000:]))

    def stop(self):
        run(['postfix', '-c', self.conf, 'stop'], env=self.penv)


def setup(env, mechs='plain login'):
    pki = make_pki(env)
    sink = env.pysink()
    sock = start_dovecot(env, {'relayuser': PASSWORD}, mechs)
    sh = Smarthost(env, pki, sink.port, sock)
    dns = dnsmasq(env, ['--host-record=smarthost.test,127.0.0.1', '--host-record=alias.test,127.0.0.1'])
    return pki, sink, sh, dns


def relay(env, pki, sh, dns, nexthop=None, password=PASSWORD, **more):
    """A relayq that sends everything to the smarthost with a password."""
    nexthop = nexthop or '[smarthost.test]:%d' % sh.port
    pw = os.path.join(env.dir, 'sasl_passwd_%d' % len(env.daemons))
    with open(pw, 'w') as f:
        f.write('%s relayuser:%s\n' % (nexthop, password))
    os.chmod(pw, 0o600)
    params = dict(relayhost=nexthop, dns_servers='127.0.0.1:%d' % dns,
                  smtp_tls_security_level='secure', smtp_tls_CAfile=pki['ca.pem'],
                  smtp_sasl_auth_enable='yes', smtp_sasl_password_maps='texthash:' + pw,
                  smtp_sasl_tls_security_options='noanonymous', smtp_tls_loglevel='1',
                  queue_run_delay='300s', minimal_backoff_time='300s')
    params.update(more)
    return env.relayqd(**params)


def deferred(env, d, qid, text_rx, dsn):
    """The message is deferred with dsn and a reason matching text_rx, also in mailq and explain."""
    line = d.wait_log(r'%s: to=<b@dest\.test>, relay=[^,]*, .*dsn=%s, status=deferred \((.*)\)$'
                      % (qid, re.escape(dsn)), timeout=30)[0]
    assert re.search(text_rx, line.group(1)), line.group(0)
    # the reason reaches mailq with the pass's commit, just after the log line
    deadline = time.time() + 10
    while True:
        flat = ' '.join(env.cli(d, 'mailq').stdout.split())
        if ' '.join(line.group(1).split()[:4]) in flat or time.time() > deadline:
            break
        time.sleep(0.1)
    assert qid in flat and ' '.join(line.group(1).split()[:4]) in flat, flat
    ex = env.cli(d, 'explain', qid).stdout
    assert '(%s)' % line.group(1) in ex and '(%s)' % dsn in ex, ex[:1500]
    return line


def test_secure_auth_starttls_and_wrappermode(env):
    pki, sink, sh, dns = setup(env)
    try:
        d = relay(env, pki, sh, dns, smtp_tls_session_cache_database='btree:/unused', smtp_tls_loglevel='2')
        qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
        d.wait_log(r'%s: to=<b@dest\.test>, relay=smarthost\.test\[127\.0\.0\.1\]:%d, .*dsn=2\.0\.0, '
                   r'status=sent \(250 2\.0\.0 Ok: queued as' % (qid, sh.port), timeout=30)
        log = d.log()
        assert re.search(r'relayq/smtp\[\d+\]: Verified TLS connection established to '
                         r'smarthost\.test\[127\.0\.0\.1\]:%d: TLSv1\.[23] with cipher \S+ \(\d+/\d+ bits\)'
                         % sh.port, log), log
        # the smarthost saw relayq log in
        sh.wait_log(r'client=localhost\[127\.0\.0\.1\], sasl_method=PLAIN, sasl_username=relayuser')
        m = sink.wait_messages(1, timeout=45)[0]
        assert 'hello through the smarthost' in m['data'].decode()
        assert PASSWORD not in log and 'S3cret' not in log
        assert PASSWORD not in env.cli(d, 'config').stdout

        # a second connection resumes the TLS session (smtp_tls_session_cache_database)
        time.sleep(3)                       # past smtp_connection_cache_time_limit
        qid2 = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
        d.wait_log(r'%s: to=<b@dest\.test>, .*status=sent' % qid2, timeout=30)
        assert re.search(r'Verified TLS connection reused to smarthost\.test\[127\.0\.0\.1\]:%d' % sh.port,
                         d.log()), d.log()
        sink.wait_messages(2, timeout=45)

        # implicit TLS (port 465 style)
        w = relay(env, pki, sh, dns, nexthop='[smarthost.test]:%d' % sh.wport, smtp_tls_wrappermode='yes')
        qid3 = env.send(w.port, 'a@sender.test', ['b@dest.test'], MSG)
        w.wait_log(r'%s: to=<b@dest\.test>, relay=smarthost\.test\[127\.0\.0\.1\]:%d, .*status=sent'
                   % (qid3, sh.wport), timeout=30)
        assert 'Verified TLS connection established to smarthost.test[127.0.0.1]:%d' % sh.wport in w.log()
        sink.wait_messages(3, timeout=45)
    finally:
        sh.stop()


def test_failures_defer_and_deliver_nothing(env):
    pki, sink, sh, dns = setup(env)
    try:
        # wrong password: the server's status, 5 turned into 4
        d = relay(env, pki, sh, dns, password='wrong')
        qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
        deferred(env, d, qid, r'^SASL authentication failed; server smarthost\.test\[127\.0\.0\.1\] said: '
                 r'535 5\.7\.8 Error: authentication failed', '4.7.8')

        # a CA that did not sign the server's certificate
        d = relay(env, pki, sh, dns, smtp_tls_CAfile=pki['otherca.pem'])
        qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
        deferred(env, d, qid, r'^Server certificate not verified$', '4.7.5')
        assert re.search(r'certificate verification failed for smarthost\.test\[127\.0\.0\.1\]:%d: '
                         r'untrusted issuer /CN=relayq test ca' % sh.port, d.log()), d.log()

        # no CA at all (tls_append_default_CA = no): nothing is trusted
        d = relay(env, pki, sh, dns, smtp_tls_CAfile='')
        qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
        deferred(env, d, qid, r'^Server certificate not verified$', '4.7.5')

        # the right CA, but a certificate for another name (alias.test -> smarthost.test)
        d = relay(env, pki, sh, dns, nexthop='[alias.test]:%d' % sh.port)
        qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
        deferred(env, d, qid, r'^Server certificate not verified$', '4.7.5')
        assert re.search(r'server certificate verification failed for alias\.test\[127\.0\.0\.1\]:%d: '
                         r'num=62:hostname mismatch' % sh.port, d.log()), d.log()
        # ... which a policy table entry with match= accepts
        pol = os.path.join(env.dir, 'tls_policy')
        with open(pol, 'w') as f:
            f.write('[alias.test]:%d secure match=smarthost.test protocols=>=TLSv1.2\n' % sh.port)
        d = relay(env, pki, sh, dns, nexthop='[alias.test]:%d' % sh.port,
                  smtp_tls_security_level='none', smtp_tls_policy_maps='texthash:' + pol)
        qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
        d.wait_log(r'%s: to=<b@dest\.test>, .*status=sent' % qid, timeout=30)
        assert 'Verified TLS connection established to alias.test[127.0.0.1]' in d.log()
        sink.wait_messages(1, timeout=45)

        # smtp_tls_CApath: a hashed directory (openssl rehash) instead of a file
        capath = os.path.join(env.dir, 'capath')
        os.makedirs(capath)
        shutil.copy(pki['ca.pem'], capath)
        r = run(['openssl', 'rehash', capath])
        assert r.returncode == 0, r.stderr
        d = relay(env, pki, sh, dns, smtp_tls_CAfile='', smtp_tls_CApath=capath)
        qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
        d.wait_log(r'%s: to=<b@dest\.test>, .*status=sent' % qid, timeout=30)
        sink.wait_messages(2, timeout=45)

        # fingerprint level: the certificate's sha256 fingerprint
        fp = run(['openssl', 'x509', '-in', pki['srv.pem'], '-noout', '-fingerprint', '-sha256']).stdout
        fp = fp.strip().split('=', 1)[1]
        d = relay(env, pki, sh, dns, smtp_tls_CAfile='', smtp_tls_security_level='fingerprint',
                  smtp_tls_fingerprint_cert_match=fp)
        qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
        d.wait_log(r'%s: to=<b@dest\.test>, .*status=sent' % qid, timeout=30)
        sink.wait_messages(3, timeout=45)
        d = relay(env, pki, sh, dns, smtp_tls_CAfile='', smtp_tls_security_level='fingerprint',
                  smtp_tls_fingerprint_cert_match='AB:' * 31 + 'AB')
        qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
        deferred(env, d, qid, r'^Server certificate not verified$', '4.7.5')

        # PLAIN and LOGIN are refused by Postfix's default security options, even over TLS
        d = relay(env, pki, sh, dns, smtp_sasl_tls_security_options='noplaintext, noanonymous')
        qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
        deferred(env, d, qid, r'^SASL authentication failed; cannot authenticate to server '
                 r'smarthost\.test\[127\.0\.0\.1\]: no mechanism available$', '4.7.0')

        # a mechanism filter that leaves nothing
        d = relay(env, pki, sh, dns, smtp_sasl_mechanism_filter='cram-md5')
        qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
        deferred(env, d, qid, r'^SASL authentication failed: server smarthost\.test\[127\.0\.0\.1\] offered '
                 r'no compatible authentication mechanisms for this type of connection security$', '4.7.0')

        # a server without STARTTLS: never mail in the clear
        plain = env.pysink(ehlo_lines=['PIPELINING', 'AUTH PLAIN LOGIN'])
        d = relay(env, pki, sh, dns, nexthop='[127.0.0.1]:%d' % plain.port)
        qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
        deferred(env, d, qid, r'^TLS is required, but was not offered by host 127\.0\.0\.1\[127\.0\.0\.1\]$',
                 '4.7.4')
        assert plain.messages == []

        # dane without DNSSEC lookups cannot apply: the check says so (test_dane.py tests DANE)
        r = env.cli(d, '-o', 'smtp_tls_security_level=dane', 'config', '--check')
        assert 'smtp_dns_support_level' in (r.stdout + r.stderr), r.stdout + r.stderr

        time.sleep(2)
        assert len(sink.messages) == 3, sink.messages
        # the smarthost accepted nothing unauthenticated
        assert 'sasl_username=relayuser' in sh.log()
    finally:
        sh.stop()


def test_scram_and_cram_md5_with_dovecot(env):
    """The challenge-response mechanisms against Dovecot's server side."""
    pki, sink, sh, dns = setup(env, mechs='plain login cram-md5 scram-sha-1 scram-sha-256')
    try:
        # Postfix's default security options (noplaintext): SCRAM-SHA-256 is chosen
        d = relay(env, pki, sh, dns, smtp_sasl_tls_security_options='noplaintext, noanonymous')
        qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
        d.wait_log(r'%s: to=<b@dest\.test>, .*status=sent' % qid, timeout=30)
        sh.wait_log(r'sasl_method=SCRAM-SHA-256, sasl_username=relayuser')
        for mech in ('cram-md5', 'scram-sha-1'):
            d = relay(env, pki, sh, dns, smtp_sasl_mechanism_filter=mech)
            qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
            d.wait_log(r'%s: to=<b@dest\.test>, .*status=sent' % qid, timeout=30)
            sh.wait_log(r'sasl_method=%s, sasl_username=relayuser' % mech.upper())
        # a wrong password with SCRAM: the server's 535, deferred
        d = relay(env, pki, sh, dns, password='wrong', smtp_sasl_mechanism_filter='scram-sha-256')
        qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
        deferred(env, d, qid, r'^SASL authentication failed; server smarthost\.test\[127\.0\.0\.1\] said: 535 ',
                 '4.7.8')
        sink.wait_messages(3, timeout=45)
        time.sleep(1)
        assert len(sink.messages) == 3
    finally:
        sh.stop()


# ---------------------------------------------------------------- a second implementation

def aiosmtpd_peer(env, pki, user, password):
    if not os.path.exists('/usr/bin/python3') or run(['/usr/bin/python3', '-c', 'import aiosmtpd']).returncode:
        raise Skip('python3-aiosmtpd (Debian) is not installed')
    cert, key = leaf(pki, 'aio.test')
    port = free_port()
    out = os.path.join(env.dir, 'aio-out')
    os.makedirs(out)
    env.spawn(['/usr/bin/python3', os.path.join(os.path.dirname(__file__), 'aiosmtpd_peer.py'),
               str(port), cert, key, user, password, out])
    wait_port(port, timeout=20)
    return port, out


def aio_messages(out, n, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        metas = sorted(f for f in os.listdir(out) if f.endswith('.meta'))
        if len(metas) >= n:
            return [open(os.path.join(out, f)).read() for f in metas]
        time.sleep(0.1)
    raise AssertionError('aiosmtpd has %d/%d messages' % (len(os.listdir(out)) // 2, n))


def test_aiosmtpd_peer_auth_and_sender_dependent_relayhost(env):
    pki = make_pki(env)
    port, out = aiosmtpd_peer(env, pki, 'relayuser', PASSWORD)
    dns = dnsmasq(env, ['--host-record=aio.test,127.0.0.1'])
    pw = os.path.join(env.dir, 'sasl_passwd')
    with open(pw, 'w') as f:
        f.write('[aio.test]:%d relayuser:%s\n' % (port, PASSWORD))
    os.chmod(pw, 0o600)
    common = dict(dns_servers='127.0.0.1:%d' % dns, smtp_tls_security_level='secure',
                  smtp_tls_CAfile=pki['ca.pem'], smtp_sasl_auth_enable='yes',
                  smtp_sasl_password_maps='texthash:' + pw, smtp_sasl_tls_security_options='noanonymous',
                  smtp_tls_loglevel='1', queue_run_delay='300s', minimal_backoff_time='300s')
    # relayhost is dead; only a@sender.test is routed to the peer, by sender
    d = env.relayqd(sender_dependent_relayhost_maps='inline:{ a@sender.test=[aio.test]:%d }' % port, **common)
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    d.wait_log(r'%s: to=<b@dest\.test>, relay=aio\.test\[127\.0\.0\.1\]:%d, .*dsn=2\.0\.0, status=sent '
               r'\(250 2\.0\.0 Ok: accepted by aiosmtpd\)' % (qid, port), timeout=30)
    assert re.search(r'Verified TLS connection established to aio\.test\[127\.0\.0\.1\]:%d: TLSv1\.[23] '
                     % port, d.log()), d.log()
    meta = aio_messages(out, 1)[0]
    assert 'login=relayuser tls=True from=a@sender.test' in meta, meta
    assert meta.rstrip().endswith(' sni='), meta          # no SNI by default, as Postfix
    qid2 = env.send(d.port, 'other@sender.test', ['b@dest.test'], MSG)
    d.wait_log(r'%s: to=<b@dest\.test>, relay=none, .*status=deferred \(connect to 127\.0\.0\.1' % qid2)

    # LOGIN only (mechanism filter), and SNI with smtp_tls_servername = hostname
    d = env.relayqd(relayhost='[aio.test]:%d' % port, smtp_sasl_mechanism_filter='login',
                    smtp_tls_servername='hostname', **common)
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    d.wait_log(r'%s: to=<b@dest\.test>, .*status=sent' % qid, timeout=30)
    assert aio_messages(out, 2)[1].rstrip().endswith(' sni=aio.test')

    # a wrong password: aiosmtpd's own 535, 5 turned into 4, nothing delivered
    with open(pw, 'w') as f:
        f.write('[aio.test]:%d relayuser:wrong\n' % port)
    d = env.relayqd(relayhost='[aio.test]:%d' % port, **common)
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    deferred(env, d, qid, r'^SASL authentication failed; server aio\.test\[127\.0\.0\.1\] said: 535 5\.7\.8 ',
             '4.7.8')
    # with smtp_sasl_auth_soft_bounce = no the 5xx stands: the mail bounces, as Postfix
    d = env.relayqd(relayhost='[aio.test]:%d' % port, smtp_sasl_auth_soft_bounce='no', **common)
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    d.wait_log(r'%s: to=<b@dest\.test>, .*dsn=5\.7\.8, status=bounced \(SASL authentication failed' % qid,
               timeout=30)
    time.sleep(1)
    assert len(aio_messages(out, 2)) == 2


def test_check_warns_about_passwords(env):
    pw = os.path.join(env.dir, 'sasl_passwd')
    with open(pw, 'w') as f:
        f.write('[smarthost.test]:587 relayuser:%s\n' % PASSWORD)
    os.chmod(pw, 0o644)
    d = env.relayqd(start=False, smtp_sasl_auth_enable='yes', smtp_sasl_password_maps='texthash:' + pw,
                    smtp_tls_security_level='may')
    r = env.cli(d, 'check')
    err = r.stderr
    assert 'smtp_sasl_password_maps: %s has mode 0644: other users can read the passwords' % pw in err, err
    assert 'a password can go to a server without TLS' in err, err
    d.write_config(smtp_tls_security_level='secure')
    err = env.cli(d, 'check').stderr
    assert 'no server can be verified' in err, err
    d.write_config(smtp_tls_CAfile='/nonexistent/ca.pem')
    r = env.cli(d, 'check')
    assert r.returncode == 1 and 'cannot load Certification Authority data' in r.stderr, r.stderr
    # an inline password table is not printed by relayq config
    d.write_config(smtp_sasl_password_maps='inline:{ [mx.test]:587=u:%s }' % PASSWORD.replace(' ', '_'))
    out = env.cli(d, 'config', 'smtp_sasl_password_maps').stdout
    assert out == 'smtp_sasl_password_maps = inline:{(hidden)}\n', out
    assert PASSWORD.replace(' ', '_') not in env.cli(d, 'config').stdout
