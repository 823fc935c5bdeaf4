// The ops page: plain DOM, no framework, no network beyond this server. Every request
// carries the operator's bearer token, kept for this browser tab only (sessionStorage).
// Chinese by default; the English switch is remembered by this browser (localStorage).
"use strict";

const TOKEN_KEY = "lianban.ops.token";
const LANGUAGE_KEY = "lianban.ops.language";
const PAGE_SIZE = 25;
const $ = (selector) => document.querySelector(selector);
let departmentNames = {};
let departmentHealth = {};  // the last /v1/ops/departments rows by code: why an item may wait
let bundlePage = 1;

// Every label as [中文, English]; states, steps and circuits by their code.
const TEXT = {
  operations: ["运维", "Operations"], token: ["运维令牌", "Operator token"], use: ["使用", "Use"],
  departments: ["部门", "Departments"], department: ["部门", "Department"],
  min15: ["15 分钟", "15 min"], hour1: ["1 小时", "1 h"], hour24: ["24 小时", "24 h"],
  refresh: ["刷新", "Refresh"], depth: ["队列积压", "Queue depth"], consumers: ["消费者", "Consumers"],
  oldest: ["最久未答", "Oldest"], answers: ["答复数", "Answers"], errorRate: ["失败率", "Error rate"],
  circuit: ["熔断", "Circuit"], deadLetters: ["死信", "Dead letters"],
  departmentsNote: ["有故障的部门排在最前，其次是有业务的部门。积压 = 待投递 + 未确认；最久未答 = 队列有消息时部门最早未答复的派发；答复数与失败率按所选时段统计，失败包括办理失败、重试、停放（死信）和不可达。",
    "Departments in trouble come first, then those with activity. Depth = ready + unacknowledged; oldest = the oldest dispatch the department has not answered while its queue holds messages; answers and error rate count the chosen window, failures including retries, parked requests and unreachable steps."],
  bundleList: ["办件列表", "Bundles"], state: ["状态", "State"], any: ["全部", "Any"],
  bundleType: ["一件事", "Bundle type"], overdue: ["超期", "Overdue"], overdueOnly: ["仅超期", "Overdue only"],
  notOverdue: ["未超期", "Not overdue"], receivedFrom: ["收件日期", "Received from"], to: ["至", "to"],
  search: ["查询", "Search"], caseNumber: ["办件编号", "Case number"], items: ["事项（未办结）", "Items (open)"],
  received: ["收件时间", "Received"], due: ["承诺时限", "Due"], previous: ["上一页", "Previous"], next: ["下一页", "Next"],
  counts: ["一件事 {bundles} 件 · 事项 {items} 项", "{bundles} bundle(s) · {items} item(s)"],
  pageOf: ["第 {page} / {pages} 页", "Page {page} of {pages}"], noBundles: ["没有符合条件的办件。", "No bundle matches."],
  deadlines: ["预警 / 超期", "Deadlines"], item: ["事项", "Item"], deadline: ["时限", "Deadline"], level: ["级别", "Level"],
  message: ["消息", "Message"], reason: ["原因", "Reason"], deaths: ["死信次数", "Deaths"], diedAt: ["进入时间", "Died at"],
  replaySelected: ["重放所选", "Replay selected"], replayAll: ["重放整个队列", "Replay the whole queue"],
  bundleSearch: ["办件查询", "Find a bundle"], bundleKey: ["办件编号或办件 ID", "Case number or bundle id"], find: ["查找", "Find"],
  reportMonth: ["月度通报", "Monthly report"], downloadXlsx: ["下载 XLSX", "Download XLSX"],
  downloadCsv: ["下载 CSV", "Download CSV"],
  ratingsByDepartment: ["好差评（按部门）", "Ratings by department"], ratingsByBundleType: ["好差评（按一件事）", "Ratings by bundle type"],
  rated: ["评价数", "Rated"], badRatings: ["差评", "Bad ratings"], satisfaction: ["满意率", "Satisfaction"],
  rectificationsOpen: ["整改未结", "Rectifications open"], rectificationsOverdue: ["整改超期", "Rectifications overdue"],
  supervision: ["电子监察", "Supervision figures"], from: ["从", "From"], show: ["显示", "Show"],
  cancel: ["取消", "Cancel"], replay: ["重放", "Replay"],
  enterToken: ["请先输入运维令牌（ops 权限）。", "Enter an operator token (scope ops) first."],
  noDepartments: ["没有部门。", "No departments."], noDeadlines: ["没有临近或已过的时限。", "No deadline is near or past."],
  noDeadLetters: ["没有死信。", "No dead letters."], everyParkingLot: ["全部死信队列", "every parking lot"],
  noReport: ["未上报", "no report"], replayedTimes: ["（已重放 {n} 次）", " (replayed {n}×)"],
  confirmReplay: ["将 {what} 从 {queue} 重新投递到部门队列？部门会再次收到。", "Replay {what} from {queue} to the department's queue? The department will receive them again."],
  messages: ["{n} 条消息", "{n} message(s)"], everyMessage: ["全部消息", "every message"],
  replayedResult: ["已从 {queue} 重放 {n} 条消息。", "Replayed {n} message(s) from {queue}."],
  noBundle: ["没有办件 {key}。", "No bundle {key}."], receivedAt: ["收件 {at}", "received {at}"],
  whyWaiting: ["卡住原因", "Why it waits"], attempt: ["第 {n} 次投递", "attempt {n}"],
  nextRetry: ["下次重试 {at}", "next retry {at}"], parkedNote: ["等待运维重放", "waits for an operator's replay"], circuitThen: ["熔断器", "circuit"],
  lastError: ["最后错误", "Last error"], "trouble.retrying": ["重试中", "retrying"], "trouble.parked": ["已停放", "parked"],
  departmentSays: ["部门答复", "Department says"], departmentCondition: ["部门状况", "Department now"], lastPoll: ["上次查询", "Last poll"], nextPoll: ["下次查询", "Next poll"],
  notYet: ["尚未", "not yet"], callsBack: ["等待回调", "calls back"], timeline: ["全程留痕", "Timeline"],
  at: ["时间", "At"], step: ["步骤", "Step"], actor: ["执行方", "Actor"], detail: ["详情", "Detail"], bundle: ["（整件）", "(bundle)"],
  volume: ["办件量（事项）", "Items received"], accepted: ["受理", "Accepted"], rejected: ["不予受理量", "Not accepted"],
  completed: ["办结", "Completed"], intakeAvg: ["收件时限 平均（按时）", "Intake avg (on time)"],
  decisionAvg: ["办理时限 平均（按时）", "Decision avg (on time)"], completion: ["办结率", "Completion"],
  bundlesVolume: ["一件事件数", "Bundles received"], repliedBundles: ["已答复", "Replied"],
  bundlesOnTime: ["按承诺时限答复率", "Replied within promise"], byDepartment: ["按部门（事项）", "By department (items)"],
  byBundleType: ["按一件事（事项）", "By bundle type (items)"], bundlesByType: ["按一件事（件数）", "By bundle type (bundles)"],
  chartDepartments: ["部门 办件量 / 不予受理量 / 办结", "Departments: items, not accepted, completed"],
  chartCompletion: ["部门 办结率", "Departments: completion"],
  chartBundleTypes: ["一件事 事项办件量 / 不予受理量 / 办结", "Bundle types: items, not accepted, completed"],
  "kind.acceptance": ["受理", "acceptance"], "kind.decision": ["办结", "decision"],
  "kind.tolerated_gap": ["容缺承诺", "commitment"], "kind.bundle": ["一件事", "bundle"],
  "level.missed": ["超期", "missed"], "level.warning": ["预警", "warning"],
  "circuit.closed": ["正常", "closed"], "circuit.open": ["熔断", "open"], "circuit.half_open": ["半开", "half open"],
  "state.in_progress": ["办理中", "in progress"], "state.replied": ["已答复", "replied"],
  "state.delivered": ["已送达", "delivered"],
  "state.waiting": ["等待前置", "waiting"], "state.dispatched": ["已派发", "dispatched"],
  "state.pre_reviewed": ["容缺预审", "pre-reviewed"], "state.accepted": ["已受理", "accepted"],
  "state.correction_requested": ["补齐补正", "correction requested"], "state.approved": ["准予", "approved"],
  "state.denied": ["不予许可", "denied"], "state.rejected": ["不予受理", "rejected"], "state.failed": ["失败", "failed"],
  "state.cancelled": ["已取消", "cancelled"], "state.received": ["收件", "received"], "state.validated": ["校验通过", "validated"],
  "state.applied": ["申请（本人或代办）", "applied (in person or by an agent)"],
  "state.prerequisites_forwarded": ["前置结果转送", "prerequisites forwarded"], "state.corrected": ["已补正", "corrected"],
  "state.deadline_unknown": ["时限未知", "deadline unknown"], "state.clock_started": ["计时开始", "clock started"],
  "state.clock_paused": ["计时暂停", "clock paused"], "state.clock_resumed": ["计时恢复", "clock resumed"],
  "state.deadline_extended": ["延期", "deadline extended"], "state.deadline_moved": ["时限调整", "deadline moved"],
  "state.deadline_warning": ["预警", "deadline warning"], "state.overdue": ["超期", "overdue"],
  "state.ignored": ["已忽略", "ignored"], "state.decision_pending": ["待部门决定", "decision pending"],
  "state.unreachable": ["部门不可达", "unreachable"], "state.withdrawn": ["已撤回", "withdrawn"],
  "state.callback_delivered": ["回调已送达", "callback delivered"],
  "state.retrying": ["重试中", "retrying"], "state.parked": ["已停放（死信）", "parked"], "state.replayed": ["已重放", "replayed"],
  "state.notice_issued": ["已出具通知书", "notice issued"],
  "state.applicant_messaged": ["已短信告知", "applicant messaged"],
  "state.applicant_not_messaged": ["未短信告知", "applicant not messaged"],
  "state.handover_ready": ["待送达", "ready to hand over"], "state.waybill_issued": ["已出运单", "waybill issued"],
  "state.awaiting_collection": ["待窗口领取", "awaiting collection"], "state.awaiting_download": ["待下载", "awaiting download"],
  "state.awaiting_waybill": ["待出运单", "awaiting waybill"], "state.in_transit": ["邮寄中", "in transit"],
  handovers: ["送达", "Handovers"], handoverMethod: ["送达方式", "Method"], waybill: ["运单号", "Waybill"],
  proof: ["送达凭证", "Proof"], "method.window": ["窗口领取", "window"],
  "method.electronic": ["电子送达", "electronic"], "method.post": ["邮寄送达", "post"],
};

