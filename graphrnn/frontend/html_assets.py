"""The stylesheet and script of the ``inspect --format html`` page (graphrnn's own, no CDN)."""
# ruff: noqa: E501  (the strings are CSS and JavaScript, not Python)

PAGE_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>{title}</title><style>{css}</style></head>
<body>
<header><h1>{name}</h1><span id="summary"></span>
<label>first step <input id="start" type="range" min="0" max="0" value="0"></label>
<span id="start-label"></span>
<label>steps shown <select id="window"></select></label>
<button id="zoom-out" title="zoom out">&minus;</button><button id="zoom-in" title="zoom in">+</button>
</header>
<main>
<section id="folded-panel"><h2>Folded network</h2><div class="scroll"><svg id="folded"></svg></div></section>
<section id="unrolled-panel"><h2>Unrolled over <span id="steps"></span> steps <span class="legend">solid: same step &middot; dashed: an earlier step &middot; dotted: own past &middot; dash-dot: a later step &middot; colour: parameter (tied = same colour)</span></h2><div class="scroll"><svg id="unrolled"></svg></div></section>
<section id="side"><h2>Selection</h2><div id="info">Hover or click a vertex or an edge.</div>
<h2>Compiled schedule</h2><div id="schedule"></div></section>
</main>
<pre id="test-result"></pre>
<script type="application/json" id="graph-data">{data}</script>
<script>{js}</script>
</body></html>
"""

PAGE_CSS = """
*{box-sizing:border-box}
body{margin:0;font:13px/1.35 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1f2937;
 background:#f8fafc;height:100vh;display:flex;flex-direction:column}
header{display:flex;align-items:center;gap:14px;padding:8px 14px;background:#1e293b;color:#e2e8f0}
header h1{font-size:17px;margin:0 6px 0 0;color:#fff}
header label{display:flex;align-items:center;gap:6px}
header button{width:28px;height:24px;border:0;border-radius:4px;background:#334155;color:#fff;
 font-size:15px;cursor:pointer}
#summary{color:#94a3b8}
h2 .legend{font-weight:400;color:#64748b;font-size:11.5px;margin-left:10px}
main{flex:1;display:grid;grid-template-columns:auto minmax(0,1fr) 400px;gap:10px;padding:10px;
 min-height:0}
section{background:#fff;border:1px solid #e2e8f0;border-radius:8px;display:flex;
 flex-direction:column;min-height:0;overflow:hidden}
h2{font-size:13px;margin:0;padding:7px 10px;border-bottom:1px solid #e2e8f0;background:#f1f5f9;
 color:#334155}
.scroll{overflow:auto;flex:1}
#side{overflow:auto}
#info{padding:8px 10px;min-height:150px;font-size:12.5px}
#info b{font-family:ui-monospace,Menlo,Consolas,monospace}
#info table{border-collapse:collapse;margin-top:4px;width:100%}
#info td{padding:2px 4px;border-top:1px solid #f1f5f9;vertical-align:top}
.mono,svg text{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px}
.tag{display:inline-block;padding:0 6px;border-radius:9px;font-size:11px;color:#fff;margin-left:4px}
.tag.batched{background:#059669}.tag.loop{background:#d97706}.tag.fused{background:#7c3aed}
#schedule{padding:6px 10px 10px}
.stage{border:1px solid #e2e8f0;border-radius:6px;margin:6px 0;padding:4px 6px}
.stage-head{font-weight:600;margin-bottom:3px}
.op{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:11px;padding:1px 4px;
 border-radius:3px;white-space:pre-wrap;word-break:break-all;cursor:default}
.fusedbox{border-left:3px solid #7c3aed;margin:2px 0 2px 2px;padding-left:4px}
.op.hl{background:#fde68a}
.vertex{cursor:pointer}
.edge{transition:opacity .1s}
svg.dim .edge:not(.hl),svg.dim .elabel:not(.hl){opacity:.13}
svg.dim .vertex:not(.sel):not(.src):not(.twin){opacity:.45}
.edge.hl path{stroke-width:3px}
.vertex.sel rect{stroke:#0f172a;stroke-width:3px}
.vertex.src rect{stroke:#2563eb;stroke-width:2.5px}
.vertex.twin rect{stroke:#0f172a;stroke-dasharray:3 2}
#test-result{display:none}
"""

PAGE_JS = r"""
(function () {
"use strict";
const D = JSON.parse(document.getElementById("graph-data").textContent);
const NS = "http://www.w3.org/2000/svg", B = D.box, K = D.kinds;
const DASH = {same: null, recurrent: "6 4", state: "2 3", anticausal: "9 3 2 3"};
const S = {start: 0, width: Math.min(D.steps, 8), zoom: 1, pinned: null};
const index = {}; D.V.forEach((v, i) => { index[v[0]] = i; });
const inEdges = D.V.map(() => []);
D.E.forEach((e, k) => inEdges[e[1]].push(k));
const uses = {};
D.E.forEach(e => { const p = D.folded[e[2]].param; if (p) uses[p] = (uses[p] || 0) + 1; });
const pre = D.columns.filter(t => t < 0), post = D.columns.filter(t => t >= D.steps);
const far = Math.max(0, ...D.folded.map(f => Math.abs(f.delay)));
const TOP = B.top + (far > 1 ? 14 + 8 * Math.min(far, 4) : 0);
const $ = id => document.getElementById(id);

function el(tag, attrs, parent, text) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) if (attrs[k] !== null && attrs[k] !== undefined) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
function esc(s) { return String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c])); }
function f(x) { return x.toFixed(1); }

function route(s, d, kind, lane) {  // the same rule as graphrnn.frontend.layout.route
  const [sx, sy, sw, sh] = s, [dx, dy, dw, dh] = d, off = (lane % 5 - 2) * 3;
  if (kind === "same") {
    if (dy > sy && Math.abs(dy - sy - B.rowH) < 1 && Math.abs(sx - dx) < 1) {
      const p0 = [sx + sw / 2, sy + sh], p3 = [dx + dw / 2, dy];
      return [p0, p0, p3, p3];
    }
    const bow = Math.min(10 + 7 * Math.abs(dy - sy) / B.rowH, B.gapX / 2 - 6);
    const side = dy > sy ? -1 : 1, x0 = side < 0 ? sx : sx + sw;
    const p0 = [x0, sy + sh / 2 + off], p3 = [x0, dy + dh / 2 + off];
    return [p0, [x0 + side * bow, p0[1]], [x0 + side * bow, p3[1]], p3];
  }
  if (kind === "anticausal") {
    const p0 = [sx, sy + sh / 2 + 6], p3 = [dx + dw, dy + dh / 2 + 6];
    const drop = 22 + 0.3 * Math.sqrt(Math.abs(sx - dx - dw)) * 4;
    return [p0, [p0[0] - 30, p0[1] + drop], [p3[0] + 30, p3[1] + drop], p3];
  }
  const p0 = [sx + sw, sy + sh / 2 + off], p3 = [dx, dy + dh / 2 + off], span = p3[0] - p0[0];
  if (span > B.gapX + 1) {
    const top = Math.min(p0[1], p3[1]) - sh / 2 - (18 + 6 * span / (B.gapX + sw));
    return [p0, [p0[0] + B.gapX * 0.6, top], [p3[0] - B.gapX * 0.6, top], p3];
  }
  if (Math.abs(sy - dy) < 1) return [p0, [p0[0] + span / 3, p0[1] - 14], [p3[0] - span / 3, p3[1] - 14], p3];
  return [p0, [p0[0] + span / 2, p0[1]], [p3[0] - span / 2, p3[1]], p3];
}
function arrow(c2, p3) {
  let dx = p3[0] - c2[0], dy = p3[1] - c2[1]; const n = Math.hypot(dx, dy) || 1; dx /= n; dy /= n;
  const bx = p3[0] - dx * 7, by = p3[1] - dy * 7;
  return [p3, [bx - dy * 3.2, by + dx * 3.2], [bx + dy * 3.2, by - dx * 3.2]].map(p => f(p[0]) + "," + f(p[1])).join(" ");
}
function curve(g, pts, colour, dash, width, attrs) {
  const [p0, c1, c2, p3] = pts;
  const d = `M${f(p0[0])},${f(p0[1])} C${f(c1[0])},${f(c1[1])} ${f(c2[0])},${f(c2[1])} ${f(p3[0])},${f(p3[1])}`;
  const grp = el("g", Object.assign({"class": "edge"}, attrs), g);
  el("path", {d: d, fill: "none", stroke: colour, "stroke-width": width, "stroke-dasharray": dash}, grp);
  el("polygon", {points: arrow(c2[0] === p3[0] && c2[1] === p3[1] ? p0 : c2, p3), fill: colour}, grp);
  return grp;
}
function vertexBox(g, box, id, line2, op, attrs) {
  const grp = el("g", Object.assign({"class": "vertex", "data-vertex": id}, attrs), g);
  const later = /@\+\d+$/.test(id);
  const style = later ? ["#f5e8ff", "#c026d3", "4 3"] : op === "init" ? ["#f3f4f6", "#9ca3af", "4 3"]
    : op === "input" ? ["#dbeafe", "#3b82f6", null] : ["#fef3c7", "#d97706", null];
  el("rect", {x: f(box[0]), y: f(box[1]), width: f(box[2]), height: f(box[3]), rx: 5,
    fill: style[0], stroke: style[1], "stroke-width": 1.2, "stroke-dasharray": style[2]}, grp);
  el("text", {x: f(box[0] + box[2] / 2), y: f(box[1] + 15), "font-size": 11, "font-weight": "bold",
    "text-anchor": "middle", fill: "#1f2937"}, grp, id);
  el("text", {x: f(box[0] + box[2] / 2), y: f(box[1] + 29), "font-size": 10, "text-anchor": "middle",
    fill: "#4b5563"}, grp, line2);
  return grp;
}
function vtext(i) {
  const v = D.V[i], n = D.nodes[D.rows[v[1]]];
  return v[3] === "init" ? `init [${n.size}]` : n.text;
}

function columns() {
  const end = Math.min(S.start + S.width, D.steps), cols = [];
  if (S.start === 0) cols.push(...pre);
  for (let t = S.start; t < end; t++) cols.push(t);
  if (end === D.steps) cols.push(...post);
  return cols;
}

function drawUnrolled() {
  const svg = $("unrolled"); svg.textContent = "";
  const cols = columns(), colX = {};
  cols.forEach((t, i) => { colX[t] = B.left + i * (B.w + B.gapX); });
  const W = B.left + cols.length * (B.w + B.gapX), H = TOP + D.rows.length * B.rowH + 10;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("width", W * S.zoom); svg.setAttribute("height", H * S.zoom);
  cols.forEach(t => el("text", {x: colX[t] + B.w / 2, y: B.top - 16, "font-size": 11, "font-weight": "bold",
    "text-anchor": "middle", fill: "#374151"}, svg, `t = ${t}` + (t < 0 ? " (init)" : t >= D.steps ? " (end)" : "")));
  D.rows.forEach((r, i) => el("text", {x: B.left - 10, y: TOP + i * B.rowH + B.h / 2 + 4, "font-size": 11,
    "text-anchor": "end", fill: "#6b7280"}, svg, r));
  const box = i => [colX[D.V[i][2]], TOP + D.V[i][1] * B.rowH, B.w, B.h];
  const shown = i => colX[D.V[i][2]] !== undefined;
  const ge = el("g", {}, svg), gl = el("g", {}, svg), gv = el("g", {}, svg), lanes = {};
  const labels = cols.length <= 12;
  D.E.forEach((e, k) => {
    if (!shown(e[0]) || !shown(e[1])) return;
    const fe = D.folded[e[2]], kind = K[e[3]];
    const lane = lanes[e[1]] = (lanes[e[1]] === undefined ? 0 : lanes[e[1]] + 1);
    const pts = route(box(e[0]), box(e[1]), kind, kind === "same" ? 0 : lane);
    const g = curve(ge, pts, fe.colour, DASH[kind], fe.param ? 1.6 : 1.1,
      {"data-edge": k, "data-param": fe.param || ""});
    g.addEventListener("mouseenter", () => { if (fe.param) show({param: fe.param}); });
    g.addEventListener("mouseleave", () => show(S.pinned));
    g.addEventListener("click", ev => { ev.stopPropagation(); if (fe.param) pin({param: fe.param}); });
    if (labels && fe.label) {
      const s = 0.5, x = 0.125 * pts[0][0] + 0.375 * pts[1][0] + 0.375 * pts[2][0] + 0.125 * pts[3][0];
      const y = 0.125 * pts[0][1] + 0.375 * pts[1][1] + 0.375 * pts[2][1] + 0.125 * pts[3][1];
      const straight = pts[0] === pts[1];
      el("text", {x: f(x + (straight ? 4 : 0)), y: f(y + (straight ? 3 : -3)), "font-size": 9, fill: fe.colour,
        "text-anchor": straight ? "start" : "middle", stroke: "#fff", "stroke-width": 3, "paint-order": "stroke",
        "class": "elabel", "data-param": fe.param || ""}, gl, fe.label);
      void s;
    }
  });
  D.V.forEach((v, i) => {
    if (!shown(i)) return;
    const g = vertexBox(gv, box(i), v[0], vtext(i), v[3], {});
    g.addEventListener("mouseenter", () => show({vertex: i}));
    g.addEventListener("mouseleave", () => show(S.pinned));
    g.addEventListener("click", ev => { ev.stopPropagation(); pin({vertex: i}); });
  });
  svg.onclick = () => pin(null);
  show(S.pinned);
}

function drawFolded() {
  const svg = $("folded"), x = 40, w = B.w, rowH = B.rowH, top = TOP;
  const rowOf = {}; D.rows.forEach((r, i) => { rowOf[r] = i; });
  const W = x + w + 150, H = top + D.rows.length * rowH + 10;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("width", W); svg.setAttribute("height", H);
  el("text", {x: x + w / 2, y: B.top - 16, "font-size": 11, "font-weight": "bold", "text-anchor": "middle",
    fill: "#374151"}, svg, "every step");
  const ge = el("g", {}, svg), gv = el("g", {}, svg), loops = {};
  D.folded.forEach((fe, k) => {
    const a = rowOf[fe.src], b = rowOf[fe.dst], ya = top + a * rowH, yb = top + b * rowH;
    let pts;
    if (fe.delay === 0) pts = route([x, ya, w, B.h], [x, yb, w, B.h], "same", 0);
    else {
      const n = loops[fe.dst] = (loops[fe.dst] || 0) + 1, xr = x + w;
      if (a === b) pts = [[xr, ya + 10], [xr + 28 + 10 * n, ya - 8], [xr + 28 + 10 * n, ya + B.h + 8], [xr, ya + B.h - 10]];
      else {
        const bow = 22 + 12 * Math.abs(b - a) + 6 * n;
        pts = [[xr, ya + B.h / 2 - 4], [xr + bow, ya + B.h / 2], [xr + bow, yb + B.h / 2], [xr, yb + B.h / 2 + 4]];
      }
    }
    const kind = fe.delay < 0 ? "anticausal" : fe.weight === "state" ? "state" : fe.delay ? "recurrent" : "same";
    const g = curve(ge, pts, fe.colour, DASH[kind], fe.param ? 1.6 : 1.1, {"data-param": fe.param || "", "data-folded": k});
    const label = (fe.label || "") + (fe.delay && !(fe.label || "").endsWith(`@${fe.delay}`) ? ` @${fe.delay}` : "");
    if (label) {
      const lx = fe.delay === 0 ? (pts[0] === pts[1] ? pts[0][0] + 4 : pts[1][0] - 2) : Math.max(pts[1][0], pts[2][0]) - 4;
      const ly = (pts[0][1] + pts[3][1]) / 2 + 3;
      el("text", {x: f(lx), y: f(ly), "font-size": 9, fill: fe.colour, "text-anchor": fe.delay === 0 && pts[0] !== pts[1] ? "end" : "start",
        stroke: "#fff", "stroke-width": 3, "paint-order": "stroke", "class": "elabel", "data-param": fe.param || ""}, ge, label);
    }
    g.addEventListener("click", ev => { ev.stopPropagation(); if (fe.param) pin({param: fe.param}); });
  });
  D.rows.forEach((r, i) => {
    const n = D.nodes[r];
    const g = vertexBox(gv, [x, top + i * rowH, w, B.h], r, n.text, n.kind === "input" ? "input" : n.op, {"data-node": r});
    g.addEventListener("click", ev => {
      ev.stopPropagation();
      const t = Math.max(S.start, 0), j = index[`${r}@${t}`];
      if (j !== undefined) pin({vertex: j});
    });
  });
}

function drawSchedule() {
  const box = $("schedule");
  if (!D.schedule) { box.textContent = D.schedule_note; return; }
  box.innerHTML = D.schedule.map((st, i) => {
    const head = st.kind === "loop" ? `stage ${i}: for t in 0..T-1 <span class="tag loop">loop, step by step</span>`
      : `stage ${i}: once over all T steps <span class="tag batched">batched</span>`;
    const ops = st.ops.map(op => {
      const data = `data-nodes="${esc(op.nodes.join(" "))}" data-params="${esc(op.params.join(" "))}"`;
      if (!op.fused) return `<div class="op" ${data}>#${op.uid} ${esc(op.label)}</div>`;
      return `<div class="fusedbox"><div class="op" ${data}>#${op.uid} fused kernel <span class="tag fused">` +
        `${op.members.length} ops, one kernel</span></div>` +
        op.members.map(m => `<div class="op">  #${m.uid} ${esc(m.label)}</div>`).join("") + "</div>";
    }).join("");
    return `<div class="stage"><div class="stage-head">${head}</div>${ops}</div>`;
  }).join("");
}

function selection(sel) {  // the node, the parameters and the vertices a selection lights up
  if (!sel) return null;
  if (sel.param) return {node: null, params: new Set([sel.param]), vertex: null};
  const i = sel.vertex, params = new Set();
  inEdges[i].forEach(k => { const p = D.folded[D.E[k][2]].param; if (p) params.add(p); });
  return {node: D.rows[D.V[i][1]], params: params, vertex: i};
}

function show(sel) {
  const s = selection(sel), svgU = $("unrolled"), svgF = $("folded");
  [svgU, svgF].forEach(svg => svg.classList.toggle("dim", !!s));
  document.querySelectorAll(".hl,.sel,.src,.twin").forEach(e => e.classList.remove("hl", "sel", "src", "twin"));
  if (!s) { $("info").innerHTML = "Hover or click a vertex or an edge."; return; }
  document.querySelectorAll("[data-param]").forEach(e => {
    if (s.params.has(e.getAttribute("data-param"))) e.classList.add("hl");
  });
  if (s.vertex !== null) {
    const id = D.V[s.vertex][0];
    const srcs = new Set(inEdges[s.vertex].map(k => D.V[D.E[k][0]][0]));
    svgU.querySelectorAll(".vertex").forEach(g => {
      const v = g.getAttribute("data-vertex");
      if (v === id) g.classList.add("sel");
      else if (srcs.has(v)) g.classList.add("src");
    });
    inEdges[s.vertex].forEach(k => {
      const e = svgU.querySelector(`[data-edge="${k}"]`); if (e) e.classList.add("hl");
    });
    svgF.querySelectorAll(`[data-node="${s.node}"]`).forEach(g => g.classList.add("sel"));
  }
  if (s.params.size) {  // every vertex that reads one of these parameters, at every step
    svgU.querySelectorAll(".vertex").forEach(g => {
      const i = index[g.getAttribute("data-vertex")];
      if (i !== s.vertex && inEdges[i].some(k => s.params.has(D.folded[D.E[k][2]].param))) g.classList.add("twin");
    });
  }
  document.querySelectorAll("#schedule .op[data-nodes]").forEach(op => {
    const nodes = op.getAttribute("data-nodes").split(" "), ps = op.getAttribute("data-params").split(" ");
    if ((s.node && nodes.includes(s.node)) || ps.some(p => s.params.has(p))) op.classList.add("hl");
  });
  $("info").innerHTML = s.vertex !== null ? vertexInfo(s.vertex) : paramInfo(sel.param);
}

function paramRow(p) {
  const q = D.params[p] || {shape: [], edges: [], colour: "#888", trainable: true};
  const shown = document.querySelectorAll(`#unrolled .edge.hl[data-param="${CSS.escape(p)}"]`).length;
  const tied = q.edges.length > 1 ? ` <b>tied</b> across ${q.edges.length} edges (${esc(q.edges.join(", "))});` : "";
  return `<span class="swatch" style="background:${q.colour}"></span><b>${esc(p)}</b> [${q.shape.join("×")}]` +
    `${q.trainable ? "" : " frozen"}:${tied} one weight, used <b>${uses[p] || 0}</b> times over ` +
    `${D.steps} steps (<span class="uses-shown">${shown}</span> shown)`;
}
function vertexInfo(i) {
  const v = D.V[i], name = D.rows[v[1]], n = D.nodes[name];
  const what = v[3] === "init" ? "initial state" : n.kind === "input" ? "input" : n.op;
  const rows = inEdges[i].map(k => {
    const fe = D.folded[D.E[k][2]], src = D.V[D.E[k][0]][0];
    const how = fe.param ? paramRow(fe.param) : (fe.weight === "state" ? "own previous value" : "identity" + (fe.label ? " " + esc(fe.label) : ""));
    return `<tr><td class="mono">${esc(src)}${fe.delay ? ` (delay ${fe.delay})` : ""}</td><td>${how}</td></tr>`;
  }).join("");
  const extra = [n.combine && n.combine !== "sum" ? `combine ${n.combine}` : "", n.leak !== null && n.leak !== undefined ? `leak ${n.leak}` : "",
    n.bias ? `bias ${esc(n.bias)}` : "", n.update === "asynchronous" ? "asynchronous" : ""].filter(x => x).join(", ");
  return `<div id="info-vertex" class="mono"><b>${esc(v[0])}</b></div>` +
    `<div>node <b>${esc(name)}</b>, step <b id="info-step">${v[2]}</b>, size <b id="info-size">${n.size}</b>, ` +
    `activation <b id="info-activation">${esc(what)}</b>${extra ? "; " + extra : ""}</div>` +
    (rows ? `<table><tr><td><i>reads</i></td><td><i>through parameter</i></td></tr>${rows}</table>` : "<div>reads nothing</div>");
}
function paramInfo(p) { return `<div>${paramRow(p)}</div>`; }

function pin(sel) { S.pinned = sel; show(sel); }

function controls() {
  const start = $("start"), win = $("window");
  const sizes = [3, 5, 8, 12, 20, 40].filter(n => n < D.steps).concat([D.steps]).filter(n => n <= 60);
  if (!sizes.includes(S.width)) sizes.push(S.width);
  sizes.sort((a, b) => a - b).forEach(n => { const o = document.createElement("option"); o.value = n; o.textContent = n === D.steps ? `all ${n}` : n; win.appendChild(o); });
  win.value = S.width;
  const sync = () => { start.max = Math.max(D.steps - S.width, 0); start.value = S.start; $("start-label").textContent = `t = ${S.start}..${Math.min(S.start + S.width, D.steps) - 1}`; };
  start.addEventListener("input", () => { S.start = +start.value; sync(); drawUnrolled(); });
  win.addEventListener("change", () => { S.width = +win.value; S.start = Math.min(S.start, Math.max(D.steps - S.width, 0)); sync(); drawUnrolled(); });
  $("zoom-in").addEventListener("click", () => { S.zoom = Math.min(S.zoom * 1.25, 4); drawUnrolled(); });
  $("zoom-out").addEventListener("click", () => { S.zoom = Math.max(S.zoom / 1.25, 0.2); drawUnrolled(); });
  sync();
  return sync;
}

function selfTest(sync) {  // #test-click=VERTEX: click it, then report what the page shows
  const m = /test-click=([^&]+)/.exec(decodeURIComponent(location.hash));
  if (!m) return;
  const id = m[1], i = index[id], result = {clicked: id, found: false};
  if (i !== undefined) {
    const t = D.V[i][2];
    if (t >= 0 && t < D.steps && (t < S.start || t >= S.start + S.width)) { S.start = Math.max(0, Math.min(t, D.steps - S.width)); sync(); drawUnrolled(); }
    const g = document.querySelector(`#unrolled [data-vertex="${CSS.escape(id)}"]`);
    if (g) {
      result.found = true;
      g.dispatchEvent(new MouseEvent("click", {bubbles: true}));
      g.scrollIntoView({block: "center", inline: "center"});
      result.selected = Array.from(document.querySelectorAll("#unrolled .vertex.sel")).map(e => e.getAttribute("data-vertex"));
      result.info = $("info").innerText;
      result.step = $("info-step") && $("info-step").textContent;
      result.size = $("info-size") && $("info-size").textContent;
      result.activation = $("info-activation") && $("info-activation").textContent;
      result.highlighted_params = Array.from(new Set(Array.from(document.querySelectorAll("#unrolled .edge.hl")).map(e => e.getAttribute("data-param")).filter(p => p)));
      result.highlighted_edges = Array.from(document.querySelectorAll("#unrolled .edge.hl")).map(e => +e.getAttribute("data-edge"));
      result.twins = Array.from(document.querySelectorAll("#unrolled .vertex.twin")).map(e => e.getAttribute("data-vertex"));
      result.folded_selected = Array.from(document.querySelectorAll("#folded .vertex.sel")).map(e => e.getAttribute("data-node"));
      result.schedule_highlighted = Array.from(document.querySelectorAll("#schedule .op.hl")).map(e => e.textContent);
    }
  }
  result.vertices_drawn = document.querySelectorAll("#unrolled .vertex").length;
  result.columns = columns();
  $("test-result").textContent = JSON.stringify(result);
}

$("steps").textContent = D.steps;
$("summary").textContent = `${D.V.length} vertices, ${D.E.length} edges, ${Object.keys(D.params).length} parameters`;
const sync = controls();
drawSchedule(); drawFolded(); drawUnrolled();
selfTest(sync);
})();
"""
