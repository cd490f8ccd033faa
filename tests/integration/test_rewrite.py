"""Address rewriting (canonical maps, masquerading, automatic BCC, generic
maps): the same configuration and the same messages through a throw-away
Postfix and through relayq, compared at the next hop (a capture sink):
envelope sender, recipients, and every header but Received:.  Where relayq
differs on purpose, the test says so (docs/rewriting.md)."""
import email.parser
import os
import re
import smtplib
import subprocess
import time

from harness import BIN, Skip
from pfinstance import Postfix

# No DSN at the sink: Postfix sends ORCPT= for every recipient to a DSN server, relayq only
# when the client gave one (see docs/rewriting.md); the envelope comparison leaves that out.
SINK_EHLO = ['PIPELINING', 'SIZE 10240000', '8BITMIME', 'ENHANCEDSTATUSCODES']
MYORIGIN = 'origin.test'


def write_tables(env, name, tables):
    """tables: {param: (type, text)}.  Returns {param: 'type:path'}; hash tables
    are built with Postfix's postmap for Postfix and `relayq postmap` for relayq."""
    d = os.path.join(env.dir, 'tables-' + name)
    os.makedirs(d, exist_ok=True)
    out = {}
    for param, spec in tables.items():
        specs = spec if isinstance(spec, list) else [spec]
        out[param] = ', '.join(one_table(name, d, '%s-%d' % (param, i), typ, text)
                               for i, (typ, text) in enumerate(specs))
    return out


