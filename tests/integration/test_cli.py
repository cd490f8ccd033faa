"""The queue tools as an administrator uses them, against the real daemon:
mailq (text byte for byte in Postfix's layout, and -j), the postsuper-like
commands (hold, release, delete, requeue, expire, flush; through the daemon
and, with the daemon down, on the queue directly), sendmail (plain, -t,
cron-style, s-nail), qshape, Nagios' check_mailq, `config --check`/`check`,
and what an unprivileged user may and may not do.

Every change is checked where an administrator would look: the command's
own output, mailq, the log, and the queue database (sqlite3 on queue.db,
docs/queue-format.md)."""
import json
import os
import re
import shutil
import subprocess
import time

import harness
from harness import BIN, free_port

# `nobody` by number: the harness passes the same name to --reuid and
# --regid, and Debian's nobody is in group nogroup, so the name fails.
NOBODY = '65534'

# Timers long enough that nothing is retried while a test looks at the queue.
SLOW = dict(queue_run_delay='1h', minimal_backoff_time='1h', maximal_backoff_time='2h')

STATE = {0: 'incoming', 1: 'active', 2: 'deferred', 3: 'hold', 4: 'corrupt'}
JSON_KEYS = ['queue_name', 'queue_id', 'arrival_time', 'message_size', 'forced_expire', 'sender',
             'recipients', 'attempts', 'next_eligible_time', 'next_attempt_time', 'expire_time',
             'destination_dead']
DOWN_WARNING = 'relayq: warning: Mail system is down -- accessing queue directly\n'


def body(subject, text='hello\r\n'):
    return 'From: someone@sender.test\r\nSubject: %s\r\n\r\n%s' % (subject, text)


def dead_port(d):
    return int(d.params['relayhost'].rsplit(':', 1)[1])


def refused(d):
    return 'connect to 127.0.0.1[127.0.0.1]:%d: Connection refused' % dead_port(d)


