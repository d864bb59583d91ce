// Live countdowns: each element with data-deadline (RFC 3339) shows the hours left until it,
// or how long it is overdue, updated every 30 seconds. Without JavaScript the server's text stays.
(function () {
  "use strict";
  function text(ms) {
    var minutes = Math.floor(Math.abs(ms) / 60000);
    var shown = Math.floor(minutes / 60) + " h " + String(minutes % 60).padStart(2, "0") + " min";
    return ms >= 0 ? shown + " left" : "overdue by " + shown;
  }
  function tick() {
    var clocks = document.querySelectorAll("[data-deadline]");
    for (var i = 0; i < clocks.length; i++) {
      var ms = Date.parse(clocks[i].getAttribute("data-deadline")) - Date.now();
      clocks[i].textContent = text(ms);
      clocks[i].classList.toggle("overdue", ms < 0);
    }
  }
  tick();
  setInterval(tick, 30000);
})();
