"""Fold every BatchNorm that directly follows a convolution into that convolution, for inference; and a
classifier head's ``BatchNorm1d -> Dropout -> Linear`` (``--head-bn``) into its Linear.

In eval mode a BatchNorm is a per-channel affine map, so ``bn(conv(x))`` equals a conv with rescaled
weights and a shifted bias: folding removes a layer and a memory pass per block at no cost in accuracy.
Before a Linear the same map folds into the Linear's input side (dropout is the identity in eval mode);
that pattern is only trusted inside a plain ``nn.Sequential``, where the order is fixed.

Which conv feeds which norm is read from the data flow, not from a per-architecture table: ``torch.fx``
traces the model with convs and norms kept as leaves, and a pair is folded only when the conv's output
goes to that norm and nowhere else. Where a module cannot be traced, its children are traced one by one;
where a module is still opaque, only structure that fixes the order is trusted: adjacent children of a
plain ``nn.Sequential`` and timm's ``ConvNormAct``. timm's ``BatchNormAct2d`` (a BatchNorm that also
applies drop and activation) is folded and replaced by ``FoldedNormAct``, which keeps its ``drop`` and
``act`` modules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
import copy
from dataclasses import dataclass, field
import logging

import timm.layers
import torch
from torch import nn
import torch.fx
from torch.nn.utils import parametrize
from torchvision.ops.misc import FrozenBatchNorm2d

logger = logging.getLogger(__name__)

Pair = tuple[str, str]  # (qualified name of the conv, qualified name of the norm folded into it)


@dataclass(frozen=True)
class FusionResult:
    """The fused eval-mode copy, how many conv/norm pairs were folded, and their qualified names."""

    model: nn.Module
    fused_pairs: int
    pairs: tuple[Pair, ...] = field(default=())


class FoldedNormAct(nn.Module):
    """What is left of a norm+act layer once its norm is folded into the conv: drop, then activation.

    Keeps the ``drop`` and ``act`` attribute names of timm's ``BatchNormAct2d``, so code that looks for
    ``.act`` still finds it.
    """

    def __init__(self, drop: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.drop = drop
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(x))


def fuse_batchnorm(model: nn.Module) -> FusionResult:
    """Return an eval-mode copy of ``model`` with each conv->BatchNorm pair folded, and a head's
    BatchNorm1d->Linear pair; ``model`` is untouched.

    Only pairs proven safe are folded: the conv's output feeds that norm alone, each module is used once,
    the conv is linear in its weights (plain or "same"-padded Conv2d, not weight-standardized), and the
    norm uses running statistics. Anything else is left as it was, so the result always computes what the
    eval-mode original computes (up to float rounding).
    """
    fused = copy.deepcopy(model).eval()
    pairs = _unshared(fused, _find_pairs(fused, prefix=""))
    for conv_name, norm_name in pairs:
        _fold_pair(fused, conv_name, norm_name)
    head_pairs = _unshared(fused, _norm_linear_pairs(fused))
    for linear_name, norm_name in head_pairs:
        _fold_into_linear(fused, linear_name, norm_name)
    pairs += head_pairs
    logger.debug("folded %d conv/norm pairs in %s", len(pairs), type(model).__name__)
    return FusionResult(model=fused, fused_pairs=len(pairs), pairs=tuple(pairs))


# ---------------------------------------------------------------- which modules can be folded


def _linear_conv_types() -> tuple[type[nn.Module], ...]:
    """Conv2d subclasses whose forward only pads and convolves, so scaling the weights scales the output."""
    names = ("Conv2dSame", "Conv2dSameExport")
    return tuple(cls for cls in (getattr(timm.layers, name, None) for name in names) if cls is not None)


def _norm_act_types() -> tuple[type[nn.Module], ...]:
    """timm's norm layers that apply ``act(drop(norm(x)))``: they fold to a ``FoldedNormAct``."""
    names = ("BatchNormAct2d", "FrozenBatchNormAct2d")
    return tuple(cls for cls in (getattr(timm.layers, name, None) for name in names) if cls is not None)


def _has_hooks(module: nn.Module) -> bool:
    """Hooks or parametrizations could rewrite weights or outputs behind the folded values."""
    hooks = (module._forward_hooks, module._forward_pre_hooks)  # noqa: SLF001 - no public accessor
    return any(len(h) for h in hooks) or parametrize.is_parametrized(module)


def _is_foldable_conv(module: nn.Module) -> bool:
    """A 2-D conv computing ``W * x + b`` with ``W`` and ``b`` its own, unhooked parameters."""
    if not isinstance(module, nn.Conv2d) or _has_hooks(module):
        return False
    return type(module).forward is nn.Conv2d.forward or type(module) in _linear_conv_types()


def _is_foldable_norm(module: nn.Module) -> bool:
    """A BatchNorm-like layer that, in eval mode, applies a fixed per-channel affine map from its buffers."""
    kind = type(module)
    plain_bn = isinstance(module, nn.BatchNorm2d) and kind.forward is nn.BatchNorm2d.forward
    if not (plain_bn or kind is FrozenBatchNorm2d or kind in _norm_act_types()) or _has_hooks(module):
        return False
    return getattr(module, "running_mean", None) is not None and getattr(module, "running_var", None) is not None


