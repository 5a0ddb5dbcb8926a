"""Cut-point and segmentation options parsed in one place (backend.engine.specs): every bad
spelling is one InputError line that names the option to change."""

from __future__ import annotations

import pytest

from backend.engine.specs import parse_cuts, parse_segmentation
from backend.errors import InputError


def test_good_specs():
    assert parse_cuts("all", 5) is None
    assert parse_cuts("stride:2", 5) == [0, 2, 4, 5]
    assert parse_cuts("steps", 9, [0, 4, 9]) == [0, 4, 9]
    assert parse_segmentation("sentences") == ("sentences", 0)
    assert parse_segmentation("tokens:16") == ("tokens", 16)


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("stride:0", "positive whole number"),
        ("stride:x", "positive whole number"),
        ("every", "unknown"),
        ("all:3", "unknown"),
    ],
)
def test_bad_cuts_name_the_option(spec, needle):
    with pytest.raises(InputError) as caught:
        parse_cuts(spec, 10)
    text = str(caught.value)
    assert needle in text and "--cuts" in text and repr(spec) in text and "\n" not in text


@pytest.mark.parametrize(
    "spec, needle", [("words", "unknown"), ("tokens:0", "positive window"), ("lines:3", "unknown")]
)
def test_bad_segmentation_names_the_option(spec, needle):
    with pytest.raises(InputError) as caught:
        parse_segmentation(spec)
    text = str(caught.value)
    assert needle in text and "--segmentation" in text and repr(spec) in text and "\n" not in text
