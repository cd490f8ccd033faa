"""DANE (RFC 7672) with smtp_dns_support_level = dnssec, entirely on loopback.

nsd serves two zones on a loopback port: dane.test, signed here with
ldns-signzone (keys from ldns-keygen), and plain.test, unsigned.  unbound, on
another loopback port, validates dane.test through a stub-zone and a trust
anchor for it (no root hints, no root anchor: plain.test is "insecure"); every
other name is stubbed to nsd too, which refuses it, and unbound's outgoing
interface is 127.0.0.1, so no query can leave 127.0.0.0/8.  relayq's
dns_servers points at unbound and trusts its AD bit.  The next hop is a TLS
peer on 127.0.0.1 whose certificate comes from a test CA.

The zone holds, per case, an MX host with an A record 127.0.0.1 and TLSA
records at _PORT._tcp.HOST for the peer's port: 3 1 1 of the peer's key
(verified), 3 1 1 of another key (mismatch), 2 0 1 of the test CA
(DANE-TA), none, PKIX-EE 1 1 1 only (unusable, as Postfix), and a TLSA
record altered after signing (bogus: unbound answers SERVFAIL)."""
import base64
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Skip, free_port, wait_port  # noqa: E402

MSG = 'From: a@sender.test\r\nSubject: dane\r\n\r\nunder DANE\r\n'
HOSTS = ('mx1', 'mx2', 'mx3', 'mx4', 'mx5', 'mx6')


def need(*exes):
    for e in exes:
        if shutil.which(e) is None and not os.path.exists(e):
            raise Skip('%s not installed (scripts/deps: nsd unbound ldnsutils)' % e)


def run(argv, cwd=None):
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, '%s: %s%s' % (argv, r.stdout, r.stderr)
    return r.stdout


def make_pki(env):
    """A test CA, the peer's certificate (every mxN.dane.test name), another key."""
    d = os.path.join(env.dir, 'pki')
    os.makedirs(d)
    p = lambda n: os.path.join(d, n)  # noqa: E731
    run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
         '-subj', '/CN=relayq dane test CA', '-keyout', p('ca.key'), '-out', p('ca.pem'),
         '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
    # not mx7.dane.test: DANE-TA(2) with that MX host matches on the domain, tadom.dane.test
    names = ['%s.dane.test' % h for h in HOSTS] + ['mx.plain.test', 'tadom.dane.test']
    run(['openssl', 'req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=mx1.dane.test',
         '-keyout', p('srv.key'), '-out', p('srv.csr')])
    with open(p('ext'), 'w') as f:
        f.write('subjectAltName=%s\nextendedKeyUsage=serverAuth\n' % ','.join('DNS:' + n for n in names))
    run(['openssl', 'x509', '-req', '-in', p('srv.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'),
         '-CAcreateserial', '-days', '2', '-extfile', p('ext'), '-out', p('srv.pem')])
    run(['openssl', 'genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', p('other.key')])
    # the peer sends its certificate and the CA (DANE-TA(2) needs the TA in the chain)
    with open(p('chain.pem'), 'w') as f:
        f.write(open(p('srv.pem')).read() + open(p('ca.pem')).read())
    return {n: p(n) for n in ('ca.pem', 'srv.pem', 'srv.key', 'chain.pem', 'other.key')}


