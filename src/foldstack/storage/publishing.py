"""Publishing a set of files so that it appears complete or not at all.

One primitive for everything foldstack publishes as a whole: a run's results, a
database version, model weights, an MMseqs2 index. And :func:`write_pointer` for the
small files that name what is current (``CURRENT``) or record a run's state::

    with storage.publish(dest, marker="manifest.json") as pub:
        pub.put("t1/ranked_0.pdb", data)
        pub.put_file("big.bin", local_path)
        pub.put("manifest.json", manifest)   # the marker: on S3 it is written last
    # leaving the block commits; an exception rolls back and propagates

:class:`Publication` can also be driven by hand (``open``/``put``/``commit``/``abort``).
``marker`` names the file whose presence says "this publish is complete". Locally it may
be ``None``: then any existing destination directory counts as complete; on S3 a marker
is required (it is the only way a reader can tell).

Local destination (a directory)
-------------------------------
Everything is written into a private hidden sibling, ``.<name>.partial-<tag><hex>`` on
the same file system (``put``, or the caller's own tools writing into
:meth:`Publication.local_dir`). ``commit`` checks the marker is there and renames the
sibling to ``<name>``. At any moment a reader of ``dest`` sees one of:

* nothing (never published);
* the earlier directory, unchanged;
* the complete new directory, marker included.

Never a partly written directory. If ``dest`` already exists at commit:

* incomplete (no marker: an earlier crashed or hand-made attempt) — replaced;
* complete and ``replace=False`` — :class:`PublishConflictError`; our staging directory
  is deleted, ``dest`` is not touched;
* complete and ``replace=True`` — replaced.

Replacing is a swap: ``dest`` is renamed to ``.<name>.stale-<hex>``, the new directory is
renamed to ``dest``, then the stale one is deleted. Between the two renames (two system
calls, no copying) ``dest`` is briefly absent; it never holds a mixture of old and new.
A symbolic link or a non-directory at ``dest`` is refused, never followed or replaced.
Files written with ``put`` are fsynced, and the parent directory is fsynced after the
rename.

A failure deletes the staging directory and leaves ``dest`` as it was. A process killed
mid-way leaves at most hidden ``.<name>.partial-*`` / ``.<name>.stale-*`` siblings (never
a partial ``dest``); :func:`remove_partials` deletes them.

S3 destination (a prefix)
-------------------------
S3 has no rename, so objects are written under their final keys and the marker last; a
``put`` of the marker is held back until ``commit``. A reader must treat the prefix as
published only once the marker exists: S3 is strongly consistent, so once the marker is
visible every object written before it is visible with its final content. Before that a
LIST may show some of the new objects, with nothing marking them complete.

``open`` (the first ``put``, or entering the ``with`` block) looks at the prefix first:

* marker present, ``replace=False`` — :class:`PublishConflictError` before anything is
  written: a complete publish is never touched;
* marker present, ``replace=True`` — the marker is deleted first (the old publish is
  withdrawn: readers see "not published", never the old marker over new objects), then
  the rest of the prefix;
* no marker — leftovers of an earlier failed attempt are deleted, so the committed prefix
  holds exactly this publish's objects.

A failure deletes the prefix again (what this publish wrote) and re-raises, unless a
marker written by someone else has appeared meanwhile. A marker whose PutObject raised
but in fact succeeded is deleted as well: the caller saw the publish fail. A process
killed mid-way leaves objects without a marker: incomplete, and removed by the next
publish to the prefix or by :func:`remove_partials`.

Concurrent publishers of one destination
----------------------------------------
Locally each publisher stages privately and the rename at commit decides. With
``replace=False`` the first commit wins; a later one raises :class:`PublishConflictError`
and deletes only its own staging directory (the winner's directory is never touched).
With ``replace=True`` every commit swaps atomically: the last one wins, and a reader sees
one complete version or the other.

On S3 no atomic compare-and-swap is used, so callers serialise the publishers of one
prefix (collect: one per run id; the database refresh: one job per database version).
The primitive still refuses to publish over a marker it finds when it opens or just
before it writes its own (:class:`PublishConflictError`, deleting nothing), but two
publishers writing at the same time can overwrite each other's objects under the same
keys.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from pathlib import Path
from types import TracebackType

from foldstack import storage as _storage
from foldstack.core.errors import InputValidationError
from foldstack.core.uris import join_under, parse_uri

PARTIAL = ".partial-"
STALE = ".stale-"
_RENAME_TRIES = 5


class PublishConflictError(FileExistsError):
    """The destination already holds a complete publish and ``replace`` was not asked for
    (or another publisher completed it first). Nothing of it was changed."""


def partial_prefix(name: str, tag: str = "") -> str:
    """The name prefix of a local publish's staging directories: ``.<name>.partial-<tag>``."""
    return f".{name}{PARTIAL}{tag}"


def _uri(dest: str | os.PathLike[str]) -> str:
    return os.fspath(dest)


