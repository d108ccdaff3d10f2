"""Fixtures for the device agent tests: tiny real models and a JSON-lines agent client.

Everything here uses the real runtimes (onnxruntime, ai_edge_litert, torch); models are
tiny so that the whole suite runs in seconds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import resource
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / "device_agents" / "edgecost_agent.py"


# --- the agent as a module (for unit tests of its pieces) ---------------------------


@pytest.fixture(scope="session")
def agent():
    """The agent file imported as a module (it is not a package)."""
    spec = importlib.util.spec_from_file_location("edgecost_agent", AGENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- tiny models --------------------------------------------------------------------


def _conv_weights(rng, out_ch, in_ch, k, group=1):
    return rng.standard_normal((out_ch, in_ch // group, k, k)).astype(np.float32) * 0.1


def make_conv_onnx(path, dynamic_batch=False, ir_version=8, opset=13):
    """Conv+Relu, Conv, residual Add, Relu: FusedConv at `extended`, NCHWc at `all`.

    ``ir_version=6, opset=11`` gives a model that 2020-era runtimes (Jetson images) load.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(_conv_weights(rng, 8, 3, 3), "w1"),
        numpy_helper.from_array(np.zeros(8, np.float32), "b1"),
        numpy_helper.from_array(_conv_weights(rng, 8, 8, 3), "w2"),
        numpy_helper.from_array(np.zeros(8, np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["y"], name="relu2"),
    ]
    shape = ["batch", 3, 16, 16] if dynamic_batch else [1, 3, 16, 16]
    graph = helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    import onnx

    onnx.save(model, str(path))
    return path


def make_mobilenet_onnx(path):
    """A MobileNetV2-like block: Conv+Clip (ReLU6), depthwise, pointwise, residual, head."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(_conv_weights(rng, 16, 3, 3), "stem_w"),
        numpy_helper.from_array(np.zeros(16, np.float32), "stem_b"),
        numpy_helper.from_array(_conv_weights(rng, 32, 16, 1), "exp_w"),
        numpy_helper.from_array(np.zeros(32, np.float32), "exp_b"),
        numpy_helper.from_array(_conv_weights(rng, 32, 32, 3, group=32), "dw_w"),
        numpy_helper.from_array(np.zeros(32, np.float32), "dw_b"),
        numpy_helper.from_array(_conv_weights(rng, 16, 32, 1), "proj_w"),
        numpy_helper.from_array(np.zeros(16, np.float32), "proj_b"),
        numpy_helper.from_array(rng.standard_normal((10, 16)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fc_b"),
        numpy_helper.from_array(np.array(0.0, np.float32), "six_lo"),
        numpy_helper.from_array(np.array(6.0, np.float32), "six_hi"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "stem_w", "stem_b"], ["s"], name="stem",
                         kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["s", "six_lo", "six_hi"], ["s6"], name="stem_relu6"),
        helper.make_node("Conv", ["s6", "exp_w", "exp_b"], ["e"], name="expand",
                         kernel_shape=[1, 1]),
        helper.make_node("Clip", ["e", "six_lo", "six_hi"], ["e6"], name="expand_relu6"),
        helper.make_node("Conv", ["e6", "dw_w", "dw_b"], ["d"], name="depthwise",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=32),
        helper.make_node("Clip", ["d", "six_lo", "six_hi"], ["d6"], name="dw_relu6"),
        helper.make_node("Conv", ["d6", "proj_w", "proj_b"], ["p"], name="project",
                         kernel_shape=[1, 1]),
        helper.make_node("Add", ["p", "s6"], ["res"], name="residual"),
        helper.make_node("GlobalAveragePool", ["res"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], name="fc", transB=1,
                         alpha=1.0),
    ]
    graph = helper.make_graph(
        nodes, "mbv2_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def make_attribute_zoo_onnx(path):
    """Nodes carrying every attribute type (and a large initializer the reader must skip)."""
    import onnx
    from onnx import AttributeProto, TensorProto, helper, numpy_helper

    sub_graph = helper.make_graph(
        [helper.make_node("Identity", ["a"], ["b"], name="inner")], "then_branch", [],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])])
    tensor = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "t")
    custom = helper.make_node(
        "Everything", ["x", ""], ["y1", "y2"], name="zoo", domain="org.edgecost.test",
        f=1.5, i=-3, big=2 ** 40, s="héllo", floats=[1.0, -2.5, 3.25], ints=[-1, 0, 7, 2 ** 40],
        strings=["a", "ünïcode"], t=tensor, g=sub_graph, tensors=[tensor, tensor],
        graphs=[sub_graph])
    custom.attribute.append(helper.make_attribute("empty_ints", [], attr_type=AttributeProto.INTS))
    nodes = [
        helper.make_node("Transpose", ["y1"], ["t1"], perm=[1, 0]),  # no name
        custom,
        helper.make_node("Gemm", ["t1", "w", ""], ["out"], name="gemm", alpha=0.25, beta=1.0,
                         transB=1),
        helper.make_node("Constant", [], ["c"], name="const", value=tensor),
    ]
    big = numpy_helper.from_array(np.ones((512, 1024), np.float32), "w")  # 2 MB
    graph = helper.make_graph(
        nodes, "zoo", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 2])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], [big])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("org.edgecost.test", 1)])
    onnx.save(model, str(path))
    return path


class TinyNet:
    """Factory of the torch module used for the .pt, .pt2 and .tflite fixtures."""

    @staticmethod
    def build():
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
                self.fc = torch.nn.Linear(8, 4)

            def forward(self, x):
                return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

        torch.manual_seed(0)
        return Net().eval()


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Paths of tiny ONNX models (built with onnx.helper), keyed by name."""
    root = tmp_path_factory.mktemp("models")
    return {
        "conv": make_conv_onnx(root / "conv.onnx"),
        "conv_dynamic": make_conv_onnx(root / "conv_dynamic.onnx", dynamic_batch=True),
        "conv_ir6": make_conv_onnx(root / "conv_ir6.onnx", ir_version=6, opset=11),
        "mobilenet": make_mobilenet_onnx(root / "mobilenet.onnx"),
        "attribute_zoo": make_attribute_zoo_onnx(root / "attribute_zoo.onnx"),
    }


