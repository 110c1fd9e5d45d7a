"""Transfer strategies, and the one place that puts a model in train or eval mode.

A strategy decides what trains and how fast: ``param_groups`` freezes what it freezes and returns the
optimizer's parameter groups, each with an ``lr_scale`` (discriminative learning rates); ``on_epoch_start``
may change that while training (gradual unfreezing, head warm-up), always setting the state for that epoch
from scratch so a resumed run is in the same state. Strategies are registered by name: adding one is a
class and a decorator. Stages (what ``partial`` and ``gradual`` count) come from
``honed.models.stages.backbone_stages``, discovered from the model.

    probe    frozen features, extracted once; a scikit-learn head fitted on them (honed.training.probe)
    head     backbone frozen (batch norm statistics too), new head trained
    partial  the first stages frozen, the last N (``unfreeze``, default 2) fine-tuned with the head
    gradual  the head alone for the first epoch, then stages unfrozen from the last one back, spread over
             the epochs, each stage at a lower learning rate the farther it is from the head
    full     everything; from pretrained weights, the first epoch trains the head alone (warm-up)
    scratch  everything, from random weights whatever --pretrained/--weights say: what pretraining buys

A frozen batch norm layer must also keep its running statistics frozen, so ``train_mode`` leaves every
BN layer whose parameters are all frozen in eval mode. Every training step goes through ``train_mode``
and every evaluation, prediction and export through ``eval_mode``.

Data parallelism: DDP registers only the parameters that require gradients when it is built, so a
parameter unfrozen later would never be all-reduced and the ranks would drift apart. Training therefore
rebuilds the DDP wrapper whenever ``on_epoch_start`` changes the set of trainable parameters
(``honed.training.fit``; tested with gradual unfreezing on two processes, whose final weights agree).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from honed.errors import HonedError
from honed.models.stages import backbone_stages, head_name, stage_parameters
from honed.registry import Registry

DEFAULT_PARTIAL_STAGES = 2  # partial: the last two stages fine-tuned when --unfreeze is not given
GRADUAL_FLOOR = 0.1  # gradual: lr_scale of the stem; stages in between are spaced geometrically up to 1 (head)
HEAD_WARMUP_EPOCHS = 1  # full (from pretrained weights, with 3+ epochs): epochs training the head alone
WARMUP_MIN_EPOCHS = 3  # with fewer epochs the backbone needs every one of them: no warm-up


def head_module(model: nn.Module) -> nn.Module:
    """The classifier head: timm's ``get_classifier()``, or torchvision's ``fc`` / ``classifier`` / ``heads``."""
    return model.get_submodule(head_name(model))


def set_trainable(module: nn.Module, trainable: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(trainable)


def trainable_signature(model: nn.Module) -> tuple[bool, ...]:
    """Which parameters train now, in order: compare two to see whether a strategy changed anything."""
    return tuple(p.requires_grad for p in model.parameters())


def train_head_and_last(model: nn.Module, stages: list[list[str]], count: int) -> None:
    """Freeze everything, then unfreeze the head and the last ``count`` stages."""
    set_trainable(model, False)
    set_trainable(head_module(model), True)
    for names in stages[len(stages) - count:] if count > 0 else []:
        for p in stage_parameters(model, names):
            p.requires_grad_(True)


def reset_new_head(model: nn.Module, *, model_name: str, pretrained: bool, weights: str,
                   classes: list[str] | None = None) -> list[str]:
    """Zero the head tensors the starting weights did not provide (a new head on pretrained features); returns
    their names. Weights from a honed run trained on other ``classes`` (its ``labels.json`` says which) give a
    head of the right shape for the wrong labels: that head counts as new too. A zero head starts at uniform predictions and lets the features pick its weights. The
    initialisations it replaces can be far off: timm's EfficientNet scales its classifier by 1/sqrt(classes),
    so a 10-class head on Lite0 features starts with logits of +-10 (initial training loss 12.8 measured on
    CIFAR-10); a head-only run of 56 AdamW steps on 200 CIFAR images then reached 22% test accuracy, 60% from
    a zero head."""
    from honed.models.pip_weights import pretrained_state_dict
    from honed.models.state_dicts import match_state_dict, read_state_dict

    if not (pretrained or weights):
        return []
    state = read_state_dict(weights) if weights else pretrained_state_dict(model_name)
    if state is not None:
        _, new, _ = match_state_dict(model, state, skip_head=False)
        if weights and classes is not None and _trained_on_other_labels(weights, classes):
            last = _last_linear_name(model)
            new = list(new) + ([f"{last}.weight", f"{last}.bias"] if last else [])
    else:  # weights from the model hub: timm (and honed, for torchvision) replaced a last layer of another size
        classes = (getattr(model, "pretrained_cfg", None) or {}).get("num_classes")
        last = _last_linear_name(model)
        new = [] if last is None or classes == model.get_submodule(last).out_features else [
            f"{last}.weight", f"{last}.bias"]
    # Only the last Linear starts at zero: a zero batch norm scale (--head-bn) or hidden layer before it would
    # block every gradient behind it, and their default initialisations are already neutral.
    last = _last_linear_name(model)
    tensors = dict(model.named_parameters())
    zeroed = [key for key in new if key in tensors and key.rpartition(".")[0] == last]
    with torch.no_grad():
        for key in zeroed:
            tensors[key].zero_()
    return zeroed


def _trained_on_other_labels(weights: str, classes: list[str]) -> bool:
    """Whether ``weights`` sit in a honed run folder whose labels differ from ``classes``."""
    import json
    from pathlib import Path

    labels = Path(weights).parent / "labels.json"
    try:
        source = json.loads(labels.read_text()).get("classes")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(source, list) and source != list(classes)


def _last_linear_name(model: nn.Module) -> str | None:
    head = head_name(model)
    names = [n for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and (n == head or n.startswith(head + "."))]
    return names[-1] if names else None


class Strategy:
    """Fine-tune everything (the base behaviour). Subclasses override what they change."""

    name = "full"
    summary = "fine-tune every layer"
    uses_pretrained = True  # False: starts from random weights whatever --pretrained/--weights say
    trains_network = True  # False: fits a head on extracted features instead of taking gradient steps

    def __init__(self, **options):
        self.options = options  # stored unchanged, as scikit-learn estimators do: unfreeze, pretrained

    def param_groups(self, model: nn.Module) -> list[dict]:
        set_trainable(model, True)
        return [{"params": list(model.parameters()), "lr_scale": 1.0}]

    def on_epoch_start(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, epochs: int) -> None:
        """Called before each epoch (1-based); the default changes nothing."""


STRATEGIES: Registry[type[Strategy]] = Registry("transfer strategy")  # filled by @register_strategy


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make a Strategy subclass available by its ``name``; a name registers once."""
    return STRATEGIES.register(cls.name, cls)


