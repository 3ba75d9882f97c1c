#!/usr/bin/env bash
# Regenerate the example reports in reports/: the seed's example (MLP, built-in data, 8 compile+fit cycles)
# profiled with the loss closure recreated per cycle, reused, and with compile() once; then two diffs.
#   bash reports/make.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2
for strategy in recreate reuse compile-once; do
  closuretrace profile -q -o "reports/seed-$strategy.json" -m closuretrace.examples.seed --strategy "$strategy"
  for ext in md html; do
    closuretrace render "reports/seed-$strategy.json" -o "reports/seed-$strategy.$ext"
  done
done
for ext in md html; do
  closuretrace diff reports/seed-recreate.json reports/seed-reuse.json -o "reports/diff-recreate-vs-reuse.$ext"
  closuretrace diff reports/seed-recreate.json reports/seed-compile-once.json -o "reports/diff-recreate-vs-compile-once.$ext"
done
# closuretrace compare: the default matrix (11 scenarios, each in its own process, plus the save check and the
# graph-lifetime check), written as reports/compare.{json,md,html}.
closuretrace compare -q -o reports/compare.json
for ext in md html; do
  closuretrace render reports/compare.json -o "reports/compare.$ext"
done
