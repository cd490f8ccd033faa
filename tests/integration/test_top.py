"""relayq top during a real outage: the relayhost is a dead loopback port, a
few hundred messages sent with smtplib pile up deferred, a flush makes the
next hop dead; `relayq top --once` (as an unprivileged user, over the public
socket) shows the counts, the age buckets, the dead destination and why,
and the next queue run.  Then the next hop comes up, a flush delivers
everything, the counts go down and delivered/s rises.

The live view is driven through a pseudo-terminal: it draws, refreshes,
quits on `q` and on SIGTERM with the terminal put back as it was, copes
with a huge window and with the daemon going away; a next hop whose reply
carries escape sequences cannot reach the terminal through it.

RELAYQ_TOP_SCREEN=FILE keeps the outage's `top --once` screen (docs)."""
import fcntl
import json
import os
import pty
import re
import select
import signal
import smtplib
import struct
import subprocess
import termios
import threading
import time

import harness
from harness import BIN

NOBODY = '65534'
NMSG = 300
ANSI = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')


def dead_port(d):
    return int(d.params['relayhost'].rsplit(':', 1)[1])


def top_json(env, d):
    r = env.cli(d, 'top', '--json', user=NOBODY)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def wait_top(env, d, pred, what, timeout=60):
    deadline = time.time() + timeout
    while True:
        t = top_json(env, d)
        if pred(t):
            return t
        if time.time() > deadline:
            raise AssertionError('top never showed %s; last: %s' % (what, json.dumps(t, indent=1)))
        time.sleep(0.2)


def send_many(port, n, threads=3):
    """n messages over `threads` SMTP sessions, one transaction after another in each."""
    errors = []

    def worker(k, count):
        try:
            with smtplib.SMTP('127.0.0.1', port, local_hostname='client%d.test' % k, timeout=60) as s:
                for i in range(count):
                    s.sendmail('sender%d@sender.test' % k, ['rcpt%d-%d@dest.test' % (k, i)],
                               'Subject: outage %d-%d\r\n\r\nhello\r\n' % (k, i))
        except Exception as e:  # reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=worker, args=(k, n // threads + (k < n % threads))) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    assert not errors, errors


def test_top_outage(env):
    d = env.relayqd(queue_run_delay='300s', minimal_backoff_time='300s', maximal_backoff_time='4000s')
    port = dead_port(d)
    send_many(d.port, NMSG)
    wait_top(env, d, lambda t: t['queue']['deferred'] == NMSG, '%d deferred' % NMSG)
    # The operator retries everything at once: the next hop fails again and is declared dead.
    env.cli(d, 'flush', check=True)
    t = wait_top(env, d, lambda t: t['queue']['deferred'] == NMSG and t['dead_destinations'] == 1
                 and t['destinations'] and t['destinations'][0]['deferred'] == NMSG,
                 'a dead destination with %d deferred' % NMSG)
    dest = t['destinations'][0]
    assert dest['destination'] == 'smtp:[127.0.0.1]:%d' % port, dest
    assert dest['dead'] and dest['dsn'] == '4.4.1', dest
    assert dest['reason'] == ('delivery temporarily suspended: connect to 127.0.0.1[127.0.0.1]:%d: '
                              'Connection refused' % port), dest
    assert t['time'] < dest['dead_until'] <= t['time'] + 300, dest
    assert t['counters']['received']['total'] == NMSG, t['counters']
    assert t['counters']['deferred']['total'] >= 2 * NMSG, t['counters']
    assert t['counters']['delivered']['total'] == 0, t['counters']
    assert t['age']['deferred'][0] == NMSG and sum(t['age']['deferred']) == NMSG, t['age']
    assert t['next_queue_run'] > t['time'] and t['next_deferred_run'] >= t['next_queue_run'], t
    assert t['next_deferred_run'] <= t['time'] + 2 * 300 + 1, t

    # The plain-text screen, as a script (and the closing note) sees it; a
    # couple of seconds into the daemon's life, so that the rates have a
    # second's history (300 messages take a fraction of one on loopback).
    time.sleep(max(0, 2.5 - (time.time() - t['started'])))
    r = env.cli(d, 'top', '--once', user=NOBODY)
    assert r.returncode == 0, r.stderr
    screen = r.stdout
    if os.environ.get('RELAYQ_TOP_SCREEN'):
        with open(os.environ['RELAYQ_TOP_SCREEN'], 'w') as f:
            f.write(screen)
    assert 'queue: %d messages: 0 incoming, 0 active, %d deferred, 0 hold' % (NMSG, NMSG) in screen, screen
    assert re.search(r'^deferred +%d +%d +0 +0 +0 +0 +0 +0 +0 +0 +0$' % (NMSG, NMSG), screen, re.M), screen
    assert re.search(r'^age \(min\) +T +5 +10 +20 +40 +80 +160 +320 +640 +1280 +1280\+$', screen, re.M), screen
    m = re.search(r'^ +%d  smtp:\[127\.0\.0\.1\]:%d  DEAD until (\d\d:\d\d:\d\d) \((\d+m\d\ds|\d+s)\)$'
                  % (NMSG, port), screen, re.M)
    assert m, screen
    assert re.search(r'^ +4\.4\.1 delivery temporarily suspended: connect to 127\.0\.0\.1\[127\.0\.0\.1\]:%d: '
                     r'Connection refused$' % port, screen, re.M), screen
    assert re.search(r'^next queue run \d\d:\d\d:\d\d \(in \d+m\d\ds\); first deferred mail due at the run '
                     r'of \d\d:\d\d:\d\d', screen, re.M), screen
    assert 'dead destinations: 1;' in screen, screen
    assert '\x1b' not in screen

    # The next hop comes up; a flush forgets the dead state and delivers everything.
    sink = env.pysink(port=port)
    env.cli(d, 'flush', check=True)
    sink.wait_messages(NMSG, timeout=120)
    t = wait_top(env, d, lambda t: sum(t['queue'].values()) == 0, 'an empty queue')
    assert t['counters']['delivered']['total'] == NMSG, t['counters']
    assert t['counters']['delivered']['rate_60s'] > 0, t['counters']
    assert t['dead_destinations'] == 0 and t['destinations'] == [], t
    assert sum(t['age']['deferred']) == 0, t
    r = env.cli(d, 'top', '--once')
    m = re.search(r'^delivered +([\d.]+) +([\d.]+) +([\d.]+) +%d  recipients$' % NMSG, r.stdout, re.M)
    assert m and float(m.group(3)) > 0, r.stdout
    assert 'queue: 0 messages' in r.stdout and '  (none)' in r.stdout, r.stdout


