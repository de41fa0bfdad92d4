// The call page's transcript: window.Transcript(list, empty).update(line) adds or replaces a
// line; line = {id, role: "user" | "character", text, character, final, cut} (the local
// transport's {"transcript": ...} messages, app/transcript.py; livekit-call.js makes the same
// from the room's lk.transcription streams). A later line with the same id replaces the
// earlier one in place, so lines stay in the order they began. `cut`: the rest of a reply
// the caller talked over, never played, shown struck through.
"use strict";

window.Transcript = class {
  constructor(list, empty) {
    this.list = list;
    this.empty = empty;
    this.items = new Map(); // id -> <li>
  }

  clear() {
    this.items.clear();
    this.list.replaceChildren();
    this.empty.hidden = false;
  }

  update(line) {
    let item = this.items.get(line.id);
    if (!item) {
      item = document.createElement("li");
      this.items.set(line.id, item);
      this.list.append(item);
      this.empty.hidden = true;
    }
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = line.role === "user" ? "You" : line.character || "Character";
    const said = document.createElement("span");
    said.className = "said";
    said.textContent = line.text;
    item.className = `${line.role}${line.final ? " final" : ""}`;
    item.replaceChildren(who, said);
    if (line.cut) {
      const cut = document.createElement("span");
      cut.className = "cut";
      const label = document.createElement("span");
      label.className = "visually-hidden";
      label.textContent = "(cut off, not said:)";
      const rest = document.createElement("s");
      rest.textContent = line.cut;
      cut.append(" ", label, rest);
      item.append(cut);
    }
    const near = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 80;
    if (near) this.list.scrollTop = this.list.scrollHeight; // follow, unless scrolled back
  }
};
