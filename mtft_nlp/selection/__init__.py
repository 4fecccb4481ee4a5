"""Task selection (the paper's Algorithm 1): coverage definitions (``coverage``), the greedy loop (``algorithm``), the
encoder phi and cached task embeddings (``embeddings``), the result record (``result``), the methods and their API
(``select``: :func:`~mtft_nlp.selection.select.select_tasks`) and the ``mtft-nlp select`` command (``command``)."""
