// orgtrail console: small enhancements only; every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Forms that call the Atlassian API show that they are busy and cannot be sent twice.
  document.querySelectorAll("form[data-busy]").forEach(function (form) {
    form.addEventListener("submit", function () {
      var button = form.querySelector("button[type=submit]");
      if (button) {
        button.disabled = true;
        button.textContent = form.getAttribute("data-busy");
      }
    });
  });

  // Ctrl+Enter (or Cmd+Enter) in the SQL editor runs the query.
  var sql = document.getElementById("sql");
  if (sql) {
    sql.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        sql.form.submit();
      }
    });
  }

  // Pages marked data-autorefresh reload themselves, unless the user is typing.
  var every = parseInt(document.body.getAttribute("data-autorefresh") || "", 10);
  if (every > 0) {
    setInterval(function () {
      var a = document.activeElement;
      var typing = a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA" || a.tagName === "SELECT");
      if (!typing && document.visibilityState === "visible") {
        window.location.reload();
      }
    }, every * 1000);
  }
});
