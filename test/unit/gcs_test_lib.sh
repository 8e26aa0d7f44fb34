#!/usr/bin/env bash
# test/unit/gcs_test_lib.sh: what the executor's tests against the emulator
# share (sourced by test_executor_cloud.sh and test_executor_runner.sh): the
# emulator's start, TAP lines, JSON checks and GCS objects through curl.
# The sourcing script sets $top (the repository), $emulator and $BUCKET, then
# calls gcs_test_setup, which makes $tmp and traps EXIT with cleanup.

PASS=0
FAIL=0
N=0
RUNS=0
SANITIZER_REPORTS=0
pids=()

# gcs_test_setup NAME TOOL...: checks that the tools are there, makes $tmp,
# traps EXIT with cleanup, and builds the executor with AddressSanitizer,
# UBSan and LeakSanitizer (the Makefile's build: the sources are listed once,
# there) into $EXE.
gcs_test_setup() {
	local name=$1 tool
	shift
	for tool in "$@"; do
		if ! command -v "$tool" >/dev/null 2>&1; then
			echo "test_$name: $tool is required" >&2
			exit 2
		fi
	done
	tmp=$(mktemp -d "/tmp/$name.XXXXXX")
	chmod 755 "$tmp"
	trap cleanup EXIT
	EXE="$tmp/cloudrun-sandbox-executor"
	if ! make -C "$top" -s cloudrun-sandbox-executor-asan \
		PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" >&2 ||
		! cp "$top/cloudrun-sandbox-executor-asan" "$EXE"; then
		echo "test_$name: cannot build the executor" >&2
		exit 2
	fi
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
}

# cleanup stops the emulators and removes $tmp.
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	rm -rf "$tmp"
}

# start_emulator NAME ARGS...: starts an emulator, sets $url to its base URL.
start_emulator() {
	local name=$1
	shift
	"$emulator" --port 0 "$@" >"$tmp/$name.out" 2>"$tmp/$name.log" &
	local pid=$!
	pids+=("$pid")
	url=""
	for _ in $(seq 200); do
		url=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$tmp/$name.out")
		[ -n "$url" ] && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	echo "$(basename "$0"): emulator $name did not start:" >&2
	cat "$tmp/$name.log" >&2
	exit 2
}

# check DESC CMD...: one TAP line for whether CMD succeeds.
check() {
	local desc=$1
	shift
	N=$((N + 1))
	if "$@"; then
		PASS=$((PASS + 1))
		echo "ok $N - $desc"
	else
		FAIL=$((FAIL + 1))
		echo "not ok $N - $desc"
		[ -s "$tmp/why" ] && sed 's/^/#   /' "$tmp/why" | head -n 40
	fi
	: >"$tmp/why"
}

# js FILE EXPR: evaluates EXPR with j = FILE's JSON; a boolean becomes the
# exit status, anything else is printed.
js() {
	node -e '
const fs = require("fs");
let j; try { j = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch (e) { j = undefined; }
let r; try { r = eval(process.argv[2]); } catch (e) { r = false; }
if (typeof r === "boolean") process.exit(r ? 0 : 1);
process.stdout.write(r === undefined ? "" : String(r));' "$1" "$2"
}

# holds FILE EXPR: like js, explaining a failure in $tmp/why.
holds() {
	if js "$1" "$2"; then
		return 0
	fi
	{
		echo "false: $2"
		echo "in $(basename "$1"): $(head -c 1500 "$1" 2>/dev/null)"
	} >>"$tmp/why"
	return 1
}

# enc NAME: percent-encodes an object name for a URL path.
enc() {
	node -e 'process.stdout.write(encodeURIComponent(process.argv[1]))' "$1"
}

# put EMU NAME FILE [QUERY]: uploads FILE as object NAME (QUERY: more parameters, "&...").
put() {
	curl -sf -o /dev/null -X POST -H 'Content-Type: application/octet-stream' \
		--data-binary @"$3" "$1/upload/storage/v1/b/$BUCKET/o?uploadType=media&name=$(enc "$2")${4:-}"
}

# get EMU NAME OUT: downloads object NAME into OUT; fails if it is missing.
get() {
	rm -f "$3"
	curl -sf -o "$3" "$1/storage/v1/b/$BUCKET/o/$(enc "$2")?alt=media"
}

# exists EMU NAME: whether object NAME exists.
exists() {
	[ "$(curl -s -o /dev/null -w '%{http_code}' "$1/storage/v1/b/$BUCKET/o/$(enc "$2")")" = 200 ]
}

# missing EMU NAME: whether object NAME does not exist.
missing() {
	exists "$1" "$2" || return 0
	echo "object $2 exists" >>"$tmp/why"
	return 1
}

# generation EMU NAME: prints object NAME's generation.
generation() {
	curl -sf "$1/storage/v1/b/$BUCKET/o/$(enc "$2")" -o "$tmp/meta.json" && js "$tmp/meta.json" 'j.generation'
}

# exec_request FILE ID SESSION COMMAND [EXTRA_JSON]: writes an exec request
# document like the extension's (sb_request_encode), EXTRA_JSON's members replacing.
exec_request() {
	node -e '
const [file, id, session, command, extra] = process.argv.slice(1);
const r = {version: 1, op: "exec", id: Number(id), command, cwd: "/workspace", env: {},
  timeout_ms: 60000, max_output_bytes: 1048576, kill_grace_ms: 500,
  limits: {nproc: 0, memory_bytes: 0, fsize_bytes: 0, cpu_seconds: 0},
  session, prefix: ""};
Object.assign(r, JSON.parse(extra || "{}"));
require("fs").writeFileSync(file, JSON.stringify(r));' "$@"
}