def sql(d, query):
    """Rows of a query on the queue database, as lists of strings."""
    r = subprocess.run(['sqlite3', '-separator', '|', os.path.join(d.queue_dir, 'queue.db'), query],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return [l.split('|') for l in r.stdout.splitlines()]


def db_state(d, qid):
    rows = sql(d, "select state from msg where qid='%s'" % qid)
    return STATE[int(rows[0][0])] if rows else None


def mailq_json(env, d, **kw):
    r = env.cli(d, 'mailq', '-j', **kw)
    assert r.returncode == 0, r.stdout + r.stderr
    recs = [json.loads(l) for l in r.stdout.splitlines()]
    return {x['queue_id']: x for x in recs}, r


def text_entry(qid, flag, rec, rcpts):
    """One message in Postfix's mailq layout; rcpts: [(address, reason)]."""
    out = '%-11s %7ld %20.20s %s\n' % (qid + flag, rec['message_size'],
                                        time.asctime(time.localtime(rec['arrival_time'])),
                                        rec['sender'] or 'MAILER-DAEMON')
    prev = ''
    for addr, reason in rcpts:
        if reason != prev:
            out += ' ' * max(0, 76 - len(reason)) + '(' + reason + ')\n'
            prev = reason
        out += ' ' * 41 + addr + '\n'
    return out


def text_queue(entries, sizes):
    head = '-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n'
    n = len(entries)
    return head + '\n'.join(entries) + '\n-- %d Kbytes in %d Request%s.\n' % (
        sum(sizes) // 1024, n, '' if n == 1 else 's')


def three_deferred(env, d):
    """a@sender.test -> 2 recipients, <> -> 1, c@sender.test -> other.test; all deferred."""
    t0 = int(time.time())
    a = env.send(d.port, 'a@sender.test', ['r1@dest.test', 'r2@dest.test'], body('two'))
    b = env.send(d.port, '', ['r3@dest.test'], body('bounce-like', 'x' * 300 + '\r\n'))
    c = env.send(d.port, 'c@sender.test', ['r4@other.test'], body('other'))
    t1 = int(time.time()) + 1
    d.wait_log(r'status=deferred', count=4)
    for q in (a, b, c):
        d.wait_log(r'%s: to=<.*status=deferred' % q)
    assert a and b and c
    return a, b, c, t0, t1


def wait_not_active(env, d, ids, timeout=10):
    """mailq -j until none of ids is active (the deferral is logged just before the queue update lands)."""
    deadline = time.time() + timeout
    while True:
        recs, _ = mailq_json(env, d)
        if all(recs.get(q, {}).get('queue_name') not in ('active', 'incoming') for q in ids):
            return recs
        assert time.time() < deadline, recs
        time.sleep(0.1)


# ---- 1. mailq text ----

def test_mailq_text_byte_for_byte(env):
    d = env.relayqd(**SLOW)
    for prog in ('relayq', 'mailq'):
        r = env.cli(d, 'mailq', check=True) if prog == 'relayq' else env.cli(d, prog=prog, check=True)
        assert r.stdout == 'Mail queue is empty\n', (prog, r.stdout)
        assert r.stderr == '', (prog, r.stderr)

    a, b, c, t0, t1 = three_deferred(env, d)
    r = env.cli(d, 'hold', c, check=True)
    d.wait_log(r'relayq/postsuper\[\d+\]: %s: placed on hold' % c)
    recs = wait_not_active(env, d, [a, b, c])
    assert recs[c]['queue_name'] == 'hold', recs[c]
    for q in (a, b, c):
        assert t0 <= recs[q]['arrival_time'] <= t1, (recs[q], t0, t1)
        assert str(recs[q]['message_size']) == sql(d, "select size from msg where qid='%s'" % q)[0][0]
    why = refused(d)
    # Queue order: deferred (in arrival order), then hold.
    entries = [text_entry(a, '', recs[a], [('r1@dest.test', why), ('r2@dest.test', why)]),
               text_entry(b, '', dict(recs[b], sender=''), [('r3@dest.test', why)]),
               text_entry(c, '!', recs[c], [('r4@other.test', why)])]
    want = text_queue(entries, [recs[q]['message_size'] for q in (a, b, c)])
    assert 'MAILER-DAEMON' in want and '!' in want
    r = env.cli(d, 'mailq', check=True)
    assert r.stdout == want, 'got:\n%s\nwant:\n%s' % (r.stdout, want)
    assert r.stderr == ''
    r = env.cli(d, prog='mailq', check=True)
    assert r.stdout == want, 'bin/mailq (argv[0] dispatch) differs:\n%s' % r.stdout
    # sendmail -bp is mailq too
    r = env.cli(d, '-bp', prog='sendmail', check=True)
    assert r.stdout == want, 'sendmail -bp differs:\n%s' % r.stdout
    # every line ends where Postfix puts it: reasons end in column 78, recipients start at 42
    for line in r.stdout.splitlines():
        if line.strip().startswith('('):
            assert len(line) == 78 and line.endswith(')'), repr(line)
        elif line.startswith(' ' * 41):
            assert line[41] != ' ', repr(line)


def test_mailq_long_reason_and_kbytes(env):
    """Kbytes is the integer sum/1024 over all messages; a reason of 76 characters
    or more (a suspended destination's) starts in column 0."""
    d = env.relayqd(**SLOW)
    big = 'y' * 75 + '\r\n'
    ids = [env.send(d.port, 's@sender.test', ['rcpt%d@dest.test' % i], body('big %d' % i, big * 8))
           for i in range(8)]
    d.wait_log(r'status=deferred', count=8)
    wait_not_active(env, d, ids)
    # all at once to the dead hop: it is declared dead and the rest suspended
    env.cli(d, 'flush', check=True)
    d.wait_log(r'status=deferred \(delivery temporarily suspended: %s\)' % re.escape(refused(d)), count=3)
    deadline = time.time() + 15
    while True:
        recs = wait_not_active(env, d, ids)
        if all(recs[q]['attempts'] == 2 for q in ids):
            break
        assert time.time() < deadline, recs
        time.sleep(0.1)
    total = sum(recs[q]['message_size'] for q in ids)
    assert total >= 4096, total
    r = env.cli(d, 'mailq', check=True)
    assert r.stdout.endswith('\n-- %d Kbytes in 8 Requests.\n' % (total // 1024)), r.stdout
    want = text_queue([text_entry(q, '', recs[q], [(x['address'], x['delay_reason']) for x in recs[q]['recipients']])
                       for q in ids], [recs[q]['message_size'] for q in ids])
    assert r.stdout == want, 'got:\n%s\nwant:\n%s' % (r.stdout, want)
    assert re.search(r'^\(delivery temporarily suspended: %s\)$' % re.escape(refused(d)), r.stdout, re.M), r.stdout
    assert re.search(r'^ {19}\(%s\)$' % re.escape(refused(d)), r.stdout, re.M), r.stdout


# ---- 2. mailq -j ----

def test_mailq_json_fields(env):
    d = env.relayqd(queue_run_delay='300s', minimal_backoff_time='1000s', maximal_backoff_time='4000s',
                    maximal_queue_lifetime='2h', bounce_queue_lifetime='1h')
    started = int(time.time())
    a, b, c, t0, t1 = three_deferred(env, d)
    env.cli(d, 'hold', c, check=True)
    d.wait_log(r'%s: placed on hold' % c)
    recs, r = mailq_json(env, d)
    assert r.stderr == ''
    assert len(r.stdout.splitlines()) == 3 and r.stdout.endswith('}\n')
    # Postfix's separators
    for line in r.stdout.splitlines():
        assert line.startswith('{"queue_name": "'), line
        assert '", "queue_id": "' in line
    why = refused(d)
    want_rcpts = {a: ['r1@dest.test', 'r2@dest.test'], b: ['r3@dest.test'], c: ['r4@other.test']}
    for q in (a, b, c):
        rec = recs[q]
        assert list(rec.keys()) == JSON_KEYS, list(rec.keys())
        assert rec['queue_name'] == ('hold' if q == c else 'deferred'), rec
        assert rec['queue_id'] == q
        assert isinstance(rec['arrival_time'], int) and t0 <= rec['arrival_time'] <= t1, rec
        assert rec['message_size'] == int(sql(d, "select size from msg where qid='%s'" % q)[0][0])
        assert rec['forced_expire'] is False
        assert rec['sender'] == {a: 'a@sender.test', b: 'MAILER-DAEMON', c: 'c@sender.test'}[q]
        assert [list(x.keys()) for x in rec['recipients']] == [['address', 'delay_reason']] * len(want_rcpts[q])
        assert [x['address'] for x in rec['recipients']] == want_rcpts[q]
        assert all(x['delay_reason'] == why for x in rec['recipients']), rec
        assert rec['attempts'] == 1, rec
        create, eligible = [int(v) for v in sql(d, "select create_time, next_eligible from msg where qid='%s'" % q)[0]]
        assert t0 <= create <= t1
        assert rec['next_eligible_time'] == eligible
        # first backoff: minimal_backoff_time after the failed attempt
        assert 1000 <= rec['next_eligible_time'] - create <= 1002, (rec, create)
        # 2h for a sender, bounce_queue_lifetime (1h) for <>
        lifetime = 3600 if q == b else 7200
        assert abs(rec['expire_time'] - (create + lifetime)) <= 1, (rec, create, lifetime)
        assert rec['destination_dead'] is False, rec
        if q == c:
            assert rec['next_attempt_time'] is None, 'a held message has no next attempt: %s' % rec
        else:
            # the queue run (every 300 s from the daemon's start) that takes it
            nat = rec['next_attempt_time']
            assert isinstance(nat, int) and nat >= rec['next_eligible_time'] - 1, rec
            assert nat - rec['next_eligible_time'] <= 301, rec
            phase = (nat - started) % 300
            assert phase <= 2 or phase >= 298, (nat, started, phase)
    # a ' " \ in an address is JSON-escaped, not passed raw
    q = env.send(d.port, '"odd\\"name"@sender.test', ['x@dest.test'], body('quoted'))
    d.wait_log(r'%s: to=<x@dest\.test>.*status=deferred' % q)
    recs, r = mailq_json(env, d)
    assert recs[q]['sender'] == '"odd\\"name"@sender.test', recs[q]


# ---- 3. admin commands through the daemon ----

def test_admin_hold_release_delete(env):
    d = env.relayqd(**SLOW)
    a, b, c, _, _ = three_deferred(env, d)
    wait_not_active(env, d, [a, b, c])

    r = env.cli(d, 'hold', a)
    assert r.returncode == 0 and r.stderr == 'relayq: Placed on hold: 1 message\n', r
    d.wait_log(r'relayq/postsuper\[\d+\]: %s: placed on hold$' % a)
    assert db_state(d, a) == 'hold'
    assert re.search(r'^%s!\s' % a, env.cli(d, 'mailq').stdout, re.M)
    assert mailq_json(env, d)[0][a]['queue_name'] == 'hold'
    # again: nothing to do
    r = env.cli(d, 'hold', a)
    assert r.returncode == 0 and 'Placed on hold: 0 messages' in r.stderr, r
    assert len(re.findall(r'%s: placed on hold' % a, d.log())) == 1

    r = env.cli(d, 'release', a)
    assert r.returncode == 0 and r.stderr == 'relayq: Released from hold: 1 message\n', r
    d.wait_log(r'relayq/postsuper\[\d+\]: %s: released from hold$' % a)
    assert db_state(d, a) == 'deferred'
    out = env.cli(d, 'mailq').stdout
    assert re.search(r'^%s \s' % a, out, re.M) and '%s!' % a not in out, out

    r = env.cli(d, 'delete', b)
    assert r.returncode == 0 and r.stderr == 'relayq: Deleted: 1 message\n', r
    d.wait_log(r'relayq/postsuper\[\d+\]: %s: removed$' % b)
    assert b not in env.cli(d, 'mailq').stdout
    assert db_state(d, b) is None
    assert sql(d, "select count(*) from rcpt r join msg m using(seq) where m.qid='%s'" % b) == [['0']]

    # a typo is reported, the rest is done
    r = env.cli(d, 'hold', 'ABCDEF12345', c)
    assert r.returncode == 0, r
    assert 'relayq: ABCDEF12345: no such message\n' in r.stderr and 'Placed on hold: 1 message' in r.stderr, r
    d.wait_log(r'%s: placed on hold' % c)
    # not a queue ID at all
    r = env.cli(d, 'hold', 'x;y')
    assert r.returncode != 0 and 'invalid queue ID' in r.stderr, r

    # "-": IDs on standard input
    r = env.cli(d, 'release', '-', input='%s\n%s\n' % (a, c))
    assert r.returncode == 0 and 'Released from hold: 1 message' in r.stderr, r   # a is not held
    d.wait_log(r'%s: released from hold' % c)
    r = env.cli(d, 'hold', '-', input='%s\n\n%s\n' % (a, c))
    assert r.returncode == 0 and 'Placed on hold: 2 messages' in r.stderr, r
    d.wait_log(r'%s: placed on hold' % a, count=2)
    assert db_state(d, a) == 'hold' and db_state(d, c) == 'hold'

    # ALL
    r = env.cli(d, 'release', 'ALL')
    assert r.returncode == 0 and 'Released from hold: 2 messages' in r.stderr, r
    assert db_state(d, a) == 'deferred' and db_state(d, c) == 'deferred'
    r = env.cli(d, 'delete', 'ALL')
    assert r.returncode == 0 and 'Deleted: 2 messages' in r.stderr, r
    d.wait_log(r'%s: removed' % a)
    d.wait_log(r'%s: removed' % c)
    assert env.cli(d, 'mailq').stdout == 'Mail queue is empty\n'
    deadline = time.time() + 5
    while sql(d, 'select count(*) from msg') != [['0']]:
        assert time.time() < deadline, sql(d, 'select qid, state from msg')
        time.sleep(0.1)
    # and it stays deleted after a restart
    d.stop()
    d.start()
    assert env.cli(d, 'mailq').stdout == 'Mail queue is empty\n'


def test_admin_requeue(env):
    d = env.relayqd(**SLOW)
    a = env.send(d.port, 'a@sender.test', ['r1@dest.test'], body('requeue me'))
    d.wait_log(r'%s: to=<r1@dest\.test>.*status=deferred' % a)
    before = wait_not_active(env, d, [a])[a]
    assert before['attempts'] == 1
    r = env.cli(d, 'requeue', a)
    assert r.returncode == 0 and 'Requeued: 1 message' in r.stderr, r
    new = d.wait_log(r'relayq/postsuper\[\d+\]: %s: requeued as ([0-9A-F]+)$' % a)[0].group(1)
    assert new != a
    # the new ID is delivered (attempted) at once, as a new arrival
    d.wait_log(r'%s: from=<a@sender\.test>, size=\d+, nrcpt=1 \(queue active\)' % new)
    d.wait_log(r'%s: to=<r1@dest\.test>.*status=deferred' % new)
    recs = wait_not_active(env, d, [new])
    assert a not in recs and new in recs, recs
    assert db_state(d, a) is None and db_state(d, new) == 'deferred'
    rec = recs[new]
    assert rec['arrival_time'] == before['arrival_time'], (rec, before)      # arrival kept
    assert rec['message_size'] == before['message_size']
    assert rec['attempts'] == 1, rec                                          # counted anew
    out = env.cli(d, 'mailq').stdout
    assert re.search(r'^%s\s' % new, out, re.M) and a not in out, out


def test_admin_expire(env):
    sink = env.pysink()
    d = env.relayqd(transport_maps='inline:{ sender.test=smtp:[127.0.0.1]:%d }' % sink.port, **SLOW)
    a = env.send(d.port, 'alice@sender.test', ['bob@dest.test'], body('expire me'))
    b = env.send(d.port, '', ['carol@dest.test'], body('null sender'))
    d.wait_log(r'%s: to=<bob@dest\.test>.*status=deferred' % a)
    d.wait_log(r'%s: to=<carol@dest\.test>.*status=deferred' % b)
    wait_not_active(env, d, [a, b])
    r = env.cli(d, 'expire', a, b)
    assert r.returncode == 0 and 'Marked for expiry: 2 messages' in r.stderr, r
    d.wait_log(r'relayq/postsuper\[\d+\]: %s: marked for forced expiry$' % a)
    d.wait_log(r'relayq/postsuper\[\d+\]: %s: marked for forced expiry$' % b)
    recs, _ = mailq_json(env, d)
    assert recs[a]['forced_expire'] is True and recs[b]['forced_expire'] is True, recs
    out = env.cli(d, 'mailq').stdout
    assert re.search(r'^%s#\s' % a, out, re.M) and re.search(r'^%s#\s' % b, out, re.M), out
    assert sql(d, "select flags & 2 from msg where qid='%s'" % a) == [['2']]
    # at the next attempt (flush: now), expired without a delivery attempt
    env.cli(d, 'flush', check=True)
    d.wait_log(r'relayq/qmgr\[\d+\]: %s: from=<alice@sender\.test>, status=force-expired, returned to sender' % a)
    d.wait_log(r'relayq/qmgr\[\d+\]: %s: from=<>, status=force-expired, returned to sender' % b)
    notice = d.wait_log(r'%s: sender non-delivery notification: (\w+)' % a)[0].group(1)
    d.wait_log(r'%s: to=<alice@sender\.test>, relay=127\.0\.0\.1.*status=sent' % notice)
    d.wait_log(r'%s: removed' % a)
    d.wait_log(r'%s: removed' % b)
    msgs = sink.wait_messages(1)
    assert msgs[0]['from'] == '' and msgs[0]['rcpts'] == ['alice@sender.test'], msgs[0]
    assert b'Undelivered Mail Returned to Sender' in msgs[0]['data']
    time.sleep(1)
    assert len(sink.messages) == 1, 'no notice for the null sender'
    assert 'notification' not in ''.join(l for l in d.log().splitlines() if b in l)
    assert env.cli(d, 'mailq').stdout == 'Mail queue is empty\n'


def test_flush_all_and_by_domain(env):
    port = free_port()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % port, **SLOW)
    x1 = env.send(d.port, 's@sender.test', ['a@dest.test'], body('d1'))
    x2 = env.send(d.port, 's@sender.test', ['b@dest.test'], body('d2'))
    y = env.send(d.port, 's@sender.test', ['c@other.test', 'd@third.test'], body('o'))
    d.wait_log(r'status=deferred', count=4)
    wait_not_active(env, d, [x1, x2, y])
    sink = env.pysink(port=port)              # the next hop is back
    time.sleep(1)
    assert sink.messages == [], 'delivered before a flush with queue_run_delay=1h'

    r = env.cli(d, 'flush', 'other.test')
    assert r.returncode == 0 and r.stdout == 'Flushing 1 message for other.test\n', r
    d.wait_log(r'%s: to=<c@other\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d.*status=sent' % (y, port))
    msgs = sink.wait_messages(1)
    assert sorted(msgs[0]['rcpts']) == ['c@other.test', 'd@third.test'], msgs[0]
    d.wait_log(r'%s: removed' % y)
    time.sleep(1)
    assert len(sink.messages) == 1, [m['rcpts'] for m in sink.messages]
    out = env.cli(d, 'mailq').stdout
    assert x1 in out and x2 in out and y not in out, out
    r = env.cli(d, 'flush', 'nowhere.test')
    assert r.returncode == 0 and r.stdout == 'Flushing 0 messages for nowhere.test\n', r

    r = env.cli(d, 'flush')
    assert r.returncode == 0, r
    sink.wait_messages(3)
    d.wait_log(r'%s: removed' % x1)
    d.wait_log(r'%s: removed' % x2)
    assert env.cli(d, 'mailq').stdout == 'Mail queue is empty\n'
    # sendmail -q is flush too
    r = env.cli(d, '-q', prog='sendmail')
    assert r.returncode == 0, r


# ---- 4. daemon down ----

def test_daemon_down(env):
    d = env.relayqd(**SLOW)
    a, b, c, _, _ = three_deferred(env, d)
    up_json = wait_not_active(env, d, [a, b, c])
    up_text = env.cli(d, 'mailq', check=True).stdout
    d.stop()

    r = env.cli(d, 'mailq')
    assert r.returncode == 0, r
    assert r.stderr == DOWN_WARNING, r.stderr
    assert r.stdout == up_text, 'offline mailq differs:\n%s\nvs\n%s' % (r.stdout, up_text)
    r = env.cli(d, prog='mailq')
    assert r.returncode == 0 and r.stdout == up_text and 'Mail system is down' in r.stderr, r
    down_json, r = mailq_json(env, d)
    assert r.stderr == DOWN_WARNING
    for q in (a, b, c):
        x, y = down_json[q], up_json[q]
        assert list(x.keys()) == JSON_KEYS
        assert x['next_attempt_time'] is None and x['destination_dead'] is None, x
        for k in JSON_KEYS:
            if k not in ('next_attempt_time', 'destination_dead'):
                assert x[k] == y[k], (k, x, y)

    r = env.cli(d, 'flush')
    assert r.returncode == 1 and 'the mail system is not running' in r.stderr, r

    r = env.cli(d, 'hold', a)
    assert r.returncode == 0 and r.stderr == 'relayq: Placed on hold: 1 message\n', r
    assert re.search(r'relayq/postsuper\[\d+\]: %s: placed on hold\n' % a, d.log()), d.log()[-1000:]
    assert db_state(d, a) == 'hold'
    r = env.cli(d, 'hold', c)
    assert r.returncode == 0, r
    r = env.cli(d, 'release', c)
    assert r.returncode == 0 and 'Released from hold: 1 message' in r.stderr, r
    assert re.search(r'postsuper\[\d+\]: %s: released from hold' % c, d.log())
    assert db_state(d, c) == 'deferred'
    r = env.cli(d, 'delete', b)
    assert r.returncode == 0 and 'Deleted: 1 message' in r.stderr, r
    assert re.search(r'postsuper\[\d+\]: %s: removed' % b, d.log())
    assert db_state(d, b) is None
    r = env.cli(d, 'mailq')
    assert re.search(r'^%s!\s' % a, r.stdout, re.M) and b not in r.stdout, r.stdout

    # the daemon starts on the edited queue and sees the same
    d.start()
    r = env.cli(d, 'mailq')
    assert r.stderr == '', r.stderr
    assert re.search(r'^%s!\s' % a, r.stdout, re.M) and b not in r.stdout and c in r.stdout, r.stdout
    recs, _ = mailq_json(env, d)
    assert recs[a]['queue_name'] == 'hold' and recs[c]['queue_name'] == 'deferred', recs
    # and it can still write its queue (the offline edit as root left nothing it cannot open)
    r = env.cli(d, 'release', a)
    assert r.returncode == 0, r
    d.wait_log(r'relayqd?/postsuper\[\d+\]: %s: released from hold' % a, count=1)
    q = env.send(d.port, 'late@sender.test', ['z@dest.test'], body('after restart'))
    d.wait_log(r'%s: to=<z@dest\.test>.*status=deferred' % q)
    assert 'queue update failed' not in d.log()


# ---- 5. permissions ----

def test_permissions_unprivileged_user(env):
    d = env.relayqd(**SLOW)
    a = env.send(d.port, 'a@sender.test', ['r1@dest.test'], body('perm'))
    d.wait_log(r'%s: to=<r1@dest\.test>.*status=deferred' % a)
    wait_not_active(env, d, [a])
    root_text = env.cli(d, 'mailq', check=True).stdout

    r = env.cli(d, 'mailq', user=NOBODY)
    assert r.returncode == 0 and r.stderr == '', r
    assert r.stdout == root_text, 'nobody sees the queue through the query socket'
    r = env.cli(d, user=NOBODY, prog='mailq')
    assert r.returncode == 0 and r.stdout == root_text, r
    recs, r = mailq_json(env, d, user=NOBODY)
    assert recs[a]['queue_name'] == 'deferred'
    r = env.cli(d, 'qshape', user=NOBODY)
    assert r.returncode == 0 and 'dest.test' in r.stdout, r

    for cmd in (['hold', a], ['delete', a], ['expire', a], ['requeue', a], ['release', 'ALL'], ['flush']):
        r = env.cli(d, *cmd, user=NOBODY)
        assert r.returncode != 0, (cmd, r)
        assert 'permission denied' in r.stderr, (cmd, r.stderr)
        assert r.stderr.count('\n') <= 2, (cmd, r.stderr)
    time.sleep(0.3)
    assert db_state(d, a) == 'deferred'
    assert 'postsuper' not in d.log()

    # daemon down: no queue lock for nobody, and a clear word about it
    d.stop()
    for cmd in (['hold', a], ['delete', a]):
        r = env.cli(d, *cmd, user=NOBODY)
        assert r.returncode != 0 and 'permission denied' in r.stderr.lower(), (cmd, r)
    assert db_state(d, a) == 'deferred'
    r = env.cli(d, 'mailq', user=NOBODY)
    assert r.returncode != 0 and DOWN_WARNING in r.stderr and 'cannot read the queue' in r.stderr, r


# ---- 6. sendmail ----

def submit(env, d, args, text, user=None):
    r = env.cli(d, *args, input=text, prog='sendmail', user=user)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def picked_up(d, sender, count=1):
    """Queue IDs of pickup lines for sender."""
    return [m.group(1) for m in d.wait_log(r'relayq/pickup\[\d+\]: (\w+): uid=(\d+) from=<%s>' % re.escape(sender),
                                           count=count)]


def test_sendmail_basic_options(env):
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port)
    # without -i a lone "." ends the message
    submit(env, d, ['-f', 'a@sender.test', 'rcpt@dest.test'],
           'Subject: plain\n\nfirst line\n.\nnot part of it\n')
    qid = picked_up(d, 'a@sender.test')[0]
    d.wait_log(r'%s: to=<rcpt@dest\.test>, relay=127\.0\.0\.1.*status=sent' % qid)
    m = sink.wait_messages(1)[0]
    assert m['from'] == 'a@sender.test' and m['rcpts'] == ['rcpt@dest.test'], m
    data = m['data'].decode()
    assert re.search(r'^Received: by mta\.relayq\.test \(relayq, from userid 0\)\r\n\tid %s;' % qid, data, re.M), data
    assert 'first line\r\n' in data and 'not part of it' not in data, data
    assert '\r\n' in data and '\n\n' not in data.replace('\r\n', '')

    # -i: the dot is text; -F: a From: with the full name
    submit(env, d, ['-i', '-F', 'Alice Example', '-f', '<alice@sender.test>', 'rcpt2@dest.test'],
           'Subject: dots\n\nbefore\n.\nafter\n')
    qid = picked_up(d, 'alice@sender.test')[0]
    m = sink.wait_messages(2)[1]
    data = m['data'].decode()
    assert m['from'] == 'alice@sender.test', m
    assert re.search(r'^From: Alice Example <alice@sender\.test>\r$', data, re.M), data
    assert 'before\r\n.\r\nafter\r\n' in data, data
    d.wait_log(r'%s: to=<rcpt2@dest\.test>.*status=sent' % qid)

    # errors: no recipients (64), bad option (64)
    r = env.cli(d, '-f', 'a@sender.test', input='x\n', prog='sendmail')
    assert r.returncode == 64 and 'no recipients' in r.stderr, r
    r = env.cli(d, '-bs', input='', prog='sendmail')
    assert r.returncode == 70, r


def test_sendmail_t_and_cron(env):
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port)
    submit(env, d, ['-t', '-f', 'a@sender.test'],
           'From: A <a@sender.test>\nTo: Bob <bob@dest.test>, carol@dest.test (Carol)\n'
           'Cc: "Dave, D." <dave@dest.test>\nBcc: eve@dest.test,\n  frank@dest.test\n'
           'Subject: to many\n\nhi all\n')
    m = sink.wait_messages(1)[0]
    assert sorted(m['rcpts']) == ['bob@dest.test', 'carol@dest.test', 'dave@dest.test', 'eve@dest.test',
                                  'frank@dest.test'], m
    data = m['data'].decode()
    assert not re.search(r'^Bcc:', data, re.M | re.I) and 'eve@' not in data and 'frank@' not in data, data
    assert re.search(r'^To: Bob <bob@dest\.test>, carol@dest\.test \(Carol\)\r$', data, re.M), data
    assert re.search(r'^From: A <a@sender\.test>\r$', data, re.M), data

    # cron (cronie): sendmail -FCronDaemon -i -B8BITMIME -oem -oi -t -f root, unqualified addresses
    cron = ('From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> echo hi\n'
            'MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n'
            'X-Cron-Env: <SHELL=/bin/sh>\nX-Cron-Env: <HOME=/root>\n\nhi\n.\nstill output\n')
    submit(env, d, ['-FCronDaemon', '-i', '-B8BITMIME', '-oem', '-oi', '-t', '-f', 'root'], cron)
    qid = picked_up(d, 'root@mta.relayq.test')[0]
    d.wait_log(r'%s: to=<root@mta\.relayq\.test>.*status=sent' % qid)
    m = sink.wait_messages(2)[1]
    assert m['from'] == 'root@mta.relayq.test' and m['rcpts'] == ['root@mta.relayq.test'], m
    data = m['data'].decode()
    assert 'hi\r\n.\r\nstill output\r\n' in data, data
    # -F adds none: there is one; its bare name is qualified with myorigin, as Postfix's cleanup does
    assert data.count('From: ') == 1 and 'From: root@mta.relayq.test (Cron Daemon)\r\n' in data, data
    assert 'To: root@mta.relayq.test\r\n' in data, data

    # -t with no address in the headers
    r = env.cli(d, '-t', input='Subject: nobody\n\nx\n', prog='sendmail')
    assert r.returncode == 64 and 'no recipient' in r.stderr, r


def test_sendmail_while_down_and_as_nobody(env):
    sink = env.pysink()
    d = env.relayqd(start=False, relayhost='[127.0.0.1]:%d' % sink.port)
    maildrop = os.path.join(d.queue_dir, 'maildrop')
    # no queue directory at all: a clear failure, "try again later" for the caller
    r = env.cli(d, '-f', 'a@sender.test', 'x@dest.test', input='x\n', prog='sendmail')
    assert r.returncode in (73, 75) and 'cannot submit the message' in r.stderr, r
    os.makedirs(d.queue_dir, 0o755)          # as an installation leaves it, before the first start
    # before the daemon ever ran (root's sendmail creates the maildrop), and while it is stopped
    for n, phase in enumerate(('never-started', 'stopped')):
        submit(env, d, ['-f', '%s@sender.test' % phase, 'down@dest.test'], 'Subject: %s\n\nwaiting\n' % phase)
        files = [f for f in os.listdir(maildrop) if not f.startswith('tmp.') and f != 'corrupt']
        assert len(files) == 1, files
        assert os.stat(maildrop).st_mode & 0o7777 == 0o1733, oct(os.stat(maildrop).st_mode)
        assert sink.messages[n:] == []
        d.start()
        qid = picked_up(d, '%s@sender.test' % phase)[0]
        d.wait_log(r'%s: to=<down@dest\.test>.*status=sent' % qid)
        d.wait_log(r'%s: removed' % qid)       # committed: mailq no longer shows it
        sink.wait_messages(n + 1)
        assert [f for f in os.listdir(maildrop) if f != 'corrupt'] == []
        r = env.cli(d, 'mailq')
        assert r.stdout == 'Mail queue is empty\n', r.stdout
        d.stop()
    d.start()

    # as an unprivileged user: the sender is the login name, the uid is the real one
    submit(env, d, ['to-nobody@dest.test'], 'Subject: from nobody\n\nhi\n', user=NOBODY)
    qid = picked_up(d, 'nobody@mta.relayq.test')[0]
    assert re.search(r'pickup\[\d+\]: %s: uid=65534 from=<nobody@mta\.relayq\.test>' % qid, d.log())
    m = sink.wait_messages(3)[2]
    assert m['from'] == 'nobody@mta.relayq.test', m
    assert re.search(r'^Received: by mta\.relayq\.test \(relayq, from userid 65534\)', m['data'].decode(), re.M), m
    # nobody cannot pass for someone else's uid by writing the maildrop file's uid line
    # (the daemon trusts the file's owner): checked by the uid above.


def snail(env, d, args, text):
    if not shutil.which('s-nail'):
        raise harness.Skip('s-nail not installed')
    e = dict(os.environ, RELAYQ_CONFIG_DIR=d.confdir, HOME=env.dir, MAILRC='/dev/null', LC_ALL='C')
    r = subprocess.run(['s-nail', '-:/', '-#'] + args, input=text, capture_output=True, text=True,
                       env=e, timeout=60)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def test_snail_via_sendmail_and_smtp(env):
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port)
    # mailx handing the message to relayq's sendmail (mta = a file)
    snail(env, d, ['-S', 'mta=%s' % os.path.join(BIN, 'sendmail'), '-S', 'sendwait',
                   '-r', 'alice@sender.test', '-s', 'via sendmail', '-c', 'cc@dest.test', 'bob@dest.test'],
          'hello from mailx\n')
    qid = picked_up(d, 'alice@sender.test')[0]
    m = sink.wait_messages(1)[0]
    assert m['from'] == 'alice@sender.test' and sorted(m['rcpts']) == ['bob@dest.test', 'cc@dest.test'], m
    data = m['data'].decode()
    assert re.search(r'^Subject: via sendmail\r$', data, re.M) and 'hello from mailx' in data, data
    assert re.search(r'^Received: by mta\.relayq\.test \(relayq, from userid 0\)', data, re.M), data
    d.wait_log(r'%s: to=<bob@dest\.test>.*status=sent' % qid)

    # mailx speaking SMTP to relayqd
    snail(env, d, ['-S', 'mta=smtp://127.0.0.1:%d' % d.port, '-S', 'hostname=client.test',
                   '-r', 'carol@sender.test', '-s', 'via smtp', 'dave@dest.test'], 'hello over smtp\n')
    m = sink.wait_messages(2)[1]
    assert m['from'] == 'carol@sender.test' and m['rcpts'] == ['dave@dest.test'], m
    data = m['data'].decode()
    assert 'hello over smtp' in data and re.search(r'^Subject: via smtp\r$', data, re.M), data
    assert re.search(r'^Received: from client\.test \(localhost \[127\.0\.0\.1\]\)', data, re.M), data


