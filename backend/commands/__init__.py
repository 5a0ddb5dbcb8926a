"""CLI commands in their own modules; each defines ``register(subparsers)`` (see ``backend.cli``)."""
