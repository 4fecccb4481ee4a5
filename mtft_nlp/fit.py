"""``mtft-nlp fit``: from a file of labelled examples to a saved classifier, with the method's whole recipe.

The practitioner's path: a CSV (or JSON Lines) file of the user's own labelled examples, no task file, no data
layout. :func:`fit` builds the task from the data (labels from the train file or ``labels``; class descriptions from
the label names or ``descriptions``), chooses source tasks from the packaged pool by task selection (Algorithm 1; the
pool's data is read from the packaged tasks' data folder or ``source_data_dir``, never from the user's folder),
runs the multitask stage on them, finetunes with the method's default recipe, and leaves in ``output_dir``:

* ``best/``: the classifier (``load_classifier``, ``mtft-nlp predict``), model card included;
* ``results.json``: dev scores and, given a test file, test scores (without one the run's test split is its dev
  split, and the record says so: ``test_is_dev``);
* ``selection.json``: the sources task selection chose, and why; ``stage/``: the multitask checkpoint;
* ``task/``: the task and prompt files it built (reusable with ``--task_file`` / ``--prompt_file``), ``data/``: the
  train/dev/test split it trained on.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

from .io import RESULTS_FILE, atomic_write_json, atomic_write_text, check_output_dir
from .models import check_model_folder
from .tasks import MtftError, available_tasks, get_task, register_task_file

logger = logging.getLogger(__name__)

__all__ = ["fit", "SOURCE_CHOICES"]

SOURCE_CHOICES = ("selected", "all", "none")  # or a list of packaged task names
_SINGLE_TEMPLATE = "*cls**sent_0*_It_was*mask*.*sep+*"
_PAIR_TEMPLATE = "*cls**sent-_0*?*mask*,*+sentl_1**sep+*"


def _task_name(train_file: Path, name: Optional[str]) -> str:
    name = name or re.sub(r"[^A-Za-z0-9_-]+", "-", train_file.stem).strip("-") or "my-task"
    taken = {t.lower() for t in available_tasks()}
    if name.lower() in taken:
        raise MtftError(f"--task_name {name}: a packaged task has this name; choose another with --task_name")
    return name


def _labels(rows: List[Dict], label_column: str, given: Optional[Sequence[str]], where: str) -> List[str]:
    if label_column not in rows[0]:
        raise MtftError(f"{where}: no column {label_column!r} (columns: {', '.join(map(str, rows[0]))})")
    seen = list(dict.fromkeys(str(r[label_column]).strip() for r in rows))
    if given:
        unknown = [lab for lab in seen if lab not in given]
        if unknown:
            raise MtftError(f"{where}: labels {unknown} are not among --labels {list(given)}")
        labels = list(given)
    else:
        labels = sorted(seen)
    if len(labels) < 2:
        raise MtftError(f"{where}: the label column {label_column!r} holds one class {labels}; a classifier needs two")
    return labels


def _descriptions(labels: List[str], given: Optional[Sequence[str]]) -> Dict[str, str]:
    if given:
        if len(given) != len(labels):
            raise MtftError(f"--descriptions: {len(given)} given for the {len(labels)} labels {labels}")
        return dict(zip(labels, given))
    return {lab: " ".join(re.sub(r"[_-]+", " ", lab).split()) for lab in labels}


def _write_task(folder: Path, name: str, labels: List[str], pairs: bool, descriptions: Dict[str, str]) -> Path:
    """The task and prompt files of the user's data (under ``folder``), registered for this process."""
    prompt_file = folder / f"{name}.prompts.yaml"
    prompt = {
        "task": name,
        "default": "fit",
        "prompts": {
            "fit": {
                "description": "made by mtft-nlp fit from the label names",
                "template": _PAIR_TEMPLATE if pairs else _SINGLE_TEMPLATE,
                "label_words": {lab: lab for lab in labels},
                "descriptions": descriptions,
            }
        },
    }
    task = {
        "name": name,
        "labels": labels,
        "metric": "acc",
        "sentences": 2 if pairs else 1,
        "max_seq_length": 128,
        "prompt_file": prompt_file.name,
    }
    atomic_write_text(prompt_file, yaml.safe_dump(prompt, sort_keys=False, allow_unicode=True))
    task_file = folder / f"{name}.yaml"
    atomic_write_text(task_file, yaml.safe_dump(task, sort_keys=False, allow_unicode=True))
    register_task_file(task_file)
    return task_file


