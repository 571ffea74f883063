"""Movie headers read where the movies lie (S3 or a local file system) without their data:
what Validate Input checks before anything is written.

* MRC/MRCS: the 1,024-byte header, one ranged read per movie, parsed here in pure Python
  (the Lambda carries no ``mrcfile``): frames (``nz``), frame size, mode, pixel size.
* TIFF (classic and BigTIFF): the IFD chain, one image file directory per frame. Each read
  fetches a window of :data:`TIFF_WINDOW` bytes at an IFD, and the next IFD is parsed from
  that window when it lies there (writers that gather the IFDs cost one read in all;
  writers that put each IFD after its frame's strips cost one read per frame).

Then one more ranged read of one byte: the last byte of the data the header describes (MRC:
header, extended header and every frame; TIFF: the last page's strips or tiles). A movie cut
short (an interrupted upload or copy) has no such byte and is refused here, before the run
starts, rather than when preprocessing reaches it.

Movies are read :data:`MAX_CONCURRENCY` at a time. Every failure is one line with a code
(:class:`InputValidationError`): ``unreadable_movie`` for a header that is not a movie's,
``truncated_movie`` for a file shorter than its header says, ``inconsistent_movies`` when
frame counts or sizes differ, ``invalid_request`` when the box does not fit. This is the one
implementation of these checks: ``run-local``'s request
(:func:`foldstack.cryoem.request.check_movies`) reads its local files through it too.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from foldstack import storage
from foldstack.core.errors import InputValidationError

MRC_HEADER_BYTES = 1024
MRC_MODES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2, 101: 0.5}  # mode: bytes per voxel
TIFF_WINDOW = 64 * 1024
MAX_TIFF_PAGES = 10_000  # more IFDs than any movie has frames: a loop or a damaged chain
MAX_CONCURRENCY = 16  # ranged reads in flight (S3 serves thousands; a Lambda's sockets are the bound)
_WIDTH, _LENGTH = 256, 257
# where a page's pixel data lies: strips (offsets, byte counts), else tiles (the same pair)
_STRIP_OFFSETS, _STRIP_BYTES, _TILE_OFFSETS, _TILE_BYTES = 273, 279, 324, 325
_DATA_TAGS = (_STRIP_OFFSETS, _STRIP_BYTES, _TILE_OFFSETS, _TILE_BYTES)
_TYPE_SIZES = {3: 2, 4: 4, 16: 8}  # SHORT, LONG, LONG8: the integer types these tags use
_TYPE_FORMATS = {3: "H", 4: "I", 16: "Q"}

Reader = Callable[[str, int, int], bytes]


@dataclass(frozen=True)
class MovieInfo:
    """What a movie's header says."""

    uri: str
    frames: int
    ny: int
    nx: int
    pixel_size: float | None = None  # Å, MRC only, when the header records one
    data_end: int | None = None  # the byte offset where the data the header describes ends

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


def _unreadable(uri: str, why: str) -> InputValidationError:
    return InputValidationError(f"movie {uri.rsplit('/', 1)[-1]}: {why}", code="unreadable_movie")


def _not_mrc(uri: str, why: str) -> InputValidationError:
    return InputValidationError(f"movie {uri.rsplit('/', 1)[-1]} is not a readable MRC file ({why})",
                                code="unreadable_movie")


def parse_mrc_header(uri: str, header: bytes) -> MovieInfo:
    """An MRC2014 header (the first 1,024 bytes); either byte order (the machine stamp,
    else whichever order gives a plausible header)."""
    if len(header) < MRC_HEADER_BYTES:
        raise _not_mrc(uri, f"{len(header)} bytes, shorter than an MRC header ({MRC_HEADER_BYTES})")
    stamp = header[212:214]
    orders = ["<"] if stamp in (b"\x44\x44", b"\x44\x41") else [">"] if stamp == b"\x11\x11" else ["<", ">"]
    for order in orders:
        nx, ny, nz, mode = struct.unpack_from(order + "4i", header, 0)
        if mode in MRC_MODES and min(nx, ny, nz) > 0 and max(nx, ny) <= 1 << 17 and nz <= 1 << 16:
            break
    else:
        raise _not_mrc(uri, "its header gives no valid size and mode")
    mx = struct.unpack_from(order + "i", header, 28)[0]
    xlen = struct.unpack_from(order + "f", header, 40)[0]
    pixel = xlen / mx if mx > 0 and xlen > 0 else None
    extended = max(0, struct.unpack_from(order + "i", header, 92)[0])  # NSYMBT: extended header bytes
    # mode 101 packs two 4-bit values a byte, each row padded to a whole byte
    frame_bytes = ny * (nx + 1) // 2 if mode == 101 else ny * nx * int(MRC_MODES[mode])
    return MovieInfo(uri=uri, frames=nz, ny=ny, nx=nx, pixel_size=round(pixel, 4) if pixel else None,
                     data_end=MRC_HEADER_BYTES + extended + nz * frame_bytes)


