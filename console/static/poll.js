// A refresh every few seconds, paused while the tab is hidden (document.visibilityState) and
// run at once when it is shown again.

export function poller(refresh, intervalMs) {
  let running = false;
  let timer = null;
  let busy = false;

  const interval = () => (typeof intervalMs === "function" ? intervalMs() : intervalMs);

  function schedule() {
    clearTimeout(timer);
    timer = null;
    const wait = interval();
    if (!running || document.visibilityState === "hidden" || wait === null) return;
    timer = setTimeout(tick, wait);
  }

  async function tick() {
    timer = null;
    if (!running || busy || document.visibilityState === "hidden") return;
    busy = true;
    try {
      await refresh();
    } catch {
      // the view shows its own error; the next tick tries again
    } finally {
      busy = false;
      schedule();
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (!running) return;
    if (document.visibilityState === "hidden") {
      clearTimeout(timer);
      timer = null;
    } else {
      tick();
    }
  });

  return {
    start() {
      running = true;
      schedule();
    },
    stop() {
      running = false;
      clearTimeout(timer);
      timer = null;
    },
    /** Start counting the interval again (after a refresh made by hand, or a new state). */
    reschedule() {
      if (running && !busy) schedule();
    },
  };
}
