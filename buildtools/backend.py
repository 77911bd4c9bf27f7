"""PEP 517/660 build backend: scikit-build-core, driven by the same plan as the presets.

pyproject.toml names this module (``build-backend = "buildtools.backend"``,
``backend-path = ["."]``). Each build hook:

1. checks the build environment: torch must be importable (the kernels compile
   against the torch you run), which pip's build isolation prevents -- the fix
   is named in one line instead of a CMake error ten minutes in;
2. plans through :func:`buildtools.session.plan_for`, exactly like ``python -m
   buildtools presets``/``build``, and hands the plan to scikit-build-core as
   ``cmake.define.*`` config settings (arch list, NVCC_THREADS, job pools,
   launchers, CUDA paths, Python) plus ``CMAKE_BUILD_PARALLEL_LEVEL`` and the
   launcher's environment (``CCACHE_BASEDIR``...). Settings the user passes
   with ``-C`` win over the plan;
3. builds in ``cmake-build-pip``: beside ``cmake-build-release`` at the same
   depth, so the compiler cache hits what the preset build compiled (see
   :mod:`buildtools.cache.launcher`), and under the same per-build-dir lock.

Editable installs put the extension modules in the source package, like the
preset build: scikit-build-core's default ("redirect") editable would ship its
own copy of ``_C.abi3.so`` in site-packages and map ``kernloop._C`` to it, so a
later ``cmake --build --preset release --target install`` would refresh a file
that ``import kernloop`` no longer loads. Here the wheel's CMake install is
limited to a component that does not exist (nothing compiled goes into the
wheel) and the build dir is then installed into the source tree with
:func:`buildtools.run.install.install_atomically`; the redirect maps the Python files to
the source tree and ``kernloop/_C.abi3.so`` is found next to them.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

__all__ = [
    "build_wheel",
    "build_editable",
    "build_sdist",
    "get_requires_for_build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "prepare_metadata_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "planned_settings",
    "PIP_BUILD_DIR",
    "NO_WHEEL_COMPONENT",
]

PIP_BUILD_DIR = "cmake-build-pip"
# An install component no install() rule uses: the editable wheel gets no compiled files.
NO_WHEEL_COMPONENT = "kernloop-editable-installs-into-the-source-tree"
FIX = "pip install --no-build-isolation -e ."

ConfigSettings = Mapping[str, "str | list[str]"]


def _fail(message: str, hint: str) -> None:
    """One line on stderr and a non-zero exit: pip shows it as the hook's output, no traceback."""
    print(" ".join(f"error: {message} -- {hint}".split()), file=sys.stderr)
    raise SystemExit(2)


def _skbuild() -> Any:
    try:
        import scikit_build_core.build as skb
    except ImportError:
        _fail(
            "scikit-build-core is not installed in this build environment",
            "pip install -r requirements/build.txt, then " + FIX,
        )
    return skb


def _torch_hidden_by_isolation() -> bool:
    """torch is importable for this interpreter outside the build environment."""
    from buildtools.util import proc

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONHOME")}
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"
    candidates = {sys.executable, getattr(sys, "_base_executable", sys.executable)}
    venv = os.environ.get("VIRTUAL_ENV")
    if venv:
        candidates.add(str(Path(venv) / "bin" / "python"))
    for python in candidates:
        res = proc.try_run([python, "-c", probe], env=env, timeout=60)
        if res is not None and res.ok:
            return True
    return False


def _require_build_env() -> None:
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        return
    if _torch_hidden_by_isolation():
        _fail(
            "torch is installed, but pip's build isolation hides it from the kernel build "
            "(torch is deliberately not a build requirement: the kernels must match the torch you run)",
            FIX,
        )
    _fail(
        f"torch is not installed for {sys.executable}; the kernels are built against it",
        "pip install -r requirements/torch-cuda.txt (or torch-cpu.txt), then " + FIX,
    )


def _build_dir(config_settings: ConfigSettings) -> str:
    return str(config_settings.get("build-dir") or PIP_BUILD_DIR)


