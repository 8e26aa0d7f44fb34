#!/usr/bin/env bash
# test_executor_runner.sh -- tests of the executor's runner mode
# (`cloudrun-sandbox-executor runner BUCKET D TOKEN IDLE_TIMEOUT_S`, issue 13)
# and of incremental workspace sync, against the loopback GCS emulator.
#
# Like test_executor_cloud.sh: the executor is built with AddressSanitizer,
# UBSan and LeakSanitizer, and runs under bwrap with a fresh directory bound
# at /workspace, as a Cloud Run container would.  Requests are put in a
# runner's inbox with curl, as the extension does (see the README's
# "Session runners").
# Every run's standard error is checked for sanitizer reports.
#
# usage: test/unit/test_executor_runner.sh
# Prints TAP lines and "N passed, N failed"; exits 1 if a check failed.
set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
emulator="$top/test/emulator/run"
BUCKET=sandbox-test

source "$here/gcs_test_lib.sh"
gcs_test_setup executor_runner bwrap curl node tar cc sha256sum

# --- emulators -----------------------------------------------------------

start_emulator main --no-auth
EMU=$url
start_emulator idle --no-auth
IDLE_EMU=$url
echo "# emulators at $EMU and $IDLE_EMU (idle counts)"

# --- helpers -------------------------------------------------------------


# listing EMU PREFIX: prints "name generation" of every object under PREFIX.
listing() {
	curl -sf "$1/storage/v1/b/$BUCKET/o?prefix=$(enc "$2")" -o "$tmp/list.json" &&
		js "$tmp/list.json" '(j.items || []).map(o => o.name + " " + o.generation).sort().join("\n")'
}

# file_request FILE ID SESSION JSON: a file request document (JSON: op, path, ...).
file_request() {
	node -e '
const [file, id, session, extra] = process.argv.slice(1);
const r = {version: 1, id: Number(id), session, prefix: "", cwd: "/workspace"};
Object.assign(r, JSON.parse(extra));
require("fs").writeFileSync(file, JSON.stringify(r));' "$@"
}

# inbox EMU SESSION TOKEN ID COMMAND: puts an exec request in a runner's inbox.
inbox() {
	local f="$tmp/req-$2-$4.json"
	exec_request "$f" "$4" "$2" "$5"
	put "$1" "sessions/$2/runners/$3/inbox/$4.json" "$f"
}

# inbox_file EMU SESSION TOKEN ID JSON: puts a file request in a runner's inbox.
inbox_file() {
	local f="$tmp/req-$2-$4.json"
	file_request "$f" "$4" "$2" "$5"
	put "$1" "sessions/$2/runners/$3/inbox/$4.json" "$f"
}

# lease EMU SESSION TOKEN: writes the session's runner.json naming TOKEN.
lease() {
	printf '{"token":"%s","execution":"","started_at":%s,"idle_timeout_s":3}' "$3" "$(date +%s)" >"$tmp/lease.json"
	put "$1" "sessions/$2/runner.json" "$tmp/lease.json"
}

# container WS ARGS...: runs the executor in a container like Cloud Run's (as
# test_executor_cloud.sh does); CONTAINER_EXEC=1: bwrap replaces the shell.
container() {
	local ws=$1
	shift
	local run=()
	[ -n "${CONTAINER_EXEC:-}" ] && run=(exec)
	"${run[@]}" bwrap --unshare-all --share-net --die-with-parent --new-session \
		--ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib \
		--symlink usr/lib64 /lib64 --symlink usr/sbin /sbin --ro-bind /etc /etc \
		--proc /proc --dev /dev --tmpfs /tmp --bind "$ws" /workspace \
		--ro-bind "$EXE" /tmp/cloudrun-sandbox-executor \
		--chdir /workspace --clearenv \
		--setenv PATH /usr/local/bin:/usr/bin:/bin --setenv HOME /tmp \
		--setenv ASAN_OPTIONS "$ASAN_OPTIONS" --setenv UBSAN_OPTIONS "$UBSAN_OPTIONS" \
		"$@"
}

# sanitizer_check FILE: counts a sanitizer report in a run's stderr.
sanitizer_check() {
	RUNS=$((RUNS + 1))
	if grep -qE 'Sanitizer|runtime error:' "$1"; then
		SANITIZER_REPORTS=$((SANITIZER_REPORTS + 1))
		echo "# sanitizer report in $(basename "$1"):"
		sed 's/^/#   /' "$1" | head -n 40
	fi
}

