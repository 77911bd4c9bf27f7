#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU (no network needed; nvcc, CMake, ninja and torch
# installed): build kernloop for the local GPUs' archs only, run the CUDA tests (pytest -m gpu:
# the GPU matrix and every kernel test's cuda case) and bench/gpu_ops.py, and write one markdown
# report. Everything runs on a temporary copy of the tree; the checkout is not built or edited.
# Without a GPU it says so in one line and exits 0.
#
#   bash tools/gpu_check.sh [--out REPORT.md] [--shapes 16384x8192,...] [--keep]
#
# Python: $KERNLOOP_PYTHON, else $KERNLOOP_VENV/bin/python, else .venv/bin/python, else python3.
# KERNLOOP_GPU_CHECK_ARCHS="9.0": build for these archs instead of the local GPUs' -- a dry run
# of the whole check on a machine without a GPU (the CUDA tests then skip, the benchmark says why).
# Exit status: 0 all passed, 1 a test failed or the benchmark did not run, 2 bad usage or setup,
# 3 the build failed. Stage limits (seconds; the whole check fits in 10 minutes on one GPU):
# KERNLOOP_GPU_CHECK_BUILD_S=300, _TESTS_S=210, _BENCH_S=60.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$PWD/gpu-check-report.md"
SHAPES="4096x4096,16384x8192"
KEEP=0
usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) [[ $# -ge 2 ]] || { echo "gpu_check: error: --out needs a file name" >&2; exit 2; }; OUT="$2"; shift 2 ;;
    --shapes) [[ $# -ge 2 ]] || { echo "gpu_check: error: --shapes needs TOKENSxHIDDEN[,...]" >&2; exit 2; }; SHAPES="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check: error: unknown argument '$1' (see: bash tools/gpu_check.sh --help)" >&2; exit 2 ;;
  esac
done

if [[ -n "${KERNLOOP_PYTHON:-}" ]]; then PY="$KERNLOOP_PYTHON"
elif [[ -n "${KERNLOOP_VENV:-}" ]]; then PY="$KERNLOOP_VENV/bin/python"
elif [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"
else PY="python3"; fi
if ! "$PY" -c 'import torch' >/dev/null 2>&1; then
  echo "gpu_check: error: torch does not import with $PY -- set KERNLOOP_PYTHON (or KERNLOOP_VENV) to the Python that has it (bash tools/setup.sh makes .venv)" >&2
  exit 2
fi
ARCHS="${KERNLOOP_GPU_CHECK_ARCHS:-}"
if [[ -z "$ARCHS" ]]; then
  ARCHS="$("$PY" -c '
import torch
if torch.cuda.is_available():
    print(";".join(sorted({"%d.%d" % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})))
' 2>/dev/null || true)"
fi
if [[ -z "$ARCHS" ]]; then
  echo "gpu_check: no CUDA GPU visible to torch ($PY: torch.cuda.is_available() is False) -- nothing to check"
  exit 0
fi

limit() {  # limit SECONDS CMD...: run with a time limit where coreutils timeout exists
  local s="$1"; shift
  if command -v timeout >/dev/null; then timeout --kill-after=10 "$s" "$@"; else "$@"; fi
}
WORK="$(mktemp -d "${TMPDIR:-/tmp}/kernloop-gpu-check.XXXXXX")"
cleanup() { if [[ $KEEP -eq 1 ]]; then echo "gpu_check: work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
SRC="$WORK/src"
export PATH="$(dirname "$PY"):$PATH"
# The test decides arch and build; leftovers from the caller's shell must not.
unset TORCH_CUDA_ARCH_LIST MAX_JOBS NVCC_THREADS CMAKE_BUILD_TYPE CMAKE_ARGS KERNLOOP_TEST_INPLACE || true

echo "gpu_check: GPU arch(s) $ARCHS; copying the tree to $SRC" >&2
"$PY" - "$ROOT" "$SRC" <<'EOF'
import shutil, subprocess, sys
from pathlib import Path
root, dest = Path(sys.argv[1]), Path(sys.argv[2])
try:
    out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, text=True, check=True).stdout
    files = [Path(p) for p in sorted(set(out.split("\0"))) if p and (root / p).is_file()]
except (OSError, subprocess.CalledProcessError):  # not a git checkout: everything but build outputs
    skip = {".git", ".venv", "__pycache__"}
    files = [p.relative_to(root) for p in root.rglob("*") if p.is_file()
             and not any(part in skip or part.startswith("cmake-build") for part in p.relative_to(root).parts)
             and p.suffix != ".so"]
for rel in files:
    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / rel, dest / rel)
EOF

echo "gpu_check: building for $ARCHS (log: build.log)" >&2
build_start=$SECONDS
build_rc=0
(cd "$SRC" && limit 60 "$PY" tools/generate_presets.py --force-overwrite --arch "$ARCHS" --source-dir "$SRC" \
   && limit "${KERNLOOP_GPU_CHECK_BUILD_S:-300}" cmake --workflow --preset release) \
  >"$WORK/build.log" 2>&1 </dev/null || build_rc=$?
build_s=$((SECONDS - build_start))

tests_rc=skipped; tests_s=0; bench_rc=skipped; bench_s=0
if [[ $build_rc -eq 0 ]]; then
  echo "gpu_check: CUDA tests (pytest -m gpu)" >&2
  tests_start=$SECONDS
  tests_rc=0
  (cd "$SRC" && KERNLOOP_TEST_INPLACE=1 limit "${KERNLOOP_GPU_CHECK_TESTS_S:-210}" "$PY" -m pytest tests/kernels -m gpu \
     -q -p no:cacheprovider -rfE --junitxml "$WORK/tests.xml") >"$WORK/tests.log" 2>&1 </dev/null || tests_rc=$?
  tests_s=$((SECONDS - tests_start))
  echo "gpu_check: bench/gpu_ops.py --shapes $SHAPES" >&2
  bench_start=$SECONDS
  bench_rc=0
  (cd "$SRC" && limit "${KERNLOOP_GPU_CHECK_BENCH_S:-60}" "$PY" bench/gpu_ops.py --tree "$SRC" --json --shapes "$SHAPES" \
     --repeats 3 --iters 20) >"$WORK/bench.json" 2>"$WORK/bench.log" </dev/null || bench_rc=$?
  bench_s=$((SECONDS - bench_start))
fi

"$PY" - "$WORK" "$SRC" "$OUT" "$ARCHS" "$build_rc" "$build_s" "$tests_rc" "$tests_s" "$bench_rc" "$bench_s" <<'EOF'
import datetime, json, platform, subprocess, sys
import xml.etree.ElementTree as ET
from pathlib import Path
work, src, out, archs = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
build_rc, build_s, tests_rc, tests_s, bench_rc, bench_s = sys.argv[5:11]
sys.path.insert(0, str(src))
import torch

def tail(path, n=40):
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"

def version_line(argv, keyword=""):
    """The first line of argv's output that contains keyword ("not found" when it does not run)."""
    try:
        text = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "not found"
    return next((line.strip() for line in text.splitlines() if line.strip() and keyword in line), "unknown")

lines = [f"# kernloop GPU check -- {datetime.datetime.now().isoformat(timespec='seconds')}", ""]
lines += ["## Machine", ""]
if not torch.cuda.is_available():
    lines.append("- no CUDA device visible (a dry run: KERNLOOP_GPU_CHECK_ARCHS)")
for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
    p = torch.cuda.get_device_properties(i)
    lines.append(f"- cuda:{i}: {p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB, "
                 f"{p.multi_processor_count} SMs")
lines += [f"- driver: {version_line(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'])}",
          f"- torch {torch.__version__} (CUDA {torch.version.cuda}), Python {platform.python_version()}",
          f"- nvcc: {version_line(['nvcc', '--version'], 'release')}", f"- {version_line(['cmake', '--version'])}",
          f"- host: {platform.node()}, {platform.machine()}", ""]
ok = build_rc == "0"
lines += ["## Build", "", f"- archs: {archs} (TORCH_CUDA_ARCH_LIST), one build of csrc/ in a copy of the tree",
          f"- {'ok' if ok else f'FAILED (exit {build_rc})'} in {build_s} s", ""]
if not ok:
    lines += ["```", tail(work / "build.log"), "```", ""]
lines += ["## CUDA tests (`pytest tests/kernels -m gpu`)", ""]
if tests_rc == "skipped":
    lines += ["- not run: the build failed", ""]
else:
    try:
        suite = ET.parse(work / "tests.xml").getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
        lines.append(f"- {passed} passed, {n['failures']} failed, {n['errors']} errors, {n['skipped']} skipped "
                     f"in {tests_s} s (exit {tests_rc})")
        bad = [c for c in suite.iter("testcase") if c.find("failure") is not None or c.find("error") is not None]
        skips = sorted({(c.find("skipped").get("message") or "").strip() for c in suite.iter("testcase")
                        if c.find("skipped") is not None})
        lines += [f"- skipped because: {m}" for m in skips[:5]]
        if bad:
            lines += ["", "Failures:", ""]
            for c in bad[:30]:
                el = c.find("failure") if c.find("failure") is not None else c.find("error")
                msg = (el.get("message") or "").strip().splitlines()
                lines.append(f"- `{c.get('classname')}::{c.get('name')}`: {msg[0][:300] if msg else ''}")
            if len(bad) > 30:
                lines.append(f"- ... and {len(bad) - 30} more (see the log with --keep)")
    except (OSError, ET.ParseError, AttributeError):
        lines += [f"- no result file (exit {tests_rc}, {tests_s} s; a time limit?); the log's end:", "", "```",
                  tail(work / "tests.log"), "```"]
    lines.append("")
lines += ["## Benchmarks (`bench/gpu_ops.py`)", ""]
if bench_rc == "skipped":
    lines += ["- not run: the build failed", ""]
else:
    try:
        from bench import gpu_ops
        data = json.loads((work / "bench.json").read_text())
        lines += [gpu_ops.render_markdown(data), ""]
        if "skipped" not in data:
            lines += [f"({bench_s} s; achieved bandwidth = minimal bytes moved / time; 'plain torch' is the same "
                      "op written with torch ops, on its own copy of the inputs)", ""]
    except (OSError, ValueError) as exc:
        lines += [f"- failed (exit {bench_rc}, {bench_s} s): {exc}", "", "```", tail(work / "bench.log"), "```", ""]
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text("\n".join(lines) + "\n")
EOF

echo "gpu_check: report written to $OUT (build exit $build_rc, tests exit $tests_rc, bench exit $bench_rc)"
if [[ $build_rc -ne 0 ]]; then exit 3; fi
if [[ "$tests_rc" != 0 || "$bench_rc" != 0 ]]; then exit 1; fi
exit 0
