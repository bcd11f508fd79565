"""Evaluate with a LAVIS YAML: `python -m lavis_regionvlm.evaluate --cfg-path X [--options k=v ...]`."""
from __future__ import annotations

import sys

from lavis_regionvlm.launch import close_distributed, prepare


def main(argv: list[str] | None = None) -> None:
    runner = prepare(argv, "Evaluate a LAVIS model (lavis_regionvlm registered)")
    runner.evaluate(skip_reload=True)
    close_distributed()  # after success only: a failed rank must exit, not wait at a barrier


if __name__ == "__main__":
    main(sys.argv[1:])
