// Move the focus to the error after a failed sign-in, so a screen reader reads it first.
(function () {
  var error = document.getElementById("login-error");
  if (error) { error.focus(); return; }
  var user = document.getElementById("username");
  if (user && !user.value) user.focus();
}());
