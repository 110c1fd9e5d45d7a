"""scikit-learn's HistGradientBoosting as an ONNX graph: the fitted trees themselves, in a format made for
them (ONNX-ML's ``TreeEnsembleRegressor``), so a gbm head is stored and loaded without pickle or refitting.

Why not skl2onnx's converter: with onnx >= 1.23 it fails on every HistGradientBoosting model (it passes a
Python bool where ONNX wants an int, in ``skl2onnx.common.tree_ensemble``; skl2onnx 1.20). The graph below
is the same construction, small enough to own:

    features [N, F] float32 -> TreeEnsembleRegressor (raw scores, baseline + sum of leaves) [N, K]
        classify: softmax (K > 1) or sigmoid -> [1 - p, p] (binary), then onto the run's class columns
        regress:  the values [N, T] (one tree set per target)

Thresholds are rounded down to float32: for float32 features ``x <= t`` then decides exactly as scikit-learn
does in float64, so the graph and the fitted model take the same branch on every input (checked for parity
on the training features when the head is fitted).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

INPUT = "features"
OUTPUT = "output"
OPSETS = {"": 17, "ai.onnx.ml": 3}


def hgb_to_onnx(models: Sequence[Any], *, task: str, outputs: int, metadata: dict[str, str]) -> bytes:
    """The serialized ONNX graph of fitted HistGradientBoosting ``models``: one classifier (``classify``),
    or one regressor per target (``regress``). ``outputs`` columns: a classifier's classes (indices into
    the run's class list) land in their own columns, absent classes get probability 0."""
    import onnx
    from onnx import TensorProto, helper

    nodes: dict[str, list] = {key: [] for key in ("treeids", "nodeids", "featureids", "modes", "values",
                                                  "truenodeids", "falsenodeids", "missing")}
    leaves: dict[str, list] = {key: [] for key in ("treeids", "nodeids", "ids", "weights")}
    base: list[float] = []
    tree = 0
    for target, model in enumerate(models):
        per_iteration = model.n_trees_per_iteration_
        base.extend(float(v) for v in np.ravel(model._baseline_prediction))
        for iteration in model._predictors:
            for k, predictor in enumerate(iteration):
                _add_tree(predictor.nodes, tree, target + k if per_iteration > 1 else target, nodes, leaves)
                tree += 1
    width = len(base)
    graph_nodes = [helper.make_node(
        "TreeEnsembleRegressor", [INPUT], ["raw"], domain="ai.onnx.ml", n_targets=width,
        nodes_treeids=nodes["treeids"], nodes_nodeids=nodes["nodeids"], nodes_featureids=nodes["featureids"],
        nodes_modes=nodes["modes"], nodes_values=nodes["values"], nodes_truenodeids=nodes["truenodeids"],
        nodes_falsenodeids=nodes["falsenodeids"], nodes_missing_value_tracks_true=nodes["missing"],
        target_treeids=leaves["treeids"], target_nodeids=leaves["nodeids"], target_ids=leaves["ids"],
        target_weights=leaves["weights"], base_values=base, aggregate_function="SUM", post_transform="NONE")]
    initializers = []
    if task == "classify":
        classes = np.asarray(models[0].classes_).astype(int)
        if width == 1:  # binary: one raw score for the second class
            graph_nodes += [helper.make_node("Sigmoid", ["raw"], ["p1"]),
                            helper.make_node("Sub", ["one", "p1"], ["p0"]),
                            helper.make_node("Concat", ["p0", "p1"], ["probs"], axis=1)]
            initializers.append(helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]))
        else:
            graph_nodes.append(helper.make_node("Softmax", ["raw"], ["probs"], axis=1))
        place = np.zeros((len(classes), outputs), dtype=np.float32)  # present classes onto the run's columns
        place[np.arange(len(classes)), classes] = 1.0
        initializers.append(helper.make_tensor("place", TensorProto.FLOAT, list(place.shape), place.ravel()))
        graph_nodes.append(helper.make_node("MatMul", ["probs", "place"], [OUTPUT]))
    else:
        graph_nodes.append(helper.make_node("Identity", ["raw"], [OUTPUT]))
    features = int(models[0].n_features_in_)
    graph = helper.make_graph(
        graph_nodes, "honed_gbm_head",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", outputs])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in OPSETS.items()],
                              producer_name="honed")
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _add_tree(records: np.ndarray, tree: int, target: int, nodes: dict[str, list], leaves: dict[str, list]) -> None:
    """One HistGradientBoosting tree (its predictor's node records) into the ensemble's attribute lists."""
    leaf = records["is_leaf"].astype(bool)
    if np.any(records["is_categorical"][~leaf]):
        raise ValueError("categorical splits are not converted: the gbm head fits numeric features only")
    ids = np.arange(len(records))
    branch = ~leaf
    nodes["treeids"].extend([tree] * len(records))
    nodes["nodeids"].extend(ids.tolist())
    nodes["featureids"].extend(np.where(branch, records["feature_idx"], 0).tolist())
    nodes["modes"].extend(np.where(branch, "BRANCH_LEQ", "LEAF").tolist())
    nodes["values"].extend(np.where(branch, _float32_floor(records["num_threshold"]), 0.0).tolist())
    nodes["truenodeids"].extend(np.where(branch, records["left"], 0).astype(int).tolist())
    nodes["falsenodeids"].extend(np.where(branch, records["right"], 0).astype(int).tolist())
    nodes["missing"].extend(np.where(branch, records["missing_go_to_left"], 0).astype(int).tolist())
    leaves["treeids"].extend([tree] * int(leaf.sum()))
    leaves["nodeids"].extend(ids[leaf].tolist())
    leaves["ids"].extend([target] * int(leaf.sum()))
    leaves["weights"].extend(records["value"][leaf].astype(float).tolist())


def _float32_floor(thresholds: np.ndarray) -> np.ndarray:
    """The largest float32 not above each threshold: for float32 x, ``x <= it`` iff ``x <= threshold``."""
    down = thresholds.astype(np.float32)
    above = np.isfinite(thresholds) & (down.astype(np.float64) > thresholds)
    down[above] = np.nextafter(down[above], np.float32(-np.inf))
    return down.astype(np.float64)