# ---- 7. qshape ----

def qshape_rows(out):
    lines = out.splitlines()
    assert len(set(len(l) for l in lines)) == 1, 'columns not aligned:\n' + out
    return [l.split() for l in lines]


def test_qshape(env):
    d = env.relayqd(**SLOW)
    a, b, c, _, _ = three_deferred(env, d)        # 3 recipients in dest.test, 1 in other.test
    x = env.send(d.port, 'x@Sender.Test', ['s@Other.Test'], body('mixed case'))
    d.wait_log(r'%s: to=<s@Other\.Test>.*status=deferred' % x)
    wait_not_active(env, d, [a, b, c, x])
    head = ['T', '5', '10', '20', '40', '80', '160', '320', '640', '1280', '1280+']
    zeros = ['0'] * 9
    r = env.cli(d, 'qshape', 'deferred', check=True)
    rows = qshape_rows(r.stdout)
    assert rows == [head, ['TOTAL', '5', '5'] + zeros, ['dest.test', '3', '3'] + zeros,
                    ['other.test', '2', '2'] + zeros], r.stdout
    assert r.stdout.splitlines()[0].endswith('  T  5 10 20 40 80 160 320 640 1280 1280+'), r.stdout

    r = env.cli(d, 'qshape', '-s', 'deferred', check=True)
    rows = qshape_rows(r.stdout)
    assert rows == [head, ['TOTAL', '4', '4'] + zeros, ['sender.test', '3', '3'] + zeros,
                    ['MAILER-DAEMON', '1', '1'] + zeros], r.stdout

    env.cli(d, 'hold', c, check=True)
    d.wait_log(r'%s: placed on hold' % c)
    rows = qshape_rows(env.cli(d, 'qshape', 'hold', check=True).stdout)
    assert rows == [head, ['TOTAL', '1', '1'] + zeros, ['other.test', '1', '1'] + zeros], rows
    rows = qshape_rows(env.cli(d, 'qshape', 'deferred', check=True).stdout)
    assert rows[1] == ['TOTAL', '4', '4'] + zeros, rows
    # without a queue name: all queues
    rows = qshape_rows(env.cli(d, 'qshape', check=True).stdout)
    assert rows[1] == ['TOTAL', '5', '5'] + zeros, rows
    # daemon down: the same table from the queue itself
    up = env.cli(d, 'qshape', 'deferred', check=True).stdout
    d.stop()
    r = env.cli(d, 'qshape', 'deferred')
    assert r.returncode == 0 and r.stderr == DOWN_WARNING and r.stdout == up, r
    r = env.cli(d, 'qshape', 'bogus')
    assert r.returncode == 64, r


