// A job's ledger events on a time axis: validation, each attempt as a bar with its duration,
// retries' back-off, the outcome, deliveries and resumes. Built from the /events records (and
// the stream's transitions, which have the same shape).

import { clear, el } from "./svg.js";

export const TERMINAL_TYPES = new Set(["JobRejected", "ScrapeSucceeded", "JobFailed", "JobDeadLettered", "JobCancelled", "JobExpired"]);
const OUTCOME_TYPES = new Set(["ScrapeSucceeded", "AttemptFailed", "JobFailed", "JobDeadLettered"]);

/** Whether the job is finished, from its events in ledger order (a redrive reopens it). */
export function finished(events) {
  let done = false;
  for (const e of events) {
    if (TERMINAL_TYPES.has(e.type)) done = true;
    else if (e.type === "JobRedriven") done = false;
  }
  return done;
}

/** Attempts: {n, start, end, outcome, code, ms} from AttemptStarted and the outcome events. */
export function attempts(events) {
  const byN = new Map();
  for (const e of events) {
    if (e.attempt <= 0) continue;
    if (e.type === "AttemptStarted") {
      const a = byN.get(e.attempt) || { n: e.attempt };
      if (a.start === undefined) a.start = e.at;
      byN.set(e.attempt, a);
    } else if (OUTCOME_TYPES.has(e.type) && e.event_id.endsWith(`/a${e.attempt}/outcome`)) {
      const a = byN.get(e.attempt) || { n: e.attempt, start: e.at };
      if (a.end === undefined) {
        a.end = e.at;
        a.outcome = e.type;
        a.code = e.payload.code || (e.payload.http_status ? `HTTP ${e.payload.http_status}` : "");
        if (e.payload.elapsed_ms !== undefined) a.ms = e.payload.elapsed_ms;
      }
      byN.set(e.attempt, a);
    }
  }
  return [...byN.values()].sort((a, b) => a.n - b.n);
}

const fmt = (s) => (s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(s < 10 ? 2 : 1)} s`);

export function drawTimeline(svg, events, now) {
  clear(svg);
  if (!events.length) return;
  const runs = attempts(events);
  const retries = events.filter((e) => e.type === "RetryScheduled");
  const t0 = events[0].at;
  const live = !finished(events);
  let t1 = Math.max(...events.map((e) => e.at), ...retries.map((e) => e.payload.not_before || e.at));
  if (live) t1 = Math.max(t1, now);
  const span = Math.max(t1 - t0, 0.001);
  const rows = Math.max(runs.length, 1) + 2;
  const left = 90;
  const W = 600;
  const rowH = 22;
  const H = rows * rowH + 24;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const x = (t) => left + ((t - t0) / span) * (W - left - 10);
  const rowY = (i) => 6 + i * rowH;

  // axis
  svg.append(el("line", { x1: left, y1: H - 18, x2: W - 10, y2: H - 18, class: "axis-line" }));
  for (let k = 0; k <= 4; k += 1) {
    const t = t0 + (span * k) / 4;
    svg.append(el("text", { x: x(t), y: H - 4, class: "tick", "text-anchor": "middle" }, `+${fmt(t - t0)}`));
  }

  // row 0: the job's own transitions
  svg.append(el("text", { x: 4, y: rowY(0) + 14, class: "row-label" }, "job"));
  for (const e of events) {
    if (["JobSubmitted", "JobValidated", "JobRejected", "JobCancelled", "JobRedriven", "JobExpired", "ScrapeSucceeded", "JobFailed", "JobDeadLettered"].includes(e.type)) {
      const m = el("circle", { cx: x(e.at), cy: rowY(0) + 10, r: 5, class: `mark ev-${e.type}`, "data-testid": "mark", "data-type": e.type });
      m.append(el("title", {}, `${e.type} +${fmt(e.at - t0)}`));
      svg.append(m);
    }
  }

  // one row per attempt: the fetch as a bar, the back-off before it dashed
  runs.forEach((a, i) => {
    const y = rowY(i + 1);
    svg.append(el("text", { x: 4, y: y + 14, class: "row-label" }, `attempt ${a.n}`));
    const wait = retries.find((r) => r.attempt === a.n);
    if (wait) {
      const bx = x(wait.at);
      const bw = Math.max(x(wait.payload.not_before || wait.at) - bx, 1);
      const b = el("rect", { x: bx, y: y + 4, width: bw, height: 12, class: "backoff", "data-testid": "backoff-bar", "data-attempt": a.n });
      b.append(el("title", {}, `back-off ${fmt((wait.payload.not_before || wait.at) - wait.at)}`));
      svg.append(b);
    }
    const end = a.end === undefined ? now : a.end;
    const dur = end - a.start;
    const kind = a.outcome === undefined ? "running" : a.outcome === "ScrapeSucceeded" ? "ok" : "failed";
    const bar = el("rect", {
      x: x(a.start), y: y + 2, width: Math.max(x(end) - x(a.start), 3), height: 16,
      class: `attempt attempt-${kind}`, "data-testid": "attempt-bar", "data-attempt": a.n, "data-outcome": kind,
    });
    bar.append(el("title", {}, `attempt ${a.n}: ${fmt(dur)}${a.code ? ` · ${a.code}` : ""}`));
    svg.append(bar);
    // the label right of the bar, or left of it when the bar reaches the right edge
    const room = x(end) + 130 < W;
    svg.append(el("text", {
      x: room ? x(end) + 4 : x(a.start) - 4, y: y + 14, "text-anchor": room ? "start" : "end",
      class: "bar-label", "data-testid": "attempt-label",
    }, `${fmt(dur)}${a.code ? ` · ${a.code}` : ""}`));
  });

  // last row: clients attached (resumes, waits) and results delivered
  const cy = rowY(rows - 1);
  svg.append(el("text", { x: 4, y: cy + 14, class: "row-label" }, "clients"));
  for (const e of events) {
    if (e.type !== "ClientAttached" && e.type !== "ResultDelivered") continue;
    const m = el("rect", { x: x(e.at) - 4, y: cy + 6, width: 8, height: 8, class: `mark ev-${e.type}`, "data-testid": "mark", "data-type": e.type });
    m.append(el("title", {}, `${e.type === "ClientAttached" ? "client attached" : "result delivered"} (${e.payload.pod}) +${fmt(e.at - t0)}`));
    svg.append(m);
  }
}

/** One line of the event list under the chart. */
export function describe(e, t0) {
  const p = e.payload || {};
  const bits = [`+${fmt(e.at - t0)}`, e.type];
  if (e.attempt) bits.push(`attempt ${e.attempt}`);
  if (p.code) bits.push(p.code);
  if (p.http_status) bits.push(`HTTP ${p.http_status}`);
  if (p.not_before) bits.push(`not before +${fmt(p.not_before - t0)}`);
  if (p.pod) bits.push(`pod ${p.pod}`);
  if (e.type !== "ClientAttached" && e.type !== "ResultDelivered") bits.push(`by ${e.source}`);
  return bits.join(" · ");
}
