#!/usr/bin/env python3
"""Runs the integration tests: every `test_*` function of tests/integration/test_*.py.

    tests/integration/run.py [-j N] [-k SUBSTRING] [FILE...]

Each test gets a fresh harness.Env and at most TEST_TIMEOUT seconds.  Ends
with the line "N passed, N failed, N skipped"; exit 1 if anything failed.

Parallel runs.  With -j N (default: RELAYQ_TEST_JOBS, else the number of
CPUs, at most 3) up to N test FILES run at once, each in its own child
process; the tests of one file always run one after the other, in order.  A
file's output is printed in one piece when the file is done, so lines of
different files never interleave.  Every test already uses its own
temporary directory and free ports, so files do not share anything.

A file whose tests measure time (attempt times against `relayq explain`,
backoff schedules) can ask to run alone by defining, at module level,

    SERIAL = True

Such files run after the parallel ones, one at a time, with nothing else
of this suite running beside them.  -j 1 runs everything in this process,
one file after the other, as before.
"""
import glob
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TEST_TIMEOUT = int(os.environ.get('TEST_TIMEOUT', '180'))
MAX_JOBS = 3
SUMMARY = re.compile(r'^(\d+) passed, (\d+) failed, (\d+) skipped$')
SERIAL_RX = re.compile(r'^SERIAL\s*=\s*True\b', re.M)


class Timeout(Exception):
    pass


def on_alarm(signum, frame):
    raise Timeout('test ran longer than its time limit')


def run_file(path, pattern):
    """Runs one file's tests in this process; returns (passed, failed, skipped)."""
    passed = failed = skipped = 0
    signal.signal(signal.SIGALRM, on_alarm)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception:
        print('FAIL %s (import)' % name)
        traceback.print_exc()
        return 0, 1, 0
    for fname in sorted(n for n in dir(mod) if n.startswith('test_')):
        full = '%s.%s' % (name, fname)
        if pattern and pattern not in full:
            continue
        env = harness.Env(fname)
        t0 = time.time()
        # A file may need longer than the default (a package build walks
        # /usr twice): it says so with a module-level TIMEOUT.
        signal.alarm(max(TEST_TIMEOUT, getattr(mod, 'TIMEOUT', 0)))
        try:
            getattr(mod, fname)(env)
            signal.alarm(0)
            env.close()                 # the daemons exit: leak reports are written now
            reports = harness.sanitizer_reports(env)
            if reports:
                raise AssertionError('sanitizer report in relayqd output:\n' + '\n'.join(reports))
            print('ok   %-60s %5.1fs' % (full, time.time() - t0), flush=True)
            passed += 1
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
            traceback.print_exc(file=sys.stdout)
            env.close()
            for d in env.daemons:
                print('--- log of %s:\n%s' % (d.confdir, d.log()[-3000:]))
                print('--- stderr:\n%s' % d.stderr_text()[-2000:])
            print('(kept %s)' % env.dir, flush=True)
            failed += 1
    return passed, failed, skipped


def is_serial(path):
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            return bool(SERIAL_RX.search(f.read()))
    except OSError:
        return False


def has_match(path, pattern):
    """Cheap pre-filter for -k: skip starting a child for a file whose text
    cannot contain a matching test name."""
    if not pattern:
        return True
    name = os.path.splitext(os.path.basename(path))[0]
    if pattern in name:
        return True
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            text = f.read()
    except OSError:
        return True
    tests = re.findall(r'^def (test_\w+)', text, re.M)
    return not tests or any(pattern in '%s.%s' % (name, t) for t in tests)


def default_jobs():
    try:
        j = int(os.environ.get('RELAYQ_TEST_JOBS', '0'))
    except ValueError:
        j = 0
    if j <= 0:
        j = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
    return max(1, min(j, MAX_JOBS))


def start_child(path, pattern):
    cmd = [sys.executable, os.path.abspath(__file__), '--one', path]
    if pattern:
        cmd += ['-k', pattern]
    # its own process group, so an interrupted run can stop the whole file
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def finish_child(path, proc, out, totals):
    text = out.decode('utf-8', 'replace')
    lines = text.rstrip('\n').split('\n') if text else []
    m = SUMMARY.match(lines[-1]) if lines else None
    if m:
        lines = lines[:-1]
    body = '\n'.join(lines)
    if body:
        print(body, flush=True)
    if m and proc.returncode in (0, 1):
        for i in range(3):
            totals[i] += int(m.group(i + 1))
    else:
        name = os.path.splitext(os.path.basename(path))[0]
        print('FAIL %s (runner exited %s without a summary)' % (name, proc.returncode), flush=True)
        totals[1] += 1


def run_parallel(files, pattern, jobs):
    totals = [0, 0, 0]
    parallel = [f for f in files if not is_serial(f)]
    serial = [f for f in files if is_serial(f)]
    running = {}  # path -> (proc, list of output chunks)
    import selectors
    sel = selectors.DefaultSelector()

    def drain(block):
        for key, _ in sel.select(timeout=None if block else 0):
            path = key.data
            proc, chunks = running[path]
            data = os.read(key.fileobj.fileno(), 65536)
            if data:
                chunks.append(data)
                continue
            sel.unregister(key.fileobj)
            proc.stdout.close()
            proc.wait()
            del running[path]
            finish_child(path, proc, b''.join(chunks), totals)

    def launch(path):
        proc = start_child(path, pattern)
        running[path] = (proc, [])
        sel.register(proc.stdout, selectors.EVENT_READ, path)

    try:
        queue = list(parallel)
        while queue or running:
            while queue and len(running) < jobs:
                launch(queue.pop(0))
            drain(True)
        for path in serial:
            launch(path)
            while running:
                drain(True)
    except KeyboardInterrupt:
        for proc, _ in running.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except OSError:
                pass
        raise
    return totals


def main():
    args = sys.argv[1:]
    pattern = None
    jobs = None
    one = False
    while args:
        if args[0] == '-k' and len(args) >= 2:
            pattern = args[1]
            args = args[2:]
        elif args[0] == '-j' and len(args) >= 2:
            jobs = int(args[1])
            args = args[2:]
        elif args[0].startswith('-j') and args[0][2:].isdigit():
            jobs = int(args[0][2:])
            args = args[1:]
        elif args[0] == '--one':
            one = True
            args = args[1:]
        else:
            break
    here = os.path.dirname(os.path.abspath(__file__))
    files = args or sorted(glob.glob(os.path.join(here, 'test_*.py')))
    files = [f for f in files if has_match(f, pattern)]
    if jobs is None:
        jobs = default_jobs()
    totals = [0, 0, 0]
    if one or jobs <= 1 or len(files) <= 1:
        for path in files:
            r = run_file(path, pattern)
            for i in range(3):
                totals[i] += r[i]
    else:
        totals = run_parallel(files, pattern, jobs)
    print('%d passed, %d failed, %d skipped' % tuple(totals))
    return 1 if totals[1] else 0


if __name__ == '__main__':
    sys.exit(main())
