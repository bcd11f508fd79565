"""Evaluate with a LAVIS YAML: `python -m lavis_regionvlm.evaluate --cfg-path X [--options k=v ...]`."""
from __future__ import annotations

import sys

from lavis_regionvlm.launch import prepare


def main(argv: list[str] | None = None) -> None:
    prepare(argv, "Evaluate a LAVIS model (lavis_regionvlm registered)").evaluate(skip_reload=True)


if __name__ == "__main__":
    main(sys.argv[1:])
