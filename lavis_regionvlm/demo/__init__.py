"""The web demo: a JSON HTTP API over `RegionPredictor` and `Chat`, and a page that uses it.

    regionvlm demo --model-type tiny            # then open http://127.0.0.1:7860

`create_app(predictor, DemoConfig(...))` builds the FastAPI app; `start_server` runs it in a
background thread (tests, notebooks); `serve` runs it in the foreground (the CLI).
"""
from lavis_regionvlm.demo.app import DemoConfig, create_app
from lavis_regionvlm.demo.server import RunningServer, serve, start_server
from lavis_regionvlm.demo.uploads import UploadLimits

__all__ = ["DemoConfig", "create_app", "RunningServer", "serve", "start_server", "UploadLimits"]
