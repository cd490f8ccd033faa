"""A full disk never duplicates or loses mail (issue 15).

The queue directory is a small tmpfs mounted for the test (needs root; a
mount refused with EPERM skips the test with that reason).  With the next
hop down, ~1 MB messages are sent until relayq refuses them; the rest of the
file system is then filled by another writer, so that the queue's own
bookkeeping (deferrals, then deliveries and removals) meets a full disk.
The next hop comes back: every message that got a 250 must reach it exactly
once over several queue runs and flushes, the daemon must never exit, and
once space returns new mail is accepted and relayed without a restart.
"""
import os
import re
import smtplib
import sqlite3
import subprocess
import time
import urllib.request

from harness import Skip, free_port

LIMIT = 1536 * 1024              # message_size_limit: 1.5 MB
TMPFS = '24m'


def body(i):
    line = ('%04d' % i) + 'x' * 72 + '\r\n'
    return ('Subject: full disk %d\r\nMessage-ID: <full%d@client.test>\r\n\r\n' % (i, i)
            + line * (1000 * 1024 // len(line)))


def try_send(port, i):
    """One message; returns ('ok', qid), ('mail', reply) or ('data', reply)."""
    with smtplib.SMTP('127.0.0.1', port, local_hostname='client.test', timeout=60) as s:
        s.ehlo('client.test')
        code, resp = s.mail('a@sender.test')
        if code != 250:
            return 'mail', '%d %s' % (code, resp.decode())
        code, resp = s.rcpt('r%d@dest.test' % i)
        assert code == 250, (code, resp)
        code, resp = s.data(body(i).encode())
        if code != 250:
            return 'data', '%d %s' % (code, resp.decode())
        return 'ok', re.search(rb'queued as ([0-9A-F]+)', resp).group(1).decode()


def metric(mport, name):
    text = urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mport, timeout=10).read().decode()
    m = re.search(r'^%s (\S+)$' % re.escape(name), text, re.M)
    assert m, 'no %s in:\n%s' % (name, text)
    return float(m.group(1))


def metric_text(mport):
    return urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mport, timeout=10).read().decode()


def fill(path):
    """Write until the file system is full; returns the bytes written."""
    n = 0
    try:
        f = open(path, 'wb', buffering=0)
    except OSError:
        return 0                    # not even room for the file
    with f:
        chunk = b'\0' * 65536
        try:
            while True:
                n += f.write(chunk)
        except OSError:
            pass
        try:
            while True:             # the last few blocks
                n += f.write(b'\0' * 512)
        except OSError:
            pass
    return n


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def mount_tmpfs(env):
    if os.geteuid() != 0:
        raise Skip('needs root to mount a tmpfs as the queue directory')
    spool = os.path.join(env.dir, 'spool')
    os.makedirs(spool)
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%s,mode=0755' % TMPFS, 'tmpfs', spool],
                       capture_output=True, text=True)
    if r.returncode != 0:
        if 'permission denied' in r.stderr.lower() or 'not permitted' in r.stderr.lower():
            raise Skip('mount -t tmpfs failed with EPERM: %s' % r.stderr.strip())
        raise AssertionError('mount -t tmpfs: %s' % r.stderr)
    return spool


def unmount(env, spool):
    for d in env.daemons:
        d.stop()
    subprocess.run(['umount', '-l', spool])


def test_full_disk_never_duplicates_or_loses_mail(env):
    spool = mount_tmpfs(env)
    try:
        _run(env, spool)
    finally:
        unmount(env, spool)


def test_start_on_a_full_disk(env):
    # A WAL store cannot be opened without room for its -shm and -wal files:
    # stopped with a full queue and started again on a disk that something
    # else filled, relayqd gives its reserve back, starts, refuses new mail,
    # and delivers what it holds exactly once.
    spool = mount_tmpfs(env)
    try:
        hop = free_port()
        d = env.relayqd(queue_directory=spool, message_size_limit=LIMIT,
                        relayhost='[127.0.0.1]:%d' % hop, minimal_backoff_time='60s',
                        maximal_backoff_time='120s', queue_run_delay='2s')
        accepted = []
        for i in range(40):
            kind, what = try_send(d.port, i)
            if kind != 'ok':
                break
            accepted.append(i)
        assert accepted and kind == 'mail', (accepted, kind, what)
        assert d.stop() == 0
        filled = fill(os.path.join(spool, 'filler'))
        assert filled > 0 and free_bytes(spool) < 65536
        d.start()
        d.wait_log(r'queue loaded: %d messages' % len(accepted))
        kind, what = try_send(d.port, 100)
        assert kind == 'mail' and what.startswith('452 4.3.1'), (kind, what)
        sink = env.pysink(port=hop)
        env.cli(d, 'flush', check=True)
        sink.wait_messages(len(accepted), timeout=60)
        d.wait_log(r': removed', count=len(accepted), timeout=60)
        time.sleep(3)
        assert len(sink.messages) == len(accepted)
        assert d.proc.poll() is None
        print('start on a full disk: %d queued, filler %d bytes, started, %d delivered once each'
              % (len(accepted), filled, len(sink.messages)))
    finally:
        unmount(env, spool)


