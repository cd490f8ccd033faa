"""relayqd's wiring under failures: a content that fails its checksum when
a message is taken for delivery, SIGTERM with a pass half done, a queue
commit that fails at the end of a pass."""
import os
import re
import sqlite3
import time

from harness import free_port

MSG = 'From: a@sender.test\r\nSubject: robust\r\n\r\nbody\r\n'


def db_rows(d, sql, args=()):
    c = sqlite3.connect(os.path.join(d.queue_dir, 'queue.db'), timeout=10)
    try:
        return c.execute(sql, args).fetchall()
    finally:
        c.close()


def db_exec(d, sql, args=()):
    c = sqlite3.connect(os.path.join(d.queue_dir, 'queue.db'), timeout=10)
    try:
        c.execute(sql, args)
        c.commit()
    finally:
        c.close()


def test_corrupt_at_activation(env):
    # A dead next hop: the message is deferred, then its content is damaged
    # on disk (same length, wrong checksum) and a flush takes it again.
    d = env.relayqd(minimal_backoff_time='1s', maximal_backoff_time='2s', queue_run_delay='1s')
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    d.wait_log(qid + r': to=<b@dest.test>.*status=deferred')
    db_exec(d, 'UPDATE content SET data = zeroblob(size) WHERE seq = (SELECT seq FROM msg WHERE qid = ?)', (qid,))
    env.cli(d, 'flush', check=True)
    d.wait_log(qid + r'.*corrupt')
    # Give the scheduler several queue runs: it must not try it again and again.
    time.sleep(4)
    env.cli(d, 'flush', check=True)
    time.sleep(1)
    log = d.log()
    assert len(re.findall(qid + r'.*corrupt', log)) == 1, log[-3000:]
    assert not re.search(qid + r': from=<.*\(queue active\)', log.split('corrupt')[-1]), log[-3000:]
    # On disk it is in the corrupt state (kept for the operator), not left deferred or deleted.
    assert db_rows(d, 'SELECT state FROM msg WHERE qid = ?', (qid,)) == [(4,)]
    # The daemon still works.
    assert env.cli(d, 'mailq').returncode == 0
    assert d.proc.poll() is None


