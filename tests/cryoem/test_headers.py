"""Movie headers read without the data (foldstack.cryoem.headers): MRC in both byte orders,
TIFF and BigTIFF IFD chains, and Validate Input on moto S3 reading one ranged GET per MRC
movie and rejecting inconsistent movies with one coded line, nothing written. Fast."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest

from foldstack import storage
from foldstack.core.errors import InputValidationError
from foldstack.cryoem import headers as H
from foldstack.cryoem.mrc import write_mrc
from foldstack.cryoem.request import parse_run_request
from foldstack.cryoem.submission import run_id_for
from tests.cryoem.test_workflow_tasks import CLASSES, OPTICS, load_handler


def mrc_bytes(tmp_path, frames: int, ny: int, nx: int, name: str = "m.mrcs") -> bytes:
    path = tmp_path / name
    write_mrc(path, np.zeros((frames, ny, nx), np.float32), 2.5)
    return path.read_bytes()


def tiff_bytes(pages: list[tuple[int, int]], *, order: str = "<", big: bool = False, gather: bool = True,
               strip: int = 0) -> bytes:
    """A TIFF whose pages declare (ny, nx), with `strip` bytes of (zero) data before each
    IFD (gather=False: each IFD follows its page's data, as most movie writers do) or all
    IFDs together at the end (gather=True)."""
    mark = b"II" if order == "<" else b"MM"
    head = mark + (struct.pack(order + "HHHQ", 43, 8, 0, 0) if big else struct.pack(order + "HI", 42, 0))
    count_fmt, entry_fmt, next_fmt = ("Q", "HHQQ", "Q") if big else ("H", "HHII", "I")

    def ifd(ny: int, nx: int, next_offset: int) -> bytes:
        typ = 16 if big else 4  # LONG8 fills BigTIFF's 8-byte value field; LONG classic TIFF's 4
        entries = [struct.pack(order + entry_fmt, 256, typ, 1, nx), struct.pack(order + entry_fmt, 257, typ, 1, ny)]
        return struct.pack(order + count_fmt, 2) + b"".join(entries) + struct.pack(order + next_fmt, next_offset)

    ifd_size = len(ifd(1, 1, 0))
    body, offsets = bytearray(head), []
    if gather:
        body += b"\0" * strip * len(pages)
        offsets = [len(body) + i * ifd_size for i in range(len(pages))]
    else:
        for i in range(len(pages)):
            offsets.append(len(head) + strip * (i + 1) + ifd_size * i)
    blocks = []
    for i, (ny, nx) in enumerate(pages):
        nxt = offsets[i + 1] if i + 1 < len(pages) else 0
        blocks.append(ifd(ny, nx, nxt))
    if gather:
        body += b"".join(blocks)
    else:
        for block in blocks:
            body += b"\0" * strip + block
    first = struct.pack(order + ("Q" if big else "I"), offsets[0])
    at = 8 if big else 4
    body[at:at + len(first)] = first
    return bytes(body)


class CountingReader:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.calls = files, []

    def __call__(self, uri: str, start: int, length: int) -> bytes:
        self.calls.append((uri, start, length))
        return self.files[uri][start:start + length]


# -- MRC --------------------------------------------------------------------------------------------


def test_mrc_header_gives_frames_size_and_pixel_size_from_1024_bytes(tmp_path):
    read = CountingReader({"m.mrcs": mrc_bytes(tmp_path, 7, 96, 128)})
    info = H.read_movie_header("m.mrcs", read)
    assert (info.frames, info.ny, info.nx, info.pixel_size) == (7, 96, 128, 2.5)
    end = 1024 + 7 * 96 * 128 * 4
    assert info.data_end == end == len(read.files["m.mrcs"])
    assert read.calls == [("m.mrcs", 0, 1024), ("m.mrcs", end - 1, 1)]  # the header, then the data's last byte


def test_mrc_header_in_big_endian_order(tmp_path):
    little = bytearray(mrc_bytes(tmp_path, 5, 64, 80)[:1024])
    big = bytearray(1024)
    for off in range(0, 208, 4):  # the numeric words (ints and floats alike are 4 bytes)
        big[off:off + 4] = little[off:off + 4][::-1]
    big[208:212], big[212:214] = b"MAP ", b"\x11\x11"
    info = H.parse_mrc_header("big.mrc", bytes(big))
    assert (info.frames, info.ny, info.nx, info.pixel_size) == (5, 64, 80, 2.5)


@pytest.mark.parametrize("data", [b"", b"x" * 100, b"\xff" * 1024])
def test_a_file_that_is_no_mrc_is_unreadable_in_one_coded_line(data):
    with pytest.raises(InputValidationError) as err:
        H.read_movie_header("bad.mrc", CountingReader({"bad.mrc": data}))
    assert err.value.code == "unreadable_movie" and "bad.mrc" in str(err.value) and "\n" not in str(err.value)


def test_mrc_data_end_counts_the_extended_header_and_packed_modes(tmp_path):
    import mrcfile

    path = tmp_path / "ext.mrcs"
    with mrcfile.new(path) as m:
        m.set_data(np.zeros((3, 40, 50), np.int16))
        m.set_extended_header(np.zeros(16, dtype=[("x", "f4")]))  # 64 bytes of extended header
    data = path.read_bytes()
    info = H.read_movie_header("ext.mrcs", CountingReader({"ext.mrcs": data}))
    assert info.data_end == len(data) == 1024 + 64 + 3 * 40 * 50 * 2
    packed = bytearray(data[:1024])
    struct.pack_into("<i", packed, 12, 101)  # mode 101: two 4-bit values a byte, rows padded
    struct.pack_into("<i", packed, 0, 51)  # an odd row length
    assert H.parse_mrc_header("p.mrc", bytes(packed)).data_end == 1024 + 64 + 3 * 40 * 26


@pytest.mark.parametrize("cut", [1, 4096])
def test_a_truncated_mrc_is_refused_in_one_coded_line(tmp_path, cut):
    data = mrc_bytes(tmp_path, 4, 64, 64)
    with pytest.raises(InputValidationError) as err:
        H.read_movie_header("cut.mrcs", CountingReader({"cut.mrcs": data[:-cut]}))
    assert err.value.code == "truncated_movie" and "\n" not in str(err.value)
    assert "cut.mrcs is truncated" in str(err.value) and f"{len(data):,}" in str(err.value)


# -- TIFF -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("order", ["<", ">"])
def test_tiff_frames_are_the_ifd_chain(order, big):
    data = tiff_bytes([(100, 120)] * 6, order=order, big=big)
    info = H.read_movie_header("m.tiff", CountingReader({"m.tiff": data}))
    assert (info.frames, info.ny, info.nx) == (6, 100, 120)


def test_tiff_ifds_after_each_frame_cost_one_read_each_and_gathered_ones_one_in_all():
    spread = CountingReader({"m.tif": tiff_bytes([(64, 64)] * 5, gather=False, strip=H.TIFF_WINDOW + 10)})
    assert H.read_movie_header("m.tif", spread).frames == 5
    assert len(spread.calls) == 1 + 5  # the header, then one window per IFD
    gathered = CountingReader({"m.tif": tiff_bytes([(64, 64)] * 5, gather=True, strip=H.TIFF_WINDOW + 10)})
    assert H.read_movie_header("m.tif", gathered).frames == 5
    assert len(gathered.calls) == 2  # the header, then one window holding every IFD


def test_tiff_written_by_pillow_is_read_like_pillow_reads_it():
    from PIL import Image

    frames = [Image.fromarray(np.full((48, 56), i, np.uint8)) for i in range(4)]
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    info = H.read_movie_header("p.tiff", CountingReader({"p.tiff": buf.getvalue()}))
    assert (info.frames, info.ny, info.nx) == (4, 48, 56)


def tiff_ifds_first(frames: int, ny: int, nx: int, strips: int = 1) -> bytes:
    """A classic TIFF with every IFD before any pixel data, each 16-bit page in `strips`
    strips (more than one: their offsets and byte counts stored out of line, after the
    IFDs): a cut file keeps its whole IFD chain, so only the data check can tell."""
    ifd_size, page = 2 + 4 * 12 + 4, ny * nx * 2
    rows = -(-ny // strips)
    sizes = [min(rows, ny - k * rows) * nx * 2 for k in range(strips)]
    arrays_at = 8 + frames * ifd_size  # per page: its offsets, then its byte counts (strips > 1)
    data_at = arrays_at + (frames * strips * 8 if strips > 1 else 0)
    out, arrays = bytearray(struct.pack("<2sHI", b"II", 42, 8)), bytearray()
    for i in range(frames):
        offsets = [data_at + i * page + sum(sizes[:k]) for k in range(strips)]
        if strips > 1:
            offsets_field, counts_field = arrays_at + len(arrays), arrays_at + len(arrays) + 4 * strips
            arrays += struct.pack(f"<{strips}I", *offsets) + struct.pack(f"<{strips}I", *sizes)
        else:
            offsets_field, counts_field = offsets[0], sizes[0]
        nxt = 8 + (i + 1) * ifd_size if i + 1 < frames else 0
        entries = ((256, 1, nx), (257, 1, ny), (273, strips, offsets_field), (279, strips, counts_field))
        out += struct.pack("<H", 4) + b"".join(struct.pack("<HHII", tag, 4, count, value)
                                               for tag, count, value in entries) + struct.pack("<I", nxt)
    return bytes(out + arrays + b"\0" * page * frames)


def pillow_tiff(frames: int, ny: int, nx: int) -> bytes:
    from PIL import Image

    pages = [Image.fromarray(np.full((ny, nx), i, np.uint16)) for i in range(frames)]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    return buf.getvalue()


def test_tiff_data_end_is_where_the_last_pages_strips_end():
    from PIL import Image

    data = pillow_tiff(3, 48, 56)
    info = H.read_movie_header("p.tiff", CountingReader({"p.tiff": data}))
    with Image.open(io.BytesIO(data)) as im:
        im.seek(2)
        ends = [o + c for o, c in zip(im.tag_v2[273], im.tag_v2[279], strict=True)]
    assert info.data_end == max(ends)


@pytest.mark.parametrize("strips", [1, 4])
def test_a_tiff_cut_short_is_refused_even_with_its_ifd_chain_intact(strips):
    data = tiff_ifds_first(3, 64, 64, strips)
    info = H.read_movie_header("m.tiff", CountingReader({"m.tiff": data}))
    assert (info.frames, info.data_end) == (3, len(data))
    with pytest.raises(InputValidationError) as err:
        H.read_movie_header("m.tiff", CountingReader({"m.tiff": data[:-100]}))
    assert err.value.code == "truncated_movie"
    assert "m.tiff is truncated: its header describes 3 frames" in str(err.value)


@pytest.mark.parametrize(("data", "why"), [
    (b"GIF89a" + b"\0" * 20, "no II/MM"),
    (tiff_bytes([(64, 64), (32, 64)]), "page 2 is 64 x 32"),
    (tiff_bytes([(64, 64)])[:12], "not a TIFF"),
])
def test_a_damaged_tiff_is_unreadable(data, why):
    with pytest.raises(InputValidationError, match=why) as err:
        H.read_movie_header("m.tiff", CountingReader({"m.tiff": data}))
    assert err.value.code == "unreadable_movie"


def test_a_looping_ifd_chain_is_refused():
    data = bytearray(tiff_bytes([(64, 64), (64, 64)]))
    first = struct.unpack_from("<I", data, 4)[0]
    last_next = first + (2 + 24 + 4) + 2 + 24  # the second IFD's next-offset field
    data[last_next:last_next + 4] = struct.pack("<I", first)
    with pytest.raises(InputValidationError, match="loops"):
        H.read_movie_header("m.tiff", CountingReader({"m.tiff": bytes(data)}))


# -- consistency ------------------------------------------------------------------------------------


def test_consistency_names_the_odd_movie_and_the_box_that_does_not_fit():
    good = [H.MovieInfo(f"s3://b/m{i}.mrcs", 8, 256, 256) for i in range(3)]
    assert H.check_consistent(good, 64) == good[0]
    with pytest.raises(InputValidationError, match=r"movie m9\.mrcs is 7 x 256 x 256") as err:
        H.check_consistent([*good, H.MovieInfo("s3://b/m9.mrcs", 7, 256, 256)], 64)
    assert err.value.code == "inconsistent_movies"
    with pytest.raises(InputValidationError, match="1 frame"):
        H.check_consistent([H.MovieInfo("s3://b/m.mrcs", 1, 256, 256)], 64)
    with pytest.raises(InputValidationError, match="too small"):
        H.check_consistent(good, 200)


def test_headers_are_read_a_bounded_number_at_a_time_and_kept_in_order(tmp_path):
    import threading
    import time

    data = {f"m{i:02d}.mrcs": mrc_bytes(tmp_path, 2 + i, 64, 64) for i in range(12)}
    lock, state = threading.Lock(), {"now": 0, "most": 0}

    def read(uri, start, length):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.02)
        with lock:
            state["now"] -= 1
        return data[uri][start:start + length]

    infos = H.read_movie_headers(list(data), read, max_workers=3)
    assert [i.frames for i in infos] == [2 + i for i in range(12)]
    assert 1 < state["most"] <= 3


# -- Validate Input on S3 ---------------------------------------------------------------------------


def _s3_request(box: int = 64) -> dict:
    return {"movies": "s3://lake/inputs/movies/", "optics": OPTICS, "particle_diameter": 130.0, "box_size": box,
            "output_uri": "s3://lake/results", "batch_size": 2}


def _validate_event(request: dict, movies: list[str]) -> dict:
    return {"workflow": "cryoem", "request": request, "size_classes": CLASSES,
            "run_id": run_id_for(parse_run_request(request), movies)}


def test_validate_input_reads_s3_headers_with_one_ranged_get_per_mrc(s3_env, tmp_path, monkeypatch):
    s3 = s3_env
    names = [f"m{i}.mrcs" for i in range(5)]
    for name in names:
        s3.put_object(Bucket="lake", Key=f"inputs/movies/{name}", Body=mrc_bytes(tmp_path, 4, 160, 192, name))
    gets = []
    real = storage.read_range
    monkeypatch.setattr(storage, "read_range", lambda uri, start, length: gets.append((uri, start, length))
                        or real(uri, start, length))
    request = _s3_request()
    planned = load_handler("validate_input")(_validate_event(request, [f"s3://lake/inputs/movies/{n}" for n in names]))
    assert planned["n_movies"] == 5 and planned["size_class"] == "small"
    end = 1024 + 4 * 160 * 192 * 4
    assert sorted(gets) == sorted([(f"s3://lake/inputs/movies/{n}", 0, 1024) for n in names]
                                  + [(f"s3://lake/inputs/movies/{n}", end - 1, 1) for n in names])


def test_validate_input_rejects_inconsistent_s3_movies_and_writes_nothing(s3_env, tmp_path):
    s3 = s3_env
    for i, frames in enumerate((4, 4, 3)):
        s3.put_object(Bucket="lake", Key=f"inputs/movies/m{i}.mrcs", Body=mrc_bytes(tmp_path, frames, 160, 192))
    s3.put_object(Bucket="lake", Key="inputs/movies/t.tiff", Body=tiff_bytes([(160, 192)] * 4))
    before = s3.list_objects_v2(Bucket="lake").get("KeyCount"), s3.list_objects_v2(Bucket="scratch").get("KeyCount")
    request = _s3_request()
    movies = [f"s3://lake/inputs/movies/m{i}.mrcs" for i in range(3)] + ["s3://lake/inputs/movies/t.tiff"]
    with pytest.raises(InputValidationError) as err:
        load_handler("validate_input")(_validate_event(request, movies))
    assert err.value.code == "inconsistent_movies" and "m2.mrcs is 3 x 160 x 192" in str(err.value)
    assert "\n" not in str(err.value)
    after = s3.list_objects_v2(Bucket="lake").get("KeyCount"), s3.list_objects_v2(Bucket="scratch").get("KeyCount")
    assert after == before
    s3.delete_object(Bucket="lake", Key="inputs/movies/m2.mrcs")  # the rest (TIFF included) agree
    planned = load_handler("validate_input")(_validate_event(request, movies[:2] + movies[3:]))
    assert planned["n_movies"] == 3


def test_read_range_is_one_ranged_get_and_empty_past_the_end(s3_env, tmp_path):
    s3_env.put_object(Bucket="lake", Key="inputs/x.bin", Body=bytes(range(100)))
    assert storage.read_range("s3://lake/inputs/x.bin", 10, 5) == bytes(range(10, 15))
    assert storage.read_range("s3://lake/inputs/x.bin", 98, 10) == bytes([98, 99])
    assert storage.read_range("s3://lake/inputs/x.bin", 500, 10) == b""
    local = tmp_path / "x.bin"
    local.write_bytes(bytes(range(100)))
    assert storage.read_range(str(local), 95, 10) == bytes(range(95, 100))
    with pytest.raises(ValueError):
        storage.read_range(str(local), -1, 10)
