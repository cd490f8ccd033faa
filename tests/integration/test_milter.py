"""Milters (smtpd_milters): a libmilter filter written for the tests
(tests/integration/milter_filter.py, Debian's python3-milter) exercises every
action; broken filters get milter_default_action; OpenDKIM signs mail that an
independent verifier (python3-dkim) accepts."""
import os
import re
import smtplib
import socket
import struct
import subprocess
import threading
import time

from harness import Skip, free_port, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
PY = '/usr/bin/python3'


def have_module(mod):
    return os.path.exists(PY) and subprocess.run(
        [PY, '-c', 'import ' + mod], capture_output=True).returncode == 0


def start_filter(env):
    if not have_module('Milter'):
        raise Skip('python3-milter (Debian) is not installed')
    port = free_port()
    logf = os.path.join(env.dir, 'filter.log')
    env.spawn([PY, os.path.join(HERE, 'milter_filter.py'), str(port), logf])
    wait_port(port)
    return port, logf


def read(path):
    try:
        with open(path, errors='replace') as f:
            return f.read()
    except FileNotFoundError:
        return ''


def msg(subject, extra='', body='Hello.\r\n'):
    return ('From: a@sender.test\r\nTo: b@dest.test\r\nSubject: %s\r\n%s\r\n%s'
            % (subject, extra, body))


def setup(env, **params):
    fport, flog = start_filter(env)
    sink = env.pysink()
    p = dict(relayhost='[127.0.0.1]:%d' % sink.port, queue_run_delay='1s',
             smtpd_milters='inet:127.0.0.1:%d' % fport)
    p.update(params)
    d = env.relayqd(**p)
    return d, sink, flog


def test_milter_header_and_body_edits_reach_the_next_hop(env):
    d, sink, flog = setup(env)
    env.send(d.port, 'a@sender.test', ['b@dest.test'],
             msg('addheader insheader chgheader delheader replbody',
                 'X-Change-Me: before\r\nX-Remove-Me: gone\r\n'))
    m = sink.wait_messages(1)[0]
    data = m['data'].decode()
    head, _, body = data.partition('\r\n\r\n')
    assert 'X-Filter-Added: yes' in head, data
    # insert at index 0 puts it above relayq's own Received: (as Postfix)
    assert head.startswith('X-Filter-Top: first\r\nReceived: '), data
    assert 'X-Change-Me: changed' in head and 'before' not in head, data
    assert 'X-Remove-Me' not in head, data
    assert body == 'The body was replaced.\r\n', repr(body)
    # the filter never saw relayq's own Received: header
    assert "header Received" not in read(flog), read(flog)
    assert 'header Subject' in read(flog)


def test_milter_envelope_edits(env):
    d, sink, flog = setup(env)
    env.send(d.port, 'a@sender.test', ['b@dest.test', 'second@dest.test'],
             msg('chgfrom addrcpt delrcpt'))
    got = sink.wait_messages(1)
    time.sleep(1)
    rcpts = sorted(r for m in sink.messages for r in m['rcpts'])
    assert rcpts == ['added@dest.test', 'b@dest.test'], rcpts
    assert all(m['from'] == 'new-sender@filter.test' for m in sink.messages), got
    args = [a for m in sink.messages for r, a in zip(m['rcpts'], m['rcpt_args']) if r == 'added@dest.test']
    assert args and 'NOTIFY=NEVER' in args[0], args
    assert re.search(r'milter-change-sender: from=<a@sender.test> to <new-sender@filter.test>', d.log())


