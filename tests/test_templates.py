"""The template language rendered token by token for a WordPiece/uncased (MiniLM/BERT) and a
byte-level BPE (RoBERTa) tokenizer, label-word validation and truncation."""

import pytest

from mtft_nlp.tasks import available_tasks, get_task
from mtft_nlp.templates import Prompt, PromptEncoder, PromptError, label_word_id, load_prompt, parse_template

# (task, text_a, text_b, expected BERT-uncased tokens, expected RoBERTa tokens)
CASES = [
    ("SST-2", "a fun film", None, "[CLS] a fun film it was [MASK] . [SEP]", "<s> a Ġfun Ġfilm ĠIt Ġwas <mask> . </s>"),
    ("SST-5", "a fun film", None, "[CLS] a fun film it was [MASK] . [SEP]", "<s> a Ġfun Ġfilm ĠIt Ġwas <mask> . </s>"),
    ("MR", "a fun film", None, "[CLS] a fun film it was [MASK] . [SEP]", "<s> a Ġfun Ġfilm ĠIt Ġwas <mask> . </s>"),
    ("CR", "a fun film", None, "[CLS] a fun film it was [MASK] . [SEP]", "<s> a Ġfun Ġfilm ĠIt Ġwas <mask> . </s>"),
    ("MPQA", "a fun film", None, "[CLS] a fun film it was [MASK] . [SEP]", "<s> a Ġfun Ġfilm ĠIt Ġwas <mask> . </s>"),
    (
        "Subj",
        "a fun film",
        None,
        "[CLS] a fun film this is [MASK] . [SEP]",
        "<s> a Ġfun Ġfilm ĠThis Ġis <mask> . </s>",
    ),
    (
        "CoLA",
        "a fun film",
        None,
        "[CLS] a fun film this is [MASK] . [SEP]",
        "<s> a Ġfun Ġfilm ĠThis Ġis <mask> . </s>",
    ),
    (
        "TREC",
        "What is a film?",
        None,
        "[CLS] [MASK] : what is a film ? [SEP]",
        "<s> <mask> : ĠWhat Ġis Ġa Ġfilm ? </s>",
    ),
    # sent-_0 drops the final '.', sentl_1 lower-cases 'Someone'
    (
        "MNLI",
        "A man is eating.",
        "Someone eats food.",
        "[CLS] a man is eating ? [MASK] , someone eats food . [SEP]",
        "<s> A Ġman Ġis Ġeating ? <mask> , Ġsomeone Ġeats Ġfood . </s>",
    ),
    (
        "SNLI",
        "A man is eating.",
        "Someone eats food.",
        "[CLS] a man is eating ? [MASK] , someone eats food . [SEP]",
        "<s> A Ġman Ġis Ġeating ? <mask> , Ġsomeone Ġeats Ġfood . </s>",
    ),
    (
        "QNLI",
        "A man is eating.",
        "Someone eats food.",
        "[CLS] a man is eating ? [MASK] , someone eats food . [SEP]",
        "<s> A Ġman Ġis Ġeating ? <mask> , Ġsomeone Ġeats Ġfood . </s>",
    ),
    (
        "RTE",
        "A man is eating.",
        "Someone eats food.",
        "[CLS] a man is eating ? [MASK] , someone eats food . [SEP]",
        "<s> A Ġman Ġis Ġeating ? <mask> , Ġsomeone Ġeats Ġfood . </s>",
    ),
    (
        "MRPC",
        "He ate food.",
        "The man ate.",
        "[CLS] he ate food . [MASK] , the man ate . [SEP]",
        "<s> He Ġate Ġfood . <mask> , Ġthe Ġman Ġate . </s>",
    ),
    (
        "QQP",
        "He ate food.",
        "The man ate.",
        "[CLS] he ate food . [MASK] , the man ate . [SEP]",
        "<s> He Ġate Ġfood . <mask> , Ġthe Ġman Ġate . </s>",
    ),
    (
        "STS-B",
        "He ate food.",
        "The man ate.",
        "[CLS] he ate food . [MASK] , the man ate . [SEP]",
        "<s> He Ġate Ġfood . <mask> , Ġthe Ġman Ġate . </s>",
    ),
]


def test_every_task_has_a_case():
    covered = {c[0] for c in CASES} | {"MNLI-mm"}  # MNLI-mm uses MNLI's prompt file
    assert covered == set(available_tasks())


