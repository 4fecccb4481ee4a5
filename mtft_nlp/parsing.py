"""The command lines of ``mtft-nlp train`` and ``mtft-nlp multitask`` as parsers: which option dataclasses they read
(the registered methods' own among them), the chosen method's training defaults, and :func:`check_command_line`,
which parses a job's flags without running it (the grid checks every section of its config this way before any job
starts)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Callable, List, Optional, Sequence

from .tasks import MtftError

__all__ = [
    "chosen_method",
    "method_defaults",
    "method_option_classes",
    "check_method_options",
    "train_dataclasses",
    "multitask_dataclasses",
    "hf_parser",
    "check_command_line",
]


def chosen_method(argv: List[str]):
    """The method that ``--method`` / ``--model_name_or_path`` resolve to."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--method", default="auto")
    pre.add_argument("--model_name_or_path", default="minilm")
    known, _ = pre.parse_known_args(argv)
    from .methods import get_method, resolve_method

    return get_method(resolve_method(known.method, known.model_name_or_path))


def method_defaults(argv: List[str]) -> dict:
    """Training defaults of the chosen method (flags given on the command line still win)."""
    return chosen_method(argv).training_defaults()


def method_option_classes() -> list:
    """The option dataclasses of the registered methods (each once, in registration order)."""
    from .methods import all_methods

    return list(dict.fromkeys(c for m in all_methods() if (c := m.argument_class()) is not None))


def check_method_options(argv: List[str]) -> None:
    """An option that only another method reads is refused by name (it would otherwise be silently ignored)."""
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        return
    from .methods import all_methods

    method = chosen_method(argv)
    own = method.argument_class()
    own_fields = {f.name for f in dataclasses.fields(own)} if own else set()
    owner = {
        f.name: m.name
        for m in all_methods()
        if m is not method and m.argument_class() not in (None, own)
        for f in dataclasses.fields(m.argument_class())
    }
    for tok in argv:
        name = tok[2:].split("=", 1)[0] if tok.startswith("--") else None
        if name in owner and name not in own_fields:
            raise MtftError(
                f"--{name} is an option of the {owner[name]} method; this run uses the {method.name} method "
                f"(choose it with --method {owner[name]})"
            )


def train_dataclasses() -> tuple:
    """What ``mtft-nlp train`` reads: model, task, every registered method's options, training."""
    from .training.arguments import FewShotTrainingArguments, ModelArguments, TaskArguments

    return (ModelArguments, TaskArguments, *method_option_classes(), FewShotTrainingArguments)


def multitask_dataclasses() -> tuple:
    """What ``mtft-nlp multitask`` reads."""
    from .training.arguments import ModelArguments, MultitaskArguments, MultitaskTrainingArguments

    return (ModelArguments, MultitaskArguments, MultitaskTrainingArguments)


def hf_parser(
    dataclass_types: Sequence[type],
    argv: List[str],
    defaults: Optional[Callable[[List[str]], dict]] = None,
    **parser_kwargs,
):
    """An ``HfArgumentParser`` of ``dataclass_types`` with ``defaults(argv)`` (e.g. the chosen method's) set."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(dataclass_types, **parser_kwargs)
    if defaults is not None:
        parser.set_defaults(**defaults(argv))
    return parser


# flags whose check depends on the machine (TrainingArguments refuses bf16 without a GPU that has it): a grid planned
# on one machine runs its jobs on another (a SLURM or Ray cluster), whose processes check them themselves
MACHINE_FLAGS = ("bf16", "fp16", "tf32", "bf16_full_eval", "fp16_full_eval", "use_cpu", "ddp_backend", "torch_compile")


def _without_machine_flags(argv: List[str]) -> List[str]:
    out, skip = [], False
    for i, tok in enumerate(argv):
        if skip:
            skip = False
            continue
        if tok.startswith("--") and tok[2:].split("=", 1)[0] in MACHINE_FLAGS:
            skip = "=" not in tok and i + 1 < len(argv) and not argv[i + 1].startswith("--")
            continue
        out.append(tok)
    return out


def check_command_line(command: str, argv: List[str]) -> None:
    """Parse the flags of a ``train`` or ``multitask`` job as its process will, without running it: an unknown
    flag, a value of the wrong type or out of range, or another method's option is a :class:`MtftError` naming it.
    The flags of :data:`MACHINE_FLAGS` are left to the job's own process, on the machine it runs on."""
    argv = _without_machine_flags(argv)
    if command == "train":
        check_method_options(argv)
        parser = hf_parser(train_dataclasses(), argv, method_defaults)
    else:
        parser = hf_parser(multitask_dataclasses(), argv)

    def error(message):
        raise MtftError(message)

    parser.error = error
    try:
        parser.parse_args_into_dataclasses(args=argv)
    except ValueError as exc:  # the dataclasses' own checks, and flags no dataclass reads
        raise MtftError(str(exc)) from None
