"""bench/ kept from rotting: its pieces on small real inputs, and every figure once at smoke size.

No timing is asserted anywhere: the benchmarks measure, the tests check that they run, what they
touched, and that their results are well-formed.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import gpu_ops
from bench.harness import BenchConfig, Series, copy_tracked_tree
from bench.memory import sample_while
from bench.run import FIGURES, config_from_args, parse_args
from bench.variants import MARK, VARIANT_TU, apply_vllm_style, torch_default_archs
from bench.workspace import edit_source
from buildtools.errors import KernloopError

REPO = Path(__file__).resolve().parents[2]


def tool(name: str) -> str:
    found = Path(sys.executable).parent / name
    return str(found) if found.exists() else (shutil.which(name) or pytest.skip(f"{name} not found"))


# -- pieces ------------------------------------------------------------------------------------


def test_series_statistics():
    s = Series("x", (3.0, 1.0, 2.0, 10.0))
    assert (s.median, s.low, s.high, s.n) == (2.5, 1.0, 10.0, 4)
    assert math.isnan(Series("empty", ()).median)


def test_edit_is_a_real_change_and_never_piles_up(tmp_path):
    path = tmp_path / "k.cu"
    path.write_text("__global__ void k() {}\n")
    edit_source(path, 1)
    first = path.read_text()
    edit_source(path, 2)
    second = path.read_text()
    assert first != second and "kBenchEdit2 = 2" in second and "kBenchEdit1" not in second
    assert second.startswith("__global__ void k() {}\n") and second.count("kernloop-bench edit") == 1


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    return copy_tracked_tree(tmp_path_factory.mktemp("bench-tree") / "src")


def test_variant_is_applied_to_a_copy_only(tree_copy, tmp_path):
    tree = tmp_path / "src"
    shutil.copytree(tree_copy, tree)
    before = hashlib.sha256((REPO / VARIANT_TU).read_bytes()).hexdigest()
    apply_vllm_style(tree)
    apply_vllm_style(tree)  # idempotent
    cu = (tree / VARIANT_TU).read_text()
    assert "#include <torch/all.h>" in cu and "#include <ATen/cuda/CUDAContext.h>" in cu
    assert "at::Tensor& out" in cu  # torch tensors in the launcher
    ops = (tree / "csrc" / "ops.cpp").read_text()
    assert ops.count("vllm_style::silu_and_mul(out, input);") == 1 and "cuda::silu_and_mul(" not in ops
    assert (tree / "CMakeLists.txt").read_text().count(MARK) == 1
    assert hashlib.sha256((REPO / VARIANT_TU).read_bytes()).hexdigest() == before


def test_variant_refuses_a_tree_it_does_not_recognise(tree_copy, tmp_path):
    tree = tmp_path / "src"
    shutil.copytree(tree_copy, tree)
    ops = tree / "csrc" / "ops.cpp"
    ops.write_text(ops.read_text().replace("cuda::silu_and_mul(", "cuda::silu_and_mul_v2("))
    with pytest.raises(KernloopError) as err:
        apply_vllm_style(tree)
    assert "ops.cpp" in err.value.one_line() and "bench/variants" in err.value.one_line()


def test_torch_default_archs_come_from_torchs_own_cmake():
    torch = pytest.importorskip("torch")
    archs = torch_default_archs(Path(tool("cmake")), Path(torch.__file__).parent, "13.0")
    assert "9.0" in archs and "8.0" in archs and len(archs) == len(set(archs))
    older = torch_default_archs(Path(tool("cmake")), Path(torch.__file__).parent, "11.8")
    assert "10.0" not in older and "10.0" in archs


def test_memory_sampler_sees_the_jobs_under_ninja(tmp_path):
    """A real ninja running two jobs that each hold 150 MiB for a moment."""
    hold = f"{sys.executable} -c 'x = bytearray(150 * 2**20); import time; time.sleep(1.5)'"
    (tmp_path / "build.ninja").write_text(textwrap.dedent(f"""\
        rule hold
          command = {hold} && touch $out
        build a: hold
        build b: hold
        """))
    result, peak, _ = sample_while(lambda: subprocess.run([tool("ninja"), "-j", "2"], cwd=tmp_path, check=True),
                                   interval=0.02, build_dir=tmp_path)
    assert result.returncode == 0
    assert peak.samples > 0 and peak.hwm_bytes >= peak.rss_bytes
    assert peak.rss_bytes >= 2 * 150 * 2**20  # both jobs at once
    assert peak.heaviest[1] >= 150 * 2**20


def test_memory_sampler_ignores_ninja_elsewhere(tmp_path):
    (tmp_path / "build.ninja").write_text(f"rule r\n  command = {sys.executable} -c 'import time; time.sleep(0.5)' "
                                          "&& touch $out\nbuild a: r\n")
    _, peak, _ = sample_while(lambda: subprocess.run([tool("ninja")], cwd=tmp_path, check=True),
                              interval=0.02, build_dir=tmp_path / "elsewhere")
    assert peak.samples == 0 and peak.rss_bytes == 0


def test_peak_bandwidth_from_device_properties():
    h100 = SimpleNamespace(memory_clock_rate=2_619_000, memory_bus_width=5120)  # kHz, bits
    assert gpu_ops.peak_bandwidth(h100) == pytest.approx(3.352e12, rel=1e-3)
    assert gpu_ops.peak_bandwidth(SimpleNamespace()) is None


def test_options():
    config, keys = config_from_args(parse_args([]))
    assert keys == list(FIGURES) and (config.runs, config.cold_runs, config.variant_runs) == (5, 2, 1)
    config, keys = config_from_args(parse_args(["--figures", "p2,P1", "--quick"]))
    assert keys == ["P2", "P1"] and config.quick and config.runs == 3  # run order, not the order given
    config, _ = config_from_args(parse_args(["--smoke", "--runs", "2"]))
    assert config.smoke and config.runs == 2 and config.arch == "9.0"
    for bad in (["--figures", "P99"], ["--ram-budget", "lots"]):
        with pytest.raises(KernloopError):
            config_from_args(parse_args(bad))


def test_options_default_config_matches_the_dataclass():
    config = config_from_args(parse_args([]))[0]
    default = BenchConfig()
    assert (config.runs, config.cold_runs, config.variant_runs, config.ram_budget) == \
        (default.runs, default.cold_runs, default.variant_runs, default.ram_budget)


@pytest.mark.integration
def test_gpu_ops_calls_are_valid_calls_of_the_ops(kernloop_module):
    """The GPU cases, run once on the CPU at a tiny size against the session build: a change to an
    op's signature or checks shows up here rather than on the next GPU machine."""
    import torch

    cases = gpu_ops.op_cases(kernloop_module, torch, "cpu", tokens=8, hidden=64)
    assert {name for name, *_ in cases} >= set(kernloop_module.available_ops()) - {"moe_align_block_size"}
    for name, shape, nbytes, call in cases:
        assert nbytes > 0 and shape, name
        call()


