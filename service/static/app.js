// The page's behaviour: load the served models, upload a video to POST /v1/classify, show the result.
// Plain JavaScript with no dependencies, so the page works offline and needs no build step.
"use strict";

const page = {
  form: document.getElementById("upload-form"),
  dropZone: document.getElementById("drop-zone"),
  dropText: document.getElementById("drop-text"),
  videoInput: document.getElementById("video-input"),
  modelSelect: document.getElementById("model-select"),
  exitSelect: document.getElementById("exit-select"),
  topK: document.getElementById("top-k"),
  apiKey: document.getElementById("api-key"),
  button: document.getElementById("classify-button"),
  status: document.getElementById("status"),
  error: document.getElementById("error"),
  result: document.getElementById("result"),
  labels: document.getElementById("labels"),
  exitSummary: document.getElementById("exit-summary"),
  computeSummary: document.getElementById("compute-summary"),
  timings: document.getElementById("timings"),
  strip: document.getElementById("frame-strip"),
};

let models = [];
let chosenFile = null;

// What a person should read for each HTTP status; the API's own detail follows it.
const ERROR_LEADS = {
  401: "The service needs an API key: enter it in the API key field and try again.",
  404: "That model is not served here.",
  413: "The video is too large for this service.",
  415: "This file is not a video the service can read.",
  422: "The service could not use this video.",
  429: "Too many requests: wait a moment and try again.",
  503: "The service is busy or still starting: try again in a few seconds.",
  504: "The video took too long to process.",
};

