"""MTA-STS: smtp_tls_policy_maps with a socketmap (postfix-mta-sts-resolver's
protocol), looked up on relayqd's event loop.  A policy server written here
answers as the resolver does ("OK secure match=... servername=hostname",
"NOTFOUND "), slowly when told to; the next hop is a TLS peer with a
certificate from a test CA."""
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import free_port, wait_port  # noqa: E402
from test_delivery import dnsmasq  # noqa: E402
from test_smarthost import leaf, make_pki  # noqa: E402

MSG = 'From: a@sender.test\r\nSubject: sts\r\n\r\nunder an MTA-STS policy\r\n'


class PolicyServer:
    """A socketmap server: name key -> answers[key] (default NOTFOUND), after delay[key] s."""

    def __init__(self):
        self.answers, self.delay, self.queries, self.conns = {}, {}, [], []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        buf = b''
        c.settimeout(120)
        try:
            while True:
                while b':' not in buf or len(buf) < buf.index(b':') + 2 + int(buf[:buf.index(b':')]):
                    data = c.recv(4096)
                    if not data:
                        return
                    buf += data
                n = int(buf[:buf.index(b':')])
                start = buf.index(b':') + 1
                req, buf = buf[start:start + n].decode(), buf[start + n + 1:]
                name, _, key = req.partition(' ')
                self.queries.append((name, key))
                time.sleep(self.delay.get(key, 0))
                ans = self.answers.get(key, 'NOTFOUND ').encode()
                c.sendall(b'%d:%s,' % (len(ans), ans))
        except (OSError, ValueError):
            pass
        finally:
            c.close()

    def close(self):
        """The resolver goes down: no listener, open connections closed."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)    # wakes the accept() (Linux)
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def tls_peer(env, pki, name):
    cert, key = leaf(pki, name)
    port = free_port()
    out = os.path.join(env.dir, 'peer-' + name)
    os.makedirs(out)
    env.spawn([sys.executable, os.path.join(os.path.dirname(__file__), 'tls_peer.py'),
               '127.0.0.1', str(port), cert, key, out])
    wait_port(port, timeout=20)
    return port, out


def messages(out):
    return sorted(f for f in os.listdir(out) if f.endswith('.meta'))


def test_socketmap_policy_is_looked_up_on_the_loop(env):
    pki = make_pki(env)
    port, out = tls_peer(env, pki, 'mx.sts.test')
    dns = dnsmasq(env, ['--host-record=mx.sts.test,127.0.0.1', '--host-record=other.sts.test,127.0.0.1'])
    pol = PolicyServer()
    good = '[mx.sts.test]:%d' % port
    bad = '[other.sts.test]:%d' % port
    pol.answers[good] = 'OK secure match=mx.sts.test servername=hostname'
    # the resolver's answer for a domain whose policy lists other MX names
    pol.answers[bad] = 'OK secure match=mx1.elsewhere.test:mx2.elsewhere.test servername=hostname'
    pol.delay[good] = 4
    try:
        d = env.relayqd(relayhost='', dns_servers='127.0.0.1:%d' % dns,
                        transport_maps='inline:{ good.test=smtp:%s, bad.test=smtp:%s }' % (good, bad),
                        smtp_tls_security_level='may', smtp_tls_CAfile=pki['ca.pem'],
                        smtp_tls_policy_maps='socketmap:inet:127.0.0.1:%d:postfix' % pol.port,
                        smtp_tls_loglevel='1', queue_run_delay='300s', minimal_backoff_time='300s')
        # enforce, matching: delivered over verified TLS, after a slow answer
        q1 = env.send(d.port, 'a@sender.test', ['b@good.test'], MSG)
        # the loop is not blocked while the policy server takes its time
        t0 = time.time()
        with socket.create_connection(('127.0.0.1', d.port), timeout=10) as s:
            s.settimeout(10)
            banner = s.recv(512)
        assert banner.startswith(b'220'), banner
        assert time.time() - t0 < 3, 'relayqd answered after %.1f s' % (time.time() - t0)
        assert not messages(out)
        d.wait_log(r'Verified TLS connection established to mx\.sts\.test\[127\.0\.0\.1\]:%d' % port,
                   timeout=30)
        d.wait_log(r'%s: to=<b@good\.test>, relay=mx\.sts\.test\[127\.0\.0\.1\]:%d, .*status=sent'
                   % (q1, port), timeout=30)
        assert ('postfix', good) in pol.queries, pol.queries
        assert 'tls=True' in open(os.path.join(out, messages(out)[0])).read()

        # enforce, the certificate names no listed MX: deferred, nothing sent
        q2 = env.send(d.port, 'a@sender.test', ['b@bad.test'], MSG)
        d.wait_log(r'%s: to=<b@bad\.test>, relay=other\.sts\.test\[127\.0\.0\.1\]:%d, .*dsn=4\.7\.5, '
                   r'status=deferred \(Server certificate not verified\)' % (q2, port), timeout=30)
        assert len(messages(out)) == 1

    finally:
        pol.close()


def test_socketmap_notfound_default_level_and_resolver_down(env):
    pki = make_pki(env)
    port, out = tls_peer(env, pki, 'mx.sts.test')
    dns = dnsmasq(env, ['--host-record=mx.sts.test,127.0.0.1'])
    pol = PolicyServer()
    hop = '[mx.sts.test]:%d' % port
    d = env.relayqd(relayhost=hop, dns_servers='127.0.0.1:%d' % dns,
                    smtp_connection_cache_on_demand='no', smtp_tls_security_level='may', smtp_tls_CAfile=pki['ca.pem'],
                    smtp_tls_policy_maps='socketmap:inet:127.0.0.1:%d:postfix' % pol.port,
                    smtp_tls_loglevel='1', queue_run_delay='300s', minimal_backoff_time='300s')
    try:
        # NOTFOUND: smtp_tls_security_level (may) applies
        q1 = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
        d.wait_log(r'%s: to=<b@dest\.test>, relay=mx\.sts\.test\[127\.0\.0\.1\]:%d, .*status=sent'
                   % (q1, port), timeout=30)
        assert ('postfix', hop) in pol.queries, pol.queries
        # a hostile or broken policy server: an unknown level defers, nothing sent
        pol.answers[hop] = 'OK bogus match=x;rm -rf / servername=hostname'
        q0 = env.send(d.port, 'a@sender.test', ['x@dest.test'], MSG)
        d.wait_log(r'warning: smtp_tls_policy_maps, next-hop destination "[^"]*": '
                   r'invalid security level "bogus"', timeout=30)
        d.wait_log(r'%s: to=<x@dest\.test>, relay=[^,]*, .*dsn=4\.7\.5, '
                   r'status=deferred \(client TLS configuration problem\)' % q0, timeout=30)
    finally:
        pol.close()
    # the resolver is down: a lookup error, the delivery is deferred, nothing sent
    q2 = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    d.wait_log(r'warning: smtp_tls_policy_maps, next-hop destination "%s": policy table lookup error'
               % hop.replace('[', r'\[').replace(']', r'\]').replace('.', r'\.'), timeout=30)
    d.wait_log(r'%s: to=<b@dest\.test>, relay=[^,]*, .*dsn=4\.7\.5, '
               r'status=deferred \(client TLS configuration problem\)' % q2, timeout=30)
    assert len(messages(out)) == 1


# ---------------------------------------------------------------------------
# The real resolver: Debian's postfix-mta-sts-resolver (mta-sts-daemon)
# ---------------------------------------------------------------------------

POLICIES = {
    # domain: (mode, mx list); the MX host of each domain is mx.DOMAIN
    'good.test': ('enforce', ['mx.good.test']),
    'bad.test': ('enforce', ['mx.elsewhere.test']),
    'testing.test': ('testing', ['mx.elsewhere.test']),
}


def port_free(port, kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind(('127.0.0.1', port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def https_policy_server(env, cert, key):
    """HTTPS on 127.0.0.1:443: /.well-known/mta-sts.txt for the Host asked."""
    import http.server
    import ssl

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            host = (self.headers.get('Host') or '').split(':')[0].lower()
            dom = host[len('mta-sts.'):] if host.startswith('mta-sts.') else ''
            if self.path != '/.well-known/mta-sts.txt' or dom not in POLICIES:
                self.send_error(404)
                return
            mode, mxs = POLICIES[dom]
            body = ('version: STSv1\r\nmode: %s\r\n%smax_age: 86400\r\n'
                    % (mode, ''.join('mx: %s\r\n' % m for m in mxs))).encode()
            self.send_response(200)
            self.send_header('Content-Type', 'text/plain')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            with open(os.path.join(env.dir, 'https.log'), 'a') as f:
                f.write('%s\n' % (fmt % args))

    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 443), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def multi_leaf(pki, name, sans):
    """A server certificate from the test CA for several names."""
    d = os.path.dirname(pki['ca.pem'])
    p = lambda n: os.path.join(d, n)  # noqa: E731
    import subprocess
    subprocess.run(['openssl', 'req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=' + sans[0],
                    '-keyout', p(name + '.key'), '-out', p(name + '.csr')], check=True, capture_output=True)
    with open(p(name + '.ext'), 'w') as f:
        f.write('subjectAltName=%s\nextendedKeyUsage=serverAuth\n' % ','.join('DNS:' + s for s in sans))
    subprocess.run(['openssl', 'x509', '-req', '-in', p(name + '.csr'), '-CA', pki['ca.pem'],
                    '-CAkey', pki['ca.key'], '-CAcreateserial', '-days', '2', '-extfile', p(name + '.ext'),
                    '-out', p(name + '.pem')], check=True, capture_output=True)
    return p(name + '.pem'), p(name + '.key')


def start_resolver(env, port, resolv, cafile, log):
    """mta-sts-daemon in a private mount namespace: its /etc/resolv.conf names
    only 127.0.0.1 (dnsmasq), its CAs are the test CA's."""
    conf = os.path.join(env.dir, 'mta-sts-daemon.yml')
    with open(conf, 'w') as f:
        f.write('host: 127.0.0.1\nport: %d\nreuse_port: true\nshutdown_timeout: 2\ncache:\n  type: internal\n'
                '  options:\n    cache_size: 100\ndefault_zone:\n  strict_testing: false\n'
                '  timeout: 4\n' % port)
    sh = 'mount --bind %s /etc/resolv.conf && exec /usr/bin/mta-sts-daemon -c %s -v debug -l %s' % (
        resolv, conf, log)
    p = env.spawn(['unshare', '-m', 'sh', '-c', sh],
                  env=dict(os.environ, SSL_CERT_FILE=cafile, SSL_CERT_DIR='/nonexistent'))
    wait_port(port, timeout=30)
    return p


