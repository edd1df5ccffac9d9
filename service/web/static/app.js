// Soundalike explorer: plain JavaScript, no build step, no dependencies. Each page's <body data-page> picks
// its setup below; every call goes to the same /v1 API a client uses, authenticated by the session cookie.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function say(message, isError = false) {
  const line = $("#status");
  line.textContent = message;
  line.classList.toggle("error", isError);
}

class ApiError extends Error {
  constructor(problem, status) {
    const fields = (problem && problem.errors) || [];
    const detail = (problem && problem.detail) || `HTTP ${status}`;
    super(fields.length ? `${detail}: ${fields.map((e) => `${e.field}: ${e.message}`).join("; ")}` : detail);
    this.status = status;
    this.problem = problem;
  }
}

async function api(method, path, body) {
  const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body instanceof FormData) {
    options.body = body; // multipart: the browser sets the Content-Type with its boundary
  } else if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (response.status === 401) {
    window.location.assign("/signin");
    throw new ApiError({ detail: "signed out" }, 401);
  }
  const data = response.status === 204 ? null : await response.json();
  if (!response.ok) throw new ApiError(data, response.status);
  return data;
}

// Report a failed call in the status line instead of an unhandled rejection.
function guarded(action) {
  return async (...args) => {
    try {
      await action(...args);
    } catch (error) {
      say(error.message, true);
    }
  };
}

// ---- live events: one EventSource per page; the latest event per id is kept, so a watcher added
// after its first events still hears where the item is now.
const live = { source: null, ready: null, watchers: new Map(), latest: new Map() };

function liveEvents() {
  if (live.source) return live.ready;
  live.source = new EventSource("/v1/events");
  live.ready = new Promise((resolve) => live.source.addEventListener("ready", resolve, { once: true }));
  for (const type of ["generation", "batch"]) {
    live.source.addEventListener(type, (message) => {
      const data = JSON.parse(message.data);
      live.latest.set(data.id, data);
      for (const notify of live.watchers.get(data.id) || []) notify(data);
    });
  }
  return live.ready;
}

function watch(id, notify) {
  if (!live.watchers.has(id)) live.watchers.set(id, []);
  live.watchers.get(id).push(notify);
  if (live.latest.has(id)) notify(live.latest.get(id));
}

const FINISHED = new Set(["succeeded", "failed", "cancelled", "partial"]);

// Follow a generation until it finishes, then hand its full record to `done`.
function follow(id, onChange, done) {
  let finished = false;
  watch(id, guarded(async (event) => {
    if (finished) return;
    onChange(event);
    if (FINISHED.has(event.status)) {
      finished = true;
      done(await api("GET", `/v1/generations/${id}`));
    }
  }));
}

// ---- likes and dislikes: kept in this tab's sessionStorage as {liked: {id: label}, disliked: {id: label}};
// every Like/Dislike button and the tray follow it.
const TASTE_KEY = "soundalike.taste";

const taste = {
  read() {
    try {
      const stored = JSON.parse(sessionStorage.getItem(TASTE_KEY));
      if (stored && stored.liked && stored.disliked) return stored;
    } catch (error) {
      // an unreadable entry counts as none
    }
    return { liked: {}, disliked: {} };
  },
  write(state) {
    sessionStorage.setItem(TASTE_KEY, JSON.stringify(state));
    this.refresh();
  },
  // Like or dislike a clip; pressing the same choice again takes it back (one clip is never in both sets).
  toggle(item, choice) {
    const state = this.read();
    const other = choice === "liked" ? "disliked" : "liked";
    const was = Boolean(state[choice][item.id]);
    delete state[other][item.id];
    if (was) delete state[choice][item.id];
    else state[choice][item.id] = (item.tags && item.tags.join(", ")) || item.kind || item.id;
    this.write(state);
  },
  remove(id) {
    const state = this.read();
    delete state.liked[id];
    delete state.disliked[id];
    this.write(state);
  },
  clear() {
    this.write({ liked: {}, disliked: {} });
  },
  onChange: () => {},
  refresh() {
    const state = this.read();
    for (const button of document.querySelectorAll("[data-taste]")) {
      button.setAttribute("aria-pressed", String(Boolean(state[button.dataset.taste][button.dataset.tasteId])));
    }
    const liked = Object.keys(state.liked).length;
    const disliked = Object.keys(state.disliked).length;
    const tray = $("#taste");
    if (tray) {
      tray.hidden = liked + disliked === 0;
      $("#taste-counts").textContent = `${liked} liked · ${disliked} disliked`;
    }
    this.onChange(state);
  },
};

