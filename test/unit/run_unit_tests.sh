#!/usr/bin/env bash
# test/unit/run_unit_tests.sh: runs the C unit tests (built by make in this
# directory): test_common against the AddressSanitizer build of the executor,
# test_rmtree and test_frame.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
rc=0
"$here/test_common" "$here/../../cloudrun-sandbox-executor-asan" || rc=1
"$here/test_rmtree" || rc=1
"$here/test_frame" || rc=1
exit $rc
