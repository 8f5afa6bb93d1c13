-- psql differential script, second family (issue 12): psql's own features
-- and the server's error paths. Run directly and through tollgate, stdout,
-- stderr and the exit status must be identical. Nothing here prints a PID,
-- a time, an OID or a database name.
--
-- VERBOSITY verbose prints every error's SQLSTATE and LOCATION (the
-- server's C function), so a refusal raised for tollgate (42501, from
-- exec_stmt_raise) cannot pass for the server's own error (42601 from
-- scanner_yyerror, say). ECHO all copies each script line to stdout, so
-- stdout reads as a transcript; errors and notices go to stderr prefixed
-- with the script's line number.
--
-- psql here is PostgreSQL 15: \bind (16+) does not exist, so bound
-- parameters are exercised with SQL PREPARE/EXECUTE and \gset, and
-- psql's extended-protocol paths with \gdesc (PQprepare and
-- PQdescribePrepared of the unnamed statement).
\pset pager off
\set ON_ERROR_STOP 0
\set VERBOSITY verbose
\set SHOW_CONTEXT always
\set ECHO all
CREATE TABLE f (id int PRIMARY KEY, name text NOT NULL, amount numeric CHECK (amount >= 0));

-- \gset, \gexec, \gdesc, \g with options, \gx
SELECT 41 + 1 AS answer, 'x' || 'y' AS xy \gset
\echo answer :answer xy :xy
SELECT :answer * 2 AS doubled, :'xy' AS quoted;
SELECT 1 AS one, 2 AS two \gset pre_
\echo :pre_one :pre_two
SELECT 1 WHERE false \gset
SELECT generate_series(1, 2) AS g \gset
SELECT 1/0 AS z \gset
\echo sqlstate :SQLSTATE last :LAST_ERROR_SQLSTATE rows :ROW_COUNT
SELECT format('SELECT %s AS n, %L AS s', g, 'v' || g) FROM generate_series(1, 3) g \gexec
SELECT 'SELEC 1' \gexec
SELECT 1 AS a, 'x'::text AS b, NULL::numeric(10, 2) AS c \gdesc
SELECT nosuchcolumn \gdesc
SELEC 1 \gdesc
SELECT 1 AS a, 'two' AS b \g (format=csv)
SELECT 1 AS a, 'two' AS b \gx

-- Prepared statements (SQL level; psql 15 has no \bind)
PREPARE ins(int, text, numeric) AS INSERT INTO f VALUES ($1, $2, $3);
EXECUTE ins(1, 'alice', 10);
EXECUTE ins(2, 'bob', NULL);
EXECUTE ins(1, 'dup', 0);
EXECUTE ins(3, 'neg', -1);
EXECUTE ins(3, NULL, 1);
EXECUTE ins('x', 'y', 1);
EXECUTE ins(3);
PREPARE sel AS SELECT id, name FROM f WHERE id = $1 ORDER BY id;
EXECUTE sel(7);
EXECUTE sel(1);
SELECT 1 AS id \gset
EXECUTE sel(:id);
EXECUTE nosuch(1);
-- Names reserved since PostgreSQL 16 (system_user) differ: listed in
-- docs/TRANSPARENCY.md and not exercised here.
PREPARE ins(int) AS SELECT 1;
PREPARE bad AS SELEC 1;
PREPARE bad2 AS SELECT * FROM nosuchtable;
SELECT name, statement, parameter_types::text, from_sql FROM pg_prepared_statements ORDER BY name;
DEALLOCATE sel;
EXECUTE sel(1);
DEALLOCATE sel;
DEALLOCATE PREPARE ins;
PREPARE cnt AS SELECT count(*) FROM f;
PREPARE two AS SELECT 2;
EXECUTE cnt;
DEALLOCATE ALL;
EXECUTE cnt;
PREPARE cnt AS SELECT count(*) AS c FROM f;
EXECUTE cnt;
SET search_path TO pg_catalog, public;
SHOW search_path;
DISCARD ALL;
EXECUTE cnt;
SHOW search_path;
SELECT count(*) FROM pg_prepared_statements;
BEGIN;
DISCARD ALL;
ROLLBACK;
PREPARE inner_sel AS SELECT id FROM f WHERE id = $1;
CREATE TEMP TABLE tmp AS EXECUTE inner_sel(1);
SELECT * FROM tmp;
EXPLAIN (COSTS OFF) EXECUTE inner_sel(1);
DEALLOCATE inner_sel;