function tasteButtons(item) {
  const state = taste.read();
  const label = (item.tags && item.tags.join(", ")) || item.kind;
  return [["liked", "Like", "♥"], ["disliked", "Dislike", "✕"]].map(([choice, text, glyph]) => el("button", {
    type: "button", class: `taste-button ${choice}`, "data-taste": choice, "data-taste-id": item.id,
    "aria-pressed": String(Boolean(state[choice][item.id])), "aria-label": `${text}: ${label}`,
    onclick: () => taste.toggle(item, choice) }, el("span", { "aria-hidden": "true", text: glyph }), ` ${text}`));
}

// ---- cards: one clip with its player and actions
function card(item, options = {}) {
  const tags = item.tags && item.tags.length ? item.tags.join(", ") : item.kind;
  const meta = [item.kind, item.model && item.model.alias, item.seed !== null ? `seed ${item.seed}` : null]
    .filter(Boolean).join(" · ");
  const node = el("li", { class: "card", "data-id": item.id, "data-status": item.status,
    "data-visibility": item.visibility },
    el("div", { class: "card-head" },
      el("strong", { class: "card-tags", text: tags }),
      el("span", { class: `badge badge-${item.status}`, text: item.status })),
    el("div", { class: "card-meta", text: meta }),
    closeness(options),
    item.error ? el("div", { class: "error", text: item.error }) : null,
    item.links && item.links.audio
      ? el("audio", { controls: true, preload: "metadata", src: item.links.audio, "aria-label": `Play ${tags}` })
      : null,
    actions(item, options));
  return node;
}

// How near a hit is: its cosine similarity, or (best_score, where there is none) the strategy's score.
function closeness(options) {
  if (typeof options.similarity === "number") {
    return el("div", { class: "similarity", text: `similarity ${options.similarity.toFixed(3)}` });
  }
  if (typeof options.score === "number") return el("div", { class: "similarity", text: `score ${options.score.toFixed(3)}` });
  return null;
}

function actions(item, options) {
  const bar = el("div", { class: "actions" });
  if (item.status === "succeeded") bar.append(el("a", { href: `/like/${item.id}`, text: "Sounds like" }));
  if (options.taste && item.status === "succeeded") bar.append(...tasteButtons(item));
  if (options.onRestyle && item.status === "succeeded") {
    bar.append(el("button", { type: "button", class: "restyle", text: "Restyle after this",
      onclick: () => options.onRestyle(item) }));
  }
  if (options.onSelect && item.status === "succeeded") {
    const id = `select-${options.scope || "x"}-${item.id}`;
    bar.append(el("label", { for: id, class: "select" },
      el("input", { type: "checkbox", id, onchange: (e) => options.onSelect(item, e.target.checked) }), " Select"));
  }
  if (options.onVisibility) {
    const id = `visibility-${item.id}`;
    const choices = ["private", "public"].map((v) => el("option", { value: v, text: v, selected: v === item.visibility }));
    bar.append(el("label", { for: id, class: "select" }, "Visibility ",
      el("select", { id, class: "visibility", onchange: (e) => options.onVisibility(item, e.target) }, ...choices)));
  }
  if (options.onDelete) {
    bar.append(el("button", { type: "button", class: "danger", text: "Delete", onclick: () => options.onDelete(item) }));
  }
  return bar;
}

function pendingCard(id, label) {
  return card({ id, kind: label, status: "pending", tags: [], seed: null, links: null });
}