def _can_fold(conv: nn.Module, norm: nn.Module) -> bool:
    """Both modules foldable and the norm has one channel per conv output channel."""
    if not (_is_foldable_conv(conv) and _is_foldable_norm(norm)):
        return False
    return norm.running_mean.numel() == conv.out_channels


def _is_conv_or_norm(module: nn.Module) -> bool:
    """Any 2-D conv or BatchNorm-like layer, foldable or not: the nodes fusion reasons about."""
    norms = (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d, *_norm_act_types())  # noqa: SLF001
    return isinstance(module, (nn.Conv2d, *norms))


def _has_children(module: nn.Module) -> bool:
    return next(module.children(), None) is not None


# ---------------------------------------------------------------- finding pairs


class _PairTracer(torch.fx.Tracer):
    """An fx tracer that keeps convs, norms and timm's no-trace modules as single nodes."""

    def __init__(self) -> None:
        functions = tuple(fn for fn in timm.layers.get_notrace_functions() if callable(fn))
        super().__init__(autowrap_functions=functions)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if _is_conv_or_norm(m) or timm.layers.is_notrace_module(type(m)):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _trace(module: nn.Module) -> torch.fx.Graph | None:
    """The module's data-flow graph, or None where fx cannot trace it (data-dependent control flow etc.)."""
    try:
        return _PairTracer().trace(module)
    except Exception as error:  # fx raises TraceError, TypeError, RuntimeError...: all mean "no graph"
        logger.debug("fx could not trace %s: %s", type(module).__name__, error)
        return None


def _find_pairs(module: nn.Module, prefix: str) -> list[Pair]:
    """Pairs under ``module`` (names prefixed), from its fx graph or, failing that, from its structure."""
    graph = _trace(module)
    if graph is not None:
        pairs, opaque = _pairs_from_graph(module, graph)
    else:
        pairs = _structural_pairs(module)
        opaque = [name for name, child in module.named_children() if _has_children(child)]
    named = [(f"{prefix}{conv}", f"{prefix}{norm}") for conv, norm in pairs]
    for name in opaque:  # modules the graph could not see into: search them on their own
        named += _find_pairs(module.get_submodule(name), prefix=f"{prefix}{name}.")
    return named


def _pairs_from_graph(root: nn.Module, graph: torch.fx.Graph) -> tuple[list[Pair], list[str]]:
    """Conv nodes whose only user is a foldable norm node; plus the called leaves that have children."""
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    attrs = [str(node.target) for node in graph.nodes if node.op == "get_attr"]
    pairs: list[Pair] = []
    opaque: list[str] = []
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        module = root.get_submodule(node.target)
        norm_name = _sole_norm_user(root, node)
        if norm_name is not None and calls[node.target] == 1 and calls[norm_name] == 1:
            touched = [a for a in attrs if a.startswith((f"{node.target}.", f"{norm_name}."))]
            if not touched:  # parameters read outside the module call would see unfolded values
                pairs.append((node.target, norm_name))
        elif not _is_conv_or_norm(module) and _has_children(module) and node.target not in opaque:
            opaque.append(node.target)
    return pairs, opaque


def _sole_norm_user(root: nn.Module, node: torch.fx.Node) -> str | None:
    """The target of the norm that consumes ``node`` as its only input, if that is ``node``'s only use."""
    if len(node.users) != 1:
        return None
    (user,) = node.users
    if user.op != "call_module" or user.args != (node,) or user.kwargs:
        return None
    conv, norm = root.get_submodule(node.target), root.get_submodule(user.target)
    return user.target if _can_fold(conv, norm) else None


def _structural_pairs(module: nn.Module) -> list[Pair]:
    """Pairs whose order is fixed by the container itself: plain Sequential neighbours, timm ConvNormAct."""
    if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
        children = list(module.named_children())
        return [(a, b) for (a, conv), (b, norm) in zip(children, children[1:]) if _can_fold(conv, norm)]
    conv_norm_act = getattr(timm.layers, "ConvNormAct", None)
    if conv_norm_act is not None and type(module) is conv_norm_act and _can_fold(module.conv, module.bn):
        return [("conv", "bn")]
    return []


def _unshared(root: nn.Module, pairs: list[Pair]) -> list[Pair]:
    """Drop pairs whose conv or norm is registered under several names: folding would change every use."""
    uses = Counter(id(m) for _, m in root.named_modules(remove_duplicate=False))
    seen: set[int] = set()
    kept = []
    for conv_name, norm_name in pairs:
        ids = (id(root.get_submodule(conv_name)), id(root.get_submodule(norm_name)))
        if all(uses[i] == 1 and i not in seen for i in ids):
            kept.append((conv_name, norm_name))
            seen.update(ids)
    return kept


