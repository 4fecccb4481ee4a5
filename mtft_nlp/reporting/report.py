"""``mtft-nlp report DIR``: RESULTS.md, CSV, LaTeX and PNG plots from the results.json files below DIR.

The table is the paper's layout (tasks as columns, rows as methods, mean (std) x 100 over
the seeds, best per column in bold, the metric per task), with footnotes on the protocol,
the environment the results were measured in, and the commands that produced them.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .. import rows as _rows
from ..io import STAGE_FILE, atomic_write_text
from .plotting import plot_bars, plot_sweeps
from .results import PAPER_TASK_ORDER, aggregate, find_results, format_table, task_order


def _protocol_lines(results: List[Dict]) -> List[str]:
    def values(key):
        return sorted({str(r.get(key)) for r in results if r.get(key) is not None})

    models = sorted({r.get("model") for r in results if r.get("model")})
    lines = [
        f"- Models: {', '.join(models)}."
        + (
            " The embedded all-MiniLM-L6-v2 has no pretrained MLM head (zero-shot prompting with it is at chance); "
            "RoBERTa-large is the model for real numbers."
            if any(r.get("embedded_default_model") for r in results)
            else ""
        ),
        f"- Split seeds: {', '.join(values('seed'))}; K = {', '.join(values('k'))} per class (LM-BFF splits).",
        f"- Training steps: {', '.join(v for v in values('max_steps') if v != '0')}; learning rates: "
        f"{', '.join(values('learning_rate'))}; batch sizes: {', '.join(values('train_batch_size'))}.",
        "- Test metric x 100: mean (population std, ddof 0) over the seeds; a single number where there is one run.",
        "- Best dev checkpoint (strict improvement on the k-shot dev set) is the one evaluated on test.",
    ]
    caps = sorted({r.get("n_test") for r in results if r.get("n_test")})
    if caps and max(caps) <= 1000:
        lines.append(
            f"- Test sets capped at {max(caps)} examples (a fixed random subset, the same for every seed and row)."
        )
    return lines


def _env_values(results: List[Dict], key: str, missing: Optional[str] = None) -> str:
    """The distinct values of one ``env`` field over the runs, sorted and comma-joined."""
    envs = [r.get("env") or {} for r in results]
    return ", ".join(sorted({str(e.get(key, missing)) for e in envs if key in e or missing is not None}))


def _run_minutes(results: List[Dict]) -> float:
    return sum(float(r.get("train_seconds") or 0) + float(r.get("eval_seconds") or 0) for r in results) / 60


def _environment(results: List[Dict]) -> List[str]:
    out = []
    for key in ("device", "torch", "transformers", "mtft_nlp", "git_revision", "platform", "cpu_count"):
        vals = _env_values(results, key)
        if vals:
            out.append(f"- {key}: {vals}")
    out.append(f"- total train + eval time of these runs: {_run_minutes(results):.1f} min over {len(results)} runs")
    return out


def write_report(
    root: str,
    out_dir: Optional[str] = None,
    commands: Sequence[str] = (),
    title: str = "Results",
    rows: Optional[Sequence[str]] = None,
    intro: str = "",
) -> Dict[str, Path]:
    """Write RESULTS.md, results.csv, results.tex, results.png (and sweeps.png) for ``root``."""
    root_p = Path(root)
    out = Path(out_dir) if out_dir else root_p
    results = [r for r in find_results(root_p) if not rows or r["row"] in rows]
    if not results:
        from ..tasks import MtftError

        raise MtftError(f"no results.json found below {root}")
    agg = aggregate(results)
    files = {
        "csv": out / "results.csv",
        "latex": out / "results.tex",
        "plot": out / "results.png",
        "markdown": out / "RESULTS.md",
    }
    atomic_write_text(files["csv"], format_table(agg, "csv"))
    atomic_write_text(files["latex"], format_table(agg, "latex", titles=True))
    plot_bars(agg, files["plot"])
    sweeps = plot_sweeps(root_p, out / "sweeps.png")
    n = {(a["task"], a["row"]): a["n"] for a in agg}
    md = [f"# {title}", ""]
    if intro:
        md += [intro, ""]
    md += [
        format_table(agg, "markdown", titles=True).rstrip(),
        "",
        f"Runs per cell (seeds): {min(n.values())}-{max(n.values())}. Metric per task in the header "
        "(accuracy where none is named).",
        "",
        "## Protocol",
        "",
    ] + _protocol_lines(results)
    chosen = selections_table(root_p)
    if chosen:
        md += ["", "## Task selection", "", "Sources chosen for each target (`selection/*.json`):", ""] + chosen
    stages = _stages_table(root_p)
    if stages:
        md += ["", "## Multitask stages", ""] + stages
    md += ["", "## Commands", ""] + ([f"    {c}" for c in commands] or ["    (not recorded)"])
    md += ["", "## Environment", ""] + _environment(results)
    md += ["", f"![per-task results]({files['plot'].name})"]
    if sweeps:
        files["sweeps"] = sweeps
        md += ["", f"![sweeps]({sweeps.name})"]
    md += [
        "",
        f"CSV: [{files['csv'].name}]({files['csv'].name}), LaTeX: [{files['latex'].name}]({files['latex'].name}).",
    ]
    atomic_write_text(files["markdown"], "\n".join(md) + "\n")
    return files


# --------------------------------------------------------------------------- multi-benchmark reports


_METHOD_ORDER = ("selected", "random", "no-consistency", "no-diversity")


def _column(task: str):
    """Sort key: the paper's column order, then alphabetical."""
    return (PAPER_TASK_ORDER.index(task), task) if task in PAPER_TASK_ORDER else (len(PAPER_TASK_ORDER), task)


