// The interactive map: Plotly WebGL traces, one per category of the chosen colouring.
// The data arrive as base64 typed arrays (see vehiclust/report/mapview.py).
(function () {
  const DATA = JSON.parse(document.getElementById("map-data").textContent);
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#3283FE", "#AA0DFE", "#85660D", "#1C8356", "#FEAF16", "#F6222E", "#1CFFCE", "#B10DA1",
    "#90AD1C", "#FA0087", "#2E91E5", "#E15F99", "#1CA71C", "#DEA0FD", "#565656", "#C4451C"];
  const GREY = "#b0b0b0";
  const TYPES = { uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array };

  function decode(text, Type) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return new Type(bytes.buffer);
  }
  function dequantise(codes, dims, low, high) {
    const out = [];
    for (let d = 0; d < dims; d++) out.push(new Float32Array(codes.length / dims));
    for (let i = 0; i < codes.length; i++) {
      const d = i % dims;
      out[d][(i - d) / dims] = low[d] + (codes[i] / 65535) * (high[d] - low[d]);
    }
    return out;
  }

  // null stands for every point in order (0, 1, ..., n-1)
  const identity = n => { const a = new Uint32Array(n); for (let i = 0; i < n; i++) a[i] = i; return a; };
  const indexOf = (text, n) => (text === null ? identity(n) : decode(text, Uint32Array));
  const rows = indexOf(DATA.rows, DATA.n);
  const tiles = decode(DATA.tile, Uint16Array);  // cell in its sheet + 1; 0: no thumbnail
  const colourings = {};
  for (const [label, c] of Object.entries(DATA.colourings)) {
    colourings[label] = { names: c.names, codes: decode(c.codes, TYPES[c.dtype]) };
  }
  const views = {};
  for (const [name, v] of Object.entries(DATA.views)) {
    views[name] = {
      index: indexOf(v.index, v.n), xy: dequantise(decode(v.xy, Uint16Array), 2, v.low, v.high),
      index3: indexOf(v.index3, v.n3), xyz: dequantise(decode(v.xyz, Uint16Array), 3, v.low3, v.high3),
    };
  }

  const descriptorSelect = document.getElementById("map-descriptor");
  const colourSelect = document.getElementById("map-colour");
  for (const name of Object.keys(views)) descriptorSelect.add(new Option(name, name));
  for (const label of Object.keys(colourings)) colourSelect.add(new Option(label, label));
  const plot = document.getElementById("map");
  let traceIndex = [];  // per trace: positions (into rows) of its points

  function dims() { return document.querySelector("input[name=map-dims]:checked").value === "3" ? 3 : 2; }

  function traces() {
    const view = views[descriptorSelect.value];
    const colouring = colourings[colourSelect.value];
    const three = dims() === 3;
    const index = three ? view.index3 : view.index;
    const coords = three ? view.xyz : view.xy;
    const groups = colouring.names.map(() => []);
    for (let i = 0; i < index.length; i++) groups[colouring.codes[index[i]]].push(i);
    traceIndex = [];
    const out = [];
    colouring.names.forEach((name, code) => {
      const members = groups[code];
      if (!members.length) return;
      const pick = axis => Float32Array.from(members, i => coords[axis][i]);
      const colour = ["none", "ok", "other", "noise / invalid"].includes(name) ? GREY : PALETTE[out.length % PALETTE.length];
      const trace = {
        name: `${plotlyText(name)} (${members.length.toLocaleString()})`, x: pick(0), y: pick(1),
        type: three ? "scatter3d" : "scattergl", mode: "markers", hoverinfo: "none",
        marker: { size: three ? 2 : (index.length > 100000 ? 2 : 4), color: colour, opacity: 0.8 },
      };
      if (three) trace.z = pick(2);
      traceIndex.push(Uint32Array.from(members, i => index[i]));
      out.push(trace);
    });
    return out;
  }

  // Plotly reads legend text as a subset of HTML (<b>, <a href>, <br>): names come from the
  // input's metadata, so they are shown as the characters they are.
  const plotlyText = window.vehiclustPlotlyText;

  function layout() {
    const base = { margin: { l: 10, r: 10, t: 10, b: 10 }, legend: { itemsizing: "constant", font: { size: 11 } },
      hovermode: "closest", uirevision: descriptorSelect.value + dims() };
    if (dims() === 3) base.scene = { xaxis: { visible: false }, yaxis: { visible: false }, zaxis: { visible: false } };
    else { base.xaxis = { visible: false }; base.yaxis = { visible: false, scaleanchor: "x" }; }
    return base;
  }

  function pointAt(event) {
    const p = event.points && event.points[0];
    if (!p) return null;
    return traceIndex[p.curveNumber][p.pointNumber];
  }
  function thumbnailOf(position) {
    const cell = tiles[position] - 1, sheet = DATA.sheet;
    if (cell < 0) return null;
    return { url: `thumbs/map/${Math.floor(rows[position] / sheet.rows)}.jpg`, cell: sheet.cell,
             columns: sheet.columns, column: cell % sheet.columns, line: Math.floor(cell / sheet.columns) };
  }
  function describe(position) {
    const row = rows[position];
    const lines = [["row", row]];
    if (DATA.paths) lines.push(["path", DATA.paths[position]]);
    for (const [label, c] of Object.entries(colourings)) lines.push([label, c.names[c.codes[position]]]);
    return lines;
  }

  const hoverImg = document.getElementById("hover-img");
  const hoverInfo = document.getElementById("hover-info");
  function showHover(position) {
    const tile = thumbnailOf(position);
    window.vehiclustPaintTile(hoverImg, tile, tile ? 2 * tile.cell : 0);  // lazy: one read per sheet
    document.getElementById("hover-note").textContent = tile ? "" : "no thumbnail cached for this point";
    hoverInfo.replaceChildren(...describe(position).map(([k, v]) => {
      const tr = document.createElement("tr");
      for (const text of [k, v]) { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); }
      return tr;
    }));
  }

  function draw() {
    Plotly.react(plot, traces(), layout(), { responsive: true, displaylogo: false });
  }
  draw();
  plot.on("plotly_hover", event => { const position = pointAt(event); if (position !== null) showHover(position); });
  plot.on("plotly_click", event => {
    const position = pointAt(event);
    if (position === null) return;
    const tile = thumbnailOf(position);
    if (tile) window.vehiclustZoom(tile, describe(position).map(([k, v]) => `${k}: ${v}`).join("  ·  "));
  });
  descriptorSelect.addEventListener("change", draw);
  colourSelect.addEventListener("change", draw);
  document.querySelectorAll("input[name=map-dims]").forEach(r => r.addEventListener("change", draw));
  window.vehiclustMap = { rows, views, colourings, showHover, traceIndex: () => traceIndex, plot };
})();