def test_top_daemon_down(env):
    # Never started: no queue to read either.
    d = env.relayqd(start=False)
    for args in (('top', '--once'), ('top', '--json'), ('top',)):
        r = env.cli(d, *args)
        assert r.returncode == 1, (args, r.returncode, r.stdout)
        assert r.stdout == '', r.stdout
        assert 'Mail system is down -- accessing queue directly' in r.stderr, r.stderr
        assert 'relayq: fatal: cannot read the queue' in r.stderr, r.stderr
    r = env.cli(d, 'top', '--bogus')
    assert r.returncode == 64 and 'usage: relayq top' in r.stderr, r.stderr
    r = env.cli(d, 'top', '-n', '0')
    assert r.returncode == 64, r.stderr

    # Stopped with mail in the queue: as mailq, the queue itself, for what it can tell.
    d.start()
    for i in range(3):
        env.send(d.port, 'a@sender.test', ['b%d@dest.test' % i], 'Subject: x\r\n\r\nhi\r\n')
    d.wait_log(r'status=deferred', count=3)
    qid = re.search(r'([0-9A-F]+): to=<b0@dest.test>', d.log()).group(1)
    env.cli(d, 'hold', qid, check=True)
    d.stop()
    r = env.cli(d, 'top', '--once')
    assert r.returncode == 0, r.stderr
    assert r.stderr == 'relayq: warning: Mail system is down -- accessing queue directly\n', r.stderr
    assert 'relayqd is not running: the queue read directly' in r.stdout, r.stdout
    assert 'queue: 3 messages: 0 incoming, 0 active, 2 deferred, 1 hold' in r.stdout, r.stdout
    assert re.search(r'^deferred +2 +2 +0', r.stdout, re.M) and re.search(r'^hold +1 +1 +0', r.stdout, re.M), r.stdout
    assert 'dead destinations, deferred mail by destination: unknown (relayqd is not running)' in r.stdout
    r = env.cli(d, 'top', '--json')
    assert r.returncode == 0, r.stderr
    t = json.loads(r.stdout)
    assert t['daemon_running'] is False and t['counters'] is None and t['destinations'] is None, t
    assert t['queue'] == {'incoming': 0, 'active': 0, 'deferred': 2, 'hold': 1}, t
    assert t['age']['deferred'][0] == 2 and t['age']['hold'][0] == 1, t


# ---- the live view, through a pseudo-terminal ----

