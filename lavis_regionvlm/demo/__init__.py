"""The web demo: a JSON HTTP API over `RegionPredictor` and `Chat`, and a page that uses it.

    regionvlm demo --model-type tiny            # then open http://127.0.0.1:7860

`create_app(predictor, DemoConfig(...))` builds the FastAPI app; `start_server` runs it in a
background thread (tests, notebooks); `serve` runs it in the foreground (the CLI). Every
request is bounded by `RequestLimits` (per request) and `ServerLimits` (connections), each
limit a `regionvlm demo` option (see docs/demo_api.md).
"""
from lavis_regionvlm.demo.app import DemoConfig, create_app
from lavis_regionvlm.demo.limits import RequestLimits
from lavis_regionvlm.demo.server import RunningServer, ServerLimits, serve, start_server
from lavis_regionvlm.demo.uploads import UploadLimits

__all__ = ["DemoConfig", "create_app", "RequestLimits", "RunningServer", "ServerLimits", "serve", "start_server",
           "UploadLimits"]
