"""`python -m lavis_regionvlm.cli ...`: the `regionvlm` command line."""
import sys

from lavis_regionvlm.cli.main import main

sys.exit(main())
