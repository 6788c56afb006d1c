// Login: post the token once; the server answers with an HttpOnly session cookie
// (this script never sees it), then go where the user was headed.
const form = document.getElementById("login");
const error = document.getElementById("error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  const response = await fetch("/console/login", {
    method: "POST",
    body: new URLSearchParams(new FormData(form)),
    credentials: "same-origin",
  });
  if (response.ok) {
    const next = new URLSearchParams(location.search).get("next") || "/console/";
    // Only our own pages: never redirect off-site from a crafted link.
    location.assign(next.startsWith("/console/") ? next : "/console/");
    return;
  }
  const body = await response.json().catch(() => ({}));
  error.textContent = body.error || `login failed (${response.status})`;
});
