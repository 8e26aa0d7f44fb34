#!/usr/bin/env bash
# test_executor_cloud.sh -- tests of the executor's cloud mode
# (`cloudrun-sandbox-executor cloud BUCKET REQUEST_OBJECT`) against the
# loopback GCS emulator.
#
# Builds the executor with AddressSanitizer, UBSan and LeakSanitizer into a
# temporary directory, starts emulators (one without auth, one that checks
# tokens), and for each case uploads request objects with curl, runs the
# executor under bwrap with a fresh temporary directory bound at /workspace
# (as a Cloud Run container would have it), and checks the result, state and
# snapshot objects.  Every run's standard error is also checked for sanitizer
# reports.
#
# usage: test/unit/test_executor_cloud.sh
# Prints TAP lines and "N passed, N failed"; exits 1 if a check failed.
set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
emulator="$top/test/emulator/run"
BUCKET=sandbox-test

source "$here/gcs_test_lib.sh"
gcs_test_setup executor_cloud bwrap curl node tar cc

# --- emulators -----------------------------------------------------------

"$top/test/emulator/make-test-key" -o "$tmp/key.json" >/dev/null || exit 2
chmod 644 "$tmp/key.json"
start_emulator main --no-auth --executor "$EXE"
EMU=$url
start_emulator auth --test-key-file "$tmp/key.json"
AUTH_EMU=$url
echo "# emulators at $EMU (no auth) and $AUTH_EMU (auth)"

# --- helpers -------------------------------------------------------------


# make_request FILE ID SESSION COMMAND [EXTRA_JSON]: exec_request with a 20 s timeout.
make_request() {
	exec_request "$1" "$2" "$3" "$4" "$(node -e 'process.stdout.write(JSON.stringify(Object.assign({timeout_ms: 20000}, JSON.parse(process.argv[1] || "{}"))))' "${5:-}")"
}

# submit ID SESSION COMMAND [EXTRA_JSON]: uploads a request to the main
# emulator at [PREFIX/]sessions/SESSION/requests/ID.json (PREFIX from
# EXTRA_JSON's "prefix").
submit() {
	local f="$tmp/req-$2-$1.json" prefix
	make_request "$f" "$@"
	prefix=$(js "$f" 'j.prefix ? j.prefix + "/" : ""')
	put "$EMU" "${prefix}sessions/$2/requests/$1.json" "$f"
}

# run_executor EMU OBJECT [NAME=VALUE...]: runs the executor in cloud mode
# under bwrap with a new empty workspace; its output goes to $tmp/run.out and
# $tmp/run.err, its exit status to $RC.  EXTRA_BWRAP: more bwrap arguments.
EXTRA_BWRAP=()
run_executor() {
	local emu=$1 object=$2
	shift 2
	local ws
	ws=$(mktemp -d "$tmp/ws.XXXXXX")
	local envargs=(--setenv STORAGE_EMULATOR_HOST "$emu")
	for kv in "$@"; do
		envargs+=(--setenv "${kv%%=*}" "${kv#*=}")
	done
	bwrap --unshare-all --share-net --die-with-parent --new-session \
		--ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib \
		--symlink usr/lib64 /lib64 --symlink usr/sbin /sbin --ro-bind /etc /etc \
		--proc /proc --dev /dev --tmpfs /tmp --bind "$ws" /workspace \
		--ro-bind "$EXE" /tmp/cloudrun-sandbox-executor \
		--ro-bind "$tmp/key.json" /tmp/key.json "${EXTRA_BWRAP[@]}" \
		--chdir /workspace --clearenv \
		--setenv PATH /usr/local/bin:/usr/bin:/bin --setenv HOME /tmp \
		--setenv ASAN_OPTIONS "$ASAN_OPTIONS" --setenv UBSAN_OPTIONS "$UBSAN_OPTIONS" \
		"${envargs[@]}" \
		/tmp/cloudrun-sandbox-executor cloud "$BUCKET" "$object" \
		>"$tmp/run${RUN_TAG:-}.out" 2>"$tmp/run${RUN_TAG:-}.err"
	RC=$?
	RUNS=$((RUNS + 1))
	if grep -qE 'Sanitizer|runtime error:' "$tmp/run${RUN_TAG:-}.err"; then
		SANITIZER_REPORTS=$((SANITIZER_REPORTS + 1))
		echo "# sanitizer report from a run of $object:"
		sed 's/^/#   /' "$tmp/run${RUN_TAG:-}.err" | head -n 40
	fi
	rm -rf "$ws"
}

