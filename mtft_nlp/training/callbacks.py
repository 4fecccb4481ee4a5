"""Trainer callbacks: the best-dev checkpoint kept in memory, per-task dev metrics of the multitask stage."""

from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

__all__ = ["BestDevCallback", "HeadRefitCallback", "MultitaskMetricsCallback"]


class BestDevCallback(TrainerCallback):
    """Keep the weights with the best dev score in memory; restore them at the end of training.

    Improvement is strict and numeric (``score > best``), so a negative Matthews correlation
    is compared correctly and ties keep the earlier checkpoint. Works on any Trainer whose
    ``compute_metrics`` reports ``metric_name``. With ``patience``, training stops once that many evaluations in a
    row have not improved on the best (``stopped_step`` says where); the best weights are restored as always.
    """

    def __init__(self, metric_name: str = "eval_score", patience: Optional[int] = None):
        self.metric_name = metric_name
        self.patience = patience
        self.best_score: Optional[float] = None
        self.best_step: Optional[int] = None
        self.stopped_step: Optional[int] = None
        self._state: Optional[Dict[str, torch.Tensor]] = None
        self._since_best = 0
        self.history: List[Dict[str, float]] = []

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if not metrics or self.metric_name not in metrics or model is None:
            return
        score = float(metrics[self.metric_name])
        self.history.append({"step": state.global_step, "score": score})
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_step, self._since_best = score, state.global_step, 0
            self._state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return
        self._since_best += 1
        if self.patience and self._since_best >= self.patience and control is not None:
            control.should_training_stop = True
            self.stopped_step = state.global_step
            logger.info(
                "dev score not improved for %d evaluations: stopping at step %d (best: step %d, %.4f)",
                self._since_best,
                state.global_step,
                self.best_step,
                self.best_score,
            )

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.restore(model)

    def restore(self, model):
        if self._state is not None and model is not None:
            model.load_state_dict(self._state)


class HeadRefitCallback(TrainerCallback):
    """Before every dev evaluation of the training loop, ``refit(model)`` fits the model's head on its current
    embeddings (a contrastive objective trains phi alone; the head is then fitted as ``embed-adapt`` fits it, so
    the dev score that picks the best step is the score of the classifier that step would give). ``chosen``
    maps each step to what ``refit`` returned (the chosen head's name). Place it before
    :class:`BestDevCallback`."""

    def __init__(self, refit: Callable[[torch.nn.Module], str]):
        self.refit = refit
        self.chosen: Dict[int, str] = {}

    def fit(self, model, step: int) -> None:
        self.chosen[step] = self.refit(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if control.should_evaluate and model is not None:  # set by the Trainer's flow callback, which runs first
            self.fit(model, state.global_step)


class MultitaskMetricsCallback(TrainerCallback):
    """Collects the per-task dev loss and accuracy that the Trainer logs for each source
    (``eval_<task>_loss``, ``eval_<task>_acc``; the Trainer's own logging sends them to the console and
    to ``report_to`` integrations) into ``history``, step -> task -> {loss, acc}, with their mean over
    the tasks under ``"mean"``, and logs a one-line summary at INFO level (``--log_level info``).
    Usable with any Trainer whose ``eval_dataset`` is a dict; :class:`MultitaskTrainer` also logs the
    mean itself (``eval_mean_loss``, ``eval_mean_acc``) through ``Trainer.log``.
    """

    def __init__(self, task_names: Sequence[str]):
        self.task_names = list(task_names)
        self.history: Dict[int, Dict[str, Dict[str, float]]] = {}

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics:
            return
        step = self.history.setdefault(state.global_step, {})
        for name in self.task_names:
            loss, acc = metrics.get(f"eval_{name}_loss"), metrics.get(f"eval_{name}_acc")
            if acc is not None:
                step[name] = {"loss": float(loss), "acc": float(acc)}
        if len(step) == len(self.task_names) and "mean" not in step:
            mean = {
                "loss": float(np.mean([v["loss"] for v in step.values()])),
                "acc": float(np.mean([v["acc"] for v in step.values()])),
            }
            step["mean"] = mean
            logger.info(
                "step %d: mean source dev loss %.4f, acc %.4f (%s)",
                state.global_step,
                mean["loss"],
                mean["acc"],
                ", ".join(f"{k} {v['acc']:.2f}" for k, v in step.items() if k != "mean"),
            )
