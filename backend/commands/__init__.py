"""CLI sub-commands, one module each with ``register(subparsers)`` (listed in ``backend.cli.COMMAND_MODULES``)."""
