#!/usr/bin/env python3
"""terraform-docs-style Inputs/Outputs tables for terraform/modules/*/README.md.

terraform-docs is not installable offline, so this parses variables.tf/outputs.tf with
a small brace-matching scanner (enough for our style: no heredocs in variable blocks)
and rewrites the part of each README between the markers:

    <!-- BEGIN_TF_DOCS -->
    <!-- END_TF_DOCS -->

    python3 scripts/tf_docs.py            # rewrite every module README
    python3 scripts/tf_docs.py --check    # exit 1 and list READMEs that drift
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULES = REPO / "terraform" / "modules"
BEGIN, END = "<!-- BEGIN_TF_DOCS -->", "<!-- END_TF_DOCS -->"
BLOCK_RE = re.compile(r'^(variable|output)\s+"([^"]+)"\s*\{', re.M)


def _block_body(text: str, start: int) -> str:
    """Text between the brace at text[start-1] and its match, skipping strings and comments."""
    depth, i, n = 1, start, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == "#" or text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
            continue
        elif c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    raise ValueError("unbalanced braces")


def _attributes(body: str) -> dict[str, str]:
    """Top-level `name = expression` pairs of a block body (expressions may span lines)."""
    attrs: dict[str, str] = {}
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^\s{2}(\w+)\s*=\s*(.*)$", lines[i])
        if not m:
            i += 1
            continue
        name, expr = m.group(1), [m.group(2)]
        depth = _depth(m.group(2))
        while depth > 0 and i + 1 < len(lines):
            i += 1
            expr.append(lines[i])
            depth += _depth(lines[i])
        attrs[name] = "\n".join(expr).strip()
        i += 1
    return attrs


def _depth(line: str) -> int:
    line = re.sub(r'"(?:\\.|[^"\\])*"', '""', line)
    line = re.sub(r"#.*$", "", line)
    return sum(line.count(c) for c in "{[(") - sum(line.count(c) for c in "}])")


def _string(expr: str | None) -> str:
    if not expr:
        return ""
    m = re.match(r'^"((?:\\.|[^"\\])*)"$', expr.strip())
    value = m.group(1) if m else expr
    return value.replace('\\"', '"').replace("$${", "${")


def _code(expr: str) -> str:
    """An expression as table-safe code (one line per row, pipes escaped)."""
    compact = re.sub(r"\s*#.*$", "", expr, flags=re.M)
    compact = " ".join(compact.split())
    return "`" + compact.replace("|", "\\|") + "`"


def parse(module: Path) -> tuple[list[dict], list[dict]]:
    variables, outputs = [], []
    for tf in sorted(module.glob("*.tf")):
        text = tf.read_text()
        for m in BLOCK_RE.finditer(text):
            kind, name = m.group(1), m.group(2)
            attrs = _attributes(_block_body(text, m.end()))
            entry = {"name": name, "description": _string(attrs.get("description"))}
            if kind == "variable":
                entry["type"] = attrs.get("type", "any")
                entry["default"] = attrs.get("default")
                variables.append(entry)
            else:
                outputs.append(entry)
    return sorted(variables, key=lambda v: v["name"]), sorted(outputs, key=lambda o: o["name"])


def render(module: Path) -> str:
    variables, outputs = parse(module)
    out = [BEGIN, "## Inputs", ""]
    if variables:
        out += ["| Name | Description | Type | Default | Required |",
                "|------|-------------|------|---------|:--------:|"]
        for v in variables:
            default = "n/a" if v["default"] is None else _code(v["default"])
            required = "yes" if v["default"] is None else "no"
            desc = v["description"].replace("|", "\\|").replace("\n", " ")
            anchor = f"<a name=\"input_{v['name']}\"></a> `{v['name']}`"
            out.append(f"| {anchor} | {desc} | {_code(v['type'])} | {default} | {required} |")
    else:
        out.append("No inputs.")
    out += ["", "## Outputs", ""]
    if outputs:
        out += ["| Name | Description |", "|------|-------------|"]
        for o in outputs:
            desc = o["description"].replace("|", "\\|").replace("\n", " ")
            out.append(f"| <a name=\"output_{o['name']}\"></a> `{o['name']}` | {desc} |")
    else:
        out.append("No outputs.")
    out.append(END)
    return "\n".join(out)


def update(readme: Path, table: str) -> str:
    text = readme.read_text() if readme.exists() else f"# {readme.parent.name}\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + table + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="report drift instead of rewriting")
    parser.add_argument("modules", nargs="*", type=Path, help="module directories (default: terraform/modules/*)")
    args = parser.parse_args(argv)
    modules = args.modules or sorted(p.parent for p in MODULES.glob("*/variables.tf"))
    drift = []
    for module in modules:
        readme = module / "README.md"
        new = update(readme, render(module))
        if args.check:
            if not readme.exists() or readme.read_text() != new:
                drift.append(str(readme))
        elif not readme.exists() or readme.read_text() != new:
            readme.write_text(new)
            print(f"updated {readme}")
    if drift:
        print("README tables out of date (run python3 scripts/tf_docs.py):\n  " + "\n  ".join(drift), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