def test_milter_reject_tempfail_discard_at_end_of_message(env):
    d, sink, flog = setup(env)
    with smtplib.SMTP('127.0.0.1', d.port, timeout=30) as s:
        s.ehlo('client.test')
        s.mail('a@sender.test')
        s.rcpt('b@dest.test')
        code, resp = s.data(msg('reject').encode())
        assert code == 554 and b'5.7.1 content rejected by the test filter' in resp, (code, resp)
        s.mail('a@sender.test')
        s.rcpt('b@dest.test')
        code, resp = s.data(msg('tempfail').encode())
        assert code == 451 and b'4.7.1' in resp, (code, resp)
        s.mail('a@sender.test')
        s.rcpt('b@dest.test')
        code, resp = s.data(msg('discard').encode())
        assert code == 250, (code, resp)
    d.wait_log(r"milter-discard: END-OF-MESSAGE")
    log = d.log()
    assert re.search(r'[0-9A-F]+: milter-reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: '
                     r'5\.7\.1 content rejected by the test filter; from=<a@sender\.test> '
                     r'to=<b@dest\.test> proto=ESMTP helo=<client\.test>', log), log
    assert 'milter-discard: END-OF-MESSAGE from localhost[127.0.0.1]: milter triggers DISCARD action' in log
    time.sleep(2)
    assert sink.messages == [], 'nothing may be relayed: %r' % sink.messages
    assert 'Mail queue is empty' in env.cli(d, 'mailq').stdout


def test_milter_rcpt_stage_and_custom_reply(env):
    d, sink, flog = setup(env)
    with smtplib.SMTP('127.0.0.1', d.port, timeout=30) as s:
        s.ehlo('client.test')
        s.mail('a@sender.test')
        code, resp = s.rcpt('reject-me@dest.test')
        assert code == 550 and resp == b'5.7.1 no thanks', (code, resp)
        code, resp = s.rcpt('tempfail-me@dest.test')
        assert code == 451, (code, resp)
        code, resp = s.rcpt('b@dest.test')
        assert code == 250
        code, resp = s.data(msg('plain').encode())
        assert code == 250
    m = sink.wait_messages(1)[0]
    assert m['rcpts'] == ['b@dest.test']
    assert re.search(r'NOQUEUE: milter-reject: RCPT from localhost\[127\.0\.0\.1\]: 550 5\.7\.1 no thanks; '
                     r'from=<a@sender\.test> to=<reject-me@dest\.test> proto=ESMTP helo=<client\.test>', d.log())


def test_milter_quarantine_holds_the_message(env):
    d, sink, flog = setup(env)
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], msg('quarantine'))
    d.wait_log(r"milter-hold: END-OF-MESSAGE")
    log = d.log()
    assert '%s: milter-hold: END-OF-MESSAGE from localhost[127.0.0.1]: looks suspicious;' % qid in log, log
    time.sleep(3)
    assert sink.messages == []
    out = env.cli(d, 'mailq').stdout
    assert re.search(r'^%s!' % qid, out, re.M), out
    env.cli(d, 'release', qid, check=True)
    env.cli(d, 'flush')
    sink.wait_messages(1, timeout=30)


def test_milter_macros_have_postfix_values(env):
    d, sink, flog = setup(env, milter_macro_daemon_name='ORIGINATING',
                          milter_connect_macros='j {daemon_name} {client_addr} v _')
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], msg('macros'))
    m = sink.wait_messages(1)[0]
    data = m['data'].decode()
    assert ('X-Macros: i=%s j=mta.relayq.test daemon_name=ORIGINATING client_addr=127.0.0.1 '
            'mail_addr=a@sender.test' % qid) in data, data
    f = read(flog)
    # the queue ID is not there at connect; it is from DATA on
    assert re.search(r'^connect localhost 127\.0\.0\.1 j=mta\.relayq\.test daemon_name=ORIGINATING i=None', f, re.M), f
    assert re.search(r'^data i=%s' % qid, f, re.M), f


def test_milter_down_gets_default_action(env):
    sink = env.pysink()
    dead = free_port()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port,
                    smtpd_milters='inet:127.0.0.1:%d' % dead)
    with smtplib.SMTP('127.0.0.1', d.port, timeout=30) as s:
        s.ehlo('client.test')
        code, resp = s.mail('a@sender.test')
        assert code == 451 and b'4.7.1 Service unavailable - try again later' in resp, (code, resp)
    assert re.search(r'warning: connect to Milter service inet:127\.0\.0\.1:%d: Connection refused' % dead, d.log())
    d.stop()
    d.params['milter_default_action'] = 'accept'
    d.write_config()
    d.start()
    env.send(d.port, 'a@sender.test', ['b@dest.test'], msg('x'))
    sink.wait_messages(1)


