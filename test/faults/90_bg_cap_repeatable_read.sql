-- Review: max_background_per_role counts with the caller's snapshot.  Under
-- REPEATABLE READ a transaction whose snapshot predates the other starts sees
-- none of them, so N connections of one role start N processes past the cap.
-- Passes only when the cap holds.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(1);
SELECT test.wait_worker();
SELECT test.alter_system('cloudrun_sandbox.max_background_per_role', '1');
SET ROLE alice;
SELECT sandbox.drop_session('f90', if_exists => true);
SELECT sandbox.create_session('f90');
RESET ROLE;
SELECT test.dblink_connect('c' || i, 'alice') FROM generate_series(1, 3) i;
SELECT dblink_exec('c' || i, 'BEGIN ISOLATION LEVEL REPEATABLE READ') FROM generate_series(1, 3) i;
SELECT t.n FROM generate_series(1, 3) i, LATERAL dblink('c' || i, 'SELECT count(*) FROM sandbox.background_processes') AS t(n bigint);
-- one after another: each commits before the next starts
CREATE TEMP TABLE r (i int, ok boolean);
DO $$
BEGIN
	FOR i IN 1..3 LOOP
		BEGIN
			PERFORM * FROM dblink('c' || i, format($q$SELECT sandbox.start_background('sleep 90%s', 'f90')$q$, i)) AS t(p bigint);
			PERFORM dblink_exec('c' || i, 'COMMIT');
			INSERT INTO r VALUES (i, true);
		EXCEPTION WHEN OTHERS THEN
			INSERT INTO r VALUES (i, false);
			PERFORM dblink_exec('c' || i, 'ROLLBACK');
		END;
	END LOOP;
END $$;
SELECT is((SELECT count(*) FROM r WHERE ok)::int, 1, 'with a cap of 1, only one of three starts succeeds');
SELECT dblink_disconnect('c' || i) FROM generate_series(1, 3) i;
SELECT test.alter_system('cloudrun_sandbox.max_background_per_role', NULL);
SET ROLE alice;
SELECT sandbox.kill_background_process(session => 'f90');
SELECT sandbox.drop_session('f90');
RESET ROLE;
SELECT * FROM finish();
