-- Security, finding 8: every timeout, explicit or default, is capped at max_timeout.
-- Runs as: alice (sandbox_user only); a superuser only lowers max_timeout first.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(5);
SET cloudrun_sandbox.max_timeout = '2s';
SET ROLE alice;
SELECT sandbox.drop_session('tmo', if_exists => true);
SET cloudrun_sandbox.default_timeout = '720h';
SELECT is((SELECT status FROM sandbox.exec('sleep 6', 'tmo')), 'timed_out',
		  'a default_timeout above max_timeout does not let exec run past max_timeout');
SELECT ok((SELECT duration < interval '5 s' FROM sandbox.exec('sleep 6', 'tmo')), 'it stops at about max_timeout');
SELECT sandbox.submit('sleep 6', 'tmo') AS id \gset
SELECT is((SELECT timeout FROM sandbox.executions WHERE id = :id), interval '2 s',
		  'a queued command records the capped timeout');
SELECT throws_ok($$SELECT * FROM sandbox.exec('true', 'tmo', timeout => '3 s')$$, '22023', NULL,
				 'an explicit timeout above max_timeout is refused');
RESET ROLE;
RESET cloudrun_sandbox.max_timeout;
SET ROLE alice;
SELECT is((SELECT status FROM sandbox.wait(:id, '20 s')), 'timed_out', 'and is stopped by it');
SELECT sandbox.drop_session('tmo');
RESET cloudrun_sandbox.default_timeout;
RESET ROLE;
SELECT * FROM finish();