@pytest.fixture(scope="session")
def torch_models(tmp_path_factory):
    """A TorchScript .pt and a torch.export .pt2 of TinyNet (input x: 1x3x16x16)."""
    import torch

    root = tmp_path_factory.mktemp("torch_models")
    net = TinyNet.build()
    example = torch.randn(1, 3, 16, 16)
    pt = root / "tiny.pt"
    torch.jit.trace(net, example).save(str(pt))
    pt2 = root / "tiny.pt2"
    torch.export.save(torch.export.export(net, (example,)), str(pt2))
    return {"pt": pt, "pt2": pt2}


@pytest.fixture(scope="session")
def tflite_model(tmp_path_factory):
    """TinyNet converted to .tflite with litert_torch (a few seconds, once per session)."""
    import torch

    litert_torch = pytest.importorskip("litert_torch")
    path = tmp_path_factory.mktemp("tflite") / "tiny.tflite"
    litert_torch.convert(TinyNet.build(), (torch.randn(1, 3, 16, 16),)).export(str(path))
    return path


# --- a JSON-lines client for `serve` ------------------------------------------------


def _no_core_dumps():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class AgentProcess:
    """`edgecost_agent.py serve` in a subprocess, spoken to over JSON lines.

    stdout is read by a thread into a queue so every read has a timeout; stderr goes to
    a file (``stderr_text()``) so a chatty runtime can never block the agent.
    """

    def __init__(self, workdir, env=None, python=None, cwd=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = self.workdir / "agent.stderr"
        self._stderr = open(self.stderr_path, "w")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [python or sys.executable, str(AGENT), "serve", "--workdir", str(self.workdir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            env=full_env, cwd=str(cwd or self.workdir), text=True, bufsize=1,
            preexec_fn=_no_core_dumps)
        self.lines = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._next_id = 0
        self.hello = self.read_line(timeout=60)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def read_line(self, timeout=60):
        line = self.lines.get(timeout=timeout)
        assert line is not None, "agent closed stdout; stderr:\n" + self.stderr_text()
        return json.loads(line)

    def send_raw(self, text):
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def request(self, cmd, args=None, timeout=60, **extra):
        self._next_id += 1
        message = {"id": self._next_id, "cmd": cmd, "args": args or {}}
        message.update(extra)
        self.send_raw(json.dumps(message) + "\n")
        response = self.read_line(timeout=timeout)
        assert response["id"] == self._next_id, response
        return response

    def bench(self, timeout=60, **args):
        return self.request("bench", args, timeout=timeout)

    def stderr_text(self):
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def close(self, timeout=30):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        return self.proc.returncode


@pytest.fixture
def start_agent(tmp_path):
    """Factory: start an agent (with extra env); every agent started is closed after the test."""
    started = []

    def start(env=None, python=None, workdir=None):
        agent_process = AgentProcess(workdir or tmp_path / ("agent%d" % len(started)),
                                     env=env, python=python)
        started.append(agent_process)
        return agent_process

    yield start
    for agent_process in started:
        agent_process.close()


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """One agent for the whole session (test hooks enabled): it must survive everything."""
    agent_process = AgentProcess(tmp_path_factory.mktemp("served"),
                                 env={"EDGECOST_AGENT_TEST_HOOKS": "1"})
    yield agent_process
    agent_process.close()
