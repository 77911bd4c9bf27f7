"""plan_for (the one plan for every entry point) and the CLI on a real terminal (a pty)."""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from buildtools.detect import DetectOptions
from buildtools.errors import KernloopError
from buildtools.settings import Overrides
from buildtools.session import PlanOptions, plan_for
from test_cli_presets import NVCC_BIN, SHIM, clean_env, needs_nvcc, needs_torch, presets_file

pytestmark = needs_torch

pt_input = pytest.importorskip("prompt_toolkit.input")
from prompt_toolkit.output import DummyOutput  # noqa: E402


def no_nvcc_detection(source_dir: Path) -> DetectOptions:
    """Detection on this machine with nvcc hidden: a PATH without it and no default location."""
    path = os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/")}
    return DetectOptions(source_dir=source_dir, env=env, nvcc_fallbacks=())


def test_no_nvcc_without_a_terminal_is_a_cpu_only_plan(tmp_path):
    facts, plan = plan_for(PlanOptions(source_dir=tmp_path, detect=no_nvcc_detection(tmp_path),
                                       overrides=Overrides(), interactive=False))
    assert facts.nvcc is None
    assert plan.platform.value == "cpu"
    assert plan.platform.reason == "CPU-only plan: nvcc not found (pass --nvcc PATH for a CUDA build)"
    assert plan.cache_variables["KERNLOOP_ENABLE_CUDA"] == "OFF"


@needs_nvcc
def test_no_nvcc_on_a_terminal_asks_for_it_and_checks_the_answer(tmp_path):
    with pt_input.create_pipe_input() as keys:
        keys.send_text(str(tmp_path / "not-there") + "\r")  # rejected by validation, asked again
        keys.send_text("\x15" + str(NVCC_BIN) + "\r")
        facts, plan = plan_for(PlanOptions(source_dir=tmp_path, detect=no_nvcc_detection(tmp_path),
                                           overrides=Overrides(), interactive=True,
                                           prompt_io={"input": keys, "output": DummyOutput()}))
    assert facts.nvcc is not None and facts.nvcc.path == NVCC_BIN
    assert plan.platform.value == "cuda"
    assert plan.cache_variables["CMAKE_CUDA_COMPILER"] == str(NVCC_BIN)


def test_empty_answer_keeps_the_cpu_only_plan(tmp_path):
    with pt_input.create_pipe_input() as keys:
        keys.send_text("\r")
        facts, plan = plan_for(PlanOptions(source_dir=tmp_path, detect=no_nvcc_detection(tmp_path),
                                           overrides=Overrides(), interactive=True,
                                           prompt_io={"input": keys, "output": DummyOutput()}))
    assert facts.nvcc is None and plan.platform.value == "cpu"


def test_overrides_default_to_the_environment(tmp_path):
    _, plan = plan_for(PlanOptions(source_dir=tmp_path, env=clean_env(MAX_JOBS="7", CMAKE_BUILD_TYPE="Debug"),
                                   interactive=False))
    assert plan.jobs.value == 7 and plan.jobs.overridden_by == "MAX_JOBS"
    assert plan.build_type.value == "Debug"


def test_missing_torch_is_an_error_unless_not_required(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    options = PlanOptions(source_dir=tmp_path, python=venv / "bin" / "python", interactive=False)
    with pytest.raises(KernloopError) as err:
        plan_for(options)
    assert "torch is not installed" in err.value.one_line()
    facts, plan = plan_for(PlanOptions(source_dir=tmp_path, python=venv / "bin" / "python", interactive=False,
                                       require_torch=False))
    assert facts.torch is None and plan.platform.value == "cpu"


# -- a real terminal ---------------------------------------------------------------------------------
def run_on_pty(args: list[str], answers: list[tuple[str, str]], timeout: float = 60.0) -> tuple[int, str]:
    """Run the CLI with a pty as stdin/stdout; type each answer once its prompt text appears."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(SHIM), *args], stdin=slave, stdout=slave, stderr=slave,
                            env=clean_env(TERM="xterm"), close_fds=True)
    os.close(slave)
    seen = b""
    pending = list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the pty
                    break
                if not chunk:
                    break
                seen += chunk
                if b"\x1b[6n" in chunk:  # answer prompt_toolkit's cursor-position request
                    os.write(master, b"\x1b[1;1R")
            if pending and pending[0][0].encode() in seen:
                os.write(master, pending.pop(0)[1].encode())
            if proc.poll() is not None and not ready:
                break
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return rc, seen.decode(errors="replace")


@pytest.mark.parametrize("answer, rc_expected", [("y", 0), ("n", 1)])
def test_existing_presets_on_a_terminal_ask_before_replacing(tmp_path, answer, rc_expected):
    project = tmp_path / "proj"
    project.mkdir()
    first = subprocess.run([sys.executable, str(SHIM), "--source-dir", str(project), "--jobs", "2"],
                           capture_output=True, text=True, env=clean_env(), stdin=subprocess.DEVNULL)
    assert first.returncode == 0, first.stderr
    before = presets_file(project).read_text()
    rc, screen = run_on_pty(["--source-dir", str(project), "--jobs", "1"], [("Replace them?", answer)])
    assert "already has kernloop's presets" in screen
    assert rc == rc_expected, screen
    doc = json.loads(presets_file(project).read_text())
    jobs = {p["name"]: p["jobs"] for p in doc["buildPresets"]}
    if answer == "y":
        assert jobs["release"] == 1 and "wrote " in screen
    else:
        assert presets_file(project).read_text() == before and "left " in screen
