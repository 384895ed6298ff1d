// The unstatic web page: builds A1111-style requests, submits them to the job API (/v1/jobs), polls the job for
// progress and the denoising preview, and shows results in a gallery. No build step, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 120;
let token = sessionStorage.getItem("unstatic-token");
let currentJob = null;
let models = [];

async function api(method, path, body) {
  const headers = body === undefined ? {} : { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401 && !headers.Authorization) {
    token = window.prompt("This server needs an API token:");
    if (token) { sessionStorage.setItem("unstatic-token", token); return api(method, path, body); }
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || data.error || `${response.status} ${response.statusText}`);
  return data;
}

function showStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function fillSelect(select, items, selected) {
  select.replaceChildren(...items.map(([value, label]) => new Option(label, value, false, value === selected)));
}

async function loadChoices() {
  const [samplers, schedulers, options] = await Promise.all([
    api("GET", "/sdapi/v1/samplers"), api("GET", "/sdapi/v1/schedulers"), api("GET", "/sdapi/v1/options"),
  ]);
  fillSelect($("sampler"), samplers.map((s) => [s.name, s.name]), "DPM++ 2M");
  fillSelect($("scheduler"), schedulers.map((s) => [s.name, s.label]), "automatic");
  await loadModels(options.sd_model_checkpoint);
}

async function loadModels(current) {
  models = await api("GET", "/v1/models");
  fillSelect($("model"), models.map((m) => [m.name, m.name]), current);
  const model = models.find((m) => m.name === current) || models[0];
  if (!model || !model.loaded) return;
  $("width").value = $("height").value = model.image_size;
  $("width").step = $("height").step = model.size_factor;
  $("cfg").value = model.guidance;
  const hints = { text: "text model: describe the picture",
    class: `class model: the prompt is one of ${model.class_names.join(", ")}`,
    none: "unconditional model: leave the prompt empty" };
  $("model-hint").textContent = `${model.image_size}px, ${hints[model.conditioning] || ""}`;
  if (model.conditioning === "class" && !$("prompt").value) $("prompt").value = model.class_names[0] || "";
}

$("model").addEventListener("change", async () => {
  showStatus("switching model…");
  try {
    await api("POST", "/sdapi/v1/options", { sd_model_checkpoint: $("model").value });
    await loadModels($("model").value);
    showStatus(`model ${$("model").value}`);
  } catch (error) { showStatus(error.message, true); }
});

$("random-seed").addEventListener("change", () => { $("seed").disabled = $("random-seed").checked; });
$("strength").addEventListener("input", () => { $("strength-value").textContent = $("strength").value; });

// ---- img2img and the inpainting mask -------------------------------------------------------------------------
let initImage = null; // data URL of the start image
let maskPainted = false;

$("init-file").addEventListener("change", () => {
  const file = $("init-file").files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    const image = new Image();
    image.onload = () => {
      for (const canvas of [$("init-canvas"), $("mask-canvas")]) { canvas.width = image.naturalWidth; canvas.height = image.naturalHeight; }
      $("init-canvas").getContext("2d").drawImage(image, 0, 0);
      initImage = reader.result;
      maskPainted = false;
      $("canvas-box").hidden = false;
      $("width").value = image.naturalWidth;
      $("height").value = image.naturalHeight;
    };
    image.src = reader.result;
  };
  reader.readAsDataURL(file);
});

function paint(event) {
  if (!(event.buttons & 1)) return;
  const canvas = $("mask-canvas");
  const box = canvas.getBoundingClientRect();
  const scale = canvas.width / box.width; // the canvas holds the image's own pixels; CSS scales it for display
  const context = canvas.getContext("2d");
  context.fillStyle = "rgb(255, 0, 0)";
  context.beginPath();
  // at least half an image pixel, so a small image shown large can still be painted pixel by pixel
  const radius = Math.max(($("brush").value * scale) / 2, 0.5);
  context.arc((event.clientX - box.left) * scale, (event.clientY - box.top) * scale, radius, 0, 2 * Math.PI);
  context.fill();
  maskPainted = true;
}
$("mask-canvas").addEventListener("pointerdown", paint);
$("mask-canvas").addEventListener("pointermove", paint);
$("clear-mask").addEventListener("click", () => {
  const canvas = $("mask-canvas");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  maskPainted = false;
});
$("clear-init").addEventListener("click", () => {
  initImage = null; maskPainted = false; $("canvas-box").hidden = true; $("init-file").value = "";
});

