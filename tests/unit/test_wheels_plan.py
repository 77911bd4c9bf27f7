"""``wheels align`` planning: which CUDA variants go, which one comes, and the commands (pure)."""
from __future__ import annotations

from pathlib import Path

import pytest

from buildtools.errors import KernloopError
from buildtools.torchenv.wheels import (
    PackageRequest,
    align_commands,
    configured_packages,
    parse_package_arg,
    plan_align,
)

NIXL = PackageRequest("nixl")
PY = Path("/venv/bin/python")


def test_cuda13_torch_swaps_cu12_for_cu13_at_the_meta_version():
    dists = {"nixl": "0.7.1", "nixl-cu12": "0.7.1", "torch": "2.14.1"}
    plan = plan_align([NIXL], dists, "2.14.1+cu130", "13.0", None)
    (pkg,) = plan.packages
    assert pkg.uninstall == ("nixl-cu12",) and pkg.install == ("nixl-cu13==0.7.1",)
    assert "CUDA 13" in pkg.message and "remove nixl-cu12 0.7.1" in pkg.message and plan.ok


def test_cuda12_torch_keeps_cu12_and_removes_cu13():
    dists = {"nixl": "0.7.1", "nixl-cu12": "0.7.1", "nixl-cu13": "0.7.1"}
    plan = plan_align([NIXL], dists, "2.9.1+cu128", "12.8", None)
    assert plan.uninstall == ("nixl-cu13",) and plan.install == ()
    assert "keep nixl-cu12 0.7.1" in plan.packages[0].message


def test_matching_variant_at_another_version_is_reinstalled_at_the_meta_version():
    plan = plan_align([NIXL], {"nixl": "0.7.1", "nixl-cu13": "0.6.0"}, "2.14.1", "13.0", None)
    assert plan.install == ("nixl-cu13==0.7.1",) and plan.uninstall == ()
    assert "replacing 0.6.0" in plan.packages[0].message


def test_aligned_is_nothing_to_do():
    plan = plan_align([NIXL], {"nixl": "0.7.1", "nixl-cu13": "0.7.1"}, "2.14.1", "13.0", None)
    assert plan.install == plan.uninstall == ()
    assert "nothing to do" in plan.packages[0].message


@pytest.mark.parametrize("cuda,hip,kind", [(None, None, "a CPU build"), (None, "6.4.4", "a ROCm build (HIP 6.4.4)")])
def test_cpu_or_rocm_torch_removes_every_variant_unless_keep(cuda, hip, kind):
    dists = {"nixl": "0.7.1", "nixl-cu12": "0.7.1", "nixl_cu13": "0.7.1"}
    plan = plan_align([NIXL], dists, "2.13.0+cpu", cuda, hip)
    assert set(plan.uninstall) == {"nixl-cu12", "nixl-cu13"} and plan.install == ()
    assert kind in plan.packages[0].message and "--keep" in plan.packages[0].message
    kept = plan_align([NIXL], dists, "2.13.0+cpu", cuda, hip, keep=True)
    assert kept.uninstall == () and "keeping" in kept.packages[0].message and kept.ok


def test_not_installed_and_missing_meta():
    plan = plan_align([NIXL], {"torch": "2.14.1"}, "2.14.1", "13.0", None)
    assert "not installed; nothing to align" in plan.packages[0].message and plan.ok
    plan = plan_align([NIXL], {"nixl-cu12": "0.7.1"}, "2.14.1", "13.0", None)
    assert not plan.ok and plan.install == plan.uninstall == ()
    assert "--package nixl==VERSION" in plan.packages[0].message
    pinned = plan_align([PackageRequest("nixl", "0.7.1")], {"nixl-cu12": "0.7.1"}, "2.14.1", "13.0", None)
    assert pinned.install == ("nixl-cu13==0.7.1",) and pinned.uninstall == ("nixl-cu12",)


def test_variant_names_do_not_match_other_packages():
    dists = {"nixl": "0.7.1", "nixl-cu12": "0.7.1", "nixlx-cu12": "1.0", "nixl-cuda12": "1.0"}
    plan = plan_align([NIXL], dists, "2.14.1", "13.0", None)
    assert plan.uninstall == ("nixl-cu12",)


def test_commands_uninstall_before_install():
    plan = plan_align([NIXL], {"nixl": "0.7.1", "nixl-cu12": "0.7.1"}, "2.14.1", "13.0", None)
    assert align_commands(plan, PY, extra=["--no-index"]) == [
        [str(PY), "-m", "pip", "uninstall", "-y", "nixl-cu12"],
        [str(PY), "-m", "pip", "install", "--no-index", "nixl-cu13==0.7.1"],
    ]
    assert align_commands(plan, PY, uv="/bin/uv") == [
        ["/bin/uv", "pip", "uninstall", "--python", str(PY), "nixl-cu12"],
        ["/bin/uv", "pip", "install", "--python", str(PY), "nixl-cu13==0.7.1"],
    ]


@pytest.mark.parametrize("text,req", [("nixl", NIXL), ("Nixl_Pkg==1.2", PackageRequest("nixl-pkg", "1.2"))])
def test_parse_package_arg(text, req):
    assert parse_package_arg(text) == req


@pytest.mark.parametrize("bad", ["nixl-cu12", "", "nixl==x.y", "a b"])
def test_bad_package_args(bad):
    with pytest.raises(KernloopError):
        parse_package_arg(bad)


def test_configured_packages(tmp_path):
    assert configured_packages(tmp_path) == []
    (tmp_path / "pyproject.toml").write_text('[tool.buildtools]\ncuda-variant-packages = ["nixl", "deep_ep"]\n')
    assert configured_packages(tmp_path) == ["nixl", "deep_ep"]
    (tmp_path / "pyproject.toml").write_text('[tool.buildtools]\ncuda-variant-packages = "nixl"\n')
    with pytest.raises(KernloopError, match="must be a list"):
        configured_packages(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.buildtools\n")
    with pytest.raises(KernloopError, match="invalid TOML"):
        configured_packages(tmp_path)
