// A model's Swagger page for its group's members (portal.model_docs.ModelSwaggerView):
// "Try it out" without a group token under Authorize is sent to the run URL's session twin
// (<run URL>/try: the member's session, and the CSRF token drf-spectacular's interceptor adds).
// With a token it goes to the run URL itself, as programs call it.
"use strict";
// eslint-disable-next-line no-unused-vars
function neomarilSessionTry(request) {
  const paths = JSON.parse(document.getElementById("session-try").textContent);
  const url = new URL(request.url, document.baseURI);
  const hasToken = Object.keys(request.headers || {}).some((name) => name.toLowerCase() === "authorization");
  if (request.method === "POST" && url.origin === window.location.origin && url.pathname === paths.run && !hasToken) {
    url.pathname = paths.try;
    request.url = url.href;
    request.credentials = "same-origin";
  }
  return request;
}
