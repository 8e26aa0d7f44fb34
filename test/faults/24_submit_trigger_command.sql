-- Issue 10, smaller points: submit_trigger's first argument is a column of
-- the table if it names one, else a command template, with or without
-- {column} placeholders: a plain command ('echo plain') is a command, not an
-- unknown column (42703).  Local backend, through the worker.
-- Runs as: postgres (creates the tables); the inserts as alice (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(5);
SET cloudrun_sandbox.backend = local;
SELECT ok(test.wait_worker(), 'the worker is running');
CREATE TABLE public.f24_plain (id serial PRIMARY KEY, cmd text);
CREATE TRIGGER f24_plain_run AFTER INSERT ON public.f24_plain FOR EACH ROW
	EXECUTE FUNCTION sandbox.submit_trigger('echo plain; echo "[$SANDBOX_ARG_id]"', 'f24');
CREATE TABLE public.f24_column (id serial PRIMARY KEY, cmd text);
CREATE TRIGGER f24_column_run AFTER INSERT ON public.f24_column FOR EACH ROW
	EXECUTE FUNCTION sandbox.submit_trigger('cmd', 'f24');
GRANT INSERT ON public.f24_plain, public.f24_column TO alice;
GRANT USAGE ON SEQUENCE public.f24_plain_id_seq, public.f24_column_id_seq TO alice;
SET ROLE alice;
SELECT is(test.error_of($$INSERT INTO public.f24_plain (cmd) VALUES ('ignored')$$), 'no error',
		  'a trigger whose command has no placeholder queues it');
INSERT INTO public.f24_column (cmd) VALUES ('echo from-the-column');
SELECT id AS plain_id FROM sandbox.executions WHERE session = 'f24' AND command LIKE 'echo plain%' \gset
SELECT id AS column_id FROM sandbox.executions WHERE session = 'f24' AND command = 'echo from-the-column' \gset
SELECT results_eq(format('SELECT status, stdout FROM sandbox.wait(%s, ''60 s'')', :plain_id),
				  $$VALUES ('succeeded'::text, E'plain\n[]\n'::text)$$,
				  'the plain command runs as written (no row value is passed)');
SELECT results_eq(format('SELECT status, stdout FROM sandbox.wait(%s, ''60 s'')', :column_id),
				  $$VALUES ('succeeded'::text, E'from-the-column\n'::text)$$,
				  'an argument naming a column still runs that column''s command');
SELECT is(sandbox.drop_session('f24'), true, 'the session can be dropped');
RESET ROLE;
DROP TABLE public.f24_plain, public.f24_column;
SELECT * FROM finish();
