"""Every command in README.md works: the two opening commands, and the tour (run at a small scale)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def _commands(block: str) -> list[str]:
    return [ln.split("  #")[0].strip() for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]


def test_readme_opens_with_the_two_commands():
    first = _commands(BLOCKS[0])
    assert len(first) == 2
    install_run, install_test = first
    assert install_run.startswith("python3 -m pip install .") and install_run.endswith("edgecost predict")
    assert "pip install '.[test]'" in install_test and "pytest" in install_test
    # CI runs the README's test command, verbatim.
    assert install_test in (ROOT / ".ci" / "run").read_text()


def _edgecost() -> list[str]:
    exe = shutil.which("edgecost", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "edgecost"]


def test_main_job_on_the_embedded_default(tmp_path):
    """`edgecost predict` with nothing else: the shipped example model on the shipped profile."""
    env = dict(os.environ, EDGECOST_HOME=str(tmp_path / "fresh-home"))
    proc = subprocess.run(_edgecost() + ["predict", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import json

    rec = json.loads(proc.stdout)
    assert rec["device"] == "ci-epyc-2vcpu" and rec["latency_ms"] > 0 and rec["low_ms"] <= rec["latency_ms"]


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    from edgecost import convert

    m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU()).eval()
    return convert.to_tflite(m, (torch.randn(1, 3, 16, 16),), tmp_path_factory.mktemp("tfl") / "model.tflite")


def test_tour_commands_run(profiled, tiny_tflite, tmp_path):
    """Each `edgecost ...` line of the tour, with placeholder files filled in and campaigns kept short."""
    unseen = sorted(profiled.models_dir.glob("*.onnx"))
    subst = {
        "model.onnx": str(unseen[0]),
        "a.onnx": str(unseen[1]),
        "b.onnx": str(unseen[2]),
        "model.tflite": str(tiny_tflite),
        "scatter.png": str(tmp_path / "scatter.png"),
        "measurements.parquet": str(tmp_path / "measurements.parquet"),
    }
    home = tmp_path / "home"
    shutil.copytree(profiled.home, home)
    env = dict(os.environ, EDGECOST_HOME=str(home))
    tour = [c for block in BLOCKS[1:] for c in _commands(block) if c.startswith("edgecost ")]
    assert len(tour) >= 8
    for cmd in tour:
        args = [subst.get(a, a) for a in shlex.split(cmd)[1:]]
        if args[0] == "profile":  # the tour's 10-minute campaign, at test scale
            args += ["--max-models", "3", "--families", "conv,linear", "--no-train"]
        if args[0] == "evaluate":
            args += ["--seeds", "1", "--protocol", "random"]
        if args[0] == "measure":
            args += ["--num-runs", "3", "--min-secs", "0"]
        proc = subprocess.run(_edgecost() + args, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, (cmd, proc.stdout[-2000:], proc.stderr[-2000:])
    assert (tmp_path / "scatter.png").exists() and (tmp_path / "measurements.parquet").exists()
