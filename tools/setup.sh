#!/usr/bin/env bash
# From a fresh clone to importable kernels: environment, presets for this machine, build, install,
# import check. Extra arguments go to `python -m buildtools build` (e.g. --preset debug); planner
# overrides come from the environment: MAX_JOBS, NVCC_THREADS, TORCH_CUDA_ARCH_LIST, CMAKE_BUILD_TYPE.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv
cd "$ROOT"
echo "==> presets, configure, build, install (python -m buildtools build)"
"$PY" -m buildtools build "$@"
"$PY" -c "import kernloop; print('kernloop ready:', ', '.join(kernloop.available_ops()))"