def one_table(name, d, base, typ, text):
    if True:
        path = os.path.join(d, base)
        with open(path, 'w') as f:
            f.write(text)
        if typ == 'hash':
            if name.startswith('pf'):
                conf = os.path.join(d, 'etc')
                os.makedirs(conf, exist_ok=True)
                open(os.path.join(conf, 'main.cf'), 'a').close()
                r = subprocess.run(['postmap', '-c', conf, 'hash:' + path], capture_output=True,
                                   text=True, timeout=60)
            else:
                r = subprocess.run([os.path.join(BIN, 'relayq'), 'postmap', 'hash:' + path],
                                   capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
        return '%s:%s' % (typ, path)


def send(port, sender, rcpts, msg, expect=250):
    with smtplib.SMTP('127.0.0.1', port, local_hostname='client.test', timeout=60) as s:
        s.ehlo('client.test')
        code, resp = s.mail(sender)
        assert code == 250, (code, resp)
        for r in rcpts:
            code, resp = s.rcpt(r)
            assert code == 250, (r, code, resp)
        code, resp = s.data(msg.encode())
        assert code == expect, (code, resp)
        return resp.decode()


def headers(data):
    """The header section as (name, raw value) pairs, Received: left out (it differs by nature)."""
    head = data.split(b'\r\n\r\n', 1)[0].decode('utf-8', 'replace')
    out = []
    for line in head.split('\r\n'):
        if line[:1] in (' ', '\t') and out:
            out[-1] = (out[-1][0], out[-1][1] + '\r\n' + line)
        elif ':' in line:
            n, v = line.split(':', 1)
            out.append((n, v))
    # What each MTA generates by nature: its own queue ID, host name and clock.
    out = [(n, re.sub(r'<\d{14}\.[0-9A-F]+@(pf\.test|mta\.relayq\.test)>', '<GENERATED>', v))
           for n, v in out]
    out = [(n, ' DATE' if n.lower() == 'resent-date' else v) for n, v in out]
    return [h for h in out if h[0].lower() != 'received']


def by_subject(msgs):
    """subject -> (sender, sorted recipients of every transaction, headers)."""
    got = {}
    for m in msgs:
        subj = email.parser.BytesHeaderParser().parsebytes(m['data'])['Subject']
        rcpts = got[subj][1] if subj in got else []
        got[subj] = (m['from'], sorted(rcpts + m['rcpts']), headers(m['data']))
    return got


def message(subject, head):
    return ('%s\r\nSubject: %s\r\nMessage-ID: <%s@client.test>\r\n'
            'Date: Tue, 1 Dec 2026 04:00:00 +0000\r\n\r\nbody of %s\r\n'
            % (head.replace('\n', '\r\n'), subject, subject, subject))


def run_both(env, settings, tables, cases, relayq_extra=None, tag=''):
    """cases: [(subject, sender, rcpts, header text)].  Returns (pf, d, pf_got, rq_got)."""
    sinks = {}
    got = {}
    daemons = {}
    for name in ('pf', 'rq'):
        sink = env.pysink(ehlo_lines=SINK_EHLO)
        sinks[name] = sink
        params = dict(settings, myorigin=MYORIGIN, relayhost='[127.0.0.1]:%d' % sink.port)
        params.update(write_tables(env, name + tag, tables))
        if name == 'pf':
            d = Postfix(env, name='pf' + tag, **params).start()
        else:
            params.update(relayq_extra or {})
            d = env.relayqd(**params)
        daemons[name] = d
        for subj, sender, rcpts, head in cases:
            send(d.port, sender, rcpts, message(subj, head))
        sink.wait_messages(len(cases), timeout=60)
        d.wait_log(r'removed', count=len(cases), timeout=60)    # every transaction done
        got[name] = by_subject(sink.messages)
    return daemons['pf'], daemons['rq'], got['pf'], got['rq']


def assert_same(pf_got, rq_got, differ=()):
    """Every message the same at the next hop, except the subjects in differ."""
    assert sorted(pf_got) == sorted(rq_got), (sorted(pf_got), sorted(rq_got))
    bad = []
    for subj in sorted(pf_got):
        if subj in differ:
            continue
        if pf_got[subj] != rq_got[subj]:
            bad.append('%s:\n postfix: %r\n relayq:  %r' % (subj, pf_got[subj], rq_got[subj]))
    assert not bad, '\n'.join(bad)


CANON_HASH = """\
root@host17.internal   alerts@example.com
@old.example           @new.example
user@ext.test          renamed@ext.test
loop1@x.test           loop2@x.test
loop2@x.test           loop1@x.test
joe@multi.test         a@multi.test, b@multi.test
bare@x.test            justaname
"""

SENDER_REGEXP = r"""/^(.*)@dept\.example$/     ${1}@example.com
/^nobody@empty\.test$/    <>
"""

RCPT_PCRE = r"""/^(.+)@rcpt-pcre\.test$/       pcre-$1@example.net
/^(h+)@huge\.test$/        $1$1$1$1$1$1$1$1$1$1$1$1$1$1$1$1$1$1$1$1@big.test
"""

CANON_CASES = [
    ('c1-basic', 'root@host17.internal', ['a@old.example', 'user+tag@ext.test'],
     'From: Root <root@host17.internal>\n'
     'To: a@old.example, "Quoted Name" <user+tag@ext.test>\n'
     'Cc: friends: a@old.example, b@other.test;, c@old.example (Comment)\n'
     'Reply-To: (comment first) root@host17.internal\n'
     'X-Other: root@host17.internal'),
    ('c2-regexp-sender', 'x@dept.example', ['y@other.test'],
     'From: x@dept.example\nSender: "Dept, X" <x@dept.example>\nTo: undisclosed-recipients:;\n'
     'Resent-From: x@dept.example\nResent-To: y@old.example\nErrors-To: x@dept.example'),
    ('c3-pcre-rcpt', 'someone@other.test', ['z@rcpt-pcre.test'],
     'From: someone@other.test\nTo: "z" <z@rcpt-pcre.test> (the z)\nApparently-To: z@rcpt-pcre.test'),
    ('c4-loop', 'loop1@x.test', ['loop2@x.test'],
     'From: loop1@x.test\nTo: loop2@x.test'),
    ('c5-encoded-words', 'root@host17.internal', ['q@other.test'],
     'From: =?UTF-8?B?w4lyaWM=?= <root@host17.internal>\n'
     'To: =?ISO-8859-1?Q?Andr=E9?= <a@old.example>, "quoted \\"inner\\" name" <b@old.example>'),
    ('c6-unqualified', 'root@host17.internal', ['q@other.test'],
     'From: root@host17.internal\nTo: bareuser, other@trailing.dot.\nCc: "john doe"@old.example'),
    ('c7-multi-value', 'joe@multi.test', ['q@other.test'], 'From: joe@multi.test\nTo: q@other.test'),
    ('c8-nondomain-result', 'bare@x.test', ['q@other.test'], 'From: bare@x.test\nTo: q@other.test'),
    ('c9-empty-result', 'nobody@empty.test', ['q@other.test'], 'From: nobody@empty.test\nTo: q@other.test'),
    ('c10-huge', 'root@host17.internal', ['%s@huge.test' % ('h' * 200)],
     'From: root@host17.internal\nTo: %s@huge.test' % ('h' * 200)),
    ('c11-untouched', 'keep@other.test', ['keep2@other.test'],
     'From:   Keep   Me <keep@other.test>\nTo: keep2@other.test,\n\tkeep3@other.test'),
    ('c12-long-list', 'root@host17.internal', ['q@other.test'],
     'From: root@host17.internal\nTo: ' + ', '.join('u%d@old.example' % i for i in range(1000))),
    ('c14-dropped-headers', 'root@host17.internal', ['q@other.test'],
     'Return-Path: <root@host17.internal>\nFrom: root@host17.internal\nTo: q@other.test\n'
     'Bcc: secret@old.example,\n  other-secret@old.example\nContent-Length: 12\nX-Keep: yes'),
    ('c13-quoted-envelope', 'root@host17.internal', ['"john doe"@old.example'],
     'From: root@host17.internal\nTo: "john doe"@old.example'),
]

CANON_TABLES = {
    'canonical_maps': ('hash', CANON_HASH),
    'sender_canonical_maps': ('regexp', SENDER_REGEXP),
    'recipient_canonical_maps': ('pcre', RCPT_PCRE),
}


def test_canonical_maps_same_as_postfix(env):
    pf, d, pf_got, rq_got = run_both(env, {'recipient_delimiter': '+'}, CANON_TABLES, CANON_CASES)
    if os.environ.get('RW_DUMP'):
        open(os.environ['RW_DUMP'], 'w').write(repr(pf_got))
    assert_same(pf_got, rq_got)
    # What the comparison stands on: the rewriting did happen.
    assert pf_got['c1-basic'][0] == 'alerts@example.com'
    assert pf_got['c1-basic'][1] == ['a@new.example', 'renamed+tag@ext.test']
    # message_drop_headers: Bcc: and Return-Path: do not leave, as from Postfix.
    names = [n.lower() for n, v in rq_got['c14-dropped-headers'][2]]
    assert 'bcc' not in names and 'return-path' not in names and 'x-keep' in names
    # orig_to= as Postfix logs it, for every rewritten recipient.
    for log in (pf.log(), d.log()):
        assert re.search(r'to=<renamed\+tag@ext\.test>, orig_to=<user\+tag@ext\.test>', log), log[-3000:]
        assert re.search(r'to=<a@new\.example>, orig_to=<a@old\.example>', log)
    # The warnings Postfix logs, word for word (the loop's message is still accepted, as Postfix does).
    for w in ('warning: QID: multi-valued canonical_maps entry for joe@multi.test',
              'warning: QID: unreasonable canonical_maps map nesting for loop1@x.test -- '
              'message not accepted, try again later'):
        rx = re.escape(w).replace('QID', '[0-9A-F]+')
        pf.wait_log(rx)
        d.wait_log(rx)


def test_canonical_lookup_error_is_a_temporary_failure(env):
    """A table that cannot be read at the moment (a .db file locked by a
    postmap rewriting it): the client gets Postfix's 451 4.3.0 and the
    warning names map and address; once the lock is gone the same message
    goes through, rewritten.  Nothing is queued half-rewritten."""
    import fcntl
    sink = env.pysink(ehlo_lines=SINK_EHLO)
    tables = write_tables(env, 'rq', {'canonical_maps': ('hash', CANON_HASH)})
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, **tables)
    msg = message('locked', 'From: root@host17.internal\nTo: a@old.example')
    with open(tables['canonical_maps'].split(':', 1)[1] + '.db', 'rb') as db:
        fcntl.flock(db, fcntl.LOCK_EX)
        resp = send(d.port, 'root@host17.internal', ['a@old.example'], msg, expect=451)
        assert '4.3.0 Error: queue file write error' in resp, resp
        d.wait_log(r'warning: [0-9A-F]+: canonical_maps map lookup problem for root@host17\.internal'
                   r' -- message not accepted, try again later')
        fcntl.flock(db, fcntl.LOCK_UN)
    send(d.port, 'root@host17.internal', ['a@old.example'], msg)
    got = sink.wait_messages(1)
    assert len(got) == 1 and got[0]['from'] == 'alerts@example.com' and got[0]['rcpts'] == ['a@new.example']
    assert b'From: alerts@example.com' in got[0]['data']


