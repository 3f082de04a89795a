/* koxpulse report: draws every [data-chart] with uPlot from the embedded JSON.
   No network: uPlot is inlined above this script. Alert starts are drawn as
   vertical markers (red critical, amber warning, grey info). */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var PALETTE = ["#2f6fdf", "#e8743b", "#19a979", "#945ecf", "#ed4a7b", "#13a4b4"];
  var SEVERITY = { critical: "#d62728", warning: "#f0a30a", info: "#8c8c8c" };
  var TZ = "Asia/Shanghai";

  function fmtValue(unit) {
    return function (u, v) {
      if (v == null) return "–";
      if (unit === "rate") return (v * 100).toFixed(1) + "%";
      if (unit === "cny") return "¥" + Math.round(v).toLocaleString();
      return Math.round(v).toLocaleString();
    };
  }

  function markerPlugin(markers) {
    return {
      hooks: {
        draw: [
          function (u) {
            var ctx = u.ctx;
            var top = u.bbox.top;
            var bottom = u.bbox.top + u.bbox.height;
            ctx.save();
            ctx.lineWidth = 2 * uPlot.pxRatio;
            ctx.setLineDash([6 * uPlot.pxRatio, 4 * uPlot.pxRatio]);
            markers.forEach(function (m) {
              var x = Math.round(u.valToPos(m.t, "x", true));
              if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
              ctx.strokeStyle = SEVERITY[m.severity] || SEVERITY.info;
              ctx.beginPath();
              ctx.moveTo(x, top);
              ctx.lineTo(x, bottom);
              ctx.stroke();
            });
            ctx.restore();
          },
        ],
      },
    };
  }

  function build(el) {
    var spec = data.charts[el.getAttribute("data-chart")];
    var names = Object.keys(spec.y);
    var series = [{}];
    names.forEach(function (name, i) {
      series.push({
        label: name,
        stroke: PALETTE[i % PALETTE.length],
        width: 2,
        spanGaps: false,
        value: fmtValue(spec.unit),
      });
    });
    var opts = {
      width: Math.max(el.clientWidth, 280),
      height: el.clientWidth < 500 ? 200 : 240,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), TZ); },
      series: series,
      scales: { x: { time: true } },
      axes: [{}, { values: function (u, vals) { return vals.map(function (v) { return fmtValue(spec.unit)(u, v); }); }, size: 64 }],
      legend: { live: true },
      plugins: [markerPlugin(spec.markers || [])],
    };
    var columns = [spec.x];
    names.forEach(function (name) { columns.push(spec.y[name]); });
    var chart = new uPlot(opts, columns, el);
    return { el: el, chart: chart };
  }

  function inked(chart) {
    // a chart "rendered" when its canvas holds non-transparent pixels inside the plot area
    var c = chart.ctx.canvas;
    var px = chart.ctx.getImageData(0, 0, c.width, c.height).data;
    for (var i = 3; i < px.length; i += 4) if (px[i] !== 0) return true;
    return false;
  }

  var built = [];
  document.querySelectorAll("[data-chart]").forEach(function (el) { built.push(build(el)); });
  var pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(function () {
      built.forEach(function (b) {
        b.chart.setSize({ width: Math.max(b.el.clientWidth, 280), height: b.el.clientWidth < 500 ? 200 : 240 });
      });
    }, 100);
  });
  window.koxpulseReport = {
    charts: built.length,
    inked: function () { return built.filter(function (b) { return inked(b.chart); }).length; },
  };
  document.documentElement.setAttribute("data-charts", String(built.length));
})();
