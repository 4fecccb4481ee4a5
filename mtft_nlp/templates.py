"""Prompts: the LM-BFF template language and label words (``prompts/<task>.yaml``).

A template is a string of pieces separated by ``*`` (see ``docs/PROMPTS.md``)::

    *cls**sent_0*_It_was*mask*.*sep+*

``cls``/``mask``/``sep``/``sep+`` are the tokenizer's special tokens (``sep+`` also starts a
new segment id on models with token types), ``sent_i`` is sentence i (``+`` adds a leading
space, ``-`` drops its last character, ``l``/``u`` lower/upper-cases its first character),
``label_i`` is the label word of class i, anything else is literal text with ``_`` for a
space; a one-character literal is a single vocabulary token.

:class:`PromptEncoder` turns (text_a, text_b) into token ids with the mask position, for
any HF tokenizer: WordPiece (BERT, uncased or cased), byte-level BPE (RoBERTa, GPT-2
vocabularies) and SentencePiece. It is the only place a prompt is rendered.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

from .tasks import MtftError, TaskSpec, get_task, prompts_dir


class PromptError(MtftError):
    """A template or label word that cannot be used with this task or tokenizer."""


@dataclasses.dataclass
class Prompt:
    template: str
    label_words: Dict[str, str]  # task label -> word
    name: str = "custom"
    description: str = ""
    # optional text per class (task label -> text) for embedding-based zero-shot; without it the template is
    # rendered with each label word and no input (mtft_nlp.methods.embedding.modeling.class_descriptions)
    descriptions: Optional[Dict[str, str]] = None

    def words_in_order(self, task: TaskSpec) -> List[str]:
        """Label words in the task's label order (never in file order)."""
        missing = [lab for lab in task.labels if lab not in self.label_words]
        extra = [lab for lab in self.label_words if lab not in task.labels]
        if missing or extra:
            raise PromptError(
                f"prompt {self.name!r} for task {task.name}: label words must cover exactly the labels "
                f"{task.labels}; missing {missing}, unknown {extra}"
            )
        return [self.label_words[lab] for lab in task.labels]

    def to_dict(self) -> Dict:
        out = {"name": self.name, "template": self.template, "label_words": dict(self.label_words)}
        if self.descriptions:
            out["descriptions"] = dict(self.descriptions)
        return out


