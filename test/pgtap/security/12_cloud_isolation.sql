-- Security, finding 12: on Cloud Run, a command can neither obtain the
-- executor's credentials nor touch another role's objects.
-- Runs as: alice (the attacker) and bob (the victim), sandbox_user only, on the
-- cloud backend against the emulator (the file sets cloudrun_sandbox.backend
-- itself).  A superuser only reads the emulator's settings, opts alice out of
-- the command sandbox for the positive control (ALTER ROLE ... SET
-- cloudrun_sandbox.cloud_isolation = 'none'), gives each role a job of its own
-- whose service account the emulator limits to the role's prefix, and resets
-- all of it at the end.
-- The attack, from a command in alice's cloud session: ask the metadata server
-- for the job's token, list the bucket and read bob's state.json with it, read
-- the executor's environment (/proc/1/environ) and a key file.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(27);
SET cloudrun_sandbox.backend = 'cloudrun';
ALTER ROLE alice RESET ALL;
ALTER ROLE bob RESET ALL;

SET ROLE bob;
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['sec12_bob', 'sec12_bob2']) s;
SELECT is((SELECT status FROM sandbox.exec('export BOB_SECRET=bob-s3cret-42; echo bob-file-s3cret > secret.txt', 'sec12_bob')),
		  'succeeded', 'bob keeps a secret in his cloud session''s environment');
RESET ROLE;
SET ROLE alice;
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['sec12_alice', 'sec12_alice2', 'sec12_alice3']) s;
RESET ROLE;

