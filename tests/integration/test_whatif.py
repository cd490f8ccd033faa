"""`relayq explain --what-if`: the prediction made before a reload matches
what the daemon really does after it (attempt and expiry times to the
second), and `--compare` for a configuration."""
import json
import re
import time

from harness import free_port

# Times are compared to 1.5 s: run with no other test file beside it.
SERIAL = True

MSG = 'From: a@sender.test\r\nSubject: what-if\r\n\r\nbody\r\n'
LOGTIME = re.compile(r'^(\w{3} [ \d]\d \d\d:\d\d:\d\d) ')


def log_epoch(line):
    stamp = LOGTIME.match(line).group(1)
    t = time.strptime('%d %s' % (time.localtime().tm_year, stamp), '%Y %b %d %H:%M:%S')
    return int(time.mktime(t))


NEW = dict(queue_run_delay='3s', minimal_backoff_time='3s', maximal_backoff_time='3s',
           maximal_queue_lifetime='25s', bounce_queue_lifetime='25s')


def test_what_if_prediction_matches_the_reload(env):
    port = free_port()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % port, queue_run_delay='20s',
                    minimal_backoff_time='20s', maximal_backoff_time='40s',
                    maximal_queue_lifetime='1h', bounce_queue_lifetime='1h')
    ids = [env.send(d.port, 'a@sender.test', ['b%d@dest.test' % i], MSG) for i in range(2)]
    ids.append(env.send(d.port, '', ['c@dest.test'], MSG))      # a null sender: bounce lifetime
    d.wait_log(r'status=deferred', count=3)
    time.sleep(0.5)
    at = int(time.time()) + 4
    sets = []
    for k, v in NEW.items():
        sets += ['--set', '%s=%s' % (k, v)]
    # The daemon re-anchors its schedule at the second it handles the
    # reload; on a loaded machine that can be a second or two after `at`.
    # Predict for each of those seconds now, before the change, and hold
    # the daemon to the prediction for the second it really reloaded.
    preds = {}
    for when in (at, at + 1, at + 2):
        r = env.cli(d, 'explain', '--what-if', *sets, '--at', str(when), '--all', '--json', check=True)
        preds[when] = {p['queue_id']: p for p in json.loads(r.stdout)}
        assert sorted(preds[when]) == sorted(ids), r.stdout
    pred = preds[at]
    mq = {json.loads(l)['queue_id']: json.loads(l) for l in env.cli(d, 'mailq', '-j', check=True).stdout.splitlines()}
    for qid in ids:
        p = pred[qid]
        # today's column is what the daemon itself says
        assert p['next_attempt_time']['now'] == mq[qid]['next_attempt_time'], (p, mq[qid])
        assert p['expire_time']['what_if'] < p['expire_time']['now'], p
    # the text form says the same, with a summary
    t = env.cli(d, 'explain', '--what-if', *sets, '--at', str(at), '--until', str(at + 600), '--all', check=True).stdout
    assert 'maximal_queue_lifetime = 25s (now 3600s)' in t, t
    assert re.search(r'3 message\(s\): \d+ tried earlier', t), t
    assert 'Expire before' in t and '0 now, 3 with the change' in t, t
    # apply the change at the predicted moment
    d.params.update(NEW)
    d.write_config()
    # time(NULL) in the daemon is the kernel's coarse clock, a tick behind
    # Python's time.time(): signal a little into the second, not at its edge.
    while time.time() < at + 0.3:
        time.sleep(0.02)
    d.hup()
    for qid in ids:
        d.wait_log(r'%s: from=<[^>]*>, status=expired' % qid, timeout=90)
    log = d.log().splitlines()
    reloaded = [log_epoch(l) for l in log if 'relayq/master' in l and ': reload -- ' in l]
    assert len(reloaded) == 1 and reloaded[0] in preds, (reloaded, at)
    for qid in ids:
        p = preds[reloaded[0]][qid]
        active = [log_epoch(l) for l in log if re.search(r'%s: from=.*\(queue active\)' % qid, l)]
        after = [t for t in active if t >= at]
        expired = [log_epoch(l) for l in log if re.search(r'%s: from=.*status=expired' % qid, l)]
        assert after, (qid, active, at)
        assert abs(after[0] - p['next_attempt_time']['what_if']) <= 1.5, (qid, after, p, at)
        assert abs(expired[0] - p['expire_time']['what_if']) <= 1.5, (qid, expired, p, at)


def test_what_if_refuses_bad_requests(env):
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % free_port())
    r = env.cli(d, 'explain', '--what-if', '--set', 'mail_owner=root', '--all')
    assert r.returncode != 0 and 'not a parameter of the retry schedule' in r.stderr, r.stderr
    r = env.cli(d, 'explain', '--what-if', '--set', 'maximal_backoff_time=soon', '--all')
    assert r.returncode != 0 and 'maximal_backoff_time' in r.stderr, r.stderr
    r = env.cli(d, 'explain', '--what-if', '--set', 'maximal_backoff_time=1h')
    assert r.returncode != 0 and 'needs queue IDs or --all' in r.stderr, r.stderr
    r = env.cli(d, 'explain', '--what-if', '--set', 'maximal_backoff_time=1h', 'NOSUCH12345')
    assert r.returncode != 0 and 'no such message' in r.stdout + r.stderr, r.stdout + r.stderr
    r = env.cli(d, 'explain', '--what-if', '--at', 'yesterday-ish', '--all')
    assert r.returncode != 0 and 'bad time for --at' in r.stderr, r.stderr
    # the query socket is open to every user: a raw request with hostile values is refused
    r = env.cli(d, 'explain', '--what-if', '--set', 'maximal_backoff_time=1h', '--all', check=True)
    assert 'Mail queue is empty' in r.stdout, r.stdout
    d.stop()
    r = env.cli(d, 'explain', '--what-if', '--set', 'maximal_backoff_time=1h', '--all')
    assert r.returncode != 0 and 'not running' in r.stderr, r.stderr


def test_compare_two_configurations(env):
    d = env.relayqd(start=False, queue_run_delay='900s', minimal_backoff_time='900s',
                    maximal_backoff_time='3600s', maximal_queue_lifetime='1d')
    r = env.cli(d, 'explain', '--set', 'maximal_backoff_time=600s', '--compare', '--json', check=True)
    both = json.loads(r.stdout)
    now, new = both['now'], both['what_if']
    assert now['parameters']['maximal_backoff_time'] == 3600
    assert new['parameters']['maximal_backoff_time'] == 600
    assert len(new['attempts']) > len(now['attempts'])
    # each side is exactly the configuration's own timeline
    alone = json.loads(env.cli(d, 'explain', '--json', check=True).stdout)
    assert [a['at'] for a in alone['attempts']] == [a['at'] for a in now['attempts']]
    r = env.cli(d, 'explain', '--set', 'maximal_backoff_time=600s', '--compare', check=True)
    assert 'maximal_backoff_time = 600s (now 3600s)' in r.stdout, r.stdout
    r = env.cli(d, 'explain', '--set', 'maximal_backoff_time=600s')
    assert r.returncode != 0 and '--set goes with --what-if or --compare' in r.stderr
