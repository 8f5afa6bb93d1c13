-- psql differential script: run directly and through tollgate, the output
-- must be identical. Nothing here prints a PID, a time or a database name.
\pset pager off
\set ON_ERROR_STOP 0
SELECT 1 AS one, 'two' AS two, NULL AS nothing, 1.5::float8 AS f, true AS b;
CREATE TABLE t (id serial PRIMARY KEY, name text UNIQUE, amount numeric, created date DEFAULT '2026-01-01');
INSERT INTO t (name, amount) VALUES ('alice', 10.5), ('bob', 20), ('carol', NULL) RETURNING id, name;
INSERT INTO t (name) VALUES ('alice');
SELECT * FROM t ORDER BY id;
UPDATE t SET amount = amount * 2 WHERE name = 'alice';
DELETE FROM t WHERE name = 'bob';
SELECT count(*), sum(amount) FROM t;
BEGIN;
INSERT INTO t (name) VALUES ('dave');
SAVEPOINT s1;
SELECT 1/0;
ROLLBACK TO s1;
INSERT INTO t (name) VALUES ('erin');
COMMIT;
BEGIN;
SELECT nonexistent;
SELECT 1;
ROLLBACK;
SELECT name FROM t ORDER BY name;
SELECT 1 AS a \; SELECT 2 AS b \; SELECT 3 AS c;
INSERT INTO t (name) VALUES ('multi1') \; SELECT 1/0 \; INSERT INTO t (name) VALUES ('multi2');
SELECT name FROM t WHERE name LIKE 'multi%';
COPY t (name, amount) FROM STDIN;
frank	1
grace	2
\.
COPY t (name, amount) FROM STDIN;
heidi	not-a-number
\.
COPY (SELECT id, name, amount, created FROM t ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER);
SELECT n, md5(n::text) FROM generate_series(1, 2000) n;
SELECT count(*), sum(n) FROM generate_series(1, 200000) n;
SELECT length(repeat('x', 3000000)), md5(repeat('yz', 2000000));
DO $$BEGIN RAISE NOTICE 'notice from %', 'a do block'; END$$;
DO $$BEGIN RAISE WARNING 'a warning'; RAISE EXCEPTION 'an exception' USING ERRCODE = '22012', HINT = 'a hint'; END$$;
SELECT E'unicode: \u00e9 \u4e2d', 'quote''s', $q$dollar 'quoted'$q$;
PREPARE p(int) AS SELECT name FROM t WHERE id = $1;
EXECUTE p(1);
DEALLOCATE p;
CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql AS 'SELECT x * 2';
SELECT f(21);
\d t
\dt
\df f
SET search_path TO public;
SHOW search_path;
SET TimeZone = 'UTC';
SELECT '2026-01-01 12:00:00+02'::timestamptz;
SELECT '\x00ff'::bytea, '{1,2,3}'::int[], '{"a": [1, 2]}'::jsonb, 'infinity'::timestamp;
SELECT current_user, session_user;
;
SELEC 1;
SELECT * FROM no_such_table;
BEGIN;
SELECT lo_from_bytea(424242, 'large object payload') AS lo;
COMMIT;
\lo_export 424242 /dev/null
\lo_unlink 424242
VACUUM t;
TRUNCATE t;
SELECT count(*) FROM t;
\echo done
