"""Platform/channel -> index URL and the ``auto`` choice (pure, driver facts are data)."""
from __future__ import annotations

import pytest

from buildtools.errors import KernloopError
from buildtools.torchenv.driver import DriverFacts, RocmFacts
from buildtools.torchenv.index import choose_auto, index_url, install_flags, resolve_index
from buildtools.torchenv.matrix import Platform, load_matrix

W = "https://download.pytorch.org/whl"


@pytest.fixture(scope="module")
def matrix():
    return load_matrix()


@pytest.mark.parametrize(
    "platform,channel,url",
    [
        ("cu130", "stable", f"{W}/cu130"),
        ("cu128", "stable", f"{W}/cu128"),
        ("cu126", "stable", f"{W}/cu126"),
        ("cpu", "stable", f"{W}/cpu"),
        ("rocm6.4", "stable", f"{W}/rocm6.4"),
        ("xpu", "stable", f"{W}/xpu"),
        ("cu130", "test", f"{W}/test/cu130"),
        ("cpu", "test", f"{W}/test/cpu"),
        ("cu128", "nightly", f"{W}/nightly/cu128"),
        ("rocm6.4", "nightly", f"{W}/nightly/rocm6.4"),
    ],
)
def test_index_url_table(platform, channel, url):
    assert index_url(Platform.parse(platform), channel) == url


@pytest.mark.parametrize(
    "channel,uv,primary,flags",
    [
        ("stable", False, False, ["--extra-index-url", f"{W}/cu130"]),
        ("stable", False, True, ["--index-url", f"{W}/cu130"]),
        ("stable", True, False, ["--extra-index-url", f"{W}/cu130", "--index-strategy", "unsafe-best-match"]),
        ("test", True, True, ["--index-url", f"{W}/test/cu130", "--index-strategy", "unsafe-best-match"]),
        ("nightly", False, False, ["--pre", "--extra-index-url", f"{W}/nightly/cu130"]),
        ("nightly", True, False,
         ["--prerelease", "allow", "--extra-index-url", f"{W}/nightly/cu130", "--index-strategy", "unsafe-best-match"]),
    ],
)
def test_install_flags_table(matrix, channel, uv, primary, flags):
    choice = resolve_index("cu130", channel, matrix)
    assert install_flags(choice, uv=uv, primary=primary) == flags


# (torch release, driver CUDA, expected platform): the newest CUDA index the driver runs.
AUTO_CUDA = [
    ("2.14", "13.0", "cu130"),
    ("2.14", "13.1", "cu130"),
    ("2.14", "13.2", "cu132"),
    ("2.14", "12.9", "cu126"),
    ("2.14", "12.6", "cu126"),
    ("2.10", "12.9", "cu128"),
    ("2.10", "13.0", "cu130"),
    ("2.9", "12.8", "cu128"),
    ("2.8", "12.9", "cu129"),
    ("2.7", "12.4", "cu118"),
    ("2.7", "13.0", "cu128"),
]


@pytest.mark.parametrize("release,driver_cuda,expected", AUTO_CUDA)
def test_auto_picks_newest_cuda_index_the_driver_supports(matrix, release, driver_cuda, expected):
    plat, reason, _ = choose_auto(matrix.release(release), DriverFacts("999.0", driver_cuda, "test"), None, matrix)
    assert plat.tag == expected
    assert driver_cuda in reason


def test_auto_uses_minor_version_compatibility_within_a_major(matrix):
    # 2.14 ships cu126 as its oldest 12.x; a 12.4 driver runs it only through minor-version compatibility.
    plat, _, notes = choose_auto(matrix.release("2.14"), DriverFacts("550.54.14", "12.4", "test"), None, matrix)
    assert plat.tag == "cu126"
    assert any("minor-version compatibility" in n for n in notes)


def test_auto_falls_back_to_cpu_when_the_driver_is_too_old(matrix):
    plat, _, notes = choose_auto(matrix.release("2.14"), DriverFacts("470.1", "11.4", "test"), None, matrix)
    assert plat == Platform("cpu")
    assert any("update the NVIDIA driver to >= 560.28.03" in n for n in notes)


def test_auto_from_driver_version_only_uses_the_min_driver_table(matrix):
    # nvidia-smi without a CUDA line: 575.57 meets CUDA 12.9's minimum (575.51.03), not 13.0's.
    plat, reason, _ = choose_auto(matrix.release("2.8"), DriverFacts("575.57.08", None, "smi"), None, matrix)
    assert plat.tag == "cu129" and "12.9" in reason
    plat, _, _ = choose_auto(matrix.release("2.14"), DriverFacts("580.65.06", None, "smi"), None, matrix)
    assert plat.tag == "cu130"


@pytest.mark.parametrize(
    "release,rocm,expected",
    [
        ("2.9", "6.4.1", "rocm6.4"),
        ("2.8", "6.3.4", "rocm6.3"),
        ("2.8", "6.4.0", "rocm6.4"),
        ("2.8", "7.0.0", "rocm6.4"),
        ("2.7", "6.2.4", "rocm6.2.4"),
        ("2.14", None, "rocm7.14"),
    ],
)
def test_auto_rocm(matrix, release, rocm, expected):
    plat, reason, _ = choose_auto(matrix.release(release), None, RocmFacts(rocm, "test"), matrix)
    assert plat.tag == expected and "ROCm" in reason


def test_auto_nothing_is_cpu(matrix):
    choice = resolve_index("auto", "stable", matrix)
    assert choice.platform == Platform("cpu") and choice.url == f"{W}/cpu"
    assert choice.release == matrix.latest.minor


def test_nvidia_driver_wins_over_rocm(matrix):
    plat, _, _ = choose_auto(matrix.latest, DriverFacts("580.65.06", "13.0", "t"), RocmFacts("7.2", "t"), matrix)
    assert plat.tag == "cu130"


def test_explicit_release_must_publish_the_platform(matrix):
    assert resolve_index("cu128", "stable", matrix, torch_version="2.10.0").url == f"{W}/cu128"
    with pytest.raises(KernloopError, match="torch 2.14 publishes no cu128 wheels"):
        resolve_index("cu128", "stable", matrix, torch_version="2.14.1")
    # Without --torch the newest release is only a default: a note, still the URL.
    choice = resolve_index("rocm6.4", "stable", matrix)
    assert choice.url == f"{W}/rocm6.4"
    assert any("newest release with rocm6.4 is 2.9" in n for n in choice.notes)


@pytest.mark.parametrize(
    "platform,channel,torch,match",
    [
        ("cu999", "stable", None, "unknown platform 'cu999'"),
        ("banana", "stable", None, "unknown platform 'banana'"),
        ("cu130", "beta", None, "unknown channel 'beta'"),
        ("cu130", "stable", "2.3.0", "torch 2.3.0 is not in the compatibility matrix"),
        ("cu130", "stable", "not-a-version", "malformed version"),
    ],
)
def test_bad_inputs_are_one_line_errors(matrix, platform, channel, torch, match):
    with pytest.raises(KernloopError, match=match) as exc:
        resolve_index(platform, channel, matrix, torch_version=torch)
    assert "\n" not in exc.value.one_line()
