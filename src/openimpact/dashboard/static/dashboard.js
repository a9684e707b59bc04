/* The dashboard's own behaviour: the track modal, the daily chart, copy
   buttons and confirmations. No inline scripts anywhere (strict CSP): pages
   pass data in data-* attributes (JSON that Jinja's tojson made safe). */
(function () {
  "use strict";

  var opener = null;
  var returnUrl = null;
  var changed = false;

  function dialog() { return document.getElementById("track-dialog"); }

  function openDialog() {
    var d = dialog();
    if (d && !d.open) { d.showModal(); }
  }

  function closeDialog() {
    var d = dialog();
    if (!d) { return; }
    var target = returnUrl || d.getAttribute("data-return") || "/dashboard/impacts";
    returnUrl = null;
    if (changed) { window.location.assign(target); return; }
    if (window.location.pathname.indexOf("/dashboard/impacts/") === 0) {
      window.history.replaceState(null, "", target);
    }
    if (opener && document.body.contains(opener)) { opener.focus(); }
    opener = null;
  }

  function drawChart() {
    var el = document.getElementById("daily-chart");
    if (!el || !window.uPlot) { return; }
    var data = JSON.parse(el.getAttribute("data-chart"));
    var money = data.metric === "money_donated";
    var xs = data.days.map(function (day) { return Date.parse(day + "T00:00:00Z") / 1000; });
    var ys = data.values.map(function (v) { return money ? v / 100 : v; });
    var format = function (v) {
      return (money ? "$" : "") + Number(v).toLocaleString("en-US", { maximumFractionDigits: money ? 2 : 0 });
    };
    el.textContent = "";
    var width = Math.max(280, el.clientWidth);
    var chart = new window.uPlot({
      width: width,
      height: 240,
      legend: { show: false },
      tzDate: function (ts) { return window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } } },
      series: [
        {},
        {
          label: data.label,
          stroke: "#0f766e",
          fill: "rgba(15, 118, 110, 0.28)",
          points: { show: false },
          paths: window.uPlot.paths.bars({ size: [0.7, 40] }),
          value: function (u, v) { return v == null ? "" : format(v); }
        }
      ],
      axes: [
        { stroke: "#5b6470", grid: { show: false } },
        { stroke: "#5b6470", size: 64, values: function (u, vals) { return vals.map(format); }, grid: { stroke: "#eef0f2" } }
      ]
    }, [xs, ys], el);
    el._chart = chart;
  }

  function copy(button) {
    var value = button.getAttribute("data-copy");
    var label = button.textContent;
    var done = function () {
      button.textContent = "Copied";
      window.setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(value).then(done, function () { fallbackCopy(value); done(); });
    } else {
      fallbackCopy(value);
      done();
    }
  }

  function fallbackCopy(value) {
    var area = document.createElement("textarea");
    area.value = value;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* the text stays selectable */ }
    document.body.removeChild(area);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (button) { event.preventDefault(); copy(button); return; }
    // A click anywhere on a row opens it, as its first link would.
    var row = event.target.closest("tr.clickable-row");
    if (row && !event.target.closest("a, button, input, select, textarea, summary")) {
      var link = row.querySelector("a.row-link");
      if (link) { link.click(); }
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); event.stopImmediatePropagation(); }
  }, true);

  document.addEventListener("htmx:confirm", function (event) {
    var form = event.detail.elt;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });

  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (elt && elt.classList && elt.classList.contains("row-link")) {
      opener = elt;
      returnUrl = window.location.pathname + window.location.search;
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "track-dialog-content") { openDialog(); }
  });

  // A logo that cannot be loaded gives way to the partner's initials.
  document.addEventListener("error", function (event) {
    var img = event.target;
    if (!img || img.tagName !== "IMG" || !img.classList.contains("partner-logo")) { return; }
    var badge = document.createElement("span");
    badge.className = "partner-initials";
    badge.setAttribute("aria-hidden", "true");
    badge.textContent = (img.getAttribute("data-initials") || "").slice(0, 2);
    img.replaceWith(badge);
  }, true);

  document.addEventListener("impactChanged", function () { changed = true; });

  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.detail.target && event.detail.target.id === "chart-card") { drawChart(); }
  });

  function start() {
    var d = dialog();
    if (d) {
      d.addEventListener("close", closeDialog);
      if (d.getAttribute("data-open") === "true") { openDialog(); }
    }
    drawChart();
    var resizing = null;
    window.addEventListener("resize", function () {
      window.clearTimeout(resizing);
      resizing = window.setTimeout(drawChart, 150);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
