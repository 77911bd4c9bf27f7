"""P3: a cold full build -- the kernloop plan vs a naive one.

kernloop: ``python -m buildtools build`` on a fresh copy with an empty compiler cache (presets,
configure, every TU, links, install), ``cold_runs`` times; the kernloop tree's own first build is
the first of them.

naive: a fresh copy with the vLLM-style variant (torch headers in the activation ``.cu``), configured
with plain ``cmake -G Ninja`` and the same toolchain settings but torch's default arch list (∩ what
nvcc supports), no job pools, no compiler cache, no nvcc threads, then ``cmake --build -j nproc
--target install``. It runs ``variant_runs`` times (default 1): it compiles the torch-heavy TU.
"""
from __future__ import annotations

import os

from .harness import Figure, fmt_s, heartbeat, ratio, series
from .workspace import SMOKE_TARGET, Workspace

__all__ = ["KEY", "TITLE", "run"]

KEY = "P3"
TITLE = "cold full build: kernloop plan vs naive"


def run(ws: Workspace) -> Figure:
    smoke = ws.config.smoke
    extra = ("--target", SMOKE_TARGET) if smoke else ()
    kl: list[float] = []
    tus: list[int] = []
    if not smoke:
        ws.kernloop_tree()
        assert ws.first_build is not None
        kl.append(ws.first_build.seconds)
        tus.append(ws.first_build.compiled)
    while len(kl) < ws.config.cold_runs:
        tree = ws.fresh_tree("cold")
        ws.log(f"P3 kernloop cold run {len(kl) + 1}/{ws.config.cold_runs} in {tree}")
        with heartbeat(ws.log, "kernloop cold build"):
            build = ws.kernloop_build(tree, ws.cold_env("cold"), *extra)
        kl.append(build.seconds)
        tus.append(build.compiled)
        ws.log(f"P3 kernloop cold run {len(kl)}: {fmt_s(build.seconds)}, {build.compiled} TUs, {build.cache}")

    if not smoke:
        ws.cold_kernloop[:] = kl
    naive: list[float] = []
    if smoke:
        tree = ws.naive_tree()
        naive.append(ws.naive_build(tree, target=SMOKE_TARGET))
    else:
        ws.naive_built()
        assert ws.naive_first is not None
        naive.append(ws.naive_first)
        while len(naive) < ws.config.variant_runs:
            tree = ws.fresh_tree("naive")
            from .variants import apply_vllm_style

            apply_vllm_style(tree)
            ws.log(f"P3 naive cold run {len(naive) + 1}/{ws.config.variant_runs} (minutes)")
            with heartbeat(ws.log, "naive cold build"):
                naive.append(ws.naive_build(tree))
            ws.log(f"P3 naive cold run {len(naive)}: {fmt_s(naive[-1])}")

    plan = ws.plan_json()["plan"]
    variant_archs, why = ws.variant_archs()
    source = "--smoke" if smoke else "torch's default ∩ nvcc"
    what = f" ({SMOKE_TARGET} only: smoke size)" if smoke else ""
    a = series(f"kernloop: python -m buildtools build, empty cache{what}", kl,
               note=f"jobs {plan['jobs']['value']}, pools compile={plan['jobs']['value']}/link="
                    f"{plan['link_jobs']['value']}, nvcc-threads {(plan.get('device_threads') or {}).get('value')}, "
                    f"archs {';'.join(plan['archs']['value'])}; TUs compiled {tus}")
    b = series(f"naive: cmake -G Ninja + cmake --build -j {os.cpu_count()}, no cache{what}", naive,
               note=f"TORCH_CUDA_ARCH_LIST={ws.naive_arch_list} ({source}); the vLLM-style "
                    f"activation TU for {';'.join(variant_archs)} ({why})")
    notes = ["both include configuring; kernloop's also writes the presets and installs into kernloop/"]
    if ws.config.quick:
        notes.append("--quick: the torch-heavy TU of the naive build is compiled for one arch only")
    return Figure(KEY, TITLE, (a, b), ratios=(("naive / kernloop", ratio(b, a)),), notes=tuple(notes))
