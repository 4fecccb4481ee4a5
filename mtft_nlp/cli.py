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
    print(f"error: {exc}", file=sys.stderr)
    return 2


def _hf_entry(dataclass_types, run, argv, **parser_kwargs) -> int:
    """Parse HF-style arguments (or one .json/.yaml file), set up logging, run; bad input -> exit 2."""
    from transformers import HfArgumentParser
    import transformers

    parser = HfArgumentParser(dataclass_types, **parser_kwargs)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
            loader = parser.parse_json_file if argv[0].endswith(".json") else parser.parse_yaml_file
            parsed = loader(os.path.abspath(argv[0]))
        else:
            parsed = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as exc:  # includes MtftError and TrainingArguments' own validation
        return _fail(exc)
    _setup_logging()
    log_level = parsed[-1].get_process_log_level()
    logging.getLogger("mtft_nlp").setLevel(log_level)
    transformers.utils.logging.set_verbosity(max(log_level, logging.WARNING))
    try:
        run(*parsed)
    except MtftError as exc:
        return _fail(exc)
    return 0


def run_glue_main(argv: Optional[List[str]] = None) -> int:
    """Entry of ``run_glue_fewshot.py`` and ``mtft-nlp train``."""
    from .training import ModelArguments, PromptArguments, PromptTrainingArguments, run_prompt_experiment

    return _hf_entry((ModelArguments, PromptArguments, PromptTrainingArguments), run_prompt_experiment, argv,
                     description="Prompt-based few-shot finetuning (LM-BFF) of a masked LM on one task and seed.")


def multitask_main(argv: Optional[List[str]] = None) -> int:
    """Entry of ``mtft-nlp multitask``: the multitask finetuning stage."""
    from .multitask import MultitaskArguments, MultitaskTrainingArguments, run_multitask
    from .training import ModelArguments

    return _hf_entry((ModelArguments, MultitaskArguments, MultitaskTrainingArguments), run_multitask, argv,
                     prog="mtft-nlp multitask",
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
    sys.stdout.write(format_table(aggregate(results), a.format, titles=a.titles))
    return 0


def _read_inputs(path: str):
    """Texts (and pairs) from .txt (one per line; a tab separates a pair), .jsonl or .csv files."""
    from .data import DataError

    from .data import read_rows

    p = os.fspath(path)
    if p.endswith((".jsonl", ".json", ".csv", ".tsv")):
        rows = read_rows(p)
    else:
        if not os.path.isfile(p):
            raise DataError(f"input file not found: {p}")
        with open(p, encoding="utf-8") as f:
            rows = [dict(zip(("text_a", "text_b"), line.rstrip("\r\n").split("\t", 1))) for line in f if line.strip()]
    texts, pairs = [], []
    for i, row in enumerate(rows, 1):
        a = row.get("text_a", row.get("text", row.get("sentence")))
        if a is None:
            raise DataError(f"{p}:{i}: no 'text' or 'text_a' field")
        texts.append(a)
        pairs.append(row.get("text_b", row.get("text_pair")))
    return texts, (pairs if any(x is not None for x in pairs) else None)


def cmd_predict(a) -> int:
    from .hub import PromptClassifier
    from .results import atomic_write_text

    clf = PromptClassifier.from_pretrained(a.model, device=a.device)
    texts, pairs = _read_inputs(a.input)
    out = clf.predict(texts, pairs, batch_size=a.batch_size, return_probabilities=a.probabilities)
    preds, probs = out if a.probabilities else (out, None)
    import json

    lines = []
    for i, text in enumerate(texts):
        row = {"text": text}
        if pairs is not None:
            row["text_pair"] = pairs[i]
        row["prediction"] = preds[i]
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
                      output_dir=a.output_dir, workers=a.workers, data_dir=a.data_dir)
    print(f"mtft-nlp run: {len(cfg['targets'])} targets x {len(cfg['rows'])} rows x {len(cfg['seeds'])} seeds "
          f"-> {cfg['output_dir']}", flush=True)
    counts = run_plan(cfg)
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

    p = argparse.ArgumentParser(prog="mtft-nlp", description="Few-shot prompt-based finetuning toolkit (LM-BFF protocol).")
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
    t.add_argument("--titles", action="store_true", help="the paper's row titles instead of row ids")
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
    pr.add_argument("--output", required=True, help="JSON Lines: text, prediction, probabilities")
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
    if argv and argv[0] == "train":
        return run_glue_main(argv[1:])
    if argv and argv[0] == "multitask":
        return multitask_main(argv[1:])
    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s - %(name)s - %(message)s")
    try:
        return a.func(a)
    except MtftError as exc:
        return _fail(exc)


if __name__ == "__main__":
    sys.exit(main())
