/* Balise console: the on-call board follows the open alerts by polling HTML fragments
   (the server renders everything; nothing here builds markup), rings and changes the
   title when a new alert arrives, draws the map of the alert in view, and writes ages
   ("2 min ago") from the times in the page. */
(function () {
  "use strict";
  var POLL_MS = 1000;
  var board = document.getElementById("board");
  if (!board) return;
  var $ = function (id) { return document.getElementById(id); };
  var lang = document.documentElement.lang || "fr";

  // -- ages ---------------------------------------------------------------------------
  var rtf = window.Intl && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(lang, { numeric: "auto", style: "short" }) : null;
  function age(iso) {
    var s = Math.round((Date.parse(iso) - Date.now()) / 1000);
    if (!rtf || isNaN(s)) return "";
    var a = Math.abs(s);
    if (a < 60) return rtf.format(s, "second");
    if (a < 3600) return rtf.format(Math.trunc(s / 60), "minute");
    if (a < 86400) return rtf.format(Math.trunc(s / 3600), "hour");
    return rtf.format(Math.trunc(s / 86400), "day");
  }
  function ages() {
    Array.prototype.forEach.call(document.querySelectorAll("time[data-age]"), function (t) {
      var text = age(t.getAttribute("datetime"));
      if (t.textContent !== text) t.textContent = text;
    });
  }

  // -- ringing ------------------------------------------------------------------------
  var audio = null, baseTitle = document.title, flashing = null;
  function audioContext() {
    if (!audio && (window.AudioContext || window.webkitAudioContext)) {
      audio = new (window.AudioContext || window.webkitAudioContext)();
    }
    return audio;
  }
  function soundButton() {
    var ctx = audioContext();
    $("sound").hidden = !ctx || ctx.state === "running";
  }
  function ring() {
    var ctx = audioContext();
    if (!ctx) return;
    if (ctx.state !== "running") { ctx.resume().catch(function () {}); soundButton(); }
    [0, 0.45, 0.9].forEach(function (t) {
      var osc = ctx.createOscillator(), gain = ctx.createGain();
      osc.type = "square"; osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.2, ctx.currentTime + t);
      gain.gain.setValueAtTime(0, ctx.currentTime + t + 0.3);
      osc.connect(gain); gain.connect(ctx.destination);
      osc.start(ctx.currentTime + t); osc.stop(ctx.currentTime + t + 0.32);
    });
  }
  function alarm(count) {
    board.dataset.newAlerts = String(count);
    var label = "(" + count + ") " + $("t-alert-title").innerHTML + " – " + baseTitle;
    document.title = label;
    if (flashing) clearInterval(flashing);
    var on = true;
    var beats = 0;
    flashing = setInterval(function () {
      on = !on; document.title = on ? label : baseTitle;
      beats += 1;
      if (beats % 10 === 0) ring();  // rings again every 10 s until someone touches the page
    }, 1000);
    ring();
  }
  function calm() {
    if (flashing) { clearInterval(flashing); flashing = null; }
    document.title = baseTitle;
    delete board.dataset.newAlerts;
  }
  ["click", "keydown"].forEach(function (e) { document.addEventListener(e, calm); });
  $("sound").addEventListener("click", function () { var ctx = audioContext(); if (ctx) ctx.resume().then(soundButton); });

  // -- polling ------------------------------------------------------------------------
  function ids(root) {
    return Array.prototype.map.call(root.querySelectorAll("[data-alert]"), function (el) { return el.dataset.alert; });
  }
  var known = ids($("list")), fresh = 0;
  function follow(url, target, onChange) {
    var last = null, busy = false, version = null;
    function tick() {
      if (busy) return;
      busy = true;
      // The version held goes back with each poll: an unchanged fragment is an empty 304.
      var headers = { "X-Requested-With": "fetch" };
      if (version) headers["If-None-Match"] = version;
      fetch(url, { cache: "no-store", credentials: "same-origin", headers: headers })
        .then(function (r) {
          if (r.redirected || r.status === 403) { location.reload(); return null; }
          if (!r.ok) return null;
          version = r.headers.get("ETag");
          return r.text();
        })
        .then(function (html) {
          if (html === null) return;
          if (last === null) last = target.innerHTML;
          if (html !== last) { last = html; target.innerHTML = html; onChange(); ages(); }
        })
        .catch(function () {})
        .then(function () { busy = false; });
    }
    setInterval(tick, POLL_MS);
  }
  follow(board.dataset.listUrl, $("list"), function () {
    var now = ids($("list"));
    var added = now.filter(function (id) { return known.indexOf(id) < 0; });
    added.forEach(function (id) {
      var el = $("list").querySelector("[data-alert='" + id + "']");
      if (el) el.classList.add("new");
    });
    known = now;
    if (added.length) { fresh += added.length; alarm(fresh); }
  });
  document.addEventListener("click", function () { fresh = 0; });

  // -- the alert in view --------------------------------------------------------------
  var live = $("live"), map = null, layers = null, mapEl = $("map"), mapOff = $("map-off"), userMoved = false;
  function placeMap() {
    // The map is made once and moved into each new rendering of the fragment.
    var slot = $("map-slot");
    if (!slot || !mapEl) return;
    if (mapEl.parentNode !== slot) { slot.appendChild(mapEl); slot.appendChild(mapOff); if (map) map.invalidateSize(false); }
  }
  function drawMap() {
    placeMap();
    var fix = $("fix");
    if (!fix || !fix.dataset.lat) { $("map").hidden = true; return; }
    $("map").hidden = false;
    if (!window.L) { $("map-off").hidden = false; return; }
    try {
      var here = [parseFloat(fix.dataset.lat), parseFloat(fix.dataset.lon)];
      var acc = parseFloat(fix.dataset.acc);
      if (!map) {
        map = L.map("map", { zoomControl: true });
        var tiles = board.dataset.tilesUrl;
        if (tiles) {
          L.tileLayer(tiles, { maxZoom: 19, attribution: board.dataset.tilesAttribution })
            .on("tileerror", function () { $("map-off").hidden = false; }).addTo(map);
        } else {
          $("map-off").hidden = false;
        }
        layers = L.layerGroup().addTo(map);
        map.on("dragstart", function () { userMoved = true; });
      }
      var first = !userMoved;
      layers.clearLayers();
      var trail = (fix.dataset.trail || "").split(";").filter(Boolean).map(function (p) {
        var ll = p.split(","); return [parseFloat(ll[0]), parseFloat(ll[1])];
      });
      if (first) {
        // The whole trail in view, until the worker moves the map herself.
        if (trail.length > 1) map.fitBounds(L.latLngBounds(trail).extend(here), { padding: [50, 50], maxZoom: 17 });
        else map.setView(here, acc > 500 ? 14 : 16);
      }
      if (trail.length > 1) L.polyline(trail, { color: "#1d4ed8", weight: 3, opacity: .7, className: "trail" }).addTo(layers);
      if (acc) L.circle(here, { radius: acc, color: "#b00020", weight: 1, fillOpacity: .12 }).addTo(layers);
      L.circleMarker(here, { radius: 8, color: "#fff", weight: 3, fillColor: "#b00020", fillOpacity: 1, className: "here" }).addTo(layers);
      if (!first && !map.getBounds().contains(here)) map.panTo(here);
    } catch (e) {
      $("map-off").hidden = false;
    }
  }
  if (live) {
    follow(live.dataset.url, live, function () {
      drawMap();
      var body = $("live-body"), actions = $("actions"), take = $("take");
      if (body && body.dataset.active === "0" && take) take.disabled = true;
      if (actions && body) actions.classList.toggle("closed", body.dataset.active === "0");
    });
    window.addEventListener("load", drawMap);
  }

  ages();
  setInterval(ages, 1000);
  soundButton();
})();
