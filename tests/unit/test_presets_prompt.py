"""Prompts: questionary on a terminal (driven through prompt_toolkit's pipe input), errors without one."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from buildtools.errors import KernloopError
from buildtools.util.prompt import ask_path, confirm, is_interactive
from buildtools.session import validate_nvcc

pt_input = pytest.importorskip("prompt_toolkit.input")
from prompt_toolkit.output import DummyOutput  # noqa: E402


@pytest.fixture
def keys():
    with pt_input.create_pipe_input() as pipe:
        yield pipe


def test_not_a_terminal_under_pytest():
    assert not is_interactive()


def test_no_terminal_is_one_line_naming_the_flag():
    with pytest.raises(KernloopError) as err:
        confirm("Replace?", problem="the file already has kernloop's presets",
                hint="pass --force-overwrite to replace them")
    assert err.value.one_line() == ("error: the file already has kernloop's presets -- "
                                    "pass --force-overwrite to replace them")
    with pytest.raises(KernloopError) as err:
        ask_path("nvcc?", problem="nvcc not found", hint="pass --nvcc PATH", validate=lambda p: None)
    assert "--nvcc PATH" in err.value.one_line()


@pytest.mark.parametrize("typed, expected", [("y", True), ("n", False), ("", True)])
def test_confirm_on_a_terminal(keys, typed, expected):
    keys.send_text(typed + "\r")
    assert confirm("Replace?", problem="p", hint="h", default=True, interactive=True,
                   input=keys, output=DummyOutput()) is expected


def test_ask_path_validates_until_the_answer_works(keys, tmp_path):
    good = tmp_path / "nvcc"
    good.write_text("")
    seen = []

    def validate(path: Path):
        seen.append(path)
        return None if path == good else f"{path}: no such file"

    keys.send_text(str(tmp_path / "missing") + "\r")  # rejected: the prompt stays open
    keys.send_text("\x15" + str(good) + "\r")  # Ctrl-U clears the line, then a good path
    answer = ask_path("nvcc?", problem="p", hint="h", validate=validate, interactive=True,
                      input=keys, output=DummyOutput())
    assert answer == good
    assert tmp_path / "missing" in seen


def test_ask_path_empty_answer_when_allowed(keys):
    keys.send_text("\r")
    assert ask_path("nvcc?", problem="p", hint="h", validate=lambda p: "never", allow_empty=True,
                    interactive=True, input=keys, output=DummyOutput()) is None


def test_validate_nvcc_runs_the_candidate(tmp_path):
    assert validate_nvcc(tmp_path / "nope") and "no such file" in validate_nvcc(tmp_path / "nope")
    assert "directory" in validate_nvcc(tmp_path)
    not_exec = tmp_path / "nvcc"
    not_exec.write_text("#!/bin/sh\n")
    assert "not executable" in validate_nvcc(not_exec)
    fake = tmp_path / "fake-nvcc"
    fake.write_text("#!/bin/sh\necho hello\n")
    fake.chmod(0o755)
    assert "does not run as nvcc" in validate_nvcc(fake)
    real = Path("/usr/local/cuda/bin/nvcc")
    if real.is_file() and os.access(real, os.X_OK):
        assert validate_nvcc(real) is None
