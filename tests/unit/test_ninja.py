"""Parsing ninja's status lines, .ninja_log and compiler errors (no processes)."""
from __future__ import annotations

from pathlib import Path

import pytest

from buildtools.cmake import ninja


def test_status_line_in_our_format_is_parsed():
    st = ninja.parse_status("@@kl 3 40 2 12.345 @@ Building CUDA object CMakeFiles/_C.dir/csrc/x.cu.o")
    assert st == ninja.Status(3, 40, 2, 12.345, "Building CUDA object CMakeFiles/_C.dir/csrc/x.cu.o")


@pytest.mark.parametrize(
    "line",
    ["[3/40] Building CXX object a.o", "/src/a.cpp:1:2: error: @@kl oops", "", "-- Installing: /x/_C.abi3.so"],
)
def test_other_lines_are_not_status(line):
    assert ninja.parse_status(line) is None


def test_status_format_is_what_the_parser_reads():
    # the format ninja is given must expand to something parse_status accepts
    expanded = ninja.STATUS_FORMAT.replace("%f", "1").replace("%t", "2").replace("%r", "1").replace("%e", "0.5")
    assert ninja.parse_status(expanded + "Linking x") == ninja.Status(1, 2, 1, 0.5, "Linking x")


LOG_V7 = """# ninja log v7
1\t32\t1795319772387429322\tCMakeFiles/t.dir/a.cpp.o\tf5ec93865530e3b6
2\t1165\t1795319772393734307\tCMakeFiles/t.dir/b.cu.o\t49a6ed7aa085c7b1
1165\t1234\t1795319773555956728\tlibt.so\tb957165eefff385c
"""


def test_read_log_keeps_latest_entry_per_output(tmp_path: Path):
    log = tmp_path / ".ninja_log"
    log.write_text(LOG_V7 + "5\t900\t1795319779999999999\tCMakeFiles/t.dir/b.cu.o\t49a6ed7aa085c7b1\n3\t4\t5\ttruncat")
    entries = ninja.read_log(log)
    assert set(entries) == {"CMakeFiles/t.dir/a.cpp.o", "CMakeFiles/t.dir/b.cu.o", "libt.so"}
    assert entries["CMakeFiles/t.dir/b.cu.o"].duration_ms == 895


def test_read_log_missing_file_is_empty(tmp_path: Path):
    assert ninja.read_log(tmp_path / "nope" / ".ninja_log") == {}


def test_ran_between_is_new_or_changed_entries_in_start_order(tmp_path: Path):
    log = tmp_path / ".ninja_log"
    log.write_text(LOG_V7)
    before = ninja.read_log(log)
    # ninja recompacts: same entries rewritten, then b.cu.o and the link ran again
    log.write_text(
        LOG_V7.replace("2\t1165\t1795319772393734307", "7000\t7100\t1795319799000000000").replace(
            "1165\t1234\t1795319773555956728", "7100\t7150\t1795319799100000000"
        )
    )
    ran = ninja.ran_between(before, ninja.read_log(log))
    assert [e.output for e in ran] == ["CMakeFiles/t.dir/b.cu.o", "libt.so"]
    assert [e.output for e in ninja.ran_between({}, before)][0] == "CMakeFiles/t.dir/a.cpp.o"


@pytest.mark.parametrize(
    "output, source",
    [
        ("CMakeFiles/_C.dir/csrc/x.cu.o", "csrc/x.cu"),
        ("sub/CMakeFiles/_moe_C.dir/moe/topk.cpp.o", "moe/topk.cpp"),
        ("CMakeFiles/t.dir/__/shared/a.cpp.o", "../shared/a.cpp"),
        ("foo.o", "foo"),
    ],
)
def test_source_of_object(output, source):
    assert ninja.source_of(output) == source


def test_slowest_only_counts_translation_units():
    entries = [
        ninja.LogEntry(0, 9000, 0, "_C.abi3.so", "h"),
        ninja.LogEntry(0, 100, 0, "CMakeFiles/_C.dir/a.cpp.o", "h"),
        ninja.LogEntry(0, 300, 0, "CMakeFiles/_C.dir/b.cu.o", "h"),
    ]
    assert [e.output for e in ninja.slowest(entries, 5)] == ["CMakeFiles/_C.dir/b.cu.o", "CMakeFiles/_C.dir/a.cpp.o"]
    assert len(ninja.slowest(entries, 1)) == 1


