-- stdin and a per-call cwd (issue 14, parts 1 and 2): exec, submit and
-- start_background feed stdin (text, or stdin_bytes byte for byte) to the
-- command and close it; without it the command reads EOF at once; a command
-- that never reads a stdin larger than a pipe's buffer does not hang; stdin is
-- bounded by cloudrun_sandbox.max_stdin_bytes (54000, with a hint); a queued
-- command keeps its stdin in its row, counted in its bytes, until it has run.
-- exec and submit run in cwd (relative to the session's cwd, or absolute)
-- without changing the session's cwd unless the command cd's; a directory that
-- does not exist fails the call, the session unchanged.  Attacks (tap, with
-- sandbox_user only): writing to another role's background process, a cwd
-- that climbs out of /workspace, oversized stdin.
-- Runs as: tap (sandbox_user only), on each backend; bob's process as bob.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET statement_timeout = '120s';
SELECT plan(46);
SELECT ok(test.wait_worker(), 'the worker is running');
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['sc', 'sc_q', 'sc_bg']) s;

-- stdin to exec
SELECT is((SELECT stdout FROM sandbox.exec('python3 -c "import sys; print(sys.stdin.read().upper())"', 'sc',
										   stdin => 'hi')), E'HI\n', 'exec feeds stdin to the command: HI');
SELECT is((SELECT stdout FROM sandbox.exec('cat; echo "[eof $?]"', 'sc', timeout => '20s')), E'[eof 0]\n',
		  'without stdin a command reading it gets EOF at once');
SELECT cmp_ok((SELECT duration FROM sandbox.exec('read line; echo "read=$? [$line]"', 'sc', timeout => '20s')),
			  '<', interval '10 s', 'at once: no wait for a stdin left open');
SELECT is((SELECT stdout FROM sandbox.exec('read line; echo "read=$? [$line]"', 'sc')), E'read=1 []\n',
		  'read finds nothing');
SELECT is((SELECT stdout FROM sandbox.exec('cat; echo "[eof $?]"', 'sc', stdin => E'line 1\nline 2')),
		  E'line 1\nline 2[eof 0]\n', 'stdin is closed once written: cat ends');
SELECT is((SELECT stdout FROM sandbox.exec('wc -c', 'sc', stdin => '')), E'0\n', 'an empty stdin is an empty file');
SELECT is((SELECT stdout FROM sandbox.exec('od -An -tx1 | tr -d '' \n''', 'sc',
										   stdin_bytes => '\x00ff41fe0a00c3'::bytea)),
		  '00ff41fe0a00c3', 'stdin_bytes arrive byte for byte: NUL and bytes that are not UTF-8');
CREATE TEMP TABLE sc_blob AS
	SELECT string_agg(sha256(int4send(i)), ''::bytea) AS b FROM generate_series(1, 20000) i;
SELECT is((SELECT stdout FROM sandbox.exec('sha256sum | cut -c1-64', 'sc', stdin_bytes => (SELECT b FROM sc_blob))),
		  (SELECT encode(sha256(b), 'hex') || E'\n' FROM sc_blob), '640 kB of binary stdin: the same sha256 inside');
SELECT is((SELECT row(status, stdout)::text FROM sandbox.exec('sleep 0.5; echo done', 'sc', timeout => '30s',
															  stdin => repeat('x', 2000000))),
		  row('succeeded', E'done\n')::text, '2 MB of stdin to a command that never reads it: no hang');
SELECT is((SELECT stdout FROM sandbox.exec('head -c 5', 'sc', stdin => repeat('y', 2000000))), 'yyyyy',
		  'nor to one that reads a little and exits');

-- limits and misuse
SELECT throws_ok($$SELECT sandbox.exec('cat', 'sc', stdin => 'a', stdin_bytes => '\x62')$$, '22023',
				 'stdin and stdin_bytes cannot both be given', 'stdin and stdin_bytes together are refused');
SELECT matches(test.error_of($$SELECT sandbox.exec('cat', 'sc', stdin => 'a', stdin_bytes => '\x62')$$),
			   'HINT: Pass text as stdin, or binary data as stdin_bytes', 'with a hint');
SELECT test.set_setting('cloudrun_sandbox.max_stdin_bytes', '1kB');
SELECT throws_ok($$SELECT sandbox.exec('wc -c', 'sc', stdin => repeat('a', 2000))$$, '54000',
				 'stdin is too large: 2000 bytes', 'attack: stdin above cloudrun_sandbox.max_stdin_bytes is refused');
