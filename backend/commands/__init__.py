"""CLI commands added after the first version: one module per command, each with ``register(subparsers)``."""
