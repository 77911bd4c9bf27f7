# kernloop_setup_cuda(): decide whether the CUDA kernels are built, and enable CUDA if so.
#
# KERNLOOP_ENABLE_CUDA=ON/OFF is obeyed (ON fails with the reason when CUDA cannot work); unset,
# CUDA is on exactly when an nvcc is there AND torch was built with CUDA. Otherwise the same ops
# are built for the CPU only. Either way one configure message says which and why.
# A macro: enable_language() must run at file scope.
#
# Sets KERNLOOP_WITH_CUDA (ON/OFF) in the caller's scope.
macro(kernloop_setup_cuda)
  # CUDA_TOOLKIT_ROOT_DIR names the real toolkit (nvcc may be a wrapper script elsewhere).
  if(CUDA_TOOLKIT_ROOT_DIR)
    set(CUDAToolkit_ROOT "${CUDA_TOOLKIT_ROOT_DIR}")
    if(NOT CMAKE_CUDA_COMPILER AND EXISTS "${CUDA_TOOLKIT_ROOT_DIR}/bin/nvcc")
      set(CMAKE_CUDA_COMPILER "${CUDA_TOOLKIT_ROOT_DIR}/bin/nvcc")
    endif()
  endif()

  # AUTO (or unset/empty), or any CMake boolean.
  string(TOUPPER "${KERNLOOP_ENABLE_CUDA}" _kl_mode)
  if(_kl_mode STREQUAL "" OR _kl_mode STREQUAL "AUTO")
    set(_kl_mode AUTO)
  elseif(_kl_mode)
    set(_kl_mode ON)
  else()
    set(_kl_mode OFF)
  endif()

  set(_kl_nvcc "")
  set(_kl_why "")
  if(NOT _kl_mode STREQUAL "OFF")
    if(CMAKE_CUDA_COMPILER)
      if(EXISTS "${CMAKE_CUDA_COMPILER}")
        set(_kl_nvcc "${CMAKE_CUDA_COMPILER}")
      else()
        set(_kl_why "CMAKE_CUDA_COMPILER=${CMAKE_CUDA_COMPILER} does not exist")
      endif()
    else()
      include(CheckLanguage)
      check_language(CUDA)
      if(CMAKE_CUDA_COMPILER)
        set(_kl_nvcc "${CMAKE_CUDA_COMPILER}")
      else()
        set(_kl_why "no nvcc found (set CMAKE_CUDA_COMPILER or CUDA_TOOLKIT_ROOT_DIR)")
      endif()
    endif()
    if(_kl_nvcc AND NOT KERNLOOP_TORCH_CUDA_VERSION)
      set(_kl_why "torch ${KERNLOOP_TORCH_VERSION} was built without CUDA")
    endif()
  endif()

  if(_kl_mode STREQUAL "AUTO")
    if(_kl_why)
      set(KERNLOOP_WITH_CUDA OFF)
    else()
      set(KERNLOOP_WITH_CUDA ON)
    endif()
  elseif(_kl_mode STREQUAL "ON")
    if(_kl_why)
      message(FATAL_ERROR "KERNLOOP_ENABLE_CUDA=ON but ${_kl_why} -- install the CUDA toolkit and a CUDA torch, or set KERNLOOP_ENABLE_CUDA=OFF")
    endif()
    set(KERNLOOP_WITH_CUDA ON)
  else()
    set(KERNLOOP_WITH_CUDA OFF)
    set(_kl_why "KERNLOOP_ENABLE_CUDA=OFF")
  endif()

  if(KERNLOOP_WITH_CUDA)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    kernloop_torch_cuda_target()
    message(STATUS "kernloop: CUDA kernels ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION} at ${CMAKE_CUDA_COMPILER}, "
                   "torch ${KERNLOOP_TORCH_VERSION}); CPU kernels are built too")
  else()
    message(STATUS "kernloop: CPU-only build of the same ops (CUDA off: ${_kl_why}), torch ${KERNLOOP_TORCH_VERSION}")
  endif()
  unset(_kl_mode)
  unset(_kl_nvcc)
  unset(_kl_why)
endmacro()
