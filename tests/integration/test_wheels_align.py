"""``wheels align`` with real pip in a throw-away venv, against wheels this test writes itself.

The venv gets:
- ``klalign`` 1.2.0, a meta package that (like nixl) requires ``klalign-cu12``;
- ``klalign-cu12`` / ``klalign-cu13`` 1.1.0 and 1.2.0, each with its own module;
- a stand-in ``torch`` distribution (``2.14.1+cu130`` or ``2.13.0+cpu``): just ``torch/version.py`` as
  the real wheel ships it, whose ``__init__`` refuses to import. The real torch (5 GB) cannot be
  installed in test time, and align only reads torch's version file, so this is all it sees.

pip runs with ``--no-index --find-links <tmp wheelhouse>`` and no pip config, so nothing outside
the test is used.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def write_wheel(dest: Path, name: str, version: str, files: dict[str, str], requires: tuple[str, ...] = ()) -> Path:
    """A minimal valid py3-none-any wheel (METADATA, WHEEL, RECORD with hashes)."""
    dist = re.sub(r"[-_.]+", "_", name)
    info = f"{dist}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    entries = dict(files)
    entries[f"{info}/METADATA"] = metadata
    entries[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: kernloop-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, text in entries.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    entries[f"{info}/RECORD"] = "\n".join(record) + "\n"
    wheel = dest / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in entries.items():
            zf.writestr(path, text)
    return wheel


def write_fake_torch(dest: Path, version: str, cuda: str | None, hip: str | None = None) -> Path:
    version_py = (
        "from typing import Optional\n\n"
        f"__version__ = {version!r}\ndebug = False\ncuda: Optional[str] = {cuda!r}\n"
        f"git_version = 'test'\nhip: Optional[str] = {hip!r}\nrocm: Optional[str] = None\nxpu: Optional[str] = None\n"
    )
    init = "raise ImportError('test stand-in for torch: only torch/version.py is meant to be read')\n"
    return write_wheel(dest, "torch", version, {"torch/__init__.py": init, "torch/version.py": version_py})


def build_wheelhouse(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for version in ("1.1.0", "1.2.0"):
        for major in (12, 13):
            mod = f"klalign_cu{major}"
            write_wheel(dest, f"klalign-cu{major}", version, {f"{mod}/__init__.py": f"CUDA_MAJOR = {major}\n"})
    write_wheel(dest, "klalign", "1.2.0", {"klalign/__init__.py": "\n"}, requires=("klalign-cu12==1.2.0",))
    # A meta release whose variants were never published: the install step must fail cleanly.
    write_wheel(dest, "klalign", "1.3.0", {"klalign/__init__.py": "\n"}, requires=("klalign-cu12==1.3.0",))
    write_fake_torch(dest, "2.14.1+cu130", "13.0")
    write_fake_torch(dest, "2.13.0+cpu", None)
    return dest


def clean_env() -> dict[str, str]:
    """This process's environment without pip settings (the machine's find-links, constraints)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


class Venv:
    def __init__(self, root: Path, wheelhouse: Path) -> None:
        self.root = root
        self.python = root / "bin" / "python"
        self.wheelhouse = wheelhouse

    def pip(self, *args: str) -> None:
        cmd = [str(self.python), "-m", "pip", *args]
        if args[0] == "install":
            cmd += ["--no-index", "--find-links", str(self.wheelhouse)]
        subprocess.run(cmd, env=clean_env(), check=True, capture_output=True, text=True, timeout=300)

    def installed(self) -> dict[str, str]:
        code = ("import importlib.metadata as m, json; "
                "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))")
        out = subprocess.run([str(self.python), "-c", code], env=clean_env(), check=True,
                             capture_output=True, text=True).stdout
        return {k: v for k, v in json.loads(out).items() if k.startswith(("klalign", "torch"))}

    def start(self, *requirements: str) -> None:
        """Reset to exactly these of our packages."""
        have = self.installed()
        if have:
            self.pip("uninstall", "-y", *have)
        if requirements:
            self.pip("install", *requirements)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Venv:
    root = tmp_path_factory.mktemp("align") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, capture_output=True, timeout=300)
    return Venv(root, build_wheelhouse(tmp_path_factory.mktemp("wheelhouse")))


def align(venv: Venv, *args: str, project: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "buildtools", "wheels", "align", "--python", str(venv.python)]
    if project is not None:
        cmd += ["--project", str(project)]
    cmd += [*args, "--", "--no-index", "--find-links", str(venv.wheelhouse)]
    return subprocess.run(cmd, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=600)