# run_request ID SESSION [NAME=VALUE...]: runs request ID of SESSION (no
# prefix) on the main emulator and downloads its result into $tmp/result.json.
run_request() {
	local id=$1 session=$2
	shift 2
	run_executor "$EMU" "sessions/$session/requests/$id.json" "$@"
	get "$EMU" "sessions/$session/results/$id.json" "$tmp/result.json"
	get "$EMU" "sessions/$session/state.json" "$tmp/state.json"
}

# rc_is N: whether the last run exited with N (explains otherwise).
rc_is() {
	[ "$RC" = "$1" ] && return 0
	{
		echo "executor exited $RC, expected $1; its stderr:"
		head -c 2000 "$tmp/run.err"
	} >>"$tmp/why"
	return 1
}

# err_has REGEX: whether the last run's standard error matches REGEX.
err_has() {
	grep -qE "$1" "$tmp/run.err" && return 0
	echo "stderr does not match /$1/: $(head -c 1000 "$tmp/run.err")" >>"$tmp/why"
	return 1
}

: >"$tmp/why"

# --- a new session, then the same session from a fresh container -------------

echo "# state and workspace carry over between containers"
submit 1 s1 'mkdir -p d && cd d && export FOO=bar && echo hi > f.txt && echo made'
run_request 1 s1
check "first command in a new session: exit 0, succeeded" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"succeeded\" && j.exit_code === 0 && j.stdout === \"made\\n\""'
check "it creates state.json with the new cwd, env, last_execution and snapshot" \
	holds "$tmp/state.json" 'j.cwd === "/workspace/d" && j.env.FOO === "bar" && j.last_execution === 1 && j.workspace === "sessions/s1/workspace/1.tar"'
check "the result carries the new state" \
	holds "$tmp/result.json" 'j.state.cwd === "/workspace/d" && j.state.env.FOO === "bar" && j.error === null'
G1=$(generation "$EMU" sessions/s1/state.json)
check "result state_generation is state.json's GCS generation" \
	holds "$tmp/result.json" "j.state_generation === $G1"
get "$EMU" sessions/s1/workspace/1.tar "$tmp/1.tar"
check "the snapshot is a plain tar of the workspace's contents" \
	eval 'tar -tf "$tmp/1.tar" | grep -qx "./d/f.txt"'

submit 2 s1 'pwd; echo "$FOO ${IGNORED:-unset}"; cat f.txt' '{"cwd":"/","env":{"IGNORED":"1"}}'
run_request 2 s1
check "second command in a fresh workspace sees cwd, env and files (request cwd/env ignored)" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"succeeded\" && j.stdout === \"/workspace/d\\nbar unset\\nhi\\n\""'
G2=$(generation "$EMU" sessions/s1/state.json)
check "state_generation is the new generation, and it changed" \
	holds "$tmp/result.json" "j.state_generation === $G2 && $G2 !== $G1"
check "the previous snapshot is deleted, the new one named in the state" \
	eval 'missing "$EMU" sessions/s1/workspace/1.tar && exists "$EMU" sessions/s1/workspace/2.tar && holds "$tmp/state.json" "j.workspace === \"sessions/s1/workspace/2.tar\" && j.last_execution === 2"'

