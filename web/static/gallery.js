// The gallery (/): the library's characters and scenes as cards, each with its picture, a
// Call button (the call page, starting at once) and an Edit link into the console. It reads
// GET /api/library, again when the page comes back into view and every REFRESH_MS, so what
// the console saves or deletes shows here without a reload.
"use strict";

(() => {
  const REFRESH_MS = 30000;
  const $ = (id) => document.getElementById(id);
  let shown = ""; // the listing on screen, as JSON: redrawn only when it changes

  function element(tag, props = {}, ...children) {
    const node = Object.assign(document.createElement(tag), props);
    node.append(...children);
    return node;
  }

  function card(entry, kind) {
    const picture = element("img", {
      src: entry.picture,
      alt: kind === "scene" ? `${entry.characters.join(" and ")} together` : `Portrait of ${entry.name}`,
      width: 512,
      height: 512,
    });
    const body = element("div", { className: "body" }, element("h3", { textContent: entry.name }));
    if (kind === "scene") {
      body.append(element("p", { className: "members", textContent: entry.characters.join(" & ") }));
    }
    const call = element("a", {
      className: "button",
      href: `${entry.call}&start=1`,
      textContent: "Call",
    });
    call.setAttribute("aria-label", `Call ${entry.name}`);
    const actions = element("div", { className: "actions" }, call);
    if (entry.edit) {
      const edit = element("a", { className: "edit", href: entry.edit, textContent: "Edit" });
      edit.setAttribute("aria-label", `Edit ${entry.name}`);
      actions.append(edit);
    }
    body.append(actions);
    return element("li", { className: `card ${kind}` }, picture, body);
  }

  function newCard(href) {
    const link = element(
      "a",
      { href },
      element("span", { className: "plus", textContent: "+" }),
      element("span", { textContent: "New character" }),
    );
    link.querySelector(".plus").setAttribute("aria-hidden", "true");
    return element("li", { className: "card new" }, link);
  }

  function draw(library) {
    const people = library.characters.map((c) => card(c, "character"));
    if (library.new) people.push(newCard(library.new));
    $("characters").replaceChildren(...people);
    $("scenes").replaceChildren(...library.scenes.map((s) => card(s, "scene")));
    $("scenes-section").hidden = library.scenes.length === 0;
    const count = library.characters.length;
    $("status").textContent =
      count === 0
        ? "No characters yet." + (library.new ? " Create one with “New character”." : "")
        : "Pick someone to video-call.";
  }

  async function refresh() {
    let library;
    try {
      const response = await fetch("/api/library", { cache: "no-store" });
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
      library = await response.json();
    } catch (err) {
      $("status").textContent = `Could not load the library (${err.message}). Retrying…`;
      shown = "";
      return;
    }
    const json = JSON.stringify(library);
    if (json !== shown) {
      shown = json;
      draw(library);
    }
  }

  window.addEventListener("focus", refresh);
  document.addEventListener("visibilitychange", () => document.hidden || refresh());
  setInterval(() => document.hidden || refresh(), REFRESH_MS);
  refresh();
})();
