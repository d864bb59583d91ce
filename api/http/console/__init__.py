"""The web console (``/console``): server-rendered pages for privacy officers, incident
responders and regulators, over the same questions, scopes and appends as the API
(docs/console.md)."""
