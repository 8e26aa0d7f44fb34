-- 1,000 submits over 50 sessions on the local backend.
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(3);
SELECT sandbox.drop_session('vol' || i, if_exists => true) FROM generate_series(0, 49) i;
SELECT max(id) AS before_id FROM sandbox.executions \gset
SELECT count(sandbox.submit('echo ' || i || ' >> seq.txt; echo ' || i, 'vol' || (i % 50))) FROM generate_series(1, 1000) i;
DO $$
BEGIN
	FOR i IN 1..1200 LOOP
		EXIT WHEN NOT EXISTS (SELECT FROM sandbox.executions WHERE session LIKE 'vol%' AND status IN ('queued', 'launching', 'running'));
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;
SELECT is((SELECT count(*)::int FROM sandbox.executions WHERE id > :before_id AND session LIKE 'vol%' AND status = 'succeeded'), 1000,
		  '1,000 submits over 50 sessions all finish');
SELECT is((SELECT count(*)::int FROM sandbox.executions WHERE id > :before_id AND session LIKE 'vol%'
		   AND stdout = (regexp_match(command, '^echo (\d+)'))[1] || E'\n'), 1000, 'each with its own output');
SELECT is((SELECT count(*)::int FROM generate_series(0, 49) s,
		   LATERAL sandbox.exec('tr "\n" " " < seq.txt', 'vol' || s) x
		   WHERE x.stdout = (SELECT string_agg(i::text, ' ' ORDER BY i) || ' ' FROM generate_series(1, 1000) i WHERE i % 50 = s)), 50,
		  'within each session they ran in submission order');
SELECT sandbox.drop_session('vol' || i) FROM generate_series(0, 49) i;
SELECT * FROM finish();
