"""`python -m buildtools watch` driven by real file edits in a temp copy of the fixture."""
from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from _loop import ROOT, build, copy_fixture, fx_value, have_build_tools, loop_env
from buildtools.util.lock import INFO_NAME, BuildLock

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not have_build_tools(), reason="needs cmake, ninja and ccache"),
]


class Watch:
    """The watch command as a child process, its merged output read line by line."""

    def __init__(self, src: Path, env: dict[str, str], *pytest_args: str) -> None:
        argv = [sys.executable, "-m", "buildtools", "watch", "--source-dir", str(src), "--no-progress"]
        if pytest_args:
            argv += ["--", *pytest_args]
        self.proc = subprocess.Popen(argv, cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, pattern: str, timeout: float = 300) -> re.Match:
        """Wait for a line matching ``pattern``; the lines before it are kept in ``seen``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in time; output so far:\n" + "\n".join(self.seen)) from None
            if line is None:
                raise AssertionError(f"watch exited ({self.proc.wait()}) before {pattern!r}:\n" + "\n".join(self.seen))
            self.seen.append(line)
            m = re.search(pattern, line)
            if m:
                return m

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C delivers to the foreground process
        return self.proc.wait(timeout=120)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def save(path: Path, text: str) -> None:
    """Save like an editor: write a temp file, rename it over the original."""
    tmp = path.with_name(f".{path.name}.swp-save")
    tmp.write_text(text)
    os.replace(tmp, path)


def set_value(src: Path, value: int) -> None:
    cu = src / "csrc" / "value.cu"
    save(cu, re.sub(r"#define FX_VALUE \d+", f"#define FX_VALUE {value}", cu.read_text()))


@pytest.fixture
def project(tmp_path):
    src = copy_fixture(tmp_path / "project")
    return src, loop_env(tmp_path / "ccache")


def test_edit_rebuilds_then_runs_the_tests(project):
    src, env = project
    w = Watch(src, env, "-q", "-p", "no:cacheprovider", "check_fx.py")
    try:
        w.expect(r"^tests passed$")  # the initial build and test run
        w.expect(r"^watching csrc/, CMakeLists.txt")
        set_value(src, 3)
        w.expect(r"^changed: csrc/value\.cu$")
        built = w.expect(r"^built in .*; 1 TU rebuilt \(csrc/value\.cu\)")
        assert "installed _fx.abi3.so" in built.string
        w.expect(r"^tests passed$")  # check_fx.py: the imported module reports 3
        assert fx_value(src) == 3

        # CMakeLists.txt is replaced by rename twice: both saves are seen
        for n in (1, 2):
            cm = src / "CMakeLists.txt"
            save(cm, cm.read_text() + f"# edit {n}\n")
            w.expect(r"^changed: CMakeLists\.txt$")
            w.expect(r"^tests passed$")

        # a failing test is reported, and watching goes on
        cu = src / "csrc" / "value.cu"
        save(cu, cu.read_text().replace("return FX_VALUE;", "return FX_VALUE + 1;"))
        w.expect(r"^changed: csrc/value\.cu$")
        w.expect(r"^tests FAILED \(pytest exit 1\)$")
        w.expect(r"^watching ")
        assert w.interrupt() == 130
    finally:
        w.close()


def test_a_burst_of_saves_is_one_rebuild(project):
    src, env = project
    w = Watch(src, env)
    try:
        w.expect(r"^watching ")
        set_value(src, 4)
        fx = src / "csrc" / "fx.cpp"
        save(fx, fx.read_text() + "// touched\n")
        changed = w.expect(r"^changed: ")
        assert changed.string == "changed: csrc/fx.cpp, csrc/value.cu"
        w.expect(r"^built in .*; 2 TUs rebuilt")
        w.expect(r"^watching ")
        assert w.interrupt() == 130
        assert sum(1 for l in w.seen if l.startswith("changed: ")) == 1
    finally:
        w.close()


def test_compile_error_shows_first_error_and_keeps_watching(project):
    src, env = project
    w = Watch(src, env)
    try:
        w.expect(r"^watching ")
        cu = src / "csrc" / "value.cu"
        good = cu.read_text()
        save(cu, good.replace("out[i] = FX_VALUE;", "out[i] = FX_VALUE + undefined_x;"))
        w.expect(r'error: identifier "undefined_x" is undefined')
        w.expect(r"^watching ")
        save(cu, good)
        w.expect(r"^built in ")
        assert w.interrupt() == 130
    finally:
        w.close()


def test_ctrl_c_during_a_rebuild_leaves_nothing_half_written(project):
    src, env = project
    w = Watch(src, env)
    try:
        w.expect(r"^watching ")
        set_value(src, 6)
        w.expect(r"^changed: csrc/value\.cu$")
        rc = w.interrupt()  # while that rebuild runs
    finally:
        w.close()
    assert rc == 130
    build_dir = src / "cmake-build-release"
    leftovers = [p for p in (src / "looppkg").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert not (build_dir / INFO_NAME).exists()  # the lock was released on the way out
    with BuildLock(build_dir, timeout_s=5):
        pass
    assert fx_value(src) in (1, 6)  # the old module or the new one, never a broken one
    rc, summary, err = build(src, env)  # and the next build finishes the job
    assert rc == 0, err
    assert fx_value(src) == 6


def test_sigterm_stops_like_ctrl_c(project):
    src, env = project
    w = Watch(src, env)
    try:
        w.expect(r"^watching ")
        w.proc.send_signal(signal.SIGTERM)
        assert w.proc.wait(timeout=120) == 130
    finally:
        w.close()
    assert not (src / "cmake-build-release" / INFO_NAME).exists()