class _Window:
    """Ranged reads of one file through a cached window (IFDs often lie together)."""

    def __init__(self, uri: str, read: Reader) -> None:
        self.uri, self.read, self.start, self.data, self.reads = uri, read, 0, b"", 0

    def get(self, offset: int, length: int) -> bytes:
        if not (self.start <= offset and offset + length <= self.start + len(self.data)):
            self.start, self.data = offset, self.read(self.uri, offset, max(length, TIFF_WINDOW))
            self.reads += 1
        out = self.data[offset - self.start:offset - self.start + length]
        if len(out) < length:
            raise _unreadable(self.uri, f"TIFF directory at byte {offset} runs past the end of the file")
        return out


def read_tiff_header(uri: str, read: Reader) -> MovieInfo:
    """Frames (IFDs) and frame size of a TIFF, every page the same size."""
    win = _Window(uri, read)
    head = win.data = read(uri, 0, TIFF_WINDOW)  # the header, and the first IFD when it comes first
    win.reads = 1
    if len(head) < 16 or head[:2] not in (b"II", b"MM"):
        raise _unreadable(uri, "not a TIFF file (no II/MM byte-order mark)")
    order = "<" if head[:2] == b"II" else ">"
    magic = struct.unpack_from(order + "H", head, 2)[0]
    if magic == 42:
        big, offset = False, struct.unpack_from(order + "I", head, 4)[0]
    elif magic == 43:
        big, offset = True, struct.unpack_from(order + "Q", head, 8)[0]
    else:
        raise _unreadable(uri, f"not a TIFF file (version {magic}, expected 42 or 43)")
    count_fmt, entry_size, value_fmt = ("Q", 20, "Q") if big else ("H", 12, "I")
    count_size, value_size = struct.calcsize(count_fmt), struct.calcsize(value_fmt)
    pages, size, seen = 0, None, set()
    data: dict[int, tuple[int, int, int]] = {}  # the last page's data tags: (type, count, value field's offset)
    while offset:
        if offset in seen or pages >= MAX_TIFF_PAGES:
            raise _unreadable(uri, f"TIFF directory chain loops or exceeds {MAX_TIFF_PAGES} pages")
        seen.add(offset)
        n = struct.unpack(order + count_fmt, win.get(offset, count_size))[0]
        body = win.get(offset + count_size, n * entry_size + value_size)
        dims: dict[int, int] = {}
        data = {}
        for i in range(n):
            tag, typ = struct.unpack_from(order + "HH", body, i * entry_size)
            if typ not in _TYPE_SIZES:
                continue
            at = i * entry_size + 4 + value_size  # the value field (one value always fits)
            if tag in (_WIDTH, _LENGTH):
                dims[tag] = struct.unpack_from(order + _TYPE_FORMATS[typ], body, at)[0]
            elif tag in _DATA_TAGS:
                count = struct.unpack_from(order + ("Q" if big else "I"), body, i * entry_size + 4)[0]
                data[tag] = (typ, count, offset + count_size + at)
        if _WIDTH not in dims or _LENGTH not in dims:
            raise _unreadable(uri, f"TIFF page {pages + 1} has no image width or length")
        page = (dims[_LENGTH], dims[_WIDTH])
        if size is not None and page != size:
            raise _unreadable(uri, f"TIFF page {pages + 1} is {page[1]} x {page[0]}, page 1 is {size[1]} x {size[0]}")
        size, pages = page, pages + 1
        offset = struct.unpack_from(order + value_fmt, body, n * entry_size)[0]
    if size is None:
        raise _unreadable(uri, "TIFF file has no pages")
    return MovieInfo(uri=uri, frames=pages, ny=size[0], nx=size[1],
                     data_end=_tiff_data_end(win, order, value_size, data))


