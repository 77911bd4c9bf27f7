// Limits shared by the CPU and CUDA paths of _moe_C, so both accept exactly the same calls.
#pragma once

#include <cstdint>

namespace kernloop::moe {

// moe_align_block_size keeps per-expert counts and offsets in CUDA shared memory:
// (2 * 4096 + 1) * 4 bytes stays under the 48 KiB every arch gives without opt-in.
constexpr int64_t kMaxAlignExperts = 4096;

}  // namespace kernloop::moe
