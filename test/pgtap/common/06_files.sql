-- File operations: done by the executor inside the sandbox, never through a
-- shell; paths relative to the session's cwd and confined to /workspace and
-- /tmp; errors with documented SQLSTATEs; exact bytes both ways; files
-- shared with sandbox.exec() (on the cloud backend that proves the
-- workspace snapshot and state.json are updated).
-- Runs as: tap (sandbox_user only), and as alice, bob (sandbox_user only) and
-- carol (nothing) through SET ROLE.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(61);
SELECT sandbox.drop_session('files', if_exists => true);
SET ROLE alice;
SELECT sandbox.drop_session('files_alice', if_exists => true);
RESET ROLE;

-- write, read, ranges, append
SELECT is(sandbox.file_write('notes/a.txt', E'one\ntwo\nthree\n', session => 'files'), 14::bigint,
		  'file_write returns the bytes written (creating the parent directory)');
SELECT is(sandbox.file_read('notes/a.txt', session => 'files'), E'one\ntwo\nthree\n',
		  'file_read returns what file_write wrote');
SELECT is(sandbox.file_read('notes/a.txt', 2, 3, session => 'files'), E'two\nthree\n',
		  'file_read of lines 2 to 3 (numbered from 1, both ends inclusive)');
SELECT is(sandbox.file_read('notes/a.txt', start_line => 3, session => 'files'), E'three\n',
		  'file_read from start_line to the end');
SELECT is(sandbox.file_read('notes/a.txt', end_line => 1, session => 'files'), E'one\n',
		  'file_read from the start to end_line');
SELECT is(sandbox.file_read('notes/a.txt', 7, 9, session => 'files'), '',
		  'file_read of lines past the end is empty');
SELECT is(sandbox.file_write('notes/a.txt', 'four', append => true, trailing_newline => true,
							 session => 'files'), 5::bigint,
		  'file_write with append and trailing_newline counts the newline');
SELECT sandbox.file_write('notes/b.txt', 'x', session => 'files');
SELECT is(sandbox.file_write('notes/b.txt', 'y', append => true, leading_newline => true,
							 trailing_newline => true, session => 'files'), 3::bigint,
		  'file_write with append, leading_newline and trailing_newline');
SELECT is(sandbox.file_read('notes/b.txt', session => 'files'), E'x\ny\n',
		  'appending keeps what was there and adds the newlines');
SELECT is(sandbox.file_write('notes/b.txt', 'z', session => 'files'), 1::bigint,
		  'file_write without append replaces the file');

-- exists, delete
SELECT ok(sandbox.file_exists('notes/b.txt', 'files'), 'file_exists is true for a file');
SELECT ok(sandbox.file_exists('notes', 'files'), 'file_exists is true for a directory');
SELECT is(sandbox.file_delete('notes/b.txt', 'files'), true, 'file_delete returns true when it deleted');
SELECT ok(NOT sandbox.file_exists('notes/b.txt', 'files'), 'file_exists is false after file_delete');
SELECT is(sandbox.file_delete('notes/b.txt', 'files'), false,
		  'file_delete of a missing file returns false, not an error');
SELECT throws_ok($$SELECT sandbox.file_delete('notes', 'files')$$, '42809',
				 'directory "/workspace/notes" is not empty',
				 'file_delete of a non-empty directory: wrong_object_type');

-- shared with exec, both ways; relative paths follow the session's cwd
SELECT is((SELECT stdout FROM sandbox.exec('cat notes/a.txt', 'files')), E'one\ntwo\nthree\nfour\n',
		  'a file written by file_write is seen by a later exec');
SELECT is((SELECT cwd FROM sandbox.exec('mkdir -p src/lib && printf "int main;\n" > src/main.c && '
										'printf x > src/lib/util.c && echo readme > README.md && cd src',
										'files')), '/workspace/src', 'exec writes files and moves to src');
SELECT is(sandbox.file_read('main.c', session => 'files'), E'int main;\n',
		  'a file written by exec is read by file_read, relative to the session''s cwd');
