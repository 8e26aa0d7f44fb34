-- The local backend's per-session disk quota (issue 11, finding 2): a session
-- made with cloudrun_sandbox.local_disk_quota keeps its files in a disk image
-- of that size.  A role that writes without end (a command, a loop that keeps
-- going after ENOSPC, /tmp, a background process, its log, a queued command,
-- file_write, file_upload) is stopped at the quota with status quota_exceeded
-- (SQLSTATE 53100 for the file operations), its earlier files intact; another
-- role keeps working; once files are deleted the session works again; a
-- session without an image (the 0.3.0 layout) still works.  test/disk_quota.sh
-- runs this file on a cluster whose local_root is a 64 MB tmpfs.
-- Runs as: tap (sandbox_user only), with SET ROLE alice and bob.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(39);
SELECT ok(test.wait_worker(), 'the worker is running');
SELECT test.set_setting('cloudrun_sandbox.local_disk_quota', '16MB');

SET ROLE alice;
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['dq', 'dq_old']) s;
SET ROLE bob;
SELECT sandbox.drop_session('dq_bob', if_exists => true);

-- alice's session: files written before the quota is reached.
SET ROLE alice;
-- wait_bg waits up to 30 s for a background process to end; returns its status.
CREATE OR REPLACE FUNCTION pg_temp.wait_bg(h bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text;
BEGIN
	FOR i IN 1..300 LOOP
		SELECT status INTO st FROM sandbox.list_background_processes() WHERE pid = h;
		EXIT WHEN st NOT IN ('starting', 'running');
		PERFORM pg_sleep(0.1);
	END LOOP;
	RETURN st;
END $$;
SELECT is(status, 'succeeded', 'a session made with a 16 MB quota runs commands')
	FROM sandbox.exec('echo keep > keep.txt && head -c 1000000 /dev/urandom > before.bin && sha256sum before.bin > before.sum', 'dq');
SELECT ok(stdout::bigint BETWEEN 15500 AND 17500, 'its /workspace is a file system of about 16 MB: ' || stdout)
	FROM sandbox.exec($$df -k --output=size /workspace | tail -1 | tr -d ' \n'$$, 'dq');
SELECT is(stdout, E'ran\n', 'programs written there can be run')
	FROM sandbox.exec($$printf '#!/bin/sh\necho ran\n' > run.sh && chmod +x run.sh && ./run.sh$$, 'dq');
SELECT is(stdout, E'same\n', '/workspace and /tmp are on it')
	FROM sandbox.exec($$[ "$(stat -c %d /workspace)" = "$(stat -c %d /tmp)" ] && echo same$$, 'dq');

-- A command that writes without end is stopped at the quota.
SELECT status AS st, stderr AS err FROM sandbox.exec('cat /dev/zero > fill', 'dq') \gset
SELECT is(:'st'::text, 'quota_exceeded', 'a command filling /workspace ends with status quota_exceeded');
SELECT matches(:'err'::text, 'disk quota of 16 MB is full.*local_disk_quota.*delete files', 'its stderr names the quota and how to free space');
SELECT ok(stdout::bigint BETWEEN 14000000 AND 17500000, 'it wrote about the quota and no more: ' || stdout)
	FROM sandbox.exec('stat -c %s fill', 'dq');
SELECT is(status, 'succeeded', 'files written before the quota was reached are intact (read while the disk is full)')
	FROM sandbox.exec('sha256sum -c --quiet before.sum && grep -qx keep keep.txt', 'dq');

-- Another role and the server keep working meanwhile.
SET ROLE bob;
SELECT is(stdout, E'bob\n', 'another role''s session keeps working while alice''s is full')
	FROM sandbox.exec('echo bob > b.txt && cat b.txt', 'dq_bob');
SELECT is(sandbox.file_write('b2.txt', repeat('b', 100000), session => 'dq_bob'), 100000::bigint,
		  'and writes files');
SET ROLE alice;
CREATE TEMP TABLE dq_rows AS SELECT g, repeat('r', 100) AS pad FROM generate_series(1, 10000) g;
SELECT is((SELECT count(*) FROM dq_rows), 10000::bigint, 'the server keeps writing tables');

-- file_write and file_upload at the quota: 53100, nothing left behind.
SELECT throws_ok($$SELECT sandbox.file_write('w.txt', repeat('w', 3000000), session => 'dq')$$,
				 '53100', NULL, 'file_write into a full session fails with disk_full');
SELECT throws_like($$SELECT sandbox.file_upload('u.bin', convert_to(repeat('u', 3000000), 'UTF8'), session => 'dq')$$,
				   '%No space left on device%', 'file_upload too');
SELECT ok(NOT sandbox.file_exists('w.txt', 'dq') AND NOT sandbox.file_exists('u.bin', 'dq'),
		  'and leaves no partial file');

-- Space freed: the session works again.
SELECT is(status, 'succeeded', 'after rm the session runs commands again')
	FROM sandbox.exec('rm fill && echo again > again.txt', 'dq');
SELECT is(sandbox.file_write('w.txt', repeat('w', 3000000), session => 'dq'), 3000000::bigint,
		  'and file_write works again');

-- A write larger than what is left fails whole: the file is not touched.
SELECT throws_ok($$SELECT sandbox.file_upload('w.txt', convert_to(repeat('v', 20000000), 'UTF8'), session => 'dq')$$,
				 '53100', NULL, 'an upload larger than the quota fails with disk_full');
SELECT is(stdout, E'3000000\n', 'and the file it would have replaced is as it was')
	FROM sandbox.exec('stat -c %s w.txt', 'dq');
SELECT throws_ok($$SELECT sandbox.file_write('w.txt', repeat('a', 20000000), append => true, session => 'dq')$$,
				 '53100', NULL, 'so does an append of more than fits');
SELECT is(stdout, E'3000000\n', 'which leaves the file as it was')
	FROM sandbox.exec('stat -c %s w.txt && rm w.txt', 'dq');

-- A loop that keeps going after ENOSPC is stopped by the executor, not by the timeout.
SELECT status AS st, duration < interval '20 s' AS soon
	FROM sandbox.exec('while :; do head -c 1000000 /dev/zero >> loop.bin; done', 'dq', timeout => '60 s') \gset
SELECT is(:'st'::text, 'quota_exceeded', 'a loop that keeps writing after ENOSPC is stopped with quota_exceeded');
SELECT ok(:'soon'::boolean, 'soon after the disk is full, long before its timeout');
SELECT is(status, 'succeeded', 'freeing it again') FROM sandbox.exec('rm loop.bin', 'dq');

-- /tmp counts in the same quota.
SELECT is(status, 'quota_exceeded', 'a command filling /tmp ends with quota_exceeded')
	FROM sandbox.exec('while :; do cat /dev/zero >> /tmp/fill 2>/dev/null; done', 'dq', timeout => '60 s');
SELECT is(status, 'succeeded', 'rm in /tmp frees it') FROM sandbox.exec('rm /tmp/fill', 'dq');

-- Queued commands (the worker, a warm sandbox) are stopped the same way.
SELECT sandbox.submit('cat /dev/zero > queued.fill', 'dq') AS queued \gset
SELECT is((SELECT status FROM sandbox.wait(:queued, interval '60 s')), 'quota_exceeded',
		  'a queued command filling the quota ends with quota_exceeded');
SELECT is(status, 'succeeded', 'and rm frees it') FROM sandbox.exec('rm queued.fill', 'dq');

-- Background processes: one writing a file, one writing its log without end.
SELECT sandbox.start_background('cat /dev/zero > bg.fill', 'dq') AS bgfile \gset
SELECT is(pg_temp.wait_bg(:bgfile), 'quota_exceeded', 'a background process filling the quota ends with quota_exceeded');
SELECT matches((SELECT error FROM sandbox.background_processes WHERE pid = :bgfile), 'disk quota of 16384 kB is full',
			   'its error names the quota');
SELECT is(status, 'succeeded', 'rm frees it') FROM sandbox.exec('rm bg.fill', 'dq');
SELECT sandbox.start_background('yes 0123456789abcdef0123456789abcdef', 'dq') AS bglog \gset
SELECT is(pg_temp.wait_bg(:bglog), 'quota_exceeded', 'a background process whose log fills the quota too: its log is in the image');
SELECT is(stdout, E'ok\n', 'its log can be deleted from a command, which frees the space')
	FROM sandbox.exec(format('rm /run/background/%s.log && head -c 5000000 /dev/zero > after.bin && echo ok', :bglog), 'dq');

-- A session without an image (made with no quota: the layout of 0.3.0 and before) works unbounded.
RESET ROLE;
SELECT test.set_setting('cloudrun_sandbox.local_disk_quota', '0');
SET ROLE alice;
SELECT is(stdout, E'ok\n', 'a session without a disk image runs commands (its /workspace is not on a FUSE image)')
	FROM sandbox.exec($$[ "$(stat -f -c %T /workspace)" != fuseblk ] && head -c 20000000 /dev/zero > big && echo ok$$, 'dq_old');
SELECT sandbox.start_background('echo old-layout-log', 'dq_old') AS bgold \gset
SELECT is(pg_temp.wait_bg(:bgold), 'exited', 'and background processes');
SELECT is(sandbox.get_background_logs(:bgold), E'old-layout-log\n', 'whose logs are where they were');
RESET ROLE;
SELECT test.set_setting('cloudrun_sandbox.local_disk_quota', NULL);

-- Dropping the session unmounts its image and deletes it.
SET ROLE alice;
SELECT storage_key AS dq_key FROM sandbox.sessions WHERE name = 'dq' \gset
RESET ROLE;
SELECT test.session_dir_of(:'dq_key') AS dq_dir \gset
SELECT is(test.host_procs('/usr/bin/fuse2fs ' || :'dq_dir' || '/disk.img ' || :'dq_dir' || '/fs -f -o nosuid,nodev,fakeroot'), 1,
		  'a session''s image is served by one fuse2fs');
SET ROLE alice;
SELECT storage_key AS dq_key FROM sandbox.sessions WHERE name = 'dq' \gset
SELECT sandbox.drop_session('dq');
SELECT sandbox.drop_session('dq_old');
RESET ROLE;
SELECT test.session_dir_of(:'dq_key') AS dq_dir \gset
SELECT is(test.wait_procs('/usr/bin/fuse2fs ' || :'dq_dir' || '/disk.img ' || :'dq_dir' || '/fs -f -o nosuid,nodev,fakeroot', 0, 20), 0,
		  'a dropped session''s fuse2fs is gone');
SELECT ok(test.wait_until(format('SELECT NOT test.session_dir_exists(%L)', :'dq_dir'), 20),
		  'and its directory, with the image, is deleted');
SET ROLE bob;
SELECT sandbox.drop_session('dq_bob');
RESET ROLE;
SELECT * FROM finish();
