"""MRC/MRCS/TIFF I/O through ``mrcfile`` (and header-only reads for validation)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foldstack.core.errors import DamagedFileError

MOVIE_SUFFIXES = (".mrc", ".mrcs", ".tif", ".tiff")


@dataclass(frozen=True)
class MovieHeader:
    path: Path
    frames: int
    ny: int
    nx: int
    pixel_size: float | None  # Å, from the header when it records one


def read_mrc(path: Path | str) -> np.ndarray:
    import mrcfile

    try:
        with mrcfile.open(path, permissive=False) as mrc:
            return np.array(mrc.data, dtype=np.float32)
    except (OSError, ValueError) as exc:
        raise DamagedFileError(f"cannot read MRC {path}: {exc}", path=path) from exc


def write_mrc(path: Path | str, data: np.ndarray, pixel_size: float) -> Path:
    import mrcfile

    path = Path(path)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(data, dtype=np.float32))
        mrc.voxel_size = pixel_size
        if path.suffix == ".mrcs" and data.ndim == 3:
            mrc.set_image_stack()
        # mrcfile labels new files with the time; a fixed label keeps outputs reproducible
        mrc.header.label[0] = b"foldstack".ljust(80)
        mrc.header.nlabl = 1
    return path


def movie_header(path: Path) -> MovieHeader:
    """Frames and size from the header (MRC) or the page count (TIFF), without the data."""
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return _tiff_header(path)
    import mrcfile

    try:
        with mrcfile.mmap(path, mode="r", permissive=False) as mrc:
            nx, ny, nz = int(mrc.header.nx), int(mrc.header.ny), int(mrc.header.nz)
            voxel = float(mrc.voxel_size.x)
    except (OSError, ValueError) as exc:
        raise DamagedFileError(f"movie {path} is not a readable MRC file: {exc}", path=path) from exc
    return MovieHeader(path=path, frames=nz, ny=ny, nx=nx, pixel_size=voxel or None)


def _tiff_header(path: Path) -> MovieHeader:
    try:
        from PIL import Image
    except ImportError as exc:  # Pillow comes with matplotlib
        raise DamagedFileError(f"cannot read TIFF {path}: Pillow is not installed", path=path) from exc
    try:
        with Image.open(path) as img:
            nx, ny = img.size
            frames = getattr(img, "n_frames", 1)
    except OSError as exc:
        raise DamagedFileError(f"movie {path} is not a readable TIFF: {exc}", path=path) from exc
    return MovieHeader(path=path, frames=int(frames), ny=int(ny), nx=int(nx), pixel_size=None)
