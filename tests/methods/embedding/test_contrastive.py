"""The contrastive objective of the embedding method: the loss, balanced batches, runs and stages with it."""

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtft_nlp.methods.embedding.contrastive import BalancedBatches, check_objective, supcon_loss
from mtft_nlp.methods.embedding.run import fit_adaptation_head
from mtft_nlp.tasks import MtftError, get_task


def test_supcon_equals_the_hand_computed_value():
    # three unit vectors: 0 and 1 share class 0, 2 is class 1; t = 0.5
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    y = torch.tensor([0, 0, 1])
    t = 0.5
    s01, s02, s12 = 0.6 / t, 0.0 / t, 0.8 / t
    # anchor 0: positive 1 among {1, 2}; anchor 1: positive 0 among {0, 2}; anchor 2 has no positive (skipped)
    l0 = -(s01 - math.log(math.exp(s01) + math.exp(s02)))
    l1 = -(s01 - math.log(math.exp(s01) + math.exp(s12)))
    assert supcon_loss(z, y, t).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)
    # two positives: anchor 0 averages the log-probabilities of both
    z4 = F.normalize(torch.tensor([[1.0, 0.1], [0.9, 0.3], [0.8, -0.2], [-0.5, 1.0]]), dim=-1)
    y4 = torch.tensor([0, 0, 0, 1])
    sim = (z4 @ z4.T / t).tolist()
    expected = []
    for i in range(3):
        denom = math.log(sum(math.exp(sim[i][a]) for a in range(4) if a != i))
        expected.append(-np.mean([sim[i][p] - denom for p in range(3) if p != i]))
    assert supcon_loss(z4, y4, t).item() == pytest.approx(float(np.mean(expected)), rel=1e-6)


def test_supcon_groups_keep_positives_and_optionally_negatives_within_a_task():
    z = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]), dim=-1)
    y = torch.tensor([0, 0, 0, 0])  # the same class id in two tasks
    groups = torch.tensor([0, 0, 1, 1])
    t = 0.5
    sim = (z @ z.T / t).tolist()
    # across tasks: 0's positive is 1 only; 2 and 3 are negatives
    l0 = -(sim[0][1] - math.log(sum(math.exp(sim[0][a]) for a in (1, 2, 3))))
    full = supcon_loss(z, y, t, groups, negatives_across_groups=True)
    within = supcon_loss(z, y, t, groups, negatives_across_groups=False)
    assert within.item() == pytest.approx(0.0, abs=1e-6)  # each anchor's only candidate is its positive
    assert full.item() > 0.0
    per_anchor = []
    for i, p in ((0, 1), (1, 0), (2, 3), (3, 2)):
        per_anchor.append(-(sim[i][p] - math.log(sum(math.exp(sim[i][a]) for a in range(4) if a != i))))
    assert per_anchor[0] == pytest.approx(l0)
    assert full.item() == pytest.approx(float(np.mean(per_anchor)), rel=1e-6)
    # no anchor with a positive: zero, and still differentiable
    w = torch.ones(2, requires_grad=True)
    loss = supcon_loss(F.normalize(torch.eye(2) * w, dim=-1), torch.tensor([0, 1]), t)
    loss.backward()
    assert loss.item() == 0.0 and w.grad is not None


def test_a_few_steps_separate_two_classes_and_adaptation_becomes_perfect():
    torch.manual_seed(0)
    # two classes whose raw features overlap in the first two coordinates and differ only in a small third one
    n = 32
    x = torch.randn(2 * n, 8)
    y = torch.tensor([0] * n + [1] * n)
    x[:, 2] = torch.where(y == 0, -0.3, 0.3) + 0.05 * torch.randn(2 * n)
    encoder = torch.nn.Linear(8, 4)
    opt = torch.optim.SGD(encoder.parameters(), lr=0.5)

    def loss():
        return supcon_loss(F.normalize(encoder(x), dim=-1), y, 0.1)

    before = loss().item()
    for _ in range(30):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    after = loss().item()
    assert after < before - 0.5
    z = F.normalize(encoder(x), dim=-1).detach()
    train, dev = torch.arange(0, 2 * n, 2), torch.arange(1, 2 * n, 2)
    task = get_task("sst-2")
    dev_ex = [{"label_id": int(v)} for v in y[dev]]
    head, _, scored = fit_adaptation_head(task, z[train], y[train].numpy(), z[dev], dev_ex, torch.randn(2, 4))
    assert (head(z[dev]).argmax(-1) == y[dev]).all()
    assert max(s["dev_score"] for s in scored) == 1.0


