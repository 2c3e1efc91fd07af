/* The dashboard's panels: now, who, when, what they want, the feeds.
   The counters are read every two seconds; the rest every fifteen, and at
   once when the live stream brings a ban or an unban. */
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const GROUPS = [ // a verdict reason's family, as the operator names it
  [/^(scan|ua)\./, "scanner fingerprint"], [/^(feed|intel|apiban)/, "feed"], [/^country/, "country"],
  [/^(rate|limit|flood)/, "rate"], [/^bann?ed|^ban/, "ban"], [/^(sanity|malformed|parse|size)/, "sanity"],
];
let previous = null; // the last counters, to make rates
let refreshing = null;

function group(reason) {
  for (const [pattern, name] of GROUPS) if (pattern.test(reason)) return name;
  return reason || "other";
}

async function now() {
  const status = await sw.get("/api/v1/status");
  const at = Date.now() / 1000;
  const verdicts = status.verdicts || {};
  const rates = {}, byReason = {};
  for (const [key, count] of Object.entries(verdicts)) {
    const [verdict, reason] = key.split(":");
    const before = previous && previous.verdicts[key] !== undefined ? previous.verdicts[key] : count;
    const rate = previous ? (count - before) / Math.max(0.5, at - previous.at) : 0;
    rates[verdict] = (rates[verdict] || 0) + rate;
    const side = verdict === "forward" || verdict === "allow" ? "passed" : "dropped";
    const name = `${side}: ${side === "passed" ? verdict : group(reason)}`;
    byReason[name] = (byReason[name] || 0) + count;
  }
  previous = { verdicts, at };
  sw.fill(document.getElementById("rates"), ["Verdict", "per second#"],
    Object.entries(rates).sort().map(([v, r]) => ({ cells: [v, r.toFixed(1)] })));
  sw.fill(document.getElementById("reasons"), ["Passed or dropped", "messages#"],
    Object.entries(byReason).sort((a, b) => b[1] - a[1]).map(([k, n]) => ({ cells: [k, n] })));
  document.getElementById("bans-count").textContent = status["bans-in-force"] ?? 0;
  document.getElementById("mode").textContent = `mode: ${status.mode}`;
  const answers = ((status.edge || {})["from-backend"] || 0) + ((status.host || {})["answers-read"] || 0);
  const edgeOrHost = status.edge !== undefined || status.host !== undefined;
  const last = status["pbx-answered-at"];
  document.getElementById("pbx-answers").textContent = edgeOrHost ? `${answers} answers` : "no edge or host mode";
  document.getElementById("pbx-last").textContent = !edgeOrHost ? "" :
    last ? `the last ${sw.ago(last)}` : "none since sipwarden started";
  showFleet(status.fleet);
  const kernel = status["kernel-drops"];
  sw.fill(document.getElementById("kernel"), ["Counter", "value#"],
    kernel ? Object.entries(kernel).map(([k, v]) => ({ cells: [k, v] })) : [], "no kernel enforcer");
}

function showFleet(fleet) { // [fleet]: up or DEGRADED (Redis's error), nodes, lag, bans each way
  document.getElementById("fleet-card").hidden = !fleet;
  if (!fleet) return;
  const state = document.getElementById("fleet-state");
  state.textContent = fleet.degraded ? "DEGRADED" : "up";
  state.classList.toggle("error", Boolean(fleet.degraded));
  const counters = fleet.counters || {};
  const parts = [`${fleet["nodes-up"] ?? 0} of ${fleet.nodes ?? 0} nodes up`, `lag ${fleet.lag ?? 0} s`,
    `bans published ${counters.published || 0}, applied ${counters.applied || 0}`];
  if (fleet.degraded) parts.unshift(`Redis: ${fleet["last-error"] || "catching up"}`);
  document.getElementById("fleet-detail").textContent = parts.join(" · ");
}

function banRow(ban) {
  return {
    attrs: { "data-ip": ban.ip, "data-shown-at": (Date.now() / 1000).toFixed(3) },
    cells: [sw.sourceLink(ban.ip), `${ban.detector || ""} ${ban.reason || ""}`.trim(), sw.time(ban.created_at),
      ban.expires_at ? sw.time(ban.expires_at) : "permanent", sw.banButton(ban.ip, true, refresh)],
  };
}

let shownBans = new Map(); // ip -> row attrs, so a row keeps the moment it first appeared