@pytest.mark.parametrize("task,a,b,bert,roberta", CASES)
def test_protocol_templates_token_by_token(task, a, b, bert, roberta, bert_tokenizer, roberta_tokenizer):
    prompt = load_prompt(task)
    for tok, expected in ((bert_tokenizer, bert), (roberta_tokenizer, roberta)):
        enc = PromptEncoder(task, prompt, tok)
        feat = enc.encode(a, b)
        tokens = tok.convert_ids_to_tokens(feat["input_ids"])
        assert tokens == expected.split(), (tok.__class__.__name__, tokens)
        assert tokens[feat["mask_pos"]] == tok.mask_token
        assert feat["attention_mask"] == [1] * len(tokens)


@pytest.mark.parametrize("task", [c[0] for c in CASES])
def test_label_words_are_single_tokens_in_task_order(task, bert_tokenizer, roberta_tokenizer):
    t = get_task(task)
    prompt = load_prompt(task)
    words = prompt.words_in_order(t)
    assert words == [prompt.label_words[lab] for lab in t.labels]
    bert_ids = PromptEncoder(task, prompt, bert_tokenizer).label_word_ids
    assert bert_tokenizer.convert_ids_to_tokens(bert_ids) == [w.lower() for w in words]  # uncased vocabulary
    rob_ids = PromptEncoder(task, prompt, roberta_tokenizer).label_word_ids
    assert roberta_tokenizer.convert_ids_to_tokens(rob_ids) == ["Ġ" + w for w in words]  # BPE: leading-space form


def test_qnli_rte_label_words_follow_label_order():
    # the reference swapped these in its feature extractor (PROTOCOL section 8)
    for task in ("QNLI", "RTE"):
        t = get_task(task)
        assert t.labels == ["entailment", "not_entailment"]
        assert load_prompt(task).words_in_order(t) == ["Yes", "No"]
    assert load_prompt("MNLI").words_in_order(get_task("mnli")) == ["No", "Yes", "Maybe"]


def test_token_types_follow_sep_plus(bert_tokenizer, roberta_tokenizer):
    prompt = Prompt("*cls**sent_0**sep+**sent_1*_It_was*mask*.*sep+*", {"0": "No", "1": "Yes"})
    feat = PromptEncoder("MRPC", prompt, bert_tokenizer).encode("he ate", "the man ate")
    tokens = bert_tokenizer.convert_ids_to_tokens(feat["input_ids"])
    sep = tokens.index("[SEP]")
    assert feat["token_type_ids"] == [0] * (sep + 1) + [1] * (len(tokens) - sep - 1)
    assert "token_type_ids" not in PromptEncoder("MRPC", prompt, roberta_tokenizer).encode("He ate", "the man ate")


def test_sentence_limits_truncate_per_sentence(bert_tokenizer):
    enc = PromptEncoder("SST-5", load_prompt("SST-5"), bert_tokenizer, first_sent_limit=3)
    tokens = bert_tokenizer.convert_ids_to_tokens(enc.encode("one two three four five")["input_ids"])
    assert tokens == "[CLS] one two three it was [MASK] . [SEP]".split()


def test_template_without_mask_is_an_error(bert_tokenizer):
    with pytest.raises(PromptError, match="mask"):
        parse_template("*cls**sent_0*_It_was.*sep+*")


def test_label_word_that_is_not_one_token(bert_tokenizer, roberta_tokenizer):
    with pytest.raises(PromptError, match="cinematographically"):
        label_word_id(bert_tokenizer, "cinematographically")
    with pytest.raises(PromptError, match="Greatness"):
        label_word_id(roberta_tokenizer, "Greatness")
    assert bert_tokenizer.convert_ids_to_tokens(label_word_id(bert_tokenizer, "Great")) == "great"


def test_mask_truncated_away_names_the_row(bert_tokenizer):
    enc = PromptEncoder("SST-2", load_prompt("SST-2"), bert_tokenizer, max_seq_length=8)
    with pytest.raises(PromptError, match=r"train.tsv:7: the mask token was truncated"):
        enc.encode_batch(
            ["short", "this sentence is far too long for eight tokens"],
            [None, None],
            row_names=["train.tsv:6", "train.tsv:7"],
        )


def test_label_words_must_cover_the_labels():
    with pytest.raises(PromptError, match="missing"):
        Prompt("*cls**sent_0**mask*", {"0": "bad"}).words_in_order(get_task("sst-2"))


def test_template_sentence_index_beyond_task(bert_tokenizer):
    with pytest.raises(PromptError, match="sentence 1"):
        PromptEncoder("SST-2", Prompt("*cls**sent_0**mask**sent_1*", {"0": "bad", "1": "good"}), bert_tokenizer)
