"""Who is building in a build dir: the lock's holder, and what a killed build left running.

The build lock (``buildtools.util.lock``) is an ``flock``: the kernel drops it when the last
descriptor closes. A front end killed with SIGKILL cannot stop its children (they run in their
own session), so ninja and the compilers go on in the build dir -- holding the lock when they got
its descriptor, racing the next build when not. ``buildtools.util.lock`` finds them through ``/proc``
(the build's own lock-wait message uses the same); this module judges what doctor should say.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from buildtools.util.lock import INFO_NAME, LOCK_NAME, Holder, Process, holder_alive, is_held, processes_in, read_holder

__all__ = ["LockView", "observe_lock"]

@dataclass(frozen=True)
class LockView:
    build_dir: Path
    held: bool  # someone holds the lock now
    holder: Holder | None  # who said they took it (.kernloop.lock.json)
    holder_alive: bool  # that process still runs (False when there is no holder)
    processes: tuple[Process, ...]  # processes at work in the build dir (never doctor itself)

    @property
    def orphaned(self) -> bool:
        """A killed build's processes still run: the lock is held by no live holder, or the
        holder died leaving processes in the build dir."""
        if self.holder_alive:
            return False
        return (self.held and (self.holder is not None or bool(self.processes))) or (
            self.holder is not None and bool(self.processes))


def observe_lock(build_dir: Path) -> LockView | None:
    """The lock of ``build_dir`` and who is at work there (None: no build dir, no lock file)."""
    build_dir = Path(build_dir)
    if not (build_dir / LOCK_NAME).exists() and not (build_dir / INFO_NAME).exists():
        return None
    held = is_held(build_dir / LOCK_NAME)
    holder = read_holder(build_dir)
    alive = holder is not None and holder_alive(holder)
    processes = () if alive else processes_in(build_dir)
    return LockView(build_dir, held, holder, alive, processes)
