"""Every private moto name the local engine's adapter touches, and a checker for them.

moto's vendored ASL interpreter (``moto.stepfunctions.parser``) is not public API, so a
moto upgrade may rename or re-sign anything the ``moto_*`` modules rely on.
:data:`MOTO_PRIVATE_NAMES` lists each such name, read from ``moto_names.yaml`` next to this
module, and :func:`check_moto_names` reports every one that is gone or changed, so an
upgrade fails with the whole list at once (``tests/workflows/test_moto_private_names.py``)
rather than deep inside a run. That test also checks the list is complete: every
``moto.`` import of a ``moto_*`` module, every attribute read on an imported moto name,
and every inherited ``self.<name>`` a subclass of a moto class reads must be listed.

Kinds of entry:

* ``attr`` -- the module (``attr`` empty) or the dotted attribute path exists;
* ``global`` -- a module-level name that ``moto_adapter`` replaces process-wide: it is
  checked in the module's source, since after installation it always "exists";
* ``instance`` -- ``Class.field`` is a class attribute or annotation, or ``self.field`` is
  assigned in the source of a moto class of its MRO;
* ``call`` -- the callable (a TypedDict: its keys) accepts these keyword names;
* ``override`` -- the method (or replaced function) moto calls with keyword arguments:
  its parameter names must be exactly ``params``, in order, and so must those of
  ``local`` (our replacement, ``module:qualname``), which may add trailing defaulted ones.

This module imports no moto at import time.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from foldstack.core.errors import ConfigurationError


@dataclass(frozen=True)
class MotoName:
    module: str
    attr: str = ""
    kind: str = "attr"  # attr | global | instance | call | override
    params: tuple[str, ...] = ()
    local: str = ""  # override: "module:qualname" of our replacement
    why: str = ""

    def __str__(self) -> str:
        return f"{self.module}:{self.attr}" if self.attr else self.module


_DATA_FILE = Path(__file__).with_name("moto_names.yaml")
_PARSER = "moto.stepfunctions.parser"
_KINDS = ("attr", "global", "instance", "call", "override")
_FIELDS = {*_KINDS, "params", "local", "why"}


def load_moto_names(path: Path = _DATA_FILE) -> tuple[MotoName, ...]:
    """The entries of ``moto_names.yaml`` (its header describes the format)."""
    try:
        modules = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigurationError(f"cannot read {path.name}: {err}") from err
    if not isinstance(modules, dict):
        raise ConfigurationError(f"{path.name}: expected a mapping of module -> entries")
    names: list[MotoName] = []
    for module, entries in modules.items():
        for entry in entries or ():
            if entry == "module":
                names.append(MotoName(f"{_PARSER}.{module}"))
                continue
            kinds = [k for k in _KINDS if k in entry] if isinstance(entry, dict) else []
            if len(kinds) != 1 or set(entry) - _FIELDS:
                raise ConfigurationError(
                    f"{path.name}: {module}: bad entry {entry!r}: want 'module' or one of {'/'.join(_KINDS)}"
                    " with optional params, local, why"
                )
            kind = kinds[0]
            names.append(
                MotoName(
                    f"{_PARSER}.{module}",
                    entry[kind],
                    kind=kind,
                    params=tuple(entry.get("params", ())),
                    local=entry.get("local", ""),
                    why=entry.get("why", ""),
                )
            )
    return tuple(names)


MOTO_PRIVATE_NAMES: tuple[MotoName, ...] = load_moto_names()


# --------------------------------------------------------------------------- checking


def _resolve(dotted: str) -> Any:
    """``module:qualname`` or a module path -> the object (raises on failure)."""
    module_name, _, qualname = dotted.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in filter(None, qualname.split(".")):
        obj = getattr(obj, part)
    return obj


def _param_names(obj: Any) -> tuple[list[str], bool, dict[str, bool]]:
    """(parameter names without self/cls, takes **kwargs, name -> has a default)."""
    if isinstance(obj, type) and issubclass(obj, dict) and hasattr(obj, "__required_keys__"):
        keys = sorted(obj.__required_keys__ | obj.__optional_keys__)
        return keys, False, {k: k in obj.__optional_keys__ for k in keys}
    signature = inspect.signature(obj)
    names: list[str] = []
    defaults: dict[str, bool] = {}
    var_kw = False
    for param in signature.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            var_kw = True
        elif param.kind is not param.VAR_POSITIONAL and param.name not in ("self", "cls"):
            names.append(param.name)
            defaults[param.name] = param.default is not param.empty
    return names, var_kw, defaults


def _module_tree(module_name: str) -> ast.Module:
    return ast.parse(inspect.getsource(importlib.import_module(module_name)))


def _global_bound_in_source(module_name: str, name: str) -> bool:
    for node in _module_tree(module_name).body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            if any((alias.asname or alias.name.split(".")[0]) == name for alias in node.names):
                return True
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == name:
                return True
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
    return False


def _source_function_params(module_name: str, name: str) -> list[str] | None:
    """Parameter names of a module-level function as written (it may be replaced at runtime)."""
    for node in _module_tree(module_name).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            args = node.args
            return [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs) if a.arg not in ("self", "cls")]
    return None


def _has_instance_attr(cls: type, field: str) -> bool:
    if hasattr(cls, field):
        return True
    assigned = re.compile(rf"\bself\.{re.escape(field)}\s*(?::[^=\n]+)?=(?!=)")
    for klass in cls.__mro__:
        if field in getattr(klass, "__annotations__", {}):
            return True
        if not klass.__module__.startswith("moto."):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        if assigned.search(source):
            return True
    return False


def _check_one(name: MotoName) -> str | None:
    try:
        module = importlib.import_module(name.module)
    except Exception as err:
        return f"{name}: cannot import {name.module} ({type(err).__name__}: {err})"
    if name.kind == "global":
        if not _global_bound_in_source(name.module, name.attr):
            return f"{name}: no module-level name {name.attr!r} in the source"
        return None
    owner, _, last = name.attr.rpartition(".")
    path = owner if name.kind == "instance" else name.attr
    obj: Any = module
    for part in filter(None, path.split(".")):
        if not hasattr(obj, part):
            return f"{name}: missing ({part!r} not found)"
        obj = getattr(obj, part)
    if name.kind == "attr":
        return None
    if name.kind == "instance":
        if not isinstance(obj, type):
            return f"{name}: {owner} is not a class"
        return None if _has_instance_attr(obj, last) else f"{name}: {owner} has no attribute {last!r}"
    if name.kind == "override" and name.local:
        try:
            local_obj = _resolve(name.local)
        except Exception as err:
            return f"{name}: cannot resolve our {name.local} ({type(err).__name__}: {err})"
        if obj is local_obj:  # a module-level function we replaced: read moto's source
            source_params = _source_function_params(name.module, name.attr)
            if source_params is None:
                return f"{name}: no function {name.attr!r} in the source"
            params, var_kw, _defaults = source_params, False, {}
        else:
            params, var_kw, _defaults = _param_names(obj)
    else:
        try:
            params, var_kw, _defaults = _param_names(obj)
        except (TypeError, ValueError) as err:
            return f"{name}: no signature ({err})"
    if name.kind == "call":
        unknown = [p for p in name.params if p not in params]
        if unknown and not var_kw:
            return f"{name}: does not take keyword(s) {unknown} (takes {params})"
        return None
    if name.kind != "override":
        return f"{name}: unknown kind {name.kind!r}"
    if list(name.params) != params:
        return f"{name}: parameters are {params}, expected {list(name.params)}"
    if name.local:
        local_params, _kw, local_defaults = _param_names(_resolve(name.local))
        head, extra = local_params[: len(name.params)], local_params[len(name.params) :]
        if head != list(name.params) or not all(local_defaults[p] for p in extra):
            return f"{name}: our {name.local} takes {local_params}, moto passes {list(name.params)}"
    return None


def check_moto_names(names: tuple[MotoName, ...] = MOTO_PRIVATE_NAMES) -> list[str]:
    """One line per listed name that is missing or changed (empty: all still there)."""
    problems = []
    for name in names:
        try:
            problem = _check_one(name)
        except Exception as err:  # a checker failure is a finding too
            problem = f"{name}: check failed ({type(err).__name__}: {err})"
        if problem:
            problems.append(problem)
    return problems
