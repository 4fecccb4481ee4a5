import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared benchmark data (LM-BFF layout): $MTFT_NLP_DATA_DIR or ../shared/data."""
    d = Path(os.environ.get("MTFT_NLP_DATA_DIR", ROOT.parent / "shared" / "data"))
    assert (d / "original").is_dir(), f"benchmark data not found under {d} (set MTFT_NLP_DATA_DIR)"
    return d


@pytest.fixture(scope="session")
def bert_tokenizer():
    from transformers import AutoTokenizer

    from mtft_nlp.models import default_model_path

    return AutoTokenizer.from_pretrained(default_model_path())


def _bytes_to_unicode():
    """GPT-2's reversible byte -> printable-character table (byte-level BPE alphabet)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, map(chr, chars)))


ROBERTA_WORDS = [
    "Ġgreat",
    "Ġterrible",
    "Ġbad",
    "Ġokay",
    "Ġgood",
    "Ġsubjective",
    "Ġobjective",
    "ĠDescription",
    "ĠEntity",
    "ĠExpression",
    "ĠHuman",
    "ĠLocation",
    "ĠNumber",
    "Ġincorrect",
    "Ġcorrect",
    "ĠNo",
    "ĠYes",
    "ĠMaybe",
    "ĠIt",
    "Ġwas",
    "ĠThis",
    "Ġis",
    "Ġfun",
    "Ġfilm",
    "Ġman",
    "Ġeating",
    "Ġsomeone",
    "Ġeats",
    "Ġfood",
    "ĠWhat",
    "Ġa",
    "Ġate",
    "Ġthe",
    "He",
    "A",
    "a",
    "ĠA",
    "Ġmovie",
    "ĠThe",
]


@pytest.fixture(scope="session")
def roberta_tokenizer(tmp_path_factory):
    """A byte-level BPE RoBERTa tokenizer built from a small vocab/merges written here."""
    from transformers import RobertaTokenizer

    d = tmp_path_factory.mktemp("roberta-tok")
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for ch in _bytes_to_unicode().values():
        vocab.setdefault(ch, len(vocab))
    merges = []
    for word in ROBERTA_WORDS:
        for i in range(2, len(word) + 1):
            left, right = word[: i - 1], word[i - 1]
            if word[:i] not in vocab:
                merges.append(f"{left} {right}")
                vocab[word[:i]] = len(vocab)
    vocab["<mask>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (d / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tok = RobertaTokenizer.from_pretrained(d)  # reads vocab.json + merges.txt, as for a Hub checkpoint
    assert tok.tokenize(" great") == ["Ġgreat"]
    return tok
