"""One module per ``privbox`` subcommand; each exposes ``register(subparsers)``."""
