"""A throw-away Postfix instance for comparison tests: its own configuration,
queue and data directories under the test's directory, smtpd on a free
127.0.0.1 port, its log in a file (postlogd), no chroot, no DNS.  Never
touches /etc/postfix's instance.  Needs root."""
import os
import re
import shutil
import subprocess
import time

from harness import Skip, free_port, wait_port


class Postfix:
    def __init__(self, env, name='pf', **settings):
        if os.geteuid() != 0:
            raise Skip('a throw-away Postfix instance needs root')
        if not os.path.exists('/usr/sbin/postfix'):
            raise Skip('postfix not installed')
        self.dir = os.path.join(env.dir, name)
        self.conf = os.path.join(self.dir, 'etc')
        os.makedirs(self.conf)
        shutil.copy('/etc/postfix/master.cf', self.conf)
        if os.path.exists('/etc/postfix/dynamicmaps.cf'):
            shutil.copy('/etc/postfix/dynamicmaps.cf', self.conf)
        open(os.path.join(self.conf, 'main.cf'), 'w').close()
        os.makedirs(os.path.join(self.dir, 'spool'))      # root-owned, as postfix wants
        os.makedirs(os.path.join(self.dir, 'data'))
        shutil.chown(os.path.join(self.dir, 'data'), 'postfix')
        self.port = free_port()
        self.logfile = os.path.join(self.dir, 'maillog')
        p = {
            'compatibility_level': '3.6',
            'queue_directory': os.path.join(self.dir, 'spool'),
            'data_directory': os.path.join(self.dir, 'data'),
            'inet_interfaces': '127.0.0.1',
            'inet_protocols': 'ipv4',
            'myhostname': 'pf.test',
            'mydestination': '',
            'maillog_file': self.logfile,
            'smtp_dns_support_level': 'disabled',
            'disable_dns_lookups': 'yes',
            'smtp_tls_security_level': 'none',
            'alias_maps': '', 'alias_database': '',
            'local_transport': 'error:no local delivery',
            'master_service_disable': '',
        }
        p.update(settings)
        self.env = dict(os.environ, MAIL_CONFIG=self.conf)
        r = self._run(['postconf', '-c', self.conf, '-e'] + ['%s=%s' % kv for kv in p.items()])
        assert r.returncode == 0, r.stderr
        r = self._run(['postconf', '-c', self.conf, '-F', '*/*/chroot = n'])
        assert r.returncode == 0, r.stderr
        with open(os.path.join(self.conf, 'master.cf')) as fh:
            master = fh.read()
        master = re.sub(r'(?m)^smtp\s+inet\s.*$', '127.0.0.1:%d inet n - n - - smtpd' % self.port, master)
        if not re.search(r'(?m)^postlog\s', master):
            master += '\npostlog unix-dgram n - n - 1 postlogd\n'
        with open(os.path.join(self.conf, 'master.cf'), 'w') as fh:
            fh.write(master)
        self.started = False
        env.procs.append(self)              # stopped by env.close() via poll/terminate

    def _run(self, argv):
        return subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=120)

    def start(self):
        r = self._run(['postfix', '-c', self.conf, 'check'])
        if r.returncode != 0:
            raise Skip('postfix check failed: %s' % (r.stdout + r.stderr)[-400:])
        r = self._run(['postfix', '-c', self.conf, 'start'])
        if r.returncode != 0:
            raise Skip('postfix start failed: %s' % (r.stdout + r.stderr)[-400:])
        self.started = True
        wait_port(self.port, timeout=20)
        return self

    def log(self):
        try:
            with open(self.logfile, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def wait_log(self, pattern, timeout=20, count=1):
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        while True:
            n = sum(1 for l in self.log().splitlines() if rx.search(l))
            if n >= count:
                return n
            if time.time() > deadline:
                raise AssertionError('postfix log has %d/%d lines matching %r:\n%s'
                                     % (n, count, pattern, self.log()[-3000:]))
            time.sleep(0.1)

    # env.close() treats this like a process
    def poll(self):
        return None if self.started else 0

    def terminate(self):
        self.stop()

    def wait(self, timeout=None):
        return 0

    def kill(self):
        self.stop()

    def stop(self):
        if not self.started:
            return
        self.started = False
        self._run(['postfix', '-c', self.conf, 'stop'])
        pidf = os.path.join(self.dir, 'spool', 'pid', 'master.pid')
        deadline = time.time() + 10
        while os.path.exists(pidf) and time.time() < deadline:
            time.sleep(0.2)
