"""Reports laid out by a spec (``mtft-nlp report DIR --spec``), against hand-computed numbers, and the
committed docs/RESULTS.md against its regeneration from the committed result files."""

from pathlib import Path

import pytest
import yaml

from mtft_nlp.cli import main
from mtft_nlp.io import atomic_write_json
from mtft_nlp.reporting.report import write_spec_report
from mtft_nlp.tasks import MtftError

ROOT = Path(__file__).resolve().parents[2]


def _run(root, folder, task, row, seed, score, **extra):
    r = {
        "task": task,
        "row": row,
        "seed": seed,
        "metric": "acc",
        "test_score": score,
        "dev_score": 0.5,
        "zero_shot": row.endswith("zero-shot"),
        "model": "m",
        "prompt": {},
        "train_seconds": 60.0,
        "eval_seconds": 6.0,
        "env": {"device": "cpu", "cpu_count": 2},
        **extra,
    }
    atomic_write_json(root / folder / task / row / f"seed{seed}" / "results.json", r)


@pytest.fixture
def bench(tmp_path):
    root = tmp_path / "results"
    for seed, a, b in ((13, 0.60, 0.70), (21, 0.70, 0.74)):
        _run(root, "gpu", "SST-2", "pbft", seed, a)
        _run(root, "gpu", "SST-2", "mt-pbft", seed, b)
        _run(root, "gpu", "TREC", "pbft", seed, b)
        _run(root, "gpu", "TREC", "mt-pbft", seed, a)
    _run(root, "cpu", "SST-2", "pbft", 13, 0.64)  # the same cell as gpu SST-2 pbft 13, 4 points apart
    atomic_write_json(root / "speed" / "speed.json", {"steps": 100, "ways": {"mixed": 172.3}})
    atomic_write_json(
        root / "gpu" / "selection" / "TREC-abc.json",
        {"target": "TREC", "method": "selected", "selected": ["CoLA", "SST-2"]},
    )
    # no-diversity chose the same sources (a shared stage); random chose others, and its stage is not there
    atomic_write_json(
        root / "gpu" / "selection" / "TREC-nodiv.json",
        {"target": "TREC", "method": "no-diversity", "selected": ["SST-2", "CoLA"]},
    )
    atomic_write_json(
        root / "gpu" / "selection" / "TREC-random.json", {"target": "TREC", "method": "random", "selected": ["MR"]}
    )
    atomic_write_json(
        root / "gpu" / "SST-2" / "multitask" / "multitask_config.json",
        {
            "target": "SST-2",
            "max_steps": 500,
            "learning_rate": 1e-5,
            "train_seconds": 90.0,
            "sources_origin": "all",
            "sources": [{"task": "TREC"}],
            "dev_before": {"TREC": {"acc": 0.2, "loss": 2.0}},
            "dev_after": {"TREC": {"acc": 0.3, "loss": 1.0}},
            "dev_history": {
                "0": {},
                "250": {"mean": {"acc": 0.25, "loss": 0.9}},
                "500": {"mean": {"acc": 0.3, "loss": 1.0}},
            },
        },
    )
    atomic_write_json(
        root / "gpu" / "TREC" / "multitask" / "multitask_config.json",
        {
            "target": "TREC",
            "max_steps": 1000,
            "learning_rate": 1e-5,
            "train_seconds": 150.0,
            "sources": [
                {"task": "CoLA", "overlap_with_target_test": {"exact": 0, "normalized": 0}},
                {"task": "SST-2", "overlap_with_target_test": {"exact": 2, "normalized": 3}},
            ],
            "dev_before": {"CoLA": {"acc": 0.5, "loss": 1.0}, "SST-2": {"acc": 0.4, "loss": 2.0}},
            "dev_after": {"CoLA": {"acc": 0.6, "loss": 0.5}, "SST-2": {"acc": 0.8, "loss": 1.5}},
        },
    )
    spec = {
        "title": "Bench",
        "intro": "All on the packaged model.",
        "sections": [
            {
                "title": "Main",
                "results": ["gpu"],
                "files": "main",
                "deltas": [["mt-pbft", "pbft"]],
                "selections": "gpu",
                "stages": "gpu",
                "commands": ["run it"],
            },
            {
                "title": "Speed",
                "text": "{speed[steps]} steps in {speed[ways][mixed]:.0f} s",
                "data": {"speed": "speed/speed.json"},
                "after": "so {speed[steps]} steps take {speed[ways][mixed]:.1f} s",
            },
            {
                "title": "Runs",
                "results": ["cpu"],
                "table": False,
                "runs": [["task", "{task}"], ["test", "{_score100:.1f}"]],
                "agreement": {"with": "gpu", "rows": ["pbft"]},
            },
            {"title": "Both folders", "results": ["gpu", "cpu"], "table": False},
            {"title": "Seed 21", "results": ["gpu"], "seeds": [21], "deltas": [["mt-pbft", "pbft"]]},
            {"title": "Not measured yet", "results": ["missing"]},
            {"title": "No data yet", "text": "{x[y]}", "data": {"x": "nope.json"}},
        ],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return root, path


def test_spec_report_numbers(bench, tmp_path):
    root, spec = bench
    files = write_spec_report(str(root), str(spec), str(tmp_path / "out"))
    md = files["markdown"].read_text()
    assert md.startswith("# Bench\n\nAll on the packaged model.")
    # SST-2 pbft 60, 70 -> 65.0 (5.0); mt-pbft 70, 74 -> 72.0 (2.0); TREC the other way round
    assert "| Prompt-based FT | 65.0 (5.0) | **72.0 (2.0)** |" in md
    assert "| Multitask prompt-based FT | **72.0 (2.0)** | 65.0 (5.0) |" in md
    assert "| +7.0 | -7.0 | +0.0 |" in md and "better than `pbft` on 1 of 2 targets (SST-2)" in md
    assert (
        "| TREC | selected | CoLA, SST-2 | 2 | - | - |\n| TREC | random | MR | 1 | - | - |\n"
        "| TREC | no-diversity | SST-2, CoLA | 2 | - | - |" in md
    )
    assert (
        "| SST-2 | all (leave-one-out) | TREC | 500 | 1e-05 | 0.200 -> 0.300 | 2.000 -> 1.000 | 250: 0.250 / 0.900 | "
        "0 |\n"
        "| TREC | selected, no-diversity | CoLA, SST-2 | 1000 | 1e-05 | 0.450 -> 0.700 | 1.500 -> 1.000 | - | 3 |"
        in md
    )
    seed21 = md.split("## Seed 21")[1].split("## ")[0]  # SST-2 pbft 70 vs mt-pbft 74; TREC the other way round
    assert "| +4.0 | -4.0 | +0.0 |" in seed21 and "4 runs" in seed21
    assert "9 runs, 10 min of train + eval time (gpu: 8 runs, 9 min; cpu: 1 runs, 1 min)." in md
    assert "Training time of these 2 stages: 4.0 min in all" in md
    assert "- selected and no-diversity chose the same set on 1 of 1 targets (TREC)" in md
    assert "- selected and random chose the same set on 0 of 1 targets\n" in md
    assert "100 steps in 172 s" in md and "so 100 steps take 172.3 s" in md  # the text after the tables too
    assert "| SST-2 | 64.0 |" in md
    assert "(1 pairs): median |difference| 4.0 points, max 4.0." in md
    assert "Not measured yet" not in md and "No data yet" not in md
    assert "    run it" in md and "8 runs, 9 min of train + eval time" in md
    assert (tmp_path / "out" / "main.csv").read_text().splitlines()[1].startswith("SST-2,pbft,acc,65.0000,5.0000,2")
    assert (tmp_path / "out" / "main.png").read_bytes()[:4] == b"\x89PNG"


def test_spec_errors(bench, tmp_path, capsys):
    root, spec = bench
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: x\n")
    with pytest.raises(MtftError, match="needs a 'sections' list"):
        write_spec_report(str(root), str(bad), str(tmp_path / "o"))
    bad.write_text(yaml.safe_dump({"sections": [{"title": "t", "colour": "red"}]}))
    assert main(["report", str(root), "--spec", str(bad), "--output", str(tmp_path / "o")]) != 0
    assert "unknown keys ['colour']" in capsys.readouterr().err
    assert not (tmp_path / "o" / "RESULTS.md").exists()


def test_committed_results_document_is_regenerated_from_the_result_files(tmp_path):
    """docs/RESULTS.md has one source: `mtft-nlp report benchmarks/results --spec benchmarks/report.yaml`."""
    files = write_spec_report(
        str(ROOT / "benchmarks" / "results"), str(ROOT / "benchmarks" / "report.yaml"), str(tmp_path)
    )
    assert files["markdown"].read_text() == (ROOT / "docs" / "RESULTS.md").read_text(), (
        "docs/RESULTS.md is stale: run mtft-nlp report benchmarks/results --spec benchmarks/report.yaml --output docs"
    )
    for path in files.values():  # and its CSV/LaTeX/PNG files are committed next to it
        assert (ROOT / "docs" / path.name).is_file(), path.name


def test_stage_origin_prefers_the_stages_own_origin():
    from mtft_nlp.reporting.report import stage_origin

    chosen = {("TREC", frozenset({"SST-2", "CoLA"})): ["no-diversity", "selected"]}
    names = ["CoLA", "SST-2"]
    # a leave-one-out or listed stage is never credited to a selection method that chose the same set
    assert stage_origin({"target": "TREC", "sources_origin": "all"}, names, chosen) == "all (leave-one-out)"
    assert stage_origin({"target": "TREC", "sources_origin": "list"}, names, chosen) == "list"
    # a selection stage names every method that chose its set (its own and the files'), in the methods' order
    m = {"target": "TREC", "sources_origin": "selected", "selection": {"method": "random"}}
    assert stage_origin(m, names, chosen) == "selected, random, no-diversity"
    m = {"target": "TREC", "sources_origin": "/tmp/sel.json", "selection": {}}
    assert stage_origin(m, ["MR"], chosen) == "selection file"


def test_selection_table_counts_the_targets_where_two_methods_chose_the_same_set(tmp_path):
    from mtft_nlp.reporting.report import selections_table

    chosen = {
        ("TREC", "selected"): ["SST-2", "CoLA"],
        ("TREC", "no-diversity"): ["CoLA", "SST-2"],  # the same set in another order
        ("TREC", "random"): ["MR"],
        ("MR", "selected"): ["SST-2"],
        ("MR", "no-diversity"): ["CR", "SST-2"],
    }
    for i, ((target, method), sources) in enumerate(chosen.items()):
        sel = {"target": target, "method": method, "selected": sources, "coverage": {"name": "union"}}
        if (target, method) == ("TREC", "selected"):  # the greedy loop's record: coverage per step, where it stopped
            sel["coverage_after_step"] = [0.5, 0.75]
            sel["candidates"] = [
                {"task": "SST-2", "decision": "added (first)", "coverage": 0.5},
                {"task": "CoLA", "decision": "added", "coverage": 0.75},
                {"task": "MR", "decision": "stop", "coverage": 0.75},
                {"task": "CR", "decision": "not reached", "coverage": None},
            ]
        atomic_write_json(tmp_path / target / "selection" / f"{method}-{i}.json", sel)
    lines = selections_table(tmp_path)
    assert "| TREC | selected | SST-2, CoLA | 2 | 0.50, 0.75 | MR (0.75) |" in lines
    assert "| TREC | no-diversity | CoLA, SST-2 | 2 | - | - |" in lines
    assert any(line.startswith("Coverage (`union`") for line in lines)
    assert "- selected and no-diversity chose the same set on 1 of 2 targets (TREC)" in lines
    assert "- selected and random chose the same set on 0 of 1 targets" in lines
    assert not any(line.startswith("- random and no-diversity") and "(" in line for line in lines)


def test_spec_section_with_a_sweep_tables_each_value_and_plots_it(tmp_path):
    root = tmp_path / "results"
    # num_tasks 1: MR 70, 74 -> 72.0 (2.0) [2]; num_tasks 4: MR 80 [1]; TREC only at num_tasks 1
    for value, runs in ((1, [("MR", 13, 0.70), ("MR", 21, 0.74), ("TREC", 13, 0.5)]), (4, [("MR", 13, 0.80)])):
        folder = f"sweep/MR/num_tasks-{value}"
        atomic_write_json(root / folder / "sweep.json", {"variable": "num_tasks", "value": value})
        for task, seed, score in runs:
            _run(root, folder, task, "mt-sel-embed-ft", seed, score)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "sections": [
                    {"title": "Sweep", "sweeps": "sweep"},
                    {"title": "Sweep not run", "sweeps": "missing", "text": "never shown"},
                ]
            }
        )
    )
    files = write_spec_report(str(root), str(spec), str(tmp_path / "out"))
    md = files["markdown"].read_text()
    assert "| target | num_tasks = 1 | num_tasks = 4 |" in md
    assert "| MR | 72.0 (2.0) [2] | 80.0 (0.0) [1] |" in md
    assert "| TREC | 50.0 (0.0) [1] | - |" in md
    assert "4 runs" in md and "Sweep not run" not in md and "never shown" not in md
    assert (tmp_path / "out" / "sweeps_sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_a_dev_search_section_tables_dev_scores_per_candidate_folder_and_times_per_row(tmp_path):
    root = tmp_path / "results"
    # two candidates of a search, both row embed-ft: dev scores differ, test scores must never show
    for seed, dev_a, dev_b in ((13, 0.50, 0.75), (21, 0.60, 0.85)):
        _run(root, "search/cand-a", "TREC", "embed-ft", seed, 0.11, dev_score=dev_a)
        _run(root, "search/cand-b", "TREC", "embed-ft", seed, 0.22, dev_score=dev_b, train_seconds=20.0)
        _run(root, "grid", "TREC", "embed-ft", seed, 0.8, train_seconds=30.0 + seed)
        _run(root, "grid", "TREC", "setfit", seed, 0.8, train_seconds=300.0)
    _run(root, "grid", "SST-2", "setfit", 13, 0.8, train_seconds=100.0)  # no embed-ft cell: not in the pair
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "sections:\n"
        "  - title: Search\n    results: [search]\n    score: dev\n    row_from: folder\n"
        "    deltas: [[cand-b, cand-a]]\n    commands: ['x']\n"
        "  - title: Time\n    results: [grid]\n    table: false\n"
        "    times: [[embed-ft, setfit]]\n    commands: ['y']\n"
    )
    write_spec_report(str(root), str(spec), str(tmp_path / "out"))
    md = (tmp_path / "out" / "RESULTS.md").read_text()
    search = md.split("## Search")[1].split("## Time")[0]
    assert "| cand-a | 55.0 (5.0) |" in search and "| cand-b | **80.0 (5.0)** |" in search
    assert "11.0" not in search and "22.0" not in search  # the test scores stay out
    assert "+25.0" in search
    time = md.split("## Time")[1]
    # embed-ft: 43+6 and 51+6 s; setfit: 306 s on both shared cells (and 106 s on SST-2, left out of the pair)
    assert "| embed-ft | 2 | 1.8 | 53 |" in time and "| setfit | 3 | 12.0 | 306 |" in time
    assert "`embed-ft` 1.8 min in all, median 53 s; `setfit` 10.2 min, median 306 s; total 0.17x, median 0.17x" in time


def test_the_bar_plot_legend_sits_beside_the_bars_not_over_them():
    import matplotlib.pyplot as plt

    from mtft_nlp.reporting.plotting import bars_figure

    agg = [
        {"task": t, "row": r, "mean": m, "std": 1.0, "n": 5, "metric": "acc"}
        for t in ("SST-2", "TREC", "MR")
        for r, m in (("embed-ft", 80.0), ("mt-sel-embed-ft", 82.0), ("setfit", 79.0), ("pbft", 60.0))
    ]
    fig, ax, legend = bars_figure(agg)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes_box, legend_box = ax.get_window_extent(renderer), legend.get_window_extent(renderer)
    assert legend_box.x0 >= axes_box.x1  # entirely to the right of the axes
    assert len(legend.get_texts()) == 4
    plt.close(fig)
