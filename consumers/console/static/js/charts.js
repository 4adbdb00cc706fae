// uPlot charts for the panels: time series (lines, stacked bars, points) and categorical histograms.
// Every chart is registered so a re-render can destroy it and one ResizeObserver keeps widths in step.

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { fmt, tick, time } from "./format.js";

// no reds here: red means failure (see SEMANTIC)
export const PALETTE = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#b877d9", "#6ed0e0", "#8ab8ff", "#fade2a",
  "#37872d", "#e0752d", "#a352cc"];
const HEIGHT = 220;
const charts = new Map(); // container -> uPlot
const resizer = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const chart = charts.get(entry.target);
    const width = Math.floor(entry.contentRect.width);
    if (chart && width > 0 && width !== chart.width) chart.setSize({ width, height: HEIGHT });
  }
});

// series whose name means something keep one colour everywhere (outcomes, decisions, severities)
const SEMANTIC = { completed: "#73bf69", allow: "#73bf69", resolved: "#73bf69", failed: "#f2495c", deny: "#f2495c",
  critical: "#f2495c", contradicted: "#f2495c", denied: "#ff9830", flag: "#ff9830", warning: "#f2cc0c",
  unsupported: "#ff9830" };

const assigned = new Map(); // other names get the next palette colour the first time they appear on the page

export function color(name) {
  if (SEMANTIC[name]) return SEMANTIC[name];
  if (!assigned.has(name)) assigned.set(name, PALETTE[assigned.size % PALETTE.length]);
  return assigned.get(name);
}

function themeColors() {
  const css = getComputedStyle(document.documentElement);
  return { axis: css.getPropertyValue("--muted").trim() || "#999", grid: css.getPropertyValue("--grid").trim() || "#333" };
}

function axes(unit, xValues, xSplits) {
  const { axis, grid } = themeColors();
  const x = { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
  if (xValues) Object.assign(x, { values: xValues, splits: xSplits });
  const y = { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, size: 60,
    values: (u, splits) => splits.map((v) => tick(v, unit)) };
  return [x, y];
}

function fromZero(u, min, max) {
  const top = max > 0 ? max : 1;
  return [Math.min(0, min ?? 0), top * 1.08];
}

function mount(el, opts, data) {
  destroy(el);
  const chart = new uPlot({ width: Math.max(el.clientWidth, 200), height: HEIGHT, ...opts }, data, el);
  charts.set(el, chart);
  resizer.observe(el);
  return chart;
}

function destroy(el) {
  const chart = charts.get(el);
  if (chart) {
    resizer.unobserve(el);
    chart.destroy();
    charts.delete(el);
  }
}

export function destroyAll(root = document) {
  for (const el of [...charts.keys()]) if (root.contains(el) || !el.isConnected) destroy(el);
}

/** Stacked bars: each series drawn as the running total, the largest first, so each shows its own share. */
function stack(values) {
  const sums = [];
  let running = values[0].map(() => 0);
  for (const series of values) {
    running = running.map((total, i) => total + (series[i] ?? 0));
    sums.push(running);
  }
  return sums;
}

export function timeseries(el, panel) {
  const { unit, style } = panel;
  const raw = panel.series.map((s) => s.values);
  const stacked = style === "stacked";
  const drawn = stacked ? stack(raw) : raw;
  const order = raw.map((_, i) => i);
  if (stacked) order.reverse();
  const bars = stacked ? uPlot.paths.bars({ size: [0.8, 48], gap: 1 }) : undefined;
  const series = order.map((i) => ({
    label: panel.series[i].name,
    stroke: color(panel.series[i].name),
    fill: stacked ? color(panel.series[i].name) : undefined,
    width: stacked ? 0 : 1.5,
    paths: bars,
    spanGaps: style === "points",
    points: style === "points" ? { show: true, size: 6, fill: color(panel.series[i].name) } : { show: false },
    value: (u, v, si, idx) => (idx === null || idx === undefined ? "" : fmt(raw[i][idx], unit)),
  }));
  return mount(el, {
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    scales: { x: { time: true }, y: { range: fromZero } },
    axes: axes(unit),
    cursor: { points: { size: 7 } },
    series: [{ value: (u, ts) => (ts === null || ts === undefined ? "" : `${time(ts)} UTC`) }, ...series],
  }, [panel.time, ...order.map((i) => drawn[i])]);
}

export function histogram(el, panel) {
  const { labels, unit } = panel;
  const xs = labels.map((_, i) => i);
  const n = panel.series.length;
  const width = n > 1 ? 0.8 / n : 0.8;
  const series = panel.series.map((s, i) => ({
    label: s.name,
    stroke: color(s.name),
    fill: color(s.name),
    width: 0,
    paths: uPlot.paths.bars({ size: [width, 40], align: n === 2 ? (i === 0 ? -1 : 1) : 0, gap: 1 }),
    points: { show: false },
    value: (u, v) => (v === null || v === undefined ? "" : fmt(v, unit)),
  }));
  return mount(el, {
    scales: { x: { time: false, range: [-0.5, labels.length - 0.5] }, y: { range: fromZero } },
    axes: axes(unit, (u, splits) => splits.map((v) => labels[v] ?? ""), () => xs),
    cursor: { points: { show: false } },
    series: [{ label: "bucket", value: (u, v) => (v === null || v === undefined ? "" : labels[v] ?? "") }, ...series],
  }, [xs, ...panel.series.map((s) => s.values)]);
}
