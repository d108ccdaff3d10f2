"""Gradient-boosted trees that are fitted with LightGBM and evaluated with NumPy alone.

A fitted ensemble is exported to plain arrays (split feature, threshold, children, leaf
values) that live in the profile's JSON, so a saved profile needs neither LightGBM nor
any pickle to predict, and never breaks on a library upgrade.  Inputs must not hold NaN:
callers fill missing features with a sentinel before fitting and predicting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 3,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbosity": -1,
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
}


_CELLS_PER_CHUNK = 1 << 16


@dataclass
class TreeEnsemble:
    """Arrays of a boosted tree ensemble; ``predict(X)`` sums every tree's leaf value.

    Node ``j`` of tree ``t`` sends a row left when ``X[row, feature[t, j]] <= threshold[t, j]``.
    Children ``>= 0`` are internal nodes; ``-1 - leaf`` encodes a leaf index.
    """

    feature: np.ndarray  # (T, N) int32
    threshold: np.ndarray  # (T, N) float64
    left: np.ndarray  # (T, N) int32
    right: np.ndarray  # (T, N) int32
    leaf_value: np.ndarray  # (T, L) float64
    root_is_leaf: np.ndarray  # (T,) bool: single-leaf trees
    depth: int
    n_features: int

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, *, n_estimators: int = 300, weight: np.ndarray | None = None,
            params: dict[str, Any] | None = None, seed: int = 0) -> "TreeEnsemble":
        import lightgbm as lgb

        p = dict(DEFAULT_PARAMS)
        p.update(params or {})
        p["seed"] = seed
        n = len(y)
        # Tiny sets: keep leaves populated so the trees do not memorise single rows.
        p["min_data_in_leaf"] = max(int(p["min_data_in_leaf"]), 1 if n < 20 else int(p["min_data_in_leaf"]))
        if n < 2 * p["min_data_in_leaf"]:
            p["min_data_in_leaf"] = 1
            p["min_data_in_bin"] = 1
        ds = lgb.Dataset(np.asarray(X, dtype=np.float64), label=np.asarray(y, dtype=np.float64), weight=weight,
                         params={"verbosity": -1, "min_data_in_bin": 1, "max_bin": 255}, free_raw_data=True)
        booster = lgb.train(p, ds, num_boost_round=n_estimators)
        return cls.from_lightgbm(booster, X.shape[1])

    @classmethod
    def from_lightgbm(cls, booster, n_features: int) -> "TreeEnsemble":
        dump = booster.dump_model()
        trees = [t["tree_structure"] for t in dump["tree_info"]]
        parsed = [_flatten(t) for t in trees]
        T = len(parsed)
        N = max(1, max(len(p[0]) for p in parsed))
        L = max(1, max(len(p[4]) for p in parsed))
        feature = np.zeros((T, N), np.int32)
        threshold = np.zeros((T, N), np.float64)
        left = np.full((T, N), -1, np.int32)
        right = np.full((T, N), -1, np.int32)
        leaf_value = np.zeros((T, L), np.float64)
        root_is_leaf = np.zeros(T, bool)
        depth = 1
        for t, (f, thr, lc, rc, leaves, d, root_leaf) in enumerate(parsed):
            feature[t, : len(f)] = f
            threshold[t, : len(thr)] = thr
            left[t, : len(lc)] = lc
            right[t, : len(rc)] = rc
            leaf_value[t, : len(leaves)] = leaves
            root_is_leaf[t] = root_leaf
            depth = max(depth, d)
        return cls(feature, threshold, left, right, leaf_value, root_is_leaf, depth, n_features)

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float64)
        n = X.shape[0]
        T = self.feature.shape[0]
        if n == 0 or T == 0:
            return np.zeros(n)
        rows = max(1, _CELLS_PER_CHUNK // T)  # chunks keep the (row, tree) arrays in cache
        return np.concatenate([self._predict_chunk(X[a : a + rows]) for a in range(0, n, rows)])

    def _predict_chunk(self, X: np.ndarray) -> np.ndarray:
        feature, threshold, kids, value, is_leaf, roots = self._flat()
        n, T = X.shape[0], roots.shape[0]
        # Every (row, tree) pair walks one node a step; leaves loop onto themselves, so the
        # walk needs no masks.  kids[2 * node + went_left] is the next node: one gather a step
        # instead of two and a select.  Whether all pairs sit on leaves is checked every few
        # steps only (the check costs as much as a step).
        node = np.tile(roots, n)
        cell = np.repeat(np.arange(n, dtype=np.intp) * X.shape[1], T)
        flat_x = X.ravel()
        for step in range(self.depth):
            pick = node * 2
            pick += flat_x[cell + feature[node]] <= threshold[node]
            node = kids[pick]
            if step % 4 == 3 and is_leaf[node].all():
                break
        return value[node].reshape(n, T).sum(axis=1)

    def _flat(self):
        """The ensemble as one node table: internal nodes, then leaves that point to themselves."""
        cached = getattr(self, "_flat_cache", None)
        if cached is not None:
            return cached
        feats, thrs, lefts, rights, values, leafs, roots = [], [], [], [], [], [], []
        offset = 0
        # Internal nodes are numbered 0..k-1 in pre-order and only they appear as children >= 0.
        internal = np.maximum(np.maximum(self.left, self.right).max(axis=1) + 1, 1)
        for t in range(self.feature.shape[0]):
            n_internal = 0 if self.root_is_leaf[t] else int(internal[t])
            n_leaves = n_internal + 1
            leaf_base = offset + n_internal

            def glob(child: np.ndarray) -> np.ndarray:
                return np.where(child >= 0, offset + child, leaf_base + (-1 - child))

            ids = np.arange(n_leaves) + leaf_base
            feats += [self.feature[t, :n_internal], np.zeros(n_leaves, np.int32)]
            thrs += [self.threshold[t, :n_internal], np.full(n_leaves, np.inf)]
            lefts += [glob(self.left[t, :n_internal]), ids]
            rights += [glob(self.right[t, :n_internal]), ids]
            values += [np.zeros(n_internal), self.leaf_value[t, :n_leaves]]
            leafs += [np.zeros(n_internal, bool), np.ones(n_leaves, bool)]
            roots.append(offset if n_internal else leaf_base)
            offset += n_internal + n_leaves
        # Children interleaved: kids[2 * node] is the right child, kids[2 * node + 1] the left one.
        kids = np.stack([np.concatenate(rights), np.concatenate(lefts)], axis=1).ravel().astype(np.intp)
        cached = (np.concatenate(feats).astype(np.intp), np.concatenate(thrs), kids, np.concatenate(values),
                  np.concatenate(leafs), np.asarray(roots, np.intp))
        self._flat_cache = cached
        return cached

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "edgecost-trees-1",
            "n_features": self.n_features,
            "depth": self.depth,
            "feature": self.feature.tolist(),
            "threshold": [[float(v) for v in row] for row in self.threshold],
            "left": self.left.tolist(),
            "right": self.right.tolist(),
            "leaf_value": [[float(v) for v in row] for row in self.leaf_value],
            "root_is_leaf": self.root_is_leaf.astype(int).tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TreeEnsemble":
        if d.get("format") != "edgecost-trees-1":
            raise ValueError(f"unknown tree format {d.get('format')!r}")
        return cls(
            feature=np.asarray(d["feature"], np.int32),
            threshold=np.asarray(d["threshold"], np.float64),
            left=np.asarray(d["left"], np.int32),
            right=np.asarray(d["right"], np.int32),
            leaf_value=np.asarray(d["leaf_value"], np.float64),
            root_is_leaf=np.asarray(d["root_is_leaf"], bool),
            depth=int(d["depth"]),
            n_features=int(d["n_features"]),
        )


def _flatten(root: dict[str, Any]):
    """One LightGBM tree dump → (feature, threshold, left, right, leaf values, depth, root_is_leaf)."""
    feats: list[int] = []
    thrs: list[float] = []
    lefts: list[int] = []
    rights: list[int] = []
    leaves: list[float] = []
    if "leaf_value" in root and "split_feature" not in root:
        return feats, thrs, lefts, rights, [float(root["leaf_value"])], 1, True
    max_depth = 1

    def visit(node: dict[str, Any], depth: int) -> int:
        nonlocal max_depth
        if "split_feature" not in node:
            leaves.append(float(node["leaf_value"]))
            max_depth = max(max_depth, depth)
            return -len(leaves)  # -1 - index
        if node.get("decision_type", "<=") != "<=":
            raise ValueError(f"unsupported split {node.get('decision_type')!r}")
        idx = len(feats)
        feats.append(int(node["split_feature"]))
        thrs.append(float(node["threshold"]))
        lefts.append(0)
        rights.append(0)
        lefts[idx] = visit(node["left_child"], depth + 1)
        rights[idx] = visit(node["right_child"], depth + 1)
        return idx

    visit(root, 0)
    return feats, thrs, lefts, rights, leaves, max_depth, False
