// The query page: sign in with a gateway token, browse the catalog, write SQL with names completed, read the
// results a page at a time, download them as CSV or Parquet. Every request goes to POST /v1/query with the
// token, so the gateway authenticates, authorises, brakes and audits the page like any other client.
// Data is only ever written into the page as text (textContent), never as markup.
"use strict";

(function () {
  const PAGE_ROWS = 50;
  const TOKEN_KEY = "dataops-query-token";
  // The gateway's brakes (registry/policy.yaml), named as people say them.
  const BRAKES = { scan_limit: "scan limit", statement_timeout: "statement timeout", row_limit: "row limit",
    result_bytes: "result size limit", memory_limit: "memory limit", memory_ceiling: "memory limit",
    concurrency_user: "limit of queries you may run at once", concurrency_server: "server's limit of queries at once",
    failed_tokens: "pause after failed sign-ins", statement_size: "statement size limit",
    statement_nesting: "statement nesting limit", request_size: "request size limit" };
  // The platform's own tables for analysts (README: "Querying the analyst warehouse"), beside the catalog's datasets.
  const PLATFORM_TABLES = ["catalog.datasets", "catalog.columns", "catalog.archives", "publish.kpi_history",
    "publish.kpi_restatements", "publish.publish_log", "publish.quarantine_summary"];
  const KEYWORDS = ["select", "from", "where", "group by", "order by", "limit", "join", "left join", "on", "and",
    "or", "not", "as", "distinct", "having", "with", "case", "when", "then", "else", "end", "between", "in",
    "is null", "is not null", "count(*)", "sum(", "avg(", "min(", "max(", "date_trunc(", "desc", "asc"];
  const CATALOG_SQL = "select dataset, description, owner, domain, classification, grain, pii_columns, " +
    "access_roles, clear_personal_data_roles, notes, tags, caveats, example_queries, row_count, data_as_of, " +
    "refresh_schedule from catalog.datasets order by dataset";
  const COLUMNS_SQL = "select dataset, column_name, data_type, description, is_pii, published_as from catalog.columns";

  const state = { token: sessionStorage.getItem(TOKEN_KEY), datasets: [], columns: {}, result: null, page: 0 };
  const $ = (id) => document.getElementById(id);

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (className) { node.className = className; }
    return node;
  }

  function parseList(value) {
    try { const list = JSON.parse(value || "[]"); return Array.isArray(list) ? list : []; } catch (err) { return []; }
  }

  // --- the gateway -------------------------------------------------------------------------------------------

  async function ask(sql, format) {
    return fetch("/v1/query", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + state.token },
      body: JSON.stringify({ sql: sql, format: format || "json" }),
    });
  }

  async function failure(response) {
    let body = {};
    try { body = await response.json(); } catch (err) { body = { message: response.statusText }; }
    return { status: response.status, error: body.error || "error", brake: body.brake || null,
             message: body.message || body.detail || response.statusText };
  }

  // --- signing in --------------------------------------------------------------------------------------------

  async function signIn(token) {
    state.token = token;
    const datasets = await ask(CATALOG_SQL);  // one at a time: a user's concurrent queries are braked
    if (!datasets.ok) { throw await failure(datasets); }
    const columns = await ask(COLUMNS_SQL);
    if (!columns.ok) { throw await failure(columns); }
    state.datasets = (await datasets.json()).rows;
    state.columns = {};
    for (const column of (await columns.json()).rows) {
      (state.columns[column.dataset] = state.columns[column.dataset] || []).push(column);
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("sign-in").hidden = true;
    $("app").hidden = false;
    $("sign-out").hidden = false;
    $("who").textContent = "signed in · " + state.datasets.length + " datasets";
    renderCatalog();
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    $("app").hidden = true;
    $("sign-out").hidden = true;
    $("who").textContent = "";
    $("sign-in").hidden = false;
    const error = $("sign-in-error");
    error.hidden = !message;
    error.textContent = message || "";
    $("token").value = "";
    $("token").focus();
  }

  async function onSignIn(event) {
    event.preventDefault();
    const token = $("token").value.trim();
    $("sign-in-button").disabled = true;
    try {
      await signIn(token);
    } catch (problem) {
      signOut(problem.status === 401 ? "Sign-in refused: " + problem.message
        : "The catalog could not be read: " + (problem.message || problem));
    } finally {
      $("sign-in-button").disabled = false;
    }
  }

  // --- the catalog -------------------------------------------------------------------------------------------

  function matches(dataset, text) {
    if (!text) { return true; }
    const columns = (state.columns[dataset.dataset] || []).map((c) => c.column_name + " " + c.description);
    const haystack = [dataset.dataset, dataset.description, dataset.notes, dataset.tags, dataset.owner,
      dataset.domain].concat(columns).join(" ").toLowerCase();
    return text.toLowerCase().split(/\s+/).every((word) => haystack.includes(word));
  }

  function renderCatalog() {
    const list = $("datasets");
    list.replaceChildren();
    const text = $("catalog-filter").value.trim();
    let schema = null;
    for (const dataset of state.datasets.filter((d) => matches(d, text))) {
      const [name] = dataset.dataset.split(".");
      if (name !== schema) { schema = name; list.append(element("li", schema, "schema")); }
      const item = element("li");
      const button = element("button", null, "dataset");
      button.type = "button";
      button.append(element("span", dataset.dataset.slice(schema.length + 1), "name"));
      button.dataset.dataset = dataset.dataset;
      button.append(element("span", dataset.classification, "badge " + dataset.classification));
      button.addEventListener("click", () => showDataset(dataset));
      item.append(button);
      list.append(item);
    }
  }

  function description(text) {
    // a long description (a table of definitions) opens on demand, so the columns stay in view
    if (text.length <= 280) { return element("p", text, "description"); }
    const box = element("details", null, "description");
    box.append(element("summary", text.slice(0, 240).trimEnd() + "… (more)"), element("p", text));
    return box;
  }

  function field(list, label, value) {
    if (value === null || value === undefined || value === "" || (Array.isArray(value) && !value.length)) { return; }
    list.append(element("dt", label), element("dd", Array.isArray(value) ? value.join(", ") : value));
  }

  function showDataset(dataset) {
    const card = $("dataset");
    card.replaceChildren();
    card.dataset.dataset = dataset.dataset;
    const head = element("div", null, "dataset-head");
    head.append(element("h2", dataset.dataset), element("span", dataset.classification, "badge " + dataset.classification));
    const preview = element("button", "Preview 100 rows", "secondary");
    preview.type = "button";
    preview.addEventListener("click", () => { setSql("select * from " + dataset.dataset + " limit 100"); run(); });
    head.append(preview);
    card.append(head, description(dataset.description || ""));
    const facts = element("dl", null, "facts");
    field(facts, "owner", dataset.owner);
    field(facts, "domain", dataset.domain);
    field(facts, "grain", dataset.grain);
    field(facts, "who may read", parseList(dataset.access_roles));
    field(facts, "personal data", parseList(dataset.pii_columns).length
      ? parseList(dataset.pii_columns).join(", ") + " (pseudonymised; in clear for " +
        (parseList(dataset.clear_personal_data_roles).join(", ") || "nobody") + ")" : "");
    field(facts, "rows", dataset.row_count === null ? "" : Number(dataset.row_count).toLocaleString("en-US"));
    field(facts, "data as of", dataset.data_as_of);
    field(facts, "refreshed", dataset.refresh_schedule);
    field(facts, "notes", dataset.notes);
    field(facts, "caveats", parseList(dataset.caveats));
    field(facts, "tags", parseList(dataset.tags));
    card.append(facts);
    const examples = parseList(dataset.example_queries);
    if (examples.length) {
      card.append(element("h3", "Example queries"));
      const list = element("ul", null, "examples");
      for (const sql of examples) {
        const item = element("li");
        const use = element("button", "Use", "secondary");
        use.type = "button";
        use.addEventListener("click", () => setSql(sql));
        item.append(element("code", sql), use);
        list.append(item);
      }
      card.append(list);
    }
    const columns = state.columns[dataset.dataset] || [];
    card.append(element("h3", "Columns (" + columns.length + ")"));
    const wrap = element("div", null, "table-wrap");
    const table = element("table", null, "columns");
    const header = element("tr");
    for (const title of ["column", "type", "description", "published as"]) { header.append(element("th", title)); }
    table.append(header);
    for (const column of columns) {
      const row = element("tr");
      row.append(element("td", column.column_name, "name"), element("td", column.data_type),
        element("td", column.description), element("td", column.published_as));
      table.append(row);
    }
    wrap.append(table);
    card.append(wrap);
    card.hidden = false;
    card.scrollIntoView({ block: "start" });
  }

  // --- completion --------------------------------------------------------------------------------------------

  const completion = { items: [], active: 0, start: 0 };

  function knownTables() {
    return state.datasets.map((d) => d.dataset).concat(PLATFORM_TABLES);
  }

  function aliases(sql) {
    // "from kpis.kpi_daily k", "join marts.dim_dates as d": which dataset each name or alias stands for
    const found = {};
    const pattern = /\b(?:from|join)\s+([a-z_][\w]*\.[a-z_][\w]*)(?:\s+(?:as\s+)?([a-z_]\w*))?/gi;
    for (const match of sql.matchAll(pattern)) {
      const dataset = match[1].toLowerCase();
      found[dataset.split(".")[1]] = dataset;
      if (match[2] && !KEYWORDS.includes(match[2].toLowerCase())) { found[match[2].toLowerCase()] = dataset; }
    }
    return found;
  }

  function candidates(sql, word) {
    const lower = word.toLowerCase();
    const tables = knownTables();
    const named = aliases(sql);
    if (lower.includes(".")) {
      const head = lower.slice(0, lower.lastIndexOf("."));
      const tail = lower.slice(lower.lastIndexOf(".") + 1);
      const inSchema = tables.filter((t) => t.startsWith(lower) && t !== lower);
      const dataset = named[head] || (tables.includes(head) ? head : null);
      const columns = dataset ? (state.columns[dataset] || []).map((c) => head + "." + c.column_name)
        .filter((c) => c.slice(head.length + 1).startsWith(tail) && c !== lower) : [];
      return inSchema.concat(columns);
    }
    const mentioned = Object.values(named);
    const columns = [].concat(...mentioned.map((d) => (state.columns[d] || []).map((c) => c.column_name)));
    const pool = tables.concat(columns, KEYWORDS);
    return Array.from(new Set(pool.filter((name) => name.toLowerCase().startsWith(lower) && name !== lower)));
  }

  function updateCompletion() {
    const editor = $("sql");
    const before = editor.value.slice(0, editor.selectionStart);
    const match = before.match(/[A-Za-z_][\w.]*$/);
    completion.items = match ? candidates(editor.value, match[0]).slice(0, 8) : [];
    completion.start = match ? before.length - match[0].length : 0;
    completion.active = 0;
    renderCompletion();
  }

  function renderCompletion() {
    const list = $("suggestions");
    list.replaceChildren();
    completion.items.forEach((name, index) => {
      const item = element("li", name, index === completion.active ? "active" : "");
      item.setAttribute("role", "option");
      item.addEventListener("mousedown", (event) => { event.preventDefault(); accept(index); });
      list.append(item);
    });
    list.hidden = !completion.items.length;
  }

  function accept(index) {
    const editor = $("sql");
    const name = completion.items[index];
    const end = editor.selectionStart;
    editor.value = editor.value.slice(0, completion.start) + name + editor.value.slice(end);
    const caret = completion.start + name.length;
    editor.setSelectionRange(caret, caret);
    completion.items = [];
    renderCompletion();
    editor.focus();
  }

  function onEditorKey(event) {
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") { event.preventDefault(); run(); return; }
    if (!completion.items.length) { return; }
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      completion.active = (completion.active + step + completion.items.length) % completion.items.length;
      renderCompletion();
    } else if (event.key === "Tab" || event.key === "Enter") {
      event.preventDefault();
      accept(completion.active);
    } else if (event.key === "Escape") {
      completion.items = [];
      renderCompletion();
    }
  }

  function setSql(sql) {
    const editor = $("sql");
    editor.value = sql;
    editor.scrollIntoView({ block: "center" });
    editor.focus();
    completion.items = [];
    renderCompletion();
  }

  // --- running, paging, downloading ----------------------------------------------------------------------

  function datasetsIn(sql) {
    const lower = sql.toLowerCase();
    return state.datasets.filter((d) => new RegExp("\\b" + d.dataset.replace(".", "\\.") + "\\b").test(lower)
      || new RegExp("\\bfrom\\s+" + d.dataset.split(".")[1] + "\\b").test(lower));
  }

  function showDenied(problem, sql) {
    const card = $("denied");
    card.replaceChildren();
    card.dataset.brake = problem.brake || "";
    card.dataset.status = String(problem.status);
    let title = "The query failed";
    if (problem.brake) {
      title = "Stopped by the " + (BRAKES[problem.brake] || problem.brake.replace(/_/g, " "));
    } else if (problem.status === 403) {
      title = "Not allowed";
    } else if (problem.status === 413) {
      title = "The query is too large";
    } else if (problem.status === 400) {
      title = "The query is not valid";
    }
    card.append(element("h2", title), element("p", problem.message, "message"));
    const owners = datasetsIn(sql);
    if ((problem.status === 403 || problem.brake) && owners.length) {
      card.append(element("h3", "Whom to ask"));
      const list = element("ul", null, "ask");
      for (const dataset of owners) {
        const readers = parseList(dataset.access_roles).join(", ");
        list.append(element("li", dataset.owner + " owns " + dataset.dataset +
          (readers ? " (readable by " + readers + ")" : "")));
      }
      card.append(list);
    }
    card.hidden = false;
    $("results").hidden = true;
  }

  async function run() {
    const sql = $("sql").value.trim();
    completion.items = [];
    renderCompletion();
    if (!sql) { return; }
    $("busy").hidden = false;
    $("denied").hidden = true;
    $("results").hidden = true;  // never the last query's rows under this one's SQL
    try {
      const response = await ask(sql, "json");
      if (response.status === 401) { signOut("Your token was refused: " + (await failure(response)).message); return; }
      if (!response.ok) { showDenied(await failure(response), sql); return; }
      state.result = await response.json();
      state.page = 0;
      renderResult();
    } catch (err) {
      showDenied({ status: 0, error: "network", message: String(err) }, sql);
    } finally {
      $("busy").hidden = true;
    }
  }

  function renderResult() {
    const result = state.result;
    const pages = Math.max(1, Math.ceil(result.rows.length / PAGE_ROWS));
    const first = state.page * PAGE_ROWS;
    const rows = result.rows.slice(first, first + PAGE_ROWS);
    const count = result.row_count.toLocaleString("en-US") + " row" + (result.row_count === 1 ? "" : "s");
    $("result-count").textContent = count + (result.truncated ? " (cut at your role's row limit)" : "");
    $("results").dataset.truncated = String(result.truncated);
    $("page").textContent = "page " + (state.page + 1) + " of " + pages + (rows.length
      ? " · rows " + (first + 1).toLocaleString("en-US") + "–" + (first + rows.length).toLocaleString("en-US") : "");
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
    const notes = $("notes");
    notes.replaceChildren();
    for (const note of result.notes || []) { notes.append(element("li", note)); }
    const table = $("result-table");
    table.replaceChildren();
    const header = element("tr");
    for (const column of result.columns) { header.append(element("th", column)); }
    table.append(header);
    for (const row of rows) {
      const line = element("tr");
      for (const column of result.columns) {
        const value = row[column];
        line.append(element("td", value === null ? "" : value, typeof value === "number" ? "num" : ""));
      }
      table.append(line);
    }
    $("results").hidden = false;
  }

  async function download(format) {
    const sql = $("sql").value.trim();
    if (!sql) { return; }
    $("busy").hidden = false;
    try {
      const response = await ask(sql, format);
      if (response.status === 401) { signOut("Your token was refused: " + (await failure(response)).message); return; }
      if (!response.ok) { showDenied(await failure(response), sql); return; }
      const link = document.createElement("a");
      link.href = URL.createObjectURL(await response.blob());
      const stamp = new Date().toISOString().slice(0, 19).replace(/[-:]/g, "").replace("T", "-");
      link.download = "query-" + stamp + "." + (format === "csv" ? "csv" : "parquet");
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    } finally {
      $("busy").hidden = true;
    }
  }

  // --- wiring ------------------------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("sign-in-form").addEventListener("submit", onSignIn);
    $("sign-out").addEventListener("click", () => signOut(""));
    $("catalog-filter").addEventListener("input", renderCatalog);
    $("sql").addEventListener("input", updateCompletion);
    $("sql").addEventListener("keydown", onEditorKey);
    $("run").addEventListener("click", run);
    $("download-csv").addEventListener("click", () => download("csv"));
    $("download-parquet").addEventListener("click", () => download("parquet"));
    $("prev").addEventListener("click", () => { state.page -= 1; renderResult(); });
    $("next").addEventListener("click", () => { state.page += 1; renderResult(); });
    if (state.token) {
      signIn(state.token).catch((problem) => signOut("Please sign in again: " + (problem.message || problem)));
    } else {
      signOut("");
    }
    document.body.dataset.ready = "true";
  });
})();