# cold EMU SESSION ID COMMAND: runs one request in cold mode; result in $tmp/result.json.
cold() {
	local ws
	ws=$(mktemp -d "$tmp/cws.XXXXXX")
	exec_request "$tmp/creq.json" "$3" "$2" "$4"
	put "$1" "sessions/$2/requests/$3.json" "$tmp/creq.json"
	container "$ws" --setenv STORAGE_EMULATOR_HOST "$1" \
		/tmp/cloudrun-sandbox-executor cloud "$BUCKET" "sessions/$2/requests/$3.json" \
		>"$tmp/cold.out" 2>"$tmp/cold-$3.err"
	RC=$?
	sanitizer_check "$tmp/cold-$3.err"
	rm -rf "$ws"
	get "$1" "sessions/$2/results/$3.json" "$tmp/result.json"
}

# start_runner TAG EMU SESSION TOKEN IDLE_S [NAME=VALUE...]: starts a runner in
# the background with the workspace $tmp/rws-TAG; its pid is $RPID, its
# stderr $tmp/runner-TAG.err.
start_runner() {
	local tag=$1 emu=$2 session=$3 token=$4 idle=$5
	shift 5
	local envargs=(--setenv STORAGE_EMULATOR_HOST "$emu" --setenv CLOUD_RUN_EXECUTION "exec-$tag"
		--setenv CLOUD_RUN_TASK_INDEX 0 --setenv CLOUD_RUN_TASK_ATTEMPT 0)
	for kv in "$@"; do
		envargs+=(--setenv "${kv%%=*}" "${kv#*=}")
	done
	rm -rf "$tmp/rws-$tag"
	mkdir -p "$tmp/rws-$tag"
	CONTAINER_EXEC=1 container "$tmp/rws-$tag" "${envargs[@]}" \
		/tmp/cloudrun-sandbox-executor runner "$BUCKET" "sessions/$session" "$token" "$idle" \
		>"$tmp/runner-$tag.out" 2>"$tmp/runner-$tag.err" &
	RPID=$!
	pids+=("$RPID")
}

# wait_exit PID SECONDS: waits up to SECONDS for PID to end; its status in $RC (255: still running).
wait_exit() {
	local i
	for i in $(seq $(($2 * 20))); do
		if ! kill -0 "$1" 2>/dev/null; then
			wait "$1"
			RC=$?
			return 0
		fi
		sleep 0.05
	done
	RC=255
	return 1
}

# wait_object EMU NAME SECONDS: waits for object NAME to exist.
wait_object() {
	local i
	for i in $(seq $(($3 * 10))); do
		exists "$1" "$2" && return 0
		sleep 0.1
	done
	echo "object $2 did not appear within $3 s" >>"$tmp/why"
	return 1
}

# tree_listing DIR: every entry's path, mode, type and link target, regular
# files' sizes and SHA-256: a tree compared byte for byte.
tree_listing() {
	(cd "$1" && find . -mindepth 1 -printf '%p %m %y %l\n' | LC_ALL=C sort &&
		find . -type f -printf '%p %s\n' | LC_ALL=C sort &&
		find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum)
}

# same_tree A B: whether two trees list the same (explains otherwise).
same_tree() {
	tree_listing "$1" >"$tmp/tree-a"
	tree_listing "$2" >"$tmp/tree-b"
	cmp -s "$tmp/tree-a" "$tmp/tree-b" && return 0
	{
		echo "trees differ ($1 vs $2):"
		diff "$tmp/tree-a" "$tmp/tree-b" | head -n 30
	} >>"$tmp/why"
	return 1
}

# LIST_CMD: the same listing, made by a command inside the sandbox.
LIST_CMD='cd /workspace && find . -mindepth 1 -printf "%p %m %y %l\n" | LC_ALL=C sort && find . -type f -printf "%p %s\n" | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum'

# result_stdout_is FILE EXPECTED_FILE: whether a result's stdout is the file's bytes.
stdout_is() {
	js "$1" 'j.stdout' >"$tmp/got-stdout"
	cmp -s "$tmp/got-stdout" "$2" && return 0
	{
		echo "stdout differs from $(basename "$2"):"
		diff "$2" "$tmp/got-stdout" | head -n 30
		echo "result: $(head -c 600 "$1")"
	} >>"$tmp/why"
	return 1
}

: >"$tmp/why"
T1=0123456789abcdef0123456789abcdef
T2=1111111111111111aaaaaaaaaaaaaaaa
T3=2222222222222222bbbbbbbbbbbbbbbb
T4=3333333333333333cccccccccccccccc
T5=4444444444444444dddddddddddddddd
T6=5555555555555555eeeeeeeeeeeeeeee
T7=6666666666666666ffffffffffffffff
T8=77777777777777770000000000000000

# --- a runner serves requests in order, with increments ---------------------

