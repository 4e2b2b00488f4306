// The editor's note: a live preview, rendered by the server (the same Markdown and
// sanitiser as the email), a moment after typing stops. Without script, the preview
// below the box shows the saved note.
(function () {
  "use strict";
  var box = document.getElementById("note");
  var shown = document.getElementById("note-preview");
  if (!box || !shown || !box.dataset.preview) return;
  var form = box.form;
  var timer = null;
  var asked = 0;
  function refresh() {
    var body = new FormData();
    body.append("csrf", form.elements.csrf.value);
    body.append("note", box.value);
    var mine = ++asked;
    fetch(box.dataset.preview, { method: "POST", body: body, credentials: "same-origin" })
      .then(function (answer) { return answer.ok ? answer.text() : null; })
      .then(function (html) {
        // Only the newest answer counts; the HTML is the server's sanitised note.
        if (html !== null && mine === asked) shown.innerHTML = html;
      })
      .catch(function () {});
  }
  box.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  });
})();
