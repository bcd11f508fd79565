"""Start the demo: load the model (and SAM), build the app, serve it with uvicorn.

    regionvlm demo [--model-type tiny] [--checkpoint PATH] [--host 127.0.0.1] [--port 7860]
                   [--sam-type vit_h --sam-checkpoint sam_vit_h_4b8939.pth | --sam-type tiny]

Bound to 127.0.0.1 (this machine only) unless `--host` says otherwise; then only requests
whose Host header names this machine are answered (`--allowed-hosts` adds names).

Limits: every request is bounded by the options of `RequestLimits` (see `limits.py`); the
server itself by `ServerLimits`: at most `--max-connections` open connections (more are
closed as they arrive, and never more than the process's file-descriptor limit allows, so
that a flood of idle connections cannot exhaust it), a request's head must arrive within
`--header-timeout` seconds of the connection opening or of the previous answer, idle
keep-alive connections close after `--keep-alive-timeout`, and a request head is at most
`MAX_HEAD_BYTES`.
"""
from __future__ import annotations

import argparse
import logging
import resource
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

from lavis_regionvlm.demo.app import DemoConfig, create_app
from lavis_regionvlm.demo.guard import LOCAL_HOSTS
from lavis_regionvlm.demo.limits import RequestLimits
from lavis_regionvlm.demo.uploads import UploadLimits
from lavis_regionvlm.interactive.chat import LAYOUTS, RELEASED

logger = logging.getLogger(__name__)

__all__ = ["add_demo_arguments", "check_demo_options", "demo_config", "server_limits", "mask_generator",
           "RunningServer", "ServerLimits", "start_server", "serve"]

LOCALHOST = "127.0.0.1"
BACKLOG = 128
MAX_HEAD_BYTES = 16 * 1024  # request line + headers (h11's incomplete-event limit)
FD_RESERVE = 64  # file descriptors kept for the model, logs, uploads' temporary files


@dataclass(frozen=True)
class ServerLimits:
    """Connection-level limits (see the module docstring). Seconds and counts."""

    max_connections: int = 256
    header_timeout_s: float = 10.0
    keep_alive_s: float = 5.0
