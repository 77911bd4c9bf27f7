"""The per-build-dir lock, exercised with two real processes."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from buildtools.errors import KernloopError
from buildtools.util.lock import INFO_NAME, LOCK_NAME, BuildLock, read_holder

ROOT = Path(__file__).resolve().parents[2]

# A process that takes the lock, says so, and holds it until `release` appears.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from buildtools.util.lock import BuildLock
    build_dir, flag = Path(sys.argv[1]), Path(sys.argv[2])
    msgs = []
    with BuildLock(build_dir, on_wait=lambda h: print("WAIT", h.pid if h else None, h.command if h else "", flush=True),
                   command=sys.argv[3]):
        print("ACQUIRED", flush=True)
        while not flag.exists():
            time.sleep(0.02)
    print("RELEASED", flush=True)
    """
)


def _spawn(build_dir: Path, flag: Path, command: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(build_dir), str(flag), command],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )


def _read_until(p: subprocess.Popen, prefix: str) -> str:
    assert p.stdout is not None
    for line in p.stdout:
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"process ended before printing {prefix!r} (rc={p.wait()})")


def test_second_process_waits_and_names_the_holder(tmp_path: Path):
    build_dir = tmp_path / "cmake-build-release"
    flag_a, flag_b = tmp_path / "release-a", tmp_path / "release-b"
    a = _spawn(build_dir, flag_a, "build-A --preset release")
    try:
        assert _read_until(a, "ACQUIRED") == "ACQUIRED"
        holder = read_holder(build_dir)
        assert holder is not None and holder.pid == a.pid and holder.command == "build-A --preset release"

        b = _spawn(build_dir, flag_b, "build-B")
        try:
            # B reports who it waits for: A's pid and command
            assert _read_until(b, "WAIT") == f"WAIT {a.pid} build-A --preset release"
            assert b.poll() is None  # still waiting, A holds the lock
            flag_a.touch()
            assert _read_until(a, "RELEASED") == "RELEASED"
            assert _read_until(b, "ACQUIRED") == "ACQUIRED"  # B gets it only after A let go
            assert read_holder(build_dir).pid == b.pid
            flag_b.touch()
            assert b.wait(timeout=30) == 0
        finally:
            b.kill()
    finally:
        flag_a.touch()
        a.kill()
        a.wait()
    assert read_holder(build_dir) is None  # description removed on release
    assert (build_dir / LOCK_NAME).exists()


def test_lock_of_a_killed_holder_is_free(tmp_path: Path):
    build_dir = tmp_path / "b"
    a = _spawn(build_dir, tmp_path / "never", "doomed")
    _read_until(a, "ACQUIRED")
    a.kill()
    a.wait()
    assert (build_dir / INFO_NAME).exists()  # it never cleaned up...
    with BuildLock(build_dir, timeout_s=5) as lock:  # ...but the kernel released the lock
        assert lock.held
        assert read_holder(build_dir).pid == os.getpid()


def test_timeout_names_the_holder(tmp_path: Path):
    build_dir = tmp_path / "b"
    flag = tmp_path / "go"
    a = _spawn(build_dir, flag, "slow build")
    try:
        _read_until(a, "ACQUIRED")
        seen = []
        with pytest.raises(KernloopError) as err:
            BuildLock(build_dir, timeout_s=0.3, on_wait=seen.append).acquire()
        assert f"pid {a.pid} (slow build)" in err.value.one_line()
        assert [h.pid for h in seen] == [a.pid]  # told once, not every poll
    finally:
        flag.touch()
        a.wait(timeout=30)


def test_unwritable_build_dir_is_a_user_error(tmp_path: Path):
    if os.geteuid() == 0:
        target = Path("/proc/kernloop-cannot-exist")  # root may write anywhere else
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = ro / "b"
    with pytest.raises(KernloopError, match="cannot create the build lock"):
        BuildLock(target).acquire()