def _split(task, train: List[Dict], dev: Optional[List[Dict]], seed: int, where: str) -> Dict[str, List[Dict]]:
    """Train and dev sets: the validation file as given, or the train file split into equal per-class halves (K =
    half the smallest class, the LM-BFF shape: K train and K dev examples per class)."""
    if dev is not None:
        return {"train": train, "dev": dev}
    from .data.kshot import sample_kshot

    counts = {lab: sum(ex["label"] == lab for ex in train) for lab in task.labels}
    k = min(counts.values()) // 2
    if k < 1:
        raise MtftError(
            f"{where}: class {min(counts, key=counts.get)!r} has {min(counts.values())} example(s); without "
            "--validation_file every class needs at least 2 (one to train on, one to choose on)"
        )
    return sample_kshot(train, task, seed, k, source=where)


def _write_split(folder: Path, parts: Dict[str, List[Dict]]) -> Dict[str, Path]:
    out = {}
    for split, examples in parts.items():
        rows = [{"text_a": ex["text_a"], "text_b": ex["text_b"], "label": ex["label"]} for ex in examples]
        out[split] = folder / f"{split}.jsonl"
        import json

        atomic_write_text(out[split], "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return out


def fit(
    train_file: str,
    output_dir: str,
    text_a_column: str = "text",
    label_column: str = "label",
    text_b_column: Optional[str] = None,
    validation_file: Optional[str] = None,
    test_file: Optional[str] = None,
    labels: Optional[Sequence[str]] = None,
    descriptions: Optional[Sequence[str]] = None,
    task_name: Optional[str] = None,
    sources: Sequence[str] = ("selected",),
    model: Optional[str] = None,
    method: str = "auto",
    source_data_dir: Optional[str] = None,
    seed: int = 13,
    stage_steps: Optional[int] = None,
    max_steps: Optional[int] = None,
    progress: bool = True,
) -> Dict:
    """Build the task, select sources, run the multitask stage, finetune, save (see the module's docstring);
    returns the run's record with ``selection`` and ``stage`` added."""
    from .data.kshot import default_data_dir
    from .data.readers import read_examples, read_rows
    from .methods import get_method, resolve_method

    check_output_dir(output_dir)
    if model:
        check_model_folder(model, "--model")
    out, train_path = Path(output_dir), Path(train_file)
    spec = get_method(resolve_method(method, model))
    sources = [str(s) for s in sources]
    lowered = [s.lower() for s in sources]
    if lowered != ["none"] and spec.stage_section is None:
        raise MtftError(f"--method {spec.name} has no multitask stage; use --sources none")
    if lowered not in (["selected"], ["all"], ["none"]):
        sources = [get_task(s).name for s in sources]  # unknown names fail here, before anything is written
    given = {"--train_file": train_file, "--validation_file": validation_file, "--test_file": test_file}
    for option, path in given.items():
        if path is not None and not Path(path).is_file():
            raise MtftError(f"{option} {path}: file not found")
    rows = read_rows(train_path)
    if not rows:
        raise MtftError(f"{train_path}: no examples (the file is empty or holds only a header)")
    name = _task_name(train_path, task_name)
    task_labels = _labels(rows, label_column, labels, str(train_path))
    descs = _descriptions(task_labels, descriptions)
    pool_dir = source_data_dir or default_data_dir()
    if lowered != ["none"] and not (Path(pool_dir) / "original").is_dir() and not Path(pool_dir).name == "original":
        raise MtftError(
            f"--source_data_dir {pool_dir}: the packaged tasks' data (LM-BFF's original/ folder) is not there; "
            "pass the folder that holds it, or --sources none"
        )

    # the task, its data and split: every input is checked before a model loads; bad input leaves nothing behind
    created = not out.exists()
    try:
        task_file = _write_task(out / "task", name, task_labels, text_b_column is not None, descs)
        task = get_task(str(task_file))

        def read(path):
            return read_examples(task, path, text_a_column, text_b_column, label_column)

        dev = read(validation_file) if validation_file else None
        parts = _split(task, read(train_path), dev, seed, str(train_path))
        parts["test"] = read(test_file) if test_file else list(parts["dev"])
        files = _write_split(out / "data", parts)
    except MtftError:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    say = (lambda msg: print(msg, flush=True)) if progress else (lambda msg: None)
    say(
        f"fit: task {name}: {len(task_labels)} classes {task_labels}; {len(parts['train'])} train, "
        f"{len(parts['dev'])} dev, " + (f"{len(parts['test'])} test examples" if test_file else "no test file")
    )

    start, selection = model, None
    if lowered != ["none"]:
        start, selection = _stage(spec, task, parts, sources, lowered, model, pool_dir, seed, stage_steps, out, say)
    say(f"fit: finetuning ({spec.name} method, its default recipe) from {start or 'the packaged model'}")
    record = _finetune(spec, start, task_file, files, seed, max_steps, out)
    if not test_file:
        record["test_is_dev"] = True
        from .records import write_run_record

        write_run_record(out / RESULTS_FILE, record)
    record["selection"] = selection
    chosen = ", ".join(selection["selected"]) if selection else ("none" if lowered == ["none"] else ", ".join(sources))
    scores = f"dev {record['dev_score']:.4f}" + (f", test {record['test_score']:.4f}" if test_file else "")
    say(f"done: {name}: sources {chosen}; {scores} ({record['metric']}); model: {out / 'best'}")
    return record


def _stage(spec, task, parts, sources, lowered, model, pool_dir, seed, stage_steps, out: Path, say):
    """The multitask stage on the chosen sources; (its folder, the selection record or None)."""
    from .multitask import run_multitask
    from .training.arguments import ModelArguments, MultitaskArguments, MultitaskTrainingArguments

    selection = None
    if lowered == ["selected"]:
        from .selection.select import select_tasks

        say("fit: choosing source tasks by consistency and diversity (Algorithm 1)")
        result = select_tasks(task.name, data_dir=pool_dir, model_name_or_path=model, target_examples=parts["train"])
        selection = result.to_dict()
        atomic_write_json(out / "selection.json", selection)
        names = list(result.selected)
    elif lowered == ["all"]:
        from .tasks import classification_tasks

        names = classification_tasks()
    else:
        names = list(sources)
    overrides = spec.stage_defaults()
    if stage_steps is not None:
        overrides["max_steps"] = overrides["eval_steps"] = stage_steps
    # a selection goes in as its file, so that the stage records how its sources were chosen (rows mt-sel-*)
    args = MultitaskArguments(
        sources=[str(out / "selection.json")] if selection is not None else names,
        data_dir=str(pool_dir),
        **{k: v for k, v in overrides.items() if k in MultitaskArguments.__dataclass_fields__},
    )
    training = MultitaskTrainingArguments(
        output_dir=str(out / "stage"),
        seed=seed,
        disable_tqdm=True,
        report_to=[],
        **{k: v for k, v in overrides.items() if k not in MultitaskArguments.__dataclass_fields__},
    )
    say(f"fit: multitask stage on {', '.join(names)} ({training.max_steps} steps)")
    run_multitask(ModelArguments(model_name_or_path=model or "minilm", method=spec.name), args, training)
    return str(out / "stage"), selection


def task_file_pairs(task_file: Path) -> bool:
    return get_task(str(task_file)).num_sentences == 2


def _finetune(spec, start, task_file: Path, files: Dict[str, Path], seed: int, max_steps, out: Path) -> Dict:
    from .training.arguments import FewShotTrainingArguments, ModelArguments, TaskArguments

    defaults = spec.training_defaults()
    if max_steps is not None:
        defaults["max_steps"] = max_steps
        defaults["eval_steps"] = min(defaults.get("eval_steps", max_steps), max_steps)
    data_args = TaskArguments(
        task_file=str(task_file),
        train_file=str(files["train"]),
        validation_file=str(files["dev"]),
        test_file=str(files["test"]),
        text_a_column="text_a",
        text_b_column="text_b" if task_file_pairs(task_file) else None,
        save_model=True,
    )
    cls = spec.argument_class()
    training = FewShotTrainingArguments(output_dir=str(out), seed=seed, disable_tqdm=True, report_to=[], **defaults)
    model_args = ModelArguments(model_name_or_path=start or "minilm", method=spec.name)
    return spec.run(model_args, data_args, training, cls() if cls is not None else None)
