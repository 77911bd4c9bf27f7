"""Faults a kernel developer really hits, with the real tools: each failure says its real cause on
one line (ninja, CMake, the OS), a full disk or a read-only tree is never a traceback, and doctor
tells the truth -- it finds each fault, and the fix it names clears it.

On copies of the loop_project fixture (real cmake, ninja, nvcc, ccache). A full disk is a tmpfs
(``unshare -m``) or ``/dev/full``; a read-only tree is ``chattr +i`` or a read-only bind mount.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from _loop import ROOT, build, built_fixture, copy_fixture, have_build_tools, loop_env, run_cli, set_fx_value

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not have_build_tools(), reason="needs cmake, ninja and ccache"),
]

SO = "_fx.abi3.so"


def _works(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _can_unshare() -> bool:
    return shutil.which("unshare") is not None and _works(["unshare", "-m", "--propagation", "private", "true"])


def _can_chattr(tmp: Path) -> bool:
    probe = tmp / "chattr-probe"
    probe.mkdir(exist_ok=True)
    ok = shutil.which("chattr") is not None and _works(["chattr", "+i", str(probe)])
    if ok:
        _works(["chattr", "-i", str(probe)])
    return ok


needs_unshare = pytest.mark.skipif(not _can_unshare(), reason="needs unshare -m (root, mount namespaces)")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    src, env, _ = built_fixture(tmp_path_factory.mktemp("causes"))
    return src, env


def doctor(src: Path, env: dict[str, str]) -> tuple[int, dict]:
    p = run_cli("doctor", "--json", "--source-dir", str(src), env=env, timeout=120)
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, json.loads(p.stdout)


def findings(data: dict, check: str, level: str | None = None) -> list[dict]:
    return [c for c in data["checks"] if c["check"] == check and (level is None or c["level"] == level)]


def first_line(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith("error: "))


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


# -- every failure is its real cause ------------------------------------------------------------------


def test_a_broken_build_ninja_shows_ninjas_error_on_the_summary_line(project):
    src, env = project
    bd = src / "cmake-build-release"
    good = (bd / "build.ninja").read_text()
    (bd / "build.ninja").write_text("this is = not\n  a build file\n")
    try:
        rc, summary, err = build(src, env, "--target", "all")
    finally:
        (bd / "build.ninja").write_text(good)
    assert rc == 1 and summary["ok"] is False
    line = summary["failure"].splitlines()[0]
    assert line.startswith("error: build failed (cmake --build exited 1): ninja: error: "), line
    assert "build.ninja" in line
    no_traceback(err)


def test_a_configure_error_is_on_the_summary_line(project):
    src, env = project
    lists = src / "CMakeLists.txt"
    good = lists.read_text()
    lists.write_text(good + 'message(FATAL_ERROR "loop: the toolkit is broken")\n')
    try:
        rc, summary, err = build(src, env, "--target", "all")
    finally:
        lists.write_text(good)
    assert rc == 1
    line = summary["failure"].splitlines()[0]
    assert "CMake Error at CMakeLists.txt" in line and "loop: the toolkit is broken" in line, line
    rc, _, err = build(src, env)
    assert rc == 0, err


def test_a_symlink_planted_as_the_build_log_is_never_written_through(project, tmp_path):
    """The log is replaced, not followed: a link to /dev/full (or to a user's file) changes nothing.
    A log that really cannot be written is the full-disk test below (unit: BuildLog on /dev/full)."""
    src, env = project
    log = src / "cmake-build-release" / "kernloop-build.log"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    for target in (Path("/dev/full"), victim):
        log.unlink(missing_ok=True)
        log.symlink_to(target)
        rc, summary, err = build(src, env, "--target", "all")
        assert rc == 0, err
        no_traceback(err)
        assert not log.is_symlink() and log.stat().st_size > 0
    assert victim.read_text() == "keep me"


@needs_unshare
def test_a_full_build_dir_is_one_line_with_the_fix(project, tmp_path):
    """A tmpfs over the build dir, filled to the last page: the build log and the install stage fail."""
    src, env = project
    bd = src / "cmake-build-release"
    script = textwrap.dedent(f"""
        set -e
        cp -a {bd}/. {tmp_path}/copy/
        mount -t tmpfs -o size=64m tmpfs {bd}
        cp -a {tmp_path}/copy/. {bd}/
        rm -f {bd}/kernloop-build.log
        dd if=/dev/zero of={bd}/fill bs=1M 2>/dev/null || true
        set +e
        {sys.executable} -m buildtools build --source-dir {src} --json --no-progress
        echo "rc=$?" >&2
    """)
    (tmp_path / "copy").mkdir()
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", script], cwd=ROOT,
                       env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)  # fmt: skip
    no_traceback(p.stderr)
    assert "rc=1" in p.stderr, p.stderr
    line = first_line(p.stderr)
    assert "No space left on device" in line and "free some disk space" in line, p.stderr


@needs_unshare
def test_a_read_only_package_at_install_is_one_line_with_the_fix(project, tmp_path):
    src, env = project
    pkg = src / "looppkg"
    set_fx_value(src, 7)
    script = f"mount --bind {pkg} {pkg} && mount -o remount,bind,ro {pkg} && " \
             f"{sys.executable} -m buildtools build --source-dir {src} --json --no-progress"
    try:
        p = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", script], cwd=ROOT,
                           env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)  # fmt: skip
    finally:
        set_fx_value(src, 1)
    no_traceback(p.stderr)
    assert p.returncode == 1, p.stderr
    summary = json.loads(p.stdout)
    line = summary["failure"].splitlines()[0]
    assert line.startswith(f"error: install failed: cannot install {pkg / SO}: Read-only file system -- "), line
    assert "read-write" in line
    assert not [f.name for f in pkg.iterdir() if f.name.endswith(".tmp")]
    rc, _, err = build(src, env)
    assert rc == 0, err


def test_an_immutable_package_at_install_is_one_line_with_the_fix(project, tmp_path):
    if not _can_chattr(tmp_path):
        pytest.skip("needs chattr +i on this filesystem")
    src, env = project
    pkg = src / "looppkg"
    set_fx_value(src, 8)
    subprocess.run(["chattr", "+i", str(pkg)], check=True)
    try:
        rc, summary, err = build(src, env)
    finally:
        subprocess.run(["chattr", "-i", str(pkg)], check=True)
        set_fx_value(src, 1)
    no_traceback(err)
    assert rc == 1
    line = summary["failure"].splitlines()[0]
    assert f"cannot install {pkg / SO}: Operation not permitted -- make {pkg} writable (chattr -i {pkg}" in line, line
    rc, _, err = build(src, env)
    assert rc == 0, err


# -- doctor tells the truth: it finds each fault, and the fix it names clears it -----------------------


def test_doctor_finds_invalid_presets_and_regenerating_them_clears_it(project):
    src, env = project
    presets = src / "CMakeUserPresets.json"
    good = presets.read_text()
    presets.write_text(good.replace('"configurePresets"', '"configurePresets" ,,', 1))
    try:
        rc, data = doctor(src, env)
        assert rc == 1
        (f,) = findings(data, "presets", "error")
        assert "invalid JSON" in f["message"] and "presets --force-overwrite" in f["fix"]
        p = run_cli("presets", "--force-overwrite", "--source-dir", str(src), env=env)  # the named fix
        assert p.returncode == 0, p.stderr
        rc, data = doctor(src, env)
        assert findings(data, "presets", "ok") and not findings(data, "presets", "error")
    finally:
        if not presets.read_text().startswith("{"):
            presets.write_text(good)


def test_doctor_finds_an_invalid_tool_buildtools_table(project):
    src, env = project
    pyproject = src / "pyproject.toml"
    good = pyproject.read_text()
    pyproject.write_text(good + '\n[tool.buildtools]\nlauncher = "distcc-please"\n')
    try:
        rc, data = doctor(src, env)
        assert rc == 1
        (f,) = findings(data, "config", "error")
        assert "launcher must be one of" in f["message"] and "pyproject.toml" in f["fix"]
    finally:
        pyproject.write_text(good)  # what the fix says: fix the key
    rc, data = doctor(src, env)
    assert findings(data, "config", "ok") and not findings(data, "config", "error")


def test_doctor_finds_an_immutable_package_dir_and_chattr_clears_it(project, tmp_path):
    if not _can_chattr(tmp_path):
        pytest.skip("needs chattr +i on this filesystem")
    src, env = project
    pkg = src / "looppkg"
    subprocess.run(["chattr", "+i", str(pkg)], check=True)
    try:
        rc, data = doctor(src, env)
        (f,) = findings(data, "writable", "error")
        assert str(pkg) in f["message"] and "Operation not permitted" in f["message"]
        assert rc == 1 and f["fix"].startswith(f"chattr -i {pkg}")
    finally:
        subprocess.run(["chattr", "-i", str(pkg)], check=True)  # the named fix
    rc, data = doctor(src, env)
    assert not findings(data, "writable", "error")


@needs_unshare
def test_doctor_finds_a_read_only_build_dir_and_remounting_clears_it(project):
    src, env = project
    bd = src / "cmake-build-release"
    doc = f"{sys.executable} -m buildtools doctor --json --source-dir {src}"
    script = (f"mount --bind {bd} {bd} && mount -o remount,bind,ro {bd} && {doc} > {bd.parent}/ro.json; "
              f"mount -o remount,bind,rw {bd} && {doc} > {bd.parent}/rw.json; true")
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", script], cwd=ROOT,
                       env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)  # fmt: skip
    no_traceback(p.stderr)
    ro = json.loads((bd.parent / "ro.json").read_text())
    (f,) = findings(ro, "writable", "error")
    assert str(bd) in f["message"] and "Read-only file system" in f["message"]
    assert f"remount {bd} read-write" in f["fix"] and "bind" in f["fix"]
    rw = json.loads((bd.parent / "rw.json").read_text())
    assert not findings(rw, "writable", "error")


def test_doctor_finds_a_stale_ninja_and_its_fix_clears_it(tmp_path):
    """Configured with a ninja that is gone since (a deleted venv): cmake --build fails."""
    import re

    src = copy_fixture(tmp_path / "project")
    env = loop_env(tmp_path / "ccache")
    rc, _, err = build(src, env)
    assert rc == 0, err
    old = tmp_path / "old-venv" / "bin" / "ninja"
    cache = src / "cmake-build-release" / "CMakeCache.txt"
    cache.write_text(re.sub(r"(?m)^(CMAKE_MAKE_PROGRAM:\w+)=.*$", lambda m: f"{m[1]}={old}", cache.read_text()))
    rc, summary, err = build(src, env, "--target", "all")
    assert rc == 1 and "build tool execution failed" in summary["failure"].splitlines()[0]
    rc, data = doctor(src, env)
    assert rc == 1
    (f,) = findings(data, "build-tool", "error")
    assert f"CMAKE_MAKE_PROGRAM={old}" in f["message"] and "no longer exists" in f["message"]
    fix = f["fix"].split(" (")[0]  # "python -m buildtools presets --force-overwrite && python -m buildtools build --clean"
    for command in fix.split(" && "):
        args = command.split()[3:]
        p = run_cli(*args, "--source-dir", str(src), *(["--no-progress"] if args[0] == "build" else []), env=env)
        assert p.returncode == 0, p.stderr
    rc, data = doctor(src, env)
    assert not findings(data, "build-tool")


ORPHAN = textwrap.dedent(
    """
    import subprocess, sys, time
    from pathlib import Path
    from buildtools.util.lock import BuildLock
    lock = BuildLock(Path(sys.argv[1]), command="build --for-test")
    lock.acquire()
    # a child that got the lock's descriptor, like a compiler started by a build that then dies
    child = subprocess.Popen(["sleep", "300"], pass_fds=(lock._fd,), start_new_session=True)
    print(child.pid, flush=True)
    time.sleep(300)
    """
)


def test_doctor_names_a_killed_builds_processes_and_killing_them_clears_it(project):
    src, env = project
    bd = src / "cmake-build-release"
    front = subprocess.Popen([sys.executable, "-c", ORPHAN, str(bd)], env={**env, "PYTHONPATH": str(ROOT)},
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    child = int(front.stdout.readline())
    try:
        front.send_signal(signal.SIGKILL)  # the front end dies; its child still holds the lock
        front.wait(timeout=30)
        rc, data = doctor(src, env)
        (f,) = findings(data, "build-lock", "warning")
        assert f"the build that took it (pid {front.pid} (build --for-test) since" in f["message"]
        assert f"pid {child} (sleep 300)" in f["message"]
        assert f["fix"] == f"wait for them to finish, or stop them: kill {child}"
    finally:
        os.kill(child, signal.SIGKILL)  # the named fix
    for _ in range(200):  # the kernel drops the lock when the child is gone
        rc, data = doctor(src, env)
        if not findings(data, "build-lock", "warning"):
            break
    assert findings(data, "build-lock", "ok")


def _as_module_C(src: Path) -> None:
    """The fixture with kernloop's module and package names (doctor looks for kernloop/_C)."""
    for rel in ("CMakeLists.txt", "csrc/fx.cpp"):
        path = src / rel
        path.write_text(path.read_text().replace("_fx", "_C").replace("looppkg", "kernloop"))
    (src / "looppkg").rename(src / "kernloop")
    (src / "kernloop" / "__init__.py").write_text("")


def test_doctor_compares_contents_a_relink_to_the_same_bytes_is_installed(tmp_path):
    src = copy_fixture(tmp_path / "project")
    _as_module_C(src)
    env = loop_env(tmp_path / "ccache")
    rc, _, err = build(src, env)
    assert rc == 0, err
    os.utime(src / "csrc" / "value.cu")  # a touch: recompiled from the cache, relinked, same bytes
    rc, summary, err = build(src, env)
    assert rc == 0, err
    assert summary["linked"] and summary["installed"][0]["changed"] is False
    rc, data = doctor(src, env)
    assert [f["level"] for f in findings(data, "modules:_C")] == ["ok"], findings(data, "modules:_C")
    set_fx_value(src, 5)  # a real change, built but not installed
    rc, _, err = build(src, env, "--target", "all")
    assert rc == 0, err
    rc, data = doctor(src, env)
    (f,) = findings(data, "modules:_C", "warning")
    assert "not installed" in f["message"] and f["fix"].startswith("python -m buildtools build")
    rc, _, err = build(src, env)  # the named fix
    assert rc == 0, err
    rc, data = doctor(src, env)
    assert [f["level"] for f in findings(data, "modules:_C")] == ["ok"]
