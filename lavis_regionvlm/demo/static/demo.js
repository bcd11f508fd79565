// RegionVLM demo page: a client of the JSON API in lavis_regionvlm/demo/app.py.
// Coordinates sent to the server are relative to the image: x, y in [0, 1].
"use strict";

const COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"];
const MAX_CANVAS_SIDE = 640;

// The page's whole state; exposed as window.demo for tests and curious users.
const demo = {
  info: null,          // GET /api/info
  session: null,       // session id
  image: null,         // HTMLImageElement of the upload
  regions: [],         // server records: {index, region, point_text, sent_points}
  drawing: [],         // points being drawn: [[x, y], ...] (a click list or one scribble)
  stroking: false,     // mouse button down in scribble mode
  busy: 0,             // requests in flight
};
window.demo = demo;

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const context = canvas.getContext("2d");

function mode() {
  return document.querySelector("input[name=mode]:checked").value;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body instanceof FormData) {
    options.body = body;
  } else if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  demo.busy += 1;
  document.body.style.cursor = "progress";
  try {
    const response = await fetch(path, options);
    const payload = response.status === 204 ? {} : await response.json();
    if (!response.ok) {
      throw new Error(payload.error || `${method} ${path} failed with status ${response.status}`);
    }
    showError("");
    return payload;
  } finally {
    demo.busy -= 1;
    if (!demo.busy) document.body.style.cursor = "";
  }
}

function sessionPath(suffix) {
  return `/api/sessions/${encodeURIComponent(demo.session)}${suffix}`;
}

// ------------------------------------------------------------------ drawing

function toPixels([x, y]) {
  return [x * canvas.width, y * canvas.height];
}

function dot(point, radius, fill, stroke) {
  const [x, y] = toPixels(point);
  context.beginPath();
  context.arc(x, y, radius, 0, 2 * Math.PI);
  if (fill) { context.fillStyle = fill; context.fill(); }
  if (stroke) { context.strokeStyle = stroke; context.lineWidth = 2; context.stroke(); }
}

function polyline(points, colour, dashed) {
  if (points.length < 2) return;
  context.beginPath();
  context.setLineDash(dashed ? [6, 4] : []);
  context.strokeStyle = colour;
  context.lineWidth = 3;
  points.forEach((point, i) => {
    const [x, y] = toPixels(point);
    if (i === 0) context.moveTo(x, y); else context.lineTo(x, y);
  });
  context.stroke();
  context.setLineDash([]);
}

function drawInput(region, colour, dashed) {
  const kind = Object.keys(region)[0];
  if (kind === "scribble") polyline(region.scribble, colour, dashed);
  else if (kind === "points") region.points.forEach((p) => dot(p, 6, null, colour));
}

function redraw() {
  context.clearRect(0, 0, canvas.width, canvas.height);
  if (!demo.image) return;
  context.drawImage(demo.image, 0, 0, canvas.width, canvas.height);
  demo.regions.forEach((record) => {
    const colour = COLOURS[record.index % COLOURS.length];
    drawInput(record.region, colour, false);
    record.sent_points.forEach((p) => dot(p, 4, colour, "#fff"));
  });
  const colour = COLOURS[demo.regions.length % COLOURS.length];
  drawInput(currentRegion(), colour, true);
  demo.drawing.length && mode() === "points" && demo.drawing.forEach((p) => dot(p, 3, colour, null));
}

function currentRegion() {
  return mode() === "scribble" ? { scribble: demo.drawing } : { points: demo.drawing };
}

function eventPoint(event) {
  const box = canvas.getBoundingClientRect();
  const clamp = (v) => Math.min(1, Math.max(0, v));
  return [clamp((event.clientX - box.left) / box.width), clamp((event.clientY - box.top) / box.height)];
}

canvas.addEventListener("pointerdown", (event) => {
  if (!demo.session) return;
  if (mode() === "points") {
    demo.drawing.push(eventPoint(event));
  } else {
    demo.drawing = [eventPoint(event)];  // one stroke per scribble region: a new one replaces it
    demo.stroking = true;
    canvas.setPointerCapture(event.pointerId);
  }
  updateButtons();
  redraw();
});
canvas.addEventListener("pointermove", (event) => {
  if (!demo.stroking) return;
  demo.drawing.push(eventPoint(event));
  redraw();
});
canvas.addEventListener("pointerup", () => { demo.stroking = false; updateButtons(); });

document.querySelectorAll("input[name=mode]").forEach((radio) =>
  radio.addEventListener("change", () => { demo.drawing = []; updateButtons(); redraw(); }));

// ------------------------------------------------------------------ regions

function renderRegions() {
  const list = $("regions");
  list.replaceChildren();
  demo.regions.forEach((record) => {
    const item = document.createElement("li");
    item.dataset.index = record.index;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = COLOURS[record.index % COLOURS.length];
    const label = document.createElement("span");
    label.textContent = `[${record.index}] `;
    const text = document.createElement("code");
    text.textContent = record.point_text;
    item.append(swatch, label, text, button("caption", guarded(() => captionRegion(record.index))),
                button("attention", guarded(() => attentionOf(record.index))));
    list.append(item);
  });
}

function button(text, onClick) {
  const element = document.createElement("button");
  element.textContent = text;
  element.addEventListener("click", onClick);
  return element;
}