let language = localStorage.getItem(LANGUAGE_KEY) === "en" ? "en" : "zh";

// The label `key` in the page's language, `{name}` filled from `values`; an unknown key
// (a state this page does not know yet) shows as itself.
function t(key, values = {}) {
  const pair = TEXT[key];
  const text = pair ? pair[language === "en" ? 1 : 0] : key.replace(/^\w+\./, "");
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

function applyLanguage() {
  document.documentElement.lang = language === "en" ? "en" : "zh-CN";
  document.title = language === "en" ? "Lianban · Operations" : "联办 · 运维";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  const other = $("#language");
  other.textContent = language === "en" ? "中文" : "English";
  other.lang = language === "en" ? "zh-CN" : "en";
}

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
  if (!token) throw new Error(t("enterToken"));
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
  });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const problem = await response.json();
      detail = problem.detail ?? (language === "en" ? problem.title_en : problem.title) ?? detail;
    } catch (_) { /* not JSON */ }
    const error = new Error(`${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

const percent = (ratio) => (ratio === null || ratio === undefined ? "–" : `${(ratio * 100).toFixed(1)}%`);
const hours = (value) => (value === null || value === undefined ? "–" : `${value.toFixed(1)} h`);
const when = (iso) => (iso ? new Date(iso).toLocaleString(language === "en" ? "en-GB" : "zh-CN", { hour12: false, timeZone: "Asia/Shanghai" }) : "–");
const stateLabel = (state) => t(`state.${state}`);
const departmentLabel = (code) => departmentNames[code] ?? code;

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

// A case number (办件编号) that opens the bundle, its id beside it.
function caseLink(projectNo, bundleId) {
  return [
    el("a", { href: "#bundle", "data-key": projectNo ?? bundleId, class: "bundle-link" }, projectNo ?? bundleId),
    projectNo && bundleId ? el("div", { class: "muted id" }, bundleId) : "",
  ];
}

// Departments ------------------------------------------------------------------------------

// The server orders them: trouble first, then activity, then the idle ones.
async function loadDepartments() {
  const windowMinutes = $("#window").value;
  const departments = await api(`/v1/ops/departments?window_minutes=${windowMinutes}`);
  departmentNames = Object.fromEntries(departments.map((d) => [d.department, d.name_zh]));
  departmentHealth = Object.fromEntries(departments.map((d) => [d.department, d]));
  const rows = departments.map((d) => {
    const depth = d.ready + (d.unacknowledged ?? 0);
    const circuit = d.circuit ?? "unknown";
    const troubled = circuit === "open" || circuit === "half_open" || d.dead_letters > 0 || (d.error_ratio ?? 0) > 0.1;
    return el("tr", { class: troubled ? "alert" : null, "data-department": d.department },
      el("td", {}, `${d.name_zh} `, el("span", { class: "muted" }, d.department)),
      el("td", { class: "num" }, d.unacknowledged === null ? `${depth}` : `${depth} (${d.ready} + ${d.unacknowledged})`),
      el("td", { class: "num" }, d.consumers),
      el("td", { class: "num" }, age(d.oldest_age_seconds)),
      el("td", { class: "num" }, d.outcomes),
      el("td", { class: "num" }, percent(d.error_ratio)),
      el("td", {}, el("span", { class: `badge ${circuit}`, "data-circuit": circuit }, circuit === "unknown" ? t("noReport") : t(`circuit.${circuit}`))),
      el("td", { class: "num" }, d.dead_letters));
  });
  fill($("#departments tbody"), rows, t("noDepartments"));
  updateDepartmentFilter(departments);
  updateDeadLetterQueues(departments);
}

// Bundle list ------------------------------------------------------------------------------

function keepChoice(select, options) {
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "", "data-i18n": "any" }, t("any")), ...options);
  if ([...select.options].some((option) => option.value === chosen)) select.value = chosen;
}

function updateDepartmentFilter(departments) {
  const sorted = [...departments].sort((a, b) => a.department.localeCompare(b.department));
  keepChoice($("#filter-department"), sorted.map((d) => el("option", { value: d.department }, d.name_zh)));
}

async function loadBundleTypes() {
  const names = await api("/v1/ops/bundle-types");
  keepChoice($("#filter-type"), Object.entries(names).map(([code, name]) => el("option", { value: code }, name)));
}

function bundleQuery() {
  const query = new URLSearchParams({ page: bundlePage, page_size: PAGE_SIZE });
  const filters = { state: "#filter-state", bundle_type: "#filter-type", department: "#filter-department",
    overdue: "#filter-overdue", since: "#filter-since", until: "#filter-until" };
  for (const [name, selector] of Object.entries(filters)) {
    if ($(selector).value) query.set(name, $(selector).value);
  }
  return query;
}

async function loadBundles() {
  const result = await api(`/v1/ops/bundles?${bundleQuery()}`);
  const pages = Math.max(1, Math.ceil(result.bundles_total / result.page_size));
  $("#bundle-counts").textContent = t("counts", { bundles: result.bundles_total, items: result.items_total });
  $("#page-number").textContent = t("pageOf", { page: result.page, pages });
  $("#page-previous").disabled = result.page <= 1;
  $("#page-next").disabled = result.page >= pages;
  const rows = result.bundles.map((bundle) => el("tr", { class: bundle.overdue ? "bad" : null, "data-bundle": bundle.project_no },
    el("td", {}, caseLink(bundle.project_no, bundle.bundle_id)),
    el("td", {}, `${bundle.bundle_type_zh} `, el("span", { class: "muted" }, bundle.bundle_type)),
    el("td", {}, stateLabel(bundle.state), bundle.overdue ? el("span", { class: "badge open" }, t("level.missed")) : ""),
    el("td", { class: "num" }, `${bundle.items} (${bundle.open_items})`),
    el("td", {}, bundle.departments.map(departmentLabel).join("、")),
    el("td", {}, when(bundle.received_at)),
    el("td", {}, when(bundle.due_at))));
  fill($("#bundles tbody"), rows, t("noBundles"));
}

// Deadlines --------------------------------------------------------------------------------

async function loadDeadlines() {
  const entries = await api("/v1/ops/deadlines");
  const rows = entries.map((entry) => el("tr", { class: entry.level === "missed" ? "bad" : "warn" },
    el("td", {}, caseLink(entry.project_no, entry.bundle_id)),
    el("td", {}, entry.item ? `${entry.name_zh} ` : "—", el("span", { class: "muted" }, entry.item ?? "")),
    el("td", {}, entry.department ? departmentLabel(entry.department) : "—"),
    el("td", {}, stateLabel(entry.state)),
    el("td", {}, t(`kind.${entry.kind}`)),
    el("td", { class: "level" }, t(`level.${entry.level}`)),
    el("td", {}, when(entry.due_at))));
  fill($("#deadlines tbody"), rows, t("noDeadlines"));
}

// Dead letters -----------------------------------------------------------------------------

function updateDeadLetterQueues(departments) {
  const select = $("#dead-letter-queue");
  const chosen = select.value;
  const options = departments
    .filter((d) => d.dead_letters > 0)
    .map((d) => el("option", { value: `lianban.dept.${d.department}.parking` },
      `${d.name_zh} (${d.dead_letters})`));
  select.replaceChildren(el("option", { value: "" }, t("everyParkingLot")), ...options);
  if ([...select.options].some((option) => option.value === chosen)) select.value = chosen;
}

// Listing takes each parked message and puts it back, so a replay must not run while a
// listing holds them, nor two listings at once (each would miss what the other holds):
// listings wait for each other, only the last one asked for is drawn, and the section is
// busy (buttons off) until it is done.
let listingsAsked = 0;
let lastListing = Promise.resolve();

async function loadDeadLetters() {
  const section = $("#dead-letters");
  section.setAttribute("aria-busy", "true");
  $("#replay-selected").disabled = $("#replay-all").disabled = true;
  listingsAsked += 1;
  const listing = lastListing.then(() => listDeadLetters(() => listingsAsked === 1));
  lastListing = listing.catch(() => {});
  try {
    await listing;
  } finally {
    listingsAsked -= 1;
    if (listingsAsked === 0) section.setAttribute("aria-busy", "false");
  }
}

async function listDeadLetters(isLast) {
  const queue = $("#dead-letter-queue").value;
  const letters = await api(`/v1/ops/dead-letters${queue ? `?queue=${encodeURIComponent(queue)}` : ""}`);
  if (!isLast()) return; // a newer listing was asked for: it draws
  const rows = letters.map((letter) => el("tr", {},
    el("td", {}, el("input", { type: "checkbox", class: "letter", value: letter.message_id, "data-queue": letter.queue, "aria-label": letter.message_id })),
    el("td", {}, letter.message_id, el("div", { class: "muted" }, letter.source_queue)),
    el("td", {}, caseLink(letter.project_no, letter.bundle_id)),
    el("td", {}, letter.reason),
    el("td", { class: "num" }, letter.count, letter.replayed ? t("replayedTimes", { n: letter.replayed }) : ""),
    el("td", {}, when(letter.died_at))));
  fill($("#dead-letters tbody"), rows, t("noDeadLetters"));
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
  const what = messageIds ? t("messages", { n: messageIds.length }) : t("everyMessage");
  if (!(await confirmed(t("confirmReplay", { what, queue })))) return;
  const result = await api(`/v1/ops/dead-letters/${encodeURIComponent(queue)}/replay`, {
    method: "POST",
    body: JSON.stringify({ message_ids: messageIds }),
  });
  $("#replay-result").textContent = t("replayedResult", { n: result.replayed, queue });
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
    el("td", {}, poll.last_poll_at ? `${when(poll.last_poll_at)} (#${poll.polls})` : t("notYet")),
    el("td", {}, poll.next_poll_at ? when(poll.next_poll_at) : t("callsBack")),
  ];
}

