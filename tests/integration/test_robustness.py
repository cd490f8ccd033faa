"""relayqd's wiring under failures: a content that fails its checksum when
a message is taken for delivery, SIGTERM with a pass half done, a queue
commit that fails at the end of a pass."""
import os
import re
import sqlite3
import time

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