class BadFilter:
    """A raw milter peer: negotiates, then misbehaves at a chosen event."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(c,), daemon=True).start()

    def session(self, c):
        try:
            while True:
                hdr = c.recv(4, socket.MSG_WAITALL)
                if len(hdr) < 4:
                    return
                n = struct.unpack('>I', hdr)[0]
                body = c.recv(n, socket.MSG_WAITALL)
                cmd = body[:1]
                if cmd == b'O':
                    c.sendall(struct.pack('>IcIII', 13, b'O', 6, 0, 0))
                elif cmd == b'D' or cmd == b'A':
                    continue
                elif cmd == b'Q':
                    return
                elif cmd == b'E':
                    if self.mode == 'garbage':
                        c.sendall(struct.pack('>I', 0xfffffff0) + b'x' * 10)
                    elif self.mode == 'close':
                        c.close()
                        return
                    elif self.mode == 'hang':
                        time.sleep(30)
                    elif self.mode == 'badreply':
                        t = b'999 not a reply\x00'
                        c.sendall(struct.pack('>Ic', len(t) + 1, b'y') + t)
                    else:
                        c.sendall(struct.pack('>Ic', 1, b'c'))
                else:
                    c.sendall(struct.pack('>Ic', 1, b'c'))
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.sock.close()


def test_broken_milters_tempfail_and_lose_nothing(env):
    """A filter that sends garbage, closes mid-message, hangs past the timeout or
    sends a malformed reply: with tempfail the client gets 451 and may retry;
    nothing is queued half-modified; the daemon stays up."""
    sink = env.pysink()
    for mode in ('garbage', 'close', 'hang', 'badreply'):
        bf = BadFilter(mode)
        try:
            d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port,
                            smtpd_milters='{ inet:127.0.0.1:%d, content_timeout=2s }' % bf.port)
            with smtplib.SMTP('127.0.0.1', d.port, timeout=30) as s:
                s.ehlo('client.test')
                assert s.mail('a@sender.test')[0] == 250
                assert s.rcpt('b@dest.test')[0] == 250
                t0 = time.time()
                code, resp = s.data(msg(mode).encode())
                assert code == 451 and b'4.7.1 Service unavailable - try again later' in resp, (mode, code, resp)
                assert time.time() - t0 < 20
            assert 'Mail queue is empty' in env.cli(d, 'mailq').stdout, mode
            assert d.proc.poll() is None, mode
            assert re.search(r'warning: milter inet:127\.0\.0\.1:%d: ' % bf.port, d.log()), (mode, d.log())
            d.stop()
        finally:
            bf.close()
    assert sink.messages == []
    # default_action=accept per milter: the same broken filter is skipped
    bf = BadFilter('garbage')
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port,
                    smtpd_milters='{ inet:127.0.0.1:%d, default_action=accept }' % bf.port)
    env.send(d.port, 'a@sender.test', ['b@dest.test'], msg('after'))
    sink.wait_messages(1)
    bf.close()


def test_bad_milter_setting_defers_mail(env):
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port,
                    smtpd_milters='{ inet:127.0.0.1:1, bogus=1 }')
    with smtplib.SMTP('127.0.0.1', d.port, timeout=30) as s:
        s.ehlo('client.test')
        code, resp = s.mail('a@sender.test')
        assert code == 451 and b'4.3.5' in resp, (code, resp)
    assert 'unknown milter setting "bogus"' in d.log()


def dkim_txt(path):
    """The p= record of opendkim-genkey's sel.txt, as a DNS TXT answer."""
    return ''.join(re.findall(r'"([^"]*)"', read(path)))