def test_sigterm_mid_pass_keeps_the_250s(env):
    # One message, 200 recipients, 10 per delivery, to a slow next hop: SIGTERM
    # arrives while later deliveries of the pass still wait for a slot.
    sink = env.pysink(replies={'dot': lambda e: (time.sleep(0.4), '250 2.0.0 Ok')[1]})
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, default_destination_recipient_limit='10',
                    initial_destination_concurrency='2', default_destination_concurrency_limit='2',
                    minimal_backoff_time='1s', maximal_backoff_time='2s', queue_run_delay='1s')
    rcpts = ['r%03d@dest.test' % i for i in range(200)]
    env.send(d.port, 'a@sender.test', rcpts, MSG)
    sink.wait_messages(4, timeout=30)
    assert d.stop() == 0
    sent = set(re.findall(r'to=<([^>]+)>.*status=sent', d.log()))
    assert 0 < len(sent) < 200, len(sent)
    first = len(sink.messages)

    # Restart with a fast next hop: what got a 250 before must not go again.
    sink.replies.clear()
    d.start()
    env.cli(d, 'flush', check=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        got = set(r for m in sink.messages for r in m['rcpts'])
        if got >= set(rcpts):
            break
        time.sleep(0.2)
    again = [r for m in sink.messages[first:] for r in m['rcpts'] if r in sent]
    assert again == [], 'delivered twice after a 250: %s' % again[:10]
    assert set(r for m in sink.messages for r in m['rcpts']) == set(rcpts)


def test_valgrind_clean_session(env):
    # A short session under valgrind: deliveries, a bounce with its notice,
    # admin requests, a reload, SIGTERM.  No invalid access, nothing leaked.
    import shutil
    import harness
    if harness.SANITIZE:
        raise harness.Skip('valgrind cannot run an ASan build (the sanitizer pass checks this instead)')
    vg = shutil.which('valgrind')
    if not vg:
        raise harness.Skip('valgrind not installed')
    vgdir = os.path.join(env.dir, 'vgbin')
    os.makedirs(vgdir)
    os.chmod(env.dir, 0o755)
    vglog = os.path.join(env.dir, 'valgrind.log')
    with open(os.path.join(vgdir, 'relayqd'), 'w') as f:
        f.write('#!/bin/sh\nexec %s --leak-check=full --show-leak-kinds=definite,indirect '
                '--errors-for-leak-kinds=definite,indirect --error-exitcode=3 --log-file=%s %s "$@"\n'
                % (vg, vglog, os.path.join(harness.BIN, 'relayqd')))
    os.chmod(os.path.join(vgdir, 'relayqd'), 0o755)
    sink = env.pysink(replies={'rcpt': lambda a: '550 5.1.1 no such user' if a.startswith('bad') else '250 2.1.5 Ok'})
    saved = harness.BIN
    harness.BIN = vgdir
    try:
        d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, minimal_backoff_time='1s',
                        maximal_backoff_time='2s', queue_run_delay='1s', start=False)
        d.start(timeout=90)		# valgrind starts slowly on a loaded machine
    finally:
        harness.BIN = saved
    for i in range(8):
        env.send(d.port, 'a@sender.test', ['ok%d@dest.test' % i, 'bad%d@dest.test' % i], MSG,
                 rcpt_options=['NOTIFY=SUCCESS,FAILURE'] if i % 3 == 0 else [])
    d.wait_log(r'sender non-delivery notification', count=8, timeout=60)
    q = env.send(d.port, 'a@sender.test', ['x@dest.test'], MSG)
    env.cli(d, 'hold', 'ALL')
    env.cli(d, 'release', 'ALL')
    env.cli(d, 'explain', q)
    env.cli(d, 'mailq')
    d.hup()
    d.wait_log(r'reload -- version', timeout=30)
    env.send(d.port, 'a@sender.test', ['after@dest.test'], MSG)
    d.wait_log(r'to=<after@dest.test>.*status=sent', timeout=60)
    rc = d.stop(timeout=120)
    report = open(vglog).read() if os.path.exists(vglog) else ''
    assert rc == 0, 'relayqd under valgrind exited %s:\n%s' % (rc, report[-6000:])
    assert 'ERROR SUMMARY: 0 errors' in report, report[-6000:]


def test_failed_pass_commit_is_retried(env):
    # The queue fails the batch that ends the first pass (its delivery): the
    # message must stay queued, not be delivered again, and the same batch
    # must be recorded later (docs/queue-format.md, "A full disk").
    sink = env.pysink()
    os.environ['RELAYQ_TEST_FAULT'] = 'fail-pass'
    try:
        d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, minimal_backoff_time='1s',
                        maximal_backoff_time='2s', queue_run_delay='1s')
    finally:
        del os.environ['RELAYQ_TEST_FAULT']
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    d.wait_log(qid + r': queue update failed \(.*\); delivery of this message is suspended')
    d.wait_log(qid + r': queue update recorded after 1 failed attempt; delivery resumes', timeout=20)
    d.wait_log(qid + r': removed', timeout=20)
    assert db_rows(d, 'SELECT count(*) FROM msg') == [(0,)]
    assert 'Mail queue is empty' in env.cli(d, 'mailq').stdout
    time.sleep(3)                   # queue runs: nothing goes out again
    assert len(sink.messages) == 1, len(sink.messages)
    assert len(re.findall(qid + r': to=<b@dest\.test>.*status=sent', d.log())) == 1
    assert d.proc.poll() is None


