-- Sessions serialize across backends; history is kept and pruned.
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(6);
SELECT sandbox.drop_session('conc', if_exists => true);
SELECT sandbox.drop_session('hist', if_exists => true);
SELECT sandbox.drop_session('hist_tick', if_exists => true);
SELECT test.forget_executions(s) FROM unnest(ARRAY['conc', 'hist', 'hist_tick']) s;
SELECT sandbox.create_session('conc');

SELECT test.dblink_connect('a');
SELECT test.dblink_connect('b');
SELECT test.dblink_connect('c');
SELECT dblink_send_query('a', $$SELECT status FROM sandbox.exec('export A=1; sleep 1', 'conc')$$);
SELECT dblink_send_query('b', $$SELECT status FROM sandbox.exec('export B=2; sleep 1', 'conc')$$);
SELECT dblink_send_query('c', $$SELECT status FROM sandbox.exec('export C=3; sleep 1', 'conc')$$);
SELECT is((SELECT array_agg(s) FROM (SELECT * FROM dblink_get_result('a') AS t(s text)
	UNION ALL SELECT * FROM dblink_get_result('b') AS t(s text)
	UNION ALL SELECT * FROM dblink_get_result('c') AS t(s text)) x),
	ARRAY['succeeded', 'succeeded', 'succeeded'], 'three backends run a command in one session at once');
SELECT is((SELECT env FROM sandbox.sessions WHERE name = 'conc'), '{"A": "1", "B": "2", "C": "3"}'::jsonb,
		  'no environment change is lost');
SELECT ok((SELECT bool_and(e2.started_at >= e1.finished_at OR e1.started_at >= e2.finished_at)
		   FROM sandbox.executions e1 JOIN sandbox.executions e2 ON e1.id < e2.id
		   WHERE e1.session = 'conc' AND e2.session = 'conc'),
		  'the commands ran one after the other, never overlapping');
SELECT dblink_disconnect('a');
SELECT dblink_disconnect('b');
SELECT dblink_disconnect('c');

SELECT sandbox.exec('echo old', 'hist');
SELECT sandbox.exec('echo recent', 'hist');
SELECT test.set_finished_at((SELECT min(id) FROM sandbox.executions WHERE session = 'hist'), now() - interval '30 days');
-- An exec prunes once the server's prune interval (10 s, shared by every
-- backend and the worker) has passed: a new connection per call does not
-- prune each time, and one of these execs, in a fresh backend, does.
SELECT test.dblink_connect('h');
SELECT * FROM dblink('h', $$SELECT test.set_setting('cloudrun_sandbox.history_retention', '1d')$$) AS t(v text);
SELECT ok(test.until($q$SELECT (SELECT s FROM dblink('h', 'SELECT status FROM sandbox.exec(''true'', ''hist_tick'')')
		   AS t(s text)) = 'succeeded' AND NOT EXISTS (SELECT FROM sandbox.executions
		   WHERE session = 'hist' AND stdout = E'old\n')$q$, 15),
		  'executions older than cloudrun_sandbox.history_retention are deleted');
SELECT dblink_disconnect('h');
SELECT is((SELECT count(*)::int FROM sandbox.executions WHERE session = 'hist'), 1, 'newer executions are kept');
SELECT ok((SELECT count(*) > 0 FROM pg_indexes WHERE schemaname = 'sandbox' AND tablename = 'executions'
		   AND indexdef LIKE '%(finished_at)%'), 'the history is indexed by finish time for pruning');

SELECT sandbox.drop_session('conc');
SELECT sandbox.drop_session('hist');
SELECT sandbox.drop_session('hist_tick');
SELECT * FROM finish();