def verify_dkim(env, data, txt):
    """Check the signature with an independent verifier (Debian's python3-dkim)."""
    mf = os.path.join(env.dir, 'verify.eml')
    with open(mf, 'wb') as f:
        f.write(data)
    code = ('import dkim,sys\n'
            'msg=open(sys.argv[1],"rb").read()\n'
            'txt=sys.argv[2].encode()\n'
            'print(dkim.verify(msg, dnsfunc=lambda name, timeout=5: txt))\n')
    r = subprocess.run([PY, '-c', code, mf, txt], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip() == 'True'


def test_opendkim_signs_and_an_independent_verifier_accepts(env):
    if not os.path.exists('/usr/sbin/opendkim') or not have_module('dkim'):
        raise Skip('opendkim or python3-dkim (Debian) is not installed')
    kd = os.path.join(env.dir, 'dkim')
    os.makedirs(kd, mode=0o700)
    subprocess.run(['opendkim-genkey', '-D', kd, '-d', 'example.test', '-s', 'sel'], check=True)
    port = free_port()
    conf = os.path.join(kd, 'opendkim.conf')
    with open(conf, 'w') as f:
        f.write('Syslog no\nSocket inet:%d@127.0.0.1\nMode sv\nDomain example.test\n'
                'Selector sel\nKeyFile %s/sel.private\nCanonicalization relaxed/simple\n'
                'InternalHosts 127.0.0.1\nPidFile %s/pid\nBackground no\n'
                # the test directory is under /var/tmp, which every user may write
                'RequireSafeKeys no\n' % (port, kd, kd))
    env.spawn(['/usr/sbin/opendkim', '-f', '-x', conf])
    wait_port(port)
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port,
                    smtpd_milters='inet:127.0.0.1:%d' % port)
    env.send(d.port, 'alerts@example.test', ['b@dest.test'],
             'From: Alerts <alerts@example.test>\r\nTo: b@dest.test\r\nSubject: signed\r\n\r\n'
             'Hello from the relay.\r\nA second line.\r\n')
    data = sink.wait_messages(1)[0]['data']
    assert b'DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=example.test;' in data, data
    txt = dkim_txt(os.path.join(kd, 'sel.txt'))
    assert verify_dkim(env, data, txt), data
    # the check can fail: a body changed after signing does not verify
    assert not verify_dkim(env, data.replace(b'A second line.', b'A changed line.'), txt)


def test_non_smtpd_milters_filter_sendmail_mail(env):
    """Mail from sendmail(1) goes through non_smtpd_milters with the events
    Postfix's cleanup sends for local mail (connect as localhost): edits reach
    the next hop, a rejection returns the mail to the sender, a tempfail keeps
    the maildrop file."""
    fport, flog = start_filter(env)
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, queue_run_delay='1s',
                    non_smtpd_milters='inet:127.0.0.1:%d' % fport)

    def sendmail(subject):
        r = env.cli(d, '-f', 'app@sender.test', 'b@dest.test', input=msg(subject), prog='sendmail')
        assert r.returncode == 0, r.stderr

    sendmail('addheader')
    m = sink.wait_messages(1)[0]
    assert b'X-Filter-Added: yes' in m['data'], m['data']
    assert re.search(r'^connect localhost 127\.0\.0\.1', read(flog), re.M), read(flog)
    assert re.search(r'^mail <app@sender\.test>', read(flog), re.M), read(flog)
    # a rejection: the sender gets a notice, nothing goes to b@dest.test
    sendmail('reject')
    d.wait_log(r'milter-reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: 5\.7\.1 content rejected')
    d.wait_log(r'to=<b@dest\.test>, relay=none, .*dsn=5\.7\.1, status=bounced \(content rejected by the test filter\)')
    got = sink.wait_messages(2)
    notice = got[1]
    assert notice['from'] == '' and notice['rcpts'] == ['app@sender.test'], notice
    assert b'content rejected by the test filter' in notice['data']
    # a tempfail: the maildrop file waits
    sendmail('tempfail')
    d.wait_log(r'milter-reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: 451 4\.7\.1 .*maildrop file is kept')
    left = os.listdir(os.path.join(d.queue_dir, 'maildrop'))
    assert [f for f in left if f != 'corrupt'], left
    assert len(sink.messages) == 2


RSPAMD_OPTIONS = '''dns { nameserver = ["127.0.0.1:1"]; timeout = 1s; retransmits = 1; }
local_addrs = "127.0.0.0/8";
'''


