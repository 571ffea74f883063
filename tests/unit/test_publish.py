"""The atomic-publish primitive (foldstack.storage.publish) and write_pointer, locally and
on S3 (moto): complete or nothing, rollback on failure, never deleting a complete publish,
and what happens when two publishers race for one destination."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from tests.fake_aws import fail_writes_to, recorded_bucket_fixture

from foldstack import storage
from foldstack.core.errors import InputValidationError
from foldstack.storage import PublishConflictError, publish

MARK = "manifest.json"


def names(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def first_commit_wins(dest: Path | str, files_a: dict[str, bytes], files_b: dict[str, bytes]) -> None:
    """Two publishers of ``dest`` put the same keys in turn; ``a`` commits first, so ``b``'s
    commit must lose."""
    a, b = publish(dest), publish(dest)
    for key in files_a:
        a.put(key, files_a[key])
        b.put(key, files_b[key])
    a.commit()
    with pytest.raises(PublishConflictError):
        b.commit()


# ------------------------------------------------------------------ local


def test_local_success_appears_complete_and_leaves_no_staging(tmp_path):
    dest = tmp_path / "out" / "run-1"
    src = tmp_path / "big.bin"
    src.write_bytes(b"\x01" * 1000)
    with publish(dest) as pub:
        pub.put("t1/ranked_0.pdb", b"ATOM\n")
        pub.put_file("t1/big.bin", src)
        (pub.local_dir() / "direct.txt").write_text("written by a tool")
        assert not dest.exists()  # nothing visible before commit
        pub.put(MARK, b"{}")
    assert tree(dest) == {"direct.txt": b"written by a tool", MARK: b"{}", "t1/big.bin": b"\x01" * 1000,
                          "t1/ranked_0.pdb": b"ATOM\n"}
    assert names(tmp_path / "out") == ["run-1"]
    assert storage.is_published(str(dest))


def test_local_failure_midway_leaves_nothing(tmp_path):
    dest = tmp_path / "out" / "run-1"
    with pytest.raises(ConnectionError), publish(dest) as pub:
        pub.put("a.txt", b"a")
        staging = pub.local_dir()
        assert staging.name.startswith(".run-1.partial-") and staging.parent == dest.parent
        raise ConnectionError("lost mid-way")
    assert names(tmp_path / "out") == []  # no dest, no partial dir


def test_local_commit_without_marker_is_refused_and_rolled_back(tmp_path):
    dest = tmp_path / "run-1"
    pub = publish(dest)
    pub.put("a.txt", b"a")
    with pytest.raises(ValueError, match="marker"):
        pub.commit()
    assert names(tmp_path) == []


def test_local_incomplete_leftover_is_replaced(tmp_path):
    dest = tmp_path / "v1"
    dest.mkdir()
    (dest / "half.bin").write_bytes(b"crashed")  # no marker: an earlier attempt that died
    with publish(dest) as pub:
        pub.put("x", b"new")
        pub.put(MARK, b"{}")
    assert tree(dest) == {MARK: b"{}", "x": b"new"}
    assert names(tmp_path) == ["v1"]


def test_local_complete_dest_is_kept_unless_replace(tmp_path):
    dest = tmp_path / "v1"
    with publish(dest) as pub:
        pub.put("x", b"old")
        pub.put(MARK, b"old")
    with pytest.raises(PublishConflictError), publish(dest) as pub:
        pub.put("x", b"new")
    assert tree(dest) == {MARK: b"old", "x": b"old"}
    with publish(dest, replace=True) as pub:
        pub.put("y", b"new")
        pub.put(MARK, b"new")
    assert tree(dest) == {MARK: b"new", "y": b"new"}  # swapped whole: nothing of the old is left
    assert names(tmp_path) == ["v1"]  # the stale dir is gone too


def test_local_replace_failure_keeps_the_earlier_publish(tmp_path):
    dest = tmp_path / "v1"
    with publish(dest) as pub:
        pub.put(MARK, b"old")
    with pytest.raises(RuntimeError), publish(dest, replace=True) as pub:
        pub.put(MARK, b"new")
        raise RuntimeError("boom")
    assert tree(dest) == {MARK: b"old"} and names(tmp_path) == ["v1"]


def _read_via(dir_fd: int, name: str) -> bytes:
    fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def test_local_replace_never_shows_a_mixture(tmp_path):
    """A reader that opens the directory during many swaps sees the old set or the new
    set, never a mix (reading by path twice could straddle a swap: open the dir first)."""
    dest = tmp_path / "v"
    with publish(dest) as pub:
        pub.put("a", b"0")
        pub.put(MARK, b"0")
    seen: set[tuple[bytes, ...]] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                dir_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                continue  # dest briefly absent between the two renames
            try:
                seen.add((_read_via(dir_fd, "a"), _read_via(dir_fd, MARK)))
            except FileNotFoundError:
                pass  # opened the old dir just before it was swapped out and deleted
            finally:
                os.close(dir_fd)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(1, 40):
            with publish(dest, replace=True) as pub:
                pub.put("a", str(i).encode())
                pub.put(MARK, str(i).encode())
    finally:
        stop.set()
        t.join()
    assert seen and all(a == m for a, m in seen)


def test_local_refuses_a_symlinked_dest(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "run-1").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(InputValidationError, match="symbolic link"), \
            publish(tmp_path / "out" / "run-1", replace=True) as pub:
        pub.put(MARK, b"{}")
    assert names(elsewhere) == [] and names(tmp_path / "out") == ["run-1"]


def test_local_concurrent_publishers_first_commit_wins(tmp_path):
    """Both stage privately; the rename decides. The loser raises and removes only its
    own staging dir; the winner's directory is untouched."""
    dest = tmp_path / "run-1"
    first_commit_wins(dest, {"who": b"a", MARK: b"a"}, {"who": b"b", MARK: b"b"})
    assert tree(dest) == {MARK: b"a", "who": b"a"}
    assert names(tmp_path) == ["run-1"]


