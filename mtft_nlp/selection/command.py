"""``mtft-nlp select``: the command line of task selection, and its similarity heatmap.

Every option is checked by :func:`mtft_nlp.selection.select.select_tasks` before anything is embedded or
written; bad input is a :class:`~mtft_nlp.selection.select.SelectionError`, which ``mtft-nlp`` prints as
one ``error:`` line with exit status 2 (no selection file is written).
"""

from __future__ import annotations

from typing import Dict

from ..checks import AT_LEAST_0, AT_LEAST_1, SEED, option
from ..reporting.plotting import cluster_order, plot_similarity, similarity_matrix  # noqa: F401  (re-exported)
from ..templates import load_prompt
from . import coverage
from . import select as sel
from .embeddings import task_embeddings


def register_cli(subparsers):
    """Add the ``select`` subcommand to the ``mtft-nlp`` parser."""
    s = subparsers.add_parser(
        "select",
        help="choose finetuning tasks for a target by consistency and diversity (Algorithm 1)",
        description="Rank candidate tasks by the cosine similarity of their mean embedding to the target's, then add "
        "them greedily while they raise the coverage of the target's examples by a factor 1 + p "
        "(PROTOCOL section 6). See docs/SELECTION.md.",
    )
    s.add_argument("--target", required=True, help="target task (name, alias or task file)")
    s.add_argument("--output", help="write the selection JSON here")
    s.add_argument(
        "--method",
        choices=sel.SELECTION_METHODS,
        default=sel.DEFAULT_METHOD,
        help="selected (Algorithm 1, default), random (|selected| tasks drawn uniformly), no-consistency "
        "(the greedy loop over a random order), no-diversity (top --k by similarity, default "
        "--budget)",
    )
    s.add_argument(
        "--compare",
        action="store_true",
        help="run all four methods and print their sets and which methods chose the same set",
    )
    s.add_argument(
        "--k",
        type=option(AT_LEAST_1),
        help="random: number of tasks (default |selected|); no-diversity: number of tasks (default --budget)",
    )
    s.add_argument(
        "--seed",
        type=option(SEED),
        default=0,
        help="random / no-consistency: seed of their random streams (default 0)",
    )
    _add_algorithm_options(s)
    _add_encoder_and_data_options(s)
    s.add_argument("--plot", help="write a PNG heatmap of pairwise task similarity (target and candidates) here")
    s.set_defaults(func=cmd_select)
    return s


def _add_algorithm_options(s) -> None:
    """--p, --budget and the coverage definition."""
    s.add_argument(
        "--p",
        default=sel.DEFAULT_P,
        help="greedy loop: add a task only if it multiplies coverage by at least 1 + p; 'auto' (default): "
        "the p of a fixed grid whose mean set size over the leave-one-out pools is closest to "
        "--budget",
    )
    s.add_argument(
        "--budget",
        type=option(AT_LEAST_1),
        default=sel.DEFAULT_BUDGET,
        help=f"target mean set size of --p auto, and no-diversity's k (default {sel.DEFAULT_BUDGET})",
    )
    s.add_argument(
        "--coverage",
        default=sel.DEFAULT_COVERAGE,
        help=f"coverage definition: {', '.join(coverage.COVERAGES)} (default {sel.DEFAULT_COVERAGE})",
    )
    s.add_argument(
        "--quantile",
        type=float,
        help=f"union/ellipsoid: Gaussian mass inside each ellipsoid (default {coverage.DEFAULT_QUANTILE}); knn: "
        f"quantile of the target's nearest-neighbour distances used as radius "
        f"(default {coverage.DEFAULT_KNN_QUANTILE})",
    )
    s.add_argument(
        "--dims",
        type=option(AT_LEAST_0),
        default=sel.DEFAULT_ELLIPSOID_DIMS,
        help=f"union/ellipsoid: principal components they are fitted in (default "
        f"{sel.DEFAULT_ELLIPSOID_DIMS}; 0 = the full embedding)",
    )


