-- The SQL surface of cloudrun_sandbox: objects, privileges, argument checks
-- and the shape of results.  Behaviour is tested with pgTAP in test/pgtap/.
CREATE EXTENSION cloudrun_sandbox;

-- objects
\dx cloudrun_sandbox
\df sandbox.*
\d sandbox.sessions
\d sandbox.executions

-- nothing is granted to PUBLIC
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute,
       has_function_privilege('sandbox_user', p.oid, 'EXECUTE') AS sandbox_user_execute
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'sandbox' ORDER BY 1;
SELECT c.relname, has_table_privilege('public', c.oid, 'SELECT') AS public_select,
       has_table_privilege('sandbox_user', c.oid, 'SELECT') AS user_select,
       has_table_privilege('sandbox_user', c.oid, 'INSERT,UPDATE,DELETE') AS user_write,
       c.relrowsecurity AS rls
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'sandbox' AND c.relkind = 'r' ORDER BY 1;
SELECT has_schema_privilege('public', 'sandbox', 'USAGE') AS public_usage;

-- settings
SELECT name, boot_val, unit, context FROM pg_settings
WHERE name LIKE 'cloudrun_sandbox.%' AND name NOT IN ('cloudrun_sandbox.local_root', 'cloudrun_sandbox.database')
ORDER BY name;

-- a command and its row
SELECT status, exit_code, stdout, stderr, cwd, stdout_truncated, stderr_truncated
FROM sandbox.exec('echo hello; echo oops >&2', 'regress');
SELECT status, exit_code, stdout, cwd FROM sandbox.exec('cd /tmp && export A=1; exit 4', 'regress');
SELECT name, backend, cwd, env, generation FROM sandbox.sessions;
SELECT session, command, status, exit_code, stdout, cwd FROM sandbox.executions ORDER BY id;
SELECT status, stdout FROM sandbox.exec('echo "$A $B"', 'regress', env => '{"B": "2"}');
SELECT env FROM sandbox.sessions WHERE name = 'regress';

-- argument errors
SELECT * FROM sandbox.exec(NULL);
SELECT * FROM sandbox.exec('');
SELECT * FROM sandbox.exec('true', NULL);
SELECT * FROM sandbox.exec('true', '../etc');
SELECT * FROM sandbox.exec('true', 'has space');
SELECT * FROM sandbox.exec('true', repeat('x', 64));
SELECT * FROM sandbox.exec('true', 'regress', timeout => '-1 second');
SELECT * FROM sandbox.exec('true', 'regress', timeout => '2 days');
SELECT * FROM sandbox.exec('true', 'regress', env => '[1, 2]');
SELECT * FROM sandbox.exec('true', 'regress', env => '{"A-B": "x"}');
SELECT * FROM sandbox.exec('true', 'regress', env => '{"A": 1}');

-- sessions
SELECT name, backend, cwd, env, generation FROM sandbox.create_session('made', env => '{"X": "1"}');
SELECT name FROM sandbox.create_session('made');
SELECT name FROM sandbox.create_session('made', if_not_exists => true);
SELECT name FROM sandbox.create_session('other', backend => 'nowhere');
SELECT stdout FROM sandbox.exec('echo $X', 'made');
SELECT sandbox.drop_session('made');
SELECT sandbox.drop_session('made');
SELECT sandbox.drop_session('made', if_exists => true);
SELECT sandbox.sync('nope');
UPDATE sandbox.sessions SET cwd = '/wrong', env = '{}' WHERE name = 'regress';
SELECT sandbox.sync('regress');
SELECT name, cwd, env FROM sandbox.sessions ORDER BY name;
SELECT sandbox.sync();

-- superuser-only settings
CREATE ROLE regress_sandbox_plain;
SET ROLE regress_sandbox_plain;
SET cloudrun_sandbox.local_root = '/tmp';
SET cloudrun_sandbox.local_network = on;
SET cloudrun_sandbox.max_output_bytes = '1GB';
SET cloudrun_sandbox.default_timeout = '10s';
SELECT * FROM sandbox.exec('true');
RESET ROLE;
DROP ROLE regress_sandbox_plain;

SELECT sandbox.drop_session('regress');
DROP EXTENSION cloudrun_sandbox;
