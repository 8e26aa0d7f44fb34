-- Helpers for the pgTAP tests, created by test/run.sh and test/tap.sh (as the
-- superuser) in the test database: schema "test", owned by the superuser.
-- Helpers that look at a session's storage follow cloudrun_sandbox.backend:
-- the local storage directory, or the emulator's bucket.
--
-- The tests run as the role "tap", which has sandbox_user and nothing else
-- (and membership in alice, bob and carol, so that a test can SET ROLE to
-- them; alice and bob have only sandbox_user, carol has nothing).  What a
-- test needs beyond that (running a program on the host, reading storage,
-- superuser settings) is a SECURITY DEFINER helper below: owned by the
-- superuser, search_path pinned to pg_catalog, pg_temp, EXECUTE granted to
-- tap only, never to PUBLIC.  Each one takes data, never SQL or a shell
-- command, and refuses what the tests do not need; every relation it touches
-- is schema-qualified (an unqualified name would resolve to pg_temp, where
-- the caller can create tables).  Plain (SECURITY INVOKER) helpers are for
-- PUBLIC.

-- The test role: sandbox_user, and the test roles to SET ROLE to.  CREATE on
-- schema public for the tables a test makes (07_worker.sql's builds table).
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tap') THEN
		CREATE ROLE tap LOGIN;
	END IF;
END $$;
GRANT sandbox_user, alice, bob, carol TO tap;
GRANT CREATE ON SCHEMA public TO tap;

CREATE SCHEMA test;

-- config holds the emulator's address and the test bin directory as the
-- database settings had them when the helpers were made: the helpers that run
-- programs read them here, never from test.* settings, which any role can SET.
CREATE TABLE test.config AS
	SELECT current_setting('test.emulator_url') AS emulator_url, current_setting('test.bin') AS bin;

-- program_lines runs a program on the server host and returns its output
-- lines verbatim.  Superuser only (not granted to anyone): the definer helpers
-- below call it with commands they build from data.
CREATE FUNCTION test.program_lines(program text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
	lines text[];
BEGIN
	-- Created here, without IF NOT EXISTS: a table the caller planted under
	-- this name makes the call fail rather than run the caller's triggers.
	CREATE TEMP TABLE _test_program_lines (n serial, line text);
	-- CSV with quote and delimiter characters that never occur: lines arrive untouched.
	EXECUTE format('COPY pg_temp._test_program_lines (line) FROM PROGRAM %L '
				   'WITH (FORMAT csv, QUOTE E''\x01'', DELIMITER E''\x02'')', program);
	-- Into an array first: a long line is TOASTed in the table, and a pointer
	-- into a dropped table must not be returned.
	EXECUTE 'SELECT array_agg(line ORDER BY n) FROM pg_temp._test_program_lines' INTO lines;
	EXECUTE 'DROP TABLE pg_temp._test_program_lines';
	RETURN QUERY SELECT unnest(coalesce(lines, '{}'));
END $$;

-- sh_quote quotes a string for the shell.
CREATE FUNCTION test.sh_quote(s text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT '''' || replace(s, '''', '''\''''') || '''' $$;

-- emu runs test/emu.sh against the emulator with the given arguments (data:
-- each one is quoted, and emu.sh passes them to curl as data, never as options).
CREATE FUNCTION test.emu(VARIADIC args text[]) RETURNS SETOF text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT test.program_lines(c.bin || '/emu.sh ' || test.sh_quote(c.emulator_url) || ' '
		|| (SELECT string_agg(test.sh_quote(a), ' ') FROM unnest(args) a))
	FROM test.config c
$$;

-- cloud says whether this run tests the cloudrun backend.
CREATE FUNCTION test.cloud() RETURNS boolean
LANGUAGE sql AS $$ SELECT current_setting('cloudrun_sandbox.backend') = 'cloudrun' $$;

-- Storage keys seen so far, so that a helper can still find a session's storage
-- after the session was dropped (its row is gone, its key is not a function of its name).
CREATE TABLE test.storage_keys (name text PRIMARY KEY, storage_key text);
GRANT SELECT, INSERT, UPDATE ON test.storage_keys TO PUBLIC;

-- storage_key is the storage key (directory / object prefix name) of the session called
-- name: the caller's own if it has one, else (for a superuser) another role's; once it is
-- gone, the key it had when a helper last looked.
CREATE FUNCTION test.storage_key(name text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	k text;
BEGIN
	SELECT s.storage_key INTO k FROM sandbox.sessions s WHERE s.name = $1
		ORDER BY s.owner = current_user::regrole DESC, s.id DESC LIMIT 1;
	IF k IS NOT NULL THEN
		INSERT INTO test.storage_keys VALUES ($1, k)
			ON CONFLICT ON CONSTRAINT storage_keys_pkey DO UPDATE SET storage_key = excluded.storage_key;
		RETURN k;
	END IF;
	SELECT t.storage_key INTO k FROM test.storage_keys t WHERE t.name = $1;
	IF k IS NULL THEN
		RAISE EXCEPTION 'test.storage_key: there is no session "%" and none was seen before', $1;
	END IF;
	RETURN k;
END $$;

-- object_prefix is where a cloud session's objects live.
CREATE FUNCTION test.object_prefix(name text) RETURNS text
LANGUAGE sql AS $$
	SELECT CASE WHEN current_setting('cloudrun_sandbox.prefix') = '' THEN ''
		ELSE current_setting('cloudrun_sandbox.prefix') || '/' END || 'sessions/' || test.storage_key(name) || '/'
$$;

-- host_procs counts processes on the host whose whole command line is cmdline.
CREATE FUNCTION test.host_procs(cmdline text) RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT line::integer FROM test.program_lines(
		'pgrep -c -x -f -- ' || test.sh_quote(cmdline) || ' || true') line
$$;

-- wait_procs waits up to max_s seconds for host_procs(cmdline) to become want; returns the last count.
CREATE FUNCTION test.wait_procs(cmdline text, want integer, max_s float8 DEFAULT 10) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	n integer;
	deadline timestamptz := clock_timestamp() + make_interval(secs => max_s);
BEGIN
	LOOP
		n := test.host_procs(cmdline);
		EXIT WHEN n = want OR clock_timestamp() > deadline;
		PERFORM pg_sleep(0.1);
	END LOOP;
	RETURN n;
END $$;

-- worker_children lists the worker's child processes whose command line matches
-- the regular expression pattern (pgrep -P <worker> -f).
CREATE FUNCTION test.worker_children(pattern text) RETURNS SETOF integer
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT line::integer FROM test.program_lines('pgrep -P ' || (SELECT pid FROM sandbox.worker_status())::integer
		|| ' -f -- ' || test.sh_quote(pattern) || ' || true') line
	WHERE line <> ''
$$;

-- backend_hwm_kb returns the peak resident memory of a backend, in kB.
CREATE FUNCTION test.backend_hwm_kb(pid integer) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT line::bigint FROM test.program_lines('awk ''/^VmHWM:/ {print $2}'' /proc/' || pid || '/status') line
$$;

-- server_setting returns data_directory or unix_socket_directories (superuser-only
-- settings), for tests that check the sandbox cannot see them.
CREATE FUNCTION test.server_setting(name text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF name NOT IN ('data_directory', 'unix_socket_directories') THEN
		RAISE EXCEPTION 'test.server_setting: % is not a setting the tests read', name;
	END IF;
	RETURN current_setting(name);
END $$;

-- storage_root is the local backend's storage directory of this database.
CREATE FUNCTION test.storage_root() RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT COALESCE(NULLIF(current_setting('cloudrun_sandbox.local_root'), '') || '/',
					regexp_replace(current_setting('data_directory'), '/([^/]+)$', '/cloudrun_sandbox/\1/'))
		|| (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
$$;

-- session_dir_of is where the local backend keeps the storage of a key in this database.
CREATE FUNCTION test.session_dir_of(key text) RETURNS text
LANGUAGE sql AS $$
	SELECT test.storage_root() || '/sessions/' || key
$$;

-- check_session_dir refuses a path that is not a session directory of this database.
CREATE FUNCTION test.check_session_dir(dir text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NOT starts_with(dir, test.storage_root() || '/sessions/')
		OR substr(dir, length(test.storage_root() || '/sessions/') + 1) !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]*$' THEN
		RAISE EXCEPTION 'test: % is not a session directory', dir;
	END IF;
END $$;

-- session_dir_exists says whether a session directory (test.session_dir) exists.
CREATE FUNCTION test.session_dir_exists(dir text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT test.check_session_dir(dir);
	SELECT (pg_stat_file(dir, true)).isdir IS NOT NULL;
$$;

-- session_state_file reads state.json of a session directory (test.session_dir).
CREATE FUNCTION test.session_state_file(dir text) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT test.check_session_dir(dir);
	SELECT pg_read_file(dir || '/state.json');
$$;

-- trash_entries lists the local backend's trash directory of this database.
CREATE FUNCTION test.trash_entries() RETURNS SETOF text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT pg_ls_dir(test.storage_root() || '/trash', true, false)
$$;

-- session_dir is where the local backend keeps the caller's session called name.
CREATE FUNCTION test.session_dir(name text) RETURNS text
LANGUAGE sql AS $$ SELECT test.session_dir_of(test.storage_key(name)) $$;

-- wait_until waits up to max_s seconds for a boolean query to return true; returns the last answer.
CREATE FUNCTION test.wait_until(query text, max_s float8 DEFAULT 10) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	ok boolean;
	deadline timestamptz := clock_timestamp() + make_interval(secs => max_s);
BEGIN
	LOOP
		-- Statistics views keep one snapshot per transaction: look anew each time.
		PERFORM pg_stat_clear_snapshot();
		EXECUTE query INTO ok;
		EXIT WHEN ok OR clock_timestamp() > deadline;
		PERFORM pg_sleep(0.1);
	END LOOP;
	RETURN coalesce(ok, false);
END $$;

-- session_storage_exists says whether a session has storage (a directory, or objects).
CREATE FUNCTION test.session_storage_exists(name text) RETURNS boolean
LANGUAGE sql AS $$
	SELECT CASE WHEN test.cloud()
		THEN EXISTS (SELECT FROM test.emu('list', current_setting('cloudrun_sandbox.bucket'), test.object_prefix(name)))
		ELSE test.session_dir_exists(test.session_dir(name)) END
$$;

-- key_storage_exists says whether storage key k has storage (a directory, or objects), whether
-- or not a session has it now.
CREATE FUNCTION test.key_storage_exists(k text) RETURNS boolean
LANGUAGE sql AS $$
	SELECT CASE WHEN test.cloud()
		THEN EXISTS (SELECT FROM test.emu('list', current_setting('cloudrun_sandbox.bucket'),
			CASE WHEN current_setting('cloudrun_sandbox.prefix') = '' THEN ''
			ELSE current_setting('cloudrun_sandbox.prefix') || '/' END || 'sessions/' || k || '/'))
		ELSE test.session_dir_exists(test.session_dir_of(k)) END
$$;

-- state_json reads a session's state.json.
CREATE FUNCTION test.state_json(name text) RETURNS jsonb
LANGUAGE sql AS $$
	SELECT CASE WHEN test.cloud()
		THEN (SELECT string_agg(l, E'\n')::jsonb FROM test.emu('media', current_setting('cloudrun_sandbox.bucket'),
			test.object_prefix(name) || 'state.json') l)
		ELSE test.session_state_file(test.session_dir(name))::jsonb END
$$;

-- state_generation is the generation of a session's state.json (the object's, on the cloud).
CREATE FUNCTION test.state_generation(name text) RETURNS bigint
LANGUAGE sql AS $$
	SELECT CASE WHEN test.cloud()
		THEN (SELECT l::bigint FROM test.emu('generation', current_setting('cloudrun_sandbox.bucket'),
			test.object_prefix(name) || 'state.json') l)
		ELSE (test.state_json(name)->>'generation')::bigint END
$$;

-- connstr is a libpq connection string to this database as a role, with this run's backend.
CREATE FUNCTION test.connstr(role text DEFAULT current_user) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT format('host=%s port=%s dbname=%s user=%s options=''-c cloudrun_sandbox.backend=%s''',
				  current_setting('unix_socket_directories'), current_setting('port'),
				  current_database(), quote_ident(role), current_setting('cloudrun_sandbox.backend'))
$$;

-- dblink_connect opens a named dblink connection as a role the session's role
-- may SET ROLE to (itself by default), never a superuser.  dblink lets a
-- non-superuser connect only with a password, and the test cluster trusts
-- local connections, so the connection is made here, as the superuser; the
-- caller then uses it with the ordinary dblink functions.
CREATE FUNCTION test.dblink_connect(conname text, role text DEFAULT current_user) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = role AND NOT r.rolsuper
				   AND pg_has_role(session_user, r.oid, 'MEMBER')) THEN
		RAISE EXCEPTION 'test.dblink_connect: % may not connect as %', session_user, role;
	END IF;
	RETURN public.dblink_connect(conname, test.connstr(role));
END $$;

-- set_setting sets (value NULL: resets) one of the superuser-only settings the
-- tests change, for the session, like SET: the sandbox's limits and the cloud
-- configuration.  Settings that name host programs or directories are refused;
-- credentials only to none, metadata, a key in the test bin directory or a
-- path under /nonexistent.
CREATE FUNCTION test.set_setting(name text, value text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF name NOT IN ('cloudrun_sandbox.max_output_bytes', 'cloudrun_sandbox.max_transfer_bytes',
					'cloudrun_sandbox.local_network', 'cloudrun_sandbox.file_size_limit',
					'cloudrun_sandbox.max_processes', 'cloudrun_sandbox.memory_limit', 'cloudrun_sandbox.local_shm_size', 'cloudrun_sandbox.max_background_per_role', 'cloudrun_sandbox.max_command_bytes', 'cloudrun_sandbox.local_disk_quota', 'cloudrun_sandbox.max_stdin_bytes',
					'cloudrun_sandbox.max_sandboxes_per_role', 'cloudrun_sandbox.local_nice', 'cloudrun_sandbox.max_sessions_per_role',
					'cloudrun_sandbox.history_retention', 'cloudrun_sandbox.history_max_bytes_per_role', 'cloudrun_sandbox.credentials',
					'cloudrun_sandbox.bucket', 'cloudrun_sandbox.job', 'cloudrun_sandbox.project') THEN
		RAISE EXCEPTION 'test.set_setting: % is not a setting the tests change', name;
	END IF;
	IF name = 'cloudrun_sandbox.credentials' AND value IS NOT NULL
		AND value NOT IN ('none', 'metadata') AND NOT starts_with(value, '/nonexistent/')
		AND NOT (starts_with(value, (SELECT bin FROM test.config) || '/') AND value !~ '(^|/)\.\.(/|$)') THEN
		RAISE EXCEPTION 'test.set_setting: credentials % are not test credentials', value;
	END IF;
	IF value IS NULL THEN
		EXECUTE format('RESET %s', name);
	ELSE
		PERFORM set_config(name, value, false);
	END IF;
	RETURN current_setting(name);
END $$;

-- set_system sets (value NULL: resets) a worker setting with ALTER SYSTEM, reloads
-- the configuration, and returns once a new connection sees the new value (so
-- the postmaster has signalled every process, this one included: the next
-- statement sees it too).
-- alter_system sets (value NULL: resets) any setting with ALTER SYSTEM, reloads the
-- configuration, and returns once a new connection sees the new value.  Not a
-- SECURITY DEFINER: only a superuser can use it (the fault suite's files do).
CREATE FUNCTION test.alter_system(name text, value text) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	su text := format('host=%s port=%s dbname=%s user=%s', current_setting('unix_socket_directories'),
					  current_setting('port'), quote_ident(current_database()), quote_ident(current_user));
	now_setting text;
	now_file text;
BEGIN
	-- ALTER SYSTEM cannot run in a transaction block, so through a connection of its own.
	IF value IS NULL THEN
		PERFORM public.dblink_exec(su, format('ALTER SYSTEM RESET %s', name));
	ELSE
		PERFORM public.dblink_exec(su, format('ALTER SYSTEM SET %s = %L', name, value));
	END IF;
	PERFORM pg_reload_conf();
	FOR i IN 1..200 LOOP
		SELECT s, f INTO now_setting, now_file FROM public.dblink(su,
			format('SELECT current_setting(%L) || '' '' || setting, coalesce(sourcefile, '''') '
				   'FROM pg_settings WHERE name = %L', name, name)) AS t(s text, f text);
		IF value IS NULL AND now_file NOT LIKE '%/postgresql.auto.conf' THEN
			RETURN split_part(now_setting, ' ', 1);
		END IF;
		IF value IS NOT NULL AND now_file LIKE '%/postgresql.auto.conf' AND value IN (split_part(now_setting, ' ', 1),
																					split_part(now_setting, ' ', 2)) THEN
			RETURN split_part(now_setting, ' ', 1);
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
	RAISE EXCEPTION 'test.alter_system: % did not become % after a reload', name, coalesce(value, 'its default');
END $$;

CREATE FUNCTION test.set_system(name text, value text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF name NOT IN ('cloudrun_sandbox.local_warm_sessions', 'cloudrun_sandbox.local_warm_idle_timeout',
					'cloudrun_sandbox.max_sandboxes_per_role', 'cloudrun_sandbox.local_nice',
					'cloudrun_sandbox.history_max_bytes_per_role') THEN
		RAISE EXCEPTION 'test.set_system: % is not a setting the tests change', name;
	END IF;
	RETURN test.alter_system(name, value);
END $$;

-- grant_sandbox_usage grants (or revokes) USAGE on schema sandbox to a role the
-- session's role may SET ROLE to that is not a superuser (04_roles.sql: a role
-- without sandbox_user is refused even with USAGE on the schema).
CREATE FUNCTION test.grant_sandbox_usage(role text, grant_it boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = role AND NOT r.rolsuper
				   AND pg_has_role(session_user, r.oid, 'MEMBER')) THEN
		RAISE EXCEPTION 'test.grant_sandbox_usage: not for role %', role;
	END IF;
	IF grant_it THEN
		EXECUTE format('GRANT USAGE ON SCHEMA sandbox TO %I', role);
	ELSE
		EXECUTE format('REVOKE USAGE ON SCHEMA sandbox FROM %I', role);
	END IF;
END $$;

-- forget_executions deletes the history of the session's role's executions in
-- a session of that name (the backend-independent files run twice in one database).
CREATE FUNCTION test.forget_executions(session text) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	WITH d AS (DELETE FROM sandbox.executions e
			   WHERE e.session = forget_executions.session
				 AND e.owner = pg_catalog.to_regrole(pg_catalog.quote_ident(session_user)) RETURNING 1)
	SELECT count(*) FROM d
$$;

-- set_finished_at backdates an execution of the session's role (history pruning).
CREATE FUNCTION test.set_finished_at(id bigint, finished_at timestamptz) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	UPDATE sandbox.executions e SET finished_at = set_finished_at.finished_at
		WHERE e.id = set_finished_at.id
		  AND e.owner = pg_catalog.to_regrole(pg_catalog.quote_ident(session_user));
	IF NOT FOUND THEN
		RAISE EXCEPTION 'test.set_finished_at: no execution % of %', id, session_user;
	END IF;
END $$;

-- scribble_mirror overwrites the mirror row of a session of the session's role
-- (the arguments that are not null), so that a test can see sync() repair it.
CREATE FUNCTION test.scribble_mirror(name text, cwd text, env jsonb DEFAULT NULL, generation bigint DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	UPDATE sandbox.sessions s SET cwd = coalesce(scribble_mirror.cwd, s.cwd),
		env = coalesce(scribble_mirror.env, s.env),
		generation = coalesce(scribble_mirror.generation, s.generation)
		WHERE s.name = scribble_mirror.name
		  AND s.owner = pg_catalog.to_regrole(pg_catalog.quote_ident(session_user));
	IF NOT FOUND THEN
		RAISE EXCEPTION 'test.scribble_mirror: no session % of %', name, session_user;
	END IF;
END $$;

-- error_of runs a statement and returns "SQLSTATE: message HINT: hint", or 'no error'.
CREATE FUNCTION test.error_of(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
	hint text;
BEGIN
	EXECUTE sql;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
	RETURN st || ': ' || msg || ' HINT: ' || coalesce(hint, '');
END $$;

-- emu_stats returns the emulator's counters.
CREATE FUNCTION test.emu_stats() RETURNS jsonb
LANGUAGE sql AS $$ SELECT string_agg(l, '')::jsonb FROM test.emu('hook', 'stats') l $$;

-- runs_of counts the executions that ran execution id's request in session s:
-- the emulator's executions of it, and the session runners that took it (their
-- claim, runners/<token>/claims/<id>, says "taken").
CREATE FUNCTION test.runs_of(s text, id bigint) RETURNS integer
LANGUAGE sql AS $$
	SELECT coalesce((test.emu_stats()->'runs_by_arg'->>('cloud sandbox-test ' || test.object_prefix(s)
		|| 'requests/' || id || '.json'))::int, 0)
		+ (SELECT count(*)::int FROM test.emu('list', current_setting('cloudrun_sandbox.bucket'),
				test.object_prefix(s) || 'runners/') l
		   WHERE l LIKE '%/claims/' || id
			 AND (SELECT string_agg(m, '') FROM test.emu('media', current_setting('cloudrun_sandbox.bucket'), l) m)
				 LIKE '%taken%')
$$;

-- wait_worker waits up to 20 s for the background worker (it retries its connection every 5 s).
CREATE FUNCTION test.wait_worker() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..200 LOOP
		IF (SELECT running FROM sandbox.worker_status()) THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.1);
	END LOOP;
	RETURN false;
END $$;

-- until polls a condition (a query returning boolean, run as the caller) every
-- 50 ms until it is true (true) or secs seconds have passed (false).
CREATE FUNCTION test.until(q text, secs float8) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	ok boolean;
BEGIN
	FOR i IN 1..(secs * 20)::int LOOP
		EXECUTE q INTO ok;
		IF ok THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN false;
END $$;

-- Privileges: SECURITY DEFINER helpers for tap only; program_lines for no one
-- (the superuser only); the plain helpers for everyone.
GRANT USAGE ON SCHEMA test TO PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA test FROM PUBLIC;
DO $$
DECLARE
	f regprocedure;
BEGIN
	FOR f IN SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'test'::regnamespace
			 AND p.proname <> 'program_lines' LOOP
		IF (SELECT prosecdef FROM pg_proc WHERE oid = f) THEN
			EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO tap', f);
		ELSE
			EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', f);
		END IF;
	END LOOP;
END $$;

-- [tests] kill_warm_sandbox kills (SIGKILL) the warm sandbox (the bwrap process in
-- sandbox.warm_sandboxes) of the session's role's session called name, as if it had
-- died; returns its pid, or NULL if it has none (issue 12: a dead sandbox).
CREATE FUNCTION test.kill_warm_sandbox(name text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	p integer;
BEGIN
	IF to_regclass('sandbox.warm_sandboxes') IS NULL THEN
		RETURN NULL;
	END IF;
	EXECUTE 'SELECT w.pid::integer FROM sandbox.warm_sandboxes w WHERE w.session = $1 AND w.owner::text = $2'
		INTO p USING name, quote_ident(session_user);
	IF p IS NOT NULL THEN
		PERFORM test.program_lines('kill -9 ' || p);
	END IF;
	RETURN p;
END $$;
GRANT EXECUTE ON FUNCTION test.kill_warm_sandbox(text) TO tap;
REVOKE EXECUTE ON FUNCTION test.kill_warm_sandbox(text) FROM PUBLIC;

-- [tests] warm_rows returns the rows of sandbox.warm_sandboxes the caller sees, as
-- jsonb; none if there is no such view (issue 12).
CREATE FUNCTION test.warm_rows() RETURNS SETOF jsonb
LANGUAGE plpgsql AS $$
BEGIN
	IF to_regclass('sandbox.warm_sandboxes') IS NOT NULL THEN
		RETURN QUERY EXECUTE 'SELECT to_jsonb(w) FROM sandbox.warm_sandboxes w';
	END IF;
END $$;

-- [tests] warm_pid waits up to 15 s for the row of the caller's session called name in
-- sandbox.warm_sandboxes (with a pid other than not_pid) and returns its pid; NULL if none.
CREATE FUNCTION test.warm_pid(name text, not_pid integer DEFAULT 0) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	p integer;
BEGIN
	FOR i IN 1..150 LOOP
		SELECT (r->>'pid')::integer INTO p FROM test.warm_rows() r
			WHERE r->>'session' = name AND (r->>'pid')::integer <> not_pid;
		EXIT WHEN p IS NOT NULL OR to_regclass('sandbox.warm_sandboxes') IS NULL;
		PERFORM pg_sleep(0.1);
	END LOOP;
	RETURN p;
END $$;

-- [tests] warm_served is commands_served of the caller's session called name in
-- sandbox.warm_sandboxes (NULL: no row).
CREATE FUNCTION test.warm_served(name text) RETURNS bigint
LANGUAGE sql AS $$
	SELECT (r->>'commands_served')::bigint FROM test.warm_rows() r WHERE r->>'session' = name
$$;
