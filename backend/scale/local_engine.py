"""The local batch engine: items one after another in this process (the model loads once, on
first need, and stays loaded)."""

from __future__ import annotations

from backend.pipeline.run import RunRequest
from backend.scale.items import BatchItem, ItemResult, run_request


def run_items_local(
    items: list[BatchItem], requests: list[RunRequest], store, *, show_progress: bool = True
) -> list[ItemResult]:
    """Results in the order of ``items`` (``requests[i]`` is the request of ``items[i]``)."""
    from tqdm import tqdm

    results = []
    with tqdm(total=len(items), desc="batch", unit="run", disable=not show_progress) as bar:
        for item, request in zip(items, requests):
            results.append(ItemResult(item, *run_request(request, store)))
            bar.update(1)
    return results
