"""A small STAR reader/writer (RELION's flavour: ``data_`` blocks holding either
``_rlnName value`` pairs or one ``loop_`` table). Values stay strings; callers convert.

Why our own and not ``starfile``: the handful of tables we touch need no pandas, and a
parse error here names the file and line, which RELION's output sometimes needs."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from foldstack.core.errors import DamagedFileError


@dataclass
class StarBlock:
    """One ``data_`` block: `pairs` (key → value) and/or a loop (`columns`, `rows`)."""

    name: str
    pairs: dict[str, str] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)

    def column(self, name: str) -> list[str]:
        if name not in self.columns:
            raise KeyError(f"STAR block data_{self.name} has no column _{name}")
        i = self.columns.index(name)
        return [row[i] for row in self.rows]

    def floats(self, name: str) -> list[float]:
        return [float(v) for v in self.column(name)]

    def records(self) -> list[dict[str, str]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def parse_star(text: str, *, source: str = "<star>") -> dict[str, StarBlock]:
    """Blocks by name (``data_optics`` → ``"optics"``; an unnamed ``data_`` → ``""``)."""
    blocks: dict[str, StarBlock] = {}
    block: StarBlock | None = None
    in_loop_header = in_loop = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            if in_loop and not line:
                continue
            continue
        if line.startswith("data_"):
            block = StarBlock(name=line[5:])
            blocks[block.name] = block
            in_loop_header = in_loop = False
            continue
        if block is None:
            raise DamagedFileError(f"{source}:{lineno}: content before any data_ block", path=source)
        if line == "loop_":
            in_loop_header, in_loop = True, False
            continue
        if line.startswith("_"):
            key, _, rest = line[1:].partition(" ")
            rest = rest.split("#", 1)[0].strip()
            if in_loop_header:
                block.columns.append(key)
            elif in_loop:
                raise DamagedFileError(f"{source}:{lineno}: label after loop rows", path=source)
            else:
                block.pairs[key] = _unquote(rest)
            continue
        if in_loop_header or in_loop:
            in_loop_header, in_loop = False, True
            values = shlex.split(line, posix=True) if ('"' in line or "'" in line) else line.split()
            if len(values) != len(block.columns):
                raise DamagedFileError(
                    f"{source}:{lineno}: {len(values)} values for {len(block.columns)} columns", path=source)
            block.rows.append(values)
            continue
        raise DamagedFileError(f"{source}:{lineno}: unexpected line {line[:40]!r}", path=source)
    return blocks


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def read_star(path: Path | str) -> dict[str, StarBlock]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DamagedFileError(f"cannot read STAR file {path}: {exc}", path=path) from exc
    return parse_star(text, source=str(path))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6f}"
    text = str(value)
    return f'"{text}"' if (not text or any(c.isspace() for c in text)) else text


def format_star(blocks: list[StarBlock]) -> str:
    out: list[str] = []
    for block in blocks:
        out += ["", f"data_{block.name}", ""]
        for key, value in block.pairs.items():
            out.append(f"_{key} {_fmt(value)}")
        if block.columns:
            out += ["loop_"] + [f"_{c} #{i}" for i, c in enumerate(block.columns, 1)]
            out += [" ".join(_fmt(v) for v in row) for row in block.rows]
        out.append("")
    return "\n".join(out) + "\n"


def write_star(path: Path | str, blocks: list[StarBlock]) -> Path:
    path = Path(path)
    path.write_text(format_star(blocks))
    return path


def table(name: str, records: list[dict[str, object]]) -> StarBlock:
    """A loop block from records that share keys (the first record's order)."""
    columns = list(records[0]) if records else []
    return StarBlock(name=name, columns=columns, rows=[[r[c] for c in columns] for r in records])  # type: ignore[misc]
