"""Reports: results found and aggregated into mean (std) tables (``results``), RESULTS.md / CSV / LaTeX with the spec's
sections (``report``) and plots (``plotting``)."""
