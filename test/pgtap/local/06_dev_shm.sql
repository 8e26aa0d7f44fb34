-- Memory that no rlimit counts (issue 11, finding 3): /dev and /dev/shm are a
-- tmpfs of the host's size unless bounded.  /dev is read-only, /dev/shm has
-- cloudrun_sandbox.local_shm_size, and a warm sandbox forgets what a command
-- left in /dev/shm or in System V IPC before the next one starts.
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(13);
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['shm1', 'shm2', 'shm3']) s;

SELECT is((SELECT stdout FROM sandbox.exec('df -k --output=size /dev/shm | tail -1 | tr -d " "', 'shm1')),
		  E'65536\n', '/dev/shm is a tmpfs of 64 MB');
SELECT results_eq($$SELECT exit_code, stdout FROM sandbox.exec(
	'dd if=/dev/zero of=/dev/shm/fill bs=1M count=200 2>/dev/null; echo $?; du -sm /dev/shm | cut -f1', 'shm1')$$,
	$$VALUES (0, E'1\n64\n')$$, 'a command cannot put more than that in it');
SELECT is((SELECT stdout FROM sandbox.exec('touch /dev/big 2>&1 | grep -c "Read-only"; echo x > /dev/null && echo null-ok', 'shm1')),
		  E'1\nnull-ok\n', '/dev itself is read-only; its devices work');
SELECT is((SELECT stdout FROM sandbox.exec('ls /dev/shm | wc -l', 'shm1')), E'0\n',
		  'a new sandbox starts with an empty /dev/shm');

-- The size follows the setting.
SELECT test.set_setting('cloudrun_sandbox.local_shm_size', '8MB');
SELECT is((SELECT stdout FROM sandbox.exec('df -k --output=size /dev/shm | tail -1 | tr -d " "', 'shm1')),
		  E'8192\n', 'cloudrun_sandbox.local_shm_size sets its size');
SELECT test.set_setting('cloudrun_sandbox.local_shm_size', NULL);

-- A warm sandbox: what one command leaves in /dev/shm or System V IPC is gone at the next.
SELECT sandbox.submit('head -c 10485760 /dev/zero > /dev/shm/kept; ipcmk -M 4194304 >/dev/null; ipcmk -S 2 >/dev/null; ipcmk -Q >/dev/null; ls /dev/shm; ipcs -m | grep -c "^0x"', 'shm2') AS id \gset
SELECT results_eq(format('SELECT status, stdout FROM sandbox.wait(%s)', :id),
				  $$VALUES ('succeeded'::text, E'kept\n1\n'::text)$$,
				  'a queued command leaves a file in /dev/shm and System V IPC objects');
SELECT sandbox.submit('ls /dev/shm | wc -l; ipcs -m | grep -c "^0x"; ipcs -s | grep -c "^0x"; ipcs -q | grep -c "^0x"; true', 'shm2') AS id \gset
SELECT results_eq(format('SELECT status, stdout FROM sandbox.wait(%s)', :id),
				  $$VALUES ('succeeded'::text, E'0\n0\n0\n0\n'::text)$$,
				  'the next command in the same warm sandbox finds none of them');
SELECT is((SELECT count(*)::int FROM test.worker_children(
	regexp_replace(test.session_dir('shm2'), '([.[\]()*+?{}|^$\\])', '\\\1', 'g') || '(/fs)?/workspace .* serve --listen 3$')),
		  1, 'it ran in the session''s warm sandbox');
SELECT sandbox.submit('mkdir -p /dev/shm/d/e && touch /dev/shm/d/e/f && chmod 000 /dev/shm/d && echo made', 'shm2') AS id \gset
SELECT is((SELECT stdout FROM sandbox.wait(:id)), E'made\n', 'a command leaves an unreadable directory tree there');
SELECT sandbox.submit('ls -A /dev/shm | wc -l', 'shm2') AS id \gset
SELECT is((SELECT stdout FROM sandbox.wait(:id)), E'0\n', 'which is removed too');
SELECT is((SELECT stdout FROM sandbox.exec('echo ok', 'shm2')), E'ok\n', 'the session goes on working');

-- A cloud command's sandbox inside the container (cloud_isolation = sandbox) too.
SELECT sandbox.create_session('shm3', backend => 'cloudrun') IS NOT NULL AS made \gset
SELECT is((SELECT stdout FROM sandbox.exec('df -k --output=size /dev/shm | tail -1 | tr -d " "', 'shm3')),
		  E'65536\n', 'a cloud command''s /dev/shm is 64 MB');
SELECT is((SELECT stdout FROM sandbox.exec('touch /dev/big 2>&1 | grep -c "Read-only"', 'shm3')),
		  E'1\n', 'and its /dev is read-only');

SELECT sandbox.drop_session(s) FROM unnest(ARRAY['shm1', 'shm2', 'shm3']) s;
SELECT * FROM finish();
