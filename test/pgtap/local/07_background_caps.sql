-- Per-role cap on background processes (issue 11, finding 4): a role has at
-- most cloudrun_sandbox.max_background_per_role of them starting or running;
-- the next start is refused with 53400, and one ending makes room again.
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(9);
SELECT sandbox.drop_session('bgcap', if_exists => true);

-- Several started by one transaction all start (the worker once started only the first of a wake-up).
SELECT count(sandbox.start_background('sleep 41' || i, 'bgcap')) FROM generate_series(1, 3) i;
SELECT is(test.wait_procs($$sleep 41[123]$$, 3, 10), 3, 'three background processes started in one transaction all run');
SELECT is((SELECT killed_count FROM sandbox.kill_background_process(session => 'bgcap')), 3, 'and are killed');

SELECT test.set_setting('cloudrun_sandbox.max_background_per_role', '2');

SELECT lives_ok($$SELECT sandbox.start_background('sleep 401', 'bgcap')$$, 'a first background process starts');
SELECT lives_ok($$SELECT sandbox.start_background('sleep 402', 'bgcap')$$, 'a second one too');
SELECT throws_ok($$SELECT sandbox.start_background('sleep 403', 'bgcap')$$, '53400',
				 'role "tap" already has 2 background processes starting or running',
				 'a third is refused: the role is at its cap');
SELECT throws_ok($$SELECT sandbox.start_background('sleep 404', 'default')$$, '53400', NULL,
				 'in any of its sessions');
SELECT is(test.wait_procs($$sleep 40[12]$$, 2, 10), 2, 'the two run');
SELECT is((SELECT killed_count FROM sandbox.kill_background_process(pattern => 'sleep 401', session => 'bgcap')), 1,
		  'killing one');
SELECT lives_ok($$SELECT sandbox.start_background('sleep 405', 'bgcap')$$, 'makes room for another');

SELECT test.set_setting('cloudrun_sandbox.max_background_per_role', NULL);
SELECT sandbox.kill_background_process(session => 'bgcap');
SELECT sandbox.drop_session('bgcap');
SELECT * FROM finish();