def test_bad_classes_value_is_refused_at_start(env):
    d = env.relayqd(start=False, canonical_classes='envelope_sender, header_sendr')
    d.start(wait=False)
    deadline = time.time() + 20
    while d.proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert d.proc.returncode not in (None, 0)
    assert 'invalid canonical_classes value: "header_sendr"' in d.stderr_text() + d.log()


def test_sendmail_mail_is_rewritten_too(env):
    """Mail from sendmail(1) (the maildrop) gets the same rewriting, headers
    included (local mail: a bare name gets @myorigin), and a lookup error
    leaves the file in the maildrop until the table can be read."""
    import fcntl
    sink = env.pysink(ehlo_lines=SINK_EHLO)
    tables = write_tables(env, 'rq', {'canonical_maps': ('hash', CANON_HASH)})
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, myorigin=MYORIGIN, **tables)
    text = 'From: Root <root@host17.internal>\nTo: a@old.example, bareuser\nSubject: local\n\nhi\n'
    db = open(tables['canonical_maps'].split(':', 1)[1] + '.db', 'rb')
    fcntl.flock(db, fcntl.LOCK_EX)
    r = env.cli(d, '-f', 'root@host17.internal', 'a@old.example', input=text, prog='sendmail')
    assert r.returncode == 0, r.stderr
    d.wait_log(r'warning: [0-9A-F]+: canonical_maps map lookup problem for root@host17\.internal')
    time.sleep(1)
    assert sink.messages == []
    fcntl.flock(db, fcntl.LOCK_UN)
    db.close()
    m = sink.wait_messages(1, timeout=40)[0]
    assert m['from'] == 'alerts@example.com' and m['rcpts'] == ['a@new.example'], m
    data = m['data'].decode()
    assert re.search(r'^From: Root <alerts@example\.com>\r$', data, re.M), data
    assert re.search(r'^To: a@new\.example, bareuser@origin\.test\r$', data, re.M), data
    d.wait_log(r'to=<a@new\.example>, orig_to=<a@old\.example>, .*status=sent')


