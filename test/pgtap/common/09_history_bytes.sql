-- History is bounded in bytes per role (issue 11, finding 6): with
-- cloudrun_sandbox.history_max_bytes_per_role at 1MB, 30 commands printing
-- 100 kB each leave alice at most 1MB of finished history, her newest rows
-- kept and the oldest gone; bob's rows are untouched; a row alice keeps
-- locked in an open transaction is skipped, and nothing waits for it.  The
-- same for submit(), pruned by the background worker.  Rows that print
-- nothing count too (256 bytes a row), so a role cannot keep millions.
-- Runs as: tap (sandbox_user only) as alice and bob, on each backend; alice's
-- open transaction through dblink.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
-- A prune that waited for alice's lock would hang: make that a failure.
SET statement_timeout = '120s';
SELECT plan(18);
SELECT ok(test.wait_worker(), 'the worker is running');

-- The bound: for the worker and new connections, and for this session's exec.
SELECT test.set_system('cloudrun_sandbox.history_max_bytes_per_role', '1MB');
SELECT test.set_setting('cloudrun_sandbox.history_max_bytes_per_role', '1MB');

SELECT coalesce(max(id), 0) AS before FROM sandbox.executions \gset
SET ROLE bob;
SELECT sandbox.drop_session('hb_b', if_exists => true);
SELECT sandbox.exec('head -c 100000 /dev/zero | tr ''\0'' b', 'hb_b') FROM generate_series(1, 3) \g /dev/null
CREATE TEMP TABLE hb_bob AS SELECT id, bytes FROM sandbox.executions WHERE session = 'hb_b' AND id > :before;
RESET ROLE;

SET ROLE alice;
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['hb_a', 'hb_a2', 'hb_w', 'hb_e', 'hb_bg']) s;
-- Ten rows of 100 kB: just within the bound.
CREATE TEMP TABLE hb_first (n int, id bigint);
INSERT INTO hb_first SELECT n, (sandbox.exec('head -c 100000 /dev/zero | tr ''\0'' l', 'hb_a')).id
	FROM generate_series(1, 10) n;
RESET ROLE;
-- alice's open transaction runs one more: its prune deletes her oldest row,
-- which stays locked by her until she commits.  (A sandbox_user cannot SELECT
-- ... FOR UPDATE; this is how she can hold a lock on a row of her history.)
SELECT test.dblink_connect('hb_lock', 'alice');
SELECT dblink_exec('hb_lock', 'BEGIN');
SELECT * FROM dblink('hb_lock', $$SELECT status FROM sandbox.exec('head -c 100000 /dev/zero | tr ''\0'' m', 'hb_a2')$$)
	AS t(status text);
SELECT id AS locked_id FROM hb_first WHERE n = 1 \gset
SELECT is((SELECT count(*)::int FROM dblink('hb_lock',
		   format('SELECT id FROM sandbox.executions WHERE id = %s', :locked_id)) AS t(id bigint)), 0,
		  'alice''s open transaction pruned her oldest row (and holds its lock)');

SET ROLE alice;
-- 30 commands, each in its own statement, each printing 100 kB.
CREATE TEMP TABLE hb_runs (n int, id bigint, status text);
DO $$
BEGIN
	FOR n IN 1..30 LOOP
		INSERT INTO hb_runs SELECT n, e.id, e.status
			FROM sandbox.exec('head -c 100000 /dev/zero | tr ''\0'' a', 'hb_a') e;
	END LOOP;
END $$;
SELECT is((SELECT count(*)::int FROM hb_runs WHERE status = 'succeeded'), 30,
		  'alice''s 30 exec calls all succeed while her other transaction holds a lock on an old row of hers');
SELECT cmp_ok((SELECT sum(bytes) FROM sandbox.executions WHERE finished_at IS NOT NULL AND id <> :locked_id),
			  '<=', 1048576::numeric, 'her finished history (but the locked row) is at most the bound');
SELECT is((SELECT array_agg(r.n ORDER BY r.n) FROM hb_runs r JOIN sandbox.executions e USING (id)),
		  ARRAY[21, 22, 23, 24, 25, 26, 27, 28, 29, 30], 'her 10 newest rows are kept, the 20 oldest are gone');
SELECT ok(EXISTS (SELECT FROM sandbox.executions WHERE id = :locked_id),
		  'the row she keeps locked was skipped, not waited for');
RESET ROLE;

SET ROLE bob;
SELECT is((SELECT array_agg(e.bytes ORDER BY e.id) FROM sandbox.executions e JOIN hb_bob b USING (id)),
		  (SELECT array_agg(bytes ORDER BY id) FROM hb_bob), 'bob''s rows are untouched');
RESET ROLE;

