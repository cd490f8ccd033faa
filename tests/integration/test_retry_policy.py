"""relayq_retry_policy_maps: per-destination retry policy in the real daemon,
its attempts and expiry matched to what explain predicts; a message with
recipients under two policies; malformed values are configuration errors."""
import json
import os
import re
import time

from harness import free_port

# Times are compared to 1.5 s: run with no other test file beside it.
SERIAL = True

LOGTIME = re.compile(r'^(\w{3} [ \d]\d \d\d:\d\d:\d\d) ')


def log_epoch(line):
    stamp = LOGTIME.match(line).group(1)
    t = time.strptime('%d %s' % (time.localtime().tm_year, stamp), '%Y %b %d %H:%M:%S')
    return int(time.mktime(t))


def policy_file(env, text):
    path = os.path.join(env.dir, 'retry_policy')
    with open(path, 'w') as f:
        f.write(text)
    return 'texthash:' + path


POLICY = ('# the partner recovers fast or not at all\n'
          'fast.example   minimal_backoff_time=2s, maximal_backoff_time=2s,\n'
          '               maximal_queue_lifetime=14s\n')

BASE = dict(queue_run_delay='2s', minimal_backoff_time='6s', maximal_backoff_time='6s',
            maximal_queue_lifetime='32s', bounce_queue_lifetime='32s')


def msg(to):
    return 'From: a@sender.test\r\nTo: %s\r\nSubject: policy\r\n\r\nbody\r\n' % to


def test_two_destinations_follow_their_policies(env):
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % free_port(),
                    relayq_retry_policy_maps=policy_file(env, POLICY), **BASE)
    fast = env.send(d.port, '', ['x@fast.example'], msg('x@fast.example'))
    slow = env.send(d.port, '', ['y@slow.example'], msg('y@slow.example'))
    d.wait_log(r'%s: to=<x@fast\.example>.*status=deferred' % fast)
    d.wait_log(r'%s: to=<y@slow\.example>.*status=deferred' % slow)
    time.sleep(0.3)
    pred = {}
    for qid in (fast, slow):
        r = env.cli(d, 'explain', qid, '--json', check=True)
        pred[qid] = json.loads(r.stdout)
    jq = {json.loads(l)['queue_id']: json.loads(l) for l in env.cli(d, 'mailq', '-j', check=True).stdout.splitlines()}
    # mailq -j: the fast recipient has its own lifetime
    assert jq[fast]['recipients'][0]['expire_time'] - jq[fast]['arrival_time'] in (14, 15), jq[fast]
    assert 'expire_time' not in jq[slow]['recipients'][0], jq[slow]
    for qid in (fast, slow):
        d.wait_log(r'%s: from=<>, status=expired' % qid, timeout=90)
    log = d.log().splitlines()
    for qid in (fast, slow):
        tl = pred[qid]['timeline']
        arrival = pred[qid]['create_time']
        active = [log_epoch(l) for l in log if re.search(r'%s: from=.*\(queue active\)' % qid, l)]
        expired = [log_epoch(l) for l in log if re.search(r'%s: from=.*status=expired' % qid, l)]
        want = [arrival + a['at'] for a in tl['attempts']]
        seen = active[-len(want):]
        assert len(active) >= len(want), (qid, active, want)
        for s_, w_ in zip(seen, want):
            assert abs(s_ - w_) <= 1.5, (qid, [t - arrival for t in active], [w - arrival for w in want])
        assert abs(expired[0] - (arrival + tl['expiry']['at'])) <= 1.5, (qid, expired, tl['expiry'])
    # the fast one was retried every 2 s, the slow one every 6 s
    fa = [log_epoch(l) for l in log if re.search(r'%s: from=.*\(queue active\)' % fast, l)]
    sa = [log_epoch(l) for l in log if re.search(r'%s: from=.*\(queue active\)' % slow, l)]
    assert len(fa) > len(sa) >= 3, (fa, sa)


def test_one_message_two_policies(env):
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % free_port(),
                    relayq_retry_policy_maps=policy_file(env, POLICY), **BASE)
    qid = env.send(d.port, '', ['x@fast.example', 'y@slow.example'], msg('both'))
    d.wait_log(r'%s: to=<y@slow\.example>.*status=deferred' % qid)
    time.sleep(0.3)
    # --all (the daemon's paged walk) predicts it with the same policies.
    # A what-if reloads "now": the two answers agree exactly only when both
    # are made within the same second, so try until they are.
    for _ in range(10):
        t0 = int(time.time())
        r = env.cli(d, 'explain', '--what-if', qid, '--json', check=True)
        p = json.loads(r.stdout)[0]
        r_all = env.cli(d, 'explain', '--what-if', '--all', '--json', check=True)
        if int(time.time()) == t0:
            break
    per = {x['address']: x['expire_time']['now'] for x in p['recipients']}
    assert json.loads(r_all.stdout) == [p], (r_all.stdout, p)
    # the fast recipient expires alone; the message goes on for the slow one
    d.wait_log(r'%s: to=<x@fast\.example>, status=expired, returned to sender' % qid, timeout=60)
    log = d.log().splitlines()
    t_fast = [log_epoch(l) for l in log if re.search(r'%s: to=<x@fast\.example>, status=expired' % qid, l)][0]
    assert abs(t_fast - per['x@fast.example']) <= 1.5, (t_fast, per)
    out = env.cli(d, 'mailq', check=True).stdout
    assert 'y@slow.example' in out and 'x@fast.example' not in out, out
    d.wait_log(r'%s: from=<>, status=expired' % qid, timeout=60)
    log = d.log().splitlines()
    t_all = [log_epoch(l) for l in log if re.search(r'%s: from=<>, status=expired' % qid, l)][0]
    assert abs(t_all - per['y@slow.example']) <= 1.5, (t_all, per)
    # while both were deferred, attempts came at the faster policy's pace
    active = [log_epoch(l) for l in log if re.search(r'%s: from=.*\(queue active\)' % qid, l)]
    early = [b - a for a, b in zip(active, active[1:]) if b <= t_fast]
    assert early and max(early) <= 3, active


def test_bad_policy_values_are_configuration_errors(env):
    bad = policy_file(env, 'ok.example minimal_backoff_time=1m\n'
                           'bad.example minimal_backoff_time=soon\n')
    d = env.relayqd(start=False, relayhost='[127.0.0.1]:%d' % free_port(),
                    relayq_retry_policy_maps=bad)
    try:
        d.start()
        started = True
    except AssertionError:
        started = False
    assert not started
    text = d.stderr_text()
    assert re.search(r'relayq_retry_policy_maps: .*retry_policy, line 2: bad\.example: '
                     r'minimal_backoff_time: bad time value "soon"', text), text
    # a good map, then a bad one on SIGHUP: the old one is kept
    good = policy_file(env, 'ok.example minimal_backoff_time=1m\n')
    d.params['relayq_retry_policy_maps'] = good
    d.write_config()
    d.start()
    with open(good[len('texthash:'):], 'a') as f:
        f.write('evil.example queue_run_delay=1s\n')
    d.hup()
    d.wait_log(r'not a retry policy parameter')
    assert d.proc.poll() is None
