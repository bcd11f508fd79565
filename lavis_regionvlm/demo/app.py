"""The web demo's HTTP server: a JSON API for programs, and the page that uses it.

Every operation of the page is an API call, so what a user does in the browser a program
can do with curl (see `docs/demo_api.md`; `GET /openapi.json` has the schema):

    POST   /api/sessions                     upload an image (multipart field "image") -> session
    GET    /api/sessions/{id}                the session: image, regions, turns, settings
    DELETE /api/sessions/{id}                forget it
    POST   /api/sessions/{id}/regions        add a region {"region": {...}} -> index, K points sent
    POST   /api/sessions/{id}/regions/mask   add a region from a mask PNG (multipart field "mask")
    DELETE /api/sessions/{id}/regions/last   undo the last region
    POST   /api/sessions/{id}/sam            {"points": [[x, y]], "labels": [1], "box": null} -> SAM's mask
    POST   /api/sessions/{id}/chat           {"message": "what is [0]?"} -> answer
    POST   /api/sessions/{id}/caption        {"region": 0 | {...} | "[32 64]" | null} -> caption
    POST   /api/sessions/{id}/ask            {"question": "...", "region": ...} -> answer
    POST   /api/sessions/{id}/score          {"texts": [...], "region": ...} -> losses (nats)
    POST   /api/sessions/{id}/segment        {"expression": "...", "top": 5} -> mask (COCO RLE), top proposals, overlay
    POST   /api/sessions/{id}/attention      {"region": ...} -> attention overlay PNG
    POST   /api/sessions/{id}/reset          {"keep_regions": false} -> clears the chat
    GET    /api/sessions/{id}/export         the chat session JSON (replayable with `Chat.replay`)

Every error is JSON `{"error": "<what was wrong and where>"}`: 400 (bad input), 404 (unknown
session or route), 405 (wrong method), 408 (body too slow), 409 (conflict), 413 (over a size
limit), 422 (malformed request), 503 (busy), 500 (a bug: the traceback is in the server log,
never in the answer). Every request is bounded in memory and time by `RequestLimits` (each a
server option, named in the refusal) and by `guard.Guard` (Host check, body size counted while
it streams, body timeout, requests at once).
"""
from __future__ import annotations

import base64
import dataclasses
import io
import re
import threading
from dataclasses import asdict, dataclass
from functools import partial
from importlib import resources
from typing import Any, Optional, Union

import numpy as np
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from lavis_regionvlm.common.overlay import mask_overlay
from lavis_regionvlm.demo.guard import LOCAL_HOSTS, Guard
from lavis_regionvlm.demo.limits import RequestLimits, TokenCounter
from lavis_regionvlm.demo.sam_clicks import ClickPrompt
from lavis_regionvlm.demo.sessions import DemoSession, SessionStore, UnknownSessionError
from lavis_regionvlm.demo.uploads import UploadLimits, read_mask_upload, read_upload
from lavis_regionvlm.interactive.chat import RELEASED, Chat, check_layout
from lavis_regionvlm.interactive.predictor import RegionPredictor
from lavis_regionvlm.regions import Region
from lavis_regionvlm.regions.masks import mask_to_rle
from lavis_regionvlm.regions.region_input import read_region
from lavis_regionvlm.ris.pipeline import RisOptions
from lavis_regionvlm.ris.segment import segment as segment_image

__all__ = ["create_app", "DemoConfig"]

RegionField = Union[int, dict[str, Any], str, None]
REGION_HELP = ('a region index of the session (0, 1, ...), a region object ({"points": [[x, y], ...]}, '
               '{"scribble": ...}, {"box": ...}, {"rle": ...}), point text "[32 64] [37 62]" (used as given), or null / "" for the whole image')
STATIC = resources.files("lavis_regionvlm.demo") / "static"
MULTIPART_OVERHEAD_BYTES = 64 * 1024
UPLOAD_ROUTES = re.compile(r"/api/sessions(/[^/]+/regions/mask)?")  # multipart file uploads (POST)


