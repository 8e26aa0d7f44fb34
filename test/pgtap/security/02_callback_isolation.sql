-- Security (issue 9, finding 2 and the first point of finding 10; issue 10,
-- findings 3 and 4): a callback runs in a fresh process connected as its own
-- role, sees nothing another role's callback left behind, is bounded by
-- cloudrun_sandbox.callback_timeout, never makes the worker wait, and its
-- error is shown to its own role only.
--
-- Roles: every attack and every check of what a role sees runs as alice or bob
-- (SET ROLE, or dblink connections as them).  The superuser only sets up (the
-- roles' schemas, ALTER ROLE / ALTER SYSTEM for the callback settings, a
-- throwaway role), reads results across roles, restarts the worker, and is the
-- victim whose callback alice tries to hijack into making her a superuser.
-- Steps that only set the stage are checked with pg_temp.must (an error, not a
-- test), so that every test is one that failed before callbacks were isolated.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(30);

-- wait_for polls a query returning a boolean until it is true or max_s passed
-- (with a fresh look at pg_stat_activity each time).
CREATE FUNCTION pg_temp.wait_for(q text, max_s float8 DEFAULT 20) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + make_interval(secs => max_s);
	r boolean;
BEGIN
	LOOP
		PERFORM pg_stat_clear_snapshot();
		EXECUTE q INTO r;
		IF r THEN
			RETURN true;
		END IF;
		IF clock_timestamp() > deadline THEN
			RETURN false;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;

