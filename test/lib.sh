# test/lib.sh: shared by test/run.sh, test/demo.sh and bench/*: installs what
# the project needs, builds and installs it, and runs a throwaway PostgreSQL
# cluster on its own port and directory.  Source it; do not run it.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_MAJOR=${PG_MAJOR:-15}
DEB_PACKAGES="build-essential postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR
	postgresql-$PG_MAJOR-pgtap libtap-parser-sourcehandler-pgtap-perl libjansson-dev
	libcurl4-openssl-dev libssl-dev libseccomp-dev bubblewrap procps openssl curl ca-certificates
	fuse2fs fuse3"

# log prints a progress line with the seconds since the script started (where CI time goes).
log() { printf '==> [%4ds] %s\n' "$SECONDS" "$*" >&2; }

# TAP for the shell test scripts: "check STATUS DESCRIPTION" prints one ok / not
# ok line (STATUS 0 is a pass); tap_finish prints the plan and "N passed, N
# failed" and returns non-zero if any failed.
tap_n=0
tap_failed=0
check() {
	tap_n=$((tap_n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $tap_n - $2"
	else
		echo "not ok $tap_n - $2"
		tap_failed=$((tap_failed + 1))
	fi
}
tap_finish() {
	echo "1..$tap_n"
	echo "$((tap_n - tap_failed)) passed, $tap_failed failed"
	[ "$tap_failed" = 0 ]
}

# install_deps installs the Debian packages that are missing (needs root).
install_deps() {
	local missing=()
	for p in $DEB_PACKAGES; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	# The emulator needs Node.js; a machine may already have it from elsewhere.
	command -v node >/dev/null 2>&1 || missing+=(nodejs)
	command -v npm >/dev/null 2>&1 || missing+=(npm)
	if [ ${#missing[@]} -gt 0 ]; then
		if [ "$(id -u)" != 0 ]; then
			log "missing packages: ${missing[*]} (run as root to install them)"
			return 1
		fi
		log "installing: ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
	# Sessions' disk images are mounted by fuse2fs as the server's user: /dev/fuse
	# must be 0666, as Debian's udev rule makes it (a container has no udev).
	if [ -c /dev/fuse ] && [ "$(stat -c %a /dev/fuse)" != 666 ] && [ "$(id -u)" = 0 ]; then
		chmod 0666 /dev/fuse
	fi
}

# fuse_unmount_under DIR: unmounts every FUSE mount (sessions' disk images) below DIR.
fuse_unmount_under() {
	local dir=$1 m
	[ -n "$dir" ] || return 0
	awk -v d="$dir/" '{for (i = 7; i < NF; i++) if ($i == "-") break}
		$(i + 1) ~ /^fuse/ && index($5, d) == 1 {print $5}' /proc/self/mountinfo |
		sort -r | while read -r m; do
			fusermount3 -u -q -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		done
}

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}

# build_install builds the extension and the executor and installs them.
build_install() {
	log "building and installing"
	make -C "$ROOT" -s PG_CONFIG="$PG_CONFIG" >/dev/null
	make -C "$ROOT" -s PG_CONFIG="$PG_CONFIG" install >/dev/null
}

# as_pg runs a command as the cluster's operating-system user.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# cluster_start creates and starts a throwaway cluster; sets PGHOST, PGPORT, PGDATA.
# CLUSTER_CONF, if set, is added to its postgresql.conf.
cluster_start() {
	local bindir
	bindir=$("$PG_CONFIG" --bindir)
	CLUSTER_DIR=$(mktemp -d /tmp/cloudrun_sandbox_pg.XXXXXX)
	chmod 755 "$CLUSTER_DIR"
	[ "$(id -u)" = 0 ] && chown postgres: "$CLUSTER_DIR"
	export PGDATA="$CLUSTER_DIR/data" PGHOST="$CLUSTER_DIR" PGUSER=postgres PGDATABASE=postgres
	local chosen_port=${PGPORT:-} attempt
	export PGPORT=${PGPORT:-$(free_port)}
	log "starting a throwaway cluster in $CLUSTER_DIR on port $PGPORT"
	as_pg "$bindir/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 -A trust >/dev/null
	cat >>"$PGDATA/postgresql.conf" <<CONF
port = $PGPORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$CLUSTER_DIR'
shared_preload_libraries = 'cloudrun_sandbox'
cloudrun_sandbox.database = '${WORKER_DB:-postgres}'
max_connections = 50
fsync = off
${CLUSTER_CONF:-}
CONF
	# A port taken between free_port and the bind (a client's ephemeral port,
	# another test's listener) is retried with another, unless the caller chose it.
	for attempt in 1 2 3 4 5; do
		if as_pg "$bindir/pg_ctl" -D "$PGDATA" -l "$CLUSTER_DIR/server.log" -w start >/dev/null; then
			break
		fi
		if [ -n "$chosen_port" ] || [ "$attempt" = 5 ] ||
			! grep -q 'could not bind\|could not create any TCP/IP sockets\|already in use' "$CLUSTER_DIR/server.log"; then
			log "the cluster did not start; its log:"
			tail -n 30 "$CLUSTER_DIR/server.log" >&2
			break
		fi
		export PGPORT=$(free_port)
		echo "port = $PGPORT" | as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null
		log "port taken; starting again on port $PGPORT"
	done
	trap cluster_stop EXIT
}

# free_port prints a TCP port below the kernel's ephemeral range (so no client
# connection can hold it) that nothing on 127.0.0.1 listens on now.
free_port() {
	local p
	for _ in $(seq 50); do
		p=$(( 20000 + RANDOM % 12000 ))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	echo "$p"
}

# emulator_start starts test/emulator/run on a free port; sets EMULATOR_URL.
emulator_start() {
	EMULATOR_LOG="$CLUSTER_DIR/emulator.log"
	EMULATOR_FIFO="$CLUSTER_DIR/emulator.out"
	"$ROOT/test/emulator/run" --port 0 "$@" >"$EMULATOR_FIFO" 2>"$EMULATOR_LOG" &
	EMULATOR_PID=$!
	for _ in $(seq 100); do
		EMULATOR_URL=$(sed -n 's/^listening on //p' "$EMULATOR_FIFO")
		[ -n "$EMULATOR_URL" ] && break
		kill -0 "$EMULATOR_PID" 2>/dev/null || break
		sleep 0.1
	done
	if [ -z "$EMULATOR_URL" ]; then
		log "the emulator did not start:"
		cat "$EMULATOR_LOG" >&2
		return 1
	fi
	export EMULATOR_URL
	log "emulator at $EMULATOR_URL"
}

# cluster_stop stops the cluster (and the emulator) and removes them.
cluster_stop() {
	if [ -n "${EMULATOR_PID:-}" ]; then
		kill "$EMULATOR_PID" 2>/dev/null || true
		wait "$EMULATOR_PID" 2>/dev/null || true
	fi
	if [ -n "${CLUSTER_DIR:-}" ] && [ -d "$CLUSTER_DIR" ]; then
		as_pg "$("$PG_CONFIG" --bindir)/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
		# Nothing stays mounted: the sessions' disk images (in the default storage
		# root, next to the data directory, or in CLUSTER_STORAGE_ROOT).
		fuse_unmount_under "$CLUSTER_DIR"
		fuse_unmount_under "${CLUSTER_STORAGE_ROOT:-}"
		if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
			log "kept $CLUSTER_DIR"
		else
			rm -rf "$CLUSTER_DIR"
		fi
	fi
}

# tap_setup starts the emulator and prepares the pgTAP database sandbox_tap: the
# cloud settings pointing at the emulator, the extensions, the test roles and
# test/pgtap/setup/helpers.sql, which also makes the role "tap" (sandbox_user
# only) that pg_prove runs the files as.  Needs a cluster started with
# WORKER_DB=sandbox_tap.
tap_setup() {
	mkdir -p "$CLUSTER_DIR/bin"
	cp "$ROOT/test/emu.sh" "$CLUSTER_DIR/bin/"
	"$ROOT/test/emulator/make-test-key" -o "$CLUSTER_DIR/bin/sa-key.json" >/dev/null
	"$ROOT/test/emulator/make-test-key" -o "$CLUSTER_DIR/bin/unknown-key.json" >/dev/null
	[ "$(id -u)" = 0 ] && chown -R postgres: "$CLUSTER_DIR/bin"
	emulator_start --test-key-file "$CLUSTER_DIR/bin/sa-key.json" \
		--executor "$("$PG_CONFIG" --bindir)/cloudrun-sandbox-executor" \
		--env CLOUDRUN_SANDBOX_CREDENTIALS=metadata --max-running-tasks 512
	psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE DATABASE sandbox_tap;
ALTER DATABASE sandbox_tap SET test.emulator_url = '$EMULATOR_URL';
ALTER DATABASE sandbox_tap SET test.bin = '$CLUSTER_DIR/bin';
ALTER SYSTEM SET cloudrun_sandbox.project = 'test-project';
ALTER SYSTEM SET cloudrun_sandbox.region = 'us-central1';
ALTER SYSTEM SET cloudrun_sandbox.job = 'sandbox';
ALTER SYSTEM SET cloudrun_sandbox.bucket = 'sandbox-test';
ALTER SYSTEM SET cloudrun_sandbox.prefix = 'tap';
ALTER SYSTEM SET cloudrun_sandbox.credentials = '$CLUSTER_DIR/bin/sa-key.json';
ALTER SYSTEM SET cloudrun_sandbox.run_endpoint = '$EMULATOR_URL';
ALTER SYSTEM SET cloudrun_sandbox.storage_endpoint = '$EMULATOR_URL';
ALTER SYSTEM SET cloudrun_sandbox.token_endpoint = '$EMULATOR_URL/token';
ALTER SYSTEM SET cloudrun_sandbox.metadata_host = '${EMULATOR_URL#http://}';
-- The tests make hundreds of cloud sessions: their runners idle out sooner.
ALTER SYSTEM SET cloudrun_sandbox.cloud_warm_idle_timeout = '20s';
SELECT pg_reload_conf();
SQL
	psql -X -q -v ON_ERROR_STOP=1 -d sandbox_tap <<'SQL'
CREATE EXTENSION pgtap;
CREATE EXTENSION dblink;
CREATE EXTENSION cloudrun_sandbox;
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'alice') THEN
		CREATE ROLE alice LOGIN;
		CREATE ROLE bob LOGIN;
		CREATE ROLE carol LOGIN;
	END IF;
END $$;
GRANT sandbox_user TO alice, bob;
GRANT CREATE ON DATABASE sandbox_tap TO alice, bob;
SQL
	psql -X -q -v ON_ERROR_STOP=1 -d sandbox_tap -f "$ROOT/test/pgtap/setup/helpers.sql"
}

# run_faults FILE...: the fault suite (test/faults/): each pgTAP file runs as the
# superuser that sets up its faults (the attacks and calls in it run as alice, bob
# or tap), and after each file one more TAP line says whether the server log
# stayed clean meanwhile: no process "terminated by signal", no PANIC, no TRAP
# (a failed assertion).  Prints TAP; returns non-zero if anything failed.
run_faults() {
	local f off bad rc=0 log="$CLUSTER_DIR/server.log"
	for f in "$@"; do
		off=$(stat -c %s "$log")
		pg_prove -v -d sandbox_tap "$f" || rc=1
		bad=$(tail -c +$((off + 1)) "$log" | grep -E 'terminated by signal|PANIC|TRAP:|server process .* was terminated' | head -5 || true)
		if [ -z "$bad" ]; then
			echo "ok 1 - the server log stays clean during $(basename "$f")"
		else
			echo "not ok 1 - the server log stays clean during $(basename "$f")"
			echo "$bad" | sed 's/^/#   /'
			rc=1
		fi
	done
	return $rc
}