def list_strategies(pattern: str = "*") -> list[str]:
    """Sorted names of the registered strategies matching a shell wildcard (``auto`` is not one)."""
    return sorted(STRATEGIES.names(pattern))


def describe_strategies() -> dict[str, str]:
    """Strategy name -> one line saying what it trains."""
    return {name: STRATEGIES[name].summary for name in list_strategies()}


def create_strategy(name: str, **options) -> Strategy:
    """The strategy ``name`` built with ``options`` (unfreeze, pretrained)."""
    if name == "auto":
        raise HonedError("strategy 'auto' is decided by the advisor before training: call honed.train, "
                         "or `honed advise` to see its choice")
    return STRATEGIES[name](**options)


@register_strategy
class Full(Strategy):
    """Fine-tune every layer. From pretrained weights (with 3+ epochs) the first epoch trains the head alone:
    a random head's large early gradients would otherwise wash through the pretrained features."""

    name = "full"
    summary = "fine-tune everything, after a one-epoch head warm-up when pretrained"

    def warmup_epochs(self, epochs: int) -> int:
        pretrained = self.options.get("pretrained", False)
        return HEAD_WARMUP_EPOCHS if pretrained and epochs >= WARMUP_MIN_EPOCHS else 0

    def on_epoch_start(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, epochs: int) -> None:
        if epoch <= self.warmup_epochs(epochs):
            train_head_and_last(model, [], 0)
        else:
            set_trainable(model, True)


