"""The GPU matrix: each CUDA path against the CPU kernels and the torch reference.

Every test here needs a CUDA device (the gpu marker skips it cleanly without one). Sizes are
picked to reach each kernel's paths: the 16-byte vector and scalar paths of the norms (aligned,
misaligned and row-strided pointers), rows wider than one block, moe_sum up to 32768 wide,
rotary at model sizes, every topk_softmax kernel (row groups of 1..32 lanes, the block kernel)
with inf/NaN/ties, moe_align_block_size past 262,144 ids; then streams, CUDA graphs, a second
device and the device-side position check.

The three-way comparison: GPU == CPU within the kernels' rounding tolerance (ids and integer
outputs exactly), and both against the torch reference of _kernel_ref.
"""
from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest
import torch

import _kernel_ref as ref
from _kernel_utils import DTYPES, assert_close

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def kc(kl):
    """kernloop with its CUDA kernels (a GPU here but a CPU-only build is a failure, not a skip)."""
    if not kl.cuda_enabled():
        pytest.fail("a CUDA device is here but kernloop was built without its CUDA kernels -- see the configure log")
    return kl


def misaligned(shape, dtype, scale=1.0):
    """Random values of `shape` whose data starts one element past an allocation (never 16-byte
    aligned): buf.view(-1)[1:1 + n].view(shape)."""
    n = math.prod(shape)
    buf = torch.randn(n + 1, device="cuda").mul_(scale).to(dtype)
    return buf.view(-1)[1:1 + n].view(shape)


def randn(shape, dtype, aligned=True, scale=1.0):
    if not aligned:
        return misaligned(shape, dtype, scale)
    return (torch.randn(shape, device="cuda") * scale).to(dtype)


def three_way(gpu: torch.Tensor, cpu: torch.Tensor, want: torch.Tensor) -> None:
    assert gpu.device.type == "cuda"
    assert_close(gpu, cpu)
    assert_close(gpu, want)
    assert_close(cpu, want)


# -- norms -----------------------------------------------------------------------------------------

NORM_CASES = [((300, 4096), torch.bfloat16), ((300, 4096), torch.float16), ((300, 4096), torch.float32),
              ((2, 16384), torch.bfloat16), ((2, 8192), torch.float32), ((5, 5003), torch.float16),
              ((3, 4, 1000), torch.float32), ((1, 8), torch.bfloat16)]
LAYOUTS = ["contiguous", "misaligned", "row-strided", "row-strided-misaligned"]


def norm_input(shape, dtype, layout):
    if layout == "contiguous":
        return torch.randn(shape, dtype=dtype, device="cuda")
    if layout == "misaligned":
        return misaligned(shape, dtype)
    offset = 8 if layout == "row-strided" else 1  # 8 elements: rows stay 16-byte aligned for 16-bit types
    wide = torch.randn(*shape[:-1], shape[-1] + 24, dtype=dtype, device="cuda")
    return wide[..., offset:offset + shape[-1]]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape,dtype", NORM_CASES)
def test_rms_norm(kc, shape, dtype, layout):
    x = norm_input(shape, dtype, layout)
    w = randn((shape[-1],), dtype, aligned=not layout.endswith("misaligned"))
    out = kc.rms_norm(x, w, 1e-6)
    three_way(out, kc.rms_norm(x.cpu(), w.cpu(), 1e-6), ref.rms_norm(x, w, 1e-6))
    if layout == "contiguous":  # in place
        y = x.clone()
        torch.ops._C.rms_norm(y, y, w, 1e-6)
        assert torch.equal(y, out)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape,dtype", NORM_CASES)
def test_fused_add_rms_norm(kc, shape, dtype, layout):
    x = norm_input(shape, dtype, layout)
    r = randn(shape, dtype, aligned=not layout.endswith("misaligned"))
    w = randn((shape[-1],), dtype)
    xc, rc = x.cpu().clone(), r.cpu().clone()
    want_out, want_res = ref.fused_add_rms_norm(x, r, w, 1e-6)
    kc.fused_add_rms_norm(x, r, w, 1e-6)
    kc.fused_add_rms_norm(xc, rc, w.cpu(), 1e-6)
    three_way(r, rc, want_res)
    three_way(x, xc, want_out)