MASQ_CASES = [
    ('m1-basic', 'user@host.example.com', ['x@host.example.com'],
     'From: User <user@host.example.com>\nTo: x@a.b.example.com, y@example.com\n'
     'Cc: root@host.example.com, z@other.test'),
    ('m2-exempt', 'u@deep.sub.keep.example', ['x@other.test'],
     'From: u@deep.sub.keep.example\nReply-To: u@other.keep.example\nTo: v@KEEP.example'),
    ('m3-exception', 'root@host.example.com', ['x@other.test'],
     'From: root@host.example.com\nSender: ROOT@host.example.com'),
    ('m4-canonical-first', 'alias@old.example', ['x@other.test'],
     'From: alias@old.example'),
]


def test_masquerade_same_as_postfix(env):
    settings = {'masquerade_domains': '!sub.keep.example, keep.example, example.com',
                'masquerade_exceptions': 'root'}
    tables = {'canonical_maps': ('hash', 'alias@old.example  someone@mail.example.com\n')}
    pf, d, pf_got, rq_got = run_both(env, settings, tables, MASQ_CASES)
    assert_same(pf_got, rq_got)
    # It did happen: the envelope sender is masqueraded, the envelope recipient
    # is not (masquerade_classes), an exempt subdomain and an exception stay.
    assert pf_got['m1-basic'][:2] == ('user@example.com', ['x@host.example.com'])
    assert pf_got['m2-exempt'][0] == 'u@deep.sub.keep.example'
    assert pf_got['m3-exception'][0] == 'root@host.example.com'
    assert pf_got['m4-canonical-first'][0] == 'someone@example.com'


