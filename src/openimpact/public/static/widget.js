/*
 * OpenImpact Impact Counter, in one line on any site:
 *
 *   <script async src="https://impact.example.org/widget.js"
 *     data-openimpact-counter="my-shop" data-types="tree_planted,waste_removed"
 *     data-theme="light" data-locale="en"></script>
 *
 * It renders right after its own script tag, inside a shadow root: the host
 * page's CSS cannot reach it and its CSS cannot reach the host page. Its
 * styles are a constructed stylesheet adopted by the shadow root, which works
 * under a host CSP that forbids inline styles; where constructed stylesheets
 * are missing it links the same rules from its own origin instead. It builds
 * every node with the DOM API (no innerHTML), sets no cookie, defines no
 * global, and sends one request: to its own origin, without credentials or
 * referrer. Any failure shows a short note and leaves the host page alone.
 *
 * The server fills in STRINGS, CSS and ICONS when it serves this file
 * (public/router.py), from the same sources as the pages.
 */
(function () {
  "use strict";

  var STRINGS = "__OPENIMPACT_STRINGS__";
  var CSS = "__OPENIMPACT_CSS__";
  var ICONS = "__OPENIMPACT_ICONS__";
  var TYPES = ["tree_planted", "waste_removed", "carbon_captured", "coral_restored", "money_donated"];
  var SVG = "http://www.w3.org/2000/svg";
  // Marks a script tag as handled, across several copies of this script on
  // one page, without touching the host page's DOM or globals.
  var DONE = typeof Symbol === "function" ? Symbol.for("openimpact.counter") : "__openimpactCounter";

  function pickLocale(wanted) {
    var primary = String(wanted || "").toLowerCase().split(/[-_]/)[0];
    return Object.prototype.hasOwnProperty.call(STRINGS, primary) ? primary : "en";
  }

  function pickTypes(attribute) {
    var chosen = [];
    String(attribute || "").split(",").forEach(function (part) {
      var type = part.trim();
      if (!type) return;
      if (TYPES.indexOf(type) < 0) {
        warn("unknown type '" + type + "' in data-types; known: " + TYPES.join(", "));
      } else if (chosen.indexOf(type) < 0) {
        chosen.push(type);
      }
    });
    return chosen;
  }

  function warn(message) {
    if (window.console && console.warn) console.warn("OpenImpact counter: " + message);
  }

  function format(type, amount, locale) {
    if (type === "money_donated") {
      return new Intl.NumberFormat(locale, { style: "currency", currency: "USD" }).format(amount / 100);
    }
    return new Intl.NumberFormat(locale).format(amount);
  }

  function el(name, className, text) {
    var node = document.createElement(name);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function icon(type) {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "oi-icon");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS(SVG, "path");
    path.setAttribute("d", ICONS[type]);
    svg.appendChild(path);
    return svg;
  }

  function adoptStyles(root, origin) {
    try {
      if ("adoptedStyleSheets" in root && typeof CSSStyleSheet === "function") {
        var sheet = new CSSStyleSheet();
        sheet.replaceSync(CSS);
        root.adoptedStyleSheets = [sheet];
        return;
      }
    } catch (error) {
      // Fall through to the stylesheet link.
    }
    var link = el("link");
    link.rel = "stylesheet";
    link.href = origin + "/public/static/counter.css";
    root.appendChild(link);
  }

  function fill(box, profile, types, locale, profileUrl) {
    var words = STRINGS[locale];
    var totals = profile.totals || {};
    if (!types.length) {
      types = TYPES.filter(function (type) { return totals[type] > 0; });
      if (!types.length) types = ["tree_planted"];
    }
    var link = el("a", "oi-link");
    link.href = profileUrl;
    link.target = "_blank";
    link.rel = "noopener";
    link.appendChild(el("span", "oi-name", profile.name));
    var list = el("span", "oi-totals");
    types.forEach(function (type) {
      var amount = Number(totals[type] || 0);
      var item = el("span", "oi-total oi-" + type);
      item.appendChild(icon(type));
      var text = el("span", "oi-text");
      text.appendChild(el("span", "oi-value", format(type, amount, locale)));
      text.appendChild(document.createTextNode(" "));
      text.appendChild(el("span", "oi-unit", words.types[type][amount === 1 ? 0 : 1]));
      item.appendChild(text);
      list.appendChild(item);
    });
    link.appendChild(list);
    link.appendChild(el("span", "oi-more", words.counter_more + " \u2192"));
    box.textContent = "";
    box.appendChild(link);
  }

  function mount(script) {
    if (script[DONE]) return;
    script[DONE] = true;
    var slug = (script.getAttribute("data-openimpact-counter") || "").trim().toLowerCase();
    var src = script.src;
    // The server this script came from, including any path prefix before /widget.js.
    var origin = src.slice(0, src.lastIndexOf("/"));
    var locale = pickLocale(
      script.getAttribute("data-locale") || document.documentElement.lang || navigator.language
    );
    var theme = script.getAttribute("data-theme") === "dark" ? "dark" : "light";
    var types = pickTypes(script.getAttribute("data-types"));

    var host = document.createElement("openimpact-counter");
    script.parentNode.insertBefore(host, script.nextSibling);
    var root = host.attachShadow({ mode: "open" });
    adoptStyles(root, origin);
    var box = el("div", "oi-counter oi-theme-" + theme);
    box.setAttribute("lang", locale);
    box.setAttribute("aria-busy", "true");
    root.appendChild(box);

    function unavailable(reason) {
      box.removeAttribute("aria-busy");
      box.className += " oi-unavailable";
      box.textContent = STRINGS[locale].counter_unavailable;
      warn(reason);
    }

    if (!/^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$/.test(slug)) {
      unavailable("data-openimpact-counter must name a profile slug");
      return;
    }
    var profileUrl = origin + "/impact/" + slug + (locale === "en" ? "" : "?locale=" + locale);
    fetch(origin + "/public/v1/profiles/" + slug, {
      credentials: "omit",
      mode: "cors",
      referrerPolicy: "no-referrer",
    })
      .then(function (response) {
        if (!response.ok) throw new Error("the profile answered " + response.status);
        return response.json();
      })
      .then(function (profile) {
        box.removeAttribute("aria-busy");
        fill(box, profile, types, locale, profileUrl);
      })
      .catch(function (error) {
        unavailable(String(error && error.message ? error.message : error));
      });
  }

  function mountAll() {
    var current = document.currentScript;
    if (current && current.hasAttribute("data-openimpact-counter")) mount(current);
    // Async copies may run after currentScript is gone: pick up any tag
    // of ours that is still waiting.
    var scripts = document.querySelectorAll("script[data-openimpact-counter]");
    for (var i = 0; i < scripts.length; i++) {
      if (/\/widget\.js(\?|$)/.test(scripts[i].src)) mount(scripts[i]);
    }
  }

  try {
    mountAll();
  } catch (error) {
    warn(String(error && error.message ? error.message : error));
  }
})();
