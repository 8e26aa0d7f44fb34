#!/usr/bin/env bash
# Fidelity check: Google's official Node.js clients against the emulator.
# Installs @google-cloud/storage@8, @google-cloud/run@4 and google-auth-library
# from the npm registry into a temporary directory (about a minute), starts the
# emulator with authentication on, and runs check.js.
#
# usage: test/emulator/fidelity/run.sh
#   FIDELITY_NODE_MODULES=DIR  reuse an existing node_modules (skips npm install)
#   KEEP=1                     keep the temporary directory
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
EMU="$HERE/.."
WORK=$(mktemp -d /tmp/emulator-fidelity.XXXXXX)
EMU_PID=""
EMU2_PID=""
cleanup() {
	[ -n "$EMU_PID" ] && kill "$EMU_PID" 2>/dev/null && wait "$EMU_PID" 2>/dev/null
	[ -n "$EMU2_PID" ] && kill "$EMU2_PID" 2>/dev/null && wait "$EMU2_PID" 2>/dev/null
	[ "${KEEP:-0}" = 1 ] && echo "# kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

if [ -n "${FIDELITY_NODE_MODULES:-}" ]; then
	MODULES=$FIDELITY_NODE_MODULES
else
	echo "# npm install in $WORK"
	(cd "$WORK" && npm init -y >/dev/null &&
		npm install --no-audit --no-fund --loglevel=error \
			@google-cloud/storage@8 @google-cloud/run@4 google-auth-library >"$WORK/npm.log" 2>&1) || {
		cat "$WORK/npm.log"; echo "0 passed, 1 failed"; exit 1; }
	MODULES="$WORK/node_modules"
fi
for p in @google-cloud/storage @google-cloud/run google-auth-library; do
	echo "# $p $(node -p "require('$MODULES/$p/package.json').version")"
done

"$EMU/make-test-key" -o "$WORK/key.json"
"$EMU/run" --port 0 --test-key-file "$WORK/key.json" --executor /bin/sh \
	>"$WORK/emu.out" 2>"$WORK/emu.err" &
EMU_PID=$!
for _ in $(seq 1 100); do
	[ -s "$WORK/emu.out" ] && break
	sleep 0.1
done
URL=$(sed -n 's#^listening on \(http://127\.0\.0\.1:[0-9]*\)$#\1#p' "$WORK/emu.out")
if [ -z "$URL" ]; then
	cat "$WORK/emu.err"; echo "0 passed, 1 failed"; exit 1
fi
echo "# emulator at $URL"
"$EMU/run" --port 0 --no-auth --executor /bin/sh >"$WORK/emu2.out" 2>"$WORK/emu2.err" &
EMU2_PID=$!
for _ in $(seq 1 100); do
	[ -s "$WORK/emu2.out" ] && break
	sleep 0.1
done
NOAUTH_URL=$(sed -n 's#^listening on \(http://127\.0\.0\.1:[0-9]*\)$#\1#p' "$WORK/emu2.out")
echo "# emulator without auth at $NOAUTH_URL"

NODE_PATH="$MODULES" EMULATOR_URL="$URL" NOAUTH_URL="$NOAUTH_URL" KEY_FILE="$WORK/key.json" \
	STORAGE_EMULATOR_HOST="$URL" GCE_METADATA_HOST="${URL#http://}" \
	node "$HERE/check.js"
rc=$?
if [ $rc -ne 0 ]; then
	echo "# emulator log (last 30 lines):"
	tail -n 30 "$WORK/emu.err" | sed 's/^/#   /'
fi
exit $rc
