"""Notices to the sender, end to end: expiry, 5xx, NOTIFY=NEVER, the null
sender, delay warnings, partial delivery.  The sender's domain is routed to
a capturing sink; each notice is parsed with Python's email package."""
import email
import email.policy
import re

from harness import free_port

MSG = ('From: Alice <alice@sender.test>\r\nTo: bob@dest.test\r\nSubject: about lunch\r\n'
       'Message-ID: <lunch-1@sender.test>\r\n\r\nAre you free at noon?\r\n')


def relay(env, sink, dead_port=None, **params):
    dead_port = dead_port or free_port()
    p = dict(relayhost='[127.0.0.1]:%d' % dead_port,
             transport_maps='inline:{ sender.test=smtp:[127.0.0.1]:%d }' % sink.port,
             queue_run_delay='1s', minimal_backoff_time='1s', maximal_backoff_time='2s',
             maximal_queue_lifetime='4s', bounce_queue_lifetime='4s')
    p.update(params)
    return env.relayqd(**p), dead_port


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def dsn_fields(m):
    """(per-message fields, [per-recipient fields]) of the delivery-status part."""
    report = m.get_payload()[1]
    assert report.get_content_type() == 'message/delivery-status', report.get_content_type()
    blocks = report.get_payload()
    return blocks[0], blocks[1:]


def test_expiry_returns_the_message(env):
    sink = env.pysink()
    d, port = relay(env, sink)
    qid = env.send(d.port, 'alice@sender.test', ['bob@dest.test'], MSG,
                   rcpt_options=['ORCPT=rfc822;bob@dest.test'])
    d.wait_log(r'%s: from=<alice@sender\.test>, status=expired, returned to sender' % qid, timeout=30)
    m = d.wait_log(r'%s: sender non-delivery notification: (\w+)' % qid)[0]
    notice_id = m.group(1)
    d.wait_log(r'%s: removed' % qid)
    msgs = sink.wait_messages(1)
    n = msgs[0]
    assert n['from'] == '' and n['rcpts'] == ['alice@sender.test'], n
    msg = parse(n['data'])
    assert msg['Subject'] == 'Undelivered Mail Returned to Sender'
    assert 'MAILER-DAEMON@mta.relayq.test' in msg['From']
    assert msg.get_content_type() == 'multipart/report'
    assert msg.get_param('report-type') == 'delivery-status'
    parts = msg.get_payload()
    assert len(parts) == 3
    assert 'bob@dest.test' in parts[0].get_payload(decode=True).decode()
    per_msg, rcpts = dsn_fields(msg)
    assert per_msg['Reporting-MTA'] == 'dns; mta.relayq.test'
    assert per_msg['X-Relayq-Queue-ID'] == qid
    assert per_msg['Arrival-Date']
    assert len(rcpts) == 1
    r = rcpts[0]
    assert r['Final-Recipient'] == 'rfc822; bob@dest.test'
    assert r['Original-Recipient'].replace(' ', '') == 'rfc822;bob@dest.test'
    assert r['Action'] == 'failed'
    assert r['Status'] == '4.4.1'        # the last temporary code, as Postfix
    assert 'Connection refused' in ' '.join(r['Diagnostic-Code'].split())
    assert parts[2].get_content_type() == 'message/rfc822'
    inner = parts[2].get_payload()[0]
    assert inner['Subject'] == 'about lunch'
    d.wait_log(r'%s: to=<alice@sender\.test>, relay=127\.0\.0\.1.*status=sent' % notice_id)


def test_5xx_bounces_at_once_and_partial_delivery(env):
    def rcpt(addr):
        if addr.startswith('hard'):
            return '550 5.1.1 <%s>: Recipient address rejected: no such user' % addr
        if addr.startswith('soft'):
            return '450 4.2.0 <%s>: mailbox busy' % addr
        return '250 2.1.5 Ok'
    hop = env.pysink(replies={'rcpt': rcpt})
    sink = env.pysink()
    d, _ = relay(env, sink, dead_port=hop.port, maximal_queue_lifetime='1h', bounce_queue_lifetime='1h',
                 queue_run_delay='60s', minimal_backoff_time='60s')
    # dead_port is really a live hop here: it answers per recipient
    qid = env.send(d.port, 'alice@sender.test', ['ok@dest.test', 'hard@dest.test', 'soft@dest.test'], MSG)
    d.wait_log(r'%s: to=<hard@dest\.test>, .*dsn=5\.1\.1, status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: '
               r'550 5\.1\.1 <hard@dest\.test>: Recipient address rejected: no such user \(in reply to RCPT TO command\)\)' % qid)
    d.wait_log(r'%s: to=<ok@dest\.test>, .*status=sent' % qid)
    d.wait_log(r'%s: to=<soft@dest\.test>, .*dsn=4\.2\.0, status=deferred' % qid)
    d.wait_log(r'%s: sender non-delivery notification: \w+' % qid)
    n = sink.wait_messages(1)[0]
    msg = parse(n['data'])
    per_msg, rcpts = dsn_fields(msg)
    assert [r['Final-Recipient'] for r in rcpts] == ['rfc822; hard@dest.test']
    assert rcpts[0]['Status'] == '5.1.1'
    assert rcpts[0]['Remote-MTA'] == 'dns; 127.0.0.1'
    assert rcpts[0]['Diagnostic-Code'].startswith('smtp; 550 5.1.1')
    # the soft one is still queued; the delivered and bounced ones are not
    r = env.cli(d, 'mailq')
    assert 'soft@dest.test' in r.stdout and 'hard@dest.test' not in r.stdout and 'ok@dest.test' not in r.stdout, r.stdout


