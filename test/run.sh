#!/usr/bin/env bash
# test/run.sh: the whole test suite.  Installs what is needed, builds and
# installs, runs the C unit tests under AddressSanitizer, starts a throwaway
# cluster, runs pg_regress (sql/, expected/) and pgTAP (test/pgtap/, with
# pg_prove), and ends with one line: "N passed, N failed".
source "$(dirname "$0")/lib.sh"

PASSED=0
FAILED=0
FAILURES=()

# tally adds a suite's counts and remembers which suites failed.
tally() {
	local suite=$1 pass=$2 fail=$3
	PASSED=$((PASSED + pass))
	FAILED=$((FAILED + fail))
	if [ "$fail" -gt 0 ]; then FAILURES+=("$suite"); fi
	log "$suite: $pass passed, $fail failed"
}

# count_tap counts "ok"/"not ok" lines of TAP output in a file.
count_tap() {
	local out=$1 suite=$2 pass fail
	pass=$(grep -cE '^ *ok [0-9]+' "$out" || true)
	fail=$(grep -cE '^ *not ok [0-9]+' "$out" || true)
	# pg_prove counts the tests a dying file never ran: "Failed 17/24 subtests".
	local planned_fail
	planned_fail=$(grep -oE 'Failed [0-9]+/[0-9]+ subtests' "$out" | awk '{split($2, a, "/"); s += a[1]} END {print s + 0}' || true)
	if [ "$planned_fail" -gt "$fail" ]; then fail=$planned_fail; fi
	# A file that died or planned differently fails even without a "not ok".
	if grep -qE 'Result: FAIL|^# Looks like|Dubious|Bad plan|Parse errors' "$out" && [ "$fail" = 0 ]; then
		fail=1
	fi
	tally "$suite" "$pass" "$fail"
}

# count_summary takes a suite's own final "N passed, N failed" line.
count_summary() {
	local out=$1 suite=$2 line
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1 || true)
	if [ -z "$line" ]; then
		tally "$suite" 0 1
	else
		tally "$suite" "$(echo "$line" | awk '{print $1}')" "$(echo "$line" | awk '{print $3}')"
	fi
}

install_deps
build_install

# --- C unit tests of the shared code and the executor, under ASan/UBSan.
log "unit tests (AddressSanitizer)"
out=$(mktemp)
if make -C "$ROOT/test/unit" -s >"$out" 2>&1; then
	"$ROOT/test/unit/run_unit_tests.sh" >>"$out" 2>&1 || true
fi
cat "$out"
count_tap "$out" "unit"
log "file operations (AddressSanitizer)"
"$ROOT/test/unit/test_fileops.sh" >"$out" 2>&1 || true
cat "$out"
count_summary "$out" "fileops"

# --- The emulator's own tests, the shared cloud client (ASan) against it, and the
# official Google clients against it (fidelity).
log "emulator tests"
"$ROOT/test/emulator/test_emulator.sh" >"$out" 2>&1 || true
cat "$out"
count_summary "$out" "emulator"
log "cloud client tests (AddressSanitizer)"
if make -s -f "$ROOT/test/unit/Makefile.cloud" >"$out" 2>&1; then
	"$ROOT/test/unit/run_cloud_client_test.sh" "$ROOT/test/unit/test_cloud_client" >>"$out" 2>&1 || true
fi
cat "$out"
count_summary "$out" "cloud client"
log "executor cloud mode (AddressSanitizer)"
"$ROOT/test/unit/test_executor_cloud.sh" >"$out" 2>&1 || true
cat "$out"
count_summary "$out" "executor cloud"
log "executor runner mode and incremental workspace sync (AddressSanitizer)"
"$ROOT/test/unit/test_executor_runner.sh" >"$out" 2>&1 || true
cat "$out"
count_summary "$out" "executor runner"
log "fidelity: Google's official Node.js clients against the emulator"
"$ROOT/test/emulator/fidelity/run.sh" >"$out" 2>&1 || true
cat "$out"
count_summary "$out" "fidelity"