def test_local_concurrent_replacers_last_commit_wins(tmp_path):
    dest = tmp_path / "v"
    a, b = publish(dest, replace=True), publish(dest, replace=True)
    for pub, who in ((a, b"a"), (b, b"b")):
        pub.put("who", who)
        pub.put(MARK, who)
    a.commit()
    b.commit()
    assert tree(dest) == {MARK: b"b", "who": b"b"} and names(tmp_path) == ["v"]


def test_remove_partials_spares_complete_publishes(tmp_path):
    done = tmp_path / "done"
    with publish(done) as pub:
        pub.put(MARK, b"{}")
    (tmp_path / ".done.partial-abc").mkdir()
    (tmp_path / ".done.stale-abc").mkdir()
    (tmp_path / ".donex.partial-abc").mkdir()  # another destination's
    assert storage.remove_partials(str(done)) == 2
    assert names(tmp_path) == [".donex.partial-abc", "done"]
    half = tmp_path / "half"
    half.mkdir()
    (half / "x").write_bytes(b"x")
    assert storage.remove_partials(str(half)) == 1 and not half.exists()


def test_write_pointer_local_is_atomic_and_leaves_no_temp(tmp_path):
    path = tmp_path / "db" / "CURRENT"
    storage.write_pointer(str(path), "v1\n")
    storage.write_pointer(str(path), "v2\n")
    assert path.read_text() == "v2\n" and names(path.parent) == ["CURRENT"]
    assert storage.read_pointer(str(path)) == "v2"
    assert storage.read_pointer(str(tmp_path / "absent")) is None


# ------------------------------------------------------------------ S3 (moto)

BUCKET = "foldstack-test-publish"
DEST = f"s3://{BUCKET}/results/run-1"


s3 = recorded_bucket_fixture(BUCKET)


