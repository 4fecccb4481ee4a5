"""results.json aggregation and table formats against hand-computed numbers."""

import json

import pytest

from mtft_nlp.cli import main
from mtft_nlp.io import atomic_write_json
from mtft_nlp.reporting.results import aggregate, find_results, format_table


def _write(root, name, **r):
    base = {"seed": 13, "metric": "acc", "dev_score": 0.5, "zero_shot": False, "model": "m", "prompt": {}}
    base.update(r)
    atomic_write_json(root / name / "results.json", base)


@pytest.fixture
def runs(tmp_path):
    for i, s in enumerate([0.9, 0.8, 0.85]):
        _write(tmp_path, f"sst2-{i}", task="SST-2", row="pbft", test_score=s, seed=[13, 21, 42][i])
    _write(tmp_path, "sst2-zs", task="SST-2", row="zero-shot", test_score=0.5)
    for i, s in enumerate([-0.1, 0.1]):
        _write(tmp_path, f"cola-{i}", task="CoLA", row="pbft", metric="mcc", test_score=s)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{not json")
    return tmp_path


def test_aggregate_mean_and_population_std(runs):
    agg = {(a["task"], a["row"]): a for a in aggregate(find_results(runs))}
    sst = agg[("SST-2", "pbft")]
    assert sst["mean"] == pytest.approx(85.0) and sst["n"] == 3
    assert sst["std"] == pytest.approx((50 / 3) ** 0.5)  # ddof 0: sqrt((25 + 25 + 0) / 3) = 4.08
    cola = agg[("CoLA", "pbft")]
    assert cola["mean"] == pytest.approx(0.0) and cola["std"] == pytest.approx(10.0)


def test_markdown_table(runs):
    text = format_table(aggregate(find_results(runs)))
    lines = text.strip().splitlines()
    assert lines[0] == "| row | SST-2 | CoLA (Matthews corr.) |"
    assert lines[2] == "| zero-shot | 50.0 | - |"
    assert lines[3] == "| pbft | **85.0 (4.1)** | 0.0 (10.0) |"


def test_csv_and_latex(runs):
    csv_text = format_table(aggregate(find_results(runs)), "csv")
    rows = csv_text.strip().splitlines()
    assert rows[0] == "task,row,metric,mean,std,n"
    assert "SST-2,pbft,acc,85.0000,4.0825,3" in rows
    latex = format_table(aggregate(find_results(runs)), "latex")
    assert "\\textbf{85.0 (4.1)}" in latex and latex.startswith("\\begin{tabular}")


def test_table_command(runs, capsys):
    assert main(["table", str(runs), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("task,row,metric,mean,std,n\n")
    assert main(["table", str(runs / "nothing")]) == 2


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "results.json", {"a": 1})
    assert json.loads((tmp_path / "results.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_records_check_their_schema_and_round_trip(tmp_path):
    import json

    import pytest

    from mtft_nlp.records import ExperimentConfig, RecordError, RunRecord, StageRecord, write_run_record

    rec = {
        "task": "SST-2",
        "row": "embed-ft",
        "seed": 13,
        "metric": "acc",
        "dev_score": 0.8,
        "test_score": 0.75,
        "zero_shot": False,
        "model": "minilm",
        "prompt": {"template": "*cls*"},
        "n_test": 872,
    }
    assert RunRecord.from_dict(rec).to_dict() == rec
    write_run_record(tmp_path / "r" / "results.json", rec)
    assert json.loads((tmp_path / "r" / "results.json").read_text()) == rec
    for key, value, msg in (
        ("seed", "13", "'seed' is str"),
        ("zero_shot", 1, "'zero_shot' is int"),
        ("test_score", None, "'test_score' is NoneType"),
    ):
        with pytest.raises(RecordError, match=msg):
            write_run_record(tmp_path / "bad" / "results.json", {**rec, key: value})
    with pytest.raises(RecordError, match="missing field 'prompt'"):
        RunRecord.from_dict({k: v for k, v in rec.items() if k != "prompt"})
    assert not (tmp_path / "bad").exists()  # nothing written
    with pytest.raises(RecordError, match=r"sources\[1\]: missing field 'task'"):
        StageRecord.from_dict(
            {
                "target": "CR",
                "sources": [{"task": "MR"}, {}],
                "sources_origin": "all",
                "max_steps": 10,
                "learning_rate": 1e-5,
                "base_model": "minilm",
            }
        )
    with pytest.raises(RecordError, match="'workers' is str"):
        ExperimentConfig.from_dict({"workers": "2"})
    with pytest.raises(RecordError, match="unknown keys"):
        ExperimentConfig.from_dict({"wrokers": 2})


def test_every_committed_result_file_matches_its_record(tmp_path):
    import json
    from pathlib import Path

    from mtft_nlp.records import RunRecord, StageRecord

    root = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    runs = sorted(root.rglob("results.json"))
    stages = sorted(root.rglob("multitask_config*.json"))
    assert len(runs) > 1000 and len(stages) > 50
    for p in runs:
        RunRecord.from_dict(json.loads(p.read_text(encoding="utf-8")), str(p))
    for p in stages:
        StageRecord.from_dict(json.loads(p.read_text(encoding="utf-8")), str(p))
