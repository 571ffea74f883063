"""Parsing a definition with moto's ASL parser, and retyping the parsed tree.

:func:`parse_definition` normalises valid ASL that moto's grammar rejects, parses it with
``AmazonStateLanguageParser`` under a lock (clearing the preprocessor's per-scope
query-language stack, which moto keeps in a class attribute: it leaks between parses),
and then *retypes* the component tree in place (``obj.__class__ = LocalSubclass``) for
the parts the local engine replaces (see :func:`_retype_tree`). A service integration
other than Lambda and Batch fails here, at parse time.
"""

from __future__ import annotations

import copy
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import (
    ErrorEqualsDecl,
)
from moto.stepfunctions.parser.asl.component.common.retry.retrier_decl import RetrierDecl
from moto.stepfunctions.parser.asl.component.program.program import Program
from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState
from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3 import (
    ResourceEvalS3,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.distributed_item_processor import (  # noqa: E501
    DistributedItemProcessor,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iterator.distributed_iterator import (
    DistributedIterator,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
    StateTaskService,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (
    StateTaskServiceBatch,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_lambda import (
    StateTaskServiceLambda,
)
from moto.stepfunctions.parser.asl.parse.asl_parser import (
    AmazonStateLanguageParser,
    ASLParserException,
)
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

from foldstack.local.errors import DefinitionError
from foldstack.local.moto_batch import LocalBatchTask
from foldstack.local.moto_errors import STRICT_CLASSES, ScaledJitter, StrictErrorEquals, strict_runtime_class
from foldstack.local.moto_map import LocalDistributedItemProcessor, LocalDistributedIterator, LocalItemReaderS3

_PARSE_LOCK = threading.Lock()

# Parsed, retyped programs by definition text (most recent last). moto's parser is pure
# Python (about 1.5 s for the fold definition); a deep copy of its tree is about 20x cheaper.
_PARSED: OrderedDict[str, Program] = OrderedDict()
_PARSED_MAX = 8

# Service integrations the local engine serves; any other fails at parse time.
_SUPPORTED_SERVICE_TASKS = (StateTaskServiceBatch, StateTaskServiceLambda)


@dataclass
class ParsedProgram:
    program: Program
    definition: str


def walk(root: Any, descend: Callable[[Any], bool] = lambda obj: True) -> Iterator[Any]:
    """Every object reachable from ``root`` once: dict keys and values, sequence items, and
    the attributes (``__dict__`` and ``__slots__``) of objects ``descend`` accepts. An
    object is yielded before its children are read, so a caller may retype or fill it."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif not isinstance(obj, str | bytes | type) and descend(obj):
            if hasattr(obj, "__dict__"):
                stack.extend(vars(obj).values())
            stack.extend(getattr(obj, slot, None) for slot in getattr(type(obj), "__slots__", ()))


def _is_parser_component(obj: Any) -> bool:
    # moto's components, and the local subclasses _retype_tree gives some of them.
    return type(obj).__module__.startswith(("moto.stepfunctions.parser", "foldstack.local"))


def _retype_tree(root: Any) -> None:
    for obj in walk(root, descend=_is_parser_component):
        if not type(obj).__module__.startswith("moto.stepfunctions.parser"):
            continue
        cls = type(obj)
        if cls is StateTaskServiceBatch:
            obj.__class__ = LocalBatchTask
        elif isinstance(obj, StateTaskService) and not isinstance(obj, _SUPPORTED_SERVICE_TASKS):
            raise DefinitionError(
                f"resource {obj.resource.resource_arn!r} is not supported by the local engine "
                "(only Lambda and Batch integrations are)"
            )
        elif cls is ResourceEvalS3:
            obj.__class__ = LocalItemReaderS3
        elif cls is DistributedItemProcessor:
            obj.__class__ = LocalDistributedItemProcessor
        elif cls is DistributedIterator:
            obj.__class__ = LocalDistributedIterator
        elif cls is ErrorEqualsDecl:
            obj.__class__ = StrictErrorEquals
        elif cls is RetrierDecl:
            obj.jitter_strategy.__class__ = ScaledJitter
        if isinstance(obj, ExecutionState) and type(obj) not in STRICT_CLASSES.values():
            obj.__class__ = strict_runtime_class(type(obj))


def _normalise_for_moto(node: Any) -> Any:
    """Valid ASL that moto's grammar rejects: ToleratedFailurePercentage must be a
    decimal NUMBER there (an integer like 50 fails to parse)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "ToleratedFailurePercentage" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            out[key] = _normalise_for_moto(value)
        return out
    if isinstance(node, list):
        return [_normalise_for_moto(v) for v in node]
    return node


def parse_definition(definition: str, *, late_values: Mapping[str, str] | None = None) -> ParsedProgram:
    """Parse an ASL definition with moto's parser; raise DefinitionError on failure.

    ``late_values`` maps marker strings in ``definition`` to their values, filled in the
    parsed tree rather than the text. Callers put per-run values (a run home's paths)
    behind markers, so every run of one workflow shares one cached parse and pays only
    for a copy. A marker the tree walk cannot reach makes it parse the filled text.
    """
    try:
        document = json.loads(definition)
    except json.JSONDecodeError as err:
        raise DefinitionError(f"definition is not JSON: {err}") from err
    normalised = json.dumps(_normalise_for_moto(document))
    program = copy.deepcopy(_parse_cached(normalised))
    late = {marker: str(value) for marker, value in (late_values or {}).items()}
    if not late:
        return ParsedProgram(program=program, definition=normalised)
    filled = normalised
    for marker, value in late.items():
        filled = filled.replace(marker, json.dumps(value)[1:-1])
    if _fill_markers(program, late):
        return ParsedProgram(program=program, definition=filled)
    return ParsedProgram(program=copy.deepcopy(_parse_cached(filled)), definition=filled)


def _parse_cached(definition: str) -> Program:
    with _PARSE_LOCK:
        program = _PARSED.get(definition)
        if program is not None:
            _PARSED.move_to_end(definition)
            return program
        program = _parse(definition)
        _PARSED[definition] = program
        while len(_PARSED) > _PARSED_MAX:
            _PARSED.popitem(last=False)
        return program


def _parse(definition: str) -> Program:
    """moto's parser; the caller holds _PARSE_LOCK."""
    # moto keeps the preprocessor's scope stack in a class attribute: clear it so a
    # failed earlier parse cannot leak its query language into this one.
    Preprocessor._query_language_per_scope.clear()
    try:
        program, _tree = AmazonStateLanguageParser.parse(definition)
    except ASLParserException as err:
        raise DefinitionError(f"ASL syntax error: {err.errors}") from err
    except Exception as err:
        raise DefinitionError(f"ASL definition rejected: {type(err).__name__}: {err}") from err
    finally:
        Preprocessor._query_language_per_scope.clear()
    _retype_tree(program)
    return program


def _fill_markers(root: Any, late: Mapping[str, str]) -> bool:
    """Replace the markers in every string of a parsed tree, in place; False if a marker
    survives (held somewhere the walk does not rewrite, such as a tuple or a dict key)."""

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            for marker, replacement in late.items():
                value = value.replace(marker, replacement)
        return value

    for obj in walk(root):
        if isinstance(obj, dict):
            for key, value in obj.items():
                obj[key] = fill(value)
        elif isinstance(obj, list):
            obj[:] = [fill(value) for value in obj]
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            attrs = vars(obj)
            for key, value in attrs.items():
                attrs[key] = fill(value)
    return not any(isinstance(obj, str) and any(marker in obj for marker in late) for obj in walk(root))