def test_s3_success_writes_the_marker_last(s3, tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(b"file")
    with publish(DEST) as pub:
        pub.put(MARK, b"{}")  # given first, still written last
        pub.put("t1/a.pdb", b"A")
        pub.put_file("t1/f.bin", src)
        assert not storage.is_published(DEST)
    assert s3.writes[-1] == "results/run-1/manifest.json"
    assert set(s3.writes[:-1]) == {"results/run-1/t1/a.pdb", "results/run-1/t1/f.bin"}
    assert s3.bodies("results/") == {"results/run-1/manifest.json": b"{}", "results/run-1/t1/a.pdb": b"A",
                                    "results/run-1/t1/f.bin": b"file"}
    assert storage.is_published(DEST)


def test_s3_failure_rolls_back_what_it_wrote(s3, monkeypatch):
    s3.client.put_object(Bucket=BUCKET, Key="results/run-1/stale.bin", Body=b"leftover")  # no marker
    s3.client.put_object(Bucket=BUCKET, Key="results/run-10/manifest.json", Body=b"other run")
    fail_writes_to(monkeypatch, "/b", ConnectionResetError("reset"))
    with pytest.raises(ConnectionResetError), publish(DEST) as pub:
        pub.put("a", b"a")
        pub.put("b", b"b")
    assert s3.keys("results/") == ["results/run-10/manifest.json"]  # leftover and partial gone, neighbour kept


@pytest.mark.slow
def test_s3_failure_of_the_marker_write_rolls_back(s3, monkeypatch):
    real_write = storage.write_bytes

    def flaky(uri, data, **kw):
        if uri.endswith(f"/{MARK}"):
            raise ConnectionResetError("reset")
        return real_write(uri, data, **kw)

    monkeypatch.setattr(storage, "write_bytes", flaky)
    with pytest.raises(ConnectionResetError), publish(DEST) as pub:
        pub.put("a", b"a")
        pub.put(MARK, b"{}")
    assert s3.keys("results/") == []


def test_s3_never_deletes_a_complete_publish(s3):
    with publish(DEST) as pub:
        pub.put("a", b"old")
        pub.put(MARK, b"old")
    before = s3.bodies("results/")
    s3.writes.clear()
    with pytest.raises(PublishConflictError), publish(DEST) as pub:  # refused on opening: nothing written
        pub.put("a", b"new")
    assert s3.writes == [] and s3.bodies("results/") == before


def test_s3_replace_withdraws_the_marker_first_and_rolls_back_on_failure(s3):
    with publish(DEST) as pub:
        pub.put("a", b"old")
        pub.put(MARK, b"old")
    with pytest.raises(RuntimeError), publish(DEST, replace=True) as pub:
        assert not storage.is_published(DEST)  # withdrawn whole: never the old marker over new objects
        pub.put("b", b"new")
        raise RuntimeError("boom")
    assert s3.keys("results/") == []
    with publish(DEST, replace=True) as pub:
        pub.put("c", b"new")
        pub.put(MARK, b"new")
    assert s3.bodies("results/") == {"results/run-1/c": b"new", "results/run-1/manifest.json": b"new"}


def test_s3_second_publisher_loses_without_deleting_the_winner(s3):
    """On S3 the primitive refuses to publish over a marker that appeared meanwhile, and
    then deletes nothing: those keys belong to a complete publish now."""
    first_commit_wins(DEST, {"x": b"same", MARK: b"a"}, {"x": b"same", MARK: b"b"})
    assert s3.bodies("results/") == {"results/run-1/manifest.json": b"a", "results/run-1/x": b"same"}


def test_s3_write_pointer_is_one_put(s3):
    uri = f"s3://{BUCKET}/results/CURRENT"
    assert storage.read_pointer(uri) is None
    storage.write_pointer(uri, "v2\n")
    assert s3.writes == ["results/CURRENT"] and storage.read_pointer(uri) == "v2"


def test_s3_refuses_a_bucket_root():
    with pytest.raises(InputValidationError):
        publish(f"s3://{BUCKET}")