class Tty:
    """relayq top on a pty of the given size; the test reads what it draws."""

    def __init__(self, d, cols=100, rows=40):
        self.master, self.slave = pty.openpty()
        self.resize(cols, rows)
        self.before = termios.tcgetattr(self.slave)
        self.out = b''
        self.proc = subprocess.Popen([os.path.join(BIN, 'relayq'), '-c', d.confdir, 'top'],
                                     stdin=self.slave, stdout=self.slave, stderr=self.slave,
                                     start_new_session=True)

    def resize(self, cols, rows):
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))

    def read_until(self, pred, timeout=20):
        deadline = time.time() + timeout
        while not pred(self.out):
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError('the view never showed it; got:\n%r' % self.out[-3000:])
            r, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if r:
                try:
                    self.out += os.read(self.master, 65536)
                except OSError:
                    pass
        return self.out

    def frames(self):
        """Each screen drawn: the text between cursor-home sequences, escapes removed."""
        text = self.out.decode('utf-8', 'replace')
        return [ANSI.sub('', f).replace('\r', '') for f in text.split('\x1b[H')[1:]]

    def key(self, k):
        os.write(self.master, k)

    def wait_exit(self, timeout=10):
        deadline = time.time() + timeout
        while self.proc.poll() is None and time.time() < deadline:
            r, _, _ = select.select([self.master], [], [], 0.2)
            if r:
                try:
                    self.out += os.read(self.master, 65536)
                except OSError:
                    pass
        assert self.proc.poll() is not None, 'relayq top did not exit'
        try:
            while select.select([self.master], [], [], 0.2)[0]:
                chunk = os.read(self.master, 65536)
                if not chunk:
                    break
                self.out += chunk
        except OSError:
            pass
        return self.proc.returncode

    def assert_restored(self):
        assert termios.tcgetattr(self.slave) == self.before, 'terminal modes not restored'
        tail = self.out[self.out.rfind(b'\x1b[?1049h'):]
        assert b'\x1b[?1049l' in tail and b'\x1b[?25h' in tail, self.out[-300:]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


def test_top_tty(env):
    d = env.relayqd(queue_run_delay='300s', minimal_backoff_time='300s')
    env.send(d.port, 'a@sender.test', ['b@dest.test'], 'Subject: x\r\n\r\nhi\r\n')
    d.wait_log(r'status=deferred')

    t = Tty(d, cols=72, rows=30)
    try:
        t.read_until(lambda o: o.count(b'\x1b[H') >= 3)	# drawn, then refreshed every second
        assert b'\x1b[?1049h' in t.out and b'\x1b[?25l' in t.out
        # Raw mode while it runs: no echo, no line buffering.
        mode = termios.tcgetattr(t.slave)
        assert not (mode[3] & termios.ECHO) and not (mode[3] & termios.ICANON)
        frame = t.frames()[-2]		# the last may still be being drawn
        assert 'relayq top - mta.relayq.test' in frame, frame
        assert 'queue: 1 message: 0 incoming, 0 active, 1 deferred, 0 hold' in frame, frame
        assert 'q: quit' in frame, frame
        for line in frame.split('\n'):
            assert len(line) <= 72, line
        assert len(frame.rstrip('\n').split('\n')) <= 30
        # A smaller window: the next frame fits it.
        t.resize(40, 12)
        os.killpg(t.proc.pid, signal.SIGWINCH)
        n = len(t.frames())
        t.read_until(lambda o: len(t.frames()) >= n + 3)
        frame = t.frames()[-2]		# complete, and drawn after the resize
        assert all(len(l) <= 40 for l in frame.split('\n')), frame
        assert len(frame.rstrip('\n').split('\n')) <= 12, frame
        t.key(b'q')
        assert t.wait_exit() == 0
        t.assert_restored()
    finally:
        t.close()

    # SIGTERM: the terminal is put back before it dies of the signal.
    t = Tty(d)
    try:
        t.read_until(lambda o: b'q: quit' in o)
        t.proc.send_signal(signal.SIGTERM)
        assert t.wait_exit() == -signal.SIGTERM
        t.assert_restored()
    finally:
        t.close()

    # A window that claims 65535 x 65535: drawn within bounds, no crash.
    t = Tty(d, cols=65535, rows=65535)
    try:
        t.read_until(lambda o: o.count(b'\x1b[H') >= 2 and b'q: quit' in o)
        frame = t.frames()[-1]
        assert all(len(l) <= 1000 for l in frame.split('\n'))
        t.key(b'q')
        assert t.wait_exit() == 0
        t.assert_restored()
    finally:
        t.close()

    # The daemon goes away mid-view: it says so, keeps trying, and q still quits.
    t = Tty(d)
    try:
        t.read_until(lambda o: b'q: quit' in o)
        d.stop()
        t.read_until(lambda o: b'the mail system is not running' in o)
        t.read_until(lambda o: o.count(b'the mail system is not running') >= 2)	# retried
        frame = t.frames()[-1]
        assert 'queue: 1 message' in frame, frame	# the last snapshot stays up
        t.key(b'q')
        assert t.wait_exit() == 0
        t.assert_restored()
    finally:
        t.close()