submit 3 s1 'cd .. && export BAZ=qux && echo bye && exit 3'
run_request 3 s1
check "exit 3: the executor exits 0, the result is failed with exit code 3" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"failed\" && j.exit_code === 3 && j.stdout === \"bye\\n\""'
check "exit 3 keeps cd and export" \
	eval 'holds "$tmp/state.json" "j.cwd === \"/workspace\" && j.env.BAZ === \"qux\" && j.env.FOO === \"bar\"" && holds "$tmp/result.json" "j.state.cwd === \"/workspace\" && j.state.env.BAZ === \"qux\""'

submit 4 s1 'echo oops >&2; false'
run_request 4 s1
check "a failing command is a result: exit 0, status failed, its stderr kept" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"failed\" && j.exit_code === 1 && j.stderr === \"oops\\n\""'

submit 5 s1 'echo start; sleep 30' '{"timeout_ms":500}'
start=$(date +%s)
run_request 5 s1
check "a timeout kills the command: status timed_out, exit code 128+15" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"timed_out\" && j.exit_code === 143 && j.stdout === \"start\\n\"" && [ $(( $(date +%s) - start )) -lt 15 ]'

submit 6 s1 'head -c 5000 /dev/zero | tr "\0" a; echo err >&2' '{"max_output_bytes":100}'
run_request 6 s1
check "output over max_output_bytes is truncated and says so" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"succeeded\" && j.stdout === \"a\".repeat(100) && j.stdout_truncated === true && j.stderr === \"err\\n\" && j.stderr_truncated === false"'

# --- duplicates --------------------------------------------------------------

echo "# duplicate runs"
RG=$(generation "$EMU" sessions/s1/results/2.json)
SG=$(generation "$EMU" sessions/s1/state.json)
cp "$tmp/result.json" "$tmp/result6.json"
get "$EMU" sessions/s1/results/2.json "$tmp/before.json"
run_executor "$EMU" sessions/s1/requests/2.json
get "$EMU" sessions/s1/results/2.json "$tmp/after.json"
check "a duplicate run exits 0 and leaves the first result and the state unchanged" \
	eval 'rc_is 0 && [ "$(generation "$EMU" sessions/s1/results/2.json)" = "$RG" ] && cmp -s "$tmp/before.json" "$tmp/after.json" && [ "$(generation "$EMU" sessions/s1/state.json)" = "$SG" ]'

# The latest execution saved the state; pretend its result was lost.
curl -sf -o /dev/null -X DELETE "$EMU/storage/v1/b/$BUCKET/o/$(enc sessions/s1/results/6.json)"
run_request 6 s1
check "a rerun after the state was saved but the result lost does not run the command twice" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"error\" && /already ran/.test(j.error) && j.state_generation === $SG && j.state.cwd === \"/workspace\"" && [ "$(generation "$EMU" sessions/s1/state.json)" = "$SG" ]'

# --- concurrent writers ------------------------------------------------------

echo "# a stale state generation"
submit 1 s2 'echo one > one.txt'
run_request 1 s2
GS=$(generation "$EMU" sessions/s2/state.json)
submit 2 s2 'sleep 3; echo slow > slow.txt'
submit 3 s2 'echo fast > fast.txt'
(
	RUN_TAG=slow
	run_executor "$EMU" sessions/s2/requests/2.json
	echo "$RC" >"$tmp/slow.rc"
) &
slow=$!
sleep 1.5
run_request 3 s2
check "the command that started later but finished first succeeds" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"succeeded\"" && holds "$tmp/state.json" "j.last_execution === 3"'
wait "$slow"
get "$EMU" sessions/s2/results/2.json "$tmp/result.json"
get "$EMU" sessions/s2/state.json "$tmp/state.json"
check "the slow one reports an error: the session's state changed (generation expected)" \
	eval '[ "$(cat "$tmp/slow.rc")" = 0 ] && holds "$tmp/result.json" "j.status === \"error\" && j.error === \"the session'"'"'s state changed while the command ran (generation $GS expected)\" && j.state_generation === undefined && j.state === undefined && j.exit_code === 0"'