def is_published(dest: str | os.PathLike[str], *, marker: str | None = "manifest.json") -> bool:
    """Whether `dest` holds a complete publish (its marker exists; with no marker: it exists)."""
    uri = _uri(dest)
    if marker is None:
        return _storage.exists(uri) if not parse_uri(uri).is_s3 else any(True for _ in _storage.list_prefix(uri))
    return _storage.exists(join_under(uri, marker))


class Publication:
    """One publish of `dest`; see the module docstring for what readers can observe.

    ``tag`` goes into local staging names (``.<name>.partial-<tag><hex>``) so a cleanup
    job can find the leftovers of one run."""

    def __init__(self, dest: str | os.PathLike[str], *, marker: str | None = "manifest.json",
                 replace: bool = False, tag: str = "") -> None:
        self.dest = _uri(dest)
        self.marker = marker
        self.replace = replace
        u = parse_uri(self.dest)
        self.is_local = not u.is_s3
        if marker is not None:
            join_under(self.dest, marker)  # a relative path below dest, or refused
        self.committed = False
        self.removed_stale = 0  # S3: objects of an earlier, incomplete (or replaced) publish deleted by open
        self._opened = False
        self._marker_attempted = False
        self._held: tuple[str, bytes | Path, str] | None = None  # S3: the marker, written at commit
        if self.is_local:
            final = Path(u.key)
            if not final.name or final.parent == final:
                raise InputValidationError(f"refusing to publish to a filesystem root: {self.dest}", code="unsafe_uri")
            self._final = final
            self._staging = final.with_name(f"{partial_prefix(final.name, tag)}{uuid.uuid4().hex[:12]}")
        else:
            _storage._require_prefix(u, "publish to")
            if marker is None:
                raise ValueError(f"publishing to S3 ({self.dest}) needs a marker: it is what makes a prefix complete")
            self._marker_uri = join_under(self.dest, marker)

    # ------------------------------------------------------------------ writing

    def open(self) -> Publication:
        """Check the destination (and on S3 clear leftovers); idempotent. `put` calls it."""
        if self._opened:
            return self
        if self.is_local:
            self._refuse_odd_local_dest()
            if not self.replace and self._local_complete():
                raise PublishConflictError(f"{self.dest} is already published (pass replace=True to replace it)")
            self._final.parent.mkdir(parents=True, exist_ok=True)
        else:
            complete = _storage.exists(self._marker_uri)
            if complete and not self.replace:
                raise PublishConflictError(f"{self.dest} is already published (pass replace=True to replace it)")
            if complete:
                _storage.delete(self._marker_uri)  # first: the old publish is withdrawn whole
                self.removed_stale += 1
            self.removed_stale += _storage.delete_prefix(self.dest)
        self._opened = True
        return self

    def local_dir(self, *, create: bool = True) -> Path:
        """The private staging directory of a local publish, for callers whose tools write
        files themselves (it becomes `dest` on commit). `create=False` leaves creating it
        to the caller."""
        if not self.is_local:
            raise ValueError(f"{self.dest} is on S3: there is no local directory to write into")
        self.open()
        if create:
            self._staging.mkdir(exist_ok=True)
        return self._staging

    def _target(self, relpath: str) -> str:
        if self.is_local:
            return join_under(str(self._staging), relpath)
        return join_under(self.dest, relpath)

    def put(self, relpath: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Write `data` to `<dest>/<relpath>` as part of this publish."""
        self.open()
        target = self._target(relpath)
        if not self.is_local and self._is_marker(relpath):
            self._held = (target, data, content_type)
            return
        _storage.write_bytes(target, data, content_type=content_type)

    def put_file(self, relpath: str, path: str | os.PathLike[str]) -> None:
        """Copy the local file `path` to `<dest>/<relpath>` (an upload on S3)."""
        self.open()
        target = self._target(relpath)
        if not self.is_local and self._is_marker(relpath):
            self._held = (target, Path(path), "")
            return
        _storage.copy(os.fspath(path), target)

    def _is_marker(self, relpath: str) -> bool:
        return self.marker is not None and relpath.strip("/") == self.marker.strip("/")

    # ------------------------------------------------------------------ commit / abort

    def commit(self) -> None:
        """Make the publish visible (see the module docstring); on failure roll back and
        re-raise. Committing twice is a no-op."""
        if self.committed:
            return
        self.open()
        try:
            if self.is_local:
                self._commit_local()
            else:
                self._commit_s3()
        except BaseException:
            self.abort()
            raise
        self.committed = True

    def abort(self) -> None:
        """Roll back: delete what this publish wrote. Never deletes a complete publish that
        is not this one's; after a successful commit it does nothing."""
        if self.committed:
            return
        self._held = None
        if self.is_local:
            if self._staging.is_symlink():
                self._staging.unlink()
            else:
                shutil.rmtree(self._staging, ignore_errors=True)
            return
        if not self._opened:
            return
        if not self._marker_attempted and _storage.exists(self._marker_uri):
            return  # someone else's complete publish: its objects are not ours to delete
        _storage.delete_prefix(self.dest)

    def __enter__(self) -> Publication:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    # ------------------------------------------------------------------ local

    def _refuse_odd_local_dest(self) -> None:
        if self._final.is_symlink() or (self._final.exists() and not self._final.is_dir()):
            raise InputValidationError(f"refusing to publish over a symbolic link or non-directory: {self._final}",
                                       code="unsafe_uri")

    def _local_complete(self) -> bool:
        if self.marker is None:
            return self._final.is_dir()
        return (self._final / self.marker).is_file()

    def _commit_local(self) -> None:
        if self.marker is not None and not (self._staging / self.marker).is_file():
            raise ValueError(f"publish of {self.dest}: its marker {self.marker!r} was never written")
        if not self._staging.is_dir():
            raise ValueError(f"publish of {self.dest}: nothing was written")
        for _ in range(_RENAME_TRIES):
            self._refuse_odd_local_dest()
            try:
                os.rename(self._staging, self._final)  # atomic; also replaces an empty dir
                break
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            # dest is a non-empty directory: someone's complete publish, or a leftover
            if self._local_complete() and not self.replace:
                raise PublishConflictError(f"{self.dest} was published by someone else first")
            stale = self._final.with_name(f".{self._final.name}{STALE}{uuid.uuid4().hex[:12]}")
            try:
                os.rename(self._final, stale)
            except FileNotFoundError:
                continue  # another publisher moved it first: try again
            try:
                os.rename(self._staging, self._final)
            except OSError:
                with contextlib.suppress(OSError):  # put the earlier dir back if nobody took its place
                    os.rename(stale, self._final)
                shutil.rmtree(stale, ignore_errors=True)
                continue
            shutil.rmtree(stale, ignore_errors=True)
            break
        else:
            raise PublishConflictError(f"{self.dest} kept changing while publishing; gave up")
        _fsync_dir(self._final.parent)

    # ------------------------------------------------------------------ S3

    def _commit_s3(self) -> None:
        if self._held is None:
            raise ValueError(f"publish of {self.dest}: its marker {self.marker!r} was never written")
        target, body, content_type = self._held
        if not self.replace and _storage.exists(target):
            self._held = None
            raise PublishConflictError(f"{self.dest} was published by someone else first")
        self._marker_attempted = True
        if isinstance(body, Path):
            _storage.copy(str(body), target)
        else:
            _storage.write_bytes(target, body, content_type=content_type)
        self._held = None


def publish(dest: str | os.PathLike[str], *, marker: str | None = "manifest.json", replace: bool = False,
            tag: str = "") -> Publication:
    """A :class:`Publication` of `dest`, for use as a context manager: the block's writes
    become visible together when it exits normally, and are rolled back if it raises."""
    return Publication(dest, marker=marker, replace=replace, tag=tag)


def remove_partials(dest: str | os.PathLike[str], *, marker: str | None = "manifest.json", tag: str = "") -> int:
    """Delete what unfinished publishes of `dest` left: `dest` itself unless it is complete,
    and locally the hidden ``.<name>.partial-<tag>*`` / ``.<name>.stale-*`` siblings
    (symbolic links are removed, never followed). Returns the number of files/objects
    removed (a link or an empty directory counts as one). Never touches a complete publish."""
    uri = _uri(dest)
    removed = 0
    if not is_published(uri, marker=marker):
        removed += _storage.delete_prefix(uri)
    u = parse_uri(uri)
    if u.is_s3:
        return removed
    final = Path(u.key)
    if not final.parent.is_dir():
        return removed
    prefixes = (partial_prefix(final.name, tag), f".{final.name}{STALE}")
    for entry in sorted(final.parent.iterdir()):
        if entry.name.startswith(prefixes):
            removed += max(_storage.delete_prefix(str(entry)), 1)
    return removed


def write_pointer(uri: str | os.PathLike[str], text: str) -> None:
    """Replace a small text file (``CURRENT``, a run record) atomically: a reader sees the
    old content or the new, never a mixture or an empty file.

    Locally: a temp file in the same directory, fsync, ``os.replace``, then fsync of the
    directory (so the new content survives a crash once this returns). On S3: one
    PutObject, which is atomic per object."""
    target = _uri(uri)
    data = text.encode("utf-8")
    u = parse_uri(target)
    if u.is_s3:
        _storage.write_bytes(target, data, content_type="text/plain")
        return
    _storage.write_stream(u.key, (data,))
    _fsync_dir(Path(u.key).parent)


def read_pointer(uri: str | os.PathLike[str]) -> str | None:
    """The stripped text of a pointer file, or None if there is none."""
    target = _uri(uri)
    u = parse_uri(target)
    if not u.is_s3:
        path = Path(u.key)
        return path.read_text().strip() if path.is_file() else None
    from botocore.exceptions import ClientError

    try:
        return _storage.read_bytes(target).decode("utf-8").strip()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # best effort: not every file system lets a directory be opened
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
