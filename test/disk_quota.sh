#!/usr/bin/env bash
# test/disk_quota.sh: the local backend's per-session disk quota (issue 11),
# on a cluster of its own whose cloudrun_sandbox.local_root is a 64 MB tmpfs
# and whose cloudrun_sandbox.local_disk_quota is 16 MB: runs
# test/pgtap/local/08_disk_quota.sql as the role tap (sandbox_user only), then
# checks that nothing stays mounted.  Needs root (the tmpfs).  Prints TAP and
# "N passed, N failed".
source "$(dirname "$0")/lib.sh"
set +e

if [ "$(id -u)" != 0 ]; then
	echo "1..0 # skipped: mounting the 64 MB tmpfs needs root"
	echo "0 passed, 0 failed"
	exit 0
fi
install_deps
[ "${SKIP_BUILD:-0}" = 1 ] || build_install
QUOTA_DIR=$(mktemp -d /tmp/cloudrun_sandbox_quota.XXXXXX)
mount -t tmpfs -o size=64m,mode=0700 tmpfs "$QUOTA_DIR"
chown postgres: "$QUOTA_DIR"
export CLUSTER_STORAGE_ROOT=$QUOTA_DIR
quota_cleanup() {
	cluster_stop
	fuse_unmount_under "$QUOTA_DIR"
	umount "$QUOTA_DIR" 2>/dev/null || umount -l "$QUOTA_DIR"
	rmdir "$QUOTA_DIR"
}
# A cluster of its own, even when called with another one's settings (test/run.sh).
unset PGPORT PGHOST PGDATA CLUSTER_DIR EMULATOR_PID
CLUSTER_CONF="cloudrun_sandbox.local_root = '$QUOTA_DIR/root'
cloudrun_sandbox.local_disk_quota = '16MB'" WORKER_DB=sandbox_tap cluster_start
trap quota_cleanup EXIT
tap_setup >/dev/null
out=$(mktemp)
pg_prove -U tap -v -d sandbox_tap "${QUOTA_TEST:-$ROOT/test/pgtap/local/08_disk_quota.sql}" >"$out" 2>&1
cat "$out"
tests_ok=$(grep -cE '^ *ok [0-9]+' "$out")
tests_bad=$(grep -cE '^ *not ok [0-9]+' "$out")
grep -qE 'Result: PASS' "$out" || [ "$tests_bad" -gt 0 ] || tests_bad=1
rm -f "$out"
# A fuse2fs that dies (killed here) is noticed, its image checked and mounted again:
# by the next call of the session's role, and by the worker for a queued command.
qt() { psql -X -q -At -v ON_ERROR_STOP=1 -U tap -d sandbox_tap "$@"; }
kill_fuse2fs() {
	local key
	key=$(psql -X -q -At -d sandbox_tap -c "SELECT storage_key FROM sandbox.sessions WHERE name = 'dq_dead'")
	# The fuse2fs the extension recorded for the session, by its pid.
	kill -KILL "$(cut -d' ' -f1 "$QUOTA_DIR"/root/*/sessions/"$key"/disk.pid)" && sleep 0.2
}
qt -c "SELECT sandbox.drop_session('dq_dead', if_exists => true)" >/dev/null
[ "$(qt -c "SELECT status FROM sandbox.exec('echo kept > a.txt', 'dq_dead')")" = succeeded ]
check $? "a session with a disk image is made"
kill_fuse2fs
check $? "its fuse2fs is killed"
[ "$(qt -c "SELECT stdout FROM sandbox.exec('cat a.txt', 'dq_dead')")" = kept ]
check $? "the next exec remounts the image, its files intact"
kill_fuse2fs
id=$(qt -c "SELECT sandbox.submit('cat a.txt', 'dq_dead')")
[ "$(qt -c "SELECT status || ' ' || stdout FROM sandbox.wait($id, interval '60 s')")" = "succeeded kept" ]
check $? "after another kill, a queued command runs too: the worker remounts it"
qt -c "SELECT sandbox.drop_session('dq_dead')" >/dev/null

# A role's own quota (ALTER ROLE ... SET) holds also for a session whose storage the
# worker makes (its first use a queued command): a role cannot get the server's larger
# quota that way.
qb() { psql -X -q -At -v ON_ERROR_STOP=1 -U bob -d sandbox_tap "$@"; }
psql -X -q -d sandbox_tap -c "ALTER ROLE bob SET cloudrun_sandbox.local_disk_quota = '8MB'"
qb -c "SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['dq_role', 'dq_role2']) s" >/dev/null
size=$(qb -c "SELECT stdout FROM sandbox.exec('df -k --output=size /workspace | tail -1', 'dq_role2')" | tr -d ' ')
[ "${size:-0}" -gt 7500 ] && [ "${size:-0}" -lt 9000 ]
check $? "a session bob makes has bob's quota of 8 MB ($size kB)"
id=$(qb -c "SELECT sandbox.submit('df -k --output=size /workspace | tail -1', 'dq_role')")
size=$(qb -c "SELECT stdout FROM sandbox.wait($id, interval '60 s')" | tr -d ' ')
[ "${size:-0}" -gt 7500 ] && [ "${size:-0}" -lt 9000 ]
check $? "so does one the worker makes for his queued command ($size kB), not the server's 16 MB"
qb -c "SELECT sandbox.drop_session(s) FROM unnest(ARRAY['dq_role', 'dq_role2']) s" >/dev/null
psql -X -q -d sandbox_tap -c "ALTER ROLE bob RESET cloudrun_sandbox.local_disk_quota"

# The tmpfs still has room: the sessions' images never grew past their quota.
used_kb=$(df -k --output=used "$QUOTA_DIR" | tail -1)
[ "$used_kb" -lt 60000 ]
check $? "the 64 MB storage root is not full after the test ($used_kb kB used)"
cluster_stop
mounted=$(awk -v d="$QUOTA_DIR/" 'index($5, d) == 1' /proc/self/mountinfo | wc -l)
[ "$mounted" = 0 ]
check $? "nothing stays mounted under the storage root once the cluster is stopped ($mounted left)"
tap_n=$((tap_n + tests_ok + tests_bad))
tap_failed=$((tap_failed + tests_bad))
tap_finish