# ---- 8. check_mailq ----

PLUGIN_DIR = '/usr/lib/nagios/plugins'


def check_mailq(env, d, extra=(), use_env=True):
    e = dict(os.environ)
    if use_env:
        e['RELAYQ_CONFIG_DIR'] = d.confdir
    else:
        e.pop('RELAYQ_CONFIG_DIR', None)
    r = subprocess.run(['perl', os.path.join(env.dir, 'plugins', 'check_mailq'), '-w', '2', '-c', '4',
                        '-M', 'postfix'] + list(extra), capture_output=True, text=True, env=e, timeout=60)
    return r.returncode, r.stdout.strip()


def test_check_mailq_plugin(env):
    if not os.path.exists(os.path.join(PLUGIN_DIR, 'check_mailq')) or not shutil.which('perl'):
        raise harness.Skip('monitoring-plugins-standard (check_mailq) not installed')
    pdir = os.path.join(env.dir, 'plugins')
    os.makedirs(pdir)
    shutil.copy(os.path.join(PLUGIN_DIR, 'check_mailq'), pdir)
    with open(os.path.join(PLUGIN_DIR, 'utils.pm')) as f:
        utils = f.read()
    utils, n = re.subn(r'(\$PATH_TO_MAILQ\s*=\s*)"[^"]*"', r'\1"%s"' % os.path.join(BIN, 'mailq'), utils)
    assert n == 1, 'utils.pm has no $PATH_TO_MAILQ line to point at bin/mailq'
    with open(os.path.join(pdir, 'utils.pm'), 'w') as f:
        f.write(utils)

    d = env.relayqd(**SLOW)
    got = check_mailq(env, d)
    assert got == (0, 'OK: postfix mailq reports queue is empty|unsent=0;2;4;0'), got
    ids = [env.send(d.port, 's@sender.test', ['r%d@dest.test' % i], body('n%d' % i)) for i in range(3)]
    d.wait_log(r'status=deferred', count=3)
    wait_not_active(env, d, ids)
    got = check_mailq(env, d)
    assert got == (1, 'WARNING: postfix mailq is 3 (threshold w = 2)|unsent=3;2;4;0'), got
    ids += [env.send(d.port, 's@sender.test', ['r%d@dest.test' % i], body('n%d' % i)) for i in (3, 4)]
    d.wait_log(r'status=deferred', count=5)
    wait_not_active(env, d, ids)
    got = check_mailq(env, d)
    assert got == (2, 'CRITICAL: postfix mailq is 5 (threshold c = 4)|unsent=5;2;4;0'), got
    # held mail is still mail in the queue
    env.cli(d, 'hold', ids[0], check=True)
    got = check_mailq(env, d)
    assert got == (2, 'CRITICAL: postfix mailq is 5 (threshold c = 4)|unsent=5;2;4;0'), got
    # check_mailq -d DIR runs "mailq -C DIR", as for Postfix
    got = check_mailq(env, d, ['-d', d.confdir], use_env=False)
    assert got == (2, 'CRITICAL: postfix mailq is 5 (threshold c = 4)|unsent=5;2;4;0'), got
    env.cli(d, 'delete', 'ALL', check=True)
    got = check_mailq(env, d)
    assert got == (0, 'OK: postfix mailq reports queue is empty|unsent=0;2;4;0'), got
    # daemon down: mailq still answers (warning on stderr, which the plugin does not read)
    d.stop()
    got = check_mailq(env, d)
    assert got == (0, 'OK: postfix mailq reports queue is empty|unsent=0;2;4;0'), got


