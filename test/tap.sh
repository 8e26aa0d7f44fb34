#!/usr/bin/env bash
# test/tap.sh FILE...: build and install, start a throwaway cluster and the
# emulator, prepare the pgTAP database as test/run.sh does, and run the given
# pgTAP files with pg_prove (verbose).  For working on a few tests at a time;
# PGOPTIONS="-c cloudrun_sandbox.backend=cloudrun" runs them on the cloud backend.
source "$(dirname "$0")/lib.sh"

[ $# -gt 0 ] || { echo "usage: test/tap.sh FILE..." >&2; exit 2; }
install_deps
build_install
WORKER_DB=sandbox_tap cluster_start
tap_setup
rc=0
# Behaviour files run as the role tap (sandbox_user only); the security group's
# and fault files as the superuser that sets up their attacks (test/run.sh does
# the same).
sec=() other=() faults=()
for f in "$@"; do case "$f" in */security/*) sec+=("$f") ;; */faults/*) faults+=("$f") ;; *) other+=("$f") ;; esac; done
[ ${#other[@]} -eq 0 ] || pg_prove -U tap -v -d sandbox_tap "${other[@]}" || rc=$?
[ ${#sec[@]} -eq 0 ] || pg_prove -v -d sandbox_tap "${sec[@]}" || rc=$?
# The fault suite, each file followed by a check of the server log.
[ ${#faults[@]} -eq 0 ] || run_faults "${faults[@]}" || rc=$?
# TAP_SERVER_LOG=FILE keeps a copy of the server's log.
[ -z "${TAP_SERVER_LOG:-}" ] || cp "$CLUSTER_DIR/server.log" "$TAP_SERVER_LOG" || true
if [ "$rc" != 0 ]; then
	log "server log tail:"
	tail -40 "$CLUSTER_DIR/server.log" >&2 || true
fi
exit "$rc"
