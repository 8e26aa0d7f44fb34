-- The length of a command is bounded (issue 11, finding 5): exec, submit, the
-- trigger and start_background refuse a command longer than
-- cloudrun_sandbox.max_command_bytes with 54000 and a hint, before any copy of it
-- is made; a command within the bound runs.
-- Runs as: tap (sandbox_user only), on each backend.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(7);
SELECT sandbox.drop_session('cmdlen', if_exists => true);
SELECT test.set_setting('cloudrun_sandbox.max_command_bytes', '2kB');

SELECT is((SELECT stdout FROM sandbox.exec('echo ' || repeat('a', 1900) || ' | wc -c', 'cmdlen')), E'1901\n',
		  'a command within the bound runs');
SELECT throws_ok(format('SELECT sandbox.exec(%L, %L)', 'echo ' || repeat('a', 2100), 'cmdlen'), '54000',
				 'command is too long: 2105 bytes', 'exec refuses a longer one');
SELECT throws_ok(format('SELECT sandbox.submit(%L, %L)', 'echo ' || repeat('a', 2100), 'cmdlen'), '54000',
				 NULL, 'so does submit');
SELECT throws_ok(format('SELECT sandbox.start_background(%L, %L)', 'echo ' || repeat('a', 2100), 'cmdlen'), '54000',
				 NULL, 'and start_background');
CREATE TEMP TABLE cmdlen_jobs (id serial, cmd text);
CREATE TRIGGER cmdlen_run AFTER INSERT ON cmdlen_jobs FOR EACH ROW
	EXECUTE FUNCTION sandbox.submit_trigger('cmd', 'cmdlen');
SELECT throws_ok(format('INSERT INTO cmdlen_jobs (cmd) VALUES (%L)', 'echo ' || repeat('a', 2100)), '54000',
				 NULL, 'and the trigger, which rolls back the insert');
SELECT is((SELECT count(*)::int FROM cmdlen_jobs), 0, 'nothing was inserted');
SELECT is((SELECT count(*)::int FROM sandbox.executions WHERE session = 'cmdlen' AND length(command) > 2048), 0,
		  'and nothing queued');

SELECT test.set_setting('cloudrun_sandbox.max_command_bytes', NULL);
SELECT sandbox.drop_session('cmdlen');
SELECT * FROM finish();
