"""What an adaptation method is to the rest of the package: a :class:`Method` with its kinds of run (the row kinds of
the tables, :class:`RowKind`), its options, its multitask stage (:class:`StageParts`) and its saved classifier.

The grid, the rows, the records and the report ask a method for these properties; none of them compares a method's
name. A method lives in one folder, ``mtft_nlp/methods/<name>/``, whose ``__init__.py`` defines its ``Method``
subclass with light imports only (the command line starts without torch); :func:`mtft_nlp.methods.register_method`
adds it. See docs/ARCHITECTURE.md, "Add a method".
"""

from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..tasks import MtftError

__all__ = ["RowKind", "Method", "StageParts", "VARIANT_TITLES", "row_name"]

# row variant -> the title part of the selection ablations (the paper's Table 1)
VARIANT_TITLES = {"random": "Random tasks", "nocon": "No consistency", "nodiv": "No diversity"}


def row_name(kind: str, variant: Optional[str] = None) -> str:
    """The row of ``kind`` from the base model (``variant`` None), after the stage on all sources (``"all"``:
    ``mt-<kind>``) or on the sources a selection method chose (``mt-<variant>-<kind>``)."""
    if variant is None:
        return kind
    return f"mt-{kind}" if variant == "all" else f"mt-{variant}-{kind}"


@dataclasses.dataclass(frozen=True)
class RowKind:
    """One kind of run of a method: a row of the tables (``pbft``, ``embed-ft``...) and how a grid cell runs it."""

    name: str
    title: str  # the base row's title in tables
    short_title: str  # inside the multitask rows' titles: "+ task selection (<short_title>)"
    section: str  # the grid configuration's section whose flags its cells take
    flags: Tuple[str, ...] = ()  # the command-line flags that select this kind, e.g. ("--zero_shot",)
    zero_shot: bool = False  # no training on the target
    trains_encoder: bool = False  # the encoder's weights change on the target
    multitask: bool = True  # can start from a multitask checkpoint (mt-* rows)
    multitask_title: Optional[str] = None  # the mt-<kind> row's title; default "Multitask FT + <short_title>"


@dataclasses.dataclass
class StageParts:
    """What a method contributes to the multitask stage: per-source features, the model, how to save it."""

    model: object
    tokenizer: object
    collator: object
    train_features: List[List[Dict]]
    dev_sets: Dict[str, object]
    save: Callable[[Path], None]
    # (training arguments) -> optimizer; None: the Trainer's own --optim at --learning_rate
    make_optimizer: Optional[Callable] = None
    # (sampling probabilities, training arguments) -> the training stream; None: the mixed-task stream
    make_dataset: Optional[Callable] = None
    # fields the stage's multitask_config.json records for this method (e.g. its objective's settings)
    record: Dict = dataclasses.field(default_factory=dict)


class Method(abc.ABC):
    """An adaptation method. Subclasses set the class attributes and implement :meth:`run`; the rest is optional."""

    name: str = ""
    title: str = ""  # in messages: "the SetFit peer", "the prompt method"
    kinds: Tuple[RowKind, ...] = ()
    stage_section: Optional[str] = None  # the grid configuration's section of its multitask stage; None: no stage
    stage_objectives: Tuple[str, ...] = ("cross_entropy",)  # the --objective values its stage trains with
    stage_options: Tuple[str, ...] = ()  # the multitask options that only some methods' stages read: those it reads
    finetune_kind: Optional[str] = None  # the kind a sweep (mtft-nlp sweep) varies
    row_groups: Dict[str, List[str]] = {}  # --rows groups, e.g. {"embedding": [...]}
    peer: bool = False  # a method measured beside ours with its own recipe (a row left out when not installed)
    saves_model: bool = True  # False: a measured peer whose model is not kept
    auto_fallback: bool = False  # --method auto's choice for a model no method recognises
    keyed_by_name: bool = True  # False: grid folder keys without the method's name (keys that predate methods)
    classifier_marker: Optional[str] = None  # the file that marks a saved classifier of this method

    # -- model recognition and options (imported when asked for: the command line starts without torch)
    def argument_class(self) -> Optional[type]:
        """The dataclass of the method's own command-line options (parsed beside the shared ones), if any."""
        return None

    def training_defaults(self) -> Dict:
        """``TrainingArguments`` defaults that differ from the shared dataclass's (learning rate, steps...)."""
        return {}

    def stage_defaults(self) -> Dict:
        """The multitask stage's recipe where it differs from the stage's dataclass defaults (``mtft-nlp fit``)."""
        return {}

    def recognizes(self, path: str) -> bool:
        """Whether ``--method auto`` gives this method a model at ``path`` (a resolved folder or Hub id)."""
        return False

    def available(self) -> bool:
        """Whether the packages the method needs are installed."""
        return True

    install_hint: str = ""

    # -- runs
    @abc.abstractmethod
    def run(self, model_args, data_args, training_args, method_args=None) -> Dict:
        """One run on the k-shot split of ``training_args.seed``; writes ``results.json`` last and returns it."""

    def multitask_stage(self, model_args, sources: Sequence, args, seed: int) -> StageParts:
        """The method's parts of the multitask stage (the stage's skeleton is :mod:`mtft_nlp.multitask`)."""
        raise MtftError(f"--method {self.name} has no multitask stage")

    def load_classifier(self, path: str, device: Optional[str] = None, **kwargs):
        """A saved classifier of this method (``predict``, ``push_to_hub``)."""
        raise MtftError(f"the {self.name} method saves no classifier")

    # -- rows
    def kind(self, name: str) -> RowKind:
        return next(k for k in self.kinds if k.name == name)

    def row_names(self, variants: Sequence[str]) -> List[str]:
        """This method's rows in table order: the base rows, after the stage on all sources (mt-), on the selected
        ones (mt-sel-), then the selection ablations, kind by kind."""
        mt = [k for k in self.kinds if k.multitask]
        out = [k.name for k in self.kinds if not k.multitask]
        out += [row_name(k.name, v) for v in (None, "all", "sel") for k in mt]
        out += [row_name(k.name, v) for k in mt for v in variants if v != "sel"]
        return list(dict.fromkeys(out))

    def row_titles(self) -> Dict[str, str]:
        out = {}
        for k in self.kinds:
            out[k.name] = k.title
            if k.multitask:
                out[row_name(k.name, "all")] = k.multitask_title or f"Multitask FT + {k.short_title}"
                out[row_name(k.name, "sel")] = f"+ task selection ({k.short_title})"
                out.update({row_name(k.name, v): f"{t} ({k.short_title})" for v, t in VARIANT_TITLES.items()})
        return out
