"""What ``INPUT`` names: a folder (recursively), a list file, a glob, and the same through a URI."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch.inputs import list_inputs, open_video, size_of


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in ("a.mp4", "b.MKV", "sub/c.webm", "sub/deeper/d.avi", "notes.txt", "sub/cover.jpg"):
        path = tmp_path / "videos" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
    return tmp_path / "videos"


def names(paths: list[str]) -> list[str]:
    return [Path(p).name for p in paths]


def test_a_folder_yields_its_video_files_recursively(tree):
    found = list_inputs(str(tree))
    assert names(found) == ["a.mp4", "b.MKV", "c.webm", "d.avi"]
    assert all(Path(p).is_absolute() for p in found)
    assert names(list_inputs(str(tree), extensions=())) == [
        "a.mp4",
        "b.MKV",
        "notes.txt",
        "c.webm",
        "cover.jpg",
        "d.avi",
    ]


def test_a_list_names_paths_relative_to_itself(tree):
    (tree / "list.txt").write_text("# clips\na.mp4\n\nsub/c.webm\n/elsewhere/x.mp4\na.mp4\n")
    assert list_inputs(str(tree / "list.txt")) == sorted(
        [str(tree / "a.mp4"), str(tree / "sub" / "c.webm"), "/elsewhere/x.mp4"]
    )
    (tree / "list.csv").write_text("label,path\n1,a.mp4\n2,sub/deeper/d.avi\n")
    assert names(list_inputs(str(tree / "list.csv"))) == ["a.mp4", "d.avi"]
    (tree / "plain.csv").write_text("a.mp4,1\nb.MKV,2\n")  # no header: the first column
    assert names(list_inputs(str(tree / "plain.csv"))) == ["a.mp4", "b.MKV"]


def test_a_glob_matches_files(tree):
    assert names(list_inputs(str(tree / "**" / "*.webm"))) == ["c.webm"]
    assert names(list_inputs(str(tree / "*"))) == ["a.mp4", "b.MKV"]


def test_a_uri_is_read_through_pyarrow(tree):
    uri = f"file://{tree}"
    assert list_inputs(uri) == [f"file://{p}" for p in list_inputs(str(tree))]
    assert names(list_inputs(f"file://{tree}/sub/*")) == ["c.webm", "cover.jpg", "d.avi"]
    (tree / "list.txt").write_text("a.mp4\nsub/c.webm\n")
    assert list_inputs(f"{uri}/list.txt") == [f"{uri}/a.mp4", f"{uri}/sub/c.webm"]
    video = f"{uri}/a.mp4"
    assert size_of(video) == len(b"a.mp4") and open_video(video).read() == b"a.mp4"
    assert open_video(str(tree / "a.mp4")) == str(tree / "a.mp4")  # a local file is read where it is


def test_nothing_to_read_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        list_inputs(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError):
        list_inputs(f"file://{tmp_path}/missing")


def test_an_object_over_the_size_limit_is_refused_before_it_is_fetched(tree, monkeypatch):
    import batch.inputs
    from pipeline.frames.errors import VideoTooLargeError

    real = batch.inputs._filesystem

    class NoFetch:  # answers sizes, fails on a read
        def __init__(self, filesystem):
            self.filesystem = filesystem

        def get_file_info(self, path):
            return self.filesystem.get_file_info(path)

        def open_input_file(self, path):
            raise AssertionError("fetched")

    monkeypatch.setattr(batch.inputs, "_filesystem", lambda uri: (NoFetch(real(uri)[0]), real(uri)[1]))
    with pytest.raises(VideoTooLargeError, match="5 bytes; the limit is 4"):
        open_video(f"file://{tree}/a.mp4", max_bytes=4)
    with pytest.raises(AssertionError, match="fetched"):  # within the limit, it is read
        open_video(f"file://{tree}/a.mp4", max_bytes=5)


def test_blocks_hold_about_a_set_size_of_video(tmp_path):
    """Small files: the most videos per block; large ones: about block_mb of video per block;
    unreadable files do not size the blocks (their rows say what is wrong)."""
    from batch.job import videos_per_block

    def files(name: str, count: int, size: int) -> list[str]:
        paths = [tmp_path / f"{name}{i}.mp4" for i in range(count)]
        for path in paths:
            path.write_bytes(b"\0" * size)
        return [str(path) for path in paths]

    small, large = files("small", 40, 60_000), files("large", 40, 2 * 2**20)
    assert videos_per_block(small, 32, 8.0) == 32
    assert videos_per_block(large, 32, 8.0) == 4
    assert videos_per_block(large + [str(tmp_path / "missing.mp4")] * 3, 32, 8.0) == 4
    assert videos_per_block(files("huge", 2, 64 * 2**20), 32, 8.0) == 1
    assert videos_per_block([str(tmp_path / "missing.mp4")], 32, 8.0) == 32
