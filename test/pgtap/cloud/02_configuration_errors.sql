-- Wrong settings give clear errors whose hints name the setting to fix, and
-- leave nothing half-written.
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(9);
SELECT sandbox.drop_session('cerr', if_exists => true);
-- Sessions' objects are named by storage keys, not names: count them all.
SELECT count(*) AS objects_before FROM test.emu('list', current_setting('cloudrun_sandbox.bucket'),
	current_setting('cloudrun_sandbox.prefix') || '/sessions/') \gset

SELECT test.set_setting('cloudrun_sandbox.credentials', '/nonexistent/key.json');
SELECT matches(test.error_of($$SELECT sandbox.exec('true', 'cerr')$$), '^28000: .*HINT: .*cloudrun_sandbox\.credentials',
			   'a key file that does not exist: invalid_authorization_specification naming credentials');
SELECT test.set_setting('cloudrun_sandbox.credentials', current_setting('test.bin') || '/unknown-key.json');
SELECT matches(test.error_of($$SELECT sandbox.exec('true', 'cerr')$$), '^28000: .*HINT: .*cloudrun_sandbox\.credentials',
			   'a key Google does not know: invalid_authorization_specification naming credentials');
SELECT test.set_setting('cloudrun_sandbox.credentials', 'none');
SELECT matches(test.error_of($$SELECT sandbox.exec('true', 'cerr')$$), '^28000: .*HINT: .*cloudrun_sandbox\.credentials',
			   'no credentials where they are required: invalid_authorization_specification naming credentials');
SELECT test.set_setting('cloudrun_sandbox.credentials', NULL);

SELECT test.set_setting('cloudrun_sandbox.bucket', 'no-such-bucket');
SELECT matches(test.error_of($$SELECT sandbox.exec('true', 'cerr')$$), '^42704: .*bucket.*HINT: .*cloudrun_sandbox\.bucket',
			   'a bucket that does not exist: undefined_object naming the bucket setting');
SELECT test.set_setting('cloudrun_sandbox.bucket', NULL);

SELECT test.set_setting('cloudrun_sandbox.job', 'no-such-job');
SELECT matches(test.error_of($$SELECT sandbox.exec('true', 'cerr')$$), '^42704: .*job.*HINT: .*cloudrun_sandbox\.job',
			   'a job that does not exist: undefined_object naming the job setting');
SELECT test.set_setting('cloudrun_sandbox.job', NULL);
SELECT is((SELECT count(*)::int FROM test.emu('list', current_setting('cloudrun_sandbox.bucket'),
			current_setting('cloudrun_sandbox.prefix') || '/sessions/')), :objects_before,
		  'a run that could not start leaves no request object behind');

SELECT test.emu('hook', 'faults', '{"sequence": [{"endpoint": "upload", "fault": "403", "count": 1}]}');
SELECT matches(test.error_of($$SELECT sandbox.exec('true', 'cerr')$$), '^42501: .*HINT: .*roles/storage',
			   'a denied call: insufficient_privilege saying which roles to grant');
SELECT test.emu('hook', 'faults', '{}');

SELECT test.set_setting('cloudrun_sandbox.project', '');
SELECT matches(test.error_of($$SELECT sandbox.exec('true', 'cerr')$$), '^22023: cloudrun_sandbox\.project is not set',
			   'an unset project says so');
SELECT test.set_setting('cloudrun_sandbox.project', NULL);

SELECT is((SELECT count(*)::int FROM sandbox.sessions WHERE name = 'cerr'), 0, 'failed calls leave no session row');
SELECT * FROM finish();
