// The review console's one script: counts each case's time left down, once a second.
// The page works without it (the server renders the time left when the page loads).
(function () {
  "use strict";
  var started = Date.now();
  function text(seconds) {
    var sign = seconds < 0 ? "-" : "";
    seconds = Math.abs(Math.trunc(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    var mm = (h ? String(m).padStart(2, "0") : String(m)), ss = String(s).padStart(2, "0");
    return sign + (h ? h + ":" : "") + mm + ":" + ss;
  }
  function tick() {
    var gone = (Date.now() - started) / 1000;
    document.querySelectorAll(".countdown[data-seconds]").forEach(function (el) {
      var left = parseFloat(el.getAttribute("data-seconds")) - gone;
      el.textContent = text(left);
      el.classList.toggle("overdue", left < 0);
    });
  }
  document.addEventListener("DOMContentLoaded", function () { tick(); setInterval(tick, 1000); });
})();
