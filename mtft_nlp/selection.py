"""Task selection by consistency and diversity (PROTOCOL section 6). Work in progress."""


def register_cli(subparsers):
    """Add the ``select`` subcommand to the ``mtft-nlp`` parser (filled in by the selection work)."""
    return None