def _run(env, spool):
    hop = free_port()
    mport = free_port()
    d = env.relayqd(queue_directory=spool, message_size_limit=LIMIT,
                    relayhost='[127.0.0.1]:%d' % hop, metrics_listen='127.0.0.1:%d' % mport,
                    queue_run_delay='2s', minimal_backoff_time='60s', maximal_backoff_time='120s',
                    smtp_connect_timeout='2s')
    d.wait_log(r'queue loaded')
    reserve = os.path.join(spool, 'reserve')
    assert os.path.getsize(reserve) == 4 * 1024 * 1024 + 2 * LIMIT, os.path.getsize(reserve)

    # 1. Next hop down: send until relayq refuses.
    # (A refusal also makes relayq give the WAL's space back, which may let
    # one more in: refused three times in a row, a second apart, is full.)
    accepted, refused, in_a_row = [], [], 0
    for i in range(60):
        kind, what = try_send(d.port, i)
        if kind == 'ok':
            accepted.append((i, what))
            in_a_row = 0
        else:
            refused.append((i, kind, what))
            in_a_row += 1
            if in_a_row >= 3:
                break
            time.sleep(1.2)
    assert accepted, refused
    assert refused, 'never refused after %d messages' % len(accepted)
    for i, kind, what in refused:
        assert (kind == 'mail' and what.startswith('452 4.3.1 Insufficient system storage')) \
            or (kind == 'data' and what.startswith('451 4.3.0')), refused
    assert refused[0][1] == 'mail', refused
    d.wait_log(r'NOQUEUE: reject: MAIL from localhost\[127\.0\.0\.1\]: 452 4\.3\.1 Insufficient system storage;')
    d.wait_log(r'warning: not enough free space in mail queue: \d+ bytes < 1\.5\*message_size_limit')
    assert metric(mport, 'relayq_queue_space_refusing') == 1
    # Below 1.5 x message_size_limit once the WAL's pending pages are counted
    # as used, or the reserve in use (the deferrals of
    # the queued mail may themselves have met the full disk meanwhile).
    assert metric(mport, 'relayq_queue_filesystem_free_bytes') \
        - metric(mport, 'relayq_queue_wal_pending_bytes') < 1.5 * LIMIT \
        or metric(mport, 'relayq_queue_reserve_held') == 0
    # every message accepted was deferred at least once (their deferrals were recorded)
    d.wait_log(r'status=deferred', count=len(accepted), timeout=60)


    local = 'Subject: local\r\nMessage-ID: <local@client.test>\r\n\r\nfrom sendmail\r\n'

    # 2. An administrator reads the queue with sqlite3 (a snapshot that keeps
    # the WAL from being reset, as docs/queue-format.md allows), and something
    # else fills the rest of the file system: the queue's bookkeeping must now
    # grow the WAL on a full disk.
    deadline = time.time() + 30     # (if the deferrals used the reserve, it is made again)
    while metric(mport, 'relayq_queue_reserve_held') != 1:
        assert time.time() < deadline, 'the reserve is not re-created: %d bytes free' % free_bytes(spool)
        time.sleep(0.5)
    reader = sqlite3.connect('file:%s/queue.db?mode=ro' % spool, uri=True, isolation_level=None)
    reader.execute('BEGIN')
    n_queued = reader.execute('SELECT count(*) FROM msg').fetchone()[0]
    assert n_queued == len(accepted), (n_queued, accepted)
    filler = os.path.join(spool, 'filler')
    filled = fill(filler)
    assert free_bytes(spool) < 65536, free_bytes(spool)
    kind, what = try_send(d.port, 100)
    assert kind == 'mail' and what.startswith('452 4.3.1'), (kind, what)
    # sendmail(1) on a full disk: EX_TEMPFAIL (75), as Postfix's, nothing left behind.
    r = env.cli(d, '-f', 'full@sender.test', 'f@dest.test', input=local * 200, prog='sendmail')
    assert r.returncode == 75, (r.returncode, r.stderr)
    assert 'No space left on device' in r.stderr, r.stderr

    # 3. The next hop comes back: every accepted message arrives exactly once,
    # over several queue runs and flushes.
    sink = env.pysink(port=hop)
    env.cli(d, 'flush', check=True)
    sink.wait_messages(len(accepted), timeout=90)
    for _ in range(3):
        time.sleep(3)
        env.cli(d, 'flush', check=True)
    # The reader goes away (as an administrator's sqlite3 would): whatever
    # could not be recorded while it held the WAL is recorded now, and
    # nothing was delivered twice meanwhile.
    reader.execute('COMMIT')
    reader.close()
    d.wait_log(r': removed', count=len(accepted), timeout=90)
    time.sleep(5)                   # more queue runs: nothing may go out again
    ids = [re.search(rb'Message-ID: <full(\d+)@', m['data']).group(1).decode() for m in sink.messages
           if m['from'] == 'a@sender.test']
    want = sorted(str(i) for i, _ in accepted)
    assert sorted(ids) == want, 'delivered %s, accepted %s' % (sorted(ids), want)
    assert d.proc.poll() is None, d.stderr_text()
    full_errors = metric(mport, 'relayq_queue_full_errors_total')
    releases = metric(mport, 'relayq_queue_reserve_releases_total')
    assert full_errors >= 1 and releases >= 1, (full_errors, releases)
    suspended = metric(mport, 'relayq_queue_updates_suspended')
    assert suspended == 0
    log = d.log()
    assert 'status=sent' in log

    # 4. Space returns: new mail is accepted and relayed without a restart.
    if os.path.exists(filler):
        os.unlink(filler)
    deadline = time.time() + 30
    while metric(mport, 'relayq_queue_space_refusing') != 0:
        assert time.time() < deadline, 'still refusing with %d bytes free: %s' % (
            free_bytes(spool), subprocess.run(['ls', '-ls', spool], capture_output=True, text=True).stdout
            + subprocess.run(['python3', '-c', 'import sqlite3,sys; c=sqlite3.connect("file:%s/queue.db?mode=ro" % sys.argv[1], uri=True); print([c.execute("pragma "+p).fetchall() for p in ("auto_vacuum","freelist_count","page_count")])', spool], capture_output=True, text=True).stdout + metric_text(mport))
        time.sleep(0.5)
    assert metric(mport, 'relayq_queue_reserve_held') == 1
    kind, what = try_send(d.port, 200)
    assert kind == 'ok', (kind, what)

    # 5. sendmail(1) writes the maildrop while there is room for the file
    # (as Postfix's postdrop), but pickup waits while smtpd refuses mail
    # (here: queue_minfree above the free space), then takes it, once.
    d.write_config(queue_minfree=64 * 1024 * 1024)
    d.hup()
    d.wait_log(r'reload -- version')
    kind, what = try_send(d.port, 300)
    assert kind == 'mail' and what.startswith('452 4.3.1'), (kind, what)
    r = env.cli(d, '-f', 'local@sender.test', 'l@dest.test', input=local, prog='sendmail')
    assert r.returncode == 0, r.stderr
    d.wait_log(r'relayq/pickup\[\d+\]: warning: not enough free space in mail queue: \d+ bytes'
               r' < 1\.5\*message_size_limit; maildrop files wait')
    time.sleep(2)
    assert 'from=<local@sender.test>' not in d.log()
    d.write_config(queue_minfree=0)
    d.hup()
    d.wait_log(r'relayq/pickup\[\d+\]: \w+: uid=\d+ from=<local@sender\.test>')
    msgs = sink.wait_messages(len(accepted) + 2, timeout=30)
    time.sleep(2)
    assert len(sink.messages) == len(accepted) + 2, len(sink.messages)
    assert sum(1 for m in msgs if m['from'] == 'local@sender.test') == 1
    assert d.proc.poll() is None

    summary = ('tmpfs %s, message_size_limit %d, reserve %d: accepted %d, refused %s, '
               'filler %d bytes, delivered %d (each once), full-disk transactions %d, '
               'reserve released %d time(s), updates suspended %d and recorded later %d, '
               'after space returned: accepted and relayed'
               % (TMPFS, LIMIT, os.path.getsize(reserve), len(accepted),
                  ['%s %s' % (k, w[:9]) for _, k, w in refused], filled, len(ids),
                  full_errors, releases, log.count('delivery of this message is suspended'),
                  log.count('delivery resumes')))
    assert log.count('delivery of this message is suspended') == log.count('delivery resumes')
    print(summary)
