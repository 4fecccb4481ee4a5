"""The embedding-based method: descriptions, heads, adaptation, mixed-task batches, the stage, the artifact, runs."""

import json

import numpy as np
import pytest
import torch

from mtft_nlp.methods.embedding.modeling import (
    ClassHead,
    EmbeddingCollator,
    EmbeddingForClassification,
    build_embedding_features,
    class_descriptions,
    encode_texts,
    load_sentence_encoder,
)
from mtft_nlp.methods.embedding.run import embedding_optimizer, fit_adaptation_head
from mtft_nlp.tasks import available_tasks, get_task
from mtft_nlp.templates import Prompt, PromptError, load_prompt


@pytest.fixture(scope="module")
def encoder():
    return load_sentence_encoder("minilm")


@pytest.mark.parametrize("name", [t for t in available_tasks() if not get_task(t).is_regression])
def test_descriptions_render_from_every_packaged_prompt(name):
    task = get_task(name)
    desc = class_descriptions(task, load_prompt(task))
    assert len(desc) == len(task.labels) and len(set(desc)) == len(desc)
    words = load_prompt(task).words_in_order(task)
    assert all(w in d for w, d in zip(words, desc))


def test_sst2_descriptions_are_the_template_without_input():
    assert class_descriptions(get_task("sst-2"), load_prompt("sst-2")) == ["It was terrible.", "It was great."]


def test_prompt_file_descriptions_win_and_are_checked(tmp_path):
    task = get_task("sst-2")
    f = tmp_path / "p.yaml"
    f.write_text(
        "prompts:\n  d:\n    template: '*cls**sent_0*_It_was*mask*.*sep+*'\n"
        "    label_words: {'0': terrible, '1': great}\n    descriptions: [a bad film, a good film]\n"
    )
    assert class_descriptions(task, load_prompt(task, prompt_file=str(f))) == ["a bad film", "a good film"]
    f.write_text(
        "prompts:\n  d:\n    template: '*cls**sent_0*_It_was*mask*.*sep+*'\n"
        "    label_words: {'0': terrible, '1': great}\n    descriptions: [only one]\n"
    )
    with pytest.raises(PromptError, match="'descriptions' has 1 entries"):
        load_prompt(task, prompt_file=str(f))


def test_identical_descriptions_are_refused():
    task = get_task("sst-2")
    with pytest.raises(PromptError, match="same description"):
        class_descriptions(task, Prompt("*cls**sent_0**mask*.*sep+*", {"0": "x", "1": "x"}))


def test_adaptation_on_separable_embeddings_is_perfect():
    task = get_task("trec")  # 6 classes
    rng = np.random.RandomState(0)
    centers = torch.nn.functional.normalize(torch.as_tensor(rng.randn(6, 16), dtype=torch.float32), dim=-1)

    def sample(n):
        y = np.repeat(np.arange(6), n)
        z = torch.nn.functional.normalize(
            centers[y] + 0.05 * torch.as_tensor(rng.randn(len(y), 16), dtype=torch.float32), dim=-1
        )
        return z, y

    (zt, yt), (zd, yd), (zs, ys) = sample(16), sample(16), sample(50)
    dev = [{"label_id": int(v)} for v in yd]
    descriptions = torch.as_tensor(rng.randn(6, 16), dtype=torch.float32)  # useless descriptions: data must decide
    head, chosen, scored = fit_adaptation_head(task, zt, yt, zd, dev, descriptions)
    assert len(scored) == 9 and chosen != "prototypes alpha=0.0"
    assert (head(zs).argmax(-1).numpy() == ys).all()


