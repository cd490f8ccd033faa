"""Monitoring: the metrics the alert rules need, exported by a live relayqd;
etc/prometheus/relayq-alerts.yml checked and unit-tested with promtool; the
Grafana dashboard is valid JSON and every metric it (or an alert) queries is
one relayqd exports."""
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

from harness import ROOT, Skip, free_port

MSG = 'From: a@sender.test\r\nSubject: mon\r\n\r\nbody\r\n'
PROM = os.path.join(ROOT, 'etc', 'prometheus')
DASHBOARD = os.path.join(ROOT, 'etc', 'grafana', 'relayq.json')
# PromQL words that are not metric names
KEYWORDS = {'and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring',
            'group_left', 'group_right', 'inf', 'nan'}


def scrape(mport):
    return urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mport, timeout=10).read().decode()


def sample(text, name, labels=None):
    rx = re.escape(name) + (r'\{' + re.escape(labels) + r'\}' if labels else '') + r' (\S+)$'
    m = re.search('^' + rx, text, re.M)
    return float(m.group(1)) if m else None


def exported_names(text):
    names = set()
    for name, kind in re.findall(r'^# TYPE (\S+) (\S+)$', text, re.M):
        names.add(name)
        if kind == 'histogram':
            names.update(name + s for s in ('_bucket', '_sum', '_count'))
    return names


