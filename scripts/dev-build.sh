#!/usr/bin/env bash
# Incremental developer build into the active virtual environment (editable:
# Python edits are live, C++ edits need this script again). Serialised with a
# lock so that several builds at once do not trample one build directory.
# FASTCONV_CUDA=OFF by default here for speed; FASTCONV_CUDA=AUTO to compile CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
# pip outside a virtual environment would install into the system Python,
# leaving the venv's copy of _C stale while the build directory looks fresh.
if [[ -z "${VIRTUAL_ENV:-}" ]]; then
  echo "scripts/dev-build.sh: activate the development virtual environment first" >&2
  exit 2
fi
export FASTCONV_CUDA="${FASTCONV_CUDA:-OFF}"
exec flock /tmp/fastconv-build.lock \
  pip install --no-build-isolation --no-deps -q -e . \
    -Cbuild-dir="build/dev-cuda-${FASTCONV_CUDA}" -Ceditable.rebuild=false
