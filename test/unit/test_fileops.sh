#!/usr/bin/env bash
# test_fileops.sh -- tests of the executor's file operations (test_fileops.c):
# their protocol documents, and the executor applying them in local mode,
# outside any sandbox, with CLOUDRUN_SANDBOX_WORKSPACE and CLOUDRUN_SANDBOX_TMP
# pointing /workspace and /tmp at a scratch directory; then in cloud mode
# against the loopback GCS emulator (test/emulator, needs Node.js).  The test
# program and the executor are built with AddressSanitizer, UBSan and
# LeakSanitizer.
#
# usage: test/unit/test_fileops.sh [EXECUTOR]
#   EXECUTOR defaults to the top directory's cloudrun-sandbox-executor-asan,
#   brought up to date with make.
# Prints TAP lines and "N passed, N failed"; exits 1 if a check failed.
set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
exe=${1:-}

tmp=$(mktemp -d /tmp/test_fileops.XXXXXX)
emu_pid=
cleanup() {
	if [ -n "$emu_pid" ]; then
		kill "$emu_pid" 2>/dev/null
		wait "$emu_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

if [ -z "$exe" ]; then
	exe=$top/cloudrun-sandbox-executor-asan
	if ! make -s -C "$top" cloudrun-sandbox-executor-asan PG_CONFIG="${PG_CONFIG:-pg_config}" >&2; then
		echo "test_fileops: cannot build the executor" >&2
		echo "0 passed, 1 failed"
		exit 1
	fi
fi
if ! cc -std=gnu11 -g -O1 -Wall -Wextra -Werror -Wno-unused-parameter \
	-fsanitize=address,undefined -fno-omit-frame-pointer -I"$top/src" -o "$tmp/test_fileops" \
	"$here/test_fileops.c" "$top/src/common/sbutil.c" "$top/src/common/protocol.c" \
	"$top/src/common/http.c" "$top/src/common/gcs.c" "$top/src/common/oauth.c" \
	-ljansson -lcurl -lcrypto; then
	echo "test_fileops: cannot build the test program" >&2
	echo "0 passed, 1 failed"
	exit 1
fi

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The GCS emulator for cloud mode; the executor is run by the test, not by it.
url=
if command -v node >/dev/null 2>&1; then
	"$top/test/emulator/run" --port 0 --no-auth --no-bwrap >"$tmp/emu.out" 2>"$tmp/emu.log" &
	emu_pid=$!
	for _ in $(seq 200); do
		url=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$tmp/emu.out")
		[ -n "$url" ] && break
		kill -0 "$emu_pid" 2>/dev/null || break
		sleep 0.05
	done
fi
if [ -z "$url" ]; then
	echo "not ok 1 - the GCS emulator did not start; cloud mode was not tested"
	sed 's/^/#   /' "$tmp/emu.log" 2>/dev/null | head -n 20
	echo "0 passed, 1 failed"
	exit 1
fi

mkdir "$tmp/scratch"
"$tmp/test_fileops" "$exe" "$tmp/scratch" "$url" >"$tmp/out" 2>"$tmp/err"
rc=$?
cat "$tmp/out"
pass=$(grep -cE '^ok [0-9]+' "$tmp/out")
fail=$(grep -cE '^not ok [0-9]+' "$tmp/out")
# A crash, a sanitizer report or a wrong plan fails the run even without a "not ok".
if [ "$rc" != 0 ] && [ "$fail" = 0 ] || grep -qE 'Sanitizer|runtime error:' "$tmp/err"; then
	echo "# the test program exited with status $rc; its stderr:"
	sed 's/^/#   /' "$tmp/err" | head -n 60
	fail=$((fail + 1))
fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
