"""The data-reading options every command that reads a log shares (typer Options), and the parser
of ``--columns``-style mappings. Kept apart from :mod:`feedgan.cli` so sub-apps (``feedgan synth``,
``feedgan moderate``) can declare the same flags without importing the main app."""
from __future__ import annotations

from typing import Optional

import typer

from .data.schema import DataError

FORMAT = typer.Option("auto", "--format", "-f", help="reader format: csv, tsv, parquet, jsonl, movielens, lightgcn, "
                                                     "... (see `feedgan data inspect --help`)")


def _columns(spec: Optional[str], flag: str = "--columns",
             example: str = "user=uid,item=post_id (or positions: user=0,item=1,weight=2)"
             ) -> Optional[dict[str, str | int]]:
    """``user=uid,item=post`` -> {"user": "uid", "item": "post"}; ``user=0,item=1`` -> 0-based positions."""
    if not spec:
        return None
    pairs = [p.split("=", 1) for p in spec.split(",") if p]
    if any(len(p) != 2 for p in pairs):
        raise DataError(f"bad {flag} {spec!r}", fix=f"write it as ours=theirs pairs, e.g. {example}")
    return {k.strip(): int(v) if v.strip().isdecimal() else v.strip() for k, v in pairs}


COLUMNS = typer.Option(None, help="column mapping by name or 0-based position, e.g. user=uid,item=post_id "
                                  "or user=0,item=1,rating=3 (rating= a rating: repeats keep the largest; "
                                  "weight= a count: repeats add up)")
SEP = typer.Option(None, "--sep", help="csv/tsv/uir field separator: one character, or 'whitespace'")
NO_HEADER = typer.Option(False, "--no-header", help="csv/tsv: the first line is data (map --columns by position)")
DEDUP = typer.Option("auto", "--dedup", help="merge repeated (user, item, action) rows: auto (ratings max, counts "
                                             "such as plays sum), max, last, sum or count (rows)")
SOCIAL = typer.Option(None, "--social", help="friend edge file (src, dst [, weight]) in the log's user ids; "
                                              "csv/tsv with a header naming src/dst, or headerless columns")
SOCIAL_COLUMNS = typer.Option(None, "--social-columns", help="the friend file's columns by name or 0-based "
                                                             "position, e.g. src=0,dst=2 or src=trustor,dst=trustee")
SOCIAL_SEP = typer.Option(None, "--social-sep", help="the friend file's separator: one character, or 'whitespace' "
                                                     "(default: tab, comma or whitespace, from its first line)")
SOCIAL_HEADER = typer.Option(None, "--social-header/--social-no-header",
                             help="whether the friend file's first line names its columns (default: guessed)")
