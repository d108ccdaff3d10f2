"""Kernels as XNNPACK runs a .tflite: which PADs fold into the convolution that reads them."""

from __future__ import annotations

import pytest

from edgecost.fusion import ExecutionSpec, executed_kernels, xnnpack_kernels
from edgecost.graph import read_model

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional


class Pads(nn.Module):
    """A stride-2 conv (litert-torch writes PAD + VALID conv), a padded tensor two ops read, and a
    channel pad: only the first PAD is XNNPACK's to fold."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(8, 8, 3, 2, 1)
        self.valid = nn.Conv2d(8, 8, 3, 1, 0)
        self.after_channel_pad = nn.Conv2d(10, 8, 1)

    def forward(self, x):
        a = self.down(x)                                   # PAD (H, W) -> CONV_2D: folded
        p = F.pad(x, (1, 1, 1, 1))
        b = self.valid(p) + p[:, :, 1:-1, 1:-1].sum()      # the padded tensor has two readers: kept
        c = self.after_channel_pad(F.pad(x, (0, 0, 0, 0, 1, 1)))  # channels padded: kept
        return a.sum() + b.sum() + c.sum()


@pytest.fixture(scope="module")
def pads_tflite(tmp_path_factory):
    litert_torch = pytest.importorskip("litert_torch")
    path = tmp_path_factory.mktemp("fusion") / "pads.tflite"
    torch.manual_seed(0)
    litert_torch.convert(Pads().eval(), (torch.randn(1, 8, 16, 16),)).export(str(path))
    return path


def test_xnnpack_folds_only_a_spatial_pad_read_by_one_convolution(pads_tflite):
    graph = read_model(pads_tflite)
    pads = [k for k in graph.kernels if k.op_type == "PAD"]
    assert len(pads) == 3, [k.op_type for k in graph.kernels]
    run = xnnpack_kernels(graph.kernels)
    assert len(run) == len(graph.kernels) - 1
    folded = [k for k in run if k.attrs.get("covers")]
    assert len(folded) == 1 and folded[0].op_type == "CONV_2D"
    pad = next(k for k in pads if k.name in folded[0].attrs["covers"])
    assert folded[0].input_shapes[0] == pad.output_shapes[0]  # the conv keeps the work it does
    assert pad.input_shapes[0][1:3] != pad.output_shapes[0][1:3]
    # The predictor's view of the file is the same list.
    assert executed_kernels(pads_tflite, graph, ExecutionSpec("tflite")) == run


def test_xnnpack_view_of_a_graph_without_pads_is_the_graph(tmp_path):
    litert_torch = pytest.importorskip("litert_torch")
    path = tmp_path / "plain.tflite"
    litert_torch.convert(nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), nn.ReLU()).eval(),
                         (torch.randn(1, 3, 8, 8),)).export(str(path))
    graph = read_model(path)
    assert xnnpack_kernels(graph.kernels) == [k for k in graph.kernels if k.op_type != "DELEGATE"]
