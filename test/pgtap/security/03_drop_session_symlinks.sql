-- Issue 9, finding 3: deleting a session never follows a symlink.  Runs as
-- alice (sandbox_user only); the superuser only builds a target directory
-- outside the session that the server's OS user could delete, plays a process
-- of the session that outlives its drop (a host-side racer), plants files
-- where the sandbox cannot (state.json), and checks the target afterwards.
--
-- The attack: while the session is dropped, a process of the session swaps
-- directories of the workspace for symlinks to the target and back
-- (renameat2 RENAME_EXCHANGE in a tight loop).  A deletion that walks by path
-- deletes target files through the symlinks.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(18);
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['drop1', 'drop2', 'drop3', 'st']) s;

SELECT regexp_replace(current_setting('data_directory'), '/[^/]+$', '') AS cluster \gset
\set target :cluster/drop_target
\set racer :cluster/drop_racer
SELECT current_setting('data_directory') || '/cloudrun_sandbox/' || oid || '/trash' AS trash
	FROM pg_database WHERE datname = current_database() \gset

-- The target: 2,500 files the server's OS user owns and could delete (made again before each part).
SELECT set_config('test.target', :'target', false);
CREATE FUNCTION pg_temp.reset_target() RETURNS void LANGUAGE sql AS $$
	SELECT test.program_lines(format('rm -rf %1$s && mkdir -p %1$s/sub && cd %1$s && seq -f t%%g 2000 | xargs touch '
		'&& cd sub && seq -f u%%g 500 | xargs touch', test.sh_quote(current_setting('test.target'))))
$$;
CREATE FUNCTION pg_temp.target_files() RETURNS integer LANGUAGE sql AS $$
	SELECT line::integer FROM test.program_lines('find ' || test.sh_quote(current_setting('test.target')) || ' -type f | wc -l') line
$$;
SELECT pg_temp.reset_target();
SELECT is(pg_temp.target_files(), 2500, 'the target outside the session has 2,500 files');
SELECT line AS target_mode FROM test.program_lines(format('stat -c %%a %s', :'target')) line \gset

-- race.c: race TARGET N SECONDS swaps dI and lI (a symlink to TARGET) for I in 1..N, over and over.
CREATE FUNCTION pg_temp.racer_c() RETURNS text LANGUAGE sql IMMUTABLE AS $c$
SELECT $$#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
	int n = atoi(argv[2]);
	time_t end = time(NULL) + atoi(argv[3]);
	char d[64][16], l[64][16];
	long fails = 0;

	if (n > 64)
		n = 64;
	for (int i = 0; i < n; i++)
	{
		snprintf(d[i], 16, "d%d", i + 1);
		snprintf(l[i], 16, "l%d", i + 1);
		if (symlink(argv[1], l[i]) != 0)
			return 1;
	}
	close(creat("ready", 0600));
	while (time(NULL) < end && fails < 200000)
		for (int i = 0; i < n; i++)
			if (renameat2(AT_FDCWD, d[i], AT_FDCWD, l[i], RENAME_EXCHANGE) != 0)
				fails++;
			else
				fails = 0;
	return 0;
}
$$
$c$;
-- The session's files: 20 directories to swap, and a few thousand files to walk.
CREATE FUNCTION pg_temp.populate() RETURNS text LANGUAGE sql IMMUTABLE AS $$
	SELECT 'seq -f d%g 20 | xargs mkdir && seq 20 | awk ''{ for (j = 1; j <= 20; j++) print "d" $1 "/f" j }'' | xargs touch '
		'&& mkdir many && seq -f many/m%g 2000 | xargs touch'
$$;
GRANT EXECUTE ON FUNCTION pg_temp.racer_c(), pg_temp.populate() TO alice;

