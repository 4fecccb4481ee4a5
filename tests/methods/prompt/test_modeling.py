"""Label-word logits equal the full MLM logits gathered at the mask; mixed-task batches; STS-B loss."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    BertConfig,
    BertForMaskedLM,
    DistilBertConfig,
    DistilBertForMaskedLM,
    RobertaConfig,
    RobertaForMaskedLM,
)

from mtft_nlp.methods.prompt.features import PromptCollator, build_features
from mtft_nlp.methods.prompt.modeling import PromptForMaskedLM, load_masked_lm, predictions_from_logits, prompt_loss
from mtft_nlp.templates import PromptEncoder, load_prompt


def _tiny(kind, vocab_size):
    torch.manual_seed(0)
    common = dict(vocab_size=vocab_size)
    if kind == "bert":
        return BertForMaskedLM(
            BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, **common)
        )
    if kind == "roberta":
        return RobertaForMaskedLM(
            RobertaConfig(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=64,
                max_position_embeddings=80,
                pad_token_id=1,
                **common,
            )
        )
    return DistilBertForMaskedLM(DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, **common))


def _batch(tokenizer, task, texts, texts_b=None):
    enc = PromptEncoder(task, load_prompt(task), tokenizer)
    exs = [
        {
            "text_a": a,
            "text_b": (texts_b or [None] * len(texts))[i],
            "label": None,
            "label_id": i % len(enc.label_word_ids),
        }
        for i, a in enumerate(texts)
    ]
    return enc, PromptCollator(tokenizer.pad_token_id)(build_features(enc, exs))


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert"])
def test_label_word_logits_equal_full_vocabulary_logits(kind, bert_tokenizer, roberta_tokenizer):
    tok = roberta_tokenizer if kind == "roberta" else bert_tokenizer
    mlm = _tiny(kind, len(tok)).eval()
    enc, batch = _batch(tok, "SST-5", ["a fun film", "He ate food and the man ate it, a fun film"])
    model = PromptForMaskedLM(mlm).eval()
    kwargs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        ours = model(**batch).logits
        full = mlm(**kwargs).logits[torch.arange(2), batch["mask_pos"]][:, enc.label_word_ids]
    assert torch.allclose(ours, full, atol=1e-5)
    # the projection swap is undone afterwards: a plain forward still gives the whole vocabulary
    assert mlm(**kwargs).logits.shape[-1] == len(tok)


def test_packaged_minilm_label_word_logits(bert_tokenizer):
    mlm, tok = load_masked_lm(None)
    mlm.eval()
    enc, batch = _batch(tok, "RTE", ["A man is eating.", "It rains."], ["Someone eats.", "It is dry."])
    with torch.no_grad():
        ours = PromptForMaskedLM(mlm)(**batch).logits
        full = mlm(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
        ).logits[torch.arange(2), batch["mask_pos"]][:, enc.label_word_ids]
    assert torch.allclose(ours, full, atol=1e-4)


def test_mixed_task_batch_equals_examples_alone(bert_tokenizer):
    """2-, 3- and 6-class tasks in one batch give the same loss as scoring each example alone."""
    mlm = _tiny("bert", len(bert_tokenizer)).eval()
    model = PromptForMaskedLM(mlm).eval()
    feats = []
    for task, a, b in (
        ("SST-2", "a fun film", None),
        ("MNLI", "A man eats.", "Someone eats."),
        ("TREC", "What is a film?", None),
        ("MNLI", "A dog runs.", "A cat sleeps."),
        ("SST-2", "dull", None),
    ):
        enc = PromptEncoder(task, load_prompt(task), bert_tokenizer)
        feats += build_features(enc, [{"text_a": a, "text_b": b, "label": None, "label_id": 1}])
    collate = PromptCollator(bert_tokenizer.pad_token_id)
    batch = collate(feats)
    assert batch["label_word_ids"].shape == (5, 6) and (batch["label_word_ids"][0, 2:] == -1).all()
    with torch.no_grad():
        mixed = model(**batch)
        alone = [model(**collate([f])) for f in feats]
    assert mixed.loss.item() == pytest.approx(sum(o.loss.item() for o in alone) / 5, rel=1e-5)
    for i, o in enumerate(alone):
        n = len(feats[i]["label_word_ids"])
        assert torch.allclose(mixed.logits[i, :n], o.logits[0], atol=1e-5)
        assert (mixed.logits[i, n:] < -1e30).all()  # padded classes can never win


def test_regression_loss_is_kl_to_target_distribution():
    logits = torch.tensor([[0.3, -0.2], [1.0, 2.0]])
    y = torch.tensor([1.0, 4.5])
    loss = prompt_loss(logits, y, torch.tensor([True, True]), torch.tensor([[0.0, 5.0], [0.0, 5.0]]))
    expected = 0.0
    for row, score in zip(logits, y):
        p = F.softmax(row, -1)
        t = torch.tensor([1 - score / 5, score / 5])
        expected += sum(float(ti * (math.log(ti) - math.log(pi))) for ti, pi in zip(t, p) if ti > 0)
    assert loss.item() == pytest.approx(expected / 2, rel=1e-5)
    preds = predictions_from_logits(logits, True, 0.0, 5.0)
    assert preds[1] == pytest.approx(5 * F.softmax(logits[1], -1)[1].item())
