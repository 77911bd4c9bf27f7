"""How facts and plans are shown: one rendering for presets --print-plan, doctor and the pip backend."""
from __future__ import annotations

from typing import Any

from buildtools.model import GIB, Facts, Plan

__all__ = ["fact_rows", "format_plan", "plan_summary"]


def fact_rows(facts: Facts) -> list[tuple[str, str, str]]:
    """(name, value, source) for --print-plan."""
    def prog(p: Any) -> tuple[str, str]:
        return (f"{p.path} ({p.version or 'version unknown'})", p.source) if p else ("not found", "searched")

    rows = [("python", f"{facts.python.executable} ({facts.python.version})", facts.python.source)]
    t = facts.torch
    if t is None:
        rows.append(("torch", "not installed", f"import spec of {facts.python.executable}"))
    else:
        kind = f"CUDA {t.cuda}" if t.cuda else (f"HIP {t.hip}" if t.hip else "CPU only")
        rows.append(("torch", f"{t.version} ({kind}), {t.root}", t.source))
    n = facts.nvcc
    if n is None:
        rows.append(("nvcc", "not found", "searched: --nvcc, CUDACXX, CMAKE_CUDA_COMPILER, CUDA_HOME, PATH, "
                                          "/usr/local/cuda"))
    else:
        source = n.source  # "<path> (from: ...)": keep the part in brackets, the path is the value
        prefix = f"{n.path} (from: "
        if source.startswith(prefix) and source.endswith(")"):
            source = source[len(prefix):-1]
        rows.append(("nvcc", f"{n.path} ({n.version})", source))
        rows.append(("CUDA root", str(n.root), "nvcc -dryrun TOP="))
        rows.append(("nvcc archs", " ".join(n.archs) or "unknown", f"{n.path} --list-gpu-arch"))
    if facts.cuda_extra_includes:
        rows.append(("CUDA headers", ";".join(map(str, facts.cuda_extra_includes)),
                     "pip-installed nvidia/*/include next to torch"))
    rows.append(("cores", str(facts.cpus.usable), facts.cpus.source))
    rows.append(("RAM available", f"{facts.memory.available_bytes / GIB:.1f} GiB", facts.memory.source))
    g = facts.gpus
    gpus = ", ".join(f"{name} ({arch})" for name, arch in zip(g.names, g.archs)) or " ".join(g.archs) or "none"
    rows.append(("GPUs", gpus, g.source))
    for name in ("cmake", "ninja", "ccache", "sccache"):
        rows.append((name, *prog(getattr(facts, name))))
    return rows


def format_plan(facts: Facts, plan: Plan, source_dir_source: str) -> str:
    lines = ["facts:", f"  {'source dir':<14} {facts.source_dir}  [from: {source_dir_source}]"]
    lines += [f"  {name:<14} {value}  [from: {source}]" for name, value, source in fact_rows(facts)]
    lines.append(f"plan ({plan.platform.reason}):")
    for label, text, decision in plan.shown()[1:]:
        lines.append(f"  {label}={text}: {decision.reason}")
    lines += [f"note: {note}" for note in facts.notes]  # plan warnings go to stderr, once
    return "\n".join(lines)


def plan_summary(plan: Plan) -> str:
    """``jobs=2, link-jobs=1, ...``: the planned numbers on one line."""
    return ", ".join(f"{label}={text}" for label, text, _ in plan.shown())
