"""The backbone registry: each model family's name → how to build it, which classes its options reach, its label.

A backbone maps (batch, time, input_size) → (batch, time, hidden_size), or (batch, hidden_size) when it reads the
last real step alone, and streams (``initial_state``, ``step``; :mod:`plmu.models`). The builders that take a family
by name (``model.backbone``, set by ``conf/model/<family>.yaml``: ``sequence_model`` for real-valued sequences, the
text classifier, language and translation models) build it here, and read its facts (the fields of
:class:`Backbone`) instead of checking its name. The model-key check
(:func:`plmu.models.build.build_model`: which ``model.*`` keys exist, "did you mean"), results.json's ``model`` and
the report's labels read the same entries. Classes are named by import path and imported on use: an entry is a line
of names, and reading labels needs no model code.

Adding a family: its module, one :class:`Backbone` entry in ``BACKBONES``, ``conf/model/<family>.yaml`` and
``conf/sizes/<family>.yaml`` (docs/architecture.md; S4D was added so).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from plmu.checks import ArgumentError


@dataclass(frozen=True)
class ActivationFloats:
    """What a training step keeps per example, time step and layer, in floats, for the peak memory estimate
    (:mod:`plmu.train.peak_memory`; fitted to measured peaks: experiments/memory/README.md): ``memory`` per memory
    feature (``memory_d`` × ``order``), ``width`` per unit (``hidden_size``), ``feedforward`` per feed-forward unit
    (``dim_feedforward``, default 4 × width). ``last_state``: a last-step read of the last layer keeps only its input
    per step (the parallel LMU's m_T). ``attention``: evaluation makes the batch × heads × T² scores whole."""

    memory: float = 0.0
    width: float = 16.0
    feedforward: float = 0.0
    last_state: bool = False
    attention: bool = False

    def per_step(self, model: Any) -> float:
        """Floats per example, step and layer for the ``model`` config (a mapping)."""
        width = float(model.get("hidden_size") or 0)
        memory = float(model.get("memory_d") or 1) * float(model.get("order") or 0)
        feedforward = float(model.get("dim_feedforward") or 4 * width) if self.feedforward else 0.0
        return self.memory * memory + self.width * width + self.feedforward * feedforward


@dataclass(frozen=True)
class Backbone:
    """One family. ``build`` (``"module:attribute"``) is called as ``build(input_size, hidden_size, num_layers,
    return_sequences=..., **options)``; ``options`` (import paths too) are the classes its options reach: their
    parameters are ``model.*`` keys. ``last_alone``: it can return the last real step alone
    (``return_sequences=False``); ``masks``: it takes a padding mask (text); ``bidirectional``: it can also look
    both ways (a ``causal`` option: the builders make it causal where every step is predicted, and a translation
    encoder reads both ways); ``same_width``: its input must have its width, ``hidden_size`` (the builders map a
    real-valued input linearly; a text task's embedding is as wide); ``activations``: what its training step keeps
    (:class:`ActivationFloats`; None: the peak memory estimate is not made for it, rather than guessed);
    ``given``: parameters of its option classes that its constructor fills itself (the transformer's ``d_model``
    is ``hidden_size``): never ``model.*`` keys."""

    name: str
    label: str
    build: str
    options: tuple[str, ...]
    last_alone: bool = True
    masks: bool = True
    bidirectional: bool = False
    same_width: bool = False
    activations: ActivationFloats | None = None
    given: tuple[str, ...] = ()

    def builder(self) -> Any:
        return _resolve(self.build)

    def option_classes(self) -> list[Any]:
        return [_resolve(path) for path in self.options]


def _resolve(path: str) -> Any:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


BACKBONES: dict[str, Backbone] = {
    entry.name: entry
    for entry in (
        Backbone(
            "plmu",
            "parallel LMU",
            "plmu.layers:ParallelLMUStack",
            ("plmu.layers:ParallelLMUStack", "plmu.layers:ParallelLMU"),
            activations=ActivationFloats(memory=2, width=2, last_state=True),
        ),
        Backbone(
            "lstm",
            "LSTM",
            "plmu.models.encoders:LSTMEncoder",
            ("plmu.models.encoders:LSTMEncoder",),
            activations=ActivationFloats(width=16),
        ),
        Backbone(
            "gru",
            "GRU",
            "plmu.models.gru:GRUEncoder",
            ("plmu.models.gru:GRUEncoder",),
            activations=ActivationFloats(width=16),  # not fitted apart: the LSTM's
        ),
        Backbone(
            "transformer",
            "transformer",
            "plmu.models.backbones:transformer_backbone",
            ("plmu.models.transformer:TransformerBackbone",),
            last_alone=False,
            bidirectional=True,
            same_width=True,
            given=("d_model",),
            activations=ActivationFloats(width=8, feedforward=2, attention=True),
        ),
        Backbone(
            "original_lmu",
            "original LMU",
            "plmu.original:OriginalLMUStack",
            ("plmu.original:OriginalLMUStack", "plmu.original:OriginalLMU", "plmu.original:OriginalLMUCell"),
            masks=False,
            activations=ActivationFloats(memory=4, width=8),
        ),
        Backbone(
            "s4d",
            "S4D",
            "plmu.models.s4d:S4DStack",
            ("plmu.models.s4d:S4DStack",),
            activations=ActivationFloats(width=24),  # measured 13-23 a channel (experiments/memory)
        ),
    )
}


Builder = TypeVar("Builder", bound=Callable[..., Any])


# The names of the builder protocol: what the task and the data give a builder (plmu.models.build.model_args) and what
# the registry's constructors are told (return_sequences). Never model.* keys.
PROTOCOL_ARGUMENTS = ("input_size", "output_size", "per_step", "vocab_size", "num_classes", "return_sequences")


def forwards(*targets: str, given: tuple[str, ...] = ()) -> Callable[[Builder], Builder]:
    """Declare where a model builder's ``**options`` go, so that its ``model.*`` keys are known before it runs
    (:func:`plmu.models.build.build_model`): ``"backbone"`` (the family its ``backbone`` argument names), a family's
    name (that entry's option classes) or ``"module:Class"``; ``given``: parameters of those classes the builder
    fills itself (not keys). A builder without ``**options`` needs no declaration (its parameters are its keys); one
    with them and none declared takes any key (a user's own builder)."""

    def declare(builder: Builder) -> Builder:
        builder.forwards = targets  # type: ignore[attr-defined]
        builder.given = given  # type: ignore[attr-defined]
        return builder

    return declare


def forwarded_classes(builder: Any, chosen: Any = None) -> tuple[list[Any], set[str]]:
    """The classes ``builder``'s declared ``**options`` reach (see :func:`forwards`), and the parameters of theirs
    that are filled for them (the builder's ``given``, the families', the protocol's); ``chosen``: its ``backbone``
    argument (an unknown or unset one: every family it might be)."""
    classes, given = [], {*PROTOCOL_ARGUMENTS, *getattr(builder, "given", ())}
    for target in getattr(builder, "forwards", ()):
        if target == "backbone":
            entries = [BACKBONES[chosen]] if chosen in BACKBONES else list(BACKBONES.values())
        elif target in BACKBONES:
            entries = [BACKBONES[target]]
        else:
            classes.append(_resolve(target))
            continue
        classes += [cls for entry in entries for cls in entry.option_classes()]
        given |= {name for entry in entries for name in entry.given}
    return classes, given


def backbone(name: str, masked: bool = False) -> Backbone:
    """The registry's entry for ``name``; ``masked``: it must take a padding mask (token sequences)."""
    names = [key for key, entry in BACKBONES.items() if entry.masks or not masked]
    if name not in names:
        raise ArgumentError("backbone", f"be one of {names}, got {name!r}")
    return BACKBONES[name]


def transformer_backbone(
    input_size: int, hidden_size: int, num_layers: int, return_sequences: bool = True, **options: Any
) -> Any:
    """The transformer in the registry's constructor shape (it always returns every step; its width is
    ``hidden_size``, which the input must already have)."""
    from plmu.models.transformer import TransformerBackbone

    if input_size != hidden_size:
        raise ArgumentError(
            "embed_dim", f"equal hidden_size={hidden_size} for a transformer (its width), got {input_size}"
        )
    if not return_sequences:
        raise ValueError("a transformer returns every step: pool its output (return_sequences must be true)")
    return TransformerBackbone(hidden_size, num_layers, **options)


def build_backbone(
    kind: str, input_size: int, hidden_size: int, num_layers: int, last_only: bool = False, **options: Any
) -> Any:
    """A token-sequence backbone (batch, time, input_size) → (batch, time, hidden_size) with ``forward(x,
    mask=...)``; ``last_only``: (batch, hidden_size), the last real step only (the parallel LMU then computes m_T
    alone, one matmul: the paper's eq. 25, exact for left and right padding)."""
    entry = backbone(kind, masked=True)
    return entry.builder()(input_size, hidden_size, num_layers, return_sequences=not last_only, **options)


# Families recorded under another name: the pre-training model (results.json's model "pretrain") is an LMU
FAMILY_ALIASES = {"pretrain": "plmu"}


def model_family(model: dict[str, Any] | Any) -> str:
    """What a run's record calls its model (``model`` is the run's ``model`` config): ``pretrain`` for the paper's
    pre-training architecture (a model of its own around LMU blocks), else its ``backbone``, else (a record of an
    earlier version, or a user's builder) the builder's name without ``_model`` (``plmu_model`` → plmu)."""
    builder = str(model.get("_target_", "")).rsplit(".", 1)[-1]
    backbone = model.get("backbone")
    if isinstance(backbone, str) and builder != "pretrain_model":
        return backbone
    return builder.removesuffix("_model")


def family_entry(family: str) -> Backbone | None:
    """The registry's entry for a family as a record names it (:func:`model_family`; aliases followed), or None."""
    return BACKBONES.get(FAMILY_ALIASES.get(family, family))


def family_label(family: str) -> str:
    """The family's label in reports and tables (``plmu`` → parallel LMU); the name itself if unknown."""
    entry = family_entry(family)
    return entry.label if entry is not None else family
