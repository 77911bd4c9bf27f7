"""Every CUDA kernel in csrc/ declares __launch_bounds__ (no compiler, no build needed).

Without it the compiler may give a kernel more registers than a block of the launcher's widest
size can have (moe_sum_kernel<float, 4> took 61 registers on sm_75: one more and a 1024-thread
launch fails with "too many resources requested"), and nothing says so until a GPU runs it.
"""
from __future__ import annotations

import re
from pathlib import Path

CSRC = Path(__file__).resolve().parents[2] / "csrc"
COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
BOUNDS = r"__launch_bounds__\s*\([^()]*(?:\([^()]*\)[^()]*)*\)\s*"
# [__launch_bounds__(...)] __global__ [void] [__launch_bounds__(...)] [void] name(
KERNEL = re.compile(rf"(?P<before>{BOUNDS})?__global__\s+(?:void\s+)?(?P<after>{BOUNDS})?(?:void\s+)?(?P<name>\w+)\s*\(")


def kernels(text: str) -> list[tuple[str, bool]]:
    """(name, has __launch_bounds__) of each __global__ function in text."""
    return [(m.group("name"), bool(m.group("before") or m.group("after")))
            for m in KERNEL.finditer(COMMENT.sub("", text))]


def test_every_kernel_has_launch_bounds():
    found, missing = 0, []
    for path in sorted([*CSRC.rglob("*.cu"), *CSRC.rglob("*.cuh")]):
        for name, bounded in kernels(path.read_text(encoding="utf-8")):
            found += 1
            if not bounded:
                missing.append(f"{path.relative_to(CSRC)}: {name}")
    assert found >= 8, f"only {found} __global__ kernels found under {CSRC}: is the pattern still right?"
    assert not missing, "kernels without __launch_bounds__:\n" + "\n".join(missing)


def test_the_check_sees_a_kernel_without_bounds():
    assert kernels("template <int N>\n__global__ void k(int* p) {}") == [("k", False)]
    assert kernels("__global__ void __launch_bounds__(kMax)\n    k(int* p) {}") == [("k", True)]
    assert kernels("__launch_bounds__(W * f(2)) __global__ void k2(int* p) {}") == [("k2", True)]
