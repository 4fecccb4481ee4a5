"""A finetuned prompt model as an artifact: save, load, predict, model card, push to the Hub.

The artifact is a standard HF masked-LM folder (safetensors weights, tokenizer, config)
whose ``config.json`` also carries the prompt under ``prompt_classifier`` (task name, label
list, template, label words, metric, length limits, scores). So the same folder loads as a
plain ``AutoModelForMaskedLM`` and, with :meth:`PromptClassifier.from_pretrained`, as a
classifier over raw texts. Nothing is unpickled; ``trust_remote_code`` stays off unless asked.

    clf = PromptClassifier.from_pretrained("runs/sst2-13/best")
    clf.predict(["a gripping, funny film", "a tedious mess"])   # ['1', '0']
    clf.push_to_hub("user/mtft-sst2-minilm")
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch

from ...hub import CARD_NAME, fetch_folder, model_card, push_folder, task_from_metadata
from ...tasks import MtftError, TaskSpec
from ...templates import Prompt, PromptEncoder
from .features import PromptCollator
from .modeling import PromptForMaskedLM, predictions_from_logits

CONFIG_KEY = "prompt_classifier"


def prompt_metadata(task: TaskSpec, prompt: Prompt, extra: Optional[Dict] = None) -> Dict:
    meta = {
        "task": task.name,
        "labels": list(task.labels),
        "metric": task.metric,
        "num_sentences": task.num_sentences,
        "template": prompt.template,
        "label_words": dict(prompt.label_words),
        "prompt_name": prompt.name,
        "max_seq_length": task.max_seq_length,
        "first_sent_limit": task.first_sent_limit,
        "other_sent_limit": task.other_sent_limit,
        "regression": task.regression,
    }
    meta.update(extra or {})
    return meta


class PromptClassifier:
    """A masked LM + its prompt, ready to classify raw texts or text pairs."""

    def __init__(self, model: PromptForMaskedLM, tokenizer, task: TaskSpec, prompt: Prompt, metadata: Dict):
        self.model = model
        self.tokenizer = tokenizer
        self.task = task
        self.prompt = prompt
        self.metadata = metadata
        # validates label words against this tokenizer; long texts are shortened so that the prompt and its mask fit
        self.encoder = PromptEncoder(task, prompt, tokenizer, fit_to_length=True)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: Union[str, os.PathLike],
        device: Optional[str] = None,
        trust_remote_code: bool = False,
        revision: Optional[str] = None,
        token: Optional[str] = None,
    ):
        """Load a folder written by :meth:`save_pretrained` (or a training run's ``best/``), local or on the Hub."""
        from transformers import AutoTokenizer

        path = _local_or_hub(path_or_repo, revision, token)
        if (path / "adapter_config.json").is_file():
            mlm, meta = _load_adapters(path, trust_remote_code)
        else:
            mlm, meta = _load_full(path, trust_remote_code)
        if not meta:
            raise MtftError(
                f"{path} has no prompt metadata ('{CONFIG_KEY}' in config.json): it is a plain masked LM, "
                "not a saved prompt classifier; pass a task and prompt to train or evaluate it"
            )
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        task = task_from_metadata(meta)
        prompt = Prompt(
            template=meta["template"], label_words=meta["label_words"], name=meta.get("prompt_name", "saved")
        )
        model = PromptForMaskedLM(mlm).eval()
        if device:
            model.to(device)
        return cls(model, tokenizer, task, prompt, meta)

    # ------------------------------------------------------------------ inference
    @property
    def device(self):
        return next(self.model.parameters()).device

    @torch.no_grad()
    def predict_logits(
        self,
        texts: Sequence[str],
        text_pairs: Optional[Sequence[Optional[str]]] = None,
        batch_size: int = 32,
        row_names: Optional[Sequence[str]] = None,
    ) -> np.ndarray:
        """Label-word logits per input, in input order (batches are length-sorted)."""
        if isinstance(texts, str):
            texts = [texts]
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise MtftError(f"{len(texts)} texts but {len(text_pairs)} text pairs")
        if self.task.num_sentences == 2 and text_pairs is None:
            raise MtftError(f"task {self.task.name} classifies sentence pairs: pass text_pairs")
        feats = self.encoder.encode_batch(
            list(texts), list(text_pairs) if text_pairs is not None else None, row_names=row_names
        )
        for f in feats:
            f["label_word_ids"] = list(self.encoder.label_word_ids)
        order = sorted(range(len(feats)), key=lambda i: len(feats[i]["input_ids"]))
        collate = PromptCollator(self.tokenizer.pad_token_id)
        out = np.zeros((len(feats), len(self.encoder.label_word_ids)), dtype=np.float32)
        self.model.eval()
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = {k: v.to(self.device) for k, v in collate([feats[i] for i in idx]).items()}
            out[idx] = self.model(**batch).logits.float().cpu().numpy()
        return out

    def predict(
        self,
        texts,
        text_pairs=None,
        batch_size: int = 32,
        return_probabilities: bool = False,
        row_names: Optional[Sequence[str]] = None,
    ):
        """Task labels (or regression scores); with ``return_probabilities``, also the class probabilities."""
        logits = self.predict_logits(texts, text_pairs, batch_size, row_names=row_names)
        if self.task.is_regression:
            preds = [
                float(x)
                for x in predictions_from_logits(
                    logits, True, self.task.regression["low"], self.task.regression["high"]
                )
            ]
        else:
            preds = [self.task.labels[i] for i in logits.argmax(-1)]
        if not return_probabilities:
            return preds
        probs = torch.softmax(torch.from_numpy(logits), -1).numpy()
        return preds, [dict(zip(self.task.labels, map(float, p))) for p in probs]

    def label_word(self, label) -> Optional[str]:
        """The verbaliser word of a task label (None for regression scores)."""
        return None if self.task.is_regression else self.prompt.label_words.get(str(label))

    # ------------------------------------------------------------------ saving / sharing
    def save_pretrained(self, save_directory: Union[str, os.PathLike], model_card: bool = True):
        save_prompt_classifier(
            self.model, self.tokenizer, self.task, self.prompt, save_directory, self.metadata, model_card
        )

    def push_to_hub(
        self,
        repo_id: str,
        private: bool = False,
        token: Optional[str] = None,
        commit_message: str = "Upload mtft-nlp prompt classifier",
        api=None,
    ) -> str:
        """Upload weights, tokenizer, config (with the prompt) and a model card; returns the commit URL."""
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            return push_folder(tmp, repo_id, private, token, commit_message, api)


def _local_or_hub(path_or_repo, revision: Optional[str], token: Optional[str]) -> Path:
    """A prompt classifier's folder, local or downloaded (JSON, safetensors, vocab, card), with a readable config."""
    path = fetch_folder(path_or_repo, revision, token, ["*.json", "*.safetensors", "*.txt", "*.model", "*.md"])
    cfg_path = path / "config.json"
    if not cfg_path.is_file() and not (path / "adapter_config.json").is_file():
        raise MtftError(f"{path} is not a model folder (no config.json)")
    if cfg_path.is_file():
        try:
            json.loads(cfg_path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:
            raise MtftError(f"{cfg_path}: not valid JSON ({' '.join(str(exc).split())[:200]})") from None
    return path


def _load_adapters(path: Path, trust_remote_code: bool):
    """(LoRA-adapted masked LM, prompt metadata) of a folder saved with ``--use_lora``."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForMaskedLM

    base_name = PeftConfig.from_pretrained(path).base_model_name_or_path
    meta_file = path / "prompt_config.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else None
    base = AutoModelForMaskedLM.from_pretrained(base_name, trust_remote_code=trust_remote_code)
    return PeftModel.from_pretrained(base, path), meta


def _load_full(path: Path, trust_remote_code: bool):
    """(masked LM, prompt metadata from its config) of a full classifier folder; safetensors only."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    from ...models import quiet_load_report

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    if not any(path.glob("*.safetensors")):
        raise MtftError(f"{path}: no safetensors weights (only safetensors are loaded)")
    with quiet_load_report():
        mlm, info = AutoModelForMaskedLM.from_pretrained(
            path, trust_remote_code=trust_remote_code, use_safetensors=True, output_loading_info=True
        )
    n_params = len(mlm.state_dict())
    missing = [k for k in info.get("missing_keys", []) if "predictions" not in k and "lm_head" not in k]
    if missing and len(missing) > n_params // 2:
        raise MtftError(
            f"{path}: its weights do not match the architecture in its config "
            f"({config.architectures}); {len(missing)} of {n_params} tensors are missing"
        )
    return mlm, getattr(config, CONFIG_KEY, None)


def save_prompt_classifier(
    model: PromptForMaskedLM,
    tokenizer,
    task: TaskSpec,
    prompt: Prompt,
    save_directory: Union[str, os.PathLike],
    extra: Optional[Dict] = None,
    model_card: bool = True,
):
    """Write the artifact: safetensors weights, tokenizer, config.json with the prompt, model card."""
    out = Path(save_directory)
    out.mkdir(parents=True, exist_ok=True)
    meta = prompt_metadata(
        task, prompt, {k: v for k, v in (extra or {}).items() if k not in prompt_metadata(task, prompt)}
    )
    mlm = model.mlm
    is_peft = hasattr(mlm, "peft_config")
    if is_peft:  # LoRA adapters: the prompt goes next to adapter_config.json
        mlm.save_pretrained(out)
        (out / "prompt_config.json").write_text(json.dumps(meta, indent=2, default=str))
    else:
        setattr(mlm.config, CONFIG_KEY, meta)
        try:
            mlm.save_pretrained(out, safe_serialization=True)
        finally:
            delattr(mlm.config, CONFIG_KEY)
    tokenizer.save_pretrained(out)
    if model_card:
        (out / CARD_NAME).write_text(model_card_text(meta), encoding="utf-8")
    return out


def _card_predict_line(meta: Dict) -> str:
    """The how-to-load call, with an input of the task's own kind (one text or a pair)."""
    words = ", ".join(f"{k!r} ({v})" for k, v in meta["label_words"].items())
    comment = f"  # -> one of the labels {words}" if not meta.get("regression") else "  # -> a score"
    example = meta.get("example") or {}
    a = json.dumps(example.get("text_a") or f"<a {meta['task']} input text>", ensure_ascii=False)
    if meta.get("num_sentences") == 2:
        b = json.dumps(example.get("text_b") or "<its second sentence>", ensure_ascii=False)
        return f"clf.predict([{a}], text_pairs=[{b}], return_probabilities=True){comment}"
    return f"clf.predict([{a}], return_probabilities=True){comment}"


def model_card_text(meta: Dict) -> str:
    """A model card: base model, task, prompt, protocol, sources, scores, how to load, environment."""
    base = meta.get("base_model") or "unknown"
    scores = meta.get("scores") or {}
    mt = meta.get("multitask") or {}
    env = meta.get("env") or {}
    words = ", ".join(f"`{k}` → `{v}`" for k, v in meta["label_words"].items())
    front = {
        "library_name": "transformers",
        "pipeline_tag": "fill-mask",
        "tags": "[mtft-nlp, few-shot, prompt-based-finetuning, lm-bff]",
        "base_model": base if base != "unknown" and not os.path.isabs(str(base)) else None,
    }
    lines = [
        f"Finetuned with [mtft-nlp](https://pypi.org/project/mtft-nlp/) (LM-BFF prompt-based finetuning) from "
        f"`{base}`.",
        "",
        "## Prompt",
        "",
        f"- template: `{meta['template']}`",
        f"- label words: {words}",
        f"- labels: {', '.join(meta['labels'])}; metric: {meta['metric']}",
        "",
        "## Training protocol",
        "",
        f"- k-shot: K = {meta.get('k', 16)} examples per class, split seed {meta.get('seed', '?')} "
        "(LM-BFF splits; train and dev sets of K x classes each)",
        f"- steps: {meta.get('max_steps', '?')}, learning rate {meta.get('learning_rate', '?')}, "
        f"batch {meta.get('train_batch_size', '?')}; best checkpoint chosen on the k-shot dev set",
    ]
    if mt:
        lines.append(
            f"- multitask stage first: target {mt.get('target')}, sources {mt.get('sources_origin')}, "
            f"sampler {mt.get('sampler')}, {mt.get('max_steps')} steps"
        )
    lines += ["", "## Scores", ""]
    if scores:
        lines += [f"| split | {meta['metric']} |", "|---|---|"] + [f"| {k} | {v:.4f} |" for k, v in scores.items()]
    else:
        lines.append("not recorded")
    if meta.get("embedded_default_model"):
        lines += [
            "",
            "> Base model is the packaged all-MiniLM-L6-v2, which has no pretrained MLM head: scores are far "
            "below RoBERTa-large's and zero-shot prompting is at chance.",
        ]
    lines += [
        "",
        "## How to load",
        "",
        "```python",
        "from mtft_nlp import PromptClassifier",
        'clf = PromptClassifier.from_pretrained("<this folder or repo id>")',
        _card_predict_line(meta),
        "```",
        "",
        "The folder is also a plain masked LM: `AutoModelForMaskedLM.from_pretrained(...)`.",
        "",
        "## Environment",
        "",
    ]
    lines += [
        f"- {k}: {v}" for k, v in env.items() if k in ("mtft_nlp", "torch", "transformers", "device", "git_revision")
    ] or ["- not recorded"]
    return model_card(front, f"Prompt-based few-shot classifier for {meta['task']}", lines)
