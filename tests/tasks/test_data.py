"""Task data: the real wikitext copy, page grouping, and clear errors for bad data."""

import pytest

from compbench.core.io import read_jsonl, set_data_dir
from compbench.errors import CompbenchError
from compbench.tasks.data import load_splits


def test_wikitext_rows_group_into_the_62_test_articles(data_dir):
    from compbench.tasks.utils import wikitext_pages

    rows = load_splits("Salesforce/wikitext", "wikitext-2-raw-v1", ["test"])["test"]
    assert len(rows) == 4358
    pages = wikitext_pages(rows)
    assert len(pages) == 62  # as in EleutherAI/wikitext_document_level
    assert pages[0]["page"].startswith(" = Robert Boulter = \n")
    assert sum(len(p["page"].split()) for p in pages) == sum(len(r.split()) for r in rows["text"])


def test_missing_data_dir_is_reported(tmp_path):
    with pytest.raises(CompbenchError, match="data dir .*nowhere does not exist"):
        set_data_dir(tmp_path / "nowhere")


def test_missing_dataset_file_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPBENCH_DATA_DIR", str(tmp_path))
    with pytest.raises(CompbenchError, match=r"wikitext-2-raw-v1/test.jsonl not found"):
        load_splits("Salesforce/wikitext", "wikitext-2-raw-v1", ["test"])


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"\n')
    with pytest.raises(CompbenchError, match=r"test.jsonl:2: malformed JSON line"):
        read_jsonl(path)
    path.write_text('{"text": "a"}\n["b"]\n')
    with pytest.raises(CompbenchError, match=r"test.jsonl:2: expected a JSON object"):
        read_jsonl(path)


def test_rows_missing_a_field_are_reported(tmp_path, monkeypatch):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "test.jsonl").write_text('{"text": "a"}\n{"txt": "b"}\n')
    monkeypatch.setenv("COMPBENCH_DATA_DIR", str(tmp_path))
    with pytest.raises(CompbenchError, match=r"ds/test.jsonl:2: no field 'text'"):
        load_splits("x", "ds", ["test"], fields={"text": "str"})