def test_mixed_task_batch_equals_each_task_alone(encoder):
    sst5, sst2 = get_task("sst-5"), get_task("sst-2")
    heads = [ClassHead(torch.randn(6, 384)), ClassHead(torch.randn(2, 384), torch.randn(2), 3.0)]
    model = EmbeddingForClassification(encoder, heads).eval()
    a = [{"text_a": "a fine film", "text_b": None, "label_id": 4}, {"text_a": "dull", "text_b": None, "label_id": 0}]
    b = [{"text_a": "great fun", "text_b": None, "label_id": 1}]
    fa = build_embedding_features(encoder, sst5, a, task_id=0)
    fb = build_embedding_features(encoder, sst2, b, task_id=1)
    collate = EmbeddingCollator(encoder.tokenizer.pad_token_id)
    with torch.no_grad():
        mixed = model(**collate([fa[0], fb[0], fa[1]])).logits
        alone_a = model(**collate(fa)).logits
        alone_b = model(**collate(fb)).logits
    assert mixed.shape == (3, 6)
    torch.testing.assert_close(mixed[[0, 2]], alone_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed[1, :2], alone_b[0, :2], atol=1e-5, rtol=1e-5)
    assert (mixed[1, 2:] == torch.finfo(mixed.dtype).min).all()
    batch = collate([fa[0], fb[0], fa[1]])
    loss = model(**batch).loss
    expected = torch.nn.functional.cross_entropy(mixed, batch["labels"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_optimizer_follows_optim_and_the_fused_step_is_adamw(encoder, tmp_path):
    """The encoder and head groups get the optimizer ``--optim`` names with its betas and weight decay (the
    Trainer's default: fused AdamW); its step matches plain AdamW's."""
    import copy

    from mtft_nlp.training.arguments import FewShotTrainingArguments

    task = get_task("sst-2")
    texts = ["good", "bad", "fine", "dull"]
    examples = [{"text_a": t, "text_b": None, "label_id": i % 2} for i, t in enumerate(texts)]
    steps = {}
    for optim in ("adamw_torch_fused", "adamw_torch", "sgd"):
        args = FewShotTrainingArguments(
            output_dir=str(tmp_path), optim=optim, learning_rate=3e-4, adam_beta1=0.8, weight_decay=0.01
        )
        torch.manual_seed(0)  # the same head and dropout masks for every optimizer
        model = EmbeddingForClassification(copy.deepcopy(encoder), [ClassHead(torch.randn(2, 384))]).train()
        opt = embedding_optimizer(model, args, head_lr=0.05)
        assert [g["lr"] for g in opt.param_groups] == [3e-4, 0.05]
        assert all(g["weight_decay"] == 0.01 for g in opt.param_groups)
        if optim != "sgd":
            assert type(opt) is torch.optim.AdamW and opt.defaults["betas"] == (0.8, 0.999)
            assert bool(opt.defaults.get("fused")) == (optim == "adamw_torch_fused")
        else:
            assert type(opt) is torch.optim.SGD
        batch = EmbeddingCollator(encoder.tokenizer.pad_token_id)(build_embedding_features(encoder, task, examples))
        model(**batch).loss.backward()
        opt.step()
        steps[optim] = model.encoder[0].auto_model.encoder.layer[0].attention.self.query.weight.detach().clone()
    before = encoder[0].auto_model.encoder.layer[0].attention.self.query.weight
    assert not torch.equal(steps["adamw_torch_fused"], before)
    torch.testing.assert_close(steps["adamw_torch_fused"], steps["adamw_torch"], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(steps["sgd"], steps["adamw_torch"], atol=1e-6)


def test_pair_tasks_are_tokenised_as_pairs(encoder):
    feats = build_embedding_features(
        encoder, get_task("rte"), [{"text_a": "A man eats.", "text_b": "Someone eats.", "label_id": 0}]
    )
    assert feats[0]["token_type_ids"].count(1) > 0  # the second sentence is its own segment


@pytest.mark.slow
def test_embedding_runs_save_load_predict_and_beat_the_majority(tmp_path, data_dir):
    from mtft_nlp.cli import run_glue_main
    from mtft_nlp.methods.embedding.classifier import EmbeddingClassifier

    common = [
        "--task_name",
        "sst-2",
        "--seed",
        "13",
        "--data_dir",
        str(data_dir),
        "--max_test_examples",
        "200",
        "--disable_tqdm",
        "true",
    ]
    assert (
        run_glue_main(
            common
            + [
                "--output_dir",
                str(tmp_path / "ft"),
                "--max_steps",
                "6",
                "--eval_steps",
                "3",
                "--save_predictions",
                "true",
            ]
        )
        == 0
    )
    rec = json.loads((tmp_path / "ft" / "results.json").read_text())
    assert rec["row"] == "embed-ft" and rec["method"] == "embedding" and rec["pooling"] == "mean"
    labels = [
        json.loads(x)["prediction"] for x in (tmp_path / "ft" / "test_predictions.jsonl").read_text().splitlines()
    ]
    assert set(labels) == {"0", "1"}
    from mtft_nlp.data.kshot import load_kshot

    test = load_kshot("sst-2", str(data_dir), 13, max_test_examples=200)["test"]
    gold = [ex["label"] for ex in test]
    assert rec["test_score"] > max(gold.count("0"), gold.count("1")) / len(gold) + 0.1
    assert np.mean([p == g for p, g in zip(labels, gold)]) == pytest.approx(rec["test_score"])
    # the artifact: save -> load -> the same predictions; the folder is a plain sentence-transformers model
    clf = EmbeddingClassifier.from_pretrained(tmp_path / "ft" / "best")
    texts = [ex["text_a"] for ex in test[:20]]
    assert clf.predict(texts) == labels[:20]
    clf.save_pretrained(tmp_path / "copy")
    again = EmbeddingClassifier.from_pretrained(tmp_path / "copy")
    torch.testing.assert_close(again.logits(texts), clf.logits(texts))
    assert "Embedding-based few-shot classifier for SST-2" in (tmp_path / "copy" / "README.md").read_text()
    from sentence_transformers import SentenceTransformer

    assert SentenceTransformer(str(tmp_path / "copy")).encode(["x"]).shape == (1, 384)
    for extra, row in ((["--zero_shot"], "embed-zero-shot"), (["--frozen_encoder"], "embed-adapt")):
        out = tmp_path / row
        assert run_glue_main(common + ["--output_dir", str(out)] + extra) == 0
        r = json.loads((out / "results.json").read_text())
        assert r["row"] == row and r["test_score"] > 0.6


@pytest.mark.slow
def test_embedding_stage_saves_a_sentence_transformer_and_rows_follow(tmp_path, data_dir):
    from sentence_transformers import SentenceTransformer

    from mtft_nlp.cli import multitask_main, run_glue_main

    out = tmp_path / "mt"
    assert (
        multitask_main(
            [
                "--target",
                "sst-2",
                "--sources",
                "mr",
                "trec",
                "--method",
                "embedding",
                "--max_steps",
                "4",
                "--eval_steps",
                "4",
                "--examples_per_step",
                "8",
                "--data_dir",
                str(data_dir),
                "--output_dir",
                str(out),
                "--disable_tqdm",
                "true",
            ]
        )
        == 0
    )
    meta = json.loads((out / "multitask_config.json").read_text())
    assert meta["method"] == "embedding" and [s["task"] for s in meta["sources"]] == ["MR", "TREC"]
    assert set(meta["dev_after"]) == {"MR", "TREC", "mean"}
    assert SentenceTransformer(str(out)).encode(["a film"]).shape == (1, 384)
    assert (
        run_glue_main(
            [
                "--task_name",
                "sst-2",
                "--seed",
                "13",
                "--data_dir",
                str(data_dir),
                "--model_name_or_path",
                str(out),
                "--zero_shot",
                "--max_test_examples",
                "50",
                "--output_dir",
                str(tmp_path / "z"),
                "--disable_tqdm",
                "true",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "z" / "results.json").read_text())["row"] == "mt-embed-zero-shot"


def test_a_masked_lm_folder_falls_back_to_mean_pooling_and_says_so(tmp_path, caplog, bert_tokenizer):
    from transformers import BertConfig, BertForMaskedLM

    BertForMaskedLM(
        BertConfig(
            vocab_size=len(bert_tokenizer),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).save_pretrained(tmp_path)
    bert_tokenizer.save_pretrained(tmp_path)
    with caplog.at_level("WARNING"):
        enc = load_sentence_encoder(str(tmp_path))
    assert "mean pooling" in caplog.text
    assert encode_texts(enc, ["a", "b c"]).shape == (2, 32)


def test_bad_embedding_input_is_one_error_line(tmp_path, data_dir, capsys):
    from mtft_nlp.cli import run_glue_main

    f = tmp_path / "p.yaml"
    f.write_text(
        "prompts:\n  d:\n    template: '*cls**sent_0*_It_was*mask*.*sep+*'\n"
        "    label_words: {'0': terrible, '1': great}\n    descriptions: [a, b, c]\n"
    )
    out = tmp_path / "o"
    rc = run_glue_main(
        [
            "--task_name",
            "sst-2",
            "--prompt_file",
            str(f),
            "--method",
            "embedding",
            "--data_dir",
            str(data_dir),
            "--output_dir",
            str(out),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error:") and "descriptions" in err[0]
    assert not (out / "results.json").exists()
    rc = run_glue_main(
        ["--task_name", "sts-b", "--method", "embedding", "--data_dir", str(data_dir), "--output_dir", str(out)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "regression" in err[-1] and not (out / "results.json").exists()


def test_loading_an_embedding_classifier_from_a_wrong_place_is_one_clear_error(tmp_path):
    from mtft_nlp.methods.embedding.classifier import EmbeddingClassifier
    from mtft_nlp.tasks import MtftError

    (tmp_path / "weights.bin").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    cases = {
        tmp_path / "missing" / "best": "model folder not found",
        "no-such-name": "model folder not found",  # not a folder here, and not an owner/name Hub id
        tmp_path / "weights.bin": "is a file, not a saved classifier folder",
        tmp_path / "empty": "is not an embedding classifier",
    }
    for where, message in cases.items():
        with pytest.raises(MtftError, match=message):
            EmbeddingClassifier.from_pretrained(where)
