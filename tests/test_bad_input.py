"""Bad input, as a new user meets it: one ``error:`` line, exit status 2, nothing written.

One test per defect of issue 16, then a fuzz test that feeds a few hundred random mutations
of valid CSV / JSONL / TSV / task-YAML inputs to the readers and the task loader: each either
loads or raises :class:`MtftError` (the CLI's one ``error:`` line, exit 2), never anything else.
"""

import argparse
import json
import logging
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtft_nlp.cli import main, run_glue_main
from mtft_nlp.commands import read_inputs
from mtft_nlp.data.kshot import KShotSplitter, load_files
from mtft_nlp.data.readers import DataError, read_lmbff_file, read_rows_numbered
from mtft_nlp.io import RESULTS_FILE
from mtft_nlp.tasks import MtftError, TaskError, get_task, load_task_file

ROOT = Path(__file__).resolve().parent.parent


def _run(args, tmp_path, capsys, data_dir=None):
    out = tmp_path / "out"
    extra = ["--data_dir", str(data_dir)] if data_dir else []
    rc = run_glue_main(["--output_dir", str(out), "--max_steps", "1", *extra, *args])
    err = capsys.readouterr().err
    return rc, err, out


def _assert_one_error(rc, err, out, *fragments):
    assert rc == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for f in fragments:
        assert f in err, err
    assert not (out / "results.json").exists()


