"""The thin path through the whole relay: accept -> queue -> relay -> log,
and defer -> retry when the next hop is down, then delivery when it is back."""
import os
import re
import socket
import subprocess
import time

from harness import BIN, ROOT, free_port, Skip

MSG = 'From: a@sender.test\r\nTo: b@dest.test\r\nSubject: relay test\r\n\r\nhello\r\n'


def test_relay_to_next_hop(env):
    sink = env.pysink()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % sink.port)
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    assert qid and re.fullmatch(r'[0-9A-F]{10,12}', qid), qid
    msgs = sink.wait_messages(1)
    assert msgs[0]['from'] == 'a@sender.test'
    assert msgs[0]['rcpts'] == ['b@dest.test']
    body = msgs[0]['data'].decode()
    assert body.startswith('Received: from client.test (localhost [127.0.0.1])'), body[:200]
    assert ('id %s' % qid) in body
    assert 'hello\r\n' in body
    d.wait_log(r'%s: removed' % qid)
    log = d.log()
    host = r'\w{3} [ 0-9]\d \d\d:\d\d:\d\d mta relayq/'
    for rx in [host + r'smtpd\[\d+\]: connect from localhost\[127\.0\.0\.1\]',
               host + r'smtpd\[\d+\]: %s: client=localhost\[127\.0\.0\.1\]' % qid,
               host + r'cleanup\[\d+\]: %s: message-id=' % qid,
               host + r'qmgr\[\d+\]: %s: from=<a@sender\.test>, size=\d+, nrcpt=1 \(queue active\)' % qid,
               host + r'smtp\[\d+\]: %s: to=<b@dest\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, '
                      r'delay=[\d.]+, delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok: queued as SINK1\)'
               % (qid, sink.port),
               host + r'qmgr\[\d+\]: %s: removed' % qid]:
        assert re.search(rx, log, re.M), 'missing %r in log:\n%s' % (rx, log)
    # The queue is empty again.
    r = env.cli(d, 'mailq')
    assert r.stdout.strip() == 'Mail queue is empty', r.stdout + r.stderr


def test_dead_hop_is_retried_then_delivered(env):
    port = free_port()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % port, queue_run_delay='2s',
                    minimal_backoff_time='2s', maximal_backoff_time='4s', maximal_queue_lifetime='60s')
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    reason = 'connect to 127.0.0.1[127.0.0.1]:%d: Connection refused' % port
    d.wait_log(r'%s: to=<b@dest\.test>, relay=none, delay=[\d.]+, delays=[\d./]+, dsn=4\.4\.1, '
               r'status=deferred \(%s\)' % (qid, re.escape(reason)))
    # mailq shows the message with its reason (the deferral is logged just before the queue update lands).
    deadline = time.time() + 10
    while True:
        r = env.cli(d, 'mailq')
        if '(%s)' % reason in r.stdout or time.time() > deadline:
            break
        time.sleep(0.1)
    assert qid in r.stdout, r.stdout + r.stderr
    assert '(%s)' % reason in r.stdout, r.stdout
    assert 'b@dest.test' in r.stdout
    # It is retried (a second attempt), then the next hop comes back.
    d.wait_log(r'%s: from=<a@sender\.test>, size=\d+, nrcpt=1 \(queue active\)' % qid, count=2, timeout=10)
    s2 = env.pysink(port=port)
    s2.wait_messages(1, timeout=15)
    d.wait_log(r'%s: to=<b@dest\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*status=sent' % (qid, port))
    d.wait_log(r'%s: removed' % qid)


def test_default_configuration_listens_on_2525(env):
    """`make run` starts relayqd on etc/relayq.cf: it accepts a connection on 127.0.0.1:2525."""
    s = socket.socket()
    try:
        s.bind(('127.0.0.1', 2525))
    except OSError:
        raise Skip('127.0.0.1:2525 is in use on this machine')
    finally:
        s.close()
    spool = os.path.join(env.dir, 'spool')
    log = os.path.join(env.dir, 'log')
    p = env.spawn([os.path.join(BIN, 'relayqd'), '-c', os.path.join(ROOT, 'etc'),
                   '-o', 'queue_directory=' + spool, '-o', 'maillog_file=' + log])
    deadline = time.time() + 10
    while True:
        try:
            c = socket.create_connection(('127.0.0.1', 2525), timeout=1)
            break
        except OSError:
            assert p.poll() is None, 'relayqd exited %s' % p.returncode
            assert time.time() < deadline, 'relayqd did not listen on 2525'
            time.sleep(0.1)
    greeting = c.recv(512).decode()
    c.close()
    assert greeting.startswith('220 '), greeting
    p.terminate()
    assert p.wait(20) == 0