def test_gpu_ops_without_a_gpu_says_so(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: bench/gpu_ops.py measures instead of skipping")
    p = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_ops.py"), "--tree", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "skipped: no CUDA device" in p.stdout


# -- every figure once, at smoke size ----------------------------------------------------------------


def bench_marks_in_checkout() -> list[str]:
    """Traces a benchmark would leave if it ever edited the checkout instead of its copies (checked by
    content: other people may build or edit this checkout while the test runs)."""
    found = []
    if "kernloop-bench edit" in (REPO / VARIANT_TU).read_text():
        found.append(f"{VARIANT_TU} edited")
    if "vllm_style" in (REPO / "csrc" / "ops.cpp").read_text():
        found.append("csrc/ops.cpp patched")
    if MARK in (REPO / "CMakeLists.txt").read_text():
        found.append("CMakeLists.txt patched")
    return found


@pytest.mark.integration
def test_every_figure_runs_once_at_smoke_size(kernloop_build, tmp_path):
    """``--smoke``: arch 9.0 and the compiler cache the session build (tests/conftest.py) filled,
    one run each, cold builds of one small TU, no torch-heavy compile."""
    del kernloop_build  # only its warm compiler cache is reused
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_CUDA_ARCH_LIST", "MAX_JOBS", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--smoke", "--json", str(out),
                        "--workdir", str(tmp_path / "work")], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=1800, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    assert bench_marks_in_checkout() == []
    assert not any((tmp_path / "work").iterdir())  # temp trees removed

    data = json.loads(out.read_text())
    assert set(data["machine"]) >= {"cores", "ram", "nvcc", "torch", "gpu"}
    figures = {f["key"]: f for f in data["figures"]}
    assert list(figures) == list(FIGURES)
    for key in ("P1", "P2", "P3", "P4", "P5", "P6"):
        fig = figures[key]
        assert not fig["skipped"], key
        assert fig["series"] and fig["ratios"], key
        for s in fig["series"]:
            assert s["n"] >= 1 and all(v > 0 and math.isfinite(v) for v in s["values"]), (key, s)
        assert all(t["met"] is None for t in fig["targets"]), key  # smoke size gives no verdicts
        assert key in p.stdout
    labels = [s["label"] for s in figures["P1"]["series"]]
    assert any("physical limit" in label for label in labels) and any("pip" in label for label in labels)
    assert figures["P5"]["series"][2]["values"] == [1.5]  # the budget, GiB
    if "none" in data["machine"]["gpu"].lower():
        assert figures["GPU"]["skipped"].startswith("skipped: no CUDA device")
    p9 = figures["P9"]  # needs a loopback sccache-dist cluster: skipped, saying why, where none can run
    if p9["skipped"]:
        assert p9["skipped"].startswith("skipped: this machine cannot host a sccache-dist cluster"), p9["skipped"]
    else:
        assert len(p9["series"]) >= 4 and all(s["values"] for s in p9["series"])
        assert [t["goal"].split(":")[0] for t in p9["targets"]] == ["K=2", "K=8", "K=16", "K=64", "K=256"]
        assert any("simulation" in n for n in p9["notes"]) and all(t["met"] is None for t in p9["targets"])
    assert "target [" in p.stdout and "total wall time" in p.stdout


