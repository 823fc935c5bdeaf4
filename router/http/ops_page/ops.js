// The ops page: plain DOM, no framework, no network beyond this server. Every request
// carries the operator's bearer token, kept for this browser tab only (sessionStorage).
"use strict";

const TOKEN_KEY = "lianban.ops.token";
const $ = (selector) => document.querySelector(selector);
let departmentNames = {};

// Builds an element; strings become text nodes, so nothing from the server is parsed as HTML.
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) throw new Error("Enter an operator token (scope ops) first.");
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
  });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail ?? detail; } catch (_) { /* not JSON */ }
    const error = new Error(`${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

const percent = (ratio) => (ratio === null || ratio === undefined ? "–" : `${(ratio * 100).toFixed(1)}%`);
const hours = (value) => (value === null || value === undefined ? "–" : `${value.toFixed(1)} h`);
const when = (iso) => (iso ? new Date(iso).toLocaleString("zh-CN", { hour12: false }) : "–");

function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, "0")}h`;
}

function fill(tbody, rows, empty) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 8, class: "muted" }, empty))]));
}

// Departments ------------------------------------------------------------------------------

async function loadDepartments() {
  const windowMinutes = $("#window").value;
  const departments = await api(`/v1/ops/departments?window_minutes=${windowMinutes}`);
  departmentNames = Object.fromEntries(departments.map((d) => [d.department, d.name_zh]));
  const rows = departments.map((d) => {
    const depth = d.ready + (d.unacknowledged ?? 0);
    const circuit = d.circuit ?? "unknown";
    const troubled = circuit === "open" || d.dead_letters > 0 || (d.error_ratio ?? 0) > 0.1;
    return el("tr", { class: troubled ? "alert" : null, "data-department": d.department },
      el("td", {}, `${d.name_zh} `, el("span", { class: "muted" }, d.department)),
      el("td", { class: "num" }, d.unacknowledged === null ? `${depth}` : `${depth} (${d.ready} ready, ${d.unacknowledged} unacked)`),
      el("td", { class: "num" }, d.consumers),
      el("td", { class: "num" }, age(d.oldest_age_seconds)),
      el("td", { class: "num" }, d.outcomes),
      el("td", { class: "num" }, percent(d.error_ratio)),
      el("td", {}, el("span", { class: `badge ${circuit}` }, circuit === "unknown" ? "no report" : circuit)),
      el("td", { class: "num" }, d.dead_letters));
  });
  fill($("#departments tbody"), rows, "No departments.");
  updateDeadLetterQueues(departments);
}

// Deadlines --------------------------------------------------------------------------------

const KINDS = { acceptance: "受理 acceptance", decision: "办结 decision",
  tolerated_gap: "容缺承诺 commitment", bundle: "一件事 bundle" };

async function loadDeadlines() {
  const entries = await api("/v1/ops/deadlines");
  const rows = entries.map((entry) => el("tr", { class: entry.level === "missed" ? "bad" : "warn" },
    el("td", {}, el("a", { href: "#bundle", "data-key": entry.project_no, class: "bundle-link" }, entry.project_no)),
    el("td", {}, entry.item ? `${entry.name_zh} ` : "—", el("span", { class: "muted" }, entry.item ?? "")),
    el("td", {}, entry.department ? (departmentNames[entry.department] ?? entry.department) : "—"),
    el("td", {}, entry.state),
    el("td", {}, KINDS[entry.kind] ?? entry.kind),
    el("td", {}, entry.level === "missed" ? "超期 missed" : "预警 warning"),
    el("td", {}, when(entry.due_at))));
  fill($("#deadlines tbody"), rows, "No deadline is near or past.");
}

// Dead letters -----------------------------------------------------------------------------

