// The dashboard: counters from /v1/stats (each second), the recent-jobs table from GET /v1/jobs (paged
// and filtered on the server), a job's timeline from /events and /stream, and a submit box.
// Everything shown is set as text; scraped HTML goes only into a sandboxed iframe (no scripts).

import { ApiError, get, onKeyRequired, request, stream } from "./api.js";
import { FINISHED, drawChart, summarize } from "./chart.js";
import { describe, drawTimeline, finished } from "./timeline.js";

const $ = (id) => document.getElementById(id);
const PAGE = 50;

const state = {
  cursors: [null], // cursors[i]: the cursor of page i (null: the newest)
  version: -1,
  loading: false,
  again: false,
  local: new Map(), // jobs submitted from this page that the index may not have yet
  detail: null, // {id, events, abort, done}
};

// --- API key: asked for only when the edge answers 401 ------------------------------------
onKeyRequired(() => new Promise((resolve) => {
  const dialog = $("key-dialog");
  dialog.addEventListener("close", () => resolve($("key-input").value || null), { once: true });
  dialog.showModal();
}));

function shortId(id) {
  return id.slice(0, 8);
}

function fmtDuration(job) {
  const end = job.finished_at ?? Date.now() / 1000;
  if (job.submitted_at == null) return "";
  const s = Math.max(0, end - job.submitted_at);
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(1)} s`;
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function row(job) {
  const tr = document.createElement("tr");
  tr.dataset.jobId = job.job_id;
  tr.dataset.testid = "job-row";
  tr.setAttribute("data-testid", "job-row");
  tr.tabIndex = 0;
  const id = cell(shortId(job.job_id), "mono");
  id.title = job.job_id;
  const host = cell(job.host || "", "host");
  host.title = job.url;
  const status = cell(job.status, `status st-${job.status}`);
  status.setAttribute("data-testid", "job-status");
  const err = cell(job.error ? job.error.code : "", "mono");
  err.setAttribute("data-testid", "job-error");
  if (job.error) err.title = job.error.message;
  tr.append(id, host, status, cell(String(job.attempts ?? 0)), cell(fmtDuration(job)), err);
  if (state.detail && state.detail.id === job.job_id) tr.classList.add("selected");
  tr.addEventListener("click", () => openJob(job.job_id));
  tr.addEventListener("keydown", (e) => { if (e.key === "Enter") openJob(job.job_id); });
  return tr;
}

function filters() {
  return { status: $("filter-status").value, q: $("filter-q").value.trim() };
}

function matches(job, f) {
  if (f.status === "active" && FINISHED.includes(job.status)) return false;
  if (f.status && f.status !== "active" && job.status !== f.status) return false;
  const q = f.q.toLowerCase();
  return !q || job.job_id.toLowerCase().includes(q) || (job.url || "").toLowerCase().includes(q);
}

// --- the table: one page at a time, refetched when the index changes ------------------------
async function loadJobs() {
  if (state.loading) {
    state.again = true;
    return;
  }
  state.loading = true;
  try {
    do {
      state.again = false;
      const f = filters();
      const page = state.cursors.length - 1;
      const params = new URLSearchParams({ limit: String(PAGE) });
      if (f.status) params.set("status", f.status);
      if (f.q) params.set("q", f.q);
      const cursor = state.cursors[page];
      if (cursor) params.set("cursor", cursor);
      const answer = await get(`/v1/jobs?${params}`);
      let jobs = answer.jobs;
      if (page === 0) {
        const known = new Set(jobs.map((j) => j.job_id));
        for (const id of known) state.local.delete(id);
        const extra = [...state.local.values()].filter((j) => matches(j, f));
        jobs = [...extra, ...jobs];
      }
      const body = $("jobs-body");
      body.replaceChildren(...jobs.map(row));
      $("older").hidden = !answer.next_cursor;
      $("older").dataset.next = answer.next_cursor || "";
      $("indexed").textContent = `${answer.indexed.toLocaleString()} jobs in the window (of at most ${answer.capacity.toLocaleString()})`;
      const open = state.detail && jobs.find((j) => j.job_id === state.detail.id);
      if (open && state.detail.done && open.events > state.detail.events.length) refreshEvents();
    } while (state.again);
  } catch (e) {
    $("indexed").textContent = `jobs: ${e.code || e.message}`;
  } finally {
    state.loading = false;
  }
}

function resetPaging() {
  state.cursors = [null];
  loadJobs();
}

$("filter-status").addEventListener("change", resetPaging);
let typing;
$("filter-q").addEventListener("input", () => {
  clearTimeout(typing);
  typing = setTimeout(resetPaging, 250);
});
$("older").addEventListener("click", () => {
  state.cursors.push($("older").dataset.next);
  loadJobs();
});

// --- counters ----------------------------------------------------------------------------
function showStats(stats) {
  const s = summarize(stats);
  $("rate-submitted").textContent = s.submitted.toFixed(2);
  $("rate-finished").textContent = s.finished.toFixed(2);
  $("in-flight").textContent = String(stats.in_flight);
  const parts = FINISHED.filter((k) => s.byStatus[k]).map((k) => `${k.replace("_", " ")} ${s.byStatus[k]}`);
  $("finished-by-status").textContent = parts.length ? parts.join(" · ") : "none";
  drawChart($("chart"), $("legend"), stats);
  if (stats.version !== state.version) {
    state.version = stats.version;
    if (state.cursors.length === 1) loadJobs(); // only the first page moves by itself
  }
}

// the counters are small and always change somewhere: one GET a second (the answer's version
// says whether the table's first page needs reading again)
async function followStats() {
  for (;;) {
    try {
      showStats(await get("/v1/stats"));
      $("live").textContent = "live";
      $("live").className = "live on";
    } catch (e) {
      $("live").textContent = `offline (${e.code || e.message})`;
      $("live").className = "live";
    }
    await new Promise((r) => { setTimeout(r, 1000); }); // the refresh pace
  }
}

// --- a job's timeline ------------------------------------------------------------------------
function renderDetail() {
  const d = state.detail;
  const events = d.events;
  drawTimeline($("timeline"), events, Date.now() / 1000);
  const list = $("events");
  const t0 = events.length ? events[0].at : 0;
  list.replaceChildren(...events.map((e) => {
    const li = document.createElement("li");
    li.textContent = describe(e, t0);
    return li;
  }));
  $("cancel-job").hidden = d.done;
}

function showJob(job) {
  $("detail-status").textContent = job.status;
  $("detail-status").className = `status st-${job.status}`;
  $("detail-url").textContent = job.url;
  const err = job.error || (job.result && job.result.error);
  $("detail-error").hidden = !err;
  $("detail-error").textContent = err ? `${err.code}: ${err.message}` : "";
  const r = job.result || {};
  const html = typeof r.html === "string" ? r.html : null;
  // without html (other formats asked for), the outputs are shown as text only
  const others = ["markdown", "text"].map((f) => r[f]).find((v) => typeof v === "string")
    ?? (r.links || r.metadata ? JSON.stringify({ links: r.links, metadata: r.metadata }, null, 2) : null);
  $("result").hidden = html === null && others == null;
  $("show-rendered").hidden = html === null;
  state.detail.html = html ?? others;
  if (html !== null) showSource(false);
  else if (others != null) showSource(true);
  const local = state.local.get(job.job_id);
  if (local) Object.assign(local, { status: job.status, attempts: job.attempts, error: job.error,
    finished_at: job.finished_at ?? (FINISHED.includes(job.status) ? Date.now() / 1000 : null) });
}

function showSource(source) {
  const html = state.detail.html ?? "";
  const frame = $("rendered");
  const pre = $("source");
  frame.hidden = source;
  pre.hidden = !source;
  if (source) pre.textContent = html; // escaped: shown as text
  else frame.srcdoc = html; // sandbox="" (no allow-scripts, opaque origin): never runs here
}
$("show-rendered").addEventListener("click", () => showSource(false));
$("show-source").addEventListener("click", () => showSource(true));

async function refreshEvents() {
  const d = state.detail;
  try {
    const answer = await get(`/v1/jobs/${encodeURIComponent(d.id)}/events`);
    if (state.detail !== d) return;
    d.events = answer.events;
    renderDetail();
  } catch (e) {
    // the next index change retries
  }
}

async function openJob(id) {
  if (state.detail) state.detail.abort.abort();
  const d = { id, events: [], abort: new AbortController(), done: false, html: null };
  state.detail = d;
  for (const tr of document.querySelectorAll("#jobs-body tr")) tr.classList.toggle("selected", tr.dataset.jobId === id);
  $("detail").hidden = false;
  $("detail-id").textContent = id;
  $("detail-id").title = id;
  $("result").hidden = true;
  try {
    const [job, history] = await Promise.all([get(`/v1/jobs/${encodeURIComponent(id)}`), get(`/v1/jobs/${encodeURIComponent(id)}/events`)]);
    if (state.detail !== d) return;
    d.events = history.events;
    d.done = finished(d.events);
    showJob(job);
    renderDetail();
    if (!d.done) follow(d);
  } catch (e) {
    if (state.detail === d) {
      $("detail-status").textContent = e instanceof ApiError ? e.code : String(e);
    }
  }
}

async function follow(d) {
  const ticker = setInterval(() => { if (state.detail === d && !d.done) renderDetail(); }, 250);
  let last;
  try {
    while (!d.done && state.detail === d) {
      try {
        await stream(`/v1/jobs/${encodeURIComponent(d.id)}/stream`, (ev) => {
          last = ev.id;
          if (ev.event === "transition") {
            if (!d.events.some((e) => e.event_id === ev.data.event_id)) d.events.push(ev.data);
            $("detail-status").textContent = "running";
            renderDetail();
          } else if (ev.event === "result") {
            d.done = true;
            d.result = ev.data; // the result frame's fields: all the page needs to show it
          }
        }, { signal: d.abort.signal, lastEventId: last });
      } catch (e) {
        if (d.abort.signal.aborted) return;
        await new Promise((r) => { setTimeout(r, 1000); }); // reconnect pacing, resumes at `last`
      }
    }
    if (state.detail !== d || !d.result) return;
    const r = d.result;
    showJob({ job_id: r.job_id, status: r.status, url: r.url, attempts: r.attempts, error: r.error || null, result: r });
    renderDetail();
    loadJobs();
    await refreshEvents(); // the outcome's delivery and any resumes, which the stream leaves out
  } finally {
    clearInterval(ticker);
  }
}

$("cancel-job").addEventListener("click", async () => {
  const d = state.detail;
  try {
    await request("DELETE", `/v1/jobs/${encodeURIComponent(d.id)}`);
  } catch (e) {
    $("detail-error").hidden = false;
    $("detail-error").textContent = e.code || e.message;
  }
});

// --- submit ------------------------------------------------------------------------------
const FORMATS = ["html", "markdown", "text", "links", "metadata"];
let formatsOffered = null;

async function loadFormats() {
  const box = $("formats");
  try {
    const doc = await get("/openapi.json");
    // offered only when this edge's job object has a `formats` field
    formatsOffered = doc.components.schemas.JobRequest.properties.formats ? FORMATS : null;
  } catch {
    formatsOffered = null;
  }
  const offered = formatsOffered || ["html"];
  box.replaceChildren(...offered.map((f) => {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox";
    input.value = f;
    input.checked = f === "html";
    input.disabled = formatsOffered === null;
    input.setAttribute("data-testid", `format-${f}`);
    label.append(input, ` ${f}`);
    return label;
  }));
  if (formatsOffered === null) box.title = "this edge returns HTML only";
}

$("submit-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const url = $("submit-url").value.trim();
  const body = { url };
  const chosen = [...$("formats").querySelectorAll("input:checked")].map((i) => i.value);
  if (formatsOffered && chosen.length && chosen.join() !== "html") body.formats = chosen; // html: the default
  $("submit-msg").textContent = "submitting…";
  try {
    const answer = await request("POST", "/v1/jobs", body);
    $("submit-msg").textContent = `accepted ${shortId(answer.job_id)}`;
    let host = "";
    try { host = new URL(url).hostname; } catch { /* the validator will say */ }
    state.local.set(answer.job_id, {
      job_id: answer.job_id, url, host, status: answer.status, attempts: 0,
      submitted_at: Date.now() / 1000, finished_at: null, error: null, events: 1,
    });
    if (state.cursors.length === 1) loadJobs();
    openJob(answer.job_id);
  } catch (err) {
    $("submit-msg").textContent = `refused: ${err.code || err.message}`;
  }
});

loadFormats();
loadJobs();
followStats();