-- What an attacker would aim at: the metadata server tasks use (on Cloud Run
-- metadata.google.internal; here the emulator's), the bucket, bob's state.json.
SELECT current_setting('test.emulator_url') AS emu, regexp_replace(current_setting('test.emulator_url'), '^http://', '') AS md,
	   current_setting('cloudrun_sandbox.bucket') AS bucket, current_setting('cloudrun_sandbox.prefix') AS prefix,
	   current_setting('test.bin') || '/sa-key.json' AS keyfile \gset
CREATE FUNCTION pg_temp.state_object(role text, session text, prefix text) RETURNS text LANGUAGE sql AS $$
	SELECT CASE WHEN prefix = '' THEN '' ELSE prefix || '/' END || 'sessions/'
		|| (SELECT coalesce(to_jsonb(s)->>'storage_key', s.name) FROM sandbox.sessions s
			WHERE s.name = session AND s.owner = role::regrole) || '/state.json'
$$;
-- attack: the command; md is the metadata server it asks, victim the object it reads.
CREATE FUNCTION pg_temp.attack(md text, victim text) RETURNS text LANGUAGE sql AS $$
	SELECT format($c$T=$(curl -s -m 5 -H 'Metadata-Flavor: Google' 'http://%1$s/computeMetadata/v1/instance/service-accounts/default/token')
echo "token=[$T]"
A=$(printf '%%s' "$T" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
echo "list=[$(curl -s -m 5 -H "Authorization: Bearer $A" '%2$s/storage/v1/b/%3$s/o')]"
echo "victim=[$(curl -s -m 5 -w ' http=%%{http_code}' -H "Authorization: Bearer $A" '%2$s/storage/v1/b/%3$s/o/%4$s?alt=media')]"
echo "environ=[$(tr '\0' ' ' < /proc/1/environ 2>&1)]"
echo "key=[$(cat '%5$s' 2>&1)]"
true$c$, md, current_setting('test.emulator_url'), current_setting('cloudrun_sandbox.bucket'),
		replace(victim, '/', '%2F'), current_setting('test.bin') || '/sa-key.json')
$$;
SELECT pg_temp.attack(:'md', pg_temp.state_object('bob', 'sec12_bob', :'prefix')) AS attack \gset
-- leaked: what of the attack's output shows a hole (NULL: nothing).
CREATE FUNCTION pg_temp.leaked(txt text) RETURNS text LANGUAGE sql AS $$
	SELECT nullif(concat_ws(', ',
		CASE WHEN txt ~ 'access_token' THEN 'a token from the metadata server' END,
		CASE WHEN txt ~ '"items"|state\.json' THEN 'the bucket''s listing' END,
		CASE WHEN txt ~ 'BOB_SECRET|bob-s3cret' THEN 'bob''s state' END,
		CASE WHEN txt ~ 'CLOUDRUN_SANDBOX|GCE_METADATA|STORAGE_EMULATOR' THEN 'the executor''s environment' END,
		CASE WHEN txt ~ 'private_key' THEN 'a key file' END), '')
$$;
GRANT EXECUTE ON FUNCTION pg_temp.leaked(text) TO PUBLIC;

-- 1. The default: the command runs in a sandbox of its own inside the container.
SET ROLE alice;
CREATE TEMP TABLE sec12_run AS SELECT * FROM sandbox.exec(:'attack', 'sec12_alice');
SELECT is((SELECT status FROM sec12_run), 'succeeded', 'alice''s attack command runs in her cloud session');
SELECT is((SELECT pg_temp.leaked(stdout) FROM sec12_run), NULL,
		  'it gets no token from the metadata server, no listing, nothing of bob''s state, the executor''s environment or a key');
SELECT matches((SELECT stdout FROM sec12_run), 'token=\[\]', 'the metadata server does not even answer it');
SELECT is((SELECT stdout FROM sandbox.exec(format('curl -s -m 5 -o /dev/null -w %%{http_code} %s/_emulator/health; echo " rc=$?"',
		  :'emu'), 'sec12_alice')), E'000 rc=7\n', 'it has no network at all (Cloud Storage included)');
SELECT sandbox.submit(:'attack', 'sec12_alice') AS queued \gset
SELECT is((SELECT coalesce(pg_temp.leaked(stdout), 'nothing') || ', ' || status FROM sandbox.wait(:queued, '60 s')),
		  'nothing, succeeded', 'the same attack queued (run by the worker) gets nothing either');
SELECT sandbox.start_background(:'attack', 'sec12_alice') AS bg \gset
CREATE FUNCTION pg_temp.bg_output(h bigint) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..300 LOOP
		IF (SELECT NOT running FROM sandbox.list_background_processes() WHERE pid = h) THEN
			RETURN sandbox.get_background_logs(h);
		END IF;
		PERFORM pg_sleep(0.1);
	END LOOP;
	RETURN 'still running';
END $$;
RESET ROLE;	-- (its log read as a superuser: who may read it is not this test's subject)
SELECT pg_temp.bg_output(:bg) AS bg_out \gset
SET ROLE alice;
SELECT ok(:'bg_out' ~ 'key=\[', 'the attack as a background process ran to its end');
SELECT is(pg_temp.leaked(:'bg_out'), NULL, 'and got nothing either');
SELECT throws_ok($$SET cloudrun_sandbox.cloud_isolation = 'none'$$, '42501', NULL, 'alice cannot opt out of the sandbox');
SELECT throws_ok($$ALTER ROLE alice SET cloudrun_sandbox.cloud_isolation = 'none'$$, '42501', NULL,
				 '... not even as her own default');
RESET ROLE;

-- 2. The positive control: a superuser opts alice out; the same fetch succeeds.
ALTER ROLE alice SET cloudrun_sandbox.cloud_isolation = 'none';
SET ROLE alice;
CREATE TEMP TABLE sec12_none AS SELECT * FROM sandbox.exec(:'attack', 'sec12_alice');
SELECT ok((SELECT stdout ~ 'access_token' FROM sec12_none),
		  'with cloud_isolation = none the same command gets the job''s token (the test can fail)');
SELECT ok((SELECT stdout ~ 'bob-s3cret' FROM sec12_none),
		  'and, the job''s account reaching the whole bucket, reads bob''s state with it: why per-role jobs matter');
RESET ROLE;

-- 3. Per-role jobs: each role's job runs as a service account that IAM (here the
-- emulator) limits to the role's prefix; alice stays opted out of the sandbox.
SELECT CASE WHEN :'prefix' = '' THEN '' ELSE :'prefix' || '/' END AS root \gset
SELECT string_agg(l, '')::jsonb->>'metadata_host' AS alice_md FROM test.emu('hook', 'service-accounts',
	json_build_object('email', 'sec12-alice@test-project.iam.gserviceaccount.com',
					  'condition', format('resource.name.startsWith("projects/_/buckets/%s/objects/%salice/")', :'bucket', :'root'))::text) l \gset
SELECT string_agg(l, '') IS NOT NULL FROM test.emu('hook', 'service-accounts',
	json_build_object('email', 'sec12-bob@test-project.iam.gserviceaccount.com',
					  'condition', format('resource.name.startsWith("projects/_/buckets/%s/objects/%sbob/")', :'bucket', :'root'))::text) l;
SELECT string_agg(l, '') IS NOT NULL FROM test.emu('hook', 'jobs',
	'{"name": "sandbox-alice", "serviceAccount": "sec12-alice@test-project.iam.gserviceaccount.com"}') l;
SELECT string_agg(l, '') IS NOT NULL FROM test.emu('hook', 'jobs',
	'{"name": "sandbox-bob", "serviceAccount": "sec12-bob@test-project.iam.gserviceaccount.com"}') l;
SELECT format('ALTER ROLE alice SET cloudrun_sandbox.job = %L', 'sandbox-alice'),
	   format('ALTER ROLE alice SET cloudrun_sandbox.prefix = %L', :'root' || 'alice'),
	   format('ALTER ROLE bob SET cloudrun_sandbox.job = %L', 'sandbox-bob'),
	   format('ALTER ROLE bob SET cloudrun_sandbox.prefix = %L', :'root' || 'bob') \gexec

CREATE FUNCTION pg_temp.runs_of(job text) RETURNS int LANGUAGE sql AS $$
	SELECT coalesce((test.emu_stats()->'runs_by_job'->>job)::int, 0)
$$;
-- With session runners a new session's first command starts a runner in the
-- role's job; under a service account limited to the role's object names it
-- may not list its inbox, so it exits and the command runs as an execution of
-- its own, in the same job: two executions.
CREATE FUNCTION pg_temp.per_command() RETURNS int LANGUAGE sql AS $$
	SELECT CASE WHEN current_setting('cloudrun_sandbox.cloud_runners')::boolean THEN 2 ELSE 1 END
$$;
SELECT pg_temp.runs_of('sandbox-bob') AS bob_runs \gset
SET ROLE bob;
SELECT is((SELECT status FROM sandbox.exec('export BOB_SECRET=bob-s3cret-42', 'sec12_bob2')), 'succeeded',
		  'bob''s command runs in his own job, whose token reaches only his prefix');
RESET ROLE;
SELECT pg_temp.state_object('bob', 'sec12_bob2', :'root' || 'bob') AS bob_state \gset
SELECT ok((SELECT count(*) = 1 FROM test.emu('list', :'bucket', :'bob_state') l WHERE l = :'bob_state'),
		  'his session''s state is under his prefix');
SELECT is(pg_temp.runs_of('sandbox-bob'), :bob_runs + pg_temp.per_command(), 'in his job');

SELECT pg_temp.runs_of('sandbox-alice') AS alice_runs \gset
SET ROLE alice;
CREATE TEMP TABLE sec12_role AS SELECT * FROM sandbox.exec(pg_temp.attack(:'alice_md', :'bob_state'), 'sec12_alice2');
SELECT is((SELECT status FROM sec12_role), 'succeeded', 'alice''s command runs in her job, unsandboxed');
SELECT ok((SELECT stdout ~ 'access_token' FROM sec12_role), 'it gets her job''s token from the metadata server');
SELECT matches((SELECT stdout FROM sec12_role), 'victim=\[.* http=403\]', 'but reading bob''s state.json with it: 403');
SELECT ok((SELECT stdout !~ '"items"|BOB_SECRET|bob-s3cret' FROM sec12_role), 'no listing, nothing of bob''s state');
RESET ROLE;
SELECT is(pg_temp.runs_of('sandbox-alice'), :alice_runs + pg_temp.per_command(), 'her command ran in her job');
SELECT pg_temp.state_object('alice', 'sec12_alice2', :'root' || 'alice') AS alice_state \gset
SELECT pg_temp.runs_of('sandbox-alice') AS alice_runs \gset
SET ROLE alice;
SELECT matches((SELECT stdout FROM sandbox.exec(pg_temp.attack(:'alice_md', :'alice_state'), 'sec12_alice2')),
			   'victim=\[\{.* http=200\]', 'while her own state.json is hers to read (the token works)');
RESET ROLE;
-- The runner that could not list its inbox put the session on a backoff: its
-- next command starts no runner, it is one execution.
SELECT is(pg_temp.runs_of('sandbox-alice'), :alice_runs + 1,
		  'a session whose runner could not work starts no new one for its next command');
SELECT pg_temp.runs_of('sandbox-alice') AS alice_runs \gset
SET ROLE alice;
SELECT sandbox.submit('echo queued', 'sec12_alice3') AS q3 \gset
SELECT is((SELECT stdout FROM sandbox.wait(:q3, '60 s')), E'queued\n', 'a queued command of alice''s');
RESET ROLE;
SELECT is((SELECT remote_name ~ '/jobs/sandbox-alice/executions/' FROM sandbox.executions WHERE id = :q3)
		  AND pg_temp.runs_of('sandbox-alice') = :alice_runs + pg_temp.per_command(), true, 'runs in her job, not the worker''s');
SELECT pg_temp.runs_of('sandbox-alice') AS alice_runs \gset
SET ROLE alice;
SELECT sandbox.submit('echo again', 'sec12_alice3') AS q4 \gset
SELECT is((SELECT stdout FROM sandbox.wait(:q4, '60 s')), E'again\n', 'her next queued command in that session');
RESET ROLE;
SELECT is(pg_temp.runs_of('sandbox-alice'), :alice_runs + 1,
		  'is one execution: the worker, too, starts no new runner for a session backing off');
SELECT pg_temp.state_object('alice', 'sec12_alice3', :'root' || 'alice') AS q3_state \gset
SELECT ok((SELECT count(*) = 1 FROM test.emu('list', :'bucket', :'q3_state') l WHERE l = :'q3_state'),
		  'with its session''s objects under her prefix');

SET ROLE alice;
SELECT sandbox.drop_session(s) FROM unnest(ARRAY['sec12_alice', 'sec12_alice2', 'sec12_alice3']) s;
RESET ROLE;
SET ROLE bob;
SELECT sandbox.drop_session(s) FROM unnest(ARRAY['sec12_bob', 'sec12_bob2']) s;
RESET ROLE;
ALTER ROLE alice RESET ALL;
ALTER ROLE bob RESET ALL;
RESET cloudrun_sandbox.backend;
SELECT * FROM finish();