function maskDataURL() {
  // white where painted (repaint), black elsewhere (keep), at the start image's size
  const source = $("mask-canvas");
  const out = document.createElement("canvas");
  out.width = source.width; out.height = source.height;
  const painted = source.getContext("2d").getImageData(0, 0, source.width, source.height);
  const pixels = new ImageData(source.width, source.height);
  for (let i = 0; i < pixels.data.length; i += 4) {
    const value = painted.data[i + 3] > 0 ? 255 : 0;
    pixels.data[i] = pixels.data[i + 1] = pixels.data[i + 2] = value;
    pixels.data[i + 3] = 255;
  }
  out.getContext("2d").putImageData(pixels, 0, 0);
  return out.toDataURL("image/png");
}

// ---- generating ----------------------------------------------------------------------------------------------
function buildRequest() {
  const request = {
    prompt: $("prompt").value, negative_prompt: $("negative").value,
    sampler_name: $("sampler").value, scheduler: $("scheduler").value,
    steps: Number($("steps").value), cfg_scale: Number($("cfg").value), batch_size: Number($("batch").value),
    width: Number($("width").value) || null, height: Number($("height").value) || null,
    seed: $("random-seed").checked ? -1 : Number($("seed").value),
  };
  if (!initImage) return { type: "txt2img", request };
  request.init_images = [initImage];
  request.denoising_strength = Number($("strength").value);
  if (maskPainted) { request.mask = maskDataURL(); request.mask_blur = Number($("mask-blur").value); }
  return { type: "img2img", request };
}

function setProgress(value) {
  const bar = $("progress");
  bar.value = value;
  if (value > 0 && value < 1) bar.dataset.updates = Number(bar.dataset.updates) + 1; // the browser test reads this
}

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("generate").disabled = true;
  setProgress(0);
  $("progress").dataset.updates = "0";
  $("eta").textContent = "";
  try {
    const job = await api("POST", "/v1/jobs", buildRequest());
    currentJob = job.id;
    $("cancel").disabled = false;
    showStatus("queued");
    await follow(job.id);
  } catch (error) {
    showStatus(error.message, true);
  } finally {
    $("generate").disabled = false;
    $("cancel").disabled = true;
    currentJob = null;
  }
});

$("cancel").addEventListener("click", async () => {
  if (currentJob) await api("DELETE", `/v1/jobs/${currentJob}`).catch((error) => showStatus(error.message, true));
});

async function follow(id) {
  for (;;) {
    const job = await api("GET", `/v1/jobs/${id}`);
    if (job.state === "queued") showStatus(`queued (position ${job.queue_position + 1})`);
    if (job.state === "running") {
      setProgress(job.progress);
      showStatus(`step ${job.step}/${job.steps}`);
      $("eta").textContent = job.eta == null ? "" : `${job.eta.toFixed(1)} s left`;
      if (job.preview) { $("preview").src = `data:image/png;base64,${job.preview}`; $("preview").hidden = false; }
    }
    if (job.state === "failed") throw new Error(job.error);
    if (job.state === "done" || job.state === "cancelled") {
      setProgress(1);
      $("eta").textContent = "";
      if (job.result) addToGallery(job.result);
      showStatus(job.state === "done" ? "done" : "cancelled");
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function addToGallery(result) {
  const info = JSON.parse(result.info);
  result.images.forEach((png, i) => {
    const url = `data:image/png;base64,${png}`;
    const seed = info.all_seeds[i];
    const card = document.createElement("figure");
    card.className = "card";
    const image = new Image();
    image.src = url;
    image.alt = info.all_prompts[i] || "generated image";
    image.className = "result";
    const text = document.createElement("pre");
    text.textContent = info.infotexts[i];
    const reuse = document.createElement("button");
    reuse.type = "button";
    reuse.textContent = `reuse seed ${seed}`;
    reuse.addEventListener("click", () => {
      $("seed").value = seed; $("random-seed").checked = false; $("seed").disabled = false;
    });
    const download = document.createElement("a");
    download.href = url;
    download.download = `unstatic-${seed}.png`;
    download.textContent = "download";
    card.append(image, text, reuse, " ", download);
    $("gallery").prepend(card);
  });
}

loadChoices().catch((error) => showStatus(error.message, true));
