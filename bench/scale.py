#!/usr/bin/env python3
"""How the orchestrator's cost grows with the tree: ``python bench/scale.py``.

For each N in --sizes, a temporary copy of the tracked tree is grown to N compiled TUs (N=14 is
the real tree; every TU added is a torch-free copy of a real kernel, or a light glue TU: see
bench/scale_tree.py), and on it, side by side, the medians of --runs runs of:

  presets      python tools/generate_presets.py --force-overwrite (as P6)
  cold build   python -m buildtools build with an empty compiler cache, TORCH_CUDA_ARCH_LIST=9.0:
               wall and CPU-seconds (user+sys of every process it ran); --cold-runs runs (default 1)
  no-op        python -m buildtools build vs cmake --build --preset release --target install,
               alternating (as P2); and build --explain in the same rotation
  edit         one generated .cu edited -> buildtools build, vs that TU's compile + link +
               install copy alone (as P1's physical limit)
  guard        import kernloop's stale check (as PG)
  summary      the build summary over the full ninja log, in this process
  watch        python -m buildtools watch: from the save to its 'changed:' line (the build start)

Then a growth table: the least-squares slope of each median over N, per 100 TUs (with two sizes,
the slope between the endpoints). Goals, judged at full size only: no-op build <= 1.3x plain
cmake --build at N=400, the edit <= 1.2x its TU alone at every N.

--smoke: sizes 14,20, one run each, the caller's compiler cache for the "cold" builds (labelled:
not a cold build then), no verdicts. Everything runs in a temporary directory, never in the
checkout. Progress goes to stderr, the report to stdout.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import BenchConfig, Progress, Series, Target, copy_tracked_tree, timed  # noqa: E402
from bench.report import machine_from_facts  # noqa: E402
from bench.scale_measure import measure_tree  # noqa: E402
from bench.scale_tree import REAL_TUS, generate  # noqa: E402
from bench.workspace import Workspace  # noqa: E402
from buildtools.cli.main import positive_int  # noqa: E402
from buildtools.errors import EXIT_USER_ERROR, KernloopError  # noqa: E402

__all__ = ["MEASUREMENTS", "parse_args", "parse_sizes", "growth", "main"]

DEFAULT_SIZES = (14, 100, 400)
SMOKE_SIZES = (14, 20)
SMOKE_MAX = 20
ARCH = "9.0"
GOAL_NOOP = (1.3, 400)  # x plain cmake --build, at this N
GOAL_EDIT = 1.2  # x the TU's compile + link + install alone, at every N
MEASUREMENTS = ("presets", "cold_wall", "cold_cpu", "noop_build", "noop_cmake", "noop_explain", "edit_build",
                "edit_alone", "guard", "summary", "watch")
SHORT = {"presets": "presets generation", "cold_wall": "cold build, wall", "cold_cpu": "cold build, CPU",
         "noop_build": "no-op buildtools build", "noop_cmake": "no-op cmake --build --preset",
         "noop_explain": "no-op buildtools build --explain", "edit_build": "edit: buildtools build",
         "edit_alone": "edit: TU + link + install alone", "guard": "import guard", "summary": "build summary",
         "watch": "watch: save -> build start", "noop_ratio": "no-op ratio buildtools / cmake",
         "edit_ratio": "edit ratio buildtools / alone", "explain_cost_s": "--explain cost on a no-op"}


def parse_sizes(text: str, smoke: bool) -> tuple[int, ...]:
    """``14,100,400`` -> (14, 100, 400), sorted, once each; a KernloopError naming a bad entry."""
    sizes = []
    for item in (s.strip() for s in text.split(",")):
        if not item.isdigit() or int(item) < REAL_TUS:
            raise KernloopError(f"--sizes {text}: {item!r} is not a whole number >= {REAL_TUS} "
                                f"(the real tree compiles {REAL_TUS} TUs)", "e.g. --sizes 14,100,400")
        sizes.append(int(item))
    if smoke and max(sizes) > SMOKE_MAX:
        raise KernloopError(f"--smoke: sizes up to {SMOKE_MAX}, not {max(sizes)}", "drop --smoke for larger N")
    return tuple(sorted(set(sizes)))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python bench/scale.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--sizes", metavar="N,N,...",
                   help=f"compiled TUs of each tree (default {','.join(map(str, DEFAULT_SIZES))}; "
                        f"--smoke {','.join(map(str, SMOKE_SIZES))}); each >= {REAL_TUS}")
    p.add_argument("--smoke", action="store_true", help=f"tiny sizes (<= {SMOKE_MAX}), one run each, the caller's "
                   "compiler cache; for the test, not for numbers")
    p.add_argument("--runs", type=positive_int, help="runs of each measurement (default 3; --smoke 1)")
    p.add_argument("--cold-runs", type=positive_int, default=1,
                   help="cold builds per N (default 1: each is minutes at N=400)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    p.add_argument("--workdir", type=Path, metavar="DIR", help="where the temporary trees go (default: the temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temporary trees")
    args = p.parse_args(argv)
    args.sizes = parse_sizes(args.sizes or ",".join(map(str, SMOKE_SIZES if args.smoke else DEFAULT_SIZES)),
                             args.smoke)
    args.runs = args.runs or (1 if args.smoke else 3)
    return args


def growth(points: Sequence[tuple[int, float]]) -> float:
    """Least-squares slope of value over N, per 100 TUs (two points: the slope between them)."""
    pts = [(n, v) for n, v in points if v == v]
    if len(pts) < 2:
        return float("nan")
    mx = sum(n for n, _ in pts) / len(pts)
    my = sum(v for _, v in pts) / len(pts)
    sxx = sum((n - mx) ** 2 for n, _ in pts)
    return 100 * sum((n - mx) * (v - my) for n, v in pts) / sxx if sxx else float("nan")


def _derived(m: dict[str, Any]) -> dict[str, float]:
    return {"noop_ratio": m["noop_build"].median / m["noop_cmake"].median,
            "edit_ratio": m["edit_build"].median / m["edit_alone"].median,
            "explain_cost_s": m["noop_explain"].median - m["noop_build"].median}


def _num(v: float, unit: str) -> str:
    if v != v:
        return "-"
    return f"{v:.3f}" if abs(v) < 1 and unit in ("s", "cpu-s") else f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"


def _size_lines(m: dict[str, Any]) -> list[str]:
    d = _derived(m)
    lines = [f"N={m['n']}: {m['compiled']} TUs compiled ({m['generated']} generated; edit TU {m['edit_tu']}); "
             f"load {m['load']}"]
    width = max(len(m[k].label) for k in MEASUREMENTS)
    for key in MEASUREMENTS:
        s: Series = m[key]
        spread = f"{_num(s.low, s.unit)}–{_num(s.high, s.unit)}" if s.n > 1 else "(1 run)"
        lines.append(f"  {s.label:<{width}} {_num(s.median, s.unit):>8} {s.unit:<5} {spread:>15}  n={s.n}")
    lines.append(f"  no-op buildtools / cmake = {d['noop_ratio']:.2f}x; edit buildtools / alone = "
                 f"{d['edit_ratio']:.2f}x; --explain costs {d['explain_cost_s'] * 1000:+.0f} ms on a no-op")
    return lines


def _growth_rows(sizes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for key in MEASUREMENTS:
        s0: Series = sizes[0][key]
        pts = [(m["n"], m[key].median) for m in sizes]
        rows.append({"key": key, "label": SHORT[key], "unit": s0.unit,
                     "medians": {str(n): v for n, v in pts}, "per_100_tus": growth(pts)})
    for key, unit in (("noop_ratio", "x"), ("edit_ratio", "x"), ("explain_cost_s", "s")):
        pts = [(m["n"], _derived(m)[key]) for m in sizes]
        rows.append({"key": key, "label": SHORT[key], "unit": unit, "medians": {str(n): v for n, v in pts},
                     "per_100_tus": growth(pts)})
    return rows


def _targets(sizes: list[dict[str, Any]], smoke: bool) -> list[Target]:
    factor, at = GOAL_NOOP
    noop_goal = f"no-op buildtools build <= {factor}x cmake --build --preset at N={at}"
    edit_goal = f"edit -> buildtools build <= {GOAL_EDIT}x that TU's compile + link + install alone, every N"
    ratios = {m["n"]: _derived(m) for m in sizes}
    if smoke:
        why = "--smoke: tiny sizes, not a measurement"
        return [Target(noop_goal, "not measured", None, why), Target(edit_goal, "not measured", None, why)]
    if at in ratios:
        r = ratios[at]["noop_ratio"]
        noop = Target(noop_goal, f"{r:.2f}x", r <= factor, "" if r <= factor else "see the no-op rows")
    else:
        noop = Target(noop_goal, "not measured", None, f"N={at} not in --sizes")
    worst = max(ratios, key=lambda n: ratios[n]["edit_ratio"])
    r = ratios[worst]["edit_ratio"]
    each = ", ".join(f"N={n} {v['edit_ratio']:.2f}x" for n, v in ratios.items())
    edit = Target(edit_goal, each, r <= GOAL_EDIT, "" if r <= GOAL_EDIT else f"worst at N={worst}")
    return [noop, edit]


def render(machine_lines: list[str], args: argparse.Namespace, sizes: list[dict[str, Any]],
           targets: list[Target], elapsed: float) -> str:
    out = ["kernloop scale benchmark (median of n runs, min–max)", *machine_lines,
           f"settings: sizes {','.join(map(str, args.sizes))}, runs {args.runs}, cold runs {args.cold_runs}, "
           f"TORCH_CUDA_ARCH_LIST={ARCH}, smoke {'yes' if args.smoke else 'no'}", ""]
    for m in sizes:
        out += _size_lines(m) + [""]
    ns = [m["n"] for m in sizes]
    method = ("needs two sizes or more" if len(ns) < 2 else "between the endpoints" if len(ns) == 2
              else f"least-squares slope over N={','.join(map(str, ns))}")
    out.append(f"growth per 100 TUs ({method} of the medians)")
    out.append(f"  {'what':<44} " + " ".join(f"{'N=' + str(n):>9}" for n in ns) + f" {'per 100':>9}")
    for row in _growth_rows(sizes):
        cells = " ".join(f"{_num(v, row['unit']):>9}" for v in row["medians"].values())
        out.append(f"  {row['label'] + ' [' + row['unit'] + ']':<44} {cells} {_num(row['per_100_tus'], row['unit']):>9}")
    out.append("")
    for t in targets:
        mark = {True: "met", False: "MISSED", None: "not measured"}[t.met]
        out.append(f"target [{mark}] {t.goal}: {t.measured}" + (f" -- {t.reason}" if t.reason else ""))
    out.append(f"total wall time {elapsed / 60:.1f} min")
    return "\n".join(out)


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def run(args: argparse.Namespace, log: Progress) -> int:
    start = time.monotonic()
    config = BenchConfig(runs=args.runs, cold_runs=args.cold_runs, smoke=args.smoke, arch=ARCH,
                         workdir=args.workdir.resolve() if args.workdir else None, keep=args.keep)
    ws = Workspace(config, log)
    try:
        log(f"work directory {ws.root}; sizes {','.join(map(str, args.sizes))}; runs {args.runs}")
        facts = ws.plan_json()["facts"]
        if not facts.get("nvcc"):
            raise KernloopError("bench/scale.py needs nvcc: the generated .cu TUs count towards N",
                                "run it on a machine with the CUDA toolkit")
        machine = machine_from_facts(facts)
        for line in machine.lines():
            log(line)
        torch = (facts.get("torch") or {}).get("version")
        cache = "--smoke: the caller's compiler cache, mostly hits" if args.smoke else "empty compiler cache"
        cold_env = (lambda name: ws.env(None)) if args.smoke else ws.cold_env
        sizes = []
        for n in args.sizes:
            where = ws.fresh_dir(f"n{n}")
            tree = generate(copy_tracked_tree(where / "src"), n)
            # A checkout that has run buildtools once has its bytecode; the copy gets it too (the
            # bench environment writes none, so every run would otherwise compile buildtools anew).
            timed([ws.python, "-m", "compileall", "-q", "buildtools"], cwd=tree.root, env=ws.env(None),
                  what="compileall buildtools")
            plain = Path(shutil.copytree(tree.root, where / "plain"))
            load_before = _load()
            log(f"--- N={n}: {tree.root} ({len(tree.generated)} generated TUs)")
            m = measure_tree(ws, tree, plain, runs=args.runs, cold_runs=args.cold_runs, cold_env=cold_env,
                             label=cache, torch=torch)
            m["load"] = f"{load_before} at start, {_load()} at end (1/5/15 min)"
            sizes.append(m)
            for line in _size_lines(m):
                log(line)
    finally:
        ws.close()
    targets = _targets(sizes, args.smoke)
    elapsed = time.monotonic() - start
    machine = dataclasses.replace(machine, load_end=_load())
    print(render(machine.lines(), args, sizes, targets, elapsed))
    if args.json:
        data = {"machine": machine.__dict__, "elapsed_s": elapsed,
                "config": {"sizes": list(args.sizes), "runs": args.runs, "cold_runs": args.cold_runs,
                           "smoke": args.smoke, "arch": ARCH, "cold_cache": cache},
                "sizes": [{**{k: (v.to_json() if isinstance(v, Series) else v) for k, v in m.items()},
                           "ratios": _derived(m)} for m in sizes],
                "growth_method": "least-squares slope of the medians over N, per 100 TUs (two sizes: the "
                                 "slope between them; one: none)",
                "growth": _growth_rows(sizes), "targets": [t.to_json() for t in targets]}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1))
        log(f"wrote {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except KernloopError as exc:
        print(exc.one_line(), file=sys.stderr)
        return EXIT_USER_ERROR
    log = Progress()
    try:
        return run(args, log)
    except KernloopError as exc:
        print(exc.one_line() if "\n" not in exc.message else f"error: {exc.message}\n-- {exc.hint}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
