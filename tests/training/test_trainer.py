"""The Trainer pieces: private overrides still exist in transformers, the sampler is really used, build_trainer."""

import inspect

import torch
import transformers

from mtft_nlp.training.arguments import FewShotTrainingArguments
from mtft_nlp.training.callbacks import BestDevCallback
from mtft_nlp.training.trainer import FewShotTrainer, MultitaskTrainer, SeededEpochSampler, build_trainer


def test_private_overrides_still_exist_in_transformers():
    # fails loudly on a transformers release that renames or re-signs a private method overridden here
    for cls in (FewShotTrainer, MultitaskTrainer):
        for name in FewShotTrainer.PRIVATE_OVERRIDES:
            base = getattr(transformers.Trainer, name, None)
            assert base is not None, f"transformers.Trainer.{name} is gone: {cls.__name__} relies on it"
            ours = getattr(cls, name)
            assert list(inspect.signature(ours).parameters) == list(inspect.signature(base).parameters), name


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(2, 2)

    def forward(self, x, labels=None):
        logits = self.w(x)
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


def _data(n=12):
    return [{"x": torch.tensor([float(i), 1.0]), "labels": i % 2} for i in range(n)]


def _collate(feats):
    return {"x": torch.stack([f["x"] for f in feats]), "labels": torch.tensor([f["labels"] for f in feats])}


def _sampler(dl):
    return getattr(getattr(dl, "batch_sampler", None), "sampler", None) or dl.sampler


def test_build_trainer_uses_the_seeded_sampler_and_the_given_optimizer(tmp_path):
    model = _Tiny()
    args = FewShotTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=4,
        eval_strategy="no",
        report_to="none",
        seed=5,
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = build_trainer(model, args, _data(), None, _collate, None, [BestDevCallback()], opt)
    assert args.label_names == ["labels"]
    sampler = _sampler(trainer.get_train_dataloader())
    assert isinstance(sampler, SeededEpochSampler) and sampler.seed == 5
    first = list(SeededEpochSampler(12, 5))
    assert sorted(first) == list(range(12)) and first == list(SeededEpochSampler(12, 5))
    before = model.w.weight.detach().clone()
    trainer.train()
    assert getattr(trainer.optimizer, "optimizer", trainer.optimizer) is opt  # accelerate wraps it
    assert opt.param_groups[0]["initial_lr"] == 0.1 and not torch.equal(before, model.w.weight)


def test_multitask_trainer_reads_the_stream_in_order(tmp_path):
    args = FewShotTrainingArguments(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, eval_strategy="no", report_to="none"
    )
    trainer = build_trainer(_Tiny(), args, _data(), None, _collate, trainer_class=MultitaskTrainer)
    assert list(_sampler(trainer.get_train_dataloader())) == list(range(12))


def _scripted_run(tmp_path, scores, patience):
    """A real Trainer run, evaluated on dev after every step, whose dev scores are ``scores`` in turn; returns the
    callback, the steps trained and the weights at each evaluation."""
    model, seen, weights = _Tiny(), iter(scores), {}

    class Snapshot(transformers.TrainerCallback):
        def on_evaluate(self, args, state, control, model=None, **kwargs):
            weights[state.global_step] = model.w.weight.detach().clone()

    args = FewShotTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=len(scores),
        per_device_train_batch_size=4,
        eval_steps=1,
        logging_steps=100,
        report_to="none",
        early_stopping_patience=patience,
    )
    best = BestDevCallback(patience=args.early_stopping_patience)
    compute = lambda _: {"score": next(seen)}  # noqa: E731
    trainer = build_trainer(model, args, _data(), _data(4), _collate, compute, [Snapshot(), best])
    trainer.train()
    return best, trainer.state.global_step, weights, model


def test_early_stopping_stops_after_patience_evaluations_without_a_gain_and_keeps_the_best(tmp_path):
    scores = [0.5, 0.7, 0.6, 0.7, 0.65, 0.9, 0.8, 0.8]  # ties do not count as a gain
    best, steps, weights, model = _scripted_run(tmp_path / "p3", scores, patience=3)
    assert (steps, best.stopped_step, best.best_step) == (5, 5, 2)
    assert [h["step"] for h in best.history] == [1, 2, 3, 4, 5]
    assert torch.equal(model.w.weight, weights[2])  # the weights of the best evaluation, not of the last step
    best, steps, _, _ = _scripted_run(tmp_path / "p4", scores, patience=4)  # the gain at step 6 is reached
    assert (steps, best.stopped_step, best.best_step) == (8, None, 6)
    best, steps, _, _ = _scripted_run(tmp_path / "off", scores, patience=None)
    assert (steps, best.stopped_step, best.best_step) == (8, None, 6)
