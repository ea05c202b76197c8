// The inbox works without this file (forms and links); with it, pages follow changes live (Server-Sent
// Events), times show in the viewer's zone, and Enter sends a reply.
(function () {
  "use strict";
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) { el.textContent = d.toLocaleString(); }
    });
  }
  function replyKeys() {
    var box = document.getElementById("reply");
    if (!box) { return; }
    box.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        if (box.value.trim() === "") {
          box.setCustomValidity("An empty reply cannot be sent.");
          box.reportValidity();
          return;
        }
        box.setCustomValidity("");
        box.form.requestSubmit();
      }
    });
    box.addEventListener("input", function () { box.setCustomValidity(""); });
    box.form.addEventListener("submit", function (e) {
      if (box.value.trim() === "") {
        e.preventDefault();
        box.setCustomValidity("An empty reply cannot be sent.");
        box.reportValidity();
      }
    });
  }
  // Re-reads the page and swaps its main part, keeping what is being typed.
  var refreshing = false, again = false;
  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        ["threads", "count", "messages", "thread-state"].forEach(function (id) {
          var now = document.getElementById(id), next = doc.getElementById(id);
          if (now && next) { now.replaceWith(next); localTimes(next.parentNode || document); }
        });
        var stamp = doc.body.getAttribute("data-last-change");
        if (stamp) { document.body.setAttribute("data-last-change", stamp); }
      })
      .catch(function () {})
      .finally(function () { refreshing = false; if (again) { again = false; refresh(); } });
  }
  function live() {
    if (!window.EventSource || document.body.getAttribute("data-live") !== "true") { return; }
    var thread = document.querySelector(".conversation[data-thread]");
    var after = document.body.getAttribute("data-last-change") || "0";
    var url = "/inbox/events?after=" + encodeURIComponent(after);
    if (thread) { url += "&thread=" + encodeURIComponent(thread.getAttribute("data-thread")); }
    // EventSource resends the last id it saw (Last-Event-ID) when it reconnects: nothing is missed.
    var source = new EventSource(url);
    source.addEventListener("change", refresh);
  }
  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    replyKeys();
    live();
  });
})();
