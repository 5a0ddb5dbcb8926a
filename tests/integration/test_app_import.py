"""The Runs page's import reads the same files as the CLI: a folder of OpenR1 Parquet shards
given as a path on the server with the openr1 preset (one run per generation), and an
uploaded Parquet file with its columns named by hand."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from dataset_layouts import THINK, write_openr1_shards
from streamlit.testing.v1 import AppTest

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


def _runs_page(cache_root, monkeypatch) -> AppTest:
    monkeypatch.setenv("RAML_CACHE_DIR", str(cache_root))
    at = AppTest.from_file(MAIN, default_timeout=120).run()
    at.switch_page("views/runs.py").run()
    return at


def test_import_shard_folder_by_path_with_preset_runs_each_generation(tmp_path, tiny_llama, monkeypatch, request):
    from backend.engine import provider
    from backend.store.runs import RunStore

    provider.register(tiny_llama, "tiny-test")  # the jobs' model provider serves it by name
    request.addfinalizer(lambda: provider.unregister("tiny-test"))
    folder = write_openr1_shards(tmp_path / "data" / "openr1")  # the default data folder beside the cache
    at = _runs_page(tmp_path / "cache", monkeypatch)
    at.radio(key="runs_import_origin").set_value("Path on the server").run()
    at.selectbox(key="runs_import_preset").set_value("openr1").run()
    at.text_input(key="runs_import_path").input(str(folder)).run()
    assert not at.exception and not at.error
    assert any("3 questions ready" in s.value for s in at.success)
    at.text_input(key="runs_import_model").input("tiny-test").run()
    at.button(key="runs_import_start").click().run()
    at.button(key="runs_import_confirm").click().run()
    assert not at.exception and any("Queued as job #" in s.value for s in at.success)
    from backend.jobs.queue import JobQueue, wait_for

    store = RunStore(tmp_path / "cache")
    job = wait_for(JobQueue(store), at.session_state["runs_last_job"], timeout=180)  # the server's worker ran it
    assert job.kind == "batch" and job.state == "finished" and len(job.results) == 3, job.error
    assert set(store.list_runs()["label"]) == {"u-1#0", "u-1#1", "u-2#0"}


def test_uploaded_parquet_with_named_columns_reports_bad_rows(tmp_path, monkeypatch):
    path = tmp_path / "mine.parquet"
    pq.write_table(pa.table({"prompt": ["What is 2 + 4?", None], "cot": [THINK, THINK], "gold": ["6", "6"]}), path)
    at = _runs_page(tmp_path / "cache", monkeypatch)
    at.text_input(key="runs_import_question_field").input("prompt").run()
    at.text_input(key="runs_import_answer_field").input("gold").run()
    at.text_input(key="runs_import_trajectory_field").input("cot").run()
    at.file_uploader(key="runs_import_file").upload("mine.parquet", path.read_bytes(), "application/octet-stream")
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["1 line of mine.parquet cannot be used (the other 1 can):"]
    assert any("1 question ready" in s.value for s in at.success)
