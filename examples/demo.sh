#!/usr/bin/env bash
# The demo: starts the company in examples/company.yaml in a temporary home,
# gives each department work, shows it being done, prints the results and
# stops the company. Usage: examples/demo.sh [path/to/nexus]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
nexus=$(realpath "${1:-$here/../build/nexus}")
work=$(mktemp -d /tmp/nexus-demo.XXXXXX)
cp "$here/company.yaml" "$work/company.yaml"
cd "$work"
cleanup() { "$nexus" down >/dev/null 2>&1 || true; }
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "nexus up -d   (CEO + a node that starts the employees; state in $work/.nexus)"
"$nexus" up -d
sleep 0.5
"$nexus" ps

step "nexus submit: work for every department"
ids=()
ids+=("$("$nexus" submit --dept product "plan the login page")")
ids+=("$("$nexus" submit --dept engineering --priority 5 "add a --verbose flag")")
ids+=("$("$nexus" submit --dept engineering "fix the flaky upload test")")
ids+=("$("$nexus" submit --dept engineering --idempotency-key refactor-db "refactor the db layer")")
ids+=("$("$nexus" submit --dept engineering --idempotency-key refactor-db "refactor the db layer")")
ids+=("$("$nexus" submit --dept qa "release 1.2 smoke test")")
ids+=("$("$nexus" submit --dept engineering $'!stderr build failed: missing header foo.h\n!exit 2')")
echo "submitted: ${ids[*]}  (the same idempotency key returned the same id twice)"

step "nexus events: the event bus so far"
"$nexus" events --limit 12

step "nexus wait: each task's result"
for id in $(printf '%s\n' "${ids[@]}" | sort -un); do
  "$nexus" wait "$id" --timeout 30s || true
done

step "nexus tasks"
"$nexus" tasks

step "nexus ps: who did what"
"$nexus" ps

step "nexus down"
"$nexus" down
trap - EXIT
echo
echo "The ledger stays in $work/.nexus/ledger.db (sqlite3 $work/.nexus/ledger.db 'select * from tasks')."
