// vitalwatch workspace: progressive enhancement only; every page works without it.
(function () {
  "use strict";

  // Live regions: <div data-poll="/worklist/rows" data-etag="..." data-interval="15">
  // are refreshed from their URL without a page reload; 304 keeps them as they are.
  function poll(el) {
    var url = el.getAttribute("data-poll");
    var every = Math.max(5, parseInt(el.getAttribute("data-interval") || "15", 10)) * 1000;
    function tick() {
      if (document.hidden) { return setTimeout(tick, every); }
      var headers = { "Accept": "text/html", "X-Requested-With": "fetch" };
      var etag = el.getAttribute("data-etag");
      if (etag) { headers["If-None-Match"] = etag; }
      var q = window.location.search;
      fetch(url + (url.indexOf("?") < 0 ? q : ""), { headers: headers, credentials: "same-origin", redirect: "manual" })
        .then(function (res) {
          if (res.type === "opaqueredirect" || res.status === 401) { window.location.reload(); return; }
          if (res.status === 200) {
            var tag = res.headers.get("ETag");
            return res.text().then(function (html) {
              el.innerHTML = html;
              if (tag) { el.setAttribute("data-etag", tag); }
              var stamp = document.getElementById("refreshed-at");
              if (stamp) { stamp.textContent = new Date().toLocaleTimeString(document.documentElement.lang); }
            });
          }
        })
        .catch(function () { /* offline: try again at the next tick */ })
        .then(function () { setTimeout(tick, every); });
    }
    setTimeout(tick, every);
  }

  // <form data-confirm="Are you sure?">: ask before submitting.
  function confirmForms() {
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (e) {
        if (!window.confirm(f.getAttribute("data-confirm"))) { e.preventDefault(); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(poll);
    confirmForms();
  });
})();
