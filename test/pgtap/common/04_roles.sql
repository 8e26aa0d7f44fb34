-- Privileges: nothing without sandbox_user, and each role only its own sessions.
-- Runs as: tap (sandbox_user only), and as alice, bob (sandbox_user only) and
-- carol (nothing) through SET ROLE.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(23);
SET ROLE alice;
SELECT sandbox.drop_session('alice_s', if_exists => true);
RESET ROLE;
SET ROLE bob;
SELECT sandbox.drop_session('bob_s', if_exists => true);
RESET ROLE;

SET ROLE carol;
SELECT throws_ok($$SELECT * FROM sandbox.exec('true')$$, '42501', NULL, 'a role without sandbox_user cannot call exec');
SELECT throws_ok($$SELECT * FROM sandbox.create_session('c')$$, '42501', NULL, '... nor create_session');
SELECT throws_ok($$SELECT sandbox.drop_session('c')$$, '42501', NULL, '... nor drop_session');
SELECT throws_ok($$SELECT sandbox.sync()$$, '42501', NULL, '... nor sync');
SELECT throws_ok($$SELECT * FROM sandbox.sessions$$, '42501', NULL, '... nor read sandbox.sessions');
SELECT throws_ok($$SELECT * FROM sandbox.executions$$, '42501', NULL, '... nor read sandbox.executions');
RESET ROLE;
SELECT test.grant_sandbox_usage('carol', true);
SET ROLE carol;
SELECT throws_ok($$SELECT * FROM sandbox.exec('true')$$, '42501', 'permission denied for function exec',
				 'even with USAGE on the schema, EXECUTE is not granted to PUBLIC');
RESET ROLE;
SELECT test.grant_sandbox_usage('carol', false);

SET ROLE alice;
SELECT is((SELECT status FROM sandbox.exec('echo a > mine', 'alice_s')), 'succeeded', 'alice runs a command in her session');
RESET ROLE;
SET ROLE bob;
SELECT is((SELECT status FROM sandbox.exec('echo b', 'bob_s')), 'succeeded', 'bob runs a command in his session');
-- Session names are per role: bob's "alice_s" is a session of his own.
SELECT is((SELECT stdout FROM sandbox.exec('cat mine 2>&1; echo b2 > mine', 'alice_s')),
		  E'cat: mine: No such file or directory\n', 'bob''s session called alice_s is his own: alice''s file is not in it');
SELECT is(sandbox.drop_session('alice_s'), true, 'bob drops his own alice_s');
SELECT is((SELECT count(*)::int FROM sandbox.create_session('alice_s')), 1, 'and creates it again: it is his');
SELECT is((SELECT array_agg(name ORDER BY name) FROM sandbox.sessions), ARRAY['alice_s', 'bob_s'], 'bob sees only his own sessions');
SELECT is((SELECT count(*)::int FROM sandbox.executions WHERE owner <> 'bob'::regrole), 0, 'bob sees none of alice''s executions');
SELECT is(sandbox.sync(), 2, 'sync() refreshes only bob''s sessions');
SELECT is(sandbox.drop_session('alice_s'), true, 'bob drops his alice_s again');
SELECT throws_ok($$UPDATE sandbox.sessions SET cwd = '/'$$, '42501', NULL, 'bob cannot write the mirror tables');
SELECT throws_ok($$SET cloudrun_sandbox.local_network = on$$, '42501', NULL, 'bob cannot turn the network on');
SELECT throws_ok($$SET cloudrun_sandbox.local_root = '/tmp'$$, '42501', NULL, 'bob cannot move the storage');
RESET ROLE;

SET ROLE alice;
SELECT is((SELECT array_agg(name) FROM sandbox.sessions), ARRAY['alice_s'], 'alice sees only her own session');
SELECT is((SELECT stdout FROM sandbox.exec('cat mine', 'alice_s')), E'a\n', 'alice''s file is still hers');
-- A caller's search_path must not reach the queries the extension runs as its owner.
CREATE SCHEMA alice_trap;
CREATE FUNCTION alice_trap.spy(text, text) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
	PERFORM set_config('test.spied', 'yes', false);
	RETURN $1 OPERATOR(pg_catalog.=) $2;
END $f$;
CREATE OPERATOR alice_trap.= (LEFTARG = text, RIGHTARG = text, FUNCTION = alice_trap.spy);
SET search_path = alice_trap, pg_catalog, public;
SELECT sandbox.exec('true', 'alice_s');
SELECT sandbox.drop_session('alice_s');
SELECT is(current_setting('test.spied', true), NULL, 'the extension never calls an operator from the caller''s search_path');
SELECT 'a'::text = 'a'::text;
SELECT is(current_setting('test.spied', true), 'yes', 'the trap operator does catch unqualified comparisons (so the check above can fail)');
RESET search_path;
DROP SCHEMA alice_trap CASCADE;
RESET ROLE;

SET ROLE bob;
SELECT sandbox.drop_session('bob_s');
RESET ROLE;
SELECT * FROM finish();
