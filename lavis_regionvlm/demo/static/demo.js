// RegionVLM demo page: a client of the JSON API in lavis_regionvlm/demo/app.py.
// Coordinates sent to the server are relative to the image: x, y in [0, 1].
// Region tools: points, scribble, box (drag), SAM click-to-mask (POST .../sam), mask upload
// (POST .../regions/mask). Keys: Enter adds the region being drawn (sends the message in the
// chat box), Escape cancels it, Ctrl/Cmd+Z undoes.
"use strict";

const COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"];
const SEGMENT_COLOUR = "#ffd400";
const MAX_CANVAS_SIDE = 640;
const DRAG_MIN = 0.01;  // a SAM press that moves less than this (relative) is a click, not a box

// The page's whole state; exposed as window.demo for tests and curious users.
const demo = {
  info: null,          // GET /api/info
  session: null,       // session id
  image: null,         // HTMLImageElement of the upload
  regions: [],         // server records: {index, region, point_text, sent_points}
  drawing: [],         // points being drawn: [[x, y], ...] (a click list or one scribble)
  box: null,           // [x1, y1, x2, y2] being dragged (box tool)
  drag: null,          // {start: [x, y], moved: bool} while the button is down (box and SAM tools)
  stroking: false,     // mouse button down in scribble mode
  sam: { points: [], labels: [], box: null, result: null },  // SAM prompt and its answer {rle, score, refined}
  samQueue: Promise.resolve(),  // SAM requests go one after another, in order
  segmentation: null,  // {expression, reply, shown: index into reply.top}
  highlight: null,     // index of the region whose row the mouse is over
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

// ------------------------------------------------------------------ masks (COCO RLE)

// COCO RLE {size: [h, w], counts} -> Uint8Array of h * w, column-major (as pycocotools).
// counts: the compressed string (pycocotools' rleToString) or the list of run lengths.
function decodeRle(rle) {
  const [height, width] = rle.size;
  const runs = Array.isArray(rle.counts) ? rle.counts : decodeCounts(rle.counts);
  const mask = new Uint8Array(height * width);
  let at = 0;
  runs.forEach((run, i) => {
    if (i % 2) mask.fill(1, at, Math.min(at + run, mask.length));
    at += run;
  });
  return mask;
}

function decodeCounts(text) {
  const runs = [];
  let p = 0;
  while (p < text.length) {
    let value = 0, shift = 0, more = true;
    while (more) {
      const c = text.charCodeAt(p) - 48;
      value |= (c & 0x1f) << shift;
      more = (c & 0x20) !== 0;
      p += 1;
      shift += 5;
      if (!more && (c & 0x10)) value |= -1 << shift;
    }
    if (runs.length > 2) value += runs[runs.length - 2];
    runs.push(value);
  }
  return runs;
}
window.decodeRle = decodeRle;

const maskPictures = new Map();  // "colour alpha size counts" -> canvas (masks are drawn often)

// A mask as a picture the size of the canvas: a tint of `colour` (opacity `alpha`) over its
// pixels (nearest neighbour) and an opaque outline one canvas pixel wide along its edge.
function maskPicture(rle, colour, alpha) {
  const [width, height] = [canvas.width, canvas.height];
  const key = `${colour} ${alpha} ${width}x${height} ${rle.size} ` +
    (Array.isArray(rle.counts) ? rle.counts.join(",") : rle.counts);
  if (maskPictures.has(key)) return maskPictures.get(key);
  const [rows, columns] = rle.size;
  const mask = decodeRle(rle);
  const nearest = (count, side) => Array.from({ length: count }, (_, i) => Math.min(side - 1, Math.floor((i + 0.5) * side / count)));
  const [column, row] = [nearest(width, columns), nearest(height, rows)];  // canvas pixel -> mask pixel
  const on = (x, y) => x >= 0 && y >= 0 && x < width && y < height && mask[column[x] * rows + row[y]] === 1;
  const picture = document.createElement("canvas");
  picture.width = width;
  picture.height = height;
  const pixels = picture.getContext("2d").createImageData(width, height);
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16));
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      if (!on(x, y)) continue;
      const edge = !(on(x - 1, y) && on(x + 1, y) && on(x, y - 1) && on(x, y + 1));
      pixels.data.set([r, g, b, edge ? 255 : Math.round(255 * alpha)], 4 * (y * width + x));
    }
  }
  picture.getContext("2d").putImageData(pixels, 0, 0);
  if (maskPictures.size > 64) maskPictures.clear();
  maskPictures.set(key, picture);
  return picture;
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

