"""Content checks (header_checks, mime_header_checks, nested_header_checks,
body_checks): the same tables and the same messages through a throw-away
Postfix on loopback and through relayq, compared at the next hop (envelope
and headers as delivered), in the client's replies, and in the log lines
the checks write.  Then what only relayq is asked here: bounded logging
of a check that matches every line, a REPLACE longer than
header_size_limit, a table that fails (451, nothing lost), a broken
pattern at start and at reload, and mail from sendmail(1)."""
import os
import re
import smtplib
import subprocess
import time

from harness import Skip, free_port
from pfinstance import Postfix

HEADER_CHECKS = r"""
/^Subject:.*reject-me/          REJECT no thanks
/^Subject:.*reject-plain/       REJECT
/^Subject:.*defer-me/           REJECT 4.7.0 try later
/^Subject:.*discard-me/         DISCARD dropped
/^Subject:.*hold-me/            HOLD held for review
/^Subject: (.*replace-me.*)/    REPLACE Subject: [replaced] $1
/^Subject:.*prepend-me/         PREPEND X-Prepended: yes
/^X-Strip-Me:/                  STRIP
/^X-Ignore-Me:/                 IGNORE
/^Subject:.*redirect-me/        REDIRECT redirected@dest.test
/^Subject:.*bcc-me/             BCC copy@dest.test
/^Subject:.*warn-me/            WARN warned
/^Subject:.*info-me/            INFO informed
/^Subject:.*folded-me.*second/  WARN folded header seen whole
/^Subject:.*pass-me/            PASS
/^Content-Type:.*x-bad-type/    REJECT bad attachment type
/^X-Part-Marker:/               WARN part header
/^Subject:.*inner-bad/          REJECT inner message rejected
"""

BODY_CHECKS = r"""
/^body-reject/                  REJECT body says no
/^replace this line (.*)/       REPLACE replaced: $1
/^strip this line/              STRIP
/^body-warn/                    WARN body warning
/^body-info/                    INFO
"""


def msg(subject, extra_headers='', body='hello\r\n'):
    return ('From: sender@src.test\r\nTo: rcpt@dest.test\r\nSubject: %s\r\n'
            'Date: Tue, 1 Dec 2026 00:00:00 +0000\r\nMessage-ID: <%s@src.test>\r\n%s\r\n%s'
            % (subject, re.sub(r'\W', '', subject)[:40], extra_headers, body))


MULTIPART = ('MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="BND"\r\n',
             'preamble\r\n--BND\r\nContent-Type: text/plain\r\nX-Part-Marker: one\r\n\r\n'
             'part text\r\nbody-warn in a part\r\n--BND\r\nContent-Type: application/x-bad-type\r\n\r\nxx\r\n'
             '--BND--\r\n')
NESTED = ('MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B2"\r\n',
          '--B2\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@inner.test\r\nSubject: inner-bad\r\n\r\n'
          'inner body\r\n--B2--\r\n')

# (subject, recipients, extra headers, body)
CASES = [
    ('reject-me now', ['a@dest.test'], '', 'hello\r\n'),
    ('reject-plain', ['a@dest.test'], '', 'hello\r\n'),
    ('defer-me', ['a@dest.test'], '', 'hello\r\n'),
    ('discard-me', ['a@dest.test'], '', 'hello\r\n'),
    ('hold-me', ['a@dest.test'], '', 'hello\r\n'),
    ('a replace-me b', ['a@dest.test'], '', 'hello\r\n'),
    ('prepend-me', ['a@dest.test'], 'X-Strip-Me: 1\r\nX-Ignore-Me: 2\r\n', 'hello\r\n'),
    ('redirect-me', ['a@dest.test', 'b@dest.test'], '', 'hello\r\n'),
    ('bcc-me', ['a@dest.test'], '', 'hello\r\n'),
    ('warn-me', ['a@dest.test', 'b@dest.test'], '', 'hello\r\n'),
    ('info-me', ['a@dest.test'], '', 'hello\r\n'),
    ('folded-me\r\n\tsecond line', ['a@dest.test'], '', 'hello\r\n'),
    ('pass-me', ['a@dest.test'], '', 'body-reject is not seen after PASS\r\n'),
    ('body one', ['a@dest.test'], '',
     'first\r\nreplace this line please\r\nstrip this line\r\nbody-warn here\r\nbody-info\r\nlast\r\n'),
    ('body two', ['a@dest.test'], '', 'x\r\nbody-reject\r\n'),
    ('multipart', ['a@dest.test'], MULTIPART[0], MULTIPART[1]),
    ('nested', ['a@dest.test'], NESTED[0], NESTED[1]),
]

