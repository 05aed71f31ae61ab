"use strict";
// The support page: the live alert feed (server-sent events), filters, acknowledgements,
// the customer view and the overview. Plain DOM code, no library, no build step.

const state = { csrf: "", alerts: new Map(), order: [], customer: null };
const MAX_ALERTS = 2000;
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

async function api(path, options = {}) {
  const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
  if (options.method && options.method !== "GET") headers["X-CSRF-Token"] = state.csrf;
  const response = await fetch(path, Object.assign({}, options, { headers, credentials: "same-origin" }));
  if (response.status === 401) { window.location.assign("/login"); throw new Error("logged out"); }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

// -- alerts ------------------------------------------------------------------------------

function filters() {
  return { kind: $("filter-kind").value, severity: $("filter-severity").value, tier: $("filter-tier").value, open: $("filter-open").checked };
}

function visible(alert, f) {
  return (!f.kind || alert.kind === f.kind) && (!f.severity || alert.severity === f.severity)
    && (!f.tier || alert.tier === f.tier) && (!f.open || !alert.ack);
}

function alertRow(alert, fresh) {
  const row = el("tr", null, alert.severity + (alert.ack ? " acked" : "") + (fresh ? " fresh" : ""));
  row.dataset.alertId = alert.alert_id;
  row.dataset.kind = alert.kind;
  row.appendChild(el("td", when(alert.occurred_at)));
  const who = el("td");
  const link = el("button", alert.customer_id, "link customer-link");
  link.type = "button";
  link.addEventListener("click", () => showCustomer(alert.customer_id));
  who.appendChild(link);
  row.appendChild(who);
  row.appendChild(el("td", alert.tier || ""));
  row.appendChild(el("td", alert.kind.replaceAll("_", " ")));
  row.appendChild(el("td", alert.severity));
  row.appendChild(el("td", alert.reason));
  row.appendChild(el("td", alert.excerpt || "", "excerpt"));
  const handled = el("td", null, "handled");
  if (alert.ack) {
    handled.textContent = "handled by " + alert.ack.by;
    handled.title = new Date(alert.ack.at * 1000).toLocaleString();
  } else {
    const button = el("button", "Acknowledge", "ack");
    button.type = "button";
    button.addEventListener("click", () => acknowledge(alert.alert_id, button));
    handled.appendChild(button);
  }
  row.appendChild(handled);
  return row;
}

function renderAlerts() {
  const f = filters();
  const body = $("alerts-body");
  const rows = [];
  for (let i = state.order.length - 1; i >= 0 && rows.length < 500; i--) {
    const alert = state.alerts.get(state.order[i]);
    if (visible(alert, f)) rows.push(alertRow(alert, false));
  }
  body.replaceChildren(...rows);
  $("alert-count").textContent = rows.length + " shown of " + state.order.length;
}

function addAlert(alert) {
  const known = state.alerts.get(alert.alert_id);
  if (known) { alert.ack = alert.ack || known.ack; state.alerts.set(alert.alert_id, alert); renderAlerts(); return; }
  state.alerts.set(alert.alert_id, alert);
  state.order.push(alert.alert_id);
  if (state.order.length > MAX_ALERTS) state.alerts.delete(state.order.shift());
  if (visible(alert, filters())) {
    $("alerts-body").prepend(alertRow(alert, true));
    $("alert-count").textContent = $("alerts-body").children.length + " shown of " + state.order.length;
  }
}

function applyAck(ack) {
  const alert = state.alerts.get(ack.alert_id);
  if (!alert) return;
  alert.ack = { alert_id: ack.alert_id, by: ack.by, at: ack.at };
  const row = document.querySelector(`tr[data-alert-id="${ack.alert_id}"]`);
  if (row) row.replaceWith(alertRow(alert, false));
  if (filters().open) renderAlerts();
}

async function acknowledge(alertId, button) {
  button.disabled = true;
  try {
    applyAck(await api(`/api/alerts/${alertId}/ack`, { method: "POST" }));
  } catch (error) {
    button.disabled = false;
    button.title = error.message;
  }
}

function connect() {
  const source = new EventSource("/api/alerts/stream?backlog=200");
  source.addEventListener("open", () => { $("feed-status").dataset.state = "live"; $("feed-status").textContent = "live"; });
  source.addEventListener("error", () => { $("feed-status").dataset.state = "down"; $("feed-status").textContent = "reconnecting…"; });
  source.addEventListener("alert", (event) => addAlert(JSON.parse(event.data)));
  source.addEventListener("ack", (event) => applyAck(JSON.parse(event.data)));
}

// -- customer view -------------------------------------------------------------------------

const PROFILE_FIELDS = [
  ["tier", "tier"], ["clv", "CLV"], ["revenue", "revenue"], ["orders", "orders"],
  ["purchase_propensity", "purchase propensity"], ["segment", "segment"],
  ["last_purchase_anomaly", "last purchase anomaly"], ["sentiment_avg", "sentiment (average)"],
  ["last_sentiment", "last sentiment"], ["last_intent", "last intent"], ["messages", "messages"],
  ["feedback", "feedback"], ["last_rating", "last rating"], ["last_purchase_at", "last purchase"],
  ["last_message_at", "last message"], ["contact.name", "name"], ["contact.email", "e-mail"],
  ["contact.phone", "phone"], ["contact.country", "country"], ["consents", "consents to"], ["recommendations", "recommended"],
];

// A profile field by its dotted path ("contact.email"); "consents" lists the channels
// whose latest answer grants consent.
function fieldValue(profile, key) {
  if (key === "consents") {
    const granted = Object.entries(profile.consent || {}).filter(([, c]) => c.granted).map(([ch]) => ch);
    return granted.length ? granted.sort().join(", ") : null;
  }
  return key.split(".").reduce((value, part) => (value == null ? value : value[part]), profile);
}

function formatValue(key, value) {
  if (value === null || value === undefined) return "–";
  if (key === "recommendations") {
    return value.length ? value.slice(0, 5).map((r) => `${r.item} (${r.reason})`).join(", ") : "–";
  }
  if (key.endsWith("_at")) return when(value);
  if (typeof value === "number" && (key === "clv" || key === "revenue")) return value.toFixed(2);
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(3);
  return String(value);
}

function renderProfile(profile) {
  const list = $("profile");
  list.replaceChildren();
  for (const [key, label] of PROFILE_FIELDS) {
    list.appendChild(el("dt", label));
    const value = el("dd", formatValue(key, fieldValue(profile, key)));
    value.dataset.field = key;
    list.appendChild(value);
  }
}

function drawChart(messages) {
  const chart = $("sentiment-chart");
  const width = Number(chart.getAttribute("width")), height = Number(chart.getAttribute("height"));
  const pad = 24;
  chart.replaceChildren();
  const y = (score) => pad + (1 - (score + 1) / 2) * (height - 2 * pad);
  for (const level of [-1, 0, 1]) {
    chart.appendChild(svg("line", { x1: pad, x2: width - 4, y1: y(level), y2: y(level), class: "axis" }));
    chart.appendChild(svg("text", { x: 2, y: y(level) + 3 }, level));
  }
  const scored = messages.filter((m) => typeof m.sentiment === "number");
  if (!scored.length) { chart.appendChild(svg("text", { x: width / 2 - 40, y: height / 2 }, "no messages yet")); return; }
  const step = scored.length > 1 ? (width - pad - 8) / (scored.length - 1) : 0;
  const points = scored.map((m, i) => [pad + (scored.length > 1 ? i * step : (width - pad) / 2), y(m.sentiment)]);
  chart.appendChild(svg("polyline", { points: points.map((p) => p.join(",")).join(" "), class: "line" }));
  points.forEach(([cx, cy], i) => {
    const dot = svg("circle", { cx, cy, r: 3 });
    dot.appendChild(svg("title", {}, `${when(scored[i].at)}: ${scored[i].sentiment.toFixed(2)}`));
    chart.appendChild(dot);
  });
}

function fillRows(id, rows) {
  $(id).replaceChildren(...rows.map((cells) => {
    const row = el("tr");
    for (const cell of cells) row.appendChild(el("td", cell));
    return row;
  }));
}

async function showCustomer(customerId) {
  const panel = $("customer-panel");
  panel.hidden = false;
  $("customer-id").textContent = customerId;
  $("customer-error").hidden = true;
  $("customer-body").hidden = true;
  try {
    const id = encodeURIComponent(customerId);
    const [profile, history] = await Promise.all([api(`/api/customers/${id}`), api(`/api/customers/${id}/history`)]);
    renderProfile(profile);
    const messages = history.messages || [];
    drawChart(messages);
    fillRows("history-messages", messages.slice().reverse().map((m) => [when(m.at), m.sentiment.toFixed(2), m.intent || "", m.excerpt || ""]));
    fillRows("history-alerts", (history.alerts || []).slice().reverse().map((a) => [when(a.at), a.kind.replaceAll("_", " "), a.severity, a.score.toFixed(2)]));
    fillRows("history-tiers", (history.tiers || []).slice().reverse().map((t) => [when(t.at), t.from_tier, t.to_tier, t.clv.toFixed(2)]));
    $("customer-body").hidden = false;
  } catch (error) {
    $("customer-error").textContent = error.message;
    $("customer-error").hidden = false;
  }
}

// -- overview ------------------------------------------------------------------------------

function drawBars(id, counts, order) {
  const chart = $(id);
  chart.replaceChildren();
  const entries = order ? order.filter((k) => k in counts).map((k) => [k, counts[k]]) : Object.entries(counts).sort((a, b) => b[1] - a[1]);
  const max = Math.max(1, ...entries.map((e) => e[1]));
  const room = Number(chart.getAttribute("width")) - 150;
  if (!entries.length) chart.appendChild(svg("text", { x: 0, y: 12 }, "none"));
  entries.forEach(([label, count], i) => {
    const yPos = 4 + i * 14;
    chart.appendChild(svg("text", { x: 0, y: yPos + 9 }, label.replaceAll("_", " ")));
    chart.appendChild(svg("rect", { x: 110, y: yPos, height: 10, width: Math.max(1, (count / max) * room) }));
    chart.appendChild(svg("text", { x: 115 + (count / max) * room, y: yPos + 9 }, count));
  });
  chart.setAttribute("height", Math.max(20, 8 + entries.length * 14));
}

async function refreshStats() {
  try {
    const stats = await api("/api/stats");
    $("stat-customers").textContent = stats.customers;
    const byKind = stats.alerts_last_hour.by_kind;
    $("stat-alerts-hour").textContent = Object.values(byKind).reduce((a, b) => a + b, 0);
    $("stat-acked").textContent = stats.alerts_acknowledged;
    drawBars("stat-kinds", byKind);
    drawBars("stat-tiers", stats.tiers_sampled.tiers, ["bronze", "silver", "gold", "platinum"]);
    drawBars("stat-deadletters", stats.deadletters_last_hour);
    const rates = stats.events_per_second || {};
    const total = Object.values(rates).reduce((a, b) => a + b, 0);
    $("stat-rate").textContent = Object.keys(rates).length ? Math.round(total) : "–";
    $("stat-rate-topics").textContent = "events/s " + Object.entries(rates).map(([t, r]) => `${t.replace("crm.", "")} ${Math.round(r)}`).join(" · ");
    const models = stats.models || {};
    const aucs = Object.values(models.propensity_auc || {}).filter((v) => typeof v === "number");
    $("stat-auc").textContent = aucs.length ? (aucs.reduce((a, b) => a + b, 0) / aucs.length).toFixed(3) : "–";
    $("stat-models").textContent = `propensity AUC · sentiment learned ${models.sentiment_ratings_learned ?? 0} ratings`;
  } catch (error) { /* shown again at the next refresh */ }
}

async function start() {
  const session = await api("/api/session");
  state.csrf = session.csrf;
  $("user").textContent = session.name;
  for (const id of ["filter-kind", "filter-severity", "filter-tier", "filter-open"]) $(id).addEventListener("change", renderAlerts);
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("search-input").value.trim();
    if (id) showCustomer(id);
  });
  $("customer-close").addEventListener("click", () => { $("customer-panel").hidden = true; });
  connect();
  refreshStats();
  setInterval(refreshStats, 5000);
}

start();