function polyline(points, colour, dashed, width = 3) {
  if (points.length < 2) return;
  context.beginPath();
  context.setLineDash(dashed ? [6, 4] : []);
  context.strokeStyle = colour;
  context.lineWidth = width;
  points.forEach((point, i) => {
    const [x, y] = toPixels(point);
    if (i === 0) context.moveTo(x, y); else context.lineTo(x, y);
  });
  context.stroke();
  context.setLineDash([]);
}

function rectangle([x1, y1, x2, y2], colour, dashed, width = 3) {
  polyline([[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]], colour, dashed, width);
}

function drawMask(rle, colour, alpha) {
  context.drawImage(maskPicture(rle, colour, alpha), 0, 0);
}

// What the user gave for a region (its JSON form), in its colour.
function drawInput(region, colour, dashed, strong) {
  const width = strong ? 5 : 3;
  if (region.scribble) polyline(region.scribble, colour, dashed, width);
  else if (region.points) region.points.forEach((p) => dot(p, strong ? 8 : 6, null, colour));
  else if (region.box) rectangle(region.box, colour, dashed, width);
  else if (region.rle) drawMask(region.rle, colour, strong ? 0.6 : 0.35);
  else if (region.point_text) pointTextPoints(region.point_text).forEach((p) => dot(p, strong ? 8 : 6, null, colour));
}

// Point text "[32 64] [37 62]" (integers 0..100) -> relative points [[0.32, 0.64], [0.37, 0.62]].
function pointTextPoints(text) {
  return [...text.matchAll(/\[\s*(\d+)\s+(\d+)\s*\]/g)].map((m) => [Number(m[1]) / 100, Number(m[2]) / 100]);
}

function drawSegmentation() {
  const result = demo.segmentation;
  if (!result || result.shown === null) return;
  const proposal = result.reply.top[result.shown];
  if (proposal) drawMask(proposal.rle, SEGMENT_COLOUR, 0.35);
}

function redraw() {
  context.clearRect(0, 0, canvas.width, canvas.height);
  if (!demo.image) return;
  context.imageSmoothingEnabled = canvas.width < 2 * demo.image.width;
  context.drawImage(demo.image, 0, 0, canvas.width, canvas.height);
  drawSegmentation();
  demo.regions.forEach((record) => {
    const colour = COLOURS[record.index % COLOURS.length];
    const dimmed = demo.highlight !== null && demo.highlight !== record.index;
    context.globalAlpha = dimmed ? 0.25 : 1;
    drawInput(record.region, colour, false, demo.highlight === record.index);
    record.sent_points.forEach((p) => dot(p, demo.highlight === record.index ? 5 : 4, colour, "#fff"));
    context.globalAlpha = 1;
  });
  const colour = COLOURS[demo.regions.length % COLOURS.length];
  drawCurrent(colour);
}

function drawCurrent(colour) {
  const tool = mode();
  if (tool === "sam") {
    if (demo.sam.result) drawMask(demo.sam.result.rle, colour, 0.45);
    if (demo.sam.box) rectangle(demo.sam.box, colour, true, 2);
    demo.sam.points.forEach((p, i) => dot(p, 5, demo.sam.labels[i] ? "#2fbf4f" : "#e03030", "#fff"));
  } else if (tool === "box") {
    if (demo.box) rectangle(demo.box, colour, true);
  } else {
    drawInput(currentRegion() || { points: [] }, colour, true);
    if (tool === "points") demo.drawing.forEach((p) => dot(p, 3, colour, null));
  }
}

// The region being drawn, in the form POST .../regions takes (null: nothing yet).
function currentRegion() {
  const tool = mode();
  if (tool === "sam") return demo.sam.result ? { rle: demo.sam.result.rle } : null;
  if (tool === "box") {
    const box = demo.box;
    return box && box[2] > box[0] && box[3] > box[1] ? { box } : null;
  }
  if (!demo.drawing.length) return null;
  return tool === "scribble" ? { scribble: demo.drawing } : { points: demo.drawing };
}

function drawingSomething() {
  return Boolean(demo.drawing.length || demo.box || demo.sam.points.length || demo.sam.box);
}

function eventPoint(event) {
  const box = canvas.getBoundingClientRect();
  const clamp = (v) => Math.min(1, Math.max(0, v));
  return [clamp((event.clientX - box.left) / box.width), clamp((event.clientY - box.top) / box.height)];
}

function boxOf([x1, y1], [x2, y2]) {
  return [Math.min(x1, x2), Math.min(y1, y2), Math.max(x1, x2), Math.max(y1, y2)];
}

