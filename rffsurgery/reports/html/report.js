/* rffsurgery's interactive report: everything is computed here from the JSON above (no network, no library).
 *
 * The intervals come from each node's `grid` (units per spatial axis) and `maps` (per axis
 * {period, step, lo, hi}: unit u = q·period + j reads lo[j] + q·step … hi[j] + q·step, unclipped),
 * exactly as LayerRF.interval(unit) computes them in Python; nothing assumes period 1 or a layout.
 */
"use strict";
(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const REPORT = JSON.parse(document.getElementById("rff-data").textContent);
  const A = REPORT.analysis;
  const NODES = A.nodes;
  const SPATIAL = A.input_size.slice(1);
  const BY_NAME = new Map(NODES.map((n, i) => [n.name, n]));
  const INDEX = new Map(NODES.map((n, i) => [n.name, i]));
  const STAGE_PX = 440; // the image view's target width in CSS pixels
  const state = { layer: null, unit: null, pinned: false, sortKey: "index", sortDir: 1 };

  // ---------------------------------------------------------------- geometry (the JSON's maps)
  function axisInterval(map, u) {
    const q = Math.floor(u / map.period), j = u - q * map.period;
    return [map.lo[j] + q * map.step, map.hi[j] + q * map.step];
  }
  /** Per axis [first, last] input pixel of `unit`, unclipped; a global axis reads all of it. */
  function unitInterval(node, unit) {
    return node.maps.map((m, a) => (m ? axisInterval(m, unit[a]) : [0, SPATIAL[a] - 1]));
  }
  function hasMaps(node) { return node.status === "ok" && Array.isArray(node.maps) && Array.isArray(node.grid); }
  function mapKind(m) {
    if (m.period === 1) return null;
    if (m.step < m.period) return "upsampled";
    for (let j = 0; j + 1 < m.period; j++) {
      if (m.lo[j] === m.lo[j + 1] && m.hi[j] === m.hi[j + 1]) return "windowed";
    }
    return "periodic";
  }

  // ---------------------------------------------------------------- formatting
  const num = (v) => (typeof v === "number" ? v : v === "global" ? Infinity
    : typeof v === "string" && v.includes("/") ? Number(v.split("/")[0]) / Number(v.split("/")[1]) : Number.NaN);
  const perAxis = (values) => { const t = values.map(String); return t.every((x) => x === t[0]) ? t[0] : t.join(" × "); };
  const fmtInt = (n) => Number(n).toLocaleString("en-US");
  function si(n) {
    if (n === null || n === undefined) return "";
    for (const [unit, scale] of [["G", 1e9], ["M", 1e6], ["k", 1e3]]) {
      if (n >= scale) { let t = (n / scale).toPrecision(4); if (t.includes(".")) t = t.replace(/\.?0+$/, ""); return t + unit; }
    }
    return String(n);
  }
  function rfText(n) {
    if (!n.rf) return n.status === "none" ? "" : "?";
    return perAxis(n.rf.map((r, a) => (n.rf_min && n.rf_min[a] !== r ? `${n.rf_min[a]}–${r}` : r)));
  }
  const geoText = (values) => (values ? perAxis(values.map((v) => (v === null ? "–" : v))) : "");
  const maxOf = (values) => { const f = values.filter((v) => !Number.isNaN(v)); return f.length ? Math.max(...f) : -1; };
  function statusText(n) {
    if (n.status === "none") return "";
    if (n.status !== "ok") return n.status + (n.global_context ? ", +global context" : "");
    const parts = [];
    const maps = n.maps || [];
    const global = maps.filter((m) => !m).length;
    if (global) parts.push(`global on ${global} of ${maps.length} axes`);
    const periodic = maps.filter(Boolean).map((m) => [mapKind(m), m.period]).filter((k) => k[0]);
    if (periodic.length) parts.push(`${periodic[0][0]} (period ${[...new Set(periodic.map((k) => k[1]))].join("×")})`);
    if ((n.notes || []).some((t) => /not exact|bound/i.test(t))) parts.push("bounded");
    if (!parts.length) parts.push("local");
    if (n.global_context) parts.push("+global context");
    return parts.join(", ");
  }
  const spanText = (lo, hi) => `${lo}…${hi} (${hi - lo + 1} px)`;

  // ---------------------------------------------------------------- DOM helpers
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function svgEl(tag, attrs, parent) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (parent) parent.appendChild(e);
    return e;
  }
  function setRect(rect, x0, y0, x1, y1) {
    rect.setAttribute("x", x0); rect.setAttribute("y", y0);
    rect.setAttribute("width", Math.max(0, x1 - x0)); rect.setAttribute("height", Math.max(0, y1 - y0));
  }
  function bytes(b64) {
    const bin = atob(b64), out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  // ---------------------------------------------------------------- a picture with an SVG overlay in pixel units
  /* The SVG's user units are input pixels: pixel (r, c) covers [c, c+1) × [r, r+1); a margin of M pixels
   * around the image shows where intervals reach into the padding.  Scales are multiples of 1/4 CSS px. */
  function makeStage(host, H, W) {
    const M = Math.max(2, Math.round(0.15 * Math.max(H, W)));
    const s = Math.max(0.25, Math.floor((4 * STAGE_PX) / (Math.max(H, W) + 2 * M)) / 4);
    host.style.width = `${(W + 2 * M) * s}px`;
    host.style.height = `${(H + 2 * M) * s}px`;
    const canvas = el("canvas", { width: W, height: H });
    Object.assign(canvas.style, { left: `${M * s}px`, top: `${M * s}px`, width: `${W * s}px`, height: `${H * s}px` });
    const svg = svgEl("svg", { viewBox: `${-M} ${-M} ${W + 2 * M} ${H + 2 * M}`, preserveAspectRatio: "none",
      "data-margin": M, "data-scale": s });
    svgEl("path", { class: "padding", d: `M${-M} ${-M}h${W + 2 * M}v${H + 2 * M}h${-(W + 2 * M)}zM0 0h${W}v${H}h${-W}z` }, svg);
    const layer = svgEl("g", {}, svg);
    svgEl("rect", { class: "border", x: 0, y: 0, width: W, height: H }, svg);
    host.replaceChildren(canvas, svg);
    /** A rectangle over input pixels rows r0…r1, cols c0…c1 (inclusive, unclipped), drawn clipped to the view. */
    function box(rect, r0, r1, c0, c1, limit) {
      const lim = limit || [-M, H + M, -M, W + M];
      const y0 = Math.max(r0, lim[0]), y1 = Math.min(r1 + 1, lim[1]);
      const x0 = Math.max(c0, lim[2]), x1 = Math.min(c1 + 1, lim[3]);
      setRect(rect, x0, y0, Math.max(x0, x1), Math.max(y0, y1));
      rect.style.display = x1 > x0 && y1 > y0 ? "" : "none";
      return y0 > r0 || y1 < r1 + 1 || x0 > c0 || x1 < c1 + 1; // cut by the clip
    }
    /** The input pixel under a pointer event, or null outside the image. */
    function pixelAt(event) {
      const r = svg.getBoundingClientRect();
      const x = (event.clientX - r.left) / s - M, y = (event.clientY - r.top) / s - M;
      return x >= 0 && y >= 0 && x < W && y < H ? [y, x] : null;
    }
    function label(text, x, y) {
      const t = svgEl("text", { class: "label", x, y, "font-size": 12 / s, "stroke-width": 3 / s }, layer);
      t.textContent = text;
      return t;
    }
    return { host, canvas, svg, layer, M, s, H, W, box, pixelAt, label };
  }

  function paintRgb(canvas, image) {
    const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
    const data = ctx.createImageData(W, H);
    const rgb = bytes(image.rgb);
    for (let i = 0, k = 0; i < W * H; i++, k += 3) {
      data.data[4 * i] = rgb[k]; data.data[4 * i + 1] = rgb[k + 1]; data.data[4 * i + 2] = rgb[k + 2]; data.data[4 * i + 3] = 255;
    }
    ctx.putImageData(data, 0, 0);
  }
  function paintNeutral(canvas) {
    const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
    let step = 1;
    while (step * 16 < Math.max(H, W)) step *= 2; // 8 to 16 squares along the longer side
    for (let y = 0; y < H; y += step) {
      for (let x = 0; x < W; x += step) {
        ctx.fillStyle = ((x + y) / step) % 2 ? "#a9afb5" : "#c3c8cd";
        ctx.fillRect(x, y, step, step);
      }
    }
  }
  const MAGMA = ["#000004", "#1c1044", "#4f127b", "#812581", "#b5367a", "#e55064", "#fb8761", "#fec287", "#fcfdbf"]
    .map((h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)));
  function magma(v) {
    const x = (v / 255) * (MAGMA.length - 1), i = Math.min(MAGMA.length - 2, Math.floor(x)), f = x - i;
    return MAGMA[i].map((c, k) => Math.round(c + f * (MAGMA[i + 1][k] - c)));
  }
  const LUT = Array.from({ length: 256 }, (_, v) => magma(v));
  function paintHeat(canvas, heat) {
    const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
    const data = ctx.createImageData(W, H), values = bytes(heat);
    for (let i = 0; i < W * H; i++) {
      const c = LUT[values[i]];
      data.data[4 * i] = c[0]; data.data[4 * i + 1] = c[1]; data.data[4 * i + 2] = c[2]; data.data[4 * i + 3] = 255;
    }
    ctx.putImageData(data, 0, 0);
  }

  // ---------------------------------------------------------------- summary
  function summary() {
    document.getElementById("model-title").textContent = `${A.model} — input ${A.input_size.join("×")}`;
    const main = NODES.filter((n) => n.main).length;
    const macs = A.total_macs !== null && A.total_macs !== undefined ? `${si(A.total_macs)} MACs per sample`
      : "MACs not counted";
    const image = REPORT.image ? `image: ${REPORT.image.name || "given"} as the model sees it`
      : "image: a neutral grid (give one with --image)";
    document.getElementById("model-facts").textContent =
      `${NODES.length} nodes, ${main} main layers · ${fmtInt(A.total_params)} parameters · ${macs} · ${image}`;
    const warnings = [];
    const unknown = NODES.filter((n) => (n.status === "unknown" || n.status === "misaligned")
      && !(n.reason || "").startsWith("after "));
    if (unknown.length) {
      warnings.push(`${unknown.length} op(s) without a geometry rule (nodes after them are unknown): `
        + unknown.slice(0, 5).map((n) => `${n.name} (${n.op})`).join(", "));
    }
    if (A.shape_specialised) warnings.push("traced for this input size only: the model's code branches on shapes");
    const w = document.getElementById("model-warnings");
    w.textContent = warnings.join(" · ");
    w.hidden = !warnings.length;
    document.getElementById("footer").textContent = `Made by ${REPORT.tool.name} ${REPORT.tool.version} `
      + `(${REPORT.schema} v${REPORT.schema_version}; the nodes are analyze --json's). Every interval is computed in this `
      + "page from the nodes' grid and maps: unit u = q·period + j reads lo[j] + q·step … hi[j] + q·step, unclipped.";
  }

  // ---------------------------------------------------------------- the layer table
  const COLUMNS = [
    { key: "index", title: "#", num: true, text: (n) => String(INDEX.get(n.name)), sort: (n) => INDEX.get(n.name) },
    { key: "name", title: "name", cls: "name", text: (n) => n.name, sort: (n) => n.name },
    { key: "op", title: "op", text: (n) => n.op, sort: (n) => n.op },
    { key: "shape", title: "output", text: (n) => (n.shape ? n.shape.join("×") : ""),
      sort: (n) => (n.shape ? n.shape.reduce((a, b) => a * b, 1) : -1) },
    { key: "rf", title: "RF", num: true, text: rfText, sort: (n) => (n.rf ? maxOf(n.rf.map(num)) : -1) },
    { key: "stride", title: "S", num: true, text: (n) => geoText(n.stride), sort: (n) => (n.stride ? maxOf(n.stride.map(num)) : -1) },
    { key: "padding", title: "P", num: true, text: (n) => geoText(n.padding), sort: (n) => (n.padding ? maxOf(n.padding.map(num)) : -1) },
    { key: "params", title: "params", num: true, text: (n) => (n.n_params ? fmtInt(n.n_params) : ""), sort: (n) => n.n_params || 0 },
    { key: "macs", title: "MACs", num: true, text: (n) => (n.macs ? si(n.macs) : ""), sort: (n) => n.macs || 0 },
    { key: "tag", title: "tag", text: (n) => (n.tag ? "tagged" : ""), sort: (n) => (n.tag ? 0 : 1) },
    { key: "status", title: "status", text: statusText, sort: statusText },
  ];
  const ROWS = new Map();

  function buildTable() {
    const head = document.querySelector("#layer-table thead tr");
    for (const c of COLUMNS) {
      const th = el("th", { "data-key": c.key, scope: "col", class: c.num ? "num" : "" }, c.title);
      th.addEventListener("click", () => sortBy(c.key));
      head.appendChild(th);
    }
    const body = document.querySelector("#layer-table tbody");
    const frag = document.createDocumentFragment();
    for (const n of NODES) {
      const tr = el("tr", { "data-name": n.name, tabindex: "0" });
      if (n.tag) { tr.classList.add("tagged"); tr.title = `tagged: ${n.tag}`; }
      for (const c of COLUMNS) {
        const td = el("td", { class: [c.num ? "num" : "", c.cls || "", c.key === "status" ? `status-${n.status}` : ""].join(" ").trim() },
          c.text(n));
        if (c.key === "name" || c.key === "status") td.title = td.textContent;
        if (c.key === "tag" && n.tag) td.title = n.tag;
        tr.appendChild(td);
      }
      tr.addEventListener("click", () => select(n.name));
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(n.name); } });
      ROWS.set(n.name, tr);
      frag.appendChild(tr);
    }
    body.appendChild(frag);
    document.getElementById("filter").addEventListener("input", applyFilter);
    document.getElementById("all-nodes").addEventListener("change", applyFilter);
    markSort();
    applyFilter();
  }
  function applyFilter() {
    const q = document.getElementById("filter").value.trim().toLowerCase();
    const every = document.getElementById("all-nodes").checked;
    let shown = 0;
    for (const n of NODES) {
      const visible = (every || n.main) && (!q || n.name.toLowerCase().includes(q));
      ROWS.get(n.name).hidden = !visible;
      shown += visible;
    }
    const scope = every ? "every node" : "main layers";
    document.getElementById("row-count").textContent = `${shown} of ${NODES.length} nodes shown (${scope}${q ? `, name contains “${q}”` : ""})`;
  }
  function sortBy(key) {
    state.sortDir = state.sortKey === key ? -state.sortDir : 1;
    state.sortKey = key;
    const col = COLUMNS.find((c) => c.key === key);
    const order = NODES.slice().sort((a, b) => {
      const x = col.sort(a), y = col.sort(b);
      const cmp = typeof x === "string" ? x.localeCompare(y) : x - y;
      return cmp * state.sortDir || INDEX.get(a.name) - INDEX.get(b.name);
    });
    const body = document.querySelector("#layer-table tbody");
    const frag = document.createDocumentFragment();
    for (const n of order) frag.appendChild(ROWS.get(n.name));
    body.appendChild(frag);
    markSort();
  }
  function markSort() {
    for (const th of document.querySelectorAll("#layer-table th")) {
      if (th.dataset.key === state.sortKey) th.setAttribute("aria-sort", state.sortDir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
  }

  // ---------------------------------------------------------------- the image view
  let stage = null;
  const view = {};
  function buildView() {
    const host = document.getElementById("image-stage");
    if (SPATIAL.length !== 2) {
      host.hidden = true;
      document.getElementById("view-hint").textContent = `The image view draws 2-D inputs; this model's input has `
        + `${SPATIAL.length} spatial axis(es). The text below gives the centre unit's interval per axis.`;
      return;
    }
    stage = makeStage(host, SPATIAL[0], SPATIAL[1]);
    if (REPORT.image) paintRgb(stage.canvas, REPORT.image); else paintNeutral(stage.canvas);
    view.grid = svgEl("g", { class: "grid" }, stage.layer);
    view.cell = svgEl("rect", { class: "cell", id: "unit-cell" }, stage.layer);
    view.rf = svgEl("rect", { class: "rf", id: "unit-rf" }, stage.layer);
    view.centre = svgEl("path", { class: "centre", id: "unit-centre" }, stage.layer);
    view.size = stage.label("", 0, 0);
    view.size.id = "unit-rf-size";
    host.addEventListener("pointermove", (e) => {
      if (state.pinned) return;
      const u = unitAtEvent(e);
      if (u) showUnit(u);
    });
    host.addEventListener("click", (e) => {
      const u = unitAtEvent(e);
      if (!u) { state.pinned = false; showUnit(state.unit); return; }
      state.pinned = !(state.pinned && u.join() === (state.unit || []).join());
      showUnit(u);
    });
    host.addEventListener("keydown", (e) => {
      const moves = { ArrowUp: [0, -1], ArrowDown: [0, 1], ArrowLeft: [1, -1], ArrowRight: [1, 1] };
      const n = state.layer && BY_NAME.get(state.layer);
      if (!moves[e.key] || !n || !hasMaps(n) || !state.unit) return;
      e.preventDefault();
      const [axis, d] = moves[e.key], u = state.unit.slice();
      u[axis] = Math.min(Math.max(0, u[axis] + d), (n.grid[axis] || 1) - 1);
      state.pinned = true;
      showUnit(u);
    });
  }
  /** The unit whose cell is under the pointer: the layer's output grid laid evenly over the image. */
  function unitAtEvent(e) {
    const n = state.layer && BY_NAME.get(state.layer);
    const p = stage && stage.pixelAt(e);
    if (!n || !p || !hasMaps(n)) return null;
    return n.grid.map((g, a) => (g ? Math.min(g - 1, Math.floor((p[a] * g) / SPATIAL[a])) : 0));
  }
  function drawGrid(n) {
    if (!stage) return;
    view.grid.replaceChildren();
    if (!hasMaps(n)) return;
    const [H, W] = SPATIAL;
    n.grid.forEach((g, a) => {
      if (!g || g < 2 || (SPATIAL[a] / g) * stage.s < 4) return; // too fine to draw: hovering still works
      for (let k = 1; k < g; k++) {
        const t = (k * SPATIAL[a]) / g;
        svgEl("line", a === 0 ? { x1: 0, x2: W, y1: t, y2: t } : { x1: t, x2: t, y1: 0, y2: H }, view.grid);
      }
    });
  }
  function showLayer(n) {
    document.getElementById("view-title").textContent = `Image view: ${n.name} (${n.op})`;
    state.pinned = false;
    drawGrid(n);
    showUnit(hasMaps(n) ? n.grid.map((g) => (g ? Math.floor(g / 2) : 0)) : null);
  }
  function showUnit(unit) {
    const n = BY_NAME.get(state.layer);
    const info = document.getElementById("unit-info");
    state.unit = unit;
    const hide = () => { if (stage) for (const k of ["cell", "rf", "centre", "size"]) view[k].style.display = "none"; };
    if (!hasMaps(n)) {
      hide();
      info.textContent = n.status === "global" ? `${n.name}: every unit reads the whole input (global).`
        : n.status === "none" ? `${n.name} is not a tensor with positions (${n.op}).`
          : `${n.name}: no receptive field (${n.status}${n.reason ? `: ${n.reason}` : ""}).`;
      if (stage && n.status === "global") {
        stage.box(view.rf, 0, SPATIAL[0] - 1, 0, SPATIAL[1] - 1);
        view.rf.style.display = "";
        view.rf.classList.remove("clipped");
      }
      return;
    }
    const iv = unitInterval(n, unit);
    const names = SPATIAL.length === 2 ? ["rows", "cols"] : SPATIAL.map((_, a) => `axis ${a}`);
    const parts = iv.map(([lo, hi], a) => `${names[a]} ${n.maps[a] ? spanText(lo, hi) : "all (global)"}`);
    const past = iv.some(([lo, hi], a) => lo < 0 || hi > SPATIAL[a] - 1);
    let text = `${n.name} unit (${unit.join(", ")}) of ${n.grid.map((g) => g || 1).join(" × ")}: ${parts.join(", ")}`;
    if (stage) {
      const [[r0, r1], [c0, c1]] = iv;
      const [g0, g1] = n.grid.map((g) => g || 1);
      const [H, W] = SPATIAL;
      setRect(view.cell, (unit[1] * W) / g1, (unit[0] * H) / g0, ((unit[1] + 1) * W) / g1, ((unit[0] + 1) * H) / g0);
      view.cell.style.display = "";
      const cut = stage.box(view.rf, r0, r1, c0, c1);
      view.rf.classList.toggle("clipped", cut);
      Object.assign(view.rf.dataset, { unit: unit.join(","), rows: `${r0},${r1}`, cols: `${c0},${c1}`, clipped: String(cut) });
      const cx = (c0 + c1 + 1) / 2, cy = (r0 + r1 + 1) / 2, d = 7 / stage.s;
      view.centre.setAttribute("d", `M${cx - d} ${cy}H${cx + d}M${cx} ${cy - d}V${cy + d}`);
      Object.assign(view.centre.dataset, { x: cx, y: cy });
      view.centre.style.display = "";
      view.size.textContent = `${r1 - r0 + 1}×${c1 - c0 + 1} px${past ? " (past the image)" : ""}`;
      view.size.setAttribute("x", Math.max(c0, -stage.M) + 3 / stage.s);
      view.size.setAttribute("y", Math.max(r0, -stage.M) + 14 / stage.s);
      view.size.style.display = "";
      text += `; centre (${(r0 + r1) / 2}, ${(c0 + c1) / 2})`;
      if (cut) text += `. The interval is larger than the view: drawn clipped, true size ${r1 - r0 + 1}×${c1 - c0 + 1} px`;
      else if (past) text += ". It reaches past the image (into the padding)";
    }
    info.textContent = `${text}.${state.pinned ? " Pinned (click again to release)." : ""}`;
  }

  // ---------------------------------------------------------------- the growth chart
  const CHART = { W: 720, H: 280, L: 48, R: 14, T: 14, B: 30 };
  const chart = {};
  function niceStep(range) {
    const raw = range / 5, p = 10 ** Math.floor(Math.log10(raw)), f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
  }
  function buildChart() {
    const svg = document.getElementById("growth-chart");
    const pts = NODES.filter((n) => n.main && n.rf);
    if (!pts.length) { svgEl("text", { x: 20, y: 40, class: "tick" }, svg).textContent = "no layer with a receptive field"; return; }
    const erf = REPORT.erf ? REPORT.erf.nodes : {};
    const side = Math.max(...SPATIAL);
    const finite = pts.flatMap((n) => n.rf.filter((r) => typeof r === "number"));
    const erfSides = pts.flatMap((n) => (erf[n.name] ? erf[n.name].squares.map((q) => q.side) : []));
    const step = niceStep(Math.max(side, ...finite, ...erfSides) * 1.05);
    const top = Math.ceil((Math.max(side, ...finite, ...erfSides) * 1.05) / step) * step;
    const { W, H, L, R, T, B } = CHART;
    const x = (i) => L + (pts.length === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (pts.length - 1));
    const y = (v) => T + (H - T - B) * (1 - Math.min(v, top) / top);
    svgEl("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }, svg);
    svgEl("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }, svg);
    for (let v = 0; v <= top; v += step) {
      svgEl("text", { class: "tick", x: L - 4, y: y(v) + 3, "text-anchor": "end" }, svg).textContent = String(v);
    }
    svgEl("text", { class: "tick", x: L, y: H - 8 }, svg).textContent = "depth: main layers in execution order →";
    svgEl("text", { class: "tick", x: L + 6, y: T + 8 }, svg).textContent = "input px";
    svgEl("line", { class: "side-line", x1: L, x2: W - R, y1: y(side), y2: y(side) }, svg);
    svgEl("text", { class: "tick", x: W - R, y: y(side) - 3, "text-anchor": "end" }, svg).textContent = `input side ${side}`;
    chart.sel = svgEl("line", { class: "sel-line", y1: T, y2: H - B, x1: -10, x2: -10 }, svg);
    pts.forEach((n, i) => { if (n.tag) svgEl("line", { class: "tag-line", x1: x(i), x2: x(i), y1: T, y2: H - B }, svg); });
    const square = pts.every((n) => new Set(n.rf.map(String)).size === 1);
    const axes = square ? [0] : pts[0].rf.map((_, a) => a);
    axes.forEach((a) => {
      const d = pts.map((n, i) => `${i ? "L" : "M"}${x(i)} ${y(num(n.rf[a]))}`).join("");
      svgEl("path", { class: `rf-line axis${a}`, d }, svg);
    });
    chart.x = new Map();
    pts.forEach((n, i) => {
      chart.x.set(n.name, x(i));
      const e = erf[n.name];
      if (e) {
        const s50 = e.squares.find((q) => q.fraction === 0.5), s99 = e.squares.find((q) => q.fraction === 0.99);
        if (s50) svgEl("path", { class: "erf50", d: `M${x(i)} ${y(s50.side) - 4}l4 7h-8z` }, svg);
        if (s99) svgEl("rect", { class: "erf99", x: x(i) - 3, y: y(s99.side) - 3, width: 6, height: 6 }, svg);
      }
      const rf = Math.max(...n.rf.map(num));
      const c = svgEl("circle", { class: `pt${n.tag ? " tagged" : ""}${rf === Infinity ? " global" : ""}`, cx: x(i),
        cy: y(rf), r: n.tag ? 4 : 3, "data-name": n.name }, svg);
      svgEl("title", {}, c).textContent = `${n.name}: RF ${rfText(n)}${n.tag ? ` (tagged: ${n.tag})` : ""}`
        + (e ? `; ERF 50 % / 99 % squares ${e.squares.filter((q) => q.fraction === 0.5 || q.fraction === 0.99).map((q) => q.side).join(" / ")} px` : "");
      c.addEventListener("click", () => { select(n.name); const r = ROWS.get(n.name); if (!r.hidden) r.scrollIntoView({ block: "nearest" }); });
    });
    const tagged = pts.filter((n) => n.tag).length;
    document.getElementById("growth-legend").textContent = `Line: RF per main layer${square ? "" : " (solid: rows, dashed: columns)"}`
      + `; global layers at the top (hollow). Red: tagged layers (${tagged}).`
      + (REPORT.erf ? " Green ▲: side of the square holding 50 % of the ERF, □: 99 % (computed layers)." : "")
      + " Dotted: the input side. Click a point to select its layer.";
  }

  // ---------------------------------------------------------------- the ERF panel
  let erfStage = null;
  const erfView = {};
  const SQUARES = [[0.2, "#9be7ff"], [0.5, "#39ff14"], [0.99, "#ffffff"]];
  function buildErf() {
    const E = REPORT.erf;
    if (!E) return;
    document.getElementById("erf-panel").hidden = false;
    const [H, W] = E.input_size.slice(1);
    erfStage = makeStage(document.getElementById("erf-stage"), H, W);
    erfView.rf = svgEl("rect", { class: "rf", id: "erf-rf" }, erfStage.layer);
    erfView.squares = SQUARES.map(([f, colour]) => svgEl("rect", { class: "square", stroke: colour, id: `erf-square-${Math.round(f * 100)}` }, erfStage.layer));
    erfView.centre = svgEl("path", { class: "centre" }, erfStage.layer);
    document.getElementById("erf-note").textContent = `|∂unit/∂input| summed over channels and inputs (max = 1), `
      + `for the unit at the centre of each computed layer. Weights: ${E.weights}; inputs: ${E.data}. `
      + `Squares: the smallest centred squares holding 20 / 50 / 99 % of the contribution (RepLKNet), clipped to the image.`;
  }
  function showErf(n) {
    const E = REPORT.erf;
    if (!E) return;
    const e = E.nodes[n.name];
    const facts = document.getElementById("erf-facts");
    const host = document.getElementById("erf-stage");
    if (!e) {
      host.hidden = true;
      const names = Object.keys(E.nodes);
      const p = el("p", {}, `No ERF for ${n.name}. Computed for ${names.length} layer(s): `);
      names.forEach((name, i) => {
        const b = el("button", { type: "button" }, name);
        b.addEventListener("click", () => select(name));
        p.append(i ? ", " : "", b);
      });
      facts.replaceChildren(p);
      return;
    }
    host.hidden = false;
    paintHeat(erfStage.canvas, e.heat);
    const [H, W] = [e.height, e.width];
    const iv = e.rf_interval.map((v, a) => v || [0, [H, W][a] - 1]);
    const cut = erfStage.box(erfView.rf, iv[0][0], iv[0][1], iv[1][0], iv[1][1]);
    erfView.rf.classList.toggle("clipped", cut);
    const [ci, cj] = e.square_centre;
    const d = 6 / erfStage.s;
    erfView.centre.setAttribute("d", `M${cj + 0.5 - d} ${ci + 0.5}h${2 * d}M${cj + 0.5} ${ci + 0.5 - d}v${2 * d}`);
    const rows = [];
    const rfSize = iv.map(([lo, hi]) => hi - lo + 1);
    const inside = iv.map(([lo, hi], a) => Math.max(0, Math.min(hi, [H, W][a] - 1) - Math.max(lo, 0) + 1));
    const past = iv.some(([lo, hi], a) => lo < 0 || hi > [H, W][a] - 1);
    rows.push(["theoretical RF", `${rfSize.join("×")} px${past ? " (past the image)" : ""}`, ((inside[0] * inside[1]) / (H * W)).toFixed(3)]);
    for (const q of e.squares) {
      const r = (q.side - 1) / 2;
      const clipped = ci - r < 0 || cj - r < 0 || ci + r > H - 1 || cj + r > W - 1;
      const k = SQUARES.findIndex(([f]) => f === q.fraction);
      if (k >= 0) erfStage.box(erfView.squares[k], ci - r, ci + r, cj - r, cj + r, [0, H, 0, W]);
      const over = q.side > Math.max(H, W) ? `, larger than the ${Math.max(H, W)} px image side` : "";
      rows.push([`${Math.round(q.fraction * 100)} % of the ERF`, `${q.side} px square${clipped ? ` (clipped to the image${over})` : ""}`,
        q.area_ratio.toFixed(3)]);
    }
    const table = el("table", { id: "erf-table" });
    const head = el("tr");
    for (const t of ["", "size", "area ratio"]) head.appendChild(el("th", {}, t));
    table.appendChild(head);
    for (const r of rows) {
      const tr = el("tr");
      r.forEach((t, i) => tr.appendChild(el("td", { class: i === 2 ? "num" : "" }, t)));
      table.appendChild(tr);
    }
    facts.replaceChildren(el("p", {}, `${n.name}, unit (${e.unit.join(", ")}): the centre`), table,
      el("p", { class: "hint" }, `Area ratio: the part inside the image over the image's area. Share of the ERF outside the theoretical RF: ${e.outside_rf.toExponential(1)}.`));
  }

  // ---------------------------------------------------------------- the freeze plan
  function buildPlan() {
    const P = REPORT.plan;
    if (!P) return;
    document.getElementById("plan-panel").hidden = false;
    const options = Object.keys(P.policy_options || {}).length ? ` ${JSON.stringify(P.policy_options)}` : "";
    document.getElementById("plan-facts").textContent = `Fingerprint ${P.fingerprint} · policy ${P.policy}${options} · `
      + `frozen in ${P.schedule_text} · BatchNorm: ${P.bn_mode} · ${P.parameters} parameter tensor(s) in ${P.nodes.length} node(s)`
      + (P.open_ended ? ` · the pattern goes on after epoch ${P.epochs}` : "");
    const table = document.getElementById("freeze-matrix");
    const frozen = new Set(P.frozen_epochs);
    const head = el("tr");
    head.appendChild(el("th", { class: "node" }, "node \\ epoch"));
    for (let e = 1; e <= P.epochs; e++) head.appendChild(el("th", { scope: "col" }, String(e)));
    table.appendChild(head);
    for (const name of P.nodes) {
      const tr = el("tr", { "data-name": name });
      const th = el("th", { class: "node", scope: "row" }, name + (P.tagged.includes(name) ? "" : " (BatchNorm)"));
      tr.appendChild(th);
      for (let e = 1; e <= P.epochs; e++) {
        tr.appendChild(el("td", { class: frozen.has(e) ? "on" : "off", title: `${name}, epoch ${e}: ${frozen.has(e) ? "frozen" : "trains"}` }));
      }
      tr.addEventListener("click", () => { if (BY_NAME.has(name)) select(name); });
      table.appendChild(tr);
    }
  }

  // ---------------------------------------------------------------- selection
  function select(name) {
    const n = BY_NAME.get(name);
    if (!n) return;
    if (state.layer) ROWS.get(state.layer).classList.remove("selected");
    state.layer = name;
    ROWS.get(name).classList.add("selected");
    if (chart.sel) {
      const x = chart.x.has(name) ? chart.x.get(name) : -10;
      chart.sel.setAttribute("x1", x); chart.sel.setAttribute("x2", x);
    }
    showLayer(n);
    showErf(n);
    document.documentElement.dataset.selected = name;
  }
  function defaultLayer() {
    const local = NODES.filter((n) => n.main && hasMaps(n) && n.maps.every(Boolean));
    return (local.length ? local[local.length - 1] : NODES.find((n) => n.main) || NODES[0]).name;
  }

  try {
    summary();
    buildTable();
    buildView();
    buildChart();
    buildErf();
    buildPlan();
    select(defaultLayer());
    document.documentElement.dataset.ready = "true";
  } catch (err) {
    const box = document.getElementById("report-error");
    box.hidden = false;
    box.textContent = `The report failed to draw: ${err}`;
    console.error(err);
  }
})();