SELECT matches(test.error_of($$SELECT sandbox.exec('wc -c', 'sc', stdin => repeat('a', 2000))$$),
			   'HINT: Upload large input with sandbox.file_upload', 'with a hint');
SELECT throws_ok($$SELECT sandbox.submit('wc -c', 'sc', stdin_bytes => decode(repeat('00', 2000), 'hex'))$$,
				 '54000', 'stdin is too large: 2000 bytes', 'by submit too');
SELECT throws_ok($$SELECT sandbox.start_background('wc -c', 'sc', stdin => repeat('a', 2000))$$, '54000',
				 'stdin is too large: 2000 bytes', 'and start_background');
SELECT is((SELECT stdout FROM sandbox.exec('wc -c', 'sc', stdin => repeat('a', 1000))), E'1000\n',
		  'stdin within the bound runs');
SELECT test.set_setting('cloudrun_sandbox.max_stdin_bytes', NULL);

-- submit: the stdin waits in the row (counted in its bytes) until the worker has run it
BEGIN;
SELECT sandbox.submit('tr a-z A-Z', 'sc_q', stdin => 'queued text') AS q1 \gset
SELECT is((SELECT row(stdin, bytes >= octet_length(command) + 11)::text FROM sandbox.executions WHERE id = :q1),
		  row('queued text'::bytea, true)::text, 'a queued command keeps its stdin in its row, counted in its bytes');
COMMIT;
SELECT is((SELECT stdout FROM sandbox.wait(:q1, '60 s')), 'QUEUED TEXT', 'submit feeds stdin when it runs');
SELECT is((SELECT stdin FROM sandbox.executions WHERE id = :q1), NULL, 'and the row forgets it once run');
SELECT sandbox.submit('sha256sum | cut -c1-64', 'sc_q', stdin_bytes => (SELECT b FROM sc_blob)) AS q2 \gset
SELECT is((SELECT stdout FROM sandbox.wait(:q2, '60 s')), (SELECT encode(sha256(b), 'hex') || E'\n' FROM sc_blob),
		  'submit with stdin_bytes: byte for byte');
SELECT sandbox.submit('cat; echo "[eof $?]"', 'sc_q') AS q3 \gset
SELECT is((SELECT stdout FROM sandbox.wait(:q3, '60 s')), E'[eof 0]\n', 'a queued command without stdin reads EOF');

-- start_background: stdin given, then EOF; without it, EOF at once
SELECT sandbox.start_background('tr a-z A-Z; echo "[eof $?]"', 'sc_bg', stdin => 'to the background') AS bg1 \gset
SELECT sandbox.start_background('cat; echo "[eof $?]"', 'sc_bg') AS bg2 \gset
SELECT ok(test.until(format($$SELECT status = 'exited' FROM sandbox.list_background_processes() WHERE pid = %s$$, :bg1), 60),
		  'a background process given stdin reads it and ends');
SELECT is(sandbox.get_background_logs(:bg1), E'TO THE BACKGROUND[eof 0]\n', 'with what it was given, then EOF');
SELECT ok(test.until(format($$SELECT status = 'exited' FROM sandbox.list_background_processes() WHERE pid = %s$$, :bg2), 60),
		  'one started without stdin reads EOF at once and ends');
SELECT is(sandbox.get_background_logs(:bg2), E'[eof 0]\n', 'its stdin was empty');

-- per-call cwd
SELECT sandbox.exec('mkdir -p sub/dir && echo inner > sub/dir/f && export SC_KEEP=1', 'sc') \g /dev/null
SELECT is((SELECT row(stdout, cwd)::text FROM sandbox.exec('pwd; cat f', 'sc', cwd => 'sub/dir')),
		  row(E'/workspace/sub/dir\ninner\n', '/workspace')::text,
		  'exec runs in cwd, relative to the session''s; the session''s cwd stays');
SELECT is((SELECT stdout FROM sandbox.exec('pwd; echo $SC_KEEP', 'sc')), E'/workspace\n1\n',
		  'the next call is back in the session''s cwd, its environment kept');
SELECT is((SELECT stdout FROM sandbox.exec('pwd', 'sc', cwd => '/tmp')), E'/tmp\n', 'an absolute cwd is taken as it is');
SELECT is((SELECT row(stdout, cwd)::text FROM sandbox.exec('cd ..; pwd', 'sc', cwd => 'sub/dir')),
		  row(E'/workspace/sub\n', '/workspace/sub')::text, 'a command that cd''s changes the session''s cwd');
SELECT is((SELECT stdout FROM sandbox.exec('pwd', 'sc', cwd => 'dir')), E'/workspace/sub/dir\n',
		  'relative to the session''s cwd as it is now');