def load_prompt(task: TaskSpec | str, name: Optional[str] = None, prompt_file: Optional[str] = None) -> Prompt:
    """The named prompt (default: the file's ``default``) of ``prompts/<task>.yaml`` or ``prompt_file``."""
    task = get_task(task)
    path = Path(prompt_file) if prompt_file else task_prompt_path(task)
    try:
        with open(path, encoding="utf-8") as f:
            d = yaml.safe_load(f)
    except FileNotFoundError:
        if prompt_file or task.prompt_file:
            raise PromptError(f"prompt file not found: {path}") from None
        raise PromptError(
            f"task {task.name} has no prompt file ({path} not found): pass --prompt_file, or "
            "--template and --label_words, or set prompt_file: in the task file "
            "(docs/TASKS.md)"
        ) from None
    except UnicodeDecodeError as exc:
        raise PromptError(f"prompt file {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except IsADirectoryError:
        raise PromptError(f"prompt file {path} is a folder, not a YAML file") from None
    except yaml.YAMLError as exc:
        raise PromptError(f"prompt file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    prompts = d.get("prompts") if isinstance(d, dict) else None
    if not isinstance(prompts, dict) or not prompts:
        raise PromptError(f"prompt file {path} has no 'prompts' mapping")
    name = name or d.get("default") or next(iter(prompts))
    if name not in prompts:
        raise PromptError(f"prompt {name!r} not in {path}; available: {', '.join(prompts)}")
    p = prompts[name]
    if not isinstance(p, dict) or "template" not in p or "label_words" not in p:
        raise PromptError(f"prompt {name!r} in {path} needs 'template' and 'label_words'")
    if not isinstance(p["template"], str):
        raise PromptError(f"prompt {name!r} in {path}: 'template' must be a string, got {p['template']!r}")
    if not isinstance(p["label_words"], dict):
        raise PromptError(
            f"prompt {name!r} in {path}: 'label_words' must be a mapping label: word, got {p['label_words']!r}"
        )
    for k, v in p["label_words"].items():
        if not isinstance(v, str):  # YAML 1.1 reads unquoted No/Yes as booleans
            raise PromptError(f'prompt {name!r} in {path}: label word for {k!r} was read as {v!r}; quote it ("No")')
    words = {str(k): v for k, v in p["label_words"].items()}
    prompt = Prompt(
        template=str(p["template"]),
        label_words=words,
        name=name,
        description=p.get("description", ""),
        descriptions=_descriptions(p.get("descriptions"), task, f"prompt {name!r} in {path}"),
    )
    prompt.words_in_order(task)  # validate the label set now
    return prompt


def task_prompt_path(task: TaskSpec) -> Path:
    """The prompt file of a task: its ``prompt_file`` (a user task's is resolved against the task
    file's folder first, with or without ``.yaml``), else ``prompts/<name>.yaml``."""
    packaged = prompts_dir()
    name = task.prompt_file or task.name
    candidates = []
    if task.prompt_file and task.source_file:
        here = Path(task.source_file).resolve().parent
        try:
            from .tasks import tasks_dir

            is_packaged = here == tasks_dir().resolve()
        except MtftError:
            is_packaged = False
        if not is_packaged:
            candidates += [here / name, here / f"{name}.yaml"]
    candidates += [packaged / name, packaged / f"{name}.yaml"]
    for c in candidates:
        if c.suffix in (".yaml", ".yml") and c.is_file():
            return c
    return candidates[-1] if not name.endswith((".yaml", ".yml")) else candidates[0]


def _descriptions(value, task: TaskSpec, where: str) -> Optional[Dict[str, str]]:
    """A prompt's ``descriptions:``: a mapping label -> text, or a list in the task's label order."""
    if value is None:
        return None
    if isinstance(value, list):
        if len(value) != len(task.labels):
            raise PromptError(
                f"{where}: 'descriptions' has {len(value)} entries, the task has {len(task.labels)} "
                f"labels {task.labels}"
            )
        value = dict(zip(task.labels, value))
    if not isinstance(value, dict):
        raise PromptError(f"{where}: 'descriptions' must be a list or a label -> text mapping")
    out = {str(k): v for k, v in value.items()}
    bad = [k for k, v in out.items() if not isinstance(v, str) or not v.strip()]
    if set(out) != set(task.labels) or bad:
        raise PromptError(
            f"{where}: 'descriptions' must give one non-empty text for each label {task.labels}; "
            f"got {sorted(out)}{', empty or not text: ' + str(bad) if bad else ''}"
        )
    return out


_SENT = re.compile(r"^(\+)?sent([lu])?(-)?_(\d+)$")
_LABEL = re.compile(r"^label_(\d+)$")


@dataclasses.dataclass
class _Piece:
    kind: str  # special | sent | label | literal
    value: object = None
    sent_id: int = -1
    space: bool = False
    case: Optional[str] = None
    drop_last: bool = False
    new_segment: bool = False


def parse_template(template: str) -> List[_Piece]:
    pieces: List[_Piece] = []
    for part in template.split("*"):
        if part == "":
            continue
        if part in ("cls", "mask", "sep", "sep+"):
            pieces.append(_Piece("special", part.rstrip("+"), new_segment=part == "sep+"))
            continue
        m = _SENT.match(part)
        if m:
            pieces.append(
                _Piece(
                    "sent",
                    sent_id=int(m.group(4)),
                    space=bool(m.group(1)),
                    case=m.group(2),
                    drop_last=bool(m.group(3)),
                )
            )
            continue
        m = _LABEL.match(part)
        if m:
            pieces.append(_Piece("label", int(m.group(1))))
            continue
        pieces.append(_Piece("literal", part.replace("_", " ")))
    if sum(1 for p in pieces if p.kind == "special" and p.value == "mask") != 1:
        raise PromptError(f"template {template!r} must contain exactly one *mask* piece")
    return pieces


def transform_sentence(text: str, piece: _Piece) -> str:
    """Apply a sentence piece's modifiers (drop last character, case of the first, leading space)."""
    if piece.drop_last:
        text = text[:-1]
    if piece.case == "l":
        text = text[:1].lower() + text[1:]
    elif piece.case == "u":
        text = text[:1].upper() + text[1:]
    if piece.space:
        text = " " + text
    return text


def label_word_id(tokenizer, word: str) -> int:
    """Id of a label word as one vocabulary token, with the leading-space form on BPE/SentencePiece
    vocabularies (``Ġgreat``); uncased vocabularies lower-case it. Raises :class:`PromptError` if the
    word is not a single token."""
    if word[:1] in ("<", "[", ".", ",") and len(tokenizer.tokenize(word)) == 1:
        return tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word)[0])
    toks = tokenizer.tokenize(" " + word)
    if len(toks) != 1:
        name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
        raise PromptError(
            f"label word {word!r} is not one token for tokenizer {name} (it splits into {toks}); "
            "choose a word that is in the vocabulary"
        )
    tid = tokenizer.convert_tokens_to_ids(toks[0])
    if tid == tokenizer.unk_token_id:
        raise PromptError(f"label word {word!r} is unknown to tokenizer {getattr(tokenizer, 'name_or_path', '')}")
    return int(tid)