-- must stops the file when a step that sets the stage did not happen.
CREATE FUNCTION pg_temp.must(cond boolean, what text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	IF NOT coalesce(cond, false) THEN
		RAISE EXCEPTION 'precondition failed: %', what;
	END IF;
END $$;

-- set_quietly runs a settings statement that an older build may not know
-- (ALTER SYSTEM, which cannot run in a function, goes with ON_ERROR_STOP off).
CREATE FUNCTION pg_temp.set_quietly(stmt text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
EXCEPTION WHEN OTHERS THEN
	RAISE WARNING '%: %', stmt, SQLERRM;
END $$;

SELECT pg_temp.must(test.wait_worker(), 'the worker is running');
ALTER ROLE alice NOSUPERUSER;
DROP SCHEMA IF EXISTS alice CASCADE;
DROP SCHEMA IF EXISTS bob CASCADE;
DROP SCHEMA IF EXISTS cbiso_dave CASCADE;
DROP ROLE IF EXISTS cbiso_dave;
DROP TABLE IF EXISTS public.builds;
DROP FUNCTION IF EXISTS public.cbiso_su_done(bigint);
SELECT sandbox.drop_session('cbiso-su', if_exists => true);

-- alice: the attacker.  Her schema is on her "$user" search_path.
SET ROLE alice;
SELECT sandbox.drop_session('cbiso-a', if_exists => true);
CREATE SCHEMA alice;
GRANT USAGE ON SCHEMA alice TO PUBLIC;
CREATE TABLE alice.loot (session_user_name text, current_user_name text);
GRANT INSERT ON alice.loot TO PUBLIC;
CREATE TABLE alice.seen (execution bigint, pid int);
CREATE TABLE alice.calls (execution bigint);
CREATE TABLE alice.target (n int);

-- Leaves behind, in its session, everything a later callback could trip on:
-- a temporary "builds" (the table the README's build_done updates) whose
-- trigger runs a pg_temp function as whoever writes it, an advisory lock and
-- session settings.  (LISTEN is refused in background processes.)
CREATE FUNCTION alice.attack(execution bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO alice.seen VALUES (execution, pg_backend_pid());
	CREATE TEMP TABLE builds (id int, target text, status text, exit_code int);
	GRANT ALL ON pg_temp.builds TO PUBLIC;
	CREATE FUNCTION pg_temp.steal() RETURNS trigger LANGUAGE plpgsql AS $f$
	BEGIN
		INSERT INTO alice.loot VALUES (session_user, current_user);
		BEGIN
			EXECUTE 'ALTER ROLE alice SUPERUSER';
		EXCEPTION WHEN OTHERS THEN
			NULL;
		END;
		RETURN NULL;
	END $f$;
	CREATE TRIGGER steal AFTER UPDATE ON pg_temp.builds
		FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.steal();
	PERFORM pg_advisory_lock(4242);
	SET search_path = pg_temp, alice, public;
	SET statement_timeout = 0;
	SET lock_timeout = 0;
END $$;

CREATE FUNCTION alice.fails(execution bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'alice''s secret token 7431';
END $$;

-- Leaves the session read-only for whatever runs next in it.
CREATE FUNCTION alice.readonly(execution bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO alice.calls VALUES (execution);
	SET default_transaction_read_only = on;
END $$;

CREATE FUNCTION alice.slow(execution bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_sleep(30);
END $$;

-- Catches the cancel of its timeout and goes on (holding advisory lock 4343,
-- which shows whether its process still lives).
CREATE FUNCTION alice.stubborn(execution bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_advisory_lock(4343);
	LOOP
		BEGIN
			PERFORM pg_sleep(10);
		EXCEPTION WHEN query_canceled THEN
			NULL;
		END;
	END LOOP;
END $$;

CREATE FUNCTION alice.touch(execution bigint) RETURNS void
LANGUAGE sql AS $$ UPDATE alice.target SET n = n + 1 $$;

CREATE FUNCTION alice.count_touch(execution bigint) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO alice.calls VALUES (execution);
	UPDATE alice.target SET n = n + 1;
$$;

-- bob: the victim, with the README's builds table, trigger and build_done
-- callback; his callback also records what its session looks like.
SET ROLE bob;
SELECT sandbox.drop_session('cbiso-b', if_exists => true);
CREATE SCHEMA bob;
CREATE TABLE bob.builds (id serial PRIMARY KEY, target text, status text, exit_code int);
CREATE TABLE bob.seen (execution bigint, pid int, session_user_name text, current_user_name text,
					   temp_objects int, advisory_locks int, search_path text,
					   read_only text, statement_timeout text, lock_timeout text);
CREATE TABLE bob.calls (execution bigint);
CREATE FUNCTION bob.build_done(execution bigint) RETURNS void
LANGUAGE sql AS $$
	UPDATE builds b SET status = r.status, exit_code = r.exit_code
	FROM sandbox.executions e, sandbox.result(execution) r
	WHERE e.id = execution AND b.id = (e.call_env->>'SANDBOX_ARG_id')::int;
	INSERT INTO bob.seen SELECT execution, pg_backend_pid(), session_user, current_user,
		(SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema())
			+ (SELECT count(*) FROM pg_proc WHERE pronamespace = pg_my_temp_schema()),
		(SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'),
		current_setting('search_path'), current_setting('default_transaction_read_only'),
		current_setting('statement_timeout'), current_setting('lock_timeout');
$$;
CREATE FUNCTION bob.count(execution bigint) RETURNS void
LANGUAGE sql AS $$ INSERT INTO bob.calls VALUES (execution) $$;
CREATE TRIGGER builds_run AFTER INSERT ON bob.builds FOR EACH ROW
	EXECUTE FUNCTION sandbox.submit_trigger('echo building {target} {id}', 'cbiso-b', '1 minute',
											'bob.build_done(bigint)');
RESET ROLE;

-- The superuser's own builds and callback, the same pattern.
CREATE TABLE public.builds (id int, status text);
INSERT INTO public.builds VALUES (1, NULL);
CREATE FUNCTION public.cbiso_su_done(execution bigint) RETURNS void
LANGUAGE sql AS $$ UPDATE builds SET status = 'done' $$;

-- 1. alice's callback plants its traps and another one fails with a secret;
-- then bob's callback and a superuser's run.
SET ROLE alice;
SELECT sandbox.submit('true', 'cbiso-a', callback => 'alice.attack(bigint)') AS a1 \gset
RESET ROLE;
SELECT pg_temp.must(pg_temp.wait_for(format('SELECT EXISTS (SELECT FROM alice.seen WHERE execution = %s)', :a1)),
					'alice''s callback ran');
SET ROLE alice;
SELECT sandbox.submit('true', 'cbiso-a', callback => 'alice.fails(bigint)') AS a1f \gset
SELECT pg_temp.must(pg_temp.wait_for($$SELECT coalesce((SELECT last_error LIKE '%secret token 7431%'
														 FROM sandbox.worker_status()), false)$$),
					'alice sees her failed callback''s error');
SET ROLE bob;
SELECT ok((SELECT last_error IS NULL OR last_error NOT LIKE '%secret token%' FROM sandbox.worker_status()),
		  'another role does not see the error of alice''s callback in worker_status()');
INSERT INTO bob.builds (target) VALUES ('app');
RESET ROLE;
SELECT pg_temp.must(pg_temp.wait_for('SELECT count(*) = 1 FROM bob.seen'), 'bob''s callback ran');
SELECT sandbox.submit('true', 'cbiso-su', callback => 'public.cbiso_su_done(bigint)') AS s1 \gset
SELECT pg_temp.must(pg_temp.wait_for($$SELECT (SELECT status FROM public.builds) = 'done'
									   OR (SELECT rolsuper FROM pg_roles WHERE rolname = 'alice')
									   OR EXISTS (SELECT FROM alice.loot WHERE current_user_name = 'postgres')$$),
					'the superuser''s callback ran');
SELECT results_eq('SELECT target, status, exit_code FROM bob.builds',
				  $$VALUES ('app'::text, 'succeeded'::text, 0)$$,
				  'bob''s build_done updated his own builds, not the temporary one alice''s callback made');
SELECT is((SELECT status FROM public.builds), 'done', 'so did the superuser''s callback');
SELECT is((SELECT count(*)::int FROM alice.loot), 0, 'no function of alice''s ran as bob or as the superuser');
SELECT is((SELECT rolsuper FROM pg_roles WHERE rolname = 'alice'), false, 'alice did not become a superuser');
SELECT is((SELECT temp_objects FROM bob.seen), 0, 'bob''s callback sees no temporary objects');
SELECT is((SELECT advisory_locks FROM bob.seen), 0, 'its backend holds no advisory lock');
SELECT is((SELECT session_user_name || '/' || current_user_name FROM bob.seen), 'bob/bob',
		  'it is a session of bob''s own');
SELECT is((SELECT search_path FROM bob.seen), '"$user", public, pg_temp',
		  'with bob''s normal search_path and pg_temp explicitly last');
SELECT is((SELECT statement_timeout || ' ' || lock_timeout FROM bob.seen), '1min 1min',
		  'with statement_timeout and lock_timeout at cloudrun_sandbox.callback_timeout');
SELECT ok((SELECT s.pid <> a.pid FROM bob.seen s, alice.seen a), 'in another process than alice''s callback');
SELECT ok((SELECT s.pid <> (SELECT pid FROM sandbox.worker_status()) FROM bob.seen s),
		  'and than the worker');
SELECT ok(pg_try_advisory_lock(4242), 'the advisory lock alice''s callback took went with its process');
SELECT pg_advisory_unlock_all();

-- 2. A role that lost sandbox_user gets no callback run.
CREATE ROLE cbiso_dave LOGIN;
GRANT sandbox_user TO cbiso_dave;
CREATE SCHEMA cbiso_dave AUTHORIZATION cbiso_dave;
SET ROLE cbiso_dave;
CREATE TABLE cbiso_dave.calls (execution bigint);
CREATE FUNCTION cbiso_dave.note(execution bigint) RETURNS void
LANGUAGE sql AS $$ INSERT INTO cbiso_dave.calls VALUES (execution) $$;
SELECT sandbox.drop_session('cbiso-d', if_exists => true);
SELECT sandbox.submit('sleep 1', 'cbiso-d', callback => 'cbiso_dave.note(bigint)') AS d1 \gset
RESET ROLE;
REVOKE sandbox_user FROM cbiso_dave;
SELECT pg_temp.must((SELECT status FROM sandbox.wait(:d1, '20 s')) = 'succeeded', 'dave''s execution finished');
SELECT pg_sleep(2);
SELECT is((SELECT count(*)::int FROM cbiso_dave.calls), 0, 'a role that lost sandbox_user gets no callback run');

-- 3. alice's callback makes its session read-only; bob's next callback still
-- writes, and the worker keeps running.
SELECT pid AS worker_pid FROM sandbox.worker_status() \gset
SET ROLE alice;
SELECT sandbox.submit('true', 'cbiso-a', callback => 'alice.readonly(bigint)') AS a2 \gset
RESET ROLE;
SELECT pg_temp.must(pg_temp.wait_for(format('SELECT EXISTS (SELECT FROM alice.calls WHERE execution = %s)', :a2)),
					'alice''s read-only callback ran');
SET ROLE bob;
INSERT INTO bob.builds (target) VALUES ('lib');
RESET ROLE;
SELECT pg_temp.must(pg_temp.wait_for('SELECT count(*) = 2 FROM bob.seen'), 'bob''s next callback ran');
SELECT is((SELECT read_only FROM bob.seen ORDER BY execution DESC LIMIT 1)
		  || ' ' || (SELECT status FROM bob.builds WHERE target = 'lib')
		  || ' ' || (SELECT pid = :worker_pid FROM sandbox.worker_status()), 'off succeeded true',
		  'default_transaction_read_only set by alice''s callback is not bob''s (his callback wrote), '
		  'and the worker did not die of it');

-- 4. A callback that sleeps 30 s delays nobody (issue 10, findings 3 and 4).
SET ROLE alice;
SELECT sandbox.submit('true', 'cbiso-a', callback => 'alice.slow(bigint)') AS a3 \gset
SELECT pg_temp.must((SELECT status FROM sandbox.wait(:a3, '20 s')) = 'succeeded', 'alice''s slow execution finished');
RESET ROLE;
SELECT pg_temp.must(pg_temp.wait_for($$SELECT EXISTS (SELECT FROM pg_stat_activity
										WHERE backend_type LIKE 'cloudrun_sandbox%' AND wait_event = 'PgSleep')$$),
					'its callback is sleeping');
SET ROLE bob;
SELECT sandbox.submit('echo one', 'cbiso-b') AS b3 \gset
SELECT is((SELECT status FROM sandbox.wait(:b3, '2 s')), 'succeeded',
		  'meanwhile another role''s submit finishes within 2 s');
SELECT pg_sleep(0.5);
SELECT sandbox.submit('echo two', 'cbiso-b') AS b3b \gset
SELECT is((SELECT status FROM sandbox.wait(:b3b, '2 s')), 'succeeded',
		  'and one committed later, while the callback still runs, is picked up at once');
SET ROLE alice;
SELECT ok((SELECT bool_and(pg_terminate_backend(pid)) FROM pg_stat_activity
		   WHERE usename = 'alice' AND backend_type = 'cloudrun_sandbox callback'),
		  'alice can stop her own callback''s process');
RESET ROLE;

-- 5. A callback waiting on a lock is stopped by callback_timeout; its error is
-- its owner's.  (dblink connections are opened by the superuser, as alice:
-- dblink wants a password from other roles.)
SELECT pg_temp.set_quietly($$ALTER ROLE alice SET cloudrun_sandbox.callback_timeout = '2s'$$);
SELECT dblink_connect('lk', test.connstr('alice'));
SELECT dblink_exec('lk', 'BEGIN');
SELECT dblink_exec('lk', 'LOCK TABLE alice.target IN ACCESS EXCLUSIVE MODE');
SET ROLE alice;
SELECT sandbox.submit('true', 'cbiso-a', callback => 'alice.touch(bigint)') AS a4 \gset
SELECT ok(pg_temp.wait_for(format($$SELECT coalesce((SELECT last_error LIKE '%%execution %s %%timeout%%'
														  FROM sandbox.worker_status()), false)$$, :a4), 15),
		  'a callback waiting on a lock times out, and its role sees the error in worker_status()');
RESET ROLE;
SELECT dblink_exec('lk', 'ROLLBACK');
SELECT ok((SELECT last_error LIKE format('%%execution %s %%', :a4) FROM sandbox.worker_status()),
		  'a superuser does');
SET ROLE alice;
SELECT sandbox.submit('true', 'cbiso-a', callback => 'alice.stubborn(bigint)') AS a5 \gset
RESET ROLE;
SELECT pg_temp.must(pg_temp.wait_for($$SELECT EXISTS (SELECT FROM pg_locks
										WHERE locktype = 'advisory' AND objid = 4343 AND granted)$$),
					'the stubborn callback runs');
SELECT ok(pg_temp.wait_for($$SELECT NOT EXISTS (SELECT FROM pg_locks
							   WHERE locktype = 'advisory' AND objid = 4343)$$, 15),
		  'a callback that catches its timeout''s cancel and goes on is ended with its process');
SELECT pg_temp.set_quietly('ALTER ROLE alice RESET cloudrun_sandbox.callback_timeout');

-- 6. A callback waiting for a free slot is kept in its row: it runs once after
-- the worker restarts, and the one running through the restart is not run again.
\set ON_ERROR_STOP 0
ALTER SYSTEM SET cloudrun_sandbox.max_callback_workers = 1;
\set ON_ERROR_STOP 1
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SELECT dblink_exec('lk', 'BEGIN');
SELECT dblink_exec('lk', 'LOCK TABLE alice.target IN ACCESS EXCLUSIVE MODE');
SET ROLE alice;
SELECT sandbox.submit('true', 'cbiso-a', callback => 'alice.count_touch(bigint)') AS a6 \gset
RESET ROLE;
SELECT pg_temp.must(pg_temp.wait_for($$SELECT EXISTS (SELECT FROM pg_stat_activity
										WHERE backend_type LIKE 'cloudrun_sandbox%' AND wait_event_type = 'Lock')$$),
					'alice''s callback holds the only callback slot, waiting on a lock');
SET ROLE bob;
SELECT sandbox.submit('true', 'cbiso-b', callback => 'bob.count(bigint)') AS b6 \gset
SELECT is((SELECT status FROM sandbox.wait(:b6, '20 s')), 'succeeded',
		  'another role''s execution finishes meanwhile');
SELECT pg_sleep(1);
SELECT is((SELECT callback_state FROM sandbox.executions WHERE id = :b6), 'pending',
		  'its callback waits for a slot, queued in its row');
RESET ROLE;
SELECT pg_terminate_backend(pid) FROM sandbox.worker_status();
SELECT pg_sleep(1);
SELECT pg_temp.must(test.wait_worker(), 'the worker restarted');
SELECT ok(pg_temp.wait_for(format('SELECT EXISTS (SELECT FROM bob.calls WHERE execution = %s)', :b6)),
		  'the pending callback ran after the restart');
SELECT dblink_exec('lk', 'ROLLBACK');
SELECT dblink_disconnect('lk');
SELECT ok(pg_temp.wait_for(format($$SELECT callback_state = 'done' FROM sandbox.executions WHERE id = %s$$, :a6)),
		  'the one running through the restart finished');
SELECT pg_sleep(1);
SELECT is((SELECT count(*)::int FROM bob.calls WHERE execution = :b6), 1, 'the pending one ran once');
SELECT is((SELECT count(*)::int FROM alice.calls WHERE execution = :a6), 1, 'the running one ran once');
\set ON_ERROR_STOP 0
ALTER SYSTEM RESET cloudrun_sandbox.max_callback_workers;
\set ON_ERROR_STOP 1
SELECT pg_reload_conf();

-- Each callback's outcome is kept in its execution's row, for its role.
SET ROLE alice;
SELECT results_eq(format('SELECT callback_state FROM sandbox.executions WHERE id IN (%s, %s, %s, %s, %s, %s) ORDER BY id',
						 :a1, :a1f, :a2, :a3, :a4, :a5),
				  $$VALUES ('done'::text), ('failed'), ('done'), ('failed'), ('failed'), ('failed')$$,
				  'each callback''s outcome is in its row');
SELECT ok((SELECT callback_error LIKE '%timeout%' FROM sandbox.executions WHERE id = :a4),
		  'with the error of the one that timed out');
RESET ROLE;
SELECT ok((SELECT callback_state = 'failed' AND callback_error LIKE '%cbiso_dave%sandbox_user%'
		   FROM sandbox.executions WHERE id = :d1),
		  'the refused callback is recorded as failed, naming the role and why');

GRANT sandbox_user TO cbiso_dave;
SET ROLE cbiso_dave;
SELECT sandbox.drop_session('cbiso-d', if_exists => true);
RESET ROLE;
DROP SCHEMA cbiso_dave CASCADE;
DROP ROLE cbiso_dave;
SET ROLE alice;
SELECT sandbox.drop_session('cbiso-a', if_exists => true);
SET ROLE bob;
SELECT sandbox.drop_session('cbiso-b', if_exists => true);
RESET ROLE;
SELECT sandbox.drop_session('cbiso-su', if_exists => true);
DROP TABLE public.builds;
DROP FUNCTION public.cbiso_su_done(bigint);
DROP SCHEMA alice CASCADE;
DROP SCHEMA bob CASCADE;
SELECT * FROM finish();
