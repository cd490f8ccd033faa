#!/usr/bin/python3
"""A libmilter filter for the tests (Debian's python3-milter, a binding of
Sendmail's libmilter): every action a filter can take, chosen by the
message.  Run with Debian's /usr/bin/python3:

    milter_filter.py PORT [LOGFILE]

At RCPT: a recipient starting with "reject-" gets "550 5.7.1 no thanks",
"tempfail-" a tempfail, "discard-" discards the message.
At end of message, words in the Subject choose actions (several may be
combined): addheader insheader chgheader delheader replbody chgfrom addrcpt
delrcpt quarantine macros progress reject tempfail discard sleepN crash.
LOGFILE gets one line per event, so tests can check what the filter saw.
"""
import os
import sys
import time

import Milter

PORT = int(sys.argv[1])
LOG = sys.argv[2] if len(sys.argv) > 2 else None


def log(*a):
    if LOG:
        with open(LOG, 'a') as f:
            f.write(' '.join(str(x) for x in a) + '\n')


class Filter(Milter.Base):
    def __init__(self):
        self.subject = ''
        self.headers = []
        self.bodytext = b''

    def connect(self, hostname, family, hostaddr):
        log('connect', hostname, hostaddr[0] if hostaddr else '', 'j=%s' % self.getsymval('j'),
            'daemon_name=%s' % self.getsymval('{daemon_name}'), 'i=%s' % self.getsymval('i'))
        return Milter.CONTINUE

    def hello(self, name):
        log('helo', name)
        return Milter.CONTINUE

    def envfrom(self, f, *args):
        log('mail', f, *args)
        self.headers = []
        self.bodytext = b''
        self.subject = ''
        return Milter.CONTINUE

    def envrcpt(self, to, *args):
        log('rcpt', to, *args, 'rcpt_addr=%s' % self.getsymval('{rcpt_addr}'))
        local = to.strip('<>').split('@')[0]
        if local.startswith('reject-'):
            self.setreply('550', '5.7.1', 'no thanks')
            return Milter.REJECT
        if local.startswith('tempfail-'):
            return Milter.TEMPFAIL
        if local.startswith('discard-'):
            return Milter.DISCARD
        return Milter.CONTINUE

    def data(self):
        log('data', 'i=%s' % self.getsymval('i'))
        return Milter.CONTINUE

    def header(self, name, value):
        self.headers.append((name, value))
        if name.lower() == 'subject':
            self.subject = value.lower()
        log('header', name, repr(value))
        return Milter.CONTINUE

    def eoh(self):
        log('eoh')
        return Milter.CONTINUE

    def body(self, chunk):
        self.bodytext += chunk
        return Milter.CONTINUE

    def eom(self):
        s = self.subject
        log('eom', 'i=%s' % self.getsymval('i'), 'body=%r' % self.bodytext[:200])
        for w in s.split():
            if w.startswith('sleep'):
                time.sleep(int(w[5:] or '5'))
        if 'crash' in s:
            os._exit(1)
        if 'progress' in s:
            self.progress()
        if 'macros' in s:
            self.addheader('X-Macros', 'i=%s j=%s daemon_name=%s client_addr=%s mail_addr=%s' % (
                self.getsymval('i'), self.getsymval('j'), self.getsymval('{daemon_name}'),
                self.getsymval('{client_addr}'), self.getsymval('{mail_addr}')))
        if 'addheader' in s:
            self.addheader('X-Filter-Added', 'yes')
        if 'insheader' in s:
            self.addheader('X-Filter-Top', 'first', 0)
        if 'chgheader' in s:
            self.chgheader('X-Change-Me', 1, 'changed')
        if 'delheader' in s:
            self.chgheader('X-Remove-Me', 1, '')
        if 'replbody' in s:
            self.replacebody(b'The body was replaced.\r\n')
        if 'chgfrom' in s:
            self.chgfrom('<new-sender@filter.test>')
        if 'addrcpt' in s:
            self.addrcpt('<added@dest.test>', 'NOTIFY=NEVER')
        if 'delrcpt' in s:
            self.delrcpt('<second@dest.test>')
        if 'quarantine' in s:
            self.quarantine('looks suspicious')
        if 'reject' in s:
            self.setreply('554', '5.7.1', 'content rejected by the test filter')
            return Milter.REJECT
        if 'tempfail' in s:
            return Milter.TEMPFAIL
        if 'discard' in s:
            return Milter.DISCARD
        return Milter.ACCEPT

    def abort(self):
        log('abort')
        return Milter.CONTINUE

    def close(self):
        log('close')
        return Milter.CONTINUE


def main():
    Milter.factory = Filter
    Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.CHGBODY | Milter.ADDRCPT
                     | Milter.ADDRCPT_PAR | Milter.DELRCPT | Milter.CHGFROM | Milter.QUARANTINE)
    sys.stdout.flush()
    Milter.runmilter('relayq-test', 'inet:%d@127.0.0.1' % PORT, 60)


if __name__ == '__main__':
    main()