SELECT is((SELECT cwd FROM sandbox.sessions WHERE name = 'files'), '/workspace/src',
		  'file operations leave the session''s cwd alone');

-- list
SELECT results_eq($$SELECT path, type FROM sandbox.file_list('/workspace', session => 'files')$$,
				  $$VALUES ('/workspace/README.md', 'file'), ('/workspace/notes', 'directory'),
						   ('/workspace/src', 'directory')$$,
				  'file_list lists one directory, by name');
SELECT results_eq($$SELECT path FROM sandbox.file_list('..', true, 'files')$$,
				  $$VALUES ('/workspace/README.md'), ('/workspace/notes'), ('/workspace/notes/a.txt'),
						   ('/workspace/src'), ('/workspace/src/lib'), ('/workspace/src/lib/util.c'),
						   ('/workspace/src/main.c')$$,
				  'file_list with recursive lists the whole tree');
SELECT is((SELECT size FROM sandbox.file_list('/workspace/notes', session => 'files')), 19::bigint,
		  'file_list reports sizes');
SELECT ok((SELECT bool_and(modified_at BETWEEN now() - interval '1 hour' AND now() + interval '1 hour'
						   AND mode BETWEEN 1 AND 4095)
		   FROM sandbox.file_list('/workspace', true, 'files')),
		  'file_list reports modification times and permission bits');

-- search, replace, find
SELECT results_eq($$SELECT line_number, line FROM sandbox.file_search('../notes/a.txt', 't(wo|hree)$', 'files')$$,
				  $$VALUES (2, 'two'), (3, 'three')$$,
				  'file_search returns the matching lines with their numbers (POSIX ERE)');
SELECT is(sandbox.file_replace('/workspace/notes/a.txt', 'o', '0', 'files'), 3,
		  'file_replace returns how many occurrences it replaced');
SELECT is(sandbox.file_read('/workspace/notes/a.txt', session => 'files'), E'0ne\ntw0\nthree\nf0ur\n',
		  'file_replace replaced them all, literally');
SELECT is(sandbox.file_replace('/workspace/notes/a.txt', '.*', 'x', 'files'), 0,
		  'file_replace does not treat old_str as a pattern');
SELECT results_eq($$SELECT * FROM sandbox.file_find('/workspace', '*.c', 'files')$$,
				  $$VALUES ('/workspace/src/lib/util.c'), ('/workspace/src/main.c')$$,
				  'file_find matches file names against a glob, recursively');

-- content that would break a shell command round-trips exactly
SELECT is(sandbox.file_write('/workspace/special.txt',
							 E'q''s "d" $HOME `id` $(id) \\n \\\\ back\\slash\n''; rm -rf /; ''\n\ttab', session => 'files'),
		  octet_length(E'q''s "d" $HOME `id` $(id) \\n \\\\ back\\slash\n''; rm -rf /; ''\n\ttab')::bigint,
		  'file_write of quotes, $, backticks, backslashes and newlines');
SELECT is(sandbox.file_read('/workspace/special.txt', session => 'files'),
		  E'q''s "d" $HOME `id` $(id) \\n \\\\ back\\slash\n''; rm -rf /; ''\n\ttab',
		  'file_read returns them exactly');
SELECT is((SELECT stdout FROM sandbox.exec('cat /workspace/special.txt', 'files')),
		  E'q''s "d" $HOME `id` $(id) \\n \\\\ back\\slash\n''; rm -rf /; ''\n\ttab',
		  'and the sandbox sees exactly those bytes');
SELECT is((SELECT stdout FROM sandbox.exec('ls / | grep -c -x -e bin -e usr -e workspace', 'files')), E'3\n',
		  'nothing was run: the sandbox''s / is intact');

-- errors and their SQLSTATEs
SELECT throws_ok($$SELECT sandbox.file_read('missing.txt', session => 'files')$$, '58P01',
				 'file "/workspace/src/missing.txt" does not exist',
				 'a missing file: undefined_file, naming the path');
