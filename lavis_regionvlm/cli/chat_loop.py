"""`regionvlm chat`: a conversation read line by line from stdin (a terminal or a pipe).

Lines starting with "/" are commands; any other non-blank line is a question, in which
regions are referred to as [0], [1], ... `--layout` chooses how turns reach the language model (see
`interactive.chat`): released (default) or history (answers fed back).

    /region {"box": [0.1, 0.2, 0.5, 0.9]}   add a region (JSON); prints its index
    /points [32 64] [37 62]                 add a region (point text)
    /regions                                list the regions
    /reset                                  forget turns and regions (/reset turns: keep regions)
    /export PATH                            write the session JSON
    /help                                   this text
    /quit                                   end (so does end of input)

Text mode prints each answer on its own line of stdout; notices (history cut, region added)
and errors go to stderr. --json prints one JSON object per event on stdout. A rejected line
is reported and the chat goes on; the exit code is then 1.
"""
from __future__ import annotations

import json
from typing import Any, TextIO

from lavis_regionvlm.cli.common import EXIT_FAILED, EXIT_OK, PROG, CliError, generate_kwargs
from lavis_regionvlm.interactive.chat import Chat, ChatError
from lavis_regionvlm.regions import RegionError
from lavis_regionvlm.regions.region_input import read_region, region_json

HELP = __doc__.split("\n\n")[2]


def run_chat(args, predictor, regions: list, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """The loop; returns the exit code (0, or 1 when some line was rejected)."""
    try:
        chat = Chat(predictor, layout=args.layout, max_input_tokens=args.max_input_tokens,
                    feed_answers=False if args.no_feed_answers else None, generate_kwargs=generate_kwargs(args))
    except ValueError as exc:  # the options Chat checks: max_input_tokens, and the layout's feed_answers
        option = "--max-input-tokens" if "max_input_tokens" in str(exc) else "--layout"
        raise CliError(f"{option}: {exc}") from None
    if args.replay:
        try:
            chat = Chat.from_session(args.replay, predictor)
        except ChatError as exc:
            raise CliError(f"--replay: {exc}") from None
        for turn in chat.turns:
            _emit(args, stdout, stderr, {"event": "replayed", "user": turn.user, "answer": turn.answer},
                  text=turn.answer)
    for region in regions:
        _added(args, chat, chat.add_region(region), stdout, stderr)
    interactive = stdin.isatty()
    failed = False
    line_number = 0
    while True:
        if interactive:
            stdout.write("you> ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            break
        line_number += 1
        line = line.strip()
        if not line:
            continue
        try:
            if not _handle(args, chat, line, stdout, stderr):
                break
        except (ChatError, RegionError, OSError, ValueError) as exc:
            failed = True
            _emit(args, stdout, stderr, {"event": "error", "line": line_number, "message": str(exc)},
                  error=f"{PROG} chat: error on input line {line_number}: {exc}")
    if args.export:
        path = chat.save(args.export)
        _emit(args, stdout, stderr, {"event": "export", "path": str(path)}, note=f"session written to {path}")
    return EXIT_FAILED if failed else EXIT_OK


def _handle(args, chat: Chat, line: str, stdout: TextIO, stderr: TextIO) -> bool:
    """One input line; False ends the chat."""
    if not line.startswith("/"):
        reply = chat.ask(line)
        if reply.notice:
            _emit(args, stdout, stderr, {"event": "notice", "message": reply.notice}, note=reply.notice)
        _emit(args, stdout, stderr, {"event": "answer", "turn": len(chat.turns) - 1, **reply.to_json()},
              text=reply.answer)
        return True
    command, _, rest = line.partition(" ")
    rest = rest.strip()
    if command in ("/quit", "/exit"):
        return False
    if command == "/region":
        if not rest:
            raise ChatError('/region needs a JSON object, e.g. /region {"points": [[0.3, 0.6]]}')
        _added(args, chat, chat.add_region(read_region(rest, "/region")), stdout, stderr)
    elif command == "/points":
        if not rest or rest.startswith("{"):
            raise ChatError("/points needs point text, e.g. /points [32 64] [37 62] (a JSON region: /region)")
        _added(args, chat, chat.add_region(read_region(rest, "/points")), stdout, stderr)
    elif command == "/regions":
        listing = [{"index": i, "region": region_json(r)} for i, r in enumerate(chat.regions)]
        _emit(args, stdout, stderr, {"event": "regions", "regions": listing},
              note="\n".join(f"[{i}] {r!r}" for i, r in enumerate(chat.regions)) or "no regions")
    elif command == "/reset":
        keep = rest == "turns"
        chat.reset(keep_regions=keep)
        _emit(args, stdout, stderr, {"event": "reset", "kept_regions": keep},
              note="turns forgotten" + ("" if keep else ", regions too"))
    elif command == "/export":
        if not rest:
            raise ChatError("/export needs a file path")
        path = chat.save(rest)
        _emit(args, stdout, stderr, {"event": "export", "path": str(path)}, note=f"session written to {path}")
    elif command == "/help":
        _emit(args, stdout, stderr, {"event": "help", "text": HELP}, note=HELP)
    else:
        raise ChatError(f"unknown command {command!r}; try /help")
    return True


def _added(args, chat: Chat, index: int, stdout: TextIO, stderr: TextIO) -> None:
    region = chat.regions[index]
    _emit(args, stdout, stderr, {"event": "region", "index": index, "region": region_json(region)},
          note=f"region [{index}] added: {region!r}; refer to it as [{index}]")


def _emit(args, stdout: TextIO, stderr: TextIO, event: dict[str, Any], *, text: str | None = None,
          note: str | None = None, error: str | None = None) -> None:
    """JSON mode: the event as one line on stdout. Text mode: `text` on stdout, `note`/`error` on stderr."""
    if args.json:
        print(json.dumps(event), file=stdout, flush=True)
        return
    if text is not None:
        print(text, file=stdout, flush=True)
    for message in (note, error):
        if message is not None:
            print(message, file=stderr, flush=True)
