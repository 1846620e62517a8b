#!/usr/bin/env bash
# Runs the time-touching test files under TZ=UTC and TZ=America/New_York; both runs must pass with the same
# counts (the totals reporter prints `N passed, N failed, N skipped` last). Usage: test/tz/run-matrix.sh [files...]
set -euo pipefail
cd "$(dirname "$0")/../.."
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  files=(test/tz test/contract test/providers test/e2e test/machines/finapiTask.model.test.ts test/engine/autosync.test.ts)
fi
declare -A totals
for zone in UTC America/New_York; do
  out=$(TZ="$zone" npx vitest run "${files[@]}" 2>&1) || { echo "$out" | tail -30; echo "TZ=$zone: FAILED"; exit 1; }
  totals[$zone]=$(echo "$out" | tail -1)
  echo "TZ=$zone: ${totals[$zone]}"
done
if [ "${totals[UTC]}" != "${totals[America/New_York]}" ]; then
  echo "different results under TZ=UTC and TZ=America/New_York"
  exit 1
fi