@register_strategy
class Head(Strategy):
    """Backbone frozen (batch norm statistics too), new head trained."""

    name = "head"
    summary = "frozen backbone (BN statistics too), new head trained"

    def param_groups(self, model: nn.Module) -> list[dict]:
        train_head_and_last(model, [], 0)
        return [{"params": list(head_module(model).parameters()), "lr_scale": 1.0}]


@register_strategy
class Partial(Strategy):
    """The first stages frozen; the last ``unfreeze`` stages (default 2) fine-tuned with the head."""

    name = "partial"
    summary = "first stages frozen, the last N (--unfreeze, default 2) fine-tuned with the head"

    def stages_to_train(self, stages: list[list[str]]) -> int:
        return min(self.options.get("unfreeze") or DEFAULT_PARTIAL_STAGES, len(stages))

    def param_groups(self, model: nn.Module) -> list[dict]:
        stages = backbone_stages(model)
        train_head_and_last(model, stages, self.stages_to_train(stages))
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr_scale": 1.0}]


@register_strategy
class Gradual(Strategy):
    """Head first, then stages unfrozen from the last one back, with discriminative learning rates.

    Epoch 1 trains the head alone. From epoch 2 on, ``ceil(target * (epoch - 1) / (epochs - 1))`` stages
    train, where ``target`` is ``unfreeze`` (0: every stage): the unfreezing is spread so the last epoch
    trains them all. Stage ``i`` of ``S`` (0: the stem) learns at ``GRADUAL_FLOOR ** ((S - i) / S)`` times
    the learning rate: geometric from 1 at the head down to 1/10 at the stem (fastai's ``slice(lr/10, lr)``).
    A factor of 0.1 per stage would leave a 6-stage stem at 1e-6 of the rate: frozen in all but name."""

    name = "gradual"
    summary = "head first, then stages unfrozen last to first, lower learning rates for earlier stages"

    def param_groups(self, model: nn.Module) -> list[dict]:
        stages = backbone_stages(model)
        groups = [{"params": list(head_module(model).parameters()), "lr_scale": 1.0}]
        for i, names in enumerate(stages):
            scale = GRADUAL_FLOOR ** ((len(stages) - i) / len(stages))
            groups.append({"params": stage_parameters(model, names), "lr_scale": scale})
        train_head_and_last(model, stages, 0)
        return groups

    def stages_at(self, epoch: int, epochs: int, total: int) -> int:
        """How many stages (from the last) train in ``epoch``."""
        target = min(self.options.get("unfreeze") or total, total)
        if epoch <= 1 or epochs <= 1:
            return 0
        return min(target, math.ceil(target * (epoch - 1) / (epochs - 1)))

    def on_epoch_start(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, epochs: int) -> None:
        stages = backbone_stages(model)
        train_head_and_last(model, stages, self.stages_at(epoch, epochs, len(stages)))


@register_strategy
class Scratch(Strategy):
    """Every layer from random weights: the baseline that shows what pretraining buys."""

    name = "scratch"
    summary = "random initialisation, everything trained (ignores --pretrained/--weights)"
    uses_pretrained = False


@register_strategy
class Probe(Strategy):
    """Frozen features extracted once, a scikit-learn head fitted on them, its weights written into the
    network's last linear layer (see ``honed.training.probe``): no gradient step at all."""

    name = "probe"
    summary = "frozen features, a scikit-learn head (--head-model) written into the last layer"
    trains_network = False

    def param_groups(self, model: nn.Module) -> list[dict]:
        set_trainable(model, False)
        return []


def apply_strategy(model: nn.Module, strategy: str, **options) -> list[nn.Parameter]:
    """Freeze what the strategy freezes and return the parameters left to train."""
    create_strategy(strategy, **options).param_groups(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise HonedError(f"strategy {strategy!r} left nothing to train in this model")
    return trainable


def train_mode(model: nn.Module) -> nn.Module:
    """Train mode, except batch norm layers whose parameters are frozen: their statistics stay fixed too."""
    model.train()
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
    return model


def eval_mode(model: nn.Module) -> nn.Module:
    """Eval mode for everything: no dropout, batch norm from running statistics."""
    return model.eval()
