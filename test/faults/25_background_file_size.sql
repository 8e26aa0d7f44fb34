-- Issue 10, smaller points: a background process killed by the file-size
-- limit (SIGXFSZ) does not end as a bare "exited 153": its log says what
-- happened and names the limit.  Local backend.
-- Runs as: postgres (sets the worker's file_size_limit); the calls as alice (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(6);
SET cloudrun_sandbox.backend = local;
ALTER SYSTEM SET cloudrun_sandbox.file_size_limit = '1MB';
SELECT pg_reload_conf();
SELECT pg_sleep(1);
SELECT ok(test.wait_worker(), 'the worker is running');
SET ROLE alice;
SELECT sandbox.drop_session('f25', if_exists => true);
SELECT sandbox.start_background('head -c 5000000 /dev/zero > big.bin', 'f25') AS direct \gset
SELECT ok(test.wait_until(format($$SELECT NOT running FROM sandbox.list_background_processes('f25')
								   WHERE pid = %s$$, :direct), 30), 'a background process writing 5 MB ends');
SELECT sandbox.start_background('head -c 5000000 /dev/zero > big2.bin; exit $?', 'f25') AS nested \gset
SELECT ok(test.wait_until(format($$SELECT NOT running FROM sandbox.list_background_processes('f25')
								   WHERE pid = %s$$, :nested), 30), 'so does one whose program writes 5 MB');
SELECT is((SELECT exit_code FROM sandbox.list_background_processes('f25') WHERE pid = :direct), 153,
		  'the one killed by SIGXFSZ exits 153');
SELECT matches(sandbox.get_background_logs(:direct),
			   'the command was killed by SIGXFSZ: it wrote past the file-size limit of 1048576 bytes',
			   'its log says it was killed for writing past the file-size limit');
SELECT matches(sandbox.get_background_logs(:nested),
			   'a program of the command was killed by SIGXFSZ: it wrote past the file-size limit',
			   'so does the log of a command whose program was');
SELECT sandbox.drop_session('f25');
RESET ROLE;
ALTER SYSTEM RESET cloudrun_sandbox.file_size_limit;
SELECT pg_reload_conf();
SELECT * FROM finish();
