"""The embedding model's chunked encoding of training batches (``--encode_chunks``)."""

import torch

from mtft_nlp.methods.embedding.modeling import (
    ClassHead,
    EmbeddingCollator,
    EmbeddingForClassification,
    load_sentence_encoder,
)

TEXTS = [
    "ok",
    "the camera takes sharp pictures in daylight but the battery dies within two hours of video recording",
    "great zoom",
    "menus are confusing",
    "i returned it after a week because the lens cap kept falling off and the strap broke on the first trip",
    "cheap",
    "the screen is bright",
    "works as described, nothing more and nothing less, which at this price is perfectly fine with me",
]
LABELS = [0, 1, 0, 1, 1, 0, 0, 1]


def _batch(encoder):
    tok = encoder.tokenizer(TEXTS)
    feats = [{"input_ids": tok["input_ids"][i], "labels": LABELS[i]} for i in range(len(TEXTS))]
    batch = EmbeddingCollator(encoder.tokenizer.pad_token_id)(feats)
    batch.pop("task_id")
    return batch


def _watch_inputs(encoder, seen):
    """Appends the shape of every token batch the transformer embeds (its embedding layer is a plain submodule
    call; sentence-transformers calls the model's ``forward`` method directly, past module hooks)."""
    return encoder[0].auto_model.embeddings.register_forward_pre_hook(
        lambda _module, args, kwargs: seen.append(kwargs["input_ids"].shape), with_kwargs=True
    )


def _without_dropout(model):
    """Training mode without random draws (BERT's attention also reads its dropout module's ``p``)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def test_chunked_training_batches_give_the_whole_batch_loss_and_gradient_on_fewer_tokens():
    encoder = load_sentence_encoder("minilm")
    batch = _batch(encoder)
    seen = []
    hook = _watch_inputs(encoder, seen)
    runs = {}
    try:
        for chunks in (1, 3):
            model = _without_dropout(
                EmbeddingForClassification(
                    encoder, [ClassHead(torch.eye(2, 384))], objective="supcon", temperature=0.1, encode_chunks=chunks
                )
            )
            model.train()
            model.zero_grad()
            seen.clear()
            out = model(**batch)
            out.loss.backward()
            grads = [p.grad.clone() for p in encoder.parameters() if p.grad is not None]
            runs[chunks] = (out.loss.item(), out.logits.detach(), grads, list(seen))
    finally:
        hook.remove()
    (loss1, logits1, grads1, shapes1), (loss3, logits3, grads3, shapes3) = runs[1], runs[3]
    # one padded batch of 8 against three length-sorted chunks (3, 3, 2 texts), each cut to its longest text
    assert shapes1 == [torch.Size([8, batch["input_ids"].shape[1]])]
    assert [s[0] for s in shapes3] == [3, 3, 2]
    lengths = sorted(batch["attention_mask"].sum(1).tolist())
    assert [s[1] for s in shapes3] == [lengths[2], lengths[5], lengths[7]]
    assert sum(s[0] * s[1] for s in shapes3) < 0.7 * shapes1[0][0] * shapes1[0][1]  # 115 token slots of 184
    # the embeddings come back in batch order: same loss, logits and gradient as the unchunked batch
    assert abs(loss1 - loss3) < 1e-5
    assert torch.allclose(logits1, logits3, atol=1e-4)
    assert len(grads1) == len(grads3) > 0
    assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-3) for a, b in zip(grads1, grads3))


def test_evaluation_encodes_the_batch_as_given():
    encoder = load_sentence_encoder("minilm")
    batch = _batch(encoder)
    model = EmbeddingForClassification(encoder, [ClassHead(torch.eye(2, 384))], encode_chunks=4)
    model.eval()
    seen = []
    hook = _watch_inputs(encoder, seen)
    try:
        with torch.no_grad():
            z = model.embed(batch["input_ids"], batch["attention_mask"])
    finally:
        hook.remove()
    assert seen == [batch["input_ids"].shape]
    assert torch.allclose(z, torch.as_tensor(encoder.encode(TEXTS, normalize_embeddings=True)), atol=1e-5)
