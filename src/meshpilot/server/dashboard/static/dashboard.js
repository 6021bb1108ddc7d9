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
    // mirrored copies: a dashed arrow from the Service to the version that gets them
    for (const s of g.services) {
      for (const rule of g.splits[s.id] || []) {
        const m = rule.mirror;
        const to = m && g.workloads.find((w) => w.service === s.id && w.version === m.subset);
        if (to) out.push({ data: { id: "mirror:" + s.id + ">" + to.id, source: s.id,
          target: to.id, kind: "mirror", label: "mirror " + m.percent + "%" } });
      }
    }
    for (const e of g.edges) {
      out.push({ data: { id: e.id, source: e.source, target: e.target,
        label: num(e.requestRate, 1, " rps") + " · " + num(e.successRate, 1, "%") +
               " · p99 " + num(e.p99, 0, " ms") } });
    }
    return out;
  }

  function drawGraph(g) {
    const els = elements(g);
    // what the dashed arrows point at, readable without the canvas
    document.getElementById("graph").dataset.mirrors = els
      .filter((e) => e.data.kind === "mirror").map((e) => e.data.target).join(" ");
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
          { selector: 'edge[kind = "mirror"]', style: { "line-style": "dashed",
            "line-color": "#b7791f", "target-arrow-color": "#b7791f" } },
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

  // a Canary's card is keyed NS/NAME, an Argo Rollout's Rollout:NS/NAME
  const keyOf = (r) => (r.kind === "Rollout" ? "Rollout:" : "") + r.namespace + "/" + r.name;

  function card(r) {
    const key = keyOf(r);
    let c = cards.get(key);
    if (c) return c;
    const result = el("p", { className: "result", role: "status" });
    c = { phase: el("span", { className: "phase" }), bar: el("progress", { max: 100 }),
          weights: el("span"), checks: el("tbody"), events: el("ol", { className: "events" }),
          charts: el("div", { className: "charts" }), plots: new Map(),
          history: el("tbody"), result, rollout: r };
    const buttons = COMMANDS.map((cmd) => {
      const b = el("button", { type: "button" }, cmd);
      b.addEventListener("click", () => command(c.rollout, cmd, result));
      return b;
    });
    c.node = el("article", { className: "rollout", dataset: { rollout: key } },
      el("h3", {}, key, c.phase),
      el("div", { className: "weights" }, c.bar, c.weights),
      el("table", { className: "checks" }, el("thead", {}, el("tr", {}, ...["Check", "Value", "Threshold",
        "Verdict", "Requests"].map((h) => el("th", {}, h)))), c.checks),
      c.charts, c.events, el("div", { className: "actions" }, ...buttons), result,
      el("details", { className: "history" }, el("summary", {}, "Revision history"),
        el("table", {}, el("thead", {}, el("tr", {}, ...["Revision", "Outcome", "Reason",
          "Started", "Finished"].map((h) => el("th", {}, h)))), c.history)));
    cards.set(key, c);
    return c;
  }

  // Each check's value per analysis run of the rollout under way, against its threshold:
  // one small uPlot chart per check; its text alternative lists the same numbers.
  function series(r, name) {
    return (r.checkHistory || []).map((p) => {
      const k = (p.checks || []).find((x) => x.name === name);
      return k && k.value !== null && k.value !== undefined ? +k.value : null;
    });
  }

  function drawCharts(c, r) {
    const names = (r.metrics || []).map((m) => m.name);
    const seen = new Set();
    for (const m of r.metrics || []) {
      const values = series(r, m.name);
      const limit = m.min !== null && m.min !== undefined ? m.min : m.max;
      const label = m.name + " per analysis run: " + (values.length
        ? values.map((v) => value(v, unit(m.name))).join(", ") : "none yet") +
        " (threshold " + threshold(m) + ")";
      seen.add(m.name);
      let plot = c.plots.get(m.name);
      if (!plot) {
        const box = el("figure", { className: "chart", dataset: { check: m.name } });
        c.charts.append(box);
        plot = { box, chart: null };
        c.plots.set(m.name, plot);
      }
      plot.box.setAttribute("aria-label", label);
      const xs = values.map((_, i) => i + 1);
      const data = [xs, values, xs.map(() => (limit === null || limit === undefined) ? null : +limit)];
      if (typeof uPlot === "undefined") continue;
      if (plot.chart === null) {
        plot.chart = new uPlot({
          width: 300, height: 130, title: m.name, legend: { show: false },
          scales: { x: { time: false } },
          axes: [{ label: "run" }, { size: 50 }],
          series: [{ label: "run" }, { label: m.name, stroke: "#2f6fd0", width: 2,
            points: { show: true } },
            { label: "threshold", stroke: "#c23b32", dash: [4, 4], width: 1,
              points: { show: false } }],
        }, data, plot.box);
      } else {
        plot.chart.setData(data);
      }
    }
    for (const [name, plot] of c.plots) {
      if (!seen.has(name) || !names.includes(name)) {
        if (plot.chart) plot.chart.destroy();
        plot.box.remove();
        c.plots.delete(name);
      }
    }
  }

  function drawRollouts(rollouts) {
    const list = document.getElementById("rollout-list");
    if (!rollouts.length) {
      list.replaceChildren(el("p", { className: "empty" }, "No Canaries or Rollouts."));
      cards.clear();
      return;
    }
    const nodes = rollouts.map((r) => {
      const c = card(r);
      c.rollout = r;
      c.phase.textContent = (r.argoPhase || r.phase) + (r.paused ? " (paused)" : "");
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
      drawCharts(c, r);
      c.history.replaceChildren(...((r.history || []).length ? r.history.slice().reverse()
        .map((h) => el("tr", { className: "outcome-" + h.outcome },
          el("td", {}, (h.revision || "-").slice(0, 12)), el("td", {}, h.outcome),
          el("td", {}, h.reason || "-"), el("td", {}, h.started), el("td", {}, h.finished)))
        : [el("tr", {}, el("td", { colSpan: 5, className: "empty" }, "No finished rollouts."))]));
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
      const row = el("tr", { dataset: { proxy: p.name },
        className: p.name === shownProxy ? "selected" : "", onclick: () => showProxy(p.name) },
        el("td", {}, p.name), el("td", {}, p.kind), el("td", {}, p.namespace),
        el("td", { className: p.refused ? "nack" : "", title: p.refused }, mesh),
        ...XDS.map(([, type]) => xdsCell(p.types[type])));
      return row;
    });
    document.querySelector("#proxy-table tbody").replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colSpan: 9, className: "empty" }, "No proxies connected."))]));
    const nacks = [];
    for (const p of proxies.filter((x) => x.connected)) {  // a gone proxy's NACK is history
      if (p.refused) nacks.push(el("li", {}, p.name + ": config refused by the control plane: " + p.refused));
      for (const [, type] of XDS) {
        const n = (p.types[type] || {}).nack;
        if (n) nacks.push(el("li", { dataset: { proxy: p.name, type } },
          p.name + " NACKed " + type + ": " + n));
      }
    }
    document.getElementById("nacks").replaceChildren(...(nacks.length
      ? [el("h3", {}, "Refused config"), el("ul", { className: "nack-list" }, ...nacks)] : []));
  }

  const PROXY_CONFIG = ["routes", "clusters", "listeners", "endpoints", "secret"];
  let shownProxy = null;

  async function showProxy(name, type) {
    shownProxy = name;
    type = type || "routes";
    for (const tr of document.querySelectorAll("#proxy-table tbody tr")) {
      tr.classList.toggle("selected", tr.dataset.proxy === name);
    }
    const panel = document.getElementById("proxy-config");
    panel.hidden = false;
    document.getElementById("proxy-config-title").textContent = "Config of " + name;
    panel.querySelector(".tabs").replaceChildren(...PROXY_CONFIG.map((t) => {
      const b = el("button", { type: "button", onclick: () => showProxy(name, t) }, t);
      b.setAttribute("aria-pressed", String(t === type));
      return b;
    }));
    const body = document.getElementById("proxy-config-body");
    body.textContent = "loading " + type + "…";
    try {
      const response = await fetch(API + "/proxies/" + encodeURIComponent(name) + "/config/" +
        type, { credentials: "same-origin" });
      const data = await response.json();
      body.textContent = response.ok ? JSON.stringify(data.items, null, 2)
        : "not available: " + data.message;
    } catch (err) {
      body.textContent = "not available: " + err;
    }
  }

  // --- config: objects, findings, apply -------------------------------------------------
  let configRevision = -1;
  let configObjects = [];
  let configTimer = null;

  const finding = (f) => (f.severity + " " + f.code + (f.path ? " " + f.path + ":" : "") +
    " " + f.message);

  function drawConfig() {
    const rows = configObjects.filter((o) => shows(o.namespace)).map((o) => {
      const worst = o.findings.some((f) => f.severity === "error") ? "has-error"
        : o.findings.length ? "has-warning" : "";
      return el("tr", { className: worst, dataset: { object: o.kind + "/" + o.namespace + "/" + o.name } },
        el("td", {}, o.kind), el("td", {}, o.namespace || "-"), el("td", {}, o.name),
        el("td", {}, ...(o.findings.length ? o.findings.map((f) =>
          el("span", { className: "finding " + f.severity }, finding(f))) : ["-"])));
    });
    document.querySelector("#config-table tbody").replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colSpan: 4, className: "empty" }, "No objects."))]));
  }

  async function loadConfig() {
    configTimer = null;
    try {
      const response = await fetch("/dashboard/config", { credentials: "same-origin" });
      if (!response.ok) return;
      const data = await response.json();
      configRevision = data.revision;
      configObjects = data.objects;
      namespaces.config = new Set(configObjects.map((o) => o.namespace).filter(Boolean));
      fillNamespaces();
      drawConfig();
    } catch (err) {
      /* the next state event asks again */
    }
  }

  function configChanged(revision) {
    if (revision !== configRevision && configTimer === null) {
      configTimer = window.setTimeout(loadConfig, 500);
    }
  }

  function resultLine(r, dryRun) {
    return el("li", { className: "ok" }, r.kind + " " + (r.namespace ? r.namespace + "/" : "") +
      r.name + " " + r.action + (dryRun ? " (dry run)" : ""));
  }

  function diagnosticLine(d) {
    const where = d.file ? d.file + (d.line ? ":" + d.line + (d.column ? ":" + d.column : "") : "") + ": " : "";
    return el("li", { className: d.severity === "error" ? "error" : "warning" },
      where + d.severity + " " + d.code + (d.object ? " [" + d.object + "]" : "") +
      (d.path ? " " + d.path + ":" : "") + " " + d.message);
  }

  async function applyYaml(dryRun) {
    const out = document.getElementById("apply-result");
    out.replaceChildren(el("li", {}, dryRun ? "checking…" : "applying…"));
    try {
      const response = await fetch(API + "/apply", { method: "POST", credentials: "same-origin",
        headers: { "content-type": "application/json", "X-Meshpilot-CSRF": csrf },
        body: JSON.stringify({ sources: [{ file: "dashboard.yaml",
          text: document.getElementById("apply-text").value }], dryRun }) });
      const body = await response.json();
      const lines = [...(body.results || []).map((r) => resultLine(r, dryRun)),
                     ...(body.diagnostics || []).map(diagnosticLine)];
      if (!response.ok) lines.unshift(el("li", { className: "error" },
        "refused (" + response.status + "): nothing was changed"));
      if (!lines.length) lines.push(el("li", {}, body.message || "nothing to apply"));
      out.replaceChildren(...lines);
    } catch (err) {
      out.replaceChildren(el("li", { className: "error" }, "failed: " + err));
    }
  }
  document.getElementById("apply").addEventListener("click", () => applyYaml(false));
  document.getElementById("apply-dry-run").addEventListener("click", () => applyYaml(true));

  // --- namespace filter and sign-out ------------------------------------------------------
  const namespaces = { state: new Set(), config: new Set() };
  const filter = document.getElementById("namespace");
  const shows = (ns) => !filter.value || ns === filter.value;

  function fillNamespaces() {
    const all = [...new Set([...namespaces.state, ...namespaces.config])].sort();
    const have = [...filter.options].slice(1).map((o) => o.value);
    if (all.join("|") === have.join("|")) return;
    const chosen = filter.value;
    filter.replaceChildren(el("option", { value: "" }, "all namespaces"),
      ...all.map((ns) => el("option", { value: ns }, ns)));
    filter.value = all.includes(chosen) ? chosen : "";
  }

  function filtered(state) {
    const g = state.graph;
    const services = g.services.filter((s) => shows(s.namespace));
    const workloads = g.workloads.filter((w) => shows(w.namespace));
    const kept = new Set(workloads.map((w) => w.id));
    const edges = g.edges.filter((e) => kept.has(e.target));
    const callers = g.callers.filter((c) => edges.some((e) => e.source === c.id));
    return { graph: { ...g, services, workloads, edges, callers },
             rollouts: state.rollouts.filter((r) => shows(r.namespace)),
             proxies: state.proxies.filter((p) => shows(p.namespace)) };
  }

  document.getElementById("sign-out").addEventListener("click", async () => {
    await fetch("/dashboard/logout", { method: "POST", credentials: "same-origin",
      headers: { "X-Meshpilot-CSRF": csrf } });
    source.close();
    window.location.assign("/dashboard/");
  });

  // --- the live feed ------------------------------------------------------------------
  const source = new EventSource("/dashboard/events");
  source.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  source.onerror = () => { live.textContent = "reconnecting…"; live.className = "live"; };
  let last = null;

  function draw() {
    const view = filtered(last);
    drawGraph(view.graph);
    describe(view.graph);
    drawTables(view.graph);
    drawRollouts(view.rollouts);
    drawProxies(view.proxies);
    drawConfig();
    document.body.dataset.updated = String(Date.now());
  }

  filter.addEventListener("change", () => { if (last) draw(); else drawConfig(); });
  source.addEventListener("state", (event) => {
    last = JSON.parse(event.data);
    const g = last.graph;
    namespaces.state = new Set([...g.services.map((s) => s.namespace),
      ...g.workloads.map((w) => w.namespace), ...last.rollouts.map((r) => r.namespace),
      ...last.proxies.map((p) => p.namespace)].filter(Boolean));
    fillNamespaces();
    draw();
    configChanged(last.revision);
  });
})();
