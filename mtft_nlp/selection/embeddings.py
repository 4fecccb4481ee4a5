"""Task embeddings for task selection: the encoder phi of Algorithm 1, the texts it sees, and the cache.

* **phi** (:func:`resolve_encoder`): ``encoder="model"`` (the default) is the model being finetuned
  (``model_name_or_path``, default the packaged MiniLM); any other value names another encoder. A
  folder with ``modules.json`` is a sentence-transformers model: phi = its pooled, L2-normalised
  embedding of the example's text. Anything else is a masked LM: phi = its last hidden state at the
  mask position of the example's own task prompt (``PromptEncoder``), L2-normalised; in the
  ``label`` variant the gold label word replaces the mask token (the label is rendered in), in the
  ``raw`` variant the mask token stays.
* **Texts** (sentence-transformers): ``label`` renders the example through the task's default
  prompt with the gold label word at the mask (:func:`example_texts`, by ``PromptEncoder`` over a
  text "tokenizer" whose tokens are the strings themselves); ``raw`` is the text alone.
* **Cache**: ``<cache>/embeddings/<task>-<variant>-seed<seed>-k<K>-<hash>.npy`` and a ``.json`` key
  (encoder path, task, split seed, K, variant, number and SHA-256 of the texts; masked LMs add the
  pooling and the prompt template).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..data.kshot import DEFAULT_K
from ..data.sources import pooled_train, split_seeds
from ..tasks import MtftError, TaskSpec, get_task
from ..templates import Prompt, PromptEncoder, load_prompt
from .coverage import SelectionError

logger = logging.getLogger(__name__)

TEXT_VARIANTS = ("label", "raw")
DEFAULT_TEXT_VARIANT = "label"
DEFAULT_SPLIT_SEED = 42
ENCODER_MODEL = "model"  # phi = the model being finetuned
DEFAULT_ENCODER = ENCODER_MODEL
DEFAULT_ENCODER_MODEL = "minilm"  # the packaged all-MiniLM-L6-v2 (mtft_nlp.models.resolve_model_name)
SENTENCE_TRANSFORMERS = "sentence-transformers"
MASKED_LM = "masked-lm"


# --------------------------------------------------------------------------- examples and texts


def task_examples(
    task: TaskSpec | str,
    data_dir,
    split_seed: int = DEFAULT_SPLIT_SEED,
    k_shot: int = DEFAULT_K,
    pool_seeds: bool = False,
) -> List[Dict]:
    """The task's k-shot train examples (one split seed, or the union over the 5 seeds): the source pool's
    :func:`~mtft_nlp.data.sources.pooled_train`."""
    return pooled_train(task, data_dir, split_seeds(split_seed, pool_seeds), k_shot)[0]


class _TextTokens:
    """A stand-in tokenizer whose tokens are strings, so that :class:`PromptEncoder` (the one prompt
    renderer) renders plain text: each sentence, literal and label word is one "token" (label words
    with their leading space), ``cls``/``sep`` carry no text; decoding concatenates."""

    unk_token_id = -1
    bos_token_id = eos_token_id = None
    model_input_names = ["input_ids", "attention_mask"]
    name_or_path = "plain text"

    def __init__(self):
        self.strings: List[str] = ["<mask>", "", ""]
        self.mask_token_id, self.cls_token_id, self.sep_token_id = 0, 1, 2

    def convert_tokens_to_ids(self, token: str) -> int:
        self.strings.append(token)
        return len(self.strings) - 1

    def tokenize(self, text: str) -> List[str]:
        return [text]

    def encode(self, text: str, add_special_tokens: bool = False) -> List[int]:
        return [self.convert_tokens_to_ids(text)]

    def __call__(self, texts: Sequence[str], add_special_tokens: bool = False) -> Dict:
        return {"input_ids": [[self.convert_tokens_to_ids(t)] for t in texts]}


def _label_index(task: TaskSpec, example: Dict) -> int:
    return task.label_index(example["label"]) if task.is_regression else int(example["label_id"])


def _rows(examples: Sequence[Dict]) -> List[str]:
    return [str(ex.get("row", f"example {i}")) for i, ex in enumerate(examples)]


def render_with_label(task: TaskSpec | str, examples: Sequence[Dict], prompt: Optional[Prompt] = None) -> List[str]:
    """Each example rendered through ``prompt`` (default: the task's default prompt) as plain text with its gold
    label word at the mask: ``a fun film It was great.`` (special tokens carry no text)."""
    task = get_task(task)
    tok = _TextTokens()
    enc = PromptEncoder(
        task, prompt or load_prompt(task), tok, max_seq_length=10**6, first_sent_limit=0, other_sent_limit=0
    )
    feats = enc.encode_batch([ex["text_a"] for ex in examples], [ex["text_b"] for ex in examples], _rows(examples))
    out = []
    for f, ex in zip(feats, examples):
        ids = list(f["input_ids"])
        ids[f["mask_pos"]] = enc.label_word_ids[_label_index(task, ex)]
        out.append("".join(tok.strings[i] for i in ids).strip())
    return out


def example_texts(
    task: TaskSpec | str,
    examples: Sequence[Dict],
    variant: str = DEFAULT_TEXT_VARIANT,
    prompt: Optional[Prompt] = None,
) -> List[str]:
    """The texts embedded for ``examples``: ``raw`` (text_a, or text_a + " " + text_b) or ``label``
    (rendered through ``prompt``, default the task's default prompt, with the gold label word,
    :func:`render_with_label`)."""
    task = get_task(task)
    if variant == "raw":
        return [ex["text_a"] if ex["text_b"] is None else f"{ex['text_a']} {ex['text_b']}" for ex in examples]
    if variant != "label":
        raise SelectionError(f"unknown embedding variant {variant!r}; choose from {', '.join(TEXT_VARIANTS)}")
    return render_with_label(task, examples, prompt)


# --------------------------------------------------------------------------- the encoder phi


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """The encoder phi: what was asked (``requested``), its name as recorded, the resolved path or Hub
    id (the cache key), its kind, pooling and output size (``None`` when unknown)."""

    requested: str
    name: str
    path: str
    kind: str
    pooling: str
    dim: Optional[int]

    def describe(self) -> Dict:
        return dataclasses.asdict(self)


def _read_json(path: Path) -> Optional[Dict]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _hub_file(repo: str, filename: str) -> Optional[Path]:
    """A file of a Hub model: from the local Hugging Face cache, else downloaded (``None`` if absent or
    unreachable; ``from_pretrained`` would fail the same way)."""
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return Path(found)
        if found is not None:  # cached as known to be absent
            return None
        return Path(hf_hub_download(repo, filename))
    except Exception:  # not a valid repo id, no such file, no network
        return None


def _st_pooling(folder: Path, modules: List[Dict]) -> Tuple[str, Optional[int]]:
    """(pooling description, output size) of a sentence-transformers folder."""
    dim, pooling = None, "pooled"
    for m in modules:
        cfg = _read_json(folder / m.get("path", "") / "config.json") or {}
        if m.get("type", "").endswith("Pooling"):
            modes = [
                k[len("pooling_mode_") :].replace("_tokens", "")
                for k, v in cfg.items()
                if k.startswith("pooling_mode_") and v is True
            ]
            pooling = "+".join(modes) or pooling
            dim = cfg.get("word_embedding_dimension", dim)
        elif m.get("type", "").endswith("Dense"):
            dim = cfg.get("out_features", dim)
    return f"sentence-transformers {pooling} pooling, L2-normalised", dim


def resolve_encoder(encoder: Optional[str] = DEFAULT_ENCODER, model_name_or_path: Optional[str] = None) -> EncoderSpec:
    """phi: ``"model"`` (or ``None``) = ``model_name_or_path`` (default the packaged MiniLM); anything else
    names another encoder (a local folder, or a Hub id: its files from the local Hugging Face cache, else
    downloaded). An encoder that cannot be found is a :class:`SelectionError` naming it."""
    from ..models import resolve_model_name

    requested = encoder or ENCODER_MODEL
    name = (model_name_or_path or DEFAULT_ENCODER_MODEL) if requested == ENCODER_MODEL else requested
    try:
        path = resolve_model_name(name)
    except MtftError as exc:
        raise SelectionError(f"unknown encoder {name!r}: {exc}") from None
    folder, _hub = Path(path), None
    if folder.is_dir():
        folder = folder.resolve()
        path = str(folder)
        find = lambda f: folder / f if (folder / f).is_file() else None  # noqa: E731
    elif re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", path) and not path.startswith((".", "~")):
        find = _hub = functools.partial(_hub_file, path)
    else:
        raise SelectionError(f"unknown encoder {name!r}: no such folder")
    config = find("config.json")  # first: an unknown Hub id fails after one lookup
    if config is None and (find is _hub or find("adapter_config.json") is None):
        raise SelectionError(
            f"unknown encoder {name!r}: neither a local model folder nor a Hugging Face model found "
            f"in the local cache or online (no config.json)"
        )
    modules = find("modules.json")
    if modules is not None:
        pooling, dim = _st_pooling(modules.parent, _read_json(modules) or [])
        if dim is None and config is not None:
            dim = (_read_json(config) or {}).get("hidden_size")
        return EncoderSpec(requested, name, path, SENTENCE_TRANSFORMERS, pooling, dim)
    dim = (_read_json(config) or {}).get("hidden_size") if config is not None else None
    pooling = "last hidden state at the mask position of the task's prompt, L2-normalised"
    return EncoderSpec(requested, name, path, MASKED_LM, pooling, dim)


@functools.lru_cache(maxsize=2)
def _load_sentence_encoder(path: str):
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(path)
    except Exception as exc:  # missing files, not a sentence-transformers model
        raise SelectionError(f"cannot load sentence encoder {path!r}: {exc}") from None


def embed_texts(texts: Sequence[str], encoder: str) -> np.ndarray:
    """L2-normalised float32 sentence-transformers embeddings ``[len(texts), dim]`` (the only call to it)."""
    model = _load_sentence_encoder(encoder)
    emb = model.encode(
        list(texts), batch_size=64, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
    )
    return np.asarray(emb, dtype=np.float32)


@functools.lru_cache(maxsize=1)
def _load_masked_lm(path: str):
    from ..methods.prompt.modeling import load_masked_lm

    try:
        model, tokenizer = load_masked_lm(path)
    except Exception as exc:
        raise SelectionError(f"cannot load masked LM encoder {path!r}: {exc}") from None
    return model.eval(), tokenizer


def mask_states(
    task: TaskSpec | str,
    examples: Sequence[Dict],
    encoder: str,
    variant: str = DEFAULT_TEXT_VARIANT,
    batch_size: int = 16,
    prompt: Optional[Prompt] = None,
) -> np.ndarray:
    """L2-normalised float32 last hidden states ``[len(examples), hidden]`` of a masked LM at the mask
    position of each example's task prompt (``prompt``, default the task's default prompt); in the ``label``
    variant the gold label word replaces the mask."""
    import torch

    task = get_task(task)
    model, tokenizer = _load_masked_lm(encoder)
    enc = PromptEncoder(task, prompt or load_prompt(task), tokenizer)
    feats = enc.encode_batch([ex["text_a"] for ex in examples], [ex["text_b"] for ex in examples], _rows(examples))
    if variant == "label":
        for f, ex in zip(feats, examples):
            f["input_ids"] = list(f["input_ids"])
            f["input_ids"][f["mask_pos"]] = enc.label_word_ids[_label_index(task, ex)]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(feats), batch_size):
        chunk = feats[start : start + batch_size]
        width = max(len(f["input_ids"]) for f in chunk)
        batch = {
            "input_ids": [f["input_ids"] + [pad] * (width - len(f["input_ids"])) for f in chunk],
            "attention_mask": [f["attention_mask"] + [0] * (width - len(f["attention_mask"])) for f in chunk],
        }
        if enc.use_token_types:
            batch["token_type_ids"] = [f["token_type_ids"] + [0] * (width - len(f["token_type_ids"])) for f in chunk]
        batch = {k: torch.tensor(v, device=device) for k, v in batch.items()}
        with torch.no_grad():
            hidden = model(**batch, output_hidden_states=True).hidden_states[-1]
        pos = torch.tensor([f["mask_pos"] for f in chunk], device=device)
        out.append(hidden[torch.arange(len(chunk), device=device), pos].float().cpu().numpy())
    emb = np.concatenate(out, axis=0)
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)


# --------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    return Path(os.environ.get("MTFT_NLP_CACHE") or Path.home() / ".cache" / "mtft-nlp")


def embedding_cache_key(
    encoder: str, task: str, split_seed, k_shot: int, variant: str, texts: Sequence[str], **extra
) -> Dict:
    """What an embedding file depends on; the texts' hash makes data or prompt edits a miss."""
    digest = hashlib.sha256(json.dumps(list(texts)).encode("utf-8")).hexdigest()
    return {
        "encoder": encoder,
        "task": task,
        "split_seed": split_seed,
        "k_shot": k_shot,
        "variant": variant,
        "n": len(texts),
        "texts_sha256": digest,
        **extra,
    }


