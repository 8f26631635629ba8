// Each descriptor's sweep: four charts side by side (silhouette, Davies-Bouldin, stability,
// score against k), one line per family, the selected run circled (data: html.metric_curves).
(function () {
  const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f"];
  const axis = (name, c) => `${name}${c ? c + 1 : ""}`;
  for (const holder of document.querySelectorAll(".metrics")) {
    const data = JSON.parse(holder.querySelector("script").textContent);
    const traces = [];
    data.families.forEach((family, f) => {
      const colour = COLOURS[f % COLOURS.length], label = window.vehiclustPlotlyText(family.label);
      data.columns.forEach((column, c) => traces.push({
        type: "scatter", mode: "lines+markers", x: family.k, y: family[column],
        text: family.params.map(window.vehiclustPlotlyText), meta: label,
        name: label, legendgroup: label, showlegend: c === 0, xaxis: axis("x", c), yaxis: axis("y", c),
        line: { width: 1, color: colour }, marker: { size: 4, color: colour },
        // the label rides in meta: a "%{" in it is not read as a placeholder
        hovertemplate: `%{meta}, %{text}<br>${column}: %{y:.3f}<extra></extra>`,
      }));
    });
    data.columns.forEach((column, c) => traces.push({
      type: "scatter", mode: "markers", x: [data.chosen.k], y: [data.chosen[column]], showlegend: false,
      xaxis: axis("x", c), yaxis: axis("y", c), hoverinfo: "skip",
      marker: { size: 13, color: "rgba(0,0,0,0)", line: { width: 2, color: "#d62728" } },
    }));
    const layout = {
      grid: { rows: 1, columns: data.columns.length, pattern: "independent" }, height: 320,
      margin: { l: 40, r: 10, t: 28, b: 40 }, font: { size: 10 }, legend: { orientation: "h", y: -0.28 },
      annotations: data.columns.map((column, c) => ({
        text: column.replace("_", " "), showarrow: false, xref: `${axis("x", c)} domain`, yref: `${axis("y", c)} domain`,
        x: 0.5, y: 1.12, font: { size: 11 } })),
    };
    data.columns.forEach((_, c) => { layout[`${axis("xaxis", c)}`] = { title: { text: "clusters" } }; });
    Plotly.newPlot(holder.querySelector(".metrics-chart"), traces, layout, { displaylogo: false, responsive: true });
  }
})();
