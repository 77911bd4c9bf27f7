# Sourced by tools/setup.sh and tools/test.sh: make .venv and keep it in step
# with requirements/*.txt (re-installs only when those files change).
# KERNLOOP_TORCH=cuda (default, torch 2.14.1+cu130) or cpu (torch 2.13.0 CPU build).
# KERNLOOP_VENV=path overrides where the environment lives.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${KERNLOOP_VENV:-$ROOT/.venv}"
FLAVOR="${KERNLOOP_TORCH:-cuda}"
case "$FLAVOR" in
  cuda|cpu) ;;
  *) echo "error: KERNLOOP_TORCH=$FLAVOR is not known -- use KERNLOOP_TORCH=cuda or KERNLOOP_TORCH=cpu" >&2; exit 2 ;;
esac
PY="$VENV/bin/python"

ensure_venv() {
  local host_py="${PYTHON:-python3}"
  if [[ ! -x "$PY" ]]; then
    "$host_py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || {
      echo "error: $host_py is missing or older than Python 3.10 -- set PYTHON=/path/to/python3.10+" >&2; exit 2; }
    echo "==> creating $VENV"
    "$host_py" -m venv "$VENV"
  fi
  local stamp="$VENV/.kernloop-requirements"
  local want
  want="$FLAVOR $(cat "$ROOT"/requirements/*.txt | sha256sum | cut -c1-16)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "==> installing requirements/$FLAVOR.txt into $VENV (torch takes a minute or two the first time)"
    "$PY" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements/$FLAVOR.txt"
    echo "$want" > "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}
