#!/usr/bin/env python3
"""kernloop's benchmarks, side by side in one run: ``python bench/run.py``.

Figures (see docs/benchmarks.md and each module's docstring):

  P1  edit one kernel .cu -> importable: buildtools build vs the critical path vs pip -e vs vLLM-style
  P1g edit the torch glue csrc/ops.cpp: precompiled torch headers vs KERNLOOP_PCH=OFF
  P2  no-op build: buildtools build vs plain cmake --build vs a pip editable re-run
  PG  import kernloop's stale check: its cost per import
  P3  cold full build: the kernloop plan vs a naive one
  P4  build after deleting the build dir with a warm compiler cache vs cold
  P5  peak RSS of concurrent compiles under a lowered RAM budget vs that budget
  P6  presets generation vs python -c "import torch"
  P9  cold build local vs distributed (sccache-dist on loopback), per-TU overhead, projection to K CPUs
  GPU the ops' achieved bandwidth vs the device's peak (skipped without a GPU)

Everything runs on temporary copies of the tracked tree; the checkout is never built or edited.
Progress goes to stderr, the report to stdout.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import gpu_ops, p1_edit, p1g_glue, p2_noop, p3_cold, p4_warm_cache, p5_memory, p6_presets, p9_distributed, pg_guard  # noqa: E402
from bench.harness import BenchConfig, Figure, Progress  # noqa: E402
from bench.report import machine_from_facts, render_figure, render_text, to_json  # noqa: E402
from bench.workspace import Workspace  # noqa: E402
from buildtools.cli.main import positive_int  # noqa: E402
from buildtools.errors import EXIT_USER_ERROR, KernloopError  # noqa: E402
from buildtools.settings import Overrides  # noqa: E402

__all__ = ["FIGURES", "parse_args", "config_from_args", "main"]

# Run order: P3 before P4 (P4's "cold" is P3's runs); P1 and P3 share the naive tree's cold build.
FIGURES: dict[str, ModuleType] = {m.KEY: m for m in (p6_presets, p2_noop, p1_edit, p1g_glue, pg_guard, p3_cold,
                                                        p4_warm_cache, p5_memory, p9_distributed, gpu_ops)}
SMOKE_ARCH = "9.0"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--figures", default=",".join(FIGURES), metavar="P1,P2,...",
                   help=f"which figures, comma-separated (default: all: {','.join(FIGURES)})")
    p.add_argument("--runs", type=positive_int, help="runs of each cheap measurement (default 5; --quick 3)")
    p.add_argument("--cold-runs", type=positive_int, help="full cold builds for P3 (kernloop) and P5 (default 2; --quick 1)")
    p.add_argument("--variant-runs", type=positive_int, default=1,
                   help="builds of the torch-heavy vLLM-style TU for P1 and P3 (default 1: each takes minutes)")
    p.add_argument("--quick", action="store_true",
                   help="the vLLM-style TU for one arch (9.0) instead of torch's default list; fewer runs")
    p.add_argument("--smoke", action="store_true",
                   help="tiny size for the smoke test: one run each, arch 9.0, the caller's compiler cache for "
                        "setup, cold builds of one small TU, no torch-heavy compile. Not for numbers")
    p.add_argument("--arch", metavar="LIST", help="TORCH_CUDA_ARCH_LIST for the kernloop builds (default: the plan's)")
    p.add_argument("--ram-budget", default="1.5G", metavar="SIZE",
                   help="P5's lowered RAM budget, fed to the planner as KERNLOOP_RAM_BUDGET (default 1.5G)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    p.add_argument("--workdir", type=Path, metavar="DIR", help="where the temporary trees go (default: the temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temporary trees")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> tuple[BenchConfig, list[str]]:
    by_upper = {k.upper(): k for k in FIGURES}
    keys = [by_upper.get(k.strip().upper(), k.strip().upper()) for k in args.figures.split(",") if k.strip()]
    unknown = [k for k in keys if k not in FIGURES]
    if unknown or not keys:
        raise KernloopError(f"--figures {args.figures}: unknown figure(s) {', '.join(unknown) or '(none given)'}",
                            f"choose from {','.join(FIGURES)}")
    Overrides.from_sources(ram_budget=args.ram_budget)  # a bad size fails now, not after an hour
    quick, smoke = args.quick, args.smoke
    runs = args.runs or (1 if smoke else 3 if quick else 5)
    cold = args.cold_runs or (1 if smoke or quick else 2)
    config = BenchConfig(runs=runs, cold_runs=cold, variant_runs=1 if smoke else args.variant_runs, quick=quick,
                         smoke=smoke, arch=args.arch or (SMOKE_ARCH if smoke else None), ram_budget=args.ram_budget,
                         workdir=args.workdir.resolve() if args.workdir else None, keep=args.keep)
    return config, [k for k in FIGURES if k in keys]


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        config, keys = config_from_args(args)
    except KernloopError as exc:
        print(exc.one_line(), file=sys.stderr)
        return EXIT_USER_ERROR
    log = Progress()
    start = time.monotonic()
    ws = Workspace(config, log)
    figures: list[Figure] = []
    try:
        log(f"work directory {ws.root}; figures {','.join(keys)}")
        machine = machine_from_facts(ws.plan_json()["facts"])
        for line in machine.lines():
            log(line)
        for key in keys:
            log(f"--- {key}: {FIGURES[key].TITLE}")
            load_before = os.getloadavg()[0]
            fig = FIGURES[key].run(ws)
            if not fig.skipped:  # other people's work on a shared machine shows up here
                fig = dataclasses.replace(fig, notes=fig.notes + (
                    f"load average (1 min) {load_before:.2f} when the figure started, {os.getloadavg()[0]:.2f} "
                    "when it ended",))
            if config.smoke:  # tiny sizes measure nothing worth a verdict
                fig = dataclasses.replace(fig, targets=tuple(
                    dataclasses.replace(t, met=None, reason="--smoke: tiny size, not a measurement")
                    for t in fig.targets))
            figures.append(fig)
            for line in render_figure(fig):
                log(line)
    except KernloopError as exc:
        print(exc.one_line() if "\n" not in exc.message else f"error: {exc.message}\n-- {exc.hint}", file=sys.stderr)
        ws.close()
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        ws.close()
        return 130
    ws.close()
    elapsed = time.monotonic() - start
    machine = dataclasses.replace(machine, load_end="/".join(f"{x:.2f}" for x in os.getloadavg()))
    print(render_text(machine, config, figures, elapsed))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(to_json(machine, config, figures, elapsed), indent=1))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
