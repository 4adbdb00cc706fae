// Renders the API's panels (stat, timeseries, histogram, bars, table) into a 12-column grid, grouped by
// section. Each panel element carries what it drew (data-series, data-points, data-rows, data-value), which
// is also what the end-to-end test reads.

import { color, histogram, timeseries } from "./charts.js";
import { h } from "./dom.js";
import { fmt } from "./format.js";

function frame(panel, ...body) {
  return h("article", { class: `panel kind-${panel.kind} w-${panel.w ?? 6}`,
    dataset: { panel: panel.id, kind: panel.kind } },
  h("header", {}, h("h3", {}, panel.title),
    panel.description ? h("span", { class: "info", title: panel.description, tabindex: "0",
      "aria-label": panel.description }, "i") : null),
  ...body);
}

function countPoints(series) {
  return series.reduce((n, values) => n + values.filter((v) => v !== null && v !== undefined && v !== 0).length, 0);
}

function empty(el, text = "No data in this range") {
  el.append(h("div", { class: "empty" }, text));
}

function statPanel(panel) {
  const el = frame(panel, h("div", { class: "stat-value" }, fmt(panel.value, panel.unit)));
  el.dataset.value = panel.value === null ? "" : String(panel.value);
  return el;
}

function chartPanel(panel, draw, after) {
  const plot = h("div", { class: "plot" });
  const el = frame(panel, plot);
  el.dataset.series = "0";
  el.dataset.points = "0";
  if (!panel.series.length || !countPoints(panel.series.map((s) => s.values))) {
    empty(plot);
  } else {
    after.push(() => {
      const chart = draw(plot, panel); // what uPlot holds, once drawn
      el.dataset.series = String(chart.series.length - 1);
      el.dataset.points = String(countPoints(chart.data.slice(1)));
    });
  }
  return el;
}

function barsPanel(panel) {
  const max = Math.max(0, ...panel.items.map((item) => item.value ?? 0));
  const list = h("ol", { class: "bars" });
  panel.items.forEach((item) => {
    const fill = h("span", { class: "fill" });
    fill.style.width = `${max ? ((item.value ?? 0) / max) * 100 : 0}%`;
    fill.style.background = color(item.label);
    list.append(h("li", {}, h("span", { class: "label", title: item.label }, item.label),
      h("span", { class: "track" }, fill), h("span", { class: "value" }, fmt(item.value, panel.unit))));
  });
  const el = frame(panel, panel.items.length ? list : null);
  if (!panel.items.length) empty(el);
  el.dataset.rows = String(panel.items.length);
  return el;
}

function auditLink(row, columns, value) {
  const get = (key) => row[columns.findIndex((c) => c.key === key)];
  const start = get("ts_start");
  const params = new URLSearchParams({ event_id: value, open: "1" });
  if (get("tenant")) params.set("tenant", get("tenant"));
  if (start) {
    params.set("since", start);
    params.set("until", new Date(new Date(start).getTime() + 1).toISOString());
  }
  return h("a", { href: `#audit?${params}`, class: "mono", title: "Open the audit entry" }, `${value.slice(0, 15)}…`);
}

function cellContent(column, value, row, columns) {
  if (column.link === "audit" && value) return auditLink(row, columns, value);
  if (column.badge && value) return h("span", { class: `badge badge-${value}` }, value);
  return fmt(value, column.unit);
}

function compare(a, b) {
  if (a === null || a === undefined) return 1;
  if (b === null || b === undefined) return -1;
  return typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b));
}

function tablePanel(panel) {
  const shown = panel.columns.map((c, i) => [c, i]).filter(([c]) => !c.hidden);
  const rows = [...panel.rows];
  const tbody = h("tbody");
  const fill = () => {
    tbody.replaceChildren(...rows.map((row) => h("tr", {}, shown.map(([c, i]) =>
      h("td", { class: c.unit && c.unit !== "time" ? "num" : "" }, cellContent(c, row[i], row, panel.columns))))));
  };
  let sorted = { index: -1, dir: 1 };
  const head = h("tr", {}, shown.map(([c, i]) => h("th", {
    class: c.unit && c.unit !== "time" ? "num" : "", scope: "col", title: "Sort",
    onclick: (event) => {
      sorted = { index: i, dir: sorted.index === i ? -sorted.dir : (c.unit && c.unit !== "time" ? -1 : 1) };
      rows.sort((a, b) => sorted.dir * compare(a[i], b[i]));
      head.querySelectorAll("th").forEach((th) => th.removeAttribute("aria-sort"));
      event.currentTarget.setAttribute("aria-sort", sorted.dir > 0 ? "ascending" : "descending");
      fill();
    },
  }, c.label)));
  fill();
  const el = frame(panel, rows.length ? h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, head), tbody))
    : null);
  if (!rows.length) empty(el);
  el.dataset.rows = String(rows.length);
  return el;
}

const RENDER = {
  stat: (panel) => statPanel(panel),
  timeseries: (panel, after) => chartPanel(panel, timeseries, after),
  histogram: (panel, after) => chartPanel(panel, histogram, after),
  bars: (panel) => barsPanel(panel),
  table: (panel) => tablePanel(panel),
};

/** Build the view's DOM into ``container``; charts are drawn once it is in the document (they need a width). */
export function renderPanels(container, panels) {
  const after = [];
  let grid = null;
  let current;
  for (const panel of panels) {
    const sectionTitle = panel.section ?? "";
    if (!grid || sectionTitle !== current) {
      current = sectionTitle;
      grid = h("div", { class: "grid" });
      container.append(sectionTitle ? h("section", { class: "group" }, h("h2", {}, sectionTitle), grid) : grid);
    }
    const render = RENDER[panel.kind];
    grid.append(render ? render(panel, after) : frame(panel, h("div", { class: "empty" }, `unknown kind ${panel.kind}`)));
  }
  return () => after.forEach((draw) => draw());
}
