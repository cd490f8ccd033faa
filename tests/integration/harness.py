"""relayq integration-test harness.

Tests are plain functions `def test_name(env):` in tests/integration/test_*.py.
`env` starts the real binaries on free 127.0.0.1 ports in a private temporary
directory and stops everything it started when the test ends.  Nothing here
talks to any address outside 127.0.0.0/8.

    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, queue_run_delay='2s')
    env.send(d.port, 'a@sender.test', ['b@dest.test'], 'Subject: x\r\n\r\nhi\r\n')
    d.wait_log(r'status=sent')
    out = env.cli(d, 'mailq')
"""
import os
import random
import re
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
BIN = os.environ.get('RELAYQ_BIN', os.path.join(ROOT, 'bin'))


class Skip(Exception):
    pass


# make test's sanitizer pass (RELAYQ_SANITIZE=1, binaries built with SANITIZE=1):
# the daemon checks leaks too; the CLI's exit paths are not leak-checked.
SANITIZE = os.environ.get('RELAYQ_SANITIZE') == '1'
SANITIZER_RX = re.compile(r'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|UndefinedBehaviorSanitizer|'
                          r'AddressSanitizer:DEADLYSIGNAL')


def daemon_env():
    env = dict(os.environ)
    if SANITIZE:
        env['ASAN_OPTIONS'] = 'detect_leaks=1:abort_on_error=0'
        env['LSAN_OPTIONS'] = 'suppressions=%s:print_suppressions=0' % os.path.join(os.path.dirname(__file__), 'lsan.supp')
        env['UBSAN_OPTIONS'] = 'print_stacktrace=1'
    return env


def sanitizer_reports(env):
    """Sanitizer reports in the output of every relayqd the test started."""
    if not SANITIZE:
        return []
    out = []
    for d in env.daemons:
        text = d.stderr_text()
        # A fatal exit ("relayqd: fatal: ...", return 1 from main) leaves its memory to the
        # kernel: the leak report that follows it is not a finding.  Any other report is.
        kept, last = [], 0
        for m in re.finditer(r'==\d+==ERROR: LeakSanitizer.*?SUMMARY: AddressSanitizer: \d+ byte\(s\) leaked[^\n]*',
                             text, flags=re.S):
            before = text[last:m.start()]
            kept.append(before)
            if 'relayqd: fatal:' not in before:
                kept.append(m.group(0))
            last = m.end()
        kept.append(text[last:])
        text = ''.join(kept)
        m = SANITIZER_RX.search(text)
        if m:
            out.append('%s/stderr.txt:\n%s' % (d.confdir, text[max(0, m.start() - 200):m.start() + 4000]))
    return out


PORT_LOW, PORT_HIGH = 10000, 32000         # below Linux's ephemeral range (32768-60999)
PORT_DIR = '/tmp/relayq-test-ports'


def free_port():
    """A loopback port nothing uses, that no other test of this run (in any
    process) was given, and that no outgoing connection can take as its
    source port meanwhile: a random one below the ephemeral range, claimed
    with an O_EXCL file (stale claims older than an hour are ignored)."""
    os.makedirs(PORT_DIR, exist_ok=True)
    for _ in range(1000):
        port = random.randint(PORT_LOW, PORT_HIGH)
        claim = os.path.join(PORT_DIR, str(port))
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                if time.time() - os.stat(claim).st_mtime < 3600:
                    continue
                os.utime(claim)
            except OSError:
                continue
        else:
            os.close(fd)
        s = socket.socket()
        try:
            s.bind(('127.0.0.1', port))
        except OSError:
            continue
        finally:
            s.close()
        return port
    raise AssertionError('no free port in %d-%d' % (PORT_LOW, PORT_HIGH))


def wait_port(port, timeout=10, host='127.0.0.1'):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    raise AssertionError('nothing listening on %s:%d after %ss' % (host, port, timeout))


