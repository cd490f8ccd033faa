"""The administrator's log tools on relayq's log and on a throw-away
Postfix's log for the same scripted traffic: fail2ban (relayq's filter,
etc/fail2ban/filter.d/relayq.conf, against Postfix's stock filter) per mode,
logwatch's postfix reporter (with etc/logwatch's override), pflogsumm and
mailgraph (with syslog_name = postfix).  Each tool must give relayq the
counts it gives Postfix.  Set LOGTOOLS_REPORT=FILE to get the counts as JSON."""
import collections
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

from harness import ROOT, Skip, free_port
from pfinstance import Postfix
from logsession import scripted_session

MSG = 'From: a@sender.test\r\nSubject: logtools\r\n\r\nbody\r\n'
QID = re.compile(r'\b(?:[0-9A-F]{10,12}|NOQUEUE)\b')


def need(prog):
    if shutil.which(prog) is None:
        raise Skip('%s not installed' % prog)


def report(key, value):
    path = os.environ.get('LOGTOOLS_REPORT')
    if not path:
        return
    data = {}
    if os.path.exists(path):
        with open(path) as f:
            data = json.load(f)
    data[key] = value
    with open(path, 'w') as f:
        json.dump(data, f, indent=1, sort_keys=True)


def traffic(env, port, sink_port, send):
    """The same traffic for every MTA: the scripted sessions, then 2 messages
    delivered, 1 bounced by the next hop (its notice delivered too) and 1
    deferred (dead next hop)."""
    got = scripted_session(port)
    for rcpt in ('ok1@dest.test', 'ok2@dest.test', 'bad@dest.test', 'x@fail.test'):
        send(port, rcpt)
    return got


def run_both(env, relayq_params=None):
    def rcpt(addr):
        return '550 5.1.1 <%s>: Recipient address rejected: no such user' % addr if addr.startswith('bad') else '250 2.1.5 Ok'
    sink = env.pysink(replies={'rcpt': rcpt})
    dead = free_port()
    common = dict(mynetworks='127.0.0.2/32', relay_domains='dest.test, fail.test',
                  relayhost='[127.0.0.1]:%d' % sink.port,
                  transport_maps='inline:{ fail.test=smtp:[127.0.0.1]:%d }' % dead)

    def send(port, rcpt_addr):
        import smtplib
        with smtplib.SMTP('127.0.0.1', port, local_hostname='client.test', timeout=30) as s:
            s.sendmail('a@sender.test', [rcpt_addr], MSG)
    # relay_transport = smtp: Postfix logs its relay_domains deliveries as
    # postfix/smtp, as relayq does (else postfix/relay/smtp, which mailgraph
    # does not count as sent and logwatch counts as "Delivered").
    pf = Postfix(env, smtpd_error_sleep_time='0', queue_run_delay='300s', minimal_backoff_time='300s',
                 relay_transport='smtp', **common).start()
    pgot = traffic(env, pf.port, sink.port, send)
    mport = free_port()
    params = dict(common, metrics_listen='127.0.0.1:%d' % mport, queue_run_delay='300s',
                  minimal_backoff_time='300s')
    params.update(relayq_params or {})
    d = env.relayqd(**params)
    rgot = traffic(env, d.port, sink.port, send)
    assert rgot == {k: (v.replace('pf.test', 'mta.relayq.test') if isinstance(v, str) else v)
                    for k, v in pgot.items() if k != 'data'} | {'data': rgot['data']}, (rgot, pgot)
    for log in (pf.wait_log, d.wait_log):
        log(r'status=sent', count=4, timeout=30)
        log(r'status=bounced', timeout=30)
        log(r'status=deferred', timeout=30)
    time.sleep(1)
    pf.stop()
    metrics = urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mport, timeout=10).read().decode()
    d.stop()
    return d, pf, metrics, rgot


def f2b_conf(env):
    conf = os.path.join(env.dir, 'fail2ban')
    shutil.copytree('/etc/fail2ban', conf)
    shutil.copy(os.path.join(ROOT, 'etc', 'fail2ban', 'filter.d', 'relayq.conf'), os.path.join(conf, 'filter.d'))
    return conf