ACTION_LINE = re.compile(r'\b[0-9A-F]{6,}: ((?:reject|discard|hold|replace|prepend|strip|redirect|bcc|'
                         r'warning|info|pass|filter): (?:header|body) .*)$')


def send_all(port):
    """Every case; returns the DATA replies in order."""
    replies = []
    for subject, rcpts, extra, body in CASES:
        with smtplib.SMTP('127.0.0.1', port, local_hostname='client.test', timeout=30) as s:
            s.ehlo('client.test')
            s.mail('sender@src.test')
            for r in rcpts:
                s.rcpt(r)
            code, resp = s.data(msg(subject, extra, body).encode())
            resp = re.sub(rb'queued as [0-9A-Za-z]+', b'queued as QID', resp)
            replies.append('%d %s' % (code, resp.decode()))
    return replies


def delivered(sink, n):
    got = sink.wait_messages(n, timeout=60)
    time.sleep(1)                       # nothing more is coming
    out = []
    for m in sink.messages:
        lines = m['data'].decode().split('\r\n')
        head = []
        for l in lines[:lines.index('')]:
            if l[:1] in ' \t' and head:
                head[-1] += '\n' + l
            else:
                head.append(l)
        head = [h for h in head if not h.startswith('Received:')]
        body = lines[lines.index('') + 1:]
        # Postfix sends ORCPT=rfc822;RCPT for every recipient (relayq only when
        # it differs from the recipient): not a matter of the checks.
        args = tuple(' '.join(w for w in a.split() if w.lower() != 'orcpt=rfc822;' + r.lower())
                     for r, a in zip(m['rcpts'], m['rcpt_args']))
        out.append((m['from'], tuple(m['rcpts']), args, tuple(head), tuple(body)))
    assert len(got) == len(out)
    return sorted(out)


def action_lines(text):
    return sorted(m.group(1) for m in (ACTION_LINE.search(l) for l in text.splitlines()) if m)


def write(env, name, text):
    path = os.path.join(env.dir, name)
    with open(path, 'w') as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def run_pair(env, htype, btype):
    hc = write(env, 'header_checks.' + htype, HEADER_CHECKS)
    bc = write(env, 'body_checks.' + btype, BODY_CHECKS)
    psink = env.pysink()
    rsink = env.pysink()
    common = dict(relay_domains='dest.test', header_checks='%s:%s' % (htype, hc),
                  body_checks='%s:%s' % (btype, bc))
    pf = Postfix(env, relayhost='[127.0.0.1]:%d' % psink.port, smtpd_error_sleep_time='0',
                 relay_transport='smtp', **common).start()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % rsink.port, **common)
    try:
        preplies = send_all(pf.port)
        rreplies = send_all(d.port)
        assert rreplies == preplies, '\n'.join('%s | %s' % x for x in zip(rreplies, preplies))
        ndeliv = 9
        pgot = delivered(psink, ndeliv)
        rgot = delivered(rsink, ndeliv)
        assert rgot == pgot, '\nrelayq:  %r\npostfix: %r' % (rgot, pgot)
        plines = action_lines(pf.log())
        rlines = action_lines(d.log())
        assert rlines == plines, '\nrelayq:\n%s\npostfix:\n%s' % ('\n'.join(rlines), '\n'.join(plines))
        # HOLD: on hold in both, not delivered.
        assert re.search(r'(?m)^[0-9A-F]+!', env.cli(d, 'mailq').stdout), env.cli(d, 'mailq').stdout
    finally:
        pf.stop()
        d.stop()
    return rreplies, rgot, rlines


def test_checks_same_as_postfix_regexp(env):
    replies, got, lines = run_pair(env, 'regexp', 'pcre')
    # What a user checks, whatever Postfix does:
    assert replies[0] == '550 5.7.1 no thanks', replies
    assert replies[1] == '550 5.7.1 message content rejected', replies
    assert replies[2] == '451 4.7.0 try later', replies
    assert replies[3] == '250 2.0.0 Ok: queued as QID', replies
    assert any('reject: header Subject: reject-me now from localhost[127.0.0.1]; from=<sender@src.test> '
               'to=<a@dest.test> proto=ESMTP helo=<client.test>: 5.7.1 no thanks' in l for l in lines), lines
    assert any(r[1] == ('redirected@dest.test',) for r in got), got


