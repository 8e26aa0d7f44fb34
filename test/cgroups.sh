#!/usr/bin/env bash
# test/cgroups.sh: issue 11 finding 4, per-role cgroups for local sandboxes.
# As root, delegates a cgroup v1 subtree of the memory, pids and cpu
# hierarchies to the postgres user (as the README's "Per-role cgroups" tells an
# operator to), starts a throwaway cluster of its own (the extension must be
# installed for $PG_CONFIG, as test/run.sh does first), and checks, as alice
# and bob (roles with only sandbox_user): a fork loop stops at
# role_pids_max while bob's commands run; a 300 MB allocation dies at
# role_memory_max (well under RLIMIT_AS); the sandbox can neither see nor
# write its cgroup; the limits follow the settings; worker_status().limits
# says whether cgroups are in force and why not; a sandbox that cannot join
# its cgroup fails the command.  Removes the cgroups at the end.
# Prints TAP and "N passed, N failed".
set -uo pipefail
source "$(dirname "$0")/lib.sh"
set +e

finish() {
	tap_finish
	exit $?
}

CG="cloudrun_sandbox_test-$$-$RANDOM"
CONTROLLERS="memory pids cpu"
if [ "$(id -u)" != 0 ]; then
	echo "ok 1 # skip delegating a cgroup needs root"
	echo "1..1"
	echo "1 passed, 0 failed"
	exit 0
fi
for c in $CONTROLLERS; do
	if ! grep -qE "^[^ ]+ [^ ]+ [^ ]+ [^ ]+ /sys/fs/cgroup/$c .* - cgroup [^ ]+ [^ ]*\b$c\b" /proc/self/mountinfo; then
		echo "ok 1 # skip no cgroup v1 $c hierarchy at /sys/fs/cgroup/$c"
		echo "1..1"
		echo "1 passed, 0 failed"
		exit 0
	fi
done

# remove_cgroups kills what is left in the test's cgroups and removes them, children first.
remove_cgroups() {
	local dirs d
	for _ in $(seq 50); do
		dirs=$(find /sys/fs/cgroup/{memory,pids,cpu}/"$CG" /sys/fs/cgroup/unified/"$CG" -depth -type d 2>/dev/null)
		[ -z "$dirs" ] && return 0
		for d in $dirs; do
			xargs -r kill -KILL <"$d/cgroup.procs" 2>/dev/null
			rmdir "$d" 2>/dev/null
		done
		sleep 0.1
	done
}
cleanup() {
	cluster_stop
	remove_cgroups
}

# A cluster of our own: never the caller's port or data directory.
unset PGPORT PGHOST PGDATA CLUSTER_DIR EMULATOR_PID
WORKER_DB=sandbox_tap cluster_start
trap cleanup EXIT
bindir=$("$PG_CONFIG" --bindir)
# Dynamic shared memory in files of the data directory: where /dev/shm is not
# usable, initdb chooses System V segments, which any other cluster of the same
# OS user that restarts from a stale postmaster.pid may remove (as it did on a
# shared test host).
echo "dynamic_shared_memory_type = mmap" >>"$PGDATA/postgresql.conf"
as_pg "$bindir/pg_ctl" -D "$PGDATA" -l "$CLUSTER_DIR/server.log" -w -m fast restart >/dev/null

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d sandbox_tap "$@"; }
qa() { q -U alice "$@"; }
qb() { q -U bob "$@"; }
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE sandbox_tap" >/dev/null
q <<'SQL' >/dev/null
CREATE EXTENSION cloudrun_sandbox;
CREATE ROLE alice LOGIN;
CREATE ROLE bob LOGIN;
CREATE ROLE carol LOGIN;
GRANT sandbox_user TO alice, bob;
SQL
alice=$(q -c "SELECT oid FROM pg_roles WHERE rolname = 'alice'")
bob=$(q -c "SELECT oid FROM pg_roles WHERE rolname = 'bob'")

