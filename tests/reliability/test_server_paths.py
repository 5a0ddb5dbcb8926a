"""Issue 27 item 1: a "path on the server" (Runs → Import) is confined to the data roots,
resolved with symlinks and ``..`` first, walked within bounds, and no error quotes the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend.io.fields import FieldMap
from backend.io.readers import read_questions
from backend.io.roots import ENV, OutsideRootsError, confine, data_roots
from backend.io.walk import WalkError, files_below

SECRET = "root:x:0:0:root:/root:/bin/bash"


@pytest.fixture
def layout(tmp_path):
    """``tmp/cache`` with its default data root ``tmp/data`` and a secret file beside them."""
    (tmp_path / "cache").mkdir()
    data = tmp_path / "data"
    data.mkdir()
    secret = tmp_path / "secret.csv"
    secret.write_text(f"name,value\n{SECRET}\n")
    return tmp_path, data, secret


def test_default_root_is_data_beside_the_cache_and_env_adds_or_turns_off(tmp_path):
    extra = tmp_path / "more"
    assert data_roots(tmp_path / "cache", {}) == [(tmp_path / "data").resolve()]
    assert data_roots(tmp_path / "cache", {ENV: str(extra)}) == [(tmp_path / "data").resolve(), extra.resolve()]
    assert data_roots(tmp_path / "cache", {ENV: ""}) == []
    with pytest.raises(OutsideRootsError, match="server paths are off"):
        confine(str(tmp_path / "data" / "q.jsonl"), [])


def test_outside_symlink_and_dotdot_are_refused_alike_whether_they_exist_or_not(layout):
    tmp, data, secret = layout
    roots = data_roots(tmp / "cache", {})
    (data / "link.csv").symlink_to(secret)
    (data / "dir").symlink_to(tmp)
    attempts = [
        str(secret),
        str(data / "link.csv"),
        str(data / ".." / "secret.csv"),
        "../secret.csv",
        str(data / "dir" / "secret.csv"),
        "/etc/passwd",
        "/no/such/file",
        "/proc/self/environ",
    ]
    messages = []
    for text in attempts:
        with pytest.raises(OutsideRootsError) as info:
            confine(text, roots)
        message = str(info.value)
        assert "\n" not in message and SECRET not in message and str(secret) not in message.replace(repr(text), "")
        messages.append(message.replace(repr(text), "<path>"))
    assert len(set(messages)) == 1  # existence is not told apart
    inside = data / "sub" / "q.jsonl"
    assert confine("sub/q.jsonl", roots) == inside.resolve()
    assert confine(str(data / "sub" / ".." / "sub" / "q.jsonl"), roots) == inside.resolve()


def test_a_root_at_slash_still_never_reaches_proc_sys_dev(tmp_path):
    for text in ("/proc/self/status", "/sys/kernel", "/dev/zero"):
        with pytest.raises(OutsideRootsError):
            confine(text, [Path("/")])
    with pytest.raises(WalkError, match="system folder"):
        files_below("/proc")
    rows, errors = read_questions("/proc")  # the CLI is not confined, but never walks /proc either
    assert not rows and len(errors) == 1 and "system folder" in str(errors[0])


def test_walk_is_bounded_in_depth_and_entries_and_stays_inside(tmp_path, layout):
    deep = tmp_path / "deep"
    path = deep
    for i in range(4):
        path = path / f"d{i}"
    path.mkdir(parents=True)
    (path / "x.parquet").write_bytes(b"")
    with pytest.raises(WalkError, match="deeper than 3 levels"):
        files_below(deep, max_depth=3)
    assert files_below(deep, max_depth=4) == [path / "x.parquet"]
    wide = tmp_path / "wide"
    wide.mkdir()
    for i in range(30):
        (wide / f"{i}.txt").write_text("")
    with pytest.raises(WalkError, match="more than 20 files"):
        files_below(wide, max_entries=20)
    _, data, secret = layout
    (data / "out.parquet").symlink_to(secret)  # a file symlink out of the folder
    (data / "loop").symlink_to(data)  # a folder symlink (a cycle)
    (data / "in.parquet").write_bytes(b"")
    (data / "in-link.parquet").symlink_to(data / "in.parquet")
    assert [p.name for p in files_below(data)] == ["in-link.parquet", "in.parquet"]


def test_slash_as_a_cli_path_is_one_line_not_a_walk_of_the_disk(tmp_path):
    rows, errors = read_questions("/")
    assert not rows and len(errors) == 1
    assert "\n" not in str(errors[0]) and ("more than" in str(errors[0]) or "deeper than" in str(errors[0]))


def test_errors_of_a_server_path_quote_no_header_and_no_row(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(f"question,answer\nWhat is 1+1?,2\n{SECRET},x,y\n")
    _, errors = read_questions(bad)
    rows, errors = read_questions(bad)  # one bad row: the others still load
    assert [r.question for r in rows] == ["What is 1+1?"]
    assert len(errors) == 1 and "row 2" in str(errors[0]) and "has 3 fields where the header has 2" in str(errors[0])
    assert all(SECRET not in str(e) and "0:0" not in str(e) for e in errors), errors
    header = tmp_path / "header.csv"
    header.write_text("user,password_hash\nalice,$6$abc\n")
    _, errors = read_questions(header, FieldMap(), reveal=False)
    assert len(errors) == 1 and "password_hash" not in str(errors[0]) and "not a column" in str(errors[0])
    _, errors = read_questions(header)  # the CLI's user owns the file: the columns help them
    assert "password_hash" in str(errors[0])


def test_hf_folder_data_file_symlinked_out_of_the_folder_is_refused(tmp_path):
    import json

    folder = tmp_path / "ds"
    folder.mkdir()
    outside = tmp_path / "elsewhere.arrow"
    outside.write_bytes(b"x")
    (folder / "data-00000-of-00001.arrow").symlink_to(outside)
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    _, errors = read_questions(folder)
    assert len(errors) == 1 and "outside the dataset folder" in str(errors[0])


def test_the_runs_page_refuses_a_server_path_outside_the_data_folders(layout, monkeypatch):
    from streamlit.testing.v1 import AppTest

    tmp, data, secret = layout
    (data / "link.csv").symlink_to(secret)
    monkeypatch.setenv("RAML_CACHE_DIR", str(tmp / "cache"))
    monkeypatch.delenv(ENV, raising=False)
    main = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
    at = AppTest.from_file(main, default_timeout=120).run()
    at.switch_page("views/runs.py").run()
    at.radio(key="runs_import_origin").set_value("Path on the server").run()
    for text in (str(secret), str(data / "link.csv"), "/"):
        at.text_input(key="runs_import_path").input(text).run()
        assert not at.exception
        shown = [e.value for e in at.error]
        assert len(shown) == 1 and "not inside a data folder" in shown[0], shown
        page = " ".join(str(getattr(el, "value", "")) for el in at.main)
        assert SECRET not in page and "name,value" not in page
        assert not at.dataframe
    assert os.path.exists(secret)


def test_upload_errors_name_the_upload_never_the_servers_temp_path():
    import io
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    from backend.io.readers import read_questions_bytes

    buffer = io.BytesIO()
    pq.write_table(pa.table({"question": ["a"]}), buffer)
    good = buffer.getvalue()
    uploads = {
        "cut.parquet": good[: len(good) // 2] + good[-8:],
        "junk.arrow": b"ARROW1\0\0" + b"x" * 100,
        "empty.feather": b"",
        "bad.csv": b"question,answer\n\xff\xfe,1\n",
        "nocol.csv": b"a,b\n1,2\n",
    }
    for name, payload in uploads.items():
        _, errors = read_questions_bytes(payload, name)
        assert errors, name
        for e in errors:
            assert tempfile.gettempdir() not in str(e) and "raml-upload" not in str(e), (name, str(e))
            assert str(e).startswith(name), (name, str(e))
