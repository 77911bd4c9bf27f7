"""GPU micro-benchmarks of the ops: achieved memory bandwidth vs the device's peak, per op and shape,
side by side with a plain-torch implementation of the same op.

Every op here is memory-bound, so the figure of merit is bytes moved per second: each op's
minimal traffic (every input read once, every output written once) divided by its time (CUDA
events over ``--iters`` calls after a warm-up), next to the device's peak (memory clock x 2 x bus
width, from the device properties). Each op is measured twice on its own copies of the same
inputs: kernloop's kernel, and the same op written with plain torch ops (what a model runs
without custom kernels; tests/kernels/test_bench_gpu_ops.py checks that both compute the same
result). ``torch copy_`` of a tensor of the first shape is what the memory system delivers to a
simple kernel.

Standalone: ``python bench/gpu_ops.py --tree DIR [--shapes 16384x8192,...] [--json | --markdown]``
loads ``DIR/kernloop`` (a tree built with CUDA for this GPU). Without a CUDA device it says so and
exits 0. Through ``python bench/run.py`` it is the figure "GPU", run only when detection sees a GPU;
``tools/gpu_check.sh`` runs it too.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):  # run as a script: make `bench` and `buildtools` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

__all__ = ["KEY", "TITLE", "Case", "OpResult", "cases", "op_cases", "peak_bandwidth", "parse_shapes",
           "render", "render_markdown", "main", "run"]

KEY = "GPU"
TITLE = "ops on the GPU: achieved bandwidth vs the device's peak, and vs plain torch"
NO_DEVICE = "skipped: no CUDA device here (torch.cuda.is_available() is False); the GPU micro-benchmarks need one"
DEFAULT_SHAPES = "16384x8192"


@dataclass(frozen=True)
class Case:
    op: str
    shape: str
    bytes_moved: int
    kernloop: Callable[[], Any]  # one call of the op; returns its result
    torch: Callable[[], Any] | None  # the same op in plain torch, on its own copies of the inputs


@dataclass(frozen=True)
class OpResult:
    op: str
    shape: str
    dtype: str
    bytes_moved: int
    seconds: tuple[float, ...]  # per call, one value per repeat
    torch_seconds: tuple[float, ...] = ()

    @property
    def gbps(self) -> tuple[float, ...]:
        return tuple(self.bytes_moved / s / 1e9 for s in self.seconds)

    @property
    def torch_gbps(self) -> tuple[float, ...]:
        return tuple(self.bytes_moved / s / 1e9 for s in self.torch_seconds)

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "shape": self.shape, "dtype": self.dtype, "bytes_moved": self.bytes_moved,
                "seconds": list(self.seconds), "gbps": list(self.gbps), "torch_seconds": list(self.torch_seconds),
                "torch_gbps": list(self.torch_gbps)}


def peak_bandwidth(props: Any) -> float | None:
    """Bytes/s: memory clock (kHz) x 2 (double data rate) x bus width (bits) / 8; None if unknown."""
    clock_khz = getattr(props, "memory_clock_rate", 0) or 0
    bus_bits = getattr(props, "memory_bus_width", 0) or 0
    if not clock_khz or not bus_bits:
        return None
    return clock_khz * 1e3 * 2 * bus_bits / 8


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """'16384x8192,2048x4096' -> [(16384, 8192), (2048, 4096)] (tokens x hidden)."""
    shapes = []
    for part in text.split(","):
        tokens, sep, hidden = part.strip().lower().partition("x")
        if not sep or not tokens.isdigit() or not hidden.isdigit() or int(tokens) < 4 or int(hidden) < 8:
            raise SystemExit(f"error: bad shape {part!r} in --shapes: use TOKENSxHIDDEN, e.g. 16384x8192 "
                             "(tokens >= 4, hidden >= 8)")
        shapes.append((int(tokens), int(hidden)))
    return shapes


# -- the same ops in plain torch (what vLLM's forward_native paths do) ----------------------------------

def _torch_rms_norm(torch: Any, x: Any, w: Any, eps: float, out: Any) -> Any:
    xf = x.float()
    out.copy_((xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w)
    return out


def _torch_fused_add_rms_norm(torch: Any, x: Any, res: Any, w: Any, eps: float) -> Any:
    res.add_(x)
    _torch_rms_norm(torch, res, w, eps, x)
    return x, res


def _torch_silu_and_mul(torch: Any, gate_up: Any, out: Any) -> Any:
    d = gate_up.shape[-1] // 2
    return torch.mul(torch.nn.functional.silu(gate_up[..., :d]), gate_up[..., d:], out=out)


def _torch_rotary_neox(torch: Any, positions: Any, q: Any, k: Any, head_size: int, cache: Any) -> Any:
    rot = cache.shape[1]
    cos, sin = cache[positions].float().chunk(2, dim=-1)
    cos, sin = cos[:, None, :], sin[:, None, :]
    for t in (q, k):
        heads = t.view(t.shape[0], -1, head_size)[..., :rot]
        x1, x2 = heads.float().chunk(2, dim=-1)
        heads.copy_(torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1))
    return q, k


def _torch_topk_softmax(torch: Any, gating: Any, topk: int) -> Any:
    weights, ids = torch.topk(torch.softmax(gating, dim=-1, dtype=torch.float32), topk, dim=-1)
    return weights / weights.sum(dim=-1, keepdim=True), ids.to(torch.int32)


def _torch_moe_align(torch: Any, ids: Any, block_size: int, num_experts: int) -> Any:
    """Stable grouping by expert with plain torch ops (it synchronizes: the padded size is data)."""
    flat = ids.flatten().long()
    counts = torch.bincount(flat, minlength=num_experts)
    padded = (counts + block_size - 1) // block_size * block_size
    start = torch.cumsum(padded, 0) - padded
    order = torch.sort(flat, stable=True).indices
    rank = torch.arange(flat.numel(), device=flat.device) - (torch.cumsum(counts, 0) - counts)[flat[order]]
    sorted_ids = torch.full((flat.numel() + num_experts * (block_size - 1),), flat.numel(), dtype=torch.int32,
                            device=flat.device)
    sorted_ids[start[flat[order]] + rank] = order.to(torch.int32)
    expert_ids = torch.repeat_interleave(torch.arange(num_experts, device=flat.device, dtype=torch.int32),
                                         padded // block_size)
    return sorted_ids, expert_ids, padded.sum().to(torch.int32).reshape(1)


def cases(kl: Any, torch: Any, device: str, tokens: int, hidden: int) -> list[Case]:
    """Every op at one (tokens, hidden), bf16 activations; the plain-torch side gets clones of the inputs."""
    dt = torch.bfloat16
    e = 2
    n, h = tokens, hidden
    gen = torch.Generator(device=device).manual_seed(0)

    def rand(*shape: int, dtype: Any = dt) -> Any:
        return torch.randn(*shape, generator=gen, device=device).to(dtype)

    def twin(t: Any) -> Any:
        return t.clone()

    x, w = rand(n, h), rand(h)
    res = rand(n, h)
    x2 = rand(n, h)
    gate_up = rand(n, 2 * h)
    heads, kv_heads, head_size, cache_rows = 32, 8, 128, 4096
    q, k = rand(n, heads * head_size), rand(n, kv_heads * head_size)
    positions = torch.randint(0, cache_rows, (n,), generator=gen, device=device)
    cache = rand(cache_rows, head_size)
    experts, topk, block = 128, 8, 64
    moe_tokens = max(n // 4, 1)
    moe_in = rand(moe_tokens, topk, h)
    gating = rand(n, experts, dtype=torch.float32)
    moe_ids = torch.randint(0, experts, (n, topk), generator=gen, dtype=torch.int32, device=device)

    out, t_out = torch.empty_like(x), torch.empty_like(x)
    t_x2, t_res = twin(x2), twin(res)
    act_out, t_act_out = torch.empty(n, h, device=device, dtype=dt), torch.empty(n, h, device=device, dtype=dt)
    t_q, t_k = twin(q), twin(k)
    moe_out, t_moe_out = torch.empty(moe_tokens, h, device=device, dtype=dt), torch.empty(moe_tokens, h,
                                                                                         device=device, dtype=dt)
    copy_dst = torch.empty_like(x)
    qk = (q.numel() + k.numel()) * e
    sorted_len = n * topk + experts * (block - 1)
    return [
        Case("torch copy_ (reference)", f"[{n}, {h}]", 2 * n * h * e, lambda: copy_dst.copy_(x), None),
        Case("rms_norm", f"[{n}, {h}]", (2 * n * h + h) * e, lambda: kl.rms_norm(x, w, 1e-6, out=out),
             lambda: _torch_rms_norm(torch, x, w, 1e-6, t_out)),
        Case("fused_add_rms_norm", f"[{n}, {h}]", (4 * n * h + h) * e,
             lambda: kl.fused_add_rms_norm(x2, res, w, 1e-6),
             lambda: _torch_fused_add_rms_norm(torch, t_x2, t_res, w, 1e-6)),
        Case("silu_and_mul", f"[{n}, {2 * h}]", 3 * n * h * e, lambda: kl.silu_and_mul(gate_up, out=act_out),
             lambda: _torch_silu_and_mul(torch, gate_up, t_act_out)),
        Case("rotary_embedding", f"q [{n}, {heads}x{head_size}], k [{n}, {kv_heads}x{head_size}]",
             2 * qk + n * 8 + n * head_size * e, lambda: kl.rotary_embedding(positions, q, k, head_size, cache, True),
             lambda: _torch_rotary_neox(torch, positions, t_q, t_k, head_size, cache)),
        Case("moe_sum", f"[{moe_tokens}, {topk}, {h}]", (topk + 1) * moe_tokens * h * e,
             lambda: kl.moe_sum(moe_in, out=moe_out), lambda: torch.sum(moe_in, dim=1, out=t_moe_out)),
        Case("topk_softmax", f"[{n}, {experts}] -> top{topk}, renormalize", n * experts * 4 + 3 * n * topk * 4,
             lambda: kl.topk_softmax(gating, topk, renormalize=True)[:2],
             lambda: _torch_topk_softmax(torch, gating, topk)),
        Case("moe_align_block_size", f"[{n}, {topk}] ids, {experts} experts, block {block}",
             (n * topk + sorted_len + sorted_len // block + 1) * 4,
             lambda: kl.moe_align_block_size(moe_ids, block, experts),
             lambda: _torch_moe_align(torch, moe_ids, block, experts)),
    ]


def op_cases(kl: Any, torch: Any, device: str, tokens: int, hidden: int) -> list[tuple[str, str, int, Callable[[], Any]]]:
    """(op, shape, bytes moved per call, kernloop call) for each case (bench/run.py's smoke test uses it)."""
    return [(c.op, c.shape, c.bytes_moved, c.kernloop) for c in cases(kl, torch, device, tokens, hidden)]


def _load_kernloop(tree: Path) -> Any:
    spec = importlib.util.spec_from_file_location("kernloop", tree / "kernloop" / "__init__.py",
                                                  submodule_search_locations=[str(tree / "kernloop")])
    if spec is None or spec.loader is None:
        raise SystemExit(f"error: no kernloop package in {tree}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["kernloop"] = module
    spec.loader.exec_module(module)
    return module


def _time(torch: Any, call: Callable[[], Any], repeats: int, iters: int) -> tuple[float, ...]:
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
    return tuple(per_call)


def measure(tree: Path, *, repeats: int, iters: int, shapes: list[tuple[int, int]]) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": NO_DEVICE}
    kl = _load_kernloop(tree)
    if not kl.cuda_enabled():
        return {"skipped": f"{tree}/kernloop was built without CUDA kernels"}
    props = torch.cuda.get_device_properties(0)
    results = []
    for tokens, hidden in shapes:
        for case in cases(kl, torch, "cuda", tokens, hidden):
            if case.op.startswith("torch copy_") and results:
                continue  # once, at the first shape
            results.append(OpResult(case.op, case.shape, "bfloat16", case.bytes_moved,
                                    _time(torch, case.kernloop, repeats, iters),
                                    _time(torch, case.torch, repeats, iters) if case.torch else ()))
        torch.cuda.empty_cache()
    return {
        "device": props.name,
        "capability": f"{props.major}.{props.minor}",
        "peak_bytes_per_s": peak_bandwidth(props),
        "iters": iters,
        "repeats": repeats,
        "torch": torch.__version__,
        "results": [r.to_json() for r in results],
    }


def _row(r: dict[str, Any], peak: float | None) -> tuple[str, ...]:
    def cols(seconds: list[float], gbps: list[float]) -> tuple[str, str, str]:
        if not seconds:
            return "", "", ""
        g = statistics.median(gbps)
        return (f"{statistics.median(seconds) * 1e6:.1f}", f"{g:.0f}", f"{g * 1e9 / peak:.1%}" if peak else "n/a")

    mine = cols(r["seconds"], r["gbps"])
    theirs = cols(r["torch_seconds"], r["torch_gbps"])
    speedup = (f"{statistics.median(r['torch_seconds']) / statistics.median(r['seconds']):.2f}x"
               if r["torch_seconds"] else "")
    return (r["op"], r["shape"], *mine, *theirs, speedup)


HEADER = ("op", "shape", "kernloop us", "GB/s", "of peak", "plain torch us", "GB/s", "of peak", "torch / kernloop")


def _device_line(data: dict[str, Any]) -> str:
    peak = data.get("peak_bytes_per_s")
    return (f"{data['device']} (sm_{data['capability'].replace('.', '')}), peak "
            + (f"{peak / 1e9:.0f} GB/s (memory clock x 2 x bus width)" if peak else "unknown")
            + f"; bf16, median of {data.get('repeats', '?')} repeats of {data['iters']} calls")


def render(data: dict[str, Any]) -> str:
    if "skipped" in data:
        return data["skipped"]
    peak = data.get("peak_bytes_per_s")
    rows = [HEADER] + [_row(r, peak) for r in data["results"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = [_device_line(data)]
    lines += ["  " + "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
              for row in rows]
    return "\n".join(lines)


def render_markdown(data: dict[str, Any]) -> str:
    if "skipped" in data:
        return data["skipped"]
    peak = data.get("peak_bytes_per_s")
    lines = [_device_line(data), "", "| " + " | ".join(HEADER) + " |",
             "|" + "|".join(["---", "---"] + ["---:"] * (len(HEADER) - 2)) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _row(r, peak)) + " |" for r in data["results"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, required=True, help="a tree whose kernloop/ holds CUDA builds of _C/_moe_C")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--shapes", default=DEFAULT_SHAPES, help=f"TOKENSxHIDDEN[,...] (default {DEFAULT_SHAPES})")
    parser.add_argument("--tokens", type=int, help="with --hidden: one shape (the older spelling of --shapes)")
    parser.add_argument("--hidden", type=int)
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the results as JSON")
    out.add_argument("--markdown", action="store_true", help="print the results as a markdown table")
    args = parser.parse_args(argv)
    shapes = parse_shapes(f"{args.tokens}x{args.hidden}" if args.tokens or args.hidden else args.shapes)
    data = measure(args.tree.resolve(), repeats=args.repeats, iters=args.iters, shapes=shapes)
    print(json.dumps(data, indent=1) if args.json else render_markdown(data) if args.markdown else render(data))
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
    rows, ratios = [], []
    for r in data["results"]:
        mine = series(f"{r['op']} {r['shape']} bf16", r["gbps"], unit="GB/s",
                      note=f"{r['bytes_moved'] / 1e6:.0f} MB per call")
        rows.append(mine)
        if peak:
            ratios.append((f"{r['op']} {r['shape']} / peak", mine.median * 1e9 / peak))
        if r["torch_seconds"]:
            rows.append(series(f"{r['op']} {r['shape']} bf16, plain torch", r["torch_gbps"], unit="GB/s"))
            ratios.append((f"{r['op']} {r['shape']}: plain torch time / kernloop time",
                           statistics.median(r["torch_seconds"]) / statistics.median(r["seconds"])))
    return Figure(KEY, TITLE, tuple(rows), ratios=tuple(ratios), notes=(_device_line(data),))


if __name__ == "__main__":
    sys.exit(main())
