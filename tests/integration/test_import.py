"""relayq import-postfix: a relayq configuration directory from a Postfix one.
Debian's stock files, the "Internet Site" fixture and a relay-style Postfix
directory (SASL password and transport tables built by Postfix's postmap, a
submission listener) are imported; the result passes `relayq config --check`,
relayqd runs on it and relays as the Postfix that used the same directory.
Hostile input: NUL bytes, a 1 MB line, a $name loop, table paths that lead
out of the directory, 10,000 services, DESTDIR symlinks and permissions."""
import base64
import os
import re
import shutil
import socket
import stat
import subprocess
import threading
import time

import harness
from harness import Skip, free_port, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, '..', 'fixtures', 'debian-internet-site', 'relayq.cf')
RELAYQ = os.path.join(harness.BIN, 'relayq')


def run_import(env, src, dest, *more, queue=None):
    q = queue or os.path.join(env.dir, 'spool-check')
    os.makedirs(q, exist_ok=True)
    return subprocess.run([RELAYQ, '-o', 'queue_directory=' + q, 'import-postfix', src, '--to', dest] + list(more),
                          capture_output=True, text=True, timeout=120)


def notes(r):
    return [l[len('relayq: import-postfix: '):] for l in r.stdout.splitlines()
            if l.startswith('relayq: import-postfix: ')]


def self_signed(env):
    d = os.path.join(env.dir, 'pki')
    os.makedirs(d, exist_ok=True)
    cert, key = os.path.join(d, 'cert.pem'), os.path.join(d, 'key.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=mx.test',
                    '-keyout', key, '-out', cert], check=True, capture_output=True, timeout=60)
    return cert, key


def daemon_on(env, confdir, port, **params):
    """relayqd on an imported directory; the test's own queue, log and DNS go at the end of relayq.cf."""
    p = {'smtpd_listen': '127.0.0.1:%d' % port,
         'queue_directory': os.path.join(confdir, 'spool'),
         'maillog_file': os.path.join(confdir, 'maillog'),
         'dns_servers': '127.0.0.1:1'}
    p.update(params)
    with open(os.path.join(confdir, 'relayq.cf'), 'a') as f:
        f.write('\n# the test\n')
        for k, v in p.items():
            f.write('%s = %s\n' % (k, v))
    d = harness.Daemon(env, confdir, p)
    env.daemons.append(d)
    return d.start()


class AuthSink:
    """An SMTP peer that offers AUTH PLAIN and records the login with each message."""

    def __init__(self, env):
        self.messages = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._serve, daemon=True).start()
        env.sinks.append(self)

    def _serve(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(c,), daemon=True).start()

    def _session(self, c):
        f = c.makefile('rb')
        out = lambda s: c.sendall(s.encode() + b'\r\n')
        login, env = None, {}
        try:
            out('220 sink.test ESMTP')
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.decode('utf-8', 'replace').rstrip('\r\n')
                verb = cmd.split(' ', 1)[0].upper()
                if verb == 'EHLO':
                    out('250-sink.test')
                    out('250-AUTH PLAIN')
                    out('250 8BITMIME')
                elif verb == 'AUTH':
                    parts = cmd.split()
                    if len(parts) < 3:
                        out('334 ')
                        parts.append(f.readline().decode().strip())
                    login = base64.b64decode(parts[2]).split(b'\0')
                    login = (login[1].decode(), login[2].decode())
                    out('235 2.7.0 Authentication successful')
                elif verb == 'MAIL':
                    env = {'from': re.search(r'<([^>]*)>', cmd).group(1), 'rcpts': [], 'login': login}
                    out('250 2.1.0 Ok')
                elif verb == 'RCPT':
                    env['rcpts'].append(re.search(r'<([^>]*)>', cmd).group(1))
                    out('250 2.1.5 Ok')
                elif verb == 'DATA':
                    out('354 go ahead')
                    data = b''
                    while True:
                        l = f.readline()
                        if not l or l == b'.\r\n':
                            break
                        data += l[1:] if l.startswith(b'.') else l
                    env['data'] = data
                    self.messages.append(dict(env))
                    out('250 2.0.0 Ok: queued')
                elif verb == 'QUIT':
                    out('221 2.0.0 Bye')
                    return
                else:
                    out('250 2.0.0 Ok')
        except OSError:
            pass
        finally:
            c.close()

    def wait(self, n, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.messages) >= n:
                return list(self.messages)
            time.sleep(0.1)
        raise AssertionError('sink has %d/%d messages' % (len(self.messages), n))

    def close(self):
        self.stopped = True
        self.sock.close()


