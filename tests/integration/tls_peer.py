"""A minimal TLS-capable SMTP next hop for the MTA-STS tests (standard
library only): STARTTLS with CERT/KEY, no AUTH, every message accepted.

    tls_peer.py ADDR PORT CERT KEY OUTDIR

Each message goes to OUTDIR/N.eml, with "tls=True|False" in N.meta;
"ready" goes to stdout when listening.
"""
import os
import socket
import ssl
import sys
import threading

addr, port, cert, key, outdir = sys.argv[1:6]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
lock = threading.Lock()
count = [0]


def serve(conn):
    conn.settimeout(60)
    f = conn.makefile('rb')
    tls = False

    def say(s):
        conn.sendall(s.encode() + b'\r\n')

    try:
        say('220 peer.sts.test ESMTP')
        rcpts, sender = [], ''
        while True:
            line = f.readline(2048)
            if not line:
                return
            cmd = line.decode('latin-1').strip()
            verb = cmd[:4].upper()
            if verb in ('EHLO', 'HELO'):
                say('250-peer.sts.test' + ('' if tls else '\r\n250-STARTTLS') + '\r\n250 8BITMIME')
            elif verb == 'STAR' and not tls:
                say('220 2.0.0 Ready to start TLS')
                conn = ctx.wrap_socket(conn, server_side=True)
                f = conn.makefile('rb')
                tls = True
            elif verb == 'MAIL':
                sender, rcpts = cmd[10:], []
                say('250 2.1.0 Ok')
            elif verb == 'RCPT':
                rcpts.append(cmd[8:])
                say('250 2.1.5 Ok')
            elif verb == 'DATA':
                say('354 End data with <CR><LF>.<CR><LF>')
                body = []
                while True:
                    ln = f.readline(100000)
                    if not ln or ln in (b'.\r\n', b'.\n'):
                        break
                    body.append(ln)
                with lock:
                    count[0] += 1
                    n = count[0]
                base = os.path.join(outdir, '%d' % n)
                with open(base + '.eml', 'wb') as out:
                    out.write(b''.join(body))
                with open(base + '.meta', 'w') as out:
                    out.write('tls=%s from=%s to=%s\n' % (tls, sender, ','.join(rcpts)))
                say('250 2.0.0 Ok: queued as PEER%d' % n)
            elif verb == 'RSET' or verb == 'NOOP':
                say('250 2.0.0 Ok')
            elif verb == 'QUIT':
                say('221 2.0.0 Bye')
                return
            else:
                say('502 5.5.2 Error: command not recognized')
    except (OSError, ssl.SSLError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((addr, int(port)))
srv.listen(16)
print('ready', flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