def der(path, what):
    """DER of a certificate ('cert'), of its public key ('spki'), or of a key file's public key ('keyspki')."""
    if what == 'cert':
        return subprocess.run(['openssl', 'x509', '-in', path, '-outform', 'DER'],
                              capture_output=True, check=True).stdout
    if what == 'spki':
        pem = subprocess.run(['openssl', 'x509', '-in', path, '-noout', '-pubkey'],
                             capture_output=True, check=True).stdout
        return subprocess.run(['openssl', 'pkey', '-pubin', '-outform', 'DER'], input=pem,
                              capture_output=True, check=True).stdout
    return subprocess.run(['openssl', 'pkey', '-in', path, '-pubout', '-outform', 'DER'],
                          capture_output=True, check=True).stdout


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def signed_zone(d, zone, records):
    """Write and sign zone (ldns-keygen, ldns-signzone); returns (signed file, DS of the KSK)."""
    src = os.path.join(d, zone + '.zone')
    with open(src, 'w') as f:
        f.write('$ORIGIN %s.\n$TTL 300\n' % zone)
        f.write('@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 300\n' % (zone, zone))
        f.write('@ IN NS ns.%s.\nns IN A 127.0.0.1\n' % zone)
        f.write(records)
    ksk = run(['ldns-keygen', '-a', 'ECDSAP256SHA256', '-k', zone], cwd=d).strip()
    zsk = run(['ldns-keygen', '-a', 'ECDSAP256SHA256', zone], cwd=d).strip()
    run(['ldns-signzone', '-f', src + '.signed', src, ksk, zsk], cwd=d)
    ds = open(os.path.join(d, ksk + '.ds')).read().strip()
    return src + '.signed', ds


def dns_servers(env, zones, anchors):
    """nsd serving zones {name: file}, unbound validating with anchors (DS lines); unbound's port."""
    need('/usr/sbin/nsd', '/usr/sbin/unbound', 'ldns-signzone', 'ldns-keygen')
    d = os.path.join(env.dir, 'dns')
    os.makedirs(d, exist_ok=True)
    nsd_port, ub_port = free_port(), free_port()
    with open(os.path.join(d, 'nsd.conf'), 'w') as f:
        f.write('server:\n  ip-address: 127.0.0.1\n  port: %d\n  username: ""\n  chroot: ""\n'
                '  zonesdir: "%s"\n  database: ""\n  zonelistfile: "%s/zone.list"\n'
                '  xfrdfile: "%s/xfrd.state"\n  pidfile: "%s/nsd.pid"\n  logfile: "%s/nsd.log"\n'
                '  server-count: 1\n  do-ip6: no\n  verbosity: 1\n'
                'remote-control:\n  control-enable: no\n' % (nsd_port, d, d, d, d, d))
        for name, path in zones.items():
            f.write('zone:\n  name: "%s"\n  zonefile: "%s"\n' % (name, path))
    with open(os.path.join(d, 'anchors'), 'w') as f:
        f.write('\n'.join(anchors) + '\n')
    with open(os.path.join(d, 'unbound.conf'), 'w') as f:
        f.write('server:\n  interface: 127.0.0.1\n  port: %d\n  do-daemonize: no\n  username: ""\n'
                '  chroot: ""\n  directory: "%s"\n  pidfile: "%s/unbound.pid"\n  use-syslog: no\n'
                '  logfile: "%s/unbound.log"\n  verbosity: 1\n  val-log-level: 2\n'
                '  do-ip6: no\n  outgoing-interface: 127.0.0.1\n  do-not-query-localhost: no\n'
                '  module-config: "validator iterator"\n  trust-anchor-file: "%s/anchors"\n'
                '  access-control: 127.0.0.0/8 allow\n  qname-minimisation: no\n'
                '  harden-dnssec-stripped: yes\n  local-zone: "test." nodefault\n  trust-anchor-signaling: no\n'
                'remote-control:\n  control-enable: no\n' % (ub_port, d, d, d, d))
        # every name goes to nsd: the test zones answer, the rest is refused there
        for name in list(zones) + ['.']:
            f.write('stub-zone:\n  name: "%s"\n  stub-addr: 127.0.0.1@%d\n' % (name, nsd_port))
    run(['nsd-checkconf', os.path.join(d, 'nsd.conf')])
    run(['unbound-checkconf', os.path.join(d, 'unbound.conf')])
    env.spawn(['/usr/sbin/nsd', '-d', '-c', os.path.join(d, 'nsd.conf')])
    env.spawn(['/usr/sbin/unbound', '-d', '-c', os.path.join(d, 'unbound.conf')])
    for port in (nsd_port, ub_port):
        deadline = time.time() + 20
        while not dig_ok(port, 'ns.dane.test') and time.time() < deadline:
            time.sleep(0.2)
    assert dig_ok(ub_port, 'ns.dane.test'), open(os.path.join(d, 'unbound.log')).read()
    return ub_port, d


