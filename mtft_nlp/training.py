"""Zero-shot evaluation and prompt-based finetuning through HuggingFace ``Trainer``.

The training loop is the ``Trainer``'s own; this module adds

* :class:`BestDevCallback`: keeps an in-memory copy of the weights with the best dev score
  (strict improvement, compared as numbers) and restores it when training ends, so no
  checkpoint is written per evaluation;
* argument dataclasses with the LM-BFF protocol as defaults (``max_steps`` 1000, dev
  evaluation every 100 steps, AdamW, linear decay, no warmup, weight decay 0);
* :func:`run_prompt_experiment`: data -> features -> model -> Trainer -> ``results.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_utils import EvalLoopOutput, EvalPrediction

from .data import DEFAULT_K, check_k, check_seed, default_data_dir, load_files, load_hub, load_kshot
from .features import FeatureDataset, PromptCollator, build_features
from .metrics import compute_metrics
from .modeling import (PromptForMaskedLM, apply_lora, is_default_model, load_masked_lm, multitask_metadata,
                       predictions_from_logits, resolve_model_name)
from .rows import row_for_start
from .results import atomic_write_json, environment
from .tasks import MtftError, TaskSpec, get_task
from .templates import Prompt, PromptEncoder, load_prompt

logger = logging.getLogger(__name__)

# Defaults for the embedded MiniLM, chosen on the k-shot *dev* sets (docs/RESULTS.md, "Choosing
# the defaults"); the paper's settings are --paper_hparams (batch 2, lr 1e-5).
DEFAULT_LR = 3e-4
DEFAULT_BATCH = 8
PAPER_LR = 1e-5
PAPER_BATCH = 2
LMBFF_GRID = [(lr, bs) for lr in (1e-5, 2e-5, 5e-5) for bs in (2, 4, 8)]


def _default_ddp_backend() -> Optional[str]:
    """torchrun on CPU: without an explicit backend accelerate may start independent processes."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        return "gloo"
    return None


