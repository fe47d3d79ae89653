// tether status page: refreshes in place, ticks drain countdowns, drains and undrains.
// Same-origin requests only; the admin token (when one is set) is asked once and kept in
// sessionStorage for this tab.
(function () {
  "use strict";
  var KEY = "tether-admin-token";
  var asked = false;

  function headers() {
    var h = { "X-Tether-Page": "1" };
    var t = sessionStorage.getItem(KEY);
    if (t) { h["Authorization"] = "Bearer " + t; }
    return h;
  }

  async function call(method, url) {
    var opts = function () {
      return { method: method, headers: headers(), cache: "no-store", credentials: "same-origin" };
    };
    var r = await fetch(url, opts());
    if (r.status === 401 && !asked) {
      asked = true;
      var t = window.prompt("Admin token of this tether (kept for this tab only)");
      if (t) {
        sessionStorage.setItem(KEY, t.trim());
        r = await fetch(url, opts());
      }
    }
    return r;
  }

  function say(text) {
    var el = document.getElementById("msg");
    if (el) { el.textContent = text; }
  }

  async function refresh() {
    try {
      var r = await call("GET", "/");
      if (!r.ok) { say("refresh failed: HTTP " + r.status); return; }
      var doc = new DOMParser().parseFromString(await r.text(), "text/html");
      var fresh = doc.querySelector("main[data-full]");
      var old = document.querySelector("main");
      if (fresh && old) { old.replaceWith(document.adoptNode(fresh)); say(""); }
    } catch (e) {
      say("refresh failed: " + e);
    }
  }

  function tick() {
    document.querySelectorAll("[data-remaining]").forEach(function (el) {
      var n = parseInt(el.getAttribute("data-remaining"), 10);
      if (n > 0) {
        n -= 1;
        el.setAttribute("data-remaining", String(n));
        el.textContent = "draining, " + n + " s left";
      }
    });
  }

  document.addEventListener("click", async function (ev) {
    var b = ev.target.closest("button[data-action]");
    if (!b) { return; }
    b.disabled = true;
    var url = "/pools/" + encodeURIComponent(b.getAttribute("data-pool")) + "/endpoints/" +
      encodeURIComponent(b.getAttribute("data-name")) + "/" + b.getAttribute("data-action");
    try {
      var r = await call("POST", url);
      say(r.ok ? "" : b.getAttribute("data-action") + " failed: HTTP " + r.status);
    } catch (e) {
      say(b.getAttribute("data-action") + " failed: " + e);
    }
    await refresh();
  });

  setInterval(refresh, REFRESH_MS);
  setInterval(tick, 1000);
  if (document.querySelector("main[data-locked]")) { refresh(); }
})();
