"use strict";
if (new URLSearchParams(window.location.search).has("failed")) {
  document.getElementById("login-error").hidden = false;
}