check "the slow one's state and snapshot are not kept" \
	eval 'holds "$tmp/state.json" "j.last_execution === 3 && j.workspace === \"sessions/s2/workspace/3.tar\"" && missing "$EMU" sessions/s2/workspace/2.tar'
if grep -qE 'Sanitizer|runtime error:' "$tmp/runslow.err"; then
	SANITIZER_REPORTS=$((SANITIZER_REPORTS + 1))
	sed 's/^/#   /' "$tmp/runslow.err" | head -n 40
fi
submit 4 s2 'ls *.txt | tr "\n" " "'
run_request 4 s2
check "the next command sees the winner's files only" \
	holds "$tmp/result.json" 'j.stdout === "fast.txt one.txt "'

# --- bad requests and damaged sessions ---------------------------------------

echo "# bad requests"
run_executor "$EMU" sessions/s1/requests/99.json
check "a missing request object: exit 1 with a message, no result" \
	eval 'rc_is 1 && err_has "cannot read the request gs://sandbox-test/sessions/s1/requests/99.json" && missing "$EMU" sessions/s1/results/99.json'

printf '{"version":1,"op":"exec",' >"$tmp/bad.json"
put "$EMU" sessions/s3/requests/1.json "$tmp/bad.json"
run_executor "$EMU" sessions/s3/requests/1.json
check "an undecodable request: exit 1 with a message" \
	eval 'rc_is 1 && err_has "request gs://sandbox-test/sessions/s3/requests/1.json is invalid: request is not valid JSON"'

run_executor "$EMU" sessions/s3/request-1.json
check "a request object not named .../requests/ID.json: exit 1 with a message" \
	eval 'rc_is 1 && err_has "is not named PREFIX/sessions/SESSION/requests/ID.json"'

make_request "$tmp/other.json" 7 s1 'touch /workspace/hacked'
put "$EMU" sessions/s3/requests/7.json "$tmp/other.json"
run_executor "$EMU" sessions/s3/requests/7.json
get "$EMU" sessions/s3/results/7.json "$tmp/result.json"
check "a request for another session than its object's: an error result, exit 0, nothing run" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"error\" && /does not match its prefix, session and id/.test(j.error)" && missing "$EMU" sessions/s3/state.json && missing "$EMU" sessions/s1/results/7.json'

echo '{"version":1,"generation":4,"cwd":"/workspace","env":{},"last_execution":6,"workspace":"sessions/s4/workspace/6.tar"}' >"$tmp/st.json"
put "$EMU" sessions/s4/state.json "$tmp/st.json"
submit 7 s4 'echo never'
run_request 7 s4
check "a missing workspace snapshot is an error result, not a crash" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"error\" && j.error === \"workspace snapshot sessions/s4/workspace/6.tar is missing\" && j.stdout === \"\""'

echo '{"version":1,"generation":4,"cwd":"/workspace","env":{},"last_execution":6,"workspace":"sessions/s1/workspace/6.tar"}' >"$tmp/st.json"
put "$EMU" sessions/s5/state.json "$tmp/st.json"
submit 8 s5 'echo never'
run_request 8 s5
check "a state naming another session's snapshot is refused" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"error\" && /outside the session/.test(j.error)" && exists "$EMU" sessions/s1/workspace/6.tar'