echo "# a runner serves exec and file requests in order"
# The session's base: a cold execution.
cold "$EMU" r1 1 'mkdir -p a/b olddir && echo one > a/b/f1 && echo keep > keep.txt && chmod 640 keep.txt && ln -s a/b/f1 link && echo x > olddir/x && echo gone > gone.txt && printf "\001\377bin" > bin.dat'
check "a cold execution makes the session's base" \
	eval '[ "$RC" = 0 ] && holds "$tmp/result.json" "j.status === \"succeeded\""'

# The same commands applied locally: the tree every restore must give back.
mkdir -p "$tmp/expect"
(cd "$tmp/expect" && mkdir -p a/b olddir && echo one > a/b/f1 && echo keep > keep.txt &&
	chmod 640 keep.txt && ln -s a/b/f1 link && echo x > olddir/x && echo gone > gone.txt &&
	printf "\001\377bin" > bin.dat)

inbox "$EMU" r1 "$T1" 2 'echo two > two.txt; cd a; export V=2; echo out2'
inbox_file "$EMU" r1 "$T1" 3 '{"op":"file_write","path":"/workspace/a/w.txt","content":"written\n"}'
inbox "$EMU" r1 "$T1" 4 'pwd; echo "V=$V"; rm ../gone.txt; mv ../olddir ../newdir; chmod 700 ../newdir; ln -s ../keep.txt lnk2; chmod 600 ../keep.txt; echo more >> ../a/b/f1'
inbox_file "$EMU" r1 "$T1" 5 '{"op":"file_read","path":"/workspace/a/w.txt"}'
inbox "$EMU" r1 "$T1" 6 'true'
(cd "$tmp/expect" && echo two > two.txt && printf 'written\n' > a/w.txt && rm gone.txt &&
	mv olddir newdir && chmod 700 newdir && ln -s ../keep.txt a/lnk2 && chmod 600 keep.txt &&
	echo more >> a/b/f1)
lease "$EMU" r1 "$T1"
G0=$(generation "$EMU" sessions/r1/state.json)
start_runner one "$EMU" r1 "$T1" 3
R1=$RPID
wait_object "$EMU" sessions/r1/results/6.json 60
for i in 2 3 4 5 6; do get "$EMU" "sessions/r1/results/$i.json" "$tmp/r$i.json"; done
get "$EMU" sessions/r1/state.json "$tmp/state.json"
GS=$(generation "$EMU" sessions/r1/state.json)
check "exec 2: output, and its cd and export kept" \
	holds "$tmp/r2.json" 'j.status === "succeeded" && j.stdout === "out2\n" && j.state.cwd === "/workspace/a" && j.state.env.V === "2"'
check "file_write 3 ran in the session (changed, a new state generation)" \
	eval 'holds "$tmp/r3.json" "j.status === \"succeeded\" && j.state_generation > 0" && [ "$(js "$tmp/r3.json" "j.state_generation")" != "$(js "$tmp/r2.json" "j.state_generation")" ]'
check "exec 4 saw the cwd and env of 2 and ran after 3" \
	holds "$tmp/r4.json" 'j.status === "succeeded" && j.stdout === "/workspace/a\nV=2\n"'
check "file_read 5 reads what 3 wrote" \
	holds "$tmp/r5.json" 'j.status === "succeeded" && Buffer.from(j.data, "base64").toString() === "written\n"'
check "the requests were taken in order, one line each, and the inbox is empty" \
	eval '[ "$(grep -o "took execution [0-9]*" "$tmp/runner-one.err" | tr "\n" " ")" = "took execution 2 took execution 3 took execution 4 took execution 5 took execution 6 " ] && [ -z "$(listing "$EMU" sessions/r1/runners/$T1/inbox/)" ]'
check "state.json: the base plus increments 2, 3, 4, in order; cwd, env, last_execution 4" \
	holds "$tmp/state.json" 'j.workspace === "sessions/r1/workspace/1.tar" && JSON.stringify(j.increments) === JSON.stringify(["sessions/r1/workspace/2.inc.tar","sessions/r1/workspace/3.inc.tar","sessions/r1/workspace/4.inc.tar"]) && j.cwd === "/workspace/a" && j.env.V === "2" && j.last_execution === 4'
check "nothing changed (5: a read, 6: true): no increment, no state write, state_generation as it was" \
	eval 'missing "$EMU" sessions/r1/workspace/5.inc.tar && missing "$EMU" sessions/r1/workspace/6.inc.tar && holds "$tmp/r6.json" "j.status === \"succeeded\" && j.state_generation === $GS" && holds "$tmp/r5.json" "j.state_generation === undefined || j.state_generation === 0 || j.state_generation === $GS" && holds "$tmp/r4.json" "j.state_generation === $GS"'
