-- Helpers for the pgTAP tests, created by test/run.sh in the test database
-- (schema "test", owned by the superuser that runs the tests).  Helpers that
-- look at a session's storage follow cloudrun_sandbox.backend: the local
-- storage directory, or the emulator's bucket (test.emulator_url, test.bin).
CREATE SCHEMA test;

-- program_lines runs a program on the server host and returns its output lines verbatim.
CREATE FUNCTION test.program_lines(program text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
BEGIN
	CREATE TEMP TABLE IF NOT EXISTS _lines (n serial, line text);
	TRUNCATE _lines;
	-- CSV with quote and delimiter characters that never occur: lines arrive untouched.
	EXECUTE format('COPY _lines (line) FROM PROGRAM %L WITH (FORMAT csv, QUOTE E''\x01'', DELIMITER E''\x02'')',
				   program);
	RETURN QUERY SELECT line FROM _lines ORDER BY n;
END $$;

-- sh_quote quotes a string for the shell.
CREATE FUNCTION test.sh_quote(s text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT '''' || replace(s, '''', '''\''''') || '''' $$;

-- emu runs test/emu.sh against the emulator with the given arguments.
CREATE FUNCTION test.emu(VARIADIC args text[]) RETURNS SETOF text
LANGUAGE sql AS $$
	SELECT test.program_lines(current_setting('test.bin') || '/emu.sh '
		|| test.sh_quote(current_setting('test.emulator_url')) || ' '
		|| (SELECT string_agg(test.sh_quote(a), ' ') FROM unnest(args) a))
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
LANGUAGE sql AS $$
	SELECT line::integer FROM test.program_lines(
		'pgrep -c -x -f ' || test.sh_quote(cmdline) || ' || true') line
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

-- backend_hwm_kb returns the peak resident memory of a backend, in kB.
CREATE FUNCTION test.backend_hwm_kb(pid integer) RETURNS bigint
LANGUAGE sql AS $$
	SELECT line::bigint FROM test.program_lines('awk ''/^VmHWM:/ {print $2}'' /proc/' || pid || '/status') line
$$;

-- session_dir_of is where the local backend keeps the storage of a key in this database
-- (the default local_root: cloudrun_sandbox/<data directory's name> next to the data directory).
CREATE FUNCTION test.session_dir_of(key text) RETURNS text
LANGUAGE sql AS $$
	SELECT regexp_replace(current_setting('data_directory'), '/([^/]+)$', '/cloudrun_sandbox/\1/')
		|| (SELECT oid FROM pg_database WHERE datname = current_database())
		|| '/sessions/' || key
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
		ELSE (pg_stat_file(test.session_dir(name), true)).isdir IS NOT NULL END
$$;

-- state_json reads a session's state.json.
CREATE FUNCTION test.state_json(name text) RETURNS jsonb
LANGUAGE sql AS $$
	SELECT CASE WHEN test.cloud()
		THEN (SELECT string_agg(l, E'\n')::jsonb FROM test.emu('media', current_setting('cloudrun_sandbox.bucket'),
			test.object_prefix(name) || 'state.json') l)
		ELSE pg_read_file(test.session_dir(name) || '/state.json')::jsonb END
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
LANGUAGE sql AS $$
	SELECT format('host=%s port=%s dbname=%s user=%s options=''-c cloudrun_sandbox.backend=%s''',
				  current_setting('unix_socket_directories'), current_setting('port'),
				  current_database(), role, current_setting('cloudrun_sandbox.backend'))
$$;

GRANT USAGE ON SCHEMA test TO PUBLIC;
GRANT EXECUTE ON FUNCTION test.connstr(text) TO PUBLIC;

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
