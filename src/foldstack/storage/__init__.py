"""One small interface over `s3://` (boto3) and local paths.

read, atomic write, copy (server-side on S3, multipart above 5 GB via boto3's managed
transfer), list, delete a prefix. Callers build keys with `core.uris.join_under`, and
`delete_prefix`/`list_prefix` refuse to act on a bucket root, so nothing outside a run's
prefix is ever touched.

Publishing a whole directory or prefix so that it appears complete or not at all
(:func:`publish`), and replacing a small pointer file such as ``CURRENT`` atomically
(:func:`write_pointer`), live in :mod:`foldstack.storage.publishing` and are re-exported
here. They call the functions of this module through the package (``storage.copy``,
``storage.write_bytes``...), so there is one place to patch or instrument them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from foldstack.core.errors import InputValidationError
from foldstack.core.uris import StorageURI, join_under, parse_uri

MULTIPART_THRESHOLD = 5 * 1024**3  # S3 CopyObject's single-request limit


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    uri: str
    size: int
    modified: float | None = None  # seconds since the epoch (S3 LastModified, local mtime)


@functools.lru_cache(maxsize=1)
def _s3():
    import boto3
    from botocore.config import Config

    # standard mode retries throttling and 5xx with backoff, and nothing else.
    return boto3.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 5}))


def reset_clients() -> None:
    """Forget cached boto3 clients (tests switch credentials/endpoints between cases)."""
    _s3.cache_clear()


def safe_join(base: str, *parts: str) -> str:
    """`join_under`, and for local paths also refuse any symbolic link between `base` and
    the result: scratch is shared, and a planted link must not redirect reads or writes."""
    uri = join_under(base, *parts)
    u = parse_uri(uri)
    if u.is_s3:
        return uri
    root = os.path.realpath(parse_uri(base).key)
    current = Path(root)
    for part in "/".join(parts).split("/"):
        current = current / part
        if current.is_symlink():
            raise InputValidationError(f"refusing to follow a symbolic link: {current}", code="unsafe_uri")
    return str(Path(root, *"/".join(parts).split("/")))


def _require_prefix(u: StorageURI, what: str) -> None:
    if (u.is_s3 and not u.key.strip("/")) or (not u.is_s3 and u.key in ("/", "")):
        raise InputValidationError(f"refusing to {what} a bucket or filesystem root: {u}", code="unsafe_uri")


def read_bytes(uri: str, *, max_bytes: int | None = None) -> bytes:
    u = parse_uri(uri)
    if u.is_s3:
        from botocore.exceptions import ClientError

        extra = {"Range": f"bytes=0-{max_bytes}"} if max_bytes is not None else {}
        try:
            return _s3().get_object(Bucket=u.bucket, Key=u.key, **extra)["Body"].read()
        except ClientError as exc:
            if extra and exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""  # a Range on an empty object: the object is empty
            raise
    with open(u.key, "rb") as fh:
        return fh.read(max_bytes + 1 if max_bytes is not None else -1)


def read_range(uri: str, start: int, length: int) -> bytes:
    """`length` bytes from offset `start` (fewer at the end of the object; none past it):
    one ranged GET on S3, so a reader of file headers never downloads the data."""
    if start < 0 or length <= 0:
        raise ValueError(f"read_range({uri!r}, {start}, {length}): expected start >= 0 and length > 0")
    u = parse_uri(uri)
    if u.is_s3:
        from botocore.exceptions import ClientError

        try:
            body = _s3().get_object(Bucket=u.bucket, Key=u.key, Range=f"bytes={start}-{start + length - 1}")["Body"]
            return body.read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""  # the range starts past the end of the object
            raise
    with open(u.key, "rb") as fh:
        fh.seek(start)
        return fh.read(length)


def size(uri: str) -> int:
    u = parse_uri(uri)
    if u.is_s3:
        return int(_s3().head_object(Bucket=u.bucket, Key=u.key)["ContentLength"])
    return os.stat(u.key).st_size


def exists(uri: str) -> bool:
    u = parse_uri(uri)
    if not u.is_s3:
        return os.path.lexists(u.key)
    from botocore.exceptions import ClientError

    try:
        _s3().head_object(Bucket=u.bucket, Key=u.key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def write_bytes(
    uri: str, data: bytes, *, content_type: str = "application/octet-stream", metadata: dict[str, str] | None = None
) -> None:
    """Atomic: readers see the old object or the new one, never a partial file.
    `metadata` (S3 only) becomes x-amz-meta-* headers, e.g. FSx POSIX ownership."""
    u = parse_uri(uri)
    if u.is_s3:
        _s3().put_object(Bucket=u.bucket, Key=u.key, Body=data, ContentType=content_type, Metadata=metadata or {})
        return
    write_stream(u.key, (data,))


def write_stream(path: Path | str, chunks: Iterable[bytes]) -> None:
    """Write a local file atomically from `chunks`: a temp file beside it (same directory,
    hidden, unique name), fsync, then `os.replace`. Readers see the old file or the complete
    new one; a failure removes the temp file and leaves the old file as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_directory(uri: str, *, metadata: dict[str, str] | None = None) -> None:
    """A directory: locally mkdir; on S3 a `key/` marker object, which FSx for Lustre
    imports as a directory with the POSIX metadata it carries."""
    u = parse_uri(uri)
    if u.is_s3:
        _s3().put_object(Bucket=u.bucket, Key=u.key.rstrip("/") + "/", Body=b"", Metadata=metadata or {})
    else:
        Path(u.key).mkdir(parents=True, exist_ok=True)


