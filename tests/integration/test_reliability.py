"""Faults a kernel developer really hits, with the real tools: signals at the risky moments (found
by waiting for the build to reach them, never by sleeping), kill -9, damaged state, edited settings,
secrets. Each test failed before the fix it pins down."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from _loop import ROOT, build, copy_fixture, have_build_tools, loop_env

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not have_build_tools(), reason="needs cmake, ninja and ccache (pip install -r requirements/build.txt)"),
]

# A step that waits, at configure time or as a build edge, until the test opens the gate; it
# announces itself first, so the test acts at exactly that moment.
GATE = """\
import os, pathlib, sys, time
gates = pathlib.Path(sys.argv[1]); where = sys.argv[2]
if where == "build" and not (gates / "arm").exists():
    sys.exit(0)
(gates / f"{where}.started").write_text(str(os.getpid()))
deadline = time.monotonic() + 120
while not (gates / "open").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
"""
GATED_CMAKE = """
if(DEFINED ENV{KL_GATE_CONFIGURE})
  execute_process(COMMAND "${Python_EXECUTABLE}" "${CMAKE_SOURCE_DIR}/gate.py" "$ENV{KL_GATE_CONFIGURE}" configure)
endif()
add_custom_target(kl_gate ALL COMMAND "${Python_EXECUTABLE}" "${CMAKE_SOURCE_DIR}/gate.py" "${CMAKE_SOURCE_DIR}/gates" build
                  USES_TERMINAL VERBATIM)
