// relayhub console: pages are complete without this script. It only
// (1) keeps live regions fresh from the server's events, and (2) asks
// before a form marked data-confirm does something hard to undo.
"use strict";

for (const region of document.querySelectorAll("[data-live]")) {
  const source = new EventSource(region.dataset.live);
  source.onmessage = (event) => {
    region.innerHTML = event.data;
    region.classList.remove("stale");
  };
  // The browser reconnects by itself; meanwhile say the data may be old.
  source.onerror = () => region.classList.add("stale");
  window.addEventListener("pagehide", () => source.close());
}

document.addEventListener("submit", (event) => {
  const question = event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});
