"""A grid over a user's own task: the target's data in the user's folder (``data_dir``), the multitask sources' in
the packaged data folder (``source_data_dir``); selections and stages read each from its own place."""

import csv
import json
from pathlib import Path

from mtft_nlp import tasks as tasks_mod

CLASSES = {"3": "person", "4": "location", "5": "number"}  # TREC: 3 HUM, 4 LOC, 5 NUM


def _user_folder(data_dir: Path, root: Path, prompt_in_task_file: bool = True) -> Path:
    """A user's task in LM-BFF's layout, alone in its folder: root/original/support/{train,test}.csv; its prompt file
    root/support.prompts.yaml named in the task file or not."""
    folder = root / "original" / "support"
    folder.mkdir(parents=True)
    for split, n in (("train", 40), ("test", 20)):
        rows = list(csv.reader(open(data_dir / "original" / "trec" / f"{split}.csv", encoding="utf-8")))
        taken = {c: 0 for c in CLASSES}
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            for label, text in rows:
                if label in CLASSES and taken[label] < n:
                    csv.writer(f).writerow([CLASSES[label], text])
                    taken[label] += 1
    (root / "support.prompts.yaml").write_text(
        "default: p\nprompts:\n  p:\n    template: '*cls**sent_0*_It_was*mask*.*sep+*'\n"
        "    label_words: {person: person, location: location, number: number}\n",
        encoding="utf-8",
    )
    task = root / "support.yaml"
    task.write_text(
        "name: Support\nlabels: [location, number, person]\nmetric: acc\n"
        + ("prompt_file: support.prompts.yaml\n" if prompt_in_task_file else "")
        + "lmbff: {dir: support, format: csv, header: false, train: train.csv, test: {test.csv: test.csv}, "
        "text_a: 1, label: 0}\n",
        encoding="utf-8",
    )
    return task


def test_selection_and_stage_read_the_sources_from_source_data_dir(tmp_path, data_dir, monkeypatch):
    from mtft_nlp.data.sources import load_sources
    from mtft_nlp.grid import plan as plan_mod
    from mtft_nlp.training.arguments import MultitaskArguments

    monkeypatch.setattr(tasks_mod, "_USER", {})
    monkeypatch.delenv(tasks_mod.USER_TASKS_ENV, raising=False)
    mine = tmp_path / "mine"
    task = _user_folder(data_dir, mine)
    cfg = plan_mod.load_config(
        None,
        "minilm",
        targets=[str(task)],
        rows=["mt-sel-embed-ft"],
        seeds=[13],
        data_dir=str(mine),
        source_data_dir=str(data_dir),
        output_dir=str(tmp_path / "grid"),
    )
    plan = plan_mod.Plan(cfg)
    plan_mod.run_selections(plan)
    selection = json.loads(plan.selection_path("Support").read_text())
    assert selection["target"] == "Support" and selection["selected"]
    assert set(selection["selected"]) <= set(tasks_mod.classification_tasks())
    (job,) = plan.multitask_jobs()
    args = job["args"]
    assert args[args.index("--data_dir") + 1] == str(data_dir)
    assert args[args.index("--target_data_dir") + 1] == str(mine)
    # the stage checks its sources against the user's test set, read from the user's folder
    stage_args = MultitaskArguments(data_dir=str(data_dir), target_data_dir=str(mine))
    (src,) = load_sources(stage_args, [selection["selected"][0]], tasks_mod.get_task("Support"))
    assert src.overlap is not None and src.train


def test_without_source_data_dir_nothing_changes(tmp_path):
    from mtft_nlp.grid import plan as plan_mod

    cfg = plan_mod.load_config(None, "minilm", targets=["CR"], rows=["mt-embed-ft"], seeds=[13])
    (job,) = plan_mod.Plan(cfg).multitask_jobs()
    assert (
        "--target_data_dir" not in job["args"] and job["args"][job["args"].index("--data_dir") + 1] == cfg["data_dir"]
    )
    plan_mod.record_config(tmp_path / "config.yaml", cfg)
    assert "source_data_dir" not in (tmp_path / "config.yaml").read_text()


def test_a_prompt_given_in_the_config_section_reaches_task_selection(tmp_path, data_dir, monkeypatch):
    """A user's task file without a prompt, its prompt given in the grid config's section (as its cells get it):
    task selection renders the target through that prompt instead of stopping at "task Support has no prompt file"."""
    import pytest

    from mtft_nlp.grid import plan as plan_mod
    from mtft_nlp.selection.select import select_tasks
    from mtft_nlp.templates import load_prompt

    monkeypatch.setattr(tasks_mod, "_USER", {})
    monkeypatch.delenv(tasks_mod.USER_TASKS_ENV, raising=False)
    mine = tmp_path / "mine"
    task = _user_folder(data_dir, mine, prompt_in_task_file=False)
    prompt_file = str(mine / "support.prompts.yaml")
    common = dict(targets=[str(task)], seeds=[13], data_dir=str(mine), source_data_dir=str(data_dir))
    common["output_dir"] = str(tmp_path / "grid")
    bare = plan_mod.load_config(None, "minilm", rows=["mt-sel-embed-ft"], **common)
    with pytest.raises(tasks_mod.MtftError, match="Support has no prompt file"):
        plan_mod.run_selections(plan_mod.Plan(bare))  # the task alone has no prompt: the config must give it

    cfg = plan_mod.load_config(
        None, "minilm", rows=["mt-sel-embed-ft"], embedding={"prompt_file": prompt_file}, **common
    )
    plan = plan_mod.Plan(cfg)
    assert plan.selection_path("Support") != plan_mod.Plan(bare).selection_path("Support")
    plan_mod.run_selections(plan)
    written = json.loads(plan.selection_path("Support").read_text())
    expected = select_tasks(
        "Support",
        data_dir=str(data_dir),
        target_examples=plan_mod._target_examples(cfg, "Support", cfg["selection"]),
        target_prompt=load_prompt("Support", prompt_file=prompt_file),
    )
    assert written["selected"] == expected.selected and written["similarity"] == pytest.approx(expected.similarity)

    with pytest.raises(tasks_mod.MtftError, match="sections give different ones"):
        plan_mod.load_config(
            None, "minilm", rows=["mt-sel-embed-ft", "mt-sel-pbft"], embedding={"prompt_file": prompt_file}, **common
        )
