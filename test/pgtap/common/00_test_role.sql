-- The behaviour suite runs as an ordinary role: pg_prove connects as "tap",
-- which has sandbox_user and no role attribute; what a test needs beyond that
-- are the narrow SECURITY DEFINER helpers of test/pgtap/setup/helpers.sql,
-- which only tap may call, which take data (never SQL or a shell command) and
-- which refuse what the tests do not need.
-- Runs as: tap (sandbox_user only), and as alice (sandbox_user only) and carol
-- (nothing) through SET ROLE.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(12);

SELECT is(session_user::text, 'tap', 'the tests connect as tap');
SELECT ok(NOT (SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication
			   FROM pg_roles WHERE rolname = session_user), 'tap has no role attribute');
SELECT is((SELECT array_agg(g.rolname::text ORDER BY g.rolname) FROM pg_auth_members m
		   JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = session_user)),
		  ARRAY['alice', 'bob', 'carol', 'sandbox_user'],
		  'tap is a member of sandbox_user and of the test roles alice, bob and carol only');
SELECT ok(NOT EXISTS (SELECT FROM pg_roles WHERE rolname IN ('alice', 'bob', 'carol')
					  AND (rolsuper OR rolcreaterole OR rolbypassrls))
		  AND NOT pg_has_role('carol', 'sandbox_user', 'USAGE'),
		  'alice, bob and carol are ordinary roles, and carol lacks sandbox_user');
SELECT throws_ok($$SELECT * FROM test.program_lines('id')$$, '42501', NULL,
				 'tap cannot run a program on the host');
SELECT throws_ok($$SELECT test.set_setting('cloudrun_sandbox.executor_path', '/bin/sh')$$, 'P0001', NULL,
				 'set_setting refuses the settings that name host programs');
SELECT throws_ok($$SELECT test.set_setting('cloudrun_sandbox.credentials', current_setting('test.bin') || '/../../etc/passwd')$$,
				 'P0001', NULL, 'set_setting refuses credentials outside the test directory');
SELECT throws_ok($$SELECT test.dblink_connect('su', 'postgres')$$, 'P0001', NULL,
				 'dblink_connect refuses to connect as a superuser');
SELECT throws_ok($$SELECT test.session_state_file(test.storage_root() || '/sessions/../../../../global')$$, 'P0001', NULL,
				 'the storage helpers read session directories only');
SET test.bin = '/nonexistent';
SELECT is((SELECT count(*)::int FROM test.emu('hook', 'stats')), 1,
		  'the helpers that run programs ignore test.* settings the caller changes');
RESET test.bin;
SET ROLE alice;
SELECT throws_ok($$SELECT test.host_procs('x')$$, '42501', NULL, 'the SECURITY DEFINER helpers are not for alice');
RESET ROLE;
SET ROLE carol;
SELECT throws_ok($$SELECT test.connstr()$$, '42501', NULL, '... nor for carol');
RESET ROLE;
SELECT * FROM finish();
