/* netdsl report: what the page does (inlined into the HTML by netdsl/viz/report.py).
   Hand-written, no library, nothing fetched: the page must work from disk with no network.
   - the graph: each view (as written / as it runs) is an inline SVG whose <g class="viewport">
     carries translate(tx, ty) scale(s); the wheel zooms about the cursor, dragging pans, the
     buttons zoom about the centre and fit the width;
   - selection: a click on a box (not a drag), a table row, a layer name (a.sel) in the panel, a buffer of the
     memory chart or the find box shows that layer's <article> in the side panel, marks its box
     (or the collapsed block holding it: data-box-VIEW) and its row, and puts it in the URL hash;
   - the summary table sorts by a clicked column (numbers from data-v: biggest first; text A-Z;
     a second click reverses), ties in the original order. */
(function () {
  "use strict";
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const graph = $("#graph"), panel = $("#panel");
  const data = JSON.parse($("#nd-data").textContent);
  const views = {};
  let view = null, selected = null;

  function View(el) {
    this.el = el;
    this.svg = $("svg", el);
    this.vp = this.svg ? $("g.viewport", this.svg) : null;
    this.w = this.svg ? +this.svg.dataset.width : 0;
    this.h = this.svg ? +this.svg.dataset.height : 0;
    this.s = 1; this.tx = 0; this.ty = 0; this.fitted = false;
  }
  View.prototype.apply = function () {
    if (this.vp) this.vp.setAttribute("transform", `translate(${this.tx.toFixed(1)},${this.ty.toFixed(1)}) scale(${this.s.toFixed(4)})`);
  };
  View.prototype.fit = function () {
    const r = graph.getBoundingClientRect();
    if (!this.vp || r.width < 10) return;
    let s = Math.min(1, (r.width - 16) / this.w);
    const sh = (r.height - 16) / this.h;
    if (this.h * s > r.height && sh >= 0.45 * s) s = sh;      // a little smaller shows it whole
    this.s = s; this.tx = (r.width - this.w * s) / 2; this.ty = 8; this.fitted = true;
    this.apply();
  };
  View.prototype.zoom = function (f, cx, cy) {
    const s = Math.min(6, Math.max(0.03, this.s * f));
    this.tx = cx - (cx - this.tx) * (s / this.s);
    this.ty = cy - (cy - this.ty) * (s / this.s);
    this.s = s; this.apply();
  };
  View.prototype.centre = function (node) {        // pan so that `node` is in the middle
    const r = graph.getBoundingClientRect(), b = node.getBoundingClientRect();
    this.tx += r.left + r.width / 2 - (b.left + b.width / 2);
    this.ty += r.top + r.height / 2 - (b.top + b.height / 2);
    this.apply();
  };

  $$(".view", graph).forEach((el) => { views[el.dataset.view] = new View(el); });
  view = views[Object.keys(views)[0]];

  function show(key) {
    view = views[key];
    $$(".view", graph).forEach((el) => { el.hidden = el.dataset.view !== key; });
    $$("button[data-view]").forEach((b) => b.classList.toggle("on", b.dataset.view === key));
    if (!view.fitted) view.fit();
    markPictures();
    if (selected) select(selected, { keepHash: true });
  }

  function markPictures() {
    if (!view.svg) return;
    data.pictures.forEach((name) => {
      const g = boxOf(name);
      if (g) g.classList.add("has-pictures");
    });
  }

  function articleOf(name) {
    return $$("article.layer", panel).find((a) => a.dataset.name === name) || null;
  }

  function boxOf(name) {
    if (!view.svg) return null;
    const art = articleOf(name);
    const key = "box" + view.el.dataset.view.charAt(0).toUpperCase() + view.el.dataset.view.slice(1);
    const box = (art && art.dataset[key]) || name;
    return $$("g.node", view.svg).find((g) => g.dataset.name === box) || null;
  }

  function select(name, opts) {
    opts = opts || {};
    selected = name;
    const art = articleOf(name);
    $$("article.layer, .placeholder, .unknown", panel).forEach((a) => { a.hidden = true; });
    if (art) {
      art.hidden = false;
      if (art.classList.contains("block")) fillBlockPictures(art);
    } else {
      const u = $(".unknown", panel);
      $("h3", u).textContent = name;
      u.hidden = false;
    }
    panel.scrollTop = 0;
    $$("g.node.selected").forEach((g) => g.classList.remove("selected"));
    const g = boxOf(name);
    if (g) {
      g.classList.add("selected");
      if (opts.centre) view.centre(g);
    }
    $$("table.summary tr.selected").forEach((r) => r.classList.remove("selected"));
    const row = $$("table.summary tbody tr").find((r) => r.dataset.name === name);
    if (row) row.classList.add("selected");
    $$("svg.timeline rect.buf").forEach((r) => r.classList.toggle("selected", r.dataset.node === name));
    if (!opts.keepHash) history.replaceState(null, "", "#layer=" + encodeURIComponent(name));
  }

  function fillBlockPictures(art) {      // a collapsed block shows its members' pictures (copies, same data)
    const box = $(".member-pictures", art);
    if (box.childElementCount || !art.dataset.pictures) return;
    art.dataset.pictures.split(" ").forEach((name) => {
      const src = articleOf(name);
      if (!src) return;
      const h = document.createElement("h4");
      h.textContent = name;
      box.appendChild(h);
      $$("figure", src).forEach((f) => box.appendChild(f.cloneNode(true)));
    });
  }

  // zoom and pan
  const local = (e) => { const r = graph.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  graph.addEventListener("wheel", (e) => {
    e.preventDefault();
    const [x, y] = local(e);
    view.zoom(Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015)), x, y);
  }, { passive: false });
  let drag = null;
  graph.addEventListener("mousedown", (e) => {
    if (e.button !== 0) return;
    drag = { x: e.clientX, y: e.clientY, tx: view.tx, ty: view.ty, moved: false };
  });
  window.addEventListener("mousemove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
    drag.moved = true;
    graph.classList.add("dragging");
    view.tx = drag.tx + dx; view.ty = drag.ty + dy; view.apply();
  });
  window.addEventListener("mouseup", (e) => {
    if (!drag) return;
    const moved = drag.moved;
    drag = null;
    graph.classList.remove("dragging");
    if (moved) return;
    const g = e.target.closest && e.target.closest("g.node");
    if (g && graph.contains(g)) select(g.dataset.name);
  });
  $$("button[data-zoom]").forEach((b) => b.addEventListener("click", () => {
    const r = graph.getBoundingClientRect();
    if (b.dataset.zoom === "fit") view.fit();
    else view.zoom(b.dataset.zoom === "in" ? 1.25 : 0.8, r.width / 2, r.height / 2);
  }));
  $$("button[data-view]").forEach((b) => b.addEventListener("click", () => show(b.dataset.view)));

  // links, rows, buffers, the find box
  document.addEventListener("click", (e) => {
    const a = e.target.closest && e.target.closest("a.sel");
    if (a) { e.preventDefault(); select(a.textContent, { centre: true }); }
  });
  $$("table.summary tbody tr").forEach((r) => r.addEventListener("click", () => {
    select(r.dataset.name, { centre: true });
    graph.scrollIntoView({ block: "nearest" });
  }));
  $$("svg.timeline rect.buf").forEach((r) => r.addEventListener("click", () => {
    if (r.dataset.node) select(r.dataset.node, { centre: true });
  }));
  const find = $("#find");
  find.addEventListener("change", () => {
    if (articleOf(find.value)) select(find.value, { centre: true });
  });

  // the sortable table
  $$("table.summary thead th").forEach((th) => th.addEventListener("click", () => {
    const table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    const num = th.dataset.type === "num";
    const first = num ? "descending" : "ascending";
    const dir = th.getAttribute("aria-sort") === first ? (num ? "ascending" : "descending") : first;
    $$("th", table.tHead).forEach((h) => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", dir);
    const key = (r) => num ? parseFloat(r.cells[col].dataset.v) : r.cells[col].dataset.v.toLowerCase();
    const rows = Array.from(body.rows).map((r, i) => [key(r), +r.cells[0].dataset.v, r]);
    const sign = dir === "ascending" ? 1 : -1;
    rows.sort((a, b) => (a[0] < b[0] ? -sign : a[0] > b[0] ? sign : a[1] - b[1]));
    rows.forEach((x) => body.appendChild(x[2]));
  }));

  window.addEventListener("resize", () => { if (view && !view.fitted) view.fit(); });
  view.fit();
  markPictures();
  const m = /^#layer=(.+)$/.exec(location.hash);
  if (m && articleOf(decodeURIComponent(m[1]))) select(decodeURIComponent(m[1]), { centre: true, keepHash: true });
})();
