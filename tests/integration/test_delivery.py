"""The SMTP client through the daemon: TLS to a next hop, MX order with a
dead first MX (dnsmasq on a loopback port), the fallback relay, error: and
discard: transports, 4xx replies, a silent next hop."""
import os
import re
import shutil
import socket
import subprocess
import time

from harness import Skip, free_port, wait_port

MSG = 'From: a@sender.test\r\nSubject: delivery\r\n\r\nbody\r\n'


def self_signed(env):
    key = os.path.join(env.dir, 'key.pem')
    cert = os.path.join(env.dir, 'cert.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
                    '-subj', '/CN=hop.relayq.test', '-keyout', key, '-out', cert],
                   check=True, capture_output=True)
    return cert, key


def test_starttls_to_next_hop(env):
    cert, key = self_signed(env)
    sink = env.pysink()
    # the next hop: a second relayq offering STARTTLS with a self-signed certificate
    hop = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, myhostname='hop.relayq.test',
                      smtpd_tls_cert_file=cert, smtpd_tls_key_file=key, smtpd_tls_security_level='may')
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % hop.port, smtp_tls_security_level='encrypt')
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    d.wait_log(r'%s: to=<b@dest\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*status=sent' % (qid, hop.port))
    m = sink.wait_messages(1)[0]
    body = m['data'].decode()
    assert re.search(r'by hop\.relayq\.test \(relayq\) with ESMTPS id', body), body[:600]


def test_encrypt_without_starttls_defers(env):
    sink = env.pysink(ehlo_lines=['PIPELINING', '8BITMIME'])
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, smtp_tls_security_level='encrypt')
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    d.wait_log(r'%s: to=<b@dest\.test>, .*status=deferred \(TLS is required, but was not offered by host '
               r'127\.0\.0\.1\[127\.0\.0\.1\]\)' % qid)
    assert sink.messages == []


def dnsmasq(env, records):
    exe = shutil.which('dnsmasq') or '/usr/sbin/dnsmasq'
    if not os.path.exists(exe):
        raise Skip('dnsmasq not installed')
    port = free_port()
    args = [exe, '--no-daemon', '--port=%d' % port, '--listen-address=127.0.0.1', '--bind-interfaces',
            '--no-resolv', '--no-hosts', '--user=root', '--pid-file='] + records
    env.spawn(args)
    deadline = time.time() + 5
    while time.time() < deadline:     # wait until it answers on UDP
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)
        # a minimal DNS query for "dest.test" MX
        q = b'\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04dest\x04test\x00\x00\x0f\x00\x01'
        try:
            s.sendto(q, ('127.0.0.1', port))
            s.recvfrom(512)
            return port
        except OSError:
            time.sleep(0.1)
        finally:
            s.close()
    raise AssertionError('dnsmasq did not answer')


def test_mx_order_skips_a_dead_first_mx(env):
    port = free_port()
    sink = env.pysink(host='127.0.0.3', port=port)
    dns = dnsmasq(env, ['--mx-host=dest.test,mx1.dest.test,10', '--mx-host=dest.test,mx2.dest.test,20',
                        '--host-record=mx1.dest.test,127.0.0.2', '--host-record=mx2.dest.test,127.0.0.3'])
    d = env.relayqd(relayhost='', dns_servers='127.0.0.1:%d' % dns,
                    transport_maps='inline:{ dest.test=smtp:dest.test:%d }' % port)
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    sink.wait_messages(1)
    d.wait_log(r'connect to mx1\.dest\.test\[127\.0\.0\.2\]:%d: Connection refused' % port)
    d.wait_log(r'%s: to=<b@dest\.test>, relay=mx2\.dest\.test\[127\.0\.0\.3\]:%d, .*status=sent' % (qid, port))


def test_unknown_domain_bounces(env):
    sink = env.pysink()
    # --local: dnsmasq answers for .test from its own data only, NXDOMAIN for the rest
    dns = dnsmasq(env, ['--local=/test/', '--mx-host=dest.test,mx1.dest.test,10',
                        '--host-record=mx1.dest.test,127.0.0.2'])
    d = env.relayqd(relayhost='', dns_servers='127.0.0.1:%d' % dns,
                    transport_maps='inline:{ sender.test=smtp:[127.0.0.1]:%d }' % sink.port)
    qid = env.send(d.port, 'a@sender.test', ['b@nowhere.test'], MSG)
    d.wait_log(r'%s: to=<b@nowhere\.test>, relay=none, .*dsn=5\.4\.4, status=bounced \(Host or domain name not found\. '
               r'Name service error for name=nowhere\.test type=\w+: Host not found\)' % qid)
    sink.wait_messages(1)


def test_fallback_relay(env):
    sink = env.pysink()
    d = env.relayqd(smtp_fallback_relay='[127.0.0.1]:%d' % sink.port)
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    sink.wait_messages(1)
    d.wait_log(r'%s: to=<b@dest\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*status=sent' % (qid, sink.port))


def test_error_and_discard_transports(env):
    sink = env.pysink()
    # As in Postfix, a value with white space is protected with { }.
    d = env.relayqd(transport_maps='inline:{ { bad.test = error:no mail for this domain }, '
                                   'void.test=discard:, sender.test=smtp:[127.0.0.1]:%d }' % sink.port)
    q1 = env.send(d.port, 'a@sender.test', ['x@bad.test'], MSG)
    d.wait_log(r'relayq/error\[\d+\]: %s: to=<x@bad\.test>, relay=none, .*status=bounced \(no mail for this domain\)' % q1)
    q2 = env.send(d.port, 'a@sender.test', ['y@void.test'], MSG)
    d.wait_log(r'relayq/discard\[\d+\]: %s: to=<y@void\.test>, relay=none, .*status=sent' % q2)
    d.wait_log(r'%s: removed' % q2)
    sink.wait_messages(1)      # the bounce for x@bad.test


