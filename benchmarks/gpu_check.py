#!/usr/bin/env python
"""GPU smoke check and timing (run on a CUDA machine; writes JSON to argv[1]).

1. label-word logits equal the full MLM logits gathered at the mask on CUDA (fp32 and bf16 autocast);
2. a full-protocol run (SST-2 seed 13, 1000 steps, batch 2, 10 dev evaluations, test) with a
   MiniLM-shaped and a BERT-large-shaped masked LM (random weights built from the config: only
   speed and memory are measured, not accuracy), through run_glue_fewshot.py on the GPU;
3. a 100-step multitask stage on the GPU.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from mtft_nlp.methods.prompt.features import PromptCollator, build_features  # noqa: E402
from mtft_nlp.methods.prompt.modeling import PromptForMaskedLM  # noqa: E402
from mtft_nlp.templates import PromptEncoder, load_prompt  # noqa: E402

out_dir = Path(sys.argv[1])
out_dir.mkdir(parents=True, exist_ok=True)
gpu = ROOT / ".gpu"
report = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
tok = AutoTokenizer.from_pretrained(gpu / "minilm")

# 1. correctness on CUDA
cfg = BertConfig.from_pretrained(gpu / "minilm")
torch.manual_seed(0)
mlm = BertForMaskedLM(cfg).cuda().eval()
enc = PromptEncoder("sst-5", load_prompt("sst-5"), tok)
exs = [
    {"text_a": t, "text_b": None, "label": "0", "label_id": 0} for t in ["a fun film", "dull and far too long , sadly"]
]
batch = {k: v.cuda() for k, v in PromptCollator(tok.pad_token_id)(build_features(enc, exs)).items()}
model = PromptForMaskedLM(mlm)
with torch.no_grad():
    ours = model(**batch).logits
    full = mlm(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]
    ).logits[torch.arange(2), batch["mask_pos"]][:, enc.label_word_ids]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        ours_bf16 = model(**batch).logits
report["logits_max_abs_diff_fp32"] = float((ours - full).abs().max())
report["logits_max_abs_diff_bf16"] = float((ours_bf16 - full).abs().max())


def shaped(name, **kw):
    d = Path("/tmp") / name
    c = BertConfig.from_pretrained(gpu / "minilm", **kw)
    torch.manual_seed(0)
    BertForMaskedLM(c).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def run(args, name):
    t0 = time.time()
    r = subprocess.run(
        [
            sys.executable,
            "run_glue_fewshot.py",
            *args,
            "--output_dir",
            str(out_dir / name),
            "--disable_tqdm",
            "true",
            "--save_model",
            "false",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    res = {"rc": r.returncode, "wall_seconds": time.time() - t0}
    if r.returncode:
        res["stderr"] = r.stderr[-3000:]
    else:
        rj = json.loads((out_dir / name / "results.json").read_text())
        res.update(
            {
                k: rj[k]
                for k in ("train_seconds", "eval_seconds", "test_examples_per_second", "test_score", "dev_score")
            }
        )
        res["device"] = rj["env"]["device"]
    return res


common = ["--task_name", "sst-2", "--seed", "13", "--data_dir", str(gpu), "--paper_hparams"]
minilm = shaped("minilm-shape")
report["minilm_shape_fp32_1000_steps_bs2"] = run([*common, "--model_name_or_path", str(minilm)], "minilm")
large = shaped(
    "bert-large-shape", hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096
)
report["bert_large_shape_bf16_1000_steps_bs2"] = run([*common, "--model_name_or_path", str(large), "--bf16"], "large")
report["bert_large_peak_memory_note"] = "see nvidia-smi; run in a subprocess"
t0 = time.time()
r = subprocess.run(
    [
        sys.executable,
        "-m",
        "mtft_nlp.cli",
        "multitask",
        "--target",
        "sst-2",
        "--sources",
        "rte",
        "trec",
        "mr",
        "--data_dir",
        str(gpu),
        "--model_name_or_path",
        str(minilm),
        "--max_steps",
        "100",
        "--eval_steps",
        "50",
        "--output_dir",
        str(out_dir / "mt"),
        "--disable_tqdm",
        "true",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
)
report["multitask_100_steps"] = {
    "rc": r.returncode,
    "wall_seconds": time.time() - t0,
    **(
        {"stderr": r.stderr[-2000:]}
        if r.returncode
        else {"train_seconds": json.loads((out_dir / "mt" / "multitask_config.json").read_text())["train_seconds"]}
    ),
}
for p in out_dir.glob("mt/*.safetensors"):
    p.unlink()
(out_dir / "gpu_check.json").write_text(json.dumps(report, indent=2))
print(json.dumps(report, indent=2))
