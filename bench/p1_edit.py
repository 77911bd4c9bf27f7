"""P1: edit one kernel ``.cu`` -> importable.

On the kernloop tree, each run makes a real edit of ``csrc/cuda/activation_kernels.cu`` (a new
constant, so the compiler cache cannot serve it) and times:

- ``python -m buildtools build``: presets check, ninja, the one TU, the link of ``_C``, the atomic
  install into ``kernloop/`` -- the module is importable when it returns (the targets are judged on
  this one, the command the docs give);
- the physical limit, right after it on the same edit: that TU's own command from
  compile_commands.json run alone, then ``_C``'s link command (``ninja -t commands``) -- nothing
  else a build could skip;
- the critical path: that TU's command alone at ``--threads=min(cores, its gencodes)``, what a
  lone dirty TU gets (``buildtools.cache.nvcc_threads``); the goal is buildtools build <= 1.2x
  that + 1 s;
- after another edit, the plain CMake form ``cmake --build --preset release --target install``;
- after another edit, ``pip install --no-build-isolation -e .`` (its own build dir, same plan).

And, on the naive tree, the vLLM-style variant of the same kernel (torch headers in the ``.cu``,
torch's default arch list): edit, ``cmake --build -j nproc --target install``. That one TU takes
minutes, so it runs ``variant_runs`` times (default 1); ``--quick`` builds it for one arch.
"""
from __future__ import annotations

from buildtools.errors import KernloopError

from .harness import Figure, Target, fmt_s, heartbeat, ratio, series
from .workspace import KERNEL_TU, Workspace, edit_source

__all__ = ["KEY", "TITLE", "run"]

KEY = "P1"
TITLE = f"edit one kernel .cu -> importable ({KERNEL_TU})"
GOAL_VS_LIMIT = 1.3
GOAL_VS_CRITICAL = (1.2, 1.0)  # factor, seconds
GOAL_VS_VARIANT = 10.0


def run(ws: Workspace) -> Figure:
    tree = ws.kernloop_tree()
    env = ws.kernloop_env()
    build_dir = ws.build_dir(tree)
    kernel = tree / KERNEL_TU
    n = ws.config.runs
    kl: list[float] = []
    limit: list[float] = []
    critical: list[float] = []
    threads = 1
    for i in range(n):
        edit_source(kernel, ws.edits.next())
        build = ws.kernloop_build(tree, env)
        ran = [t for t in build.summary.get("ran", []) if not t.endswith(".so")]
        if len(ran) != 1 or not ran[0].endswith("activation_kernels.cu.o"):
            raise KernloopError(f"P1: the edit of {KERNEL_TU} rebuilt {ran}, not that one TU")
        target = next((t for t in build.summary.get("linked", []) if t.startswith("_C.")), "_C.abi3.so")
        kl.append(build.seconds)
        limit.append(ws.physical_limit(build_dir, KERNEL_TU, target))
        seconds, threads = ws.tu_alone(build_dir, KERNEL_TU)
        critical.append(seconds)
        ws.log(f"P1 run {i + 1}/{n}: buildtools build {fmt_s(kl[-1])} (cache: {build.cache}, "
               f"{build.summary.get('steps', {}).get('nvcc-threads', 'plan threads')}), physical limit "
               f"{fmt_s(limit[-1])}, the TU alone at --threads={threads} {fmt_s(critical[-1])}")
    loaded = ws.import_check(tree, env)
    ws.pip_ready(tree, env)
    raw: list[float] = []
    pip: list[float] = []
    for i in range(n):
        edit_source(kernel, ws.edits.next())
        raw.append(ws.preset_build(tree, env))
        edit_source(kernel, ws.edits.next())
        pip.append(ws.pip_editable(tree, env))
        ws.log(f"P1 run {i + 1}/{n}: cmake --build --preset release --target install {fmt_s(raw[-1])}, "
               f"pip install -e . {fmt_s(pip[-1])}")

    a = series("python -m buildtools build (kernloop plan)", kl,
               note=f"archs {';'.join(ws.plan_json()['plan']['archs']['value'])}")
    b = series("physical limit: the TU's compile command + the link, alone", limit)
    k = series(f"critical path: the TU alone at --threads={threads} (min(cores, gencodes))", critical)
    r = series("cmake --build --preset release --target install", raw)
    c = series("pip install --no-build-isolation -e .", pip)
    rows = [a, b, k, r, c]
    ratios = [("buildtools build / physical limit", ratio(a, b)), ("buildtools build / critical path", ratio(a, k)),
              ("cmake preset build / physical limit", ratio(r, b)),
              ("pip -e / buildtools build", ratio(c, a))]
    over = ratio(a, b)
    factor, extra = GOAL_VS_CRITICAL
    bound = factor * k.median + extra
    targets = [Target(f"<= {factor}x the critical path + {extra:g} s", f"{fmt_s(a.median)} vs {fmt_s(bound)}",
                      a.median <= bound, "" if a.median <= bound else "see the note on machine load"),
               Target(f"<= {GOAL_VS_LIMIT}x the physical limit", f"{over:.2f}x", over <= GOAL_VS_LIMIT,
                      "" if over <= GOAL_VS_LIMIT else
                      "the build's fixed cost (Python start-up, detection for the presets check, ninja, "
                      "staged install) is large next to a 1-arch-per-job nvcc run on this machine")]
    notes = [f"import check after the preset build: kernloop._C loaded from {loaded}"]

    if ws.config.smoke:
        targets.append(Target(f">= {GOAL_VS_VARIANT}x faster than the vLLM-style variant", "not measured", None,
                              "--smoke does not compile the torch-heavy TU"))
        notes.append("vLLM-style variant: skipped at smoke size (its one TU compiles for minutes)")
        return Figure(KEY, TITLE, tuple(rows), tuple(ratios), tuple(targets), tuple(notes))

    archs, why = ws.variant_archs()
    naive = ws.naive_built()
    variant: list[float] = []
    for i in range(ws.config.variant_runs):
        edit_source(naive / KERNEL_TU, ws.edits.next())
        ws.log(f"P1 variant run {i + 1}/{ws.config.variant_runs}: compiling the torch-heavy TU for {len(archs)} "
               f"arch(es) (minutes)")
        with heartbeat(ws.log, "variant rebuild"):
            variant.append(ws.naive_build(naive, configure=False))
        ws.log(f"P1 variant run {i + 1}: {fmt_s(variant[-1])}")
    notes.append(f"import check of the variant build: kernloop._C loaded from "
                 f"{ws.import_check(naive, ws.naive_env())}")
    d = series(f"vLLM-style variant: cmake --build -j N (torch headers in the .cu, {len(archs)} archs)", variant,
               note=f"{';'.join(archs)} ({why})")
    rows.append(d)
    speedup = ratio(d, a)
    ratios.append(("vLLM-style variant / buildtools build", speedup))
    quick = " (--quick: one arch for the variant)" if ws.config.quick else ""
    targets.append(Target(f">= {GOAL_VS_VARIANT}x faster than the vLLM-style variant", f"{speedup:.1f}x{quick}",
                          speedup >= GOAL_VS_VARIANT, "" if speedup >= GOAL_VS_VARIANT else "see the rows above"))
    return Figure(KEY, TITLE, tuple(rows), tuple(ratios), tuple(targets), tuple(notes))
