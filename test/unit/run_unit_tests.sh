#!/usr/bin/env bash
# test/unit/run_unit_tests.sh: runs the C unit tests (built by make in this
# directory) against the AddressSanitizer build of the executor.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
"$here/test_common" "$here/../../cloudrun-sandbox-executor-asan"
