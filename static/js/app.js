// Progressive enhancement only: every page works without this file.
// Keeps the CSRF header current for HTMX requests after a log-in swaps the session.
document.addEventListener("htmx:configRequest", (event) => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) event.detail.headers["X-CSRF-Token"] = meta.content;
});
