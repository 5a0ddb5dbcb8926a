"""Figures of the exact update (backend/plots/exact.py) on data alone: no model, no torch."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from backend.plots import exact as fx


def exact_surface(K: int = 4, n: int = 5) -> SimpleNamespace:
    alphas, betas = np.linspace(-1, 1, n), np.linspace(-2, 2, n + 1)
    return SimpleNamespace(
        alphas=alphas,
        betas=betas,
        loss=np.add.outer(betas**2, alphas**2) + 3.0,  # [Nβ, Nα]
        path_coords=np.stack([np.linspace(0, 1, K), np.linspace(0, 0.5, K)], 1),
        path_loss=np.linspace(4.5, 3.5, K),
        path_loss_plane=np.linspace(4.5, 3.7, K),
        plane_distance=np.array([0.0, 0.1, 0.5, 0.2])[:K],
        norms=np.array([0.0, 1.0, 1.0, 2.0])[:K],
        explained_variance=np.array([0.8, 0.15]),
    )


def proxy_surface(K: int = 4) -> SimpleNamespace:
    s = exact_surface(K)
    return SimpleNamespace(
        **{k: getattr(s, k) for k in ("alphas", "betas", "loss", "path_coords", "explained_variance")},
        layer=14,
        path_loss_full=np.linspace(4.5, 4.4, K),
        teacher_forced=np.linspace(4.5, 3.5, K),
    )


def random_landscape() -> SimpleNamespace:
    a = np.linspace(-1, 1, 3)
    return SimpleNamespace(alphas=a, betas=a, loss=np.ones((3, 3)), seed=7)


FIDELITY = {
    "initial_loss": 4.5,
    "final_loss": 3.5,
    "descent": 1.0,
    "single_layer_proxy": {"14": {"loss": 4.42, "fraction": 0.08}, "3": {"loss": 4.6, "fraction": -0.1}},
    "exact_top_k": {
        "8": {"layers": [1], "loss": 3.6, "fraction": 0.9},
        "1": {"layers": [2], "loss": 4.3, "fraction": 0.2},
    },
    "exact": {"loss": 3.5, "fraction": 1.0},
}


def test_relative_distance_and_hover_report_each_points_distance_from_the_plane():
    s = exact_surface()
    np.testing.assert_allclose(fx.relative_distance(s), [0.0, 0.1, 0.5, 0.1])
    hover = fx.path_hover(s)
    assert len(hover) == 4 and hover[0].startswith("start")
    assert "distance from the plane" in hover[2] and "0.5 (50% of" in hover[2]
    sizes = fx.marker_sizes(s)
    assert sizes[2] == sizes.max() and sizes[0] == sizes.min()  # farther from the plane = bigger marker


def test_exact_surface_figure_draws_the_grid_and_the_path():
    s = exact_surface()
    fig = fx.exact_surface_figure(s)
    contour, path = fig.data
    assert np.asarray(contour.z).shape == (6, 5)
    np.testing.assert_allclose(path.x, s.path_coords[:, 0])
    assert list(path.customdata) == [0, 1, 2, 3] and list(path.text) == fx.path_hover(s)
    s.loss = s.loss[:, :-1]
    with pytest.raises(ValueError, match="must be"):
        fx.exact_surface_figure(s)


@pytest.mark.parametrize(
    ("proxy", "rand", "n_panels"), [(False, False, 1), (True, False, 2), (False, True, 2), (True, True, 3)]
)
def test_comparison_draws_only_the_cached_landscapes_side_by_side(proxy, rand, n_panels):
    p, r = (proxy_surface() if proxy else None), (random_landscape() if rand else None)
    fig = fx.landscape_comparison_figure(exact_surface(), p, r)
    contours = [t for t in fig.data if t.type == "contour"]
    assert len(contours) == n_panels
    assert len({t.xaxis for t in contours}) == n_panels  # each in its own subplot
    titles = [a.text for a in fig.layout.annotations][:n_panels]
    assert titles == fx.landscape_panels(exact_surface(), p, r)
    if proxy:
        assert any("layer 14" in t for t in titles)


def test_fidelity_rows_order_and_values():
    rows = fx.fidelity_rows(FIDELITY)
    assert [r.label for r in rows] == [
        "full exact (all layers)",
        "exact, top-1 layer",
        "exact, top-8 layers",
        "single-layer proxy, layer 3",
        "single-layer proxy, layer 14",
    ]
    assert [r.fraction for r in rows] == [1.0, 0.2, 0.9, -0.1, 0.08]
    line = fx.fidelity_line(FIDELITY)
    assert "full exact 100%" in line and "top-8 layers 90%" in line and "layer 14 8%" in line


def test_fidelity_figure_bars_and_missing_fraction():
    fig = fx.fidelity_figure(FIDELITY)
    (bar,) = fig.data
    assert list(bar.y)[-1] == "full exact (all layers)"  # drawn at the top
    np.testing.assert_allclose(bar.x, [0.08, -0.1, 0.9, 0.2, 1.0])
    flat = {**FIDELITY, "exact": {"loss": 3.5, "fraction": None}}
    fig = fx.fidelity_figure(flat)
    assert np.isnan(fig.data[0].x[-1]) and fig.data[0].text[-1] == "n/a"
    assert "full exact n/a" in fx.fidelity_line(flat)
