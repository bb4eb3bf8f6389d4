"""Write a benchmark's own marked section of a docs page, leaving the rest of the page as it is."""
from __future__ import annotations

from pathlib import Path

from feedgan.io import atomic_open


def write_section(doc: Path, begin: str, end: str, lines: list[str], what: str) -> None:
    """Replace the text between the ``begin`` and ``end`` markers of ``doc`` with ``lines``
    (markers kept); refuse when the markers are missing, naming them."""
    text = doc.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{doc}: the {what} markers are missing; put {begin!r} and {end!r} where the table goes")
    head, rest = text.split(begin, 1)
    with atomic_open(doc) as fh:
        fh.write(head + "\n".join([begin, *lines, end]) + rest.split(end, 1)[1])