// Why an open item may wait: its department's circuit, parked messages and unanswered age.
function departmentConditionCell(item) {
  const health = departmentHealth[item.department];
  if (!health || ["approved", "denied", "rejected", "failed", "cancelled"].includes(item.state)) return el("td", {}, "");
  const circuit = health.circuit ?? "unknown";
  return el("td", { class: "department-condition" },
    el("span", { class: `badge ${circuit}` }, circuit === "unknown" ? t("noReport") : t(`circuit.${circuit}`)),
    ` ${t("deadLetters")} ${health.dead_letters} · ${t("oldest")} ${age(health.oldest_age_seconds)}`);
}

// Why a stuck item waits, as its adapter last reported: retrying (attempt, next retry) or
// parked, the circuit towards the department, and the last error (masked by the server).
function troubleCell(item) {
  const trouble = item.trouble;
  if (!trouble) return el("td", { class: "trouble" }, "");
  const upcoming = trouble.next_retry_at ? t("nextRetry", { at: when(trouble.next_retry_at) }) : t("parkedNote");
  return el("td", { class: "trouble", "data-trouble": trouble.state },
    el("span", { class: `badge ${trouble.state === "parked" ? "open" : "half_open"}` }, t(`trouble.${trouble.state}`)),
    ` ${t("attempt", { n: trouble.attempts })} · ${upcoming} · ${t("circuitThen")} `,
    el("span", { class: `badge ${trouble.circuit}`, "data-circuit": trouble.circuit }, t(`circuit.${trouble.circuit}`)),
    el("div", { class: "last-error", title: t("lastError") }, `${t("lastError")}: ${trouble.last_error}`));
}

