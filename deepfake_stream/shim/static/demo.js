// The demo page: download the model once, then score in this browser as the user types.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const modelId = params.get("model") || "tiny-tfidf";
  const keyStore = "deepfake-stream.api-key";
  let scorer = null;

  function status(text, error = false) {
    $("status").textContent = text;
    $("status").classList.toggle("error", error);
  }

  async function load() {
    const key = $("api-key").value.trim();
    const headers = key ? { "X-API-Key": key } : {};
    status("Loading the model…");
    const t0 = performance.now();
    try {
      scorer = await TfidfScorer.load(`/v1/models/${encodeURIComponent(modelId)}/download`, {
        headers,
      });
    } catch (err) {
      scorer = null;
      const unauthorized = /HTTP 401/.test(String(err));
      status(unauthorized ? "This server needs an API key: enter it and press Score." :
        `Could not load the model: ${err.message}`, true);
      return;
    }
    if (key) sessionStorage.setItem(keyStore, key);
    $("model-id").textContent = scorer.modelId;
    $("version").textContent = `${scorer.modelId} ${scorer.version}`;
    status(`Model loaded in ${Math.round(performance.now() - t0)} ms; scoring runs locally.`);
    render();
  }

  function render() {
    if (!scorer) return;
    const text = $("text").value;
    if (!text.trim()) {
      $("bar").style.width = "0";
      $("label").textContent = "–";
      $("label").className = "label";
      $("score-value").textContent = "paste some text";
      return;
    }
    const t0 = performance.now();
    const score = scorer.score(text);
    const ms = performance.now() - t0;
    const label = scorer.label(score, text);
    $("bar").style.width = `${(score * 100).toFixed(1)}%`;
    $("bar").className = `bar ${label}`;
    $("label").textContent = label === "ai" ? "AI" : "human";
    $("label").className = `label ${label}`;
    $("score-value").textContent =
      `score ${score.toFixed(4)} (threshold ${scorer.thresholdFor(text)}) · ${ms.toFixed(1)} ms`;
  }

  let timer = 0;
  $("text").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(render, 120);
  });
  $("form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (scorer) render();
    else load();
  });
  $("api-key").value = sessionStorage.getItem(keyStore) || "";
  if (params.has("text")) $("text").value = params.get("text");
  load();
})();