// Show a clip that is on its way: a pending card that follows the live events until it is done.
function showLive(list, id, label, options = {}) {
  let node = pendingCard(id, label);
  list.prepend(node);
  follow(id, (event) => {
    node.dataset.status = event.status;
    const badge = node.querySelector(".badge");
    badge.textContent = event.status;
    badge.className = `badge badge-${event.status}`;
  }, (item) => {
    const full = card(item, options);
    node.replaceWith(full);
    node = full;
  });
}

function numberOrNull(value) {
  return value === "" || value === undefined ? null : Number(value);
}

function splitTags(text) {
  return text.split(",").map((t) => t.trim()).filter(Boolean);
}

function withoutNulls(object) {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== null && v !== ""));
}

// ---- pages
const pages = {};

pages.generate = () => {
  const form = $("#generate-form");
  const prompt = $("#prompt");
  for (const chip of document.querySelectorAll("[data-add-tag]")) {
    chip.addEventListener("click", () => {
      const tags = splitTags(prompt.value);
      if (!tags.includes(chip.dataset.addTag)) tags.push(chip.dataset.addTag);
      prompt.value = tags.join(", ");
      prompt.focus();
    });
  }
  form.addEventListener("submit", guarded(async (event) => {
    event.preventDefault();
    const f = form.elements;
    const body = withoutNulls({
      prompt: f.prompt.value, seed: numberOrNull(f.seed.value), steps: numberOrNull(f.steps.value),
      guidance_scale: numberOrNull(f.guidance_scale.value), batch_size: numberOrNull(f.batch_size.value),
      visibility: f.visibility.value,
    });
    await liveEvents();
    const accepted = await api("POST", "/v1/generations", body);
    say(`Queued ${accepted.ids.length} clip(s), seed ${accepted.seed}.`);
    for (const id of [...accepted.ids].reverse()) showLive($("#results"), id, body.prompt);
  }));
};

pages.library = () => {
  const list = $("#library");
  const more = $("#more");
  let cursor = null;
  const query = () => {
    const f = $("#library-filters").elements;
    const params = new URLSearchParams({ limit: "20" });
    for (const tag of splitTags(f.tags.value)) params.append("tags", tag);
    if (f.kind.value) params.set("kind", f.kind.value);
    if (f.model.value) params.set("model", f.model.value);
    if (cursor) params.set("cursor", cursor);
    return params;
  };
  const remove = guarded(async (item) => {
    if (!window.confirm(`Delete ${item.tags.join(", ") || item.id}?`)) return;
    await api("DELETE", `/v1/generations/${item.id}`);
    list.querySelector(`[data-id="${item.id}"]`).remove();
    say("Deleted.");
  });
  const setVisibility = guarded(async (item, select) => {
    try {
      const updated = await api("PATCH", `/v1/generations/${item.id}`, { visibility: select.value });
      item.visibility = updated.visibility;
      select.closest(".card").dataset.visibility = updated.visibility;
      say(`Now ${updated.visibility}: ${item.tags.join(", ") || item.id}.`);
    } catch (error) {
      select.value = item.visibility; // the control shows what the server holds
      throw error;
    }
  });
  const load = guarded(async (fresh) => {
    if (fresh) {
      cursor = null;
      list.replaceChildren();
    }
    const page = await api("GET", `/v1/generations?${query()}`);
    for (const item of page.items) list.append(card(item, { onDelete: remove, onVisibility: setVisibility, taste: true }));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    if (fresh && !page.items.length) say("Nothing here yet: generate something first.");
  });
  $("#library-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    load(true);
  });
  more.addEventListener("click", () => load(false));
  load(true);
};

function bindOutput(inputId) {
  const input = $(`#${inputId}`);
  const output = $(`#${inputId}-out`);
  input.addEventListener("input", () => { output.textContent = input.value; });
  return input;
}

