# SPDX-License-Identifier: Apache-2.0
"""psycopg reads the masking fixture: plain, server-side prepared, binary
results and COPY TO STDOUT. Lines tagged U: hold no masked column and must
be identical directly and through tollgate; M: lines hold masked ones."""
import sys

import psycopg

dsn = sys.argv[1]
Q = "SELECT id, name, email, card, iban, profile FROM customers WHERE id <= %s ORDER BY id"

with psycopg.connect(dsn, autocommit=True) as conn:
    cur = conn.cursor()
    for label, kw in [("plain", {}), ("prepared", {"prepare": True}), ("prepared", {"prepare": True}),
                      ("prepared", {"prepare": True})]:
        cur.execute(Q, (8,), **kw)
        rows = cur.fetchall()
        for r in rows:
            print("U:", label, r[0], r[1])
            print("M:", label, r[2], r[3], r[4], r[5])
        print("U:", label, "rows", len(rows))
    bcur = conn.cursor(binary=True)
    for i in range(2):
        bcur.execute(Q, (8,))
        rows = bcur.fetchall()
        for r in rows:
            print("U: binary", r[0], r[1])
            print("M: binary", r[2], r[3], r[4], r[5])
        print("U: binary rows", len(rows))
    with cur.copy("COPY (SELECT id, name, email, card FROM customers ORDER BY id) TO STDOUT") as cp:
        n = 0
        for row in cp.rows():
            print("U: copy", row[0], row[1])
            print("M: copy", row[2], row[3])
            n += 1
        print("U: copy rows", n)
