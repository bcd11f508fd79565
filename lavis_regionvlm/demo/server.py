"""Start the demo: load the model (and SAM), build the app, serve it with uvicorn.

    regionvlm demo [--model-type tiny] [--checkpoint PATH] [--host 127.0.0.1] [--port 7860]
                   [--sam-type vit_h --sam-checkpoint sam_vit_h_4b8939.pth | --sam-type tiny]

Bound to 127.0.0.1 (this machine only) unless `--host` says otherwise.
"""
from __future__ import annotations

import argparse
import logging
import socket
import threading
from dataclasses import dataclass
from typing import Any, Optional

from lavis_regionvlm.demo.app import DemoConfig, create_app
from lavis_regionvlm.demo.uploads import UploadLimits

logger = logging.getLogger(__name__)

__all__ = ["add_demo_arguments", "check_demo_options", "demo_config", "mask_generator", "RunningServer", "start_server", "serve"]

LOCALHOST = "127.0.0.1"
BACKLOG = 128
TINY_GENERATOR_OPTIONS = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's own options (the model options come from the CLI's common ones)."""
    parser.add_argument("--host", default=LOCALHOST, help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860; 0: any free port)")
    parser.add_argument("--sam-type", default=None, help="SAM model type for segmentation: vit_h, vit_l, vit_b or tiny")
    parser.add_argument("--sam-checkpoint", default=None, help="SAM weights (e.g. sam_vit_h_4b8939.pth)")
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="largest image file accepted (MiB)")
    parser.add_argument("--max-image-mp", type=float, default=24.0, help="largest image accepted (megapixels)")
    parser.add_argument("--max-image-side", type=int, default=8192, help="largest image width or height (pixels)")
    parser.add_argument("--max-sessions", type=int, default=32, help="sessions kept at once (least recently used go)")


def check_demo_options(args: argparse.Namespace) -> None:
    """Raise ValueError for demo options that cannot work (before anything loads)."""
    for name in ("max_upload_mb", "max_image_mp", "max_image_side", "max_sessions"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.sam_checkpoint and not args.sam_type:
        raise ValueError("--sam-checkpoint needs --sam-type (vit_h, vit_l or vit_b)")


def demo_config(args: argparse.Namespace, device: str = "cpu") -> DemoConfig:
    """`DemoConfig` from parsed demo options (builds SAM's mask generator when asked)."""
    check_demo_options(args)
    generator = mask_generator(args.sam_type, args.sam_checkpoint, device) if args.sam_type else None
    limits = UploadLimits(max_bytes=int(args.max_upload_mb * 1024 * 1024),
                          max_pixels=int(args.max_image_mp * 1e6), max_side=args.max_image_side)
    return DemoConfig(limits=limits, max_sessions=args.max_sessions, mask_generator=generator)


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
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)  # connections queue from now on, before uvicorn starts accepting
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror} (choose another --port, or 0 for any)") from None
    return sock


def _uvicorn_server(app, sock: socket.socket, log_level: str):
    import uvicorn

    host, port = sock.getsockname()[:2]
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False))


def start_server(app, host: str = LOCALHOST, port: int = 0, log_level: str = "warning") -> RunningServer:
    """Serve `app` from a background thread (port 0: any free port); returns once it listens."""
    sock = _bind(host, port)
    server = _uvicorn_server(app, sock, log_level)
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
    _uvicorn_server(app, sock, "info").run(sockets=[sock])
