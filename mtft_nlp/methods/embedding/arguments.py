"""The embedding method's options: :class:`EmbeddingArguments` (``--method embedding``), the training objective they
share with the multitask stage (:class:`ObjectiveArguments`), and :data:`EMBEDDING_DEFAULTS`, the recipe chosen on
the k-shot dev sets."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...checks import AT_LEAST_1, POSITIVE, check_numbers

__all__ = ["EmbeddingArguments", "ObjectiveArguments", "EMBEDDING_DEFAULTS", "STAGE_DEFAULTS", "objective_field"]


# TrainingArguments defaults of the embedding method (the CLI applies them unless a flag is given), with
# EmbeddingArguments' objective (supcon, temperature 0.07, the head refit at each evaluation): the recipe chosen on
# the k-shot dev sets (docs/RESULTS.md section 8, benchmarks/configs/embedding_recipe/). Batches of 32 hold every
# class of a task with up to 32 classes.
EMBEDDING_DEFAULTS = {
    "learning_rate": 2e-5,
    "per_device_train_batch_size": 32,
    "max_steps": 50,
    "eval_steps": 10,
    "logging_steps": 10,
}


# The multitask stage chosen on the sources' dev sets (docs/RESULTS.md section 8, "the stage objective";
# benchmarks/configs/embedding_recipe_stage/ce-e16.yaml): cross-entropy, 100 steps of 16 examples at lr 2e-5.
STAGE_DEFAULTS = {"max_steps": 100, "eval_steps": 100, "learning_rate": 2e-5, "examples_per_step": 16, "eval_tasks": 3}


def objective_field(default: str, help: str):
    return field(default=default, metadata={"help": help, "choices": ["cross_entropy", "supcon", "supcon+ce"]})


@dataclass
class ObjectiveArguments:
    """The embedding method's training objective and batch encoding, shared by single runs and the multitask
    stage."""

    objective: str = objective_field(
        "supcon",
        "Embedding method: the training loss: supcon (supervised contrastive over class-balanced batches; the "
        "head is then fitted on phi), supcon+ce (plus the head's cross-entropy, weighted by --ce_weight) or "
        "cross_entropy (the cosine head's loss alone).",
    )
    contrastive_temperature: float = field(
        default=0.07, metadata={"help": "Embedding method: temperature of the supervised contrastive loss."}
    )
    ce_weight: float = field(
        default=1.0, metadata={"help": "Embedding method: weight of the cross-entropy term of --objective supcon+ce."}
    )

    encode_chunks: int = field(
        default=4,
        metadata={
            "help": "Embedding method: a training batch is encoded in this many length-sorted chunks, each padded "
            "to its own longest text (the loss still sees the whole batch: its gradient, up to dropout's draws, on "
            "fewer padded tokens; 1 pads the whole batch to its longest text)."
        },
    )

    def _check_objective(self, head: str = "auto"):
        from .contrastive import check_objective

        check_objective(self.objective, self.contrastive_temperature, self.ce_weight, head)
        check_numbers(self, {"encode_chunks": AT_LEAST_1})


@dataclass
class EmbeddingArguments(ObjectiveArguments):
    _argument_group_name = "Embedding method (mtft-nlp; --method embedding)"

    frozen_encoder: bool = field(
        default=False,
        metadata={
            "help": "Embedding method: fit only a linear head on the frozen encoder (row embed-adapt; logistic "
            "regression "
            "or description-interpolated class prototypes, chosen on dev) instead of finetuning it."
        },
    )
    head_learning_rate: float = field(
        default=1e-2,
        metadata={"help": "Embedding method: learning rate of the class head(s) (the encoder uses --learning_rate)."},
    )
    head_scale: float = field(
        default=20.0,
        metadata={
            "help": "Embedding method: scale (1/temperature) of the cosine head initialised from the class "
            "descriptions."
        },
    )
    head: str = field(
        default="auto",
        metadata={
            "help": "Embedding method: how finetuning gets its head: refit (fitted on the current embeddings at "
            "every dev evaluation, as embed-adapt fits it), joint (the description-initialised head trained with "
            "the encoder), auto (refit for --objective supcon, joint otherwise).",
            "choices": ["auto", "refit", "joint"],
        },
    )
    description_anchors: bool = field(
        default=False,
        metadata={"help": "Embedding method: the class descriptions join every contrastive batch as extra anchors."},
    )

    def __post_init__(self):
        self._check_objective(self.head)
        check_numbers(self, {"head_learning_rate": POSITIVE, "head_scale": POSITIVE})

    @property
    def head_mode(self) -> str:
        """``refit`` or ``joint``: the head the finetuning run trains or fits."""
        if self.head != "auto":
            return self.head
        return "refit" if self.objective == "supcon" else "joint"
