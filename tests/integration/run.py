#!/usr/bin/env python3
"""Runs the integration tests: every `test_*` function of tests/integration/test_*.py.

    tests/integration/run.py [-k SUBSTRING] [FILE...]

Each test gets a fresh harness.Env and at most TEST_TIMEOUT seconds.  Ends
with the line "N passed, N failed, N skipped"; exit 1 if anything failed.
"""
import glob
import importlib.util
import os
import signal
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TEST_TIMEOUT = int(os.environ.get('TEST_TIMEOUT', '180'))


class Timeout(Exception):
    pass


def on_alarm(signum, frame):
    raise Timeout('test ran longer than %ds' % TEST_TIMEOUT)


def main():
    args = sys.argv[1:]
    pattern = None
    if len(args) >= 2 and args[0] == '-k':
        pattern = args[1]
        args = args[2:]
    here = os.path.dirname(os.path.abspath(__file__))
    files = args or sorted(glob.glob(os.path.join(here, 'test_*.py')))
    passed = failed = skipped = 0
    signal.signal(signal.SIGALRM, on_alarm)
    for path in files:
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except Exception:
            print('FAIL %s (import)' % name)
            traceback.print_exc()
            failed += 1
            continue
        for fname in sorted(n for n in dir(mod) if n.startswith('test_')):
            full = '%s.%s' % (name, fname)
            if pattern and pattern not in full:
                continue
            env = harness.Env(fname)
            t0 = time.time()
            signal.alarm(TEST_TIMEOUT)
            try:
                getattr(mod, fname)(env)
                signal.alarm(0)
                print('ok   %-60s %5.1fs' % (full, time.time() - t0), flush=True)
                passed += 1
                env.close()
                env.cleanup()
            except harness.Skip as e:
                signal.alarm(0)
                print('skip %-60s (%s)' % (full, e), flush=True)
                skipped += 1
                env.close()
                env.cleanup()
            except BaseException as e:  # noqa: B036 - report everything, then go on
                signal.alarm(0)
                if isinstance(e, KeyboardInterrupt):
                    raise
                print('FAIL %-60s %5.1fs' % (full, time.time() - t0), flush=True)
                traceback.print_exc()
                env.close()
                for d in env.daemons:
                    print('--- log of %s:\n%s' % (d.confdir, d.log()[-3000:]))
                    print('--- stderr:\n%s' % d.stderr_text()[-2000:])
                print('(kept %s)' % env.dir)
                failed += 1
    print('%d passed, %d failed, %d skipped' % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
