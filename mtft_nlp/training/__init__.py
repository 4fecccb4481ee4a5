"""Training pieces every method uses: the argument dataclasses (``arguments``), the ``Trainer`` subclasses and the one
place a ``Trainer`` is built (``trainer``), callbacks (``callbacks``) and feature datasets (``features``)."""