# -- silu_and_mul, moe_sum -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(300, 2 * 4096), (2, 2 * 11008), (3, 2 * 4097), (1, 2)])
@pytest.mark.parametrize("aligned", [True, False])
def test_silu_and_mul(kc, dtype, shape, aligned):
    x = randn(shape, dtype, aligned, scale=3.0)
    three_way(kc.silu_and_mul(x), kc.silu_and_mul(x.cpu()), ref.silu_and_mul(x))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("topk", [0, 1, 3, 8])
@pytest.mark.parametrize("num_tokens,hidden", [(3, 7), (257, 128), (4, 4096), (3, 32768)])
@pytest.mark.parametrize("aligned", [True, False])
def test_moe_sum(kc, dtype, topk, num_tokens, hidden, aligned):
    x = randn((num_tokens, topk, hidden), dtype, aligned)
    three_way(kc.moe_sum(x), kc.moe_sum(x.cpu()), ref.moe_sum(x))


# -- rotary ----------------------------------------------------------------------------------------

CACHE_ROWS = 4096


def make_cache(rot_dim, dtype):
    inv_freq = 1.0 / (10000 ** (torch.arange(0, rot_dim, 2, dtype=torch.float32) / rot_dim))
    freqs = torch.outer(torch.arange(CACHE_ROWS, dtype=torch.float32), inv_freq)
    return torch.cat([freqs.cos(), freqs.sin()], dim=-1).to(dtype=dtype, device="cuda")


