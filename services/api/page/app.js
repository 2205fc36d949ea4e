// storemon's page: request reports and watch them complete, list, download and delete
// them, look a store up, and the operations figures of /metrics. Only the API's public
// routes, with the token of the field (sessionStorage) as "Authorization: Bearer ...".
"use strict";

(function () {
  const {h, api, apiJson, errorOf, ApiError, formatTime, formatSeconds, show} = window.storemon;
  const $ = (id) => document.getElementById(id);

  const POLL_INTERVAL_MS = 500;
  const METRICS_INTERVAL_MS = 5000;
  const LIST_WHILE_RUNNING_MS = 2000;
  const FINAL = new Set(["Complete", "Failed"]);
  const FIGURES = [
    ["Uptime", "uptime_last_hour", "uptime_last_day", "uptime_last_week"],
    ["Downtime", "downtime_last_hour", "downtime_last_day", "downtime_last_week"],
  ];

  const sleep = (ms, signal) => new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    if (signal) {
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(new DOMException("aborted", "AbortError"));
      }, {once: true});
    }
  });
  const isAbort = (error) => error && error.name === "AbortError";
  const messageOf = (error) => (error && error.message) || String(error);
  const reportPath = (id) => "/reports/" + encodeURIComponent(id);

  function statusBadge(status) {
    return h("span", {className: "status status-" + String(status || "").toLowerCase()}, status || "");
  }

  function duration(report) {
    if (!report.requested_at || !report.finished_at) return null;
    const started = Date.parse(report.requested_at);
    const ended = Date.parse(report.finished_at);
    return isFinite(started) && isFinite(ended) ? (ended - started) / 1000 : null;
  }

  // --- Token ------------------------------------------------------------------------------

  function showTokenState() {
    const set = Boolean(window.storemon.token());
    $("token-state").textContent = set ? "token set" : "no token";
    $("token").value = set ? window.storemon.token() : "";
  }

  function onTokenChange() {
    showTokenState();
    refreshReports();
    refreshMetrics();
  }

  // --- Server-Sent Events, read with fetch() (EventSource cannot send Authorization) -------

  // A parser of the event-stream format: push() text as it comes, end() at the stream's end;
  // onEvent({event, data, id}) for each event dispatched. Lines starting with ":" are
  // comments (keep-alives).
  function eventStreamParser(onEvent) {
    let buffer = "";
    let first = true;
    let data = [];
    let type = "";
    let lastId = "";

    function line(text) {
      if (text === "") {
        if (data.length) onEvent({event: type || "message", data: data.join("\n"), id: lastId});
        data = [];
        type = "";
        return;
      }
      if (text.startsWith(":")) return;
      const colon = text.indexOf(":");
      const field = colon < 0 ? text : text.slice(0, colon);
      let value = colon < 0 ? "" : text.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "event") type = value;
      else if (field === "id" && !value.includes("\0")) lastId = value;
      // retry and unknown fields: nothing to do here.
    }

    function push(chunk) {
      buffer += chunk;
      if (first && buffer.length) {
        if (buffer.charCodeAt(0) === 0xfeff) buffer = buffer.slice(1);
        first = false;
      }
      const terminator = /\r\n|\r|\n/g;
      let start = 0;
      let match;
      while ((match = terminator.exec(buffer)) !== null) {
        // A "\r" last in the buffer may be the first half of "\r\n": wait for more.
        if (match[0] === "\r" && match.index === buffer.length - 1) break;
        line(buffer.slice(start, match.index));
        start = match.index + match[0].length;
      }
      buffer = buffer.slice(start);
    }

    function end() {
      if (buffer.endsWith("\r")) line(buffer.slice(0, -1));
      buffer = "";
      // An event not ended by a blank line is dropped, as the format says.
    }

    return {push, end};
  }

  // Follows GET /reports/{id}/events until a Complete or Failed event. Answers "done",
  // "absent" (404: the route is not there, or the report is unknown; polling tells which),
  // or "ended" (the stream stopped before a final status).
  async function followEvents(reportId, signal, onStatus) {
    let response;
    try {
      response = await fetch(reportPath(reportId) + "/events", {
        headers: window.storemon.headers({Accept: "text/event-stream"}),
        cache: "no-store",
        signal,
      });
    } catch (error) {
      if (isAbort(error)) throw error;
      return "ended";
    }
    if (response.status === 404) return "absent";
    if (!response.ok) throw await errorOf(response);
    const type = response.headers.get("Content-Type") || "";
    if (!response.body || !type.startsWith("text/event-stream")) return "absent";
    let finished = false;
    let failure = null;
    const parser = eventStreamParser((event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      if (event.event === "error" && data && data.error) {
        // The stream's own end with an error (e.g. the report deleted meanwhile).
        failure = new ApiError(0, data.error.code || "", data.error.message || "error", data);
        finished = true;
        return;
      }
      if (event.event !== "status" && event.event !== "message") return;
      onStatus(data, "live: events");
      if (FINAL.has(data.status)) finished = true;
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      while (!finished) {
        const {value, done} = await reader.read();
        if (done) {
          parser.end();
          break;
        }
        parser.push(value);
      }
    } catch (error) {
      if (isAbort(error)) throw error;
      return "ended";
    } finally {
      reader.cancel().catch(() => {});
    }
    if (failure) throw failure;
    return finished ? "done" : "ended";
  }

  // Polls GET /get_report (as JSON) every 500 ms until the report is Complete or Failed.
  async function pollStatus(reportId, signal, onStatus, onTransient) {
    for (;;) {
      try {
        const status = await apiJson("/get_report?report_id=" + encodeURIComponent(reportId), {signal});
        onStatus(status, "polling every 0.5 s");
        if (FINAL.has(status.status)) return;
      } catch (error) {
        // 503 (database or broker away): say so and keep polling; anything else ends it.
        if (!(error instanceof ApiError) || (error.status !== 503 && error.status !== 0)) throw error;
        onTransient(error);
      }
      await sleep(POLL_INTERVAL_MS, signal);
    }
  }

  // --- The report being watched ---------------------------------------------------------------

  let watching = null;

  function detail(list, name, value) {
    if (value === undefined || value === null || value === "") return;
    list.append(h("dt", {}, name), h("dd", {}, value));
  }

  function showWatched(status, via) {
    $("watch").hidden = false;
    $("watch-id").textContent = status.report_id || (watching && watching.id) || "";
    const badge = $("watch-status");
    badge.className = "status status-" + String(status.status || "").toLowerCase();
    badge.textContent = status.status || "";
    badge.dataset.status = status.status || "";
    $("watch-via").textContent = via || "";
    const list = $("watch-details");
    list.replaceChildren();
    detail(list, "Rows", status.rows);
    detail(list, "As of", formatTime(status.as_of));
    detail(list, "Requested", formatTime(status.requested_at));
    const seconds = duration(status);
    detail(list, "Duration", seconds === null ? null : formatSeconds(seconds));
    detail(list, "Size", status.bytes === undefined ? null : status.bytes + " bytes");
    detail(list, "SHA-256", status.checksum_sha256);
    show($("watch-error"), status.status === "Failed" ? "Failed: " + (status.error || "") : "");
    $("watch-download").hidden = status.status !== "Complete";
  }

  async function watch(reportId) {
    if (watching) watching.controller.abort();
    const controller = new AbortController();
    const current = {id: reportId, controller};
    watching = current;
    showWatched({report_id: reportId, status: "Running"}, "");
    const onStatus = (status, via) => {
      if (watching !== current) return;
      show($("watch-error"), "");
      showWatched(status, via);
    };
    const onTransient = (error) => show($("watch-error"), error.message + " (still polling)");
    try {
      const outcome = await followEvents(reportId, controller.signal, onStatus);
      if (outcome !== "done") await pollStatus(reportId, controller.signal, onStatus, onTransient);
    } catch (error) {
      if (isAbort(error)) return;
      if (watching === current) {
        $("watch-via").textContent = "";
        show($("watch-error"), messageOf(error));
      }
      return;
    }
    if (watching === current) refreshReports();
  }

  async function trigger(event) {
    event.preventDefault();
    show($("trigger-error"), "");
    const body = {};
    const asOf = $("as-of").value.trim();
    if (asOf) body.as_of = asOf;
    const storeIds = $("store-ids").value.split(/[\s,]+/).filter(Boolean);
    if (storeIds.length) body.store_ids = storeIds;
    const button = $("trigger");
    button.disabled = true;
    try {
      const answer = await apiJson("/trigger_report", {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify(body),
      });
      refreshReports();
      watch(answer.report_id);
    } catch (error) {
      show($("trigger-error"), messageOf(error));
    } finally {
      button.disabled = false;
    }
  }

  // --- Downloads --------------------------------------------------------------------------

  // The CSV fetched with the token, saved through a Blob URL (a plain link would not send it).
  async function download(reportId, onError) {
    try {
      const response = await api(reportPath(reportId) + ".csv", {headers: {Accept: "text/csv"}});
      const disposition = response.headers.get("Content-Disposition") || "";
      const named = /filename="([^"]+)"/.exec(disposition);
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      const link = h("a", {href: url, download: named ? named[1] : "storemon-report-" + reportId + ".csv"});
      link.hidden = true;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (error) {
      onError(messageOf(error));
    }
  }

  // --- The list of reports ----------------------------------------------------------------

  let listTimer = null;
  let listGeneration = 0;

  function confirmingButton(label, confirmLabel, action) {
    let armed = null;
    const button = h("button", {type: "button", className: "quiet danger"}, label);
    button.addEventListener("click", () => {
      if (!armed) {
        button.textContent = confirmLabel;
        button.classList.add("armed");
        armed = setTimeout(() => {
          armed = null;
          button.textContent = label;
          button.classList.remove("armed");
        }, 5000);
        return;
      }
      clearTimeout(armed);
      armed = null;
      action(button);
    });
    return button;
  }

  function reportRow(report) {
    const id = report.report_id;
    const request = report.request || {};
    const stores = request.store_ids_count === undefined ? "all" : String(request.store_ids_count);
    const actions = h("td", {className: "row-actions"});
    if (report.status === "Complete") {
      actions.append(h("button", {type: "button", className: "quiet download", on: {
        click: () => download(id, (message) => show($("reports-error"), message)),
      }}, "CSV"));
    } else if (report.status === "Running") {
      actions.append(h("button", {type: "button", className: "quiet", on: {click: () => watch(id)}}, "Watch"));
    }
    actions.append(confirmingButton("Delete", "Confirm delete", async (button) => {
      button.disabled = true;
      show($("reports-error"), "");
      try {
        await api(reportPath(id), {method: "DELETE"});
        refreshReports();
      } catch (error) {
        show($("reports-error"), messageOf(error));
        button.disabled = false;
        button.textContent = "Delete";
        button.classList.remove("armed");
      }
    }));
    const seconds = duration(report);
    const failed = report.status === "Failed" ? report.error || "" : "";
    return h("tr", {dataset: {reportId: id, status: report.status, shown: JSON.stringify(report)}},
      h("td", {}, formatTime(report.requested_at)),
      h("td", {}, h("code", {title: id}, id.slice(0, 8) + "…")),
      h("td", {title: failed}, statusBadge(report.status)),
      h("td", {className: "num rows"}, report.rows === undefined ? "" : report.rows),
      h("td", {className: "as-of"}, formatTime(report.as_of || request.as_of)),
      h("td", {className: "num"}, report.status === "Complete" ? formatSeconds(seconds) : ""),
      h("td", {}, stores),
      actions);
  }

  function fillReportChoice(reports) {
    const select = $("lookup-report");
    const chosen = select.value;
    const complete = reports.filter((report) => report.status === "Complete");
    select.replaceChildren();
    if (!complete.length) select.append(h("option", {value: ""}, "(no complete report)"));
    for (const report of complete) {
      const label = formatTime(report.requested_at) + " · " + report.rows + " rows · as of " +
        formatTime(report.as_of) + " · " + report.report_id.slice(0, 8);
      select.append(h("option", {value: report.report_id}, label));
    }
    if (complete.some((report) => report.report_id === chosen)) select.value = chosen;
  }

  async function refreshReports() {
    const generation = ++listGeneration;
    clearTimeout(listTimer);
    try {
      const answer = await apiJson("/reports?limit=50");
      if (generation !== listGeneration) return;
      const reports = answer.reports || [];
      // Rows whose report did not change stay as they are (an armed Delete stays armed).
      const body = $("reports-table").tBodies[0];
      const shown = new Map([...body.rows].map((row) => [row.dataset.shown, row]));
      body.replaceChildren(...reports.map((report) => shown.get(JSON.stringify(report)) || reportRow(report)));
      $("reports-empty").hidden = reports.length > 0;
      $("reports-updated").textContent = "updated " + new Date().toLocaleTimeString();
      show($("reports-error"), "");
      fillReportChoice(reports);
      if (reports.some((report) => report.status === "Running")) {
        listTimer = setTimeout(refreshReports, LIST_WHILE_RUNNING_MS);
      }
    } catch (error) {
      if (generation === listGeneration) show($("reports-error"), messageOf(error));
    }
  }

  // --- Store lookup -------------------------------------------------------------------------

  function showFigures(figures) {
    const body = $("lookup-figures").tBodies[0];
    body.replaceChildren();
    $("lookup-figures").hidden = !figures;
    $("lookup-no-figures").hidden = Boolean(figures);
    if (!figures) return;
    for (const [name, ...fields] of FIGURES) {
      body.append(h("tr", {}, h("th", {}, name),
        ...fields.map((field) => h("td", {className: "num", dataset: {field}}, String(figures[field])))));
    }
  }

  function lookupStore() {
    const storeId = $("lookup-store").value.trim();
    show($("lookup-error"), storeId ? "" : "Give a store id.");
    if (!storeId) $("lookup-result").hidden = true;
    return storeId;
  }

  async function lookupInReport(event) {
    event.preventDefault();
    const storeId = lookupStore();
    if (!storeId) return;
    const reportId = $("lookup-report").value;
    $("lookup-result").hidden = true;
    if (!reportId) {
      show($("lookup-error"), "No complete report to look in: request one first.");
      return;
    }
    try {
      const answer = await apiJson(reportPath(reportId) + "/rows?store_id=" + encodeURIComponent(storeId));
      const row = (answer.rows || []).find((candidate) => candidate.store_id === storeId);
      if (!row) {
        show($("lookup-error"), "Store " + storeId + " is not in report " + reportId + ".");
        return;
      }
      $("lookup-title").textContent = "Store " + storeId + " in report " + reportId.slice(0, 8) + "…";
      const list = $("lookup-details");
      list.replaceChildren();
      const option = $("lookup-report").selectedOptions[0];
      detail(list, "Report", reportId);
      detail(list, "Listed as", option ? option.textContent : "");
      showFigures(row);
      $("lookup-result").dataset.source = "report";
      $("lookup-result").hidden = false;
    } catch (error) {
      show($("lookup-error"), messageOf(error));
    }
  }

  async function lookupLive() {
    const storeId = lookupStore();
    if (!storeId) return;
    $("lookup-result").hidden = true;
    try {
      const asOf = $("lookup-as-of").value.trim();
      const query = asOf ? "?as_of=" + encodeURIComponent(asOf) : "";
      const store = await apiJson("/stores/" + encodeURIComponent(storeId) + query);
      $("lookup-title").textContent = "Store " + store.store_id + ", live";
      const list = $("lookup-details");
      list.replaceChildren();
      detail(list, "As of", formatTime(store.as_of));
      const poll = store.latest_poll;
      detail(list, "Latest poll", poll ? formatTime(poll.timestamp_utc) + " — " + poll.status : "none");
      detail(list, "Time zone", store.timezone + (store.timezone_given ? "" : " (default)"));
      detail(list, "Local time", store.local_time);
      detail(list, "In business hours",
        (store.in_business_hours ? "yes" : "no") + (store.business_hours_given ? "" : " (default: 24×7)"));
      detail(list, "Partition", store.partition);
      detail(list, "Answered by", store.served_by);
      showFigures(store.figures);
      $("lookup-result").dataset.source = "live";
      $("lookup-result").hidden = false;
    } catch (error) {
      show($("lookup-error"), messageOf(error));
    }
  }

  // --- Operations: /metrics -----------------------------------------------------------------

  function unescapeLabel(text) {
    return text.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
  }

  function parseValue(text) {
    if (text === "+Inf" || text === "Inf") return Infinity;
    if (text === "-Inf") return -Infinity;
    if (text === "NaN") return NaN;
    return Number(text);
  }

  // Prometheus text format 0.0.4 -> {types: {family: type}, help: {...}, samples: [{name, labels, value}]}.
  function parseMetrics(text) {
    const types = {};
    const help = {};
    const samples = [];
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$/;
    const label = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/gy;
    for (const raw of text.split("\n")) {
      const line = raw.trim();
      if (!line) continue;
      if (line.startsWith("#")) {
        const meta = /^#\s+(HELP|TYPE)\s+(\S+)\s*(.*)$/.exec(line);
        if (meta && meta[1] === "TYPE") types[meta[2]] = meta[3];
        else if (meta) help[meta[2]] = meta[3];
        continue;
      }
      const match = sample.exec(line);
      if (!match) continue;
      const labels = {};
      if (match[2]) {
        label.lastIndex = 0;
        let pair;
        while (label.lastIndex < match[2].length && (pair = label.exec(match[2])) !== null) {
          labels[pair[1]] = unescapeLabel(pair[2]);
        }
      }
      samples.push({name: match[1], labels, value: parseValue(match[3])});
    }
    return {types, help, samples};
  }

  const samplesOf = (metrics, name) => metrics.samples.filter((sample) => sample.name === name);

  function valueOf(metrics, name, labels) {
    const found = samplesOf(metrics, name).find((sample) =>
      Object.entries(labels || {}).every(([key, value]) => sample.labels[key] === value));
    return found ? found.value : undefined;
  }

  // The q-quantile of a histogram, as Prometheus' histogram_quantile estimates it.
  function quantile(metrics, name, q) {
    const buckets = samplesOf(metrics, name + "_bucket")
      .map((sample) => ({le: parseValue(sample.labels.le), count: sample.value}))
      .sort((a, b) => a.le - b.le);
    if (!buckets.length) return undefined;
    const total = buckets[buckets.length - 1].count;
    if (!total) return undefined;
    const rank = q * total;
    let lower = 0;
    let below = 0;
    for (const bucket of buckets) {
      if (bucket.count >= rank) {
        if (bucket.le === Infinity) return lower;
        const inside = bucket.count - below;
        return inside ? lower + (bucket.le - lower) * ((rank - below) / inside) : bucket.le;
      }
      lower = bucket.le;
      below = bucket.count;
    }
    return lower;
  }

  function tile(name, value, note, kind) {
    return h("div", {className: "tile" + (kind ? " " + kind : ""), dataset: {tile: name}},
      h("div", {className: "tile-name"}, name),
      h("div", {className: "tile-value"}, value),
      note ? h("div", {className: "tile-note muted"}, note) : null);
  }

  function labelText(labels) {
    return Object.entries(labels).map(([key, value]) => key + "=" + value).join(", ");
  }

  function formatMetricValue(name, value) {
    if (!isFinite(value)) return String(value);
    if (/_seconds$/.test(name) && /newest_poll|event_time/.test(name) && value > 1e9) {
      const age = Date.now() / 1000 - value;
      return new Date(value * 1000).toISOString().replace(/\.\d+Z$/, "Z") +
        " (" + formatSeconds(Math.max(age, 0)) + " ago)";
    }
    return Number.isInteger(value) ? String(value) : value.toFixed(3);
  }

  const STATE_FIGURES = [
    ["storemon_state_stores", "Stores held (per partition, from its owner)"],
    ["storemon_state_polls", "Polls held (per partition, from its owner)"],
    ["storemon_state_greatest_poll_seconds", "Newest poll held (per partition)"],
    ["storemon_worker_stores", "Stores held"],
    ["storemon_worker_polls", "Polls held"],
    ["storemon_worker_greatest_event_time_seconds", "Newest poll (worker)"],
    ["storemon_state_newest_poll_seconds", "Newest poll accepted"],
    ["storemon_state_lag_seconds", "State behind input (event time, s)"],
    ["storemon_state_lag_records", "State behind input (records)"],
  ];

  function showMetrics(metrics) {
    const tiles = $("ops-tiles");
    const up = (name) => {
      const value = valueOf(metrics, name);
      return value === undefined ? ["?", "bad"] : value === 1 ? ["yes", "good"] : ["no", "bad"];
    };
    const [kafka, kafkaKind] = up("storemon_kafka_up");
    const [database, databaseKind] = up("storemon_database_up");
    const lag = samplesOf(metrics, "storemon_consumer_lag");
    const totalLag = lag.reduce((sum, sample) => sum + sample.value, 0);
    const byStatus = (status) => valueOf(metrics, "storemon_reports", {status});
    const count = valueOf(metrics, "storemon_report_duration_seconds_count");
    const p50 = quantile(metrics, "storemon_report_duration_seconds", 0.5);
    const p99 = quantile(metrics, "storemon_report_duration_seconds", 0.99);
    const rejected = valueOf(metrics, "storemon_events_total", {outcome: "rejected"});
    const accepted = valueOf(metrics, "storemon_events_total", {outcome: "accepted"});
    const deadLetters = valueOf(metrics, "storemon_dead_letters_total");
    tiles.replaceChildren(
      tile("Kafka reachable", kafka, null, kafkaKind),
      tile("Database reachable", database, null, databaseKind),
      tile("Consumer lag", kafka === "yes" ? String(totalLag) : "?", "records, every group",
        kafka === "yes" && totalLag > 0 ? "warn" : ""),
      tile("Reports", byStatus("Complete") === undefined ? "?" :
        ["Running", "Complete", "Failed"].map((s) => (byStatus(s) || 0) + " " + s.toLowerCase()).join(" · ")),
      tile("Report latency", p50 === undefined ? "–" : "p50 " + formatSeconds(p50) + " · p99 " + formatSeconds(p99),
        count === undefined ? null : count + " reports completed"),
      deadLetters !== undefined ?
        tile("Dead letters", String(deadLetters),
          "records in store-status-dlq, whoever rejected them (worker, load, POST /events)",
          deadLetters ? "warn" : "") :
        tile("Dead letters", rejected === undefined ? "?" : String(rejected),
          "polls rejected on POST /events by this API process (sent to store-status-dlq)" +
          (accepted === undefined ? "" : "; " + accepted + " accepted"), rejected ? "warn" : ""),
    );

    const lagBody = $("ops-lag").tBodies[0];
    lagBody.replaceChildren();
    const groups = new Map();
    for (const sample of lag) {
      const group = sample.labels.group || "";
      if (!groups.has(group)) groups.set(group, []);
      groups.get(group).push(sample);
    }
    for (const [group, rows] of [...groups].sort((a, b) => a[0].localeCompare(b[0]))) {
      rows.sort((a, b) => (a.labels.topic || "").localeCompare(b.labels.topic || "") ||
        Number(a.labels.partition) - Number(b.labels.partition));
      for (const sample of rows) {
        lagBody.append(h("tr", {className: sample.value > 0 ? "lagging" : ""},
          h("td", {}, group), h("td", {}, sample.labels.topic || ""),
          h("td", {className: "num"}, sample.labels.partition || ""),
          h("td", {className: "num"}, String(sample.value))));
      }
      const total = rows.reduce((sum, sample) => sum + sample.value, 0);
      lagBody.append(h("tr", {className: "subtotal"}, h("td", {}, group), h("td", {}, "all"),
        h("td", {}), h("td", {className: "num"}, String(total))));
    }
    const lagNone = kafka !== "yes" ? "Kafka cannot be read now: no lag figures." :
      lag.length ? "" : "No consumer lag figures.";
    show($("ops-lag-none"), lagNone);
    $("ops-lag").hidden = lag.length === 0;

    const stateBody = $("ops-state").tBodies[0];
    stateBody.replaceChildren();
    for (const [name, title] of STATE_FIGURES) {
      for (const sample of samplesOf(metrics, name)) {
        stateBody.append(h("tr", {}, h("td", {title: name}, title), h("td", {}, labelText(sample.labels)),
          h("td", {className: "num"}, formatMetricValue(name, sample.value))));
      }
    }
    const stateShown = stateBody.rows.length > 0;
    $("ops-state").hidden = !stateShown;
    show($("ops-state-none"), stateShown ? "" :
      "No state figures: no worker answered the API (STOREMON_WORKER_URLS), and each " +
      "worker's own /metrics (port 9101) has its part.");

    $("ops-all").tBodies[0].replaceChildren(...metrics.samples.map((sample) =>
      h("tr", {}, h("td", {}, sample.name), h("td", {}, labelText(sample.labels)),
        h("td", {className: "num"}, formatMetricValue(sample.name, sample.value)))));
    $("ops").hidden = false;
  }

  let metricsBusy = false;

  async function refreshMetrics() {
    if (metricsBusy) return;
    metricsBusy = true;
    try {
      // Public: no token needed, none sent.
      const response = await fetch("/metrics", {cache: "no-store"});
      if (!response.ok) throw await errorOf(response);
      showMetrics(parseMetrics(await response.text()));
      $("ops-updated").textContent = "updated " + new Date().toLocaleTimeString();
      $("ops").dataset.loads = String(Number($("ops").dataset.loads || 0) + 1);
      show($("ops-error"), "");
    } catch (error) {
      show($("ops-error"), error instanceof ApiError ? error.message : "the API cannot be reached: " + messageOf(error));
    } finally {
      metricsBusy = false;
    }
  }

  let metricsTimer = null;

  function autoMetrics() {
    clearInterval(metricsTimer);
    metricsTimer = $("ops-auto").checked ? setInterval(refreshMetrics, METRICS_INTERVAL_MS) : null;
  }

  // --- Start ----------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      window.storemon.setToken($("token").value.trim());
      onTokenChange();
    });
    $("token-clear").addEventListener("click", () => {
      window.storemon.setToken("");
      onTokenChange();
    });
    $("trigger-form").addEventListener("submit", trigger);
    $("watch-download").addEventListener("click", () => {
      if (watching) download(watching.id, (message) => show($("watch-error"), message));
    });
    $("reports-refresh").addEventListener("click", refreshReports);
    $("lookup-form").addEventListener("submit", lookupInReport);
    $("lookup-live").addEventListener("click", lookupLive);
    $("ops-refresh").addEventListener("click", refreshMetrics);
    $("ops-auto").addEventListener("change", autoMetrics);
    showTokenState();
    refreshReports();
    refreshMetrics();
  });

  // For tests and the curious: the parsers, pure functions.
  window.storemon.eventStreamParser = eventStreamParser;
  window.storemon.parseMetrics = parseMetrics;
  window.storemon.quantile = quantile;
})();
