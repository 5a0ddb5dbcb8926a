"""The local batch engine: items one after another in this process (the model loads once, on
first need, and stays loaded)."""

from __future__ import annotations

from collections.abc import Callable

from backend.pipeline.run import RunRequest
from backend.scale.items import BatchItem, ItemResult, run_request


def run_items_local(
    items: list[BatchItem],
    requests: list[RunRequest],
    store,
    *,
    show_progress: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> list[ItemResult]:
    """Results in the order of ``items`` (``requests[i]`` is the request of ``items[i]``);
    ``progress(done, total)`` before each item and after the last."""
    from tqdm import tqdm

    results = []
    with tqdm(total=len(items), desc="batch", unit="run", disable=not show_progress) as bar:
        for i, (item, request) in enumerate(zip(items, requests)):
            if progress:
                progress(i, len(items))
            results.append(ItemResult(item, *run_request(request, store)))
            bar.update(1)
    if progress:
        progress(len(items), len(items))
    return results