check "every request has its claim, taken by this runner" \
	eval 'for i in 2 3 4 5 6; do get "$EMU" "sessions/r1/runners/$T1/claims/$i" "$tmp/claim.json" && holds "$tmp/claim.json" "j.taken.execution === \"exec-one\"" || exit 1; done'
get "$EMU" sessions/r1/workspace/2.inc.tar "$tmp/2.inc.tar"
check "an increment holds what its command changed, not the whole workspace" \
	eval 'tar -tf "$tmp/2.inc.tar" | grep -qx "./two.txt" && ! tar -tf "$tmp/2.inc.tar" | grep -q "keep.txt\|bin.dat\|f1$"'
wait_exit "$R1" 20
check "idle: the runner exits 0 after IDLE_TIMEOUT_S (3 s) without a request" \
	eval '[ "$RC" = 0 ] && grep -q "idle timeout" "$tmp/runner-one.err"'
sanitizer_check "$tmp/runner-one.err"
check "the runner's own workspace is the expected tree" same_tree "$tmp/expect" "$tmp/rws-one"
check "idle exit left everything saved: state.json unchanged since the last command" \
	eval '[ "$(generation "$EMU" sessions/r1/state.json)" = "$GS" ]'

# --- cold starts after increments --------------------------------------------

echo "# a cold start after increments restores the same files"
tree_listing "$tmp/expect" >"$tmp/expect.list"
cold "$EMU" r1 7 "$LIST_CMD"
check "cold mode restores base + increments: the same tree, byte for byte (modes, symlinks, a deleted file, a renamed directory)" \
	eval '[ "$RC" = 0 ] && holds "$tmp/result.json" "j.status === \"succeeded\"" && stdout_is "$tmp/result.json" "$tmp/expect.list"'
get "$EMU" sessions/r1/state.json "$tmp/state.json"
check "cold mode writes a full base again: increments [], the old base and increments deleted" \
	eval 'holds "$tmp/state.json" "j.workspace === \"sessions/r1/workspace/7.tar\" && Array.isArray(j.increments) && j.increments.length === 0" && missing "$EMU" sessions/r1/workspace/1.tar && missing "$EMU" sessions/r1/workspace/2.inc.tar && missing "$EMU" sessions/r1/workspace/4.inc.tar'

# A second runner after the first: more increments, then it restores them itself.
lease "$EMU" r1 "$T2"
inbox "$EMU" r1 "$T2" 8 'cd /workspace && mkdir -p z/y && echo deep > z/y/d && rm -r newdir && ln -s z/y zl && chmod 751 z'
start_runner two "$EMU" r1 "$T2" 3
wait_exit "$RPID" 40
sanitizer_check "$tmp/runner-two.err"
(cd "$tmp/expect" && mkdir -p z/y && echo deep > z/y/d && rm -r newdir && ln -s z/y zl && chmod 751 z)
tree_listing "$tmp/expect" >"$tmp/expect.list"
lease "$EMU" r1 "$T3"
inbox "$EMU" r1 "$T3" 9 "$LIST_CMD"
start_runner three "$EMU" r1 "$T3" 3
wait_exit "$RPID" 40
sanitizer_check "$tmp/runner-three.err"
get "$EMU" sessions/r1/results/9.json "$tmp/result.json"
check "a second runner (after the first exited) restores base + increments: the same tree" \
	eval 'holds "$tmp/result.json" "j.status === \"succeeded\"" && stdout_is "$tmp/result.json" "$tmp/expect.list" && same_tree "$tmp/expect" "$tmp/rws-three"'

# --- the owner claim ------------------------------------------------------------

echo "# two runners with one token"
lease "$EMU" r1 "$T4"
start_runner four "$EMU" r1 "$T4" 60
R4=$RPID
wait_object "$EMU" "sessions/r1/runners/$T4/owner" 30
sleep 0.5
listing "$EMU" sessions/r1/ >"$tmp/before.list"
start_runner fourbis "$EMU" r1 "$T4" 60
wait_exit "$RPID" 30
sanitizer_check "$tmp/runner-fourbis.err"
listing "$EMU" sessions/r1/ >"$tmp/after.list"
check "a second runner with the same token exits 0 having written nothing" \
	eval '[ "$RC" = 0 ] && grep -q "another runner owns this token" "$tmp/runner-fourbis.err" && cmp -s "$tmp/before.list" "$tmp/after.list"'

# --- a withdrawn claim ---------------------------------------------------------

