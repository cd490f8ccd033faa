#!/usr/bin/env python3
"""The measurement that chose relayq's reserve (docs/queue-format.md, "A full disk").

As root: mounts a tmpfs of SIZE (default 12m) on a temporary directory, fills
a WAL-mode SQLite store (synchronous=FULL, the system SQLite's own
secure_delete default) with 1 MB messages until SQLITE_FULL, then tries to
record a delivery (update + delete) for each one, with no help, with the WAL
pre-grown, with a reserve file of RESERVE MB released at the first
SQLITE_FULL, and with both; also with a reader holding a snapshot.  CKPT=1
runs a truncating checkpoint after releasing the reserve.

    sudo python3 tests/bench/sqlite_full_disk.py CKPT RESERVE_MB SIZE
    sudo python3 tests/bench/sqlite_full_disk.py 1 6 24m
"""
import tempfile
import sqlite3, os, sys, subprocess
MNT = tempfile.mkdtemp(prefix="sqlite-full-")
def mount(size):
    os.makedirs(MNT, exist_ok=True)
    subprocess.run(["umount", MNT], stderr=subprocess.DEVNULL)
    subprocess.check_call(["mount","-t","tmpfs","-o","size=%s"%size,"tmpfs",MNT])
def ckpt(db):
    try: return db.execute("pragma wal_checkpoint(truncate)").fetchall()
    except sqlite3.Error as e: return str(e)
def free():
    s=os.statvfs(MNT); return s.f_bavail*s.f_frsize
def run(approach, size="12m", msg=1<<20, reader=False):
    mount(size)
    res = {}
    if approach in ("reserve","both"):
        with open(MNT+"/reserve","wb") as f:
            f.write(b"\0"*RES); f.flush(); os.fsync(f.fileno())
    db=sqlite3.connect(MNT+"/queue.db", isolation_level=None)
    db.execute("pragma journal_mode=wal"); db.execute("pragma synchronous=full")
    db.execute("create table msg(seq integer primary key, state int, next int)")
    db.execute("create table content(seq integer primary key, data blob)")
    db.execute("create table rcpt(seq int, idx int, state int, reason text, primary key(seq,idx)) without rowid")
    if approach in ("wal","both"):
        # grow the WAL once to ~2 MB and keep it (journal_size_limit -1: never truncated)
        db.execute("pragma journal_size_limit=-1")
        db.execute("begin"); db.execute("create table pad(x)"); db.execute("insert into pad values(zeroblob(2000000))"); db.execute("drop table pad"); db.execute("commit")
        db.execute("pragma wal_checkpoint(passive)")
    rd = None
    if reader:
        rd=sqlite3.connect(MNT+"/queue.db", isolation_level=None)
    n=0
    while True:
        try:
            db.execute("begin immediate")
            db.execute("insert into msg values(?,0,0)",(n+1,))
            db.execute("insert into rcpt values(?,0,0,NULL)",(n+1,))
            db.execute("insert into content values(?,?)",(n+1,os.urandom(msg)))
            db.execute("commit"); n+=1
            if rd and n==2:
                rd.execute("begin"); rd.execute("select count(*) from msg").fetchall()
            if rd and n==4:
                rd.execute("commit")
        except sqlite3.Error as e:
            try: db.execute("rollback")
            except sqlite3.Error: pass
            res["fill_err"]=str(e); break
    res["accepted"]=n; res["free_after_fill"]=free()
    # bookkeeping: defer (update) then delete each message
    ok=fail=0; released=False
    for s in range(1,n+1):
        for attempt in range(2):
            try:
                db.execute("begin immediate")
                db.execute("update msg set state=2, next=? where seq=?",(s*7,s))
                db.execute("update rcpt set state=1, reason=? where seq=?",("x"*200,s))
                db.execute("delete from msg where seq=?",(s,))
                db.execute("delete from rcpt where seq=?",(s,))
                db.execute("delete from content where seq=?",(s,))
                db.execute("commit"); ok+=1; break
            except sqlite3.Error as e:
                try: db.execute("rollback")
                except sqlite3.Error: pass
                if approach in ("reserve","both") and not released and attempt==0:
                    os.unlink(MNT+"/reserve"); released=True
                    if CKPT: res["ckpt"]=ckpt(db)
                    continue
                if approach in ("none","wal") and CKPT and attempt==0:
                    res["ckpt"]=ckpt(db); continue
                fail+=1; res.setdefault("upd_err",str(e)); break
    res["free_end"]=free(); res["wal"]=os.path.getsize(MNT+"/queue.db-wal") if os.path.exists(MNT+"/queue.db-wal") else 0; res["db"]=os.path.getsize(MNT+"/queue.db")
    res["bookkeeping_ok"]=ok; res["bookkeeping_failed"]=fail; res["reserve_released"]=released
    if rd: rd.close()
    db.close()
    subprocess.run(["umount", MNT])
    return res
import sys
CKPT=int(sys.argv[1]); RES=int(sys.argv[2])<<20; SIZE=sys.argv[3]
for reader in (False, True):
    for a in ("none","wal","reserve","both"):
        print(a, "reader" if reader else "", run(a, size=SIZE, reader=reader), flush=True)
