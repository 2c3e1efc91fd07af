/* sipwarden's dashboard: what both pages share. Everything shown is put in
   with textContent (never as HTML), so no string from the network can run. */
"use strict";

const sw = {
  acts: false, // whether this browser may ban and unban (the token's session)

  async get(path) {
    const answer = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (answer.redirected || answer.status === 401) { location.assign("/login"); throw new Error("log in"); }
    if (!answer.ok) throw new Error(`${path}: ${answer.status}`);
    return answer.json();
  },

  /* A change: the browser adds this page's Origin, the session cookie goes with it. */
  async change(method, path, body) {
    const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const answer = await fetch(path, options);
    const data = await answer.json().catch(() => ({}));
    if (!answer.ok) throw new Error(data.error || `${method} ${path}: ${answer.status}`);
    return data;
  },

  ban(ip, duration) {
    const body = duration === "permanent" ? { ip, permanent: true, reason: "banned from the dashboard" }
      : { ip, for: duration, reason: "banned from the dashboard" };
    return sw.change("POST", "/api/v1/bans", body);
  },

  unban(ip) {
    return sw.change("DELETE", "/api/v1/bans/" + encodeURIComponent(ip));
  },

  el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "onclick") node.addEventListener("click", value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  },

  /* A table from a header row and rows of cells (strings or nodes). */
  fill(table, head, rows, empty) {
    const caption = table.querySelector("caption");
    table.replaceChildren();
    if (caption) table.append(caption);
    const thead = sw.el("thead", {}, sw.el("tr", {}, ...head.map((h) => sw.el("th", { scope: "col", class: h.endsWith("#") ? "num" : null }, h.replace(/#$/, "")))));
    const tbody = sw.el("tbody");
    for (const row of rows) {
      tbody.append(sw.el("tr", row.attrs || {}, ...row.cells.map((c, i) => sw.el("td", { class: head[i].endsWith("#") ? "num" : null }, c))));
    }
    if (!rows.length) tbody.append(sw.el("tr", {}, sw.el("td", { colspan: head.length }, empty || "nothing yet")));
    table.append(thead, tbody);
  },

  time(epoch) {
    if (epoch === null || epoch === undefined) return "never";
    const d = new Date(epoch * 1000);
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  },

  ago(epoch) {
    if (epoch === null || epoch === undefined) return "never";
    const s = Math.max(0, Date.now() / 1000 - epoch);
    if (s < 90) return `${Math.round(s)} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 129600) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} d ago`;
  },

  sourceLink(ip) {
    return sw.el("a", { href: "/source/" + encodeURIComponent(ip) }, ip);
  },

  /* The tool a fingerprint rule names: scan.sipvicious-tag -> sipvicious. */
  tool(reason) {
    const m = /^(?:scan|ua)\.([a-z0-9]+)/.exec(reason || "");
    if (m && ["empty", "digest"].includes(m[1])) return null;
    return m ? m[1] : null;
  },

  notice(text) {
    document.getElementById("notice").textContent = text;
  },

  /* Who this browser is: the log-in link or the log-out button. */
  async account() {
    const me = await sw.get("/api/v1/session");
    sw.acts = me.acts;
    const box = document.getElementById("account");
    if (me.acts) {
      box.replaceChildren(sw.el("form", { method: "post", action: "/logout" }, sw.el("button", { type: "submit" }, "Log out")));
    } else {
      box.replaceChildren(sw.el("a", { href: "/login" }, "Log in to ban and unban"));
    }
  },

  /* The live event stream; ``onEvent(kind, row)`` for each event. */
  follow(onEvent) {
    const stream = new EventSource("/api/v1/events/stream");
    for (const kind of ["verdict", "ban", "unban", "login-failed", "feed", "finding", "health", "deception", "would-ban"]) {
      stream.addEventListener(kind, (message) => onEvent(kind, JSON.parse(message.data)));
    }
    stream.onerror = () => sw.notice("The live stream is interrupted; reconnecting...");
    stream.onopen = () => sw.notice("");
    return stream;
  },

  banButton(ip, banned, after) {
    if (!sw.acts) return sw.el("a", { href: "/login" }, banned ? "log in to unban" : "log in to ban");
    const label = banned ? `Unban ${ip}` : `Ban ${ip} for a day`;
    return sw.el("button", {
      type: "button", class: banned ? "unban" : null, "aria-label": label, "data-action": banned ? "unban" : "ban", "data-ip": ip,
      onclick: async (event) => {
        event.target.disabled = true;
        try {
          await (banned ? sw.unban(ip) : sw.ban(ip, "1d"));
          sw.notice(banned ? `${ip} unbanned.` : `${ip} banned for a day.`);
        } catch (error) {
          sw.notice(error.message);
        }
        event.target.disabled = false;
        if (after) after();
      },
    }, banned ? "Unban" : "Ban");
  },
};