# --- The built library must not bind any symbol to the postgres binary by mistake.
log "symbol check"
if "$ROOT/test/check_symbols.sh" "$PG_CONFIG" >"$out" 2>&1; then
	tally "symbols" 1 0
else
	cat "$out"
	tally "symbols" 0 1
fi

WORKER_DB=sandbox_tap cluster_start

# --- pg_regress: the SQL surface.
log "pg_regress"
if make -C "$ROOT" -s PG_CONFIG="$PG_CONFIG" installcheck >"$out" 2>&1; then :; fi
cat "$out"
total=$(ls "$ROOT"/sql/*.sql | wc -l)
if grep -qE 'All [0-9]+ tests passed' "$out"; then
	tally "pg_regress" "$total" 0
else
	failed=$(grep -cE '\.\.\. FAILED|^not ok| FAILED ' "$out" || true)
	[ "$failed" -gt 0 ] || failed=$total
	[ -f "$ROOT/regression.diffs" ] && head -200 "$ROOT/regression.diffs"
	tally "pg_regress" $((total - failed)) "$failed"
fi

# --- The loopback emulator of Cloud Run, Cloud Storage and OAuth, and the
# pgTAP database prepared with the test roles (test/lib.sh: tap_setup).
log "starting the emulator; pgTAP setup"
tap_setup

# --- pgTAP: behaviour; the backend-independent files run once per backend, the
# security group (attacks that must fail) with the local pass.
log "pgTAP"
pg_prove -U tap -v -d sandbox_tap "$ROOT"/test/pgtap/common/*.sql "$ROOT"/test/pgtap/local/*.sql >"$out" 2>&1 || true
cat "$out"
count_tap "$out" "pgtap (local backend)"

# The common files once more with warm sandboxes off (issue 12): every call in a
# sandbox of its own.  local_warm_sessions is PGC_SIGHUP: ALTER SYSTEM and a reload,
# then wait until a new connection sees it.
set_warm_sessions() {
	psql -X -q -c "ALTER SYSTEM ${1}" -c "SELECT pg_reload_conf()" >/dev/null
	for _ in $(seq 100); do
		[ "$(psql -X -At -c "SHOW cloudrun_sandbox.local_warm_sessions")" = "$2" ] && return 0
		sleep 0.05
	done
	log "cloudrun_sandbox.local_warm_sessions did not become $2"
	return 1
}
warm_sessions=$(psql -X -At -c "SHOW cloudrun_sandbox.local_warm_sessions")
if set_warm_sessions "SET cloudrun_sandbox.local_warm_sessions = 0" 0; then
	pg_prove -U tap -v -d sandbox_tap "$ROOT"/test/pgtap/common/*.sql >"$out" 2>&1 || true
	cat "$out"
	count_tap "$out" "pgtap (local backend, local_warm_sessions = 0)"
else
	tally "pgtap (local backend, local_warm_sessions = 0)" 0 1
fi
set_warm_sessions "RESET cloudrun_sandbox.local_warm_sessions" "$warm_sessions" || true

# The security group: each file attacks as alice, bob or carol (sandbox_user, or
# nothing), with a superuser only for the setup the attack needs (a host file to
# aim at, a role to drop, a second connection), so pg_prove connects as postgres.
pg_prove -v -d sandbox_tap "$ROOT"/test/pgtap/security/*.sql >"$out" 2>&1 || true
cat "$out"
count_tap "$out" "pgtap (security)"

PGOPTIONS="-c cloudrun_sandbox.backend=cloudrun" \
	pg_prove -U tap -v -d sandbox_tap "$ROOT"/test/pgtap/common/*.sql "$ROOT"/test/pgtap/cloud/*.sql >"$out" 2>&1 || true
cat "$out"
count_tap "$out" "pgtap (cloudrun backend, emulator)"

# The cloud files once more with session runners off (issue 13): a Cloud Run
# execution per command.  cloud_runners is PGC_SIGHUP, like local_warm_sessions.
# 09_runners is about runners themselves: it runs in the pass above only.
set_setting() {
	psql -X -q -c "ALTER SYSTEM ${1}" -c "SELECT pg_reload_conf()" >/dev/null
	for _ in $(seq 100); do
		[ "$(psql -X -At -c "SHOW $2")" = "$3" ] && return 0
		sleep 0.05
	done
	log "$2 did not become $3"
	return 1
}
if set_setting "SET cloudrun_sandbox.cloud_runners = off" cloudrun_sandbox.cloud_runners off; then
	PGOPTIONS="-c cloudrun_sandbox.backend=cloudrun" \
		pg_prove -U tap -v -d sandbox_tap "$ROOT"/test/pgtap/common/*.sql \
		$(ls "$ROOT"/test/pgtap/cloud/*.sql | grep -v /09_runners) >"$out" 2>&1 || true
	cat "$out"
	count_tap "$out" "pgtap (cloudrun backend, cloud_runners = off)"
else
	tally "pgtap (cloudrun backend, cloud_runners = off)" 0 1
fi
set_setting "RESET cloudrun_sandbox.cloud_runners" cloudrun_sandbox.cloud_runners on || true

# --- The fault suite: bad luck and bad input (issue 10), with a server-log check
# after every scenario (test/lib.sh: run_faults).
log "faults"
run_faults $(ls "$ROOT"/test/faults/*.sql 2>/dev/null) >"$out" 2>&1 || true
cat "$out"
count_tap "$out" "faults"

# --- exec(stream => true): NOTICEs seen by a libpq client (a cluster of its own).
log "streamed exec output"
"$ROOT/test/stream_notices.sh" >"$out" 2>&1 || true
cat "$out"
count_summary "$out" "stream notices"

# --- A backend killed with SIGKILL mid-command in a warm sandbox (a cluster of its own).
log "warm sandbox, backend killed"
"$ROOT/test/warm_kill.sh" >"$out" 2>&1 || true
cat "$out"
count_summary "$out" "warm kill"

# --- Crashes, restarts, an idle worker, DROP EXTENSION (last: it restarts the server).
log "worker recovery"
"$ROOT/test/worker_recovery.sh" >"$out" 2>&1 || true
cat "$out"
count_summary "$out" "worker recovery"

# --- Background processes stop with the server and DROP EXTENSION (a cluster of its own).
log "security lifecycle"
"$ROOT/test/security_lifecycle.sh" >"$out" 2>&1 || true
cat "$out"
count_summary "$out" "security lifecycle"

# --- Base backups with awkward workspace files (a cluster of its own, default settings).
log "base backups"
"$ROOT/test/basebackup.sh" >"$out" 2>&1 || true
cat "$out"
count_summary "$out" "base backups"

# --- Per-role cgroups (as root: delegates a cgroup v1 subtree for the run; a cluster of its own).
log "cgroups"
"$ROOT/test/cgroups.sh" >"$out" 2>&1 || true
cat "$out"
count_summary "$out" "cgroups"

# --- ALTER EXTENSION ... UPDATE from 0.1.0 with data in place (a cluster of its own).
log "upgrade from 0.1.0"
"$ROOT/test/upgrade.sh" >"$out" 2>&1 || true
cat "$out"
count_summary "$out" "upgrade"

# --- The disk quota with the storage root on a 64 MB tmpfs (a cluster of its own).
log "disk quota on a 64 MB tmpfs"
"$ROOT/test/disk_quota.sh" >"$out" 2>&1 || true
cat "$out"
count_summary "$out" "disk quota"

rm -f "$out"
if [ ${#FAILURES[@]} -gt 0 ]; then
	log "failed suites: ${FAILURES[*]}"
	log "server log tail:"
	tail -30 "$CLUSTER_DIR/server.log" >&2 || true
fi
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