def test_failed_defer_commit_is_retried(env):
    # The batch that records a deferral fails: the message is taken out of
    # the scheduler until the same batch is recorded, then deferred as usual
    # and delivered once when the next hop answers.
    hop = free_port()
    os.environ['RELAYQ_TEST_FAULT'] = 'fail-pass'
    try:
        # The backoff is longer than the failed record's retry (1 s) plus a
        # slow commit: under load a 2 s backoff let the message be tried
        # again before its first record had even been answered.
        d = env.relayqd(relayhost='[127.0.0.1]:%d' % hop, minimal_backoff_time='6s',
                        maximal_backoff_time='8s', queue_run_delay='1s')
    finally:
        del os.environ['RELAYQ_TEST_FAULT']
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    d.wait_log(qid + r': queue update failed \(.*\); delivery of this message is suspended')
    d.wait_log(qid + r': queue update recorded after 1 failed attempt; delivery resumes', timeout=20)
    assert db_rows(d, "SELECT state, attempts FROM msg") == [(2, 1)], d.log()
    assert db_rows(d, 'SELECT count(*) FROM attempt') == [(1,)]
    sink = env.pysink(port=hop)
    d.wait_log(qid + r': removed', timeout=30)
    time.sleep(2)
    assert len(sink.messages) == 1, sink.messages


def test_failed_bounce_commit_keeps_its_notice(env):
    # The batch that records a bounce and stores its notice fails: the notice
    # is not dropped and not doubled; it is stored with the retried batch
    # and reaches the sender exactly once.
    sink = env.pysink(replies={'rcpt': lambda a: '550 5.1.1 no such user' if a.startswith('bad') else '250 2.1.5 Ok'})
    os.environ['RELAYQ_TEST_FAULT'] = 'fail-pass'
    try:
        d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port, minimal_backoff_time='1s',
                        maximal_backoff_time='2s', queue_run_delay='1s')
    finally:
        del os.environ['RELAYQ_TEST_FAULT']
    qid = env.send(d.port, 'a@sender.test', ['bad@dest.test'], MSG)
    d.wait_log(qid + r': queue update failed')
    d.wait_log(qid + r': sender non-delivery notification: ([0-9A-F]+)', timeout=20)
    d.wait_log(qid + r': removed', timeout=20)
    sink.wait_messages(1, timeout=20)
    time.sleep(3)
    notices = [m for m in sink.messages if m['from'] == '']
    assert len(notices) == 1, sink.messages
    assert notices[0]['rcpts'] == ['a@sender.test']
    assert len(re.findall(r'sender non-delivery notification', d.log())) == 1
    assert db_rows(d, 'SELECT count(*) FROM msg') == [(0,)]


def test_thousand_recipients(env):
    # 1,000 recipients in one message (smtpd_recipient_limit): each reaches
    # the next hop exactly once, in deliveries of at most the recipient limit.
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port)
    rcpts = ['u%04d@dest.test' % i for i in range(1000)]
    qid = env.send(d.port, 'a@sender.test', rcpts, MSG)
    d.wait_log(qid + r': removed', timeout=60)
    got = [r for m in sink.messages for r in m['rcpts']]
    assert sorted(got) == rcpts
    assert max(len(m['rcpts']) for m in sink.messages) <= 50
    assert len(re.findall(qid + r': to=<[^>]+>.*status=sent', d.log())) == 1000


def test_notice_that_bounces_makes_no_notice(env):
    # The sender's own address is rejected too: the non-delivery notice
    # (null sender) fails for good and is dropped, with no notice about it.
    sink = env.pysink(replies={'rcpt': lambda a: '550 5.1.1 no such user' if a.startswith('bad') else '250 2.1.5 Ok'})
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port)
    qid = env.send(d.port, 'bad-sender@sender.test', ['bad-rcpt@dest.test'], MSG)
    nline = d.wait_log(qid + r': sender non-delivery notification: ([0-9A-F]+)')[0]
    nqid = nline.group(1)
    d.wait_log(nqid + r': to=<bad-sender@sender.test>.*status=bounced')
    d.wait_log(nqid + r': removed')
    time.sleep(1)
    log = d.log()
    assert len(re.findall(r'notification: ', log)) == 1, log[-3000:]
    assert 'Mail queue is empty' in env.cli(d, 'mailq').stdout
