"""User errors on the command line: one line that says what is wrong and what to do, a
non-zero exit, never a traceback. Each runs the real ``tributary`` command in a
subprocess. (The ones that need ledger data run on chdb in
tests/integration/test_cli_ledger_errors.py.)"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tributary.catalog import MAX_RECORD_BYTES, CatalogError, works_from_path


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tributary.cli", "--data-dir", str(tmp_path / "data"), *args],
                          capture_output=True, text=True, timeout=120)


def one_line_error(out: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert out.returncode != 0, out
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_binary_file_is_refused_with_one_line(tmp_path):
    binary = tmp_path / "cover.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x82\xff" * 100)
    one_line_error(cli(tmp_path, "catalog", "add", "--holder", "h1", str(binary)), "cover.txt", "not UTF-8 text")
    jsonl = tmp_path / "works.jsonl"
    jsonl.write_bytes(b'{"work_id": "w1", "text": "caf\xe9"}\n')  # latin-1, not UTF-8
    one_line_error(cli(tmp_path, "catalog", "add", "--holder", "h1", str(jsonl)), "works.jsonl", "not UTF-8")
    folder = tmp_path / "works"
    folder.mkdir()
    (folder / "good.txt").write_text("Call me Ishmael.")
    (folder / "bad.md").write_bytes(b"\xff\xfe\x00binary")
    one_line_error(cli(tmp_path, "catalog", "add", "--holder", "h1", str(folder)), "bad.md", "not UTF-8")


def test_a_work_over_the_kafka_message_limit_is_refused_before_producing(tmp_path):
    big = tmp_path / "collected-works.txt"
    big.write_text("word " * 3_700_000)  # 18.5 MB: Kafka would refuse it (MSG_SIZE_TOO_LARGE)
    # nothing listens on this port: refusing before producing is the only way to answer at once
    out = cli(tmp_path, "--kafka-port", str(unused_port()), "catalog", "add", "--holder", "h1", str(big))
    one_line_error(out, "collected-works.txt", "18,500,000 bytes", f"at most {MAX_RECORD_BYTES:,} bytes", "split")
    help_text = subprocess.run([sys.executable, "-m", "tributary.cli", "catalog", "add", "--help"],
                               capture_output=True, text=True, timeout=60).stdout
    assert f"{MAX_RECORD_BYTES:,} bytes" in " ".join(help_text.split())  # the help names the limit too
    jsonl = tmp_path / "works.jsonl"  # a JSON lines file is checked work by work, as encoded
    jsonl.write_text(json.dumps({"work_id": "w-big", "holder_id": "h1", "text": "\x01" * 200_000}) + "\n")
    with pytest.raises(CatalogError, match=r"works.jsonl:1: work 'w-big' is 1,200,\d+ bytes as a catalog record"):
        works_from_path(jsonl)


def test_json_lines_that_are_not_objects_are_refused(tmp_path):
    jsonl = tmp_path / "works.jsonl"
    jsonl.write_text('{"work_id": "w1", "holder_id": "h1", "text": "t"}\n[1, 2]\n')
    one_line_error(cli(tmp_path, "catalog", "add", str(jsonl)), "works.jsonl:2", "expected a JSON object")


def test_output_paths_are_checked_before_any_work(tmp_path):
    # no ledger here at all: the path is refused first (the run with data is in
    # tests/integration/test_cli_ledger_errors.py)
    missing = tmp_path / "no-such-folder" / "statement.txt"
    one_line_error(cli(tmp_path, "statement", "h1", "--output", str(missing)),
                   f"the folder {missing.parent} does not exist", "mkdir -p")
    one_line_error(cli(tmp_path, "statement", "h1", "--output", str(tmp_path)), "is a folder")
    one_line_error(cli(tmp_path, "explain", "po_x", "--limit", "-1"), "--limit -1")


def test_a_data_dir_that_is_a_file_is_a_settings_error(tmp_path):
    file = tmp_path / "not-a-folder"
    file.write_text("x")
    out = subprocess.run([sys.executable, "-m", "tributary.cli", "--data-dir", str(file), "up"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"data_dir={file}: exists and is not a folder" in out.stderr