def query(port, name, qtype, dnssec=True):
    """One UDP query (with DO and AD when dnssec): (rcode, ad, ancount)."""
    qname = b''.join(bytes([len(lab)]) + lab.encode() for lab in name.split('.')) + b'\x00'
    hdr = b'\x42\x42\x01' + (b'\x20' if dnssec else b'\x00') + b'\x00\x01\x00\x00\x00\x00\x00\x01'
    opt = b'\x00\x00\x29\x04\xd0\x00\x00' + (b'\x80' if dnssec else b'\x00') + b'\x00\x00\x00'
    q = hdr + qname + qtype.to_bytes(2, 'big') + b'\x00\x01' + opt
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    try:
        s.sendto(q, ('127.0.0.1', port))
        r = s.recv(4096)
    finally:
        s.close()
    return r[3] & 0x0F, bool(r[3] & 0x20), int.from_bytes(r[6:8], 'big')


def dig_ok(port, name):
    try:
        return query(port, name, 1)[0] == 0
    except OSError:
        return False


def tls_peer(env, pki):
    port = free_port()
    out = os.path.join(env.dir, 'peer')
    os.makedirs(out)
    env.spawn([sys.executable, os.path.join(os.path.dirname(__file__), 'tls_peer.py'),
               '127.0.0.1', str(port), pki['chain.pem'], pki['srv.key'], out])
    wait_port(port, timeout=20)
    return port, out


def delivered(out):
    return len([f for f in os.listdir(out) if f.endswith('.meta')])


def setup(env):
    """The peer, the zones, nsd and unbound; returns (peer port, peer dir, unbound port)."""
    need('/usr/sbin/nsd', '/usr/sbin/unbound', 'ldns-signzone', 'ldns-keygen')
    pki = make_pki(env)
    port, out = tls_peer(env, pki)
    ee = sha256(der(pki['srv.pem'], 'spki'))
    wrong = sha256(der(pki['other.key'], 'keyspki'))
    ta = sha256(der(pki['ca.pem'], 'cert'))
    zd = os.path.join(env.dir, 'zones')
    os.makedirs(zd)
    t = '_%d._tcp' % port
    recs = ''.join('%s MX 10 %s\n' % (dom, mx) for dom, mx in (
        ('good', 'mx1'), ('bad', 'mx2'), ('ta', 'mx3'), ('none', 'mx4'), ('none2', 'mx4'),
        ('bogus', 'mx5'), ('pkix', 'mx6'), ('tadom', 'mx7')))
    recs += ''.join('%s A 127.0.0.1\n' % h for h in HOSTS + ('mx7',))
    recs += '%s.mx7 TLSA 2 0 1 %s\n' % (t, ta)
    recs += ('%s.mx1 TLSA 3 1 1 %s\n%s.mx2 TLSA 3 1 1 %s\n%s.mx3 TLSA 2 0 1 %s\n'
             '%s.mx5 TLSA 3 1 1 %s\n%s.mx6 TLSA 1 1 1 %s\n' % (t, ee, t, wrong, t, ta, t, wrong, t, ee))
    # MX hosts that are CNAMEs (test_dane_cname): TLSA records at the target
    # and/or at the alias; cn4 leads to mx3 and its DANE-TA(2) record
    recs += ''.join('%s MX 10 %s\n' % (dom, mx) for dom, mx in (
        ('cname', 'cn1'), ('cname2', 'cn2'), ('cnta', 'cn4'), ('cnbad', 'cn5'),
        ('cnout', 'cn6'), ('cnoutbad', 'cn7')))
    recs += 'cn1 CNAME tgt1\ncn2 CNAME tgt2\ncn4 CNAME mx3\ncn5 CNAME tgt5\n'
    # signed CNAMEs to the unsigned zone's host, TLSA records at the aliases
    recs += 'cn6 CNAME mx.plain.test.\ncn7 CNAME mx.plain.test.\n'
    recs += '%s.cn6 TLSA 3 1 1 %s\n%s.cn7 TLSA 3 1 1 %s\n' % (t, ee, t, wrong)
    recs += ''.join('%s A 127.0.0.1\n' % h for h in ('tgt1', 'tgt2', 'tgt5'))
    recs += ('%s.tgt1 TLSA 3 1 1 %s\n%s.cn1 TLSA 3 1 1 %s\n%s.cn2 TLSA 3 1 1 %s\n'
             '%s.tgt5 TLSA 3 1 1 %s\n%s.cn5 TLSA 3 1 1 %s\n' % (t, ee, t, wrong, t, ee, t, wrong, t, ee))
    signed, ds = signed_zone(zd, 'dane.test', recs)
    # mx5: a record altered after signing (its RRSIG no longer matches): bogus,
    # even though the altered record matches the peer's key
    text = open(signed).read()
    pat = re.compile(r'^(%s\.mx5\.dane\.test\.\s+\d+\s+IN\s+TLSA\s+3 1 1 )%s$' % (re.escape(t), wrong), re.M)
    assert pat.search(text), text
    with open(signed, 'w') as f:
        f.write(pat.sub(lambda m: m.group(1) + ee, text))
    plain = os.path.join(zd, 'plain.test.zone')
    with open(plain, 'w') as f:
        # unsigned: even a TLSA record (here of another key) is not trusted
        f.write('$ORIGIN plain.test.\n$TTL 300\n@ IN SOA ns.plain.test. h.plain.test. 1 3600 600 86400 300\n'
                '@ IN NS ns\nns A 127.0.0.1\n@ MX 10 mx\nonly MX 10 mx\nmx A 127.0.0.1\n'
                # unsigned MX records naming MX hosts of the signed zone
                'half MX 10 mx1.dane.test.\nhalfbad MX 10 mx2.dane.test.\n'
                '%s.mx TLSA 3 1 1 %s\n' % (t, wrong))
    ub, ddir = dns_servers(env, {'dane.test': signed, 'plain.test': plain}, [ds])
    # the resolver validates: AD for the signed zone, none for the unsigned one,
    # SERVFAIL for the altered record, nothing at all outside the test zones
    assert query(ub, 'good.dane.test', 15) == (0, True, 2), query(ub, 'good.dane.test', 15)
    assert query(ub, 'plain.test', 15)[:2] == (0, False)
    assert query(ub, '%s.mx5.dane.test' % t, 52)[0] == 2
    assert query(ub, 'example.com', 1)[0] != 0
    return port, out, ub, pki


