# define_extension_target(NAME DESTINATION <dir> SOURCES <files...> [LIBRARIES <targets...>]
#                         [INCLUDE_DIRECTORIES <dirs...>])
#
# One Python extension module NAME (e.g. _C): built against the stable ABI, so the file is
# NAME.abi3.so; installed into DESTINATION relative to CMAKE_INSTALL_PREFIX (the presets set the
# prefix to the source tree, so `--target install` drops it into the package). CUDA sources
# carry their own -gencode flags (kernloop_set_cuda_archs), so the target's CUDA_ARCHITECTURES
# is OFF; NVCC_THREADS becomes nvcc's --threads. Job pools and compiler launchers come from the
# CMAKE_JOB_POOL_* / CMAKE_*_COMPILER_LAUNCHER cache variables, which CMake applies to every
# target by itself.
function(define_extension_target NAME)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "DESTINATION" "SOURCES;LIBRARIES;INCLUDE_DIRECTORIES")
  if(NOT ARG_DESTINATION OR NOT ARG_SOURCES)
    message(FATAL_ERROR "define_extension_target(${NAME}): DESTINATION and SOURCES are required")
  endif()

  Python_add_library(${NAME} MODULE USE_SABI 3 WITH_SOABI ${ARG_SOURCES})
  target_include_directories(${NAME} PRIVATE ${ARG_INCLUDE_DIRECTORIES})
  target_link_libraries(${NAME} PRIVATE ${ARG_LIBRARIES})
  target_compile_definitions(${NAME} PRIVATE
    KERNLOOP_WITH_CUDA=$<BOOL:${KERNLOOP_WITH_CUDA}>)
  set_target_properties(${NAME} PROPERTIES
    CXX_VISIBILITY_PRESET hidden
    CUDA_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)

  if(KERNLOOP_WITH_CUDA)
    set_target_properties(${NAME} PROPERTIES
      CUDA_ARCHITECTURES OFF
      # Share torch's libcudart.so instead of a second, static runtime inside the module.
      CUDA_RUNTIME_LIBRARY Shared)
    if(NVCC_THREADS)
      target_compile_options(${NAME} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--threads=${NVCC_THREADS}>)
    endif()
    # The nvcc launcher (buildtools/cache/nvcc_threads.sh) goes first: it may raise --threads for
    # one build when few TUs are dirty, without a change to any command line here.
    if(KERNLOOP_NVCC_WRAPPER)
      set(_kl_launchers "${KERNLOOP_NVCC_WRAPPER}")
      if(CMAKE_CUDA_COMPILER_LAUNCHER)
        list(APPEND _kl_launchers ${CMAKE_CUDA_COMPILER_LAUNCHER})
      endif()
      set_target_properties(${NAME} PROPERTIES CUDA_COMPILER_LAUNCHER "${_kl_launchers}")
    endif()
  endif()

  install(TARGETS ${NAME} LIBRARY DESTINATION ${ARG_DESTINATION} COMPONENT ${NAME})
endfunction()