class PromptEncoder:
    """Render a task's examples through a prompt into model inputs for one tokenizer.

    ``encode_batch`` returns, per example, ``input_ids``, ``attention_mask``,
    ``token_type_ids`` (only for tokenizers that use them) and ``mask_pos``. Sentence
    limits (``first_sent_limit``/``other_sent_limit``) and ``max_seq_length`` come from
    the task and are per-instance state, so two tasks never share them.
    """

    def __init__(
        self,
        task: TaskSpec | str,
        prompt: Prompt,
        tokenizer,
        max_seq_length: Optional[int] = None,
        first_sent_limit: Optional[int] = None,
        other_sent_limit: Optional[int] = None,
        truncate_head: bool = False,
        fit_to_length: bool = False,
    ):
        self.task = get_task(task)
        self.prompt = prompt
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length or self.task.max_seq_length
        self.first_sent_limit = first_sent_limit if first_sent_limit is not None else self.task.first_sent_limit
        self.other_sent_limit = other_sent_limit if other_sent_limit is not None else self.task.other_sent_limit
        self.truncate_head = truncate_head
        # prediction on raw texts: shorten the longest sentence instead of cutting the prompt (and its mask)
        self.fit_to_length = fit_to_length
        self.pieces = parse_template(prompt.template)
        n_sent = self.task.num_sentences
        for p in self.pieces:
            if p.kind == "sent" and p.sent_id >= n_sent:
                raise PromptError(
                    f"template {prompt.template!r} uses sentence {p.sent_id} but task {self.task.name} has {n_sent}"
                )
        if tokenizer.mask_token_id is None:
            raise PromptError(
                f"tokenizer {getattr(tokenizer, 'name_or_path', '')} has no mask token: prompts need a masked LM"
            )
        self.label_word_ids: List[int] = [label_word_id(tokenizer, w) for w in prompt.words_in_order(self.task)]
        if len(set(self.label_word_ids)) != len(self.label_word_ids):
            raise PromptError(
                f"prompt {prompt.name!r}: two labels share one label word {prompt.words_in_order(self.task)}"
            )
        self.use_token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", [])
        special = {"cls": tokenizer.cls_token_id, "mask": tokenizer.mask_token_id, "sep": tokenizer.sep_token_id}
        if special["cls"] is None:
            special["cls"] = tokenizer.bos_token_id
        if special["sep"] is None:
            special["sep"] = tokenizer.eos_token_id
        self._fixed: Dict[int, List[int]] = {}
        for i, p in enumerate(self.pieces):
            if p.kind == "special":
                self._fixed[i] = [special[p.value]]
            elif p.kind == "label":
                if p.value >= len(self.label_word_ids):
                    raise PromptError(
                        f"template {prompt.template!r}: label_{p.value} but the task has {len(self.label_word_ids)} "
                        f"classes"
                    )
                self._fixed[i] = [self.label_word_ids[p.value]]
            elif p.kind == "literal":
                self._fixed[i] = self._literal_ids(p.value)

    def _literal_ids(self, text: str) -> List[int]:
        tok = self.tokenizer
        if len(text) == 1:
            tid = tok.convert_tokens_to_ids(text)
            if tid is not None and tid != tok.unk_token_id:
                return [tid]
        return tok.encode(text, add_special_tokens=False)

    def encode(self, text_a: str, text_b: Optional[str] = None) -> Dict[str, object]:
        return self.encode_batch([text_a], [text_b])[0]

    def encode_batch(
        self,
        texts_a: Sequence[str],
        texts_b: Optional[Sequence[Optional[str]]] = None,
        row_names: Optional[Sequence[str]] = None,
    ) -> List[Dict[str, object]]:
        n = len(texts_a)
        texts_b = texts_b if texts_b is not None else [None] * n
        piece_ids = self._sentence_ids([texts_a, texts_b], n, row_names)
        out = []
        for j in range(n):
            where = row_names[j] if row_names else f"example {j + 1}"
            out.append(self._features({i: ids[j] for i, ids in piece_ids.items()}, where))
        return out

    def _sentence_ids(self, sents, n: int, row_names: Optional[Sequence[str]]) -> Dict[int, List[List[int]]]:
        """piece index -> the token ids of that sentence piece for every example (one fast-tokenizer call per
        piece), cut to the sentence limit."""
        piece_ids: Dict[int, List[List[int]]] = {}
        for i, p in enumerate(self.pieces):
            if p.kind != "sent":
                continue
            col = sents[p.sent_id]
            texts = []
            for j in range(n):
                t = col[j]
                if t is None:
                    where = row_names[j] if row_names else f"example {j + 1}"
                    raise PromptError(
                        f"{where}: template {self.prompt.template!r} needs sentence {p.sent_id}, which is missing"
                    )
                texts.append(transform_sentence(str(t), p))
            ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
            limit = self.first_sent_limit if p.sent_id == 0 else self.other_sent_limit
            if limit:
                ids = [x[:limit] for x in ids]
            piece_ids[i] = ids
        return piece_ids

    def _features(self, sent_ids: Dict[int, List[int]], where: str) -> Dict[str, object]:
        """One example's input_ids / attention_mask / mask_pos (/ token_type_ids) from its sentence pieces' ids."""
        mask_id = self.tokenizer.mask_token_id
        input_ids: List[int] = []
        token_types: List[int] = []
        segment = 0
        if self.fit_to_length:
            total = sum(len(v) for v in self._fixed.values()) + sum(len(v) for v in sent_ids.values())
            excess = total - self.max_seq_length
            while excess > 0 and any(sent_ids.values()):
                longest = max(sent_ids, key=lambda i: len(sent_ids[i]))
                sent_ids[longest] = sent_ids[longest][:-1]
                excess -= 1
        for i, p in enumerate(self.pieces):
            new = sent_ids[i] if p.kind == "sent" else self._fixed[i]
            input_ids += new
            token_types += [segment] * len(new)
            if p.new_segment:
                segment += 1
        if len(input_ids) > self.max_seq_length:
            if self.truncate_head:
                input_ids, token_types = input_ids[-self.max_seq_length :], token_types[-self.max_seq_length :]
            else:
                input_ids, token_types = input_ids[: self.max_seq_length], token_types[: self.max_seq_length]
        if mask_id not in input_ids:
            if self.fit_to_length:
                raise PromptError(f"{where}: the prompt alone is longer than max_seq_length {self.max_seq_length}")
            raise PromptError(
                f"{where}: the mask token was truncated away (max_seq_length {self.max_seq_length}); "
                "raise --max_seq_length or set a sentence limit (--first_sent_limit/--other_sent_limit)"
            )
        feat = {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "mask_pos": input_ids.index(mask_id)}
        if self.use_token_types:
            feat["token_type_ids"] = token_types
        return feat
