-- Review: every subtransaction abort after an exec starts a reaper process
-- (REAP_RESYNC), each of which waits up to 1 s for the session lock the
-- outer transaction still holds.  One role's loop keeps every background
-- worker slot taken, so another role's callback cannot start.
-- Passes only when bob's callback runs in time.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(2);
SELECT test.wait_worker();
DROP SCHEMA IF EXISTS f91 CASCADE;
CREATE SCHEMA f91 AUTHORIZATION bob;
SET ROLE bob;
CREATE TABLE f91.done (id bigint);
CREATE FUNCTION f91.cb(id bigint) RETURNS void LANGUAGE sql AS $$ INSERT INTO f91.done VALUES (id) $$;
SELECT sandbox.drop_session('f91b', if_exists => true);
RESET ROLE;
SET ROLE alice;
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['f91aflood1', 'f91aflood2']) s;
SELECT sandbox.exec('true', s) FROM unnest(ARRAY['f91aflood1', 'f91aflood2']) s;
RESET ROLE;
SELECT test.dblink_connect('flood' || i, 'alice') FROM generate_series(1, 2) i;
SELECT dblink_exec('flood' || i, 'SET application_name = flood' || i) FROM generate_series(1, 2) i;
SELECT dblink_send_query('flood' || i, $q$
DO $$
DECLARE t timestamptz := clock_timestamp();
BEGIN
	WHILE clock_timestamp() < t + interval '15 s' LOOP
		BEGIN
			PERFORM sandbox.exec('true', 'f91a' || current_setting('application_name'));
			RAISE EXCEPTION 'roll back';
		EXCEPTION WHEN raise_exception THEN NULL;
		END;
	END LOOP;
END $$ $q$) FROM generate_series(1, 2) i;
SELECT pg_sleep(3);
SELECT ok((SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'cloudrun_sandbox reaper') < 4,
		  'alice''s loop does not fill the worker slots with reapers: ' ||
		  (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'cloudrun_sandbox reaper'));
SET ROLE bob;
SELECT sandbox.submit('true', 'f91b', callback => 'f91.cb(bigint)') AS b1 \gset
RESET ROLE;
SELECT ok(test.wait_until(format('SELECT count(*) > 0 FROM f91.done WHERE id = %s', :b1), 6),
		  'bob''s callback runs within 6 s while alice loops');
SELECT (SELECT count(*) FROM dblink_get_result('flood' || i) AS t(x text)) FROM generate_series(1, 2) i;
SELECT dblink_disconnect('flood' || i) FROM generate_series(1, 2) i;
SELECT pg_sleep(2);
SET ROLE alice;
SELECT sandbox.drop_session(s) FROM unnest(ARRAY['f91aflood1', 'f91aflood2']) s;
RESET ROLE;
SET ROLE bob;
SELECT sandbox.drop_session('f91b');
RESET ROLE;
DROP SCHEMA f91 CASCADE;
SELECT * FROM finish();
