"""Resolve the file references found in configs.

Configs name files in three ways: a hub name or URL (left as is), a path on the
user's disk (`~` expanded), or `regionvlm://<path>`, a file shipped inside this
package (the `tiny` model's tokenizers, the default YAMLs). Code never holds a
path to someone's disk; configs do.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE_SCHEME = "regionvlm://"


def resolve_path(value: str | None) -> str | None:
    """Map a config file reference to what loaders accept.

    `regionvlm://assets/tiny/bert` -> the absolute path inside the installed package;
    `~/ckpt.pth` -> the expanded path; URLs and hub names are returned unchanged.
    """
    if value is None:
        return None
    value = str(value)
    if value.startswith(PACKAGE_SCHEME):
        resolved = PACKAGE_DIR / value[len(PACKAGE_SCHEME):]
        if not resolved.exists():
            raise FileNotFoundError(
                f"{value!r} points to {resolved}, which is not in the installed package"
            )
        return str(resolved)
    if value.startswith("~"):
        return os.path.expanduser(value)
    return value


def config_path(relative: str) -> str:
    """Absolute path of a YAML under `lavis_regionvlm/configs/`."""
    return str(PACKAGE_DIR / "configs" / relative)