# -- P9's projection (a simulation) ----------------------------------------------------------------


def test_projection_list_scheduling_and_its_bounds():
    from bench.projection import Task, critical_path, project, simulate

    tasks = [Task(f"t{i}.o", s) for i, s in enumerate((8.0, 4.0, 4.0, 2.0, 2.0))]
    tasks += [Task("_C.so", 1.0, ("t0.o", "t1.o", "t2.o"), local=True), Task("_moe_C.so", 1.0, ("t3.o", "t4.o"), local=True)]
    assert critical_path(tasks) == 9.0
    assert simulate(tasks, 1) == 21.0  # all 20 s of compiles in a row, then the last link
    assert simulate(tasks, 2) == 11.0  # 8 | 4+4+2 -> 10, then the links one after the other
    assert simulate(tasks, 64) == 9.0 == critical_path(tasks)  # the critical path, nothing waits
    assert simulate(tasks, 64, overhead_s=0.5) == 9.5
    rows = project(tasks, overhead_s=0.0, configure_s=3.0, ks=(2, 64))
    assert [(p.k, p.total_s, p.bound_s) for p in rows] == [(2, 14.0, 10.0), (64, 12.0, 9.0)]
    assert all(p.met for p in rows) and rows[0].goal_s == 15.0


def test_projection_reads_a_real_ninja_log(kernloop_build):
    from bench.projection import project, tasks_from_build

    assert kernloop_build.build_dir is not None
    tasks = tasks_from_build(kernloop_build.build_dir, tool("ninja"))
    links = [t for t in tasks if t.local and t.name.endswith(".so")]
    assert links and all(t.deps for t in links), links
    assert all(d in {t.name for t in tasks} for t in links for d in t.deps)
    (row,) = project(tasks, overhead_s=0.3, configure_s=1.0, ks=(8,))
    assert row.simulated_s >= row.critical_path_s > 0
