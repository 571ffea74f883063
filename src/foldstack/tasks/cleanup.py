"""Cleanup: delete the run's scratch, and on failure any unfinished published results."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from foldstack import storage
from foldstack.core.errors import FoldstackError
from foldstack.core.runid import RUN_ID_PATTERN
from foldstack.core.uris import join_under, require_under
from foldstack.tasks.publish import remove_partial
from foldstack.tasks.settings import TaskSettings
from foldstack.tasks.validate import parse_request


def cleanup(
    settings: TaskSettings, run_id: str, raw_request: Mapping[str, Any] | None, *, failed: bool
) -> dict[str, Any]:
    """Safe to run twice, and on a run whose request never validated."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        # Nothing can have been written for a malformed id; never build a path from it.
        return {"run_id": None, "scratch_deleted": 0, "partial_outputs_deleted": 0}
    # join_under, not safe_join: a run dir that is a symbolic link is removed as a link.
    scratch_deleted = storage.delete_prefix(join_under(settings.scratch_root, run_id))
    partial = 0
    if failed and raw_request is not None:
        try:
            request = parse_request(raw_request)
            require_under(request.output_uri, settings.allowed_output_prefixes, what="output_uri")
        except FoldstackError:
            request = None  # an invalid request published nothing
        if request is not None:
            partial = remove_partial(request.output_uri, run_id)
    return {"run_id": run_id, "scratch_deleted": scratch_deleted, "partial_outputs_deleted": partial}