def _csv(path: Path, rows, header=("text_a", "label")):
    lines = [",".join(header)] + [",".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _sst2_rows(n_per_class=40):
    return [(f"review number {i} of class {c}", c) for i in range(n_per_class) for c in (0, 1)]


@pytest.fixture
def files(tmp_path):
    train = _csv(tmp_path / "train.csv", _sst2_rows())
    test = _csv(tmp_path / "test.csv", _sst2_rows(5))
    return train, test


# --------------------------------------------------------------------------- 1. empty train file


@pytest.mark.parametrize("content", ["", "text_a,label\n"])
def test_1_empty_or_header_only_train_file(content, tmp_path, files, capsys):
    _, test = files
    train = tmp_path / "empty.csv"
    train.write_text(content, encoding="utf-8")
    rc, err, out = _run(
        ["--task_name", "sst-2", "--train_file", str(train), "--test_file", str(test)], tmp_path, capsys
    )
    _assert_one_error(rc, err, out, "empty.csv", "no examples")
    assert not out.exists()  # not even an empty folder


# --------------------------------------------------------------------------- 2. --k


@pytest.mark.parametrize("k", ["0", "-3"])
def test_2_k_must_be_positive(k, tmp_path, files, capsys):
    train, test = files
    rc, err, out = _run(
        ["--task_name", "sst-2", "--k", k, "--train_file", str(train), "--test_file", str(test)], tmp_path, capsys
    )
    _assert_one_error(rc, err, out, "--k must be a positive number")
    with pytest.raises(DataError, match="--k"):
        load_files("sst-2", 13, int(k), str(train), test_file=str(test))


# --------------------------------------------------------------------------- 3. raw tracebacks


def test_3_non_utf8_train_file(tmp_path, files, capsys):
    train, test = files
    train.write_bytes(train.read_bytes().replace(b"review number 3 ", b"review \xff\xfe 3 "))
    rc, err, out = _run(
        ["--task_name", "sst-2", "--train_file", str(train), "--test_file", str(test)], tmp_path, capsys
    )
    _assert_one_error(rc, err, out, "train.csv", "not UTF-8")


def test_3_non_utf8_lmbff_layout(tmp_path, data_dir, capsys):
    KShotSplitter("sst-2", data_dir / "original").write(13, tmp_path / "k")
    split = tmp_path / "k" / "SST-2" / "16-13"
    (split / "train.tsv").write_bytes((split / "train.tsv").read_bytes() + b"caf\xe9 au lait\t1\n")
    rc, err, out = _run(["--task_name", "sst-2"], tmp_path, capsys, data_dir=split)
    _assert_one_error(rc, err, out, "train.tsv", "not UTF-8")
    # the original/ layout (CSV tasks are read by pandas)
    orig = tmp_path / "orig"
    (orig / "cr").mkdir(parents=True)
    for name in ("train.csv", "test.csv"):
        (orig / "cr" / name).write_bytes(b'1,"fine"\n0,"bad \xff"\n')
    with pytest.raises(DataError, match="not UTF-8"):
        KShotSplitter("cr", orig)


def test_3_negative_seed(tmp_path, data_dir, capsys):
    rc, err, out = _run(["--task_name", "sst-2", "--seed", "-5"], tmp_path, capsys, data_dir=data_dir)
    _assert_one_error(rc, err, out, "--seed must be an integer between 0 and")


def test_3_model_folder_missing_or_corrupt(tmp_path, data_dir, capsys):
    rc, err, out = _run(
        ["--task_name", "sst-2", "--model_name_or_path", str(tmp_path / "nope")], tmp_path, capsys, data_dir=data_dir
    )
    _assert_one_error(rc, err, out, "nope: folder not found")
    from mtft_nlp.models import default_model_path

    bad = tmp_path / "badmodel"
    bad.mkdir()
    for f in Path(default_model_path()).iterdir():
        if f.is_file():
            (bad / f.name).write_bytes(f.read_bytes())
    (bad / "config.json").write_text('{"model_type": "bert", ', encoding="utf-8")
    for method in ("auto", "prompt"):
        rc, err, out = _run(
            ["--task_name", "sst-2", "--model_name_or_path", str(bad), "--method", method],
            tmp_path,
            capsys,
            data_dir=data_dir,
        )
        _assert_one_error(rc, err, out, "badmodel", "config.json is not valid JSON")
    # past the quick checks, the prompt method's own loader says the same in one line
    from mtft_nlp.methods.prompt.run import load_tokenizer_checked
    from mtft_nlp.training.arguments import ModelArguments

    with pytest.raises(MtftError, match="badmodel: cannot load the model"):
        load_tokenizer_checked(ModelArguments(model_name_or_path=str(bad)))


def test_3_output_dir_is_a_file(tmp_path, data_dir, capsys):
    target = tmp_path / "out"
    target.write_text("x")
    rc = run_glue_main(["--output_dir", str(target), "--data_dir", str(data_dir), "--task_name", "sst-2"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "is an existing file" in err and err.count("\n") == 1


def test_3_predict_model_folder_missing(tmp_path, capsys):
    inp = tmp_path / "in.txt"
    inp.write_text("a fine film\n")
    rc = main(
        ["predict", "--model", str(tmp_path / "nope"), "--input", str(inp), "--output", str(tmp_path / "p.jsonl")]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: model folder not found") and err.count("\n") == 1
    assert not (tmp_path / "p.jsonl").exists()


def test_3_jsonl_line_that_is_a_list(tmp_path, files, capsys):
    _, test = files
    train = tmp_path / "train.jsonl"
    train.write_text('{"text_a": "fine", "label": "1"}\n["fine", "1"]\n', encoding="utf-8")
    rc, err, out = _run(
        ["--task_name", "sst-2", "--train_file", str(train), "--test_file", str(test)], tmp_path, capsys
    )
    _assert_one_error(rc, err, out, "train.jsonl:2: expected a JSON object")


# --------------------------------------------------------------------------- 4. --max_steps 0


def test_4_max_steps_zero_is_an_error(tmp_path, data_dir, capsys):
    out = tmp_path / "out"
    rc = run_glue_main(
        ["--output_dir", str(out), "--data_dir", str(data_dir), "--task_name", "sst-2", "--max_steps", "0"]
    )
    err = capsys.readouterr().err
    _assert_one_error(rc, err, out, "--max_steps 0 would train nothing", "--zero_shot")


# --------------------------------------------------------------------------- 5. a missing class


def test_5_train_file_lacking_a_class(tmp_path, files, capsys):
    _, test = files
    train = _csv(tmp_path / "one_class.csv", [(f"text {i}", 1) for i in range(8)])
    dev = _csv(tmp_path / "dev.csv", _sst2_rows(4))
    rc, err, out = _run(
        ["--task_name", "sst-2", "--train_file", str(train), "--validation_file", str(dev), "--test_file", str(test)],
        tmp_path,
        capsys,
    )
    _assert_one_error(rc, err, out, "no examples of class '0'")
    with pytest.raises(DataError, match="no examples of class '0'"):  # sampled from the file (no validation file)
        load_files(
            "sst-2", 13, 4, str(_csv(tmp_path / "many.csv", [(f"t {i}", 1) for i in range(40)])), test_file=str(test)
        )


# --------------------------------------------------------------------------- 6. saved length overrides


def test_6_overrides_recorded_and_long_texts_predicted(tmp_path, data_dir, bert_tokenizer):
    from mtft_nlp.methods.prompt.classifier import PromptClassifier, prompt_metadata
    from mtft_nlp.methods.prompt.modeling import PromptForMaskedLM, load_masked_lm
    from mtft_nlp.methods.prompt.run import prepare
    from mtft_nlp.training.arguments import ModelArguments, TaskArguments

    prep = prepare(
        ModelArguments(),
        TaskArguments(task_name="sst-2", data_dir=str(data_dir), first_sent_limit=20, max_seq_length=40),
        13,
        tokenizer=bert_tokenizer,
    )
    meta = prompt_metadata(prep.task, prep.prompt)
    assert meta["first_sent_limit"] == 20 and meta["max_seq_length"] == 40
    assert max(len(f["input_ids"]) for f in prep.train) <= 40
    # a long text through a classifier with no sentence limit: shortened, the mask kept, no error
    mlm, tok = load_masked_lm(None)
    task = get_task("sst-2")
    clf = PromptClassifier(PromptForMaskedLM(mlm), tok, task, prep.prompt, prompt_metadata(task, prep.prompt))
    assert clf.predict(["a long and winding review " * 200, "short"])[0] in ("0", "1")


# --------------------------------------------------------------------------- 7. user task files in `mtft-nlp run`


def _user_task(tmp_path, name="MyReviews"):
    (tmp_path / "my_prompt.yaml").write_text(
        "default: p\nprompts:\n  p:\n    template: '*cls**sent_0*_It_was*mask*.*sep+*'\n"
        "    label_words: {neg: terrible, pos: great}\n",
        encoding="utf-8",
    )
    p = tmp_path / "my_task.yaml"
    p.write_text(f"name: {name}\nlabels: [neg, pos]\nmetric: acc\nprompt_file: my_prompt.yaml\n", encoding="utf-8")
    return p


def test_7_user_task_file_resolves_in_job_processes(tmp_path, monkeypatch):
    from mtft_nlp import tasks as tasks_mod
    from mtft_nlp.grid.plan import Plan, load_config
    from mtft_nlp.templates import load_prompt

    monkeypatch.setattr(tasks_mod, "_USER", {})
    monkeypatch.delenv(tasks_mod.USER_TASKS_ENV, raising=False)
    path = _user_task(tmp_path)
    cfg = load_config(
        None, "minilm", targets=[str(path)], rows=["zero-shot"], seeds=[13], output_dir=str(tmp_path / "runs")
    )
    assert cfg["targets"] == ["MyReviews"]
    cell = Plan(cfg).cells()[0]
    name = cell["args"][cell["args"].index("--task_name") + 1]
    # the cell's process (started with this environment) finds the task by name, and its prompt
    code = (
        f"from mtft_nlp.tasks import get_task; from mtft_nlp.templates import load_prompt; "
        f"t = get_task({name!r}); print(t.name, load_prompt(t).label_words['pos'])"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["MyReviews", "great"]
    assert load_prompt(get_task("myreviews")).label_words == {"neg": "terrible", "pos": "great"}


# --------------------------------------------------------------------------- 8. Ctrl-C stops a grid


def _grid_config(tmp_path):
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(
        f"targets: [SST-2]\nrows: [zero-shot]\nseeds: [13, 21, 42]\noutput_dir: {tmp_path / 'grid'}\n"
        f"zero_shot: {{max_test_examples: 64}}\n",
        encoding="utf-8",
    )
    return cfg


def _processes_mentioning(text: str):
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if text in (d / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def _JOB_MARK(tmp_path):  # in the command line of every job process (cells, batches), not in the parent's
    return str(tmp_path / "grid") + os.sep


def _wait_for_first_cell(tmp_path, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list((tmp_path / "grid").glob("**/*.log")) and _processes_mentioning(_JOB_MARK(tmp_path)):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("no cell started")


def _start_grid(tmp_path, output=subprocess.PIPE):
    return subprocess.Popen(
        [sys.executable, "-m", "mtft_nlp.cli", "run", "--config", str(_grid_config(tmp_path))],
        stdout=output,
        stderr=output,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )


# The runner signals itself (as a terminal's Ctrl-C or a scheduler's SIGTERM would reach it; its job processes are in
# sessions of their own) from inside one function of a phase, at the n-th call: the signal lands at that point of the
# grid on every run, not at a moment that the machine's speed decides.
_SIGNAL_AT = """
import os, signal, sys, importlib
from mtft_nlp.cli import main
module = importlib.import_module({module!r})
original, calls = getattr(module, {name!r}), []
def signalled(*args, **kwargs):
    calls.append(1)
    if len(calls) == {nth}:
        os.kill(os.getpid(), signal.{signal})
    return original(*args, **kwargs)
setattr(module, {name!r}, signalled)
sys.exit(main(["run", "--config", {config!r}]))
"""


def _run_signalled(tmp_path, config, module, name, nth, sig):
    code = _SIGNAL_AT.format(module=module, name=name, nth=nth, signal=sig, config=str(config))
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
        # as from a terminal: a shell's background job (a CI script run with `&`) inherits SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory):
    """A grid of 3 cells run to its end (the ordinary path), copied by the phases that start after its jobs."""
    tmp = tmp_path_factory.mktemp("finished")
    r = subprocess.run(
        [sys.executable, "-m", "mtft_nlp.cli", "run", "--config", str(_grid_config(tmp))],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(list((tmp / "grid").glob("cells/*/*/*/results.json"))) == 3
    return tmp / "grid"


PHASES = {  # phase: (module, function, n-th call, cells left to run, cells finished when it stops)
    "start": ("mtft_nlp.grid.plan", "record_config", 1, 3, 0),  # before selection and the first job
    "cells running": ("mtft_nlp.grid.plan", "_name", 1, 3, 1),  # the first cell reported, the next one running
    "last cell finishing": ("mtft_nlp.grid.plan", "_name", 1, 1, 3),  # the last cell ended, being reported
    "after the jobs": ("mtft_nlp.grid.plan", "_record_same_runs", 1, 0, 3),
    "report": ("mtft_nlp.reporting.report", "plot_bars", 1, 0, 3),  # the report half written
}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
@pytest.mark.parametrize(
    "phase,sig",
    [
        ("start", "SIGTERM"),
        ("cells running", "SIGINT"),
        ("cells running", "SIGTERM"),
        ("last cell finishing", "SIGINT"),
        ("after the jobs", "SIGTERM"),
        ("report", "SIGINT"),
        ("report", "SIGTERM"),
    ],
)
def test_8_ctrl_c_and_sigterm_stop_the_grid_at_every_phase(phase, sig, tmp_path, finished_grid):
    module, name, nth, to_run, finished = PHASES[phase]
    config = _grid_config(tmp_path)
    if to_run < 3:  # the phases after some cells: those cells' results from the finished grid
        shutil.copytree(finished_grid, tmp_path / "grid", ignore=shutil.ignore_patterns("results.json", "RESULTS.*"))
        for cell in sorted(d for d in (tmp_path / "grid" / "cells").glob("*/*/*") if d.is_dir())[to_run:]:
            shutil.copy2(finished_grid / cell.relative_to(tmp_path / "grid") / RESULTS_FILE, cell / RESULTS_FILE)
    rc, err = _run_signalled(tmp_path, config, module, name, nth, sig)
    assert rc == 130, err[-3000:]
    assert f"interrupted: {finished} of 3 cells finished" in err and "rerun the same command to resume" in err
    assert "Traceback" not in err
    assert _processes_mentioning(_JOB_MARK(tmp_path)) == []  # no job process left behind
    results = list((tmp_path / "grid").glob("cells/*/*/*/" + RESULTS_FILE))
    assert len(results) == finished and all(json.loads(p.read_text())["test_score"] > 0 for p in results)
    left = [p for p in (tmp_path / "grid").rglob(".*")]  # an atomic write cut short leaves its temporary file
    assert left == [], left
    if phase == "report":  # a rerun of the same command resumes: here it only writes the report
        assert not (tmp_path / "grid" / "RESULTS.md").exists()
        r = subprocess.run(
            [sys.executable, "-m", "mtft_nlp.cli", "run", "--config", str(config)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert r.returncode == 0 and "0 cells run, 3 already done" in r.stdout, r.stderr[-3000:]
        assert (tmp_path / "grid" / "RESULTS.md").is_file()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_8_killed_parent_takes_its_cells_with_it(tmp_path):
    proc = _start_grid(tmp_path, output=subprocess.DEVNULL)
    _wait_for_first_cell(tmp_path, proc)
    proc.kill()
    proc.wait()
    deadline = time.time() + 10
    while _processes_mentioning(_JOB_MARK(tmp_path)) and time.time() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(_JOB_MARK(tmp_path)) == []


# --------------------------------------------------------------------------- 9. file line numbers


def test_9_errors_name_the_file_line(tmp_path, files):
    _, test = files
    rows = [("fine", 1), ("bad", 0), ("ok", 1), ("meh", 0), ("oops", 7)]
    train = _csv(tmp_path / "lines.csv", rows)  # header = line 1, the bad label on line 6
    with pytest.raises(DataError, match=r"lines\.csv:6: label '7'"):
        load_files("sst-2", 13, 1, str(train), str(train), str(test))
    quoted = tmp_path / "quoted.csv"  # a quoted field spanning two lines moves the next rows down
    quoted.write_text('text_a,label\n"two\nlines",1\nfine,0\nbad,9\n', encoding="utf-8")
    assert [line for line, _ in read_rows_numbered(quoted)] == [2, 4, 5]
    jsonl = tmp_path / "lines.jsonl"
    jsonl.write_text('{"text_a": "a", "label": "1"}\n\n{"text_a": "b", "label": "5"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"lines\.jsonl:3: label '5'"):
        load_files("sst-2", 13, 1, str(jsonl), str(jsonl), str(test))
    txt = tmp_path / "in.txt"
    txt.write_text("first\n\nthird\n", encoding="utf-8")
    assert read_inputs(str(txt), with_rows=True)[2] == [f"{txt}:1", f"{txt}:3"]


# --------------------------------------------------------------------------- 10. file modes


def test_10_atomic_writes_follow_the_umask(tmp_path):
    from mtft_nlp.io import atomic_write_json, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "results.json", {"a": 1})
        atomic_write_text(tmp_path / "RESULTS.md", "x\n")
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.md", "x\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "results.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "RESULTS.md").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "private.md").stat().st_mode) == 0o600


# --------------------------------------------------------------------------- 11. task-file schema


@pytest.mark.parametrize(
    "body,message",
    [
        ("name: T\nlabels: pos neg\nmetric: acc\n", "field 'labels' must be a list of at least two labels"),
        ("name: T\nlabels: [neg, pos]\n", "missing required field 'metric'"),
        ("labels: [neg, pos]\nmetric: acc\n", "missing required field 'name'"),
        (
            "name: T\nlabels: [neg, pos]\nmetric: acc\nmax_seq_length: long\n",
            "field 'max_seq_length' must be a positive integer",
        ),
        ("name: T\nlabels: [neg, pos]\nmetric: acc\naliases: t2\n", "field 'aliases' must be a list of strings"),
        ("name: T\nlabels: [no, yes]\nmetric: acc\n", "quote them"),
        (
            "name: T\nlabels: [neg, pos]\nmetric: acc\nlmbff: {dir: T, format: tsv, train: train.tsv, test: "
            "{dev.tsv: test.tsv}, "
            "text_a: first, label: -1}\n",
            "field 'lmbff.text_a' must be a column index",
        ),
        (
            "name: T\nlabels: [neg, pos]\nmetric: acc\nlmbff: {dir: T, format: tsv, train: train.tsv, text_a: 0, "
            "label: -1}\n",
            "missing required field 'lmbff.test'",
        ),
        ("name: T\nlabels: [neg, pos]\nmetric: acc\nlabel: x\n", "unknown field 'label'"),
        ("- just\n- a list\n", "must be a mapping"),
    ],
)
def test_11_task_file_schema(body, message, tmp_path, capsys):
    p = tmp_path / "task.yaml"
    p.write_text(body, encoding="utf-8")
    with pytest.raises(TaskError) as exc:
        load_task_file(p)
    assert message in str(exc.value) and str(p) in str(exc.value)
    rc, err, out = _run(["--task_file", str(p)], tmp_path, capsys)
    _assert_one_error(rc, err, out, message)


# --------------------------------------------------------------------------- 12. pickled weights


def test_12_pickled_weights_refused_unless_allowed(tmp_path, data_dir, capsys):
    from mtft_nlp.methods.prompt.modeling import check_weights_format
    from mtft_nlp.models import default_model_path

    folder = tmp_path / "pickled"
    folder.mkdir()
    for f in Path(default_model_path()).iterdir():
        if f.is_file() and not f.name.endswith(".safetensors"):
            (folder / f.name).write_bytes(f.read_bytes())
    (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    for method in ("auto", "prompt"):
        rc, err, out = _run(
            ["--task_name", "sst-2", "--model_name_or_path", str(folder), "--method", method],
            tmp_path,
            capsys,
            data_dir=data_dir,
        )
        _assert_one_error(rc, err, out, "only pickled weights (pytorch_model.bin)", "--allow_pickle")
    check_weights_format(str(folder), allow_pickle=True)  # the flag lets it through
    from mtft_nlp.methods.prompt.modeling import load_masked_lm

    with pytest.raises(MtftError, match="only pickled weights"):  # the loader itself refuses too
        load_masked_lm(str(folder))
    check_weights_format(default_model_path())  # safetensors folders always load


# --------------------------------------------------------------------------- 13. empty texts


def test_13_empty_texts(tmp_path, files, capsys, caplog):
    _, test = files
    empty = _csv(tmp_path / "empty_text.csv", [("", c) for _ in range(40) for c in (0, 1)])
    rc, err, out = _run(
        ["--task_name", "sst-2", "--train_file", str(empty), "--test_file", str(test)], tmp_path, capsys
    )
    _assert_one_error(rc, err, out, "every example of the train set has an empty text")
    some = _sst2_rows()
    some[0] = ("", 0)
    some[1] = ("  ", 1)
    with caplog.at_level(logging.WARNING, logger="mtft_nlp.data.kshot"):
        parts = load_files("sst-2", 13, 16, str(_csv(tmp_path / "some.csv", some)), str(test), str(test))
    assert len(parts["train"]) == 80
    assert any("2 of 80 train examples have an empty text" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- documentation gap: prompt_file


def test_prompt_file_relative_to_the_task_file_with_extension(tmp_path):
    from mtft_nlp.templates import PromptError, load_prompt

    task = load_task_file(_user_task(tmp_path, "RelTask"))
    assert load_prompt(task).label_words["neg"] == "terrible"
    (tmp_path / "my_prompt.yaml").rename(tmp_path / "other.yaml")
    (tmp_path / "t2.yaml").write_text("name: RelTask2\nlabels: [neg, pos]\nmetric: acc\nprompt_file: other\n")
    assert load_prompt(load_task_file(tmp_path / "t2.yaml")).label_words["pos"] == "great"
    (tmp_path / "t3.yaml").write_text("name: RelTask3\nlabels: [neg, pos]\nmetric: acc\n")
    with pytest.raises(PromptError, match="no prompt file .*--prompt_file, or --template and --label_words"):
        load_prompt(load_task_file(tmp_path / "t3.yaml"))
    assert load_prompt("mnli-mm").label_words  # packaged prompt_file: MNLI still resolves to prompts/MNLI.yaml


# --------------------------------------------------------------------------- fuzz


def _mutate(data: bytes, rng: random.Random) -> bytes:
    specials = [
        b"\x00",
        b"\xff",
        b"\xc3",
        b'"',
        b",",
        b"\t",
        b"\n",
        b"\r",
        b"{",
        b"[",
        b":",
        b"-",
        b"'",
        b"\\",
        b"1e999",
        b"NaN",
        b"null",
        b"*",
        b"&a",
        b"!!python/object:os.system",
    ]
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(out) + 1)
        if op == 0 and out:
            out[min(pos, len(out) - 1)] = rng.randrange(256)
        elif op == 1:
            out[pos:pos] = rng.choice(specials)
        elif op == 2 and out:
            del out[pos : pos + rng.randint(1, 20)]
        elif op == 3:
            out = out[:pos]
        elif op == 4:
            lines = bytes(out).split(b"\n")
            i = rng.randrange(len(lines))
            lines.insert(i, lines[rng.randrange(len(lines))])
            out = bytearray(b"\n".join(lines))
        else:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(out)


def _expect_ok_or_mtft(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except MtftError as exc:
        assert str(exc).strip()


def test_fuzz_readers_and_task_loader(tmp_path, data_dir):
    rng = random.Random(16)
    rows = [(f"text {i} of {c}", c) for i in range(10) for c in (0, 1)]
    csv_ok = "text_a,label\n" + "".join(f'"{t}",{c}\n' for t, c in rows)
    jsonl_ok = "".join(json.dumps({"text_a": t, "label": str(c)}) + "\n" for t, c in rows)
    tsv_ok = (data_dir / "original" / "SST-2" / "dev.tsv").read_text(encoding="utf-8").splitlines(keepends=True)[:40]
    yaml_ok = (ROOT / "tasks" / "RTE.yaml").read_text(encoding="utf-8")
    test = _csv(tmp_path / "test.csv", rows)
    n = 0
    for i in range(120):
        p = tmp_path / f"f{i}.csv"
        p.write_bytes(_mutate(csv_ok.encode(), rng))
        _expect_ok_or_mtft(load_files, "sst-2", 13, 4, str(p), None, str(test))
        q = tmp_path / f"f{i}.jsonl"
        q.write_bytes(_mutate(jsonl_ok.encode(), rng))
        _expect_ok_or_mtft(load_files, "sst-2", 13, 4, str(q), str(q), str(test))
        _expect_ok_or_mtft(read_inputs, str(q))
        t = tmp_path / f"f{i}.tsv"
        t.write_bytes(_mutate("".join(tsv_ok).encode(), rng))
        _expect_ok_or_mtft(read_lmbff_file, "sst-2", t)
        y = tmp_path / f"task{i}.yaml"
        y.write_bytes(_mutate(yaml_ok.encode(), rng))
        _expect_ok_or_mtft(load_task_file, y)
        n += 5
    # the LM-BFF original/ layout of a CSV task (pandas), split into k-shot sets in memory
    from mtft_nlp.data.kshot import load_kshot

    cr = "".join(
        (data_dir / "original" / "cr" / "train.csv").read_text(encoding="utf-8").splitlines(keepends=True)[:60]
    )
    (tmp_path / "o" / "cr").mkdir(parents=True)
    for i in range(40):
        for name in ("train.csv", "test.csv"):
            (tmp_path / "o" / "cr" / name).write_bytes(_mutate(cr.encode(), rng))
        _expect_ok_or_mtft(load_kshot, "cr", tmp_path / "o", 13, 4)
        n += 1
    assert n >= 600


def test_fuzz_end_to_end_cli(tmp_path):
    """Through the real command: exit 2 and one error line, fast (checked before torch is imported)."""
    y = tmp_path / "task.yaml"
    y.write_text("name: T\nlabels: pos neg\nmetric: acc\n", encoding="utf-8")
    for args, fragment in (
        [["--task_file", str(y)], "field 'labels'"],
        [["--task_name", "sst-2", "--k", "0"], "--k"],
        [["--task_name", "sst-2", "--seed", "x"], "--seed must be an integer"],
    ):
        t0 = time.time()
        r = subprocess.run(
            [sys.executable, "run_glue_fewshot.py", "--output_dir", str(tmp_path / "o"), *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
        assert fragment in r.stderr and time.time() - t0 < 4
    assert not (tmp_path / "o").exists()
    v = subprocess.run([sys.executable, "-m", "mtft_nlp.cli", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert v.returncode == 0 and v.stdout.startswith("mtft-nlp ")


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["table"], "the following arguments are required: dir"),
        (["run", "--seeds", "abc"], "argument --seeds: 'abc': expected a whole number"),
        (["run", "--seeds", "-1"], "argument --seeds: -1: expected a whole number from 0 to 4294967295"),
        (
            ["predict", "--model", "m", "--input", "i", "--batch_size", "0"],
            "argument --batch_size: 0: expected a whole",
        ),
        (
            ["select", "--target", "sst-2", "--k_shot", "0"],
            "argument --k_shot: 0: expected a whole number of at least 1",
        ),
        (
            ["fit", "--train_file", "t.csv", "--output_dir", "o", "--stage_steps", "nan"],
            "argument --stage_steps: 'nan'",
        ),
        (["train", "--tsk_name", "x", "--output_dir", "o"], "['--tsk_name', 'x']"),
    ],
)
def test_usage_errors_are_one_line(argv, fragment, capsys):
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and fragment in err


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--learning_rate", "-1"], "--learning_rate -1.0: expected a number greater than 0"),
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size 0"),
        (["--eval_steps", "0"], "--eval_steps 0.0"),
        (["--max_seq_length", "0"], "--max_seq_length 0"),
        (["--max_test_examples", "0"], "--max_test_examples 0"),
        (["--weight_decay", "-0.1"], "--weight_decay -0.1"),
        (["--early_stopping_patience", "0"], "--early_stopping_patience 0: expected a whole number of at least 1"),
        (["--encode_chunks", "0"], "--encode_chunks 0: expected a whole number of at least 1"),
        # an optimizer whose package (torchdistx) is not installed: refused before the model loads
        (["--optim", "adamw_anyprecision"], "--optim adamw_anyprecision: Please install"),
    ],
)
def test_14_numeric_training_arguments_are_checked(flags, fragment, tmp_path, data_dir, capsys):
    rc, err, out = _run(["--task_name", "sst-2", *flags], tmp_path, capsys, data_dir)
    _assert_one_error(rc, err, out, fragment)
    assert not out.exists()


@pytest.mark.parametrize(
    "body, fragment",
    [
        ("seeds: [thirteen]", "'seeds' holds ['thirteen']"),
        ("seeds: [13]\nworkers: 0", "'workers' is 0"),
        ("seeds: [13]\ncells_per_process: -1", "'cells_per_process' is -1"),
        ("seeds: [13, true]", "'seeds' holds [True]"),
        ("seeds: [-1]", "'seeds' holds [-1], expected whole numbers from 0 to 4294967295"),
        ("seeds: [13]\ndata_dir: /no/such/folder", "data_dir /no/such/folder is not a folder"),
        (
            "seeds: [13]\nembedding: {learning_rate: x}",
            "section 'embedding' (SST-2 embed-ft seed 13): argument --learning_rate",
        ),
        (
            "seeds: [13]\nembedding: {nosuch: 1}",
            "section 'embedding' (SST-2 embed-ft seed 13): Some specified arguments",
        ),
        (
            "seeds: [13]\nembedding: {max_steps: 10, adam_beta1: 1.5}",
            "--adam_beta1 1.5: expected a number from 0 up to",
        ),
        (
            "seeds: [13]\nembedding: {prompt_file: /no/such.yaml}",
            "section 'embedding' (SST-2 embed-ft seed 13): prompt file not",
        ),
        (
            "seeds: [13]\nembedding: {objective: cross_entropy, head_scale: .nan}",
            "--head_scale nan: expected a finite number",
        ),
        (
            "seeds: [13]\nrows: [mt-sel-embed-ft]\nselection: {nosuch: 1}",
            "section 'selection': unknown selection options",
        ),
        (
            "seeds: [13]\nrows: [mt-sel-embed-ft]\nembedding_multitask: {max_steps: 0}",
            "--max_steps 0: expected a whole",
        ),
        (
            "seeds: [13]\nrows: [mt-sel-embed-ft]\nembedding_multitask: {early_stopping_patience: 2}",
            "--early_stopping_patience: the multitask stage runs all its --max_steps steps",
        ),
    ],
)
def test_14_grid_config_values_are_checked(body, fragment, tmp_path, capsys):
    cfg = tmp_path / "grid.yaml"
    out = tmp_path / "grid"
    cfg.write_text(
        f"targets: [SST-2]\nrows: [embed-ft]\noutput_dir: {out}\n{body}\n".replace(
            "rows: [embed-ft]\n", "", body.count("rows:")
        )
    )
    rc = main(["run", "--config", str(cfg)])
    err = capsys.readouterr().err
    _assert_one_error(rc, err, out, fragment)
    assert not out.exists()


def test_14_multitask_output_dir_that_is_a_file(tmp_path, data_dir, capsys):
    from mtft_nlp.cli import multitask_main

    f = tmp_path / "taken"
    f.write_text("x")
    rc = multitask_main(["--target", "sst-2", "--sources", "mr", "--data_dir", str(data_dir), "--output_dir", str(f)])
    err = capsys.readouterr().err
    _assert_one_error(rc, err, f, "is an existing file")
    assert f.read_text() == "x"


def _damaged_model(tmp_path, damage: str) -> Path:
    """A copy of the packaged model with its weights cut in half, or without its tokenizer files."""
    from mtft_nlp.models import TOKENIZER_FILES, default_model_path

    folder = tmp_path / damage
    for f in Path(default_model_path()).rglob("*"):
        if f.is_file() and not (damage == "no_tokenizer" and f.name in TOKENIZER_FILES + ("tokenizer_config.json",)):
            dst = folder / f.relative_to(default_model_path())
            dst.parent.mkdir(parents=True, exist_ok=True)
            data = f.read_bytes()
            dst.write_bytes(data[: len(data) // 2] if damage == "truncated" and f.suffix == ".safetensors" else data)
    return folder


@pytest.mark.parametrize(
    "damage, fragment",
    [("truncated", "model.safetensors cannot be loaded"), ("no_tokenizer", "no tokenizer files")],
)
def test_14_damaged_model_folders_are_refused_by_every_command(damage, fragment, tmp_path, data_dir, capsys):
    from mtft_nlp.cli import main, multitask_main

    model = _damaged_model(tmp_path, damage)
    rc, err, out = _run(["--task_name", "sst-2", "--model_name_or_path", str(model)], tmp_path, capsys, data_dir)
    _assert_one_error(rc, err, out, str(model), fragment)
    stage = tmp_path / "stage"
    rc = multitask_main(
        ["--target", "sst-2", "--sources", "mr", "--model_name_or_path", str(model)]
        + ["--data_dir", str(data_dir), "--output_dir", str(stage)]
    )
    _assert_one_error(rc, capsys.readouterr().err, stage, fragment)
    assert not stage.exists()
    config = tmp_path / "grid.yaml"
    config.write_text(
        f"model: {model}\ntargets: [SST-2]\nrows: [embed-ft]\nseeds: [13]\noutput_dir: {tmp_path / 'g'}\n"
    )
    rc = main(["run", "--config", str(config)])
    _assert_one_error(rc, capsys.readouterr().err, tmp_path / "g", "model", fragment)
    assert not (tmp_path / "g").exists()


def _numeric_options(parser) -> list:
    """The options of an argparse parser that read a number."""
    numeric = lambda t: t in (int, float) or getattr(t, "__qualname__", "").startswith("option.")  # noqa: E731
    return [a.option_strings[0] for a in parser._actions if a.option_strings and numeric(a.type)]


def test_fuzz_command_line_numbers(tmp_path, capsys):
    """Every numeric option of train, multitask and the grid/selection/fit/predict commands, given a value that no
    option accepts (not a number, not finite, negative), is one error line naming the option, exit 2, nothing
    written; the data folder does not exist, so a value let through would end in the data's error instead."""
    from mtft_nlp.cli import build_parser, multitask_main
    from mtft_nlp.parsing import hf_parser, multitask_dataclasses, train_dataclasses

    missing, out = str(tmp_path / "no_data"), tmp_path / "out"
    train_csv = _csv(tmp_path / "t.csv", [(f"text {i}", i % 2) for i in range(20)])
    commands = {
        "train": (run_glue_main, ["--task_name", "sst-2", "--seed", "13", "--data_dir", missing]),
        "multitask": (multitask_main, ["--target", "sst-2", "--sources", "mr", "--data_dir", missing]),
    }
    options = {
        "train": _numeric_options(hf_parser(train_dataclasses(), [])),
        "multitask": _numeric_options(hf_parser(multitask_dataclasses(), [])),
    }
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    sub_base = {
        "run": ["--targets", "SST-2", "--rows", "zero-shot", "--data_dir", missing],
        "sweep": ["--target", "SST-2", "--vary", "shots", "4", "--data_dir", missing],
        "select": ["--target", "sst-2", "--data_dir", missing],
        "fit": ["--train_file", str(train_csv), "--source_data_dir", missing],
        "splits": ["--data_dir", missing, "--tasks", "sst-2"],
        "predict": ["--model", missing, "--input", str(train_csv)],
    }
    for name, base in sub_base.items():
        commands[name] = (lambda argv, name=name: main([name, *argv]), base)
        options[name] = _numeric_options(subparsers[name])
    n = 0
    for name, (entry, base) in commands.items():
        assert options[name], name
        for option in options[name]:
            for value in ("x", "nan", "1e999", "-inf"):
                argv = [*base, option, value]
                argv += ["--output", str(out)] if name in ("predict", "select") else ["--output_dir", str(out)]
                try:
                    rc = entry(argv)
                except SystemExit as exc:
                    rc = exc.code
                err = capsys.readouterr().err
                assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, (name, option, value, err)
                assert option in err or option.replace("_", "-") in err, (name, option, value, err)
                assert not out.exists(), (name, option, value)
                n += 1
    assert n > 350


def test_fuzz_grid_config(tmp_path, data_dir, monkeypatch):
    """Random values (wrong types, out of range, unknown keys, in sections too) in a grid config, and random byte
    edits of its file: load_config either accepts it or raises one MtftError, and writes nothing."""
    import copy

    # the config text must not hold tmp_path (its length varies from run to run and would move the byte edits)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MTFT_NLP_DATA_DIR", str(Path(data_dir).resolve()))

    import yaml

    from mtft_nlp.grid import plan as plan_mod

    base = {
        "targets": ["SST-2", "CR"],
        "rows": ["embed-ft", "mt-sel-embed-ft", "zero-shot"],
        "seeds": [13, 21],
        "output_dir": "grid",
        "embedding": {"max_steps": 20},
        "embedding_multitask": {"max_steps": 20},
        "selection": {"p": "auto"},
    }
    values = [None, 0, -1, 1.5, float("nan"), float("inf"), "", "x", [], {}, [1, "a"], True, 10**30, ["SST-2"]]
    section_keys = ["max_steps", "learning_rate", "nosuch", "per_device_train_batch_size", "k", "p", "method", "dims"]
    keys = [*plan_mod.DEFAULTS, "nosuchkey"]
    rng = random.Random(28)
    accepted = refused = 0
    for i in range(300):
        cfg = copy.deepcopy(base)
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(keys)
            if isinstance(cfg.get(key), dict) and rng.random() < 0.7:
                cfg[key] = {**cfg[key], rng.choice(section_keys): rng.choice(values)}
            else:
                cfg[key] = rng.choice(values)
        path = tmp_path / f"c{i}.yaml"
        text = yaml.safe_dump(cfg).encode()
        path.write_bytes(text if i % 3 else _mutate(text, rng))
        try:
            loaded = plan_mod.load_config(str(path))
            plan_mod.Plan(loaded).cells()
            accepted += 1
        except MtftError as exc:
            assert str(exc).strip() and "\n" not in str(exc).strip(), str(exc)
            refused += 1
        assert not (tmp_path / "grid").exists()
    assert accepted + refused == 300 and accepted >= 10 and refused > 150  # both outcomes, on fixed inputs


def _model_folder(path: Path, config) -> str:
    """A tiny random model of ``config``'s type saved at ``path``, with the packaged MiniLM's tokenizer."""
    from transformers import AutoModel

    from mtft_nlp.models import TOKENIZER_FILES, resolve_model_name

    AutoModel.from_config(config).save_pretrained(path)
    minilm = Path(resolve_model_name("minilm"))
    for name in (*TOKENIZER_FILES, "tokenizer_config.json", "special_tokens_map.json"):
        if (minilm / name).is_file():
            shutil.copy(minilm / name, path / name)
    return str(path)


@pytest.mark.parametrize("method", ["prompt", "embedding"])
def test_14_a_model_of_the_wrong_type_or_with_another_tokenizer(method, tmp_path, data_dir, capsys):
    """A GPT-2 folder for the prompt method (no masked-LM form), and a BERT folder whose tokenizer has more tokens
    than its embedding table (a tokenizer from another model): one error line each, nothing written."""
    from transformers import BertConfig, GPT2Config

    small = dict(num_hidden_layers=1, num_attention_heads=2, hidden_size=16, intermediate_size=32)
    mixed = _model_folder(tmp_path / "mixed", BertConfig(vocab_size=100, **small))
    cases = [(mixed, "its tokenizer has 30522 tokens but the model's embedding table 100")]
    if method == "prompt":
        gpt2 = _model_folder(tmp_path / "gpt2", GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=30522))
        cases.append((gpt2, "a gpt2 model has no masked-LM form"))
    capsys.readouterr()  # (what saving them printed)
    for model, fragment in cases:
        rc, err, out = _run(
            ["--task_name", "sst-2", "--seed", "13", "--method", method, "--model_name_or_path", model],
            tmp_path,
            capsys,
            data_dir,
        )
        _assert_one_error(rc, err, out, f"--model_name_or_path {model}: {fragment}")
        assert not out.exists()