# set_and_reload NAME=VALUE...: ALTER SYSTEM, reload, and wait until a new connection sees the last one.
set_and_reload() {
	local kv name value
	for kv in "$@"; do
		q -c "ALTER SYSTEM SET cloudrun_sandbox.${kv%%=*} = '${kv#*=}'"
	done
	q -c "SELECT pg_reload_conf()" >/dev/null
	name=${kv%%=*} value=${kv#*=}
	for _ in $(seq 100); do
		[ "$(qa -c "SELECT current_setting('cloudrun_sandbox.$name')")" = "$value" ] && return 0
		sleep 0.1
	done
}
# wait_log PATTERN: waits until the server log has a line matching PATTERN (extended regexp).
wait_log() {
	for _ in $(seq 100); do
		grep -qE "$1" "$CLUSTER_DIR/server.log" && return 0
		sleep 0.1
	done
	return 1
}
cgroup_line() { "$@" -c "SELECT l FROM unnest((sandbox.worker_status()).limits) l WHERE l LIKE 'cgroups:%'"; }
# fork_loop starts up to 100 processes that sleep; prints how many it started (or dies trying).
FORK_LOOP='i=0; while [ $i -lt 100 ]; do sleep 30 >/dev/null 2>&1 & i=$((i+1)); done; echo $i'
# alloc makes one process hold 300 MB (tail keeps a line without newline whole).
ALLOC='head -c 300000000 /dev/zero | tail -n 1 >/dev/null; echo "tail=$?"'

# --- Off (the default): not in force, and why; nothing stops the loop or the allocation.
line=$(cgroup_line qa)
case "$line" in
"cgroups: not in force: cloudrun_sandbox.local_cgroup is empty; host: cgroup v1 hierarchies memory (/sys/fs/cgroup/memory, owned by root), pids (/sys/fs/cgroup/pids, owned by root), cpu (/sys/fs/cgroup/cpu, owned by root)"*) r=0 ;;
*) r=1; echo "# got: $line" ;;
esac
check $r "cgroups off: worker_status().limits says not in force, because local_cgroup is empty and the v1 hierarchies are root's"
line=$(qa -c "SELECT array_to_string((sandbox.worker_status()).limits, E'\n')")
echo "$line" | grep -qx "cloudrun_sandbox.max_processes: 256 processes per sandbox (RLIMIT_NPROC; 0: none)" &&
	echo "$line" | grep -qx "cloudrun_sandbox.local_shm_size: 64MB of /dev/shm per sandbox" &&
	echo "$line" | grep -qx "cloudrun_sandbox.max_background_per_role: 32 background processes per role (0: no limit)" &&
	echo "$line" | grep -qx "cloudrun_sandbox.max_command_bytes: 1MB per command"
r=$?
[ $r = 0 ] || echo "$line" | sed 's/^/# /'
check $r "worker_status().limits lists the rlimits, /dev/shm, the background cap and the command length"
out=$(q -U carol -c "SELECT (sandbox.worker_status()).limits" 2>&1)
case "$out" in *"permission denied for "*) r=0 ;; *) r=1; echo "# got: $out" ;; esac
check $r "worker_status() (made again by the 0.4.0 script) is not granted to a role without sandbox_user"
wait_log "LOG: +cloudrun_sandbox cgroups: not in force: cloudrun_sandbox.local_cgroup is empty"
check $? "the worker logged at start that cgroups are not in force"
[ "$(qa -c "SELECT stdout FROM sandbox.exec('$FORK_LOOP')")" = 100 ]
check $? "cgroups off: a sandbox starts 100 processes"
[ "$(qa -c "SELECT stdout FROM sandbox.exec('$ALLOC')")" = "tail=0" ]
check $? "cgroups off: a process holds 300 MB (RLIMIT_AS allows it)"

# --- Delegated as the README says (v1: a directory in each hierarchy, owned by postgres).
for c in $CONTROLLERS; do
	mkdir "/sys/fs/cgroup/$c/$CG" && chown -R postgres: "/sys/fs/cgroup/$c/$CG"
done
set_and_reload local_cgroup="$CG" role_memory_max=100MB role_pids_max=50
line=$(cgroup_line qa)
[ "$line" = "cgroups: in force: cgroup v1, controllers memory pids cpu, parent $CG, per role: memory 100MB, pids 50, cpu weight 50" ]
check $? "cgroups on: worker_status().limits says in force, v1, which controllers, the parent and the limits" ||
	echo "# got: $line"
wait_log "LOG: +cloudrun_sandbox cgroups: in force: cgroup v1, controllers memory pids cpu, parent $CG"
check $? "the worker logged that cgroups are in force after the reload"

out=$(qa -F'|' -c "SELECT exit_code <> 0, stdout = '', stderr FROM sandbox.exec('$FORK_LOOP')")
case "$out" in "t|t|"*[Ff]ork*) r=0 ;; *) r=1; echo "# got: $out" ;; esac
check $r "role_pids_max = 50: alice's fork loop fails to fork (exec, in her backend)"
for c in $CONTROLLERS; do
	[ -d "/sys/fs/cgroup/$c/$CG/role_$alice" ] && [ "$(stat -c %U:%a "/sys/fs/cgroup/$c/$CG/role_$alice")" = postgres:755 ] || r=1
