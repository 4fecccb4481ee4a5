"""The grid's folder names are the keys of every resumable run and of the committed results: a cell or a stage
folder that a configuration planned before must be the one it plans now (a restructuring must not rename them)."""

from pathlib import Path

import pytest

from mtft_nlp.grid.plan import Plan, load_config

ROOT = Path(__file__).resolve().parents[2]
# grid configurations whose folders hold committed cells and stages of the prompt, embedding and SetFit rows
CONFIGS = [
    "benchmarks/configs/prompt_selection.yaml",
    "benchmarks/configs/embedding.yaml",
    "benchmarks/configs/embedding_recipe_stage/ce-e16.yaml",
    "benchmarks/configs/embedding_recipe/supcon-t0.07-b32-50.yaml",
]


@pytest.mark.parametrize("config", CONFIGS)
def test_committed_cells_and_stages_are_planned_again(config):
    cfg = load_config(str(ROOT / config), data_dir=str(ROOT))  # data_dir is not part of any key
    root = ROOT / cfg["output_dir"]
    cfg["output_dir"] = str(root)
    plan = Plan(cfg)
    cells = {c["dir"] for c in plan.cells()}
    committed = {p.parent for p in root.glob("cells/*/*/*/results.json")}
    assert committed, f"{root} holds no committed cells"
    rows = set(cfg["rows"])
    committed = {d for d in committed if d.parent.name in rows and d.parent.parent.name in cfg["targets"]}
    assert committed <= cells, sorted(str(d.relative_to(root)) for d in committed - cells)[:5]
    stages = {j["dir"] for j in plan.multitask_jobs()}
    saved = {p.parent for p in root.glob("multitask/*/multitask_config.json")}
    assert saved <= stages, sorted(d.name for d in saved - stages)[:5]
