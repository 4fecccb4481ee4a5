"""Bad input: one clear error line, exit status 2, and no results.json."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mtft_nlp.cli import main, run_glue_main

ROOT = Path(__file__).resolve().parent.parent


def _run(args, tmp_path, data_dir, capsys):
    out = tmp_path / "out"
    rc = run_glue_main(
        ["--output_dir", str(out), "--data_dir", str(data_dir), "--max_steps", "1", "--method", "prompt", *args]
    )
    err = capsys.readouterr().err
    return rc, err, out


@pytest.mark.parametrize(
    "args,message",
    [
        (["--task_name", "sst-3"], "unknown task 'sst-3'"),
        (["--task_name", "sst-2", "--template", "*cls**sent_0*_It_was.*sep+*"], "must contain exactly one *mask*"),
        (
            ["--task_name", "sst-2", "--label_words", "0:terrible,1:cinematographically"],
            "label word 'cinematographically' is not one token",
        ),
        (["--task_name", "sst-2", "--label_words", "0:terrible"], "missing ['1']"),
        (["--task_name", "sst-2", "--max_seq_length", "6"], "the mask token was truncated away"),
        (["--task_name", "sst-2", "--prompt", "nope"], "prompt 'nope' not in"),
        (["--task_name", "mnli"], "no test file"),
    ],
)
def test_bad_input_exits_2_without_results(args, message, tmp_path, data_dir, capsys):
    rc, err, out = _run(args, tmp_path, data_dir, capsys)
    assert rc == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (out / "results.json").exists()


def test_malformed_data_file(tmp_path, data_dir, capsys):
    from mtft_nlp.data.kshot import KShotSplitter

    KShotSplitter("rte", data_dir / "original").write(13, tmp_path / "k")
    split = tmp_path / "k" / "RTE" / "16-13"
    lines = (split / "train.tsv").read_text().splitlines(keepends=True)
    lines[3] = "broken row\n"
    (split / "train.tsv").write_text("".join(lines))
    rc, err, out = _run(["--task_name", "rte"], tmp_path, split, capsys)
    assert rc == 2 and "train.tsv:4: expected at least 3 tab-separated columns, found 1" in err
    assert not (out / "results.json").exists()


def test_console_script_and_help():
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtft_nlp.cli",
            "splits",
            "--data_dir",
            "x",
            "--output_dir",
            "y",
            "--tasks",
            "nosuchtask",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 2 and r.stderr.strip().startswith("error: unknown task 'nosuchtask'")
    h = subprocess.run([sys.executable, "run_glue_fewshot.py", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert h.returncode == 0
    for flag in ("--task_name", "--zero_shot", "--paper_hparams", "--lmbff_grid", "--learning_rate", "--data_dir"):
        assert flag in h.stdout


def test_splits_command(tmp_path, data_dir, capsys):
    assert (
        main(
            [
                "splits",
                "--data_dir",
                str(data_dir / "original"),
                "--output_dir",
                str(tmp_path),
                "--tasks",
                "rte",
                "--seeds",
                "13",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "RTE" / "16-13").iterdir()) == ["dev.tsv", "test.tsv", "train.tsv"]


def test_step_progress_lines(capsys):
    """The multitask stage prints a progress line every few steps; `mtft-nlp run` shows the newest of each job."""
    from types import SimpleNamespace

    from mtft_nlp.cli import format_progress, step_progress_callback

    assert (
        format_progress(50, 1000, 61, 1159, 0.5)
        == "progress: step 50/1000 (5%), loss 0.5000, 0:01:01 elapsed, ETA 0:19:19"
    )
    cb = step_progress_callback(every=2)
    state = SimpleNamespace(max_steps=4, global_step=0, is_world_process_zero=True)
    cb.on_train_begin(None, state, None)
    for step in range(1, 5):
        state.global_step = step
        cb.on_log(None, state, None, logs={"loss": 1.0 / step})
        cb.on_step_end(None, state, None)
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(",")[0] for ln in lines] == ["progress: step 2/4 (50%)", "progress: step 4/4 (100%)"]
    assert "loss 0.2500" in lines[1] and "ETA 0:00:00" in lines[1]


def test_run_shows_multitask_progress(tmp_path):
    import concurrent.futures as cf
    import threading

    from mtft_nlp.grid.workers import unit_results

    job = {"dir": tmp_path / "mt", "target": "RTE"}
    log = job["dir"].with_suffix(".log")
    log.write_text("noise\nprogress: step 10/100 (10%), loss 1.0000, 0:00:05 elapsed, ETA 0:00:45\n")
    release = threading.Event()
    with cf.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(lambda: (release.wait(5), (0, 1.0))[1])
        written = []

        def write(of, line):
            written.append((of, line))
            release.set()

        results = list(unit_results({fut: [job]}, write))
    assert written == [(job, "step 10/100 (10%), loss 1.0000, 0:00:05 elapsed, ETA 0:00:45")]
    assert results[0][1] is job and results[0][2] == 0


def test_a_batch_reports_each_cell_as_it_finishes(tmp_path):
    """A batch of 3 cells in one process: the first finished cell is given out while the process still runs,
    the other two when it ends."""
    import concurrent.futures as cf
    import threading

    from mtft_nlp.grid.workers import unit_results

    unit = [{"dir": tmp_path / f"c{i}", "target": "RTE"} for i in range(3)]
    release = threading.Event()
    with cf.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(lambda: (release.wait(10), (0, 6.0))[1])
        results = unit_results({fut: unit}, finished=lambda job: (job["dir"] / "results.json").exists(), poll=0.01)
        (unit[0]["dir"]).mkdir()
        (unit[0]["dir"] / "results.json").write_text("{}")
        first = next(results)
        assert first[1] is unit[0] and first[2] == 0 and not fut.done()
        release.set()
        rest = list(results)
    assert [r[1] for r in rest] == unit[1:]
    assert all(r[2] == 0 and r[3] >= 0 for r in rest)


def _sleeper(tmp_path, name, seconds, after=None):
    """A unit whose process records its worker slot and start/end times, optionally waiting for ``after``'s end."""
    code = (
        "import json, os, sys, time; t = time.time(); time.sleep(float(sys.argv[2])); "
        "json.dump({'slot': os.environ['SLOT'], 'start': t, 'end': time.time()}, open(sys.argv[1], 'w'))"
    )
    job = {"dir": tmp_path / name, "name": name, "after": after}
    return [job], [sys.executable, "-c", code, str(tmp_path / f"{name}.json"), str(seconds)]