class Daemon:
    def __init__(self, env, confdir, params):
        self.env = env
        self.confdir = confdir
        self.params = params
        self.port = int(params['smtpd_listen'].rsplit(':', 1)[1])
        self.queue_dir = params['queue_directory']
        self.logfile = params['maillog_file']
        self.proc = None

    def start(self, wait=True, timeout=10):
        self.stderr = open(os.path.join(self.confdir, 'stderr.txt'), 'ab')
        self.proc = subprocess.Popen([os.path.join(BIN, 'relayqd'), '-c', self.confdir],
                                     stdout=self.stderr, stderr=self.stderr, env=daemon_env())
        if wait:
            deadline = time.time() + timeout
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError('relayqd exited with %s: %s' % (self.proc.returncode, self.stderr_text()))
                try:
                    socket.create_connection(('127.0.0.1', self.port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                raise AssertionError('relayqd did not listen: ' + self.stderr_text())
        return self

    def stderr_text(self):
        try:
            with open(os.path.join(self.confdir, 'stderr.txt'), 'r', errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def log(self):
        try:
            with open(self.logfile, 'r', errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def wait_log(self, pattern, timeout=15, count=1):
        """Wait until `pattern` (regex) matches `count` log lines; returns the matches."""
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        while True:
            lines = [m for m in (rx.search(l) for l in self.log().splitlines()) if m]
            if len(lines) >= count:
                return lines
            if time.time() > deadline:
                raise AssertionError('log has %d/%d lines matching %r after %ss; log:\n%s' %
                                     (len(lines), count, pattern, timeout, self.log()[-4000:]))
            if self.proc and self.proc.poll() is not None:
                raise AssertionError('relayqd exited (%s) while waiting for %r; stderr:\n%s\nlog:\n%s' %
                                     (self.proc.returncode, pattern, self.stderr_text(), self.log()[-3000:]))
            time.sleep(0.05)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def hup(self):
        self.proc.send_signal(signal.SIGHUP)

    def write_config(self, **more):
        self.params.update({k: str(v) for k, v in more.items()})
        with open(os.path.join(self.confdir, 'relayq.cf'), 'w') as f:
            for k, v in self.params.items():
                f.write('%s = %s\n' % (k, v))


class PySink:
    """A small SMTP server for tests that need to see what was relayed or to
    answer with chosen replies.  replies: dict stage -> reply line, stages:
    'greeting', 'ehlo', 'mail', 'rcpt', 'data', 'dot'.  A callable value gets
    the argument of the command and returns the reply."""

    def __init__(self, replies=None, ehlo_lines=None, port=0, host='127.0.0.1'):
        self.replies = replies or {}
        self.ehlo_lines = ehlo_lines or ['PIPELINING', 'SIZE 10240000', '8BITMIME', 'DSN',
                                         'SMTPUTF8', 'ENHANCEDSTATUSCODES']
        self.messages = []
        self.connections = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _reply(self, stage, arg, default):
        r = self.replies.get(stage, default)
        return r(arg) if callable(r) else r

    def _serve(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._session, args=(c,), daemon=True).start()

    def _session(self, c):
        f = c.makefile('rb')
        out = lambda s: c.sendall(s.encode() + b'\r\n')
        try:
            g = self._reply('greeting', None, '220 sink.test ESMTP')
            out(g)
            if not g.startswith('2'):
                return
            env = {'from': None, 'rcpts': [], 'mail_args': '', 'rcpt_args': []}
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.decode('utf-8', 'replace').rstrip('\r\n')
                verb = cmd.split(' ', 1)[0].upper()
                if verb in ('EHLO', 'HELO'):
                    r = self._reply('ehlo', cmd, None)
                    if r:
                        out(r)
                        continue
                    lines = ['sink.test'] + (self.ehlo_lines if verb == 'EHLO' else [])
                    for i, l in enumerate(lines):
                        out(('250 ' if i == len(lines) - 1 else '250-') + l)
                elif verb == 'MAIL':
                    m = re.match(r'MAIL FROM:<([^>]*)>(.*)', cmd, re.I)
                    env = {'from': m.group(1) if m else cmd, 'rcpts': [], 'mail_args': m.group(2).strip() if m else '', 'rcpt_args': []}
                    out(self._reply('mail', cmd, '250 2.1.0 Ok'))
                elif verb == 'RCPT':
                    m = re.match(r'RCPT TO:<([^>]*)>(.*)', cmd, re.I)
                    r = self._reply('rcpt', m.group(1) if m else cmd, '250 2.1.5 Ok')
                    if r.startswith('2'):
                        env['rcpts'].append(m.group(1) if m else cmd)
                        env['rcpt_args'].append(m.group(2).strip() if m else '')
                    out(r)
                elif verb == 'DATA':
                    r = self._reply('data', cmd, '354 End data with <CR><LF>.<CR><LF>')
                    out(r)
                    if not r.startswith('3'):
                        continue
                    data = b''
                    while True:
                        l = f.readline()
                        if not l:
                            return
                        if l == b'.\r\n':
                            break
                        if l.startswith(b'.'):
                            l = l[1:]
                        data += l
                    env['data'] = data
                    r = self._reply('dot', env, '250 2.0.0 Ok: queued as SINK%d' % (len(self.messages) + 1))
                    if r.startswith('2'):
                        with self.lock:
                            self.messages.append(dict(env))
                    out(r)
                elif verb == 'RSET':
                    out('250 2.0.0 Ok')
                elif verb == 'QUIT':
                    out('221 2.0.0 Bye')
                    return
                else:
                    out('250 2.0.0 Ok')
        except OSError:
            pass
        finally:
            c.close()

    def wait_messages(self, n, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError('sink has %d/%d messages after %ss' % (len(self.messages), n, timeout))

    def close(self):
        self.stopped = True
        try:
            self.sock.close()
        except OSError:
            pass


class Env:
    def __init__(self, name):
        self.name = name
        # short: UNIX socket paths under it must stay below 108 bytes
        self.dir = tempfile.mkdtemp(prefix='rq-%s-' % name[5:25], dir='/var/tmp')
        os.chmod(self.dir, 0o755)
        self.daemons = []
        self.procs = []
        self.sinks = []

    def relayqd(self, start=True, **params):
        """Write a configuration and start relayqd with it.  Default: a dead
        next hop (a closed port), short timings left to the test."""
        confdir = os.path.join(self.dir, 'conf%d' % len(self.daemons))
        os.makedirs(confdir)
        p = {
            'smtpd_listen': '127.0.0.1:%d' % free_port(),
            'queue_directory': os.path.join(confdir, 'spool'),
            'maillog_file': os.path.join(confdir, 'maillog'),
            'myhostname': 'mta.relayq.test',
            'mydomain': 'relayq.test',
            'relayhost': '[127.0.0.1]:%d' % free_port(),
            'dns_servers': '127.0.0.1:1',
        }
        p.update({k: str(v) for k, v in params.items()})
        d = Daemon(self, confdir, p)
        d.write_config()
        self.daemons.append(d)
        if start:
            d.start()
        return d

    def cli(self, d, *args, input=None, check=False, user=None, prog='relayq', timeout=60):
        cmd = [os.path.join(BIN, prog), '-c', d.confdir] + list(args) if prog == 'relayq' \
            else [os.path.join(BIN, prog)] + list(args)
        env = dict(os.environ)
        if prog != 'relayq':
            env['RELAYQ_CONFIG_DIR'] = d.confdir
        pre = []
        if user:
            pre = ['setpriv', '--reuid=%s' % user, '--regid=%s' % user, '--init-groups']
        r = subprocess.run(pre + cmd, input=input, capture_output=True, text=True, env=env, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError('%s exited %d: %s%s' % (' '.join(cmd), r.returncode, r.stdout, r.stderr))
        return r

    def send(self, port, sender, rcpts, body, helo='client.test', **kw):
        """Send one message with smtplib; returns the queue ID from the 250 reply."""
        with smtplib.SMTP('127.0.0.1', port, local_hostname=helo, timeout=30) as s:
            s.ehlo(helo)
            code, resp = s.mail(sender, kw.get('mail_options', []))
            if code != 250:
                raise AssertionError('MAIL: %d %s' % (code, resp))
            for r in rcpts:
                code, resp = s.rcpt(r, kw.get('rcpt_options', []))
                if code not in (250, 251):
                    raise AssertionError('RCPT %s: %d %s' % (r, code, resp))
            code, resp = s.data(body.encode() if isinstance(body, str) else body)
            if code != 250:
                raise AssertionError('DATA: %d %s' % (code, resp))
            m = re.search(rb'queued as ([0-9A-F]+)', resp)
            return m.group(1).decode() if m else None

    def pysink(self, **kw):
        s = PySink(**kw)
        self.sinks.append(s)
        return s

    def spawn(self, argv, **kw):
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        return p

    def smtp_sink(self, port=None, extra=()):
        """Postfix's smtp-sink on a free port; returns (port, process)."""
        if not os.path.exists('/usr/sbin/smtp-sink'):
            raise Skip('smtp-sink not installed')
        port = port or free_port()
        p = self.spawn(['/usr/sbin/smtp-sink', '-u', 'nobody'] + list(extra) + ['127.0.0.1:%d' % port, '100'])
        wait_port(port)
        return port, p

    def close(self):
        for d in self.daemons:
            try:
                d.stop()
            except Exception:
                pass
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        for s in self.sinks:
            s.close()

    def cleanup(self):
        subprocess.run(['rm', '-rf', self.dir])