SELECT sandbox.exec('cd /workspace', 'sc') \g /dev/null
SELECT is((SELECT row(status, exit_code, stdout, cwd)::text FROM sandbox.exec('echo ran; export SC_KEEP=2', 'sc', cwd => 'nope')),
		  row('failed', 1, '', '/workspace')::text, 'a cwd that does not exist fails the call; nothing runs');
SELECT matches((SELECT stderr FROM sandbox.exec('echo ran', 'sc', cwd => 'nope/x')), 'cd: nope/x: No such file or directory',
			   'as bash says of a failed cd');
SELECT is((SELECT stdout FROM sandbox.exec('pwd; echo $SC_KEEP', 'sc')), E'/workspace\n1\n', 'the session is unchanged');
SELECT sandbox.submit('pwd', 'sc', cwd => 'sub/dir') AS q4 \gset
SELECT is((SELECT row(stdout, cwd)::text FROM sandbox.wait(:q4, '60 s')), row(E'/workspace/sub/dir\n', '/workspace')::text,
		  'submit runs in its cwd too');
SELECT is((SELECT call_cwd FROM sandbox.executions WHERE id = :q4), 'sub/dir', 'which its row records');
SELECT throws_ok($$SELECT sandbox.exec('pwd', 'sc', cwd => '')$$, '22023', 'cwd must not be empty', 'an empty cwd is refused');
SELECT throws_ok(format('SELECT sandbox.exec(%L, %L, cwd => %L)', 'pwd', 'sc', repeat('a/', 2100)), '54000', NULL,
				 'so is one longer than a path');
-- attack: the session's CDPATH does not send a relative cwd elsewhere, and "-" is a name, not $OLDPWD
SELECT sandbox.exec('mkdir -p /workspace/cdp/sub; export CDPATH=/workspace/cdp', 'sc_cdpath');
SELECT is((SELECT row(status, exit_code, stdout)::text FROM sandbox.exec('pwd', 'sc_cdpath', cwd => 'sub')),
		  row('failed', 1, '')::text, 'attack: a CDPATH the session exported does not take cwd => ''sub'' to /workspace/cdp/sub');
SELECT is((SELECT row(status, exit_code, stdout)::text FROM sandbox.exec('pwd', 'sc_cdpath', cwd => '-')),
		  row('failed', 1, '')::text, 'cwd => ''-'' is a directory named "-", not the previous directory');
SELECT is((SELECT stdout FROM sandbox.exec('pwd', 'sc_cdpath', cwd => 'cdp/sub')), E'/workspace/cdp/sub\n',
		  'and a relative cwd that exists is still found');
-- the command holds only its own descriptors: 0-2, and none of the setup's pipe (95) or stdin's (94)
SELECT is((SELECT stdout FROM sandbox.exec('for f in 94 95; do [ -e /proc/self/fd/$f ] && echo "$f open"; done; echo end', 'sc_cdpath')),
		  E'end\n', 'the command does not inherit the setup''s descriptors');
SELECT is((SELECT stdout FROM sandbox.exec('for f in 94 95; do [ -e /proc/self/fd/$f ] && echo "$f open"; done; echo end', 'sc_cdpath', stdin => 'x')),
		  E'end\n', 'nor with stdin');
SELECT sandbox.drop_session('sc_cdpath');
-- attack: a cwd that climbs out of /workspace is the sandbox's own root, nothing of the host's
SELECT is((SELECT row(stdout, cwd)::text FROM sandbox.exec('pwd', 'sc', cwd => '../../../../../../..')),
		  row(E'/\n', '/workspace')::text, 'attack: a cwd climbing out of /workspace stays in the sandbox (its /), the session unchanged');

-- attack: writing to another role's background process
SET ROLE bob;
SELECT sandbox.drop_session('sc_bob', if_exists => true);
SELECT sandbox.start_background('sleep 60', 'sc_bob') AS bobs \gset
RESET ROLE;
SELECT throws_ok(format($$SELECT sandbox.write_background_stdin(%s, 'rm -rf /workspace')$$, :bobs), '42501',
				 NULL, 'attack: tap cannot write to bob''s background process');
SET ROLE bob;
SELECT sandbox.kill_background_process(:bobs) \g /dev/null
SELECT sandbox.drop_session('sc_bob');
RESET ROLE;

SELECT sandbox.drop_session(s) FROM unnest(ARRAY['sc', 'sc_q', 'sc_bg']) s;
SELECT * FROM finish();
