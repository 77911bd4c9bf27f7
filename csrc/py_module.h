// PyInit_<name> for an extension module whose real content is its TORCH_LIBRARY registrations:
// `import kernloop._C` loads the library (registering torch.ops._C.*) and gets a tiny module
// that only says whether the CUDA kernels were built (WITH_CUDA). Stable ABI (Py_LIMITED_API is
// set by Python_add_library(USE_SABI)), so one build serves every CPython >= 3.10.
#pragma once

#include <Python.h>

#define KERNLOOP_PY_CONCAT_(a, b) a##b
#define KERNLOOP_PY_CONCAT(a, b) KERNLOOP_PY_CONCAT_(a, b)
#define KERNLOOP_PY_STR_(x) #x
#define KERNLOOP_PY_STR(x) KERNLOOP_PY_STR_(x)

#define KERNLOOP_PYTHON_MODULE(name)                                                                      \
  extern "C" PyMODINIT_FUNC KERNLOOP_PY_CONCAT(PyInit_, name)(void) {                                     \
    static PyModuleDef def = {PyModuleDef_HEAD_INIT, KERNLOOP_PY_STR(name),                               \
                              "kernloop ops, registered as torch.ops." KERNLOOP_PY_STR(name), -1, nullptr}; \
    PyObject* module = PyModule_Create(&def);                                                             \
    if (module != nullptr && PyModule_AddIntConstant(module, "WITH_CUDA", KERNLOOP_WITH_CUDA) < 0) {      \
      Py_DECREF(module);                                                                                  \
      return nullptr;                                                                                     \
    }                                                                                                     \
    return module;                                                                                        \
  }