ROTARY_CASES = {
    # name: (tokens, heads, kv_heads, head_size, rot_dim, head_pad)
    "llama-32x128": (64, 32, 8, 128, 128, 0),
    "more-kv-than-q": (9, 4, 16, 64, 64, 0),
    "gptj-partial": (33, 16, 16, 256, 64, 0),
    "head-stride": (17, 8, 4, 128, 128, 16),
    "odd": (5, 3, 1, 80, 32, 8),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("is_neox", [True, False])
@pytest.mark.parametrize("case", list(ROTARY_CASES))
def test_rotary_embedding(kc, dtype, is_neox, case):
    tokens, heads, kv_heads, head_size, rot_dim, pad = ROTARY_CASES[case]
    q_buf = torch.randn(tokens, heads, head_size + pad, dtype=dtype, device="cuda")
    k_buf = torch.randn(tokens, kv_heads, head_size + pad, dtype=dtype, device="cuda")
    query, key = q_buf[..., :head_size], k_buf[..., :head_size]  # head stride head_size + pad
    positions = torch.randint(CACHE_ROWS - 16, CACHE_ROWS, (tokens,), device="cuda")  # the cache's last rows
    positions[0] = CACHE_ROWS - 1
    cache = make_cache(rot_dim, dtype)
    qc, kcpu = query.cpu().clone(), key.cpu().clone()
    want_q, want_k = ref.rotary_embedding(positions, query, key, head_size, cache, is_neox)
    kc.rotary_embedding(positions, query, key, head_size, cache, is_neox)
    kc.rotary_embedding(positions.cpu(), qc, kcpu, head_size, cache.cpu(), is_neox)
    three_way(query, qc, want_q)
    three_way(key, kcpu, want_k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rotary_embedding_decode_positions_sliced_qkv(kc, dtype):
    batch, heads, kv_heads, head_size = 7, 32, 8, 128
    qkv = torch.randn(batch, (heads + 2 * kv_heads) * head_size, dtype=dtype, device="cuda")
    query = qkv[:, : heads * head_size].unsqueeze(1)
    key = qkv[:, heads * head_size: (heads + kv_heads) * head_size].unsqueeze(1)
    positions = torch.randint(0, CACHE_ROWS, (batch, 1), device="cuda")
    cache = make_cache(head_size, dtype)
    qkv_cpu = qkv.cpu().clone()
    want_q, want_k = ref.rotary_embedding(positions, query, key, head_size, cache, True)
    kc.rotary_embedding(positions, query, key, head_size, cache, True)
    kc.rotary_embedding(positions.cpu(), qkv_cpu[:, : heads * head_size].unsqueeze(1),
                        qkv_cpu[:, heads * head_size: (heads + kv_heads) * head_size].unsqueeze(1), head_size,
                        cache.cpu(), True)
    three_way(qkv, qkv_cpu, torch.cat([want_q.reshape(batch, -1), want_k.reshape(batch, -1),
                                       qkv[:, (heads + kv_heads) * head_size:].cpu()], dim=1))


def test_rotary_embedding_position_outside_the_cache_traps(kc, kernloop_build):
    """A bad position on the GPU stops the kernel with a device-side assert (reported by the next
    synchronizing call) instead of reading past cos_sin_cache. The CUDA context is unusable
    afterwards, so this runs in a child process."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(kernloop_build.root)!r})
        import torch, kernloop
        q = torch.randn(4, 64, device="cuda")
        cache = torch.randn(16, 64, device="cuda")
        kernloop.rotary_embedding(torch.tensor([0, 1, {{pos}}, 2], device="cuda"), q, None, 64, cache)
        torch.cuda.synchronize()
        print("no error")
    """)
    for pos in (16, -1):
        p = subprocess.run([sys.executable, "-c", script.format(pos=pos)], capture_output=True, text=True,
                           timeout=300)
        out = p.stdout + p.stderr
        assert p.returncode != 0 and "no error" not in out, out
        assert "device-side assert" in out and "pos < max_position" in out, out


# -- topk_softmax ----------------------------------------------------------------------------------

def grid_logits(num_tokens, num_experts, dtype):
    """Logits k/32 for |k| < 256: exact in every dtype, many exact ties, and distinct values far
    apart compared with float32 rounding, so the three implementations must agree on every id."""
    return (torch.randint(-256, 256, (num_tokens, num_experts)) / 32).to(dtype=dtype, device="cuda")


def special_rows(num_experts, dtype):
    inf, nan = float("inf"), float("nan")
    rows = torch.randint(-64, 64, (7, num_experts)) / 32
    rows[0] = 1.5                                 # all tied
    rows[1, num_experts // 2] = nan               # NaN: the whole softmax is NaN
    rows[2, num_experts - 1] = inf                # +inf: likewise
    rows[3, ::3] = -inf                           # -inf: probability 0, ranked after the finite ones
    rows[4] = -inf                                # all -inf: NaN
    rows[5] = -200.0
    rows[5, num_experts - 1] = 0.0                # the rest underflow to 0: tied, by index
    rows[6, : num_experts // 2] = -150.0          # -150 vs -200: both 0 in float32 after softmax
    rows[6, num_experts // 2:] = -200.0
    rows[6, num_experts - 1] = 0.0
    return rows.to(dtype=dtype, device="cuda")


def check_topk(kc, gating, topk, renormalize=False, bias=None, ids_dtype=torch.int32):
    w, ids, src = kc.topk_softmax(gating, topk, renormalize=renormalize, bias=bias, ids_dtype=ids_dtype)
    cw, cids, csrc = kc.topk_softmax(gating.cpu(), topk, renormalize=renormalize,
                                     bias=None if bias is None else bias.cpu(), ids_dtype=ids_dtype)
    want_w, want_ids, want_src = ref.topk_softmax(gating, topk, renormalize, bias)
    assert ids.dtype == ids_dtype
    assert torch.equal(ids.cpu(), cids)
    assert torch.equal(cids.long(), want_ids)
    assert torch.equal(src.cpu(), csrc) and torch.equal(csrc, want_src)
    torch.testing.assert_close(w.cpu(), cw, rtol=1e-5, atol=1e-6, equal_nan=True)
    torch.testing.assert_close(cw, want_w, rtol=1e-5, atol=1e-6, equal_nan=True)


TOPK_EXPERTS = [8, 128, 256, 513, 4096]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_experts", TOPK_EXPERTS)
@pytest.mark.parametrize("num_tokens", [1, 3, 4097])
def test_topk_softmax(kc, dtype, num_experts, num_tokens):
    gating = grid_logits(num_tokens, num_experts, dtype)
    check_topk(kc, gating, min(8, num_experts))
    bias = torch.randn(num_experts, device="cuda") * 0.05
    check_topk(kc, gating, min(6, num_experts), renormalize=True, bias=bias, ids_dtype=torch.int64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_experts", [1, 3, 6, 16, 32, 33, 60] + TOPK_EXPERTS)
def test_topk_softmax_inf_nan_ties(kc, dtype, num_experts):
    rows = special_rows(num_experts, dtype) if num_experts >= 3 else grid_logits(7, num_experts, dtype)
    for topk in sorted({1, min(4, num_experts), num_experts}):
        for renormalize in (False, True):
            check_topk(kc, rows, topk, renormalize=renormalize)


@pytest.mark.parametrize("num_experts,num_tokens", [(8, 3), (128, 3), (256, 3), (513, 3), (4096, 3), (513, 4097)])
def test_topk_softmax_topk_equals_experts(kc, num_experts, num_tokens):
    check_topk(kc, grid_logits(num_tokens, num_experts, torch.bfloat16), num_experts, renormalize=True)


def test_topk_softmax_misaligned_gating(kc):
    """A gating tensor that starts off a 16-byte boundary takes the scalar loads."""
    for num_experts in (8, 32, 128):
        gating = grid_logits(65 * num_experts + 1, 1, torch.float32).view(-1)[1:].view(65, num_experts)
        check_topk(kc, gating, 4)


# -- moe_align_block_size --------------------------------------------------------------------------

def check_align(kc, topk_ids, block_size, num_experts):
    sorted_ids, expert_ids, total = kc.moe_align_block_size(topk_ids, block_size, num_experts)
    c_sorted, c_experts, c_total = kc.moe_align_block_size(topk_ids.cpu(), block_size, num_experts)
    want_sorted, want_experts, want_total = ref.moe_align_block_size(topk_ids, block_size, num_experts,
                                                                     sorted_ids.numel(), expert_ids.numel())
    assert torch.equal(c_sorted, want_sorted) and torch.equal(c_experts, want_experts)  # CPU: stable order
    assert torch.equal(total.cpu(), want_total) and torch.equal(c_total, want_total)
    assert torch.equal(expert_ids.cpu(), want_experts)
    # CUDA fills each group with atomics: compare (group, entry) pairs as multisets.
    n = int(want_total)
    got = sorted_ids.cpu()
    group = want_experts[torch.arange(n) // block_size].long()
    key = lambda s: torch.sort(group * (topk_ids.numel() + 1) + s[:n].long()).values  # noqa: E731
    assert torch.equal(key(got), key(want_sorted))
    assert torch.equal(got[n:], want_sorted[n:])


@pytest.mark.parametrize("id_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("num_tokens,topk,num_experts,block_size", [
    (40000, 8, 1500, 16),    # 320,000 ids
    (40000, 8, 4096, 256),
    (33000, 8, 4096, 1),
    (5000, 4, 1500, 1),
    (1000, 2, 4096, 16),
    (7, 3, 1500, 256),
])
def test_moe_align_block_size(kc, id_dtype, num_tokens, topk, num_experts, block_size):
    ids = torch.randint(0, num_experts, (num_tokens, topk), dtype=id_dtype)
    other_rank = torch.rand(num_tokens, topk) < 0.05  # expert parallelism: -1 and ids >= num_experts
    ids[other_rank] = torch.where(torch.rand(int(other_rank.sum())) < 0.5, -1, num_experts + 7).to(id_dtype)
    check_align(kc, ids.cuda(), block_size, num_experts)


@pytest.mark.parametrize("num_experts,block_size", [(1500, 1), (4096, 16), (4096, 256)])
def test_moe_align_block_size_all_but_the_last_expert_empty(kc, num_experts, block_size):
    ids = torch.full((300000,), num_experts - 1, dtype=torch.int32)
    ids[::11] = -1
    check_align(kc, ids.view(-1, 4).cuda(), block_size, num_experts)


# -- streams, graphs, devices ----------------------------------------------------------------------

def run_all_ops(kl, inputs):
    """One call of every op on `inputs` (a dict of tensors, modified in place by the in-place ops);
    returns the outputs whose values are deterministic."""
    i = inputs
    out = {"rms_norm": kl.rms_norm(i["x"], i["w"], 1e-6)}
    kl.fused_add_rms_norm(i["x2"], i["res"], i["w"], 1e-6)
    out["fused_add_rms_norm"] = i["x2"]
    out["residual"] = i["res"]
    out["silu_and_mul"] = kl.silu_and_mul(i["gate_up"])
    kl.rotary_embedding(i["positions"], i["q"], i["k"], 128, i["cache"], True)
    out["q"], out["k"] = i["q"], i["k"]
    w, ids, _ = kl.topk_softmax(i["gating"], 8, renormalize=True, bias=i["bias"])
    out["topk_weights"], out["topk_ids"] = w, ids
    _, expert_ids, total = kl.moe_align_block_size(ids, 16, 128)
    out["expert_ids"], out["num_tokens_post_pad"] = expert_ids, total
    out["moe_sum"] = kl.moe_sum(i["moe_in"])
    return out


def make_inputs(device="cuda", seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g).to(device=device, dtype=torch.bfloat16)  # noqa: E731
    return {
        "x": r(64, 1024), "x2": r(64, 1024), "res": r(64, 1024), "w": r(1024), "gate_up": r(64, 2048),
        "positions": torch.randint(0, CACHE_ROWS, (64,), generator=g).to(device),
        "q": r(64, 8 * 128), "k": r(64, 2 * 128), "cache": r(CACHE_ROWS, 128),
        "gating": (torch.randint(-256, 256, (64, 128), generator=g) / 32).to(device),
        "bias": (torch.randn(128, generator=g) * 0.05).to(device), "moe_in": r(16, 8, 1024),
    }


def assert_same_outputs(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name].cpu(), b[name].cpu()), name


def test_non_default_stream(kc):
    """On a side stream the ops order with that stream's work (the inputs are produced on it)."""
    want = run_all_ops(kc, make_inputs())
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        inputs = make_inputs()  # host-to-device copies and clones on `side`
        got = run_all_ops(kc, inputs)
    side.synchronize()
    assert_same_outputs(got, want)
    cpu = run_all_ops(kc, make_inputs("cpu"))
    for name in ("topk_ids", "expert_ids", "num_tokens_post_pad"):
        assert torch.equal(got[name].cpu(), cpu[name]), name
    for name in ("rms_norm", "fused_add_rms_norm", "residual", "silu_and_mul", "q", "k", "moe_sum"):
        assert_close(got[name], cpu[name])


def test_cuda_graph_capture_and_replay(kc):
    static = make_inputs()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up outside the graph, as torch asks
        run_all_ops(kc, make_inputs())
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = run_all_ops(kc, static)
    for seed in (1, 2):
        fresh = make_inputs(seed=seed)
        for name, t in fresh.items():
            static[name].copy_(t)
        graph.replay()
        torch.cuda.synchronize()
        assert_same_outputs(captured, run_all_ops(kc, make_inputs(seed=seed)))


def test_second_device(kc):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs a second CUDA device")
    with torch.cuda.device(0):  # current device 0, tensors on 1: the ops switch devices themselves
        got = run_all_ops(kc, make_inputs("cuda:1"))
        assert all(t.device == torch.device("cuda:1") for t in got.values())
    torch.cuda.synchronize(1)
    assert_same_outputs(got, run_all_ops(kc, make_inputs("cuda:0")))
    with pytest.raises(RuntimeError, match="is on cuda:1 but input is on cuda:0"):
        kc.rms_norm(torch.randn(4, 8, device="cuda:0"), torch.randn(8, device="cuda:1"))
