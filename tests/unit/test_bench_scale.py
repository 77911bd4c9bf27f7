"""bench/scale.py: the tree generator (pure, nothing built), its options, and one smoke run.

No timing is asserted: the smoke run checks that every measurement exists for every N and that a
tree of N TUs really compiles N.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness import copy_tracked_tree
from bench.scale import MEASUREMENTS, growth, main, parse_args, parse_sizes
from bench.scale_tree import GLUE_DIR, MARK, REAL_TUS, TEMPLATES, generate, plan_tus
from buildtools.cmake import ninja
from buildtools.errors import KernloopError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    return copy_tracked_tree(tmp_path_factory.mktemp("scale-tree") / "src")


@pytest.mark.parametrize("n", [14, 15, 17, 20, 21, 100, 400])
def test_plan_adds_exactly_the_tus_that_make_n(n):
    tus = plan_tus(n)
    assert len(tus) == n - REAL_TUS
    assert len({t.path for t in tus}) == len(tus)
    glue = [t for t in tus if t.template is None]
    assert len(glue) <= 2 and {t.module for t in glue} <= {t.module for t in tus if t.template}


def test_plan_refuses_fewer_than_the_real_tree():
    with pytest.raises(KernloopError) as err:
        plan_tus(REAL_TUS - 1)
    assert f">= {REAL_TUS}" in err.value.one_line()


def test_generated_tree_has_distinct_symbols_and_lists_every_tu(tree_copy, tmp_path):
    root = tmp_path / "src"
    shutil.copytree(tree_copy, root)
    before = (REPO / "CMakeLists.txt").read_text()
    tree = generate(root, 60)
    assert tree.n == 60 and len(tree.generated) == 60 - REAL_TUS
    namespaces, kernels = [], []
    for tu in tree.generated:
        text = (root / tu.path).read_text()
        if tu.template is None:
            assert "#include" not in text  # light glue: no torch, no headers at all
            continue
        namespaces += re.findall(r"^namespace (kernloop(?:::\w+)+) \{", text, re.M)[:1]
        kernels += re.findall(r"\b(\w+_kernel_s\d+)\b", text)
        assert f"anchor_{tu.index}()" in text and not re.search(r"#include\s*<(torch|ATen)", text)
        if tu.cuda:
            assert not re.search(r"\b\w+_kernel\b", text)  # every kernel renamed
    assert len(namespaces) == len(set(namespaces)) == len([t for t in tree.generated if t.template])
    assert {int(k.rsplit("_s", 1)[1]) for k in kernels} >= {t.index for t in tree.generated if t.cuda}
    listing = (root / GLUE_DIR / "sources.cmake").read_text()
    for tu in tree.generated:
        listed = re.findall(re.escape(f"/{tu.path}") + r"[\n)]", listing)
        assert len(listed) == (1 if tu.cuda else 2), tu  # C++: its module's sources and TORCH_FREE
    assert "kernloop_set_cuda_archs(_C " in listing and "kernloop_set_cuda_archs(_moe_C " in listing
    cmakelists = (root / "CMakeLists.txt").read_text()
    assert cmakelists.count(MARK) == 1 and "${KERNLOOP_SCALE_TORCH_FREE}" in cmakelists
    generate(root, 60)  # again: the patch is not applied twice
    assert (root / "CMakeLists.txt").read_text().count(MARK) == 1
    assert (REPO / "CMakeLists.txt").read_text() == before and not (REPO / GLUE_DIR).exists()
    assert {t for t, _ in TEMPLATES} <= {tu.template for tu in tree.generated}


def test_real_size_leaves_the_tree_as_it_is(tree_copy, tmp_path):
    root = tmp_path / "src"
    shutil.copytree(tree_copy, root)
    tree = generate(root, REAL_TUS)
    assert tree.generated == () and tree.edit_tu == "csrc/cuda/activation_kernels.cu"
    assert (root / "CMakeLists.txt").read_text() == (tree_copy / "CMakeLists.txt").read_text()


def test_sizes_and_bad_input(capsys):
    assert parse_sizes("400, 14,100,14", smoke=False) == (14, 100, 400)
    assert parse_args([]).sizes == (14, 100, 400) and parse_args([]).runs == 3
    smoke = parse_args(["--smoke"])
    assert smoke.sizes == (14, 20) and smoke.runs == 1
    for bad in ("0,abc", "13", "", "14,x"):
        with pytest.raises(KernloopError):
            parse_sizes(bad, smoke=False)
    with pytest.raises(KernloopError):
        parse_sizes("14,100", smoke=True)
    assert main(["--sizes", "0,abc"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --sizes 0,abc")


def test_growth_is_the_least_squares_slope_per_100():
    assert growth([(14, 1.0), (114, 2.0)]) == pytest.approx(1.0)
    assert growth([(0, 0.0), (100, 1.0), (200, 2.0)]) == pytest.approx(1.0)
    assert growth([(0, 0.0), (100, 3.0), (200, 0.0)]) == pytest.approx(0.0)
    assert math.isnan(growth([(14, 1.0)]))


@pytest.mark.integration
def test_scale_runs_once_at_smoke_size(kernloop_build, tmp_path):
    """``--smoke`` (sizes 14 and 20, one run each) with the compiler cache the session build
    (tests/conftest.py) filled; every measurement for every N, N TUs compiled per tree."""
    del kernloop_build  # only its warm compiler cache is reused
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_CUDA_ARCH_LIST", "MAX_JOBS", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    out, work = tmp_path / "scale.json", tmp_path / "work"
    p = subprocess.run([sys.executable, str(REPO / "bench" / "scale.py"), "--smoke", "--json", str(out),
                        "--workdir", str(work), "--keep"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=900, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    assert not (REPO / GLUE_DIR).exists() and MARK not in (REPO / "CMakeLists.txt").read_text()

    data = json.loads(out.read_text())
    assert [m["n"] for m in data["sizes"]] == [14, 20] and data["config"]["smoke"]
    for m in data["sizes"]:
        for key in MEASUREMENTS:
            s = m[key]
            assert s["n"] >= 1 and all(math.isfinite(v) and v > 0 for v in s["values"]), (m["n"], key, s)
        assert m["compiled"] == m["n"] and m["generated"] == m["n"] - REAL_TUS
        assert m["imported"].startswith(str(work)) and m["imported"].endswith(".so")  # import kernloop worked
        assert set(m["ratios"]) == {"noop_ratio", "edit_ratio", "explain_cost_s"}
    assert {row["key"] for row in data["growth"]} >= set(MEASUREMENTS)
    assert all(t["met"] is None for t in data["targets"]) and len(data["targets"]) == 2
    # Independently of the summary: each tree's ninja log holds N distinct object files.
    (run_dir,) = work.iterdir()
    for m in data["sizes"]:
        (tree,) = run_dir.glob(f"*-n{m['n']}/src")
        objects = [o for o in ninja.read_log(tree / "cmake-build-release" / ".ninja_log") if o.endswith(".o")]
        assert len(objects) == m["n"], objects
    assert "growth per 100 TUs" in p.stdout and "target [not measured]" in p.stdout
