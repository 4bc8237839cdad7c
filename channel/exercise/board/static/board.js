// The board's three clocks tick here between two updates from the server (#clocks carries the
// run's exercise seconds, world time and rates as of its last render).
(function () {
  "use strict";
  var rendered = null, since = 0;
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function hms(s) { s = Math.floor(s); return pad(Math.floor(s / 3600)) + ":" + pad(Math.floor(s % 3600 / 60)) + ":" + pad(s % 60); }
  function tick() {
    var now = new Date();
    var wall = document.getElementById("clock-wall");
    if (wall) { wall.textContent = hms(now.getHours() * 3600 + now.getMinutes() * 60 + now.getSeconds()); }
    var clocks = document.getElementById("clocks");
    if (!clocks || !clocks.dataset.world) { return; }
    if (clocks !== rendered) { rendered = clocks; since = now.getTime(); }
    var elapsed = (now.getTime() - since) / 1000;
    var exercise = Number(clocks.dataset.exercise) + elapsed * Number(clocks.dataset.rate);
    document.getElementById("clock-exercise").textContent = "T+" + hms(exercise);
    var world = new Date(Date.parse(clocks.dataset.world) + elapsed * Number(clocks.dataset.worldRate) * 1000);
    document.getElementById("clock-world").textContent = world.toISOString().slice(0, 19).replace("T", " ");
  }
  setInterval(tick, 1000);
  document.addEventListener("DOMContentLoaded", tick);
  document.addEventListener("htmx:afterSwap", tick);
}());
