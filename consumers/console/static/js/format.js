// Number and time formatting by the units the API names: short, number, reqps, ms, percent, usd, score, time.

const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
const plain = new Intl.NumberFormat("en", { maximumFractionDigits: 2 });

function short(value) {
  return Math.abs(value) >= 10000 ? compact.format(value) : plain.format(value);
}

function usd(value) {
  if (value === 0) return "$0";
  if (Math.abs(value) < 0.01) return `$${value.toPrecision(2)}`;
  return `$${value.toLocaleString("en", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

function ms(value) {
  if (Math.abs(value) >= 1000) return `${(value / 1000).toFixed(Math.abs(value) >= 10000 ? 1 : 2)} s`;
  return `${value.toFixed(Math.abs(value) < 10 ? 1 : 0)} ms`;
}

/** A UTC timestamp (ISO string, Date or Unix seconds) as "2026-11-27 10:15:02". */
export function time(value) {
  const date = value instanceof Date ? value : new Date(typeof value === "number" ? value * 1000 : value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toISOString().slice(0, 19).replace("T", " ");
}

export function fmt(value, unit) {
  if (value === null || value === undefined || (typeof value === "number" && !Number.isFinite(value))) return "–";
  if (unit === "time") return time(value);
  if (typeof value !== "number") return String(value);
  switch (unit) {
    case "percent": return `${(value * 100).toFixed(Math.abs(value) < 0.1 ? 2 : 1)}%`;
    case "ms": return ms(value);
    case "usd": return usd(value);
    case "reqps": return `${short(value)} req/s`;
    case "score": return value.toFixed(3);
    default: return short(value);
  }
}

function small(value) {
  return Math.abs(value) < 1 && value !== 0 ? `${+value.toPrecision(2)}` : compact.format(value);
}

/** Axis tick labels: compact, no unit suffix except where it is the point (%, $, s/ms). */
export function tick(value, unit) {
  if (value === null || value === undefined) return "";
  switch (unit) {
    case "percent": return `${+(value * 100).toPrecision(3)}%`;
    case "usd": return `$${small(value)}`;
    case "ms": return ms(value);
    default: return small(value);
  }
}
