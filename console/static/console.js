// orderbus console: the few behaviours a page needs beyond forms and htmx.
// No inline script anywhere (the console's Content-Security-Policy forbids it).
(function () {
  "use strict";
  // <form data-confirm="..."> asks before it is sent.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  }, true);
  // <button data-fullscreen> puts the page in full screen (the dashboard).
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-fullscreen]");
    if (!button) return;
    if (document.fullscreenElement) {
      document.exitFullscreen();
    } else if (document.documentElement.requestFullscreen) {
      document.documentElement.requestFullscreen();
    }
  });
})();
