-- psql differential script: standard_conforming_strings off, where a
-- backslash in an ordinary literal is an escape (and \' does not end it).
-- Run directly and through tollgate, the output must be identical. Kept
-- apart from features.sql: a session that cannot go on after the SET would
-- hide everything after it there.
\pset pager off
\set ON_ERROR_STOP 0
\set VERBOSITY verbose
\set ECHO all
SELECT 'a\b' AS before;
BEGIN;
SET LOCAL standard_conforming_strings = off;
SELECT 'tab\there' AS local_off;
ROLLBACK;
SHOW standard_conforming_strings;
SET standard_conforming_strings = off;
SHOW standard_conforming_strings;
SET escape_string_warning = off;
SELECT 'tab\there' AS t, 'it\'s' AS q, 'back\\slash' AS b, E'e\x41' AS e, $$dollar \n$$ AS d;
SELECT 'a\'; SELECT 1 AS hidden; --' AS one_statement;
SELECT length('\\'), '\\' = E'\\' AS same;
SET escape_string_warning = on;
SELECT 'warned \\' AS w;
SELECT 'bad \';
';
SET standard_conforming_strings = on;
SELECT 'a\b' AS after, E'\\' AS e;
\echo done
