# kernloop_find_torch(): lean imported targets for the torch package of ${Python_EXECUTABLE}.
#
# Why not find_package(Torch): measured on the dev machine (torch 2.14.1+cu130, nvcc 13.0),
# torch's config costs about as much as our own set-up (~3 s for a fresh configure either way),
# but with a CUDA torch it runs torch's FindCUDA, which (a) fails outright when the toolkit is
# missing or nvcc is a wrapper script ("Your installed Caffe2 version uses CUDA but I cannot find
# the CUDA libraries"), so a CPU-only build of a CUDA torch would be impossible; (b) appends
# -gencode flags for its own arch guess to CMAKE_CUDA_FLAGS; (c) puts CUDA_nvrtc_LIBRARY-NOTFOUND
# into TORCH_LIBRARIES and warns about kineto. The kernels only need torch's headers plus
# libc10/libtorch_cpu (and libc10_cuda for streams), so we build those targets from the
# package's include/ and lib/ directly. torch is located without importing it (importing a
# CUDA torch costs seconds): find_spec() for the directory and torch/version.py for the
# version and CUDA flavour.
#
# Results (in the caller's scope):
#   KERNLOOP_TORCH_DIR, KERNLOOP_TORCH_VERSION, KERNLOOP_TORCH_CUDA_VERSION ("" for a CPU torch)
#   kernloop::torch       headers (C++ TUs only) + libc10 + libtorch_cpu
#   kernloop::torch_cuda  libc10_cuda (created by kernloop_torch_cuda_target() once CUDA is on)
function(kernloop_find_torch)
  set(_probe [=[
import importlib.util, os, runpy
spec = importlib.util.find_spec("torch")
if spec is None or not spec.submodule_search_locations:
    raise SystemExit("torch is not installed")
root = list(spec.submodule_search_locations)[0]
try:
    v = runpy.run_path(os.path.join(root, "version.py"))
    version, cuda = v["__version__"], v.get("cuda")
except Exception:  # unusual layout: fall back to importing torch
    import torch
    version, cuda = torch.__version__, torch.version.cuda
print(root, version, cuda or "", sep="\n")
]=])
  execute_process(
    COMMAND "${Python_EXECUTABLE}" -c "${_probe}"
    OUTPUT_VARIABLE _out ERROR_VARIABLE _err RESULT_VARIABLE _rc
    OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT _rc EQUAL 0)
    string(STRIP "${_err}" _err)
    message(FATAL_ERROR
      "torch not found for ${Python_EXECUTABLE} (${_err}) -- install it "
      "(pip install -r requirements/cuda.txt, or requirements/cpu.txt) or point "
      "KERNLOOP_PYTHON_EXECUTABLE at the Python that has it")
  endif()
  string(REPLACE "\n" ";" _out "${_out}")
  list(GET _out 0 _dir)
  list(GET _out 1 _version)
  list(LENGTH _out _n)
  set(_cuda "")
  if(_n GREATER 2)
    list(GET _out 2 _cuda)
  endif()

  set(_libs "")
  foreach(_name c10 torch_cpu)
    set(_lib "${_dir}/lib/${CMAKE_SHARED_LIBRARY_PREFIX}${_name}${CMAKE_SHARED_LIBRARY_SUFFIX}")
    if(NOT EXISTS "${_lib}")
      message(FATAL_ERROR "torch at ${_dir} has no lib/${_name} -- reinstall torch (pip install --force-reinstall torch)")
    endif()
    list(APPEND _libs "${_lib}")
  endforeach()
  if(NOT EXISTS "${_dir}/include/torch/library.h")
    message(FATAL_ERROR "torch at ${_dir} ships no C++ headers (include/torch/library.h) -- install a regular torch wheel")
  endif()

  if(NOT TARGET kernloop::torch)
    add_library(kernloop::torch INTERFACE IMPORTED GLOBAL)
    # C++ only: a .cu that includes a torch header then fails to compile at once, which keeps
    # the kernels torch-free (the 141 s / 2.7 GB ATen-in-nvcc compile never comes back).
    set_target_properties(kernloop::torch PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "$<$<COMPILE_LANGUAGE:CXX>:${_dir}/include>"
      INTERFACE_LINK_LIBRARIES "${_libs}")
  endif()

  set(KERNLOOP_TORCH_DIR "${_dir}" PARENT_SCOPE)
  set(KERNLOOP_TORCH_VERSION "${_version}" PARENT_SCOPE)
  set(KERNLOOP_TORCH_CUDA_VERSION "${_cuda}" PARENT_SCOPE)
endfunction()

# kernloop_torch_cuda_target(): kernloop::torch_cuda = libc10_cuda + the CUDA runtime headers and
# library. KERNLOOP_CUDA_EXTRA_INCLUDE_DIRS (pip-installed CUDA headers, e.g.
# site-packages/nvidia/cu13/include) come after the toolkit's own, and for C++ only: torch's CUDA
# headers may need cuBLAS/cuSPARSE headers the toolkit lacks, while nvcc must keep its own
# runtime headers.
function(kernloop_torch_cuda_target)
  set(_lib "${KERNLOOP_TORCH_DIR}/lib/${CMAKE_SHARED_LIBRARY_PREFIX}c10_cuda${CMAKE_SHARED_LIBRARY_SUFFIX}")
  if(NOT EXISTS "${_lib}")
    message(FATAL_ERROR "torch at ${KERNLOOP_TORCH_DIR} has no lib/c10_cuda -- install a CUDA torch or set KERNLOOP_ENABLE_CUDA=OFF")
  endif()
  set(_dirs ${CUDAToolkit_INCLUDE_DIRS})
  foreach(_d IN LISTS KERNLOOP_CUDA_EXTRA_INCLUDE_DIRS)
    if(NOT IS_DIRECTORY "${_d}")
      message(FATAL_ERROR "KERNLOOP_CUDA_EXTRA_INCLUDE_DIRS: ${_d} is not a directory -- regenerate the presets (python tools/generate_presets.py --force-overwrite)")
    endif()
    list(APPEND _dirs "${_d}")
  endforeach()
  if(NOT TARGET kernloop::torch_cuda)
    add_library(kernloop::torch_cuda INTERFACE IMPORTED GLOBAL)
    set_target_properties(kernloop::torch_cuda PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "$<$<COMPILE_LANGUAGE:CXX>:${_dirs}>"
      INTERFACE_LINK_LIBRARIES "${_lib};CUDA::cudart")
  endif()
endfunction()
