"""Real models for the graph tests, built once per session: torch -> ONNX, torch -> TFLite, onnx.helper."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")
nn = torch.nn


# ----------------------------------------------------------------------------- plain-torch nets


def _cbr(i, o, k=3, s=1, g=1, act=True):
    layers = [nn.Conv2d(i, o, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(o)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, i, o, stride, expand):
        super().__init__()
        hidden = i * expand
        self.res = stride == 1 and i == o
        layers = [] if expand == 1 else [_cbr(i, hidden, 1)]
        layers += [_cbr(hidden, hidden, 3, stride, hidden), _cbr(hidden, o, 1, act=False)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.res else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1)]
        layers, c = [_cbr(3, 32, 3, 2)], 32
        for t, out, n, s in cfg:
            for j in range(n):
                layers.append(InvertedResidual(c, out, s if j == 0 else 1, t))
                c = out
        layers.append(_cbr(c, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean([2, 3]))


class BasicBlock(nn.Module):
    def __init__(self, i, o, stride):
        super().__init__()
        self.c1 = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(o)
        self.c2 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(o)
        self.down = None
        if stride != 1 or i != o:
            self.down = nn.Sequential(nn.Conv2d(i, o, 1, stride, bias=False), nn.BatchNorm2d(o))

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        layers, c = [], 64
        for o, s in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [BasicBlock(c, o, s), BasicBlock(o, o, 1)]
            c = o
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


class SmallNet(nn.Module):
    """conv 3x3 -> relu -> depthwise 3x3 (+residual) -> relu6 -> conv 1x1 -> maxpool -> gap -> linear."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 16, 1)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        y = nn.functional.relu6(self.dw(y) + x)
        y = self.gap(self.pool(self.pw(y)))
        return self.fc(y.flatten(1))


