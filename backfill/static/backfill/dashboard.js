// Refresh the live section from its fragment URL while a job is active,
// replacing the HTML only when it changed, so nothing flickers.
(function () {
  "use strict";
  function confirmForms(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
      });
    });
  }
  function poll(section) {
    var last = section.innerHTML;
    var timer = window.setInterval(function () {
      if (document.activeElement && section.contains(document.activeElement) &&
          document.activeElement.tagName === "INPUT") { return; }
      fetch(section.dataset.refresh, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (html === null || html === last) { return; }
          last = html;
          section.innerHTML = html;
          confirmForms(section);
        })
        .catch(function () { /* keep the last view; try again next tick */ });
    }, 1000);
    return timer;
  }
  document.addEventListener("DOMContentLoaded", function () {
    confirmForms(document);
    var section = document.getElementById("live");
    if (section) { poll(section); }
  });
})();