-- Notices and RAISE
DO $$BEGIN RAISE NOTICE 'notice %', 1; RAISE INFO 'info'; RAISE LOG 'log, not sent'; RAISE WARNING 'warning'; END$$;
DO $$BEGIN RAISE EXCEPTION 'with fields' USING ERRCODE = 'T1234', DETAIL = 'a detail', HINT = 'a hint', COLUMN = 'col', CONSTRAINT = 'con', DATATYPE = 'typ', TABLE = 'tab', SCHEMA = 'sch'; END$$;
DO $$BEGIN RAISE 'plain %', 'raise'; END$$;
DO $$BEGIN RAISE unique_violation USING MESSAGE = 'by condition name'; END$$;
DO $$BEGIN RAISE SQLSTATE '22012'; END$$;
CREATE FUNCTION noisy(n int) RETURNS int LANGUAGE plpgsql AS $$BEGIN RAISE NOTICE 'row %', n; RETURN n * 10; END$$;
SELECT noisy(g) FROM generate_series(1, 3) g;
CREATE FUNCTION fails(n int) RETURNS int LANGUAGE plpgsql AS $$BEGIN IF n = 3 THEN RAISE EXCEPTION 'fails at %', n; END IF; RETURN n; END$$;
SELECT fails(g) FROM generate_series(1, 5) g;
\errverbose
SET client_min_messages = warning;
DO $$BEGIN RAISE NOTICE 'suppressed'; RAISE WARNING 'kept'; END$$;
RESET client_min_messages;
CREATE TABLE IF NOT EXISTS f (x int);
DROP TABLE IF EXISTS nosuchtable;

-- Errors mid-transaction, savepoints
BEGIN;
INSERT INTO f VALUES (10, 'in tx', 1);
SAVEPOINT a;
INSERT INTO f VALUES (10, 'dup', 1);
SELECT 1;
\echo sqlstate :SQLSTATE last :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT a;
SAVEPOINT b;
INSERT INTO f VALUES (11, NULL, 1);
ROLLBACK TO b;
INSERT INTO f VALUES (12, 'kept', 1);
RELEASE SAVEPOINT a;
RELEASE SAVEPOINT nosuch;
ROLLBACK TO a;
COMMIT;
SELECT id, name FROM f WHERE id >= 10 ORDER BY id;
BEGIN;
INSERT INTO f VALUES (13, 'committed', 1);
SAVEPOINT s;
SELECT 1/0;
ROLLBACK TO s;
RELEASE s;
COMMIT;
SELECT id, name FROM f WHERE id >= 10 ORDER BY id;
ROLLBACK;
COMMIT;
SAVEPOINT outside;
RELEASE outside;

-- Syntax errors: the server's own 42601, with its position, and the
-- transaction state the server leaves
SELEC 1;
\echo sqlstate :SQLSTATE last :LAST_ERROR_SQLSTATE
\errverbose
SELECT 1 +;
SELECT * FROM f WHERE;
SELECT * FROM f ORDER BY id LIMIT;
CREATE TABLE 1bad (x int);
SELECT 'a' 'b';
SELECT 1 \; SELEC 2 \; SELECT 3;
INSERT INTO f VALUES (20, 'not inserted', 1) \; SELEC 2;
SELECT count(*) FROM f WHERE id = 20;
BEGIN;
INSERT INTO f VALUES (21, 'rolled back', 1);
SELEC oops;
\echo sqlstate :SQLSTATE last :LAST_ERROR_SQLSTATE
SELECT 1;
\echo sqlstate :SQLSTATE last :LAST_ERROR_SQLSTATE
SELEC again;
COMMIT;
SELECT count(*) FROM f WHERE id = 21;
BEGIN;
SAVEPOINT sp;
SELEC oops;
ROLLBACK TO sp;
INSERT INTO f VALUES (22, 'after syntax error', 1);
COMMIT;
SELECT id, name FROM f WHERE id = 22;
-- Errors that parse but fail in analysis or at run time
SELECT $1;
SELECT nosuchcolumn FROM f;
SELECT * FROM f WHERE id = 'abc';
SELECT 'abc'::int;
SELECT repeat('x', -1) || (SELECT name FROM f WHERE id = 9999);
SELECT (SELECT id FROM f) AS too_many;
INSERT INTO f VALUES (23, 'x', -5);

-- Empty and comment-only statements: EmptyQueryResponse, no error
;
\echo sqlstate :SQLSTATE rows :ROW_COUNT
/* only a comment */ ;
\echo sqlstate :SQLSTATE rows :ROW_COUNT
-- ping
;
SELECT 1 AS before_empty \; ;
BEGIN;
;
SELEC 1;
;
\echo sqlstate :SQLSTATE last :LAST_ERROR_SQLSTATE
ROLLBACK;

