"""A finetuned (or adapted) embedding classifier as an artifact: save, load, predict, model card, push to the Hub.

The folder is a plain sentence-transformers model (``SentenceTransformer(path)`` loads the encoder phi) plus
``embedding_head.safetensors`` (the class head: weight, bias, scale) and ``embedding_classifier.json`` (task,
labels, metric, prompt, class descriptions, scores). Nothing is unpickled. Same interface as
:class:`~mtft_nlp.methods.prompt.classifier.PromptClassifier`:

    clf = EmbeddingClassifier.from_pretrained("runs/sst2-13/best")
    clf.predict(["a gripping, funny film", "a tedious mess"])   # ['1', '0']
    clf.push_to_hub("user/mtft-sst2-minilm-embedding")
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch

from ...hub import model_card
from ...io import EMBEDDING_CLASSIFIER_FILE, atomic_write_text
from ...tasks import MtftError, TaskSpec
from ...templates import Prompt
from .modeling import ClassHead, EmbeddingForClassification, encode_texts, load_sentence_encoder

__all__ = ["EmbeddingClassifier", "save_embedding_classifier", "is_embedding_classifier", "METADATA_FILE"]

METADATA_FILE = EMBEDDING_CLASSIFIER_FILE
HEAD_FILE = "embedding_head.safetensors"


def is_embedding_classifier(path: Union[str, os.PathLike]) -> bool:
    return os.path.isfile(os.path.join(path, METADATA_FILE))


def save_embedding_classifier(
    model: EmbeddingForClassification,
    task: TaskSpec,
    prompt: Prompt,
    descriptions: Sequence[str],
    save_directory: Union[str, os.PathLike],
    record: Optional[Dict] = None,
    model_card: bool = True,
) -> Path:
    """Write encoder (sentence-transformers folder), head, metadata and model card."""
    from safetensors.torch import save_file

    out = Path(save_directory)
    out.mkdir(parents=True, exist_ok=True)
    model.encoder.save(str(out))
    head = model.heads[0]
    save_file(
        {
            "weight": head.weight.detach().cpu().contiguous(),
            "bias": head.bias.detach().cpu().contiguous(),
            "scale": head.scale.detach().cpu().reshape(1),
        },
        str(out / HEAD_FILE),
    )
    record = record or {}
    meta = {
        "task": task.name,
        "labels": list(task.labels),
        "metric": task.metric,
        "num_sentences": task.num_sentences,
        "max_seq_length": task.max_seq_length,
        "prompt": prompt.to_dict(),
        "descriptions": list(descriptions),
        "row": record.get("row"),
        "base_model": record.get("model"),
        "seed": record.get("seed"),
        "k": record.get("k"),
        "adaptation_head": record.get("adaptation_head"),
        "multitask": record.get("multitask"),
        "embedded_default_model": record.get("embedded_default_model"),
        "scores": {"dev": record.get("dev_score"), "test": record.get("test_score")} if record else None,
    }
    atomic_write_text(out / METADATA_FILE, json.dumps(meta, indent=2, default=str))
    if model_card:
        atomic_write_text(out / "README.md", model_card_text(meta))
    return out


def model_card_text(meta: Dict) -> str:
    base = meta.get("base_model") or "unknown"
    scores = meta.get("scores") or {}
    desc = "\n".join(f'- `{lab}`: "{d}"' for lab, d in zip(meta["labels"], meta["descriptions"]))
    example = (
        'clf.predict(["<a '
        + meta["task"]
        + ' input>"]'
        + (', text_pairs=["<its second sentence>"]' if meta.get("num_sentences") == 2 else "")
        + ")"
    )
    mt = meta.get("multitask") or {}
    front = {
        "library_name": "sentence-transformers",
        "pipeline_tag": "text-classification",
        "tags": "[mtft-nlp, few-shot, sentence-transformers, embedding-classifier]",
    }
    lines = [
        f"A linear head on the sentence embedding of `{base}`, made with mtft-nlp (row `{meta.get('row')}`"
        + (f", head: {meta['adaptation_head']}" if meta.get("adaptation_head") else "")
        + ").",
        "",
        "## Classes and their descriptions (zero-shot initialisation of the head)",
        "",
        desc,
        "",
    ]
    if mt:
        lines += [
            f"The encoder was first finetuned on the tasks {', '.join(mt.get('sources') or [])} "
            f"(multitask stage, sources: {mt.get('sources_origin')}).",
            "",
        ]
    if scores.get("test") is not None:
        lines += [
            f"Scores ({meta['metric']}): dev {scores['dev']:.4f}, test {scores['test']:.4f} "
            f"(K={meta.get('k')}, split seed {meta.get('seed')}).",
            "",
        ]
    lines += [
        "## Use",
        "",
        "```python",
        "from mtft_nlp import EmbeddingClassifier",
        'clf = EmbeddingClassifier.from_pretrained("PATH_OR_REPO")',
        example,
        "```",
        "",
        'The folder is also a plain sentence-transformers model: `SentenceTransformer("PATH_OR_REPO")`.',
        "",
    ]
    return model_card(front, f"Embedding-based few-shot classifier for {meta['task']}", lines)


class EmbeddingClassifier:
    """A sentence encoder + its class head, ready to classify raw texts or text pairs."""

    def __init__(self, model: EmbeddingForClassification, metadata: Dict, path: Optional[str] = None):
        self.model = model
        self.metadata = metadata
        self.labels: List[str] = list(metadata["labels"])
        self.path = path

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: Union[str, os.PathLike],
        device: Optional[str] = None,
        trust_remote_code: bool = False,
        token: Optional[str] = None,
    ) -> "EmbeddingClassifier":
        from safetensors.torch import load_file

        from ...hub import fetch_folder

        path = str(fetch_folder(name_or_path, token=token))
        if not is_embedding_classifier(path):
            raise MtftError(f"{path} is not an embedding classifier (no {METADATA_FILE})")
        try:
            meta = json.loads(Path(path, METADATA_FILE).read_text(encoding="utf-8"))
            tensors = load_file(os.path.join(path, HEAD_FILE))
        except (OSError, ValueError) as exc:
            raise MtftError(f"{path}: cannot read the classifier ({exc})") from None
        encoder = load_sentence_encoder(path, device=device, trust_remote_code=trust_remote_code)
        head = ClassHead(tensors["weight"], tensors["bias"], float(tensors["scale"][0]))
        model = EmbeddingForClassification(encoder, [head]).to(device or "cpu")
        model.eval()
        return cls(model, meta, path)

    @torch.no_grad()
    def logits(
        self, texts: Sequence[str], text_pairs: Optional[Sequence[str]] = None, batch_size: int = 64
    ) -> torch.Tensor:
        if isinstance(texts, str):
            raise MtftError("predict takes a list of texts, not a single string")
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise MtftError(f"{len(texts)} texts but {len(text_pairs)} text pairs")
        z = encode_texts(self.model.encoder, list(texts), text_pairs, batch_size=batch_size)
        z = z.to(self.model.heads[0].weight.device)
        return self.model.heads[0](z).cpu()

    def predict(
        self,
        texts: Sequence[str],
        text_pairs: Optional[Sequence[str]] = None,
        batch_size: int = 64,
        return_probabilities: bool = False,
        row_names: Optional[Sequence[str]] = None,
    ):
        """Task labels (and, with ``return_probabilities``, a dict label -> probability per text). ``row_names`` (where
        each text came from) is accepted for the interface every classifier shares (``mtft-nlp predict``); texts
        longer than the encoder's limit are truncated, so no text can fail."""
        logits = self.logits(texts, text_pairs, batch_size)
        preds = [self.labels[i] for i in logits.argmax(-1).tolist()]
        if not return_probabilities:
            return preds
        probs = torch.softmax(logits, -1)
        return preds, [dict(zip(self.labels, map(float, p))) for p in probs]

    def label_word(self, label) -> Optional[str]:
        return (self.metadata.get("prompt") or {}).get("label_words", {}).get(str(label))

    def save_pretrained(self, save_directory: Union[str, os.PathLike], model_card: bool = True):
        from ...hub import task_from_metadata

        task = task_from_metadata({**self.metadata, "regression": None})
        p = self.metadata.get("prompt") or {}
        prompt = Prompt(
            template=p.get("template", "*cls**sent_0**mask**sep+*"),
            label_words=p.get("label_words", {}),
            name=p.get("name", "custom"),
            descriptions=p.get("descriptions"),
        )
        record = {
            "row": self.metadata.get("row"),
            "model": self.metadata.get("base_model"),
            "seed": self.metadata.get("seed"),
            "k": self.metadata.get("k"),
            "adaptation_head": self.metadata.get("adaptation_head"),
            "multitask": self.metadata.get("multitask"),
            "embedded_default_model": self.metadata.get("embedded_default_model"),
        }
        scores = self.metadata.get("scores") or {}
        if scores:
            record.update(dev_score=scores.get("dev"), test_score=scores.get("test"))
        return save_embedding_classifier(
            self.model, task, prompt, self.metadata["descriptions"], save_directory, record, model_card
        )

    def push_to_hub(
        self,
        repo_id: str,
        private: bool = False,
        token: Optional[str] = None,
        commit_message: str = "Upload mtft-nlp embedding classifier",
        api=None,
    ) -> str:
        """Upload encoder, head, metadata and model card; returns the commit URL."""
        from ...hub import push_folder

        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            return push_folder(tmp, repo_id, private, token, commit_message, api)
