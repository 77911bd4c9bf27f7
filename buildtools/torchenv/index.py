"""Platform + channel -> PyTorch wheel index, and the ``auto`` platform choice from driver facts.

Pure: the caller detects the driver (``driver.py``) and passes it in.
"""
from __future__ import annotations

from dataclasses import dataclass

from buildtools.errors import KernloopError
from buildtools.torchenv.driver import DriverFacts, RocmFacts, max_cuda_for_driver
from buildtools.torchenv.matrix import Matrix, Platform, TorchRelease
from buildtools.versions import release_tuple

__all__ = [
    "BASE_URL",
    "CHANNELS",
    "IndexChoice",
    "index_url",
    "choose_auto",
    "resolve_index",
    "install_flags",
]

BASE_URL = "https://download.pytorch.org/whl"
# stable: released wheels; test: release candidates; nightly: dev builds of the next release.
CHANNELS = {"stable": "", "test": "test/", "nightly": "nightly/"}


def index_url(platform: Platform, channel: str = "stable") -> str:
    if channel not in CHANNELS:
        raise KernloopError(f"unknown channel {channel!r}", "use stable, test or nightly")
    return f"{BASE_URL}/{CHANNELS[channel]}{platform.tag}"


@dataclass(frozen=True)
class IndexChoice:
    platform: Platform
    channel: str
    url: str
    release: str  # the torch minor the choice was made for, e.g. "2.14"
    reason: str  # one line: why this platform
    notes: tuple[str, ...] = ()


def _driver_cuda(driver: DriverFacts, matrix: Matrix) -> tuple[str | None, str]:
    if driver.cuda:
        who = f"NVIDIA driver {driver.version}" if driver.version else "the driver"
        return driver.cuda, f"{who} supports CUDA {driver.cuda} ({driver.source})"
    if driver.version:
        cuda = max_cuda_for_driver(driver.version, matrix.cuda_min_driver)
        return cuda, f"driver {driver.version} meets the minimum driver of CUDA {cuda} (matrix cuda_min_driver)"
    return None, f"an NVIDIA driver of unknown version ({driver.source})"


def _choose_cuda(release: TorchRelease, driver: DriverFacts, matrix: Matrix) -> tuple[Platform | None, str, list[str]]:
    cuda, why = _driver_cuda(driver, matrix)
    notes: list[str] = []
    offered = release.cuda
    if not offered:
        return None, f"{why}, but torch {release.minor} ships no CUDA wheels", notes
    if cuda is None:
        # Unknown capability: the oldest index needs the oldest driver, the safest guess.
        notes.append("could not tell which CUDA the driver supports; took the oldest CUDA index")
        return Platform("cuda", offered[0]), why, notes
    have = release_tuple(cuda)
    fits = [c for c in offered if release_tuple(c) <= have]
    if fits:
        best = fits[-1]
        status = release.cuda_status(best)
        if status == "experimental":
            notes.append(f"CUDA {best} is experimental for torch {release.minor}")
        return Platform("cuda", best), f"{why}; newest CUDA index of torch {release.minor} it runs: cu{best.replace('.', '')}", notes
    same_major = [c for c in offered if release_tuple(c)[0] == have[0]]
    if same_major:
        pick = same_major[0]
        notes.append(
            f"driver CUDA {cuda} is older than CUDA {pick}: relies on CUDA minor-version compatibility "
            f"(PTX JIT and some features need a newer driver; minimum for full support: {matrix.min_driver(pick) or 'see NVIDIA docs'})"
        )
        return Platform("cuda", pick), why, notes
    need = matrix.min_driver(offered[0])
    notes.append(
        f"driver too old for every CUDA index of torch {release.minor} ({', '.join(offered)})"
        + (f": update the NVIDIA driver to >= {need}" if need else "")
    )
    return None, why, notes


def _choose_rocm(release: TorchRelease, rocm: RocmFacts) -> tuple[Platform | None, list[str]]:
    offered = sorted(release.rocm, key=release_tuple)
    notes: list[str] = []
    if not offered:
        return None, [f"torch {release.minor} ships no ROCm wheels"]
    if rocm.version is None:
        notes.append("ROCm version unknown; took the newest ROCm index")
        return Platform("rocm", offered[-1]), notes
    have = release_tuple(rocm.version)
    exact = [r for r in offered if release_tuple(r)[:2] == have[:2]]  # same major.minor: 6.2.4 for ROCm 6.2.x
    if exact:
        return Platform("rocm", exact[-1]), notes
    older = [r for r in offered if release_tuple(r) <= have]
    if older:
        return Platform("rocm", older[-1]), notes
    notes.append(f"ROCm {rocm.version} is older than every ROCm index of torch {release.minor}; the wheel bundles its own ROCm runtime")
    return Platform("rocm", offered[0]), notes