-- user_start: alice fills session drop1 and starts the racer as a background process of it.
CREATE FUNCTION pg_temp.user_start(target text) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
	PERFORM sandbox.file_write('race.c', pg_temp.racer_c(), session => 'drop1');
	IF (SELECT status FROM sandbox.exec('cc -O2 -o race race.c && ' || pg_temp.populate(), 'drop1')) <> 'succeeded' THEN
		RAISE EXCEPTION 'could not prepare the session';
	END IF;
	PERFORM test.storage_key('drop1');
	RETURN sandbox.start_background(format('exec ./race %s 20 15', target), 'drop1');
END $$;
-- user_drop: once the racer runs, alice drops the session.
CREATE FUNCTION pg_temp.user_drop() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..100 LOOP
		EXIT WHEN (SELECT stdout FROM sandbox.exec('test -e ready && echo y', 'drop1')) = E'y\n';
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN sandbox.drop_session('drop1');
END $$;

-- Five rounds of alice's own attack (each statement commits: the reaper deletes after the commit).
SET ROLE alice;
SELECT format('SELECT pg_temp.user_start(%L)', :'target'), 'SELECT pg_temp.user_drop()'
	FROM generate_series(1, 5) \gexec
RESET ROLE;
-- Whatever is left of the racers (the drop should have killed them) stops now.
SELECT killed_count >= 0 FROM sandbox.kill_background_process(pattern => '^exec ./race ');
SELECT is(pg_temp.target_files(), 2500, 'alice''s racing drops of her session deleted nothing outside it');
SELECT ok(test.wait_until($$SELECT NOT test.session_storage_exists('drop1')$$), 'and the session''s directory is gone');

