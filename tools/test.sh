#!/usr/bin/env bash
# Run the test suite (creates/updates .venv first). Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv
cd "$ROOT"
set +e
"$PY" -m pytest "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  echo "error: pytest collected no tests -- check the selection you passed" >&2
fi
exit $rc
