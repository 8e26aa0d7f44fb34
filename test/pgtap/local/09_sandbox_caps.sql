-- Per-role cap on local sandboxes running at once (issue 11, finding 4): with
-- cloudrun_sandbox.max_sandboxes_per_role at 2, alice's third sandbox at once
-- (exec, a file operation) is refused with 53400 while two of her connections
-- run one each; bob is not affected; the worker still runs alice's queued
-- commands (it takes no slot); a sandbox that ends, and one whose query is
-- cancelled, give their slot back.
-- Runs as: tap (sandbox_user only), which sets up; the calls run as alice and
-- bob (sandbox_user only), through SET ROLE and dblink connections.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(18);

SELECT is(test.set_system('cloudrun_sandbox.max_sandboxes_per_role', '2'), '2', 'the cap is 2 sandboxes per role');

-- Two long commands of alice's, from two connections of hers.
SELECT test.dblink_connect('a1', 'alice');
SELECT test.dblink_connect('a2', 'alice');
SELECT dblink_send_query('a1', $$SELECT status FROM sandbox.exec('sleep 91', 'cap1')$$);
SELECT dblink_send_query('a2', $$SELECT status FROM sandbox.exec('sleep 12', 'cap2')$$);
SELECT is(test.wait_procs('sleep 91', 1, 10) + test.wait_procs('sleep 12', 1, 10), 2,
		  'two of alice''s sandboxes run at once');

SET ROLE alice;
SELECT throws_ok($$SELECT * FROM sandbox.exec('echo third', 'cap3')$$, '53400',
				 'role "alice" already runs 2 sandboxes at once', 'a third exec of alice''s is refused');
SELECT matches(test.error_of($$SELECT * FROM sandbox.exec('echo third', 'cap3')$$),
			   'HINT: .*sandbox\.submit\(\).*cloudrun_sandbox\.max_sandboxes_per_role', 'the hint names submit() and the setting');
SELECT throws_ok($$SELECT sandbox.file_write('f', 'x', session => 'cap3')$$, '53400', NULL,
				 'a file operation, which starts a sandbox too, is refused as well');
SELECT is((SELECT count(*)::int FROM sandbox.executions WHERE session = 'cap3'), 0, 'nothing of the refused calls ran');
SELECT throws_ok($$SET cloudrun_sandbox.max_sandboxes_per_role = 0$$, '42501', NULL, 'and alice cannot lift her cap');
RESET ROLE;

-- Bob is not affected.
SET ROLE bob;
SELECT is((SELECT stdout FROM sandbox.exec('echo bob', 'cap-bob')), E'bob\n', 'bob runs his commands');
SELECT sandbox.drop_session('cap-bob');
RESET ROLE;

-- The worker takes no slot: alice's queued command runs.
SET ROLE alice;
SELECT sandbox.submit('echo queued', 'cap4') AS q \gset
SELECT is((SELECT stdout FROM sandbox.wait(:q, '60 s')), E'queued\n', 'alice''s queued command runs while she is at her cap');
RESET ROLE;

-- A cancelled exec gives its slot back.
SELECT dblink_cancel_query('a1');
\set ON_ERROR_STOP 0
SELECT * FROM dblink_get_result('a1') AS t(s text);
\set ON_ERROR_STOP 1
SELECT is(:'LAST_ERROR_SQLSTATE'::text, '57014', 'alice''s first exec is cancelled');
SELECT is(test.wait_procs('sleep 91', 0, 5), 0, 'its sandbox is gone');
SELECT is(test.host_procs('sleep 12'), 1, 'the second one still runs');
SET ROLE alice;
SELECT is((SELECT stdout FROM sandbox.exec('echo again', 'cap3')), E'again\n', 'alice runs a command in the freed slot');
SELECT is((SELECT count(*)::int FROM generate_series(1, 3) i, LATERAL sandbox.exec('true', 'cap3') e WHERE e.exit_code = 0), 3,
		  'and more, one after another: each gives its slot back');
RESET ROLE;

-- Once the second ends, both slots are free: a3 takes one, alice's own exec the other.
SELECT is(s, 'succeeded', 'alice''s second exec ends') FROM dblink_get_result('a2') AS t(s text);
SELECT test.dblink_connect('a3', 'alice');
SELECT dblink_send_query('a3', $$SELECT status FROM sandbox.exec('sleep 93', 'cap1')$$);
SELECT is(test.wait_procs('sleep 93', 1, 10), 1, 'alice runs a long command again');
SET ROLE alice;
SELECT is((SELECT stdout FROM sandbox.exec('echo two', 'cap3')), E'two\n', 'and another at the same time');
RESET ROLE;
SELECT dblink_cancel_query('a3');
\set ON_ERROR_STOP 0
SELECT * FROM dblink_get_result('a3') AS t(s text);
\set ON_ERROR_STOP 1
SELECT is(test.wait_procs('sleep 93', 0, 5), 0, 'it is stopped');

SELECT dblink_disconnect(c) FROM unnest(ARRAY['a1', 'a2', 'a3']) c;
SELECT test.set_system('cloudrun_sandbox.max_sandboxes_per_role', NULL);
SET ROLE alice;
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['cap1', 'cap2', 'cap3', 'cap4']) s;
RESET ROLE;
SELECT * FROM finish();