def test_import_debian_stock_files(env):
    parts = ['/usr/share/postfix/main.cf.debian', '/usr/share/postfix/main.cf.tls', '/usr/share/postfix/master.cf.dist']
    if not all(os.path.exists(p) for p in parts):
        raise Skip("Debian's postfix package is not installed")
    src = os.path.join(env.dir, 'postfix')
    os.makedirs(src)
    with open(os.path.join(src, 'main.cf'), 'w') as f:
        f.write(open(parts[0]).read() + open(parts[1]).read())
    shutil.copy(parts[2], os.path.join(src, 'master.cf'))
    dest = os.path.join(env.dir, 'relayq')
    r = run_import(env, src, dest)
    assert r.returncode == 0, r.stdout + r.stderr
    n = notes(r)
    for name in ('biff', 'append_dot_mydomain', 'readme_directory'):
        assert any(re.search(r'^not carried over: .*/main\.cf, line \d+: %s: a Postfix parameter that relayq '
                             r'does not implement$' % name, l) for l in n), n
    assert any(re.search(r'smtp_tls_session_cache_database: relayq keeps the SMTP client\'s TLS sessions in memory', l)
               for l in n), n
    for svc, why in (('pickup (unix, pickup)', 'built into relayqd'), ('qmgr (unix, qmgr)', 'built into relayqd'),
                     ('cleanup (unix, cleanup)', 'built into relayqd'),
                     ('local (unix, local)', 'relayq delivers nothing locally'),
                     ('maildrop (unix, pipe)', 'relayq has no pipe(8) transport')):
        assert any(re.search(r'^not carried over: .*/master\.cf, line \d+: %s: %s' % (re.escape(svc), re.escape(why)), l)
                   for l in n), (svc, n)
    assert 'relayq: configuration %s/relayq.cf and queue directory' % dest in r.stdout and ': OK' in r.stdout, r.stdout
    cf = open(os.path.join(dest, 'relayq.cf')).read()
    assert '\nsmtpd_tls_security_level = may\n' in cf and '\nbiff' not in cf, cf
    master = open(os.path.join(dest, 'master.cf')).read()
    services = [l.split()[0] for l in master.splitlines() if l and not l[0].isspace() and not l.startswith('#')]
    assert services == ['smtp'], master

    # relayqd runs on it: the smtp service on a test port, and a certificate where Debian has its snakeoil one
    port = free_port()
    with open(os.path.join(dest, 'master.cf'), 'w') as f:
        f.write(re.sub(r'(?m)^smtp(\s)', '127.0.0.1:%d\\1' % port, master))
    extra = {}
    if not os.path.exists('/etc/ssl/certs/ssl-cert-snakeoil.pem'):
        extra['smtpd_tls_cert_file'], extra['smtpd_tls_key_file'] = self_signed(env)
    sink = env.pysink()
    d = daemon_on(env, dest, port, relayhost='[127.0.0.1]:%d' % sink.port, myhostname='mx.relayq.test', **extra)
    env.send(port, 'a@sender.test', ['b@dest.test'], 'Subject: stock\r\n\r\nhello\r\n')
    m = sink.wait_messages(1)[0]
    assert m['from'] == 'a@sender.test' and m['rcpts'] == ['b@dest.test'], m
    d.wait_log(r'status=sent')


def test_import_internet_site_fixture(env):
    src = os.path.join(env.dir, 'postfix')
    os.makedirs(src)
    shutil.copy(FIXTURE, os.path.join(src, 'main.cf'))
    dest = os.path.join(env.dir, 'relayq')
    r = run_import(env, src, dest)
    assert r.returncode == 0, r.stdout + r.stderr
    n = notes(r)
    assert any(l.endswith('alias_maps: a Postfix parameter that relayq does not implement: unused: relayq delivers '
                          'nothing locally') for l in n), n
    assert any('mydestination: carried over, but relayq delivers nothing locally' in l for l in n), n
    assert any('no master.cf was read' in l for l in n), n
    assert ': OK' in r.stdout, r.stdout + r.stderr
    cf = open(os.path.join(dest, 'relayq.cf')).read()
    assert '\nmyorigin = /etc/mailname\n' in cf and '\nmailbox_size_limit' not in cf, cf

    mailname = os.path.join(env.dir, 'mailname')
    with open(mailname, 'w') as f:
        f.write('origin.example.test\n')
    sink = env.pysink()
    port = free_port()
    d = daemon_on(env, dest, port, relayhost='[127.0.0.1]:%d' % sink.port, myorigin=mailname,
                  inet_interfaces='127.0.0.1')
    r = env.cli(d, '-f', 'root', 'ops@dest.test', input='Subject: from cron\n\nhello\n', prog='sendmail')
    assert r.returncode == 0, r.stderr
    m = sink.wait_messages(1)[0]
    assert m['from'] == 'root@origin.example.test', m
    assert 'unknown parameter' not in d.stderr_text()


