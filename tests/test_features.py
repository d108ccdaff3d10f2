"""Kernel features: op identity inside a category, the network flag, the baseline's call counts."""

from __future__ import annotations

import numpy as np

from edgecost.features import (
    FEATURE_NAMES,
    NETWORK_MIN_KERNELS,
    feature_matrix,
    kernel_features,
    op_code,
)
from edgecost.graph.cost import with_cost
from edgecost.predictor.model import _calls, _categories_of
from edgecost.records import KernelRecord

COL = {n: i for i, n in enumerate(FEATURE_NAMES)}


def _k(op, ins, outs, domain="", **attrs):
    return with_cost(KernelRecord(name=op, op_type=op, domain=domain, input_shapes=tuple(ins),
                                  output_shapes=tuple(outs), attrs=attrs))


def test_op_code_is_stable_and_tells_ops_of_one_category_apart():
    # Stable across versions: a saved profile's trees split on these exact numbers.
    assert op_code("Gelu") == 803902.0 and op_code("QuickGelu") == op_code("QuickGelu")
    shape = [(1, 64, 28, 28)]
    rows = {op: kernel_features(_k(op, shape, shape)) for op in ("Relu", "Gelu", "QuickGelu", "Sigmoid")}
    assert len({r[COL["op_code"]] for r in rows.values()}) == 4
    assert all(r[COL["cat_activation"]] == 1.0 for r in rows.values())


def test_standalone_activation_names_its_function_like_a_fused_one():
    shape = [(1, 64, 28, 28)]
    fused = kernel_features(_k("Conv", [(1, 64, 28, 28), (64, 64, 1, 1)], shape, "com.microsoft.nchwc",
                               activation="Sigmoid"))
    alone = kernel_features(_k("Sigmoid", shape, shape))
    tfl = kernel_features(_k("LOGISTIC", [(1, 28, 28, 64)], [(1, 28, 28, 64)], "tflite"))
    assert fused[COL["activation"]] == alone[COL["activation"]] == tfl[COL["activation"]] == 6
    assert kernel_features(_k("QuickGelu", shape, shape))[COL["activation"]] == 7  # x·sigmoid(x): SiLU
    # Ordered so one split parts erf-based GELU (far slower a element) from the logistic family.
    assert kernel_features(_k("Gelu", shape, shape))[COL["activation"]] == 9
    assert kernel_features(_k("Add", shape * 2, shape))[COL["activation"]] == 0


def test_in_network_flag_separates_probes_from_networks():
    k = _k("Relu", [(1, 8, 8, 8)], [(1, 8, 8, 8)])
    probe = feature_matrix([k])
    net = feature_matrix([k] * NETWORK_MIN_KERNELS)
    assert probe[0, COL["in_network"]] == 0.0 and np.all(net[:, COL["in_network"]] == 1.0)
    assert np.array_equal(np.delete(probe[0], COL["in_network"]), np.delete(net[0], COL["in_network"]))


def test_calls_count_softmax_rows_and_batched_matrices():
    softmax = _k("Softmax", [(785, 1, 12, 12)], [(785, 1, 12, 12)])
    layernorm = _k("LayerNormalization", [(1, 197, 192), (192,)], [(1, 197, 192)])
    batched = _k("MatMul", [(785, 1, 12, 16), (785, 1, 16, 12)], [(785, 1, 12, 12)])
    conv = _k("Conv", [(1, 8, 8, 8), (8, 8, 3, 3)], [(1, 8, 8, 8)], kernel_shape=[3, 3])
    X = feature_matrix([softmax, layernorm, batched, conv])
    c = _calls(X, _categories_of(X))
    np.testing.assert_allclose(c, [785 * 12, 197, 785, 0], rtol=1e-3)


