"""The arm64 root: Python, NumPy, ONNX Runtime and LiteRT really run as aarch64 under qemu."""

from __future__ import annotations

import json
import shlex
import textwrap
from pathlib import Path

import numpy as np
import pytest
from support.armroot import guest_env, run_arm64, write_python_wrapper

pytestmark = [pytest.mark.arm, pytest.mark.slow]


def run_json(args, root, **kwargs) -> dict:
    proc = run_arm64(args, root, **kwargs)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "guest.py"
    script.write_text(textwrap.dedent(body))
    return script


def test_python_is_aarch64_with_numpy_and_the_fake_cpus(arm64_root: Path, tmp_path: Path):
    script = write_script(tmp_path, """
        import json, os, platform, sys
        import numpy
        a = numpy.arange(12, dtype=numpy.float32).reshape(3, 4)
        print(json.dumps({
            "machine": platform.machine(), "python": platform.python_version(),
            "numpy": numpy.__version__, "matmul": float((a @ a.T).sum()),
            "cpuinfo_parts": sorted({l.split(":")[1].strip() for l in open("/proc/cpuinfo") if l.startswith("CPU part")}),
            "online": open("/sys/devices/system/cpu/online").read().strip(),
            "argv": sys.argv[1:],
        }))
    """)
    info = run_json([script, "x y", "z"], arm64_root)
    assert info["machine"] == "aarch64"
    assert info["python"].startswith("3.")
    assert info["matmul"] == float((np.arange(12.0).reshape(3, 4) @ np.arange(12.0).reshape(3, 4).T).sum())
    assert info["cpuinfo_parts"] == ["0xd08"]  # Cortex-A72
    assert info["online"].startswith("0-")
    assert info["argv"] == ["x y", "z"]


def test_stdin_scripts_run_and_host_paths_are_visible(arm64_root: Path, tmp_path: Path):
    data = tmp_path / "data.txt"
    data.write_text("from the host")
    proc = run_arm64(["-"], arm64_root, input=f"import platform; print(platform.machine(), open({str(data)!r}).read())")
    assert (proc.returncode, proc.stdout) == (0, "aarch64 from the host\n"), proc.stderr
    assert "PYTHONDONTWRITEBYTECODE" in guest_env() and "VIRTUAL_ENV" not in guest_env()


def _tiny_onnx(path: Path) -> np.ndarray:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper  # noqa: PLC0415

    weights = np.arange(32, dtype=np.float32).reshape(8, 4) / 10
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor("w", TensorProto.FLOAT, [8, 4], weights.ravel().tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by any onnxruntime >= 1.10
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)
    return np.maximum(x @ weights, 0)


def test_onnxruntime_runs_a_tiny_model(arm64_root: Path, tmp_path: Path):
    model = tmp_path / "tiny.onnx"
    expected = _tiny_onnx(model)
    script = write_script(tmp_path, """
        import json, platform, sys
        import numpy as np
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
        x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)
        y = session.run(None, {"x": x})[0]
        print(json.dumps({"machine": platform.machine(), "ort": ort.__version__, "y": y.tolist()}))
    """)
    out = run_json([script, model], arm64_root)
    assert out["machine"] == "aarch64"
    np.testing.assert_allclose(out["y"], expected, rtol=1e-5)


def _tiny_tflite_from_schema(path: Path) -> np.ndarray:
    """y = x + c, written with the TFLite flatbuffer schema that ai_edge_litert ships."""
    flatbuffers = pytest.importorskip("flatbuffers")
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    constant = np.arange(8, dtype=np.float32) / 4
    model = schema.ModelT()
    model.version, model.description = 3, "tiny add"
    model.buffers = [schema.BufferT() for _ in range(3)]  # buffer 0 is the empty sentinel
    model.buffers[1].data = constant.view(np.uint8).tolist()
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.ADD
    code.version = 1
    model.operatorCodes = [code]
    tensors = []
    for name, buffer in (("x", 0), ("c", 1), ("y", 2)):
        tensor = schema.TensorT()
        tensor.name, tensor.shape, tensor.type, tensor.buffer = name, [1, 8], schema.TensorType.FLOAT32, buffer
        tensors.append(tensor)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1], [2]
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.AddOptions, schema.AddOptionsT()
    graph = schema.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [0], [2], [op]
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(builder.Output())
    return np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8) + constant


def _tiny_tflite_from_torch(path: Path) -> np.ndarray:
    torch = pytest.importorskip("torch")
    litert_torch = pytest.importorskip("litert_torch")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU()).eval()
    x = torch.linspace(-1, 1, 8).reshape(1, 8)
    litert_torch.convert(module, (x,)).export(str(path))
    with torch.no_grad():
        return module(x).numpy()


LITERT_SCRIPT = """
    import json, platform, sys
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=sys.argv[1], num_threads=1)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.set_tensor(inp["index"], np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8))
    interpreter.invoke()
    print(json.dumps({"machine": platform.machine(), "y": interpreter.get_tensor(out["index"]).tolist()}))
"""


@pytest.mark.parametrize("make", [_tiny_tflite_from_schema, _tiny_tflite_from_torch], ids=["schema", "litert_torch"])
def test_litert_runs_a_tiny_model(arm64_root: Path, tmp_path: Path, make):
    model = tmp_path / "tiny.tflite"
    expected = make(model)
    out = run_json([write_script(tmp_path, LITERT_SCRIPT), model], arm64_root)
    assert out["machine"] == "aarch64"
    np.testing.assert_allclose(out["y"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.ssh
def test_an_ssh_host_can_run_the_arm64_python(arm64_root: Path, ssh_fleet, tmp_path: Path):
    wrapper = write_python_wrapper(arm64_root, tmp_path / "python3-arm64")
    host = ssh_fleet(0).add_host("pi", python=str(wrapper))
    with host.connect() as client:
        command = f"{shlex.quote(host.python)} -c 'import platform, numpy; print(platform.machine())'"
        _, stdout, stderr = client.exec_command(command, timeout=120)
        assert stdout.read().decode() == "aarch64\n", stderr.read().decode()
        assert stdout.channel.recv_exit_status() == 0
