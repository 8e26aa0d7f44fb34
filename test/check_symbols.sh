#!/usr/bin/env bash
# test/check_symbols.sh: the extension must not reference a library function
# whose name the postgres binary also exports (json_object is one): the dynamic
# linker would bind the postgres one, and calls would crash.
set -euo pipefail
PG_CONFIG=${1:-pg_config}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
postgres="$("$PG_CONFIG" --bindir)/postgres"
clash=$(comm -12 \
	<(nm -D --defined-only "$postgres" | awk '{print $3}' | sort -u) \
	<(nm -D --undefined-only "$ROOT/cloudrun_sandbox.so" | awk '{print $2}' | grep -E '@(libjansson|CURL|OPENSSL)' | sed 's/@.*//' | sort -u))
if [ -n "$clash" ]; then
	echo "not ok 1 - the extension references library symbols that postgres also defines: $clash"
	exit 1
fi
echo "ok 1 - no library symbol of the extension is shadowed by the postgres binary"
