"""The command line: `python -m fastconv check` and `fastconv info`, run as
subprocesses, as a user would."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

import fastconv

OPS = ["conv2d", "conv1d", "conv1x1", "max_pool2d", "avg_pool2d", "relu", "guided_relu"]


def _run(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "fastconv", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_help_lists_subcommands():
    r = _run("--help")
    assert r.returncode == 0, r.stderr
    for cmd in ("check", "info"):
        assert cmd in r.stdout


def test_info_prints_isa_and_version():
    r = _run("info")
    assert r.returncode == 0, r.stderr
    out = r.stdout.lower()
    assert fastconv.__version__ in out
    assert re.search(r"\b(avx512|avx2|generic)\b", out), out
    assert "thread" in out
    assert "cuda" in out


@pytest.mark.parametrize("isa", ["generic", "avx2"])
def test_info_reports_forced_isa(isa):
    r = _run("info", env=dict(os.environ, FASTCONV_ISA=isa))
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.lower().splitlines() if re.match(r"\s*isa\b", ln)]
    assert line, r.stdout
    assert re.search(rf"\b{isa}\b", line[0]), line[0]


def test_console_script_info():
    exe = shutil.which("fastconv") or os.path.join(os.path.dirname(sys.executable), "fastconv")
    if not os.path.exists(exe):
        pytest.fail("the `fastconv` console script is not installed")
    r = subprocess.run([exe, "info"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert re.search(r"\b(avx512|avx2|generic)\b", r.stdout.lower())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_check_prints_table_and_passes(dtype):
    r = _run("check", "--dtype", dtype, "--repeats", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.lower().splitlines()
    for op in OPS:
        rows = [ln for ln in lines if re.match(rf"\s*{op}(_backward)?\b", ln)]
        assert rows, f"no row for {op} in:\n{r.stdout}"
        for row in rows:
            assert "pass" in row and "fail" not in row, row
    # the header names the columns the issue asks for
    head = " ".join(lines[:5])
    for col in ("op", "err", "torch"):
        assert col in head, r.stdout


def test_unknown_subcommand_fails():
    r = _run("no-such-command")
    assert r.returncode != 0