def _norm_linear_pairs(root: nn.Module) -> list[Pair]:
    """(Linear, BatchNorm1d) pairs where the norm feeds the Linear inside a plain Sequential, with only
    eval-mode identities (dropout, Identity) between them: a ``--head-bn`` head."""
    pairs = []
    for name, module in root.named_modules():
        if not (isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward):
            continue
        children = list(module.named_children())
        for i, (norm_name, norm) in enumerate(children):
            if not _is_foldable_norm_1d(norm):
                continue
            rest = children[i + 1:]
            j = next((k for k, child in enumerate(rest) if not _is_eval_identity(child[1])), None)
            if j is None:
                continue
            linear_name, linear = rest[j]
            if _is_foldable_linear(linear) and linear.in_features == norm.num_features:
                prefix = f"{name}." if name else ""
                pairs.append((prefix + linear_name, prefix + norm_name))
    return pairs


def _is_foldable_norm_1d(module: nn.Module) -> bool:
    return (type(module) is nn.BatchNorm1d and not _has_hooks(module) and module.running_mean is not None
            and module.running_var is not None)


def _is_foldable_linear(module: nn.Module) -> bool:
    return type(module) is nn.Linear and not _has_hooks(module)


def _is_eval_identity(module: nn.Module) -> bool:
    return type(module) in (nn.Identity, nn.Dropout, nn.AlphaDropout) and not _has_hooks(module)


# ---------------------------------------------------------------- folding


@torch.no_grad()
def _fold_into_linear(root: nn.Module, linear_name: str, norm_name: str) -> None:
    """``linear(norm(x))`` as one Linear: the norm's per-feature scale into the weight's columns, its shift
    through the weight into the bias (float64 on the CPU, cast back)."""
    linear, norm = root.get_submodule(linear_name), root.get_submodule(norm_name)
    as64 = {"device": "cpu", "dtype": torch.float64}
    mean, var = norm.running_mean.to(**as64), norm.running_var.to(**as64)
    gamma = norm.weight.to(**as64) if norm.weight is not None else torch.ones_like(mean)
    beta = norm.bias.to(**as64) if norm.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + norm.eps)
    weight = linear.weight.to(**as64)
    bias = linear.bias.to(**as64) if linear.bias is not None else torch.zeros(weight.shape[0], **as64)
    like = {"device": linear.weight.device, "dtype": linear.weight.dtype}
    linear.bias = nn.Parameter((bias + weight @ (beta - mean * scale)).to(**like),
                               requires_grad=linear.weight.requires_grad)
    linear.weight = nn.Parameter((weight * scale).to(**like), requires_grad=linear.weight.requires_grad)
    _set_submodule(root, norm_name, nn.Identity())


@torch.no_grad()
def _fold_pair(root: nn.Module, conv_name: str, norm_name: str) -> None:
    """Rewrite the conv's weight and bias to include the norm, then replace the norm by what remains of it."""
    conv, norm = root.get_submodule(conv_name), root.get_submodule(norm_name)
    weight, bias = folded_conv_params(conv, norm)
    conv.weight = nn.Parameter(weight, requires_grad=conv.weight.requires_grad)
    conv.bias = nn.Parameter(bias, requires_grad=conv.weight.requires_grad)
    _set_submodule(root, norm_name, _norm_remainder(norm))


def folded_conv_params(conv: nn.Conv2d, norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a conv equal to ``norm(conv(x))`` with the norm in eval mode.

    Computed in float64 on the CPU (some devices lack float64), then cast back to the conv's dtype/device.
    """
    as64 = {"device": "cpu", "dtype": torch.float64}
    mean, var = norm.running_mean.to(**as64), norm.running_var.to(**as64)
    gamma = norm.weight.to(**as64) if norm.weight is not None else torch.ones_like(mean)
    beta = norm.bias.to(**as64) if norm.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + norm.eps)
    weight = conv.weight.to(**as64) * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
    bias = conv.bias.to(**as64) if conv.bias is not None else torch.zeros_like(mean)
    bias = (bias - mean) * scale + beta
    like = {"device": conv.weight.device, "dtype": conv.weight.dtype}
    return weight.to(**like), bias.to(**like)


def _norm_remainder(norm: nn.Module) -> nn.Module:
    """Identity for a plain norm; ``FoldedNormAct`` keeping drop and act for timm's norm+act layers."""
    if type(norm) in _norm_act_types():
        return FoldedNormAct(drop=norm.drop, act=norm.act)
    return nn.Identity()


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at a dotted name (works for Sequential indices too)."""
    parent_name, _, leaf = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, module)


def iter_conv_norm_edges(model: nn.Module) -> Iterator[Pair]:
    """Conv -> norm edges still present in ``model``'s fx graph (any BatchNorm): what fusion left behind.

    Useful to check a fused model; yields nothing for models fx cannot trace.
    """
    graph = _trace(model)
    if graph is None:
        return
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(model.get_submodule(node.target), nn.Conv2d):
            continue
        for user in node.users:
            if user.op == "call_module" and _is_conv_or_norm(model.get_submodule(user.target)):
                if not isinstance(model.get_submodule(user.target), nn.Conv2d):
                    yield node.target, user.target
