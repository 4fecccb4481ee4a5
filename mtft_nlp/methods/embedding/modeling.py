"""Embedding-based classification: a linear head on a sentence encoder's representation phi.

This is the paper's own setting (Xu et al. 2024, section 3): a contrastively pretrained encoder phi,
adapted to a task with a linear head ``W phi(x)``; multitask finetuning trains one head per task on a
shared phi. Here phi is any sentence-transformers model (the packaged all-MiniLM-L6-v2 by default): its
pooled, L2-normalised sentence embedding. A head computes

    logits = scale * W z + b,   z = phi(x) / |phi(x)|

so a head whose rows are unit class-description embeddings, ``scale`` 20 and no bias is the cosine
classifier of zero-shot prediction, and a logistic regression on z is the same head with ``scale`` 1.

* :func:`class_descriptions`: one text per class, the task's prompt rendered with the label word and no
  input ("It was great." / "It was terrible." for SST-2), or the prompt file's ``descriptions:``.
* :class:`EmbeddingForClassification`: phi plus one head per task; a batch may mix tasks with different
  numbers of classes (``task_id`` per example, padded classes hold the dtype's minimum), as in the
  multitask stage of the prompt method.
* :func:`build_embedding_features` / :class:`EmbeddingCollator`: tokenisation as the encoder expects (a
  sentence pair as the tokenizer's pair), padding.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from ...tasks import MtftError, TaskSpec
from ...templates import Prompt, PromptError, parse_template
from ...training.features import pad_tokens

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SCALE",
    "class_descriptions",
    "load_sentence_encoder",
    "is_sentence_encoder",
    "ClassHead",
    "EmbeddingForClassification",
    "EmbeddingOutput",
    "build_embedding_features",
    "EmbeddingCollator",
    "encode_texts",
    "description_batch",
]

DEFAULT_SCALE = 20.0  # cosine-classifier scale (1 / temperature 0.05) of description-initialised heads


def class_descriptions(task: TaskSpec, prompt: Prompt) -> List[str]:
    """One text per class of ``task`` in label order: the prompt's ``descriptions:`` if given, else its template
    rendered with the class's label word at the mask and without the input sentences."""
    if prompt.descriptions:
        return [prompt.descriptions[lab] for lab in task.labels]
    words = prompt.words_in_order(task)
    pieces = parse_template(prompt.template)
    out = []
    for word in words:
        text = ""
        for p in pieces:
            if p.kind == "literal":
                text += p.value
            elif p.kind == "label":
                text += " " + words[p.value]
            elif p.kind == "special" and p.value == "mask":
                text += (" " if text and not text.endswith(" ") else "") + word
        text = " ".join(text.split())
        if not text or text == word and not word.strip():
            raise PromptError(
                f"prompt {prompt.name!r} for task {task.name}: no class description can be rendered "
                "from its template and label words; give 'descriptions:' in the prompt file"
            )
        out.append(text)
    if len(set(out)) != len(out):
        raise PromptError(
            f"prompt {prompt.name!r} for task {task.name}: two classes render to the same description "
            f"{out}; give distinct label words or 'descriptions:'"
        )
    return out


def is_sentence_encoder(path: str) -> bool:
    """True when ``path`` is a local sentence-transformers folder (``modules.json`` with a pooling module)."""
    return os.path.isfile(os.path.join(path, "modules.json"))


