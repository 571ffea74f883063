"""The local engine parses a workflow's definition once: per-run paths are filled into a
copy of the parsed tree (``moto_parse.parse_definition(late_values=...)``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from foldstack.local import moto_parse
from foldstack.local.placeholders import CALLER_SUPPLIED, late_marker, local_values, substitute
from foldstack.workflows.specs import JobsFile

REPO = Path(__file__).resolve().parents[2]


def _template_and_late(root: str) -> tuple[str, dict[str, str]]:
    definition = (REPO / "statemachines/rendered/fold.asl.json").read_text()
    values = local_values(JobsFile.load(REPO / "statemachines/fold/jobs.yaml"), scratch_mount=f"{root}/scratch",
                          db_mount=f"{root}/db", weights_dir=f"{root}/weights")
    template = substitute(definition, {**values, **{name: late_marker(name) for name in CALLER_SUPPLIED}})
    return template, {late_marker(name): values[name] for name in CALLER_SUPPLIED}


def _strings(root: object) -> set[str]:
    return {obj for obj in moto_parse.walk(root) if isinstance(obj, str)}


@pytest.fixture
def parser_calls(monkeypatch):
    calls = []
    real = moto_parse.AmazonStateLanguageParser.parse

    def counting(definition):
        calls.append(definition)
        return real(definition)

    monkeypatch.setattr(moto_parse.AmazonStateLanguageParser, "parse", staticmethod(counting))
    monkeypatch.setattr(moto_parse, "_PARSED", type(moto_parse._PARSED)())
    return calls


@pytest.mark.slow
def test_two_run_homes_share_one_parse_and_each_gets_its_own_paths(parser_calls):
    first_template, first_late = _template_and_late("/runs/one")
    second_template, second_late = _template_and_late("/runs/two it's")
    assert first_template == second_template

    first = moto_parse.parse_definition(first_template, late_values=first_late)
    second = moto_parse.parse_definition(second_template, late_values=second_late)

    assert len(parser_calls) == 1
    first_strings, second_strings = _strings(first.program), _strings(second.program)
    assert not any("@@foldstack-late-" in s for s in first_strings | second_strings)
    assert any("/runs/one/scratch" in s for s in first_strings)
    assert not any("/runs/two" in s for s in first_strings)
    assert any("/runs/two it's/db" in s for s in second_strings)
    assert "/runs/two it's/weights" in second.definition and "@@" not in second.definition


@pytest.mark.slow
def test_the_filled_tree_matches_a_parse_of_the_filled_text(parser_calls):
    template, late = _template_and_late("/runs/three")
    via_markers = moto_parse.parse_definition(template, late_values=late)
    direct = moto_parse.parse_definition(via_markers.definition)
    assert _strings(via_markers.program) == _strings(direct.program)
    assert len(parser_calls) == 2


def test_a_marker_the_walk_cannot_rewrite_falls_back_to_a_full_parse():
    class Holder:
        def __init__(self):
            self.kept = ("a @@m@@ in a tuple",)

    assert moto_parse._fill_markers(Holder(), {"@@m@@": "x"}) is False
    holder = Holder()
    holder.kept = ["in a list @@m@@"]
    assert moto_parse._fill_markers(holder, {"@@m@@": "x"}) is True
    assert holder.kept == ["in a list x"]


def test_a_bad_definition_is_not_cached(parser_calls):
    with pytest.raises(moto_parse.DefinitionError):
        moto_parse.parse_definition('{"StartAt": "Nope", "States": {}}')
    with pytest.raises(moto_parse.DefinitionError):
        moto_parse.parse_definition('{"StartAt": "Nope", "States": {}}')
    assert len(parser_calls) == 2
