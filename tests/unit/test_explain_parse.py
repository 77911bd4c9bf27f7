"""`build --explain`: ninja's explain lines and ccache's stats log, parsed (no compiler)."""
from __future__ import annotations

from pathlib import Path

from buildtools.cache.launcher import parse_stats_log
from buildtools.cmake.explain import explain_tus, parse_explain

SRC = Path("/work/kl")
BUILD = SRC / "cmake-build-release"
# as ninja 1.13 prints them (cmake --build ... -- -d explain)
LINES = [
    "ninja explain: output CMakeFiles/_C.dir/csrc/cpu/layernorm.cpp.o older than most recent input "
    "../csrc/common/dtype.h (1796158654893076124 vs 1796159345261068983)",
    "@@kl 1 4 1 0.2 @@ Building CXX object CMakeFiles/_C.dir/csrc/cpu/layernorm.cpp.o",
    "ninja explain: output CMakeFiles/_C.dir/csrc/cpu/activation.cpp.o older than most recent input "
    "/work/kl/csrc/cpu/activation.cpp (1 vs 2)",
    "ninja explain: command line changed for CMakeFiles/_C.dir/csrc/cuda/act.cu.o",
    "ninja explain: output CMakeFiles/_C.dir/csrc/ops.cpp.o doesn't exist",
    "ninja explain: CMakeFiles/_C.dir/csrc/ops.cpp.o is dirty",
    "ninja explain: CMakeFiles/_C.dir/csrc/x.cpp.o is dirty",
    "ninja explain: deps for 'CMakeFiles/_C.dir/csrc/z.cpp.o' are missing",
    "ninja explain: CMakeFiles/_C.dir/csrc/z.cpp.o is dirty",
]
OUTS = ["CMakeFiles/_C.dir/csrc/cpu/layernorm.cpp.o", "CMakeFiles/_C.dir/csrc/cpu/activation.cpp.o",
        "CMakeFiles/_C.dir/csrc/cuda/act.cu.o", "CMakeFiles/_C.dir/csrc/ops.cpp.o", "CMakeFiles/_C.dir/csrc/x.cpp.o",
        "CMakeFiles/_C.dir/csrc/y.cpp.o", "CMakeFiles/_C.dir/csrc/z.cpp.o"]


def test_each_tu_gets_ninjas_first_reason_in_the_users_words():
    reasons = parse_explain(LINES, SRC, BUILD)
    sources = {o: o.split(".dir/", 1)[1][:-2] for o in OUTS}
    cache = {"csrc/cpu/layernorm.cpp": "miss", "csrc/cuda/act.cu": "hit"}
    got = [(e.source, e.reason, e.cache) for e in explain_tus(OUTS, reasons, sources, cache)]
    assert got == [
        ("csrc/cpu/layernorm.cpp", "a header changed: csrc/common/dtype.h", "miss"),
        ("csrc/cpu/activation.cpp", "the source changed", None),
        ("csrc/cuda/act.cu", "its command changed (a flag, a define, the compiler)", "hit"),
        ("csrc/ops.cpp", "no previous output", None),  # "doesn't exist" beats the later "is dirty"
        ("csrc/x.cpp", "an input of it was rebuilt", None),
        ("csrc/y.cpp", "ninja gave no reason (a restat, or a regenerated build.ninja)", None),
        ("csrc/z.cpp", "no previous output (no header list recorded for it)", None),  # a new build dir
    ]


def test_a_header_outside_the_source_dir_is_shown_absolute():
    reasons = parse_explain(["ninja explain: output a.o older than most recent input /usr/include/x.h (1 vs 2)"],
                            SRC, BUILD)
    assert reasons == {"a.o": ("older", "/usr/include/x.h")}


def test_ccache_stats_log_per_compilation():
    # as ccache 4.14 writes it to CCACHE_STATSLOG
    log = "\n".join([
        "# /work/kl/csrc/a.cu", "cache_miss", "direct_cache_miss", "local_storage_miss", "preprocessed_cache_miss",
        "# /work/kl/csrc/b.cpp", "direct_cache_hit", "local_storage_hit",
        "# /work/kl/csrc/c.cpp", "direct_cache_miss", "local_storage_hit", "preprocessed_cache_hit",
        "# /work/kl/csrc/d.cpp", "unsupported_compiler_option",
        "# /work/kl/csrc/e.cpp", "local_storage_read_miss",
    ])
    got = parse_stats_log(log)
    assert got["/work/kl/csrc/a.cu"] == "miss"
    assert got["/work/kl/csrc/b.cpp"] == "hit"
    assert got["/work/kl/csrc/c.cpp"].startswith("hit (preprocessed: a source, header or flag changed")
    assert got["/work/kl/csrc/d.cpp"] == "not cacheable: unsupported_compiler_option"
    assert "/work/kl/csrc/e.cpp" not in got  # storage counters alone say nothing about the result