def test_checks_same_as_postfix_pcre(env):
    run_pair(env, 'pcre', 'regexp')


def test_checks_every_line_is_bounded(env):
    """/./ WARN on a big body: body_checks_size_limit bounds the lines
    logged (Postfix's rule), the message goes through intact."""
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, relay_domains='dest.test',
                    body_checks='regexp:{ {/./ WARN every line} }')
    body = ''.join('line %06d %s\r\n' % (i, 'x' * 60) for i in range(30000))   # ~2 MB
    env.send(d.port, 's@src.test', ['a@dest.test'], msg('big', '', body))
    m = sink.wait_messages(1, timeout=60)[0]
    assert m['data'].decode().endswith(body)
    n = len(re.findall(r'warning: body line', d.log()))
    assert 0 < n <= 51200 // 70 + 2, n


def test_checks_replace_longer_than_header_size_limit(env):
    sink = env.pysink()
    long = 'X-Long: ' + 'y' * 300
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, relay_domains='dest.test',
                    header_size_limit=200,
                    header_checks='regexp:{ {/^Subject: long/ REPLACE %s} }' % long)
    env.send(d.port, 's@src.test', ['a@dest.test'], msg('long'))
    data = sink.wait_messages(1)[0]['data'].decode()
    line = [l for l in data.split('\r\n') if l.startswith('X-Long:')][0]
    assert len(line) == 198 and line == long[:198], len(line)
    assert 'Subject: long' not in data
    d.wait_log(r'longer than header_size_limit')


def test_checks_table_error_defers(env):
    """A table that fails at lookup: 451 4.3.0, as Postfix's cleanup; the
    client keeps the message."""
    dead = free_port()
    d = env.relayqd(relay_domains='dest.test',
                    header_checks='socketmap:inet:127.0.0.1:%d:hc' % dead)
    try:
        env.send(d.port, 's@src.test', ['a@dest.test'], msg('x'))
        raise AssertionError('accepted')
    except AssertionError as e:
        assert 'DATA: 451' in str(e) and '4.3.0 Error: queue file write error' in str(e), e
    d.wait_log(r'warning: [0-9A-F]+: header_checks map lookup problem -- message not accepted, try again later')


def test_checks_broken_pattern(env):
    """A broken pattern: relayqd does not start (file and line named); at
    a reload the last good table stays and mail is still checked."""
    path = write(env, 'hc', '/^Subject: bad/ REJECT\n/(unclosed/ REJECT\n')
    d = env.relayqd(start=False, relay_domains='dest.test', header_checks='regexp:' + path)
    d.start(wait=False)
    assert d.proc.wait(20) != 0
    assert re.search(r'%s, line 2' % re.escape(path), d.stderr_text() + d.log()), d.stderr_text()
    write(env, 'hc', '/^Subject: bad/ REJECT\n')
    d.start()
    write(env, 'hc', '/^Subject: bad/ REJECT\n/(unclosed/ REJECT\n')
    d.hup()
    time.sleep(1.5)
    try:
        env.send(d.port, 's@src.test', ['a@dest.test'], msg('bad'))
        raise AssertionError('accepted')
    except AssertionError as e:
        assert 'DATA: 550' in str(e), e
    d.wait_log(r'line 2')


def test_checks_sendmail(env):
    """Mail from sendmail(1) is checked too: WARN logs "from local",
    REJECT bounces to the sender."""
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, relay_domains='dest.test, src.test',
                    header_checks='regexp:{ {/^Subject: warn-me/ WARN w}, {/^Subject: reject-me/ REJECT no} }')
    r = env.cli(d, '-f', 'sender@src.test', 'a@dest.test', input=msg('warn-me'), prog='sendmail')
    assert r.returncode == 0, r.stderr
    d.wait_log(r'warning: header Subject: warn-me from local; from=<sender@src.test> to=<a@dest.test>: w$')
    r = env.cli(d, '-f', 'sender@src.test', 'a@dest.test', input=msg('reject-me'), prog='sendmail')
    assert r.returncode == 0, r.stderr
    d.wait_log(r'reject: header Subject: reject-me from local; from=<sender@src.test> to=<a@dest.test>: 5.7.1 no$')
    got = sink.wait_messages(2, timeout=30)
    assert any(m['rcpts'] == ['sender@src.test'] and b'5.7.1' in m['data'] for m in got), got


