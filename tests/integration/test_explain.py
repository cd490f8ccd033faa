"""`relayq explain` for a configuration: the seed example of the spec, JSON
as CONTRACT.md gives it, and the SVG picture (parsed, and rendered by
headless Chromium to a PNG that is not blank)."""
import json
import os
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib

from harness import Skip

SEED = dict(queue_run_delay='900s', minimal_backoff_time='900s', maximal_backoff_time='3600s',
            maximal_queue_lifetime='1d')


def test_seed_timeline_json(env):
    d = env.relayqd(start=False, **SEED)
    # the seed: arrival 35 s after a queue run, each attempt takes 16 s (spec section 13)
    r = env.cli(d, 'explain', '--json', '--arrival-offset', '35', '--attempt-duration', '16', check=True)
    tl = json.loads(r.stdout)
    assert tl['parameters']['queue_run_delay'] == 900
    at = [a['at'] for a in tl['attempts']]
    assert at[:4] == [0, 1765, 3565, 7165], at[:4]
    steps = {b - a for a, b in zip(at[3:], at[4:])}
    assert steps == {4500}, steps            # every 75 minutes, not 60
    assert len(at) == 22
    assert tl['expiry']['at'] == 88181 - 0 or abs(tl['expiry']['at'] - 88181) <= 1, tl['expiry']
    for a in tl['attempts']:
        for k in ('n', 'at', 'ends', 'backoff', 'eligible', 'queue_run'):
            assert k in a, (k, a)
    assert tl['delay_warning'] is None


def test_seed_timeline_text(env):
    d = env.relayqd(start=False, **SEED)
    r = env.cli(d, 'explain', '--arrival-offset', '35', '--attempt-duration', '16', check=True)
    assert '29m25s' in r.stdout, r.stdout       # the first retry, 1765 s after arrival
    assert 'returned to sender' in r.stdout or 'expire' in r.stdout


def png_pixels(path):
    """Decode an 8-bit RGB/RGBA non-interlaced PNG; returns (width, height, rows of bytes, bpp)."""
    data = open(path, 'rb').read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    pos, idat, hdr = 8, b'', None
    while pos < len(data):
        n, kind = struct.unpack('>I4s', data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b'IHDR':
            hdr = struct.unpack('>IIBBBBB', body)
        elif kind == b'IDAT':
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = hdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, hdr
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(h):
        f = raw[i]
        line = bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, rows, bpp


def test_svg_is_wellformed_and_renders(env):
    d = env.relayqd(start=False, **SEED)
    svg = os.path.join(env.dir, 'timeline.svg')
    r = env.cli(d, 'explain', '--arrival-offset', '35', '--attempt-duration', '16', '--svg', svg, check=True)
    js = json.loads(env.cli(d, 'explain', '--json', '--arrival-offset', '35', '--attempt-duration', '16',
                            check=True).stdout)
    root = ET.parse(svg).getroot()
    assert root.tag.endswith('svg'), root.tag
    marks = [e for e in root.iter() if 'attempt' in (e.get('class') or '').split()]
    assert len(marks) == len(js['attempts']), (len(marks), len(js['attempts']))
    chromium = shutil.which('chromium') or shutil.which('chromium-browser')
    if not chromium:
        raise Skip('chromium not installed')
    png = os.path.join(env.dir, 'timeline.png')
    profile = os.path.join(env.dir, 'chromium-profile')
    r = subprocess.run([chromium, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
                        '--no-first-run', '--disable-background-networking', '--disable-component-update',
                        '--disable-sync', '--user-data-dir=' + profile, '--hide-scrollbars',
                        '--window-size=1200,600', '--screenshot=' + png, 'file://' + svg],
                       capture_output=True, text=True, timeout=120)
    assert os.path.exists(png), r.stdout + r.stderr
    w, h, rows, bpp = png_pixels(png)
    colours = set()
    dark = 0
    for row in rows[::4]:
        for x in range(0, w * bpp, bpp * 4):
            px = row[x:x + 3]
            colours.add(px)
            if sum(px) < 300:
                dark += 1
    assert len(colours) > 3, colours          # not a blank page
    assert dark > 50, dark                    # there is drawing (text, marks) on it
