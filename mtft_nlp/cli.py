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

from .tasks import MtftError

logger = logging.getLogger("mtft_nlp")


def _setup_logging(level=logging.INFO):
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S",
                        handlers=[logging.StreamHandler(sys.stdout)], level=level)


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


def _int_option(ns, name: str) -> Optional[int]:
    v = getattr(ns, name)
    if v is None:
        return None
    try:
        return int(v)
    except ValueError:
        raise MtftError(f"--{name} must be an integer, got {v!r}") from None


def quick_checks(argv: List[str]) -> None:
    """Cheap checks of the project's own options before torch and transformers are imported (a few
    seconds), so that common mistakes fail at once; everything is checked again later."""
    import argparse as ap

    from .data import check_k, check_seed
    from .tasks import get_task

    if not argv or any(a in ("-h", "--help") for a in argv) or (len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml"))):
        return
    p = ap.ArgumentParser(add_help=False, allow_abbrev=False)
    for name in ("task_name", "task_file", "output_dir", "model_name_or_path", "k", "seed", "max_steps"):
        p.add_argument(f"--{name}")
    p.add_argument("--zero_shot", nargs="?", const="true")
    p.add_argument("--allow_pickle", nargs="?", const="true")
    try:
        ns, _ = p.parse_known_args(argv)
    except SystemExit:  # let the full parser report it
        return
    if ns.task_name or ns.task_file:
        get_task(ns.task_file or ns.task_name)
    if ns.k is not None:
        check_k(_int_option(ns, "k"))
    if ns.seed is not None:
        check_seed(_int_option(ns, "seed"))
    zero = (ns.zero_shot or "false").lower() in ("true", "1", "yes")
    if ns.max_steps is not None and _int_option(ns, "max_steps") == 0 and not zero:
        raise MtftError("--max_steps 0 would train nothing: use --zero_shot to evaluate the prompt without training")
    if ns.output_dir and os.path.exists(ns.output_dir) and not os.path.isdir(ns.output_dir):
        raise MtftError(f"--output_dir {ns.output_dir} is an existing file, not a folder")
    m = ns.model_name_or_path
    if m and not os.path.exists(m) and (m.startswith((".", "/", "~")) or m.count("/") > 1):
        raise MtftError(f"--model_name_or_path {m}: folder not found")
    if m and os.path.isdir(m):
        import json

        from .tasks import check_weights_format

        check_weights_format(m, allow_pickle=(ns.allow_pickle or "false").lower() in ("true", "1", "yes"))
        cfg = os.path.join(m, "config.json")
        if os.path.isfile(cfg):
            try:
                with open(cfg, encoding="utf-8") as f:
                    json.load(f)
            except (ValueError, OSError) as exc:
                raise MtftError(f"--model_name_or_path {m}: {cfg} is not valid JSON ({exc})") from None


PROGRESS_PREFIX = "progress: "


def format_progress(step: int, total: int, elapsed: float, eta: Optional[float], loss: Optional[float]) -> str:
    """One progress line of a training stage: step, loss, elapsed time and ETA."""
    def hms(sec):
        sec = int(round(sec))
        return f"{sec // 3600}:{sec // 60 % 60:02d}:{sec % 60:02d}"

    return (f"{PROGRESS_PREFIX}step {step}/{total} ({100 * step / max(total, 1):.0f}%)"
            + (f", loss {loss:.4f}" if loss is not None else "")
            + f", {hms(elapsed)} elapsed" + (f", ETA {hms(eta)}" if eta is not None else ""))


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


def _hf_entry(dataclass_types, run, argv, on_success=None, progress_lines=False, **parser_kwargs) -> int:
    """Parse HF-style arguments (or one .json/.yaml file), set up logging, run; bad input -> exit 2."""
    argv = _pop_verbose(list(sys.argv[1:] if argv is None else argv))
    from transformers import HfArgumentParser
    import transformers

    parser = HfArgumentParser(dataclass_types, **parser_kwargs)
    parser.error = lambda message: _usage_error(parser, message)
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    try:
        if any(t.__name__ == "PromptArguments" for t in dataclass_types):
            parser.set_defaults(**_method_defaults(argv))
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


def summary_line(record: dict, training_args, args) -> str:
    """The one line a training run ends with: task, seed, row, dev, test, metric, where things went."""
    out = training_args.output_dir
    if args.zero_shot:
        model = "not saved (zero-shot)"
    elif not args.save_model:
        model = "not saved (--save_model false)"
    else:
        model = os.path.join(out, "best")
    return (f"done: {record['task']} seed {record['seed']} row {record['row']}: dev {record['metric']} "
            f"{record['dev_score']:.4f}, test {record['metric']} {record['test_score']:.4f} "
            f"({record.get('n_test', '?')} test examples); results: {os.path.join(out, 'results.json')}; model: {model}")


def _print_summary(record, parsed):
    if int(os.environ.get("RANK", "0")) == 0 and isinstance(record, dict):
        print(summary_line(record, parsed[-1], parsed[1]), flush=True)


def _method_defaults(argv: List[str]) -> dict:
    """Training defaults of the method that ``--method`` / ``--model_name_or_path`` resolve to (flags given on the
    command line still win)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--method", default="auto")
    pre.add_argument("--model_name_or_path", default="minilm")
    known, _ = pre.parse_known_args(argv)
    from .methods import method_defaults, resolve_method

    return method_defaults(resolve_method(known.method, known.model_name_or_path))


def run_glue_main(argv: Optional[List[str]] = None) -> int:
    """Entry of ``run_glue_fewshot.py`` and ``mtft-nlp train``."""
    argv = _pop_verbose(list(sys.argv[1:] if argv is None else argv))
    try:
        quick_checks(argv)  # before the heavy imports below
    except MtftError as exc:
        return _fail(exc)
    from .embedding_training import EmbeddingArguments
    from .methods import run_experiment
    from .training import ModelArguments, PromptArguments, PromptTrainingArguments

    return _hf_entry((ModelArguments, PromptArguments, EmbeddingArguments, PromptTrainingArguments), run_experiment,
                     argv, on_success=_print_summary,
                     usage="%(prog)s --task_name T (or --task_file F) --seed S --output_dir D [options]",
                     description="Few-shot finetuning on one task and split seed: embedding-based (a linear head on "
                                 "the sentence embedding) for a sentence encoder such as the packaged MiniLM, "
                                 "prompt-based (LM-BFF) for a masked LM (--method). "
                                 "The project's own options come first; every transformers TrainingArguments flag "
                                 "also works.")


def multitask_main(argv: Optional[List[str]] = None) -> int:
    """Entry of ``mtft-nlp multitask``: the multitask finetuning stage."""
    from .multitask import MultitaskArguments, MultitaskTrainingArguments, run_multitask
    from .training import ModelArguments

    return _hf_entry((ModelArguments, MultitaskArguments, MultitaskTrainingArguments), run_multitask, argv,
                     progress_lines=True, prog="mtft-nlp multitask",
                     description="Multitask finetuning of a masked LM on few-shot source tasks (PROTOCOL section 5).")


def cmd_splits(a) -> int:
    from .data import write_splits

    written = write_splits(a.tasks, a.data_dir, a.output_dir, a.seeds, a.k)
    for p in written:
        print(p)
    return 0


def cmd_table(a) -> int:
    from .results import aggregate, find_results, format_table

    results = find_results(a.dir)
    if a.row:
        results = [r for r in results if r["row"] in a.row]
    if not results:
        raise MtftError(f"no results.json found below {a.dir}")
    # the run's table and the report name rows by their titles; so does this one, except in CSV or with --ids
    titles = a.titles or (not a.ids and a.format != "csv")
    sys.stdout.write(format_table(aggregate(results), a.format, titles=titles))
    return 0


def _read_inputs(path: str, with_rows: bool = False):
    """Texts (and pairs) from .txt (one per line; a tab separates a pair), .jsonl or .csv files.

    With ``with_rows``, also the ``file:line`` of each input (file lines, as editors number them)."""
    from .data import DataError, read_rows_numbered

    p = os.fspath(path)
    if p.endswith((".jsonl", ".json", ".csv", ".tsv")):
        rows = read_rows_numbered(p)
    else:
        if not os.path.isfile(p):
            raise DataError(f"input file not found: {p}")
        try:
            with open(p, encoding="utf-8") as f:
                rows = [(i, dict(zip(("text_a", "text_b"), line.rstrip("\r\n").split("\t", 1))))
                        for i, line in enumerate(f, 1) if line.strip()]
        except UnicodeDecodeError as exc:
            raise DataError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    texts, pairs, names = [], [], []
    for line, row in rows:
        a = row.get("text_a", row.get("text", row.get("sentence")))
        if a is None:
            raise DataError(f"{p}:{line}: no 'text' or 'text_a' field")
        texts.append(str(a))
        b = row.get("text_b", row.get("text_pair"))
        pairs.append(None if b is None else str(b))
        names.append(f"{p}:{line}")
    if not texts:
        raise DataError(f"{p}: no inputs")
    pairs = pairs if any(x is not None for x in pairs) else None
    return (texts, pairs, names) if with_rows else (texts, pairs)


def cmd_predict(a) -> int:
    from .methods import load_classifier
    from .results import atomic_write_text

    texts, pairs, names = _read_inputs(a.input, with_rows=True)  # bad input fails before the model loads
    if os.path.isdir(a.output):
        raise MtftError(f"--output {a.output} is a folder; name a .jsonl file")
    clf = load_classifier(a.model, device=a.device)  # a prompt or an embedding classifier
    out = clf.predict(texts, pairs, batch_size=a.batch_size, return_probabilities=a.probabilities, row_names=names)
    preds, probs = out if a.probabilities else (out, None)
    import json

    lines = []
    for i, text in enumerate(texts):
        row = {"text": text}
        if pairs is not None:
            row["text_pair"] = pairs[i]
        row["prediction"] = preds[i]
        word = clf.label_word(preds[i])
        if word is not None:
            row["label_word"] = word
        if probs is not None:
            row["probabilities"] = probs[i]
        lines.append(json.dumps(row, ensure_ascii=False))
    atomic_write_text(a.output, "\n".join(lines) + "\n")
    print(f"{len(texts)} predictions written to {a.output}")
    return 0


def cmd_run(a) -> int:
    from .experiments import load_config, run_plan
    from .report import write_report

    preset = None if a.config else "demo"
    if any(v is not None for v in (a.targets, a.rows, a.seeds, a.model)) and not a.config:
        preset = "minilm"
    cfg = load_config(a.config, preset, targets=a.targets, rows=a.rows, seeds=a.seeds, model=a.model,
                      output_dir=a.output_dir, workers=a.workers, data_dir=a.data_dir,
                      cells_per_device=a.cells_per_device)
    print(f"mtft-nlp run: {len(cfg['targets'])} targets x {len(cfg['rows'])} rows x {len(cfg['seeds'])} seeds "
          f"-> {cfg['output_dir']}", flush=True)
    from .experiments import Plan, _done

    try:
        counts = run_plan(cfg)
    except KeyboardInterrupt:
        cells = Plan(cfg).cells()
        done = sum(_done(c["dir"], "results.json") for c in cells)
        print(f"\ninterrupted: {done} of {len(cells)} cells finished (running jobs stopped); "
              "rerun the same command to resume", file=sys.stderr, flush=True)
        return 130
    files = write_report(cfg["output_dir"], commands=[" ".join(["mtft-nlp", "run", *sys.argv[2:]])])
    sys.stdout.write("\n" + files["markdown"].read_text().split("\n## Protocol")[0] + "\n")
    print(f"{counts['ran']} cells run, {counts['cells'] - counts['ran']} already done; report: {files['markdown']}")
    return 0


def cmd_report(a) -> int:
    from .report import write_report, write_spec_report

    if a.spec:
        files = write_spec_report(a.dir, a.spec, a.output or a.dir)
    else:
        files = write_report(a.dir, a.output, commands=a.command or (), title=a.title, rows=a.row)
    for k, p in files.items():
        print(f"{k}: {p}")
    return 0


def cmd_sweep(a) -> int:
    from .experiments import load_config, run_sweep
    from .report import write_report

    cfg = load_config(a.config, None if a.config else "demo", seeds=a.seeds, model=a.model, output_dir=a.output_dir,
                      workers=a.workers, data_dir=a.data_dir)
    run_sweep(cfg, a.target, a.vary[0], a.vary[1:])
    files = write_report(cfg["output_dir"], commands=[" ".join(["mtft-nlp", "sweep", *sys.argv[2:]])],
                         title=f"Sweep of {a.vary[0]} for {a.target}")
    print(f"report: {files['markdown']}")
    return 0


def cmd_tasks(a) -> int:
    from .tasks import available_tasks, get_task
    from .metrics import METRIC_NAMES

    for name in available_tasks():
        t = get_task(name)
        print(f"{t.name:8s} {len(t.labels)} labels  metric {METRIC_NAMES[t.metric]:15s} {t.source_file}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .data import DEFAULT_K, SEEDS

    from . import __version__

    p = _Parser(prog="mtft-nlp", description="Few-shot prompt-based finetuning toolkit (LM-BFF protocol).")
    p.add_argument("--version", action="version", version=f"mtft-nlp {__version__}")
    p.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("splits", help="write LM-BFF k-shot splits (byte-identical to LM-BFF's)")
    s.add_argument("--data_dir", required=True, help="LM-BFF original/ folder (holding SST-2/, sst-5/, ...)")
    s.add_argument("--output_dir", required=True, help="where <TASK>/<K>-<seed>/ folders are written")
    s.add_argument("--tasks", nargs="+", required=True, help="task names (case-insensitive)")
    s.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS), help="split seeds (default: 13 21 42 87 100)")
    s.add_argument("--k", type=int, default=DEFAULT_K, help="examples per class (default 16)")
    s.set_defaults(func=cmd_splits)

    t = sub.add_parser("table", help="mean (std) x 100 per task and row over the results.json files below DIR")
    t.add_argument("dir")
    t.add_argument("--format", choices=["markdown", "latex", "csv"], default="markdown")
    t.add_argument("--row", nargs="+", help="only these rows")
    t.add_argument("--titles", action="store_true", help="row titles also in CSV (the default for markdown and latex, "
                                                         "as in the report)")
    t.add_argument("--ids", action="store_true", help="row ids (pbft, mt-pbft, ...) instead of titles (the CSV default)")
    t.set_defaults(func=cmd_table)

    r = sub.add_parser("run", help="run the (target, row, seed) grid, resumable, then write the report")
    r.add_argument("--config", help="a YAML config (configs/paper.yaml, configs/minilm.yaml, configs/demo.yaml); "
                                    "default: configs/demo.yaml, or configs/minilm.yaml when targets/rows/seeds are given")
    r.add_argument("--targets", nargs="+")
    r.add_argument("--rows", nargs="+",
                   help="any of zero-shot mt-zero-shot mt-sel-zero-shot pbft mt-pbft mt-sel-pbft (the paper's rows; "
                        "'all' = these six) and the task-selection ablations mt-random-pbft mt-nocon-pbft mt-nodiv-pbft "
                        "(and their -zero-shot forms; 'ablations' = mt-sel-pbft and the three -pbft ablations)")
    r.add_argument("--seeds", nargs="+", type=int)
    r.add_argument("--model", help="masked LM (default from the config)")
    r.add_argument("--output_dir")
    r.add_argument("--data_dir")
    r.add_argument("--workers", type=int, help="parallel cell processes (one GPU each when several are visible)")
    r.add_argument("--cells_per_device", type=int, help="cell processes packed onto each visible GPU "
                   "(default 1; the number of workers is raised to GPUs x this)")
    r.set_defaults(func=cmd_run)

    rp = sub.add_parser("report", help="RESULTS.md + CSV + LaTeX + PNG plots from the results below DIR")
    rp.add_argument("dir")
    rp.add_argument("--output", help="folder for the report files (default: DIR)")
    rp.add_argument("--title", default="Results")
    rp.add_argument("--row", nargs="+", help="only these rows")
    rp.add_argument("--command", nargs="*", help="the commands that produced the results (recorded in the report)")
    rp.add_argument("--spec", help="a YAML layout combining several benchmark folders below DIR into one document "
                                   "(sections with text, tables, per-target differences, run listings); "
                                   "benchmarks/report.yaml makes docs/RESULTS.md")
    rp.set_defaults(func=cmd_report)

    sw = sub.add_parser("sweep", help="vary the number of finetuning tasks or the shots per class for one target")
    sw.add_argument("--target", required=True)
    sw.add_argument("--vary", nargs="+", required=True, metavar="VAR VALUES", help="num_tasks 1 2 4 8 12 | shots 4 8 16 32")
    sw.add_argument("--config")
    sw.add_argument("--seeds", nargs="+", type=int)
    sw.add_argument("--model")
    sw.add_argument("--output_dir", required=True)
    sw.add_argument("--data_dir")
    sw.add_argument("--workers", type=int)
    sw.set_defaults(func=cmd_sweep)

    pr = sub.add_parser("predict", help="classify raw texts with a saved prompt classifier")
    pr.add_argument("--model", required=True, help="a saved classifier folder (a run's best/) or a Hub repo id")
    pr.add_argument("--input", required=True, help=".txt (one text per line, tab between a pair), .jsonl (text/text_a, text_b) or .csv")
    pr.add_argument("--output", required=True, help="JSON Lines: text, prediction (the task's label), label_word "
                                                    "(its verbaliser word), probabilities")
    pr.add_argument("--probabilities", action="store_true", help="also write class probabilities")
    pr.add_argument("--batch_size", type=int, default=32)
    pr.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")
    pr.set_defaults(func=cmd_predict)

    k = sub.add_parser("tasks", help="list the packaged tasks")
    k.set_defaults(func=cmd_tasks)

    from . import selection

    selection.register_cli(sub)

    sub.add_parser("multitask", help="multitask finetuning stage before prompt-based FT (see 'mtft-nlp multitask --help')",
                   add_help=False)
    sub.add_parser("train", help="one prompt-based FT / zero-shot run (the flags of run_glue_fewshot.py; see 'mtft-nlp train --help')",
                   add_help=False)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "cells":  # internal: a batch of grid cells in one process (mtft-nlp run)
        from .experiments import run_cells

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