def test_masquerade_classes_envelope_recipient(env):
    settings = {'masquerade_domains': 'example.com',
                'masquerade_classes': 'envelope_recipient'}
    cases = [('mc1', 'user@host.example.com', ['x@host.example.com'],
              'From: user@host.example.com\nTo: x@host.example.com')]
    pf, d, pf_got, rq_got = run_both(env, settings, {}, cases)
    assert_same(pf_got, rq_got)
    assert pf_got['mc1'][:2] == ('user@host.example.com', ['x@example.com'])


BCC_CASES = [
    ('b1-all', 'boss@corp.test', ['a@watched.test', 'b@other.test'], 'From: boss@corp.test\nTo: a@watched.test'),
    ('b2-duplicate', 'x@other.test', ['archive@arch.test', 'c@watched.test'], 'From: x@other.test'),
    ('b3-null-sender', '', ['d@watched.test'], 'From: MAILER-DAEMON@other.test'),
    ('b4-extension', 'boss+tag@corp.test', ['e+x@watched.test'], 'From: boss+tag@corp.test'),
]


def test_bcc_same_as_postfix(env):
    settings = {'always_bcc': 'archive@arch.test', 'recipient_delimiter': '+'}
    tables = {'sender_bcc_maps': ('hash', 'boss@corp.test  boss-copy@arch.test\n'),
              'recipient_bcc_maps': ('regexp', '/^(.*)@watched\\.test$/  watch-$1@arch.test\n'),
              'recipient_canonical_maps': ('hash', 'watch-a@arch.test  rewritten-watch@arch.test\n')}
    pf, d, pf_got, rq_got = run_both(env, settings, tables, BCC_CASES)
    assert_same(pf_got, rq_got)
    assert pf_got['b1-all'][1] == sorted(['a@watched.test', 'b@other.test', 'boss-copy@arch.test',
                                          'rewritten-watch@arch.test', 'archive@arch.test'])


GENERIC_CASES = [
    ('g1-hash', 'root@host17.internal', ['a@local.lan', 'keep@other.test'],
     'From: Root <root@host17.internal>\nTo: a@local.lan, "x" <keep@other.test>\n'
     'Cc: b@local.lan (the b), group: c@local.lan;\nX-Other: a@local.lan'),
    ('g2-regexp', 'u@old-re.test', ['v@other.test'],
     'From: u@old-re.test\nReply-To: "U, the user" <u@old-re.test>\nTo: v@other.test'),
    ('g3-pcre', 'w@other.test', ['x@pcre.lan'], 'From: w@other.test\nTo: x@pcre.lan (X)'),
    ('g4-same', 'same@other.test', ['v@other.test'], 'From:   Same    <same@other.test>\nTo: v@other.test'),
    ('g5-long', 'w@other.test', ['v@other.test'],
     'From: w@other.test\nTo: ' + ', '.join('u%d@local.lan' % i for i in range(1000))),
    ('g6-extension', 'root+cron@host17.internal', ['d+tag@local.lan'],
     'From: root+cron@host17.internal\nTo: d+tag@local.lan'),
]