const headRow = (...keys) => el("thead", {}, el("tr", {}, keys.map((key) => el("th", {}, t(key)))));

async function findBundle(key) {
  const target = $("#bundle-result");
  let bundle;
  try {
    bundle = await api(`/v1/ops/bundles/${encodeURIComponent(key)}`);
  } catch (error) {
    if (error.status !== 404) throw error;
    target.replaceChildren(el("p", { class: "muted" }, t("noBundle", { key })));
    return;
  }
  const itemNames = Object.fromEntries(bundle.items.map((item) => [item.item, item.name_zh]));
  target.replaceChildren(
    el("p", { id: "bundle-summary" },
      el("strong", {}, bundle.project_no), ` · ${bundle.bundle_type} · ${stateLabel(bundle.state)} · ${t("receivedAt", { at: when(bundle.received_at) })} · `,
      el("span", { class: "muted" }, bundle.bundle_id)),
    el("table", { id: "bundle-items" },
      headRow("item", "department", "state", "reason", "whyWaiting", "departmentCondition", "departmentSays", "lastPoll", "nextPoll"),
      el("tbody", {}, bundle.items.map((item) => el("tr", { "data-item": item.item, class: item.trouble ? "alert" : null },
        el("td", {}, item.name_zh), el("td", {}, departmentLabel(item.department)),
        el("td", {}, stateLabel(item.state)), el("td", {}, item.reason ?? ""),
        troubleCell(item),
        departmentConditionCell(item),
        ...decisionPollCells(item.decision_poll))))),
    ...handoverSection(bundle.handovers),
    el("h3", {}, t("timeline")),
    el("table", { id: "timeline" },
      headRow("at", "step", "item", "actor", "detail"),
      el("tbody", {}, bundle.timeline.map((step) => el("tr", { "data-step": step.state },
        el("td", {}, when(step.at)), el("td", {}, stateLabel(step.state)),
        el("td", {}, step.item ? [`${itemNames[step.item] ?? ""} `, el("span", { class: "muted" }, step.item)] : t("bundle")),
        el("td", {}, step.actor), el("td", {}, step.detail ?? ""))))));
}

