/* One source's story: its ban and the evidence, its history, its country
   and the feeds that list it, what deception gave it, its flows and events;
   ban or unban it. */
"use strict";

const ip = decodeURIComponent(location.pathname.replace(/^\/source\//, ""));
let reading = null;

function evidence(list) {
  return sw.el("ul", { class: "evidence" }, ...(list || []).map((line) => sw.el("li", {}, line)));
}

async function story() {
  const [shown, found, flows, events] = await Promise.all([
    sw.get("/api/v1/bans/" + encodeURIComponent(ip)),
    ip.includes("/") ? Promise.resolve(null) : sw.get("/api/v1/intel/lookup/" + encodeURIComponent(ip)),
    sw.get("/api/v1/flows?since=7d&limit=500&source=" + encodeURIComponent(ip)),
    sw.get("/api/v1/events?since=7d&limit=500&source=" + encodeURIComponent(ip)),
  ]);
  document.getElementById("source-title").textContent = `Source ${ip}`;
  document.title = `${ip} - sipwarden`;
  const ban = shown.ban;
  document.getElementById("summary").textContent = shown.banned
    ? `Banned: ${ban.detector} (${ban.reason}), until ${ban.expires_at ? sw.time(ban.expires_at) : "ever"}.`
    : shown.allowed ? "Allowed (on the allow list): never banned." : "Not banned.";
  document.getElementById("actions").replaceChildren(sw.banButton(ip, shown.banned, read));
  document.getElementById("ban").replaceChildren(...(shown.banned
    ? [sw.el("p", {}, `${ban.detector}: ${ban.reason}, since ${sw.time(ban.created_at)}, offence ${ban.offence}.`),
      sw.el("h4", {}, "Evidence"), evidence(ban.evidence)]
    : [sw.el("p", {}, "No ban in force.")]));
  sw.fill(document.getElementById("history"), ["From", "Until", "Ended", "Why", "Evidence"],
    (shown.history || []).slice().reverse().map((h) => ({ cells: [sw.time(h.created_at),
      h.expires_at ? sw.time(h.expires_at) : "permanent", h.ended_at ? sw.time(h.ended_at) : "-",
      `${h.detector}: ${h.reason}`, evidence(h.evidence)] })), "never banned");
  const intel = document.getElementById("intel");
  if (found) {
    intel.replaceChildren(
      sw.el("p", {}, `Country: ${found.country || "unknown"}`),
      sw.el("p", {}, (found.listed || []).length ? "Listed by:" : "Listed by no feed."),
      sw.el("ul", {}, ...(found.listed || []).map((l) => sw.el("li", {}, typeof l === "string" ? l : `${l.feed || l.name || "?"} since ${sw.time(l.since)}`))));
  }
  // deception's answers by kind, then the numbers it dialled into the honeypot
  const deceived = shown.deceived || { answers: {}, calls: [] };
  sw.fill(document.getElementById("deceived"), ["Answer or number dialled", "Country", "count#", "Last"],
    [...Object.entries(deceived.answers || {}).map(([kind, a]) => ({ cells: [kind, "", a.count, sw.time(a.last)] })),
      ...(deceived.calls || []).map((c) => ({ cells: [`dialled ${c.number}`, c.country || "?", c.count, sw.time(c.last_seen)] }))],
    "never deceived");
  sw.fill(document.getElementById("flows"), ["Port", "To", "Transport", "First", "Last", "packets#", "Verdicts"],
    flows.map((f) => ({ cells: [f.source_port ?? "kernel", `${f.destination}:${f.destination_port ?? ""}`, f.transport,
      sw.time(f.first_seen), sw.time(f.last_seen), f.packets,
      Object.entries(f.verdicts || {}).map(([r, n]) => `${r} ${n}`).join(", ") || "passed"] })), "no flow");
  sw.fill(document.getElementById("events"), ["When", "Kind", "Reason", "Detail"],
    events.slice().reverse().map((e) => ({ cells: [sw.time(e.time), e.kind, e.reason || "",
      [e.verdict, e.why, e.account, e.user_agent, e.repeated ? `x${e.repeated}` : null].filter(Boolean).join(" ")] })), "no event");
}

function read() {
  if (!reading) reading = story().catch((error) => sw.notice(`Could not read: ${error.message}`)).finally(() => { reading = null; });
  return reading;
}

(async () => {
  try { await sw.account(); } catch (error) { return; }
  await read();
  sw.follow((kind, row) => { if (row.source === ip && kind !== "verdict") read(); });
})();