function headers() {
  const key = page.apiKey.value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function problemMessage(response) {
  const lead = ERROR_LEADS[response.status] || `The service answered with an error (HTTP ${response.status}).`;
  let detail = "";
  try {
    const body = await response.json();
    detail = body.detail || body.title || "";
  } catch (_) {
    // Not JSON (a proxy's error page, say): the lead alone.
  }
  return detail ? `${lead} ${capitalise(detail)}.`.replace(/\.\.$/, ".") : lead;
}

function capitalise(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function showError(message) {
  page.error.textContent = message;
  page.error.hidden = false;
  page.status.textContent = "";
}

function clearError() {
  page.error.hidden = true;
  page.error.textContent = "";
}

async function loadModels() {
  page.status.textContent = "Loading the served models…";
  try {
    const response = await fetch("/v1/models", { headers: headers() });
    if (!response.ok) {
      showError(await problemMessage(response));
      return;
    }
    models = (await response.json()).models;
  } catch (_) {
    showError("The service cannot be reached. Check that it is running and reload the page.");
    return;
  }
  page.modelSelect.replaceChildren(...models.map((m) => new Option(`${m.name} (v${m.version})`, m.name)));
  fillExitChoices();
  page.status.textContent = "";
  clearError();
  updateButton();
}

function fillExitChoices() {
  const model = models.find((m) => m.name === page.modelSelect.value);
  const names = [];
  for (const point of model ? model.operating_points : []) {
    for (const name of point.names) {
      names.push(new Option(`${name} (≈${point.expected_gmacs.toFixed(3)} GMACs)`, name));
    }
  }
  names.push(new Option("off (every frame)", "off"));
  page.exitSelect.replaceChildren(...names);
  const preferred = [...page.exitSelect.options].find((o) => o.value === "balanced");
  if (preferred) page.exitSelect.value = "balanced";
}

function chooseFile(file) {
  chosenFile = file || null;
  page.dropText.textContent = chosenFile
    ? `${chosenFile.name} (${(chosenFile.size / 1e6).toFixed(2)} MB)`
    : "Drop a video here, or click to choose a file";
  updateButton();
}

function updateButton() {
  page.button.disabled = !(chosenFile && models.length);
}

async function classify(event) {
  event.preventDefault();
  if (!chosenFile) return;
  clearError();
  page.result.hidden = true;
  page.button.disabled = true;
  page.status.textContent = `Classifying ${chosenFile.name}…`;
  const query = new URLSearchParams({
    thumbnails: "true",
    top_k: page.topK.value || "5",
    exit: page.exitSelect.value || "off",
    model: page.modelSelect.value,
  });
  const body = new FormData();
  body.append("video", chosenFile, chosenFile.name);
  try {
    const response = await fetch(`/v1/classify?${query}`, { method: "POST", body, headers: headers() });
    if (!response.ok) {
      showError(await problemMessage(response));
      return;
    }
    showResult(await response.json());
    page.status.textContent = "Done.";
  } catch (_) {
    showError("The upload failed: the service could not be reached or closed the connection.");
  } finally {
    updateButton();
  }
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function percent(value) {
  return `${(100 * value).toFixed(1)}%`;
}

function showResult(result) {
  page.labels.replaceChildren(
    ...result.labels.map((entry) => {
      const item = element("li", "label");
      item.append(element("span", "label-name", entry.label));
      const bar = element("span", "label-bar");
      bar.style.width = percent(entry.score);
      item.append(bar, element("span", "label-score", percent(entry.score)));
      return item;
    }),
  );
  const exit = result.exit;
  const where = `frame ${exit.frame_index}, ${exit.time_s.toFixed(2)} s into the video`;
  page.exitSummary.textContent =
    exit.frames_processed < exit.frames_sampled
      ? `Exited early after step ${exit.step + 1} of ${exit.frames_sampled} (${where}), ` +
        `with the "${exit.operating_point}" operating point.`
      : `Processed all ${exit.frames_sampled} sampled frames (the last one: ${where}).`;
  const saved = 1 - result.gmacs.spent / result.gmacs.full_model;
  page.computeSummary.textContent =
    `Compute: ${result.gmacs.spent.toFixed(3)} of ${result.gmacs.full_model.toFixed(3)} GMACs ` +
    `(${percent(saved)} saved by the early exit); ${exit.frames_decoded} frames decoded.`;
  const t = result.timings_s;
  page.timings.textContent =
    `Model ${result.model.name} v${result.model.version} · decode ${ms(t.decode)}, glance ${ms(t.glance)}, ` +
    `focus ${ms(t.focus)}, classify ${ms(t.classify)} · request ${result.request_id}`;
  page.strip.replaceChildren(
    ...result.frames.map((frame) => processedFrame(frame, result.video)),
    ...result.skipped_frames.map(skippedFrame),
  );
  page.result.hidden = false;
}

function ms(seconds) {
  return `${(1000 * seconds).toFixed(1)} ms`;
}

// The frame's JPEG preview, when the API sent one (thumbnails=true and the frame was decoded).
function addThumbnail(picture, frame, alt) {
  if (!frame.thumbnail) return;
  const image = element("img");
  image.src = frame.thumbnail;
  image.alt = alt;
  picture.append(image);
}

function processedFrame(frame, video) {
  const figure = element("figure", "frame processed");
  figure.dataset.step = frame.step;
  const picture = element("div", "frame-picture");
  addThumbnail(picture, frame, `frame ${frame.frame_index}`);
  picture.style.aspectRatio = `${video.width} / ${video.height}`;
  if (frame.box) {
    // The box is in the original video's pixels; the thumbnail is the whole frame scaled.
    const box = element("div", "focus-box");
    box.style.left = percent(frame.box.x / video.width);
    box.style.top = percent(frame.box.y / video.height);
    box.style.width = percent(frame.box.width / video.width);
    box.style.height = percent(frame.box.height / video.height);
    box.title = `focus patch: ${Math.round(frame.box.width)}×${Math.round(frame.box.height)} px ` +
      `at (${Math.round(frame.box.x)}, ${Math.round(frame.box.y)})`;
    picture.append(box);
  }
  figure.append(picture, element("figcaption", "", `step ${frame.step + 1} · frame ${frame.frame_index} · ` +
    `${frame.time_s.toFixed(2)} s`));
  return figure;
}

function skippedFrame(frame) {
  const figure = element("figure", "frame skipped");
  figure.dataset.step = frame.step;
  const picture = element("div", "frame-picture");
  addThumbnail(picture, frame, `frame ${frame.frame_index} (not processed)`);
  picture.append(element("span", "skipped-mark", frame.decoded ? "skipped" : "skipped, not decoded"));
  figure.append(picture, element("figcaption", "", `step ${frame.step + 1} · frame ${frame.frame_index}`));
  return figure;
}

function setUpDropZone() {
  for (const name of ["dragenter", "dragover"]) {
    page.dropZone.addEventListener(name, (event) => {
      event.preventDefault();
      page.dropZone.classList.add("dragging");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    page.dropZone.addEventListener(name, () => page.dropZone.classList.remove("dragging"));
  }
  page.dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    chooseFile(event.dataTransfer.files[0]);
  });
}

page.videoInput.addEventListener("change", () => chooseFile(page.videoInput.files[0]));
page.modelSelect.addEventListener("change", fillExitChoices);
page.apiKey.addEventListener("change", loadModels);
page.form.addEventListener("submit", classify);
setUpDropZone();
loadModels();
