"""The ``mtft-nlp`` command.

    mtft-nlp splits --data_dir ../shared/data/original --output_dir data/k-shot --tasks SST-2 trec
    mtft-nlp train --task_name sst-2 --seed 13 --output_dir runs/sst2-13     (= run_glue_fewshot.py)
    mtft-nlp table runs/ [--format markdown|latex|csv]
    mtft-nlp tasks

Bad input (unknown task, malformed file, bad prompt, too few examples) prints one
``error:`` line and exits with status 2, writing no results.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional

from .checks import AT_LEAST_1, SEED, option
from .commands import (
    cmd_fit,
    cmd_predict,
    cmd_report,
    cmd_run,
    cmd_splits,
    cmd_sweep,
    cmd_table,
    cmd_tasks,
    print_summary,
    quick_checks,
)
from .parsing import check_method_options, hf_parser, method_defaults, multitask_dataclasses, train_dataclasses
from .tasks import MtftError

__all__ = ["main", "build_parser", "run_glue_main", "multitask_main", "format_progress", "step_progress_callback"]
__all__ += ["PROGRESS_PREFIX", "VERBOSE_HELP"]

logger = logging.getLogger("mtft_nlp")


def _setup_logging(level=logging.INFO):
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
        level=level,
    )


def _fail(exc: Exception) -> int:
    """The one ``error:`` line of bad input (whitespace runs, newlines included, collapsed), exit status 2."""
    print("error: " + " ".join(str(exc).split()), file=sys.stderr)
    return 2


def _usage_error(parser: argparse.ArgumentParser, message: str):
    """argparse's own errors (unknown flag, bad value) as the same one ``error:`` line, exit status 2."""
    print(f"error: {' '.join(str(message).split())} (see {parser.prog} --help)", file=sys.stderr)
    sys.exit(2)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        _usage_error(self, message)


VERBOSE_HELP = "also show the libraries' own reports (e.g. transformers' weight LOAD REPORT)"


def _pop_verbose(argv: List[str]) -> List[str]:
    """``--verbose`` anywhere in HF-style arguments: sets $MTFT_NLP_VERBOSE (inherited by job processes)."""
    if "--verbose" in argv:
        os.environ["MTFT_NLP_VERBOSE"] = "1"
        argv = [a for a in argv if a != "--verbose"]
    return argv


PROGRESS_PREFIX = "progress: "


def format_progress(step: int, total: int, elapsed: float, eta: Optional[float], loss: Optional[float]) -> str:
    """One progress line of a training stage: step, loss, elapsed time and ETA."""

    def hms(sec):
        sec = int(round(sec))
        return f"{sec // 3600}:{sec // 60 % 60:02d}:{sec % 60:02d}"

    return (
        f"{PROGRESS_PREFIX}step {step}/{total} ({100 * step / max(total, 1):.0f}%)"
        + (f", loss {loss:.4f}" if loss is not None else "")
        + f", {hms(elapsed)} elapsed"
        + (f", ETA {hms(eta)}" if eta is not None else "")
    )


