"""Connection reuse in the SMTP client (smtp_connection_cache_on_demand):
messages for one next hop that are ready together share SMTP sessions, and
the delivery lines say conn_use=N from the second delivery on a session;
with caching off every message gets its own connection."""
import re
import smtplib

MSG = 'From: a@sender.test\r\nSubject: reuse %d\r\n\r\nbody %d\r\n'


def send_batch(port, n):
    """n messages over one SMTP session (n MAIL transactions); their queue IDs."""
    qids = []
    with smtplib.SMTP('127.0.0.1', port, local_hostname='client.test', timeout=30) as s:
        for i in range(n):
            s.mail('a@sender.test')
            s.rcpt('b%d@dest.test' % i)
            code, resp = s.data((MSG % (i, i)).encode())
            assert code == 250, (code, resp)
            qids.append(re.search(rb'queued as ([0-9A-F]+)', resp).group(1).decode())
    return qids


def test_ten_messages_share_connections(env):
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port)
    qids = send_batch(d.port, 10)
    got = sink.wait_messages(10)
    assert sorted(m['rcpts'][0] for m in got) == sorted('b%d@dest.test' % i for i in range(10))
    lines = d.wait_log(r'status=sent', count=10)
    assert sink.connections < 10, 'connections: %d' % sink.connections
    log = d.log()
    for q in qids:
        assert re.search(r'%s: to=<b\d@dest\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, ' % (q, sink.port), log), q
    reused = re.findall(r': to=<b\d@dest\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, conn_use=(\d+), '
                        r'delay=[\d.]+, delays=[\d.]+/[\d.]+/([\d.]+)/[\d.]+, dsn=2\.0\.0, status=sent' % sink.port, log)
    assert reused, log[-3000:]
    # every session's deliveries counted from 1: a session used N times logged 2..N
    assert len(reused) == 10 - sink.connections, (len(reused), sink.connections)
    assert all(int(n) >= 2 for n, c in reused)
    # a reused session needs no set-up: delays= c is (about) 0
    assert all(float(c) < 0.1 for n, c in reused), reused
    assert len(lines) == 10


def test_cache_off_one_connection_per_message(env):
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, smtp_connection_cache_on_demand='no')
    send_batch(d.port, 10)
    sink.wait_messages(10)
    d.wait_log(r'status=sent', count=10)
    assert sink.connections == 10, 'connections: %d' % sink.connections
    assert 'conn_use=' not in d.log()


def test_next_hop_drops_idle_sessions(env):
    """A next hop that closes each session after one message: nothing is
    deferred, nothing is logged as lost; each message gets a new session."""
    sink = env.pysink()
    real = sink._session

    def one_message(c):
        # serve one transaction, then hang up without a word (as on an idle timeout)
        f = c.makefile('rb')
        out = lambda s: c.sendall(s.encode() + b'\r\n')
        try:
            out('220 sink.test ESMTP')
            while True:
                line = f.readline()
                if not line:
                    return
                verb = line.decode().split(' ', 1)[0].upper().strip()
                if verb == 'EHLO':
                    out('250-sink.test')
                    out('250 PIPELINING')
                elif verb == 'DATA':
                    out('354 go')
                    data = b''
                    while True:
                        l = f.readline()
                        if not l or l == b'.\r\n':
                            break
                        data += l
                    with sink.lock:
                        sink.messages.append({'data': data})
                    out('250 2.0.0 Ok: queued as X')
                    return
                elif verb == 'QUIT':
                    out('221 Bye')
                    return
                else:
                    out('250 Ok')
        except OSError:
            pass
        finally:
            c.close()

    sink._session = one_message
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port)
    send_batch(d.port, 5)
    sink.wait_messages(5)
    d.wait_log(r'status=sent', count=5)
    client = '\n'.join(l for l in d.log().splitlines() if 'relayq/smtp[' in l)
    assert 'status=deferred' not in client and 'lost connection' not in client, client[-3000:]
    assert sink.connections == 5
    sink._session = real