def test_cuda13_torch_gets_the_cu13_variant_pinned_to_the_meta_version(venv, tmp_path):
    venv.start("torch==2.14.1+cu130", "klalign==1.2.0")
    assert venv.installed()["klalign-cu12"] == "1.2.0"  # what the meta package pulls, as with nixl

    dry = align(venv, "--package", "klalign", "--dry-run", project=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert f"$ {venv.python} -m pip uninstall -y klalign-cu12" in dry.stdout
    assert "-m pip install --no-index --find-links" in dry.stdout and "klalign-cu13==1.2.0" in dry.stdout
    assert "klalign-cu13" not in venv.installed()  # a dry run changes nothing

    run = align(venv, "--package", "klalign", project=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "torch 2.14.1+cu130 is CUDA 13" in run.stdout
    have = venv.installed()
    assert have.get("klalign-cu13") == "1.2.0" and "klalign-cu12" not in have and have["klalign"] == "1.2.0"
    probe = subprocess.run([str(venv.python), "-c", "import klalign_cu13; print(klalign_cu13.CUDA_MAJOR)"],
                           capture_output=True, text=True, env=clean_env())
    assert probe.stdout.strip() == "13"

    again = align(venv, "--package", "klalign", project=tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stdout and "$ " not in again.stdout


def test_wrong_version_of_the_matching_variant_is_replaced(venv, tmp_path):
    venv.start("torch==2.14.1+cu130", "klalign==1.2.0", "klalign-cu13==1.1.0")
    run = align(venv, "--package", "klalign", project=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    have = venv.installed()
    assert have["klalign-cu13"] == "1.2.0" and "klalign-cu12" not in have


def test_packages_from_pyproject(venv, tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.buildtools]\ncuda-variant-packages = ["klalign"]\n')
    venv.start("torch==2.14.1+cu130", "klalign==1.2.0")
    run = align(venv, project=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert venv.installed().get("klalign-cu13") == "1.2.0"


def test_cpu_torch_removes_cuda_variants_or_keeps_them(venv, tmp_path):
    venv.start("torch==2.13.0+cpu", "klalign==1.2.0")
    kept = align(venv, "--package", "klalign", "--keep", project=tmp_path)
    assert kept.returncode == 0 and "a CPU build" in kept.stdout and "(--keep)" in kept.stdout
    assert "klalign-cu12" in venv.installed()
    run = align(venv, "--package", "klalign", project=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "removing the CUDA variants klalign-cu12 1.2.0" in run.stdout
    have = venv.installed()
    assert "klalign-cu12" not in have and "klalign-cu13" not in have and have["klalign"] == "1.2.0"


def test_failed_install_is_one_line_naming_what_was_removed(venv, tmp_path):
    # klalign 1.3.0 has no published variants, so klalign-cu13==1.3.0 cannot be installed.
    venv.start("torch==2.14.1+cu130", "klalign-cu12==1.2.0")
    venv.pip("install", "--no-deps", "klalign==1.3.0")
    run = align(venv, "--package", "klalign", project=tmp_path)
    assert run.returncode == 2
    err = run.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: pip install failed:")
    assert "klalign-cu12 were already removed" in err[0]


def test_no_torch_in_the_target_is_one_line(venv, tmp_path):
    venv.start("klalign==1.2.0")
    run = align(venv, "--package", "klalign", project=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [run.stderr.strip()]
    assert run.stderr.startswith(f"error: torch is not installed in {venv.python}")


def test_bare_name_is_not_passed_to_pip(venv, tmp_path):
    run = subprocess.run([sys.executable, "-m", "buildtools", "wheels", "align", "--python", str(venv.python),
                          "--project", str(tmp_path), "klalign"], cwd=REPO, env=clean_env(), capture_output=True, text=True)
    assert run.returncode == 2 and "unexpected argument 'klalign'" in run.stderr and "--package" in run.stderr


def test_no_packages_is_one_line(venv, tmp_path):
    run = align(venv, project=tmp_path)
    assert run.returncode == 2 and "cuda-variant-packages" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_uv_commands(venv, tmp_path):
    venv.start("torch==2.14.1+cu130", "klalign==1.2.0")
    dry = align(venv, "--package", "klalign", "--uv", "--dry-run", project=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert re.search(rf"\$ \S*uv pip uninstall --python {re.escape(str(venv.python))} klalign-cu12", dry.stdout)
    assert re.search(r"\$ \S*uv pip install --python \S+ --no-index --find-links \S+ klalign-cu13==1\.2\.0", dry.stdout)


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed here (the pip path is tested above)")
def test_uv_aligns_for_real(venv, tmp_path):
    venv.start("torch==2.14.1+cu130", "klalign==1.2.0")
    run = align(venv, "--package", "klalign", "--uv", project=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    have = venv.installed()
    assert have.get("klalign-cu13") == "1.2.0" and "klalign-cu12" not in have
