#!/usr/bin/env bash
# test/upgrade.sh: ALTER EXTENSION cloudrun_sandbox UPDATE from 0.1.0 with data
# in place.  Builds the 0.1.0 release (from git history) into a private copy of
# PostgreSQL, lets it make a session with files, environment, history and a
# running background process as an ordinary role, stops the server, installs
# this tree over it, starts again, updates the extension and checks that the
# role's session, history and background process still work.  Starts and stops
# its own cluster; prints TAP and "N passed, N failed".
set -uo pipefail
source "$(dirname "$0")/lib.sh"
set +e

# The last commit of release 0.1.0.
OLD_COMMIT=${OLD_COMMIT:-0e2beb1}

finish() {
	tap_finish
	exit $?
}

work=$(mktemp -d /tmp/cloudrun_sandbox_upgrade.XXXXXX)
chmod 755 "$work"
cleanup() {
	cluster_stop
	pkill -f 'sleep 876' 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

# A relocated copy of this PostgreSQL, so that installing 0.1.0 touches nothing else.
root=$work/root
for d in "$(dirname "$("$PG_CONFIG" --bindir)")" "$(dirname "$("$PG_CONFIG" --sharedir)")/$(basename "$("$PG_CONFIG" --sharedir)")"; do
	mkdir -p "$root$(dirname "$d")"
	cp -a "$d" "$root$(dirname "$d")/"
done
inc=$("$PG_CONFIG" --includedir)
mkdir -p "$root$(dirname "$inc")"
ln -s "$(readlink -f "$inc")" "$root$inc"
NEW_PG_CONFIG=$PG_CONFIG
PG_CONFIG=$root$("$NEW_PG_CONFIG" --bindir)/pg_config
chmod -R a+rX "$work"

mkdir -p "$work/old"
if ! git -C "$ROOT" archive "$OLD_COMMIT" | tar -x -C "$work/old"; then
	check 1 "the 0.1.0 sources ($OLD_COMMIT) are in git history"
	finish
fi
make -C "$work/old" -s PG_CONFIG="$PG_CONFIG" >/dev/null 2>&1 &&
	make -C "$work/old" -s PG_CONFIG="$PG_CONFIG" install >/dev/null 2>&1
check $? "0.1.0 builds and installs"

# A cluster of its own, even when called with another one's settings (test/run.sh).
unset PGPORT PGHOST PGDATA CLUSTER_DIR EMULATOR_PID
WORKER_DB=postgres cluster_start
trap cleanup EXIT
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
q -c "CREATE EXTENSION cloudrun_sandbox" -c "CREATE ROLE upg_alice LOGIN" -c "GRANT sandbox_user TO upg_alice"
check $? "0.1.0 is created"
check "$([ "$(q -c "SELECT extversion FROM pg_extension WHERE extname = 'cloudrun_sandbox'")" = 0.1.0 ] && echo 0 || echo 1)" "it is version 0.1.0"
qa() { q -U upg_alice "$@"; }
qa -c "SELECT sandbox.exec('cd /tmp; export KEEP=kept; echo hello > /workspace/f', 'legacy')" >/dev/null &&
	qa -c "SELECT sandbox.file_write('g.txt', 'written', session => 'legacy')" >/dev/null &&
	qa -c "SELECT sandbox.exec('echo two', 'legacy')" >/dev/null
check $? "an ordinary role makes a session with files, environment and history on 0.1.0"
bg=$(qa -c "SELECT sandbox.start_background('exec sleep 876', 'legacy')")
for _ in $(seq 100); do pgrep -f 'sleep 876' >/dev/null && break; sleep 0.1; done
pgrep -f 'sleep 876' >/dev/null
check $? "and a background process that runs"
history=$(q -c "SELECT count(*) FROM sandbox.executions WHERE session = 'legacy'")

# Stop 0.1.0 and put this tree in its place.
as_pg "$("$PG_CONFIG" --bindir)/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
make -C "$ROOT" -s PG_CONFIG="$PG_CONFIG" >/dev/null && make -C "$ROOT" -s PG_CONFIG="$PG_CONFIG" install >/dev/null
check $? "this version installs over it"
as_pg "$("$PG_CONFIG" --bindir)/pg_ctl" -D "$PGDATA" -l "$CLUSTER_DIR/server.log" -w start >/dev/null
check $? "the server starts with the new library"
for _ in $(seq 100); do grep -q 'worker waits: the extension is at version 0.1.0' "$CLUSTER_DIR/server.log" && break; sleep 0.1; done
grep -q 'worker waits: the extension is at version 0.1.0' "$CLUSTER_DIR/server.log"
check $? "the worker waits for the update and says why"

# A call through the 0.1.0 definitions (fewer arguments than this library reads) is refused, not a crash.
out=$(qa -c "SELECT stdout FROM sandbox.exec('echo old', 'legacy')" 2>&1)
check "$(case "$out" in *"older than its library"*) echo 0 ;; *) echo "# got: $out" >&2; echo 1 ;; esac)" \
	"before the update, exec through the old definitions is refused with a hint to update"
check "$(q -c "SELECT 1" >/dev/null 2>&1 && echo 0 || echo 1)" "and the server is still up"
q -c "ALTER EXTENSION cloudrun_sandbox UPDATE"
check $? "ALTER EXTENSION cloudrun_sandbox UPDATE succeeds"
want=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$ROOT/cloudrun_sandbox.control")
check "$([ "$(q -c "SELECT extversion FROM pg_extension WHERE extname = 'cloudrun_sandbox'")" = "$want" ] && echo 0 || echo 1)" "it is version $want (the control file's)"
check "$([ "$(q -c "SELECT runners FROM sandbox.worker_status()")" = 0 ] && q -c "SELECT count(*) FROM sandbox.session_runners" >/dev/null && echo 0 || echo 1)" \
	"[runner] worker_status() counts session runners; sandbox.session_runners is there"
check "$([ "$(q -c "SELECT storage_key FROM sandbox.sessions WHERE name = 'legacy'")" = legacy ] && echo 0 || echo 1)" \
	"the session keeps its storage"
out=$(qa -c "SELECT stdout FROM sandbox.exec('echo \$KEEP; pwd; cat /workspace/f', 'legacy')")
check "$([ "$out" = $'kept\n/tmp\nhello' ] && echo 0 || { echo "# got: $out" >&2; echo 1; })" \
	"the role's session keeps its cwd, environment and files"
check "$([ "$(qa -c "SELECT sandbox.file_read('g.txt', session => 'legacy')")" = written ] && echo 0 || echo 1)" \
	"and its file operations"
check "$([ "$(qa -c "SELECT count(*) FROM sandbox.executions WHERE session = 'legacy'")" -gt "$history" ] && echo 0 || echo 1)" \
	"the role sees its 0.1.0 history (and the new command)"
check "$([ "$(qa -c "SELECT count(*) FROM sandbox.executions WHERE session = 'legacy' AND bytes IS DISTINCT FROM octet_length(command) + coalesce(octet_length(stdout), 0) + coalesce(octet_length(stderr), 0) + coalesce(octet_length(error), 0) + coalesce(octet_length(call_env::text), 0) + coalesce(octet_length(cwd), 0) + coalesce(octet_length(remote_name), 0)")" = 0 ] && echo 0 || echo 1)" \
	"[history] each of its rows counts its bytes, the 0.1.0 ones included"
check "$([ "$(qa -c "SELECT count(*) FROM sandbox.list_background_processes('legacy') WHERE pid = $bg AND running")" = 1 ] && echo 0 || echo 1)" \
	"the role lists its 0.1.0 background process as running"
check "$([ "$(qa -c "SELECT killed_count FROM sandbox.kill_background_process($bg)")" = 1 ] && echo 0 || echo 1)" \
	"and can kill it"
for _ in $(seq 100); do pgrep -f 'sleep 876' >/dev/null || break; sleep 0.1; done
! pgrep -f 'sleep 876' >/dev/null
check $? "it is gone"
id=$(qa -c "SELECT sandbox.submit('echo queued', 'legacy')")
check "$([ "$(qa -c "SELECT stdout FROM sandbox.wait($id, '30 s')")" = queued ] && echo 0 || echo 1)" \
	"the worker runs the role's queued commands after the update"
check "$([ "$(qa -c "SELECT stdout FROM sandbox.exec('echo new')")" = new ] && echo 0 || echo 1)" \
	"a new session of the role works"
finish
