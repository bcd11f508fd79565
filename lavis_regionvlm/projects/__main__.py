"""`python -m lavis_regionvlm.projects [--out DIR [--force]]`: list the project YAMLs, or
write them into DIR (for LAVIS's `train.py --cfg-path DIR/eval_tiny.yaml` and the like)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence, TextIO

from lavis_regionvlm.projects import project_files, projects_dir, write_projects


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="folder to write the YAMLs into (made if missing)")
    parser.add_argument("--force", action="store_true", help="overwrite YAMLs of the same name in --out")


PROG = "python -m lavis_regionvlm.projects"


def run(args: argparse.Namespace, out: TextIO, err: TextIO, prog: str = PROG) -> int:
    """List or write the projects; returns the exit code (2: a bad --out). Errors are one
    line on `err`, `PROG: error: ...`."""
    from lavis_regionvlm_autoload import startup_hook_problem

    if args.out is None:
        print(f"project YAMLs in {projects_dir()}:", file=out)
        for path in project_files():
            print(f"  {path.name}", file=out)
        return 0
    try:
        written = write_projects(args.out, overwrite=args.force)
    except OSError as exc:
        print(f"{prog}: error: {exc}", file=err)
        return 2
    print(f"wrote {len(written)} project YAMLs from {projects_dir()} to {args.out}", file=out)
    problem = startup_hook_problem()
    if problem:
        print(f"{prog}: warning: {problem}", file=err)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv), sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