GENERIC_TABLES = {'smtp_generic_maps': [
    ('hash', 'root@host17.internal  alerts@example.com\n@local.lan  @example.com\n'
             'same@other.test  same@other.test\n'),
    ('regexp', '/^(.*)@old-re\\.test$/  $1@new-re.test\n'),
    ('pcre', '/^(.*)@pcre\\.lan$/  pcre-$1@example.net\n'),
]}


def test_generic_maps_same_as_postfix(env):
    pf, d, pf_got, rq_got = run_both(env, {'recipient_delimiter': '+'}, GENERIC_TABLES, GENERIC_CASES)
    assert_same(pf_got, rq_got)
    assert pf_got['g1-hash'][:2] == ('alerts@example.com', ['a@example.com', 'keep@other.test'])
    # The extension: not propagated to a full-address result (generic is not in
    # propagate_unmatched_extensions), kept by an @domain result.
    assert pf_got['g6-extension'][:2] == ('alerts@example.com', ['d+tag@example.com'])
    # The queue holds the message as it came: the log names the queued addresses, as Postfix's.
    for log in (pf.log(), d.log()):
        assert re.search(r'to=<a@local\.lan>, relay=', log), log[-2000:]
        assert not re.search(r'orig_to=<a@local\.lan>', log)


def test_generic_maps_lookup_error_defers(env):
    """A generic map that cannot be read: the delivery is deferred (Postfix's
    smtp(8) dies and its queue manager defers), nothing is sent with the
    address unmapped; once readable, the message goes out rewritten."""
    import fcntl
    sink = env.pysink(ehlo_lines=SINK_EHLO)
    tables = write_tables(env, 'rq', {'smtp_generic_maps': ('hash', 'root@host17.internal  alerts@example.com\n')})
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, queue_run_delay='1s', minimal_backoff_time='1s',
                    maximal_backoff_time='2s', **tables)
    db = open(tables['smtp_generic_maps'].split(':', 1)[1] + '.db', 'rb')
    fcntl.flock(db, fcntl.LOCK_EX)
    send(d.port, 'root@host17.internal', ['a@other.test'], message('generr', 'From: root@host17.internal'))
    d.wait_log(r'warning: [0-9A-F]+: smtp_generic_maps map lookup problem for root@host17\.internal')
    d.wait_log(r'to=<a@other\.test>, relay=.*status=deferred \(unknown mail transport error\)')
    assert sink.messages == []
    fcntl.flock(db, fcntl.LOCK_UN)
    db.close()
    m = sink.wait_messages(1, timeout=60)[0]
    assert m['from'] == 'alerts@example.com'
    assert b'From: alerts@example.com' in m['data']


REMOTE_CASES = [
    ('r1-remote', 'root@host17.internal', ['a@old.example'],
     'From: Root <root@host17.internal>\nTo: a@old.example, bareuser\nCc: other@trailing.dot.'),
]


def test_remote_clients_headers_as_postfix(env):
    """A client outside local_header_rewrite_clients: without
    remote_header_rewrite_domain its headers are left alone (the envelope is
    still rewritten); with it, they are rewritten and bare names get that
    domain.  Both as Postfix."""
    tables = {'canonical_maps': ('hash', CANON_HASH)}
    pf, d, pf_got, rq_got = run_both(env, {'local_header_rewrite_clients': ''}, tables, REMOTE_CASES)
    assert_same(pf_got, rq_got)
    frm, rcpts, hdrs = pf_got['r1-remote']
    assert (frm, rcpts) == ('alerts@example.com', ['a@new.example'])
    assert ('From', ' Root <root@host17.internal>') in hdrs
    pf.stop()
    d.stop()
    pf, d, pf_got, rq_got = run_both(env, {'local_header_rewrite_clients': '',
                                           'remote_header_rewrite_domain': 'remote.example'},
                                     tables, REMOTE_CASES, tag='2')
    assert_same(pf_got, rq_got)
    assert ('To', ' a@new.example, bareuser@remote.example') in pf_got['r1-remote'][2]


