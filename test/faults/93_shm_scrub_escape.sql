-- Review: a warm sandbox's /dev/shm is to be emptied after each command
-- (scrub.c), but empty_dir stops descending at depth 64, and does not make
-- /dev/shm itself writable again: a file 65 directories down, or under a
-- /dev/shm the command made read-only, survives into the next command.
-- Passes only when the next command finds /dev/shm empty.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(4);
SELECT test.wait_worker();
SET ROLE alice;
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['f93a', 'f93b']) s;
SELECT sandbox.submit($$d=/dev/shm; for i in $(seq 66); do d=$d/d; done; mkdir -p $d && head -c 8388608 /dev/zero > $d/kept && echo made$$, 'f93a') AS id \gset
SELECT is((SELECT stdout FROM sandbox.wait(:id)), E'made\n', 'a command leaves 8 MB 66 directories down in /dev/shm');
SELECT sandbox.submit('du -sm /dev/shm | cut -f1', 'f93a') AS id \gset
SELECT is((SELECT stdout FROM sandbox.wait(:id)), E'0\n', 'the next command in the warm sandbox finds /dev/shm empty');
SELECT sandbox.submit('head -c 8388608 /dev/zero > /dev/shm/kept; chmod 555 /dev/shm && echo made', 'f93b') AS id \gset
SELECT is((SELECT stdout FROM sandbox.wait(:id)), E'made\n', 'a command leaves a file under a read-only /dev/shm');
SELECT sandbox.submit('ls -A /dev/shm | wc -l', 'f93b') AS id \gset
SELECT is((SELECT stdout FROM sandbox.wait(:id)), E'0\n', 'the next command finds /dev/shm empty');
SELECT sandbox.drop_session(s) FROM unnest(ARRAY['f93a', 'f93b']) s;
RESET ROLE;
SELECT * FROM finish();
