// Fills the sign-up form's hidden time zone from the browser, so DIGEST_SEND_LOCAL_TIME
// can reach this reader at their own hour. Without script the field stays empty and the
// list's own zone is used; nothing else depends on it.
document.addEventListener("DOMContentLoaded", function () {
  var field = document.getElementById("timezone");
  if (!field || field.value || !window.Intl) { return; }
  try {
    field.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (error) {
    field.value = "";
  }
});