def test_4xx_reply_defers_and_shows_in_mailq(env):
    hop = env.pysink(replies={'rcpt': '450 4.2.0 <b@dest.test>: mailbox busy'})
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % hop.port)
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    reason = 'host 127.0.0.1[127.0.0.1] said: 450 4.2.0 <b@dest.test>: mailbox busy (in reply to RCPT TO command)'
    d.wait_log(r'%s: to=<b@dest\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*dsn=4\.2\.0, status=deferred \(%s\)'
               % (qid, hop.port, re.escape(reason)))
    out = env.cli(d, 'mailq', check=True).stdout
    assert '(%s)' % reason in out, out


def test_silent_next_hop_times_out(env):
    lsock = socket.socket()
    lsock.bind(('127.0.0.1', 0))
    lsock.listen(8)
    port = lsock.getsockname()[1]
    try:
        d = env.relayqd(relayhost='[127.0.0.1]:%d' % port, smtp_helo_timeout='2s')
        qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
        d.wait_log(r'%s: to=<b@dest\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*status=deferred '
                   r'\(conversation with 127\.0\.0\.1\[127\.0\.0\.1\] timed out while receiving the initial server greeting\)'
                   % (qid, port), timeout=20)
    finally:
        lsock.close()


def test_long_lines_are_folded_at_998(env):
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port)
    long_line = 'x' * 2500
    env.send(d.port, 'a@sender.test', ['b@dest.test'], 'Subject: long\r\n\r\n' + long_line + '\r\nshort\r\n')
    m = sink.wait_messages(1)[0]
    lines = m['data'].split(b'\r\n')
    assert max(len(l) for l in lines) <= 998, max(len(l) for l in lines)
    # folded with CRLF SPACE: nothing lost
    body = m['data'].split(b'\r\n\r\n', 1)[1]
    assert body.replace(b'\r\n ', b'') == (long_line + '\r\nshort\r\n').encode()


def test_orig_to_on_every_delivery_status(env):
    """Postfix prints orig_to= whenever the original recipient differs, for
    every status; relayq's smtp client used to leave it out (only the
    queue manager's suspended-destination line had it)."""
    def rcpt(arg):
        return '250 2.1.5 Ok' if 'good' in arg else '550 5.1.1 <%s>: no such user' % arg
    sink = env.pysink(replies={'rcpt': rcpt})
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port)
    qid = env.send(d.port, 'a@sender.test', ['good@dest.test'], MSG,
                   rcpt_options=['ORCPT=rfc822;first+2Bgood@dest.test'])
    line = d.wait_log(r'%s: to=<good@dest\.test>.*status=sent' % qid)[0].string
    assert 'orig_to=<first+good@dest.test>, relay=127.0.0.1[127.0.0.1]:%d' % sink.port in line, line
    qid = env.send(d.port, 'a@sender.test', ['bad@dest.test'], MSG,
                   rcpt_options=['ORCPT=rfc822;alias@dest.test'])
    line = d.wait_log(r'%s: to=<bad@dest\.test>.*status=bounced' % qid)[0].string
    assert ', orig_to=<alias@dest.test>, relay=' in line, line
    # the same address as the recipient: no orig_to=
    qid = env.send(d.port, 'a@sender.test', ['good2@dest.test'], MSG,
                   rcpt_options=['ORCPT=rfc822;GOOD2@dest.test'])
    line = d.wait_log(r'%s: to=<good2@dest\.test>.*status=sent' % qid)[0].string
    assert 'orig_to' not in line, line


def test_starttls_and_rset_timeouts_are_parameters(env):
    """smtp_starttls_timeout and smtp_rset_timeout were read with private
    defaults but missing from the parameter table: setting them warned
    "unknown parameter" and did nothing.  A server that says 220 to
    STARTTLS and then stays silent: the handshake times out after
    smtp_starttls_timeout (2s here, 300s by default).  (smtp_rset_timeout
    is only checked for being a parameter: a server silent after RSET
    needs a rejected transaction on a cached session.)"""
    import threading
    srv = socket.socket()
    srv.bind(('127.0.0.1', 0))
    srv.listen(4)
    srv.settimeout(30)
    port = srv.getsockname()[1]
    conns = []

    def serve():
        try:
            c, _ = srv.accept()
        except OSError:
            return
        conns.append(c)
        f = c.makefile('rb')
        c.sendall(b'220 silent.test ESMTP\r\n')
        for line in f:
            if line.upper().startswith(b'EHLO'):
                c.sendall(b'250-silent.test\r\n250 STARTTLS\r\n')
            elif line.upper().startswith(b'STARTTLS'):
                c.sendall(b'220 2.0.0 Ready to start TLS\r\n')
                time.sleep(20)          # the handshake never starts
                return
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % port, smtp_tls_security_level='may',
                    smtp_starttls_timeout='2s', smtp_rset_timeout='3s')
    r = env.cli(d, 'config', 'smtp_starttls_timeout', 'smtp_rset_timeout')
    assert r.returncode == 0 and 'unknown' not in r.stderr, r
    assert r.stdout == 'smtp_starttls_timeout = 2s\nsmtp_rset_timeout = 3s\n', r.stdout
    assert 'unknown parameter' not in d.stderr_text(), d.stderr_text()
    t0 = time.time()
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    # the handshake timeout is reported as Postfix's TLS failure text
    d.wait_log(r'%s: to=<b@dest\.test>, .*dsn=4\.7\.5, status=deferred \(Cannot start TLS: handshake failure\)'
               % qid, timeout=15)
    assert time.time() - t0 < 15
    srv.close()
    for c in conns:
        c.close()
