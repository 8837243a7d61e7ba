// Pulse dashboard: remembers the browser's time zone (for times and chart ticks) and polls the live state,
// every 3 s while the tab is visible and every 60 s while it is hidden, as Healthchecks does.
(function () {
  "use strict";
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone && document.cookie.indexOf("pulse_tz=" + zone) === -1) {
    document.cookie = "pulse_tz=" + zone + "; path=/; max-age=31536000; samesite=lax";
  }
  // The snooze's "until" field is shown only when "until…" is chosen (always, with JavaScript off).
  document.querySelectorAll("select[name=duration]").forEach(function (select) {
    var until = select.form.querySelector("input.until");
    function toggle() { until.style.display = select.value === "until" ? "" : "none"; }
    select.addEventListener("change", toggle);
    toggle();
  });
  var url = document.body.getAttribute("data-live-url");
  var title = document.title.replace(/^\d+ failing · /, "");
  var timer = null;
  function setState(el, state, label) {
    el.className = el.className.replace(/\bstate-[a-z_]+\b/g, "").trim() + " state-" + state;
    var text = el.querySelector(".label");
    if (text && label) { text.textContent = label; }
  }
  function apply(data) {
    document.querySelectorAll("[data-table]").forEach(function (el) {
      var entry = data.tables[el.getAttribute("data-table")];
      if (!entry) { return; }
      setState(el, entry.state, entry.label);
      el.querySelectorAll(".alerts-count").forEach(function (a) { a.textContent = entry.alerts; });
    });
    document.querySelectorAll("[data-connection]").forEach(function (el) {
      var entry = data.connections[el.getAttribute("data-connection")];
      if (!entry) { return; }
      setState(el, entry.state, entry.label);
      el.querySelectorAll(".lag").forEach(function (a) { a.textContent = entry.lag; });
    });
    document.querySelectorAll("[data-alert]").forEach(function (el) {
      var entry = data.alerts[el.getAttribute("data-alert")];
      var state = entry ? entry.state : "resolved";
      setState(el, state, state.charAt(0).toUpperCase() + state.slice(1));
    });
    var summary = document.querySelector(".summary");
    if (summary) {  // the overview's counts per state, over the rows on the page
      var counts = {};
      document.querySelectorAll("tr[data-table]").forEach(function (row) {
        var match = row.className.match(/\bstate-([a-z_]+)\b/);
        if (match) { counts[match[1]] = (counts[match[1]] || 0) + 1; }
      });
      var order = ["failing", "error", "snoozed", "learning", "unknown", "healthy", "paused"];
      summary.innerHTML = "";
      order.forEach(function (state) {
        if (!counts[state]) { return; }
        var chip = document.createElement("a");
        chip.className = "pill state-" + state;
        chip.href = "?status=" + state;
        var label = (document.querySelector("tr.state-" + state + " .label") || {}).textContent || state;
        chip.textContent = counts[state] + " " + label.toLowerCase();
        summary.appendChild(chip);
      });
    }
    if (document.body.hasAttribute("data-count-failing")) {
      document.title = (data.failing ? data.failing + " failing · " : "") + title;
    }
    document.body.setAttribute("data-live-updated", String(Date.now()));
  }
  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data) { apply(data); } })
      .catch(function () {})
      .finally(schedule);
  }
  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(poll, document.visibilityState === "visible" ? 3000 : 60000);
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { clearTimeout(timer); poll(); }
  });
  schedule();
})();
