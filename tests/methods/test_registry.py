"""The method registry: which method a model gets, what a method declares, and the options only another method
reads."""

import pytest

from mtft_nlp.cli import run_glue_main
from mtft_nlp.methods import (
    Method,
    RowKind,
    all_methods,
    get_method,
    method_defaults,
    register_method,
    resolve_method,
    unregister_method,
)
from mtft_nlp.methods.embedding.arguments import EMBEDDING_DEFAULTS
from mtft_nlp.models import default_model_path
from mtft_nlp.tasks import MtftError


def test_auto_gives_a_sentence_encoder_to_the_embedding_method_and_anything_else_to_prompt(tmp_path):
    assert resolve_method("auto", None) == "embedding"  # the packaged MiniLM (modules.json)
    assert resolve_method(None, default_model_path()) == "embedding"
    assert resolve_method("auto", "sentence-transformers/all-mpnet-base-v2") == "embedding"
    (tmp_path / "config.json").write_text("{}")
    assert resolve_method("auto", str(tmp_path)) == "prompt"  # a plain HF folder: a masked LM
    assert resolve_method("auto", "roberta-large") == "prompt"
    assert resolve_method("SetFit", None) == "setfit"
    with pytest.raises(MtftError, match="choose from auto, prompt, embedding, setfit"):
        resolve_method("lora", None)


def test_each_method_declares_its_defaults_sections_and_kinds():
    assert [m.name for m in all_methods()][:3] == ["prompt", "embedding", "setfit"]
    assert method_defaults("embedding") == EMBEDDING_DEFAULTS and method_defaults("prompt") == {}
    assert method_defaults("setfit") == EMBEDDING_DEFAULTS  # the peer gets the same backbone budget keys
    kinds = [k.name for m in all_methods() for k in m.kinds]
    assert len(kinds) == len(set(kinds))  # a kind belongs to one method
    assert get_method("embedding").kind("embed-adapt").flags == ("--frozen_encoder",)
    assert not get_method("setfit").kind("setfit").multitask and get_method("setfit").peer


def test_register_method_refuses_clashes_and_non_methods():
    class NoRun(Method):
        name = "norun"

    with pytest.raises(MtftError, match="NoRun does not implement run"):
        register_method(NoRun)

    class Clash(Method):
        name = "clash"
        kinds = (RowKind("pbft", "x", "x", section="train", multitask=False),)

        def run(self, model_args, data_args, training_args, method_args=None):
            return {}

    with pytest.raises(MtftError, match="belong to another method"):
        register_method(Clash)
    with pytest.raises(MtftError, match="has no stage"):
        register_method(type("NoStage", (Clash,), {"name": "nostage", "kinds": (RowKind("n", "n", "n", "x"),)}))
    with pytest.raises(MtftError, match="expected a named"):
        register_method(object())
    with pytest.raises(MtftError, match="unknown method 'clash'"):
        get_method("clash")
    unregister_method("clash")  # unknown names are ignored


@pytest.mark.parametrize(
    "argv, option, owner",
    [
        (["--method", "prompt", "--objective", "supcon"], "--objective", "embedding"),
        (["--method", "setfit", "--frozen_encoder", "true"], "--frozen_encoder", "embedding"),
    ],
)
def test_an_option_of_another_method_is_refused_by_name(argv, option, owner, tmp_path, capsys):
    out = tmp_path / "run"
    rc = run_glue_main(argv + ["--task_name", "SST-2", "--seed", "13", "--output_dir", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error:")
    assert option in err[0] and f"the {owner} method" in err[0]
    assert not out.exists()