def step_progress_callback(every: Optional[int] = None):
    """A ``TrainerCallback`` printing a :func:`format_progress` line every ``every`` optimizer steps
    (default: 20 lines per run), for runs without a tqdm bar (``mtft-nlp run`` reads them from the log)."""
    import time

    from transformers import TrainerCallback

    class StepProgressCallback(TrainerCallback):
        def __init__(self):
            self.every, self.loss, self.t0, self.start = every, None, None, 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.t0, self.start = time.time(), state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_step_end(self, args, state, control, **kwargs):
            total, step = state.max_steps, state.global_step
            n = self.every or max(1, total // 20)
            if not state.is_world_process_zero or (step % n and step != total) or self.t0 is None:
                return
            elapsed = time.time() - self.t0
            done = step - self.start
            eta = elapsed / done * (total - step) if done > 0 else None
            print(format_progress(step, total, elapsed, eta, self.loss), flush=True)

    return StepProgressCallback()


def _install_progress_lines():
    """Every Trainer of this process gets the step-progress callback (a CLI process: the multitask stage)."""
    from transformers import trainer as hf_trainer

    cb = step_progress_callback()
    if not any(type(c).__name__ == "StepProgressCallback" for c in hf_trainer.DEFAULT_CALLBACKS):
        hf_trainer.DEFAULT_CALLBACKS = hf_trainer.DEFAULT_CALLBACKS + [cb]


def _hf_entry(
    dataclass_types, run, argv, on_success=None, progress_lines=False, defaults=None, **parser_kwargs
) -> int:
    """Parse HF-style arguments (or one .json/.yaml file), set up logging, run; bad input -> exit 2."""
    argv = _pop_verbose(list(sys.argv[1:] if argv is None else argv))
    import transformers

    try:
        parser = hf_parser(dataclass_types, argv, defaults, **parser_kwargs)  # defaults: e.g. the chosen method's
        parser.error = lambda message: _usage_error(parser, message)
        parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
        if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
            loader = parser.parse_json_file if argv[0].endswith(".json") else parser.parse_yaml_file
            parsed = loader(os.path.abspath(argv[0]))
        else:
            parsed = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as exc:  # includes MtftError and TrainingArguments' own validation
        return _fail(exc)
    except OSError as exc:  # e.g. an --output_dir or logging dir that cannot be created
        return _fail(exc)
    parsed = [x for x in parsed if not isinstance(x, argparse.Namespace)]
    _setup_logging()
    log_level = parsed[-1].get_process_log_level()
    logging.getLogger("mtft_nlp").setLevel(log_level)
    verbose = bool(os.environ.get("MTFT_NLP_VERBOSE"))
    transformers.utils.logging.set_verbosity(log_level if verbose else max(log_level, logging.WARNING))
    if progress_lines and getattr(parsed[-1], "disable_tqdm", False):
        _install_progress_lines()
    try:
        result = run(*parsed)
    except MtftError as exc:
        return _fail(exc)
    if on_success is not None:
        on_success(result, parsed)
    return 0


def run_cells(batch_file: str) -> int:
    """Run the cells of a batch file one after another in this process (``mtft-nlp cells``); a failing cell is
    logged and the next one runs. Returns the number of failed cells."""
    import json
    import traceback
    from pathlib import Path

    specs = json.loads(Path(batch_file).read_text(encoding="utf-8"))
    failed = 0
    for spec in specs:
        try:
            rc = run_glue_main(list(spec["args"]))
        except Exception:  # one broken cell must not take the batch down
            traceback.print_exc()
            rc = 1
        failed += rc != 0
    return failed


def run_glue_main(argv: Optional[List[str]] = None) -> int:
    """Entry of ``run_glue_fewshot.py`` and ``mtft-nlp train``."""
    argv = _pop_verbose(list(sys.argv[1:] if argv is None else argv))
    try:
        quick_checks(argv)  # before the heavy imports below
        check_method_options(argv)
    except MtftError as exc:
        return _fail(exc)
    from .methods import run_experiment

    return _hf_entry(
        train_dataclasses(),
        run_experiment,
        argv,
        on_success=print_summary,
        defaults=method_defaults,
        usage="%(prog)s --task_name T (or --task_file F) --seed S --output_dir D [options]",
        description="Few-shot finetuning on one task and split seed: embedding-based (a linear head on "
        "the sentence embedding) for a sentence encoder such as the packaged MiniLM, "
        "prompt-based (LM-BFF) for a masked LM (--method). "
        "The project's own options come first; every transformers TrainingArguments flag "
        "also works.",
    )


def multitask_main(argv: Optional[List[str]] = None) -> int:
    """Entry of ``mtft-nlp multitask``: the multitask finetuning stage."""
    from .multitask import run_multitask

    return _hf_entry(
        multitask_dataclasses(),
        run_multitask,
        argv,
        progress_lines=True,
        prog="mtft-nlp multitask",
        description="Multitask finetuning of a masked LM on few-shot source tasks (PROTOCOL section 5).",
    )


def _add_splits(sub) -> None:
    from .data.kshot import DEFAULT_K, SEEDS

    s = sub.add_parser("splits", help="write LM-BFF k-shot splits (byte-identical to LM-BFF's)")
    s.add_argument("--data_dir", required=True, help="LM-BFF original/ folder (holding SST-2/, sst-5/, ...)")
    s.add_argument("--output_dir", required=True, help="where <TASK>/<K>-<seed>/ folders are written")
    s.add_argument("--tasks", nargs="+", required=True, help="task names (case-insensitive)")
    s.add_argument(
        "--seeds", nargs="+", type=option(SEED), default=list(SEEDS), help="split seeds (default: 13 21 42 87 100)"
    )
    s.add_argument("--k", type=option(AT_LEAST_1), default=DEFAULT_K, help="examples per class (default 16)")
    s.set_defaults(func=cmd_splits)


def _add_table(sub) -> None:
    t = sub.add_parser("table", help="mean (std) x 100 per task and row over the results.json files below DIR")
    t.add_argument("dir")
    t.add_argument("--format", choices=["markdown", "latex", "csv"], default="markdown")
    t.add_argument("--row", nargs="+", help="only these rows")
    t.add_argument(
        "--titles",
        action="store_true",
        help="row titles also in CSV (the default for markdown and latex, as in the report)",
    )
    t.add_argument(
        "--ids", action="store_true", help="row ids (pbft, mt-pbft, ...) instead of titles (the CSV default)"
    )
    t.set_defaults(func=cmd_table)


def _add_run(sub) -> None:
    r = sub.add_parser("run", help="run the (target, row, seed) grid, resumable, then write the report")
    r.add_argument(
        "--config",
        help="a YAML config (configs/paper.yaml, configs/minilm.yaml, configs/demo.yaml); "
        "default: configs/demo.yaml, or configs/minilm.yaml when targets/rows/seeds are given",
    )
    r.add_argument("--targets", nargs="+")
    r.add_argument(
        "--rows",
        nargs="+",
        help="any of zero-shot mt-zero-shot mt-sel-zero-shot pbft mt-pbft mt-sel-pbft (the paper's rows; "
        "'all' = these six) and the task-selection ablations mt-random-pbft mt-nocon-pbft mt-nodiv-pbft "
        "(and their -zero-shot forms; 'ablations' = mt-sel-pbft and the three -pbft ablations)",
    )
    r.add_argument("--seeds", nargs="+", type=option(SEED))
    r.add_argument("--model", help="masked LM (default from the config)")
    r.add_argument("--output_dir")
    r.add_argument("--data_dir")
    r.add_argument(
        "--workers", type=option(AT_LEAST_1), help="parallel cell processes (one GPU each when several are visible)"
    )
    r.add_argument(
        "--cells_per_device",
        type=option(AT_LEAST_1),
        help="cell processes packed onto each visible GPU (default 1; the number of workers is raised to GPUs x this)",
    )
    r.add_argument(
        "--backend",
        choices=["local", "ray", "slurm"],
        help="where the jobs run: local (this machine's workers, the default), ray (a Ray cluster: --ray_address, "
        "$RAY_ADDRESS, or a local one started here), slurm (job arrays through submitit; the config's slurm: "
        "section); see docs/BACKENDS.md",
    )
    r.add_argument(
        "--ray_address",
        help="the Ray cluster of --backend ray (host:port, ray://host:port, or auto: the one running on this node)",
    )
    r.add_argument(
        "--slurm",
        nargs="+",
        metavar="KEY=VALUE",
        help="options of --backend slurm over the config's slurm: section, e.g. partition=gpu gpus_per_task=1 "
        "time_min=240 cpus_per_task=8 array_parallelism=16 sbatch.account=nlp (see docs/BACKENDS.md)",
    )
    r.set_defaults(func=cmd_run)


def _add_report(sub) -> None:
    rp = sub.add_parser("report", help="RESULTS.md + CSV + LaTeX + PNG plots from the results below DIR")
    rp.add_argument("dir")
    rp.add_argument("--output", help="folder for the report files (default: DIR)")
    rp.add_argument("--title", default="Results")
    rp.add_argument("--row", nargs="+", help="only these rows")
    rp.add_argument("--command", nargs="*", help="the commands that produced the results (recorded in the report)")
    rp.add_argument(
        "--spec",
        help="a YAML layout combining several benchmark folders below DIR into one document "
        "(sections with text, tables, per-target differences, run listings); "
        "benchmarks/report.yaml makes docs/RESULTS.md",
    )
    rp.set_defaults(func=cmd_report)


def _add_sweep(sub) -> None:
    sw = sub.add_parser("sweep", help="vary the number of finetuning tasks or the shots per class for one target")
    sw.add_argument("--target", required=True)
    sw.add_argument(
        "--vary", nargs="+", required=True, metavar="VAR VALUES", help="num_tasks 1 2 4 8 12 | shots 4 8 16 32"
    )
    sw.add_argument("--config")
    sw.add_argument("--seeds", nargs="+", type=option(SEED))
    sw.add_argument("--model")
    sw.add_argument("--output_dir", required=True)
    sw.add_argument("--data_dir")
    sw.add_argument("--workers", type=option(AT_LEAST_1))
    sw.add_argument(
        "--method",
        default="prompt",
        help="the method whose finetuning rows are swept: mt-sel-pbft / pbft (prompt) or mt-sel-embed-ft / embed-ft "
        "(embedding)",
    )
    sw.set_defaults(func=cmd_sweep)


def _add_fit(sub) -> None:
    f = sub.add_parser(
        "fit",
        help="from a CSV of labelled examples to a saved classifier: task selection, multitask stage, finetuning",
        description="Build the task from your file (labels from the label column, class descriptions from the label "
        "names), choose source tasks from the packaged pool by consistency and diversity, finetune on them, then "
        "on your examples with the method's default recipe; save the classifier to <output_dir>/best with "
        "results.json and selection.json. See README, 'Your own data'.",
    )
    f.add_argument("--train_file", required=True, help="CSV (with a header) or JSON Lines of labelled examples")
    f.add_argument("--output_dir", required=True)
    f.add_argument("--text_a_column", default="text", help="the column of the text (default: text)")
    f.add_argument("--text_b_column", default=None, help="the column of a second text, for sentence pairs")
    f.add_argument("--label_column", default="label", help="the column of the label (default: label)")
    f.add_argument("--validation_file", help="a dev set to choose on; default: half of each class of --train_file")
    f.add_argument("--test_file", help="scored once at the end; without it results.json holds dev scores only")
    f.add_argument("--labels", nargs="+", help="the class labels in order (default: those of --train_file, sorted)")
    f.add_argument("--descriptions", nargs="+", help="one description per label (default: the label names)")
    f.add_argument("--task_name", help="the task's name (default: the train file's name)")
    f.add_argument(
        "--sources",
        nargs="+",
        default=["selected"],
        help="selected (task selection, Algorithm 1; default), all (every packaged classification task), none "
        "(no multitask stage), or packaged task names",
    )
    f.add_argument("--model", default=None, help="the model to start from (default: the packaged all-MiniLM-L6-v2)")
    f.add_argument("--method", default="auto", help="auto (default), embedding, prompt")
    f.add_argument(
        "--source_data_dir",
        default=None,
        help="where the packaged tasks' data is (LM-BFF's original/ folder; default $MTFT_NLP_DATA_DIR or "
        "../shared/data); never your own folder",
    )
    f.add_argument("--seed", type=option(SEED), default=13, help="seed of the split and the training runs")
    f.add_argument(
        "--stage_steps", type=option(AT_LEAST_1), default=None, help="multitask stage steps (default: the method's)"
    )
    f.add_argument(
        "--max_steps", type=option(AT_LEAST_1), default=None, help="finetuning steps (default: the method's)"
    )
    f.set_defaults(func=cmd_fit)


def _add_predict(sub) -> None:
    pr = sub.add_parser("predict", help="classify raw texts with a saved prompt classifier")
    pr.add_argument("--model", required=True, help="a saved classifier folder (a run's best/) or a Hub repo id")
    pr.add_argument(
        "--input",
        required=True,
        help=".txt (one text per line, tab between a pair), .jsonl (text/text_a, text_b) or .csv",
    )
    pr.add_argument(
        "--output",
        required=True,
        help="JSON Lines: text, prediction (the task's label), label_word (its verbaliser word), probabilities",
    )
    pr.add_argument("--probabilities", action="store_true", help="also write class probabilities")
    pr.add_argument("--batch_size", type=option(AT_LEAST_1), default=32)
    pr.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")
    pr.set_defaults(func=cmd_predict)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .selection.command import register_cli as add_select

    p = _Parser(prog="mtft-nlp", description="Few-shot prompt-based finetuning toolkit (LM-BFF protocol).")
    p.add_argument("--version", action="version", version=f"mtft-nlp {__version__}")
    p.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_add_splits, _add_table, _add_run, _add_report, _add_sweep, _add_fit, _add_predict):
        add(sub)
    k = sub.add_parser("tasks", help="list the packaged tasks")
    k.set_defaults(func=cmd_tasks)

    add_select(sub)

    sub.add_parser(
        "multitask",
        help="multitask finetuning stage before prompt-based FT (see 'mtft-nlp multitask --help')",
        add_help=False,
    )
    sub.add_parser(
        "train",
        help="one prompt-based FT / zero-shot run (the flags of run_glue_fewshot.py; see 'mtft-nlp train --help')",
        add_help=False,
    )
    return p


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "cells":  # internal: a batch of grid cells in one process (mtft-nlp run)
        return 1 if run_cells(argv[1]) else 0
    if argv and argv[0] == "train":
        return run_glue_main(argv[1:])
    if argv and argv[0] == "multitask":
        return multitask_main(argv[1:])
    if argv and argv[0] == "--verbose" and len(argv) > 1 and argv[1] in ("train", "multitask"):
        os.environ["MTFT_NLP_VERBOSE"] = "1"
        argv = argv[1:]
    if argv and argv[0] == "train":
        return run_glue_main(argv[1:])
    if argv and argv[0] == "multitask":
        return multitask_main(argv[1:])
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.verbose:
        os.environ["MTFT_NLP_VERBOSE"] = "1"
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s - %(name)s - %(message)s")
    try:
        return a.func(a)
    except MtftError as exc:
        return _fail(exc)
    except KeyboardInterrupt:  # (mtft-nlp run reports its cells itself)
        print("\ninterrupted; finished results are kept and rerunning the same command resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