def test_dane(env):
    port, out, ub, pki = setup(env)
    doms = ('good', 'bad', 'ta', 'none', 'none2', 'bogus', 'pkix')
    tmap = ', '.join('%s.dane.test=smtp:%s.dane.test:%d' % (x, x, port) for x in doms)
    tmap += ', plain.test=smtp:plain.test:%d, only.plain.test=smtp:only.plain.test:%d' % (port, port)
    tmap += ', bracket.test=smtp:[mx1.dane.test]:%d' % port
    tmap += ', half.plain.test=smtp:half.plain.test:%d, halfbad.plain.test=smtp:halfbad.plain.test:%d' % (
        port, port)
    tmap += ', tadom.dane.test=smtp:tadom.dane.test:%d, tahost.test=smtp:[mx7.dane.test]:%d' % (port, port)
    pol = os.path.join(env.dir, 'tls_policy')
    with open(pol, 'w') as f:
        f.write('only.plain.test:%d dane-only\nnone2.dane.test:%d dane-only\n' % (port, port))
    # smtp_tls_CAfile trusts the peer's CA: a TLSA mismatch must still fail
    d = env.relayqd(relayhost='', dns_servers='127.0.0.1:%d' % ub, transport_maps='inline:{ %s }' % tmap,
                    smtp_dns_support_level='dnssec', smtp_tls_security_level='dane',
                    smtp_tls_policy_maps='texthash:' + pol, smtp_tls_CAfile=pki['ca.pem'],
                    smtp_tls_loglevel='1', smtp_connection_cache_on_demand='no',
                    queue_run_delay='300s', minimal_backoff_time='300s')
    relay = lambda h: r'relay=%s\[127\.0\.0\.1\]:%d' % (re.escape(h), port)  # noqa: E731

    # DANE-EE(3) SPKI(1) SHA2-256(1) matching the peer's key: verified, sent
    q = env.send(d.port, 'a@sender.test', ['b@good.dane.test'], MSG)
    d.wait_log(r'Verified TLS connection established to mx1\.dane\.test\[127\.0\.0\.1\]:%d: TLS' % port,
               timeout=60)
    d.wait_log(r'%s: to=<b@good\.dane\.test>, %s, .*status=sent' % (q, relay('mx1.dane.test')), timeout=60)
    assert delivered(out) == 1

    # a TLSA record of another key: not verified (the CA trusted by
    # smtp_tls_CAfile does not help), deferred, nothing sent
    q = env.send(d.port, 'a@sender.test', ['b@bad.dane.test'], MSG)
    d.wait_log(r'%s: to=<b@bad\.dane\.test>, %s, .*dsn=4\.7\.5, status=deferred '
               r'\(Server certificate not verified\)' % (q, relay('mx2.dane.test')), timeout=60)
    d.wait_log(r'certificate verification failed for mx2\.dane\.test\[127\.0\.0\.1\]:%d' % port)
    assert delivered(out) == 1

    # DANE-TA(2) of the test CA: the chain and the name (the TLSA base) verified
    q = env.send(d.port, 'a@sender.test', ['b@ta.dane.test'], MSG)
    d.wait_log(r'Verified TLS connection established to mx3\.dane\.test\[127\.0\.0\.1\]:%d' % port, timeout=60)
    d.wait_log(r'%s: to=<b@ta\.dane\.test>, .*status=sent' % q, timeout=60)
    assert delivered(out) == 2

    # no TLSA records: "dane" is opportunistic TLS ("may"); dane-only defers
    q = env.send(d.port, 'a@sender.test', ['b@none.dane.test'], MSG)
    d.wait_log(r'%s: to=<b@none\.dane\.test>, .*status=sent' % q, timeout=60)
    q = env.send(d.port, 'a@sender.test', ['b@none2.dane.test'], MSG)
    d.wait_log(r'%s: to=<b@none2\.dane\.test>, .*dsn=4\.7\.5, status=deferred '
               r'\(no TLSA records found\)' % q, timeout=60)
    assert delivered(out) == 3

    # a bogus signature: unbound answers SERVFAIL, the TLSA lookup fails, deferred
    q = env.send(d.port, 'a@sender.test', ['b@bogus.dane.test'], MSG)
    d.wait_log(r'warning: DANE TLSA lookup problem: .*name=_%d\._tcp\.mx5\.dane\.test type=TLSA' % port,
               timeout=60)
    d.wait_log(r'%s: to=<b@bogus\.dane\.test>, .*dsn=4\.7\.5, status=deferred '
               r'\(TLSA lookup error for mx5\.dane\.test:%d\)' % (q, port), timeout=60)
    assert delivered(out) == 3

    # PKIX-EE(1): not used for SMTP (Postfix), so the records are unusable:
    # TLS is mandatory but not verified ("encrypt")
    q = env.send(d.port, 'a@sender.test', ['b@pkix.dane.test'], MSG)
    d.wait_log(r'warning: _%d\._tcp\.mx6\.dane\.test unsupported TLSA certificate usage: 1 1 1 [0-9A-F]{64}'
               % port, timeout=60)
    d.wait_log(r'%s: to=<b@pkix\.dane\.test>, .*status=sent' % q, timeout=60)
    assert delivered(out) == 4

    # an unsigned zone: its TLSA record (of another key) is not trusted, "may" applies;
    # dane-only defers
    q = env.send(d.port, 'a@sender.test', ['b@plain.test'], MSG)
    d.wait_log(r'%s: to=<b@plain\.test>, %s, .*status=sent' % (q, relay('mx.plain.test')), timeout=60)
    q = env.send(d.port, 'a@sender.test', ['b@only.plain.test'], MSG)
    d.wait_log(r'%s: to=<b@only\.plain\.test>, .*dsn=4\.7\.5, status=deferred '
               r'\(non DNSSEC destination\)' % q, timeout=60)
    assert delivered(out) == 5

    # [host]: no MX lookup, the host's own secure address and TLSA records
    q = env.send(d.port, 'a@sender.test', ['b@bracket.test'], MSG)
    d.wait_log(r'%s: to=<b@bracket\.test>, %s, .*status=sent' % (q, relay('mx1.dane.test')), timeout=60)
    assert delivered(out) == 6

    # an unsigned MX RRset naming a host with signed TLSA records: Postfix 3.7's
    # default smtp_tls_dane_insecure_mx_policy (dane, with level dane) still
    # requires a match, but logs "Trusted", never "Verified"
    q = env.send(d.port, 'a@sender.test', ['b@half.plain.test'], MSG)
    d.wait_log(r'Trusted TLS connection established to mx1\.dane\.test\[127\.0\.0\.1\]:%d' % port, timeout=60)
    d.wait_log(r'%s: to=<b@half\.plain\.test>, %s, .*status=sent' % (q, relay('mx1.dane.test')), timeout=60)
    q = env.send(d.port, 'a@sender.test', ['b@halfbad.plain.test'], MSG)
    d.wait_log(r'%s: to=<b@halfbad\.plain\.test>, %s, .*dsn=4\.7\.5, status=deferred '
               r'\(Server certificate not verified\)' % (q, relay('mx2.dane.test')), timeout=60)
    assert delivered(out) == 7

    # DANE-TA(2), a certificate that names the domain but not its MX host:
    # verified through MX (the next-hop domain is a match name, as in Postfix);
    # the same host as [mx7.dane.test] has no such domain: name mismatch, deferred
    q = env.send(d.port, 'a@sender.test', ['b@tadom.dane.test'], MSG)
    d.wait_log(r'Verified TLS connection established to mx7\.dane\.test\[127\.0\.0\.1\]:%d' % port, timeout=60)
    d.wait_log(r'%s: to=<b@tadom\.dane\.test>, %s, .*status=sent' % (q, relay('mx7.dane.test')), timeout=60)
    q = env.send(d.port, 'a@sender.test', ['b@tahost.test'], MSG)
    d.wait_log(r'%s: to=<b@tahost\.test>, %s, .*dsn=4\.7\.5, status=deferred '
               r'\(Server certificate not verified\)' % (q, relay('mx7.dane.test')), timeout=60)
    assert delivered(out) == 8
    log = d.log()
    assert 'Verified TLS connection established to mx6' not in log
    assert 'Verified TLS connection established to mx.plain.test' not in log
    assert 'Verified TLS connection established to mx4' not in log
    assert len(re.findall(r'Verified TLS connection established to mx1\.dane\.test', log)) == 2, log


