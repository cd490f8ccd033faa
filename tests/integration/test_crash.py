"""Crash at every step of a pass (deliver, defer, bounce): the daemon is
killed inside the queue's writer thread just before or just after the
pass's COMMIT (RELAYQ_TEST_FAULT, tests only), then restarted.  Nothing
acknowledged is lost; nothing is delivered twice except in the documented
window (a 250 from the next hop not yet recorded); no notice is lost or
duplicated."""
import json
import os
import re

from harness import free_port

MSG = 'From: a@sender.test\r\nSubject: crash\r\n\r\nbody\r\n'


def start_with_fault(d, fault):
    os.environ['RELAYQ_TEST_FAULT'] = fault
    try:
        d.start()
    finally:
        del os.environ['RELAYQ_TEST_FAULT']


def crashed(d):
    code = d.proc.wait(20)
    assert code == 9, 'relayqd exited %s, not by the injected crash' % code


def queued(env, d):
    r = env.cli(d, 'mailq', '-j')
    return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def test_deliver_crash_before_commit_redelivers(env):
    sink = env.pysink()
    d = env.relayqd(start=False, relayhost='[127.0.0.1]:%d' % sink.port)
    start_with_fault(d, 'crash-before-pass')
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    sink.wait_messages(1)
    crashed(d)
    assert [m['queue_id'] for m in queued(env, d)] == [qid]      # not recorded: still queued
    d.start()
    sink.wait_messages(2)                 # the documented at-least-once window
    d.wait_log(r'%s: removed' % qid)
    assert queued(env, d) == []


def test_deliver_crash_after_commit_does_not_redeliver(env):
    sink = env.pysink()
    d = env.relayqd(start=False, relayhost='[127.0.0.1]:%d' % sink.port)
    start_with_fault(d, 'crash-after-pass')
    env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    sink.wait_messages(1)
    crashed(d)
    d.start()
    assert queued(env, d) == []
    import time
    time.sleep(1)
    assert len(sink.messages) == 1


def test_defer_crash_keeps_the_message(env):
    for fault, attempts in (('crash-before-pass', 0), ('crash-after-pass', 1)):
        port = free_port()
        d = env.relayqd(start=False, relayhost='[127.0.0.1]:%d' % port, queue_run_delay='1h',
                        minimal_backoff_time='1h', maximal_backoff_time='2h')
        start_with_fault(d, fault)
        qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
        crashed(d)
        q = queued(env, d)
        assert [m['queue_id'] for m in q] == [qid], (fault, q)
        assert q[0]['attempts'] == attempts, (fault, q)
        d.start()
        if attempts == 0:
            # not recorded: it is incoming again and tried at once
            d.wait_log(r'%s: to=<b@dest\.test>.*status=deferred' % qid, count=2)
        q = queued(env, d)
        assert [m['queue_id'] for m in q] == [qid]
        d.stop()


def test_bounce_crash_never_loses_or_duplicates_the_notice(env):
    for fault in ('crash-before-pass', 'crash-after-pass'):
        sink = env.pysink()
        port = free_port()
        # lifetime 0: the first failed attempt expires and returns the message
        d = env.relayqd(start=False, relayhost='[127.0.0.1]:%d' % port,
                        transport_maps='inline:{ sender.test=smtp:[127.0.0.1]:%d }' % sink.port,
                        maximal_queue_lifetime='0s', bounce_queue_lifetime='0s',
                        queue_run_delay='1s', minimal_backoff_time='1s')
        start_with_fault(d, fault)
        qid = env.send(d.port, 'alice@sender.test', ['b@dest.test'], MSG)
        crashed(d)
        d.start()
        # before the commit: the original is still there and expires again;
        # after it: the notice is queued and the original gone (its "removed"
        # line was never logged: the process died before the callback)
        sink.wait_messages(1, timeout=20)
        import time
        deadline = time.time() + 10
        while queued(env, d) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)
        assert len(sink.messages) == 1, (fault, len(sink.messages))
        assert sink.messages[0]['rcpts'] == ['alice@sender.test']
        assert queued(env, d) == []
        d.stop()
