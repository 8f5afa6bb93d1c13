# SPDX-License-Identifier: Apache-2.0
"""Protocol switches with psycopg (issue 18).

    switch.py trace DSN      the block and the four switch patterns once, with
                             libpq's trace of every message both ways (no
                             timestamps, OIDs redacted): the output must be the
                             same directly and through tollgate
    switch.py bench DSN N    N timed rounds of each pattern and of the block;
                             prints one line per pattern: name, median µs

psycopg sends `with conn.transaction(): conn.execute("select 1")` as an
extended-protocol BEGIN (PQsendQueryParams: Parse, Bind, Describe, Execute,
Sync), a simple-protocol SELECT (a Query: no parameters) and an extended
COMMIT. The patterns use the same two calls, on the connection's libpq
handle, so that each message is exactly what the pattern says.
"""
import ctypes
import os
import statistics
import sys
import tempfile
import time

import psycopg
from psycopg import pq


def simple(pg):
    pg.send_query(b"select 1")
    drain(pg)


def extended(pg):
    pg.send_query_params(b"select 1", None)
    drain(pg)


def drain(pg):
    while True:
        r = pg.get_result()
        if r is None:
            return
        if r.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            raise RuntimeError(r.error_message.decode())


PATTERNS = [("simple-simple", simple, simple), ("extended-extended", extended, extended),
            ("extended-simple", extended, simple), ("simple-extended", simple, extended)]


def block(conn):
    with conn.transaction():
        conn.execute("select 1")


def trace(dsn):
    with psycopg.connect(dsn) as conn, tempfile.TemporaryFile() as f:
        pg = conn.pgconn
        fd = os.dup(f.fileno())
        pg.trace(fd)
        pg.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        block(conn)
        conn.autocommit = True
        for name, first, second in PATTERNS:
            first(pg)
            second(pg)
        pg.untrace()
        ctypes.CDLL(None).fflush(None)  # libpq writes through stdio
        f.seek(0)
        sys.stdout.write(f.read().decode())


def bench(dsn, n):
    with psycopg.connect(dsn, autocommit=True) as conn:
        pg = conn.pgconn
        for name, first, second in PATTERNS:
            ts = []
            for _ in range(n):
                first(pg)
                t0 = time.perf_counter()
                second(pg)
                ts.append(time.perf_counter() - t0)
            print(name, round(statistics.median(ts) * 1e6, 1))
        conn.autocommit = False
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            block(conn)
            ts.append(time.perf_counter() - t0)
        print("psycopg-block", round(statistics.median(ts) * 1e6, 1))


if __name__ == "__main__":
    if sys.argv[1] == "trace":
        trace(sys.argv[2])
    else:
        bench(sys.argv[2], int(sys.argv[3]))
