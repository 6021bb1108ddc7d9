// The meshpilot dashboard: draws the `state` events of /dashboard/events (see
// server/dashboard/events.py) and sends rollout commands to the same API the CLI uses.
// Every value from the server reaches the page as text (textContent), never as HTML.
"use strict";
(function () {
  const API = "/apis/meshpilot.io/v1";
  const COMMANDS = ["promote", "abort", "pause", "resume", "retry"];
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const live = document.getElementById("live");
  let cy = null;
  let shape = "";
  const cards = new Map();

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    const { dataset, ...rest } = props || {};
    Object.assign(node, rest);
    Object.assign(node.dataset, dataset || {});
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const num = (v, digits, unit) => (v === null || v === undefined) ? "-" : v.toFixed(digits) + unit;
  const splitOf = (g, id) => (g.splits[id] || []).map(
    (r) => (r.rule ? r.rule + ": " : "") + r.text).join("; ");

  // --- mesh graph ---------------------------------------------------------------------
  function elements(g) {
    const out = [];
    for (const s of g.services) {
      const split = (g.splits[s.id] || []).slice(-1)[0];
      out.push({ data: { id: s.id, kind: "service",
        label: s.name + (split ? "\n" + split.text : "") } });
    }
    for (const w of g.workloads) {
      const data = { id: w.id, kind: "workload",
        label: w.name + "\n" + (w.version || "-") + "  " + w.ready + "/" + w.pods + " ready" };
      if (w.service) data.parent = w.service;
      out.push({ data });
    }
    for (const c of g.callers) out.push({ data: { id: c.id, kind: "caller", label: c.name } });
    for (const e of g.edges) {
      out.push({ data: { id: e.id, source: e.source, target: e.target,
        label: num(e.requestRate, 1, " rps") + " · " + num(e.successRate, 1, "%") +
               " · p99 " + num(e.p99, 0, " ms") } });
    }
    return out;
  }

  function drawGraph(g) {
    const els = elements(g);
    const ids = els.map((e) => e.data.id + ">" + (e.data.parent || "")).sort().join("|");
    if (cy === null) {
      cy = cytoscape({
        container: document.getElementById("graph"),
        style: [
          { selector: "node", style: { label: "data(label)", "text-wrap": "wrap",
            "text-valign": "center", "font-size": 11, color: "#fff", shape: "round-rectangle",
            "background-color": "#2f6fd0", width: 150, height: 42 } },
          { selector: 'node[kind = "service"]', style: { "background-color": "#fff",
            "border-color": "#9fb3d1", "border-width": 1, color: "#1d2433",
            "text-max-width": 240 } },
          { selector: ":parent", style: { "text-valign": "top", "text-halign": "center",
            "background-color": "#eef3fb", "border-color": "#9fb3d1", "border-width": 1,
            color: "#1d2433", "font-size": 13, "font-weight": "bold", padding: 18 } },
          { selector: 'node[kind = "caller"]', style: { "background-color": "#5b6577",
            shape: "ellipse", width: 110 } },
          { selector: "edge", style: { label: "data(label)", "curve-style": "bezier",
            "target-arrow-shape": "triangle", width: 2, "font-size": 10,
            "line-color": "#7fa08a", "target-arrow-color": "#7fa08a",
            "text-rotation": "autorotate", "text-margin-y": -9 } },
        ],
      });
    }
    if (ids !== shape) {
      shape = ids;
      cy.elements().remove();
      cy.add(els);
      cy.layout({ name: "breadthfirst", directed: true, spacingFactor: 1.6, padding: 24,
                  animate: false }).run();
    } else {
      for (const e of els) cy.getElementById(e.data.id).data(e.data);
    }
  }

  // The canvas's text alternative: what the graph shows, for screen readers (and tests).
  function describe(g) {
    const parts = g.services.map((s) => {
      const members = g.workloads.filter((w) => w.service === s.id)
        .map((w) => w.name + " (" + (w.version || "-") + ")");
      const split = splitOf(g, s.id);
      return s.namespace + "/" + s.name + ": " + (members.join(", ") || "no workloads") +
        (split ? "; split " + split : "");
    });
    document.getElementById("graph").setAttribute("aria-label",
      "mesh graph. " + (parts.join(". ") || "no services"));
  }

  function drawTables(g) {
    const services = document.querySelector("#services tbody");
    services.replaceChildren(...g.services.map((s) => el("tr", { dataset: { service: s.id } },
      el("td", {}, s.namespace + "/" + s.name),
      el("td", { className: "split" }, splitOf(g, s.id) || "-"),
      el("td", {}, g.workloads.filter((w) => w.service === s.id)
        .map((w) => w.name + " (" + (w.version || "-") + ")").join(", ") || "-"))));
    const edges = document.querySelector("#edges tbody");
    const rows = g.edges.map((e) => el("tr", {},
      el("td", {}, e.sourceName || "unknown"), el("td", {}, e.service || "-"),
      el("td", {}, e.version || "-"), el("td", { className: "num" }, num(e.requestRate, 2, "")),
      el("td", { className: "num" }, num(e.successRate, 1, "%")),
      el("td", { className: "num" }, num(e.p99, 1, " ms"))));
    edges.replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colSpan: 6, className: "empty" }, "No requests in the last minute."))]));
  }

  // --- rollouts -----------------------------------------------------------------------
  // the built-in checks' units, as `meshpilot rollout status` shows them
  const unit = (name) => ({ "request-success-rate": "%", "request-duration": " ms" })[name] || "";
  const value = (v, u) => (v === null || v === undefined) ? "-" : (+v).toPrecision(4) + u;

  function threshold(c) {
    const parts = [];
    if (c.min !== null && c.min !== undefined) parts.push(">= " + c.min + unit(c.name));
    if (c.max !== null && c.max !== undefined) parts.push("<= " + c.max + unit(c.name));
    return parts.join(" and ") || "-";
  }

  async function command(r, cmd, result) {
    if (!window.confirm(cmd + " the rollout of " + r.namespace + "/" + r.name + "?")) return;
    result.textContent = cmd + "…";
    const path = API + "/namespaces/" + encodeURIComponent(r.namespace) + "/rollouts/" +
      encodeURIComponent(r.name) + "/" + cmd;
    try {
      const response = await fetch(path, { method: "POST", credentials: "same-origin",
        headers: { "X-Meshpilot-CSRF": csrf } });
      const body = await response.json();
      result.textContent = response.ok
        ? cmd + " accepted: phase " + body.rollout.phase + ", canary " + body.rollout.canaryWeight + "%"
        : cmd + " refused: " + body.message;
    } catch (err) {
      result.textContent = cmd + " failed: " + err;
    }
  }

  function card(r) {
    const key = r.namespace + "/" + r.name;
    let c = cards.get(key);
    if (c) return c;
    const result = el("p", { className: "result", role: "status" });
    c = { phase: el("span", { className: "phase" }), bar: el("progress", { max: 100 }),
          weights: el("span"), checks: el("tbody"), events: el("ol", { className: "events" }),
          result, rollout: r };
    const buttons = COMMANDS.map((cmd) => {
      const b = el("button", { type: "button" }, cmd);
      b.addEventListener("click", () => command(c.rollout, cmd, result));
      return b;
    });
    c.node = el("article", { className: "rollout", dataset: { rollout: key } },
      el("h3", {}, key, c.phase),
      el("div", { className: "weights" }, c.bar, c.weights),
      el("table", {}, el("thead", {}, el("tr", {}, ...["Check", "Value", "Threshold",
        "Verdict", "Requests"].map((h) => el("th", {}, h)))), c.checks),
      c.events, el("div", { className: "actions" }, ...buttons), result);
    cards.set(key, c);
    return c;
  }

  function drawRollouts(rollouts) {
    const list = document.getElementById("rollout-list");
    if (!rollouts.length) {
      list.replaceChildren(el("p", { className: "empty" }, "No Canaries."));
      cards.clear();
      return;
    }
    const nodes = rollouts.map((r) => {
      const c = card(r);
      c.rollout = r;
      c.phase.textContent = r.phase + (r.paused ? " (paused)" : "");
      c.phase.className = "phase " + r.phase + (r.paused ? " paused" : "");
      c.bar.value = r.canaryWeight;
      c.weights.textContent = "canary " + r.canaryWeight + "% · primary " + r.primaryWeight +
        "% · " + (r.strategy === "canary" ? "step " + r.step + "/" + r.steps : r.strategy);
      c.checks.replaceChildren(...(r.checks.length ? r.checks.map((k) => el("tr", {},
        el("td", {}, k.name), el("td", { className: "num" }, value(k.value, unit(k.name))),
        el("td", {}, threshold(k)),
        el("td", { className: "verdict-" + k.verdict }, k.verdict || "-"),
        el("td", { className: "num" }, k.samples === null || k.samples === undefined ? "-" : k.samples)))
        : [el("tr", {}, el("td", { colSpan: 5, className: "empty" }, "No checks run yet."))]));
      c.events.replaceChildren(...(r.events || []).slice(-5).map((e) =>
        el("li", {}, e.time + "  " + e.message)));
      return c.node;
    });
    list.replaceChildren(...nodes);
  }

  // --- proxies ------------------------------------------------------------------------
  const XDS = [["CDS", "Cluster"], ["EDS", "ClusterLoadAssignment"], ["LDS", "Listener"],
               ["RDS", "RouteConfiguration"], ["SDS", "Secret"]];

  function xdsCell(t) {
    if (!t) return el("td", {}, "-");
    if (t.nack) return el("td", { className: "nack", title: t.nack }, "NACK");
    return el("td", { className: "num" }, t.acked || "-");
  }

  function drawProxies(proxies) {
    const rows = proxies.map((p) => {
      const mesh = !p.connected ? "disconnected"
        : p.meshVersion >= p.latestVersion ? p.meshVersion + " (synced)"
        : p.meshVersion + " of " + p.latestVersion;
      const row = el("tr", { dataset: { proxy: p.name } },
        el("td", {}, p.name), el("td", {}, p.kind), el("td", {}, p.namespace),
        el("td", { className: p.refused ? "nack" : "", title: p.refused }, mesh),
        ...XDS.map(([, type]) => xdsCell(p.types[type])));
      return row;
    });
    document.querySelector("#proxy-table tbody").replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colSpan: 9, className: "empty" }, "No proxies connected."))]));
  }

  // --- the live feed ------------------------------------------------------------------
  const source = new EventSource("/dashboard/events");
  source.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  source.onerror = () => { live.textContent = "reconnecting…"; live.className = "live"; };
  source.addEventListener("state", (event) => {
    const state = JSON.parse(event.data);
    drawGraph(state.graph);
    describe(state.graph);
    drawTables(state.graph);
    drawRollouts(state.rollouts);
    drawProxies(state.proxies);
    document.body.dataset.updated = String(Date.now());
  });
})();