echo "# limits and layout"
submit 1 s6 'echo small > small.txt'
run_request 1 s6 CLOUDRUN_SANDBOX_MAX_SNAPSHOT_BYTES=100000
G6=$(generation "$EMU" sessions/s6/state.json)
submit 2 s6 'head -c 300000 /dev/urandom > big.bin; cd /tmp; echo wrote' 
run_request 2 s6 CLOUDRUN_SANDBOX_MAX_SNAPSHOT_BYTES=100000
check "a workspace over CLOUDRUN_SANDBOX_MAX_SNAPSHOT_BYTES: an error result with the output, state unchanged" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"error\" && /larger than 100000 bytes/.test(j.error) && j.stdout === \"wrote\\n\" && j.state === undefined" && [ "$(generation "$EMU" sessions/s6/state.json)" = "$G6" ] && missing "$EMU" sessions/s6/workspace/2.tar'

submit 3 s6 'echo x' 
run_request 3 s6 CLOUDRUN_SANDBOX_MAX_SNAPSHOT_BYTES=lots
check "a malformed CLOUDRUN_SANDBOX_MAX_SNAPSHOT_BYTES is an error result" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"error\" && /CLOUDRUN_SANDBOX_MAX_SNAPSHOT_BYTES/.test(j.error)"'

submit 1 s7 'mkdir -p x && cd x && export P=1' '{"prefix":"team1"}'
run_executor "$EMU" team1/sessions/s7/requests/1.json
get "$EMU" team1/sessions/s7/results/1.json "$tmp/result.json"
get "$EMU" team1/sessions/s7/state.json "$tmp/state.json"
check "a prefix puts the session's objects under PREFIX/sessions/" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"succeeded\"" && holds "$tmp/state.json" "j.cwd === \"/workspace/x\" && j.workspace === \"team1/sessions/s7/workspace/1.tar\"" && missing "$EMU" sessions/s7/state.json'

submit 1 s8 'mkdir -p /tmp/alt/w && echo alt > /tmp/alt/w/a.txt && echo more > /workspace/not-kept'
run_request 1 s8 CLOUDRUN_SANDBOX_WORKSPACE=/tmp/alt
submit 2 s8 'cat /tmp/alt/w/a.txt; ls /workspace'
run_request 2 s8 CLOUDRUN_SANDBOX_WORKSPACE=/tmp/alt
check "CLOUDRUN_SANDBOX_WORKSPACE chooses the directory that is snapshotted and restored" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"succeeded\" && j.stdout === \"alt\\n\""'

# --- faults ------------------------------------------------------------------

echo "# under injected faults"
for i in $(seq 1 10); do
	submit "$i" s9 'export COUNT=$(( ${COUNT:-0} + 1 )); echo $COUNT >> log.txt; echo $COUNT'
done
curl -sf -o /dev/null -X POST "$EMU/_emulator/faults" \
	-d '{"rate_503":0.2,"rate_429":0.1,"rate_reset":0.05}'
fault_ok=0
for i in $(seq 1 10); do
	run_executor "$EMU" "sessions/s9/requests/$i.json"
	[ "$RC" = 0 ] && fault_ok=$((fault_ok + 1))
	[ "$RC" = 0 ] || { echo "# run $i exited $RC:"; sed 's/^/#   /' "$tmp/run.err" | head -5; }
done
curl -sf -o "$tmp/stats.json" "$EMU/_emulator/stats"
curl -sf -o /dev/null -X POST "$EMU/_emulator/faults" -d '{}'
all_ok=1
for i in $(seq 1 10); do
	get "$EMU" "sessions/s9/results/$i.json" "$tmp/r.json" &&
		js "$tmp/r.json" "j.status === 'succeeded' && j.stdout === '$i\n'" || all_ok=0
done
check "10 executions under 503/429/reset faults all exit 0" eval '[ $fault_ok = 10 ]'
check "faults were injected" holds "$tmp/stats.json" 'Object.values(j.faults_injected || {}).reduce((a, b) => a + b, 0) > 0'
check "... and each produced the right result in order" eval '[ $all_ok = 1 ]'
submit 11 s9 'tr "\n" " " < log.txt'
run_request 11 s9
check "... and the session holds all 10 updates" \
	eval 'holds "$tmp/result.json" "j.stdout === \"1 2 3 4 5 6 7 8 9 10 \"" && holds "$tmp/state.json" "j.env.COUNT === \"10\""'