function showBans(bans) {
  const table = document.getElementById("bans");
  const tbody = table.querySelector("tbody");
  const rows = bans.slice().reverse().map((ban) => {
    const row = banRow(ban);
    if (shownBans.has(ban.ip)) row.attrs["data-shown-at"] = shownBans.get(ban.ip);
    return row;
  });
  shownBans = new Map(rows.map((r) => [r.attrs["data-ip"], r.attrs["data-shown-at"]]));
  tbody.replaceChildren(...rows.map((r) => sw.el("tr", r.attrs, ...r.cells.map((c) => sw.el("td", {}, c)))));
  if (!rows.length) tbody.append(sw.el("tr", {}, sw.el("td", { colspan: 5 }, "no ban in force")));
}

async function who(bans, events) {
  showBans(bans);
  // the busiest sources, summed by the daemon (not 100,000 flow records here)
  const busiest = await sw.get("/api/v1/sources?since=1h&limit=15");
  const sources = new Map(busiest.map((s) => [s.source, { packets: s.packets, reasons: s.verdicts, tools: new Set() }]));
  const hour = Date.now() / 1000 - 3600;
  for (const e of events) {
    if (e.time < hour || !e.source || !sources.has(e.source)) continue;
    const tool = sw.tool(e.reason) || (e.user_agent ? e.user_agent.split(/[\s/]/)[0] : null);
    if (tool) sources.get(e.source).tools.add(tool);
  }
  const detector = new Map(bans.map((b) => [b.ip, b.detector]));
  const top = [...sources.entries()];
  const countries = await Promise.all(top.map(([ip]) => country(ip)));
  sw.fill(document.getElementById("sources"), ["Source", "Country", "Tool", "Packets#", "Rule or detector"],
    top.map(([ip, s], i) => {
      const rule = detector.get(ip) || Object.entries(s.reasons).sort((a, b) => b[1] - a[1]).map(([r]) => r)[0] || "passed";
      return { attrs: { "data-ip": ip }, cells: [sw.sourceLink(ip), countries[i] || "?", [...s.tools].join(", ") || "-", s.packets, rule] };
    }), "no traffic in the last hour");
}

