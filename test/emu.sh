#!/usr/bin/env bash
# test/emu.sh: what the pgTAP tests ask of the emulator, from COPY ... FROM PROGRAM.
#   emu.sh URL media BUCKET NAME       print an object's bytes
#   emu.sh URL generation BUCKET NAME  print an object's generation (nothing if missing)
#   emu.sh URL list BUCKET PREFIX      print the names of the objects under PREFIX
#   emu.sh URL hook PATH [JSON]        GET (or POST JSON to) /_emulator/PATH
#   emu.sh URL run JOB ARG...          start an execution of JOB with these container
#                                      arguments (as a twin of a launch); print its name
#   emu.sh URL completed EXECUTION     print the execution's completionTime (nothing while it runs)
#   emu.sh URL cancel EXECUTION        cancel an execution (as an operator's gcloud would)
#   emu.sh URL put BUCKET NAME DATA    write an object (unconditionally)
set -euo pipefail
url=$1 verb=$2
shift 2
token() {
	curl -sf -H 'Metadata-Flavor: Google' "$url/computeMetadata/v1/instance/service-accounts/default/token" |
		sed -E 's/.*"access_token":"([^"]+)".*/\1/'
}
enc() { node -e 'process.stdout.write(encodeURIComponent(process.argv[1]))' "$1"; }
case $verb in
media)
	curl -sf -H "Authorization: Bearer $(token)" "$url/storage/v1/b/$1/o/$(enc "$2")?alt=media"
	;;
generation)
	curl -s -H "Authorization: Bearer $(token)" "$url/storage/v1/b/$1/o/$(enc "$2")" |
		node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const o=JSON.parse(s);if(o.generation)console.log(o.generation)})'
	;;
list)
	curl -sf -H "Authorization: Bearer $(token)" "$url/storage/v1/b/$1/o?prefix=$(enc "$2")" |
		node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const o of JSON.parse(s).items||[])console.log(o.name)})'
	;;
hook)
	if [ $# -ge 2 ]; then
		curl -sf -X POST -H 'Content-Type: application/json' --data-raw "$2" "$url/_emulator/$1"
	else
		curl -sf "$url/_emulator/$1"
	fi
	echo
	;;
run)
	job=$1
	shift
	body=$(node -e 'process.stdout.write(JSON.stringify({overrides:{containerOverrides:[{args:process.argv.slice(1)}]}}))' -- "$@")
	curl -sf -X POST -H "Authorization: Bearer $(token)" -H 'Content-Type: application/json' --data-raw "$body" \
		"$url/v2/projects/test-project/locations/us-central1/jobs/$job:run" |
		node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).metadata.name))'
	;;
completed)
	curl -sf -H "Authorization: Bearer $(token)" "$url/v2/$1" |
		node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const e=JSON.parse(s);if(e.completionTime)console.log(e.completionTime)})'
	;;
cancel)
	curl -sf -X POST -H "Authorization: Bearer $(token)" -H 'Content-Type: application/json' --data-raw '{}' \
		"$url/v2/$1:cancel" >/dev/null
	echo cancelled
	;;
put)
	curl -sf -X POST -H "Authorization: Bearer $(token)" -H 'Content-Type: application/octet-stream' \
		--data-binary "$3" "$url/upload/storage/v1/b/$1/o?uploadType=media&name=$(enc "$2")" >/dev/null
	echo written
	;;
*)
	echo "unknown verb $verb" >&2
	exit 2
	;;
esac
