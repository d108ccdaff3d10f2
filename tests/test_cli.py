"""The `edgecost` command line, run as users run it (a subprocess): exit codes, one-line errors, --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper


def run_cli(*args: str, home: Path, timeout: float = 180.0) -> subprocess.CompletedProcess:
    env = dict(os.environ, EDGECOST_HOME=str(home), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "edgecost", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 or lines[-1].startswith("Error:") or lines[0].startswith("Usage:"), err
    for f in fragments:
        assert f in err, (f, err)


@pytest.fixture
def home(tmp_path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 8, 3, 3], [0.01] * (8 * 8 * 9))
    conv = helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv")
    relu = helper.make_node("Relu", ["c"], ["y"], name="relu")
    model = helper.make_model(helper.make_graph([conv, relu], "tiny", [x], [y], [w]),
                              opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path_factory.mktemp("models") / "tiny.onnx"
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "dyn", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path_factory.mktemp("models") / "dynamic.onnx"
    onnx.save(model, path)
    return path


# -- bad input: exit code 2, one line, no traceback ------------------------------------


@pytest.mark.parametrize("command", ["predict", "measure"])
def test_missing_file(home, command):
    assert_one_line_error(run_cli(command, "nope.onnx", "--device", "local", home=home), 2, "not found")


@pytest.mark.parametrize("command", ["predict", "measure"])
def test_not_a_model(home, tmp_path, command):
    p = tmp_path / "notes.txt"
    p.write_text("hello, I am not a model\n" * 20)
    assert_one_line_error(run_cli(command, str(p), "--device", "local", home=home), 2)


@pytest.mark.parametrize("command", ["predict", "measure"])
def test_truncated_onnx(home, tmp_path, tiny_onnx, command):
    data = tiny_onnx.read_bytes()
    p = tmp_path / "truncated.onnx"
    p.write_bytes(data[: len(data) // 2])
    assert_one_line_error(run_cli(command, str(p), "--device", "local", home=home), 2)


@pytest.mark.parametrize("command", ["predict", "measure"])
def test_unknown_device(home, tiny_onnx, command):
    assert_one_line_error(run_cli(command, str(tiny_onnx), "--device", "pi9", home=home), 2,
                          "unknown device 'pi9'", "edgecost devices add")


@pytest.mark.parametrize("command", ["predict", "measure"])
def test_dynamic_shape_without_input_shape(home, dynamic_onnx, command):
    proc = run_cli(command, str(dynamic_onnx), "--device", "local", home=home)
    assert_one_line_error(proc, 2, "batch", "--input-shape x=")


@pytest.mark.parametrize("threads", ["0", "-2"])
@pytest.mark.parametrize("command", ["predict", "measure"])
def test_bad_threads(home, tiny_onnx, command, threads):
    proc = run_cli(command, str(tiny_onnx), "--device", "local", "--threads", threads, home=home)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "threads" in proc.stderr


def test_bad_input_shape_flag(home, tiny_onnx):
    assert_one_line_error(run_cli("predict", str(tiny_onnx), "--input-shape", "x=1xAx3", home=home), 2,
                          "--input-shape")


def test_wrong_runtime_for_file(home, tiny_onnx):
    assert_one_line_error(run_cli("measure", str(tiny_onnx), "--runtime", "tflite", home=home), 2,
                          "--runtime onnxruntime")


def test_predict_without_profile_names_the_profile_command(home, tiny_onnx):
    proc = run_cli("predict", str(tiny_onnx), "--device", "local", home=home)
    assert_one_line_error(proc, 1, "no profile for target local/onnxruntime/t1/fp32/b1",
                          "edgecost profile --device local")


def test_corrupt_inventory_is_a_clear_error(home, tiny_onnx):
    (home / "devices.toml").write_text("[devices.x\n")
    assert_one_line_error(run_cli("devices", "list", home=home), 2, "devices.toml")


# -- the happy paths -------------------------------------------------------------------


def test_measure_json_and_store(home, tiny_onnx, tmp_path):
    proc = run_cli("measure", str(tiny_onnx), "--device", "local", "--num-runs", "10", "--min-secs", "0.05",
                   "--json", home=home)
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stdout.strip().splitlines()
    rec = json.loads(line)
    for key in ("n", "median_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "runtime_version", "agent_version",
                "threads", "device", "provenance"):
        assert key in rec, key
    assert rec["n"] >= 10 and rec["p10_ms"] <= rec["median_ms"] <= rec["p90_ms"]
    assert rec["device"] == "local" and rec["threads"] == 1
    info = json.loads(run_cli("store", "info", "--json", home=home).stdout)
    assert info["targets"] == {"local/onnxruntime/t1/fp32/b1": 1}
    out = tmp_path / "m.csv"
    proc = run_cli("store", "export", "--format", "csv", "-o", str(out), home=home)
    assert proc.returncode == 0 and out.read_text().count("\n") == 2


def test_measure_tflite_op_profile(home, tmp_path):
    """`--profile-runs` on a .tflite: every operator gets a time from its single-op slice."""
    torch = pytest.importorskip("torch")
    from edgecost import convert
    from edgecost.graph import read_model

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1)
            self.down = torch.nn.Conv2d(8, 8, 3, 2, 1)  # litert-torch writes PAD + VALID conv

        def forward(self, x):
            y = torch.relu(self.a(x))
            return self.down(y + self.b(y))

    path = convert.to_tflite(Net(), (torch.randn(1, 3, 16, 16),), tmp_path / "net.tflite")
    proc = run_cli("measure", str(path), "--num-runs", "5", "--min-secs", "0", "--profile-runs", "1", "--json",
                   home=home)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    kernels = read_model(path).kernels
    assert [p["name"] for p in rec["node_profile"]] == [k.name for k in kernels]
    assert all(p["median_us"] > 0 and p["source"] == "op-slice" for p in rec["node_profile"])
    # The PAD that XNNPACK folds into the stride-2 convolution says so: its slice is a copy the model never makes.
    pad = next(p for p in rec["node_profile"] if p["op_type"] == "PAD")
    pad_out = next(k for k in kernels if k.name == pad["name"]).outputs[0]
    conv = next(k for k in kernels if k.inputs and k.inputs[0] == pad_out)
    assert pad["folded_into"] == conv.name and conv.op_type == "CONV_2D"
    assert sum("folded_into" in p for p in rec["node_profile"]) == 1


def test_profile_no_op_slices_keeps_whole_model_times_only(home):
    pytest.importorskip("litert_torch")
    from edgecost.records import Target
    from edgecost.store import Store

    proc = run_cli("profile", "--device", "local", "--runtime", "tflite", "--threads", "1", "--families", "conv",
                   "--max-models", "1", "--no-op-slices", "--no-train", "--json", home=home, timeout=300)
    assert proc.returncode == 0, proc.stderr
    [row] = Store(home / "edgecost.sqlite").measurements(Target("local", "tflite", 1))
    assert row.measurement.node_profile == ()


def test_measure_input_shape_fixes_dynamic_dims(home, dynamic_onnx):
    proc = run_cli("measure", str(dynamic_onnx), "--input-shape", "x=3x4", "--num-runs", "5", "--min-secs", "0",
                   "--json", "--no-store", home=home)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert rec["provenance"]["inputs"][0]["shape"] == [3, 4]


def test_devices_add_list_remove(home):
    assert run_cli("devices", "add", "pi4", "--host", "pi@10.0.0.4", "--threads", "4", home=home).returncode == 0
    rows = [json.loads(ln) for ln in run_cli("devices", "list", "--json", home=home).stdout.splitlines()]
    names = [r["name"] for r in rows]
    assert "local" in names and "pi4" in names
    assert next(r for r in rows if r["name"] == "pi4")["threads"] == 4
    assert run_cli("devices", "remove", "pi4", home=home).returncode == 0
    assert_one_line_error(run_cli("devices", "remove", "pi4", home=home), 2, "unknown device")


def test_help_texts(home):
    for args in (["--help"], ["predict", "--help"], ["measure", "--help"], ["profile", "--help"],
                 ["evaluate", "--help"], ["devices", "--help"], ["store", "export", "--help"]):
        proc = run_cli(*args, home=home)
        assert proc.returncode == 0 and "Usage:" in proc.stdout, args


def test_measure_torchscript_model(home, tmp_path):
    torch = pytest.importorskip("torch")
    from edgecost import convert

    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    pt = convert.to_torchscript(m, (torch.randn(1, 3, 12, 12),), tmp_path / "m.pt")
    assert_one_line_error(run_cli("measure", str(pt), home=home), 2, "--input-shape")
    proc = run_cli("measure", str(pt), "--input-shape", "x=1x3x12x12", "--num-runs", "3", "--min-secs", "0",
                   "--json", home=home)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert rec["runtime"] == "torch" and rec["n"] >= 3


def test_train_reports_accuracy_and_consistency_and_records_its_latency_statistic(profiled, tmp_path):
    import shutil

    from edgecost.predictor.dataset import build_dataset
    from edgecost.predictor.labels import DESCRIPTIONS
    from edgecost.predictor.profile import Profile
    from edgecost.records import Target
    from edgecost.store import Store

    home = tmp_path / "home"
    shutil.copytree(profiled.home, home)  # the fixture's own profile stays as other tests expect it
    model = Path(__file__).resolve().parents[1] / "models" / "examples" / "mobilenetv2_like.onnx"
    proc = run_cli("train", "--json", home=home, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert Path(out["profile"]).is_file() and out["profile"].startswith(str(home))
    assert 0.0 <= out["accuracy"]["within_10pct"] <= 1.0 and out["accuracy"]["n"] >= 40
    assert "measurement_consistency" in out  # null below 25 networks with kernel times
    leaf = out["kernel_leaf_size"]  # chosen by the fit: the size of least out-of-fold error
    assert leaf["chosen"] == int(min(leaf["oof_mean_abs_log_error"], key=leaf["oof_mean_abs_log_error"].get))
    # The default, auto: the statistic whose fitted profile predicts best out of fold, and why; what
    # the campaign's revisits alone would have taken is kept beside it.
    stat = Profile.load(out["profile"]).card["latency_statistic"]
    errors = stat["chosen"]["oof_mean_abs_log_error"]
    assert stat["chosen"]["requested"] == "auto" and stat["name"] == min(errors, key=errors.get)
    assert out["latency_statistic"] == stat["name"]
    revisit_choice = build_dataset(Store(home / "edgecost.sqlite"), Target("local", "onnxruntime", 1)).statistic
    assert stat["chosen"]["revisits"]["would_choose"] == revisit_choice
    text = run_cli("train", home=home, timeout=600)
    assert text.returncode == 0 and f"latency = {DESCRIPTIONS[stat['name']]} (auto: " in text.stdout
    # The host's drift, corrected or not, and why (tests/predictor/test_drift.py has a drifting store).
    drift = Profile.load(out["profile"]).card["host_drift"]
    assert out["host_drift"] == drift and drift["method"] == "revisits" and drift["reason"]
    verb = "corrected for" if drift["applied"] else "not corrected"
    assert f"host speed drift {verb}: " in text.stdout
    assert run_cli("train", "--drift", "none", "--statistic", "min", home=home, timeout=600).returncode == 0
    assert "--drift none" in Profile.load(out["profile"]).card["host_drift"]["reason"]
    assert_one_line_error(run_cli("train", "--drift", "sideways", home=home), 2, "--drift", "'revisits', 'none'")
    assert run_cli("train", "--statistic", "min", home=home, timeout=600).returncode == 0
    assert Profile.load(out["profile"]).card["latency_statistic"]["name"] == "min"
    pred = run_cli("predict", str(model), "--device", "local", "--json", home=home)
    assert pred.returncode == 0 and json.loads(pred.stdout)["latency_statistic"] == "min"
    assert "latency = the fastest run" in run_cli("predict", str(model), "--device", "local", home=home).stdout
    text = run_cli("train", "--statistic", "median", home=home, timeout=600)
    assert text.returncode == 0 and "profile saved" in text.stdout and "cross-validated" in text.stdout
    assert "of them whole networks" in text.stdout and "kernels a leaf (out-of-fold mean |log error| 10: " in text.stdout
    assert Profile.load(out["profile"]).card["latency_statistic"]["name"] == "median"
    pred = run_cli("predict", str(model), "--device", "local", "--json", home=home)
    assert pred.returncode == 0 and json.loads(pred.stdout)["latency_statistic"] == "median"
    assert run_cli("train", "--statistic", "p10", home=home, timeout=600).returncode == 0
    assert Profile.load(out["profile"]).card["latency_statistic"]["name"] == "p10"
    assert "latency = the 10th-percentile run" in run_cli("predict", str(model), "--device", "local", home=home).stdout
    assert_one_line_error(run_cli("train", "--statistic", "mean", home=home), 2, "--statistic",
                          "'auto', 'min', 'p10', 'median'")


def test_profile_with_training_reports_the_profiles_measurement_consistency(home):
    proc = run_cli("profile", "--device", "local", "--families", "conv,linear", "--strategy", "random",
                   "--max-models", "6", "--quiet-gate", "--json", home=home, timeout=600)
    assert proc.returncode == 0, proc.stderr
    [summary] = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert summary["measured"] == 6
    assert summary["gate"]["checks"] >= 7  # --quiet-gate: a sentinel run first, then one before each model
    assert "measurement_consistency" in summary  # null: a 6-model campaign has too few networks to tell
    assert list((home / "profiles").glob("local__onnxruntime__t1__fp32__b1.profile.json.gz"))


def test_profile_rejects_a_revisit_share_outside_0_to_1(home):
    proc = run_cli("profile", "--device", "local", "--revisit-share", "1.5", home=home)
    assert_one_line_error(proc, 2, "revisit share", "0.3")


def test_profile_rejects_a_negative_revisit_settle_tolerance(home):
    proc = run_cli("profile", "--device", "local", "--revisit-settle-pct", "-2", home=home)
    assert_one_line_error(proc, 2, "settle tolerance", "tolerance >= 0")
