// The reader's time zone from the browser, so DIGEST_SEND_LOCAL_TIME can reach them at
// their own hour: fills the sign-up form's hidden field, and on the preferences page
// preselects the browser's zone in the picker while the reader has chosen none (only
// when the picker lists that zone). Without script the list's own zone is used;
// nothing else depends on it.
document.addEventListener("DOMContentLoaded", function () {
  var field = document.getElementById("timezone");
  if (!field || field.value || !window.Intl) { return; }
  var zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (error) {
    return;
  }
  if (field.tagName === "SELECT") {
    var listed = Array.prototype.some.call(field.options, function (option) {
      return option.value === zone;
    });
    if (listed) { field.value = zone; }
    return;
  }
  field.value = zone;
});