def _features(labels, task_id=0):
    return [{"input_ids": [i], "labels": c, "task_id": task_id} for i, c in enumerate(labels)]


def test_balanced_batches_hold_every_class_of_each_task():
    # uneven classes: 3 classes with 10, 4 and 2 examples; batch 8 = 3 + 3 + 2 (remainder in rotation)
    feats = _features([0] * 10 + [1] * 4 + [2] * 2)
    ds = BalancedBatches([feats], [1.0], steps=12, batch_size=8, seed=1)
    assert len(ds) == 96
    counts = Counter()
    for b in range(12):
        batch = [ds[i] for i in range(8 * b, 8 * b + 8)]
        per_class = Counter(f["labels"] for f in batch)
        assert set(per_class) == {0, 1, 2} and max(per_class.values()) - min(per_class.values()) <= 1
        counts.update(per_class)
    assert max(counts.values()) - min(counts.values()) <= 1  # the remainder rotates, classes even out
    assert [ds[i] for i in range(96)] == [BalancedBatches([feats], [1.0], 12, 8, seed=1)[i] for i in range(96)]
    # several tasks per step: each step's tasks split the batch, each with all of its classes
    tasks = [_features([0, 1] * 5, 0), _features([0, 1, 2, 3] * 3, 1), _features([0, 1, 2] * 4, 2)]
    ds = BalancedBatches(tasks, [1 / 3] * 3, steps=30, batch_size=12, seed=0, tasks_per_step=2)
    seen = Counter()
    for b in range(30):
        batch = [ds[i] for i in range(12 * b, 12 * b + 12)]
        by_task = {}
        for f in batch:
            by_task.setdefault(f["task_id"], []).append(f["labels"])
        assert len(by_task) == 2 and sorted(len(v) for v in by_task.values()) == [6, 6]
        for t, labels in by_task.items():
            assert set(labels) == set(range([2, 4, 3][t]))
        seen.update(by_task.keys())
    assert set(seen) == {0, 1, 2} and list(np.bincount(ds.task_ids)) == [6 * seen[t] for t in range(3)]
    with pytest.raises(MtftError, match="every class must be in every batch"):
        BalancedBatches(tasks, [1 / 3] * 3, steps=2, batch_size=6, seed=0, tasks_per_step=2)


def test_bad_objective_values_are_refused_by_name():
    with pytest.raises(MtftError, match="--objective 'triplet'"):
        check_objective("triplet", 0.07, 1.0)
    for t in (0.0, -1.0, float("nan")):
        with pytest.raises(MtftError, match="--contrastive_temperature"):
            check_objective("supcon", t, 1.0)
    with pytest.raises(MtftError, match="--ce_weight"):
        check_objective("supcon+ce", 0.07, -1.0)
    with pytest.raises(MtftError, match="--head joint"):
        check_objective("supcon", 0.07, 1.0, head="joint")


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--objective", "triplet"], "--objective"),
        (["--contrastive_temperature", "0"], "--contrastive_temperature"),
        (["--contrastive_temperature", "-0.5"], "--contrastive_temperature"),
        (["--per_device_train_batch_size", "4"], "--per_device_train_batch_size 4 is smaller than the 6 classes"),
    ],
)
def test_bad_contrastive_flags_are_one_error_line_and_nothing_written(tmp_path, data_dir, capsys, flags, needle):
    from mtft_nlp.cli import run_glue_main

    out = tmp_path / "o"
    try:  # a value outside --objective's choices is argparse's: the same one line, as SystemExit(2)
        rc = run_glue_main(
            ["--task_name", "trec", "--seed", "13", "--data_dir", str(data_dir), "--output_dir", str(out)] + flags
        )
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error:") and needle in err[0]
    assert not out.exists()