def test_notify_never_gets_no_notice(env):
    sink = env.pysink()
    d, _ = relay(env, sink)
    qid = env.send(d.port, 'alice@sender.test', ['bob@dest.test'], MSG, rcpt_options=['NOTIFY=NEVER'])
    d.wait_log(r'%s: removed' % qid, timeout=30)
    assert 'notification' not in d.log()
    assert sink.messages == []


def test_null_sender_is_dropped_without_notice(env):
    sink = env.pysink()
    d, _ = relay(env, sink)
    qid = env.send(d.port, '', ['bob@dest.test'], MSG)
    d.wait_log(r'%s: from=<>, status=expired, returned to sender' % qid, timeout=30)
    d.wait_log(r'%s: removed' % qid)
    assert 'notification' not in d.log()
    assert sink.messages == []


def test_delay_warning_once(env):
    sink = env.pysink()
    d, _ = relay(env, sink, delay_warning_time='2s', maximal_queue_lifetime='8s', bounce_queue_lifetime='8s')
    qid = env.send(d.port, 'alice@sender.test', ['bob@dest.test'], MSG)
    d.wait_log(r'%s: sender delay notification: \w+' % qid, timeout=20)
    d.wait_log(r'%s: removed' % qid, timeout=30)
    assert len(re.findall(r'%s: sender delay notification' % qid, d.log())) == 1
    msgs = sink.wait_messages(2)
    subjects = [parse(x['data'])['Subject'] for x in msgs]
    assert 'Delayed Mail (still being retried)' in subjects, subjects
    warn = [parse(x['data']) for x in msgs if parse(x['data'])['Subject'].startswith('Delayed')][0]
    _, rcpts = dsn_fields(warn)
    assert rcpts[0]['Action'] == 'delayed'
    assert rcpts[0]['Will-Retry-Until']
    assert warn.get_payload()[2].get_content_type() == 'text/rfc822-headers'


def test_notify_success_to_a_hop_without_dsn(env):
    hop = env.pysink(ehlo_lines=['PIPELINING', '8BITMIME', 'ENHANCEDSTATUSCODES'])   # no DSN
    sink = env.pysink()
    d, _ = relay(env, sink, dead_port=hop.port)
    qid = env.send(d.port, 'alice@sender.test', ['bob@dest.test'], MSG, rcpt_options=['NOTIFY=SUCCESS'])
    hop.wait_messages(1)
    d.wait_log(r'%s: sender delivery status notification: \w+' % qid)
    n = sink.wait_messages(1)[0]
    msg = parse(n['data'])
    _, rcpts = dsn_fields(msg)
    assert rcpts[0]['Action'] == 'relayed', rcpts[0].items()
    assert rcpts[0]['Final-Recipient'] == 'rfc822; bob@dest.test'


def test_notify_success_passed_on_to_a_hop_with_dsn(env):
    hop = env.pysink()      # offers DSN
    sink = env.pysink()
    d, _ = relay(env, sink, dead_port=hop.port)
    qid = env.send(d.port, 'alice@sender.test', ['bob@dest.test'], MSG,
                   rcpt_options=['NOTIFY=SUCCESS', 'ORCPT=rfc822;bob@dest.test'], mail_options=['RET=HDRS', 'ENVID=env42'])
    m = hop.wait_messages(1)[0]
    assert 'NOTIFY=SUCCESS' in m['rcpt_args'][0], m
    assert 'ORCPT=rfc822;bob@dest.test' in m['rcpt_args'][0], m
    assert 'RET=HDRS' in m['mail_args'] and 'ENVID=env42' in m['mail_args'], m
    d.wait_log(r'%s: removed' % qid)
    assert 'notification' not in d.log()