def test_jobs_take_a_free_slot_and_wait_for_what_they_need(tmp_path):
    """Two slots. A long unit keeps slot 0; every later unit takes the slot that is free (never one in use, as
    a unit pinned to slot i % 2 would: on GPUs, two processes on one device while another idles); `needs-long`
    waits for `long` and lets `short-2` pass; `never` is never ready and comes back unstarted."""
    import os

    from mtft_nlp.grid.workers import run_jobs

    made = [
        _sleeper(tmp_path, "long", 3.0),
        _sleeper(tmp_path, "short-1", 0.3),
        _sleeper(tmp_path, "needs-long", 0.3, after="long"),
        _sleeper(tmp_path, "short-2", 0.3),
        _sleeper(tmp_path, "short-3", 0.3),
        _sleeper(tmp_path, "never", 0.1, after="missing"),
    ]
    commands = {id(unit): (cmd, tmp_path / f"{unit[0]['name']}.log") for unit, cmd in made}
    units = [unit for unit, _ in made]
    reported = []
    left = run_jobs(
        units,
        lambda unit: commands[id(unit)],
        [{**os.environ, "SLOT": str(i)} for i in range(2)],
        lambda job, rc, seconds: reported.append((job["name"], rc)),
        ready=lambda unit: unit[0]["after"] is None or (tmp_path / f"{unit[0]['after']}.json").exists(),
    )
    assert [u[0]["name"] for u in left] == ["never"]
    assert sorted(reported) == sorted((u[0]["name"], 0) for u in units[:5])
    runs = {u[0]["name"]: json.loads((tmp_path / f"{u[0]['name']}.json").read_text()) for u in units[:5]}
    assert runs["long"]["slot"] == "0" and all(runs[n]["slot"] == "1" for n in ("short-1", "short-2", "short-3"))
    assert runs["short-2"]["end"] < runs["long"]["end"] < runs["needs-long"]["start"]
    for a in runs.values():  # no two units ever shared a slot
        for b in runs.values():
            if a is not b and a["slot"] == b["slot"]:
                assert a["end"] <= b["start"] or b["end"] <= a["start"]


def test_an_interrupted_grid_gives_ctrl_c_back(tmp_path):
    """After run_jobs stops on Ctrl-C, SIGINT is handled as before (it is ignored only during the clean-up), so
    a later `mtft-nlp run` started from this process can still be stopped with Ctrl-C."""
    import os
    import signal

    from mtft_nlp.grid.workers import Interrupted, run_jobs

    unit, cmd = _sleeper(tmp_path, "one", 0.1)

    def interrupt(job, rc, seconds):
        raise KeyboardInterrupt

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted):
        run_jobs([unit], lambda u: (cmd, tmp_path / "one.log"), [{**os.environ, "SLOT": "0"}], interrupt)
    assert signal.getsignal(signal.SIGINT) is before


def test_version_and_verbose_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("mtft-nlp ")


def test_help_lists_project_options_first():
    h = subprocess.run(
        [sys.executable, "run_glue_fewshot.py", "--help"], capture_output=True, text=True, cwd=ROOT
    ).stdout
    model, prompt, training = (
        h.index(g)
        for g in ("Model (mtft-nlp):", "Task, prompt and data (mtft-nlp):", "Training (transformers TrainingArguments")
    )
    assert (
        model < prompt < training and h.index("  --task_name") < training and h.index("  --learning_rate") > training
    )
    assert "picks the k-shot train/dev split" in h


def test_data_error_names_data_dir_option(tmp_path, capsys):
    rc = run_glue_main(["--output_dir", str(tmp_path / "o"), "--data_dir", str(tmp_path), "--task_name", "rte"])
    err = capsys.readouterr().err
    assert rc == 2 and "--data_dir" in err and "MTFT_NLP_DATA_DIR" in err


def test_predict_writes_label_and_word(tmp_path, bert_tokenizer, capsys):
    import json

    from mtft_nlp.methods.prompt.classifier import PromptClassifier, prompt_metadata
    from mtft_nlp.methods.prompt.modeling import PromptForMaskedLM, load_masked_lm
    from mtft_nlp.tasks import get_task
    from mtft_nlp.templates import load_prompt

    task = get_task("sst-2")
    prompt = load_prompt(task)
    mlm, tok = load_masked_lm(None)
    PromptClassifier(PromptForMaskedLM(mlm), tok, task, prompt, prompt_metadata(task, prompt)).save_pretrained(
        tmp_path / "m"
    )
    (tmp_path / "in.txt").write_text("a fine film\n\nawful " + "very " * 300 + "\n")
    assert (
        main(
            [
                "predict",
                "--model",
                str(tmp_path / "m"),
                "--input",
                str(tmp_path / "in.txt"),
                "--output",
                str(tmp_path / "p.jsonl"),
            ]
        )
        == 0
    )
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["label_word"] == prompt.label_words[r["prediction"]] for r in rows)
    assert "LOAD REPORT" not in capsys.readouterr().err
