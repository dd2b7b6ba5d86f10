// The counters' chart: finished jobs per 5 s bucket stacked by terminal status, and the
// submitted jobs per bucket as a line, over the last 15 minutes.

import { clear, el } from "./svg.js";

export const FINISHED = ["succeeded", "failed", "dead_lettered", "rejected", "cancelled", "expired"];

export function drawChart(svg, legend, stats) {
  clear(svg);
  const W = 900;
  const H = 120;
  const buckets = stats.buckets;
  const total = (b) => FINISHED.reduce((n, s) => n + (b.finished[s] || 0), 0);
  const top = Math.max(1, ...buckets.map((b) => Math.max(total(b), b.submitted)));
  const w = W / buckets.length;
  buckets.forEach((b, i) => {
    let y = H;
    for (const s of FINISHED) {
      const n = b.finished[s] || 0;
      if (!n) continue;
      const h = (n / top) * (H - 4);
      y -= h;
      svg.append(el("rect", { x: i * w, y, width: Math.max(w - 0.5, 0.5), height: h, class: `bar st-${s}` },
      ));
    }
  });
  const points = buckets.map((b, i) => `${i * w + w / 2},${H - (b.submitted / top) * (H - 4)}`).join(" ");
  svg.append(el("polyline", { points, class: "submitted-line" }));
  svg.append(el("text", { x: 4, y: 12, class: "chart-label" }, `max ${top} / 5 s`));
  clear(legend);
  for (const s of ["submitted", ...FINISHED.slice(0, 5)]) {
    const item = document.createElement("span");
    item.className = `key st-${s}`;
    item.textContent = s.replace("_", " ");
    legend.append(item);
  }
}

/** Rates over the last minute (12 buckets) and totals over the window. */
export function summarize(stats) {
  const last = stats.buckets.slice(-12);
  const secs = last.length * stats.bucket_s;
  const submitted = last.reduce((n, b) => n + b.submitted, 0) / secs;
  const finished = last.reduce((n, b) => n + FINISHED.reduce((m, s) => m + (b.finished[s] || 0), 0), 0) / secs;
  const byStatus = {};
  for (const b of stats.buckets) for (const [s, n] of Object.entries(b.finished)) byStatus[s] = (byStatus[s] || 0) + n;
  return { submitted, finished, byStatus };
}