TINY_GENERATOR_OPTIONS = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's own options (the model options come from the CLI's common ones)."""
    parser.add_argument("--host", default=LOCALHOST, help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860; 0: any free port)")
    parser.add_argument("--sam-type", default=None,
                        help="SAM model type for segmentation and click-to-mask: vit_h, vit_l, vit_b or tiny")
    parser.add_argument("--sam-checkpoint", default=None, help="SAM weights (e.g. sam_vit_h_4b8939.pth)")
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="largest image file accepted (MiB)")
    parser.add_argument("--max-image-mp", type=float, default=24.0, help="largest image accepted (megapixels)")
    parser.add_argument("--max-image-side", type=int, default=8192, help="largest image width or height (pixels)")
    parser.add_argument("--max-sessions", type=int, default=32, help="sessions kept at once (least recently used go)")
    parser.add_argument("--chat-layout", choices=LAYOUTS, default=RELEASED,
                        help="the chat's input layout: released (the authors' multi-turn layout, default) "
                             "or history (ours: earlier turns with their answers)")
    defaults, server = RequestLimits(), ServerLimits()
    limits = parser.add_argument_group("request limits (each refusal names its option)")
    limits.add_argument("--max-body-mb", type=float, default=defaults.max_body_bytes / 2**20,
                        help="largest JSON request body (MiB), counted while it arrives")
    limits.add_argument("--max-text-tokens", type=int, default=defaults.max_text_tokens,
                        help="longest question (/ask), text (/score) or expression (/segment), in the model's tokens")
    limits.add_argument("--max-score-texts", type=int, default=defaults.max_score_texts,
                        help="most texts one /score request scores")
    limits.add_argument("--max-mask-mp", type=float, default=defaults.max_mask_pixels / 1e6,
                        help="largest region mask (RLE size or polygons canvas), megapixels")
    limits.add_argument("--max-regions", type=int, default=defaults.max_regions, help="most regions a session keeps")
    limits.add_argument("--max-work-side", type=int, default=defaults.max_work_side,
                        help="long side (pixels) SAM and the overlay pictures work at; masks are scaled back")
    limits.add_argument("--max-sam-clicks", type=int, default=defaults.max_sam_clicks,
                        help="most clicks in one SAM click-to-mask request (/sam)")
    limits.add_argument("--max-top-proposals", type=int, default=defaults.max_top_proposals,
                        help="most proposals, with their masks, one /segment returns as `top`")
    limits.add_argument("--max-active-requests", type=int, default=defaults.max_active_requests,
                        help="requests handled at once (more are answered 503)")
    limits.add_argument("--body-timeout", type=float, default=defaults.body_timeout_s,
                        help="seconds a request body may take to arrive")
    limits.add_argument("--max-connections", type=int, default=server.max_connections,
                        help="open connections at once (more are closed on arrival)")
    limits.add_argument("--header-timeout", type=float, default=server.header_timeout_s,
                        help="seconds a request's head may take to arrive")
    limits.add_argument("--keep-alive-timeout", type=float, default=server.keep_alive_s,
                        help="seconds an idle keep-alive connection stays open")
    limits.add_argument("--allowed-hosts", nargs="+", default=None, metavar="NAME",
                        help="host names accepted in the Host header besides localhost, 127.0.0.1 and ::1 "
                             "('*': any); with a --host other than this machine, only these are checked")


POSITIVE_OPTIONS = ("max_upload_mb", "max_image_mp", "max_image_side", "max_sessions", "max_body_mb",
                    "max_text_tokens", "max_score_texts", "max_mask_mp", "max_regions", "max_work_side",
                    "max_sam_clicks", "max_top_proposals",
                    "max_active_requests", "body_timeout", "max_connections", "header_timeout", "keep_alive_timeout")


def check_demo_options(args: argparse.Namespace) -> None:
    """Raise ValueError for demo options that cannot work (before anything loads)."""
    for name in POSITIVE_OPTIONS:
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.sam_checkpoint and not args.sam_type:
        raise ValueError("--sam-checkpoint needs --sam-type (vit_h, vit_l or vit_b)")


def allowed_hosts(host: str, extra: Optional[list[str]]) -> Optional[tuple[str, ...]]:
    """Host names the Host check accepts for a server bound to `host` (None: no check)."""
    extra = tuple(extra or ())
    if "*" in extra:
        return None
    if host in LOCAL_HOSTS or host == "localhost":
        return LOCAL_HOSTS + extra
    return extra or None  # bound to a network address: checked only when names are given


def demo_config(args: argparse.Namespace, device: str = "cpu") -> DemoConfig:
    """`DemoConfig` from parsed demo options (builds SAM's mask generator when asked)."""
    check_demo_options(args)
    generator = mask_generator(args.sam_type, args.sam_checkpoint, device) if args.sam_type else None
    limits = UploadLimits(max_bytes=int(args.max_upload_mb * 1024 * 1024),
                          max_pixels=int(args.max_image_mp * 1e6), max_side=args.max_image_side)
    requests = RequestLimits(
        max_body_bytes=int(args.max_body_mb * 2**20), max_text_tokens=args.max_text_tokens,
        max_score_texts=args.max_score_texts, max_mask_pixels=int(args.max_mask_mp * 1e6),
        max_regions=args.max_regions, max_work_side=args.max_work_side,
        max_sam_clicks=args.max_sam_clicks, max_top_proposals=args.max_top_proposals,
        max_active_requests=args.max_active_requests, body_timeout_s=args.body_timeout,
    )
    return DemoConfig(limits=limits, requests=requests, max_sessions=args.max_sessions, mask_generator=generator,
                      allowed_hosts=allowed_hosts(args.host, args.allowed_hosts), chat_layout=args.chat_layout)


def server_limits(args: argparse.Namespace) -> ServerLimits:
    """`ServerLimits` from parsed demo options."""
    return ServerLimits(max_connections=args.max_connections, header_timeout_s=args.header_timeout,
                        keep_alive_s=args.keep_alive_timeout)


def mask_generator(sam_type: str, checkpoint: Optional[str] = None, device: str = "cpu"):
    """SAM's automatic mask generator (COCO RLE output) for the demo's `segment`. The random
    `tiny` SAM gets a 4x4 point grid and no quality thresholds (its scores mean nothing)."""
    from segment_anything import SamAutomaticMaskGenerator

    from lavis_regionvlm.ris.sam import TINY, build_sam

    options = TINY_GENERATOR_OPTIONS if sam_type == TINY else {}
    return SamAutomaticMaskGenerator(build_sam(sam_type, checkpoint, device), output_mode="coco_rle", **options)


@dataclass
class RunningServer:
    """A demo server running in a background thread. url: where it listens."""

    url: str
    server: Any
    thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def _bind(host: str, port: int) -> socket.socket:
    # proto IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY on accepted connections only
    # when the socket says TCP, and without it each keep-alive answer waited ~40 ms (Nagle's
    # algorithm against the client's delayed ACK: uvicorn writes the head and the body apart)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)  # connections queue from now on, before uvicorn starts accepting
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror} (choose another --port, or 0 for any)") from None
    return sock


