-- Issue 10, finding 11: one variable over 128 KiB (the kernel's limit for one
-- string passed to a program) never bricks a session: refused with a clear
-- error when passed (env, create_session, submit_trigger's row values), named
-- and not kept when a command exports it, skipped (and dropped, said so) when
-- an older version left one in state.json.  Both backends where it applies.
-- Runs as: postgres (setup); the calls as alice (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(23);
\set backend local
\ir 22_large_variables.inc
\set backend cloudrun
\ir 22_large_variables.inc

-- submit_trigger: a 200 kB row value is refused at INSERT, with the reason.
SET cloudrun_sandbox.backend = local;
CREATE TABLE public.f22_rows (id serial PRIMARY KEY, payload text);
GRANT INSERT ON public.f22_rows TO alice;
GRANT USAGE ON SEQUENCE public.f22_rows_id_seq TO alice;
CREATE TRIGGER f22_run AFTER INSERT ON public.f22_rows FOR EACH ROW
	EXECUTE FUNCTION sandbox.submit_trigger('printf %s {payload} | wc -c', 'f22_trig');
SET ROLE alice;
SELECT matches(test.error_of($q$INSERT INTO public.f22_rows (payload) VALUES (repeat('y', 200000))$q$),
			   '^22023: invalid row values of the submit_trigger placeholders',
			   'submit_trigger: a 200 kB row value is refused at INSERT (22023)');
SELECT is((SELECT count(*)::int FROM sandbox.executions WHERE session = 'f22_trig'), 0,
		  'submit_trigger: nothing was queued');
RESET ROLE;
DROP TABLE public.f22_rows;

-- A state.json an older version wrote with such a variable: the session still runs.
SET ROLE alice;
SELECT is((SELECT status FROM sandbox.exec('export KEEP=1', 'f22_legacy')), 'succeeded', 'legacy: a local session');
RESET ROLE;
SELECT test.session_dir('f22_legacy') || '/state.json' AS state_file,
	test.state_json('f22_legacy')->>'generation' AS gen \gset
COPY (SELECT jsonb_build_object('version', 1, 'generation', :gen::int,
	'cwd', '/workspace', 'last_execution', 0,
	'env', jsonb_build_object('KEEP', '1', 'HUGE', repeat('z', 200000)))::text) TO :'state_file';
SET ROLE alice;
SELECT status AS st, stderr AS se, stdout AS so FROM sandbox.exec('ls / >/dev/null && echo "$KEEP [${HUGE-}]"', 'f22_legacy') \gset
SELECT is(:'st'::text, 'succeeded', 'legacy: a session whose state holds a 200 kB variable still runs programs');
SELECT is(:'so'::text, E'1 []\n', 'legacy: with the rest of its environment');
SELECT matches(:'se'::text, 'did not keep variable\(s\) HUGE', 'legacy: and stderr says the variable was dropped');
SELECT is((SELECT env ? 'HUGE' FROM sandbox.sessions WHERE name = 'f22_legacy'), false,
		  'legacy: the session no longer holds it');
SELECT sandbox.drop_session('f22_legacy');
RESET ROLE;
SELECT * FROM finish();
