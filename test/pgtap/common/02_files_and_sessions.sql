-- Files persist within a session, never across sessions; dropping a session
-- removes its storage when the transaction commits, and not before.
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(14);
SELECT sandbox.drop_session('s1', if_exists => true);
SELECT sandbox.drop_session('s2', if_exists => true);

SELECT is((SELECT status FROM sandbox.exec('mkdir -p sub && echo secret > note.txt && printf "a\\0b" > sub/bin', 's1')), 'succeeded', 's1 writes files');
SELECT is((SELECT stdout FROM sandbox.exec('cat note.txt; od -An -c sub/bin | tr -s " "', 's1')), E'secret\n a \\0 b\n',
		  'a later call in s1 reads back its files, binary content intact');
SELECT is((SELECT status FROM sandbox.exec('cat /workspace/note.txt', 's2')), 'failed', 's2 cannot read s1''s workspace file');
SELECT is((SELECT stdout FROM sandbox.exec('find /workspace -mindepth 1 | wc -l', 's2')), E'0\n',
		  's2 starts with an empty workspace');

SELECT ok(test.session_storage_exists('s1'), 's1 has storage');
SELECT is(sandbox.drop_session('s1'), true, 'drop_session returns true');
SELECT ok(test.wait_until($$SELECT NOT test.session_storage_exists('s1')$$),
		  'drop_session removes the storage and the workspace (once the drop has committed)');
SELECT is((SELECT count(*)::int FROM sandbox.sessions WHERE name = 's1'), 0, 'drop_session removes the mirror row');
SELECT is((SELECT status FROM sandbox.exec('cd sub; export Z=1; cat note.txt', 's1')), 'failed', 'a session made again under the same name starts empty');
SELECT sandbox.drop_session('s1');
SELECT sandbox.exec('true', 's1');
SELECT is((SELECT cwd || ' ' || env::text FROM sandbox.sessions WHERE name = 's1'), '/workspace {}',
		  'and with a fresh working directory and environment');

SELECT sandbox.exec('echo keep > kept.txt', 's2');
BEGIN;
SELECT sandbox.drop_session('s2');
ROLLBACK;
SELECT ok(test.session_storage_exists('s2'), 'a drop rolled back leaves the storage in place');
SELECT is((SELECT stdout FROM sandbox.exec('cat kept.txt', 's2')), E'keep\n', 'and the files in it');

BEGIN;
SAVEPOINT sp;
SELECT sandbox.drop_session('s2');
ROLLBACK TO SAVEPOINT sp;
COMMIT;
SELECT is((SELECT stdout FROM sandbox.exec('cat kept.txt', 's2')), E'keep\n', 'a drop rolled back to a savepoint keeps the files');

BEGIN;
SELECT sandbox.drop_session('s2');
COMMIT;
SELECT ok(test.wait_until($$SELECT NOT test.session_storage_exists('s2')$$), 'after commit the storage is gone');

SELECT sandbox.drop_session('s1');
SELECT * FROM finish();