const countryCache = new Map();
async function country(ip) {
  if (!countryCache.has(ip)) {
    countryCache.set(ip, sw.get("/api/v1/intel/lookup/" + encodeURIComponent(ip)).then((f) => f.country).catch(() => null));
  }
  return countryCache.get(ip);
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function timeline(events) {
  const bucket = 600, buckets = 36, end = Math.ceil(Date.now() / 1000 / bucket) * bucket, start = end - bucket * buckets;
  const passed = new Array(buckets).fill(0), hostile = new Array(buckets).fill(0);
  for (const e of events) {
    if (e.time < start || (e.kind !== "verdict" && e.kind !== "login-failed")) continue;
    const i = Math.min(buckets - 1, Math.floor((e.time - start) / bucket));
    hostile[i] += e.repeated || 1;
  }
  const max = Math.max(1, ...hostile, ...passed);
  const w = 600, h = 140, bw = w / buckets;
  const chart = svg("svg", { viewBox: `0 0 ${w} ${h + 16}`, role: "img", "aria-label": `Attack volume per ten minutes over the last six hours, at most ${max}` });
  hostile.forEach((n, i) => {
    const bh = (n / max) * h;
    chart.append(svg("rect", { class: "bar dropped", x: i * bw + 1, y: h - bh, width: bw - 2, height: bh },
      svg("title", {}, `${sw.time(start + i * bucket)}: ${n}`)));
  });
  for (let i = 0; i <= buckets; i += 6) {
    const label = new Date((start + i * bucket) * 1000).toISOString().slice(11, 16);
    chart.append(svg("text", { class: "axis", x: Math.min(w - 24, i * bw), y: h + 12 }, label));
  }
  document.getElementById("timeline").replaceChildren(chart);
}

async function heatmap() {
  let profile;
  try { profile = await sw.get("/api/v1/profile"); } catch (error) { return; }
  const days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
  const max = Math.max(1e-9, ...profile.hours);
  const cell = 22, left = 32, top = 14;
  const chart = svg("svg", { viewBox: `0 0 ${left + 24 * cell + 2} ${top + 7 * cell + 2}`, role: "img", "aria-label": "Attack volume by hour of the week" });
  for (let hr = 0; hr < 24; hr += 3) chart.append(svg("text", { class: "axis", x: left + hr * cell, y: 10 }, String(hr).padStart(2, "0")));
  days.forEach((day, d) => {
    chart.append(svg("text", { class: "axis", x: 0, y: top + d * cell + 15 }, day));
    for (let hr = 0; hr < 24; hr++) {
      const i = d * 24 + hr, v = profile.hours[i];
      const attrs = { x: left + hr * cell, y: top + d * cell, width: cell - 2, height: cell - 2,
        fill: `rgba(197, 48, 48, ${0.05 + 0.95 * (v / max)})` };
      if (profile.quiet[i]) attrs.class = "quiet";
      chart.append(svg("rect", attrs, svg("title", {}, `${day} ${hr}:00 ${v.toFixed(1)} a week${profile.quiet[i] ? ", quiet hours" : ""}`)));
    }
  });
  document.getElementById("heatmap").replaceChildren(chart);
}

async function what(events) {
  const accounts = {};
  const walks = [];
  for (const e of events) {
    if (e.kind === "login-failed" && e.account !== undefined) accounts[e.account] = (accounts[e.account] || 0) + (e.repeated || 1);
    if (/^tollfraud\.|walk/.test(e.reason || "")) walks.push(e);
  }
  sw.fill(document.getElementById("accounts"), ["Account", "failed logins#"],
    Object.entries(accounts).sort((a, b) => b[1] - a[1]).slice(0, 30).map(([a, n]) => ({ cells: [a, n] })), "no failed login");
  sw.fill(document.getElementById("walks"), ["When", "Source", "Rule"],
    walks.slice(-30).reverse().map((e) => ({ cells: [sw.time(e.time), sw.sourceLink(e.source), e.reason] })), "no prefix walk");
  let calls = [];
  try { calls = await sw.get("/api/v1/honeypot/calls?since=7d&limit=200"); } catch (error) { calls = []; }
  const numbers = {};
  for (const c of calls) {
    const n = numbers[c.normalised || c.number] || { country: c.country, count: 0, sources: new Set() };
    n.count += c.count; n.sources.add(c.source);
    numbers[c.normalised || c.number] = n;
  }
  sw.fill(document.getElementById("dialled"), ["Number", "Country", "calls#", "sources#"],
    Object.entries(numbers).sort((a, b) => b[1].count - a[1].count).slice(0, 30)
      .map(([num, n]) => ({ cells: [num, n.country || "?", n.count, n.sources.size] })), "no call at the honeypot");
}

async function feeds() {
  const intel = await sw.get("/api/v1/intel");
  sw.fill(document.getElementById("feed-table"), ["Feed", "entries#", "Last success", "Last error"],
    (intel.feeds || []).map((f) => ({ cells: [f.name || f.source || "?", f.entries, sw.ago(f.last_success),
      f.last_error ? `${f.last_error} (${sw.ago(f.last_error_at)})` : "none"] })), "no feed configured");
}

async function refresh() {
  if (refreshing) return refreshing;
  refreshing = (async () => {
    try {
      const [bans, events] = await Promise.all([sw.get("/api/v1/bans"), sw.get("/api/v1/events?since=1d&limit=20000")]);
      await Promise.all([who(bans, events), what(events), feeds(), heatmap()]);
      timeline(events);
    } catch (error) {
      sw.notice(`Could not refresh: ${error.message}`);
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

function live(kind, row) {
  const list = document.getElementById("live");
  const text = `${sw.time(row.time)} ${kind} ${row.source || ""} ${row.verdict || ""} ${row.reason || ""}${row.repeated ? ` x${row.repeated}` : ""}`;
  list.prepend(sw.el("li", { class: kind }, text));
  while (list.children.length > 50) list.lastChild.remove();
  if (kind === "ban" && row.source) {
    // at once, before the refresh: the ban as the event tells it
    const tbody = document.querySelector("#bans tbody");
    if (!tbody.querySelector(`tr[data-ip="${CSS.escape(row.source)}"]`)) {
      const r = banRow({ ip: row.source, detector: row.reason, reason: row.why, created_at: row.time, expires_at: row.expires_at });
      shownBans.set(row.source, r.attrs["data-shown-at"]);
      if (tbody.querySelector("td[colspan]")) tbody.replaceChildren();
      tbody.prepend(sw.el("tr", r.attrs, ...r.cells.map((c) => sw.el("td", {}, c))));
    }
  }
  if (kind === "ban" || kind === "unban") refresh();
}

document.getElementById("ban-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const ip = document.getElementById("ban-ip").value.trim();
  try {
    await sw.ban(ip, document.getElementById("ban-for").value);
    sw.notice(`${ip} banned.`);
  } catch (error) {
    sw.notice(sw.acts ? error.message : "Log in (with the API token) to ban and unban.");
  }
  refresh();
});

(async () => {
  try { await sw.account(); } catch (error) { return; }
  sw.follow(live);
  await Promise.all([now(), refresh()]);
  setInterval(() => now().catch((error) => sw.notice(`Could not read the counters: ${error.message}`)), 2000);
  setInterval(refresh, 15000);
})();
