// The certificate page's "Copy link" button (templates/certificate.html).
document.getElementById("copy-link").addEventListener("click", function () {
  var button = this, url = button.getAttribute("data-url");
  function ask() { window.prompt("Copy this link:", url); }
  if (!navigator.clipboard) { ask(); return; }
  navigator.clipboard.writeText(url).then(function () { button.textContent = "Link copied"; }, ask);
});