function updateDeadLetterQueues(departments) {
  const select = $("#dead-letter-queue");
  const chosen = select.value;
  const options = departments
    .filter((d) => d.dead_letters > 0)
    .map((d) => el("option", { value: `lianban.dept.${d.department}.parking` },
      `${d.name_zh} (${d.dead_letters})`));
  select.replaceChildren(el("option", { value: "" }, "every parking lot"), ...options);
  if ([...select.options].some((option) => option.value === chosen)) select.value = chosen;
}

// Listing takes each parked message and puts it back, so a replay must not run while a
// listing holds them: the section is busy (buttons off) until the listing is done.
async function loadDeadLetters() {
  const section = $("#dead-letters");
  section.setAttribute("aria-busy", "true");
  $("#replay-selected").disabled = $("#replay-all").disabled = true;
  try {
    await listDeadLetters();
  } finally {
    section.setAttribute("aria-busy", "false");
  }
}

async function listDeadLetters() {
  const queue = $("#dead-letter-queue").value;
  const letters = await api(`/v1/ops/dead-letters${queue ? `?queue=${encodeURIComponent(queue)}` : ""}`);
  const rows = letters.map((letter) => el("tr", {},
    el("td", {}, el("input", { type: "checkbox", class: "letter", value: letter.message_id, "data-queue": letter.queue, "aria-label": letter.message_id })),
    el("td", {}, letter.message_id, el("div", { class: "muted" }, letter.source_queue)),
    el("td", {}, el("a", { href: "#bundle", "data-key": letter.bundle_id, class: "bundle-link" }, letter.bundle_id)),
    el("td", {}, letter.reason),
    el("td", { class: "num" }, letter.replayed ? `${letter.count} (replayed ${letter.replayed}×)` : letter.count),
    el("td", {}, when(letter.died_at))));
  fill($("#dead-letters tbody"), rows, "No dead letters.");
  $("#select-all").checked = false;
  $("#replay-all").disabled = !queue || letters.length === 0;
  updateReplayButtons();
}

function updateReplayButtons() {
  const busy = $("#dead-letters").getAttribute("aria-busy") === "true";
  $("#replay-selected").disabled = busy || document.querySelectorAll("input.letter:checked").length === 0;
}

