"""bench/gpu_ops.py compares each kernloop op with a plain-torch implementation of the same op:
both sides are run here once on the CPU, at a small size, and must compute the same result --
otherwise the side-by-side figures would compare different work."""
from __future__ import annotations

import pytest
import torch

from _kernel_utils import TOLERANCES
from bench import gpu_ops


def flat(result):
    return list(result) if isinstance(result, (tuple, list)) else [result]


def test_every_case_has_a_plain_torch_twin_computing_the_same(kl):
    cases = gpu_ops.cases(kl, torch, "cpu", tokens=16, hidden=64)
    assert {c.op for c in cases} >= set(kl.available_ops())
    for case in cases:
        if case.torch is None:
            assert case.op.startswith("torch copy_")
            continue
        mine, theirs = flat(case.kernloop()), flat(case.torch())
        assert len(mine) == len(theirs), case.op
        for a, b in zip(mine, theirs):
            if a.is_floating_point():
                rtol, atol = TOLERANCES[a.dtype]
                torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=case.op)
            else:  # ids; expert_ids: kernloop's buffer has a -1 tail past the used blocks
                assert torch.equal(a.flatten()[: b.numel()].long(), b.flatten().long()), case.op
                assert (a.flatten()[b.numel():] == -1).all(), case.op


def test_shapes_option():
    assert gpu_ops.parse_shapes("16384x8192, 4x8") == [(16384, 8192), (4, 8)]
    for bad in ("16384", "x8", "3x8", "axb"):
        with pytest.raises(SystemExit, match="bad shape"):
            gpu_ops.parse_shapes(bad)


def test_markdown_table():
    data = {"device": "GPU-X", "capability": "9.0", "peak_bytes_per_s": 2e12, "iters": 50, "repeats": 3,
            "results": [{"op": "rms_norm", "shape": "[4, 8]", "bytes_moved": 10**9, "seconds": [1e-3] * 3,
                         "gbps": [1000.0] * 3, "torch_seconds": [2e-3] * 3, "torch_gbps": [500.0] * 3},
                        {"op": "torch copy_ (reference)", "shape": "[4, 8]", "bytes_moved": 10**9,
                         "seconds": [1e-3], "gbps": [1000.0], "torch_seconds": [], "torch_gbps": []}]}
    md = gpu_ops.render_markdown(data).splitlines()
    assert md[0].startswith("GPU-X (sm_90), peak 2000 GB/s")
    assert md[4] == "| rms_norm | [4, 8] | 1000.0 | 1000 | 50.0% | 2000.0 | 500 | 25.0% | 2.00x |"
    assert md[5] == "| torch copy_ (reference) | [4, 8] | 1000.0 | 1000 | 50.0% |  |  |  |  |"
    assert "rms_norm" in gpu_ops.render(data)