def planned_settings(
    config_settings: ConfigSettings | None, *, editable: bool, source_dir: Path | None = None
) -> tuple[dict[str, Any], dict[str, str], Any]:
    """(config settings for scikit-build-core, environment for the build, the plan).

    Pure apart from detection; the user's own ``-C`` settings are kept and win.
    """
    from buildtools.cmake.presets import expand_env_macros
    from buildtools.session import PlanOptions, plan_for

    source_dir = Path(os.path.abspath(source_dir or Path.cwd()))
    settings: dict[str, Any] = dict(config_settings or {})
    _facts, plan = plan_for(PlanOptions(source_dir=source_dir, interactive=False))
    for name, value in plan.cmake_defines().items():
        if name in ("CMAKE_BUILD_TYPE", "CMAKE_INSTALL_PREFIX"):
            continue  # scikit-build-core owns these (cmake.build-type, the wheel prefix)
        settings.setdefault(f"cmake.define.{name}", value)
    settings.setdefault("cmake.build-type", plan.build_type.value)
    settings.setdefault("build-dir", PIP_BUILD_DIR)
    if editable:
        settings.setdefault("install.components", NO_WHEEL_COMPONENT)
    # The plan names secrets as $env{NAME}; here they are set for this process only.
    known = {**os.environ, **plan.secrets}
    env = {"CMAKE_BUILD_PARALLEL_LEVEL": str(plan.jobs.value), **expand_env_macros(plan.environment, known),
           **plan.secrets}
    # Unless told otherwise, scikit-build-core sets CC/CXX to Python's sysconfig compilers
    # (gcc/g++) while `cmake --preset` lets CMake pick its default (cc/c++): the same
    # compiler under another name, but another ccache hash. Use CMake's default names.
    import shutil

    for var, name in (("CC", "cc"), ("CXX", "c++")):
        if not os.environ.get(var) and shutil.which(name):
            env[var] = name
    return settings, env, plan


@contextmanager
def _environment(extra: Mapping[str, str]) -> Iterator[None]:
    """Set ``extra`` (values the user already set win) for the build, then restore."""
    saved = {k: os.environ.get(k) for k in extra}
    for key, value in extra.items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _announce(plan: Any, build_dir: str) -> None:
    from buildtools.cli.render import plan_summary

    print(f"kernloop: building in {build_dir} with the planned {plan_summary(plan)}", file=sys.stderr)


def _build(kind: str, wheel_directory: str, config_settings: ConfigSettings | None, metadata_directory: str | None) -> str:
    from buildtools.errors import KernloopError
    from buildtools.util.lock import BuildLock, waiting_notice

    _require_build_env()
    skb = _skbuild()
    editable = kind == "editable"
    source_dir = Path.cwd()
    try:
        settings, env, plan = planned_settings(config_settings, editable=editable, source_dir=source_dir)
    except KernloopError as exc:
        _fail(exc.message, exc.hint or "see python -m buildtools presets --print-plan")
    build_dir = source_dir / _build_dir(settings)
    _announce(plan, str(build_dir))

    def say(text: str) -> None:
        print(text, file=sys.stderr)

    with BuildLock(build_dir, on_wait=waiting_notice(build_dir, say, "kernloop: ")), _environment(env):
        hook = skb.build_editable if editable else skb.build_wheel
        name = hook(wheel_directory, settings, metadata_directory)
        if editable:
            _install_into_source(build_dir, source_dir, env)
    return name


def _install_into_source(build_dir: Path, source_dir: Path, env: Mapping[str, str]) -> None:
    import shutil

    from buildtools.run.install import InstallFailed, install_atomically
    from buildtools.errors import KernloopError

    cmake = shutil.which("cmake") or "cmake"
    try:
        import cmake as cmake_module  # the wheel scikit-build-core itself uses, when there is one

        cmake = str(Path(cmake_module.CMAKE_BIN_DIR) / "cmake")
    except (ImportError, AttributeError):
        pass
    lines: list[str] = []
    try:
        installed = install_atomically(cmake, build_dir, source_dir, env={**os.environ, **env}, on_line=lines.append)
    except InstallFailed as exc:
        _fail(f"installing {build_dir} into {source_dir} failed (exit {exc.rc}): {' '.join(lines[-3:])}", "see the output above")
    except KernloopError as exc:
        _fail(exc.message, exc.hint)
    for f in installed:
        print(f"kernloop: {'installed' if f.changed else 'up to date'}: {f.path}", file=sys.stderr)


# -- PEP 517 / 660 hooks -------------------------------------------------------------------------


def build_wheel(wheel_directory: str, config_settings: ConfigSettings | None = None, metadata_directory: str | None = None) -> str:
    return _build("wheel", wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory: str, config_settings: ConfigSettings | None = None, metadata_directory: str | None = None) -> str:
    return _build("editable", wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory: str, config_settings: ConfigSettings | None = None) -> str:
    return _skbuild().build_sdist(sdist_directory, config_settings)


def get_requires_for_build_sdist(config_settings: ConfigSettings | None = None) -> list[str]:
    return _skbuild().get_requires_for_build_sdist(config_settings)


def get_requires_for_build_wheel(config_settings: ConfigSettings | None = None) -> list[str]:
    _require_build_env()  # the first hook pip calls: fail here, before anything is built
    return _skbuild().get_requires_for_build_wheel(config_settings)


def get_requires_for_build_editable(config_settings: ConfigSettings | None = None) -> list[str]:
    _require_build_env()
    return _skbuild().get_requires_for_build_editable(config_settings)


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: ConfigSettings | None = None) -> str:
    return _skbuild().prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def prepare_metadata_for_build_editable(metadata_directory: str, config_settings: ConfigSettings | None = None) -> str:
    return _skbuild().prepare_metadata_for_build_editable(metadata_directory, config_settings)