@dataclass(frozen=True)
class DemoConfig:
    """Server settings. limits: upload limits. requests: per-request limits (`RequestLimits`).
    max_sessions / idle_seconds: see `SessionStore`. mask_generator: SAM's automatic mask
    generator for `segment` (None: segmentation is refused with a message). allowed_hosts: host
    names accepted in the Host header (None: any; the default suits a server bound to this
    machine, see `guard`). chat_layout: the chat's input layout, "released" (their
    multi-turn layout) or "history" (ours, answers fed back); see `interactive.chat`.
    sam_model: the SAM (`segment_anything.modeling.Sam`) for click-to-mask (/sam); None: the
    mask generator's own (`mask_generator.predictor.model`) when it has one, else /sam is
    refused with a message."""

    limits: UploadLimits = UploadLimits()
    requests: RequestLimits = RequestLimits()
    max_sessions: int = 32
    idle_seconds: float = 3600.0
    mask_generator: Any = None
    allowed_hosts: Optional[tuple[str, ...]] = LOCAL_HOSTS
    chat_layout: str = RELEASED
    sam_model: Any = None

    def click_sam(self) -> Any:
        """The SAM click-to-mask runs on (None: click-to-mask is off)."""
        if self.sam_model is not None:
            return self.sam_model
        return getattr(getattr(self.mask_generator, "predictor", None), "model", None)


class RegionBody(BaseModel):
    region: RegionField = Field(None, description=REGION_HELP)


class ChatBody(BaseModel):
    message: str = Field(..., description='the user\'s text; refer to regions as "[0]", "[1]"')


class AskBody(RegionBody):
    question: str


class ScoreBody(RegionBody):
    texts: list[str] = Field(..., min_length=1)


class SegmentBody(BaseModel):
    expression: str = Field(..., min_length=1)
    top: int = Field(5, ge=0, description="how many of the best-scored proposals to return with their masks")


class SamBody(BaseModel):
    points: list[list[float]] = Field([], description="clicks, relative [x, y] in [0, 1]")
    labels: Optional[list[int]] = Field(None, description="one a click: 1 on the object, 0 not on it (default: all 1)")
    box: Optional[list[float]] = Field(None, description="relative [x1, y1, x2, y2]")


class ResetBody(BaseModel):
    keep_regions: bool = False


def png_data_url(image: Image.Image) -> str:
    """A PIL image as a `data:image/png;base64,...` URL."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def mask_resized(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) bool mask -> (height, width) bool by nearest neighbour; size is (width, height)."""
    if mask.shape == (size[1], size[0]):
        return mask
    return np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))


def top_proposals(ids: list[int], scores: list[float], proposals: list[dict], count: int) -> list[dict[str, Any]]:
    """The `count` best-scored proposals (lowest score first: scores are nats): each its index
    `proposal`, `score` and mask `rle` (COCO RLE at the work image's size, as SAM made it)."""
    order = sorted(range(len(ids)), key=lambda i: scores[i])[:count]
    return [{"proposal": ids[i], "score": round(float(scores[i]), 5), "rle": proposals[ids[i]]["segmentation"]}
            for i in order]


BODY_ERRORS = {  # what FastAPI's "There was an error parsing the body" was caused by
    UnicodeDecodeError: "the body is not valid UTF-8 JSON",
    RecursionError: "the body is nested too deeply",
}


def http_error_message(request: Request, exc: StarletteHTTPException) -> str:
    """What went wrong, for the errors Starlette and FastAPI raise themselves."""
    if exc.status_code == 404 and exc.detail == "Not Found":
        return f"no such route: {request.method} {request.url.path} (the routes are listed at /openapi.json)"
    if exc.status_code == 405:
        return f"{request.method} is not allowed on {request.url.path} (the methods are listed at /openapi.json)"
    if exc.status_code == 400 and type(exc.__cause__) in BODY_ERRORS:
        return BODY_ERRORS[type(exc.__cause__)]
    return str(exc.detail)


