#!/usr/bin/env bash
# test/worker_recovery.sh: the background worker killed with SIGKILL, the
# server restarted in immediate mode, an idle worker, and DROP EXTENSION.
# Called by test/run.sh with the test cluster and the emulator running
# (PGHOST, PGPORT, PGDATA, PG_CONFIG, EMULATOR_URL set; the worker serves
# database sandbox_tap).  Prints TAP and "N passed, N failed".
# Runs as: the superuser postgres (psql from the shell), because it is about
# crash recovery, server restarts and DROP EXTENSION, not about what a role may do.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
set +e

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d sandbox_tap "$@"; }
worker_pid() { q -c "SELECT pid FROM sandbox.worker_status() WHERE running" 2>/dev/null; }
wait_worker() {
	for _ in $(seq 300); do
		[ -n "$(worker_pid)" ] && return 0
		sleep 0.1
	done
	return 1
}
# wait_idle waits until no execution of sessions LIKE $1 is unfinished.
wait_idle() {
	for _ in $(seq "${2:-600}"); do
		[ "$(q -c "SELECT count(*) FROM sandbox.executions WHERE session LIKE '$1' AND status IN ('queued', 'launching', 'running')" 2>/dev/null)" = 0 ] && return 0
		sleep 0.2
	done
	return 1
}
# wait_running waits until at least $2 executions of sessions LIKE $1 run.
wait_running() {
	for _ in $(seq 300); do
		[ "$(q -c "SELECT count(*) FROM sandbox.executions WHERE session LIKE '$1' AND status = 'running'" 2>/dev/null)" -ge "$2" ] && return 0
		sleep 0.1
	done
	return 1
}
bindir=$("$PG_CONFIG" --bindir)

wait_worker
check $? "the worker is running"

# --- Local: a running command dies with the worker; a queued one still runs.
q -c "SELECT sandbox.drop_session('rl', if_exists => true)" >/dev/null
id_run=$(q -c "SELECT sandbox.submit('sleep 3.5; echo done', 'rl')")
id_next=$(q -c "SELECT sandbox.submit('echo after', 'rl')")
wait_running 'rl' 1
kill -9 "$(worker_pid)"
sleep 1
wait_worker
wait_idle 'rl'
check $? "after SIGKILL of the worker, the local queue drains"
[ "$(q -c "SELECT status || ': ' || error FROM sandbox.executions WHERE id = $id_run")" = "failed: worker restarted" ]
check $? "a local command that died with the worker is failed with 'worker restarted'"
[ "$(q -c "SELECT status || ' ' || stdout FROM sandbox.executions WHERE id = $id_next")" = "succeeded after" ]
check $? "the command queued behind it ran"
[ "$(pgrep -c -x -f 'sleep 3.5')" = 0 ]
check $? "no process of the dead worker's sandbox remains"

# --- A background process survives the worker and is still listed and killable.
q -c "SELECT sandbox.drop_session('rbg', if_exists => true)" >/dev/null
h=$(q -c "SELECT sandbox.start_background('sleep 151', 'rbg')")
for _ in $(seq 50); do [ "$(pgrep -c -x -f 'sleep 151')" = 1 ] && break; sleep 0.1; done
kill -9 "$(worker_pid)"
sleep 1
wait_worker
[ "$(pgrep -c -x -f 'sleep 151')" = 1 ] && [ "$(q -c "SELECT running FROM sandbox.list_background_processes() WHERE pid = $h")" = t ]
check $? "a background process outlives the worker and is still listed as running"
[ "$(q -c "SELECT killed_count FROM sandbox.kill_background_process($h)")" = 1 ] && [ "$(pgrep -c -x -f 'sleep 151')" = 0 ]
check $? "and can still be killed"
for _ in $(seq 50); do [ "$(q -c "SELECT exit_code FROM sandbox.list_background_processes() WHERE pid = $h")" = 143 ] && break; sleep 0.1; done
[ "$(q -c "SELECT status || ' ' || exit_code FROM sandbox.list_background_processes() WHERE pid = $h")" = "killed 143" ]
check $? "its exit code is recorded by the restarted worker"