async function addRegion() {
  const record = await api("POST", sessionPath("/regions"), { region: currentRegion() });
  demo.regions.push(record);
  demo.drawing = [];
  renderRegions();
  updateButtons();
  redraw();
}

async function undo() {
  if (demo.drawing.length) {
    if (mode() === "points") demo.drawing.pop(); else demo.drawing = [];
  } else if (demo.regions.length) {
    await api("DELETE", sessionPath("/regions/last"));
    demo.regions.pop();
    renderRegions();
  }
  updateButtons();
  redraw();
}

// ------------------------------------------------------------------ talking

function say(kind, text) {
  const message = document.createElement("div");
  message.className = `message ${kind}`;
  message.textContent = text;
  $("messages").append(message);
  message.scrollIntoView({ block: "end" });
}

async function sendMessage(event) {
  event.preventDefault();
  const text = $("message").value.trim();
  if (!text) return;
  say("user", text);
  $("message").value = "";
  try {
    const reply = await api("POST", sessionPath("/chat"), { message: text });
    if (reply.notice) say("notice", reply.notice);
    say("bot", reply.answer || "(empty answer)");
  } catch (error) {
    showError(error.message);
  }
}

async function captionRegion(index) {
  const reply = await api("POST", sessionPath("/caption"), { region: index });
  say("bot", `[${index}]: ${reply.caption || "(empty caption)"}`);
}

function showPicture(url, caption) {
  $("result-image").src = url;
  $("result-caption").textContent = caption;
  $("result").hidden = false;
}

async function attentionOf(index) {
  const reply = await api("POST", sessionPath("/attention"), { region: index });
  showPicture(reply.overlay, `Where the Q-Former's queries look for region [${index}] (cross-attention)`);
}

async function segment(event) {
  event.preventDefault();
  const expression = $("expression").value.trim();
  if (!expression) return;
  const reply = await api("POST", sessionPath("/segment"), { expression });
  const what = reply.proposal >= 0 ? `proposal ${reply.proposal} of ${reply.proposal_ids.length}` : "no proposal";
  showPicture(reply.overlay, `"${expression}": ${what}`);
}

async function resetChat() {
  await api("POST", sessionPath("/reset"), { keep_regions: true });
  $("messages").replaceChildren();
}

async function exportSession() {
  const record = await api("GET", sessionPath("/export"));
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([JSON.stringify(record, null, 1)], { type: "application/json" }));
  link.download = "regionvlm_session.json";
  link.click();
  URL.revokeObjectURL(link.href);
}

// ------------------------------------------------------------------ the image

async function upload(file) {
  if (demo.info && file.size > demo.info.limits.max_bytes) {
    showError(`${file.name} is ${(file.size / 1048576).toFixed(1)} MiB; the server accepts at most ` +
              `${(demo.info.limits.max_bytes / 1048576).toFixed(1)} MiB`);
    return;
  }
  const form = new FormData();
  form.append("image", file);
  const summary = await api("POST", "/api/sessions", form);
  const image = new Image();
  image.src = URL.createObjectURL(file);
  await image.decode();
  const scale = Math.min(1, MAX_CANVAS_SIDE / Math.max(image.width, image.height));
  const upscale = Math.max(1, Math.floor(MAX_CANVAS_SIDE / 2 / Math.max(image.width, image.height)));
  canvas.width = Math.round(image.width * scale * upscale);
  canvas.height = Math.round(image.height * scale * upscale);
  context.imageSmoothingEnabled = upscale === 1;
  Object.assign(demo, { session: summary.session, image, regions: [], drawing: [] });
  $("messages").replaceChildren();
  $("result").hidden = true;
  renderRegions();
  updateButtons();
  redraw();
  canvas.dataset.ready = "true";
}

function updateButtons() {
  const open = Boolean(demo.session);
  $("add-region").disabled = !open || !demo.drawing.length;
  $("undo").disabled = !open || (!demo.drawing.length && !demo.regions.length);
  ["message", "send", "reset", "export"].forEach((id) => { $(id).disabled = !open; });
  const segmentation = open && demo.info && demo.info.segmentation;
  ["expression", "segment"].forEach((id) => { $(id).disabled = !segmentation; });
}

function guarded(action) {
  return (...args) => action(...args).catch((error) => showError(error.message));
}

$("image-input").addEventListener("change", guarded(async (event) => {
  if (event.target.files.length) await upload(event.target.files[0]);
}));
$("add-region").addEventListener("click", guarded(addRegion));
$("undo").addEventListener("click", guarded(undo));
$("chat-form").addEventListener("submit", guarded(sendMessage));
$("segment-form").addEventListener("submit", guarded(segment));
$("reset").addEventListener("click", guarded(resetChat));
$("export").addEventListener("click", guarded(exportSession));

guarded(async () => {
  demo.info = await api("GET", "/api/info");
  $("model-info").textContent = `model ${demo.info.model_type || "?"}, K = ${demo.info.num_points} points, ` +
    `seed ${demo.info.seed}` + (demo.info.segmentation ? ", segmentation on" : "");
  $("segment").title = demo.info.segmentation ? "" : "start the demo with --sam-type to segment";
  updateButtons();
})();
