"""RFC 7505 null MX in the SMTP client, against dnsmasq on a loopback port:
a domain whose MX RRset is "0 ." bounces at once (Postfix's text and DSN),
with no address lookup and no connection; a null MX among other MX records
is a null MX too (Postfix); a normal domain is still delivered.  Both the
c-ares path and our own parser (smtp_dns_support_level = dnssec)."""
import os
import re
import time

from test_delivery import dnsmasq

MSG = 'From: a@sender.test\r\nSubject: nullmx\r\n\r\nbody\r\n'

# MX rdata in hex: preference, then the exchange on the wire.
NULL_MX = '000000'                                        # 0 .
MIXED_REAL = '000a' + '026d78' + '056d69786564' + '0474657374' + '00'   # 10 mx.mixed.test
ROOT_PREF5 = '000500'                                     # 5 . (a non-zero preference)


def start_dns(env):
    qlog = os.path.join(env.dir, 'dnsmasq-queries.log')
    port = dnsmasq(env, [
        '--conf-file=/dev/null', '--local=/test/', '--log-queries', '--log-facility=' + qlog,
        # the domains' own addresses: a client that ignored the null MX and
        # fell back to them would connect to the trap sink there
        '--dns-rr=null.test,15,' + NULL_MX, '--host-record=null.test,127.0.0.4',
        '--dns-rr=mixed.test,15,' + NULL_MX, '--dns-rr=mixed.test,15,' + MIXED_REAL,
        '--host-record=mx.mixed.test,127.0.0.4', '--host-record=mixed.test,127.0.0.4',
        '--dns-rr=pref5.test,15,' + ROOT_PREF5, '--host-record=pref5.test,127.0.0.4',
        '--mx-host=ok.test,mx.ok.test,10', '--host-record=mx.ok.test,127.0.0.4'])
    return port, qlog


def queries(qlog):
    try:
        with open(qlog) as f:
            return re.findall(r'query\[(\w+)\] (\S+) from', f.read())
    except OSError:
        return []


def run_level(env, dns, qlog, level):
    bounces = env.pysink()                          # the sender's domain: bounce notices
    trap_port = env.pysink(host='127.0.0.4').port   # the MX hosts and the domains' own addresses
    trap = env.sinks[-1]
    tm = ', '.join('%s=smtp:%s:%d' % (dom, dom, trap_port)
                   for dom in ('null.test', 'mixed.test', 'pref5.test', 'ok.test'))
    d = env.relayqd(relayhost='', dns_servers='127.0.0.1:%d' % dns, smtp_dns_support_level=level,
                    transport_maps='inline:{ sender.test=smtp:[127.0.0.1]:%d, %s }' % (bounces.port, tm))
    before = len(queries(qlog))
    ids = {}
    for dom in ('null.test', 'mixed.test', 'pref5.test'):
        ids[dom] = env.send(d.port, 'a@sender.test', ['b@' + dom], MSG)
        d.wait_log(r'%s: to=<b@%s>, relay=none, delay=[\d.]+, delays=[\d./]+, dsn=5\.1\.0, '
                   r'status=bounced \(Domain %s does not accept mail \(nullMX\)\)$'
                   % (ids[dom], re.escape(dom), re.escape(dom)))

    # one bounce notice per message, to the sender, saying why
    notices = bounces.wait_messages(3)
    for dom in ids:
        n = [m for m in notices if ('b@' + dom).encode() in m['data']]
        assert len(n) == 1, (dom, [m['data'][:300] for m in notices])
        body = n[0]['data'].decode('utf-8', 'replace')
        assert n[0]['rcpts'] == ['a@sender.test'] and n[0]['from'] == ''
        assert 'Status: 5.1.0' in body, body
        assert 'Domain %s does not accept mail (nullMX)' % dom in body, body

    # the normal domain still goes out, through its MX
    qid = env.send(d.port, 'a@sender.test', ['b@ok.test'], MSG)
    d.wait_log(r'%s: to=<b@ok\.test>, relay=mx\.ok\.test\[127\.0\.0\.4\]:%d, .*status=sent'
               % (qid, trap_port))
    trap.wait_messages(1)
    time.sleep(0.5)
    assert trap.connections == 1 and [m['rcpts'] for m in trap.messages] == [['b@ok.test']]

    # no address lookup of the null MX domains, of their other MX, or of "."
    asked = queries(qlog)[before:]
    assert ('MX', 'null.test') in asked and ('MX', 'mixed.test') in asked, asked
    for t, name in asked:
        assert t == 'MX' or name in ('mx.ok.test',), asked
    assert 'deferred' not in d.log()
    d.stop()


def test_null_mx_bounces_without_connecting(env):
    dns, qlog = start_dns(env)
    run_level(env, dns, qlog, '')


def test_null_mx_bounces_with_dnssec_support_level(env):
    dns, qlog = start_dns(env)
    run_level(env, dns, qlog, 'dnssec')