def copy(src: str, dst: str, *, metadata: dict[str, str] | None = None) -> None:
    """Copy one object/file. S3→S3 is server-side; S3↔local streams; local→local copies.
    `metadata` (S3 destinations only) replaces the object's x-amz-meta-* headers."""
    s, d = parse_uri(src), parse_uri(dst)
    extra = {"Metadata": metadata, "MetadataDirective": "REPLACE"} if metadata else None
    if s.is_s3 and d.is_s3:
        from boto3.s3.transfer import TransferConfig

        _s3().copy(
            {"Bucket": s.bucket, "Key": s.key}, d.bucket, d.key, ExtraArgs=extra,
            Config=TransferConfig(multipart_threshold=MULTIPART_THRESHOLD),
        )
    elif s.is_s3:
        path = Path(d.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        _s3().download_file(s.bucket, s.key, str(tmp))
        os.replace(tmp, path)
    elif d.is_s3:
        _s3().upload_file(s.key, d.bucket, d.key, ExtraArgs={"Metadata": metadata} if metadata else None)
    else:
        if os.path.islink(s.key):
            raise InputValidationError(f"refusing to copy a symbolic link: {src}", code="unsafe_uri")
        path = Path(d.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        shutil.copyfile(s.key, tmp, follow_symlinks=False)
        os.replace(tmp, path)


def list_prefix(prefix: str) -> Iterator[ObjectInfo]:
    """Every object under `prefix` (recursively), paginating fully; symlinks are skipped."""
    u = parse_uri(prefix)
    _require_prefix(u, "list")
    if u.is_s3:
        key = u.key.rstrip("/") + "/"
        for page in _s3().get_paginator("list_objects_v2").paginate(Bucket=u.bucket, Prefix=key):
            for obj in page.get("Contents", []):
                stamp = obj.get("LastModified")
                yield ObjectInfo(f"s3://{u.bucket}/{obj['Key']}", int(obj["Size"]),
                                 stamp.timestamp() if stamp is not None else None)
        return
    root = Path(u.key)
    if root.is_symlink() or not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                st = os.stat(path)
                yield ObjectInfo(path, st.st_size, st.st_mtime)


def delete(uri: str) -> None:
    """Delete one object/file if it exists (a local symbolic link is removed, never followed)."""
    u = parse_uri(uri)
    if u.is_s3:
        _require_prefix(u, "delete")
        _s3().delete_object(Bucket=u.bucket, Key=u.key)
        return
    path = Path(u.key)
    if path.is_dir() and not path.is_symlink():
        raise IsADirectoryError(f"{uri} is a directory (use delete_prefix)")
    path.unlink(missing_ok=True)


def delete_prefix(prefix: str) -> int:
    """Delete everything under `prefix`; returns the number of objects/files removed.

    Locally, symbolic links are removed as links and never followed.
    """
    u = parse_uri(prefix)
    _require_prefix(u, "delete")
    if u.is_s3:
        removed = 0
        batch: list[dict[str, str]] = []
        for info in list_prefix(prefix):
            batch.append({"Key": parse_uri(info.uri).key})
            if len(batch) == 1000:
                _s3().delete_objects(Bucket=u.bucket, Delete={"Objects": batch, "Quiet": True})
                removed, batch = removed + len(batch), []
        if batch:
            _s3().delete_objects(Bucket=u.bucket, Delete={"Objects": batch, "Quiet": True})
            removed += len(batch)
        return removed
    root = Path(u.key)
    if root.is_symlink():
        root.unlink()
        return 1
    if not root.exists():
        return 0
    count = sum(len(files) for _, _, files in os.walk(root, followlinks=False))
    shutil.rmtree(root)  # rmtree unlinks symlinks inside the tree without following them
    return count


def delete_prefix_except(prefix: str, keep: Iterable[str] = (), *, modified_before: float | None = None) -> int:
    """Delete everything under `prefix` except what lies under ``<prefix>/<k>/`` for each
    relative folder `k` in `keep` and, with `modified_before` (seconds since the epoch),
    except objects modified at or after it; returns the number of objects/files removed.

    On S3 one listing and batched deletes (1000 keys a request); the directory marker
    objects of kept folders and of their parents (``<prefix>/``, ``<prefix>/msa/``...) stay,
    so a file system linked to the bucket keeps their ownership. Locally the tree is
    walked without following symbolic links (a link is removed as a link, and a kept
    folder that is a link is not kept), then emptied folders are removed."""
    kept = {k.strip("/") for k in keep if k.strip("/")}
    if not kept and modified_before is None:
        return delete_prefix(prefix)
    u = parse_uri(prefix)
    _require_prefix(u, "delete")
    parents = {"/".join(k.split("/")[:i]) for k in kept for i in range(len(k.split("/")))}

    def doomed(rel: str, modified: float | None) -> bool:
        if any(rel.startswith(f"{k}/") for k in kept):
            return False
        if modified_before is not None and (modified is None or modified >= modified_before):
            return False
        return not ((rel == "" or rel.endswith("/")) and rel.rstrip("/") in parents | kept)  # a folder marker

    if u.is_s3:
        base = u.key.rstrip("/") + "/"
        keys = [parse_uri(info.uri).key for info in list_prefix(prefix)
                if doomed(parse_uri(info.uri).key[len(base):], info.modified)]
        for i in range(0, len(keys), 1000):
            _s3().delete_objects(Bucket=u.bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]],
                                                          "Quiet": True})
        return len(keys)
    root = Path(u.key)
    if root.is_symlink():
        root.unlink()
        return 1
    removed = 0
    folders = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        rel = here.relative_to(root).as_posix() if here != root else ""
        if rel in kept:
            dirnames[:] = []
            continue
        folders.append(here)
        links = [d for d in dirnames if (here / d).is_symlink()]
        dirnames[:] = [d for d in dirnames if d not in links]
        for name in [*filenames, *links]:
            path = here / name
            if doomed(f"{rel}/{name}" if rel else name, path.lstat().st_mtime):
                path.unlink()
                removed += 1
    for folder in reversed(folders):  # deepest first; a folder something was kept in stays
        if folder != root or not kept:
            with contextlib.suppress(OSError):
                folder.rmdir()
    return removed


# Re-exported last: publishing.py calls the functions above through this package.
from foldstack.storage.publishing import (  # noqa: E402
    Publication,
    PublishConflictError,
    is_published,
    publish,
    read_pointer,
    remove_partials,
    write_pointer,
)

__all__ = [
    "MULTIPART_THRESHOLD", "ObjectInfo", "Publication", "PublishConflictError", "copy", "delete", "delete_prefix",
    "delete_prefix_except",
    "exists", "is_published", "list_prefix", "make_directory", "publish", "read_bytes", "read_pointer",
    "remove_partials", "reset_clients", "safe_join", "size", "write_bytes", "write_pointer", "write_stream",
]
