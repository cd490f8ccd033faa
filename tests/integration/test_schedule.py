"""The scheduler in the real daemon: attempt times in the log match what
`relayq explain --json` predicts for the same configuration and queue-run
phase; expiry returns the message; a dead destination is suspended."""
import calendar
import os
import json
import re
import time

from harness import free_port

# Attempt times are compared with explain's to 1.5 s: run with no other
# test file beside it (see run.py).
SERIAL = True

MSG = 'From: a@sender.test\r\nSubject: schedule\r\n\r\nbody\r\n'
LOGTIME = re.compile(r'^(\w{3} [ \d]\d \d\d:\d\d:\d\d) ')


def log_epoch(line):
    """Seconds since the epoch of a log line (local time, current year)."""
    stamp = LOGTIME.match(line).group(1)
    t = time.strptime('%d %s' % (time.localtime().tm_year, stamp), '%Y %b %d %H:%M:%S')
    return int(time.mktime(t))


def test_attempt_times_match_explain(env):
    port = free_port()
    params = dict(queue_run_delay='2s', minimal_backoff_time='2s', maximal_backoff_time='6s',
                  maximal_queue_lifetime='20s', bounce_queue_lifetime='20s')
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % port, **params)
    started = [l for l in d.log().splitlines() if 'daemon started' in l]
    assert started, d.log()
    anchor = log_epoch(started[0])
    time.sleep(0.3)
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    d.wait_log(r'%s: from=<a@sender\.test>, status=expired, returned to sender' % qid, timeout=60)
    log = d.log().splitlines()
    active = [log_epoch(l) for l in log if re.search(r'%s: from=.*\(queue active\)' % qid, l)]
    expired = [log_epoch(l) for l in log if re.search(r'%s: from=.*status=expired' % qid, l)]
    client = [log_epoch(l) for l in log if re.search(r'%s: client=' % qid, l)]
    arrival = client[0]
    offset = (arrival - anchor) % 2
    r = env.cli(d, 'explain', '--json', '--arrival-offset', str(offset), check=True)
    tl = json.loads(r.stdout)
    predicted = [arrival + a['at'] for a in tl['attempts']]
    assert len(active) == len(predicted), 'log %s vs explain %s\n%s' % (
        [t - arrival for t in active], [a['at'] for a in tl['attempts']], r.stdout)
    for seen, want in zip(active, predicted):
        assert abs(seen - want) <= 1.5, 'attempts at %s, explain said %s' % (
            [t - arrival for t in active], [a['at'] for a in tl['attempts']])
    assert abs(expired[0] - (arrival + tl['expiry']['at'])) <= 1.5, (expired, tl['expiry'])


def test_explain_queued_message(env):
    port = free_port()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % port, queue_run_delay='30s',
                    minimal_backoff_time='30s', maximal_backoff_time='60s', maximal_queue_lifetime='1h')
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    d.wait_log(r'%s: to=<b@dest\.test>.*status=deferred' % qid)
    time.sleep(0.3)
    r = env.cli(d, 'explain', qid)
    assert r.returncode == 0, r.stdout + r.stderr
    assert qid in r.stdout
    assert 'Connection refused' in r.stdout, r.stdout
    r = env.cli(d, 'mailq', '-j', check=True)
    rec = json.loads(r.stdout.splitlines()[0])
    assert rec['queue_id'] == qid
    assert rec['attempts'] == 1
    # the next attempt is the first queue run at or after the end of the 30 s backoff
    assert rec['next_attempt_time'] >= rec['next_eligible_time'] - 1, rec
    assert rec['next_attempt_time'] - rec['next_eligible_time'] < 30, rec
    assert rec['expire_time'] - rec['arrival_time'] in (3600, 3601), rec
    assert rec['destination_dead'] is False


def test_dead_destination_is_suspended(env):
    port = free_port()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % port, queue_run_delay='60s',
                    minimal_backoff_time='60s', maximal_backoff_time='120s')
    ids = [env.send(d.port, 's@sender.test', ['r%d@dest.test' % i], MSG) for i in range(8)]
    d.wait_log(r'status=deferred', count=8)
    # Flush all at once: after 4 hop failures in a row the destination is
    # dead (1/5 + 1/4 + 1/3 + 1/2 >= 1) and the others are suspended without a
    # connection.  (Postfix's single-threaded smtp clients answered one at a
    # time, giving exactly 4 connections in its trace; relayq starts up to the
    # window of 5 together, so 4 or 5 connect and 3 or 4 are suspended.)
    env.cli(d, 'flush', check=True)
    d.wait_log(r'relayq/error\[\d+\]: \w+: to=<r\d@dest\.test>, relay=none, .*dsn=4\.4\.1, status=deferred '
               r'\(delivery temporarily suspended: connect to 127\.0\.0\.1\[127\.0\.0\.1\]:%d: Connection refused\)' % port,
               count=3)
    # A new message to the dead destination is deferred without a connection.
    qid = env.send(d.port, 's@sender.test', ['late@dest.test'], MSG)
    d.wait_log(r'relayq/error\[\d+\]: %s: to=<late@dest\.test>.*delivery temporarily suspended' % qid)
    r = env.cli(d, 'mailq', '-j', check=True)
    recs = [json.loads(l) for l in r.stdout.splitlines()]
    late = [x for x in recs if x['queue_id'] == qid][0]
    assert late['destination_dead'] is True
    # explain asks the same scheduler state (qmgr knows the message's destinations)
    r = env.cli(d, 'explain', qid, check=True)
    assert 'its destination is dead until' in r.stdout, r.stdout
    js = json.loads(env.cli(d, 'explain', '--json', qid, check=True).stdout)
    assert js['destination_dead'] is True, js


