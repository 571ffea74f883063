"""Storage URIs (`s3://bucket/key` or local paths) and prefix containment.

Every key or path foldstack builds from user input goes through `join_under` or
`require_under`, so nothing can escape the prefix it was meant for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import PurePosixPath

from foldstack.core.errors import AccessDeniedError, InputValidationError


@dataclass(frozen=True, slots=True)
class StorageURI:
    scheme: str  # "s3" or "file"
    bucket: str  # empty for local paths
    key: str  # S3 key, or absolute POSIX path for local

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.scheme == "s3" else self.key

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"


def _check_segments(path: str, original: str) -> None:
    for bad in ("\x00", "\\"):
        if bad in path:
            raise InputValidationError(f"{original!r} contains {bad!r}", code="unsafe_uri")
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise InputValidationError(f"{original!r} contains a control character", code="unsafe_uri")
    for segment in path.split("/"):
        if segment in (".", ".."):
            raise InputValidationError(f"{original!r} contains a '{segment}' segment", code="unsafe_uri")
        if "%2e" in segment.lower() or "%2f" in segment.lower() or "%00" in segment:
            raise InputValidationError(f"{original!r} contains an encoded dot or slash", code="unsafe_uri")


def parse_uri(uri: str) -> StorageURI:
    """Parse `s3://bucket/key`, `file:///abs/path` or an absolute/relative local path."""
    if not isinstance(uri, str) or not uri:
        raise InputValidationError("empty URI", code="unsafe_uri")
    if uri.startswith("s3://"):
        bucket, _, key = uri[5:].partition("/")
        if not bucket or not all(c.isalnum() or c in "-." for c in bucket):
            raise InputValidationError(f"{uri!r} has no valid bucket name", code="unsafe_uri")
        if "//" in key:
            raise InputValidationError(f"{uri!r} contains an empty path segment", code="unsafe_uri")
        _check_segments(key, uri)
        return StorageURI("s3", bucket, key)
    if "://" in uri and not uri.startswith("file://"):
        raise InputValidationError(
            f"{uri!r}: unsupported scheme", code="unsupported_scheme", hint="use s3:// or a local path"
        )
    path = uri[7:] if uri.startswith("file://") else uri
    _check_segments(path, uri)
    return StorageURI("file", "", os.path.abspath(path))


def join_under(base: str, *parts: str) -> str:
    """Join relative parts under `base`, refusing anything that would leave it."""
    root = parse_uri(base)
    for part in parts:
        if not part or part.startswith("/") or "//" in part:
            raise InputValidationError(f"path part {part!r} is empty, absolute or has an empty segment",
                                       code="unsafe_uri")
        _check_segments(part, part)
    rel = "/".join(p.strip("/") for p in parts)
    if root.is_s3:
        key = f"{root.key.rstrip('/')}/{rel}" if root.key else rel
        return f"s3://{root.bucket}/{key}"
    return str(PurePosixPath(root.key, rel))


def is_under(uri: str, prefix: str) -> bool:
    """True if `uri` equals `prefix` or lies below it (segment-wise, no symlink tricks)."""
    a, p = parse_uri(uri), parse_uri(prefix)
    if a.scheme != p.scheme or a.bucket != p.bucket:
        return False
    if a.is_s3:
        pk = p.key.rstrip("/")
        return not pk or a.key == pk or a.key.startswith(pk + "/")
    real_a, real_p = os.path.realpath(a.key), os.path.realpath(p.key)
    return real_a == real_p or real_a.startswith(real_p.rstrip("/") + "/")


def require_under(uri: str, prefixes: list[str] | tuple[str, ...], *, what: str) -> str:
    """Return `uri` if it lies under one of `prefixes`, else raise AccessDeniedError."""
    if any(is_under(uri, p) for p in prefixes):
        return uri
    allowed = ", ".join(prefixes) or "(none configured)"
    raise AccessDeniedError(
        f"{what} {uri!r} is outside the allowed prefixes: {allowed}", uri=uri, allowed=list(prefixes)
    )