# --- through the emulator's Cloud Run job -------------------------------------

echo "# as a Cloud Run job task"
submit 1 s10 'echo from-job; export J=1'
RUNP=$EMU/v2/projects/test-proj/locations/us-central1
curl -sf -o "$tmp/op.json" -X POST -H 'Content-Type: application/json' "$RUNP/jobs/sandbox:run" \
	-d '{"overrides":{"containerOverrides":[{"args":["cloud","sandbox-test","sessions/s10/requests/1.json"]}],"timeout":"60s"}}'
op=$(js "$tmp/op.json" 'j.name')
exec_id=$(js "$tmp/op.json" 'j.metadata.name.split("/").pop()')
for _ in $(seq 1 300); do
	curl -sf -o "$tmp/op.json" "$EMU/v2/$op"
	js "$tmp/op.json" 'j.done === true' && break
	sleep 0.1
done
curl -s -o "$tmp/logs.txt" "$EMU/_emulator/executions/$exec_id/logs"
get "$EMU" sessions/s10/results/1.json "$tmp/result.json"
check "the job's task (the emulator's container) runs the request and succeeds" \
	eval 'holds "$tmp/op.json" "j.done === true && !j.error" && holds "$tmp/result.json" "j.status === \"succeeded\" && j.stdout === \"from-job\\n\" && j.state.env.J === \"1\""'
if grep -qE 'Sanitizer|runtime error:' "$tmp/logs.txt"; then
	SANITIZER_REPORTS=$((SANITIZER_REPORTS + 1))
	sed 's/^/#   /' "$tmp/logs.txt" | head -n 40
fi

# --- credentials -------------------------------------------------------------

echo "# credentials"
make_request "$tmp/a1.json" 1 a1 'echo authed'
# auth_curl PATH CURL_ARGS...: curl on the auth emulator with a token from
# its metadata server.
auth_curl() {
	local path=$1 tok
	shift
	tok=$(curl -sf -H 'Metadata-Flavor: Google' \
		"$AUTH_EMU/computeMetadata/v1/instance/service-accounts/default/token" |
		node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>process.stdout.write(JSON.parse(s).access_token))')
	curl -sf -H "Authorization: Bearer $tok" "$@" "$AUTH_EMU/$path"
}
# auth_put NAME FILE / auth_get NAME OUT: upload and download on the auth emulator.
auth_put() {
	auth_curl "upload/storage/v1/b/$BUCKET/o?uploadType=media&name=$(enc "$1")" -o /dev/null \
		-X POST -H 'Content-Type: application/octet-stream' --data-binary @"$2"
}
auth_get() {
	rm -f "$2"
	auth_curl "storage/v1/b/$BUCKET/o/$(enc "$1")?alt=media" -o "$2"
}
auth_put sessions/a1/requests/1.json "$tmp/a1.json"
run_executor "$AUTH_EMU" sessions/a1/requests/1.json \
	CLOUDRUN_SANDBOX_CREDENTIALS=/tmp/key.json CLOUDRUN_SANDBOX_TOKEN_ENDPOINT="$AUTH_EMU/token"
auth_get sessions/a1/results/1.json "$tmp/result.json"
check "a service-account key file signs in (CLOUDRUN_SANDBOX_TOKEN_ENDPOINT)" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"succeeded\" && j.stdout === \"authed\\n\""'
check "... and nothing secret is printed" \
	eval '! grep -qiE "bearer|private|BEGIN|eyJ" "$tmp/run.err" "$tmp/run.out"'

make_request "$tmp/a2.json" 1 a2 'echo meta'
auth_put sessions/a2/requests/1.json "$tmp/a2.json"
run_executor "$AUTH_EMU" sessions/a2/requests/1.json \
	CLOUDRUN_SANDBOX_CREDENTIALS=metadata CLOUDRUN_SANDBOX_METADATA_HOST="${AUTH_EMU#http://}"
