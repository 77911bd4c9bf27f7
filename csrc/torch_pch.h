// The torch headers of the glue TUs (ops.cpp, torch_bindings.cpp and their moe/ twins), parsed
// once per build dir as a precompiled header (KERNLOOP_PCH, cmake/pch.cmake) instead of once per
// TU. Only C++ glue TUs use it: the kernels (.cu and cpu/*.cpp) stay torch-free.
#pragma once

#include <Python.h>  // first, as CPython asks (the bindings TUs include it through py_module.h)

#include <ATen/MemoryOverlap.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#if KERNLOOP_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif
