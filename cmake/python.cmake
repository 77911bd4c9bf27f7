# kernloop_find_python(): the Python the kernels are built for.
#
# KERNLOOP_PYTHON_EXECUTABLE (set by the presets) wins; otherwise FindPython searches as usual.
# A macro, not a function: Python_add_library() later reads the Python_* variables that
# find_package() sets, and those must live in the caller's scope.
macro(kernloop_find_python)
  if(KERNLOOP_PYTHON_EXECUTABLE)
    if(NOT EXISTS "${KERNLOOP_PYTHON_EXECUTABLE}")
      message(FATAL_ERROR
        "KERNLOOP_PYTHON_EXECUTABLE=${KERNLOOP_PYTHON_EXECUTABLE} does not exist -- "
        "regenerate the presets (python tools/generate_presets.py --force-overwrite) "
        "or pass -DKERNLOOP_PYTHON_EXECUTABLE=/path/to/python")
    endif()
    set(Python_EXECUTABLE "${KERNLOOP_PYTHON_EXECUTABLE}")
  endif()
  # SABIModule: the modules are built once against the stable ABI (abi3) and load in any
  # Python >= 3.10 of this platform; no libpython is linked.
  find_package(Python 3.10 REQUIRED COMPONENTS Interpreter Development.SABIModule)
endmacro()
