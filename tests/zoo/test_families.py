"""Every zoo family samples, builds, runs, exports to ONNX and agrees with ONNX Runtime;
samples are reproducible, respect their FLOP cap, and FLOP estimates match a measured count.

Kept small (test caps below) so the whole file runs in seconds on 2 cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgecost import convert, zoo
from edgecost.errors import UsageError
from edgecost.zoo import fbnet, nb201
from edgecost.zoo.family import DEFAULT_MAX_FLOPS
from edgecost.zoo.flops import count_flops
from edgecost.zoo.spec import ModelSpec

TEST_MAX_FLOPS = {"network": 60_000_000, "kernel": 5_000_000}
FIXED_SIZE_MAX_FLOPS = {"fbnet": 250_000_000}  # FBNet's input is fixed at 32×32: 64–210 MFLOPs
# The analytic estimate follows the same convention as count_flops and mirrors each
# family's ops; measured agreement is within 6 % for every family (resize ×½ is the
# loosest), so 10 % is the documented bound.
FLOP_AGREEMENT = 1.10
ALL_FAMILIES = sorted(zoo.FAMILIES)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_spec(name: str, seed: int = 0, batch: int = 1) -> ModelSpec:
    cap = FIXED_SIZE_MAX_FLOPS.get(name, TEST_MAX_FLOPS[zoo.FAMILIES[name].kind])
    return zoo.sample(name, np.random.default_rng(seed), batch=batch, max_flops=cap)


def run_ort(path, x: torch.Tensor) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


@pytest.mark.parametrize("name", ALL_FAMILIES)
def test_family_samples_builds_runs_and_matches_onnxruntime(name, tmp_path):
    batch = 2 if name in ("resnet", "vit", "conv", "layernorm") else 1
    spec = small_spec(name, batch=batch)
    assert spec.family == name and spec.input_shape[0] == batch
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec

    family = zoo.FAMILIES[name]
    module = zoo.build(spec)
    assert not module.training
    x = family.example_input(spec)
    with torch.no_grad():
        expected = module(x).numpy()
    assert np.isfinite(expected).all()

    estimated, measured = zoo.estimate_flops(spec), count_flops(module, [x])
    if measured == 0:
        assert estimated == 0  # a bare reshape moves no data
    else:
        assert 1 / FLOP_AGREEMENT <= estimated / measured <= FLOP_AGREEMENT, (estimated, measured)

    path = convert.export_spec(spec, tmp_path, "onnx", exporter="torchscript")  # checks numerically too
    assert path.name == f"{spec.spec_id}.onnx"
    graph = onnx.load(str(path)).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == list(spec.input_shape)
    got = run_ort(path, x)
    scale = float(np.abs(expected).max()) or 1.0
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * scale)


@pytest.mark.parametrize("name", ALL_FAMILIES)
def test_same_seed_gives_same_spec_weights_and_onnx_bytes(name, tmp_path):
    first, second = small_spec(name, seed=7), small_spec(name, seed=7)
    assert first == second and first.spec_id == second.spec_id
    assert small_spec(name, seed=8).spec_id != first.spec_id
    a = convert.export_spec(first, tmp_path / "a", check=False)
    b = convert.export_spec(second, tmp_path / "b", check=False)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.slow
def test_exports_are_byte_identical_in_a_fresh_process(tmp_path):
    """What another process writes for a spec is what this one writes, for .onnx and .pt,
    even after that process exported other models (TorchScript's class-name counter)."""
    spec = small_spec("mobilenetv3", seed=3)
    here = [convert.export_spec(spec, tmp_path / "here", fmt).read_bytes() for fmt in ("onnx", "torchscript")]
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from edgecost import convert, zoo
        from edgecost.zoo.spec import ModelSpec
        other = zoo.sample("resnet", np.random.default_rng(1), max_flops=30_000_000)
        convert.export_spec(other, sys.argv[1], "torchscript", check=False)
        convert.export_spec(other, sys.argv[1], "onnx", check=False)
        spec = ModelSpec.from_dict(json.loads({json.dumps(json.dumps(spec.to_dict()))}))
        for fmt in ("onnx", "torchscript"):
            print(convert.export_spec(spec, sys.argv[1], fmt, check=False))
    """)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "there")], capture_output=True,
                          text=True, timeout=120, check=True)
    there = [Path(line).read_bytes() for line in done.stdout.split()]
    assert here == there


def test_spec_id_is_a_stable_hash_of_the_canonical_json():
    spec = ModelSpec("conv", {"out_channels": 8, "kernel": 3, "stride": 1, "groups": 1, "bias": False,
                              "activation": "relu"}, (1, 3, 16, 16), 0)
    assert spec.spec_id == "conv-cf78c64a3dab"
    assert ModelSpec("conv", dict(reversed(list(spec.params.items()))), [1, 3, 16, 16], 0).spec_id == spec.spec_id
    assert spec.with_changes(seed=1).spec_id != spec.spec_id
    assert ModelSpec("x", {"pair": (1, 2)}, (1,), 0).params == {"pair": [1, 2]}  # JSON-native


@pytest.mark.parametrize("name", ALL_FAMILIES)
def test_samples_respect_max_flops(name):
    rng = np.random.default_rng(0)
    kind = zoo.FAMILIES[name].kind
    for cap in (DEFAULT_MAX_FLOPS[kind], FIXED_SIZE_MAX_FLOPS.get(name, TEST_MAX_FLOPS[kind])):
        for _ in range(15):
            assert zoo.estimate_flops(zoo.sample(name, rng, max_flops=cap)) <= cap
    for _ in range(5):
        assert zoo.estimate_flops(zoo.sample(name, rng, batch=4)) <= DEFAULT_MAX_FLOPS[kind]


def test_impossible_cap_and_unknown_family_are_usage_errors():
    with pytest.raises(UsageError, match="max_flops"):
        zoo.sample("fbnet", np.random.default_rng(0), max_flops=1000)
    with pytest.raises(UsageError, match="unknown model family"):
        zoo.sample("alexnet", np.random.default_rng(0))


# --- NAS-Bench-201 -------------------------------------------------------------------

BEST_NB201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_nb201_arch_str_builds_the_tiny_network(tmp_path):
    module = nb201.build_from_arch_str(BEST_NB201)
    # stem + 2 reduction blocks × (2 convs + 1×1 shortcut) + 15 cells × 3 conv edges
    assert len(convs(module)) == 1 + 2 * 3 + 15 * 3
    assert sum(c.kernel_size == (3, 3) for c in convs(module)) == 1 + 2 * 2 + 15 * 3
    assert [c.out_channels for c in convs(module)[:1]] == [16]
    assert module.classifier.in_features == 64 and module.classifier.out_features == 10
    with torch.no_grad():
        assert module(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    path = convert.export_spec(nb201.spec_from_arch_str(BEST_NB201), tmp_path)
    assert sum(n.op_type == "Conv" for n in onnx.load(str(path)).graph.node) == 52


def test_nb201_prunes_none_and_dead_edges():
    # node 1 is zero, so 1→2 is dead; node 2 feeds nothing, so 0→2 is dead: only 0→3 remains
    arch = "|none~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_3x3~0|none~1|none~2|"
    assert nb201.live_edges(nb201.parse_arch_str(arch)) == [(0, 3, "nor_conv_3x3")]
    assert len(convs(nb201.build_from_arch_str(arch))) == 1 + 6 + 15


def test_nb201_sampler_draws_only_connected_cells_and_rejects_bad_strings():
    rng = np.random.default_rng(0)
    drawn = {nb201.random_arch_str(rng) for _ in range(200)}
    assert all(nb201.is_connected(nb201.parse_arch_str(a)) for a in drawn) and len(drawn) > 150
    assert not nb201.is_connected(nb201.parse_arch_str("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"))
    for bad in ("|nor_conv_3x3~0|", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                "|none~0|+|none~0|none~0|+|none~0|none~1|none~2|"):
        with pytest.raises(UsageError):
            nb201.parse_arch_str(bad)


# --- FBNet -----------------------------------------------------------------------------


def test_fbnet_op_idx_list_gives_the_expected_blocks():
    ops = list(range(9)) + list(range(9)) + [0, 3, 5, 8]
    module = fbnet.build_from_op_idx_list(ops)
    assert len(module.layers) == 22
    for layer, (cin, cout, stride, choice) in zip(module.layers, fbnet.layers(ops)):
        if choice.name == "skip":
            if cin == cout and stride == 1:
                assert isinstance(layer, nn.Identity)
            else:
                (conv,) = convs(layer)
                assert conv.kernel_size == (1, 1) and conv.stride == (stride, stride)
            continue
        expand, depthwise, project = convs(layer)
        mid = cin * choice.expansion
        assert (expand.in_channels, expand.out_channels, expand.groups) == (cin, mid, choice.groups)
        assert depthwise.groups == mid and depthwise.kernel_size == (choice.kernel,) * 2
        assert depthwise.stride == (stride, stride)
        assert (project.out_channels, project.groups) == (cout, choice.groups)
        has_shuffle = any(type(m).__name__ == "ChannelShuffle" for m in layer.modules())
        assert has_shuffle == (choice.groups == 2)
        assert layer.residual == (cin == cout and stride == 1)
    assert [c for _, c, _, _ in fbnet.layers(ops)][-1] == 352
    assert module.head[0].out_channels == 1504 and module.fc.out_features == 100
    with torch.no_grad():
        assert module(torch.randn(1, 3, 32, 32)).shape == (1, 100)
    with pytest.raises(UsageError):
        fbnet.spec_from_op_idx_list([0] * 21)


# --- mixes -------------------------------------------------------------------------------


def test_sample_mix_covers_all_families_evenly_and_reproducibly():
    n = 50
    specs = zoo.sample_mix(np.random.default_rng(0), n, kernel_share=0.3)
    counts = Counter(s.family for s in specs)
    assert set(counts) == set(zoo.FAMILIES) and len(specs) == n
    kernel_counts = [counts[f] for f in zoo.kernel_families()]
    network_counts = [counts[f] for f in zoo.network_families()]
    assert sum(kernel_counts) == round(n * 0.3)
    assert max(kernel_counts) - min(kernel_counts) <= 1 and max(network_counts) - min(network_counts) <= 1
    again = zoo.sample_mix(np.random.default_rng(0), n, kernel_share=0.3)
    assert [s.spec_id for s in again] == [s.spec_id for s in specs]
    only = zoo.sample_mix(np.random.default_rng(1), 6, families=["nb201", "fbnet"], kernel_share=0.5)
    assert Counter(s.family for s in only) == {"nb201": 3, "fbnet": 3}


def test_zoo_registry_kinds():
    assert set(zoo.network_families()) == {"resnet", "mobilenetv2", "mobilenetv3", "efficientnet",
                                           "shufflenetv2", "densenet", "vgg", "vit", "mixer", "nb201", "fbnet"}
    assert {"conv", "depthwise_conv", "group_conv", "linear", "matmul", "attention", "elementwise",
            "activation", "softmax", "layernorm", "batchnorm", "pool", "resize", "concat",
            "transpose"} == set(zoo.kernel_families())


@pytest.mark.parametrize("impl", ["matmul", "sdpa", "mha"])
def test_vit_attention_variants_agree_on_flops_and_export(impl, tmp_path):
    params = {"patch": 8, "embed_dim": 64, "depth": 2, "heads": 4, "mlp_ratio": 2, "attention": impl,
              "cls_token": True, "num_classes": 10}
    spec = ModelSpec("vit", params, (1, 3, 32, 32), 0)
    module = zoo.build(spec)
    x = zoo.FAMILIES["vit"].example_input(spec)
    measured = count_flops(module, [x])
    assert 1 / FLOP_AGREEMENT <= zoo.estimate_flops(spec) / measured <= FLOP_AGREEMENT
    ops = {n.op_type for n in onnx.load(str(convert.export_spec(spec, tmp_path))).graph.node}
    assert {"MatMul", "Softmax", "LayerNormalization"} <= ops
