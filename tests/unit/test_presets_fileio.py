"""Atomic writes and backups of the presets file."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from buildtools.util import fileio
from buildtools.errors import KernloopError


def _make_read_only(directory: Path):
    """Make ``directory`` unwritable even for root (chattr +i), or skip. Returns an undo callable."""
    directory.chmod(0o555)
    probe = directory / ".probe"
    try:
        probe.touch()
    except OSError:
        return lambda: directory.chmod(0o755)
    probe.unlink()  # root ignores mode bits: use the immutable attribute instead
    directory.chmod(0o755)
    done = subprocess.run(["chattr", "+i", str(directory)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot make a directory read-only here (root without chattr)")
    return lambda: subprocess.run(["chattr", "-i", str(directory)], check=True)


@pytest.fixture
def read_only_dir(tmp_path):
    d = tmp_path / "ro dir"
    d.mkdir()
    (d / "CMakeUserPresets.json").write_text("{}\n")
    undo = _make_read_only(d)
    try:
        yield d
    finally:
        undo()


def test_write_new_file_then_replace_with_backup(tmp_path):
    path = tmp_path / "CMakeUserPresets.json"
    assert fileio.atomic_write_text(path, "one\n", keep_backup=True) is None  # nothing to back up
    assert path.read_text() == "one\n"
    saved = fileio.atomic_write_text(path, "two\n", keep_backup=True)
    assert saved is not None and saved.read_text() == "one\n" and saved.name.startswith(path.name + ".bak-")
    assert path.read_text() == "two\n"
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left


def test_mode_is_kept_and_symlink_target_replaced(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "CMakeUserPresets.json"
    link.symlink_to(real)
    fileio.atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640


def test_only_the_newest_backups_are_kept(tmp_path):
    path = tmp_path / "f.json"
    path.write_text("0")
    made = []
    for i in range(1, 8):
        made.append(fileio.backup(path, keep=3))
        path.write_text(str(i))
    left = sorted(p.name for p in tmp_path.glob("f.json.bak-*"))
    assert left == sorted(p.name for p in made[-3:])
    assert [p.read_text() for p in made[-3:]] == ["4", "5", "6"]


def test_read_only_directory_is_one_clear_line_and_nothing_changes(read_only_dir):
    path = read_only_dir / "CMakeUserPresets.json"
    with pytest.raises(KernloopError) as err:
        fileio.atomic_write_text(path, "new", keep_backup=True)
    line = err.value.one_line()
    assert "\n" not in line and str(path) in line and ("permission denied" in line or "read-only" in line)
    assert path.read_text() == "{}\n"
    assert sorted(os.listdir(read_only_dir)) == ["CMakeUserPresets.json"]


def test_read_text_missing_and_not_utf8(tmp_path):
    assert fileio.read_text(tmp_path / "none.json") is None
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe{")
    with pytest.raises(KernloopError) as err:
        fileio.read_text(bad)
    assert "not UTF-8" in err.value.one_line()
