"""Parsing a definition with moto's ASL parser, and retyping the parsed tree.

:func:`parse_definition` normalises valid ASL that moto's grammar rejects, parses it with
``AmazonStateLanguageParser`` under a lock (clearing the preprocessor's per-scope
query-language stack, which moto keeps in a class attribute: it leaks between parses),
and then *retypes* the component tree in place (``obj.__class__ = LocalSubclass``) for
the parts the local engine replaces (see :func:`_retype_tree`). A service integration
other than Lambda and Batch fails here, at parse time.
"""

from __future__ import annotations

import json
import threading
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

# Service integrations the local engine serves; any other fails at parse time.
_SUPPORTED_SERVICE_TASKS = (StateTaskServiceBatch, StateTaskServiceLambda)


@dataclass
class ParsedProgram:
    program: Program
    definition: str


def _retype_tree(root: Any) -> None:
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, dict):
            stack.extend(obj.values())
            continue
        if isinstance(obj, list | tuple | set):
            stack.extend(obj)
            continue
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
        if hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())


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


def parse_definition(definition: str) -> ParsedProgram:
    """Parse an ASL definition with moto's parser; raise DefinitionError on failure."""
    try:
        document = json.loads(definition)
    except json.JSONDecodeError as err:
        raise DefinitionError(f"definition is not JSON: {err}") from err
    definition = json.dumps(_normalise_for_moto(document))
    with _PARSE_LOCK:
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
    return ParsedProgram(program=program, definition=definition)
