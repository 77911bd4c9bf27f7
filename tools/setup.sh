#!/usr/bin/env bash
# From a fresh clone to importable kernels: environment, presets, build, install, import check.
# Extra arguments go to the presets generator (e.g. --arch 9.0, --jobs 4).
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv
cd "$ROOT"
echo "==> writing CMakeUserPresets.json"
"$PY" tools/generate_presets.py --force-overwrite "$@"
echo "==> building and installing the kernels into kernloop/"
cmake --workflow --preset release
"$PY" -c "import kernloop; print('kernloop ready:', ', '.join(kernloop.available_ops()))"
