// The one registry of the _moe_C ops: schemas (as vLLM's -- docs/kernels.md says which vLLM;
// moe_sum's mutation mark is on the tensor it actually writes), CPU and CUDA implementations,
// and the Python module entry point.
#include "py_module.h"  // Python.h first, as CPython asks

#include <torch/library.h>

#include "moe/moe_ops.h"

TORCH_LIBRARY(_moe_C, m) {
  m.def(
      "topk_softmax(Tensor! topk_weights, Tensor! topk_indices, Tensor! token_expert_indices, "
      "Tensor gating_output, bool renormalize, Tensor? bias) -> ()");
  m.def(
      "moe_align_block_size(Tensor topk_ids, int num_experts, int block_size, Tensor! sorted_token_ids, "
      "Tensor! experts_ids, Tensor! num_tokens_post_pad) -> ()");
  m.def("moe_sum(Tensor input, Tensor! output) -> ()");
}

TORCH_LIBRARY_IMPL(_moe_C, CPU, m) {
  m.impl("topk_softmax", &kernloop::moe::ops::topk_softmax);
  m.impl("moe_align_block_size", &kernloop::moe::ops::moe_align_block_size);
  m.impl("moe_sum", &kernloop::moe::ops::moe_sum);
}

#if KERNLOOP_WITH_CUDA
TORCH_LIBRARY_IMPL(_moe_C, CUDA, m) {
  m.impl("topk_softmax", &kernloop::moe::ops::topk_softmax);
  m.impl("moe_align_block_size", &kernloop::moe::ops::moe_align_block_size);
  m.impl("moe_sum", &kernloop::moe::ops::moe_sum);
}
#endif

KERNLOOP_PYTHON_MODULE(_moe_C)