def test_top_hostile_reply(env):
    """A next hop that answers with terminal escape sequences: the daemon
    censors the reply as Postfix's smtp client does (control characters
    become '?', in the log and the stored reason), and the screen never
    carries a control character."""
    evil = '421 4.3.2 \x1b]0;owned\x07\x1b[2J\x1b[31mgo away\x9b6n'
    sink = env.pysink(replies={'greeting': evil})
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, queue_run_delay='300s',
                    minimal_backoff_time='300s')
    for i in range(8):
        env.send(d.port, 'a@sender.test', ['b%d@dest.test' % i], 'Subject: x\r\n\r\nhi\r\n')
    d.wait_log(r'status=deferred', count=8)
    env.cli(d, 'flush', check=True)
    t = wait_top(env, d, lambda t: t['dead_destinations'] == 1 and t['destinations']
                 and t['destinations'][0]['dead'], 'a dead destination')
    reason = t['destinations'][0]['reason']
    censored = '421 4.3.2 ?]0;owned??[2J?[31mgo away??6n'   # U+009B: two bytes, two '?'
    assert reason.endswith('refused to talk to me: ' + censored), repr(reason)
    log = d.log()
    assert censored in log and '\x1b' not in log and '\x07' not in log, log[-2000:]
    r = env.cli(d, 'top', '--once')
    assert r.returncode == 0, r.stderr
    assert 'go away' in r.stdout, r.stdout
    bad = [c for c in r.stdout if (ord(c) < 0x20 and c != '\n') or 0x7f <= ord(c) < 0xa0]
    assert not bad, (bad, r.stdout)

    tt = Tty(d, cols=200, rows=40)
    try:
        tt.read_until(lambda o: b'go away' in o)
        text = tt.out.decode('utf-8', 'replace')
        # Only the view's own sequences: cursor home, clear to end of line/screen, the modes.
        for m in re.finditer(r'\x1b(.{0,8})', text):
            assert re.match(r'\[(H|K|J|2J|\?1049[hl]|\?25[hl])', m.group(1)), repr(text[m.start():m.start() + 20])
        assert '\x07' not in text and '\x9b' not in text
        tt.key(b'q')
        assert tt.wait_exit() == 0
        tt.assert_restored()
    finally:
        tt.close()


def test_top_request_errors(env):
    """The query socket refuses a malformed top request with an error line."""
    import socket
    d = env.relayqd()

    def ask(line):
        c = socket.socket(socket.AF_UNIX)
        c.connect(os.path.join(d.queue_dir, 'public', 'query'))
        c.sendall(line)
        c.shutdown(socket.SHUT_WR)
        data = b''
        while True:
            x = c.recv(65536)
            if not x:
                break
            data += x
        c.close()
        return data

    for bad in (b'top 0\n', b'top 101\n', b'top 5x\n', b'top -1\n', b'top 1 2\n', b'top \x1b[2J\n'):
        r = ask(bad)
        assert r.startswith(b'error usage: top [N], N from 1 to 100\n'), (bad, r)
    r = ask(b'top 100\n')
    assert r.startswith(b'ok\nrelayq-top 1\n') and r.endswith(b'\nend\n'), r
    r = ask(b'top\n')
    assert r.startswith(b'ok\nrelayq-top 1\n'), r


def test_top_hostile_destination(env):
    """A client's recipient domain becomes a destination name: a C1 control
    (U+009B, CSI on many terminals) in it, sent with SMTPUTF8, reaches the
    daemon's destinations but never the terminal; UTF-8 letters stay."""
    d = env.relayqd(relayhost='', queue_run_delay='300s', minimal_backoff_time='300s')
    for rcpt in ('a@x\u009b6n.test', 'b@ex\u00e4mple.test'):
        with smtplib.SMTP('127.0.0.1', d.port, local_hostname='client.test', timeout=30) as s:
            s.ehlo('client.test')
            assert s.mail('s@sender.test', ['SMTPUTF8'])[0] == 250
            assert s.rcpt(rcpt)[0] == 250
            assert s.data(b'Subject: x\r\n\r\nhi\r\n')[0] == 250
    t = wait_top(env, d, lambda t: len(t['destinations']) == 2, 'two destinations')
    assert sorted(x['destination'] for x in t['destinations']) == ['smtp:ex\u00e4mple.test', 'smtp:x\u009b6n.test'], t
    r = env.cli(d, 'top', '--once')
    assert 'smtp:x??6n.test' in r.stdout and 'smtp:ex\u00e4mple.test' in r.stdout, r.stdout
    assert '\u009b' not in r.stdout and '\x1b' not in r.stdout
    tt = Tty(d, cols=120, rows=40)
    try:
        tt.read_until(lambda o: b'smtp:x??6n.test' in o)
        assert b'\xc2\x9b' not in tt.out and b'\x9b' not in tt.out.replace('ä'.encode(), b'')
        tt.key(b'q')
        assert tt.wait_exit() == 0
        tt.assert_restored()
    finally:
        tt.close()
