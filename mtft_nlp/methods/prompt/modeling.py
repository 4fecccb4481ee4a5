"""The prompt-based classifier over any ``AutoModelForMaskedLM``.

Class logits are the masked LM's logits at the mask position restricted to the label
words. They are computed for those words only: the encoder's output is cut to the mask
position before the MLM head runs, and the head's vocabulary projection is replaced, for
that call, by a projection onto each example's label-word rows. The head's own transform
(dense + activation + layer norm, whatever the architecture has) is reused unchanged, so
the result equals the full MLM logits gathered at the label words.

Label words travel with each example (``label_word_ids``, padded with -1), so one batch
may mix tasks with different numbers of classes; a single task is a collection of one.
Regression (STS-B, PROTOCOL §4/§8) uses two words (low, high): the prediction is
``low + (high - low) * p(high)`` and the loss is KL(target || predicted) with the target
distribution ``[1 - y', y']``, ``y' = (y - low) / (high - low)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForMaskedLM, AutoTokenizer
from transformers.utils import ModelOutput

from ...models import check_tokenizer_fits, quiet_load_report, resolve_model_name
from ...tasks import MtftError, check_weights_format


def load_masked_lm(name: Optional[str], head_init: str = "random", allow_pickle: bool = False, **kwargs):
    """``(model, tokenizer)`` for a masked LM; ``kwargs`` go to ``from_pretrained`` (config overrides).

    ``head_init`` applies only to MLM-head weights the checkpoint lacks (the packaged MiniLM
    has no head transform): ``random`` keeps transformers' initialisation, ``identity`` sets a
    missing square dense transform to the identity so that, at the start, the mask's hidden
    state is scored directly against the (tied) word embeddings. Only safetensors weights are
    loaded unless ``allow_pickle`` (see :func:`check_weights_format`).
    """
    path = resolve_model_name(name)
    check_weights_format(path, allow_pickle)
    if not allow_pickle:
        kwargs.setdefault("use_safetensors", True)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=kwargs.get("trust_remote_code", False))
    if os.path.isfile(os.path.join(path, "adapter_config.json")):
        # LoRA adapters (e.g. a multitask stage run with --use_lora): merged into their base model, which
        # is then the starting point like any other checkpoint
        from peft import PeftConfig, PeftModel

        base_name = PeftConfig.from_pretrained(path).base_model_name_or_path
        check_weights_format(base_name, allow_pickle)
        with quiet_load_report():
            base = _masked_lm(base_name, base_name, **kwargs)
        merged = PeftModel.from_pretrained(base, path).merge_and_unload()
        merged.requires_grad_(True)  # peft froze the base weights; the merged model trains like any checkpoint
        return merged, tokenizer
    with quiet_load_report():
        model, info = _masked_lm(path, name, output_loading_info=True, **kwargs)
    missing = set(info.get("missing_keys", []))
    _init_missing_head(model, missing, head_init)
    _report_loading(model, missing, info.get("unexpected_keys", []), head_init)
    check_tokenizer_fits(tokenizer, model.get_input_embeddings().num_embeddings, name)
    return model, tokenizer


def _masked_lm(path: str, name: Optional[str], **kwargs):
    """``AutoModelForMaskedLM.from_pretrained``; a model type without a masked-LM form (GPT-2, T5, ...) is refused
    by name."""
    try:
        return AutoModelForMaskedLM.from_pretrained(path, **kwargs)
    except ValueError as exc:
        if "Unrecognized configuration class" not in str(exc):
            raise
        from transformers import AutoConfig

        kind = AutoConfig.from_pretrained(path, trust_remote_code=kwargs.get("trust_remote_code", False)).model_type
        raise MtftError(
            f"--model_name_or_path {name or path}: a {kind} model has no masked-LM form; the prompt method needs a "
            "masked LM (BERT, RoBERTa, ...), and a sentence encoder goes with --method embedding"
        ) from None


def _init_missing_head(model, missing, head_init: str) -> None:
    """``--head_init identity``: a missing square dense transform of the head starts as the identity."""
    if head_init == "identity":
        for name_, module in model.named_modules():
            if (
                isinstance(module, nn.Linear)
                and f"{name_}.weight" in missing
                and module.in_features == module.out_features
                and module is not model.get_output_embeddings()
            ):
                with torch.no_grad():
                    module.weight.copy_(torch.eye(module.in_features))
                    if module.bias is not None:
                        module.bias.zero_()
    elif head_init != "random":
        raise ValueError(f"head_init must be 'random' or 'identity', got {head_init!r}")


def _report_loading(model, missing, unexpected, head_init: str) -> None:
    """One line of ours instead of transformers' load report (kept for --verbose)."""
    import logging

    log = logging.getLogger("mtft_nlp.methods.prompt.modeling")
    if missing:
        keys = sorted(missing)
        parts = [k.split(".") for k in keys]
        common = os.path.commonprefix(parts)[: min(len(p) for p in parts) - 1]
        shown = [".".join(p[len(common) :]) for p in parts]
        groups = [(".".join(common) + ".{" + ", ".join(shown) + "}") if common and len(keys) > 1 else ", ".join(keys)]
        log.warning(
            "%s: %d tensor(s) missing from the checkpoint were initialised (%s, --head_init %s): %s%s "
            "(expected for a checkpoint without an MLM head, such as the packaged MiniLM; --verbose shows "
            "transformers' report)",
            type(model).__name__,
            len(missing),
            "identity where square, else random" if head_init == "identity" else "random",
            head_init,
            groups[0] if len(keys) <= 12 else f"{keys[0]} ...",
            "",
        )
    if unexpected:
        log.info(
            "%s: %d checkpoint tensor(s) not used by the masked LM (e.g. a pooler)",
            type(model).__name__,
            len(unexpected),
        )


