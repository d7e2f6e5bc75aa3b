"""One module per ``hero`` subcommand: ``add_arguments(parser)`` and ``run(args) -> int``."""