// 送达: each handover's method, state, waybill and proof (who signed, when, its reference).
function handoverSection(handovers) {
  if (!handovers.length) return [];
  return [
    el("h3", {}, t("handovers")),
    el("table", { id: "handovers" },
      headRow("item", "handoverMethod", "state", "waybill", "proof"),
      el("tbody", {}, handovers.map((handover) => el("tr", { "data-handover": handover.state },
        el("td", {}, handover.item ?? t("bundle")), el("td", {}, t(`method.${handover.method}`)),
        el("td", {}, stateLabel(handover.state) + (handover.last_error ? ` (${handover.last_error})` : "")),
        el("td", {}, handover.waybill_no ?? ""),
        el("td", {}, handover.proof
          ? `${handover.proof.source} ${handover.proof.signature_ref} · ${when(handover.proof.received_at)}`
          : ""))))),
  ];
}

// Supervision figures and charts -------------------------------------------------------------

// One row per department or bundle type: its name, then one number cell per figure.
function groupTable(id, title, head, groups, names, cells) {
  return el("div", {},
    el("h3", {}, title),
    el("table", { class: "figures", id },
      el("thead", {}, el("tr", {}, ["", ...head].map((key, i) => el("th", { class: i ? "num" : null }, key ? t(key) : "")))),
      el("tbody", {}, Object.entries(groups).map(([code, f]) => el("tr", {},
        el("td", {}, `${names[code] ?? code} `, el("span", { class: "muted" }, code)),
        cells(f).map((value) => el("td", { class: "num" }, value)))))));
}

