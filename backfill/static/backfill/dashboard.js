// Refresh the live section from its fragment URL while a job runs, one part at
// a time: a part (data-part) is replaced only when it changed and nobody is
// using it (focus inside, a value typed, a disclosure opened), so a form being
// filled is never lost. Polling stops once the fragment says nothing runs.
(function () {
  "use strict";
  var PERIOD_MS = 1000;

  function confirmForms(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
      });
    });
  }

  // A part pressed with the main button: swapping it between press and
  // release would swallow the click (a button pressed, then replaced, never
  // submits). Only a click is guarded: a press whose release may never reach
  // the page (a context menu, a drag, the window left) ends the guard at once.
  var pressed = null;
  function release() { pressed = null; }
  document.addEventListener("pointerdown", function (event) {
    var target = event.button === 0 && event.target instanceof Element ? event.target : null;
    pressed = target ? target.closest("[data-part]") : null;
  }, true);
  ["pointerup", "pointercancel"].forEach(function (type) {
    document.addEventListener(type, function () {
      // After the click this release leads to has been dispatched.
      window.setTimeout(release, 0);
    }, true);
  });
  ["contextmenu", "dragstart", "visibilitychange"].forEach(function (type) {
    document.addEventListener(type, release, true);
  });
  window.addEventListener("blur", release);

  function inUse(part) {
    if (pressed !== null && (part === pressed || part.contains(pressed))) { return true; }
    if (document.activeElement && part.contains(document.activeElement) &&
        document.activeElement !== document.body) { return true; }
    if (part.querySelector("details[open]")) { return true; }
    var fields = part.querySelectorAll("input, select, textarea");
    for (var i = 0; i < fields.length; i++) {
      var field = fields[i];
      if (field.type === "hidden") { continue; }
      if (field.tagName === "SELECT") {
        for (var j = 0; j < field.options.length; j++) {
          if (field.options[j].selected !== field.options[j].defaultSelected) { return true; }
        }
      } else if (field.value !== field.defaultValue) { return true; }
    }
    return false;
  }

  // What each part showed when last written, as the server sent it. Compared
  // with the server's next answer rather than with the page, which the browser
  // or an extension may have touched (a style on an input) without the server
  // changing anything. A form's CSRF token is masked afresh on every answer, so
  // it is left out: a part whose only change is that token has not changed
  // (its tokens are renewed in place, see renewTokens).
  var written = new WeakMap();

  function sent(part) {
    var copy = part.cloneNode(true);
    copy.querySelectorAll("input[name=csrfmiddlewaretoken]").forEach(function (token) {
      token.setAttribute("value", "");
    });
    return copy.outerHTML;
  }

  function unchanged(current, incoming) {
    var before = written.has(current) ? written.get(current) : sent(current);
    return before === sent(incoming);
  }

  // A kept part takes the answer's CSRF tokens: the secret behind them
  // changes when the user signs in again (in another tab, say), and a form
  // holding the old one would be refused.
  function renewTokens(current, incoming) {
    var fresh = incoming.querySelectorAll("input[name=csrfmiddlewaretoken]");
    current.querySelectorAll("input[name=csrfmiddlewaretoken]").forEach(function (token, i) {
      if (fresh[i]) {
        token.value = fresh[i].value;
        token.setAttribute("value", fresh[i].value);
      }
    });
  }

  function remember(section) {
    section.querySelectorAll("[data-part]").forEach(function (part) { written.set(part, sent(part)); });
  }

  function isLive(root) {
    var marker = root.querySelector("[data-live]");
    return marker !== null && marker.dataset.live === "true";
  }

  function note(live) {
    var line = document.getElementById("live-note");
    if (line) {
      line.textContent = live ? "Updated every second while a job runs."
        : "Nothing is running: this page no longer updates by itself. Reload to see changes.";
    }
  }

  // Replace the parts that changed; a part is added or dropped only by a
  // whole-section swap, done only when no part of the section is in use.
  function apply(section, html) {
    var next = document.createElement("div");
    next.innerHTML = html;
    var current = section.querySelectorAll("[data-part]");
    var incoming = next.querySelectorAll("[data-part]");
    var sameShape = current.length === incoming.length;
    for (var i = 0; sameShape && i < current.length; i++) {
      sameShape = current[i].dataset.part === incoming[i].dataset.part;
    }
    if (!sameShape) {
      for (var k = 0; k < current.length; k++) { if (inUse(current[k])) { return false; } }
      section.innerHTML = html;
      remember(section);
      confirmForms(section);
      return true;
    }
    var complete = true;
    for (var n = 0; n < current.length; n++) {
      if (unchanged(current[n], incoming[n])) { renewTokens(current[n], incoming[n]); continue; }
      if (inUse(current[n])) { complete = false; continue; }
      var fresh = document.importNode(incoming[n], true);
      written.set(fresh, sent(incoming[n]));
      current[n].replaceWith(fresh);
      confirmForms(fresh);
    }
    return complete;
  }

  // One request at a time, the next asked for only once this one is answered,
  // so an older answer can never land after a newer one. A refused or
  // redirected answer (signed out, job gone, server error) is not applied; after
  // a few in a row the page stops asking and says so.
  var MAX_FAILURES = 5;
  // Updates a reader has paused (WCAG 2.2.2): nothing moves under them until resumed.
  var readerPaused = false;

  function offerPause() {
    var toggle = document.getElementById("live-toggle");
    if (!toggle) { return; }
    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      readerPaused = !readerPaused;
      toggle.textContent = readerPaused ? "Resume updates" : "Pause updates";
      var line = document.getElementById("live-note");
      if (line) { line.textContent = readerPaused ? "Updates paused." : "Updated every second while a job runs."; }
    });
  }

  function stopOffering() {
    var toggle = document.getElementById("live-toggle");
    if (toggle) { toggle.hidden = true; }
  }

  function poll(section) {
    var last = null;
    var pending = false;  // parts of the last answer left alone while in use
    var failures = 0;
    function ask() {
      if (readerPaused) { window.setTimeout(ask, PERIOD_MS); return; }
      fetch(section.dataset.refresh, { credentials: "same-origin" })
        .then(function (response) {
          return response.ok && !response.redirected ? response.text() : null;
        })
        .catch(function () { return null; })
        .then(function (html) {
          if (html === null) {
            failures += 1;
            if (failures >= MAX_FAILURES) {
              var line = document.getElementById("live-note");
              if (line) { line.textContent = "The server stopped answering: this page no longer updates by itself. Reload to try again."; }
              stopOffering();
              return;
            }
            window.setTimeout(ask, PERIOD_MS * Math.pow(2, failures));
            return;
          }
          failures = 0;
          if (html !== last || pending) {
            last = html;
            pending = !apply(section, html);
            var next = document.createElement("div");
            next.innerHTML = html;
            // The last answer is kept asking for until every part of it is shown.
            if (!isLive(next) && !pending) { note(false); stopOffering(); return; }
          }
          window.setTimeout(ask, document.hidden ? PERIOD_MS * 5 : PERIOD_MS);
        });
    }
    window.setTimeout(ask, PERIOD_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    confirmForms(document);
    var section = document.getElementById("live");
    if (!section) { return; }
    remember(section);
    var live = isLive(section);
    note(live);
    if (live) { offerPause(); poll(section); }
  });
})();
