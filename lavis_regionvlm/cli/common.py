"""What every `regionvlm` command module shares: the program name, the exit codes, the error
type reported on stderr, and the generation options (`main` and `chat_loop` both use them)."""
from __future__ import annotations

PROG = "regionvlm"
# 0 done; 1 failed while running; 2 a bad argument or input file; 130 interrupted (Ctrl+C)
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CliError(Exception):
    """An error to report on stderr with an exit code (2: bad arguments or inputs)."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


def generate_kwargs(args) -> dict:
    """`num_beams` and `max_new_tokens` from the parsed arguments, where given (for `generate`)."""
    kwargs = {}
    if getattr(args, "num_beams", None) is not None:
        kwargs["num_beams"] = args.num_beams
    if getattr(args, "max_new_tokens", None) is not None:
        kwargs["max_new_tokens"] = args.max_new_tokens
    return kwargs
