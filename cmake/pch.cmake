# kernloop_precompile_torch_headers(FIRST OTHER HEADER <header> TORCH_FREE <sources...>)
#
# KERNLOOP_PCH (default ON with GCC and Clang): precompile HEADER, the torch headers of the glue
# TUs, once for target FIRST and reuse it in OTHER (_C and _moe_C). Reuse needs identical flags, so
# neither target defines <target>_EXPORTS (nothing here reads it). TORCH_FREE sources (the CPU
# kernels) skip the header; CUDA sources never see it (C++ only).
#
# With ccache in front of the compiler, the glue TUs get ccache's precompiled-header settings on
# their own command lines (ccache KEY=VALUE compiler ...): sloppiness pch_defines,time_macros as
# its manual requires, and include_file_mtime,include_file_ctime so a header precompiled moments
# before is not "too new" to cache. (pch_external_checksum needs a .sum file CMake does not
# write.) Every other TU keeps ccache's defaults.
if(CMAKE_CXX_COMPILER_ID MATCHES "^(GNU|Clang|AppleClang)$")
  set(_kl_pch_default ON)
else()
  set(_kl_pch_default OFF)
endif()
option(KERNLOOP_PCH "Precompile the torch headers of the glue TUs" ${_kl_pch_default})
unset(_kl_pch_default)

function(kernloop_precompile_torch_headers FIRST OTHER)
  cmake_parse_arguments(PARSE_ARGV 2 ARG "" "HEADER" "TORCH_FREE")
  if(NOT KERNLOOP_PCH)
    message(STATUS "kernloop: precompiled torch headers OFF (KERNLOOP_PCH)")
    return()
  endif()
  set_target_properties(${FIRST} ${OTHER} PROPERTIES DEFINE_SYMBOL "")
  target_precompile_headers(${FIRST} PRIVATE "$<$<COMPILE_LANGUAGE:CXX>:${ARG_HEADER}>")
  target_precompile_headers(${OTHER} REUSE_FROM ${FIRST})
  set_source_files_properties(${ARG_TORCH_FREE} PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
  list(GET CMAKE_CXX_COMPILER_LAUNCHER 0 _launcher)
  get_filename_component(_launcher_name "${_launcher}" NAME)
  if(_launcher_name MATCHES "^ccache")
    set_target_properties(${FIRST} ${OTHER} PROPERTIES CXX_COMPILER_LAUNCHER
      "${CMAKE_CXX_COMPILER_LAUNCHER};sloppiness=pch_defines,time_macros,include_file_mtime,include_file_ctime")
  endif()
  message(STATUS "kernloop: precompiled torch headers ON (${ARG_HEADER}, shared by ${FIRST} and ${OTHER})")
endfunction()
