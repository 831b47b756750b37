// Search page: sends text or image queries to the /v1 API and renders results.
"use strict";

const byId = (id) => document.getElementById(id);

function showMessage(text, isError) {
  const box = byId("message");
  box.textContent = text;
  box.className = isError ? "error" : "";
  box.hidden = !text;
}

function clearResults() {
  byId("grid").replaceChildren();
  byId("caption-list").replaceChildren();
  byId("scenes").hidden = true;
  byId("captions").hidden = true;
}

async function callApi(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (error) {
    throw new Error("the service cannot be reached: " + error.message);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = body && body.error ? body.error.message : response.statusText;
    throw new Error(detail + " (HTTP " + response.status + ")");
  }
  return body;
}

function sceneCard(scene) {
  const card = document.createElement("figure");
  card.className = "card";
  const link = document.createElement("a");
  link.href = scene.image_url;
  link.target = "_blank";
  const image = document.createElement("img");
  image.src = scene.thumbnail_url;
  image.alt = scene.file_name;
  image.loading = "lazy";
  link.append(image);
  const meta = document.createElement("figcaption");
  meta.className = "meta";
  const score = document.createElement("div");
  score.className = "score";
  score.textContent = "score " + scene.score.toFixed(3);
  const name = document.createElement("div");
  name.textContent = scene.file_name + (scene.label ? " · " + scene.label : "");
  meta.append(score, name);
  if (scene.captions && scene.captions.length > 0) {
    const caption = document.createElement("div");
    caption.className = "caption";
    caption.textContent = scene.captions[0];
    meta.append(caption);
  }
  card.append(link, meta);
  return card;
}

function renderScenes(scenes, title) {
  byId("scenes-title").textContent = title;
  byId("grid").replaceChildren(...scenes.map(sceneCard));
  byId("scenes").hidden = scenes.length === 0;
}

function renderCaptions(captions) {
  const items = captions.map((caption) => {
    const item = document.createElement("li");
    item.textContent = caption.text + " (score " + caption.score.toFixed(3) + ")";
    return item;
  });
  byId("caption-list").replaceChildren(...items);
  byId("captions").hidden = captions.length === 0;
}

function requestedK() {
  const k = parseInt(byId("query-k").value, 10);
  return Number.isFinite(k) && k > 0 ? k : undefined;
}

async function searchText(event) {
  event.preventDefault();
  clearResults();
  showMessage("Searching…", false);
  try {
    const body = await callApi("/v1/search/text", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text: byId("query-text").value, k: requestedK() }),
    });
    if (body.results.length === 0) {
      showMessage("No scenes match this query.", false);
      return;
    }
    showMessage("", false);
    renderScenes(body.results, "Scenes matching the text");
  } catch (error) {
    showMessage("Search failed: " + error.message, true);
  }
}

async function searchImage(file) {
  clearResults();
  showMessage("Searching with " + file.name + "…", false);
  const form = new FormData();
  form.append("file", file);
  const k = requestedK();
  if (k) form.append("k", String(k));
  try {
    const body = await callApi("/v1/search/image", { method: "POST", body: form });
    if (body.captions.length === 0 && body.scenes.length === 0) {
      showMessage("No captions or scenes match this image.", false);
      return;
    }
    showMessage("", false);
    renderCaptions(body.captions);
    renderScenes(body.scenes, "Similar scenes");
  } catch (error) {
    showMessage("Search failed: " + error.message, true);
  }
}

function setUpDropZone() {
  const zone = byId("drop-zone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) searchImage(file);
  });
  byId("query-file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) searchImage(file);
    event.target.value = "";
  });
}

async function loadInfo() {
  try {
    const info = await callApi("/v1/info");
    const snapshot = info.snapshot
      ? info.snapshot.image_count + " scenes, " + info.snapshot.caption_count + " captions (snapshot " + info.snapshot.version + ")"
      : "no index snapshot loaded yet";
    byId("info").textContent = "Model " + info.model.source + " · " + snapshot;
    byId("query-k").max = info.limits.max_k;
  } catch (error) {
    byId("info").textContent = "Service information unavailable: " + error.message;
  }
}

byId("text-form").addEventListener("submit", searchText);
setUpDropZone();
loadInfo();
