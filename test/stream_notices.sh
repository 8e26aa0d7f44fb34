#!/usr/bin/env bash
# test/stream_notices.sh: issue 14 part 3, sandbox.exec(..., stream => true) on
# the local backend, seen through a libpq client (test/stream_notices.c) that
# records when each NOTICE arrives: one per line of output, in order, spread
# over the command's run and before the result; stderr's prefixed "stderr: ";
# the row still has the whole output; a flood is throttled (one NOTICE says
# how many lines were not shown) and a long line is cut; stream => false and
# the setting's default send none; cloudrun_sandbox.stream_output = on streams
# when stream is NULL.  Starts a throwaway cluster of its own (the extension
# installed for $PG_CONFIG); the calls run as alice (only sandbox_user).
# Prints TAP and "N passed, N failed".
set -uo pipefail
source "$(dirname "$0")/lib.sh"
set +e

unset PGPORT PGHOST PGDATA CLUSTER_DIR EMULATOR_PID
WORKER_DB=sandbox_tap cluster_start
tap_setup >/dev/null

bin="$CLUSTER_DIR/stream_notices"
cc -O2 -Wall -Wextra -Werror -I"$("$PG_CONFIG" --includedir)" -o "$bin" "$ROOT/test/stream_notices.c" \
	-L"$("$PG_CONFIG" --libdir)" -Wl,-rpath,"$("$PG_CONFIG" --libdir)" -lpq
check $? "the libpq client builds"
conn="host=$PGHOST port=$PGPORT dbname=sandbox_tap user=alice"
run() { "$bin" "$conn" "$1"; }
# field N of the lines starting with $1 in $2
lines() { grep "^$1 " <<<"$2"; }

out=$(run "SELECT stdout FROM sandbox.exec('for i in 1 2 3; do echo \$i; sleep 1; done', 'st', stream => true)")
echo "$out" | sed 's/^/# /'
[ "$(lines NOTICE "$out" | cut -d' ' -f3- | tr '\n' ,)" = "1,2,3," ]
check $? "one NOTICE per line, in order: 1, 2, 3"
t1=$(lines NOTICE "$out" | sed -n 1p | cut -d' ' -f2)
t3=$(lines NOTICE "$out" | sed -n 3p | cut -d' ' -f2)
tr=$(lines RESULT "$out" | cut -d' ' -f2)
awk -v a="$t1" -v b="$t3" 'BEGIN { exit !(b - a >= 1.0) }'
check $? "spread over time: the third came $t1 -> $t3 s, at least a second after the first"
awk -v a="$t1" -v r="$tr" 'BEGIN { exit !(r - a >= 1.0) }'
check $? "the first came well before the result ($t1 s, result at $tr s)"
[ "$(lines RESULT "$out" | cut -d' ' -f3-)" = "1|2|3|" ]
check $? "and the row still has the whole output"

out=$(run "SELECT stderr FROM sandbox.exec('echo out; echo oops >&2', 'st', stream => true)")
[ "$(lines NOTICE "$out" | cut -d' ' -f3- | sort | tr '\n' ,)" = "out,stderr: oops," ]
check $? "stderr's lines come prefixed 'stderr: '"

out=$(run "SELECT length(stdout) FROM sandbox.exec('seq 1 50000', 'st', stream => true)")
n=$(lines NOTICE "$out" | grep -cv 'not shown')
echo "$out" | grep -v "^NOTICE [0-9.]* [0-9]*$" | sed "s/^/# /"
want=$(seq 1 50000 | wc -c)
[ "$(lines RESULT "$out" | cut -d' ' -f3)" = "$want" ] && [ "$n" -ge 100 ] && [ "$n" -lt 5000 ]
check $? "a flood of 50000 lines is throttled to $n NOTICEs (100 a second); the row has all $want bytes"
lines NOTICE "$out" | grep -qE '^NOTICE [0-9.]+ [0-9]+ lines of output not shown$'
check $? "and one NOTICE says how many lines were not shown"

out=$(run "SELECT 1 FROM sandbox.exec('head -c 10000 /dev/zero | tr \"\\\\0\" a; echo', 'st', stream => true)")
len=$(lines NOTICE "$out" | head -1 | cut -d' ' -f3- | wc -c)
lines NOTICE "$out" | head -1 | grep -q ' \[\.\.\.\]$' && [ "$len" -le 4200 ]
check $? "a 10000-byte line is cut ($len bytes, ending [...])"

out=$(run "SELECT stdout FROM sandbox.exec('echo quiet', 'st')")
[ -z "$(lines NOTICE "$out")" ] && [ "$(lines RESULT "$out" | cut -d' ' -f3-)" = "quiet|" ]
check $? "without stream (and the setting off) no NOTICE is sent"
out=$(run "SET cloudrun_sandbox.stream_output = on; SELECT stdout FROM sandbox.exec('echo loud', 'st')")
[ "$(lines NOTICE "$out" | cut -d' ' -f3-)" = "loud" ]
check $? "cloudrun_sandbox.stream_output = on streams when stream is NULL"
out=$(run "SET cloudrun_sandbox.stream_output = on; SELECT stdout FROM sandbox.exec('echo hush', 'st', stream => false)")
[ -z "$(lines NOTICE "$out")" ]
check $? "stream => false overrides the setting"


# The cloud backend (the emulator): the executor saves the output so far every second,
# the backend reads it while it waits.
out=$(run "SET cloudrun_sandbox.backend = cloudrun; SELECT stdout FROM sandbox.exec('for i in 1 2 3 4 5 6; do echo \$i; sleep 1; done; echo oops >&2', 'st_cloud', stream => true)")
echo "$out" | sed 's/^/# /'
[ "$(lines NOTICE "$out" | cut -d' ' -f3- | tr '\n' ,)" = "1,2,3,4,5,6,stderr: oops," ]
check $? "cloud backend: one NOTICE per line, in order, stderr's too"
t1=$(lines NOTICE "$out" | sed -n 1p | cut -d' ' -f2)
t6=$(lines NOTICE "$out" | sed -n 6p | cut -d' ' -f2)
tr=$(lines RESULT "$out" | cut -d' ' -f2)
awk -v a="$t1" -v b="$t6" -v r="$tr" 'BEGIN { exit !(b - a >= 2.0 && r - a >= 2.0) }'
check $? "cloud backend: spread over time ($t1 -> $t6 s, result at $tr s)"
[ "$(lines RESULT "$out" | cut -d' ' -f3-)" = "1|2|3|4|5|6|" ]
check $? "cloud backend: the row still has the whole output"

psql -X -q -At -d sandbox_tap -U alice -c "SELECT sandbox.drop_session('st'), sandbox.drop_session('st_cloud')" >/dev/null
tap_finish
