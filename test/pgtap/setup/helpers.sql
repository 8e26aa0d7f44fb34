-- Helpers for the pgTAP tests, created by test/run.sh in the test database
-- (schema "test", owned by the superuser that runs the tests).
CREATE SCHEMA test;

-- host_procs counts processes on the host whose whole command line is cmdline.
CREATE FUNCTION test.host_procs(cmdline text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	n integer;
BEGIN
	CREATE TEMP TABLE IF NOT EXISTS _procs (line text);
	TRUNCATE _procs;
	EXECUTE format('COPY _procs FROM PROGRAM %L',
				   'pgrep -c -x -f ''' || replace(cmdline, '''', '') || ''' || true');
	SELECT line::integer INTO n FROM _procs;
	RETURN n;
END $$;

-- backend_hwm_kb returns the peak resident memory of a backend, in kB.
CREATE FUNCTION test.backend_hwm_kb(pid integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	kb bigint;
BEGIN
	CREATE TEMP TABLE IF NOT EXISTS _status (line text);
	TRUNCATE _status;
	EXECUTE format('COPY _status FROM PROGRAM %L', 'awk ''/^VmHWM:/ {print $2}'' /proc/' || pid || '/status');
	SELECT line::bigint INTO kb FROM _status;
	RETURN kb;
END $$;

-- session_dir is where the local backend keeps a session of this database.
CREATE FUNCTION test.session_dir(name text) RETURNS text
LANGUAGE sql AS $$
	SELECT current_setting('data_directory') || '/cloudrun_sandbox/'
		|| (SELECT oid FROM pg_database WHERE datname = current_database())
		|| '/sessions/' || name
$$;

-- session_dir_exists says whether a session's storage directory exists.
CREATE FUNCTION test.session_dir_exists(name text) RETURNS boolean
LANGUAGE sql AS $$
	SELECT (pg_stat_file(test.session_dir(name), true)).isdir IS NOT NULL
$$;

-- state_json reads a session's state.json.
CREATE FUNCTION test.state_json(name text) RETURNS jsonb
LANGUAGE sql AS $$
	SELECT pg_read_file(test.session_dir(name) || '/state.json')::jsonb
$$;

-- connstr is a libpq connection string to this database as a given role.
CREATE FUNCTION test.connstr(role text DEFAULT current_user) RETURNS text
LANGUAGE sql AS $$
	SELECT format('host=%s port=%s dbname=%s user=%s',
				  current_setting('unix_socket_directories'), current_setting('port'),
				  current_database(), role)
$$;

GRANT USAGE ON SCHEMA test TO PUBLIC;
GRANT EXECUTE ON FUNCTION test.connstr(text) TO PUBLIC;