echo "# a withdrawn claim"
printf '{"withdrawn":true}' >"$tmp/withdrawn.json"
put "$EMU" "sessions/r1/runners/$T4/claims/10" "$tmp/withdrawn.json"
inbox "$EMU" r1 "$T4" 10 'echo ran > withdrawn.txt'
for _ in $(seq 100); do
	grep -q "execution 10 was claimed" "$tmp/runner-four.err" && break
	sleep 0.1
done
inbox "$EMU" r1 "$T4" 11 'ls /workspace/withdrawn.txt 2>&1; echo done'
wait_object "$EMU" sessions/r1/results/11.json 30
get "$EMU" sessions/r1/results/11.json "$tmp/result.json"
check "a request whose claim was withdrawn first is not run (no result; its inbox object left for the extension to run it cold)" \
	eval 'missing "$EMU" sessions/r1/results/10.json && exists "$EMU" "sessions/r1/runners/$T4/inbox/10.json" && holds "$tmp/result.json" "/No such file/.test(j.stdout) && /done/.test(j.stdout)" && ! grep -q "took execution 10" "$tmp/runner-four.err" && [ "$(grep -c "execution 10 was claimed" "$tmp/runner-four.err")" = 1 ]'

# --- a request put again, a withdrawn one left, the idle clock, the lease let go -----

echo "# a served request put in the inbox again; a withdrawn request; idle exit"
T9=88888888888888881111111111111111
cold "$EMU" r9 1 'true'
lease "$EMU" r9 "$T9"
inbox "$EMU" r9 "$T9" 2 'echo x >> /workspace/count.txt; wc -l < /workspace/count.txt'
start_runner nine "$EMU" r9 "$T9" 3
R9=$RPID
wait_object "$EMU" sessions/r9/results/2.json 30
for _ in $(seq 100); do
	exists "$EMU" "sessions/r9/runners/$T9/inbox/2.json" || break
	sleep 0.05
done
# The extension's upload retried after a lost answer: the same request again.
put "$EMU" "sessions/r9/runners/$T9/inbox/2.json" "$tmp/req-r9-2.json"
sleep 1
inbox "$EMU" r9 "$T9" 3 'wc -l < /workspace/count.txt'
wait_object "$EMU" sessions/r9/results/3.json 30
get "$EMU" sessions/r9/results/3.json "$tmp/result.json"
for _ in $(seq 100); do
	exists "$EMU" "sessions/r9/runners/$T9/inbox/2.json" || break
	sleep 0.05
done
check "a served request whose inbox object reappears is not run again (counter 1), the object deleted" \
	eval 'holds "$tmp/result.json" "j.status === \"succeeded\" && j.stdout.trim() === \"1\"" && [ "$(grep -c "took execution 2$" "$tmp/runner-nine.err")" = 1 ] && missing "$EMU" "sessions/r9/runners/$T9/inbox/2.json"'
# A withdrawn claim: its inbox object stays, and the runner still idles out on time.
put "$EMU" "sessions/r9/runners/$T9/claims/4" "$tmp/withdrawn.json"
inbox "$EMU" r9 "$T9" 4 'echo x >> /workspace/count.txt'
for _ in $(seq 100); do
	grep -q "execution 4 was claimed" "$tmp/runner-nine.err" && break
	sleep 0.05
done
start=$(date +%s)
wait_exit "$R9" 30
took=$(($(date +%s) - start))
sanitizer_check "$tmp/runner-nine.err"
check "a withdrawn request is left in the inbox, looked at once, and the runner idles out on time ($took s, idle 3 s)" \
	eval '[ "$RC" = 0 ] && [ "$took" -le 10 ] && grep -q "idle timeout" "$tmp/runner-nine.err" && exists "$EMU" "sessions/r9/runners/$T9/inbox/4.json" && missing "$EMU" sessions/r9/results/4.json && [ "$(grep -c "execution 4 was claimed" "$tmp/runner-nine.err")" = 1 ]'
get "$EMU" sessions/r9/runner.json "$tmp/lease-after.json"
check "idle exit lets the lease go: runner.json no longer names the runner" \
	eval 'holds "$tmp/lease-after.json" "j !== undefined && j.token === undefined"'

# --- file operations' /tmp --------------------------------------------------------

