"""One set of importance defaults (issue 26): the kind's params, the CLI's flags (and their
--help) agree; Explore's checkbox: tests/integration/test_app_jobs.py."""

from __future__ import annotations

from backend.analysis.importance.defaults import ATTENTION as DEFAULT_ATTENTION
from backend.analysis.importance.defaults import EVERY_BOUNDARY as DEFAULT_EVERY_BOUNDARY
from backend.cli import build_parser
from backend.jobs.kinds.importance import ImportanceParams


def test_cli_defaults_are_the_kinds():
    args = build_parser().parse_args(["importance", "abc"])
    assert args.attention is DEFAULT_ATTENTION is ImportanceParams("k").attention
    assert args.every_boundary is DEFAULT_EVERY_BOUNDARY is ImportanceParams("k").every_boundary
    flipped = build_parser().parse_args(["importance", "abc", "--no-attention" if DEFAULT_ATTENTION else "--attention"])
    assert flipped.attention is not DEFAULT_ATTENTION


def test_cli_help_names_the_default(capsys):
    import pytest

    with pytest.raises(SystemExit):
        build_parser().parse_args(["importance", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {'on' if DEFAULT_ATTENTION else 'off'}, as in Explore)" in text
    assert "--no-attention" in text