def connection_budget(wanted: int) -> int:
    """How many connections can be open at once: `wanted`, but below the process's limit on
    open files (raised to its hard maximum first), keeping `FD_RESERVE` for everything else."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    budget = min(wanted, soft - FD_RESERVE)
    if budget < wanted:
        logger.warning("--max-connections %d lowered to %d: the process may open %d files", wanted, budget, soft)
    return max(1, budget)


def guarded_protocol(limits: ServerLimits) -> type:
    """uvicorn's h11 protocol with a connection cap and a request-head timeout (uvicorn has
    neither: a connection that sends nothing, or half a head, stays open for ever)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    max_connections = connection_budget(limits.max_connections)
    last_warning = [0.0]

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._head_timer = None
            if len(self.connections) > max_connections:
                now = time.monotonic()
                if now - last_warning[0] > 10:  # one line per 10 s, however many arrive
                    last_warning[0] = now
                    logger.warning("closing new connections: %d are open, the limit (--max-connections)",
                                   max_connections)
                transport.close()
                return
            self._arm_head_timer()

        def _arm_head_timer(self) -> None:
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(limits.header_timeout_s, self._head_timed_out)

        def _cancel_head_timer(self) -> None:
            if getattr(self, "_head_timer", None) is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()  # no complete request head in time

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:
                self._cancel_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_head_timer()

        def connection_lost(self, exc) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

    GuardedH11Protocol.max_connections = max_connections
    return GuardedH11Protocol


def _uvicorn_server(app, sock: socket.socket, log_level: str, limits: ServerLimits):
    import uvicorn

    host, port = sock.getsockname()[:2]
    protocol = guarded_protocol(limits)
    return uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False, http=protocol,
        limit_concurrency=protocol.max_connections + 1,  # uvicorn's own cap, behind ours
        timeout_keep_alive=limits.keep_alive_s, h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    ))


def start_server(app, host: str = LOCALHOST, port: int = 0, log_level: str = "warning",
                 limits: ServerLimits = ServerLimits()) -> RunningServer:
    """Serve `app` from a background thread (port 0: any free port); returns once it listens."""
    sock = _bind(host, port)
    server = _uvicorn_server(app, sock, log_level, limits)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="regionvlm-demo")
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the demo server stopped while starting (see the log above)")
        thread.join(0.05)
    bound_host, bound_port = sock.getsockname()[:2]
    return RunningServer(f"http://{bound_host}:{bound_port}", server, thread)


def serve(predictor, args: argparse.Namespace, device: Optional[str] = None) -> None:
    """Build the app for `predictor` with the parsed demo options and serve until interrupted."""
    app = create_app(predictor, demo_config(args, device or str(predictor.device)))
    sock = _bind(args.host, args.port)
    if args.host not in (LOCALHOST, "localhost", "::1"):
        logger.warning("the demo listens on %s: anyone who can reach this address can use it", args.host)
    host, port = sock.getsockname()[:2]
    print(f"RegionVLM demo on http://{host}:{port}  (API: http://{host}:{port}/openapi.json; Ctrl+C stops)",
          flush=True)
    _uvicorn_server(app, sock, "info", server_limits(args)).run(sockets=[sock])
