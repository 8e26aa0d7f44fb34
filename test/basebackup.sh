#!/usr/bin/env bash
# test/basebackup.sh: issue 11 finding 1, base backups never see the
# workspaces.  Starts a throwaway cluster of its own with the default settings
# (the extension must be installed for $PG_CONFIG, as test/run.sh does first).
# As alice, a role with only sandbox_user, it makes a session with a 63-character
# name holding a 200-character path and a chmod 000 file, then takes base
# backups in tar and plain format and checks that they succeed and hold nothing
# of the session.  A control run puts the same files where version 0.1.0 kept
# sessions (inside the data directory) and checks that pg_basebackup -Ft then
# fails, so the test can tell the two apart.  Prints TAP and "N passed, N failed".
set -uo pipefail
source "$(dirname "$0")/lib.sh"
set +e

unset PGPORT PGHOST PGDATA CLUSTER_DIR EMULATOR_PID
cluster_start
bindir=$("$PG_CONFIG" --bindir)
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
qa() { q -U alice "$@"; }

q -c "CREATE EXTENSION cloudrun_sandbox" -c "CREATE ROLE alice LOGIN" -c "GRANT sandbox_user TO alice"
check $? "setup: the extension and a role with only sandbox_user"

SESSION=$(printf 's%.0s' $(seq 63))
# A path of 200 characters below /workspace: node_modules-like directories.
DIR=node_modules/@babel/plugin-transform-modules-commonjs-long-name/lib/nested/deeper/and-deeper/still-deeper/x
FILE="$DIR/$(printf 'f%.0s' $(seq $((200 - ${#DIR} - 1))))"
[ ${#FILE} = 200 ]
check $? "the path is 200 characters long"

# make_files makes alice's session with the long path and an unreadable file.
make_files() {
	qa -c "SELECT sandbox.create_session('$SESSION')" >/dev/null &&
		qa -c "SELECT exit_code FROM sandbox.exec('mkdir -p $DIR && echo data > $FILE && echo secret > locked && chmod 000 locked && ls $FILE locked', '$SESSION')"
}
out=$(make_files)
check "$([ "$out" = 0 ] && echo 0 || { echo "# got: $out" >&2; echo 1; })" \
	"alice makes a 63-character session with a 200-character path and a chmod 000 file"

backup=$CLUSTER_DIR/backup
as_pg mkdir -p "$backup"
as_pg "$bindir/pg_basebackup" -D "$backup/tar" -Ft -X fetch -c fast >"$CLUSTER_DIR/bb-tar.log" 2>&1
rc=$?
check $rc "pg_basebackup -Ft succeeds"
[ $rc = 0 ] || sed 's/^/#   /' "$CLUSTER_DIR/bb-tar.log"
n=$(tar -tf "$backup/tar/base.tar" 2>/dev/null | grep -c -e "$SESSION" -e 'cloudrun_sandbox')
check "$([ "$n" = 0 ] && echo 0 || echo 1)" "the tar backup holds nothing of the session"
as_pg "$bindir/pg_basebackup" -D "$backup/plain" -Fp -X fetch -c fast >"$CLUSTER_DIR/bb-plain.log" 2>&1
rc=$?
check $rc "pg_basebackup -Fp succeeds"
[ $rc = 0 ] || sed 's/^/#   /' "$CLUSTER_DIR/bb-plain.log"
n=$(find "$backup/plain" \( -name "$SESSION" -o -name locked -o -name 'ffff*' -o -name cloudrun_sandbox \) 2>/dev/null | wc -l)
check "$([ "$n" = 0 ] && echo 0 || echo 1)" "the plain backup holds nothing of the session"
check "$([ -f "$backup/plain/PG_VERSION" ] && echo 0 || echo 1)" "and is a data directory"
out=$(qa -c "SELECT stdout FROM sandbox.exec('cat $FILE', '$SESSION')")
check "$([ "$out" = data ] && echo 0 || echo 1)" "the session is untouched by the backups"

# Control: with local_root inside the data directory (where 0.1.0 kept
# sessions), the same files break the tar backup.
qa -c "SELECT sandbox.drop_session('$SESSION')" >/dev/null
q -c "ALTER SYSTEM SET cloudrun_sandbox.local_root = '$PGDATA/cloudrun_sandbox'" \
	-c "ALTER SYSTEM SET cloudrun_sandbox.local_disk_quota = 0" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 ||
	q -c "ALTER SYSTEM SET cloudrun_sandbox.local_root = '$PGDATA/cloudrun_sandbox'" -c "SELECT pg_reload_conf()" >/dev/null
as_pg mkdir -p -m 700 "$PGDATA/cloudrun_sandbox"
sleep 0.5
out=$(make_files)
check "$([ "$out" = 0 ] && echo 0 || { echo "# got: $out" >&2; echo 1; })" "control: the same files inside the data directory"
as_pg "$bindir/pg_basebackup" -D "$backup/control" -Ft -X fetch -c fast >"$CLUSTER_DIR/bb-control.log" 2>&1
check "$([ $? != 0 ] && echo 0 || echo 1)" "control: there, pg_basebackup -Ft fails"
grep -q -e 'too long' -e 'Permission denied' "$CLUSTER_DIR/bb-control.log"
check $? "control: because of the long name or the unreadable file"
qa -c "SELECT sandbox.drop_session('$SESSION')" >/dev/null

cluster_stop
tap_finish
