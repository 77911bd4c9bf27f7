"""RAM per job learned from real compiles, under a tight KERNLOOP_RAM_BUDGET.

Two synthetic heavy TUs (a constexpr table g++ evaluates in ~1.5 GiB) join the loop fixture. The
first build plans with the built-in figure (1.25 GiB per C++ job: 2 jobs under a 2.6 GiB budget,
so both heavies may run at once, ~3 GiB); it records each TU's peak. The next build replans from
what was measured (one job) and, sampled from /proc while it runs, stays under the budget.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from _loop import build, copy_fixture, have_build_tools, loop_env
from bench.memory import sample_while
from buildtools.cache import peaks
from buildtools.model import GIB
from buildtools.settings import Overrides

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not have_build_tools(), reason="needs cmake, ninja and ccache"),
              pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores (a 2-job plan to cut)")]

BUDGET = "2.6G"
HEAVY = """\
// Synthetic heavy TU: g++ holds the constexpr evaluation of this table (~1.5 GiB), then drops it.
constexpr int kN = 10000000;
struct Table {{ int v[kN]; }};
constexpr Table make() {{ Table t{{}}; for (int i = 0; i < kN; ++i) t.v[i] = (i * {seed}) % 13; return t; }}
constexpr Table table = make();
int heavy_{name}() {{ return table.v[kN - 1]; }}
"""
HEAVY_FLAGS = "-fconstexpr-loop-limit=100000000;-fconstexpr-ops-limit=1000000000"


def _write_heavies(src: Path, seed: int) -> None:
    for name in ("a", "b"):
        (src / "csrc" / f"heavy_{name}.cpp").write_text(HEAVY.format(name=name, seed=seed))


def _jobs(src: Path) -> int:
    doc = json.loads((src / "CMakeUserPresets.json").read_text())
    return next(p["jobs"] for p in doc["buildPresets"] if p["name"] == "release")


def test_the_next_plan_bounds_jobs_by_the_measured_peaks(tmp_path):
    src = copy_fixture(tmp_path / "src")
    _write_heavies(src, 7)
    with (src / "CMakeLists.txt").open("a") as fh:
        fh.write("target_sources(_fx PRIVATE csrc/heavy_a.cpp csrc/heavy_b.cpp)\n"
                 f'set_source_files_properties(csrc/heavy_a.cpp csrc/heavy_b.cpp PROPERTIES COMPILE_OPTIONS "{HEAVY_FLAGS}")\n')
    env = loop_env(tmp_path / "ccache", KERNLOOP_RAM_BUDGET=BUDGET)
    budget = Overrides.from_sources(env={}, ram_budget=BUDGET).ram_budget.value

    rc, summary, err = build(src, env)
    assert rc == 0, err
    assert _jobs(src) == 2  # the built-in 1.25 GiB per C++ job: 2.6 / 1.25
    assert summary["steps"]["memory"].startswith("peak RSS of 4 compiles recorded (C++ TU p95 "), summary["steps"]
    by_source = peaks.read_record(src / "cmake-build-release")
    heavy = [p.peak_kib * 1024 for s, p in by_source.items() if "heavy_" in s]
    assert len(heavy) == 2 and str(src / "csrc" / "fx.cpp") in by_source
    assert sum(heavy) > budget  # two at once would not fit: the first plan's 2 jobs could exceed it
    [cxx] = [n for n in peaks.learned(src) if n.kind == "CXX"]
    assert cxx.gib * GIB >= max(heavy) * peaks.HEADROOM - 1  # percentile of 3 TUs = the heaviest, plus headroom

    _write_heavies(src, 11)  # new sources: real compiles again, not cache hits
    (rc, summary, err), sampled, _ = sample_while(lambda: build(src, env), interval=0.05,
                                                 build_dir=src / "cmake-build-release")
    assert rc == 0, err
    assert "measured RAM per job rose: C++ TU 1.25 ->" in summary["steps"]["presets"], summary["steps"]
    assert _jobs(src) == 1  # 2.6 GiB / the learned figure
    assert sum("heavy_" in str(entry) for entry in summary["ran"]) == 2, summary["ran"]
    assert sampled.samples > 0
    assert sampled.hwm_bytes <= budget, f"summed peaks {sampled.hwm_bytes / GIB:.2f} GiB over the {BUDGET} budget"
    assert sampled.heaviest[1] >= 0.5 * GIB  # the sampler saw a heavy compile: the check is not vacuous

    rc, summary, err = build(src, env)  # learned figures steady: no replan, nothing to do
    assert rc == 0, err
    assert summary["steps"]["presets"] == "up to date" and "memory" not in summary["steps"], summary["steps"]