def _selection_records(root: Path) -> List[Dict]:
    """Every ``selection/*.json`` the runner wrote below ``root``, in the paper's target order then method order:
    target, method, the chosen sources, the coverage after each added source and where the greedy loop stopped
    (the first candidate that did not raise coverage by the factor 1 + p, with the coverage it would have given)."""
    records: Dict[Tuple[str, str, Tuple[str, ...]], Dict] = {}
    for p in sorted(root.rglob("selection/*.json")):
        try:
            s = json.loads(p.read_text(encoding="utf-8"))
            key = (s["target"], s.get("method", "selected"), tuple(s["selected"]))
            stop = next((c for c in s.get("candidates") or [] if c.get("decision") == "stop"), None)
            coverage = s.get("coverage") if isinstance(s.get("coverage"), dict) else {}
            records[key] = {
                "target": key[0],
                "method": key[1],
                "selected": key[2],
                "curve": [float(c) for c in s.get("coverage_after_step") or [] if c is not None],
                "stop": "-" if stop is None else stop["task"] + _coverage_note(stop.get("coverage")),
                "coverage": coverage.get("name", "?"),
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not a selection file of this project's format
    return [records[k] for k in sorted(records, key=lambda r: (_column(r[0]), _method_key(r[1]), r[2]))]


def _coverage_note(coverage) -> str:
    return "" if coverage is None else f" ({float(coverage):.2f})"


def _selection_files(root: Path) -> List[Tuple[str, str, Tuple[str, ...]]]:
    """(target, method, chosen sources) of every ``selection/*.json`` the runner wrote below ``root``."""
    return [(r["target"], r["method"], r["selected"]) for r in _selection_records(root)]


def _method_key(method: str):
    return (_METHOD_ORDER.index(method) if method in _METHOD_ORDER else len(_METHOD_ORDER), method)


def selections_table(root: Path) -> List[str]:
    """Per target, the sources each selection method chose (the ``selection/*.json`` the runner writes), the
    coverage of the target after each chosen source (the coverage curve) and the candidate the loop stopped at."""
    records = _selection_records(root)
    if not records:
        return []
    out = [
        "| target | method | chosen sources | n | coverage after each | stopped at (its coverage) |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        curve = ", ".join(f"{c:.2f}" for c in r["curve"]) or "-"
        out.append(
            f"| {r['target']} | {r['method']} | {', '.join(r['selected'])} | {len(r['selected'])} | {curve} "
            f"| {r['stop']} |"
        )
    names = ", ".join(f"`{n}`" for n in sorted({r["coverage"] for r in records}))
    out += [
        "",
        f"Coverage ({names}, defined in docs/SELECTION.md): how much of the target's k-shot examples the chosen "
        "sources cover. Selected and No-consistency stop at the first candidate that does not raise it by the factor "
        "1 + p; Random and No-diversity do not test it (their curve is given for comparison).",
    ]
    return out + _same_set_lines([(r["target"], r["method"], r["selected"]) for r in records])


def _same_set_lines(rows: Sequence[Tuple[str, str, Tuple[str, ...]]]) -> List[str]:
    """For each pair of selection methods, the targets on which both chose the same set (the runner then trains
    one stage and marks the second method's runs ``same_run_as``)."""
    sets: Dict[Tuple[str, str], set] = defaultdict(set)
    for t, m, sel in rows:
        sets[(t, m)].add(frozenset(sel))
    methods = sorted({m for _, m in sets}, key=_method_key)
    lines = []
    for i, a in enumerate(methods):
        for b in methods[i + 1 :]:
            both = sorted({t for t, m in sets if m == a and (t, b) in sets}, key=_column)
            same = [t for t in both if sets[(t, a)] & sets[(t, b)]]
            if both:
                lines.append(
                    f"- {a} and {b} chose the same set on {len(same)} of {len(both)} targets"
                    + (f" ({', '.join(same)})" if same else "")
                )
    return (
        ["", "Same set chosen by two methods (one stage trained, the second method's runs marked `same_run_as`):", ""]
        + lines
        if lines
        else []
    )


def _sweep_tables(root: Path) -> List[str]:
    """Per swept variable (``sweep.json`` files below ``root``, written by ``mtft-nlp sweep``), one table: a line
    per target, a column per value, mean (std) of the test metric x 100 over the seeds [seeds]."""
    points: Dict[str, Dict[str, Dict[float, Dict]]] = defaultdict(lambda: defaultdict(dict))
    for sweep_file in sorted(root.rglob("sweep.json")):
        try:
            sweep = json.loads(sweep_file.read_text(encoding="utf-8"))
            var, value = str(sweep["variable"]), float(sweep["value"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for a in aggregate(find_results(sweep_file.parent)):
            points[var][a["task"]][value] = a
    out = []
    for var in sorted(points):
        values = sorted({v for by_value in points[var].values() for v in by_value})
        out += ["| target | " + " | ".join(f"{var} = {v:g}" for v in values) + " |", "|---|" + "---|" * len(values)]
        for task in sorted(points[var], key=_column):
            cells = [points[var][task].get(v) for v in values]
            out.append(
                f"| {task} | "
                + " | ".join(f"{a['mean']:.1f} ({a['std']:.1f}) [{a['n']}]" if a else "-" for a in cells)
                + " |"
            )
        out += ["", "Test metric x 100, mean (std) over the seeds [number of seeds].", ""]
    return out


def stage_origin(m: Dict, names: Sequence[str], chosen: Dict) -> str:
    """Who chose a stage's sources: its own origin first (``all`` = leave-one-out, or an explicit ``list``),
    otherwise every selection method that chose exactly these sources (its own metadata's method and those of
    the selection files below the same folder: methods choosing the same set share one stage), or
    ``selection file`` when none names a method."""
    if m.get("sources_origin") == "all":
        return "all (leave-one-out)"
    if m.get("sources_origin") == "list":
        return "list"
    methods = set(chosen.get((m["target"], frozenset(names)), ()))
    if (m.get("selection") or {}).get("method"):
        methods.add(m["selection"]["method"])
    return ", ".join(sorted(methods, key=_method_key)) or "selection file"


def _stages_table(root: Path) -> List[str]:
    """One line per multitask stage below ``root`` (its ``multitask_config.json``): who chose its sources,
    the sources, steps, learning rate, the sources' k-shot dev accuracy and loss before and after the stage
    (means over the sources), and the source examples excluded for sharing text with the target's test set."""
    chosen: Dict = {}
    for t, method, sel in _selection_files(root):
        chosen.setdefault((t, frozenset(sel)), []).append(method)
    lines, seconds = [], 0.0
    for p in sorted(root.rglob(STAGE_FILE)):
        try:
            m = json.loads(p.read_text(encoding="utf-8"))
            before, after = m["dev_before"], m["dev_after"]
            tasks = sorted((set(before) & set(after)) - {"mean"})
            acc = [sum(d[t]["acc"] for t in tasks) / len(tasks) for d in (before, after)]
            loss = [sum(d[t]["loss"] for t in tasks) / len(tasks) for d in (before, after)]
            # the guard drops the normalised matches (a superset of the exact ones) unless --allow_overlap
            shared = sum(int((s.get("overlap_with_target_test") or {}).get("normalized", 0)) for s in m["sources"])
            excluded = f"0 ({shared} kept)" if m.get("allow_overlap") else shared
            names = [s["task"] for s in m["sources"]]
            origin = stage_origin(m, names, chosen)
            # the evaluations during the stage (every --eval_steps), without the last one (= after)
            during = ", ".join(
                f"{int(k)}: {v['mean']['acc']:.3f} / {v['mean']['loss']:.3f}"
                for k, v in sorted((m.get("dev_history") or {}).items(), key=lambda kv: int(kv[0]))
                if "mean" in v and 0 < int(k) < int(m.get("max_steps") or 0)
            )
        except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
            continue
        seconds += float(m.get("train_seconds") or 0)
        lines.append(
            (
                _column(m["target"]),
                m["target"],
                origin,
                len(names) if len(names) > 4 else ", ".join(names),
                m.get("max_steps"),
                m.get("learning_rate"),
                acc,
                loss,
                during,
                excluded,
                m.get("objective"),
            )
        )
    if not lines:
        return []
    show_during = any(line[8] for line in lines)
    show_objective = any(line[10] for line in lines)  # stages that record their objective (issue 26 on)
    out = [
        "| target | chosen by | sources |"
        + (" objective |" if show_objective else "")
        + " steps | lr | source dev acc before -> after | source dev loss before -> "
        "after |" + (" during (step: acc / loss) |" if show_during else "") + " excluded (overlap) |",
        "|---|---|---|---|---|---|---|---|" + ("---|" if show_during else "") + ("---|" if show_objective else ""),
    ]
    for _, t, origin, names, steps, lr, acc, loss, during, excl, objective in sorted(
        lines, key=lambda x: (x[0], x[1], _method_key(x[2].split(", ")[0]), x[10] or "")
    ):
        out.append(
            f"| {t} | {origin} | {names} |"
            + (f" {objective or 'cross_entropy'} |" if show_objective else "")
            + f" {steps} | {lr:g} | {acc[0]:.3f} -> {acc[1]:.3f} | {loss[0]:.3f} -> "
            f"{loss[1]:.3f} |" + (f" {during or '-'} |" if show_during else "") + f" {excl} |"
        )
    return out + [
        "",
        "Source dev accuracy and loss: means over the sources' k-shot dev splits (as many as the stage "
        "evaluated), before, during (every `--eval_steps`) and after the stage. "
        f"Training time of these {len(lines)} stages: {seconds / 60:.1f} min in all (summed over the stages).",
    ]


def _deltas(agg: List[Dict], pairs: Sequence[Sequence[str]]) -> List[str]:
    """Per-target differences of row means (row - base), a verdict, and their average."""
    cell = {(a["task"], a["row"]): a for a in agg}
    out = []
    for row, base in pairs:
        tasks = [t for t in task_order(a["task"] for a in agg) if (t, row) in cell and (t, base) in cell]
        if not tasks:
            continue
        diffs = {t: cell[(t, row)]["mean"] - cell[(t, base)]["mean"] for t in tasks}
        out += [
            f"`{row}` minus `{base}` (points), per target:",
            "",
            "| " + " | ".join(tasks) + " | mean |",
            "|" + "---|" * (len(tasks) + 1),
            "| " + " | ".join(f"{diffs[t]:+.1f}" for t in tasks) + f" | {sum(diffs.values()) / len(diffs):+.1f} |",
            "",
            f"`{row}` is better than `{base}` on {sum(d > 0 for d in diffs.values())} of {len(diffs)} targets "
            f"({', '.join(t for t in tasks if diffs[t] > 0) or 'none'}); mean difference "
            f"{sum(diffs.values()) / len(diffs):+.1f} points.",
            "",
        ]
    return out


def _agreement(results: List[Dict], other: List[Dict], rows: Sequence[str], names: Sequence[str]) -> List[str]:
    """How far the same (task, row, seed) cells measured twice (e.g. on two devices) are apart."""
    import statistics

    theirs = {(r["task"], r["row"], r.get("seed")): r["test_score"] for r in other}
    out = []
    for row in rows:
        diffs = [
            abs(100 * (r["test_score"] - theirs[(r["task"], row, r.get("seed"))]))
            for r in results
            if r["row"] == row and (r["task"], row, r.get("seed")) in theirs
        ]
        if diffs:
            out.append(
                f"Same `{row}` cells in {names[0]} and {names[1]} ({len(diffs)} pairs): median |difference| "
                f"{statistics.median(diffs):.1f} points, max {max(diffs):.1f}."
            )
    return out + ([""] if out else [])


def _run_fields(r: Dict) -> Dict:
    p = Path(r["_path"])
    extra = {
        "_run": p.parent.name,
        "_config": p.parent.parent.name,
        "_score100": 100 * float(r["test_score"]),
        "_dev_history": " ".join("%.2f" % h["score"] for h in r.get("dev_history") or []),
    }
    return {**r, **extra}


def _cell_seconds(r: Dict) -> float:
    return float(r.get("train_seconds") or 0) + float(r.get("eval_seconds") or 0)


def _times_table(results: List[Dict], pairs: Sequence[Sequence[str]]) -> List[str]:
    """Train + eval seconds per cell: each row's cells, total and median, then for each ``[row, other]`` pair the
    same on the (task, seed) cells both rows have, with the ratios row / other."""
    by_row: Dict[str, Dict[tuple, float]] = {}
    for r in results:
        by_row.setdefault(r["row"], {})[(r["task"], r.get("seed"))] = _cell_seconds(r)
    if not by_row:
        return []
    out = ["| row | cells | total min | median s per cell |", "|---|---|---|---|"]
    order = {row: i for i, row in enumerate(_rows.ROW_ORDER)}
    for row in sorted(by_row, key=lambda r: (order.get(r, len(order)), r)):
        secs = list(by_row[row].values())
        out.append(f"| {row} | {len(secs)} | {sum(secs) / 60:.1f} | {statistics.median(secs):.0f} |")
    out.append("")
    for row, other in pairs:
        common = sorted(set(by_row.get(row, {})) & set(by_row.get(other, {})), key=str)
        if not common:
            continue
        a = [by_row[row][k] for k in common]
        b = [by_row[other][k] for k in common]
        out.append(
            f"On the {len(common)} (target, seed) cells both have: `{row}` {sum(a) / 60:.1f} min in all, "
            f"median {statistics.median(a):.0f} s; `{other}` {sum(b) / 60:.1f} min, median "
            f"{statistics.median(b):.0f} s; total {sum(a) / sum(b):.2f}x, median "
            f"{statistics.median(a) / statistics.median(b):.2f}x."
        )
        out.append("")
    return out


def _env_line(results: List[Dict], folders: Sequence[str] = ()) -> str:
    """Where the runs were measured, how many and their summed train + eval time; with several result
    ``folders`` (their ``_results_folder``), the runs and minutes of each."""

    def vals(key):
        return _env_values(results, key, missing="?")

    per_folder = ""
    if len(folders) > 1:
        parts = []
        for d in folders:
            rs = [r for r in results if r.get("_results_folder") == d]
            parts.append(f"{d}: {len(rs)} runs, {_run_minutes(rs):.0f} min")
        per_folder = f" ({'; '.join(parts)})"
    return (
        f"Measured on: {vals('device')} ({vals('cpu_count')} CPU cores); torch {vals('torch')}, transformers "
        f"{vals('transformers')}, mtft-nlp {vals('mtft_nlp')}, git {vals('git_revision')}. {len(results)} runs, "
        f"{_run_minutes(results):.0f} min of train + eval time{per_folder}."
    )


def write_spec_report(root: str, spec_path: str, out_dir: str) -> Dict[str, Path]:
    """One document from several benchmarks' result folders, laid out by a YAML spec.

    The spec has ``title``, ``intro`` and ``sections``; each section may have ``text``
    (markdown; with ``data``, a mapping name -> JSON file under ``root``, it is formatted with
    ``str.format`` so that ``{speed[steps]}`` quotes a measured value), ``results`` (folders
    under ``root``), ``rows`` and ``seeds`` (filters) for a mean (std) table in the paper's layout (``table:
    false`` to leave it out),
    ``files`` (a base name: the table's CSV/LaTeX/PNG next to the document), ``deltas``
    (``[row, base]`` pairs: per-target differences), ``agreement`` (``{with: folder, rows:
    [...]}``: the same cells measured elsewhere), ``runs`` (``[[header, format], ...]``: one
    line per run), ``selections`` (a folder whose ``selection/*.json`` are listed), ``sweeps`` (a folder of
    ``mtft-nlp sweep`` outputs: a table per swept variable and its plot), ``stages``
    (a folder whose multitask stages are listed with their source dev scores) and
    ``commands`` and ``after`` (text after the tables); ``score: dev`` tabulates dev scores instead of test
    scores (a recipe search on dev sets) and ``row_from: folder`` makes each first-level subfolder of a results
    folder a row (one per candidate of such a search); ``times`` (``[row, other]`` pairs) adds the seconds per
    cell of each row and, for each pair, their totals and medians on the cells both have. Every number comes
    from the result files; a section whose results or data files are missing is left out.
    """
    import yaml

    from ..tasks import MtftError

    root_p, out = Path(root), Path(out_dir)
    try:
        spec = yaml.safe_load(Path(spec_path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise MtftError(f"report spec {spec_path}: {exc}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("sections"), list):
        raise MtftError(f"report spec {spec_path} needs a 'sections' list")
    md = [f"# {spec.get('title', 'Results')}", ""] + ([spec["intro"].rstrip(), ""] if spec.get("intro") else [])
    files: Dict[str, Path] = {}
    for i, sec in enumerate(spec["sections"]):
        unknown = set(sec) - _SECTION_KEYS
        if unknown:
            raise MtftError(f"report spec {spec_path}, section {i + 1}: unknown keys {sorted(unknown)}")
        md += _section(sec, root_p, out, files)
    files["markdown"] = out / "RESULTS.md"
    atomic_write_text(files["markdown"], "\n".join(md).rstrip() + "\n")
    return files


_SECTION_KEYS = {
    "title",
    "text",
    "data",
    "results",
    "rows",
    "files",
    "deltas",
    "agreement",
    "runs",
    "selections",
    "stages",
    "sweeps",
    "seeds",
    "commands",
    "after",
    "table",
    "score",
    "row_from",
    "times",
}


def _section(sec: Dict, root_p: Path, out: Path, files: Dict[str, Path]) -> List[str]:
    """The markdown of one spec section (empty when its results or data files are missing)."""
    results = [
        dict(r, _results_folder=d)
        for d in sec.get("results", [])
        for r in find_results(root_p / d)
        if (not sec.get("rows") or r["row"] in sec["rows"]) and (not sec.get("seeds") or r["seed"] in sec["seeds"])
    ]
    if sec.get("row_from") == "folder":  # one row per subfolder (a search's candidates, all of one row kind)
        results = [dict(r, row=Path(r["_path"]).relative_to(root_p / r["_results_folder"]).parts[0]) for r in results]
    if sec.get("score") == "dev":  # a search on dev sets: its tables show dev scores and never read the test's
        results = [dict(r, test_score=r["dev_score"]) for r in results]
    data = {}
    for name, rel in (sec.get("data") or {}).items():
        try:
            data[name] = json.loads((root_p / rel).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
            break
    sweeps = _sweep_tables(root_p / sec["sweeps"]) if sec.get("sweeps") else []
    if sec.get("results") and not results or data is None or sec.get("sweeps") and not sweeps:
        return []  # nothing measured for this section yet
    md = [f"## {sec['title']}", ""] if sec.get("title") else []

    def filled(text: str) -> str:  # a section's text and its text after the tables quote its data files' fields
        return (text.format_map(data) if sec.get("data") else text).rstrip()

    if sec.get("text"):
        md += [filled(sec["text"]), ""]
    if results and sec.get("table", True):
        md += _section_table(sec, results, out, files)
    if sec.get("agreement"):
        other = find_results(root_p / sec["agreement"]["with"])
        md += _agreement(
            results, other, sec["agreement"]["rows"], (", ".join(sec["results"]), sec["agreement"]["with"])
        )
    if sec.get("runs"):
        heads = [h for h, _ in sec["runs"]]
        md += ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        for r in sorted(results, key=lambda r: r["_path"]):
            f = _run_fields(r)
            md.append("| " + " | ".join(fmt.format_map(f) for _, fmt in sec["runs"]) + " |")
        md += [""]
    if sweeps:
        md += sweeps
        name = f"sweeps_{Path(sec['sweeps']).name}.png"
        out.mkdir(parents=True, exist_ok=True)
        if plot_sweeps(root_p / sec["sweeps"], out / name):
            files[name] = out / name
            md += [f"![{name}]({name})", ""]
    if sec.get("times"):
        md += _times_table(results, sec["times"])
    if sec.get("selections"):
        md += selections_table(root_p / sec["selections"]) + [""]
    if sec.get("stages"):
        md += _stages_table(root_p / sec["stages"]) + [""]
    if results or sweeps:
        md += [_env_line(results or find_results(root_p / sec["sweeps"]), sec.get("results") or ()), ""]
    if sec.get("after"):
        md += [filled(sec["after"]), ""]
    for c in sec.get("commands") or []:
        md += [f"    {c}", ""]
    return md


def _section_table(sec: Dict, results: List[Dict], out: Path, files: Dict[str, Path]) -> List[str]:
    """A section's mean (std) table, its CSV/LaTeX/PNG files (``files``) and per-target differences (``deltas``)."""
    agg = aggregate(results)
    ns = sorted({a["n"] for a in agg})
    md = [format_table(agg, "markdown", titles=True).rstrip(), "", f"Seeds per cell: {', '.join(map(str, ns))}.", ""]
    if sec.get("files"):
        base = out / sec["files"]
        for fmt, ext in (("csv", ".csv"), ("latex", ".tex")):
            files[f"{sec['files']}{ext}"] = base.with_suffix(ext)
            atomic_write_text(base.with_suffix(ext), format_table(agg, fmt, titles=fmt == "latex"))
        files[f"{sec['files']}.png"] = plot_bars(agg, base.with_suffix(".png"))
        md += [
            f"![{sec['files']}]({base.name}.png) (CSV: [{base.name}.csv]({base.name}.csv), LaTeX: "
            f"[{base.name}.tex]({base.name}.tex))",
            "",
        ]
    return md + _deltas(agg, sec.get("deltas") or [])
