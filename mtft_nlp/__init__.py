"""mtft-nlp: few-shot text classification for HuggingFace models: prompt-based finetuning (LM-BFF) of masked LMs,
embedding-based adaptation of sentence encoders, multitask finetuning and task selection (Xu et al. 2024).

The light names (tasks, prompts, rows) import at once; the rest (torch, transformers) on first use, but every
public name is listed in ``__all__`` and ``dir(mtft_nlp)``.
"""

from .rows import parse_row  # noqa: E402
from .tasks import MtftError, TaskSpec, available_tasks, get_task  # noqa: E402
from .templates import Prompt, PromptEncoder, load_prompt  # noqa: E402
from .version import __version__  # noqa: E402

# public name -> module that defines it (imported when first asked for)
_LAZY = {
    "ROWS": "rows",  # from the methods registered when asked for
    "PromptForMaskedLM": "methods.prompt.modeling",
    "PromptClassifier": "methods.prompt.classifier",
    "run_prompt_experiment": "methods.prompt.run",
    "EmbeddingClassifier": "methods.embedding.classifier",
    "EmbeddingForClassification": "methods.embedding.modeling",
    "ClassHead": "methods.embedding.modeling",
    "class_descriptions": "methods.embedding.modeling",
    "load_sentence_encoder": "methods.embedding.modeling",
    "EmbeddingArguments": "methods.embedding.arguments",
    "run_embedding_experiment": "methods.embedding.run",
    "run_setfit_experiment": "methods.setfit.run",
    "Method": "methods.base",
    "RowKind": "methods.base",
    "register_method": "methods.registry",
    "get_method": "methods.registry",
    "run_experiment": "methods",
    "resolve_method": "methods",
    "load_classifier": "methods",
    "run_multitask": "multitask",
    "MultitaskArguments": "training.arguments",
    "MultitaskTrainingArguments": "training.arguments",
    "ModelArguments": "training.arguments",
    "TaskArguments": "training.arguments",
    "FewShotTrainingArguments": "training.arguments",
    "MultitaskMetricsCallback": "training.callbacks",
    "BestDevCallback": "training.callbacks",
    "FewShotTrainer": "training.trainer",
    "select_tasks": "selection.select",
    "load_kshot": "data.kshot",
    "load_kshot_dataset": "data.kshot",
    "write_splits": "data.kshot",
}
# the former names of classes every method shares (importable from here as before)
_FORMER = {
    "PromptArguments": "TaskArguments",
    "PromptTrainingArguments": "FewShotTrainingArguments",
    "PromptTrainer": "FewShotTrainer",
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
    "parse_row",
    *_LAZY,
    *_FORMER,
]


def __getattr__(name):
    name = _FORMER.get(name, name)
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mtft_nlp' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