def choose_auto(
    release: TorchRelease, driver: DriverFacts | None, rocm: RocmFacts | None, matrix: Matrix
) -> tuple[Platform, str, tuple[str, ...]]:
    """NVIDIA driver -> newest CUDA index it supports; else ROCm; else CPU. Returns (platform, reason, notes)."""
    notes: list[str] = []
    if driver is not None:
        plat, why, more = _choose_cuda(release, driver, matrix)
        notes += more
        if plat is not None:
            return plat, why, tuple(notes)
        if rocm is None:
            return Platform("cpu"), f"{why}; falling back to CPU wheels", tuple(notes)
    if rocm is not None:
        plat, more = _choose_rocm(release, rocm)
        notes += more
        if plat is not None:
            have = f"ROCm {rocm.version}" if rocm.version else "ROCm"
            return plat, f"no usable NVIDIA driver; {have} found ({rocm.source})", tuple(notes)
    return Platform("cpu"), "no NVIDIA driver (no NVML library, no nvidia-smi) and no ROCm: CPU wheels", tuple(notes)


def resolve_index(
    platform_arg: str,
    channel: str,
    matrix: Matrix,
    *,
    torch_version: str | None = None,
    driver: DriverFacts | None = None,
    rocm: RocmFacts | None = None,
) -> IndexChoice:
    """The index for ``--platform`` (``auto`` or a tag) on ``channel`` for a torch release.

    ``torch_version`` None means the newest release in the matrix. An explicit release that does not
    publish the platform is an error; the default release only gets a note (older releases may have it).
    """
    if channel not in CHANNELS:
        raise KernloopError(f"unknown channel {channel!r}", "use --channel stable, test or nightly")
    if torch_version is not None:
        release = matrix.release(torch_version)
        if release is None:
            raise KernloopError(
                f"torch {torch_version} is not in the compatibility matrix ({matrix.span})",
                "pass a release the matrix knows, or update buildtools/torchenv/torch_matrix.json",
            )
    else:
        release = matrix.latest
    notes: list[str] = []
    if platform_arg.strip().lower() == "auto":
        platform, reason, auto_notes = choose_auto(release, driver, rocm, matrix)
        notes += auto_notes
    else:
        platform = Platform.parse(platform_arg)
        if platform not in matrix.all_platforms():
            known = ", ".join(p.tag for p in matrix.all_platforms())
            raise KernloopError(f"unknown platform {platform_arg!r} (torch {matrix.span} publish: {known})",
                                "pick one of those, or auto")
        reason = f"--platform {platform.tag}"
        if not release.has_platform(platform):
            published = ", ".join(p.tag for p in release.platforms)
            if torch_version is not None and channel != "nightly":
                raise KernloopError(f"torch {release.minor} publishes no {platform.tag} wheels (it has: {published})",
                                    "choose one of those platforms or another --torch release")
            newest = next((r.minor for r in reversed(matrix.releases) if r.has_platform(platform)), None)
            notes.append(f"torch {release.minor} publishes no {platform.tag} wheels ({published})"
                         + (f"; the newest release with {platform.tag} is {newest}" if newest else ""))
    if channel == "nightly":
        notes.append(f"nightly builds are the next release after {matrix.latest.minor}; their platforms may differ from the matrix")
    return IndexChoice(platform, channel, index_url(platform, channel), release.minor, reason, tuple(notes))


def install_flags(choice: IndexChoice, *, uv: bool = False, primary: bool = False) -> list[str]:
    """pip/uv options that make an install take torch from the chosen index.

    Default: ``--extra-index-url`` so the user's own index (PyPI or a mirror) still serves everything
    else. ``primary``: ``--index-url`` (torch packages only, as on pytorch.org). uv stops at the first
    index that has a package unless told otherwise, and PyTorch's index mirrors common packages at old
    versions, hence ``--index-strategy unsafe-best-match``.
    """
    flags = ["--index-url" if primary else "--extra-index-url", choice.url]
    if choice.channel == "nightly":  # nightly versions are .devYYYYMMDD pre-releases
        flags = (["--prerelease", "allow"] if uv else ["--pre"]) + flags
    if uv:
        flags += ["--index-strategy", "unsafe-best-match"]
    return flags
