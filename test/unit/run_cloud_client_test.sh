#!/usr/bin/env bash
# run_cloud_client_test.sh -- runs test_cloud_client (the shared HTTP/OAuth/GCS
# client's TAP test) against two loopback emulators: one with default token
# lifetimes and one with --token-ttl 2, both trusting a freshly made key.
#
# usage: test/unit/run_cloud_client_test.sh [PATH_TO_test_cloud_client]
# Exits with the test program's status (0 = all passed).
set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin=${1:-$here/test_cloud_client}
emulator="$top/test/emulator/run"

if [ ! -x "$bin" ]; then
	echo "run_cloud_client_test: $bin not built (make -f test/unit/Makefile.cloud)" >&2
	exit 2
fi

tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

"$top/test/emulator/make-test-key" -o "$tmp/key.json" || exit 2

# start_emulator NAME ARGS...: starts an emulator, sets $url to its base URL.
start_emulator() {
	local name=$1
	shift
	"$emulator" --port 0 --test-key-file "$tmp/key.json" "$@" \
		>"$tmp/$name.out" 2>"$tmp/$name.log" &
	local pid=$!
	pids+=("$pid")
	url=""
	for _ in $(seq 200); do
		url=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$tmp/$name.out")
		[ -n "$url" ] && return 0
		if ! kill -0 "$pid" 2>/dev/null; then
			break
		fi
		sleep 0.05
	done
	echo "run_cloud_client_test: emulator $name did not start:" >&2
	cat "$tmp/$name.log" >&2
	exit 2
}

start_emulator main
main_url=$url
start_emulator shortttl --token-ttl 2
ttl_url=$url

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

"$bin" "$main_url" "$tmp/key.json" "$ttl_url"
rc=$?
if [ $rc -ne 0 ]; then
	echo "# emulator log (last 40 lines):"
	tail -n 40 "$tmp/main.log" | sed 's/^/#   /'
fi
exit $rc
