"""Queue views that never stall the relay (issue 23).

relayqd streams mailq, mailq -j and qshape from its view thread a page at a
time (docs/architecture.md, "Queue views").  With 10,000 deferred messages
(written by tests/bench/inject_deferred with the daemon down, as
bench/view-bench does with 100,000 and more):

- the streamed answers are complete and exactly what the CLI prints from
  the queue itself with the daemon down (mailq, qshape), and mailq -j
  lists every message once, with the daemon's fields;
- fresh SMTP clients get their EHLO answered while the views stream (no
  timing is asserted: the machine may be slow; only that they are
  answered, during the walk);
- a client that stops reading is dropped after ipc_timeout, the others go
  on, and the daemon stays healthy.
"""
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import harness

N = 10000


def injector():
    """tests/bench/inject_deferred, built with the Makefile's rule in the default build."""
    r = subprocess.run(['make', '-s', '-C', harness.ROOT, 'build/tests/inject_deferred'],
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise AssertionError('cannot build inject_deferred: ' + (r.stdout + r.stderr)[-3000:])
    return os.path.join(harness.ROOT, 'build', 'tests', 'inject_deferred')


def filled(env, n, **params):
    """A daemon whose queue holds n deferred messages (next attempt in an hour)."""
    d = env.relayqd(start=False, queue_run_delay='3600s', **params)
    r = subprocess.run([injector(), d.queue_dir, str(n), '300', '5000', '3600'],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    d.start(timeout=60)
    d.wait_log(r'queue loaded: %d messages' % n, timeout=120)
    return d


def ehlo_probe(port):
    """A fresh client: connect, banner, EHLO; returns the seconds it took."""
    t0 = time.monotonic()
    with socket.create_connection(('127.0.0.1', port), timeout=30) as s:
        f = s.makefile('rb')
        line = f.readline()
        assert line.startswith(b'220'), line
        s.sendall(b'EHLO probe.test\r\n')
        while True:
            line = f.readline()
            assert line.startswith(b'250'), line
            if line[3:4] == b' ':
                break
        s.sendall(b'QUIT\r\n')
    return time.monotonic() - t0


class Probes:
    """EHLO probes every 20 ms on another thread, each stamped with its end time."""

    def __init__(self, port):
        self.port, self.done, self.errors = port, [], []
        self.stop_ev = threading.Event()
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        while not self.stop_ev.is_set():
            try:
                self.done.append((time.monotonic(), ehlo_probe(self.port)))
            except (OSError, AssertionError) as e:
                self.errors.append(repr(e))
            self.stop_ev.wait(0.02)

    def stop(self):
        self.stop_ev.set()
        self.th.join(60)


def during(probes, t0, t1):
    return [p for p in probes.done if t0 < p[0] < t1]


def test_views_of_ten_thousand_messages(env):
    d = filled(env, N)
    pr = Probes(d.port)
    time.sleep(0.3)

    t0 = time.monotonic()
    r = env.cli(d, 'mailq', '-j', timeout=300)
    t1 = time.monotonic()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == N, len(lines)
    ids = set()
    for line in lines:
        o = json.loads(line)
        assert o['queue_name'] == 'deferred', o
        assert o['recipients'][0]['address'] == 'user@sink.example', o
        assert o['recipients'][0]['delay_reason'].startswith('connect to 127.0.0.1'), o
        # the daemon's own fields: it knows the next queue run
        assert isinstance(o['next_attempt_time'], int) and o['next_attempt_time'] > time.time() + 3000, o
        assert o['destination_dead'] is False, o
        ids.add(o['queue_id'])
    assert len(ids) == N

    t2 = time.monotonic()
    text = env.cli(d, 'mailq', timeout=300)
    shape = env.cli(d, 'qshape', timeout=300)
    shape_s = env.cli(d, 'qshape', '-s', 'deferred', timeout=300)
    t3 = time.monotonic()
    time.sleep(0.3)
    pr.stop()
    assert text.returncode == 0 and shape.returncode == 0 and shape_s.returncode == 0
    assert text.stdout.endswith(' Kbytes in %d Requests.\n' % N), text.stdout[-200:]
    assert text.stdout.count('user@sink.example\n') == N
    assert ' TOTAL %d ' % N in ' '.join(shape.stdout.split()) + ' '
    assert 'sink.example %d ' % N in ' '.join(shape.stdout.split()) + ' '
    assert 'source.example %d ' % N in ' '.join(shape_s.stdout.split()) + ' '

    # EHLO was answered while the views were streamed (each probe ends inside a walk).
    assert not pr.errors, pr.errors[:3]
    assert during(pr, t0, t1) or during(pr, t2, t3), 'no EHLO answered during the walks'
    assert len(pr.done) >= 2

    # The same answers as the CLI's own walk with the daemon down, byte for byte.
    d.stop()
    down = env.cli(d, 'mailq', timeout=300)
    assert 'Mail system is down' in down.stderr
    assert down.stdout == text.stdout
    down_shape = env.cli(d, 'qshape', timeout=300)
    assert down_shape.stdout == shape.stdout


def test_unread_view_is_dropped_and_others_go_on(env):
    d = filled(env, N, ipc_timeout='2s')
    path = os.path.join(d.queue_dir, 'public', 'query')
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(path)
    stalled.sendall(b'mailq json\n')
    stalled.shutdown(socket.SHUT_WR)
    first = stalled.recv(4096)
    assert first.startswith(b'ok\n{"queue_name": "deferred"'), first[:100]

    # It reads nothing more; meanwhile another client gets the whole answer and SMTP works.
    r = env.cli(d, 'mailq', '-j', timeout=300)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == N
    ehlo_probe(d.port)

    # After ipc_timeout (2 s) of no progress the daemon drops it: what it can
    # still read ends well short of the full answer, with EOF or a reset.
    time.sleep(4)
    got = len(first)
    stalled.settimeout(30)
    try:
        while True:
            b = stalled.recv(65536)
            if not b:
                break
            got += len(b)
    except ConnectionResetError:
        pass
    stalled.close()
    assert got < len(r.stdout) // 2, (got, len(r.stdout))

    # Still healthy: views and SMTP.
    r2 = env.cli(d, 'qshape', timeout=300)
    assert r2.returncode == 0 and 'TOTAL' in r2.stdout
    ehlo_probe(d.port)
    assert d.proc.poll() is None


def test_many_clients_at_once_are_limited(env):
    """At most 32 streams at once; the 33rd is refused with a clear error, not queued without bound."""
    d = filled(env, 2000, ipc_timeout='30s')
    path = os.path.join(d.queue_dir, 'public', 'query')
    held = []
    try:
        for _ in range(32):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(path)
            s.sendall(b'mailq json\n')
            assert s.recv(3) == b'ok\n'
            held.append(s)
        r = env.cli(d, 'mailq', timeout=60)
        assert r.returncode != 0 and 'too many queue views in progress' in r.stderr, (r.returncode, r.stderr)
    finally:
        for s in held:
            s.close()
    # Once they are gone, views work again.
    deadline = time.time() + 30
    while True:
        r = env.cli(d, 'mailq', timeout=60)
        if r.returncode == 0 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith(' Kbytes in 2000 Requests.\n')


def test_edits_of_all_in_slices(env):
    """hold/release/delete ALL and flush DOMAIN on 10,000 messages: in slices
    (500 per batch), SMTP answered meanwhile, each message logged once, one
    summary, the same answers as before."""
    d = filled(env, N)
    pr = Probes(d.port)
    time.sleep(0.3)
    t0 = time.monotonic()
    r = env.cli(d, 'hold', 'ALL', timeout=300)
    t1 = time.monotonic()
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == 'relayq: Placed on hold: %d messages' % N, r.stderr
    log = d.log()
    assert log.count(': placed on hold\n') == N
    assert log.count('postsuper[%d]: Placed on hold: %d messages\n' % (d.proc.pid, N)) == 1
    shape = env.cli(d, 'qshape', 'hold', check=True)
    assert ' TOTAL %d ' % N in ' '.join(shape.stdout.split()) + ' '

    r = env.cli(d, 'release', 'ALL', timeout=300)
    assert r.stderr.strip() == 'relayq: Released from hold: %d messages' % N, r.stderr
    # flush DOMAIN walks on the view thread; nothing pending elsewhere: 0.
    r = env.cli(d, 'flush', 'elsewhere.example', timeout=300)
    assert r.returncode == 0 and r.stdout == 'Flushing 0 messages for elsewhere.example\n', (r.stdout, r.stderr)
    t2 = time.monotonic()
    r = env.cli(d, 'delete', 'ALL', timeout=300)
    t3 = time.monotonic()
    assert r.stderr.strip() == 'relayq: Deleted: %d messages' % N, r.stderr
    assert d.log().count(': removed\n') == N
    time.sleep(0.3)
    pr.stop()
    assert not pr.errors, pr.errors[:3]
    assert during(pr, t0, t1) or during(pr, t2, t3), 'no EHLO answered during the edits'
    assert env.cli(d, 'mailq', check=True).stdout == 'Mail queue is empty\n'


def test_flush_domain_counts_and_delivers(env):
    """flush DOMAIN finds the messages by a walk off the loop and they go out."""
    port, _ = env.smtp_sink()
    d = filled(env, 3000, relayhost='[127.0.0.1]:%d' % port)
    r = env.cli(d, 'flush', 'SINK.example', timeout=300)
    assert r.returncode == 0 and r.stdout == 'Flushing 3000 messages for SINK.example\n', (r.stdout, r.stderr)
    d.wait_log(r'status=sent', count=3000, timeout=120)
    assert env.cli(d, 'mailq', check=True).stdout == 'Mail queue is empty\n'


def metric(mport, name):
    text = urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mport, timeout=30).read().decode()
    m = re.search(r'^%s (\S+)$' % re.escape(name), text, re.M)
    assert m, 'no %s in:\n%s' % (name, text)
    return float(m.group(1))


def test_views_give_way_while_the_relay_is_busy(env):
    """relayq_queue_view_cpu_share: a view pauses between its pages while
    the daemon is busy relaying (smtp-source sending), runs at full speed
    when nothing else goes on or only an idle client is connected, and 100
    turns the pauses off.  The answer is the same complete listing."""
    smtp_source = '/usr/sbin/smtp-source'
    if not os.access(smtp_source, os.X_OK):
        raise harness.Skip('no smtp-source (package postfix)')
    n = 3000
    mport = harness.free_port()
    d = filled(env, n, relayq_queue_view_cpu_share='2', metrics_listen='127.0.0.1:%d' % mport)

    def mailq_complete():
        r = env.cli(d, 'mailq', '-j', timeout=300)
        assert r.returncode == 0, r.stderr
        assert len(set(json.loads(l)['queue_id'] for l in r.stdout.splitlines())) == n
        return r

    # Nothing else going on, then an idle client connected: no pause.
    mailq_complete()
    assert metric(mport, 'relayq_queue_view_pages_total') >= n / 256
    idle = socket.create_connection(('127.0.0.1', d.port), timeout=30)
    try:
        assert idle.recv(512).startswith(b'220')
        mailq_complete()
        assert metric(mport, 'relayq_queue_view_paced_seconds_total') == 0

        # Mail pouring in (20 sessions, bounded): the view gives way, and
        # still lists every message it was asked about.
        load = subprocess.Popen([smtp_source, '-s', '20', '-m', '20000', '-l', '2048', '-f', 'a@sender.test',
                                 '-t', 'b@dest.test', '127.0.0.1:%d' % d.port],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            paced = 0
            deadline = time.monotonic() + 120
            while paced == 0 and load.poll() is None and time.monotonic() < deadline:
                r = env.cli(d, 'mailq', '-j', timeout=300)
                assert r.returncode == 0, r.stderr
                assert len(r.stdout.splitlines()) >= n
                paced = metric(mport, 'relayq_queue_view_paced_seconds_total')
            assert paced > 0, 'no view paused while the relay was receiving'
        finally:
            load.kill()
            load.wait()

        # The idle client is still served.
        idle.sendall(b'EHLO idle.test\r\n')
        assert idle.recv(4096).startswith(b'250')

        # 100: no pauses.
        d.write_config(relayq_queue_view_cpu_share='100')
        d.hup()
        d.wait_log(r'reload -- version')
        r = env.cli(d, 'qshape', timeout=300)
        assert r.returncode == 0 and 'TOTAL' in r.stdout
        assert metric(mport, 'relayq_queue_view_paced_seconds_total') == paced
    finally:
        idle.close()

    # Out of range: refused, with the parameter named.
    d.stop()
    d.write_config(relayq_queue_view_cpu_share='0')
    r = env.cli(d, 'config', '--check', timeout=60)
    assert r.returncode != 0 and 'relayq_queue_view_cpu_share' in (r.stdout + r.stderr), r


# ---- explain --what-if --all: a walk of the view thread, the predictions made there ----

WHATIF_N = 20000
SETS = ['--set', 'maximal_backoff_time=600s', '--set', 'maximal_queue_lifetime=2d']


def body_lines(text):
    """The message lines of a --what-if table (between the column header and the summary)."""
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith('QUEUE ID '))
    end = next(i for i in range(start + 1, len(lines)) if lines[i] == '')
    return lines[:start], lines[start + 1:end], lines[end + 1:]


def test_what_if_of_twenty_thousand_messages(env):
    """explain --what-if --all on 20,000 deferred messages is streamed from
    the view thread in pages (the daemon's counters say how many), fresh
    SMTP clients are answered meanwhile, every message is listed once, and
    each line is what the daemon answers for that message named alone (the
    same per-message code over messages loaded one by one)."""
    mport = harness.free_port()
    d = filled(env, WHATIF_N, metrics_listen='127.0.0.1:%d' % mport)
    at = int(time.time()) + 1800
    walks0 = metric(mport, 'relayq_queue_views_total')
    work0 = metric(mport, 'relayq_queue_view_work_pages_total')
    pr = Probes(d.port)
    time.sleep(0.3)
    t0 = time.monotonic()
    r = env.cli(d, 'explain', '--what-if', *SETS, '--at', str(at), '--all', timeout=600)
    t1 = time.monotonic()
    time.sleep(0.3)
    pr.stop()
    assert r.returncode == 0, r.stderr
    head, body, tail = body_lines(r.stdout)
    assert head[0].startswith('What if at '), head
    assert '  maximal_backoff_time = 600s (now 4000s)' in head, head
    assert len(body) == WHATIF_N, len(body)
    # Paged: one walk, at least N/64 pages worked on by the view thread.
    assert metric(mport, 'relayq_queue_views_total') == walks0 + 1
    assert metric(mport, 'relayq_queue_view_work_pages_total') - work0 >= WHATIF_N / 64
    ids = [l.split()[0] for l in body]
    assert len(set(ids)) == WHATIF_N
    mq = {json.loads(l)['queue_id'] for l in env.cli(d, 'mailq', '-j', timeout=300, check=True).stdout.splitlines()}
    assert set(ids) == mq
    m = re.match(r'(\d+) message\(s\): (\d+) tried earlier, (\d+) later, (\d+) at the same time\.$', tail[0])
    assert m and int(m.group(1)) == WHATIF_N, tail
    assert sum(int(m.group(k)) for k in (2, 3, 4)) == WHATIF_N, tail
    # every message expires sooner with a 2-day lifetime than with the default 5 days
    assert all(l.split()[-1].startswith('-2d') for l in body), [l for l in body if ' -2d' not in l][:3]

    # SMTP was answered during it.
    assert not pr.errors, pr.errors[:3]
    assert during(pr, t0, t1), 'no EHLO answered during the what-if'

    # The same lines as the daemon's answer for the messages named (first, middle, last 200).
    for k in (0, WHATIF_N // 2, WHATIF_N - 200):
        part = ids[k:k + 200]
        r2 = env.cli(d, 'explain', '--what-if', *SETS, '--at', str(at), *part, timeout=300)
        assert r2.returncode == 0, r2.stderr
        h2, b2, t2 = body_lines(r2.stdout)
        assert h2 == head
        assert b2 == body[k:k + 200]
        assert t2[0].startswith('200 message(s): ')

    # JSON: the same messages; today's next attempt is what mailq -j says.
    j = env.cli(d, 'explain', '--what-if', *SETS, '--at', str(at), '--all', '--json', timeout=600)
    assert j.returncode == 0, j.stderr
    pred = json.loads(j.stdout)
    assert [p['queue_id'] for p in pred] == ids
    mqj = {o['queue_id']: o for o in map(json.loads, env.cli(d, 'mailq', '-j', timeout=300, check=True).stdout.splitlines())}
    for p in pred[:: 97]:
        assert p['next_attempt_time']['now'] == mqj[p['queue_id']]['next_attempt_time'], (p, mqj[p['queue_id']])
        assert p['expire_time']['what_if'] < p['expire_time']['now'], p


def test_what_if_client_gone_midway(env):
    """A client that sends explain --what-if --all and goes away (or stops
    reading) after the first bytes: the walk ends, the daemon stays healthy
    and answers the next what-if in full."""
    mport = harness.free_port()
    d = filled(env, 5000, metrics_listen='127.0.0.1:%d' % mport, ipc_timeout='2s')
    path = os.path.join(d.queue_dir, 'public', 'query')
    req = b'explain --what-if --set=maximal_backoff_time=600s --all\n'
    for _ in range(3):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(req)
        first = s.recv(200)
        assert first.startswith(b'ok\nWhat if at '), first
        s.close()
    # one that stays connected but does not read: dropped after ipc_timeout (2 s)
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(path)
    stalled.sendall(req)
    assert stalled.recv(3) == b'ok\n'
    deadline = time.time() + 60
    while metric(mport, 'relayq_queue_views') > 0 and time.time() < deadline:
        time.sleep(0.2)
    assert metric(mport, 'relayq_queue_views') == 0, 'a walk outlived its client'
    stalled.close()
    ehlo_probe(d.port)
    r = env.cli(d, 'explain', '--what-if', '--set', 'maximal_backoff_time=600s', '--all', timeout=300)
    assert r.returncode == 0, r.stderr
    assert '\n5000 message(s): ' in r.stdout, r.stdout[-500:]
    assert d.proc.poll() is None


# ---- SIGTERM in the middle of an edit of ALL or a flush DOMAIN ----

def admin_request(d, req):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.path.join(d.queue_dir, 'private', 'admin'))
    s.sendall(req.encode() + b'\n')
    return s


def read_all(s, timeout=60):
    s.settimeout(timeout)
    data = b''
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    return data.decode(errors='replace')


def stop_during(env, d, req):
    """Send req on the admin socket and SIGTERM right away; returns (answer, exit status)."""
    s = admin_request(d, req)
    time.sleep(0.02)
    d.proc.send_signal(signal.SIGTERM)
    answer = read_all(s)
    return answer, d.proc.wait(60)


def test_sigterm_during_edits_of_all(env):
    """hold ALL, requeue ALL, and an expire ALL that changes nothing (turns of
    the loop that only look) are stopped by SIGTERM at their next slice: the
    daemon exits 0 (with nothing leaked: the sanitizer run checks), the client
    is answered with what was done, and the queue agrees with the answer."""
    n = 4000
    d = filled(env, n)
    answer, rc = stop_during(env, d, 'hold ALL')
    assert rc == 0, rc
    m = re.search(r'Placed on hold: (\d+) messages?', answer)
    assert m, answer
    held = int(m.group(1))
    assert held == n or 'the mail system is stopping; the rest was not changed' in answer, answer
    assert d.log().count(': placed on hold\n') == held
    d.start(timeout=60)
    shape = env.cli(d, 'qshape', 'hold', timeout=120, check=True)
    assert ' TOTAL %d ' % held in ' '.join(shape.stdout.split()) + ' ', shape.stdout

    env.cli(d, 'release', 'ALL', timeout=120, check=True)
    answer, rc = stop_during(env, d, 'requeue ALL')
    assert rc == 0 and re.search(r'Requeued: \d+ messages?', answer), (rc, answer)

    d.start(timeout=60)
    env.cli(d, 'expire', 'ALL', timeout=120, check=True)
    answer, rc = stop_during(env, d, 'expire ALL')
    assert rc == 0 and 'Marked for expiry: 0 messages' in answer, (rc, answer)
    assert d.log().count('daemon stopped') == 3


def test_sigterm_during_flush_domain(env):
    """flush DOMAIN stopped by SIGTERM: the walk is dropped, its request freed
    (the sanitizer run checks), the client answered."""
    d = filled(env, 20000)
    answer, rc = stop_during(env, d, 'flush sink.example')
    assert rc == 0, rc
    assert re.match(r'ok\nFlushing \d+ messages for sink\.example\n$', answer) or \
        re.match(r'error flush sink\.example: the mail system is stopping \(\d+ messages? flushed\)\n$', answer), answer
