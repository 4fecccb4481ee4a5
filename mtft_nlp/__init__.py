"""mtft-nlp: few-shot text classification for HuggingFace models: prompt-based finetuning (LM-BFF) of masked LMs,
embedding-based adaptation of sentence encoders, multitask finetuning and task selection (Xu et al. 2024).

The light names (tasks, prompts, rows) import at once; the rest (torch, transformers) on first use, but every
public name is listed in ``__all__`` and ``dir(mtft_nlp)``.
"""

from .rows import ROWS, parse_row  # noqa: E402
from .tasks import MtftError, TaskSpec, available_tasks, get_task  # noqa: E402
from .templates import Prompt, PromptEncoder, load_prompt  # noqa: E402
from .version import __version__  # noqa: E402

# public name -> module that defines it (imported when first asked for)
_LAZY = {
    "PromptForMaskedLM": "methods.prompt.modeling",
    "PromptClassifier": "methods.prompt.classifier",
    "EmbeddingClassifier": "methods.embedding.classifier",
    "EmbeddingForClassification": "methods.embedding.modeling",
    "ClassHead": "methods.embedding.modeling",
    "class_descriptions": "methods.embedding.modeling",
    "load_sentence_encoder": "methods.embedding.modeling",
    "EmbeddingArguments": "methods.embedding.run",
    "run_embedding_experiment": "methods.embedding.run",
    "run_experiment": "methods",
    "resolve_method": "methods",
    "load_classifier": "methods",
    "run_setfit_experiment": "methods.setfit.run",
    "run_multitask": "multitask",
    "MultitaskArguments": "multitask",
    "MultitaskTrainingArguments": "multitask",
    "MultitaskMetricsCallback": "multitask",
    "PromptTrainer": "methods.prompt.run",
    "select_tasks": "selection.select",
    "BestDevCallback": "methods.prompt.run",
    "run_prompt_experiment": "methods.prompt.run",
    "ModelArguments": "methods.prompt.run",
    "PromptArguments": "methods.prompt.run",
    "PromptTrainingArguments": "methods.prompt.run",
    "load_kshot": "data.kshot",
    "load_kshot_dataset": "data.kshot",
    "write_splits": "data.kshot",
}

__all__ = [
    "__version__",
    "MtftError",
    "TaskSpec",
    "available_tasks",
    "get_task",
    "Prompt",
    "PromptEncoder",
    "load_prompt",
    "ROWS",
    "parse_row",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mtft_nlp' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
