"""The compatibility matrix data file and its loader."""
from __future__ import annotations

import json

import pytest
from packaging.version import Version

from buildtools.errors import KernloopError
from buildtools.torchenv.matrix import (
    MATRIX_PATH,
    Platform,
    derive_companions,
    load_matrix,
    parse_torch_version,
)


@pytest.fixture(scope="module")
def matrix():
    return load_matrix()


def test_covers_every_minor_from_2_7_to_2_14_in_order(matrix):
    assert [r.minor for r in matrix.releases] == [f"2.{m}" for m in range(7, 15)]
    assert matrix.latest.minor == "2.14"


def test_every_row_names_its_sources_and_has_patches(matrix):
    for key in ("matrix", "companions", "indexes", "driver", "unsure"):
        assert matrix.source.get(key), f"source.{key} missing"
    for row in matrix.releases:
        assert row.patches, row.minor
        assert row.cuda_stable, row.minor
        assert row.python.supports(row.python.min) and row.python.supports(row.python.max)


# Rows as published in PyTorch's RELEASE.md "Release Compatibility Matrix":
# (minor, python min, python max, stable CUDA, experimental CUDA, stable ROCm)
RELEASE_MD = [
    ("2.7", "3.9", "3.13", ("11.8", "12.6"), ("12.8",), "6.3"),
    ("2.8", "3.9", "3.13", ("12.6", "12.8"), ("12.9",), "6.4"),
    ("2.9", "3.10", "3.14", ("12.6", "12.8"), ("13.0",), "6.4"),
    ("2.10", "3.10", "3.14", ("12.6", "12.8"), ("13.0",), "7.1"),
    ("2.11", "3.10", "3.14", ("12.6", "12.8", "13.0"), (), "7.2"),
    ("2.12", "3.10", "3.14", ("12.6", "13.0"), ("13.2",), "7.2"),
    ("2.13", "3.10", "3.15", ("12.6", "13.0"), ("13.2",), "7.2"),
    ("2.14", "3.10", "3.15", ("12.6", "13.0", "13.2"), (), "7.14"),
]


@pytest.mark.parametrize("minor,py_min,py_max,stable,experimental,rocm", RELEASE_MD)
def test_rows_match_release_md(matrix, minor, py_min, py_max, stable, experimental, rocm):
    row = matrix.release(minor)
    assert (row.python.min, row.python.max) == (py_min, py_max)
    assert row.cuda_stable == stable
    assert row.cuda_experimental == experimental
    assert row.rocm_stable == rocm
    assert rocm in row.rocm  # the stable ROCm always has an index


def test_installed_torch_wheels_here_are_in_the_matrix(matrix):
    # The two torch builds this project installs (requirements/torch-*.txt).
    assert matrix.companions("2.14.1+cu130").torchvision == "0.29.1"
    assert matrix.companions("2.13.0").torchvision == "0.28.0"
    assert matrix.release("2.14.1+cu130").cuda_status("13.0") == "stable"


def test_torchvision_naming_rule_agrees_with_every_confirmed_pairing(matrix):
    # derive_companions is only used for releases the matrix lacks; it must at least
    # reproduce every pairing the matrix records as confirmed.
    for row in matrix.releases:
        for version, comp in row.patches.items():
            if comp.certain:
                assert derive_companions(Version(version), matrix).torchvision == comp.torchvision, version


def test_torchaudio_stable_abi_range(matrix):
    row = matrix.release("2.14")
    assert row.torchaudio_fits("2.11.0") and row.torchaudio_fits("2.14.0")
    assert not row.torchaudio_fits("2.10.0")
    assert not matrix.release("2.9").torchaudio_fits("2.8.0")


@pytest.mark.parametrize(
    "tag,kind,version,label",
    [
        ("cu130", "cuda", "13.0", "CUDA 13.0"),
        ("cu128", "cuda", "12.8", "CUDA 12.8"),
        ("cu126", "cuda", "12.6", "CUDA 12.6"),
        ("cu118", "cuda", "11.8", "CUDA 11.8"),
        ("rocm6.4", "rocm", "6.4", "ROCm 6.4"),
        ("rocm6.2.4", "rocm", "6.2.4", "ROCm 6.2.4"),
        ("cpu", "cpu", None, "CPU"),
        ("XPU", "xpu", None, "XPU"),
    ],
)
def test_platform_tags_round_trip(tag, kind, version, label):
    p = Platform.parse(tag)
    assert (p.kind, p.version, p.label) == (kind, version, label)
    assert p.tag == tag.lower()


@pytest.mark.parametrize("bad", ["cuda13", "cu", "rocm", "rocm6", "gpu", "", "cu13.0"])
def test_unknown_platform_is_one_clear_error(bad):
    with pytest.raises(KernloopError) as exc:
        Platform.parse(bad)
    assert "\n" not in exc.value.one_line() and "cu130" in exc.value.one_line()


def test_parse_torch_version():
    assert parse_torch_version("2.14.1+cu130") == (Version("2.14.1"), "cu130")
    assert parse_torch_version("2.13.0") == (Version("2.13.0"), None)
    with pytest.raises(KernloopError):
        parse_torch_version("two.fourteen")


def _write(tmp_path, data):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_broken_matrix_files_are_named_in_the_error(tmp_path):
    good = json.loads(MATRIX_PATH.read_text())
    with pytest.raises(KernloopError, match=r"m\.json: invalid JSON at line 1"):
        load_matrix(_write(tmp_path, "{"))
    bad = json.loads(json.dumps(good))
    bad["releases"][0]["patches"]["2.8.0"] = {"torchvision": "0.23.0", "torchaudio": "2.8.0"}
    with pytest.raises(KernloopError, match=r"release 2\.7: .*patch 2\.8\.0 listed under 2\.7"):
        load_matrix(_write(tmp_path, bad))
    bad = json.loads(json.dumps(good))
    del bad["releases"][3]["cuda"]
    with pytest.raises(KernloopError, match=r"release 2\.10: KeyError"):
        load_matrix(_write(tmp_path, bad))
    with pytest.raises(KernloopError, match="schema-1"):
        load_matrix(_write(tmp_path, {"releases": []}))
