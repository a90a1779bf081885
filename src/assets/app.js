// Progressive enhancement: the copy button appears only where the Clipboard API exists.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("copy");
  var status = document.getElementById("copy-status");
  if (!button || !navigator.clipboard) return;
  button.hidden = false;
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(button.dataset.copy).then(
      function () { status.textContent = "Copied to the clipboard."; },
      function () { status.textContent = "Could not copy: select the link and copy it by hand."; }
    );
  });
});