def test_dane_cname(env):
    """An MX host that is a CNAME (RFC 7672 section 2.2.2, Postfix's
    tls_dane_resolve()): with a secure chain the TLSA records are looked up
    at the target first, which is then the base domain (DANE-TA(2) matches
    the certificate against it); at the alias only when the target has none;
    never at the alias after a target whose records do not match."""
    port, out, ub, pki = setup(env)
    doms = ('cname', 'cname2', 'cnta', 'cnbad', 'cnout', 'cnoutbad')
    tmap = ', '.join('%s.dane.test=smtp:%s.dane.test:%d' % (x, x, port) for x in doms)
    d = env.relayqd(relayhost='', dns_servers='127.0.0.1:%d' % ub, transport_maps='inline:{ %s }' % tmap,
                    smtp_dns_support_level='dnssec', smtp_tls_security_level='dane',
                    smtp_tls_loglevel='1', smtp_connection_cache_on_demand='no',
                    queue_run_delay='300s', minimal_backoff_time='300s')

    # target: the peer's key; alias: another key.  The target's record wins.
    q = env.send(d.port, 'a@sender.test', ['b@cname.dane.test'], MSG)
    d.wait_log(r'Verified TLS connection established to cn1\.dane\.test\[127\.0\.0\.1\]:%d' % port, timeout=60)
    d.wait_log(r'%s: to=<b@cname\.dane\.test>, relay=cn1\.dane\.test\[127\.0\.0\.1\]:%d, .*status=sent'
               % (q, port), timeout=60)
    assert delivered(out) == 1

    # no TLSA records at the target: the alias's
    q = env.send(d.port, 'a@sender.test', ['b@cname2.dane.test'], MSG)
    d.wait_log(r'Verified TLS connection established to cn2\.dane\.test\[127\.0\.0\.1\]:%d' % port, timeout=60)
    d.wait_log(r'%s: to=<b@cname2\.dane\.test>, .*status=sent' % q, timeout=60)
    assert delivered(out) == 2

    # DANE-TA(2) at the target mx3: the certificate names mx3, not cn4 nor cnta
    q = env.send(d.port, 'a@sender.test', ['b@cnta.dane.test'], MSG)
    d.wait_log(r'Verified TLS connection established to cn4\.dane\.test\[127\.0\.0\.1\]:%d' % port, timeout=60)
    d.wait_log(r'%s: to=<b@cnta\.dane\.test>, .*status=sent' % q, timeout=60)
    assert delivered(out) == 3

    # target: another key; alias: the peer's.  No fall back: not verified, deferred
    q = env.send(d.port, 'a@sender.test', ['b@cnbad.dane.test'], MSG)
    d.wait_log(r'%s: to=<b@cnbad\.dane\.test>, .*dsn=4\.7\.5, status=deferred '
               r'\(Server certificate not verified\)' % q, timeout=60)
    assert delivered(out) == 3

    # a signed CNAME to a host in the unsigned zone: the address is not
    # secure, but the alias's own CNAME record is, so its TLSA records count
    # (Postfix's qname_secure()): a match verifies, a mismatch defers
    q = env.send(d.port, 'a@sender.test', ['b@cnout.dane.test'], MSG)
    d.wait_log(r'Verified TLS connection established to cn6\.dane\.test\[127\.0\.0\.1\]:%d' % port, timeout=60)
    d.wait_log(r'%s: to=<b@cnout\.dane\.test>, .*status=sent' % q, timeout=60)
    assert delivered(out) == 4
    q = env.send(d.port, 'a@sender.test', ['b@cnoutbad.dane.test'], MSG)
    d.wait_log(r'%s: to=<b@cnoutbad\.dane\.test>, .*dsn=4\.7\.5, status=deferred '
               r'\(Server certificate not verified\)' % q, timeout=60)
    assert delivered(out) == 4


