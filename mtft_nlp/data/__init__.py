"""Data: reading and checking input files (``readers``), LM-BFF's k-shot splits and loading (``kshot``), text
overlap (``overlap``), the multitask stage's source pool (``sources``), and what a run resolves before a model loads
(``run_inputs``: its prompt and data)."""
