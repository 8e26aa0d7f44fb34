-- Issue 9, finding 9 (and the mountinfo part of 10): the local sandbox gets the
-- least kernel it needs.  Each attack below worked before bwrap got
-- --disable-userns and a seccomp filter; each test passes only when it fails
-- (a probe prints "denied" only when the call got the filter's EPERM or ENOSYS).
-- Positive controls show that ordinary work still runs, in a command, in a
-- warm sandbox and in a background process.
-- Role: alice (only sandbox_user); the superuser only reads the paths to look for.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT current_setting('data_directory') AS datadir,
	   regexp_replace(current_setting('data_directory'), '/[^/]+$', '') AS clusterdir,
	   (SELECT setting FROM pg_config WHERE name = 'BINDIR') AS bindir \gset
SET ROLE alice;
SELECT plan(30);
SELECT sandbox.drop_session(s, if_exists => true) FROM unnest(ARRAY['kernel9', 'kernel9w']) s;

-- Nested namespaces and mounts.
SELECT alike((SELECT exit_code || ' ' || stderr FROM sandbox.exec('unshare -Urmn true', 'kernel9')),
			 '1 unshare: unshare failed%', 'unshare -Urmn (nested user, mount and network namespaces) fails');
SELECT alike((SELECT exit_code || ' ' || stderr FROM sandbox.exec('unshare -U true', 'kernel9')),
			 '1 unshare: unshare failed%', 'unshare -U (a nested user namespace) fails');
SELECT is((SELECT stdout FROM sandbox.exec(
			 $$(mount -t tmpfs none /tmp || unshare -Urm sh -c 'mount -t tmpfs none /tmp && touch /tmp/.m && test -e /tmp/.m') 2>/dev/null && echo mounted$$,
			 'kernel9')), '', 'mounting a tmpfs fails, directly and in a nested namespace');
SELECT is((SELECT stdout FROM sandbox.exec(
			 $$perl -e '$r = syscall(56, 0x10000000 | 17, 0, 0, 0, 0); exit 0 if $r == 0; print $r >= 0 ? "reached\n" : ($!{EPERM} || $!{ENOSYS}) ? "denied\n" : "error: $!\n"'$$,
			 'kernel9')), E'denied\n', 'clone(CLONE_NEWUSER) is denied');
SELECT is((SELECT stdout FROM sandbox.exec(
			 $$unshare -U sleep 30 2>/dev/null & p=$!; sleep 0.3; f=/proc/$p/ns/user; test -r $f || f=/proc/self/ns/user; perl -e 'open(my $f, "<", $ARGV[0]) or die "$!"; $r = syscall(308, fileno($f), 0); print $r >= 0 ? "reached\n" : ($!{EPERM} || $!{ENOSYS}) ? "denied\n" : "error: $!\n"' $f; kill -9 $p 2>/dev/null$$,
			 'kernel9')), E'denied\n', 'setns (into a user namespace a child made) is denied');

-- io_uring, keyrings, ptrace, bpf, perf, userfaultfd (x86_64 system call numbers).
SELECT is((SELECT stdout FROM sandbox.exec(
			 $$perl -e '$p = "\0" x 120; $r = syscall(425, 1, $p); print $r >= 0 ? "reached\n" : ($!{EPERM} || $!{ENOSYS}) ? "denied\n" : "error: $!\n"'$$,
			 'kernel9')), E'denied\n', 'io_uring_setup is denied');
SELECT is((SELECT stdout FROM sandbox.exec(
			 $$perl -e '($t, $d, $v) = ("user", "k9", "v"); $r = syscall(248, $t, $d, $v, 1, -2); print $r >= 0 ? "reached\n" : ($!{EPERM} || $!{ENOSYS}) ? "denied\n" : "error: $!\n"'$$,
			 'kernel9')), E'denied\n', 'add_key (to the process keyring) is denied');
SELECT is((SELECT stdout FROM sandbox.exec(
			 $$perl -e '$r = syscall(250, 1, 0); print $r >= 0 ? "reached\n" : ($!{EPERM} || $!{ENOSYS}) ? "denied\n" : "error: $!\n"'$$,
			 'kernel9')), E'denied\n', 'keyctl (join a new session keyring) is denied');
SELECT is((SELECT stdout FROM sandbox.exec(
			 $$sleep 30 & perl -e '$r = syscall(101, 16, 0 + $ARGV[0], 0, 0); print $r >= 0 ? "reached\n" : ($!{EPERM} || $!{ENOSYS}) ? "denied\n" : "error: $!\n"' $!; kill -9 $!$$,
			 'kernel9')), E'denied\n', 'ptrace(PTRACE_ATTACH) of a sibling process is denied');
SELECT is((SELECT stdout FROM sandbox.exec(
			 $$sleep 30 & a=$(head -1 /proc/$!/maps | cut -d- -f1); perl -e '$b = "\0" x 8; $l = pack("QQ", unpack("Q", pack("p", $b)), 8); $rv = pack("QQ", hex($ARGV[1]), 8); $r = syscall(310, 0 + $ARGV[0], $l, 1, $rv, 1, 0); print $r >= 0 ? "reached\n" : ($!{EPERM} || $!{ENOSYS}) ? "denied\n" : "error: $!\n"' $! "$a"; kill -9 $!$$,
			 'kernel9')), E'denied\n', 'process_vm_readv of a sibling process is denied');
SELECT is((SELECT stdout FROM sandbox.exec(
			 $$strace -f -o /dev/null /bin/true 2>/dev/null && echo traced || echo not traced$$,
			 'kernel9')), E'not traced\n', 'strace (ptrace of its own child) fails');
-- An attribute larger than the kernel's with a non-zero tail: the kernel answers E2BIG before any permission check.
SELECT is((SELECT stdout FROM sandbox.exec(
			 $$perl -e '$a = "\0" x 4096; substr($a, 4000, 1) = "x"; $r = syscall(321, 0, $a, 4096); print $r >= 0 ? "reached\n" : ($!{EPERM} || $!{ENOSYS}) ? "denied\n" : "error: $!\n"'$$,
			 'kernel9')), E'denied\n', 'bpf never reaches the kernel''s bpf code');
SELECT is((SELECT stdout FROM sandbox.exec(
			 $$perl -e '$a = pack("LLQQQQQ", 1, 64, 0, 0, 0, 0, 0x61) . ("\0" x 16); $r = syscall(298, $a, 0, -1, -1, 0); print $r >= 0 ? "reached\n" : ($!{EPERM} || $!{ENOSYS}) ? "denied\n" : "error: $!\n"'$$,
			 'kernel9')), E'denied\n', 'perf_event_open (a software counter on itself) is denied');
SELECT is((SELECT stdout FROM sandbox.exec(
			 $$perl -e '$r = syscall(323, 1); print $r >= 0 ? "reached\n" : ($!{EPERM} || $!{ENOSYS}) ? "denied\n" : "error: $!\n"'$$,
			 'kernel9')), E'denied\n', 'userfaultfd is denied');

-- The same filter in a warm sandbox (a queued command) and in a background process.
SELECT sandbox.submit('unshare -U true; echo "unshare $?"; perl -e ''$p = "\0" x 120; print syscall(425, 1, $p) < 0 ? "denied\n" : "reached\n"''',
					  'kernel9w') AS warm1 \gset
SELECT is((SELECT stdout FROM sandbox.wait(:warm1, '60 s')), E'unshare 1\ndenied\n',
		  'in a warm sandbox, unshare -U and io_uring_setup fail too');
SELECT sandbox.submit('echo second', 'kernel9w') AS warm2 \gset
SELECT is((SELECT stdout FROM sandbox.wait(:warm2, '60 s')), E'second\n', 'the warm sandbox runs the next command');
SELECT sandbox.start_background('unshare -U true; echo "unshare $?" > .bg.tmp; perl -e ''$p = "\0" x 120; print syscall(425, 1, $p) < 0 ? "denied\n" : "reached\n"'' >> .bg.tmp; mv .bg.tmp bg.out',
							'kernel9') IS NOT NULL AS started;
SELECT is((SELECT stdout FROM sandbox.exec('for i in $(seq 100); do test -e bg.out && break; sleep 0.1; done; cat bg.out', 'kernel9')),
		  E'unshare 1\ndenied\n', 'in a background process, unshare -U and io_uring_setup fail too');

-- Ordinary work still runs.
SELECT is((SELECT stdout FROM sandbox.exec('seq 1000 | sort -rn | head -1', 'kernel9')), E'1000\n', 'a bash pipeline runs');
SELECT is((SELECT stdout FROM sandbox.exec(
			 $$python3 -c 'import threading, subprocess; t = threading.Thread(target=print, args=("thread",)); t.start(); t.join(); print(subprocess.run(["echo", "sub"], capture_output=True, text=True).stdout.strip())'$$,
			 'kernel9')), E'thread\nsub\n', 'python3 starts a thread and a subprocess');
SELECT is((SELECT stdout FROM sandbox.exec('n=0; for i in $(seq 300); do /bin/true && n=$((n+1)); done; echo $n', 'kernel9')),
		  E'300\n', 'a fork-heavy loop runs');
SELECT is((SELECT stdout FROM sandbox.exec($$sh -c 'sleep 0.1 &'; wait; echo waited$$, 'kernel9')), E'waited\n',
		  'a command that leaves a short background job runs');
SELECT is((SELECT stdout FROM sandbox.exec(
			 $$printf '#include <pthread.h>\n#include <stdio.h>\nstatic void *f(void *a) { return a; }\nint main(void) { pthread_t t; void *r; pthread_create(&t, 0, f, "threads"); pthread_join(t, &r); puts(r); return 0; }\n' > t.c && gcc -pthread -o t t.c && ./t$$,
			 'kernel9')), E'threads\n', 'gcc compiles a threaded program, which runs');
SELECT is((SELECT stdout FROM sandbox.exec($$printf 'all:\n\t@echo made\n' > Makefile && make -s$$, 'kernel9')), E'made\n', 'make runs');
SELECT is((SELECT stdout FROM sandbox.exec(
			 'rm -rf r && git init -q r && cd r && git -c user.email=a@b -c user.name=a commit -q --allow-empty -m x && git log --oneline | wc -l',
			 'kernel9')), E'1\n', 'git init and commit run');
SELECT is((SELECT stdout FROM sandbox.exec(
			 $$node -e 'require("child_process").execSync("true"); require("fs").writeFileSync("n.txt", "n"); console.log(require("fs").readFileSync("n.txt", "utf8") + (1 + 1))'$$,
			 'kernel9')), E'n2\n', 'node runs, with a child process and file I/O');
SELECT alike((SELECT stdout FROM sandbox.exec('python3 -m pip --version', 'kernel9')), 'pip %', 'pip runs');
SELECT is((SELECT stdout FROM sandbox.exec($$perl -e 'print "perl\n"'$$, 'kernel9')), E'perl\n', 'perl runs');
SELECT is((SELECT stdout FROM sandbox.exec('ls -l /proc/self/fd | grep -c memfd', 'kernel9')), E'0\n',
		  'the seccomp program''s descriptor is closed before the command starts');

-- /proc/self/mountinfo: no path of the data directory, no host path as a mount point.
SELECT is((SELECT count(*)::int
		   FROM regexp_split_to_table((SELECT stdout FROM sandbox.exec('cat /proc/self/mountinfo', 'kernel9')), E'\n') l
		   WHERE strpos(l, :'datadir') > 0),
		  0, 'mountinfo names no path in the data directory');
SELECT is((SELECT string_agg(split_part(l, ' ', 5), ' ')
		   FROM regexp_split_to_table((SELECT stdout FROM sandbox.exec('cat /proc/self/mountinfo', 'kernel9')), E'\n') l
		   WHERE strpos(split_part(l, ' ', 5), :'clusterdir') = 1 OR strpos(split_part(l, ' ', 5), :'bindir') = 1),
		  NULL, 'no mount point in the sandbox is a host path (the cluster''s directory, the executor''s directory)');

SELECT sandbox.drop_session(s) FROM unnest(ARRAY['kernel9', 'kernel9w']) s;
SELECT * FROM finish();
