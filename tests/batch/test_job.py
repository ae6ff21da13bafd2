"""``adafocus-batch`` end to end on a local Ray: a folder of generated clips with bad files, run
twice (the second run skips everything), and the answers equal the service's for the same files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from batch.cli import main
from batch.output import read_rows
from service.app import create_app
from tests.batch.clips import BATCH_LIMITS, HOSTILE, SERVICE_SETTINGS, make_clips
from tests.paths import SHIPPED_MODELS
from tests.service.test_service import settings

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    return make_clips(tmp_path_factory.mktemp("clips"), tmp_path_factory.mktemp("scratch"))


@pytest.fixture(scope="module")
def folder(clips) -> Path:
    return clips["empty"].parent


def batch(*args: str) -> int:
    """The command line, in this process (the module's Ray session is reused)."""
    return main([*args, "--repo", str(SHIPPED_MODELS), *BATCH_LIMITS, "--no-progress", "--decode-workers", "2"])


@pytest.fixture(scope="module")
def service():
    with TestClient(create_app(settings(**SERVICE_SETTINGS))) as client:
        yield client


def service_answers(client: TestClient, clips: dict[str, Path], exit: str | None) -> dict[str, dict]:
    """The service's answer for each clip, by absolute path: its JSON, or its problem+json."""
    answers = {}
    for path in clips.values():
        params = {"exit": exit} if exit else {}
        response = client.post("/v1/classify", params=params, files={"video": (path.name, path.read_bytes())})
        answers[str(path.resolve())] = {"status_code": response.status_code, **response.json()}
    return answers


@pytest.fixture(scope="module")
def first_runs(folder, clips, tmp_path_factory) -> dict:
    """Half the clips from a list file, then the folder: the second run does the other half."""
    out = tmp_path_factory.mktemp("out") / "parquet"
    names = sorted(clips)
    listed = folder.parent / "half.txt"
    listed.write_text("".join(f"{clips[name].relative_to(folder.parent)}\n" for name in names[::2]))
    first = batch(str(listed), "--out", str(out))
    after_first = read_rows(str(out))
    second = batch(str(folder), "--out", str(out))
    return {"out": out, "codes": (first, second), "after_first": after_first, "rows": read_rows(str(out))}


def test_every_clip_gets_one_row_and_bad_files_get_their_problem(first_runs, clips):
    assert first_runs["codes"] == (0, 0)
    rows = {row["path"]: row for row in first_runs["rows"]}
    assert len(first_runs["rows"]) == len(rows) == len(clips)  # no input twice, none missing
    assert len(first_runs["after_first"]) == math.ceil(len(clips) / 2)
    for name, path in clips.items():
        row = rows[str(path.resolve())]
        assert row["status"] == HOSTILE.get(name, "ok"), (name, row["detail"])
        if row["status"] == "ok":
            assert row["labels"] and len(row["labels"]) == len(row["scores"]) == 5
            assert row["frames_processed"] == row["exit_step"] + 1 and row["gmacs"] > 0
        else:
            assert row["detail"] and row["http_status"] >= 400 and row["labels"] == []
    synthetic = [rows[str(p.resolve())] for name, p in clips.items() if p.parent.name == "synthetic"]
    assert all(row["labels"][0] == f"pattern_{Path(row['path']).name.split('_')[1]}" for row in synthetic)
    assert {row["exit_step"] for row in synthetic} == {0}  # sure after one frame: one round
    flat = [rows[str(clips[f"flat_{i}"].resolve())] for i in range(2)]
    assert all(row["exit_step"] > 0 for row in flat)  # not sure: read again, resumed in round two


def test_a_rerun_skips_everything_and_writes_nothing(first_runs, folder, capsys):
    out = first_runs["out"]
    parts = sorted(p.name for p in out.iterdir())
    assert batch(str(folder), "--out", str(out)) == 0
    assert "0 classified" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == parts
    assert read_rows(str(out)) == first_runs["rows"]


@pytest.mark.parametrize("exit", [None, "off"])
def test_the_answers_are_the_services(first_runs, folder, clips, service, tmp_path, exit):
    """Default exit (balanced, two rounds) from the Parquet run; every frame (one round) as JSONL."""
    if exit is None:
        rows = first_runs["rows"]
    else:
        out = tmp_path / "jsonl"
        assert batch(str(folder / "**" / "*"), "--out", str(out), "--exit", exit, "--format", "jsonl") == 0
        rows = read_rows(str(out))
    expected = service_answers(service, clips, exit)
    assert {row["path"] for row in rows} == set(expected)
    for row in rows:
        answer = expected[row["path"]]
        if answer["status_code"] != 200:
            assert (row["status"], row["http_status"]) == (answer["title"], answer["status"]), row["path"]
            continue
        assert row["status"] == "ok", (row["path"], row["detail"])
        assert row["labels"] == [entry["label"] for entry in answer["labels"]]
        assert row["scores"] == pytest.approx([entry["score"] for entry in answer["labels"]], rel=1e-9, abs=1e-12)
        assert row["exit_step"] == answer["exit"]["step"]
        assert row["operating_point"] == answer["exit"]["operating_point"]
        assert row["frames_processed"] == answer["exit"]["frames_processed"]
        assert row["gmacs"] == pytest.approx(answer["gmacs"]["spent"])
        video = answer["video"]
        assert (row["video_frames"], row["width"], row["height"]) == (video["frames"], video["width"], video["height"])
        if row["exit_step"] == 0 or exit == "off":  # read as the service reads it (two rounds read more)
            assert row["frames_decoded"] == answer["exit"]["frames_decoded"]
