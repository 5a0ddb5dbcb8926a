"""The suite's own scheduling rules (tests/conftest.py): which tests pytest-xdist must keep in one
worker, and the environment every worker starts with."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from tests.conftest import xdist_group_of


def _item(fixtures=(), marks=(), scopes=None, module="tests.integration.test_x"):
    defs = {name: [SimpleNamespace(scope=scope)] for name, scope in (scopes or {}).items()}
    return SimpleNamespace(
        fixturenames=list(fixtures) + list(defs),
        get_closest_marker=lambda name: object() if name in marks else None,
        _fixtureinfo=SimpleNamespace(name2fixturedefs=defs),
        module=SimpleNamespace(__name__=module),
    )


def test_browser_tests_and_users_of_the_app_fixtures_share_one_worker():
    assert xdist_group_of(_item(), "browser") == "browser"
    assert xdist_group_of(_item(fixtures=["explore_app"]), "integration") == "browser"
    assert xdist_group_of(_item(fixtures=["browser", "tmp_path"]), "reliability") == "browser"


def test_ray_tests_share_one_local_ray_instance():
    assert xdist_group_of(_item(marks=("ray",), scopes={"local_ray": "module"}), "integration") == "ray"


def test_a_module_fixture_keeps_its_module_together_and_the_rest_is_free():
    assert xdist_group_of(
        _item(scopes={"smol_run": "module"}, module="tests.integration.test_proxy"), "integration"
    ) == ("tests.integration.test_proxy")
    assert xdist_group_of(_item(scopes={"tiny_run": "session", "tmp_path": "function"}), "unit") is None
    assert xdist_group_of(_item(fixtures=["tmp_path"]), None) is None


@pytest.mark.skipif(not os.environ.get("PYTEST_XDIST_WORKER"), reason="only under pytest-xdist")
def test_each_worker_started_torch_with_its_share_of_the_cores():
    """conftest sets the thread count before torch loads: the worker's torch really uses it."""
    import torch

    assert os.environ.get("OMP_WAIT_POLICY")
    assert torch.get_num_threads() == int(os.environ["OMP_NUM_THREADS"])
