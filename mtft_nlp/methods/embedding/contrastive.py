"""Contrastive objectives of the embedding method: the supervised contrastive loss and class-balanced batches.

The paper's theory (section 3) measures the representation phi by a contrastive loss, and its multitask stage
minimises the same kind of objective over the finetuning tasks' classes. With 16 shots per class, cross-entropy on a
cosine head under-separates many classes; the supervised contrastive loss (SupCon, Khosla et al. 2020) over
class-balanced batches separates them (PROTOCOL section 9.1).

* :func:`supcon_loss`: SupCon over a batch of unit-norm embeddings, with an optional group per example (the
  multitask stage's source task) that limits both the positives and, if asked, the negatives to the same group.
* :class:`BalancedBatches`: a fixed, seeded stream of examples in which every consecutive ``batch_size`` block
  is one optimizer step's batch holding every class of its task(s); read in order by
  :class:`~mtft_nlp.training.trainer.PresampledTrainer`.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ...tasks import MtftError

__all__ = ["OBJECTIVES", "HEAD_MODES", "supcon_loss", "BalancedBatches", "check_objective", "uses_contrastive"]

# cross_entropy: the cosine head's loss (the earlier recipe); supcon: the supervised contrastive loss alone, the
# head fitted on the embeddings afterwards; supcon+ce: both, summed with --ce_weight on the cross-entropy
OBJECTIVES = ("cross_entropy", "supcon", "supcon+ce")
# refit: the head is fitted on the current embeddings (as embed-adapt does) at every dev evaluation; joint: the
# description-initialised head is trained with the encoder; auto: refit for supcon, joint otherwise
HEAD_MODES = ("auto", "refit", "joint")


def uses_contrastive(objective: str) -> bool:
    return objective in ("supcon", "supcon+ce")


def check_objective(objective: str, temperature: float, ce_weight: float, head: str = "joint") -> None:
    """Bad values of the objective's options as :class:`MtftError` naming the option."""
    if objective not in OBJECTIVES:
        raise MtftError(f"--objective {objective!r}: choose from {', '.join(OBJECTIVES)}")
    if head not in HEAD_MODES:
        raise MtftError(f"--head {head!r}: choose from {', '.join(HEAD_MODES)}")
    if not temperature > 0 or not np.isfinite(temperature):
        raise MtftError(f"--contrastive_temperature {temperature}: must be a number greater than 0")
    if not ce_weight >= 0 or not np.isfinite(ce_weight):
        raise MtftError(f"--ce_weight {ce_weight}: must be a number of at least 0")
    if objective == "supcon" and head == "joint":
        raise MtftError("--head joint trains the head with cross-entropy: use --objective supcon+ce (or --head refit)")


def supcon_loss(
    z: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    groups: Optional[torch.Tensor] = None,
    negatives_across_groups: bool = True,
) -> torch.Tensor:
    """The supervised contrastive loss of unit-norm embeddings ``z`` [N, H] with class ``labels`` [N].

    Anchor i, positives P(i) (same label and group, i excluded), candidates A(i) (every other example, or only
    those of i's group when ``negatives_across_groups`` is False) contribute
    ``-1/|P(i)| * sum_{p in P(i)} log(exp(z_i.z_p / t) / sum_{a in A(i)} exp(z_i.z_a / t))``; the loss is the mean
    over anchors with at least one positive (0 when none has one)."""
    n = z.shape[0]
    labels = labels.view(-1)
    same = labels[:, None] == labels[None, :]
    others = ~torch.eye(n, dtype=torch.bool, device=z.device)
    candidates = others
    if groups is not None:
        groups = groups.view(-1)
        same_group = groups[:, None] == groups[None, :]
        same = same & same_group
        if not negatives_across_groups:
            candidates = others & same_group
    positives = same & others
    sim = (z @ z.t()) / temperature
    sim = sim.masked_fill(~candidates, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    n_pos = positives.sum(1)
    has = n_pos > 0
    if not bool(has.any()):
        return z.sum() * 0.0  # keeps the graph: a batch without positives contributes nothing
    pos_log_prob = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(1)
    return -(pos_log_prob[has] / n_pos[has]).mean()


class BalancedBatches(Dataset):
    """``steps`` batches of ``batch_size`` examples, fixed by ``seed``, each holding every class of its tasks.

    Each batch draws ``tasks_per_step`` distinct tasks (by ``probs``; all of them when there are fewer) and splits
    the batch among them as evenly as possible; within a task, the examples are spread evenly over its classes
    (the remainder goes to classes in rotation), each class reading its own shuffled, cycling order. Items are
    the tasks' features, read in order; ``task_ids`` gives each item's task."""

    def __init__(
        self,
        task_features: Sequence[Sequence[Dict]],
        probs: Sequence[float],
        steps: int,
        batch_size: int,
        seed: int,
        tasks_per_step: int = 1,
    ):
        if tasks_per_step < 1:
            raise MtftError(f"--tasks_per_step {tasks_per_step}: must be at least 1")
        rng = np.random.RandomState(seed)
        self.task_features = task_features
        n_tasks = len(task_features)
        per_task_step = min(tasks_per_step, n_tasks)
        by_class: List[Dict[int, np.ndarray]] = []
        for t, feats in enumerate(task_features):
            labels = np.array([int(f["labels"]) for f in feats])
            by_class.append({int(c): np.flatnonzero(labels == c) for c in np.unique(labels)})
            share = batch_size // per_task_step
            if share < len(by_class[t]):
                raise MtftError(
                    f"a batch of {batch_size} examples over {per_task_step} task(s) per step gives {share} "
                    f"examples to a task with {len(by_class[t])} classes: every class must be in every batch "
                    f"(raise the batch size to at least {len(by_class[t]) * per_task_step})"
                )
        orders = [{c: rng.permutation(idx) for c, idx in bc.items()} for bc in by_class]
        cursors = [{c: 0 for c in bc} for bc in by_class]
        p = np.asarray(probs, dtype=np.float64)
        p = p / p.sum()
        self.items: List[tuple] = []
        task_ids: List[int] = []
        turn = [0] * n_tasks
        for _ in range(steps):
            tasks = rng.choice(n_tasks, size=per_task_step, replace=False, p=p)
            shares = [batch_size // per_task_step + (i < batch_size % per_task_step) for i in range(per_task_step)]
            batch = []
            for t, share in zip(tasks.tolist(), shares):
                classes = sorted(by_class[t])
                counts = [share // len(classes)] * len(classes)
                for j in range(share % len(classes)):  # the remainder in rotation, so classes even out over steps
                    counts[(turn[t] + j) % len(classes)] += 1
                turn[t] = (turn[t] + share % len(classes)) % len(classes)
                for c, k in zip(classes, counts):
                    for _ in range(k):
                        if cursors[t][c] == len(orders[t][c]):
                            orders[t][c], cursors[t][c] = rng.permutation(by_class[t][c]), 0
                        batch.append((t, int(orders[t][c][cursors[t][c]])))
                        cursors[t][c] += 1
            for i in rng.permutation(len(batch)):
                self.items.append(batch[i])
                task_ids.append(batch[i][0])
        self.task_ids = np.array(task_ids, dtype=np.int64)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        t, j = self.items[i]
        return self.task_features[t][j]
