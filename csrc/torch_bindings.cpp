// The one registry of the _C ops: schemas (as vLLM's), CPU and CUDA implementations, and the
// Python module entry point.
#include "py_module.h"  // Python.h first, as CPython asks

#include <torch/library.h>

#include "ops.h"

TORCH_LIBRARY(_C, m) {
  m.def("rms_norm(Tensor! result, Tensor input, Tensor weight, float epsilon) -> ()");
  m.def("fused_add_rms_norm(Tensor! input, Tensor! residual, Tensor weight, float epsilon) -> ()");
  m.def("silu_and_mul(Tensor! result, Tensor input) -> ()");
  m.def(
      "rotary_embedding(Tensor positions, Tensor! query, Tensor!? key, int head_size, Tensor cos_sin_cache, "
      "bool is_neox) -> ()");
}

// One implementation per op serves both devices: it checks the arguments and dispatches on the
// tensors' device itself.
TORCH_LIBRARY_IMPL(_C, CPU, m) {
  m.impl("rms_norm", &kernloop::ops::rms_norm);
  m.impl("fused_add_rms_norm", &kernloop::ops::fused_add_rms_norm);
  m.impl("silu_and_mul", &kernloop::ops::silu_and_mul);
  m.impl("rotary_embedding", &kernloop::ops::rotary_embedding);
}

#if KERNLOOP_WITH_CUDA
TORCH_LIBRARY_IMPL(_C, CUDA, m) {
  m.impl("rms_norm", &kernloop::ops::rms_norm);
  m.impl("fused_add_rms_norm", &kernloop::ops::fused_add_rms_norm);
  m.impl("silu_and_mul", &kernloop::ops::silu_and_mul);
  m.impl("rotary_embedding", &kernloop::ops::rotary_embedding);
}
#endif

KERNLOOP_PYTHON_MODULE(_C)
