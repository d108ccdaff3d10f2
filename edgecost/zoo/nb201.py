"""NAS-Bench-201 networks (Dong & Yang 2020), as the public latency sets measured them.

TinyNetwork with C=16, N=5 on 1×3×32×32 (CIFAR): stem 3×3 conv + BN; three stages of N
cells at 16, 32, 64 channels; between stages a residual basic block with stride 2; head
BN + ReLU → global average pool → Linear(64, 10).  A cell has nodes 0–3; node j sums
op(i→j)(node i) over i < j; the ``arch_str`` names the six edge ops, e.g.
``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|``.

``none`` edges are left out of the sums, and edges that cannot reach the cell output (or
are not reachable from its input) are pruned, as an exporter drops dead code anyway.  A
cell whose output is cut off from its input yields zeros (``x * 0``, NAS-Bench-201's Zero
op); the sampler never draws such architectures (they measure as ≈ 0 ms).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import UsageError
from . import sampling
from .family import Family, Params, Shape
from .flops import conv_flops, matmul_flops
from .spec import ModelSpec

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
CONV_KERNELS = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}
INPUT_SHAPE = (1, 3, 32, 32)
NUM_CLASSES = 10

Cell = tuple[tuple[tuple[str, int], ...], ...]  # for node 1..3: ((op, source node), ...)


def parse_arch_str(arch_str: str) -> Cell:
    """``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` → the incoming (op, source) edges of nodes 1–3."""
    nodes = []
    parts = arch_str.strip().split("+")
    if len(parts) != 3:
        raise UsageError(f"not a NAS-Bench-201 arch_str: {arch_str!r}",
                         "expected three '+'-separated groups like |nor_conv_3x3~0|+|...|...|+|...|...|...|")
    for node, part in enumerate(parts, start=1):
        edges = [e for e in part.strip("|").split("|") if e]
        parsed = []
        for edge in edges:
            op, _, source = edge.partition("~")
            if op not in OPS or not source.isdigit():
                raise UsageError(f"bad edge {edge!r} in NAS-Bench-201 arch_str {arch_str!r}",
                                 f"each edge is OP~SOURCE with OP one of: {', '.join(OPS)}")
            parsed.append((op, int(source)))
        if sorted(s for _, s in parsed) != list(range(node)):
            raise UsageError(f"node {node} of arch_str {arch_str!r} must have one edge from each of nodes "
                             f"0..{node - 1}", "check the arch_str against the NAS-Bench-201 format")
        nodes.append(tuple(parsed))
    return tuple(nodes)


def arch_str_of(cell: Cell) -> str:
    return "+".join("|" + "|".join(f"{op}~{src}" for op, src in node) + "|" for node in cell)


def live_edges(cell: Cell) -> list[tuple[int, int, str]]:
    """(source, target, op) of the edges that carry data from node 0 to node 3."""
    edges = [(src, node, op) for node, incoming in enumerate(cell, start=1)
             for op, src in incoming if op != "none"]
    reachable = {0}
    for src, dst, _ in sorted(edges, key=lambda e: e[1]):
        if src in reachable:
            reachable.add(dst)
    useful = {3}
    for src, dst, _ in sorted(edges, key=lambda e: -e[1]):
        if dst in useful:
            useful.add(src)
    return [(s, d, op) for s, d, op in edges if s in reachable and d in useful]


def is_connected(cell: Cell) -> bool:
    """Whether the cell output depends on its input."""
    return any(d == 3 for _, d, _ in live_edges(cell))


class ReLUConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__(nn.ReLU(), nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(cout))


def _edge_op(op: str, channels: int) -> nn.Module:
    if op == "skip_connect":
        return nn.Identity()
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    return ReLUConvBN(channels, channels, CONV_KERNELS[op])


class SearchCell(nn.Module):
    def __init__(self, cell: Cell, channels: int):
        super().__init__()
        self.edges = live_edges(cell)
        self.ops = nn.ModuleList(_edge_op(op, channels) for _, _, op in self.edges)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: dict[int, torch.Tensor] = {0: x}
        for (src, dst, _), op in zip(self.edges, self.ops):
            value = op(nodes[src])
            nodes[dst] = nodes[dst] + value if dst in nodes else value
        return nodes[3] if 3 in nodes else x * 0.0


class ResNetBasicBlock(nn.Module):
    """NAS-Bench-201's reduction block: ReLU-conv3×3/2-BN, ReLU-conv3×3-BN, plus pooled 1×1 shortcut."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv_a = ReLUConvBN(cin, cout, 3, 2)
        self.conv_b = ReLUConvBN(cout, cout, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


class TinyNetwork(nn.Module):
    def __init__(self, cell: Cell, channels: int = 16, cells_per_stage: int = 5,
                 num_classes: int = NUM_CLASSES, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels))
        layers: list[nn.Module] = []
        width = channels
        for stage in range(3):
            if stage > 0:
                layers.append(ResNetBasicBlock(width, width * 2))
                width *= 2
            layers += [SearchCell(cell, width) for _ in range(cells_per_stage)]
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.lastact(self.cells(self.stem(x))))
        return self.classifier(torch.flatten(x, 1))


def build(params: Params, shape: Shape) -> nn.Module:
    return TinyNetwork(parse_arch_str(params["arch_str"]), params["C"], params["N"],
                       params["num_classes"], shape[1])


def _cell_flops(cell: Cell, batch: int, channels: int, side: int) -> int:
    elems = batch * channels * side * side
    total = 0
    seen: set[int] = set()
    edges = live_edges(cell)
    for src, dst, op in edges:
        if op in CONV_KERNELS:
            total += elems + conv_flops(batch, channels, channels, CONV_KERNELS[op], side, side) + elems
        elif op == "avg_pool_3x3":
            total += elems
        total += elems if dst in seen else 0  # summing into the node
        seen.add(dst)
    return total if 3 in seen else elems


def flops(params: Params, shape: Shape) -> int:
    cell = parse_arch_str(params["arch_str"])
    batch, side, width = shape[0], shape[2], params["C"]
    total = conv_flops(batch, shape[1], width, 3, side, side) + batch * width * side * side
    for stage in range(3):
        if stage > 0:
            out_side = (side - 1) // 2 + 1
            big, small = batch * width * side * side, batch * 2 * width * out_side * out_side
            total += big + conv_flops(batch, width, 2 * width, 3, out_side, out_side) + small  # conv_a
            total += small + conv_flops(batch, 2 * width, 2 * width, 3, out_side, out_side) + small  # conv_b
            total += big + conv_flops(batch, width, 2 * width, 1, out_side, out_side) + small  # shortcut, add
            width, side = 2 * width, out_side
        total += params["N"] * _cell_flops(cell, batch, width, side)
    elems = batch * width * side * side
    return total + 3 * elems + matmul_flops(1, batch, width, params["num_classes"])


def random_arch_str(rng: np.random.Generator) -> str:
    """A uniformly drawn NAS-Bench-201 architecture whose output depends on its input."""
    while True:
        ops = [sampling.choice(rng, OPS) for _ in range(6)]
        cell = ((ops[0], 0),), ((ops[1], 0), (ops[2], 1)), ((ops[3], 0), (ops[4], 1), (ops[5], 2))
        if is_connected(cell):
            return arch_str_of(cell)


def params_for(arch_str: str) -> Params:
    """The spec params of ``arch_str`` (validated) with the benchmark's C, N and classes."""
    return {"arch_str": arch_str_of(parse_arch_str(arch_str)), "C": 16, "N": 5, "num_classes": NUM_CLASSES}


def spec_from_arch_str(arch_str: str, seed: int = 0, batch: int = 1) -> ModelSpec:
    """The zoo spec of one NAS-Bench-201 architecture."""
    return ModelSpec("nb201", params_for(arch_str), (batch,) + INPUT_SHAPE[1:], seed)


def build_from_arch_str(arch_str: str, seed: int = 0, batch: int = 1) -> nn.Module:
    """The TinyNetwork of ``arch_str`` in eval mode, weights drawn from ``seed``."""
    return FAMILY.build(spec_from_arch_str(arch_str, seed, batch))


def sample(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    return params_for(random_arch_str(rng)), (batch,) + INPUT_SHAPE[1:]


FAMILY = Family(
    name="nb201", kind="network",
    description="NAS-Bench-201 TinyNetwork (C=16, N=5, CIFAR 32×32) from an arch_str",
    sample_params=sample, build_module=build, flops=flops,
)
