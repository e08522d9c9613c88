"""The documentation as the tests read it: the README and every page of the docs site,
as a reader sees them (MkDocs' heading-anchor markers left out), so an example or a table
stays checked on whichever page it lives."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def documentation() -> str:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n\n".join(page.read_text() for page in pages)
    return re.sub(r"\{ #[\w-]+ \}", "", text)
