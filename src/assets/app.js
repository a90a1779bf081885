// Progressive enhancement only: every page works without this script.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // After a refused submit the form comes back with the input kept and focused: put the caret
  // at the end, where a typo is usually fixed, rather than at the start.
  // (type="url" inputs have no selection API; setting the value again moves the caret.)
  var field = document.querySelector("input[autofocus]");
  if (field && field === document.activeElement && field.value) {
    var value = field.value;
    field.value = "";
    field.value = value;
  }

  // The copy button appears only where the Clipboard API exists.
  var button = document.getElementById("copy");
  var status = document.getElementById("copy-status");
  if (!button || !navigator.clipboard) return;
  button.hidden = false;
  function announce(text) {
    // Empty the live region first so a second copy is announced again.
    status.textContent = "";
    window.setTimeout(function () { status.textContent = text; }, 50);
  }
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(button.dataset.copy).then(
      function () { announce("Copied to the clipboard."); },
      function () { announce("Could not copy: select the link and copy it by hand."); }
    );
  });
});