def create_app(predictor: RegionPredictor, config: Optional[DemoConfig] = None) -> FastAPI:
    """The demo app around a loaded predictor (its model is shared by all sessions)."""
    config = config or DemoConfig()
    limits = config.requests
    store = SessionStore(predictor, partial(Chat, layout=check_layout(config.chat_layout)),
                         max_sessions=config.max_sessions, idle_seconds=config.idle_seconds)
    model_lock = threading.Lock()  # one model, many request threads: one call at a time
    sam = config.click_sam()
    tokens = TokenCounter(predictor.model.lm.tokenizer)
    app = FastAPI(title="RegionVLM demo", description=__doc__, version="1")
    app.state.sessions = store
    upload_limit = (config.limits.max_bytes + MULTIPART_OVERHEAD_BYTES, "upload limit", "server option --max-upload-mb")
    app.add_middleware(
        Guard, max_body_bytes=limits.max_body_bytes,
        body_limit_for=lambda method, path: upload_limit if method == "POST" and UPLOAD_ROUTES.fullmatch(path)
        else None,
        body_timeout_s=limits.body_timeout_s, max_active_requests=limits.max_active_requests,
        allowed_hosts=config.allowed_hosts,
    )

    def region_of(session: DemoSession, region: RegionField):
        limits.check_region(region)
        if isinstance(region, bool):
            raise ValueError(f"region: expected {REGION_HELP}; got {region!r}")
        if isinstance(region, int):
            count = len(session.chat.regions)
            if not 0 <= region < count:
                have = f"regions 0..{count - 1}" if count else "no regions yet"
                raise ValueError(f"region index {region}: the session has {have}")
            return session.chat.regions[region]
        return read_region(region)

    @app.exception_handler(UnknownSessionError)
    async def unknown_session(request: Request, exc: UnknownSessionError):
        return JSONResponse({"error": str(exc)}, status_code=404)

    @app.exception_handler(ValueError)
    async def bad_input(request: Request, exc: ValueError):
        return JSONResponse({"error": str(exc)}, status_code=getattr(exc, "status", 400))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": http_error_message(request, exc)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError):
        problems = []
        for error in exc.errors():
            location = [str(part) for part in error.get("loc", ()) if part != "body"]
            if error.get("type") == "json_invalid":
                reason = (error.get("ctx") or {}).get("error", error.get("msg"))
                problems.append(f"the body is not valid JSON (at character {''.join(location) or '?'}): {reason}")
            else:
                problems.append(f"{'.'.join(location) or 'body'}: {error.get('msg')}")
        details = [{k: v for k, v in error.items() if k != "input"} for error in exc.errors()]  # no echo
        return JSONResponse({"error": "malformed request: " + "; ".join(problems),
                             "details": jsonable_encoder(details)},
                            status_code=422)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(str(STATIC / "index.html"))

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/api/info")
    def info():
        """Model settings and server limits (what the page shows and checks)."""
        return {**predictor.settings, "limits": {**asdict(config.limits), **asdict(limits)},
                "segmentation": config.mask_generator is not None, "click_to_mask": sam is not None}

    @app.post("/api/sessions", status_code=201)
    def create_session(image: UploadFile = File(..., description="the image file")):
        """Upload an image: a new session (the ViT runs once here)."""
        rgb = read_upload(image.file, config.limits, image.filename or "upload")
        with model_lock:
            session = store.create(rgb)
        return session.summary()

    @app.get("/api/sessions/{session_id}")
    def get_session(session_id: str):
        session = store.get(session_id)
        with session.lock:
            return session.summary()

    @app.delete("/api/sessions/{session_id}", status_code=204)
    def delete_session(session_id: str):
        store.delete(session_id)

    @app.post("/api/sessions/{session_id}/regions", status_code=201)
    def add_region(session_id: str, body: RegionBody):
        """Add a region; returns its index and the K points the model will read."""
        session = store.get(session_id)
        if body.region is None or isinstance(body.region, int):
            raise ValueError(f"region: give the region itself ({REGION_HELP.split(', ', 1)[1]})")
        limits.check_region(body.region)
        with session.lock, model_lock:
            limits.check_region_count(len(session.chat.regions))
            index = session.chat.add_region(body.region)
            return session.region_record(index)

    @app.post("/api/sessions/{session_id}/regions/mask", status_code=201)
    def add_mask_region(session_id: str, mask: UploadFile = File(..., description="a PNG: its non-zero pixels")):
        """Add a region from a mask picture: a PNG at the image's size whose non-zero pixels
        are the region; returns what POST .../regions returns."""
        session = store.get(session_id)
        pixels = read_mask_upload(mask.file, config.limits, session.predictor.image_size, limits.max_mask_pixels,
                                  mask.filename or "mask.png")
        with session.lock, model_lock:
            limits.check_region_count(len(session.chat.regions))
            index = session.chat.add_region(Region.from_mask(pixels))
            return session.region_record(index)

    @app.post("/api/sessions/{session_id}/sam")
    def sam_mask(session_id: str, body: SamBody):
        """SAM click-to-mask: clicks (1 on the object, 0 not) and / or a box -> SAM's mask as
        COCO RLE at the work image's size (add it with POST .../regions {"region": {"rle": ...}})
        and SAM's score (its predicted IoU). The image embedding is computed on the session's
        first call and kept; a prompt that adds clicks to the previous one refines its mask."""
        session = store.get(session_id)
        if sam is None:
            return JSONResponse({"error": "click-to-mask is off: start the demo with --sam-type and --sam-checkpoint "
                                          "(or --sam-type tiny for a random-weight SAM)"}, status_code=409)
        prompt = ClickPrompt.from_request(body.points, body.labels, body.box, limits.max_sam_clicks)
        with session.lock, model_lock:
            result = session.click_segmenter(sam, limits.max_work_side).predict(prompt)
        return {"rle": mask_to_rle(result.mask), "score": round(result.score, 5), "refined": result.refined}

    @app.delete("/api/sessions/{session_id}/regions/last")
    def remove_last_region(session_id: str):
        """Undo the last region (refused while a turn refers to it)."""
        session = store.get(session_id)
        with session.lock:
            if not session.chat.regions:
                raise ValueError("there is no region to remove")
            last = len(session.chat.regions) - 1
            users = [n for n, turn in enumerate(session.chat.turns) if last in turn.regions]
            if users:
                return JSONResponse({"error": f"region [{last}] is referred to by turn(s) {users}; reset the chat "
                                              "before removing it"}, status_code=409)
            session.chat.regions.pop()
        return {"regions": len(session.chat.regions)}

    @app.post("/api/sessions/{session_id}/chat")
    def chat(session_id: str, body: ChatBody):
        """One chat turn; regions are referred to as [0], [1], ..."""
        session = store.get(session_id)
        with session.lock, model_lock:
            return session.chat.ask(body.message).to_json()

    @app.post("/api/sessions/{session_id}/caption")
    def caption(session_id: str, body: RegionBody):
        session = store.get(session_id)
        with session.lock, model_lock:
            region = region_of(session, body.region)
            return {"caption": session.predictor.caption(region), "point_text": session.predictor.region_text(region)}

    @app.post("/api/sessions/{session_id}/ask")
    def ask(session_id: str, body: AskBody):
        session = store.get(session_id)
        limits.check_text(tokens, body.question, "question")
        with session.lock, model_lock:
            region = region_of(session, body.region)
            return {"answer": session.predictor.ask(body.question, region),
                    "point_text": session.predictor.region_text(region)}

    @app.post("/api/sessions/{session_id}/score")
    def score(session_id: str, body: ScoreBody):
        """Mean token NLL (nats) of each text given the region; lower is more likely."""
        session = store.get(session_id)
        limits.check_score_texts(tokens, body.texts)
        with session.lock, model_lock:
            losses = session.predictor.score(body.texts, region_of(session, body.region))
        return {"texts": body.texts, "losses": [round(float(x), 5) for x in losses]}

    @app.post("/api/sessions/{session_id}/segment")
    def segment(session_id: str, body: SegmentBody):
        """The SAM proposal the expression refers to (COCO RLE at the image's size) and an
        overlay picture. SAM and the ranking work on the image scaled to at most
        `max_work_side` pixels a side; the chosen mask is scaled back to the image."""
        session = store.get(session_id)
        if config.mask_generator is None:
            return JSONResponse({"error": "segmentation is off: start the demo with --sam-checkpoint "
                                          "(or --sam-type tiny for a random-weight SAM)"}, status_code=409)
        limits.check_text(tokens, body.expression, "expression")
        limits.check_top(body.top)
        view = session.predictor
        with session.lock:
            work = session.work_image(limits.max_work_side)
            with model_lock:
                if session.proposals is None:
                    session.proposals = list(config.mask_generator.generate(np.asarray(work)))
                options = RisOptions(num_points=view.num_points, quantize=view.quantize, seed=view.seed)
                result = segment_image(view.model, view.vis_processor, work, body.expression,
                                       session.proposals, options, image_embeds=view.image_embeds)
            top = top_proposals(result.proposal_ids, result.scores, session.proposals, body.top)
        picture = mask_overlay(work, result.mask)
        if result.mask is not None:
            result = dataclasses.replace(result, mask=mask_resized(result.mask, view.image_size))
        return {**result.to_json(), "top": top, "overlay": png_data_url(picture)}

    @app.post("/api/sessions/{session_id}/attention")
    def attention(session_id: str, body: RegionBody):
        """The Q-Former queries' cross-attention over the image for a region, as an overlay
        (at most `max_work_side` pixels a side)."""
        session = store.get(session_id)
        with session.lock, model_lock:
            region = region_of(session, body.region)
            attention_map = session.predictor.attention_map(region)
            picture = attention_map.overlay(session.work_image(limits.max_work_side),
                                            points=attention_map.region_text != "")
        return {"overlay": png_data_url(picture), "point_text": attention_map.region_text}

    @app.post("/api/sessions/{session_id}/reset")
    def reset(session_id: str, body: ResetBody):
        session = store.get(session_id)
        with session.lock:
            session.chat.reset(keep_regions=body.keep_regions)
            return session.summary()

    @app.get("/api/sessions/{session_id}/export")
    def export(session_id: str):
        """The chat session (image hash, regions, turns, settings), replayable with `Chat.replay`."""
        session = store.get(session_id)
        with session.lock:
            record = session.chat.export()
        return JSONResponse(record, headers={"Content-Disposition": 'attachment; filename="regionvlm_session.json"'})

    return app