"""


def gated_project(tmp: Path) -> tuple[Path, dict[str, str]]:
    src = copy_fixture(tmp / "project with spaces & $dollar")
    (src / "gate.py").write_text(GATE)
    (src / "gates").mkdir()
    with open(src / "CMakeLists.txt", "a") as fh:
        fh.write(GATED_CMAKE)
    return src, loop_env(tmp / "ccache")


def start_build(src: Path, env: dict[str, str], *extra: str) -> tuple[subprocess.Popen, list[str]]:
    """The CLI in the background, its stderr collected line by line."""
    p = subprocess.Popen([sys.executable, "-m", "buildtools", "build", "--source-dir", str(src), "--no-progress",
                          *extra], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(p.stderr), daemon=True).start()
    return p, lines


def wait_for(what, timeout: float = 120, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out waiting")


def gate_pids() -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"gate.py" in cmd and b"\0build" in cmd:
                out.append(int(entry))
    return out


def lock_is_held(build_dir: Path) -> bool:
    fd = os.open(build_dir / ".kernloop.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@pytest.fixture
def gated(tmp_path):
    src, env = gated_project(tmp_path)
    rc, summary, err = build(src, env)
    assert rc == 0, err
    yield src, env
    (src / "gates" / "open").touch()  # whatever a test left waiting ends now


# -- state is derived or atomic ---------------------------------------------------------------------
def test_an_interrupted_configure_leaves_no_presets_the_next_build_trusts(gated):
    src, env = gated
    gates = src / "gates"
    p, _ = start_build(src, {**env, "TORCH_CUDA_ARCH_LIST": "8.0", "KL_GATE_CONFIGURE": str(gates)})
    wait_for(lambda: (gates / "configure.started").exists())
    assert '"TORCH_CUDA_ARCH_LIST": "8.0"' in (src / "CMakeUserPresets.json").read_text()
    p.send_signal(signal.SIGINT)  # Ctrl-C while it configures
    assert p.wait(timeout=120) != 0
    rc, summary, err = build(src, env)  # a plain build: the machine's own plan again
    assert rc == 0, err
    assert summary["steps"]["presets"].startswith("rewritten"), summary["steps"]
    assert '"TORCH_CUDA_ARCH_LIST": "9.0"' in (src / "CMakeUserPresets.json").read_text()
    assert "sm_90" in (src / "cmake-build-release" / "build.ninja").read_text()


def test_an_empty_cmake_cache_is_configured_again(gated):
    src, env = gated
    (src / "cmake-build-release" / "CMakeCache.txt").write_text("")
    rc, summary, err = build(src, env)
    assert rc == 0, err
    assert summary["steps"]["configure"].startswith("ran (the CMake cache is empty or damaged")


def test_an_edited_tool_buildtools_table_rewrites_the_presets(gated):
    src, env = gated
    with open(src / "pyproject.toml", "a") as fh:
        fh.write('\n[tool.buildtools]\nram-per-cxx-job-gib = 4096\n')  # more than any machine: 1 job
    rc, summary, err = build(src, env)
    assert rc == 0, err
    assert summary["steps"]["presets"] == "rewritten (toolchain changed); what changed: settings"
    assert '"CMAKE_JOB_POOLS": "compile=1;link=1"' in (src / "CMakeUserPresets.json").read_text()


# -- a build's processes live and die with it -------------------------------------------------------
def test_a_killed_front_end_keeps_the_lock_until_its_compilers_are_done(gated):
    src, env = gated
    gates, build_dir = src / "gates", src / "cmake-build-release"
    (gates / "arm").touch()
    first, _ = start_build(src, env)
    wait_for(lambda: (gates / "build.started").exists())
    first.kill()  # kill -9: no handler runs
    first.wait(timeout=30)
    assert gate_pids() and lock_is_held(build_dir)  # its ninja still runs, and still holds the lock
    (gates / "build.started").unlink()
    second, said = start_build(src, env)
    wait_for(lambda: any("was killed, but" in line for line in said))
    line = next(line for line in said if "was killed, but" in line)
    assert "kill " in line and "let them finish" in line
    assert not (gates / "build.started").exists() and len(gate_pids()) == 1  # never a second ninja
    (gates / "arm").unlink()
    (gates / "open").touch()
    assert second.wait(timeout=300) == 0, "".join(said)


def test_a_closed_terminal_stops_the_build_and_its_compilers(gated):
    src, env = gated
    gates, build_dir = src / "gates", src / "cmake-build-release"
    (gates / "arm").touch()
    p, said = start_build(src, env)
    wait_for(lambda: (gates / "build.started").exists())
    p.send_signal(signal.SIGHUP)
    assert p.wait(timeout=60) == 130, "".join(said)
    wait_for(lambda: not gate_pids(), timeout=30)
    assert not lock_is_held(build_dir)


def test_leftovers_of_a_killed_install_are_removed(gated):
    src, env = gated
    so = next((src / "looppkg").glob("_fx*.so"))
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = so.with_name(f".{so.name}.kernloop-{dead.pid}.tmp")
    leftover.write_bytes(b"half a library")
    rc, _, err = build(src, env)
    assert rc == 0, err
    assert not leftover.exists()


# -- no silent downgrade ----------------------------------------------------------------------------
def _without_cuda(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """``argv`` where no nvcc can be found: the toolkit hidden under a tmpfs, its wrapper off PATH."""
    toolkit = os.path.realpath("/usr/local/cuda")
    path = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != "/usr/local/bin")
    script = f'mount -t tmpfs none "{toolkit}" && exec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *argv], cwd=ROOT,
                          env={**env, "PATH": path, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(shutil.which("unshare") is None or not os.path.isdir("/usr/local/cuda"),
                    reason="needs unshare and a CUDA toolkit at /usr/local/cuda to hide")
def test_a_cuda_tree_is_not_rebuilt_cpu_only_when_nvcc_is_gone(gated):
    src, env = gated
    so = next((src / "looppkg").glob("_fx*.so"))
    before = so.read_bytes()
    argv = [sys.executable, "-m", "buildtools", "build", "--source-dir", str(src), "--no-progress"]
    probe = _without_cuda(["true"], env)
    if probe.returncode != 0:
        pytest.skip(f"cannot hide the toolkit here: {probe.stderr.strip()}")
    p = _without_cuda(argv, env)
    assert p.returncode == 2, p.stderr
    [line] = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert "built with CUDA" in line and "--nvcc" in line and "KERNLOOP_ENABLE_CUDA=OFF" in line
    assert so.read_bytes() == before  # nothing replaced
    off = _without_cuda(argv, {**env, "KERNLOOP_ENABLE_CUDA": "OFF"})  # on purpose: allowed
    assert off.returncode == 0, off.stderr


# -- no secret is written anywhere ------------------------------------------------------------------
def test_a_shared_cache_password_is_in_no_file(gated):
    src, env = gated
    secret = "s3cretPW42"
    url = f"redis://builder:{secret}@127.0.0.1:1/0"  # nothing listens: the build goes on without it
    rc, summary, err = build(src, {**env, "KERNLOOP_REMOTE_CACHE": url})
    assert rc == 0, err
    assert secret not in json.dumps(summary) and secret not in err
    hits = [p for p in src.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert hits == []
    assert "$env{KERNLOOP_REMOTE_CACHE}" in (src / "CMakeUserPresets.json").read_text()
