"""The SetFit peer (Tunstall et al. 2022), measured beside the method with its own recipe on the same backbone and
splits (row ``setfit``). Needs the optional ``setfit`` package (``pip install 'mtft-nlp[peers]'``).
Files: ``run.py`` (one SetFit run through the ``setfit`` package's own ``Trainer``)."""

from __future__ import annotations

import importlib.util

from ..base import Method, RowKind


class SetFitMethod(Method):
    name = "setfit"
    title = "SetFit"
    kinds = (
        RowKind(
            "setfit", "SetFit (peer, same backbone)", "SetFit", section="setfit", trains_encoder=True, multitask=False
        ),
    )
    peer = True
    saves_model = False
    install_hint = "pip install 'mtft-nlp[peers]'"

    def available(self) -> bool:
        return importlib.util.find_spec("setfit") is not None

    def training_defaults(self):
        from ..embedding.arguments import EMBEDDING_DEFAULTS

        return dict(EMBEDDING_DEFAULTS)

    def run(self, model_args, data_args, training_args, method_args=None):
        from .run import run_setfit_experiment

        return run_setfit_experiment(model_args, data_args, training_args)
