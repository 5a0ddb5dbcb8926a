"""Keys as the UI shows them (issue 26): a full key or a unique prefix of at least 4 characters
is accepted by every command and by the app's URL; ambiguous, too short or unknown prefixes are
one line each (``backend.store.keys``, ``RunStore.resolve``)."""

from __future__ import annotations

import shutil

import pytest

from app import state
from backend import cli
from backend.errors import InputError, RunNotFoundError
from backend.store.keys import AmbiguousKeyError, match_key

KEYS = ["a7b71cee23ed" + "0" * 20, "a7b71cee23ed" + "1" * 20, "a7b7ffff" + "2" * 24, "0123abcd" + "3" * 24]


def test_match_key_like_git():
    assert match_key("0123", KEYS) == KEYS[3]
    assert match_key(KEYS[1][:13], KEYS) == KEYS[1]  # one more character than the UI shows
    assert match_key(KEYS[2], KEYS) == KEYS[2]  # a full key
    assert match_key(" a7b7ff ", KEYS) == KEYS[2]  # pasted with spaces
    short = "0123456789abcdef"  # a key of 16 characters that also begins a longer one
    assert match_key(short, [short, short + "0" * 16]) == short


def test_ambiguous_too_short_and_unknown_are_one_line():
    with pytest.raises(AmbiguousKeyError) as info:
        match_key("a7b7", KEYS)
    message = str(info.value)
    assert (
        "'a7b7' matches 3 runs" in message
        and "a7b71cee23ed0, a7b71cee23ed1, a7b7ffff22222" in message
        and "\n" not in message
    )
    with pytest.raises(AmbiguousKeyError, match=r"matches 2 runs \(a7b71cee23ed0, a7b71cee23ed1\)"):
        match_key("a7b71cee23ed", KEYS)  # the 12 characters of two runs that share them
    with pytest.raises(InputError, match="'a7b' is too short for a run key: give at least 4"):
        match_key("a7b", KEYS)
    with pytest.raises(RunNotFoundError, match="no run ffff in the cache"):
        match_key("ffff", KEYS)
    for bad in ("../../etc/passwd", "A7B7", "a7b7 cee", "f" * 65):
        with pytest.raises(RunNotFoundError, match="is not a run key"):
            match_key(bad, KEYS)


def test_every_command_takes_the_prefix_the_ui_shows(tiny_run, tmp_path, capsys):
    src, key = tiny_run
    cache = tmp_path / "cache"
    shutil.copytree(src.root, cache)
    shown = key[:12]  # "Open run a7b71cee23ed"
    assert cli.main(["--cache-dir", str(cache), "show", shown]) == 0
    assert f"run      {key}" in capsys.readouterr().out
    assert cli.main(["--cache-dir", str(cache), "show", "--json", key[:4]]) == 0
    assert f'"key": "{key}"' in capsys.readouterr().out
    out_dir = tmp_path / "tables"
    assert cli.main(["--cache-dir", str(cache), "export", shown, "--format", "csv", "--out", str(out_dir)]) == 0
    assert (out_dir / "tokens.csv").is_file()

    twin = cache / "runs" / (key[:12] + ("0" if key[12] != "0" else "1") * 20)
    twin.mkdir()  # a (damaged) run sharing the 12 characters: the prefix is now ambiguous
    for command in (["show", shown], ["export", shown, "--format", "csv"], ["exact", shown], ["rm", shown]):
        assert cli.main(["--cache-dir", str(cache), *command]) == cli.EXIT_INPUT
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"'{shown}' matches 2 runs" in err, (command, err)
    assert cli.main(["--cache-dir", str(cache), "show", key[:3]]) == cli.EXIT_INPUT
    assert "too short" in capsys.readouterr().err

    assert cli.main(["--cache-dir", str(cache), "rm", key[:13], twin.name[:13]]) == 0  # by unique prefixes
    assert not (cache / "runs" / key).exists() and not twin.exists()
    assert cli.main(["--cache-dir", str(cache), "rm", key[:13]]) == cli.EXIT_INPUT
    assert f"no run {key[:13]}" in capsys.readouterr().err


def test_the_url_takes_the_prefix_too():
    parsed = state.parse_query({"run": "a7b71cee23ed"})
    assert parsed.run == "a7b71cee23ed" and parsed.warnings == []
    assert state.resolve_run("0123ab", KEYS, KEYS[0]) == (KEYS[3], None)
    key, warning = state.resolve_run("a7b7", KEYS, KEYS[3])
    assert key == KEYS[3] and "matches 3 runs" in warning
    key, warning = state.resolve_run("ffff", KEYS, KEYS[3])
    assert key == KEYS[3] and "No run ffff" in warning
    assert state.parse_query({"run": "a7b"}).run is None  # too short: warned, another run shown
