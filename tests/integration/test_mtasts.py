"""MTA-STS: smtp_tls_policy_maps with a socketmap (postfix-mta-sts-resolver's
protocol), looked up on relayqd's event loop.  A policy server written here
answers as the resolver does ("OK secure match=... servername=hostname",
"NOTFOUND "), slowly when told to; the next hop is a TLS peer with a
certificate from a test CA."""
import os
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
    finally:
        pol.close()
    # the resolver is down: a lookup error, the delivery is deferred, nothing sent
    q2 = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    d.wait_log(r'warning: smtp_tls_policy_maps, next-hop destination "%s": policy table lookup error'
               % hop.replace('[', r'\[').replace(']', r'\]').replace('.', r'\.'), timeout=30)
    d.wait_log(r'%s: to=<b@dest\.test>, relay=[^,]*, .*dsn=4\.7\.5, '
               r'status=deferred \(client TLS configuration problem\)' % q2, timeout=30)
    assert len(messages(out)) == 1
