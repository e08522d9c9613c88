"""Render every dashboards/*.dashboard.py (grafanalib) to deterministic JSON beside it.

python dashboards/generate.py            # writes dashboards/*.json
python dashboards/generate.py --check    # exits 1 when a committed JSON is stale
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from pathlib import Path

from grafanalib._gen import DashboardEncoder

HERE = Path(__file__).resolve().parent


def render(source: Path) -> str:
    sys.path.insert(0, str(HERE))
    try:
        dashboard = runpy.run_path(str(source))["dashboard"]
    finally:
        sys.path.remove(str(HERE))
    return (
        json.dumps(dashboard.to_json_data(), cls=DashboardEncoder, sort_keys=True, indent=2) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for source in sorted(HERE.glob("*.dashboard.py")):
        target = source.with_name(source.name.replace(".dashboard.py", ".json"))
        text = render(source)
        if args.check:
            if not target.exists() or target.read_text() != text:
                stale.append(target.name)
        else:
            target.write_text(text)
            print(f"wrote {target}")
    if stale:
        print(f"stale: {', '.join(stale)}: run make dashboards", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
