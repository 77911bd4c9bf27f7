"""The trees the figures build, and the commands they time.

- ``kernloop`` tree: a copy of the tracked tree built by ``python -m buildtools build`` with the
  plan's defaults and its own compiler cache. Its first build is a cold one (an empty cache); P1,
  P2 and P4 reuse the tree afterwards.
- ``naive`` tree: another copy with the vLLM-style variant of one kernel (bench/variants), built
  the naive way: torch's default arch list, ``-j nproc``, no job pools, no compiler cache.
- an overlay venv for ``pip install --no-build-isolation -e .``: it sees this environment's
  packages through a .pth file, so the editable install never touches the developer's venv.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from buildtools.util import proc
from buildtools.errors import KernloopError

from .harness import BenchConfig, Counter, Progress, base_env, copy_tracked_tree, heartbeat, timed
from .variants import VARIANT_ARCHS_VAR, VARIANT_TU, apply_vllm_style, torch_default_archs

__all__ = ["Workspace", "BuildRun", "KERNEL_TU", "SMOKE_TARGET", "edit_source"]

# The kernel every edit figure touches: torch-free in csrc/, torch-heavy in the variant.
KERNEL_TU = VARIANT_TU  # csrc/cuda/activation_kernels.cu
# Smoke size: the "cold" builds compile one small torch-free TU instead of the whole project.
SMOKE_TARGET = "CMakeFiles/_C.dir/csrc/cpu/activation.cpp.o"
_EDIT_RE = re.compile(r"\n// kernloop-bench edit\n[^\n]*\n")


def edit_source(path: Path, nonce: int) -> None:
    """A real edit: one more constant the preprocessor sees, so the compiler cache misses and the
    TU is compiled for real (a comment would be a preprocessed-mode hit)."""
    text = _EDIT_RE.sub("\n", path.read_text(encoding="utf-8"))
    path.write_text(text.rstrip("\n") + f"\n// kernloop-bench edit\nstatic constexpr long kBenchEdit{nonce} = {nonce};\n",
                    encoding="utf-8")


@dataclass(frozen=True)
class BuildRun:
    seconds: float
    summary: dict[str, Any]  # `buildtools build --json`

    @property
    def compiled(self) -> int:
        return len([t for t in self.summary.get("ran", []) if not t.endswith(".so")])

    @property
    def cache(self) -> str:
        c = self.summary.get("cache") or {}
        return f"{c.get('hits', '?')}/{c.get('hits', 0) + c.get('misses', 0)} hits" if c else "no cache"


class Workspace:
    """Temporary trees, environments and the commands the figures time."""

    def __init__(self, config: BenchConfig, log: Progress) -> None:
        self.config = config
        self.log = log
        if config.workdir is not None:
            config.workdir.mkdir(parents=True, exist_ok=True)
            self.root = Path(tempfile.mkdtemp(prefix="run-", dir=config.workdir))
        else:
            self.root = Path(tempfile.mkdtemp(prefix="kernloop-bench-"))
        self.python = Path(config.python)
        self.edits = Counter()
        self._n = 0
        self._kernloop: Path | None = None
        self._kernloop_env: dict[str, str] | None = None
        self.first_build: BuildRun | None = None  # the kernloop tree's first (cold) build
        self._naive: Path | None = None
        self._overlay: Path | None = None
        self._plain: Path | None = None
        self.pip_first: float | None = None  # the tree's first pip run (configures cmake-build-pip)
        self._plan_json: dict[str, Any] | None = None
        self.naive_first: float | None = None
        self.cold_kernloop: list[float] = []  # P3's kernloop cold builds, for P4
        self.naive_arch_list = ""  # TORCH_CUDA_ARCH_LIST the naive build was configured with

    # -- housekeeping ------------------------------------------------------------------------
    def close(self) -> None:
        if self.config.keep:
            self.log(f"kept the work directory: {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    def fresh_dir(self, name: str) -> Path:
        self._n += 1
        path = self.root / f"{self._n:02d}-{name}"
        path.mkdir(parents=True)
        return path

    def fresh_tree(self, name: str) -> Path:
        return copy_tracked_tree(self.fresh_dir(name) / "src")

    def env(self, ccache_dir: Path | None, **extra: str) -> dict[str, str]:
        return base_env(self.config, ccache_dir=ccache_dir, **extra)

    def cold_env(self, name: str, **extra: str) -> dict[str, str]:
        """An environment with a new, empty compiler cache."""
        return self.env(self.fresh_dir(f"ccache-{name}"), **extra)

    # -- facts ---------------------------------------------------------------------------------
    def plan_json(self, tree: Path | None = None, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        """``presets --dry-run --json`` of a tree: facts and plan, as the build would see them."""
        if tree is None and env is None and self._plan_json is not None:
            return self._plan_json
        # By default a tree nothing is built in: asking must never start a build.
        run_tree = tree or self.plain_tree()
        _, result = timed([self.python, "-m", "buildtools", "presets", "--dry-run", "--json", "--source-dir",
                           run_tree], cwd=run_tree, env=env or self.env(None), timeout=300,
                          what="presets --dry-run --json")
        data = json.loads(result.stdout)
        if tree is None and env is None:
            self._plan_json = data
        return data

    # -- kernloop tree -------------------------------------------------------------------------
    def kernloop_env(self) -> dict[str, str]:
        if self._kernloop_env is None:
            # Smoke size reuses the caller's warm cache (the tests' session build); otherwise the
            # tree's first build is a cold one and P4 later needs a cache that only it has filled.
            cache = None if self.config.smoke else self.fresh_dir("ccache-kernloop")
            self._kernloop_env = self.env(cache)
        return self._kernloop_env

    def kernloop_tree(self) -> Path:
        """The kernloop tree, built once (the first build is measured and kept)."""
        if self._kernloop is None:
            tree = self.fresh_tree("kernloop")
            self._kernloop = tree
            kind = "warm cache" if self.config.smoke else "empty compiler cache"
            self.log(f"setup: kernloop tree {tree}: first build ({kind})")
            with heartbeat(self.log, "first build"):
                self.first_build = self.kernloop_build(tree, self.kernloop_env())
            self.log(f"setup: first build {self.first_build.seconds:.1f} s, "
                     f"{self.first_build.compiled} TUs, {self.first_build.cache}")
        return self._kernloop

    def kernloop_build(self, tree: Path, env: Mapping[str, str], *extra: str, timeout: float = 3600) -> BuildRun:
        """``python -m buildtools build`` as a user runs it (presets if needed, configure if needed,
        build, install into the tree); timed from start to exit."""
        seconds, result = timed([self.python, "-m", "buildtools", "build", "--source-dir", tree, "--json",
                                 "--no-progress", *extra], cwd=tree, env=env, timeout=timeout, what="buildtools build")
        try:
            summary = json.loads(result.stdout)
        except ValueError:
            summary = {}
        return BuildRun(seconds, summary)

    def preset_build(self, tree: Path, env: Mapping[str, str]) -> float:
        """The plain CMake form of the same loop: ``cmake --build --preset release --target install``
        (what the README gives for users who skip the runner); seconds."""
        cmake = shutil.which("cmake", path=env["PATH"]) or "cmake"
        seconds, _ = timed([cmake, "--build", "--preset", "release", "--target", "install"], cwd=tree, env=env,
                           timeout=3600, what="cmake --build --preset release --target install")
        return seconds

    def build_dir(self, tree: Path) -> Path:
        return tree / "cmake-build-release"

    # -- the physical limit ------------------------------------------------------------------
    def tu_command(self, build_dir: Path, tu: str) -> tuple[list[str], Path]:
        """The TU's own compile command from compile_commands.json (argv, directory), launcher removed."""
        entries = json.loads((build_dir / "compile_commands.json").read_text())
        for entry in entries:
            if Path(entry["file"]).as_posix().endswith(tu):
                argv = entry.get("arguments") or shlex.split(entry["command"])
                while Path(argv[0]).name in ("ccache", "sccache", "nvcc_threads.sh") or "=" in argv[0]:
                    argv = argv[1:]  # launchers and their KEY=VALUE settings
                return argv, Path(entry["directory"])
        raise KernloopError(f"{tu} is not in {build_dir}/compile_commands.json")

    def link_commands(self, build_dir: Path, target: str) -> list[list[str]]:
        """The link step of ``target`` as ninja would run it (``ninja -t commands``, last line),
        split at CMake's ``: && ... && :`` wrapper so it runs without a shell."""
        ninja = shutil.which("ninja", path=self.kernloop_env()["PATH"]) or "ninja"
        result = proc.run([ninja, "-C", build_dir, "-t", "commands", target], timeout=60)
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        if not result.ok or not lines:
            raise KernloopError(f"ninja -t commands {target} gave nothing in {build_dir}: {result.stderr.strip()}")
        steps = [shlex.split(part) for part in lines[-1].split(" && ")]
        return [s for s in steps if s and s != [":"]]

    def tu_alone(self, build_dir: Path, tu: str, threads: int | None = None) -> tuple[float, int]:
        """Seconds to run the TU's compile command alone, with ``--threads`` set to ``threads``
        (None: min(cores, the TU's gencodes), what a lone dirty TU gets); and that thread count."""
        argv, directory = self.tu_command(build_dir, tu)
        gencodes = sum(1 for a in argv if a.startswith(("-gencode", "--generate-code")))
        want = threads or max(1, min(len(os.sched_getaffinity(0)), gencodes or 1))
        argv = [f"--threads={want}" if a.startswith("--threads=") else a for a in argv]
        seconds, _ = timed(argv, cwd=directory, env=self.kernloop_env(), what=f"compile {tu}")
        return seconds, want

    def build_target(self, build_dir: Path, env: Mapping[str, str], target: str = "install") -> float:
        """``cmake --build <dir> --target <target>`` (no preset); seconds."""
        cmake = shutil.which("cmake", path=env["PATH"]) or "cmake"
        seconds, _ = timed([cmake, "--build", build_dir, "--target", target], cwd=build_dir.parent, env=env,
                           timeout=3600, what=f"cmake --build {build_dir.name} --target {target}")
        return seconds

    def pch_off_dir(self, tree: Path, env: Mapping[str, str]) -> Path:
        """A second build dir of the kernloop tree configured with -DKERNLOOP_PCH=OFF, built once."""
        off = tree / "cmake-build-nopch"
        if not (off / "build.ninja").exists():
            cmake = shutil.which("cmake", path=env["PATH"]) or "cmake"
            self.log("setup: a -DKERNLOOP_PCH=OFF build dir (glue TUs compiled without the PCH)")
            timed([cmake, "--preset", "release", "-B", off, "-DKERNLOOP_PCH=OFF"], cwd=tree, env=env, timeout=600,
                  what="configure -DKERNLOOP_PCH=OFF")
            with heartbeat(self.log, "KERNLOOP_PCH=OFF build"):
                self.build_target(off, env, "all")
        return off

    def physical_limit(self, build_dir: Path, tu: str, target: str) -> float:
        """Seconds to run the TU's compile command alone, then the link -- nothing else."""
        compile_argv, directory = self.tu_command(build_dir, tu)
        links = self.link_commands(build_dir, target)
        env = self.kernloop_env()
        start = time.perf_counter()
        timed(compile_argv, cwd=directory, env=env, what=f"compile {tu}")
        for argv in links:
            timed(argv, cwd=build_dir, env=env, what=f"link {target}")
        return time.perf_counter() - start

    # -- pip ----------------------------------------------------------------------------------
    def overlay_python(self) -> Path:
        """A venv that sees this environment's packages (torch, pip, scikit-build-core) via .pth."""
        if self._overlay is None:
            where = self.fresh_dir("venv")
            proc.run([self.python, "-m", "venv", "--without-pip", where], timeout=300, check=True)
            site = next((where / "lib").glob("python3*/site-packages"))
            (site / "_kernloop_bench_overlay.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
            self._overlay = where / "bin" / "python"
        return self._overlay

    def pip_editable(self, tree: Path, env: Mapping[str, str]) -> float:
        """``pip install --no-build-isolation -e .`` in the tree; seconds. ``--no-deps``: the run
        dependencies are already there and pip must not reach for an index."""
        seconds, _ = timed([self.overlay_python(), "-m", "pip", "install", "--no-build-isolation", "--no-deps",
                            "--disable-pip-version-check", "-e", "."], cwd=tree, env=env, timeout=3600,
                           what="pip install --no-build-isolation -e .")
        return seconds

    def pip_ready(self, tree: Path, env: Mapping[str, str]) -> None:
        """The first pip run configures cmake-build-pip (compiles are cache hits after the preset
        build); every later one is what a user re-running pip gets."""
        if self.pip_first is None:
            self.log("setup: first pip install -e . (configures cmake-build-pip)")
            with heartbeat(self.log, "first pip run"):
                self.pip_first = self.pip_editable(tree, env)
            self.log(f"setup: first pip run {self.pip_first:.1f} s")

    def plain_tree(self) -> Path:
        """A copy nothing is built in (for the presets generator)."""
        if self._plain is None:
            self._plain = self.fresh_tree("plain")
        return self._plain

    # -- import check ---------------------------------------------------------------------------
    def import_check(self, tree: Path, env: Mapping[str, str], python: Path | None = None) -> str:
        """``import kernloop`` from the tree and run silu_and_mul once on the CPU (not timed):
        proof that a build's result is importable. Returns the loaded _C's path."""
        code = ("import torch, kernloop, kernloop._C as c; x = torch.randn(2, 8);"
                "y = kernloop.silu_and_mul(x); assert y.shape == (2, 4); print(c.__file__)")
        _, result = timed([python or self.python, "-c", code], cwd=tree, env=env, timeout=600, what="import kernloop")
        return result.stdout.strip().splitlines()[-1]

    # -- naive tree -----------------------------------------------------------------------------
    def naive_archs(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(torch's default list, that list ∩ what this nvcc supports)."""
        facts = self.plan_json()["facts"]
        nvcc, torch = facts.get("nvcc"), facts.get("torch")
        if not nvcc or not torch or not torch.get("cuda"):
            raise KernloopError("the naive build needs nvcc and a CUDA torch", "run on a machine with both")
        cmake = (facts.get("cmake") or {}).get("path") or "cmake"
        default = torch_default_archs(Path(cmake), Path(torch["root"]), nvcc["version"])
        supported = set(nvcc["archs"])
        kept = tuple(a for a in default if a.split("+")[0].rstrip("af") in supported)
        return default, kept

    def variant_archs(self) -> tuple[tuple[str, ...], str]:
        """The variant TU's archs and why."""
        if self.config.quick or self.config.smoke:
            flag = "--smoke" if self.config.smoke else "--quick"
            return (self.config.quick_variant_arch,), f"{flag}: one arch instead of torch's default list"
        default, kept = self.naive_archs()
        return kept, f"torch's default list ({len(default)}) ∩ nvcc ({len(kept)})"

    def naive_defines(self, tree: Path) -> dict[str, str]:
        """The plan's CMake variables minus everything kernloop adds for speed: no job pools, no
        compiler launcher, no nvcc threads; torch's default arch list."""
        data = self.plan_json(tree, self.naive_env())
        defines = dict(data["plan"]["cache_variables"])
        for key in list(defines):
            if key.startswith("CMAKE_JOB_POOL") or key.endswith("_COMPILER_LAUNCHER"):
                defines.pop(key)
        defines["NVCC_THREADS"] = ""
        _, kept = self.naive_archs()
        defines["TORCH_CUDA_ARCH_LIST"] = self.config.arch if self.config.smoke and self.config.arch else ";".join(kept)
        self.naive_arch_list = defines["TORCH_CUDA_ARCH_LIST"]
        archs, _ = self.variant_archs()
        defines[VARIANT_ARCHS_VAR] = ";".join(archs)
        defines["CMAKE_BUILD_TYPE"] = "Release"
        defines["CMAKE_INSTALL_PREFIX"] = str(tree)
        return defines

    def naive_env(self) -> dict[str, str]:
        return self.env(None, CCACHE_DISABLE="1")

    def naive_tree(self) -> Path:
        if self._naive is None:
            tree = self.fresh_tree("naive")
            apply_vllm_style(tree)
            self._naive = tree
        return self._naive

    def naive_built(self) -> Path:
        """The naive tree after its first, cold build (timed once, kept for P3)."""
        tree = self.naive_tree()
        if self.naive_first is None:
            target = SMOKE_TARGET if self.config.smoke else "install"
            archs, why = self.variant_archs()
            self.log(f"setup: naive tree {tree}: cold build (variant TU for {';'.join(archs)}: {why})")
            with heartbeat(self.log, "naive cold build"):
                self.naive_first = self.naive_build(tree, target=target)
            self.log(f"setup: naive cold build {self.naive_first:.1f} s")
        return tree

    def naive_build(self, tree: Path, *, target: str = "install", configure: bool = True) -> float:
        """Configure (when asked) and build the naive way; seconds for both."""
        env = self.naive_env()
        build = tree / "build-naive"
        cmake = shutil.which("cmake", path=env["PATH"]) or "cmake"
        jobs = str(os.cpu_count() or 1)
        defines = self.naive_defines(tree) if configure else {}
        start = time.perf_counter()
        if configure:
            timed([cmake, "-S", tree, "-B", build, "-G", "Ninja", *[f"-D{k}={v}" for k, v in defines.items()]],
                  cwd=tree, env=env, timeout=1800, what="naive configure")
        timed([cmake, "--build", build, "-j", jobs, "--target", target], cwd=tree, env=env, timeout=7200,
              what="naive build")
        return time.perf_counter() - start