def test_explain_queued_message_daemon_down(env):
    port = free_port()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % port, queue_run_delay='30s',
                    minimal_backoff_time='30s', maximal_backoff_time='60s', maximal_queue_lifetime='1h')
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    d.wait_log(r'%s: to=<b@dest\.test>.*status=deferred' % qid)
    d.stop()
    r = env.cli(d, 'explain', qid)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'Mail system is down' in r.stderr
    assert qid in r.stdout and 'Connection refused' in r.stdout
    assert 'not running' in r.stdout
    r = env.cli(d, 'explain', '--json', qid)
    js = json.loads(r.stdout)
    assert js['queue_id'] == qid and js['attempts'] == 1 and len(js['history']) == 1
    assert js['timeline']['attempts'][0]['n'] == 2


def query_socket(d, request):
    """One raw request on the daemon's query socket (any local user may send one)."""
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(os.path.join(d.queue_dir, 'public', 'query'))
    s.sendall(request.encode() + b'\n')
    data = b''
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.decode(errors='replace')


def test_explain_queued_message_options(env):
    """Issue 13: the daemon parses explain's options as the CLI does:
    --opt=VALUE as well as --opt VALUE, and time units (5m is 300 s)."""
    port = free_port()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % port, queue_run_delay='30s',
                    minimal_backoff_time='30s', maximal_backoff_time='60s', maximal_queue_lifetime='1h')
    qid = env.send(d.port, 'a@sender.test', ['b@dest.test'], MSG)
    d.wait_log(r'%s: to=<b@dest\.test>.*status=deferred' % qid)
    for args, want in ((['--attempt-duration=30'], 30), (['--attempt-duration', '30'], 30),
                       (['--attempt-duration=5m'], 300), (['--attempt-duration', '2h'], 7200)):
        r = env.cli(d, 'explain', qid, '--json', *args)
        assert r.returncode == 0, (args, r.stdout + r.stderr)
        assert 'Mail system is down' not in r.stderr, r.stderr
        js = json.loads(r.stdout)
        assert js['queue_id'] == qid
        assert js['timeline']['parameters']['attempt_duration'] == want, (args, js['timeline']['parameters'])
        r = env.cli(d, 'explain', *args, qid)
        assert r.returncode == 0 and qid in r.stdout and 'each attempt takes' not in r.stdout, r.stdout + r.stderr
    # Bad values are refused by the CLI before it asks, with a usage error.
    for bad in ('--attempt-duration=-5', '--attempt-duration=5x', '--sender=<>', '--bogus'):
        r = env.cli(d, 'explain', qid, bad)
        assert r.returncode == 2 and 'usage' in r.stderr, (bad, r.returncode, r.stderr)
    # ... and by the daemon itself, whoever sends them.
    for bad in ('--attempt-duration=99999999999999999999w', '--attempt-duration=-1', '--json=1',
                '--attempt-duration', '--svg=/tmp/x', 'ABC --attempt-duration=1'):
        reply = query_socket(d, 'explain %s %s' % (qid, bad))
        assert reply.startswith('error '), (bad, reply)
    reply = query_socket(d, 'explain %s --attempt-duration=1m' % qid)
    assert reply.startswith('ok\n') and qid in reply, reply
    assert d.proc.poll() is None


def test_explain_null_sender_lifetime_capped_daemon_down(env):
    """Issue 13: bounce_queue_lifetime (10d) above maximal_queue_lifetime (5d)
    is capped in every view: offline explain, explain through the daemon,
    and mailq -j."""
    port = free_port()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % port, queue_run_delay='30s',
                    minimal_backoff_time='30s', maximal_backoff_time='60s',
                    maximal_queue_lifetime='5d', bounce_queue_lifetime='10d')
    qid = env.send(d.port, '', ['b@dest.test'], MSG)
    d.wait_log(r'%s: to=<b@dest\.test>.*status=deferred' % qid)
    for down in (False, True):
        if down:
            d.stop()
        r = env.cli(d, 'explain', qid)
        assert r.returncode == 0, r.stdout + r.stderr
        assert ('Mail system is down' in r.stderr) == down, r.stderr
        assert '(5d after creation)' in r.stdout, r.stdout
        assert 'bounce_queue_lifetime  = 432000s (5d; the sender is <>)' in r.stdout, r.stdout
        assert '10d' not in r.stdout, r.stdout
        js = json.loads(env.cli(d, 'explain', '--json', qid, check=True).stdout)
        assert js['timeline']['parameters']['lifetime'] == 432000, js['timeline']['parameters']
        rec = json.loads(env.cli(d, 'mailq', '-j', check=True).stdout.splitlines()[0])
        assert rec['expire_time'] - rec['arrival_time'] in (432000, 432001), rec