class NchwcNet(nn.Module):
    """Exercises ReorderInput, nchwc AveragePool/Upsample/MaxPool, dilated grouped conv, Sum fusion."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(32, 32, 3, 1, 1)
        self.c2 = nn.Conv2d(32, 48, 3, 2, 1)
        self.c3 = nn.Conv2d(48, 48, 3, 1, 2, dilation=2, groups=3)

    def forward(self, x):
        y = torch.relu(self.c1(x))
        y = nn.functional.avg_pool2d(y, 3, 1, 1)
        y = nn.functional.interpolate(y, scale_factor=2.0, mode="nearest")
        y = torch.sigmoid(self.c2(y))
        y = self.c3(y) + y
        return nn.functional.adaptive_max_pool2d(y, 1).flatten(1)


class TinyTransformer(nn.Module):
    def __init__(self, d=32, heads=4):
        super().__init__()
        self.h = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.o = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.f1, self.f2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, -1)
        q, k, v = (t.reshape(b, s, self.h, d // self.h).transpose(1, 2) for t in (q, k, v))
        a = torch.softmax(q @ k.transpose(-1, -2) / (d // self.h) ** 0.5, -1) @ v
        x = x + self.o(a.transpose(1, 2).reshape(b, s, d))
        return x + self.f2(nn.functional.gelu(self.f1(self.ln2(x))))


class TfliteNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, 2, 1)
        self.dw = nn.Conv2d(16, 16, 3, 1, 1, groups=16)
        self.pw = nn.Conv2d(16, 32, 1)
        self.fc = nn.Linear(32, 10)
        self.pool = nn.MaxPool2d(2)
        self.hs = nn.Hardswish()

    def forward(self, x):
        y = torch.relu(self.c1(x))
        y = nn.functional.relu6(self.dw(y))
        y = self.hs(self.pw(y)) + 0.5 * torch.cat([y, y], 1)
        y = self.pool(y).mean([2, 3])
        return torch.softmax(self.fc(y), -1)


def export_onnx(module, shape, path: Path, dynamic_batch: bool = False, opset: int | None = None) -> Path:
    module.eval()
    kwargs = {}
    if dynamic_batch:
        kwargs["dynamic_axes"] = {"x": {0: "batch"}, "y": {0: "batch"}}
    if opset:
        kwargs["opset_version"] = opset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(*shape),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], **kwargs)
    return path


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def onnx_exporter():
    """``export_onnx(module, shape, path, dynamic_batch=False, opset=None) -> path``."""
    return export_onnx


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("graph_models")


@pytest.fixture(scope="session")
def resnet18_onnx(model_dir) -> Path:
    torch.manual_seed(0)
    return export_onnx(ResNet18(), (1, 3, 224, 224), model_dir / "resnet18.onnx")


@pytest.fixture(scope="session")
def mobilenetv2_onnx(model_dir) -> Path:
    torch.manual_seed(0)
    return export_onnx(MobileNetV2(), (1, 3, 224, 224), model_dir / "mobilenetv2.onnx")


@pytest.fixture(scope="session")
def small_onnx(model_dir) -> Path:
    torch.manual_seed(0)
    return export_onnx(SmallNet(), (1, 8, 32, 32), model_dir / "small.onnx")


@pytest.fixture(scope="session")
def small_dynamic_onnx(model_dir) -> Path:
    torch.manual_seed(0)
    return export_onnx(SmallNet(), (2, 8, 32, 32), model_dir / "small_dynamic.onnx", dynamic_batch=True)


@pytest.fixture(scope="session")
def nchwc_onnx(model_dir) -> Path:
    torch.manual_seed(0)
    return export_onnx(NchwcNet(), (1, 32, 10, 10), model_dir / "nchwc.onnx")


@pytest.fixture(scope="session")
def transformer_onnx(model_dir) -> Path:
    torch.manual_seed(0)
    return export_onnx(TinyTransformer(), (1, 16, 32), model_dir / "transformer.onnx", opset=17)


def _conv_bn_relu_model() -> onnx.ModelProto:
    """Conv -> BatchNorm -> Relu -> Identity -> Conv -> Add(residual) -> Relu -> Dropout -> GAP."""
    rng = np.random.default_rng(0)

    def init(name, shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    c = 16
    inits = [
        init("w1", (c, c, 3, 3)), init("b1", (c,)),
        numpy_helper.from_array(np.abs(rng.standard_normal(c)).astype(np.float32) + 0.5, "bn_scale"),
        init("bn_bias", (c,)), init("bn_mean", (c,)),
        numpy_helper.from_array(np.abs(rng.standard_normal(c)).astype(np.float32) + 0.5, "bn_var"),
        init("w2", (c, c, 3, 3)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn1"],
                         name="bn1"),
        helper.make_node("Relu", ["bn1"], ["r1"], name="relu1"),
        helper.make_node("Identity", ["r1"], ["id1"], name="ident"),
        helper.make_node("Conv", ["id1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["sum"], name="residual"),
        helper.make_node("Relu", ["sum"], ["r2"], name="relu2"),
        helper.make_node("Dropout", ["r2"], ["d"], name="drop"),
        helper.make_node("GlobalAveragePool", ["d"], ["y"], name="gap"),
    ]
    graph = helper.make_graph(nodes, "cbr", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 20, 20])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, 1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="session")
def conv_bn_relu_onnx(model_dir) -> Path:
    path = model_dir / "conv_bn_relu.onnx"
    onnx.save(_conv_bn_relu_model(), str(path))
    return path


@pytest.fixture(scope="session")
def tflite_float(model_dir) -> Path:
    litert_torch = pytest.importorskip("litert_torch")
    torch.manual_seed(0)
    path = model_dir / "net.tflite"
    litert_torch.convert(TfliteNet().eval(), (torch.randn(1, 3, 32, 32),)).export(str(path))
    return path


@pytest.fixture(scope="session")
def tflite_int8(model_dir) -> Path:
    """A PT2E int8-quantized (QDQ) model: int8 weights and QUANTIZE/DEQUANTIZE kernels."""
    litert_torch = pytest.importorskip("litert_torch")
    from litert_torch.quantize import pt2e_quantizer
    from torchao.quantization.pt2e import quantize_pt2e

    class Q(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, 1, 1)
            self.dw = nn.Conv2d(8, 8, 3, 1, 1, groups=8)
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            y = torch.relu(self.dw(torch.relu(self.c1(x))))
            return self.fc(y.mean([2, 3]))

    torch.manual_seed(0)
    args = (torch.randn(1, 3, 16, 16),)
    m = torch.export.export(Q().eval(), args).module()
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
    m = quantize_pt2e.prepare_pt2e(m, quantizer)
    m(*args)
    m = quantize_pt2e.convert_pt2e(m, fold_quantize=False)
    path = model_dir / "net_int8.tflite"
    litert_torch.convert(m, args).export(str(path))
    return path