def f2b(conf, logfile, filt):
    r = subprocess.run(['fail2ban-regex', '-c', conf, '--out', 'msg', logfile, filt],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return sorted(norm(l) for l in r.stdout.splitlines() if l.strip())


def norm(line):
    """A log line without what differs between two MTAs by nature: the
    syslog header (time, host, program, pid), queue IDs, host names."""
    line = re.sub(r'^.*?\]: ', '', line, count=1)
    line = QID.sub('QID', line)
    return line.replace('pf.test', 'MYHOST').replace('mta.relayq.test', 'MYHOST')


def test_fail2ban_filter_matches_what_postfix_filter_matches(env):
    need('fail2ban-regex')
    d, pf, metrics, got = run_both(env)
    conf = f2b_conf(env)
    counts = {}
    modes = ['normal', 'aggressive', 'more']
    if got['auth_offered']:
        modes.append('auth')
    for mode in modes:
        mine = f2b(conf, d.logfile, 'relayq[mode=%s]' % mode)
        theirs = f2b(conf, pf.logfile, 'postfix[mode=%s]' % mode)
        assert mine == theirs, (mode, mine, theirs)
        counts[mode] = (len(mine), len(theirs))
    # relay access denied x3 and too many errors; aggressive adds the lost connections
    assert counts['normal'][0] == 4, counts
    assert counts['aggressive'][0] >= 4, counts
    # the banned address is always the client's, never one from HELO or an address
    r = subprocess.run(['fail2ban-regex', '-c', conf, '--out', 'ip', d.logfile, 'relayq[mode=aggressive]'],
                       capture_output=True, text=True, timeout=120)
    ips = r.stdout.split()
    assert len(ips) == counts['aggressive'][0] and set(ips) == {'127.0.0.1'}, r.stdout
    # Postfix's stock filter finds nothing in relayq's log (syslog_name relayq)
    assert f2b(conf, d.logfile, 'postfix[mode=aggressive]') == []
    report('fail2ban', {m: {'relayq': a, 'postfix': b} for m, (a, b) in counts.items()}
           | {'auth_compared': got['auth_offered']})


def logwatch_summary(logfile, config=None):
    script = '/usr/share/logwatch/scripts/services/postfix'
    if not os.path.exists(script):
        raise Skip('logwatch not installed')
    argv = ['perl', script, '--detail', '10']
    if config:
        argv += ['--config_file', config]
    env = {k: v for k, v in os.environ.items() if not k.startswith('LOGWATCH')}
    with open(logfile) as f:
        r = subprocess.run(argv, stdin=f, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = r.stdout.split('****** Detail')[0]
    out = {}
    for n, label in re.findall(r'^\s+(\d+)\s+(\S.*?)\s{2,}\S', summary, re.M):
        if 'Bytes' not in label:
            out[label] = out.get(label, 0) + int(n)
    return out


def metric(text, name, labels=''):
    m = re.search(r'^%s%s (\S+)$' % (re.escape(name), re.escape('{%s}' % labels) if labels else ''), text, re.M)
    return int(float(m.group(1))) if m else 0


def test_logwatch_counts(env):
    d, pf, metrics, got = run_both(env)
    # relayq with syslog_name = postfix writes the same lines under postfix/
    lw_conf = os.path.join(ROOT, 'etc', 'logwatch', 'conf', 'services', 'postfix.conf')
    mine = logwatch_summary(d.logfile, lw_conf)
    theirs = logwatch_summary(pf.logfile)
    report('logwatch', {'relayq': mine, 'postfix': theirs})
    # Postfix's master and postfix-script log its own start and stop
    # ("Postfix start", "Postfix stop", "Postfix waiting to terminate" under
    # load), relayq has no such lines; everything else is counted the same.
    def comparable(c):
        return {k: v for k, v in c.items() if not k.startswith('Postfix ')}
    assert comparable(mine) == comparable(theirs), (mine, theirs)
    assert len(mine) >= 12, mine
    # and relayq's own counters agree with logwatch's
    assert mine.get('Sent via SMTP') == metric(metrics, 'relayq_deliveries_total', 'status="sent"') == 4, (mine, metrics)
    assert mine.get('Deferred') == metric(metrics, 'relayq_deliveries_total', 'status="deferred"') == 1, mine
    assert mine.get('Bounced (local)') == metric(metrics, 'relayq_deliveries_total', 'status="bounced"') == 1, mine
    assert mine.get('Total 4xx Rejects') == metric(metrics, 'relayq_smtpd_rejects_total', 'reason="relay"') == 3, mine
    # logwatch counts a queue ID given to a session (client=) even when the
    # client drops it before DATA, for Postfix as for relayq: one more than
    # relayq's accepted-message counter; the notice is a local message.
    assert mine.get('Accepted') == metric(metrics, "relayq_smtpd_messages_total") + 1, (mine, metrics)
    # the OnlyService pattern of the override selects relayq's lines
    with open(lw_conf) as f:
        only = re.search(r'^\*OnlyService = "(.*)"$', f.read(), re.M).group(1)
    progs = set(re.findall(r'^\w{3} [ \d]\d [\d:]{8} \S+ (\S+?)\[', open(d.logfile).read(), re.M))
    assert progs and all(re.fullmatch(only, p) for p in progs), progs
    report('relayq_counters', {'sent': 4, 'deferred': 1, 'bounced': 1, 'rejected': 3,
                                 'accepted': metric(metrics, 'relayq_smtpd_messages_total')})


def mailgraph_counts(env, logfile, name):
    """mailgraph --cat over the log, then the RRD's counts read with rrdtool.
    mailgraph writes a minute when an event of a later minute arrives, and
    cannot write the minute its RRD starts in, and rrdtool shows a row of its
    day archive (8 minutes) once it is complete; the same two synthetic lines
    (10 minutes before, 20 after) around both logs take care of all three."""
    need('mailgraph')
    need('rrdtool')
    host = 'mg.test'
    def stamp(t):
        return time.strftime('%b %e %H:%M:%S', time.localtime(t))
    synthetic = '%s ' + host + ' postfix/smtpd[1]: 0000000001: client=edge.test[192.0.2.1]\n'
    path = os.path.join(env.dir, name + '.maillog')
    with open(logfile) as f, open(path, 'w') as out:
        out.write(synthetic % stamp(time.time() - 600))
        out.write(f.read())
        out.write(synthetic % stamp(time.time() + 1200))
    rrddir = os.path.join(env.dir, name + '-rrd')
    os.makedirs(rrddir)
    r = subprocess.run(['mailgraph', '--cat', '-l', path, '--daemon-rrd=' + rrddir, '--no-virus-rrd',
                        '--no-greylist-rrd'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(['rrdtool', 'fetch', os.path.join(rrddir, 'mailgraph.rrd'), 'AVERAGE', '-r', '60',
                        '-s', 'now-1h', '-e', 'now+2h'], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    names = lines[0].split()
    rows = [l.split(':') for l in lines[1:] if ':' in l]
    step = int(rows[1][0]) - int(rows[0][0])
    counts = dict.fromkeys(names, 0.0)
    for t, vals in rows:
        for n, v in zip(names, vals.split()):
            if v.lower() not in ('nan', '-nan'):
                counts[n] += float(v) * step
    return {n: int(round(v)) for n, v in counts.items()}


def pflogsumm_counts(logfile):
    need('pflogsumm')
    r = subprocess.run(['pflogsumm', logfile], capture_output=True, text=True, timeout=120)
    out = r.stdout
    counts = {}
    for label in ('received', 'delivered', 'forwarded', 'deferred', 'bounced', 'rejected'):
        m = re.search(r'^\s*(\d+)\s+%s\b' % label, out, re.M)
        counts[label] = int(m.group(1)) if m else None
    return counts


def test_mailgraph_and_pflogsumm_with_syslog_name_postfix(env):
    d, pf, metrics, got = run_both(env, {'syslog_name': 'postfix'})
    mine, theirs = mailgraph_counts(env, d.logfile, 'relayq'), mailgraph_counts(env, pf.logfile, 'postfix')
    report('mailgraph', {'relayq': mine, 'postfix': theirs})
    assert mine == theirs, (mine, theirs)
    # 4 sent (3 messages and the notice), 1 bounced; received counts client= lines
    assert mine['sent'] == 4 and mine['bounced'] == 1 and mine['rejected'] == 3, mine
    mine, theirs = pflogsumm_counts(d.logfile), pflogsumm_counts(pf.logfile)
    report('pflogsumm', {'relayq': mine, 'postfix': theirs})
    assert mine == theirs, (mine, theirs)
    assert mine['delivered'] == 4 and mine['deferred'] == 1 and mine['bounced'] == 1, mine


def comparable_lines(log):
    """The lines of a log without what differs by nature between two MTAs:
    time, host, program name and pid, queue IDs, sizes and delays, the
    message-id's value, the sink's reply counter, myhostname, connection
    reuse counts; and without
    the start and stop lines (Postfix's postfix-script and master)."""
    out = []
    for line in log.splitlines():
        m = re.match(r'^\w{3} [ \d]\d [\d:]{8} \S+ \S+?/(?:relay/)?(\w+)\[\d+\]: (.*)$', line)
        if not m:
            continue
        service, text = m.groups()
        if service in ('master', 'postfix-script') or text.startswith('queue loaded:'):
            continue
        text = QID.sub('QID', text)
        text = re.sub(r'message-id=<[^>]*>', 'message-id=<ID>', text)
        text = re.sub(r'\b(size|delay)=[\d.]+', r'\1=N', text)
        text = re.sub(r'delays=[\d./]+', 'delays=N', text)
        text = re.sub(r'queued as SINK\d+', 'queued as SINK', text)
        # relayq reuses a cached connection more often than Postfix's
        # on-demand cache: conn_use=N is Postfix's field, its value differs
        text = re.sub(r', conn_use=\d+', '', text)
        text = text.replace('pf.test', 'MYHOST').replace('mta.relayq.test', 'MYHOST')
        out.append('%s: %s' % (service, text))
    return sorted(out)


def test_same_lines_as_postfix(env):
    """Beyond the tools' counts: for the same traffic relayq writes the same
    lines as Postfix, one for one (docs/log-lines.md marks them tested)."""
    d, pf, metrics, got = run_both(env)
    mine, theirs = comparable_lines(d.log()), comparable_lines(pf.log())
    only_mine = sorted((collections.Counter(mine) - collections.Counter(theirs)).elements())
    only_theirs = sorted((collections.Counter(theirs) - collections.Counter(mine)).elements())
    assert not only_mine and not only_theirs, 'relayq only:\n%s\nPostfix only:\n%s' % (
        '\n'.join(only_mine), '\n'.join(only_theirs))
    assert len(mine) >= 40, mine
