"""edgecost.convert with the real exporters and runtimes: torch → ONNX (dynamo, TorchScript,
fallback), → TFLite with litert-torch, → TorchScript .pt; numeric checks and failures."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from edgecost import convert
from edgecost.errors import ConversionError, UsageError


class SmallConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class DataDependent(nn.Module):
    """torch.export cannot guard on a Python float of a tensor; tracing just records the branch."""

    def forward(self, x):
        if float(x.abs().sum()) >= 0.0:
            return torch.relu(x) * 2.0
        return x


class TwoInTwoOut(nn.Module):
    def forward(self, a, b):
        return a + b, a * b


class Unexportable(nn.Module):
    def forward(self, x):
        return torch.linalg.inv(x)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return SmallConvNet().eval()


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def ort_run(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def static_dims(path):
    graph = onnx.load(str(path)).graph
    return {v.name: [d.dim_value if d.HasField("dim_value") else d.dim_param
                     for d in v.type.tensor_type.shape.dim] for v in list(graph.input) + list(graph.output)}


def test_dynamo_export_of_a_small_net(net, image, tmp_path, caplog):
    caplog.set_level("INFO", logger="edgecost.convert")
    path = convert.to_onnx(net, image, tmp_path / "net.onnx", exporter="dynamo")
    assert "with the dynamo exporter" in caplog.text
    assert static_dims(path) == {"input": [1, 3, 16, 16], "output": [1, 10]}
    with torch.no_grad():
        expected = net(image).numpy()
    np.testing.assert_allclose(ort_run(path, {"input": image.numpy()})[0], expected, rtol=1e-4, atol=1e-5)


def test_dynamo_failure_falls_back_to_torchscript(tmp_path, caplog):
    caplog.set_level("INFO", logger="edgecost.convert")
    path = convert.to_onnx(DataDependent(), torch.randn(2, 5), tmp_path / "dd.onnx", exporter="auto")
    assert "falling back to the TorchScript exporter" in caplog.text
    assert "with the torchscript exporter" in caplog.text
    x = np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32)
    np.testing.assert_allclose(ort_run(path, {"input": x})[0], np.maximum(x, 0) * 2, rtol=1e-6)


def test_torchscript_export_is_static_named_and_byte_deterministic(net, image, tmp_path):
    first = convert.to_onnx(net, image, tmp_path / "a.onnx", exporter="torchscript")
    second = convert.to_onnx(net, image, tmp_path / "b.onnx", exporter="torchscript")
    assert first.read_bytes() == second.read_bytes()
    assert static_dims(first) == {"input": [1, 3, 16, 16], "output": [1, 10]}
    model = onnx.load(str(first))
    assert model.opset_import[0].version == convert.DEFAULT_OPSET
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}  # folded into the conv


def test_several_inputs_and_outputs_get_numbered_names(tmp_path):
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    path = convert.to_onnx(TwoInTwoOut(), (a, b), tmp_path / "two.onnx", exporter="torchscript")
    assert static_dims(path) == {"input_0": [2, 3], "input_1": [2, 3], "output_0": [2, 3], "output_1": [2, 3]}
    named = convert.to_onnx(TwoInTwoOut(), (a, b), tmp_path / "named.onnx", exporter="torchscript",
                            input_names=["x", "y"], output_names=["sum", "product"])
    assert set(static_dims(named)) == {"x", "y", "sum", "product"}


def test_multihead_attention_exports_under_no_grad(tmp_path):
    """nn.MultiheadAttention takes a fused kernel without autograd; the export must not."""
    attention = nn.MultiheadAttention(32, 4, batch_first=True).eval()

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = attention

        def forward(self, x):
            return self.attention(x, x, x, need_weights=False)[0]

    with torch.no_grad():
        path = convert.to_onnx(SelfAttention(), torch.randn(1, 10, 32), tmp_path / "mha.onnx",
                               exporter="torchscript")
    assert "Softmax" in {n.op_type for n in onnx.load(str(path)).graph.node}


def test_tflite_conversion_is_checked_and_quiet(net, image, tmp_path, capfd):
    path = convert.to_tflite(net, image, tmp_path / "net.tflite")
    assert path.stat().st_size > 0
    captured = capfd.readouterr()
    assert "[START]" not in captured.out + captured.err and "LiteRT-Torch" not in captured.out + captured.err
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    runner = interpreter.get_signature_runner()
    (name,) = runner.get_input_details()
    (output,) = runner(**{name: image.numpy()}).values()
    with torch.no_grad():
        np.testing.assert_allclose(output, net(image).numpy(), rtol=1e-3, atol=1e-4)


def test_corrupted_onnx_file_fails_the_numeric_check(net, image, tmp_path, monkeypatch):
    export = convert._export_torchscript

    def export_then_corrupt(module, inputs, path, *args):
        export(module, inputs, path, *args)
        model = onnx.load(str(path))
        conv = next(n for n in model.graph.node if n.op_type == "Conv")
        weight = next(t for t in model.graph.initializer if t.name == conv.input[1])
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.5, weight.name))
        onnx.save(model, str(path))

    monkeypatch.setattr(convert, "_export_torchscript", export_then_corrupt)
    with pytest.raises(ConversionError) as caught:
        convert.to_onnx(net, image, tmp_path / "bad.onnx", exporter="torchscript")
    message = str(caught.value)
    assert "\n" not in message and "max abs error" in message and "max rel error" in message
    assert not (tmp_path / "bad.onnx").exists()
    assert convert.to_onnx(net, image, tmp_path / "kept.onnx", exporter="torchscript", check=False).exists()


def test_exporter_failure_is_a_one_line_conversion_error(tmp_path):
    with pytest.raises(ConversionError) as caught:
        convert.to_onnx(Unexportable(), torch.randn(2, 4, 4), tmp_path / "x.onnx", exporter="torchscript")
    message = str(caught.value)
    assert message.startswith("TorchScript exporter failed: UnsupportedOperatorError")
    assert "\n" not in message and "Traceback" not in message and len(message) < 400
    with pytest.raises(UsageError):
        convert.to_onnx(Unexportable(), torch.randn(2, 4, 4), tmp_path / "x.onnx", exporter="onnx2")


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_archive_is_checked_and_byte_deterministic(net, image, tmp_path):
    first = convert.to_torchscript(net, image, tmp_path / "a.pt")
    convert.to_torchscript(nn.Sequential(nn.ReLU(), nn.Conv2d(3, 3, 1)), image, tmp_path / "other.pt")
    second = convert.to_torchscript(net, image, tmp_path / "b.pt")
    assert first.read_bytes() == second.read_bytes()
    loaded = torch.jit.load(str(second))
    with torch.no_grad():
        torch.testing.assert_close(loaded(image), net(image))


def test_predict_path_does_not_import_torch():
    code = textwrap.dedent("""
        import sys
        import edgecost, edgecost.errors, edgecost.records
        assert "torch" not in sys.modules, "importing edgecost pulled in torch"
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