-- The same through the worker: 30 submits, pruned by it.
SET ROLE alice;
CREATE TEMP TABLE hb_subs (n int, id bigint);
INSERT INTO hb_subs SELECT n, sandbox.submit('head -c 100000 /dev/zero | tr ''\0'' w', 'hb_w')
	FROM generate_series(1, 30) n;
-- They run in order (one session); the older ones may be pruned already.
SELECT is((SELECT status FROM sandbox.wait((SELECT id FROM hb_subs WHERE n = 30), '100 s')), 'succeeded',
		  'alice''s 30 submitted commands run');
RESET ROLE;
SET ROLE bob;
SELECT sandbox.submit('true', 'hb_b') AS b_id \gset
SELECT is((SELECT status FROM sandbox.wait(:b_id, '5 s')), 'succeeded',
		  'bob''s submit finishes while alice holds her lock');
RESET ROLE;
SET ROLE alice;
SELECT ok(test.until(format('SELECT sum(bytes) <= 1048576 FROM sandbox.executions '
							'WHERE finished_at IS NOT NULL AND id <> %s', :locked_id), 20),
		  'the worker brings her finished history (but the locked row) within the bound');
SELECT is((SELECT array_agg(s.n ORDER BY s.n) FROM hb_subs s JOIN sandbox.executions e USING (id)),
		  ARRAY[21, 22, 23, 24, 25, 26, 27, 28, 29, 30], 'her 10 newest submitted rows are kept');
SELECT ok(EXISTS (SELECT FROM sandbox.executions WHERE id = :locked_id),
		  'the worker skipped the row she keeps locked');
RESET ROLE;
SET ROLE bob;
SELECT is((SELECT count(*)::int FROM sandbox.executions e JOIN hb_bob b USING (id)), 3,
		  'bob''s rows are still all there');
RESET ROLE;

SELECT dblink_exec('hb_lock', 'COMMIT');
SELECT dblink_disconnect('hb_lock');

-- Empty rows count too (256 bytes each): with a bound of 16kB, 100 commands
-- that print nothing leave at most 64 rows.
SELECT test.set_setting('cloudrun_sandbox.history_max_bytes_per_role', '16kB');
SET ROLE alice;
DO $$
BEGIN
	FOR n IN 1..100 LOOP
		PERFORM sandbox.exec('true', 'hb_a');
	END LOOP;
END $$;
SELECT cmp_ok((SELECT count(*) FROM sandbox.executions WHERE finished_at IS NOT NULL), '<=', 64::bigint,
			  'rows that print nothing count toward the bound: at most 64 of 100 are kept under 16kB');
RESET ROLE;

-- Ended background processes are history too: under this session's bound of
-- 16kB, 20 that ran `true` with a 1 kB command leave at most 13 rows (1,256
-- bytes each) once the next one starts.
SET ROLE alice;
SELECT sandbox.start_background('true # ' || repeat('x', 1000), 'hb_bg') FROM generate_series(1, 20) \g /dev/null
SELECT ok(test.until('SELECT count(*) = 20 FROM sandbox.list_background_processes(''hb_bg'') WHERE NOT running', 60),
		  'alice''s 20 background processes end');
SELECT sandbox.start_background('true', 'hb_bg') \g /dev/null
SELECT cmp_ok((SELECT count(*) FROM sandbox.background_processes WHERE session = 'hb_bg' AND ended_at IS NOT NULL),
			  '<=', 13::bigint, 'her ended background processes beyond the bound are pruned at the next start');
RESET ROLE;

-- A queued command's environment counts too (it stays on the row): 30 submits
-- of `true` with 100 kB of env each, under the worker's bound of 1MB.
SET ROLE alice;
CREATE TEMP TABLE hb_env AS SELECT n, sandbox.submit('true', 'hb_e',
		env => jsonb_build_object('BIG', repeat('e', 100000))) AS id
	FROM generate_series(1, 30) n;
SELECT is((SELECT status FROM sandbox.wait((SELECT id FROM hb_env WHERE n = 30), '100 s')), 'succeeded',
		  'alice''s 30 submits with 100 kB of env each run');
SELECT ok(test.until('SELECT count(*) <= 10 AND min(bytes) >= 100000 FROM sandbox.executions '
					 'WHERE session = ''hb_e''', 20),
		  'their environment counts toward the bound: at most 10 of them are kept');
RESET ROLE;
SELECT test.set_system('cloudrun_sandbox.history_max_bytes_per_role', NULL);
SELECT test.set_setting('cloudrun_sandbox.history_max_bytes_per_role', NULL);
SET ROLE alice;
SELECT sandbox.drop_session(s) FROM unnest(ARRAY['hb_a', 'hb_a2', 'hb_w', 'hb_e', 'hb_bg']) s;
RESET ROLE;
SET ROLE bob;
SELECT sandbox.drop_session('hb_b');
RESET ROLE;
SELECT * FROM finish();
