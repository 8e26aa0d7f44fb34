#!/usr/bin/env bash
# test/security_lifecycle.sh: security finding 11, background processes stop
# with the server and with DROP EXTENSION, but survive a restart of the
# background worker.  Starts a throwaway cluster of its own (the extension must
# be installed for $PG_CONFIG, as test/run.sh does first), starts background
# processes as alice (a role with only sandbox_user), stops the server in fast
# and immediate mode, SIGKILLs the worker, and drops the extension, each time
# counting the processes on the host by a marker in their command line.
# Prints TAP and "N passed, N failed".
set -uo pipefail
source "$(dirname "$0")/lib.sh"
set +e


MARK="sblife$$x$RANDOM"
# A cluster of our own: never the caller's port or data directory.
unset PGPORT PGHOST PGDATA CLUSTER_DIR EMULATOR_PID
WORKER_DB=sandbox_tap cluster_start
trap cleanup EXIT
tap_setup >/dev/null
bindir=$("$PG_CONFIG" --bindir)

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d sandbox_tap "$@"; }
qa() { q -U alice "$@"; }
procs() { pgrep -c -f -- "$MARK" 2>/dev/null || true; }
# cleanup kills what a failed run left behind (processes with our marker), then the cluster.
cleanup() {
	pgrep -f -- "$MARK" | xargs -r kill -KILL 2>/dev/null
	cluster_stop
}
# wait_procs waits up to $2 seconds until procs() is $1; returns whether it got there.
wait_procs() {
	for _ in $(seq $(($2 * 10))); do
		[ "$(procs)" = "$1" ] && return 0
		sleep 0.1
	done
	[ "$(procs)" = "$1" ]
}
# worker_pid prints the worker's pid (from pg_stat_activity: also without the extension).
worker_pid() { q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'cloudrun_sandbox worker'" 2>/dev/null; }
# wait_worker waits for a running worker other than pid $1 (if given).
wait_worker() {
	local p
	for _ in $(seq 300); do
		p=$(worker_pid)
		[ -n "$p" ] && [ "$p" != "${1:-}" ] && return 0
		sleep 0.1
	done
	return 1
}
# start_bg starts, as alice, a background process that sleeps; prints its handle.
start_bg() { qa -c "SELECT sandbox.start_background('sleep $1; : $MARK', '$2')"; }
# wait_running waits until alice lists $1 background processes as running.
wait_running() {
	for _ in $(seq 100); do
		[ "$(qa -c "SELECT count(*) FROM sandbox.list_background_processes() WHERE running" 2>/dev/null)" = "$1" ] && return 0
		sleep 0.1
	done
	return 1
}
pg_ctl_() { as_pg "$bindir/pg_ctl" -D "$PGDATA" -l "$CLUSTER_DIR/server.log" -w "$@" >/dev/null; }
# wait_connect waits until the server accepts connections again.
wait_connect() {
	for _ in $(seq 300); do
		q -c "SELECT 1" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

wait_worker
check $? "the worker is running"

# --- Two background processes of alice's, then pg_ctl stop -m fast.
start_bg 7001 life1 >/dev/null
start_bg 7002 life2 >/dev/null
wait_running 2 && wait_procs 2 10
check $? "alice's two background processes run"

# The postmaster-death pipe: the sandbox holds its read end, never its write end
# (else it would never see the postmaster go).  Its inode is a pipe the postmaster
# holds for writing and the worker for reading.
if [ "$(id -u)" = 0 ]; then
	pm=$(head -1 "$PGDATA/postmaster.pid")
	wp=$(worker_pid)
	# pipe_fds PID prints "inode accessmode" for each pipe descriptor of a process.
	pipe_fds() {
		local fd link
		for fd in /proc/"$1"/fd/*; do
			link=$(readlink "$fd" 2>/dev/null) || continue
			case "$link" in pipe:*) ;; *) continue ;; esac
			echo "${link//[^0-9]/} $(( $(awk '/^flags:/ {print "0" $2}' "/proc/$1/fdinfo/${fd##*/}") & 3 ))"
		done
	}
	death=$(comm -12 <(pipe_fds "$pm" | awk '$2 == 1 {print $1}' | sort -u) \
		<(pipe_fds "$wp" | awk '$2 == 0 {print $1}' | sort -u) | head -1)
	init=$(q -c "SELECT host_pid FROM sandbox.background_processes WHERE session = 'life1' AND status = 'running'")
	ns=$(readlink "/proc/$init/ns/pid")
	# bwrap, and every process of the sandbox's PID namespace.
	members=$(ps -o ppid= -p "$init")
	for d in /proc/[0-9]*; do
		[ "$(readlink "$d/ns/pid" 2>/dev/null)" = "$ns" ] && members="$members ${d#/proc/}"
	done
	readers=0
	writers=0
	for p in $members; do
		while read -r ino mode; do
			[ "$ino" = "$death" ] || continue
			if [ "$mode" = 0 ]; then readers=$((readers + 1)); else writers=$((writers + 1)); fi
		done < <(pipe_fds "$p")
	done
	[ -n "$death" ] && [ "$readers" -ge 1 ] && [ "$writers" = 0 ]
	check $? "the sandbox holds the postmaster-death pipe for reading only (pipe ${death:-?}: $readers readers, $writers writers)"
else
	check 1 "the sandbox holds the postmaster-death pipe for reading only (run as root: reading the sandbox's descriptors needs it)"
fi

pg_ctl_ -m fast stop
wait_procs 0 10
check $? "pg_ctl stop -m fast leaves none of them running ($(procs) left)"

pg_ctl_ start
wait_connect
wait_worker
check $? "the server and the worker start again"
wait_running 0
check $? "after the restart, alice lists them as not running"
[ "$(q -c "SELECT count(*) FROM sandbox.background_processes WHERE session IN ('life1', 'life2') AND status = 'failed' AND error LIKE '%stopped with the database server%'")" = 2 ]
check $? "they are recorded as stopped with the server"

# --- A SIGKILLed worker does not take them with it.
start_bg 7003 life1 >/dev/null
wait_running 1 && wait_procs 1 10
check $? "a new background process runs"
wp=$(worker_pid)
kill -9 "$wp"
sleep 1
wait_connect
wait_worker "$wp"
check $? "the worker restarts after SIGKILL"
sleep 1
[ "$(procs)" = 1 ] && wait_running 1
check $? "the background process outlives the worker and is still listed as running"

# --- DROP EXTENSION stops them.
start_bg 7004 life2 >/dev/null
wait_running 2 && wait_procs 2 10
check $? "two background processes run before DROP EXTENSION"
q -c "SET lock_timeout = '10s'" -c "DROP EXTENSION cloudrun_sandbox CASCADE" >/dev/null
check $? "DROP EXTENSION succeeds"
wait_procs 0 10
check $? "DROP EXTENSION leaves none of them running ($(procs) left)"
wait_worker
check $? "the worker is still running"

# --- DROP EXTENSION while the worker is down (SIGTERM: it restarts after 5 s):
# the next worker finds them from their host-side files and stops them.
q -c "CREATE EXTENSION cloudrun_sandbox" >/dev/null
wait_worker
start_bg 7005 life3 >/dev/null
wait_running 1 && wait_procs 1 10
check $? "a background process runs in the extension made again"
wp=$(worker_pid)
kill -TERM "$wp"
for _ in $(seq 50); do [ -z "$(worker_pid)" ] && break; sleep 0.1; done
q -c "DROP EXTENSION cloudrun_sandbox CASCADE" >/dev/null
[ -z "$(worker_pid)" ]
check $? "DROP EXTENSION while no worker runs"
wait_worker "$wp"
wait_procs 0 10
check $? "the next worker stops what the dropped extension left running ($(procs) left)"

# --- Dropped and made again while the worker is down: no row tracks them.
q -c "CREATE EXTENSION cloudrun_sandbox" >/dev/null
wait_worker
start_bg 7006 life3 >/dev/null
wait_running 1 && wait_procs 1 10
check $? "a background process runs"
wp=$(worker_pid)
kill -TERM "$wp"
for _ in $(seq 50); do [ -z "$(worker_pid)" ] && break; sleep 0.1; done
q -c "DROP EXTENSION cloudrun_sandbox CASCADE" -c "CREATE EXTENSION cloudrun_sandbox" >/dev/null
[ -z "$(worker_pid)" ]
check $? "DROP EXTENSION and CREATE EXTENSION while no worker runs"
wait_worker "$wp"
wait_procs 0 10
check $? "the next worker stops the processes no row tracks ($(procs) left)"

# --- pg_ctl stop -m immediate (the postmaster exits at once).
q -c "CREATE EXTENSION IF NOT EXISTS cloudrun_sandbox" >/dev/null
wait_worker
start_bg 7007 life4 >/dev/null
wait_running 1 && wait_procs 1 10
check $? "a background process runs before an immediate stop"
pg_ctl_ -m immediate stop
wait_procs 0 10
check $? "pg_ctl stop -m immediate leaves none running ($(procs) left)"

tap_finish