echo "# a file operation's /tmp is its own, fresh for each request"
T10=99999999999999992222222222222222
lease "$EMU" r9 "$T10"
inbox_file "$EMU" r9 "$T10" 5 '{"op":"file_write","path":"/tmp/x","content":"kept?\n"}'
inbox_file "$EMU" r9 "$T10" 6 '{"op":"file_read","path":"/tmp/x"}'
inbox_file "$EMU" r9 "$T10" 7 '{"op":"file_list","path":"/tmp"}'
inbox_file "$EMU" r9 "$T10" 8 '{"op":"file_write","path":"/tmp/d","content":"d\n"}'
inbox_file "$EMU" r9 "$T10" 9 '{"op":"file_list","path":"/tmp"}'
start_runner ten "$EMU" r9 "$T10" 3
wait_object "$EMU" sessions/r9/results/9.json 40
for i in 5 6 7 9; do get "$EMU" "sessions/r9/results/$i.json" "$tmp/r$i.json"; done
check "file_write /tmp/x in one request, file_read /tmp/x in the next: not found" \
	eval 'holds "$tmp/r5.json" "j.status === \"succeeded\"" && holds "$tmp/r6.json" "j.status !== \"succeeded\" && j.error_code === \"not_found\""'
check "file_list /tmp sees an empty /tmp of its own: no snapshot directory, nothing of an earlier request" \
	eval 'holds "$tmp/r7.json" "j.status === \"succeeded\" && Array.isArray(j.items) && j.items.length === 0" && holds "$tmp/r9.json" "j.status === \"succeeded\" && Array.isArray(j.items) && j.items.length === 0"'
wait_exit "$RPID" 30
sanitizer_check "$tmp/runner-ten.err"

# --- a state written by another writer between two requests ----------------------

echo "# a state written by another writer between two requests: restored before the next"
T11=aaaaaaaaaaaaaaaa3333333333333333
lease "$EMU" r9 "$T11"
inbox "$EMU" r9 "$T11" 10 'echo a > /workspace/a.txt'
start_runner eleven "$EMU" r9 "$T11" 8
R11=$RPID
wait_object "$EMU" sessions/r9/results/10.json 30
cold "$EMU" r9 11 'echo cold > /workspace/c.txt; rm -f /workspace/a.txt'
inbox "$EMU" r9 "$T11" 12 'cat /workspace/c.txt; ls /workspace/a.txt 2>&1; true'
wait_object "$EMU" sessions/r9/results/12.json 30
get "$EMU" sessions/r9/results/12.json "$tmp/result.json"
check "the runner sees state.json's new generation and restores it first: the cold execution's files" \
	eval 'holds "$tmp/result.json" "j.status === \"succeeded\" && /^cold\n/.test(j.stdout) && /No such file/.test(j.stdout)" && grep -q "restoring it" "$tmp/runner-eleven.err"'
wait_exit "$R11" 30
sanitizer_check "$tmp/runner-eleven.err"
check "... and goes on serving, exiting 0 when idle" eval '[ "$RC" = 0 ] && grep -q "idle timeout" "$tmp/runner-eleven.err"'

# --- a revoked lease ---------------------------------------------------------------

echo "# a revoked lease"
lease "$EMU" r1 "$T5"
start=$(date +%s)
wait_exit "$R4" 30
took=$(($(date +%s) - start))
sanitizer_check "$tmp/runner-four.err"
check "a revoked lease (runner.json names another token): the runner exits 0 within ~12 s ($took s)" \
	eval '[ "$RC" = 0 ] && [ "$took" -le 16 ] && grep -q "lease was revoked" "$tmp/runner-four.err"'
inbox "$EMU" r1 "$T4" 12 'echo no'
sleep 2
check "... and takes no further request" \
	eval 'missing "$EMU" sessions/r1/results/12.json && missing "$EMU" "sessions/r1/runners/$T4/claims/12"'

# --- compaction ---------------------------------------------------------------------

echo "# compaction after 32 increments"
lease "$EMU" r1 "$T5"
for i in $(seq 20 53); do
	inbox "$EMU" r1 "$T5" "$i" "echo $i >> /workspace/counter; echo $i > /workspace/f$i"
	(cd "$tmp/expect" && echo "$i" >> counter && echo "$i" > "f$i")
done
start_runner five "$EMU" r1 "$T5" 3
wait_exit "$RPID" 120
sanitizer_check "$tmp/runner-five.err"
get "$EMU" sessions/r1/state.json "$tmp/state.json"
check "idle exit after 34 increments compacts: a new base, increments [], only it is left" \
	eval '[ "$RC" = 0 ] && holds "$tmp/state.json" "j.workspace === \"sessions/r1/workspace/53.tar\" && j.increments.length === 0 && j.last_execution === 53" && [ "$(listing "$EMU" sessions/r1/workspace/ | cut -d" " -f1)" = "sessions/r1/workspace/53.tar" ]'
tree_listing "$tmp/expect" >"$tmp/expect.list"
cold "$EMU" r1 54 "$LIST_CMD"
check "after compaction a cold start restores the same files" \
	eval 'holds "$tmp/result.json" "j.status === \"succeeded\"" && stdout_is "$tmp/result.json" "$tmp/expect.list" && same_tree "$tmp/expect" "$tmp/rws-five"'

