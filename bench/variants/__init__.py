"""The vLLM-style variant of one kernel, generated into a temporary copy of the tree.

kernloop keeps torch out of its ``.cu`` files; vLLM's ``csrc/activation_kernels.cu`` includes
``<torch/all.h>`` and ``ATen/cuda/CUDAContext.h``, takes torch tensors in its launcher and is built
for torch's default arch list. :func:`apply_vllm_style` turns a copy of this tree into that shape for
``silu_and_mul`` -- the same kernel -- so the benchmarks can build both side by side:

- ``csrc/cuda/activation_kernels.cu`` is replaced by ``bench/variants/activation_kernels.cu``;
- ``csrc/ops.cpp`` calls the variant's tensor launcher instead of the raw-pointer one;
- ``CMakeLists.txt`` gets a block that hands that one ``.cu`` torch's include directories (the
  project gives them to C++ only) and its own ``-gencode`` list, ``KERNLOOP_BENCH_VARIANT_ARCHS``.

Nothing here ever writes into the checkout: every path is inside the copy it is given.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from buildtools.util import proc
from buildtools.errors import KernloopError

__all__ = ["VARIANT_TU", "VARIANT_ARCHS_VAR", "apply_vllm_style", "torch_default_archs"]

HERE = Path(__file__).resolve().parent
VARIANT_TU = "csrc/cuda/activation_kernels.cu"
VARIANT_ARCHS_VAR = "KERNLOOP_BENCH_VARIANT_ARCHS"
MARK = "# kernloop-bench: vLLM-style variant"

_CALL = re.compile(r"check_launch\(op,\s*cuda::silu_and_mul\([^;]*\)\);")
_DECL = """
#if KERNLOOP_WITH_CUDA
namespace kernloop::vllm_style {
void silu_and_mul(at::Tensor& out, const at::Tensor& input);  // bench/variants/activation_kernels.cu
}
#endif
"""
_CMAKE = f"""
{MARK} of {VARIANT_TU} (bench/variants; not part of the project).
# torch's headers reach this .cu (the project gives them to C++ only), with its own arch list.
if(KERNLOOP_WITH_CUDA)
  set({VARIANT_ARCHS_VAR} "" CACHE STRING "archs of the vLLM-style variant TU")
  if(NOT {VARIANT_ARCHS_VAR})
    message(FATAL_ERROR "{VARIANT_ARCHS_VAR} is not set")
  endif()
  kernloop_parse_arch_list(_kl_variant_archs "${{{VARIANT_ARCHS_VAR}}}")
  kernloop_gencode_flags(_kl_variant_flags "${{_kl_variant_archs}}")
  set_source_files_properties(${{CSRC}}/cuda/activation_kernels.cu PROPERTIES
    COMPILE_OPTIONS "${{_kl_variant_flags}}"
    INCLUDE_DIRECTORIES "${{KERNLOOP_TORCH_DIR}}/include;${{KERNLOOP_TORCH_DIR}}/include/torch/csrc/api/include;${{KERNLOOP_CUDA_EXTRA_INCLUDE_DIRS}}")
  message(STATUS "kernloop-bench: vLLM-style {VARIANT_TU} for ${{_kl_variant_archs}}")
endif()
"""


def apply_vllm_style(tree: Path) -> None:
    """Rewrite the copy at ``tree`` into the vLLM-style variant (idempotent).

    Raises KernloopError when the tree no longer has the shape the variant expects (csrc/ops.cpp
    changed how it calls the launcher), naming what to update.
    """
    tree = Path(tree)
    cmakelists = tree / "CMakeLists.txt"
    text = cmakelists.read_text(encoding="utf-8")
    if MARK in text:
        return
    ops = tree / "csrc" / "ops.cpp"
    source = ops.read_text(encoding="utf-8")
    patched, n = _CALL.subn("vllm_style::silu_and_mul(out, input);", source)
    if n != 1 or '#include "glue.h"\n' not in patched:
        raise KernloopError(f"{ops}: the call cuda::silu_and_mul(...) (or #include \"glue.h\") was not found "
                            "exactly once; the vLLM-style variant cannot be applied",
                            "update bench/variants/__init__.py to the new csrc/ops.cpp")
    patched = patched.replace('#include "glue.h"\n', '#include "glue.h"\n' + _DECL, 1)
    ops.write_text(patched, encoding="utf-8")
    shutil.copyfile(HERE / "activation_kernels.cu", tree / VARIANT_TU)
    cmakelists.write_text(text + _CMAKE, encoding="utf-8")


def torch_default_archs(cmake: Path, torch_dir: Path, cuda_version: str) -> tuple[str, ...]:
    """The arch list torch's own CMake picks when no GPU is visible ("Common"), for this CUDA version.

    Read from torch's ``select_compute_arch.cmake`` through ``cmake -P`` rather than copied here, so
    it follows the installed torch.
    """
    script = torch_dir / "share/cmake/Caffe2/Modules_CUDA_fix/upstream/FindCUDA/select_compute_arch.cmake"
    if not script.is_file():
        raise KernloopError(f"{script} not found: cannot read torch's default CUDA arch list",
                            "install a CUDA build of torch")
    probe = (f'set(CUDA_VERSION "{cuda_version}")\ninclude("{script.as_posix()}")\n'
             'message("${CUDA_COMMON_GPU_ARCHITECTURES}")\n')
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kernloop-bench-archs-") as tmp:
        path = Path(tmp) / "archs.cmake"
        path.write_text(probe, encoding="utf-8")
        result = proc.run([cmake, "-P", path], timeout=60)
    archs = tuple(a for a in (result.stdout + result.stderr).strip().split(";") if a)
    if not result.ok or not archs or not all(re.fullmatch(r"\d+\.\d+[af]?(\+PTX)?", a) for a in archs):
        raise KernloopError(f"cmake -P on torch's select_compute_arch.cmake gave {archs!r}",
                            "check the torch installation")
    return archs
