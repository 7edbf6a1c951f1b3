// Reloads the campaigns page when its state changes (a request applied, a campaign paused elsewhere), by
// polling its JSON every few seconds. Without JavaScript the page refreshes itself while requests are pending.
(function () {
  "use strict";
  var box = document.getElementById("campaigns");
  if (!box) { return; }
  var url = box.dataset.url;
  var seconds = Number(box.dataset.seconds) || 2;
  var fingerprint = box.dataset.fingerprint;
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        return response.ok ? response.json() : null;
      })
      .then(function (state) {
        if (state && state.fingerprint !== fingerprint) { window.location.reload(); }
      })
      .catch(function () { /* the next poll tries again */ })
      .finally(function () { window.setTimeout(poll, seconds * 1000); });
  }
  window.setTimeout(poll, seconds * 1000);
}());