function figuresTable(id, title, groups, names) {
  const head = ["volume", "accepted", "rejected", "completed", "intakeAvg", "decisionAvg", "completion", "overdue"];
  return groupTable(id, title, head, groups, names, (f) => [
    f.volume, f.accepted, f.rejected, f.completed,
    `${hours(f.intake_hours_avg)} (${percent(f.intake_on_time_ratio)})`,
    `${hours(f.decision_hours_avg)} (${percent(f.decision_on_time_ratio)})`,
    percent(f.completion_ratio), f.overdue]);
}

// Bundles against their own promise: counted in bundles (件), never in items.
function bundleFiguresTable(groups, names) {
  const head = ["bundlesVolume", "repliedBundles", "bundlesOnTime"];
  return groupTable("bundles-by-type", t("bundlesByType"), head, groups, names,
    (f) => [f.bundles, f.replied, percent(f.on_time_ratio)]);
}

// 好差评: ratings per level, and the rectifications (整改) 差评 opened.
function ratingsTable(id, title, groups, names) {
  const head = ["rated", "badRatings", "satisfaction", "rectificationsOpen", "rectificationsOverdue"];
  return groupTable(id, title, head, groups, names, (f) => [
    f.rated, f.dissatisfied + f.very_dissatisfied, percent(f.satisfaction_ratio),
    f.rectifications_open, f.rectifications_overdue]);
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
    { key: "volume", name: t("volume"), values: codes.map((c) => groups[c].volume) },
    { key: "rejected", name: t("rejected"), values: codes.map((c) => groups[c].rejected) },
    { key: "completed", name: t("completed"), values: codes.map((c) => groups[c].completed) },
  ]);
}