def apply_lora(
    model,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.1,
    target_modules: Optional[str] = None,
    modules_to_save: Optional[str] = None,
):
    """Wrap a masked LM with ``peft`` LoRA adapters; only adapter (and ``modules_to_save``) weights train.

    ``target_modules``/``modules_to_save`` are comma-separated module names (default targets:
    peft's per-architecture default, e.g. ``query,value`` for BERT and RoBERTa).
    """
    from peft import LoraConfig, get_peft_model

    split = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None  # noqa: E731
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=split(target_modules),
        modules_to_save=split(modules_to_save),
    )
    return get_peft_model(model, config)


@dataclasses.dataclass
class PromptOutput(ModelOutput):
    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None  # [batch, max classes]; padded classes hold the dtype's minimum


def _unwrap_peft(model):
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


class PromptForMaskedLM(nn.Module):
    """Wraps a ``*ForMaskedLM``; forward takes the prompt features of :class:`PromptEncoder`.

    Inputs: ``input_ids``, ``attention_mask``, optional ``token_type_ids``, ``mask_pos``
    [B], ``label_word_ids`` [B, C] (-1 = no such class for this example), optional
    ``labels`` (class index; float score for regression rows), optional ``is_regression``
    [B] bool and ``regression_range`` [B, 2] (low, high).
    """

    # the loss is a per-batch mean: Trainer must not rescale it for num_items_in_batch / process count
    accepts_loss_kwargs = False

    def __init__(self, mlm: nn.Module):
        super().__init__()
        self.mlm = mlm
        self.config = getattr(mlm, "config", None)

    # -- the two swaps that make the head score only label words at the mask position
    def _parts(self):
        inner = _unwrap_peft(self.mlm)
        base = inner.base_model
        decoder = inner.get_output_embeddings()
        return base, decoder

    @contextlib.contextmanager
    def _mask_only(self, mask_pos: torch.Tensor, label_word_ids: torch.Tensor):
        base, decoder = self._parts()
        rows = torch.arange(mask_pos.shape[0], device=mask_pos.device)

        def cut_to_mask(module, args, output):
            hidden = output[0]
            output["last_hidden_state"] = hidden[rows, mask_pos].unsqueeze(1)  # [B, 1, H]
            return output

        hook = base.register_forward_hook(cut_to_mask)
        swapped = isinstance(decoder, nn.Linear)
        if swapped:
            safe_ids = label_word_ids.clamp(min=0)

            def label_word_projection(x):  # x: [B, 1, H] -> [B, 1, C]
                w = decoder.weight[safe_ids]  # [B, C, H]
                out = torch.einsum("bh,bch->bc", x[:, 0].to(w.dtype), w)
                if decoder.bias is not None:
                    out = out + decoder.bias[safe_ids]
                return out.unsqueeze(1)

            decoder.forward = label_word_projection
        try:
            yield swapped
        finally:
            hook.remove()
            if swapped:
                del decoder.forward  # back to the class's forward

    def label_word_logits(self, input_ids, attention_mask, mask_pos, label_word_ids, token_type_ids=None):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        with self._mask_only(mask_pos, label_word_ids) as projected:
            logits = self.mlm(**kwargs, return_dict=True).logits[:, 0]
        if not projected:  # heads without a Linear decoder: full vocabulary at the mask only, then gather
            logits = logits.gather(1, label_word_ids.clamp(min=0))
        logits = logits.float()
        return logits.masked_fill(label_word_ids < 0, torch.finfo(logits.dtype).min)

    def forward(
        self,
        input_ids,
        attention_mask,
        mask_pos,
        label_word_ids,
        token_type_ids=None,
        labels=None,
        is_regression=None,
        regression_range=None,
        task_id=None,
    ):
        logits = self.label_word_logits(input_ids, attention_mask, mask_pos, label_word_ids, token_type_ids)
        loss = None
        if labels is not None:
            loss = prompt_loss(logits, labels, is_regression, regression_range)
        return PromptOutput(loss=loss, logits=logits)

    # -- saving: the wrapped masked LM is a plain HF checkpoint
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        self.mlm.save_pretrained(save_directory, **kwargs)


def prompt_loss(logits, labels, is_regression=None, regression_range=None):
    """Mean over examples of cross-entropy (classification rows) or KL (regression rows)."""
    n = logits.shape[0]
    per_example = logits.new_zeros(n)
    reg = is_regression if is_regression is not None else torch.zeros(n, dtype=torch.bool, device=logits.device)
    cls_rows = ~reg
    if cls_rows.any():
        per_example[cls_rows] = F.cross_entropy(logits[cls_rows], labels[cls_rows].long(), reduction="none")
    if reg.any():
        lo, hi = regression_range[reg, 0], regression_range[reg, 1]
        y = ((labels[reg].float() - lo) / (hi - lo)).clamp(0, 1)
        target = torch.stack([1 - y, y], dim=-1)
        log_probs = F.log_softmax(logits[reg][:, :2], dim=-1)
        per_example[reg] = F.kl_div(log_probs, target, reduction="none").sum(-1)
    return per_example.mean()


def predictions_from_logits(logits, is_regression: bool, low: float = 0.0, high: float = 5.0):
    """Class index per row, or the regression score ``low + (high - low) * p(high)``."""
    logits = torch.as_tensor(logits, dtype=torch.float32)
    if is_regression:
        p = torch.softmax(logits[:, :2], dim=-1)[:, 1]
        return (low + (high - low) * p).numpy()
    return logits.argmax(-1).numpy()