PLAIN_CASES = [
    ('p1-plain', 'plain@host.test', ['q@other.test'],
     'From: Plain Name <plain@host.test>\nTo: x@y.test, Two Words <tw@z.test>,\n\tthird@w.test\n'
     'Reply-To: J. Smith <j@x.test>\nSender: =?UTF-8?B?w4lyaWM=?= <e@x.test>'),
    ('p2-almost-plain', 'plain@host.test', ['q@other.test'],
     'From: a@b.test c@d.test\nTo: x <a@b.test> y, bare\nCc: a@b.test,\n'
     'Reply-To: a@b.test.\nResent-To: Name <user>\nResent-Cc: <a@b.test>, , c@d.test\n'
     'Errors-To: <a@b.test.>, x.<y@z.test>\nResent-From: <>, <a@b.test>'),
    ('p3-crlf-inside', 'plain@host.test', ['q@other.test'],
     'From: user\n\t@example.test\nTo: Folded\n Name\n <f@x.test>'),
]


def test_no_maps_headers_same_as_postfix(env):
    """With no map, no masquerading (relay-bench's configuration) header
    addresses are only qualified: plain lists are left alone without being
    parsed, anything else still goes through the parser.  Local and remote
    clients, with and without remote_header_rewrite_domain, as Postfix."""
    cases = PLAIN_CASES + CANON_CASES + REMOTE_CASES
    pf, d, pf_got, rq_got = run_both(env, {}, {}, cases)
    assert_same(pf_got, rq_got)
    assert ('To', ' x <a@b.test>, y@%s, bare@%s' % (MYORIGIN, MYORIGIN)) in pf_got['p2-almost-plain'][2]
    pf.stop()
    d.stop()
    pf, d, pf_got, rq_got = run_both(env, {'local_header_rewrite_clients': '',
                                           'remote_header_rewrite_domain': 'remote.example'},
                                     {}, cases, tag='2')
    # A remote client with remote_header_rewrite_domain set gets the missing
    # Resent-Message-Id:/Resent-Date: added, as a local one does.
    assert_same(pf_got, rq_got)
    assert ('Resent-Message-Id', ' <GENERATED>') in rq_got['p2-almost-plain'][2]
    assert any(k == 'To' and 'bare@remote.example' in v for k, v in pf_got['p2-almost-plain'][2])


def test_rewritten_recipient_keeps_its_original(env):
    """orig_to= shows the address the client gave, and a DSN server gets it
    as ORCPT (xtext: "+" is "+2B", so "+ab" is not read as an escape); an
    ORCPT the client gave is kept as it was."""
    sink = env.pysink()                      # offers DSN
    tables = write_tables(env, 'rq', {'canonical_maps': ('hash', CANON_HASH)})
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, recipient_delimiter='+', **tables)
    send(d.port, 'x@other.test', ['user+ab@ext.test'], message('orcpt1', 'From: x@other.test'))
    with smtplib.SMTP('127.0.0.1', d.port, local_hostname='client.test', timeout=60) as s:
        s.ehlo('client.test')
        s.mail('x@other.test')
        code, _ = s.rcpt('a@old.example', ['ORCPT=rfc822;given+2Bx@orig.test'])
        assert code == 250
        code, _ = s.data(message('orcpt2', 'From: x@other.test').encode())
        assert code == 250
    got = {m['rcpts'][0]: m for m in sink.wait_messages(2)}
    assert got['renamed+ab@ext.test']['rcpt_args'] == ['ORCPT=rfc822;user+2Bab@ext.test'], got
    assert got['a@new.example']['rcpt_args'] == ['ORCPT=rfc822;given+2Bx@orig.test'], got
    d.wait_log(r'to=<renamed\+ab@ext\.test>, orig_to=<user\+ab@ext\.test>, .*status=sent')
    d.wait_log(r'to=<a@new\.example>, orig_to=<given\+x@orig\.test>, .*status=sent')