# --- GCS requests while idle -----------------------------------------------------------

echo "# GCS requests of an idle runner"
lease "$IDLE_EMU" q1 "$T6"
start_runner six "$IDLE_EMU" q1 "$T6" 60
R6=$RPID
wait_object "$IDLE_EMU" "sessions/q1/runners/$T6/owner" 30
sleep 4
gcs_calls() {
	curl -sf "$IDLE_EMU/_emulator/stats" -o "$tmp/stats.json" &&
		js "$tmp/stats.json" 'Object.entries(j.calls).filter(([k]) => / (object|media|objects|upload)$/.test(k)).reduce((a, [, v]) => a + v, 0)'
}
c0=$(gcs_calls)
sleep 10
c1=$(gcs_calls)
idle_calls=$((c1 - c0))
check "an idle runner makes <= 12 (+2) GCS requests in 10 s ($idle_calls)" \
	eval '[ "$idle_calls" -ge 5 ] && [ "$idle_calls" -le 14 ]'
kill "$R6" 2>/dev/null
wait "$R6" 2>/dev/null

# --- killed mid-command --------------------------------------------------------------

echo "# a runner killed mid-command"
lease "$EMU" r1 "$T7"
inbox "$EMU" r1 "$T7" 60 'echo started; sleep 60'
start_runner seven "$EMU" r1 "$T7" 60
R7=$RPID
wait_object "$EMU" "sessions/r1/runners/$T7/claims/60" 40
sleep 2
{
	kill -KILL "$R7"
	wait "$R7"
} 2>/dev/null
sleep 1
check "SIGKILL mid-command leaves no result, and the request's claim" \
	eval 'missing "$EMU" sessions/r1/results/60.json && exists "$EMU" "sessions/r1/runners/$T7/claims/60"'
get "$EMU" "sessions/r1/runners/$T7/owner" "$tmp/owner7.json"
# The same request in the inbox again, and a runner of the same token.
put "$EMU" "sessions/r1/runners/$T7/inbox/60.json" "$tmp/req-r1-60.json"
start_runner seven "$EMU" r1 "$T7" 3
wait_exit "$RPID" 40
sanitizer_check "$tmp/runner-seven.err"
get "$EMU" "sessions/r1/runners/$T7/owner" "$tmp/owner7b.json"
if cmp -s "$tmp/owner7.json" "$tmp/owner7b.json"; then
	# Same execution, task, attempt and pid: the same owner; it finds its own claim.
	get "$EMU" sessions/r1/results/60.json "$tmp/result.json"
	check "a new runner of the same token does not run it again: the result says its output is lost" \
		eval 'holds "$tmp/result.json" "j.status === \"error\" && j.error === \"the session runner stopped while it ran execution 60; its output is lost\" && j.stdout === \"\"" && ! grep -q "took execution 60" "$tmp/runner-seven.err"'
else
	check "a new runner of the same token (another owner) exits without running it" \
		eval 'missing "$EMU" sessions/r1/results/60.json && grep -q "another runner owns" "$tmp/runner-seven.err"'
fi
lease "$EMU" r1 "$T8"
inbox "$EMU" r1 "$T8" 61 'cat /workspace/counter | wc -l'
start_runner eight "$EMU" r1 "$T8" 3
wait_exit "$RPID" 40
sanitizer_check "$tmp/runner-eight.err"
get "$EMU" sessions/r1/results/61.json "$tmp/result.json"
check "the next request works through a new runner" \
	holds "$tmp/result.json" 'j.status === "succeeded" && j.stdout === "34\n"'

# --- cancel, transfers, a replaced state, a foreign increment ---------------------------

echo "# cancel marker, upload and download transfer objects, fencing by generation"
TA=88888888888888881111111111111111
cold "$EMU" r2 1 'echo base > base.txt'
lease "$EMU" r2 "$TA"
head -c 300000 /dev/urandom >"$tmp/upload.bin"
put "$EMU" sessions/r2/transfer/2 "$tmp/upload.bin"
inbox_file "$EMU" r2 "$TA" 2 '{"op":"file_upload","path":"/workspace/up.bin","transfer":"sessions/r2/transfer/2"}'
inbox_file "$EMU" r2 "$TA" 3 '{"op":"file_download","path":"/workspace/up.bin"}'
inbox "$EMU" r2 "$TA" 4 'echo begun; sleep 30; echo never > never.txt'
start_runner ra "$EMU" r2 "$TA" 60
RA=$RPID
wait_object "$EMU" sessions/r2/results/3.json 40
get "$EMU" sessions/r2/results/2.json "$tmp/r2.json"
get "$EMU" sessions/r2/results/3.json "$tmp/r3.json"
check "file_upload through a runner reads its transfer object; it makes an increment" \
	eval 'holds "$tmp/r2.json" "j.status === \"succeeded\" && j.count === 300000" && exists "$EMU" sessions/r2/workspace/2.inc.tar'
