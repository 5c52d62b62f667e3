"""`tributary catalog add` inputs: JSON lines, a text file, a folder of text files; and
`catalog remove` records. (The indexer applying them is tested on the broker in
tests/integration/test_catalog.py.)"""

import json

import pytest

from schemas import first_problem
from tributary.catalog import CatalogError, removal_record, works_from_path


def test_folder_of_text_files_becomes_one_work_per_file(tmp_path):
    (tmp_path / "Moby Dick.txt").write_text("Call me Ishmael. Some years ago...")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "emma.md").write_text("Emma Woodhouse, handsome, clever, and rich...")
    (tmp_path / "notes.pdf").write_bytes(b"%PDF")  # not text: ignored
    works = works_from_path(tmp_path, holder_id="h-1", license_terms="CC-BY")
    assert [(w["work_id"], w["holder_id"], w["license"]) for w in works] == [
        ("moby-dick", "h-1", "CC-BY"), ("emma", "h-1", "CC-BY")]
    assert all(first_problem("catalog-update.v1", w) is None for w in works)


def test_single_file_with_explicit_id_and_title(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("Some text of a work.")
    [work] = works_from_path(path, "h-2", work_id="w-custom", title="A Title")
    assert (work["work_id"], work["title"], work["text"]) == ("w-custom", "A Title", "Some text of a work.")


def test_jsonl_with_a_default_holder_and_errors_with_line_numbers(tmp_path):
    path = tmp_path / "works.jsonl"
    path.write_text(json.dumps({"work_id": "w-1", "text": "t"}) + "\n\n" + "{broken\n")
    with pytest.raises(CatalogError, match=r"works.jsonl:3: not JSON"):
        works_from_path(path, "h-3")
    path.write_text(json.dumps({"work_id": "w-1", "text": "t"}) + "\n")
    assert works_from_path(path, "h-3")[0]["holder_id"] == "h-3"


def test_clear_errors(tmp_path):
    with pytest.raises(CatalogError, match="needs --holder"):
        works_from_path(_file(tmp_path), None)
    with pytest.raises(CatalogError, match="no such file"):
        works_from_path(tmp_path / "missing.txt", "h")
    with pytest.raises(CatalogError, match="no .txt"):
        works_from_path(tmp_path / "empty" if (tmp_path / "empty").mkdir() is None else tmp_path, "h")
    with pytest.raises(CatalogError, match="work_id"):
        removal_record("bad id with spaces")
    assert removal_record("w-1", "rights expired")["kind"] == "work_removed"


def _file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("text")
    return path