SMTP_HEADER_CHECKS = r"""
/^Subject:.*smtp-warn/          WARN smtp warned
/^Subject:.*smtp-info/          INFO
/^Subject: (.*smtp-replace.*)/  REPLACE Subject: [out] $1
/^Subject:.*smtp-prepend/       PREPEND X-Out: yes
/^X-Internal:/                  STRIP
/^X-Secret:/                    IGNORE
/^Subject:.*smtp-reject/        REJECT not in smtp
/^X-Part-Marker:/               REPLACE X-Part-Marker: rewritten
"""
SMTP_BODY_CHECKS = r"""
/^internal-host: (.*)/          REPLACE internal-host: hidden
/^drop-this-line/               STRIP
"""
SMTP_CASES = [
    ('smtp-warn', '', 'hello\r\n'),
    ('smtp-info', '', 'hello\r\n'),
    ('a smtp-replace b', 'X-Internal: 10.0.0.1\r\nX-Secret: s\r\n', 'internal-host: db1\r\ndrop-this-line\r\nend\r\n'),
    ('smtp-prepend', '', 'hello\r\n'),
    ('smtp-reject', '', 'hello\r\n'),
    ('smtp multipart', MULTIPART[0], MULTIPART[1].replace('x-bad-type', 'octet-stream')),
]
SMTP_LINE = re.compile(r'/smtp\[\d+\]: [0-9A-F]{6,}: ((?:warning|info|replace|prepend|strip): (?:header|body) .*)$')
SMTP_WARN = re.compile(r'warning: (unsupported command in smtp_\w+ map: .*)$')


def test_smtp_checks_same_as_postfix(env):
    """smtp_header_checks, smtp_mime_header_checks (empty by default, as
    Postfix: a part's headers are not checked), smtp_body_checks: what
    the next hop gets, and the log lines, as Postfix's smtp(8)."""
    hc = write(env, 'smtp_header_checks', SMTP_HEADER_CHECKS)
    bc = write(env, 'smtp_body_checks', SMTP_BODY_CHECKS)
    psink = env.pysink()
    rsink = env.pysink()
    common = dict(relay_domains='dest.test', smtp_header_checks='pcre:' + hc,
                  smtp_body_checks='regexp:' + bc)
    pf = Postfix(env, relayhost='[127.0.0.1]:%d' % psink.port, relay_transport='smtp', **common).start()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % rsink.port, **common)
    try:
        for port in (pf.port, d.port):
            for subject, extra, body in SMTP_CASES:
                env.send(port, 'sender@src.test', ['a@dest.test'], msg(subject, extra, body))
        pgot = delivered(psink, len(SMTP_CASES))
        rgot = delivered(rsink, len(SMTP_CASES))
        assert rgot == pgot, '\nrelayq:  %r\npostfix: %r' % (rgot, pgot)
        plines = sorted(m.group(1) for m in map(SMTP_LINE.search, pf.log().splitlines()) if m)
        rlines = sorted(m.group(1) for m in map(SMTP_LINE.search, d.log().splitlines()) if m)
        assert rlines == plines, '\nrelayq:\n%s\npostfix:\n%s' % ('\n'.join(rlines), '\n'.join(plines))
        assert len(rlines) >= 6, rlines
        pw = sorted(m.group(1) for m in map(SMTP_WARN.search, pf.log().splitlines()) if m)
        rw = sorted(m.group(1) for m in map(SMTP_WARN.search, d.log().splitlines()) if m)
        assert rw == pw and rw, (rw, pw)
    finally:
        pf.stop()
        d.stop()
    assert any('Subject: [out] a smtp-replace b' in h for r in rgot for h in r[3]), rgot


def test_smtp_checks_table_error_defers(env):
    """A table that fails in the SMTP client: the delivery is deferred,
    nothing is sent, the message stays queued."""
    sink = env.pysink()
    dead = free_port()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, relay_domains='dest.test',
                    smtp_header_checks='socketmap:inet:127.0.0.1:%d:hc' % dead)
    env.send(d.port, 's@src.test', ['a@dest.test'], msg('x'))
    d.wait_log(r'warning: [0-9A-F]+: smtp header checks lookup error')
    d.wait_log(r'to=<a@dest.test>.*dsn=4\.3\.0, status=deferred \(smtp header or body checks lookup error\)')
    assert sink.messages == []