def test_model_footprint_counts_weights_at_their_width_and_activations_once():
    from edgecost.features import FOOTPRINT_LOG2_RANGE, model_footprint_log2

    def conv(c, side, dtype="float32"):
        k = _k("Conv", [(1, c, side, side), (c, c, 1, 1)], [(1, c, side, side)], kernel_shape=[1, 1], group=1)
        return KernelRecord(**{**k.__dict__, "params": c * c, "dtype": dtype})

    lo, hi = FOOTPRINT_LOG2_RANGE
    net = [conv(512, 8)] * NETWORK_MIN_KERNELS  # 16 × (1 MiB of fp32 weights + 128 KiB written)
    expected = np.log2(1 + NETWORK_MIN_KERNELS * (512 * 512 * 4 + 512 * 64 * 4))
    assert lo < expected < hi
    X = feature_matrix(net + [_k("Relu", [(1, 512, 8, 8)], [(1, 512, 8, 8)])])
    expected = np.log2(1 + NETWORK_MIN_KERNELS * (512 * 512 * 4 + 512 * 64 * 4) + 512 * 64 * 4)
    # The same value for every kernel that reads weights; "not applicable" for one that does not.
    assert np.allclose(X[:-1, COL["log2_model_footprint_bytes"]], expected)
    assert X[-1, COL["log2_model_footprint_bytes"]] == -1.0
    int8 = [conv(512, 8, "int8")] * NETWORK_MIN_KERNELS  # a quarter of the weight bytes
    assert model_footprint_log2(int8) == np.log2(1 + NETWORK_MIN_KERNELS * (512 * 512 + 512 * 64 * 4))
    # Clipped to the span of last-level caches: a tiny probe and a huge network stay in range.
    assert model_footprint_log2([_k("Relu", [(1, 8, 8, 8)], [(1, 8, 8, 8)])]) == lo
    assert model_footprint_log2([conv(2048, 8)] * 64) == hi
    # Past 32 MiB (schema 3) the weights stream from DRAM on every target; profiles fitted with
    # schema 1 or 2 keep the 128 MiB clip they learned with.
    assert hi == 25.0
    assert model_footprint_log2([conv(2048, 8)] * 4) == hi  # 64 MiB of weights
    assert model_footprint_log2([conv(2048, 8)] * 4, schema=2) == np.log2(1 + 4 * (2048 * 2048 * 4 + 2048 * 64 * 4))
    assert model_footprint_log2([conv(2048, 8)] * 64, schema=2) == 27.0


def test_dense_kernels_carry_no_channel_alignment_but_convolutions_do():
    """A GEMM takes a K/N tail at little cost; a convolution's channel blocks do not (schema 2).
    Schema 1, what profiles saved before it were fitted on, gave GEMMs the columns too."""
    from edgecost.features import FEATURE_SCHEMA, MISSING

    align = [COL[c] for c in ("c_in_mod8", "c_in_mod16", "c_out_mod8", "c_out_mod16", "c_in_align8", "c_out_align8")]
    gemm = _k("Gemm", [(196, 196), (196, 100)], [(196, 100)])  # K = 196 tokens: not a multiple of 16
    conv = _k("Conv", [(1, 196, 14, 14), (100, 196, 1, 1)], [(1, 100, 14, 14)])
    assert FEATURE_SCHEMA >= 2
    assert all(v == MISSING for v in kernel_features(gemm)[align])
    assert list(kernel_features(conv)[align]) == [196 % 8, 196 % 16, 100 % 8, 100 % 16, 0.0, 0.0]
    # Schema 3 changed only the footprint clip: the alignment columns are schema 2's.
    for k in (gemm, conv):
        np.testing.assert_array_equal(kernel_features(k)[align], kernel_features(k, schema=2)[align])
    old = kernel_features(gemm, schema=1)[align]
    assert list(old) == [196 % 8, 196 % 16, 100 % 8, 100 % 16, 0.0, 0.0]
    assert (feature_matrix([gemm, conv], schema=1)[:, align] != MISSING).all()
