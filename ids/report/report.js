/* otids report: draws the charts (Chart.js) and the communication map (Cytoscape.js) from the embedded
   JSON, and makes tables sortable and filterable. Nothing here fetches anything. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var SEV = {critical: "#7b1020", high: "#c62828", medium: "#ef8f00", low: "#3a7bd5", info: "#7d8a99"};
  var colors = data.colors;

  function shortLabel(s, binS) {  // "2026-11-22T05:58:10Z" -> "05:58:10" (or the date for day bins)
    return binS >= 86400 ? s.slice(0, 10) : (binS >= 60 ? s.slice(11, 16) : s.slice(11, 19));
  }

  function stacked(id, series, order, palette, yTitle) {
    var el = document.getElementById(id);
    if (!el || !series.labels.length) return;
    var ds = order.filter(function (k) { return series.series[k] && series.series[k].some(function (v) { return v > 0; }); })
      .map(function (k) {
        return {label: k, data: series.series[k], backgroundColor: palette[k] || "#999", borderWidth: 0};
      });
    new Chart(el, {
      type: "bar",
      data: {labels: series.labels.map(function (l) { return shortLabel(l, series.bin_s); }), datasets: ds},
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        scales: {x: {stacked: true, title: {display: true, text: "time (UTC), " + series.bin_s + " s per bar"}},
                 y: {stacked: true, beginAtZero: true, title: {display: true, text: yTitle}}},
        plugins: {legend: {position: "bottom"},
                  tooltip: {callbacks: {title: function (items) { return series.labels[items[0].dataIndex]; }}}}
      }
    });
  }

  stacked("timeline-chart", data.timeline, ["critical", "high", "medium", "low", "info"], SEV, "alerts");
  stacked("mix-chart", data.mix, Object.keys(data.overview.protocols), colors,
          data.source === "conn" ? "bytes" : "exchanges");

  var mapEl = document.getElementById("map-graph");
  if (mapEl && data.map.nodes.length) {
    var elements = [];
    data.map.groups.forEach(function (g) { elements.push({group: "nodes", data: {id: g.id, label: g.label}, classes: "grp"}); });
    data.map.nodes.forEach(function (n) {
      elements.push({group: "nodes", data: {id: n.id, label: n.label, parent: n.parent, role: n.role,
                                            color: data.roleColors[n.role] || "#8a94a6"},
                     position: {x: n.x, y: n.y}});
    });
    data.map.edges.forEach(function (e, i) {
      elements.push({group: "edges", data: {id: "e" + i, source: e.source, target: e.target, protocol: e.protocol,
                                            color: colors[e.protocol] || "#999", width: 1 + Math.min(5, Math.log10(1 + e.count)),
                                            alerts: e.alerts.join(", ")},
                     classes: e.alerting ? "alerting" : ""});
    });
    var many = data.map.edges.length > 150;
    var cy = cytoscape({
      container: mapEl, elements: elements, layout: {name: "preset", fit: true, padding: 30},
      wheelSensitivity: 0.3, minZoom: 0.05, maxZoom: 4, textureOnViewport: true,
      style: [
        {selector: "node", style: {"background-color": "data(color)", "label": "data(label)", "font-size": 10,
                                   "text-valign": "bottom", "text-margin-y": 3, "width": 18, "height": 18,
                                   "min-zoomed-font-size": 7, "border-width": 1, "border-color": "#fff"}},
        {selector: "node.grp", style: {"background-color": "#eef2f7", "background-opacity": 0.8, "border-color": "#b8c2d0",
                                       "border-width": 1, "label": "data(label)", "text-valign": "top",
                                       "font-size": many ? 30 : 13, "font-weight": "bold", "color": "#44505f", "padding": 18,
                                       "shape": "round-rectangle", "min-zoomed-font-size": 0}},
        // many links: straight, no arrows, fainter, so subnets and the alerting links stay readable
        {selector: "edge", style: many ? {"line-color": "data(color)", "width": "data(width)", "curve-style": "straight",
                                          "opacity": 0.35}
                                       : {"line-color": "data(color)", "width": "data(width)", "curve-style": "bezier",
                                          "target-arrow-shape": "triangle", "target-arrow-color": "data(color)",
                                          "arrow-scale": 0.7, "opacity": 0.75}},
        {selector: "edge.alerting", style: {"line-style": "dashed", "line-dash-pattern": [8, 3], "width": 4, "opacity": 1,
                                            "z-index": 10, "target-arrow-shape": "triangle",
                                            "target-arrow-color": "data(color)", "underlay-color": "#c62828",
                                            "underlay-opacity": 0.6, "underlay-padding": 5}},
        {selector: "node:selected", style: {"border-color": "#000", "border-width": 3}},
        {selector: ".faded", style: {"opacity": 0.12}}
      ]
    });
    if (!many) {
      // few links: the built-in force-directed layout, started from the grid (no random start, so the
      // picture is the same at every opening), pulls linked hosts together so that no link runs through an
      // unrelated host. If it makes two subnet boxes overlap, the grid stays.
      var leaves = cy.nodes().filter(function (n) { return !n.isParent(); });
      var grid = {};
      leaves.forEach(function (n) { grid[n.id()] = {x: n.position("x"), y: n.position("y")}; });
      cy.layout({name: "cose", randomize: false, animate: false, fit: true, padding: 30,
                 nodeDimensionsIncludeLabels: true, idealEdgeLength: function () { return 90; },
                 nodeRepulsion: function () { return 40000; }, componentSpacing: 80, numIter: 1000}).run();
      var boxes = cy.nodes(":parent").map(function (g) { return g.boundingBox(); });
      var overlap = boxes.some(function (a, i) {
        return boxes.slice(i + 1).some(function (b) {
          return !(a.x2 <= b.x1 || b.x2 <= a.x1 || a.y2 <= b.y1 || b.y2 <= a.y1);
        });
      });
      if (overlap) {
        leaves.positions(function (n) { return grid[n.id()]; });
        cy.fit(undefined, 30);
      }
    }
    cy.on("tap", "node", function (evt) {
      var n = evt.target;
      if (n.hasClass("grp")) return;
      cy.elements().addClass("faded");
      n.closedNeighborhood().removeClass("faded");
      n.closedNeighborhood().parents().removeClass("faded");
      n.parent().removeClass("faded");
    });
    cy.on("tap", function (evt) { if (evt.target === cy) cy.elements().removeClass("faded"); });
    cy.on("dbltap", "node", function (evt) {
      var a = document.getElementById("asset-" + evt.target.id());
      if (a) a.scrollIntoView();
    });
    var info = document.getElementById("map-info");
    cy.on("mouseover", "edge", function (evt) {
      var d = evt.target.data();
      info.textContent = d.source + " → " + d.target + " " + d.protocol + (d.alerts ? "  alerts: " + d.alerts : "");
    });
    cy.on("mouseover", "node", function (evt) {
      var d = evt.target.data();
      info.textContent = d.label + (d.role ? " (" + d.role + ")" : "");
    });
    if (cy.zoom() > 1.2) { cy.zoom(1.2); cy.center(); }  // a handful of hosts: no giant labels
    var img = document.getElementById("map-print");
    if (img) img.src = cy.png({full: true, scale: 2, maxWidth: 2000, maxHeight: 2400, bg: "#ffffff"});
    window.otidsMap = cy;
  }

  // tables: click a header to sort (numbers by value), type in the box above to filter rows
  function cellValue(td) {
    var v = td.getAttribute("data-v");
    if (v === null) v = td.textContent.trim();
    var n = Number(v.replace(/,/g, ""));
    return v !== "" && !isNaN(n) ? n : v.toLowerCase();
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var ths = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(ths, function (th, col) {
      th.addEventListener("click", function () {
        var asc = !th.classList.contains("asc");
        Array.prototype.forEach.call(ths, function (h) { h.classList.remove("asc", "desc"); });
        th.classList.add(asc ? "asc" : "desc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a.cells[col]), y = cellValue(b.cells[col]);
          if (typeof x !== typeof y) { x = String(x); y = String(y); }
          return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("input.filter"), function (input) {
    var table = document.getElementById(input.getAttribute("data-table"));
    input.addEventListener("input", function () {
      var q = input.value.toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        r.style.display = !q || r.textContent.toLowerCase().indexOf(q) >= 0 ? "" : "none";
      });
    });
  });
  document.body.setAttribute("data-ready", "1");
})();