-- Escape strings, standard_conforming_strings on
SHOW standard_conforming_strings;
SELECT E'tab\there' AS e1, E'quote\'s' AS e2, E'back\\slash' AS e3, E'\x41\101\u0042' AS e4, 'a\b' AS plain, U&'\0041' AS u;
SELECT E'\\' AS backslash, E'\'' AS quote, E'\\\'' AS both;
SELECT $tag$ $1 ; \ ' $tag$ AS dollar;
SET escape_string_warning = on;
SELECT 'no escape: \n' AS s;
SET standard_conforming_strings = on;
SELECT E'bad \x' AS s;
SELECT E'\u00' AS s;

-- COPY FROM STDIN with a bad row, in and out of a transaction
COPY f FROM STDIN;
40	ok	1
41	bad	not-a-number
42	never	2
\.
SELECT count(*) FROM f WHERE id BETWEEN 40 AND 42;
COPY f FROM STDIN (FORMAT csv);
50,"quoted, comma",1.5
51,too,many,fields
\.
COPY f (id, name) FROM STDIN;
60	missing id next
	no id
\.
CREATE FUNCTION note_row() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE NOTICE 'copying %', NEW.id; RETURN NEW; END$$;
CREATE TRIGGER note BEFORE INSERT ON f FOR EACH ROW EXECUTE FUNCTION note_row();
COPY f FROM STDIN;
70	good	7
71	good	7
\.
COPY f FROM STDIN;
72	noticed, then	7
73	bad	x
\.
DROP TRIGGER note ON f;
BEGIN;
COPY f FROM STDIN;
80	bad	x
\.
SELECT 1;
ROLLBACK;
COPY nosuchtable FROM STDIN;
COPY f (nosuchcolumn) FROM STDIN;
COPY f FROM STDIN (FORMAT nosuchformat);
COPY (SELECT 1/0) TO STDOUT;
COPY (SELECT CASE WHEN g < 3 THEN g ELSE 1 / (g - g) END FROM generate_series(1, 5) g) TO STDOUT;
COPY (SELECT id, name, amount FROM f ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER, FORCE_QUOTE *);

-- \copy: the same through psql's client side (FROM STDIN reads the lines
-- that follow in this script; the file is relative to the test's
-- directory, where the test runs psql)
\copy f FROM STDIN
90	client copy	9
\.
\copy f FROM STDIN
91	client bad	nine
\.
\copy f (id, name, amount) FROM 'testdata/pg/features.tsv'
\copy f FROM 'testdata/pg/no-such-file.tsv'
\copy (SELECT id, name, amount FROM f WHERE id >= 90 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)
\copy f TO STDOUT

-- Cursors in SQL, and psql's own (FETCH_COUNT)
BEGIN;
DECLARE c SCROLL CURSOR FOR SELECT id FROM f ORDER BY id;
FETCH 2 FROM c;
MOVE LAST IN c;
FETCH PRIOR FROM c;
CLOSE c;
FETCH 1 FROM c;
ROLLBACK;
\set FETCH_COUNT 3
SELECT g FROM generate_series(1, 7) g;
SELECT CASE WHEN g < 5 THEN g ELSE 1 / (g - g) END AS g FROM generate_series(1, 7) g;
\unset FETCH_COUNT

-- Variables psql keeps from the server
SELECT 1 AS x FROM generate_series(1, 3);
\echo rows :ROW_COUNT error :ERROR
\echo encoding :ENCODING
\echo server :SERVER_VERSION_NUM
\echo user :USER


-- Plans, timeouts and a flood of notices
CREATE TABLE g (a int);
INSERT INTO g VALUES (1);
PREPARE star AS SELECT * FROM g;
EXECUTE star;
ALTER TABLE g ADD COLUMN b text;
EXECUTE star;
DEALLOCATE star;
SET statement_timeout = '50ms';
SELECT pg_sleep(2);
RESET statement_timeout;
DO $$BEGIN FOR i IN 1..300 LOOP RAISE NOTICE 'flood % %', i, repeat('n', 200); END LOOP; END$$;
SELECT length(string_agg(repeat('r', 1000), '')) FROM generate_series(1, 2000);
DO $$BEGIN RAISE EXCEPTION '%', repeat('long error ', 2000); END$$;

SELECT id, name, amount FROM f ORDER BY id;
\echo done
