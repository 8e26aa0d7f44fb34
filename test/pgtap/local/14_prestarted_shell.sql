-- Issue 12: in a warm sandbox the next command's shell is started before its
-- request comes (src/executor/command.c).  It must still be the shell a fresh
-- sandbox would give: the request's limits, cwd and environment (taken
-- literally, never run), a new shell each time, and nothing of the time it
-- waited ($SECONDS, OLDPWD).
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(12);
SELECT sandbox.drop_session('ps1', if_exists => true);

-- Warm the session: after this, each call finds a shell waiting.
SELECT status AS ignored FROM sandbox.exec('true', 'ps1') \gset
SELECT isnt(test.warm_pid('ps1'), NULL, 'the session has a warm sandbox');
SELECT status AS ignored FROM sandbox.exec('true', 'ps1') \gset
SELECT test.warm_pid('ps1') AS p1 \gset

-- Limits: the waiting shell started with none of the request's; they are set on it.
SELECT is((SELECT stdout FROM sandbox.exec('ulimit -u; ulimit -v; ulimit -f', 'ps1')),
		  format(E'%s\n%s\n%s\n', current_setting('cloudrun_sandbox.max_processes'),
				 (SELECT setting::bigint * 1024 FROM pg_settings WHERE name = 'cloudrun_sandbox.memory_limit'),
				 (SELECT setting::bigint * 1024 FROM pg_settings WHERE name = 'cloudrun_sandbox.file_size_limit')),
		  'the command runs under the request''s process, memory and file size limits');

-- Time spent waiting is not the command's.
SELECT pg_sleep(2.2);
SELECT is((SELECT stdout FROM sandbox.exec('echo $SECONDS', 'ps1')), E'0\n',
		  '$SECONDS counts from the command''s start, not the shell''s');
SELECT is((SELECT stdout FROM sandbox.exec('declare -p OLDPWD', 'ps1')), E'declare -x OLDPWD\n',
		  'OLDPWD is exported and unset, as in a shell just started');

-- A new shell each time.
SELECT isnt((SELECT stdout FROM sandbox.exec('echo $$', 'ps1')), (SELECT stdout FROM sandbox.exec('echo $$', 'ps1')),
			'each command has a shell of its own');
SELECT is((SELECT stdout FROM sandbox.exec('x=1; f() { :; }; alias a=b; set -o noglob; trap "echo trapped" USR1; echo set', 'ps1')),
		  E'set\n', 'a command sets a variable, a function, an alias, an option and a trap');
SELECT is((SELECT stdout FROM sandbox.exec('echo "[${x-}]"; declare -F f; alias a 2>/dev/null; [[ $- == *f* ]] && echo noglob; trap -p USR1; echo end', 'ps1')),
		  E'[]\nend\n', 'the next command sees none of them');

-- cwd and environment with every quoting hazard are taken literally.
SELECT is((SELECT cwd FROM sandbox.exec($c$mkdir -p "/workspace/a'b \$(touch /workspace/pwned1) \"c"; cd "/workspace/a'b \$(touch /workspace/pwned1) \"c"$c$, 'ps1')),
		  $c$/workspace/a'b $(touch /workspace/pwned1) "c$c$, 'a command moves to a directory whose name quotes and substitutes');
SELECT is((SELECT stdout FROM sandbox.exec('pwd', 'ps1')),
		  E'/workspace/a''b $(touch /workspace/pwned1) "c\n', 'the next command starts there');
SELECT is((SELECT stdout FROM sandbox.exec($c$cd /workspace; export V="it's \$(touch /workspace/pwned2) \`touch /workspace/pwned3\`
line2"; echo ok$c$, 'ps1')), E'ok\n', 'a command exports a value that quotes, substitutes and spans lines');
SELECT is((SELECT stdout FROM sandbox.exec('printf "%s|" "$V"; ls /workspace | grep -c pwned', 'ps1')),
		  E'it''s $(touch /workspace/pwned2) `touch /workspace/pwned3`\nline2|0\n',
		  'the next command has the value exactly, and nothing in it ran');
SELECT is(test.warm_pid('ps1'), :p1, 'all in the same warm sandbox');

SELECT sandbox.drop_session('ps1');
SELECT * FROM finish();
