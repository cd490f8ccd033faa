"""A second SMTP implementation as the next hop: aiosmtpd with STARTTLS and
AUTH (PLAIN, LOGIN), TLS required before AUTH and before mail.  Run with
Debian's /usr/bin/python3 (python3-aiosmtpd):

    aiosmtpd_peer.py PORT CERT KEY USER PASSWORD OUTDIR

Each message accepted is written to OUTDIR/N.eml with the login name,
whether TLS was on and the last SNI name received in OUTDIR/N.meta; "ready" goes to stdout when listening.
"""
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, user, password, outdir = sys.argv[1:7]
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
last_sni = ['']


def on_sni(sslobj, name, context):
    last_sni[0] = name or ''


ctx.sni_callback = on_sni


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user
          and auth_data.password.decode() == password)
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class Handler:
    n = 0

    async def handle_DATA(self, server, session, envelope):
        Handler.n += 1
        base = os.path.join(outdir, '%d' % Handler.n)
        with open(base + '.eml', 'wb') as f:
            f.write(envelope.original_content or envelope.content)
        with open(base + '.meta', 'w') as f:
            f.write('login=%s tls=%s from=%s to=%s sni=%s\n' % (
                session.auth_data.login.decode() if session.auth_data else '',
                session.ssl is not None, envelope.mail_from, ','.join(envelope.rcpt_tos),
                last_sni[0]))
        return '250 2.0.0 Ok: accepted by aiosmtpd'


c = Controller(Handler(), hostname='127.0.0.1', port=int(port), server_hostname='aio.test',
               tls_context=ctx, require_starttls=True, authenticator=authenticator,
               auth_require_tls=True, auth_required=True)
c.start()
print('ready', flush=True)
try:
    while True:
        time.sleep(1)
finally:
    c.stop()