def _add_encoder_and_data_options(s) -> None:
    """phi (the encoder), what it embeds, and where the data and the cache are."""
    s.add_argument(
        "--encoder",
        default=sel.DEFAULT_ENCODER,
        help="phi: 'model' (default) = --model_name_or_path, the model being finetuned; or another model's "
        "name or path (sentence-transformers: pooled embedding; masked LM: hidden state at the mask)",
    )
    s.add_argument(
        "--model_name_or_path",
        default=None,
        help="the model being finetuned, phi of --encoder model (default: minilm, the packaged all-MiniLM-L6-v2)",
    )
    s.add_argument(
        "--variant",
        choices=sel.TEXT_VARIANTS,
        default=sel.DEFAULT_TEXT_VARIANT,
        help="label: the task's prompt with the gold label word (default); raw: text only (masked LM: the "
        "prompt with its mask token)",
    )
    s.add_argument(
        "--candidates", nargs="+", help="candidate tasks (default: the 14 classification tasks minus the target)"
    )
    s.add_argument("--data_dir", help="LM-BFF data root (default: $MTFT_NLP_DATA_DIR or ../shared/data)")
    s.add_argument(
        "--split_seed", type=option(SEED), default=sel.DEFAULT_SPLIT_SEED, help="k-shot split embedded (default 42)"
    )
    s.add_argument("--k_shot", type=option(AT_LEAST_1), default=sel.DEFAULT_K, help="examples per class (default 16)")
    s.add_argument("--pool_seeds", action="store_true", help="embed the union of the 5 seeds' k-shot train sets")
    s.add_argument("--cache_dir", help="embedding cache (default: $MTFT_NLP_CACHE or ~/.cache/mtft-nlp)")
    s.add_argument(
        "--prompt_file",
        help="the target's prompt YAML (docs/PROMPTS.md), its examples rendered through it (default: the task's own)",
    )
    s.add_argument("--prompt", help="name of a prompt in the target's prompt file (default: its 'default')")


def _options(a) -> Dict:
    return dict(
        candidates=a.candidates,
        encoder=a.encoder,
        variant=a.variant,
        coverage=a.coverage,
        quantile=a.quantile,
        dims=a.dims,
        p=a.p,
        seed=a.seed,
        data_dir=a.data_dir,
        split_seed=a.split_seed,
        k_shot=a.k_shot,
        pool_seeds=a.pool_seeds,
        cache_dir=a.cache_dir,
        model_name_or_path=a.model_name_or_path,
        budget=a.budget,
        target_prompt=load_prompt(a.target, a.prompt, a.prompt_file) if a.prompt or a.prompt_file else None,
    )


def format_comparison(cmp: Dict) -> str:
    lines = [f"target {cmp['target']}  p {cmp['p']}"]
    lines += [f"{m:15s} ({len(s)}): {', '.join(s)}" for m, s in cmp["sets"].items()]
    lines.append("same set: " + ("; ".join(" = ".join(pair) for pair in cmp["same"]) or "none"))
    return "\n".join(lines) + "\n"


def cmd_select(a) -> int:
    """``mtft-nlp select``: print the table; write the JSON and the plot when asked."""
    from ..io import atomic_write_json

    if a.compare:
        if a.output:
            raise sel.SelectionError("--compare prints the four methods' sets; it writes no --output")
        print(format_comparison(sel.compare_methods(a.target, k=a.k, **_options(a))), end="")
        return 0
    options = _options(a)
    result = sel.select_tasks(a.target, method=a.method, k=a.k, **options)
    print(result.format_table(), end="")
    if a.output:
        atomic_write_json(a.output, result.to_dict())
        print(f"wrote {a.output}")
    if a.plot:
        where = (a.data_dir, a.encoder, a.variant, a.split_seed, a.k_shot, a.pool_seeds, a.cache_dir)
        target = task_embeddings(result.target, *where, a.model_name_or_path, prompt=options["target_prompt"])
        embs = {result.target: target, **sel.embed_tasks(list(result.similarity), *where, a.model_name_or_path)}
        plot_similarity(embs, a.plot, title=f"Task similarity ({result.variant} embeddings, target {result.target})")
        print(f"wrote {a.plot}")
    return 0
