#!/usr/bin/env bash
# Tests of the Cloud Run / GCS / OAuth emulator, with curl.
# usage: test/emulator/test_emulator.sh        (prints "N passed, N failed")
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d /tmp/emulator-test.XXXXXX)
PASS=0
FAIL=0
EMU_PID=""
BASE=""
CODE=""

cleanup() {
	[ -n "$EMU_PID" ] && kill "$EMU_PID" 2>/dev/null && wait "$EMU_PID" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

# --- helpers -----------------------------------------------------------------

# start_emu ARGS...: start an emulator on a free port; sets EMU_PID and BASE.
start_emu() {
	local n=$((${EMU_N:-0} + 1))
	EMU_N=$n
	"$HERE/run" --port 0 "$@" >"$TMP/emu$n.out" 2>"$TMP/emu$n.err" &
	EMU_PID=$!
	local i line=""
	for i in $(seq 1 100); do
		line=$(head -n1 "$TMP/emu$n.out" 2>/dev/null)
		[ -n "$line" ] && break
		sleep 0.1
	done
	BASE=$(printf '%s' "$line" | sed -n 's#^listening on \(http://127\.0\.0\.1:[0-9][0-9]*\)$#\1#p')
	if [ -z "$BASE" ]; then
		echo "emulator did not start:"; cat "$TMP/emu$n.err"; exit 1
	fi
	EMU_ERR="$TMP/emu$n.err"
}

stop_emu() {
	kill "$EMU_PID" 2>/dev/null
	wait "$EMU_PID" 2>/dev/null
	EMU_RC=$?
	EMU_PID=""
}

# http METHOD PATH [curl args...]: CODE = status, body in $TMP/body.
http() {
	local m=$1 p=$2
	shift 2
	CODE=$(curl -s -o "$TMP/body" -w '%{http_code}' -X "$m" "$BASE$p" "$@")
	CURL_RC=$?
}

# js EXPR: evaluate a JavaScript expression with j = the JSON body.
# A boolean result is the exit status; anything else is printed.
js() {
	node -e '
const fs = require("fs");
let j; try { j = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch (e) { j = undefined; }
let r; try { r = eval(process.argv[2]); } catch (e) { r = false; }
if (typeof r === "boolean") process.exit(r ? 0 : 1);
process.stdout.write(r === undefined ? "" : String(r));' "$TMP/body" "$1"
}

ok() {
	local desc=$1
	shift
	if "$@"; then
		PASS=$((PASS + 1)); echo "ok   - $desc"
	else
		FAIL=$((FAIL + 1)); echo "FAIL - $desc [HTTP $CODE: $(head -c 400 "$TMP/body" 2>/dev/null)]"
	fi
}

# expect CODE JSEXPR DESC: the last response has status CODE and JSEXPR holds.
expect() {
	local code=$1 expr=$2 desc=$3
	if [ "$CODE" = "$code" ] && { [ -z "$expr" ] || js "$expr"; }; then
		PASS=$((PASS + 1)); echo "ok   - $desc"
	else
		FAIL=$((FAIL + 1)); echo "FAIL - $desc [want $code${expr:+ and $expr}; got HTTP $CODE: $(head -c 400 "$TMP/body" 2>/dev/null)]"
	fi
}

RUNP=/v2/projects/test-proj/locations/us-central1
JOB=$RUNP/jobs/sandbox

# run_job JSON: POST :run; sets OP (operation name) and EXEC (execution name).
run_job() {
	local body=$1
	shift
	http POST "$JOB:run" -H 'Content-Type: application/json' -d "$body" "$@"
	OP=$(js 'j.name'); EXEC=$(js 'j.metadata.name')
}

# wait_op: poll the operation until done (max ~20 s).
wait_op() {
	local i
	for i in $(seq 1 200); do
		http GET "/v2/$OP"
		js 'j.done === true' && return 0
		sleep 0.1
	done
	return 1
}

b64file() { openssl base64 -A <"$1"; }

# --- 1. GCS --------------------------------------------------------------------

start_emu --no-auth --executor /bin/sh --bucket sandbox-test --bucket other
echo "# emulator at $BASE"
echo "## GCS"

head -c 200000 /dev/urandom >"$TMP/data.bin"
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=dir%2Fdata.bin&ifGenerationMatch=0" \
	-H 'Content-Type: application/octet-stream' --data-binary @"$TMP/data.bin"
expect 200 'j.kind==="storage#object" && j.name==="dir/data.bin" && j.bucket==="sandbox-test" && j.size==="200000" && /^\d+$/.test(j.generation) && j.metageneration==="1"' "media upload with ifGenerationMatch=0"
G1=$(js 'j.generation')
MD5=$(openssl dgst -md5 -binary "$TMP/data.bin" | openssl base64 -A)
ok "md5Hash is the base64 MD5 of the data" js "j.md5Hash === '$MD5'"
ok "object resource has id, selfLink, mediaLink, etag, timestamps" js 'j.id==="sandbox-test/dir/data.bin/"+j.generation && j.selfLink.endsWith("/storage/v1/b/sandbox-test/o/dir%2Fdata.bin") && /alt=media/.test(j.mediaLink) && !!j.etag && !!j.timeCreated && !!j.updated'

printf '123456789' >"$TMP/crc.txt"
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=crc.txt" --data-binary @"$TMP/crc.txt"
expect 200 'j.crc32c === "4waSgw==" && j.md5Hash === "JfnnlDI7RTiF9RgfG2JNCw=="' "crc32c of '123456789' is 0xE3069283 (4waSgw==)"

http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=dir%2Fdata.bin&ifGenerationMatch=0" --data-binary 'again'
expect 412 'j.error.code===412 && j.error.errors[0].reason==="conditionNotMet" && j.error.errors[0].domain==="global"' "second create-only upload -> 412 conditionNotMet"

curl -s -o "$TMP/down.bin" -D "$TMP/hdr" "$BASE/storage/v1/b/sandbox-test/o/dir%2Fdata.bin?alt=media"
ok "download equals upload" cmp -s "$TMP/data.bin" "$TMP/down.bin"
ok "download has x-goog-hash and x-goog-generation" grep -qi "^x-goog-generation: $G1" "$TMP/hdr"
ok "x-goog-hash carries md5" grep -qi "^x-goog-hash: crc32c=.*,md5=$MD5" "$TMP/hdr"
curl -s -o "$TMP/down2.bin" "$BASE/b/sandbox-test/o/dir%2Fdata.bin?alt=media"
ok "prefixless /b/B/o/NAME?alt=media download (official Node client) works" cmp -s "$TMP/data.bin" "$TMP/down2.bin"
curl -s -o "$TMP/down3.bin" "$BASE/download/storage/v1/b/sandbox-test/o/dir%2Fdata.bin?alt=media"
ok "/download/storage/v1 mediaLink download works" cmp -s "$TMP/data.bin" "$TMP/down3.bin"
CODE=$(curl -s -o "$TMP/body" -w '%{http_code}' -H 'Range: bytes=10-19' "$BASE/storage/v1/b/sandbox-test/o/dir%2Fdata.bin?alt=media")
ok "Range download -> 206 with 10 bytes" test "$CODE" = 206 -a "$(stat -c %s "$TMP/body")" = 10

http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=dir%2Fdata.bin&ifGenerationMatch=$G1" --data-binary 'v2'
expect 200 "BigInt(j.generation) > BigInt('$G1') && j.size==='2'" "upload with ifGenerationMatch=current -> new, larger generation"
G2=$(js 'j.generation')
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=dir%2Fdata.bin&ifGenerationMatch=$G1" --data-binary 'v3'
expect 412 'j.error.errors[0].reason==="conditionNotMet"' "upload with a stale ifGenerationMatch -> 412"
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=dir%2Fdata.bin&ifGenerationNotMatch=$G2" --data-binary 'v3'
expect 412 '' "upload with ifGenerationNotMatch=current -> 412"
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=dir%2Fdata.bin&ifMetagenerationMatch=7" --data-binary 'v3'
expect 412 '' "upload with a wrong ifMetagenerationMatch -> 412"
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=dir%2Fdata.bin&ifGenerationMatch=abc" --data-binary 'v3'
expect 400 'j.error.errors[0].reason==="invalid"' "non-numeric precondition -> 400 invalid"

http GET "/storage/v1/b/sandbox-test/o/dir%2Fdata.bin"
expect 200 "j.generation==='$G2' && j.size==='2' && j.name==='dir/data.bin'" "metadata GET"
http GET "/storage/v1/b/sandbox-test/o/dir%2Fdata.bin?ifGenerationMatch=$G1"
expect 412 'j.error.errors[0].reason==="conditionNotMet"' "GET with a failing ifGenerationMatch -> 412"
http GET "/storage/v1/b/sandbox-test/o/dir%2Fdata.bin?ifGenerationNotMatch=$G2"
expect 304 '' "GET with a failing ifGenerationNotMatch -> 304"
http GET "/storage/v1/b/sandbox-test/o/dir%2Fdata.bin?generation=$G1"
expect 404 '' "GET of an old generation -> 404 (no versioning)"

# multipart, as the official Node client sends it
BOUND=emu_test_boundary
{
	printf -- '--%s\r\nContent-Type: application/json\r\n\r\n{"name":"multi/part.txt","contentType":"text/plain","metadata":{"k":"v"}}\r\n' "$BOUND"
	printf -- '--%s\r\nContent-Type: text/plain\r\n\r\n' "$BOUND"
	printf 'line one\r\nline two\n'
	printf -- '\r\n--%s--\r\n' "$BOUND"
} >"$TMP/multipart"
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=multipart&ifGenerationMatch=0" \
	-H "Content-Type: multipart/related; boundary=$BOUND" --data-binary @"$TMP/multipart"
expect 200 'j.name==="multi/part.txt" && j.contentType==="text/plain" && j.size==="19" && j.metadata.k==="v"' "multipart upload (metadata + media)"
http GET "/storage/v1/b/sandbox-test/o/multi%2Fpart.txt?alt=media"
ok "multipart media part stored exactly (CRLF inside kept)" test "$(od -An -c "$TMP/body" | tr -d ' \n')" = 'lineone\r\nlinetwo\n'
{
	printf -- '--%s\r\nContent-Type: application/json\r\n\r\n{"name":"multi/bad.txt","md5Hash":"AAAAAAAAAAAAAAAAAAAAAA=="}\r\n' "$BOUND"
	printf -- '--%s\r\nContent-Type: text/plain\r\n\r\nx\r\n--%s--\r\n' "$BOUND" "$BOUND"
} >"$TMP/multipart2"
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=multipart" -H "Content-Type: multipart/related; boundary=$BOUND" --data-binary @"$TMP/multipart2"
expect 400 '' "multipart with a wrong md5Hash -> 400"

# resumable
curl -s -o /dev/null -D "$TMP/rhdr" -X POST "$BASE/upload/storage/v1/b/sandbox-test/o?uploadType=resumable&name=res.bin" \
	-H 'Content-Type: application/json' -d '{"contentType":"application/x-test"}'
LOC=$(sed -n 's/^[Ll]ocation: \(.*\)\r$/\1/p' "$TMP/rhdr")
ok "resumable start returns a Location" test -n "$LOC"
CODE=$(curl -s -o "$TMP/body" -D "$TMP/rhdr" -w '%{http_code}' -X PUT "$LOC" -H 'Content-Range: bytes 0-4/*' --data-binary 'hello')
ok "resumable chunk -> 308 with Range bytes=0-4" test "$CODE" = 308 -a -n "$(grep -i '^range: bytes=0-4' "$TMP/rhdr")"
CODE=$(curl -s -o "$TMP/body" -w '%{http_code}' -X PUT "$LOC" -H 'Content-Range: bytes 5-10/11' --data-binary ' world')
expect 200 'j.name==="res.bin" && j.size==="11" && j.contentType==="application/x-test"' "resumable final chunk -> object"

# names with spaces and non-ASCII
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=sp%20ace%2F%C3%A9t%C3%A9%3F%23.txt" --data-binary 'u'
expect 200 'j.name==="sp ace/été?#.txt"' "object names are percent-decoded"
http GET "/storage/v1/b/sandbox-test/o/sp%20ace%2F%C3%A9t%C3%A9%3F%23.txt?alt=media"
expect 200 '' "percent-encoded name downloads"

# listing and pagination
for i in 1 2 3 4 5; do
	http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=list%2Fo$i" --data-binary "$i"
done
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=list%2Fsub%2Fdeep" --data-binary 'd'
http GET "/storage/v1/b/sandbox-test/o?prefix=list%2F"
expect 200 'j.kind==="storage#objects" && j.items.length===6 && j.items.every(i=>i.name.startsWith("list/")) && !j.nextPageToken' "list with prefix"
http GET "/storage/v1/b/sandbox-test/o?prefix=list%2F&delimiter=%2F"
expect 200 'j.items.length===5 && JSON.stringify(j.prefixes)===JSON.stringify(["list/sub/"])' "list with delimiter -> items + prefixes"
names=""
tok=""
pages=0
while :; do
	http GET "/storage/v1/b/sandbox-test/o?prefix=list%2F&maxResults=2${tok:+&pageToken=$tok}"
	pages=$((pages + 1))
	names="$names$(js '(j.items||[]).map(i=>i.name).join(",")'),"
	tok=$(js 'j.nextPageToken || ""')
	[ -z "$tok" ] && break
	[ $pages -gt 10 ] && break
done
ok "pagination with maxResults=2: 3 pages, all 6 names once, in order" test "$pages:$names" = "3:list/o1,list/o2,list/o3,list/o4,list/o5,list/sub/deep,"
http GET "/storage/v1/b/sandbox-test/o?prefix=nothing-here%2F"
expect 200 'j.kind==="storage#objects" && j.items===undefined' "empty list has no items field (as GCS)"
http GET "/storage/v1/b/sandbox-test/o?maxResults=x"
expect 400 '' "bad maxResults -> 400"

# 404s
http GET "/storage/v1/b/sandbox-test/o/no-such-object"
expect 404 'j.error.code===404 && j.error.errors[0].reason==="notFound"' "missing object -> 404 notFound"
http GET "/storage/v1/b/no-such-bucket/o/x?alt=media"
expect 404 'j.error.errors[0].reason==="notFound"' "missing bucket -> 404 notFound"
http POST "/upload/storage/v1/b/no-such-bucket/o?uploadType=media&name=x" --data-binary 'x'
expect 404 '' "upload to a missing bucket -> 404"
http GET "/storage/v1/b/other"
expect 200 'j.kind==="storage#bucket" && j.name==="other"' "bucket metadata of a declared bucket"
http POST "/upload/storage/v1/b/sandbox-test/o?name=x" --data-binary 'x'
expect 400 '' "upload without uploadType -> 400"
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media" --data-binary 'x'
expect 400 'j.error.errors[0].reason==="required"' "upload without a name -> 400 required"

# delete
http DELETE "/storage/v1/b/sandbox-test/o/dir%2Fdata.bin?ifGenerationMatch=$G1"
expect 412 '' "delete with a stale ifGenerationMatch -> 412"
http DELETE "/storage/v1/b/sandbox-test/o/dir%2Fdata.bin?ifGenerationMatch=$G2"
ok "delete -> 204 with an empty body" test "$CODE" = 204 -a ! -s "$TMP/body"
http DELETE "/storage/v1/b/sandbox-test/o/dir%2Fdata.bin"
expect 404 '' "delete again -> 404"
http GET "/storage/v1/b/sandbox-test/o/dir%2Fdata.bin"
expect 404 '' "deleted object is gone"
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=dir%2Fdata.bin&ifGenerationMatch=0" --data-binary 'reborn'
expect 200 "BigInt(j.generation) > BigInt('$G2')" "re-created object gets a larger generation"

# --- 2. Cloud Run strictness ------------------------------------------------------
echo "## Cloud Run: request validation"

http POST "$JOB:run" -d '{"overides":{}}'
expect 400 'j.error.code===400 && j.error.status==="INVALID_ARGUMENT" && j.error.message.includes("overides")' "unknown top-level field -> 400 naming it"
http POST "$JOB:run" -d '{"overrides":{"containerOverrides":[{"args":["a"],"argz":["b"]}]}}'
expect 400 'j.error.status==="INVALID_ARGUMENT" && j.error.message.includes("argz")' "unknown field in containerOverrides -> 400 naming it"
http POST "$JOB:run" -d '{"overrides":{"taskCount":2,"parallel":1}}'
expect 400 'j.error.message.includes("parallel")' "unknown field in overrides -> 400"
http POST "$JOB:run" -d '{"overrides":{"timeout":"60"}}'
expect 400 'j.error.status==="INVALID_ARGUMENT" && j.error.message.includes("timeout")' "timeout without unit -> 400"
http POST "$JOB:run" -d '{"overrides":{"timeout":"1m"}}'
expect 400 '' "timeout 1m -> 400"
http POST "$JOB:run" -d '{"overrides":{"timeout":"1.1234567891s"}}'
expect 400 '' "timeout with 10 decimals -> 400"
http POST "$JOB:run" -d '{"overrides":{"taskCount":10001}}'
expect 400 'j.error.message.includes("task_count")' "taskCount 10001 -> 400"
http POST "$JOB:run" -d '{"overrides":{"taskCount":-1}}'
expect 400 '' "taskCount -1 -> 400"
http POST "$JOB:run" -d '{"overrides":{"taskCount":1.5}}'
expect 400 '' "taskCount 1.5 -> 400"
http POST "$JOB:run" -d '{"overrides":{"taskCount":"abc"}}'
expect 400 '' "taskCount \"abc\" -> 400"
http POST "$JOB:run" -d '{"overrides":{"containerOverrides":[{"args":"-c true"}]}}'
expect 400 '' "args as a string -> 400"
http POST "$JOB:run" -d '{"overrides":{"containerOverrides":[{"args":["-c",1]}]}}'
expect 400 '' "args with a number -> 400"
http POST "$JOB:run" -d '{"overrides":{"containerOverrides":[{"env":[{"name":"A","val":"x"}]}]}}'
expect 400 'j.error.message.includes("val")' "env entry with an unknown key -> 400"
http POST "$JOB:run" -d '{"overrides":{"containerOverrides":[{"env":[{"name":"A","value":3}]}]}}'
expect 400 '' "env value not a string -> 400"
http POST "$JOB:run" -d '{"overrides":{"containerOverrides":[{"env":["A=b"]}]}}'
expect 400 '' "env entry not an object -> 400"
http POST "$JOB:run" -d '{"overrides":{"containerOverrides":[{"env":[{"name":"CLOUD_RUN_TASK_INDEX","value":"9"}]}]}}'
expect 400 '' "reserved env name -> 400"
http POST "$JOB:run" -d '{"overrides":'
expect 400 'j.error.status==="INVALID_ARGUMENT"' "malformed JSON -> 400"
http POST "$JOB:run" -d '{"validateOnly":"yes"}'
expect 400 '' "validateOnly not a bool -> 400"
http POST "$JOB:run?foo=bar" -d '{}'
expect 400 'j.error.message.includes("foo")' "unknown query parameter -> 400"
http POST "$RUNP/jobs/nope:run" -d '{}'
expect 404 'j.error.code===404 && j.error.status==="NOT_FOUND"' "running a job that does not exist -> 404 NOT_FOUND"
http GET "$JOB:run"
expect 405 'j.error.code===405' "GET on :run -> 405"
http GET "/v2/projects/p/nowhere"
expect 404 'j.error.status==="NOT_FOUND"' "unknown Cloud Run path -> 404"
http POST "$JOB:run" -d '{"validateOnly":true,"overrides":{"containerOverrides":[{"args":["-c","exit 0"]}]}}'
expect 200 'j.metadata && j.metadata["@type"]==="type.googleapis.com/google.cloud.run.v2.Execution"' "validateOnly -> 200 without running"
http POST "$JOB:run" -d '{"etag":"\"wrong\""}'
expect 409 'j.error.status==="ABORTED"' "run with a stale etag -> 409 ABORTED"

# --- 3. Cloud Run executions -----------------------------------------------------------
echo "## Cloud Run: executions"

http GET "$JOB"
expect 200 'j.name.endsWith("/jobs/sandbox") && j.template.template.containers.length===1 && !!j.etag' "GET job"

http POST "$JOB:run?%24alt=json%3Benum-encoding%3Dint" -H 'Content-Type: application/json' \
	-d '{"overrides":{"containerOverrides":[{"args":["-c","exit 0"]}],"taskCount":1,"timeout":"60s"}}'
expect 200 'j.name.includes("/operations/") && j.metadata["@type"]==="type.googleapis.com/google.cloud.run.v2.Execution" && /\/jobs\/sandbox\/executions\/sandbox-[a-z0-9]{5}$/.test(j.metadata.name) && !j.done' "run (as the official client sends it) -> Operation, not done"
ok "enum-encoding=int gives numeric enums" js 'typeof j.metadata.conditions[0].state === "number"'
OP=$(js 'j.name'); EXEC=$(js 'j.metadata.name')
ok "operation completes" wait_op
expect 200 'j.done===true && j.response["@type"]==="type.googleapis.com/google.cloud.run.v2.Execution" && j.response.succeededCount===1 && !j.error' "done operation carries the Execution as response"
http GET "/v2/$EXEC"
expect 200 'j.succeededCount===1 && j.taskCount===1 && !!j.completionTime && !!j.startTime && !!j.createTime && j.conditions[0].type==="Completed" && j.conditions[0].state==="CONDITION_SUCCEEDED" && !j.reconciling && j.job==="sandbox" && !!j.logUri && !!j.uid && !!j.etag' "execution succeeded (string enums without enum-encoding)"
ok "zero counts are omitted, as proto3 JSON does" js 'j.failedCount===undefined && j.cancelledCount===undefined'

run_job '{"overrides":{"containerOverrides":[{"args":["-c","echo to-stdout; echo to-stderr >&2; exit 3"]}]}}'
ok "failing execution completes" wait_op
expect 200 'j.done===true && j.error && j.error.code > 0 && /exit code of 3/.test(j.error.message) && !j.response' "failed execution: operation has an error"
http GET "/v2/$EXEC"
expect 200 'j.failedCount===1 && !j.succeededCount && j.conditions[0].state==="CONDITION_FAILED" && !!j.completionTime' "execution failed with failedCount 1"
EXEC_ID=${EXEC##*/}
http GET "/v2/$EXEC/tasks"
expect 200 "j.tasks.length===1 && j.tasks[0].lastAttemptResult.exitCode===3 && j.tasks[0].name.endsWith('/tasks/$EXEC_ID-task0')" "tasks list shows the exit code"
http GET "/_emulator/executions/$EXEC_ID/logs"
ok "logs hold stdout and stderr" grep -q 'to-stdout' "$TMP/body"
ok "logs hold stderr" grep -q 'to-stderr' "$TMP/body"

run_job '{"overrides":{"containerOverrides":[{"args":["-c","echo idx=$CLOUD_RUN_TASK_INDEX/$CLOUD_RUN_TASK_COUNT job=$CLOUD_RUN_JOB exec=$CLOUD_RUN_EXECUTION attempt=$CLOUD_RUN_TASK_ATTEMPT foo=$FOO pwd=$(pwd); curl -sf -X POST \"$STORAGE_EMULATOR_HOST/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=from-task-$CLOUD_RUN_TASK_INDEX\" --data-binary task$CLOUD_RUN_TASK_INDEX >/dev/null"],"env":[{"name":"FOO","value":"bar baz"}]}],"taskCount":3}}'
expect 200 'j.metadata.taskCount===3' "run with taskCount 3"
ok "3-task execution completes" wait_op
http GET "/v2/$EXEC"
expect 200 'j.succeededCount===3 && j.taskCount===3' "3 tasks succeeded"
EXEC_ID=${EXEC##*/}
http GET "/_emulator/executions/$EXEC_ID/logs"
ok "tasks see CLOUD_RUN_TASK_INDEX/COUNT 0..2" bash -c "grep -q 'idx=0/3' '$TMP/body' && grep -q 'idx=1/3' '$TMP/body' && grep -q 'idx=2/3' '$TMP/body'"
ok "tasks see CLOUD_RUN_JOB, CLOUD_RUN_EXECUTION, CLOUD_RUN_TASK_ATTEMPT and override env" grep -q "job=sandbox exec=$EXEC_ID attempt=0 foo=bar baz" "$TMP/body"
http GET "/storage/v1/b/sandbox-test/o/from-task-2?alt=media"
expect 200 '' "a task reached the emulator's GCS through STORAGE_EMULATOR_HOST"
ok "... and wrote its own payload" test "$(cat "$TMP/body")" = task2

# operations:wait
run_job '{"overrides":{"containerOverrides":[{"args":["-c","sleep 1"]}]}}'
OPID=${OP##*/}
t0=$(date +%s%N)
http POST "$RUNP/operations/$OPID:wait" -d '{"timeout":"15s"}'
t1=$(date +%s%N)
expect 200 'j.done===true && j.response.succeededCount===1' "operations:wait returns the done operation"
ok "operations:wait returned when the execution finished (<5 s)" test $(((t1 - t0) / 1000000)) -lt 5000
run_job '{"overrides":{"containerOverrides":[{"args":["-c","sleep 3"]}]}}'
OPID=${OP##*/}
http POST "$RUNP/operations/$OPID:wait" -d '{"timeout":"0.5s"}'
expect 200 '!j.done' "operations:wait times out with a not-done operation"
http POST "$RUNP/operations/$OPID:wait" -d '{"timeout":"soon"}'
expect 400 '' "operations:wait with a bad timeout -> 400"

# timeout
run_job '{"overrides":{"containerOverrides":[{"args":["-c","sleep 30"]}],"timeout":"1s"}}'
t0=$(date +%s)
ok "timed-out execution completes" wait_op
t1=$(date +%s)
http GET "/v2/$EXEC"
expect 200 'j.failedCount===1 && j.conditions[0].state==="CONDITION_FAILED"' "task over its timeout fails"
ok "... within a few seconds" test $((t1 - t0)) -le 6

# cancel
run_job '{"overrides":{"containerOverrides":[{"args":["-c","trap \"echo got-sigterm; exit 143\" TERM; sleep 30 & wait"]}]}}'
CANCEL_EXEC=$EXEC
sleep 0.5
http GET "/v2/$EXEC"
expect 200 'j.runningCount===1 && j.reconciling===true && !j.completionTime' "long execution is running"
t0=$(date +%s)
http POST "/v2/$EXEC:cancel" -d '{}'
expect 200 'j.name.includes("/operations/") && j.metadata["@type"].endsWith("Execution")' "cancel -> Operation"
ok "cancel operation completes" wait_op
t1=$(date +%s)
http GET "/v2/$EXEC"
expect 200 'j.cancelledCount===1 && !j.runningCount && !!j.completionTime && j.conditions[0].executionReason==="CANCELLED"' "cancelled execution counts the task as cancelled"
ok "cancel finished quickly" test $((t1 - t0)) -le 4
http GET "/_emulator/executions/${EXEC##*/}/logs"
ok "the task got SIGTERM first" grep -q got-sigterm "$TMP/body"
http POST "/v2/$EXEC:cancel" -d '{}'
expect 400 'j.error.status==="FAILED_PRECONDITION"' "cancelling a finished execution -> 400 FAILED_PRECONDITION"
http POST "/v2/$EXEC:cancel" -d '{"bogus":1}'
expect 400 '' "cancel with an unknown field -> 400"
http GET "$JOB/executions/sandbox-zzzzz"
expect 404 'j.error.status==="NOT_FOUND"' "unknown execution -> 404"
http GET "$RUNP/operations/00000000-0000-0000-0000-000000000000"
expect 404 '' "unknown operation -> 404"
http GET "$JOB/executions?pageSize=2"
expect 200 'j.executions.length===2 && !!j.nextPageToken' "list executions pages"

# --- 4. faults and stats ------------------------------------------------------------
echo "## faults and stats"

http POST /_emulator/faults -d '{"rate_503":1,"endpoints":["GET object"]}'
expect 200 '' "set faults"
http GET "/storage/v1/b/sandbox-test/o/crc.txt"
expect 503 'j.error.errors[0].reason==="backendError"' "faulted endpoint -> 503 GCS style"
http GET "/storage/v1/b/sandbox-test/o?prefix=x"
expect 200 '' "endpoint outside the filter is unaffected"
http POST /_emulator/faults -d '{"rate_429":1,"endpoints":["jobs:run"]}'
http POST "$JOB:run" -d '{}'
expect 429 'j.error.status==="RESOURCE_EXHAUSTED"' "429 on jobs:run, Cloud Run style"
http POST /_emulator/faults -d '{"rate_503":1}'
http GET /_emulator/stats
expect 200 '' "faults never apply to /_emulator/*"
http POST /_emulator/faults -d '{"rate_reset":1,"endpoints":["objects"]}'
http GET "/storage/v1/b/sandbox-test/o"
ok "reset: connection closed without a response" test "$CODE" = 000 -a "$CURL_RC" -ne 0
http POST /_emulator/faults -d '{"delay_ms":[300,300]}'
t0=$(date +%s%N)
http GET "/storage/v1/b/sandbox-test/o/crc.txt"
t1=$(date +%s%N)
ok "delay_ms delays responses" test "$CODE" = 200 -a $(((t1 - t0) / 1000000)) -ge 290
http POST /_emulator/faults -d '{"sequence":[{"endpoint":"jobs:run","fault":"503","count":2}]}'
http POST "$JOB:run" -d '{"overrides":{"containerOverrides":[{"args":["seq"]}]}}'
c1=$CODE
http POST "$JOB:run" -d '{"overrides":{"containerOverrides":[{"args":["seq"]}]}}'
c2=$CODE
http POST "$JOB:run" -d '{"overrides":{"containerOverrides":[{"args":["seq"]}]}}'
ok "sequence: two 503s then success" test "$c1 $c2 $CODE" = "503 503 200"
http POST /_emulator/faults -d '{"sequence":[{"endpoint":"upload","fault":"reset_after"}]}'
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=lost-response&ifGenerationMatch=0" --data-binary 'x'
ok "reset_after: no response" test "$CODE" = 000
http GET "/storage/v1/b/sandbox-test/o/lost-response"
expect 200 '' "reset_after: ... but the upload took effect"
http POST /_emulator/faults -d '{"sequence":[{"endpoint":"GET object","fault":"hang"}]}'
curl -s -o /dev/null -w '%{http_code}' "$BASE/storage/v1/b/sandbox-test/o/crc.txt" >"$TMP/hung" 2>/dev/null &
hung=$!
sleep 1
ok "hang: no answer while the fault stands" kill -0 $hung
http GET "/storage/v1/b/sandbox-test/o/crc.txt"
expect 200 '' "hang: only the matching request hangs (count 1)"
http POST /_emulator/faults -d '{}'
wait $hung
ok "hang: setting faults closes the held request without an answer" test "$(cat "$TMP/hung")" = 000
http POST /_emulator/faults -d '{"rate_503":2}'
expect 400 '' "invalid fault settings -> 400"
http POST /_emulator/faults -d '{"rate_5033":0.1}'
expect 400 '' "unknown fault setting -> 400"
http POST /_emulator/faults -d '{}'
http GET "/storage/v1/b/sandbox-test/o/crc.txt"
expect 200 '' "{} clears faults"

http GET /_emulator/stats
expect 200 'j.calls["POST jobs:run"] >= 10 && j.calls["GET object"] > 0 && j.calls["POST upload"] > 0 && j.calls["GET media"] > 0' "stats count calls by endpoint template"
ok "stats: runs_by_arg" js 'j.runs_by_arg["-c exit 0"]===1 && j.runs_by_arg["seq"]===1'
ok "stats: executions by state" js 'j.executions.succeeded>=4 && j.executions.failed>=2 && j.executions.cancelled===1'
ok "stats: jobs_run_calls and tasks_per_run" js 'j.jobs_run_calls >= 8 && j.tasks_per_run.includes(3)'
ok "stats: injected faults counted" js 'j.faults_injected["503"]===3 && j.faults_injected["429"]===1'

http POST /_emulator/reset
http GET /_emulator/stats
expect 200 'Object.keys(j.calls).length===0 && j.jobs_run_calls===0 && j.executions.succeeded===0' "reset clears stats"
http GET "/storage/v1/b/sandbox-test/o/crc.txt"
expect 404 '' "reset clears objects"
http GET "/v2/$CANCEL_EXEC"
expect 404 '' "reset clears executions"

# shutdown kills running executions
run_job '{"overrides":{"containerOverrides":[{"args":["-c","sleep 31.4159"]}]}}'
sleep 0.5
ok "marker task is running" bash -c "pgrep -f '[s]leep 31.4159' >/dev/null"
t0=$(date +%s)
stop_emu
t1=$(date +%s)
ok "SIGTERM: emulator exits 0 promptly" test "$EMU_RC" = 0 -a $((t1 - t0)) -le 3
sleep 0.3
ok "SIGTERM: its running tasks are gone" bash -c "! pgrep -f '[s]leep 31.4159' >/dev/null"

# --- 5. auth ------------------------------------------------------------------------
echo "## auth"

"$HERE/make-test-key" -o "$TMP/key.json"
"$HERE/make-test-key" -o "$TMP/other-key.json"
start_emu --test-key-file "$TMP/key.json" --token-ttl 2 --executor /bin/sh

# jwt KEYFILE [claims-overrides-json]: print a signed JWT assertion.
jwt() {
	node -e '
const fs = require("fs"), crypto = require("crypto");
const key = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
const now = Math.floor(Date.now() / 1000);
const claims = Object.assign({ iss: key.client_email, scope: "https://www.googleapis.com/auth/cloud-platform",
  aud: process.argv[3], iat: now, exp: now + 3600 }, JSON.parse(process.argv[2] || "{}"));
for (const k of Object.keys(claims)) if (claims[k] === null) delete claims[k];
const enc = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
const head = enc({ alg: "RS256", typ: "JWT", kid: key.private_key_id });
const body = enc(claims);
const sig = crypto.sign("RSA-SHA256", Buffer.from(head + "." + body), key.private_key).toString("base64url");
process.stdout.write(head + "." + body + "." + sig);' "$1" "${2:-}" "$BASE/token"
}
token_req() { http POST /token --data-urlencode 'grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer' --data-urlencode "assertion=$1"; }

http GET "/storage/v1/b/sandbox-test/o"
expect 401 'j.error.code===401 && j.error.errors[0].reason==="required"' "GCS without a token -> 401"
http GET "$JOB"
expect 401 'j.error.status==="UNAUTHENTICATED"' "Cloud Run without a token -> 401 UNAUTHENTICATED"
http GET "/storage/v1/b/sandbox-test/o" -H 'Authorization: Bearer ya29.bogus'
expect 401 'j.error.errors[0].reason==="authError" && j.error.message==="Invalid Credentials"' "GCS with a bogus token -> 401 authError Invalid Credentials"
http POST "$JOB:run" -H 'Authorization: Bearer ya29.bogus' -d '{}'
expect 401 '' "Cloud Run with a bogus token -> 401"

token_req "$(jwt "$TMP/key.json")"
expect 200 'j.token_type==="Bearer" && j.expires_in===2 && typeof j.access_token==="string" && j.access_token.length>20' "JWT bearer grant -> access token"
TOKEN=$(js 'j.access_token')
http GET "/storage/v1/b/sandbox-test/o" -H "Authorization: Bearer $TOKEN"
expect 200 '' "GCS with the token -> 200"
http POST "$JOB:run" -H "Authorization: Bearer $TOKEN" -d '{"overrides":{"containerOverrides":[{"args":["-c","exit 0"]}]}}'
expect 200 '' "Cloud Run with the token -> 200"
token_req "$(jwt "$TMP/key.json" "{\"aud\":\"https://oauth2.googleapis.com/token\"}")"
expect 200 '' "aud https://oauth2.googleapis.com/token accepted"
token_req "$(jwt "$TMP/other-key.json" "{\"iss\":\"$(node -p "require('$TMP/key.json').client_email")\"}")"
expect 400 'j.error==="invalid_grant" && j.error_description==="Invalid JWT Signature."' "JWT signed by another key -> 400 Invalid JWT Signature."
token_req "$(jwt "$TMP/key.json" '{"aud":"https://example.com/token"}')"
expect 400 'j.error==="invalid_grant"' "wrong aud -> 400 invalid_grant"
token_req "$(jwt "$TMP/key.json" "{\"exp\":$(($(date +%s) + 7200))}")"
expect 400 'j.error==="invalid_grant"' "exp - iat > 3600 -> 400"
token_req "$(jwt "$TMP/key.json" "{\"iat\":$(($(date +%s) - 4000)),\"exp\":$(($(date +%s) - 500))}")"
expect 400 'j.error==="invalid_grant"' "expired JWT -> 400"
token_req "$(jwt "$TMP/key.json" '{"scope":null}')"
expect 400 'j.error==="invalid_scope"' "JWT without scope -> 400 invalid_scope"
token_req "$(jwt "$TMP/key.json" '{"iss":"someone@else.iam.gserviceaccount.com"}')"
expect 400 'j.error==="invalid_grant"' "unknown issuer -> 400"
A=$(jwt "$TMP/key.json")
token_req "${A%.*}.$(printf 'garbage' | openssl base64 -A | tr '+/' '-_' | tr -d '=')"
expect 400 'j.error_description==="Invalid JWT Signature."' "tampered signature -> 400"
http POST /token --data-urlencode 'grant_type=client_credentials' --data-urlencode "assertion=$A"
expect 400 'j.error==="unsupported_grant_type"' "wrong grant_type -> 400 unsupported_grant_type"
token_req "$(jwt "$TMP/key.json" '{"scope":"https://www.googleapis.com/auth/devstorage.read_only"}')"
RO=$(js 'j.access_token')
http GET "/storage/v1/b/sandbox-test/o" -H "Authorization: Bearer $RO"
expect 200 '' "devstorage scope works for GCS"
http GET "$JOB" -H "Authorization: Bearer $RO"
expect 403 'j.error.status==="PERMISSION_DENIED"' "devstorage scope is not enough for Cloud Run -> 403"

http GET /computeMetadata/v1/instance/service-accounts/default/token
expect 403 '' "metadata without Metadata-Flavor -> 403"
http GET /computeMetadata/v1/instance/service-accounts/default/token -H 'Metadata-Flavor: Google'
expect 200 'j.token_type==="Bearer" && j.expires_in===2 && !!j.access_token' "metadata token -> 200"
MT=$(js 'j.access_token')
http GET "$JOB" -H "Authorization: Bearer $MT"
expect 200 '' "metadata token works for Cloud Run"

# a task authenticates through the metadata server, as on Cloud Run
mdtoken() {
	curl -s -H 'Metadata-Flavor: Google' "$BASE/computeMetadata/v1/instance/service-accounts/default/token" |
		node -pe 'JSON.parse(require("fs").readFileSync(0, "utf8")).access_token'
}
run_job '{"overrides":{"containerOverrides":[{"args":["-c","test \"$CLOUDRUN_SANDBOX_CREDENTIALS\" = metadata || exit 9; T=$(curl -sf -H \"Metadata-Flavor: Google\" \"http://$GCE_METADATA_HOST/computeMetadata/v1/instance/service-accounts/default/token\" | sed \"s/.*\\\"access_token\\\":\\\"\\([^\\\"]*\\)\\\".*/\\1/\"); curl -sf -o /dev/null -H \"Authorization: Bearer $T\" -X POST \"$STORAGE_EMULATOR_HOST/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=authed-task\" --data-binary ok"]}]}}' -H "Authorization: Bearer $(mdtoken)"
for _ in $(seq 1 100); do
	http GET "/v2/$EXEC" -H "Authorization: Bearer $(mdtoken)"
	js '!!j.completionTime' && break
	sleep 0.1
done
expect 200 'j.succeededCount===1' "with auth on, a task gets a metadata token and uploads with it"

sleep 2.2
http GET "/storage/v1/b/sandbox-test/o" -H "Authorization: Bearer $TOKEN"
expect 401 'j.error.errors[0].reason==="authError"' "token expires after --token-ttl -> 401"
token_req "$(jwt "$TMP/key.json")"
TOKEN=$(js 'j.access_token')
http POST /_emulator/expire-tokens
http GET "$JOB" -H "Authorization: Bearer $TOKEN"
expect 401 '' "/_emulator/expire-tokens invalidates issued tokens"
stop_emu

# --- 5b. service accounts limited by IAM conditions ------------------------------------
echo "## service accounts and IAM conditions"
ALICE=alice-runner@test-proj.iam.gserviceaccount.com
BOB=bob-runner@test-proj.iam.gserviceaccount.com
cond() { printf 'resource.name.startsWith("projects/_/buckets/sandbox-test/objects/%s/")' "$1"; }
start_emu --executor /bin/sh --no-bwrap --service-account "$ALICE=$(cond alice)" --job sandbox --job "sandbox-alice=$ALICE"
# tok HOST: an access token from the metadata server at HOST (host:port).
tok() {
	curl -s -H 'Metadata-Flavor: Google' "http://$1/computeMetadata/v1/instance/service-accounts/default/token" |
		node -pe 'JSON.parse(require("fs").readFileSync(0, "utf8")).access_token'
}
DT=$(tok "${BASE#http://}")
for o in alice/sessions/s/state.json bob/sessions/s/state.json; do
	http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=$(node -pe 'encodeURIComponent(process.argv[1])' "$o")" \
		-H "Authorization: Bearer $DT" --data-binary "{\"owner\":\"${o%%/*}\"}"
done
expect 200 '' "the main metadata server's token (the default account) may write anywhere"
http GET /_emulator/service-accounts
expect 200 "j.serviceAccounts.length===1 && j.serviceAccounts[0].email==='$ALICE' && /^127\\.0\\.0\\.1:\\d+$/.test(j.serviceAccounts[0].metadata_host) && j.serviceAccounts[0].metadata_host!=='${BASE#http://}'" "--service-account: listed with a metadata server of its own"
AMD=$(js 'j.serviceAccounts[0].metadata_host')
http GET "$RUNP/jobs/sandbox-alice" -H "Authorization: Bearer $DT"
expect 200 "j.template.template.serviceAccount==='$ALICE'" "--job NAME=EMAIL: the job runs as that account"
CODE=$(curl -s -o "$TMP/body" -w '%{http_code}' -H 'Metadata-Flavor: Google' "http://$AMD/computeMetadata/v1/instance/service-accounts/default/email")
ok "its metadata server names it" test "$CODE" = 200 -a "$(cat "$TMP/body")" = "$ALICE"
AT=$(tok "$AMD")
http GET "/storage/v1/b/sandbox-test/o/alice%2Fsessions%2Fs%2Fstate.json?alt=media" -H "Authorization: Bearer $AT"
expect 200 'j.owner==="alice"' "its token reads an object its condition allows"
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=alice%2Fnew" -H "Authorization: Bearer $AT" --data-binary x
expect 200 '' "... writes one"
http DELETE "/storage/v1/b/sandbox-test/o/alice%2Fnew" -H "Authorization: Bearer $AT"
expect 204 '' "... deletes one"
http GET "/storage/v1/b/sandbox-test/o/alice%2Fmissing" -H "Authorization: Bearer $AT"
expect 404 '' "... and gets 404 for a missing one there"
http GET "/storage/v1/b/sandbox-test/o/bob%2Fsessions%2Fs%2Fstate.json?alt=media" -H "Authorization: Bearer $AT"
expect 403 "j.error.errors[0].reason==='forbidden' && j.error.message.includes('$ALICE does not have storage.objects.get access')" "another prefix's object: 403 forbidden, as IAM says it"
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=bob%2Fsessions%2Fs%2Fstate.json" -H "Authorization: Bearer $AT" --data-binary '{"owner":"alice"}'
expect 403 '' "... cannot be replaced (media upload)"
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=resumable&name=bob%2Fr" -H "Authorization: Bearer $AT"
expect 403 '' "... nor created by a resumable upload"
http DELETE "/storage/v1/b/sandbox-test/o/bob%2Fsessions%2Fs%2Fstate.json" -H "Authorization: Bearer $AT"
expect 403 '' "... nor deleted"
http GET "/storage/v1/b/sandbox-test/o/alicex%2Fy" -H "Authorization: Bearer $AT"
expect 403 '' "the condition is a prefix of the resource name: alicex/ is not alice/"
http GET "/storage/v1/b/sandbox-test/o?prefix=alice%2F" -H "Authorization: Bearer $AT"
expect 403 '' "listing is a bucket-level call: denied, even with the account's prefix"
http GET "/storage/v1/b/sandbox-test" -H "Authorization: Bearer $AT"
expect 403 '' "... as is the bucket's metadata"
http GET "$RUNP/jobs/sandbox" -H "Authorization: Bearer $AT"
expect 403 'j.error.status==="PERMISSION_DENIED"' "such an account has no Cloud Run role: 403"
# A task of the job gets its account's metadata server, and so its token.
JOB=$RUNP/jobs/sandbox-alice
run_job "{\"overrides\":{\"containerOverrides\":[{\"args\":[\"-c\",\"T=\$(curl -s -H 'Metadata-Flavor: Google' http://\$GCE_METADATA_HOST/computeMetadata/v1/instance/service-accounts/default/token | sed 's/.*\\\"access_token\\\":\\\"\\\\([^\\\"]*\\\\)\\\".*/\\\\1/'); a=\$(curl -s -o /dev/null -w '%{http_code}' -H \\\"Authorization: Bearer \$T\\\" \$STORAGE_EMULATOR_HOST/storage/v1/b/sandbox-test/o/alice%2Fsessions%2Fs%2Fstate.json); b=\$(curl -s -o /dev/null -w '%{http_code}' -H \\\"Authorization: Bearer \$T\\\" \$STORAGE_EMULATOR_HOST/storage/v1/b/sandbox-test/o/bob%2Fsessions%2Fs%2Fstate.json); echo \\\"md=\$GCE_METADATA_HOST alice=\$a bob=\$b\\\"\"]}]}}" -H "Authorization: Bearer $DT"
for _ in $(seq 1 100); do
	http GET "/v2/$EXEC" -H "Authorization: Bearer $DT"
	js '!!j.completionTime' && break
	sleep 0.1
done
http GET "/_emulator/executions/${EXEC##*/}/logs"
ok "a task of that job is pointed at its account's metadata server: alice's object 200, bob's 403" \
	grep -q "md=$AMD alice=200 bob=403" "$TMP/body"
http GET /_emulator/stats
expect 200 "j.runs_by_job['sandbox-alice']===1 && !j.runs_by_job.sandbox" "stats count runs per job (runs_by_job)"
JOB=$RUNP/jobs/sandbox
# Accounts and jobs made at run time.
http POST /_emulator/service-accounts -H 'Content-Type: application/json' -d "{\"email\":\"$BOB\",\"condition\":$(node -pe 'JSON.stringify(process.argv[1])' "$(cond bob)")}"
expect 200 "j.email==='$BOB' && /^127\\.0\\.0\\.1:\\d+$/.test(j.metadata_host)" "POST /_emulator/service-accounts defines an account"
BMD=$(js 'j.metadata_host')
http POST /_emulator/jobs -H 'Content-Type: application/json' -d "{\"name\":\"sandbox-bob\",\"serviceAccount\":\"$BOB\"}"
expect 200 "j.name==='sandbox-bob' && j.serviceAccount==='$BOB' && j.metadata_host==='$BMD'" "POST /_emulator/jobs makes a job that runs as it"
BT=$(tok "$BMD")
http GET "/storage/v1/b/sandbox-test/o/bob%2Fsessions%2Fs%2Fstate.json?alt=media" -H "Authorization: Bearer $BT"
expect 200 'j.owner==="bob"' "its token reads its own prefix"
http GET "/storage/v1/b/sandbox-test/o/alice%2Fsessions%2Fs%2Fstate.json?alt=media" -H "Authorization: Bearer $BT"
expect 403 '' "... and not the other's"
http POST /_emulator/service-accounts -H 'Content-Type: application/json' -d '{"email":"x@y","condition":"resource.type == \"x\""}'
expect 400 '' "a condition other than resource.name.startsWith(...) terms is refused"
http POST /_emulator/jobs -H 'Content-Type: application/json' -d '{"name":"sandbox-carol","serviceAccount":"nobody@test-proj.iam.gserviceaccount.com"}'
expect 400 '' "a job of an unknown account is refused"
http POST /_emulator/reset
http GET "$RUNP/jobs/sandbox-bob" -H "Authorization: Bearer $(tok "${BASE#http://}")"
expect 200 "j.template.template.serviceAccount==='$BOB'" "jobs and accounts made at run time survive /_emulator/reset"
stop_emu

# --- 6. --instant, --no-bwrap, --job -------------------------------------------------
echo "## modes"

start_emu --no-auth --instant
run_job '{"overrides":{"containerOverrides":[{"args":["anything"]}],"taskCount":5}}'
expect 200 '!j.done' "instant: run returns a not-done operation"
http GET "/v2/$OP"
expect 200 'j.done===true && j.response.succeededCount===5' "instant: the next GET shows it done with all tasks succeeded"
stop_emu

start_emu --no-auth --no-bwrap --executor /bin/sh --job alpha --kill-grace 1
http POST "$JOB:run" -d '{}'
expect 404 '' "--job alpha: job sandbox does not exist"
JOB=$RUNP/jobs/alpha
run_job '{"overrides":{"containerOverrides":[{"args":["-c","test \"$(pwd)\" != /workspace && exit 0"]}]}}'
wait_op
http GET "/v2/$EXEC"
expect 200 'j.succeededCount===1' "--no-bwrap: task runs without a sandbox"
run_job '{"overrides":{"containerOverrides":[{"args":["-c","trap \"\" TERM; sleep 27.1828"]}]}}'
sleep 0.4
http POST "/v2/$EXEC:cancel"
t0=$(date +%s)
wait_op
t1=$(date +%s)
http GET "/v2/$EXEC"
expect 200 'j.cancelledCount===1' "--no-bwrap: cancel of a task ignoring SIGTERM ends with SIGKILL"
ok "... after the grace period" test $((t1 - t0)) -le 4
ok "... and its processes are gone" bash -c "! pgrep -f '[s]leep 27.1828' >/dev/null"
stop_emu

JOB=$RUNP/jobs/sandbox
start_emu --no-auth --executor /bin/sh --max-retries 2 --state-dir "$TMP/state"
run_job '{"overrides":{"containerOverrides":[{"args":["-c","echo attempt=$CLOUD_RUN_TASK_ATTEMPT; test $CLOUD_RUN_TASK_ATTEMPT = 2"]}]}}'
wait_op
http GET "/v2/$EXEC"
expect 200 'j.succeededCount===1 && j.retriedCount===2 && !j.failedCount' "--max-retries 2: a task failing twice succeeds on attempt 2"
ok "--state-dir keeps full task logs" grep -q 'attempt=1' "$TMP/state/logs/${EXEC##*/}.log"
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=persist%2Fme" --data-binary 'kept'
G=$(js 'j.generation')
stop_emu
start_emu --no-auth --state-dir "$TMP/state"
http GET "/storage/v1/b/sandbox-test/o/persist%2Fme?alt=media"
ok "--state-dir: objects survive a restart" test "$CODE" = 200 -a "$(cat "$TMP/body")" = kept
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=persist%2Fme" --data-binary 'next'
expect 200 "BigInt(j.generation) > BigInt('$G')" "--state-dir: generations keep increasing after a restart"
stop_emu

start_emu --no-auth --executor /nonexistent/executor
run_job '{}'
wait_op
http GET "/v2/$EXEC"
expect 200 'j.failedCount===1' "a missing executor fails the task"
stop_emu

# --- 7. --latency, --start-latency, stats ------------------------------------------
echo "## latency and stats"

# ms_since T0: milliseconds from T0 (date +%s%N) to now.
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

start_emu --no-auth --no-bwrap --executor /bin/sh
http GET /_emulator/latency
expect 200 'j.latency==="0" && j.start_latency==="0"' "latencies are off by default"
stop_emu
for bad in 20 '[3s,1s]' 5h -1s; do
	"$HERE/run" --port 0 --latency "$bad" >/dev/null 2>"$TMP/bad.err"
	rc=$?
	ok "--latency $bad is refused (exit 2, says why)" test "$rc" = 2 -a -n "$(grep -- '--latency' "$TMP/bad.err")"
done

start_emu --no-auth --no-bwrap --executor /bin/sh --latency 200ms --start-latency 2s
http GET /_emulator/health
expect 200 'j.latency==="200ms" && j.start_latency==="2s"' "health shows --latency and --start-latency"
t0=$(date +%s%N)
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=lat%2Fobj" --data-binary 'hello'
ok "--latency 200ms: a GCS upload is answered >= 200 ms later" test "$CODE" = 200 -a "$(ms_since "$t0")" -ge 200
t0=$(date +%s%N)
http GET "/storage/v1/b/sandbox-test/o/lat%2Fobj?alt=media"
ok "--latency 200ms: a GCS GET is answered >= 200 ms later" test "$CODE" = 200 -a "$(ms_since "$t0")" -ge 200
t0=$(date +%s%N)
http GET "$JOB"
ok "--latency 200ms: a Cloud Run GET is answered >= 200 ms later" test "$CODE" = 200 -a "$(ms_since "$t0")" -ge 200
# A hook asked after a GCS request has started is answered first: hooks are not delayed.
: >"$TMP/order"
(curl -s -o /dev/null "$BASE/storage/v1/b/sandbox-test/o/lat%2Fobj"; echo gcs >>"$TMP/order") &
sleep 0.05
curl -s -o /dev/null "$BASE/_emulator/stats"; echo hook >>"$TMP/order"
wait $!
ok "... but /_emulator/* hooks are not delayed (answered before a GCS request sent earlier)" test "$(tr '\n' ' ' <"$TMP/order")" = "hook gcs "
# Preconditions still hold under latency: create-only twice.
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=lat%2Fobj&ifGenerationMatch=0" --data-binary 'again'
expect 412 '' "--latency: preconditions still apply (create-only over an existing object -> 412)"

# Start latency: the task starts >= 2 s after the execution is created.
t0=$(date +%s%N)
run_job "{\"overrides\":{\"containerOverrides\":[{\"args\":[\"-c\",\"date +%s%N >$TMP/started\"]}]}}"
http GET "/v2/$EXEC"
expect 200 '!j.startTime && !j.runningCount && j.conditions.some(c => c.type==="Started" && c.state==="CONDITION_PENDING") && j.conditions.some(c => c.type==="ResourcesAvailable" && c.state==="CONDITION_PENDING")' "--start-latency 2s: a new execution is pending (no startTime, ResourcesAvailable and Started pending)"
http GET "/v2/$EXEC/tasks"
expect 200 'j.tasks.length===1 && !j.tasks[0].startTime && j.tasks[0].conditions[0].state==="CONDITION_PENDING"' "... and so is its task"
wait_op
ok "... its task's process started >= 2 s after the execution was created" test -s "$TMP/started" -a $((($(cat "$TMP/started") - t0) / 1000000)) -ge 2000
http GET "/v2/$EXEC"
expect 200 'j.succeededCount===1 && Date.parse(j.startTime) - Date.parse(j.createTime) >= 2000' "... and startTime - createTime >= 2 s"

# Cancel while provisioning: the task never starts.
run_job "{\"overrides\":{\"containerOverrides\":[{\"args\":[\"-c\",\"touch $TMP/never\"]}]}}"
sleep 0.3
http POST "/v2/$EXEC:cancel"
expect 200 '' "cancel during the start latency is accepted"
wait_op
http GET "/v2/$EXEC"
expect 200 'j.cancelledCount===1 && !j.startTime' "... the execution ends cancelled, never started"
sleep 2.2
ok "... and its task never ran (not even after the start latency)" test ! -e "$TMP/never"

# The task timeout counts from the task's start (as Cloud Run's), not from creation.
run_job '{"overrides":{"containerOverrides":[{"args":["-c","sleep 0.3"]}],"timeout":"1s"}}'
wait_op
http GET "/v2/$EXEC"
expect 200 'j.succeededCount===1 && !j.failedCount' "timeout 1s with start latency 2s: a 0.3 s task succeeds (timeout counts from the start)"

# Changed at run time; a range.
http POST /_emulator/latency -d '{"latency":"0","start_latency":"[1s,1500ms]"}'
expect 200 'j.latency==="0" && j.start_latency==="[1s,1500ms]"' "POST /_emulator/latency sets both (a range)"
http POST /_emulator/latency -d '{"latency":"fast"}'
expect 400 '' "POST /_emulator/latency refuses a malformed duration"
run_job '{"overrides":{"containerOverrides":[{"args":["-c","exit 0"]}]}}'
wait_op
http GET "/v2/$EXEC"
expect 200 'j.succeededCount===1 && Date.parse(j.startTime) - Date.parse(j.createTime) >= 1000' "start latency [1s,1500ms]: the task starts >= 1 s after creation"
http POST /_emulator/latency -d '{"start_latency":null}'
expect 200 'j.start_latency==="0"' "start_latency null turns it off"

# Stats: GCS requests (total, by method, by name prefix), bytes, jobs:run calls; read and reset.
http POST /_emulator/stats/reset
expect 200 'j.jobs_run_calls===4 && j.gcs.requests>=3' "POST /_emulator/stats/reset answers the counters it clears"
head -c 1000 /dev/urandom >"$TMP/k1"
head -c 500 /dev/urandom >"$TMP/k2"
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=st%2Fa%2Fone" --data-binary @"$TMP/k1"
http POST "/upload/storage/v1/b/sandbox-test/o?uploadType=media&name=other%2Ftwo" --data-binary @"$TMP/k2"
http GET "/storage/v1/b/sandbox-test/o/st%2Fa%2Fone?alt=media"
http GET "/storage/v1/b/sandbox-test/o?prefix=st%2Fa%2F"
http DELETE "/storage/v1/b/sandbox-test/o/other%2Ftwo"
curl -s -o /dev/null -D "$TMP/rh" -X POST "$BASE/upload/storage/v1/b/sandbox-test/o?uploadType=resumable&name=st%2Fres" -d '{}'
LOC=$(sed -n 's/^[Ll]ocation: \(.*\)\r$/\1/p' "$TMP/rh")
curl -s -o /dev/null -X PUT "$LOC" -H 'Content-Range: bytes 0-2/*' --data-binary 'abc'
curl -s -o /dev/null -X PUT "$LOC" -H 'Content-Range: bytes 3-4/5' --data-binary 'de'
run_job '{"overrides":{"containerOverrides":[{"args":["-c","exit 0"]}]}}'
run_job '{"overrides":{"containerOverrides":[{"args":["-c","exit 0"]}]}}'
http GET /_emulator/stats
expect 200 'j.gcs.requests===8 && j.gcs.by_method.POST===3 && j.gcs.by_method.GET===2 && j.gcs.by_method.DELETE===1 && j.gcs.by_method.PUT===2' "stats: GCS requests, total and by method"
# 1000 + 500 (media) + 2 ('{}', the resumable start) + 3 + 2 (its chunks)
expect 200 'j.gcs.bytes_uploaded===1507 && j.gcs.bytes_downloaded===1000' "stats: bytes uploaded (upload request bodies) and downloaded (media bodies)"
expect 200 'j.jobs_run_calls===2 && j.calls["POST jobs:run"]===2 && j.run_requests===2' "stats: jobs:run calls (and Cloud Run requests)"
http GET "/_emulator/stats?prefix=st%2F"
expect 200 'j.gcs_prefix.prefix==="st/" && j.gcs_prefix.requests===6 && j.gcs_prefix.bytes_uploaded===1007 && j.gcs_prefix.bytes_downloaded===1000 && j.gcs_prefix.by_method.PUT===2' "stats?prefix=st/: requests and bytes of the object names (and list prefixes) under it"
http POST /_emulator/stats/reset
http GET /_emulator/stats
expect 200 'j.gcs.requests===0 && j.gcs.bytes_uploaded===0 && j.jobs_run_calls===0 && Object.keys(j.calls).length===0 && j.objects["sandbox-test"]>=3' "after POST /_emulator/stats/reset the counters are 0 and the objects stay"
stop_emu

start_emu --no-auth --instant --start-latency 1s
run_job '{"overrides":{"containerOverrides":[{"args":["anything"]}]}}'
http GET /_emulator/stats
expect 200 'j.executions_provisioning===1 && j.executions.running===1' "--instant --start-latency 1s: the execution waits out its start latency (stats: executions_provisioning)"
sleep 1.3
http GET "/v2/$OP"
expect 200 'j.done===true && j.response.succeededCount===1 && Date.parse(j.response.startTime) - Date.parse(j.response.createTime) >= 1000' "... then succeeds, started >= 1 s after creation"
stop_emu

echo
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