done
check $r "alice's cgroup is role_<oid> in each hierarchy, mode 0755"
[ "$(cat "/sys/fs/cgroup/pids/$CG/role_$alice/pids.max")" = 50 ] &&
	[ "$(cat "/sys/fs/cgroup/memory/$CG/role_$alice/memory.limit_in_bytes")" = $((100 * 1024 * 1024)) ] &&
	[ "$(cat "/sys/fs/cgroup/cpu/$CG/role_$alice/cpu.shares")" = 512 ]
check $? "its limits: pids.max 50, memory.limit_in_bytes 100MB, cpu.shares 512 (weight 50)"

# A background process (spawned by the worker) fills alice's cgroup and keeps it
# full (perl: a shell exits when it cannot fork).
bg=$(qa -c "SELECT sandbox.start_background('perl -e ''for (1..200) { my \$p = fork; if (defined \$p && !\$p) { sleep 60; exit } } sleep 60''')")
for _ in $(seq 100); do
	[ "$(cat "/sys/fs/cgroup/pids/$CG/role_$alice/pids.current")" -ge 45 ] && break
	sleep 0.1
done
n=$(cat "/sys/fs/cgroup/pids/$CG/role_$alice/pids.current")
[ "$n" -ge 45 ] && [ "$n" -le 50 ]
check $? "alice's background process is in her cgroup and stops at 50 processes ($n)"
[ "$(qb -c "SELECT stdout FROM sandbox.exec('echo bob runs')")" = "bob runs" ]
check $? "meanwhile bob's exec works"
id=$(qb -c "SELECT sandbox.submit('echo bob queued')")
[ "$(qb -c "SELECT status || ' ' || stdout FROM sandbox.wait($id)")" = "succeeded bob queued" ]
check $? "and bob's queued command runs (in the worker)"
n=$(qb -c "SELECT stdout FROM sandbox.exec('$FORK_LOOP')")
[ "$n" = "" ] || [ "$n" -lt 100 ]
check $? "bob's own fork loop is bounded by his own cgroup"
out=$(qa -c "SELECT status FROM sandbox.exec('echo alice')" 2>&1)
[ "$out" != "succeeded" ]
check $? "alice's next command cannot start while her cgroup is full ($out)"
qa -c "SELECT killed_count FROM sandbox.kill_background_process($bg)" >/dev/null
for _ in $(seq 100); do
	[ "$(cat "/sys/fs/cgroup/pids/$CG/role_$alice/pids.current")" -le 1 ] && break
	sleep 0.1
done
[ "$(qa -c "SELECT stdout FROM sandbox.exec('echo alice again')")" = "alice again" ]
check $? "once her background process is killed, alice's commands run again"
id=$(qa -c "SELECT sandbox.submit('$FORK_LOOP')")
out=$(qa -F'|' -c "SELECT status, exit_code <> 0, stderr FROM sandbox.wait($id)")
case "$out" in *"|t|"*[Ff]ork*) r=0 ;; *) r=1; echo "# got: $out" ;; esac
check $r "alice's queued fork loop (run by the worker) is bounded too"

# --- Memory: 300 MB in one process, under RLIMIT_AS (2 GB) but over role_memory_max.
out=$(qa -c "SELECT stdout FROM sandbox.exec('$ALLOC')")
[ "$out" = "tail=137" ]
check $? "role_memory_max = 100MB: a process holding 300 MB is killed ($out)"
out=$(qa -c "SELECT stdout FROM sandbox.exec('for i in 1 2 3; do (head -c 60000000 /dev/zero | tail -n 1 >/dev/null; echo \"\$?\" >/tmp/rc\$i) & done; wait; cat /tmp/rc1 /tmp/rc2 /tmp/rc3')")
case "$out" in *137*) r=0 ;; *) r=1 ;; esac
check $r "three processes of 60 MB each cannot all live in 100 MB: one is killed ($(echo $out))"
[ "$(qb -c "SELECT stdout FROM sandbox.exec('head -c 60000000 /dev/zero | tail -n 1 >/dev/null; echo \"tail=\$?\"')")" = "tail=0" ]
check $? "bob's 60 MB process lives (his own cgroup)"

# --- The sandbox can neither see nor change its cgroup.
out=$(qa -c "SELECT stdout FROM sandbox.exec('test -e /sys/fs/cgroup && echo sees-cgroupfs; find / -name cgroup.procs 2>/dev/null | head -1; echo 100000 >/sys/fs/cgroup/pids/$CG/role_$alice/pids.max 2>/dev/null && echo wrote; mkdir -p /tmp/m; mount -t cgroup -o pids none /tmp/m 2>/dev/null && echo mounted-v1; mount -t cgroup2 none /tmp/m 2>/dev/null && echo mounted-v2; echo done')")
[ "$out" = "done" ]
check $? "the sandbox sees no cgroup file system, finds no cgroup.procs and cannot mount one ($(echo $out))"
[ "$(cat "/sys/fs/cgroup/pids/$CG/role_$alice/pids.max")" = 50 ]
check $? "alice's pids.max is still 50"

