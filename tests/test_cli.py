"""Bad input: one clear error line, exit status 2, and no results.json."""
import subprocess
import sys
from pathlib import Path

import pytest

from mtft_nlp.cli import main, run_glue_main

ROOT = Path(__file__).resolve().parent.parent


def _run(args, tmp_path, data_dir, capsys):
    out = tmp_path / "out"
    rc = run_glue_main(["--output_dir", str(out), "--data_dir", str(data_dir), "--max_steps", "1", *args])
    err = capsys.readouterr().err
    return rc, err, out


@pytest.mark.parametrize("args,message", [
    (["--task_name", "sst-3"], "unknown task 'sst-3'"),
    (["--task_name", "sst-2", "--template", "*cls**sent_0*_It_was.*sep+*"], "must contain exactly one *mask*"),
    (["--task_name", "sst-2", "--label_words", "0:terrible,1:cinematographically"], "label word 'cinematographically' is not one token"),
    (["--task_name", "sst-2", "--label_words", "0:terrible"], "missing ['1']"),
    (["--task_name", "sst-2", "--max_seq_length", "6"], "the mask token was truncated away"),
    (["--task_name", "sst-2", "--prompt", "nope"], "prompt 'nope' not in"),
    (["--task_name", "mnli"], "no test file"),
])
def test_bad_input_exits_2_without_results(args, message, tmp_path, data_dir, capsys):
    rc, err, out = _run(args, tmp_path, data_dir, capsys)
    assert rc == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (out / "results.json").exists()


def test_malformed_data_file(tmp_path, data_dir, capsys):
    from mtft_nlp.data import KShotSplitter

    KShotSplitter("rte", data_dir / "original").write(13, tmp_path / "k")
    split = tmp_path / "k" / "RTE" / "16-13"
    lines = (split / "train.tsv").read_text().splitlines(keepends=True)
    lines[3] = "broken row\n"
    (split / "train.tsv").write_text("".join(lines))
    rc, err, out = _run(["--task_name", "rte"], tmp_path, split, capsys)
    assert rc == 2 and "train.tsv:4: expected at least 3 tab-separated columns, found 1" in err
    assert not (out / "results.json").exists()


def test_console_script_and_help():
    r = subprocess.run([sys.executable, "-m", "mtft_nlp.cli", "splits", "--data_dir", "x", "--output_dir", "y",
                        "--tasks", "nosuchtask"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.strip().startswith("error: unknown task 'nosuchtask'")
    h = subprocess.run([sys.executable, "run_glue_fewshot.py", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert h.returncode == 0
    for flag in ("--task_name", "--zero_shot", "--paper_hparams", "--lmbff_grid", "--learning_rate", "--data_dir"):
        assert flag in h.stdout


def test_splits_command(tmp_path, data_dir, capsys):
    assert main(["splits", "--data_dir", str(data_dir / "original"), "--output_dir", str(tmp_path),
                 "--tasks", "rte", "--seeds", "13"]) == 0
    assert sorted(p.name for p in (tmp_path / "RTE" / "16-13").iterdir()) == ["dev.tsv", "test.tsv", "train.tsv"]