# ---- 9. config --check / check ----

def test_config_check(env):
    d = env.relayqd()
    r = env.cli(d, 'config', '--check')
    assert r.returncode == 0, r
    assert r.stdout == 'relayq: configuration %s/relayq.cf and queue directory %s: OK\n' % (d.confdir, d.queue_dir), r
    r = env.cli(d, 'check')
    assert r.returncode == 0, r
    d.stop()

    d.write_config(smtpd_banner_typo='x')
    r = env.cli(d, 'config', '--check')
    assert r.returncode == 1, r
    assert 'smtpd_banner_typo' in r.stderr and 'unknown parameter' in r.stderr, r.stderr
    del d.params['smtpd_banner_typo']
    d.write_config()
    assert env.cli(d, 'check').returncode == 0

    os.chmod(d.queue_dir, 0o777)
    r = env.cli(d, 'check')
    assert r.returncode == 1, r
    assert 'queue_directory %s has mode 0777: it must not be writable by other users' % d.queue_dir in r.stderr, r.stderr
    os.chmod(d.queue_dir, 0o755)
    os.chmod(os.path.join(d.queue_dir, 'maildrop'), 0o777)
    r = env.cli(d, 'check')
    assert r.returncode == 1 and 'maildrop has mode 0777, expected 1733' in r.stderr, r
    os.chmod(os.path.join(d.queue_dir, 'maildrop'), 0o1733)
    os.chmod(os.path.join(d.queue_dir, 'queue.db'), 0o666)
    r = env.cli(d, 'check')
    assert r.returncode == 1 and 'queue.db has mode 0666: only mail_owner may write the queue' in r.stderr, r
    os.chmod(os.path.join(d.queue_dir, 'queue.db'), 0o600)
    assert env.cli(d, 'check').returncode == 0
    shutil.rmtree(d.queue_dir)
    r = env.cli(d, 'check')
    assert r.returncode == 1 and 'queue_directory %s: No such file or directory' % d.queue_dir in r.stderr, r