def _tiff_values(win: _Window, order: str, value_size: int, entry: tuple[int, int, int]) -> list[int]:
    """The values of one IFD entry: in its value field when they fit, else where it points."""
    typ, count, field_at = entry
    if count > MAX_TIFF_PAGES * 64:  # strips or tiles per page; more is a damaged entry
        raise _unreadable(win.uri, f"TIFF entry with {count:,} values")
    fmt, width = order + _TYPE_FORMATS[typ] * count, _TYPE_SIZES[typ] * count
    if width <= value_size:
        return list(struct.unpack_from(fmt, win.get(field_at, value_size)))
    pointer = struct.unpack(order + ("Q" if value_size == 8 else "I"), win.get(field_at, value_size))[0]
    return list(struct.unpack(fmt, win.get(pointer, width)))


def _tiff_data_end(win: _Window, order: str, value_size: int, data: dict[int, tuple[int, int, int]]) -> int | None:
    """Where the last page's strips (or tiles) end; None for a page that names neither."""
    for offsets_tag, counts_tag in ((_STRIP_OFFSETS, _STRIP_BYTES), (_TILE_OFFSETS, _TILE_BYTES)):
        if offsets_tag in data and counts_tag in data:
            starts = _tiff_values(win, order, value_size, data[offsets_tag])
            lengths = _tiff_values(win, order, value_size, data[counts_tag])
            ends = [start + length for start, length in zip(starts, lengths, strict=False) if length > 0]
            return max(ends) if ends else None
    return None


def read_movie_header(uri: str, read: Reader | None = None) -> MovieInfo:
    """The header of one movie (by suffix: .tif/.tiff, else MRC); `read` (uri, start,
    length) -> bytes, default :func:`foldstack.storage.read_range`."""
    read = read or storage.read_range
    try:
        if uri.lower().endswith((".tif", ".tiff")):
            info = read_tiff_header(uri, read)
        else:
            info = parse_mrc_header(uri, read(uri, 0, MRC_HEADER_BYTES))
        if info.data_end is not None and len(read(uri, info.data_end - 1, 1)) != 1:
            raise InputValidationError(
                f"movie {info.name} is truncated: its header describes {info.frames} frames of {info.nx} x "
                f"{info.ny} ending at byte {info.data_end:,}, and the file is shorter", code="truncated_movie")
        return info
    except InputValidationError:
        raise
    except (OSError, struct.error) as exc:
        raise _unreadable(uri, f"cannot read its header: {exc}") from exc


def read_movie_headers(uris: Sequence[str], read: Reader | None = None,
                       max_workers: int = MAX_CONCURRENCY) -> list[MovieInfo]:
    """Every movie's header, at most `max_workers` reads at a time (in `uris`' order)."""
    if not uris:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(uris)))) as pool:
        return list(pool.map(lambda u: read_movie_header(u, read), uris))


def check_consistent(headers: Sequence[MovieInfo], box_size: int) -> MovieInfo:
    """One frame count (>= 2) and frame size for every movie, big enough for two boxes."""
    first = headers[0]
    if first.frames < 2:
        raise InputValidationError(f"movie {first.name} has {first.frames} frame(s); movies need >= 2",
                                   code="inconsistent_movies")
    for h in headers[1:]:
        if (h.frames, h.ny, h.nx) != (first.frames, first.ny, first.nx):
            raise InputValidationError(
                f"movie {h.name} is {h.frames} x {h.ny} x {h.nx} (frames x y x x), {first.name} is "
                f"{first.frames} x {first.ny} x {first.nx}; all movies must match", code="inconsistent_movies")
    if min(first.ny, first.nx) < 2 * box_size:
        raise InputValidationError(f"request field box_size={box_size}: micrographs ({first.nx} x {first.ny}) are "
                                   "too small", code="invalid_request")
    return first