def relay_postfix(env):
    """A throw-away Postfix set up as a relay: SASL to the relayhost, a transport
    table, relay_domains, a submission listener."""
    import pfinstance
    if not shutil.which('postmap'):
        raise Skip('postmap not installed')
    smart, special = AuthSink(env), AuthSink(env)
    sub_port = free_port()
    pf = pfinstance.Postfix(env, name='pfrelay',
                            relayhost='[127.0.0.1]:%d' % smart.port,
                            smtp_sasl_auth_enable='yes',
                            smtp_sasl_security_options='noanonymous',
                            smtp_sasl_password_maps='hash:$config_directory/sasl_passwd',
                            transport_maps='hash:$config_directory/transport',
                            relay_domains='special.test, hash:$config_directory/transport',
                            mua_client_restrictions='permit_mynetworks, reject',
                            biff='no')
    conf = pf.conf
    with open(os.path.join(conf, 'sasl_passwd'), 'w') as f:
        f.write('[127.0.0.1]:%d relayuser:s3cret\n' % smart.port)
    os.chmod(os.path.join(conf, 'sasl_passwd'), 0o600)
    with open(os.path.join(conf, 'transport'), 'w') as f:
        f.write('special.test smtp:[127.0.0.1]:%d\n' % special.port)
    for t in ('sasl_passwd', 'transport'):
        r = subprocess.run(['postmap', '-c', conf, 'hash:' + os.path.join(conf, t)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    with open(os.path.join(conf, 'master.cf'), 'a') as f:
        f.write('127.0.0.1:%d inet n - n - - smtpd\n'
                '  -o syslog_name=postfix/submission\n'
                '  -o smtpd_tls_security_level=none\n'
                '  -o smtpd_client_restrictions=$mua_client_restrictions\n'
                '  -o smtpd_reject_unlisted_recipient=no\n' % sub_port)
    return pf, smart, special, sub_port


def send_both(env, smtp_port, sub_port, tag):
    env.send(smtp_port, 'alice@client.test', ['bob@dest.test'], 'Subject: %s one\r\n\r\nvia relayhost\r\n' % tag)
    env.send(sub_port, 'alice@client.test', ['carol@special.test'], 'Subject: %s two\r\n\r\nvia transport\r\n' % tag)


def test_import_relay_postfix_and_relay_the_same_way(env):
    pf, smart, special, sub_port = relay_postfix(env)
    pf.start()
    send_both(env, pf.port, sub_port, 'postfix')
    by_pf = smart.wait(1)[0], special.wait(1)[0]
    pf.stop()

    dest = os.path.join(env.dir, 'relayq')
    r = run_import(env, pf.conf, dest)
    assert r.returncode == 0, r.stdout + r.stderr
    n = notes(r)
    assert any(re.search(r'^copied .*/sasl_passwd to %s/sasl_passwd and rebuilt it$' % re.escape(dest), l) for l in n), n
    assert any(re.search(r'^copied .*/transport to %s/transport and rebuilt it$' % re.escape(dest), l) for l in n), n
    assert any(re.search(r'main\.cf, line \d+: biff: a Postfix parameter that relayq does not implement$', l) for l in n), n
    assert any(re.search(r'main\.cf, line \d+: queue_directory: Postfix\'s queue is not relayq\'s', l) for l in n), n
    assert any(re.search(r'main\.cf, line \d+: data_directory: a Postfix parameter', l) for l in n), n
    assert any('-o syslog_name=postfix/submission becomes relayq/submission' in l for l in n), n
    assert any(re.search(r'master\.cf, line \d+: pickup \(unix, pickup\): built into relayqd', l) for l in n), n
    assert ': OK' in r.stdout, r.stdout + r.stderr
    # the secret stays secret, in its copy and in the table built from it
    for name in ('sasl_passwd', 'sasl_passwd.db'):
        st = os.stat(os.path.join(dest, name))
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0, (name, oct(st.st_mode))
    cf = open(os.path.join(dest, 'relayq.cf')).read()
    assert '\nsmtp_sasl_password_maps = hash:%s/sasl_passwd\n' % dest in cf, cf
    assert '\nrelay_domains = special.test, hash:%s/transport\n' % dest in cf, cf
    assert '\nmua_client_restrictions = permit_mynetworks, reject\n' in cf, cf
    master = open(os.path.join(dest, 'master.cf')).read()
    assert re.search(r'(?m)^127\.0\.0\.1:%d\s+inet .* smtpd\n  -o syslog_name=relayq/submission\n'
                     r'  -o smtpd_tls_security_level=none\n  -o smtpd_client_restrictions=\$mua_client_restrictions\n'
                     % sub_port, master), master

    # relayqd on the imported directory, on the ports Postfix had
    d = daemon_on(env, dest, pf.port, maillog_file=os.path.join(dest, 'maillog'))
    wait_port(sub_port)
    send_both(env, pf.port, sub_port, 'relayq')
    by_rq = smart.wait(2)[1], special.wait(2)[1]
    for a, b in zip(by_pf, by_rq):
        assert (a['from'], a['rcpts'], a['login']) == (b['from'], b['rcpts'], b['login']), (a, b)
    assert by_rq[0]['login'] == ('relayuser', 's3cret') and by_rq[0]['rcpts'] == ['bob@dest.test'], by_rq
    assert by_rq[1]['rcpts'] == ['carol@special.test'], by_rq
    d.wait_log(r'relayq/submission/smtpd\[\d+\]: ')


def src_with(env, name, main, master=None):
    src = os.path.join(env.dir, name)
    os.makedirs(src)
    with open(os.path.join(src, 'main.cf'), 'wb') as f:
        f.write(main if isinstance(main, bytes) else main.encode())
    if master is not None:
        with open(os.path.join(src, 'master.cf'), 'w') as f:
            f.write(master)
    return src


def refused(env, src, dest, text, *more):
    r = run_import(env, src, dest, *more)
    assert r.returncode == 1, r.stdout + r.stderr
    assert text in r.stderr, r.stderr
    return r


def test_import_hostile_input(env):
    dest = os.path.join(env.dir, 'out')
    # NUL bytes, a 1 MB line, a $name loop: clear errors, nothing written, not even DESTDIR
    src = src_with(env, 'nul', b'myhostname = a.example\nbiff = n\0o\n')
    refused(env, src, dest, 'main.cf, line 2: a NUL byte: not a text file')
    src = src_with(env, 'long', 'myhostname = ' + 'a' * (1 << 20) + '\n')
    refused(env, src, dest, 'main.cf, line 1: a logical line longer than 65536 bytes')
    src = src_with(env, 'loop', 'smtpd_banner = $a\na = $b\nb = $a\n')
    refused(env, src, dest, 'main.cf, line 1: $name expansion loop: a -> b -> a')
    src = src_with(env, 'loop2', 'data_directory = $meta_directory\nmeta_directory = $data_directory\n'
                                 'smtp_tls_CApath = $data_directory\n')
    refused(env, src, dest, 'expansion loop: data_directory -> meta_directory -> data_directory')
    src = src_with(env, 'fifo', 'x = y\n')
    os.unlink(os.path.join(src, 'main.cf'))
    os.mkfifo(os.path.join(src, 'main.cf'))
    refused(env, src, dest, 'main.cf: not a regular file')
    assert not os.path.exists(dest)

    # table paths that lead out of SRCDIR are referenced, never copied
    secret_dir = os.path.join(env.dir, 'elsewhere')
    os.makedirs(secret_dir)
    with open(os.path.join(secret_dir, 'secret'), 'w') as f:
        f.write('k v\n')
    src = src_with(env, 'tables', 'transport_maps = texthash:$config_directory/../elsewhere/secret\n'
                                  'smtp_sasl_password_maps = hash:$config_directory/sasl_passwd\n'
                                  'smtpd_client_restrictions = check_client_access ldap:/etc/x.cf\n')
    os.symlink(os.path.join(secret_dir, 'secret'), os.path.join(src, 'sasl_passwd'))
    os.link(os.path.join(secret_dir, 'secret'), os.path.join(src, 'hardlinked'))
    with open(os.path.join(src, 'main.cf'), 'a') as f:
        f.write('relay_domains = texthash:$config_directory/hardlinked\n')
    r = run_import(env, src, dest)
    assert r.returncode == 0, r.stdout + r.stderr
    n = notes(r)
    assert any('transport_maps: texthash:%s/../elsewhere/secret is outside %s: referenced in place' % (src, src) in l
               for l in n), n
    assert any('smtp_sasl_password_maps: hash:%s/sasl_passwd is outside %s: referenced in place' % (src, src) in l
               for l in n), n
    assert any('smtpd_client_restrictions: ldap:/etc/x.cf uses a ldap: table, which relayq does not support' in l
               for l in n), n
    assert any('relay_domains: texthash:%s/hardlinked has 2 hard links: referenced in place, not copied' % src in l
               for l in n), n
    assert sorted(os.listdir(dest)) == ['relayq.cf'], os.listdir(dest)

    # an existing relayq.cf stays without --force; --force replaces a symbolic link, not its target
    before = open(os.path.join(dest, 'relayq.cf')).read()
    refused(env, src, dest, '%s/relayq.cf exists: use --force to replace it' % dest)
    assert open(os.path.join(dest, 'relayq.cf')).read() == before
    target = os.path.join(env.dir, 'target.cf')
    with open(target, 'w') as f:
        f.write('untouched\n')
    os.unlink(os.path.join(dest, 'relayq.cf'))
    os.symlink(target, os.path.join(dest, 'relayq.cf'))
    r = run_import(env, src, dest, '--force')
    assert r.returncode == 0, r.stdout + r.stderr
    assert open(target).read() == 'untouched\n'
    assert not os.path.islink(os.path.join(dest, 'relayq.cf'))
    assert not [x for x in os.listdir(dest) if x.startswith('.import-postfix')], os.listdir(dest)

    # DESTDIR: not a symbolic link, not writable by others
    link = os.path.join(env.dir, 'link')
    os.symlink(dest, link)
    refused(env, src, link, 'is a symbolic link: refusing to write through it', '--force')
    ww = os.path.join(env.dir, 'ww')
    os.makedirs(ww)
    os.chmod(ww, 0o777)
    refused(env, src, ww, 'has mode 0777: a configuration directory must not be writable by other users')
    assert os.listdir(ww) == []

    # --dry-run writes nothing, and says what the real import would stop at
    r = run_import(env, src, dest, '--dry-run')
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'note: %s/relayq.cf exists: use --force to replace it' % dest in r.stdout, r.stdout
    dry = os.path.join(env.dir, 'dry')
    r = run_import(env, src, dry, '--dry-run')
    assert r.returncode == 0 and '==> %s/relayq.cf <==' % dry in r.stdout, r.stdout + r.stderr
    assert not os.path.exists(dry)


def test_import_ten_thousand_services(env):
    lines = []
    for i in range(10000):
        lines.append('127.0.0.%d:%d inet n - n - - smtpd\n  -o smtpd_tls_security_level=none\n'
                     'pipe%d unix - n n - - pipe\n  flags=R argv=/bin/true\n' % (i % 200 + 1, 1025 + i, i))
    src = src_with(env, 'many', 'myhostname = many.example\n', ''.join(lines))
    dest = os.path.join(env.dir, 'out')
    t0 = time.time()
    r = run_import(env, src, dest)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert time.time() - t0 < 60
    assert '(10000 listeners)' in r.stdout, r.stdout[-500:]
    assert len([l for l in notes(r) if 'relayq has no pipe(8) transport' in l]) == 10000


def test_import_drops_what_relayq_refuses(env):
    """A value relayq does not accept costs that one setting (or listener), with relayq's reason."""
    src = src_with(env, 'refuse', 'myhostname = x.example\nsmtp_connect_timeout = 10ms\n'
                                  'mua_client_restrictions = permit_sasl_authenticated, reject\n',
                   'smtp      inet  n       -       y       -       -       smtpd\n'
                   '  -o smtpd_tls_security_level=bogus\n'
                   'submission inet n       -       y       -       -       smtpd\n'
                   '  -o smtpd_client_restrictions=$mua_client_restrictions\n'
                   'nosuchport inet n - y - - smtpd\n')
    dest = os.path.join(env.dir, 'out')
    r = run_import(env, src, dest)
    assert r.returncode == 0, r.stdout + r.stderr
    n = notes(r)
    assert any(re.search(r'main\.cf, line 2: smtp_connect_timeout: relayq does not accept the value: bad time value '
                         r'"10ms"', l) for l in n), n
    assert any(re.search(r'master\.cf, line 1: service smtp: -o smtpd_tls_security_level: relayq does not accept '
                         r'the value: bad value "bogus"', l) for l in n), n
    assert any(re.search(r'master\.cf, line 5: service nosuchport: unknown service "nosuchport"', l) for l in n), n
    assert '(2 listeners)' in r.stdout and ': OK' in r.stdout, r.stdout + r.stderr
    master = open(os.path.join(dest, 'master.cf')).read()
    assert 'bogus' not in master and 'nosuchport' not in master and '$mua_client_restrictions' in master, master
    cf = open(os.path.join(dest, 'relayq.cf')).read()
    assert '\nsmtp_connect_timeout' not in cf and '# not carried over: ' in cf, cf