# Real outputs, captured from ninja 1.13 / gcc 12 / nvcc 13.0 on this project's fixture.
NVCC_FAIL = """\
@@kl 1 2 1 0.5 @@ Building CUDA object CMakeFiles/t.dir/b.cu.o
FAILED: [code=2] CMakeFiles/t.dir/b.cu.o 
ccache /usr/local/cuda-13.0/bin/nvcc -forward-unknown-to-host-compiler -Dt_EXPORTS -Xcompiler=-fPIC -MD -MT CMakeFiles/t.dir/b.cu.o -MF CMakeFiles/t.dir/b.cu.o.d -x cu -c /tmp/nt/b.cu -o CMakeFiles/t.dir/b.cu.o
/tmp/nt/b.cu(1): error: identifier "undefined_x" is undefined
  __attribute__((global)) void k(int*p){*p=undefined_x;}
                                           ^

1 error detected in the compilation of "/tmp/nt/b.cu".
ninja: build stopped: subcommand failed.
"""

GCC_FAIL = """\
@@kl 1 3 1 0.1 @@ Building CUDA object CMakeFiles/t.dir/b.cu.o
FAILED: [code=1] CMakeFiles/t.dir/a.cpp.o 
ccache /usr/bin/c++ -Dt_EXPORTS  -fPIC -MD -MT CMakeFiles/t.dir/a.cpp.o -MF CMakeFiles/t.dir/a.cpp.o.d -o CMakeFiles/t.dir/a.cpp.o -c /tmp/nt/a.cpp
/tmp/nt/a.cpp: In function \u2018int a()\u2019:
/tmp/nt/a.cpp:2:38: error: \u2018class std::vector<int>\u2019 has no member named \u2018nope\u2019
    2 | int a(){std::vector<int> v; return v.nope();}
      |                                      ^~~~
/tmp/nt/a.cpp:3:1: error: second error
ninja: build stopped: subcommand failed.
"""

CMAKE_FAIL = """\
-- Configuring incomplete, errors occurred!
CMake Error at CMakeLists.txt:12 (find_package):
  Could not find a package configuration file provided by "Torch" with any of
  the following names:

    TorchConfig.cmake
"""

LINK_FAIL = """\
FAILED: [code=1] _fx.abi3.so 
: && /usr/bin/c++ -fPIC -O3 -shared -o _fx.abi3.so CMakeFiles/_fx.dir/src/fx.cpp.o && :
/usr/bin/ld: CMakeFiles/_fx.dir/src/fx.cpp.o: in function `value(_object*, _object*)':
fx.cpp:(.text+0x5): undefined reference to `fx_value'
collect2: error: ld returned 1 exit status
ninja: build stopped: subcommand failed.
"""


def test_first_error_nvcc():
    d = ninja.first_error(NVCC_FAIL.splitlines())
    assert d is not None
    assert d.message == '/tmp/nt/b.cu(1): error: identifier "undefined_x" is undefined'
    assert d.context[-1].strip() == "^"
    assert d.target == "CMakeFiles/t.dir/b.cu.o"
    assert "nvcc -forward" not in d.render()  # the command line is not the error


def test_first_error_gcc_stops_at_next_diagnostic():
    d = ninja.first_error(GCC_FAIL.splitlines())
    assert d is not None
    assert d.message.startswith("/tmp/nt/a.cpp:2:38: error:")
    assert len(d.context) == 2 and "^~~~" in d.context[1]
    assert "second error" not in d.render()


def test_first_error_cmake_block():
    d = ninja.first_error(CMAKE_FAIL.splitlines())
    assert d is not None and d.message.startswith("CMake Error at CMakeLists.txt:12")
    assert "Could not find a package configuration file" in d.context[0]


def test_first_error_linker():
    d = ninja.first_error(LINK_FAIL.splitlines())
    assert d is not None and "undefined reference to `fx_value'" in d.message
    assert d.target == "_fx.abi3.so"


def test_failure_without_diagnostic_falls_back_to_output_tail():
    lines = ["FAILED: [code=139] CMakeFiles/t.dir/x.cu.o ", "nvcc -c x.cu", "Segmentation fault", "ninja: build stopped."]
    d = ninja.first_error(lines)
    assert d is not None and d.context == ("Segmentation fault",)


def test_no_error_in_clean_output():
    assert ninja.first_error(["@@kl 1 1 1 0.1 @@ Linking x", "-- Installing: /a/b.so"]) is None