def cache_paths(cache_dir: Path, key: Dict) -> Tuple[Path, Path]:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    safe_task = re.sub(r"[^A-Za-z0-9_.-]", "_", key["task"])
    stem = f"{safe_task}-{key['variant']}-seed{key['split_seed']}-k{key['k_shot']}-{digest}"
    folder = cache_dir / "embeddings"
    return folder / f"{stem}.npy", folder / f"{stem}.json"


def _read_cache(cache_dir: Path, key: Dict) -> Optional[np.ndarray]:
    npy, meta = cache_paths(cache_dir, key)
    try:
        with open(meta, encoding="utf-8") as f:
            if json.load(f) != key:
                return None
        emb = np.load(npy)
    except (OSError, ValueError):
        return None
    return emb if emb.ndim == 2 and emb.shape[0] == key["n"] else None


def write_cache(cache_dir: Path, key: Dict, emb: np.ndarray) -> None:
    from ..io import atomic_write_json

    npy, meta = cache_paths(cache_dir, key)
    npy.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{npy.name}.", dir=npy.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, emb)
        os.replace(tmp, npy)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    atomic_write_json(meta, key)  # the key last: a file pair without it is never read


def task_embeddings(
    task: TaskSpec | str,
    data_dir,
    encoder: Optional[str | EncoderSpec] = None,
    variant: str = DEFAULT_TEXT_VARIANT,
    split_seed: int = DEFAULT_SPLIT_SEED,
    k_shot: int = DEFAULT_K,
    pool_seeds: bool = False,
    cache_dir: Optional[str | os.PathLike] = None,
    model_name_or_path: Optional[str] = None,
    examples: Optional[List[Dict]] = None,
    prompt: Optional[Prompt] = None,
) -> np.ndarray:
    """phi of a task's k-shot train examples ``[n, dim]`` (or of ``examples``, a user's own), rendered through
    ``prompt`` (default: the task's default prompt), from the cache when present. Cached vectors whose size differs
    from the encoder's are a :class:`SelectionError`."""
    task = get_task(task)
    spec = encoder if isinstance(encoder, EncoderSpec) else resolve_encoder(encoder, model_name_or_path)
    if variant not in TEXT_VARIANTS:
        raise SelectionError(f"unknown embedding variant {variant!r}; choose from {', '.join(TEXT_VARIANTS)}")
    if examples is None:
        examples = task_examples(task, data_dir, split_seed, k_shot, pool_seeds)
    seed = "pooled" if pool_seeds else split_seed
    if spec.kind == SENTENCE_TRANSFORMERS:
        texts = example_texts(task, examples, variant, prompt)
        key = embedding_cache_key(spec.path, task.name, seed, k_shot, variant, texts)
    else:
        prompt = prompt or load_prompt(task)
        texts = example_texts(task, examples, "label", prompt)  # the prompt and labels the hidden states depend on
        key = embedding_cache_key(
            spec.path, task.name, seed, k_shot, variant, texts, pooling="mask", template=prompt.template
        )
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    emb = _read_cache(cache, key)
    if emb is not None:
        if spec.dim is not None and emb.shape[1] != spec.dim:
            raise SelectionError(
                f"encoder {spec.name!r} has hidden size {spec.dim} but the cached embeddings "
                f"{cache_paths(cache, key)[0]} have {emb.shape[1]}; delete them or use another "
                f"--cache_dir"
            )
        return emb
    logger.info("embedding %d examples of %s (%s, %s)", len(examples), task.name, variant, spec.kind)
    emb = (
        embed_texts(texts, spec.path)
        if spec.kind == SENTENCE_TRANSFORMERS
        else mask_states(task, examples, spec.path, variant, prompt=prompt)
    )
    write_cache(cache, key, emb)
    return emb
