"""The page at ``GET /``: drop or choose images, see the top-k predictions and the preprocessed view.

Self-contained (no scripts or fonts from elsewhere, so it works offline and under a strict CSP); it calls
``POST /predict?preview=true`` with the chosen files and draws what comes back. When the server answers 401
(it was started with a token), the page asks for the token once, keeps it in the tab's sessionStorage
(gone when the tab closes; never in a cookie, so other sites cannot make the browser send it) and sends it
as ``Authorization: Bearer`` from then on.
"""

from __future__ import annotations

import html

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>honed: __NAME__</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 2rem auto; max-width: 52rem; color: #222; }
  h1 { font-size: 1.3rem; } code { background: #f3f3f3; padding: 0 .3em; }
  #drop { border: 2px dashed #888; border-radius: 8px; padding: 2rem; text-align: center; background: #fafafa; }
  #drop.over { background: #e8f0ff; border-color: #3366cc; }
  .result { display: flex; gap: 1rem; align-items: flex-start; border-bottom: 1px solid #ddd; padding: .8rem 0; }
  .result img { width: 96px; height: 96px; image-rendering: pixelated; border: 1px solid #ccc; }
  .bar { background: #3366cc; height: .6rem; border-radius: 3px; }
  table { border-collapse: collapse; } td { padding: .1rem .5rem; }
  .error { color: #b00020; }
</style>
</head>
<body>
<h1>honed model <code>__NAME__</code></h1>
<div id="drop">
  <p>Drop images here, or <label><input id="files" type="file" accept="image/*" multiple></label></p>
  <p><label>top-k <input id="topk" type="number" min="1" value="5" style="width:4em"></label></p>
</div>
<p id="status" role="status"></p>
<div id="results"></div>
<script>
"use strict";
const drop = document.getElementById("drop");
const statusLine = document.getElementById("status");
const results = document.getElementById("results");

function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }

function show(prediction) {
  const box = document.createElement("div");
  box.className = "result";
  if (prediction.preprocessed) {
    const img = document.createElement("img");
    img.src = prediction.preprocessed;
    img.alt = "preprocessed " + prediction.name;
    box.appendChild(img);
  }
  const info = document.createElement("div");
  const title = document.createElement("strong");
  title.textContent = prediction.name;
  info.appendChild(title);
  const table = document.createElement("table");
  table.className = "topk";
  for (const entry of prediction.top_k || []) {
    const row = document.createElement("tr");
    row.appendChild(cell(entry.label));
    row.appendChild(cell(entry.probability.toFixed(4)));
    const barCell = document.createElement("td");
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = Math.round(entry.probability * 200) + "px";
    barCell.appendChild(bar);
    row.appendChild(barCell);
    table.appendChild(row);
  }
  for (const [name, value] of Object.entries(prediction.values || {})) {
    const row = document.createElement("tr");
    row.appendChild(cell(name));
    row.appendChild(cell(value.toFixed(4)));
    table.appendChild(row);
  }
  info.appendChild(table);
  box.appendChild(info);
  results.appendChild(box);
}

const TOKEN_KEY = "honed-token";

async function post(url, form) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = token ? { "Authorization": "Bearer " + token } : {};
  return fetch(url, { method: "POST", body: form, headers: headers });
}

async function predict(files) {
  if (!files.length) { return; }
  const form = new FormData();
  for (const file of files) { form.append("files", file, file.name); }
  const k = Math.max(1, parseInt(document.getElementById("topk").value, 10) || 5);
  const url = "predict?preview=true&top_k=" + k;
  statusLine.className = "";
  statusLine.textContent = "predicting " + files.length + " image(s)...";
  try {
    let answer = await post(url, form);
    if (answer.status === 401) {  // the server wants a token: ask once, keep it for this tab
      const token = (window.prompt("This server needs an access token (honed serve --token-file):") || "").trim();
      if (token) {
        sessionStorage.setItem(TOKEN_KEY, token);
        answer = await post(url, form);
        if (answer.status === 401) { sessionStorage.removeItem(TOKEN_KEY); }  // wrong: ask again next time
      }
    }
    const body = await answer.json();
    if (!answer.ok) {
      statusLine.className = "error";
      statusLine.textContent = body.error || ("error " + answer.status);
      return;
    }
    results.replaceChildren();
    body.predictions.forEach(show);
    statusLine.textContent = body.predictions.length + " prediction(s)";
  } catch (problem) {
    statusLine.className = "error";
    statusLine.textContent = "the server did not answer: " + problem;
  }
}

document.getElementById("files").addEventListener("change", (event) => predict(event.target.files));
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  predict(event.dataTransfer.files);
});
</script>
</body>
</html>
"""


def page_html(model_name: str) -> str:
    """The page, titled with the (escaped) model name."""
    return _PAGE.replace("__NAME__", html.escape(model_name))
