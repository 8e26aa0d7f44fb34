-- Security, finding 6: no role can block another role's session with an advisory lock.
-- Runs as: alice (the victim, sandbox_user only) and carol (the attacker, no
-- sandbox_user at all) in a second connection; a superuser only opens it.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(4);
SET ROLE alice;
SELECT sandbox.drop_session('lockme', if_exists => true);
SELECT is((SELECT status FROM sandbox.exec('true', 'lockme')), 'succeeded', 'alice''s session exists');
RESET ROLE;
SELECT id AS sid FROM sandbox.sessions WHERE name = 'lockme' AND owner = 'alice'::regrole \gset
-- carol takes every advisory lock that could name the session: the 0.1.0 key
-- (class 23308, hash of the name) and keys made of its id.
SELECT dblink_connect('carol', test.connstr('carol'));
SELECT is((SELECT count(*)::int FROM dblink('carol', format($q$SELECT pg_advisory_lock(23308, hashtext('lockme')),
		pg_advisory_lock(%1$s::bigint), pg_advisory_lock(0, %1$s), pg_advisory_lock(23308, %1$s),
		pg_advisory_lock_shared(23308, hashtext('lockme'))::text$q$, :sid)) AS t(a text, b text, c text, d text, e text)), 1,
		  'carol, without sandbox_user, holds the advisory locks');
SET ROLE alice;
SET statement_timeout = '10s';
SELECT is((SELECT stdout FROM sandbox.exec('echo still mine', 'lockme')), E'still mine\n',
		  'alice''s exec does not wait for carol''s locks');
SELECT sandbox.submit('true', 'lockme') AS qid \gset
SELECT is((SELECT status FROM sandbox.wait(:qid, '8 s')), 'succeeded', 'nor does her queued command');
RESET statement_timeout;
SELECT sandbox.drop_session('lockme');
RESET ROLE;
SELECT dblink_disconnect('carol');
SELECT * FROM finish();