check "file_download through a runner gives the same bytes back" \
	eval 'holds "$tmp/r3.json" "j.status === \"succeeded\"" && { if js "$tmp/r3.json" "!!j.transfer"; then get "$EMU" "$(js "$tmp/r3.json" "j.transfer")" "$tmp/down.bin"; else js "$tmp/r3.json" "j.data" | base64 -d >"$tmp/down.bin"; fi; cmp -s "$tmp/upload.bin" "$tmp/down.bin"; }'
wait_object "$EMU" "sessions/r2/runners/$TA/claims/4" 30
sleep 1.5
printf 'x' >"$tmp/cancel"
put "$EMU" sessions/r2/requests/4.cancel "$tmp/cancel"
wait_object "$EMU" sessions/r2/results/4.json 20
get "$EMU" sessions/r2/results/4.json "$tmp/r4.json"
check "a cancel marker stops the runner's command: an error result, nothing saved, the runner goes on" \
	eval 'holds "$tmp/r4.json" "j.status === \"error\" && /cancel/.test(j.error)" && missing "$EMU" sessions/r2/workspace/4.inc.tar && kill -0 "$RA"'
# Another writer replaces state.json while a command runs.
inbox "$EMU" r2 "$TA" 5 'sleep 3; echo late > late.txt'
wait_object "$EMU" "sessions/r2/runners/$TA/claims/5" 30
get "$EMU" sessions/r2/state.json "$tmp/st.json"
put "$EMU" sessions/r2/state.json "$tmp/st.json"
GX=$(generation "$EMU" sessions/r2/state.json)
wait_exit "$RA" 30
sanitizer_check "$tmp/runner-ra.err"
get "$EMU" sessions/r2/results/5.json "$tmp/r5.json"
check "a state replaced while the command ran: the result says so, nothing kept, the runner exits" \
	eval '[ "$RC" = 0 ] && holds "$tmp/r5.json" "j.status === \"error\" && /state changed while the command ran/.test(j.error)" && [ "$(generation "$EMU" sessions/r2/state.json)" = "$GX" ] && missing "$EMU" sessions/r2/workspace/5.inc.tar'
# A state naming an increment of another session is refused.
node -e '
const fs = require("fs"); const j = JSON.parse(fs.readFileSync(process.argv[1]));
j.increments = ["sessions/r1/workspace/53.tar"]; fs.writeFileSync(process.argv[1], JSON.stringify(j));' "$tmp/st.json"
put "$EMU" sessions/r2/state.json "$tmp/st.json"
cold "$EMU" r2 6 'echo hi'
check "an increment outside the session is refused (cold mode: an error result)" \
	holds "$tmp/result.json" 'j.status === "error" && /increment outside the session/.test(j.error)'
TB=9999999999999999aaaaaaaaaaaaaaaa
lease "$EMU" r2 "$TB"
start_runner rb "$EMU" r2 "$TB" 3
wait_exit "$RPID" 30
sanitizer_check "$tmp/runner-rb.err"
check "... and a runner does not start on it (exit 1, saying why)" \
	eval '[ "$RC" = 1 ] && grep -q "increment outside the session" "$tmp/runner-rb.err"'

# --- arguments ---------------------------------------------------------------------

"$EXE" runner "$BUCKET" sessions/r1/ "$T1" 3 2>"$tmp/bad.err"
RC=$?
check "bad arguments (a trailing slash): exit 2 with a message" \
	eval '[ "$RC" = 2 ] && grep -q "bad arguments" "$tmp/bad.err"'
"$EXE" runner "$BUCKET" sessions/r1 not-a-token 3 2>"$tmp/bad.err"
RC=$?
check "bad arguments (a token that is not 32 hex digits): exit 2, the token not printed" \
	eval '[ "$RC" = 2 ] && ! grep -q "not-a-token" "$tmp/bad.err"'

# --- sanitizers --------------------------------------------------------------

check "no tokens on standard error" \
	eval '! cat "$tmp"/runner-*.err | grep -q "$T1\|$T2\|$T3\|$T4\|$T5\|$T6\|$T7\|$T8\|$TA\|$TB"'
check "no AddressSanitizer, LeakSanitizer or UBSan reports in $RUNS runs" \
	eval '[ $SANITIZER_REPORTS = 0 ]'

echo "1..$N"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
