"""Database refresh: unpacking a verified download (``tar``, ``tar.gz``, ``tar.zst``,
``gz``, ``zst``) inside the version's staging directory. Tar members may only be regular
files and directories landing inside it: links, devices, absolute or ``..`` paths, hidden
names and a top-level ``manifest.json`` are refused. ``.zst`` needs the ``zstandard``
package or the ``zstd`` binary (Debian ``zstd``)."""

from __future__ import annotations

import contextlib
import gzip
import os
import posixpath
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from foldstack.core.errors import BadInputError
from foldstack.steps.catalogue import ARCHIVE_FORMATS

_CHUNK = 1 << 20

# (suffix, format), longest first: what `unpack` recognises.
ARCHIVE_SUFFIXES = ((".tar.gz", "tar.gz"), (".tgz", "tar.gz"), (".tar.zst", "tar.zst"), (".tar", "tar"),
                    (".gz", "gz"), (".zst", "zst"))


def archive_format(name: str) -> str | None:
    """The archive format `unpack` gives a file of this name, or None (kept as it is)."""
    for suffix, fmt in ARCHIVE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return fmt
    return None


@contextlib.contextmanager
def _zstd_stream(path: Path) -> Iterator[IO[bytes]]:
    """A decompressing stream of a .zst file: the ``zstandard`` package if installed, else
    the ``zstd`` binary (Debian ``zstd``)."""
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        zstandard = None
    if zstandard is not None:
        with open(path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as stream:
            yield stream
        return
    binary = shutil.which("zstd")
    if binary is None:
        raise BadInputError(f"{path.name}: unpacking .zst needs the zstandard package or the zstd binary")
    import subprocess  # nosec B404 - fixed argv

    proc = subprocess.Popen([binary, "-d", "-c", "-q", str(path)], stdout=subprocess.PIPE,  # nosec B603
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        yield proc.stdout
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.wait() != 0:
            raise BadInputError(f"{path.name}: zstd -d failed: {err[-500:]}")


@contextlib.contextmanager
def _decompressed(path: Path, codec: str) -> Iterator[IO[bytes]]:
    if codec == "gz":
        with gzip.open(path, "rb") as f:
            yield f
    elif codec == "zst":
        with _zstd_stream(path) as f:
            yield f
    else:
        with open(path, "rb") as f:
            yield f


def _member_rel(archive: str, name: str) -> str:
    """A tar member's path inside the version dir; refuses anything that could land
    outside it (absolute, ``..``) or replace the manifest."""
    rel = name
    while rel.startswith("./"):
        rel = rel[2:]
    rel = rel.rstrip("/")
    parts = rel.split("/")
    if not rel or name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in rel \
            or "\x00" in rel or any(p.startswith(".") for p in parts) or rel == "manifest.json":
        raise BadInputError(f"{archive}: refusing member {name!r} (absolute, '..', hidden or manifest.json: "
                            "it would land outside the database version or replace its manifest)")
    return rel


def _untar(path: Path, dest: Path, codec: str) -> list[str]:
    import tarfile

    names: list[str] = []
    links: list[tarfile.TarInfo] = []
    root = dest.resolve()
    with _decompressed(path, codec) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if member.isdir() and member.name.strip("/") in (".", ""):
                continue  # the archive's own top directory ("./")
            if member.isdir():
                rel = _member_rel(path.name, member.name)
                (dest / rel).mkdir(parents=True, exist_ok=True)
                continue
            if member.issym() or member.islnk():  # resolved once every regular file is out (below)
                links.append(member)
                continue
            if not member.isfile():  # device, fifo: never
                raise BadInputError(f"{path.name}: refusing member {member.name!r}: a special file "
                                    f"(only regular files and directories are unpacked)")
            rel = _member_rel(path.name, member.name)
            target = dest / rel
            if not target.parent.resolve().is_relative_to(root) or target.exists() or target == path:
                raise BadInputError(f"{path.name}: refusing member {member.name!r} (outside the version dir, "
                                    "or a file that is already there)")
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(member)
            assert src is not None
            with src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
            names.append(rel)
    return names + _materialise_links(path.name, links, dest, set(names))


def _materialise_links(archive: str, links: list[Any], dest: Path, files: set[str]) -> list[str]:
    """Links of the archive, each as a hard link to (else a copy of) the regular file of the
    same archive it names: MMseqs2's ``aliasdb`` leaves such links (ColabFold's profile
    databases: ``<prefix>_seq_h`` -> ``<prefix>_h``). A link to anything else (outside the
    archive, absolute, missing) is refused; nothing is ever unpacked as a link."""
    made: list[str] = []
    pending = list(links)
    while pending:
        progress = False
        for member in list(pending):
            rel = _member_rel(archive, member.name)
            if member.issym():
                wanted = posixpath.normpath(posixpath.join(posixpath.dirname(rel), member.linkname))
            else:  # a hard link names its file from the archive's root
                wanted = posixpath.normpath(member.linkname)
            source = wanted if wanted in files and not member.linkname.startswith("/") else None
            if source is None:
                continue
            target = dest / rel
            if target.exists() or target.is_symlink():
                raise BadInputError(f"{archive}: refusing member {member.name!r} (a file that is already there)")
            target.parent.mkdir(parents=True, exist_ok=True)  # an archive need not list a link's directory
            try:
                os.link(dest / source, target)
            except OSError:
                shutil.copyfile(dest / source, target)
            files.add(rel)
            made.append(rel)
            pending.remove(member)
            progress = True
        if not progress:
            member = pending[0]
            raise BadInputError(f"{archive}: refusing member {member.name!r}: a link to {member.linkname!r} "
                                "(only regular files, directories and links to a regular file of the same "
                                "archive are unpacked)")
    return made


def unpack_archive(path: Path, dest: Path, fmt: str | None = None) -> list[str]:
    """Unpack `path` (a verified download inside `dest`) into `dest` and delete it; return
    the files it produced (relative to `dest`). ``tar``, ``tar.gz``, ``tar.zst`` hold
    regular files and directories only (devices, absolute or ``..`` paths are refused; a
    link becomes a hard link to or copy of the archive's own file it names, any other link is
    refused); ``gz`` / ``zst`` decompress to the name without the suffix."""
    fmt = fmt or archive_format(path.name)
    if fmt not in ARCHIVE_FORMATS:
        raise BadInputError(f"{path.name}: not an archive this step unpacks ({', '.join(ARCHIVE_FORMATS)})")
    if fmt.startswith("tar"):
        codec = fmt.partition(".")[2]
        names = _untar(path, dest, codec)
    else:
        target = path.with_name(path.name[: -len("." + fmt)])
        if target.exists():
            raise BadInputError(f"{path.name}: unpacking would replace {target.name}")
        with _decompressed(path, fmt) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
        names = [str(target.relative_to(dest))]
    path.unlink()
    return names