canvas.addEventListener("contextmenu", (event) => event.preventDefault());  // right click: a SAM negative click
canvas.addEventListener("pointerdown", (event) => {
  if (!demo.session) return;
  const point = eventPoint(event);
  const tool = mode();
  if (tool === "points") {
    demo.drawing.push(point);
  } else if (tool === "scribble") {
    demo.drawing = [point];  // one stroke per scribble region: a new one replaces it
    demo.stroking = true;
  } else {
    demo.drag = { start: point, moved: false, negative: event.button === 2 || event.shiftKey };
    if (tool === "box") demo.box = [...point, ...point];
  }
  canvas.setPointerCapture(event.pointerId);
  updateButtons();
  redraw();
});
canvas.addEventListener("pointermove", (event) => {
  if (demo.stroking) {
    demo.drawing.push(eventPoint(event));
  } else if (demo.drag) {
    const point = eventPoint(event);
    const [x, y] = demo.drag.start;
    demo.drag.moved = demo.drag.moved || Math.abs(point[0] - x) > DRAG_MIN || Math.abs(point[1] - y) > DRAG_MIN;
    if (mode() === "box") demo.box = boxOf(demo.drag.start, point);
    else if (demo.drag.moved) demo.sam.box = boxOf(demo.drag.start, point);
  } else {
    return;
  }
  redraw();
});
canvas.addEventListener("pointerup", (event) => {
  demo.stroking = false;
  const drag = demo.drag;
  demo.drag = null;
  if (drag && mode() === "box" && !drag.moved) demo.box = null;  // a click is no box
  if (drag && mode() === "sam") {
    if (!drag.moved) {
      demo.sam.points.push(drag.start);
      demo.sam.labels.push(drag.negative ? 0 : 1);
    } else {
      demo.sam.box = boxOf(drag.start, eventPoint(event));
    }
    runSam();
  }
  updateButtons();
  redraw();
});

function clearDrawing() {
  Object.assign(demo, { drawing: [], box: null, drag: null, stroking: false });
  demo.sam = { points: [], labels: [], box: null, result: null };
  $("sam-status").textContent = "";
}

document.querySelectorAll("input[name=mode]").forEach((radio) =>
  radio.addEventListener("change", () => { clearDrawing(); updateButtons(); redraw(); }));

// ------------------------------------------------------------------ SAM click-to-mask

// Send the whole SAM prompt (every click, the box); the server refines its previous mask when
// the prompt only adds clicks to the previous one. Requests run in order, one at a time.
function runSam() {
  const prompt = { points: [...demo.sam.points], labels: [...demo.sam.labels], box: demo.sam.box };
  demo.samQueue = demo.samQueue.then(async () => {
    if (!prompt.points.length && !prompt.box) {
      demo.sam.result = null;
    } else {
      try {
        const result = await api("POST", sessionPath("/sam"), prompt);
        if (samPromptIs(prompt)) demo.sam.result = result;
      } catch (error) {
        showError(error.message);
        if (samPromptIs(prompt)) demo.sam.result = null;  // no mask for what the page shows: undo the click
      }
    }
    const result = demo.sam.result;
    $("sam-status").textContent = !result ? "" :
      `SAM score ${result.score.toFixed(3)}` + (result.refined ? " (refined)" : "");
    updateButtons();
    redraw();
  });
  return demo.samQueue;
}

function samPromptIs(prompt) {  // the prompt is still the one on the page (not undone or cancelled since)
  return JSON.stringify([prompt.points, prompt.labels, prompt.box]) ===
    JSON.stringify([demo.sam.points, demo.sam.labels, demo.sam.box]);
}

// ------------------------------------------------------------------ regions

const KIND_NAMES = { points: "points", scribble: "scribble", box: "box", rle: "mask", polygons: "mask", point_text: "point text" };

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
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = KIND_NAMES[Object.keys(record.region)[0]] || "";
    const text = document.createElement("code");
    text.textContent = record.point_text;
    item.append(swatch, label, kind, text, button("caption", guarded(() => captionRegion(record.index))),
                button("attention", guarded(() => attentionOf(record.index))));
    item.addEventListener("mouseenter", () => highlight(record.index));
    item.addEventListener("mouseleave", () => highlight(null));
    list.append(item);
  });
}

function highlight(index) {
  demo.highlight = index;
  document.querySelectorAll("#regions li").forEach((item) =>
    item.classList.toggle("highlight", Number(item.dataset.index) === index));
  redraw();
}

function button(text, onClick) {
  const element = document.createElement("button");
  element.textContent = text;
  element.addEventListener("click", onClick);
  return element;
}

function regionAdded(record) {
  demo.regions.push(record);
  clearDrawing();
  renderRegions();
  updateButtons();
  redraw();
}

async function addRegion() {
  const region = currentRegion();
  if (!region) return;
  regionAdded(await api("POST", sessionPath("/regions"), { region }));
}

async function uploadMask(file) {
  const form = new FormData();
  form.append("mask", file);
  regionAdded(await api("POST", sessionPath("/regions/mask"), form));
}

