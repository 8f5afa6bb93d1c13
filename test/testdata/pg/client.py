# SPDX-License-Identifier: Apache-2.0
"""psycopg differential client: run directly and through tollgate, the
output must be identical. Nothing here prints a PID, a time or a database
name."""
import hashlib
import logging
import sys

import psycopg

dsn = sys.argv[1]
# psycopg logs "error ignored terminating <Pipeline ...>" or not depending
# on when the aborted pipeline's results arrive; direct runs differ from
# each other in that, so its log is off.
logging.getLogger("psycopg").disabled = True

with psycopg.connect(dsn) as conn:
    conn.add_notice_handler(lambda d: print("notice", d.severity, d.message_primary))
    cur = conn.cursor()
    cur.execute("CREATE TABLE py (id int PRIMARY KEY, v text, f float8, b bytea)")
    cur.executemany("INSERT INTO py VALUES (%s, %s, %s, %s)",
                    [(i, f"v{i}", i / 3, bytes([i % 256]) * 10) for i in range(200)])
    conn.commit()
    cur.execute("SELECT count(*), sum(f) FROM py WHERE id > %s", (10,))
    print("count", cur.fetchone())
    for i in range(3):
        cur.execute("SELECT v FROM py WHERE id = %s", (i,), prepare=True)
        print("prepared", cur.fetchone())
    bcur = conn.cursor(binary=True)
    bcur.execute("SELECT b, f, v FROM py WHERE id = %s", (7,))
    print("binary", bcur.fetchone())
    with conn.cursor(name="server_side") as sc:
        sc.itersize = 50
        sc.execute("SELECT id FROM py ORDER BY id")
        print("named cursor", sum(r[0] for r in sc))
    conn.commit()
    with cur.copy("COPY py (id, v) FROM STDIN") as cp:
        for i in range(1000, 1500):
            cp.write_row((i, f"copied {i}"))
    conn.commit()
    with cur.copy("COPY (SELECT id, v FROM py ORDER BY id) TO STDOUT") as cp:
        data = b"".join(bytes(b) for b in cp)
    print("copy out", len(data), hashlib.sha256(data).hexdigest())
    try:
        cur.execute("SELECT 1/0")
    except psycopg.Error as e:
        print("error", e.sqlstate, e.diag.message_primary)
    conn.rollback()
    with conn.pipeline():
        c1, c2, c3 = conn.cursor(), conn.cursor(), conn.cursor()
        c1.execute("INSERT INTO py (id, v) VALUES (%s, %s)", (5000, "piped"))
        c2.execute("SELECT v FROM py WHERE id = %s", (5000,))
        c3.execute("SELECT count(*) FROM py")
        print("pipeline", c2.fetchone(), c3.fetchone())
    conn.commit()
    try:
        with conn.pipeline():
            cur.execute("INSERT INTO py (id, v) VALUES (%s, %s)", (5001, "piped"))
            cur.execute("INSERT INTO py (id, v) VALUES (%s, %s)", (5000, "duplicate"))
            cur.execute("SELECT 1")
    except psycopg.Error as e:
        print("pipeline error", e.sqlstate)
    conn.rollback()
    cur.execute("DO $$BEGIN RAISE NOTICE 'hello %', 42; END$$")
    conn.commit()

with psycopg.connect(dsn, autocommit=True) as listener, psycopg.connect(dsn, autocommit=True) as sender:
    listener.execute("LISTEN py_channel")
    for i in range(3):
        sender.execute("SELECT pg_notify('py_channel', %s)", (f"payload {i}",))
    got = 0
    for n in listener.notifies():
        print("notify", n.channel, n.payload)
        got += 1
        if got == 3:
            break

print("done")