def test_real_mta_sts_resolver(env):
    from harness import Skip
    if os.geteuid() != 0:
        raise Skip('the resolver runs in a private mount namespace and needs ports 53 and 443: root only')
    for exe in ('/usr/bin/mta-sts-daemon', '/usr/bin/unshare', '/usr/sbin/dnsmasq'):
        if not os.path.exists(exe):
            raise Skip('%s not installed' % exe)
    if not port_free(53, socket.SOCK_DGRAM) or not port_free(53):
        raise Skip('127.0.0.1:53 is busy on this machine')
    if not port_free(443):
        raise Skip('127.0.0.1:443 is busy on this machine')
    pki = make_pki(env)
    port, out = tls_peer(env, pki, 'mx.good.test')
    bport, bout = tls_peer(env, pki, 'mx.bad.test')
    tport, tout = tls_peer(env, pki, 'mx.testing.test')
    hcert, hkey = multi_leaf(pki, 'mta-sts', ['mta-sts.' + d for d in POLICIES])
    # dnsmasq on 127.0.0.1:53 with local data only: no upstream, no /etc/hosts
    qlog = os.path.join(env.dir, 'dnsmasq.log')
    args = ['/usr/sbin/dnsmasq', '--no-daemon', '--port=53', '--listen-address=127.0.0.1',
            '--bind-interfaces', '--no-resolv', '--no-hosts', '--no-poll', '--local=/test/',
            '--user=root', '--pid-file=', '--log-queries', '--log-facility=' + qlog]
    for dom, (mode, mxs) in POLICIES.items():
        args += ['--txt-record=_mta-sts.%s,v=STSv1; id=20261201T000000' % dom,
                 '--host-record=mta-sts.%s,127.0.0.1' % dom,
                 '--mx-host=%s,mx.%s,10' % (dom, dom), '--host-record=mx.%s,127.0.0.1' % dom]
    env.spawn(args)
    resolv = os.path.join(env.dir, 'resolv.conf')
    with open(resolv, 'w') as f:
        f.write('nameserver 127.0.0.1\noptions attempts:1 timeout:2\n')
    srv = https_policy_server(env, hcert, hkey)
    rport = free_port()
    rlog = os.path.join(env.dir, 'mta-sts-daemon.log')
    resolver = start_resolver(env, rport, resolv, pki['ca.pem'], rlog)
    try:
        d = env.relayqd(relayhost='', dns_servers='127.0.0.1:53',
                        transport_maps='inline:{ good.test=smtp:good.test:%d, bad.test=smtp:bad.test:%d,'
                                       ' testing.test=smtp:testing.test:%d }' % (port, bport, tport),
                        smtp_tls_security_level='may', smtp_tls_CAfile=pki['ca.pem'],
                        smtp_tls_policy_maps='socketmap:inet:127.0.0.1:%d:postfix' % rport,
                        smtp_tls_loglevel='1', smtp_connection_cache_on_demand='no',
                        queue_run_delay='300s', minimal_backoff_time='300s')
        # enforce, the MX's certificate matches the policy: verified TLS, delivered
        q1 = env.send(d.port, 'a@sender.test', ['b@good.test'], MSG)
        d.wait_log(r'Verified TLS connection established to mx\.good\.test\[127\.0\.0\.1\]:%d' % port,
                   timeout=60)
        d.wait_log(r'%s: to=<b@good\.test>, relay=mx\.good\.test\[127\.0\.0\.1\]:%d, .*status=sent'
                   % (q1, port), timeout=30)
        assert 'tls=True' in open(os.path.join(out, messages(out)[0])).read()
        # enforce, the policy lists another MX: deferred, nothing reaches mx.bad.test
        q2 = env.send(d.port, 'a@sender.test', ['b@bad.test'], MSG)
        d.wait_log(r'%s: to=<b@bad\.test>, relay=mx\.bad\.test\[127\.0\.0\.1\]:%d, .*dsn=4\.7\.5, '
                   r'status=deferred \(Server certificate not verified\)' % (q2, bport), timeout=60)
        assert messages(bout) == []
        # testing: the resolver answers NOTFOUND, the default level applies, delivered
        q3 = env.send(d.port, 'a@sender.test', ['b@testing.test'], MSG)
        d.wait_log(r'%s: to=<b@testing\.test>, relay=mx\.testing\.test\[127\.0\.0\.1\]:%d, .*status=sent'
                   % (q3, tport), timeout=60)
        assert len(messages(tout)) == 1
        # each policy really came from DNS and HTTPS, testing mode included
        rl = open(rlog).read()
        for dom, (mode, mxs) in POLICIES.items():
            assert re.search(r"Parsed policy for domain %s: .*'mode': '%s'" % (re.escape(dom), mode), rl), rl
        assert open(os.path.join(env.dir, 'https.log')).read().count(' 200 ') == len(POLICIES)
        # the resolver down: deferred with Postfix's text, nothing delivered
        resolver.terminate()
        resolver.wait(timeout=30)
        q4 = env.send(d.port, 'a@sender.test', ['c@good.test'], MSG)
        d.wait_log(r'warning: smtp_tls_policy_maps, next-hop destination "good\.test:%d": '
                   r'policy table lookup error' % port, timeout=60)
        d.wait_log(r'%s: to=<c@good\.test>, relay=[^,]*, .*dsn=4\.7\.5, '
                   r'status=deferred \(client TLS configuration problem\)' % q4, timeout=60)
        assert len(messages(out)) == 1
        # nothing but the test's own names was asked of DNS
        names = re.findall(r'query\[\w+\] (\S+) from', open(qlog).read())
        assert names and all(n.endswith('.test') for n in names), names
    finally:
        srv.shutdown()
        srv.server_close()
        if resolver.poll() is None:
            resolver.terminate()
