#!/usr/bin/env bash
# The software company at work: creates a git repository, starts
# examples/software-company.yaml on it (Product plans and splits features,
# Engineering commits in each feature's own worktree, QA reviews and sends
# work back), runs three features and shows their trees and commits.
# Usage: examples/software-demo.sh [path/to/nexus]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
nexus=$(realpath "${1:-$here/../build/nexus}")
work=$(mktemp -d /tmp/nexus-software.XXXXXX)
cp "$here/software-company.yaml" "$work/company.yaml"
cd "$work"
cleanup() { "$nexus" down >/dev/null 2>&1 || true; }
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "a git repository for the product: $work/product-repo"
git init -q product-repo
git -C product-repo -c user.name=demo -c user.email=demo@nexus.invalid \
    commit -q --allow-empty -m "initial commit"
git -C product-repo log --oneline

step "nexus up -d"
"$nexus" up -d

step "nexus submit --workflow feature: three features"
ids=()
for f in "user login with email and password" "search the catalogue" "export orders to CSV"; do
  ids+=("$("$nexus" submit --workflow feature "$f")")
done
echo "submitted: ${ids[*]}"

for id in "${ids[@]}"; do
  "$nexus" wait "$id" --timeout 60s >/dev/null || true
  step "nexus tree $id"
  "$nexus" tree "$id"
done

step "nexus status ${ids[0]}: the workflow's result, branch and commits"
"$nexus" status "${ids[0]}"

step "nexus diff ${ids[0]} (first 25 lines)"
"$nexus" diff "${ids[0]}" | head -25

step "nexus events --task ${ids[0]} (the story of one feature, last 15 events)"
"$nexus" events --task "${ids[0]}" --limit 15

step "nexus down"
"$nexus" down
trap - EXIT
echo
echo "Each feature's branch stays in $work/product-repo: git -C $work/product-repo branch --list 'nexus/*'"
