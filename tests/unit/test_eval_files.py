"""`tributary eval --catalog/--cases`: the documented JSON Lines formats, and a clear error
with file, line and field for each kind of mistake a new user makes."""

import json

import pytest

from gpu_workers.evaluate import EvalInputError, load_cases_file, load_catalog_file
from tributary.cli import main

WORKS = {"w-1", "w-2"}


def write(tmp_path, name, rows):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def case(**over):
    return {"case_id": "c1", "level": "verbatim", "text": "some text", "planted": {"w-1": 0.5}, **over}


def test_a_valid_file_loads_with_defaults(tmp_path):
    path = write(tmp_path, "cases.jsonl", [case(), "", case(case_id="c2", level="unrelated", planted={},
                                                                  split="heldout", cluster="doc-9")])
    first, second = load_cases_file(path, WORKS)
    assert (first.split, second.split, second.cluster) == ("dev", "heldout", "doc-9")


@pytest.mark.parametrize(("rows", "message"), [
    ([case(), "", case(case_id="c2", splt="heldout")], "cases.jsonl:3 (case c2): unknown field 'splt'"),
    ([case(), case()], "cases.jsonl:2 (case c1): case_id 'c1' appears twice"),
    ([case(avoid=["w-9"], level="same_topic", planted={})], "avoided work 'w-9' is not in the catalog"),
    ([case(planted={"w-9": 0.2})], "planted work 'w-9' is not in the catalog"),
    ([case(planted={"w-1": 1.5})], "field 'planted' must map work ids to fractions in (0, 1]"),
    ([case(level="Verbatim")], "field 'level' must be one of verbatim"),
    ([case(level="unrelated")], "level 'unrelated' must not have planted works"),
    (["not json"], "cases.jsonl:1: not JSON"),
])
def test_each_mistake_names_the_line_and_the_field(tmp_path, rows, message):
    with pytest.raises(EvalInputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_cases_file(write(tmp_path, "cases.jsonl", rows), WORKS)


def test_catalog_mistakes_and_a_byte_order_mark(tmp_path):
    path = tmp_path / "works.jsonl"
    path.write_text("\ufeff" + json.dumps({"work_id": "w-1", "holder_id": "h", "text": "t"}) + "\n", encoding="utf-8")
    assert [w["work_id"] for w in load_catalog_file(path)] == ["w-1"]
    bad = write(tmp_path, "bad.jsonl", [{"work_id": "w-1", "holder_id": "h", "text": "t"},
                                        {"work_id": "w-1", "holder_id": "h", "text": "t"}])
    with pytest.raises(EvalInputError, match="bad.jsonl:2: work_id 'w-1' appears twice"):
        load_catalog_file(bad)


def test_the_cli_refuses_options_that_would_be_ignored(tmp_path, capsys):
    assert main(["eval", "--margin", "0.1"]) == 2
    assert "--margin applies to a fixed --threshold" in capsys.readouterr().err
    assert main(["eval", "--trim", "0.9"]) == 2
    assert main(["eval", "--catalog", str(tmp_path / "x.jsonl")]) == 2
    assert "--catalog and --cases go together" in capsys.readouterr().err