-- The host-side racer: a process of the session that survives its drop (a
-- leftover of any kind) keeps swapping while the deletion walks the tree.
SELECT pg_temp.reset_target();
SELECT test.program_lines(format(E'cat > %1$s.c <<''EOF''\n%2$sEOF\ncc -O2 -o %1$s %1$s.c', :'racer', pg_temp.racer_c()));
CREATE FUNCTION pg_temp.host_round(racer text, target text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	-- In the session's disk image, when it has one.
	ws text := test.session_dir('drop2') || CASE WHEN (pg_stat_file(test.session_dir('drop2') || '/disk.img', true)).size
		IS NOT NULL THEN '/fs/workspace' ELSE '/workspace' END;
BEGIN
	PERFORM test.program_lines(format('cd %s && (setsid %s %s 20 10 >/dev/null 2>&1 </dev/null & echo $! > %s.pid)',
									  test.sh_quote(ws), racer, target, racer));
	PERFORM test.program_lines(format('for i in $(seq 100); do test -e %s/ready && break; sleep 0.05; done',
									  test.sh_quote(ws)));
END $$;
SELECT format('SET ROLE alice; SELECT status FROM sandbox.exec(%L, ''drop2''); RESET ROLE', pg_temp.populate()),
	format('SELECT pg_temp.host_round(%L, %L)', :'racer', :'target'),
	'SET ROLE alice; SELECT sandbox.drop_session(''drop2''); RESET ROLE',
	format('SELECT test.program_lines(''kill $(cat %s.pid) 2>/dev/null; true'')', :'racer')
	FROM generate_series(1, 5) \gexec
SELECT is(pg_temp.target_files(), 2500, 'drops racing a surviving process of the session deleted nothing outside it');
SELECT ok(test.wait_until($$SELECT NOT test.session_storage_exists('drop2')$$), 'and the session''s directory is gone');

-- The static case: symlinks out, directories without permissions, a FIFO, a symlink loop.
SELECT pg_temp.reset_target();
SET ROLE alice;
SELECT is((SELECT status FROM sandbox.exec(format(
	'ln -s %1$s link && ln -s %1$s/sub sublink && ln -s %1$s/t1 filelink && mkdir -p locked/a/b && touch locked/a/b/f '
	'&& chmod 000 locked/a/b locked/a && chmod 500 locked && mkfifo fifo && ln -s loop loop '
	'&& mkdir -p /tmp/x/y && touch /tmp/x/y/z && chmod 000 /tmp/x/y /tmp/x', :'target'), 'drop3')),
	'succeeded', 'alice fills a session with symlinks to the target, chmod 000 directories and a FIFO');
SELECT test.storage_key('drop3');
SELECT is(sandbox.drop_session('drop3'), true, 'she drops it');
RESET ROLE;
SELECT ok(test.wait_until($$SELECT NOT test.session_storage_exists('drop3')$$), 'its directory is gone, locked directories included');
SELECT is(pg_temp.target_files(), 2500, 'the target is intact');
SELECT is((SELECT line FROM test.program_lines(format('stat -c %%a %s', :'target')) line), :'target_mode',
		  'and its mode unchanged');
SELECT is((SELECT count(*)::int FROM pg_ls_dir(:'trash', true, false)), 0, 'nothing is left in the trash');

-- state.json is in the session's directory, which the sandbox does not see:
-- what follows plants there what a sandbox cannot, to check the host's side.
SET ROLE alice;
SELECT is((SELECT stdout FROM sandbox.exec('ls -a /workspace/.. | grep -c state.json; ls -a /tmp/.. | grep -c state.json', 'st')),
		  E'0\n0\n', 'the sandbox cannot reach its session''s state.json');
SELECT pg_backend_pid() AS mypid \gset
RESET ROLE;
SELECT test.session_dir('st') AS st \gset
-- a symlink as state.json, to a host file that holds a valid state with a secret
SELECT jsonb_set(test.state_json('st'), '{env,SECRET}', '"s3cret"')::text AS secret \gset
SELECT test.program_lines(format('cp %1$s/state.json %2$s/orig.json && printf %%s %3$s > %2$s/secret.json && ln -sf %2$s/secret.json %1$s/state.json',
								 :'st', :'cluster', test.sh_quote(:'secret')));
SET ROLE alice;
SELECT matches(test.error_of($$SELECT sandbox.sync('st')$$), 'not a regular file', 'a symlink planted as state.json is not followed');
SELECT ok((SELECT env FROM sandbox.sessions WHERE name = 'st') IS DISTINCT FROM NULL
		  AND NOT (SELECT env FROM sandbox.sessions WHERE name = 'st') ? 'SECRET', 'the host file''s contents do not reach the session');
RESET ROLE;
-- a symlink where the next state.json is written, to a host file
SELECT test.program_lines(format('cp %2$s/orig.json %1$s/state.json.new && mv -f %1$s/state.json.new %1$s/state.json '
	'&& echo precious > %2$s/victim && ln -s %2$s/victim %1$s/state.json.%3$s.tmp', :'st', :'cluster', :'mypid'));
SET ROLE alice;
SELECT is((SELECT status FROM sandbox.exec('true', 'st')), 'succeeded', 'a command runs with a symlink planted where the state is written');
RESET ROLE;
SELECT is((SELECT string_agg(l, '') FROM test.program_lines(format('cat %s/victim', :'cluster')) l), 'precious',
		  'the host file the symlink points to is not written');
-- a FIFO as state.json (a writer opens it after 4 s, so that code that blocks cannot hang forever)
SELECT test.program_lines(format('rm -f %1$s/state.json && mkfifo %1$s/state.json && '
	'(setsid timeout 6 sh -c ''sleep 4; echo > %1$s/state.json'' >/dev/null 2>&1 </dev/null &)', :'st'));
SET ROLE alice;
SELECT clock_timestamp() AS t0 \gset
SELECT matches(test.error_of($$SELECT sandbox.sync('st')$$), 'not a regular file', 'a FIFO planted as state.json is refused');
SELECT ok(clock_timestamp() - :'t0'::timestamptz < interval '3 s', 'at once, without waiting for the writer (4 s)');
RESET ROLE;
SELECT test.program_lines(format('rm -f %1$s/state.json %2$s/secret.json %2$s/orig.json %2$s/victim', :'st', :'cluster'));
SET ROLE alice;
SELECT sandbox.drop_session('st');
RESET ROLE;

SELECT test.program_lines(format('rm -rf %1$s %2$s %2$s.c %2$s.pid', :'target', :'racer'));
SELECT * FROM finish();
