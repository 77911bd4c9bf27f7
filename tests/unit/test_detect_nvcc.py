"""nvcc search order, wrapper/symlink resolution and the parsers, on fake toolkits."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from buildtools.detect.nvcc import (
    find_nvcc,
    nvcc_candidates,
    parse_dryrun,
    parse_gpu_arch_list,
    parse_nvcc_version,
)
from buildtools.errors import KernloopError
from tests.unit._detect_fakes import NVCC_128_VERSION, env_with_path, fake_toolkit, fake_wrapper, write_script

# -- parsers ---------------------------------------------------------------------------


def test_parse_dryrun_takes_top_and_here_from_hash_dollar_lines():
    text = (
        "#$ _NVVM_BRANCH_=nvvm\n#$ _SPACE_= \n#$ _HERE_=/usr/local/cuda-13.0/bin\n"
        "#$ TOP=/usr/local/cuda-13.0/bin/..\n#$ INCLUDES=\"-I/usr/local/cuda-13.0/bin/../targets/x86_64-linux/include\"\n"
        '#$ gcc -D__CUDA_ARCH_LIST__=750 -E -x c++ "/dev/null" -o "/tmp/x.ii"\n'
    )
    assert parse_dryrun(text) == ("/usr/local/cuda-13.0/bin/..", "/usr/local/cuda-13.0/bin")


def test_parse_dryrun_keeps_spaces_in_paths_and_ignores_other_lines():
    text = "nvcc warning : something\n#$ TOP=/opt/my cuda/bin/..\n#$ _HERE_=/opt/my cuda/bin\n"
    assert parse_dryrun(text) == ("/opt/my cuda/bin/..", "/opt/my cuda/bin")
    assert parse_dryrun("nvcc fatal   : Unknown option '-dryrun'\n") == (None, None)


def test_parse_nvcc_version():
    assert parse_nvcc_version(NVCC_128_VERSION) == "12.8"
    assert parse_nvcc_version("Cuda compilation tools, release 13.0, V13.0.88\n") == "13.0"
    assert parse_nvcc_version("nvcc: command not found") is None


def test_parse_gpu_arch_list_converts_sorts_and_keeps_suffixes():
    text = "compute_90a\ncompute_75\ncompute_100\ncompute_121\ncompute_120f\ncompute_90\ncompute_75\n"
    assert parse_gpu_arch_list(text) == ("7.5", "9.0", "9.0a", "10.0", "12.0f", "12.1")
    assert parse_gpu_arch_list("") == ()


# -- search order ------------------------------------------------------------------------


@pytest.fixture
def toolkits(tmp_path):
    """Two toolkits (one under a path with a space) and an empty bin dir."""
    a = fake_toolkit(tmp_path / "cuda 12.8")
    b = fake_toolkit(tmp_path / "cuda-13.0", NVCC_128_VERSION.replace("12.8", "13.0"))
    empty = tmp_path / "empty"
    empty.mkdir()
    return a, b, empty


def _origins(explicit, env):
    return [(c.origin, c.path) for c in nvcc_candidates(explicit, env, fallbacks=())]


def test_search_order_flag_then_env_then_cuda_home_then_path(toolkits, tmp_path):
    a, b, _ = toolkits
    env = env_with_path(b.parent, CUDACXX=str(a), CUDA_HOME=str(b.parent.parent))
    assert _origins(None, env) == [("CUDACXX", a), ("CUDA_HOME", b), ("PATH", b)]
    # --nvcc is the only candidate when given: nothing else is consulted.
    assert _origins(b, env) == [("--nvcc", b)]
    env = env_with_path(a.parent, CMAKE_CUDA_COMPILER=str(b), CUDA_PATH=str(a.parent.parent))
    assert _origins(None, env) == [("CMAKE_CUDA_COMPILER", b), ("CUDA_PATH", a), ("PATH", a)]


def test_default_location_comes_last(toolkits):
    a, b, empty = toolkits
    found = list(nvcc_candidates(None, env_with_path(a.parent), fallbacks=(b,)))
    assert [(c.origin, c.path) for c in found] == [("PATH", a), ("default location", b)]
    facts, _ = find_nvcc(None, env_with_path(empty), fallbacks=(b,))
    assert facts is not None and facts.root == b.parent.parent and "default location" in facts.source


def test_wrapper_on_path_resolves_to_the_real_toolkit(toolkits, tmp_path):
    a, _, _ = toolkits
    wrapper = fake_wrapper(tmp_path / "usr local bin" / "nvcc", a)
    facts, notes = find_nvcc(None, env_with_path(wrapper.parent), fallbacks=())
    assert facts is not None
    assert facts.found_as == wrapper
    assert facts.path == a
    assert facts.root == a.parent.parent  # "<root>/bin/.." normalised, spaces kept
    assert facts.version == "12.8"
    assert facts.archs[:3] == ("5.0", "5.2", "5.3") and "9.0a" in facts.archs and "12.0a" in facts.archs
    assert facts.source == f"{a} (from: PATH wrapper {wrapper}, resolved by nvcc -dryrun)"
    assert notes == []


def test_symlinked_nvcc_and_symlinked_toolkit_dir_resolve_to_the_real_root(toolkits, tmp_path):
    a, _, _ = toolkits
    link_dir = tmp_path / "links"
    link_dir.mkdir()
    (link_dir / "nvcc").symlink_to(a)
    facts, _ = find_nvcc(link_dir / "nvcc", env_with_path(), fallbacks=())
    assert facts.path == a and facts.root == a.parent.parent
    assert facts.source.startswith(f"{a} (from: --nvcc symlink {link_dir / 'nvcc'}")

    # /usr/local/cuda -> /usr/local/cuda-12.8: nvcc reports TOP under the link; we resolve it.
    (tmp_path / "cuda").symlink_to(a.parent.parent, target_is_directory=True)
    facts, _ = find_nvcc(None, env_with_path(), fallbacks=(tmp_path / "cuda" / "bin" / "nvcc",))
    assert facts.root == a.parent.parent
    assert facts.path == a


def test_symlink_to_a_wrapper_is_named_as_such(toolkits, tmp_path):
    a, _, _ = toolkits
    wrapper = fake_wrapper(tmp_path / "w" / "nvcc", a)
    (tmp_path / "l").mkdir()
    (tmp_path / "l" / "nvcc").symlink_to(wrapper)
    facts, _ = find_nvcc(None, env_with_path(tmp_path / "l"), fallbacks=())
    assert facts.path == a
    assert "PATH symlink to wrapper" in facts.source


def test_cuda_home_wins_over_path_and_a_differing_cuda_home_is_noted(toolkits):
    a, b, _ = toolkits
    facts, notes = find_nvcc(None, env_with_path(a.parent, CUDA_HOME=str(b.parent.parent)), fallbacks=())
    assert facts.root == b.parent.parent and facts.version == "13.0"
    assert notes == []
    facts, notes = find_nvcc(None, env_with_path(CUDACXX=str(a), CUDA_HOME=str(b.parent.parent)), fallbacks=())
    assert facts.root == a.parent.parent
    assert any("CUDA_HOME=" in n and "not the toolkit of the chosen nvcc" in n for n in notes)


# -- bad inputs --------------------------------------------------------------------------


def test_missing_nvcc_is_none_with_a_note(toolkits):
    _, _, empty = toolkits
    facts, notes = find_nvcc(None, env_with_path(empty), fallbacks=())
    assert facts is None
    assert len(notes) == 1 and "nvcc not found" in notes[0] and "--nvcc" in notes[0]


@pytest.mark.parametrize("kind", ["missing", "directory", "broken"])
def test_explicit_nvcc_that_does_not_work_is_an_error_naming_the_flag(tmp_path, kind):
    path = tmp_path / "nvcc"
    if kind == "directory":
        path.mkdir()
    elif kind == "broken":
        write_script(path, "echo 'nvcc: error while loading shared libraries: libcudart.so' >&2; exit 127\n")
    with pytest.raises(KernloopError) as err:
        find_nvcc(path, env_with_path(), fallbacks=())
    assert "--nvcc" in err.value.one_line()
    assert "\n" not in err.value.one_line()


def test_explicit_nvcc_that_is_not_executable_is_an_error(tmp_path):
    path = tmp_path / "nvcc"
    path.write_text("not a program")
    with pytest.raises(KernloopError, match="--nvcc"):
        find_nvcc(path, env_with_path(), fallbacks=())


@pytest.mark.parametrize("target", ["nowhere", "dir-without-nvcc"])
def test_cuda_home_pointing_nowhere_is_an_error_naming_it(tmp_path, toolkits, target):
    a, _, _ = toolkits
    home = tmp_path / target
    if target == "dir-without-nvcc":
        home.mkdir()
    # Even with a good nvcc on PATH: building against another toolkit than the one the
    # user named would be a silent surprise.
    with pytest.raises(KernloopError) as err:
        find_nvcc(None, env_with_path(a.parent, CUDA_HOME=str(home)), fallbacks=())
    line = err.value.one_line()
    assert f"CUDA_HOME={home}" in line and "--nvcc" in line


def test_a_bad_setting_after_the_one_that_works_is_not_judged(toolkits, tmp_path):
    a, _, _ = toolkits
    facts, _ = find_nvcc(None, env_with_path(CUDACXX=str(a), CUDA_HOME=str(tmp_path / "nowhere")), fallbacks=())
    assert facts.path == a


def test_cudacxx_pointing_nowhere_is_an_error(tmp_path):
    with pytest.raises(KernloopError, match="CUDACXX="):
        find_nvcc(None, env_with_path(CUDACXX=str(tmp_path / "nvcc")), fallbacks=())


def test_broken_nvcc_on_path_is_skipped_with_a_note(toolkits, tmp_path):
    a, _, _ = toolkits
    broken = fake_wrapper(tmp_path / "stale" / "nvcc", tmp_path / "removed-cuda" / "bin" / "nvcc")
    facts, notes = find_nvcc(None, env_with_path(broken.parent), fallbacks=(a,))
    assert facts is not None and facts.path == a
    assert any(n.startswith("skipped nvcc on PATH") for n in notes)


def test_nvcc_without_top_line_falls_back_to_its_own_location(tmp_path):
    nvcc = write_script(
        tmp_path / "old cuda" / "bin" / "nvcc",
        "case \"$1\" in --version) printf 'Cuda compilation tools, release 10.2, V10.2.89\\n' ;; "
        "--list-gpu-arch) echo \"nvcc fatal   : Unknown option '--list-gpu-arch'\" >&2; exit 1 ;; "
        "*) exit 0 ;; esac\n",
    )
    facts, notes = find_nvcc(nvcc, env_with_path(), fallbacks=())
    assert facts.root == tmp_path / "old cuda" and facts.version == "10.2" and facts.archs == ()
    assert any("no TOP= line" in n for n in notes) and any("listed no archs" in n for n in notes)
    assert "root from the nvcc path" in facts.source


def test_cudacxx_may_name_a_program_on_path(toolkits):
    a, _, _ = toolkits
    facts, _ = find_nvcc(None, env_with_path(a.parent, CUDACXX="nvcc"), fallbacks=())
    assert facts.path == a and "CUDACXX" in facts.source


def test_found_as_is_absolute_for_a_relative_flag(toolkits, monkeypatch):
    a, _, _ = toolkits
    monkeypatch.chdir(a.parent)
    facts, _ = find_nvcc(Path("nvcc"), env_with_path(), fallbacks=())
    assert facts.found_as == a and os.path.isabs(facts.found_as)
