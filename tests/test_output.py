"""`--json` output: the same document json.dumps would give, laid out for people and diffs (one key, or one
list item, per line), written through json's C encoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hookbuild.cli.output import print_json


def test_the_document_is_what_json_dumps_gives_and_each_item_has_its_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = {
        "path": Path("/usr/local/bin/envoy"),
        "sizes": (1, 2),
        "nested": {"deeper": {"hookpoints": [{"name": "a", "called": True}, {"name": "b", "called": False}]}},
        "empty": {},
        "none": [],
        1: None,
        None: "null key",
        2.5: False,
    }
    print_json(data)
    out = capsys.readouterr().out
    assert json.loads(out) == json.loads(json.dumps(data, default=str))
    lines = out.splitlines()
    assert '        {"name": "a", "called": true},' in lines  # a list item: compact, on its own line
    assert '      "hookpoints": [' in lines and '  "path": "/usr/local/bin/envoy",' in lines
    assert (
        '  "empty": {},' in lines
        and '  "none": [],' in lines
        and '  "1": null,' in lines
        and '  "2.5": false' in lines
    )


@pytest.mark.parametrize("data", [[], {}, [{"a": 1}, 2, "three"], "text", None, 3])
def test_lists_and_scalars_at_the_top(capsys: pytest.CaptureFixture[str], data: object) -> None:
    print_json(data)
    out = capsys.readouterr().out
    assert json.loads(out) == data and out.endswith("\n")
    if isinstance(data, list) and data:
        assert out.splitlines() == ["[", '  {"a": 1},', "  2,", '  "three"', "]"]