def test_dane_without_dnssec_lookups(env):
    """dane without smtp_dns_support_level = dnssec: Postfix's warning, "may";
    dane-only: a configuration problem, deferred."""
    port, out, ub, pki = setup(env)
    d = env.relayqd(relayhost='', dns_servers='127.0.0.1:%d' % ub,
                    transport_maps='inline:{ good.dane.test=smtp:good.dane.test:%d, '
                                   'bad.dane.test=smtp:bad.dane.test:%d }' % (port, port),
                    smtp_tls_security_level='dane', smtp_tls_policy_maps='inline:{ bad.dane.test:%d=dane-only }'
                    % port, smtp_tls_loglevel='1', queue_run_delay='300s', minimal_backoff_time='300s')
    r = env.cli(d, 'config', '--check')
    assert 'smtp_dns_support_level' in r.stdout + r.stderr, r.stdout + r.stderr
    q = env.send(d.port, 'a@sender.test', ['b@good.dane.test'], MSG)
    d.wait_log(r'warning: good\.dane\.test:%d: dane configured with dnssec lookups disabled' % port,
               timeout=60)
    d.wait_log(r'%s: to=<b@good\.dane\.test>, .*status=sent' % q, timeout=60)
    q = env.send(d.port, 'a@sender.test', ['b@bad.dane.test'], MSG)
    d.wait_log(r'warning: bad\.dane\.test:%d: dane-only configured with dnssec lookups disabled' % port,
               timeout=60)
    d.wait_log(r'%s: to=<b@bad\.dane\.test>, .*dsn=4\.7\.5, status=deferred '
               r'\(client TLS configuration problem\)' % q, timeout=60)
    assert delivered(out) == 1
    assert 'Verified TLS' not in d.log()
