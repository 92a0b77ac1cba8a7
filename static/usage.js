// The /usage page: draw the charts from the server's data, and prepend new requests as they happen.
(function () {
  const data = JSON.parse(document.getElementById("chart-data").textContent);
  const palette = ["#2f5cff", "#12b76a", "#f79009", "#ee46bc", "#7a5af8", "#06aed4", "#f04438", "#667085"];

  new Chart(document.getElementById("cost-by-model"), {
    type: "doughnut",
    data: { labels: data.byModel.labels, datasets: [{ data: data.byModel.costs, backgroundColor: palette }] },
    options: { plugins: { legend: { position: "bottom" } } },
  });
  new Chart(document.getElementById("daily-cost"), {
    type: "bar",
    data: { labels: data.daily.labels, datasets: [{ label: "credits", data: data.daily.costs, backgroundColor: "#2f5cff" }] },
    options: { scales: { y: { beginAtZero: true } }, plugins: { legend: { display: false } } },
  });

  const logs = document.getElementById("logs");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let retry = 1000;
  function connect() {
    const socket = new WebSocket(`${scheme}://${location.host}/ws/usage?org=${logs.dataset.org}`);
    socket.onopen = () => { retry = 1000; document.body.dataset.live = "connected"; };
    socket.onmessage = (event) => {
      const table = logs.querySelector("table");
      // Only the unfiltered first page, newest first, is a live view.
      if (!table || table.dataset.live !== "1" || table.dataset.query.replace(/(^|&)days=\d+/, "") !== "") return;
      const rows = document.getElementById("log-rows");
      rows.querySelector("tr.empty")?.remove();
      rows.insertAdjacentHTML("afterbegin", JSON.parse(event.data).html);
      htmx.process(rows);
    };
    socket.onclose = () => { document.body.dataset.live = "disconnected"; setTimeout(connect, retry); retry = Math.min(retry * 2, 30000); };
  }
  connect();
})();