auth_get sessions/a2/results/1.json "$tmp/result.json"
check "the metadata server's token works (CLOUDRUN_SANDBOX_METADATA_HOST)" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"succeeded\" && j.stdout === \"meta\\n\""'

make_request "$tmp/a3.json" 1 a3 'echo never'
auth_put sessions/a3/requests/1.json "$tmp/a3.json"
run_executor "$AUTH_EMU" sessions/a3/requests/1.json
check "STORAGE_EMULATOR_HOST alone means no credentials: refused, exit 1 with a message" \
	eval 'rc_is 1 && err_has "cannot (read|claim) the request gs://sandbox-test/sessions/a3/requests/1\.(json|claim): .*(401|auth|nauthenticated|credential)"'

run_executor "$AUTH_EMU" sessions/a3/requests/1.json CLOUDRUN_SANDBOX_CREDENTIALS=/tmp/nokey.json
check "an unreadable key file: exit 1, naming the file" \
	eval 'rc_is 1 && err_has "cannot set up credentials: .*/tmp/nokey.json"'

# --- the command's own sandbox -----------------------------------------------

echo "# the command runs in a sandbox of its own (isolation)"
# A key file where the command could otherwise read it (/etc), used by the executor.
ETC_KEY=/etc/hostname
KEYENV=(CLOUDRUN_SANDBOX_CREDENTIALS=$ETC_KEY CLOUDRUN_SANDBOX_TOKEN_ENDPOINT="$AUTH_EMU/token")
# The executors of this section find the key at $ETC_KEY, as in a container whose image holds one.
EXTRA_BWRAP=(--ro-bind "$tmp/key.json" "$ETC_KEY")
# run_keyed ID SESSION COMMAND [EXTRA_JSON]: runs a request on the auth emulator.
run_keyed() {
	local id=$1 session=$2
	make_request "$tmp/k.json" "$@"
	auth_put "sessions/$session/requests/$id.json" "$tmp/k.json"
	run_executor "$AUTH_EMU" "sessions/$session/requests/$id.json" "${KEYENV[@]}" \
		SECRET_SETTING=s3cr3t-env
	auth_get "sessions/$session/results/$id.json" "$tmp/result.json"
}
run_keyed 1 i1 'env; echo ---; cat /proc/1/environ 2>/dev/null | tr "\0" "\n"; echo ---; cat /etc/hostname 2>/dev/null; echo ---; echo pid $$'
check "the command sees none of the executor's environment (env, /proc/1/environ)" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"succeeded\" && !/SECRET_SETTING|s3cr3t|CLOUDRUN_SANDBOX|STORAGE_EMULATOR|GCE_METADATA/.test(j.stdout)"'
check "... nor the key file the executor signs in with (an empty file in its place)" \
	eval 'holds "$tmp/result.json" "!/private_key|client_email|BEGIN/.test(j.stdout) && j.stdout.split(\"---\\n\")[2] === \"\""'
check "... and is the second process of its sandbox (the first is the executor in local mode)" \
	holds "$tmp/result.json" 'j.stdout.endsWith("pid 2\n")'

run_keyed 2 i1 "curl -s -m 5 -o /dev/null -w '%{http_code}' -H 'Metadata-Flavor: Google' '$AUTH_EMU/computeMetadata/v1/instance/service-accounts/default/token'; echo \" metadata=\$?\"; curl -s -m 5 '$AUTH_EMU/storage/v1/b/$BUCKET/o' | head -c 200; echo \" list=\$?\""
check "the command has no network: neither the metadata server nor Cloud Storage answers it" \
	eval 'rc_is 0 && holds "$tmp/result.json" "/metadata=[1-9]/.test(j.stdout) && /list=0/.test(j.stdout) && !/items|access_token/.test(j.stdout)"'

