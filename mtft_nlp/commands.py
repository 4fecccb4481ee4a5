"""The subcommands of ``mtft-nlp`` (``splits``, ``table``, ``run``, ``report``, ``sweep``, ``predict``, ``tasks``),
the cheap checks that run before a training run imports torch, and the line a training run ends with.

:mod:`mtft_nlp.cli` builds the parser and dispatches to the ``cmd_*`` functions here; each takes the parsed
``argparse.Namespace`` and returns the exit status (bad input raises :class:`MtftError`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

from .io import RESULTS_FILE, check_output_dir, is_complete
from .tasks import MtftError

__all__ = [
    "cmd_fit",
    "quick_checks",
    "summary_line",
    "print_summary",
    "read_inputs",
    "cmd_splits",
    "cmd_table",
    "cmd_predict",
    "cmd_run",
    "cmd_report",
    "cmd_sweep",
    "cmd_tasks",
]


# --------------------------------------------------------------------------- before a training run


def _int_option(ns, name: str) -> Optional[int]:
    v = getattr(ns, name)
    if v is None:
        return None
    try:
        return int(v)
    except ValueError:
        raise MtftError(f"--{name} must be an integer, got {v!r}") from None


def _true(value: Optional[str]) -> bool:
    return (value or "false").lower() in ("true", "1", "yes")


def _check_model_option(m: Optional[str], allow_pickle: bool) -> None:
    """``--model_name_or_path``: a path-like name must exist; a local folder needs usable weights and config."""
    if m and not os.path.exists(m) and (m.startswith((".", "/", "~")) or m.count("/") > 1):
        raise MtftError(f"--model_name_or_path {m}: folder not found")
    if not (m and os.path.isdir(m)):
        return
    from .models import check_model_folder
    from .tasks import check_weights_format

    check_weights_format(m, allow_pickle=allow_pickle)
    check_model_folder(m)
    cfg = os.path.join(m, "config.json")
    if os.path.isfile(cfg):
        try:
            with open(cfg, encoding="utf-8") as f:
                json.load(f)
        except (ValueError, OSError) as exc:
            raise MtftError(f"--model_name_or_path {m}: {cfg} is not valid JSON ({exc})") from None


def quick_checks(argv: List[str]) -> None:
    """Cheap checks of the project's own options before torch and transformers are imported (a few
    seconds), so that common mistakes fail at once; everything is checked again later."""
    from .data.readers import check_k, check_seed
    from .tasks import get_task

    config_file = len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml"))
    if not argv or any(a in ("-h", "--help") for a in argv) or config_file:
        return
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for name in ("task_name", "task_file", "output_dir", "model_name_or_path", "k", "seed", "max_steps"):
        p.add_argument(f"--{name}")
    p.add_argument("--zero_shot", nargs="?", const="true")
    p.add_argument("--allow_pickle", nargs="?", const="true")

    class _LeftToTheFullParser(Exception):
        pass

    def leave(message):  # the full parser reports it, once (this one would print its own usage first)
        raise _LeftToTheFullParser(message)

    p.error = leave
    try:
        ns, _ = p.parse_known_args(argv)
    except _LeftToTheFullParser:
        return
    if ns.task_name or ns.task_file:
        get_task(ns.task_file or ns.task_name)
    if ns.k is not None:
        check_k(_int_option(ns, "k"))
    if ns.seed is not None:
        check_seed(_int_option(ns, "seed"))
    if ns.max_steps is not None and _int_option(ns, "max_steps") == 0 and not _true(ns.zero_shot):
        raise MtftError("--max_steps 0 would train nothing: use --zero_shot to evaluate the prompt without training")
    if ns.output_dir:
        check_output_dir(ns.output_dir)
    _check_model_option(ns.model_name_or_path, _true(ns.allow_pickle))


# --------------------------------------------------------------------------- after a training run


def summary_line(record: dict, training_args, args) -> str:
    """The one line a training run ends with: task, seed, row, dev, test, metric, where things went."""
    out = training_args.output_dir
    if args.zero_shot:
        model = "not saved (zero-shot)"
    elif not args.save_model:
        model = "not saved (--save_model false)"
    elif not _saves_model(record.get("method")):
        model = f"not saved (the {_title(record.get('method'))} peer is measured, not kept)"
    else:
        model = os.path.join(out, "best")
    return (
        f"done: {record['task']} seed {record['seed']} row {record['row']}: dev {record['metric']} "
        f"{record['dev_score']:.4f}, test {record['metric']} {record['test_score']:.4f} "
        f"({record.get('n_test', '?')} test examples); results: {os.path.join(out, RESULTS_FILE)}; model: {model}"
    )


def cmd_fit(a) -> int:
    from .fit import fit

    fit(
        a.train_file,
        a.output_dir,
        text_a_column=a.text_a_column,
        label_column=a.label_column,
        text_b_column=a.text_b_column,
        validation_file=a.validation_file,
        test_file=a.test_file,
        labels=a.labels,
        descriptions=a.descriptions,
        task_name=a.task_name,
        sources=a.sources,
        model=a.model,
        method=a.method,
        source_data_dir=a.source_data_dir,
        seed=a.seed,
        stage_steps=a.stage_steps,
        max_steps=a.max_steps,
    )
    return 0


def _saves_model(method: Optional[str]) -> bool:
    from .methods import get_method

    return get_method(method).saves_model if method else True


def _title(method: str) -> str:
    from .methods import get_method

    return get_method(method).title


def print_summary(record, parsed) -> None:
    """The :func:`summary_line` of a finished run, printed by the main process only."""
    if int(os.environ.get("RANK", "0")) == 0 and isinstance(record, dict):
        print(summary_line(record, parsed[-1], parsed[1]), flush=True)


# --------------------------------------------------------------------------- subcommands


def cmd_splits(a) -> int:
    from .data.kshot import write_splits

    written = write_splits(a.tasks, a.data_dir, a.output_dir, a.seeds, a.k)
    for p in written:
        print(p)
    return 0


def cmd_table(a) -> int:
    from .reporting.results import aggregate, find_results, format_table

    results = find_results(a.dir)
    if a.row:
        results = [r for r in results if r["row"] in a.row]
    if not results:
        raise MtftError(f"no results.json found below {a.dir}")
    # the run's table and the report name rows by their titles; so does this one, except in CSV or with --ids
    titles = a.titles or (not a.ids and a.format != "csv")
    sys.stdout.write(format_table(aggregate(results), a.format, titles=titles))
    return 0


def _text_file_rows(p: str):
    """``(line, {"text_a", "text_b"})`` of a .txt file: one input per non-blank line, a tab separates a pair."""
    from .data.readers import DataError

    if not os.path.isfile(p):
        raise DataError(f"input file not found: {p}")
    try:
        with open(p, encoding="utf-8") as f:
            return [
                (i, dict(zip(("text_a", "text_b"), line.rstrip("\r\n").split("\t", 1))))
                for i, line in enumerate(f, 1)
                if line.strip()
            ]
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_inputs(path: str, with_rows: bool = False):
    """Texts (and pairs) from .txt (one per line; a tab separates a pair), .jsonl or .csv files.

    With ``with_rows``, also the ``file:line`` of each input (file lines, as editors number them)."""
    from .data.readers import DataError, read_rows_numbered

    p = os.fspath(path)
    rows = read_rows_numbered(p) if p.endswith((".jsonl", ".json", ".csv", ".tsv")) else _text_file_rows(p)
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


def _prediction_lines(clf, texts, pairs, preds, probs) -> List[str]:
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
    return lines


def cmd_predict(a) -> int:
    from .io import atomic_write_text
    from .methods import load_classifier

    texts, pairs, names = read_inputs(a.input, with_rows=True)  # bad input fails before the model loads
    if os.path.isdir(a.output):
        raise MtftError(f"--output {a.output} is a folder; name a .jsonl file")
    clf = load_classifier(a.model, device=a.device)  # a prompt or an embedding classifier
    out = clf.predict(texts, pairs, batch_size=a.batch_size, return_probabilities=a.probabilities, row_names=names)
    preds, probs = out if a.probabilities else (out, None)
    lines = _prediction_lines(clf, texts, pairs, preds, probs)
    atomic_write_text(a.output, "\n".join(lines) + "\n")
    print(f"{len(texts)} predictions written to {a.output}")
    return 0


def _slurm_overrides(section: dict, pairs: List[str]) -> dict:
    """The config's ``slurm:`` section with ``--slurm KEY=VALUE`` pairs over it (values read as YAML scalars,
    ``sbatch.NAME=VALUE`` an extra sbatch option), checked like the config."""
    import yaml

    from .records import ExperimentConfig

    out = {**section, "sbatch": dict(section.get("sbatch") or {})}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MtftError(f"--slurm {pair!r}: expected KEY=VALUE, e.g. partition=gpu")
        try:
            parsed = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            parsed = value
        if key.startswith("sbatch."):
            out["sbatch"][key[len("sbatch.") :]] = parsed
        else:
            out[key] = parsed
    return ExperimentConfig.backend_options(out, "slurm", "--slurm")


def cmd_run(a) -> int:
    from .grid.workers import grid_command_signals

    cfg = None
    try:
        with grid_command_signals():  # Ctrl-C or SIGTERM at any phase: the jobs stopped, finished results kept
            cfg = _run_config(a)
            return _run_grid(cfg)
    except KeyboardInterrupt:
        return _interrupted(cfg)


def _run_config(a) -> dict:
    from .grid.plan import load_config

    preset = None if a.config else "demo"
    if any(v is not None for v in (a.targets, a.rows, a.seeds, a.model)) and not a.config:
        preset = "minilm"
    cfg = load_config(
        a.config,
        preset,
        targets=a.targets,
        rows=a.rows,
        seeds=a.seeds,
        model=a.model,
        output_dir=a.output_dir,
        workers=a.workers,
        data_dir=a.data_dir,
        cells_per_device=a.cells_per_device,
        backend=a.backend,
    )
    if a.ray_address:
        cfg["ray"] = {**cfg["ray"], "address": a.ray_address}
    if a.slurm:
        cfg["slurm"] = _slurm_overrides(cfg["slurm"], a.slurm)
    return cfg


def _run_grid(cfg: dict) -> int:
    from .grid.plan import run_plan
    from .reporting.report import write_report

    print(
        f"mtft-nlp run: {len(cfg['targets'])} targets x {len(cfg['rows'])} rows x {len(cfg['seeds'])} seeds "
        f"-> {cfg['output_dir']}",
        flush=True,
    )
    counts = run_plan(cfg)
    files = write_report(cfg["output_dir"], commands=[" ".join(["mtft-nlp", "run", *sys.argv[2:]])])
    sys.stdout.write("\n" + files["markdown"].read_text().split("\n## Protocol")[0] + "\n")
    print(f"{counts['ran']} cells run, {counts['cells'] - counts['ran']} already done; report: {files['markdown']}")
    return 0


def _interrupted(cfg: Optional[dict]) -> int:
    """The one line of a stopped grid command (exit 130): how many of its cells are finished, and how to resume."""
    done = ""
    if cfg is not None:
        from .grid.plan import Plan

        cells = Plan(cfg).cells()
        done = f": {sum(is_complete(c['dir'], RESULTS_FILE) for c in cells)} of {len(cells)} cells finished"
    print(f"\ninterrupted{done} (running jobs stopped); rerun the same command to resume", file=sys.stderr, flush=True)
    return 130


def cmd_report(a) -> int:
    from .reporting.report import write_report, write_spec_report

    if a.spec:
        files = write_spec_report(a.dir, a.spec, a.output or a.dir)
    else:
        files = write_report(a.dir, a.output, commands=a.command or (), title=a.title, rows=a.row)
    for k, p in files.items():
        print(f"{k}: {p}")
    return 0


def cmd_sweep(a) -> int:
    from .grid.plan import load_config, run_sweep
    from .grid.workers import grid_command_signals
    from .reporting.report import write_report

    cfg = None
    try:
        with grid_command_signals():  # as mtft-nlp run
            cfg = load_config(
                a.config,
                None if a.config else "demo",
                seeds=a.seeds,
                model=a.model,
                output_dir=a.output_dir,
                workers=a.workers,
                data_dir=a.data_dir,
            )
            run_sweep(cfg, a.target, a.vary[0], a.vary[1:], a.method)
            files = write_report(
                cfg["output_dir"],
                commands=[" ".join(["mtft-nlp", "sweep", *sys.argv[2:]])],
                title=f"Sweep of {a.vary[0]} for {a.target}",
            )
    except KeyboardInterrupt:
        print("\ninterrupted (running jobs stopped); rerun the same command to resume", file=sys.stderr, flush=True)
        return 130
    print(f"report: {files['markdown']}")
    return 0


def cmd_tasks(a) -> int:
    from .metrics import METRIC_NAMES
    from .tasks import available_tasks, get_task

    for name in available_tasks():
        t = get_task(name)
        print(f"{t.name:8s} {len(t.labels)} labels  metric {METRIC_NAMES[t.metric]:15s} {t.source_file}")
    return 0