function completionChart(title, groups, names) {
  const codes = Object.keys(groups);
  return barChart(title, codes.map((code) => names[code] ?? code), [
    { key: "ratio", name: t("completion"), values: codes.map((c) => groups[c].completion_ratio ?? 0) },
  ], { max: 1, format: (v) => `${(v * 100).toFixed(0)}%`, legend: false });
}

async function loadSupervision() {
  const since = $("#since").value, until = $("#until").value;
  const figures = await api(`/v1/ops/supervision?since=${since}&until=${until}`);
  const { by_department: departments, by_bundle_type: bundleTypes, bundles_by_type: bundles, names } = figures;
  const { ratings_by_department: ratedDepartments, ratings_by_bundle_type: ratedTypes } = figures;
  $("#supervision-result").replaceChildren(
    el("div", { class: "charts" },
      volumeChart(t("chartDepartments"), departments, names),
      completionChart(t("chartCompletion"), departments, names),
      volumeChart(t("chartBundleTypes"), bundleTypes, names)),
    bundleFiguresTable(bundles, names),
    figuresTable("items-by-department", t("byDepartment"), departments, names),
    figuresTable("items-by-bundle-type", t("byBundleType"), bundleTypes, names),
    ratingsTable("ratings-by-department", t("ratingsByDepartment"), ratedDepartments, names),
    ratingsTable("ratings-by-bundle-type", t("ratingsByBundleType"), ratedTypes, names));
}

