"""Put a merged decision-bench result's tables into BENCHMARKS.md's corrected-model section.

``python -m bench.benchmarks_doc BENCHMARKS.md TABLES.md``, where TABLES.md is the
``--markdown`` output of ``python -m bench.decision_bench --merge …``. That output holds, in
order, the case table, the regime table, the series table and the targets' lines; the section
shows them targets first (the answer), then per regime, per series and per case. Everything
else in BENCHMARKS.md (the prose around the tables) is kept as it is.

Why a tool: the rerun is merged and its tables recomposed at the end of every session that
runs more of it, and a hand splice is where rows get lost or doubled.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

SECTION_START = "The merged results, shipped policy (`refillFactor: 1.3`) on every case:\n\n"
SECTION_END = "### Earlier runs: before the corrected model"


class DocError(ValueError):
    """The document or the tables are not shaped as this tool expects."""


def splice(doc: str, tables: str) -> str:
    """``doc`` with the text between ``SECTION_START`` and ``SECTION_END`` replaced by
    ``tables`` recomposed (see the module docstring)."""
    for marker in (SECTION_START, SECTION_END):
        if doc.count(marker) != 1:
            raise DocError(f"needs exactly one {marker.strip()!r} line, found {doc.count(marker)}")
    start = doc.index(SECTION_START) + len(SECTION_START)
    end = doc.index(SECTION_END)
    if end < start:
        raise DocError(f"{SECTION_END!r} comes before {SECTION_START.strip()!r}")
    blocks = tables.strip("\n").split("\n\n")
    if len(blocks) < 4:
        raise DocError(
            f"the tables have {len(blocks)} block(s); a merge of several series has 4: cases,"
            " regimes, series, targets"
        )
    cases, regimes, series = blocks[:3]
    targets = "\n\n".join(blocks[3:])
    for name, block, head in (
        ("case", cases, "| series | regime |"),
        ("regime", regimes, "| regime | cases |"),
        ("series", series, "| series | cases |"),
        ("targets", targets, "Targets over"),
    ):
        if not block.startswith(head):
            raise DocError(f"the {name} block should start with {head!r}: {block[:60]!r}")
    body = (
        f"{targets}\n\nPer regime:\n\n{regimes}\n\nPer series:\n\n{series}\n\n"
        f"Per case:\n\n{cases}\n\n"
    )
    return doc[:start] + body + doc[end:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmarks_doc", description=__doc__)
    parser.add_argument("benchmarks", type=Path, help="BENCHMARKS.md, rewritten in place")
    parser.add_argument("tables", type=Path, help="the --markdown output of a merge")
    args = parser.parse_args(argv)
    try:
        doc = args.benchmarks.read_text(encoding="utf-8")
        tables = args.tables.read_text(encoding="utf-8")
        updated = splice(doc, tables)
    except (OSError, DocError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.benchmarks.write_text(updated, encoding="utf-8")
    print(f"{args.benchmarks}: tables of {args.tables} in place")
    return 0


if __name__ == "__main__":
    sys.exit(main())
