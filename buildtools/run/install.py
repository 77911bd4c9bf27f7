"""Install: ``cmake --install`` into a staging dir, then rename each changed file into place.

``cmake --install`` overwrites the ``.so`` in place (same inode): a Ctrl-C would leave half a
library, and a Python process that has the old one loaded could crash. A rename does neither.

The staging dir is kept between installs, so an edit that relinks one module does not copy the
others again (a 35 MB ``_moe_C`` at 400 TUs): CMake skips a file whose staged copy has its
source's mtime. CMake calls mtimes less than a second apart "the same", so a staged copy is kept
only when its source was at least :data:`_SETTLED_NS` old when it was staged: any later change
then lands a second or more after it and is copied. Which files this install produced is CMake's
own list, ``install_manifest.txt``; without one (a hand-written install script) the stage starts
empty each time.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from buildtools.util import proc
from buildtools.util.lock import pid_alive
from buildtools.util.os_errors import from_os_error

_STAGE = ".kernloop-stage"
_MANIFEST = "install_manifest.txt"  # written by CMake's generated install script, in the build dir
_SETTLED_NS = 2_000_000_000  # a staged copy younger than this (mtime to ctime) is not kept

__all__ = ["InstalledFile", "InstallFailed", "InstallView", "install_atomically", "pending_install", "remove_leftovers"]


@dataclass(frozen=True)
class InstalledFile:
    path: Path
    changed: bool  # False: the same bytes were already there


@dataclass(frozen=True)
class InstallView:
    """What an install would do: every file it installs, and those whose bytes would change."""

    targets: tuple[Path, ...]
    changed: tuple[Path, ...]


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C until the block is done (only the main thread can do this)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


def _same_file_content(a: Path, b: Path) -> bool:
    """Byte for byte (not filecmp: its cache answers from size and mtime, and two links in one
    second can share both)."""
    try:
        if not b.is_file() or a.stat().st_size != b.stat().st_size:
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                chunk = fa.read(1 << 20)
                if chunk != fb.read(1 << 20):
                    return False
                if not chunk:
                    return True
    except OSError:
        return False


def install_atomically(
    cmake: Path | str,
    build_dir: Path,
    prefix: Path,
    *,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] = lambda line: None,
    keep_fds: tuple[int, ...] = (),
) -> tuple[InstalledFile, ...]:
    """``cmake --install`` into a staging dir, then rename every changed file into ``prefix``."""
    stage = build_dir / _STAGE
    manifest = build_dir / _MANIFEST
    keep = _writes_manifest(build_dir)
    try:
        if stage.is_symlink() or (stage.exists() and not stage.is_dir()):
            stage.unlink()  # never follow a link planted in the build dir
        elif stage.exists() and not keep:
            shutil.rmtree(stage)
        manifest.unlink(missing_ok=True)
    except OSError as exc:
        raise from_os_error(exc, f"clear the install staging dir {stage}", build_dir) from None
    argv = [cmake, "--install", build_dir, "--prefix", stage]
    before = _identities(stage)
    _run_install(argv, on_line, env, keep_fds)
    staged = _manifest_entries(manifest, stage) if keep else None
    if staged is None and before:  # the list names other files: only a fresh stage says what this run put there
        shutil.rmtree(stage, ignore_errors=True)
        before = {}
        _run_install(argv, on_line, env, keep_fds)
    if staged is None:
        keep = False
        staged = sorted(p for p in stage.rglob("*") if p.is_file() or p.is_symlink())
    installed: list[InstalledFile] = []
    with _sigint_deferred():
        for src in staged:
            dest = prefix / src.relative_to(stage)
            remove_leftovers(dest)
            st = src.lstat()
            if not stat.S_ISLNK(st.st_mode) and _unchanged(src, st, before.get(src), dest):
                installed.append(InstalledFile(dest, False))
                if st.st_ctime_ns - st.st_mtime_ns < _SETTLED_NS:
                    _remove_quietly(src)  # CMake might not replace it within its one-second window
                continue
            try:
                _put(src, dest)
            except OSError as exc:
                shutil.rmtree(stage, ignore_errors=True)
                raise from_os_error(exc, f"install {dest}", dest.parent) from None
            installed.append(InstalledFile(dest, True))
    if not keep:
        shutil.rmtree(stage, ignore_errors=True)
    else:  # what this install did not list (a target removed or moved since) goes
        listed = set(staged)
        for path in before:
            if path not in listed and (path.is_file() or path.is_symlink()):
                _remove_quietly(path)
    return tuple(installed)


def _run_install(argv: list[Any], on_line: Callable[[str], None], env: Mapping[str, str] | None,
                 keep_fds: tuple[int, ...]) -> None:
    rc = proc.stream(argv, on_line, env=env, on_interrupt="forward", keep_fds=keep_fds)
    if rc != 0:
        raise InstallFailed(rc)


def _writes_manifest(build_dir: Path) -> bool:
    """CMake's generated install script lists what it installed (a hand-written one may not)."""
    try:
        return "CMAKE_INSTALL_MANIFEST" in (build_dir / "cmake_install.cmake").read_text(errors="replace")
    except OSError:
        return False