def filter_relayq(env, **params):
    """relayq with two master.cf listeners: `a` for mail in (content_filter
    applies) and `b` for mail back from the filter (-o content_filter=,
    no header/body checks, as Postfix's usual set-up); a small Python
    after-queue filter that adds a header and sends the mail back to `b`."""
    sink = env.pysink()
    a, b = free_port(), free_port()

    def refilter(envl):
        data = b'X-Filtered: by the test filter\r\n' + envl['data']
        with smtplib.SMTP('127.0.0.1', b, local_hostname='filter.test', timeout=30) as s:
            s.sendmail(envl['from'], envl['rcpts'], data)
        return '250 2.0.0 Ok: filtered'
    flt = env.pysink(replies={'dot': refilter})
    params = {k: (v % flt.port if isinstance(v, str) and '%d' in v else v) for k, v in params.items()}
    d = env.relayqd(start=False, relayhost='[127.0.0.1]:%d' % sink.port, relay_domains='dest.test',
                    smtpd_listen='127.0.0.1:%d' % a, **params)
    with open(os.path.join(d.confdir, 'master.cf'), 'w') as f:
        f.write('127.0.0.1:%d inet n - n - - smtpd\n' % a)
        f.write('127.0.0.1:%d inet n - n - - smtpd\n'
                '  -o content_filter=\n'
                '  -o receive_override_options=no_header_body_checks\n' % b)
    d.start()
    return d, sink, flt, a


def test_content_filter_round_trip(env):
    d, sink, flt, a = filter_relayq(env, content_filter='smtp:[127.0.0.1]:%d',
                                    header_checks='regexp:{ {/^Subject: reject-me/ REJECT no} }')
    env.send(a, 's@src.test', ['a@dest.test', 'b@dest.test'], msg('through the filter'))
    got = sink.wait_messages(1, timeout=30)
    assert got[0]['rcpts'] == ['a@dest.test', 'b@dest.test'], got
    assert b'X-Filtered: by the test filter\r\n' in got[0]['data'], got[0]['data']
    assert len(flt.messages) == 1
    d.wait_log(r'to=<a@dest.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*status=sent \(250 2\.0\.0 Ok: filtered\)'
               % flt.port)
    # The return listener does not check: the filter's copy is not rejected again.
    try:
        env.send(a, 's@src.test', ['a@dest.test'], msg('reject-me'))
        raise AssertionError('accepted')
    except AssertionError as e:
        assert 'DATA: 550' in str(e), e
    time.sleep(1)
    assert len(sink.messages) == 1 and len(flt.messages) == 1


def test_filter_action(env):
    """FILTER smtp:[host]:port in header_checks sends that message (only)
    through the filter, as Postfix's FILTER with content_filter unset."""
    d, sink, flt, a = filter_relayq(env, header_checks='regexp:{ {/^Subject: scan-me/ FILTER smtp:[127.0.0.1]:%d} }')
    env.send(a, 's@src.test', ['a@dest.test'], msg('plain'))
    env.send(a, 's@src.test', ['a@dest.test'], msg('scan-me'))
    got = sink.wait_messages(2, timeout=30)
    filtered = [m for m in got if b'X-Filtered:' in m['data']]
    assert len(filtered) == 1 and b'Subject: scan-me' in filtered[0]['data'], got
    d.wait_log(r': filter: header Subject: scan-me from localhost\[127\.0\.0\.1\]; from=<s@src\.test> '
               r'to=<a@dest\.test> proto=ESMTP helo=<client\.test>: smtp:\[127\.0\.0\.1\]:%d' % flt.port)


def test_filter_unknown_transport(env):
    """FILTER to a transport relayq does not have: a configuration error
    naming the table and line; content_filter likewise."""
    path = write(env, 'hc', '/^Subject: a/ WARN\n/^Subject: scan/ FILTER scan:[127.0.0.1]:10025\n')
    d = env.relayqd(start=False, relay_domains='dest.test', header_checks='regexp:' + path)
    d.start(wait=False)
    assert d.proc.wait(20) != 0
    out = d.stderr_text() + d.log()
    assert re.search(r'header_checks: %s, line 2: FILTER scan:\[127\.0\.0\.1\]:10025: relayq delivers to '
                     r'an after-queue content filter only over SMTP' % re.escape(path), out), out
    d2 = env.relayqd(start=False, relay_domains='dest.test', content_filter='amavis:[127.0.0.1]:10024')
    d2.start(wait=False)
    assert d2.proc.wait(20) != 0
    assert 'content_filter = amavis:[127.0.0.1]:10024: relayq delivers' in d2.stderr_text() + d2.log()