def metric_names(expr):
    """The metric names a PromQL expression reads."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # strings
    e = re.sub(r'\{[^}]*\}', ' ', e)                       # label matchers
    e = re.sub(r'\[[^\]]*\]', ' ', e)                      # ranges, subqueries
    e = re.sub(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)', ' ', e)
    e = re.sub(r'\$\w+', ' ', e)                           # Grafana variables
    e = re.sub(r'label_values\(([^,()]*),\s*\w+\s*\)', r'\1', e)   # Grafana: metric, label
    names = set()
    for m in re.finditer(r'(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?', e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def dashboard_exprs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ('expr', 'definition') and isinstance(v, str):
                yield v
            elif k == 'query' and isinstance(v, str) and node.get('type') == 'query':
                yield v
            else:
                yield from dashboard_exprs(v)
    elif isinstance(node, list):
        for v in node:
            yield from dashboard_exprs(v)


def busy_daemon(env):
    """A relayqd with one delivered message and a dead destination."""
    sink = env.pysink()
    dead = free_port()
    mport = free_port()
    d = env.relayqd(relayhost='[127.0.0.1]:%d' % dead, metrics_listen='127.0.0.1:%d' % mport,
                    relay_domains='dest.test ok.test', transport_maps='inline:{ ok.test=smtp:[127.0.0.1]:%d }' % sink.port,
                    queue_run_delay='60s', minimal_backoff_time='60s', maximal_backoff_time='120s',
                    maximal_queue_lifetime='1h')
    env.send(d.port, 'a@sender.test', ['x@ok.test'], MSG)
    sink.wait_messages(1)
    for i in range(8):
        env.send(d.port, 's@sender.test', ['r%d@dest.test' % i], MSG)
    d.wait_log(r'status=deferred', count=8)
    env.cli(d, 'flush', check=True)
    d.wait_log(r'delivery temporarily suspended', count=3)
    return d, mport, dead


def test_metrics_for_alerts(env):
    d, mport, dead = busy_daemon(env)
    dest = 'smtp:[127.0.0.1]:%d' % dead
    text = scrape(mport)
    assert sample(text, 'relayq_destination_dead', 'destination="%s"' % dest) == 1, text
    assert sample(text, 'relayq_dead_destinations') == 1
    # 8 by connection refused or suspension, then the flush: 16 in all
    assert sample(text, 'relayq_destination_deferrals_total', 'destination="%s"' % dest) == 16, text
    assert 'relayq_destination_deferrals_total{destination="smtp:[127.0.0.1]' in text
    assert sample(text, 'relayq_maximal_queue_lifetime_seconds') == 3600
    age1 = sample(text, 'relayq_queue_oldest_message_age_seconds')
    assert age1 is not None and 0 <= age1 < 120, age1
    time.sleep(2.2)
    age2 = sample(scrape(mport), 'relayq_queue_oldest_message_age_seconds')
    assert age2 >= age1 + 2, (age1, age2)
    sv = os.statvfs(d.queue_dir)
    free = sample(text, 'relayq_queue_filesystem_free_bytes')
    want = sv.f_bavail * sv.f_frsize
    assert free is not None and abs(free - want) <= max(0.05 * want, 64 << 20), (free, want)
    assert sample(text, 'relayq_queue_space_guard_bytes') == 1.5 * 10240000
    # delete them all: the queue is empty, its oldest age 0
    env.cli(d, 'delete', 'ALL', check=True)
    deadline = time.time() + 15
    while sample(scrape(mport), 'relayq_queue_oldest_message_age_seconds') != 0:
        assert time.time() < deadline, scrape(mport)
        time.sleep(0.2)
    if shutil.which('promtool') is None:
        raise Skip('promtool not installed')
    r = subprocess.run(['promtool', 'check', 'metrics'], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_alert_rules_promtool(env):
    if shutil.which('promtool') is None:
        raise Skip('promtool not installed')
    r = subprocess.run(['promtool', 'check', 'rules', 'relayq-alerts.yml'], cwd=PROM, capture_output=True, text=True)
    assert r.returncode == 0 and 'SUCCESS: 7 rules found' in r.stdout, r.stdout + r.stderr
    r = subprocess.run(['promtool', 'test', 'rules', 'relayq-alerts.test.yml'], cwd=PROM, capture_output=True, text=True)
    assert r.returncode == 0 and 'SUCCESS' in r.stdout, r.stdout + r.stderr
    # every alert has a firing case in the unit tests
    with open(os.path.join(PROM, 'relayq-alerts.yml')) as f:
        alerts = set(re.findall(r'^\s*- alert: (\w+)', f.read(), re.M))
    with open(os.path.join(PROM, 'relayq-alerts.test.yml')) as f:
        tests = f.read()
    firing = set(re.findall(r'alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels', tests))
    assert alerts == firing, (alerts, firing)


def test_dashboard_and_alerts_use_exported_metrics(env):
    with open(DASHBOARD) as f:
        dash = json.load(f)
    assert dash['panels'] and all(p.get('targets') for p in dash['panels'])
    exprs = list(dashboard_exprs(dash))
    assert len(exprs) >= 15, exprs
    used = set()
    for e in exprs:
        used |= metric_names(e)
    with open(os.path.join(PROM, 'relayq-alerts.yml')) as f:
        rules = f.read()
    for e in re.findall(r'^\s+expr: (.+)$', rules, re.M):
        used |= metric_names(e)
    for block in re.findall(r'^\s+expr: \|\n((?:\s{10}.*\n)+)', rules, re.M):
        used |= metric_names(block)
    used.discard('up')                   # Prometheus' own, for RelayqDown
    assert {'relayq_destination_dead', 'relayq_queue_oldest_message_age_seconds',
            'relayq_delivery_attempt_duration_seconds_bucket'} <= used, used
    d, mport, dead = busy_daemon(env)
    names = exported_names(scrape(mport))
    missing = sorted(used - names)
    assert not missing, 'not exported by relayqd: %s' % missing
    # the extraction itself: a made-up name is caught
    assert metric_names('rate(relayq_no_such_total{a="b"}[5m]) / on (x) foo') == {'relayq_no_such_total', 'foo'}
    assert metric_names('label_values(relayq_x{a="b"}, instance)') == {'relayq_x'}



def test_reject_counters_by_reason(env):
    # smtpd counts a relay refusal by the restriction's reason code, not by
    # the text of its reply: reject_unauth_destination's "Relay access
    # denied" is reason="relay"; a recipient missing from
    # relay_recipient_maps is reason="other".
    import smtplib
    mport = free_port()
    d = env.relayqd(mynetworks='127.0.0.2/32', relay_domains='dest.test', metrics_listen='127.0.0.1:%d' % mport,
                    smtpd_relay_restrictions='permit_mynetworks, reject_unauth_destination',
                    relay_recipient_maps='inline:{ ok@dest.test=x }')
    with smtplib.SMTP('127.0.0.1', d.port, local_hostname='client.test', timeout=30) as s:
        s.ehlo('client.test')
        assert s.mail('a@sender.test')[0] == 250
        for r in ('x@elsewhere.test', 'y@elsewhere.test'):
            code, resp = s.rcpt(r)
            assert code == 554 and b'Relay access denied' in resp, (code, resp)
        code, resp = s.rcpt('nobody@dest.test')
        assert code == 550 and b'relay recipient table' in resp, (code, resp)
        assert s.rcpt('ok@dest.test')[0] == 250
    text = scrape(mport)
    assert sample(text, 'relayq_smtpd_rejects_total', 'reason="relay"') == 2, text
    assert sample(text, 'relayq_smtpd_rejects_total', 'reason="other"') == 1, text