def test_rspamd_milter_adds_its_header_and_rejects_gtube(env):
    """rspamd's proxy worker in milter mode, on loopback with every DNS query
    sent to a closed loopback port (its maps and RBLs fail at once; nothing
    leaves the machine): an ordinary message gets rspamd's header, the GTUBE
    test message is rejected with rspamd's reply."""
    if not os.path.exists('/usr/bin/rspamd'):
        raise Skip('rspamd (Debian) is not installed')
    rd = os.path.join(env.dir, 'rspamd')
    for sub in ('local.d', 'override.d', 'db', 'run', 'log'):
        os.makedirs(os.path.join(rd, sub))
    port, cport = free_port(), free_port()
    files = {
        'local.d/worker-proxy.inc': 'bind_socket = "127.0.0.1:%d";\nmilter = yes;\ntimeout = 120s;\n'
                                    'upstream "local" { default = yes; self_scan = yes; }\ncount = 1;\n' % port,
        'override.d/worker-controller.inc': 'bind_socket = "127.0.0.1:%d";\ncount = 1;\n' % cport,
        'override.d/worker-normal.inc': 'enabled = false;\n',
        'override.d/worker-fuzzy.inc': 'enabled = false;\n',
        'local.d/options.inc': RSPAMD_OPTIONS,
        'local.d/logging.inc': 'type = "file"; filename = "%s/log/rspamd.log"; level = "info";\n' % rd,
        'local.d/milter_headers.conf': 'use = ["x-spamd-result"];\nskip_local = false;\n'
                                       'skip_authenticated = false;\n',
    }
    for name, text in files.items():
        with open(os.path.join(rd, name), 'w') as f:
            f.write(text)
    subprocess.run(['chmod', '-R', 'a+rwX', rd], check=True)
    env.spawn(['/usr/bin/rspamd', '-f', '-i', '-u', '_rspamd', '-g', '_rspamd', '-c', '/etc/rspamd/rspamd.conf',
               '--var=LOCAL_CONFDIR=' + rd, '--var=DBDIR=%s/db' % rd, '--var=RUNDIR=%s/run' % rd,
               '--var=LOGDIR=%s/log' % rd])
    wait_port(port, timeout=120)
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, smtpd_milters='inet:127.0.0.1:%d' % port,
                    milter_content_timeout='120s')
    # the first scan may wait for rspamd's regular expressions to be compiled
    env.send(d.port, 'a@sender.test', ['b@dest.test'], msg('hello there', body='An ordinary message.\r\n'))
    data = sink.wait_messages(1, timeout=150)[0]['data']
    assert b'X-Spamd-Result: default: False [' in data, data
    with smtplib.SMTP('127.0.0.1', d.port, timeout=150) as s:
        s.ehlo('client.test')
        s.mail('a@sender.test')
        s.rcpt('b@dest.test')
        gtube = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'
        code, resp = s.data(msg('gtube', body=gtube + '\r\n').encode())
    assert code == 554 and b'Gtube pattern' in resp, (code, resp)
    assert re.search(r'milter-reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: 5\.7\.1 Gtube pattern;', d.log())
    time.sleep(1)
    assert len(sink.messages) == 1


def test_milter_macro_daemon_name_per_listener(env):
    """Debian's master.cf sets -o milter_macro_daemon_name=ORIGINATING on the
    submission listener (OpenDKIM signs by it): each listener sends its own."""
    fport, flog = start_filter(env)
    sink = env.pysink()
    a, b = free_port(), free_port()
    d = env.relayqd(start=False, relayhost='[127.0.0.1]:%d' % sink.port, smtpd_listen='127.0.0.1:%d' % a,
                    smtpd_milters='inet:127.0.0.1:%d' % fport)
    with open(os.path.join(d.confdir, 'master.cf'), 'w') as f:
        f.write('127.0.0.1:%d inet n - n - - smtpd\n' % a)
        f.write('127.0.0.1:%d inet n - n - - smtpd\n  -o milter_macro_daemon_name=ORIGINATING\n' % b)
    d.start()
    wait_port(b)
    env.send(a, 'a@sender.test', ['b@dest.test'], msg('plain'))
    env.send(b, 'a@sender.test', ['b@dest.test'], msg('plain'))
    sink.wait_messages(2)
    f = read(flog)
    assert re.search(r'^connect localhost 127\.0\.0\.1 j=mta\.relayq\.test daemon_name=mta\.relayq\.test ', f, re.M), f
    assert re.search(r'^connect localhost 127\.0\.0\.1 j=mta\.relayq\.test daemon_name=ORIGINATING ', f, re.M), f