def _identities(stage: Path) -> dict[Path, tuple[int, int]]:
    """(inode, ctime) of every staged file: an install that copies a file changes both."""
    if not stage.is_dir():
        return {}
    out = {}
    for p in stage.rglob("*"):
        try:
            st = p.lstat()
        except OSError:
            continue
        out[p] = (st.st_ino, st.st_ctime_ns)
    return out


def _manifest_entries(manifest: Path, stage: Path) -> list[Path] | None:
    """The files CMake's install script says it put in ``stage`` (None: no manifest, or one that
    names files elsewhere -- another ``cmake --install`` of this build dir wrote it meanwhile)."""
    try:
        lines = [line for line in manifest.read_text().splitlines() if line.strip()]
    except OSError:
        return None
    root = os.path.realpath(stage)
    out = []
    for line in lines:
        path = Path(os.path.realpath(os.path.dirname(line))) / os.path.basename(line)
        if not path.is_relative_to(root) or not (path.is_file() or path.is_symlink()):
            return None
        out.append(stage / path.relative_to(root))
    return sorted(out)


def _unchanged(src: Path, st: os.stat_result, identity: tuple[int, int] | None, dest: Path) -> bool:
    """Does ``dest`` hold ``src``'s bytes? A staged copy this install did not touch, with the
    size and mtime of ``dest`` (which an install gave it), is the one already installed; else
    the bytes are compared."""
    if identity == (st.st_ino, st.st_ctime_ns):
        try:
            d = dest.lstat()
        except OSError:
            return False
        if stat.S_ISREG(d.st_mode) and (d.st_size, d.st_mtime_ns) == (st.st_size, st.st_mtime_ns):
            return True
    return _same_file_content(src, dest)


def _put(src: Path, dest: Path) -> None:
    """Rename ``src`` over ``dest`` (a symlink is recreated; another filesystem gets a copy)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.kernloop-{os.getpid()}.tmp")
    try:
        if src.is_symlink():
            tmp.unlink(missing_ok=True)
            os.symlink(os.readlink(src), tmp)
        else:
            try:
                os.replace(src, dest)  # the staged copy leaves the stage: the next install copies it again
                return
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
            shutil.copy2(src, tmp)
        os.replace(tmp, dest)
    except OSError:
        _remove_quietly(tmp)
        raise


_TMP_RE = re.compile(r"\.(?P<name>.+)\.kernloop-(?P<pid>\d+)\.tmp")


def remove_leftovers(dest: Path) -> None:
    """Temp copies of ``dest`` left by an install that was killed (``.<name>.kernloop-<pid>.tmp``,
    its process gone): removed before ``dest`` is installed again."""
    try:
        entries = list(dest.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        m = _TMP_RE.fullmatch(entry.name)
        if m and m["name"] == dest.name and int(m["pid"]) != os.getpid() and not pid_alive(int(m["pid"])):
            entry.unlink(missing_ok=True)


def _remove_quietly(path: Path) -> None:
    """Remove a temp file if it is there; a read-only dir refuses even that (nothing to remove)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _would_change(src: Path, dest: Path) -> bool:
    if src.is_symlink():
        return not (dest.is_symlink() and os.readlink(dest) == os.readlink(src))
    return not _same_file_content(src, dest)


def pending_install(cmake: Path | str, build_dir: Path, prefix: Path, *, env: Mapping[str, str] | None = None) -> InstallView | None:
    """What the next install into ``prefix`` would change: ``cmake --install`` into a temp
    dir, compared byte for byte, as :func:`install_atomically` compares them (None: cannot tell,
    e.g. nothing built yet). A relink that produced the same bytes changes nothing."""
    import tempfile

    try:
        with tempfile.TemporaryDirectory(prefix="kernloop-install-check-") as tmp:
            res = proc.try_run([cmake, "--install", build_dir, "--prefix", tmp], env=env, timeout=300)
            if res is None or not res.ok:
                return None
            stage = Path(tmp)
            staged = sorted(p for p in stage.rglob("*") if p.is_file() or p.is_symlink())
            pairs = [(p, prefix / p.relative_to(stage)) for p in staged]
            return InstallView(tuple(d for _, d in pairs), tuple(d for s, d in pairs if _would_change(s, d)))
    except OSError:
        return None


class InstallFailed(Exception):
    def __init__(self, rc: int) -> None:
        super().__init__(rc)
        self.rc = rc