// The report needs the bearer token, which a plain link cannot send: fetched, then saved.
async function downloadReport(format) {
  const month = $("#report-month").value;
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) throw new Error(t("enterToken"));
  const response = await fetch(`/v1/ops/report?month=${month}&format=${format}`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  if (!response.ok) throw new Error(`${response.status}: ${(await response.json()).detail}`);
  const link = el("a", { href: URL.createObjectURL(await response.blob()), download: `lianban-report-${month}.${format}` });
  link.click();
  URL.revokeObjectURL(link.href);
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
  await Promise.all([loadBundles(), loadDeadlines(), loadDeadLetters()]);
}

async function loadAll() {
  await Promise.all([refresh(), loadBundleTypes(), loadSupervision()]);
}

// Periods are China dates (UTC+8), whatever the operator's browser thinks.
function chinaDate(millis) {
  return new Date(millis + 8 * 3600000).toISOString().slice(0, 10);
}

document.addEventListener("DOMContentLoaded", () => {
  applyLanguage();
  $("#until").value = chinaDate(Date.now());
  $("#since").value = chinaDate(Date.now() - 29 * 86400000);
  $("#token").value = sessionStorage.getItem(TOKEN_KEY) ?? "";

  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
    guarded(loadAll);
  });
  $("#language").addEventListener("click", () => {
    language = language === "en" ? "zh" : "en";
    localStorage.setItem(LANGUAGE_KEY, language);
    applyLanguage();
    if (sessionStorage.getItem(TOKEN_KEY)) guarded(loadAll);
  });
  $("#refresh").addEventListener("click", () => guarded(refresh));
  $("#window").addEventListener("change", () => guarded(loadDepartments));
  $("#bundle-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    bundlePage = 1;
    guarded(loadBundles);
  });
  $("#page-previous").addEventListener("click", () => { bundlePage -= 1; guarded(loadBundles); });
  $("#page-next").addEventListener("click", () => { bundlePage += 1; guarded(loadBundles); });
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
  $("#report-month").value = chinaDate(Date.now()).slice(0, 7);
  for (const link of document.querySelectorAll("a.report-link")) {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      guarded(() => downloadReport(link.dataset.format));
    });
  }
  $("#supervision-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(loadSupervision);
  });

  if (sessionStorage.getItem(TOKEN_KEY)) guarded(loadAll);
  // Dead letters are listed on demand only (see loadDeadLetters).
  setInterval(() => {
    if (sessionStorage.getItem(TOKEN_KEY)) guarded(async () => { await loadDepartments(); await loadDeadlines(); });
  }, 10000);
});
