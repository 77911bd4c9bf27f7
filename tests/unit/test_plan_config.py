"""[tool.buildtools] settings: defaults, parsing, errors; the project's own table."""
from __future__ import annotations

from pathlib import Path

import pytest

from buildtools.settings import BuildConfig, load_config
from buildtools.errors import KernloopError
from buildtools.plan.planner import make_plan
from fake_facts import make_facts

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n" + body, encoding="utf-8")
    return tmp_path


def test_no_pyproject_or_no_table_gives_defaults(tmp_path):
    assert load_config(tmp_path) == BuildConfig()
    assert load_config(write(tmp_path, "")) == BuildConfig()


def test_table_values_are_read_and_named_in_reasons(tmp_path):
    cfg = load_config(write(tmp_path, """
[tool.buildtools]
ram-per-cxx-job-gib = 3
ram-per-cuda-job-gib = 0.5
ram-per-link-job-gib = 2.5
max-nvcc-threads = 2
default-cuda-archs = ["9.0", "10.0+PTX"]
launcher = "sccache"
cache-dir = "~/kc"
"""))
    assert (cfg.ram_per_cxx_job_gib, cfg.ram_per_cuda_job_gib, cfg.ram_per_link_job_gib) == (3.0, 0.5, 2.5)
    assert cfg.max_nvcc_threads == 2 and cfg.default_cuda_archs == ("9.0", "10.0+PTX")
    assert cfg.launcher == "sccache" and cfg.cache_dir == Path("~/kc").expanduser()
    plan = make_plan(make_facts(cores=64, ram_gib=30, sccache="0.16.0"), config=cfg)
    assert plan.archs.value == ("9.0", "10.0+PTX")
    assert plan.jobs.value == 10  # 30 GiB / 3 GiB
    assert "pyproject.toml [tool.buildtools]" in plan.ram_per_job_gib.reason


def test_unknown_key_is_a_warning_not_an_error(tmp_path):
    cfg = load_config(write(tmp_path, "[tool.buildtools]\nram-per-cxx-job-gb = 2\n"))
    assert cfg.ram_per_cxx_job_gib == BuildConfig().ram_per_cxx_job_gib
    assert any("ram-per-cxx-job-gb" in w for w in cfg.warnings)
    assert any("ram-per-cxx-job-gb" in w for w in make_plan(make_facts(), config=cfg).warnings)


@pytest.mark.parametrize(
    "line, key",
    [
        ("ram-per-cxx-job-gib = 0", "ram-per-cxx-job-gib"),
        ("ram-per-link-job-gib = 'big'", "ram-per-link-job-gib"),
        ("max-nvcc-threads = 1.5", "max-nvcc-threads"),
        ("max-nvcc-threads = true", "max-nvcc-threads"),
        ("default-cuda-archs = ''", "default-cuda-archs"),
        ("launcher = 'distcc'", "launcher"),
        ("cache-dir = 3", "cache-dir"),
    ],
)
def test_bad_value_is_one_line_naming_the_key(tmp_path, line, key):
    with pytest.raises(KernloopError) as err:
        load_config(write(tmp_path, f"[tool.buildtools]\n{line}\n"))
    assert key in err.value.one_line() and "pyproject.toml" in err.value.one_line()


def test_bad_default_arch_spelling_is_reported_when_planning(tmp_path):
    cfg = load_config(write(tmp_path, "[tool.buildtools]\ndefault-cuda-archs = 'sm_90'\n"))
    with pytest.raises(KernloopError) as err:
        make_plan(make_facts(), config=cfg)
    assert "default-cuda-archs" in err.value.one_line()


def test_invalid_toml_is_one_line(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.buildtools\n", encoding="utf-8")
    with pytest.raises(KernloopError) as err:
        load_config(tmp_path)
    assert "invalid TOML" in err.value.one_line()


def test_the_projects_own_table_parses_without_warnings():
    cfg = load_config(ROOT)
    assert cfg.source == "pyproject.toml [tool.buildtools]" and cfg.warnings == ()
    make_plan(make_facts(), config=cfg)  # its arch list is valid