def load_sentence_encoder(
    name: str,
    device: Optional[str] = None,
    trust_remote_code: bool = False,
    allow_mean_pooling: bool = True,
    allow_pickle: bool = False,
):
    """A ``SentenceTransformer`` from a local folder or Hub id.

    A checkpoint that is not a sentence-transformers model (a plain ``*ForMaskedLM`` folder) has no pooling
    configuration: sentence-transformers then builds mean pooling over its token states. That fallback is
    stated in the log (and in ``results.json`` as ``pooling``), or refused with ``allow_mean_pooling=False``.
    """
    from sentence_transformers import SentenceTransformer

    from ...models import check_tokenizer_fits, quiet_load_report, resolve_model_name

    path = resolve_model_name(name)
    local = os.path.isdir(path)
    if local and not os.path.isfile(os.path.join(path, "config.json")) and not is_sentence_encoder(path):
        raise MtftError(
            f"--model_name_or_path {name}: {path} holds neither a sentence-transformers model "
            "(modules.json) nor a transformers model (config.json)"
        )
    if local:
        from ...tasks import check_weights_format

        check_weights_format(path, allow_pickle)  # safetensors only, unless --allow_pickle
    if local and not is_sentence_encoder(path):
        if not allow_mean_pooling:
            raise MtftError(f"--model_name_or_path {name} is not a sentence encoder (no modules.json)")
        logger.warning(
            "%s is not a sentence-transformers model: its embedding is the mean of its token states "
            "(mean pooling), not a contrastively trained sentence embedding",
            name,
        )
    prev = logging.getLogger("sentence_transformers").level
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    try:
        with quiet_load_report():
            model = SentenceTransformer(path, device=device or "cpu", trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise MtftError(f"--model_name_or_path {name}: cannot load a sentence encoder ({exc})") from None
    finally:
        logging.getLogger("sentence_transformers").setLevel(prev)
    transformer = model[0].auto_model if hasattr(model[0], "auto_model") else None
    if transformer is not None and hasattr(transformer, "get_input_embeddings"):
        check_tokenizer_fits(model.tokenizer, transformer.get_input_embeddings().num_embeddings, name)
    return model


def pooling_of(encoder) -> str:
    """A short description of how the encoder pools token states (recorded in results)."""
    for module in encoder:
        mode = getattr(module, "get_pooling_mode_str", None)  # sentence-transformers < 6
        if callable(mode):
            return mode()
        mode = getattr(module, "pooling_mode", None)
        if mode is not None:
            return "+".join(mode) if isinstance(mode, (list, tuple)) else str(mode)
    return "unknown"


class ClassHead(nn.Module):
    """``logits = scale * (z @ weight.T) + bias`` for unit-norm embeddings ``z``."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, scale: float = DEFAULT_SCALE):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone().float())
        self.bias = nn.Parameter(bias.detach().clone().float() if bias is not None else torch.zeros(weight.shape[0]))
        self.register_buffer("scale", torch.tensor(float(scale)))

    @classmethod
    def from_descriptions(cls, description_embeddings: torch.Tensor, scale: float = DEFAULT_SCALE) -> "ClassHead":
        return cls(F.normalize(torch.as_tensor(description_embeddings, dtype=torch.float32), dim=-1), None, scale)

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.scale * (z @ self.weight.t()) + self.bias


@dataclasses.dataclass
class EmbeddingOutput(ModelOutput):
    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None  # [batch, max classes]; padded classes hold the dtype's minimum


class EmbeddingForClassification(nn.Module):
    """A sentence encoder (``encoder``, a ``SentenceTransformer``) with one :class:`ClassHead` per task.

    Inputs are the tokenizer's (``input_ids``, ``attention_mask``, optional ``token_type_ids``), an optional
    ``task_id`` [B] selecting each example's head (default: head 0) and optional ``labels`` [B] (class index).
    The loss is the ``objective``'s (:data:`~.contrastive.OBJECTIVES`): the mean cross-entropy of the heads'
    logits (``cross_entropy``), the supervised contrastive loss of the embeddings, positives being the same
    class of the same task (``supcon``), or their sum with the cross-entropy weighted by ``ce_weight``
    (``supcon+ce``). With ``description_features`` (one collated batch of class-description inputs per head), the
    descriptions join each training batch as extra anchors of their classes.

    In training, a batch is encoded in ``encode_chunks`` length-sorted chunks, each without the padding columns
    its own texts do not need, and the embeddings are put back in batch order before the loss: the loss and its
    gradient are those of the whole batch (up to dropout's random draws), at the cost of the tokens the texts
    hold rather than the batch's longest text times its size. Evaluation encodes the batch as given.
    """

    accepts_loss_kwargs = False  # the loss is a per-batch mean: Trainer must not rescale it

    def __init__(
        self,
        encoder,
        heads: Sequence[ClassHead],
        objective: str = "cross_entropy",
        temperature: float = 0.07,
        ce_weight: float = 1.0,
        negatives_across_tasks: bool = True,
        description_features: Optional[Sequence[Dict[str, torch.Tensor]]] = None,
        encode_chunks: int = 1,
    ):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleList(heads)
        self.config = getattr(encoder[0], "auto_model", None) and encoder[0].auto_model.config
        self.objective, self.temperature, self.ce_weight = objective, float(temperature), float(ce_weight)
        self.negatives_across_tasks = negatives_across_tasks
        self.description_features = list(description_features) if description_features else None
        self.encode_chunks = int(encode_chunks)

    def _encode(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        return F.normalize(self.encoder(features)["sentence_embedding"].float(), dim=-1)

    def embed(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        features = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            features["token_type_ids"] = token_type_ids
        chunks = min(self.encode_chunks, input_ids.shape[0]) if self.training else 1
        if chunks <= 1:
            return self._encode(features)
        order = torch.argsort(attention_mask.sum(1), stable=True)
        parts = []
        for rows in torch.tensor_split(order, chunks):
            used = attention_mask[rows].any(0).nonzero()
            width = int(used.max()) + 1 if len(used) else 1  # trailing columns that are padding in every row go
            parts.append(self._encode({k: v[rows, :width] for k, v in features.items()}))
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=order.device)
        return torch.cat(parts)[inverse]

    def logits_from_embeddings(self, z: torch.Tensor, task_id: Optional[torch.Tensor] = None) -> torch.Tensor:
        if task_id is None or len(self.heads) == 1:
            return self.heads[0](z)
        width = max(h.num_classes for h in self.heads)
        logits = z.new_full((z.shape[0], width), torch.finfo(z.dtype).min)
        for t in task_id.unique().tolist():
            rows = task_id == t
            out = self.heads[t](z[rows])
            logits[rows, : out.shape[1]] = out
        return logits

    def _contrastive(self, z: torch.Tensor, labels: torch.Tensor, task_id: Optional[torch.Tensor]) -> torch.Tensor:
        from .contrastive import supcon_loss

        tasks = task_id if task_id is not None else torch.zeros_like(labels)
        if self.training and self.description_features is not None:
            extra_z, extra_y, extra_t = [z], [labels], [tasks]
            for t in tasks.unique().tolist():
                feats = {k: v.to(z.device) for k, v in self.description_features[t].items()}
                d = self.embed(**feats)
                extra_z.append(d)
                extra_y.append(torch.arange(d.shape[0], device=z.device))
                extra_t.append(torch.full((d.shape[0],), t, device=z.device, dtype=tasks.dtype))
            z, labels, tasks = torch.cat(extra_z), torch.cat(extra_y), torch.cat(extra_t)
        return supcon_loss(z, labels, self.temperature, tasks, self.negatives_across_tasks)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None, task_id=None):
        z = self.embed(input_ids, attention_mask, token_type_ids)
        logits = self.logits_from_embeddings(z, task_id)
        loss = None
        if labels is not None:
            labels = labels.long()
            if self.objective == "cross_entropy":
                loss = F.cross_entropy(logits, labels)
            else:
                loss = self._contrastive(z, labels, task_id)
                if self.objective == "supcon+ce" and self.ce_weight:
                    loss = loss + self.ce_weight * F.cross_entropy(logits, labels)
        return EmbeddingOutput(loss=loss, logits=logits)


def _max_length(encoder, task: Optional[TaskSpec]) -> int:
    limit = int(getattr(encoder, "max_seq_length", None) or 512)
    return min(limit, int(task.max_seq_length)) if task is not None and task.max_seq_length else limit


def build_embedding_features(
    encoder, task: TaskSpec, examples: Sequence[Dict], task_id: int = 0, max_length: Optional[int] = None
) -> List[Dict]:
    """Tokenised inputs (a sentence pair as the tokenizer's pair, truncated to the task's and the encoder's
    limit), ``labels`` and ``task_id``, one dict per example."""
    if task.is_regression:
        raise MtftError(
            f"task {task.name} is a regression task; the embedding method classifies (use --method prompt)"
        )
    tok = encoder.tokenizer
    a = [ex["text_a"] for ex in examples]
    b = [ex["text_b"] for ex in examples]
    pairs = any(x is not None for x in b)
    enc = tok(
        a,
        [x or "" for x in b] if pairs else None,
        truncation="longest_first" if pairs else True,
        max_length=max_length or _max_length(encoder, task),
    )
    out = []
    for i, ex in enumerate(examples):
        f = {"input_ids": enc["input_ids"][i], "task_id": task_id}
        if "token_type_ids" in enc:
            f["token_type_ids"] = enc["token_type_ids"][i]
        if ex.get("label_id") is not None:
            f["labels"] = int(ex["label_id"])
        out.append(f)
    return out


class EmbeddingCollator:
    """Pads token sequences to the batch's longest; stacks ``labels`` and ``task_id``."""

    def __init__(self, pad_token_id: Optional[int]):
        self.pad_token_id = pad_token_id if pad_token_id is not None else 0

    def __call__(self, features: List[Dict]) -> Dict[str, torch.Tensor]:
        input_ids, attention, types = pad_tokens(features, self.pad_token_id)
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention,
            "task_id": torch.tensor([f.get("task_id", 0) for f in features]),
        }
        if types is not None:
            batch["token_type_ids"] = types
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
        return batch


@torch.no_grad()
def encode_texts(
    encoder,
    texts: Sequence[str],
    pairs: Optional[Sequence[Optional[str]]] = None,
    task: Optional[TaskSpec] = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """Unit-norm embeddings [N, H] of texts (or pairs) with the encoder in eval mode, length-sorted batches."""
    examples = [{"text_a": t, "text_b": pairs[i] if pairs is not None else None} for i, t in enumerate(texts)]
    limit = _max_length(encoder, task)
    feats = build_embedding_features(encoder, task, examples, max_length=limit) if task is not None else None
    if feats is None:
        tok = encoder.tokenizer
        enc = tok(
            list(texts), [p or "" for p in pairs] if pairs is not None else None, truncation=True, max_length=limit
        )
        feats = [{k: enc[k][i] for k in enc if k in ("input_ids", "token_type_ids")} for i in range(len(texts))]
    order = sorted(range(len(feats)), key=lambda i: len(feats[i]["input_ids"]))
    collate = EmbeddingCollator(encoder.tokenizer.pad_token_id)
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    out = None
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate([feats[i] for i in idx])
        inputs = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        emb = F.normalize(encoder(inputs)["sentence_embedding"].float(), dim=-1).cpu()
        if out is None:
            out = torch.empty((len(feats), emb.shape[1]))
        out[idx] = emb
    encoder.train(was_training)
    return out


def description_batch(encoder, descriptions: Sequence[str]) -> Dict[str, torch.Tensor]:
    """The class descriptions as one collated batch of encoder inputs (the contrastive objective's extra anchors)."""
    enc = encoder.tokenizer(list(descriptions), truncation=True, max_length=_max_length(encoder, None))
    feats = [{k: enc[k][i] for k in ("input_ids", "token_type_ids") if k in enc} for i in range(len(descriptions))]
    batch = EmbeddingCollator(encoder.tokenizer.pad_token_id)(feats)
    batch.pop("task_id")
    return batch
