#!/usr/bin/env bash
# Run the full CPU benchmark suite and write the results under benchmarks/results/, named after this machine's
# CPU model and core count: <slug>.json (everything), <slug>.md (tables), <slug>.png (ratio per layer),
# <slug>.txt (the printed table). Example slug: cpu-amd-epyc-2c.
#
#   benchmarks/run_full.sh                  # full suite, all cores (~20-30 min on a quiet 2-core box)
#   THREADS=1 benchmarks/run_full.sh        # single thread
#   benchmarks/run_full.sh --quick          # the CI subset, written as <slug>-quick.*
#   benchmarks/run_full.sh --suite vgg16    # one suite, written as <slug>-vgg16.*
#
# Extra arguments go to `fastconv bench`. Run it on an otherwise idle machine: other processes steal cores from
# the OpenMP teams of both libraries and the ratios become noise (the load average is recorded in the JSON).
# Exit status: that of `fastconv bench` (1 if any correctness check failed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"

suffix=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --quick) suffix="${suffix}-quick" ;;
    --suite) suffix="${suffix}-${args[$((i + 1))]//,/-}" ;;
    --suite=*) suffix="${suffix}-${args[$i]#--suite=}"; suffix="${suffix//,/-}" ;;
  esac
done
have_suite=0
for a in "$@"; do [[ "$a" == --suite || "$a" == --suite=* || "$a" == --quick ]] && have_suite=1; done
suite_args=()
[[ $have_suite == 0 ]] && suite_args=(--suite full)
thread_args=()
[[ -n "${THREADS:-}" ]] && thread_args=(--threads "$THREADS") && suffix="${suffix}-${THREADS}t"

slug="$("$PY" -c 'from fastconv.bench.peak import cpu_slug; print(cpu_slug())')${suffix}"
out=benchmarks/results
mkdir -p "$out"
echo "fastconv benchmark -> $out/$slug.{json,md,png,txt}   (load average: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
"$PY" -m fastconv bench --device cpu "${suite_args[@]}" "${thread_args[@]}" \
  --json "$out/$slug.json" --markdown "$out/$slug.md" --plot "$out/$slug.png" "$@" | tee "$out/$slug.txt"
