// The collector's debugger page: lists recent events, follows new ones by polling, shows one as JSON.
(function () {
  "use strict";

  var POLL_MS = 1000;
  var PAGE_SIZE = 200;
  var MAX_ROWS = 1000;

  var state = {
    lastId: 0,
    generation: 0,
    paused: false,
    polling: false,
    selected: null,
    total: 0,
  };

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function currentFilters() {
    return {
      type: $("filter-type").value,
      user: $("filter-user").value.trim(),
      event: $("filter-event").value.trim(),
    };
  }

  function hasFilters() {
    var f = currentFilters();
    return Boolean(f.type || f.user || f.event);
  }

  function eventsUrl(extra) {
    var params = new URLSearchParams();
    var f = currentFilters();
    Object.keys(f).forEach(function (key) {
      if (f[key]) params.set(key, f[key]);
    });
    Object.keys(extra).forEach(function (key) {
      params.set(key, String(extra[key]));
    });
    return "/api/events?" + params.toString();
  }

  function getJSON(url) {
    return fetch(url, { cache: "no-store" }).then(function (response) {
      if (!response.ok) throw new Error(url + " answered " + response.status);
      return response.json();
    });
  }

  function setStatus(kind) {
    var dot = $("live-dot");
    var label = $("live-label");
    dot.className = "dot" + (kind === "live" ? "" : " " + kind);
    label.textContent = kind === "live" ? "Live" : kind === "paused" ? "Paused" : "Disconnected";
  }

  // -- the list --------------------------------------------------------------

  function title(e) {
    switch (e.type) {
      case "track":
        return e.event || "(no event)";
      case "page":
        return e.name || e.path || "(unnamed page)";
      case "screen":
        return e.name || "(unnamed screen)";
      case "group":
        return "Group " + (e.groupId || "");
      case "alias":
        return "Alias " + (e.previousId || "") + " \u2192 " + (e.userId || "");
      default:
        return "Identify";
    }
  }

  function userLabel(e) {
    if (e.userId !== null && e.userId !== undefined && e.userId !== "") return "user " + e.userId;
    if (e.anonymousId) return "anonymous " + e.anonymousId;
    return "";
  }

  function clock(iso) {
    var date = new Date(iso);
    if (isNaN(date.getTime())) return iso || "";
    return date.toLocaleTimeString([], { hour12: false });
  }

  function row(e, isNew) {
    var li = el("li", "event-row" + (isNew ? " new" : ""));
    li.tabIndex = 0;
    li.dataset.messageId = e.messageId;
    li.dataset.id = String(e.id);
    li.dataset.type = e.type;
    if (state.selected === e.messageId) li.classList.add("selected");
    li.appendChild(el("span", "badge " + e.type, e.type));
    var summary = el("div", "summary");
    summary.appendChild(el("span", "title", title(e)));
    summary.appendChild(el("span", "user", userLabel(e)));
    li.appendChild(summary);
    if (e.violations > 0) {
      // Recorded by `serve --plan` (or a client's tag_violations): the event breaks the tracking plan.
      li.classList.add("has-violations");
      li.dataset.violations = String(e.violations);
      var flag = el("span", "violations-badge", "\u26a0 " + e.violations);
      flag.title = e.violations + (e.violations === 1 ? " tracking-plan violation" : " tracking-plan violations");
      li.appendChild(flag);
    }
    var time = el("time", "", clock(e.receivedAt));
    time.dateTime = e.receivedAt || "";
    time.title = e.receivedAt || "";
    li.appendChild(time);
    li.addEventListener("click", function () {
      select(e.messageId);
    });
    li.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        select(e.messageId);
      }
    });
    return li;
  }

  function updateEmpty() {
    var list = $("events");
    var empty = $("empty");
    if (list.children.length) {
      empty.hidden = true;
      return;
    }
    empty.hidden = false;
    empty.textContent = hasFilters()
      ? "No events match these filters."
      : "No events yet. Send some to POST " + window.location.origin + "/v1/batch.";
  }

  // Counts in the reader's locale, with thousands separators (1,234).
  var COUNT = new Intl.NumberFormat();

  function updateCounts() {
    var shown = $("events").children.length;
    $("counts").textContent =
      COUNT.format(state.total) + " stored" + (hasFilters() ? " \u00b7 " + COUNT.format(shown) + " shown" : "");
  }

  function reload() {
    var generation = ++state.generation;
    return getJSON(eventsUrl({ limit: PAGE_SIZE }))
      .then(function (data) {
        if (generation !== state.generation) return;
        var list = $("events");
        list.textContent = "";
        data.events.forEach(function (e) {
          list.appendChild(row(e, false));
        });
        state.lastId = data.lastId;
        state.total = data.total;
        updateEmpty();
        updateCounts();
        if (!state.paused) setStatus("live");
      })
      .catch(function () {
        setStatus("error");
        if (!$("events").children.length) {
          $("empty").hidden = false;
          $("empty").textContent = "Cannot reach the collector; retrying\u2026";
        }
      });
  }

  function poll() {
    if (state.paused || state.polling) return Promise.resolve();
    state.polling = true;
    var generation = state.generation;
    return getJSON(eventsUrl({ after: state.lastId, limit: 500 }))
      .then(function (data) {
        if (generation !== state.generation) return;
        var list = $("events");
        // Events come newest first; insert oldest first so the newest ends on top.
        for (var i = data.events.length - 1; i >= 0; i--) {
          list.insertBefore(row(data.events[i], true), list.firstChild);
        }
        while (list.children.length > MAX_ROWS) list.removeChild(list.lastChild);
        state.lastId = Math.max(state.lastId, data.lastId);
        state.total = data.total;
        updateEmpty();
        updateCounts();
        setStatus("live");
      })
      .catch(function () {
        setStatus("error");
      })
      .then(function () {
        state.polling = false;
      });
  }

  // -- the detail pane ----------------------------------------------------------

  var TOKEN = /("(?:\\u[0-9a-fA-F]{4}|\\[^u]|[^\\"])*")(\s*:)?|\b(true|false)\b|\b(null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;

  function highlighted(value) {
    var text = JSON.stringify(value, null, 2);
    var fragment = document.createDocumentFragment();
    var last = 0;
    var match;
    TOKEN.lastIndex = 0;
    while ((match = TOKEN.exec(text)) !== null) {
      if (match.index > last) fragment.appendChild(document.createTextNode(text.slice(last, match.index)));
      var cls = match[1] !== undefined ? (match[2] ? "k" : "s") : match[3] ? "b" : match[4] ? "z" : "n";
      var token = match[1] !== undefined ? match[1] : match[0];
      fragment.appendChild(el("span", cls, token));
      if (match[2]) fragment.appendChild(document.createTextNode(match[2]));
      last = TOKEN.lastIndex;
    }
    if (last < text.length) fragment.appendChild(document.createTextNode(text.slice(last)));
    return fragment;
  }

  function showDetail(data) {
    var message = data.message;
    var summary = data.event;
    $("detail-placeholder").hidden = true;
    $("detail-body").hidden = false;
    var badge = $("detail-type");
    badge.className = "badge " + summary.type;
    badge.textContent = summary.type;
    $("detail-title").textContent = title(summary);
    var meta = $("detail-meta");
    meta.textContent = "";
    ["messageId", "userId", "anonymousId", "timestamp", "originalTimestamp", "sentAt", "receivedAt"].forEach(
      function (key) {
        if (message[key] === undefined || message[key] === null) return;
        meta.appendChild(el("dt", "", key));
        meta.appendChild(el("dd", "", message[key]));
      }
    );
    showContext(message);
    showViolations(message);
    var pre = $("detail-json");
    pre.textContent = "";
    pre.appendChild(highlighted(message));
    pre.dataset.messageId = summary.messageId;
  }

  // The request context an event carries (page, campaign, consent, visitor), shown above its JSON.
  function fillPairs(section, source, keys) {
    var list = section.querySelector("dl");
    list.textContent = "";
    var shown = 0;
    keys.forEach(function (key) {
      var value = source && typeof source === "object" ? source[key] : undefined;
      if (value === undefined || value === null || value === "") return;
      list.appendChild(el("dt", "", key));
      list.appendChild(el("dd", "", typeof value === "object" ? JSON.stringify(value) : String(value)));
      shown += 1;
    });
    section.hidden = shown === 0;
    return shown;
  }

  function showContext(message) {
    var context = message && typeof message.context === "object" && message.context ? message.context : {};
    var shown = 0;
    shown += fillPairs($("context-page"), context.page, ["url", "path", "title", "referrer", "search"]);
    shown += fillPairs($("context-campaign"), context.campaign, ["source", "medium", "name", "term", "content"]);
    shown += fillPairs($("context-client"), context, ["ip", "userAgent", "locale"]);
    var consent = context.consent && typeof context.consent === "object" ? context.consent : null;
    var preferences = consent && typeof consent.categoryPreferences === "object" ? consent.categoryPreferences : null;
    var section = $("context-consent");
    var list = section.querySelector("ul");
    list.textContent = "";
    var categories = preferences ? Object.keys(preferences).sort() : [];
    categories.forEach(function (category) {
      var granted = preferences[category] === true;
      var item = el("li", granted ? "granted" : "refused");
      item.appendChild(el("span", "mark", granted ? "\u2713" : "\u2717"));
      item.appendChild(el("span", "category", category));
      item.title = category + (granted ? ": granted" : ": refused");
      list.appendChild(item);
    });
    section.hidden = categories.length === 0;
    shown += categories.length;
    $("detail-context").hidden = shown === 0;
  }

  function recordedViolations(message) {
    var context = message && message.context;
    var protocols = context && typeof context === "object" ? context.protocols : null;
    var found = protocols && typeof protocols === "object" ? protocols.violations : null;
    return Array.isArray(found)
      ? found.filter(function (v) {
          return v && typeof v === "object";
        })
      : [];
  }

  function showViolations(message) {
    var found = recordedViolations(message);
    var box = $("detail-violations");
    var list = $("violations-list");
    list.textContent = "";
    box.hidden = found.length === 0;
    $("violations-title").textContent =
      found.length === 1 ? "1 tracking-plan violation" : found.length + " tracking-plan violations";
    found.forEach(function (v) {
      var item = el("li", "violation");
      item.appendChild(el("code", "path", v.path || "(message)"));
      item.appendChild(el("span", "message", v.message || v.keyword || ""));
      if (v.rule) item.appendChild(el("span", "rule", v.rule));
      list.appendChild(item);
    });
  }

  function select(messageId) {
    state.selected = messageId;
    Array.prototype.forEach.call($("events").children, function (li) {
      li.classList.toggle("selected", li.dataset.messageId === messageId);
    });
    return getJSON("/api/events/" + encodeURIComponent(messageId))
      .then(function (data) {
        if (state.selected === messageId) showDetail(data);
      })
      .catch(function () {
        $("detail-placeholder").hidden = false;
        $("detail-placeholder").textContent = "That event is no longer stored.";
        $("detail-body").hidden = true;
      });
  }

  // -- wiring -------------------------------------------------------------------------

  var debounce = null;

  function filtersChanged() {
    clearTimeout(debounce);
    debounce = setTimeout(reload, 200);
  }

  $("filters").addEventListener("submit", function (ev) {
    ev.preventDefault();
    reload();
  });
  $("filter-type").addEventListener("change", reload);
  $("filter-user").addEventListener("input", filtersChanged);
  $("filter-event").addEventListener("input", filtersChanged);
  $("clear-filters").addEventListener("click", function () {
    $("filter-type").value = "";
    $("filter-user").value = "";
    $("filter-event").value = "";
    reload();
  });
  $("pause").addEventListener("click", function () {
    state.paused = !state.paused;
    this.textContent = state.paused ? "Resume" : "Pause";
    this.setAttribute("aria-pressed", String(state.paused));
    setStatus(state.paused ? "paused" : "live");
    if (!state.paused) poll();
  });
  $("copy-json").addEventListener("click", function () {
    var text = $("detail-json").textContent;
    if (navigator.clipboard) navigator.clipboard.writeText(text);
  });

  reload().then(function () {
    setInterval(poll, POLL_MS);
  });
})();
