"""Local input files: checked without opening, read once, copied under ``<home>/inputs``.

Every local input must be a regular file. The check uses ``os.lstat``/``os.stat``, which
never open the file, so a FIFO cannot block and a device is never read; a missing file
or a dangling symbolic link is ``input_not_found``, anything but a regular file
``input_not_regular``. Files are then opened non-blocking and checked again on the open
descriptor (the path could have been swapped in between), read once, and served to
validation from memory. Like the cloud client's upload, each file is copied to
``<home>/inputs/<sha256[:16]>/<name>`` (content-addressed: an existing copy is reused
only if its checksum matches).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from foldstack import storage
from foldstack.core.errors import InputValidationError
from foldstack.core.request import InlineRecord

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))
_HINT = "give the path of a regular FASTA file"


@dataclass(frozen=True)
class LocalFile:
    item: str  # as given in the request
    path: str  # absolute (user spelling, links not resolved): what validation names
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def is_local(item: str | InlineRecord) -> bool:
    return isinstance(item, str) and not item.startswith("s3://")


def local_path(item: str) -> str:
    return os.path.abspath(os.path.expanduser(item.removeprefix("file://")))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_regular(path: str) -> None:
    """Raise a coded InputValidationError unless `path` is a regular file (or a link to
    one). Never opens the file."""
    try:
        link = os.lstat(path)
    except FileNotFoundError:
        raise InputValidationError(f"input {path} does not exist", code="input_not_found", hint=_HINT) from None
    except OSError as exc:
        raise InputValidationError(f"input {path} cannot be examined: {exc.strerror}", code="input_not_found",
                                   hint=_HINT) from None
    try:
        st = os.stat(path)
    except OSError:
        target = os.readlink(path) if stat.S_ISLNK(link.st_mode) else "?"
        raise InputValidationError(f"input {path} is a symbolic link to {target}, which does not exist",
                                   code="input_not_found", hint=_HINT) from None
    if not stat.S_ISREG(st.st_mode):
        raise InputValidationError(f"input {path} is {_kind(st.st_mode)}, not a file", code="input_not_regular",
                                   hint=_HINT)


def read_inputs(inputs: Sequence[str | InlineRecord], max_bytes: int) -> list[LocalFile]:
    """Check every local input first (nothing is opened until all pass), then read each
    (at most `max_bytes` + 1 bytes: validation reports a larger file as too large)."""
    items = [i for i in inputs if is_local(i)]
    for item in items:
        check_regular(local_path(str(item)))
    files = []
    for item in items:
        path = local_path(str(item))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise InputValidationError(f"input {path} cannot be read: {exc.strerror}", code="input_not_found",
                                       hint=_HINT) from None
        with os.fdopen(fd, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if not stat.S_ISREG(mode):  # replaced since the check
                raise InputValidationError(f"input {path} is {_kind(mode)}, not a file", code="input_not_regular",
                                           hint=_HINT)
            data = fh.read(max_bytes + 1)
        files.append(LocalFile(str(item), path, data))
    return files


def copy_path(dest: Path, file: LocalFile) -> Path:
    return dest / file.sha256[:16] / Path(file.path).name


def store_inputs(files: Sequence[LocalFile], dest: Path) -> None:
    """Copy each file to its content-addressed place (kept if already complete)."""
    for file in files:
        target = copy_path(dest, file)
        if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == file.sha256:
            continue
        storage.write_bytes(str(target), file.data)