pages.like = () => {
  const sourceId = $("#source-section").dataset.source;
  const selected = new Map();
  const onSelect = (item, on) => {
    if (on) selected.set(item.id, item);
    else selected.delete(item.id);
    $("#selected-count").textContent = String(selected.size);
  };
  const strength = bindOutput("strength");
  bindOutput("diversity");
  const variance = bindOutput("variance");

  const restyle = guarded(async (neighbour) => {
    await liveEvents();
    const body = { neighbor_id: neighbour.id, strength: Number(strength.value) };
    const pending = await api("POST", `/v1/generations/${sourceId}/style-transfer`, body);
    say(`Restyling after ${neighbour.tags.join(", ")}…`);
    showLive($("#restyled"), pending.id, "style_transfer", { onSelect, scope: "restyled" });
    watch(pending.id, (event) => { if (event.status === "succeeded") showLineage(sourceId); });
  });

  const search = guarded(async () => {
    const f = $("#search-form").elements;
    const tagsAny = splitTags(f.tags_any.value);
    const body = withoutNulls({ generation_id: sourceId, limit: Number(f.limit.value),
      diversity: f.group.checked ? null : Number(f.diversity.value),
      filter: tagsAny.length ? { tags_any: tagsAny } : null, group_by: f.group.checked ? "cluster" : null });
    const found = await api("POST", "/v1/search", body);
    showNeighbours(found, { onRestyle: restyle, onSelect, scope: "n", taste: true });
  });

  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
  $("#variants-form").addEventListener("submit", guarded(async (event) => {
    event.preventDefault();
    if (!selected.size) throw new Error("Select at least one clip first.");
    await liveEvents();
    const body = { ids: [...selected.keys()], n_per_source: Number($("#n_per_source").value),
      variance: Number(variance.value) };
    showBatch(await api("POST", "/v1/variants", body));
  }));
  loadSource(sourceId, onSelect).then(search);
};

const loadSource = guarded(async (sourceId, onSelect) => {
  const item = await api("GET", `/v1/generations/${sourceId}`);
  $("#source").replaceChildren(card(item, { onSelect, scope: "source", taste: true }));
  await showLineage(sourceId);
});

const showLineage = guarded(async (id) => {
  const found = await api("GET", `/v1/generations/${id}/lineage`);
  const entry = (e) => el("li", { style: `margin-left: ${(e.depth - 1) * 1.2}em` },
    el("span", { class: "relation", text: e.relation.replace("_", " ") }), " ",
    el("a", { href: `/like/${e.generation.id}`, text: e.generation.tags.join(", ") || e.generation.kind }),
    " ", el("span", { class: `badge badge-${e.generation.status}`, text: e.generation.status }));
  const tree = el("div", {},
    el("h4", { text: "Comes from" }),
    found.ancestors.length ? el("ul", {}, ...found.ancestors.map(entry)) : el("p", { text: "— (an original)" }),
    el("h4", { text: "Led to" }),
    found.descendants.length ? el("ul", {}, ...found.descendants.map(entry)) : el("p", { text: "— (nothing yet)" }));
  $("#lineage").replaceChildren(tree);
});

// Sounds like an uploaded file: the file goes to POST /v1/search as multipart, the rest of the query as JSON.
pages.upload = () => {
  const form = $("#upload-form");
  bindOutput("diversity");
  form.addEventListener("submit", guarded(async (event) => {
    event.preventDefault();
    const f = form.elements;
    if (!f.file.files.length) throw new Error("Choose an audio file first.");
    const tagsAny = splitTags(f.tags_any.value);
    const query = withoutNulls({ limit: Number(f.limit.value), diversity: Number(f.diversity.value),
      filter: tagsAny.length ? { tags_any: tagsAny } : null,
      audio_query: f.windows.checked ? "windows" : null });
    const body = new FormData();
    body.append("file", f.file.files[0]);
    body.append("query", JSON.stringify(query));
    say(`Listening to ${f.file.files[0].name}…`);
    const found = await api("POST", "/v1/search", body);
    showVerdict(found.in_domain);
    showNeighbours(found, { taste: true });
  }));
};