# --- The limits follow the settings.
set_and_reload role_pids_max=60 role_memory_max=200MB role_cpu_weight=10
qa -c "SELECT sandbox.exec('true')" >/dev/null
[ "$(cat "/sys/fs/cgroup/pids/$CG/role_$alice/pids.max")" = 60 ] &&
	[ "$(cat "/sys/fs/cgroup/memory/$CG/role_$alice/memory.limit_in_bytes")" = $((200 * 1024 * 1024)) ] &&
	[ "$(cat "/sys/fs/cgroup/cpu/$CG/role_$alice/cpu.shares")" = 102 ]
check $? "changed settings are written to the role's cgroup at its next sandbox"
set_and_reload role_memory_max=0 role_pids_max=0 role_cpu_weight=0
qa -c "SELECT sandbox.exec('true')" >/dev/null
[ "$(cat "/sys/fs/cgroup/pids/$CG/role_$alice/pids.max")" = max ] &&
	[ "$(cat "/sys/fs/cgroup/memory/$CG/role_$alice/memory.limit_in_bytes")" -gt $((1 << 50)) ] &&
	[ "$(cat "/sys/fs/cgroup/cpu/$CG/role_$alice/cpu.shares")" = 1024 ]
check $? "limits set to 0 are lifted (pids max, memory unlimited, cpu.shares 1024)"
set_and_reload role_memory_max=100MB role_pids_max=50 role_cpu_weight=50

# --- Once asked for, cgroups are never silently skipped.
chown root: "/sys/fs/cgroup/pids/$CG/role_$alice/cgroup.procs"
out=$(qa -c "SELECT status FROM sandbox.exec('echo unbounded')" 2>&1)
case "$out" in *"could not put the sandbox into its role's cgroup: Permission denied"*) r=0 ;; *) r=1; echo "# got: $out" ;; esac
check $r "a sandbox that cannot join its cgroup fails the command with a clear error"
chown postgres: "/sys/fs/cgroup/pids/$CG/role_$alice/cgroup.procs"
set_and_reload local_cgroup="$CG-missing"
out=$(qa -c "SELECT status FROM sandbox.exec('echo unbounded')" 2>&1)
case "$out" in *"the sandbox cannot be put into its role's cgroup"*"$CG-missing"*) r=0 ;; *) r=1; echo "# got: $out" ;; esac
check $r "a local_cgroup that is not delegated fails the command with a clear error"
line=$(cgroup_line qa)
case "$line" in "cgroups: not in force: cloudrun_sandbox.local_cgroup \"$CG-missing\": /sys/fs/cgroup/memory/$CG-missing: No such file or directory (local sandboxes cannot start)") r=0 ;; *) r=1; echo "# got: $line" ;; esac
check $r "worker_status().limits says why it is not in force"
# cgroup v2 (this host's cgroup2 mount has no controllers): detected, and refused.
mkdir "/sys/fs/cgroup/unified/$CG" && chown -R postgres: "/sys/fs/cgroup/unified/$CG"
set_and_reload local_cgroup="/sys/fs/cgroup/unified/$CG"
line=$(cgroup_line qa)
case "$line" in "cgroups: not in force: cloudrun_sandbox.local_cgroup \"/sys/fs/cgroup/unified/$CG\": /sys/fs/cgroup/unified/$CG has no memory controller (cgroup.controllers) (local sandboxes cannot start)") r=0 ;; *) r=1; echo "# got: $line" ;; esac
check $r "an absolute path is read as cgroup v2, whose missing controllers are named"
out=$(qa -c "SELECT status FROM sandbox.exec('echo unbounded')" 2>&1)
case "$out" in *"the sandbox cannot be put into its role's cgroup"*"has no memory controller"*) r=0 ;; *) r=1; echo "# got: $out" ;; esac
check $r "and a command then fails rather than run without its limits"
set_and_reload local_cgroup=
[ "$(qa -c "SELECT stdout FROM sandbox.exec('echo off')")" = off ]
check $? "with local_cgroup empty again, commands run"

! grep -qE 'terminated by signal|PANIC|TRAP:' "$CLUSTER_DIR/server.log"
check $? "the server log stays clean"
finish
