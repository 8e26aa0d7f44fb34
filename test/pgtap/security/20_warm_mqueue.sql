-- review12: a POSIX message queue that a command creates lives in the IPC
-- namespace of its sandbox (mq_open needs no /dev/mqueue), which a warm
-- sandbox keeps across commands: the next command of the session must not
-- find it (a fresh sandbox would not), and it must not pin memory that no
-- rlimit of the command counts.  The attack: leave a queue with a message in
-- it, then look for it from the next command in the same warm sandbox.
-- Runs as: tap (sandbox_user only).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(4);
SELECT sandbox.drop_session('mq1', if_exists => true);

CREATE FUNCTION pg_temp.warm_pids(name text) RETURNS SETOF integer
LANGUAGE sql AS $$
	SELECT test.worker_children(regexp_replace(test.session_dir(name), '([.[\]()*+?{}|^$\\])', '\\\1', 'g')
		|| '(/fs)?/workspace .* serve --listen 3$')
$$;

-- Warm the session's sandbox first: then both commands below run in it.
SELECT sandbox.submit('true', 'mq1') AS id \gset
SELECT is((SELECT status FROM sandbox.wait(:id)), 'succeeded', 'the session has run a command');
SELECT sandbox.submit('true', 'mq1') AS id \gset
SELECT status AS ignored FROM sandbox.wait(:id) \gset
SELECT pid AS warm_pid FROM pg_temp.warm_pids('mq1') pid \gset

SELECT sandbox.submit($c$python3 -c '
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.mq_open(b"/kept", os.O_CREAT | os.O_RDWR, 0o600, None)
print("made" if fd >= 0 and libc.mq_send(fd, b"secret", 6, 0) == 0 else "failed %d" % ctypes.get_errno())
'$c$, 'mq1') AS id \gset
SELECT is((SELECT stdout FROM sandbox.wait(:id)), E'made\n', 'a command leaves a POSIX message queue with a message');

SELECT sandbox.submit($c$python3 -c '
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.mq_open(b"/kept", os.O_RDWR, 0, None)
print("found" if fd >= 0 else "gone")
'$c$, 'mq1') AS id \gset
SELECT is((SELECT stdout FROM sandbox.wait(:id)), E'gone\n',
		  'the next command in the same warm sandbox does not find it');
SELECT is((SELECT array_agg(p) FROM pg_temp.warm_pids('mq1') p), ARRAY[:warm_pid],
		  'both ran in the same warm sandbox');

SELECT sandbox.drop_session('mq1');
SELECT * FROM finish();
