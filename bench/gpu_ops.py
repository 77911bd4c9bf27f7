"""GPU micro-benchmarks of the ops: achieved memory bandwidth vs the device's peak.

Every op here is memory-bound, so the figure of merit is bytes moved per second: each op's
minimal traffic (every input read once, every output written once) divided by its time (CUDA
events over ``--iters`` calls after a warm-up), next to the device's peak (memory clock x 2 x bus
width, from the device properties) and next to ``torch``'s own ``copy_`` of a tensor of the same
size -- what the memory system actually delivers to a simple kernel.

Standalone: ``python bench/gpu_ops.py --tree DIR [--json]`` loads ``DIR/kernloop`` (a tree built with
CUDA for this GPU). Without a CUDA device it says so and exits 0. Through ``python bench/run.py`` it
is the figure "GPU", run only when detection sees a GPU.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):  # run as a script: make `bench` and `buildtools` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

__all__ = ["KEY", "TITLE", "OpResult", "op_cases", "peak_bandwidth", "main", "run"]

KEY = "GPU"
TITLE = "ops on the GPU: achieved bandwidth vs the device's peak"
NO_DEVICE = "skipped: no CUDA device here (torch.cuda.is_available() is False); the GPU micro-benchmarks need one"


@dataclass(frozen=True)
class OpResult:
    op: str
    shape: str
    dtype: str
    bytes_moved: int
    seconds: tuple[float, ...]  # per call, one value per repeat

    @property
    def gbps(self) -> tuple[float, ...]:
        return tuple(self.bytes_moved / s / 1e9 for s in self.seconds)


def peak_bandwidth(props: Any) -> float | None:
    """Bytes/s: memory clock (kHz) x 2 (double data rate) x bus width (bits) / 8; None if unknown."""
    clock_khz = getattr(props, "memory_clock_rate", 0) or 0
    bus_bits = getattr(props, "memory_bus_width", 0) or 0
    if not clock_khz or not bus_bits:
        return None
    return clock_khz * 1e3 * 2 * bus_bits / 8


def op_cases(kl: Any, torch: Any, device: str, tokens: int, hidden: int) -> list[tuple[str, str, int, Callable[[], Any]]]:
    """(op, shape, bytes moved per call, call) for each op, bf16, sizes well beyond L2."""
    dt = torch.bfloat16
    e = 2
    n, h = tokens, hidden
    x = torch.randn(n, h, device=device, dtype=dt)
    w = torch.randn(h, device=device, dtype=dt)
    out = torch.empty_like(x)
    res = torch.randn(n, h, device=device, dtype=dt)
    gate_up = torch.randn(n, 2 * h, device=device, dtype=dt)
    act_out = torch.empty(n, h, device=device, dtype=dt)
    heads, kv_heads, head_size = 32, 8, 128
    q = torch.randn(n, heads * head_size, device=device, dtype=dt)
    k = torch.randn(n, kv_heads * head_size, device=device, dtype=dt)
    positions = torch.randint(0, 4096, (n,), device=device)
    cache = torch.randn(4096, head_size, device=device, dtype=dt)
    topk = 8
    moe_in = torch.randn(n // 4, topk, h, device=device, dtype=dt)
    moe_out = torch.empty(n // 4, h, device=device, dtype=dt)
    experts = 128
    gating = torch.randn(n, experts, device=device, dtype=torch.float32)
    copy_dst = torch.empty_like(x)
    qk = (q.numel() + k.numel()) * e
    return [
        ("torch copy_ (reference)", f"[{n}, {h}]", 2 * n * h * e, lambda: copy_dst.copy_(x)),
        ("rms_norm", f"[{n}, {h}]", (2 * n * h + h) * e, lambda: kl.rms_norm(x, w, 1e-6, out=out)),
        ("fused_add_rms_norm", f"[{n}, {h}]", (4 * n * h + h) * e, lambda: kl.fused_add_rms_norm(x, res, w, 1e-6)),
        ("silu_and_mul", f"[{n}, {2 * h}]", 3 * n * h * e, lambda: kl.silu_and_mul(gate_up, out=act_out)),
        ("rotary_embedding", f"q [{n}, {heads}x{head_size}], k [{n}, {kv_heads}x{head_size}]",
         2 * qk + n * 8 + n * head_size * e, lambda: kl.rotary_embedding(positions, q, k, head_size, cache, True)),
        ("moe_sum", f"[{n // 4}, {topk}, {h}]", (topk + 1) * (n // 4) * h * e, lambda: kl.moe_sum(moe_in, out=moe_out)),
        ("topk_softmax", f"[{n}, {experts}] -> top{topk}", n * experts * 4 + 3 * n * topk * 4,
         lambda: kl.topk_softmax(gating, topk)),
    ]


def _load_kernloop(tree: Path) -> Any:
    spec = importlib.util.spec_from_file_location("kernloop", tree / "kernloop" / "__init__.py",
                                                  submodule_search_locations=[str(tree / "kernloop")])
    if spec is None or spec.loader is None:
        raise SystemExit(f"error: no kernloop package in {tree}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["kernloop"] = module
    spec.loader.exec_module(module)
    return module


def measure(tree: Path, *, repeats: int, iters: int, tokens: int, hidden: int) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": NO_DEVICE}
    kl = _load_kernloop(tree)
    if not kl.cuda_enabled():
        return {"skipped": f"{tree}/kernloop was built without CUDA kernels"}
    props = torch.cuda.get_device_properties(0)
    results = []
    for op, shape, nbytes, call in op_cases(kl, torch, "cuda", tokens, hidden):
        for _ in range(3):
            call()
        torch.cuda.synchronize()
        per_call = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                call()
            end.record()
            end.synchronize()
            per_call.append(start.elapsed_time(end) / 1e3 / iters)
        results.append(OpResult(op, shape, "bfloat16", nbytes, tuple(per_call)))
    peak = peak_bandwidth(props)
    return {
        "device": props.name,
        "capability": f"{props.major}.{props.minor}",
        "peak_bytes_per_s": peak,
        "iters": iters,
        "results": [{**asdict(r), "gbps": list(r.gbps)} for r in results],
    }


def render(data: dict[str, Any]) -> str:
    if "skipped" in data:
        return data["skipped"]
    import statistics

    peak = data.get("peak_bytes_per_s")
    lines = [f"{data['device']} (sm_{data['capability'].replace('.', '')}), peak "
             + (f"{peak / 1e9:.0f} GB/s" if peak else "unknown")]
    for r in data["results"]:
        gbps = statistics.median(r["gbps"])
        share = f"{gbps * 1e9 / peak:5.1%}" if peak else "  n/a"
        lines.append(f"  {r['op']:<26} {r['shape']:<44} {statistics.median(r['seconds']) * 1e6:9.1f} us "
                     f"{gbps:8.0f} GB/s  {share} of peak")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, required=True, help="a tree whose kernloop/ holds CUDA builds of _C/_moe_C")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--hidden", type=int, default=8192)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    data = measure(args.tree.resolve(), repeats=args.repeats, iters=args.iters, tokens=args.tokens,
                   hidden=args.hidden)
    print(json.dumps(data, indent=1) if args.json else render(data))
    return 0


def run(ws: Any) -> Any:
    """The figure for ``bench/run.py``: skipped without a GPU (seen by detection, so nothing is built
    for it), else the built kernloop tree measured in a fresh interpreter."""
    from .harness import Figure, series, timed

    facts = ws.plan_json()["facts"]
    gpus = facts.get("gpus") or {}
    if not gpus.get("archs"):
        return Figure(KEY, TITLE, skipped=f"{NO_DEVICE} -- detection: {gpus.get('source', 'no GPU facts')}")
    tree = ws.kernloop_tree()
    _, result = timed([ws.python, Path(__file__).resolve(), "--tree", tree, "--json",
                       "--repeats", str(ws.config.runs)], cwd=tree, env=ws.kernloop_env(), timeout=1800,
                      what="bench/gpu_ops.py")
    data = json.loads(result.stdout)
    if "skipped" in data:
        return Figure(KEY, TITLE, skipped=data["skipped"])
    peak = data.get("peak_bytes_per_s")
    rows = [series(f"{r['op']} {r['shape']} bf16", r["gbps"], unit="GB/s",
                   note=f"{r['bytes_moved'] / 1e6:.0f} MB per call") for r in data["results"]]
    ratios = tuple((f"{r['op']} / peak", s.median * 1e9 / peak) for r, s in zip(data["results"], rows)) if peak else ()
    return Figure(KEY, TITLE, tuple(rows), ratios=ratios,
                  notes=(f"device {data['device']} (sm {data['capability']}), peak "
                         + (f"{peak / 1e9:.0f} GB/s (memory clock x 2 x bus width)" if peak else "unknown"),))


if __name__ == "__main__":
    sys.exit(main())
