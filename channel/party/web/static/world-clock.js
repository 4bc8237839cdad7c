// The exercise clock, ticking between notices without asking anyone: the page holds the world
// time when it was rendered (data-world) and how fast world time runs (data-rate, world seconds
// per wall second; 0 while paused or once ended). Deadlines (data-due, world time) count down
// from it. When a notice arrives, htmx swaps in a fresh reading and the tick starts from there.
(function () {
  "use strict";
  var seen = new WeakMap(); // element -> performance.now() when first seen

  function stamp(ms) {
    return new Date(ms).toISOString().slice(0, 19).replace("T", " ") + "Z";
  }

  function span(seconds) {
    var whole = Math.round(Math.abs(seconds));
    function two(n) { return (n < 10 ? "0" : "") + n; }
    if (whole < 60) return whole + "s";
    if (whole < 3600) return Math.floor(whole / 60) + "m" + two(whole % 60) + "s";
    if (whole < 86400) return Math.floor(whole / 3600) + "h" + two(Math.floor(whole % 3600 / 60)) + "m";
    return Math.floor(whole / 86400) + "d" + Math.floor(whole % 86400 / 3600) + "h";
  }

  function since(element, now) {
    if (!seen.has(element)) seen.set(element, now);
    return (now - seen.get(element)) / 1000;
  }

  function tick() {
    var now = performance.now();
    var world = null;
    var rate = 0;
    var clock = document.getElementById("world-clock");
    if (clock && clock.dataset.world) {
      rate = parseFloat(clock.dataset.rate) || 0;
      world = Date.parse(clock.dataset.world) + since(clock, now) * rate * 1000;
      clock.textContent = stamp(world);
      clock.setAttribute("datetime", new Date(world).toISOString());
    }
    document.querySelectorAll("[data-wall]").forEach(function (wall) {
      wall.textContent = stamp(Date.now());
    });
    if (world === null) return;
    document.querySelectorAll("[data-due]").forEach(function (cell) {
      var left = (Date.parse(cell.dataset.due) - world) / 1000;
      var row = cell.closest("tr");
      if (left <= 0) {
        cell.textContent = "passed";
        if (row) row.classList.add("passed");
        return;
      }
      var wall = rate > 0 ? " (about " + span(left / rate) + " at this speed)" : " (the clock stands still)";
      cell.textContent = span(left) + " world time" + wall;
    });
  }

  tick();
  setInterval(tick, 1000);
})();
