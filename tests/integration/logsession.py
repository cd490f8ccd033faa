"""The scripted client session for the log-tool comparisons."""
import base64
import socket
import time


class Raw:
    def __init__(self, port):
        self.s = socket.create_connection(('127.0.0.1', port), timeout=30)
        self.f = self.s.makefile('rb')
        self.greeting = self.reply()

    def reply(self):
        lines = []
        while True:
            l = self.f.readline().decode('utf-8', 'replace').rstrip('\r\n')
            lines.append(l)
            if len(l) < 4 or l[3] != '-':
                return '\n'.join(lines)

    def cmd(self, line):
        self.s.sendall(line.encode() + b'\r\n')
        return self.reply()

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def scripted_session(port, auth=True):
    """The same traffic against any MTA: a relay attempt (three times, once
    with address literals), a client
    that hits smtpd_hard_error_limit, a client that drops the connection
    after RCPT, a failed AUTH (when offered), and one accepted message.
    Returns what each step got back."""
    got = {}
    for i in range(2):
        c = Raw(port)
        c.cmd('EHLO outside.test')
        c.cmd('MAIL FROM:<s@sender.test>')
        got['relay%d' % i] = c.cmd('RCPT TO:<x@elsewhere.test>')
        c.cmd('QUIT')
        c.close()
    # hostile: another address in HELO and in the recipient, for a log
    # parser that takes the first [address] it sees
    c = Raw(port)
    c.cmd('EHLO [192.0.2.99]')
    c.cmd('MAIL FROM:<s@[192.0.2.98]>')
    got['relay_literal'] = c.cmd('RCPT TO:<x@[192.0.2.66]>')
    c.cmd('QUIT')
    c.close()
    c = Raw(port)
    c.cmd('EHLO noisy.test')
    last = ''
    for i in range(25):
        last = c.cmd('XYZZY %d' % i)
        if last.startswith('421') or not last:
            break
    got['errors'] = last
    c.close()
    c = Raw(port)
    c.cmd('EHLO dropper.test')
    c.cmd('MAIL FROM:<s@sender.test>')
    got['drop_rcpt'] = c.cmd('RCPT TO:<ok@dest.test>')
    c.close()
    c = Raw(port)
    ehlo = c.cmd('EHLO auth.test')
    got['auth_offered'] = 'AUTH' in ehlo
    if auth and got['auth_offered']:
        cred = base64.b64encode(b'\0nobody@sender.test\0wrong password').decode()
        got['auth'] = c.cmd('AUTH PLAIN ' + cred)
    c.cmd('QUIT')
    c.close()
    c = Raw(port)
    c.cmd('EHLO good.test')
    c.cmd('MAIL FROM:<s@sender.test>')
    c.cmd('RCPT TO:<ok@dest.test>')
    c.cmd('DATA')
    got['data'] = c.cmd('Subject: ok\r\n\r\nok\r\n.')
    c.cmd('QUIT')
    c.close()
    return got
