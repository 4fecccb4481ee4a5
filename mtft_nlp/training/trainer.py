"""The ``Trainer`` of every run, and the one place it is built (:func:`build_trainer`).

The training loop is the ``Trainer``'s own. :class:`FewShotTrainer` adds a process-count-independent train order
(:class:`SeededEpochSampler`), exact distributed metrics, and checkpoints of prompt models as plain masked-LM
folders; :class:`MultitaskTrainer` reads the mixed-task stream in order and logs the mean over the sources' dev
sets. Single-task prompt runs, embedding finetuning and both methods' multitask stages all go through
:func:`build_trainer`.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import SequentialSampler
from transformers import Trainer
from transformers.trainer_utils import EvalLoopOutput, EvalPrediction

from ..methods.prompt.modeling import PromptForMaskedLM, predictions_from_logits
from ..metrics import compute_metrics
from ..tasks import TaskSpec

__all__ = [
    "SeededEpochSampler",
    "FewShotTrainer",
    "PresampledTrainer",
    "MultitaskTrainer",
    "build_trainer",
    "make_compute_metrics",
    "peak_memory_mb",
]


class SeededEpochSampler(torch.utils.data.Sampler):
    """A fresh seeded permutation each epoch, identical in every process.

    Under DDP, accelerate hands consecutive batches of this order to the processes, so a
    global step sees the same examples whatever the number of processes (N processes x
    batch b = one process x batch N*b).
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def __len__(self):
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


class FewShotTrainer(Trainer):
    """``Trainer`` with a process-count-independent train order and exact distributed metrics.

    The loop is the Trainer's own. Evaluation drops the samples that distributed sharding
    repeats to even out the last batches before metrics are computed, so the dev/test
    metrics of a 2-process run are computed over exactly the dataset.
    """

    # Private Trainer methods overridden here, each because no public hook does the job (tests/test_trainer.py fails
    # loudly if a transformers release renames one): _save and _load_from_checkpoint make a checkpoint of a prompt
    # model a plain masked-LM folder (Trainer's own would save the wrapper's state dict and lose the tied weights);
    # _get_train_sampler gives the process-count-independent order (get_train_dataloader would have to be copied).
    PRIVATE_OVERRIDES = ("_save", "_load_from_checkpoint", "_get_train_sampler")

    def _save(self, output_dir=None, state_dict=None):
        """A prompt model's checkpoint is its masked LM as a standard HF folder (tied weights kept)."""
        inner = self.accelerator.unwrap_model(self.model)
        if not isinstance(inner, PromptForMaskedLM):
            return super()._save(output_dir, state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if self.args.should_save:
            os.makedirs(output_dir, exist_ok=True)
            inner.mlm.save_pretrained(output_dir)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        inner = self.accelerator.unwrap_model(model if model is not None else self.model)
        if not isinstance(inner, PromptForMaskedLM):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        from transformers import AutoModelForMaskedLM

        saved = AutoModelForMaskedLM.from_pretrained(resume_from_checkpoint)
        inner.mlm.load_state_dict(saved.state_dict())

    def _get_train_sampler(self, train_dataset=None):
        ds = train_dataset if train_dataset is not None else self.train_dataset
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return SeededEpochSampler(len(ds), seed)

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        compute, self.compute_metrics = self.compute_metrics, None
        try:
            out = super().evaluation_loop(
                dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
            )
        finally:
            self.compute_metrics = compute
        n = len(dataloader.dataset)
        preds = out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions
        preds = preds[:n] if preds is not None else None
        labels = out.label_ids[:n] if out.label_ids is not None else None
        metrics = dict(out.metrics)
        if compute is not None and preds is not None and labels is not None:
            for k, v in compute(EvalPrediction(predictions=preds, label_ids=labels)).items():
                metrics[f"{metric_key_prefix}_{k}"] = v
        return EvalLoopOutput(predictions=preds, label_ids=labels, metrics=metrics, num_samples=n)


def peak_memory_mb() -> float:
    """Peak GPU memory allocated (CUDA) or peak resident memory of this process (CPU), in MiB."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PresampledTrainer(FewShotTrainer):
    """The train dataset is already in sampling order (a mixed-task stream, class-balanced batches): read it
    sequentially (accelerate hands consecutive batches to the processes, so each sees a disjoint share of every
    step)."""

    def _get_train_sampler(self, train_dataset=None):
        return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)


class MultitaskTrainer(PresampledTrainer):
    """The multitask stage's Trainer: the presampled mixed-task stream, and the mean over the sources' dev sets."""

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        """The Trainer's evaluation; on a dict of dev sets (one per source) it also logs the mean loss and
        accuracy over the sources (``<prefix>_mean_loss``, ``<prefix>_mean_acc``) through ``Trainer.log``."""
        metrics = super().evaluate(
            eval_dataset=eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix
        )
        sets = eval_dataset if eval_dataset is not None else self.eval_dataset
        if isinstance(sets, dict) and sets:
            per_task = [
                (metrics.get(f"{metric_key_prefix}_{n}_loss"), metrics.get(f"{metric_key_prefix}_{n}_acc"))
                for n in sets
            ]
            if all(loss is not None and acc is not None for loss, acc in per_task):
                mean = {
                    f"{metric_key_prefix}_mean_loss": float(np.mean([x[0] for x in per_task])),
                    f"{metric_key_prefix}_mean_acc": float(np.mean([x[1] for x in per_task])),
                }
                self.log(mean)
                metrics.update(mean)
        return metrics


def make_compute_metrics(task: TaskSpec):
    low, high = (task.regression["low"], task.regression["high"]) if task.is_regression else (0.0, 1.0)

    def compute(eval_pred):
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        preds = predictions_from_logits(logits, task.is_regression, low, high)
        return compute_metrics(task.metric, preds, eval_pred.label_ids)

    return compute


def build_trainer(
    model,
    args,
    train_dataset=None,
    eval_dataset=None,
    data_collator=None,
    compute_metrics: Optional[Callable] = None,
    callbacks: Sequence = (),
    optimizer=None,
    tokenizer=None,
    trainer_class=FewShotTrainer,
) -> Trainer:
    """The ``Trainer`` of a run: ``label_names`` set to ``["labels"]`` (not the label-word ids that Trainer would
    guess from the forward signature), an optional optimizer (the Trainer then builds the schedule over its
    parameter groups), the callbacks."""
    args.label_names = ["labels"]
    return trainer_class(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=data_collator,
        compute_metrics=compute_metrics,
        callbacks=list(callbacks),
        processing_class=tokenizer,
        optimizers=(optimizer, None),
    )