def test_admin_edits_one_implementation_daemon_and_offline(env):
    """Issue 13: hold/requeue/expire through the daemon and with the daemon
    down are the same code: the same log lines (written after the commit,
    with the summary), and a narrow update that keeps what the last pass
    wrote (attempts, next_eligible, delay reasons)."""
    d = env.relayqd(**SLOW)
    a, b, c, _, _ = three_deferred(env, d)
    before = wait_not_active(env, d, [a, b, c])

    def postsuper_lines(since):
        return [re.sub(r'^.*relayq/postsuper\[\d+\]: ', '', l)
                for l in d.log()[since:].splitlines() if 'relayq/postsuper[' in l]

    mark = len(d.log())
    r = env.cli(d, 'hold', a, b)
    assert r.returncode == 0 and r.stderr == 'relayq: Placed on hold: 2 messages\n', r
    d.wait_log(r'postsuper\[\d+\]: Placed on hold: 2 messages$')
    daemon_lines = postsuper_lines(mark)
    assert daemon_lines == ['%s: placed on hold' % a, '%s: placed on hold' % b,
                            'Placed on hold: 2 messages'], daemon_lines
    r = env.cli(d, 'expire', c)
    assert r.returncode == 0 and r.stderr == 'relayq: Marked for expiry: 1 message\n', r
    d.wait_log(r'postsuper\[\d+\]: Marked for expiry: 1 message$')
    after, _ = mailq_json(env, d)
    for q in (a, b, c):
        for k in ('attempts', 'next_eligible_time', 'arrival_time'):
            assert after[q][k] == before[q][k], (q, k, before[q], after[q])
        assert [x.get('delay_reason') for x in after[q]['recipients']] == \
            [x.get('delay_reason') for x in before[q]['recipients']], (before[q], after[q])
        assert all(x.get('delay_reason') for x in after[q]['recipients']), after[q]
    assert after[c]['forced_expire'] is True and after[c]['queue_name'] == 'deferred', after[c]

    d.stop()
    mark = len(d.log())
    r = env.cli(d, 'release', a, b)
    assert r.returncode == 0 and r.stderr == 'relayq: Released from hold: 2 messages\n', r
    offline_lines = postsuper_lines(mark)
    assert offline_lines == ['%s: released from hold' % a, '%s: released from hold' % b,
                             'Released from hold: 2 messages'], offline_lines
    offline, _ = mailq_json(env, d)
    for q in (a, b):
        assert offline[q]['queue_name'] == 'deferred', offline[q]
        assert offline[q]['attempts'] == before[q]['attempts'], (before[q], offline[q])
    # requeue with the daemon down, then the same with it up: the same words
    mark = len(d.log())
    r = env.cli(d, 'requeue', a)
    assert r.returncode == 0 and r.stderr == 'relayq: Requeued: 1 message\n', r
    lines = postsuper_lines(mark)
    assert len(lines) == 2 and re.match(r'^%s: requeued as [0-9A-F]+$' % a, lines[0]) \
        and lines[1] == 'Requeued: 1 message', lines
    d.start()
    mark = len(d.log())
    wait_not_active(env, d, [b])
    r = env.cli(d, 'requeue', b)
    assert r.returncode == 0 and r.stderr == 'relayq: Requeued: 1 message\n', r
    d.wait_log(r'postsuper\[\d+\]: Requeued: 1 message$', count=2)
    lines = postsuper_lines(mark)
    assert len(lines) == 2 and re.match(r'^%s: requeued as [0-9A-F]+$' % b, lines[0]) \
        and lines[1] == 'Requeued: 1 message', lines