@dataclass
class ModelArguments:
    _argument_group_name = "Model (mtft-nlp)"

    model_name_or_path: str = field(
        default="minilm",
        metadata={"help": "Masked LM: a Hub id (roberta-large), a local folder, or 'minilm' for the packaged "
                          "all-MiniLM-L6-v2 (no pretrained MLM head: zero-shot is at chance with it)."})
    config_overrides: Optional[str] = field(
        default=None,
        metadata={"help": "Config overrides as 'key=value,key=value', e.g. "
                          "'hidden_dropout_prob=0,attention_probs_dropout_prob=0'."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom modelling code from the Hub (off by default)."})
    use_lora: bool = field(default=False, metadata={"help": "Train LoRA adapters (peft) instead of all weights."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (scaling = alpha / r)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout."})
    lora_target_modules: Optional[str] = field(default=None, metadata={"help": "Comma-separated modules to adapt (default: peft's default for the architecture, e.g. query,value)."})
    lora_modules_to_save: Optional[str] = field(default=None, metadata={"help": "Comma-separated modules trained in full next to the adapters, e.g. 'cls.predictions.transform' for the MiniLM's untrained head."})
    lora_merge: bool = field(default=False, metadata={"help": "Save the model with the adapters merged into the weights (a plain HF folder) instead of adapters only."})
    method: str = field(default="auto", metadata={"help": "Adaptation method: 'prompt' (LM-BFF, through the masked LM's head), 'embedding' (a linear head on a sentence encoder's embedding), 'setfit' (the SetFit peer), or 'auto': embedding for a sentence-transformers model (the packaged MiniLM), prompt otherwise.", "choices": ["auto", "prompt", "embedding", "setfit"]})
    head_init: str = field(default="random", metadata={"help": "Initialisation of MLM-head weights missing from the checkpoint (the packaged MiniLM has none): 'random' or 'identity'.", "choices": ["random", "identity"]})
    allow_pickle: bool = field(default=False, metadata={"help": "Also load pickled weights (pytorch_model.bin) from a model folder without safetensors; refused by default."})


@dataclass
class PromptArguments:
    _argument_group_name = "Task, prompt and data (mtft-nlp)"

    task_name: Optional[str] = field(default=None, metadata={"help": "Task name (case-insensitive): SST-2, sst-5, mr, cr, mpqa, subj, trec, CoLA, MNLI, MNLI-mm, SNLI, QNLI, RTE, MRPC, QQP, STS-B."})
    task_file: Optional[str] = field(default=None, metadata={"help": "A task YAML file (docs/TASKS.md) instead of a packaged task."})
    prompt: Optional[str] = field(default=None, metadata={"help": "Name of a prompt in the task's prompt file (default: its 'default')."})
    prompt_file: Optional[str] = field(default=None, metadata={"help": "A prompt YAML file (docs/PROMPTS.md) instead of prompts/<task>.yaml."})
    template: Optional[str] = field(default=None, metadata={"help": "Override the template, e.g. '*cls**sent_0*_It_was*mask*.*sep+*'."})
    label_words: Optional[str] = field(default=None, metadata={"help": "Override the label words: 'label:word,label:word', e.g. '0:terrible,1:great'."})
    data_dir: str = field(default_factory=default_data_dir, metadata={"help": "A root holding original/ (the split for --seed is made in memory), or an LM-BFF k-shot split folder with train/dev/test files (used as is). Default: $MTFT_NLP_DATA_DIR or ../shared/data."})
    k: int = field(default=DEFAULT_K, metadata={"help": "Examples per class in the k-shot train and dev sets."})
    dataset_name: Optional[str] = field(default=None, metadata={"help": "Read the task from the Hub ('hub' uses the task file's Hub source) or from a save_to_disk folder."})
    dataset_config_name: Optional[str] = field(default=None, metadata={"help": "Hub dataset configuration."})
    train_file: Optional[str] = field(default=None, metadata={"help": "CSV/TSV (with header) or JSONL training file."})
    validation_file: Optional[str] = field(default=None, metadata={"help": "CSV/JSONL dev file; without it the k-shot dev set is sampled from --train_file."})
    test_file: Optional[str] = field(default=None, metadata={"help": "CSV/JSONL test file."})
    text_a_column: str = field(default="text_a", metadata={"help": "Column of the first sentence in CSV/JSONL files."})
    text_b_column: Optional[str] = field(default=None, metadata={"help": "Column of the second sentence in CSV/JSONL files."})
    label_column: str = field(default="label", metadata={"help": "Column of the label in CSV/JSONL files."})
    max_seq_length: Optional[int] = field(default=None, metadata={"help": "Override the task's max_seq_length."})
    first_sent_limit: Optional[int] = field(default=None, metadata={"help": "Override the task's token limit for sentence 0."})
    other_sent_limit: Optional[int] = field(default=None, metadata={"help": "Override the task's token limit for other sentences."})
    max_test_examples: Optional[int] = field(default=None, metadata={"help": "Evaluate on a fixed random subset of the test set (same subset for every seed)."})
    zero_shot: bool = field(default=False, metadata={"help": "Evaluate the prompt without training."})
    row: Optional[str] = field(default=None, metadata={"help": "Table row recorded in results.json (default: zero-shot or pbft)."})
    paper_hparams: bool = field(default=False, metadata={"help": "The multitask study's settings: batch 2, learning rate 1e-5 (overrides both)."})
    lmbff_grid: bool = field(default=False, metadata={"help": "LM-BFF's grid: lr {1e-5,2e-5,5e-5} x batch {2,4,8}, best on dev per seed."})
    save_model: bool = field(default=True, metadata={"help": "Save the best-dev model to <output_dir>/best (HF folder + prompt)."})
    save_predictions: bool = field(default=False, metadata={"help": "Write test predictions to <output_dir>/test_predictions.jsonl."})


@dataclass
class PromptTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with the LM-BFF protocol as defaults; every Trainer flag still works."""

    _argument_group_name = "Training (transformers TrainingArguments, LM-BFF defaults)"

    seed: int = field(default=42, metadata={"help": "Split seed: picks the k-shot train/dev split (LM-BFF: 13 21 42 87 100) and seeds training."})
    max_steps: int = field(default=1000, metadata={"help": "Optimizer steps (LM-BFF: 1000)."})
    learning_rate: float = field(default=DEFAULT_LR, metadata={"help": f"AdamW learning rate (default {DEFAULT_LR}, chosen for the embedded MiniLM on dev sets; paper: 1e-5)."})
    per_device_train_batch_size: int = field(default=DEFAULT_BATCH, metadata={"help": f"Batch size per device (default {DEFAULT_BATCH}; paper: 2)."})
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "Evaluation batch size per device (length-sorted batches)."})
    eval_strategy: str = field(default="steps", metadata={"help": "Evaluate on the k-shot dev set every eval_steps."})
    eval_steps: Optional[float] = field(default=100, metadata={"help": "Dev evaluation interval (LM-BFF: 100)."})
    save_strategy: str = field(default="no", metadata={"help": "The best-dev weights are kept in memory; set 'steps' to also write checkpoints (needed for --resume_from_checkpoint)."})
    logging_steps: float = field(default=100, metadata={"help": "Log the training loss every N steps."})
    warmup_steps: float = field(default=0, metadata={"help": "No warmup (LM-BFF)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (LM-BFF: 0)."})
    report_to: Optional[str] = field(default="none", metadata={"help": "Trainer integrations (tensorboard, wandb, ...)."})

    def __post_init__(self):
        # torchrun on CPU: accelerate only sets up real DDP (gloo) when told to use the CPU; otherwise
        # the processes would train independently.
        if _default_ddp_backend() == "gloo":
            self.use_cpu = True
            self.ddp_backend = self.ddp_backend or "gloo"
        if not torch.cuda.is_available():
            self.dataloader_pin_memory = False
        super().__post_init__()


class BestDevCallback(TrainerCallback):
    """Keep the weights with the best dev score in memory; restore them at the end of training.

    Improvement is strict and numeric (``score > best``), so a negative Matthews correlation
    is compared correctly and ties keep the earlier checkpoint. Works on any Trainer whose
    ``compute_metrics`` reports ``metric_name``.
    """

    def __init__(self, metric_name: str = "eval_score"):
        self.metric_name = metric_name
        self.best_score: Optional[float] = None
        self.best_step: Optional[int] = None
        self._state: Optional[Dict[str, torch.Tensor]] = None
        self.history: List[Dict[str, float]] = []

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if not metrics or self.metric_name not in metrics or model is None:
            return
        score = float(metrics[self.metric_name])
        self.history.append({"step": state.global_step, "score": score})
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_step = score, state.global_step
            self._state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.restore(model)

    def restore(self, model):
        if self._state is not None and model is not None:
            model.load_state_dict(self._state)


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


class PromptTrainer(Trainer):
    """``Trainer`` with a process-count-independent train order and exact distributed metrics.

    The loop is the Trainer's own. Evaluation drops the samples that distributed sharding
    repeats to even out the last batches before metrics are computed, so the dev/test
    metrics of a 2-process run are computed over exactly the dataset.
    """

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

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        compute, self.compute_metrics = self.compute_metrics, None
        try:
            out = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
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


def parse_label_words(spec: str) -> Dict[str, str]:
    out = {}
    for item in spec.split(","):
        if ":" not in item:
            raise MtftError(f"--label_words: expected 'label:word' items, got {item!r}")
        lab, word = item.split(":", 1)
        out[lab.strip()] = word.strip()
    return out


def resolve_prompt(task: TaskSpec, args: PromptArguments) -> Prompt:
    if args.template or args.label_words:
        base = load_prompt(task, args.prompt, args.prompt_file) if not (args.template and args.label_words) else None
        prompt = Prompt(template=args.template or base.template,
                        label_words=parse_label_words(args.label_words) if args.label_words else base.label_words,
                        name="command-line")
        prompt.words_in_order(task)
        return prompt
    return load_prompt(task, args.prompt, args.prompt_file)


def load_task_data(task: TaskSpec, args: PromptArguments, seed: int) -> Dict[str, List[Dict]]:
    if args.train_file or args.test_file:
        return load_files(task, seed, args.k, args.train_file, args.validation_file, args.test_file,
                          args.text_a_column, args.text_b_column, args.label_column, args.max_test_examples)
    if args.dataset_name:
        return load_hub(task, seed, args.k, None if args.dataset_name == "hub" else args.dataset_name,
                        args.dataset_config_name, args.max_test_examples)
    return load_kshot(task, args.data_dir, seed, args.k, max_test_examples=args.max_test_examples)


def _config_kwargs(model_args: ModelArguments) -> Dict:
    kwargs = {}
    if model_args.config_overrides:
        for item in model_args.config_overrides.split(","):
            if "=" not in item:
                raise MtftError(f"--config_overrides: expected key=value, got {item!r}")
            k, v = item.split("=", 1)
            try:
                kwargs[k.strip()] = json.loads(v)
            except json.JSONDecodeError:
                kwargs[k.strip()] = v
    if model_args.trust_remote_code:
        kwargs["trust_remote_code"] = True
    return kwargs


def load_model(model_args: ModelArguments):
    """The masked LM of ``model_args``, with LoRA adapters when ``--use_lora``."""
    mlm, _ = load_masked_lm(model_args.model_name_or_path, model_args.head_init,
                            allow_pickle=getattr(model_args, "allow_pickle", False), **_config_kwargs(model_args))
    if model_args.use_lora:
        mlm = apply_lora(mlm, model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout,
                         model_args.lora_target_modules, model_args.lora_modules_to_save)
        trainable = sum(p.numel() for p in mlm.parameters() if p.requires_grad)
        total = sum(p.numel() for p in mlm.parameters())
        logger.info("LoRA: %d of %d parameters trainable (%.2f%%)", trainable, total, 100 * trainable / total)
    return mlm


def make_compute_metrics(task: TaskSpec):
    low, high = (task.regression["low"], task.regression["high"]) if task.is_regression else (0.0, 1.0)

    def compute(eval_pred):
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        preds = predictions_from_logits(logits, task.is_regression, low, high)
        return compute_metrics(task.metric, preds, eval_pred.label_ids)

    return compute


@dataclass
class PreparedRun:
    task: TaskSpec
    prompt: Prompt
    tokenizer: object
    encoder: PromptEncoder
    train: FeatureDataset
    dev: FeatureDataset
    test: FeatureDataset


def load_tokenizer_checked(model_args: ModelArguments):
    """The tokenizer of ``--model_name_or_path``; a missing or broken model folder is an :class:`MtftError`."""
    from transformers import AutoConfig, AutoTokenizer

    from .modeling import check_weights_format

    name = model_args.model_name_or_path
    path = resolve_model_name(name)
    local = os.path.exists(path) or path.startswith((".", "/", "~")) or path.count("/") > 1
    if local and not os.path.isdir(path):
        raise MtftError(f"--model_name_or_path {name}: folder not found" if not os.path.exists(path)
                        else f"--model_name_or_path {name}: not a folder")
    check_weights_format(path, getattr(model_args, "allow_pickle", False))
    try:
        if local and not os.path.isfile(os.path.join(path, "config.json")) and \
                not os.path.isfile(os.path.join(path, "adapter_config.json")):
            raise MtftError(f"--model_name_or_path {name}: no config.json in the folder (not a HF model folder)")
        if local and os.path.isfile(os.path.join(path, "config.json")):
            AutoConfig.from_pretrained(path, trust_remote_code=model_args.trust_remote_code)
        return AutoTokenizer.from_pretrained(path, trust_remote_code=model_args.trust_remote_code)
    except MtftError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = " ".join(str(exc).split())[:300]
        where = "the folder" if local else "the Hub (it is not a local folder; no network, or no such repo?)"
        raise MtftError(f"--model_name_or_path {name}: cannot load the model from {where}: {first}") from None


def prepare(model_args: ModelArguments, args: PromptArguments, seed: int, tokenizer=None) -> PreparedRun:
    """Everything that can fail on bad input, before a model is loaded or a file is written."""
    if not args.task_name and not args.task_file:
        raise MtftError("--task_name (or --task_file) is required")
    task = get_task(args.task_file or args.task_name)
    check_k(args.k)
    check_seed(seed)
    overrides = {k: v for k, v in (("max_seq_length", args.max_seq_length), ("first_sent_limit", args.first_sent_limit),
                                    ("other_sent_limit", args.other_sent_limit)) if v is not None}
    if any(v < 1 for v in overrides.values()):
        raise MtftError(f"length limits must be positive: {overrides}")
    if overrides:  # carried by the task, so that the saved classifier records them
        task = dataclasses.replace(task, **overrides)
    prompt = resolve_prompt(task, args)
    if tokenizer is None:
        tokenizer = load_tokenizer_checked(model_args)
    encoder = PromptEncoder(task, prompt, tokenizer)
    data = load_task_data(task, args, seed)
    feats = {name: build_features(encoder, exs) for name, exs in data.items()}
    return PreparedRun(task, prompt, tokenizer, encoder,
                       FeatureDataset(feats["train"]),
                       FeatureDataset(feats["dev"], sort_by_length=True),
                       FeatureDataset(feats["test"], sort_by_length=True))


def train_and_evaluate(model_args: ModelArguments, args: PromptArguments, training_args: PromptTrainingArguments,
                       prep: PreparedRun, callbacks=None) -> Dict:
    """One zero-shot evaluation or one prompt-based finetuning run; returns the result record."""
    task = prep.task
    set_seed(training_args.seed)  # the seed also fixes any freshly initialised head weights
    mlm = load_model(model_args)
    model = PromptForMaskedLM(mlm)
    best = BestDevCallback()
    training_args.label_names = ["labels"]  # not label_word_ids, which Trainer would guess from the signature
    trainer = PromptTrainer(
        model=model,
        args=training_args,
        train_dataset=prep.train if not args.zero_shot else None,
        eval_dataset=prep.dev,
        data_collator=PromptCollator(prep.tokenizer.pad_token_id),
        compute_metrics=make_compute_metrics(task),
        callbacks=[best] + list(callbacks or []),
    )
    train_seconds = 0.0
    if not args.zero_shot:
        t0 = time.perf_counter()
        trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        train_seconds = time.perf_counter() - t0
        if best.best_score is None:  # no evaluation happened (eval_strategy 'no'): score the final weights
            best.on_evaluate(training_args, trainer.state, None, trainer.evaluate(), model)
    t0 = time.perf_counter()
    if args.zero_shot:
        dev_out = trainer.predict(prep.dev, metric_key_prefix="dev")
        dev_score = float(dev_out.metrics["dev_score"])
    else:
        dev_score = float(best.best_score)
    test_out = trainer.predict(prep.test, metric_key_prefix="test")
    eval_seconds = time.perf_counter() - t0
    test_metrics = {k[len("test_"):]: v for k, v in test_out.metrics.items() if k.startswith("test_")}
    record = {
        "task": task.name,
        "row": args.row or row_for_start("zero-shot" if args.zero_shot else "pbft",
                                         multitask_metadata(model_args.model_name_or_path)),
        "multitask": _multitask_summary(model_args.model_name_or_path),
        "seed": training_args.seed,
        "k": args.k,
        "metric": task.metric,
        "dev_score": dev_score,
        "test_score": float(test_metrics["score"]),
        "test_metrics": {k: float(v) for k, v in test_metrics.items() if k in ("acc", "f1", "mcc", "pearson", "spearman")},
        "zero_shot": bool(args.zero_shot),
        "model": model_args.model_name_or_path,
        "model_path": resolve_model_name(model_args.model_name_or_path),
        "embedded_default_model": is_default_model(model_args.model_name_or_path),
        "prompt": prep.prompt.to_dict(),
        "best_step": best.best_step,
        "dev_history": best.history,
        "n_train": len(prep.train), "n_dev": len(prep.dev), "n_test": len(prep.test),
        "learning_rate": training_args.learning_rate,
        "train_batch_size": training_args.per_device_train_batch_size * max(1, training_args.world_size),
        "max_steps": training_args.max_steps,
        "world_size": training_args.world_size,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "test_examples_per_second": len(prep.test) / max(test_out.metrics.get("test_runtime", eval_seconds), 1e-9),
        "peak_memory_mb": peak_memory_mb(),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    logits = test_out.predictions[0] if isinstance(test_out.predictions, tuple) else test_out.predictions
    return {"record": record, "trainer": trainer, "model": model, "test_logits": logits}


def _multitask_summary(model_name: Optional[str]) -> Optional[Dict]:
    """What results.json and the model card record of a multitask starting point."""
    meta = multitask_metadata(model_name)
    if meta is None:
        return None
    out = {k: meta.get(k) for k in ("target", "sources_origin", "sampler", "max_steps", "learning_rate", "split_seed")}
    out["sources"] = [s["task"] for s in meta.get("sources", [])]
    return out


def save_prompt_model(model: PromptForMaskedLM, tokenizer, task: TaskSpec, prompt: Prompt, out_dir: Path, record: Dict,
                      merge_lora: bool = False):
    """The best-dev model as a :class:`~mtft_nlp.hub.PromptClassifier` artifact (weights, tokenizer, prompt, card)."""
    from .hub import save_prompt_classifier

    if merge_lora and hasattr(model.mlm, "merge_and_unload"):
        model = PromptForMaskedLM(model.mlm.merge_and_unload())
    extra = {k: record.get(k) for k in ("seed", "k", "max_steps", "learning_rate", "train_batch_size", "multitask",
                                        "embedded_default_model", "env")}
    extra["base_model"] = record.get("model")
    extra["scores"] = {"dev": record["dev_score"], "test": record["test_score"]}
    return save_prompt_classifier(model, tokenizer, task, prompt, out_dir, extra)


def run_prompt_experiment(model_args: ModelArguments, args: PromptArguments, training_args: PromptTrainingArguments) -> Dict:
    """The whole single-task run; writes ``<output_dir>/results.json`` last, only on success."""
    if not training_args.output_dir:
        raise MtftError("--output_dir is required")
    if os.path.exists(training_args.output_dir) and not os.path.isdir(training_args.output_dir):
        raise MtftError(f"--output_dir {training_args.output_dir} is an existing file, not a folder")
    if training_args.max_steps == 0 and not args.zero_shot:
        raise MtftError("--max_steps 0 would train nothing: use --zero_shot to evaluate the prompt without training")
    if args.paper_hparams:
        training_args.learning_rate, training_args.per_device_train_batch_size = PAPER_LR, PAPER_BATCH
    # --push_to_hub uploads the best-dev classifier folder at the end (not Trainer checkpoints)
    push_repo = training_args.hub_model_id if training_args.push_to_hub else None
    if training_args.push_to_hub:
        if not push_repo:
            raise MtftError("--push_to_hub needs --hub_model_id user/name")
        if args.zero_shot or not args.save_model:
            raise MtftError("--push_to_hub uploads the trained model: not with --zero_shot or --save_model false")
        training_args.push_to_hub = False
    prep = prepare(model_args, args, training_args.seed)
    logger.info("task %s, prompt %r, example: %s", prep.task.name, prep.prompt.template,
                prep.tokenizer.decode(prep.train[0]["input_ids"]) if len(prep.train) else "-")
    if is_default_model(model_args.model_name_or_path):
        logger.warning("Using the embedded all-MiniLM-L6-v2: it has no pretrained MLM head, so zero-shot prompting is "
                       "at chance and finetuned scores are far below RoBERTa-large's (see README).")
    configs = [(training_args.learning_rate, training_args.per_device_train_batch_size)]
    if args.lmbff_grid and not args.zero_shot:
        configs = LMBFF_GRID
    best_run, grid = None, []
    for lr, bs in configs:
        targs = dataclasses.replace(training_args, learning_rate=lr, per_device_train_batch_size=bs) if len(configs) > 1 else training_args
        run = train_and_evaluate(model_args, args, targs, prep)
        grid.append({"learning_rate": lr, "batch_size": bs, "dev_score": run["record"]["dev_score"],
                     "test_score": run["record"]["test_score"], "train_seconds": run["record"]["train_seconds"]})
        if best_run is None or run["record"]["dev_score"] > best_run["record"]["dev_score"]:
            best_run = run
        else:
            del run
    record = best_run["record"]
    if len(grid) > 1:
        record["grid"] = grid
        record["train_seconds"] = sum(g["train_seconds"] for g in grid)
    trainer = best_run["trainer"]
    record["args"] = {"model": dataclasses.asdict(model_args), "prompt": dataclasses.asdict(args),
                      "training": {k: v for k, v in training_args.to_dict().items() if not k.startswith("_")}}
    record["env"] = environment()
    out = Path(training_args.output_dir)
    if trainer.is_world_process_zero():
        if args.save_predictions:
            preds = predictions_from_logits(best_run["test_logits"], prep.task.is_regression,
                                            *(prep.task.regression["low"], prep.task.regression["high"]) if prep.task.is_regression else (0, 1))
            preds = prep.test.unsort(list(preds))
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "test_predictions.jsonl", "w", encoding="utf-8") as f:
                for p in preds:
                    f.write(json.dumps({"prediction": float(p) if prep.task.is_regression else prep.task.labels[int(p)]}) + "\n")
        if args.save_model and not args.zero_shot:
            save_prompt_model(best_run["model"], prep.tokenizer, prep.task, prep.prompt, out / "best", record,
                              merge_lora=model_args.lora_merge)
        atomic_write_json(out / "results.json", record)
        if push_repo:
            from .hub import push_folder

            url = push_folder(out / "best", push_repo, private=bool(training_args.hub_private_repo),
                              token=training_args.hub_token)
            logger.info("pushed %s to %s", out / "best", url)
    logger.info("%s %s seed %s: dev %.4f test %.4f (%s)", record["task"], record["row"], record["seed"],
                record["dev_score"], record["test_score"], record["metric"])
    return record
