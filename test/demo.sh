#!/usr/bin/env bash
# test/demo.sh: the main job.  Installs what is needed, builds and installs the
# extension, starts a throwaway cluster with the library preloaded, creates the
# extension, runs a short session on the local backend, and stops the cluster.
source "$(dirname "$0")/lib.sh"

install_deps
build_install
cluster_start

psql -X -v ON_ERROR_STOP=1 -q <<'SQL'
\pset border 2
CREATE EXTENSION cloudrun_sandbox;
\echo '-- a command, in a brand-new session:'
SELECT id, status, exit_code, stdout, cwd FROM sandbox.exec('echo "hello from $(hostname)"', 'demo');
\echo '-- cd and export persist between calls:'
SELECT status, stdout, cwd FROM sandbox.exec('mkdir -p project && cd project && export GREETING=hi', 'demo');
SELECT status, stdout, cwd FROM sandbox.exec('echo "$GREETING from $(pwd)"', 'demo');
\echo '-- a file written in one call is read in the next:'
SELECT status FROM sandbox.exec('printf "line 1\nline 2\n" > notes.txt', 'demo');
SELECT status, stdout FROM sandbox.exec('wc -l notes.txt && cat notes.txt', 'demo');
\echo '-- exit codes, timeouts, and the host kept out of sight:'
SELECT status, exit_code, stdout FROM sandbox.exec('ls /var/lib/postgresql || exit 3', 'demo');
SELECT status, exit_code, duration < interval '3 s' AS fast FROM sandbox.exec('sleep 30', 'demo', timeout => '1 second');
\echo '-- the mirror of the session and its history:'
SELECT name, owner, backend, cwd, env, generation FROM sandbox.sessions;
SELECT id, command, status, exit_code FROM sandbox.executions ORDER BY id;
SELECT sandbox.drop_session('demo');
SQL
log "demo finished"
