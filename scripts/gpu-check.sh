#!/usr/bin/env bash
# Build fastconv with its CUDA kernels on a GPU machine and run the tests and the CUDA benchmark.
#
#   scripts/gpu-check.sh [OUT_DIR]        (default ./gpu-results)
#
# Needs python3 with torch (CUDA build), pybind11, scikit-build-core, cmake, ninja and nvcc; no network
# (pip runs with --no-build-isolation --no-deps). Environment knobs:
#   PYTHON               interpreter (default python3)
#   FASTCONV_CUDA_ARCHS  architectures to compile (default 90; "80;90" for both)
#   SKIP_BUILD=1         reuse the fastconv already installed in that interpreter
#   BENCH_ARGS           extra arguments for `fastconv bench` (e.g. "--quick")
# Writes into OUT_DIR: env.txt, build.log, info.json, ptxas-resources.log, pytest-cuda.log (tests/test_cuda.py,
# every test, verbose), pytest.log (the whole suite, -x), junit XML for both, bench-cuda{,-tf32}.{json,md,log},
# summary.txt. Exit status: non-zero when the build or a test failed; a failing benchmark is reported in
# summary.txt but does not fail the script.
set -uo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-./gpu-results}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-python3}"
export FASTCONV_CUDA=ON
export FASTCONV_CUDA_ARCHS="${FASTCONV_CUDA_ARCHS:-90}"
export FASTCONV_REQUIRE_CUDA=1   # tests/test_cuda.py fails instead of skipping if the CUDA kernels are missing
status=0

: > "$OUT/summary.txt"
log() { echo "[gpu-check $(date +%H:%M:%S)] $*" | tee -a "$OUT/summary.txt"; }

log "repo $REPO, results in $OUT, archs $FASTCONV_CUDA_ARCHS"
{
  echo "== date"; date -u
  echo "== git"; git -C "$REPO" rev-parse HEAD 2>/dev/null; git -C "$REPO" status --short 2>/dev/null | head -50
  echo "== nvidia-smi"; nvidia-smi 2>&1
  echo "== nvcc"; nvcc --version 2>&1
  echo "== cmake"; cmake --version 2>&1 | head -1
  echo "== python / torch"
  "$PY" - <<'EOF' 2>&1
import sys, torch
print(sys.version)
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      "devices", torch.cuda.device_count())
for i in range(torch.cuda.device_count()):
    print(i, torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i))
EOF
} > "$OUT/env.txt" 2>&1

# ---------------------------------------------------------------------------------------------- build
if [[ "${SKIP_BUILD:-0}" != "1" ]]; then
  log "building: pip install --no-build-isolation --no-deps . (FASTCONV_CUDA=ON)"
  start=$(date +%s)
  (cd "$REPO" && "$PY" -m pip install --no-build-isolation --no-deps -v .) > "$OUT/build.log" 2>&1
  rc=$?
  log "build rc=$rc in $(( $(date +%s) - start )) s (build.log)"
  if [[ $rc -ne 0 ]]; then
    tail -40 "$OUT/build.log" | tee -a "$OUT/summary.txt"
    exit 1
  fi
fi

# Run everything from OUT, outside the source tree: `python -m pytest` puts the working directory on
# sys.path, and from the repository root `import fastconv` would find the source folder (which has no
# compiled _C) instead of the installed package.
cd "$OUT" || exit 1

"$PY" -c "import fastconv, json; print(json.dumps(fastconv.info(), indent=2, default=str))" > "$OUT/info.json" 2>&1
rc=$?
log "fastconv.info() rc=$rc: $(tr -d '\n' < "$OUT/info.json" | cut -c1-400)"
[[ $rc -ne 0 ]] && status=1

# Register / shared-memory use of every kernel (for tuning; not a pass / fail criterion).
if command -v nvcc > /dev/null; then
  arch="${FASTCONV_CUDA_ARCHS%%;*}"
  for f in "$REPO"/csrc/cuda/*.cu; do
    echo "== $(basename "$f") sm_$arch"
    nvcc -std=c++17 -O3 -arch="sm_$arch" -c "$f" -I"$REPO/csrc" -o /dev/null -Xptxas -v 2>&1 | c++filt
  done > "$OUT/ptxas-resources.log" 2>&1
  grep -q "spill stores, [1-9]" "$OUT/ptxas-resources.log" && log "note: register spills, see ptxas-resources.log"
fi

# ---------------------------------------------------------------------------------------------- tests
log "pytest tests/test_cuda.py (all CUDA tests, no -x)"
"$PY" -m pytest "$REPO/tests/test_cuda.py" -v -rs -p no:cacheprovider --rootdir "$REPO" -c "$REPO/pyproject.toml" \
  --junitxml="$OUT/pytest-cuda.xml" > "$OUT/pytest-cuda.log" 2>&1
rc=$?
log "test_cuda.py rc=$rc: $(tail -1 "$OUT/pytest-cuda.log")"
[[ $rc -ne 0 ]] && status=1

log "pytest tests -x -q (whole suite, CUDA tests included)"
"$PY" -m pytest "$REPO/tests" -x -q -rs -p no:cacheprovider --rootdir "$REPO" -c "$REPO/pyproject.toml" \
  --junitxml="$OUT/pytest.xml" > "$OUT/pytest.log" 2>&1
rc=$?
log "tests rc=$rc: $(tail -1 "$OUT/pytest.log")"
[[ $rc -ne 0 ]] && status=1

# ---------------------------------------------------------------------------------------------- bench
# `fastconv bench` is written separately; an error here is reported, not fatal.
for mode in plain tf32; do
  name="bench-cuda"; extra=()
  if [[ $mode == tf32 ]]; then name="bench-cuda-tf32"; extra=(--tf32); fi
  log "fastconv bench --device cuda ${extra[*]:-}"
  # shellcheck disable=SC2086
  "$PY" -m fastconv bench --device cuda "${extra[@]}" --json "$OUT/$name.json" --markdown "$OUT/$name.md" \
    --no-progress ${BENCH_ARGS:-} > "$OUT/$name.log" 2>&1
  rc=$?
  if [[ $rc -ne 0 ]]; then
    log "bench ($mode) failed rc=$rc (not fatal): $(tail -3 "$OUT/$name.log" | tr '\n' ' ')"
  else
    log "bench ($mode) done: $name.json"
  fi
done

log "done, status $status"
exit $status
