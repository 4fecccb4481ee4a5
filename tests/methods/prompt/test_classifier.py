"""The saved prompt classifier: save -> load -> identical logits, predict, model card, Hub upload
(against a stand-in HfApi), LoRA adapters, and refusals of bad folders."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForMaskedLM, BertConfig, BertForMaskedLM

from mtft_nlp.cli import main, run_glue_main
from mtft_nlp.methods.prompt.classifier import PromptClassifier, save_prompt_classifier
from mtft_nlp.methods.prompt.modeling import PromptForMaskedLM, apply_lora
from mtft_nlp.tasks import MtftError, get_task
from mtft_nlp.templates import PromptError, load_prompt


def _tiny_bert(tok):
    torch.manual_seed(0)
    return BertForMaskedLM(
        BertConfig(
            vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
        )
    )


@pytest.fixture
def saved(tmp_path, bert_tokenizer):
    model = PromptForMaskedLM(_tiny_bert(bert_tokenizer)).eval()
    out = save_prompt_classifier(
        model,
        bert_tokenizer,
        get_task("rte"),
        load_prompt("rte"),
        tmp_path / "clf",
        {"base_model": "tiny-bert", "scores": {"dev": 0.75, "test": 0.6}, "seed": 13},
    )
    return model, out


def test_save_load_identical_logits_and_plain_mlm(saved):
    model, out = saved
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin")) and not list(out.glob("*.pkl"))
    clf = PromptClassifier.from_pretrained(out)
    texts, pairs = ["A man eats.", "It rains a lot today."], ["Someone eats.", "It is dry."]
    feats = clf.encoder.encode_batch(texts, pairs)
    from mtft_nlp.methods.prompt.features import PromptCollator

    for f in feats:
        f["label_word_ids"] = clf.encoder.label_word_ids
    batch = PromptCollator(0)(feats)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, clf.model(**batch).logits)
    assert clf.predict_logits(texts, pairs) == pytest.approx(model(**batch).logits.detach().numpy())
    assert isinstance(AutoModelForMaskedLM.from_pretrained(out), BertForMaskedLM)


def test_predict_pairs_singles_and_probabilities(saved, tmp_path, bert_tokenizer):
    _, out = saved
    clf = PromptClassifier.from_pretrained(out)
    preds, probs = clf.predict(["A man eats."], ["Someone eats."], return_probabilities=True)
    assert preds[0] in ("entailment", "not_entailment") and sum(probs[0].values()) == pytest.approx(1.0)
    with pytest.raises(MtftError, match="sentence pairs"):
        clf.predict(["only one sentence"])
    single = save_prompt_classifier(
        PromptForMaskedLM(_tiny_bert(bert_tokenizer)),
        bert_tokenizer,
        get_task("sst-2"),
        load_prompt("sst-2"),
        tmp_path / "sst2",
    )
    s = PromptClassifier.from_pretrained(single)
    texts = ["a gripping, funny film", "a tedious mess", "fine", "an extraordinarily long and winding review " * 5]
    preds = s.predict(texts, batch_size=2)
    assert len(preds) == 4 and set(preds) <= {"0", "1"}
    # length-sorted batching returns predictions in input order
    assert preds == [s.predict([t])[0] for t in texts]
    # the predict command
    inp = tmp_path / "texts.txt"
    inp.write_text("\n".join(texts[:2]) + "\n")
    assert (
        main(
            [
                "predict",
                "--model",
                str(single),
                "--input",
                str(inp),
                "--output",
                str(tmp_path / "p.jsonl"),
                "--probabilities",
            ]
        )
        == 0
    )
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["prediction"] for r in rows] == preds[:2] and set(rows[0]["probabilities"]) == {"0", "1"}


def test_model_card_names_prompt_and_scores(saved):
    _, out = saved
    card = (out / "README.md").read_text()
    assert "*cls**sent-_0*?*mask*,*+sentl_1**sep+*" in card and "`entailment` → `Yes`" in card
    assert (
        "| test | 0.6000 |" in card and "base_model: tiny-bert" in card and "PromptClassifier.from_pretrained" in card
    )


class FakeHfApi:
    """Stands in for huggingface_hub.HfApi: records what would be sent."""

    def __init__(self):
        self.calls, self.files = [], {}

    def create_repo(self, repo_id, private=False, exist_ok=False):
        self.calls.append(("create_repo", repo_id, private, exist_ok))

    def upload_folder(self, repo_id, folder_path, commit_message=None):
        self.calls.append(("upload_folder", repo_id, commit_message))
        self.files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        return f"https://huggingface.co/{repo_id}/commit/abc"


def test_push_to_hub_sends_exactly_the_artifact(saved):
    _, out = saved
    clf = PromptClassifier.from_pretrained(out)
    api = FakeHfApi()
    url = clf.push_to_hub("user/mtft-rte-tiny", api=api)
    assert url.endswith("/commit/abc")
    assert api.calls[0] == ("create_repo", "user/mtft-rte-tiny", False, True)
    assert sorted(api.files) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert json.loads(api.files["config.json"])["prompt_classifier"]["label_words"] == {
        "entailment": "Yes",
        "not_entailment": "No",
    }
    assert b"Prompt-based few-shot classifier for RTE" in api.files["README.md"]


def test_bad_folders_are_refused(tmp_path, bert_tokenizer, saved):
    plain = tmp_path / "plain"
    _tiny_bert(bert_tokenizer).save_pretrained(plain)
    bert_tokenizer.save_pretrained(plain)
    with pytest.raises(MtftError, match="no prompt metadata"):
        PromptClassifier.from_pretrained(plain)
    _, out = saved
    cfg = json.loads((out / "config.json").read_text())
    cfg["prompt_classifier"]["labels"] = ["0", "1", "2"]  # a wrong task's label set
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PromptError, match="missing"):
        PromptClassifier.from_pretrained(out)
    cfg["prompt_classifier"]["labels"] = ["entailment", "not_entailment"]
    cfg["prompt_classifier"]["label_words"] = {"entailment": "cinematographically", "not_entailment": "No"}
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PromptError, match="not one token"):
        PromptClassifier.from_pretrained(out)
    cfg["architectures"], cfg["model_type"] = ["DistilBertForMaskedLM"], "distilbert"
    cfg["prompt_classifier"]["label_words"] = {"entailment": "Yes", "not_entailment": "No"}
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(MtftError, match="do not match the architecture"):
        PromptClassifier.from_pretrained(out)


def test_lora_trains_only_adapters_and_reloads(tmp_path, data_dir):
    out = tmp_path / "lora"
    assert (
        run_glue_main(
            [
                "--method",
                "prompt",
                "--task_name",
                "sst-2",
                "--seed",
                "13",
                "--use_lora",
                "--lora_r",
                "4",
                "--max_steps",
                "6",
                "--eval_steps",
                "3",
                "--max_test_examples",
                "40",
                "--data_dir",
                str(data_dir),
                "--output_dir",
                str(out),
                "--disable_tqdm",
                "true",
                "--learning_rate",
                "1e-3",
            ]
        )
        == 0
    )
    best = out / "best"
    assert (best / "adapter_config.json").is_file() and (best / "adapter_model.safetensors").is_file()
    assert not (best / "model.safetensors").exists()
    from safetensors.torch import load_file

    adapters = load_file(best / "adapter_model.safetensors")
    assert adapters and all("lora_" in k for k in adapters)
    clf = PromptClassifier.from_pretrained(best)
    assert clf.predict(["a gripping, funny film"])[0] in ("0", "1")
    r = json.loads((out / "results.json").read_text())
    assert r["args"]["model"]["use_lora"] is True


def test_lora_wrapper_freezes_base(bert_tokenizer):
    mlm = apply_lora(_tiny_bert(bert_tokenizer), r=4)
    trainable = [n for n, p in mlm.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_training_push_to_hub_uploads_the_best_folder(tmp_path, data_dir, monkeypatch):
    import huggingface_hub

    api = FakeHfApi()
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: api)
    out = tmp_path / "run"
    assert (
        run_glue_main(
            [
                "--method",
                "prompt",
                "--task_name",
                "sst-2",
                "--seed",
                "13",
                "--max_steps",
                "2",
                "--eval_steps",
                "1",
                "--max_test_examples",
                "20",
                "--data_dir",
                str(data_dir),
                "--output_dir",
                str(out),
                "--disable_tqdm",
                "true",
                "--push_to_hub",
                "--hub_model_id",
                "user/sst2-tiny",
            ]
        )
        == 0
    )
    assert api.calls[0] == ("create_repo", "user/sst2-tiny", False, True)
    assert "model.safetensors" in api.files and "README.md" in api.files
    card = api.files["README.md"].decode()
    assert "| test |" in card and "all-MiniLM-L6-v2" in card  # scores and the embedded-model caveat


def test_lora_merge_saves_a_plain_model(tmp_path, data_dir):
    out = tmp_path / "merged"
    assert (
        run_glue_main(
            [
                "--method",
                "prompt",
                "--task_name",
                "sst-2",
                "--seed",
                "13",
                "--use_lora",
                "--lora_merge",
                "--max_steps",
                "2",
                "--eval_steps",
                "1",
                "--max_test_examples",
                "20",
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
    best = out / "best"
    assert (best / "model.safetensors").is_file() and not (best / "adapter_config.json").exists()
    assert isinstance(AutoModelForMaskedLM.from_pretrained(best), BertForMaskedLM)
    assert PromptClassifier.from_pretrained(best).predict(["fine"])[0] in ("0", "1")
