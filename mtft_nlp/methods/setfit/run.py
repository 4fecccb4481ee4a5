"""Peers measured in the same run: SetFit (Tunstall et al. 2022) with its default recipe (row ``setfit``).

SetFit finetunes the sentence encoder contrastively on pairs generated from the k-shot train split, then fits a
logistic-regression head on its embeddings. The row uses the ``setfit`` package's own ``Trainer`` and its
``TrainingArguments`` defaults (batch 16, one epoch of oversampled pairs, body lr 2e-5, cosine-similarity loss),
seeded with the split seed, on the same backbone and the same splits as the other rows. The package is an optional
extra (``pip install mtft-nlp[peers]``); mtft-nlp itself does not need it. A sentence pair is given to SetFit as
one text, ``text_a <sep> text_b`` (SetFit classifies single texts).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from ...io import RESULTS_FILE, check_output_dir
from ...metrics import compute_metrics
from ...models import resolve_model_name
from ...records import result_line, run_record, write_run_record
from ...tasks import MtftError

logger = logging.getLogger(__name__)

__all__ = ["run_setfit_experiment", "setfit_available"]


def setfit_available() -> bool:
    try:
        import setfit  # noqa: F401
    except ImportError:
        return False
    return True


def _texts(examples: Sequence[Dict], sep: str) -> List[str]:
    return [ex["text_a"] if ex["text_b"] is None else f"{ex['text_a']} {sep} {ex['text_b']}" for ex in examples]


def run_setfit_experiment(model_args, args, training_args) -> Dict:
    """One SetFit run on the k-shot split of ``training_args.seed``; writes ``results.json`` last, on success."""
    from ..embedding.run import prepare_run

    if not setfit_available():
        raise MtftError("--method setfit needs the setfit package: pip install 'mtft-nlp[peers]' (or setfit)")
    check_output_dir(training_args.output_dir)
    prep = prepare_run(model_args, args, training_args.seed)
    task, data = prep["task"], prep["data"]
    from datasets import Dataset
    from setfit import SetFitModel, Trainer
    from setfit import TrainingArguments as SetFitArguments

    for name in ("setfit", "sentence_transformers"):
        logging.getLogger(name).setLevel(logging.WARNING)
    path = resolve_model_name(model_args.model_name_or_path)
    model = SetFitModel.from_pretrained(path)
    sep = getattr(model.model_body.tokenizer, "sep_token", None) or "|"
    train = Dataset.from_dict({"text": _texts(data["train"], sep), "label": [ex["label_id"] for ex in data["train"]]})
    sf_args = SetFitArguments(
        seed=training_args.seed,
        show_progress_bar=False,
        report_to="none",
        save_strategy="no",  # no checkpoints: the run keeps its scores, not the model
        output_dir=str(Path(training_args.output_dir) / "setfit"),
    )
    trainer = Trainer(model=model, args=sf_args, train_dataset=train)
    t0 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t0
    scores = {}
    t0 = time.perf_counter()
    for split in ("dev", "test"):
        preds = np.asarray(model.predict(_texts(data[split], sep), as_numpy=True))
        scores[split] = compute_metrics(task.metric, preds, np.array([ex["label_id"] for ex in data[split]]))
    record = _record(
        task,
        data,
        scores,
        path,
        train_seconds,
        time.perf_counter() - t0,
        model_args,
        args,
        training_args,
        prep,
        sf_args,
    )
    import setfit

    record["env"]["setfit"] = setfit.__version__
    write_run_record(Path(training_args.output_dir) / RESULTS_FILE, record)
    logger.info(result_line(record))
    return record


def _record(task, data, scores, path, train_seconds, eval_seconds, model_args, args, training_args, prep, sf_args):
    kept = ("batch_size", "num_epochs", "num_iterations", "body_learning_rate", "head_learning_rate")
    return run_record(
        task=task,
        row=args.row or "setfit",
        method="setfit",
        seed=training_args.seed,
        k=args.k,
        dev_score=scores["dev"]["score"],
        test_metrics=scores["test"],
        zero_shot=False,
        model=model_args.model_name_or_path,
        prompt=prep["prompt"],
        sizes=(len(data["train"]), len(data["dev"]), len(data["test"])),
        setfit_args={
            k: str(v) for k, v in dataclasses.asdict(sf_args).items() if k in kept + ("sampling_strategy", "loss")
        },
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
    )