run_keyed 3 i1 'unshare -U true 2>/dev/null && echo nested-userns || echo no-nested-userns; touch /usr/x 2>/dev/null || echo ro-usr; ls /tmp/key.json 2>/dev/null || echo own-tmp'
check "it cannot make user namespaces of its own, /usr is read-only, /tmp is its own" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.stdout === \"no-nested-userns\\nro-usr\\nown-tmp\\n\""'

run_keyed 4 i1 "curl -s -m 5 -o /dev/null -w 'metadata=%{http_code}' -H 'Metadata-Flavor: Google' '$AUTH_EMU/computeMetadata/v1/instance/service-accounts/default/token'" '{"isolation":"none"}'
check "with isolation none (an operator's opt-out) the command runs in the container: the metadata server answers" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"succeeded\" && j.stdout === \"metadata=200\""'

make_request "$tmp/k.json" 5 i1 'echo never' '{"isolation":"maybe"}'
auth_put sessions/i1/requests/5.json "$tmp/k.json"
run_executor "$AUTH_EMU" sessions/i1/requests/5.json "${KEYENV[@]}"
check "an unknown isolation is an invalid request: nothing runs" \
	eval 'rc_is 1 && err_has "request has an unknown isolation"'

auth_get sessions/i1/state.json "$tmp/state.json"
GI=$(js "$tmp/state.json" 'j.last_execution')
make_request "$tmp/k.json" 6 i1 'touch ran.txt; echo ran'
auth_put sessions/i1/requests/6.json "$tmp/k.json"
run_executor "$AUTH_EMU" sessions/i1/requests/6.json "${KEYENV[@]}" CLOUDRUN_SANDBOX_BWRAP=/nonexistent/bwrap
auth_get sessions/i1/results/6.json "$tmp/result.json"
auth_get sessions/i1/state.json "$tmp/state.json"
check "no sandbox possible: the command is not run, an error result says why and names the opt-out" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"error\" && /not run: its sandbox .*could not be created \\(cannot execute \\/nonexistent\\/bwrap/.test(j.error) && /cloud_isolation = .none./.test(j.error) && j.stdout === \"\" && j.state === undefined" && holds "$tmp/state.json" "j.last_execution === $GI"'
run_keyed 7 i1 'ls ran.txt 2>&1; true'
check "... and the session is as it was" \
	holds "$tmp/result.json" '/No such file/.test(j.stdout)'

# Outside any container sandbox (no covered /proc), the command's sandbox has a /proc of its own.
ws=$(mktemp -d "$tmp/hostws.XXXXXX")
EXTRA_BWRAP=()
submit 1 i2 'echo pid $$; ls /proc | grep -c "^[0-9]"'
env -i PATH=/usr/bin:/bin STORAGE_EMULATOR_HOST="$EMU" CLOUDRUN_SANDBOX_WORKSPACE="$ws" \
	ASAN_OPTIONS="$ASAN_OPTIONS" UBSAN_OPTIONS="$UBSAN_OPTIONS" SECRET_SETTING=s3cr3t-env \
	"$EXE" cloud "$BUCKET" sessions/i2/requests/1.json >"$tmp/run.out" 2>"$tmp/run.err"
RC=$?
get "$EMU" sessions/i2/results/1.json "$tmp/result.json"
check "where the container allows it, the sandbox has a /proc of its own: only its processes" \
	eval 'rc_is 0 && holds "$tmp/result.json" "j.status === \"succeeded\" && /^pid 2\\n[1-5]\\n$/.test(j.stdout)" && ! grep -q "the first choice failed" "$tmp/run.err"'

# --- sanitizers --------------------------------------------------------------

check "no AddressSanitizer, LeakSanitizer or UBSan reports in $RUNS runs" \
	eval '[ $SANITIZER_REPORTS = 0 ]'

echo "1..$N"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
