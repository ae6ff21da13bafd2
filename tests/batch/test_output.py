"""The output folder: whole parts only, the paths already written, both formats."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from batch.output import SCHEMA, PartWriter, done_paths, read_rows


def row(path: str, status: str = "ok") -> dict:
    base = dict.fromkeys(SCHEMA.names)
    return {**base, "path": path, "status": status, "labels": ["a"], "scores": [0.5], "exit_step": 0}


@pytest.mark.parametrize("format", ["parquet", "jsonl"])
def test_parts_are_written_every_n_rows_and_read_back(tmp_path, format):
    out = tmp_path / "out"
    writer = PartWriter(str(out), format, flush_rows=2, flush_s=3600)
    writer.add([row("a"), row("b"), row("c")])
    assert len(list(out.iterdir())) == 1  # two rows written, one buffered
    writer.add([row("d", "Video too large")])
    writer.flush()
    writer.flush()  # nothing buffered: no empty part
    assert [p.name.startswith("part-") for p in out.iterdir()] == [True, True]
    assert done_paths(str(out)) == {"a", "b", "c", "d"}
    rows = {r["path"]: r for r in read_rows(str(out))}
    assert rows["d"]["status"] == "Video too large" and rows["a"]["labels"] == ["a"]


def test_a_part_being_written_is_not_read(tmp_path):
    out = tmp_path / "out"
    PartWriter(str(out), "parquet").flush()
    (out / ".part-x-00000.parquet.tmp").write_bytes(b"half a file")  # a writer killed mid-part
    assert done_paths(str(out)) == set()
    writer = PartWriter(str(out), "parquet")
    writer.add([row("a")])
    writer.flush()
    assert done_paths(str(out)) == {"a"}
    assert done_paths(str(tmp_path / "never-written")) == set()


def test_parquet_parts_have_the_schema(tmp_path):
    writer = PartWriter(str(tmp_path), "parquet")
    writer.add([row("a")])
    writer.flush()
    (part,) = tmp_path.glob("part-*.parquet")
    assert pq.read_schema(part).remove_metadata() == SCHEMA


def test_parts_are_flushed_after_a_while(tmp_path):
    writer = PartWriter(str(tmp_path), "jsonl", flush_rows=1000, flush_s=0)
    writer.add([row("a")])
    assert done_paths(str(tmp_path)) == {"a"}
