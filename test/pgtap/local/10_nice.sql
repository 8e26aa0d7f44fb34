-- Local sandboxes run niced below the server (issue 11, finding 4): every
-- sandbox's processes start at cloudrun_sandbox.local_nice (10 by default),
-- whether a command of exec, a queued command the worker runs (warm sandbox)
-- or a background process; a changed setting reaches each of them (a warm
-- sandbox started at the old niceness is replaced); nothing in a sandbox can
-- lower its niceness, and no role but a superuser can change the setting.
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(15);
SELECT sandbox.drop_session('nice', if_exists => true);
SELECT sandbox.drop_session('nice-q', if_exists => true);

SELECT is((SELECT stdout FROM sandbox.exec('nice', 'nice')), E'10\n', 'exec runs its command at niceness 10');
SELECT is((SELECT stdout FROM sandbox.exec($$sh -c 'cut -d" " -f19 /proc/self/stat'$$, 'nice')), E'10\n',
		  'and so do the processes it starts (/proc/self/stat)');

-- Nothing in the sandbox goes back up.
SELECT is((SELECT stdout || (stderr LIKE '%cannot set niceness%')::text FROM sandbox.exec('nice -n -5 nice', 'nice')),
		  E'10\ntrue', 'nice -n -5 is refused inside the sandbox');
SELECT isnt((SELECT exit_code FROM sandbox.exec('renice -n 0 $$', 'nice')), 0, 'renice -n 0 fails');
SELECT is((SELECT stdout FROM sandbox.exec('renice -n 0 $$ 2>/dev/null; nice', 'nice')), E'10\n', 'the niceness stays 10');
SELECT is((SELECT stdout FROM sandbox.exec($$awk '/^Max (nice|realtime) priority/ {print $2, $4, $5}' /proc/self/limits$$, 'nice')),
		  E'nice 0 0\nrealtime 0 0\n', 'RLIMIT_NICE and RLIMIT_RTPRIO are 0 in the sandbox');

-- The worker: a queued command (a warm sandbox) and a background process.
SELECT sandbox.submit('nice', 'nice-q') AS q1 \gset
SELECT is((SELECT stdout FROM sandbox.wait(:q1, '60 s')), E'10\n', 'a queued command runs at niceness 10');
SELECT sandbox.start_background('nice', 'nice') AS b1 \gset
SELECT ok(test.wait_until(format($$SELECT NOT running FROM sandbox.list_background_processes('nice') WHERE pid = %s$$, :b1), 20),
		  'a background process ran');
SELECT is(sandbox.get_background_logs(:b1, 'nice'), E'10\n', 'at niceness 10');

-- The user cannot change it.
SELECT throws_ok($$SET cloudrun_sandbox.local_nice = 0$$, '42501', NULL, 'a role with sandbox_user cannot set local_nice');

-- With the setting at 5, everything starts at 5.
SELECT is(test.set_system('cloudrun_sandbox.local_nice', '5'), '5', 'local_nice set to 5 for the server');
SELECT is((SELECT stdout FROM sandbox.exec('nice', 'nice')), E'5\n', 'exec runs at 5');
SELECT sandbox.submit('nice', 'nice-q') AS q2 \gset
SELECT is((SELECT stdout FROM sandbox.wait(:q2, '60 s')), E'5\n',
		  'a queued command runs at 5 (its session''s warm sandbox, started at 10, is replaced)');
SELECT sandbox.start_background('nice', 'nice') AS b2 \gset
SELECT ok(test.wait_until(format($$SELECT NOT running FROM sandbox.list_background_processes('nice') WHERE pid = %s$$, :b2), 20)
		  AND sandbox.get_background_logs(:b2, 'nice') = E'5\n', 'a background process runs at 5');
SELECT is(test.set_system('cloudrun_sandbox.local_nice', NULL), '10', 'local_nice back to its default');

SELECT sandbox.drop_session('nice');
SELECT sandbox.drop_session('nice-q');
SELECT * FROM finish();