SELECT throws_ok($$SELECT * FROM sandbox.file_list('nowhere', session => 'files')$$, '58P01',
				 'directory "/workspace/src/nowhere" does not exist',
				 'file_list of a missing directory: undefined_file');
SELECT throws_ok($$SELECT sandbox.file_read('/workspace/notes', session => 'files')$$, '42809',
				 '"/workspace/notes" is a directory, not a file',
				 'a directory where a file is expected: wrong_object_type');
SELECT throws_ok($$SELECT * FROM sandbox.file_list('main.c', session => 'files')$$, '42809',
				 '"/workspace/src/main.c" is not a directory',
				 'a file where a directory is expected: wrong_object_type');
SELECT throws_ok($$SELECT sandbox.file_read('../../etc/passwd', session => 'files')$$, '42501',
				 'path "/etc/passwd" is outside the sandbox',
				 'a path escaping with ../..: insufficient_privilege');
SELECT throws_ok($$SELECT sandbox.file_read('/etc/passwd', session => 'files')$$, '42501',
				 'path "/etc/passwd" is outside the sandbox',
				 'an absolute path outside /workspace and /tmp: insufficient_privilege');
SELECT throws_ok($$SELECT sandbox.file_write('../../../root/x', 'x', session => 'files')$$, '42501',
				 'path "/root/x" is outside the sandbox',
				 'file_write outside the sandbox: insufficient_privilege');
SELECT sandbox.exec('ln -s /etc /workspace/etc-link', 'files');
SELECT throws_ok($$SELECT sandbox.file_read('/workspace/etc-link/passwd', session => 'files')$$, '42501',
				 'path "/workspace/etc-link/passwd" leads outside the sandbox through a symbolic link',
				 'a symbolic link out of the sandbox: insufficient_privilege');
SELECT throws_ok($$SELECT * FROM sandbox.file_search('/workspace/notes/a.txt', 'a(b', 'files')$$, '2201B',
				 NULL, 'an invalid regular expression: invalid_regular_expression');
SELECT throws_ok($$SELECT sandbox.file_read('main.c', 3, 2, 'files')$$, '22023', NULL,
				 'start_line after end_line: invalid_parameter_value');
SELECT test.set_setting('cloudrun_sandbox.max_transfer_bytes', '1024');
SELECT throws_ok($$SELECT sandbox.file_upload('big.bin', convert_to(repeat('x', 2000), 'UTF8'), 'files')$$,
				 '54000', NULL, 'an upload over max_transfer_bytes: program_limit_exceeded');
SELECT sandbox.exec('head -c 5000 /dev/zero > /workspace/zeros', 'files');
SELECT throws_ok($$SELECT sandbox.file_download('/workspace/zeros', 'files')$$, '54000',
				 'file "/workspace/zeros" is 5000 bytes, more than the transfer limit of 1024 bytes',
				 'a download over max_transfer_bytes: program_limit_exceeded');
SELECT test.set_setting('cloudrun_sandbox.max_transfer_bytes', NULL);

-- bytes: invalid UTF-8, and 10 MB of random bytes both ways
SELECT sandbox.exec($$printf 'ok \377\376 end\n' > bad.txt$$, 'files');
SELECT is(sandbox.file_read('bad.txt', session => 'files'), E'ok \uFFFD\uFFFD end\n',
		  'file_read repairs invalid UTF-8 to U+FFFD instead of failing');
SELECT is(sandbox.file_download('bad.txt', 'files'), '\x6f6b20fffe20656e640a'::bytea,
		  'file_download returns the exact bytes');
CREATE TEMP TABLE blob AS
	SELECT decode(string_agg(md5(random()::text || i), ''), 'hex') AS data FROM generate_series(1, 655360) i;
SELECT is(sandbox.file_upload('/workspace/blob.bin', (SELECT data FROM blob), 'files'), 10485760::bigint,
		  'file_upload of 10 MB of random bytes returns the size');
