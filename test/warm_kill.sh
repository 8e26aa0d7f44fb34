#!/usr/bin/env bash
# test/warm_kill.sh: issue 12, a backend killed with SIGKILL in the middle of a
# command that runs in its session's warm sandbox.  The postmaster then restarts
# every process (the background worker, which owns the warm sandboxes, too): no
# process of the killed command may be left, the old warm sandbox is gone, the
# next call works, and the session gets a warm sandbox again.  Starts a throwaway
# cluster of its own (the extension must be installed for $PG_CONFIG, as
# test/run.sh does first); the calls run as alice (only sandbox_user), the kill
# from the shell.  Prints TAP and "N passed, N failed".
set -uo pipefail
source "$(dirname "$0")/lib.sh"
set +e

# A cluster of our own: never the caller's port or data directory.
unset PGPORT PGHOST PGDATA CLUSTER_DIR EMULATOR_PID
WORKER_DB=sandbox_tap cluster_start
tap_setup >/dev/null

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d sandbox_tap "$@"; }
qa() { q -U alice "$@"; }
# warm_pid prints the pid of alice's warm sandbox of session $1 (other than $2), waiting up to 15 s.
warm_pid() {
	local p
	for _ in $(seq 150); do
		p=$(qa -c "SELECT pid FROM sandbox.warm_sandboxes WHERE session = '$1' AND pid <> ${2:-0}" 2>/dev/null)
		[ -n "$p" ] && { echo "$p"; return 0; }
		sleep 0.1
	done
	return 1
}
# count_procs counts the host's processes whose whole command line is $1.
count_procs() { pgrep -c -x -f -- "$1" 2>/dev/null || true; }
# wait_count waits up to $3 seconds until count_procs $1 is $2.
wait_count() {
	for _ in $(seq $(($3 * 10))); do
		[ "$(count_procs "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

# Calls made before the worker has taken over the pool (it has just started,
# with the extension) run cold and ask for nothing: call until one is warm.
for _ in $(seq 30); do
	qa -c "SELECT sandbox.exec('true', 'wk')" >/dev/null
	[ -n "$(qa -c "SELECT pid FROM sandbox.warm_sandboxes WHERE session = 'wk'" 2>/dev/null)" ] && break
	sleep 0.5
done
w=$(warm_pid wk)
check $? "the session has a warm sandbox (sandbox.warm_sandboxes)"
served0=$(qa -c "SELECT commands_served FROM sandbox.warm_sandboxes WHERE session = 'wk'" 2>/dev/null)

qa -c "SELECT sandbox.exec('sleep 1207', 'wk')" >/dev/null 2>&1 &
client=$!
wait_count 'sleep 1207' 1 10
check $? "a long command runs (so the next checks can fail)"
[ -n "$w" ] && [ "$(qa -c "SELECT commands_served FROM sandbox.warm_sandboxes WHERE session = 'wk'" 2>/dev/null)" = "$served0" ] &&
	[ "$(qa -c "SELECT pid FROM sandbox.warm_sandboxes WHERE session = 'wk'" 2>/dev/null)" = "$w" ]
check $? "in the warm sandbox (same pid, not yet counted as served)"
backend=$(q -c "SELECT pid FROM pg_stat_activity WHERE query LIKE '%sleep 1207%' AND pid <> pg_backend_pid()")
kill -9 "$backend"
wait "$client" 2>/dev/null
# The postmaster restarts every process; wait until it accepts connections again.
for _ in $(seq 100); do q -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done

wait_count 'sleep 1207' 0 10
check $? "after kill -9 of the backend, no process of the command is left"
gone=1
for _ in $(seq 100); do
	[ -n "$w" ] && ! kill -0 "$w" 2>/dev/null && { gone=0; break; }
	sleep 0.1
done
check $gone "the old warm sandbox ($w) is gone"
[ "$(qa -c "SELECT stdout FROM sandbox.exec('echo alive', 'wk')" 2>/dev/null)" = alive ]
check $? "the next call works"
w2=$(warm_pid wk "${w:-0}")
check $? "the session gets a new warm sandbox ($w2)"
n1=$(qa -c "SELECT commands_served FROM sandbox.warm_sandboxes WHERE session = 'wk'" 2>/dev/null)
[ "$(qa -c "SELECT stdout FROM sandbox.exec('echo warm-again', 'wk')" 2>/dev/null)" = warm-again ] &&
	[ -n "$n1" ] && [ "$(qa -c "SELECT commands_served FROM sandbox.warm_sandboxes WHERE session = 'wk'")" = $((n1 + 1)) ]
check $? "which serves the next call"

# The same with a command that left a setsid daemon (it must die with the restart too).
qa -c "SELECT sandbox.exec('setsid sleep 1208 >/dev/null 2>&1 </dev/null & sleep 1209', 'wk')" >/dev/null 2>&1 &
client=$!
wait_count 'sleep 1209' 1 10 && wait_count 'sleep 1208' 1 5
check $? "a command with a setsid daemon runs"
kill -9 "$(q -c "SELECT pid FROM pg_stat_activity WHERE query LIKE '%sleep 1209%' AND pid <> pg_backend_pid()")"
wait "$client" 2>/dev/null
for _ in $(seq 100); do q -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done
wait_count 'sleep 1209' 0 10 && wait_count 'sleep 1208' 0 5
check $? "after kill -9 of its backend, neither the command nor its daemon is left"
[ "$(qa -c "SELECT stdout FROM sandbox.exec('echo alive', 'wk')" 2>/dev/null)" = alive ]
check $? "the next call works"

qa -c "SELECT sandbox.drop_session('wk')" >/dev/null
tap_finish