# --- Cloud: 200 executions in flight, each taking seconds, survive the worker.
# The exactly-once count is about cold executions (batched jobs:run): session runners off here.
q -c "ALTER SYSTEM SET cloudrun_sandbox.max_concurrent = 400" -c "ALTER SYSTEM SET cloudrun_sandbox.cloud_runners = off" -c "SELECT pg_reload_conf()" >/dev/null
# runs_of prints, for each request object of sessions $1*, how many tasks ran it
# (objects are named by the sessions' storage keys, not their names).
runs_of() {
	local keys
	keys=$(q -c "SELECT string_agg(storage_key, ' ') FROM sandbox.sessions WHERE name LIKE '$1%'")
	curl -sf "$EMULATOR_URL/_emulator/stats" | node -e '
		let s = ""; process.stdin.on("data", d => s += d).on("end", () => {
			const keys = new Set(process.argv[1].split(" "));
			const counts = {};
			for (const [key, n] of Object.entries(JSON.parse(s).runs_by_arg || {}))
				for (const a of key.split(" ").slice(2)) {
					const m = a.match(/\/sessions\/([^/]+)\//);
					if (m && keys.has(m[1])) counts[a] = (counts[a] || 0) + n;
				}
			for (const [a, n] of Object.entries(counts)) console.log(n);
		});' "$keys"
}
cloud_round() {
	local prefix=$1 how=$2 ids
	q -c "SELECT sandbox.drop_session(s.name) FROM sandbox.sessions s WHERE s.name LIKE '${prefix}%'" >/dev/null
	PGOPTIONS="-c cloudrun_sandbox.backend=cloudrun" q -c \
		"SELECT count(sandbox.submit('sleep 3; echo ' || i, '${prefix}' || i)) FROM generate_series(1, 200) i" >/dev/null
	wait_running "${prefix}%" 150
	if [ "$how" = kill ]; then
		kill -9 "$(worker_pid)"
	else
		as_pg "$bindir/pg_ctl" -D "$PGDATA" -l "$PGHOST/server.log" -m immediate -w restart >/dev/null
	fi
	sleep 1
	wait_worker
	wait_idle "${prefix}%" 900
	check $? "cloud ($how): all 200 executions finish after the interruption"
	[ "$(q -c "SELECT count(*) FROM sandbox.executions WHERE session LIKE '${prefix}%' AND status = 'succeeded' AND stdout = substr(session, length('${prefix}') + 1) || E'\n'")" = 200 ]
	check $? "cloud ($how): with correct results"
	ids=$(runs_of "$prefix" | sort | uniq -c | tr -s ' ')
	[ "$ids" = " 200 1" ]
	check $? "cloud ($how): the emulator ran each execution request exactly once (counts: ${ids:-none})"
}
cloud_round 'rk' kill
cloud_round 'ri' immediate
q -c "ALTER SYSTEM RESET cloudrun_sandbox.max_concurrent" -c "ALTER SYSTEM RESET cloudrun_sandbox.cloud_runners" -c "SELECT pg_reload_conf()" >/dev/null

# --- Idle: no CPU, no queries.
sleep 1
pid=$(worker_pid)
t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
s0=$(q -c "SELECT query_start FROM pg_stat_activity WHERE pid = $pid")
sleep 3
t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
s1=$(q -c "SELECT query_start FROM pg_stat_activity WHERE pid = $pid")
[ $((t1 - t0)) -le 1 ]
check $? "the idle worker uses no measurable CPU ($((t1 - t0)) ticks in 3 s)"
[ "$s0" = "$s1" ]
check $? "the idle worker issues no queries"

# --- DROP EXTENSION is not blocked; the worker serves the extension made again.
q -c "SET lock_timeout = '5s'" -c "DROP EXTENSION cloudrun_sandbox CASCADE" >/dev/null 2>&1
check $? "DROP EXTENSION is not blocked by the worker"
q -c "CREATE EXTENSION cloudrun_sandbox" >/dev/null
id=$(q -c "SELECT sandbox.submit('echo again', 'recreated')")
[ "$(q -c "SELECT status || ' ' || stdout FROM sandbox.wait($id, '30 s')")" = "succeeded again" ]
check $? "the worker recovers when the extension is created again"
[ "$(worker_pid)" = "$pid" ]
check $? "without restarting"

tap_finish