function confirmed(text) {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

async function replay(queue, messageIds) {
  const what = messageIds ? `${messageIds.length} message(s)` : "every message";
  if (!(await confirmed(`Replay ${what} from ${queue} to the department's queue? The department will receive them again.`))) return;
  const result = await api(`/v1/ops/dead-letters/${encodeURIComponent(queue)}/replay`, {
    method: "POST",
    body: JSON.stringify({ message_ids: messageIds }),
  });
  $("#replay-result").textContent = `Replayed ${result.replayed} message(s) from ${queue}.`;
  await refresh();
}

async function replaySelected() {
  const byQueue = {};
  for (const box of document.querySelectorAll("input.letter:checked")) {
    (byQueue[box.dataset.queue] ??= []).push(box.value);
  }
  for (const [queue, ids] of Object.entries(byQueue)) await replay(queue, ids);
}

// Bundle search ----------------------------------------------------------------------------

// Waiting for a department's decision: its last words, the last poll and the next one.
function decisionPollCells(poll) {
  if (!poll) return [el("td", {}, ""), el("td", {}, ""), el("td", {}, "")];
  return [
    el("td", { class: "department-answer" }, `${poll.department_answer} (${when(poll.answered_at)})`),
    el("td", {}, poll.last_poll_at ? `${when(poll.last_poll_at)} (#${poll.polls})` : "not yet"),
    el("td", {}, poll.next_poll_at ? when(poll.next_poll_at) : "calls back"),
  ];
}

async function findBundle(key) {
  const target = $("#bundle-result");
  let bundle;
  try {
    bundle = await api(`/v1/ops/bundles/${encodeURIComponent(key)}`);
  } catch (error) {
    if (error.status !== 404) throw error;
    target.replaceChildren(el("p", { class: "muted" }, `No bundle ${key}.`));
    return;
  }
  target.replaceChildren(
    el("p", { id: "bundle-summary" },
      el("strong", {}, bundle.project_no), ` · ${bundle.bundle_type} · ${bundle.state} · received ${when(bundle.received_at)} · `,
      el("span", { class: "muted" }, bundle.bundle_id)),
    el("table", { id: "bundle-items" },
      el("thead", {}, el("tr", {}, el("th", {}, "Item"), el("th", {}, "Department"), el("th", {}, "State"), el("th", {}, "Reason"),
        el("th", {}, "Department says"), el("th", {}, "Last poll"), el("th", {}, "Next poll"))),
      el("tbody", {}, bundle.items.map((item) => el("tr", {},
        el("td", {}, item.name_zh), el("td", {}, departmentNames[item.department] ?? item.department),
        el("td", {}, item.state), el("td", {}, item.reason ?? ""),
        ...decisionPollCells(item.decision_poll))))),
    el("h3", {}, "Timeline 全程留痕"),
    el("table", { id: "timeline" },
      el("thead", {}, el("tr", {}, el("th", {}, "At"), el("th", {}, "Step"), el("th", {}, "Item"), el("th", {}, "Actor"), el("th", {}, "Detail"))),
      el("tbody", {}, bundle.timeline.map((step) => el("tr", {},
        el("td", {}, when(step.at)), el("td", {}, step.state), el("td", {}, step.item ?? "(bundle)"),
        el("td", {}, step.actor), el("td", {}, step.detail ?? ""))))));
}

// Supervision figures and charts -------------------------------------------------------------

function figuresTable(title, groups, names) {
  const head = ["", "办件量 volume", "受理 accepted", "不予受理量 rejected", "办结 completed",
    "收件时限 avg (on time)", "办理时限 avg (on time)", "办结率 completion", "超期 overdue"];
  return el("div", {},
    el("h3", {}, title),
    el("table", { class: "figures" },
      el("thead", {}, el("tr", {}, head.map((label, i) => el("th", { class: i ? "num" : null }, label)))),
      el("tbody", {}, Object.entries(groups).map(([code, f]) => el("tr", {},
        el("td", {}, `${names[code] ?? code} `, el("span", { class: "muted" }, code)),
        el("td", { class: "num" }, f.volume),
        el("td", { class: "num" }, f.accepted),
        el("td", { class: "num" }, f.rejected),
        el("td", { class: "num" }, f.completed),
        el("td", { class: "num" }, `${hours(f.intake_hours_avg)} (${percent(f.intake_on_time_ratio)})`),
        el("td", { class: "num" }, `${hours(f.decision_hours_avg)} (${percent(f.decision_on_time_ratio)})`),
        el("td", { class: "num" }, percent(f.completion_ratio)),
        el("td", { class: "num" }, f.overdue))))));
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// Horizontal grouped bars: one row per label, one bar per series, scaled to the largest value.
function barChart(title, labels, series, { max, format = String, legend = true } = {}) {
  const labelWidth = 170, width = 560, barHeight = 9, gap = 8;
  const rowHeight = series.length * barHeight + gap;
  const height = Math.max(labels.length * rowHeight + 10, 30);
  const top = max ?? Math.max(1, ...series.flatMap((s) => s.values));
  const scale = (width - labelWidth - 50) / top;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  labels.forEach((label, row) => {
    const y = row * rowHeight + 4;
    chart.append(svg("text", { x: labelWidth - 6, y: y + (series.length * barHeight) / 2 + 4, "text-anchor": "end" }, label));
    series.forEach((s, i) => {
      const value = s.values[row] ?? 0;
      const barY = y + i * barHeight;
      const bar = svg("rect", { x: labelWidth, y: barY, width: Math.max(value * scale, 0.5), height: barHeight - 1, class: `bar-${s.key}` });
      bar.append(svg("title", {}, `${label} · ${s.name}: ${format(value)}`));
      chart.append(bar, svg("text", { x: labelWidth + value * scale + 4, y: barY + barHeight - 1 }, format(value)));
    });
  });
  return el("div", { class: "chart" },
    el("h3", {}, title),
    legend ? el("div", { class: "legend muted" }, series.map((s) => el("span", { class: s.key }, s.name))) : "",
    chart);
}

function volumeChart(title, groups, names) {
  const codes = Object.keys(groups);
  return barChart(title, codes.map((code) => names[code] ?? code), [
    { key: "volume", name: "办件量", values: codes.map((c) => groups[c].volume) },
    { key: "rejected", name: "不予受理量", values: codes.map((c) => groups[c].rejected) },
    { key: "completed", name: "办结", values: codes.map((c) => groups[c].completed) },
  ]);
}

function completionChart(title, groups, names) {
  const codes = Object.keys(groups);
  return barChart(title, codes.map((code) => names[code] ?? code), [
    { key: "ratio", name: "办结率", values: codes.map((c) => groups[c].completion_ratio ?? 0) },
  ], { max: 1, format: (v) => `${(v * 100).toFixed(0)}%`, legend: false });
}

async function loadSupervision() {
  const since = $("#since").value, until = $("#until").value;
  const figures = await api(`/v1/ops/supervision?since=${since}&until=${until}`);
  const { by_department: departments, by_bundle_type: bundleTypes, names } = figures;
  $("#supervision-result").replaceChildren(
    el("div", { class: "charts" },
      volumeChart("部门 办件量 / 不予受理量 / 办结", departments, names),
      completionChart("部门 办结率", departments, names),
      volumeChart("一件事 办件量 / 不予受理量 / 办结", bundleTypes, names)),
    figuresTable("By department 按部门", departments, names),
    figuresTable("By bundle type 按一件事", bundleTypes, names));
}

// Wiring -----------------------------------------------------------------------------------

async function guarded(work) {
  try {
    showError("");
    await work();
  } catch (error) {
    showError(error.message);
  }
}

async function refresh() {
  await loadDepartments();
  await Promise.all([loadDeadlines(), loadDeadLetters()]);
}

// Periods are China dates (UTC+8), whatever the operator's browser thinks.
function chinaDate(millis) {
  return new Date(millis + 8 * 3600000).toISOString().slice(0, 10);
}

document.addEventListener("DOMContentLoaded", () => {
  $("#until").value = chinaDate(Date.now());
  $("#since").value = chinaDate(Date.now() - 29 * 86400000);
  $("#token").value = sessionStorage.getItem(TOKEN_KEY) ?? "";

  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
    guarded(async () => { await refresh(); await loadSupervision(); });
  });
  $("#refresh").addEventListener("click", () => guarded(refresh));
  $("#window").addEventListener("change", () => guarded(loadDepartments));
  $("#dead-letter-queue").addEventListener("change", () => guarded(loadDeadLetters));
  $("#select-all").addEventListener("change", (event) => {
    for (const box of document.querySelectorAll("input.letter")) box.checked = event.target.checked;
    updateReplayButtons();
  });
  $("#dead-letters tbody").addEventListener("change", updateReplayButtons);
  $("#replay-selected").addEventListener("click", () => guarded(replaySelected));
  $("#replay-all").addEventListener("click", () => guarded(() => replay($("#dead-letter-queue").value, null)));
  $("#bundle-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(() => findBundle($("#bundle-key").value.trim()));
  });
  document.body.addEventListener("click", (event) => {
    const link = event.target.closest("a.bundle-link");
    if (!link) return;
    $("#bundle-key").value = link.dataset.key;
    guarded(() => findBundle(link.dataset.key));
  });
  $("#supervision-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(loadSupervision);
  });

  if (sessionStorage.getItem(TOKEN_KEY)) guarded(async () => { await refresh(); await loadSupervision(); });
  // Dead letters are listed on demand only (see loadDeadLetters).
  setInterval(() => {
    if (sessionStorage.getItem(TOKEN_KEY)) guarded(async () => { await loadDepartments(); await loadDeadlines(); });
  }, 10000);
});
