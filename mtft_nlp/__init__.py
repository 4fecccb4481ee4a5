"""mtft-nlp: prompt-based few-shot finetuning (LM-BFF), multitask finetuning and task selection
for HuggingFace masked language models."""

__version__ = "0.1.0"

from .tasks import MtftError, TaskSpec, available_tasks, get_task  # noqa: E402
from .templates import Prompt, PromptEncoder, load_prompt  # noqa: E402

__all__ = ["MtftError", "TaskSpec", "available_tasks", "get_task", "Prompt", "PromptEncoder", "load_prompt",
           "__version__"]


def __getattr__(name):  # heavy (torch/transformers) imports only when asked for
    lazy = {
        "PromptForMaskedLM": ("modeling", "PromptForMaskedLM"),
        "PromptClassifier": ("hub", "PromptClassifier"),
        "run_multitask": ("multitask", "run_multitask"),
        "MultitaskArguments": ("multitask", "MultitaskArguments"),
        "MultitaskTrainingArguments": ("multitask", "MultitaskTrainingArguments"),
        "MultitaskMetricsCallback": ("multitask", "MultitaskMetricsCallback"),
        "PromptTrainer": ("training", "PromptTrainer"),
        "select_tasks": ("selection", "select_tasks"),
        "BestDevCallback": ("training", "BestDevCallback"),
        "run_prompt_experiment": ("training", "run_prompt_experiment"),
        "ModelArguments": ("training", "ModelArguments"),
        "PromptArguments": ("training", "PromptArguments"),
        "PromptTrainingArguments": ("training", "PromptTrainingArguments"),
        "load_kshot": ("data", "load_kshot"),
        "load_kshot_dataset": ("data", "load_kshot_dataset"),
        "write_splits": ("data", "write_splits"),
    }
    if name in lazy:
        import importlib

        mod, attr = lazy[name]
        return getattr(importlib.import_module(f".{mod}", __name__), attr)
    raise AttributeError(f"module 'mtft_nlp' has no attribute {name!r}")
