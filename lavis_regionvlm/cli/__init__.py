"""The `regionvlm` console script (entry point `lavis_regionvlm.cli:main`)."""
from lavis_regionvlm.cli.main import main

__all__ = ["main"]