// Sounds like my likes: POST /v1/search with the tab's liked ids as `positive` and disliked ones as `negative`.
pages.likes = () => {
  const form = $("#likes-form");
  const pick = (id, label) => el("li", {}, el("span", { text: label }), " ",
    el("button", { type: "button", class: "chip", text: "Remove", "aria-label": `Remove ${label}`,
      onclick: () => taste.remove(id) }));
  taste.onChange = (state) => {
    for (const choice of ["liked", "disliked"]) {
      const entries = Object.entries(state[choice]);
      $(`#${choice}`).replaceChildren(...(entries.length
        ? entries.map(([id, label]) => pick(id, label)) : [el("li", { class: "hint", text: "none yet" })]));
    }
  };
  taste.refresh();
  let latest = 0; // only the newest search's answer is shown, whatever order the answers arrive in
  const search = guarded(async () => {
    const asked = ++latest;
    const state = taste.read();
    const positive = Object.keys(state.liked);
    if (!positive.length) throw new Error("Like at least one clip first (in the library or among search hits).");
    const f = form.elements;
    const tagsAny = splitTags(f.tags_any.value);
    const body = { positive, negative: Object.keys(state.disliked), strategy: f.strategy.value,
      limit: Number(f.limit.value), ...(tagsAny.length ? { filter: { tags_any: tagsAny } } : {}) };
    const found = await api("POST", "/v1/search", body);
    if (asked === latest) showNeighbours(found, { taste: true });
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
  if (Object.keys(taste.read().liked).length) search();
};

function showVerdict(verdict) {
  const box = $("#verdict");
  if (!verdict) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  box.dataset.ok = String(verdict.ok);
  box.textContent = verdict.ok
    ? `Sounds like music to the model (in-domain ${verdict.score.toFixed(2)} ≥ ${verdict.threshold.toFixed(2)}).`
    : `Not music to the model (in-domain ${verdict.score.toFixed(2)} < ${verdict.threshold.toFixed(2)}): `
      + "even the nearest clips are unlikely to sound alike.";
}

function showNeighbours(found, options) {
  const box = $("#neighbours");
  const byId = (id) => found.items.find((hit) => hit.id === id);
  const hitCard = (hit) => card(
    { id: hit.id, kind: hit.kind, status: "succeeded", tags: hit.tags, seed: null, model: { alias: hit.model },
      links: { audio: hit.audio_url } }, { ...options, similarity: hit.similarity, score: hit.score });
  if (found.groups) {
    box.replaceChildren(...found.groups.map((group) => el("section", { class: "group" },
      el("h3", { text: group.cluster_id === null ? "Newer than the clustering" : `Cluster ${group.label}` }),
      el("ul", { class: "cards" }, ...group.items.map((hit) => hitCard(byId(hit.id) || hit))))));
  } else {
    box.replaceChildren(el("ul", { class: "cards" }, ...found.items.map(hitCard)));
  }
  say(`${found.items.length} neighbours in model ${found.model}.`);
}

function showBatch(batch) {
  const bar = $("#batch-progress");
  const text = $("#batch-text");
  bar.max = batch.total;
  const update = (b) => {
    const finished = b.done + b.failed + b.cancelled;
    bar.value = finished;
    bar.dataset.status = b.status;
    text.textContent = `${b.status}: ${b.done} of ${b.total} done${b.failed ? `, ${b.failed} failed` : ""}`;
  };
  update(batch);
  watch(batch.id, update);
  for (const id of batch.generation_ids) showLive($("#variants"), id, "variant");
  say(`Batch of ${batch.total} variants queued.`);
}

pages.map = () => {
  const view = new MusicMap($("#map"), $("#map-tip"));
  const lasso = $("#lasso");
  lasso.addEventListener("click", () => view.setLassoMode(lasso.getAttribute("aria-pressed") !== "true"));
  view.onSelection = (ids) => { $("#lasso-count").textContent = String(ids.length); };
  view.onLassoMode = (on) => lasso.setAttribute("aria-pressed", String(on));
  const variance = bindOutput("variance");
  $("#lasso-form").addEventListener("submit", guarded(async (event) => {
    event.preventDefault();
    if (!view.selected.size) throw new Error("Draw a lasso around some points first.");
    await liveEvents();
    const body = { ids: [...view.selected], n_per_source: Number($("#n_per_source").value),
      variance: Number(variance.value) };
    showBatch(await api("POST", "/v1/variants", body));
  }));
  const load = guarded(async () => {
    const model = $("#map-model").value.trim();
    view.setPoints([]);
    const points = [];
    let next = "";
    for (;;) {
      const page = await api("GET", `/v1/map?model=${encodeURIComponent(model)}&limit=5000${next}`);
      points.push(...page.points);
      next = continuation(page);
      if (!next) break;
    }
    view.setPoints(points);
    $("#map-info").textContent = `${points.length} clips of model ${model}.`;
  });
  $("#map-form").addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  load();
};

// The query that fetches the next page of the map ("" on the last page). The map pages with an opaque
// `cursor`; `after` is how it paged before that (a server of an earlier version).
function continuation(page) {
  if (page.next_cursor) return `&cursor=${encodeURIComponent(page.next_cursor)}`;
  if (page.next_after !== undefined && page.next_after !== null) return `&after=${page.next_after}`;
  return "";
}

// A zoomable scatter of the active clustering run's 2-D map, drawn on a canvas (one path per cluster colour,
// so tens of thousands of points redraw quickly). Hover shows tags, click plays, shift+click two points draws
// a song path between them.
class MusicMap {
  constructor(canvas, tip) {
    this.canvas = canvas;
    this.tip = tip;
    this.points = [];
    this.tags = new Map();
    this.path = [];
    this.pathStart = null;
    this.selected = new Set(); // generation ids inside the last lasso
    this.lassoMode = false;
    this.lasso = null; // the polygon being drawn, in canvas pixels
    this.onSelection = () => {};
    this.onLassoMode = () => {};
    this.reset();
    canvas.addEventListener("mousemove", (e) => this.hover(e));
    window.addEventListener("pointermove", (e) => this.lassoMove(e)); // a lasso may leave the canvas
    canvas.addEventListener("mouseleave", () => { this.tip.hidden = true; });
    canvas.addEventListener("click", (e) => this.click(e));
    canvas.addEventListener("wheel", (e) => this.wheel(e), { passive: false });
    canvas.addEventListener("mousedown", (e) => this.dragStart(e));
    window.addEventListener("mouseup", () => {
      this.drag = null;
      if (this.lasso) this.lassoEnd();
    });
    canvas.addEventListener("keydown", (e) => this.key(e));
    window.addEventListener("resize", () => this.draw());
  }

  reset() {
    this.zoom = 1;
    this.panX = 0;
    this.panY = 0;
  }

  setPoints(points) {
    this.points = points;
    this.selected = new Set();
    this.onSelection([]);
    const xs = points.map((p) => p.x);
    const ys = points.map((p) => p.y);
    this.bounds = points.length
      ? { x0: Math.min(...xs), x1: Math.max(...xs), y0: Math.min(...ys), y1: Math.max(...ys) } : null;
    this.reset();
    this.draw();
  }

  toScreen(p) {
    const { width, height } = this.canvas;
    const b = this.bounds;
    const sx = (width - 40) / Math.max(b.x1 - b.x0, 1e-9);
    const sy = (height - 40) / Math.max(b.y1 - b.y0, 1e-9);
    const x = 20 + (p.x - b.x0) * sx;
    const y = 20 + (b.y1 - p.y) * sy;
    return [(x - width / 2) * this.zoom + width / 2 + this.panX, (y - height / 2) * this.zoom + height / 2 + this.panY];
  }

  colour(label) {
    return `hsl(${(label * 137.508) % 360}, 65%, 45%)`;
  }

  draw() {
    const ctx = this.canvas.getContext("2d");
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.bounds) return;
    const byCluster = new Map();
    for (const p of this.points) {
      if (!byCluster.has(p.cluster)) byCluster.set(p.cluster, []);
      byCluster.get(p.cluster).push(p);
    }
    for (const [label, members] of byCluster) {
      ctx.fillStyle = this.colour(label);
      ctx.beginPath();
      for (const p of members) {
        const [x, y] = this.toScreen(p);
        ctx.moveTo(x + 3, y);
        ctx.arc(x, y, 3, 0, 2 * Math.PI);
      }
      ctx.fill();
    }
    this.drawPath(ctx);
    this.drawSelection(ctx);
    this.drawHighlight(ctx);
  }

  drawSelection(ctx) {
    ctx.strokeStyle = "#111";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    for (const p of this.points) {
      if (!this.selected.has(p.generation_id)) continue;
      const [x, y] = this.toScreen(p);
      ctx.moveTo(x + 5, y);
      ctx.arc(x, y, 5, 0, 2 * Math.PI);
    }
    ctx.stroke();
    if (!this.lasso || this.lasso.length < 2) return;
    ctx.setLineDash([5, 4]);
    ctx.beginPath();
    this.lasso.forEach(([x, y], i) => (i === 0 ? ctx.moveTo(x, y) : ctx.lineTo(x, y)));
    ctx.closePath();
    ctx.stroke();
    ctx.setLineDash([]);
  }

  setLassoMode(on) {
    this.lassoMode = on;
    this.canvas.style.cursor = on ? "crosshair" : "default";
    this.onLassoMode(on);
    say(on ? "Lasso: drag around the points to select." : "Lasso off: drag moves the map.");
  }

  lassoEnd() {
    const polygon = this.lasso;
    this.lasso = null;
    if (polygon.length >= 3) {
      const inside = this.points.filter((p) => insidePolygon(this.toScreen(p), polygon));
      this.selected = new Set(inside.map((p) => p.generation_id));
      this.onSelection([...this.selected]);
      say(`${this.selected.size} clips selected.`);
    }
    this.draw();
  }

  drawPath(ctx) {
    const stops = this.path.map((id) => this.points.find((p) => p.generation_id === id)).filter(Boolean);
    if (stops.length < 2) return;
    ctx.strokeStyle = "#111";
    ctx.lineWidth = 2;
    ctx.beginPath();
    stops.forEach((p, i) => {
      const [x, y] = this.toScreen(p);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }

  drawHighlight(ctx) {
    for (const [point, colour] of [[this.pathStart, "#d00"], [this.current, "#000"]]) {
      if (!point) continue;
      const [x, y] = this.toScreen(point);
      ctx.strokeStyle = colour;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(x, y, 7, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }

  eventPosition(e) {
    const rect = this.canvas.getBoundingClientRect();
    return [(e.clientX - rect.left) * (this.canvas.width / rect.width),
      (e.clientY - rect.top) * (this.canvas.height / rect.height)];
  }

  nearest(x, y, radius = 8) {
    let best = null;
    let bestDistance = radius * radius;
    for (const p of this.points) {
      const [px, py] = this.toScreen(p);
      const d = (px - x) ** 2 + (py - y) ** 2;
      if (d <= bestDistance) {
        best = p;
        bestDistance = d;
      }
    }
    return best;
  }

  async tagsOf(point) {
    if (!this.tags.has(point.generation_id)) {
      const item = await api("GET", `/v1/generations/${point.generation_id}`);
      this.tags.set(point.generation_id, item.tags.join(", ") || item.kind);
    }
    return this.tags.get(point.generation_id);
  }

  // The browser delivers at most one move per frame; the moves it merged into it trace the lasso too.
  lassoMove(e) {
    if (!this.lasso) return;
    for (const move of e.getCoalescedEvents ? e.getCoalescedEvents() : [e]) this.lasso.push(this.eventPosition(move));
    this.lasso.push(this.eventPosition(e));
    this.moved = true;
    this.draw();
  }

  hover(e) {
    if (this.lasso) return undefined;
    if (this.drag) return this.dragMove(e);
    const [x, y] = this.eventPosition(e);
    const point = this.nearest(x, y);
    this.canvas.style.cursor = point ? "pointer" : this.lassoMode ? "crosshair" : "default";
    if (!point) {
      this.tip.hidden = true;
      return undefined;
    }
    this.showTip(point, e.offsetX, e.offsetY);
    return undefined;
  }

  showTip = guarded(async (point, left, top) => {
    const text = `cluster ${point.cluster}: ${await this.tagsOf(point)}`;
    this.tip.textContent = text;
    this.tip.style.left = `${left + 12}px`;
    this.tip.style.top = `${top + 12}px`;
    this.tip.hidden = false;
  });

  click(e) {
    if (this.moved) return;
    const point = this.nearest(...this.eventPosition(e));
    if (!point) return;
    if (e.shiftKey) this.songPath(point);
    else this.play(point);
  }

  play = guarded(async (point) => {
    this.current = point;
    this.draw();
    const audio = $("#map-audio");
    audio.src = `/v1/generations/${point.generation_id}/audio`;
    $("#now-playing").textContent = `Playing: ${await this.tagsOf(point)}`;
    const like = $("#map-like");
    like.href = `/like/${point.generation_id}`;
    like.hidden = false;
    await audio.play();
  });

  songPath = guarded(async (point) => {
    if (!this.pathStart) {
      this.pathStart = point;
      this.path = [];
      this.draw();
      say("Song path: shift+click the point to end at.");
      return;
    }
    const from = this.pathStart.generation_id;
    this.pathStart = null;
    const found = await api("GET", `/v1/path?from=${from}&to=${point.generation_id}&steps=8`);
    this.path = found.stops.map((stop) => stop.generation.id);
    this.draw();
    say(`Song path of ${this.path.length} clips drawn; click its points to hear them.`);
  });

  wheel(e) {
    e.preventDefault();
    this.zoomAt(e.deltaY < 0 ? 1.25 : 0.8, ...this.eventPosition(e));
  }

  zoomAt(factor, x, y) {
    const { width, height } = this.canvas;
    this.panX = (this.panX - (x - width / 2)) * factor + (x - width / 2);
    this.panY = (this.panY - (y - height / 2)) * factor + (y - height / 2);
    this.zoom *= factor;
    this.draw();
  }

  dragStart(e) {
    if (this.lassoMode) {
      this.lasso = [this.eventPosition(e)];
      this.moved = false;
      return;
    }
    this.drag = { x: e.clientX, y: e.clientY, panX: this.panX, panY: this.panY };
    this.moved = false;
  }

  dragMove(e) {
    const dx = e.clientX - this.drag.x;
    const dy = e.clientY - this.drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) this.moved = true;
    this.panX = this.drag.panX + dx;
    this.panY = this.drag.panY + dy;
    this.draw();
  }

  key(e) {
    const { width, height } = this.canvas;
    const moves = { ArrowLeft: [40, 0], ArrowRight: [-40, 0], ArrowUp: [0, 40], ArrowDown: [0, -40] };
    if (moves[e.key]) {
      this.panX += moves[e.key][0];
      this.panY += moves[e.key][1];
      this.draw();
    } else if (e.key === "+" || e.key === "=") this.zoomAt(1.25, width / 2, height / 2);
    else if (e.key === "-") this.zoomAt(0.8, width / 2, height / 2);
    else if (e.key === "l" || e.key === "L") this.setLassoMode(!this.lassoMode);
    else if (e.key === "0") {
      this.reset();
      this.draw();
    } else if (e.key === "Enter") {
      const point = this.nearest(width / 2, height / 2, Math.max(width, height));
      if (point) this.play(point);
    } else return;
    e.preventDefault();
  }
}

// Whether a point lies inside a polygon (ray casting: an odd number of edge crossings to its right).
function insidePolygon([x, y], polygon) {
  let inside = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, yi] = polygon[i];
    const [xj, yj] = polygon[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

document.addEventListener("DOMContentLoaded", () => {
  const clear = $("#taste-clear");
  if (clear) clear.addEventListener("click", () => { taste.clear(); say("Likes and dislikes cleared."); });
  taste.refresh();
  const setup = pages[document.body.dataset.page];
  if (setup) setup();
});
