/* Balise live alert page: follows the alert by server-sent events (polling if they fail),
   draws the map if Leaflet and tiles are there, and sends the contact's answer without
   leaving the page. Everything shown is also in the HTML: without JavaScript the page
   still works (the buttons are a plain form). */
(function () {
  "use strict";
  var page = document.getElementById("page");
  var state = JSON.parse(document.getElementById("initial-state").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var map = null, layers = null;

  function text(id, value) { var el = $(id); if (el && el.textContent !== value) el.textContent = value || ""; }
  // The text, not innerHTML: that spells a no-break space (French "réseau :") "&nbsp;".
  function tpl(id) { return $(id).content.textContent; }

  var tileErrors = 0, tilesLoaded = 0;
  function mapNote(id) {
    var note = $("map-status");
    if (id) { note.textContent = tpl(id); note.hidden = false; } else { note.hidden = true; }
  }
  function tilesState() {
    // Tiles that all fail (a weak network, a blocked server) leave a grey box: say so.
    if (tileErrors > 0 && tilesLoaded === 0) mapNote("t-tiles-off");
    else if (tilesLoaded > 0) mapNote(null);
  }
  function unfocusable() {
    // The map is hidden from screen readers (the position is written above it): nothing
    // in it may take the keyboard focus either.
    Array.prototype.forEach.call($("map").querySelectorAll("a, button, [tabindex]"), function (el) {
      el.setAttribute("tabindex", "-1");
    });
    $("map").removeAttribute("tabindex");
  }

  function drawMap() {
    if (!state.fix) { mapNote(null); return; }
    if (!window.L) {
      if (document.readyState === "complete") mapNote("t-map-off");
      return;
    }
    try {
      if (!map) {
        $("map").innerHTML = "";
        map = L.map("map", { zoomControl: false, attributionControl: true, keyboard: false });
        var tiles = page.dataset.tilesUrl;
        if (tiles) {
          var layer = L.tileLayer(tiles, { maxZoom: 19, attribution: page.dataset.tilesAttribution });
          layer.on("tileerror", function () { tileErrors += 1; tilesState(); });
          layer.on("tileload", function () { tilesLoaded += 1; tilesState(); });
          layer.addTo(map);
          mapNote(null);
        } else {
          mapNote("t-no-tiles");
        }
        layers = L.layerGroup().addTo(map);
      }
      layers.clearLayers();
      var here = [state.fix.lat, state.fix.lon];
      if (state.trail.length > 1) L.polyline(state.trail, { color: "#1d4ed8", weight: 3, opacity: .7 }).addTo(layers);
      if (state.fix.acc) L.circle(here, { radius: state.fix.acc, color: "#b00020", weight: 1, fillOpacity: .12 }).addTo(layers);
      L.circleMarker(here, { radius: 8, color: "#fff", weight: 3, fillColor: "#b00020", fillOpacity: 1 }).addTo(layers);
      var zoom = state.fix.acc && state.fix.acc > 500 ? 14 : 17;
      map.setView(here, map._loaded ? map.getZoom() : zoom);
      unfocusable();
    } catch (e) {
      mapNote("t-map-off");
    }
  }

  function show(id, value) { var el = $(id); el.hidden = !value; }

  function render(s) {
    state = s;
    page.className = "alert kind-" + s.kind + " status-" + s.status + " tone-" + s.tone;
    text("headline", s.headline);
    text("since", s.since_text);
    text("status", s.status_text);
    show("dont-call", s.dont_call);
    text("duress-text", s.duress_text); show("duress-text", s.duress_text);
    text("confirm-text", s.confirm_text); show("confirm-text", s.confirm_text);
    var police = $("police-line");
    if (police.firstChild && police.firstChild.nodeType === 3) police.firstChild.textContent = (s.police_line || "") + " ";
    show("police-line", s.police_line);
    $("answer-section").hidden = !s.active;
    $("todo").hidden = !s.active;
    $("fix").hidden = !s.fix;
    $("nofix").hidden = !!s.fix;
    text("reached", s.reached_text); show("reached", s.reached_text);
    if (s.fix) {
      text("place", s.fix.place_text);
      text("coords", s.fix.coords);
      text("accuracy", s.fix.accuracy_text);
      text("fix-age", s.fix.updated_text);
      $("fix-age").className = s.fix.stale ? "stale" : "";
      ["geo", "apple", "google", "osm"].forEach(function (k) { $("map-" + k).href = s.fix.links[k]; });
    }
    var list = $("answers");
    list.innerHTML = "";
    if (!s.answers.length) {
      var none = document.createElement("li"); none.className = "none"; none.textContent = tpl("t-nobody"); list.appendChild(none);
    }
    s.answers.forEach(function (a) {
      var li = document.createElement("li");
      if (a.mine) li.className = "mine";
      li.textContent = a.text + (a.mine ? " " + tpl("t-you") : "");
      list.appendChild(li);
    });
    Array.prototype.forEach.call(document.querySelectorAll("#answer-form button"), function (b) {
      var chosen = b.value === s.my_answer;
      b.classList.toggle("chosen", chosen);
      b.setAttribute("aria-pressed", chosen ? "true" : "false");
    });
    drawMap();
  }

  // -- following the alert ------------------------------------------------------------
  var pollTimer = null;
  function poll() {
    fetch(page.dataset.stateUrl, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) { if (r.status === 404 || r.status === 410) { stop(); location.reload(); } return r.ok ? r.json() : null; })
      .then(function (s) { if (s) { render(s); if (!s.active) stop(); } })
      .catch(function () {});
  }
  function startPolling() { if (!pollTimer) { pollTimer = setInterval(poll, 5000); } }
  function stop() { if (pollTimer) { clearInterval(pollTimer); pollTimer = null; } if (source) source.close(); }

  var source = null, failures = 0;
  if (state.active) {
    if (window.EventSource) {
      source = new EventSource(page.dataset.eventsUrl);
      source.onmessage = function (e) {
        failures = 0;
        var s = JSON.parse(e.data);
        render(s);
        if (!s.active) stop();
      };
      source.addEventListener("expired", function () { stop(); location.reload(); });
      source.onerror = function () {
        // The browser retries by itself; after a few failures poll as well.
        failures += 1;
        if (failures >= 3) startPolling();
      };
    } else {
      startPolling();
    }
  }

  // -- answering ----------------------------------------------------------------------
  var form = $("answer-form");
  form.addEventListener("submit", function (e) {
    if (!window.fetch || !window.FormData) return;  // plain form post
    e.preventDefault();
    var button = e.submitter || document.activeElement;
    var body = new URLSearchParams();
    body.append("answer", button.value);
    var buttons = form.querySelectorAll("button");
    Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
    fetch(page.dataset.answerUrl, { method: "POST", body: body, headers: { Accept: "application/json" } })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, j: j }; }); })
      .then(function (res) { render(res.ok ? res.j : (res.j.state || state)); })
      .catch(function () {
        var input = document.createElement("input");
        input.type = "hidden"; input.name = "answer"; input.value = button.value;
        form.appendChild(input);
        form.submit();
      })
      .then(function () { Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; }); });
  });

  window.addEventListener("load", drawMap);
  mapNote(null);
  render(state);
})();
