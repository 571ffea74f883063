"""The private moto names the local engine relies on are all still there, and all listed.

``foldstack.local.moto_names.MOTO_PRIVATE_NAMES`` lists every private moto name the
``moto_*`` adapter modules touch. After a moto upgrade, the first test here fails with
the full list of names that are gone or whose keyword parameters changed; the others
keep the list complete (every ``moto.`` import of a ``moto_*`` module, every attribute
read on an imported moto name, every inherited ``self.<name>`` a subclass of a moto class
reads) and keep moto's private names inside the ``moto_*`` modules.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

import foldstack
from foldstack.core.errors import ConfigurationError
from foldstack.local import moto_adapter
from foldstack.local.moto_names import MOTO_PRIVATE_NAMES, MotoName, check_moto_names, load_moto_names

SRC = Path(foldstack.__file__).parent
LOCAL = SRC / "local"
ADAPTER_MODULES = sorted(LOCAL.glob("moto_*.py"))


def _is_moto_module(name: str | None) -> bool:
    return bool(name) and (name == "moto" or name.startswith("moto."))


def _canonical(module: str, name: str) -> tuple[str, str]:
    """``from pkg import submodule`` names the module itself."""
    try:
        is_module = importlib.util.find_spec(f"{module}.{name}") is not None
    except (ImportError, AttributeError, ValueError):
        is_module = False
    return (f"{module}.{name}", "") if is_module else (module, name)


def required_names(source: str) -> dict[tuple[str, str], int]:
    """(module, attribute path) -> line, for each private moto name ``source`` touches."""
    tree = ast.parse(source)
    required: dict[tuple[str, str], int] = {}
    bound: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _is_moto_module(node.module):
            for alias in node.names:
                key = _canonical(node.module, alias.name)
                bound[alias.asname or alias.name] = key
                required.setdefault(key, node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("moto."):  # bare ``import moto`` is the public package
                    required.setdefault((alias.name, ""), node.lineno)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
            module, attr = bound[node.value.id]
            required.setdefault((module, f"{attr}.{node.attr}" if attr else node.attr), node.lineno)
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        moto_bases = [bound[b.id] for b in cls.bases if isinstance(b, ast.Name) and b.id in bound]
        if not moto_bases:
            continue
        own = {n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
        own |= {t.id for n in cls.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        own |= {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
        self_attrs = [
            n
            for n in ast.walk(cls)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self"
        ]
        own |= {n.attr for n in self_attrs if isinstance(n.ctx, ast.Store)}
        module, base = moto_bases[0]
        for node in self_attrs:
            if isinstance(node.ctx, ast.Load) and node.attr not in own:
                required.setdefault((module, f"{base}.{node.attr}"), node.lineno)
    return required


def unlisted(source: str, listed: tuple[MotoName, ...] = MOTO_PRIVATE_NAMES) -> list[str]:
    keys = {(name.module, name.attr) for name in listed}
    return [
        f"line {line}: {module}:{attr}" if attr else f"line {line}: {module}"
        for (module, attr), line in sorted(required_names(source).items(), key=lambda kv: kv[1])
        if (module, attr) not in keys
    ]


# --------------------------------------------------------------------------- the real list


def test_every_listed_private_name_still_exists():
    problems = check_moto_names()
    assert not problems, "moto private names missing or changed:\n  " + "\n  ".join(problems)


def test_listed_names_still_check_after_the_global_patches():
    # The Lambda helper and the CustomErrorName bindings are replaced process-wide; the
    # check reads moto's source for those, not our replacements.
    moto_adapter._install_global_patches()
    assert check_moto_names() == []


def test_the_list_names_every_private_name_the_adapter_modules_touch():
    assert len(ADAPTER_MODULES) >= 8, [p.name for p in ADAPTER_MODULES]
    missing = {path.name: found for path in ADAPTER_MODULES if (found := unlisted(path.read_text(encoding="utf-8")))}
    assert not missing, f"add these to MOTO_PRIVATE_NAMES: {missing}"


def test_the_list_has_no_duplicates():
    assert len(set(MOTO_PRIVATE_NAMES)) == len(MOTO_PRIVATE_NAMES)


@pytest.mark.slow
def test_private_moto_imports_stay_in_the_adapter_modules():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.parent == LOCAL and path.name.startswith("moto_"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            if any(_is_moto_module(m) for m in modules):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not offenders, f"moto imported outside foldstack/local/moto_*.py: {offenders}"


def test_adapter_front_still_exports_what_the_engine_uses():
    for name in ("MotoRun", "RunResult", "EngineHooks", "parse_definition", "ParsedProgram"):
        assert hasattr(moto_adapter, name), name


# --------------------------------------------------------------------------- the checks can fail

_ENV = "moto.stepfunctions.parser.asl.eval.environment"
_EVENTS = "moto.stepfunctions.parser.asl.eval.event.event_manager"
_LAMBDA = "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils"


@pytest.mark.parametrize(
    ("fake", "expected"),
    [
        (MotoName("moto.stepfunctions.parser.no_such_module", "X"), "cannot import"),
        (MotoName(_ENV, "NoSuchEnvironment"), "missing"),
        (MotoName(_ENV, "Environment.no_such_method"), "missing"),
        (MotoName(_ENV, "Environment.no_such_field", kind="instance"), "has no attribute"),
        (MotoName(_ENV, "Environment.set_stop", kind="call", params=("no_such_kw",)), "does not take"),
        (MotoName(_LAMBDA, "no_such_global", kind="global"), "no module-level name"),
        (
            MotoName(_EVENTS, "EventManager.add_event", kind="override", params=("context", "event_type")),
            "parameters are",
        ),
        (
            MotoName(
                _EVENTS,
                "EventManager.add_event",
                kind="override",
                params=("context", "event_type", "event_details", "timestamp", "update_source_event_id"),
                local="foldstack.local.moto_history:HookedEventManager.annotated",
            ),
            "our foldstack.local.moto_history:HookedEventManager.annotated takes",
        ),
        (
            MotoName(_ENV, "Environment.is_running", kind="override", params=(), local="foldstack.local.nope:f"),
            "cannot resolve our",
        ),
    ],
    ids=["module", "attribute", "method", "instance", "call", "global", "override", "local", "local-missing"],
)
def test_checker_reports_a_missing_or_changed_name(fake, expected):
    problems = check_moto_names((*MOTO_PRIVATE_NAMES[:2], fake))
    assert len(problems) == 1, problems
    assert str(fake) in problems[0]
    assert expected in problems[0]


def test_completeness_scan_reports_unlisted_names():
    source = (
        "from moto.stepfunctions.parser.asl.eval.environment import Environment, NotListed\n"
        "from moto.stepfunctions.parser.asl.component.state.exec import state_task as st\n"
        "class Mine(Environment):\n"
        "    def f(self):\n"
        "        self.mine = 1\n"
        "        return self.stack, self.not_listed_field, self.mine, Environment.not_listed_attr, st.x\n"
    )
    found = unlisted(source)
    assert sorted(found) == sorted(
        [
            f"line 1: {_ENV}:NotListed",
            "line 2: moto.stepfunctions.parser.asl.component.state.exec.state_task",
            f"line 6: {_ENV}:Environment.not_listed_attr",
            f"line 6: {_ENV}:Environment.not_listed_field",
            "line 6: moto.stepfunctions.parser.asl.component.state.exec.state_task:x",
        ]
    ), found


def test_the_data_file_reads_into_names(tmp_path):
    path = tmp_path / "names.yaml"
    path.write_text(
        "asl.eval.environment:\n"
        "  - module\n"
        "  - {instance: Environment.stack}\n"
        "  - {call: Environment.set_stop, params: &p [stop_date, cause], why: because}\n"
        "  - {override: Environment.set_error, params: *p, local: 'a.b:c'}\n",
        encoding="utf-8",
    )
    assert load_moto_names(path) == (
        MotoName(_ENV),
        MotoName(_ENV, "Environment.stack", kind="instance"),
        MotoName(_ENV, "Environment.set_stop", kind="call", params=("stop_date", "cause"), why="because"),
        MotoName(_ENV, "Environment.set_error", kind="override", params=("stop_date", "cause"), local="a.b:c"),
    )


@pytest.mark.parametrize(
    "entry",
    ["modul", "{attr: X, call: Y}", "{attr: X, param: [a]}", "{params: [a]}"],
    ids=["unknown-word", "two-kinds", "unknown-field", "no-kind"],
)
def test_the_data_file_rejects_a_malformed_entry(tmp_path, entry):
    path = tmp_path / "names.yaml"
    path.write_text(f"asl.eval.environment:\n  - {entry}\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="asl.eval.environment: bad entry"):
        load_moto_names(path)