SELECT is((SELECT split_part(stdout, ' ', 1) FROM sandbox.exec('sha256sum /workspace/blob.bin', 'files')),
		  (SELECT encode(sha256(data), 'hex') FROM blob),
		  'the sandbox has exactly those bytes');
SELECT ok(sandbox.file_download('/workspace/blob.bin', 'files') = (SELECT data FROM blob),
		  'file_download returns the identical 10 MB');
SELECT sandbox.exec('head -c 10485760 /dev/urandom > r.bin', 'files');
SELECT is(encode(sha256(sandbox.file_download('r.bin', 'files')), 'hex'),
		  (SELECT split_part(stdout, ' ', 1) FROM sandbox.exec('sha256sum r.bin', 'files')),
		  'file_download of 10 MB a command wrote matches its sha256sum');

-- a listing too large to travel inside a result document (on the cloud: a transfer object)
SELECT sandbox.exec('mkdir /workspace/many && (cd /workspace/many && seq -w 1 7000 | '
					'sed s/^/a-rather-long-file-name-so-that-the-listing-grows-past-a-megabyte-with-fewer-files-/ '
					'| xargs touch)', 'files');
SELECT is((SELECT count(*)::int || ' ' || min(path) || ' ' || max(path)
		   FROM sandbox.file_list('/workspace/many', session => 'files')),
		  '7000 /workspace/many/a-rather-long-file-name-so-that-the-listing-grows-past-a-megabyte-with-fewer-files-0001 '
		  '/workspace/many/a-rather-long-file-name-so-that-the-listing-grows-past-a-megabyte-with-fewer-files-7000',
		  'file_list of 7000 files (over a megabyte of listing) returns them all');

-- bookkeeping: no history rows, nothing left behind, the mirror in step
SELECT is((SELECT count(*)::int FROM sandbox.executions
			WHERE session = 'files' AND submitted_at >= (SELECT created_at FROM sandbox.sessions WHERE name = 'files')), 11,
		  'file operations write no sandbox.executions rows (only the 11 exec calls did)');
SELECT is(CASE WHEN test.cloud() THEN (SELECT count(*)::int FROM test.emu('list',
			current_setting('cloudrun_sandbox.bucket'), test.object_prefix('files') || 'transfer/'))
		  ELSE 0 END, 0, 'no transfer objects are left behind');
SELECT is((SELECT generation FROM sandbox.sessions WHERE name = 'files'), test.state_generation('files'),
		  'sandbox.sessions shows the generation of state.json after file operations');
SET ROLE alice;
SELECT is(sandbox.file_write('mine.txt', 'a', session => 'files_alice'), 1::bigint,
		  'alice writes a file in a session of hers, made by its first use');
RESET ROLE;
SET ROLE bob;
SELECT is(sandbox.file_exists('mine.txt', session => 'files_alice'), false,
		  'bob''s session called files_alice is his own: alice''s file is not in it');
SELECT is(sandbox.file_delete('mine.txt', 'files_alice'), false, 'nor can he delete it');
SELECT sandbox.drop_session('files_alice');
RESET ROLE;
SET ROLE alice;
SELECT is(sandbox.file_read('mine.txt', session => 'files_alice'), 'a', 'alice''s file is still there');
RESET ROLE;
SET ROLE carol;
SELECT throws_ok($$SELECT sandbox.file_exists('x')$$, '42501', NULL,
				 'a role without sandbox_user cannot call the file functions');
RESET ROLE;
SELECT ok(NOT has_function_privilege('carol', 'sandbox.file_read(text, integer, integer, text)', 'EXECUTE')
		  AND has_function_privilege('alice', 'sandbox.file_write(text, text, boolean, boolean, boolean, text)', 'EXECUTE'),
		  'file functions are for sandbox_user, not PUBLIC');

SELECT sandbox.drop_session('files');
SET ROLE alice;
SELECT sandbox.drop_session('files_alice');
RESET ROLE;
SELECT * FROM finish();
