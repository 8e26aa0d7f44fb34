-- What a command can see and touch inside the local sandbox.
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(17);
SELECT sandbox.drop_session('iso', if_exists => true);

SELECT is((SELECT exit_code FROM sandbox.exec(format('test -e %s', test.server_setting('data_directory')), 'iso')), 1,
		  'the PostgreSQL data directory does not exist in the sandbox');
SELECT is((SELECT exit_code FROM sandbox.exec('test -e /var/lib/postgresql', 'iso')), 1,
		  '/var/lib/postgresql does not exist in the sandbox');
SELECT is((SELECT exit_code FROM sandbox.exec(format('test -e %s', test.server_setting('unix_socket_directories')), 'iso')), 1,
		  'the server''s socket directory does not exist in the sandbox');
SELECT is((SELECT status FROM sandbox.exec('touch /usr/x', 'iso')), 'failed', 'writing to /usr fails');
SELECT is((SELECT status FROM sandbox.exec('touch /etc/x', 'iso')), 'failed', 'writing to /etc fails');
SELECT is((SELECT status FROM sandbox.exec('touch /x', 'iso')), 'failed', 'writing to / fails');
SELECT is((SELECT status FROM sandbox.exec('touch /workspace/ok /tmp/ok', 'iso')), 'succeeded', 'writing to /workspace and /tmp works');
SELECT is((SELECT stdout FROM sandbox.exec('ls -A /etc/ssl/private 2>/dev/null | wc -l', 'iso')), E'0\n',
		  'private keys under /etc/ssl/private are hidden');
SELECT is((SELECT stdout FROM sandbox.exec('ps -e -o comm= | grep -c postgres', 'iso')), E'0\n',
		  'the host''s processes are not visible');
SELECT cmp_ok((SELECT stdout::int FROM sandbox.exec('ls /proc | grep -c "^[0-9]"', 'iso')), '<', 10,
		  'only the sandbox''s own few processes are visible');
SELECT is((SELECT stdout FROM sandbox.exec('ls -l /proc/$$/fd | grep -c socket', 'iso')), E'0\n',
		  'the command inherits no socket from the server');
SELECT is((SELECT stdout FROM sandbox.exec('env | grep -c -E "^PG|^LC_|^PGDATA"', 'iso')), E'0\n',
		  'the server''s environment does not leak into the sandbox');

SELECT is((SELECT status FROM sandbox.exec(format('exec 3<>/dev/tcp/127.0.0.1/%s', current_setting('port')), 'iso')), 'failed',
		  'with the network off, connecting to the PostgreSQL port on 127.0.0.1 fails');
SELECT test.set_setting('cloudrun_sandbox.local_network', 'on');
SELECT is((SELECT status FROM sandbox.exec(format('exec 3<>/dev/tcp/127.0.0.1/%s', current_setting('port')), 'iso')), 'succeeded',
		  'with cloudrun_sandbox.local_network on, the same connection works (so the check above can fail)');
SELECT test.set_setting('cloudrun_sandbox.local_network', NULL);

SELECT test.set_setting('cloudrun_sandbox.file_size_limit', '1MB');
SELECT is((SELECT status FROM sandbox.exec('head -c 2000000 /dev/zero > big', 'iso')), 'failed',
		  'cloudrun_sandbox.file_size_limit stops a larger file');
SELECT test.set_setting('cloudrun_sandbox.file_size_limit', NULL);
SELECT test.set_setting('cloudrun_sandbox.max_processes', '20');
SELECT alike((SELECT stderr FROM sandbox.exec('for i in $(seq 60); do sleep 5 & done; wait', 'iso', timeout => '20 s')),
			'%Resource temporarily unavailable%', 'cloudrun_sandbox.max_processes stops a fork storm');
SELECT test.set_setting('cloudrun_sandbox.max_processes', NULL);
SELECT test.set_setting('cloudrun_sandbox.memory_limit', '64MB');
SELECT is((SELECT status FROM sandbox.exec('head -c 200000000 /dev/zero | tail -c 200000000 > /dev/null', 'iso')), 'failed',
		  'cloudrun_sandbox.memory_limit stops a command that needs more memory');
SELECT test.set_setting('cloudrun_sandbox.memory_limit', NULL);

SELECT sandbox.drop_session('iso');
SELECT * FROM finish();
