// Keyboard shortcuts and in-place saving for the review page. Plain JavaScript, no build step.
// Without it the forms still work (post and come back); with it they post by fetch and stay put.
"use strict";
(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const who = document.getElementById("reviewer");
  const segs = Array.from(document.querySelectorAll(".seg"));
  let current = segs.length ? 0 : -1;

  // The reviewer's name lives in the header; every form gets it when it is sent.
  if (who && !who.value) who.value = localStorage.getItem("cg-reviewer") || "";
  const syncReviewer = () => {
    if (!who) return;
    localStorage.setItem("cg-reviewer", who.value);
    document.querySelectorAll(".reviewer-field").forEach((f) => { f.value = who.value; });
  };
  who?.addEventListener("input", syncReviewer);
  syncReviewer();

  const focusSeg = (i) => {
    if (!segs.length) return;
    current = Math.max(0, Math.min(segs.length - 1, i));
    segs.forEach((s, j) => s.classList.toggle("current", j === current));
    segs[current].focus({ preventScroll: true });
    segs[current].scrollIntoView({ block: "nearest" });
  };
  segs.forEach((s, i) => s.addEventListener("focus", () => { current = i; segs.forEach((t, j) => t.classList.toggle("current", j === i)); }));

  async function send(form, verdict) {
    syncReviewer();
    const status = form.parentElement.querySelector(".status");
    if (!who || !who.value.trim()) { status.textContent = "Enter your name as reviewer first."; status.classList.add("failed"); who?.focus(); return; }
    const data = new FormData(form);
    data.set("verdict", verdict);
    const res = await fetch(form.action, { method: "POST", body: data, headers: { "Accept": "application/json", "X-CSRF-Token": csrf }, credentials: "same-origin" });
    const body = await res.json().catch(() => ({}));
    if (res.ok) {
      const r = body.review;
      status.textContent = `${r.verdict}${r.verdict === "correct" ? " → " + ((r.labels || []).join(", ") || "compliant") : ""} by ${r.reviewer} at ${r.created_at}` + (r.note ? ` — ${r.note}` : "");
      status.classList.remove("failed");
      form.closest(".seg").classList.add("reviewed");
      form.querySelector(".note").value = "";
    } else {
      status.textContent = (body.error && body.error.message) || `not saved (HTTP ${res.status})`;
      status.classList.add("failed");
    }
  }

  document.querySelectorAll("form.review").forEach((form) => {
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      send(form, ev.submitter ? ev.submitter.value : "confirm");
    });
  });
  document.querySelectorAll("#call-verdict form").forEach((form) => form.addEventListener("submit", syncReviewer));

  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    if (t && (t.tagName === "INPUT" && t.type !== "checkbox" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) {
      if (ev.key === "Escape") { t.blur(); focusSeg(current); }
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const seg = segs[current];
    const form = seg?.querySelector("form.review");
    const boxes = form ? form.querySelectorAll('input[name="labels"]') : [];
    switch (ev.key) {
      case "j": case "ArrowDown": focusSeg(current + 1); break;
      case "k": case "ArrowUp": focusSeg(current - 1); break;
      case "c": if (form) { send(form, "confirm").then(() => focusSeg(current + 1)); } break;
      case "x": if (form) { send(form, "reject").then(() => focusSeg(current + 1)); } break;
      case "e": if (form) { send(form, "correct").then(() => focusSeg(current + 1)); } break;
      case "1": case "2": case "3": {
        const box = boxes[Number(ev.key) - 1];
        if (box) box.checked = !box.checked;
        break;
      }
      case "n": if (form) { ev.preventDefault(); form.querySelector(".note").focus(); } break;
      case "v": { ev.preventDefault(); document.getElementById("call-verdict-select")?.focus(); break; }
      case "]": { const next = document.getElementById("next-link"); if (next) window.location.href = next.href; break; }
      case "?": { const h = document.getElementById("help"); if (h) h.hidden = !h.hidden; break; }
      default: return;
    }
  });
  if (segs.length) focusSeg(0);
})();