async function undo() {
  const tool = mode();
  if (tool === "sam" && (demo.sam.points.length || demo.sam.box)) {
    if (demo.sam.points.length) { demo.sam.points.pop(); demo.sam.labels.pop(); } else demo.sam.box = null;
    await runSam();
  } else if (demo.drawing.length || demo.box) {
    if (tool === "points") demo.drawing.pop(); else clearDrawing();
  } else if (demo.regions.length) {
    await api("DELETE", sessionPath("/regions/last"));
    demo.regions.pop();
    renderRegions();
  }
  updateButtons();
  redraw();
}

function cancelDrawing() {
  clearDrawing();
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
  const reply = await api("POST", sessionPath("/segment"), { expression, top: 5 });
  demo.segmentation = { expression, reply, shown: reply.top.length ? 0 : null };
  renderSegmentation();
  redraw();
}

// The chosen mask is drawn on the image; the best-scored proposals are listed with their
// scores (mean NLL of the expression, nats: lower is better); clicking one shows it.
function renderSegmentation() {
  const result = demo.segmentation;
  $("segmentation").hidden = !result;
  if (!result) return;
  const { reply } = result;
  $("segmentation-caption").textContent = reply.proposal >= 0
    ? `"${result.expression}": proposal ${reply.proposal} chosen of ${reply.proposal_ids.length} scored ` +
      "(score: mean NLL of the expression, nats, lower is better)"
    : `"${result.expression}": no proposal passed the filter`;
  const list = $("proposals");
  list.replaceChildren();
  reply.top.forEach((proposal, i) => {
    const item = document.createElement("li");
    const choice = button(`proposal ${proposal.proposal}: ${proposal.score.toFixed(3)}` +
                          (proposal.proposal === reply.proposal ? " (chosen)" : ""), () => {
      result.shown = result.shown === i ? null : i;
      renderSegmentation();
      redraw();
    });
    choice.setAttribute("aria-pressed", String(result.shown === i));
    item.append(choice);
    list.append(item);
  });
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
  Object.assign(demo, { session: summary.session, image, regions: [], segmentation: null, highlight: null });
  clearDrawing();
  $("messages").replaceChildren();
  $("result").hidden = true;
  renderRegions();
  renderSegmentation();
  updateButtons();
  redraw();
  canvas.dataset.ready = "true";
}

function updateButtons() {
  const open = Boolean(demo.session);
  $("add-region").disabled = !open || !currentRegion();
  $("undo").disabled = !open || (!drawingSomething() && !demo.regions.length);
  ["message", "send", "reset", "export", "mask-input"].forEach((id) => { $(id).disabled = !open; });
  const segmentation = open && demo.info && demo.info.segmentation;
  ["expression", "segment"].forEach((id) => { $(id).disabled = !segmentation; });
  document.querySelector("input[name=mode][value=sam]").disabled = !(demo.info && demo.info.click_to_mask);
}

function guarded(action) {
  return (...args) => action(...args).catch((error) => showError(error.message));
}

// Enter adds the region being drawn (in a text box it sends that box's form, on a button it
// presses it, as usual); Escape cancels the region being drawn; Ctrl/Cmd+Z undoes (in a text
// box, the browser's own undo).
document.addEventListener("keydown", (event) => {
  const target = event.target;
  const typing = target.tagName === "TEXTAREA" || target.tagName === "BUTTON" ||
    (target.tagName === "INPUT" && !["radio", "checkbox", "file"].includes(target.type));
  if (event.key === "Escape") {
    if (drawingSomething()) { event.preventDefault(); cancelDrawing(); }
  } else if (typing) {
    return;
  } else if (event.key === "Enter" && currentRegion()) {
    event.preventDefault();
    guarded(addRegion)();
  } else if ((event.ctrlKey || event.metaKey) && !event.shiftKey && event.key.toLowerCase() === "z") {
    event.preventDefault();
    if (!$("undo").disabled) guarded(undo)();
  }
});

$("image-input").addEventListener("change", guarded(async (event) => {
  if (event.target.files.length) await upload(event.target.files[0]);
}));
$("mask-input").addEventListener("change", guarded(async (event) => {
  const file = event.target.files[0];
  event.target.value = "";  // the same file may be chosen again
  if (file) await uploadMask(file);
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
    `seed ${demo.info.seed}` + (demo.info.segmentation ? ", segmentation on" : "") +
    (demo.info.click_to_mask ? ", SAM click-to-mask on" : "");
  $("segment").title = demo.info.segmentation ? "" : "start the demo with --sam-type to segment";
  $("sam-tool").title = demo.info.click_to_mask ? "click on the object; shift- or right-click off it; drag a box" :
    "start the demo with --sam-type to turn SAM clicks into a mask";
  updateButtons();
})();
