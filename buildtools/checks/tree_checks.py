"""doctor's checks of the checkout and the build dir (pure): the presets files, ``[tool.buildtools]``,
directories that refuse a new file, a cached build tool that is gone, a killed build still at work.

Each finding's fix is the one that clears it: doctor run again after it finds nothing.
"""
from __future__ import annotations

from buildtools.checks.findings import Finding
from buildtools.checks.observe import Observations
from buildtools.checks.observe_tree import REGENERATE, Unwritable
from buildtools.util.lock import LOCK_NAME

__all__ = ["tree_checks", "lock_checks"]


def _writable_fix(u: Unwritable) -> str:
    if u.kind == "read-only-fs":
        mount = u.mount or u.path
        return (f"remount {mount} read-write (mount -o remount,rw {mount}; add ,bind for a bind mount), "
                "or work in a writable checkout")
    if u.kind == "not-permitted":
        return f"chattr -i {u.path} (it is immutable), or fix its permissions: chmod u+w {u.path}"
    if u.kind == "permission":
        return f"chmod u+w {u.path} (or build as its owner)"
    if u.kind == "no-space":
        return f"free some disk space on the filesystem of {u.path} (df -h {u.path})"
    return f"check {u.path}"


def tree_checks(obs: Observations) -> list[Finding]:
    out: list[Finding] = []
    if obs.presets is not None:
        out.append(Finding("presets", "error", f"{obs.presets.message}: cmake --preset and the build will fail", obs.presets.fix))
    else:
        out.append(Finding("presets", "ok", "presets files read as CMake and the build read them"))
    if obs.config is not None:
        out.append(Finding("config", "error", f"[tool.buildtools]: {obs.config.message}", obs.config.fix))
    else:
        out.append(Finding("config", "ok", "[tool.buildtools] is valid (or absent)"))
    for u in obs.unwritable:
        out.append(Finding("writable", "error", f"{u.path} does not take a new file ({u.reason}): the build writes there",
                           _writable_fix(u)))  # fmt: skip
    if not obs.unwritable:
        out.append(Finding("writable", "ok", "the source tree, the package and the build dir take new files"))
    mp = obs.make_program
    if mp is not None:
        out.append(Finding("build-tool", "error", f"{obs.build_dir.name} was configured with {mp.variable}={mp.path}, which {mp.why}: "
                           "cmake --build will fail", f"{REGENERATE} && python -m buildtools build --clean "
                           "(presets and configure with the ninja found now)"))  # fmt: skip
    return out


def lock_checks(obs: Observations) -> list[Finding]:
    lock = obs.lock
    if lock is None:
        return []
    name = lock.build_dir.name
    if lock.orphaned:
        desc = lock.holder.describe() if lock.holder else "which did not describe itself"
        what = (f"the lock of {name} is held, but the build that took it ({desc}) is gone" if lock.held
                else f"the build {desc} was killed")
        if lock.processes:
            procs = ", ".join(p.describe() for p in lock.processes[:5]) + (", ..." if len(lock.processes) > 5 else "")
            pids = " ".join(str(p.pid) for p in lock.processes)
            return [Finding("build-lock", "warning", f"{what}; processes it started still run in {name}: {procs}",
                            f"wait for them to finish, or stop them: kill {pids}")]
        return [Finding("build-lock", "warning", f"{what}; something still holds the lock",
                        f"wait for it to finish, or stop it: fuser -k {lock.build_dir / LOCK_NAME}")]
    if lock.held and lock.holder_alive and lock.holder is not None:
        return [Finding("build-lock", "note", f"a build is running in {name}: {lock.holder.describe()}")]
    return [Finding("build-lock", "ok", f"no build running in {name}")]
