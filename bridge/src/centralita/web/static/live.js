// Refreshes the calls-in-progress table from its JSON every few seconds (the page works without it: it then
// reloads itself through a <noscript> refresh).
(function () {
  "use strict";
  var box = document.getElementById("live");
  if (!box) { return; }
  var url = box.dataset.url;
  var seconds = Number(box.dataset.seconds) || 2;
  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }
  function duration(s) {
    if (s === null || s === undefined) { return ""; }
    var rest = s % 60;
    return Math.floor(s / 60) + ":" + (rest < 10 ? "0" : "") + rest;
  }
  function show(state) {
    var message = document.getElementById("live-message");
    message.textContent = state.message || "";
    message.hidden = !state.message;
    document.getElementById("live-count").textContent = state.running
      ? state.active_calls + " llamada(s) en curso" + (state.max_calls ? " de un máximo de " + state.max_calls : "") + "."
      : "";
    var body = document.getElementById("live-calls");
    body.textContent = "";
    (state.calls || []).forEach(function (call) {
      var row = document.createElement("tr");
      var link = document.createElement("td");
      if (call.call_id) {
        var a = document.createElement("a");
        a.href = box.dataset.callUrl + encodeURIComponent(call.call_id);
        a.textContent = call.call_id;
        link.appendChild(a);
      }
      row.appendChild(link);
      cell(row, call.direction);
      cell(row, call.caller);
      cell(row, call.did);
      cell(row, call.started);
      cell(row, duration(call.seconds));
      cell(row, call.activity);
      cell(row, call.worker);
      body.appendChild(row);
    });
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        return response.ok ? response.json() : null;
      })
      .then(function (state) { if (state) { show(state); } })
      .catch(function () { /* the next poll tries again */ })
      .finally(function () { window.setTimeout(poll, seconds * 1000); });
  }
  window.setTimeout(poll, seconds * 1000);
}());
