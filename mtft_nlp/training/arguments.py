"""The argument dataclasses of every entry point, in one place (``HfArgumentParser`` reads them).

* :class:`ModelArguments`: which model, which adaptation method, LoRA, loading options;
* :class:`TaskArguments`: task, prompt, data and what to record, for single runs of either method;
* :class:`FewShotTrainingArguments`: ``TrainingArguments`` with the LM-BFF protocol as defaults (``max_steps`` 1000,
  dev evaluation every 100 steps, AdamW, linear decay, no warmup, weight decay 0); a method's own defaults
  (``Method.training_defaults``) are applied by the command line when that method is chosen;
* :class:`MultitaskArguments`, :class:`MultitaskTrainingArguments`: the multitask stage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional

import torch
from transformers import TrainingArguments

from ..checks import AT_LEAST_0, AT_LEAST_1, FRACTION, POSITIVE, SEED, check_numbers
from ..data.kshot import DEFAULT_K, default_data_dir
from ..methods.embedding.arguments import ObjectiveArguments, objective_field

__all__ = [
    "ModelArguments",
    "TaskArguments",
    "FewShotTrainingArguments",
    "MultitaskArguments",
    "MultitaskTrainingArguments",
    "DEFAULT_LR",
    "DEFAULT_BATCH",
    "PAPER_LR",
    "PAPER_BATCH",
    "LMBFF_GRID",
    "SAMPLERS",
]

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
        metadata={
            "help": "Masked LM: a Hub id (roberta-large), a local folder, or 'minilm' for the packaged "
            "all-MiniLM-L6-v2 (no pretrained MLM head: zero-shot is at chance with it)."
        },
    )
    config_overrides: Optional[str] = field(
        default=None,
        metadata={
            "help": "Config overrides as 'key=value,key=value', e.g. "
            "'hidden_dropout_prob=0,attention_probs_dropout_prob=0'."
        },
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom modelling code from the Hub (off by default)."}
    )
    use_lora: bool = field(default=False, metadata={"help": "Train LoRA adapters (peft) instead of all weights."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (scaling = alpha / r)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout."})
    lora_target_modules: Optional[str] = field(
        default=None,
        metadata={
            "help": "Comma-separated modules to adapt (default: peft's default for the architecture, e.g. "
            "query,value)."
        },
    )
    lora_modules_to_save: Optional[str] = field(
        default=None,
        metadata={
            "help": "Comma-separated modules trained in full next to the adapters, e.g. 'cls.predictions.transform' "
            "for the MiniLM's untrained head."
        },
    )
    lora_merge: bool = field(
        default=False,
        metadata={
            "help": "Save the model with the adapters merged into the weights (a plain HF folder) instead of "
            "adapters only."
        },
    )
    method: str = field(
        default="auto",
        metadata={
            "help": "Adaptation method: 'prompt' (LM-BFF, through the masked LM's head), 'embedding' (a linear head "
            "on a sentence encoder's embedding), 'setfit' (the SetFit peer), or 'auto': embedding for a "
            "sentence-transformers model (the packaged MiniLM), prompt otherwise. A method registered by a plug-in "
            "is chosen by its name.",
        },
    )
    head_init: str = field(
        default="random",
        metadata={
            "help": "Initialisation of MLM-head weights missing from the checkpoint (the packaged MiniLM has none): "
            "'random' or 'identity'.",
            "choices": ["random", "identity"],
        },
    )
    allow_pickle: bool = field(
        default=False,
        metadata={
            "help": "Also load pickled weights (pytorch_model.bin) from a model folder without safetensors; refused "
            "by default."
        },
    )

    def __post_init__(self):
        check_numbers(self, {"lora_r": AT_LEAST_1, "lora_alpha": POSITIVE, "lora_dropout": FRACTION})


@dataclass
class TaskArguments:
    _argument_group_name = "Task, prompt and data (mtft-nlp)"

    task_name: Optional[str] = field(
        default=None,
        metadata={
            "help": "Task name (case-insensitive): SST-2, sst-5, mr, cr, mpqa, subj, trec, CoLA, MNLI, MNLI-mm, "
            "SNLI, QNLI, RTE, MRPC, QQP, STS-B."
        },
    )
    task_file: Optional[str] = field(
        default=None, metadata={"help": "A task YAML file (docs/TASKS.md) instead of a packaged task."}
    )
    prompt: Optional[str] = field(
        default=None, metadata={"help": "Name of a prompt in the task's prompt file (default: its 'default')."}
    )
    prompt_file: Optional[str] = field(
        default=None, metadata={"help": "A prompt YAML file (docs/PROMPTS.md) instead of prompts/<task>.yaml."}
    )
    template: Optional[str] = field(
        default=None, metadata={"help": "Override the template, e.g. '*cls**sent_0*_It_was*mask*.*sep+*'."}
    )
    label_words: Optional[str] = field(
        default=None,
        metadata={"help": "Override the label words: 'label:word,label:word', e.g. '0:terrible,1:great'."},
    )
    data_dir: str = field(
        default_factory=default_data_dir,
        metadata={
            "help": "A root holding original/ (the split for --seed is made in memory), or an LM-BFF k-shot split "
            "folder with train/dev/test files (used as is). Default: $MTFT_NLP_DATA_DIR or ../shared/data."
        },
    )
    k: int = field(default=DEFAULT_K, metadata={"help": "Examples per class in the k-shot train and dev sets."})
    dataset_name: Optional[str] = field(
        default=None,
        metadata={
            "help": "Read the task from the Hub ('hub' uses the task file's Hub source) or from a save_to_disk folder."
        },
    )
    dataset_config_name: Optional[str] = field(default=None, metadata={"help": "Hub dataset configuration."})
    train_file: Optional[str] = field(default=None, metadata={"help": "CSV/TSV (with header) or JSONL training file."})
    validation_file: Optional[str] = field(
        default=None,
        metadata={"help": "CSV/JSONL dev file; without it the k-shot dev set is sampled from --train_file."},
    )
    test_file: Optional[str] = field(default=None, metadata={"help": "CSV/JSONL test file."})
    text_a_column: str = field(default="text_a", metadata={"help": "Column of the first sentence in CSV/JSONL files."})
    text_b_column: Optional[str] = field(
        default=None, metadata={"help": "Column of the second sentence in CSV/JSONL files."}
    )
    label_column: str = field(default="label", metadata={"help": "Column of the label in CSV/JSONL files."})
    max_seq_length: Optional[int] = field(default=None, metadata={"help": "Override the task's max_seq_length."})
    first_sent_limit: Optional[int] = field(
        default=None, metadata={"help": "Override the task's token limit for sentence 0."}
    )
    other_sent_limit: Optional[int] = field(
        default=None, metadata={"help": "Override the task's token limit for other sentences."}
    )
    max_test_examples: Optional[int] = field(
        default=None,
        metadata={"help": "Evaluate on a fixed random subset of the test set (same subset for every seed)."},
    )
    zero_shot: bool = field(default=False, metadata={"help": "Evaluate the prompt without training."})
    row: Optional[str] = field(
        default=None, metadata={"help": "Table row recorded in results.json (default: zero-shot or pbft)."}
    )
    paper_hparams: bool = field(
        default=False,
        metadata={"help": "The multitask study's settings: batch 2, learning rate 1e-5 (overrides both)."},
    )
    lmbff_grid: bool = field(
        default=False, metadata={"help": "LM-BFF's grid: lr {1e-5,2e-5,5e-5} x batch {2,4,8}, best on dev per seed."}
    )
    save_model: bool = field(
        default=True, metadata={"help": "Save the best-dev model to <output_dir>/best (HF folder + prompt)."}
    )
    save_predictions: bool = field(
        default=False, metadata={"help": "Write test predictions to <output_dir>/test_predictions.jsonl."}
    )

    def __post_init__(self):
        names = ("k", "max_seq_length", "first_sent_limit", "other_sent_limit", "max_test_examples")
        check_numbers(self, dict.fromkeys(names, AT_LEAST_1))


@dataclass
class FewShotTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with the LM-BFF protocol as defaults; every Trainer flag still works."""

    _argument_group_name = "Training (transformers TrainingArguments, LM-BFF defaults)"

    seed: int = field(
        default=42,
        metadata={
            "help": "Split seed: picks the k-shot train/dev split (LM-BFF: 13 21 42 87 100) and seeds training."
        },
    )
    max_steps: int = field(default=1000, metadata={"help": "Optimizer steps (LM-BFF: 1000)."})
    learning_rate: float = field(
        default=DEFAULT_LR,
        metadata={
            "help": f"AdamW learning rate (default {DEFAULT_LR}, chosen for the embedded MiniLM on dev sets; paper: "
            f"1e-5)."
        },
    )
    per_device_train_batch_size: int = field(
        default=DEFAULT_BATCH, metadata={"help": f"Batch size per device (default {DEFAULT_BATCH}; paper: 2)."}
    )
    per_device_eval_batch_size: int = field(
        default=32, metadata={"help": "Evaluation batch size per device (length-sorted batches)."}
    )
    eval_strategy: str = field(default="steps", metadata={"help": "Evaluate on the k-shot dev set every eval_steps."})
    eval_steps: Optional[float] = field(default=100, metadata={"help": "Dev evaluation interval (LM-BFF: 100)."})
    save_strategy: str = field(
        default="no",
        metadata={
            "help": "The best-dev weights are kept in memory; set 'steps' to also write checkpoints (needed for "
            "--resume_from_checkpoint)."
        },
    )
    logging_steps: float = field(default=100, metadata={"help": "Log the training loss every N steps."})
    warmup_steps: float = field(default=0, metadata={"help": "No warmup (LM-BFF)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (LM-BFF: 0)."})
    report_to: Optional[str] = field(
        default="none", metadata={"help": "Trainer integrations (tensorboard, wandb, ...)."}
    )
    early_stopping_patience: Optional[int] = field(
        default=None,
        metadata={
            "help": "Stop training once the dev score has not improved for this many evaluations in a row (the "
            "best-dev weights are kept, as without it). Off by default."
        },
    )

    def __post_init__(self):
        # torchrun on CPU: accelerate only sets up real DDP (gloo) when told to use the CPU; otherwise
        # the processes would train independently.
        if _default_ddp_backend() == "gloo":
            self.use_cpu = True
            self.ddp_backend = self.ddp_backend or "gloo"
        if not torch.cuda.is_available():
            self.dataloader_pin_memory = False
        self._check_numbers()
        super().__post_init__()
        self._check_optimizer()

    def _check_optimizer(self):
        """An ``--optim`` whose package is missing: one error now, not a traceback once the model has loaded."""
        from transformers import Trainer

        try:
            Trainer.get_optimizer_cls_and_kwargs(self)
        except (ImportError, ValueError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if isinstance(exc, ImportError) or "install" in message or "import" in message:
                raise ValueError(f"--optim {self.optim.value}: {message}") from None
            # other ValueErrors (an optimizer that needs the model's modules) are the Trainer's to raise

    def _check_numbers(self):
        """Values the Trainer would take without a word or fail on late: one error naming the flag."""
        rules = {
            "seed": SEED,
            "learning_rate": POSITIVE,
            "max_steps": (lambda v: v >= -1, "a whole number of at least 0 (or -1: --num_train_epochs)"),
            "num_train_epochs": POSITIVE,
            "eval_steps": POSITIVE,
            "logging_steps": POSITIVE,
            "save_steps": POSITIVE,
            "eval_delay": AT_LEAST_0,
            "weight_decay": AT_LEAST_0,
            "warmup_steps": AT_LEAST_0,
            "max_grad_norm": AT_LEAST_0,
            "adam_beta1": FRACTION,
            "adam_beta2": FRACTION,
            "adam_epsilon": POSITIVE,
            "label_smoothing_factor": FRACTION,
            "neftune_noise_alpha": AT_LEAST_0,
            "gradient_accumulation_steps": AT_LEAST_1,
            "eval_accumulation_steps": AT_LEAST_1,
            "save_total_limit": AT_LEAST_1,
            "dataloader_num_workers": AT_LEAST_0,
            "ddp_timeout": POSITIVE,
            "ddp_bucket_cap_mb": POSITIVE,
            "per_device_eval_batch_size": AT_LEAST_1,
            "early_stopping_patience": AT_LEAST_1,
        }
        if self._derived_batch:  # the multitask stage: its sampler has no epochs, it runs max_steps steps
            rules["max_steps"] = AT_LEAST_1
            if self.early_stopping_patience is not None:
                raise ValueError(
                    "--early_stopping_patience: the multitask stage runs all its --max_steps steps (its dev "
                    "evaluations are per source task); the option is one of target finetuning"
                )
        rules["per_device_train_batch_size"] = (
            (
                lambda v: v == 0,
                "it left unset: the stage's batch is --examples_per_step over processes and accumulation",
            )
            if self._derived_batch
            else AT_LEAST_1
        )
        check_numbers(self, rules)

    _derived_batch = False  # the multitask stage derives its batch from --examples_per_step


SAMPLERS = ("uniform", "proportional", "temperature")


@dataclass
class MultitaskArguments(ObjectiveArguments):
    objective: str = objective_field(
        "cross_entropy",
        "The stage's loss: cross_entropy (each source's head, the reference; the only one of the prompt method), "
        "or for the embedding method supcon (supervised contrastive, positives the same class of the same source, "
        "over class-balanced batches of --tasks_per_step sources) or supcon+ce (plus the heads' cross-entropy).",
    )
    target: Optional[str] = field(
        default=None,
        metadata={"help": "Target task: left out of the sources, and its test set is checked for overlap."},
    )
    sources: List[str] = field(
        default_factory=lambda: ["all"],
        metadata={
            "help": "'all' (leave-one-out over the classification tasks), 'selected' (run Algorithm 1 for --target "
            "with the "
            "defaults of mtft-nlp select, on the sources' split seed and K; the selection is saved next to the "
            "checkpoint as selection.json), task names, or a selection JSON written by 'mtft-nlp select'."
        },
    )
    data_dir: str = field(
        default_factory=default_data_dir,
        metadata={"help": "Root holding original/ (default: $MTFT_NLP_DATA_DIR or ../shared/data)."},
    )
    target_data_dir: Optional[str] = field(
        default=None,
        metadata={
            "help": "Where the target's data is when it is not with the sources' (a user's own task): its test set "
            "is checked for overlap with the sources (default: --data_dir)."
        },
    )
    source_seed: int = field(
        default=42, metadata={"help": "Split seed of the sources' k-shot train sets (reference: 42)."}
    )
    pool_seeds: bool = field(
        default=False,
        metadata={
            "help": "Pool the k-shot train sets of the 5 split seeds (13, 21, 42, 87, 100), duplicates removed."
        },
    )
    source_k: int = field(default=DEFAULT_K, metadata={"help": "Examples per class of each source's train set."})
    sampler: str = field(
        default="uniform",
        metadata={
            "help": "Task sampling per example: uniform (reference), proportional (to train size) or temperature.",
            "choices": list(SAMPLERS),
        },
    )
    temperature: float = field(
        default=2.0, metadata={"help": "Temperature T of the temperature sampler: p ~ size^(1/T)."}
    )
    examples_per_step: int = field(
        default=10,
        metadata={"help": "Examples per optimizer step, over all processes and accumulation steps (reference: 10)."},
    )
    allow_overlap: bool = field(
        default=False,
        metadata={"help": "Keep source examples that share text with the target's test set (excluded by default)."},
    )
    eval_tasks: int = field(
        default=0, metadata={"help": "Evaluate only the first N sources' dev sets every eval_steps (0 = all)."}
    )
    tasks_per_step: int = field(
        default=2,
        metadata={"help": "Contrastive objectives: sources in each step's batch (each with every class present)."},
    )
    negatives_across_tasks: bool = field(
        default=True,
        metadata={
            "help": "Contrastive objectives: another source's examples in the batch are negatives of an anchor "
            "(false: only its own source's other classes are)."
        },
    )

    def __post_init__(self):
        self._check_objective()
        check_numbers(
            self,
            {
                "source_seed": SEED,
                "tasks_per_step": AT_LEAST_1,
                "examples_per_step": AT_LEAST_1,
                "source_k": AT_LEAST_1,
                "temperature": POSITIVE,
                "eval_tasks": AT_LEAST_0,
            },
        )


@dataclass
class MultitaskTrainingArguments(FewShotTrainingArguments):
    """The reference multitask stage: AdamW lr 1e-5, linear decay, no warmup, 1000 steps."""

    _derived_batch = True

    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate (reference: 1e-5)."})
    max_steps: int = field(default=1000, metadata={"help": "Optimizer steps (reference: 1000)."})
    per_device_train_batch_size: int = field(
        default=0, metadata={"help": "Derived from --examples_per_step, processes and accumulation steps; leave at 0."}
    )
    eval_steps: Optional[float] = field(
        default=100, metadata={"help": "Per-task dev loss/accuracy of the sources every N steps."}
    )