def test_the_stage_refuses_contrastive_objectives_for_the_prompt_method(tmp_path, data_dir, capsys):
    from mtft_nlp.cli import multitask_main

    out = tmp_path / "mt"
    base = ["--target", "sst-2", "--sources", "mr", "--data_dir", str(data_dir), "--output_dir", str(out)]
    rc = multitask_main(base + ["--method", "prompt", "--objective", "supcon"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "embedding method's" in err[0] and not out.exists()
    for flags in (["--encode_chunks", "2"], ["--contrastive_temperature", "0.1"], ["--tasks_per_step", "3"]):
        rc = multitask_main(base + ["--method", "prompt"] + flags)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and f"{flags[0]} is read by the embedding method's stage only" in err[0]
        assert not out.exists()
    rc = multitask_main(base + ["--method", "embedding", "--objective", "supcon", "--contrastive_temperature", "-1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--contrastive_temperature" in err[0] and not out.exists()


@pytest.mark.slow
def test_the_contrastive_stage_saves_a_sentence_transformer(tmp_path, data_dir):
    from sentence_transformers import SentenceTransformer

    from mtft_nlp.cli import multitask_main

    out = tmp_path / "mt"
    args = ["--target", "sst-2", "--sources", "mr", "trec", "--method", "embedding", "--objective", "supcon"]
    args += ["--max_steps", "3", "--eval_steps", "3", "--examples_per_step", "16", "--tasks_per_step", "2"]
    args += ["--data_dir", str(data_dir), "--output_dir", str(out), "--disable_tqdm", "true"]
    assert multitask_main(args) == 0
    meta = json.loads((out / "multitask_config.json").read_text())
    assert meta["objective"] == "supcon" and meta["tasks_per_step"] == 2 and meta["negatives_across_tasks"] is True
    assert meta["encode_chunks"] == 4
    assert sum(s["examples_drawn"] for s in meta["sources"]) == 3 * 16
    emb = SentenceTransformer(str(out)).encode(["a film", "where is paris"])
    assert emb.shape == (2, 384)


@pytest.mark.slow
def test_a_short_contrastive_run_on_trec_beats_cross_entropy_at_equal_steps(tmp_path, data_dir):
    from mtft_nlp.cli import run_glue_main

    common = ["--task_name", "trec", "--seed", "13", "--data_dir", str(data_dir), "--max_test_examples", "50"]
    common += ["--max_steps", "20", "--eval_steps", "10", "--per_device_train_batch_size", "24"]
    common += ["--disable_tqdm", "true", "--save_model", "false"]
    dev = {}
    for objective in ("cross_entropy", "supcon"):
        out = tmp_path / objective
        assert run_glue_main(common + ["--objective", objective, "--output_dir", str(out)]) == 0
        rec = json.loads((out / "results.json").read_text())
        assert rec["objective"] == objective and rec["max_steps"] == 20
        dev[objective] = rec["dev_score"]
        if objective == "supcon":
            # the head is fitted before every evaluation; the one kept is the best step's
            assert rec["head_mode"] == "refit" and set(rec["refit_heads"]) == {"0", "10", "20"}
            assert rec["adaptation_head"] == rec["refit_heads"][str(rec["best_step"])]
            assert rec["contrastive_temperature"] == 0.07
    assert dev["supcon"] > dev["cross_entropy"] + 0.03, dev


def test_description_anchors_join_the_training_batch_of_their_classes():
    from mtft_nlp.methods.embedding.modeling import (
        ClassHead,
        EmbeddingCollator,
        EmbeddingForClassification,
        description_batch,
        load_sentence_encoder,
    )

    encoder = load_sentence_encoder("minilm")
    descriptions = ["It was great.", "It was terrible."]
    texts, labels = ["a wonderful film", "dull and long", "loved it"], [0, 1, 0]
    tok = encoder.tokenizer(texts)
    batch = EmbeddingCollator(encoder.tokenizer.pad_token_id)(
        [{"input_ids": tok["input_ids"][i], "labels": labels[i]} for i in range(3)]
    )
    batch.pop("task_id")
    head = ClassHead(torch.eye(2, 384))
    plain = EmbeddingForClassification(encoder, [head], objective="supcon", temperature=0.1)
    anchored = EmbeddingForClassification(
        encoder,
        [head],
        objective="supcon",
        temperature=0.1,
        description_features=[description_batch(encoder, descriptions)],
    )
    plain.eval(), anchored.eval()  # no dropout: the same embeddings in both passes
    with torch.no_grad():
        z = plain.embed(batch["input_ids"], batch["attention_mask"])
        d = plain.embed(**description_batch(encoder, descriptions))
        assert plain(**batch).loss.item() == pytest.approx(supcon_loss(z, torch.tensor(labels), 0.1).item(), rel=1e-5)
        # in eval mode the descriptions stay out; in training mode they are anchors of their classes
        assert anchored(**batch).loss.item() == pytest.approx(plain(**batch).loss.item(), rel=1e-5)
        anchored.training = True  # the flag alone (dropout modules stay in eval mode)
        expected = supcon_loss(torch.cat([z, d]), torch.tensor(labels + [0, 1]), 0.1)
        assert anchored(**batch).loss.item() == pytest.approx(expected.item(), rel=1e-5)
